"""``seiwallet serve``'s options (several processes are run for real in
``tests/e2e/test_api_workers.py``)."""

from __future__ import annotations

from typer.testing import CliRunner

from seiwallet.cli.app import app
from seiwallet.cli.main import load_commands

load_commands([])


def test_serve_offers_several_processes() -> None:
    result = CliRunner().invoke(app, ["serve", "--help"])
    assert result.exit_code == 0
    assert "--workers" in result.stdout


def test_serve_refuses_zero_processes() -> None:
    result = CliRunner().invoke(app, ["serve", "--workers", "0"])
    assert result.exit_code == 2
    assert "Traceback" not in result.stderr
    assert "--workers" in result.stderr
