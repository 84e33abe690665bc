"""The development identity provider over HTTP: a Starlette app the web app mounts at ``/dev-idp``.

An edge-like piece kept here so :mod:`seiwallet.accounts.devidp` stays framework-free. Forms are
parsed from the urlencoded body directly (no multipart dependency). Pages are plain escaped HTML.
"""

from __future__ import annotations

import base64
from html import escape
from urllib.parse import parse_qsl, unquote_plus, urlencode

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from seiwallet.accounts.devidp import DevAuthorization, DevIdentityProvider
from seiwallet.accounts.errors import DevIdpError, DevIdpGrantInvalid, DevIdpRequestInvalid

_AUTH_PARAMS = (
    "response_type",
    "client_id",
    "redirect_uri",
    "scope",
    "state",
    "nonce",
    "code_challenge",
    "code_challenge_method",
)
_NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}


async def _form(request: Request) -> dict[str, str]:
    content_type = request.headers.get("content-type", "").split(";")[0].strip()
    if content_type != "application/x-www-form-urlencoded":
        raise DevIdpRequestInvalid("send the form as application/x-www-form-urlencoded")
    body = (await request.body()).decode("utf-8", errors="replace")
    return dict(parse_qsl(body, keep_blank_values=True))


def _page(title: str, body: str, status: int = 200) -> HTMLResponse:
    # The wallet app's stylesheet when mounted in it (a relative path from /dev-idp/…); plain
    # HTML still reads well without it.
    html = (
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>"
        "<meta name='viewport' content='width=device-width, initial-scale=1'>"
        "<link rel='stylesheet' href='../static/css/app.css'>"
        f"<title>{escape(title)}</title></head><body><main class='page'>"
        "<p class='banner banner-warning'><span><strong>Development identity provider</strong>: "
        "local profile only; anyone can sign in as anyone here.</span></p>"
        f"<h1>{escape(title)}</h1>"
        f"{body}</main></body></html>"
    )
    return HTMLResponse(html, status_code=status, headers=_NO_STORE)


def _hidden(params: dict[str, str]) -> str:
    return "".join(
        f"<input type='hidden' name='{escape(k)}' value='{escape(v)}'>"
        for k, v in params.items()
        if k in _AUTH_PARAMS
    )


def _chooser(idp: DevIdentityProvider, auth: DevAuthorization, params: dict[str, str]) -> str:
    hidden = _hidden(params)
    persons = "".join(
        "<li><form method='post' action='authorize'>"
        f"{hidden}<input type='hidden' name='subject' value='{escape(p.subject)}'>"
        "<button type='submit' class='btn btn-secondary btn-block'>"
        f"Sign in as {escape(p.name)} &lt;{escape(p.email)}&gt;</button>"
        "</form></li>"
        for p in idp.persons()
    )
    listing = (
        f"<ul class='actions'>{persons}</ul>"
        if persons
        else "<p class='hint'>No test persons yet.</p>"
    )
    return (
        f"<p class='lead'>The app <code>{escape(auth.client_id)}</code> asks who you are.</p>"
        f"<section class='card'><h2 class='card-title'>Choose a test person</h2>{listing}</section>"
        "<section class='card'><h2 class='card-title'>Create a test person</h2>"
        f"<form method='post' action='authorize' class='form'>{hidden}"
        "<div class='field'><label for='new_name'>Name</label>"
        "<input class='input' id='new_name' name='new_name' required autocomplete='name'></div>"
        "<div class='field'><label for='new_email'>E-mail</label>"
        "<input class='input' id='new_email' name='new_email' type='email' required></div>"
        "<div class='field'><label for='new_phone'>Phone (optional, with country code)</label>"
        "<input class='input' id='new_phone' name='new_phone' type='tel' "
        "placeholder='+852 9123 4567'></div>"
        "<button type='submit' class='btn btn-primary btn-block'>Create and sign in</button>"
        "</form></section>"
    )


def create_devidp_app(idp: DevIdentityProvider) -> Starlette:
    """The provider's endpoints, relative to where the app is mounted (the issuer's path)."""

    async def discovery(request: Request) -> Response:
        return JSONResponse(idp.metadata())

    async def jwks(request: Request) -> Response:
        return JSONResponse(idp.jwks(), headers={"Cache-Control": "public, max-age=300"})

    async def authorize(request: Request) -> Response:
        try:
            if request.method == "GET":
                params = dict(request.query_params)
                auth = idp.check_authorization(params)
                return _page("Sign in", _chooser(idp, auth, params))
            params = await _form(request)
            auth = idp.check_authorization(params)
            if params.get("subject"):
                subject = params["subject"]
            else:
                subject = idp.create_person(
                    params.get("new_name", ""),
                    params.get("new_email", ""),
                    params.get("new_phone") or None,
                ).subject
            code = idp.issue_code(auth, subject)
        except DevIdpError as exc:
            return _page("Cannot sign in", f"<p>{escape(str(exc))}</p>", status=exc.status)
        answer = {"code": code, "iss": idp.issuer}
        if auth.state is not None:
            answer["state"] = auth.state
        separator = "&" if "?" in auth.redirect_uri else "?"
        return RedirectResponse(
            f"{auth.redirect_uri}{separator}{urlencode(answer)}", status_code=303, headers=_NO_STORE
        )

    async def token(request: Request) -> Response:
        try:
            form = await _form(request)
            client_id = form.get("client_id", "")
            basic = request.headers.get("authorization", "")
            if basic.lower().startswith("basic "):
                decoded = base64.b64decode(basic[6:], validate=True).decode()
                client_id = unquote_plus(decoded.partition(":")[0])
            if form.get("grant_type") != "authorization_code":
                raise DevIdpGrantInvalid(
                    "only grant_type=authorization_code is supported",
                    error="unsupported_grant_type",
                )
            answer = idp.exchange_code(
                code=form.get("code", ""),
                client_id=client_id,
                redirect_uri=form.get("redirect_uri", ""),
                code_verifier=form.get("code_verifier", ""),
            )
        except DevIdpGrantInvalid as exc:
            body = {"error": exc.error, "error_description": exc.problem}
            return JSONResponse(body, status_code=400, headers=_NO_STORE)
        except (DevIdpError, ValueError) as exc:
            body = {"error": "invalid_request", "error_description": str(exc)}
            return JSONResponse(body, status_code=400, headers=_NO_STORE)
        return JSONResponse(answer, headers=_NO_STORE)

    return Starlette(
        routes=[
            Route("/.well-known/openid-configuration", discovery, methods=["GET"]),
            Route("/jwks", jwks, methods=["GET"]),
            Route("/authorize", authorize, methods=["GET", "POST"]),
            Route("/token", token, methods=["POST"]),
        ]
    )
