"""Aliases: a phone number or e-mail address, verified with a one-time code, people pay you at.

An alias is the user's ``phone`` or ``email`` with its ``*_verified`` flag set: sign-in with a
provider that verified it sets it directly; otherwise (or to change it) the user proves it with a
six-digit code sent there. One verified alias belongs to one wallet: proving an alias another
user holds is refused only *after* the code is proven, so the alias form cannot be used to
probe who has an account.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Final

import phonenumbers
from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from seiwallet.accounts.errors import AliasInvalid, AliasTaken
from seiwallet.accounts.models import User, UserStatus
from seiwallet.accounts.notices import Notifier
from seiwallet.accounts.oidc import Clock
from seiwallet.accounts.recovery import CodeSent, Destination, OneTimeCodes
from seiwallet.accounts.sessions import SessionInfo
from seiwallet.db import SQLITE_BEGIN

PURPOSE: Final = "alias"
_WRITE: Final = {SQLITE_BEGIN: "IMMEDIATE"}


@dataclass(frozen=True)
class Alias:
    kind: str  # "email" | "phone"
    value: str


def normalise(kind: str, value: str, *, region: str = "HK") -> Alias:
    """An alias in its one stored form: lower-case e-mail, or a phone number in E.164."""
    text = value.strip()
    if kind == "email":
        local, at, domain = text.rpartition("@")
        if not at or not local or "." not in domain or any(c.isspace() for c in text):
            raise AliasInvalid(f"{value!r} is not an e-mail address")
        if len(text) > 320:
            raise AliasInvalid("an e-mail address is at most 320 characters")
        return Alias("email", text.lower())
    if kind == "phone":
        try:
            number = phonenumbers.parse(text, region)
        except phonenumbers.NumberParseException:
            number = None
        if number is None or not phonenumbers.is_valid_number(number):
            raise AliasInvalid(
                f"{value!r} is not a valid phone number: include the country code, e.g. +852"
            )
        return Alias(
            "phone", phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
        )
    raise AliasInvalid("an alias is a phone number or an e-mail address")


class AliasService:
    """Prove a phone number or e-mail address and make it the user's alias."""

    def __init__(
        self,
        sessions: sessionmaker[Session],
        codes: OneTimeCodes,
        notifier: Notifier,
        *,
        clock: Clock = time.time,
    ) -> None:
        self._sessions = sessions
        self._codes = codes
        self._notifier = notifier
        self._clock = clock

    def pending(self, session: SessionInfo) -> CodeSent | None:
        return self._codes.pending(session, PURPOSE)

    async def start(self, session: SessionInfo, kind: str, value: str) -> CodeSent:
        """Send a code to the alias (whether or not someone else holds it: no probing)."""
        alias = normalise(kind, value)
        channel = "email" if alias.kind == "email" else "sms"
        return await self._codes.send(
            session,
            PURPOSE,
            Destination(channel, alias.value),
            "Your seiwallet verification code",
            "Your code to receive payments at this address is {code}. "
            "It expires in {minutes} minutes. If you did not ask for it, ignore this message.",
        )

    def verify(self, session: SessionInfo, code: str) -> Alias:
        """Check the code; the proven address becomes the user's alias."""
        destination = self._codes.check(session, PURPOSE, code)
        alias = Alias("email" if destination.channel == "email" else "phone", destination.address)
        column, verified = (
            (User.email, User.email_verified)
            if alias.kind == "email"
            else (User.phone, User.phone_verified)
        )
        with self._sessions.begin() as db:
            db.connection(execution_options=_WRITE)
            holder = db.scalars(
                select(User.id).where(
                    column == alias.value,
                    verified.is_(True),
                    User.status == UserStatus.ACTIVE,
                    User.id != session.user_id,
                )
            ).first()
            if holder is not None:
                raise AliasTaken
            values = (
                {"email": alias.value, "email_verified": True}
                if alias.kind == "email"
                else {"phone": alias.value, "phone_verified": True}
            )
            db.execute(
                update(User)
                .where(User.id == session.user_id)
                .values(**values)
                .execution_options(synchronize_session=False)
            )
        return alias
