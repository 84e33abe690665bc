"""Tables of the accounts domain: users, identities, sessions, authenticators, recovery, notices.

Every row that belongs to a person carries its ``user_id`` (the shard key, per ARCHITECTURE.md).
A sign-in in progress belongs to nobody yet; it is keyed by the SHA-256 of its ``state``, so a
copy of the database cannot be used to finish someone else's sign-in.
"""

from __future__ import annotations

import enum
import uuid
from datetime import UTC, datetime

from sqlalchemy import (
    Boolean,
    DateTime,
    Enum,
    ForeignKey,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
)
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
    #: The same wallet's Sei (bech32) address, from the signer (it needs the public key).
    wallet_sei_address: Mapped[str | None] = mapped_column(String(64), nullable=True)
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


def _enum(kind: type[enum.StrEnum], length: int = 16) -> Enum:
    return Enum(
        kind, native_enum=False, length=length, values_callable=lambda e: [m.value for m in e]
    )


class SessionKind(enum.StrEnum):
    #: A browser: an HttpOnly cookie, CSRF-checked forms.
    WEB = "web"
    #: The CLI or an SDK: a bearer token.
    API = "api"


class UserSession(Base):
    """A signed-in browser or API client; the bearer secret is kept only as its SHA-256."""

    __tablename__ = "user_sessions"

    #: Public id, shown in "devices & sessions" and used to revoke.
    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id"), index=True)
    kind: Mapped[SessionKind] = mapped_column(_enum(SessionKind, 8))
    label: Mapped[str] = mapped_column(String(200), default="")
    #: The device key an API token was issued to (``seiwallet login``).
    authenticator_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    last_seen_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    #: Until when this session may enrol a passkey by recovery (second factor proven).
    recovery_until: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


class AuthenticatorKindName(enum.StrEnum):
    PASSKEY = "passkey"
    DEVICE = "device"


class Enrolment(enum.StrEnum):
    """How an authenticator joined the wallet."""

    #: The wallet's first authenticator, active at once.
    FIRST = "first"
    #: Approved by an active authenticator of the wallet, active at once.
    APPROVED = "approved"
    #: Account recovery without the wallet's approval: active after the time-lock.
    RECOVERY = "recovery"
    #: The user's passkey on *another* wallet (a merchant's payout wallet), approving only
    #: within the scope that wallet's owner approved (see ``UserAuthenticator.wallet_id``).
    DELEGATED = "delegated"


class UserAuthenticator(Base):
    """A passkey or device key this app registered with the signer for a user's wallet.

    The signer is the authority (it alone decides what may approve); this row is what the app
    shows and needs for WebAuthn ceremonies (credential ids, transports).
    """

    __tablename__ = "user_authenticators"

    #: The authenticator's id in the signer.
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id"), index=True)
    #: The wallet it approves for: ``None`` for the user's own; else another's, as a delegate
    #: within a scope (a cashier's passkey approving refunds from the merchant's payout wallet).
    wallet_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    kind: Mapped[AuthenticatorKindName] = mapped_column(_enum(AuthenticatorKindName, 8))
    label: Mapped[str] = mapped_column(String(100), default="")
    #: WebAuthn credential id (base64url); a device key's is the SHA-256 of its public key.
    credential_id: Mapped[str] = mapped_column(String(1400), unique=True)
    transports: Mapped[str] = mapped_column(String(200), default="")
    enrolment: Mapped[Enrolment] = mapped_column(_enum(Enrolment, 10))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    active_from: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    last_used_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


class CeremonyPurpose(enum.StrEnum):
    REGISTER = "register"
    APPROVE = "approve"


class WebAuthnCeremony(Base):
    """A WebAuthn challenge handed to a browser, answered at most once before it expires."""

    __tablename__ = "webauthn_ceremonies"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id"), index=True)
    session_id: Mapped[str] = mapped_column(String(32))
    purpose: Mapped[CeremonyPurpose] = mapped_column(_enum(CeremonyPurpose, 10))
    challenge: Mapped[bytes] = mapped_column(LargeBinary(64))
    #: What an approval approves: the action and its canonical JSON document.
    action: Mapped[str | None] = mapped_column(String(64), nullable=True)
    document: Mapped[str | None] = mapped_column(Text, nullable=True)
    #: The signer approval's nonce and expiry (unix seconds) the challenge commits to.
    nonce: Mapped[bytes | None] = mapped_column(LargeBinary(32), nullable=True)
    approval_expires_at: Mapped[int | None] = mapped_column(Integer, nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)
    consumed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


class OneTimeCode(Base):
    """A one-time code sent to a user's verified e-mail or phone; only its HMAC is kept."""

    __tablename__ = "one_time_codes"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id"), index=True)
    session_id: Mapped[str] = mapped_column(String(32))
    purpose: Mapped[str] = mapped_column(String(32))
    channel: Mapped[str] = mapped_column(String(8))
    destination: Mapped[str] = mapped_column(String(320))
    code_hash: Mapped[str] = mapped_column(String(64))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), default=utcnow, index=True
    )
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    #: Set when the code was entered right, or burnt by too many wrong tries.
    consumed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


class Notice(Base):
    """Something the user must know (a new device, a recovery): shown on every device.

    Stored as an event name and its parameters, so each device shows it in its own language.
    """

    __tablename__ = "notices"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id"), index=True)
    event: Mapped[str] = mapped_column(String(64))
    params: Mapped[str] = mapped_column(Text, default="{}")
    security: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), default=utcnow, index=True
    )


class MailboxMessage(Base):
    """A message the development mailbox caught instead of sending it (``local`` only)."""

    __tablename__ = "dev_mailbox"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    channel: Mapped[str] = mapped_column(String(8))
    recipient: Mapped[str] = mapped_column(String(320), index=True)
    subject: Mapped[str] = mapped_column(String(200))
    body: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class DeviceLoginStatus(enum.StrEnum):
    PENDING = "pending"
    APPROVED = "approved"
    DENIED = "denied"
    #: The CLI collected its token.
    DONE = "done"


class DeviceLogin(Base):
    """``seiwallet login`` in progress (RFC 8628 device authorization, against our own API).

    The CLI holds ``device_code`` (kept as its SHA-256) and shows ``user_code``; the person
    approves in the wallet app, with a passkey, the device key the CLI generated.
    """

    __tablename__ = "device_logins"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    device_code_hash: Mapped[str] = mapped_column(String(64), unique=True)
    user_code: Mapped[str] = mapped_column(String(16), unique=True)
    public_key: Mapped[str] = mapped_column(String(200))
    label: Mapped[str] = mapped_column(String(100))
    status: Mapped[DeviceLoginStatus] = mapped_column(_enum(DeviceLoginStatus, 10))
    user_id: Mapped[str | None] = mapped_column(ForeignKey("users.id"), nullable=True)
    authenticator_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)
    last_polled_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
