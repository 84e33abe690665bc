"""Telling people what happened to their account: notices on every device, and e-mail.

Security events (a new passkey, a recovery started, a device removed) are recorded as *notices*
the app shows on all of the user's devices, and mailed to their verified address. Messages leave
through a :class:`Mailer`: the development mailbox on ``local`` (a page lists what it caught), or
SMTP in production. A failing mailer never undoes the event it reports: the notice is kept and
the failure logged.
"""

from __future__ import annotations

import asyncio
import json
import logging
import smtplib
import ssl
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from email.message import EmailMessage
from typing import Any, Final, Protocol

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from seiwallet.accounts.errors import ChannelUnavailable
from seiwallet.accounts.models import MailboxMessage, Notice, User
from seiwallet.accounts.oidc import Clock
from seiwallet.db import as_utc

log = logging.getLogger(__name__)

#: What each event says in an e-mail (the app renders notices in the reader's language).
EMAIL_TEXT: Final[dict[str, tuple[str, str]]] = {
    "wallet.created": ("Your wallet is ready", "Your seiwallet wallet was created."),
    "passkey.added": (
        "A passkey was added to your wallet",
        "The passkey “{label}” can now approve payments from your wallet.",
    ),
    "recovery.code_sent": (
        "Someone is recovering your wallet",
        "A recovery code was requested for your wallet. If this was not you, open the wallet "
        "app on one of your devices and check Devices.",
    ),
    "recovery.passkey_added": (
        "A new passkey was added by account recovery",
        "The passkey “{label}” was added by account recovery. It can approve payments from "
        "{active_from} (UTC). If this was not you, cancel it now from Devices on any of your "
        "devices.",
    ),
    "authenticator.removed": (
        "A device was removed from your wallet",
        "“{label}” can no longer approve payments from your wallet.",
    ),
    "device.added": (
        "A device was signed in to your wallet",
        "The device “{label}” was added to your wallet.",
    ),
}


class Mailer(Protocol):
    """Where one-time codes and security e-mails go."""

    #: The channels it can deliver ("email", "sms"); a code is never made for another.
    channels: frozenset[str]

    async def send(self, channel: str, to: str, subject: str, body: str) -> None: ...


@dataclass(frozen=True)
class CaughtMessage:
    channel: str
    to: str
    subject: str
    body: str
    created_at: datetime


class DevMailbox:
    """Catches every message in the database for the ``/dev/mailbox`` page (``local`` only)."""

    channels: frozenset[str] = frozenset({"email", "sms"})

    def __init__(self, sessions: sessionmaker[Session], clock: Clock = time.time) -> None:
        self._sessions = sessions
        self._clock = clock

    async def send(self, channel: str, to: str, subject: str, body: str) -> None:
        await asyncio.to_thread(self._store, channel, to, subject, body)

    def _store(self, channel: str, to: str, subject: str, body: str) -> None:
        with self._sessions.begin() as db:
            db.add(
                MailboxMessage(
                    id=uuid.uuid4().hex,
                    channel=channel,
                    recipient=to,
                    subject=subject[:200],
                    body=body,
                    created_at=datetime.fromtimestamp(self._clock(), UTC),
                )
            )

    def messages(self, limit: int = 50, recipient: str | None = None) -> list[CaughtMessage]:
        with self._sessions() as db:
            query = select(MailboxMessage).order_by(MailboxMessage.created_at.desc())
            if recipient is not None:
                query = query.where(MailboxMessage.recipient == recipient)
            return [
                CaughtMessage(
                    m.channel,
                    m.recipient,
                    m.subject,
                    m.body,
                    as_utc(m.created_at),
                )
                for m in db.scalars(query.limit(limit))
            ]


class SmtpMailer:
    """E-mail over SMTP with STARTTLS. No SMS gateway yet: a code for a phone number is refused
    with :class:`ChannelUnavailable` before it is made."""

    def __init__(
        self,
        host: str,
        port: int,
        sender: str,
        *,
        username: str | None = None,
        password: str | None = None,
        timeout: float = 10.0,
    ) -> None:
        self._host, self._port, self._sender = host, port, sender
        self._username, self._password = username, password
        self._timeout = timeout

    channels: frozenset[str] = frozenset({"email"})

    async def send(self, channel: str, to: str, subject: str, body: str) -> None:
        if channel not in self.channels:
            raise ChannelUnavailable(channel)
        await asyncio.to_thread(self._send, to, subject, body)

    def _send(self, to: str, subject: str, body: str) -> None:
        message = EmailMessage()
        message["From"], message["To"], message["Subject"] = self._sender, to, subject
        message.set_content(body)
        with smtplib.SMTP(self._host, self._port, timeout=self._timeout) as smtp:
            smtp.starttls(context=ssl.create_default_context())
            if self._username:
                smtp.login(self._username, self._password or "")
            smtp.send_message(message)


@dataclass(frozen=True)
class NoticeView:
    event: str
    params: dict[str, Any]
    security: bool
    created_at: datetime


class Notifier:
    """Record a notice for all of a user's devices and mail it to their verified address."""

    def __init__(
        self, sessions: sessionmaker[Session], mailer: Mailer, clock: Clock = time.time
    ) -> None:
        self._sessions = sessions
        self._mailer = mailer
        self._clock = clock

    async def notify(
        self, user_id: str, event: str, params: dict[str, Any] | None = None, *, security: bool
    ) -> None:
        params = params or {}
        email = await asyncio.to_thread(self._record, user_id, event, params, security)
        text = EMAIL_TEXT.get(event)
        if email is None or text is None:
            return
        subject, body = text
        try:
            await self._mailer.send("email", email, subject, body.format_map(_Lenient(params)))
        except Exception:  # a notice must not undo what it reports
            log.exception("could not mail the %s notice to user %s", event, user_id)

    def _record(
        self, user_id: str, event: str, params: dict[str, Any], security: bool
    ) -> str | None:
        with self._sessions.begin() as db:
            db.add(
                Notice(
                    id=uuid.uuid4().hex,
                    user_id=user_id,
                    event=event,
                    params=json.dumps(params, sort_keys=True, default=str),
                    security=security,
                    created_at=datetime.fromtimestamp(self._clock(), UTC),
                )
            )
            user = db.get(User, user_id)
            if user is None or not user.email or not user.email_verified:
                return None
            return user.email

    def notices(self, user_id: str, limit: int = 20) -> list[NoticeView]:
        with self._sessions() as db:
            rows = db.scalars(
                select(Notice)
                .where(Notice.user_id == user_id)
                .order_by(Notice.created_at.desc())
                .limit(limit)
            ).all()
            return [
                NoticeView(
                    r.event,
                    json.loads(r.params),
                    r.security,
                    as_utc(r.created_at),
                )
                for r in rows
            ]


class _Lenient(dict[str, Any]):
    def __missing__(self, key: str) -> str:
        return ""
