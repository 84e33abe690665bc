"""The relying party against a scripted provider (``httpx.MockTransport``): Google's shape."""

from __future__ import annotations

import base64
import time
from typing import Any

import httpx
import pytest
from joserfc import jwt
from joserfc.jwk import OctKey, RSAKey

from seiwallet.accounts.errors import (
    ProviderResponseInvalid,
    ProviderUnavailable,
    TokenExchangeFailed,
)
from seiwallet.accounts.oidc import GOOGLE_ISSUER, OidcClient, OidcProvider, pkce_challenge

KEY = RSAKey.generate_key(
    2048, parameters={"kid": "g1", "use": "sig", "alg": "RS256"}, private=True
)
DISCOVERY = {
    "issuer": GOOGLE_ISSUER,
    "authorization_endpoint": "https://accounts.google.com/o/oauth2/v2/auth",
    "token_endpoint": "https://oauth2.googleapis.com/token",
    "jwks_uri": "https://www.googleapis.com/oauth2/v3/certs",
    "token_endpoint_auth_methods_supported": ["client_secret_post", "client_secret_basic"],
}


def google(handler_token: Any, discovery: dict[str, Any] | None = None) -> httpx.AsyncClient:
    # A shared "oct" key in the JWKS must be ignored, never used as an HMAC secret.
    hmac_key = OctKey.generate_key(256, parameters={"kid": "g1"}).as_dict(private=False)

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("openid-configuration"):
            return httpx.Response(200, json=discovery or DISCOVERY)
        if request.url.path.endswith("/certs"):
            return httpx.Response(200, json={"keys": [hmac_key, KEY.as_dict(private=False)]})
        if request.url.path == "/token":
            result: httpx.Response = handler_token(request)
            return result
        return httpx.Response(404)

    return httpx.AsyncClient(transport=httpx.MockTransport(handler))


def test_pkce_challenge_known_answer() -> None:
    # RFC 7636 appendix B.
    verifier = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"
    assert pkce_challenge(verifier) == "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"


async def test_google_preset_with_client_secret_basic() -> None:
    seen: dict[str, Any] = {}
    provider = OidcProvider.google("app id", "https://wallet.example/cb", client_secret="s:cret")
    client: OidcClient

    def token(request: httpx.Request) -> httpx.Response:
        seen["auth"] = request.headers["authorization"]
        seen["body"] = request.content.decode()
        now = int(time.time())
        claims = {
            "iss": GOOGLE_ISSUER,
            "aud": "app id",
            "azp": "app id",
            "sub": "1234",
            "iat": now,
            "exp": now + 3600,
            "nonce": seen["nonce"],
            "email": "ada@gmail.com",
            "email_verified": True,
        }
        return httpx.Response(
            200, json={"id_token": jwt.encode({"alg": "RS256", "kid": "g1"}, claims, KEY)}
        )

    async with google(token) as http:
        client = OidcClient(provider, http)
        request = await client.begin_sign_in(login_hint="ada@gmail.com")
        assert request.url.startswith(DISCOVERY["authorization_endpoint"] + "?")
        assert "login_hint=ada%40gmail.com" in request.url
        seen["nonce"] = request.nonce
        identity = await client.complete_sign_in("the-code", request.state, request)
    assert identity.subject == "1234"
    assert identity.email_verified is True
    # RFC 6749 §2.3.1: each half form-encoded, then Base64.
    assert seen["auth"] == "Basic " + base64.b64encode(b"app+id:s%3Acret").decode()
    assert "client_secret" not in seen["body"]
    assert f"code_verifier={request.code_verifier}" in seen["body"]


async def test_https_issuer_with_plain_http_endpoint_is_refused() -> None:
    doc = {**DISCOVERY, "token_endpoint": "http://oauth2.googleapis.com/token"}
    async with google(lambda r: httpx.Response(500), doc) as http:
        with pytest.raises(ProviderResponseInvalid, match="token_endpoint is not https"):
            await OidcClient(OidcProvider.google("app", "https://w/cb"), http).begin_sign_in()


async def test_token_endpoint_errors_are_typed() -> None:
    provider = OidcProvider.google("app", "https://w/cb")
    refused = httpx.Response(400, json={"error": "invalid_grant", "error_description": "Bad code"})
    async with google(lambda r: refused) as http:
        client = OidcClient(provider, http)
        request = await client.begin_sign_in()
        with pytest.raises(TokenExchangeFailed, match="invalid_grant: Bad code"):
            await client.complete_sign_in("c", request.state, request)
    async with google(lambda r: httpx.Response(503)) as http:
        client = OidcClient(provider, http)
        request = await client.begin_sign_in()
        with pytest.raises(ProviderUnavailable):
            await client.complete_sign_in("c", request.state, request)
