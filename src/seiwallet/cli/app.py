"""The ``seiwallet`` command's root: shared options, and turning errors into one-line messages."""

from __future__ import annotations

import functools
import logging
import sys
from collections.abc import Callable
from typing import ParamSpec, TypeVar

import typer
from rich.console import Console

from seiwallet.config import Settings, load_settings
from seiwallet.errors import SeiwalletError

P = ParamSpec("P")
R = TypeVar("R")

console = Console()
err_console = Console(stderr=True)

app = typer.Typer(
    name="seiwallet",
    help=(
        "seiwallet: a seedless stablecoin wallet and payments platform for the Sei EVM chain.\n\n"
        "Run `seiwallet up` for the whole local platform, or each process on its own."
    ),
    no_args_is_help=True,
    rich_markup_mode="rich",
    pretty_exceptions_enable=False,
    add_completion=False,
)


def fail(message: str, code: int = 1) -> typer.Exit:
    """Print a one-line error to stderr and return the exit to raise."""
    err_console.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
    return typer.Exit(code)


def handles_errors(command: Callable[P, R]) -> Callable[P, R]:
    """Turn our errors (and Ctrl-C) into a one-line message and a non-zero exit, never a trace."""

    @functools.wraps(command)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return command(*args, **kwargs)
        except SeiwalletError as exc:
            raise fail(str(exc)) from None
        except KeyboardInterrupt:
            raise typer.Exit(130) from None

    return wrapper


def settings() -> Settings:
    """Settings for a command (errors surface through :func:`handles_errors`)."""
    return load_settings()


#: One log line's shape, in every process a command starts (``serve --workers`` too).
LOG_FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"


def configure_logging(verbose: bool) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format=LOG_FORMAT,
        stream=sys.stderr,
    )
    # httpx logs every request at INFO: far too chatty for a follower polling 5 times a second.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    # Alembic announces its context on every start; only real migrations are worth a line.
    logging.getLogger("alembic.runtime.migration").setLevel(logging.WARNING)
