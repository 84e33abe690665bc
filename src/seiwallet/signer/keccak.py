"""Keccak-256 for the signer's hot path: pycryptodome's own C code, without its per-call wrapper.

Every signature needs two Keccak-256 hashes (the EIP-712 struct hash and the final digest).
pycryptodome's ``keccak.new(...).digest()`` spends ~6 µs in Python around ~1 µs of hashing: it
builds a state, a smart pointer, a result buffer and checks its arguments on every call. This
module calls the same C functions (``keccak_reset``, ``keccak_absorb``, ``keccak_digest``) on one
state per thread, which it resets before each hash: ~2.5 µs per hash (measured in
``BENCHMARKS.md``, signer section). A unit test pins it to ``Crypto.Hash.keccak`` and to the
published empty-input hash.

If pycryptodome ever loads its C code through another backend than cffi, :func:`keccak256` is
simply the library's own call.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any, Final

from Crypto.Hash import keccak as _pycryptodome_keccak

__all__ = ["keccak256"]

_DIGEST_BYTES: Final = 32
_CAPACITY_BYTES: Final = 2 * _DIGEST_BYTES  # Keccak-256: capacity 512 bits
_ROUNDS: Final = 24
_KECCAK_PADDING: Final = 0x01  # original Keccak, as Ethereum uses (SHA-3 would be 0x06)


def _library_keccak256(data: bytes) -> bytes:
    return bytes(_pycryptodome_keccak.new(data=data, digest_bits=256).digest())


def _raw_keccak256() -> Callable[[bytes], bytes] | None:
    """The direct path, if pycryptodome's C library is reachable through cffi."""
    try:
        from Crypto.Hash.keccak import (  # type: ignore[attr-defined]  # noqa: PLC0415
            _raw_keccak_lib,  # private: checked against the library's own call by a test
        )
        from Crypto.Util import _raw_api  # noqa: PLC0415
    except ImportError:  # pragma: no cover - pycryptodome layout changed
        return None
    if getattr(_raw_api, "backend", None) != "cffi":  # pragma: no cover - ctypes backend
        return None
    ffi: Any = _raw_api.ffi
    lib: Any = _raw_keccak_lib

    class _State(threading.local):
        """One Keccak state and output buffer per thread (a state is not shareable)."""

        def __init__(self) -> None:
            pointer = ffi.new("void **")
            if lib.keccak_init(pointer, _CAPACITY_BYTES, _ROUNDS):  # pragma: no cover
                raise MemoryError("keccak_init failed")
            out = ffi.new("uint8_t[]", _DIGEST_BYTES)
            self.parts = (ffi.gc(pointer[0], lib.keccak_destroy), out, ffi.buffer(out))

    local = _State()

    reset, absorb, digest = lib.keccak_reset, lib.keccak_absorb, lib.keccak_digest

    def keccak256(data: bytes) -> bytes:
        state, out, view = local.parts
        # Non-zero results only come from NULL pointers or a state used after digest without a
        # reset; checked all the same, as the library's wrapper does.
        if (
            reset(state)
            or absorb(state, data, len(data))
            or digest(state, out, _DIGEST_BYTES, _KECCAK_PADDING)
        ):  # pragma: no cover
            raise ValueError("keccak failed")
        return bytes(view)

    return keccak256


#: ``keccak256(data) -> 32 bytes``: Ethereum's Keccak-256 (not SHA3-256).
keccak256: Final[Callable[[bytes], bytes]] = _raw_keccak256() or _library_keccak256
