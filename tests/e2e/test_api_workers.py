"""Several API processes on one port (``seiwallet serve --workers 2``), as production runs them.

Both processes answer; a point-of-sale terminal's event stream held by one process sees the
invoice created, paid and approved through requests the *other* process served, and the
settlement the worker process confirmed: every process reads the payment events from the
database, none only its own. Which process serves a connection is read from ``/proc`` (see
:mod:`tests.e2e.api_processes`), so the test does not depend on how the kernel spreads
connections.
"""

from __future__ import annotations

import asyncio
import json
import os
import queue
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from tests.e2e.api_processes import ApiProcesses, client_port, worker_env
from tests.e2e.web_helpers import start_signer
from tests.fixtures.chain import free_port
from tests.fixtures.processes import die_with_parent
from tests.fixtures.signer import SignerProcess

from seiwallet.accounts.models import SessionKind
from seiwallet.accounts.oidc import VerifiedIdentity
from seiwallet.api.services import build_services
from seiwallet.chain.deploy import write_manifest
from seiwallet.chain.localnet import LocalChain
from seiwallet.config import Settings
from seiwallet.signer.approvals import DeviceApproval, challenge_bytes
from seiwallet.signer.client import SignerClient
from seiwallet.signer.service import approval_subject

pytestmark = [
    pytest.mark.chain,
    pytest.mark.slow,
    pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc"),
]

Events = queue.Queue[tuple[str, Any]]


class Person:
    """Someone with a wallet, an API token and (for the payer) a device key."""

    def __init__(self, user_id: str, wallet_id: str, token: str) -> None:
        self.user_id = user_id
        self.wallet_id = wallet_id
        self.token = token
        self.key = ec.generate_private_key(ec.SECP256R1())
        self.authenticator_id = f"dk_{user_id[:12]}"

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    def approval(self, digest_hex: str) -> dict[str, Any]:
        nonce, expires_at = os.urandom(16), int(time.time()) + 120
        challenge = challenge_bytes(
            approval_subject(self.wallet_id, bytes.fromhex(digest_hex)), nonce, expires_at
        )
        return DeviceApproval(
            authenticator_id=self.authenticator_id,
            nonce=nonce,
            expires_at=expires_at,
            signature=self.key.sign(challenge, ec.ECDSA(hashes.SHA256())),
        ).to_json()


def sign_up(env: dict[str, str], signer: SignerClient, names: list[str]) -> list[Person]:
    """People signed up on the platform's database, each with a device key and an API token
    (the sign-in itself is not what this test is about)."""
    settings = Settings(
        profile="local",
        data_dir=Path(env["SEIWALLET_DATA_DIR"]),
        database_url=env["SEIWALLET_DATABASE_URL"],
        rpc_url=env["SEIWALLET_RPC_URL"],
        web={"public_url": env["SEIWALLET_WEB__PUBLIC_URL"]},
        signer={"origins": [env["SEIWALLET_WEB__PUBLIC_URL"]]},
    )

    async def make() -> list[Person]:
        services = build_services(settings, signer=signer, migrate=False)
        people = []
        try:
            for name in names:
                result = await services.sign_in.complete(
                    VerifiedIdentity(
                        issuer="https://tests.example",
                        subject=name,
                        email=f"{name}@tests.example",
                        email_verified=True,
                    )
                )
                user = result.user
                assert user.wallet_id is not None
                _, token = services.sessions.open(user.id, SessionKind.API, label="test")
                person = Person(user.id, user.wallet_id, token)
                public = person.key.public_key().public_bytes(
                    Encoding.X962, PublicFormat.UncompressedPoint
                )
                await signer.add_authenticator(
                    user.id,
                    {
                        "kind": "device",
                        "id": person.authenticator_id,
                        "public_key": public.hex(),
                        "label": "test",
                    },
                )
                people.append(person)
        finally:
            await services.aclose()
            await signer.aclose()
        return people

    return asyncio.run(make())


def watch(base: str, path: str, headers: dict[str, str], events: Events) -> None:
    """Read a server-sent-event stream in a thread: ("open", client port), then (type, data)."""
    try:
        with (
            httpx.Client(base_url=base, timeout=httpx.Timeout(10, read=60)) as client,
            client.stream("GET", path, headers=headers) as stream,
        ):
            assert stream.status_code == 200, stream.read()
            events.put(("open", client_port(stream)))
            kind = ""
            for line in stream.iter_lines():
                if line.startswith("event: "):
                    kind = line[7:]
                elif line.startswith("data: "):
                    events.put((kind, json.loads(line[6:])))
                    if kind == "invoice.settled":
                        return
    except Exception as exc:  # the test thread reports it
        events.put(("error", repr(exc)))


def next_event(events: Events, wanted: str, timeout: float = 60) -> Any:
    """The next event of type ``wanted`` (others are skipped); fails on a stream error."""
    deadline = time.monotonic() + timeout
    while True:
        kind, data = events.get(timeout=max(0.1, deadline - time.monotonic()))
        assert kind != "error", data
        if kind == wanted:
            return data


@dataclass
class Platform:
    api: ApiProcesses
    env: dict[str, str]
    signer: SignerProcess


@pytest.fixture
def platform(tmp_path: Path, clean_chain: LocalChain, database_url: str) -> Iterator[Platform]:
    """Signer, ``seiwallet serve --workers 2`` and ``seiwallet worker`` on one database."""
    port = free_port()
    origin = f"http://127.0.0.1:{port}"
    data_dir = tmp_path / "platform"
    write_manifest(clean_chain.deployment, data_dir / "deployments" / "local.json")
    signer = start_signer(tmp_path / "signer-home", origin=origin)
    env = worker_env(
        data_dir=data_dir,
        database_url=database_url,
        origin=origin,
        signer_socket=signer.socket,
        signer_secret=signer.secret,
        rpc_url=clean_chain.rpc_url,
        # Follow from here, not from the deployment: earlier tests' blocks are not this one's.
        SEIWALLET_FOLLOWER_START_BLOCK=str(clean_chain.web3().eth.block_number),
    )
    api = ApiProcesses(env, workers=2, port=port, log_path=tmp_path / "serve.log")
    worker: subprocess.Popen[bytes] | None = None
    try:
        api.start()
        with (tmp_path / "worker.log").open("ab") as log:
            worker = subprocess.Popen(
                [sys.executable, "-m", "seiwallet", "worker"],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                preexec_fn=die_with_parent,  # noqa: PLW1509 - prctl only, no locks taken
            )
        yield Platform(api, env, signer)
    finally:
        if worker is not None and worker.poll() is None:
            worker.terminate()
            worker.wait(20)
        api.stop()
        signer.stop()


def test_two_api_processes_share_one_port_and_the_terminal_hears_the_other_one(
    platform: Platform,
) -> None:
    api = platform.api
    workers = api.worker_pids()
    assert len(workers) == 2, workers  # start() saw each of them answer
    merchant, payer = sign_up(platform.env, platform.signer.client(), ["mei", "pat"])

    with httpx.Client(base_url=api.base_url, headers=merchant.headers, timeout=30) as shop:
        made = shop.post("/v1/merchants", json={"name": "Lantau Tea Ltd"})
        assert made.status_code == 201, made.text
        store = shop.post(
            f"/v1/merchants/{made.json()['id']}/stores",
            json={"name": "Lantau Tea House", "country": "HK", "currency": "HKD"},
        )
        assert store.status_code == 201, store.text
        store_id = store.json()["id"]
        terminal = shop.post(f"/v1/stores/{store_id}/terminals", json={"name": "Counter 1"})
        assert terminal.status_code == 201, terminal.text
        terminal_id = terminal.json()["id"]

    # The terminal listens on one process…
    events: Events = queue.Queue()
    listener = threading.Thread(
        target=watch,
        args=(api.base_url, f"/v1/terminals/{terminal_id}/events", merchant.headers, events),
        daemon=True,
    )
    listener.start()
    kind, port = events.get(timeout=30)
    assert kind == "open", port
    listening = api.owner_of(port)
    assert listening in workers
    [other] = [pid for pid in workers if pid != listening]

    # …everything else goes through the other one.
    with api.client_on(other, headers=merchant.headers) as cashier:
        invoice = cashier.post(
            f"/v1/stores/{store_id}/invoices",
            json={"amount": "97.25", "terminal_id": terminal_id, "order_id": "A-1024"},
            headers={"Idempotency-Key": "counter-1-a1024"},
        )
        assert invoice.status_code == 201, invoice.text
        assert api.served_by(invoice) == other
    invoice_id = invoice.json()["id"]
    created = next_event(events, "invoice.created")
    assert created["data"]["invoice"]["id"] == invoice_id

    with api.client_on(other, headers=payer.headers) as phone:
        funded = phone.post("/v1/faucet", json={"token": "USDC", "amount": "100"})
        assert funded.status_code == 200, funded.text
        attempt = phone.post(f"/v1/invoices/{invoice_id}/pay", json={})
        assert attempt.status_code == 201, attempt.text
        signed = phone.post(
            f"/v1/payment-attempts/{attempt.json()['id']}/approve",
            json={"approvals": [payer.approval(attempt.json()["intent_digest"])]},
        )
        assert signed.status_code == 200, signed.text
        assert signed.json()["status"] == "signed"
        assert api.served_by(signed) == other

    processing = next_event(events, "invoice.processing")
    assert processing["data"]["invoice"]["id"] == invoice_id
    # The worker process relays the payment and its follower settles the invoice.
    settled = next_event(events, "invoice.settled", timeout=90)
    assert settled["data"]["invoice"]["status"] == "settled"
    listener.join(timeout=10)

    # Many requests on new connections: all answered, by both processes.
    seen = set()
    for _ in range(40):
        with httpx.Client(base_url=api.base_url, headers=merchant.headers, timeout=30) as http:
            answer = http.get(f"/v1/invoices/{invoice_id}")
            assert answer.status_code == 200, answer.text
            assert answer.json()["status"] == "settled"
            seen.add(api.served_by(answer))
    assert seen <= set(workers)

    # Stopping does not wait for terminals to hang up: their streams are cut (and resumed
    # elsewhere by the client); every worker exits cleanly.
    quiet: Events = queue.Queue()
    threading.Thread(
        target=watch,
        args=(api.base_url, f"/v1/terminals/{terminal_id}/events", merchant.headers, quiet),
        daemon=True,
    ).start()
    assert quiet.get(timeout=30)[0] == "open"
    assert api.process is not None
    supervisor = api.process
    started = time.monotonic()
    supervisor.terminate()
    assert supervisor.wait(30) == 0, api.log_tail()
    assert time.monotonic() - started < 25
    assert not [pid for pid in workers if Path(f"/proc/{pid}").exists()]
