"""Limit reservations follow the movement, on SQLite and PostgreSQL: a transfer, payment or
refund that never happens frees the sender's limit again; one that is signed keeps counting.

The compliance gate is the real one (Hong Kong's rules: tier 1 may send HK$8,000 in 24 hours,
about 1,028 USDC); the signer and the chain's balances are fakes, as in
``test_payments_services``.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import Engine, select, update
from sqlalchemy.orm import Session, sessionmaker
from tests.integration.test_payments_services import (
    CHAIN,
    ROUTER,
    USDC,
    Clock,
    FakeBalances,
    FakeSigner,
)

from seiwallet.accounts.models import User, UserStatus
from seiwallet.addresses import parse_evm_address
from seiwallet.chain.models import ChainEvent
from seiwallet.compliance.errors import ComplianceDenied
from seiwallet.compliance.gate import ComplianceGate
from seiwallet.compliance.models import Usage
from seiwallet.compliance.services import build_compliance
from seiwallet.config import PaymentSettings
from seiwallet.db import session_factory
from seiwallet.payments.errors import AttemptNotAwaitingApproval
from seiwallet.payments.handlers import PaymentEventHandler
from seiwallet.payments.invoices import InvoiceRequest, expire_invoices
from seiwallet.payments.merchants import MerchantOwner
from seiwallet.payments.models import (
    AttemptStatus,
    Invoice,
    PaymentAttempt,
    Refund,
    RefundStatus,
)
from seiwallet.payments.permissions import Principal
from seiwallet.payments.services import Payer, Payments, build_payments
from seiwallet.payments.tasks import settle_payment_reservations
from seiwallet.transfers.errors import InsufficientBalance, TransferNotAwaitingApproval
from seiwallet.transfers.models import Transfer, TransferStatus
from seiwallet.transfers.rates import OFFLINE_RATES, OfflineRates
from seiwallet.transfers.services import Owner, SendRequest, TransferService
from seiwallet.transfers.tasks import settle_transfer_reservations

OUTSIDE = "0x8ba1f109551bD432803012645Ac136ddd64DBA72"
#: 600 USDC is about HK$4,670: one fits under HK$8,000 a day, two do not.
BIG = "600"


@dataclass
class World:
    sessions: sessionmaker[Session]
    clock: Clock
    gate: ComplianceGate
    signer: FakeSigner
    balances: FakeBalances
    transfers: TransferService
    payments: Payments

    def person(self, email: str) -> tuple[str, str]:
        """A tier-1 user (verified e-mail) placed in Hong Kong, and their address."""
        user_id = uuid.uuid4().hex
        address = parse_evm_address("0x" + uuid.uuid4().hex + uuid.uuid4().hex[:8])
        with self.sessions.begin() as db:
            db.add(
                User(
                    id=user_id,
                    email=email,
                    email_verified=True,
                    wallet_id=user_id,
                    wallet_address=address,
                    status=UserStatus.ACTIVE,
                )
            )
        return user_id, address

    def owner(self, email: str) -> Owner:
        user_id, address = self.person(email)
        return Owner(user_id, user_id, address)

    def now(self) -> datetime:
        return datetime.fromtimestamp(self.clock(), UTC)

    def reservations(self, user_id: str) -> dict[str, str]:
        """The user's reservations: reference → status."""
        with self.sessions() as db:
            rows = db.execute(
                select(Usage.reference, Usage.status).where(Usage.user_id == user_id)
            ).all()
        return {str(ref): str(status) for ref, status in rows}

    def settle(self) -> int:
        return settle_transfer_reservations(
            self.sessions, chain_id=CHAIN, now=self.now()
        ) + settle_payment_reservations(
            self.sessions,
            chain_id=CHAIN,
            now=self.now(),
            approval_window=timedelta(seconds=PaymentSettings().approval_window_seconds),
        )


@pytest.fixture
def world(engine: Engine) -> World:
    sessions = session_factory(engine)
    clock = Clock()
    gate = build_compliance(
        sessions,
        per_transfer_cap={},
        default_country="HK",
        valuer=OFFLINE_RATES.value_of_token,
        clock=clock,
    ).gate
    signer = FakeSigner()
    balances = FakeBalances()
    transfers = TransferService(
        sessions,
        signer,  # type: ignore[arg-type]
        balances,
        {"USDC": USDC},
        gate,
        clock=clock,
    )
    payments = build_payments(
        sessions,
        signer,  # type: ignore[arg-type]
        balances,
        {"USDC": USDC},
        gate,
        chain_id=CHAIN,
        router=ROUTER,
        settings=PaymentSettings(),
        rates=OfflineRates(),
        allow_http_webhooks=True,
        clock=clock,
    )
    return World(sessions, clock, gate, signer, balances, transfers, payments)


async def send(world: World, owner: Owner, amount: str = BIG, key: str | None = None) -> Any:
    view, created = await world.transfers.create(
        owner, SendRequest(OUTSIDE, "USDC", amount), key or uuid.uuid4().hex
    )
    assert created
    return view


# -- transfers ------------------------------------------------------------------------------------


async def test_an_abandoned_transfer_frees_the_limit_and_a_signed_one_counts(world: World) -> None:
    ada = world.owner("ada@example.com")
    first = await send(world, ada)
    assert world.reservations(ada.user_id) == {f"transfer:{first.id}": "reserved"}
    # Reserved while it awaits approval: a second one would pass the day's limit.
    with pytest.raises(ComplianceDenied) as denied:
        await send(world, ada)
    assert denied.value.rule == "limits.per_day"

    # Ada walks away: the worker expires the transfer and the limit frees up.
    world.clock.now += 12 * 60
    assert world.settle() == 1
    with world.sessions() as db:
        assert db.get(Transfer, first.id).status is TransferStatus.EXPIRED  # type: ignore[union-attr]
    assert world.reservations(ada.user_id)[f"transfer:{first.id}"] == "released"
    assert world.settle() == 0  # once

    second = await send(world, ada)
    signed = await world.transfers.approve(ada, second.id, [])
    assert signed.status is TransferStatus.SIGNED
    assert world.reservations(ada.user_id)[f"transfer:{second.id}"] == "committed"
    # A signed transfer keeps counting, however long it takes the relayer.
    world.clock.now += 11 * 60
    world.settle()
    assert world.reservations(ada.user_id)[f"transfer:{second.id}"] == "committed"
    with pytest.raises(ComplianceDenied):
        await send(world, ada)

    # The chain refused it (the relayer failed it): the worker releases it, once.
    with world.sessions.begin() as db:
        db.execute(
            update(Transfer)
            .where(Transfer.id == second.id)
            .values(status=TransferStatus.FAILED, failure_code="token.blacklisted")
        )
    assert world.settle() == 1
    assert world.settle() == 0
    assert world.reservations(ada.user_id)[f"transfer:{second.id}"] == "released"
    await send(world, ada)


async def test_a_late_approval_expires_the_transfer_and_releases_it(world: World) -> None:
    bob = world.owner("bob@example.com")
    view = await send(world, bob)
    world.clock.now += 11 * 60
    with pytest.raises(TransferNotAwaitingApproval):
        await world.transfers.approve(bob, view.id, [])
    assert world.reservations(bob.user_id)[f"transfer:{view.id}"] == "released"
    assert world.signer.calls == []
    await send(world, bob)


async def test_a_transfer_refused_after_the_check_reserves_nothing(world: World) -> None:
    cy = world.owner("cy@example.com")
    world.balances.amounts[cy.address.lower()] = 10 * 10**6
    with pytest.raises(InsufficientBalance):
        await send(world, cy)
    # The balance is checked in the transaction that would reserve: nothing was reserved.
    assert world.reservations(cy.user_id) == {}
    # The same Idempotency-Key answered twice: one transfer, one reservation counted.
    world.balances.amounts.pop(cy.address.lower())
    first = await send(world, cy, key="k-1")
    again, created = await world.transfers.create(cy, SendRequest(OUTSIDE, "USDC", BIG), "k-1")
    assert not created
    assert again.id == first.id
    counted = [s for s in world.reservations(cy.user_id).values() if s != "released"]
    assert counted == ["reserved"]


# -- payments and refunds -------------------------------------------------------------------------


@dataclass
class Shop:
    principal: Principal
    store_id: str
    owner: MerchantOwner


async def shop(world: World) -> Shop:
    owner_id, address = world.person("owner@shop.example")
    owner = MerchantOwner(owner_id, owner_id, address)
    merchant = await world.payments.merchants.become_merchant(
        owner, name="Lantau Tea Ltd", settlement_token="USDC"
    )
    principal = world.payments.merchants.principal_for_user(owner_id, merchant.id)
    store = world.payments.merchants.create_store(
        principal, name="Lantau Tea House", country="HK", currency="HKD"
    )
    return Shop(principal, store.id, owner)


async def invoice(world: World, at: Shop, amount: str = BIG) -> str:
    view, _ = await world.payments.invoices.create(
        at.principal, at.store_id, InvoiceRequest(amount=amount, currency="USDC")
    )
    return str(view["id"])


def settle_invoice(world: World, invoice_id: str, payer: str) -> None:
    """The router's ``PaymentSettled`` for the invoice, applied as the follower would."""
    with world.sessions.begin() as db:
        row = db.get(Invoice, invoice_id)
        assert row is not None
        event = ChainEvent(
            chain_id=CHAIN,
            block_number=100,
            block_hash="0x" + uuid.uuid4().hex * 2,
            transaction_hash="0x" + "ab" * 32,
            log_index=0,
            contract=ROUTER,
            name="PaymentSettled",
            key=invoice_id,
            args={
                "invoiceId": invoice_id,
                "payer": payer,
                "merchant": row.merchant_address,
                "token": row.token,
                "amount": str(row.amount_units),
                "fee": str(row.fee_units),
            },
            block_timestamp=int(world.clock()),
        )
        PaymentEventHandler().apply(db, event)


def payer(world: World, email: str) -> Payer:
    user_id, address = world.person(email)
    return Payer(user_id, user_id, address)


async def test_an_unpaid_invoice_frees_the_payers_limit(world: World) -> None:
    at = await shop(world)
    dee = payer(world, "dee@example.com")
    attempt = await world.payments.payments.prepare(await invoice(world, at), dee)
    # Preparing the same invoice again answers the same attempt: nothing reserved twice.
    again = await world.payments.payments.prepare(attempt.invoice_id, dee)
    assert again.id == attempt.id
    assert world.reservations(dee.user_id) == {f"payment:{attempt.id}": "reserved"}
    with pytest.raises(ComplianceDenied):
        await world.payments.payments.prepare(await invoice(world, at), dee)

    # The invoice expires unpaid: the attempt is abandoned and the limit frees up.
    world.clock.now += 16 * 60
    assert expire_invoices(world.sessions, chain_id=CHAIN, now=world.now()) >= 1
    world.settle()
    with world.sessions() as db:
        row = db.get(PaymentAttempt, attempt.id)
        assert row is not None
        assert row.status is AttemptStatus.ABANDONED
    assert world.reservations(dee.user_id)[f"payment:{attempt.id}"] == "released"

    paid = await world.payments.payments.prepare(await invoice(world, at), dee)
    signed = await world.payments.payments.approve(dee, paid.id, [])
    assert signed.status is AttemptStatus.SIGNED
    assert world.reservations(dee.user_id)[f"payment:{paid.id}"] == "committed"
    with pytest.raises(ComplianceDenied):
        await world.payments.payments.prepare(await invoice(world, at), dee)

    # The relayer failed the transfer carrying it (the chain refused it): released.
    with world.sessions.begin() as db:
        row = db.get(PaymentAttempt, paid.id)
        assert row is not None
        assert row.transfer_id is not None
        db.execute(
            update(Transfer)
            .where(Transfer.id == row.transfer_id)
            .values(status=TransferStatus.FAILED, failure_code="token.authorization_expired")
        )
    world.settle()
    assert world.reservations(dee.user_id)[f"payment:{paid.id}"] == "released"
    # So is one whose attempt is marked failed.
    again = await world.payments.payments.prepare(await invoice(world, at), dee)
    await world.payments.payments.approve(dee, again.id, [])
    assert world.reservations(dee.user_id)[f"payment:{again.id}"] == "committed"
    with world.sessions.begin() as db:
        db.execute(
            update(PaymentAttempt)
            .where(PaymentAttempt.id == again.id)
            .values(status=AttemptStatus.FAILED)
        )
    world.settle()
    assert world.reservations(dee.user_id)[f"payment:{again.id}"] == "released"


async def test_an_attempt_approved_after_its_window_is_abandoned_and_released(
    world: World,
) -> None:
    at = await shop(world)
    eve = payer(world, "eve@example.com")
    # A 15-minute invoice, a 5-minute approval window.
    attempt = await world.payments.payments.prepare(await invoice(world, at, "5"), eve)
    world.clock.now += 6 * 60
    with pytest.raises(AttemptNotAwaitingApproval, match="abandoned"):
        await world.payments.payments.approve(eve, attempt.id, [])
    assert world.reservations(eve.user_id)[f"payment:{attempt.id}"] == "released"
    assert world.signer.calls == []


async def test_an_expired_refund_frees_the_merchants_limit(world: World) -> None:
    at = await shop(world)
    fay = payer(world, "fay@example.com")
    attempt = await world.payments.payments.prepare(await invoice(world, at, "100"), fay)
    await world.payments.payments.approve(fay, attempt.id, [])
    settle_invoice(world, attempt.invoice_id, fay.address)

    refund, _ = await world.payments.refunds.create(at.principal, attempt.invoice_id, amount="40")
    assert world.reservations(at.owner.user_id) == {f"refund:{refund['id']}": "reserved"}
    world.clock.now += 2 * 3600  # its authorization could no longer be submitted
    world.settle()
    with world.sessions() as db:
        row = db.get(Refund, refund["id"])
        assert row is not None
        assert row.status is RefundStatus.EXPIRED
    assert world.reservations(at.owner.user_id)[f"refund:{refund['id']}"] == "released"

    second, _ = await world.payments.refunds.create(at.principal, attempt.invoice_id, amount="40")
    signed = await world.payments.refunds.approve(at.principal, second["id"], [])
    assert signed["status"] == "signed"
    assert world.reservations(at.owner.user_id)[f"refund:{second['id']}"] == "committed"
