"""Key export: encrypted to the owner's key, opened only by it, refused when altered."""

from __future__ import annotations

import base64
import json
import os
from collections.abc import Iterator
from typing import Any

import coincurve
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from eth_account import Account
from hypothesis import given, settings
from hypothesis import strategies as st

from seiwallet.signer.errors import ExportEnvelopeInvalid, IntentInvalid, InvalidRecipientKey
from seiwallet.signer.export import (
    ENVELOPE_TYPE,
    SCHEME,
    ExportEnvelope,
    decrypt_export,
    encrypt_export,
    export_sealed_key,
    load_recipient_public_key,
)
from seiwallet.signer.keystore import KeyStore
from seiwallet.signer.masterkey import FileMasterKey

WALLET = b"wallet:0b9c3a4e-7f44-4d5e-9a3c-4c1f2b6d8e01"
SECP256K1_ORDER = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141


class CountingMaster(FileMasterKey):
    """A master key that counts unwraps, to show when a wallet key was (not) opened."""

    unwraps = 0

    def unwrap(self, wrapped: bytes, aad: bytes) -> bytearray:
        self.unwraps += 1
        return super().unwrap(wrapped, aad)


@pytest.fixture
def master() -> Iterator[CountingMaster]:
    with CountingMaster(bytearray(os.urandom(32)), source="memory") as key:
        yield key


@pytest.fixture
def store(master: CountingMaster) -> KeyStore:
    return KeyStore(master)


def point(key: ec.EllipticCurvePublicKey) -> bytes:
    return key.public_bytes(
        serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
    )


def test_export_to_a_p256_key_decrypts_to_the_wallets_key(store: KeyStore) -> None:
    sealed, _, address = store.generate(WALLET)
    recipient = ec.generate_private_key(ec.SECP256R1())
    envelope = export_sealed_key(store, sealed, WALLET, recipient.public_key())
    assert envelope.address == address
    assert envelope.curve == "P-256"
    private_key = decrypt_export(envelope.to_json(), recipient)
    assert Account.from_key(private_key).address == address
    with store.open(sealed, WALLET) as opened:
        assert private_key == opened.secret


def test_export_to_an_ethereum_key_given_as_bare_points(store: KeyStore) -> None:
    sealed, _, address = store.generate(WALLET)
    owner = coincurve.PrivateKey()
    envelope = export_sealed_key(
        store, sealed, WALLET, owner.public_key.format(compressed=True), curve="secp256k1"
    )
    assert envelope.curve == "secp256k1"
    private_key = decrypt_export(envelope.to_dict(), owner.secret)
    assert Account.from_key(private_key).address == address


@pytest.mark.parametrize("form", ["pem-text", "pem-bytes", "der", "hex", "hex-compressed"])
def test_recipient_key_forms(store: KeyStore, form: str) -> None:
    sealed, _, address = store.generate(WALLET)
    recipient = ec.generate_private_key(ec.SECP256R1())
    public = recipient.public_key()
    pem = public.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    given_key: bytes | str = {
        "pem-text": pem.decode(),
        "pem-bytes": pem,
        "der": public.public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        ),
        "hex": "0x" + point(public).hex(),
        "hex-compressed": public.public_bytes(
            serialization.Encoding.X962, serialization.PublicFormat.CompressedPoint
        ).hex(),
    }[form]
    envelope = export_sealed_key(store, sealed, WALLET, given_key)
    recipient_pem = recipient.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    assert Account.from_key(decrypt_export(envelope, recipient_pem)).address == address


def test_envelope_shape(store: KeyStore) -> None:
    sealed, _, address = store.generate(WALLET)
    recipient = ec.generate_private_key(ec.SECP256R1())
    data = json.loads(export_sealed_key(store, sealed, WALLET, recipient.public_key()).to_json())
    assert set(data) == {
        "type",
        "version",
        "scheme",
        "curve",
        "address",
        "ephemeral_public_key",
        "nonce",
        "ciphertext",
    }
    assert (data["type"], data["version"], data["scheme"]) == (ENVELOPE_TYPE, 1, SCHEME)
    assert data["address"] == address
    for field, size in (("ephemeral_public_key", 65), ("nonce", 12), ("ciphertext", 48)):
        assert "=" not in data[field]
        assert len(base64.urlsafe_b64decode(data[field] + "=" * (-len(data[field]) % 4))) == size
    assert ExportEnvelope.from_json(json.dumps(data)) == ExportEnvelope.from_dict(data)


def test_each_export_uses_a_fresh_ephemeral_key(store: KeyStore) -> None:
    sealed, _, _ = store.generate(WALLET)
    recipient = ec.generate_private_key(ec.SECP256R1()).public_key()
    first = export_sealed_key(store, sealed, WALLET, recipient)
    second = export_sealed_key(store, sealed, WALLET, recipient)
    assert first.ephemeral_public_key != second.ephemeral_public_key
    assert first.ciphertext != second.ciphertext


def test_wrong_recipient_key_cannot_decrypt(store: KeyStore) -> None:
    sealed, _, _ = store.generate(WALLET)
    recipient = ec.generate_private_key(ec.SECP256R1())
    stranger = ec.generate_private_key(ec.SECP256R1())
    envelope = export_sealed_key(store, sealed, WALLET, recipient.public_key())
    with pytest.raises(ExportEnvelopeInvalid, match="not made for this private key"):
        decrypt_export(envelope, stranger)
    with pytest.raises(ExportEnvelopeInvalid, match="secp256k1"):
        decrypt_export(envelope, ec.generate_private_key(ec.SECP256K1()))


def _flip(value: str) -> str:
    raw = bytearray(base64.urlsafe_b64decode(value + "=" * (-len(value) % 4)))
    raw[-1] ^= 0x01
    return base64.urlsafe_b64encode(bytes(raw)).rstrip(b"=").decode()


def _other_point(_: str) -> str:
    other = ec.generate_private_key(ec.SECP256R1()).public_key()
    return base64.urlsafe_b64encode(point(other)).rstrip(b"=").decode()


@pytest.mark.parametrize(
    ("field", "change"),
    [
        ("ciphertext", _flip),
        ("nonce", _flip),
        ("ephemeral_public_key", _other_point),
        ("address", lambda _: "0x000000000000000000000000000000000000dEaD"),
    ],
)
def test_tampered_envelope_is_refused(store: KeyStore, field: str, change: Any) -> None:
    sealed, _, _ = store.generate(WALLET)
    recipient = ec.generate_private_key(ec.SECP256R1())
    data = export_sealed_key(store, sealed, WALLET, recipient.public_key()).to_dict()
    data[field] = change(data[field])
    with pytest.raises(ExportEnvelopeInvalid):
        decrypt_export(data, recipient)


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("type", "something.else", "'type'"),
        ("version", 2, "version 2"),
        ("scheme", "ECIES-XOR", "'scheme'"),
        ("curve", "P-384", "curve 'P-384'"),
        ("address", "0x1234", "'address'"),
        ("nonce", "AAAA=", "base64url"),
        ("nonce", "AAAA", "not 12"),
        ("ciphertext", "!!", "base64url"),
        ("ephemeral_public_key", "AAAA", "uncompressed point"),
        ("extra", "x", "unknown fields"),
    ],
)
def test_malformed_envelope_is_refused(
    store: KeyStore, field: str, value: object, message: str
) -> None:
    sealed, _, _ = store.generate(WALLET)
    recipient = ec.generate_private_key(ec.SECP256R1())
    data: dict[str, object] = dict(
        export_sealed_key(store, sealed, WALLET, recipient.public_key()).to_dict()
    )
    data[field] = value
    with pytest.raises(ExportEnvelopeInvalid, match=message) as caught:
        decrypt_export(data, recipient)
    assert caught.value.code == "signer.export_envelope_invalid"


def test_envelope_that_is_not_json_is_refused() -> None:
    recipient = ec.generate_private_key(ec.SECP256R1())
    for text in ("not json", "[1, 2]", "x" * 5000):
        with pytest.raises(ExportEnvelopeInvalid):
            decrypt_export(text, recipient)


def _off_curve_point() -> bytes:
    raw = bytearray(point(ec.generate_private_key(ec.SECP256R1()).public_key()))
    raw[-1] ^= 0x01
    return bytes(raw)


@pytest.mark.parametrize(
    ("key", "curve", "message"),
    [
        (b"\x00", "P-256", "identity"),
        (b"", "P-256", "identity"),
        (_off_curve_point(), "P-256", "not a point on P-256"),
        (b"\x04" + bytes(64), "P-256", "not a point"),
        (b"\x02" + b"\xff" * 32, "secp256k1", "not a point"),
        ("zz-not-hex", "P-256", "hex-encoded"),
        (bytes(65), "P-256", "not a point"),
        (b"\x04" + bytes(64), "P-224", "curve 'P-224'"),
        (
            ec.generate_private_key(ec.SECP384R1())
            .public_key()
            .public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            ),
            "P-256",
            "secp384r1 is not supported",
        ),
        (
            rsa.generate_private_key(public_exponent=65537, key_size=1024)
            .public_key()
            .public_bytes(
                serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
            ),
            "P-256",
            "only elliptic-curve",
        ),
        (b"\x30\x03\x02\x01\x01", "P-256", "cannot be loaded"),
    ],
)
def test_unusable_recipient_keys_are_refused_before_the_key_is_opened(
    store: KeyStore, master: CountingMaster, key: bytes | str, curve: str, message: str
) -> None:
    sealed, _, _ = store.generate(WALLET)
    opened_so_far = master.unwraps
    with pytest.raises(InvalidRecipientKey, match=message) as caught:
        export_sealed_key(store, sealed, WALLET, key, curve=curve)
    assert isinstance(caught.value, IntentInvalid)
    assert caught.value.code == "signer.export_recipient_invalid"
    assert master.unwraps == opened_so_far


def test_recipient_key_objects_on_unsupported_curves_are_refused() -> None:
    with pytest.raises(InvalidRecipientKey, match="secp521r1"):
        load_recipient_public_key(ec.generate_private_key(ec.SECP521R1()).public_key())


def test_export_derives_the_address_from_the_key_itself() -> None:
    key = bytes.fromhex("4c0883a69102937d6231471b5dbb6204fe5129617082792ae468d01a3f362318")
    recipient = ec.generate_private_key(ec.SECP256R1())
    envelope = encrypt_export(key, recipient.public_key())
    assert envelope.address == Account.from_key(key).address
    assert decrypt_export(envelope, recipient) == key


@settings(max_examples=25, deadline=None)
@given(
    scalar=st.integers(min_value=1, max_value=SECP256K1_ORDER - 1),
    curve=st.sampled_from(["P-256", "secp256k1"]),
)
def test_any_key_round_trips(scalar: int, curve: str) -> None:
    key = scalar.to_bytes(32, "big")
    recipient = ec.generate_private_key(ec.SECP256R1() if curve == "P-256" else ec.SECP256K1())
    envelope = encrypt_export(key, point(recipient.public_key()), curve=curve)
    assert envelope.curve == curve
    assert decrypt_export(envelope.to_json(), recipient) == key


@pytest.mark.parametrize("key", [b"", bytes(31), bytes(33), bytes(32)])
def test_invalid_private_keys_are_not_exported(key: bytes) -> None:
    recipient = ec.generate_private_key(ec.SECP256R1()).public_key()
    with pytest.raises(IntentInvalid, match="private key"):
        encrypt_export(key, recipient)
