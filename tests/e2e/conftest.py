"""Fixtures of the end-to-end tests: a live API server and the people using it; for the web
tests a signer process, the app on it and browser profiles."""

from tests.e2e.live import live, people  # noqa: F401 - fixtures shared by the e2e modules
from tests.e2e.web_fixtures import app, browsers, signer_process  # noqa: F401 - as above
