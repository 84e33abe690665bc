"""A development identity provider: a real OpenID Connect issuer for the ``local`` profile.

It lets anyone sign in as any test person, so it refuses to exist on any other profile. Apart
from that it behaves like Google does for us: discovery, a JWKS with an ES256 key generated
once and kept in the data directory, one-time authorization codes bound to client, redirect
URI, nonce and PKCE challenge, and signed ID tokens. The sign-in therefore runs offline
through the very code path production uses. The HTTP side is :mod:`seiwallet.accounts.devidp_app`.
"""

from __future__ import annotations

import hmac
import json
import os
import secrets
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Final

from joserfc import jwt
from joserfc.jwk import ECKey, KeySet

from seiwallet.accounts.errors import (
    DevIdpGrantInvalid,
    DevIdpRefused,
    DevIdpRequestInvalid,
    UnknownTestPerson,
)
from seiwallet.accounts.oidc import Clock, pkce_challenge
from seiwallet.config import NetworkProfile, Settings

#: Authorization codes are single-use and live this many seconds.
CODE_TTL: Final = 60
ID_TOKEN_TTL: Final = 600
_ALG: Final = "ES256"


@dataclass(frozen=True)
class DevClient:
    """A relying party registered with the development provider (public client, PKCE only)."""

    client_id: str
    redirect_uris: tuple[str, ...]


@dataclass(frozen=True)
class DevPerson:
    """A test person one can sign in as."""

    subject: str
    name: str
    email: str
    email_verified: bool = True
    phone_number: str | None = None


@dataclass(frozen=True)
class DevAuthorization:
    """A validated authorization request, waiting for a person to be chosen."""

    client_id: str
    redirect_uri: str
    scope: str
    state: str | None
    nonce: str | None
    code_challenge: str


@dataclass(frozen=True)
class _IssuedCode:
    request: DevAuthorization
    subject: str
    expires_at: float


def _write_private(path: Path, content: str) -> None:
    """Write ``content`` atomically, readable by the owner only (it may hold a private key)."""
    tmp = path.with_suffix(path.suffix + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(content)
    os.replace(tmp, path)


class DevIdentityProvider:
    """The issuer's state: signing keys, test persons, codes in flight. Framework-free."""

    def __init__(
        self,
        *,
        network: NetworkProfile,
        data_dir: Path,
        issuer: str,
        clients: Iterable[DevClient] = (),
        clock: Clock = time.time,
    ) -> None:
        # Checked before touching the disk: nothing of it may exist on a real network.
        if not network.is_local:
            raise DevIdpRefused(network.name)
        self.issuer = issuer.rstrip("/")
        self._dir = data_dir
        self._clock = clock
        self._clients = {c.client_id: c for c in clients}
        self._codes: dict[str, _IssuedCode] = {}
        self._lock = threading.Lock()
        data_dir.mkdir(parents=True, exist_ok=True)
        self._keys_path = data_dir / "signing-keys.json"
        self._persons_path = data_dir / "persons.json"
        self._keys = self._load_keys()
        self._persons = self._load_persons()

    @classmethod
    def from_settings(
        cls, settings: Settings, *, issuer: str, clients: Iterable[DevClient] = ()
    ) -> DevIdentityProvider:
        """The provider for these settings, keeping its files in ``<data_dir>/dev-idp``."""
        return cls(
            network=settings.network,
            data_dir=settings.data_dir / "dev-idp",
            issuer=issuer,
            clients=clients,
        )

    # --- keys ---------------------------------------------------------------------------------

    def _load_keys(self) -> list[ECKey]:
        if self._keys_path.exists():
            stored = json.loads(self._keys_path.read_text(encoding="utf-8"))
            return [ECKey.import_key(item) for item in stored["keys"]]
        keys = [self._new_key()]
        self._save_keys(keys)
        return keys

    @staticmethod
    def _new_key() -> ECKey:
        return ECKey.generate_key(
            "P-256",
            parameters={"kid": secrets.token_hex(8), "use": "sig", "alg": _ALG},
            private=True,
        )

    def _save_keys(self, keys: list[ECKey]) -> None:
        content = json.dumps({"keys": [k.as_dict(private=True) for k in keys]}, indent=2)
        _write_private(self._keys_path, content)

    @property
    def current_kid(self) -> str:
        kid = self._keys[0].kid
        assert kid is not None
        return kid

    def rotate_key(self) -> str:
        """Sign with a new key from now on; the previous one stays published for its tokens."""
        with self._lock:
            self._keys = [self._new_key(), self._keys[0]]
            self._save_keys(self._keys)
            return self.current_kid

    def jwks(self) -> dict[str, Any]:
        """The public keys, as served at the JWKS endpoint."""
        return dict(KeySet(list(self._keys)).as_dict(private=False))

    def sign_id_token(self, claims: Mapping[str, Any]) -> str:
        """Sign ``claims`` with the current key (the token endpoint's, and tests' forgeries)."""
        key = self._keys[0]
        return jwt.encode({"alg": _ALG, "kid": self.current_kid}, dict(claims), key)

    # --- discovery ----------------------------------------------------------------------------

    def metadata(self) -> dict[str, Any]:
        """The discovery document (OpenID Connect Discovery 1.0 §3)."""
        return {
            "issuer": self.issuer,
            "authorization_endpoint": f"{self.issuer}/authorize",
            "token_endpoint": f"{self.issuer}/token",
            "jwks_uri": f"{self.issuer}/jwks",
            "response_types_supported": ["code"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": [_ALG],
            "scopes_supported": ["openid", "email", "profile", "phone"],
            "token_endpoint_auth_methods_supported": ["none"],
            "grant_types_supported": ["authorization_code"],
            "code_challenge_methods_supported": ["S256"],
            "claims_supported": [
                "iss",
                "sub",
                "aud",
                "azp",
                "exp",
                "iat",
                "nonce",
                "email",
                "email_verified",
                "name",
                "phone_number",
            ],
        }

    # --- clients and persons ------------------------------------------------------------------

    def register_client(self, client: DevClient) -> None:
        """Let ``client`` sign people in, redirecting only to its registered URIs."""
        with self._lock:
            self._clients[client.client_id] = client

    def _load_persons(self) -> dict[str, DevPerson]:
        if not self._persons_path.exists():
            return {}
        stored = json.loads(self._persons_path.read_text(encoding="utf-8"))
        return {p["subject"]: DevPerson(**p) for p in stored["persons"]}

    def persons(self) -> list[DevPerson]:
        """Every test person, by name."""
        return sorted(self._persons.values(), key=lambda p: (p.name.lower(), p.subject))

    def person(self, subject: str) -> DevPerson:
        try:
            return self._persons[subject]
        except KeyError:
            raise UnknownTestPerson(subject) from None

    def create_person(self, name: str, email: str, phone_number: str | None = None) -> DevPerson:
        """A new test person, or the existing one with this e-mail address."""
        name, email = name.strip(), email.strip().lower()
        if not name or "@" not in email:
            raise DevIdpRequestInvalid("a test person needs a name and an e-mail address")
        with self._lock:
            for existing in self._persons.values():
                if existing.email == email:
                    return existing
            person = DevPerson(
                subject=secrets.token_hex(8),
                name=name,
                email=email,
                phone_number=(phone_number or "").strip() or None,
            )
            self._persons[person.subject] = person
            content = json.dumps({"persons": [asdict(p) for p in self._persons.values()]}, indent=2)
            _write_private(self._persons_path, content)
            return person

    # --- authorization and token endpoints ----------------------------------------------------

    def check_authorization(self, params: Mapping[str, str]) -> DevAuthorization:
        """Validate an authorization request; never redirect to an unregistered URI."""
        client_id = params.get("client_id", "")
        client = self._clients.get(client_id)
        if client is None:
            raise DevIdpRequestInvalid(f"unknown client_id {client_id!r}: register the client")
        redirect_uri = params.get("redirect_uri", "")
        if redirect_uri not in client.redirect_uris:
            raise DevIdpRequestInvalid(
                f"redirect_uri {redirect_uri!r} is not registered for client {client_id!r}"
            )
        if params.get("response_type") != "code":
            raise DevIdpRequestInvalid("only response_type=code is supported")
        scope = params.get("scope", "")
        if "openid" not in scope.split():
            raise DevIdpRequestInvalid("the scope must include 'openid'")
        challenge = params.get("code_challenge", "")
        if params.get("code_challenge_method") != "S256" or not 43 <= len(challenge) <= 128:
            raise DevIdpRequestInvalid("PKCE is required: send an S256 code_challenge")
        return DevAuthorization(
            client_id=client_id,
            redirect_uri=redirect_uri,
            scope=scope,
            state=params.get("state") or None,
            nonce=params.get("nonce") or None,
            code_challenge=challenge,
        )

    def issue_code(self, request: DevAuthorization, subject: str) -> str:
        """A one-time code for ``subject``, bound to everything the request named."""
        self.person(subject)
        code = secrets.token_urlsafe(32)
        with self._lock:
            now = self._clock()
            # Forget expired codes so abandoned sign-ins do not pile up.
            for stale in [c for c, issued in self._codes.items() if issued.expires_at < now]:
                del self._codes[stale]
            self._codes[code] = _IssuedCode(request, subject, now + CODE_TTL)
        return code

    def exchange_code(
        self, *, code: str, client_id: str, redirect_uri: str, code_verifier: str
    ) -> dict[str, Any]:
        """The token response for a code; the code is spent whether or not the checks pass."""
        with self._lock:
            # Spent at first presentation: a replay, or a second guess at the verifier, fails.
            issued = self._codes.pop(code, None)
        if issued is None:
            raise DevIdpGrantInvalid("the authorization code is unknown or was already used")
        request = issued.request
        now = self._clock()
        if now > issued.expires_at:
            raise DevIdpGrantInvalid(f"the authorization code expired (codes live {CODE_TTL} s)")
        if client_id != request.client_id:
            raise DevIdpGrantInvalid("the authorization code was issued to another client")
        if redirect_uri != request.redirect_uri:
            raise DevIdpGrantInvalid("redirect_uri differs from the authorization request's")
        if not hmac.compare_digest(
            pkce_challenge(code_verifier).encode(), request.code_challenge.encode()
        ):
            raise DevIdpGrantInvalid("the PKCE code_verifier does not match the code_challenge")
        person = self.person(issued.subject)
        issued_at = int(now)
        claims: dict[str, Any] = {
            "iss": self.issuer,
            "sub": person.subject,
            "aud": client_id,
            "azp": client_id,
            "iat": issued_at,
            "auth_time": issued_at,
            "exp": issued_at + ID_TOKEN_TTL,
            "email": person.email,
            "email_verified": person.email_verified,
            "name": person.name,
        }
        if request.nonce is not None:
            claims["nonce"] = request.nonce
        if person.phone_number:
            claims["phone_number"] = person.phone_number
            claims["phone_number_verified"] = True
        return {
            "access_token": secrets.token_urlsafe(32),
            "token_type": "Bearer",
            "expires_in": ID_TOKEN_TTL,
            "scope": request.scope,
            "id_token": self.sign_id_token(claims),
        }
