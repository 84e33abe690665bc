"""Delegates: an authenticator whose approval counts only within its scope, over the real RPC.

A shop's cashier approves small refunds from the merchant's payout wallet with their own key:
the owner adds the cashier's key *with* its scope in one approved step; the key then counts for
the kinds and amounts of its scope and for nothing else.
"""

from __future__ import annotations

import os
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
from tests.fixtures.authenticators import SoftDeviceKey
from tests.fixtures.signer import SignerProcess
from tests.integration.test_signer_rpc import USDC, Wallet, new_wallet, transfer

from seiwallet.signer.client import SignerClient
from seiwallet.signer.errors import ApprovalRefused, PolicyDeclined, SignerError
from seiwallet.signer.intents import intent_digest, parse_intent
from seiwallet.signer.service import action_digest, approval_subject

CAP = 5_000_000  # 5 USDC


@pytest.fixture
async def client(signer: SignerProcess) -> AsyncIterator[SignerClient]:
    async with signer.client() as rpc:
        yield rpc


def scope(cap: int = CAP, kinds: tuple[str, ...] = ("erc3009.transfer",)) -> dict[str, Any]:
    return {
        "intents": list(kinds),
        "tokens": [
            {"chain_id": USDC.chain_id, "address": USDC.verifying_contract, "max_amount": str(cap)}
        ],
    }


async def add_delegate(
    client: SignerClient, wallet: Wallet, name: str = "cashier", **spec_extra: Any
) -> dict[str, Any]:
    device = wallet.devices[name] = SoftDeviceKey(authenticator_id=name)
    spec = {"id": name, "kind": "device", "public_key": device.public_key.hex(), **spec_extra}
    subject = approval_subject(wallet.id, action_digest("authenticator.add", spec))
    approval = wallet.devices["phone"].approve(subject, os.urandom(16), int(time.time()) + 120)
    return await client.add_authenticator(wallet.id, spec, [approval.to_json()])


async def test_a_delegate_approves_within_its_scope_only(client: SignerClient) -> None:
    wallet = await new_wallet(client)
    added = await add_delegate(client, wallet, scope=scope())
    assert added["active_from"] <= int(time.time())
    policy = await client.get_policy(wallet.id)
    assert policy["policy"]["delegates"]["cashier"]["tokens"][0]["max_amount"] == str(CAP)

    small = transfer(CAP)
    signed = await client.sign(wallet.id, small, wallet.approve(small, "cashier"))
    assert signed["signer"] == wallet.address

    large = transfer(CAP + 1)
    with pytest.raises(PolicyDeclined) as refused:
        await client.sign(wallet.id, large, wallet.approve(large, "cashier"))
    assert refused.value.rule == "delegate_scope"
    assert "cashier may approve only erc3009.transfer" in str(refused.value)
    # The owner's own key signs what the delegate may not.
    await client.sign(wallet.id, large, wallet.approve(large, "phone"))


async def test_a_delegate_cannot_change_the_wallet(client: SignerClient) -> None:
    wallet = await new_wallet(client)
    await add_delegate(client, wallet, scope=scope())
    # Not another authenticator (it would be an unscoped key): the add waits out the time-lock.
    intruder = SoftDeviceKey(authenticator_id="intruder")
    spec = {"id": "intruder", "kind": "device", "public_key": intruder.public_key.hex()}
    subject = approval_subject(wallet.id, action_digest("authenticator.add", spec))
    approval = wallet.devices["cashier"].approve(subject, os.urandom(16), int(time.time()) + 120)
    added = await client.add_authenticator(wallet.id, spec, [approval.to_json()])
    assert added["active_from"] > int(time.time()) + 3600
    # Not the policy (it would lift its own scope).
    current = await client.get_policy(wallet.id)
    update = {
        "kind": "policy.update",
        "version": 1,
        "expected_version": current["version"],
        "policy": {"format": 1},
    }
    with pytest.raises(PolicyDeclined) as refused:
        await client.sign(wallet.id, update, wallet.approve(update, "cashier"))
    assert refused.value.rule == "delegate_scope"
    # Not the key.
    export = {
        "kind": "key.export",
        "version": 1,
        "recipient_public_key": "0x" + SoftDeviceKey().public_key.hex(),
        "curve": "P-256",
    }
    digest = intent_digest(parse_intent(export))
    approval = wallet.devices["cashier"].approve(
        approval_subject(wallet.id, digest), os.urandom(16), int(time.time()) + 120
    )
    with pytest.raises(PolicyDeclined):
        await client.export_key(wallet.id, export, [approval.to_json()])


async def test_the_scope_is_part_of_what_the_owner_approved(client: SignerClient) -> None:
    wallet = await new_wallet(client)
    cashier = SoftDeviceKey(authenticator_id="cashier")
    approved_spec = {
        "id": "cashier",
        "kind": "device",
        "public_key": cashier.public_key.hex(),
        "scope": scope(),
    }
    subject = approval_subject(wallet.id, action_digest("authenticator.add", approved_spec))
    approval = wallet.devices["phone"].approve(subject, os.urandom(16), int(time.time()) + 120)
    # The same approval presented with a wider scope does not approve that: refused, and
    # nothing is added.
    widened = {**approved_spec, "scope": scope(cap=10**12)}
    with pytest.raises(ApprovalRefused, match="bad_signature"):
        await client.add_authenticator(wallet.id, widened, [approval.to_json()])
    assert "delegates" not in (await client.get_policy(wallet.id))["policy"]
    added = await client.add_authenticator(wallet.id, approved_spec, [approval.to_json()])
    assert added["active_from"] <= int(time.time())


async def test_removing_a_delegate_removes_its_scope(client: SignerClient) -> None:
    wallet = await new_wallet(client)
    await add_delegate(client, wallet, scope=scope())
    subject = approval_subject(
        wallet.id, action_digest("authenticator.remove", {"authenticator_id": "cashier"})
    )
    approval = wallet.devices["phone"].approve(subject, os.urandom(16), int(time.time()) + 120)
    await client.remove_authenticator(wallet.id, "cashier", [approval.to_json()])
    policy = await client.get_policy(wallet.id)
    assert "delegates" not in policy["policy"]
    small = transfer(1)
    with pytest.raises(Exception, match="revoked"):
        await client.sign(wallet.id, small, wallet.approve(small, "cashier"))


@pytest.mark.parametrize(
    "bad",
    [
        {"intents": ["policy.update"], "tokens": scope()["tokens"]},
        {"intents": ["erc3009.transfer"], "tokens": []},
        {"intents": [], "tokens": scope()["tokens"]},
        {"intents": ["router.refund"], "tokens": [{"chain_id": 1, "address": "0x12"}]},
    ],
)
async def test_a_bad_scope_is_refused_before_anything_is_added(
    client: SignerClient, bad: dict[str, Any]
) -> None:
    wallet = await new_wallet(client)
    with pytest.raises(SignerError, match=r"bad authenticator registration: .*scope") as refused:
        await add_delegate(client, wallet, scope=bad)
    assert refused.value.code == "input.invalid"
    assert "delegates" not in (await client.get_policy(wallet.id))["policy"]
