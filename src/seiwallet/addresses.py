"""The two address forms of a Sei account, derived from its public key and parsed from text.

A Sei account has one secp256k1 key and two addresses (Sei's ``GetAddressesFromPubkeyBytes``):

* the EVM address, ``keccak256(x || y)[12:]`` of the uncompressed key, written ``0x`` + 40 hex
  digits with the EIP-55 mixed-case checksum;
* the Sei address, ``bech32("sei", ripemd160(sha256(compressed key)))``, written ``sei1…``.

The two are different hashes, so neither can be computed from the other: a ``sei1`` address
maps to a ``0x`` address only when the public key, or the chain's association, is known.
Parsers here accept what people paste (surrounding whitespace, all-lowercase or all-uppercase
hex) and refuse, with a message that says what is wrong, anything that might be a typo.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Final, NewType, TypeAlias

import bech32
import coincurve
from Crypto.Hash import RIPEMD160
from eth_typing import ChecksumAddress, HexAddress, HexStr
from eth_utils.address import to_checksum_address
from eth_utils.crypto import keccak

from seiwallet.errors import InvalidInput

__all__ = [
    "SEI_ACCOUNT_PAYLOAD_BYTES",
    "SEI_CONTRACT_PAYLOAD_BYTES",
    "SEI_HRP",
    "ZERO_ADDRESS",
    "AddressPair",
    "ChecksumAddress",
    "InvalidAddress",
    "InvalidPublicKey",
    "SeiAddress",
    "SeiAddressResolver",
    "associations",
    "decode_sei_address",
    "evm_address_from_public_key",
    "is_zero_address",
    "parse_address",
    "parse_evm_address",
    "parse_sei_address",
    "sei_address_from_public_key",
]

#: A ``sei1…`` address in canonical (lowercase) form, checked by :func:`parse_sei_address`.
SeiAddress = NewType("SeiAddress", str)

#: What :func:`parse_address` asks to turn a ``sei1`` address into its EVM address: a mapping
#: of Sei address to EVM address, or a function returning the EVM address or ``None``.
SeiAddressResolver: TypeAlias = (
    Mapping[SeiAddress, str] | Mapping[str, str] | Callable[[SeiAddress], str | None]
)

SEI_HRP: Final = "sei"
#: Payload of an account address: ``ripemd160(sha256(compressed public key))``.
SEI_ACCOUNT_PAYLOAD_BYTES: Final = 20
#: Payload of a CosmWasm contract address (a 32-byte hash), which has no key and no 0x twin.
SEI_CONTRACT_PAYLOAD_BYTES: Final = 32

ZERO_ADDRESS: Final = ChecksumAddress(HexAddress(HexStr("0x" + "00" * 20)))

_HEX_DIGITS: Final = frozenset("0123456789abcdefABCDEF")
_BECH32_CHARSET: Final = "qpzry9x8gf2tvdw0s3jn54khce6mua7l"
_BECH32_CHECKSUM_CHARS: Final = 6
# Longer than any address we accept by a wide margin; anything longer is refused before any
# work is done on it and is cut short in messages (which end up in logs).
_MAX_INPUT_CHARS: Final = 200
_SHOWN_CHARS: Final = 80

_EVM_SHAPE: Final = "an EVM address is '0x' followed by 40 hexadecimal digits (0-9, a-f)"
_SEI_SHAPE: Final = (
    "a Sei address is 'sei1' followed by 38 lowercase letters and digits "
    "(58 for a contract address)"
)


class InvalidAddress(InvalidInput):
    """Text that is not a usable address; the message says what is wrong and the expected shape."""

    code = "address.invalid"

    def __init__(self, text: str, problem: str) -> None:
        self.text = text
        self.problem = problem
        super().__init__(f"cannot use {_show(text)} as an address: {problem}")


class InvalidPublicKey(InvalidInput):
    """Bytes that are not a secp256k1 public key in one of the accepted encodings."""

    code = "public_key.invalid"

    def __init__(self, problem: str) -> None:
        self.problem = problem
        super().__init__(
            f"not a secp256k1 public key: {problem}; expected 33 bytes (compressed, 02/03 "
            "prefix), 65 bytes (uncompressed, 04 prefix) or 64 bytes (raw x || y)"
        )


def _show(text: str) -> str:
    """Quote user text for a message: escaped (no control characters reach logs) and cut short."""
    if len(text) > _SHOWN_CHARS:
        return repr(text[:_SHOWN_CHARS]) + f"… ({len(text)} characters)"
    return repr(text)


# ---------------------------------------------------------------------------------------------
# From a public key
# ---------------------------------------------------------------------------------------------


def _load_public_key(pubkey: bytes) -> coincurve.PublicKey:
    """Parse and curve-check a public key in any accepted encoding."""
    raw = bytes(pubkey)
    if len(raw) == 64:
        raw = b"\x04" + raw
    # libsecp256k1 also parses the "hybrid" 06/07 encodings; nothing legitimate produces them,
    # so the prefix is checked here rather than left to the library.
    if len(raw) == 33 and raw[0] not in (2, 3):
        raise InvalidPublicKey(f"a 33-byte key starts with 02 or 03, this one with {raw[0]:02x}")
    if len(raw) == 65 and raw[0] != 4:
        raise InvalidPublicKey(f"a 65-byte key starts with 04, this one with {raw[0]:02x}")
    if len(raw) not in (33, 65):
        raise InvalidPublicKey(f"it is {len(pubkey)} bytes long")
    try:
        return coincurve.PublicKey(raw)
    except ValueError as exc:
        raise InvalidPublicKey("the point is not on the secp256k1 curve") from exc


def _evm_address_of(key: coincurve.PublicKey) -> ChecksumAddress:
    """EVM address: the last 20 bytes of keccak256 of the 64-byte uncompressed point."""
    uncompressed: bytes = key.format(compressed=False)
    return to_checksum_address(keccak(uncompressed[1:])[12:])


def _sei_address_of(key: coincurve.PublicKey) -> SeiAddress:
    """Sei address: bech32 of ripemd160(sha256(33-byte compressed key)), as Cosmos SDK secp256k1."""
    compressed: bytes = key.format(compressed=True)
    # pycryptodome rather than hashlib: OpenSSL 3 builds may leave RIPEMD-160 out of hashlib.
    payload = RIPEMD160.new(hashlib.sha256(compressed).digest()).digest()
    return _encode_sei(payload)


def evm_address_from_public_key(pubkey: bytes) -> ChecksumAddress:
    """The EIP-55 EVM address of a secp256k1 public key (33, 65 or 64 bytes)."""
    return _evm_address_of(_load_public_key(pubkey))


def sei_address_from_public_key(pubkey: bytes) -> SeiAddress:
    """The ``sei1…`` account address of a secp256k1 public key (33, 65 or 64 bytes)."""
    return _sei_address_of(_load_public_key(pubkey))


@dataclass(frozen=True, slots=True)
class AddressPair:
    """Both addresses of one Sei account: the same key seen by the EVM and by Sei's native side."""

    evm: ChecksumAddress
    sei: SeiAddress

    def __post_init__(self) -> None:
        """Hold only canonical forms, so pairs compare, hash and look up reliably."""
        try:
            canonical = (
                parse_evm_address(self.evm) == self.evm
                and len(decode_sei_address(self.sei)) == SEI_ACCOUNT_PAYLOAD_BYTES
                and parse_sei_address(self.sei) == self.sei
            )
        except InvalidAddress as exc:
            raise ValueError(f"not an address pair: {exc.problem}") from exc
        if not canonical:
            raise ValueError(
                f"an address pair holds a checksummed 0x address and a lowercase sei1 account "
                f"address, not {self.evm!r} and {self.sei!r}"
            )

    @classmethod
    def from_public_key(cls, pubkey: bytes) -> AddressPair:
        """Derive both addresses of the account that owns ``pubkey`` (33, 65 or 64 bytes)."""
        key = _load_public_key(pubkey)
        return cls(evm=_evm_address_of(key), sei=_sei_address_of(key))


def associations(pairs: Iterable[AddressPair]) -> dict[SeiAddress, ChecksumAddress]:
    """A Sei → EVM mapping of known pairs, ready to pass to :func:`parse_address` as ``known``."""
    return {pair.sei: pair.evm for pair in pairs}


# ---------------------------------------------------------------------------------------------
# From text
# ---------------------------------------------------------------------------------------------


def _first_outside(text: str, allowed: Iterable[str]) -> tuple[int, str] | None:
    """The 0-based position and character of the first character not in ``allowed``, if any."""
    allowed_set = set(allowed)
    for index, char in enumerate(text):
        if char not in allowed_set:
            return index, char
    return None


def _clean(text: str) -> str:
    """Drop the whitespace that copying and pasting adds around an address."""
    return text.strip()


def parse_evm_address(text: str) -> ChecksumAddress:
    """Check a typed or pasted ``0x`` address and return it EIP-55 checksummed.

    All-lowercase and all-uppercase hex carry no checksum and are accepted; mixed case is a
    checksum, and a wrong one is refused because it means a character was mistyped.
    """
    cleaned = _clean(text)
    if not cleaned:
        raise InvalidAddress(text, f"it is empty; {_EVM_SHAPE}")
    if len(cleaned) > _MAX_INPUT_CHARS:
        raise InvalidAddress(text, f"it is {len(cleaned)} characters long; {_EVM_SHAPE}")
    if cleaned.lower().startswith(SEI_HRP + "1"):
        raise InvalidAddress(
            text, f"this is a Sei (sei1…) address, but an EVM address is needed; {_EVM_SHAPE}"
        )
    if not cleaned.startswith("0x"):
        if cleaned.startswith("0X"):
            problem = "the prefix must be a lowercase '0x'"
        elif len(cleaned) == 40 and _first_outside(cleaned, _HEX_DIGITS) is None:
            problem = "the '0x' prefix is missing"
        else:
            problem = "it does not start with '0x'"
        raise InvalidAddress(text, f"{problem}; {_EVM_SHAPE}")
    body = cleaned[2:]
    bad = _first_outside(body, _HEX_DIGITS)
    if bad is not None:
        index, char = bad
        raise InvalidAddress(
            text,
            f"character {index + 3} is {char!r}, which is not a hexadecimal digit; {_EVM_SHAPE}",
        )
    if len(body) != 40:
        raise InvalidAddress(
            text, f"it has {len(body)} hex digits after '0x' instead of 40; {_EVM_SHAPE}"
        )
    checksummed = to_checksum_address(cleaned)
    if body not in (body.lower(), body.upper()) and cleaned != checksummed:
        raise InvalidAddress(
            text,
            "its mix of upper- and lowercase letters does not match its EIP-55 checksum, so "
            "at least one character is wrong; copy the address again from its source",
        )
    return checksummed


def _encode_sei(payload: bytes) -> SeiAddress:
    """Bech32-encode a payload under the ``sei`` prefix."""
    words = bech32.convertbits(payload, 8, 5, True)
    if words is None:  # pragma: no cover - 8 → 5 bits with padding cannot fail
        raise AssertionError("bech32.convertbits refused a byte string")
    return SeiAddress(bech32.bech32_encode(SEI_HRP, words))


def decode_sei_address(text: str) -> bytes:
    """The payload of a ``sei1…`` address: 20 bytes for an account, 32 for a contract."""
    cleaned = _clean(text)
    if not cleaned:
        raise InvalidAddress(text, f"it is empty; {_SEI_SHAPE}")
    if len(cleaned) > _MAX_INPUT_CHARS:
        raise InvalidAddress(text, f"it is {len(cleaned)} characters long; {_SEI_SHAPE}")
    if cleaned[:2] in ("0x", "0X"):
        raise InvalidAddress(
            text, f"this is an EVM (0x) address, but a Sei address is needed; {_SEI_SHAPE}"
        )
    # Bech32 is case-insensitive as a whole, but a mix of cases is refused (BIP-173).
    if cleaned not in (cleaned.lower(), cleaned.upper()):
        raise InvalidAddress(
            text, f"it mixes upper- and lowercase letters; {_SEI_SHAPE}, all in one case"
        )
    lowered = cleaned.lower()
    separator = lowered.rfind("1")
    if separator < 1:
        raise InvalidAddress(text, f"it has no 'sei1' prefix; {_SEI_SHAPE}")
    prefix = lowered[:separator]
    if prefix != SEI_HRP:
        raise InvalidAddress(
            text, f"its prefix is {prefix!r}, the address of another chain; {_SEI_SHAPE}"
        )
    data_part = lowered[separator + 1 :]
    bad = _first_outside(data_part, _BECH32_CHARSET)
    if bad is not None:
        index, char = bad
        raise InvalidAddress(
            text,
            f"character {separator + index + 2} is {char!r}, which bech32 never uses "
            f"(it leaves out '1', 'b', 'i' and 'o' after the prefix); {_SEI_SHAPE}",
        )
    if len(data_part) <= _BECH32_CHECKSUM_CHARS:
        raise InvalidAddress(text, f"it is too short to hold an address; {_SEI_SHAPE}")
    words = [_BECH32_CHARSET.index(char) for char in data_part]
    if not bech32.bech32_verify_checksum(prefix, words):
        raise InvalidAddress(
            text,
            "its bech32 checksum does not match, so at least one character is wrong; "
            "copy the address again from its source",
        )
    decoded = bech32.convertbits(words[:-_BECH32_CHECKSUM_CHARS], 5, 8, False)
    if decoded is None:
        raise InvalidAddress(text, f"its data does not decode to whole bytes; {_SEI_SHAPE}")
    payload = bytes(decoded)
    if len(payload) not in (SEI_ACCOUNT_PAYLOAD_BYTES, SEI_CONTRACT_PAYLOAD_BYTES):
        raise InvalidAddress(
            text,
            f"it carries {len(payload)} bytes, but a Sei address carries "
            f"{SEI_ACCOUNT_PAYLOAD_BYTES} (an account) or {SEI_CONTRACT_PAYLOAD_BYTES} "
            "(a contract)",
        )
    return payload


def parse_sei_address(text: str) -> SeiAddress:
    """Check a typed or pasted ``sei1…`` address (account or contract) and return it lowercase."""
    return _encode_sei(decode_sei_address(text))


def _resolve(sei: SeiAddress, known: SeiAddressResolver) -> str | None:
    """Look the EVM counterpart of ``sei`` up in a mapping or ask a resolver function."""
    if isinstance(known, Mapping):
        return known.get(sei)
    return known(sei)


def parse_address(text: str, *, known: SeiAddressResolver | None = None) -> ChecksumAddress:
    """Accept either form wherever a person types an account, and return the EVM address.

    A ``0x`` address is checked by :func:`parse_evm_address`. A ``sei1`` address is checked,
    then mapped through ``known`` (a Sei → EVM mapping, such as :func:`associations` builds, or
    a resolver function); without a known counterpart it is refused, because the EVM address
    cannot be computed from the Sei address alone.
    """
    cleaned = _clean(text)
    if not cleaned.lower().startswith(SEI_HRP + "1"):
        looks_evm = cleaned[:2].lower() == "0x" or (
            len(cleaned) == 40 and _first_outside(cleaned, _HEX_DIGITS) is None
        )
        if looks_evm:
            return parse_evm_address(text)
        what = "it is empty" if not cleaned else "it is neither form of address"
        raise InvalidAddress(text, f"{what}; {_EVM_SHAPE}, and {_SEI_SHAPE}")
    payload = decode_sei_address(text)
    sei = _encode_sei(payload)
    if len(payload) == SEI_CONTRACT_PAYLOAD_BYTES:
        raise InvalidAddress(
            text,
            "this is the Sei address of a CosmWasm contract, which has no EVM address; "
            "enter the 0x address of the contract's EVM pointer instead",
        )
    counterpart = _resolve(sei, known) if known is not None else None
    if counterpart is None:
        raise InvalidAddress(
            text,
            "this sei1 address has no known EVM (0x) counterpart yet: the EVM address cannot "
            "be computed from the sei1 address until the account's public key is known, so "
            "enter the account's 0x address instead",
        )
    try:
        return parse_evm_address(counterpart)
    except InvalidAddress as exc:
        # The association data, not the person typing, is wrong: that is a bug, not bad input.
        raise ValueError(
            f"the EVM counterpart recorded for {sei} is not an EVM address: {exc.problem}"
        ) from exc


def is_zero_address(address: str) -> bool:
    """Whether ``address`` is the EVM zero address (burns, mints and unset fields use it)."""
    return address.strip().lower() == ZERO_ADDRESS.lower()
