"""Refund approvers on SQLite and PostgreSQL, with the real signer process: a manager's refund
passkey from registration to the owner's approval, what it may then sign, and its removal.

The browser side (the ceremonies in Chromium) is ``tests/e2e/test_browser_payments.py``; the API
side over HTTP is ``tests/e2e/test_api_payments.py``. Here: the rules at the edges.
"""

from __future__ import annotations

import os
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session, sessionmaker
from tests.fixtures.authenticators import SoftDeviceKey, SoftPasskey
from tests.fixtures.signer import SignerProcess
from webauthn.helpers import base64url_to_bytes

from seiwallet.accounts.models import SessionKind, UserAuthenticator
from seiwallet.accounts.oidc import VerifiedIdentity
from seiwallet.accounts.passkeys import PasskeyService
from seiwallet.accounts.services import SignedInUser, SignInService
from seiwallet.accounts.sessions import SessionInfo
from seiwallet.addresses import parse_evm_address
from seiwallet.chain.tokens import TokenDomain
from seiwallet.compliance.gate import ComplianceGate
from seiwallet.config import PaymentSettings
from seiwallet.db import session_factory
from seiwallet.errors import InvalidInput
from seiwallet.payments import errors
from seiwallet.payments.approvers import RefundApproverService
from seiwallet.payments.merchants import MerchantOwner
from seiwallet.payments.models import ApproverStatus, RefundApprover
from seiwallet.payments.permissions import Principal
from seiwallet.payments.services import Payments, build_payments
from seiwallet.signer.client import SignerClient
from seiwallet.signer.errors import PolicyDeclined
from seiwallet.signer.intents import intent_digest, parse_intent
from seiwallet.signer.service import approval_subject
from seiwallet.transfers.rates import OfflineRates
from seiwallet.transfers.services import TokenInfo


def address(byte: str) -> str:
    return str(parse_evm_address("0x" + byte * 20))


ORIGIN = "http://localhost:8000"  # the signer's default relying party
CHAIN = 713715
USDC = TokenInfo("USDC", "USD Coin", 6, TokenDomain("USD Coin", "2", CHAIN, address("a0")))
ROUTER = address("9f")


class NoBalances:
    async def balance(self, token: str, address: str) -> int:  # pragma: no cover - unused
        return 0


@dataclass
class Person:
    user: SignedInUser
    device: SoftDeviceKey
    session: SessionInfo


@dataclass
class Shop:
    sessions: sessionmaker[Session]
    rpc: SignerClient
    payments: Payments
    owner: Person
    kit: Person
    merchant_id: str

    @property
    def approvers(self) -> RefundApproverService:
        assert self.payments.approvers is not None
        return self.payments.approvers

    def principal(self, person: Person) -> Principal:
        return self.payments.merchants.principal_for_user(person.user.id, self.merchant_id)

    def owner_approves(self, digest_hex: str) -> list[dict[str, Any]]:
        subject = approval_subject(self.owner.user.wallet_id, bytes.fromhex(digest_hex))
        approval = self.owner.device.approve(subject, os.urandom(16), int(time.time()) + 120)
        return [approval.to_json()]

    def register(self, person: Person, passkey: SoftPasskey) -> str:
        """The person's refund passkey, made on their phone (the WebAuthn ceremony)."""
        principal = self.principal(person)
        options = self.approvers.begin(principal, person.session)
        credential = passkey.registration_response(base64url_to_bytes(options["challenge"]))
        view = self.approvers.finish(principal, person.session, credential, device="Pixel")
        assert view.status == "awaiting_owner"
        passkey.authenticator_id = view.id
        return view.id


def session_of(user: SignedInUser) -> SessionInfo:
    now = datetime.now(UTC)
    assert user.wallet_id is not None
    assert user.wallet_address is not None
    return SessionInfo(
        id=os.urandom(8).hex(),
        kind=SessionKind.WEB,
        label="test",
        user_id=user.id,
        wallet_id=user.wallet_id,
        wallet_address=user.wallet_address,
        wallet_sei_address="",
        display_name=user.display_name,
        email=user.email,
        email_verified=True,
        phone=None,
        phone_verified=False,
        authenticator_id=None,
        created_at=now,
        last_seen_at=now,
        expires_at=now + timedelta(hours=1),
        recovery_until=None,
    )


@pytest.fixture
async def shop(engine: Engine, signer: SignerProcess) -> AsyncIterator[Shop]:
    sessions = session_factory(engine)
    async with signer.client() as rpc:
        sign_in = SignInService(sessions, rpc, time.time)
        people = []
        for name in ("mei", "kit"):
            device = SoftDeviceKey(authenticator_id=f"{name}-{os.urandom(4).hex()}")
            done = await sign_in.complete(
                VerifiedIdentity(
                    issuer="https://accounts.example",
                    subject=name,
                    email=f"{name}@example.com",
                    email_verified=True,
                    name=name.title(),
                ),
                authenticator={
                    "id": device.authenticator_id,
                    "kind": "device",
                    "public_key": device.public_key.hex(),
                },
            )
            people.append(Person(done.user, device, session_of(done.user)))
        owner, kit = people
        passkeys = PasskeyService(
            sessions,
            rpc,
            rp_id="localhost",
            rp_name="seiwallet",
            origins=[ORIGIN],
            recovery_timelock=timedelta(hours=48),
        )
        payments = build_payments(
            sessions,
            rpc,
            NoBalances(),
            {"USDC": USDC},
            ComplianceGate(sanctioned=[], per_transfer_cap={"USDC": Decimal(10_000)}),
            chain_id=CHAIN,
            router=ROUTER,
            settings=PaymentSettings(),
            rates=OfflineRates(),
            allow_http_webhooks=True,
            passkeys=passkeys,
        )
        assert owner.user.wallet_id is not None
        assert owner.user.wallet_address is not None
        merchant = await payments.merchants.become_merchant(
            MerchantOwner(owner.user.id, owner.user.wallet_id, owner.user.wallet_address),
            name="Lantau Tea Ltd",
            settlement_token="USDC",
        )
        owner_principal = payments.merchants.principal_for_user(owner.user.id, merchant.id)
        payments.merchants.add_staff(owner_principal, email="kit@example.com", role="manager")
        yield Shop(sessions, rpc, payments, owner, kit, merchant.id)


def refund_intent(amount_units: int, merchant: str) -> dict[str, Any]:
    now = int(time.time())
    return {
        "kind": "router.refund",
        "version": 1,
        "token": {
            "name": "USD Coin",
            "version": "2",
            "chain_id": str(CHAIN),
            "verifying_contract": USDC.address,
        },
        "router": ROUTER,
        "invoice_id": "0x" + os.urandom(32).hex(),
        "merchant": merchant,
        "payment_amount_units": "900000000",
        "payment_fee_units": "9000000",
        "payer": address("90"),
        "refund_id": "0x" + os.urandom(32).hex(),
        "amount_units": str(amount_units),
        "valid_after": str(now - 60),
        "valid_before": str(now + 600),
    }


async def test_a_managers_refund_passkey_signs_refunds_up_to_their_limit_only(shop: Shop) -> None:
    passkey = SoftPasskey(rp_id="localhost", origin=ORIGIN)
    approver_id = shop.register(shop.kit, passkey)
    wallet = shop.owner.user.wallet_id
    assert wallet is not None
    # Kept, not yet approving: the API answers "not set up", the signer does not know it.
    with pytest.raises(errors.RefundApprovalNotSetUp):
        shop.approvers.approver_for(shop.merchant_id, shop.kit.user.id)
    with shop.sessions() as db:
        row = db.get(UserAuthenticator, approver_id)
        assert row is not None
        assert row.wallet_id == wallet
        assert row.active_from.year == 9999
    # Only the owner approves it, and their approval fixes the cap: the manager's limit.
    with pytest.raises(errors.NotPermitted):
        shop.approvers.proposal(shop.principal(shop.kit), approver_id)
    proposal = shop.approvers.proposal(shop.principal(shop.owner), approver_id)
    assert proposal.max_amount_units == 500 * 10**6
    assert proposal.registration["scope"]["intents"] == ["router.refund"]
    view = await shop.approvers.approve(
        shop.principal(shop.owner), approver_id, shop.owner_approves(proposal.digest)
    )
    assert (view.status, view.max_amount_units, view.label) == (
        "active",
        500 * 10**6,
        "Lantau Tea Ltd refunds · Pixel",
    )
    assert shop.approvers.approver_for(shop.merchant_id, shop.kit.user.id) == wallet
    # A retried approval (the answer was lost) changes nothing.
    with pytest.raises(errors.ApproverNotAwaitingOwner):
        await shop.approvers.approve(
            shop.principal(shop.owner), approver_id, shop.owner_approves(proposal.digest)
        )

    # The passkey signs a refund within the cap...
    small = refund_intent(20 * 10**6, shop.owner.user.wallet_address or "")
    digest = intent_digest(parse_intent(small))
    approval = passkey.approve(approval_subject(wallet, digest), now=int(time.time()))
    signed = await shop.rpc.sign(wallet, small, [approval.to_json()])
    assert signed["signer"] == shop.owner.user.wallet_address
    # ... and nothing above it, nor any other kind of intent.
    large = refund_intent(500 * 10**6 + 1, shop.owner.user.wallet_address or "")
    digest = intent_digest(parse_intent(large))
    approval = passkey.approve(approval_subject(wallet, digest), now=int(time.time()))
    with pytest.raises(PolicyDeclined) as declined:
        await shop.rpc.sign(wallet, large, [approval.to_json()])
    assert declined.value.rule == "delegate_scope"
    transfer = {
        "kind": "erc3009.transfer",
        "version": 1,
        "token": small["token"],
        "to": address("70"),
        "amount_units": "1",
        "valid_after": small["valid_after"],
        "valid_before": small["valid_before"],
        "nonce": "0x" + os.urandom(32).hex(),
    }
    digest = intent_digest(parse_intent(transfer))
    approval = passkey.approve(approval_subject(wallet, digest), now=int(time.time()))
    with pytest.raises(PolicyDeclined):
        await shop.rpc.sign(wallet, transfer, [approval.to_json()])

    # The owner removes it, with their approval: the signer forgets it and its scope.
    removal = shop.approvers.removal_digest(shop.principal(shop.owner), approver_id)
    assert removal is not None
    with pytest.raises(InvalidInput):
        await shop.approvers.revoke(shop.principal(shop.owner), approver_id, [])
    await shop.approvers.revoke(
        shop.principal(shop.owner), approver_id, shop.owner_approves(removal[1])
    )
    assert "delegates" not in (await shop.rpc.get_policy(wallet))["policy"]
    assert shop.approvers.approvers(shop.principal(shop.owner)) == []
    with shop.sessions() as db:
        row = db.get(UserAuthenticator, approver_id)
        assert row is not None
        assert row.revoked_at is not None


async def test_a_new_passkey_replaces_one_still_waiting_and_leaves_with_its_holder(
    shop: Shop,
) -> None:
    first = shop.register(shop.kit, SoftPasskey(rp_id="localhost", origin=ORIGIN))
    second = shop.register(shop.kit, SoftPasskey(rp_id="localhost", origin=ORIGIN))
    listed = shop.approvers.approvers(shop.principal(shop.owner))
    assert [a.id for a in listed] == [second]
    with shop.sessions() as db:
        statuses = dict(db.execute(select(RefundApprover.id, RefundApprover.status)).all())
    assert statuses == {first: ApproverStatus.REVOKED, second: ApproverStatus.AWAITING_OWNER}
    # A passkey made for the payout wallet is not one of Kit's own wallet's passkeys.
    assert shop.payments.approvers is not None
    own = [a.id for a in shop.approvers._passkeys.authenticators(shop.kit.user.id)]
    assert second not in own

    # Kit leaves the team: the passkey waiting for the owner goes with him.
    [kit_staff] = [
        s
        for s in shop.payments.merchants.staff(shop.principal(shop.owner))
        if s.user_id == shop.kit.user.id
    ]
    shop.payments.merchants.remove_staff(shop.principal(shop.owner), kit_staff.id)
    assert shop.approvers.approvers(shop.principal(shop.owner)) == []


async def test_an_active_passkey_of_someone_who_left_stays_listed_for_removal(
    shop: Shop,
) -> None:
    approver_id = shop.register(shop.kit, SoftPasskey(rp_id="localhost", origin=ORIGIN))
    proposal = shop.approvers.proposal(shop.principal(shop.owner), approver_id)
    await shop.approvers.approve(
        shop.principal(shop.owner), approver_id, shop.owner_approves(proposal.digest)
    )
    [kit_staff] = [
        s
        for s in shop.payments.merchants.staff(shop.principal(shop.owner))
        if s.user_id == shop.kit.user.id
    ]
    shop.payments.merchants.remove_staff(shop.principal(shop.owner), kit_staff.id)
    [left] = shop.approvers.approvers(shop.principal(shop.owner))
    assert (left.id, left.status, left.staff_active) == (approver_id, "active", False)


async def test_the_owner_and_api_keys_make_no_refund_passkey(shop: Shop) -> None:
    with pytest.raises(InvalidInput, match="own wallet"):
        shop.approvers.begin(shop.principal(shop.owner), shop.owner.session)
    key = Principal(
        merchant_id=shop.merchant_id,
        actor="key:k",
        permissions=frozenset(shop.principal(shop.owner).permissions),
        store_ids=None,
        api_key_id="k",
    )
    with pytest.raises(errors.NotPermitted):
        shop.approvers.begin(key, shop.kit.session)
