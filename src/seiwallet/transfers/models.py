"""Tables of the transfers domain: a person-to-person stablecoin transfer and its lifecycle.

A transfer is one EIP-3009 ``transferWithAuthorization`` the sender's wallet signs in the signer
and a sponsor submits (the sender pays no gas). Its row is also the relayer's **outbox**: a
``signed`` row is work to submit; the authorization's ``nonce`` (unique) is what the chain knows
it by, so a resubmission after a crash is harmless (the token refuses a used nonce) and the
chain's ``authorizationState`` decides what is done.
"""

from __future__ import annotations

import enum
from datetime import UTC, datetime

from sqlalchemy import (
    BigInteger,
    DateTime,
    Enum,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from seiwallet.db.base import Base, Uint256


def utcnow() -> datetime:
    return datetime.now(UTC)


class TransferStatus(enum.StrEnum):
    """Lifecycle of a transfer: see ``TRANSFER_TRANSITIONS``."""

    #: Created and checked; waiting for the owner's approval (passkey or device key).
    AWAITING_APPROVAL = "awaiting_approval"
    #: Signed by the signer: in the relayer's outbox.
    SIGNED = "signed"
    #: A sponsor's transaction carrying it was broadcast.
    SUBMITTED = "submitted"
    #: The token's ``AuthorizationUsed`` for its nonce is on the canonical chain.
    CONFIRMED = "confirmed"
    #: It cannot happen (reverted, refused by the signer, expired before submission).
    FAILED = "failed"
    #: Never approved in time.
    EXPIRED = "expired"


TRANSFER_TRANSITIONS: dict[TransferStatus, frozenset[TransferStatus]] = {
    TransferStatus.AWAITING_APPROVAL: frozenset(
        {TransferStatus.SIGNED, TransferStatus.FAILED, TransferStatus.EXPIRED}
    ),
    TransferStatus.SIGNED: frozenset(
        {TransferStatus.SUBMITTED, TransferStatus.CONFIRMED, TransferStatus.FAILED}
    ),
    # Back to SIGNED when its transaction was dropped or replaced: the relayer resubmits.
    TransferStatus.SUBMITTED: frozenset(
        {TransferStatus.CONFIRMED, TransferStatus.FAILED, TransferStatus.SIGNED}
    ),
    # A reorganisation can take a confirmation back (the follower's revert).
    TransferStatus.CONFIRMED: frozenset({TransferStatus.SUBMITTED}),
    TransferStatus.FAILED: frozenset(),
    TransferStatus.EXPIRED: frozenset(),
}
OUTBOX_STATUSES = (TransferStatus.SIGNED,)
IN_FLIGHT_STATUSES = (TransferStatus.SIGNED, TransferStatus.SUBMITTED)


class Transfer(Base):
    """One transfer from a user's wallet (``user_id`` is the owner and the shard key)."""

    __tablename__ = "transfers"
    __table_args__ = (
        UniqueConstraint("user_id", "idempotency_key"),
        UniqueConstraint("chain_id", "token", "nonce"),
        # The relayer's claim: due outbox rows of a chain, oldest first (stays cheap under a
        # backlog of delayed transfers).
        Index("ix_transfers_outbox", "chain_id", "status", "next_attempt_at", "created_at"),
        Index("ix_transfers_user_created", "user_id", "created_at"),
        # What a sender has in flight (the balance check of every new transfer and payment):
        # their signed and submitted rows of one token, not their whole history.
        Index("ix_transfers_user_in_flight", "user_id", "token", "status"),
        Index("ix_transfers_to", "chain_id", "to_address"),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id"))
    idempotency_key: Mapped[str] = mapped_column(String(255))
    #: SHA-256 of the request that created it: the same key with another request is refused.
    request_hash: Mapped[str] = mapped_column(String(64))
    chain_id: Mapped[int] = mapped_column(BigInteger)
    token: Mapped[str] = mapped_column(String(42))
    symbol: Mapped[str] = mapped_column(String(16))
    decimals: Mapped[int] = mapped_column(Integer)
    from_address: Mapped[str] = mapped_column(String(42))
    to_address: Mapped[str] = mapped_column(String(42))
    #: The recipient as the sender named them (an alias, a sei1 address), and their user if ours.
    recipient_input: Mapped[str] = mapped_column(String(320))
    recipient_user_id: Mapped[str | None] = mapped_column(String(32), nullable=True, index=True)
    amount_units: Mapped[int] = mapped_column(Uint256)
    note: Mapped[str] = mapped_column(String(140), default="")
    #: The EIP-3009 authorization: nonce (0x + 64 hex) and validity window (unix seconds).
    nonce: Mapped[str] = mapped_column(String(66))
    valid_after: Mapped[int] = mapped_column(BigInteger)
    valid_before: Mapped[int] = mapped_column(BigInteger)
    #: The intent the owner approves, canonical JSON, and its digest (hex).
    intent: Mapped[str] = mapped_column(Text)
    intent_digest: Mapped[str] = mapped_column(String(64))
    #: The owner's signature (0x + 130 hex), once signed.
    signature: Mapped[str | None] = mapped_column(String(132), nullable=True)
    status: Mapped[TransferStatus] = mapped_column(
        Enum(
            TransferStatus,
            native_enum=False,
            length=20,
            values_callable=lambda e: [m.value for m in e],
        )
    )
    failure_code: Mapped[str | None] = mapped_column(String(64), nullable=True)
    failure_reason: Mapped[str | None] = mapped_column(String(500), nullable=True)
    #: The sponsor transaction that carried it (the latest one), and what it cost the sponsor.
    tx_hash: Mapped[str | None] = mapped_column(String(66), nullable=True)
    sponsor: Mapped[str | None] = mapped_column(String(42), nullable=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    block_number: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    gas_used: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    gas_cost_wei: Mapped[int | None] = mapped_column(Uint256, nullable=True)
    #: When a delayed submission may be tried again (RPC down, sponsor empty).
    next_attempt_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    delay_reason: Mapped[str | None] = mapped_column(String(200), nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), default=utcnow, onupdate=utcnow
    )
    signed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    submitted_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    confirmed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


class InvitationStatus(enum.StrEnum):
    """Where an invitation stands, as the follower saw it on-chain: see ``INVITATION_TRANSITIONS``.

    (The escrow's own view, ``chain.escrow.InvitationStatus``, has no ``pending``: a record there
    exists from the deposit on.)
    """

    #: Created with its transfer; the escrow has not recorded it (yet): not approved, not yet
    #: deposited, or deposited straight to the token by someone else and not yet registered.
    PENDING = "pending"
    #: ``InvitationCreated`` applied: the money waits in the escrow for the alias's owner.
    OPEN = "open"
    #: ``InvitationClaimed`` applied: paid to the wallet of whoever proved the alias.
    RELEASED = "released"
    #: ``InvitationReclaimed`` applied: back to the sender after the deadline.
    RECLAIMED = "reclaimed"


INVITATION_TRANSITIONS: dict[InvitationStatus, frozenset[InvitationStatus]] = {
    InvitationStatus.PENDING: frozenset({InvitationStatus.OPEN}),
    # Back to PENDING / OPEN only when a reorganisation takes the event away (the follower's
    # revert); on Sei, which is final at once, that never happens.
    InvitationStatus.OPEN: frozenset(
        {InvitationStatus.RELEASED, InvitationStatus.RECLAIMED, InvitationStatus.PENDING}
    ),
    InvitationStatus.RELEASED: frozenset({InvitationStatus.OPEN}),
    InvitationStatus.RECLAIMED: frozenset({InvitationStatus.OPEN}),
}


class InvitationAction(enum.StrEnum):
    """A transaction the worker sends for an invitation (one at a time per invitation)."""

    #: ``register``: record a deposit someone submitted straight to the token (releaser only).
    REGISTER = "register"
    #: ``release``: pay the invitation to the wallet of the alias's proven owner (releaser only).
    RELEASE = "release"
    #: ``reclaim``: after the deadline, pay it back to the sender (anyone may).
    RECLAIM = "reclaim"


class TransferInvitation(Base):
    """The invitation a transfer to a not-yet-joined alias makes (one per such transfer).

    The transfer row carries the sender's authorization to the escrow (its ``nonce`` is the
    invitation id); this row keeps what the chain must never see — the alias and the salt of its
    claim hash — and the invitation's progress. ``user_id`` is the sender (the shard key).
    """

    __tablename__ = "transfer_invitations"
    __table_args__ = (
        UniqueConstraint("chain_id", "invitation_id"),
        # The per-sender limit on new aliases: this sender's invitations, newest first.
        Index("ix_transfer_invitations_user_created", "user_id", "created_at"),
        # The worker's rounds: the open (or pending) invitations of a chain, oldest deadline first.
        Index("ix_transfer_invitations_work", "chain_id", "status", "deadline"),
        Index("ix_transfer_invitations_alias", "alias"),
    )

    transfer_id: Mapped[str] = mapped_column(ForeignKey("transfers.id"), primary_key=True)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id"))
    chain_id: Mapped[int] = mapped_column(BigInteger)
    escrow: Mapped[str] = mapped_column(String(42))
    #: The escrow's id of it: the EIP-3009 nonce the sender signs (0x + 64 hex, lower-case).
    invitation_id: Mapped[str] = mapped_column(String(66))
    #: ``email`` or ``phone``, and the alias in its one stored form (``accounts.aliases``).
    alias_kind: Mapped[str] = mapped_column(String(8))
    alias: Mapped[str] = mapped_column(String(320))
    #: The random salt of the claim hash (0x + 64 hex) and the hash itself, as sent on-chain.
    salt: Mapped[str] = mapped_column(String(66))
    claim_hash: Mapped[str] = mapped_column(String(66))
    #: Unix seconds: before it the releaser may release; from it on anyone may reclaim.
    deadline: Mapped[int] = mapped_column(BigInteger)
    status: Mapped[InvitationStatus] = mapped_column(
        Enum(
            InvitationStatus,
            native_enum=False,
            length=16,
            values_callable=lambda e: [m.value for m in e],
        )
    )
    #: Who proved the alias and the wallet it is released to (written before the release is
    #: broadcast); after ``InvitationClaimed``, the address the escrow paid.
    recipient_user_id: Mapped[str | None] = mapped_column(String(32), nullable=True, index=True)
    recipient_address: Mapped[str | None] = mapped_column(String(42), nullable=True)
    #: The worker's transaction in flight for it (recorded in ``chain_transactions`` first).
    action: Mapped[InvitationAction | None] = mapped_column(
        Enum(
            InvitationAction,
            native_enum=False,
            length=16,
            values_callable=lambda e: [m.value for m in e],
        ),
        nullable=True,
    )
    action_tx_hash: Mapped[str | None] = mapped_column(String(66), nullable=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    #: The worker leaves it alone until then (after a failed or refused action).
    next_attempt_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    last_error: Mapped[str | None] = mapped_column(String(300), nullable=True)
    #: The transactions that recorded and settled it on-chain (from the follower's events).
    created_tx_hash: Mapped[str | None] = mapped_column(String(66), nullable=True)
    settled_tx_hash: Mapped[str | None] = mapped_column(String(66), nullable=True)
    settled_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    #: Messages sent: to the invited alias (once it is funded), to the sender (once settled).
    invitee_notified_at: Mapped[datetime | None] = mapped_column(
        DateTime(timezone=True), nullable=True
    )
    sender_notified: Mapped[str | None] = mapped_column(String(16), nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), default=utcnow, onupdate=utcnow
    )


class RouterCallKind(enum.StrEnum):
    """What a transfer to the PaymentRouter does there."""

    #: ``pay``: the payer's ``ReceiveWithAuthorization`` settles an invoice's payment terms.
    PAY = "pay"
    #: ``refund``: the merchant's ``ReceiveWithAuthorization`` refunds (part of) a payment.
    REFUND = "refund"


class TransferRouterCall(Base):
    """The PaymentRouter call an outbox row makes: a payment of an invoice, or a refund.

    The transfer row carries the EIP-3009 ``ReceiveWithAuthorization`` to the router (``from``,
    value, window, nonce — the router's hash of the terms — and signature), so the relayer claims,
    submits, tracks and resolves it like any transfer (``authorizationState`` of that nonce says
    whether it happened). This row holds the rest of the terms the router needs to recompute the
    nonce: the relayer submits ``router.pay``/``router.refund`` instead of the token's call.
    """

    __tablename__ = "transfer_router_calls"

    transfer_id: Mapped[str] = mapped_column(ForeignKey("transfers.id"), primary_key=True)
    kind: Mapped[RouterCallKind] = mapped_column(
        Enum(
            RouterCallKind,
            native_enum=False,
            length=10,
            values_callable=lambda e: [m.value for m in e],
        )
    )
    router: Mapped[str] = mapped_column(String(42))
    #: The payment's terms (for a refund, those of the payment it refunds).
    invoice_id: Mapped[str] = mapped_column(String(66))
    merchant: Mapped[str] = mapped_column(String(42))
    payment_amount_units: Mapped[int] = mapped_column(Uint256)
    fee_units: Mapped[int] = mapped_column(Uint256)
    #: A refund's payer (as the router recorded it) and its single-use id.
    payer: Mapped[str | None] = mapped_column(String(42), nullable=True)
    refund_id: Mapped[str | None] = mapped_column(String(66), nullable=True)


class TransferBatchMember(Base):
    """An outbox row carried by a sponsor transaction that carries several (``router.payBatch``).

    One row per (transaction, member), written in the database transaction that records the
    sponsor transaction before its broadcast, and again for each replacement of it: whichever
    hash of the batch is mined names its members. A transaction carrying one row needs none (its
    ``chain_transactions.purpose`` names it). ``position`` is the member's index in the calldata;
    the batch's gas is split among its members in that order (``transfers.relayer``).
    """

    __tablename__ = "transfer_batch_members"
    __table_args__ = (Index("ix_transfer_batch_members_transfer", "transfer_id"),)

    chain_id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    tx_hash: Mapped[str] = mapped_column(String(66), primary_key=True)
    position: Mapped[int] = mapped_column(Integer, primary_key=True)
    transfer_id: Mapped[str] = mapped_column(ForeignKey("transfers.id"))
