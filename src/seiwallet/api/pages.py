"""The wallet app's pages: sign-in, first run, home, devices & sessions, recovery, device login.

Server-rendered and thin: each handler reads the session, calls the accounts services, and
renders a template (``seiwallet.web.templating``). Errors of the domain become a readable page
(``error.html``) or, inside a step, a message on the same page; never a traceback.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

from fastapi import APIRouter, Request
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker
from starlette.concurrency import run_in_threadpool
from starlette.responses import FileResponse, RedirectResponse, Response

from seiwallet.accounts.errors import (
    AccountsError,
    DeviceLoginExpired,
    OidcError,
    RecoveryError,
    RedirectRefused,
    SignInRequestError,
)
from seiwallet.accounts.models import Enrolment, SessionKind
from seiwallet.accounts.services import is_local_path
from seiwallet.accounts.sessions import SessionInfo
from seiwallet.api import wallet_view
from seiwallet.api.auth import (
    DEVICE_COOKIE,
    check_csrf,
    clear_session_cookie,
    current_session,
    optional_session,
    services,
    set_session_cookie,
)
from seiwallet.api.services import Services
from seiwallet.payments.services import works_for_a_merchant
from seiwallet.web import i18n
from seiwallet.web.i18n import gettext as _
from seiwallet.web.templating import STATIC_DIR, Templates, format_datetime

log = logging.getLogger(__name__)

router = APIRouter()
LANG_COOKIE: Final = "lang"
_NO_STORE: Final = {"Cache-Control": "no-store"}


@dataclass(frozen=True)
class UserView:
    display_name: str | None
    email: str | None
    wallet_address: str
    sei_address: str


def templates(request: Request) -> Templates:
    found: Templates = request.app.state.templates
    return found


def locale_of(request: Request) -> str:
    return i18n.negotiate(request.headers.get("accept-language"), request.cookies.get(LANG_COOKIE))


class MerchantNav:
    """Who works for a merchant (their pages show the "Business" tab), per user, for a minute.

    ``render`` is synchronous and must not read the database on the event loop: it only reads
    this cache, which the async page helpers (:func:`_signed_in`) fill in a thread first.
    """

    def __init__(
        self,
        sessions: sessionmaker[Session],
        *,
        ttl: float = 60.0,
        max_entries: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._sessions = sessions
        self._ttl = ttl
        self._max = max_entries
        self._clock = clock
        self._known: dict[str, tuple[bool, float]] = {}

    def get(self, user_id: str) -> bool | None:
        """What is known of the user now (``None``: not looked up in the last minute)."""
        found = self._known.get(user_id)
        if found is None or found[1] <= self._clock():
            return None
        return found[0]

    async def look_up(self, user_id: str) -> bool:
        known = self.get(user_id)
        if known is not None:
            return known
        staff = await run_in_threadpool(works_for_a_merchant, self._sessions, user_id)
        self._known.pop(user_id, None)
        if len(self._known) >= self._max:  # the oldest entry goes first
            self._known.pop(next(iter(self._known)))
        self._known[user_id] = (staff, self._clock() + self._ttl)
        return staff

    def forget(self, user_id: str) -> None:
        """The user's role changed (became a merchant, joined or left a team): look again."""
        self._known.pop(user_id, None)


def merchant_nav(svc: Services) -> MerchantNav:
    """The process's :class:`MerchantNav` (made on first use)."""
    found = svc.extras.get("merchant_nav")
    if not isinstance(found, MerchantNav):
        found = MerchantNav(svc.db)
        svc.extras["merchant_nav"] = found
    return found


def render(
    request: Request,
    name: str,
    session: SessionInfo | None,
    status_code: int = 200,
    **context: Any,
) -> Response:
    svc = services(request)
    if session is not None and "merchant_nav" not in context:
        # People who work for a merchant see the "Business" tab on every page.
        context["merchant_nav"] = bool(merchant_nav(svc).get(session.user_id))
    user = (
        UserView(
            session.display_name, session.email, session.wallet_address, session.wallet_sei_address
        )
        if session
        else None
    )
    base = {
        "user": user,
        "csrf_token": svc.sessions.csrf_token(session.id) if session else "",
        "is_local": svc.settings.network.is_local,
        "request_path": request.url.path,
    }
    return templates(request).render(
        name,
        {**base, **context},
        locale=locale_of(request),
        status_code=status_code,
        headers=_NO_STORE,
    )


def error_page(request: Request, status: int, title: str, detail: str) -> Response:
    session = getattr(request.state, "session", None)
    return render(request, "error.html", session, status, status=status, title=title, detail=detail)


def _redirect(url: str) -> RedirectResponse:
    return RedirectResponse(url, status_code=303, headers=_NO_STORE)


def _local_path(target: str | None, default: str) -> str:
    """``target`` if it is a path on this site (no open redirect), else ``default``."""
    return target if target and is_local_path(target) else default


async def _form(request: Request) -> dict[str, str]:
    form = await request.form()
    return {k: v for k, v in form.items() if isinstance(v, str)}


# -- public pages --------------------------------------------------------------------------------
@router.get("/")
async def welcome(request: Request) -> Response:
    session = await optional_session(request)
    if session is not None:
        return _redirect("/home")
    svc = services(request)
    return render(request, "welcome.html", None, providers=svc.providers, error=None)


@router.get("/sign-in/{provider}")
async def sign_in(request: Request, provider: str, next: str | None = None) -> Response:
    svc = services(request)
    client = svc.oidc.get(provider)
    if client is None:
        return error_page(
            request, 404, _("Unknown sign-in option"), _("Choose one of the options offered.")
        )
    try:
        auth = await client.begin_sign_in()
        await run_in_threadpool(
            svc.sign_in.start, provider, auth, redirect_after=_local_path(next, "/home")
        )
    except OidcError as exc:
        log.warning("sign-in with %s could not start: %s", provider, exc)
        return error_page(request, exc.status, _("Cannot sign in right now"), str(exc))
    return _redirect(auth.url)


@router.get("/auth/callback/{provider}")
async def callback(
    request: Request,
    provider: str,
    code: str | None = None,
    state: str | None = None,
    error: str | None = None,
) -> Response:
    svc = services(request)
    client = svc.oidc.get(provider)
    if client is None:
        return error_page(request, 404, _("Unknown sign-in option"), _("Start again."))
    if error or not code or not state:
        log.info("sign-in with %s came back without a code (%s)", provider, error)
        return render(
            request,
            "welcome.html",
            None,
            400,
            providers=svc.providers,
            error=_("The sign-in was cancelled or refused. Try again."),
        )
    try:
        pending = await run_in_threadpool(svc.sign_in.take, state)
        if pending.provider != provider:
            raise SignInRequestError("this sign-in was started with another provider")
        identity = await client.complete_sign_in(code, state, pending.auth_request)
        result = await svc.sign_in.complete(identity)
    except (OidcError, SignInRequestError, RedirectRefused) as exc:
        log.warning("sign-in with %s refused: %s (%s)", provider, exc.code, exc)
        return render(
            request, "welcome.html", None, exc.status, providers=svc.providers, error=str(exc)
        )
    except AccountsError as exc:
        log.warning("sign-in with %s failed: %s", provider, exc.code)
        return error_page(request, exc.status, _("Cannot sign in right now"), str(exc))
    user = result.user
    label = _browser_label(request.headers.get("user-agent", ""))
    _session_id, token = await run_in_threadpool(
        svc.sessions.open, user.id, SessionKind.WEB, label=label
    )
    if result.created:
        log.info("wallet ready for a new user in %.1f ms", result.wallet_ready_ms)
        await svc.notifier.notify(user.id, "wallet.created", {}, security=False)
    authenticators = await run_in_threadpool(svc.passkeys.authenticators, user.id)
    live = [a for a in authenticators if a.revoked_at is None]
    if not authenticators:
        target = "/setup/passkey"
    elif request.cookies.get(DEVICE_COOKIE) not in {a.id for a in live}:
        target = "/recovery"  # a device this wallet has not seen: passkey here, or recover
    else:
        target = pending.redirect_after or "/home"
    response = _redirect(target)
    set_session_cookie(response, token, svc)
    return response


def _browser_label(user_agent: str) -> str:
    """A human label for a session: "Chrome on Android" rather than a user-agent string."""
    browser = next(
        (
            name
            for key, name in (
                ("Edg/", "Edge"),
                ("Firefox/", "Firefox"),
                ("Chrome/", "Chrome"),
                ("Safari/", "Safari"),
            )
            if key in user_agent
        ),
        "Browser",
    )
    system = next(
        (
            name
            for key, name in (
                ("Android", "Android"),
                ("iPhone", "iPhone"),
                ("iPad", "iPad"),
                ("Mac OS X", "macOS"),
                ("Windows", "Windows"),
                ("Linux", "Linux"),
            )
            if key in user_agent
        ),
        "",
    )
    return f"{browser} on {system}" if system else browser


@router.post("/settings/language")
async def set_language(request: Request) -> Response:
    form = await _form(request)
    chosen = i18n.canonical_locale(form.get("lang")) or i18n.DEFAULT_LOCALE
    response = _redirect(_local_path(form.get("next"), "/"))
    response.set_cookie(LANG_COOKIE, chosen, max_age=365 * 86400, samesite="lax", path="/")
    return response


# -- signed-in pages -----------------------------------------------------------------------------
async def _signed_in(request: Request) -> SessionInfo | Response:
    session = await optional_session(request)
    if session is None:
        return _redirect(f"/?next={request.url.path}")
    try:
        await merchant_nav(services(request)).look_up(session.user_id)
    except SQLAlchemyError:  # the tab is a convenience: the page itself still answers
        log.warning("could not look up whether %s works for a merchant", session.user_id)
    return session


@router.get("/setup/passkey")
async def setup_passkey(request: Request) -> Response:
    session = await _signed_in(request)
    if isinstance(session, Response):
        return session
    svc = services(request)
    try:
        enrolment = await run_in_threadpool(svc.passkeys.enrolment_for, session)
    except AccountsError:
        return _redirect("/home")
    return render(
        request,
        "setup_passkey.html",
        session,
        recovery=enrolment is Enrolment.RECOVERY,
        timelock_hours=_timelock_hours(svc),
        options_url="/v1/passkeys/registration/options",
        finish_url="/v1/passkeys/registration",
        next_url="/setup/ready",
    )


def _timelock_hours(svc: Services) -> int:
    return round(svc.settings.signer.recovery_timelock_hours)


@router.get("/setup/ready")
async def wallet_ready(request: Request) -> Response:
    session = await _signed_in(request)
    if isinstance(session, Response):
        return session
    return render(
        request,
        "wallet_ready.html",
        session,
        evm_address=session.wallet_address,
        sei_address=session.wallet_sei_address,
    )


@router.get("/home")
async def home(request: Request) -> Response:
    session = await _signed_in(request)
    if isinstance(session, Response):
        return session
    svc = services(request)
    now = datetime.now(UTC)
    locale = locale_of(request)
    money = wallet_view.Money.for_locale(locale, wallet_view.rate_source(request))
    authenticators = await run_in_threadpool(svc.passkeys.authenticators, session.user_id)
    notices = await run_in_threadpool(svc.notifier.notices, session.user_id, 10)
    transfers = await wallet_view.connected(svc)
    found, delayed = await wallet_view.balances(transfers, session)
    recent = await wallet_view.recent_transfers(svc, transfers, session, HOME_TRANSFERS)
    response = render(
        request,
        "home.html",
        session,
        balances=wallet_view.balance_rows(found, money),
        total=wallet_view.total_value(found, money),
        funded=any(b.available is not None and b.available.units > 0 for b in found),
        currency=money.currency,
        balances_delayed=delayed,
        rates=wallet_view.rates_note(money),
        recent=[wallet_view.transfer_row(v, session, money, svc) for v in recent],
        flash=_flash(request.cookies.get(FLASH_COOKIE)),
        compliance_notice=await compliance_notice(svc, session.user_id),
        evm_address=session.wallet_address,
        sei_address=session.wallet_sei_address,
        notifications=[_notice(n.event, n.params, n.security, n.created_at) for n in notices],
        pending_devices=[
            {"label": a.label, "active_from": a.active_from}
            for a in authenticators
            if a.status(now) == "pending"
        ],
    )
    if FLASH_COOKIE in request.cookies:
        response.delete_cookie(FLASH_COOKIE, path="/")
    return response


async def compliance_notice(svc: Services, user_id: str) -> Any:
    """Why this person cannot send or pay where they are (a banner, in the reader's language),
    or ``None``."""
    if svc.compliance is None:
        return None
    language = i18n.language_tag(i18n.current_locale())
    return await run_in_threadpool(svc.compliance.notice, user_id, language)


#: A one-time notice for the next page (set with a redirect, shown once): a code, never text.
FLASH_COOKIE: Final = "sw_flash"
#: Transfers the home page lists.
HOME_TRANSFERS: Final = 4


def set_flash(response: Response, code: str) -> None:
    """Show the notice ``code`` (one of ``_flash``'s) on the next page."""
    response.set_cookie(FLASH_COOKIE, code, max_age=120, samesite="lax", path="/", httponly=True)


def _flash(code: str | None) -> dict[str, str] | None:
    notices = {
        "faucet": ("success", _("Test money added: 100 USDC and 100 EURC.")),
        "faucet_failed": (
            "danger",
            _("The test network isn't answering, so no test money was added. Try again soon."),
        ),
    }
    found = notices.get(code or "")
    return {"kind": found[0], "text": found[1]} if found else None


def _when(value: object) -> str:
    """A notice's moment in the reader's language ("25 nov. 2026, 21:26 UTC")."""
    try:
        return format_datetime(datetime.fromisoformat(str(value)))
    except ValueError:
        return str(value or "")


def _notice(event: str, params: dict[str, Any], security: bool, at: datetime) -> dict[str, Any]:
    label = str(params.get("label", ""))
    titles: dict[str, tuple[str, str]] = {
        "wallet.created": (_("Your wallet was created"), _("Welcome to seiwallet.")),
        "passkey.added": (
            _("Passkey added"),
            _("“%(label)s” can approve payments.") % {"label": label},
        ),
        "recovery.code_sent": (
            _("Recovery started"),
            _("A recovery code was sent. Not you? Check your devices."),
        ),
        "recovery.passkey_added": (
            _("New passkey by recovery"),
            _("“%(label)s” can approve payments from %(when)s unless you cancel it.")
            % {"label": label, "when": _when(params.get("active_from"))},
        ),
        "authenticator.removed": (
            _("Device removed"),
            _("“%(label)s” can no longer approve payments.") % {"label": label},
        ),
        "device.added": (
            _("Device signed in"),
            _("“%(label)s” was added to your wallet.") % {"label": label},
        ),
    }
    title, body = titles.get(event, (event, ""))
    return {
        "title": title,
        "body": body,
        "created_at": at,
        "kind": "security" if security else "info",
    }


@router.get("/settings/devices")
async def devices(request: Request) -> Response:
    session = await _signed_in(request)
    if isinstance(session, Response):
        return session
    svc = services(request)
    now = datetime.now(UTC)
    this_device = request.cookies.get(DEVICE_COOKIE)
    authenticators = await run_in_threadpool(svc.passkeys.authenticators, session.user_id)
    sessions = await run_in_threadpool(svc.sessions.list, session.user_id)
    return render(
        request,
        "devices.html",
        session,
        authenticators=[
            {
                "id": a.id,
                "kind": str(a.kind),
                "label": a.label,
                "created_at": a.created_at,
                "status": a.status(now),
                "active_from": a.active_from,
                "this_device": a.id == this_device,
            }
            for a in authenticators
        ],
        sessions=[
            {
                "id": s.id,
                "kind": str(s.kind),
                "label": s.label,
                "created_at": s.created_at,
                "last_seen_at": s.last_seen_at,
                "current": s.id == session.id,
            }
            for s in sessions
        ],
        approve_options_url="/v1/approvals/options",
        remove_url_template="/v1/authenticators/{id}/remove",
    )


@router.post("/settings/sessions/{session_id}/revoke")
async def revoke_session(request: Request, session_id: str) -> Response:
    session = await current_session(request)
    svc = services(request)
    await run_in_threadpool(svc.sessions.revoke, session.user_id, session_id)
    return _redirect("/settings/devices")


@router.post("/sign-out")
async def sign_out(request: Request) -> Response:
    session = await optional_session(request)
    svc = services(request)
    if session is not None:
        await check_csrf(request, session)
        await run_in_threadpool(svc.sessions.revoke, session.user_id, session.id)
    response = _redirect("/")
    clear_session_cookie(response, svc)
    return response


# -- recovery ------------------------------------------------------------------------------------
async def _recovery_page(
    request: Request, session: SessionInfo, *, error: str | None = None, status: int = 200
) -> Response:
    svc = services(request)
    now = datetime.now(UTC)
    destination = svc.recovery.destination(session)
    pending_code = await run_in_threadpool(svc.recovery.pending, session)
    authenticators = await run_in_threadpool(svc.passkeys.authenticators, session.user_id)
    recovered = [
        a
        for a in authenticators
        if a.enrolment is Enrolment.RECOVERY and a.status(now) == "pending"
    ]
    if request.cookies.get(DEVICE_COOKIE) in {a.id for a in recovered}:
        step = "pending"
    elif session.recovery_until is not None and session.recovery_until > now:
        step = "passkey"
    elif pending_code is not None:
        step = "code"
    else:
        step = "start"
    mine = next((a for a in recovered if a.id == request.cookies.get(DEVICE_COOKIE)), None)
    return render(
        request,
        "recovery.html",
        session,
        status,
        step=step,
        destination=destination.masked if destination else None,
        attempts_left=pending_code.attempts_left if pending_code else None,
        error=error,
        pending_until=mine.active_from if mine else None,
        timelock_hours=_timelock_hours(svc),
        options_url="/v1/passkeys/registration/options",
        finish_url="/v1/passkeys/registration",
        next_url="/recovery",
    )


@router.get("/recovery")
async def recovery(request: Request) -> Response:
    session = await _signed_in(request)
    if isinstance(session, Response):
        return session
    return await _recovery_page(request, session)


@router.post("/recovery/send")
async def recovery_send(request: Request) -> Response:
    session = await current_session(request)
    svc = services(request)
    try:
        await svc.recovery.send_code(session)
    except RecoveryError as exc:
        return await _recovery_page(request, session, error=str(exc), status=exc.status)
    return _redirect("/recovery")


@router.post("/recovery/verify")
async def recovery_verify(request: Request) -> Response:
    session = await current_session(request)
    svc = services(request)
    form = await _form(request)
    try:
        await run_in_threadpool(svc.recovery.verify, session, form.get("code", ""))
    except RecoveryError as exc:
        return await _recovery_page(request, session, error=str(exc), status=exc.status)
    request.state.session = None  # the window just opened: read the session again
    return _redirect("/recovery")


# -- seiwallet login -----------------------------------------------------------------------------
@router.get("/device")
async def device(request: Request, code: str | None = None) -> Response:
    session = await _signed_in(request)
    if isinstance(session, Response):
        return session
    svc = services(request)
    pending = None
    error = None
    if code:
        try:
            pending = await run_in_threadpool(svc.device_logins.find, code)
        except DeviceLoginExpired as exc:
            error = str(exc)
    authenticators = await run_in_threadpool(svc.passkeys.authenticators, session.user_id)
    now = datetime.now(UTC)
    has_passkey = any(a.status(now) == "active" and a.kind == "passkey" for a in authenticators)
    return render(
        request,
        "device.html",
        session,
        code=code or "",
        pending=pending,
        error=error,
        has_passkey=has_passkey,
        approve_options_url="/v1/approvals/options",
        approve_url="/v1/device/approve",
    )


# -- development tools and assets ----------------------------------------------------------------
@router.get("/dev/mailbox")
async def dev_mailbox(request: Request) -> Response:
    svc = services(request)
    if svc.mailbox is None:
        return error_page(
            request,
            404,
            _("Not here"),
            _("The development mailbox exists on the local profile only."),
        )
    session = await optional_session(request)
    messages = await run_in_threadpool(svc.mailbox.messages, 50)
    return render(
        request,
        "dev_mailbox.html",
        session,
        messages=[
            {"to": m.to, "subject": m.subject, "body": m.body, "created_at": m.created_at}
            for m in messages
        ],
    )


@router.get("/sw.js")
async def service_worker() -> Response:
    # Served from the root so its scope is the whole app; always revalidated.
    return FileResponse(
        STATIC_DIR / "sw.js",
        media_type="text/javascript",
        headers={"Service-Worker-Allowed": "/", "Cache-Control": "no-cache"},
    )


@router.get("/manifest.webmanifest")
async def manifest() -> Response:
    return FileResponse(STATIC_DIR / "manifest.webmanifest", media_type="application/manifest+json")
