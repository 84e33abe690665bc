"""The signer's hot-path shortcuts give exactly what the general code gives.

Each shortcut (bench/signer.py's profile, BENCHMARKS.md) is held here to what it replaces:
Keccak-256 without pycryptodome's wrapper, the audit log's canonical JSON through orjson, the
lean device-approval parser, signatures checked ahead of the transaction, keys opened once per
batch, and the RPC's JSON answers.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
from dataclasses import replace
from typing import Any

import pytest
from Crypto.Hash import keccak as pycryptodome_keccak
from hypothesis import given, settings
from hypothesis import strategies as st
from starlette.responses import JSONResponse
from tests.fixtures.authenticators import SoftDeviceKey

from seiwallet.signer.approvals import (
    MAX_APPROVAL_LIFETIME,
    MAX_NONCE_BYTES,
    MIN_NONCE_BYTES,
    CheckedSignature,
    DeviceApproval,
    RefusalReason,
    _lean_b64url,
    _parse_approval,
    _unb64url,
    check_device_signature,
    parse_approval,
    passes_with_check,
    verify_approval,
)
from seiwallet.signer.audit import canonical_json
from seiwallet.signer.errors import ApprovalMalformed, ApprovalRefused, SealedKeyInvalid
from seiwallet.signer.keccak import keccak256
from seiwallet.signer.keystore import KeyStore
from seiwallet.signer.masterkey import FileMasterKey
from seiwallet.signer.server import dump_json

NOW = 1_700_000_000
DIGEST = hashlib.sha256(b"an intent").digest()
OTHER_DIGEST = hashlib.sha256(b"another intent").digest()
# The json module's encoding that the audit log hashes (what canonical_json must reproduce).
REFERENCE = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=True)


# -- Keccak-256 -------------------------------------------------------------------------------


def test_keccak_of_nothing_is_the_published_value() -> None:
    assert keccak256(b"").hex() == (
        "c5d2460186f7233c927e7db2dcc703c0e500b653ca82273b7bfad8045d85a470"
    )


@given(st.binary(max_size=600))
def test_keccak_is_pycryptodomes(data: bytes) -> None:
    assert keccak256(data) == pycryptodome_keccak.new(data=data, digest_bits=256).digest()


def test_keccak_state_is_reset_between_hashes() -> None:
    first = keccak256(b"a" * 500)
    keccak256(b"b" * 137)
    assert keccak256(b"a" * 500) == first


# -- the audit log's canonical JSON -----------------------------------------------------------

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner),
    max_leaves=15,
)


@given(json_values)
@settings(max_examples=2000)
def test_canonical_json_is_the_json_modules(value: Any) -> None:
    assert canonical_json(value) == REFERENCE.encode(value).encode("ascii")


@pytest.mark.parametrize(
    ("low", "high"),
    [(0, 0x80), (0x80, 0x100), (0x100, 0x800), (0x800, 0xD800), (0xE000, 0x10000)],
)
def test_canonical_json_escapes_every_character_as_the_json_module(low: int, high: int) -> None:
    for code in range(low, high, 64):
        text = "".join(map(chr, range(code, min(code + 64, high))))
        value = {"key" + text[:3]: ["a\\x" + text, text + "\\U", {"k": text}]}
        assert canonical_json(value) == REFERENCE.encode(value).encode("ascii"), hex(code)


@pytest.mark.parametrize("text", ["😀", "\U0010ffff", "a\U0001f600\\U0001f600b", "\x7f", "é"])
def test_canonical_json_beyond_the_bmp_del_and_latin1(text: str) -> None:
    value = {"summary": text, "n": 1}
    assert canonical_json(value) == REFERENCE.encode(value).encode("ascii")


def test_canonical_json_still_refuses_floats_and_reads_big_integers() -> None:
    with pytest.raises(TypeError, match="floats"):
        canonical_json({"amount": 1.5})
    assert canonical_json({"units": 2**200}) == f'{{"units":{2**200}}}'.encode()


# -- the lean device-approval parser ----------------------------------------------------------


def _device_approval(**changes: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "kind": "device",
        "authenticator_id": "phone-1",
        "expires_at": NOW + 60,
        "nonce": base64.urlsafe_b64encode(b"\x01" * 16).rstrip(b"=").decode(),
        "signature": base64.urlsafe_b64encode(b"\x30" * 70).rstrip(b"=").decode(),
    }
    return data | changes


def _parsed_or_refused(parse: Any, data: Any) -> tuple[str, Any]:
    try:
        return "ok", parse(data)
    except ApprovalMalformed as refused:
        return "refused", (str(refused), refused.authenticator_id)


b64_texts = st.one_of(
    st.binary(max_size=80).map(lambda b: base64.urlsafe_b64encode(b).rstrip(b"=").decode()),
    st.text("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_=+/ .é", max_size=12),
)


@given(
    st.sampled_from(
        ["kind", "authenticator_id", "expires_at", "nonce", "signature", "extra", "user_handle"]
    ),
    st.one_of(b64_texts, st.integers(), st.none(), st.text(max_size=70), st.just(True)),
)
@settings(max_examples=600)
def test_lean_device_approvals_are_the_general_parsers(field: str, value: Any) -> None:
    data = _device_approval(**{field: value})
    assert _parsed_or_refused(parse_approval, data) == _parsed_or_refused(_parse_approval, data)


def test_a_missing_field_is_named_as_before() -> None:
    data = _device_approval()
    del data["signature"]
    with pytest.raises(ApprovalMalformed, match="signature is missing"):
        parse_approval(data)


@given(b64_texts, st.integers(min_value=0, max_value=40), st.integers(min_value=0, max_value=80))
@settings(max_examples=1000)
def test_lean_base64url_is_the_strict_decoder(text: str, low: int, high: int) -> None:
    try:
        expected: bytes | None = _unb64url("field", text, None)
    except ApprovalMalformed:
        expected = None
    if expected is not None and not low <= len(expected) <= high:
        expected = None
    assert _lean_b64url(text, low, high) == expected


def test_lean_base64url_refuses_non_canonical_tails() -> None:
    assert _lean_b64url("AQ", 1, 1) == b"\x01"
    assert _lean_b64url("AR", 1, 1) is None  # unused bits set: another spelling of b"\x01"
    assert _lean_b64url("AAE", 2, 2) == b"\x00\x01"
    assert _lean_b64url("AAF", 2, 2) is None
    assert _lean_b64url("A", 0, 9) is None
    assert _lean_b64url("AQ==", 1, 1) is None  # padded


# -- signatures checked ahead of the transaction ----------------------------------------------


def _approve(device: SoftDeviceKey, digest: bytes = DIGEST, **kw: Any) -> DeviceApproval:
    approval = device.approve(digest, kw.pop("nonce", os.urandom(16)), NOW + 60, **kw)
    assert isinstance(approval, DeviceApproval)
    return approval


def test_only_the_check_makes_a_checked_signature() -> None:
    approval = _approve(SoftDeviceKey())
    with pytest.raises(TypeError, match="only check_device_signature"):
        CheckedSignature(b"key", DIGEST, approval, _key=object())


def test_a_check_covers_exactly_its_key_digest_nonce_expiry_and_signature() -> None:
    device, other = SoftDeviceKey(), SoftDeviceKey()
    approval = _approve(device)
    check = check_device_signature(approval, device.public_key, DIGEST)
    assert check is not None
    assert check.covers(device.public_key, DIGEST, approval)
    assert not check.covers(other.public_key, DIGEST, approval)
    assert not check.covers(device.public_key, OTHER_DIGEST, approval)
    for change in (
        {"nonce": os.urandom(16)},
        {"expires_at": approval.expires_at + 1},
        {"signature": _approve(device).signature},
    ):
        changed = DeviceApproval(**(vars(approval) | change))
        assert not check.covers(device.public_key, DIGEST, changed)


def test_a_bad_signature_is_not_checked_ahead() -> None:
    device, other = SoftDeviceKey(), SoftDeviceKey()
    approval = _approve(device)
    assert check_device_signature(approval, other.public_key, DIGEST) is None
    assert check_device_signature(approval, device.public_key, OTHER_DIGEST) is None
    assert check_device_signature(approval, b"\x04" + bytes(64), DIGEST) is None  # not a point


def test_a_check_under_another_key_does_not_spare_the_verification() -> None:
    # The stored key is the real device's; a check made under a key an attacker controls (say a
    # stale or poisoned cache) covers another key, so the signature is verified — and refused.
    real, attacker = SoftDeviceKey(authenticator_id="phone-1"), SoftDeviceKey()
    forged = _approve(attacker)
    forged = DeviceApproval(**(vars(forged) | {"authenticator_id": "phone-1"}))
    check = check_device_signature(forged, attacker.public_key, DIGEST)
    assert check is not None
    authenticator = real.registration()
    with pytest.raises(ApprovalRefused) as caught:
        verify_approval(forged, authenticator, DIGEST, now=NOW, checked=check)
    assert caught.value.reason == RefusalReason.BAD_SIGNATURE


def test_a_check_spares_nothing_else() -> None:
    device = SoftDeviceKey(authenticator_id="phone-1")
    approval = _approve(device)
    check = check_device_signature(approval, device.public_key, DIGEST)
    authenticator = device.registration()
    verified = verify_approval(approval, authenticator, DIGEST, now=NOW, checked=check)
    assert verified.nonce == approval.nonce
    with pytest.raises(ApprovalRefused) as caught:
        verify_approval(approval, authenticator, DIGEST, now=NOW + 61, checked=check)
    assert caught.value.reason == RefusalReason.EXPIRED
    revoked = device.registration(revoked=True)
    with pytest.raises(ApprovalRefused) as caught:
        verify_approval(approval, revoked, DIGEST, now=NOW, checked=check)
    assert caught.value.reason == RefusalReason.REVOKED


def test_what_passes_with_its_check_is_what_verify_approval_accepts_as_is() -> None:
    # The lean signing path asks passes_with_check; every single fault makes it say no (the
    # general path then names the fault), and a yes is an approval verify_approval accepts
    # without verifying anything more, its sign count unchanged.
    device, other = SoftDeviceKey(authenticator_id="phone-1"), SoftDeviceKey()
    approval = _approve(device)
    check = check_device_signature(approval, device.public_key, DIGEST)
    authenticator = replace(device.registration(), sign_count=7)
    assert passes_with_check(approval, authenticator, DIGEST, now=NOW, checked=check)
    verified = verify_approval(approval, authenticator, DIGEST, now=NOW, checked=check)
    assert verified.new_sign_count == 7
    other_check = check_device_signature(_approve(other), other.public_key, DIGEST)
    faults: list[dict[str, Any]] = [
        {"checked": None},
        {"checked": other_check},
        {"checked": check_device_signature(_approve(device), device.public_key, DIGEST)},
        {"digest": OTHER_DIGEST},
        {"now": NOW + 60},  # expired
        {"now": NOW - MAX_APPROVAL_LIFETIME},  # lives longer than allowed
        {"authenticator": replace(authenticator, id="phone-2")},
        {"authenticator": replace(authenticator, revoked=True)},
        {"authenticator": replace(authenticator, active_from=NOW + 1)},
        {"authenticator": replace(authenticator, public_key=other.public_key)},
        {"approval": DeviceApproval(**(vars(approval) | {"expires_at": NOW + 61}))},
    ]
    for fault in faults:
        arguments: dict[str, Any] = {
            "approval": approval,
            "authenticator": authenticator,
            "digest": DIGEST,
            "now": NOW,
            "checked": check,
        } | fault
        assert not passes_with_check(
            arguments["approval"],
            arguments["authenticator"],
            arguments["digest"],
            now=arguments["now"],
            checked=arguments["checked"],
        ), fault


def test_nonce_sizes_are_those_of_the_general_parser() -> None:
    for size in (MIN_NONCE_BYTES - 1, MIN_NONCE_BYTES, MAX_NONCE_BYTES, MAX_NONCE_BYTES + 1):
        nonce = base64.urlsafe_b64encode(b"\x05" * size).rstrip(b"=").decode()
        data = _device_approval(nonce=nonce)
        assert _parsed_or_refused(parse_approval, data) == _parsed_or_refused(
            DeviceApproval.from_json, data
        )


# -- keys opened once per batch ---------------------------------------------------------------


@pytest.fixture
def keys(tmp_path: Any) -> KeyStore:
    return KeyStore(FileMasterKey.open_or_create(tmp_path / "master.key"))


def test_a_session_signs_as_the_key_store(keys: KeyStore) -> None:
    sealed, _, _ = keys.generate(b"wallet-a")
    digest = hashlib.sha256(b"x").digest()
    with keys.session() as session:
        assert session.sign_hash(sealed.to_bytes(), b"wallet-a", digest) == keys.sign_hash(
            sealed, b"wallet-a", digest
        )


def test_queued_signatures_are_made_in_order_and_keys_wiped_at_the_end(keys: KeyStore) -> None:
    sealed_a, _, _ = keys.generate(b"wallet-a")
    sealed_b, _, _ = keys.generate(b"wallet-b")
    digests = [hashlib.sha256(bytes([i])).digest() for i in range(4)]
    with keys.session() as session:
        for index, digest in enumerate(digests):
            sealed, aad = (sealed_a, b"wallet-a") if index % 2 == 0 else (sealed_b, b"wallet-b")
            session.sign_later(sealed.to_bytes(), aad, digest, index)
        opened = list(session._open.values())
        assert len(opened) == 2  # each wallet's key opened once
        made = session.sign_queued()
        assert session.sign_queued() == []  # each queued signature is made once
    assert [index for index, _ in made] == [0, 1, 2, 3]
    for index, signature in made:
        sealed, aad = (sealed_a, b"wallet-a") if index % 2 == 0 else (sealed_b, b"wallet-b")
        assert signature == keys.sign_hash(sealed, aad, digests[index])
    assert all(secret == bytearray(32) for secret in opened)  # zeroed
    with pytest.raises(RuntimeError, match="ended"):
        session.sign_hash(sealed_a.to_bytes(), b"wallet-a", digests[0])


def test_a_key_that_does_not_open_is_refused_when_queued(keys: KeyStore) -> None:
    sealed, _, _ = keys.generate(b"wallet-a")
    with keys.session() as session, pytest.raises(SealedKeyInvalid):
        session.sign_later(sealed.to_bytes(), b"wallet-b", bytes(32), "tag")


# -- the RPC's JSON answers -------------------------------------------------------------------


@pytest.mark.parametrize(
    "content",
    [
        {"result": [{"result": {"digest": "0x" + "ab" * 32, "signer": "0xAbC", "n": 7}}]},
        {"error": {"code": "signer.x", "message": "naïve “quotes” \\ and\nnewlines", "z": None}},
        {"result": {"policy": {"tokens": [{"chain_id": 1329, "daily_limit": "5"}]}}},
        {"result": [True, False, None, -1, 2**63 - 1, "😀"]},
    ],
)
def test_answers_are_written_as_starlette_writes_them(content: Any) -> None:
    assert dump_json(content) == JSONResponse(content).body


def test_what_orjson_refuses_is_written_by_the_json_module() -> None:
    content = {"result": {"units": 2**200, 1: "non-string key"}}
    assert json.loads(dump_json(content)) == {"result": {"units": 2**200, "1": "non-string key"}}
