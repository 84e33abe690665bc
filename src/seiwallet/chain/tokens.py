"""Stablecoins that follow Circle's FiatToken v2.2: metadata, EIP-712 domain, EIP-3009 messages.

Nothing here assumes a token's EIP-712 domain: :func:`read_token` asks the chain for ``name()``,
``version()`` and ``decimals()`` and the endpoint for its chain id, so the same code signs for
the local FiatToken and for Circle's native USDC on Sei.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

from Crypto.Hash import keccak as pycryptodome_keccak
from eth_abi.abi import decode as abi_decode
from eth_abi.abi import encode as abi_encode
from eth_utils.address import to_checksum_address
from eth_utils.crypto import keccak

from seiwallet.chain.errors import ChainError, DeploymentMissing, RpcError
from seiwallet.chain.rpc import Call, RpcClient

EIP712_DOMAIN_FIELDS = [
    {"name": "name", "type": "string"},
    {"name": "version", "type": "string"},
    {"name": "chainId", "type": "uint256"},
    {"name": "verifyingContract", "type": "address"},
]

_AUTHORIZATION_FIELDS = [
    {"name": "from", "type": "address"},
    {"name": "to", "type": "address"},
    {"name": "value", "type": "uint256"},
    {"name": "validAfter", "type": "uint256"},
    {"name": "validBefore", "type": "uint256"},
    {"name": "nonce", "type": "bytes32"},
]

#: EIP-3009 primary types: ``transfer`` may be submitted by anyone; ``receive`` only by ``to``.
TRANSFER_WITH_AUTHORIZATION = "TransferWithAuthorization"
RECEIVE_WITH_AUTHORIZATION = "ReceiveWithAuthorization"

_DOMAIN_TYPEHASH = keccak(
    text="EIP712Domain(string name,string version,uint256 chainId,address verifyingContract)"
)
_AUTHORIZATION_TYPEHASHES = {
    primary: keccak(
        text=f"{primary}(address from,address to,uint256 value,uint256 validAfter,"
        "uint256 validBefore,bytes32 nonce)"
    )
    for primary in (TRANSFER_WITH_AUTHORIZATION, RECEIVE_WITH_AUTHORIZATION)
}


@functools.lru_cache(maxsize=256)
def selector(signature: str) -> bytes:
    """The 4-byte function selector of a canonical signature such as ``"name()"`` (a handful of
    signatures, asked for on every call: hashed once each)."""
    return keccak(text=signature)[:4]


def encode_call(signature: str, arg_types: list[str], args: list[Any]) -> str:
    """ABI-encode a call as ``0x``-hex calldata."""
    return "0x" + (selector(signature) + abi_encode(arg_types, args)).hex()


@dataclass(frozen=True)
class TokenDomain:
    """A token's EIP-712 domain, as read from the chain."""

    name: str
    version: str
    chain_id: int
    verifying_contract: str

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "version": self.version,
            "chainId": self.chain_id,
            "verifyingContract": self.verifying_contract,
        }

    @property
    def separator(self) -> bytes:
        """The EIP-712 domain separator (``DOMAIN_SEPARATOR()`` on the token returns the same)."""
        return _domain_separator(self.name, self.version, self.chain_id, self.verifying_contract)


@functools.lru_cache(maxsize=4096)
def _domain_separator(name: str, version: str, chain_id: int, verifying_contract: str) -> bytes:
    """Cached by value: a signer computes it for every authorization of a token."""
    return keccak(
        abi_encode(
            ["bytes32", "bytes32", "bytes32", "uint256", "address"],
            [
                _DOMAIN_TYPEHASH,
                keccak(text=name),
                keccak(text=version),
                chain_id,
                verifying_contract,
            ],
        )
    )


@dataclass(frozen=True)
class Token:
    """A FiatToken-compatible stablecoin on one chain."""

    address: str
    symbol: str
    decimals: int
    currency: str | None
    domain: TokenDomain

    @property
    def chain_id(self) -> int:
        return self.domain.chain_id


async def read_token(rpc: RpcClient, address: str) -> Token:
    """Read a token's metadata and EIP-712 domain from the chain, in one round trip."""
    checksummed = to_checksum_address(address)
    views = ["name()", "version()", "symbol()", "decimals()", "currency()"]
    answers = await rpc.batch(
        [Call("eth_chainId")]
        + [
            Call("eth_call", [{"to": checksummed, "data": "0x" + selector(v).hex()}, "latest"])
            for v in views
        ]
    )
    chain_id_raw, *view_raw = answers
    if isinstance(chain_id_raw, RpcError):
        raise chain_id_raw
    values: dict[str, bytes | None] = {}
    for view, raw in zip(views, view_raw, strict=True):
        values[view] = (
            None if isinstance(raw, RpcError) or raw in (None, "0x") else bytes.fromhex(raw[2:])
        )
    for required in ("name()", "version()", "symbol()", "decimals()"):
        if values[required] is None:
            raise DeploymentMissing(
                f"no EIP-3009 stablecoin at {checksummed}: {required} is missing; "
                "check the token address configured for this network"
            )
    name = _decode_one("string", values["name()"])
    version = _decode_one("string", values["version()"])
    symbol = _decode_one("string", values["symbol()"])
    decimals = _decode_one("uint8", values["decimals()"])
    currency = _decode_one("string", values["currency()"]) if values["currency()"] else None
    return Token(
        address=checksummed,
        symbol=str(symbol),
        decimals=int(decimals),
        currency=str(currency) if currency is not None else None,
        domain=TokenDomain(
            name=str(name),
            version=str(version),
            chain_id=int(chain_id_raw, 16),
            verifying_contract=checksummed,
        ),
    )


def _decode_one(abi_type: str, raw: bytes | None) -> Any:
    try:
        return abi_decode([abi_type], raw or b"")[0]
    except Exception as exc:
        raise ChainError(f"unexpected answer from the token ({abi_type}): {exc}") from None


@dataclass(frozen=True)
class Authorization3009:
    """The terms of an EIP-3009 authorization (what the payer signs)."""

    from_address: str
    to: str
    value: int
    valid_after: int
    valid_before: int
    nonce: bytes

    def __post_init__(self) -> None:
        if len(self.nonce) != 32:
            raise ValueError("an EIP-3009 nonce is exactly 32 bytes")
        if self.value < 0:
            raise ValueError("an authorization's value cannot be negative")

    def message(self) -> dict[str, Any]:
        return {
            "from": to_checksum_address(self.from_address),
            "to": to_checksum_address(self.to),
            "value": self.value,
            "validAfter": self.valid_after,
            "validBefore": self.valid_before,
            "nonce": self.nonce,
        }


def authorization_typed_data(
    domain: TokenDomain,
    authorization: Authorization3009,
    primary_type: str = TRANSFER_WITH_AUTHORIZATION,
) -> dict[str, Any]:
    """The full EIP-712 typed data of an EIP-3009 authorization in the token's own domain."""
    if primary_type not in (TRANSFER_WITH_AUTHORIZATION, RECEIVE_WITH_AUTHORIZATION):
        raise ValueError(f"not an EIP-3009 authorization type: {primary_type}")
    return {
        "types": {"EIP712Domain": EIP712_DOMAIN_FIELDS, primary_type: _AUTHORIZATION_FIELDS},
        "primaryType": primary_type,
        "domain": domain.as_dict(),
        "message": authorization.message(),
    }


def _address_word(address: str) -> bytes:
    """An address as one ABI word (left-padded to 32 bytes)."""
    raw = bytes.fromhex(address[2:] if address[:2] in ("0x", "0X") else address)
    if len(raw) != 20:
        raise ValueError(f"not a 20-byte address: {address!r}")
    return bytes(12) + raw


def _uint_word(value: int) -> bytes:
    return value.to_bytes(32, "big")  # OverflowError past uint256, as eth-abi would refuse


def _keccak256(data: bytes) -> bytes:
    """Keccak-256 straight from pycryptodome (the backend eth-utils uses here).

    eth-utils' ``keccak`` spends as long in its argument-checking wrappers as in hashing: ~11 µs
    against ~6 µs, and the signer computes two per signature.
    """
    return pycryptodome_keccak.new(data=data, digest_bits=256).digest()


def authorization_digest(
    domain: TokenDomain,
    authorization: Authorization3009,
    primary_type: str = TRANSFER_WITH_AUTHORIZATION,
) -> bytes:
    """The 32-byte EIP-712 digest the payer's key signs.

    Computed directly — every field is a static ABI word, so the encoding is a concatenation —
    because the signer computes one per signature (a test pins it to eth-account's digest).
    """
    struct_hash = _keccak256(
        _AUTHORIZATION_TYPEHASHES[primary_type]
        + _address_word(authorization.from_address)
        + _address_word(authorization.to)
        + _uint_word(authorization.value)
        + _uint_word(authorization.valid_after)
        + _uint_word(authorization.valid_before)
        + authorization.nonce
    )
    return _keccak256(b"\x19\x01" + domain.separator + struct_hash)


def encode_transfer_with_authorization(authorization: Authorization3009, signature: bytes) -> str:
    """Calldata for FiatToken v2.2's ``transferWithAuthorization(..., bytes signature)``.

    The bytes form also accepts ERC-1271 signatures of smart accounts (e.g. a family Safe).
    """
    return encode_call(
        "transferWithAuthorization(address,address,uint256,uint256,uint256,bytes32,bytes)",
        ["address", "address", "uint256", "uint256", "uint256", "bytes32", "bytes"],
        [
            authorization.from_address,
            authorization.to,
            authorization.value,
            authorization.valid_after,
            authorization.valid_before,
            authorization.nonce,
            signature,
        ],
    )


def encode_mint(to: str, amount_units: int) -> str:
    """Calldata for FiatToken's ``mint(to, amount)``, sent by a configured minter (local chains)."""
    return encode_call("mint(address,uint256)", ["address", "uint256"], [to, amount_units])


async def balance_of(rpc: RpcClient, token: str, owner: str) -> int:
    """The owner's balance in base units."""
    raw = await rpc.call(
        {"to": token, "data": encode_call("balanceOf(address)", ["address"], [owner])}
    )
    return int(abi_decode(["uint256"], raw)[0])


async def authorization_used(rpc: RpcClient, token: str, authorizer: str, nonce: bytes) -> bool:
    """Whether an EIP-3009 nonce is already used or canceled (decides what a resend would do)."""
    raw = await rpc.call(
        {
            "to": token,
            "data": encode_call(
                "authorizationState(address,bytes32)", ["address", "bytes32"], [authorizer, nonce]
            ),
        }
    )
    return bool(abi_decode(["bool"], raw)[0])


async def is_blacklisted(rpc: RpcClient, token: str, account: str) -> bool:
    """Whether the issuer has blacklisted an address (transfers to and from it revert)."""
    raw = await rpc.call(
        {"to": token, "data": encode_call("isBlacklisted(address)", ["address"], [account])}
    )
    return bool(abi_decode(["bool"], raw)[0])


async def is_paused(rpc: RpcClient, token: str) -> bool:
    """Whether the issuer has paused the token."""
    raw = await rpc.call({"to": token, "data": encode_call("paused()", [], [])})
    return bool(abi_decode(["bool"], raw)[0])
