"""The JSON API, version 1: the signed-in user, passkeys, approvals, devices, sessions, login.

Thin handlers: validate the input (pydantic), call a domain service, shape the answer. Errors
are raised as the domain's typed errors and become RFC 9457 problems in one place (the app).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool
from starlette.responses import JSONResponse

from seiwallet.accounts.errors import CeremonyInvalid, DeviceLoginError
from seiwallet.accounts.models import Enrolment
from seiwallet.accounts.sessions import SessionInfo
from seiwallet.api.auth import (
    DEVICE_COOKIE,
    cookie_is_secure,
    current_session,
    services_dependency,
)
from seiwallet.api.problems import from_error
from seiwallet.api.services import Services

router = APIRouter(prefix="/v1")

Svc = Annotated[Services, Depends(services_dependency)]
Caller = Annotated[SessionInfo, Depends(current_session)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class RegistrationBody(_Strict):
    credential: dict[str, Any]
    label: str = Field(default="", max_length=100)


class ApprovalOptionsBody(_Strict):
    action: str = Field(max_length=64)
    authenticator_id: str | None = Field(default=None, max_length=64)
    user_code: str | None = Field(default=None, max_length=16)


class ApprovalBody(_Strict):
    approval_id: str = Field(max_length=64)
    credential: dict[str, Any]


class DeviceCodeBody(_Strict):
    public_key: str = Field(min_length=66, max_length=132)
    label: str = Field(default="", max_length=100)


class DeviceTokenBody(_Strict):
    device_code: str = Field(max_length=100)
    grant_type: str = "urn:ietf:params:oauth:grant-type:device_code"


def _iso(moment: datetime | None) -> str | None:
    return moment.astimezone(UTC).isoformat() if moment else None


@router.get("/me")
async def me(caller: Caller) -> dict[str, Any]:
    return {
        "user_id": caller.user_id,
        "display_name": caller.display_name,
        "email": caller.email,
        "email_verified": caller.email_verified,
        "phone": caller.phone,
        "phone_verified": caller.phone_verified,
        "wallet": {"address": caller.wallet_address, "sei_address": caller.wallet_sei_address},
        "session": {"id": caller.id, "kind": str(caller.kind)},
    }


# -- passkeys ------------------------------------------------------------------------------------
@router.post("/passkeys/registration/options")
async def registration_options(svc: Svc, caller: Caller) -> dict[str, Any]:
    options = await run_in_threadpool(svc.passkeys.registration_options, caller)
    return {"options": options}


@router.post("/passkeys/registration")
async def register_passkey(body: RegistrationBody, svc: Svc, caller: Caller) -> JSONResponse:
    enrolled = await svc.passkeys.register(caller, body.credential, body.label)
    label = body.label or "Passkey"
    if enrolled.enrolment is Enrolment.RECOVERY:
        await run_in_threadpool(svc.sessions.end_recovery, caller.id)
        await svc.notifier.notify(
            caller.user_id,
            "recovery.passkey_added",
            {"label": label, "active_from": enrolled.active_from.isoformat()},
            security=True,
        )
        redirect = "/recovery"
    else:
        await svc.notifier.notify(caller.user_id, "passkey.added", {"label": label}, security=True)
        redirect = "/setup/ready" if enrolled.enrolment is Enrolment.FIRST else "/home"
    response: dict[str, Any] = {
        "authenticator_id": enrolled.authenticator_id,
        "enrolment": str(enrolled.enrolment),
        "active_from": _iso(enrolled.active_from),
        "redirect": redirect,
    }
    # The browser remembers which authenticator it holds (not a secret: an id).
    answer = JSONResponse(response)
    answer.set_cookie(
        DEVICE_COOKIE,
        enrolled.authenticator_id,
        max_age=5 * 365 * 86400,
        httponly=True,
        samesite="lax",
        secure=cookie_is_secure(svc.settings.web.public_url),
    )
    return answer


# -- approvals -----------------------------------------------------------------------------------
@router.post("/approvals/options")
async def approval_options(body: ApprovalOptionsBody, svc: Svc, caller: Caller) -> dict[str, Any]:
    if body.action == "authenticator.remove" and body.authenticator_id:
        document: dict[str, Any] = {"authenticator_id": body.authenticator_id}
    elif body.action == "authenticator.add" and body.user_code:
        pending = await run_in_threadpool(svc.device_logins.find, body.user_code)
        document = pending.document()
    else:
        raise CeremonyInvalid(f"cannot approve {body.action!r} with these fields")
    approval_id, options = await run_in_threadpool(
        svc.passkeys.approval_options, caller, body.action, document
    )
    return {"approval_id": approval_id, "options": options}


@router.post("/authenticators/{authenticator_id}/remove")
async def remove_authenticator(
    authenticator_id: str, body: ApprovalBody, svc: Svc, caller: Caller
) -> dict[str, Any]:
    approved = await run_in_threadpool(
        svc.passkeys.approval, caller, body.approval_id, body.credential
    )
    if approved.action != "authenticator.remove" or approved.document != {
        "authenticator_id": authenticator_id
    }:
        raise CeremonyInvalid("approves something else")
    views = {a.id: a for a in await run_in_threadpool(svc.passkeys.authenticators, caller.user_id)}
    await svc.passkeys.remove(caller, authenticator_id, approved.approval)
    await run_in_threadpool(svc.sessions.revoke_for_authenticator, caller.user_id, authenticator_id)
    label = views[authenticator_id].label if authenticator_id in views else authenticator_id
    await svc.notifier.notify(
        caller.user_id, "authenticator.removed", {"label": label}, security=True
    )
    return {"authenticator_id": authenticator_id, "revoked": True, "redirect": "/settings/devices"}


@router.get("/authenticators")
async def list_authenticators(svc: Svc, caller: Caller) -> dict[str, Any]:
    now = datetime.now(UTC)
    views = await run_in_threadpool(svc.passkeys.authenticators, caller.user_id)
    return {
        "authenticators": [
            {
                "id": v.id,
                "kind": str(v.kind),
                "label": v.label,
                "enrolment": str(v.enrolment),
                "status": v.status(now),
                "created_at": _iso(v.created_at),
                "active_from": _iso(v.active_from),
                "revoked_at": _iso(v.revoked_at),
            }
            for v in views
        ]
    }


# -- sessions ------------------------------------------------------------------------------------
@router.get("/sessions")
async def list_sessions(svc: Svc, caller: Caller) -> dict[str, Any]:
    rows = await run_in_threadpool(svc.sessions.list, caller.user_id)
    return {
        "sessions": [
            {
                "id": r.id,
                "kind": str(r.kind),
                "label": r.label,
                "created_at": _iso(r.created_at),
                "last_seen_at": _iso(r.last_seen_at),
                "expires_at": _iso(r.expires_at),
                "current": r.id == caller.id,
            }
            for r in rows
        ]
    }


@router.delete("/sessions/{session_id}", status_code=204)
async def revoke_session(session_id: str, svc: Svc, caller: Caller) -> None:
    await run_in_threadpool(svc.sessions.revoke, caller.user_id, session_id)


# -- seiwallet login (RFC 8628) ------------------------------------------------------------------
@router.post("/device/code")
async def device_code(body: DeviceCodeBody, svc: Svc) -> dict[str, Any]:
    started = await run_in_threadpool(svc.device_logins.start, body.public_key, body.label)
    base = svc.settings.web.public_url
    return {
        "device_code": started.device_code,
        "user_code": started.user_code,
        "verification_uri": f"{base}/device",
        "verification_uri_complete": f"{base}/device?code={started.user_code}",
        "expires_in": started.expires_in,
        "interval": started.interval,
    }


@router.post("/device/token")
async def device_token(body: DeviceTokenBody, request: Request, svc: Svc) -> Any:
    try:
        token = await run_in_threadpool(svc.device_logins.poll, body.device_code)
    except DeviceLoginError as exc:
        # RFC 8628 §3.5: the OAuth ``error`` member beside the problem's own.
        return from_error(exc, instance=request.url.path, error=exc.oauth_error)
    return {
        "access_token": token.token,
        "token_type": "Bearer",
        "user_id": token.user_id,
        "wallet_address": token.wallet_address,
        "authenticator_id": token.authenticator_id,
        "expires_in": svc.settings.web.api_token_days * 86400,
    }


class DeviceApproveBody(_Strict):
    user_code: str = Field(max_length=16)
    approval_id: str | None = Field(default=None, max_length=64)
    credential: dict[str, Any] | None = None


@router.post("/device/approve")
async def device_approve(body: DeviceApproveBody, svc: Svc, caller: Caller) -> dict[str, Any]:
    approval: dict[str, Any] | None = None
    if body.approval_id and body.credential is not None:
        approved = await run_in_threadpool(
            svc.passkeys.approval, caller, body.approval_id, body.credential
        )
        pending = await run_in_threadpool(svc.device_logins.find, body.user_code)
        if approved.action != "authenticator.add" or approved.document != pending.document():
            raise CeremonyInvalid("approves something else")
        approval = approved.approval
    pending = await svc.device_logins.approve(caller, body.user_code, approval)
    await svc.notifier.notify(
        caller.user_id, "device.added", {"label": pending.label}, security=True
    )
    return {"approved": True, "redirect": "/settings/devices"}


# -- aliases -------------------------------------------------------------------------------------
class AliasBody(_Strict):
    kind: str = Field(pattern="^(email|phone)$")
    value: str = Field(min_length=3, max_length=320)


class CodeBody(_Strict):
    code: str = Field(min_length=1, max_length=12)


@router.post("/aliases", status_code=202)
async def start_alias(body: AliasBody, svc: Svc, caller: Caller) -> dict[str, Any]:
    """Send a code to a phone number or e-mail address to make it this wallet's alias."""
    sent = await svc.aliases.start(caller, body.kind, body.value)
    return {
        "destination": sent.destination.masked,
        "expires_at": _iso(sent.expires_at),
        "attempts_left": sent.attempts_left,
    }


@router.post("/aliases/verify")
async def verify_alias(body: CodeBody, svc: Svc, caller: Caller) -> dict[str, Any]:
    alias = await run_in_threadpool(svc.aliases.verify, caller, body.code)
    return {"kind": alias.kind, "alias": alias.value, "verified": True}
