"""OpenID Connect sign-in end to end against the development identity provider, in process.

The relying party talks to the dev IdP's real ASGI app through ``httpx.ASGITransport``: the same
code path as Google, no network. A tampering transport stands in for a hostile or broken
provider by rewriting the token endpoint's ID token.
"""

from __future__ import annotations

import base64
import dataclasses
import json
import stat
from collections import Counter
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import httpx
import pytest
from joserfc import jwt
from joserfc.jwk import ECKey, KeySet, OctKey, RSAKey
from starlette.applications import Starlette
from starlette.routing import Mount

from seiwallet.accounts.devidp import (
    CODE_TTL,
    ID_TOKEN_TTL,
    DevClient,
    DevIdentityProvider,
)
from seiwallet.accounts.devidp_app import create_devidp_app
from seiwallet.accounts.errors import (
    DevIdpRefused,
    IdTokenAlgorithmRefused,
    IdTokenAudienceMismatch,
    IdTokenAuthorizedPartyMismatch,
    IdTokenExpired,
    IdTokenIssuedInFuture,
    IdTokenIssuerMismatch,
    IdTokenSignatureInvalid,
    IssuerMismatch,
    NonceMismatch,
    StateMismatch,
    TokenExchangeFailed,
    UnknownSigningKey,
)
from seiwallet.accounts.oidc import AuthRequest, OidcClient, OidcProvider, VerifiedIdentity
from seiwallet.config import PROFILES, Settings

ISSUER = "http://testserver/dev-idp"
CLIENT_ID = "seiwallet-web"
REDIRECT_URI = "http://testserver/auth/callback"
T0 = 1_800_000_000.0


class FakeClock:
    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class TamperingTransport(httpx.AsyncBaseTransport):
    """Counts requests by path; optionally rewrites the ID token the token endpoint returns."""

    def __init__(self, inner: httpx.AsyncBaseTransport) -> None:
        self.inner = inner
        self.counts: Counter[str] = Counter()
        self.rewrite: Callable[[str], str] | None = None

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.counts[request.url.path] += 1
        response = await self.inner.handle_async_request(request)
        if request.url.path.endswith("/token") and self.rewrite and response.status_code == 200:
            body = json.loads(await response.aread())
            body["id_token"] = self.rewrite(body["id_token"])
            return httpx.Response(200, json=body)
        return response


@dataclasses.dataclass
class Env:
    idp: DevIdentityProvider
    http: httpx.AsyncClient
    transport: TamperingTransport
    clock: FakeClock
    rp_offset: list[float]
    person_subject: str

    def client(self, issuer: str = ISSUER, **kwargs: Any) -> OidcClient:
        provider = OidcProvider.generic(issuer, CLIENT_ID, REDIRECT_URI, name="dev")
        return OidcClient(
            provider, self.http, clock=lambda: self.clock() + self.rp_offset[0], **kwargs
        )

    def claims(self, token: str) -> dict[str, Any]:
        return dict(jwt.decode(token, KeySet.import_key_set(self.idp.jwks())).claims)

    def resign(self, **changes: Any) -> Callable[[str], str]:
        """A rewrite that re-signs the token with the IdP's key after changing claims."""

        def rewrite(token: str) -> str:
            claims = self.claims(token)
            for name, value in changes.items():
                if value is None:
                    claims.pop(name, None)
                else:
                    claims[name] = value
            return self.idp.sign_id_token(claims)

        return rewrite


@pytest.fixture
async def env(tmp_path: Path) -> AsyncIterator[Env]:
    clock = FakeClock()
    idp = DevIdentityProvider(
        network=PROFILES["local"],
        data_dir=tmp_path / "dev-idp",
        issuer=ISSUER,
        clients=[DevClient(CLIENT_ID, (REDIRECT_URI,))],
        clock=clock,
    )
    person = idp.create_person("Ada Lovelace", "ada@example.com", "+85255550100")
    root = Starlette(routes=[Mount("/dev-idp", app=create_devidp_app(idp))])
    transport = TamperingTransport(httpx.ASGITransport(app=root))
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
        yield Env(idp, http, transport, clock, [0.0], person.subject)


async def authorize(env: Env, request: AuthRequest, subject: str | None = None) -> tuple[str, str]:
    """Play the person: open the chooser page, pick a test person, follow back the redirect."""
    page = await env.http.get(request.url)
    assert page.status_code == 200
    assert "Ada Lovelace" in page.text
    form = dict(parse_qsl(urlsplit(request.url).query))
    form["subject"] = subject or env.person_subject
    answer = await env.http.post(f"{ISSUER}/authorize", data=form)
    assert answer.status_code == 303
    location = answer.headers["location"]
    assert location.startswith(REDIRECT_URI + "?")
    query = dict(parse_qsl(urlsplit(location).query))
    assert query["iss"] == ISSUER
    return query["code"], query["state"]


async def sign_in(env: Env, client: OidcClient) -> VerifiedIdentity:
    request = await client.begin_sign_in()
    code, state = await authorize(env, request)
    return await client.complete_sign_in(code, state, request)


# --- the happy path ---------------------------------------------------------------------------


async def test_sign_in_through_the_dev_idp(env: Env) -> None:
    client = env.client()
    identity = await sign_in(env, client)
    assert identity.issuer == ISSUER
    assert identity.subject == env.person_subject
    assert identity.email == "ada@example.com"
    assert identity.email_verified is True
    assert identity.name == "Ada Lovelace"
    assert identity.phone_number == "+85255550100"
    assert identity.claims["azp"] == CLIENT_ID

    await sign_in(env, client)  # discovery and keys come from the caches the second time
    assert env.transport.counts["/dev-idp/.well-known/openid-configuration"] == 1
    assert env.transport.counts["/dev-idp/jwks"] == 1


async def test_auth_request_uses_pkce_s256_and_fresh_secrets(env: Env) -> None:
    client = env.client()
    first, second = await client.begin_sign_in(), await client.begin_sign_in()
    query = dict(parse_qsl(urlsplit(first.url).query))
    assert query["code_challenge_method"] == "S256"
    assert query["state"] == first.state
    assert query["nonce"] == first.nonce
    assert first.code_verifier not in first.url
    assert len(first.code_verifier) >= 43
    assert {first.state, first.nonce, first.code_verifier}.isdisjoint(
        {second.state, second.nonce, second.code_verifier}
    )
    assert first.code_verifier not in repr(first)


async def test_a_new_person_can_be_created_on_the_page(env: Env) -> None:
    client = env.client()
    request = await client.begin_sign_in()
    form = dict(parse_qsl(urlsplit(request.url).query))
    form |= {"new_name": "Grace Hopper", "new_email": "Grace@Example.com"}
    answer = await env.http.post(f"{ISSUER}/authorize", data=form)
    query = dict(parse_qsl(urlsplit(answer.headers["location"]).query))
    identity = await client.complete_sign_in(query["code"], query["state"], request)
    assert identity.email == "grace@example.com"
    assert identity.phone_number is None
    assert "Grace Hopper" in (await env.http.get((await client.begin_sign_in()).url)).text


# --- forged and wrong ID tokens ---------------------------------------------------------------


async def test_token_signed_by_another_key_with_the_same_kid_is_refused(env: Env) -> None:
    attacker = ECKey.generate_key("P-256", parameters={"kid": env.idp.current_kid}, private=True)
    env.transport.rewrite = lambda token: jwt.encode(
        {"alg": "ES256", "kid": env.idp.current_kid}, env.claims(token), attacker
    )
    with pytest.raises(IdTokenSignatureInvalid):
        await sign_in(env, env.client())


async def test_token_signed_by_an_unpublished_key_is_refused_after_one_refetch(env: Env) -> None:
    client = env.client()
    await sign_in(env, client)
    attacker = RSAKey.generate_key(2048, parameters={"kid": "attacker"}, private=True)
    env.transport.rewrite = lambda token: jwt.encode(
        {"alg": "RS256", "kid": "attacker"}, env.claims(token), attacker
    )
    for _ in range(3):
        with pytest.raises(UnknownSigningKey) as refused:
            await sign_in(env, client)
    assert refused.value.kid == "attacker"
    # One refetch in case the provider rotated, then no more within the rate limit.
    assert env.transport.counts["/dev-idp/jwks"] == 2


@pytest.mark.parametrize("alg", ["none", "HS256"])
async def test_none_and_hmac_algorithms_are_refused(env: Env, alg: str) -> None:
    def forge(token: str) -> str:
        claims = env.claims(token)
        if alg == "HS256":
            # The classic confusion: the provider's public key used as an HMAC secret.
            secret = OctKey.import_key(json.dumps(env.idp.jwks()).encode())
            return jwt.encode({"alg": "HS256", "kid": env.idp.current_kid}, claims, secret)
        segments = [json.dumps({"alg": "none"}).encode(), json.dumps(claims).encode()]
        encoded = [base64.urlsafe_b64encode(s).rstrip(b"=").decode() for s in segments]
        return ".".join([*encoded, ""])

    env.transport.rewrite = forge
    with pytest.raises(IdTokenAlgorithmRefused):
        await sign_in(env, env.client())


async def test_expired_token_is_refused(env: Env) -> None:
    env.rp_offset[0] = ID_TOKEN_TTL + 61  # past exp, beyond the 60 s leeway
    with pytest.raises(IdTokenExpired):
        await sign_in(env, env.client())


async def test_token_within_leeway_is_accepted(env: Env) -> None:
    env.rp_offset[0] = ID_TOKEN_TTL + 30
    assert (await sign_in(env, env.client())).subject == env.person_subject


async def test_token_issued_in_the_future_is_refused(env: Env) -> None:
    env.rp_offset[0] = -3600
    with pytest.raises(IdTokenIssuedInFuture):
        await sign_in(env, env.client())


async def test_wrong_audience_is_refused(env: Env) -> None:
    env.transport.rewrite = env.resign(aud="another-app", azp="another-app")
    with pytest.raises(IdTokenAudienceMismatch):
        await sign_in(env, env.client())


async def test_several_audiences_need_azp_to_be_us(env: Env) -> None:
    client = env.client()
    env.transport.rewrite = env.resign(aud=[CLIENT_ID, "another-app"], azp=None)
    with pytest.raises(IdTokenAuthorizedPartyMismatch):
        await sign_in(env, client)
    env.transport.rewrite = env.resign(aud=[CLIENT_ID, "another-app"], azp="another-app")
    with pytest.raises(IdTokenAuthorizedPartyMismatch):
        await sign_in(env, client)
    env.transport.rewrite = env.resign(aud=[CLIENT_ID, "another-app"], azp=CLIENT_ID)
    assert (await sign_in(env, client)).subject == env.person_subject


async def test_wrong_issuer_in_token_is_refused(env: Env) -> None:
    env.transport.rewrite = env.resign(iss="http://evil.example")
    with pytest.raises(IdTokenIssuerMismatch):
        await sign_in(env, env.client())


async def test_nonce_mismatch_is_refused(env: Env) -> None:
    client = env.client()
    request = await client.begin_sign_in()
    code, state = await authorize(env, request)
    other = dataclasses.replace(request, nonce="a-nonce-from-another-sign-in")
    with pytest.raises(NonceMismatch):
        await client.complete_sign_in(code, state, other)


async def test_missing_nonce_is_refused(env: Env) -> None:
    env.transport.rewrite = env.resign(nonce=None)
    with pytest.raises(NonceMismatch):
        await sign_in(env, env.client())


# --- the flow around the token ----------------------------------------------------------------


async def test_state_mismatch_is_refused_before_the_code_is_spent(env: Env) -> None:
    client = env.client()
    request = await client.begin_sign_in()
    code, _ = await authorize(env, request)
    with pytest.raises(StateMismatch):
        await client.complete_sign_in(code, "forged-state", request)
    assert env.transport.counts["/dev-idp/token"] == 0


async def test_replayed_authorization_code_is_refused(env: Env) -> None:
    client = env.client()
    request = await client.begin_sign_in()
    code, state = await authorize(env, request)
    await client.complete_sign_in(code, state, request)
    with pytest.raises(TokenExchangeFailed) as refused:
        await client.complete_sign_in(code, state, request)
    assert refused.value.error == "invalid_grant"


async def test_wrong_pkce_verifier_is_refused_and_spends_the_code(env: Env) -> None:
    client = env.client()
    request = await client.begin_sign_in()
    code, state = await authorize(env, request)
    wrong = dataclasses.replace(request, code_verifier="x" * 64)
    with pytest.raises(TokenExchangeFailed, match="PKCE"):
        await client.complete_sign_in(code, state, wrong)
    with pytest.raises(TokenExchangeFailed, match="already used"):
        await client.complete_sign_in(code, state, request)


async def test_expired_authorization_code_is_refused(env: Env) -> None:
    client = env.client()
    request = await client.begin_sign_in()
    code, state = await authorize(env, request)
    env.clock.now += CODE_TTL + 1
    env.rp_offset[0] = 0
    with pytest.raises(TokenExchangeFailed, match="expired"):
        await client.complete_sign_in(code, state, request)


async def test_issuer_mismatch_in_discovery_is_refused(env: Env) -> None:
    # One character off (a trailing slash) is another issuer.
    with pytest.raises(IssuerMismatch) as refused:
        await env.client(issuer=ISSUER + "/").begin_sign_in()
    assert refused.value.actual == ISSUER


async def test_key_rotation_is_followed_with_one_refetch(env: Env) -> None:
    client = env.client()
    await sign_in(env, client)
    old_kid = env.idp.current_kid
    assert env.idp.rotate_key() != old_kid
    identity = await sign_in(env, client)  # signed with a kid the cache has never seen
    assert identity.subject == env.person_subject
    assert env.transport.counts["/dev-idp/jwks"] == 2

    forged = RSAKey.generate_key(2048, parameters={"kid": "forged"}, private=True)
    env.transport.rewrite = lambda token: jwt.encode(
        {"alg": "RS256", "kid": "forged"}, env.claims(token), forged
    )
    with pytest.raises(UnknownSigningKey):
        await sign_in(env, client)
    assert env.transport.counts["/dev-idp/jwks"] == 2  # rate-limited: just refetched
    env.clock.now += 61
    with pytest.raises(UnknownSigningKey):
        await sign_in(env, client)
    assert env.transport.counts["/dev-idp/jwks"] == 3


# --- the dev IdP itself -----------------------------------------------------------------------


@pytest.mark.parametrize("profile", ["sei-mainnet", "sei-testnet"])
def test_dev_idp_refuses_to_start_off_the_local_profile(tmp_path: Path, profile: str) -> None:
    settings = Settings(profile=profile, data_dir=tmp_path)  # type: ignore[arg-type]
    with pytest.raises(DevIdpRefused, match="only runs on the 'local' profile"):
        DevIdentityProvider.from_settings(settings, issuer=ISSUER)
    assert not (tmp_path / "dev-idp").exists()


def test_dev_idp_keeps_its_key_and_persons(tmp_path: Path) -> None:
    settings = Settings(profile="local", data_dir=tmp_path)
    first = DevIdentityProvider.from_settings(settings, issuer=ISSUER)
    person = first.create_person("Ada", "ada@example.com")
    second = DevIdentityProvider.from_settings(settings, issuer=ISSUER)
    assert second.current_kid == first.current_kid
    assert second.persons() == [person]
    key_file = tmp_path / "dev-idp" / "signing-keys.json"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert "d" not in second.jwks()["keys"][0]  # the JWKS never carries the private part


async def test_unregistered_redirect_uri_is_not_redirected_to(env: Env) -> None:
    request = await env.client().begin_sign_in()
    evil = request.url.replace("auth%2Fcallback", "evil")
    page = await env.http.get(evil)
    assert page.status_code == 400
    assert "not registered" in page.text
    assert "location" not in page.headers
