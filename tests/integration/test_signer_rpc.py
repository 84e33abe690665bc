"""The signer as its own process, over its real RPC (Unix socket + shared secret)."""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from eth_account import Account
from eth_account.messages import encode_typed_data
from tests.fixtures.authenticators import SoftDeviceKey, SoftPasskey
from tests.fixtures.signer import SignerProcess

from seiwallet.chain.tokens import Authorization3009, TokenDomain, authorization_typed_data
from seiwallet.signer.approvals import DeviceApproval
from seiwallet.signer.client import SignerClient
from seiwallet.signer.errors import ApprovalRefused, PolicyDeclined, SignerUnauthorized
from seiwallet.signer.export import decrypt_export
from seiwallet.signer.intents import intent_digest, parse_intent
from seiwallet.signer.service import action_digest, approval_subject

USDC = TokenDomain("USD Coin", "2", 713715, "0x8464135c8F25Da09e49BC8782676a84730C318bC")
RECIPIENT = "0x70997970C51812dc3A010C7d01b50e0d17dc79C8"


@dataclass
class Wallet:
    id: str
    address: str
    devices: dict[str, SoftDeviceKey]

    def approve(self, intent: dict[str, Any], *who: str, **overrides: Any) -> list[dict[str, Any]]:
        digest = intent_digest(parse_intent(intent))
        subject = approval_subject(self.id, digest)
        now = int(time.time())
        approvals = []
        for name in who or ("phone",):
            approval: DeviceApproval = self.devices[name].approve(
                subject,
                overrides.get("nonce", os.urandom(16)),
                overrides.get("expires_at", now + 120),
            )
            approvals.append(approval.to_json())
        return approvals


@pytest.fixture
async def client(signer: SignerProcess) -> AsyncIterator[SignerClient]:
    async with signer.client() as rpc:
        yield rpc


async def new_wallet(client: SignerClient, *extra_devices: str) -> Wallet:
    devices = {"phone": SoftDeviceKey(authenticator_id="phone")}
    wallet_id = "w-" + os.urandom(4).hex()
    created = await client.create_wallet(
        wallet_id,
        {"id": "phone", "kind": "device", "public_key": devices["phone"].public_key.hex()},
    )
    for name in extra_devices:
        devices[name] = SoftDeviceKey(authenticator_id=name)
        added = await _add_device(client, wallet_id, devices, name)
        # Approved by the wallet's existing device: active at once, no recovery time-lock.
        assert added["active_from"] <= int(time.time())
    return Wallet(wallet_id, created["address"], devices)


async def _add_device(
    client: SignerClient, wallet_id: str, devices: dict[str, SoftDeviceKey], name: str
) -> dict[str, Any]:
    spec = {"id": name, "kind": "device", "public_key": devices[name].public_key.hex()}
    subject = approval_subject(wallet_id, action_digest("authenticator.add", spec))
    approval = devices["phone"].approve(subject, os.urandom(16), int(time.time()) + 120)
    return await client.add_authenticator(wallet_id, spec, [approval.to_json()])


def transfer(value: int = 1_000_000, to: str = RECIPIENT) -> dict[str, Any]:
    now = int(time.time())
    return {
        "kind": "erc3009.transfer",
        "version": 1,
        "token": {
            "name": USDC.name,
            "version": USDC.version,
            "chain_id": str(USDC.chain_id),
            "verifying_contract": USDC.verifying_contract,
        },
        "to": to,
        "amount_units": str(value),
        "valid_after": str(now - 60),
        "valid_before": str(now + 3600),
        "nonce": "0x" + os.urandom(32).hex(),
    }


async def test_wrong_or_missing_secret_is_refused(signer: SignerProcess) -> None:
    async with signer.client("wrong-secret") as rpc:
        with pytest.raises(SignerUnauthorized):
            await rpc.health()
    transport = httpx.AsyncHTTPTransport(uds=str(signer.socket))
    async with httpx.AsyncClient(transport=transport, base_url="http://signer") as raw:
        response = await raw.post("/v1/create_wallet", json={"wallet_id": "intruder"})
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "signer.unauthorized"
    async with signer.client() as rpc:
        assert (await rpc.health())["status"] == "ok"


async def test_signed_transfer_recovers_to_the_wallet(client: SignerClient) -> None:
    wallet = await new_wallet(client)
    intent = transfer()
    result = await client.sign(wallet.id, intent, wallet.approve(intent))
    terms = Authorization3009(
        from_address=wallet.address,
        to=RECIPIENT,
        value=1_000_000,
        valid_after=int(intent["valid_after"]),
        valid_before=int(intent["valid_before"]),
        nonce=bytes.fromhex(intent["nonce"][2:]),
    )
    # eth-account's own EIP-712 encoder checks what the signer signed.
    message = authorization_typed_data(USDC, terms)
    recovered = Account.recover_message(
        encode_typed_data(full_message=message), signature=bytes.fromhex(result["signature"][2:])
    )
    assert recovered == wallet.address


async def test_approval_for_one_intent_cannot_sign_another(client: SignerClient) -> None:
    wallet = await new_wallet(client)
    approved, other = transfer(1), transfer(999_999)
    with pytest.raises(ApprovalRefused):
        await client.sign(wallet.id, other, wallet.approve(approved))


async def test_replayed_and_expired_approvals_are_refused(client: SignerClient) -> None:
    wallet = await new_wallet(client)
    intent = transfer()
    approvals = wallet.approve(intent)
    await client.sign(wallet.id, intent, approvals)
    with pytest.raises(ApprovalRefused, match="replayed"):
        await client.sign(wallet.id, intent, approvals)
    with pytest.raises(ApprovalRefused, match="expired"):
        await client.sign(
            wallet.id, intent, wallet.approve(intent, expires_at=int(time.time()) - 1)
        )


async def test_policy_change_needs_approval_and_quorum_is_enforced(client: SignerClient) -> None:
    wallet = await new_wallet(client, "partner")
    current = await client.get_policy(wallet.id)
    update = {
        "kind": "policy.update",
        "version": 1,
        "expected_version": current["version"],
        "policy": {
            "quorum": [{"min_amount": "5000000", "required": 2, "of": ["phone", "partner"]}],
        },
    }
    with pytest.raises(PolicyDeclined, match="quorum"):
        await client.sign(wallet.id, update, [])
    changed = await client.sign(wallet.id, update, wallet.approve(update))
    assert changed["policy_version"] == current["version"] + 1

    big = transfer(10_000_000)
    with pytest.raises(PolicyDeclined, match="quorum"):
        await client.sign(wallet.id, big, wallet.approve(big))
    big = transfer(10_000_000)
    signed = await client.sign(wallet.id, big, wallet.approve(big, "phone", "partner"))
    assert signed["signature"].startswith("0x")


async def test_fifty_concurrent_requests_cannot_exceed_the_daily_limit(
    client: SignerClient,
) -> None:
    wallet = await new_wallet(client)
    current = await client.get_policy(wallet.id)
    update = {
        "kind": "policy.update",
        "version": 1,
        "expected_version": current["version"],
        "policy": {
            "tokens": [
                {
                    "chain_id": USDC.chain_id,
                    "address": USDC.verifying_contract,
                    "daily_limit": "10000000",
                }
            ]
        },
    }
    await client.sign(wallet.id, update, wallet.approve(update))
    intents = [transfer(1_000_000) for _ in range(50)]
    results = await asyncio.gather(
        *(client.sign(wallet.id, i, wallet.approve(i)) for i in intents), return_exceptions=True
    )
    signed = [r for r in results if isinstance(r, dict)]
    declined = [r for r in results if isinstance(r, PolicyDeclined)]
    assert len(signed) == 10
    assert len(declined) == 40
    assert all(e.rule == "daily_limit" for e in declined)


async def test_concurrent_batches_cannot_exceed_the_daily_limit_either(
    client: SignerClient,
) -> None:
    """Batches run on worker threads; the wallet's lock still serializes their decisions."""
    wallet = await new_wallet(client)
    current = await client.get_policy(wallet.id)
    update = {
        "kind": "policy.update",
        "version": 1,
        "expected_version": current["version"],
        "policy": {
            "tokens": [
                {
                    "chain_id": USDC.chain_id,
                    "address": USDC.verifying_contract,
                    "daily_limit": "10000000",
                }
            ]
        },
    }
    await client.sign(wallet.id, update, wallet.approve(update))
    batches = [[transfer(1_000_000) for _ in range(8)] for _ in range(4)]
    answers = await asyncio.gather(
        *(
            client.sign_batch([(wallet.id, i, wallet.approve(i)) for i in batch])
            for batch in batches
        )
    )
    results = [result for answer in answers for result in answer]
    assert sum(isinstance(r, dict) for r in results) == 10
    declined = [r for r in results if isinstance(r, PolicyDeclined)]
    assert len(declined) == 22
    assert all(e.rule == "daily_limit" for e in declined)


async def test_a_removed_device_cannot_approve_even_once_its_key_is_known(
    client: SignerClient,
) -> None:
    """The signer checks signatures ahead under the keys it has seen; removing the device still
    refuses its approvals (its key's signatures verify, the stored authenticator does not)."""
    wallet = await new_wallet(client, "laptop")
    for _ in range(2):  # the laptop's key is now known to the signer's check-ahead
        intent = transfer()
        await client.sign(wallet.id, intent, wallet.approve(intent, "laptop"))
    subject = approval_subject(
        wallet.id, action_digest("authenticator.remove", {"authenticator_id": "laptop"})
    )
    approval = wallet.devices["phone"].approve(subject, os.urandom(16), int(time.time()) + 120)
    await client.remove_authenticator(wallet.id, "laptop", [approval.to_json()])
    intent = transfer()
    with pytest.raises(ApprovalRefused, match="revoked"):
        await client.sign(wallet.id, intent, wallet.approve(intent, "laptop"))
    # A forgery under a key the signer never stored is refused as such, whatever it saw before.
    forger = SoftDeviceKey(authenticator_id="phone")
    intent = transfer()
    forged = forger.approve(
        approval_subject(wallet.id, intent_digest(parse_intent(intent))),
        os.urandom(16),
        int(time.time()) + 120,
    )
    with pytest.raises(ApprovalRefused, match="bad_signature"):
        await client.sign(wallet.id, intent, [forged.to_json()])


def verify_audit(signer: SignerProcess) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "seiwallet", "signer", "verify-audit"],
        env=signer.env,
        capture_output=True,
        text=True,
        check=False,
    )


async def test_audit_chain_verifies_and_tampering_is_found(
    client: SignerClient, signer: SignerProcess
) -> None:
    wallet = await new_wallet(client)
    for _ in range(3):
        intent = transfer()
        await client.sign(wallet.id, intent, wallet.approve(intent))
    entries = await client.audit()
    assert [e["decision"] for e in entries][-3:] == ["signed"] * 3
    check = await asyncio.to_thread(verify_audit, signer)
    assert check.returncode == 0, check.stderr
    assert "intact" in check.stdout
    with sqlite3.connect(signer.data_dir / "signer" / "signer.sqlite3") as db:
        db.execute(
            "UPDATE signer_audit SET entry = replace(entry, '\"signed\"', '\"refused\"') "
            "WHERE seq = 2"
        )
    check = await asyncio.to_thread(verify_audit, signer)
    assert check.returncode == 1
    assert "entry 2" in check.stderr


# Schema 1's audit table, as the signer created it before schema 2 (test_signer_store.py
# checks the upgrade on both databases; here: a real signer process and the CLI).
_SCHEMA_1_AUDIT = """
CREATE TABLE signer_audit (
    seq BIGINT NOT NULL, at BIGINT NOT NULL, wallet_id VARCHAR(64), kind VARCHAR(32) NOT NULL,
    intent_digest VARCHAR(66), decision VARCHAR(16) NOT NULL, rule VARCHAR(64), reason TEXT,
    approvals JSON NOT NULL, entry TEXT NOT NULL, prev_hash BLOB NOT NULL, hash BLOB NOT NULL,
    CONSTRAINT pk_signer_audit PRIMARY KEY (seq)
);
CREATE INDEX ix_signer_audit_wallet ON signer_audit (wallet_id, seq);
"""


def _back_to_schema_1(signer: SignerProcess) -> None:
    """Rewrite a stopped signer's store as schema 1 stored it (same records, same hashes)."""
    with sqlite3.connect(signer.data_dir / "signer" / "signer.sqlite3") as db:
        rows = db.execute(
            "SELECT seq, at, wallet_id, kind, decision, entry, hash FROM signer_audit ORDER BY seq"
        ).fetchall()
        db.executescript("DROP TABLE signer_audit;" + _SCHEMA_1_AUDIT)
        prev = bytes(32)
        for seq, at, wallet_id, kind, decision, entry, link in rows:
            body = json.loads(entry)
            approvals = json.dumps(body["approvals"], sort_keys=True, separators=(",", ":"))
            copies = (body["intent_digest"], body["rule"], body["reason"], approvals)
            db.execute(
                "INSERT INTO signer_audit (seq, at, wallet_id, kind, decision, entry, hash, "
                "prev_hash, intent_digest, rule, reason, approvals) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (seq, at, wallet_id, kind, decision, entry, link, prev, *copies),
            )
            prev = link
        db.execute("UPDATE signer_meta SET value = '1' WHERE key = 'schema_version'")


def _schema_version(signer: SignerProcess) -> str:
    with sqlite3.connect(signer.data_dir / "signer" / "signer.sqlite3") as db:
        (value,) = db.execute(
            "SELECT value FROM signer_meta WHERE key = 'schema_version'"
        ).fetchone()
    return str(value)


async def test_a_schema_1_store_is_upgraded_and_its_log_verifies_across_the_upgrade(
    signer: SignerProcess,
) -> None:
    async with signer.client() as rpc:
        wallet = await new_wallet(rpc)
        for _ in range(2):
            intent = transfer()
            await rpc.sign(wallet.id, intent, wallet.approve(intent))
        before = await rpc.audit()
    signer.stop()
    _back_to_schema_1(signer)
    signer.start()  # upgrades the store before it serves
    assert _schema_version(signer) == "2"
    async with signer.client() as rpc:
        assert await rpc.audit() == before  # what the log says, unchanged
        intent = transfer()
        await rpc.sign(wallet.id, intent, wallet.approve(intent))
        after = await rpc.audit()
    assert after[: len(before)] == before
    assert [e["kind"] for e in after[len(before) :]] == ["erc3009.transfer"]
    check = await asyncio.to_thread(verify_audit, signer)
    assert check.returncode == 0, check.stderr
    assert f"{len(after)} entries" in check.stdout


async def test_a_schema_1_log_that_does_not_verify_stops_the_upgrade(
    signer: SignerProcess,
) -> None:
    async with signer.client() as rpc:
        wallet = await new_wallet(rpc)
        intent = transfer()
        await rpc.sign(wallet.id, intent, wallet.approve(intent))
    signer.stop()
    _back_to_schema_1(signer)
    with sqlite3.connect(signer.data_dir / "signer" / "signer.sqlite3") as db:
        # A copied column that no longer says what the hashed entry says.
        db.execute("UPDATE signer_audit SET rule = 'daily_limit' WHERE seq = 2")
    check = await asyncio.to_thread(verify_audit, signer)
    assert check.returncode == 1
    assert "does not verify at record 2" in check.stderr
    assert "rule" in check.stderr
    assert _schema_version(signer) == "1"  # nothing was changed


async def test_restart_keeps_keys_and_export_decrypts_to_the_address(
    signer: SignerProcess,
) -> None:
    async with signer.client() as rpc:
        wallet = await new_wallet(rpc)
    signer.stop()
    signer.start()
    recipient = ec.generate_private_key(ec.SECP256R1())
    point = recipient.public_key().public_bytes(Encoding.X962, PublicFormat.UncompressedPoint)
    intent = {
        "kind": "key.export",
        "version": 1,
        "recipient_public_key": "0x" + point.hex(),
        "curve": "P-256",
    }
    async with signer.client() as rpc:
        envelope = await rpc.export_key(wallet.id, intent, wallet.approve(intent))
        again = transfer()
        signed = await rpc.sign(wallet.id, again, wallet.approve(again))
    assert signed["signer"] == wallet.address
    key = decrypt_export(envelope, recipient)
    assert Account.from_key(key).address == wallet.address


def test_wrong_master_key_refuses_to_start(signer: SignerProcess) -> None:
    signer.stop()
    master = signer.data_dir / "signer" / "master.key"
    master.write_bytes(os.urandom(32))
    result = subprocess.run(
        [sys.executable, "-m", "seiwallet", "signer"],
        env=signer.env,
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert result.returncode == 1
    assert "does not open the key store" in result.stderr
    assert "Traceback" not in result.stderr


async def test_passkey_approvals_check_origin_rp_id_and_counter(signer: SignerProcess) -> None:
    """The default relying party is ``localhost`` with origin ``http://localhost:8000``."""
    passkey = SoftPasskey(rp_id="localhost", origin="http://localhost:8000")
    async with signer.client() as rpc:
        wallet = await rpc.create_wallet(
            "passkey-wallet",
            {
                "id": "phone-passkey",
                "kind": "passkey",
                "public_key": passkey.cose_public_key.hex(),
                "credential_id": passkey.credential_id.hex(),
            },
        )
        passkey.authenticator_id = "phone-passkey"

        def approve(intent: dict[str, Any], **assertion: Any) -> list[dict[str, Any]]:
            subject = approval_subject("passkey-wallet", intent_digest(parse_intent(intent)))
            now = int(time.time())
            approval = passkey.approve(subject, os.urandom(16), now + 120, now=now, **assertion)
            return [approval.to_json()]

        intent = transfer()
        signed = await rpc.sign("passkey-wallet", intent, approve(intent))
        assert signed["signer"] == wallet["address"]
        for assertion, reason in (
            # First, while the signer's stored counter equals the authenticator's: a repeat.
            ({"counter_step": 0}, "counter"),
            ({"origin": "https://evil.example"}, "origin"),
            ({"rp_id": "evil.example"}, "rp_id"),
            ({"user_verified": False}, "verified"),
        ):
            other = transfer()
            with pytest.raises(ApprovalRefused, match=reason):
                await rpc.sign("passkey-wallet", other, approve(other, **assertion))


async def test_create_wallet_is_idempotent_for_its_id(client: SignerClient) -> None:
    """A caller that crashed after the signer answered can ask again and learn the address."""
    first = await client.create_wallet("same-id")
    again = await client.create_wallet("same-id")
    assert first["created"] is True
    assert again["created"] is False
    assert again["address"] == first["address"]
    assert again["sei_address"] == first["sei_address"]


async def test_recovery_time_lock_cannot_be_bypassed_once_no_device_is_active(
    client: SignerClient,
) -> None:
    """With the only active device gone, a second unapproved authenticator is time-locked too."""
    wallet = await new_wallet(client)
    pending = {"id": "recovery-1", "kind": "device", "public_key": SoftDeviceKey().public_key.hex()}
    added = await client.add_authenticator(wallet.id, pending)
    assert added["active_from"] > int(time.time()) + 3600  # locked: no approval given
    subject = approval_subject(
        wallet.id, action_digest("authenticator.remove", {"authenticator_id": "phone"})
    )
    approval = wallet.devices["phone"].approve(subject, os.urandom(16), int(time.time()) + 120)
    await client.remove_authenticator(wallet.id, "phone", [approval.to_json()])
    second = {"id": "recovery-2", "kind": "device", "public_key": SoftDeviceKey().public_key.hex()}
    added = await client.add_authenticator(wallet.id, second)
    assert added["active_from"] > int(time.time()) + 3600


def test_a_second_signer_on_the_same_socket_refuses_to_start(signer: SignerProcess) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "seiwallet", "signer"],
        env=signer.env,
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert result.returncode == 1
    assert "already listening" in result.stderr
    assert "Traceback" not in result.stderr


async def test_concurrent_signs_share_calls_and_keep_their_own_answers(
    client: SignerClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Group commit: concurrent ``sign`` calls leave in fewer RPC calls, each answered alone."""
    wallet = await new_wallet(client)
    calls: list[str] = []
    post = client._http.post

    async def count(url: str, body: bytes) -> tuple[int, bytes]:
        calls.append(url)
        return await post(url, body)

    monkeypatch.setattr(client._http, "post", count)
    intents = [transfer(1_000 + index) for index in range(40)]
    approvals = [wallet.approve(intent) for intent in intents]
    approvals[7] = wallet.approve(intents[8])  # approves another intent: refused, alone
    outcomes = await asyncio.gather(
        *(client.sign(wallet.id, i, a) for i, a in zip(intents, approvals, strict=True)),
        return_exceptions=True,
    )
    assert isinstance(outcomes[7], ApprovalRefused)
    for index, outcome in enumerate(outcomes):
        if index == 7:
            continue
        assert isinstance(outcome, dict), outcome
        message = authorization_typed_data(
            USDC,
            Authorization3009(
                from_address=wallet.address,
                to=RECIPIENT,
                value=1_000 + index,
                valid_after=int(intents[index]["valid_after"]),
                valid_before=int(intents[index]["valid_before"]),
                nonce=bytes.fromhex(intents[index]["nonce"][2:]),
            ),
        )
        recovered = Account.recover_message(
            encode_typed_data(full_message=message), signature=outcome["signature"]
        )
        assert recovered == wallet.address
    assert 1 <= calls.count("http://signer/v1/sign") < 40
