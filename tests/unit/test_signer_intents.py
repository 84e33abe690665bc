"""Signer intents: known-answer vectors, round trips, the one canonical form, signing hashes."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
from eth_account import Account
from eth_account.messages import defunct_hash_message, encode_typed_data
from eth_utils.address import to_checksum_address
from hypothesis import given, settings
from hypothesis import strategies as st

from seiwallet.chain.router import (
    Payment,
    Refund,
    payment_authorization,
    payment_nonce,
    refund_authorization,
)
from seiwallet.chain.tokens import (
    RECEIVE_WITH_AUTHORIZATION,
    TRANSFER_WITH_AUTHORIZATION,
    Authorization3009,
    TokenDomain,
    authorization_digest,
    authorization_typed_data,
)
from seiwallet.errors import InvalidInput
from seiwallet.signer import export
from seiwallet.signer.errors import IntentInvalid
from seiwallet.signer.intents import (
    EXPORT_CURVES,
    INTENT_TYPES,
    SAFE_DOMAIN_TYPEHASH,
    SAFE_TX_TYPEHASH,
    Erc3009Transfer,
    Intent,
    KeyExport,
    MessageSign,
    PolicyUpdate,
    RouterPay,
    RouterRefund,
    SafeSign,
    Spend,
    _lean_transfer,
    canonical_bytes,
    describe,
    intent_digest,
    parse_intent,
    parse_intent_with_digest,
    signing_hash,
    spend,
)
from seiwallet.signer.policy import INTENT_KINDS

VECTORS: list[dict[str, Any]] = json.loads(
    (Path(__file__).parents[1] / "vectors" / "intents.json").read_text(encoding="utf-8")
)["vectors"]

# A throwaway key (never holds funds): eth-account signs with it to cross-check our hashes.
ACCOUNT = Account.from_key("0x" + "4c" * 32)
USDC = TokenDomain("USD Coin", "2", 1329, "0x3894085Ef7Ff0f0aeDf52E2A2704928d1Ec074F1")
ROUTER = "0x9fE46736679d2D9a65F0992F2272dE9f3c7fa6e0"
MERCHANT = "0x15d34AAf54267DB7D7c367839AAf71A00a2C6A65"
FRIEND = "0x70997970C51812dc3A010C7d01b50e0d17dc79C8"
ZERO = "0x" + "00" * 20
UINT256_MAX = 2**256 - 1


def transfer(**changes: Any) -> Erc3009Transfer:
    fields: dict[str, Any] = {
        "token": USDC,
        "to": FRIEND,
        "amount_units": 4_200_000,
        "valid_after": 0,
        "valid_before": 2_000_000_000,
        "nonce": b"\x07" * 32,
    }
    return Erc3009Transfer(**(fields | changes))


def pay(**changes: Any) -> RouterPay:
    fields: dict[str, Any] = {
        "token": USDC,
        "router": ROUTER,
        "invoice_id": b"\x12" * 32,
        "merchant": MERCHANT,
        "amount_units": 25_500_000,
        "fee_units": 255_000,
        "valid_after": 0,
        "valid_before": 2_000_000_000,
    }
    return RouterPay(**(fields | changes))


def refund(**changes: Any) -> RouterRefund:
    fields: dict[str, Any] = {
        "token": USDC,
        "router": ROUTER,
        "invoice_id": b"\x12" * 32,
        "merchant": MERCHANT,
        "payment_amount_units": 25_500_000,
        "payment_fee_units": 255_000,
        "payer": ACCOUNT.address,
        "refund_id": b"\xab" * 32,
        "amount_units": 5_000_000,
        "valid_after": 0,
        "valid_before": 2_000_000_000,
    }
    return RouterRefund(**(fields | changes))


def safe_tx(**changes: Any) -> SafeSign:
    fields: dict[str, Any] = {
        "safe": "0xcBa28b38103307Ec8dA98377ffF9816C164f9AFa",
        "chain_id": 1329,
        "to": FRIEND,
        "value": 10**18,
        "data": b"",
        "operation": 0,
        "safe_tx_gas": 0,
        "base_gas": 0,
        "gas_price": 0,
        "gas_token": ZERO,
        "refund_receiver": ZERO,
        "nonce": 7,
        "safe_version": "1.4.1",
    }
    return SafeSign(**(fields | changes))


MAIL: dict[str, Any] = next(
    v["intent"]["typed_data"] for v in VECTORS if "typed_data" in v["intent"]
)


def every_kind() -> list[Intent]:
    return [
        transfer(),
        pay(),
        refund(),
        safe_tx(),
        MessageSign(origin="https://app.example", message=b"hi"),
        MessageSign(origin="https://app.example", typed_data=MAIL),
        PolicyUpdate(policy={"format": 1}, expected_version=0),
        KeyExport(recipient_public_key=b"\x02" * 33),
    ]


# -- known answers ---------------------------------------------------------------------------


@pytest.mark.parametrize("vector", VECTORS, ids=[v["name"] for v in VECTORS])
def test_vector(vector: dict[str, Any]) -> None:
    intent = parse_intent(vector["intent"])
    assert intent.to_json() == vector["intent"]
    assert canonical_bytes(intent).hex() == vector["canonical_hex"]
    assert "0x" + intent_digest(intent).hex() == vector["digest"]
    found = signing_hash(intent, vector["wallet_address"])
    assert (None if found is None else "0x" + found.hex()) == vector["signing_hash"]
    moved = spend(intent, vector["wallet_address"])
    expected = vector["spend"]
    if expected is None:
        assert moved is None
    else:
        assert moved == Spend(
            chain_id=expected["chain_id"],
            token=expected["token"],
            amount_units=int(expected["amount_units"]),
            recipient=expected["recipient"],
        )
    assert describe(intent) == vector["describe"]


def test_vectors_cover_every_kind() -> None:
    assert {v["intent"]["kind"] for v in VECTORS} == {kind for kind, _ in INTENT_TYPES}


def test_the_policy_knows_the_same_kinds() -> None:
    assert {kind for kind, _ in INTENT_TYPES} == set(INTENT_KINDS)


def test_canonical_bytes_are_sorted_compact_utf8() -> None:
    vector = next(v for v in VECTORS if v["intent"]["kind"] == "policy.update")
    canonical = bytes.fromhex(vector["canonical_hex"])
    assert "Grüße 👋".encode() in canonical  # written as is, not \\u-escaped
    assert b" " not in canonical.replace("Grüße 👋".encode(), b"")
    assert canonical == json.dumps(
        vector["intent"], sort_keys=True, separators=(",", ":"), ensure_ascii=False
    ).encode("utf-8")


def test_export_curves_are_the_export_modules() -> None:
    assert set(EXPORT_CURVES) == set(export.CURVES)
    vector = next(v for v in VECTORS if v["intent"]["kind"] == "key.export")
    intent = parse_intent(vector["intent"])
    assert isinstance(intent, KeyExport)
    export.load_recipient_public_key(intent.recipient_public_key, curve=intent.curve)


def test_safe_typehashes_are_the_contracts() -> None:
    # safe-global/safe-smart-account, Safe.sol (1.3.0 and 1.4.1).
    assert SAFE_TX_TYPEHASH.hex() == (
        "bb8310d486368db6bd6f849402fdd73ad53d316b5a4b2644ad6efe0f941286d8"
    )
    assert SAFE_DOMAIN_TYPEHASH.hex() == (
        "47e79534a245952e8b16893a336b85a3d9ea9fa8c573f3d803afb92a79469218"
    )


# -- round trips and the one canonical form ---------------------------------------------------

addresses = st.binary(min_size=20, max_size=20).filter(any).map(to_checksum_address)
uint256 = st.integers(min_value=0, max_value=UINT256_MAX)
domains = st.builds(
    TokenDomain,
    name=st.text(st.characters(categories=["L", "N", "Zs"]), min_size=1, max_size=20),
    version=st.sampled_from(["1", "2"]),
    chain_id=st.integers(min_value=1, max_value=2**64),
    verifying_contract=addresses,
)


@st.composite
def transfers(draw: st.DrawFn) -> Erc3009Transfer:
    after = draw(st.integers(min_value=0, max_value=UINT256_MAX - 1))
    return Erc3009Transfer(
        token=draw(domains),
        to=draw(addresses),
        amount_units=draw(st.integers(min_value=1, max_value=UINT256_MAX)),
        valid_after=after,
        valid_before=draw(st.integers(min_value=after + 1, max_value=UINT256_MAX)),
        nonce=draw(st.binary(min_size=32, max_size=32)),
    )


@given(transfers())
def test_transfer_round_trips(intent: Erc3009Transfer) -> None:
    data = intent.to_json()
    assert parse_intent(data) == intent
    # What a client sends through a real JSON parser and back is the same intent.
    assert parse_intent(json.loads(json.dumps(data))) == intent
    assert canonical_bytes(parse_intent(data)) == canonical_bytes(intent)


@pytest.mark.parametrize("intent", every_kind(), ids=lambda i: i.KIND)
def test_every_kind_round_trips(intent: Intent) -> None:
    data = intent.to_json()
    assert data["kind"] == intent.KIND
    assert data["version"] == 1
    again = parse_intent(json.loads(json.dumps(data)))
    assert again == intent
    assert canonical_bytes(again) == canonical_bytes(intent)
    assert len(intent_digest(intent)) == 32


@pytest.mark.parametrize("intent", every_kind(), ids=lambda i: i.KIND)
def test_key_order_does_not_change_the_digest(intent: Intent) -> None:
    data = intent.to_json()
    shuffled = dict(reversed(list(data.items())))
    assert intent_digest(parse_intent(shuffled)) == intent_digest(intent)


def test_digests_differ_for_different_intents() -> None:
    digests = {intent_digest(intent) for intent in every_kind()}
    digests |= {
        intent_digest(transfer(amount_units=4_200_001)),
        intent_digest(transfer(to=MERCHANT)),
        intent_digest(pay(fee_units=0)),
        intent_digest(refund(amount_units=1)),
    }
    assert len(digests) == len(every_kind()) + 4


def test_a_message_and_a_policy_are_domain_separated_from_each_other() -> None:
    # The kind is inside the canonical bytes: no two kinds share an encoding.
    message = MessageSign(origin="https://app.example", message=b"")
    assert b'"kind":"message.sign"' in canonical_bytes(message)


def test_typed_data_is_frozen_against_later_changes() -> None:
    typed = copy.deepcopy(MAIL)
    intent = MessageSign(origin="https://app.example", typed_data=typed)
    before = (intent_digest(intent), signing_hash(intent, ACCOUNT.address))
    typed["message"]["contents"] = "Send me everything"
    assert (intent_digest(intent), signing_hash(intent, ACCOUNT.address)) == before
    out = intent.to_json()
    out["typed_data"]["message"]["contents"] = "changed"
    assert intent.to_json()["typed_data"]["message"]["contents"] == "Hello, Bob!"


def test_policy_is_frozen_against_later_changes() -> None:
    document: dict[str, Any] = {"format": 1, "allowlist": [FRIEND]}
    intent = PolicyUpdate(policy=document, expected_version=2)
    digest = intent_digest(intent)
    document["allowlist"].append(MERCHANT)
    assert intent_digest(intent) == digest


def test_python_callers_may_write_addresses_in_one_case() -> None:
    lower = transfer(to=FRIEND.lower())
    assert lower.to == FRIEND
    assert lower == transfer()


# -- strict parsing --------------------------------------------------------------------------


def _with(data: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    changed = copy.deepcopy(data)
    *parents, last = path.split(".")
    target = changed
    for key in parents:
        target = target[key]
    if value is _DELETE:
        del target[last]
    else:
        target[last] = value
    return changed


_DELETE = object()
TRANSFER_JSON = transfer().to_json()


@pytest.mark.parametrize(
    ("path", "value", "named"),
    [
        ("kind", "erc3009.transferFrom", "unknown intent kind"),
        ("kind", _DELETE, "unknown intent kind"),
        ("version", 2, "version 2 is unknown"),
        ("version", "1", "version '1' is unknown"),
        ("version", True, "version True is unknown"),
        ("version", _DELETE, "version None is unknown"),
        ("memo", "hi", "memo is not a field"),
        ("to", _DELETE, "to is missing"),
        ("amount_units", 4200000, "amount_units must be a decimal string"),
        ("amount_units", "04200000", "amount_units must be a decimal string"),
        ("amount_units", "+4200000", "amount_units must be a decimal string"),
        ("amount_units", " 4200000", "amount_units must be a decimal string"),
        ("amount_units", "4200000.0", "amount_units must be a decimal string"),
        ("amount_units", "-1", "amount_units must be a decimal string"),
        ("amount_units", "٤٢", "amount_units must be a decimal string"),  # Arabic-Indic digits
        ("amount_units", str(2**256), "amount_units exceeds 2**256-1"),
        ("amount_units", "0", "amount_units must be positive"),
        ("to", FRIEND.lower(), "to must be written with its EIP-55 checksum"),
        ("to", FRIEND.upper().replace("0X", "0x"), "to must be written with its EIP-55"),
        ("to", FRIEND.replace("C8", "c8"), "to must be written with its EIP-55 checksum"),
        ("to", FRIEND[:-1], "to must be a 0x-prefixed 20-byte address"),
        ("to", FRIEND[2:], "to must be a 0x-prefixed 20-byte address"),
        ("to", ZERO, "to cannot be the zero address"),
        ("nonce", "0x" + "AB" * 32, "nonce must be 0x followed by lowercase hex"),
        ("nonce", "ab" * 32, "nonce must be 0x followed by lowercase hex"),
        ("nonce", "0x" + "ab" * 31 + "a", "nonce must be 0x followed by lowercase hex"),
        ("nonce", "0x" + "ab" * 31, "nonce must be exactly 32 bytes long"),
        ("token.decimals", 6, "token.decimals is not a field"),
        ("token.chain_id", 1329, "token.chain_id must be a decimal string"),
        ("token.chain_id", "0", "token.chain_id must be positive"),
        ("token.name", "USD\u202eCoin", "token.name contains the invisible character U+202E"),
        ("token.name", "", "token.name must be a non-empty string"),
        ("token.verifying_contract", _DELETE, "token.verifying_contract is missing"),
        ("valid_before", "0", "valid_before must be later than valid_after"),
    ],
)
def test_parse_refuses(path: str, value: Any, named: str) -> None:
    with pytest.raises(IntentInvalid) as caught:
        parse_intent(_with(TRANSFER_JSON, path, value))
    assert named in str(caught.value)
    assert isinstance(caught.value, InvalidInput)  # a 422 at the edge
    # The signer's lean path refuses it too, with the very same words.
    assert _lean_transfer(_with(TRANSFER_JSON, path, value)) is None
    with pytest.raises(IntentInvalid) as again:
        parse_intent_with_digest(_with(TRANSFER_JSON, path, value))
    assert str(again.value) == str(caught.value)


# -- the signer's lean path for transfers -----------------------------------------------------

# Token names as printable ASCII (the lean path writes their canonical bytes with orjson), with
# the characters JSON escapes, and beyond ASCII (written by the json module).
token_names = st.one_of(
    st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), min_size=1, max_size=30),
    st.sampled_from(['USD "Coin"', "back\\slash", "Ünïcödé €", "名前", "emoji 😀", "a\u2028b"]),
    st.text(min_size=1, max_size=12),
)


@st.composite
def transfer_documents(draw: st.DrawFn) -> dict[str, Any]:
    intent = draw(transfers())
    token = TokenDomain(
        draw(token_names), draw(token_names), intent.token.chain_id, intent.token.verifying_contract
    )
    data = intent.to_json()
    data["token"] = {**data["token"], "name": token.name, "version": token.version}
    return data


def _outcome(parse: Any, data: Any) -> tuple[str, Any]:
    """What a parser makes of ``data``: ("ok", its result) or ("refused", the message)."""
    try:
        return "ok", parse(data)
    except IntentInvalid as refused:
        return "refused", str(refused)


@given(transfer_documents())
@settings(max_examples=300)
def test_the_lean_path_is_the_general_one(data: dict[str, Any]) -> None:
    general = _outcome(parse_intent, data)
    if general[0] == "refused":  # a name the constructor refuses (control characters)
        assert _outcome(parse_intent_with_digest, data) == general
        return
    expected = general[1]
    intent, digest = parse_intent_with_digest(data)
    assert intent == expected
    assert type(intent) is Erc3009Transfer
    assert digest == intent_digest(expected)
    lean = _lean_transfer(data)
    assert lean is not None
    assert lean[1] == canonical_bytes(expected)
    assert signing_hash(intent, ACCOUNT.address) == signing_hash(expected, ACCOUNT.address)
    assert describe(intent) == describe(expected)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=80),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=6,
)


@given(
    st.sampled_from(
        [
            "kind", "version", "token", "to", "amount_units", "valid_after", "valid_before",
            "nonce", "token.name", "token.version", "token.chain_id", "token.verifying_contract",
            "extra", "token.extra",
        ]
    ),
    json_values,
)  # fmt: skip
@settings(max_examples=500)
def test_the_lean_path_refuses_what_the_general_one_refuses(path: str, value: Any) -> None:
    data = _with(TRANSFER_JSON, path, value)
    general = _outcome(parse_intent, data)
    if general[0] == "ok":
        general = ("ok", (general[1], intent_digest(general[1])))
    assert _outcome(parse_intent_with_digest, data) == general


@pytest.mark.parametrize(
    ("path", "value"),
    [
        ("nonce", "0x" + "ab" * 32),
        ("nonce", "0x" + "12" * 32),  # digits only: no case at all
        ("nonce", "0x" + "AB" * 32),
        ("nonce", "0x" + "ab" * 31 + "aB"),
        ("nonce", "0X" + "ab" * 32),
        ("nonce", "0x" + "ab " * 21 + "a"),  # 64 characters, spaces among them
        ("nonce", "0x" + "ab" * 31 + "\u0661\u0662"),  # Arabic-Indic digits
        ("nonce", "0x" + "ab" * 33),
        ("to", "0x" + "0" * 40),
        ("to", "0x" + "00" * 19 + "01"),
    ],
)
def test_the_lean_path_reads_nonces_and_recipients_as_the_general_one(
    path: str, value: str
) -> None:
    data = _with(TRANSFER_JSON, path, value)
    general = _outcome(parse_intent, data)
    if general[0] == "ok":
        general = ("ok", (general[1], intent_digest(general[1])))
    assert _outcome(parse_intent_with_digest, data) == general


def test_other_kinds_take_the_general_path() -> None:
    for intent in every_kind():
        data = intent.to_json()
        assert parse_intent_with_digest(data) == (intent, intent_digest(intent))
        assert (_lean_transfer(data) is not None) == isinstance(intent, Erc3009Transfer)


def test_parse_refuses_what_is_not_an_object() -> None:
    with pytest.raises(IntentInvalid, match="must be a JSON object"):
        parse_intent([TRANSFER_JSON])  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("data", "named"),
    [
        (_with(safe_tx().to_json(), "operation", True), "operation must be a JSON integer"),
        (_with(safe_tx().to_json(), "operation", "0"), "operation must be a JSON integer"),
        (_with(safe_tx().to_json(), "operation", 2), "operation must be an integer from 0 to 1"),
        (_with(safe_tx().to_json(), "safe_version", "1.2.0"), "safe_version must be one of"),
        (
            {"kind": "message.sign", "version": 1, "origin": "https://a.example", "message": None},
            "message must be 0x followed by",
        ),
        (
            {"kind": "message.sign", "version": 1, "origin": "https://a.example"},
            "message or typed_data must be given",
        ),
        (
            {
                "kind": "message.sign",
                "version": 1,
                "origin": "https://a.example",
                "message": "0x00",
                "typed_data": MAIL,
            },
            "message or typed_data must be given, and not both",
        ),
        (
            {"kind": "policy.update", "version": 1, "policy": [], "expected_version": 1},
            "policy must be a JSON object",
        ),
        (
            {"kind": "policy.update", "version": 1, "policy": {"x": 1.5}, "expected_version": 1},
            "policy.x holds a floating-point number",
        ),
        (
            {"kind": "policy.update", "version": 1, "policy": {"x": 2**53}, "expected_version": 1},
            "policy.x holds an integer beyond 2**53-1",
        ),
        (
            {
                "kind": "policy.update",
                "version": 1,
                "policy": {"x": "\ud800"},
                "expected_version": 1,
            },
            "lone surrogate",
        ),
        (
            {"kind": "policy.update", "version": 1, "policy": {}, "expected_version": -1},
            "expected_version must be an integer from 0",
        ),
        (
            {"kind": "key.export", "version": 1, "recipient_public_key": "0x01", "curve": "P-256"},
            "recipient_public_key must be 33 to 256 bytes long",
        ),
        (
            {"kind": "key.export", "version": 1, "recipient_public_key": "0x" + "02" * 33},
            "curve is missing",
        ),
    ],
)
def test_parse_refuses_other_kinds(data: dict[str, Any], named: str) -> None:
    with pytest.raises(IntentInvalid) as caught:
        parse_intent(data)
    assert named in str(caught.value)


def test_deeply_nested_documents_are_refused() -> None:
    nested: dict[str, Any] = {}
    inner = nested
    for _ in range(40):
        inner["x"] = {}
        inner = inner["x"]
    with pytest.raises(IntentInvalid, match="nested deeper than"):
        PolicyUpdate(policy=nested, expected_version=0)


# -- constructors check the terms ------------------------------------------------------------


@pytest.mark.parametrize(
    ("build", "named"),
    [
        (lambda: transfer(to=ZERO), "to cannot be the zero address"),
        (lambda: transfer(amount_units=0), "amount_units must be positive"),
        (lambda: transfer(amount_units=-1), "amount_units must be an integer"),
        (lambda: transfer(amount_units=True), "amount_units must be an integer"),
        (lambda: transfer(amount_units=UINT256_MAX + 1), "amount_units must be an integer"),
        (lambda: transfer(to=FRIEND.replace("C8", "c8")), "to does not match its EIP-55 checksum"),
        (lambda: transfer(nonce=b"\x00" * 31), "nonce must be exactly 32 bytes"),
        (lambda: transfer(nonce="00" * 32), "nonce must be bytes"),
        (lambda: transfer(valid_after=5, valid_before=5), "valid_before must be later"),
        (lambda: transfer(token=USDC.as_dict()), "token must be a TokenDomain"),
        (lambda: pay(fee_units=25_500_001), "fee_units cannot exceed amount_units"),
        (lambda: pay(merchant=ZERO), "merchant cannot be the zero address"),
        (lambda: pay(invoice_id=b"\x12" * 16), "invoice_id must be exactly 32 bytes"),
        (lambda: refund(amount_units=25_500_001), "amount_units cannot exceed the amount paid"),
        (lambda: refund(payer=ZERO), "payer cannot be the zero address"),
        (lambda: safe_tx(safe_version="1.1.1"), "safe_version must be one of 1.3.0, 1.4.1"),
        (lambda: safe_tx(chain_id=0), "chain_id must be positive"),
        (lambda: safe_tx(data=b"\x00" * (128 * 1024 + 1)), "data must be 0 to 131072 bytes"),
        (lambda: MessageSign(origin="https://app.example/pay", message=b""), "origin must be"),
        (lambda: MessageSign(origin="https://App.example", message=b""), "origin must be"),
        (lambda: MessageSign(origin="javascript://x", message=b""), "origin must be"),
        (lambda: MessageSign(origin="https://u@app.example", message=b""), "origin must be"),
        (lambda: MessageSign(origin="https://[::1", message=b""), "origin must be"),
        (lambda: KeyExport(recipient_public_key=b"\x04" * 257), "must be 33 to 256 bytes"),
        (lambda: KeyExport(recipient_public_key=b"\x02" * 33, curve="X25519"), "curve must be"),
    ],
)
def test_constructors_refuse(build: Any, named: str) -> None:
    with pytest.raises(IntentInvalid) as caught:
        build()
    assert named in str(caught.value)


@pytest.mark.parametrize(
    "primary_type",
    [TRANSFER_WITH_AUTHORIZATION, RECEIVE_WITH_AUTHORIZATION, "CancelAuthorization", "SafeTx"],
)
def test_money_moving_typed_data_must_come_as_its_own_intent(primary_type: str) -> None:
    typed = authorization_typed_data(
        USDC,
        Authorization3009(ACCOUNT.address, FRIEND, 10**12, 0, 2**40, b"\x01" * 32),
        TRANSFER_WITH_AUTHORIZATION,
    )
    typed["primaryType"] = primary_type
    typed["types"][primary_type] = typed["types"].pop(TRANSFER_WITH_AUTHORIZATION)
    typed["message"]["nonce"] = "0x" + typed["message"]["nonce"].hex()
    with pytest.raises(IntentInvalid, match="moves money"):
        MessageSign(origin="https://evil.example", typed_data=typed)


def test_invalid_typed_data_is_refused() -> None:
    broken = _with(MAIL, "primaryType", "Letter")
    with pytest.raises(IntentInvalid, match="is not valid EIP-712 typed data"):
        MessageSign(origin="https://app.example", typed_data=broken)


# -- what the wallet key signs ---------------------------------------------------------------


def _eth_account_hash(typed_data: dict[str, Any]) -> bytes:
    """The hash eth-account signs for typed data: an implementation independent of ours."""
    signed = Account.sign_message(encode_typed_data(full_message=typed_data), ACCOUNT.key)
    return bytes(signed.message_hash)


@settings(max_examples=25, deadline=None)
@given(transfers())
def test_transfer_signing_hash_is_eip3009_typed_data(intent: Erc3009Transfer) -> None:
    authorization = Authorization3009(
        from_address=ACCOUNT.address,
        to=intent.to,
        value=intent.amount_units,
        valid_after=intent.valid_after,
        valid_before=intent.valid_before,
        nonce=intent.nonce,
    )
    typed = authorization_typed_data(intent.token, authorization, TRANSFER_WITH_AUTHORIZATION)
    assert signing_hash(intent, ACCOUNT.address) == _eth_account_hash(typed)


def test_signing_hash_depends_on_the_wallet() -> None:
    assert signing_hash(transfer(), ACCOUNT.address) != signing_hash(transfer(), MERCHANT)


def test_router_pay_signs_the_routers_terms() -> None:
    intent = pay()
    payment = Payment(
        invoice_id=intent.invoice_id,
        merchant=intent.merchant,
        token=USDC.verifying_contract,
        amount_units=intent.amount_units,
        fee_units=intent.fee_units,
    )
    authorization = payment_authorization(
        payment,
        payer=ACCOUNT.address,
        router=ROUTER,
        chain_id=USDC.chain_id,
        valid_after=intent.valid_after,
        valid_before=intent.valid_before,
    )
    assert authorization.nonce == payment_nonce(payment, router=ROUTER, chain_id=USDC.chain_id)
    expected = authorization_digest(USDC, authorization, RECEIVE_WITH_AUTHORIZATION)
    assert signing_hash(intent, ACCOUNT.address) == expected
    typed = authorization_typed_data(USDC, authorization, RECEIVE_WITH_AUTHORIZATION)
    assert expected == _eth_account_hash(typed)


@pytest.mark.parametrize(
    "change",
    [
        {"merchant": FRIEND},
        {"amount_units": 25_500_001},
        {"fee_units": 0},
        {"invoice_id": b"\x13" * 32},
        {"router": MERCHANT},
        {"token": TokenDomain("USD Coin", "2", 1, USDC.verifying_contract)},
    ],
)
def test_every_payment_term_changes_what_is_signed(change: dict[str, Any]) -> None:
    assert signing_hash(pay(**change), ACCOUNT.address) != signing_hash(pay(), ACCOUNT.address)


def test_router_refund_signs_the_routers_terms_as_the_merchant() -> None:
    intent = refund()
    payment = Payment(intent.invoice_id, MERCHANT, USDC.verifying_contract, 25_500_000, 255_000)
    authorization = refund_authorization(
        Refund(payment, ACCOUNT.address, intent.refund_id, intent.amount_units),
        router=ROUTER,
        chain_id=USDC.chain_id,
        valid_after=intent.valid_after,
        valid_before=intent.valid_before,
    )
    expected = authorization_digest(USDC, authorization, RECEIVE_WITH_AUTHORIZATION)
    assert signing_hash(intent, MERCHANT) == expected
    assert signing_hash(intent, MERCHANT.lower()) == expected


def test_only_the_merchants_wallet_signs_a_refund() -> None:
    with pytest.raises(IntentInvalid, match="not this wallet"):
        signing_hash(refund(), ACCOUNT.address)


safe_transactions = st.builds(
    safe_tx,
    chain_id=st.integers(min_value=1, max_value=2**64),
    to=addresses,
    value=uint256,
    data=st.binary(max_size=200),
    operation=st.sampled_from([0, 1]),
    safe_tx_gas=uint256,
    base_gas=uint256,
    gas_price=uint256,
    gas_token=addresses,
    refund_receiver=addresses,
    nonce=uint256,
    safe_version=st.sampled_from(["1.3.0", "1.4.1"]),
)


@settings(max_examples=25, deadline=None)
@given(safe_transactions)
def test_safe_hash_is_the_safetx_typed_data(intent: SafeSign) -> None:
    typed = {
        "types": {
            "EIP712Domain": [
                {"name": "chainId", "type": "uint256"},
                {"name": "verifyingContract", "type": "address"},
            ],
            "SafeTx": [
                {"name": "to", "type": "address"},
                {"name": "value", "type": "uint256"},
                {"name": "data", "type": "bytes"},
                {"name": "operation", "type": "uint8"},
                {"name": "safeTxGas", "type": "uint256"},
                {"name": "baseGas", "type": "uint256"},
                {"name": "gasPrice", "type": "uint256"},
                {"name": "gasToken", "type": "address"},
                {"name": "refundReceiver", "type": "address"},
                {"name": "nonce", "type": "uint256"},
            ],
        },
        "primaryType": "SafeTx",
        "domain": {"chainId": intent.chain_id, "verifyingContract": intent.safe},
        "message": {
            "to": intent.to,
            "value": intent.value,
            "data": intent.data,
            "operation": intent.operation,
            "safeTxGas": intent.safe_tx_gas,
            "baseGas": intent.base_gas,
            "gasPrice": intent.gas_price,
            "gasToken": intent.gas_token,
            "refundReceiver": intent.refund_receiver,
            "nonce": intent.nonce,
        },
    }
    assert signing_hash(intent, ACCOUNT.address) == _eth_account_hash(typed)


@given(st.binary(max_size=300))
def test_personal_message_hash_is_eip191(message: bytes) -> None:
    intent = MessageSign(origin="https://app.example", message=message)
    assert signing_hash(intent, ACCOUNT.address) == bytes(defunct_hash_message(primitive=message))


def test_typed_data_hash_is_eip712() -> None:
    intent = MessageSign(origin="https://app.example", typed_data=MAIL)
    assert signing_hash(intent, ACCOUNT.address) == _eth_account_hash(copy.deepcopy(MAIL))


@pytest.mark.parametrize(
    "intent",
    [PolicyUpdate(policy={}, expected_version=0), KeyExport(recipient_public_key=b"\x02" * 33)],
    ids=lambda i: i.KIND,
)
def test_no_chain_signature_for_signer_actions(intent: Intent) -> None:
    assert signing_hash(intent, ACCOUNT.address) is None
    assert spend(intent, ACCOUNT.address) is None


def test_a_bad_wallet_address_is_refused() -> None:
    with pytest.raises(IntentInvalid, match="wallet_address"):
        signing_hash(transfer(), "0x1234")


# -- what the policy sees, what people read --------------------------------------------------


def test_spends() -> None:
    wallet = ACCOUNT.address
    assert spend(transfer(), wallet) == Spend(1329, USDC.verifying_contract, 4_200_000, FRIEND)
    assert spend(pay(), wallet) == Spend(1329, USDC.verifying_contract, 25_500_000, MERCHANT)
    assert spend(refund(), MERCHANT) == Spend(1329, USDC.verifying_contract, 5_000_000, wallet)
    assert spend(safe_tx(), wallet) is None
    assert spend(MessageSign(origin="https://app.example", message=b""), wallet) is None


def test_describe_is_one_line_even_for_hostile_names() -> None:
    # A dApp names its own types: a newline or a right-to-left override must not reach screens.
    hostile = "Mail\u202e\nPay 0 USDC"
    typed = copy.deepcopy(MAIL)
    typed["types"][hostile] = typed["types"].pop("Mail")
    typed["primaryType"] = hostile
    intent = MessageSign(origin="https://app.example", typed_data=typed)
    assert describe(intent) == "Sign Mail??Pay 0 USDC typed data for https://app.example"
    for each in every_kind():
        line = describe(each)
        assert line
        assert "\n" not in line


def test_describe_flags_delegatecall() -> None:
    assert "DELEGATECALL" in describe(safe_tx(operation=1))
    assert "DELEGATECALL" not in describe(safe_tx(operation=0))
