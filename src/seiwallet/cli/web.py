"""``seiwallet serve`` (the API and wallet app), ``seiwallet login`` / ``whoami`` / ``logout``.

``serve --workers N`` runs N API processes on one port (uvicorn's supervisor, each worker
building its app from the environment); what each keeps to itself is in docs/architecture.md.

``login`` is the device authorization grant against our API (see
:mod:`seiwallet.accounts.devicelogin`): the CLI makes a P-256 device key, the person approves it
with their passkey in the wallet app, and the CLI keeps its token and key in a 0600 file.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
import uuid
import webbrowser
from pathlib import Path
from typing import Annotated, Any

import httpx
import segno
import typer
import uvicorn
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from rich.table import Table

from seiwallet.chain.escrow import Invitation, invitation_nonce
from seiwallet.cli.app import (
    LOG_FORMAT,
    app,
    configure_logging,
    console,
    fail,
    handles_errors,
    settings,
)
from seiwallet.config import Settings
from seiwallet.money import TokenAmount
from seiwallet.process import settle_garbage_collector
from seiwallet.signer.approvals import DeviceApproval, challenge_bytes
from seiwallet.signer.intents import intent_digest, parse_intent
from seiwallet.signer.service import approval_subject

Verbose = Annotated[bool, typer.Option("--verbose", "-v", help="Log debug details.")]
ApiUrl = Annotated[
    str | None,
    typer.Option("--api", help="The seiwallet API to use (default: the configured public URL)."),
]
CredentialsPath = Annotated[
    Path | None,
    typer.Option("--credentials", help="Where the device key and token are kept."),
]


@app.command()
@handles_errors
def serve(
    verbose: Verbose = False,
    host: Annotated[str | None, typer.Option(help="Address to listen on.")] = None,
    port: Annotated[int | None, typer.Option(help="Port to listen on.")] = None,
    workers: Annotated[
        int,
        typer.Option(
            min=1,
            help="API processes sharing the port (one per core; default 1: this process).",
        ),
    ] = 1,
) -> None:
    """Serve the API and the wallet app (the signer must be running)."""
    from seiwallet.api.app import create_app  # noqa: PLC0415 - web stack for this command only

    configure_logging(verbose)
    config = settings()
    listen_host = host or config.web.host
    listen_port = port or config.web.port
    served: dict[str, Any] = {
        "host": listen_host,
        "port": listen_port,
        "log_level": "warning",
        "access_log": False,
        "proxy_headers": False,
        # Event streams (a terminal's) never end on their own: on a stop or a rolling restart
        # they are cut after this long, and their clients resume with Last-Event-ID.
        "timeout_graceful_shutdown": 10,
    }
    if workers == 1:
        web_app = create_app(config)
        _announce(config, listen_host, listen_port, workers)
        settle_garbage_collector()  # start-up is over: its objects leave the collector's walks
        uvicorn.run(web_app, **served)
        return
    _prepare_once(config)
    _announce(config, listen_host, listen_port, workers)
    # Each worker is a fresh (spawned) process: it imports the factory, reads the same
    # environment and builds its own app; uvicorn replaces a worker that dies.
    uvicorn.run(
        "seiwallet.api.app:create_app_from_environment",
        factory=True,
        workers=workers,
        log_config=_worker_logging(verbose),
        **served,
    )


def _prepare_once(config: Settings) -> None:
    """What must happen once before several API processes start, done here in the supervisor.

    Building the services once migrates the database, creates the app's secret (and, locally,
    the development provider's signing key) and checks the whole configuration: the workers
    then find all of it in place instead of racing to create it, and a bad setting is one
    error here rather than the same failure in every worker.
    """
    from seiwallet.api.services import build_services  # noqa: PLC0415 - web stack

    asyncio.run(build_services(config).aclose())


def _announce(config: Settings, host: str, port: int, workers: int) -> None:
    processes = "" if workers == 1 else f", {workers} API processes"
    console.print(f"wallet app on {config.web.public_url} (listening on {host}:{port}{processes})")
    if workers > 1 and config.network.is_local:
        # Both keep their state in memory: a step answered by another process is not known there.
        console.print(
            "[yellow]note:[/] the development sign-in and the demo identity check keep their "
            "state in the process that started them: with several processes a sign-in can fail; "
            "use one process (the default) to try them in a browser"
        )


def _worker_logging(verbose: bool) -> dict[str, Any]:
    """:func:`configure_logging`'s set-up, as uvicorn applies it in each (spawned) worker."""
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"line": {"format": LOG_FORMAT}},
        "handlers": {
            "stderr": {
                "class": "logging.StreamHandler",
                "formatter": "line",
                "stream": "ext://sys.stderr",
            }
        },
        "root": {"level": "DEBUG" if verbose else "INFO", "handlers": ["stderr"]},
        "loggers": {
            "httpx": {"level": "WARNING"},
            # The supervisor migrated: a worker's check at start is a no-op, not worth N lines.
            "alembic": {"level": "WARNING"},
        },
    }


def _credentials_path(config: Settings, given: Path | None) -> Path:
    return given or config.data_dir / "cli" / "device.json"


def _write_private(path: Path, data: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    temporary = path.with_suffix(".tmp")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as handle:
        json.dump(data, handle, indent=2)
    os.replace(temporary, path)


def read_credentials(path: Path) -> dict[str, Any]:
    try:
        data: dict[str, Any] = json.loads(path.read_text())
    except FileNotFoundError:
        raise fail(f"not logged in (no {path}): run `seiwallet login`") from None
    except (OSError, ValueError) as exc:
        raise fail(f"cannot read {path}: {exc}") from None
    return data


def _problem(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return f"HTTP {response.status_code}"
    return str(body.get("detail") or body.get("title") or f"HTTP {response.status_code}")


@app.command()
@handles_errors
def login(
    api: ApiUrl = None,
    credentials: CredentialsPath = None,
    label: Annotated[str, typer.Option(help="What this device is called.")] = "",
    open_browser: Annotated[
        bool, typer.Option("--browser/--no-browser", help="Open the approval page.")
    ] = True,
    timeout: Annotated[float, typer.Option(help="Give up after this many seconds.")] = 600,
) -> None:
    """Sign this device in: approve its new device key with your passkey in the wallet app."""
    config = settings()
    base = (api or config.web.public_url).rstrip("/")
    path = _credentials_path(config, credentials)
    key = ec.generate_private_key(ec.SECP256R1())
    public = key.public_key().public_bytes(
        serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
    )
    name = label or f"Command line on {os.uname().nodename}"
    with httpx.Client(base_url=base, timeout=10) as http:
        try:
            started = http.post("/v1/device/code", json={"public_key": public.hex(), "label": name})
        except httpx.TransportError as exc:
            raise fail(f"cannot reach the seiwallet API at {base} ({exc})") from None
        if started.status_code != 200:
            raise fail(f"the API refused the login: {_problem(started)}")
        grant = started.json()
        console.print(
            f"Open [bold]{grant['verification_uri_complete']}[/] and approve code "
            f"[bold]{grant['user_code']}[/] with your passkey."
        )
        if open_browser:
            webbrowser.open(grant["verification_uri_complete"])
        interval = float(grant["interval"])
        deadline = time.monotonic() + min(timeout, float(grant["expires_in"]))
        while True:
            time.sleep(interval)
            polled = http.post("/v1/device/token", json={"device_code": grant["device_code"]})
            if polled.status_code == 200:
                break
            error = polled.json().get("error") if polled.content else None
            if error == "authorization_pending" and time.monotonic() < deadline:
                continue
            if error == "slow_down":
                interval += 5
                continue
            if error == "authorization_pending":
                raise fail("gave up waiting for the approval: run `seiwallet login` again")
            raise fail(_problem(polled))
    token = polled.json()
    _write_private(
        path,
        {
            "api": base,
            "token": token["access_token"],
            "user_id": token["user_id"],
            "wallet_address": token["wallet_address"],
            "authenticator_id": token["authenticator_id"],
            "device_key": key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            ).decode(),
        },
    )
    console.print(
        f"Logged in: wallet {token['wallet_address']}; device key {token['authenticator_id']} "
        f"kept in {path}"
    )


@app.command()
@handles_errors
def whoami(api: ApiUrl = None, credentials: CredentialsPath = None) -> None:
    """Show who this device is signed in as."""
    config = settings()
    saved = read_credentials(_credentials_path(config, credentials))
    base = (api or saved["api"]).rstrip("/")
    try:
        answer = httpx.get(
            f"{base}/v1/me", headers={"authorization": f"Bearer {saved['token']}"}, timeout=10
        )
    except httpx.TransportError as exc:
        raise fail(f"cannot reach the seiwallet API at {base} ({exc})") from None
    if answer.status_code != 200:
        raise fail(_problem(answer))
    me = answer.json()
    console.print(
        f"{me.get('display_name') or me.get('email') or me['user_id']}: "
        f"wallet {me['wallet']['address']} ({me['wallet']['sei_address']})"
    )


@app.command()
@handles_errors
def logout(credentials: CredentialsPath = None) -> None:
    """End this device's session and delete its device key."""
    config = settings()
    path = _credentials_path(config, credentials)
    saved = read_credentials(path)
    headers = {"authorization": f"Bearer {saved['token']}"}
    try:
        me = httpx.get(f"{saved['api']}/v1/me", headers=headers, timeout=10)
        if me.status_code == 200:
            httpx.delete(
                f"{saved['api']}/v1/sessions/{me.json()['session']['id']}",
                headers=headers,
                timeout=10,
            )
    except httpx.TransportError:
        console.print("[yellow]the API is unreachable: the session ends when it expires[/]")
    path.unlink()
    console.print("Logged out; the device key was deleted.")


# -- money -----------------------------------------------------------------------------------------


class _Api:
    """The signed-in device's view of the API: bearer token, device key, one-line errors."""

    def __init__(self, config: Settings, credentials: Path | None, api: str | None) -> None:
        self.saved = read_credentials(_credentials_path(config, credentials))
        self.base = (api or self.saved["api"]).rstrip("/")
        self.http = httpx.Client(
            base_url=self.base,
            timeout=30,
            headers={"authorization": f"Bearer {self.saved['token']}"},
        )

    def __enter__(self) -> _Api:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.http.close()

    def call(self, method: str, path: str, **kwargs: Any) -> Any:
        try:
            answer = self.http.request(method, path, **kwargs)
        except httpx.TransportError as exc:
            raise fail(f"cannot reach the seiwallet API at {self.base} ({exc})") from None
        if answer.status_code >= 400:
            raise fail(_problem(answer))
        return answer.json()

    def approve(self, wallet_id: str, digest_hex: str) -> dict[str, Any]:
        """A device-key approval of the intent with this digest (5 minutes at most)."""
        key = serialization.load_pem_private_key(self.saved["device_key"].encode(), None)
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            raise fail("the saved device key is not a P-256 key: run `seiwallet login` again")
        nonce = os.urandom(16)
        expires_at = int(time.time()) + 120
        challenge = challenge_bytes(
            approval_subject(wallet_id, bytes.fromhex(digest_hex)), nonce, expires_at
        )
        signature = key.sign(challenge, ec.ECDSA(hashes.SHA256()))
        return DeviceApproval(
            authenticator_id=self.saved["authenticator_id"],
            nonce=nonce,
            expires_at=expires_at,
            signature=signature,
        ).to_json()


def _check_intent(transfer: dict[str, Any], recipient_address: str | None) -> None:
    """What the device approves must be what the person asked: recompute the digest."""
    intent = parse_intent(transfer["intent"])
    if intent_digest(intent).hex() != transfer["intent_digest"]:
        raise fail("the API returned an intent that does not match its digest: not approving")
    if intent.to_json().get("to", "").lower() != transfer["to"].lower():
        raise fail("the API returned an intent for another recipient: not approving")
    if recipient_address and recipient_address.lower() != transfer["to"].lower():
        raise fail("the API resolved another recipient than the address given: not approving")
    if transfer.get("invitation"):
        _check_invitation(transfer)


def _check_invitation(transfer: dict[str, Any]) -> None:
    """An invitation's nonce must commit to the escrow, claim hash and deadline shown: recompute
    it, so the deadline this command prints is the one the device key signs for."""
    found, intent = transfer["invitation"], transfer["intent"]
    try:
        terms = Invitation(
            token=intent["token"]["verifying_contract"],
            sender=transfer["from"],
            value_units=int(intent["amount_units"]),
            claim_hash=bytes.fromhex(str(found["claim_hash"]).removeprefix("0x")),
            deadline=int(found["deadline_unix"]),
        )
        nonce = invitation_nonce(
            terms, escrow=found["escrow"], chain_id=int(intent["token"]["chain_id"])
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise fail(
            f"the API returned an invitation that cannot be checked ({exc}): not approving"
        ) from None
    if (
        "0x" + nonce.hex() != str(intent["nonce"]).lower()
        or str(intent["to"]).lower() != str(found["escrow"]).lower()
        or int(intent["valid_before"]) > terms.deadline
    ):
        raise fail("the API returned invitation terms the intent does not sign: not approving")


@app.command()
@handles_errors
def send(  # noqa: PLR0917 - a command's arguments and options
    recipient: Annotated[str, typer.Argument(help="0x or sei1 address, phone number or e-mail.")],
    amount: Annotated[str, typer.Argument(help="How much, e.g. 12.50.")],
    token: Annotated[str, typer.Option(help="USDC or EURC.")] = "USDC",  # noqa: S107
    note: Annotated[str, typer.Option(help="A note for the recipient.")] = "",
    idempotency_key: Annotated[
        str | None, typer.Option(help="Reuse to retry safely (default: a new one).")
    ] = None,
    wait: Annotated[bool, typer.Option(help="Wait until the transfer completes.")] = True,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask to confirm.")] = False,
    api: ApiUrl = None,
    credentials: CredentialsPath = None,
) -> None:
    """Send stablecoins, approved with this device's key; no gas needed."""
    config = settings()
    key = idempotency_key or uuid.uuid4().hex
    with _Api(config, credentials, api) as client:
        transfer = client.call(
            "POST",
            "/v1/transfers",
            json={"recipient": recipient, "token": token, "amount": amount, "note": note},
            headers={"Idempotency-Key": key},
        )
        typed_address = recipient if recipient.lower().startswith("0x") else None
        _check_intent(transfer, typed_address)
        console.print(
            f"Send [bold]{transfer['amount']} {transfer['token']}[/] to {transfer['recipient']} "
            f"({transfer['to']}); network fee paid by seiwallet."
        )
        if transfer.get("invitation"):
            until = str(transfer["invitation"]["deadline"])[:16].replace("T", " ")
            console.print(
                f"{transfer['recipient']} is not on seiwallet yet: the money waits in the "
                f"invitation escrow until {until} UTC for them to join, then comes back to you."
            )
        if not yes and not typer.confirm("Approve with this device's key?"):
            raise fail("not approved: nothing was sent", code=1)
        if transfer["status"] == "awaiting_approval":
            approval = client.approve(transfer["wallet_id"], transfer["intent_digest"])
            transfer = client.call(
                "POST", f"/v1/transfers/{transfer['id']}/approve", json={"approvals": [approval]}
            )
        console.print(f"transfer {transfer['id']}: {transfer['status']}")
        deadline = time.monotonic() + 120
        while wait and transfer["status"] in ("signed", "submitted"):
            if time.monotonic() > deadline:
                console.print("still on its way; check with `seiwallet history`")
                break
            time.sleep(0.5)
            transfer = client.call("GET", f"/v1/transfers/{transfer['id']}")
            if transfer.get("delayed"):
                console.print(f"[yellow]delayed:[/] {transfer['delayed']}")
        if transfer["status"] == "failed":
            raise fail(f"the transfer failed: {transfer.get('failure_reason') or 'unknown'}")
        if transfer["status"] == "confirmed":
            console.print(f"[green]completed[/] in block {transfer['block_number']}")


@app.command()
@handles_errors
def receive(
    amount: Annotated[str | None, typer.Option(help="Ask for this amount.")] = None,
    token: Annotated[str, typer.Option(help="USDC or EURC.")] = "USDC",  # noqa: S107
    api: ApiUrl = None,
    credentials: CredentialsPath = None,
) -> None:
    """Show this wallet's addresses and a QR code (EIP-681) to be paid."""
    config = settings()
    with _Api(config, credentials, api) as client:
        me = client.call("GET", "/v1/me")
        balances = client.call("GET", "/v1/balances")["balances"]
    found = next((b for b in balances if b["token"] == token.upper()), None)
    if found is None:
        raise fail(f"{token!r} is not offered: choose one of {[b['token'] for b in balances]}")
    uri = (
        f"ethereum:{found['address']}@{config.network.chain_id}/transfer"
        f"?address={me['wallet']['address']}"
    )
    if amount:
        units = TokenAmount.parse(amount, int(found["decimals"]), token.upper()).units
        uri += f"&uint256={units}"
    console.print(f"0x address:  [bold]{me['wallet']['address']}[/]")
    console.print(f"sei1 address: [bold]{me['wallet']['sei_address']}[/]")
    console.print(f"Only {token.upper()} on Sei: tokens sent on another network may be lost.")
    console.print(uri)
    segno.make(uri, error="m").terminal(compact=True)


@app.command()
@handles_errors
def history(
    limit: Annotated[int, typer.Option(help="How many transfers.")] = 20,
    api: ApiUrl = None,
    credentials: CredentialsPath = None,
) -> None:
    """This wallet's recent transfers."""
    config = settings()
    with _Api(config, credentials, api) as client:
        rows = client.call("GET", "/v1/transfers", params={"limit": limit})["transfers"]
    table = Table(show_header=True)
    for column in ("when (UTC)", "", "amount", "counterparty", "status"):
        table.add_column(column)
    for row in rows:
        sent = row["direction"] == "sent"
        table.add_row(
            row["created_at"][:16].replace("T", " "),
            "→" if sent else "←",
            f"{'-' if sent else '+'}{row['amount']} {row['token']}",
            row["recipient"] if sent else row["from"],
            row["status"] + (" (delayed)" if row.get("delayed") else ""),
        )
    console.print(table)
