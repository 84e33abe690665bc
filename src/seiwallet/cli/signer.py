"""``seiwallet signer``: run the isolated signer, and check its audit log."""

from __future__ import annotations

from typing import Annotated

import typer

from seiwallet.cli.app import app, configure_logging, console, fail, handles_errors, settings
from seiwallet.signer.runtime import open_service, open_store, serve, signer_secret

signer_app = typer.Typer(
    help="The isolated signer: the only process that holds keys.",
    invoke_without_command=True,
)
app.add_typer(signer_app, name="signer")


@signer_app.callback()
@handles_errors
def signer(
    ctx: typer.Context,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log debug details.")] = False,
) -> None:
    """Run the signer on its Unix socket (or loopback URL) until Ctrl-C."""
    if ctx.invoked_subcommand is not None:
        return
    configure_logging(verbose)
    config = settings()
    service = open_service(config)
    secret = signer_secret(config, create=True)
    where = config.signer.url or str(config.signer_socket)
    console.print(f"signer listening on {where} ({service.describe()}); Ctrl-C stops it")
    serve(config, service, secret)


@signer_app.command("verify-audit")
@handles_errors
def verify_audit() -> None:
    """Check the audit log's hash chain; report the first broken link."""
    # Reads the log only: no master key is opened (or created) for it.
    result = open_store(settings()).verify_audit()
    if result.ok:
        console.print(f"audit log intact: {result.checked} entries, hash chain verified")
        return
    raise fail(
        f"audit log broken at entry {result.first_broken_seq}: {result.reason} "
        f"({result.checked} entries checked)"
    )


__all__ = ["signer_app"]
