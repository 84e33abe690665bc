"""The payments services on SQLite and PostgreSQL: merchants, quotes, idempotency, two phones
paying one invoice, refusals, refund limits, the follower's handler and expiry.

The signer is a fake here (it returns a fixed signature, after a delay when the test races);
the real signer process and chain are exercised end to end in ``tests/e2e``.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import Engine, func, select, update
from sqlalchemy.orm import Session, sessionmaker

from seiwallet.accounts.models import User, UserStatus
from seiwallet.addresses import parse_evm_address
from seiwallet.chain.deposits import deposit_address
from seiwallet.chain.models import ChainEvent
from seiwallet.chain.router import Payment, payment_nonce
from seiwallet.chain.tokens import TokenDomain
from seiwallet.compliance.errors import ComplianceDenied
from seiwallet.compliance.gate import ComplianceGate
from seiwallet.config import PaymentSettings
from seiwallet.db import session_factory
from seiwallet.errors import InvalidInput
from seiwallet.payments import errors
from seiwallet.payments.deposit_models import DepositKind, DepositReceipt, InvoiceDeposit
from seiwallet.payments.deposits import apply_deposit, deposit_effect, invoice_payment
from seiwallet.payments.handlers import (
    PaymentEventHandler,
    outbox_verdicts_waiting,
    reconcile_outbox,
)
from seiwallet.payments.invoices import InvoiceFilter, InvoiceRequest, expire_invoices
from seiwallet.payments.merchants import MerchantOwner
from seiwallet.payments.models import (
    AttemptStatus,
    Invoice,
    InvoiceStatus,
    PaymentAttempt,
    PaymentEvent,
    Refund,
    RefundStatus,
    StaffMember,
)
from seiwallet.payments.permissions import Principal
from seiwallet.payments.services import Payer, Payments, build_payments
from seiwallet.signer.errors import PolicyDeclined
from seiwallet.transfers.models import Transfer, TransferRouterCall, TransferStatus
from seiwallet.transfers.rates import OfflineRates
from seiwallet.transfers.services import TokenInfo

CHAIN = 713_715
ROUTER = "0xe7f1725E7734CE288F8367e1Bb143E90bb3F0512"
USDC = TokenInfo(
    "USDC",
    "USD Coin",
    6,
    TokenDomain("USD Coin", "2", CHAIN, "0x5FbDB2315678afecb367f032d93F642f64180aa3"),
)
SANCTIONED = "0x000000000000000000000000000000000000dEaD"


class Clock:
    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


@dataclass
class FakeSigner:
    """Signs anything after ``delay`` seconds; counts what it signed."""

    delay: float = 0.0
    calls: list[tuple[str, dict[str, Any]]] = field(default_factory=list)

    async def sign(
        self, wallet_id: str, intent: Mapping[str, Any], approvals: Sequence[Mapping[str, Any]]
    ) -> dict[str, Any]:
        await asyncio.sleep(self.delay)
        self.calls.append((wallet_id, dict(intent)))
        return {"signature": "0x" + "11" * 65}


@dataclass
class FakeBalances:
    amounts: dict[str, int] = field(default_factory=dict)

    async def balance(self, token: str, owner: str) -> int:
        return self.amounts.get(owner.lower(), 1_000 * 10**6)


@dataclass
class World:
    sessions: sessionmaker[Session]
    payments: Payments
    signer: FakeSigner
    balances: FakeBalances
    clock: Clock
    owner: MerchantOwner
    merchant_id: str
    store_id: str
    terminal_id: str
    principal: Principal
    payers: list[Payer]

    def user(self, email: str, address: str | None = None) -> tuple[str, str]:
        user_id = uuid.uuid4().hex
        address = address or "0x" + uuid.uuid4().hex + uuid.uuid4().hex[:8]
        checksummed = parse_evm_address(address)
        with self.sessions.begin() as db:
            db.add(
                User(
                    id=user_id,
                    email=email,
                    email_verified=True,
                    wallet_id=user_id,
                    wallet_address=checksummed,
                    status=UserStatus.ACTIVE,
                )
            )
        return user_id, checksummed

    async def invoice(self, amount: str = "12.50", currency: str = "USDC", **more: Any) -> str:
        view, _ = await self.payments.invoices.create(
            self.principal,
            self.store_id,
            InvoiceRequest(amount=amount, currency=currency, **more),
        )
        return str(view["id"])

    def row(self, invoice_id: str) -> Invoice:
        with self.sessions() as db:
            found = db.get(Invoice, invoice_id)
            assert found is not None
            return found

    def events(self, invoice_id: str) -> list[str]:
        with self.sessions() as db:
            return list(
                db.scalars(
                    select(PaymentEvent.type)
                    .where(PaymentEvent.invoice_id == invoice_id)
                    .order_by(PaymentEvent.id)
                )
            )

    def chain_event(self, name: str, invoice_id: str, tx: str, **args: Any) -> None:
        """Apply a router event as the follower would (in one transaction)."""
        with self.sessions.begin() as db:
            event = ChainEvent(
                chain_id=CHAIN,
                block_number=100,
                block_hash="0x" + uuid.uuid4().hex * 2,
                transaction_hash=tx,
                log_index=0,
                contract=ROUTER,
                name=name,
                key=invoice_id,
                args={"invoiceId": invoice_id, **args},
                block_timestamp=int(self.clock()),
            )
            PaymentEventHandler().apply(db, event)

    def settle(self, invoice_id: str, payer: str, tx: str = "0x" + "ab" * 32) -> None:
        row = self.row(invoice_id)
        self.chain_event(
            "PaymentSettled",
            invoice_id,
            tx,
            payer=payer,
            merchant=row.merchant_address,
            token=row.token,
            amount=str(row.amount_units),
            fee=str(row.fee_units),
        )


@pytest.fixture
async def world(engine: Engine, tmp_path: Any) -> World:
    sessions = session_factory(engine)
    signer = FakeSigner()
    balances = FakeBalances()
    clock = Clock()
    payments = build_payments(
        sessions,
        signer,  # type: ignore[arg-type]
        balances,
        {"USDC": USDC},
        ComplianceGate(sanctioned=[SANCTIONED], per_transfer_cap={"USDC": Decimal(10_000)}),
        chain_id=CHAIN,
        router=ROUTER,
        settings=PaymentSettings(),
        rates=OfflineRates(),
        allow_http_webhooks=True,
        clock=clock,
    )
    partial = World(sessions, payments, signer, balances, clock, None, "", "", "", None, [])  # type: ignore[arg-type]
    owner_id, owner_address = partial.user("owner@shop.example")
    owner = MerchantOwner(owner_id, owner_id, owner_address)
    merchant = await payments.merchants.become_merchant(
        owner, name="Lantau Tea Ltd", settlement_token="USDC"
    )
    principal = payments.merchants.principal_for_user(owner_id, merchant.id)
    store = payments.merchants.create_store(
        principal, name="Lantau Tea House", country="HK", currency="HKD"
    )
    terminal = payments.merchants.create_terminal(principal, store.id, "Counter 1")
    payers = []
    for n in range(2):
        user_id, address = partial.user(f"payer{n}@example.com")
        payers.append(Payer(user_id, user_id, address))
    return World(
        sessions,
        payments,
        signer,
        balances,
        clock,
        owner,
        merchant.id,
        store.id,
        terminal.id,
        principal,
        payers,
    )


# -- merchants and invoices ---------------------------------------------------------------------


async def test_a_merchant_is_paid_to_its_owners_wallet(world: World) -> None:
    [merchant] = world.payments.merchants.merchants_of(world.owner.user_id)
    assert merchant.payout_address == world.owner.wallet_address
    assert merchant.payout_is_own_wallet
    assert merchant.role == "owner"
    assert merchant.fee_bps == 100
    with pytest.raises(errors.AlreadyMerchant):
        await world.payments.merchants.become_merchant(
            world.owner, name="Again", settlement_token="USDC"
        )
    with pytest.raises(errors.UnsupportedSettlementToken):
        await world.payments.merchants.become_merchant(
            MerchantOwner(world.payers[0].user_id, "w", world.payers[0].address),
            name="X",
            settlement_token="DOGE",
        )


async def test_a_hkd_price_is_quoted_once_into_usdc(world: World) -> None:
    view, created = await world.payments.invoices.create(
        world.principal,
        world.store_id,
        InvoiceRequest(amount="97.25", terminal_id=world.terminal_id, order_id="A-1"),
    )
    assert created
    # 97.25 HKD at 7.78 HKD per USD = 12.4999… → 12.50 USDC (to the cent, half-even).
    assert view["price"] == {"amount": "97.25", "currency": "HKD"}
    assert (view["amount"], view["amount_units"]) == ("12.50", "12500000")
    assert (view["fee"], view["fee_units"], view["net"]) == ("0.125", "125000", "12.375")
    assert view["rate"]["pair"] == "HKD/USDC"
    assert view["rate"]["as_of"] == "2026-11-20"
    assert view["status"] == "new"
    row = world.row(view["id"])
    # The terminal's default expiry, and the router's terms hash as payment id.
    assert (row.expires_at - row.created_at).total_seconds() == pytest.approx(120, abs=1)
    payment = Payment(
        bytes.fromhex(row.id[2:]), row.merchant_address, row.token, 12_500_000, 125_000
    )
    assert row.payment_id == "0x" + payment_nonce(payment, router=ROUTER, chain_id=CHAIN).hex()
    assert world.events(row.id) == ["invoice.created"]
    public = world.payments.invoices.public(row.id)
    assert public["store"]["name"] == "Lantau Tea House"
    assert public["merchant_name"] == "Lantau Tea Ltd"
    assert "order_id" not in public
    assert "metadata" not in public
    assert "payer" not in public


DEPOSITS = "0xDc64a140Aa3E981100a9becA4E685f962f0cF6C9"


async def test_invoices_get_a_deposit_address_where_the_contract_exists(world: World) -> None:
    plain = await world.invoice()
    assert world.payments.invoices.get(world.principal, plain)["deposit"] is None
    assert world.payments.invoices.public(plain)["deposit"] is None

    world.payments.invoices.deposit_contract = DEPOSITS
    view, _ = await world.payments.invoices.create(
        world.principal, world.store_id, InvoiceRequest(amount="97.25"), "sale-7"
    )
    row = world.row(view["id"])
    address = deposit_address(
        invoice_payment(row), router=ROUTER, deposits=DEPOSITS, chain_id=CHAIN
    )
    uri = f"ethereum:{row.token}@{CHAIN}/transfer?address={address}&uint256=12500000"
    assert view["deposit"] == {"address": address, "uri": uri}
    # Kept with the invoice, in the same transaction, for the follower to match transfers by.
    with world.sessions() as db:
        box = db.get(InvoiceDeposit, row.id)
        assert box is not None
        assert (box.address, box.contract, box.payment_id) == (address, DEPOSITS, row.payment_id)
    # Every view of it says so: the merchant's, the payer's, the list, a replayed request, and
    # the invoice.created event that webhooks carry.
    assert world.payments.invoices.get(world.principal, row.id)["deposit"]["address"] == address
    assert world.payments.invoices.public(row.id)["deposit"] == {"address": address, "uri": uri}
    listed = world.payments.invoices.list(world.principal, world.store_id, InvoiceFilter())
    assert {i["id"]: i["deposit"] for i in listed.invoices} == {
        row.id: view["deposit"],
        plain: None,
    }
    again, created = await world.payments.invoices.create(
        world.principal, world.store_id, InvoiceRequest(amount="97.25"), "sale-7"
    )
    assert not created
    assert again["deposit"] == view["deposit"]
    with world.sessions() as db:
        event = db.scalars(select(PaymentEvent).where(PaymentEvent.invoice_id == row.id)).one()
        assert event.data["invoice"]["deposit"]["address"] == address
    # A part paid by transfer: the link asks for the rest.
    with world.sessions.begin() as db:
        box = db.get(InvoiceDeposit, row.id)
        assert box is not None
        box.received_units = 2_500_000
    assert world.payments.invoices.public(row.id)["deposit"]["uri"].endswith("uint256=10000000")


def _deposit(world: World, invoice_id: str, payer: str, units: int, n: int) -> None:
    """The follower saw a transfer of ``units`` from ``payer`` into the invoice's box."""
    with world.sessions.begin() as db:
        invoice = db.get(Invoice, invoice_id)
        box = db.get(InvoiceDeposit, invoice_id)
        assert invoice is not None
        assert box is not None
        receipt = DepositReceipt(
            invoice_id=invoice_id,
            merchant_id=invoice.merchant_id,
            chain_id=CHAIN,
            token=invoice.token,
            payer=payer,
            value_units=units,
            kind=DepositKind.PARTIAL,
            tx_hash="0x" + f"{n:02x}" * 32,
            block_number=7 + n,
            block_hash="0x" + f"{n + 100:02x}" * 32,
            log_index=0,
            paid_at=datetime.fromtimestamp(world.clock(), UTC),
        )
        effect = deposit_effect(
            status=invoice.status,
            amount_units=invoice.amount_units,
            received_before_units=box.received_units,
            value_units=units,
            expires_at=invoice.expires_at,
            paid_at=receipt.paid_at,
        )
        receipt.kind = effect.kind
        box.received_units = effect.received_units
        db.add(receipt)
        apply_deposit(db, invoice, receipt, effect)


def _authorization_used(world: World, transfer: Transfer, *, undo: bool = False) -> None:
    """The token's AuthorizationUsed for a transfer, applied as the follower would."""
    with world.sessions.begin() as db:
        event = ChainEvent(
            chain_id=CHAIN,
            block_number=120,
            block_hash="0x" + "c1" * 32,
            transaction_hash="0x" + "e1" * 32,
            log_index=3,
            contract=transfer.token,
            name="AuthorizationUsed",
            key=transfer.nonce,
            args={"authorizer": transfer.from_address, "nonce": transfer.nonce},
            block_timestamp=int(world.clock()),
        )
        handler = PaymentEventHandler()
        if undo:
            handler.revert(db, event)
        else:
            handler.apply(db, event)


def _outbox_row(world: World, refund_id: str) -> Transfer:
    with world.sessions() as db:
        transfer_id = db.scalar(select(Refund.transfer_id).where(Refund.id == refund_id))
        assert transfer_id is not None
        row = db.get(Transfer, transfer_id)
        assert row is not None
        return row


OUTSIDER = "0x00000000000000000000000000000000000A11cE"
EXCHANGE = "0x0000000000000000000000000000000000Beef01"


async def test_an_invoice_paid_by_deposit_is_refunded_by_a_transfer_to_the_payer(
    world: World,
) -> None:
    world.payments.invoices.deposit_contract = DEPOSITS
    invoice_id = await world.invoice("10", "USDC")
    _deposit(world, invoice_id, OUTSIDER, 12_000_000, 1)  # 2 USDC too much
    row = world.row(invoice_id)
    assert (row.status, row.paid_over) == (InvoiceStatus.SETTLED, True)
    # What was received can be refunded, the excess too; only to the address that paid.
    assert world.payments.refunds.refundable(world.principal, invoice_id) == 12_000_000
    [recipient] = world.payments.refunds.recipients(world.principal, invoice_id)
    assert (recipient.address, recipient.method, recipient.paid_units) == (
        OUTSIDER,
        "transfer",
        12_000_000,
    )
    with pytest.raises(errors.RefundPayerNotRecorded):
        await world.payments.refunds.create(
            world.principal, invoice_id, amount="1", payer=world.payers[0].address
        )
    with pytest.raises(errors.RefundExceedsRefundable):
        await world.payments.refunds.create(world.principal, invoice_id, amount="12.01")
    excess, created = await world.payments.refunds.create(
        world.principal, invoice_id, amount="2", reason="paid too much", idempotency_key="x-1"
    )
    assert created
    assert (excess["method"], excess["payer"]) == ("transfer", OUTSIDER)
    intent = excess["intent"]
    assert intent["kind"] == "erc3009.transfer"
    assert (intent["to"], intent["amount_units"]) == (OUTSIDER, "2000000")
    assert intent["nonce"] == excess["refund_id"]
    again, created = await world.payments.refunds.create(
        world.principal, invoice_id, amount="2", reason="paid too much", idempotency_key="x-1"
    )
    assert (again["id"], created) == (excess["id"], False)
    # Approved by the payout wallet; signed and queued as a plain transfer in one transaction.
    await world.payments.refunds.approve(world.principal, excess["id"], [])
    await world.payments.refunds.approve(world.principal, excess["id"], [])  # a retry
    assert [call[0] for call in world.signer.calls] == [world.owner.wallet_id]
    outbox = _outbox_row(world, excess["id"])
    assert (outbox.from_address, outbox.to_address) == (world.owner.wallet_address, OUTSIDER)
    assert (outbox.status, outbox.amount_units) == (TransferStatus.SIGNED, 2_000_000)
    assert outbox.nonce == excess["refund_id"]
    assert outbox.user_id == world.owner.user_id
    with world.sessions() as db:
        assert db.scalar(select(func.count()).select_from(Transfer)) == 1
    assert world.payments.refunds.refundable(world.principal, invoice_id) == 10_000_000
    # A stranger's AuthorizationUsed with the same nonce settles nothing.
    stranger = Transfer(**{**{c: getattr(outbox, c) for c in ("token", "nonce")}})
    stranger.from_address = OUTSIDER
    _authorization_used(world, stranger)
    assert world.row(invoice_id).refunded_units == 0
    # The token's AuthorizationUsed for the payout wallet's nonce settles it, once.
    _authorization_used(world, outbox)
    row = world.row(invoice_id)
    assert (row.status, row.refunded_units) == (InvoiceStatus.PARTIALLY_REFUNDED, 2_000_000)
    view = world.payments.refunds.get(world.principal, excess["id"])
    assert (view["status"], view["tx_hash"]) == ("settled", "0x" + "e1" * 32)
    assert world.events(invoice_id)[-2:] == ["refund.settled", "invoice.partially_refunded"]
    # A reorganisation takes it back; the same event on the new branch settles it again.
    _authorization_used(world, outbox, undo=True)
    assert world.row(invoice_id).refunded_units == 0
    assert world.payments.refunds.get(world.principal, excess["id"])["status"] == "submitted"
    _authorization_used(world, outbox)
    assert world.row(invoice_id).refunded_units == 2_000_000
    # The rest, all of it.
    rest, _ = await world.payments.refunds.create(world.principal, invoice_id)
    assert rest["amount"] == "10.00"
    await world.payments.refunds.approve(world.principal, rest["id"], [])
    _authorization_used(world, _outbox_row(world, rest["id"]))
    row = world.row(invoice_id)
    assert (row.status, row.refunded_units) == (InvoiceStatus.REFUNDED, 12_000_000)
    assert world.payments.refunds.refundable(world.principal, invoice_id) == 0
    with pytest.raises(errors.RefundExceedsRefundable):
        await world.payments.refunds.create(world.principal, invoice_id, amount="0.01")


async def test_a_box_paid_from_two_addresses_refunds_the_one_named_up_to_its_part(
    world: World,
) -> None:
    world.payments.invoices.deposit_contract = DEPOSITS
    invoice_id = await world.invoice("10", "USDC")
    _deposit(world, invoice_id, EXCHANGE, 6_000_000, 1)
    _deposit(world, invoice_id, OUTSIDER, 5_000_000, 2)
    assert world.row(invoice_id).status is InvoiceStatus.SETTLED
    with pytest.raises(errors.RefundNeedsPayerAddress) as refused:
        await world.payments.refunds.create(world.principal, invoice_id, amount="1")
    assert refused.value.code == "payment.refund_needs_payer_address"
    assert EXCHANGE in str(refused.value)
    assert OUTSIDER in str(refused.value)
    with pytest.raises(errors.RefundExceedsRefundable):
        await world.payments.refunds.create(
            world.principal, invoice_id, amount="5.01", payer=OUTSIDER.lower()
        )
    part, _ = await world.payments.refunds.create(
        world.principal, invoice_id, amount="5", payer=OUTSIDER.lower()
    )
    assert part["payer"] == OUTSIDER
    await world.payments.refunds.approve(world.principal, part["id"], [])
    # The outsider got back all it sent; the exchange's 6 are still refundable, to it only.
    assert {
        r.address: r.refundable_units
        for r in world.payments.refunds.recipients(world.principal, invoice_id)
    } == {EXCHANGE: 6_000_000, OUTSIDER: 0}
    with pytest.raises(errors.RefundExceedsRefundable):
        await world.payments.refunds.create(
            world.principal, invoice_id, amount="0.01", payer=OUTSIDER
        )


async def test_two_deposit_refunds_approved_at_once_sign_only_what_is_refundable(
    world: World,
) -> None:
    world.payments.invoices.deposit_contract = DEPOSITS
    invoice_id = await world.invoice("10", "USDC")
    _deposit(world, invoice_id, OUTSIDER, 10_000_000, 1)
    first, _ = await world.payments.refunds.create(world.principal, invoice_id, amount="6")
    second, _ = await world.payments.refunds.create(world.principal, invoice_id, amount="6")
    world.signer.delay = 0.05
    results = await asyncio.gather(
        world.payments.refunds.approve(world.principal, first["id"], []),
        world.payments.refunds.approve(world.principal, second["id"], []),
        return_exceptions=True,
    )
    refused = [r for r in results if isinstance(r, BaseException)]
    assert len(refused) == 1
    assert isinstance(refused[0], errors.RefundExceedsRefundable)
    with world.sessions() as db:
        statuses = sorted(str(s) for s in db.scalars(select(Refund.status)))
        assert statuses == ["failed", "signed"]
        assert db.scalar(select(func.count()).select_from(Transfer)) == 1


async def test_a_failed_refund_transfer_fails_the_refund(world: World) -> None:
    world.payments.invoices.deposit_contract = DEPOSITS
    invoice_id = await world.invoice("10", "USDC")
    _deposit(world, invoice_id, OUTSIDER, 10_000_000, 1)
    refund, _ = await world.payments.refunds.create(world.principal, invoice_id, amount="3")
    await world.payments.refunds.approve(world.principal, refund["id"], [])
    outbox = _outbox_row(world, refund["id"])
    with world.sessions.begin() as db:  # the relayer gives the transfer up (a blacklisted payer)
        db.execute(
            update(Transfer)
            .where(Transfer.id == outbox.id)
            .values(
                status=TransferStatus.FAILED,
                failure_code="token.blacklisted",
                failure_reason="the recipient is blacklisted",
            )
        )
    with world.sessions.begin() as db:
        assert outbox_verdicts_waiting(db, chain_id=CHAIN)
        assert reconcile_outbox(db, chain_id=CHAIN) == 1
    view = world.payments.refunds.get(world.principal, refund["id"])
    assert (view["status"], view["failure_reason"]) == ("failed", "the recipient is blacklisted")
    assert world.events(invoice_id)[-1] == "refund.failed"
    # What it would have taken is refundable again.
    assert world.payments.refunds.refundable(world.principal, invoice_id) == 10_000_000


async def test_eur_and_token_prices_and_bad_ones(world: World) -> None:
    eur, _ = await world.payments.invoices.create(
        world.principal, world.store_id, InvoiceRequest(amount="10", currency="EUR")
    )
    assert eur["amount"] == "10.85"
    direct, _ = await world.payments.invoices.create(
        world.principal, world.store_id, InvoiceRequest(amount="3.141592", currency="usdc")
    )
    assert direct["amount_units"] == "3141592"
    assert direct["rate"]["value"] == "1"
    with pytest.raises(errors.UnsupportedCurrency):
        await world.invoice("100", "JPY")
    for bad in ("0", "-1", "1e3", "1.234", ""):
        with pytest.raises(InvalidInput):
            await world.invoice(bad, "HKD")
    with pytest.raises(errors.MetadataTooLarge):
        await world.invoice(metadata={"x": "y" * 5000})
    with pytest.raises(errors.InvalidExpiry):
        await world.invoice(expires_in_seconds=10 * 86_400)


async def test_idempotency_key_per_store(world: World) -> None:
    request = InvoiceRequest(amount="20", order_id="B-7")
    first, created = await world.payments.invoices.create(
        world.principal, world.store_id, request, "key-1"
    )
    again, created_again = await world.payments.invoices.create(
        world.principal, world.store_id, request, "key-1"
    )
    assert created
    assert not created_again
    assert again["id"] == first["id"]
    with pytest.raises(errors.IdempotencyConflict):
        await world.payments.invoices.create(
            world.principal, world.store_id, InvoiceRequest(amount="21"), "key-1"
        )
    # Ten concurrent requests with one key make one invoice.
    results = await asyncio.gather(
        *(
            world.payments.invoices.create(
                world.principal, world.store_id, InvoiceRequest(amount="5"), "key-2"
            )
            for _ in range(10)
        )
    )
    assert len({view["id"] for view, _ in results}) == 1
    assert sum(created for _, created in results) == 1


async def test_lists_page_with_a_cursor_and_filter(world: World) -> None:
    ids = []
    for n in range(7):
        world.clock.now += 1
        ids.append(await world.invoice(str(n + 1), order_id=f"O-{n}"))
    seen: list[str] = []
    cursor = None
    while True:
        page = world.payments.invoices.list(
            world.principal, world.store_id, _filter(), cursor=cursor, limit=3
        )
        seen += [v["id"] for v in page.invoices]
        if page.next_cursor is None:
            break
        cursor = page.next_cursor
    assert seen == list(reversed(ids))
    only = world.payments.invoices.list(world.principal, world.store_id, _filter(order_id="O-3"))
    assert [v["id"] for v in only.invoices] == [ids[3]]
    with pytest.raises(errors.InvalidCursor):
        world.payments.invoices.list(world.principal, world.store_id, _filter(), cursor="!!")


def _filter(**given: Any) -> InvoiceFilter:
    return InvoiceFilter(**given)


# -- paying -------------------------------------------------------------------------------------


async def test_two_phones_one_invoice_one_signature(world: World) -> None:
    invoice_id = await world.invoice()
    a, b = world.payers
    attempt_a = await world.payments.payments.prepare(invoice_id, a)
    attempt_b = await world.payments.payments.prepare(invoice_id, b)
    assert attempt_a.intent["kind"] == "router.pay"
    assert attempt_a.intent["invoice_id"] == invoice_id
    world.signer.delay = 0.2
    results = await asyncio.gather(
        world.payments.payments.approve(a, attempt_a.id, [{"kind": "device"}]),
        world.payments.payments.approve(b, attempt_b.id, [{"kind": "device"}]),
        return_exceptions=True,
    )
    won = [r for r in results if not isinstance(r, BaseException)]
    lost = [r for r in results if isinstance(r, BaseException)]
    assert len(won) == 1
    assert len(lost) == 1
    assert isinstance(lost[0], errors.InvoiceBeingPaid)
    assert len(world.signer.calls) == 1  # nothing was signed for the loser
    assert won[0].status is AttemptStatus.SIGNED
    row = world.row(invoice_id)
    assert row.status is InvoiceStatus.PROCESSING
    assert row.attempt_id == won[0].id
    assert world.events(invoice_id) == ["invoice.created", "invoice.processing"]
    # The loser tries again: the invoice is taken, and still nothing is signed for it.
    loser = b if won[0].payer == a.address else a
    loser_attempt = attempt_b if loser is b else attempt_a
    with pytest.raises(errors.InvoiceAlreadyPaid):
        await world.payments.payments.approve(loser, loser_attempt.id, [{"kind": "device"}])
    assert len(world.signer.calls) == 1
    with pytest.raises(errors.InvoiceAlreadyPaid):
        await world.payments.payments.prepare(invoice_id, loser)
    # The winner retrying gets the same signed attempt back, without signing again.
    winner = a if loser is b else b
    again = await world.payments.payments.approve(winner, won[0].id, [{"kind": "device"}])
    assert again.status is AttemptStatus.SIGNED
    assert len(world.signer.calls) == 1
    with world.sessions() as db:
        signed = db.scalars(
            select(func.count())
            .select_from(PaymentAttempt)
            .where(PaymentAttempt.status == AttemptStatus.SIGNED)
        ).one()
    assert signed == 1


async def test_a_refused_signature_frees_the_invoice(world: World) -> None:
    invoice_id = await world.invoice()
    a, b = world.payers
    attempt = await world.payments.payments.prepare(invoice_id, a)

    async def refuse(*_: Any) -> dict[str, Any]:
        raise PolicyDeclined.__new__(PolicyDeclined)

    world.signer.sign = refuse  # type: ignore[method-assign]
    with pytest.raises(PolicyDeclined):
        await world.payments.payments.approve(a, attempt.id, [])
    assert world.row(invoice_id).claim_attempt_id is None
    del world.signer.sign
    other = await world.payments.payments.prepare(invoice_id, b)
    assert (await world.payments.payments.approve(b, other.id, [])).status is AttemptStatus.SIGNED


async def test_what_cannot_be_paid_is_refused(world: World) -> None:
    a = world.payers[0]
    expiring = await world.invoice(expires_in_seconds=60)
    world.clock.now += 61
    with pytest.raises(errors.InvoiceExpired):
        await world.payments.payments.prepare(expiring, a)
    foreign = await world.invoice()
    with world.sessions.begin() as db:
        db.execute(update(Invoice).where(Invoice.id == foreign).values(chain_id=1329))
    with pytest.raises(errors.InvoiceForeign):
        await world.payments.payments.prepare(foreign, a)
    with pytest.raises(errors.InvoiceNotFound):
        await world.payments.payments.prepare("0x" + "00" * 32, a)
    own = await world.invoice()
    with pytest.raises(errors.SelfPayment):
        await world.payments.payments.prepare(
            own, Payer(world.owner.user_id, world.owner.wallet_id, world.owner.wallet_address)
        )
    poor = await world.invoice("999")
    world.balances.amounts[a.address.lower()] = 5 * 10**6
    with pytest.raises(errors.InsufficientBalance):
        await world.payments.payments.prepare(poor, a)
    # The compliance gate sees payments too.
    sanctioned = Payer(a.user_id, a.wallet_id, SANCTIONED)
    with pytest.raises(ComplianceDenied):
        await world.payments.payments.prepare(await world.invoice(), sanctioned)


async def test_approval_after_expiry_is_refused_and_abandoned(world: World) -> None:
    a = world.payers[0]
    invoice_id = await world.invoice(expires_in_seconds=60)
    attempt = await world.payments.payments.prepare(invoice_id, a)
    world.clock.now += 61
    with pytest.raises(errors.InvoiceExpired):
        await world.payments.payments.approve(a, attempt.id, [])
    assert world.signer.calls == []
    with world.sessions() as db:
        assert db.get(PaymentAttempt, attempt.id).status is AttemptStatus.ABANDONED  # type: ignore[union-attr]


async def test_a_signature_that_comes_back_after_the_invoice_expired_is_never_used(
    world: World,
) -> None:
    """The invoice moved on while the signer signed (here: it expired): the signed attempt is
    abandoned, nothing joins the relayer's outbox, and the payer is told why."""
    a = world.payers[0]
    invoice_id = await world.invoice(expires_in_seconds=60)
    attempt = await world.payments.payments.prepare(invoice_id, a)

    async def sign_while_it_expires(*_: Any) -> dict[str, Any]:
        with world.sessions.begin() as db:
            db.execute(
                update(Invoice)
                .where(Invoice.id == invoice_id)
                .values(status=InvoiceStatus.EXPIRED, claim_attempt_id=None)
            )
        return {"signature": "0x" + "11" * 65}

    world.signer.sign = sign_while_it_expires  # type: ignore[method-assign]
    with pytest.raises(errors.InvoiceExpired):
        await world.payments.payments.approve(a, attempt.id, [])
    with world.sessions() as db:
        row = db.get(PaymentAttempt, attempt.id)
        assert row is not None
        assert row.status is AttemptStatus.ABANDONED
        assert row.transfer_id is None
        assert db.scalar(select(func.count()).select_from(TransferRouterCall)) == 0
    assert world.events(invoice_id) == ["invoice.created"]


async def test_a_signed_payment_joins_the_outbox_with_its_terms(world: World) -> None:
    a = world.payers[0]
    invoice_id = await world.invoice("12.50")
    attempt = await world.payments.payments.prepare(invoice_id, a)
    signed = await world.payments.payments.approve(a, attempt.id, [])
    assert signed.status is AttemptStatus.SIGNED
    assert signed.invoice["status"] == "processing"
    invoice = world.row(invoice_id)
    with world.sessions() as db:
        row = db.get(PaymentAttempt, attempt.id)
        assert row is not None
        assert row.status is AttemptStatus.SIGNED
        assert row.signature == "0x" + "11" * 65
        assert row.transfer_id is not None
        outbox = db.get(Transfer, row.transfer_id)
        call = db.get(TransferRouterCall, row.transfer_id)
        assert outbox is not None
        assert call is not None
        event = db.scalars(
            select(PaymentEvent).where(
                PaymentEvent.invoice_id == invoice_id, PaymentEvent.type == "invoice.processing"
            )
        ).one()
    assert outbox.status is TransferStatus.SIGNED
    assert outbox.signature == row.signature
    assert outbox.from_address == a.address
    assert outbox.amount_units == invoice.amount_units
    assert outbox.recipient_input == "Lantau Tea House"  # the store's name
    assert call.invoice_id == invoice_id
    assert call.payment_amount_units == invoice.amount_units
    assert call.fee_units == invoice.fee_units
    assert event.data["invoice"]["status"] == "processing"
    assert event.data["invoice"]["id"] == invoice_id


# -- the follower's handler ---------------------------------------------------------------------


async def test_settlement_once_then_over_payment_then_refunds(world: World) -> None:
    a = world.payers[0]
    invoice_id = await world.invoice("10")
    attempt = await world.payments.payments.prepare(invoice_id, a)
    await world.payments.payments.approve(a, attempt.id, [])
    world.settle(invoice_id, a.address)
    row = world.row(invoice_id)
    assert row.status is InvoiceStatus.SETTLED
    assert row.payer_address == a.address
    assert row.anomalies == []
    with world.sessions() as db:
        assert db.get(PaymentAttempt, attempt.id).status is AttemptStatus.SETTLED  # type: ignore[union-attr]
    # A second PaymentSettled for the invoice id: an over-payment, not a second settlement.
    world.settle(invoice_id, world.payers[1].address, tx="0x" + "cd" * 32)
    row = world.row(invoice_id)
    assert row.status is InvoiceStatus.SETTLED
    assert row.anomalies == ["paid_over"]
    assert row.paid_units == 2 * row.amount_units
    assert world.events(invoice_id) == [
        "invoice.created",
        "invoice.processing",
        "invoice.settled",
        "invoice.anomaly",
    ]
    # Another merchant's PaymentSettled under this id is not ours.
    world.chain_event(
        "PaymentSettled",
        invoice_id,
        "0x" + "ef" * 32,
        payer=a.address,
        merchant=SANCTIONED,
        token=row.token,
        amount="1",
        fee="0",
    )
    assert world.row(invoice_id).paid_units == 2 * row.amount_units
    # The invoice's history, for the merchant only (another merchant's is "not found").
    history = world.payments.invoices.events(world.principal, invoice_id)
    assert [e.type for e in history] == world.events(invoice_id)
    assert history[-1].data["invoice"]["anomalies"] == ["paid_over"]
    stranger_id, stranger_address = world.user("other@shop.example")
    other = await world.payments.merchants.become_merchant(
        MerchantOwner(stranger_id, stranger_id, stranger_address),
        name="Other Ltd",
        settlement_token="USDC",
    )
    stranger = world.payments.merchants.principal_for_user(stranger_id, other.id)
    with pytest.raises(errors.InvoiceNotFound):
        world.payments.invoices.events(stranger, invoice_id)
    with pytest.raises(errors.InvoiceNotFound):
        world.payments.refunds.refundable(stranger, invoice_id)
    # Refunds: the cashier's limit, then the manager's refund and the remainder.
    cashier_id, _ = world.user("cashier@shop.example")
    manager_id, _ = world.user("manager@shop.example")
    world.payments.merchants.add_staff(
        world.principal, email="cashier@shop.example", role="cashier"
    )
    world.payments.merchants.add_staff(
        world.principal, email="manager@shop.example", role="manager"
    )
    cashier = world.payments.merchants.principal_for_user(cashier_id, world.merchant_id)
    manager = world.payments.merchants.principal_for_user(manager_id, world.merchant_id)
    world.payments.merchants.principal_for_user(cashier_id, world.merchant_id)
    with world.sessions.begin() as db:  # a small limit for the cashier: 2 USDC
        db.execute(
            update(StaffMember)
            .where(StaffMember.user_id == cashier_id)
            .values(refund_limit_units=2_000_000)
        )
    cashier = world.payments.merchants.principal_for_user(cashier_id, world.merchant_id)
    with pytest.raises(errors.RefundOverLimit):
        await world.payments.refunds.create(cashier, invoice_id, amount="3")
    with pytest.raises(errors.RefundExceedsRefundable):
        await world.payments.refunds.create(manager, invoice_id, amount="10.01")
    small, _ = await world.payments.refunds.create(
        cashier, invoice_id, amount="2", reason="cold tea"
    )
    part, _ = await world.payments.refunds.create(manager, invoice_id, amount="4")
    assert part["intent"]["kind"] == "router.refund"
    assert part["intent"]["payer"] == a.address
    # Signing the manager's refund commits 4 of the 10; the rest is 6.
    assert world.payments.refunds.refundable(manager, invoice_id) == 10_000_000
    await world.payments.refunds.approve(world.principal, part["id"], [])
    assert world.signer.calls[-1][0] == world.owner.wallet_id  # the payout wallet signs
    assert world.payments.refunds.refundable(manager, invoice_id) == 6_000_000
    with pytest.raises(errors.RefundExceedsRefundable):
        await world.payments.refunds.create(manager, invoice_id, amount="7")
    world.chain_event(
        "PaymentRefunded",
        invoice_id,
        "0x" + "12" * 32,
        refundId=part["refund_id"],
        merchant=row.merchant_address,
        payer=a.address,
        token=row.token,
        amount="4000000",
    )
    row = world.row(invoice_id)
    assert row.status is InvoiceStatus.PARTIALLY_REFUNDED
    assert row.refunded_units == 4_000_000
    with world.sessions() as db:
        assert db.get(Refund, part["id"]).status is RefundStatus.SETTLED  # type: ignore[union-attr]
    rest, _ = await world.payments.refunds.create(world.principal, invoice_id)
    assert rest["amount"] == "6.00"
    # Two refunds of the same remainder approved at once: only one is signed.
    await world.payments.refunds.approve(world.principal, rest["id"], [])
    with pytest.raises(errors.RefundExceedsRefundable):
        await world.payments.refunds.approve(world.principal, small["id"], [])


async def test_payment_failed_only_counts_from_our_transaction(world: World) -> None:
    a = world.payers[0]
    invoice_id = await world.invoice()
    attempt = await world.payments.payments.prepare(invoice_id, a)
    await world.payments.payments.approve(a, attempt.id, [])
    # A griefer's payBatch with a bad authorization naming our invoice and payer: ignored.
    world.chain_event("PaymentFailed", invoice_id, "0x" + "66" * 32, payer=a.address, reason="0x")
    assert world.row(invoice_id).status is InvoiceStatus.PROCESSING
    with world.sessions.begin() as db:  # what the relayer records when it submits
        outbox = db.scalar(
            select(PaymentAttempt.transfer_id).where(PaymentAttempt.id == attempt.id)
        )
        assert outbox is not None  # signed: queued for the relayer in the same transaction
        db.execute(
            update(Transfer)
            .where(Transfer.id == outbox)
            .values(tx_hash="0x" + "77" * 32, status=TransferStatus.SUBMITTED)
        )
    reason = "0x08c379a0" + (
        "0000000000000000000000000000000000000000000000000000000000000020"
        "000000000000000000000000000000000000000000000000000000000000001e"
        + b"FiatTokenV2: invalid signature".hex().ljust(64, "0")
    )
    world.chain_event("PaymentFailed", invoice_id, "0x" + "77" * 32, payer=a.address, reason=reason)
    row = world.row(invoice_id)
    assert row.status is InvoiceStatus.INVALID
    assert "signature" in (row.failure_reason or "")
    assert row.failure_code
    assert world.events(invoice_id)[-1] == "invoice.invalid"


async def test_expiry_task_and_a_late_settlement(world: World) -> None:
    a = world.payers[0]
    invoice_id = await world.invoice(expires_in_seconds=60)
    held = await world.invoice(expires_in_seconds=60)
    attempt = await world.payments.payments.prepare(held, a)
    world.clock.now += 59
    world.payments.payments._claim(attempt.id, held)  # a payer approving right now
    world.clock.now += 2
    now = datetime.fromtimestamp(world.clock(), UTC)
    assert expire_invoices(world.sessions, chain_id=CHAIN, now=now) == 1
    assert world.row(invoice_id).status is InvoiceStatus.EXPIRED
    assert world.row(held).status is InvoiceStatus.NEW  # left to its payer for now
    assert world.events(invoice_id)[-1] == "invoice.expired"
    assert expire_invoices(world.sessions, chain_id=CHAIN, now=now) == 0
    world.settle(invoice_id, a.address)
    row = world.row(invoice_id)
    assert row.status is InvoiceStatus.SETTLED
    assert row.anomalies == ["paid_late"]
