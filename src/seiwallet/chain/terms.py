"""Checks on the values our contracts' calls take, before any ABI encoding: one wording for all.

The router's payments and refunds and the escrow's invitations are built from these, so a bad
value is refused in Python with the field's name rather than by the encoder or the chain.
"""

from __future__ import annotations

from typing import Final

from seiwallet.addresses import parse_evm_address
from seiwallet.errors import InvalidInput

UINT256_MAX: Final = 2**256 - 1


def require_bytes32(name: str, value: bytes) -> None:
    if not isinstance(value, bytes) or len(value) != 32:
        raise InvalidInput(f"{name} must be exactly 32 bytes")


def require_uint(name: str, value: int, maximum: int = UINT256_MAX) -> None:
    """An integer from 0 to ``maximum`` (bool, a subclass of int, is refused)."""
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= maximum:
        shown = "2**256-1" if maximum == UINT256_MAX else str(maximum)
        raise InvalidInput(f"{name} must be an integer from 0 to {shown}")


def checksummed(name: str, value: str) -> str:
    """A checksummed address; a mixed-case address with a wrong EIP-55 checksum is refused."""
    if not isinstance(value, str):
        raise InvalidInput(f"{name} must be a 0x-prefixed 20-byte address, got {value!r}")
    try:
        return str(parse_evm_address(value))
    except InvalidInput as exc:
        raise InvalidInput(f"{name}: {exc}") from None


def nonzero_address(name: str, value: str) -> str:
    address = checksummed(name, value)
    if int(address, 16) == 0:
        raise InvalidInput(f"{name} cannot be the zero address")
    return address
