"""The follower against anvil and both databases: a router payment is recorded exactly once,
across a follower restart, two followers racing, and a chain reorganisation."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import pytest
from eth_account import Account
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session, sessionmaker
from tests.fixtures.chain import ChainKit
from web3.types import RPCEndpoint

from seiwallet.chain.follower import Follower, PollResult
from seiwallet.chain.localnet import LocalChain
from seiwallet.chain.models import ChainEvent, FollowerCursor
from seiwallet.chain.router import Authorization, Payment, encode_pay, payment_authorization
from seiwallet.chain.rpc import RpcClient
from seiwallet.cli.runtime import event_decoder
from seiwallet.db import session_factory
from seiwallet.deployments import Contracts

pytestmark = pytest.mark.chain


@dataclass
class RecordingHandler:
    """Counts what the follower asks a domain to apply and to revert."""

    applied: list[tuple[str, str | None]] = field(default_factory=list)
    reverted: list[tuple[str, str | None]] = field(default_factory=list)

    def apply(self, session: Session, event: ChainEvent) -> None:
        self.applied.append((event.name, event.key))

    def revert(self, session: Session, event: ChainEvent) -> None:
        self.reverted.append((event.name, event.key))


@dataclass
class Scene:
    kit: ChainKit
    rpc: RpcClient
    sessions: sessionmaker[Session]
    start_block: int
    handler: RecordingHandler

    def follower(self, **kwargs: object) -> Follower:
        deployment = self.kit.deployment
        contracts = Contracts(
            router=deployment.router,
            tokens={s: t.address for s, t in deployment.tokens.items()},
            deployed_at=self.start_block,
        )
        return Follower(
            self.rpc,
            self.sessions,
            chain_id=self.kit.chain_id,
            decoder=event_decoder(contracts),
            start_block=self.start_block,
            handlers=[self.handler],
            **kwargs,  # type: ignore[arg-type]
        )

    def settled(self, invoice_id: bytes) -> list[ChainEvent]:
        with self.sessions() as session:
            return list(
                session.scalars(
                    select(ChainEvent).where(
                        ChainEvent.name == "PaymentSettled",
                        ChainEvent.key == "0x" + invoice_id.hex(),
                    )
                )
            )

    def pay_transaction(self, amount: int = 5_000_000, fee: int = 50_000) -> tuple[bytes, bytes]:
        """A signed router payment (invoice id, calldata) from a new payer with no gas."""
        kit = self.kit
        payer = kit.funded_account(amount)
        invoice_id = os.urandom(32)
        payment = Payment(
            invoice_id=invoice_id,
            merchant=Account.create().address,
            token=kit.token_address("USDC"),
            amount_units=amount,
            fee_units=fee,
        )
        now = kit.latest_timestamp()
        terms = payment_authorization(
            payment,
            payer=payer.address,
            router=kit.deployment.router,
            chain_id=kit.chain_id,
            valid_after=now - 60,
            valid_before=now + 3600,
        )
        signature = kit.sign_receive(payer, terms)
        authorization = Authorization(
            payer.address, terms.valid_after, terms.valid_before, signature
        )
        return invoice_id, encode_pay(payment, authorization)


async def catch_up(follower: Follower) -> list[PollResult]:
    results = []
    while True:
        result = await follower.poll()
        results.append(result)
        if result.caught_up:
            return results


@pytest.fixture
async def scene(kit: ChainKit, engine: Engine, local_chain: LocalChain) -> AsyncIterator[Scene]:
    async with RpcClient(local_chain.rpc_url) as rpc:
        yield Scene(
            kit=kit,
            rpc=rpc,
            sessions=session_factory(engine),
            start_block=await rpc.block_number(),
            handler=RecordingHandler(),
        )


async def test_payment_is_recorded_once_across_restart_and_reorg(scene: Scene) -> None:
    kit = scene.kit
    invoice_id, calldata = scene.pay_transaction()
    receipt = kit.transact(kit.deployment.router, calldata)
    mined_in = receipt["blockHash"].to_0x_hex()
    kit.w3.provider.make_request(RPCEndpoint("anvil_mine"), [2])  # the payment is 3 blocks deep

    first = scene.follower()
    await catch_up(first)
    [event] = scene.settled(invoice_id)
    assert event.block_hash == mined_in
    assert event.args["amount"] == "5000000"
    assert event.args["fee"] == "50000"
    # The token's own events of that payment are decoded too.
    with scene.sessions() as session:
        names = set(
            session.scalars(
                select(ChainEvent.name).where(ChainEvent.transaction_hash == event.transaction_hash)
            )
        )
    assert {"PaymentSettled", "Transfer", "AuthorizationUsed"} <= names

    # A new follower (a restart) resumes from the checkpoint: nothing is applied again.
    restarted = scene.follower()
    await catch_up(restarted)
    assert len(scene.settled(invoice_id)) == 1
    assert scene.handler.applied.count(("PaymentSettled", "0x" + invoice_id.hex())) == 1

    # The chain drops the payment's block and the two above it: the follower walks back to the
    # fork point, removes the event and tells the handler.
    response = kit.w3.provider.make_request(RPCEndpoint("anvil_reorg"), [3, []])
    assert "error" not in response
    results = await catch_up(restarted)
    assert results[0].reorged_blocks == 3
    assert scene.settled(invoice_id) == []
    assert ("PaymentSettled", "0x" + invoice_id.hex()) in scene.handler.reverted

    # The same signed payment is mined again on the new branch: recorded once, in its new block.
    receipt = kit.transact(kit.deployment.router, calldata)
    await catch_up(restarted)
    [again] = scene.settled(invoice_id)
    assert again.block_hash == receipt["blockHash"].to_0x_hex()
    assert again.block_hash != mined_in


async def test_two_followers_racing_apply_each_event_once(scene: Scene) -> None:
    kit = scene.kit
    invoices = []
    for _ in range(3):
        invoice_id, calldata = scene.pay_transaction()
        kit.transact(kit.deployment.router, calldata)
        invoices.append(invoice_id)
    one, two = scene.follower(max_range=2), scene.follower(max_range=2)
    for _ in range(20):
        await asyncio.gather(one.poll(), two.poll())
    for invoice_id in invoices:
        assert len(scene.settled(invoice_id)) == 1
    with scene.sessions() as session:
        cursor = session.get(FollowerCursor, (kit.chain_id, "main"))
        assert cursor is not None
        assert cursor.block_number == kit.w3.eth.block_number
        duplicates = session.execute(
            select(ChainEvent.block_hash, ChainEvent.log_index, func.count())
            .group_by(ChainEvent.block_hash, ChainEvent.log_index)
            .having(func.count() > 1)
        ).all()
    assert duplicates == []


async def test_confirmations_hold_back_the_newest_blocks(scene: Scene) -> None:
    kit = scene.kit
    invoice_id, calldata = scene.pay_transaction()
    kit.transact(kit.deployment.router, calldata)
    cautious = scene.follower(confirmations=3)
    await catch_up(cautious)
    assert scene.settled(invoice_id) == []
    kit.w3.provider.make_request(RPCEndpoint("anvil_mine"), [2])
    await catch_up(cautious)
    assert len(scene.settled(invoice_id)) == 1
