"""Tables of the accounts domain: users, their sign-in identities, sign-ins in progress.

Every row that belongs to a person carries its ``user_id`` (the shard key, per ARCHITECTURE.md).
A sign-in in progress belongs to nobody yet; it is keyed by the SHA-256 of its ``state``, so a
copy of the database cannot be used to finish someone else's sign-in.
"""

from __future__ import annotations

import enum
import uuid
from datetime import UTC, datetime

from sqlalchemy import Boolean, DateTime, Enum, ForeignKey, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from seiwallet.db.base import Base


def utcnow() -> datetime:
    return datetime.now(UTC)


def new_user_id() -> str:
    """A fresh user id; the user's wallet in the signer has the same id."""
    return uuid.uuid4().hex


class UserStatus(enum.StrEnum):
    """Lifecycle of a user row: see ``USER_TRANSITIONS``."""

    #: Reserved at first sign-in while the signer creates the wallet; never signed in as.
    PROVISIONING = "provisioning"
    #: The wallet exists and its address is recorded.
    ACTIVE = "active"


USER_TRANSITIONS: dict[UserStatus, frozenset[UserStatus]] = {
    UserStatus.PROVISIONING: frozenset({UserStatus.ACTIVE}),
    UserStatus.ACTIVE: frozenset(),
}


class User(Base):
    """A person with a wallet; ``id`` is also the wallet's id in the signer."""

    __tablename__ = "users"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_user_id)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    display_name: Mapped[str | None] = mapped_column(String(200), nullable=True)
    email: Mapped[str | None] = mapped_column(String(320), nullable=True)
    email_verified: Mapped[bool] = mapped_column(Boolean, default=False)
    phone: Mapped[str | None] = mapped_column(String(32), nullable=True)
    phone_verified: Mapped[bool] = mapped_column(Boolean, default=False)
    #: Set with ``wallet_address`` when the signer has created the wallet (status ACTIVE).
    wallet_id: Mapped[str | None] = mapped_column(String(64), nullable=True, unique=True)
    wallet_address: Mapped[str | None] = mapped_column(String(42), nullable=True)
    status: Mapped[UserStatus] = mapped_column(
        Enum(
            UserStatus,
            native_enum=False,
            length=16,
            values_callable=lambda e: [m.value for m in e],
        )
    )


class UserIdentity(Base):
    """An OpenID Connect account a user signs in with; ``(issuer, subject)`` names it."""

    __tablename__ = "user_identities"
    __table_args__ = (UniqueConstraint("issuer", "subject"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=lambda: uuid.uuid4().hex)
    issuer: Mapped[str] = mapped_column(String(255))
    #: OIDC Core §2: at most 255 ASCII characters.
    subject: Mapped[str] = mapped_column(String(255))
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id"), index=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    last_sign_in_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


class SignInRequest(Base):
    """One OpenID Connect sign-in in progress, usable once before it expires."""

    __tablename__ = "sign_in_requests"

    #: Hex SHA-256 of the ``state`` sent to the provider; the state itself is not kept.
    state_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    provider: Mapped[str] = mapped_column(String(64))
    nonce: Mapped[str] = mapped_column(String(128))
    code_verifier: Mapped[str] = mapped_column(String(128))
    #: A path on this site to return to afterwards (never an absolute URL: no open redirect).
    redirect_after: Mapped[str | None] = mapped_column(String(2000), nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)
    consumed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
