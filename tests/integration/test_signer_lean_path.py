"""The signer's lean path for approved transfers decides and writes exactly what the general one
does.

Two signers start from one store (a copy of the same SQLite file, or of the same PostgreSQL
schema; the same master key, the same clock): one signs with the lean path
(``SignerService._sign_transfer``), the other with it switched off. The same batches —
transfers that sign, and transfers refused for every reason the lean path must hand back
(replay, expiry, foreign, duplicate or revoked authenticator, a signature over another intent,
limits, lists, quorum) — must give the same answers (signatures included: RFC 6979), the same
audit chain and the same nonce, spend and hourly-total rows.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from tests.fixtures.authenticators import SoftDeviceKey

from seiwallet.addresses import parse_evm_address
from seiwallet.signer.audit import AuditDecision
from seiwallet.signer.intents import intent_digest, parse_intent
from seiwallet.signer.keystore import KeyStore
from seiwallet.signer.masterkey import FileMasterKey
from seiwallet.signer.service import (
    RelyingParty,
    SignerService,
    action_digest,
    approval_subject,
)
from seiwallet.signer.store import SignerBase, SignerStore, create_signer_engine

NOW = 1_800_000_000
CHAIN_ID = 1329
TOKEN = parse_evm_address("0x" + "a0" * 20)
RECIPIENT = parse_evm_address("0x" + "b1" * 20)
DENIED = parse_evm_address("0x" + "c2" * 20)
#: Tables compared row for row between the two signers.
TABLES = ("signer_used_nonces", "signer_spends", "signer_spend_totals", "signer_audit")


@dataclass
class Wallet:
    id: str
    devices: dict[str, SoftDeviceKey] = field(default_factory=dict)

    def approve(
        self, intent: dict[str, Any], *who: str, digest: bytes | None = None, **overrides: Any
    ) -> list[dict[str, Any]]:
        digest = digest or intent_digest(parse_intent(intent))
        subject = approval_subject(self.id, digest)
        expires_at = overrides.pop("expires_at", NOW + 120)
        return [
            self.devices[name].approve(subject, os.urandom(16), expires_at).to_json()
            for name in who or ("phone",)
        ]


def _service(url: str, master_key: Path, schema: str | None) -> SignerService:
    store = SignerStore(create_signer_engine(url), schema=schema)
    store.create_schema()
    keys = KeyStore(FileMasterKey.open_or_create(master_key))
    relying_party = RelyingParty("localhost", ("https://localhost",))
    return SignerService(store, keys, relying_party=relying_party, clock=lambda: NOW)


def _clone(lean: SignerService, database_url: str, tmp_path: Path) -> SignerService:
    """A second signer on a copy of the lean one's store (its own file, or its own schema)."""
    master_key = tmp_path / "master.key"
    if database_url.startswith("sqlite"):
        source = Path(lean._store.engine.url.database or "")
        lean._store.engine.dispose()
        with sqlite3.connect(source) as connection:
            connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        copy = tmp_path / "general.sqlite3"
        shutil.copyfile(source, copy)
        return _service(f"sqlite:///{copy}", master_key, None)
    general = _service(database_url, master_key, "general")
    with general._store.engine.begin() as connection:
        for model in SignerBase.metadata.sorted_tables:
            connection.exec_driver_sql(f"DELETE FROM general.{model.name}")
            connection.exec_driver_sql(
                f"INSERT INTO general.{model.name} SELECT * FROM lean.{model.name}"
            )
    return general


def transfer(value: int, to: str = RECIPIENT, token: str = TOKEN) -> dict[str, Any]:
    return {
        "kind": "erc3009.transfer",
        "version": 1,
        "token": {
            "name": "USD Coin",
            "version": "2",
            "chain_id": str(CHAIN_ID),
            "verifying_contract": token,
        },
        "to": to,
        "amount_units": str(value),
        "valid_after": "0",
        "valid_before": str(NOW + 3600),
        "nonce": "0x" + os.urandom(32).hex(),
    }


def _set_policy(service: SignerService, wallet: Wallet, policy: dict[str, Any]) -> None:
    current = service.get_policy(wallet.id)
    update = {
        "kind": "policy.update",
        "version": 1,
        "expected_version": current["version"],
        "policy": policy,
    }
    (answer,) = service.sign(
        [{"wallet_id": wallet.id, "intent": update, "approvals": wallet.approve(update)}]
    )
    assert "result" in answer, answer


def _add_device(service: SignerService, wallet: Wallet, name: str) -> None:
    device = SoftDeviceKey(authenticator_id=f"{wallet.id}-{name}", wallet_id=wallet.id)
    spec = {"id": device.authenticator_id, "kind": "device", "public_key": device.public_key.hex()}
    digest = action_digest("authenticator.add", spec)
    service.add_authenticator(wallet.id, spec, wallet.approve({}, digest=digest))
    wallet.devices[name] = device


@pytest.fixture
def signers(
    database_url: str, tmp_path: Path
) -> Iterator[tuple[SignerService, SignerService, list[Wallet]]]:
    """The lean signer, the general one (on a copy of the same store) and the wallets."""
    schema = None if database_url.startswith("sqlite") else "lean"
    lean = _service(database_url, tmp_path / "master.key", schema)
    wallets = []
    for index in range(3):
        wallet = Wallet(f"wallet-{index}")
        phone = SoftDeviceKey(authenticator_id=f"{wallet.id}-phone", wallet_id=wallet.id)
        spec = {
            "id": phone.authenticator_id,
            "kind": "device",
            "public_key": phone.public_key.hex(),
        }
        lean.create_wallet(wallet.id, spec)
        wallet.devices["phone"] = phone
        _add_device(lean, wallet, "laptop")
        _add_device(lean, wallet, "old")
        wallets.append(wallet)
    for wallet in wallets:
        laptop = wallet.devices["laptop"].authenticator_id
        _set_policy(
            lean,
            wallet,
            {
                "tokens": [
                    {
                        "chain_id": CHAIN_ID,
                        "address": TOKEN,
                        "per_transaction_limit": "5000",
                        "daily_limit": "12000",
                    }
                ],
                "denylist": [DENIED],
                "quorum": [
                    {
                        "min_amount": "4000",
                        "required": 2,
                        "of": [wallet.devices["phone"].authenticator_id, laptop],
                    }
                ],
            },
        )
        old = wallet.devices["old"].authenticator_id
        lean.remove_authenticator(wallet.id, old, wallet.approve({}, digest=_removal(old)))
    general = _clone(lean, database_url, tmp_path)
    general._sign_transfer = lambda *_args: None  # type: ignore[method-assign]
    try:
        yield lean, general, wallets
    finally:
        for service in (lean, general):
            service._store.engine.dispose()


def _removal(authenticator_id: str) -> bytes:
    return action_digest("authenticator.remove", {"authenticator_id": authenticator_id})


def _rows(service: SignerService) -> dict[str, list[tuple[Any, ...]]]:
    with service._store.engine.connect() as connection:
        return {
            table.name: sorted((tuple(row) for row in connection.execute(select(table))), key=repr)
            for table in SignerBase.metadata.sorted_tables
            if table.name in TABLES
        }


def _batches(wallets: list[Wallet]) -> list[list[dict[str, Any]]]:
    """Two batches of requests: every outcome the lean path takes or hands back."""
    first: list[dict[str, Any]] = []
    second: list[dict[str, Any]] = []
    for wallet in wallets:
        ok = transfer(1_000)
        ok_approvals = wallet.approve(ok)
        other = transfer(1_001)
        quorum = transfer(4_500)
        first += [
            {"wallet_id": wallet.id, "intent": ok, "approvals": ok_approvals},
            # The same approval again, in the same batch: replayed.
            {"wallet_id": wallet.id, "intent": ok, "approvals": ok_approvals},
            # An approval of another intent.
            {"wallet_id": wallet.id, "intent": other, "approvals": wallet.approve(ok)},
            {"wallet_id": wallet.id, "intent": other, "approvals": wallet.approve(other)},
            # Expired; too long-lived; no approval at all.
            {
                "wallet_id": wallet.id,
                "intent": (late := transfer(7)),
                "approvals": wallet.approve(late, expires_at=NOW),
            },
            {
                "wallet_id": wallet.id,
                "intent": (far := transfer(8)),
                "approvals": wallet.approve(far, expires_at=NOW + 3600),
            },
            {"wallet_id": wallet.id, "intent": transfer(9), "approvals": []},
            # Over the per-transaction limit; to the denylist; quorum of one, then of two.
            {
                "wallet_id": wallet.id,
                "intent": (big := transfer(6_000)),
                "approvals": wallet.approve(big, "phone", "laptop"),
            },
            {
                "wallet_id": wallet.id,
                "intent": (denied := transfer(10, to=DENIED)),
                "approvals": wallet.approve(denied),
            },
            {"wallet_id": wallet.id, "intent": quorum, "approvals": wallet.approve(quorum)},
            {
                "wallet_id": wallet.id,
                "intent": (both := transfer(4_400)),
                "approvals": wallet.approve(both, "phone", "laptop"),
            },
            # The same device twice; a revoked device; a device of another wallet.
            {
                "wallet_id": wallet.id,
                "intent": (twice := transfer(11)),
                "approvals": wallet.approve(twice, "phone", "phone"),
            },
            {
                "wallet_id": wallet.id,
                "intent": (revoked := transfer(12)),
                "approvals": wallet.approve(revoked, "old"),
            },
            # A token without limits, and a wallet that does not exist.
            {
                "wallet_id": wallet.id,
                "intent": (free := transfer(50_000, token=DENIED)),
                "approvals": wallet.approve(free, "laptop"),
            },
            {"wallet_id": "nobody", "intent": ok, "approvals": ok_approvals},
        ]
        # The next batch: the first batch's approval again, and the daily limit reached.
        second += [
            {"wallet_id": wallet.id, "intent": ok, "approvals": ok_approvals},
            *(
                {
                    "wallet_id": wallet.id,
                    "intent": (spend := transfer(2_000)),
                    "approvals": wallet.approve(spend, "laptop"),
                }
                for _ in range(4)
            ),
        ]
    foreign = wallets[1]
    first.append(
        {
            "wallet_id": wallets[0].id,
            "intent": (stranger := transfer(13)),
            "approvals": Wallet(wallets[0].id, foreign.devices).approve(stranger),
        }
    )
    return [first, second]


def test_the_lean_path_answers_and_writes_what_the_general_path_does(
    signers: tuple[SignerService, SignerService, list[Wallet]],
) -> None:
    lean, general, wallets = signers
    taken = 0
    original = lean._sign_transfer

    def counting(*args: Any) -> dict[str, Any] | None:
        nonlocal taken
        result = original(*args)
        taken += result is not None
        return result

    lean._sign_transfer = counting  # type: ignore[method-assign]
    for batch in _batches(wallets):
        lean_answers = lean.sign(batch)
        general_answers = general.sign(batch)
        assert lean_answers == general_answers
    # Per wallet: the plain transfer and the other intent (the laptop's key is not known to the
    # signer before its first verification, so its approvals take the general path in the first
    # batch), then two spends of the second batch (6,401 spent: the third would pass 12,000).
    assert taken == len(wallets) * 4
    lean_rows, general_rows = _rows(lean), _rows(general)
    assert lean_rows == general_rows
    audit = lean_rows["signer_audit"]
    assert {row[4] for row in audit} == {AuditDecision.SIGNED, AuditDecision.REFUSED}
    assert lean._store.verify_audit().ok
    assert general._store.verify_audit().ok
