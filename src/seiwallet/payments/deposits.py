"""Outside wallets pay an invoice by a plain token transfer to the invoice's deposit address.

The address is the invoice's box at the ``InvoiceDeposits`` contract (``seiwallet.chain.deposits``):
computed from the invoice's router terms before anything is deployed, so any wallet can pay it
and the payment is matched to its invoice without guessing. Three parts:

* :func:`open_deposit` gives an invoice its address (an :class:`InvoiceDeposit` row, in the
  invoice's transaction) and :func:`payment_uri` the EIP-681 link a QR code carries.
* :class:`DepositEventHandler` runs in the follower: a token's ``Transfer(from, to=box, value)``
  becomes one :class:`DepositReceipt` (exactly once per log on the canonical chain) and moves the
  invoice as BTCPay does (:func:`deposit_effect`, the one pure rule; :func:`apply_deposit` writes
  it): less than the amount so far → still waiting, flagged ``paid_partial``; the amount reached
  → ``settled`` (``paid_over`` if beyond it, ``paid_late`` if after expiry); anything after the
  invoice was paid → ``paid_over``, refundable by the merchant. The contract's ``DepositSwept``
  events keep the box's swept and fee totals.
* :class:`DepositSweeper` runs in the worker: it calls ``sweep`` (or ``rescue`` for another
  token) for boxes that hold money, from its own account, recording each transaction before it
  is broadcast (:class:`~seiwallet.chain.sender.TransactionSender`), so a crash resends the same
  bytes and nothing is swept by us twice (a second sweep of an empty box is refused by the
  simulation, and the contract pays only the merchant and the fee collector anyway).

The invoice is settled when the customer's transfer is confirmed, not when we sweep: from that
moment the money can only ever reach the merchant (and the fee), whoever sweeps, so the terminal
turns green one block after the payment, as for a wallet payment.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from eth_account import Account
from eth_account.signers.local import LocalAccount
from eth_utils.address import to_checksum_address
from sqlalchemy import and_, select, update
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from seiwallet.chain.deploy import local_accounts
from seiwallet.chain.deposits import (
    NATIVE_COIN,
    deposit_address,
    encode_rescue,
    encode_sweep,
)
from seiwallet.chain.errors import ChainError, NothingToSweep, RpcError
from seiwallet.chain.follower import batch_cache, chunked, locked_in
from seiwallet.chain.models import ChainEvent, SentTransaction
from seiwallet.chain.router import Payment
from seiwallet.chain.rpc import Call, RpcClient, from_hex
from seiwallet.chain.sender import SentTx, TransactionSender, TxRequest, settle_transactions
from seiwallet.chain.tokens import encode_call
from seiwallet.config import ENV_PREFIX, DepositSettings, Settings
from seiwallet.db import SQLITE_BEGIN, as_utc
from seiwallet.errors import ConfigError
from seiwallet.payments.deposit_models import DepositKind, DepositReceipt, InvoiceDeposit
from seiwallet.payments.events import append_event
from seiwallet.payments.invoices import invoice_json
from seiwallet.payments.models import PAID_STATUSES, Invoice, InvoiceStatus

log = logging.getLogger(__name__)
alerts = logging.getLogger("seiwallet.alerts")

_WRITE = {SQLITE_BEGIN: "IMMEDIATE"}

#: ``chain_transactions.purpose`` of the sweeper's transactions: ``deposit.<action>:<invoice>``.
PURPOSE_PREFIX = "deposit."
#: Boxes looked at per round.
BATCH = 200

TRANSFER = "Transfer"
SWEPT = "DepositSwept"
SETTLED = "DepositSettled"
RESCUED = "DepositRescued"


def _same(a: object, b: object) -> bool:
    return str(a).lower() == str(b).lower()


def _utcnow() -> datetime:
    return datetime.now(UTC)


# -- addresses ----------------------------------------------------------------------------------


def invoice_payment(invoice: Invoice) -> Payment:
    """The router terms of an invoice (what its payment id and its deposit address hash)."""
    return Payment(
        invoice_id=bytes.fromhex(invoice.id.removeprefix("0x")),
        merchant=invoice.merchant_address,
        token=invoice.token,
        amount_units=invoice.amount_units,
        fee_units=invoice.fee_units,
    )


def open_deposit(session: Session, invoice: Invoice, *, contract: str) -> InvoiceDeposit:
    """The invoice's deposit box row, created if it has none (call it in the invoice's
    transaction, before the address is shown to anyone: a transfer to an address we do not
    know yet is not matched)."""
    found = session.get(InvoiceDeposit, invoice.id)
    if found is not None:
        return found
    payment = invoice_payment(invoice)
    address = deposit_address(
        payment, router=invoice.router, deposits=contract, chain_id=invoice.chain_id
    )
    row = InvoiceDeposit(
        invoice_id=invoice.id,
        merchant_id=invoice.merchant_id,
        chain_id=invoice.chain_id,
        contract=contract,
        router=invoice.router,
        address=address,
        token=invoice.token,
        payment_id=invoice.payment_id.lower(),
        received_units=0,
        swept_units=0,
        fee_taken_units=0,
        sweep_attempts=0,
    )
    session.add(row)
    return row


def payment_uri(*, token: str, chain_id: int, address: str, amount_units: int) -> str:
    """The EIP-681 link an outside wallet opens to pay: ``transfer(address, amount)`` on the
    token. Wallets show it as "send <amount> <token> to <address>"."""
    return f"ethereum:{token}@{chain_id}/transfer?address={address}&uint256={amount_units}"


@dataclass(frozen=True)
class DepositPayer:
    """An address the chain showed paying an invoice's deposit address, and how much in all."""

    #: The ``from`` of its Transfer event(s), checksummed.
    address: str
    paid_units: int


def deposit_payers(session: Session, invoice: Invoice) -> list[DepositPayer]:
    """Who paid the invoice's deposit address in the invoice's token (confirmed receipts on the
    canonical chain), each with their total, in the order they first paid. Another token sent to
    the box is not the invoice's payment (it is rescued to the merchant), so it is not here."""
    rows = session.execute(
        select(DepositReceipt.payer, DepositReceipt.value_units, DepositReceipt.token)
        .where(
            DepositReceipt.invoice_id == invoice.id,
            DepositReceipt.kind != DepositKind.OTHER_TOKEN,
        )
        .order_by(DepositReceipt.id)
    ).all()
    totals: dict[str, int] = {}
    for payer, value, token in rows:
        if not _same(token, invoice.token):
            continue
        address = str(to_checksum_address(payer))
        totals[address] = totals.get(address, 0) + int(value)
    return [DepositPayer(address, units) for address, units in totals.items()]


# -- the invoice's state: one pure rule ---------------------------------------------------------


@dataclass(frozen=True)
class DepositEffect:
    """What one confirmed transfer into an invoice's box does to the invoice.

    Flags are *set* when true (anomalies are kept, as BTCPay keeps them); ``paid_partial`` is
    cleared when the amount is reached (``clears_partial``).
    """

    kind: DepositKind
    #: The invoice's status afterwards.
    status: InvoiceStatus
    #: This transfer settles the invoice (its first settlement).
    settles: bool
    paid_partial: bool
    paid_over: bool
    paid_late: bool
    clears_partial: bool
    #: What the box received in the invoice's token, this transfer included.
    received_units: int
    #: Still to pay (zero once the amount is reached).
    outstanding_units: int
    #: The part of this transfer beyond what the invoice asked, which the merchant may refund
    #: (all of it once the invoice was paid, through this box or the router).
    excess_units: int
    #: Sweep it now; otherwise at the invoice's expiry plus the configured delay (a partial
    #: payment: the rest may come, and the fee is taken by the sweep that completes the amount).
    sweep_now: bool


def deposit_effect(
    *,
    status: InvoiceStatus,
    amount_units: int,
    received_before_units: int,
    value_units: int,
    expires_at: datetime,
    paid_at: datetime,
) -> DepositEffect:
    """The one rule for deposits (BTCPay's model): partial → still waiting; the amount reached →
    settled; after the invoice was paid → an over-payment (late if after its expiry)."""
    received = received_before_units + value_units
    late = as_utc(paid_at) > as_utc(expires_at)
    if status in PAID_STATUSES:
        # Paid already (through this box or the router): all of it is over-payment.
        return DepositEffect(
            kind=DepositKind.OVER,
            status=status,
            settles=False,
            paid_partial=False,
            paid_over=True,
            paid_late=late,
            clears_partial=False,
            received_units=received,
            outstanding_units=0,
            excess_units=value_units,
            sweep_now=True,
        )
    if received >= amount_units:
        return DepositEffect(
            kind=DepositKind.SETTLING,
            status=InvoiceStatus.SETTLED,
            settles=True,
            paid_partial=False,
            paid_over=received > amount_units,
            paid_late=late or status is InvoiceStatus.EXPIRED,
            clears_partial=True,
            received_units=received,
            outstanding_units=0,
            excess_units=received - amount_units,
            sweep_now=True,
        )
    return DepositEffect(
        kind=DepositKind.PARTIAL,
        status=status,
        settles=False,
        paid_partial=True,
        paid_over=False,
        paid_late=late,
        clears_partial=False,
        received_units=received,
        outstanding_units=amount_units - received,
        excess_units=0,
        sweep_now=False,
    )


def apply_deposit(
    session: Session,
    invoice: Invoice,
    receipt: DepositReceipt,
    effect: DepositEffect,
) -> None:
    """Write ``effect`` to the invoice (status, flags, paid units, the settling transaction) and
    append its payment event, in ``session``'s transaction (the follower's)."""
    invoice.paid_units += receipt.value_units
    if effect.paid_partial:
        invoice.paid_partial = True
    if effect.clears_partial:
        invoice.paid_partial = False
    if effect.paid_over:
        invoice.paid_over = True
    if effect.paid_late:
        invoice.paid_late = True
    data: dict[str, Any] = {
        "via": "deposit_address",
        "tx_hash": receipt.tx_hash,
        "payer": receipt.payer,
        "amount_units": str(receipt.value_units),
        "received_units": str(effect.received_units),
        "outstanding_units": str(effect.outstanding_units),
        "excess_units": str(effect.excess_units),
    }
    if effect.settles:
        invoice.status = InvoiceStatus.SETTLED
        invoice.payer_address = receipt.payer
        invoice.tx_hash = receipt.tx_hash
        invoice.block_number = receipt.block_number
        invoice.settled_at = receipt.paid_at
        invoice.claim_attempt_id = None
        invoice.claim_expires_at = None
        log.info("invoice %s settled by a deposit in block %d", invoice.id, receipt.block_number)
        _emit(session, invoice, "invoice.settled", **data)
        return
    anomaly = "paid_over" if effect.kind is DepositKind.OVER else "paid_partial"
    if effect.kind is DepositKind.OVER:
        alerts.warning(
            "invoice %s paid again through its deposit address by %s in %s (%d units): "
            "refundable over-payment",
            invoice.id,
            receipt.payer,
            receipt.tx_hash,
            receipt.value_units,
        )
    _emit(session, invoice, "invoice.anomaly", anomaly=anomaly, late=effect.paid_late, **data)


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


# -- the follower's handler ---------------------------------------------------------------------

#: (chain, block hash, log index): a log, as ``deposit_receipts`` is unique on it.
_LogKey = tuple[int, str, int]


@dataclass
class _Boxes:
    """What :meth:`DepositEventHandler.prepare` (or ``prepare_revert``) loaded for a range."""

    #: (chain, address) of a ``Transfer``'s recipient → its box (locked), ``None`` if no box.
    by_address: dict[tuple[int, str], InvoiceDeposit | None] = field(default_factory=dict)
    #: (chain, payment id) of a ``DepositSwept`` → its box (locked), ``None`` if no box.
    by_payment: dict[tuple[int, str], InvoiceDeposit | None] = field(default_factory=dict)
    #: Logs asked about → their receipt (``None``: none yet).
    receipts: dict[_LogKey, DepositReceipt | None] = field(default_factory=dict)
    #: Invoice ids → the box and the invoice, both locked for the range.
    boxes: dict[str, InvoiceDeposit] = field(default_factory=dict)
    invoices: dict[str, Invoice] = field(default_factory=dict)


_BOXES = "payments.deposits"


def _log_key(event: ChainEvent) -> _LogKey:
    return (event.chain_id, event.block_hash, event.log_index)


class DepositEventHandler:
    """Applies transfers into deposit boxes and the deposits contract's events (follower
    ``BatchEventHandler``); every effect commits with the follower's checkpoint.

    Nearly every token ``Transfer`` of a range goes to someone else than a box: the batch hook
    finds the range's boxes in one ``IN`` query on (chain, address) and loads the receipts and
    invoices only for the few transfers that reached one."""

    def __init__(self, *, partial_sweep_delay: timedelta = timedelta(minutes=10)) -> None:
        self._partial_delay = partial_sweep_delay

    # -- batches -------------------------------------------------------------------------------
    def prepare(self, session: Session, events: Sequence[ChainEvent]) -> None:
        """Lock the boxes the range's transfers reach, read whether those logs have receipts,
        and lock the invoices they will move (the order :meth:`_received` takes them in); lock
        the boxes of the range's ``DepositSwept``."""
        loaded = _Boxes()
        received: list[tuple[ChainEvent, InvoiceDeposit]] = []
        for chain_id in dict.fromkeys(e.chain_id for e in events):
            transfers = [
                (e, to)
                for e in events
                if e.chain_id == chain_id
                and e.name == TRANSFER
                and isinstance(to := e.args.get("to"), str)
            ]
            loaded.by_address.update(((chain_id, to), None) for _, to in transfers)
            for chunk in chunked(to for _, to in transfers):
                for box in session.scalars(
                    select(InvoiceDeposit)
                    .where(InvoiceDeposit.chain_id == chain_id, InvoiceDeposit.address.in_(chunk))
                    .order_by(InvoiceDeposit.invoice_id)
                    .with_for_update()
                ):
                    loaded.by_address[(chain_id, box.address)] = box
            for event, to in transfers:
                if (reached := loaded.by_address[(chain_id, to)]) is not None:
                    received.append((event, reached))
        self._load_receipts(session, [event for event, _ in received], loaded)
        fresh = {
            box.invoice_id: box
            for event, box in received
            if loaded.receipts.get(_log_key(event)) is None
        }
        self._lock_invoices(session, fresh, loaded)
        self._load_swept(session, events, loaded)
        batch_cache(session)[_BOXES] = loaded

    def prepare_revert(self, session: Session, events: Sequence[ChainEvent]) -> None:
        """Read the receipts of the range's transfers, then lock their boxes and invoices (the
        order :meth:`_unreceive` takes them in); lock the boxes of its ``DepositSwept``."""
        loaded = _Boxes()
        self._load_receipts(session, [e for e in events if e.name == TRANSFER], loaded)
        owners = [r.invoice_id for r in loaded.receipts.values() if r is not None]
        loaded.boxes.update(
            (box.invoice_id, box)
            for box in locked_in(
                session,
                InvoiceDeposit,
                InvoiceDeposit.invoice_id,
                owners,
                order_by=InvoiceDeposit.invoice_id,
            )
        )
        self._lock_invoices(session, dict.fromkeys(owners), loaded)
        self._load_swept(session, events, loaded)
        batch_cache(session)[_BOXES] = loaded

    @staticmethod
    def _load_receipts(session: Session, events: Sequence[ChainEvent], loaded: _Boxes) -> None:
        """The receipts of ``events``' logs (``None`` for a log without one), by block hash."""
        loaded.receipts.update((_log_key(e), None) for e in events)
        for chain_id in dict.fromkeys(e.chain_id for e in events):
            hashes = [e.block_hash for e in events if e.chain_id == chain_id]
            for chunk in chunked(hashes):
                for receipt in session.scalars(
                    select(DepositReceipt).where(
                        DepositReceipt.chain_id == chain_id, DepositReceipt.block_hash.in_(chunk)
                    )
                ):
                    key = (chain_id, receipt.block_hash, receipt.log_index)
                    if key in loaded.receipts:
                        loaded.receipts[key] = receipt

    @staticmethod
    def _lock_invoices(
        session: Session, boxes: Mapping[str, InvoiceDeposit | None], loaded: _Boxes
    ) -> None:
        loaded.boxes.update((i, box) for i, box in boxes.items() if box is not None)
        loaded.invoices.update(
            (invoice.id, invoice)
            for invoice in locked_in(session, Invoice, Invoice.id, boxes, order_by=Invoice.id)
        )

    @staticmethod
    def _load_swept(session: Session, events: Sequence[ChainEvent], loaded: _Boxes) -> None:
        for chain_id in dict.fromkeys(e.chain_id for e in events):
            ids = [
                str(e.args.get("paymentId", "")).lower()
                for e in events
                if e.chain_id == chain_id and e.name == SWEPT
            ]
            loaded.by_payment.update(((chain_id, i), None) for i in ids)
            for box in locked_in(
                session,
                InvoiceDeposit,
                InvoiceDeposit.payment_id,
                ids,
                where=[InvoiceDeposit.chain_id == chain_id],
                order_by=InvoiceDeposit.invoice_id,
            ):
                loaded.by_payment[(chain_id, box.payment_id)] = box

    def apply(self, session: Session, event: ChainEvent) -> None:
        if event.name == TRANSFER:
            self._received(session, event)
        elif event.name == SWEPT:
            self._swept(session, event, sign=1)
        elif event.name == SETTLED:
            log.info("deposit box of invoice %s swept to its amount", event.key)
        elif event.name == RESCUED:
            log.info(
                "deposit box of invoice %s: %s units of %s rescued to the merchant",
                event.key,
                event.args.get("value"),
                event.args.get("token"),
            )

    def revert(self, session: Session, event: ChainEvent) -> None:
        if event.name == TRANSFER:
            self._unreceive(session, event)
        elif event.name == SWEPT:
            self._swept(session, event, sign=-1)

    # -- transfers into a box ------------------------------------------------------------------
    @staticmethod
    def _box(session: Session, chain_id: int, address: object) -> InvoiceDeposit | None:
        if not isinstance(address, str):
            return None
        loaded = _loaded_boxes(session)
        if loaded is not None and (chain_id, address) in loaded.by_address:
            return loaded.by_address[(chain_id, address)]
        return session.scalars(
            select(InvoiceDeposit)
            .where(InvoiceDeposit.chain_id == chain_id, InvoiceDeposit.address == address)
            .with_for_update()
        ).one_or_none()

    @staticmethod
    def _receipt(session: Session, event: ChainEvent) -> DepositReceipt | None:
        """The receipt of the event's log, if it has one."""
        loaded = _loaded_boxes(session)
        if loaded is not None and _log_key(event) in loaded.receipts:
            return loaded.receipts[_log_key(event)]
        return session.scalars(
            select(DepositReceipt).where(
                DepositReceipt.chain_id == event.chain_id,
                DepositReceipt.block_hash == event.block_hash,
                DepositReceipt.log_index == event.log_index,
            )
        ).one_or_none()

    def _received(self, session: Session, event: ChainEvent) -> None:
        box = self._box(session, event.chain_id, event.args.get("to"))
        if box is None:
            return  # the overwhelming case: a transfer to anyone else
        if self._receipt(session, event) is not None:
            return  # the follower applies a log once; this keeps it so regardless
        loaded = _loaded_boxes(session)
        invoice = loaded.invoices.get(box.invoice_id) if loaded is not None else None
        if invoice is None:
            invoice = session.scalars(
                select(Invoice).where(Invoice.id == box.invoice_id).with_for_update()
            ).one()
        value = int(event.args["value"])
        paid_at = datetime.fromtimestamp(event.block_timestamp, UTC)
        receipt = DepositReceipt(
            invoice_id=box.invoice_id,
            merchant_id=box.merchant_id,
            chain_id=event.chain_id,
            token=event.contract,
            payer=str(event.args.get("from", "")),
            value_units=value,
            kind=DepositKind.OTHER_TOKEN,
            tx_hash=event.transaction_hash,
            block_number=event.block_number,
            block_hash=event.block_hash,
            log_index=event.log_index,
            paid_at=paid_at,
        )
        if not _same(event.contract, box.token):
            # Another token: it is not the invoice's payment; the sweeper rescues it to the
            # merchant (the terms name no one else), who may refund it.
            alerts.warning(
                "invoice %s: %d units of another token (%s) reached its deposit address in %s",
                box.invoice_id,
                value,
                event.contract,
                event.transaction_hash,
            )
            session.add(receipt)
            box.sweep_due_at = paid_at
            return
        effect = deposit_effect(
            status=invoice.status,
            amount_units=invoice.amount_units,
            received_before_units=box.received_units,
            value_units=value,
            expires_at=invoice.expires_at,
            paid_at=paid_at,
        )
        receipt.kind = effect.kind
        session.add(receipt)
        box.received_units = effect.received_units
        due = paid_at if effect.sweep_now else as_utc(invoice.expires_at) + self._partial_delay
        current = as_utc(box.sweep_due_at) if box.sweep_due_at is not None else None
        box.sweep_due_at = min(due, current) if current is not None else due
        apply_deposit(session, invoice, receipt, effect)

    def _unreceive(self, session: Session, event: ChainEvent) -> None:
        receipt = self._receipt(session, event)
        if receipt is None:
            return
        loaded = _loaded_boxes(session)
        if loaded is not None and receipt.invoice_id in loaded.invoices:
            box = loaded.boxes.get(receipt.invoice_id)
            invoice: Invoice | None = loaded.invoices[receipt.invoice_id]
        else:
            box = session.get(InvoiceDeposit, receipt.invoice_id, with_for_update=True)
            invoice = session.get(Invoice, receipt.invoice_id, with_for_update=True)
        session.delete(receipt)
        if box is None or invoice is None or receipt.kind is DepositKind.OTHER_TOKEN:
            return
        box.received_units = max(0, box.received_units - receipt.value_units)
        invoice.paid_units = max(0, invoice.paid_units - receipt.value_units)
        log.warning(
            "invoice %s: a deposit in block %d left the canonical chain",
            invoice.id,
            receipt.block_number,
        )
        if receipt.kind is DepositKind.SETTLING and _same(invoice.tx_hash, receipt.tx_hash):
            # Waiting again, or expired if its time is up (as the expiry task would have it).
            expired = as_utc(invoice.expires_at) <= datetime.now(UTC)
            back = InvoiceStatus.EXPIRED if expired else InvoiceStatus.NEW
            invoice.status = back
            invoice.paid_late = False
            invoice.paid_over = False
            invoice.paid_partial = box.received_units > 0
            invoice.tx_hash = None
            invoice.block_number = None
            invoice.settled_at = None
            invoice.payer_address = None
            _emit(
                session,
                invoice,
                "invoice.anomaly",
                anomaly="deposit_reverted",
                tx_hash=receipt.tx_hash,
                received_units=str(box.received_units),
            )
        elif receipt.kind is DepositKind.PARTIAL:
            invoice.paid_partial = box.received_units > 0 and invoice.status not in PAID_STATUSES

    # -- the contract's own accounting -----------------------------------------------------------
    @staticmethod
    def _swept(session: Session, event: ChainEvent, *, sign: int) -> None:
        payment_id = str(event.args.get("paymentId", "")).lower()
        loaded = _loaded_boxes(session)
        if loaded is not None and (event.chain_id, payment_id) in loaded.by_payment:
            box = loaded.by_payment[(event.chain_id, payment_id)]
        else:
            box = session.scalars(
                select(InvoiceDeposit)
                .where(
                    InvoiceDeposit.chain_id == event.chain_id,
                    InvoiceDeposit.payment_id == payment_id,
                )
                .with_for_update()
            ).one_or_none()
        if box is None or not _same(box.contract, event.contract):
            return
        value, fee = int(event.args["value"]), int(event.args["feeTaken"])
        box.swept_units = max(0, box.swept_units + sign * value)
        box.fee_taken_units = max(0, box.fee_taken_units + sign * fee)


def _loaded_boxes(session: Session) -> _Boxes | None:
    loaded = batch_cache(session).get(_BOXES)
    return loaded if isinstance(loaded, _Boxes) else None


# -- the sweeper ----------------------------------------------------------------------------------


def sweeper_account(settings: Settings) -> LocalAccount:
    """The sweeper's key: configured (or in a 0600 file), else anvil's account #11 locally.

    The key is never echoed, even in an error.
    """
    deposits = settings.deposits
    setting = f"{ENV_PREFIX}DEPOSITS__SWEEPER_KEY"
    key: str | None = None
    if deposits.sweeper_key is not None:
        key = deposits.sweeper_key.get_secret_value()
    elif deposits.sweeper_key_file is not None:
        path = deposits.sweeper_key_file
        setting = f"{ENV_PREFIX}DEPOSITS__SWEEPER_KEY_FILE"
        try:
            if path.stat().st_mode & 0o077:
                raise ConfigError(setting, f"{path} must be readable by its owner only (chmod 600)")
            key = path.read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise ConfigError(setting, f"cannot read {path}: {exc.strerror}") from None
    if key is not None:
        try:
            account: LocalAccount = Account.from_key(key)
        except (ValueError, TypeError):
            raise ConfigError(setting, "not a 32-byte hex private key") from None
        return account
    if settings.network.is_local:
        return local_accounts().sweeper
    raise ConfigError(setting, f"profile {settings.profile!r} needs the deposit sweeper's key")


@dataclass(frozen=True)
class _Due:
    """A box due for a look, with its invoice's terms."""

    box: InvoiceDeposit
    payment: Payment


class _Stale(Exception):
    """A box changed between reading and recording (another sweeper took it)."""


@dataclass(frozen=True)
class SweepReport:
    """What one :meth:`DepositSweeper.run_once` did."""

    settled: int
    sent: int
    emptied: int


class DepositSweeper:
    """Sweeps deposit boxes holding money, from its own account; crash-safe and idempotent.

    ``tokens`` are the other tokens to look for in a box (the configured stablecoins): any of
    them found there is rescued to the merchant, as is the native coin.
    """

    def __init__(
        self,
        rpc: RpcClient,
        sessions: sessionmaker[Session],
        sender: TransactionSender,
        *,
        chain_id: int,
        contract: str,
        tokens: Sequence[str] = (),
        settings: DepositSettings | None = None,
        clock: Callable[[], datetime] = _utcnow,
    ) -> None:
        self._rpc = rpc
        self._sessions = sessions
        self._sender = sender
        self.chain_id = chain_id
        self.contract = contract
        self._tokens = tuple(dict.fromkeys(tokens))
        self.settings = settings or DepositSettings()
        self._now = clock

    @property
    def sweeper(self) -> str:
        return self._sender.sponsor

    async def run(self, stop: asyncio.Event) -> None:
        """Recover, then run rounds every ``poll_seconds`` until ``stop`` is set."""
        failures = 0
        while not stop.is_set():
            try:
                await self.recover()
                break
            except ChainError as exc:
                failures += 1
                if failures == 1:
                    log.warning("deposits: the network is not answering (%s); waiting", exc)
                await _sleep_unless(stop, min(30.0, 0.5 * 2 ** min(failures, 6)))
        while not stop.is_set():
            try:
                await self.run_once()
            except SQLAlchemyError:
                log.exception("deposits: database error; retrying")
            except ChainError as exc:
                log.warning("deposits: %s; retrying", exc)
            await _sleep_unless(stop, self.settings.poll_seconds)

    async def recover(self) -> None:
        """After a start: resend or settle what a crash left recorded (the next round frees the
        boxes from the settled rows)."""
        report = await self._sender.recover()
        if report.rebroadcast or report.mined or report.failed or report.dropped:
            log.info("deposits: sweeper recovered: %s", report)

    async def run_once(self) -> SweepReport:
        settled = await self._track()
        sent, emptied = await self._sweep()
        return SweepReport(settled=settled, sent=sent, emptied=emptied)

    # -- tracking ------------------------------------------------------------------------------
    async def _track(self) -> int:
        """Settle the sweeps in flight from their receipts; free their boxes."""
        with self._sessions() as session:
            rows = session.execute(
                select(InvoiceDeposit.invoice_id, InvoiceDeposit.sweep_tx_hash, SentTransaction)
                .join(
                    SentTransaction,
                    and_(
                        SentTransaction.chain_id == InvoiceDeposit.chain_id,
                        SentTransaction.tx_hash == InvoiceDeposit.sweep_tx_hash,
                    ),
                    isouter=True,
                )
                .where(
                    InvoiceDeposit.chain_id == self.chain_id,
                    InvoiceDeposit.sweep_tx_hash.is_not(None),
                )
                .limit(BATCH)
            ).all()
        if not rows:
            return 0
        followed = await self._sender.follow(rows)
        changes, freed = followed.changes, followed.done
        if not changes and not freed:
            return 0
        now = self._now()
        retry_at = now + timedelta(seconds=self.settings.retry_seconds)
        with self._sessions.begin() as session:
            session.connection(execution_options=_WRITE)
            settle_transactions(session, chain_id=self.chain_id, changes=changes)
            for invoice_id, (tx_hash, error) in sorted(freed.items()):
                # Look once more after a success: a transfer may have arrived meanwhile (its own
                # due time, set by the follower while this sweep was in flight, is kept too).
                values: dict[str, Any] = {"sweep_tx_hash": None, "sweep_due_at": now}
                if error is not None:
                    values.update(sweep_due_at=retry_at, last_error=error[:300])
                    log.warning("deposit box of invoice %s: %s", invoice_id, error)
                session.execute(
                    update(InvoiceDeposit)
                    .where(
                        InvoiceDeposit.invoice_id == invoice_id,
                        InvoiceDeposit.sweep_tx_hash == (tx_hash or None),
                    )
                    .values(**values)
                    .execution_options(synchronize_session=False)
                )
        return len(changes)

    # -- sweeping ------------------------------------------------------------------------------
    def _due(self) -> list[_Due]:
        now = self._now()
        with self._sessions() as session:
            rows = session.execute(
                select(InvoiceDeposit, Invoice)
                .join(Invoice, Invoice.id == InvoiceDeposit.invoice_id)
                .where(
                    InvoiceDeposit.chain_id == self.chain_id,
                    InvoiceDeposit.contract == self.contract,
                    InvoiceDeposit.sweep_tx_hash.is_(None),
                    InvoiceDeposit.sweep_due_at <= now,
                )
                .order_by(InvoiceDeposit.sweep_due_at)
                .limit(BATCH)
            ).all()
            return [_Due(box, invoice_payment(invoice)) for box, invoice in rows]

    async def _balances(self, due: Sequence[_Due]) -> list[dict[str, int] | None]:
        """Each box's balance of its token, the other tokens and the native coin (one batch)."""
        calls: list[Call] = []
        shape: list[list[str]] = []
        for item in due:
            tokens = [item.payment.token] + [
                t for t in self._tokens if not _same(t, item.payment.token)
            ]
            for token in tokens:
                data = encode_call("balanceOf(address)", ["address"], [item.box.address])
                calls.append(Call("eth_call", [{"to": token, "data": data}, "latest"]))
            calls.append(Call("eth_getBalance", [item.box.address, "latest"]))
            shape.append([*tokens, NATIVE_COIN])
        answers = await self._rpc.batch(calls)
        out: list[dict[str, int] | None] = []
        position = 0
        for tokens in shape:
            chunk = answers[position : position + len(tokens)]
            position += len(tokens)
            held: dict[str, int] = {}
            for token, answer in zip(tokens, chunk, strict=True):
                if isinstance(answer, RpcError) or not isinstance(answer, str):
                    break
                held[token] = from_hex(answer) if answer != "0x" else 0
            out.append(held if len(held) == len(tokens) else None)
        return out

    async def _sweep(self) -> tuple[int, int]:
        """Send a sweep (or a rescue) for each due box holding money; clear empty ones."""
        due = self._due()
        if not due:
            return 0, 0
        balances = await self._balances(due)
        requests: list[tuple[_Due, TxRequest]] = []
        empty: list[_Due] = []
        for item, held in zip(due, balances, strict=True):
            if held is None:
                continue  # not readable now: next round
            request = self._request(item, held)
            if request is None:
                empty.append(item)
            else:
                requests.append((item, request))
        if empty:
            self._clear(empty)
        return await self._send(requests), len(empty)

    def _request(self, item: _Due, held: Mapping[str, int]) -> TxRequest | None:
        """Sweep the invoice's token first; then another token or the native coin, one a round."""
        token = item.payment.token
        if held.get(token, 0) > 0:
            data = encode_sweep(item.payment)
            action = "sweep"
        else:
            other = next((t for t, units in held.items() if units > 0 and t != token), None)
            if other is None:
                return None
            data = encode_rescue(item.payment, other)
            action = "rescue"
        return TxRequest(
            to=self.contract,
            data="0x" + data.hex(),
            gas=self.settings.gas_limit,
            purpose=f"{PURPOSE_PREFIX}{action}:{item.box.invoice_id}",
        )

    async def _send(self, requests: Sequence[tuple[_Due, TxRequest]]) -> int:
        """Simulate, record (with the boxes' ``sweep_tx_hash``) and broadcast."""
        if not requests:
            return 0
        recorded: set[str] = set()

        def record(session: Session, sent: Sequence[SentTx]) -> None:
            for tx in sent:
                invoice_id = tx.request.purpose.split(":", 1)[1]
                result = session.execute(
                    update(InvoiceDeposit)
                    .where(
                        InvoiceDeposit.invoice_id == invoice_id,
                        InvoiceDeposit.sweep_tx_hash.is_(None),
                    )
                    .values(
                        sweep_tx_hash=tx.tx_hash,
                        sweep_due_at=None,
                        sweep_attempts=InvoiceDeposit.sweep_attempts + 1,
                        last_error=None,
                    )
                    .execution_options(synchronize_session=False)
                )
                if int(getattr(result, "rowcount", 0)) != 1:
                    raise _Stale(invoice_id)
                recorded.add(invoice_id)

        try:
            results = await self._sender.send_batch(
                [request for _, request in requests], record=record
            )
        except _Stale as stale:
            log.info("deposits: box of %s changed meanwhile; its turn comes next round", stale)
            return 0
        sent = 0
        emptied: list[_Due] = []
        refused: list[tuple[str, str]] = []
        for (item, request), result in zip(requests, results, strict=True):
            invoice_id = item.box.invoice_id
            if isinstance(result, SentTx):
                sent += 1
                log.info("deposit box of invoice %s: %s sent", invoice_id, request.purpose)
            elif invoice_id not in recorded:
                if isinstance(result, NothingToSweep):
                    emptied.append(item)  # swept by someone else meanwhile
                else:
                    refused.append((invoice_id, f"{result.code}: {result}"))
        if emptied:
            self._clear(emptied)
        if refused:
            retry_at = self._now() + timedelta(seconds=self.settings.retry_seconds)
            with self._sessions.begin() as session:
                for invoice_id, reason in refused:
                    log.warning("deposit box of invoice %s: not swept: %s", invoice_id, reason)
                    session.execute(
                        update(InvoiceDeposit)
                        .where(
                            InvoiceDeposit.invoice_id == invoice_id,
                            InvoiceDeposit.sweep_tx_hash.is_(None),
                        )
                        .values(sweep_due_at=retry_at, last_error=reason[:300])
                        .execution_options(synchronize_session=False)
                    )
        return sent

    def _clear(self, items: Sequence[_Due]) -> None:
        """Nothing left in these boxes: nothing to do until the follower sees a transfer.

        Only if the due time is still the one read: a transfer the follower recorded since then
        set a new one, which stays.
        """
        with self._sessions.begin() as session:
            for item in items:
                session.execute(
                    update(InvoiceDeposit)
                    .where(
                        InvoiceDeposit.invoice_id == item.box.invoice_id,
                        InvoiceDeposit.sweep_tx_hash.is_(None),
                        InvoiceDeposit.sweep_due_at == item.box.sweep_due_at,
                    )
                    .values(sweep_due_at=None)
                    .execution_options(synchronize_session=False)
                )


async def _sleep_unless(stop: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), timeout=seconds)
