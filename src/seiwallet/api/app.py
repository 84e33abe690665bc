"""``create_app(settings)``: the API process — JSON API, wallet app pages, dev provider.

One ASGI app serves ``/v1`` (JSON, RFC 9457 errors), the wallet app's pages and its static
files, and on the ``local`` profile the development identity provider at ``/dev-idp`` (and the
development webhook receiver at ``/dev-webhooks``, 404 elsewhere). Every
error leaves in one of two shapes: problem+json for the API, a readable page for a browser.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, Final

from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from starlette.datastructures import MutableHeaders
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from seiwallet.accounts.errors import NotSignedIn
from seiwallet.accounts.oidc import Clock
from seiwallet.api import (
    alias_pages,
    compliance,
    devhooks,
    money_pages,
    operator,
    pages,
    payment_pages,
    problems,
)
from seiwallet.api.payments import router as payments_router
from seiwallet.api.services import Services, build_services
from seiwallet.api.transfers import router as transfers_router
from seiwallet.api.v1 import router as api_router
from seiwallet.config import Settings, load_settings
from seiwallet.errors import SeiwalletError
from seiwallet.process import settle_garbage_collector
from seiwallet.signer.client import SignerClient
from seiwallet.web import i18n
from seiwallet.web.templating import STATIC_DIR, create_templates

log = logging.getLogger(__name__)

#: No inline script, no third-party anything: the wallet's pages load only their own files.
CONTENT_SECURITY_POLICY: Final = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; font-src 'self'; object-src 'none'; base-uri 'none'; "
    "frame-ancestors 'none'; form-action 'self' {form_targets}"
)


class EdgeHeaders:
    """Every HTTP response's security headers, each request's id and the reader's language.

    A plain ASGI middleware: Starlette's ``BaseHTTPMiddleware`` (``@app.middleware("http")``)
    runs every request through an extra task and memory streams, which cost more of the API's
    time in the transfers bench than the transfer's own SQL.
    """

    def __init__(self, app: ASGIApp, *, csp: str, hsts: bool) -> None:
        self.app = app
        self._defaults = [
            ("Content-Security-Policy", csp),
            ("X-Content-Type-Options", "nosniff"),
            ("Referrer-Policy", "same-origin"),
            ("X-Frame-Options", "DENY"),
            ("Permissions-Policy", "camera=(self), microphone=(), geolocation=()"),
        ]
        if hsts:
            self._defaults.append(
                ("Strict-Transport-Security", "max-age=31536000; includeSubDomains")
            )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request = Request(scope)
        request.state.request_id = uuid.uuid4().hex[:16]
        cache_control = None
        if scope["path"].startswith("/static/"):
            # Versioned URLs (?v=<hash of the file>) never change; others are revalidated.
            cache_control = (
                "public, max-age=31536000, immutable" if "v" in request.query_params else "no-cache"
            )

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                if cache_control is not None:
                    headers["Cache-Control"] = cache_control
                for name, value in self._defaults:
                    headers.setdefault(name, value)
            await send(message)

        # Messages made in handlers (errors, notices) are in the reader's language too.
        with i18n.use_locale(pages.locale_of(request)):
            await self.app(scope, receive, send_with_headers)


def _wants_json(request: Request) -> bool:
    path = request.url.path
    return path.startswith("/v1/") or "application/json" in request.headers.get("accept", "")


def create_app(
    settings: Settings,
    *,
    signer: SignerClient | None = None,
    services: Services | None = None,
    clock: Clock = time.time,
) -> FastAPI:
    """The app for these settings; ``signer``/``services`` let tests hand in their own."""
    built = services or build_services(settings, signer=signer, clock=clock)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        try:
            yield
        finally:
            if services is None:
                await built.aclose()

    app = FastAPI(
        title="seiwallet",
        version="1",
        lifespan=lifespan,
        docs_url="/v1/docs",
        openapi_url="/v1/openapi.json",
        redoc_url=None,
    )
    app.state.services = built
    app.state.templates = create_templates()
    form_targets = " ".join(sorted({c.provider.issuer for c in built.oidc.values()}))
    csp = CONTENT_SECURITY_POLICY.format(form_targets=form_targets).strip()

    app.add_middleware(EdgeHeaders, csp=csp, hsts=settings.web.public_url.startswith("https://"))

    @app.exception_handler(SeiwalletError)
    async def domain_error(request: Request, exc: SeiwalletError) -> Response:
        log.info("%s %s refused: %s", request.method, request.url.path, exc.code)
        if _wants_json(request):
            return problems.from_error(exc, instance=request.url.path)
        if isinstance(exc, NotSignedIn):
            return pages._redirect("/")
        return pages.error_page(request, exc.status, problems.title_of(type(exc)), str(exc))

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError) -> Response:
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ()) if p != "body")
        detail = f"{where}: {first.get('msg', 'invalid')}" if where else "the request is invalid"
        return problems.problem(
            422, "input.invalid", "Invalid input", detail, instance=request.url.path
        )

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> Response:
        if _wants_json(request):
            return problems.problem(
                exc.status_code,
                f"http.{exc.status_code}",
                str(exc.detail),
                str(exc.detail),
                instance=request.url.path,
            )
        return pages.error_page(request, exc.status_code, str(exc.detail), str(exc.detail))

    @app.exception_handler(Exception)
    async def bug(request: Request, exc: Exception) -> Response:
        request_id = getattr(request.state, "request_id", uuid.uuid4().hex[:16])
        log.exception("unhandled error on %s %s [%s]", request.method, request.url.path, request_id)
        if _wants_json(request):
            return problems.internal(request_id)
        return pages.error_page(
            request,
            500,
            "Something went wrong",
            f"Nothing was changed. Try again; if it keeps happening, quote {request_id}.",
        )

    @app.get("/healthz", include_in_schema=False)
    async def health() -> dict[str, Any]:
        return {"status": "ok"}

    @app.get("/problems/{code}", include_in_schema=False)
    async def problem_type(code: str) -> JSONResponse:
        return JSONResponse({"type": problems.TYPE_BASE + code, "code": code})

    # The money routes first: a request is matched against the routes in order, and these are
    # the busiest (the routers' paths do not overlap, so the order changes nothing else).
    for api in (transfers_router, payments_router, api_router):
        app.include_router(api)
    for pages_router in (
        pages.router,
        money_pages.router,
        payment_pages.router,
        devhooks.router,
        compliance.api,
        compliance.router,
        operator.router,
        alias_pages.router,
    ):
        app.include_router(pages_router)
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    if built.devidp_app is not None:
        app.mount("/dev-idp", built.devidp_app)
    return app


def create_app_from_environment() -> FastAPI:
    """The app for the settings every command reads (``SEIWALLET_*``, ``load_settings``).

    The factory of ``seiwallet serve --workers N``: each worker process imports it and builds
    its own app, database pool and clients; the supervisor checked the same settings before it
    started them, so a worker reads nothing a single-process ``serve`` would not.
    """
    app = create_app(load_settings())
    settle_garbage_collector()  # this worker's start-up is over (see seiwallet.process)
    return app
