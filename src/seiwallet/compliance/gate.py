"""The compliance gate: one entry point called before every value-moving intent.

:meth:`ComplianceGate.check` takes a :class:`Movement` (transfer, payment, refund, shared-account
execution, reward payout) and answers a :class:`Decision`: allow, deny (the rule and a reason in
words for the person) or needs-information (which data). It evaluates, in this order:

1. sanctions screening of both sides: the loaded lists (an indexed lookup on the 20 bytes an
   address names, so ``0x`` and ``sei1`` spellings meet) and the token issuer's own blacklist
   (FiatToken ``isBlacklisted``: the token would refuse the transfer anyway; we say so before
   anyone signs). A hit denies and raises an operator alert; nothing is frozen;
2. the sender's jurisdiction (from the verified phone number or an operator's assignment):
   its status, the feature the movement needs, the token allow-list; the recipient's
   jurisdiction if the recipient is one of our users (and their tier's balance cap);
3. the sender's tier limits in the jurisdiction's currency — per transfer, and over rolling
   24-hour and 30-day windows — *reserved* in the same database transaction that read them,
   under a per-user row lock (PostgreSQL) or the writer lock (SQLite), so racing movements
   cannot pass a limit together. A reservation counts until :meth:`ComplianceGate.release`
   (the movement failed) or stays counted once :meth:`ComplianceGate.commit`-ted;
4. the travel rule for money leaving the platform at or above the threshold: the beneficiary's
   data, and for a self-hosted wallet above the proof threshold a message signed by it.

Every decision is written to ``compliance_decisions`` with the rule that decided and the
version (hash) of the rules it was made under. A caller that stores the movement itself calls
:meth:`ComplianceGate.screen` (steps 1–2, reads only) and then :meth:`ComplianceGate.decide`
(steps 3–4, the reservation and the record) inside the transaction that stores it, so the
movement, its reservation and its decision commit together. Built without a database
(``ComplianceGate()``), the gate is the first version: the sanctions file and a per-transfer
cap per token.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from decimal import ROUND_CEILING, Decimal
from pathlib import Path
from typing import Any, Final, Protocol, runtime_checkable

from babel.numbers import get_currency_precision
from sqlalchemy import bindparam, case, func, select, update
from sqlalchemy.orm import Session, sessionmaker

from seiwallet.compliance.errors import ComplianceDenied, ComplianceNeedsInformation
from seiwallet.compliance.jurisdictions import Feature, JurisdictionRules, RuleStore, Status
from seiwallet.compliance.models import (
    COUNTED_USAGE,
    USAGE_TRANSITIONS,
    Alert,
    ComplianceProfile,
    DecisionRecord,
    Outcome,
    TravelRuleRecord,
    Usage,
    UsageStatus,
)
from seiwallet.compliance.placement import Directory, Person, Placement, place
from seiwallet.compliance.sanctions import Hit, SanctionsScreen, address_key, parse_text_list
from seiwallet.db import SQLITE_BEGIN, as_utc, insert_now, offload

log = logging.getLogger(__name__)
alerts_log = logging.getLogger("seiwallet.alerts")

_WRITE: Final = {SQLITE_BEGIN: "IMMEDIATE"}
DAY: Final = timedelta(hours=24)
MONTH: Final = timedelta(days=30)

#: The feature each kind of movement needs in the sender's jurisdiction.
FEATURE_OF: Final[Mapping[str, Feature]] = {
    "transfer": Feature.P2P,
    "invitation": Feature.P2P,
    "shared_account": Feature.P2P,
    "payment": Feature.MERCHANT_PAYMENTS,
    "refund": Feature.MERCHANT_PAYMENTS,
    "reward": Feature.REWARDS,
}
#: Kinds whose counterparty is a business on the platform (its data is ours): no travel-rule form.
_ON_PLATFORM_KINDS: Final = frozenset({"payment", "refund", "reward"})


class Clock(Protocol):
    def __call__(self) -> float: ...


class Valuer(Protocol):
    """What ``amount`` whole tokens of ``symbol`` are worth in ``currency`` (None: unknown)."""

    def __call__(self, amount: Decimal, symbol: str, currency: str) -> Decimal | None: ...


class NotCached(Exception):
    """A token reader's answer that would have waited for the chain, asked within
    :func:`from_cache_only`."""


#: Set while token reads must come from a cache (see :func:`from_cache_only`).
_CACHE_ONLY: Final[ContextVar[bool]] = ContextVar("seiwallet_token_reads_cache_only", default=False)


@contextmanager
def from_cache_only() -> Iterator[None]:
    """Within this block a :class:`TokenReader` must answer without waiting, or raise
    :class:`NotCached`: the gate's screening on the event loop
    (:meth:`ComplianceGate.screen_in_place`), which the caller then runs in a thread."""
    token = _CACHE_ONLY.set(True)
    try:
        yield
    finally:
        _CACHE_ONLY.reset(token)


def cache_only() -> bool:
    """Whether a :class:`TokenReader` is asked within :func:`from_cache_only`."""
    return _CACHE_ONLY.get()


class TokenReader(Protocol):
    """On-chain facts the gate asks of a token (a cached RPC read in the API, a fake in tests).

    A reader whose answer may wait (a node's round trip) checks :func:`cache_only` first and
    raises :class:`NotCached` instead of waiting.
    """

    def is_blacklisted(self, symbol: str, address: str) -> bool | None:
        """FiatToken ``isBlacklisted``; ``None`` when the chain cannot be asked now."""
        ...

    def holdings(self, address: str) -> Mapping[str, Decimal] | None:
        """Whole-token balances by symbol; ``None`` when unknown."""
        ...


@runtime_checkable
class PrefetchingTokenReader(Protocol):
    """A :class:`TokenReader` that can read ahead on the caller's event loop."""

    async def prefetch(self, symbol: str, addresses: Sequence[str]) -> None:
        """Cache the flags of ``addresses``, so that :meth:`TokenReader.is_blacklisted` need
        not ask the chain from the gate's thread (best effort)."""
        ...


@dataclass(frozen=True)
class Movement:
    """Money about to move: who, from where, to where, what and how much (base units)."""

    kind: str  # "transfer" | "payment" | "refund" | "shared_account" | "reward" | "invitation"
    user_id: str
    from_address: str
    to_address: str
    symbol: str
    decimals: int
    amount_units: int
    #: The recipient, when the caller already knows they are one of our users.
    recipient_user_id: str | None = None
    #: The caller's own id for the movement (an idempotency key, a transfer id): lets a
    #: reservation be released by it.
    reference: str | None = None
    #: The caller looked the recipient up already (``recipient_user_id`` ``None``: not one of
    #: ours), so the gate need not look for them by address again.
    recipient_resolved: bool = False

    @property
    def amount(self) -> Decimal:
        return Decimal(self.amount_units).scaleb(-self.decimals)


@dataclass(frozen=True)
class Decision:
    allowed: bool
    rule: str
    reason: str
    outcome: Outcome | None = None
    #: The recorded decision (and its reservation), when the gate has a database.
    id: str | None = None
    needs: tuple[str, ...] = ()
    jurisdiction: str | None = None
    country: str | None = None
    tier: int | None = None
    value: Decimal | None = None
    currency: str | None = None
    rules_version: str | None = None
    travel: Mapping[str, Any] | None = field(default=None, compare=False)
    #: ``reason`` in other languages, by tag (a rule file's notice and its translations).
    translations: Mapping[str, str] | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        if self.outcome is None:
            object.__setattr__(self, "outcome", Outcome.ALLOW if self.allowed else Outcome.DENY)

    def raise_if_denied(self) -> None:
        if self.allowed:
            return
        if self.outcome is Outcome.NEEDS_INFORMATION:
            raise ComplianceNeedsInformation(self.rule, self.reason, self.needs)
        raise ComplianceDenied(self.rule, self.reason, self.translations)

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "outcome": str(self.outcome),
            "allowed": self.allowed,
            "rule": self.rule,
            "reason": self.reason,
            "needs": list(self.needs),
            "jurisdiction": self.jurisdiction,
            "country": self.country,
            "tier": self.tier,
            "value": str(self.value) if self.value is not None else None,
            "currency": self.currency,
            "rules_version": self.rules_version,
        }


ALLOW = Decision(True, "allowed", "")


@dataclass(frozen=True)
class Screening:
    """What :meth:`ComplianceGate.screen` found, for :meth:`ComplianceGate.decide` to finish."""

    movement: Movement
    #: The answer already, with nothing to record (a gate without a database).
    settled: Decision | None = None
    context: _Context | None = None
    recipient: Person | None = None
    #: A refusal found without the limits (sanctions, jurisdiction, token, recipient, value).
    verdict: _Verdict | None = None

    @property
    def refused(self) -> bool:
        """Whether the movement is refused already, whatever the limits say."""
        if self.settled is not None:
            return not self.settled.allowed
        return self.verdict is not None and self.verdict.outcome is not Outcome.ALLOW


def load_sanctions_list(path: Path) -> frozenset[str]:
    """Addresses from a text file (one per line; blank lines and ``#`` comments ignored)."""
    return frozenset("0x" + a.key for a in parse_text_list(path).addresses)


def money(value: Decimal, currency: str) -> str:
    """An amount for a reason text: ``8,000 HKD``, ``1,000.50 EUR``."""
    shown = f"{value:,.2f}"
    return f"{shown.removesuffix('.00')} {currency}"


def minor_units(value: Decimal, currency: str) -> int:
    """``value`` in the currency's minor units, rounded up (a limit is never under-counted)."""
    places = get_currency_precision(currency)
    return int(value.scaleb(places).to_integral_value(rounding=ROUND_CEILING))


def from_minor(units: int, currency: str) -> Decimal:
    return Decimal(units).scaleb(-get_currency_precision(currency))


@dataclass
class _Verdict:
    """A decision being made: enough to record it."""

    outcome: Outcome
    rule: str
    reason: str
    needs: tuple[str, ...] = ()
    alert: tuple[str, str, str | None, str] | None = None  # kind, severity, address, detail
    travel: dict[str, Any] | None = None
    #: ``reason`` in other languages, when it is the operator's text (a rule file's notice).
    translations: Mapping[str, str] | None = None


#: What a user's limits have used in the last day and month, summed by the database (the rows
#: of a busy sender's month are not carried to Python), built once.
_USED = select(
    func.coalesce(
        func.sum(case((Usage.created_at > bindparam("day"), Usage.value_minor), else_=0)), 0
    ),
    func.coalesce(func.sum(Usage.value_minor), 0),
).where(
    Usage.user_id == bindparam("user_id"),
    Usage.currency == bindparam("currency"),
    Usage.status.in_([s.value for s in COUNTED_USAGE]),
    Usage.created_at > bindparam("month"),
)


@dataclass(frozen=True)
class UsedLimits:
    """A user's counted usage in one currency: last 24 hours, last 30 days (minor units)."""

    day: int
    month: int


class ComplianceGate:
    """Screens a movement; allow, deny with the rule and a user-facing reason, or ask for data."""

    def __init__(
        self,
        *,
        sanctioned: Iterable[str] = (),
        per_transfer_cap: Mapping[str, Decimal] | None = None,
        sessions: sessionmaker[Session] | None = None,
        rules: RuleStore | None = None,
        valuer: Valuer | None = None,
        tokens: TokenReader | None = None,
        default_country: str | None = None,
        clock: Clock = time.time,
    ) -> None:
        self._sanctioned = frozenset(k for k in (address_key(a) for a in sanctioned) if k)
        self._caps = {k.upper(): v for k, v in (per_transfer_cap or {}).items()}
        self._sessions = sessions
        self.rules = rules
        self._valuer = valuer
        self.tokens = tokens
        self.default_country = default_country.upper() if default_country else None
        self._clock = clock
        self.directory = Directory(sessions) if sessions is not None else None
        self.screen_lists = SanctionsScreen(sessions) if sessions is not None else None

    @property
    def full(self) -> bool:
        """Whether jurisdiction rules, limits and the audit trail apply (a database and rules)."""
        return self._sessions is not None and self.rules is not None

    def _now(self) -> datetime:
        return datetime.fromtimestamp(self._clock(), UTC)

    # -- the entry points -----------------------------------------------------------------------
    def check(self, movement: Movement) -> Decision:
        """Decide, record the decision and reserve its value against the sender's limits."""
        return self.conclude(self.screen(movement))

    async def acheck(self, movement: Movement) -> Decision:
        """:meth:`check` off the event loop (it reads the chain and writes the database)."""
        await self.prefetch(movement)
        return await asyncio.to_thread(self.check, movement)

    async def prefetch(self, movement: Movement) -> None:
        """Read ahead, on the caller's event loop, what :meth:`screen` will ask of the chain
        (the parties' blacklist flags): coalesced with the loop's other reads, where the
        screen's own read would be a blocking round trip from its thread."""
        reader: object = self.tokens
        if isinstance(reader, PrefetchingTokenReader):
            parties = (movement.from_address, movement.to_address)
            await reader.prefetch(movement.symbol, parties)

    def screen_in_place(self, movement: Movement) -> Screening | None:
        """:meth:`screen` run where it is called (the event loop), when it can finish without
        waiting: its database reads run in place there (``db.offload``, a SQLite file) and
        what it asks of the chain is in the token reader's cache (:meth:`prefetch` put the
        parties' flags there). ``None`` when it cannot: run :meth:`screen` in a thread."""
        if self._sessions is None or not offload.reads_in_place(self._sessions):
            return None
        try:
            with from_cache_only():
                return self.screen(movement)
        except NotCached:
            return None

    def screen(
        self, movement: Movement, *, country: str | None = None, tier: int | None = None
    ) -> Screening:
        """The first half of :meth:`check`, with no lock and no write: who the parties are, the
        lists, the chain, the jurisdiction's status, features and tokens.

        Hand the :class:`Screening` to :meth:`decide` inside the database transaction that makes
        the movement (its reservation and decision then commit with it, or not at all), or to
        :meth:`conclude` for a transaction of its own.
        """
        if not self.full:
            return Screening(movement, settled=self._first_version(movement))
        assert self._sessions is not None
        assert self.rules is not None
        assert self.directory is not None
        assert self.screen_lists is not None
        book = self.rules.book
        with self._sessions() as db:
            if movement.recipient_user_id:
                parties = self.directory.persons((movement.user_id, movement.recipient_user_id), db)
                sender = parties.get(movement.user_id)
                recipient = parties.get(movement.recipient_user_id)
            else:
                sender = self.directory.person(movement.user_id, db)
                recipient = (
                    None
                    if movement.recipient_resolved
                    else self.directory.person_by_address(movement.to_address, db)
                )
            hits = self.screen_lists.hits([movement.from_address, movement.to_address], db)
        placed = place(sender, movement.user_id, book, self.default_country)
        if country is not None:
            given = country.upper()
            placed = replace(
                placed, country=given, country_source="given", jurisdiction=book.for_country(given)
            )
        if tier is not None:
            placed = replace(placed, tier=tier)
        rules = placed.jurisdiction
        value = self._value(movement, rules) if rules is not None else None
        verdict = (
            self._file_sanctions(movement)
            or self._listed(movement, hits)
            or self._blacklisted(movement)
            or self._jurisdiction(movement, placed)
            or self._recipient(movement, recipient, book)
            or self._cap(movement)
            or (self._unvalued(movement, rules) if value is None and rules is not None else None)
        )
        context = _Context(movement, placed, value, book.version, uuid.uuid4().hex)
        return Screening(movement, context=context, recipient=recipient, verdict=verdict)

    def decide(self, db: Session, screening: Screening) -> Decision:
        """The second half of :meth:`check`, in the caller's write transaction ``db``.

        Takes the sender's lock (every movement of theirs queues here until ``db`` commits),
        checks the rolling limits and the travel rule, reserves the value when allowed, and
        records the decision — all in ``db``: a caller that stores its movement in the same
        transaction commits the movement, its reservation and its decision together. A caller
        must commit ``db`` whatever the answer (a refusal's record is the audit trail) and
        store nothing when the answer is not *allowed*.
        """
        if screening.settled is not None:
            return screening.settled  # the first version: nothing to record or reserve
        context = screening.context
        assert context is not None
        assert self.directory is not None
        verdict = screening.verdict
        if verdict is None:
            rules = context.placed.jurisdiction
            value = context.value
            assert rules is not None
            assert value is not None
            movement = context.movement
            # The per-user lock: every movement of this user queues here until we commit. The
            # profile row is the lock; a user's first movement makes it, then takes it. SQLite
            # has no row locks (SQLAlchemy drops FOR UPDATE there): a writer holds the whole
            # file from BEGIN IMMEDIATE, so the statement would only lengthen that hold.
            if db.get_bind().dialect.name != "sqlite":
                lock = (
                    select(ComplianceProfile.user_id)
                    .where(ComplianceProfile.user_id == movement.user_id)
                    .with_for_update()
                )
                if db.scalar(lock) is None:
                    self.directory.ensure_profile(db, movement.user_id)
                    db.execute(lock)
            verdict = self._limits(db, context, rules, value) or self._travel(
                db, context, rules, value, screening.recipient
            )
            if verdict is None:
                verdict = _Verdict(Outcome.ALLOW, "allowed", "", travel=context.travel)
                insert_now(
                    db,
                    Usage(
                        id=context.decision_id,
                        user_id=movement.user_id,
                        jurisdiction=rules.code,
                        currency=rules.currency,
                        value_minor=minor_units(value, rules.currency),
                        status=UsageStatus.RESERVED.value,
                        reference=(movement.reference or "")[:255] or None,
                        created_at=self._now(),
                    ),
                )
        self._record(db, context, verdict)
        return context.decision(verdict, recorded=True)

    def conclude(self, screening: Screening) -> Decision:
        """:meth:`decide` in a write transaction of its own (a movement stored elsewhere, or a
        screening that refused already)."""
        if screening.settled is not None:
            return screening.settled
        assert self._sessions is not None
        with self._sessions.begin() as db:
            db.connection(execution_options=_WRITE)
            return self.decide(db, screening)

    def evaluate(
        self, movement: Movement, *, country: str | None = None, tier: int | None = None
    ) -> Decision:
        """What :meth:`check` would decide, optionally as a user of ``country`` at ``tier``;
        nothing is recorded, reserved or alerted (the operator's ``compliance check``)."""
        screening = self.screen(movement, country=country, tier=tier)
        if screening.settled is not None:
            return screening.settled
        context = screening.context
        assert context is not None
        assert self._sessions is not None
        verdict = screening.verdict
        if verdict is None:
            rules, value = context.placed.jurisdiction, context.value
            assert rules is not None
            assert value is not None
            with self._sessions() as db:
                verdict = self._limits(db, context, rules, value) or self._travel(
                    db, context, rules, value, screening.recipient
                )
        return context.decision(verdict or _Verdict(Outcome.ALLOW, "allowed", ""), recorded=False)

    def commit(self, decision_id: str) -> bool:
        """The movement happened: its reservation stays counted for good."""
        return self._settle(Usage.id == decision_id, UsageStatus.COMMITTED)

    def release(self, decision_id: str) -> bool:
        """The movement will not happen (failed, expired, refused later): free its reservation."""
        return self._settle(Usage.id == decision_id, UsageStatus.RELEASED)

    def release_reference(self, reference: str) -> bool:
        """:meth:`release` by the caller's own reference for the movement."""
        return self._settle(Usage.reference == reference, UsageStatus.RELEASED)

    def _settle(self, where: Any, status: UsageStatus) -> bool:
        if self._sessions is None:
            return False
        allowed_from = [s.value for s, nexts in USAGE_TRANSITIONS.items() if status in nexts]
        with self._sessions.begin() as db:
            db.connection(execution_options=_WRITE)
            done = db.execute(
                update(Usage)
                .where(where, Usage.status.in_(allowed_from))
                .values(status=status.value, settled_at=self._now())
                .execution_options(synchronize_session=False)
            )
        return bool(getattr(done, "rowcount", 0))

    def placement(self, user_id: str) -> Placement:
        """Where ``user_id`` belongs now, and their tier."""
        if self.directory is None or self.rules is None:
            raise RuntimeError("the gate has no database or rules")
        person = self.directory.person(user_id)
        return place(person, user_id, self.rules.book, self.default_country)

    def usage(self, user_id: str, currency: str) -> UsedLimits:
        """What the user has used of their rolling limits, in ``currency`` minor units."""
        if self._sessions is None:
            return UsedLimits(0, 0)
        with self._sessions() as db:
            return self._usage(db, user_id, currency)

    # -- the first version (no database) --------------------------------------------------------
    def _first_version(self, movement: Movement) -> Decision:
        verdict = self._file_sanctions(movement) or self._cap(movement)
        if verdict is None:
            return ALLOW
        return Decision(False, verdict.rule, verdict.reason)

    def _file_sanctions(self, movement: Movement) -> _Verdict | None:
        if address_key(movement.from_address) in self._sanctioned:
            return _sender_sanctioned(movement.from_address, "the configured sanctions file")
        if address_key(movement.to_address) in self._sanctioned:
            return _recipient_sanctioned(movement.to_address, "the configured sanctions file")
        return None

    def _cap(self, movement: Movement) -> _Verdict | None:
        cap = self._caps.get(movement.symbol.upper())
        if cap is not None and movement.amount_units > int(cap * (10**movement.decimals)):
            return _Verdict(
                Outcome.DENY,
                "limits.per_transfer",
                f"the most you can send in one transfer is {cap:,} {movement.symbol}",
            )
        return None

    # -- the full gate --------------------------------------------------------------------------
    def _value(self, movement: Movement, rules: JurisdictionRules) -> Decimal | None:
        if self._valuer is None:
            return None
        return self._valuer(movement.amount, movement.symbol.upper(), rules.currency)

    @staticmethod
    def _unvalued(movement: Movement, rules: JurisdictionRules) -> _Verdict:
        return _Verdict(
            Outcome.DENY,
            "limits.valuation",
            f"{movement.symbol} cannot be valued in {rules.currency} right now, so its limits "
            "cannot be checked; try again later",
        )

    def _listed(self, movement: Movement, hits: list[Hit]) -> _Verdict | None:
        keys = {h.key: h for h in hits}
        sender = keys.get(address_key(movement.from_address) or "")
        if sender is not None:
            return _sender_sanctioned(movement.from_address, _describe(sender))
        recipient = keys.get(address_key(movement.to_address) or "")
        if recipient is not None:
            return _recipient_sanctioned(movement.to_address, _describe(recipient))
        return None

    def _blacklisted(self, movement: Movement) -> _Verdict | None:
        if self.tokens is None:
            return None
        for side, address in (
            ("sender", movement.from_address),
            ("recipient", movement.to_address),
        ):
            try:
                listed = self.tokens.is_blacklisted(movement.symbol.upper(), address)
            except NotCached:
                raise  # screen_in_place: the screening goes to a thread
            except Exception:  # a read that fails must not stop the gate: the chain will refuse
                log.warning("compliance: the issuer blacklist could not be read", exc_info=True)
                listed = None
            if listed:
                reason = (
                    f"the issuer of {movement.symbol} has blocked your address: the token would "
                    "refuse this transfer; contact support"
                    if side == "sender"
                    else f"the issuer of {movement.symbol} has blocked this recipient's address: "
                    "the token would refuse this transfer"
                )
                return _Verdict(
                    Outcome.DENY,
                    f"issuer_blacklist.{side}",
                    reason,
                    alert=(
                        "issuer_blacklist",
                        "high",
                        address,
                        f"{movement.symbol} issuer blacklist: {side} {address}",
                    ),
                )
        return None

    def _jurisdiction(  # noqa: PLR0911 - one return per rule, in the order they apply
        self, movement: Movement, placed: Placement
    ) -> _Verdict | None:
        rules = placed.jurisdiction
        if placed.country is None:
            return _Verdict(
                Outcome.DENY,
                "jurisdiction.unknown",
                "we don't know which country's rules apply to you yet: verify your phone number "
                "in your wallet, then try again",
            )
        if rules is None:
            return _Verdict(
                Outcome.DENY,
                "jurisdiction.not_served",
                f"seiwallet is not available in your country ({placed.country}) yet",
            )
        if rules.status is not Status.LIVE:
            return _Verdict(
                Outcome.DENY,
                f"jurisdiction.{rules.status.value}",
                rules.notice or f"seiwallet is not available in {rules.name} yet",
                translations=dict(rules.notice_translations) if rules.notice else None,
            )
        feature = FEATURE_OF.get(movement.kind)
        if feature is None:
            return _Verdict(
                Outcome.DENY, "kind.unknown", f"{movement.kind!r} is not a movement the rules know"
            )
        if not rules.features.enabled(feature):
            return _Verdict(
                Outcome.DENY,
                f"features.{feature.value}",
                f"{_FEATURE_NAMES[feature]} not available in {rules.name}",
            )
        if not rules.allows_token(movement.symbol):
            offered = ", ".join(rules.tokens.allowed) or "none"
            return _Verdict(
                Outcome.DENY,
                "tokens.not_allowed",
                f"{movement.symbol.upper()} is not offered in {rules.name} (offered: {offered})",
            )
        return None

    def _recipient(
        self, movement: Movement, recipient: Person | None, book: Any
    ) -> _Verdict | None:
        if recipient is None:
            return None
        placed = place(recipient, recipient.user_id, book, self.default_country)
        rules = placed.jurisdiction
        if rules is None or rules.status is not Status.LIVE:
            return _Verdict(
                Outcome.DENY,
                "recipient.unavailable",
                "this person can't receive money yet: seiwallet is not available in their country",
            )
        cap = rules.tier(placed.tier).balance_cap
        if cap is None or self.tokens is None or recipient.wallet_address is None:
            return None
        holdings = self.tokens.holdings(recipient.wallet_address)
        if holdings is None or self._valuer is None:
            return None
        total = Decimal(0)
        for symbol, amount in {**holdings}.items():
            worth = self._valuer(amount, symbol, rules.currency)
            total += worth if worth is not None else Decimal(0)
        incoming = self._valuer(movement.amount, movement.symbol.upper(), rules.currency)
        if incoming is not None and total + incoming > cap:
            return _Verdict(
                Outcome.DENY,
                "limits.recipient_balance_cap",
                "this person's wallet can't hold that much yet; they can raise their limit by "
                "verifying their identity in seiwallet",
            )
        return None

    def _usage(self, db: Session, user_id: str, currency: str) -> UsedLimits:
        now = self._now()
        day, month = db.execute(
            _USED,
            {"user_id": user_id, "currency": currency, "day": now - DAY, "month": now - MONTH},
        ).one()
        return UsedLimits(int(day), int(month))

    def _limits(
        self, db: Session, context: _Context, rules: JurisdictionRules, value: Decimal
    ) -> _Verdict | None:
        limits = rules.tier(context.placed.tier)
        currency = rules.currency
        if not limits.can_send:
            return _Verdict(
                Outcome.DENY,
                f"limits.tier_{context.placed.tier}",
                "your account can't send money yet: "
                + (
                    "verify your identity in Limits to start"
                    if context.placed.tier < 2
                    else "contact support"
                ),
            )
        if limits.per_transfer is not None and value > limits.per_transfer:
            return _Verdict(
                Outcome.DENY,
                "limits.per_transfer",
                f"the most you can send in one transfer is {money(limits.per_transfer, currency)}"
                f" (this one is worth {money(value, currency)})",
            )
        used = self._usage(db, context.movement.user_id, currency)
        wanted = minor_units(value, currency)
        for rule, limit, spent, span in (
            ("limits.per_day", limits.per_day, used.day, "24 hours"),
            ("limits.per_month", limits.per_month, used.month, "30 days"),
        ):
            if limit is None or spent + wanted <= minor_units(limit, currency):
                continue
            left = max(Decimal(0), limit - from_minor(spent, currency))
            return _Verdict(
                Outcome.DENY,
                rule,
                f"this would take you over your limit of {money(limit, currency)} in "
                f"{span}: you can send {money(left, currency)} more now",
                alert=(
                    "limit_breach",
                    "low",
                    None,
                    f"{rule}: {money(from_minor(spent, currency), currency)} used, "
                    f"{money(value, currency)} asked, limit {money(limit, currency)}",
                ),
            )
        return None

    def _travel(
        self,
        db: Session,
        context: _Context,
        rules: JurisdictionRules,
        value: Decimal,
        recipient: Person | None,
    ) -> _Verdict | None:
        movement = context.movement
        originator = _party(context.placed.person, movement.from_address, context.placed.country)
        if recipient is not None or movement.kind in _ON_PLATFORM_KINDS:
            # Both parties are ours: the data travels in our own records.
            context.travel = {
                "originator": originator,
                "beneficiary": _party(recipient, movement.to_address, None)
                if recipient is not None
                else {"address": movement.to_address, "on_platform": True},
            }
            return None
        travel_rule = rules.travel_rule
        threshold = self._in(travel_rule.threshold, travel_rule.currency, rules.currency)
        if value < threshold:
            return None
        key = address_key(movement.to_address)
        found = None
        for record in db.scalars(
            select(TravelRuleRecord).where(TravelRuleRecord.user_id == movement.user_id)
        ):
            if address_key(record.address) == key:
                found = record
                break
        proof_threshold = self._in(
            travel_rule.self_hosted_proof_threshold, travel_rule.currency, rules.currency
        )
        if found is None:
            which = (
                "transfers leaving seiwallet need"
                if threshold == 0
                else f"transfers of {money(threshold, rules.currency)} or more leaving seiwallet "
                "need"
            )
            proof = value > proof_threshold
            return _Verdict(
                Outcome.NEEDS_INFORMATION,
                "travel_rule.beneficiary",
                f"{which} the recipient's name and the kind of wallet"
                + (", and for a wallet of your own, proof that it is yours" if proof else "")
                + ": add them under Limits → Recipient details, then send again",
                needs=("beneficiary_name", "wallet_type")
                + (("ownership_proof_if_self_hosted",) if proof else ()),
            )
        if found.wallet_type == "self_hosted" and value > proof_threshold and not found.proven_at:
            return _Verdict(
                Outcome.NEEDS_INFORMATION,
                "travel_rule.ownership_proof",
                f"above {money(proof_threshold, rules.currency)} to a self-hosted wallet, prove "
                "the wallet is yours by signing a message with it (Limits → Recipient details), "
                "then send again",
                needs=("ownership_proof",),
            )
        context.travel = {
            "originator": originator,
            "beneficiary": {
                "address": found.address,
                "name": found.beneficiary_name,
                "wallet_type": found.wallet_type,
                "provider": found.provider_name or None,
                "is_originator": found.beneficiary_is_originator,
                "ownership_proven_at": as_utc(found.proven_at).isoformat()
                if found.proven_at
                else None,
                "record_id": found.id,
            },
        }
        return None

    def _in(self, amount: Decimal, currency: str, target: str) -> Decimal:
        if currency == target or self._valuer is None:
            return amount
        # A threshold in another currency, through the token pegs' rates: value it as that
        # currency's own stablecoin would be (EUR via EURC, USD via USDC).
        symbol = {"EUR": "EURC", "USD": "USDC"}.get(currency)
        converted = self._valuer(amount, symbol, target) if symbol else None
        return converted if converted is not None else amount

    def _record(self, db: Session, context: _Context, verdict: _Verdict) -> None:
        movement = context.movement
        rules = context.placed.jurisdiction
        currency = rules.currency if rules else None
        insert_now(
            db,
            DecisionRecord(
                id=context.decision_id,
                created_at=self._now(),
                user_id=movement.user_id[:32],
                kind=movement.kind[:32],
                outcome=verdict.outcome.value,
                rule=verdict.rule[:64],
                reason=verdict.reason[:600],
                jurisdiction=context.placed.jurisdiction_code,
                country=context.placed.country,
                tier=context.placed.tier,
                from_address=movement.from_address[:64],
                to_address=movement.to_address[:64],
                symbol=movement.symbol.upper()[:16],
                amount_units=movement.amount_units,
                value_minor=minor_units(context.value, currency)
                if context.value is not None and currency
                else None,
                currency=currency,
                needs=",".join(verdict.needs)[:300],
                reference=(movement.reference or "")[:255] or None,
                travel=json.dumps(
                    verdict.travel or context.travel, sort_keys=True, ensure_ascii=False
                )
                if (verdict.travel or context.travel)
                else None,
                rules_version=context.rules_version,
            ),
        )
        if verdict.alert is not None:
            kind, severity, address, detail = verdict.alert
            db.add(
                Alert(
                    id=uuid.uuid4().hex,
                    created_at=self._now(),
                    kind=kind,
                    severity=severity,
                    user_id=movement.user_id[:32],
                    decision_id=context.decision_id,
                    address=address[:64] if address else None,
                    detail=detail[:600],
                )
            )
            alerts_log.warning(
                "compliance alert %s (%s) for user %s: %s", kind, severity, movement.user_id, detail
            )
        log.info(
            "compliance %s %s for user %s: %s",
            movement.kind,
            verdict.outcome.value,
            movement.user_id,
            verdict.rule,
        )


_FEATURE_NAMES: Final = {
    Feature.WALLET: "the wallet is",
    Feature.P2P: "sending money to people is",
    Feature.MERCHANT_PAYMENTS: "paying merchants is",
    Feature.REWARDS: "rewards are",
}


@dataclass
class _Context:
    movement: Movement
    placed: Placement
    value: Decimal | None
    rules_version: str
    decision_id: str
    travel: dict[str, Any] | None = None

    def decision(self, verdict: _Verdict, *, recorded: bool) -> Decision:
        rules = self.placed.jurisdiction
        return Decision(
            allowed=verdict.outcome is Outcome.ALLOW,
            rule=verdict.rule,
            reason=verdict.reason,
            outcome=verdict.outcome,
            id=self.decision_id if recorded else None,
            needs=verdict.needs,
            jurisdiction=self.placed.jurisdiction_code,
            country=self.placed.country,
            tier=self.placed.tier,
            value=self.value,
            currency=rules.currency if rules else None,
            rules_version=self.rules_version,
            travel=verdict.travel or self.travel,
            translations=verdict.translations,
        )


def _party(person: Person | None, address: str, country: str | None) -> dict[str, Any]:
    if person is None:
        return {"address": address}
    return {
        "user_id": person.user_id,
        "name": person.display_name,
        "address": address,
        "country": country,
    }


def _describe(hit: Hit) -> str:
    entry = f" ({hit.entry})" if hit.entry else ""
    return f"list {hit.list_name}{entry}"


def _sender_sanctioned(address: str, where: str) -> _Verdict:
    return _Verdict(
        Outcome.DENY,
        "sanctions.sender",
        "this wallet cannot send money right now; contact support",
        alert=("sanctions_hit", "high", address, f"sender {address} is on {where}"),
    )


def _recipient_sanctioned(address: str, where: str) -> _Verdict:
    return _Verdict(
        Outcome.DENY,
        "sanctions.recipient",
        "this recipient cannot be paid: the address is on a sanctions list",
        alert=("sanctions_hit", "high", address, f"recipient {address} is on {where}"),
    )
