"""Helpers for driving the API process over HTTP as a browser would (no JavaScript).

``WebApp`` runs ``create_app`` against a real signer process and a database (SQLite or
PostgreSQL); ``Browser`` is one browser profile: a cookie jar, the dev provider's sign-in, the
CSRF token, and a software passkey to answer WebAuthn ceremonies.
"""

from __future__ import annotations

import base64
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import httpx
from fastapi import FastAPI
from sqlalchemy import Engine
from tests.fixtures.authenticators import SoftPasskey, b64url
from tests.fixtures.signer import SignerProcess

from seiwallet.api.app import create_app
from seiwallet.api.services import Services, build_services
from seiwallet.config import Settings

ORIGIN = "https://localhost"


def settings_for(data_dir: Path, database_url: str, origin: str = ORIGIN, **web: Any) -> Settings:
    return Settings(
        data_dir=data_dir,
        database_url=database_url,
        web={"public_url": origin, **web},
        signer={"origins": [origin], "rp_id": "localhost"},
    )


def start_signer(data_dir: Path, origin: str = ORIGIN, timelock_hours: float = 48) -> SignerProcess:
    data_dir.mkdir(parents=True, exist_ok=True)
    process = SignerProcess(data_dir)
    process.env["SEIWALLET_SIGNER__ORIGINS"] = f'["{origin}"]'
    process.env["SEIWALLET_SIGNER__RECOVERY_TIMELOCK_HOURS"] = str(timelock_hours)
    process.start()
    return process


@asynccontextmanager
async def web_app(
    settings: Settings, signer: SignerProcess, engine: Engine | None = None
) -> AsyncIterator[tuple[Services, FastAPI]]:
    """The app on ``settings``, talking to ``signer``; its clients closed afterwards."""
    client = signer.client()
    services = build_services(settings, signer=client, engine=engine)
    try:
        yield services, create_app(settings, services=services)
    finally:
        await services.aclose()
        await client.aclose()


class Browser:
    """One browser profile talking to the app: cookies, CSRF token, a passkey of its own."""

    def __init__(self, app: Any, origin: str = ORIGIN) -> None:
        self.http = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app, raise_app_exceptions=False), base_url=origin
        )
        self.origin = origin
        self.passkey = SoftPasskey(rp_id="localhost", origin=origin)

    async def aclose(self) -> None:
        await self.http.aclose()

    # -- sign-in through the development provider ----------------------------------------------
    async def sign_in(self, name: str, email: str, *, subject: str | None = None) -> Any:
        """Sign in as a (new or existing) test person; returns the final redirect response."""
        started = await self.http.get("/sign-in/dev", follow_redirects=False)
        assert started.status_code == 303, started.text
        authorize = urlsplit(started.headers["location"])
        params = dict(parse_qsl(authorize.query))
        if subject is not None:
            params["subject"] = subject
        else:
            params.update(new_name=name, new_email=email)
        chosen = await self.http.post("/dev-idp/authorize", data=params, follow_redirects=False)
        assert chosen.status_code == 303, chosen.text
        callback = urlsplit(chosen.headers["location"])
        return await self.http.get(f"{callback.path}?{callback.query}", follow_redirects=False)

    async def csrf(self, page: str = "/home") -> str:
        html = (await self.http.get(page)).text
        found = re.search(r'<meta name="csrf-token" content="([^"]*)"', html)
        assert found, f"no CSRF meta tag on {page}"
        return found.group(1)

    async def post_json(self, path: str, body: dict[str, Any], *, csrf: str | None) -> Any:
        headers = {"X-CSRF-Token": csrf} if csrf else {}
        return await self.http.post(path, json=body, headers=headers)

    # -- passkeys -------------------------------------------------------------------------------
    async def enrol_passkey(self, csrf: str, label: str = "Pixel 9") -> Any:
        options = await self.post_json("/v1/passkeys/registration/options", {}, csrf=csrf)
        assert options.status_code == 200, options.text
        challenge = _unb64(options.json()["options"]["challenge"])
        credential = self.passkey.registration_response(challenge)
        return await self.post_json(
            "/v1/passkeys/registration", {"credential": credential, "label": label}, csrf=csrf
        )

    async def approve(
        self, csrf: str, body: dict[str, Any], *, passkey: SoftPasskey | None = None
    ) -> Any:
        """Ask for an approval challenge and answer it; returns ``(approval_id, credential)``."""
        answer = await self.post_json("/v1/approvals/options", body, csrf=csrf)
        assert answer.status_code == 200, answer.text
        options = answer.json()["options"]
        credential = assertion(passkey or self.passkey, options["challenge"])
        return answer.json()["approval_id"], credential

    async def approve_transfer(self, csrf: str, transfer_id: str) -> Any:
        """Approve a transfer with this browser's passkey, as the send page does."""
        options = await self.post_json(
            f"/v1/transfers/{transfer_id}/approval-options", {}, csrf=csrf
        )
        assert options.status_code == 200, options.text
        return await self.post_json(
            f"/v1/transfers/{transfer_id}/approve",
            {
                "approval_id": options.json()["approval_id"],
                "credential": assertion(self.passkey, options.json()["options"]["challenge"]),
            },
            csrf=csrf,
        )


def assertion(passkey: SoftPasskey, challenge: str) -> dict[str, Any]:
    """What ``navigator.credentials.get()`` answers to ``challenge`` (base64url), as JSON."""
    signed = passkey.get_assertion(_unb64(challenge))
    return {
        "id": b64url(passkey.credential_id),
        "rawId": b64url(passkey.credential_id),
        "type": "public-key",
        "response": {
            "clientDataJSON": b64url(signed.client_data_json),
            "authenticatorData": b64url(signed.authenticator_data),
            "signature": b64url(signed.signature),
            "userHandle": b64url(signed.user_handle) if signed.user_handle else None,
        },
    }


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
