"""The relayer against anvil and both databases: signed transfers are submitted from the
sponsors, mined and confirmed by the follower exactly once, across crashes, re-queues, an
unreachable network, reverts, expiry, low sponsor balances and reorganisations."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from eth_account import Account
from eth_account.signers.local import LocalAccount
from sqlalchemy import Engine, func, select, update
from sqlalchemy.orm import Session, sessionmaker
from tests.fixtures.chain import ChainKit, free_port
from web3.types import RPCEndpoint

from seiwallet.accounts.models import User, UserStatus
from seiwallet.chain.deploy import blacklist
from seiwallet.chain.follower import Follower
from seiwallet.chain.localnet import LocalChain
from seiwallet.chain.models import ChainEvent, SentTransaction, TxStatus
from seiwallet.chain.router import Payment, Refund, payment_authorization, refund_authorization
from seiwallet.chain.rpc import Call, RpcClient
from seiwallet.chain.sender import TransactionSender
from seiwallet.chain.tokens import Authorization3009, authorization_typed_data
from seiwallet.cli.runtime import event_decoder
from seiwallet.config import RelayerSettings
from seiwallet.db import session_factory
from seiwallet.deployments import Contracts
from seiwallet.transfers.handlers import TransferEventHandler
from seiwallet.transfers.models import Transfer, TransferStatus
from seiwallet.transfers.outbox import SignedRouterCall, enqueue_router_call
from seiwallet.transfers.relayer import (
    BATCH_PURPOSE_PREFIX,
    NETWORK_DELAY,
    Outbound,
    Relayer,
    transfer_purpose,
)

pytestmark = pytest.mark.chain

SETTINGS = RelayerSettings(
    poll_seconds=0.05,
    backoff_initial_seconds=0.2,
    backoff_max_seconds=2.0,
    claim_seconds=5.0,
    resend_after_seconds=1.0,
)


class ProcessDied(BaseException):
    """The worker process 'dies' at this point (nothing after it runs)."""


class SwitchableTransport(httpx.AsyncBaseTransport):
    """The real endpoint, or — while ``down`` — a refused connection, as from a dead URL."""

    def __init__(self) -> None:
        self.down = False
        self._inner = httpx.AsyncHTTPTransport()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if self.down:
            raise httpx.ConnectError("[Errno 111] Connection refused", request=request)
        return await self._inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self._inner.aclose()


class DiesAtBroadcast(RpcClient):
    """The real client, except that the process dies when it is about to broadcast."""

    async def batch(self, calls: Sequence[Call]) -> list[Any]:
        if any(call.method == "eth_sendRawTransaction" for call in calls):
            raise ProcessDied
        return await super().batch(calls)


@dataclass
class Scene:
    kit: ChainKit
    rpc: RpcClient
    sessions: sessionmaker[Session]
    start_block: int
    user_id: str
    handler: TransferEventHandler = field(default_factory=TransferEventHandler)

    # -- building ----------------------------------------------------------------------------
    def payer(self, amount_units: int) -> LocalAccount:
        return self.kit.funded_account(amount_units)

    def signed_transfer(
        self,
        payer: LocalAccount,
        amount_units: int,
        *,
        to: str | None = None,
        valid_before: int | None = None,
    ) -> str:
        """A transfer row in the outbox (``signed``), with the payer's real EIP-3009 signature."""
        now = self.kit.latest_timestamp()
        terms = Authorization3009(
            from_address=payer.address,
            to=to or Account.create().address,
            value=amount_units,
            valid_after=now - 60,
            valid_before=valid_before if valid_before is not None else now + 3600,
            nonce=os.urandom(32),
        )
        typed = authorization_typed_data(self.kit.domain("USDC"), terms)
        signature = bytes(Account.sign_typed_data(payer.key, full_message=typed).signature)
        transfer_id = os.urandom(16).hex()
        with self.sessions.begin() as session:
            session.add(
                Transfer(
                    id=transfer_id,
                    user_id=self.user_id,
                    idempotency_key=transfer_id,
                    request_hash=hashlib.sha256(transfer_id.encode()).hexdigest(),
                    chain_id=self.kit.chain_id,
                    token=self.kit.token_address("USDC"),
                    symbol="USDC",
                    decimals=6,
                    from_address=payer.address,
                    to_address=terms.to,
                    recipient_input=terms.to,
                    amount_units=amount_units,
                    note="",
                    nonce="0x" + terms.nonce.hex(),
                    valid_after=terms.valid_after,
                    valid_before=terms.valid_before,
                    intent="{}",
                    intent_digest="00" * 32,
                    signature="0x" + signature.hex(),
                    status=TransferStatus.SIGNED,
                    attempts=0,
                    signed_at=datetime.now(UTC),
                )
            )
        return transfer_id

    def relayer(
        self,
        *,
        rpc: RpcClient | None = None,
        sponsors: Sequence[int] = (1, 2),
        settings: RelayerSettings = SETTINGS,
        router: str | None = None,
    ) -> Relayer:
        """A relayer from ``sponsors``; with ``router`` it batches payments (``payBatch``)."""
        client = rpc or self.rpc
        senders = [
            TransactionSender(
                client,
                self.kit.accounts.sponsors[index],
                chain_id=self.kit.chain_id,
                sessions=self.sessions,
            )
            for index in sponsors
        ]
        return Relayer(
            client,
            self.sessions,
            senders,
            chain_id=self.kit.chain_id,
            settings=settings,
            router=router,
        )

    def follower(self) -> Follower:
        deployment = self.kit.deployment
        contracts = Contracts(
            router=deployment.router,
            tokens={symbol: token.address for symbol, token in deployment.tokens.items()},
            deployed_at=self.start_block,
        )
        return Follower(
            self.rpc,
            self.sessions,
            chain_id=self.kit.chain_id,
            decoder=event_decoder(contracts),
            start_block=self.start_block,
            handlers=[self.handler],
        )

    # -- reading -----------------------------------------------------------------------------
    def transfer(self, transfer_id: str) -> Transfer:
        with self.sessions() as session:
            transfer = session.get(Transfer, transfer_id)
            assert transfer is not None
            return transfer

    def transfers(self, ids: Sequence[str]) -> list[Transfer]:
        return [self.transfer(transfer_id) for transfer_id in ids]

    def sponsor_txs(self, transfer_id: str) -> list[SentTransaction]:
        with self.sessions() as session:
            return list(
                session.scalars(
                    select(SentTransaction)
                    .where(SentTransaction.purpose == transfer_purpose(transfer_id))
                    .order_by(SentTransaction.id)
                )
            )

    # -- driving -----------------------------------------------------------------------------
    async def drive(
        self,
        relayer: Relayer,
        until: Callable[[], bool],
        *,
        follower: Follower | None = None,
        timeout: float = 30.0,
    ) -> None:
        """Run the relayer (and the follower) until ``until()`` holds."""
        deadline = time.monotonic() + timeout
        while True:
            await relayer.submit_once()
            await relayer.track_once()
            if follower is not None:
                await follower.poll()
            if until():
                return
            if time.monotonic() > deadline:
                raise AssertionError(f"not done in {timeout} s")
            await asyncio.sleep(0.02)

    def all_in(self, ids: Sequence[str], *statuses: TransferStatus) -> Callable[[], bool]:
        return lambda: all(t.status in statuses for t in self.transfers(ids))


@pytest.fixture
async def scene(kit: ChainKit, engine: Engine, local_chain: LocalChain) -> AsyncIterator[Scene]:
    sessions = session_factory(engine)
    user_id = os.urandom(16).hex()
    with sessions.begin() as session:
        session.add(User(id=user_id, status=UserStatus.ACTIVE))
    async with RpcClient(local_chain.rpc_url) as rpc:
        yield Scene(
            kit=kit,
            rpc=rpc,
            sessions=sessions,
            start_block=await rpc.block_number(),
            user_id=user_id,
        )


def aware(value: datetime) -> datetime:
    """SQLite gives back naive UTC datetimes, PostgreSQL aware ones."""
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def confirmed(transfer: Transfer) -> bool:
    return transfer.status == TransferStatus.CONFIRMED and transfer.gas_used is not None


# -- (a) the happy path, in bulk ---------------------------------------------------------------


async def test_a_batch_of_transfers_is_submitted_mined_and_confirmed_once(scene: Scene) -> None:
    kit = scene.kit
    payers = [scene.payer(10_000_000) for _ in range(4)]
    amounts = [100_000 + index for index in range(20)]
    ids = [scene.signed_transfer(payers[index % 4], amount) for index, amount in enumerate(amounts)]
    relayer, follower = scene.relayer(sponsors=(1, 2)), scene.follower()

    await scene.drive(
        relayer, lambda: all(confirmed(t) for t in scene.transfers(ids)), follower=follower
    )

    transfers = scene.transfers(ids)
    for transfer, amount in zip(transfers, amounts, strict=True):
        assert kit.balance(transfer.to_address) == amount
        assert transfer.attempts == 1
        assert transfer.delay_reason is None
        assert transfer.confirmed_at is not None
        [tx] = scene.sponsor_txs(transfer.id)
        assert tx.status == TxStatus.MINED
        assert transfer.tx_hash == tx.tx_hash
        assert transfer.sponsor == tx.sponsor
        receipt = await scene.rpc.get_receipt(tx.tx_hash)
        assert receipt is not None
        assert transfer.block_number == receipt.block_number
        assert transfer.gas_used == receipt.gas_used > 50_000
        assert transfer.gas_cost_wei == receipt.gas_used * receipt.effective_gas_price > 0
    for index, payer in enumerate(payers):
        assert kit.balance(payer.address) == 10_000_000 - sum(amounts[index::4])
    # The work was spread over both sponsors.
    assert {t.sponsor for t in transfers} == {
        kit.accounts.sponsors[1].address,
        kit.accounts.sponsors[2].address,
    }

    # Running on changes nothing: no transaction is sent twice, no event applied twice.
    for _ in range(5):
        await relayer.submit_once()
        await relayer.track_once()
        await follower.poll()
    with scene.sessions() as session:
        assert session.scalar(select(func.count()).select_from(SentTransaction)) == 20
        used = session.scalar(
            select(func.count())
            .select_from(ChainEvent)
            .where(ChainEvent.name == "AuthorizationUsed")
        )
    assert used == 20
    assert [(t.status, t.attempts, t.tx_hash) for t in scene.transfers(ids)] == [
        (TransferStatus.CONFIRMED, 1, t.tx_hash) for t in transfers
    ]


# -- (b) a crash after the sponsor transaction was recorded, before it was broadcast -----------


async def test_a_crash_before_broadcast_is_completed_once_by_the_next_worker(
    scene: Scene, local_chain: LocalChain
) -> None:
    kit = scene.kit
    payer = scene.payer(5_000_000)
    transfer_id = scene.signed_transfer(payer, 1_234_567)
    recipient = scene.transfer(transfer_id).to_address

    async with DiesAtBroadcast(local_chain.rpc_url) as dying_rpc:
        dying = scene.relayer(rpc=dying_rpc, sponsors=(1,))
        with pytest.raises(ProcessDied):
            await dying.submit_once()

    # The sponsor transaction and the transfer's "submitted" were committed together...
    [recorded] = scene.sponsor_txs(transfer_id)
    assert recorded.status == TxStatus.SIGNED
    transfer = scene.transfer(transfer_id)
    assert (transfer.status, transfer.tx_hash, transfer.attempts) == (
        TransferStatus.SUBMITTED,
        recorded.tx_hash,
        1,
    )
    # ...and nothing reached the chain.
    assert kit.balance(recipient) == 0
    assert await scene.rpc.get_transaction(recorded.tx_hash) is None

    # The next worker recovers first: the very same bytes are broadcast.
    restarted = scene.relayer(sponsors=(1,))
    report = await restarted.recover()
    assert report.rebroadcast == 1
    await scene.drive(
        restarted, lambda: confirmed(scene.transfer(transfer_id)), follower=scene.follower()
    )
    [tx] = scene.sponsor_txs(transfer_id)
    assert (tx.tx_hash, tx.status) == (recorded.tx_hash, TxStatus.MINED)
    transfer = scene.transfer(transfer_id)
    assert transfer.attempts == 1
    assert transfer.gas_cost_wei is not None
    assert transfer.gas_cost_wei > 0
    assert kit.balance(recipient) == 1_234_567
    assert kit.balance(payer.address) == 5_000_000 - 1_234_567


# -- (c) a transfer put back in the outbox after it was mined is not paid again ------------------


async def test_a_requeued_transfer_that_was_mined_is_not_paid_twice(scene: Scene) -> None:
    kit = scene.kit
    payer = scene.payer(5_000_000)
    mined_id = scene.signed_transfer(payer, 1_000_000)
    relayer = scene.relayer(sponsors=(1,))
    await scene.drive(relayer, lambda: scene.transfer(mined_id).gas_used is not None)
    recipient = scene.transfer(mined_id).to_address
    assert kit.balance(recipient) == 1_000_000

    # The transfer is put back in the outbox (as after a wrong "dropped" verdict).
    with scene.sessions.begin() as session:
        session.execute(
            update(Transfer)
            .where(Transfer.id == mined_id)
            .values(status=TransferStatus.SIGNED, next_attempt_at=None)
        )
    # Someone else also submits another of our authorizations before the relayer does.
    front_run_id = scene.signed_transfer(payer, 500_000)
    front_run = scene.transfer(front_run_id)
    kit.transact(
        front_run.token,
        bytes.fromhex(_calldata(front_run)[2:]),
        sender=kit.accounts.sponsors[3],
    )

    restarted = scene.relayer(sponsors=(1,))
    await restarted.recover()
    await scene.drive(
        restarted,
        scene.all_in([mined_id, front_run_id], TransferStatus.CONFIRMED),
        follower=scene.follower(),
    )
    assert len(scene.sponsor_txs(mined_id)) == 1
    assert scene.sponsor_txs(front_run_id) == []  # the token said "used": nothing was sent
    assert kit.balance(recipient) == 1_000_000
    assert kit.balance(front_run.to_address) == 500_000
    assert kit.balance(payer.address) == 5_000_000 - 1_500_000


def _calldata(transfer: Transfer) -> str:
    return Outbound.from_row(transfer).calldata()


# -- (d) the network does not answer ---------------------------------------------------------------


async def test_an_unreachable_network_delays_transfers_until_it_answers(
    scene: Scene, local_chain: LocalChain
) -> None:
    kit = scene.kit
    payer = scene.payer(5_000_000)
    transfer_id = scene.signed_transfer(payer, 2_000_000)
    transport = SwitchableTransport()
    async with RpcClient(local_chain.rpc_url, transport=transport, retries=0) as rpc:
        relayer = scene.relayer(rpc=rpc, sponsors=(1,))
        transport.down = True
        delays = []
        for _ in range(2):
            assert await relayer.submit_once() == 0
            assert await relayer.track_once() == 0  # waits, does not crash
            transfer = scene.transfer(transfer_id)
            assert transfer.status == TransferStatus.SIGNED
            assert transfer.delay_reason == NETWORK_DELAY
            assert transfer.next_attempt_at is not None
            due = aware(transfer.next_attempt_at)
            delays.append(due - datetime.now(UTC))
            # Not taken again before it is due.
            assert await relayer.submit_once() == 0
            await asyncio.sleep(max(0.0, (due - datetime.now(UTC)).total_seconds()) + 0.05)
        assert delays[1] > delays[0]  # backing off
        assert scene.sponsor_txs(transfer_id) == []

        transport.down = False
        await scene.drive(
            relayer, lambda: confirmed(scene.transfer(transfer_id)), follower=scene.follower()
        )
    transfer = scene.transfer(transfer_id)
    assert transfer.delay_reason is None
    assert transfer.attempts == 1
    assert kit.balance(transfer.to_address) == 2_000_000


async def test_a_dead_endpoint_from_the_start_only_delays(scene: Scene) -> None:
    payer = scene.payer(1_000_000)
    transfer_id = scene.signed_transfer(payer, 1_000_000)
    async with RpcClient(f"http://127.0.0.1:{free_port()}", retries=0) as dead:
        relayer = scene.relayer(rpc=dead, sponsors=(1,))
        assert await relayer.submit_once() == 0
        assert await relayer.track_once() == 0
    transfer = scene.transfer(transfer_id)
    assert (transfer.status, transfer.delay_reason) == (TransferStatus.SIGNED, NETWORK_DELAY)
    assert transfer.next_attempt_at is not None


# -- (e) reverts: refused before any gas, or failed on-chain ------------------------------------


async def test_a_blacklisted_recipient_fails_and_the_others_go_through(scene: Scene) -> None:
    kit = scene.kit
    payer = scene.payer(10_000_000)
    banned = Account.create().address
    blacklist(kit.w3, kit.deployment, "USDC", banned, accounts=kit.accounts)
    good = [scene.signed_transfer(payer, 1_000_000) for _ in range(4)]
    bad = scene.signed_transfer(payer, 1_000_000, to=banned)
    relayer = scene.relayer()
    await scene.drive(
        relayer,
        lambda: (
            all(confirmed(t) for t in scene.transfers(good))
            and scene.transfer(bad).status == TransferStatus.FAILED
        ),
        follower=scene.follower(),
    )
    failed = scene.transfer(bad)
    assert failed.failure_code == "token.blacklisted"
    assert failed.failure_reason is not None
    assert "blacklisted" in failed.failure_reason
    assert scene.sponsor_txs(bad) == []  # refused by the simulation: no gas spent
    assert kit.balance(banned) == 0
    assert kit.balance(payer.address) == 10_000_000 - 4_000_000


async def test_a_transfer_that_reverts_on_chain_fails_with_the_reason(scene: Scene) -> None:
    kit = scene.kit
    payer = scene.payer(1_500_000)
    # Each alone is covered by the balance; together they are not. Both pass the estimate
    # (one batch), the second is mined with status 0.
    first = scene.signed_transfer(payer, 1_000_000)
    second = scene.signed_transfer(payer, 1_000_000)
    relayer = scene.relayer(sponsors=(1,))
    await scene.drive(
        relayer,
        lambda: (
            confirmed(scene.transfer(first))
            and scene.transfer(second).status == TransferStatus.FAILED
        ),
        follower=scene.follower(),
    )
    failed = scene.transfer(second)
    assert failed.failure_code == "token.insufficient_balance"
    [tx] = scene.sponsor_txs(second)
    assert tx.status == TxStatus.FAILED
    # What the failed transaction cost the sponsor is on the transfer too.
    assert failed.gas_used == tx.gas_used
    assert failed.gas_used is not None
    assert failed.gas_cost_wei == tx.gas_used * (tx.effective_gas_price or 0)
    assert kit.balance(payer.address) == 500_000


# -- (f) expiry ----------------------------------------------------------------------------------


async def test_an_expired_authorization_fails_without_being_sent(scene: Scene) -> None:
    payer = scene.payer(1_000_000)
    expired = scene.signed_transfer(
        payer, 1_000_000, valid_before=int(datetime.now(UTC).timestamp()) - 5
    )
    relayer = scene.relayer(sponsors=(1,))
    await scene.drive(relayer, lambda: scene.transfer(expired).status == TransferStatus.FAILED)
    transfer = scene.transfer(expired)
    assert transfer.failure_code == "token.authorization_expired"
    assert transfer.failure_reason is not None
    assert "expired" in transfer.failure_reason
    assert "approve the transfer again" in transfer.failure_reason
    assert scene.sponsor_txs(expired) == []
    assert scene.kit.balance(payer.address) == 1_000_000


# -- (g) sponsors' balances ----------------------------------------------------------------------


async def test_a_low_sponsor_balance_alerts_once_per_crossing(
    scene: Scene, caplog: pytest.LogCaptureFixture
) -> None:
    kit = scene.kit
    sponsor = kit.accounts.sponsors[1].address
    threshold = 5 * 10**18
    relayer = scene.relayer(
        sponsors=(1, 2), settings=SETTINGS.model_copy(update={"low_balance_wei": threshold})
    )

    def set_balance(wei: int) -> None:
        kit.w3.provider.make_request(RPCEndpoint("anvil_setBalance"), [sponsor, hex(wei)])

    def alerts() -> list[logging.LogRecord]:
        return [
            r
            for r in caplog.records
            if r.name == "seiwallet.alerts" and r.levelno == logging.WARNING
        ]

    caplog.set_level(logging.INFO, logger="seiwallet.alerts")
    set_balance(threshold - 1)
    report = {b.address: b for b in await relayer.sponsor_balances()}
    await relayer.sponsor_balances()
    await relayer.track_once()
    assert report[sponsor].low
    assert report[sponsor].balance_wei == threshold - 1
    assert not report[kit.accounts.sponsors[2].address].low
    [alert] = alerts()
    assert sponsor in alert.getMessage()
    assert str(threshold - 1) in alert.getMessage()

    set_balance(threshold * 2)  # topped up: no alert, and the next fall alerts again
    await relayer.sponsor_balances()
    assert len(alerts()) == 1
    set_balance(1)
    await relayer.sponsor_balances()
    await relayer.sponsor_balances()
    assert len(alerts()) == 2


# -- (h) reorganisations -------------------------------------------------------------------------


async def test_a_reverted_confirmation_goes_back_to_submitted(scene: Scene) -> None:
    payer = scene.payer(2_000_000)
    transfer_id = scene.signed_transfer(payer, 1_000_000)
    relayer, follower = scene.relayer(sponsors=(1,)), scene.follower()
    await scene.drive(relayer, lambda: confirmed(scene.transfer(transfer_id)), follower=follower)
    confirmed_in = scene.transfer(transfer_id).block_number
    transfer = scene.transfer(transfer_id)
    with scene.sessions() as session:
        [event] = session.scalars(
            select(ChainEvent).where(
                ChainEvent.name == "AuthorizationUsed", ChainEvent.key == transfer.nonce
            )
        ).all()

    handler = TransferEventHandler()
    for _ in range(2):  # idempotent
        with scene.sessions.begin() as session:
            handler.revert(session, event)
        reverted = scene.transfer(transfer_id)
        assert reverted.status == TransferStatus.SUBMITTED
        assert (reverted.block_number, reverted.confirmed_at) == (None, None)
    for _ in range(2):
        with scene.sessions.begin() as session:
            handler.apply(session, event)
        assert scene.transfer(transfer_id).status == TransferStatus.CONFIRMED
        assert scene.transfer(transfer_id).block_number == confirmed_in

    # Unknown nonces, and our nonce used by another authorizer, are not ours.
    for args, key in (
        ({"authorizer": payer.address, "nonce": "0x" + "11" * 32}, "0x" + "11" * 32),
        ({"authorizer": Account.create().address, "nonce": transfer.nonce}, transfer.nonce),
    ):
        stranger = ChainEvent(
            chain_id=event.chain_id,
            block_number=event.block_number,
            block_hash=event.block_hash,
            transaction_hash=event.transaction_hash,
            log_index=event.log_index,
            contract=event.contract,
            name="AuthorizationUsed",
            key=key,
            args=args,
            block_timestamp=event.block_timestamp,
        )
        with scene.sessions.begin() as session:
            handler.revert(session, stranger)
        assert scene.transfer(transfer_id).status == TransferStatus.CONFIRMED


async def test_a_transfer_reorganised_away_is_submitted_again(scene: Scene) -> None:
    kit = scene.kit
    payer = scene.payer(2_000_000)
    kit.w3.provider.make_request(RPCEndpoint("anvil_mine"), [1])  # the mint stays canonical
    transfer_id = scene.signed_transfer(payer, 1_000_000)
    relayer = scene.relayer(
        sponsors=(1,), settings=SETTINGS.model_copy(update={"stuck_after_seconds": 0.5})
    )
    follower = scene.follower()
    await scene.drive(relayer, lambda: confirmed(scene.transfer(transfer_id)), follower=follower)
    [first] = scene.sponsor_txs(transfer_id)
    recipient = scene.transfer(transfer_id).to_address

    # anvil drops the reorganised-out transactions: the transfer's is gone from the chain (and
    # with it its sponsor's nonce: the relayer must fill that gap or the sponsor stalls).
    response = kit.w3.provider.make_request(RPCEndpoint("anvil_reorg"), [1, []])
    assert "error" not in response
    assert kit.balance(recipient) == 0
    await follower.poll()
    assert scene.transfer(transfer_id).status == TransferStatus.SUBMITTED

    # The relayer finds it carried by nothing, the token says "unused": it goes again, once.
    await scene.drive(
        relayer, lambda: confirmed(scene.transfer(transfer_id)), follower=follower, timeout=30
    )
    txs = scene.sponsor_txs(transfer_id)
    assert txs[0].tx_hash == first.tx_hash
    assert scene.transfer(transfer_id).attempts == 2
    # Exactly one transaction carrying it is on the canonical chain now.
    receipts = [await scene.rpc.get_receipt(tx.tx_hash) for tx in txs]
    assert [r.succeeded for r in receipts if r is not None] == [True]
    assert receipts[0] is None
    assert kit.balance(recipient) == 1_000_000
    assert kit.balance(payer.address) == 1_000_000


# -- more faults -----------------------------------------------------------------------------------


async def test_a_stuck_transaction_is_replaced(scene: Scene) -> None:
    kit = scene.kit
    payer = scene.payer(2_000_000)
    transfer_id = scene.signed_transfer(payer, 1_000_000)
    relayer = scene.relayer(
        sponsors=(1,), settings=SETTINGS.model_copy(update={"stuck_after_seconds": 0.3})
    )
    kit.w3.provider.make_request(RPCEndpoint("evm_setAutomine"), [False])
    try:
        assert await relayer.submit_once() == 1
        [stuck] = scene.sponsor_txs(transfer_id)
        deadline = time.monotonic() + 10
        while len(scene.sponsor_txs(transfer_id)) < 2:
            assert time.monotonic() < deadline, "not replaced"
            await asyncio.sleep(0.1)
            await relayer.track_once()
        replacement = scene.sponsor_txs(transfer_id)[1]
        assert replacement.nonce == stuck.nonce
        assert replacement.max_priority_fee_per_gas > stuck.max_priority_fee_per_gas
        assert scene.transfer(transfer_id).tx_hash == replacement.tx_hash
        kit.w3.provider.make_request(RPCEndpoint("evm_mine"), [])
    finally:
        kit.w3.provider.make_request(RPCEndpoint("evm_setAutomine"), [True])
    await scene.drive(
        relayer, lambda: confirmed(scene.transfer(transfer_id)), follower=scene.follower()
    )
    statuses = {tx.tx_hash: tx.status for tx in scene.sponsor_txs(transfer_id)}
    assert statuses == {stuck.tx_hash: TxStatus.REPLACED, replacement.tx_hash: TxStatus.MINED}
    assert scene.transfer(transfer_id).tx_hash == replacement.tx_hash
    assert kit.balance(payer.address) == 1_000_000


async def test_a_sponsor_out_of_gas_hands_its_transfers_to_another(
    scene: Scene, caplog: pytest.LogCaptureFixture
) -> None:
    kit = scene.kit
    empty = kit.accounts.sponsors[1].address
    kit.w3.provider.make_request(RPCEndpoint("anvil_setBalance"), [empty, "0x0"])
    payer = scene.payer(5_000_000)
    ids = [scene.signed_transfer(payer, 1_000_000) for _ in range(4)]
    relayer = scene.relayer(sponsors=(1, 2))
    caplog.set_level(logging.ERROR, logger="seiwallet.alerts")
    await scene.drive(
        relayer, lambda: all(confirmed(t) for t in scene.transfers(ids)), follower=scene.follower()
    )
    assert {t.sponsor for t in scene.transfers(ids)} == {kit.accounts.sponsors[2].address}
    assert any(empty in r.getMessage() for r in caplog.records if r.name == "seiwallet.alerts")
    assert kit.balance(payer.address) == 1_000_000


async def test_with_every_sponsor_out_of_gas_transfers_wait_with_a_reason(scene: Scene) -> None:
    kit = scene.kit
    empty = kit.accounts.sponsors[1].address
    kit.w3.provider.make_request(RPCEndpoint("anvil_setBalance"), [empty, "0x0"])
    payer = scene.payer(1_000_000)
    transfer_id = scene.signed_transfer(payer, 1_000_000)
    relayer = scene.relayer(sponsors=(1,))
    await relayer.submit_once()
    transfer = scene.transfer(transfer_id)
    assert transfer.status == TransferStatus.SIGNED
    assert [tx.status for tx in scene.sponsor_txs(transfer_id)] == [TxStatus.DROPPED]
    await relayer.submit_once()  # no sponsor can pay: the transfer waits, and says why
    transfer = scene.transfer(transfer_id)
    assert transfer.status == TransferStatus.SIGNED
    assert transfer.delay_reason is not None
    assert "topped up" in transfer.delay_reason
    assert transfer.next_attempt_at is not None
    assert aware(transfer.next_attempt_at) > datetime.now(UTC) + timedelta(seconds=0.5)


# -- (h) payments and refunds through the PaymentRouter ride the same outbox ------------------


def _router_call(
    scene: Scene,
    signer: LocalAccount,
    terms: Payment | Refund,
    *,
    user_id: str,
    valid_before: int | None = None,
) -> str:
    """A signed ``router.pay``/``router.refund`` in the outbox, as the payments domain puts it."""
    router = scene.kit.deployment.router
    now = scene.kit.latest_timestamp()
    window = (now - 60, valid_before if valid_before is not None else now + 600)
    if isinstance(terms, Refund):
        authorization = refund_authorization(
            terms,
            router=router,
            chain_id=scene.kit.chain_id,
            valid_after=window[0],
            valid_before=window[1],
        )
    else:
        authorization = payment_authorization(
            terms,
            payer=signer.address,
            router=router,
            chain_id=scene.kit.chain_id,
            valid_after=window[0],
            valid_before=window[1],
        )
    with scene.sessions.begin() as session:
        return enqueue_router_call(
            session,
            SignedRouterCall(
                user_id=user_id,
                reference=os.urandom(8).hex(),
                chain_id=scene.kit.chain_id,
                symbol="USDC",
                decimals=6,
                from_address=signer.address,
                router=router,
                terms=terms,
                nonce=authorization.nonce,
                valid_after=window[0],
                valid_before=window[1],
                intent="{}",
                intent_digest="00" * 32,
                signature="0x" + scene.kit.sign_receive(signer, authorization).hex(),
                label="Coffee Corner",
            ),
            now=datetime.now(UTC),
        )


def _router_relayer(scene: Scene) -> Relayer:
    relayer = scene.relayer()
    return Relayer(
        scene.rpc,
        scene.sessions,
        [sponsor.sender for sponsor in relayer._sponsors],
        chain_id=scene.kit.chain_id,
        settings=SETTINGS,
        router=scene.kit.deployment.router,
    )


async def test_payments_and_refunds_go_through_the_router_once(scene: Scene) -> None:
    kit = scene.kit
    merchant: LocalAccount = Account.create()
    payers = [scene.payer(10_000_000) for _ in range(3)]
    payments = [
        Payment(
            invoice_id=os.urandom(32),
            merchant=merchant.address,
            token=kit.token_address("USDC"),
            amount_units=2_000_000 + index,
            fee_units=20_000,
        )
        for index in range(3)
    ]
    collector_before = kit.balance(kit.deployment.fee_collector)
    ids = [
        _router_call(scene, payer, payment, user_id=scene.user_id)
        for payer, payment in zip(payers, payments, strict=True)
    ]
    relayer, follower = _router_relayer(scene), scene.follower()
    await scene.drive(
        relayer, lambda: all(confirmed(t) for t in scene.transfers(ids)), follower=follower
    )
    assert kit.balance(merchant.address) == sum(p.amount_units - p.fee_units for p in payments)
    assert kit.balance(kit.deployment.fee_collector) - collector_before == 3 * 20_000
    for payer, payment, transfer in zip(payers, payments, scene.transfers(ids), strict=True):
        assert kit.balance(payer.address) == 10_000_000 - payment.amount_units
        assert transfer.to_address.lower() == kit.deployment.router.lower()
        assert transfer.attempts == 1
        assert 100_000 < (transfer.gas_used or 0) < 240_000

    # The merchant refunds part of the first payment: the router pays it back to the payer.
    refund = Refund(
        payment=payments[0], payer=payers[0].address, refund_id=os.urandom(32), amount_units=500_000
    )
    refund_id = _router_call(scene, merchant, refund, user_id=scene.user_id)
    await scene.drive(relayer, lambda: confirmed(scene.transfer(refund_id)), follower=follower)
    assert kit.balance(payers[0].address) == 10_000_000 - payments[0].amount_units + 500_000

    # Running on sends nothing twice. Three transactions: the two payments the first sponsor
    # took went in one payBatch, the second sponsor's one alone as pay, then the refund.
    for _ in range(5):
        await relayer.submit_once()
        await relayer.track_once()
        await follower.poll()
    with scene.sessions() as session:
        purposes = sorted(session.scalars(select(SentTransaction.purpose)))
    assert len(purposes) == 3
    assert sum(p.startswith(BATCH_PURPOSE_PREFIX) for p in purposes) == 1


async def test_a_payment_that_cannot_settle_fails_with_the_reason(scene: Scene) -> None:
    kit = scene.kit
    poor = scene.payer(1_000)  # holds less than the invoice asks
    payment = Payment(
        invoice_id=os.urandom(32),
        merchant=Account.create().address,
        token=kit.token_address("USDC"),
        amount_units=5_000_000,
        fee_units=0,
    )
    transfer_id = _router_call(scene, poor, payment, user_id=scene.user_id)
    relayer = _router_relayer(scene)
    await scene.drive(
        relayer, scene.all_in([transfer_id], TransferStatus.FAILED), follower=scene.follower()
    )
    failed = scene.transfer(transfer_id)
    assert failed.failure_reason is not None
    assert "balance" in failed.failure_reason.lower()
    assert scene.sponsor_txs(transfer_id) == []  # found by the simulation: no gas spent
