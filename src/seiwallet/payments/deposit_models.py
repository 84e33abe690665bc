"""Tables of invoice deposit addresses: one box per invoice, and every transfer into one.

An invoice that outside wallets may pay has an :class:`InvoiceDeposit`: the CREATE2 address of
its ``DepositBox`` at the ``InvoiceDeposits`` contract (``seiwallet.chain.deposits``), unique per
chain, which the follower's handler looks transfers up by. Each token ``Transfer`` into a box is
one :class:`DepositReceipt`, unique on the log that carried it (chain, block hash, log index), so
it is recorded exactly once on the canonical chain. The box row is also the sweeper's outbox:
``sweep_due_at`` says when it should be swept, ``sweep_tx_hash`` which sweep is in flight.

Rows carry the invoice's ``merchant_id`` (the payments domain's shard key).
"""

from __future__ import annotations

import enum
from datetime import UTC, datetime
from typing import Final

from sqlalchemy import (
    BigInteger,
    DateTime,
    Enum,
    ForeignKey,
    Index,
    Integer,
    String,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from seiwallet.db.base import Base, Uint256

_BIGINT_ID: Final = BigInteger().with_variant(Integer, "sqlite")


def utcnow() -> datetime:
    return datetime.now(UTC)


class DepositKind(enum.StrEnum):
    """What one transfer into a box meant for its invoice (see ``payments.deposits``)."""

    #: Less than the amount so far: the invoice still waits (``paid_partial``).
    PARTIAL = "partial"
    #: It brought the total to the amount (or beyond: ``paid_over``): the invoice is settled.
    SETTLING = "settling"
    #: It came after the invoice was paid: an over-payment the merchant may refund.
    OVER = "over"
    #: Another token than the invoice's: no effect on the invoice; rescued to the merchant.
    OTHER_TOKEN = "other_token"  # noqa: S105 - a kind of deposit, not a secret


class InvoiceDeposit(Base):
    """An invoice's deposit address (its box), what reached it, and the sweeper's state."""

    __tablename__ = "invoice_deposits"
    __table_args__ = (
        # The follower's look-up of a transfer's recipient.
        UniqueConstraint("chain_id", "address"),
        # The sweeper's work: boxes of a chain due for a sweep, soonest first.
        Index("ix_invoice_deposits_due", "chain_id", "sweep_due_at"),
        Index("ix_invoice_deposits_in_flight", "chain_id", "sweep_tx_hash"),
    )

    invoice_id: Mapped[str] = mapped_column(ForeignKey("invoices.id"), primary_key=True)
    merchant_id: Mapped[str] = mapped_column(String(32))
    chain_id: Mapped[int] = mapped_column(BigInteger)
    #: The ``InvoiceDeposits`` contract and the router it is bound to (both in the address).
    contract: Mapped[str] = mapped_column(String(42))
    router: Mapped[str] = mapped_column(String(42))
    #: The deposit address (checksummed), as shown to payers.
    address: Mapped[str] = mapped_column(String(42))
    token: Mapped[str] = mapped_column(String(42))
    payment_id: Mapped[str] = mapped_column(String(66))
    #: Everything of the invoice's token that reached the box (confirmed transfers).
    received_units: Mapped[int] = mapped_column(Uint256, default=0)
    #: What the contract reports it swept out of the box, and the fee part (its events).
    swept_units: Mapped[int] = mapped_column(Uint256, default=0)
    fee_taken_units: Mapped[int] = mapped_column(Uint256, default=0)
    #: When the sweeper should next look at the box (``None``: nothing to do).
    sweep_due_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    #: The sweep (or rescue) transaction in flight, recorded before it was broadcast.
    sweep_tx_hash: Mapped[str | None] = mapped_column(String(66), nullable=True)
    sweep_attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str | None] = mapped_column(String(300), nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), default=utcnow, onupdate=utcnow
    )


class DepositReceipt(Base):
    """One confirmed token transfer into a deposit box: who paid what, where, in which log."""

    __tablename__ = "deposit_receipts"
    __table_args__ = (
        # Exactly once per log on the canonical chain (as ``chain_events``).
        UniqueConstraint("chain_id", "block_hash", "log_index"),
        Index("ix_deposit_receipts_invoice", "invoice_id", "id"),
    )

    id: Mapped[int] = mapped_column(_BIGINT_ID, primary_key=True, autoincrement=True)
    invoice_id: Mapped[str] = mapped_column(ForeignKey("invoice_deposits.invoice_id"))
    merchant_id: Mapped[str] = mapped_column(String(32))
    chain_id: Mapped[int] = mapped_column(BigInteger)
    token: Mapped[str] = mapped_column(String(42))
    #: The transfer's sender: the payer's wallet (or an exchange's hot wallet: ask before
    #: refunding to it).
    payer: Mapped[str] = mapped_column(String(42))
    value_units: Mapped[int] = mapped_column(Uint256)
    kind: Mapped[DepositKind] = mapped_column(
        Enum(
            DepositKind,
            native_enum=False,
            length=16,
            values_callable=lambda e: [m.value for m in e],
        )
    )
    tx_hash: Mapped[str] = mapped_column(String(66))
    block_number: Mapped[int] = mapped_column(BigInteger)
    block_hash: Mapped[str] = mapped_column(String(66))
    log_index: Mapped[int] = mapped_column(Integer)
    #: The block's time: when the payment happened for lateness.
    paid_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
