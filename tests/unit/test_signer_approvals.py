"""Approvals: both kinds verify, and every way an approval can be wrong is refused by name."""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import json
import os
from typing import Any

import pytest
import webauthn
from hypothesis import given, settings
from hypothesis import strategies as st
from tests.fixtures.authenticators import (
    ORIGIN,
    RP_ID,
    SoftDeviceKey,
    SoftPasskey,
    b64url,
)

from seiwallet.errors import InvalidInput
from seiwallet.signer.approvals import (
    APPROVAL_CHALLENGE_DOMAIN,
    MAX_APPROVAL_LIFETIME,
    Authenticator,
    AuthenticatorKind,
    DeviceApproval,
    PasskeyApproval,
    RefusalReason,
    VerifiedApproval,
    challenge_bytes,
    parse_approval,
    verify_approval,
)
from seiwallet.signer.errors import ApprovalMalformed, ApprovalRefused

NOW = 1_700_000_000
DIGEST_A = hashlib.sha256(b"intent A").digest()
DIGEST_B = hashlib.sha256(b"intent B").digest()


def refused(reason: RefusalReason, approval: Any, authenticator: Authenticator, **kw: Any) -> None:
    """Assert that verification refuses with ``reason`` and names the authenticator."""
    digest = kw.pop("digest", DIGEST_A)
    now = kw.pop("now", NOW)
    with pytest.raises(ApprovalRefused) as caught:
        verify_approval(approval, authenticator, digest, now=now)
    assert caught.value.reason == reason
    assert caught.value.authenticator_id == approval.authenticator_id
    assert str(reason) in str(caught.value)


# -- happy paths -----------------------------------------------------------------------------


def test_passkey_approval_verifies(soft_passkey: SoftPasskey) -> None:
    authenticator = soft_passkey.registration()
    approval = soft_passkey.approve(DIGEST_A, now=NOW)
    verified = verify_approval(approval, authenticator, DIGEST_A, now=NOW)
    assert verified == VerifiedApproval(
        authenticator_id="passkey-1",
        nonce=approval.nonce,
        expires_at=approval.expires_at,
        new_sign_count=1,
    )


def test_device_approval_verifies(soft_device_key: SoftDeviceKey) -> None:
    authenticator = dataclasses.replace(soft_device_key.registration(), sign_count=7)
    approval = soft_device_key.approve(DIGEST_A, now=NOW)
    verified = verify_approval(approval, authenticator, DIGEST_A, now=NOW)
    assert verified == VerifiedApproval("device-1", approval.nonce, approval.expires_at, 7)


def test_counterless_passkeys_verify(soft_passkey: SoftPasskey) -> None:
    # Synced passkeys (iCloud Keychain, Google Password Manager) always report 0: allowed while
    # the stored count is 0 too (WebAuthn §6.1.1).
    authenticator = soft_passkey.registration()
    for _ in range(2):
        approval = soft_passkey.approve(DIGEST_A, now=NOW, counter_step=0)
        assert verify_approval(approval, authenticator, DIGEST_A, now=NOW).new_sign_count == 0


def test_the_full_lifetime_is_allowed(soft_device_key: SoftDeviceKey) -> None:
    approval = soft_device_key.approve(DIGEST_A, expires_at=NOW + MAX_APPROVAL_LIFETIME)
    verify_approval(approval, soft_device_key.registration(), DIGEST_A, now=NOW)


def test_a_passkey_may_assert_from_any_of_its_origins(soft_passkey: SoftPasskey) -> None:
    authenticator = soft_passkey.registration(origins=(ORIGIN, "https://pay.wallet.example"))
    approval = soft_passkey.approve(DIGEST_A, now=NOW, origin="https://pay.wallet.example")
    verify_approval(approval, authenticator, DIGEST_A, now=NOW)


def test_the_challenge_is_the_documented_hash() -> None:
    nonce = bytes(range(16))
    expected = hashlib.sha256(
        b"seiwallet.approval.v1\x00" + DIGEST_A + nonce + (NOW + 60).to_bytes(8, "big")
    ).digest()
    assert APPROVAL_CHALLENGE_DOMAIN == b"seiwallet.approval.v1\x00"
    assert challenge_bytes(DIGEST_A, nonce, NOW + 60) == expected


@pytest.mark.parametrize(
    ("digest", "nonce", "expires_at"),
    [
        (DIGEST_A[:31], b"\x00" * 16, NOW),
        (DIGEST_A, b"\x00" * 15, NOW),
        (DIGEST_A, b"\x00" * 33, NOW),
        (DIGEST_A, b"\x00" * 16, -1),
        (DIGEST_A, b"\x00" * 16, 2**63),
        (DIGEST_A, b"\x00" * 16, True),
    ],
)
def test_challenge_refuses_bad_parts(digest: bytes, nonce: bytes, expires_at: int) -> None:
    with pytest.raises(InvalidInput):
        challenge_bytes(digest, nonce, expires_at)


def test_the_fixture_registers_as_webauthn_expects(soft_passkey: SoftPasskey) -> None:
    challenge = os.urandom(32)
    registration = webauthn.verify_registration_response(
        credential=soft_passkey.registration_response(challenge),
        expected_challenge=challenge,
        expected_rp_id=RP_ID,
        expected_origin=ORIGIN,
        require_user_verification=True,
    )
    assert registration.credential_public_key == soft_passkey.registration().public_key
    assert registration.credential_id == soft_passkey.credential_id


# -- approval for one intent is not an approval for another ----------------------------------


def test_passkey_approval_for_a_does_not_approve_b(soft_passkey: SoftPasskey) -> None:
    authenticator = soft_passkey.registration()
    approval = soft_passkey.approve(DIGEST_A, now=NOW)
    refused(RefusalReason.CHALLENGE_MISMATCH, approval, authenticator, digest=DIGEST_B)


def test_device_approval_for_a_does_not_approve_b(soft_device_key: SoftDeviceKey) -> None:
    # A device key signs the challenge itself: another intent's challenge is a bad signature.
    approval = soft_device_key.approve(DIGEST_A, now=NOW)
    authenticator = soft_device_key.registration()
    refused(RefusalReason.BAD_SIGNATURE, approval, authenticator, digest=DIGEST_B)


@pytest.mark.parametrize("field", ["nonce", "expires_at"])
def test_the_clear_nonce_and_expiry_are_bound(
    soft_passkey: SoftPasskey, soft_device_key: SoftDeviceKey, field: str
) -> None:
    change: dict[str, Any] = (
        {"nonce": os.urandom(16)} if field == "nonce" else {"expires_at": NOW + 250}
    )
    authenticator = soft_passkey.registration()
    passkey = dataclasses.replace(soft_passkey.approve(DIGEST_A, now=NOW), **change)
    refused(RefusalReason.CHALLENGE_MISMATCH, passkey, authenticator)
    device = dataclasses.replace(soft_device_key.approve(DIGEST_A, now=NOW), **change)
    refused(RefusalReason.BAD_SIGNATURE, device, soft_device_key.registration())


# -- every refusal, by name ------------------------------------------------------------------


@pytest.mark.parametrize("kind", list(AuthenticatorKind))
def test_expired(soft_passkey: SoftPasskey, soft_device_key: SoftDeviceKey, kind: str) -> None:
    soft: SoftPasskey | SoftDeviceKey = soft_passkey if kind == "passkey" else soft_device_key
    authenticator = soft.registration()
    for expires_at in (NOW, NOW - 1):
        approval = soft.approve(DIGEST_A, expires_at=expires_at)
        refused(RefusalReason.EXPIRED, approval, authenticator)


@pytest.mark.parametrize("kind", list(AuthenticatorKind))
def test_lifetime_too_long(
    soft_passkey: SoftPasskey, soft_device_key: SoftDeviceKey, kind: str
) -> None:
    soft: SoftPasskey | SoftDeviceKey = soft_passkey if kind == "passkey" else soft_device_key
    authenticator = soft.registration()
    approval = soft.approve(DIGEST_A, expires_at=NOW + MAX_APPROVAL_LIFETIME + 1)
    refused(RefusalReason.LIFETIME_TOO_LONG, approval, authenticator)


def test_not_yet_active(soft_device_key: SoftDeviceKey) -> None:
    # An authenticator added by account recovery waits out its time-lock.
    authenticator = soft_device_key.registration(active_from=NOW + 1)
    approval = soft_device_key.approve(DIGEST_A, now=NOW)
    refused(RefusalReason.NOT_YET_ACTIVE, approval, authenticator)
    assert verify_approval(approval, authenticator, DIGEST_A, now=NOW + 1)


def test_revoked(soft_passkey: SoftPasskey) -> None:
    authenticator = soft_passkey.registration(revoked=True)
    approval = soft_passkey.approve(DIGEST_A, now=NOW)
    refused(RefusalReason.REVOKED, approval, authenticator)


def test_wrong_kind(soft_passkey: SoftPasskey, soft_device_key: SoftDeviceKey) -> None:
    device_approval = soft_device_key.approve(DIGEST_A, now=NOW)
    as_passkey = dataclasses.replace(soft_passkey.registration(), id="device-1")
    refused(RefusalReason.WRONG_KIND, device_approval, as_passkey)
    as_device = dataclasses.replace(soft_device_key.registration(), id="passkey-1")
    passkey_approval = soft_passkey.approve(DIGEST_A, now=NOW)
    refused(RefusalReason.WRONG_KIND, passkey_approval, as_device)


def test_wrong_authenticator(soft_device_key: SoftDeviceKey) -> None:
    other = SoftDeviceKey(authenticator_id="device-2")
    approval = other.approve(DIGEST_A, now=NOW)
    refused(RefusalReason.WRONG_AUTHENTICATOR, approval, soft_device_key.registration())


def test_another_devices_signature(soft_device_key: SoftDeviceKey) -> None:
    impostor = SoftDeviceKey()  # same id, another key
    approval = impostor.approve(DIGEST_A, now=NOW)
    refused(RefusalReason.BAD_SIGNATURE, approval, soft_device_key.registration())


def test_another_passkeys_signature(soft_passkey: SoftPasskey) -> None:
    impostor = SoftPasskey()  # same id, rp, origin and counter; another key
    approval = impostor.approve(DIGEST_A, now=NOW)
    refused(RefusalReason.BAD_SIGNATURE, approval, soft_passkey.registration())


def test_wrong_origin(soft_passkey: SoftPasskey) -> None:
    authenticator = soft_passkey.registration()
    approval = soft_passkey.approve(DIGEST_A, now=NOW, origin="https://wallet.example.evil")
    refused(RefusalReason.WRONG_ORIGIN, approval, authenticator)


def test_cross_origin(soft_passkey: SoftPasskey) -> None:
    authenticator = soft_passkey.registration()
    approval = soft_passkey.approve(DIGEST_A, now=NOW, cross_origin=True)
    refused(RefusalReason.CROSS_ORIGIN, approval, authenticator)


def test_wrong_rp_id(soft_passkey: SoftPasskey) -> None:
    authenticator = soft_passkey.registration()
    approval = soft_passkey.approve(DIGEST_A, now=NOW, rp_id="evil.example")
    refused(RefusalReason.WRONG_RP_ID, approval, authenticator)


def test_wrong_client_data_type(soft_passkey: SoftPasskey) -> None:
    authenticator = soft_passkey.registration()
    approval = soft_passkey.approve(DIGEST_A, now=NOW, client_data_type="webauthn.create")
    refused(RefusalReason.WRONG_TYPE, approval, authenticator)


def test_user_not_verified(soft_passkey: SoftPasskey) -> None:
    # Presence alone (a tap) is not the owner's biometric or PIN.
    authenticator = soft_passkey.registration()
    approval = soft_passkey.approve(DIGEST_A, now=NOW, user_verified=False)
    refused(RefusalReason.USER_NOT_VERIFIED, approval, authenticator)


def test_user_not_present(soft_passkey: SoftPasskey) -> None:
    authenticator = soft_passkey.registration()
    approval = soft_passkey.approve(DIGEST_A, now=NOW, user_present=False)
    refused(RefusalReason.USER_NOT_PRESENT, approval, authenticator)


@pytest.mark.parametrize(("stored", "step"), [(5, 0), (5, -1), (5, -5), (1, 0)])
def test_counter_regression(soft_passkey: SoftPasskey, stored: int, step: int) -> None:
    soft_passkey.sign_count = stored
    authenticator = soft_passkey.registration()
    approval = soft_passkey.approve(DIGEST_A, now=NOW, counter_step=step)
    refused(RefusalReason.COUNTER_REGRESSION, approval, authenticator)


def test_a_replayed_assertion_fails_on_the_counter(soft_passkey: SoftPasskey) -> None:
    # The store consumes the nonce; even before it does, the counter has moved on.
    authenticator = soft_passkey.registration()
    approval = soft_passkey.approve(DIGEST_A, now=NOW)
    verified = verify_approval(approval, authenticator, DIGEST_A, now=NOW)
    after = dataclasses.replace(authenticator, sign_count=verified.new_sign_count)
    refused(RefusalReason.COUNTER_REGRESSION, approval, after)


def test_malformed_client_data(soft_passkey: SoftPasskey) -> None:
    authenticator = soft_passkey.registration()
    approval = dataclasses.replace(
        soft_passkey.approve(DIGEST_A, now=NOW), client_data_json=b"\xff not json"
    )
    with pytest.raises(ApprovalMalformed, match="clientDataJSON was malformed") as caught:
        verify_approval(approval, authenticator, DIGEST_A, now=NOW)
    assert caught.value.reason == RefusalReason.MALFORMED


def test_malformed_authenticator_data(soft_passkey: SoftPasskey) -> None:
    authenticator = soft_passkey.registration()
    good = soft_passkey.approve(DIGEST_A, now=NOW)
    # The AT flag promises attested credential data that is not there.
    data = bytearray(good.authenticator_data)
    data[32] |= 0x40
    approval = dataclasses.replace(good, authenticator_data=bytes(data))
    with pytest.raises(ApprovalMalformed) as caught:
        verify_approval(approval, authenticator, DIGEST_A, now=NOW)
    assert caught.value.reason == RefusalReason.MALFORMED


# -- tampering: any flipped byte is refused --------------------------------------------------

_PASSKEY = SoftPasskey()
_PASSKEY_AUTHENTICATOR = _PASSKEY.registration()
_PASSKEY_APPROVAL = _PASSKEY.approve(DIGEST_A, now=NOW)
_DEVICE = SoftDeviceKey()
_DEVICE_APPROVAL = _DEVICE.approve(DIGEST_A, now=NOW)


def _tamper(field: str, value: bytes) -> PasskeyApproval:
    changes: dict[str, Any] = {field: value}
    return dataclasses.replace(_PASSKEY_APPROVAL, **changes)


def _flip(data: bytes, index: int, bit: int) -> bytes:
    flipped = bytearray(data)
    flipped[index % len(data)] ^= 1 << bit
    return bytes(flipped)


@settings(max_examples=300, deadline=None)
@given(
    st.sampled_from(["authenticator_data", "client_data_json", "signature"]),
    st.integers(min_value=0, max_value=10_000),
    st.integers(min_value=0, max_value=7),
)
def test_any_flipped_passkey_byte_is_refused(field: str, index: int, bit: int) -> None:
    assert verify_approval(_PASSKEY_APPROVAL, _PASSKEY_AUTHENTICATOR, DIGEST_A, now=NOW)
    tampered = _tamper(field, _flip(getattr(_PASSKEY_APPROVAL, field), index, bit))
    with pytest.raises(ApprovalRefused):
        verify_approval(tampered, _PASSKEY_AUTHENTICATOR, DIGEST_A, now=NOW)


@settings(max_examples=200, deadline=None)
@given(st.integers(min_value=0, max_value=10_000), st.integers(min_value=0, max_value=7))
def test_any_flipped_device_signature_byte_is_refused(index: int, bit: int) -> None:
    signature = _flip(_DEVICE_APPROVAL.signature, index, bit)
    tampered = dataclasses.replace(_DEVICE_APPROVAL, signature=signature)
    with pytest.raises(ApprovalRefused):
        verify_approval(tampered, _DEVICE.registration(), DIGEST_A, now=NOW)


# -- JSON ------------------------------------------------------------------------------------


def test_passkey_json_round_trip(soft_passkey: SoftPasskey) -> None:
    approval = soft_passkey.approve(DIGEST_A, now=NOW)
    data = json.loads(json.dumps(approval.to_json()))
    assert data["kind"] == "passkey"
    assert data["client_data_json"] == b64url(approval.client_data_json)
    assert "=" not in json.dumps(data)
    assert PasskeyApproval.from_json(data) == approval
    assert parse_approval(data) == approval
    no_handle = dataclasses.replace(approval, user_handle=None)
    assert "user_handle" not in no_handle.to_json()
    assert parse_approval(no_handle.to_json()) == no_handle


def test_device_json_round_trip(soft_device_key: SoftDeviceKey) -> None:
    approval = soft_device_key.approve(DIGEST_A, now=NOW)
    data = json.loads(json.dumps(approval.to_json()))
    assert data == {
        "kind": "device",
        "authenticator_id": "device-1",
        "expires_at": approval.expires_at,
        "nonce": b64url(approval.nonce),
        "signature": b64url(approval.signature),
    }
    assert DeviceApproval.from_json(data) == approval
    assert parse_approval(data) == approval


_DEVICE_JSON = _DEVICE_APPROVAL.to_json()


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        ({"kind": "passkey"}, "authenticator_data is missing"),
        ({"kind": "totp"}, "kind must be 'passkey' or 'device'"),
        ({"memo": "x"}, "memo is not a field of an approval"),
        ({"nonce": None}, "nonce must be unpadded base64url"),
        ({"nonce": b64url(b"\x01" * 16) + "=="}, "nonce must be unpadded base64url"),
        ({"nonce": base64.b64encode(b"\xfb\xff" * 8).decode()}, "unpadded base64url"),
        ({"nonce": b64url(b"\x01" * 16)[:-1] + "B"}, "nonce is not canonical base64url"),
        ({"nonce": b64url(b"\x01" * 15)}, "nonce must be 16 to 32 bytes"),
        ({"expires_at": str(NOW)}, "expires_at must be unix seconds"),
        ({"expires_at": True}, "expires_at must be unix seconds"),
        ({"authenticator_id": ""}, "authenticator_id must be 1 to 64 characters"),
        ({"signature": b64url(b"\x30" * 73)}, "signature must be 8 to 72 bytes"),
    ],
)
def test_malformed_json_is_refused_by_field(change: dict[str, Any], problem: str) -> None:
    data = _DEVICE_JSON | change
    with pytest.raises(ApprovalMalformed) as caught:
        parse_approval(data)
    assert problem in str(caught.value)
    assert caught.value.reason == RefusalReason.MALFORMED
    assert caught.value.code == ApprovalRefused.code  # one entry in every error table


def test_missing_fields_are_named() -> None:
    data = {k: v for k, v in _DEVICE_JSON.items() if k != "signature"}
    with pytest.raises(ApprovalMalformed, match="signature is missing"):
        DeviceApproval.from_json(data)


def test_not_an_object_is_refused() -> None:
    with pytest.raises(ApprovalMalformed):
        parse_approval(["device"])  # type: ignore[arg-type]


# -- authenticators --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "problem"),
    [
        ({"kind": "totp"}, "kind must be passkey or device"),
        ({"public_key": b"\x04" + b"\x01" * 64}, "uncompressed P-256 point"),
        ({"public_key": b"\x02" + b"\x01" * 32}, "uncompressed P-256 point"),
        ({"id": ""}, "id must be 1 to 64 characters"),
        ({"sign_count": -1}, "sign_count must be an integer"),
        ({"sign_count": 2**32}, "sign_count must be an integer"),
        ({"active_from": 1.5}, "active_from must be an integer"),
        ({"revoked": 0}, "revoked must be true or false"),
    ],
)
def test_device_authenticators_are_checked(
    soft_device_key: SoftDeviceKey, fields: dict[str, Any], problem: str
) -> None:
    base = dataclasses.asdict(soft_device_key.registration())
    with pytest.raises(InvalidInput, match=problem):
        Authenticator(**(base | fields))


@pytest.mark.parametrize(
    ("fields", "problem"),
    [
        ({"credential_id": b""}, "credential_id must be 1 to 1023 bytes"),
        ({"rp_id": None}, "needs the RP id"),
        ({"origins": ()}, "needs the web origins"),
        ({"origins": ("",)}, "needs the web origins"),
    ],
)
def test_passkey_authenticators_are_checked(
    soft_passkey: SoftPasskey, fields: dict[str, Any], problem: str
) -> None:
    base = dataclasses.asdict(soft_passkey.registration())
    with pytest.raises(InvalidInput, match=problem):
        Authenticator(**(base | fields))


def test_kind_is_read_from_text(soft_device_key: SoftDeviceKey) -> None:
    stored = dataclasses.asdict(soft_device_key.registration()) | {"kind": "device"}
    assert Authenticator(**stored).kind is AuthenticatorKind.DEVICE


def test_every_single_bit_flip_is_refused() -> None:
    # Exhaustive over the ~2,000 single-bit flips of one assertion (a few hundred ms).
    for field in ("authenticator_data", "client_data_json", "signature"):
        data = getattr(_PASSKEY_APPROVAL, field)
        for index in range(len(data)):
            for bit in range(8):
                tampered = _tamper(field, _flip(data, index, bit))
                with pytest.raises(ApprovalRefused):
                    verify_approval(tampered, _PASSKEY_AUTHENTICATOR, DIGEST_A, now=NOW)
