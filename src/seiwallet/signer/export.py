"""Key export: a wallet's private key, encrypted to a public key its owner supplies.

Leaving must always be possible, yet the key must never travel in clear: the signer encrypts
it to the owner's own public key (ECIES), and only the owner's private key opens the result.

The scheme, so that it can be re-implemented without seiwallet (``decrypt_export`` is the
reference):

1. ``curve`` is the recipient key's curve: ``P-256`` (secp256r1: WebCrypto, passkey-era
   tooling, ``openssl ecparam -name prime256v1``) or ``secp256k1`` (an Ethereum key).
2. An ephemeral key pair ``(e, E)`` on that curve; ``Z`` = the x coordinate of ``e·R`` (ECDH
   with the recipient's public key ``R``).
3. ``k = HKDF-SHA256(ikm=Z, salt=E ‖ R, info="seiwallet/key-export/v1" 0x00 curve 0x00
   address, length=32)``, with ``E`` and ``R`` as uncompressed SEC1 points and ``address``
   the EIP-55 text of the wallet's EVM address.
4. ``ciphertext = AES-256-GCM(k, nonce, plaintext=the 32-byte secp256k1 private key, aad="")``
   (the 16-byte tag appended).

The envelope is JSON with base64url (unpadded) fields::

    {"type": "seiwallet.key-export", "version": 1,
     "scheme": "ECDH-HKDF-SHA256-AES-256-GCM", "curve": "P-256", "address": "0x…",
     "ephemeral_public_key": "…", "nonce": "…", "ciphertext": "…"}

Every field is bound: the address and curve through HKDF's info, both public keys through its
salt, the nonce and ciphertext by GCM; changing any of them makes decryption fail.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

from cryptography.exceptions import InvalidTag, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from eth_typing import ChecksumAddress

from seiwallet.addresses import InvalidAddress, evm_address_from_public_key, parse_evm_address
from seiwallet.signer.errors import ExportEnvelopeInvalid, InvalidRecipientKey
from seiwallet.signer.keystore import PRIVATE_KEY_BYTES, KeyStore, SealedKey, public_key_of
from seiwallet.signer.masterkey import NONCE_BYTES, TAG_BYTES, unsafe_wipe_bytes, wipe

__all__ = [
    "CURVES",
    "ENVELOPE_TYPE",
    "ENVELOPE_VERSION",
    "SCHEME",
    "ExportEnvelope",
    "decrypt_export",
    "encrypt_export",
    "export_sealed_key",
    "load_recipient_public_key",
]

ENVELOPE_TYPE: Final = "seiwallet.key-export"
ENVELOPE_VERSION: Final = 1
SCHEME: Final = "ECDH-HKDF-SHA256-AES-256-GCM"
#: The recipient curves accepted, by the names the envelope uses.
CURVES: Final[Mapping[str, type[ec.EllipticCurve]]] = {
    "P-256": ec.SECP256R1,
    "secp256k1": ec.SECP256K1,
}
_CURVE_NAMES: Final[Mapping[str, str]] = {curve().name: name for name, curve in CURVES.items()}
_INFO_LABEL: Final = b"seiwallet/key-export/v1"
_KEY_BYTES: Final = 32
_POINT_BYTES: Final = 65
_CIPHERTEXT_BYTES: Final = PRIVATE_KEY_BYTES + TAG_BYTES
_BASE64URL: Final = re.compile(r"[A-Za-z0-9_-]*")
_ENVELOPE_FIELDS: Final = frozenset(
    {
        "type",
        "version",
        "scheme",
        "curve",
        "address",
        "ephemeral_public_key",
        "nonce",
        "ciphertext",
    }
)
_MAX_ENVELOPE_CHARS: Final = 4096


@dataclass(frozen=True, slots=True)
class ExportEnvelope:
    """An exported key as it leaves the signer: safe to send, opened only by the recipient."""

    curve: str
    address: ChecksumAddress
    ephemeral_public_key: bytes
    nonce: bytes
    ciphertext: bytes
    version: int = ENVELOPE_VERSION

    def to_dict(self) -> dict[str, str | int]:
        """The JSON-able form (see the module docstring)."""
        return {
            "type": ENVELOPE_TYPE,
            "version": self.version,
            "scheme": SCHEME,
            "curve": self.curve,
            "address": self.address,
            "ephemeral_public_key": _b64encode(self.ephemeral_public_key),
            "nonce": _b64encode(self.nonce),
            "ciphertext": _b64encode(self.ciphertext),
        }

    def to_json(self) -> str:
        """:meth:`to_dict` as compact JSON."""
        return json.dumps(self.to_dict(), separators=(",", ":"))

    @classmethod
    def from_dict(cls, data: Mapping[str, object]) -> ExportEnvelope:
        """Parse and check an envelope; ExportEnvelopeInvalid says which field is wrong."""
        unknown = set(data) - _ENVELOPE_FIELDS
        if unknown:
            raise ExportEnvelopeInvalid(f"unknown fields {sorted(unknown)}")
        if data.get("type") != ENVELOPE_TYPE:
            raise ExportEnvelopeInvalid(f"'type' is not {ENVELOPE_TYPE!r}")
        if data.get("version") != ENVELOPE_VERSION:
            raise ExportEnvelopeInvalid(
                f"version {data.get('version')!r} is not {ENVELOPE_VERSION}; "
                "use the seiwallet release that made it"
            )
        if data.get("scheme") != SCHEME:
            raise ExportEnvelopeInvalid(f"'scheme' is not {SCHEME!r}")
        curve = _text(data, "curve")
        if curve not in CURVES:
            raise ExportEnvelopeInvalid(f"curve {curve!r} is not one of {sorted(CURVES)}")
        try:
            address = parse_evm_address(_text(data, "address"))
        except InvalidAddress as exc:
            raise ExportEnvelopeInvalid(f"'address': {exc}") from None
        ephemeral_public_key = _b64decode(data, "ephemeral_public_key")
        if len(ephemeral_public_key) != _POINT_BYTES or ephemeral_public_key[0] != 4:
            raise ExportEnvelopeInvalid("'ephemeral_public_key' is not an uncompressed point")
        envelope = cls(
            curve=curve,
            address=address,
            ephemeral_public_key=ephemeral_public_key,
            nonce=_b64decode(data, "nonce"),
            ciphertext=_b64decode(data, "ciphertext"),
        )
        if len(envelope.nonce) != NONCE_BYTES:
            raise ExportEnvelopeInvalid(f"'nonce' is {len(envelope.nonce)} bytes, not 12")
        if len(envelope.ciphertext) != _CIPHERTEXT_BYTES:
            raise ExportEnvelopeInvalid(
                f"'ciphertext' is {len(envelope.ciphertext)} bytes, not {_CIPHERTEXT_BYTES}"
            )
        return envelope

    @classmethod
    def from_json(cls, text: str | bytes) -> ExportEnvelope:
        """Parse :meth:`to_json`'s output."""
        if len(text) > _MAX_ENVELOPE_CHARS:
            raise ExportEnvelopeInvalid("it is far larger than any envelope")
        try:
            data = json.loads(text)
        except ValueError:
            raise ExportEnvelopeInvalid("it is not JSON") from None
        if not isinstance(data, dict):
            raise ExportEnvelopeInvalid("it is not a JSON object")
        return cls.from_dict(data)


def load_recipient_public_key(
    key: ec.EllipticCurvePublicKey | bytes | str, *, curve: str = "P-256"
) -> ec.EllipticCurvePublicKey:
    """The recipient's public key, checked to be a valid point on a supported curve.

    Accepts a ``cryptography`` key; a PEM or DER SubjectPublicKeyInfo (which names its own
    curve); or a bare SEC1 point (33 or 65 bytes, or their hex) on ``curve``.
    """
    if isinstance(key, str):
        text = key.strip()
        if text.startswith("-----BEGIN"):
            key = text.encode("ascii", "replace")
        else:
            try:
                key = bytes.fromhex(text.removeprefix("0x"))
            except ValueError:
                raise InvalidRecipientKey(
                    "expected a PEM public key or a hex-encoded SEC1 point"
                ) from None
    if isinstance(key, bytes):
        key = _parse_public_key(key, curve)
    if not isinstance(key, ec.EllipticCurvePublicKey):
        raise InvalidRecipientKey("only elliptic-curve keys (P-256, secp256k1) are supported")
    if key.curve.name not in _CURVE_NAMES:
        raise InvalidRecipientKey(
            f"curve {key.curve.name} is not supported; use one of {sorted(CURVES)}"
        )
    return key


def encrypt_export(
    private_key: bytes | bytearray,
    recipient_public_key: ec.EllipticCurvePublicKey | bytes | str,
    *,
    curve: str = "P-256",
) -> ExportEnvelope:
    """Encrypt a 32-byte secp256k1 key to the recipient; the address is derived, not trusted.

    ``curve`` only applies to a bare SEC1 point; PEM, DER and key objects name their curve.
    """
    recipient = load_recipient_public_key(recipient_public_key, curve=curve)
    secret = bytearray(private_key)
    try:
        address = evm_address_from_public_key(public_key_of(secret))
        curve_name = _CURVE_NAMES[recipient.curve.name]
        ephemeral = ec.generate_private_key(CURVES[curve_name]())
        ephemeral_point = _point(ephemeral.public_key())
        key = _derive_key(
            ephemeral.exchange(ec.ECDH(), recipient),
            ephemeral_point,
            _point(recipient),
            curve_name,
            address,
        )
        try:
            nonce = secrets.token_bytes(NONCE_BYTES)
            ciphertext = AESGCM(key).encrypt(nonce, secret, None)
        finally:
            wipe(key)
    finally:
        wipe(secret)
    return ExportEnvelope(
        curve=curve_name,
        address=address,
        ephemeral_public_key=ephemeral_point,
        nonce=nonce,
        ciphertext=ciphertext,
    )


def export_sealed_key(
    keystore: KeyStore,
    sealed: SealedKey,
    aad: bytes,
    recipient_public_key: ec.EllipticCurvePublicKey | bytes | str,
    *,
    curve: str = "P-256",
) -> ExportEnvelope:
    """Open a sealed wallet key just long enough to encrypt it to the recipient.

    The recipient key is checked before the wallet key is unsealed. Callers must have
    verified the owner's approval of the ``key.export`` intent first.
    """
    recipient = load_recipient_public_key(recipient_public_key, curve=curve)
    with keystore.unsafe_open_secret(sealed, aad) as secret:
        return encrypt_export(secret, recipient)


def decrypt_export(
    envelope: ExportEnvelope | Mapping[str, object] | str | bytes,
    recipient_private_key: ec.EllipticCurvePrivateKey | bytes,
) -> bytes:
    """The owner's side: the 32-byte secp256k1 private key inside an export.

    ``recipient_private_key`` is a ``cryptography`` key, a PEM or DER private key (without a
    password), or a raw 32-byte scalar on the envelope's curve. The result is checked to be
    the key of the envelope's address.
    """
    if isinstance(envelope, str | bytes):
        envelope = ExportEnvelope.from_json(envelope)
    elif not isinstance(envelope, ExportEnvelope):
        envelope = ExportEnvelope.from_dict(envelope)
    curve = CURVES[envelope.curve]()
    recipient = _load_private_key(recipient_private_key, curve)
    try:
        ephemeral = ec.EllipticCurvePublicKey.from_encoded_point(
            curve, envelope.ephemeral_public_key
        )
    except ValueError:
        raise ExportEnvelopeInvalid(
            f"'ephemeral_public_key' is not a point on {envelope.curve}"
        ) from None
    key = _derive_key(
        recipient.exchange(ec.ECDH(), ephemeral),
        _point(ephemeral),
        _point(recipient.public_key()),
        envelope.curve,
        envelope.address,
    )
    try:
        plaintext = AESGCM(key).decrypt(envelope.nonce, envelope.ciphertext, None)
    except InvalidTag:
        raise ExportEnvelopeInvalid(
            "it was not made for this private key, or it was altered"
        ) from None
    finally:
        wipe(key)
    secret = bytearray(plaintext)
    try:
        if evm_address_from_public_key(public_key_of(secret)) != envelope.address:
            raise ExportEnvelopeInvalid("the key inside is not the key of its address")
    finally:
        wipe(secret)
    return plaintext


def _derive_key(
    shared: bytes, ephemeral_point: bytes, recipient_point: bytes, curve: str, address: str
) -> bytearray:
    """HKDF-SHA256 of the ECDH secret, bound to both public keys, the curve and the address."""
    info = _INFO_LABEL + b"\x00" + curve.encode("ascii") + b"\x00" + address.encode("ascii")
    hkdf = HKDF(
        algorithm=hashes.SHA256(),
        length=_KEY_BYTES,
        salt=ephemeral_point + recipient_point,
        info=info,
    )
    derived = hkdf.derive(shared)
    key = bytearray(derived)
    unsafe_wipe_bytes(derived)
    unsafe_wipe_bytes(shared)
    return key


def _point(key: ec.EllipticCurvePublicKey) -> bytes:
    return key.public_bytes(
        serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
    )


def _parse_public_key(data: bytes, curve: str) -> ec.EllipticCurvePublicKey:
    """A PEM, DER or SEC1-encoded public key, validated on its curve by OpenSSL."""
    if data.startswith(b"-----BEGIN"):
        load = serialization.load_pem_public_key
    elif data[:1] == b"\x30":  # a DER SEQUENCE; SEC1 points start with 02, 03 or 04
        load = serialization.load_der_public_key
    else:
        if curve not in CURVES:
            raise InvalidRecipientKey(
                f"curve {curve!r} is not supported; use one of {sorted(CURVES)}"
            )
        if data in (b"", b"\x00"):
            raise InvalidRecipientKey("it is the point at infinity (the identity), not a key")
        try:
            # from_encoded_point refuses points that are not on the curve.
            return ec.EllipticCurvePublicKey.from_encoded_point(CURVES[curve](), data)
        except ValueError:
            raise InvalidRecipientKey(f"it is not a point on {curve}") from None
    try:
        loaded = load(data)
    except (ValueError, UnsupportedAlgorithm) as exc:
        raise InvalidRecipientKey(f"it cannot be loaded ({exc})") from None
    if not isinstance(loaded, ec.EllipticCurvePublicKey):
        raise InvalidRecipientKey("only elliptic-curve keys (P-256, secp256k1) are supported")
    return loaded


def _load_private_key(
    key: ec.EllipticCurvePrivateKey | bytes, curve: ec.EllipticCurve
) -> ec.EllipticCurvePrivateKey:
    """The recipient's private key, on the envelope's curve."""
    if isinstance(key, bytes):
        try:
            if key.startswith(b"-----BEGIN"):
                loaded = serialization.load_pem_private_key(key, password=None)
            elif len(key) == _KEY_BYTES:
                loaded = ec.derive_private_key(int.from_bytes(key, "big"), curve)
            else:
                loaded = serialization.load_der_private_key(key, password=None)
        except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
            raise ExportEnvelopeInvalid(f"the private key cannot be loaded ({exc})") from None
        if not isinstance(loaded, ec.EllipticCurvePrivateKey):
            raise ExportEnvelopeInvalid("the private key is not an elliptic-curve key")
        key = loaded
    if key.curve.name != curve.name:
        raise ExportEnvelopeInvalid(
            f"the export is for a {_CURVE_NAMES.get(curve.name, curve.name)} key, "
            f"this private key is on {key.curve.name}"
        )
    return key


def _b64encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _text(data: Mapping[str, object], field: str) -> str:
    value = data.get(field)
    if not isinstance(value, str):
        raise ExportEnvelopeInvalid(f"{field!r} is missing or not a string")
    return value


def _b64decode(data: Mapping[str, object], field: str) -> bytes:
    """Strict unpadded base64url: one spelling per value, so envelopes compare byte for byte."""
    value = _text(data, field)
    if not _BASE64URL.fullmatch(value):
        raise ExportEnvelopeInvalid(f"{field!r} is not unpadded base64url")
    try:
        decoded = base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))
    except (binascii.Error, ValueError):
        raise ExportEnvelopeInvalid(f"{field!r} is not valid base64url") from None
    if _b64encode(decoded) != value:
        raise ExportEnvelopeInvalid(f"{field!r} is not canonical base64url")
    return decoded
