"""Sei account addresses: known-answer vectors, round trips, properties and every rejection."""

from __future__ import annotations

import contextlib
import hashlib
import json
from pathlib import Path
from typing import Any

import bech32
import coincurve
import pytest
from eth_keys.datatypes import PrivateKey
from hypothesis import assume, given
from hypothesis import strategies as st

from seiwallet.addresses import (
    ZERO_ADDRESS,
    AddressPair,
    InvalidAddress,
    InvalidPublicKey,
    SeiAddress,
    associations,
    decode_sei_address,
    evm_address_from_public_key,
    is_zero_address,
    parse_address,
    parse_evm_address,
    parse_sei_address,
    sei_address_from_public_key,
)
from seiwallet.errors import InvalidInput, SeiwalletError

VECTORS: dict[str, Any] = json.loads(
    (Path(__file__).parents[1] / "vectors" / "addresses.json").read_text(encoding="utf-8")
)
KEY_VECTORS: list[dict[str, Any]] = VECTORS["key_vectors"]
SECP256K1_ORDER = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141

LEDGER = KEY_VECTORS[0]
LEDGER_EVM: str = LEDGER["evm_address"]
LEDGER_SEI: str = LEDGER["sei_address"]
CONTRACT_SEI: str = VECTORS["bech32_vectors"][1]["sei_address"]

private_keys = st.integers(min_value=1, max_value=SECP256K1_ORDER - 1).map(
    lambda secret: coincurve.PrivateKey(secret.to_bytes(32, "big"))
)


def _public_key_forms(compressed_hex: str) -> dict[str, bytes]:
    """The three accepted encodings of one public key."""
    key = coincurve.PublicKey(bytes.fromhex(compressed_hex))
    uncompressed = key.format(compressed=False)
    return {"compressed": key.format(), "uncompressed": uncompressed, "raw": uncompressed[1:]}


def _has_hashlib_ripemd160() -> bool:
    try:
        hashlib.new("ripemd160")
    except ValueError:
        return False
    return True


# ---------------------------------------------------------------------------------------------
# Known answers
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("vector", KEY_VECTORS, ids=[v["name"] for v in KEY_VECTORS])
def test_key_vector(vector: dict[str, Any]) -> None:
    if vector["private_key"] is not None:
        private = coincurve.PrivateKey(bytes.fromhex(vector["private_key"]))
        assert private.public_key.format().hex() == vector["public_key_compressed"]
    forms = _public_key_forms(vector["public_key_compressed"])
    if "public_key_uncompressed" in vector:
        assert forms["uncompressed"].hex() == vector["public_key_uncompressed"]
    for pubkey in forms.values():
        assert evm_address_from_public_key(pubkey) == vector["evm_address"]
        assert sei_address_from_public_key(pubkey) == vector["sei_address"]
        assert AddressPair.from_public_key(pubkey) == AddressPair(
            evm=vector["evm_address"], sei=vector["sei_address"]
        )
    if "sei_payload" in vector:
        assert decode_sei_address(vector["sei_address"]).hex() == vector["sei_payload"]


@pytest.mark.parametrize("vector", KEY_VECTORS, ids=[v["name"] for v in KEY_VECTORS])
def test_key_vector_addresses_parse_back(vector: dict[str, Any]) -> None:
    evm, sei = vector["evm_address"], vector["sei_address"]
    assert parse_evm_address(evm) == evm
    assert parse_evm_address(evm.lower()) == evm
    assert parse_evm_address("0x" + evm[2:].upper()) == evm
    assert parse_sei_address(sei) == sei
    assert parse_sei_address(sei.upper()) == sei
    assert parse_address(evm) == evm
    pair = AddressPair.from_public_key(bytes.fromhex(vector["public_key_compressed"]))
    assert parse_address(sei, known=associations([pair])) == evm


def test_every_vector_names_a_source_for_every_field() -> None:
    for vector in KEY_VECTORS:
        assert set(vector["sources"]) == {"public_key", "evm_address", "sei_address"}
        assert all(vector["sources"].values())


@pytest.mark.parametrize(
    "vector", VECTORS["bech32_vectors"], ids=[v["kind"] for v in VECTORS["bech32_vectors"]]
)
def test_bech32_vector(vector: dict[str, str]) -> None:
    payload = decode_sei_address(vector["sei_address"])
    assert payload.hex() == vector["payload"]
    assert len(payload) == {"account": 20, "contract": 32}[vector["kind"]]
    assert parse_sei_address(vector["sei_address"]) == vector["sei_address"]


@pytest.mark.parametrize(
    "pair", VECTORS["association_pairs"]["pairs"], ids=lambda pair: pair["sei_address"]
)
def test_published_association_pairs_resolve(pair: dict[str, str]) -> None:
    known = {pair["sei_address"]: pair["evm_address"]}
    assert parse_evm_address(pair["evm_address"]) == pair["evm_address"]
    assert parse_address(pair["sei_address"], known=known) == pair["evm_address"]
    assert parse_address(pair["sei_address"].upper(), known=known) == pair["evm_address"]
    assert parse_address(pair["sei_address"], known=known.get) == pair["evm_address"]


@pytest.mark.parametrize("address", VECTORS["eip55"]["normal"])
def test_eip55_checksummed_addresses_are_returned_unchanged(address: str) -> None:
    assert parse_evm_address(address) == address
    assert parse_evm_address(address.lower()) == address


@pytest.mark.parametrize("address", VECTORS["eip55"]["all_caps"] + VECTORS["eip55"]["all_lower"])
def test_eip55_single_case_addresses_are_accepted(address: str) -> None:
    parsed = parse_evm_address(address)
    assert parsed.lower() == address.lower()
    assert parse_evm_address(parsed) == parsed


@pytest.mark.parametrize("address", VECTORS["eip55"]["normal"])
def test_eip55_one_flipped_letter_is_refused(address: str) -> None:
    index = next(i for i, char in enumerate(address) if i >= 2 and char.isalpha())
    flipped = address[:index] + address[index].swapcase() + address[index + 1 :]
    with pytest.raises(InvalidAddress, match="does not match its EIP-55 checksum"):
        parse_evm_address(flipped)


# ---------------------------------------------------------------------------------------------
# Properties
# ---------------------------------------------------------------------------------------------


@given(private_keys)
def test_any_key_gives_the_same_pair_from_every_encoding(private: coincurve.PrivateKey) -> None:
    forms = _public_key_forms(private.public_key.format().hex())
    pairs = {AddressPair.from_public_key(pubkey) for pubkey in forms.values()}
    assert len(pairs) == 1
    (pair,) = pairs
    # eth-keys is an independent implementation of the EVM address.
    assert pair.evm == PrivateKey(private.secret).public_key.to_checksum_address()


@given(private_keys)
def test_any_key_both_forms_parse_back(private: coincurve.PrivateKey) -> None:
    pair = AddressPair.from_public_key(private.public_key.format())
    assert parse_evm_address(pair.evm) == pair.evm
    assert parse_evm_address(pair.evm.lower()) == pair.evm
    assert parse_evm_address(f"  {pair.evm}\n") == pair.evm
    assert parse_sei_address(pair.sei) == pair.sei
    assert parse_sei_address(pair.sei.upper()) == pair.sei
    assert len(decode_sei_address(pair.sei)) == 20
    assert parse_address(pair.evm) == pair.evm
    assert parse_address(pair.sei, known=associations([pair])) == pair.evm
    hrp, words = bech32.bech32_decode(pair.sei)
    assert hrp == "sei"
    assert words is not None


@pytest.mark.skipif(not _has_hashlib_ripemd160(), reason="this OpenSSL has no RIPEMD-160")
@given(private_keys)
def test_sei_payload_matches_hashlib_ripemd160(private: coincurve.PrivateKey) -> None:
    compressed = private.public_key.format()
    expected = hashlib.new("ripemd160", hashlib.sha256(compressed).digest()).digest()
    assert decode_sei_address(sei_address_from_public_key(compressed)) == expected


@given(private_keys, st.data())
def test_any_single_case_flip_in_a_checksummed_address_is_refused(
    private: coincurve.PrivateKey, data: st.DataObject
) -> None:
    evm = evm_address_from_public_key(private.public_key.format())
    letters = [i for i, char in enumerate(evm) if i >= 2 and char.isalpha()]
    assume(letters)
    index = data.draw(st.sampled_from(letters))
    flipped = evm[:index] + evm[index].swapcase() + evm[index + 1 :]
    body = flipped[2:]
    # With one letter only, the flip yields a single-case address, which carries no checksum.
    assume(body not in (body.lower(), body.upper()))
    with pytest.raises(InvalidAddress, match="EIP-55 checksum"):
        parse_evm_address(flipped)


@given(private_keys, st.data())
def test_any_single_substitution_in_a_sei_address_is_refused(
    private: coincurve.PrivateKey, data: st.DataObject
) -> None:
    sei = sei_address_from_public_key(private.public_key.format())
    index = data.draw(st.integers(min_value=4, max_value=len(sei) - 1))
    replacement = data.draw(st.sampled_from("qpzry9x8gf2tvdw0s3jn54khce6mua7l"))
    assume(replacement != sei[index])
    with pytest.raises(InvalidAddress, match="bech32 checksum does not match"):
        parse_sei_address(sei[:index] + replacement + sei[index + 1 :])


@given(st.text(max_size=120))
def test_parsers_refuse_junk_only_with_invalid_address(text: str) -> None:
    for parse in (parse_evm_address, parse_sei_address, parse_address):
        # Anything other than InvalidAddress escaping here is a bug (a 500, not a 422).
        with contextlib.suppress(InvalidAddress):
            parse(text)


# ---------------------------------------------------------------------------------------------
# Rejections, each with its message
# ---------------------------------------------------------------------------------------------

EVM_BODY = LEDGER_EVM[2:]

EVM_REJECTIONS = [
    ("", "it is empty"),
    ("   ", "it is empty"),
    ("0x" + "a" * 300, "it is 302 characters long"),
    (LEDGER_SEI, "this is a Sei (sei1…) address, but an EVM address is needed"),
    ("0X" + EVM_BODY, "the prefix must be a lowercase '0x'"),
    (EVM_BODY, "the '0x' prefix is missing"),
    ("hello", "it does not start with '0x'"),
    ("0x" + EVM_BODY[:-1] + "g", "character 42 is 'g', which is not a hexadecimal digit"),
    ("0x" + EVM_BODY[:10] + " " + EVM_BODY[11:], "character 13 is ' '"),
    ("0x", "it has 0 hex digits after '0x' instead of 40"),
    ("0x" + EVM_BODY[:-1], "it has 39 hex digits after '0x' instead of 40"),
    ("0x" + EVM_BODY + "0", "it has 41 hex digits after '0x' instead of 40"),
    ("0x" + EVM_BODY[:-1] + EVM_BODY[-1].swapcase(), "does not match its EIP-55 checksum"),
]


@pytest.mark.parametrize(("text", "problem"), EVM_REJECTIONS)
def test_parse_evm_address_refuses(text: str, problem: str) -> None:
    with pytest.raises(InvalidAddress) as caught:
        parse_evm_address(text)
    assert problem in caught.value.problem
    assert str(caught.value).startswith("cannot use ")
    assert problem in str(caught.value)


def test_evm_shape_is_described_where_the_text_cannot_be_an_address() -> None:
    with pytest.raises(InvalidAddress) as caught:
        parse_evm_address("0x1234")
    assert str(caught.value) == (
        "cannot use '0x1234' as an address: it has 4 hex digits after '0x' instead of 40; "
        "an EVM address is '0x' followed by 40 hexadecimal digits (0-9, a-f)"
    )


def test_checksum_message_does_not_suggest_a_corrected_address() -> None:
    typo = "0x" + EVM_BODY[:-1] + EVM_BODY[-1].swapcase()
    with pytest.raises(InvalidAddress) as caught:
        parse_evm_address(typo)
    # Offering the "corrected" address would defeat the checksum: it is probably a typo.
    assert LEDGER_EVM not in str(caught.value)
    assert "copy the address again from its source" in str(caught.value)


def _encode(hrp: str, payload: bytes) -> str:
    words = bech32.convertbits(payload, 8, 5)
    assert words is not None
    return bech32.bech32_encode(hrp, words)


SEI_REJECTIONS = [
    ("", "it is empty"),
    ("sei1" + "q" * 300, "it is 304 characters long"),
    (LEDGER_EVM, "this is an EVM (0x) address, but a Sei address is needed"),
    ("0X" + EVM_BODY, "this is an EVM (0x) address"),
    ("Sei" + LEDGER_SEI[3:], "it mixes upper- and lowercase letters"),
    ("seizxg7kfwt5wcfr5vjutcvpsgmpnkefyphpa4lkq", "it has no 'sei1' prefix"),
    ("1zxg7kfwt5wcfr5vjutcvpsgmpnkefyphpa4lkq", "it has no 'sei1' prefix"),
    (_encode("cosmos", bytes(20)), "its prefix is 'cosmos', the address of another chain"),
    (LEDGER_SEI[:10] + "b" + LEDGER_SEI[11:], "character 11 is 'b', which bech32 never uses"),
    (LEDGER_SEI[:10] + "o" + LEDGER_SEI[11:], "character 11 is 'o'"),
    ("sei1qqqqqq", "it is too short to hold an address"),
    (LEDGER_SEI[:-1] + ("q" if LEDGER_SEI[-1] != "q" else "p"), "bech32 checksum does not match"),
    (bech32.bech32_encode("sei", [0] * 33), "its data does not decode to whole bytes"),
    (_encode("sei", bytes(16)), "it carries 16 bytes, but a Sei address carries 20"),
    (_encode("sei", bytes(33)), "it carries 33 bytes"),
]


@pytest.mark.parametrize(("text", "problem"), SEI_REJECTIONS)
def test_parse_sei_address_refuses(text: str, problem: str) -> None:
    with pytest.raises(InvalidAddress) as caught:
        parse_sei_address(text)
    assert problem in caught.value.problem
    assert problem in str(caught.value)
    with pytest.raises(InvalidAddress):
        decode_sei_address(text)


def test_sei_address_length_message_names_both_kinds() -> None:
    with pytest.raises(InvalidAddress) as caught:
        parse_sei_address(_encode("sei", bytes(16)))
    assert caught.value.problem == (
        "it carries 16 bytes, but a Sei address carries 20 (an account) or 32 (a contract)"
    )


def test_contract_addresses_are_valid_sei_addresses() -> None:
    assert parse_sei_address(CONTRACT_SEI) == CONTRACT_SEI
    assert len(decode_sei_address(CONTRACT_SEI)) == 32


PAIR = AddressPair(evm=parse_evm_address(LEDGER_EVM), sei=parse_sei_address(LEDGER_SEI))


def test_parse_address_maps_sei_through_a_mapping_or_a_resolver() -> None:
    assert parse_address(LEDGER_SEI, known=associations([PAIR])) == LEDGER_EVM
    assert parse_address(LEDGER_SEI, known={LEDGER_SEI: LEDGER_EVM.lower()}) == LEDGER_EVM

    asked: list[SeiAddress] = []

    def resolver(sei: SeiAddress) -> str | None:
        asked.append(sei)
        return LEDGER_EVM

    assert parse_address(f" {LEDGER_SEI.upper()} ", known=resolver) == LEDGER_EVM
    assert asked == [LEDGER_SEI]


def test_parse_address_accepts_evm_forms_without_consulting_known() -> None:
    def resolver(sei: SeiAddress) -> str | None:
        raise AssertionError("an EVM address needs no resolving")

    assert parse_address(LEDGER_EVM.lower(), known=resolver) == LEDGER_EVM


@pytest.mark.parametrize(
    "known",
    [None, {}, {"sei1nzdg7e6rvkrmvp5zzmp5tupuj0088nqsa4mze4": LEDGER_EVM}, lambda sei: None],
    ids=["none", "empty-mapping", "other-mapping", "resolver-none"],
)
def test_parse_address_refuses_a_sei_address_without_known_counterpart(known: Any) -> None:
    with pytest.raises(InvalidAddress) as caught:
        parse_address(LEDGER_SEI, known=known)
    message = str(caught.value)
    assert "has no known EVM (0x) counterpart yet" in message
    assert "enter the account's 0x address instead" in message


PARSE_ADDRESS_REJECTIONS = [
    ("", "it is empty; an EVM address is"),
    ("hello", "it is neither form of address"),
    (_encode("cosmos", bytes(20)), "it is neither form of address"),
    ("0x1234", "it has 4 hex digits after '0x' instead of 40"),
    ("0X" + EVM_BODY, "the prefix must be a lowercase '0x'"),
    (EVM_BODY, "the '0x' prefix is missing"),
    (LEDGER_SEI[:-1] + ("q" if LEDGER_SEI[-1] != "q" else "p"), "bech32 checksum does not match"),
    (CONTRACT_SEI, "this is the Sei address of a CosmWasm contract, which has no EVM address"),
]


@pytest.mark.parametrize(("text", "problem"), PARSE_ADDRESS_REJECTIONS)
def test_parse_address_refuses(text: str, problem: str) -> None:
    with pytest.raises(InvalidAddress) as caught:
        parse_address(text, known=associations([PAIR]))
    assert problem in str(caught.value)


def test_neither_form_message_describes_both_shapes() -> None:
    with pytest.raises(InvalidAddress) as caught:
        parse_address("alice")
    message = str(caught.value)
    assert "'0x' followed by 40 hexadecimal digits" in message
    assert "'sei1' followed by 38 lowercase letters and digits" in message


def test_corrupt_association_data_is_a_bug_not_bad_input() -> None:
    with pytest.raises(ValueError, match="recorded for sei1") as caught:
        parse_address(LEDGER_SEI, known={LEDGER_SEI: "0x1234"})
    assert not isinstance(caught.value, SeiwalletError)


def test_invalid_address_is_a_422_value_error_with_a_stable_code() -> None:
    with pytest.raises(InvalidAddress) as caught:
        parse_evm_address("nope")
    error = caught.value
    assert isinstance(error, InvalidInput)
    assert isinstance(error, ValueError)
    assert error.code == "address.invalid"
    assert error.status == 422
    assert error.text == "nope"


def test_messages_escape_control_characters_and_cut_long_input() -> None:
    with pytest.raises(InvalidAddress) as caught:
        parse_evm_address("0x\x1b[31mred")
    assert "\x1b" not in str(caught.value)
    assert "\\x1b" in str(caught.value)

    with pytest.raises(InvalidAddress) as caught:
        parse_address("z" * 1000)
    assert "(1000 characters)" in str(caught.value)
    assert len(str(caught.value)) < 500


# ---------------------------------------------------------------------------------------------
# Public keys
# ---------------------------------------------------------------------------------------------

G_COMPRESSED = bytes.fromhex("0279be667ef9dcbbac55a06295ce870b07029bfcdb2dce28d959f2815b16f81798")
G_UNCOMPRESSED = coincurve.PublicKey(G_COMPRESSED).format(compressed=False)

PUBLIC_KEY_REJECTIONS = [
    (b"", "it is 0 bytes long"),
    (bytes(32), "it is 32 bytes long"),
    (G_COMPRESSED + b"\x00", "it is 34 bytes long"),
    (b"\x04" + G_COMPRESSED[1:], "a 33-byte key starts with 02 or 03, this one with 04"),
    (b"\x06" + G_UNCOMPRESSED[1:], "a 65-byte key starts with 04, this one with 06"),
    (b"\x02" + b"\xff" * 32, "the point is not on the secp256k1 curve"),
    (G_UNCOMPRESSED[:-1] + bytes([G_UNCOMPRESSED[-1] ^ 1]), "not on the secp256k1 curve"),
    (G_UNCOMPRESSED[1:-1] + bytes([G_UNCOMPRESSED[-1] ^ 1]), "not on the secp256k1 curve"),
]


@pytest.mark.parametrize(("pubkey", "problem"), PUBLIC_KEY_REJECTIONS)
def test_invalid_public_keys_are_refused(pubkey: bytes, problem: str) -> None:
    for derive in (evm_address_from_public_key, sei_address_from_public_key):
        with pytest.raises(InvalidPublicKey) as caught:
            derive(pubkey)
        assert problem in caught.value.problem
        assert "expected 33 bytes (compressed, 02/03 prefix)" in str(caught.value)
    with pytest.raises(InvalidPublicKey):
        AddressPair.from_public_key(pubkey)


def test_invalid_public_key_error_shape() -> None:
    with pytest.raises(InvalidPublicKey) as caught:
        evm_address_from_public_key(b"\x01")
    assert caught.value.code == "public_key.invalid"
    assert isinstance(caught.value, InvalidInput)


# ---------------------------------------------------------------------------------------------
# Small things
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("address", "expected"),
    [
        (ZERO_ADDRESS, True),
        ("0x" + "0" * 40, True),
        (" 0x" + "0" * 40 + " ", True),
        ("0X" + "0" * 40, True),
        ("0x" + "0" * 39 + "1", False),
        (LEDGER_EVM, False),
        ("0x", False),
        ("", False),
        (LEDGER_SEI, False),
    ],
)
def test_is_zero_address(address: str, expected: bool) -> None:
    assert is_zero_address(address) is expected


def test_address_pair_is_a_frozen_value() -> None:
    with pytest.raises(AttributeError):
        PAIR.evm = ZERO_ADDRESS  # type: ignore[misc]
    assert hash(PAIR) == hash(AddressPair(evm=PAIR.evm, sei=PAIR.sei))


def test_associations_maps_sei_to_evm() -> None:
    other = AddressPair.from_public_key(G_COMPRESSED)
    assert associations([PAIR, other]) == {PAIR.sei: PAIR.evm, other.sei: other.evm}
    assert associations([]) == {}


@pytest.mark.parametrize(
    ("evm", "sei", "fragment"),
    [
        (LEDGER_EVM.lower(), LEDGER_SEI, "a checksummed 0x address and a lowercase sei1 account"),
        (LEDGER_EVM, LEDGER_SEI.upper(), "a checksummed 0x address and a lowercase sei1 account"),
        (LEDGER_EVM, CONTRACT_SEI, "a checksummed 0x address and a lowercase sei1 account"),
        ("0x1234", LEDGER_SEI, "not an address pair: it has 4 hex digits"),
        (LEDGER_EVM, "sei1", "not an address pair: it is too short"),
    ],
)
def test_address_pair_holds_only_canonical_forms(evm: Any, sei: Any, fragment: str) -> None:
    with pytest.raises(ValueError, match=fragment) as caught:
        AddressPair(evm=evm, sei=sei)
    assert not isinstance(caught.value, SeiwalletError)
