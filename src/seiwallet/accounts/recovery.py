"""Recovering a wallet without a seed phrase: the second factor before a new passkey.

A person who lost their phone signs in again with their account. That alone proves little (the
account may be what was stolen), so before a new passkey may even be registered they prove a
second factor: a six-digit code sent to the verified e-mail address or phone number. Codes are
kept only as an HMAC, live ten minutes, are burnt after five wrong tries, and at most five are
sent per hour. A right code opens a 15-minute recovery window on *this session* only, in which it
may enrol one passkey; the signer then holds that passkey under its time-lock (48 hours by
default) while the wallet's other devices are told and may cancel it.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import secrets
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Final

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session, sessionmaker

from seiwallet.accounts.errors import (
    ChannelUnavailable,
    OneTimeCodeSpent,
    OneTimeCodeWrong,
    RecoveryError,
    RecoveryUnavailable,
    TooManyCodes,
)
from seiwallet.accounts.models import OneTimeCode
from seiwallet.accounts.notices import Mailer, Notifier
from seiwallet.accounts.oidc import Clock
from seiwallet.accounts.sessions import SessionInfo, SessionService
from seiwallet.db import SQLITE_BEGIN, as_utc

log = logging.getLogger(__name__)

PURPOSE: Final = "recovery"
#: How long a proven second factor lets this session enrol a passkey.
RECOVERY_WINDOW: Final = timedelta(minutes=15)
_WRITE: Final = {SQLITE_BEGIN: "IMMEDIATE"}


def mask(channel: str, destination: str) -> str:
    """What the page shows of where the code went: ``a•••@example.com``, ``+852 •••• 78``."""
    if channel == "email":
        local, _, domain = destination.partition("@")
        return f"{local[:1]}•••@{domain}"
    return f"{destination[:4]} •••• {destination[-2:]}"


@dataclass(frozen=True)
class Destination:
    channel: str
    address: str

    @property
    def masked(self) -> str:
        return mask(self.channel, self.address)


@dataclass(frozen=True)
class CodeSent:
    destination: Destination
    expires_at: datetime
    attempts_left: int


class OneTimeCodes:
    """Six-digit codes for one purpose, sent through the mailer, checked once.

    Kept as an HMAC with the app's secret; a session's new code retires its previous one; wrong
    tries are counted (committed before the error is reported) and burn the code at the limit;
    at most ``per_hour`` codes of a purpose are sent to one user in an hour.
    """

    def __init__(
        self,
        sessions: sessionmaker[Session],
        mailer: Mailer,
        secret: bytes,
        *,
        code_ttl: timedelta = timedelta(minutes=10),
        max_attempts: int = 5,
        per_hour: int = 5,
        clock: Clock = time.time,
    ) -> None:
        self._sessions = sessions
        self._mailer = mailer
        self._secret = secret
        self.ttl = code_ttl
        self.max_attempts = max_attempts
        self._per_hour = per_hour
        self._clock = clock

    def _now(self) -> datetime:
        return datetime.fromtimestamp(self._clock(), UTC)

    def _hash(self, purpose: str, code_id: str, code: str) -> str:
        message = f"{purpose}\x00{code_id}\x00{code}".encode()
        return hmac.new(self._secret, message, hashlib.sha256).hexdigest()

    @staticmethod
    def _latest(db: Session, session_id: str, purpose: str) -> OneTimeCode | None:
        return db.scalars(
            select(OneTimeCode)
            .where(OneTimeCode.session_id == session_id, OneTimeCode.purpose == purpose)
            .order_by(OneTimeCode.created_at.desc())
            .limit(1)
        ).first()

    def pending(self, session: SessionInfo, purpose: str) -> CodeSent | None:
        """The live code of this purpose the session is waiting to enter, if any."""
        with self._sessions() as db:
            row = self._latest(db, session.id, purpose)
            if row is None or row.consumed_at is not None or as_utc(row.expires_at) <= self._now():
                return None
            return CodeSent(
                Destination(row.channel, row.destination),
                as_utc(row.expires_at),
                self.max_attempts - row.attempts,
            )

    async def send(
        self, session: SessionInfo, purpose: str, destination: Destination, subject: str, body: str
    ) -> CodeSent:
        """Send a fresh code (``{code}`` and ``{minutes}`` in ``body`` are filled in)."""
        if destination.channel not in self._mailer.channels:
            # Said before a code is made: it would count against the hourly limit unsent.
            raise ChannelUnavailable(destination.channel)
        code = f"{secrets.randbelow(10**6):06d}"
        now = await asyncio.to_thread(self._store, session, purpose, destination, code)
        minutes = int(self.ttl.total_seconds() // 60)
        await self._mailer.send(
            destination.channel,
            destination.address,
            subject,
            body.format(code=code, minutes=minutes),
        )
        return CodeSent(destination, now + self.ttl, self.max_attempts)

    def _store(
        self, session: SessionInfo, purpose: str, destination: Destination, code: str
    ) -> datetime:
        """Keep the code's MAC (retiring the session's previous code); when it was made."""
        code_id = uuid.uuid4().hex
        now = self._now()
        with self._sessions.begin() as db:
            db.connection(execution_options=_WRITE)
            recent = (
                OneTimeCode.user_id == session.user_id,
                OneTimeCode.purpose == purpose,
                OneTimeCode.created_at > now - timedelta(hours=1),
            )
            sent = db.scalar(select(func.count()).select_from(OneTimeCode).where(*recent))
            if (sent or 0) >= self._per_hour:
                oldest = db.scalar(select(func.min(OneTimeCode.created_at)).where(*recent))
                wait = (as_utc(oldest) + timedelta(hours=1) - now) if oldest else timedelta(hours=1)
                log.warning("%s codes rate-limited for user %s", purpose, session.user_id)
                raise TooManyCodes(int(wait.total_seconds()))
            db.execute(
                update(OneTimeCode)
                .where(
                    OneTimeCode.session_id == session.id,
                    OneTimeCode.purpose == purpose,
                    OneTimeCode.consumed_at.is_(None),
                )
                .values(consumed_at=now)
                .execution_options(synchronize_session=False)
            )
            db.add(
                OneTimeCode(
                    id=code_id,
                    user_id=session.user_id,
                    session_id=session.id,
                    purpose=purpose,
                    channel=destination.channel,
                    destination=destination.address,
                    code_hash=self._hash(purpose, code_id, code),
                    attempts=0,
                    created_at=now,
                    expires_at=now + self.ttl,
                )
            )
        return now

    def check(self, session: SessionInfo, purpose: str, code: str) -> Destination:
        """Check the session's code of this purpose; it is used up either way at the limit."""
        code = "".join(code.split())
        now = self._now()
        # A wrong try is committed before it is reported: the count must survive the error.
        failure: RecoveryError | None = None
        with self._sessions.begin() as db:
            db.connection(execution_options=_WRITE)
            row = self._latest(db, session.id, purpose)
            if row is None or row.consumed_at is not None or as_utc(row.expires_at) <= now:
                raise OneTimeCodeSpent
            if not (
                len(code) == 6 and code.isascii() and code.isdigit()
            ) or not hmac.compare_digest(self._hash(purpose, row.id, code), row.code_hash):
                row.attempts += 1
                left = self.max_attempts - row.attempts
                if left <= 0:
                    row.consumed_at = now  # burnt
                log.warning(
                    "wrong %s code for user %s (%d tries left)",
                    purpose,
                    session.user_id,
                    max(left, 0),
                )
                failure = OneTimeCodeWrong(left) if left > 0 else OneTimeCodeSpent()
            else:
                row.consumed_at = now
            destination = Destination(row.channel, row.destination)
        if failure is not None:
            raise failure
        return destination


class RecoveryService:
    """Send and check recovery codes; open the session's recovery window."""

    def __init__(
        self,
        codes: OneTimeCodes,
        session_service: SessionService,
        notifier: Notifier,
        *,
        clock: Clock = time.time,
    ) -> None:
        self.codes = codes
        self._session_service = session_service
        self._notifier = notifier
        self._clock = clock

    @property
    def max_attempts(self) -> int:
        return self.codes.max_attempts

    @staticmethod
    def destination(session: SessionInfo) -> Destination | None:
        """Where a code can go: the verified e-mail first, else the verified phone."""
        if session.email and session.email_verified:
            return Destination("email", session.email)
        if session.phone and session.phone_verified:
            return Destination("sms", session.phone)
        return None

    def pending(self, session: SessionInfo) -> CodeSent | None:
        """The recovery code this session is waiting to enter, if one is live."""
        if self.destination(session) is None:
            return None
        return self.codes.pending(session, PURPOSE)

    async def send_code(self, session: SessionInfo) -> CodeSent:
        """Send a fresh code (the previous one of this session stops working)."""
        destination = self.destination(session)
        if destination is None:
            raise RecoveryUnavailable
        sent = await self.codes.send(
            session,
            PURPOSE,
            destination,
            "Your seiwallet recovery code",
            "Your recovery code is {code}. It expires in {minutes} minutes.\n"
            "Never share it: seiwallet staff will never ask for it. If you did not ask to "
            "recover your wallet, someone may have your account password — change it.",
        )
        await self._notifier.notify(session.user_id, "recovery.code_sent", {}, security=True)
        return sent

    def verify(self, session: SessionInfo, code: str) -> datetime:
        """Check the code; on success open the recovery window and return when it closes."""
        self.codes.check(session, PURPOSE, code)
        until = datetime.fromtimestamp(self._clock(), UTC) + RECOVERY_WINDOW
        self._session_service.allow_recovery(session.id, until)
        return until
