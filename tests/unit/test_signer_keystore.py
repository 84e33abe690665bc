"""The sealed key store and the file master key: binding, tampering, signatures, zeroing, files.

:class:`MasterKeyContract` is what every master key provider must do; it runs here against
:class:`FileMasterKey` and in ``tests/integration/test_signer_pkcs11.py`` against SoftHSM2.
"""

from __future__ import annotations

import os
import pickle
import stat
from collections.abc import Callable, Iterator
from pathlib import Path

import coincurve
import pytest
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from eth_account import Account
from eth_account.messages import _hash_eip191_message, encode_typed_data
from hypothesis import given, settings
from hypothesis import strategies as st

from seiwallet.addresses import evm_address_from_public_key
from seiwallet.errors import InvalidInput, SeiwalletError
from seiwallet.signer import keystore as keystore_module
from seiwallet.signer import masterkey as masterkey_module
from seiwallet.signer.errors import (
    IntentInvalid,
    MasterKeyMismatch,
    MasterKeyUnavailable,
    SealedKeyInvalid,
    SignerError,
)
from seiwallet.signer.keystore import KeyStore, SealedKey
from seiwallet.signer.masterkey import (
    FileMasterKey,
    MasterKey,
    unsafe_wipe_bytes,
    wipe,
)

SECP256K1_ORDER = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141
# A well-known test key (web3.js docs); never holds anything.
KNOWN_KEY = bytes.fromhex("4c0883a69102937d6231471b5dbb6204fe5129617082792ae468d01a3f362318")
KNOWN_ADDRESS = Account.from_key(KNOWN_KEY).address
WALLET_A = b"wallet:0b9c3a4e-7f44-4d5e-9a3c-4c1f2b6d8e01"
WALLET_B = b"wallet:5f1e2d3c-0a9b-4c8d-8e7f-6a5b4c3d2e1f"

# An EIP-3009 authorization for Circle's USDC on Sei (pacific-1), as the signer will build it.
EIP3009_TYPED_DATA = {
    "types": {
        "EIP712Domain": [
            {"name": "name", "type": "string"},
            {"name": "version", "type": "string"},
            {"name": "chainId", "type": "uint256"},
            {"name": "verifyingContract", "type": "address"},
        ],
        "TransferWithAuthorization": [
            {"name": "from", "type": "address"},
            {"name": "to", "type": "address"},
            {"name": "value", "type": "uint256"},
            {"name": "validAfter", "type": "uint256"},
            {"name": "validBefore", "type": "uint256"},
            {"name": "nonce", "type": "bytes32"},
        ],
    },
    "primaryType": "TransferWithAuthorization",
    "domain": {
        "name": "USDC",
        "version": "2",
        "chainId": 1329,
        "verifyingContract": "0xe15fC38F6D8c56aF07bbCBe3BAf5708A2Bf42392",
    },
    "message": {
        "from": KNOWN_ADDRESS,
        "to": "0x000000000000000000000000000000000000dEaD",
        "value": 1_250_000,
        "validAfter": 0,
        "validBefore": 1_900_000_000,
        "nonce": "0x" + "ab" * 32,
    },
}


def memory_master(fill: int = 7) -> FileMasterKey:
    """A file-format master key that never touched a disk (unit tests only)."""
    return FileMasterKey(bytearray([fill]) * 32, source=f"memory #{fill}")


# -- the provider contract -------------------------------------------------------------------


class MasterKeyContract:
    """What every :class:`MasterKey` provider does; subclasses provide the two fixtures."""

    @pytest.fixture
    def master(self) -> Iterator[MasterKey]:
        raise NotImplementedError

    @pytest.fixture
    def other_master(self) -> Iterator[MasterKey]:
        """A second, different master key of the same provider."""
        raise NotImplementedError

    def test_wrap_round_trip(self, master: MasterKey) -> None:
        data_key = bytearray(os.urandom(32))
        assert master.unwrap(master.wrap(data_key, b"aad"), b"aad") == data_key

    def test_wrapped_format_is_versioned_with_a_fresh_nonce(self, master: MasterKey) -> None:
        first = master.wrap(bytes(32), b"aad")
        second = master.wrap(bytes(32), b"aad")
        assert len(first) == 1 + 12 + 32 + 16
        assert first[0] == 1
        assert first[1:13] != second[1:13]
        assert first != second

    def test_unwrap_refuses_other_aad(self, master: MasterKey) -> None:
        wrapped = master.wrap(os.urandom(32), WALLET_A)
        with pytest.raises(SealedKeyInvalid):
            master.unwrap(wrapped, WALLET_B)

    def test_unwrap_refuses_every_altered_byte(self, master: MasterKey) -> None:
        wrapped = master.wrap(os.urandom(32), b"aad")
        for index in range(len(wrapped)):
            altered = bytearray(wrapped)
            altered[index] ^= 0x01
            with pytest.raises(SealedKeyInvalid):
                master.unwrap(bytes(altered), b"aad")
        with pytest.raises(SealedKeyInvalid):
            master.unwrap(wrapped[:20], b"aad")

    def test_unwrap_refuses_another_master_key(
        self, master: MasterKey, other_master: MasterKey
    ) -> None:
        wrapped = master.wrap(os.urandom(32), b"aad")
        with pytest.raises(SealedKeyInvalid):
            other_master.unwrap(wrapped, b"aad")

    def test_key_check_value_is_stable_and_tells_keys_apart(
        self, master: MasterKey, other_master: MasterKey
    ) -> None:
        kcv = master.key_check_value()
        assert len(kcv) == 17
        assert kcv[0] == 1
        assert master.key_check_value() == kcv
        assert other_master.key_check_value() != kcv

    def test_key_store_signs_through_it(self, master: MasterKey) -> None:
        store = KeyStore(master)
        sealed, public_key, address = store.generate(WALLET_A)
        digest = os.urandom(32)
        signature = store.sign_hash(sealed, WALLET_A, digest)
        assert Account._recover_hash(digest, signature=signature) == address
        assert evm_address_from_public_key(public_key) == address

    def test_closed_key_refuses_to_work(self, master: MasterKey) -> None:
        wrapped = master.wrap(bytes(32), b"aad")
        master.close()
        for use in (
            lambda: master.wrap(bytes(32), b"aad"),
            lambda: master.unwrap(wrapped, b"aad"),
            master.key_check_value,
        ):
            with pytest.raises(SignerError, match="closed"):
                use()
        master.close()  # closing twice is harmless

    def test_cannot_be_pickled(self, master: MasterKey) -> None:
        with pytest.raises(TypeError, match="cannot be pickled"):
            pickle.dumps(master)


class TestFileMasterKey(MasterKeyContract):
    @pytest.fixture
    def master(self, tmp_path: Path) -> Iterator[MasterKey]:
        with FileMasterKey.open_or_create(tmp_path / "keys" / "master.key") as key:
            yield key

    @pytest.fixture
    def other_master(self, tmp_path: Path) -> Iterator[MasterKey]:
        with FileMasterKey.open_or_create(tmp_path / "other" / "master.key") as key:
            yield key


# -- the key file ------------------------------------------------------------------------------


def test_key_file_is_created_0600_in_a_0700_directory(tmp_path: Path) -> None:
    path = tmp_path / "signer" / "master.key"
    with FileMasterKey.open_or_create(path):
        pass
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert path.stat().st_size == 32
    assert [p.name for p in path.parent.iterdir()] == ["master.key"]  # no temporary left


def test_key_file_is_reused_on_the_next_start(tmp_path: Path) -> None:
    path = tmp_path / "master.key"
    with FileMasterKey.open_or_create(path) as first:
        wrapped = first.wrap(b"k" * 32, b"aad")
        kcv = first.key_check_value()
    with FileMasterKey.open_or_create(path) as second:
        assert second.key_check_value() == kcv
        assert second.unwrap(wrapped, b"aad") == b"k" * 32


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o660])
def test_key_file_readable_by_others_is_refused(tmp_path: Path, mode: int) -> None:
    path = tmp_path / "master.key"
    FileMasterKey.open_or_create(path).close()
    path.chmod(mode)
    with pytest.raises(MasterKeyUnavailable, match=rf"mode 0{mode:o}.*chmod 600") as caught:
        FileMasterKey.open_or_create(path)
    assert caught.value.code == "signer.master_key_unavailable"
    assert isinstance(caught.value, SignerError)


@pytest.mark.parametrize("size", [0, 16, 31, 33, 64])
def test_key_file_of_the_wrong_size_is_refused(tmp_path: Path, size: int) -> None:
    path = tmp_path / "master.key"
    path.write_bytes(b"x" * size)
    path.chmod(0o600)
    with pytest.raises(MasterKeyUnavailable, match=f"holds {size} bytes"):
        FileMasterKey.open_or_create(path)
    assert path.read_bytes() == b"x" * size  # never overwritten


def test_key_path_that_is_a_directory_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "master.key"
    path.mkdir(mode=0o700)
    with pytest.raises(MasterKeyUnavailable, match="not a regular file"):
        FileMasterKey.open_or_create(path)


def test_losing_the_creation_race_uses_the_winners_key(tmp_path: Path) -> None:
    path = tmp_path / "master.key"
    with FileMasterKey.open_or_create(path) as winner:
        kcv = winner.key_check_value()
    # Another process linked its key in first: ours is discarded, theirs is read.
    assert masterkey_module._create_key_file(path) is None
    assert [p.name for p in tmp_path.iterdir()] == ["master.key"]
    with FileMasterKey.open_or_create(path) as loser:
        assert loser.key_check_value() == kcv


def test_repr_and_describe_show_no_key(tmp_path: Path) -> None:
    path = tmp_path / "master.key"
    with FileMasterKey.open_or_create(path) as master:
        key = path.read_bytes()
        shown = repr(master) + master.describe() + str(vars(KeyStore(master)))
        assert key.hex() not in shown
        assert str(path) in master.describe()


# -- memory ------------------------------------------------------------------------------------


def test_wipe_zeroes_small_and_large_buffers() -> None:
    for size in (1, 32, 4096, 10_000):
        buffer = bytearray(b"\xa5" * size)
        wipe(buffer)
        assert buffer == bytes(size)


def test_unsafe_wipe_bytes_zeroes_a_fresh_object() -> None:
    data = bytes(bytearray(b"secret key material!"))
    unsafe_wipe_bytes(data)
    assert data == bytes(20)


def test_closing_the_file_master_key_wipes_it() -> None:
    key = bytearray(b"\x42" * 32)
    master = FileMasterKey(key, source="memory")
    master.close()
    assert key == bytes(32)


# -- sealing -----------------------------------------------------------------------------------


@pytest.fixture
def store() -> Iterator[KeyStore]:
    with memory_master() as master:
        yield KeyStore(master)


def test_seal_and_open_round_trip(store: KeyStore) -> None:
    sealed, public_key, address = store.seal_existing(bytearray(KNOWN_KEY), WALLET_A)
    assert address == KNOWN_ADDRESS
    assert public_key == coincurve.PrivateKey(KNOWN_KEY).public_key.format(compressed=False)
    restored = SealedKey.from_bytes(sealed.to_bytes())
    assert restored == sealed
    with store.unsafe_open_secret(restored, WALLET_A) as secret:
        assert secret == KNOWN_KEY
    with store.open(restored, WALLET_A) as private_key:
        assert private_key.secret == KNOWN_KEY


def test_generated_keys_are_fresh_and_well_formed(store: KeyStore) -> None:
    first, public_key, address = store.generate(WALLET_A)
    second, _, other_address = store.generate(WALLET_A)
    assert address != other_address
    assert first.wrapped_data_key != second.wrapped_data_key
    assert len(public_key) == 65
    assert public_key[0] == 4
    assert address == evm_address_from_public_key(public_key)
    with store.open(first, WALLET_A) as private_key:
        assert Account.from_key(private_key.secret).address == address


def test_sealed_key_bound_to_one_wallet_does_not_open_for_another(store: KeyStore) -> None:
    sealed, _, _ = store.generate(WALLET_A)
    with pytest.raises(SealedKeyInvalid, match="nothing was decrypted"):
        store.sign_hash(sealed, WALLET_B, bytes(32))
    with pytest.raises(SealedKeyInvalid), store.open(sealed, WALLET_B):
        pytest.fail("opened under another wallet's binding")


def test_parts_of_two_sealed_keys_do_not_combine(store: KeyStore) -> None:
    first, _, _ = store.generate(WALLET_A)
    second, _, _ = store.generate(WALLET_A)
    mixed = SealedKey(first.wrapped_data_key, second.ciphertext, second.nonce)
    with pytest.raises(SealedKeyInvalid):
        store.sign_hash(mixed, WALLET_A, bytes(32))


def test_every_altered_byte_of_a_sealed_key_is_refused(store: KeyStore) -> None:
    blob = store.generate(WALLET_A)[0].to_bytes()
    for index in range(len(blob)):
        altered = bytearray(blob)
        altered[index] ^= 0x80
        with pytest.raises(SealedKeyInvalid):
            store.sign_hash(SealedKey.from_bytes(bytes(altered)), WALLET_A, bytes(32))


@pytest.mark.parametrize(
    ("mangle", "message"),
    [
        (lambda blob: blob[:2], "too short"),
        (lambda blob: blob[:-1], "not 123"),
        (lambda blob: blob + b"\x00", "not 125"),
        (lambda blob: b"\x02" + blob[1:], "version 2"),
    ],
)
def test_malformed_sealed_key_bytes_are_refused(
    store: KeyStore, mangle: Callable[[bytes], bytes], message: str
) -> None:
    blob = store.generate(WALLET_A)[0].to_bytes()
    assert len(blob) == 124
    with pytest.raises(SealedKeyInvalid, match=message):
        SealedKey.from_bytes(mangle(blob))


def test_sealed_key_repr_shows_no_ciphertext(store: KeyStore) -> None:
    sealed = store.generate(WALLET_A)[0]
    assert sealed.ciphertext.hex() not in repr(sealed)
    assert sealed.wrapped_data_key.hex()[:16] not in repr(sealed)


@pytest.mark.parametrize(
    "bad_key",
    [bytes(32), SECP256K1_ORDER.to_bytes(32, "big"), b"\xff" * 32, KNOWN_KEY[:31]],
)
def test_invalid_private_keys_are_not_sealed(store: KeyStore, bad_key: bytes) -> None:
    with pytest.raises(IntentInvalid) as caught:
        store.seal_existing(bytearray(bad_key), WALLET_A)
    assert isinstance(caught.value, InvalidInput)


# -- the master key check ----------------------------------------------------------------------


def test_wrong_master_key_is_detected_before_any_key_is_opened() -> None:
    with memory_master(1) as right, memory_master(2) as wrong:
        recorded = KeyStore(right).key_check_value()
        sealed, _, _ = KeyStore(right).generate(WALLET_A)
        KeyStore(right).verify_master_key(recorded)
        with pytest.raises(MasterKeyMismatch, match="original master key") as caught:
            KeyStore(wrong).verify_master_key(recorded)
        assert caught.value.code == "signer.master_key_mismatch"
        assert isinstance(caught.value, SeiwalletError)
        # Had the check been skipped, the keys still would not open.
        with pytest.raises(SealedKeyInvalid):
            KeyStore(wrong).sign_hash(sealed, WALLET_A, bytes(32))


def test_key_check_value_matches_gcm_over_the_label() -> None:
    """The KCV is one AES-GCM tag, not E_K(0), which would hand out GCM's hash subkey."""
    key = bytes([7]) * 32
    with memory_master(7) as master:
        kcv = master.key_check_value()
    expected = AESGCM(key).encrypt(bytes(12), b"", b"seiwallet/signer/master-key-check/v1")
    assert kcv == b"\x01" + expected
    # The classic KCV, and the anti-pattern: E_K(0^128) is GCM's hash subkey H.
    encryptor = Cipher(algorithms.AES(key), modes.ECB()).encryptor()
    hash_subkey = encryptor.update(bytes(16))
    assert hash_subkey not in kcv


# -- signatures --------------------------------------------------------------------------------


def test_signature_matches_eth_account_and_recovers(store: KeyStore) -> None:
    sealed, _, address = store.seal_existing(bytearray(KNOWN_KEY), WALLET_A)
    digest = bytes(range(32))
    signature = store.sign_hash(sealed, WALLET_A, digest)
    assert len(signature) == 65
    # RFC 6979 nonces on both sides: the very same bytes as eth-account's.
    assert signature == bytes(Account.unsafe_sign_hash(digest, KNOWN_KEY).signature)
    assert Account._recover_hash(digest, signature=signature) == address


def test_eip712_signature_verifies(store: KeyStore) -> None:
    sealed, _, address = store.seal_existing(bytearray(KNOWN_KEY), WALLET_A)
    message = encode_typed_data(full_message=EIP3009_TYPED_DATA)
    digest = _hash_eip191_message(message)
    signature = store.sign_hash(sealed, WALLET_A, digest)
    assert Account.recover_message(message, signature=signature) == address
    expected = Account.sign_typed_data(KNOWN_KEY, full_message=EIP3009_TYPED_DATA)
    assert signature == bytes(expected.signature)


@settings(max_examples=200, deadline=None)
@given(digest=st.binary(min_size=32, max_size=32))
def test_signatures_on_any_digest_recover_to_the_wallet(digest: bytes) -> None:
    with memory_master() as master:
        store = KeyStore(master)
        sealed, _, address = store.seal_existing(bytearray(KNOWN_KEY), WALLET_A)
        signature = store.sign_hash(sealed, WALLET_A, digest)
    r, s, v = signature[:32], int.from_bytes(signature[32:64], "big"), signature[64]
    assert v in (27, 28)
    assert 0 < s <= SECP256K1_ORDER // 2  # low s, as Ethereum requires
    assert int.from_bytes(r, "big") > 0
    assert Account._recover_hash(digest, signature=signature) == address


@pytest.mark.parametrize("length", [0, 31, 33, 64])
def test_digest_of_the_wrong_length_is_refused(store: KeyStore, length: int) -> None:
    sealed, _, _ = store.generate(WALLET_A)
    with pytest.raises(IntentInvalid, match="32 bytes"):
        store.sign_hash(sealed, WALLET_A, bytes(length))


def test_streaming_decryption_fallback_works_and_refuses_tampering(
    store: KeyStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Before cryptography 46 (no AESGCM.decrypt_into) decryption streams into the buffer."""
    monkeypatch.setattr(masterkey_module, "_HAS_DECRYPT_INTO", False)
    sealed, _, address = store.seal_existing(bytearray(KNOWN_KEY), WALLET_A)
    digest = os.urandom(32)
    assert Account._recover_hash(digest, signature=store.sign_hash(sealed, WALLET_A, digest)) == (
        address
    )
    with pytest.raises(SealedKeyInvalid):
        store.sign_hash(sealed, WALLET_B, digest)


# -- zeroing -----------------------------------------------------------------------------------


def test_secret_buffer_is_zero_after_the_context_exits(store: KeyStore) -> None:
    sealed, _, _ = store.seal_existing(bytearray(KNOWN_KEY), WALLET_A)
    with store.unsafe_open_secret(sealed, WALLET_A) as secret:
        assert secret == KNOWN_KEY
    assert secret == bytes(32)


def test_secret_buffer_is_zero_after_an_exception_inside(store: KeyStore) -> None:
    sealed, _, _ = store.seal_existing(bytearray(KNOWN_KEY), WALLET_A)
    with pytest.raises(RuntimeError), store.unsafe_open_secret(sealed, WALLET_A) as secret:
        raise RuntimeError("boom")
    assert secret == bytes(32)


def test_opened_private_key_is_wiped_and_useless_after_exit(store: KeyStore) -> None:
    sealed, _, _ = store.seal_existing(bytearray(KNOWN_KEY), WALLET_A)
    with store.open(sealed, WALLET_A) as private_key:
        held = private_key.secret
        assert held == KNOWN_KEY
        private_key.sign_recoverable(bytes(32), hasher=None)
    assert held == bytes(32)
    assert private_key.secret == bytes(32)
    with pytest.raises(ValueError, match="invalid"):
        private_key.sign_recoverable(bytes(32), hasher=None)


def test_sign_hash_wipes_every_plaintext_buffer(
    store: KeyStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    sealed, _, _ = store.seal_existing(bytearray(KNOWN_KEY), WALLET_A)
    wiped: list[tuple[bytes, bytearray]] = []

    def recording_wipe(buffer: bytearray) -> None:
        wiped.append((bytes(buffer), buffer))
        wipe(buffer)

    monkeypatch.setattr(keystore_module, "wipe", recording_wipe)
    store.sign_hash(sealed, WALLET_A, bytes(32))
    contents = [before for before, _ in wiped]
    assert KNOWN_KEY in contents  # the private key's buffer
    assert any(len(before) == 32 and before != KNOWN_KEY for before in contents)  # the data key
    assert all(buffer == bytes(len(buffer)) for _, buffer in wiped)
