"""The sealed key store: wallet keys encrypted at rest, opened only for the moment of signing.

Envelope encryption, as in cloud KMSs: each wallet's secp256k1 key is encrypted with
AES-256-GCM under a data key of its own, and that data key is wrapped by the master key
(:mod:`seiwallet.signer.masterkey`, a file or an HSM). Rotating or moving the master key
re-wraps 32-byte data keys, never touches a wallet key in clear, and a leaked sealed key is
useless without the master key.

Both layers take the caller's ``aad`` (the wallet id) as associated data, each under its own
label, so a sealed key copied onto another wallet's row does not open.

Key material exists in clear only inside :meth:`KeyStore.sign_hash` and the two ``open``
context managers, in ``bytearray``s zeroed on exit. Signing calls libsecp256k1 on that
bytearray directly (through coincurve's cffi binding), so the secret is never copied into an
immutable Python object on the hot path.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import struct
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Final

import coincurve
from coincurve._libsecp256k1 import ffi, lib  # the cffi binding coincurve itself calls
from coincurve.context import GLOBAL_CONTEXT
from coincurve.flags import EC_UNCOMPRESSED
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from eth_typing import ChecksumAddress

from seiwallet.addresses import evm_address_from_public_key
from seiwallet.signer.errors import IntentInvalid, MasterKeyMismatch, SealedKeyInvalid
from seiwallet.signer.masterkey import (
    KEY_BYTES,
    NONCE_BYTES,
    TAG_BYTES,
    MasterKey,
    decrypt_to_bytearray,
    random_secret,
    unsafe_wipe_bytes,
    wipe,
)

__all__ = [
    "DIGEST_BYTES",
    "PRIVATE_KEY_BYTES",
    "PUBLIC_KEY_BYTES",
    "SEALED_KEY_VERSION",
    "SIGNATURE_BYTES",
    "KeyStore",
    "SealedKey",
    "SigningSession",
    "public_key_of",
]

SEALED_KEY_VERSION: Final = 1
PRIVATE_KEY_BYTES: Final = 32
PUBLIC_KEY_BYTES: Final = 65
DIGEST_BYTES: Final = 32
SIGNATURE_BYTES: Final = 65

# Domain separation: the data key and the wallet key are bound to the wallet under different
# labels, so neither ciphertext can stand in for the other.
_DATA_KEY_AAD: Final = b"seiwallet/signer/data-key/v1\x00"
_PRIVATE_KEY_AAD: Final = b"seiwallet/signer/secp256k1/v1\x00"

_HEADER: Final = struct.Struct(">BH")  # version, length of the wrapped data key
_MAX_WRAPPED_BYTES: Final = 1024
_CIPHERTEXT_BYTES: Final = PRIVATE_KEY_BYTES + TAG_BYTES

_CONTEXT: Final = GLOBAL_CONTEXT.ctx


@dataclass(frozen=True, slots=True, repr=False)
class SealedKey:
    """A wallet key as stored: encrypted under a wrapped data key. Safe to store, not to share.

    Without the master key it reveals nothing, but it is still the wallet's key: keep it in
    the signer's own storage.
    """

    wrapped_data_key: bytes
    ciphertext: bytes
    nonce: bytes
    version: int = SEALED_KEY_VERSION

    def __post_init__(self) -> None:
        """Refuse shapes this version cannot have come from, before any decryption."""
        if self.version != SEALED_KEY_VERSION:
            raise SealedKeyInvalid(
                f"version {self.version} is not {SEALED_KEY_VERSION}; upgrade the signer"
            )
        if len(self.nonce) != NONCE_BYTES:
            raise SealedKeyInvalid(f"the nonce is {len(self.nonce)} bytes, not {NONCE_BYTES}")
        if len(self.ciphertext) != _CIPHERTEXT_BYTES:
            raise SealedKeyInvalid(
                f"the ciphertext is {len(self.ciphertext)} bytes, not {_CIPHERTEXT_BYTES}"
            )
        if not 0 < len(self.wrapped_data_key) <= _MAX_WRAPPED_BYTES:
            raise SealedKeyInvalid(
                f"the wrapped data key is {len(self.wrapped_data_key)} bytes long"
            )

    def to_bytes(self) -> bytes:
        """``version (1) ‖ len(wrapped) (2, big-endian) ‖ wrapped ‖ nonce (12) ‖ ciphertext``."""
        header = _HEADER.pack(self.version, len(self.wrapped_data_key))
        return header + self.wrapped_data_key + self.nonce + self.ciphertext

    @classmethod
    def from_bytes(cls, data: bytes) -> SealedKey:
        """Parse :meth:`to_bytes`'s output; SealedKeyInvalid if it is not exactly that."""
        if len(data) < _HEADER.size:
            raise SealedKeyInvalid(f"{len(data)} bytes are too short for a sealed key")
        version, wrapped_length = _HEADER.unpack_from(data)
        expected = _HEADER.size + wrapped_length + NONCE_BYTES + _CIPHERTEXT_BYTES
        if len(data) != expected:
            raise SealedKeyInvalid(
                f"a sealed key of this shape is {expected} bytes, not {len(data)}"
            )
        start = _HEADER.size
        wrapped = data[start : start + wrapped_length]
        nonce = data[start + wrapped_length : start + wrapped_length + NONCE_BYTES]
        return cls(bytes(wrapped), bytes(data[-_CIPHERTEXT_BYTES:]), bytes(nonce), version)

    def __repr__(self) -> str:
        fingerprint = hashlib.sha256(self.to_bytes()).hexdigest()[:16]
        return f"SealedKey(version={self.version}, sha256={fingerprint}…)"


class KeyStore:
    """Generates, seals and uses wallet keys under one master key; stores nothing itself.

    The caller keeps the :class:`SealedKey` bytes (the signer's database) and passes them back
    with the same ``aad`` each time: the wallet id, as bytes that never change for the wallet.
    """

    def __init__(self, master: MasterKey) -> None:
        """Seal and open keys with ``master`` (the store does not close it)."""
        self._master = master

    @property
    def master(self) -> MasterKey:
        """The master key in use."""
        return self._master

    def key_check_value(self) -> bytes:
        """The master key's check value, for the store to record when it is created."""
        return self._master.key_check_value()

    def verify_master_key(self, expected: bytes) -> None:
        """Refuse a master key whose check value is not the one the store recorded.

        Run at start, before any wallet key is opened: with the wrong master key nothing is
        decrypted and nothing is overwritten.
        """
        if not hmac.compare_digest(self._master.key_check_value(), expected):
            raise MasterKeyMismatch(
                f"the master key {self._master.describe()} is not the one this key store was "
                "sealed with (their key check values differ): start the signer with the "
                "original master key; nothing was decrypted or overwritten"
            )

    def generate(self, aad: bytes) -> tuple[SealedKey, bytes, ChecksumAddress]:
        """A new wallet key, sealed: ``(sealed key, 65-byte public key, EVM address)``.

        The key is drawn from the OS's CSPRNG inside the signer and leaves it only sealed.
        """
        while True:
            secret = random_secret(PRIVATE_KEY_BYTES)
            if _is_valid_scalar(secret):  # fails with probability ~2^-128
                break
            wipe(secret)
        try:
            return self._seal(secret, aad)
        finally:
            wipe(secret)

    def seal_existing(
        self, private_key: bytearray, aad: bytes
    ) -> tuple[SealedKey, bytes, ChecksumAddress]:
        """Seal a key made elsewhere (tests, imports); the caller still owns and wipes it."""
        if len(private_key) != PRIVATE_KEY_BYTES or not _is_valid_scalar(private_key):
            raise IntentInvalid("a secp256k1 private key is 32 bytes, between 1 and n - 1")
        return self._seal(private_key, aad)

    def sign_hash(self, sealed: SealedKey, aad: bytes, digest: bytes) -> bytes:
        """Sign a 32-byte digest: ``r ‖ s ‖ v`` (65 bytes, low s, v 27/28) as eth_sign does.

        Signs whatever digest it is given: the signer calls it only with digests it built
        itself from an approved intent, never with a caller's hash.
        """
        if len(digest) != DIGEST_BYTES:
            raise IntentInvalid(f"a digest to sign is {DIGEST_BYTES} bytes, not {len(digest)}")
        secret = self._unseal(sealed, aad)
        try:
            return _sign_recoverable(secret, bytes(digest))
        finally:
            wipe(secret)

    @contextmanager
    def session(self) -> Iterator[SigningSession]:
        """Sign many digests, opening each wallet's key once: for one batch of requests.

        A key opened in the session stays in clear (in a bytearray) until the session ends,
        when every one is zeroed — also when the batch fails. Keep sessions short: one batch.
        """
        session = SigningSession(self)
        try:
            yield session
        finally:
            session.close()

    @contextmanager
    def open(self, sealed: SealedKey, aad: bytes) -> Iterator[coincurve.PrivateKey]:
        """The wallet key as a coincurve ``PrivateKey``, usable only inside the ``with``.

        On exit the key's secret is zeroed, so the object cannot sign any more. coincurve
        keeps the secret as immutable ``bytes`` (and briefly as an ``int``): zeroing those is
        best effort; prefer :meth:`sign_hash`, which never makes them.
        """
        with self.unsafe_open_secret(sealed, aad) as secret:
            copy = bytes(secret)
            try:
                private_key = coincurve.PrivateKey(copy)
            except ValueError:  # pragma: no cover - the scalar was checked when unsealed
                unsafe_wipe_bytes(copy)
                raise
            try:
                yield private_key
            finally:
                unsafe_wipe_bytes(private_key.secret)
                unsafe_wipe_bytes(copy)

    @contextmanager
    def unsafe_open_secret(self, sealed: SealedKey, aad: bytes) -> Iterator[bytearray]:
        """The raw 32-byte private key, zeroed on exit: for export only, never for a reply."""
        secret = self._unseal(sealed, aad)
        try:
            yield secret
        finally:
            wipe(secret)

    def _seal(self, secret: bytearray, aad: bytes) -> tuple[SealedKey, bytes, ChecksumAddress]:
        public_key = public_key_of(secret)
        data_key = random_secret(KEY_BYTES)
        try:
            # Each data key encrypts exactly one message, so a random nonce cannot repeat.
            nonce = secrets.token_bytes(NONCE_BYTES)
            ciphertext = AESGCM(data_key).encrypt(nonce, secret, _PRIVATE_KEY_AAD + aad)
            wrapped = self._master.wrap(data_key, _DATA_KEY_AAD + aad)
        finally:
            wipe(data_key)
        sealed = SealedKey(wrapped_data_key=wrapped, ciphertext=ciphertext, nonce=nonce)
        # There is no seed phrase to fall back on: prove the sealed key opens to the same key
        # before anyone is given its address.
        check = self._unseal(sealed, aad)
        try:
            if public_key_of(check) != public_key:
                raise SealedKeyInvalid("the freshly sealed key did not open to itself")
        finally:
            wipe(check)
        return sealed, public_key, evm_address_from_public_key(public_key)

    def _unseal(self, sealed: SealedKey, aad: bytes) -> bytearray:
        """The private key in a bytearray the caller must wipe."""
        data_key = self._master.unwrap(sealed.wrapped_data_key, _DATA_KEY_AAD + aad)
        try:
            secret = decrypt_to_bytearray(
                data_key, sealed.nonce, sealed.ciphertext, _PRIVATE_KEY_AAD + aad, what="the key"
            )
        finally:
            wipe(data_key)
        if not _is_valid_scalar(secret):  # pragma: no cover - authenticated, so was valid
            wipe(secret)
            raise SealedKeyInvalid("it does not hold a valid secp256k1 key")
        return secret


class SigningSession:
    """Signing with each wallet's key unsealed once; see :meth:`KeyStore.session`.

    Keys are cached by their exact sealed bytes and associated data, so a cached key is only
    ever used for the wallet whose sealed key and binding opened it.

    :meth:`sign_later` opens the key at once (a key that does not open is refused then) and
    queues the signature; :meth:`sign_queued` makes the queued ones one after another, which
    keeps libsecp256k1's code and tables hot in the processor's caches (measured a few µs per
    signature quicker than signing between other work).
    """

    def __init__(self, keys: KeyStore) -> None:
        self._keys = keys
        self._open: dict[tuple[bytes, bytes], bytearray] = {}
        self._queued: list[tuple[bytearray, bytes, Any]] = []
        self._closed = False

    def _secret(self, sealed_key: bytes, aad: bytes, digest: bytes) -> bytearray:
        if self._closed:
            raise RuntimeError("this signing session has ended")
        if len(digest) != DIGEST_BYTES:
            raise IntentInvalid(f"a digest to sign is {DIGEST_BYTES} bytes, not {len(digest)}")
        key = (sealed_key, aad)
        secret = self._open.get(key)
        if secret is None:
            secret = self._open[key] = self._keys._unseal(SealedKey.from_bytes(sealed_key), aad)
        return secret

    def sign_hash(self, sealed_key: bytes, aad: bytes, digest: bytes) -> bytes:
        """As :meth:`KeyStore.sign_hash`, given the sealed key as stored (its ``to_bytes()``)."""
        return _sign_recoverable(self._secret(sealed_key, aad, digest), bytes(digest))

    def sign_later(self, sealed_key: bytes, aad: bytes, digest: bytes, tag: Any) -> None:
        """Open the key now (raising as :meth:`sign_hash` would) and queue the signature;
        :meth:`sign_queued` returns it beside ``tag`` (anything the caller needs with it)."""
        self._queued.append((self._secret(sealed_key, aad, digest), bytes(digest), tag))

    def sign_queued(self) -> list[tuple[Any, bytes]]:
        """Make the queued signatures, in order: ``(tag, signature)`` for each.

        As :func:`_sign_recoverable` for each, with the library's output buffers made once for
        the run (three allocations per signature were a tenth of its cost).
        """
        queued, self._queued = self._queued, []
        if not queued:
            return []
        signature = ffi.new("secp256k1_ecdsa_recoverable_signature *")
        compact = ffi.new("unsigned char[64]")
        recovery_id = ffi.new("int *")
        compact_bytes = ffi.buffer(compact, 64)
        sign, serialize = (
            lib.secp256k1_ecdsa_sign_recoverable,
            lib.secp256k1_ecdsa_recoverable_signature_serialize_compact,
        )
        context, from_buffer, null = _CONTEXT, ffi.from_buffer, ffi.NULL
        signed: list[tuple[Any, bytes]] = []
        for secret, digest, tag in queued:
            if not sign(context, signature, digest, from_buffer(secret), null, null):
                raise SealedKeyInvalid("libsecp256k1 refused the key")  # pragma: no cover
            serialize(context, compact, recovery_id, signature)
            # v = 27 + the recovery id, as _sign_recoverable writes it.
            signed.append((tag, compact_bytes[:] + _V[recovery_id[0]]))
        return signed

    def close(self) -> None:
        """Zero every key the session opened; it cannot sign any more (queued ones are lost)."""
        self._closed = True
        self._queued.clear()
        for secret in self._open.values():
            wipe(secret)
        self._open.clear()

    def __repr__(self) -> str:
        return f"<SigningSession: {len(self._open)} keys open, {len(self._queued)} queued>"


# -- libsecp256k1 on bytearrays ------------------------------------------------------------------
# ffi.from_buffer hands libsecp256k1 a pointer into the bytearray itself: no copy is made.


def _is_valid_scalar(secret: bytearray) -> bool:
    """Whether ``secret`` is 32 bytes and a valid private key (0 < k < n)."""
    return len(secret) == PRIVATE_KEY_BYTES and bool(
        lib.secp256k1_ec_seckey_verify(_CONTEXT, ffi.from_buffer(secret))
    )


def public_key_of(secret: bytearray | bytes) -> bytes:
    """The 65-byte uncompressed public key of a 32-byte private key."""
    # libsecp256k1 reads 32 bytes whatever the buffer's length: check it first.
    if len(secret) != PRIVATE_KEY_BYTES:
        raise IntentInvalid(f"a secp256k1 private key is {PRIVATE_KEY_BYTES} bytes")
    point = ffi.new("secp256k1_pubkey *")
    if not lib.secp256k1_ec_pubkey_create(_CONTEXT, point, ffi.from_buffer(secret)):
        raise IntentInvalid("not a valid secp256k1 private key")
    out = ffi.new("unsigned char[65]")
    size = ffi.new("size_t *", PUBLIC_KEY_BYTES)
    lib.secp256k1_ec_pubkey_serialize(_CONTEXT, out, size, point, EC_UNCOMPRESSED)
    return bytes(ffi.buffer(out, PUBLIC_KEY_BYTES))


#: Ethereum's ``v`` byte by libsecp256k1's recovery id (see _sign_recoverable).
_V: Final = tuple(bytes((27 + recovery_id,)) for recovery_id in range(4))


def _sign_recoverable(secret: bytearray, digest: bytes) -> bytes:
    """ECDSA with RFC 6979 nonces and low s (libsecp256k1's defaults), as ``r ‖ s ‖ v``."""
    signature = ffi.new("secp256k1_ecdsa_recoverable_signature *")
    if not lib.secp256k1_ecdsa_sign_recoverable(
        _CONTEXT, signature, digest, ffi.from_buffer(secret), ffi.NULL, ffi.NULL
    ):  # pragma: no cover - only for an invalid key, which _unseal refuses
        raise SealedKeyInvalid("libsecp256k1 refused the key")
    compact = ffi.new("unsigned char[64]")
    recovery_id = ffi.new("int *")
    lib.secp256k1_ecdsa_recoverable_signature_serialize_compact(
        _CONTEXT, compact, recovery_id, signature
    )
    # Ethereum's v for eth_sign / EIP-712 signatures: 27 + the recovery id (0 or 1 here,
    # since libsecp256k1 only returns 2 or 3 for r >= n, which has probability ~2^-127).
    return bytes(ffi.buffer(compact, 64)) + bytes((27 + recovery_id[0],))
