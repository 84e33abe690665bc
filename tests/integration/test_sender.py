"""Sponsor transactions against anvil and both databases: nonces under concurrency, typed errors
before gas is spent, recovery after a crash, replacing a stuck transaction."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from eth_account import Account
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session, sessionmaker
from tests.fixtures.chain import ChainKit
from web3.types import RPCEndpoint

from seiwallet.chain.deploy import blacklist, pause
from seiwallet.chain.errors import AddressBlacklisted, RpcUnavailable, TokenPaused
from seiwallet.chain.localnet import LocalChain
from seiwallet.chain.models import SentTransaction, TxStatus
from seiwallet.chain.rpc import RpcClient
from seiwallet.chain.sender import TransactionSender, TxRequest
from seiwallet.chain.tokens import (
    Authorization3009,
    authorization_typed_data,
    encode_transfer_with_authorization,
    read_token,
)
from seiwallet.db import session_factory

pytestmark = pytest.mark.chain


@pytest.fixture
async def rpc(local_chain: LocalChain) -> AsyncIterator[RpcClient]:
    async with RpcClient(local_chain.rpc_url) as client:
        yield client


@pytest.fixture
def sessions(engine: Engine) -> sessionmaker[Session]:
    return session_factory(engine)


def sender_for(kit: ChainKit, rpc: RpcClient, sessions: sessionmaker[Session]) -> TransactionSender:
    return TransactionSender(
        rpc, kit.accounts.sponsors[1], chain_id=kit.chain_id, sessions=sessions
    )


async def signed_transfer(
    kit: ChainKit, rpc: RpcClient, value: int = 1_000_000
) -> tuple[TxRequest, str]:
    """A gasless user transfer: the payer signs, the sponsor submits."""
    payer = kit.funded_account(value)
    token = await read_token(rpc, kit.token_address("USDC"))
    now = kit.latest_timestamp()
    terms = Authorization3009(
        from_address=payer.address,
        to=Account.create().address,
        value=value,
        valid_after=now - 60,
        valid_before=now + 3600,
        nonce=Account.create().key,  # 32 random bytes
    )
    signed = Account.sign_typed_data(
        payer.key, full_message=authorization_typed_data(token.domain, terms)
    )
    request = TxRequest(
        to=token.address,
        data=encode_transfer_with_authorization(terms, bytes(signed.signature)),
        purpose="test transfer",
    )
    return request, payer.address


async def test_concurrent_sends_get_distinct_consecutive_nonces(
    kit: ChainKit, rpc: RpcClient, sessions: sessionmaker[Session]
) -> None:
    sender = sender_for(kit, rpc, sessions)
    start = await rpc.get_transaction_count(sender.sponsor, "pending")
    requests = [(await signed_transfer(kit, rpc))[0] for _ in range(12)]
    sent = await asyncio.gather(*(sender.send(request) for request in requests))
    assert sorted(tx.nonce for tx in sent) == list(range(start, start + 12))
    receipts = await asyncio.gather(*(sender.wait(tx) for tx in sent))
    assert all(receipt.succeeded for receipt in receipts)
    with sessions() as session:
        statuses = set(session.scalars(select(SentTransaction.status)))
    assert statuses == {TxStatus.MINED}


async def test_a_blacklisted_recipient_is_refused_before_any_gas_is_spent(
    kit: ChainKit, rpc: RpcClient, sessions: sessionmaker[Session]
) -> None:
    sender = sender_for(kit, rpc, sessions)
    request, payer = await signed_transfer(kit, rpc)
    blacklist(kit.w3, kit.deployment, "USDC", payer, accounts=kit.accounts)
    nonce_before = await rpc.get_transaction_count(sender.sponsor, "pending")
    with pytest.raises(AddressBlacklisted) as caught:
        await sender.send(request)
    assert "blacklisted" in str(caught.value)
    assert await rpc.get_transaction_count(sender.sponsor, "pending") == nonce_before
    with sessions() as session:
        assert session.scalars(select(SentTransaction)).all() == []


async def test_a_paused_token_says_so(
    kit: ChainKit, rpc: RpcClient, sessions: sessionmaker[Session]
) -> None:
    sender = sender_for(kit, rpc, sessions)
    request, _ = await signed_transfer(kit, rpc)
    pause(kit.w3, kit.deployment, "USDC", accounts=kit.accounts)
    with pytest.raises(TokenPaused):
        await sender.send(request)


async def test_crash_between_signing_and_broadcast_is_recovered(
    kit: ChainKit, rpc: RpcClient, sessions: sessionmaker[Session], local_chain: LocalChain
) -> None:
    request, _ = await signed_transfer(kit, rpc)
    # The process dies after recording the signed transaction, before the node took it.
    crashing = sender_for(kit, rpc, sessions)

    async def broadcast_fails(raw: bytes) -> str:
        raise RpcUnavailable(local_chain.rpc_url, "connection reset")

    crashing._rpc = _WithBrokenBroadcast(rpc, broadcast_fails)  # type: ignore[assignment]
    with pytest.raises(RpcUnavailable):
        await crashing.send(request)
    with sessions() as session:
        [row] = session.scalars(select(SentTransaction)).all()
        assert row.status == TxStatus.SIGNED

    # The restarted worker resends the very same bytes, and the transfer is mined once.
    restarted = sender_for(kit, rpc, sessions)
    report = await restarted.recover()
    assert report.rebroadcast == 1
    receipt = await restarted.wait(row.tx_hash)
    assert receipt.succeeded
    again = await restarted.recover()
    assert (again.rebroadcast, again.mined) == (0, 0)


class _WithBrokenBroadcast:
    """The real client, except that broadcasting fails (the process 'dies' at that moment)."""

    def __init__(self, rpc: RpcClient, broadcast: object) -> None:
        self._rpc = rpc
        self.send_raw_transaction = broadcast

    def __getattr__(self, name: str) -> object:
        return getattr(self._rpc, name)


async def test_stuck_transaction_is_replaced_with_higher_fees(
    kit: ChainKit, rpc: RpcClient, sessions: sessionmaker[Session]
) -> None:
    sender = sender_for(kit, rpc, sessions)
    request, _ = await signed_transfer(kit, rpc)
    kit.w3.provider.make_request(RPCEndpoint("evm_setAutomine"), [False])
    try:
        stuck = await sender.send(request)
        replacement = await sender.replace(stuck)
        assert replacement.nonce == stuck.nonce
        assert replacement.max_priority_fee_per_gas > stuck.max_priority_fee_per_gas
        kit.w3.provider.make_request(RPCEndpoint("evm_mine"), [])
    finally:
        kit.w3.provider.make_request(RPCEndpoint("evm_setAutomine"), [True])
    receipt = await sender.wait(replacement)
    assert receipt.succeeded
    report = await sender.recover()
    assert report.dropped == 1  # the original's nonce was spent by its replacement
    with sessions() as session:
        rows = {row.tx_hash: row.status for row in session.scalars(select(SentTransaction))}
    assert rows == {stuck.tx_hash: TxStatus.REPLACED, replacement.tx_hash: TxStatus.MINED}
