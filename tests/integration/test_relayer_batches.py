"""Payments settled in batches (the router's ``payBatch``) by the relayer, against anvil and both
databases: many payments in one sponsor transaction, each settled once with its fee; a payment
that fails inside a mined batch decided alone (its invoice ``invalid``) while the others settle;
a crash between recording and broadcasting; a stuck batch replaced; recovery at start with a
mined batch; and the gas a batch costs per payment, split among its members."""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import pytest
from eth_account import Account
from eth_account.signers.local import LocalAccount
from sqlalchemy import Engine, func, select
from tests.fixtures.chain import ChainKit
from tests.integration.test_relayer import (
    SETTINGS,
    DiesAtBroadcast,
    ProcessDied,
    Scene,
    _router_call,
    confirmed,
)
from web3.types import RPCEndpoint

from seiwallet.accounts.models import User, UserStatus
from seiwallet.chain.follower import Follower
from seiwallet.chain.localnet import LocalChain
from seiwallet.chain.models import ChainEvent, SentTransaction, TxStatus
from seiwallet.chain.router import Payment, payment_authorization
from seiwallet.chain.rpc import Receipt, RpcClient
from seiwallet.cli.runtime import event_decoder
from seiwallet.compliance.gate import ComplianceGate
from seiwallet.config import PaymentSettings, RelayerSettings
from seiwallet.db import session_factory
from seiwallet.deployments import Contracts
from seiwallet.payments.handlers import PaymentEventHandler, reconcile_outbox
from seiwallet.payments.invoices import InvoiceRequest
from seiwallet.payments.merchants import MerchantOwner
from seiwallet.payments.models import AttemptStatus, Invoice, InvoiceStatus, PaymentAttempt
from seiwallet.payments.services import Payer, Payments, build_payments
from seiwallet.signer.intents import RouterPay, parse_intent
from seiwallet.transfers.handlers import TransferEventHandler
from seiwallet.transfers.models import Transfer, TransferBatchMember, TransferStatus
from seiwallet.transfers.outbox import carried_by
from seiwallet.transfers.rates import OfflineRates
from seiwallet.transfers.relayer import BATCH_PURPOSE_PREFIX, Relayer, gas_shares
from seiwallet.transfers.services import TokenInfo

pytestmark = pytest.mark.chain

USDC = 10**6

#: Gas per payment of a batch, measured on anvil (Ethereum's schedule): 95.7 k at 10 a batch,
#: 91.5 k at 50, against 139.6 k for a lone ``pay``. A generous regression guard.
BATCH_GAS_PER_PAYMENT_BUDGET = 105_000


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


def relayer(
    scene: Scene,
    *,
    rpc: RpcClient | None = None,
    sponsors: Sequence[int] = (1,),
    settings: RelayerSettings = SETTINGS,
) -> Relayer:
    """A relayer that knows the router (its rows to it are payments)."""
    return scene.relayer(
        rpc=rpc, sponsors=sponsors, settings=settings, router=scene.kit.deployment.router
    )


def follower(scene: Scene) -> Follower:
    """The follower with the transfers' and the payments' handlers, as the worker runs it."""
    deployment = scene.kit.deployment
    contracts = Contracts(
        router=deployment.router,
        tokens={symbol: token.address for symbol, token in deployment.tokens.items()},
        deployed_at=scene.start_block,
    )
    return Follower(
        scene.rpc,
        scene.sessions,
        chain_id=scene.kit.chain_id,
        decoder=event_decoder(contracts),
        start_block=scene.start_block,
        handlers=[TransferEventHandler(), PaymentEventHandler()],
    )


def payment(scene: Scene, merchant: str, amount_units: int, fee_units: int = 0) -> Payment:
    return Payment(
        invoice_id=os.urandom(32),
        merchant=merchant,
        token=scene.kit.token_address("USDC"),
        amount_units=amount_units,
        fee_units=fee_units,
    )


def batch_txs(scene: Scene) -> list[SentTransaction]:
    with scene.sessions() as session:
        return list(
            session.scalars(
                select(SentTransaction)
                .where(SentTransaction.purpose.startswith(BATCH_PURPOSE_PREFIX))
                .order_by(SentTransaction.id)
            )
        )


def members(scene: Scene, tx_hash: str) -> list[str]:
    with scene.sessions() as session:
        return list(
            session.scalars(
                select(TransferBatchMember.transfer_id)
                .where(TransferBatchMember.tx_hash == tx_hash)
                .order_by(TransferBatchMember.position)
            )
        )


async def receipt_of(scene: Scene, tx_hash: str) -> Receipt:
    receipt = await scene.rpc.get_receipt(tx_hash)
    assert receipt is not None
    return receipt


def assert_gas_split(transfers: Sequence[Transfer], receipt: Receipt) -> None:
    """The members' gas adds up to the batch's exactly, in even shares."""
    shares = [t.gas_used or 0 for t in transfers]
    assert sum(shares) == receipt.gas_used
    assert max(shares) - min(shares) <= 1
    assert sum(t.gas_cost_wei or 0 for t in transfers) == (
        receipt.gas_used * receipt.effective_gas_price
    )


# -- pure: the split ---------------------------------------------------------------------------


def test_gas_shares_add_up_to_the_receipt() -> None:
    assert gas_shares(1_000_003, 4) == [250_001, 250_001, 250_001, 250_000]
    assert sum(gas_shares(4_577_006, 50)) == 4_577_006
    assert gas_shares(0, 3) == [0, 0, 0]
    assert gas_shares(10, 0) == []


# -- a batch of payments ------------------------------------------------------------------------


async def test_a_batch_of_payments_settles_each_once_with_its_fee(scene: Scene) -> None:
    kit = scene.kit
    merchant = Account.create().address
    count = 12
    payers = [scene.payer(10 * USDC) for _ in range(count)]
    payments = [payment(scene, merchant, 2 * USDC + i, fee_units=20_000) for i in range(count)]
    collector_before = kit.balance(kit.deployment.fee_collector)
    ids = [
        _router_call(scene, payer, terms, user_id=scene.user_id)
        for payer, terms in zip(payers, payments, strict=True)
    ]
    # A plain transfer in the same round keeps its own transaction.
    plain = scene.signed_transfer(scene.payer(USDC), 500_000)
    relay, follow = relayer(scene), follower(scene)

    await scene.drive(
        relay, lambda: all(confirmed(t) for t in scene.transfers([*ids, plain])), follower=follow
    )

    [batch] = batch_txs(scene)
    assert batch.status is TxStatus.MINED
    assert batch.to is not None
    assert batch.to.lower() == kit.deployment.router.lower()
    assert members(scene, batch.tx_hash) == ids  # in claim (signing) order
    receipt = await receipt_of(scene, batch.tx_hash)
    transfers = scene.transfers(ids)
    for transfer in transfers:
        assert (transfer.tx_hash, transfer.attempts) == (batch.tx_hash, 1)
        assert transfer.block_number == receipt.block_number
        assert transfer.sponsor == batch.sponsor
    assert_gas_split(transfers, receipt)
    per_payment = receipt.gas_used / count
    assert 60_000 < per_payment < BATCH_GAS_PER_PAYMENT_BUDGET, per_payment
    assert [tx.purpose for tx in scene.sponsor_txs(plain)] == [f"transfer:{plain}"]
    # The money: each payer paid once, the merchant got the amounts less the fees.
    assert kit.balance(merchant) == sum(p.amount_units - p.fee_units for p in payments)
    assert kit.balance(kit.deployment.fee_collector) - collector_before == count * 20_000
    for payer, terms in zip(payers, payments, strict=True):
        assert kit.balance(payer.address) == 10 * USDC - terms.amount_units

    # Running on sends nothing again.
    for _ in range(5):
        await relay.submit_once()
        await relay.track_once()
        await follow.poll()
    with scene.sessions() as session:
        assert session.scalar(select(func.count()).select_from(SentTransaction)) == 2
        settled = session.scalar(
            select(func.count()).select_from(ChainEvent).where(ChainEvent.name == "PaymentSettled")
        )
    assert settled == count


async def test_batches_are_cut_at_the_configured_size(scene: Scene) -> None:
    merchant = Account.create().address
    ids = [
        _router_call(
            scene, scene.payer(USDC), payment(scene, merchant, USDC), user_id=scene.user_id
        )
        for _ in range(5)
    ]
    relay = relayer(scene, settings=SETTINGS.model_copy(update={"router_batch_max": 2}))
    await scene.drive(
        relay, lambda: all(confirmed(t) for t in scene.transfers(ids)), follower=follower(scene)
    )
    # 2 + 2 in batches, and the fifth alone as a plain ``pay``.
    assert [len(members(scene, tx.tx_hash)) for tx in batch_txs(scene)] == [2, 2]
    assert [tx.purpose for tx in scene.sponsor_txs(ids[4])] == [f"transfer:{ids[4]}"]
    assert scene.kit.balance(merchant) == 5 * USDC


@pytest.mark.parametrize("per_payment", [60_000, 50_000])
async def test_a_batch_that_needs_more_gas_is_estimated(scene: Scene, per_payment: int) -> None:
    """Payments to new merchants cost more than the formula's per-payment gas: the simulation
    at that limit says BatchGasTooLow (or, far too low, the node's plain out-of-gas), and the
    batch goes with an estimate instead."""
    ids = [
        _router_call(
            scene,
            scene.payer(USDC),
            payment(scene, Account.create().address, USDC),
            user_id=scene.user_id,
        )
        for _ in range(4)
    ]
    tight = SETTINGS.model_copy(
        update={"router_batch_gas_overhead": 21_000, "router_batch_gas_per_payment": per_payment}
    )
    relay = relayer(scene, settings=tight)
    await scene.drive(
        relay, lambda: all(confirmed(t) for t in scene.transfers(ids)), follower=follower(scene)
    )
    [batch] = batch_txs(scene)
    assert batch.gas_limit > 21_000 + 4 * per_payment
    assert members(scene, batch.tx_hash) == ids


# -- a payment failing inside a mined batch, through the payments domain -------------------------


@dataclass
class ChainSigner:
    """The signer's job done with the payers' test keys: a real EIP-3009 signature of the
    ``router.pay`` intent, as the signer process would make."""

    kit: ChainKit
    keys: dict[str, LocalAccount] = field(default_factory=dict)

    async def sign(
        self, wallet_id: str, intent: Mapping[str, Any], approvals: Sequence[Mapping[str, Any]]
    ) -> dict[str, Any]:
        parsed = parse_intent(intent)
        assert isinstance(parsed, RouterPay)
        key = self.keys[wallet_id]
        terms = payment_authorization(
            parsed.payment(),
            payer=key.address,
            router=parsed.router,
            chain_id=parsed.token.chain_id,
            valid_after=parsed.valid_after,
            valid_before=parsed.valid_before,
        )
        return {"signature": "0x" + self.kit.sign_receive(key, terms).hex()}


@dataclass
class Shop:
    scene: Scene
    payments: Payments
    signer: ChainSigner
    store_id: str
    principal: Any

    def payer(self, amount_units: int) -> Payer:
        key = self.scene.payer(amount_units)
        user_id = uuid.uuid4().hex
        with self.scene.sessions.begin() as session:
            session.add(
                User(
                    id=user_id,
                    email=f"{user_id}@example.com",
                    email_verified=True,
                    wallet_id=user_id,
                    wallet_address=key.address,
                    status=UserStatus.ACTIVE,
                )
            )
        self.signer.keys[user_id] = key
        return Payer(user_id, user_id, key.address)

    async def paid(self, payer: Payer, amount: str) -> tuple[str, str]:
        """An invoice, prepared and approved by ``payer``: (invoice id, outbox row)."""
        view, _ = await self.payments.invoices.create(
            self.principal, self.store_id, InvoiceRequest(amount=amount, currency="USDC")
        )
        attempt = await self.payments.payments.prepare(str(view["id"]), payer)
        await self.payments.payments.approve(payer, attempt.id, [])
        with self.scene.sessions() as session:
            row = session.get(PaymentAttempt, attempt.id)
            assert row is not None
            assert row.transfer_id is not None
            return str(view["id"]), row.transfer_id

    def invoice(self, invoice_id: str) -> Invoice:
        with self.scene.sessions() as session:
            found = session.get(Invoice, invoice_id)
            assert found is not None
            return found

    def attempt_of(self, invoice_id: str) -> PaymentAttempt:
        with self.scene.sessions() as session:
            found = session.scalars(
                select(PaymentAttempt).where(PaymentAttempt.invoice_id == invoice_id)
            ).one()
            return found


@dataclass
class _Balances:
    async def balance(self, token: str, owner: str) -> int:
        return 1_000 * USDC


@pytest.fixture
async def shop(scene: Scene) -> Shop:
    kit = scene.kit
    signer = ChainSigner(kit)
    payments = build_payments(
        scene.sessions,
        signer,  # type: ignore[arg-type]
        _Balances(),
        {"USDC": TokenInfo("USDC", "USD Coin", 6, kit.domain("USDC"))},
        ComplianceGate(per_transfer_cap={"USDC": Decimal(10_000)}),
        chain_id=kit.chain_id,
        router=kit.deployment.router,
        settings=PaymentSettings(),
        rates=OfflineRates(),
        allow_http_webhooks=True,
    )
    owner_id = uuid.uuid4().hex
    owner_address = Account.create().address
    with scene.sessions.begin() as session:
        session.add(
            User(
                id=owner_id,
                email="owner@shop.example",
                email_verified=True,
                wallet_id=owner_id,
                wallet_address=owner_address,
                status=UserStatus.ACTIVE,
            )
        )
    merchant = await payments.merchants.become_merchant(
        MerchantOwner(owner_id, owner_id, owner_address),
        name="Lantau Tea Ltd",
        settlement_token="USDC",
    )
    principal = payments.merchants.principal_for_user(owner_id, merchant.id)
    store = payments.merchants.create_store(
        principal, name="Lantau Tea House", country="HK", currency="HKD"
    )
    return Shop(scene, payments, signer, store.id, principal)


async def test_a_payment_failing_inside_a_batch_invalidates_only_its_invoice(
    scene: Scene, shop: Shop
) -> None:
    kit = scene.kit
    # Each alone is covered by the first payer's balance, both together are not: each passes
    # its own simulation, and the second fails inside the mined batch (PaymentFailed).
    short = shop.payer(15 * USDC)
    rich = shop.payer(50 * USDC)
    first, first_row = await shop.paid(short, "10")
    second, second_row = await shop.paid(short, "10")
    third, third_row = await shop.paid(rich, "10")
    relay, follow = relayer(scene), follower(scene)

    def done() -> bool:
        with scene.sessions.begin() as session:
            reconcile_outbox(session, chain_id=kit.chain_id)
        return {shop.invoice(i).status for i in (first, third)} == {InvoiceStatus.SETTLED} and (
            shop.invoice(second).status is InvoiceStatus.INVALID
            and scene.transfer(second_row).status is TransferStatus.FAILED
        )

    await scene.drive(relay, done, follower=follow)

    [batch] = batch_txs(scene)
    assert members(scene, batch.tx_hash) == [first_row, second_row, third_row]
    receipt = await receipt_of(scene, batch.tx_hash)
    assert receipt.succeeded  # the batch succeeds; one payment in it failed
    failed = scene.transfer(second_row)
    assert failed.failure_code == "token.insufficient_balance", failed.failure_reason
    invalid = shop.invoice(second)
    assert invalid.failure_code == "token.insufficient_balance"
    assert shop.attempt_of(second).status is AttemptStatus.FAILED
    for invoice_id in (first, third):
        assert shop.attempt_of(invoice_id).status is AttemptStatus.SETTLED
        assert shop.invoice(invoice_id).tx_hash == batch.tx_hash
    # The failed member's share of the gas is on its row too: the split covers the batch.
    assert_gas_split(scene.transfers([first_row, second_row, third_row]), receipt)
    assert kit.balance(short.address) == 5 * USDC
    assert kit.balance(rich.address) == 40 * USDC
    # Nothing is sent again for the failed payment.
    for _ in range(3):
        await relay.submit_once()
        await relay.track_once()
    assert len(batch_txs(scene)) == 1
    assert scene.sponsor_txs(second_row) == []


# -- crashes, replacement and recovery -----------------------------------------------------------


async def test_a_crash_between_recording_and_broadcasting_a_batch_settles_it_once(
    scene: Scene, local_chain: LocalChain
) -> None:
    kit = scene.kit
    merchant = Account.create().address
    payers = [scene.payer(5 * USDC) for _ in range(3)]
    ids = [
        _router_call(scene, payer, payment(scene, merchant, USDC), user_id=scene.user_id)
        for payer in payers
    ]
    async with DiesAtBroadcast(local_chain.rpc_url) as dying_rpc:
        with pytest.raises(ProcessDied):
            await relayer(scene, rpc=dying_rpc).submit_once()

    # The batch transaction, its members and their "submitted" were committed together...
    [recorded] = batch_txs(scene)
    assert recorded.status is TxStatus.SIGNED
    assert members(scene, recorded.tx_hash) == ids
    for transfer in scene.transfers(ids):
        assert (transfer.status, transfer.tx_hash, transfer.attempts) == (
            TransferStatus.SUBMITTED,
            recorded.tx_hash,
            1,
        )
    # ...and nothing reached the chain.
    assert await scene.rpc.get_transaction(recorded.tx_hash) is None
    assert kit.balance(merchant) == 0

    restarted = relayer(scene)
    report = await restarted.recover()
    assert report.rebroadcast == 1
    await scene.drive(
        restarted, lambda: all(confirmed(t) for t in scene.transfers(ids)), follower=follower(scene)
    )
    [tx] = batch_txs(scene)
    assert (tx.tx_hash, tx.status) == (recorded.tx_hash, TxStatus.MINED)
    assert [t.attempts for t in scene.transfers(ids)] == [1, 1, 1]
    assert_gas_split(scene.transfers(ids), await receipt_of(scene, tx.tx_hash))
    assert kit.balance(merchant) == 3 * USDC
    assert [kit.balance(p.address) for p in payers] == [4 * USDC] * 3


async def test_a_stuck_batch_is_replaced_and_every_member_follows(scene: Scene) -> None:
    kit = scene.kit
    merchant = Account.create().address
    ids = [
        _router_call(
            scene, scene.payer(2 * USDC), payment(scene, merchant, USDC), user_id=scene.user_id
        )
        for _ in range(3)
    ]
    relay = relayer(scene, settings=SETTINGS.model_copy(update={"stuck_after_seconds": 0.3}))
    kit.w3.provider.make_request(RPCEndpoint("evm_setAutomine"), [False])
    try:
        assert await relay.submit_once() == 3
        [stuck] = batch_txs(scene)
        deadline = time.monotonic() + 10
        while len(batch_txs(scene)) < 2:
            assert time.monotonic() < deadline, "not replaced"
            await asyncio.sleep(0.1)
            await relay.track_once()
        replacement = batch_txs(scene)[1]
        assert replacement.nonce == stuck.nonce
        assert replacement.max_priority_fee_per_gas > stuck.max_priority_fee_per_gas
        assert {t.tx_hash for t in scene.transfers(ids)} == {replacement.tx_hash}
        # Both hashes name the members: whichever is mined, it is ours for each of them.
        assert members(scene, stuck.tx_hash) == members(scene, replacement.tx_hash) == ids
        with scene.sessions() as session:
            for transfer_id in ids:
                for tx in (stuck, replacement):
                    assert carried_by(
                        session, chain_id=kit.chain_id, tx_hash=tx.tx_hash, transfer_id=transfer_id
                    )
                assert not carried_by(
                    session,
                    chain_id=kit.chain_id,
                    tx_hash="0x" + "66" * 32,
                    transfer_id=transfer_id,
                )
        kit.w3.provider.make_request(RPCEndpoint("evm_mine"), [])
    finally:
        kit.w3.provider.make_request(RPCEndpoint("evm_setAutomine"), [True])
    await scene.drive(
        relay, lambda: all(confirmed(t) for t in scene.transfers(ids)), follower=follower(scene)
    )
    statuses = {tx.tx_hash: tx.status for tx in batch_txs(scene)}
    assert statuses == {stuck.tx_hash: TxStatus.REPLACED, replacement.tx_hash: TxStatus.MINED}
    transfers = scene.transfers(ids)
    assert {t.tx_hash for t in transfers} == {replacement.tx_hash}
    assert_gas_split(transfers, await receipt_of(scene, replacement.tx_hash))
    assert kit.balance(merchant) == 3 * USDC


async def test_recovery_at_start_settles_a_mined_batch_and_decides_its_failed_member(
    scene: Scene,
) -> None:
    kit = scene.kit
    merchant = Account.create().address
    short = scene.payer(3 * USDC)
    rich = scene.payer(5 * USDC)
    ids = [
        _router_call(scene, short, payment(scene, merchant, 2 * USDC), user_id=scene.user_id),
        _router_call(scene, short, payment(scene, merchant, 2 * USDC), user_id=scene.user_id),
        _router_call(scene, rich, payment(scene, merchant, 2 * USDC), user_id=scene.user_id),
    ]
    # One worker broadcasts the batch (mined at once: automine) and dies before tracking it.
    assert await relayer(scene).submit_once() == 3
    [batch] = batch_txs(scene)
    receipt = await receipt_of(scene, batch.tx_hash)
    assert receipt.succeeded
    assert batch.status is TxStatus.BROADCAST

    restarted = relayer(scene)
    report = await restarted.recover()
    assert (report.mined, report.rebroadcast) == (1, 0)
    assert report.resolved == 3
    failed = scene.transfer(ids[1])
    assert (failed.status, failed.failure_code) == (
        TransferStatus.FAILED,
        "token.insufficient_balance",
    )
    # The recovered receipt's gas is split over the members, once.
    assert_gas_split(scene.transfers(ids), receipt)
    await scene.drive(
        restarted,
        lambda: all(confirmed(scene.transfer(i)) for i in (ids[0], ids[2])),
        follower=follower(scene),
    )
    assert scene.transfer(ids[1]).status is TransferStatus.FAILED
    assert_gas_split(scene.transfers(ids), receipt)
    assert kit.balance(merchant) == 4 * USDC
    assert kit.balance(short.address) == USDC
    assert len(batch_txs(scene)) == 1
