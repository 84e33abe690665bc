"""The compliance domain's use cases for the edges: limits, notices, rule history, the console.

:class:`ComplianceService` holds the rules in force, the gate, the travel-rule and KYC services
and the sanctions screen, and answers what the wallet shows a person (their limits, what is
unavailable where they are and why) and what the operator console shows (rules and the diff of
their last change, people by tier and country, decisions, alerts, the regulator's CSV).
"""

from __future__ import annotations

import csv
import difflib
import io
import logging
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any, Final

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session, sessionmaker

from seiwallet.compliance.gate import (
    ComplianceGate,
    TokenReader,
    UsedLimits,
    Valuer,
    from_minor,
)
from seiwallet.compliance.jurisdictions import (
    NOTICE_DEFAULT_LANGUAGE,
    JurisdictionRules,
    RuleBook,
    RuleStore,
    Status,
    TierLimits,
)
from seiwallet.compliance.kyc import KycProvider, KycService
from seiwallet.compliance.models import Alert, DecisionRecord, RuleVersion
from seiwallet.compliance.placement import Placement, place
from seiwallet.compliance.sanctions import (
    LoadedList,
    SanctionsScreen,
    parse_csv,
    parse_ofac_xml,
)
from seiwallet.compliance.travelrule import TravelRuleService
from seiwallet.db import SQLITE_BEGIN, as_utc

log = logging.getLogger(__name__)

_WRITE: Final = {SQLITE_BEGIN: "IMMEDIATE"}
OFAC_LIST: Final = "ofac-sdn"
CSV_LIST: Final = "csv"
#: Decision rows a page or an export reads at most.
MAX_ROWS: Final = 10_000


@dataclass(frozen=True)
class Notice:
    """What a person is told when they cannot use the platform where they are."""

    kind: str  # "pending" | "blocked" | "not_served" | "unknown"
    title: str
    text: str
    jurisdiction: str | None
    #: The language ``text`` is written in (a BCP 47 tag): the reader's, or English.
    lang: str = NOTICE_DEFAULT_LANGUAGE


@dataclass(frozen=True)
class TierView:
    tier: int
    limits: TierLimits
    current: bool


@dataclass(frozen=True)
class LimitsView:
    placement: Placement
    rules: JurisdictionRules | None
    tiers: list[TierView]
    used: UsedLimits
    #: What is left today and this month (None: no limit).
    left_day: Decimal | None
    left_month: Decimal | None
    notice: Notice | None

    @property
    def currency(self) -> str | None:
        return self.rules.currency if self.rules else None


@dataclass(frozen=True)
class RuleVersionView:
    id: int
    jurisdiction: str
    sha256: str
    loaded_at: datetime
    content: str


@dataclass(frozen=True)
class DecisionFilter:
    outcome: str | None = None
    jurisdiction: str | None = None
    user_id: str | None = None
    rule: str | None = None
    since: datetime | None = None
    until: datetime | None = None


@dataclass(frozen=True)
class PersonRow:
    user_id: str
    name: str
    email: str | None
    phone: str | None
    country: str | None
    country_source: str | None
    jurisdiction: str | None
    tier: int
    kyc_status: str


def notice_of(placement: Placement, language: str | None = None) -> Notice | None:
    """Why a person cannot use the platform where they are, or ``None`` when they can.

    The rule file's notice is given in ``language`` (a tag or locale code) where the file has
    that translation, else in English.
    """
    rules = placement.jurisdiction
    if placement.country is None:
        return Notice(
            "unknown",
            "We don't know your country yet",
            "Verify your phone number so we know which country's rules apply. Until then you "
            "can receive money but not send it.",
            None,
        )
    if rules is None:
        return Notice(
            "not_served",
            "seiwallet isn't available in your country",
            f"We don't serve {placement.country} yet. You can sign in and see your wallet, but "
            "you can't send or pay.",
            None,
        )
    if rules.status is Status.LIVE:
        return None
    title = (
        f"Coming soon to {rules.name}"
        if rules.status is Status.PENDING
        else f"seiwallet isn't available in {rules.name}"
    )
    text, lang = rules.notice_in(language)
    return Notice(rules.status.value, title, text, rules.code, lang)


class ComplianceService:
    """Everything compliance offers the edges, built once per process from its parts."""

    def __init__(
        self,
        sessions: sessionmaker[Session],
        rules: RuleStore,
        gate: ComplianceGate,
        *,
        kyc: KycService | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._sessions = sessions
        self.rules = rules
        self.gate = gate
        self.travel = TravelRuleService(sessions, clock=clock)
        self.kyc = kyc
        self.screen = SanctionsScreen(sessions)
        self._clock = clock

    def _now(self) -> datetime:
        return datetime.fromtimestamp(self._clock(), UTC)

    @property
    def book(self) -> RuleBook:
        return self.rules.book

    # -- rule versions --------------------------------------------------------------------------
    def record_rule_versions(self) -> list[str]:
        """Record each jurisdiction whose rule file changed since last recorded; their codes."""
        changed = []
        with self._sessions.begin() as db:
            db.connection(execution_options=_WRITE)
            for code, loaded in sorted(self.book.files.items()):
                latest = db.scalars(
                    select(RuleVersion)
                    .where(RuleVersion.jurisdiction == code)
                    .order_by(RuleVersion.id.desc())
                    .limit(1)
                ).first()
                if latest is not None and latest.sha256 == loaded.sha256:
                    continue
                db.add(
                    RuleVersion(
                        jurisdiction=code,
                        sha256=loaded.sha256,
                        content=loaded.text,
                        loaded_at=self._now(),
                    )
                )
                changed.append(code)
        if changed:
            log.info("compliance rules recorded for %s (version %s)", changed, self.book.version)
        return changed

    def reload_rules(self) -> list[str]:
        """Read the rule files again (a bad file raises; the rules in force stay) and record."""
        self.rules.reload()
        return self.record_rule_versions()

    def rule_history(self, code: str, limit: int = 20) -> list[RuleVersionView]:
        with self._sessions() as db:
            rows = db.scalars(
                select(RuleVersion)
                .where(RuleVersion.jurisdiction == code.upper())
                .order_by(RuleVersion.id.desc())
                .limit(limit)
            ).all()
            return [
                RuleVersionView(r.id, r.jurisdiction, r.sha256, as_utc(r.loaded_at), r.content)
                for r in rows
            ]

    def last_diff(self, code: str) -> str | None:
        """The unified diff of the jurisdiction's last recorded change (None: never changed)."""
        history = self.rule_history(code, limit=2)
        if len(history) < 2:
            return None
        new, old = history
        return "".join(
            difflib.unified_diff(
                old.content.splitlines(keepends=True),
                new.content.splitlines(keepends=True),
                fromfile=f"{code}.toml @ {old.loaded_at:%Y-%m-%d %H:%M} ({old.sha256[:12]})",
                tofile=f"{code}.toml @ {new.loaded_at:%Y-%m-%d %H:%M} ({new.sha256[:12]})",
            )
        )

    # -- what a person sees ---------------------------------------------------------------------
    def placement(self, user_id: str) -> Placement:
        return self.gate.placement(user_id)

    def notice(self, user_id: str, language: str | None = None) -> Notice | None:
        """What the person is told where they cannot use the platform, in ``language``."""
        return notice_of(self.placement(user_id), language)

    def limits(self, user_id: str, language: str | None = None) -> LimitsView:
        placed = self.placement(user_id)
        rules = placed.jurisdiction
        used = self.gate.usage(user_id, rules.currency) if rules else UsedLimits(0, 0)
        tiers = (
            [TierView(t, rules.tier(t), t == placed.tier) for t in sorted(rules.tiers)]
            if rules
            else []
        )
        left_day = left_month = None
        if rules is not None:
            mine = rules.tier(placed.tier)
            if mine.per_day is not None:
                left_day = max(Decimal(0), mine.per_day - from_minor(used.day, rules.currency))
            if mine.per_month is not None:
                left_month = max(
                    Decimal(0), mine.per_month - from_minor(used.month, rules.currency)
                )
        notice = notice_of(placed, language)
        return LimitsView(placed, rules, tiers, used, left_day, left_month, notice)

    # -- sanctions lists ------------------------------------------------------------------------
    def refresh_lists(
        self, *, ofac: Path | None = None, csv_file: Path | None = None
    ) -> list[LoadedList]:
        """Load OFAC's SDN XML and/or a CSV list from files (no network), each replacing its own."""
        loaded = []
        if ofac is not None:
            loaded.append(self.screen.replace(OFAC_LIST, str(ofac), parse_ofac_xml(ofac)))
        if csv_file is not None:
            loaded.append(self.screen.replace(CSV_LIST, str(csv_file), parse_csv(csv_file)))
        return loaded

    # -- the operator console -------------------------------------------------------------------
    def people(self, limit: int = 1_000) -> list[PersonRow]:
        assert self.gate.directory is not None
        rows = []
        for person in self.gate.directory.people(limit):
            placed = place(person, person.user_id, self.book, self.gate.default_country)
            rows.append(
                PersonRow(
                    user_id=person.user_id,
                    name=person.display_name or "",
                    email=person.email,
                    phone=person.phone if person.phone_verified else None,
                    country=placed.country,
                    country_source=placed.country_source,
                    jurisdiction=placed.jurisdiction_code,
                    tier=placed.tier,
                    kyc_status=person.kyc_status,
                )
            )
        return rows

    @staticmethod
    def people_summary(rows: list[PersonRow]) -> list[tuple[str, int, int]]:
        """(jurisdiction or "—", tier, count), by jurisdiction then tier."""
        counts = Counter((row.jurisdiction or "—", row.tier) for row in rows)
        return [(j, t, n) for (j, t), n in sorted(counts.items())]

    def _decision_query(self, filters: DecisionFilter) -> Any:
        query = select(DecisionRecord).order_by(DecisionRecord.created_at.desc())
        if filters.outcome:
            query = query.where(DecisionRecord.outcome == filters.outcome)
        if filters.jurisdiction:
            query = query.where(DecisionRecord.jurisdiction == filters.jurisdiction.upper())
        if filters.user_id:
            query = query.where(DecisionRecord.user_id == filters.user_id)
        if filters.rule:
            query = query.where(DecisionRecord.rule.startswith(filters.rule, autoescape=True))
        if filters.since:
            query = query.where(DecisionRecord.created_at >= filters.since)
        if filters.until:
            query = query.where(DecisionRecord.created_at < filters.until)
        return query

    def decisions(self, filters: DecisionFilter, limit: int = 200) -> list[DecisionRecord]:
        with self._sessions() as db:
            return list(db.scalars(self._decision_query(filters).limit(min(limit, MAX_ROWS))))

    def decision_counts(self, since: timedelta = timedelta(days=30)) -> dict[str, int]:
        with self._sessions() as db:
            rows = db.execute(
                select(DecisionRecord.outcome, func.count())
                .where(DecisionRecord.created_at >= self._now() - since)
                .group_by(DecisionRecord.outcome)
            ).all()
            return {str(outcome): int(count) for outcome, count in rows}

    def decisions_csv(self, filters: DecisionFilter) -> Iterator[str]:
        """The decisions log for a regulator: one row per decision, amounts exact."""
        header = [
            "decision_id",
            "created_at_utc",
            "user_id",
            "kind",
            "outcome",
            "rule",
            "reason",
            "jurisdiction",
            "country",
            "tier",
            "from_address",
            "to_address",
            "token",
            "amount_units",
            "value",
            "currency",
            "needs",
            "reference",
            "travel_rule_data",
            "rules_version",
        ]
        yield _csv_line(header)
        for row in self.decisions(filters, limit=MAX_ROWS):
            value = (
                str(from_minor(row.value_minor, row.currency))
                if row.value_minor is not None and row.currency
                else ""
            )
            yield _csv_line(
                [
                    row.id,
                    as_utc(row.created_at).strftime("%Y-%m-%d %H:%M:%S"),
                    row.user_id,
                    row.kind,
                    row.outcome,
                    row.rule,
                    row.reason,
                    row.jurisdiction or "",
                    row.country or "",
                    "" if row.tier is None else str(row.tier),
                    row.from_address,
                    row.to_address,
                    row.symbol,
                    str(row.amount_units),
                    value,
                    row.currency or "",
                    row.needs,
                    row.reference or "",
                    row.travel or "",
                    row.rules_version,
                ]
            )

    def alerts(self, *, open_only: bool = False, limit: int = 200) -> list[Alert]:
        with self._sessions() as db:
            query = select(Alert).order_by(Alert.created_at.desc()).limit(limit)
            if open_only:
                query = query.where(Alert.acknowledged_at.is_(None))
            return list(db.scalars(query))

    def open_alerts(self) -> int:
        with self._sessions() as db:
            return int(
                db.scalar(
                    select(func.count()).select_from(Alert).where(Alert.acknowledged_at.is_(None))
                )
                or 0
            )

    def acknowledge(self, alert_id: str, by: str) -> bool:
        with self._sessions.begin() as db:
            db.connection(execution_options=_WRITE)
            done = db.execute(
                update(Alert)
                .where(Alert.id == alert_id[:32], Alert.acknowledged_at.is_(None))
                .values(acknowledged_at=self._now(), acknowledged_by=by[:320])
                .execution_options(synchronize_session=False)
            )
        return bool(getattr(done, "rowcount", 0))


def _csv_line(cells: list[str]) -> str:
    out = io.StringIO()
    csv.writer(out).writerow([_csv_safe(cell) for cell in cells])
    return out.getvalue()


def _csv_safe(text: str) -> str:
    """A cell a spreadsheet will not run as a formula (CSV injection)."""
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


def build_compliance(
    sessions: sessionmaker[Session],
    *,
    rules_dir: Path | None = None,
    sanctioned: frozenset[str] = frozenset(),
    per_transfer_cap: dict[str, Decimal] | None = None,
    default_country: str | None = None,
    valuer: Valuer | None = None,
    tokens: TokenReader | None = None,
    kyc: KycProvider | None = None,
    clock: Callable[[], float] = time.time,
    record_versions: bool = True,
) -> ComplianceService:
    """The compliance service on a database: rules loaded (a bad file fails the start), their
    versions recorded, the gate with every rule type."""
    store = RuleStore(rules_dir) if rules_dir is not None else RuleStore()
    gate = ComplianceGate(
        sanctioned=sanctioned,
        per_transfer_cap=per_transfer_cap,
        sessions=sessions,
        rules=store,
        valuer=valuer,
        tokens=tokens,
        default_country=default_country,
        clock=clock,
    )
    assert gate.directory is not None
    service = ComplianceService(
        sessions,
        store,
        gate,
        kyc=KycService(gate.directory, kyc),
        clock=clock,
    )
    if record_versions:
        service.record_rule_versions()
    return service
