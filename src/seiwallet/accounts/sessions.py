"""Sessions: who is signed in, in which browser or API client, until when; listing and revoking.

A session is a random 256-bit secret handed to the client once: a browser keeps it in an
HttpOnly cookie, the CLI and SDKs send it as a bearer token. The database keeps only its SHA-256,
so a copy of the table signs nobody in. Browser forms are protected by a CSRF token derived from
the session (HMAC with the app's secret), so it needs no storage and dies with the session.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import secrets
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Final

from sqlalchemy import bindparam, select, update
from sqlalchemy.orm import Session, sessionmaker

from seiwallet.accounts.errors import NotSignedIn, SessionUnknown
from seiwallet.accounts.models import SessionKind, User, UserSession, UserStatus
from seiwallet.accounts.oidc import Clock
from seiwallet.db import as_utc, offload

#: Prefix of every session secret: recognisable in a leaked log, so it can be revoked.
TOKEN_PREFIX: Final = "sws_"  # noqa: S105 - a prefix, not a secret
#: Refresh ``last_seen_at`` at most this often (a write per request would be wasteful).
_SEEN_GRANULARITY: Final = timedelta(minutes=1)


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True)
class SessionInfo:
    """A live session and the user it belongs to."""

    id: str
    kind: SessionKind
    label: str
    user_id: str
    wallet_id: str
    wallet_address: str
    wallet_sei_address: str
    display_name: str | None
    email: str | None
    email_verified: bool
    phone: str | None
    phone_verified: bool
    authenticator_id: str | None
    created_at: datetime
    last_seen_at: datetime
    expires_at: datetime
    recovery_until: datetime | None


@dataclass(frozen=True)
class SessionListing:
    id: str
    kind: SessionKind
    label: str
    created_at: datetime
    last_seen_at: datetime
    expires_at: datetime


#: Every request's look-up, built once (making a statement, its WHERE clause and cache key, on
#: each call cost about as much as running it), of the columns it needs, run on the session's
#: connection (loading two whole ORM objects cost about as much again as the query).
_BY_TOKEN = (
    select(
        UserSession.id,
        UserSession.kind,
        UserSession.label,
        UserSession.authenticator_id,
        UserSession.revoked_at,
        UserSession.created_at,
        UserSession.last_seen_at,
        UserSession.expires_at,
        UserSession.recovery_until,
        User.id.label("user_id"),
        User.status,
        User.wallet_id,
        User.wallet_address,
        User.wallet_sei_address,
        User.display_name,
        User.email,
        User.email_verified,
        User.phone,
        User.phone_verified,
    )
    .join(User, User.id == UserSession.user_id)
    .where(UserSession.token_hash == bindparam("token_hash"))
)


class SessionService:
    """Open, check, list and revoke sessions."""

    def __init__(
        self,
        sessions: sessionmaker[Session],
        secret: bytes,
        *,
        web_lifetime: timedelta = timedelta(days=30),
        api_lifetime: timedelta = timedelta(days=90),
        clock: Clock = time.time,
    ) -> None:
        if len(secret) < 32:
            raise ValueError("the session secret must be at least 32 bytes")
        self._sessions = sessions
        self._secret = secret
        self._lifetime = {SessionKind.WEB: web_lifetime, SessionKind.API: api_lifetime}
        self._clock = clock

    def _now(self) -> datetime:
        return datetime.fromtimestamp(self._clock(), UTC)

    def open(
        self,
        user_id: str,
        kind: SessionKind,
        *,
        label: str = "",
        authenticator_id: str | None = None,
    ) -> tuple[str, str]:
        """A new session for ``user_id``: ``(session id, secret token)``; shown once."""
        token = TOKEN_PREFIX + secrets.token_urlsafe(32)
        session_id = uuid.uuid4().hex
        now = self._now()
        with self._sessions.begin() as db:
            db.add(
                UserSession(
                    id=session_id,
                    token_hash=token_hash(token),
                    user_id=user_id,
                    kind=kind,
                    label=label[:200],
                    authenticator_id=authenticator_id,
                    created_at=now,
                    last_seen_at=now,
                    expires_at=now + self._lifetime[kind],
                )
            )
        return session_id, token

    def authenticate(self, token: str | None, kind: SessionKind | None = None) -> SessionInfo:
        """The live session ``token`` opens; :class:`NotSignedIn` otherwise (never says why)."""
        info = self._live(token, kind)
        if self._stale(info):
            self._seen(info)
        return info

    async def authenticate_on_loop(
        self, token: str | None, kind: SessionKind | None = None
    ) -> SessionInfo:
        """:meth:`authenticate` from the event loop: the read where ``db.offload`` runs reads
        (in place on a SQLite file), the once-a-minute write in a thread."""
        info = await offload.read(self._sessions, self._live, token, kind)
        if self._stale(info):
            await asyncio.to_thread(self._seen, info)
        return info

    def _stale(self, info: SessionInfo) -> bool:
        """Whether the session's use is to be recorded: at most once a minute."""
        return self._now() - info.last_seen_at >= _SEEN_GRANULARITY

    def _live(self, token: str | None, kind: SessionKind | None) -> SessionInfo:
        """The session's check: reads only."""
        if not token or not token.startswith(TOKEN_PREFIX) or len(token) > 100:
            raise NotSignedIn
        now = self._now()
        with self._sessions() as db:
            row = (
                db.connection().execute(_BY_TOKEN, {"token_hash": token_hash(token)}).one_or_none()
            )
        if (
            row is None
            or row.revoked_at is not None
            or as_utc(row.expires_at) <= now
            or (kind is not None and row.kind is not kind)
            or row.status is not UserStatus.ACTIVE
            or row.wallet_id is None
            or row.wallet_address is None
        ):
            raise NotSignedIn
        return SessionInfo(
            id=row.id,
            kind=row.kind,
            label=row.label,
            user_id=row.user_id,
            wallet_id=row.wallet_id,
            wallet_address=row.wallet_address,
            wallet_sei_address=row.wallet_sei_address or "",
            display_name=row.display_name,
            email=row.email,
            email_verified=row.email_verified,
            phone=row.phone,
            phone_verified=row.phone_verified,
            authenticator_id=row.authenticator_id,
            created_at=as_utc(row.created_at),
            last_seen_at=as_utc(row.last_seen_at),
            expires_at=as_utc(row.expires_at),
            recovery_until=as_utc(row.recovery_until) if row.recovery_until else None,
        )

    def _seen(self, info: SessionInfo) -> None:
        """Record that the session was used (the caller checked :meth:`_stale`)."""
        with self._sessions.begin() as db:
            db.execute(
                update(UserSession)
                .where(UserSession.id == info.id)
                .values(last_seen_at=self._now())
                .execution_options(synchronize_session=False)
            )

    def list(self, user_id: str) -> list[SessionListing]:
        """The user's live sessions, most recently used first."""
        now = self._now()
        with self._sessions() as db:
            rows = db.scalars(
                select(UserSession)
                .where(UserSession.user_id == user_id, UserSession.revoked_at.is_(None))
                .order_by(UserSession.last_seen_at.desc())
            ).all()
            return [
                SessionListing(
                    id=r.id,
                    kind=r.kind,
                    label=r.label,
                    created_at=as_utc(r.created_at),
                    last_seen_at=as_utc(r.last_seen_at),
                    expires_at=as_utc(r.expires_at),
                )
                for r in rows
                if as_utc(r.expires_at) > now
            ]

    def revoke(self, user_id: str, session_id: str) -> None:
        """End one of the user's sessions; another user's session is as unknown as a bad id."""
        with self._sessions.begin() as db:
            done = db.execute(
                update(UserSession)
                .where(UserSession.id == session_id, UserSession.user_id == user_id)
                .where(UserSession.revoked_at.is_(None))
                .values(revoked_at=self._now())
                .execution_options(synchronize_session=False)
            )
            if done.rowcount != 1:  # type: ignore[attr-defined]
                raise SessionUnknown

    def revoke_for_authenticator(self, user_id: str, authenticator_id: str) -> int:
        """End the API sessions of a device key that was removed; returns how many."""
        with self._sessions.begin() as db:
            done = db.execute(
                update(UserSession)
                .where(
                    UserSession.user_id == user_id,
                    UserSession.authenticator_id == authenticator_id,
                    UserSession.revoked_at.is_(None),
                )
                .values(revoked_at=self._now())
                .execution_options(synchronize_session=False)
            )
            return int(done.rowcount)  # type: ignore[attr-defined]

    def allow_recovery(self, session_id: str, until: datetime) -> None:
        """Let this session enrol a passkey by recovery until ``until`` (second factor proven)."""
        with self._sessions.begin() as db:
            db.execute(
                update(UserSession)
                .where(UserSession.id == session_id)
                .values(recovery_until=until)
                .execution_options(synchronize_session=False)
            )

    def end_recovery(self, session_id: str) -> None:
        """The recovery window is used up (its passkey is enrolled)."""
        with self._sessions.begin() as db:
            db.execute(
                update(UserSession)
                .where(UserSession.id == session_id)
                .values(recovery_until=None)
                .execution_options(synchronize_session=False)
            )

    # -- CSRF ----------------------------------------------------------------------------------
    def csrf_token(self, session_id: str) -> str:
        """The CSRF token of a browser session: stable for its life, useless for any other."""
        mac = hmac.new(self._secret, b"csrf\x00" + session_id.encode(), hashlib.sha256)
        return mac.hexdigest()

    def check_csrf(self, session_id: str, presented: str | None) -> bool:
        return presented is not None and hmac.compare_digest(self.csrf_token(session_id), presented)
