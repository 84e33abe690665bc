"""The "Phone & e-mail" page: prove a phone number or e-mail address people can pay you at.

The page over :class:`~seiwallet.accounts.aliases.AliasService`, in the recovery page's
pattern: a form sends a six-digit code (``/settings/aliases/send``), the code step checks it
(``/settings/aliases/verify``), and a mistake comes back as a readable message on the same
page with the error's HTTP status. Whether someone else holds the alias is said only after the
code is proven, as the service decides, so the form cannot probe who has an account.
"""

from __future__ import annotations

from typing import Final

from fastapi import APIRouter, Request
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from seiwallet.accounts.aliases import Alias
from seiwallet.accounts.errors import (
    AccountsError,
    AliasInvalid,
    AliasTaken,
    ChannelUnavailable,
    OneTimeCodeSpent,
    OneTimeCodeWrong,
    TooManyCodes,
)
from seiwallet.accounts.recovery import CodeSent
from seiwallet.accounts.sessions import SessionInfo
from seiwallet.api import wallet_view
from seiwallet.api.auth import current_session, services
from seiwallet.api.pages import _form, _redirect, _signed_in, render
from seiwallet.web.i18n import gettext as _
from seiwallet.web.i18n import ngettext

router = APIRouter()

PAGE: Final = "/settings/aliases"
KINDS: Final = ("phone", "email")
#: What a form field may carry at most (an e-mail address is at most 320 characters).
_MAX_VALUE: Final = 320


def verified_aliases(session: SessionInfo) -> list[Alias]:
    """The person's verified aliases, phone first, as people write them (as /receive shows)."""
    found = []
    if session.phone and session.phone_verified:
        found.append(Alias("phone", wallet_view.pretty_alias(session.phone)))
    if session.email and session.email_verified:
        found.append(Alias("email", session.email))
    return found


def _kind_of(channel: str) -> str:
    return "email" if channel == "email" else "phone"


def _problem(exc: AccountsError, kind: str) -> str:
    """The error in the reader's language (the domain's message is English, for the API)."""
    if isinstance(exc, AliasInvalid):
        if kind == "email":
            return _("That isn't an e-mail address we can use. Check it and try again.")
        return _(
            "That isn't a phone number we can use. Include the country code, "
            "for example +852 9123 4567."
        )
    if isinstance(exc, ChannelUnavailable):
        return _("We can't send text messages from this server yet. Use an e-mail address instead.")
    if isinstance(exc, TooManyCodes):
        minutes = max(1, exc.retry_after // 60)
        return ngettext(
            "We've sent too many codes. Try again in %(count)d minute.",
            "We've sent too many codes. Try again in %(count)d minutes.",
            minutes,
        ) % {"count": minutes}
    plain = {
        OneTimeCodeWrong: lambda: _("That code isn't right. Check it and try again."),
        OneTimeCodeSpent: lambda: _(
            "That code can no longer be used: it expired or was entered wrong too many times. "
            "Send a new code."
        ),
        AliasTaken: lambda: _(
            "This already receives payments for another seiwallet account. "
            "If it's yours, contact support."
        ),
    }
    found = plain.get(type(exc))
    return found() if found else str(exc)


async def _page(
    request: Request,
    session: SessionInfo,
    *,
    error: str | None = None,
    status: int = 200,
    kind: str = "phone",
    value: str = "",
    attempts_left: int | None = None,
    pending: CodeSent | None = None,
    fresh: bool = False,
) -> Response:
    """The page at its current step: the code step while a code is waiting, else the form."""
    svc = services(request)
    if pending is None and not fresh:
        pending = await run_in_threadpool(svc.aliases.pending, session)
    done = request.query_params.get("done")
    return render(
        request,
        "aliases.html",
        session,
        status,
        step="code" if pending is not None else "start",
        aliases=verified_aliases(session),
        destination=pending.destination.masked if pending else None,
        attempts_left=(attempts_left if attempts_left is not None else pending.attempts_left)
        if pending
        else None,
        kind=kind if kind in KINDS else "phone",
        value=value,
        error=error,
        done=done if done in KINDS and error is None else None,
        mailbox=svc.mailbox is not None,
    )


@router.get(PAGE)
async def aliases(request: Request) -> Response:
    session = await _signed_in(request)
    if isinstance(session, Response):
        return session
    # "Use another number or address" leaves a waiting code behind for the form.
    return await _page(request, session, fresh=request.query_params.get("step") == "start")


@router.post(f"{PAGE}/send")
async def send_code(request: Request) -> Response:
    session = await current_session(request)
    svc = services(request)
    form = await _form(request)
    kind = form.get("kind", "")
    value = form.get("value", "").strip()[:_MAX_VALUE]
    if kind not in KINDS:
        return await _page(
            request,
            session,
            error=_("Choose a phone number or an e-mail address."),
            status=422,
            value=value,
            fresh=True,
        )
    try:
        await svc.aliases.start(session, kind, value)
    except (AliasInvalid, TooManyCodes, ChannelUnavailable) as exc:
        return await _page(
            request,
            session,
            error=_problem(exc, kind),
            status=exc.status,
            kind=kind,
            value=value,
            fresh=True,
        )
    return _redirect(PAGE)


@router.post(f"{PAGE}/resend")
async def resend_code(request: Request) -> Response:
    """A new code to where the waiting one went (the address never leaves the server)."""
    session = await current_session(request)
    svc = services(request)
    pending = await run_in_threadpool(svc.aliases.pending, session)
    if pending is None:
        return _redirect(PAGE)
    kind = _kind_of(pending.destination.channel)
    try:
        await svc.aliases.start(session, kind, pending.destination.address)
    except (AliasInvalid, TooManyCodes, ChannelUnavailable) as exc:
        return await _page(
            request, session, error=_problem(exc, kind), status=exc.status, pending=pending
        )
    return _redirect(PAGE)


@router.post(f"{PAGE}/verify")
async def verify_code(request: Request) -> Response:
    session = await current_session(request)
    svc = services(request)
    form = await _form(request)
    # Where the code went, to fill the form in again should this code be used up.
    pending = await run_in_threadpool(svc.aliases.pending, session)
    kind = _kind_of(pending.destination.channel) if pending else "phone"
    value = pending.destination.address if pending else ""
    try:
        alias = await run_in_threadpool(svc.aliases.verify, session, form.get("code", "")[:12])
    except OneTimeCodeWrong as exc:
        return await _page(
            request,
            session,
            error=_problem(exc, kind),
            status=exc.status,
            attempts_left=exc.attempts_left,
            pending=pending,
        )
    except (OneTimeCodeSpent, AliasTaken) as exc:
        return await _page(
            request,
            session,
            error=_problem(exc, kind),
            status=exc.status,
            kind=kind,
            value=value,
            fresh=True,
        )
    return _redirect(f"{PAGE}?done={alias.kind}")
