"""The decoder's short cuts for indexed addresses and nonces, and its remembered checksums, give
exactly what eth-abi and eth-utils give (the stored format of ``chain_events.args``)."""

from __future__ import annotations

import os

import pytest
from eth_abi.abi import decode as abi_decode
from eth_abi.exceptions import DecodingError
from eth_utils.address import to_checksum_address
from eth_utils.crypto import keccak

from seiwallet.chain.events import (
    FIAT_TOKEN_EVENTS_ABI,
    EventDecoder,
    checksum_address,
    json_safe,
)
from seiwallet.chain.rpc import Log

TOKEN = "0x" + "ab" * 20
AUTHORIZATION_USED = "0x" + keccak(text="AuthorizationUsed(address,bytes32)").hex()
TRANSFER = "0x" + keccak(text="Transfer(address,address,uint256)").hex()


def _log(topics: tuple[str, ...], data: str = "0x") -> Log:
    return Log(
        address=TOKEN,
        topics=topics,
        data=data,
        block_number=1,
        block_hash="0x" + "00" * 32,
        transaction_hash="0x" + "11" * 32,
        log_index=0,
        removed=False,
    )


def _slow(abi_type: str, topic: str) -> object:
    """What the decoder did for every indexed argument before the short cuts."""
    return json_safe(abi_type, abi_decode([abi_type], bytes.fromhex(topic[2:]))[0])


@pytest.mark.parametrize("upper", [False, True])
def test_indexed_addresses_and_nonces_decode_as_eth_abi_does(upper: bool) -> None:
    decoder = EventDecoder({TOKEN: FIAT_TOKEN_EVENTS_ABI})
    for _ in range(50):
        sender, receiver, nonce = os.urandom(20), os.urandom(20), os.urandom(32)
        words = ["0x" + "00" * 12 + sender.hex(), "0x" + "00" * 12 + receiver.hex()]
        nonce_topic = "0x" + nonce.hex()
        if upper:
            words = ["0x" + w[2:].upper() for w in words]
            nonce_topic = "0x" + nonce_topic[2:].upper()
        used = decoder.decode(_log((AUTHORIZATION_USED, words[0], nonce_topic)))
        assert used is not None
        assert used.args == {
            "authorizer": _slow("address", words[0]),
            "nonce": _slow("bytes32", nonce_topic),
        }
        assert used.key == "0x" + nonce.hex()
        moved = decoder.decode(_log((TRANSFER, *words), f"0x{7:064x}"))
        assert moved is not None
        assert moved.args == {
            "from": to_checksum_address(sender),
            "to": to_checksum_address(receiver),
            "value": "7",
        }
        assert moved.contract == to_checksum_address(TOKEN)


def test_a_dirty_address_word_is_refused_as_before() -> None:
    decoder = EventDecoder({TOKEN: FIAT_TOKEN_EVENTS_ABI})
    dirty = "0x" + "01" + "00" * 11 + "cd" * 20
    with pytest.raises(DecodingError):
        decoder.decode(_log((AUTHORIZATION_USED, dirty, "0x" + "22" * 32)))


def test_remembered_checksums_are_eth_utils_checksums() -> None:
    for _ in range(20):
        raw = os.urandom(20)
        expected = to_checksum_address(raw)
        assert checksum_address("0x" + raw.hex()) == expected
        assert checksum_address("0x" + raw.hex()) == expected  # from the cache
        assert checksum_address(expected) == expected
        assert checksum_address(raw) == expected
    with pytest.raises(ValueError, match="Unknown format"):
        checksum_address("0x1234")
