"""Intents: what a user asks the signer to sign, typed, versioned and encoded one way only.

An intent is a frozen value naming *what* is to happen (pay this invoice, send this much to that
address), never the bytes to sign: the signer derives those itself (:func:`signing_hash`), so
what the user saw and approved is exactly what gets signed. Every intent has

* a JSON form (:meth:`to_json` / :func:`parse_intent`), ``{"kind": …, "version": 1, …fields}``,
  in which every uint256 is a decimal string without sign or leading zero, every byte string is
  ``0x`` + lowercase hex, every address is EIP-55 checksummed and only small counters
  (``version``, ``operation``, ``expected_version``) are JSON integers. The parser accepts that
  form and nothing else — no unknown kind, version or field, no other spelling of a value — so
  ``to_json(parse_intent(d)) == d`` for every ``d`` it accepts;
* one canonical encoding (:func:`canonical_bytes`): the JSON form serialised with keys sorted by
  code point, no whitespace, non-ASCII characters written as themselves, UTF-8 encoded.
  Floats never occur (refused in the opaque documents too) and integers in those documents are
  limited to ±(2**53-1), so the bytes equal RFC 8785 (JCS) output whenever keys stay in the
  Basic Multilingual Plane, and ``JSON.stringify`` with sorted keys reproduces them on a phone;
* a digest (:func:`intent_digest`), ``sha256(b"seiwallet.intent.v1\\x00" + canonical)``: what
  approvals sign (inside their challenge, see :mod:`seiwallet.signer.approvals`).

The kinds and what the wallet key signs for each (:func:`signing_hash`):

====================  ====================================================================
``erc3009.transfer``  EIP-712 ``TransferWithAuthorization`` (from = wallet) in the token's domain
``router.pay``        EIP-712 ``ReceiveWithAuthorization`` to the router, nonce = the router's
                      hash of the payment's terms (:func:`seiwallet.chain.router.payment_nonce`)
``router.refund``     the same for a refund, signed by the merchant's wallet
``safe.sign``         the Safe (1.3.0 / 1.4.1) ``SafeTx`` EIP-712 hash
``message.sign``      EIP-191 personal message hash, or EIP-712 typed-data digest
``policy.update``     nothing on chain: the signer replaces the wallet's policy
``key.export``        nothing on chain: the signer exports the key, encrypted to the recipient
====================  ====================================================================
"""

from __future__ import annotations

import functools
import hashlib
import json
import re
import unicodedata
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, ClassVar, Final, TypeAlias
from urllib.parse import urlsplit

import orjson
from eth_abi.abi import encode as abi_encode
from eth_account.messages import SignableMessage, encode_defunct, encode_typed_data
from eth_utils.address import to_checksum_address
from eth_utils.crypto import keccak

from seiwallet.chain.router import (
    Payment,
    Refund,
    payment_authorization,
    refund_authorization,
)
from seiwallet.chain.tokens import (
    RECEIVE_WITH_AUTHORIZATION,
    TRANSFER_WITH_AUTHORIZATION,
    TokenDomain,
    authorization_digest,
)
from seiwallet.errors import InvalidInput
from seiwallet.signer.errors import IntentInvalid
from seiwallet.signer.keccak import keccak256
from seiwallet.signer.policy import Spend

__all__ = [
    "EXPORT_CURVES",
    "INTENT_DIGEST_DOMAIN",
    "INTENT_TYPES",
    "SAFE_DOMAIN_TYPEHASH",
    "SAFE_TX_TYPEHASH",
    "SAFE_VERSIONS",
    "Erc3009Transfer",
    "Intent",
    "KeyExport",
    "MessageSign",
    "PolicyUpdate",
    "RouterPay",
    "RouterRefund",
    "SafeSign",
    "Spend",
    "canonical_bytes",
    "describe",
    "intent_digest",
    "parse_intent",
    "parse_intent_with_digest",
    "signing_hash",
    "spend",
    "transfer_signing_hash",
]

#: Prefix of every intent digest: the NUL ends the label, so no other hashed format of ours
#: (approvals use ``seiwallet.approval.v1``) can produce the same preimage.
INTENT_DIGEST_DOMAIN: Final = b"seiwallet.intent.v1\x00"

#: Safe ≥ 1.3.0: ``keccak256("EIP712Domain(uint256 chainId,address verifyingContract)")``.
SAFE_DOMAIN_TYPEHASH: Final = keccak(text="EIP712Domain(uint256 chainId,address verifyingContract)")
#: ``keccak256`` of the ``SafeTx`` type, the same in Safe 1.3.0 and 1.4.1.
SAFE_TX_TYPEHASH: Final = keccak(
    text="SafeTx(address to,uint256 value,bytes data,uint8 operation,uint256 safeTxGas,"
    "uint256 baseGas,uint256 gasPrice,address gasToken,address refundReceiver,uint256 nonce)"
)
#: Safe versions whose ``getTransactionHash`` is the EIP-712 hash computed here. Earlier
#: versions have another domain (no chain id) and are refused rather than signed wrongly.
SAFE_VERSIONS: Final = ("1.3.0", "1.4.1")

#: Curves a key may be exported to (the names :mod:`seiwallet.signer.export` uses; not imported
#: from there, which would load the key store into every process that builds intents).
EXPORT_CURVES: Final = ("P-256", "secp256k1")

#: EIP-712 primary types a dApp may not ask for through ``message.sign``: they move this
#: wallet's money or a Safe's, and must come as their own intents so that the policy sees the
#: spend and the user sees what it is. (A token verifies the type *name* as part of its
#: typehash, so renaming the type would make the signature worthless.)
_RESERVED_PRIMARY_TYPES: Final = frozenset(
    {
        TRANSFER_WITH_AUTHORIZATION,
        RECEIVE_WITH_AUTHORIZATION,
        "CancelAuthorization",
        "SafeTx",
    }
)

#: ``keccak256`` of EIP-3009's ``TransferWithAuthorization`` type.
_TRANSFER_TYPEHASH: Final = keccak(
    text=f"{TRANSFER_WITH_AUTHORIZATION}(address from,address to,uint256 value,"
    "uint256 validAfter,uint256 validBefore,bytes32 nonce)"
)
_ADDRESS_PAD: Final = bytes(12)  # an address is the low 20 bytes of its ABI word

_UINT256_MAX: Final = 2**256 - 1
# Opaque JSON (typed data, policies) keeps integers where JavaScript and RFC 8785 agree.
_JSON_SAFE_INT: Final = 2**53 - 1
_MAX_JSON_DEPTH: Final = 32
_MAX_TEXT_CHARS: Final = 256
_MAX_DATA_BYTES: Final = 128 * 1024
_MAX_MESSAGE_BYTES: Final = 64 * 1024
_MIN_RECIPIENT_KEY_BYTES: Final = 33  # a compressed SEC1 point
_MAX_RECIPIENT_KEY_BYTES: Final = 256
_OPERATION_CALL: Final = 0
_OPERATION_DELEGATECALL: Final = 1

_DECIMAL: Final = re.compile(r"0|[1-9][0-9]{0,77}")
_ADDRESS_SHAPE: Final = re.compile(r"0x[0-9a-fA-F]{40}")
_HEX_BYTES: Final = re.compile(r"0x(?:[0-9a-f]{2})*")


# -- checks on Python values (constructors) ---------------------------------------------------


def _fail(kind: str, where: str, problem: str) -> IntentInvalid:
    return IntentInvalid(f"{kind} intent: {where} {problem}")


@functools.lru_cache(maxsize=65_536)
def _checksummed(text: str) -> str | None:
    """The EIP-55 form of ``0x`` + 40 hex digits in any case, or ``None`` for another shape.

    Memoised because checksumming costs tens of µs and the same tokens, routers and merchants
    recur in every batch; the key is the exact input text, so a hit returns what a miss would.
    """
    if not _ADDRESS_SHAPE.fullmatch(text):
        return None
    return str(to_checksum_address(text))


def _address(kind: str, where: str, value: object) -> str:
    checksummed = _checksummed(value) if isinstance(value, str) else None
    if checksummed is None:
        raise _fail(kind, where, f"must be a 0x-prefixed 20-byte address, not {_show(value)}")
    body = str(value)[2:]
    # Mixed case is a checksum, and a wrong one means a mistyped character: an error, not a
    # guess. (eth-utils' is_address no longer checks this.)
    if value != checksummed and body not in (body.lower(), body.upper()):
        raise _fail(kind, where, f"does not match its EIP-55 checksum: {value} has a typo")
    return checksummed


def _nonzero_address(kind: str, where: str, value: object) -> str:
    address = _address(kind, where, value)
    if int(address, 16) == 0:
        raise _fail(kind, where, "cannot be the zero address")
    return address


def _uint(kind: str, where: str, value: object, *, positive: bool = False) -> int:
    if type(value) is not int or not 0 <= value <= _UINT256_MAX:
        raise _fail(kind, where, f"must be an integer from 0 to 2**256-1, not {_show(value)}")
    if positive and value == 0:
        raise _fail(kind, where, "must be positive")
    return value


def _small_int(kind: str, where: str, value: object, low: int, high: int) -> int:
    if type(value) is not int or not low <= value <= high:
        raise _fail(kind, where, f"must be an integer from {low} to {high}, not {_show(value)}")
    return value


def _bytes(kind: str, where: str, value: object, *, low: int, high: int) -> bytes:
    if not isinstance(value, bytes | bytearray | memoryview):
        raise _fail(kind, where, f"must be bytes, not {type(value).__name__}")
    raw = bytes(value)
    if not low <= len(raw) <= high:
        size = f"exactly {low}" if low == high else f"{low} to {high}"
        raise _fail(kind, where, f"must be {size} bytes long, not {len(raw)}")
    return raw


def _text(kind: str, where: str, value: object) -> str:
    if not isinstance(value, str) or not value:
        raise _fail(kind, where, f"must be a non-empty string, not {_show(value)}")
    if len(value) > _MAX_TEXT_CHARS:
        raise _fail(kind, where, f"must be at most {_MAX_TEXT_CHARS} characters")
    # Control and format characters (newlines, bidi overrides, zero-width joiners) could make a
    # token's name read as another's on the approval screen; no real token needs them.
    for char in value:
        if unicodedata.category(char) in ("Cc", "Cf", "Cs"):
            raise _fail(kind, where, f"contains the invisible character U+{ord(char):04X}")
    return value


def _window(kind: str, valid_after: object, valid_before: object) -> None:
    after = _uint(kind, "valid_after", valid_after)
    before = _uint(kind, "valid_before", valid_before)
    # EIP-3009 tokens accept only after < now < before: an empty window can never settle.
    if before <= after:
        raise _fail(kind, "valid_before", "must be later than valid_after")


def _domain(kind: str, value: object) -> TokenDomain:
    if not isinstance(value, TokenDomain):
        raise _fail(kind, "token", f"must be a TokenDomain, not {type(value).__name__}")
    return TokenDomain(
        name=_text(kind, "token.name", value.name),
        version=_text(kind, "token.version", value.version),
        chain_id=_chain_id(kind, "token.chain_id", value.chain_id),
        verifying_contract=_nonzero_address(
            kind, "token.verifying_contract", value.verifying_contract
        ),
    )


def _chain_id(kind: str, where: str, value: object) -> int:
    return _uint(kind, where, value, positive=True)


def _freeze_json(kind: str, where: str, value: object, depth: int = 0) -> Any:
    """A deep, immutable copy of a JSON value, refusing what has no single canonical form."""
    if depth > _MAX_JSON_DEPTH:
        raise _fail(kind, where, f"is nested deeper than {_MAX_JSON_DEPTH} levels")
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, int):
        if not -_JSON_SAFE_INT <= value <= _JSON_SAFE_INT:
            raise _fail(kind, where, "holds an integer beyond 2**53-1; write it as a string")
        return value
    if isinstance(value, float):
        raise _fail(kind, where, "holds a floating-point number; write it as a string")
    if isinstance(value, str):
        _encodable(kind, where, value)
        return value
    if isinstance(value, list | tuple):
        return tuple(
            _freeze_json(kind, f"{where}[{i}]", item, depth + 1) for i, item in enumerate(value)
        )
    if isinstance(value, Mapping):
        frozen: dict[str, Any] = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise _fail(kind, where, f"has a non-string key {_show(key)}")
            _encodable(kind, where, key)
            frozen[key] = _freeze_json(kind, f"{where}.{key}", item, depth + 1)
        return MappingProxyType(frozen)
    raise _fail(kind, where, f"holds a {type(value).__name__}, which is not JSON")


def _thaw_json(value: Any) -> Any:
    """A fresh mutable copy of a frozen JSON value (callers can change it without harm)."""
    if isinstance(value, MappingProxyType):
        return {key: _thaw_json(item) for key, item in value.items()}
    if isinstance(value, tuple):
        return [_thaw_json(item) for item in value]
    return value


def _encodable(kind: str, where: str, text: str) -> None:
    # json.loads accepts lone surrogates ("\ud800"); they have no UTF-8 encoding.
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise _fail(kind, where, "holds a lone surrogate, which has no UTF-8 form") from None


def _show(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


# -- JSON codecs (the wire form: strict, one spelling per value) ------------------------------


@dataclass(frozen=True)
class _Codec:
    dump: Callable[[Any], Any]
    load: Callable[[str, str, Any], Any]  # (kind, where, raw) -> Python value


def _load_address(kind: str, where: str, raw: Any) -> str:
    checksummed = _checksummed(raw) if isinstance(raw, str) else None
    if checksummed is None:
        raise _fail(kind, where, f"must be a 0x-prefixed 20-byte address, not {_show(raw)}")
    if raw != checksummed:
        raise _fail(kind, where, f"must be written with its EIP-55 checksum ({_show(raw)})")
    return checksummed


def _load_uint256(kind: str, where: str, raw: Any) -> int:
    if not isinstance(raw, str) or not _DECIMAL.fullmatch(raw):
        raise _fail(
            kind,
            where,
            f"must be a decimal string without sign or leading zeros, not {_show(raw)}",
        )
    value = int(raw)
    if value > _UINT256_MAX:
        raise _fail(kind, where, "exceeds 2**256-1")
    return value


def _load_hex(kind: str, where: str, raw: Any) -> bytes:
    if not isinstance(raw, str) or not _HEX_BYTES.fullmatch(raw):
        raise _fail(kind, where, f"must be 0x followed by lowercase hex bytes, not {_show(raw)}")
    return bytes.fromhex(raw[2:])


def _load_int(kind: str, where: str, raw: Any) -> int:
    if type(raw) is not int:
        raise _fail(kind, where, f"must be a JSON integer, not {_show(raw)}")
    return raw


def _load_str(kind: str, where: str, raw: Any) -> str:
    if not isinstance(raw, str):
        raise _fail(kind, where, f"must be a string, not {_show(raw)}")
    return raw


def _load_object(kind: str, where: str, raw: Any) -> Mapping[str, Any]:
    if not isinstance(raw, Mapping):
        raise _fail(kind, where, f"must be a JSON object, not {type(raw).__name__}")
    return raw


_DOMAIN_KEYS: Final = ("name", "version", "chain_id", "verifying_contract")


def _dump_domain(domain: TokenDomain) -> dict[str, Any]:
    return {
        "name": domain.name,
        "version": domain.version,
        "chain_id": str(domain.chain_id),
        "verifying_contract": domain.verifying_contract,
    }


def _load_domain(kind: str, where: str, raw: Any) -> TokenDomain:
    data = _load_object(kind, where, raw)
    _exact_keys(kind, data, _DOMAIN_KEYS, (), prefix=f"{where}.")
    return TokenDomain(
        name=_load_str(kind, f"{where}.name", data["name"]),
        version=_load_str(kind, f"{where}.version", data["version"]),
        chain_id=_load_uint256(kind, f"{where}.chain_id", data["chain_id"]),
        verifying_contract=_load_address(
            kind, f"{where}.verifying_contract", data["verifying_contract"]
        ),
    )


def _exact_keys(
    kind: str,
    data: Mapping[str, Any],
    required: tuple[str, ...],
    optional: tuple[str, ...],
    *,
    prefix: str = "",
) -> None:
    for key in data:
        if key not in required and key not in optional:
            raise _fail(kind, f"{prefix}{key}", "is not a field of this intent")
    for key in required:
        if key not in data:
            raise _fail(kind, f"{prefix}{key}", "is missing")


_ADDRESS: Final = _Codec(lambda v: v, _load_address)
_UINT256: Final = _Codec(str, _load_uint256)
_HEX: Final = _Codec(lambda v: "0x" + v.hex(), _load_hex)
_INT: Final = _Codec(lambda v: v, _load_int)
_STR: Final = _Codec(lambda v: v, _load_str)
_DOMAIN: Final = _Codec(_dump_domain, _load_domain)
_OBJECT: Final = _Codec(_thaw_json, _load_object)


# -- the intents -----------------------------------------------------------------------------


class _IntentBase:
    """What every intent kind shares: its name, version and the codecs of its JSON fields."""

    KIND: ClassVar[str]
    VERSION: ClassVar[int] = 1
    #: JSON field (= attribute) name → codec, in documentation order.
    _FIELDS: ClassVar[Mapping[str, _Codec]]
    #: Fields that may be absent (``None``); absent from the JSON then, never ``null``.
    _OPTIONAL: ClassVar[tuple[str, ...]] = ()

    def to_json(self) -> dict[str, Any]:
        """The intent's JSON form (a fresh dict): what :func:`parse_intent` reads back."""
        data: dict[str, Any] = {"kind": self.KIND, "version": self.VERSION}
        for name, codec in self._FIELDS.items():
            value = getattr(self, name)
            if value is not None:
                data[name] = codec.dump(value)
        return data

    def describe(self) -> str:
        """One line for people; see :func:`describe`."""
        raise NotImplementedError


@dataclass(frozen=True)
class Erc3009Transfer(_IntentBase):
    """Send ``amount_units`` of a token to ``to`` by EIP-3009 ``transferWithAuthorization``.

    ``nonce`` is a random bytes32 chosen by the caller (the token refuses a second use);
    ``amount_units`` is EIP-3009's ``value``.
    """

    KIND: ClassVar[str] = "erc3009.transfer"
    _FIELDS: ClassVar[Mapping[str, _Codec]] = {
        "token": _DOMAIN,
        "to": _ADDRESS,
        "amount_units": _UINT256,
        "valid_after": _UINT256,
        "valid_before": _UINT256,
        "nonce": _HEX,
    }

    token: TokenDomain
    to: str
    amount_units: int
    valid_after: int
    valid_before: int
    nonce: bytes

    def __post_init__(self) -> None:
        kind = self.KIND
        object.__setattr__(self, "token", _domain(kind, self.token))
        # FiatToken reverts transfers to the zero address; refusing here saves an approval.
        object.__setattr__(self, "to", _nonzero_address(kind, "to", self.to))
        _uint(kind, "amount_units", self.amount_units, positive=True)
        _window(kind, self.valid_after, self.valid_before)
        object.__setattr__(self, "nonce", _bytes(kind, "nonce", self.nonce, low=32, high=32))

    def describe(self) -> str:
        """One line for people; see :func:`describe`."""
        return (
            f"Send {self.amount_units} units of {_domain_parts(self.token)[2]} "
            f"to {_short(self.to)} on chain {self.token.chain_id}"
        )


@dataclass(frozen=True)
class RouterPay(_IntentBase):
    """Pay invoice ``invoice_id`` to ``merchant`` through the payment router.

    The payer pays ``amount_units``; the merchant receives it minus ``fee_units``. The EIP-3009
    nonce is not a field: :func:`signing_hash` computes it as the router does, from these very
    terms, so the signature can settle this payment and nothing else.
    """

    KIND: ClassVar[str] = "router.pay"
    _FIELDS: ClassVar[Mapping[str, _Codec]] = {
        "token": _DOMAIN,
        "router": _ADDRESS,
        "invoice_id": _HEX,
        "merchant": _ADDRESS,
        "amount_units": _UINT256,
        "fee_units": _UINT256,
        "valid_after": _UINT256,
        "valid_before": _UINT256,
    }

    token: TokenDomain
    router: str
    invoice_id: bytes
    merchant: str
    amount_units: int
    fee_units: int
    valid_after: int
    valid_before: int

    def __post_init__(self) -> None:
        kind = self.KIND
        object.__setattr__(self, "token", _domain(kind, self.token))
        object.__setattr__(self, "router", _nonzero_address(kind, "router", self.router))
        object.__setattr__(
            self, "invoice_id", _bytes(kind, "invoice_id", self.invoice_id, low=32, high=32)
        )
        object.__setattr__(self, "merchant", _nonzero_address(kind, "merchant", self.merchant))
        _uint(kind, "amount_units", self.amount_units, positive=True)
        _uint(kind, "fee_units", self.fee_units)
        if self.fee_units > self.amount_units:
            raise _fail(kind, "fee_units", "cannot exceed amount_units")
        # These are the router's own checks (``Payment``): nothing unpayable gets approved.
        _window(kind, self.valid_after, self.valid_before)

    def payment(self) -> Payment:
        """The router's ``Payment`` these terms describe."""
        try:
            return Payment(
                invoice_id=self.invoice_id,
                merchant=self.merchant,
                token=self.token.verifying_contract,
                amount_units=self.amount_units,
                fee_units=self.fee_units,
            )
        except InvalidInput as exc:
            raise _fail(self.KIND, "terms", str(exc)) from None

    def describe(self) -> str:
        """One line for people; see :func:`describe`."""
        return (
            f"Pay {self.amount_units} units of {_token(self.token)} "
            f"to {_short(self.merchant)} for invoice {_short(self.invoice_id)} "
            f"(fee {self.fee_units} units)"
        )


@dataclass(frozen=True)
class RouterRefund(_IntentBase):
    """Refund ``amount_units`` of a settled router payment to its ``payer``.

    Signed by the merchant's wallet: the payment's terms (``invoice_id``, ``merchant``,
    ``payment_amount_units``, ``payment_fee_units``, token, router, chain) name the payment,
    ``refund_id`` makes the refund single-use.
    """

    KIND: ClassVar[str] = "router.refund"
    _FIELDS: ClassVar[Mapping[str, _Codec]] = {
        "token": _DOMAIN,
        "router": _ADDRESS,
        "invoice_id": _HEX,
        "merchant": _ADDRESS,
        "payment_amount_units": _UINT256,
        "payment_fee_units": _UINT256,
        "payer": _ADDRESS,
        "refund_id": _HEX,
        "amount_units": _UINT256,
        "valid_after": _UINT256,
        "valid_before": _UINT256,
    }

    token: TokenDomain
    router: str
    invoice_id: bytes
    merchant: str
    payment_amount_units: int
    payment_fee_units: int
    payer: str
    refund_id: bytes
    amount_units: int
    valid_after: int
    valid_before: int

    def __post_init__(self) -> None:
        kind = self.KIND
        object.__setattr__(self, "token", _domain(kind, self.token))
        object.__setattr__(self, "router", _nonzero_address(kind, "router", self.router))
        object.__setattr__(
            self, "invoice_id", _bytes(kind, "invoice_id", self.invoice_id, low=32, high=32)
        )
        object.__setattr__(self, "merchant", _nonzero_address(kind, "merchant", self.merchant))
        _uint(kind, "payment_amount_units", self.payment_amount_units, positive=True)
        _uint(kind, "payment_fee_units", self.payment_fee_units)
        if self.payment_fee_units > self.payment_amount_units:
            raise _fail(kind, "payment_fee_units", "cannot exceed payment_amount_units")
        object.__setattr__(self, "payer", _nonzero_address(kind, "payer", self.payer))
        object.__setattr__(
            self, "refund_id", _bytes(kind, "refund_id", self.refund_id, low=32, high=32)
        )
        _uint(kind, "amount_units", self.amount_units, positive=True)
        if self.amount_units > self.payment_amount_units:
            raise _fail(kind, "amount_units", "cannot exceed the amount paid")
        # These are the router's own checks (``Refund``): nothing unrefundable gets approved.
        _window(kind, self.valid_after, self.valid_before)

    def refund(self) -> Refund:
        """The router's ``Refund`` these terms describe."""
        try:
            payment = Payment(
                invoice_id=self.invoice_id,
                merchant=self.merchant,
                token=self.token.verifying_contract,
                amount_units=self.payment_amount_units,
                fee_units=self.payment_fee_units,
            )
            return Refund(
                payment=payment,
                payer=self.payer,
                refund_id=self.refund_id,
                amount_units=self.amount_units,
            )
        except InvalidInput as exc:
            raise _fail(self.KIND, "terms", str(exc)) from None

    def describe(self) -> str:
        """One line for people; see :func:`describe`."""
        return (
            f"Refund {self.amount_units} units of {_token(self.token)} "
            f"to {_short(self.payer)} for invoice {_short(self.invoice_id)}"
        )


@dataclass(frozen=True)
class SafeSign(_IntentBase):
    """Sign, as one owner, a Safe transaction: its fields as ``execTransaction`` takes them.

    ``value`` is in the chain's native unit (wei); ``operation`` 1 is a DELEGATECALL, which runs
    ``to``'s code with the Safe's storage and can do anything to the Safe.
    """

    KIND: ClassVar[str] = "safe.sign"
    _FIELDS: ClassVar[Mapping[str, _Codec]] = {
        "safe": _ADDRESS,
        "chain_id": _UINT256,
        "to": _ADDRESS,
        "value": _UINT256,
        "data": _HEX,
        "operation": _INT,
        "safe_tx_gas": _UINT256,
        "base_gas": _UINT256,
        "gas_price": _UINT256,
        "gas_token": _ADDRESS,
        "refund_receiver": _ADDRESS,
        "nonce": _UINT256,
        "safe_version": _STR,
    }

    safe: str
    chain_id: int
    to: str
    value: int
    data: bytes
    operation: int
    safe_tx_gas: int
    base_gas: int
    gas_price: int
    gas_token: str
    refund_receiver: str
    nonce: int
    safe_version: str

    def __post_init__(self) -> None:
        kind = self.KIND
        object.__setattr__(self, "safe", _nonzero_address(kind, "safe", self.safe))
        _chain_id(kind, "chain_id", self.chain_id)
        object.__setattr__(self, "to", _address(kind, "to", self.to))
        _uint(kind, "value", self.value)
        object.__setattr__(
            self, "data", _bytes(kind, "data", self.data, low=0, high=_MAX_DATA_BYTES)
        )
        _small_int(kind, "operation", self.operation, _OPERATION_CALL, _OPERATION_DELEGATECALL)
        for name in ("safe_tx_gas", "base_gas", "gas_price", "nonce"):
            _uint(kind, name, getattr(self, name))
        object.__setattr__(self, "gas_token", _address(kind, "gas_token", self.gas_token))
        object.__setattr__(
            self, "refund_receiver", _address(kind, "refund_receiver", self.refund_receiver)
        )
        if self.safe_version not in SAFE_VERSIONS:
            raise _fail(kind, "safe_version", f"must be one of {', '.join(SAFE_VERSIONS)}")

    def safe_tx_hash(self) -> bytes:
        """The hash the Safe's ``getTransactionHash`` returns and its owners sign."""
        domain_separator = keccak(
            abi_encode(
                ["bytes32", "uint256", "address"],
                [SAFE_DOMAIN_TYPEHASH, self.chain_id, self.safe],
            )
        )
        struct_hash = keccak(
            abi_encode(
                [
                    "bytes32",
                    "address",
                    "uint256",
                    "bytes32",
                    "uint8",
                    "uint256",
                    "uint256",
                    "uint256",
                    "address",
                    "address",
                    "uint256",
                ],
                [
                    SAFE_TX_TYPEHASH,
                    self.to,
                    self.value,
                    keccak(self.data),
                    self.operation,
                    self.safe_tx_gas,
                    self.base_gas,
                    self.gas_price,
                    self.gas_token,
                    self.refund_receiver,
                    self.nonce,
                ],
            )
        )
        return keccak(b"\x19\x01" + domain_separator + struct_hash)

    def describe(self) -> str:
        """One line for people; see :func:`describe`."""
        call = "DELEGATECALL" if self.operation == _OPERATION_DELEGATECALL else "call"
        return (
            f"Approve Safe {_short(self.safe)} transaction #{self.nonce} on chain "
            f"{self.chain_id}: {call} {_short(self.to)} with {self.value} wei "
            f"and {len(self.data)} bytes of data"
        )


@dataclass(frozen=True)
class MessageSign(_IntentBase):
    """Sign a dApp's message: EIP-191 personal ``message`` bytes, or EIP-712 ``typed_data``.

    Exactly one of the two is given. ``origin`` is the requesting dApp's web origin
    (``https://app.example``), shown to the user and kept in the audit log. Typed data is held
    deep-frozen, so no caller can change it between validation and signing.
    """

    KIND: ClassVar[str] = "message.sign"
    _FIELDS: ClassVar[Mapping[str, _Codec]] = {
        "origin": _STR,
        "message": _HEX,
        "typed_data": _OBJECT,
    }
    _OPTIONAL: ClassVar[tuple[str, ...]] = ("message", "typed_data")

    origin: str
    message: bytes | None = None
    typed_data: Mapping[str, Any] | None = None
    _hash: bytes = field(init=False, repr=False, compare=False, default=b"")

    def __post_init__(self) -> None:
        kind = self.KIND
        object.__setattr__(self, "origin", _origin(kind, self.origin))
        if (self.message is None) == (self.typed_data is None):
            raise _fail(kind, "message", "or typed_data must be given, and not both")
        if self.message is not None:
            message = _bytes(kind, "message", self.message, low=0, high=_MAX_MESSAGE_BYTES)
            object.__setattr__(self, "message", message)
            object.__setattr__(self, "_hash", _signable_hash(encode_defunct(primitive=message)))
            return
        if not isinstance(self.typed_data, Mapping):
            raise _fail(kind, "typed_data", "must be a JSON object")
        frozen = _freeze_json(kind, "typed_data", self.typed_data)
        object.__setattr__(self, "typed_data", frozen)
        primary_type = frozen.get("primaryType")
        if primary_type in _RESERVED_PRIMARY_TYPES:
            raise _fail(
                kind,
                "typed_data.primaryType",
                f"{primary_type} moves money: ask for it as its own intent, not as a message",
            )
        try:
            signable = encode_typed_data(full_message=_thaw_json(frozen))
        except Exception as exc:  # eth-account raises many types for malformed typed data
            raise _fail(kind, "typed_data", f"is not valid EIP-712 typed data: {exc}") from None
        object.__setattr__(self, "_hash", _signable_hash(signable))

    @property
    def message_hash(self) -> bytes:
        """The EIP-191 hash the wallet key signs (``0x19 ‖ version ‖ header ‖ body``)."""
        return self._hash

    def describe(self) -> str:
        """One line for people; see :func:`describe`."""
        if self.message is not None:
            return f"Sign a {len(self.message)}-byte message for {_printable(self.origin)}"
        primary = (self.typed_data or {}).get("primaryType", "?")
        return f"Sign {_printable(str(primary))} typed data for {_printable(self.origin)}"


def _signable_hash(signable: SignableMessage) -> bytes:
    return keccak(b"\x19" + signable.version + signable.header + signable.body)


def _origin(kind: str, value: object) -> str:
    text = _text(kind, "origin", value)
    try:
        parts = urlsplit(text)
        canonical = f"{parts.scheme}://{parts.netloc}"
        hostname = parts.hostname
    except ValueError:
        hostname = None
    if (
        hostname is None
        or parts.scheme not in ("https", "http")
        or parts.username is not None
        or text != canonical
        or text != text.lower()
    ):
        raise _fail(
            kind, "origin", f"must be a lowercase web origin like https://app.example, not {text!r}"
        )
    return text


@dataclass(frozen=True)
class PolicyUpdate(_IntentBase):
    """Replace the wallet's policy with ``policy``, if it is still at ``expected_version``.

    The document is opaque here (the policy module validates it) but deep-frozen and limited to
    canonical JSON. ``expected_version`` makes a stale approval useless once the policy moved on.
    """

    KIND: ClassVar[str] = "policy.update"
    _FIELDS: ClassVar[Mapping[str, _Codec]] = {"policy": _OBJECT, "expected_version": _INT}

    policy: Mapping[str, Any]
    expected_version: int

    def __post_init__(self) -> None:
        kind = self.KIND
        if not isinstance(self.policy, Mapping):
            raise _fail(kind, "policy", "must be a JSON object")
        object.__setattr__(self, "policy", _freeze_json(kind, "policy", self.policy))
        _small_int(kind, "expected_version", self.expected_version, 0, _JSON_SAFE_INT)

    def describe(self) -> str:
        """One line for people; see :func:`describe`."""
        return f"Replace the wallet's policy (now at version {self.expected_version})"


@dataclass(frozen=True)
class KeyExport(_IntentBase):
    """Export the wallet's private key, encrypted to ``recipient_public_key`` (the user's own).

    The key is a SEC1 point or a DER SubjectPublicKeyInfo on ``curve`` (see
    :mod:`seiwallet.signer.export`, which checks the point when it encrypts). The curve is part
    of what is approved: the same point bytes mean different keys on different curves.
    """

    KIND: ClassVar[str] = "key.export"
    _FIELDS: ClassVar[Mapping[str, _Codec]] = {"recipient_public_key": _HEX, "curve": _STR}

    recipient_public_key: bytes
    curve: str = "P-256"

    def __post_init__(self) -> None:
        key = _bytes(
            self.KIND,
            "recipient_public_key",
            self.recipient_public_key,
            low=_MIN_RECIPIENT_KEY_BYTES,
            high=_MAX_RECIPIENT_KEY_BYTES,
        )
        object.__setattr__(self, "recipient_public_key", key)
        if self.curve not in EXPORT_CURVES:
            raise _fail(self.KIND, "curve", f"must be one of {', '.join(EXPORT_CURVES)}")

    def describe(self) -> str:
        """One line for people; see :func:`describe`."""
        return (
            f"Export the wallet's key, encrypted to {self.curve} key "
            f"{_short(self.recipient_public_key)}"
        )


Intent: TypeAlias = (
    Erc3009Transfer | RouterPay | RouterRefund | SafeSign | MessageSign | PolicyUpdate | KeyExport
)

#: Every intent type by ``(kind, version)``; a new version is a new entry, old ones stay.
INTENT_TYPES: Final[Mapping[tuple[str, int], type[Intent]]] = MappingProxyType(
    {
        (cls.KIND, cls.VERSION): cls
        for cls in (
            Erc3009Transfer,
            RouterPay,
            RouterRefund,
            SafeSign,
            MessageSign,
            PolicyUpdate,
            KeyExport,
        )
    }
)
_KINDS: Final = frozenset(kind for kind, _ in INTENT_TYPES)


# -- parsing, encoding, digests --------------------------------------------------------------


def parse_intent(data: Mapping[str, Any]) -> Intent:
    """Read an intent from its JSON form, refusing anything but that exact form.

    Raises :class:`IntentInvalid` naming the kind and the field at fault.
    """
    if not isinstance(data, Mapping):
        raise IntentInvalid(f"an intent must be a JSON object, not {type(data).__name__}")
    kind = data.get("kind")
    version = data.get("version")
    if not isinstance(kind, str) or kind not in _KINDS:
        known = ", ".join(sorted(_KINDS))
        raise IntentInvalid(f"unknown intent kind {_show(kind)}; this signer knows {known}")
    cls = INTENT_TYPES.get((kind, version)) if type(version) is int else None
    if cls is None:
        versions = sorted(v for k, v in INTENT_TYPES if k == kind)
        raise IntentInvalid(
            f"{kind} intent: version {_show(version)} is unknown; this signer knows {versions}"
        )
    fields = {name: value for name, value in data.items() if name not in ("kind", "version")}
    required = tuple(name for name in cls._FIELDS if name not in cls._OPTIONAL)
    _exact_keys(kind, fields, required, cls._OPTIONAL)
    values = {name: cls._FIELDS[name].load(kind, name, raw) for name, raw in fields.items()}
    # The codecs admit one spelling per value and the constructor checks the values, so the
    # result's JSON form is ``data`` itself: a digest never depends on how a client wrote it.
    return cls(**values)


def parse_intent_with_digest(data: Mapping[str, Any]) -> tuple[Intent, bytes]:
    """:func:`parse_intent` and :func:`intent_digest` together, as the signer needs them.

    An ``erc3009.transfer`` in its exact JSON form takes a lean path (:func:`_lean_transfer`);
    anything else, and anything the lean path is unsure of, goes through :func:`parse_intent`,
    which accepts the same intents and names the fault of the others.
    """
    lean = _lean_transfer(data)
    if lean is not None:
        intent, canonical = lean
        return intent, hashlib.sha256(INTENT_DIGEST_DOMAIN + canonical).digest()
    parsed = parse_intent(data)
    return parsed, intent_digest(parsed)


_TRANSFER_KEYS: Final = frozenset(("kind", "version", *Erc3009Transfer._FIELDS))
_ZERO_ADDRESS: Final = "0x" + "0" * 40
_TOKEN_KEYS: Final = frozenset(_DOMAIN_KEYS)


@functools.lru_cache(maxsize=4096)
def _lean_domain(name: str, version: str, chain_id: str, contract: str) -> TokenDomain | None:
    """A token domain in its JSON spelling, checked as :func:`parse_intent` checks it, or
    ``None`` (the general parser will say what is wrong). Memoised: tokens recur in every batch,
    and the key is the exact text, so a hit returns what a miss would."""
    raw = {"name": name, "version": version, "chain_id": chain_id, "verifying_contract": contract}
    kind = Erc3009Transfer.KIND
    try:
        return _domain(kind, _load_domain(kind, "token", raw))
    except IntentInvalid:
        return None


def _lean_uint(raw: object) -> int | None:
    # _DECIMAL's language: ASCII digits, no leading zero, at most 78 of them.
    if (
        type(raw) is not str
        or not raw.isascii()
        or not raw.isdigit()
        or len(raw) > 78
        or (raw[0] == "0" and len(raw) > 1)
    ):
        return None
    value = int(raw)
    return value if value <= _UINT256_MAX else None


def _lean_transfer(data: object) -> tuple[Erc3009Transfer, bytes] | None:
    """An ``erc3009.transfer`` intent and its canonical bytes, or ``None`` to take the long way.

    Accepts exactly what :func:`parse_intent` accepts for this kind (every codec's one spelling,
    and the constructor's checks: non-zero ``to`` and token, positive amount, a non-empty
    window, a 32-byte nonce) and builds the same value, without re-checking what the checks
    below already proved. Its JSON form is then ``data`` itself, so the canonical bytes are
    ``data`` sorted and compacted; they are written by orjson when every free-text value (the
    token's name and version) is printable ASCII, where orjson and :func:`canonical_bytes` write
    the same bytes (only ``"`` and ``\\`` escaped, the same way); otherwise by the json module.
    A property test holds the lean path to the general one.
    """
    if type(data) is not dict or data.keys() != _TRANSFER_KEYS:
        return None
    version = data["version"]
    token = data["token"]
    if (
        data["kind"] != Erc3009Transfer.KIND
        or type(version) is not int
        or version != Erc3009Transfer.VERSION
        or type(token) is not dict
        or token.keys() != _TOKEN_KEYS
    ):
        return None
    name, token_version = token["name"], token["version"]
    chain_id, contract = token["chain_id"], token["verifying_contract"]
    if not (type(name) is type(token_version) is type(chain_id) is type(contract) is str):
        return None
    domain = _lean_domain(name, token_version, chain_id, contract)
    to = data["to"]
    # Checksummed, so the zero address has exactly one spelling.
    if domain is None or type(to) is not str or _checksummed(to) != to or to == _ZERO_ADDRESS:
        return None
    amount = _lean_uint(data["amount_units"])
    valid_after = _lean_uint(data["valid_after"])
    valid_before = _lean_uint(data["valid_before"])
    nonce = _lean_nonce(data["nonce"])
    if (
        amount is None
        or amount == 0
        or valid_after is None
        or valid_before is None
        or valid_before <= valid_after
        or nonce is None
    ):
        return None
    intent = object.__new__(Erc3009Transfer)
    # The dataclass is frozen: set its fields as its own __init__ would, minus the checks.
    intent.__dict__.update(
        token=domain,
        to=to,
        amount_units=amount,
        valid_after=valid_after,
        valid_before=valid_before,
        nonce=nonce,
    )
    if _ascii_text(name) and _ascii_text(token_version):
        canonical = orjson.dumps(data, option=orjson.OPT_SORT_KEYS)
    else:
        canonical = canonical_bytes(intent)
    return intent, canonical


def _lean_nonce(raw: object) -> bytes | None:
    """32 bytes written ``0x`` + 64 lowercase hex digits (as _HEX_BYTES reads them), or None."""
    if type(raw) is not str or len(raw) != 66 or not raw.startswith("0x"):
        return None
    digits = raw[2:]
    try:
        nonce = bytes.fromhex(digits)
    except ValueError:
        return None
    # fromhex also takes spaces (64 characters then make fewer than 32 bytes) and upper case
    # (a cased letter not in lower case; digits alone have no case): only one spelling passes.
    return nonce if len(nonce) == 32 and (digits.islower() or digits.isdigit()) else None


def _ascii_text(text: str) -> bool:
    return text.isascii() and text.isprintable()


def canonical_bytes(intent: Intent) -> bytes:
    """The one byte encoding of an intent: sorted-key, whitespace-free UTF-8 JSON (see module)."""
    return json.dumps(
        intent.to_json(),
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
        allow_nan=False,
    ).encode("utf-8")


def intent_digest(intent: Intent) -> bytes:
    """The intent's 32-byte digest: what an approval's challenge commits to."""
    return hashlib.sha256(INTENT_DIGEST_DOMAIN + canonical_bytes(intent)).digest()


def signing_hash(intent: Intent, wallet_address: str) -> bytes | None:
    """The 32-byte hash the wallet's key signs for ``intent``; ``None`` if it signs nothing.

    Built from the intent alone, never from caller-supplied bytes: what was approved is what
    is signed. ``wallet_address`` is the signing wallet's own address (the ``from``).
    """
    kind = intent.KIND
    wallet = _address(kind, "wallet_address", wallet_address)
    if isinstance(intent, Erc3009Transfer):
        return transfer_signing_hash(intent, wallet)
    if isinstance(intent, RouterPay):
        authorization = payment_authorization(
            intent.payment(),
            payer=wallet,
            router=intent.router,
            chain_id=intent.token.chain_id,
            valid_after=intent.valid_after,
            valid_before=intent.valid_before,
        )
        # Receive (not Transfer): only the router may submit it, so it cannot be front-run.
        return authorization_digest(intent.token, authorization, RECEIVE_WITH_AUTHORIZATION)
    if isinstance(intent, RouterRefund):
        # The router pulls a refund from the payment's merchant: any other wallet's signature
        # would be worthless, and signing one anyway would only burn an approval.
        if wallet != intent.merchant:
            raise _fail(kind, "merchant", f"is {intent.merchant}, not this wallet ({wallet})")
        authorization = refund_authorization(
            intent.refund(),
            router=intent.router,
            chain_id=intent.token.chain_id,
            valid_after=intent.valid_after,
            valid_before=intent.valid_before,
        )
        return authorization_digest(intent.token, authorization, RECEIVE_WITH_AUTHORIZATION)
    if isinstance(intent, SafeSign):
        return intent.safe_tx_hash()
    if isinstance(intent, MessageSign):
        return intent.message_hash
    return None


def transfer_signing_hash(intent: Erc3009Transfer, wallet_address: str) -> bytes:
    """:func:`signing_hash` of an ``erc3009.transfer`` (what it returns for one).

    EIP-712 ``TransferWithAuthorization``: every field is one static ABI word, so the struct is
    a concatenation (a test pins this to eth-account's encoding of the typed data); its first
    two words (the type hash and the wallet) are made once per wallet.
    """
    struct_hash = keccak256(
        b"".join(
            (
                _transfer_struct_head(wallet_address),
                _ADDRESS_PAD,
                bytes.fromhex(intent.to[2:]),
                intent.amount_units.to_bytes(32, "big"),
                intent.valid_after.to_bytes(32, "big"),
                intent.valid_before.to_bytes(32, "big"),
                intent.nonce,
            )
        )
    )
    return keccak256(_domain_parts(intent.token)[1] + struct_hash)


#: id(domain) → (the domain, b"\x19\x01" + its separator, its name for people).
_DOMAIN_PARTS: Final[dict[int, tuple[TokenDomain, bytes, str]]] = {}
_DOMAIN_PARTS_KEPT: Final = 4096


def _domain_parts(domain: TokenDomain) -> tuple[TokenDomain, bytes, str]:
    """What every signature and summary of a token's transfers starts with, made once per
    domain object: the EIP-712 prefix with its separator, and its name for people.

    Keyed by the object's identity (the lean parser hands out one object per token), which the
    entry keeps alive, so an id is never another domain's; hashing a domain by value cost more
    than the look-up saves.
    """
    parts = _DOMAIN_PARTS.get(id(domain))
    if parts is None or parts[0] is not domain:
        parts = (
            domain,
            b"\x19\x01" + domain.separator,
            f"{_printable(domain.name)} ({_short(domain.verifying_contract)})",
        )
        if len(_DOMAIN_PARTS) >= _DOMAIN_PARTS_KEPT:
            _DOMAIN_PARTS.clear()
        _DOMAIN_PARTS[id(domain)] = parts
    return parts


@functools.lru_cache(maxsize=65_536)
def _transfer_struct_head(wallet_address: str) -> bytes:
    """The type hash and the ``from`` word of a wallet's transfers (``from`` = the wallet,
    checked and checksummed as :func:`signing_hash` does)."""
    wallet = _address(Erc3009Transfer.KIND, "wallet_address", wallet_address)
    return _TRANSFER_TYPEHASH + _ADDRESS_PAD + bytes.fromhex(wallet[2:])


def spend(intent: Intent, wallet_address: str) -> Spend | None:
    """The money ``intent`` moves out of the wallet, for the policy; ``None`` if it moves none.

    A router payment spends its whole ``amount_units`` (fee included: it all leaves the wallet)
    and counts the merchant as recipient; a refund spends the merchant wallet's money to the
    payer. A ``safe.sign`` spends the Safe's money, not this wallet's, and has its own rules.
    """
    _address(intent.KIND, "wallet_address", wallet_address)
    if isinstance(intent, Erc3009Transfer):
        return Spend(
            chain_id=intent.token.chain_id,
            token=intent.token.verifying_contract,
            amount_units=intent.amount_units,
            recipient=intent.to,
        )
    if isinstance(intent, RouterPay):
        return Spend(
            chain_id=intent.token.chain_id,
            token=intent.token.verifying_contract,
            amount_units=intent.amount_units,
            recipient=intent.merchant,
        )
    if isinstance(intent, RouterRefund):
        return Spend(
            chain_id=intent.token.chain_id,
            token=intent.token.verifying_contract,
            amount_units=intent.amount_units,
            recipient=intent.payer,
        )
    return None


# -- one line for people ---------------------------------------------------------------------


def describe(intent: Intent) -> str:
    """A one-line summary for people (approval screens, audit views); amounts in base units.

    Addresses are shortened to their first 6 and last 4 characters: screens that protect money
    should show them whole, since look-alike addresses share both ends.
    """
    return intent.describe()


@functools.lru_cache(maxsize=4096)
def _token(domain: TokenDomain) -> str:
    # Memoised by the (frozen) domain: every summary of a token's transfers starts with it.
    return f"{_printable(domain.name)} ({_short(domain.verifying_contract)})"


def _short(value: str | bytes) -> str:
    text = value if isinstance(value, str) else "0x" + value.hex()
    return text if len(text) <= 12 else f"{text[:6]}…{text[-4:]}"


def _printable(text: str, limit: int = 64) -> str:
    # Names come from tokens and dApps: never let them break the line or reorder the text.
    clean = "".join(
        "?" if unicodedata.category(c) in ("Cc", "Cf", "Cs", "Zl", "Zp") else c for c in text
    )
    return clean if len(clean) <= limit else clean[: limit - 1] + "…"
