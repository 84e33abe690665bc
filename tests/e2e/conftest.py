"""Fixtures of the end-to-end tests: a live API server and the people using it."""

from tests.e2e.live import live, people  # noqa: F401 - fixtures shared by the e2e modules
