"""Sending money over the API: faucet, balances, create → approve with a passkey → signed.

The local anvil chain with Circle's FiatToken, a real signer process, SQLite and PostgreSQL.
Every bad input the issue names is refused with a problem document and moves nothing.
"""

from __future__ import annotations

import asyncio
import re
import shutil
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from sqlalchemy import Engine, update
from tests.e2e.web_helpers import Browser, settings_for, web_app
from tests.fixtures.signer import SignerProcess

from seiwallet.api.services import Services
from seiwallet.chain.follower import Follower
from seiwallet.chain.localnet import LocalChain
from seiwallet.chain.rpc import RpcClient
from seiwallet.chain.sender import TransactionSender
from seiwallet.cli.runtime import event_decoder
from seiwallet.config import LocalChainSettings
from seiwallet.deployments import Contracts
from seiwallet.transfers.handlers import InvitationEventHandler, TransferEventHandler
from seiwallet.transfers.models import Transfer
from seiwallet.transfers.relayer import Relayer
from seiwallet.transfers.tasks import InvitationWorker

pytestmark = pytest.mark.chain

SANCTIONED = "0x000000000000000000000000000000000000dEaD"


@pytest.fixture
async def app(
    tmp_path: Path,
    database_url: str,
    engine: Engine,
    signer_process: SignerProcess,
    clean_chain: LocalChain,
) -> AsyncIterator[tuple[Services, FastAPI]]:
    manifest = tmp_path / "deployments" / "local.json"
    manifest.parent.mkdir(parents=True)
    shutil.copy(clean_chain.settings.deployment_manifest_path, manifest)
    sanctions = tmp_path / "sanctions.txt"
    sanctions.write_text(f"# test list\n{SANCTIONED}\n")
    settings = settings_for(tmp_path, database_url).model_copy(
        update={
            "local_chain": LocalChainSettings(port=clean_chain.settings.local_chain.port),
        }
    )
    settings.compliance.sanctions_list = sanctions
    async with web_app(settings, signer_process, engine) as built:
        yield built


async def _person(browsers: Callable[[], Browser], name: str, email: str) -> tuple[Browser, str]:
    browser = browsers()
    await browser.sign_in(name, email)
    csrf = await browser.csrf("/setup/passkey")
    assert (await browser.enrol_passkey(csrf)).status_code == 200
    return browser, csrf


async def _send(browser: Browser, csrf: str, body: dict[str, Any], key: str = "k-1") -> Any:
    return await browser.http.post(
        "/v1/transfers", json=body, headers={"X-CSRF-Token": csrf, "Idempotency-Key": key}
    )


async def test_send_to_an_e_mail_alias_with_a_passkey_approval(app, browsers) -> None:
    ada, ada_csrf = await _person(browsers, "Ada", "ada@example.com")
    bob, _ = await _person(browsers, "Bob", "bob@example.com")
    bob_address = (await bob.http.get("/v1/me")).json()["wallet"]["address"]

    funded = await ada.post_json("/v1/faucet", {"token": "USDC", "amount": "100"}, csrf=ada_csrf)
    assert funded.status_code == 200, funded.text
    balances = {b["token"]: b for b in (await ada.http.get("/v1/balances")).json()["balances"]}
    assert balances["USDC"]["amount"] == "100"

    body = {"recipient": "bob@example.com", "token": "USDC", "amount": "12.50", "note": "lunch"}
    created = await _send(ada, ada_csrf, body)
    assert created.status_code == 201, created.text
    transfer = created.json()
    assert transfer["status"] == "awaiting_approval"
    assert transfer["to"] == bob_address
    assert transfer["intent"]["amount_units"] == "12500000"
    # The same key and body: the same transfer, not a second one.
    again = await _send(ada, ada_csrf, body)
    assert again.status_code == 200
    assert again.json()["id"] == transfer["id"]
    # The same key with another body is refused.
    other = await _send(ada, ada_csrf, {**body, "amount": "13"})
    assert other.status_code == 422
    assert other.json()["code"] == "transfer.idempotency_conflict"
    # In flight, it counts against what can still be sent.
    balances = {b["token"]: b for b in (await ada.http.get("/v1/balances")).json()["balances"]}
    assert balances["USDC"]["amount"] == "100"  # awaiting approval does not hold funds yet

    approved = await ada.approve_transfer(ada_csrf, transfer["id"])
    assert approved.status_code == 200, approved.text
    assert approved.json()["status"] == "signed"
    balances = {b["token"]: b for b in (await ada.http.get("/v1/balances")).json()["balances"]}
    assert balances["USDC"]["amount"] == "87.5"  # 12.50 is now in flight
    # Bob sees it coming.
    incoming = (await bob.http.get("/v1/transfers")).json()["transfers"]
    assert [t["direction"] for t in incoming] == ["received"]
    csv_text = (await ada.http.get("/v1/transfers.csv")).text
    assert "12.5" in csv_text
    assert "bob@example.com" in csv_text


BOB = "bob@example.com"


@pytest.mark.parametrize(
    ("recipient", "token", "amount", "status", "code"),
    [
        (BOB, "USDC", "0", 422, "input.invalid"),
        (BOB, "USDC", "-1", 422, "amount.invalid"),
        (BOB, "USDC", "1.0000001", 422, "amount.invalid"),
        (BOB, "DOGE", "1", 400, "transfer.unknown_token"),
        ("sei1nobodyweknow", "USDC", "1", 404, "transfer.recipient_unknown"),
        ("nobody@example", "USDC", "1", 422, "transfer.recipient_invalid"),
        ("hello there", "USDC", "1", 422, "transfer.recipient_invalid"),
        ("0x1234", "USDC", "1", 422, "transfer.recipient_invalid"),
        (SANCTIONED, "USDC", "1", 403, "compliance.denied"),
        (BOB, "USDC", "20000", 403, "compliance.denied"),
        (BOB, "USDC", "150", 422, "transfer.insufficient_balance"),
    ],
)
async def test_bad_transfers_are_refused_and_nothing_is_kept(
    app, browsers, recipient: str, token: str, amount: str, status: int, code: str
) -> None:
    body = {"recipient": recipient, "token": token, "amount": amount}
    ada, ada_csrf = await _person(browsers, "Ada", "ada@example.com")
    await _person(browsers, "Bob", "bob@example.com")
    await ada.post_json("/v1/faucet", {"token": "USDC", "amount": "100"}, csrf=ada_csrf)
    refused = await _send(ada, ada_csrf, body, key="bad-1")
    assert refused.status_code == status, refused.text
    assert refused.headers["content-type"] == "application/problem+json"
    assert refused.json()["code"] == code
    assert (await ada.http.get("/v1/transfers")).json()["transfers"] == []


async def test_sending_needs_an_idempotency_key_and_not_to_yourself(app, browsers) -> None:
    ada, ada_csrf = await _person(browsers, "Ada", "ada@example.com")
    await ada.post_json("/v1/faucet", {"token": "USDC", "amount": "5"}, csrf=ada_csrf)
    no_key = await ada.http.post(
        "/v1/transfers",
        json={"recipient": "ada@example.com", "token": "USDC", "amount": "1"},
        headers={"X-CSRF-Token": ada_csrf},
    )
    assert no_key.status_code == 422
    assert "Idempotency-Key" in no_key.json()["detail"]
    myself = await _send(
        ada, ada_csrf, {"recipient": "ada@example.com", "token": "USDC", "amount": "1"}
    )
    assert myself.status_code == 422
    assert myself.json()["code"] == "transfer.self"


async def test_probing_aliases_is_slowed_down(app, browsers) -> None:
    """Every well-formed alias gets the same answers until a transfer is created; a created one
    tells whether the recipient joined, so new aliases per sender are limited (10 a day)."""
    ada, ada_csrf = await _person(browsers, "Ada", "ada@example.com")
    await ada.post_json("/v1/faucet", {"token": "USDC", "amount": "5"}, csrf=ada_csrf)
    for index in range(10):
        invited = await _send(
            ada, ada_csrf, {"recipient": f"p{index}@example.com", "token": "USDC", "amount": "1"},
            key=f"probe-{index}",
        )  # fmt: skip
        assert invited.status_code == 201, invited.text
        assert invited.json()["invitation"]["status"] == "pending"
    slowed = await _send(
        ada, ada_csrf, {"recipient": "p10@example.com", "token": "USDC", "amount": "1"}, key="x"
    )
    assert slowed.status_code == 429
    assert slowed.json()["code"] == "transfer.invitation_rate_limited"
    assert int(slowed.headers["retry-after"]) > 0
    # Someone already invited is no new information: still allowed.
    again = await _send(
        ada, ada_csrf, {"recipient": "P0@example.com", "token": "USDC", "amount": "1"}, key="y"
    )
    assert again.status_code == 201
    # Misses that remain (sei1 addresses we do not know) are slowed down as before.
    for index in range(10):
        missed = await _send(
            ada, ada_csrf, {"recipient": f"sei1unknown{index}", "token": "USDC", "amount": "1"},
            key=f"miss-{index}",
        )  # fmt: skip
        assert missed.status_code == 404
    limited = await _send(
        ada, ada_csrf, {"recipient": "sei1unknownz", "token": "USDC", "amount": "1"}, key="z"
    )
    assert limited.status_code == 429
    assert limited.json()["code"] == "transfer.lookup_rate_limited"


async def test_an_invitation_waits_until_the_recipient_joins_and_proves_the_alias(
    app, browsers, clean_chain: LocalChain
) -> None:
    services, _ = app
    ada, ada_csrf = await _person(browsers, "Ada", "ada@example.com")
    funded = await ada.post_json("/v1/faucet", {"token": "USDC", "amount": "100"}, csrf=ada_csrf)
    assert funded.status_code == 200, funded.text
    escrow = clean_chain.deployment.invite_escrow
    assert escrow is not None

    created = await _send(
        ada, ada_csrf, {"recipient": "Carol@Example.com", "token": "USDC", "amount": "12.50"}
    )
    assert created.status_code == 201, created.text
    transfer = created.json()
    assert transfer["to"] == escrow
    assert transfer["recipient"] == "carol@example.com"
    invitation = transfer["invitation"]
    assert invitation["status"] == "pending"
    assert invitation["escrow"] == escrow
    assert invitation["invitation_id"] == transfer["intent"]["nonce"]
    assert "salt" not in invitation
    approved = await ada.approve_transfer(ada_csrf, transfer["id"])
    assert approved.status_code == 200, approved.text
    assert approved.json()["status"] == "signed"

    async with Worker(services, clean_chain) as worker:
        await worker.until(lambda t: t["status"] == "confirmed", ada, transfer["id"])
        shown = (await ada.http.get(f"/v1/transfers/{transfer['id']}")).json()
        assert shown["invitation"]["status"] == "open"
        page = (await ada.http.get(f"/transfers/{transfer['id']}")).text
        assert "Waiting for carol@example.com to join until" in page
        history = (await ada.http.get("/history")).text
        assert "Waiting to join" in history
        # The invited address hears who sent how much, and where to sign up; nothing more.
        await worker.round()
        [told] = services.mailbox.messages(10, recipient="carol@example.com")
        assert told.subject == "Ada sent you 12.50 USDC"
        assert "0x" not in told.body

        # Carol signs up with another address, then proves the invited one with a code.
        carol, carol_csrf = await _person(browsers, "Carol", "carol.work@example.com")
        started = await carol.post_json(
            "/v1/aliases", {"kind": "email", "value": "carol@example.com"}, csrf=carol_csrf
        )
        assert started.status_code == 202, started.text
        code = _code_in(services, "carol@example.com")
        verified = await carol.post_json("/v1/aliases/verify", {"code": code}, csrf=carol_csrf)
        assert verified.status_code == 200, verified.text

        await worker.until(
            lambda t: (t["invitation"] or {}).get("status") == "released", ada, transfer["id"]
        )
    carol_address = (await carol.http.get("/v1/me")).json()["wallet"]["address"]
    received = (await carol.http.get("/v1/transfers")).json()["transfers"]
    assert [(t["id"], t["direction"], t["amount"]) for t in received] == [
        (transfer["id"], "received", "12.5")
    ]
    balances = {b["token"]: b for b in (await carol.http.get("/v1/balances")).json()["balances"]}
    assert balances["USDC"]["amount"] == "12.5"
    done = (await ada.http.get(f"/v1/transfers/{transfer['id']}")).json()["invitation"]
    assert done["released_to"] == carol_address
    assert (
        "Claimed by carol@example.com" in (await ada.http.get(f"/transfers/{transfer['id']}")).text
    )


def _code_in(services: Services, to: str) -> str:
    for message in services.mailbox.messages(20, recipient=to):
        found = re.search(r"\b(\d{6})\b", message.body)
        if "code" in message.subject.lower() and found:
            return found.group(1)
    raise AssertionError(f"no code was sent to {to}")


class Worker:
    """The worker's relayer, follower and invitation jobs, run in the test's process."""

    def __init__(self, services: Services, chain: LocalChain) -> None:
        self._services = services
        self._chain = chain

    async def __aenter__(self) -> Worker:
        chain, db = self._chain, self._services.db
        self.rpc = RpcClient(chain.rpc_url)
        escrow = chain.deployment.invite_escrow
        assert escrow is not None
        chain_id = chain.deployment.chain_id
        contracts = Contracts(
            router=chain.deployment.router,
            tokens={s: t.address for s, t in chain.deployment.tokens.items()},
            deployed_at=0,
            invite_escrow=escrow,
        )
        self.relayer = Relayer(
            self.rpc,
            db,
            [
                TransactionSender(
                    self.rpc, chain.accounts.sponsors[1], chain_id=chain_id, sessions=db
                )
            ],
            chain_id=chain_id,
            escrow=escrow,
        )
        self.follower = Follower(
            self.rpc,
            db,
            chain_id=chain_id,
            decoder=event_decoder(contracts),
            start_block=max(0, await self.rpc.block_number() - 20),
            handlers=[TransferEventHandler(), InvitationEventHandler()],
        )
        self.invitations = InvitationWorker(
            self.rpc,
            db,
            TransactionSender(self.rpc, chain.accounts.releaser, chain_id=chain_id, sessions=db),
            chain_id=chain_id,
            escrow=escrow,
            decoder=event_decoder(contracts),
            mailer=self._services.mailbox,
        )
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.rpc.aclose()

    async def round(self) -> None:
        await self.relayer.submit_once()
        await self.relayer.track_once()
        await self.follower.poll()
        await self.invitations.run_once()

    async def until(self, done: Callable[[dict[str, Any]], bool], who: Browser, tid: str) -> None:
        for _ in range(300):
            await self.round()
            if done((await who.http.get(f"/v1/transfers/{tid}")).json()):
                return
            await asyncio.sleep(0.05)
        raise AssertionError("the transfer did not get there")


async def test_an_approval_after_the_window_expires_the_transfer(app, browsers) -> None:
    services, _ = app
    ada, ada_csrf = await _person(browsers, "Ada", "ada@example.com")
    await _person(browsers, "Bob", "bob@example.com")
    await ada.post_json("/v1/faucet", {"token": "USDC", "amount": "5"}, csrf=ada_csrf)
    created = await _send(ada, ada_csrf, {"recipient": BOB, "token": "USDC", "amount": "1"})
    transfer_id = created.json()["id"]
    with services.db.begin() as db:  # the person walked away for 11 minutes
        db.execute(
            update(Transfer)
            .where(Transfer.id == transfer_id)
            .values(created_at=datetime.now(UTC) - timedelta(minutes=11))
        )
    late = await ada.approve_transfer(ada_csrf, transfer_id)
    assert late.status_code == 409
    assert late.json()["code"] == "transfer.not_awaiting_approval"
    assert (await ada.http.get(f"/v1/transfers/{transfer_id}")).json()["status"] == "expired"
