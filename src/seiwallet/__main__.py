"""``python -m seiwallet`` runs the command line."""

from __future__ import annotations

from seiwallet.cli.main import main

main()
