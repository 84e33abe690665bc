"""Tables of the payments domain, and the invoice's lifecycle (its transitions in one place).

Every row carries its ``merchant_id``: the merchant is the shard key of this domain (see the
architecture's "Scale"), and no hot-path transaction spans two merchants. A payer's attempt also
carries the payer's user id.

Two rows are **outboxes** a worker takes work from, shaped like ``transfers``: a payment attempt
(``signed`` = an authorization for the relayer to submit with ``payBatch``) and a refund
(``signed`` = the merchant's refund authorization). Both have ``status``, ``next_attempt_at``
(the claim), ``tx_hash``, ``sponsor``, ``attempts`` and gas figures, so the relayer claims them as
it claims transfers. Webhook deliveries are the third outbox (sent by :mod:`.tasks`).
"""

from __future__ import annotations

import enum
from datetime import UTC, datetime
from typing import Any, Final

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
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


def _enum(cls: type[enum.StrEnum], length: int) -> Enum:
    return Enum(
        cls, native_enum=False, length=length, values_callable=lambda e: [m.value for m in e]
    )


_BIGINT_ID: Final = BigInteger().with_variant(Integer, "sqlite")


# -- merchants, stores, terminals, staff, keys ------------------------------------------------


class MerchantStatus(enum.StrEnum):
    ACTIVE = "active"
    SUSPENDED = "suspended"


class StaffRole(enum.StrEnum):
    """What a person does for a merchant; what each may do is ``permissions.ROLE_PERMISSIONS``."""

    OWNER = "owner"
    MANAGER = "manager"
    CASHIER = "cashier"


class Merchant(Base):
    """A business taking payments: its payout wallet, settlement token and fee."""

    __tablename__ = "merchants"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    owner_user_id: Mapped[str] = mapped_column(ForeignKey("users.id"), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    #: Where settlements go (the router pays it ``amount - fee``).
    payout_address: Mapped[str] = mapped_column(String(42))
    #: The signer's wallet behind the payout address when it is one of ours (refunds need it).
    payout_wallet_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    settlement_symbol: Mapped[str] = mapped_column(String(16))
    #: The operator's fee for this merchant in basis points; ``None``: the platform's default.
    fee_bps: Mapped[int | None] = mapped_column(Integer, nullable=True)
    status: Mapped[MerchantStatus] = mapped_column(_enum(MerchantStatus, 16))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class Store(Base):
    """A shop (or web shop) of a merchant: where invoices are priced and reported."""

    __tablename__ = "merchant_stores"
    __table_args__ = (Index("ix_merchant_stores_merchant", "merchant_id", "created_at"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    merchant_id: Mapped[str] = mapped_column(ForeignKey("merchants.id"))
    name: Mapped[str] = mapped_column(String(200))
    address: Mapped[str] = mapped_column(String(500), default="")
    #: ISO 3166-1 alpha-2.
    country: Mapped[str] = mapped_column(String(2))
    #: ISO 4217 currency prices are given in (HKD, EUR, USD…).
    currency: Mapped[str] = mapped_column(String(3))
    logo_url: Mapped[str | None] = mapped_column(String(2000), nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class Terminal(Base):
    """A point of sale (a tablet or phone at a counter) of a store."""

    __tablename__ = "merchant_terminals"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    merchant_id: Mapped[str] = mapped_column(ForeignKey("merchants.id"))
    store_id: Mapped[str] = mapped_column(ForeignKey("merchant_stores.id"), index=True)
    name: Mapped[str] = mapped_column(String(100))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


class StaffMember(Base):
    """A user working for a merchant, in one role, for all its stores or one."""

    __tablename__ = "merchant_staff"
    __table_args__ = (UniqueConstraint("merchant_id", "user_id"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    merchant_id: Mapped[str] = mapped_column(ForeignKey("merchants.id"))
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id"), index=True)
    role: Mapped[StaffRole] = mapped_column(_enum(StaffRole, 16))
    #: ``None``: every store of the merchant.
    store_id: Mapped[str | None] = mapped_column(ForeignKey("merchant_stores.id"), nullable=True)
    #: Overrides the role's refund limit (base units of the settlement token).
    refund_limit_units: Mapped[int | None] = mapped_column(Uint256, nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


class ApproverStatus(enum.StrEnum):
    """A refund approver's passkey: made by the staff member, then added by the owner."""

    #: Registered on the staff member's phone; the owner has not approved it yet.
    AWAITING_OWNER = "awaiting_owner"
    #: On the payout wallet in the signer, with its scope: it approves refunds up to its cap.
    ACTIVE = "active"
    #: Removed (by the owner, or replaced by a newer one before approval).
    REVOKED = "revoked"


class RefundApprover(Base):
    """A staff member's passkey on the merchant's payout wallet: a *delegate* in the signer,
    whose approval counts for ``router.refund`` intents up to ``max_amount_units`` and for
    nothing else (see ``seiwallet.signer.policy``)."""

    __tablename__ = "merchant_refund_approvers"
    __table_args__ = (Index("ix_merchant_refund_approvers_merchant", "merchant_id", "status"),)

    #: The authenticator's id in the signer (and in ``user_authenticators``).
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    merchant_id: Mapped[str] = mapped_column(ForeignKey("merchants.id"))
    staff_id: Mapped[str] = mapped_column(ForeignKey("merchant_staff.id"))
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id"), index=True)
    status: Mapped[ApproverStatus] = mapped_column(_enum(ApproverStatus, 16))
    #: What the signer is asked to add (public key, credential id, counter, label) as JSON.
    registration: Mapped[str] = mapped_column(Text)
    #: The cap the owner approved (base units of ``symbol``); ``None`` until then.
    max_amount_units: Mapped[int | None] = mapped_column(Uint256, nullable=True)
    symbol: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    approved_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


class ApiKey(Base):
    """A store's API key: shown once as ``swk_…``, kept as its SHA-256 only."""

    __tablename__ = "merchant_api_keys"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    merchant_id: Mapped[str] = mapped_column(ForeignKey("merchants.id"))
    store_id: Mapped[str] = mapped_column(ForeignKey("merchant_stores.id"), index=True)
    name: Mapped[str] = mapped_column(String(100))
    #: The first characters of the secret, to recognise it in a list (not enough to use it).
    prefix: Mapped[str] = mapped_column(String(16))
    secret_hash: Mapped[str] = mapped_column(String(64), unique=True)
    #: Space-separated scopes (``invoices:create invoices:read``).
    scopes: Mapped[str] = mapped_column(String(200))
    created_by_user_id: Mapped[str] = mapped_column(String(32))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    last_used_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


# -- invoices -------------------------------------------------------------------------------


class InvoiceStatus(enum.StrEnum):
    """An invoice's lifecycle (modelled on BTCPay's): see ``INVOICE_TRANSITIONS``."""

    #: Waiting for a payer.
    NEW = "new"
    #: A payer's authorization is signed and in the relayer's outbox.
    PROCESSING = "processing"
    #: The router's ``PaymentSettled`` for its terms is on the canonical chain.
    SETTLED = "settled"
    #: Nobody paid before it expired.
    EXPIRED = "expired"
    #: Its payment failed on-chain (reported by our relayer's transaction).
    INVALID = "invalid"
    #: Refunded in full / in part (``refunded_units``).
    REFUNDED = "refunded"
    PARTIALLY_REFUNDED = "partially_refunded"


_S = InvoiceStatus
#: The one table of allowed invoice transitions. Settlement may come from any unpaid state: the
#: chain is the truth (a late settlement of an expired invoice is flagged ``paid_late``). The way
#: back (settled → processing/new, refunded → settled…) is the follower's undo on a reorg.
INVOICE_TRANSITIONS: Final[dict[InvoiceStatus, frozenset[InvoiceStatus]]] = {
    _S.NEW: frozenset({_S.PROCESSING, _S.SETTLED, _S.EXPIRED}),
    _S.PROCESSING: frozenset({_S.SETTLED, _S.INVALID, _S.NEW}),
    _S.EXPIRED: frozenset({_S.SETTLED}),
    _S.INVALID: frozenset({_S.SETTLED}),
    _S.SETTLED: frozenset({_S.PARTIALLY_REFUNDED, _S.REFUNDED, _S.PROCESSING, _S.NEW, _S.EXPIRED}),
    _S.PARTIALLY_REFUNDED: frozenset({_S.PARTIALLY_REFUNDED, _S.REFUNDED, _S.SETTLED}),
    _S.REFUNDED: frozenset({_S.PARTIALLY_REFUNDED, _S.SETTLED}),
}
#: States in which the invoice has been paid (money reached the merchant).
PAID_STATUSES: Final = frozenset({_S.SETTLED, _S.PARTIALLY_REFUNDED, _S.REFUNDED})
#: States from which a settlement on the chain is a *first* settlement.
UNPAID_STATUSES: Final = frozenset({_S.NEW, _S.PROCESSING, _S.EXPIRED, _S.INVALID})


class Anomaly(enum.StrEnum):
    """Kept apart from the status (BTCPay's exception states): what happened besides it."""

    PAID_LATE = "paid_late"
    PAID_OVER = "paid_over"
    PAID_PARTIAL = "paid_partial"


def can_transition(current: InvoiceStatus, target: InvoiceStatus) -> bool:
    """Whether ``current → target`` is a transition the lifecycle allows."""
    return target in INVOICE_TRANSITIONS[current]


def refund_status(amount_units: int, refunded_units: int) -> InvoiceStatus:
    """The status of a paid invoice given what has been refunded of it."""
    if refunded_units <= 0:
        return InvoiceStatus.SETTLED
    if refunded_units >= amount_units:
        return InvoiceStatus.REFUNDED
    return InvoiceStatus.PARTIALLY_REFUNDED


class Invoice(Base):
    """What a store asks to be paid: one set of router terms, fixed for the invoice's life.

    ``id`` is the router's ``invoiceId`` (0x + 64 hex) and ``payment_id`` the hash of the terms
    (the payer's EIP-3009 nonce): a new quote is a new invoice, never new terms for an old one.
    """

    __tablename__ = "invoices"
    __table_args__ = (
        UniqueConstraint("store_id", "idempotency_key"),
        Index("ix_invoices_store_created", "store_id", "created_at"),
        Index("ix_invoices_merchant_created", "merchant_id", "created_at"),
        # The expiry task: new invoices of a chain by expiry.
        Index("ix_invoices_expiry", "chain_id", "status", "expires_at"),
    )

    id: Mapped[str] = mapped_column(String(66), primary_key=True)
    merchant_id: Mapped[str] = mapped_column(ForeignKey("merchants.id"))
    store_id: Mapped[str] = mapped_column(ForeignKey("merchant_stores.id"))
    terminal_id: Mapped[str | None] = mapped_column(
        ForeignKey("merchant_terminals.id"), nullable=True, index=True
    )
    # -- the router's terms
    chain_id: Mapped[int] = mapped_column(BigInteger)
    router: Mapped[str] = mapped_column(String(42))
    token: Mapped[str] = mapped_column(String(42))
    symbol: Mapped[str] = mapped_column(String(16))
    decimals: Mapped[int] = mapped_column(Integer)
    merchant_address: Mapped[str] = mapped_column(String(42))
    amount_units: Mapped[int] = mapped_column(Uint256)
    fee_units: Mapped[int] = mapped_column(Uint256)
    fee_bps: Mapped[int] = mapped_column(Integer)
    payment_id: Mapped[str] = mapped_column(String(66), unique=True)
    # -- the price and its quote
    price_amount: Mapped[str] = mapped_column(String(40))
    price_currency: Mapped[str] = mapped_column(String(8))
    #: Token per one unit of the price's currency (decimal text), fixed for the invoice's life.
    rate: Mapped[str] = mapped_column(String(40))
    rate_source: Mapped[str] = mapped_column(String(64))
    rate_as_of: Mapped[str] = mapped_column(String(10))
    order_id: Mapped[str | None] = mapped_column(String(128), nullable=True)
    metadata_json: Mapped[dict[str, Any]] = mapped_column("metadata", JSON)
    # -- lifecycle
    status: Mapped[InvoiceStatus] = mapped_column(_enum(InvoiceStatus, 20))
    paid_late: Mapped[bool] = mapped_column(Boolean, default=False)
    paid_over: Mapped[bool] = mapped_column(Boolean, default=False)
    paid_partial: Mapped[bool] = mapped_column(Boolean, default=False)
    idempotency_key: Mapped[str | None] = mapped_column(String(255), nullable=True)
    request_hash: Mapped[str | None] = mapped_column(String(64), nullable=True)
    #: ``user:<id>`` or ``key:<id>``.
    created_by: Mapped[str] = mapped_column(String(64))
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), default=utcnow, onupdate=utcnow
    )
    #: A payer approving it holds it for a moment (``claim_expires_at``): two phones, one wins.
    claim_attempt_id: Mapped[str | None] = mapped_column(String(32), nullable=True)
    claim_expires_at: Mapped[datetime | None] = mapped_column(
        DateTime(timezone=True), nullable=True
    )
    #: The payment attempt whose signed authorization made it ``processing``.
    attempt_id: Mapped[str | None] = mapped_column(String(32), nullable=True)
    payer_user_id: Mapped[str | None] = mapped_column(String(32), nullable=True)
    payer_address: Mapped[str | None] = mapped_column(String(42), nullable=True)
    processing_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    settled_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    tx_hash: Mapped[str | None] = mapped_column(String(66), nullable=True)
    block_number: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    #: Everything settled under this invoice id (more than ``amount_units`` if paid twice).
    paid_units: Mapped[int] = mapped_column(Uint256, default=0)
    refunded_units: Mapped[int] = mapped_column(Uint256, default=0)
    failure_code: Mapped[str | None] = mapped_column(String(64), nullable=True)
    failure_reason: Mapped[str | None] = mapped_column(String(500), nullable=True)

    @property
    def anomalies(self) -> list[str]:
        flags = (
            (self.paid_late, Anomaly.PAID_LATE),
            (self.paid_over, Anomaly.PAID_OVER),
            (self.paid_partial, Anomaly.PAID_PARTIAL),
        )
        return [str(name) for flag, name in flags if flag]


# -- the settlement outboxes ------------------------------------------------------------------


class AttemptStatus(enum.StrEnum):
    """A payer's attempt to pay an invoice: see ``ATTEMPT_TRANSITIONS``."""

    AWAITING_APPROVAL = "awaiting_approval"
    #: Signed: in the relayer's outbox (to be submitted with ``payBatch``).
    SIGNED = "signed"
    SUBMITTED = "submitted"
    SETTLED = "settled"
    FAILED = "failed"
    #: Never signed: the invoice was paid from another phone, expired, or the payer gave up.
    ABANDONED = "abandoned"


ATTEMPT_TRANSITIONS: Final[dict[AttemptStatus, frozenset[AttemptStatus]]] = {
    AttemptStatus.AWAITING_APPROVAL: frozenset({AttemptStatus.SIGNED, AttemptStatus.ABANDONED}),
    AttemptStatus.SIGNED: frozenset(
        {AttemptStatus.SUBMITTED, AttemptStatus.SETTLED, AttemptStatus.FAILED}
    ),
    AttemptStatus.SUBMITTED: frozenset(
        {AttemptStatus.SETTLED, AttemptStatus.FAILED, AttemptStatus.SIGNED}
    ),
    AttemptStatus.SETTLED: frozenset({AttemptStatus.SUBMITTED}),
    AttemptStatus.FAILED: frozenset({AttemptStatus.SETTLED}),
    AttemptStatus.ABANDONED: frozenset(),
}
IN_FLIGHT_ATTEMPTS: Final = (AttemptStatus.SIGNED, AttemptStatus.SUBMITTED)


class PaymentAttempt(Base):
    """A payer's ``router.pay`` authorization for an invoice; once ``signed``, relayer work."""

    __tablename__ = "payment_attempts"
    __table_args__ = (
        # The relayer's claim, as for transfers: due outbox rows of a chain, oldest first.
        Index("ix_payment_attempts_outbox", "chain_id", "status", "next_attempt_at", "created_at"),
        Index("ix_payment_attempts_invoice", "invoice_id", "payer_user_id"),
        Index("ix_payment_attempts_payer", "payer_user_id", "status"),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    invoice_id: Mapped[str] = mapped_column(ForeignKey("invoices.id"))
    merchant_id: Mapped[str] = mapped_column(String(32))
    payer_user_id: Mapped[str] = mapped_column(ForeignKey("users.id"))
    payer_wallet_id: Mapped[str] = mapped_column(String(64))
    payer_address: Mapped[str] = mapped_column(String(42))
    chain_id: Mapped[int] = mapped_column(BigInteger)
    router: Mapped[str] = mapped_column(String(42))
    token: Mapped[str] = mapped_column(String(42))
    amount_units: Mapped[int] = mapped_column(Uint256)
    fee_units: Mapped[int] = mapped_column(Uint256)
    #: The EIP-3009 authorization's window (unix seconds); its nonce is the invoice's payment id.
    valid_after: Mapped[int] = mapped_column(BigInteger)
    valid_before: Mapped[int] = mapped_column(BigInteger)
    intent: Mapped[str] = mapped_column(Text)
    intent_digest: Mapped[str] = mapped_column(String(64))
    #: 0x + hex; 65 bytes for a key, longer for a smart account (ERC-1271).
    signature: Mapped[str | None] = mapped_column(Text, nullable=True)
    #: Its row in the relayer's outbox (``transfers``), once signed.
    transfer_id: Mapped[str | None] = mapped_column(String(32), nullable=True, index=True)
    status: Mapped[AttemptStatus] = mapped_column(_enum(AttemptStatus, 20))
    failure_code: Mapped[str | None] = mapped_column(String(64), nullable=True)
    failure_reason: Mapped[str | None] = mapped_column(String(500), nullable=True)
    tx_hash: Mapped[str | None] = mapped_column(String(66), nullable=True)
    sponsor: Mapped[str | None] = mapped_column(String(42), nullable=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    block_number: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    gas_used: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    gas_cost_wei: Mapped[int | None] = mapped_column(Uint256, nullable=True)
    next_attempt_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    delay_reason: Mapped[str | None] = mapped_column(String(200), nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), default=utcnow, onupdate=utcnow
    )
    signed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    submitted_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    settled_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


class RefundStatus(enum.StrEnum):
    AWAITING_APPROVAL = "awaiting_approval"
    SIGNED = "signed"
    SUBMITTED = "submitted"
    SETTLED = "settled"
    FAILED = "failed"
    EXPIRED = "expired"


REFUND_TRANSITIONS: Final[dict[RefundStatus, frozenset[RefundStatus]]] = {
    RefundStatus.AWAITING_APPROVAL: frozenset(
        {RefundStatus.SIGNED, RefundStatus.FAILED, RefundStatus.EXPIRED}
    ),
    RefundStatus.SIGNED: frozenset(
        {RefundStatus.SUBMITTED, RefundStatus.SETTLED, RefundStatus.FAILED}
    ),
    RefundStatus.SUBMITTED: frozenset(
        {RefundStatus.SETTLED, RefundStatus.FAILED, RefundStatus.SIGNED}
    ),
    RefundStatus.SETTLED: frozenset({RefundStatus.SUBMITTED}),
    RefundStatus.FAILED: frozenset(),
    RefundStatus.EXPIRED: frozenset(),
}
#: Refunds that will move money unless they fail: they count against what is refundable.
COMMITTED_REFUNDS: Final = (RefundStatus.SIGNED, RefundStatus.SUBMITTED)


class RefundMethod(enum.StrEnum):
    """How a refund reaches the payer."""

    #: ``router.refund``: the router pays back the payer it recorded for the payment.
    ROUTER = "router"
    #: A plain EIP-3009 ``transferWithAuthorization`` from the payout wallet to the address that
    #: paid the invoice's deposit address (the router has no payer for such a payment).
    TRANSFER = "transfer"


class Refund(Base):
    """A (partial) refund of an invoice, paid from the merchant's payout wallet to the payer."""

    __tablename__ = "payment_refunds"
    __table_args__ = (
        UniqueConstraint("invoice_id", "idempotency_key"),
        Index("ix_payment_refunds_outbox", "chain_id", "status", "next_attempt_at", "created_at"),
        Index("ix_payment_refunds_store_settled", "store_id", "settled_at"),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    #: The router's ``refundId`` (0x + 64 hex): single use in the merchant's nonce space. For a
    #: ``transfer`` refund, the EIP-3009 nonce of its authorization (random, single use too).
    refund_id: Mapped[str] = mapped_column(String(66), unique=True)
    method: Mapped[RefundMethod] = mapped_column(
        _enum(RefundMethod, 16), default=RefundMethod.ROUTER, server_default="router"
    )
    invoice_id: Mapped[str] = mapped_column(ForeignKey("invoices.id"), index=True)
    merchant_id: Mapped[str] = mapped_column(String(32))
    store_id: Mapped[str] = mapped_column(String(32))
    requested_by: Mapped[str] = mapped_column(String(64))
    payer_address: Mapped[str] = mapped_column(String(42))
    amount_units: Mapped[int] = mapped_column(Uint256)
    reason: Mapped[str] = mapped_column(String(200), default="")
    chain_id: Mapped[int] = mapped_column(BigInteger)
    router: Mapped[str] = mapped_column(String(42))
    token: Mapped[str] = mapped_column(String(42))
    valid_after: Mapped[int] = mapped_column(BigInteger)
    valid_before: Mapped[int] = mapped_column(BigInteger)
    intent: Mapped[str] = mapped_column(Text)
    intent_digest: Mapped[str] = mapped_column(String(64))
    signature: Mapped[str | None] = mapped_column(Text, nullable=True)
    #: Its row in the relayer's outbox (``transfers``), once signed.
    transfer_id: Mapped[str | None] = mapped_column(String(32), nullable=True, index=True)
    status: Mapped[RefundStatus] = mapped_column(_enum(RefundStatus, 20))
    idempotency_key: Mapped[str | None] = mapped_column(String(255), nullable=True)
    request_hash: Mapped[str | None] = mapped_column(String(64), nullable=True)
    failure_code: Mapped[str | None] = mapped_column(String(64), nullable=True)
    failure_reason: Mapped[str | None] = mapped_column(String(500), nullable=True)
    tx_hash: Mapped[str | None] = mapped_column(String(66), nullable=True)
    sponsor: Mapped[str | None] = mapped_column(String(42), nullable=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    block_number: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    gas_used: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    gas_cost_wei: Mapped[int | None] = mapped_column(Uint256, nullable=True)
    next_attempt_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    delay_reason: Mapped[str | None] = mapped_column(String(200), nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), default=utcnow, onupdate=utcnow
    )
    signed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    submitted_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    settled_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


# -- events and webhooks ----------------------------------------------------------------------


class PaymentEvent(Base):
    """Something that happened to an invoice or refund; ``id`` orders them (SSE's event id).

    Appended in the same transaction as the change it reports; webhooks and the terminal's live
    stream read these rows, never the invoice's current state.
    """

    __tablename__ = "payment_events"
    __table_args__ = (
        Index("ix_payment_events_invoice", "invoice_id", "id"),
        Index("ix_payment_events_terminal", "terminal_id", "id"),
        Index("ix_payment_events_store", "store_id", "id"),
    )

    id: Mapped[int] = mapped_column(_BIGINT_ID, primary_key=True, autoincrement=True)
    merchant_id: Mapped[str] = mapped_column(String(32))
    store_id: Mapped[str] = mapped_column(String(32))
    invoice_id: Mapped[str | None] = mapped_column(String(66), nullable=True)
    terminal_id: Mapped[str | None] = mapped_column(String(32), nullable=True)
    type: Mapped[str] = mapped_column(String(40))
    data: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class WebhookEndpoint(Base):
    """Where a store wants its events POSTed, which ones, and the secret that signs them."""

    __tablename__ = "webhook_endpoints"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    merchant_id: Mapped[str] = mapped_column(ForeignKey("merchants.id"))
    store_id: Mapped[str] = mapped_column(ForeignKey("merchant_stores.id"), index=True)
    url: Mapped[str] = mapped_column(String(2000))
    description: Mapped[str] = mapped_column(String(200), default="")
    #: Space-separated event types.
    event_types: Mapped[str] = mapped_column(String(1000))
    #: The HMAC key (``whsec_…``). Kept in the clear because signing needs it (as Stripe does);
    #: shown to the merchant once, never logged.
    secret: Mapped[str] = mapped_column(String(100))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    disabled_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


class DeliveryStatus(enum.StrEnum):
    PENDING = "pending"
    DELIVERED = "delivered"
    FAILED = "failed"


class WebhookDelivery(Base):
    """One event for one endpoint: the outbox row the webhook sender works from."""

    __tablename__ = "webhook_deliveries"
    __table_args__ = (
        Index("ix_webhook_deliveries_due", "status", "next_attempt_at"),
        Index("ix_webhook_deliveries_endpoint", "endpoint_id", "created_at"),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    endpoint_id: Mapped[str] = mapped_column(ForeignKey("webhook_endpoints.id"))
    merchant_id: Mapped[str] = mapped_column(String(32))
    event_id: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    event_type: Mapped[str] = mapped_column(String(40))
    #: The exact body sent (the same bytes on every try; only the signature's time changes).
    payload: Mapped[str] = mapped_column(Text)
    status: Mapped[DeliveryStatus] = mapped_column(_enum(DeliveryStatus, 16))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    last_status_code: Mapped[int | None] = mapped_column(Integer, nullable=True)
    last_error: Mapped[str | None] = mapped_column(String(300), nullable=True)
    #: A manual redelivery names the delivery it repeats.
    redelivery_of: Mapped[str | None] = mapped_column(String(32), nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    delivered_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


class WebhookAttempt(Base):
    """One HTTP try of a delivery: the delivery log."""

    __tablename__ = "webhook_delivery_attempts"

    id: Mapped[int] = mapped_column(_BIGINT_ID, primary_key=True, autoincrement=True)
    delivery_id: Mapped[str] = mapped_column(ForeignKey("webhook_deliveries.id"), index=True)
    attempted_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    status_code: Mapped[int | None] = mapped_column(Integer, nullable=True)
    latency_ms: Mapped[int] = mapped_column(Integer)
    error: Mapped[str | None] = mapped_column(String(300), nullable=True)
