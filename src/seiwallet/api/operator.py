"""The operator console (``/operator``): jurisdictions and their rules, people by tier and
country, the decisions log, alerts, and the decisions as CSV for a regulator.

Who is an operator is configuration, not data a web request can change:
``SEIWALLET_WEB__OPERATORS`` lists user ids or e-mail addresses (an address counts only once the
user has verified it). Anyone else is answered "not found", as if the console did not exist.
Changes here are few and deliberate (acknowledge an alert, place a person in a country, reload
the rule files); each is a CSRF-checked form of a signed-in operator, and is logged.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from fastapi import APIRouter, Request
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response, StreamingResponse

from seiwallet.accounts.sessions import SessionInfo
from seiwallet.api.auth import current_session, optional_session, services
from seiwallet.api.compliance import compliance_of
from seiwallet.api.pages import _form, _redirect, render
from seiwallet.api.services import Services
from seiwallet.compliance.errors import ComplianceError, NotAnOperator, UnknownJurisdiction
from seiwallet.compliance.gate import from_minor
from seiwallet.compliance.jurisdictions import Status, rules_json
from seiwallet.compliance.models import Outcome
from seiwallet.compliance.services import DecisionFilter

log = logging.getLogger(__name__)

router = APIRouter(prefix="/operator")
_OUTCOMES: Final = tuple(o.value for o in Outcome)


def is_operator(svc: Services, session: SessionInfo) -> bool:
    allowed = {entry.strip().lower() for entry in svc.settings.web.operators if entry.strip()}
    if session.user_id.lower() in allowed:
        return True
    return bool(session.email and session.email_verified and session.email.lower() in allowed)


async def _operator(request: Request, *, change: bool = False) -> SessionInfo:
    """The signed-in operator (a change also passes the CSRF checks), else "not found"."""
    session = await (current_session(request) if change else optional_session(request))
    if session is None or not is_operator(services(request), session):
        raise NotAnOperator
    return session


def _who(session: SessionInfo) -> str:
    return session.email or session.user_id


async def _console(request: Request, name: str, session: SessionInfo, **context: Any) -> Response:
    compliance = compliance_of(services(request))
    return render(
        request,
        f"operator/{name}.html",
        session,
        section=name,
        open_alerts=await run_in_threadpool(compliance.open_alerts),
        operator=_who(session),
        **context,
    )


@router.get("")
async def console(request: Request, error: str | None = None) -> Response:
    session = await _operator(request)
    compliance = compliance_of(services(request))
    book = compliance.book
    people = await run_in_threadpool(compliance.people)
    counts = await run_in_threadpool(compliance.decision_counts)
    jurisdictions = [
        {
            "code": rules.code,
            "name": rules.name,
            "status": rules.status.value,
            "launch_date": rules.launch_date,
            "currency": rules.currency,
            "countries": len(rules.countries),
            "tokens": ", ".join(rules.tokens.allowed) or "—",
            "people": sum(1 for p in people if p.jurisdiction == rules.code),
        }
        for rules in sorted(book.jurisdictions.values(), key=lambda r: r.code)
    ]
    return await _console(
        request,
        "console",
        session,
        jurisdictions=jurisdictions,
        version=book.version,
        counts={o: counts.get(o, 0) for o in _OUTCOMES},
        unplaced=sum(1 for p in people if p.jurisdiction is None),
        error=error[:300] if error else None,
    )


@router.post("/rules/reload")
async def reload_rules(request: Request) -> Response:
    session = await _operator(request, change=True)
    compliance = compliance_of(services(request))
    try:
        changed = await run_in_threadpool(compliance.reload_rules)
    except ComplianceError as exc:
        log.warning("operator %s: rule reload refused: %s", _who(session), exc)
        return await console(request, error=str(exc))
    log.info("operator %s reloaded the rules (changed: %s)", _who(session), changed)
    return _redirect("/operator")


@router.get("/jurisdictions/{code}")
async def jurisdiction(request: Request, code: str) -> Response:
    session = await _operator(request)
    compliance = compliance_of(services(request))
    try:
        rules = compliance.book.resolve(code[:8])
    except UnknownJurisdiction as exc:
        raise NotAnOperator from exc
    history = await run_in_threadpool(compliance.rule_history, rules.code)
    diff = await run_in_threadpool(compliance.last_diff, rules.code)
    data = rules_json(rules)
    return await _console(
        request,
        "jurisdiction",
        session,
        rules=rules,
        data=data,
        live=rules.status is Status.LIVE,
        file=compliance.book.files[rules.code],
        history=history,
        diff_lines=[
            {
                "text": line,
                "kind": "add"
                if line.startswith("+") and not line.startswith("+++")
                else "del"
                if line.startswith("-") and not line.startswith("---")
                else "meta"
                if line.startswith(("@@", "+++", "---"))
                else "same",
            }
            for line in (diff or "").splitlines()
        ],
    )


@router.get("/users")
async def users(
    request: Request, jurisdiction: str | None = None, tier: str | None = None
) -> Response:
    session = await _operator(request)
    compliance = compliance_of(services(request))
    people = await run_in_threadpool(compliance.people)
    summary = compliance.people_summary(people)
    shown = [
        p
        for p in people
        if (not jurisdiction or (p.jurisdiction or "—") == jurisdiction)
        and (not tier or str(p.tier) == tier)
    ]
    return await _console(
        request,
        "users",
        session,
        summary=summary,
        people=shown[:500],
        filters={"jurisdiction": jurisdiction or "", "tier": tier or ""},
        codes=compliance.book.codes(),
    )


@router.post("/users/{user_id}/country")
async def assign_country(request: Request, user_id: str) -> Response:
    session = await _operator(request, change=True)
    compliance = compliance_of(services(request))
    form = await _form(request)
    country = form.get("country", "").strip() or None
    assert compliance.gate.directory is not None
    await run_in_threadpool(
        compliance.gate.directory.assign_country, user_id[:32], country, _who(session)
    )
    log.info("operator %s placed user %s in %s", _who(session), user_id[:32], country)
    return _redirect("/operator/users")


def _filters(outcome: str, jurisdiction: str, rule: str, user: str, days: str) -> DecisionFilter:
    since = None
    if days and days.isdigit() and 0 < int(days) <= 3650:
        since = datetime.now(UTC) - timedelta(days=int(days))
    return DecisionFilter(
        outcome=outcome if outcome in _OUTCOMES else None,
        jurisdiction=jurisdiction[:8] or None,
        rule=rule[:64] or None,
        user_id=user[:32] or None,
        since=since,
    )


def _query(request: Request) -> dict[str, str]:
    """The decisions log's filters from the query string (unknown values are ignored)."""
    names = ("outcome", "jurisdiction", "rule", "user", "days")
    return {name: request.query_params.get(name, "")[:64] for name in names}


@router.get("/decisions")
async def decisions(request: Request) -> Response:
    session = await _operator(request)
    compliance = compliance_of(services(request))
    given = _query(request)
    filters = _filters(**given)
    rows = await run_in_threadpool(compliance.decisions, filters)
    query = request.url.query
    return await _console(
        request,
        "decisions",
        session,
        rows=[
            {
                "id": r.id,
                "created_at": r.created_at,
                "user_id": r.user_id,
                "kind": r.kind,
                "outcome": r.outcome,
                "rule": r.rule,
                "reason": r.reason,
                "jurisdiction": r.jurisdiction or "—",
                "tier": r.tier,
                "to": r.to_address,
                "symbol": r.symbol,
                "amount": _token_amount(r.amount_units),
                "value": f"{from_minor(r.value_minor, r.currency)} {r.currency}"
                if r.value_minor is not None and r.currency
                else "—",
                "travel": bool(r.travel),
            }
            for r in rows
        ],
        filters={**given, "outcome": filters.outcome or ""},
        outcomes=_OUTCOMES,
        codes=compliance.book.codes(),
        csv_url="/operator/decisions.csv" + (f"?{query}" if query else ""),
    )


def _token_amount(units: int, decimals: int = 6) -> str:
    whole, frac = divmod(units, 10**decimals)
    text = f"{whole:,}.{frac:0{decimals}d}".rstrip("0")
    return text.removesuffix(".") if text.endswith(".") else text


@router.get("/decisions.csv")
async def decisions_csv(request: Request) -> Response:
    session = await _operator(request)
    compliance = compliance_of(services(request))
    filters = _filters(**_query(request))
    lines = await run_in_threadpool(lambda: list(compliance.decisions_csv(filters)))
    log.info("operator %s exported %d decisions", _who(session), len(lines) - 1)
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    return StreamingResponse(
        iter(lines),
        media_type="text/csv; charset=utf-8",
        headers={
            "Content-Disposition": f'attachment; filename="seiwallet-decisions-{stamp}.csv"',
            "Cache-Control": "no-store",
        },
    )


@router.get("/alerts")
async def alerts(request: Request, show: str | None = None) -> Response:
    session = await _operator(request)
    compliance = compliance_of(services(request))
    open_only = show != "all"
    found = await run_in_threadpool(lambda: compliance.alerts(open_only=open_only))
    return await _console(
        request,
        "alerts",
        session,
        alerts=found,
        open_only=open_only,
    )


@router.post("/alerts/{alert_id}/acknowledge")
async def acknowledge(request: Request, alert_id: str) -> Response:
    session = await _operator(request, change=True)
    compliance = compliance_of(services(request))
    await run_in_threadpool(compliance.acknowledge, alert_id[:32], _who(session))
    log.info("operator %s acknowledged alert %s", _who(session), alert_id[:32])
    return _redirect("/operator/alerts")
