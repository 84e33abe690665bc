"""The sender's own EIP-1559 signer produces exactly eth-account's bytes."""

from __future__ import annotations

import os
from typing import Any

import coincurve
import pytest
from eth_account import Account
from eth_utils.address import to_checksum_address

from seiwallet.chain.sender import sign_type2


@pytest.mark.parametrize(
    ("to", "value", "data", "fees"),
    [
        ("0x" + os.urandom(20).hex(), 0, os.urandom(100), (10**9, 2 * 10**9)),
        (None, 0, os.urandom(300), (0, 0)),  # a contract creation, free gas
        ("0x" + os.urandom(20).hex(), 10**18, b"", (1, 1)),
        ("0x" + os.urandom(20).hex(), 2**200, os.urandom(4), (2**60, 2**62)),
    ],
)
def test_sign_type2_matches_eth_account(
    to: str | None, value: int, data: bytes, fees: tuple[int, int]
) -> None:
    for _ in range(5):
        account = Account.create()
        tip, max_fee = fees
        nonce = int.from_bytes(os.urandom(3), "big")
        ours = sign_type2(
            coincurve.PrivateKey(bytes(account.key)),
            chain_id=713_715,
            nonce=nonce,
            max_priority_fee_per_gas=tip,
            max_fee_per_gas=max_fee,
            gas=150_000,
            to=to,
            value=value,
            data=data,
        )
        tx: dict[str, Any] = {
            "type": 2,
            "chainId": 713_715,
            "nonce": nonce,
            "value": value,
            "data": data,
            "gas": 150_000,
            "maxFeePerGas": max_fee,
            "maxPriorityFeePerGas": tip,
        }
        if to is not None:
            tx["to"] = to_checksum_address(to)
        assert ours == bytes(account.sign_transaction(tx).raw_transaction)
