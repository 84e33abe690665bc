"""Invoice deposit addresses, offline: known answers, and web3.py's own CREATE/CREATE2 helpers.

``tests/vectors/deposit_addresses.json`` holds addresses for the local chain's fixed deployment;
the integration tests check the same file against the contract's ``depositAddress``. Here the
derivation is checked against an implementation that is not ours (web3.py's address helpers)
and the properties that make the address safe to publish: every term changes it.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from eth_typing import ChecksumAddress, HexStr
from eth_utils.crypto import keccak
from hypothesis import given
from hypothesis import strategies as st
from web3.types import Nonce
from web3.utils.address import get_create2_address, get_create_address

from seiwallet.chain.deposits import (
    CLONE_PREFIX,
    CLONE_SUFFIX,
    box_implementation,
    clone_init_code,
    create2_address,
    create_address,
    deposit_address,
)
from seiwallet.chain.router import Payment, payment_nonce
from seiwallet.errors import InvalidInput
from seiwallet.payments.deposits import payment_uri

VECTORS = json.loads(
    (Path(__file__).resolve().parents[1] / "vectors" / "deposit_addresses.json").read_text()
)


def _payment(case: dict[str, Any]) -> Payment:
    return Payment(
        invoice_id=bytes.fromhex(case["invoice_id"][2:]),
        merchant=case["merchant"],
        token=case["token"],
        amount_units=int(case["amount_units"]),
        fee_units=int(case["fee_units"]),
    )


@pytest.mark.parametrize("case", VECTORS["cases"], ids=lambda c: c["invoice_id"][:10])
def test_known_addresses(case: dict[str, Any]) -> None:
    payment = _payment(case)
    router, deposits, chain_id = VECTORS["router"], VECTORS["deposits"], VECTORS["chain_id"]
    assert (
        "0x" + payment_nonce(payment, router=router, chain_id=chain_id).hex() == case["payment_id"]
    )
    assert (
        deposit_address(payment, router=router, deposits=deposits, chain_id=chain_id)
        == case["address"]
    )


def test_the_derivation_is_web3s_create_and_create2() -> None:
    deposits = VECTORS["deposits"]
    implementation = get_create_address(ChecksumAddress(deposits), Nonce(1))
    assert box_implementation(deposits) == implementation == VECTORS["box_implementation"]
    init_code = clone_init_code(implementation)
    # EIP-1167: 10 bytes of constructor + 45 bytes of runtime, the implementation inside.
    assert len(init_code) == 55
    assert init_code == CLONE_PREFIX + bytes.fromhex(implementation[2:]) + CLONE_SUFFIX
    for case in VECTORS["cases"]:
        salt = HexStr(case["payment_id"])
        expected = get_create2_address(
            ChecksumAddress(deposits), salt, HexStr("0x" + init_code.hex())
        )
        assert case["address"] == expected
        assert create2_address(deposits, bytes.fromhex(salt[2:]), keccak(init_code)) == expected
    # The local deployment's own addresses follow from the deployer's nonces.
    deployer = "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266"  # anvil account #0
    assert create_address(deployer, 2) == VECTORS["router"]
    assert create_address(deployer, 4) == VECTORS["deposits"]


_addresses = st.binary(min_size=20, max_size=20).map(lambda b: "0x" + b.hex())


@given(
    invoice_id=st.binary(min_size=32, max_size=32),
    merchant=_addresses.filter(lambda a: int(a, 16) != 0),
    token=_addresses,
    amount=st.integers(min_value=1, max_value=2**256 - 1),
    data=st.data(),
)
def test_every_term_moves_the_address(
    invoice_id: bytes, merchant: str, token: str, amount: int, data: st.DataObject
) -> None:
    fee = data.draw(st.integers(min_value=0, max_value=amount))
    payment = Payment(
        invoice_id=invoice_id,
        merchant=merchant,
        token=token,
        amount_units=amount,
        fee_units=fee,
    )
    router, deposits, chain_id = VECTORS["router"], VECTORS["deposits"], VECTORS["chain_id"]
    here = deposit_address(payment, router=router, deposits=deposits, chain_id=chain_id)
    others = [
        replace(payment, invoice_id=bytes(b ^ 1 for b in invoice_id)),
        replace(payment, amount_units=amount + 1) if amount < 2**256 - 1 else None,
        replace(payment, fee_units=fee + 1) if fee < amount else None,
    ]
    for other in others:
        if other is not None:
            assert (
                deposit_address(other, router=router, deposits=deposits, chain_id=chain_id) != here
            )
    assert deposit_address(payment, router=router, deposits=deposits, chain_id=1) != here
    assert deposit_address(payment, router=deposits, deposits=deposits, chain_id=chain_id) != here
    assert deposit_address(payment, router=router, deposits=router, chain_id=chain_id) != here


def test_bad_values_are_refused() -> None:
    with pytest.raises(InvalidInput):
        create2_address(VECTORS["deposits"], b"\x01" * 31, b"\x00" * 32)
    with pytest.raises(InvalidInput):
        create_address("not an address", 1)
    with pytest.raises(InvalidInput):
        box_implementation(VECTORS["deposits"].swapcase().replace("0X", "0x"))  # bad checksum


def test_the_eip681_link() -> None:
    case = VECTORS["cases"][0]
    uri = payment_uri(
        token=case["token"],
        chain_id=VECTORS["chain_id"],
        address=case["address"],
        amount_units=10_000_000,
    )
    assert uri == (
        f"ethereum:{case['token']}@{VECTORS['chain_id']}/transfer"
        f"?address={case['address']}&uint256=10000000"
    )
