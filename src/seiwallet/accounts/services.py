"""Sign-in use cases: keep each sign-in single-use, and give a first sign-in its wallet.

A first sign-in must end with exactly one user, one identity and one signer wallet, whatever
fails or races. The wallet's id in the signer is the user's id, so it is chosen (and committed)
before the signer is asked, as a *reservation*: a ``users`` row in status ``provisioning`` with
its identity. Then:

1. ``create_wallet(user id)`` on the signer. On success the reservation becomes ``active`` with
   the wallet's address, and only then is the user shown anything.
2. If the signer refuses or cannot be reached, the attempt that made the reservation deletes it:
   no user is left behind. Should the signer have created the wallet after all (a timeout after
   it committed), that wallet is an orphan whose address nobody ever saw, so nothing is at risk.
3. If the process dies between the signer's answer and our commit, the reservation survives;
   the person's next sign-in finds it and asks the signer again with the *same* id; the signer's
   ``create_wallet`` is idempotent and answers with the existing wallet. The same path serves
   two concurrent first sign-ins
   of one person: the unique ``(issuer, subject)`` lets one reservation in, the other attempt
   resumes it, and whichever activates it first reports ``created``.

Database work runs in worker threads so a sign-in never blocks the event loop.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Final

import phonenumbers
from sqlalchemy import delete, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from seiwallet.accounts.errors import (
    RedirectRefused,
    SignInInterrupted,
    SignInRequestExpired,
    SignInRequestReplayed,
    SignInRequestUnknown,
    WalletProvisioningFailed,
)
from seiwallet.accounts.models import SignInRequest, User, UserIdentity, UserStatus, new_user_id
from seiwallet.accounts.oidc import AuthRequest, Clock, VerifiedIdentity
from seiwallet.db import SQLITE_BEGIN, as_utc
from seiwallet.signer.client import SignerClient
from seiwallet.signer.errors import AlreadyExists, SignerError

#: How long a started sign-in may be completed (the person is at the provider meanwhile).
SIGN_IN_TTL: Final = timedelta(minutes=10)
# Reads then writes: on SQLite, take the write lock at BEGIN so two writers queue instead of
# one failing to upgrade its read lock. PostgreSQL ignores the option.
_WRITE: Final = {SQLITE_BEGIN: "IMMEDIATE"}


def state_hash(state: str) -> str:
    """How a sign-in's ``state`` is stored: hex SHA-256 (256 random bits need no salt)."""
    return hashlib.sha256(state.encode()).hexdigest()


@dataclass(frozen=True)
class PendingSignIn:
    """A stored sign-in, taken once when the provider sends the person back."""

    provider: str
    state: str
    nonce: str
    code_verifier: str
    redirect_after: str | None
    created_at: datetime

    @property
    def auth_request(self) -> AuthRequest:
        """What :meth:`OidcClient.complete_sign_in` checks against (the URL is not kept)."""
        return AuthRequest(
            url="", state=self.state, nonce=self.nonce, code_verifier=self.code_verifier
        )


@dataclass(frozen=True)
class SignedInUser:
    """The user a sign-in ended as."""

    id: str
    status: UserStatus
    display_name: str | None
    email: str | None
    email_verified: bool
    phone: str | None
    phone_verified: bool
    wallet_id: str | None
    wallet_address: str | None
    wallet_sei_address: str | None
    created_at: datetime

    @classmethod
    def of(cls, user: User) -> SignedInUser:
        return cls(
            id=user.id,
            status=user.status,
            display_name=user.display_name,
            email=user.email,
            email_verified=user.email_verified,
            phone=user.phone,
            phone_verified=user.phone_verified,
            wallet_id=user.wallet_id,
            wallet_address=user.wallet_address,
            wallet_sei_address=user.wallet_sei_address,
            created_at=as_utc(user.created_at),
        )


@dataclass(frozen=True)
class SignInResult:
    """Who signed in; ``created`` on the first sign-in, with the server-side time to a wallet."""

    user: SignedInUser
    created: bool
    #: From receiving the verified identity to the user being active with a wallet, in ms.
    wallet_ready_ms: float


@dataclass(frozen=True)
class _Reservation:
    user_id: str
    status: UserStatus
    created_at: datetime
    #: Whether this attempt inserted the reservation (and so may undo it).
    ours: bool


class SignInService:
    """Sign-ins in progress and their completion, with the first sign-in's wallet."""

    def __init__(
        self,
        sessions: sessionmaker[Session],
        signer: SignerClient,
        clock: Clock = time.time,
        *,
        timer: Callable[[], float] = time.perf_counter,
    ) -> None:
        self._sessions = sessions
        self._signer = signer
        self._clock = clock
        self._timer = timer

    def _now(self) -> datetime:
        return datetime.fromtimestamp(self._clock(), UTC)

    # -- sign-ins in progress ----------------------------------------------------------------
    def start(
        self, provider: str, auth_request: AuthRequest, *, redirect_after: str | None = None
    ) -> None:
        """Keep a sign-in sent to ``provider`` until its callback, for at most 10 minutes."""
        if redirect_after is not None and not is_local_path(redirect_after):
            raise RedirectRefused
        now = self._now()
        with self._sessions.begin() as session:
            session.add(
                SignInRequest(
                    state_hash=state_hash(auth_request.state),
                    provider=provider,
                    nonce=auth_request.nonce,
                    code_verifier=auth_request.code_verifier,
                    redirect_after=redirect_after,
                    created_at=now,
                    expires_at=now + SIGN_IN_TTL,
                )
            )

    def take(self, state: str) -> PendingSignIn:
        """The sign-in a callback's ``state`` belongs to, consumed so it cannot be used twice."""
        key = state_hash(state)
        now = self._now()
        with self._sessions.begin() as session:
            session.connection(execution_options=_WRITE)
            row = session.get(SignInRequest, key)
            if row is None:
                raise SignInRequestUnknown
            if row.consumed_at is not None:
                raise SignInRequestReplayed
            if as_utc(row.expires_at) <= now:
                raise SignInRequestExpired(int(SIGN_IN_TTL.total_seconds()))
            # The conditional update is what makes it single-use under concurrency.
            consumed = session.execute(
                update(SignInRequest)
                .where(SignInRequest.state_hash == key, SignInRequest.consumed_at.is_(None))
                .values(consumed_at=now)
                .execution_options(synchronize_session=False)
            )
            if consumed.rowcount != 1:  # type: ignore[attr-defined]
                raise SignInRequestReplayed
            return PendingSignIn(
                provider=row.provider,
                state=state,
                nonce=row.nonce,
                code_verifier=row.code_verifier,
                redirect_after=row.redirect_after,
                created_at=as_utc(row.created_at),
            )

    def purge_expired(self) -> int:
        """Delete sign-ins that can no longer be completed; returns how many."""
        with self._sessions.begin() as session:
            result = session.execute(
                delete(SignInRequest).where(SignInRequest.expires_at <= self._now())
            )
            return int(result.rowcount)  # type: ignore[attr-defined]

    # -- completion --------------------------------------------------------------------------
    async def complete(
        self,
        identity: VerifiedIdentity,
        *,
        authenticator: Mapping[str, Any] | None = None,
    ) -> SignInResult:
        """Sign ``identity`` in; on its first sign-in, create the user and their wallet.

        ``authenticator`` is the first authenticator registration, passed to the signer's
        ``create_wallet`` (ignored on later sign-ins).
        """
        began = self._timer()
        user = await asyncio.to_thread(self._sign_in_existing, identity)
        created = False
        if user is None:
            reservation = await asyncio.to_thread(self._reserve, identity)
            if reservation.status is UserStatus.ACTIVE:  # a concurrent attempt finished first
                user = await asyncio.to_thread(self._sign_in_existing, identity)
                if user is None:  # pragma: no cover - an active user is never deleted
                    raise SignInInterrupted
            else:
                addresses = await self._create_wallet(reservation, authenticator)
                activated = await asyncio.to_thread(
                    self._activate, reservation.user_id, identity, addresses
                )
                user, created = activated[0], activated[1]
        return SignInResult(user, created=created, wallet_ready_ms=self._ms_since(began))

    def _ms_since(self, began: float) -> float:
        return (self._timer() - began) * 1000.0

    def _sign_in_existing(self, identity: VerifiedIdentity) -> SignedInUser | None:
        """The active user of ``identity``, its sign-in recorded; ``None`` if there is none yet."""
        with self._sessions.begin() as session:
            session.connection(execution_options=_WRITE)
            found = session.execute(
                select(UserIdentity, User)
                .join(User, User.id == UserIdentity.user_id)
                .where(UserIdentity.issuer == identity.issuer)
                .where(UserIdentity.subject == identity.subject)
            ).one_or_none()
            if found is None or found.User.status is not UserStatus.ACTIVE:
                return None
            found.UserIdentity.last_sign_in_at = self._now()
            return SignedInUser.of(found.User)

    def _reserve(self, identity: VerifiedIdentity) -> _Reservation:
        """The user id ``identity``'s wallet will have: a new reservation or an earlier one."""
        try:
            with self._sessions.begin() as session:
                session.connection(execution_options=_WRITE)
                earlier = self._find_reservation(session, identity)
                if earlier is not None:
                    return earlier
                now = self._now()
                phone = e164(identity.phone_number)
                user = User(
                    id=new_user_id(),
                    created_at=now,
                    display_name=identity.name,
                    email=identity.email,
                    email_verified=identity.email is not None and identity.email_verified,
                    phone=phone,
                    phone_verified=phone is not None and identity.phone_number_verified,
                    status=UserStatus.PROVISIONING,
                )
                session.add(user)
                session.flush()  # the user first: the identity refers to it
                session.add(
                    UserIdentity(
                        issuer=identity.issuer,
                        subject=identity.subject,
                        user_id=user.id,
                        created_at=now,
                    )
                )
                return _Reservation(user.id, UserStatus.PROVISIONING, now, ours=True)
        except IntegrityError:
            # A concurrent first sign-in of the same person reserved first (PostgreSQL; on
            # SQLite the IMMEDIATE transactions queue and the second one finds the first's).
            with self._sessions() as session:
                earlier = self._find_reservation(session, identity)
            if earlier is None:  # pragma: no cover - a reservation is only deleted on failure
                raise SignInInterrupted from None
            return earlier

    @staticmethod
    def _find_reservation(session: Session, identity: VerifiedIdentity) -> _Reservation | None:
        found = session.execute(
            select(User.id, User.status, User.created_at)
            .join(UserIdentity, UserIdentity.user_id == User.id)
            .where(UserIdentity.issuer == identity.issuer)
            .where(UserIdentity.subject == identity.subject)
        ).one_or_none()
        if found is None:
            return None
        return _Reservation(found.id, found.status, as_utc(found.created_at), ours=False)

    async def _create_wallet(
        self, reservation: _Reservation, authenticator: Mapping[str, Any] | None
    ) -> tuple[str, str]:
        """The addresses (0x, sei1) of the reservation's wallet, created now or earlier.

        The signer's ``create_wallet`` is idempotent for a wallet id: a retry after a crash, or a
        concurrent first sign-in, gets the same wallet's address back.
        """
        try:
            wallet = await self._signer.create_wallet(reservation.user_id, authenticator)
        except AlreadyExists:
            # Two attempts raced inside the signer: the other one created it; ask again.
            try:
                wallet = await self._signer.create_wallet(reservation.user_id, None)
            except SignerError as exc:
                raise WalletProvisioningFailed(exc.code) from exc
        except SignerError as exc:
            if reservation.ours:
                await asyncio.to_thread(self._cancel, reservation.user_id)
            raise WalletProvisioningFailed(exc.code) from exc
        return str(wallet["address"]), str(wallet["sei_address"])

    def _cancel(self, user_id: str) -> None:
        """Undo a reservation whose wallet could not be created, unless it became a user."""
        with self._sessions.begin() as session:
            session.connection(execution_options=_WRITE)
            user = session.get(User, user_id, with_for_update=True)
            if user is None or user.status is not UserStatus.PROVISIONING:
                return
            session.execute(delete(UserIdentity).where(UserIdentity.user_id == user_id))
            session.delete(user)

    def _activate(
        self, user_id: str, identity: VerifiedIdentity, addresses: tuple[str, str]
    ) -> tuple[SignedInUser, bool]:
        """Make the reservation an active user with its wallet; ``True`` if this call did."""
        now = self._now()
        with self._sessions.begin() as session:
            session.connection(execution_options=_WRITE)
            user = session.get(User, user_id, with_for_update=True)
            if user is None:  # a failing concurrent attempt cancelled it
                raise SignInInterrupted
            activated = user.status is UserStatus.PROVISIONING
            if activated:
                user.status = UserStatus.ACTIVE
                user.wallet_id = user_id
                user.wallet_address, user.wallet_sei_address = addresses
            session.execute(
                update(UserIdentity)
                .where(UserIdentity.issuer == identity.issuer)
                .where(UserIdentity.subject == identity.subject)
                .values(last_sign_in_at=now)
            )
            return SignedInUser.of(user), activated


def e164(number: str | None) -> str | None:
    """A phone number in E.164 (``+85291234567``), or ``None`` if it is not a valid one.

    OIDC's ``phone_number`` claim should be E.164 already (OIDC Core §5.1) but providers differ;
    aliases are matched in this one form.
    """
    if not number:
        return None
    try:
        parsed = phonenumbers.parse(number, None)
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_valid_number(parsed):
        return None
    return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)


def is_local_path(target: str) -> bool:
    """A path on this site: one leading slash, no scheme, host or backslash tricks."""
    return (
        target.startswith("/")
        and not target.startswith("//")
        and "\\" not in target
        and not any(ord(c) < 0x20 for c in target)
    )
