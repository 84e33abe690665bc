"""Who is asking: the session cookie of a browser or the bearer token of the CLI/SDK, and CSRF.

A browser's session lives in an HttpOnly, SameSite=Lax cookie (Secure whenever the site is
https, and on ``localhost``, which browsers treat as secure). Every state-changing request a
cookie authenticates must also carry the session's CSRF token (form field ``csrf_token`` or
header ``X-CSRF-Token``) *and* come from our own origin when the browser says where it came from.
A bearer token is not sent by browsers on their own, so it needs no CSRF token.
"""

from __future__ import annotations

from typing import Final

from starlette.requests import Request
from starlette.responses import Response

from seiwallet.accounts.errors import CsrfRefused, NotSignedIn
from seiwallet.accounts.models import SessionKind
from seiwallet.accounts.sessions import SessionInfo
from seiwallet.api.services import Services

SESSION_COOKIE: Final = "sw_session"
#: Which authenticator this browser enrolled (an id, not a secret): tells a new device apart.
DEVICE_COOKIE: Final = "sw_device"
CSRF_HEADER: Final = "x-csrf-token"
_SAFE_METHODS: Final = frozenset({"GET", "HEAD", "OPTIONS"})


def services(request: Request) -> Services:
    found: Services = request.app.state.services
    return found


async def services_dependency(request: Request) -> Services:
    """:func:`services` for ``Depends``: FastAPI runs a plain ``def`` dependency in its thread
    pool, a thread hop on every request for an attribute read; an ``async def`` one it calls on
    the event loop."""
    return services(request)


def _bearer(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token else None


async def optional_session(request: Request) -> SessionInfo | None:
    """The caller's session, or ``None`` when they are not signed in."""
    try:
        return await current_session(request, csrf=False)
    except NotSignedIn:
        return None


async def current_session(request: Request, *, csrf: bool = True) -> SessionInfo:
    """The caller's live session; a cookie-authenticated change must pass the CSRF checks."""
    cached: SessionInfo | None = getattr(request.state, "session", None)
    if cached is None:
        svc = services(request)
        bearer = _bearer(request)
        if bearer is not None:
            cached = await svc.sessions.authenticate_on_loop(bearer, SessionKind.API)
            request.state.via_cookie = False
        else:
            token = request.cookies.get(SESSION_COOKIE)
            cached = await svc.sessions.authenticate_on_loop(token, SessionKind.WEB)
            request.state.via_cookie = True
        request.state.session = cached
    if csrf and request.state.via_cookie and request.method not in _SAFE_METHODS:
        await check_csrf(request, cached)
    return cached


async def check_csrf(request: Request, session: SessionInfo) -> None:
    svc = services(request)
    origin = request.headers.get("origin")
    if origin is not None and origin != svc.settings.web.public_url:
        raise CsrfRefused
    presented = request.headers.get(CSRF_HEADER)
    if presented is None and request.headers.get("content-type", "").startswith(
        ("application/x-www-form-urlencoded", "multipart/form-data")
    ):
        form = await request.form()
        value = form.get("csrf_token")
        presented = value if isinstance(value, str) else None
    if not svc.sessions.check_csrf(session.id, presented):
        raise CsrfRefused


def cookie_is_secure(public_url: str) -> bool:
    return public_url.startswith("https://") or public_url.startswith("http://localhost")


def set_session_cookie(response: Response, token: str, services: Services) -> None:
    response.set_cookie(
        SESSION_COOKIE,
        token,
        max_age=services.settings.web.session_days * 86400,
        path="/",
        secure=cookie_is_secure(services.settings.web.public_url),
        httponly=True,
        samesite="lax",
    )


def clear_session_cookie(response: Response, services: Services) -> None:
    response.delete_cookie(
        SESSION_COOKIE,
        path="/",
        secure=cookie_is_secure(services.settings.web.public_url),
        httponly=True,
        samesite="lax",
    )
