"""Sending money over the API: faucet, balances, create → approve with a passkey → signed.

The local anvil chain with Circle's FiatToken, a real signer process, SQLite and PostgreSQL.
Every bad input the issue names is refused with a problem document and moves nothing.
"""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from sqlalchemy import Engine, update
from tests.e2e.web_helpers import Browser, settings_for, start_signer, web_app
from tests.fixtures.signer import SignerProcess

from seiwallet.api.services import Services
from seiwallet.chain.localnet import LocalChain
from seiwallet.config import LocalChainSettings
from seiwallet.transfers.models import Transfer

pytestmark = pytest.mark.chain

SANCTIONED = "0x000000000000000000000000000000000000dEaD"


@pytest.fixture
def signer_process(tmp_path: Path) -> Iterator[SignerProcess]:
    process = start_signer(tmp_path / "signer-home")
    yield process
    process.stop()


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


@pytest.fixture
async def browsers(app: tuple[Services, FastAPI]) -> AsyncIterator[Callable[[], Browser]]:
    opened: list[Browser] = []

    def new() -> Browser:
        opened.append(Browser(app[1]))
        return opened[-1]

    yield new
    for browser in opened:
        await browser.aclose()


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
        ("nobody@example.com", "USDC", "1", 404, "transfer.recipient_unknown"),
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
    ada, ada_csrf = await _person(browsers, "Ada", "ada@example.com")
    await ada.post_json("/v1/faucet", {"token": "USDC", "amount": "5"}, csrf=ada_csrf)
    for index in range(10):
        missed = await _send(
            ada, ada_csrf, {"recipient": f"p{index}@example.com", "token": "USDC", "amount": "1"},
            key=f"probe-{index}",
        )  # fmt: skip
        assert missed.status_code == 404
    slowed = await _send(
        ada, ada_csrf, {"recipient": "bob@example.com", "token": "USDC", "amount": "1"}, key="x"
    )
    assert slowed.status_code == 429
    assert slowed.json()["code"] == "transfer.lookup_rate_limited"
    assert int(slowed.headers["retry-after"]) > 0


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
