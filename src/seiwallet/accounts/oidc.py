"""OpenID Connect relying party: authorization code flow with PKCE, nonce and ID token checks.

One code path for every provider (Google, the phone maker's account service, the development
provider): discovery from the issuer URL, a JWKS cache that follows key rotation, and ID token
verification where each refused check raises its own error. JOSE work (parsing, signatures) is
joserfc's; this module decides which keys and algorithms are acceptable and checks the claims.

Only asymmetric RS256/ES256 are accepted and the JWKS is filtered to RSA and EC keys, so neither
``alg: none`` nor HMAC-with-the-public-key confusion can pass. The caller stores the
:class:`AuthRequest` server-side between :meth:`OidcClient.begin_sign_in` and
:meth:`OidcClient.complete_sign_in`.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import secrets
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Final
from urllib.parse import quote_plus, urlencode

import httpx
from joserfc import jws, jwt
from joserfc.errors import BadSignatureError, JoseError
from joserfc.jwk import ECKey, KeySet, RSAKey

from seiwallet.accounts.errors import (
    IdTokenAlgorithmRefused,
    IdTokenAudienceMismatch,
    IdTokenAuthorizedPartyMismatch,
    IdTokenClaimMissing,
    IdTokenExpired,
    IdTokenIssuedInFuture,
    IdTokenIssuerMismatch,
    IdTokenMalformed,
    IdTokenSignatureInvalid,
    IssuerMismatch,
    NonceMismatch,
    ProviderResponseInvalid,
    ProviderUnavailable,
    StateMismatch,
    TokenExchangeFailed,
    UnknownSigningKey,
)

#: Seconds since the epoch; injected so tests can move time.
Clock = Callable[[], float]

GOOGLE_ISSUER: Final = "https://accounts.google.com"
DEFAULT_SCOPES: Final = ("openid", "email", "profile")
#: A phone maker's account service knows the phone number; Google refuses the ``phone`` scope.
PHONE_SCOPES: Final = (*DEFAULT_SCOPES, "phone")
#: The algorithms we accept, and the key type each needs. Never ``none``, never HMAC.
ALLOWED_ALGORITHMS: Final[Mapping[str, type[RSAKey] | type[ECKey]]] = MappingProxyType(
    {"RS256": RSAKey, "ES256": ECKey}
)
_WELL_KNOWN: Final = "/.well-known/openid-configuration"


@dataclass(frozen=True)
class OidcProvider:
    """How we are registered with one OpenID Connect provider."""

    name: str
    issuer: str
    client_id: str
    redirect_uri: str
    client_secret: str | None = field(default=None, repr=False)
    scopes: tuple[str, ...] = DEFAULT_SCOPES

    def __post_init__(self) -> None:
        if "openid" not in self.scopes:
            object.__setattr__(self, "scopes", ("openid", *self.scopes))

    @classmethod
    def google(
        cls,
        client_id: str,
        redirect_uri: str,
        *,
        client_secret: str | None = None,
        scopes: tuple[str, ...] = DEFAULT_SCOPES,
    ) -> OidcProvider:
        """Sign in with Google."""
        return cls("google", GOOGLE_ISSUER, client_id, redirect_uri, client_secret, scopes)

    @classmethod
    def generic(
        cls,
        issuer: str,
        client_id: str,
        redirect_uri: str,
        *,
        client_secret: str | None = None,
        scopes: tuple[str, ...] = DEFAULT_SCOPES,
        name: str = "oidc",
    ) -> OidcProvider:
        """Any OpenID Connect issuer: the phone maker's account service, the dev provider."""
        return cls(name, issuer, client_id, redirect_uri, client_secret, scopes)


@dataclass(frozen=True)
class ProviderMetadata:
    """The parts of a provider's discovery document we use."""

    issuer: str
    authorization_endpoint: str
    token_endpoint: str
    jwks_uri: str
    token_endpoint_auth_methods: tuple[str, ...] = ("client_secret_basic",)
    code_challenge_methods: tuple[str, ...] = ()


@dataclass(frozen=True)
class AuthRequest:
    """One sign-in in progress: where to send the person, and the secrets to check on return."""

    url: str
    state: str = field(repr=False)
    nonce: str = field(repr=False)
    code_verifier: str = field(repr=False)


@dataclass(frozen=True)
class VerifiedIdentity:
    """Who signed in, once every check passed; ``(issuer, subject)`` identifies them."""

    issuer: str
    subject: str
    email: str | None = None
    email_verified: bool = False
    name: str | None = None
    phone_number: str | None = None
    phone_number_verified: bool = False
    claims: Mapping[str, Any] = field(
        default_factory=lambda: MappingProxyType({}), repr=False, compare=False
    )


def _random_token() -> str:
    return secrets.token_urlsafe(32)


def pkce_challenge(code_verifier: str) -> str:
    """The S256 code challenge of a PKCE verifier (RFC 7636 §4.2)."""
    digest = hashlib.sha256(code_verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


async def _get_json(http: httpx.AsyncClient, url: str) -> dict[str, Any]:
    try:
        response = await http.get(url, headers={"Accept": "application/json"})
    except httpx.HTTPError as exc:
        raise ProviderUnavailable(url, type(exc).__name__) from exc
    if response.status_code >= 500:
        raise ProviderUnavailable(url, f"HTTP {response.status_code}")
    if response.status_code != 200:
        raise ProviderResponseInvalid(url, f"HTTP {response.status_code}")
    try:
        body = response.json()
    except ValueError as exc:
        raise ProviderResponseInvalid(url, "not JSON") from exc
    if not isinstance(body, dict):
        raise ProviderResponseInvalid(url, "not a JSON object")
    return body


def _str_tuple(value: object, default: tuple[str, ...]) -> tuple[str, ...]:
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return tuple(value)
    return default


class Discovery:
    """The provider's discovery document, fetched once and kept for ``ttl`` seconds."""

    def __init__(
        self, issuer: str, http: httpx.AsyncClient, *, ttl: float = 3600.0, clock: Clock = time.time
    ) -> None:
        self.issuer = issuer
        self.url = issuer.rstrip("/") + _WELL_KNOWN
        self._http = http
        self._ttl = ttl
        self._clock = clock
        self._cached: ProviderMetadata | None = None
        self._fetched_at = 0.0
        self._lock = asyncio.Lock()

    async def metadata(self) -> ProviderMetadata:
        """The validated metadata, from cache while fresh."""
        async with self._lock:
            if self._cached is None or self._clock() - self._fetched_at >= self._ttl:
                self._cached = self._parse(await _get_json(self._http, self.url))
                self._fetched_at = self._clock()
            return self._cached

    def _parse(self, doc: Mapping[str, Any]) -> ProviderMetadata:
        # An exact comparison: a look-alike issuer would let another provider's tokens in.
        if doc.get("issuer") != self.issuer:
            raise IssuerMismatch(self.url, self.issuer, str(doc.get("issuer")))
        endpoints: dict[str, str] = {}
        for name in ("authorization_endpoint", "token_endpoint", "jwks_uri"):
            value = doc.get(name)
            if not isinstance(value, str) or not value.startswith(("https://", "http://")):
                raise ProviderResponseInvalid(self.url, f"{name} is missing or not a URL")
            # An https issuer must not send codes or keys over plain http.
            if self.issuer.startswith("https://") and not value.startswith("https://"):
                raise ProviderResponseInvalid(self.url, f"{name} is not https")
            endpoints[name] = value
        return ProviderMetadata(
            issuer=self.issuer,
            token_endpoint_auth_methods=_str_tuple(
                doc.get("token_endpoint_auth_methods_supported"), ("client_secret_basic",)
            ),
            code_challenge_methods=_str_tuple(doc.get("code_challenge_methods_supported"), ()),
            **endpoints,
        )


class JwksCache:
    """The provider's signing keys, cached for ``ttl`` seconds.

    An unknown ``kid`` triggers one refetch (the provider rotated its keys), but such refetches
    happen at most once per ``min_refetch_interval``: forged kids cannot make us hammer the
    provider. Only RSA and EC keys meant for signatures are kept.
    """

    def __init__(
        self,
        jwks_uri: str,
        http: httpx.AsyncClient,
        *,
        ttl: float = 3600.0,
        min_refetch_interval: float = 60.0,
        clock: Clock = time.time,
    ) -> None:
        self.jwks_uri = jwks_uri
        self._http = http
        self._ttl = ttl
        self._min_refetch_interval = min_refetch_interval
        self._clock = clock
        self._keys: KeySet | None = None
        self._fetched_at = 0.0
        self._last_forced: float | None = None
        self._lock = asyncio.Lock()
        #: How many times the JWKS was fetched (for tests and metrics).
        self.fetches = 0

    async def key(self, kid: str | None, alg: str) -> RSAKey | ECKey:
        """The key to verify a token with ``kid`` and ``alg``; refetches once if ``kid`` is new."""
        async with self._lock:
            now = self._clock()
            if self._keys is None or now - self._fetched_at >= self._ttl:
                await self._fetch()
            found = self._find(kid, alg)
            if found is None and (
                self._last_forced is None or now - self._last_forced >= self._min_refetch_interval
            ):
                self._last_forced = now
                await self._fetch()
                found = self._find(kid, alg)
            if found is None:
                raise UnknownSigningKey(kid)
            return found

    async def _fetch(self) -> None:
        body = await _get_json(self._http, self.jwks_uri)
        raw = body.get("keys")
        if not isinstance(raw, list):
            raise ProviderResponseInvalid(self.jwks_uri, "no 'keys' list")
        usable: list[RSAKey | ECKey] = []
        for item in raw:
            if not isinstance(item, dict) or item.get("use", "sig") != "sig":
                continue
            kty = item.get("kty")
            if kty not in ("RSA", "EC"):  # oct keys above all: a "public" HMAC key is a secret
                continue
            try:
                usable.append(RSAKey.import_key(item) if kty == "RSA" else ECKey.import_key(item))
            except (JoseError, ValueError):
                continue  # one unreadable key must not hide the others
        self._keys = KeySet(list(usable))
        self._fetched_at = self._clock()
        self.fetches += 1

    def _find(self, kid: str | None, alg: str) -> RSAKey | ECKey | None:
        assert self._keys is not None
        key_type = ALLOWED_ALGORITHMS[alg]
        candidates = [
            k
            for k in self._keys.keys
            if isinstance(k, key_type)
            and (kid is None or k.kid == kid)
            and k.get("alg", alg) == alg
            and (not isinstance(k, ECKey) or k.curve_name == "P-256")
        ]
        # Without a kid, only an unambiguous key will do.
        if len(candidates) == 1:
            return candidates[0]
        return None


class OidcClient:
    """Sign-in with one OpenID Connect provider: begin, then complete with the callback's values."""

    def __init__(
        self,
        provider: OidcProvider,
        http: httpx.AsyncClient,
        *,
        clock: Clock = time.time,
        leeway: int = 60,
        discovery_ttl: float = 3600.0,
        jwks_ttl: float = 3600.0,
        jwks_min_refetch_interval: float = 60.0,
    ) -> None:
        self.provider = provider
        self._http = http
        self._clock = clock
        self._leeway = leeway
        self._jwks_ttl = jwks_ttl
        self._jwks_min_refetch = jwks_min_refetch_interval
        self.discovery = Discovery(provider.issuer, http, ttl=discovery_ttl, clock=clock)
        self._jwks: JwksCache | None = None

    async def jwks(self) -> JwksCache:
        """The JWKS cache for the provider's current ``jwks_uri``."""
        metadata = await self.discovery.metadata()
        if self._jwks is None or self._jwks.jwks_uri != metadata.jwks_uri:
            self._jwks = JwksCache(
                metadata.jwks_uri,
                self._http,
                ttl=self._jwks_ttl,
                min_refetch_interval=self._jwks_min_refetch,
                clock=self._clock,
            )
        return self._jwks

    async def begin_sign_in(
        self, *, login_hint: str | None = None, prompt: str | None = None
    ) -> AuthRequest:
        """A fresh authorization URL with random state, nonce and PKCE S256 verifier."""
        metadata = await self.discovery.metadata()
        state, nonce = _random_token(), _random_token()
        code_verifier = secrets.token_urlsafe(48)  # 64 characters, within RFC 7636's 43-128
        params = {
            "response_type": "code",
            "client_id": self.provider.client_id,
            "redirect_uri": self.provider.redirect_uri,
            "scope": " ".join(self.provider.scopes),
            "state": state,
            "nonce": nonce,
            "code_challenge": pkce_challenge(code_verifier),
            "code_challenge_method": "S256",
        }
        if login_hint:
            params["login_hint"] = login_hint
        if prompt:
            params["prompt"] = prompt
        separator = "&" if "?" in metadata.authorization_endpoint else "?"
        url = f"{metadata.authorization_endpoint}{separator}{urlencode(params)}"
        return AuthRequest(url=url, state=state, nonce=nonce, code_verifier=code_verifier)

    async def complete_sign_in(
        self, code: str, state: str, expected: AuthRequest
    ) -> VerifiedIdentity:
        """Check the callback's state, exchange the code and verify the ID token."""
        if not hmac.compare_digest(state.encode(), expected.state.encode()):
            raise StateMismatch
        id_token = await self._exchange(code, expected.code_verifier)
        return await self.verify_id_token(id_token, nonce=expected.nonce)

    async def _exchange(self, code: str, code_verifier: str) -> str:
        metadata = await self.discovery.metadata()
        form = {
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": self.provider.redirect_uri,
            "client_id": self.provider.client_id,
            "code_verifier": code_verifier,
        }
        headers = {"Accept": "application/json"}
        secret = self.provider.client_secret
        if secret is not None:
            if "client_secret_basic" in metadata.token_endpoint_auth_methods:
                # RFC 6749 §2.3.1: both halves are form-encoded before Base64.
                pair = f"{quote_plus(self.provider.client_id)}:{quote_plus(secret)}"
                headers["Authorization"] = "Basic " + base64.b64encode(pair.encode()).decode()
            else:
                form["client_secret"] = secret
        url = metadata.token_endpoint
        try:
            response = await self._http.post(url, data=form, headers=headers)
        except httpx.HTTPError as exc:
            raise ProviderUnavailable(url, type(exc).__name__) from exc
        if response.status_code >= 500:
            raise ProviderUnavailable(url, f"HTTP {response.status_code}")
        try:
            body = response.json()
        except ValueError as exc:
            raise ProviderResponseInvalid(url, f"HTTP {response.status_code}, not JSON") from exc
        if not isinstance(body, dict):
            raise ProviderResponseInvalid(url, "not a JSON object")
        if response.status_code != 200 or "error" in body:
            description = body.get("error_description")
            raise TokenExchangeFailed(
                str(body.get("error", f"HTTP {response.status_code}")),
                description if isinstance(description, str) else None,
            )
        id_token = body.get("id_token")
        if not isinstance(id_token, str):
            raise ProviderResponseInvalid(url, "no id_token in the token response")
        return id_token

    async def verify_id_token(self, id_token: str, *, nonce: str) -> VerifiedIdentity:
        """Verify signature and claims (OIDC Core §3.1.3.7); each failed check its own error."""
        try:
            header = jws.extract_compact(id_token.encode("ascii")).protected
        except (JoseError, ValueError, UnicodeError) as exc:
            raise IdTokenMalformed("it is not a compact JWS") from exc
        alg = header.get("alg")
        if not isinstance(alg, str) or alg not in ALLOWED_ALGORITHMS:
            raise IdTokenAlgorithmRefused(alg)
        kid = header.get("kid")
        if kid is not None and not isinstance(kid, str):
            raise IdTokenMalformed("its 'kid' header is not a string")
        key = await (await self.jwks()).key(kid, alg)
        try:
            token = jwt.decode(id_token, key, algorithms=[alg])
        except BadSignatureError as exc:
            raise IdTokenSignatureInvalid from exc
        except (JoseError, ValueError) as exc:
            raise IdTokenMalformed(f"it cannot be decoded ({type(exc).__name__})") from exc
        return self._check_claims(token.claims, nonce)

    def _check_claims(self, claims: Mapping[str, Any], nonce: str) -> VerifiedIdentity:
        client_id = self.provider.client_id
        if claims.get("iss") != self.provider.issuer:
            raise IdTokenIssuerMismatch(self.provider.issuer, claims.get("iss"))
        aud = claims.get("aud")
        audiences = [aud] if isinstance(aud, str) else aud
        if not isinstance(audiences, list) or client_id not in audiences:
            raise IdTokenAudienceMismatch(client_id, aud)
        azp = claims.get("azp")
        if (azp is not None or len(audiences) > 1) and azp != client_id:
            raise IdTokenAuthorizedPartyMismatch(client_id, azp)
        now = int(self._clock())
        exp, iat = claims.get("exp"), claims.get("iat")
        if not isinstance(exp, int) or isinstance(exp, bool):
            raise IdTokenClaimMissing("exp")
        if not isinstance(iat, int) or isinstance(iat, bool):
            raise IdTokenClaimMissing("iat")
        if now > exp + self._leeway:
            raise IdTokenExpired(exp, now)
        if iat > now + self._leeway:
            raise IdTokenIssuedInFuture(iat, now)
        token_nonce = claims.get("nonce")
        if not isinstance(token_nonce, str) or not hmac.compare_digest(
            token_nonce.encode(), nonce.encode()
        ):
            raise NonceMismatch
        subject = claims.get("sub")
        if not isinstance(subject, str) or not subject:
            raise IdTokenClaimMissing("sub")

        def text(name: str) -> str | None:
            value = claims.get(name)
            return value if isinstance(value, str) else None

        return VerifiedIdentity(
            issuer=self.provider.issuer,
            subject=subject,
            email=text("email"),
            email_verified=claims.get("email_verified") is True,
            name=text("name"),
            phone_number=text("phone_number"),
            phone_number_verified=claims.get("phone_number_verified") is True,
            claims=MappingProxyType(json.loads(json.dumps(dict(claims)))),
        )
