"""Test-wide plugins: throwaway PostgreSQL, the local anvil chain, soft authenticators, and
Debian's Chromium with virtual passkeys."""

pytest_plugins = [
    "tests.fixtures.database",
    "tests.fixtures.chain",
    "tests.fixtures.authenticators",
    "tests.fixtures.signer",
    "tests.fixtures.browser",
]
