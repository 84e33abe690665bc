"""Test-wide plugins: the throwaway PostgreSQL cluster and the local anvil chain."""

pytest_plugins = ["tests.fixtures.database", "tests.fixtures.chain"]
