"""Tables of the compliance domain: rule versions, user placement, usage, decisions, screening.

Everything that grows with people carries its ``user_id`` (the shard key). Decisions are kept
whatever they decided: they are the audit trail a regulator asks for. Sanctioned addresses are
kept as the 20 bytes they name (40 lower-case hex digits), so a ``0x`` and a ``sei1`` spelling
of one account meet on one indexed key.
"""

from __future__ import annotations

import enum
from datetime import UTC, datetime

from sqlalchemy import (
    BigInteger,
    Boolean,
    DateTime,
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


class Outcome(enum.StrEnum):
    ALLOW = "allow"
    DENY = "deny"
    NEEDS_INFORMATION = "needs_information"


class UsageStatus(enum.StrEnum):
    """A limit reservation: counted while reserved or committed; see ``USAGE_TRANSITIONS``."""

    RESERVED = "reserved"
    COMMITTED = "committed"
    RELEASED = "released"


USAGE_TRANSITIONS: dict[UsageStatus, frozenset[UsageStatus]] = {
    UsageStatus.RESERVED: frozenset({UsageStatus.COMMITTED, UsageStatus.RELEASED}),
    UsageStatus.COMMITTED: frozenset({UsageStatus.RELEASED}),
    UsageStatus.RELEASED: frozenset(),
}
COUNTED_USAGE = (UsageStatus.RESERVED, UsageStatus.COMMITTED)


class KycStatus(enum.StrEnum):
    NONE = "none"
    PENDING = "pending"
    VERIFIED = "verified"
    REJECTED = "rejected"


class RuleVersion(Base):
    """One version of a jurisdiction's rule file, recorded when its content changed."""

    __tablename__ = "compliance_rule_versions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    jurisdiction: Mapped[str] = mapped_column(String(8), index=True)
    sha256: Mapped[str] = mapped_column(String(64))
    content: Mapped[str] = mapped_column(Text)
    loaded_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class ComplianceProfile(Base):
    """What compliance knows of a user beyond the account: operator placement, KYC state.

    The row is also the per-user lock limit checks take (``SELECT … FOR UPDATE``).
    """

    __tablename__ = "compliance_profiles"

    user_id: Mapped[str] = mapped_column(ForeignKey("users.id"), primary_key=True)
    #: Set by an operator; wins over the country of the verified phone number.
    country: Mapped[str | None] = mapped_column(String(2), nullable=True)
    assigned_by: Mapped[str | None] = mapped_column(String(320), nullable=True)
    assigned_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    kyc_status: Mapped[str] = mapped_column(String(16), default=KycStatus.NONE.value)
    kyc_provider: Mapped[str | None] = mapped_column(String(32), nullable=True)
    kyc_reference: Mapped[str | None] = mapped_column(String(128), nullable=True)
    kyc_verified_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class Usage(Base):
    """Value a user's allowed movement reserved against their rolling limits."""

    __tablename__ = "compliance_usage"
    __table_args__ = (Index("ix_compliance_usage_user_id_created_at", "user_id", "created_at"),)

    #: The id of the decision that reserved it.
    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    user_id: Mapped[str] = mapped_column(String(32))
    jurisdiction: Mapped[str] = mapped_column(String(8))
    currency: Mapped[str] = mapped_column(String(3))
    #: The movement's value in the jurisdiction's currency, in minor units (cents).
    value_minor: Mapped[int] = mapped_column(BigInteger)
    status: Mapped[str] = mapped_column(String(10))
    reference: Mapped[str | None] = mapped_column(String(255), nullable=True, index=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    settled_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


class DecisionRecord(Base):
    """One decision of the gate: what was asked, what it decided, by which rule, on which rules."""

    __tablename__ = "compliance_decisions"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    created_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), default=utcnow, index=True
    )
    user_id: Mapped[str] = mapped_column(String(32), index=True)
    kind: Mapped[str] = mapped_column(String(32))
    outcome: Mapped[str] = mapped_column(String(20), index=True)
    rule: Mapped[str] = mapped_column(String(64))
    reason: Mapped[str] = mapped_column(String(600))
    jurisdiction: Mapped[str | None] = mapped_column(String(8), nullable=True, index=True)
    country: Mapped[str | None] = mapped_column(String(2), nullable=True)
    tier: Mapped[int | None] = mapped_column(Integer, nullable=True)
    from_address: Mapped[str] = mapped_column(String(64))
    to_address: Mapped[str] = mapped_column(String(64))
    symbol: Mapped[str] = mapped_column(String(16))
    amount_units: Mapped[int] = mapped_column(Uint256)
    value_minor: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    currency: Mapped[str | None] = mapped_column(String(3), nullable=True)
    #: Comma-separated data a needs-information decision asks for.
    needs: Mapped[str] = mapped_column(String(300), default="")
    reference: Mapped[str | None] = mapped_column(String(255), nullable=True)
    #: Originator and beneficiary data that travelled with the movement (JSON), if any.
    travel: Mapped[str | None] = mapped_column(Text, nullable=True)
    rules_version: Mapped[str] = mapped_column(String(64))


class SanctionedAddress(Base):
    """An address on a sanctions list, as the 20 bytes it names."""

    __tablename__ = "compliance_sanctioned_addresses"

    list_name: Mapped[str] = mapped_column(String(32), primary_key=True)
    #: 40 lower-case hex digits: the account's 20 bytes, whatever form the list wrote.
    address: Mapped[str] = mapped_column(String(40), primary_key=True, index=True)
    #: As the list wrote it.
    written: Mapped[str] = mapped_column(String(120))
    entry: Mapped[str] = mapped_column(String(300), default="")
    reference: Mapped[str] = mapped_column(String(64), default="")
    asset: Mapped[str] = mapped_column(String(32), default="")


class SanctionsList(Base):
    """A loaded sanctions list: where it came from and when."""

    __tablename__ = "compliance_sanctions_lists"

    name: Mapped[str] = mapped_column(String(32), primary_key=True)
    source: Mapped[str] = mapped_column(String(500))
    sha256: Mapped[str] = mapped_column(String(64))
    addresses: Mapped[int] = mapped_column(Integer)
    skipped: Mapped[int] = mapped_column(Integer, default=0)
    loaded_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class Alert(Base):
    """Something an operator must look at: a sanctions hit, an issuer blacklist, a limit breach."""

    __tablename__ = "compliance_alerts"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    created_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), default=utcnow, index=True
    )
    kind: Mapped[str] = mapped_column(String(32))
    severity: Mapped[str] = mapped_column(String(8))
    user_id: Mapped[str | None] = mapped_column(String(32), nullable=True, index=True)
    decision_id: Mapped[str | None] = mapped_column(String(32), nullable=True)
    address: Mapped[str | None] = mapped_column(String(64), nullable=True)
    detail: Mapped[str] = mapped_column(String(600))
    acknowledged_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    acknowledged_by: Mapped[str | None] = mapped_column(String(320), nullable=True)


class TravelRuleRecord(Base):
    """Beneficiary data a user gave for an outside address, and the ownership proof if any."""

    __tablename__ = "compliance_travel_rule"
    __table_args__ = (UniqueConstraint("user_id", "address"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    user_id: Mapped[str] = mapped_column(String(32), index=True)
    #: The beneficiary's address, EIP-55 checksummed.
    address: Mapped[str] = mapped_column(String(42))
    #: ``self_hosted`` or ``hosted`` (an exchange or another provider holds it).
    wallet_type: Mapped[str] = mapped_column(String(16))
    provider_name: Mapped[str] = mapped_column(String(200), default="")
    beneficiary_name: Mapped[str] = mapped_column(String(200))
    beneficiary_is_originator: Mapped[bool] = mapped_column(Boolean, default=False)
    beneficiary_country: Mapped[str | None] = mapped_column(String(2), nullable=True)
    #: The EIP-191 message the address must sign, and until when it may.
    challenge: Mapped[str | None] = mapped_column(Text, nullable=True)
    challenge_expires_at: Mapped[datetime | None] = mapped_column(
        DateTime(timezone=True), nullable=True
    )
    proof_signature: Mapped[str | None] = mapped_column(String(200), nullable=True)
    proven_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
