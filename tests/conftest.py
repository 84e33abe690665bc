"""Test-wide plugins: throwaway PostgreSQL, the local anvil chain, soft authenticators."""

pytest_plugins = [
    "tests.fixtures.database",
    "tests.fixtures.chain",
    "tests.fixtures.authenticators",
    "tests.fixtures.signer",
]
