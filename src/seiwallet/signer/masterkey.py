"""Master keys: the one secret that wraps every wallet's data key.

Two providers share one wrapped format, ``version (1) ‖ nonce (12) ‖ AES-256-GCM ciphertext ‖
tag (16)``, so a key moved from a file into an HSM still opens what it wrapped:

* :class:`FileMasterKey`: 32 random bytes in a 0600 file (development, small installs);
* :class:`Pkcs11MasterKey`: a non-extractable AES-256 key inside a PKCS#11 token (SoftHSM2 in
  tests, a real HSM in production). The key never leaves the token; the token wraps and unwraps.

Each provider also gives a *key check value* (:meth:`MasterKey.key_check_value`), which a store
records when it is created and compares at every start, so a wrong master key is refused
before any wallet key is touched.

Memory hygiene, as far as Python allows: secrets live in ``bytearray``s that :func:`wipe`
zeroes in place; decryption writes straight into them (:func:`decrypt_to_bytearray`), and the
few immutable ``bytes`` that libraries hand back are zeroed with :func:`unsafe_wipe_bytes`.
"""

from __future__ import annotations

import ctypes
import os
import secrets
import stat
import struct
import sys
import threading
from pathlib import Path
from types import TracebackType
from typing import Any, Final, NoReturn, Protocol, Self
from urllib.parse import quote

import cffi  # type: ignore[import-untyped]
import pkcs11
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from pkcs11 import Attribute, KeyType, Mechanism, MechanismFlag, ObjectClass
from pkcs11 import exceptions as p11
from pkcs11.attributes import AttributeMapper
from pkcs11.types import DecryptMixin, EncryptMixin

from seiwallet.signer.errors import MasterKeyUnavailable, SealedKeyInvalid, SignerError

__all__ = [
    "KEY_BYTES",
    "NONCE_BYTES",
    "TAG_BYTES",
    "WRAP_VERSION",
    "FileMasterKey",
    "MasterKey",
    "Pkcs11MasterKey",
    "decrypt_to_bytearray",
    "random_secret",
    "unsafe_wipe_bytes",
    "wipe",
]

KEY_BYTES: Final = 32
NONCE_BYTES: Final = 12
TAG_BYTES: Final = 16
WRAP_VERSION: Final = 1
_WRAP_HEADER: Final = bytes([WRAP_VERSION])

# The key check value is AES-256-GCM over an empty message, with this label as associated data,
# under a nonce reserved for it: the output is one GCM tag, E_K(J0) xor GHASH_H(label), which is
# pseudorandom and says nothing about K. The classic "encrypt a zero block" KCV must NOT be used
# with GCM: E_K(0^128) *is* GCM's hash subkey H, and knowing H lets anyone forge tags.
# Wrapping never draws the reserved nonce (see _fresh_nonce), so it is used for nothing else.
_KCV_NONCE: Final = bytes(NONCE_BYTES)
_KCV_LABEL: Final = b"seiwallet/signer/master-key-check/v1"
_KCV_VERSION: Final = b"\x01"


# -- memory ------------------------------------------------------------------------------------

_FFI: Final = cffi.FFI()
_ZEROS: Final = bytes(4096)


def wipe(buffer: bytearray) -> None:
    """Zero ``buffer`` in place, so the secret does not linger in memory after use.

    A C ``memmove`` from a block of zeros through cffi (~0.2 µs, against ~2 µs for a ctypes
    call: this runs several times per signature); ``ctypes.memset`` for large buffers.
    """
    size = len(buffer)
    if size <= len(_ZEROS):
        _FFI.memmove(buffer, _ZEROS, size)
    else:
        view = (ctypes.c_char * size).from_buffer(buffer)
        ctypes.memset(ctypes.addressof(view), 0, size)
        del view  # releases the export, so the bytearray may be resized again


def _bytes_data_offset() -> int | None:
    """Where CPython keeps a ``bytes`` object's data, checked on a probe; ``None`` elsewhere."""
    if sys.implementation.name != "cpython":
        return None
    offset = bytes.__basicsize__ - 1  # ob_sval is the last member of the header
    probe = bytes(range(1, 33))  # a fresh object, shared with nobody
    if ctypes.string_at(id(probe) + offset, len(probe)) != probe:
        return None
    return offset


_BYTES_DATA_OFFSET: Final = _bytes_data_offset()


def unsafe_wipe_bytes(data: bytes) -> None:
    """Best effort: zero an immutable ``bytes`` object's storage in place (CPython only).

    Only for fresh objects that nothing else holds (a library's return value that carried a
    secret): zeroing a shared or interned ``bytes`` would corrupt it everywhere it is used.
    Objects of length 0 or 1 are interpreter-wide singletons and are left alone.
    """
    if _BYTES_DATA_OFFSET is None or type(data) is not bytes or len(data) < 2:
        return
    ctypes.memset(id(data) + _BYTES_DATA_OFFSET, 0, len(data))


def random_secret(size: int = KEY_BYTES) -> bytearray:
    """``size`` bytes from the OS's CSPRNG, in a bytearray that :func:`wipe` can clear."""
    drawn = secrets.token_bytes(size)
    secret = bytearray(drawn)
    unsafe_wipe_bytes(drawn)
    return secret


# AESGCM.decrypt_into arrived in cryptography 46; before it, the streaming API writes into a
# buffer too, only ~3 µs slower.
_HAS_DECRYPT_INTO: Final = hasattr(AESGCM, "decrypt_into")


def decrypt_to_bytearray(
    key: bytearray, nonce: bytes, ciphertext_and_tag: bytes, aad: bytes, *, what: str
) -> bytearray:
    """AES-256-GCM decryption written straight into a bytearray (never immutable ``bytes``).

    ``what`` names the object in the error raised when the tag does not verify.
    """
    if len(ciphertext_and_tag) < TAG_BYTES:
        raise SealedKeyInvalid(f"{what} is truncated")
    plaintext = bytearray(len(ciphertext_and_tag) - TAG_BYTES)
    try:
        if _HAS_DECRYPT_INTO:
            AESGCM(key).decrypt_into(nonce, ciphertext_and_tag, aad, plaintext)
        else:
            _decrypt_into_compat(key, nonce, ciphertext_and_tag, aad, plaintext)
    except InvalidTag:
        # Both paths leave the unauthenticated plaintext in the buffer when the tag fails.
        wipe(plaintext)
        raise SealedKeyInvalid(
            f"{what} failed authentication (another master key, another wallet's binding, "
            "or altered bytes)"
        ) from None
    return plaintext


def _decrypt_into_compat(
    key: bytearray, nonce: bytes, ciphertext_and_tag: bytes, aad: bytes, out: bytearray
) -> None:
    ciphertext, tag = ciphertext_and_tag[:-TAG_BYTES], ciphertext_and_tag[-TAG_BYTES:]
    decryptor = Cipher(algorithms.AES(key), modes.GCM(nonce, tag)).decryptor()
    decryptor.authenticate_additional_data(aad)
    scratch = bytearray(len(ciphertext) + 15)  # update_into wants a block's room to spare
    try:
        written = decryptor.update_into(ciphertext, scratch)
        out[:] = memoryview(scratch)[:written]
        decryptor.finalize()  # checks the tag; the caller wipes ``out`` if it fails
    finally:
        wipe(scratch)


def _fresh_nonce() -> bytes:
    """A random 96-bit GCM nonce, never the one reserved for the key check value."""
    while True:
        nonce = secrets.token_bytes(NONCE_BYTES)
        if nonce != _KCV_NONCE:
            return nonce


def _split_wrapped(wrapped: bytes) -> tuple[bytes, bytes]:
    """The nonce and ciphertext‖tag of a wrapped key, after checking its version and length."""
    if len(wrapped) < 1 + NONCE_BYTES + TAG_BYTES + 1:
        raise SealedKeyInvalid(f"a wrapped data key of {len(wrapped)} bytes is truncated")
    if wrapped[:1] != _WRAP_HEADER:
        raise SealedKeyInvalid(f"wrapped data key version {wrapped[0]} is not {WRAP_VERSION}")
    return wrapped[1 : 1 + NONCE_BYTES], wrapped[1 + NONCE_BYTES :]


# -- the protocol ------------------------------------------------------------------------------


class MasterKey(Protocol):
    """What the key store asks of a master key; the key itself never crosses this boundary."""

    def wrap(self, data_key: bytes | bytearray, aad: bytes) -> bytes:
        """Encrypt a data key under the master key, bound to ``aad``."""
        ...

    def unwrap(self, wrapped: bytes, aad: bytes) -> bytearray:
        """Decrypt a wrapped data key; the caller wipes the result. Raises SealedKeyInvalid."""
        ...

    def key_check_value(self) -> bytes:
        """A fingerprint that tells master keys apart and reveals nothing about them."""
        ...

    def describe(self) -> str:
        """Where the key lives, for messages and logs (never any key material)."""
        ...

    def close(self) -> None:
        """Forget the key (zero it, log out of the token); later calls raise SignerError."""
        ...


class _Closable:
    """Context-manager plumbing and the guards every provider shares."""

    _closed: bool

    def close(self) -> None:  # pragma: no cover - overridden
        raise NotImplementedError

    def describe(self) -> str:  # pragma: no cover - overridden
        raise NotImplementedError

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def __reduce__(self) -> NoReturn:
        # Pickling would copy the key (or a live session) somewhere we cannot wipe.
        raise TypeError(f"{type(self).__name__} cannot be pickled or copied")

    def _ensure_open(self) -> None:
        if self._closed:
            raise SignerError(f"the master key {self.describe()} was closed")


# -- file --------------------------------------------------------------------------------------


class FileMasterKey(_Closable):
    """A master key kept in a 0600 file: for development and installs without an HSM.

    Anyone who can read the file can open every wallet key the store holds: keep it on the
    signer's machine only, owned by the signer's user, and back it up as carefully as the store.
    Thread-safe (no shared mutable state), except that :meth:`close` must come last.
    """

    def __init__(self, key: bytearray, *, source: str) -> None:
        """Take ownership of ``key`` (32 bytes); :meth:`close` wipes it."""
        if len(key) != KEY_BYTES:
            wipe(key)
            raise MasterKeyUnavailable(source, f"a master key is {KEY_BYTES} bytes")
        self._key = key
        self._source = source
        self._closed = False
        self._kcv = _KCV_VERSION + AESGCM(self._key).encrypt(_KCV_NONCE, b"", _KCV_LABEL)

    @classmethod
    def open_or_create(cls, path: str | os.PathLike[str]) -> FileMasterKey:
        """Read the key at ``path``; create it (0600, parent 0700) on first start."""
        path = Path(path)
        source = f"file {path}"
        key = _read_key_file(path, source)
        if key is None:
            key = _create_key_file(path)
            if key is None:  # another process created it first: use theirs
                key = _read_key_file(path, source)
            if key is None:
                raise MasterKeyUnavailable(source, "it vanished while it was being created")
        return cls(key, source=source)

    def wrap(self, data_key: bytes | bytearray, aad: bytes) -> bytes:
        """AES-256-GCM-encrypt ``data_key`` under the file's key, bound to ``aad``."""
        self._ensure_open()
        nonce = _fresh_nonce()
        return _WRAP_HEADER + nonce + AESGCM(self._key).encrypt(nonce, data_key, aad)

    def unwrap(self, wrapped: bytes, aad: bytes) -> bytearray:
        """Decrypt a wrapped data key into a bytearray the caller must wipe."""
        self._ensure_open()
        nonce, ciphertext = _split_wrapped(wrapped)
        return decrypt_to_bytearray(self._key, nonce, ciphertext, aad, what="the data key")

    def key_check_value(self) -> bytes:
        """The key's check value (see the module docstring: one GCM tag over a fixed label)."""
        self._ensure_open()
        return self._kcv

    def describe(self) -> str:
        """``file /path/to/master.key``."""
        return self._source

    def close(self) -> None:
        """Zero the key; further use raises SignerError."""
        wipe(self._key)
        self._closed = True

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"
        return f"<FileMasterKey {self._source} ({state})>"


def _read_key_file(path: Path, source: str) -> bytearray | None:
    """The key in ``path``, checked for a safe mode and the right size; ``None`` if absent."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise MasterKeyUnavailable(source, f"cannot be read: {exc.strerror}") from None
    try:
        # fstat on the open descriptor: what we check is what we read (no rename race).
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise MasterKeyUnavailable(source, "is not a regular file")
        mode = stat.S_IMODE(info.st_mode)
        if mode & 0o077:
            raise MasterKeyUnavailable(
                source,
                f"has mode {mode:04o}, so other users may read it; if nobody else could have, "
                f"run `chmod 600 {path}`, otherwise treat every key it sealed as exposed",
            )
        if info.st_size != KEY_BYTES:
            raise MasterKeyUnavailable(
                source,
                f"holds {info.st_size} bytes, a master key holds exactly {KEY_BYTES}: it is "
                "damaged or not a seiwallet master key; restore it from your backup",
            )
        key = bytearray(KEY_BYTES)
        if os.readv(fd, [key]) != KEY_BYTES:
            wipe(key)
            raise MasterKeyUnavailable(source, "was cut short while it was being read")
        return key
    finally:
        os.close(fd)


def _create_key_file(path: Path) -> bytearray | None:
    """Write a new random key to ``path``; ``None`` if another process got there first."""
    parent = path.parent
    parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    key = random_secret(KEY_BYTES)
    # Written in full to a private temporary file, then link()ed into place: link fails if the
    # name exists, so two signers starting at once never see (or overwrite) a half-written key.
    temporary = parent / f".{path.name}.{secrets.token_hex(8)}.tmp"
    try:
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        try:
            view = memoryview(key)
            while view:
                view = view[os.write(fd, view) :]
            view.release()
            os.fsync(fd)
        finally:
            os.close(fd)
        try:
            os.link(temporary, path)
        except FileExistsError:
            wipe(key)
            return None
        finally:
            temporary.unlink()
        _fsync_directory(parent)
    except OSError as exc:
        wipe(key)
        raise MasterKeyUnavailable(f"file {path}", f"cannot be created: {exc.strerror}") from None
    return key


def _fsync_directory(directory: Path) -> None:
    """Make a new directory entry durable, so a crash cannot lose a key already in use."""
    fd = os.open(directory, os.O_RDONLY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


# -- PKCS#11 -----------------------------------------------------------------------------------


def _pack_mechanisms(mechanisms: list[Mechanism]) -> bytes:
    """CKA_ALLOWED_MECHANISMS is an array of CK_MECHANISM_TYPE (a native unsigned long)."""
    return struct.pack(f"{len(mechanisms)}L", *mechanisms)


def _unpack_mechanisms(raw: bytes) -> list[Mechanism]:
    return [Mechanism(value) for (value,) in struct.iter_unpack("L", raw)]


def _attribute_mapper() -> AttributeMapper:
    """python-pkcs11's mapper, taught CKA_ALLOWED_MECHANISMS (which it does not pack itself)."""
    mapper = AttributeMapper()
    mapper.register_handler(Attribute.ALLOWED_MECHANISMS, _pack_mechanisms, _unpack_mechanisms)
    return mapper


# The master key: on the token, private to the logged-in user, never readable in clear
# (SENSITIVE) nor exportable even wrapped (EXTRACTABLE False), immutable and not copyable, good
# for encrypt/decrypt only, and - where the token honours it - for AES-GCM only, so a
# "encrypt this block in ECB" call cannot reveal GCM's hash subkey.
_KEY_TEMPLATE: Final[dict[Attribute, Any]] = {
    Attribute.TOKEN: True,
    Attribute.PRIVATE: True,
    Attribute.SENSITIVE: True,
    Attribute.EXTRACTABLE: False,
    Attribute.MODIFIABLE: False,
    Attribute.COPYABLE: False,
}
_KEY_CAPABILITIES: Final = MechanismFlag.ENCRYPT | MechanismFlag.DECRYPT

# What a key must show before we trust it: in particular, a key someone made extractable or
# readable is refused rather than used (it may already have left the token).
_REQUIRED_ATTRIBUTES: Final[dict[Attribute, object]] = {
    Attribute.SENSITIVE: True,
    Attribute.EXTRACTABLE: False,
    Attribute.VALUE_LEN: KEY_BYTES,
    Attribute.ENCRYPT: True,
    Attribute.DECRYPT: True,
}

# How tokens report a GCM tag that does not verify (SoftHSM2: CKR_GENERAL_ERROR).
_AUTHENTICATION_FAILURES: Final = (
    p11.GeneralError,
    p11.EncryptedDataInvalid,
    p11.EncryptedDataLenRange,
    p11.DataInvalid,
    p11.DataLenRange,
)


class Pkcs11MasterKey(_Closable):
    """A non-extractable AES-256 key inside a PKCS#11 token; the token does every wrap/unwrap.

    Thread-safe: a PKCS#11 session runs one operation at a time, so one session per instance
    is shared under a lock (python-pkcs11 releases the GIL during token calls). Login state is
    per process in PKCS#11: open one instance per token per process.
    """

    def __init__(
        self,
        session: pkcs11.Session,
        key: pkcs11.Key,
        *,
        library: str,
        token_label: str,
        key_label: str,
    ) -> None:
        """Use an open, logged-in ``session`` and its ``key``; prefer :meth:`open`."""
        self._session = session
        self._library = library
        self._token_label = token_label
        self._key_label = key_label
        if not isinstance(key, EncryptMixin) or not isinstance(key, DecryptMixin):
            raise MasterKeyUnavailable(self.describe(), "the key cannot encrypt and decrypt")
        # One object seen through its two capabilities (python-pkcs11 types them as mixins).
        self._encrypting: EncryptMixin = key
        self._decrypting: DecryptMixin = key
        self._lock = threading.Lock()
        self._closed = False
        self._kcv = _KCV_VERSION + self._encrypt(_KCV_NONCE, b"", _KCV_LABEL)

    @classmethod
    def open(
        cls,
        library: str,
        token_label: str,
        pin: str,
        key_label: str,
        create: bool = True,
    ) -> Pkcs11MasterKey:
        """Log in to the token labelled ``token_label`` and find (or make) the key ``key_label``.

        Tokens are found by label because slot ids are not stable (SoftHSM2 draws them at
        random). ``create=False`` refuses to make a key, for a signer that must find one.
        """
        source = _pkcs11_uri(token_label, key_label)
        try:
            lib = pkcs11.lib(library)
        except p11.PKCS11Error as exc:
            raise MasterKeyUnavailable(
                source,
                f"cannot load the PKCS#11 library {library} ({exc}); for SoftHSM2 install "
                "Debian's softhsm2 (`make system-deps`)",
            ) from None
        try:
            token = lib.get_token(token_label=token_label)
        except p11.NoSuchToken:
            raise MasterKeyUnavailable(
                source,
                f"no token labelled {token_label!r} in {library}; initialize one, e.g. "
                f"`softhsm2-util --init-token --free --label {token_label}`",
            ) from None
        except p11.MultipleTokensReturned:
            raise MasterKeyUnavailable(
                source, f"several tokens are labelled {token_label!r}; give each its own label"
            ) from None
        try:
            session = token.open(rw=create, user_pin=pin, attribute_mapper=_attribute_mapper())
        except (p11.PinIncorrect, p11.PinInvalid, p11.PinLenRange):
            raise MasterKeyUnavailable(
                source, f"the token {token_label!r} refused the PIN; check the signer's PIN setting"
            ) from None
        except (p11.PinLocked, p11.PinExpired):
            raise MasterKeyUnavailable(
                source, f"the PIN of token {token_label!r} is locked or expired; ask its officer"
            ) from None
        except p11.UserAlreadyLoggedIn:
            raise MasterKeyUnavailable(
                source,
                "this process is already logged in to the token (another master key still "
                "open?); PKCS#11 logins are per process: close it first",
            ) from None
        except p11.PKCS11Error as exc:
            raise MasterKeyUnavailable(source, f"cannot open a session ({exc!r})") from None
        try:
            key = _find_or_create_key(session, key_label, create=create, source=source)
            return cls(session, key, library=library, token_label=token_label, key_label=key_label)
        except BaseException:
            session.close()
            raise

    def wrap(self, data_key: bytes | bytearray, aad: bytes) -> bytes:
        """AES-256-GCM-encrypt ``data_key`` inside the token, bound to ``aad``."""
        nonce = _fresh_nonce()
        # python-pkcs11 takes only ``bytes``: a private copy, zeroed once the token has it.
        plaintext = bytes(data_key)
        try:
            return _WRAP_HEADER + nonce + self._encrypt(nonce, plaintext, aad)
        finally:
            unsafe_wipe_bytes(plaintext)

    def unwrap(self, wrapped: bytes, aad: bytes) -> bytearray:
        """Decrypt a wrapped data key inside the token; the caller wipes the result."""
        nonce, ciphertext = _split_wrapped(wrapped)
        params = pkcs11.GCMParams(nonce, aad or None, TAG_BYTES * 8)
        with self._lock:
            self._ensure_open()
            try:
                plaintext = self._decrypting.decrypt(
                    ciphertext, mechanism=Mechanism.AES_GCM, mechanism_param=params
                )
            except _AUTHENTICATION_FAILURES:
                raise SealedKeyInvalid(
                    "the token could not authenticate the data key (another master key, "
                    "another wallet's binding, or altered bytes)"
                ) from None
            except p11.PKCS11Error as exc:
                raise MasterKeyUnavailable(self.describe(), f"token error {exc!r}") from None
        if not isinstance(plaintext, bytes):  # pragma: no cover - bytes in, bytes out
            raise TypeError("python-pkcs11 returned a stream for a one-shot decryption")
        data_key = bytearray(plaintext)
        unsafe_wipe_bytes(plaintext)
        return data_key

    def key_check_value(self) -> bytes:
        """The key's check value, computed by the token when the key was opened."""
        self._ensure_open()
        return self._kcv

    def describe(self) -> str:
        """An RFC 7512 style URI: ``pkcs11:token=…;object=…``."""
        return _pkcs11_uri(self._token_label, self._key_label)

    def close(self) -> None:
        """Log out and close the session; the key stays in the token for the next start."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._session.close()

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"
        return f"<Pkcs11MasterKey {self.describe()} in {self._library} ({state})>"

    def _encrypt(self, nonce: bytes, plaintext: bytes, aad: bytes) -> bytes:
        params = pkcs11.GCMParams(nonce, aad or None, TAG_BYTES * 8)
        with self._lock:
            self._ensure_open()
            try:
                sealed = self._encrypting.encrypt(
                    plaintext, mechanism=Mechanism.AES_GCM, mechanism_param=params
                )
            except p11.PKCS11Error as exc:
                raise MasterKeyUnavailable(
                    self.describe(), f"the token refused AES-GCM encryption ({exc!r})"
                ) from None
        if not isinstance(sealed, bytes):  # pragma: no cover - bytes in, bytes out
            raise TypeError("python-pkcs11 returned a stream for a one-shot encryption")
        return sealed


def _pkcs11_uri(token_label: str, key_label: str) -> str:
    return f"pkcs11:token={quote(token_label, safe='')};object={quote(key_label, safe='')}"


def _find_or_create_key(
    session: pkcs11.Session, label: str, *, create: bool, source: str
) -> pkcs11.Key:
    """The AES key labelled ``label``, checked to be safe; made inside the token if allowed."""
    try:
        found = session.get_key(
            object_class=ObjectClass.SECRET_KEY, key_type=KeyType.AES, label=label
        )
    except p11.MultipleObjectsReturned:
        raise MasterKeyUnavailable(
            source, f"several AES keys are labelled {label!r}; the token must hold exactly one"
        ) from None
    except p11.NoSuchKey:
        if not create:
            raise MasterKeyUnavailable(
                source, f"the token holds no AES key labelled {label!r} (creation not allowed)"
            ) from None
        return _generate_key(session, label, source)
    if not isinstance(found, pkcs11.Key):  # pragma: no cover - get_key filters on class
        raise MasterKeyUnavailable(source, f"{label!r} is not a secret key")
    for attribute, expected in _REQUIRED_ATTRIBUTES.items():
        actual = found[attribute]
        if actual != expected:
            raise MasterKeyUnavailable(
                source,
                f"the key {label!r} has {attribute.name}={actual}, the signer requires "
                f"{expected}: it may have left the token; create a new key and re-seal",
            )
    return found


def _generate_key(session: pkcs11.Session, label: str, source: str) -> pkcs11.Key:
    """Generate the master key inside the token; its value is never visible outside it."""
    template = {**_KEY_TEMPLATE, Attribute.ALLOWED_MECHANISMS: [Mechanism.AES_GCM]}
    try:
        try:
            return session.generate_key(
                KeyType.AES,
                KEY_BYTES * 8,
                label=label,
                store=True,
                capabilities=_KEY_CAPABILITIES,
                template=template,
            )
        except (p11.AttributeTypeInvalid, p11.AttributeValueInvalid, p11.TemplateInconsistent):
            # Tokens before PKCS#11 2.40 do not know CKA_ALLOWED_MECHANISMS: the key is still
            # non-extractable and sensitive, only not restricted to GCM.
            return session.generate_key(
                KeyType.AES,
                KEY_BYTES * 8,
                label=label,
                store=True,
                capabilities=_KEY_CAPABILITIES,
                template=dict(_KEY_TEMPLATE),
            )
    except p11.PKCS11Error as exc:
        raise MasterKeyUnavailable(
            source, f"the token could not generate an AES-256 key ({exc!r})"
        ) from None
