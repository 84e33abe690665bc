"""Tables of the chain layer: follower checkpoints, recent blocks, decoded events, sent txs.

Every row carries its ``chain_id`` so one database can follow several networks, and the sent
transactions carry their sponsor account, the relayer's shard key.
"""

from __future__ import annotations

import enum
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    DateTime,
    Enum,
    Index,
    Integer,
    LargeBinary,
    String,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from seiwallet.db.base import Base


def utcnow() -> datetime:
    return datetime.now(UTC)


class FollowerCursor(Base):
    """How far a follower has applied a chain: the last block whose events are in the database."""

    __tablename__ = "chain_cursors"

    chain_id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    block_number: Mapped[int] = mapped_column(BigInteger)
    block_hash: Mapped[str] = mapped_column(String(66))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class SeenBlock(Base):
    """A recently applied block, kept to find the fork point when the chain reorganises."""

    __tablename__ = "chain_blocks"

    chain_id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    follower: Mapped[str] = mapped_column(String(64), primary_key=True)
    number: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    hash: Mapped[str] = mapped_column(String(66))
    parent_hash: Mapped[str] = mapped_column(String(66))
    timestamp: Mapped[int] = mapped_column(BigInteger)


class ChainEvent(Base):
    """A decoded event of one of our contracts or tokens, applied exactly once.

    The unique key (chain, block hash, log index) makes a re-read of the same block a no-op;
    a reorganisation deletes the events of the abandoned blocks in the same transaction that
    rewinds the cursor, so an event re-mined in another block is applied once more, once.
    """

    __tablename__ = "chain_events"
    __table_args__ = (
        UniqueConstraint("chain_id", "block_hash", "log_index"),
        Index("ix_chain_events_chain_block", "chain_id", "block_number"),
        Index("ix_chain_events_name_key", "chain_id", "name", "key"),
    )

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    chain_id: Mapped[int] = mapped_column(BigInteger)
    block_number: Mapped[int] = mapped_column(BigInteger)
    block_hash: Mapped[str] = mapped_column(String(66))
    transaction_hash: Mapped[str] = mapped_column(String(66))
    log_index: Mapped[int] = mapped_column(Integer)
    contract: Mapped[str] = mapped_column(String(42))
    name: Mapped[str] = mapped_column(String(64))
    #: The event's natural key for look-ups (e.g. the invoice id of a router event).
    key: Mapped[str | None] = mapped_column(String(66), nullable=True)
    #: Decoded arguments; uint256 values as decimal strings (JSON numbers lose precision).
    args: Mapped[dict[str, Any]] = mapped_column(JSON)
    block_timestamp: Mapped[int] = mapped_column(BigInteger)
    applied_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class TxStatus(enum.StrEnum):
    """Lifecycle of a transaction we sign: see ``TX_TRANSITIONS``."""

    SIGNED = "signed"  # written before broadcast, so a crash cannot lose it
    BROADCAST = "broadcast"
    MINED = "mined"  # included with status 1
    FAILED = "failed"  # included with status 0
    REPLACED = "replaced"  # another transaction with the same nonce was mined instead
    DROPPED = "dropped"  # never mined and its nonce was filled by another of ours


TX_TRANSITIONS: dict[TxStatus, frozenset[TxStatus]] = {
    TxStatus.SIGNED: frozenset(
        {TxStatus.BROADCAST, TxStatus.MINED, TxStatus.FAILED, TxStatus.REPLACED, TxStatus.DROPPED}
    ),
    TxStatus.BROADCAST: frozenset(
        {TxStatus.MINED, TxStatus.FAILED, TxStatus.REPLACED, TxStatus.DROPPED}
    ),
    TxStatus.MINED: frozenset(),
    TxStatus.FAILED: frozenset(),
    TxStatus.REPLACED: frozenset(),
    TxStatus.DROPPED: frozenset(),
}
OPEN_TX_STATUSES = (TxStatus.SIGNED, TxStatus.BROADCAST)


class SentTransaction(Base):
    """A transaction signed by a sponsor account, recorded before it is broadcast."""

    __tablename__ = "chain_transactions"
    __table_args__ = (
        UniqueConstraint("chain_id", "tx_hash"),
        Index("ix_chain_transactions_sponsor_nonce", "chain_id", "sponsor", "nonce"),
        Index("ix_chain_transactions_status", "chain_id", "status"),
    )

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    chain_id: Mapped[int] = mapped_column(BigInteger)
    sponsor: Mapped[str] = mapped_column(String(42))
    nonce: Mapped[int] = mapped_column(BigInteger)
    tx_hash: Mapped[str] = mapped_column(String(66))
    raw: Mapped[bytes] = mapped_column(LargeBinary)
    to: Mapped[str | None] = mapped_column(String(42), nullable=True)
    #: What the transaction is for, e.g. ``"router.pay:<invoice id>"``; free text for operators.
    purpose: Mapped[str] = mapped_column(String(200), default="")
    gas_limit: Mapped[int] = mapped_column(BigInteger)
    max_fee_per_gas: Mapped[int] = mapped_column(BigInteger)
    max_priority_fee_per_gas: Mapped[int] = mapped_column(BigInteger)
    status: Mapped[TxStatus] = mapped_column(
        Enum(TxStatus, native_enum=False, length=16, values_callable=lambda e: [m.value for m in e])
    )
    block_number: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    gas_used: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    effective_gas_price: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), default=utcnow, onupdate=utcnow
    )
