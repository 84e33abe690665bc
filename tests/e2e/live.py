"""A live API server (uvicorn on localhost) and people using it over real HTTP, for CLI tests."""

from __future__ import annotations

import base64
import contextlib
import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from tests.e2e.web_helpers import settings_for, start_signer
from tests.fixtures.authenticators import SoftPasskey, b64url
from tests.fixtures.browser import serve_app_at
from tests.fixtures.signer import SignerProcess

from seiwallet.api.app import create_app
from seiwallet.config import LocalChainSettings, SignerSettings


class Live:
    def __init__(self, tmp_path: Path, chain: Any = None) -> None:
        self.tmp_path = tmp_path
        self.chain = chain
        self.signer: SignerProcess | None = None
        self.app: Any = None

    def make(self, base_url: str) -> Any:
        # 127.0.0.1 rather than localhost: the cookie is then not Secure, so a plain-HTTP test
        # client keeps it (browsers treat only "localhost" as a secure context).
        origin = base_url.replace("localhost", "127.0.0.1")
        self.signer = start_signer(self.tmp_path / "signer-home", origin=origin)
        settings = settings_for(
            self.tmp_path, f"sqlite:///{self.tmp_path / 'w.sqlite3'}", origin=origin
        ).model_copy(
            update={
                "signer": SignerSettings(
                    socket=self.signer.socket, secret=self.signer.secret, origins=[origin]
                )
            }
        )
        if self.chain is not None:
            manifest = self.tmp_path / "deployments" / "local.json"
            manifest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(self.chain.settings.deployment_manifest_path, manifest)
            settings = settings.model_copy(
                update={
                    "local_chain": LocalChainSettings(port=self.chain.settings.local_chain.port)
                }
            )
        self.settings = settings
        self.app = create_app(settings)
        return self.app


@pytest.fixture
def people() -> Iterator[list[httpx.Client]]:
    """HTTP clients a test opens (people's browsers), closed after it."""
    clients: list[httpx.Client] = []
    yield clients
    for client in clients:
        client.close()


@contextlib.contextmanager
def live_server(tmp_path: Path, chain: Any = None) -> Iterator[tuple[str, Live]]:
    """The app on a free port with its own signer (and the local chain, if given)."""
    server = Live(tmp_path, chain)
    try:
        with serve_app_at(server.make) as base_url:
            yield base_url.replace("localhost", "127.0.0.1"), server
    finally:
        if server.signer is not None:
            server.signer.stop()


@pytest.fixture
def live(tmp_path: Path) -> Iterator[tuple[str, Live]]:
    with live_server(tmp_path) as running:
        yield running


class Person:
    """Someone signed in to the wallet app over HTTP, holding a passkey."""

    def __init__(
        self,
        base_url: str,
        opened: list[httpx.Client],
        *,
        name: str = "Grace Hopper",
        email: str = "grace@example.com",
    ) -> None:
        self.http = httpx.Client(base_url=base_url, timeout=10, follow_redirects=True)
        opened.append(self.http)
        self.passkey = SoftPasskey(rp_id="localhost", origin=base_url)
        started = self.http.get("/sign-in/dev")
        params = dict(httpx.URL(str(started.url)).params)
        params.update(new_name=name, new_email=email)
        self.http.post("/dev-idp/authorize", data=params)  # follows back to the app
        self.csrf = self._csrf("/setup/passkey")
        options = self.post("/v1/passkeys/registration/options", {}).json()["options"]
        credential = self.passkey.registration_response(_unb64(options["challenge"]))
        enrolled = self.post("/v1/passkeys/registration", {"credential": credential})
        assert enrolled.status_code == 200, enrolled.text

    def _csrf(self, page: str) -> str:
        found = re.search(r'name="csrf-token" content="([^"]+)"', self.http.get(page).text)
        assert found
        return found.group(1)

    def post(self, path: str, body: dict[str, Any]) -> httpx.Response:
        return self.http.post(path, json=body, headers={"X-CSRF-Token": self.csrf})

    def approve_device(self, user_code: str) -> httpx.Response:
        answer = self.post(
            "/v1/approvals/options", {"action": "authenticator.add", "user_code": user_code}
        )
        assert answer.status_code == 200, answer.text
        options = answer.json()["options"]
        signed = self.passkey.get_assertion(_unb64(options["challenge"]))
        credential = {
            "id": b64url(self.passkey.credential_id),
            "rawId": b64url(self.passkey.credential_id),
            "type": "public-key",
            "response": {
                "clientDataJSON": b64url(signed.client_data_json),
                "authenticatorData": b64url(signed.authenticator_data),
                "signature": b64url(signed.signature),
            },
        }
        return self.post(
            "/v1/device/approve",
            {
                "user_code": user_code,
                "approval_id": answer.json()["approval_id"],
                "credential": credential,
            },
        )


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
