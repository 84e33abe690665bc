"""The follower's handler for the router's events: settlements, failures and refunds.

It runs inside the follower's transaction (the event, the checkpoint and our changes commit
together), and each change appends a payment event (webhooks, live streams) in the same
transaction. The follower applies an event once on the canonical chain and undoes it with
``revert`` on a reorganisation, so:

* ``PaymentSettled`` with the invoice's exact terms (merchant, token, amount, fee) settles it —
  once. A *second* ``PaymentSettled`` for an invoice id already paid is an over-payment
  (``paid_over``), never a second settlement; one for an expired invoice settles it
  ``paid_late``. Events naming another merchant or token than the invoice's are not ours.
  One with other amounts (someone paid under our invoice id) is flagged, not settled.
* ``PaymentFailed`` can be emitted by anyone calling ``payBatch`` with a bad authorization, so
  it marks an invoice ``invalid`` only when it comes from a transaction our relayer recorded
  for the invoice's attempt (its outbox row's ``tx_hash``, or any hash of the ``payBatch`` that
  carried the row: ``transfers.outbox.carried_by``); otherwise it is logged and ignored. And
  only when its reason is final (``failure_is_final``): a payment that failed because the token
  was paused is sent again by the relayer, which judges the same reason the same way.
* ``PaymentRefunded`` adds to ``refunded_units`` (refunded / partially refunded) and settles
  our refund row of that ``refundId``.
* The token's ``AuthorizationUsed`` settles a refund of a deposit payment (a plain transfer from
  the payout wallet, ``RefundMethod.TRANSFER``) when its nonce is the refund's and its authorizer
  the invoice's payout wallet — with the same bookkeeping as ``PaymentRefunded``
  (:func:`settle_refund`). The transfers' handler confirms the outbox row in the same
  transaction; a reorganisation takes both back.

The handler has the follower's batch hooks (``BatchEventHandler``): before a range's events are
applied (or reverted) it locks the invoices they name, then the refunds, and reads the attempts,
in one query each (per chunk of keys) — the ``AuthorizationUsed`` of a range cost one indexed
look-up of refund ids together, not one each.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final, TypeVar

from sqlalchemy import ColumnElement, Select, select
from sqlalchemy.orm import InstrumentedAttribute, Session

from seiwallet.chain.errors import revert_error
from seiwallet.chain.follower import batch_cache, chunked
from seiwallet.chain.models import ChainEvent
from seiwallet.chain.router import failure_reason
from seiwallet.db import as_utc
from seiwallet.payments.events import append_event
from seiwallet.payments.invoices import invoice_json
from seiwallet.payments.models import (
    PAID_STATUSES,
    AttemptStatus,
    Invoice,
    InvoiceStatus,
    PaymentAttempt,
    Refund,
    RefundMethod,
    RefundStatus,
    can_transition,
    refund_status,
)
from seiwallet.payments.services import refund_json
from seiwallet.transfers.handlers import AUTHORIZATION_USED
from seiwallet.transfers.models import Transfer, TransferStatus
from seiwallet.transfers.outbox import carried_by, failure_is_final

log = logging.getLogger(__name__)
alerts = logging.getLogger("seiwallet.alerts")

SETTLED = "PaymentSettled"
FAILED = "PaymentFailed"
REFUNDED = "PaymentRefunded"


def _same(a: object, b: object) -> bool:
    return str(a).lower() == str(b).lower()


def _sent_in(session: Session, attempt: PaymentAttempt, event: ChainEvent) -> bool:
    """Whether our relayer sent the attempt in the event's transaction (alone or in a batch)."""
    if attempt.transfer_id is None:
        return _same(attempt.tx_hash, event.transaction_hash)
    return carried_by(
        session,
        chain_id=event.chain_id,
        tx_hash=event.transaction_hash,
        transfer_id=attempt.transfer_id,
    )


def _carried(
    model: type[PaymentAttempt] | type[Refund],
    signed: AttemptStatus | RefundStatus,
    submitted: AttemptStatus | RefundStatus,
    *,
    chain_id: int,
) -> Select[Any, Transfer]:
    """Signed or submitted attempts (or refunds) whose outbox transfer has news for them: it
    failed, or it was submitted and the row does not carry its transaction hash yet."""
    return (
        select(model, Transfer)
        .join(Transfer, Transfer.id == model.transfer_id)
        .where(
            model.chain_id == chain_id,
            model.status.in_((signed, submitted)),
            Transfer.status.in_((TransferStatus.SUBMITTED, TransferStatus.FAILED)),
            (model.status == signed)
            | (Transfer.status == TransferStatus.FAILED)
            | (model.tx_hash.is_distinct_from(Transfer.tx_hash)),
        )
    )


_ATTEMPTS_CARRIED: Final = (PaymentAttempt, AttemptStatus.SIGNED, AttemptStatus.SUBMITTED)
_REFUNDS_CARRIED: Final = (Refund, RefundStatus.SIGNED, RefundStatus.SUBMITTED)


def outbox_verdicts_waiting(session: Session, *, chain_id: int) -> bool:
    """Whether :func:`reconcile_outbox` has anything to carry (a read: no writer's lock)."""
    return any(
        session.execute(
            _carried(*carried, chain_id=chain_id).with_only_columns(carried[0].id).limit(1)
        ).first()
        is not None
        for carried in (_ATTEMPTS_CARRIED, _REFUNDS_CARRIED)
    )


def reconcile_outbox(session: Session, *, chain_id: int, limit: int = 200) -> int:
    """Follow the relayer's verdicts on payments and refunds; the number of rows moved.

    The relayer owns the outbox rows (``transfers``) of signed attempts and refunds. When it
    gives one up for good (the authorization reverts: blacklisted payer, a token paused past the
    window, expired before submission), the attempt fails and its invoice becomes ``invalid``
    (the counter makes a new one), or the refund fails; and a submitted row's transaction hash is
    recorded on the attempt or refund it carries. Success is the follower's ``PaymentSettled``
    and ``PaymentRefunded``, not this. Idempotent: a row moves once.
    """
    moved = 0
    attempts = session.execute(
        _carried(*_ATTEMPTS_CARRIED, chain_id=chain_id)
        .limit(limit)
        .with_for_update(of=PaymentAttempt)
    ).all()
    for attempt, transfer in attempts:
        if transfer.status is TransferStatus.SUBMITTED:
            if attempt.status is AttemptStatus.SIGNED or attempt.tx_hash != transfer.tx_hash:
                attempt.status = AttemptStatus.SUBMITTED
                attempt.tx_hash, attempt.sponsor = transfer.tx_hash, transfer.sponsor
                attempt.submitted_at = transfer.submitted_at
                moved += 1
            continue
        attempt.status = AttemptStatus.FAILED
        attempt.failure_code = transfer.failure_code
        attempt.failure_reason = transfer.failure_reason
        moved += 1
        invoice = session.get(Invoice, attempt.invoice_id, with_for_update=True)
        if invoice is not None and invoice.status is InvoiceStatus.PROCESSING:
            invoice.status = InvoiceStatus.INVALID
            invoice.failure_code = transfer.failure_code
            invoice.failure_reason = transfer.failure_reason
            PaymentEventHandler._emit(
                session, invoice, "invoice.invalid", reason=invoice.failure_reason
            )
    refunds = session.execute(
        _carried(*_REFUNDS_CARRIED, chain_id=chain_id).limit(limit).with_for_update(of=Refund)
    ).all()
    for refund, transfer in refunds:
        if transfer.status is TransferStatus.SUBMITTED:
            if refund.status is RefundStatus.SIGNED or refund.tx_hash != transfer.tx_hash:
                refund.status = RefundStatus.SUBMITTED
                refund.tx_hash, refund.sponsor = transfer.tx_hash, transfer.sponsor
                moved += 1
            continue
        refund.status = RefundStatus.FAILED
        refund.failure_code = transfer.failure_code
        refund.failure_reason = transfer.failure_reason
        moved += 1
        invoice = session.get(Invoice, refund.invoice_id)
        if invoice is not None:
            append_event(
                session,
                type="refund.failed",
                merchant_id=refund.merchant_id,
                store_id=refund.store_id,
                invoice_id=invoice.id,
                terminal_id=invoice.terminal_id,
                data={"refund": refund_json(refund, invoice.decimals, invoice.symbol)},
            )
    return moved


def settle_refund(
    session: Session,
    invoice: Invoice,
    refund: Refund | None,
    *,
    amount_units: int,
    event: ChainEvent,
) -> None:
    """Money went back to a payer of ``invoice`` in ``event``: add it to ``refunded_units``
    (the invoice refunded or partially refunded), settle our refund row if it is one of ours,
    and append ``refund.settled`` and the invoice's event. Router refunds and transfer refunds
    alike; the follower applies each event once on the canonical chain."""
    invoice.refunded_units += amount_units
    target = refund_status(invoice.amount_units, invoice.refunded_units)
    if invoice.status in PAID_STATUSES and can_transition(invoice.status, target):
        invoice.status = target
    moment = datetime.fromtimestamp(event.block_timestamp, UTC)
    if refund is not None and refund.status is not RefundStatus.SETTLED:
        refund.status = RefundStatus.SETTLED
        refund.tx_hash = event.transaction_hash
        refund.block_number = event.block_number
        refund.settled_at = moment
        refund.next_attempt_at = None
    session.flush()
    if refund is not None:
        append_event(
            session,
            type="refund.settled",
            merchant_id=invoice.merchant_id,
            store_id=invoice.store_id,
            invoice_id=invoice.id,
            terminal_id=invoice.terminal_id,
            data={"refund": refund_json(refund, invoice.decimals, invoice.symbol)},
        )
    PaymentEventHandler._emit(
        session,
        invoice,
        f"invoice.{target}" if target != InvoiceStatus.SETTLED else "invoice.settled",
        tx_hash=event.transaction_hash,
    )


def unsettle_refund(
    session: Session, invoice: Invoice, refund: Refund | None, *, amount_units: int
) -> None:
    """Undo :func:`settle_refund` when its event leaves the canonical chain."""
    invoice.refunded_units = max(0, invoice.refunded_units - amount_units)
    if invoice.status in PAID_STATUSES:
        invoice.status = refund_status(invoice.amount_units, invoice.refunded_units)
    if refund is not None and refund.status is RefundStatus.SETTLED:
        refund.status = RefundStatus.SUBMITTED
        refund.settled_at = None
        refund.block_number = None


@dataclass
class _Loaded:
    """What :meth:`PaymentEventHandler.prepare` loaded (and locked) for a range."""

    #: (chain, invoice id) → the invoice, locked; ``None`` if there is none on that chain.
    invoices: dict[tuple[int, str], Invoice | None] = field(default_factory=dict)
    #: (chain, nonce) of an ``AuthorizationUsed`` → the transfer refund of that nonce with its
    #: invoice (both locked), ``None`` if the nonce is no transfer refund's.
    transfer_refunds: dict[tuple[int, str], tuple[Invoice, Refund] | None] = field(
        default_factory=dict
    )
    #: ``refundId`` of a ``PaymentRefunded`` → our router refund (locked), if it is ours.
    router_refunds: dict[str, Refund | None] = field(default_factory=dict)
    #: The attempts settlements and failures read, held here: the session's identity map
    #: keeps only weak references, so rows loaded and dropped are gone (and read again, one
    #: query per event) by the time the events are applied.
    attempts: list[PaymentAttempt] = field(default_factory=list)


_LOADED = "payments.handlers"
_Row = TypeVar("_Row", Invoice, Refund)
#: The router's events whose invoice apply (and revert) lock.
_APPLIED = frozenset({SETTLED, FAILED, REFUNDED})
_REVERTED = frozenset({SETTLED, REFUNDED})


def _load(session: Session, events: Sequence[ChainEvent], *, reverting: bool) -> _Loaded:
    """Everything apply (or revert) of ``events`` reads, in the order it is locked: the transfer
    refunds' ids (unlocked), the invoices, the refunds (locked), the attempts; a query each per
    chain and :func:`~seiwallet.chain.follower.chunked` keys, and none for what nobody asks."""
    loaded = _Loaded()
    router_names = _REVERTED if reverting else _APPLIED
    for chain_id in dict.fromkeys(event.chain_id for event in events):
        named = [e for e in events if e.chain_id == chain_id and e.key]
        router = [e for e in named if e.name in router_names]
        nonces = [str(e.key).lower() for e in named if e.name == AUTHORIZATION_USED]
        refund_rows = _transfer_refund_rows(session, chain_id, nonces)
        # The invoices first, as everywhere else (a refund's invoice is on the refund's chain:
        # a refund is made with its invoice's chain id).
        invoice_ids = [str(e.key).lower() for e in router]
        loaded.invoices.update(((chain_id, key), None) for key in invoice_ids)
        for invoice in _locked(
            session,
            Invoice,
            Invoice.id,
            [*invoice_ids, *(invoice_id for _, invoice_id in refund_rows.values())],
            Invoice.chain_id == chain_id,
        ):
            loaded.invoices[(chain_id, invoice.id)] = invoice
        # Then the refunds: transfer refunds by row id, router refunds by refundId.
        refunds = {
            refund.id: refund
            for refund in _locked(
                session, Refund, Refund.id, [row_id for row_id, _ in refund_rows.values()]
            )
        }
        for nonce in nonces:
            row_id, invoice_id = refund_rows.get(nonce, ("", ""))
            ours, its_invoice = refunds.get(row_id), loaded.invoices.get((chain_id, invoice_id))
            if not row_id:
                loaded.transfer_refunds[(chain_id, nonce)] = None
            elif ours is not None and its_invoice is not None:
                loaded.transfer_refunds[(chain_id, nonce)] = (its_invoice, ours)
            # else: gone meanwhile; the per-event look-up decides, as it always did.
        refund_ids = [str(e.args.get("refundId", "")).lower() for e in router if e.name == REFUNDED]
        loaded.router_refunds.update((refund_id, None) for refund_id in refund_ids)
        for refund in _locked(
            session,
            Refund,
            Refund.refund_id,
            refund_ids,
            Refund.method == RefundMethod.ROUTER,
        ):
            loaded.router_refunds[refund.refund_id] = refund
        # The attempts that settlements and failures read (unlocked: the identity map has them).
        settling = [loaded.invoices.get((chain_id, str(e.key).lower())) for e in router]
        attempt_ids = [i.attempt_id for i in settling if i is not None and i.attempt_id is not None]
        for chunk in chunked(attempt_ids):
            loaded.attempts.extend(
                session.scalars(select(PaymentAttempt).where(PaymentAttempt.id.in_(chunk)))
            )
    return loaded


def _transfer_refund_rows(
    session: Session, chain_id: int, nonces: Sequence[str]
) -> dict[str, tuple[str, str]]:
    """The nonces of a range's ``AuthorizationUsed`` that are transfer refunds' ids → (refund row
    id, invoice id): the one look-up a range of plain transfers costs this handler."""
    rows: dict[str, tuple[str, str]] = {}
    for chunk in chunked(nonces):
        for row_id, invoice_id, refund_id in session.execute(
            select(Refund.id, Refund.invoice_id, Refund.refund_id).where(
                Refund.refund_id.in_(chunk),
                Refund.method == RefundMethod.TRANSFER,
                Refund.chain_id == chain_id,
            )
        ):
            rows[refund_id] = (row_id, invoice_id)
    return rows


def _locked(
    session: Session,
    model: type[_Row],
    column: InstrumentedAttribute[str],
    keys: Sequence[str],
    *where: ColumnElement[bool],
) -> list[_Row]:
    """The rows of ``model`` whose ``column`` is one of ``keys``, locked in id order."""
    rows: list[_Row] = []
    for chunk in chunked(keys):
        rows.extend(
            session.scalars(
                select(model).where(column.in_(chunk), *where).order_by(model.id).with_for_update()
            )
        )
    return rows


def _loaded(session: Session) -> _Loaded | None:
    loaded = batch_cache(session).get(_LOADED)
    return loaded if isinstance(loaded, _Loaded) else None


class PaymentEventHandler:
    """Applies the router's events to invoices, attempts and refunds (follower
    ``BatchEventHandler``)."""

    def prepare(self, session: Session, events: Sequence[ChainEvent]) -> None:
        batch_cache(session)[_LOADED] = _load(session, events, reverting=False)

    def prepare_revert(self, session: Session, events: Sequence[ChainEvent]) -> None:
        batch_cache(session)[_LOADED] = _load(session, events, reverting=True)

    def apply(self, session: Session, event: ChainEvent) -> None:
        if event.name == SETTLED:
            self._settled(session, event)
        elif event.name == FAILED:
            self._failed(session, event)
        elif event.name == REFUNDED:
            self._refunded(session, event)
        elif event.name == AUTHORIZATION_USED:
            self._transferred_back(session, event)

    def revert(self, session: Session, event: ChainEvent) -> None:
        if event.name == SETTLED:
            self._unsettle(session, event)
        elif event.name == REFUNDED:
            self._unrefund(session, event)
        elif event.name == AUTHORIZATION_USED:
            found = self._transfer_refund(session, event)
            if found is not None and found[1].status is RefundStatus.SETTLED:
                unsettle_refund(session, found[0], found[1], amount_units=found[1].amount_units)
        # A reverted PaymentFailed changes nothing: the relayer decides what happens next.

    # -- helpers ---------------------------------------------------------------------------------
    @staticmethod
    def _invoice(session: Session, event: ChainEvent) -> Invoice | None:
        if not event.key:
            return None
        loaded, key = _loaded(session), (event.chain_id, event.key.lower())
        if loaded is not None and key in loaded.invoices:
            invoice = loaded.invoices[key]
        else:
            invoice = session.scalars(
                select(Invoice)
                .where(Invoice.id == event.key.lower(), Invoice.chain_id == event.chain_id)
                .with_for_update()
            ).one_or_none()
        if invoice is None:
            return None
        if not _same(invoice.router, event.contract):
            return None
        return invoice

    @staticmethod
    def _moment(event: ChainEvent) -> datetime:
        return datetime.fromtimestamp(event.block_timestamp, UTC)

    @staticmethod
    def _emit(session: Session, invoice: Invoice, type: str, **extra: Any) -> None:
        session.flush()
        append_event(
            session,
            type=type,
            merchant_id=invoice.merchant_id,
            store_id=invoice.store_id,
            invoice_id=invoice.id,
            terminal_id=invoice.terminal_id,
            data={"invoice": invoice_json(invoice), **extra},
        )

    @staticmethod
    def _attempt(session: Session, invoice: Invoice, payer: str) -> PaymentAttempt | None:
        """The payer's signed attempt for the invoice (the winning one if it is theirs)."""
        if invoice.attempt_id is not None:
            attempt = session.get(PaymentAttempt, invoice.attempt_id)
            if attempt is not None and _same(attempt.payer_address, payer):
                return attempt
        return None

    # -- settlements -----------------------------------------------------------------------------
    def _settled(self, session: Session, event: ChainEvent) -> None:
        invoice = self._invoice(session, event)
        if invoice is None:
            return
        args = event.args
        if not (_same(args.get("merchant"), invoice.merchant_address)) or not _same(
            args.get("token"), invoice.token
        ):
            log.info("PaymentSettled for %s names another merchant or token: ignored", invoice.id)
            return
        amount, fee = int(args["amount"]), int(args["fee"])
        payer = str(args["payer"])
        moment = self._moment(event)
        if invoice.status in PAID_STATUSES:
            # The router settles terms once: this is another payment under the same invoice id.
            invoice.paid_over = True
            invoice.paid_units += amount
            alerts.warning(
                "invoice %s paid again by %s in tx %s (%d units): refundable over-payment",
                invoice.id,
                payer,
                event.transaction_hash,
                amount,
            )
            self._emit(
                session,
                invoice,
                "invoice.anomaly",
                anomaly="paid_over",
                tx_hash=event.transaction_hash,
                payer=payer,
                amount_units=str(amount),
            )
            return
        if amount != invoice.amount_units or fee != invoice.fee_units:
            # Someone paid other terms under our invoice id: not this invoice's settlement.
            if amount < invoice.amount_units:
                invoice.paid_partial = True
            else:
                invoice.paid_over = True
            invoice.paid_units += amount
            alerts.warning(
                "invoice %s: a payment of other terms (%d units, fee %d) in tx %s",
                invoice.id,
                amount,
                fee,
                event.transaction_hash,
            )
            self._emit(
                session,
                invoice,
                "invoice.anomaly",
                anomaly="paid_partial" if invoice.paid_partial else "paid_over",
                tx_hash=event.transaction_hash,
                payer=payer,
                amount_units=str(amount),
            )
            return
        if not can_transition(invoice.status, InvoiceStatus.SETTLED):  # pragma: no cover
            alerts.error("invoice %s is %s: cannot settle it", invoice.id, invoice.status)
            return
        # Late: after it expired (or after its expiry without anyone's approval before it).
        invoice.paid_late = invoice.status is InvoiceStatus.EXPIRED or (
            invoice.status is InvoiceStatus.NEW and moment > as_utc(invoice.expires_at)
        )
        if invoice.status is InvoiceStatus.INVALID:
            alerts.error("invoice %s was invalid but is settled on-chain", invoice.id)
        invoice.status = InvoiceStatus.SETTLED
        invoice.payer_address = payer
        invoice.tx_hash = event.transaction_hash
        invoice.block_number = event.block_number
        invoice.settled_at = moment
        invoice.paid_units += amount
        invoice.claim_attempt_id = None
        invoice.claim_expires_at = None
        attempt = self._attempt(session, invoice, payer)
        if attempt is not None and attempt.status is not AttemptStatus.SETTLED:
            attempt.status = AttemptStatus.SETTLED
            attempt.block_number = event.block_number
            attempt.tx_hash = event.transaction_hash
            attempt.settled_at = moment
            attempt.next_attempt_at = None
            attempt.delay_reason = None
        log.info("invoice %s settled in block %d", invoice.id, event.block_number)
        self._emit(session, invoice, "invoice.settled", tx_hash=event.transaction_hash)

    def _unsettle(self, session: Session, event: ChainEvent) -> None:
        invoice = self._invoice(session, event)
        if invoice is None or not _same(invoice.tx_hash, event.transaction_hash):
            if invoice is not None and invoice.status in PAID_STATUSES:
                invoice.paid_units = max(0, invoice.paid_units - int(event.args.get("amount", 0)))
            return
        if invoice.status is not InvoiceStatus.SETTLED:
            alerts.error(
                "invoice %s: its settlement left the chain while %s", invoice.id, invoice.status
            )
        attempt = self._attempt(session, invoice, str(event.args.get("payer", "")))
        back = InvoiceStatus.PROCESSING if attempt is not None else InvoiceStatus.NEW
        if invoice.paid_late:
            back = InvoiceStatus.EXPIRED
        invoice.status = back
        invoice.paid_late = False
        invoice.tx_hash = None
        invoice.block_number = None
        invoice.settled_at = None
        invoice.paid_units = max(0, invoice.paid_units - int(event.args.get("amount", 0)))
        if attempt is not None and attempt.status is AttemptStatus.SETTLED:
            attempt.status = AttemptStatus.SUBMITTED
            attempt.settled_at = None
            attempt.block_number = None
        log.warning(
            "invoice %s: its settlement in block %d left the canonical chain",
            invoice.id,
            event.block_number,
        )
        self._emit(
            session,
            invoice,
            f"invoice.{back}" if back != InvoiceStatus.NEW else "invoice.processing",
        )

    # -- failures --------------------------------------------------------------------------------
    def _failed(self, session: Session, event: ChainEvent) -> None:
        invoice = self._invoice(session, event)
        if invoice is None or invoice.status is not InvoiceStatus.PROCESSING:
            return
        attempt = self._attempt(session, invoice, str(event.args.get("payer", "")))
        if attempt is None or not _sent_in(session, attempt, event):
            # Anyone may call payBatch with a bad authorization naming our invoice and payer.
            log.info("PaymentFailed for %s not from our transaction: ignored", invoice.id)
            return
        reason = failure_reason(event.args.get("reason")) or "the payment was refused"
        error = revert_error(reason)
        if not failure_is_final(error):
            # A paused token, say: the relayer sends the payment again (same reason, same view).
            log.info("payment of %s failed for now (%s): it is sent again", invoice.id, error)
            return
        attempt.status = AttemptStatus.FAILED
        attempt.failure_code = error.code
        attempt.failure_reason = str(error)[:500]
        attempt.next_attempt_at = None
        invoice.status = InvoiceStatus.INVALID
        invoice.failure_code = error.code
        invoice.failure_reason = str(error)[:500]
        self._emit(session, invoice, "invoice.invalid", reason=invoice.failure_reason)

    # -- refunds ---------------------------------------------------------------------------------
    def _refunded(self, session: Session, event: ChainEvent) -> None:
        invoice = self._invoice(session, event)
        if invoice is None or not _same(event.args.get("merchant"), invoice.merchant_address):
            return
        settle_refund(
            session,
            invoice,
            self._refund(session, event),
            amount_units=int(event.args["amount"]),
            event=event,
        )

    def _unrefund(self, session: Session, event: ChainEvent) -> None:
        invoice = self._invoice(session, event)
        if invoice is None or not _same(event.args.get("merchant"), invoice.merchant_address):
            return
        unsettle_refund(
            session, invoice, self._refund(session, event), amount_units=int(event.args["amount"])
        )

    # -- refunds of deposit payments: plain transfers back ----------------------------------------
    def _transferred_back(self, session: Session, event: ChainEvent) -> None:
        found = self._transfer_refund(session, event)
        if found is None:
            return
        invoice, refund = found
        if refund.status is RefundStatus.SETTLED:  # pragma: no cover - the follower applies once
            return
        settle_refund(session, invoice, refund, amount_units=refund.amount_units, event=event)

    @staticmethod
    def _transfer_refund(session: Session, event: ChainEvent) -> tuple[Invoice, Refund] | None:
        """The transfer refund an ``AuthorizationUsed`` used up, with its invoice (both locked,
        the invoice first as everywhere else), if the event is for it: same chain, the
        invoice's token, its nonce, and the payout wallet as authorizer (EIP-3009 nonces are per
        authorizer: anyone may use the same 32 bytes for their own)."""
        if not event.key:
            return None
        loaded, key = _loaded(session), (event.chain_id, event.key.lower())
        if loaded is not None and key in loaded.transfer_refunds:
            pair = loaded.transfer_refunds[key]
        else:
            pair = PaymentEventHandler._query_transfer_refund(session, event.chain_id, key[1])
        if pair is None:
            return None
        invoice, refund = pair
        if not _same(refund.token, event.contract) or not _same(
            event.args.get("authorizer"), invoice.merchant_address
        ):
            return None
        return pair

    @staticmethod
    def _query_transfer_refund(
        session: Session, chain_id: int, nonce: str
    ) -> tuple[Invoice, Refund] | None:
        """The transfer refund of ``nonce`` and its invoice, locked (without a batch)."""
        # One indexed look-up per AuthorizationUsed (the refund id is unique).
        found = session.execute(
            select(Refund.id, Refund.invoice_id).where(
                Refund.refund_id == nonce,
                Refund.method == RefundMethod.TRANSFER,
                Refund.chain_id == chain_id,
            )
        ).first()
        if found is None:
            return None
        invoice = session.scalars(
            select(Invoice).where(Invoice.id == found.invoice_id).with_for_update()
        ).one()
        refund = session.scalars(
            select(Refund).where(Refund.id == found.id).with_for_update()
        ).one()
        return invoice, refund

    @staticmethod
    def _refund(session: Session, event: ChainEvent) -> Refund | None:
        refund_id = str(event.args.get("refundId", "")).lower()
        loaded = _loaded(session)
        if loaded is not None and refund_id in loaded.router_refunds:
            return loaded.router_refunds[refund_id]
        return session.scalars(
            select(Refund)
            .where(Refund.refund_id == refund_id, Refund.method == RefundMethod.ROUTER)
            .with_for_update()
        ).one_or_none()
