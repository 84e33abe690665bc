"""Approvals: a wallet authenticator's signature over one intent, checked before anything is signed.

An approval signs a *challenge* (:func:`challenge_bytes`)::

    sha256(b"seiwallet.approval.v1\\x00" ‖ digest (32) ‖ nonce (16..32) ‖ expires_at (u64 BE))

so it is good for one intent (the digest), once (the nonce, consumed by the signer's store — not
here) and briefly (``expires_at`` at most :data:`MAX_APPROVAL_LIFETIME` seconds ahead). The nonce
and expiry travel beside the signature in clear, and the challenge binds them: changing either
changes the challenge and the signature no longer verifies.

Two kinds of authenticator sign it:

* a **passkey** (WebAuthn): the phone's platform authenticator signs ``authenticatorData ‖
  sha256(clientDataJSON)`` and the challenge is the one inside ``clientDataJSON``. Verified with
  the ``webauthn`` library: type ``webauthn.get``, challenge, origin, RP id, user present *and
  verified* (the biometric), signature, and a sign counter that must grow (WebAuthn §6.1.1);
* a **device key** (CLI / SDK): a P-256 key on the device signs the challenge itself
  (ECDSA-P256-SHA256, DER).

:func:`verify_approval` refuses with :class:`~seiwallet.signer.errors.ApprovalRefused` whose
``reason`` is one :class:`RefusalReason`, so the user, the API and the audit log learn *which*
check failed. Checks run cheapest first; none depends on secret data, so their order leaks
nothing.
"""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from hashlib import sha256
from typing import Any, ClassVar, Final, TypeAlias

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed
from webauthn import verify_authentication_response
from webauthn.helpers import parse_client_data_json
from webauthn.helpers.exceptions import InvalidAuthenticationResponse
from webauthn.helpers.structs import AuthenticationCredential, AuthenticatorAssertionResponse

from seiwallet.errors import InvalidInput
from seiwallet.signer.errors import ApprovalMalformed, ApprovalRefused

__all__ = [
    "APPROVAL_CHALLENGE_DOMAIN",
    "MAX_APPROVAL_LIFETIME",
    "MAX_NONCE_BYTES",
    "MIN_NONCE_BYTES",
    "Approval",
    "Authenticator",
    "AuthenticatorKind",
    "CheckedSignature",
    "DeviceApproval",
    "PasskeyApproval",
    "RefusalReason",
    "VerifiedApproval",
    "challenge_bytes",
    "check_device_signature",
    "parse_approval",
    "passes_with_check",
    "verify_approval",
]

#: Prefix of every approval challenge; the NUL ends the label (intents use another label).
APPROVAL_CHALLENGE_DOMAIN: Final = b"seiwallet.approval.v1\x00"
#: The longest an approval may be valid for, in seconds, counted from when it is verified.
MAX_APPROVAL_LIFETIME: Final = 300
MIN_NONCE_BYTES: Final = 16
MAX_NONCE_BYTES: Final = 32

_DIGEST_BYTES: Final = 32
_MAX_EXPIRES_AT: Final = 2**63 - 1  # a signed 64-bit column holds it; the challenge takes u64
_MAX_ID_CHARS: Final = 64
_MAX_CREDENTIAL_ID_BYTES: Final = 1023  # WebAuthn §5.8.3
_MAX_COSE_KEY_BYTES: Final = 2048  # an RSA-4096 COSE key is ~550 bytes
_MAX_SIGN_COUNT: Final = 2**32 - 1  # authenticatorData's counter is 32 bits
_MAX_AUTHENTICATOR_DATA_BYTES: Final = 4096
_MAX_CLIENT_DATA_BYTES: Final = 8192
_MAX_SIGNATURE_BYTES: Final = 1024  # RS256 passkeys (Windows Hello) sign 256..512 bytes
_MAX_USER_HANDLE_BYTES: Final = 64  # WebAuthn §5.4.3
_MAX_DER_P256_SIGNATURE_BYTES: Final = 72
_P256_POINT_BYTES: Final = 65
_BASE64URL: Final = re.compile(r"[A-Za-z0-9_-]*")
# Built once: constructing the algorithm object costs a fifth of a verification. Device keys
# sign ECDSA-P256-SHA256 over the challenge; the SHA-256 is taken here (hashlib) and the
# verification told so, which is the same check and spares OpenSSL a digest context per call.
_ECDSA_PREHASHED_SHA256: Final = ec.ECDSA(Prehashed(hashes.SHA256()))


class AuthenticatorKind(StrEnum):
    """What signs a wallet's approvals."""

    PASSKEY = "passkey"
    DEVICE = "device"


class RefusalReason(StrEnum):
    """Why an approval was refused: the ``reason`` of :class:`ApprovalRefused`, stable."""

    WRONG_AUTHENTICATOR = "wrong_authenticator"  # names another authenticator than checked
    WRONG_KIND = "wrong_kind"  # a passkey approval for a device key or the reverse
    REVOKED = "revoked"
    NOT_YET_ACTIVE = "not_yet_active"  # recovery time-lock: the authenticator is too new
    EXPIRED = "expired"
    LIFETIME_TOO_LONG = "lifetime_too_long"  # expires more than MAX_APPROVAL_LIFETIME ahead
    CHALLENGE_MISMATCH = "challenge_mismatch"  # signed for another intent, nonce or expiry
    WRONG_TYPE = "wrong_type"  # clientDataJSON is not a webauthn.get assertion
    WRONG_ORIGIN = "wrong_origin"
    CROSS_ORIGIN = "cross_origin"  # asserted inside a frame of another site
    WRONG_RP_ID = "wrong_rp_id"
    USER_NOT_PRESENT = "user_not_present"
    USER_NOT_VERIFIED = "user_not_verified"  # no biometric / PIN: UV flag is required
    COUNTER_REGRESSION = "counter_regression"  # a cloned authenticator, or a replay
    BAD_SIGNATURE = "bad_signature"
    MALFORMED = "malformed"  # cannot be parsed (raised as ApprovalMalformed)


# -- authenticators --------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class Authenticator:
    """One of a wallet's authenticators, as the signer's store keeps it.

    ``public_key`` is the COSE key a WebAuthn registration returns (passkeys) or an X9.62
    uncompressed P-256 point (device keys). ``origins`` and ``rp_id`` bind passkey assertions to
    our web app; ``active_from`` (unix seconds) delays a newly added authenticator, so that one
    added through account recovery cannot approve before the owner had time to notice.
    """

    id: str
    wallet_id: str
    kind: AuthenticatorKind
    public_key: bytes
    credential_id: bytes = b""
    sign_count: int = 0
    rp_id: str | None = None
    origins: tuple[str, ...] = ()
    active_from: int = 0
    revoked: bool = False

    def __post_init__(self) -> None:
        for name in ("id", "wallet_id"):
            value = getattr(self, name)
            if not isinstance(value, str) or not 0 < len(value) <= _MAX_ID_CHARS:
                raise InvalidInput(f"authenticator {name} must be 1 to {_MAX_ID_CHARS} characters")
        try:
            object.__setattr__(self, "kind", AuthenticatorKind(self.kind))
        except ValueError:
            raise InvalidInput(
                f"authenticator kind must be passkey or device, not {self.kind!r}"
            ) from None
        object.__setattr__(self, "origins", tuple(self.origins))
        _check_int("sign_count", self.sign_count, _MAX_SIGN_COUNT)
        _check_int("active_from", self.active_from, _MAX_EXPIRES_AT)
        if not isinstance(self.revoked, bool):
            raise InvalidInput("authenticator revoked must be true or false")
        if self.kind is AuthenticatorKind.DEVICE:
            # Loading the point checks it is on the curve, and warms the cache verification uses.
            try:
                _device_public_key(bytes(self.public_key))
            except (TypeError, ValueError):
                raise InvalidInput(
                    "a device key must be an uncompressed P-256 point (65 bytes, 04 ‖ x ‖ y)"
                ) from None
            return
        _check_bytes("credential_id", self.credential_id, 1, _MAX_CREDENTIAL_ID_BYTES)
        _check_bytes("public_key", self.public_key, 1, _MAX_COSE_KEY_BYTES)
        if not isinstance(self.rp_id, str) or not self.rp_id:
            raise InvalidInput("a passkey needs the RP id it was registered for")
        if not self.origins or not all(isinstance(o, str) and o for o in self.origins):
            raise InvalidInput("a passkey needs the web origins its assertions may come from")


def _check_int(name: str, value: object, high: int) -> None:
    if type(value) is not int or not 0 <= value <= high:
        raise InvalidInput(f"authenticator {name} must be an integer from 0 to {high}")


def _check_bytes(name: str, value: object, low: int, high: int) -> None:
    if not isinstance(value, bytes) or not low <= len(value) <= high:
        raise InvalidInput(f"authenticator {name} must be {low} to {high} bytes")


@functools.lru_cache(maxsize=16_384)
def _device_public_key(point: bytes) -> ec.EllipticCurvePublicKey:
    """The loaded key of an X9.62 uncompressed P-256 point, memoised by its bytes.

    Decoding a point (and checking it is on the curve) costs about a tenth of a verification;
    the same device approves many intents, so the loaded key is kept. Keyed by the public bytes
    themselves, so a revoked or replaced key can never be served for another.
    """
    if len(point) != _P256_POINT_BYTES or point[0] != 0x04:
        raise ValueError("not an uncompressed P-256 point")
    return ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), point)


# -- challenges and approvals ----------------------------------------------------------------


def challenge_bytes(digest: bytes, nonce: bytes, expires_at: int) -> bytes:
    """The 32 bytes an authenticator signs to approve the intent whose digest is ``digest``."""
    if not isinstance(digest, bytes) or len(digest) != _DIGEST_BYTES:
        raise InvalidInput("an intent digest is exactly 32 bytes")
    if not isinstance(nonce, bytes) or not MIN_NONCE_BYTES <= len(nonce) <= MAX_NONCE_BYTES:
        raise InvalidInput(f"an approval nonce is {MIN_NONCE_BYTES} to {MAX_NONCE_BYTES} bytes")
    if type(expires_at) is not int or not 0 <= expires_at <= _MAX_EXPIRES_AT:
        raise InvalidInput("an approval's expires_at is unix seconds from 0 to 2**63-1")
    # The digest has a fixed length and the expiry sits last with a fixed length, so the
    # variable-length nonce cannot shift bytes from one field into another.
    return hashlib.sha256(
        APPROVAL_CHALLENGE_DOMAIN + digest + nonce + expires_at.to_bytes(8, "big")
    ).digest()


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64url(field: str, value: object, who: str | None) -> bytes:
    """Strict unpadded base64url: one spelling per byte string, as WebAuthn's JSON uses."""
    if not isinstance(value, str) or not _BASE64URL.fullmatch(value) or len(value) % 4 == 1:
        raise ApprovalMalformed(f"{field} must be unpadded base64url", authenticator_id=who)
    try:
        data = base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))
    except (binascii.Error, ValueError):
        raise ApprovalMalformed(f"{field} is not base64url", authenticator_id=who) from None
    if _b64url(data) != value:  # non-zero padding bits: another spelling of the same bytes
        raise ApprovalMalformed(f"{field} is not canonical base64url", authenticator_id=who)
    return data


class _ApprovalBase:
    """Fields and JSON handling both approval kinds share."""

    KIND: ClassVar[AuthenticatorKind]
    #: Byte fields and their (min, max) sizes; base64url in JSON.
    _BYTES: ClassVar[Mapping[str, tuple[int, int]]]
    _OPTIONAL: ClassVar[tuple[str, ...]] = ()

    authenticator_id: str
    nonce: bytes
    expires_at: int

    def _validate(self) -> None:
        who = self.authenticator_id if isinstance(self.authenticator_id, str) else None
        if who is None or not 0 < len(who) <= _MAX_ID_CHARS:
            raise ApprovalMalformed(f"authenticator_id must be 1 to {_MAX_ID_CHARS} characters")
        if type(self.expires_at) is not int or not 0 <= self.expires_at <= _MAX_EXPIRES_AT:
            raise ApprovalMalformed("expires_at must be unix seconds", authenticator_id=who)
        for name, (low, high) in self._BYTES.items():
            value = getattr(self, name)
            if value is None and name in self._OPTIONAL:
                continue
            if not isinstance(value, bytes) or not low <= len(value) <= high:
                raise ApprovalMalformed(
                    f"{name} must be {low} to {high} bytes", authenticator_id=who
                )

    def to_json(self) -> dict[str, Any]:
        """The approval as JSON: bytes in unpadded base64url, ``expires_at`` an integer."""
        data: dict[str, Any] = {
            "kind": str(self.KIND),
            "authenticator_id": self.authenticator_id,
            "expires_at": self.expires_at,
        }
        for name in self._BYTES:
            value = getattr(self, name)
            if value is not None:
                data[name] = _b64url(value)
        return data

    @classmethod
    def _fields_from_json(cls, data: Mapping[str, Any]) -> dict[str, Any]:
        if not isinstance(data, Mapping):
            raise ApprovalMalformed("an approval must be a JSON object")
        raw_who = data.get("authenticator_id")
        who = raw_who if isinstance(raw_who, str) else None
        allowed = ("kind", "authenticator_id", "expires_at", *cls._BYTES)
        for key in data:
            if key not in allowed:
                raise ApprovalMalformed(
                    f"{key} is not a field of an approval", authenticator_id=who
                )
        if data.get("kind") != cls.KIND:
            raise ApprovalMalformed(f"kind must be {cls.KIND!r}", authenticator_id=who)
        for key in allowed:
            if key not in data and key not in cls._OPTIONAL:
                raise ApprovalMalformed(f"{key} is missing", authenticator_id=who)
        fields: dict[str, Any] = {
            "authenticator_id": raw_who,
            "expires_at": data["expires_at"],
        }
        for name in cls._BYTES:
            if name in data:
                fields[name] = _unb64url(name, data[name], who)
        return fields


@dataclass(frozen=True, kw_only=True)
class PasskeyApproval(_ApprovalBase):
    """A WebAuthn assertion over the challenge, as ``navigator.credentials.get()`` returns it."""

    KIND: ClassVar[AuthenticatorKind] = AuthenticatorKind.PASSKEY
    _BYTES: ClassVar[Mapping[str, tuple[int, int]]] = {
        "nonce": (MIN_NONCE_BYTES, MAX_NONCE_BYTES),
        "authenticator_data": (37, _MAX_AUTHENTICATOR_DATA_BYTES),  # rpIdHash+flags+counter
        "client_data_json": (1, _MAX_CLIENT_DATA_BYTES),
        "signature": (1, _MAX_SIGNATURE_BYTES),
        "user_handle": (1, _MAX_USER_HANDLE_BYTES),
    }
    _OPTIONAL: ClassVar[tuple[str, ...]] = ("user_handle",)

    authenticator_id: str
    nonce: bytes
    expires_at: int
    authenticator_data: bytes
    client_data_json: bytes
    signature: bytes
    user_handle: bytes | None = None

    def __post_init__(self) -> None:
        self._validate()

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> PasskeyApproval:
        """Read :meth:`to_json`'s form; raises :class:`ApprovalMalformed` naming the field."""
        return cls(**cls._fields_from_json(data))


@dataclass(frozen=True, kw_only=True)
class DeviceApproval(_ApprovalBase):
    """A device key's DER ECDSA-P256-SHA256 signature over the challenge."""

    KIND: ClassVar[AuthenticatorKind] = AuthenticatorKind.DEVICE
    _BYTES: ClassVar[Mapping[str, tuple[int, int]]] = {
        "nonce": (MIN_NONCE_BYTES, MAX_NONCE_BYTES),
        "signature": (8, _MAX_DER_P256_SIGNATURE_BYTES),
    }

    authenticator_id: str
    nonce: bytes
    expires_at: int
    signature: bytes

    def __post_init__(self) -> None:
        self._validate()

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> DeviceApproval:
        """Read :meth:`to_json`'s form; raises :class:`ApprovalMalformed` naming the field."""
        return cls(**cls._fields_from_json(data))


Approval: TypeAlias = PasskeyApproval | DeviceApproval


def parse_approval(data: Mapping[str, Any]) -> Approval:
    """Read an approval of either kind from JSON, by its ``kind``."""
    lean = _lean_device_approval(data)
    return lean if lean is not None else _parse_approval(data)


def _parse_approval(data: Mapping[str, Any]) -> Approval:
    """The general parser: either kind, every field checked, each fault named."""
    kind = data.get("kind") if isinstance(data, Mapping) else None
    if kind == AuthenticatorKind.PASSKEY:
        return PasskeyApproval.from_json(data)
    if kind == AuthenticatorKind.DEVICE:
        return DeviceApproval.from_json(data)
    raise ApprovalMalformed("kind must be 'passkey' or 'device'")


_DEVICE_KEYS: Final = frozenset(("kind", "authenticator_id", "expires_at", *DeviceApproval._BYTES))


def _lean_device_approval(data: object) -> DeviceApproval | None:
    """A well-formed device approval, parsed without the general path's per-field machinery;
    ``None`` for anything else (the general path then parses it, or names what is wrong).

    Accepts exactly what ``DeviceApproval.from_json`` accepts and builds the same value: the
    same keys, an id of 1 to 64 characters, ``expires_at`` unix seconds, and nonce and signature
    in canonical unpadded base64url of the allowed sizes.
    """
    if type(data) is not dict or data.keys() != _DEVICE_KEYS or data["kind"] != "device":
        return None
    who, expires_at = data["authenticator_id"], data["expires_at"]
    if (
        type(who) is not str
        or not 0 < len(who) <= _MAX_ID_CHARS
        or type(expires_at) is not int
        or not 0 <= expires_at <= _MAX_EXPIRES_AT
    ):
        return None
    nonce = _lean_b64url(data["nonce"], MIN_NONCE_BYTES, MAX_NONCE_BYTES)
    signature = _lean_b64url(data["signature"], 8, _MAX_DER_P256_SIGNATURE_BYTES)
    if nonce is None or signature is None:
        return None
    approval = object.__new__(DeviceApproval)
    # Frozen: set the fields as __init__ would, minus the checks made above.
    approval.__dict__.update(
        authenticator_id=who, nonce=nonce, expires_at=expires_at, signature=signature
    )
    return approval


def _lean_b64url(value: object, low: int, high: int) -> bytes | None:
    """Strict unpadded base64url of ``low`` to ``high`` bytes, as :func:`_unb64url` reads it,
    or ``None``. Canonical means the bits the last character carries beyond the data are
    zero (2 beyond one byte, 4 beyond two): checked on that character, not by re-encoding."""
    if type(value) is not str or not value.isascii():
        return None
    tail = len(value) % 4
    # Outside base64url's alphabet, yet in base64's once translated: refused here; the strict
    # decoder refuses every other character, and any padding or excess.
    if tail == 1 or "+" in value or "/" in value or "=" in value:
        return None
    try:
        data = binascii.a2b_base64(
            (value + _PADDING[tail]).encode("ascii").translate(_FROM_URLSAFE), strict_mode=True
        )
    except binascii.Error:
        return None
    if tail and _B64URL_VALUE[value[-1]] & _UNUSED_BITS[tail]:
        return None
    return data if low <= len(data) <= high else None


_B64URL_ALPHABET: Final = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
_B64URL_VALUE: Final = {char: index for index, char in enumerate(_B64URL_ALPHABET)}
_UNUSED_BITS: Final = {2: 0b1111, 3: 0b11}  # 2 chars carry 1 byte (+4 bits), 3 carry 2 (+2)
_FROM_URLSAFE: Final = bytes.maketrans(b"-_", b"+/")
_PADDING: Final = ("", "", "==", "=")  # by length % 4 (1 is never valid)


# -- verification ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class VerifiedApproval:
    """An approval that verified: what the store must record before anything is released.

    The store consumes ``nonce`` (single use, kept until ``expires_at`` has passed) and saves
    ``new_sign_count`` as the authenticator's counter, in the transaction that signs.
    """

    authenticator_id: str
    nonce: bytes
    expires_at: int
    new_sign_count: int


_CHECKED: Final = object()  # only check_device_signature makes a CheckedSignature


class CheckedSignature:
    """A device approval's signature, verified over its challenge under ``public_key``.

    Made only by :func:`check_device_signature`. It proves one pure fact — this signature
    verifies for this key over the challenge of this digest, nonce and expiry — so the signature
    check can run before the signer locks anything (overlapping another batch's commit).
    :func:`verify_approval` relies on it only for the very key, digest, nonce, expiry and
    signature it covers, and still makes every other check.
    """

    __slots__ = ("digest", "expires_at", "nonce", "public_key", "signature")

    def __init__(self, public_key: bytes, digest: bytes, approval: DeviceApproval, *, _key: object):
        if _key is not _CHECKED:
            raise TypeError("only check_device_signature() makes a CheckedSignature")
        self.public_key = public_key
        self.digest = digest
        self.nonce = approval.nonce
        self.expires_at = approval.expires_at
        self.signature = approval.signature

    def covers(self, public_key: bytes, digest: bytes, approval: DeviceApproval) -> bool:
        """Whether this is the check of exactly that approval's signature, over that digest,
        under that key."""
        return (
            self.public_key == public_key
            and self.digest == digest
            and self.signature == approval.signature
            and self.nonce == approval.nonce
            and self.expires_at == approval.expires_at
        )


def check_device_signature(
    approval: DeviceApproval, public_key: bytes, digest: bytes
) -> CheckedSignature | None:
    """Verify only a device approval's signature over (``digest``, its nonce and expiry) under
    ``public_key``; ``None`` if it does not verify (or cannot be checked).

    Nothing else is checked here (authenticator, revocation, expiry, nonce): that is
    :func:`verify_approval`'s, which takes the result as ``checked``.
    """
    try:
        if type(approval) is DeviceApproval and type(digest) is bytes and len(digest) == 32:
            # A device approval's nonce and expiry were checked when it was made (it is
            # frozen): its challenge as challenge_bytes makes it, without checking them again.
            challenge = sha256(
                APPROVAL_CHALLENGE_DOMAIN
                + digest
                + approval.nonce
                + approval.expires_at.to_bytes(8, "big")
            ).digest()
        else:
            challenge = challenge_bytes(digest, approval.nonce, approval.expires_at)
        _device_public_key(public_key).verify(
            approval.signature, sha256(challenge).digest(), _ECDSA_PREHASHED_SHA256
        )
    except (InvalidSignature, InvalidInput, ValueError, TypeError):
        return None
    return CheckedSignature(public_key, digest, approval, _key=_CHECKED)


def verify_approval(
    approval: Approval,
    authenticator: Authenticator,
    digest: bytes,
    *,
    now: int,
    checked: CheckedSignature | None = None,
) -> VerifiedApproval:
    """Check that ``authenticator`` approved the intent with ``digest``, now; refuse otherwise.

    Raises :class:`ApprovalRefused` whose ``reason`` is a :class:`RefusalReason`. Does not
    consume the nonce: that is the store's, in the same transaction as the signature.

    ``checked``, from :func:`check_device_signature`, spares verifying a device approval's
    signature a second time — only if it covers this authenticator's key, this challenge and
    this signature; otherwise the signature is verified here. Every other check runs either way.
    """
    who = approval.authenticator_id
    if who != authenticator.id:
        raise ApprovalRefused(RefusalReason.WRONG_AUTHENTICATOR, authenticator_id=who)
    if approval.KIND is not authenticator.kind:
        raise ApprovalRefused(RefusalReason.WRONG_KIND, authenticator_id=who)
    if authenticator.revoked:
        raise ApprovalRefused(RefusalReason.REVOKED, authenticator_id=who)
    if now < authenticator.active_from:
        raise ApprovalRefused(RefusalReason.NOT_YET_ACTIVE, authenticator_id=who)
    if approval.expires_at <= now:
        raise ApprovalRefused(RefusalReason.EXPIRED, authenticator_id=who)
    # A long-lived approval is a signing token that outlives the user's attention; refuse it
    # even though it verifies (a clock skew of the device is the client's to fix).
    if approval.expires_at - now > MAX_APPROVAL_LIFETIME:
        raise ApprovalRefused(RefusalReason.LIFETIME_TOO_LONG, authenticator_id=who)
    if isinstance(approval, DeviceApproval):
        # A check made ahead covers the same challenge only if it covers the same digest,
        # nonce and expiry (which it computed the challenge from, as challenge_bytes does here).
        if checked is None or not checked.covers(authenticator.public_key, digest, approval):
            challenge = challenge_bytes(digest, approval.nonce, approval.expires_at)
            _verify_device(approval, authenticator, challenge)
        new_sign_count = authenticator.sign_count
    else:
        challenge = challenge_bytes(digest, approval.nonce, approval.expires_at)
        new_sign_count = _verify_passkey(approval, authenticator, challenge)
    return VerifiedApproval(who, approval.nonce, approval.expires_at, new_sign_count)


def passes_with_check(
    approval: Approval,
    authenticator: Authenticator,
    digest: bytes,
    *,
    now: int,
    checked: CheckedSignature | None,
) -> bool:
    """Whether :func:`verify_approval` (same arguments) accepts ``approval`` with nothing left
    to verify: a device approval from this very authenticator, active and not revoked, not
    expired, not too long-lived, whose signature ``checked`` covers under this key, digest,
    nonce, expiry and signature. Its :class:`VerifiedApproval` then keeps the authenticator's
    sign count.

    Pure: ``False`` says only "take the long way", where :func:`verify_approval` runs every
    check again and names the first that fails. The signer's lean signing path uses it (a test
    holds the two together over every check).
    """
    return (
        checked is not None
        and type(approval) is DeviceApproval
        and approval.authenticator_id == authenticator.id
        and authenticator.kind is AuthenticatorKind.DEVICE
        and not authenticator.revoked
        and authenticator.active_from <= now < approval.expires_at
        and approval.expires_at - now <= MAX_APPROVAL_LIFETIME
        and checked.covers(authenticator.public_key, digest, approval)
    )


def _verify_device(
    approval: DeviceApproval, authenticator: Authenticator, challenge: bytes
) -> None:
    key = _device_public_key(authenticator.public_key)
    try:
        # A signature for another challenge (another intent, nonce or expiry) fails here too: a
        # device signs the challenge itself, so mismatch and forgery look the same.
        # ECDSA signatures are malleable ((r, s) and (r, n-s) both verify); harmless here, since
        # replay protection keys on the nonce inside the challenge, never on signature bytes.
        key.verify(approval.signature, sha256(challenge).digest(), _ECDSA_PREHASHED_SHA256)
    except InvalidSignature:
        raise ApprovalRefused(
            RefusalReason.BAD_SIGNATURE, authenticator_id=approval.authenticator_id
        ) from None


#: The webauthn library's refusals by the start of their message, pinned by the unit tests
#: (each reason is provoked there), so an upgrade that rewords one fails a test, not silently.
_WEBAUTHN_REFUSALS: Final = (
    ("clientDataJSON was malformed", RefusalReason.MALFORMED),
    ("Unexpected client data type", RefusalReason.WRONG_TYPE),
    ("Client data challenge was not expected challenge", RefusalReason.CHALLENGE_MISMATCH),
    ("Unexpected client data origin", RefusalReason.WRONG_ORIGIN),
    ("Unexpected token_binding status", RefusalReason.MALFORMED),
    ("authenticatorData was malformed", RefusalReason.MALFORMED),
    ("Unexpected RP ID hash", RefusalReason.WRONG_RP_ID),
    ("User was not present", RefusalReason.USER_NOT_PRESENT),
    ("User verification is required", RefusalReason.USER_NOT_VERIFIED),
    ("Response sign count of", RefusalReason.COUNTER_REGRESSION),
    ("Could not verify authentication signature", RefusalReason.BAD_SIGNATURE),
)


def _webauthn_reason(message: str) -> RefusalReason:
    for prefix, reason in _WEBAUTHN_REFUSALS:
        if message.startswith(prefix):
            return reason
    # An unknown refusal is still a refusal: fail closed, as a bad signature.
    return RefusalReason.BAD_SIGNATURE


def _verify_passkey(
    approval: PasskeyApproval, authenticator: Authenticator, challenge: bytes
) -> int:
    who = approval.authenticator_id
    credential = AuthenticationCredential(
        id=_b64url(authenticator.credential_id),
        raw_id=authenticator.credential_id,
        response=AuthenticatorAssertionResponse(
            client_data_json=approval.client_data_json,
            authenticator_data=approval.authenticator_data,
            signature=approval.signature,
            user_handle=approval.user_handle,
        ),
    )
    try:
        verified = verify_authentication_response(
            credential=credential,
            expected_challenge=challenge,
            expected_rp_id=authenticator.rp_id or "",
            expected_origin=list(authenticator.origins),
            credential_public_key=authenticator.public_key,
            credential_current_sign_count=authenticator.sign_count,
            require_user_verification=True,
        )
    except InvalidAuthenticationResponse as exc:
        reason = _webauthn_reason(str(exc))
        if reason is RefusalReason.MALFORMED:
            raise ApprovalMalformed(str(exc), authenticator_id=who) from None
        raise ApprovalRefused(reason, authenticator_id=who) from None
    except Exception as exc:
        # Anything else (an undecodable signature or stored key) fails closed; the type name is
        # enough to debug and says nothing secret.
        raise ApprovalMalformed(type(exc).__name__, authenticator_id=who) from None
    # The library does not look at crossOrigin: an assertion made in our origin's iframe on
    # another site could have been prompted by that site, so it is not the user's intent here.
    if parse_client_data_json(approval.client_data_json).cross_origin:
        raise ApprovalRefused(RefusalReason.CROSS_ORIGIN, authenticator_id=who)
    return verified.new_sign_count
