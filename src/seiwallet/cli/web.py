"""``seiwallet serve`` (the API and wallet app), ``seiwallet login`` / ``whoami`` / ``logout``.

``login`` is the device authorization grant against our API (see
:mod:`seiwallet.accounts.devicelogin`): the CLI makes a P-256 device key, the person approves it
with their passkey in the wallet app, and the CLI keeps its token and key in a 0600 file.
"""

from __future__ import annotations

import json
import os
import time
import webbrowser
from pathlib import Path
from typing import Annotated, Any

import httpx
import typer
import uvicorn
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from seiwallet.cli.app import app, configure_logging, console, fail, handles_errors, settings
from seiwallet.config import Settings

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
) -> None:
    """Serve the API and the wallet app (the signer must be running)."""
    from seiwallet.api.app import create_app  # noqa: PLC0415 - web stack for this command only

    configure_logging(verbose)
    config = settings()
    web_app = create_app(config)
    listen_host = host or config.web.host
    listen_port = port or config.web.port
    console.print(
        f"wallet app on {config.web.public_url} (listening on {listen_host}:{listen_port})"
    )
    uvicorn.run(
        web_app,
        host=listen_host,
        port=listen_port,
        log_level="warning",
        access_log=False,
        proxy_headers=False,
    )


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
