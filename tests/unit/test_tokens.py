"""The EIP-3009 digest the signer signs equals eth-account's independent EIP-712 encoding."""

from __future__ import annotations

from eth_account.messages import _hash_eip191_message, encode_typed_data
from hypothesis import given
from hypothesis import strategies as st

from seiwallet.chain.tokens import (
    RECEIVE_WITH_AUTHORIZATION,
    TRANSFER_WITH_AUTHORIZATION,
    Authorization3009,
    TokenDomain,
    authorization_digest,
    authorization_typed_data,
)

addresses = st.binary(min_size=20, max_size=20).map(lambda raw: "0x" + raw.hex())
uint256 = st.integers(min_value=0, max_value=2**256 - 1)


@given(
    name=st.text(min_size=1, max_size=20),
    chain_id=st.integers(min_value=1, max_value=2**64),
    contract=addresses,
    sender=addresses,
    to=addresses,
    value=uint256,
    after=uint256,
    before=uint256,
    nonce=st.binary(min_size=32, max_size=32),
    primary=st.sampled_from([TRANSFER_WITH_AUTHORIZATION, RECEIVE_WITH_AUTHORIZATION]),
)
def test_digest_matches_eth_account(
    name: str,
    chain_id: int,
    contract: str,
    sender: str,
    to: str,
    value: int,
    after: int,
    before: int,
    nonce: bytes,
    primary: str,
) -> None:
    domain = TokenDomain(name, "2", chain_id, contract)
    authorization = Authorization3009(sender, to, value, after, before, nonce)
    expected = _hash_eip191_message(
        encode_typed_data(full_message=authorization_typed_data(domain, authorization, primary))
    )
    assert authorization_digest(domain, authorization, primary) == expected
