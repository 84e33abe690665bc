"""Paying an invoice from a wallet, and refunding it: the intents, approvals and outbox rows.

**Paying** is two steps, as for transfers, so the payer approves exactly what was checked:

1. :meth:`PaymentService.prepare` refuses what cannot be paid (expired, paid, another chain's,
   router's or token's invoice, one's own), runs the compliance gate and the balance check (net
   of the wallet's transfers and payments in flight), and stores a payment attempt
   ``awaiting_approval`` with its ``router.pay`` intent and digest.
2. :meth:`PaymentService.approve` first **claims** the invoice with a conditional update (status
   ``new``, not expired, nobody else's live claim): of two phones approving at once exactly one
   gets the claim; the other is told and nothing is signed for it. Then the signer signs with the
   payer's approval, and one transaction stores the signature (attempt ``signed``: the
   relayer's outbox), moves the invoice to ``processing`` (still conditional on the claim) and
   appends the ``invoice.processing`` event. A refused signature releases the claim; a crash
   leaves a claim that lapses after ``CLAIM_SECONDS``.

Whatever is retried, the router settles one set of terms once (the payment id is the nonce).

**Refunds** are requested by staff within their role's limit (or an API key with the scope) up
to what was paid minus refunds made or on their way, and signed by the payout wallet with its
own approval: the signer verifies that approval against the payout wallet's authenticators, so
no one can spend the merchant's money without the merchant's device. A payment through the
router is refunded by ``router.refund`` (to the payer the router recorded); a payment to the
invoice's deposit address by a plain ``erc3009.transfer`` to the address the chain showed paying
it (``RefundMethod.TRANSFER``). Either way the signed authorization joins the relayer's outbox in
the transaction that stores the signature.
"""

from __future__ import annotations

import asyncio
import enum
import functools
import hashlib
import json
import logging
import secrets
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any, Final, Protocol

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from seiwallet.accounts.passkeys import PasskeyService
from seiwallet.addresses import parse_evm_address
from seiwallet.chain.router import Payment, refund_nonce
from seiwallet.chain.router import Refund as RouterRefundTerms
from seiwallet.compliance.gate import ComplianceGate, Decision, Movement, Screening
from seiwallet.compliance.models import UsageStatus
from seiwallet.config import PaymentSettings
from seiwallet.db import SQLITE_BEGIN, as_utc, offload
from seiwallet.errors import InvalidInput
from seiwallet.money import TokenAmount
from seiwallet.payments.apikeys import ApiKeyService, RateLimiter
from seiwallet.payments.approvers import RefundApproverService
from seiwallet.payments.deposit_models import DepositReceipt, InvoiceDeposit
from seiwallet.payments.deposits import DepositPayer, deposit_payers
from seiwallet.payments.errors import (
    AttemptNotAwaitingApproval,
    AttemptNotFound,
    IdempotencyConflict,
    InsufficientBalance,
    InvoiceAlreadyPaid,
    InvoiceBeingPaid,
    InvoiceExpired,
    InvoiceForeign,
    InvoiceNotFound,
    InvoiceNotPayable,
    InvoiceNotRefundable,
    PaymentError,
    PayoutWalletNotHeld,
    RefundExceedsRefundable,
    RefundNeedsPayerAddress,
    RefundNotAwaitingApproval,
    RefundNotFound,
    RefundPayerNotRecorded,
    SelfPayment,
)
from seiwallet.payments.events import append_event
from seiwallet.payments.invoices import InvoiceService, invoice_json, public_json
from seiwallet.payments.merchants import MerchantService
from seiwallet.payments.models import (
    COMMITTED_REFUNDS,
    IN_FLIGHT_ATTEMPTS,
    PAID_STATUSES,
    AttemptStatus,
    Invoice,
    InvoiceStatus,
    Merchant,
    PaymentAttempt,
    Refund,
    RefundMethod,
    RefundStatus,
    StaffMember,
    Store,
)
from seiwallet.payments.permissions import Permission, Principal
from seiwallet.payments.reports import ReportService
from seiwallet.payments.webhooks import WebhookService
from seiwallet.signer.client import SignerClient
from seiwallet.signer.intents import (
    Erc3009Transfer,
    RouterPay,
    RouterRefund,
    intent_digest,
    parse_intent,
)
from seiwallet.transfers.models import Transfer, TransferStatus
from seiwallet.transfers.outbox import SignedRouterCall, enqueue_router_call
from seiwallet.transfers.rates import RateSource
from seiwallet.transfers.reservations import reference, settle_reservations
from seiwallet.transfers.services import (
    Balance,
    TokenInfo,
    in_flight_units,
    screen_with_balance,
)

log = logging.getLogger(__name__)

_WRITE: Final = {SQLITE_BEGIN: "IMMEDIATE"}
#: ``validAfter`` a minute back: the chain's whole-second clock may lag ours.
CLOCK_SKEW: Final = 60
#: How long an approving payer holds an invoice (longer than the signer's 10 s timeout).
CLAIM_SECONDS: Final = 30
#: How long a refund's signed authorization may wait to be submitted.
REFUND_VALIDITY: Final = 3600


class BalanceReader(Protocol):
    async def balance(self, token: str, owner: str) -> int: ...


@dataclass(frozen=True)
class Payer:
    """The signed-in user paying: their id, wallet in the signer and its address."""

    user_id: str
    wallet_id: str
    address: str


@dataclass(frozen=True)
class AttemptView:
    id: str
    invoice_id: str
    status: AttemptStatus
    intent: dict[str, Any]
    intent_digest: str
    payer: str
    tx_hash: str | None
    failure_reason: str | None
    invoice: dict[str, Any]
    created_at: datetime

    def as_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "invoice_id": self.invoice_id,
            "status": str(self.status),
            "intent": self.intent,
            "intent_digest": self.intent_digest,
            "payer": self.payer,
            "tx_hash": self.tx_hash,
            "failure_reason": self.failure_reason,
            "invoice": self.invoice,
        }


def refund_json(row: Refund, decimals: int, symbol: str) -> dict[str, Any]:
    return {
        "id": row.id,
        "refund_id": row.refund_id,
        "invoice_id": row.invoice_id,
        "status": str(row.status),
        "amount": TokenAmount.from_units(row.amount_units, decimals, symbol).format(
            min_fraction_digits=2
        ),
        "amount_units": str(row.amount_units),
        "token": symbol,
        "payer": row.payer_address,
        "method": str(row.method),
        "reason": row.reason,
        "requested_by": row.requested_by,
        "intent": json.loads(row.intent),
        "intent_digest": row.intent_digest,
        "tx_hash": row.tx_hash,
        "failure_reason": row.failure_reason,
        "created_at": as_utc(row.created_at).isoformat(),
        "settled_at": as_utc(row.settled_at).isoformat() if row.settled_at else None,
    }


def _update(session: Session, model: Any, where: Sequence[Any], **values: Any) -> int:
    result = session.execute(
        update(model).where(*where).values(**values).execution_options(synchronize_session=False)
    )
    return int(getattr(result, "rowcount", 0))


def _paid_by_deposit(db: Session, invoice: Invoice) -> bool:
    """Whether the invoice was settled by a transfer to its deposit address (not the router)."""
    if invoice.tx_hash is None:
        return False
    return (
        db.scalar(
            select(DepositReceipt.id)
            .where(
                DepositReceipt.invoice_id == invoice.id,
                DepositReceipt.tx_hash == invoice.tx_hash,
            )
            .limit(1)
        )
        is not None
    )


def _in_flight_units(db: Session, user_id: str, token: str) -> int:
    """What the user's transfers and unsigned payment attempts of ``token`` will take."""
    attempts = db.scalars(
        select(PaymentAttempt.amount_units).where(
            PaymentAttempt.payer_user_id == user_id,
            PaymentAttempt.token == token,
            PaymentAttempt.status.in_(IN_FLIGHT_ATTEMPTS),
            # A signed attempt's outbox row is among the transfers already.
            PaymentAttempt.transfer_id.is_(None),
        )
    ).all()
    return in_flight_units(db, user_id, token) + sum(attempts)


def abandon_attempts(
    sessions: sessionmaker[Session], attempt_ids: Sequence[str], *, now: datetime
) -> list[str]:
    """Mark these attempts ``abandoned`` if they still await approval and release their limit
    reservations, in one transaction; the ids abandoned."""
    if not attempt_ids:
        return []
    with sessions.begin() as db:
        db.connection(execution_options=_WRITE)
        abandoned = list(
            db.scalars(
                update(PaymentAttempt)
                .where(
                    PaymentAttempt.id.in_(attempt_ids),
                    PaymentAttempt.status == AttemptStatus.AWAITING_APPROVAL,
                )
                .values(status=AttemptStatus.ABANDONED, updated_at=now)
                .returning(PaymentAttempt.id)
                .execution_options(synchronize_session=False)
            )
        )
        settle_reservations(
            db, [reference("payment", i) for i in abandoned], UsageStatus.RELEASED, now=now
        )
    return abandoned


class PaymentService:
    """The payer's side: prepare the ``router.pay`` intent, approve it, hand it to the relayer."""

    def __init__(
        self,
        sessions: sessionmaker[Session],
        signer: SignerClient,
        balances: BalanceReader,
        tokens: Mapping[str, TokenInfo],
        gate: ComplianceGate,
        *,
        chain_id: int,
        router: str,
        settings: PaymentSettings,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._sessions = sessions
        self._signer = signer
        self._balances = balances
        self.tokens = {symbol.upper(): info for symbol, info in tokens.items()}
        self._gate = gate
        self.chain_id = chain_id
        self.router = router
        self.settings = settings
        self._clock = clock

    def _now(self) -> datetime:
        return datetime.fromtimestamp(self._clock(), UTC)

    # -- checks --------------------------------------------------------------------------------
    def _token_of(self, invoice: Invoice) -> TokenInfo:
        """The invoice's token if it is ours on our chain and router; InvoiceForeign if not."""
        if invoice.chain_id != self.chain_id:
            raise InvoiceForeign(f"it is for chain {invoice.chain_id}, not {self.chain_id}")
        if invoice.router.lower() != self.router.lower():
            raise InvoiceForeign("it names another payment contract")
        token = self.tokens.get(invoice.symbol)
        if token is None or token.address.lower() != invoice.token.lower():
            raise InvoiceForeign(
                f"it asks for a token this wallet does not hold ({invoice.symbol})"
            )
        return token

    def _payable(self, invoice: Invoice, now: datetime) -> None:
        status = invoice.status
        if status in PAID_STATUSES or status is InvoiceStatus.PROCESSING:
            raise InvoiceAlreadyPaid
        if status is InvoiceStatus.EXPIRED or as_utc(invoice.expires_at) <= now:
            raise InvoiceExpired
        if status is not InvoiceStatus.NEW:
            raise InvoiceNotPayable(str(status))

    async def available(self, payer: Payer, token: TokenInfo) -> int:
        """What the payer can spend now: the balance less transfers and payments in flight."""
        on_chain = await self._balances.balance(token.address, payer.address)
        return max(0, on_chain - await offload.read(self._sessions, self._in_flight, payer, token))

    def _in_flight(self, payer: Payer, token: TokenInfo) -> int:
        with self._sessions() as db:
            return _in_flight_units(db, payer.user_id, token.address)

    # -- prepare -------------------------------------------------------------------------------
    async def prepare(self, invoice_id: str, payer: Payer) -> AttemptView:
        """The ``router.pay`` intent for ``payer`` to approve, stored as an attempt."""
        invoice, store, merchant_name, deposit = await offload.read(
            self._sessions, self._invoice, invoice_id
        )
        now = self._now()
        token = self._token_of(invoice)
        self._payable(invoice, now)
        if invoice.merchant_address.lower() == payer.address.lower():
            raise SelfPayment
        # The payer's fresh attempt is answered again: it was checked (and its value reserved
        # against the payer's limits) when it was made.
        earlier = await offload.read(
            self._sessions, self._open_attempt, invoice.id, payer.user_id, now
        )
        if earlier is not None:
            return self._view(earlier, invoice, store, merchant_name, deposit)
        attempt_id = uuid.uuid4().hex
        movement = Movement(
            kind="payment",
            user_id=payer.user_id,
            from_address=payer.address,
            to_address=invoice.merchant_address,
            symbol=invoice.symbol,
            decimals=invoice.decimals,
            amount_units=invoice.amount_units,
            reference=reference("payment", attempt_id),
        )
        # The gate's limits, reservation and decision are written in the attempt's own
        # transaction (``_insert``).
        screening, on_chain = await screen_with_balance(
            self._gate, self._balances, token.address, movement
        )
        row = await self._store_attempt(
            attempt_id, invoice, token, payer, now, screening=screening, on_chain=on_chain
        )
        return self._view(row, invoice, store, merchant_name, deposit)

    async def _store_attempt(
        self,
        attempt_id: str,
        invoice: Invoice,
        token: TokenInfo,
        payer: Payer,
        now: datetime,
        *,
        screening: Screening,
        on_chain: int,
    ) -> PaymentAttempt:
        """Check the balance (``on_chain``, read for this request), build the ``router.pay``
        intent and store the attempt with the gate's decision."""
        # What is in flight is subtracted in ``_insert``'s transaction, which reads it after
        # the gate's lock.
        if invoice.amount_units > on_chain:
            raise InsufficientBalance(
                TokenAmount.from_units(on_chain, token.decimals, token.symbol).format(),
                token.symbol,
            )
        valid_after = int(now.timestamp()) - CLOCK_SKEW
        valid_before = int(as_utc(invoice.expires_at).timestamp()) + (
            self.settings.settlement_window_seconds
        )
        intent = RouterPay(
            token=token.domain,
            router=invoice.router,
            invoice_id=bytes.fromhex(invoice.id[2:]),
            merchant=invoice.merchant_address,
            amount_units=invoice.amount_units,
            fee_units=invoice.fee_units,
            valid_after=valid_after,
            valid_before=valid_before,
        ).to_json()
        digest = intent_digest(parse_intent(intent)).hex()
        row = PaymentAttempt(
            id=attempt_id,
            invoice_id=invoice.id,
            merchant_id=invoice.merchant_id,
            payer_user_id=payer.user_id,
            payer_wallet_id=payer.wallet_id,
            payer_address=payer.address,
            chain_id=invoice.chain_id,
            router=invoice.router,
            token=invoice.token,
            amount_units=invoice.amount_units,
            fee_units=invoice.fee_units,
            valid_after=valid_after,
            valid_before=valid_before,
            intent=json.dumps(intent, sort_keys=True),
            intent_digest=digest,
            status=AttemptStatus.AWAITING_APPROVAL,
            attempts=0,
            created_at=now,
            updated_at=now,
        )
        decision = await offload.write(
            self._sessions, self._insert, row, screening, Balance(token, on_chain)
        )
        decision.raise_if_denied()
        return row

    def _invoice(self, invoice_id: str) -> tuple[Invoice, Store, str, InvoiceDeposit | None]:
        with self._sessions() as db:
            invoice = db.get(Invoice, invoice_id.strip().lower())
            if invoice is None:
                raise InvoiceNotFound
            store = db.get(Store, invoice.store_id)
            merchant = db.get(Merchant, invoice.merchant_id)
            if store is None or merchant is None:  # pragma: no cover - foreign keys
                raise InvoiceNotFound
            return invoice, store, merchant.name, db.get(InvoiceDeposit, invoice.id)

    def _open_attempt(self, invoice_id: str, user_id: str, now: datetime) -> PaymentAttempt | None:
        """The payer's attempt for this invoice still awaiting approval, if fresh."""
        cutoff = now - timedelta(seconds=self.settings.approval_window_seconds)
        with self._sessions() as db:
            return db.scalars(
                select(PaymentAttempt)
                .where(
                    PaymentAttempt.invoice_id == invoice_id,
                    PaymentAttempt.payer_user_id == user_id,
                    PaymentAttempt.status == AttemptStatus.AWAITING_APPROVAL,
                    PaymentAttempt.created_at > cutoff,
                )
                .order_by(PaymentAttempt.created_at.desc())
            ).first()

    def _insert(self, row: PaymentAttempt, screening: Screening, balance: Balance) -> Decision:
        """The gate's decision and, when it allows and the money is there, the attempt: one
        write transaction (a refusal is committed alone, for the audit trail; an attempt the
        balance cannot cover leaves nothing, not even a reservation to release)."""
        with self._sessions.begin() as db:
            db.connection(execution_options=_WRITE)
            decision = self._gate.decide(db, screening)
            if not decision.allowed:
                return decision
            balance.check(row.amount_units, _in_flight_units(db, row.payer_user_id, row.token))
            db.add(row)
            return decision

    @staticmethod
    def _view(
        row: PaymentAttempt,
        invoice: Invoice,
        store: Store,
        merchant: str,
        deposit: InvoiceDeposit | None,
    ) -> AttemptView:
        return AttemptView(
            id=row.id,
            invoice_id=row.invoice_id,
            status=row.status,
            intent=json.loads(row.intent),
            intent_digest=row.intent_digest,
            payer=row.payer_address,
            tx_hash=row.tx_hash,
            failure_reason=row.failure_reason,
            invoice=public_json(invoice, store, merchant, deposit),
            created_at=as_utc(row.created_at),
        )

    # -- approve -------------------------------------------------------------------------------
    def attempt(self, user_id: str, attempt_id: str) -> AttemptView:
        """One of the payer's attempts (with the invoice's public view)."""
        with self._sessions() as db:
            row = db.get(PaymentAttempt, attempt_id)
            if row is None or row.payer_user_id != user_id:
                raise AttemptNotFound
        invoice, store, merchant, deposit = self._invoice(row.invoice_id)
        return self._view(row, invoice, store, merchant, deposit)

    async def approve(
        self,
        payer: Payer,
        attempt_id: str,
        approvals: Sequence[Mapping[str, Any]],
        *,
        view: AttemptView | None = None,
    ) -> AttemptView:
        """Claim the invoice, have the signer sign, store the authorization in the outbox.

        Approving a signed attempt again returns it unchanged (a retried request). ``view`` is
        the attempt as the caller just read it (``attempt``), to spare reading it again.
        """
        if view is None or view.id != attempt_id:
            view = await offload.read(self._sessions, self.attempt, payer.user_id, attempt_id)
        if view.status in (AttemptStatus.SIGNED, AttemptStatus.SUBMITTED, AttemptStatus.SETTLED):
            return view
        if view.status is not AttemptStatus.AWAITING_APPROVAL:
            raise AttemptNotAwaitingApproval(str(view.status))
        if view.created_at + timedelta(seconds=self.settings.approval_window_seconds) < (
            self._now()
        ):
            # Too late: the payer prepares again (and is checked again).
            await asyncio.to_thread(abandon_attempts, self._sessions, [attempt_id], now=self._now())
            raise AttemptNotAwaitingApproval(str(AttemptStatus.ABANDONED))
        await offload.write(self._sessions, self._claim, attempt_id, view.invoice_id)
        try:
            result = await self._signer.sign(payer.wallet_id, view.intent, list(approvals))
        except BaseException:
            # Nothing was signed (or nothing signed reached us): others may pay it now. The
            # attempt may still be approved, so its limit reservation stays.
            await asyncio.to_thread(self._release, attempt_id, view.invoice_id)
            raise
        signature = str(result["signature"])
        try:
            # Signed: its reservation committed; abandoned (the invoice moved on): released —
            # in the same transaction either way.
            await offload.write(
                self._sessions, self._store_signed, attempt_id, view.invoice_id, signature
            )
        except BaseException:
            await asyncio.to_thread(self._settle_reservation, attempt_id)
            raise
        # What changed is known: the attempt is signed and the invoice processing.
        return replace(
            view,
            status=AttemptStatus.SIGNED,
            invoice={**view.invoice, "status": str(InvoiceStatus.PROCESSING)},
        )

    def _settle_reservation(self, attempt_id: str) -> None:
        """Commit or release the attempt's limit reservation as its status says."""
        _settle_reservation_by_status(
            self._sessions,
            "payment",
            attempt_id,
            select(PaymentAttempt.status).where(PaymentAttempt.id == attempt_id),
            committed=(AttemptStatus.SIGNED, AttemptStatus.SUBMITTED, AttemptStatus.SETTLED),
            released=(AttemptStatus.ABANDONED, AttemptStatus.FAILED),
            now=self._now(),
        )

    def _claim(self, attempt_id: str, invoice_id: str) -> None:
        """Hold the invoice for this attempt, or say why it cannot be paid now."""
        now = self._now()
        with self._sessions.begin() as db:
            db.connection(execution_options=_WRITE)
            claimed = _update(
                db,
                Invoice,
                [
                    Invoice.id == invoice_id,
                    Invoice.status == InvoiceStatus.NEW,
                    Invoice.expires_at > now,
                    (Invoice.claim_attempt_id.is_(None))
                    | (Invoice.claim_expires_at < now)
                    | (Invoice.claim_attempt_id == attempt_id),
                ],
                claim_attempt_id=attempt_id,
                claim_expires_at=now + timedelta(seconds=CLAIM_SECONDS),
            )
            if claimed == 1:
                return
            invoice = db.get(Invoice, invoice_id)
            if invoice is None:  # pragma: no cover - invoices are never deleted
                raise InvoiceNotFound
            try:
                self._payable(invoice, now)
            except (InvoiceAlreadyPaid, InvoiceExpired, InvoiceNotPayable) as exc:
                # Recorded (the transaction commits), then told: this attempt is over.
                failure: PaymentError = exc
                abandoned = _update(
                    db,
                    PaymentAttempt,
                    [
                        PaymentAttempt.id == attempt_id,
                        PaymentAttempt.status == AttemptStatus.AWAITING_APPROVAL,
                    ],
                    status=AttemptStatus.ABANDONED,
                    updated_at=now,
                )
                if abandoned:
                    settle_reservations(
                        db, [reference("payment", attempt_id)], UsageStatus.RELEASED, now=now
                    )
            else:
                failure = InvoiceBeingPaid()
        raise failure

    def _release(self, attempt_id: str, invoice_id: str) -> None:
        with self._sessions.begin() as db:
            _update(
                db,
                Invoice,
                [Invoice.id == invoice_id, Invoice.claim_attempt_id == attempt_id],
                claim_attempt_id=None,
                claim_expires_at=None,
            )

    def _store_signed(self, attempt_id: str, invoice_id: str, signature: str) -> None:
        """Attempt ``signed`` + invoice ``processing`` + event, in one transaction (or none).

        What the outbox row and the event are made of is read first, outside the write
        transaction: the attempt's terms, the invoice's and the store's name do not change once
        made, and whether this attempt still owns the invoice is the conditional UPDATE's to
        say. The writer lock (one per SQLite file, the pipeline's scarce thing) is then held
        for the writes alone.
        """
        now = self._now()
        with self._sessions() as db:
            attempt = db.get(PaymentAttempt, attempt_id)
            invoice = db.get(Invoice, invoice_id)
            if attempt is None or invoice is None:  # pragma: no cover - never deleted
                raise AttemptNotFound
            store = db.get(Store, invoice.store_id)
        processing = {
            "status": InvoiceStatus.PROCESSING,
            "attempt_id": attempt_id,
            "payer_user_id": attempt.payer_user_id,
            "payer_address": attempt.payer_address,
            "processing_at": now,
            "claim_attempt_id": None,
            "claim_expires_at": None,
            "updated_at": now,
        }
        with self._sessions.begin() as db:
            db.connection(execution_options=_WRITE)
            moved = _update(
                db,
                Invoice,
                [
                    Invoice.id == invoice_id,
                    Invoice.status == InvoiceStatus.NEW,
                    Invoice.claim_attempt_id == attempt_id,
                ],
                **processing,
            )
            if moved != 1:
                # The claim lapsed and the invoice moved on: this signature is never used.
                _update(
                    db,
                    PaymentAttempt,
                    [PaymentAttempt.id == attempt_id],
                    status=AttemptStatus.ABANDONED,
                    updated_at=now,
                )
                status = db.scalar(select(Invoice.status).where(Invoice.id == invoice_id))
                failure: InvoiceAlreadyPaid | InvoiceExpired = (
                    InvoiceExpired() if status is InvoiceStatus.EXPIRED else InvoiceAlreadyPaid()
                )
                settle_reservations(
                    db, [reference("payment", attempt_id)], UsageStatus.RELEASED, now=now
                )
            else:
                # The invoice as the UPDATE left it (a detached copy, read here only).
                for column, value in processing.items():
                    setattr(invoice, column, value)
                # The relayer's work, in the same transaction: signed and queued, or neither.
                transfer_id = enqueue_router_call(
                    db,
                    _payment_call(invoice, attempt, signature, store.name if store else None),
                    now=now,
                )
                _update(
                    db,
                    PaymentAttempt,
                    [PaymentAttempt.id == attempt_id],
                    status=AttemptStatus.SIGNED,
                    signature=signature,
                    signed_at=now,
                    updated_at=now,
                    transfer_id=transfer_id,
                )
                append_event(
                    db,
                    type="invoice.processing",
                    merchant_id=invoice.merchant_id,
                    store_id=invoice.store_id,
                    invoice_id=invoice.id,
                    terminal_id=invoice.terminal_id,
                    data={"invoice": invoice_json(invoice)},
                    now=now,
                )
                settle_reservations(
                    db, [reference("payment", attempt_id)], UsageStatus.COMMITTED, now=now
                )
                log.info("invoice %s: payment %s signed", invoice_id, attempt_id)
                return
        raise failure


def _settle_reservation_by_status(
    sessions: sessionmaker[Session],
    kind: str,
    row_id: str,
    status_of: Any,
    *,
    committed: Sequence[enum.StrEnum],
    released: Sequence[enum.StrEnum],
    now: datetime,
) -> None:
    """Commit (signed and on) or release (over without moving money) a movement's limit
    reservation, as the status ``status_of`` reads says; anything else leaves it waiting."""
    with sessions.begin() as db:
        db.connection(execution_options=_WRITE)
        status = db.scalar(status_of)
        if status in committed:
            outcome = UsageStatus.COMMITTED
        elif status in released:
            outcome = UsageStatus.RELEASED
        else:
            return
        settle_reservations(db, [reference(kind, row_id)], outcome, now=now)


def _payment_terms(invoice: Invoice) -> Payment:
    return Payment(
        invoice_id=bytes.fromhex(invoice.id.removeprefix("0x")),
        merchant=invoice.merchant_address,
        token=invoice.token,
        amount_units=invoice.amount_units,
        fee_units=invoice.fee_units,
    )


def _payment_call(
    invoice: Invoice, attempt: PaymentAttempt, signature: str, store_name: str | None
) -> SignedRouterCall:
    """The payer's signed ``router.pay`` as the relayer's outbox row."""
    return SignedRouterCall(
        user_id=attempt.payer_user_id,
        reference=f"payment:{attempt.id}",
        chain_id=attempt.chain_id,
        symbol=invoice.symbol,
        decimals=invoice.decimals,
        from_address=attempt.payer_address,
        router=attempt.router,
        terms=_payment_terms(invoice),
        nonce=bytes.fromhex(invoice.payment_id.removeprefix("0x")),
        valid_after=attempt.valid_after,
        valid_before=attempt.valid_before,
        intent=attempt.intent,
        intent_digest=attempt.intent_digest,
        signature=signature,
        label=store_name or "PaymentRouter",
        note=invoice.order_id or "",
    )


def _refund_call(db: Session, invoice: Invoice, refund: Refund, signature: str) -> SignedRouterCall:
    """The merchant's signed ``router.refund`` as the relayer's outbox row."""
    merchant = db.get(Merchant, invoice.merchant_id)
    if merchant is None:  # pragma: no cover - merchants are never deleted
        raise InvoiceNotFound
    terms = RouterRefundTerms(
        payment=_payment_terms(invoice),
        payer=refund.payer_address,
        refund_id=bytes.fromhex(refund.refund_id.removeprefix("0x")),
        amount_units=refund.amount_units,
    )
    return SignedRouterCall(
        user_id=merchant.owner_user_id,
        reference=f"refund:{refund.id}",
        chain_id=refund.chain_id,
        symbol=invoice.symbol,
        decimals=invoice.decimals,
        from_address=merchant.payout_address,
        router=refund.router,
        terms=terms,
        nonce=refund_nonce(terms, router=refund.router, chain_id=refund.chain_id),
        valid_after=refund.valid_after,
        valid_before=refund.valid_before,
        intent=refund.intent,
        intent_digest=refund.intent_digest,
        signature=signature,
        label=f"Refund · {invoice.order_id or invoice.id[:10]}",
        note=refund.reason,
    )


def _refund_transfer(
    db: Session, invoice: Invoice, refund: Refund, signature: str, *, now: datetime
) -> str:
    """The merchant's signed ``erc3009.transfer`` back to the deposit's payer, as the relayer's
    outbox row (a plain transfer from the payout wallet); its id.

    The row's nonce is the refund's ``refund_id``: the token's ``AuthorizationUsed`` for it (and
    the payout wallet) confirms the transfer and settles the refund in the follower. One row per
    refund: its idempotency key is unique per user, so a second insert fails the transaction.
    """
    merchant = db.get(Merchant, invoice.merchant_id)
    if merchant is None:  # pragma: no cover - merchants are never deleted
        raise InvoiceNotFound
    reference = f"refund:{refund.id}"
    row = Transfer(
        id=uuid.uuid4().hex,
        user_id=merchant.owner_user_id,
        idempotency_key=reference,
        request_hash=hashlib.sha256(reference.encode()).hexdigest(),
        chain_id=refund.chain_id,
        token=invoice.token,
        symbol=invoice.symbol,
        decimals=invoice.decimals,
        from_address=merchant.payout_address,
        to_address=refund.payer_address,
        recipient_input=f"Refund · {invoice.order_id or invoice.id[:10]}"[:320],
        recipient_user_id=None,
        amount_units=refund.amount_units,
        note=refund.reason[:140],
        nonce=refund.refund_id.lower(),
        valid_after=refund.valid_after,
        valid_before=refund.valid_before,
        intent=refund.intent,
        intent_digest=refund.intent_digest,
        signature=signature,
        status=TransferStatus.SIGNED,
        attempts=0,
        created_at=now,
        signed_at=now,
    )
    db.add(row)
    return row.id


@dataclass(frozen=True)
class RefundRecipient:
    """An address a refund of an invoice may go to: one that paid it, and how much is left."""

    address: str
    method: RefundMethod
    paid_units: int
    refundable_units: int


@dataclass(frozen=True)
class _Recipient:
    """Where a refund goes and how: the router's payer, or an address that paid the deposit."""

    method: RefundMethod
    payer: str


@dataclass(frozen=True)
class _ReadyRefund:
    wallet_id: str
    #: ``None`` when the refund is already signed (a retried approval).
    intent: dict[str, Any] | None
    invoice_id: str
    token: str
    payout_address: str
    amount_units: int
    decimals: int
    symbol: str


class RefundService:
    """Refunds: requested within the principal's rights, signed by the payout wallet."""

    def __init__(
        self,
        sessions: sessionmaker[Session],
        signer: SignerClient,
        balances: BalanceReader,
        tokens: Mapping[str, TokenInfo],
        gate: ComplianceGate,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._sessions = sessions
        self._signer = signer
        self._balances = balances
        self.tokens = {symbol.upper(): info for symbol, info in tokens.items()}
        self._gate = gate
        self._clock = clock

    def _now(self) -> datetime:
        return datetime.fromtimestamp(self._clock(), UTC)

    @staticmethod
    def _committed(db: Session, invoice_id: str, *, besides: str | None = None) -> int:
        """Refunds of the invoice signed or submitted (not yet in ``refunded_units``)."""
        query = select(Refund.amount_units).where(
            Refund.invoice_id == invoice_id, Refund.status.in_(COMMITTED_REFUNDS)
        )
        if besides is not None:
            query = query.where(Refund.id != besides)
        return sum(db.scalars(query).all())

    def _refundable(
        self,
        db: Session,
        invoice: Invoice,
        *,
        besides: str | None = None,
        payer: str | None = None,
    ) -> int:
        """What is left to refund: of the invoice, or — for a payment to its deposit address —
        of what reached the box, and at most what ``payer`` sent there less its refunds."""
        committed = self._committed(db, invoice.id, besides=besides)
        if not _paid_by_deposit(db, invoice):
            return max(0, invoice.amount_units - invoice.refunded_units - committed)
        payers = deposit_payers(db, invoice)
        received = sum(p.paid_units for p in payers)
        left = max(0, received - invoice.refunded_units - committed)
        if payer is None:
            return left
        sent = sum(p.paid_units for p in payers if p.address.lower() == payer.lower())
        query = select(Refund.payer_address, Refund.amount_units).where(
            Refund.invoice_id == invoice.id,
            Refund.method == RefundMethod.TRANSFER,
            Refund.status.in_((*COMMITTED_REFUNDS, RefundStatus.SETTLED)),
        )
        if besides is not None:
            query = query.where(Refund.id != besides)
        back = sum(units for to, units in db.execute(query) if to.lower() == payer.lower())
        return max(0, min(left, sent - back))

    @staticmethod
    def _recipient(db: Session, invoice: Invoice, payer: str | None) -> _Recipient:
        """To whom a refund of the invoice goes: the router's payer for a router payment; for a
        payment to the deposit address, the address the chain showed paying it (the one named,
        which must be among them, or the only one). Never an address the chain did not show
        paying: the payer is refunded where the money came from, or not at all."""
        named = parse_evm_address(payer) if payer is not None and payer.strip() else None
        if not _paid_by_deposit(db, invoice):
            assert invoice.payer_address is not None
            if named is not None and named.lower() != invoice.payer_address.lower():
                raise RefundPayerNotRecorded(named, [invoice.payer_address])
            return _Recipient(RefundMethod.ROUTER, invoice.payer_address)
        payers: list[DepositPayer] = deposit_payers(db, invoice)
        addresses = [p.address for p in payers]
        if named is not None:
            if named.lower() not in {a.lower() for a in addresses}:
                raise RefundPayerNotRecorded(named, addresses)
            return _Recipient(RefundMethod.TRANSFER, str(named))
        if len(addresses) != 1:
            # Several people (or a person and an exchange) paid this box: which one is owed is
            # the merchant's call, made with the customer; we do not guess.
            raise RefundNeedsPayerAddress(addresses)
        return _Recipient(RefundMethod.TRANSFER, addresses[0])

    def _checked(
        self,
        db: Session,
        principal: Principal,
        invoice_id: str,
        amount: str | None,
        *,
        payer: str | None,
        key: str | None,
        fingerprint: str,
    ) -> dict[str, Any] | tuple[Invoice, Merchant, TokenInfo, int, _Recipient]:
        """The refund this key made before (its view), or what a new one would be."""
        invoice = self._invoice_for(db, principal, invoice_id)
        principal.require(Permission.REFUNDS_CREATE, invoice.store_id)
        if key is not None:
            earlier = db.scalars(
                select(Refund).where(Refund.invoice_id == invoice.id, Refund.idempotency_key == key)
            ).first()
            if earlier is not None:
                if earlier.request_hash != fingerprint:
                    raise IdempotencyConflict
                return refund_json(earlier, invoice.decimals, invoice.symbol)
        if invoice.status not in PAID_STATUSES or invoice.payer_address is None:
            raise InvoiceNotRefundable(str(invoice.status))
        recipient = self._recipient(db, invoice, payer)
        merchant = db.get(Merchant, invoice.merchant_id)
        if merchant is None:  # pragma: no cover - a foreign key
            raise InvoiceNotFound
        if merchant.payout_wallet_id is None or (
            merchant.payout_address.lower() != invoice.merchant_address.lower()
        ):
            raise PayoutWalletNotHeld
        token = self.tokens.get(invoice.symbol)
        if token is None or token.address.lower() != invoice.token.lower():
            raise InvoiceForeign(f"its token {invoice.symbol} is not offered here")
        units = self._refund_units(db, invoice, amount, recipient)
        principal.require_refund(
            units,
            shown=TokenAmount.from_units(
                principal.refund_limit_units or 0, invoice.decimals, invoice.symbol
            ).format(),
            symbol=invoice.symbol,
        )
        return invoice, merchant, token, units, recipient

    def _refund_units(
        self, db: Session, invoice: Invoice, amount: str | None, recipient: _Recipient
    ) -> int:
        """The refund's amount: as asked (all that is left by default), if still refundable."""
        refundable = self._refundable(db, invoice, payer=self._payer_cap(recipient))
        if amount is None:
            units = refundable
        else:
            units = TokenAmount.parse(amount, invoice.decimals, invoice.symbol).units
            if units <= 0:
                raise InvalidInput("a refund must be more than zero")
        if units == 0 or units > refundable:
            shown = TokenAmount.from_units(refundable, invoice.decimals, invoice.symbol).format()
            raise RefundExceedsRefundable(shown, invoice.symbol)
        return units

    @staticmethod
    def _payer_cap(recipient: _Recipient) -> str | None:
        """The payer whose own payment caps a refund (a deposit's payer), if any."""
        return recipient.payer if recipient.method is RefundMethod.TRANSFER else None

    def _refundable_now(self, db: Session, invoice: Invoice, row: Refund) -> int:
        """What is refundable for this refund row, all the others counted."""
        payer = row.payer_address if row.method is RefundMethod.TRANSFER else None
        return self._refundable(db, invoice, besides=row.id, payer=payer)

    def _invoice_for(self, db: Session, principal: Principal, invoice_id: str) -> Invoice:
        invoice = db.get(Invoice, invoice_id.strip().lower())
        if (
            invoice is None
            or invoice.merchant_id != principal.merchant_id
            or not principal.can_see(invoice.store_id)
        ):
            raise InvoiceNotFound
        return invoice

    async def create(
        self,
        principal: Principal,
        invoice_id: str,
        *,
        amount: str | None = None,
        reason: str = "",
        idempotency_key: str | None = None,
        payer: str | None = None,
    ) -> tuple[dict[str, Any], bool]:
        """A refund awaiting the payout wallet's approval (or this key's earlier one).

        ``payer`` names the address to refund when several paid the invoice's deposit address
        (it must be one of them); otherwise the one payer the chain recorded is refunded.
        """
        return await asyncio.to_thread(
            functools.partial(
                self._create, principal, invoice_id, amount, reason, idempotency_key, payer=payer
            )
        )

    def _create(
        self,
        principal: Principal,
        invoice_id: str,
        amount: str | None,
        reason: str,
        key: str | None,
        *,
        payer: str | None = None,
    ) -> tuple[dict[str, Any], bool]:
        if key is not None and (not key.strip() or len(key) > 255 or not key.isprintable()):
            raise InvalidInput("the Idempotency-Key must be 1 to 255 printable characters")
        if len(reason) > 200:
            raise InvalidInput("a refund's reason is at most 200 characters")
        request: dict[str, Any] = {"amount": amount, "reason": reason}
        if payer is not None:  # (absent from the hash otherwise: earlier keys keep matching)
            request["payer"] = payer.strip().lower()
        fingerprint = hashlib.sha256(json.dumps(request, sort_keys=True).encode()).hexdigest()
        now = self._now()
        with self._sessions() as db:
            checked = self._checked(
                db, principal, invoice_id, amount, payer=payer, key=key, fingerprint=fingerprint
            )
        if isinstance(checked, dict):
            return checked, False
        invoice, merchant, _, units, recipient = checked
        row_id = uuid.uuid4().hex
        # Outside any transaction of ours: the gate keeps its own records.
        decision = self._gate.check(
            Movement(
                kind="refund",
                user_id=principal.user_id or merchant.owner_user_id,
                from_address=invoice.merchant_address,
                to_address=recipient.payer,
                symbol=invoice.symbol,
                decimals=invoice.decimals,
                amount_units=units,
                reference=reference("refund", row_id),
            )
        )
        decision.raise_if_denied()
        try:
            view, created = self._store_refund(
                principal,
                invoice_id,
                row_id=row_id,
                amount=amount,
                payer=payer,
                reason=reason,
                key=key,
                fingerprint=fingerprint,
                units=units,
                now=now,
            )
        except BaseException:
            self._release_decision(decision.id)
            raise
        if not created:
            self._release_decision(decision.id)
        return view, created

    def _release_decision(self, decision_id: str | None) -> None:
        """Free the reservation of a refund that was not stored after all."""
        if decision_id is None:
            return
        try:
            self._gate.release(decision_id)
        except Exception:  # the reservation keeps counting: the safe side
            log.warning("could not release limit reservation %s", decision_id, exc_info=True)

    def _store_refund(
        self,
        principal: Principal,
        invoice_id: str,
        *,
        row_id: str,
        amount: str | None,
        payer: str | None,
        reason: str,
        key: str | None,
        fingerprint: str,
        units: int,
        now: datetime,
    ) -> tuple[dict[str, Any], bool]:
        """The refund row and its event, checked again under the write lock."""
        with self._sessions.begin() as db:
            db.connection(execution_options=_WRITE)
            # Again under the write lock: another refund may have been made meanwhile.
            checked = self._checked(
                db, principal, invoice_id, amount, payer=payer, key=key, fingerprint=fingerprint
            )
            if isinstance(checked, dict):
                return checked, False
            invoice, _, token, units_now, recipient = checked
            if units_now != units:
                shown = TokenAmount.from_units(units_now, invoice.decimals, invoice.symbol)
                raise RefundExceedsRefundable(shown.format(), invoice.symbol)
            # The router's refundId, or the transfer's EIP-3009 nonce: random, single use.
            refund_id = secrets.token_bytes(32)
            valid_after = int(now.timestamp()) - CLOCK_SKEW
            valid_before = valid_after + CLOCK_SKEW + REFUND_VALIDITY
            if recipient.method is RefundMethod.TRANSFER:
                # Paid to the deposit address: the router has no payer for it. A plain transfer
                # from the payout wallet to the address that paid, signed like any other.
                intent = Erc3009Transfer(
                    token=token.domain,
                    to=recipient.payer,
                    amount_units=units,
                    valid_after=valid_after,
                    valid_before=valid_before,
                    nonce=refund_id,
                ).to_json()
            else:
                intent = RouterRefund(
                    token=token.domain,
                    router=invoice.router,
                    invoice_id=bytes.fromhex(invoice.id[2:]),
                    merchant=invoice.merchant_address,
                    payment_amount_units=invoice.amount_units,
                    payment_fee_units=invoice.fee_units,
                    payer=recipient.payer,
                    refund_id=refund_id,
                    amount_units=units,
                    valid_after=valid_after,
                    valid_before=valid_before,
                ).to_json()
            row = Refund(
                id=row_id,
                refund_id="0x" + refund_id.hex(),
                method=recipient.method,
                invoice_id=invoice.id,
                merchant_id=invoice.merchant_id,
                store_id=invoice.store_id,
                requested_by=principal.actor,
                payer_address=recipient.payer,
                amount_units=units,
                reason=reason,
                chain_id=invoice.chain_id,
                router=invoice.router,
                token=invoice.token,
                valid_after=valid_after,
                valid_before=valid_before,
                intent=json.dumps(intent, sort_keys=True),
                intent_digest=intent_digest(parse_intent(intent)).hex(),
                status=RefundStatus.AWAITING_APPROVAL,
                idempotency_key=key,
                request_hash=fingerprint if key is not None else None,
                attempts=0,
                created_at=now,
                updated_at=now,
            )
            db.add(row)
            try:
                db.flush()
            except IntegrityError:  # pragma: no cover - the same key raced in (write lock)
                raise IdempotencyConflict from None
            view = refund_json(row, invoice.decimals, invoice.symbol)
            append_event(
                db,
                type="refund.created",
                merchant_id=invoice.merchant_id,
                store_id=invoice.store_id,
                invoice_id=invoice.id,
                terminal_id=invoice.terminal_id,
                data={"refund": view, "invoice": invoice_json(invoice)},
                now=now,
            )
        return view, True

    def refundable(self, principal: Principal, invoice_id: str) -> int:
        """What can still be refunded of the invoice: paid minus refunds made or on their way
        (signed or submitted); 0 while it is not paid."""
        with self._sessions() as db:
            invoice = self._invoice_for(db, principal, invoice_id)
            principal.require(Permission.INVOICES_READ, invoice.store_id)
            if invoice.status not in PAID_STATUSES:
                return 0
            return self._refundable(db, invoice)

    def recipients(self, principal: Principal, invoice_id: str) -> list[RefundRecipient]:
        """Where a refund of the invoice may go: the router's payer, or each address that paid
        its deposit address (with what each paid and can still get back); none while unpaid."""
        with self._sessions() as db:
            invoice = self._invoice_for(db, principal, invoice_id)
            principal.require(Permission.INVOICES_READ, invoice.store_id)
            if invoice.status not in PAID_STATUSES or invoice.payer_address is None:
                return []
            if not _paid_by_deposit(db, invoice):
                return [
                    RefundRecipient(
                        invoice.payer_address,
                        RefundMethod.ROUTER,
                        invoice.amount_units,
                        self._refundable(db, invoice),
                    )
                ]
            return [
                RefundRecipient(
                    p.address,
                    RefundMethod.TRANSFER,
                    p.paid_units,
                    self._refundable(db, invoice, payer=p.address),
                )
                for p in deposit_payers(db, invoice)
            ]

    def _refund_for(self, db: Session, principal: Principal, refund_id: str) -> Refund:
        row = db.get(Refund, refund_id)
        if row is None or row.merchant_id != principal.merchant_id:
            raise RefundNotFound
        if not principal.can_see(row.store_id):
            raise RefundNotFound
        return row

    def get(self, principal: Principal, refund_id: str) -> dict[str, Any]:
        with self._sessions() as db:
            row = self._refund_for(db, principal, refund_id)
            invoice = db.get(Invoice, row.invoice_id)
            if invoice is None:  # pragma: no cover
                raise RefundNotFound
            return refund_json(row, invoice.decimals, invoice.symbol)

    def refunds(self, principal: Principal, invoice_id: str) -> list[dict[str, Any]]:
        with self._sessions() as db:
            invoice = self._invoice_for(db, principal, invoice_id)
            principal.require(Permission.INVOICES_READ, invoice.store_id)
            rows = db.scalars(
                select(Refund).where(Refund.invoice_id == invoice.id).order_by(Refund.created_at)
            ).all()
            return [refund_json(r, invoice.decimals, invoice.symbol) for r in rows]

    def payout_wallet(self, principal: Principal, refund_id: str) -> tuple[str, str]:
        """(payout wallet id, intent digest) of a refund, for the approval ceremony."""
        with self._sessions() as db:
            row = self._refund_for(db, principal, refund_id)
            merchant = db.get(Merchant, row.merchant_id)
            if merchant is None or merchant.payout_wallet_id is None:
                raise PayoutWalletNotHeld
            return merchant.payout_wallet_id, row.intent_digest

    async def approve(
        self, principal: Principal, refund_id: str, approvals: Sequence[Mapping[str, Any]]
    ) -> dict[str, Any]:
        """Sign the refund with the payout wallet (its own approval checked by the signer)."""
        ready = await asyncio.to_thread(self._ready, principal, refund_id)
        if ready.intent is None:  # already signed: a retried request
            return await asyncio.to_thread(self.get, principal, refund_id)
        balance = await self._balances.balance(ready.token, ready.payout_address)
        if balance < ready.amount_units:
            raise InsufficientBalance(
                TokenAmount.from_units(balance, ready.decimals, ready.symbol).format(),
                ready.symbol,
            )
        result = await self._signer.sign(ready.wallet_id, ready.intent, list(approvals))
        try:
            await asyncio.to_thread(
                self._store_signed, refund_id, ready.invoice_id, str(result["signature"])
            )
        finally:
            # Signed: the reservation is committed; refused (another refund came first): freed.
            await asyncio.to_thread(self._settle_reservation, refund_id)
        return await asyncio.to_thread(self.get, principal, refund_id)

    def _settle_reservation(self, refund_id: str) -> None:
        """Commit or release the refund's limit reservation as its status says."""
        _settle_reservation_by_status(
            self._sessions,
            "refund",
            refund_id,
            select(Refund.status).where(Refund.id == refund_id),
            committed=(RefundStatus.SIGNED, RefundStatus.SUBMITTED, RefundStatus.SETTLED),
            released=(RefundStatus.FAILED, RefundStatus.EXPIRED),
            now=self._now(),
        )

    def _ready(self, principal: Principal, refund_id: str) -> _ReadyRefund:
        now = self._now()
        with self._sessions.begin() as db:
            row = self._refund_for(db, principal, refund_id)
            invoice = db.get(Invoice, row.invoice_id)
            merchant = db.get(Merchant, row.merchant_id)
            if invoice is None or merchant is None:  # pragma: no cover
                raise RefundNotFound
            principal.require_refund(
                row.amount_units,
                shown=TokenAmount.from_units(
                    principal.refund_limit_units or 0, invoice.decimals, invoice.symbol
                ).format(),
                symbol=invoice.symbol,
            )
            if merchant.payout_wallet_id is None:
                raise PayoutWalletNotHeld
            ready = _ReadyRefund(
                wallet_id=merchant.payout_wallet_id,
                intent=None,
                invoice_id=invoice.id,
                token=invoice.token,
                payout_address=invoice.merchant_address,
                amount_units=row.amount_units,
                decimals=invoice.decimals,
                symbol=invoice.symbol,
            )
            if row.status in (RefundStatus.SIGNED, RefundStatus.SUBMITTED, RefundStatus.SETTLED):
                return ready
            if row.status is not RefundStatus.AWAITING_APPROVAL:
                raise RefundNotAwaitingApproval(str(row.status))
            if row.valid_before - CLOCK_SKEW < now.timestamp():
                row.status = RefundStatus.EXPIRED
                settle_reservations(
                    db, [reference("refund", row.id)], UsageStatus.RELEASED, now=now
                )
                expired = RefundNotAwaitingApproval(str(RefundStatus.EXPIRED))
            else:
                refundable = self._refundable_now(db, invoice, row)
                if row.amount_units > refundable:
                    shown = TokenAmount.from_units(refundable, invoice.decimals, invoice.symbol)
                    raise RefundExceedsRefundable(shown.format(), invoice.symbol)
                return replace(ready, intent=json.loads(row.intent))
        raise expired

    def _store_signed(self, refund_id: str, invoice_id: str, signature: str) -> None:
        """Refund ``signed`` (the outbox) if still within what is refundable; else refused."""
        now = self._now()
        with self._sessions.begin() as db:
            db.connection(execution_options=_WRITE)
            invoice = db.scalars(
                select(Invoice).where(Invoice.id == invoice_id).with_for_update()
            ).one()
            row = db.get(Refund, refund_id)
            if row is None:  # pragma: no cover
                raise RefundNotFound
            if row.status is not RefundStatus.AWAITING_APPROVAL:
                return
            refundable = self._refundable_now(db, invoice, row)
            if row.amount_units > refundable:
                # Another refund was signed meanwhile: this signature is never used.
                row.status = RefundStatus.FAILED
                row.failure_code = RefundExceedsRefundable.code
                row.failure_reason = "another refund of this invoice was approved first"
                db.flush()
                shown = TokenAmount.from_units(refundable, invoice.decimals, invoice.symbol)
                failure = RefundExceedsRefundable(shown.format(), invoice.symbol)
            else:
                row.status = RefundStatus.SIGNED
                row.signature = signature
                row.signed_at = now
                row.updated_at = now
                # The relayer's work, in the same transaction: signed and queued, or neither.
                if row.method is RefundMethod.TRANSFER:
                    row.transfer_id = _refund_transfer(db, invoice, row, signature, now=now)
                else:
                    row.transfer_id = enqueue_router_call(
                        db, _refund_call(db, invoice, row, signature), now=now
                    )
                db.flush()
                append_event(
                    db,
                    type="refund.signed",
                    merchant_id=row.merchant_id,
                    store_id=row.store_id,
                    invoice_id=invoice.id,
                    terminal_id=invoice.terminal_id,
                    data={"refund": refund_json(row, invoice.decimals, invoice.symbol)},
                    now=now,
                )
                return
        raise failure


def works_for_a_merchant(sessions: sessionmaker[Session], user_id: str) -> bool:
    """Whether the user is on a merchant's staff (any role, not removed): the wallet app then
    shows its "Business" tab. One indexed read; needs no chain."""
    with sessions() as db:
        found = db.scalar(
            select(StaffMember.id)
            .where(StaffMember.user_id == user_id, StaffMember.revoked_at.is_(None))
            .limit(1)
        )
    return found is not None


@dataclass(frozen=True)
class Payments:
    """The payments domain's services for one process, built together."""

    merchants: MerchantService
    api_keys: ApiKeyService
    invoices: InvoiceService
    payments: PaymentService
    refunds: RefundService
    webhooks: WebhookService
    reports: ReportService
    rate_limiter: RateLimiter
    #: The database they share (for reads the API runs itself: ``db.offload``).
    sessions: sessionmaker[Session]
    #: Staff members' refund passkeys (needs the passkey ceremonies: the API process has them).
    approvers: RefundApproverService | None = None


def build_payments(
    sessions: sessionmaker[Session],
    signer: SignerClient,
    balances: BalanceReader,
    tokens: Mapping[str, TokenInfo],
    gate: ComplianceGate,
    *,
    chain_id: int,
    router: str,
    settings: PaymentSettings,
    rates: RateSource,
    allow_http_webhooks: bool,
    deposit_contract: str | None = None,
    passkeys: PasskeyService | None = None,
    clock: Callable[[], float] = time.time,
) -> Payments:
    """Every payments service on one database, chain, router and token set (and the chain's
    ``InvoiceDeposits`` contract, which gives every new invoice a deposit address)."""
    merchants = MerchantService(
        sessions,
        settlement_tokens={symbol: info.decimals for symbol, info in tokens.items()},
        fee_bps=settings.fee_bps,
        manager_refund_limit=settings.manager_refund_limit,
        cashier_refund_limit=settings.cashier_refund_limit,
        clock=clock,
    )
    return Payments(
        sessions=sessions,
        merchants=merchants,
        approvers=(
            None
            if passkeys is None
            else RefundApproverService(sessions, signer, passkeys, merchants, tokens, clock=clock)
        ),
        api_keys=ApiKeyService(sessions, clock=clock),
        invoices=InvoiceService(
            sessions,
            tokens=tokens,
            chain_id=chain_id,
            router=router,
            rates=rates,
            settings=settings,
            deposit_contract=deposit_contract,
            clock=clock,
        ),
        payments=PaymentService(
            sessions,
            signer,
            balances,
            tokens,
            gate,
            chain_id=chain_id,
            router=router,
            settings=settings,
            clock=clock,
        ),
        refunds=RefundService(sessions, signer, balances, tokens, gate, clock=clock),
        webhooks=WebhookService(
            sessions, allow_http=allow_http_webhooks or settings.webhook_allow_http, clock=clock
        ),
        reports=ReportService(sessions),
        rate_limiter=RateLimiter(settings.api_key_rate_per_second, settings.api_key_burst),
    )
