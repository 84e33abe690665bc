"""Entry point of the ``seiwallet`` command."""

from __future__ import annotations

import importlib
import sys

from seiwallet.cli.app import app

#: Modules that register their commands on ``app`` when imported.
COMMAND_MODULES = (
    "seiwallet.cli.signer",
    "seiwallet.cli.platform",
    "seiwallet.cli.web",
    "seiwallet.cli.compliance",
)


def load_commands(argv: list[str]) -> None:
    """Import the command modules.

    ``seiwallet signer`` loads only the signer's: the process that holds keys then runs no chain,
    web3 or database-layer code it does not need (and starts in a fraction of the time).
    """
    modules = COMMAND_MODULES[:1] if argv[:1] == ["signer"] else COMMAND_MODULES
    for name in modules:
        importlib.import_module(name)


def main() -> None:
    """Console-script entry point."""
    load_commands(sys.argv[1:])
    app()
