"""Event logs: FiatToken and router events decoded into exact, JSON-safe values, or ignored."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from typing import Any

import pytest
from eth_abi.abi import encode as abi_encode
from eth_utils.address import to_checksum_address
from eth_utils.crypto import keccak
from hypothesis import given
from hypothesis import strategies as st

from seiwallet.chain.events import (
    EVENT_KEYS,
    FIAT_TOKEN_EVENTS_ABI,
    DecodedEvent,
    EventDecoder,
    json_safe,
)
from seiwallet.chain.rpc import Log

UINT256_MAX = 2**256 - 1
JS_SAFE_MAX = 2**53 - 1

TOKEN = "0xe15fC38F6D8c56aF07bbCBe3BAf5708A2Bf42392"
ROUTER = "0x5FbDB2315678afecb367f032d93F642f64180aa3"
STRANGER = "0x" + "99" * 20
ALICE = "0x70997970C51812dc3A010C7d01b50e0d17dc79C8"
BOB = "0x3C44CdDdB6a900fa2b585dd299e03d12FA4293BC"
INVOICE_ID = bytes.fromhex("a1" * 16 + "00" * 15 + "ff")
NONCE = bytes(range(32))

PAYMENT_SETTLED_ABI: dict[str, Any] = {
    "type": "event",
    "name": "PaymentSettled",
    "anonymous": False,
    "inputs": [
        {"name": "invoiceId", "type": "bytes32", "indexed": True},
        {"name": "payer", "type": "address", "indexed": True},
        {"name": "merchant", "type": "address", "indexed": True},
        {"name": "token", "type": "address", "indexed": False},
        {"name": "amount", "type": "uint256", "indexed": False},
        {"name": "fee", "type": "uint256", "indexed": False},
    ],
}
#: A router ABI as the compiler writes it: functions, errors and an anonymous event mixed in.
ROUTER_ABI: list[dict[str, Any]] = [
    {"type": "constructor", "inputs": []},
    {"type": "function", "name": "settle", "inputs": [], "outputs": []},
    {"type": "error", "name": "FeeExceedsAmount", "inputs": []},
    {
        "type": "event",
        "name": "Ping",
        "anonymous": True,
        "inputs": [{"name": "who", "type": "address", "indexed": True}],
    },
    {
        "type": "event",
        "name": "Memo",
        "inputs": [
            {"name": "invoiceId", "type": "bytes32", "indexed": True},
            {"name": "memo", "type": "string", "indexed": True},
            {"name": "tags", "type": "uint16[]", "indexed": False},
        ],
    },
    PAYMENT_SETTLED_ABI,
]

# Written out rather than derived from the ABI, so the decoder's own hashing is checked too.
TRANSFER_TOPIC = "0xddf252ad1be2c89b69c2b068fc378daa952ba7f163c4a11628f55a4df523b3ef"
AUTHORIZATION_USED_TOPIC = "0x98de503528ee59b575ef0c0a2576a82497bfc029a5685b209e9ec333479b10a5"
BLACKLISTED_TOPIC = "0xffa4e6181777692565cf28528fc88fd1516ea86b56da075235fa575af6a4b855"
PAUSE_TOPIC = "0x6985a02210a168e66602d3235cb6db0e70f92b3ba4d376a33c0f3d9434bff625"

# Module level, not a fixture: hypothesis refuses function-scoped fixtures in @given tests.
DECODER = EventDecoder({TOKEN: FIAT_TOKEN_EVENTS_ABI, ROUTER: ROUTER_ABI})


def signature_topic(signature: str) -> str:
    return "0x" + keccak(text=signature).hex()


def topic(abi_type: str, value: Any) -> str:
    return "0x" + abi_encode([abi_type], [value]).hex()


def make_log(
    address: str,
    topics: Sequence[str],
    data_types: Sequence[str] = (),
    data_values: Sequence[Any] = (),
    *,
    log_index: int = 0,
) -> Log:
    return Log(
        address=address,
        topics=tuple(topics),
        data="0x" + abi_encode(list(data_types), list(data_values)).hex(),
        block_number=1234,
        block_hash="0x" + "bb" * 32,
        transaction_hash="0x" + "cc" * 32,
        log_index=log_index,
        removed=False,
    )


def transfer_log(sender: str, recipient: str, value: int, *, address: str = TOKEN) -> Log:
    return make_log(
        address,
        [TRANSFER_TOPIC, topic("address", sender), topic("address", recipient)],
        ["uint256"],
        [value],
    )


def payment_settled_log(amount: int, fee: int) -> Log:
    return make_log(
        ROUTER,
        [
            signature_topic("PaymentSettled(bytes32,address,address,address,uint256,uint256)"),
            topic("bytes32", INVOICE_ID),
            topic("address", ALICE),
            topic("address", BOB),
        ],
        ["address", "uint256", "uint256"],
        [TOKEN, amount, fee],
    )


def decode(log: Log) -> DecodedEvent:
    event = DECODER.decode(log)
    assert event is not None
    return event


# ---------------------------------------------------------------------------------------------
# FiatToken events
# ---------------------------------------------------------------------------------------------


def test_fiat_token_abi_has_the_events_we_react_to() -> None:
    names = {entry["name"] for entry in FIAT_TOKEN_EVENTS_ABI}
    assert {"Transfer", "AuthorizationUsed", "Blacklisted", "Pause"} <= names
    assert all(entry["type"] == "event" for entry in FIAT_TOKEN_EVENTS_ABI)


def test_topic_of_a_signature_is_its_keccak() -> None:
    assert signature_topic("Transfer(address,address,uint256)") == TRANSFER_TOPIC
    assert signature_topic("AuthorizationUsed(address,bytes32)") == AUTHORIZATION_USED_TOPIC
    assert signature_topic("Blacklisted(address)") == BLACKLISTED_TOPIC
    assert signature_topic("Pause()") == PAUSE_TOPIC


def test_transfer_is_decoded_with_checksummed_addresses_and_a_decimal_value() -> None:
    log = transfer_log(ALICE.lower(), BOB.lower(), 12_500_000)

    event = decode(log)

    assert event.name == "Transfer"
    assert event.contract == TOKEN
    assert event.args == {"from": ALICE, "to": BOB, "value": "12500000"}
    assert list(event.args) == ["from", "to", "value"]
    assert event.key is None
    assert event.log is log


@pytest.mark.parametrize("value", [JS_SAFE_MAX + 1, JS_SAFE_MAX + 2, 10**30 + 1, UINT256_MAX])
def test_amounts_beyond_javascript_integers_stay_exact(value: int) -> None:
    event = decode(transfer_log(ALICE, BOB, value))

    assert event.args["value"] == str(value)
    # A JSON float would round 2**53 + 1; a decimal string survives any JSON parser.
    reparsed = json.loads(json.dumps(event.args))
    assert int(reparsed["value"]) == value
    assert reparsed == event.args


def test_authorization_used_is_keyed_by_its_nonce() -> None:
    log = make_log(
        TOKEN,
        [AUTHORIZATION_USED_TOPIC, topic("address", ALICE), topic("bytes32", NONCE)],
    )

    event = decode(log)

    assert event.name == "AuthorizationUsed"
    assert event.args == {"authorizer": ALICE, "nonce": "0x" + NONCE.hex()}
    assert event.key == "0x" + NONCE.hex()
    assert event.key == "0x000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f"


def test_authorization_canceled_is_keyed_by_its_nonce() -> None:
    log = make_log(
        TOKEN,
        [
            signature_topic("AuthorizationCanceled(address,bytes32)"),
            topic("address", BOB),
            topic("bytes32", NONCE),
        ],
    )

    event = decode(log)

    assert (event.name, event.key) == ("AuthorizationCanceled", "0x" + NONCE.hex())


def test_blacklisted_names_the_account() -> None:
    event = decode(make_log(TOKEN, [BLACKLISTED_TOPIC, topic("address", ALICE)]))

    assert event.name == "Blacklisted"
    assert event.args == {"_account": ALICE}
    assert event.key is None


def test_pause_has_no_arguments() -> None:
    log = make_log(TOKEN, [PAUSE_TOPIC])
    assert log.data == "0x"

    event = decode(log)

    assert (event.name, event.args, event.key) == ("Pause", {}, None)


# ---------------------------------------------------------------------------------------------
# Router events from an ABI entry
# ---------------------------------------------------------------------------------------------


def test_payment_settled_is_decoded_in_declaration_order_and_keyed_by_invoice() -> None:
    amount = 2**64 + 7
    fee = JS_SAFE_MAX + 1

    event = decode(payment_settled_log(amount, fee))

    assert event.name == "PaymentSettled"
    assert event.contract == ROUTER
    assert list(event.args) == ["invoiceId", "payer", "merchant", "token", "amount", "fee"]
    assert event.args == {
        "invoiceId": "0x" + INVOICE_ID.hex(),
        "payer": ALICE,
        "merchant": BOB,
        "token": TOKEN,
        "amount": str(amount),
        "fee": str(fee),
    }
    assert event.key == "0x" + INVOICE_ID.hex()
    assert EVENT_KEYS["PaymentSettled"] == "invoiceId"
    assert json.loads(json.dumps(event.args)) == event.args


def test_indexed_dynamic_values_keep_their_hash_and_arrays_are_lists() -> None:
    memo_hash = "0x" + keccak(text="order 42").hex()
    log = make_log(
        ROUTER,
        [signature_topic("Memo(bytes32,string,uint16[])"), topic("bytes32", INVOICE_ID), memo_hash],
        ["uint16[]"],
        [[1, 65535]],
    )

    event = decode(log)

    assert event.args == {
        "invoiceId": "0x" + INVOICE_ID.hex(),
        "memo": memo_hash,
        "tags": ["1", "65535"],
    }
    assert event.key is None  # Memo is not in EVENT_KEYS


def test_matching_ignores_the_case_of_address_and_topics() -> None:
    log = payment_settled_log(1, 0)
    shouting = dataclasses.replace(
        log,
        address=ROUTER.lower(),
        topics=tuple("0x" + t[2:].upper() for t in log.topics),
    )

    event = decode(shouting)

    assert event.contract == ROUTER
    assert event.args["payer"] == ALICE
    assert event.key == "0x" + INVOICE_ID.hex()


def test_decoder_addresses_are_checksummed_and_sorted() -> None:
    decoder = EventDecoder({TOKEN.lower(): FIAT_TOKEN_EVENTS_ABI, ROUTER.lower(): ROUTER_ABI})

    assert decoder.addresses == sorted([TOKEN, ROUTER])
    assert decoder.decode(transfer_log(ALICE, BOB, 1)) is not None


def test_decode_all_keeps_known_events_in_order() -> None:
    logs = [
        transfer_log(ALICE, BOB, 1),
        transfer_log(ALICE, BOB, 2, address=STRANGER),
        payment_settled_log(3, 0),
        make_log(TOKEN, [PAUSE_TOPIC]),
    ]

    events = DECODER.decode_all(logs)

    assert [event.name for event in events] == ["Transfer", "PaymentSettled", "Pause"]
    assert [event.log for event in events] == [logs[0], logs[2], logs[3]]


def test_decoded_event_is_frozen() -> None:
    event = decode(make_log(TOKEN, [PAUSE_TOPIC]))

    with pytest.raises(dataclasses.FrozenInstanceError):
        event.name = "Unpause"  # type: ignore[misc]


# ---------------------------------------------------------------------------------------------
# Logs that are not ours
# ---------------------------------------------------------------------------------------------


def test_log_of_an_unknown_contract_is_none() -> None:
    assert DECODER.decode(transfer_log(ALICE, BOB, 1, address=STRANGER)) is None


def test_event_of_one_contract_is_not_decoded_at_another() -> None:
    # The router declares no Transfer, the token no PaymentSettled.
    assert DECODER.decode(transfer_log(ALICE, BOB, 1, address=ROUTER)) is None
    assert DECODER.decode(dataclasses.replace(payment_settled_log(1, 0), address=TOKEN)) is None


@pytest.mark.parametrize(
    "topic0",
    [
        signature_topic("Approval(address,address,uint256)"),
        signature_topic("Transfer(address,address,uint128)"),
        "0x" + "00" * 32,
    ],
)
def test_log_with_an_unknown_topic_is_none(topic0: str) -> None:
    topics = [topic0, topic("address", ALICE), topic("address", BOB)]
    log = make_log(TOKEN, topics, ["uint256"], [1])

    assert DECODER.decode(log) is None


def test_log_without_topics_is_none() -> None:
    assert DECODER.decode(make_log(TOKEN, [], ["uint256"], [1])) is None


def test_anonymous_events_and_other_abi_entries_are_ignored() -> None:
    log = make_log(ROUTER, [topic("address", ALICE)])
    anonymous_topic0 = make_log(ROUTER, [signature_topic("Ping(address)"), topic("address", ALICE)])

    assert DECODER.decode(log) is None
    assert DECODER.decode(anonymous_topic0) is None


def test_erc721_style_transfer_with_an_indexed_token_id_is_none() -> None:
    # Same topic0 as an ERC-20 Transfer, but three indexed arguments and no data.
    log = make_log(
        TOKEN,
        [TRANSFER_TOPIC, topic("address", ALICE), topic("address", BOB), topic("uint256", 7)],
    )

    assert DECODER.decode(log) is None


@pytest.mark.parametrize(
    "topics",
    [
        [TRANSFER_TOPIC],
        [TRANSFER_TOPIC, topic("address", ALICE)],
        [PAUSE_TOPIC, topic("address", ALICE)],
        [BLACKLISTED_TOPIC],
        [AUTHORIZATION_USED_TOPIC, topic("address", ALICE), topic("bytes32", NONCE), PAUSE_TOPIC],
    ],
)
def test_log_with_the_wrong_number_of_topics_is_none(topics: list[str]) -> None:
    assert DECODER.decode(make_log(TOKEN, topics, ["uint256"], [1])) is None


# ---------------------------------------------------------------------------------------------
# json_safe
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("abi_type", "value", "expected"),
    [
        ("uint256", UINT256_MAX, str(UINT256_MAX)),
        ("uint8", 0, "0"),
        ("int256", -(2**255), str(-(2**255))),
        ("address", ALICE.lower(), ALICE),
        ("bytes32", NONCE, "0x" + NONCE.hex()),
        ("bytes", b"", "0x"),
        ("bytes4", b"\xde\xad\xbe\xef", "0xdeadbeef"),
        ("bool", True, True),
        ("string", "ünïcode", "ünïcode"),
        ("uint256[]", (1, 2**200), ["1", str(2**200)]),
        ("address[2]", (ALICE.lower(), BOB.lower()), [ALICE, BOB]),
        ("uint8[][]", ((1,), (2, 3)), [["1"], ["2", "3"]]),
    ],
)
def test_json_safe(abi_type: str, value: Any, expected: Any) -> None:
    safe = json_safe(abi_type, value)

    assert safe == expected
    assert json.loads(json.dumps(safe)) == expected


# ---------------------------------------------------------------------------------------------
# Round trip over the whole uint256 range
# ---------------------------------------------------------------------------------------------

addresses = st.binary(min_size=20, max_size=20).map(lambda raw: "0x" + raw.hex())
uint256s = st.one_of(
    st.integers(min_value=0, max_value=UINT256_MAX),
    st.sampled_from([0, 1, JS_SAFE_MAX, JS_SAFE_MAX + 1, UINT256_MAX - 1, UINT256_MAX]),
)


@given(sender=addresses, recipient=addresses, value=uint256s)
def test_transfer_round_trips_over_uint256(sender: str, recipient: str, value: int) -> None:
    event = decode(transfer_log(sender, recipient, value))

    assert event.args == {
        "from": to_checksum_address(sender),
        "to": to_checksum_address(recipient),
        "value": str(value),
    }
    reparsed = json.loads(json.dumps(event.args))
    assert int(reparsed["value"]) == value
    assert to_checksum_address(reparsed["from"]) == reparsed["from"]
