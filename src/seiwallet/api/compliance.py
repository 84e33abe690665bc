"""Compliance for the person using the wallet: their limits, the travel rule, identity checks.

JSON under ``/v1/compliance`` (limits, travel-rule data, ownership proofs) and the pages
``/limits`` (where they belong, their tier's limits and how to raise them),
``/limits/recipients`` (beneficiary details and self-hosted wallet proofs) and, on the local
profile only, the fake identity check. Thin: the domain is ``seiwallet.compliance``.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated, Any, Final

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool
from starlette.responses import JSONResponse, Response

from seiwallet.accounts.sessions import SessionInfo
from seiwallet.api.auth import current_session, services, services_dependency
from seiwallet.api.pages import _form, _redirect, _signed_in, error_page, locale_of, render
from seiwallet.api.services import Services
from seiwallet.compliance.errors import KycUnavailable, TravelRuleError
from seiwallet.compliance.jurisdictions import Feature, TierLimits
from seiwallet.compliance.kyc import FakeKycProvider
from seiwallet.compliance.models import KycStatus
from seiwallet.compliance.services import ComplianceService, LimitsView, Notice
from seiwallet.compliance.travelrule import Beneficiary, TravelRuleView
from seiwallet.web.i18n import current_locale, language_tag
from seiwallet.web.i18n import gettext as _
from seiwallet.web.payments import format_fiat

router = APIRouter()
api = APIRouter(prefix="/v1/compliance")

Svc = Annotated[Services, Depends(services_dependency)]
Caller = Annotated[SessionInfo, Depends(current_session)]
_MAX_ID: Final = 32


def compliance_of(svc: Services) -> ComplianceService:
    if svc.compliance is None:  # pragma: no cover - build_services always makes it
        raise KycUnavailable("compliance is not configured in this process")
    return svc.compliance


async def notice_for(svc: Services, user_id: str) -> Notice | None:
    """What a page tells a person who cannot use the platform where they are (or nothing), in
    the reader's language."""
    if svc.compliance is None:
        return None
    language = language_tag(current_locale())
    return await run_in_threadpool(svc.compliance.notice, user_id, language)


# -- JSON ----------------------------------------------------------------------------------------
class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class BeneficiaryBody(_Strict):
    address: str = Field(min_length=1, max_length=100)
    beneficiary_name: str = Field(min_length=1, max_length=200)
    wallet_type: str = Field(pattern=r"^(self_hosted|hosted)$")
    provider_name: str = Field(default="", max_length=200)
    beneficiary_is_originator: bool = False
    beneficiary_country: str | None = Field(default=None, max_length=2)


class ProofBody(_Strict):
    signature: str = Field(min_length=1, max_length=200)


def _amount(value: Decimal | None) -> str | None:
    return None if value is None else str(value)


def _limits_json(limits: TierLimits) -> dict[str, str | None]:
    return {
        "per_transfer": _amount(limits.per_transfer),
        "per_day": _amount(limits.per_day),
        "per_month": _amount(limits.per_month),
        "balance_cap": _amount(limits.balance_cap),
    }


def limits_json(view: LimitsView) -> dict[str, Any]:
    rules = view.rules
    placed = view.placement
    body: dict[str, Any] = {
        "country": placed.country,
        "country_source": placed.country_source,
        "jurisdiction": placed.jurisdiction_code,
        "status": rules.status.value if rules else None,
        "tier": placed.tier,
        "currency": view.currency,
        "notice": (
            {"kind": view.notice.kind, "text": view.notice.text, "lang": view.notice.lang}
            if view.notice
            else None
        ),
    }
    if rules is not None:
        body.update(
            tokens=list(rules.tokens.allowed),
            features={f.value: rules.features.enabled(f) for f in Feature},
            limits=_limits_json(rules.tier(placed.tier)),
            tiers={str(t.tier): _limits_json(t.limits) for t in view.tiers},
            left={"per_day": _amount(view.left_day), "per_month": _amount(view.left_month)},
            travel_rule={
                "threshold": str(rules.travel_rule.threshold),
                "self_hosted_proof_threshold": str(rules.travel_rule.self_hosted_proof_threshold),
                "currency": rules.travel_rule.currency,
            },
        )
    return body


@api.get("/me")
async def my_limits(svc: Svc, caller: Caller) -> dict[str, Any]:
    language = language_tag(current_locale())  # the notice in Accept-Language's language
    view = await run_in_threadpool(compliance_of(svc).limits, caller.user_id, language)
    return limits_json(view)


@api.get("/travel-rule")
async def my_recipients(svc: Svc, caller: Caller) -> dict[str, Any]:
    records = await run_in_threadpool(compliance_of(svc).travel.records, caller.user_id)
    return {"recipients": [r.to_json() for r in records]}


@api.post("/travel-rule", status_code=201)
async def add_recipient(body: BeneficiaryBody, svc: Svc, caller: Caller) -> JSONResponse:
    given = Beneficiary(
        address=body.address,
        name=body.beneficiary_name,
        wallet_type=body.wallet_type,
        provider_name=body.provider_name,
        is_originator=body.beneficiary_is_originator,
        country=body.beneficiary_country,
    )
    record = await run_in_threadpool(compliance_of(svc).travel.submit, caller.user_id, given)
    return JSONResponse(record.to_json(), status_code=201)


@api.post("/travel-rule/{record_id}/challenge")
async def new_challenge(record_id: str, svc: Svc, caller: Caller) -> dict[str, Any]:
    travel = compliance_of(svc).travel
    record = await run_in_threadpool(travel.challenge, caller.user_id, record_id[:_MAX_ID])
    return record.to_json()


@api.post("/travel-rule/{record_id}/proof")
async def prove(record_id: str, body: ProofBody, svc: Svc, caller: Caller) -> dict[str, Any]:
    travel = compliance_of(svc).travel
    record = await run_in_threadpool(
        travel.prove, caller.user_id, record_id[:_MAX_ID], body.signature
    )
    return record.to_json()


# -- pages ---------------------------------------------------------------------------------------
_FLASHES: Final = {"verified", "rejected", "saved", "proven"}


def _limit_text(value: Decimal | None, currency: str, locale: str) -> str:
    if value is None:
        return _("No limit")
    return format_fiat(value, currency, locale=locale)


def _tier_name(tier: int) -> str:
    return {
        0: _("Account"),
        1: _("Verified phone or e-mail"),
        2: _("Verified identity"),
    }[tier]


@router.get("/limits")
async def limits_page(request: Request, done: str | None = None) -> Response:
    session = await _signed_in(request)
    if isinstance(session, Response):
        return session
    svc = services(request)
    compliance = compliance_of(svc)
    locale = locale_of(request)
    view = await run_in_threadpool(compliance.limits, session.user_id, language_tag(locale))
    rules = view.rules
    currency = view.currency or "USD"
    tiers = [
        {
            "tier": t.tier,
            "name": _tier_name(t.tier),
            "current": t.current,
            "rows": [
                (_("Per transfer"), _limit_text(t.limits.per_transfer, currency, locale)),
                (_("Per 24 hours"), _limit_text(t.limits.per_day, currency, locale)),
                (_("Per 30 days"), _limit_text(t.limits.per_month, currency, locale)),
                (_("Balance cap"), _limit_text(t.limits.balance_cap, currency, locale)),
            ],
        }
        for t in view.tiers
    ]
    unavailable = []
    if rules is not None:
        names = {
            Feature.P2P: _("Sending money to people"),
            Feature.MERCHANT_PAYMENTS: _("Paying in shops"),
            Feature.REWARDS: _("Rewards"),
        }
        unavailable = [names[f] for f in names if not rules.features.enabled(f)]
    provider = compliance.kyc.provider if compliance.kyc else None
    return render(
        request,
        "limits.html",
        session,
        notice=view.notice,
        country=view.placement.country,
        country_source=view.placement.country_source,
        jurisdiction=rules.name if rules else None,
        tier=view.placement.tier,
        tier_name=_tier_name(view.placement.tier),
        tiers=tiers,
        tokens=list(rules.tokens.allowed) if rules else [],
        unavailable=unavailable,
        left_day=_limit_text(view.left_day, currency, locale) if rules else None,
        left_month=_limit_text(view.left_month, currency, locale) if rules else None,
        can_verify=provider is not None and view.placement.tier < 2,
        fake_kyc=bool(provider and provider.is_fake),
        done=done if done in _FLASHES else None,
    )


@router.post("/limits/verify")
async def start_verification(request: Request) -> Response:
    session = await current_session(request)
    svc = services(request)
    compliance = compliance_of(svc)
    if compliance.kyc is None:  # pragma: no cover - always built
        raise KycUnavailable("identity verification is not configured")
    started = await run_in_threadpool(compliance.kyc.start, session.user_id)
    return _redirect(started.url)


def _fake_provider(svc: Services) -> FakeKycProvider:
    compliance = compliance_of(svc)
    provider = compliance.kyc.provider if compliance.kyc else None
    if not isinstance(provider, FakeKycProvider) or not svc.settings.network.is_local:
        raise KycUnavailable("the demo identity check exists on the local profile only")
    return provider


@router.get("/limits/verify/fake")
async def fake_verification(request: Request, reference: str = "") -> Response:
    session = await _signed_in(request)
    if isinstance(session, Response):
        return session
    svc = services(request)
    _fake_provider(svc)
    return render(request, "kyc_fake.html", session, reference=reference[:64])


@router.post("/limits/verify/fake")
async def finish_fake_verification(request: Request) -> Response:
    session = await current_session(request)
    svc = services(request)
    _fake_provider(svc)
    form = await _form(request)
    compliance = compliance_of(svc)
    assert compliance.kyc is not None
    if form.get("decision") != "approve":
        return _redirect("/limits")
    status = await run_in_threadpool(
        compliance.kyc.complete, session.user_id, form.get("reference", "")[:64]
    )
    return _redirect("/limits?done=" + ("verified" if status is KycStatus.VERIFIED else "rejected"))


def _record_row(record: TravelRuleView) -> dict[str, Any]:
    return {
        "id": record.id,
        "address": record.address,
        "name": record.beneficiary_name,
        "self_hosted": record.wallet_type == "self_hosted",
        "provider": record.provider_name,
        "mine": record.beneficiary_is_originator,
        "proven_at": record.proven_at,
        "needs_proof": record.needs_proof,
        "challenge": record.challenge,
        "url": f"/limits/recipients/{record.id}",
    }


async def _recipients_page(
    request: Request,
    session: SessionInfo,
    *,
    record: TravelRuleView | None = None,
    error: str | None = None,
    form: dict[str, str] | None = None,
    status: int = 200,
    done: str | None = None,
) -> Response:
    svc = services(request)
    travel = compliance_of(svc).travel
    records = await run_in_threadpool(travel.records, session.user_id)
    given = form or {}
    return render(
        request,
        "travel_rule.html",
        session,
        status,
        records=[_record_row(r) for r in records],
        record=_record_row(record) if record else None,
        error=error,
        prefill={
            "address": given.get("address", "")[:100],
            "name": given.get("beneficiary_name", "")[:200],
            "wallet_type": given.get("wallet_type", "self_hosted"),
            "provider": given.get("provider_name", "")[:200],
            "mine": given.get("mine") == "yes",
        },
        done=done if done in _FLASHES else None,
    )


@router.get("/limits/recipients")
async def recipients(request: Request, to: str | None = None) -> Response:
    session = await _signed_in(request)
    if isinstance(session, Response):
        return session
    return await _recipients_page(request, session, form={"address": (to or "").strip()})


@router.post("/limits/recipients")
async def add_recipient_page(request: Request) -> Response:
    session = await current_session(request)
    svc = services(request)
    form = await _form(request)
    given = Beneficiary(
        address=form.get("address", ""),
        name=form.get("beneficiary_name", ""),
        wallet_type=form.get("wallet_type", ""),
        provider_name=form.get("provider_name", ""),
        is_originator=form.get("mine") == "yes",
    )
    try:
        record = await run_in_threadpool(compliance_of(svc).travel.submit, session.user_id, given)
    except TravelRuleError as exc:
        return await _recipients_page(request, session, error=str(exc), form=form, status=422)
    return _redirect(f"/limits/recipients/{record.id}?done=saved")


@router.get("/limits/recipients/{record_id}")
async def recipient(request: Request, record_id: str, done: str | None = None) -> Response:
    session = await _signed_in(request)
    if isinstance(session, Response):
        return session
    travel = compliance_of(services(request)).travel
    try:
        record = await run_in_threadpool(travel.challenge, session.user_id, record_id[:_MAX_ID])
    except TravelRuleError:
        return error_page(
            request,
            404,
            _("Recipient not found"),
            _("There are no such recipient details in your account."),
        )
    return await _recipients_page(request, session, record=record, done=done)


@router.post("/limits/recipients/{record_id}/proof")
async def recipient_proof(request: Request, record_id: str) -> Response:
    session = await current_session(request)
    travel = compliance_of(services(request)).travel
    form = await _form(request)
    try:
        await run_in_threadpool(
            travel.prove, session.user_id, record_id[:_MAX_ID], form.get("signature", "")
        )
    except TravelRuleError as exc:
        record = await run_in_threadpool(travel.challenge, session.user_id, record_id[:_MAX_ID])
        return await _recipients_page(request, session, record=record, error=str(exc), status=422)
    return _redirect(f"/limits/recipients/{record_id[:_MAX_ID]}?done=proven")
