"""Invoice deposit addresses, mirrored in Python: the address of an invoice's box, and calldata.

An outside wallet (MetaMask, an exchange) pays an invoice with a plain ``transfer`` of the token
to the invoice's **deposit address**: the CREATE2 address at which ``InvoiceDeposits`` deploys
the invoice's ``DepositBox`` (an EIP-1167 clone) when it sweeps it. The salt is the router's
payment id of the invoice's terms (:func:`seiwallet.chain.router.payment_nonce`), so the address
commits to every term and is known before anything is deployed:

    implementation = CREATE address of (deposits, nonce 1)          # made by its constructor
    init_code      = 3d602d80600a3d3981f3363d3d373d3d3d363d73 ‖ implementation ‖
                     5af43d82803e903d91602b57fd5bf3                 # EIP-1167, as OZ's Clones
    address        = keccak256(0xff ‖ deposits ‖ payment_id ‖ keccak256(init_code))[12:]

:func:`deposit_address` must equal the contract's ``depositAddress(p)`` bit for bit (the
integration tests compare them on a live chain; ``tests/vectors/deposit_addresses.json`` pins
known answers). The calldata encoders take their types from the compiled artifact's ABI.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

import rlp  # type: ignore[import-untyped]
from eth_abi.abi import decode as abi_decode
from eth_utils.address import to_checksum_address
from eth_utils.crypto import keccak

from seiwallet.chain.artifacts import ContractArtifact, event_topic, load_artifact
from seiwallet.chain.router import Payment, payment_nonce
from seiwallet.chain.terms import checksummed, require_bytes32

#: Name of the deposits contract's artifact in the package.
DEPOSITS_CONTRACT: Final = "InvoiceDeposits"

#: ``rescue``'s name for the chain's native coin (SEI on Sei).
NATIVE_COIN: Final = "0x0000000000000000000000000000000000000000"

#: EIP-1167 minimal proxy creation code around the implementation's 20 bytes (OpenZeppelin's
#: ``Clones.cloneDeterministic``: 10 bytes of constructor, then the 45-byte runtime).
CLONE_PREFIX: Final = bytes.fromhex("3d602d80600a3d3981f3363d3d373d3d3d363d73")
CLONE_SUFFIX: Final = bytes.fromhex("5af43d82803e903d91602b57fd5bf3")

#: The nonce of the ``DepositBox`` implementation: a contract's first creation (EIP-161).
IMPLEMENTATION_NONCE: Final = 1


def _address_bytes(name: str, address: str) -> bytes:
    return bytes.fromhex(checksummed(name, address)[2:])


def create_address(deployer: str, nonce: int) -> str:
    """The address of the contract ``deployer`` creates with ``nonce`` (CREATE)."""
    encoded = rlp.encode([_address_bytes("deployer", deployer), nonce])
    return to_checksum_address(keccak(encoded)[12:])


def create2_address(deployer: str, salt: bytes, init_code_hash: bytes) -> str:
    """The address CREATE2 gives ``deployer`` for ``salt`` and the init code's hash (EIP-1014)."""
    require_bytes32("salt", salt)
    require_bytes32("init_code_hash", init_code_hash)
    digest = keccak(b"\xff" + _address_bytes("deployer", deployer) + salt + init_code_hash)
    return to_checksum_address(digest[12:])


def box_implementation(deposits: str) -> str:
    """The ``DepositBox`` every box of ``deposits`` clones (its constructor's creation)."""
    return create_address(deposits, IMPLEMENTATION_NONCE)


def clone_init_code(implementation: str) -> bytes:
    """The EIP-1167 creation code of a clone of ``implementation``."""
    return CLONE_PREFIX + _address_bytes("implementation", implementation) + CLONE_SUFFIX


@functools.cache
def _init_code_hash(deposits: str) -> bytes:
    return keccak(clone_init_code(box_implementation(deposits)))


def deposit_address(payment: Payment, *, router: str, deposits: str, chain_id: int) -> str:
    """Where a payer sends ``payment.amount_units`` of ``payment.token`` to pay ``payment``.

    The box of these terms at ``deposits`` (bound to ``router``) on chain ``chain_id``, whether
    deployed yet or not. Any other term gives another address.
    """
    salt = payment_nonce(payment, router=router, chain_id=chain_id)
    contract = checksummed("deposits", deposits)
    return create2_address(contract, salt, _init_code_hash(contract))


@dataclass(frozen=True)
class DepositTotals:
    """What ``totals(paymentId)`` reports: everything swept out of a box, and the fee of it."""

    swept_units: int
    fee_taken_units: int


# -- calldata --------------------------------------------------------------------------------


def deposits_artifact() -> ContractArtifact:
    """The compiled ``InvoiceDeposits`` shipped with the package."""
    return load_artifact(DEPOSITS_CONTRACT)


def _encode(function: str, *args: Any) -> bytes:
    return deposits_artifact().encode_call(function, *args)


def encode_sweep(payment: Payment) -> bytes:
    """Calldata of ``sweep(payment)``: pay out the box's ``payment.token`` (anyone may send it)."""
    return _encode("sweep", payment.as_abi())


def encode_rescue(payment: Payment, token: str) -> bytes:
    """Calldata of ``rescue(payment, token)``: another token (or :data:`NATIVE_COIN`) sent to the
    box, all of it to the merchant."""
    return _encode("rescue", payment.as_abi(), checksummed("token", token))


def encode_deposit_address(payment: Payment) -> bytes:
    """Calldata of the ``depositAddress(payment)`` view."""
    return _encode("depositAddress", payment.as_abi())


def encode_get_totals(payment_id: bytes) -> bytes:
    """Calldata of the ``totals(paymentId)`` view; decode with :func:`decode_totals`."""
    require_bytes32("payment_id", payment_id)
    return _encode("totals", payment_id)


def decode_totals(raw: bytes) -> DepositTotals:
    swept, fee = abi_decode(["uint128", "uint128"], raw)
    return DepositTotals(swept_units=int(swept), fee_taken_units=int(fee))


@functools.cache
def event_topics() -> Mapping[str, bytes]:
    """The deposits contract's events by name → topic 0, for filtering logs."""
    artifact = deposits_artifact()
    names = [str(entry["name"]) for entry in artifact.abi if entry.get("type") == "event"]
    return {name: event_topic(artifact, name) for name in names}
