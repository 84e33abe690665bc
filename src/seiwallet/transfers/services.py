"""Sending stablecoins: create a transfer, have the owner approve it, hand it to the relayer.

``create`` checks everything that can be checked before anyone is asked to approve — the token,
the recipient (0x, sei1, a verified phone number or e-mail of another user), the amount, the
compliance gate, the balance net of transfers already in flight — builds the
``erc3009.transfer`` intent (random bytes32 nonce, a one-hour validity window) and stores the
transfer ``awaiting_approval`` under the caller's ``Idempotency-Key``: the same key and request
returns the first transfer, never a second one. A phone number or e-mail nobody has verified
makes an **invitation** instead (``transfers.invitations``): the same intent, to the invite
escrow, with the invitation id as its nonce. ``approve`` passes the intent and the owner's
approval to the signer and stores the signature: the row is now in the relayer's outbox.

Money moves at most once whatever is retried: one transfer is one EIP-3009 nonce, which the
token accepts once.

The gate's limit reservation (made under ``transfer:<id>``) follows the transfer: released at
once if the transfer is not stored after the check, committed with the signature, released with
the expiry (``transfers.reservations``; the worker expires unapproved transfers and releases
failed ones, ``transfers.tasks.settle_transfer_reservations``).
"""

from __future__ import annotations

import asyncio
import csv
import functools
import hashlib
import io
import json
import logging
import secrets
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, Final, Protocol

import phonenumbers
from sqlalchemy import Select, bindparam, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from seiwallet.accounts.aliases import normalise
from seiwallet.accounts.errors import AliasInvalid
from seiwallet.accounts.models import User, UserStatus
from seiwallet.addresses import InvalidAddress, parse_evm_address
from seiwallet.chain.tokens import TokenDomain
from seiwallet.compliance.gate import ComplianceGate, Decision, Movement, Screening
from seiwallet.compliance.models import UsageStatus
from seiwallet.db import SQLITE_BEGIN, as_utc, insert_now, offload
from seiwallet.errors import InvalidInput
from seiwallet.money import TokenAmount
from seiwallet.signer.client import SignerClient
from seiwallet.signer.intents import intent_digest, parse_intent
from seiwallet.transfers.errors import (
    IdempotencyConflict,
    InsufficientBalance,
    LookupRateLimited,
    RecipientInvalid,
    RecipientUnknown,
    SelfTransfer,
    TransferNotAwaitingApproval,
    TransferNotFound,
    UnknownToken,
)
from seiwallet.transfers.invitations import (
    InvitationPolicy,
    InvitationView,
    Invitee,
    check_new_alias_limit,
    invitation_terms,
)
from seiwallet.transfers.models import (
    IN_FLIGHT_STATUSES,
    InvitationStatus,
    Transfer,
    TransferInvitation,
    TransferStatus,
)
from seiwallet.transfers.reservations import reference, settle_reservations

log = logging.getLogger(__name__)

#: How long a signed authorization may wait to be submitted (the relayer's whole window).
VALIDITY: Final = 3600
#: ``validAfter`` a minute back: the chain's clock (whole-second block timestamps) may lag ours.
CLOCK_SKEW: Final = 60
#: An unapproved transfer is abandoned after this long.
APPROVAL_WINDOW: Final = 600
_WRITE: Final = {SQLITE_BEGIN: "IMMEDIATE"}
_MAX_KEY: Final = 255


class Clock(Protocol):
    def __call__(self) -> float: ...


class BalanceReader(Protocol):
    """Reads a token balance from the chain (a cached RPC read in the API)."""

    async def balance(self, token: str, owner: str) -> int: ...


@dataclass(frozen=True)
class TokenInfo:
    """A token the wallet offers on this chain, with its EIP-712 domain read from the chain."""

    symbol: str
    name: str
    decimals: int
    domain: TokenDomain

    @property
    def address(self) -> str:
        return self.domain.verifying_contract

    def domain_json(self) -> dict[str, str]:
        return {
            "name": self.domain.name,
            "version": self.domain.version,
            "chain_id": str(self.domain.chain_id),
            "verifying_contract": self.domain.verifying_contract,
        }


@dataclass(frozen=True)
class Owner:
    """The user sending: their id, their wallet in the signer, its address."""

    user_id: str
    wallet_id: str
    address: str


@dataclass(frozen=True)
class SendRequest:
    recipient: str
    symbol: str
    amount: str
    note: str = ""

    def fingerprint(self) -> str:
        canonical = json.dumps(
            {
                "recipient": self.recipient.strip(),
                "symbol": self.symbol.upper(),
                "amount": self.amount.strip(),
                "note": self.note,
            },
            sort_keys=True,
        )
        return hashlib.sha256(canonical.encode()).hexdigest()


@dataclass(frozen=True)
class Recipient:
    address: str
    user_id: str | None
    #: How to show them: the alias or name they were found by, else the address.
    label: str


@dataclass(frozen=True)
class TransferView:
    id: str
    status: TransferStatus
    symbol: str
    decimals: int
    token: str
    amount_units: int
    from_address: str
    to_address: str
    recipient: str
    recipient_user_id: str | None
    note: str
    intent: dict[str, Any]
    intent_digest: str
    tx_hash: str | None
    block_number: int | None
    gas_cost_wei: int | None
    failure_reason: str | None
    delay_reason: str | None
    created_at: datetime
    confirmed_at: datetime | None
    #: Set for a transfer to an alias that had no wallet: the money waits in the invite escrow.
    invitation: InvitationView | None = None

    @property
    def amount(self) -> TokenAmount:
        return TokenAmount.from_units(self.amount_units, self.decimals, self.symbol)

    @classmethod
    def of(cls, row: Transfer, invitation: TransferInvitation | None = None) -> TransferView:
        return cls(
            id=row.id,
            status=row.status,
            symbol=row.symbol,
            decimals=row.decimals,
            token=row.token,
            amount_units=row.amount_units,
            from_address=row.from_address,
            to_address=row.to_address,
            recipient=row.recipient_input,
            recipient_user_id=row.recipient_user_id,
            note=row.note,
            intent=json.loads(row.intent),
            intent_digest=row.intent_digest,
            tx_hash=row.tx_hash,
            block_number=row.block_number,
            gas_cost_wei=row.gas_cost_wei,
            failure_reason=row.failure_reason,
            delay_reason=row.delay_reason,
            created_at=as_utc(row.created_at),
            confirmed_at=as_utc(row.confirmed_at) if row.confirmed_at else None,
            invitation=InvitationView.of(invitation) if invitation is not None else None,
        )


def _views(db: Session, rows: Sequence[Transfer]) -> list[TransferView]:
    """Views of ``rows`` with their invitations (one more query, only if any row has one)."""
    invitations: dict[str, TransferInvitation] = {}
    if rows:
        invitations = {
            found.transfer_id: found
            for found in db.scalars(
                select(TransferInvitation).where(
                    TransferInvitation.transfer_id.in_([row.id for row in rows])
                )
            )
        }
    return [TransferView.of(row, invitations.get(row.id)) for row in rows]


@dataclass(frozen=True)
class Balance:
    """A sender's balance on the chain, for the check made against what is in flight."""

    token: TokenInfo
    on_chain: int

    def check(self, units: int, in_flight: int) -> None:
        """Raise :class:`InsufficientBalance` unless ``units`` fit in what is left."""
        available = max(0, self.on_chain - in_flight)
        if units > available:
            raise InsufficientBalance(
                TokenAmount.from_units(available, self.token.decimals, self.token.symbol).format(),
                self.token.symbol,
            )


#: The hot paths' statements, built once (making one — its WHERE clause, its cache key — on each
#: call cost about as much as running it): a key's transfer, what a sender has in flight, a
#: transfer with its invitation.
_ID_BY_KEY = select(Transfer.id).where(
    Transfer.user_id == bindparam("user_id"), Transfer.idempotency_key == bindparam("key")
)
_IN_FLIGHT = select(Transfer.amount_units).where(
    Transfer.user_id == bindparam("user_id"),
    Transfer.token == bindparam("token"),
    Transfer.status.in_(IN_FLIGHT_STATUSES),
)
_WITH_INVITATION = (
    select(Transfer, TransferInvitation)
    .outerjoin(TransferInvitation, TransferInvitation.transfer_id == Transfer.id)
    .where(Transfer.id == bindparam("transfer_id"))
)


#: Approving: awaiting approval → signed, with its signature (built once).
_SIGN = (
    update(Transfer)
    .where(
        Transfer.id == bindparam("b_id"),
        Transfer.status == TransferStatus.AWAITING_APPROVAL,
    )
    .values(
        signature=bindparam("b_signature"),
        status=TransferStatus.SIGNED,
        signed_at=bindparam("b_now"),
    )
    .execution_options(synchronize_session=False)
)


@functools.cache
def _active_user_by(column: str, verified: str | None) -> Select[User]:
    """The active user whose ``column`` is ``:value`` (and ``verified`` true), built once per
    column: every transfer resolves its recipient with one of these."""
    query = select(User).where(
        getattr(User, column) == bindparam("value"), User.status == UserStatus.ACTIVE
    )
    return query.where(getattr(User, verified).is_(True)) if verified else query


async def screen_with_balance(
    gate: ComplianceGate, balances: BalanceReader, token: str, movement: Movement
) -> tuple[Screening, int]:
    """The gate's screening of ``movement`` and the sender's balance of ``token`` on chain; a
    refusal is recorded and raised here.

    The chain reads go together (with other requests' of this turn of the loop, in one
    JSON-RPC batch): the balance and what the gate will ask (its blacklist flags). The
    screening takes no lock: it reads the people and the lists, on the event loop when it can
    finish without waiting (``ComplianceGate.screen_in_place``), in a thread otherwise.
    """
    on_chain, _ = await asyncio.gather(
        balances.balance(token, movement.from_address), gate.prefetch(movement)
    )
    screening = gate.screen_in_place(movement)
    if screening is None:
        screening = await asyncio.to_thread(gate.screen, movement)
    if screening.refused:
        (await asyncio.to_thread(gate.conclude, screening)).raise_if_denied()
    return screening, on_chain


def in_flight_units(db: Session, user_id: str, token: str) -> int:
    """What the user's transfers of ``token`` not yet settled or failed will take."""
    return sum(db.scalars(_IN_FLIGHT, {"user_id": user_id, "token": token}).all())


def _check_key(key: str | None) -> str:
    if key is None or not key.strip():
        raise InvalidInput("an Idempotency-Key header is required to send money")
    if len(key) > _MAX_KEY or not key.isprintable():
        raise InvalidInput(f"the Idempotency-Key must be 1 to {_MAX_KEY} printable characters")
    return key


class RecipientResolver:
    """Who a recipient is: a 0x address, a sei1 address we know, or another user's alias."""

    def __init__(self, sessions: sessionmaker[Session], *, default_region: str = "HK") -> None:
        self._sessions = sessions
        self._region = default_region

    def resolve(self, text: str) -> Recipient | Invitee:
        """The recipient ``text`` names; an :class:`Invitee` for a well-formed phone number or
        e-mail that no user has verified (the caller decides whether to invite them)."""
        given = " ".join(text.split())
        if not given:
            raise RecipientInvalid("enter who to send to: a 0x or sei1 address, a phone or e-mail")
        lowered = given.lower()
        if lowered.startswith("0x"):
            try:
                address = parse_evm_address(given)
            except InvalidAddress as exc:
                raise RecipientInvalid(str(exc)) from None
            user = self._user_by(User.wallet_address, address)
            return Recipient(address, user.id if user else None, given)
        if lowered.startswith("sei1"):
            user = self._user_by(User.wallet_sei_address, lowered)
            if user is None or user.wallet_address is None:
                raise RecipientUnknown(
                    "this sei1 address is not linked to an EVM address we know: "
                    "ask the recipient for their 0x address"
                )
            return Recipient(user.wallet_address, user.id, given)
        if "@" in given:
            try:
                email = normalise("email", given).value
            except AliasInvalid as exc:
                raise RecipientInvalid(str(exc)) from None
            user = self._verified(User.email, User.email_verified, email)
            return self._alias(user, "email", email)
        try:
            number = phonenumbers.parse(given, self._region)
        except phonenumbers.NumberParseException:
            number = None
        if number is None or not phonenumbers.is_valid_number(number):
            raise RecipientInvalid(
                f"{given!r} is not an address, a phone number or an e-mail address"
            )
        e164 = phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
        user = self._verified(User.phone, User.phone_verified, e164)
        return self._alias(user, "phone", e164)

    @staticmethod
    def _alias(user: User | None, kind: str, alias: str) -> Recipient | Invitee:
        if user is None or user.wallet_address is None:
            return Invitee(kind, alias)
        return Recipient(user.wallet_address, user.id, alias)

    def _user_by(self, column: Any, value: str) -> User | None:
        with self._sessions() as db:
            return db.scalars(_active_user_by(column.key, None), {"value": value}).first()

    def _verified(self, column: Any, verified: Any, value: str) -> User | None:
        with self._sessions() as db:
            return db.scalars(_active_user_by(column.key, verified.key), {"value": value}).first()


class LookupLimiter:
    """At most ``limit`` unknown-alias lookups per user per ``window`` seconds.

    Misses are what is left once invitations answer every well-formed alias: sei1 addresses we
    do not know, and aliases where invitations are switched off. After a few, the answer is
    "slow down" for every lookup. (Kept per API process: with several processes the limit is
    per process. New aliases are limited per user in the database: ``check_new_alias_limit``.)
    """

    def __init__(self, limit: int = 10, window: float = 600.0, clock: Clock = time.time) -> None:
        self._limit = limit
        self._window = window
        self._clock = clock
        self._misses: dict[str, list[float]] = {}

    def _recent(self, user_id: str) -> list[float]:
        cutoff = self._clock() - self._window
        misses = [t for t in self._misses.get(user_id, []) if t > cutoff]
        self._misses[user_id] = misses
        return misses

    def check(self, user_id: str) -> None:
        misses = self._recent(user_id)
        if len(misses) >= self._limit:
            raise LookupRateLimited(int(misses[0] + self._window - self._clock()) + 1)

    def missed(self, user_id: str) -> None:
        self._recent(user_id).append(self._clock())


class TransferService:
    """Create, approve and list a user's transfers."""

    def __init__(
        self,
        sessions: sessionmaker[Session],
        signer: SignerClient,
        balances: BalanceReader,
        tokens: Mapping[str, TokenInfo],
        gate: ComplianceGate,
        *,
        resolver: RecipientResolver | None = None,
        invitations: InvitationPolicy | None = None,
        clock: Clock = time.time,
    ) -> None:
        self._sessions = sessions
        self._signer = signer
        self._balances = balances
        self.tokens = {symbol.upper(): info for symbol, info in tokens.items()}
        self._gate = gate
        self.resolver = resolver or RecipientResolver(sessions)
        self._clock = clock
        self._lookups = LookupLimiter(clock=clock)
        #: ``None``: aliases without a wallet are refused (no escrow on this network).
        self.invitations = invitations

    def _now(self) -> datetime:
        return datetime.fromtimestamp(self._clock(), UTC)

    def token(self, symbol: str) -> TokenInfo:
        info = self.tokens.get(symbol.strip().upper())
        if info is None:
            raise UnknownToken(symbol, sorted(self.tokens))
        return info

    # -- balances ------------------------------------------------------------------------------
    async def available(self, owner: Owner, token: TokenInfo) -> int:
        """What can be sent now: the chain balance less this wallet's transfers in flight."""
        on_chain = await self._balances.balance(token.address, owner.address)
        return max(0, on_chain - await offload.read(self._sessions, self._in_flight, owner, token))

    def _in_flight(self, owner: Owner, token: TokenInfo) -> int:
        with self._sessions() as db:
            return in_flight_units(db, owner.user_id, token.address)

    # -- create --------------------------------------------------------------------------------
    async def create(
        self, owner: Owner, request: SendRequest, idempotency_key: str | None
    ) -> tuple[TransferView, bool]:
        """A new transfer awaiting approval, or the one this key already made (``False``)."""
        key = _check_key(idempotency_key)
        fingerprint = request.fingerprint()
        earlier = await offload.read(self._sessions, self._by_key, owner.user_id, key)
        if earlier is not None:
            if earlier.request_hash != fingerprint:
                raise IdempotencyConflict
            return await offload.read(self._sessions, self._view, earlier), False
        token = self.token(request.symbol)
        amount = TokenAmount.parse(request.amount, token.decimals, token.symbol)
        if amount.units <= 0:
            raise InvalidInput("the amount must be more than zero")
        if len(request.note) > 140:
            raise InvalidInput("a note is at most 140 characters")
        self._lookups.check(owner.user_id)
        try:
            found = await offload.read(self._sessions, self.resolver.resolve, request.recipient)
            if isinstance(found, Invitee) and self.invitations is None:
                raise RecipientUnknown(
                    f"no seiwallet user can receive at {found.alias} yet: "
                    "send to their 0x address, or ask them to sign up"
                )
        except RecipientUnknown:
            self._lookups.missed(owner.user_id)
            raise
        invitee = found if isinstance(found, Invitee) else None
        to_address = self._escrow() if invitee is not None else self._recipient(found).address
        if to_address.lower() == owner.address.lower():
            raise SelfTransfer
        # From here on every answer is the same whether or not the alias has a wallet: only a
        # created transfer tells its sender that the recipient has not joined yet.
        transfer_id = uuid.uuid4().hex
        movement = Movement(
            kind="transfer",
            user_id=owner.user_id,
            from_address=owner.address,
            to_address=to_address,
            symbol=token.symbol,
            decimals=token.decimals,
            amount_units=amount.units,
            recipient_user_id=None if invitee is not None else self._recipient(found).user_id,
            # A recipient by address was looked up by their wallet address just now; an
            # invitation's escrow is nobody's wallet.
            recipient_resolved=True,
            reference=reference("transfer", transfer_id),
        )
        # The gate's limits, reservation and decision are written in the transfer's own
        # transaction (``_insert``): one commit, and no reservation without its transfer.
        screening, on_chain = await screen_with_balance(
            self._gate, self._balances, token.address, movement
        )
        return await self._store_new(
            owner,
            request,
            transfer_id=transfer_id,
            key=key,
            fingerprint=fingerprint,
            token=token,
            amount=amount,
            found=found,
            to_address=to_address,
            screening=screening,
            on_chain=on_chain,
        )

    async def _store_new(
        self,
        owner: Owner,
        request: SendRequest,
        *,
        transfer_id: str,
        key: str,
        fingerprint: str,
        token: TokenInfo,
        amount: TokenAmount,
        found: Recipient | Invitee,
        to_address: str,
        screening: Screening,
        on_chain: int,
    ) -> tuple[TransferView, bool]:
        """Check the balance (``on_chain``, read for this request), build the intent and store
        the transfer with the gate's decision (``False``: a request with the same key stored its
        transfer first)."""
        invitee = found if isinstance(found, Invitee) else None
        # The signed transfers still in flight are subtracted in ``_insert``'s transaction,
        # which reads them after the gate's lock.
        if amount.units > on_chain:
            raise InsufficientBalance(
                TokenAmount.from_units(on_chain, token.decimals, token.symbol).format(),
                token.symbol,
            )
        now = int(self._clock())
        nonce = "0x" + secrets.token_bytes(32).hex()
        valid_before = now + VALIDITY
        invitation: TransferInvitation | None = None
        if invitee is not None and self.invitations is not None:
            terms = invitation_terms(
                self.invitations,
                token=token.address,
                sender=owner.address,
                value_units=amount.units,
                alias=invitee.alias,
                chain_id=token.domain.chain_id,
                now=now,
                validity=VALIDITY,
            )
            nonce, valid_before = terms.nonce, terms.valid_before
            invitation = TransferInvitation(
                user_id=owner.user_id,
                chain_id=token.domain.chain_id,
                escrow=self.invitations.escrow,
                invitation_id=nonce,
                alias_kind=invitee.kind,
                alias=invitee.alias,
                salt="0x" + terms.salt.hex(),
                claim_hash="0x" + terms.invitation.claim_hash.hex(),
                deadline=terms.invitation.deadline,
                status=InvitationStatus.PENDING,
                attempts=0,
                created_at=self._now(),
            )
        intent = {
            "kind": "erc3009.transfer",
            "version": 1,
            "token": token.domain_json(),
            "to": to_address,
            "amount_units": str(amount.units),
            "valid_after": str(now - CLOCK_SKEW),
            "valid_before": str(valid_before),
            "nonce": nonce,
        }
        digest = intent_digest(parse_intent(intent)).hex()
        row = Transfer(
            id=transfer_id,
            user_id=owner.user_id,
            idempotency_key=key,
            request_hash=fingerprint,
            chain_id=token.domain.chain_id,
            token=token.address,
            symbol=token.symbol,
            decimals=token.decimals,
            from_address=owner.address,
            to_address=to_address,
            recipient_input=(invitee.alias if invitee else self._recipient(found).label)[:320],
            recipient_user_id=None if invitee else self._recipient(found).user_id,
            amount_units=amount.units,
            note=request.note,
            nonce=nonce,
            valid_after=now - CLOCK_SKEW,
            valid_before=valid_before,
            intent=json.dumps(intent, sort_keys=True),
            intent_digest=digest,
            status=TransferStatus.AWAITING_APPROVAL,
            attempts=0,
            created_at=self._now(),
        )
        try:
            decision, view = await offload.write(
                self._sessions, self._insert, row, invitation, screening, Balance(token, on_chain)
            )
        except IntegrityError:
            # The same key raced in from a second request: the first one's transfer stands.
            earlier = await offload.read(self._sessions, self._by_key, owner.user_id, key)
            if earlier is None:  # pragma: no cover - the unique key is what failed
                raise
            if earlier.request_hash != fingerprint:
                raise IdempotencyConflict from None
            return await offload.read(self._sessions, self._view, earlier), False
        decision.raise_if_denied()
        assert view is not None
        log.info(
            "transfer %s created (%s %s%s)",
            view.id,
            amount.format(),
            token.symbol,
            ", an invitation" if invitation is not None else "",
        )
        return view, True

    def _escrow(self) -> str:
        if self.invitations is None:  # pragma: no cover - create() checked it
            raise RecipientUnknown("invitations are not available on this network")
        return self.invitations.escrow

    def _recipient(self, found: Recipient | Invitee) -> Recipient:
        if isinstance(found, Invitee):  # pragma: no cover - callers branch on it first
            raise RecipientUnknown(f"{found.alias} has no wallet yet")
        if self.invitations is not None and found.address.lower() == self._escrow().lower():
            # A plain transfer to the escrow would be nobody's invitation: stuck there for good.
            raise RecipientInvalid(
                "this is the address of seiwallet's invitation escrow, not of a person: "
                "send to the person's phone number or e-mail instead"
            )
        return found

    def _insert(
        self,
        row: Transfer,
        invitation: TransferInvitation | None,
        screening: Screening,
        balance: Balance,
    ) -> tuple[Decision, TransferView | None]:
        """The gate's decision and, when it allows and the money is there, the transfer: one
        write transaction (a refusal is committed alone, for the audit trail; a transfer the
        balance cannot cover leaves nothing, not even a reservation to release)."""
        with self._sessions.begin() as db:
            db.connection(execution_options=_WRITE)
            decision = self._gate.decide(db, screening)
            if not decision.allowed:
                return decision, None
            balance.check(row.amount_units, in_flight_units(db, row.user_id, row.token))
            if invitation is not None and self.invitations is not None:
                # The sender's row locked: two requests cannot both take the last new alias.
                db.execute(select(User.id).where(User.id == row.user_id).with_for_update())
                check_new_alias_limit(
                    db,
                    self.invitations,
                    user_id=row.user_id,
                    alias=invitation.alias,
                    now=self._now(),
                )
            insert_now(db, row)
            if invitation is not None:
                invitation.transfer_id = row.id
                db.add(invitation)
                db.flush()
            return decision, TransferView.of(row, invitation)

    def _view(self, row: Transfer) -> TransferView:
        with self._sessions() as db:
            return _views(db, [row])[0]

    def _by_key(self, user_id: str, key: str) -> Transfer | None:
        with self._sessions() as db:
            # A new key is by far the common case: look for the id alone (a wide ORM row is
            # costly to set up even when no row comes back), and load the row only if found.
            found = db.scalar(_ID_BY_KEY, {"user_id": user_id, "key": key})
            return db.get(Transfer, found) if found is not None else None

    # -- approve -------------------------------------------------------------------------------
    async def approve(
        self, owner: Owner, transfer_id: str, approvals: Sequence[Mapping[str, Any]]
    ) -> TransferView:
        """Have the signer sign the transfer with the owner's approval; it joins the outbox.

        Approving an already signed transfer returns it unchanged (a retried request).
        """
        row, invitation = await offload.read(self._sessions, self._get, owner.user_id, transfer_id)
        if row.status is not TransferStatus.AWAITING_APPROVAL:
            if row.status in (
                TransferStatus.SIGNED,
                TransferStatus.SUBMITTED,
                TransferStatus.CONFIRMED,
            ):
                return TransferView.of(row, invitation)
            raise TransferNotAwaitingApproval(row.status)
        if as_utc(row.created_at).timestamp() + APPROVAL_WINDOW < self._clock():
            await asyncio.to_thread(self._expire, row.id)
            raise TransferNotAwaitingApproval(TransferStatus.EXPIRED)
        result = await self._signer.sign(owner.wallet_id, json.loads(row.intent), list(approvals))
        return await offload.write(
            self._sessions, self._signed, row, invitation, str(result["signature"])
        )

    def _signed(
        self, row: Transfer, invitation: TransferInvitation | None, signature: str
    ) -> TransferView:
        """Store the signature: the transfer joins the relayer's outbox (once), and its limit
        reservation is committed with it. ``row`` is the transfer as read before signing."""
        now = self._now()
        with self._sessions.begin() as db:
            db.connection(execution_options=_WRITE)
            signed = db.execute(_SIGN, {"b_id": row.id, "b_signature": signature, "b_now": now})
            stored = bool(getattr(signed, "rowcount", 0))
            if stored:
                settle_reservations(
                    db, [reference("transfer", row.id)], UsageStatus.COMMITTED, now=now
                )
        if stored:
            # This request moved it from awaiting approval to signed: nothing else changed, so
            # the row read before signing, with what was written, is the transfer now.
            row.signature, row.status, row.signed_at = signature, TransferStatus.SIGNED, now
            return TransferView.of(row, invitation)
        # Another request got there first (or it expired meanwhile): read what it is. After
        # the commit: on SQLite the writer lock is the scarce thing, and this read needs none.
        with self._sessions() as db:
            fresh = db.get(Transfer, row.id)
            if fresh is None:  # pragma: no cover - transfers are never deleted
                raise TransferNotFound
            return _views(db, [fresh])[0]

    def _expire(self, transfer_id: str) -> None:
        """An approval that came too late: the transfer can no longer happen (its limit
        reservation is released with it)."""
        expire_transfers(self._sessions, [transfer_id], now=self._now())

    # -- reading -------------------------------------------------------------------------------
    def _get(self, user_id: str, transfer_id: str) -> tuple[Transfer, TransferInvitation | None]:
        """One of the user's own transfers, with its invitation if it is one (one query)."""
        with self._sessions() as db:
            found = db.execute(_WITH_INVITATION, {"transfer_id": transfer_id}).one_or_none()
            if found is None or found[0].user_id != user_id:
                raise TransferNotFound
            return found[0], found[1]

    def get(self, user_id: str, transfer_id: str) -> TransferView:
        """One of the user's transfers: sent by them, or to them by another user."""
        with self._sessions() as db:
            row = db.get(Transfer, transfer_id)
            if row is None or user_id not in (row.user_id, row.recipient_user_id):
                raise TransferNotFound
            return _views(db, [row])[0]

    def history(self, user_id: str, address: str, limit: int = 50) -> list[TransferView]:
        """Transfers sent by the user or to their address, newest first; invitations released
        to them (their ``recipient_user_id`` is set when the escrow paid them)."""
        visible = (TransferStatus.SIGNED, TransferStatus.SUBMITTED, TransferStatus.CONFIRMED)
        with self._sessions() as db:
            rows = db.scalars(
                select(Transfer)
                .where(
                    or_(
                        Transfer.user_id == user_id,
                        (Transfer.to_address == address) & Transfer.status.in_(visible),
                        (Transfer.recipient_user_id == user_id) & Transfer.status.in_(visible),
                    )
                )
                .order_by(Transfer.created_at.desc())
                .limit(limit)
            ).all()
            return _views(db, rows)

    def history_csv(self, user_id: str, address: str, explorer: str | None = None) -> str:
        """The user's history as CSV: one row per transfer, amounts exact in the token."""
        out = io.StringIO()
        writer = csv.writer(out)
        writer.writerow(
            [
                "created_at_utc",
                "direction",
                "status",
                "token",
                "amount",
                "counterparty",
                "note",
                "tx_hash",
                "explorer",
            ]
        )
        for view in self.history(user_id, address, limit=10_000):
            outgoing = view.from_address.lower() == address.lower()
            writer.writerow(
                [
                    view.created_at.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S"),
                    "sent" if outgoing else "received",
                    str(view.status),
                    view.symbol,
                    view.amount.format(),
                    view.recipient if outgoing else view.from_address,
                    _csv_safe(view.note),
                    view.tx_hash or "",
                    explorer.format(tx=view.tx_hash) if explorer and view.tx_hash else "",
                ]
            )
        return out.getvalue()


def expire_transfers(
    sessions: sessionmaker[Session], transfer_ids: Sequence[str], *, now: datetime
) -> list[str]:
    """Mark these transfers ``expired`` if they still await approval, and release their limit
    reservations, in one transaction; the ids that expired."""
    if not transfer_ids:
        return []
    with sessions.begin() as db:
        db.connection(execution_options=_WRITE)
        expired = list(
            db.scalars(
                update(Transfer)
                .where(
                    Transfer.id.in_(transfer_ids),
                    Transfer.status == TransferStatus.AWAITING_APPROVAL,
                )
                .values(status=TransferStatus.EXPIRED, updated_at=now)
                .returning(Transfer.id)
                .execution_options(synchronize_session=False)
            )
        )
        settle_reservations(
            db, [reference("transfer", i) for i in expired], UsageStatus.RELEASED, now=now
        )
    return expired


def _csv_safe(text: str) -> str:
    """A cell a spreadsheet will not run as a formula (CSV injection)."""
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


def fiat_value(amount: TokenAmount, rate: Decimal) -> Decimal:
    return (amount.to_decimal() * rate).quantize(Decimal("0.01"))
