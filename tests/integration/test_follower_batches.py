"""The follower applies a range in a constant number of queries per handler, on both databases.

A fake node (:class:`FakeChain`: headers and logs, reorganised at will) feeds the follower the
token's events, and the worker's four handlers apply them: the ``SELECT``s a range costs do not
grow with its events (5 vs 50 transfers), two events of one range on one object are applied in
order (a partial deposit then the rest into one box), and a reorganisation reverts a range
applied in a batch, in a batch, before its new branch is applied.
"""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, cast

import pytest
from eth_account import Account
from eth_utils.crypto import keccak
from sqlalchemy import Engine, event, select
from sqlalchemy.orm import Session, sessionmaker
from tests.integration.test_deposits import ROUTER, Shop

from seiwallet.accounts.models import User, UserStatus
from seiwallet.chain import follower as follower_module
from seiwallet.chain.events import FIAT_TOKEN_EVENTS_ABI, EventDecoder
from seiwallet.chain.follower import Follower, PollResult
from seiwallet.chain.models import ChainEvent
from seiwallet.chain.rpc import BlockHeader, Log, RpcClient
from seiwallet.db import session_factory
from seiwallet.payments.deposit_models import DepositKind
from seiwallet.payments.deposits import DepositEventHandler
from seiwallet.payments.handlers import PaymentEventHandler
from seiwallet.payments.models import InvoiceStatus
from seiwallet.transfers.handlers import InvitationEventHandler, TransferEventHandler
from seiwallet.transfers.models import Transfer, TransferStatus

CHAIN = 713716
TOKEN = Account.create().address
DEPOSITS = "0x" + "34" * 20
USDC = 10**6

AUTHORIZATION_USED = "0x" + keccak(text="AuthorizationUsed(address,bytes32)").hex()
TRANSFER = "0x" + keccak(text="Transfer(address,address,uint256)").hex()


def _word(address: str) -> str:
    return "0x" + "00" * 12 + address[2:].lower()


def _hash() -> str:
    return "0x" + os.urandom(32).hex()


@dataclass(frozen=True)
class Move:
    """One EIP-3009 transfer as the token logs it: ``AuthorizationUsed`` then ``Transfer``."""

    authorizer: str
    to: str
    value: int
    nonce: str


@dataclass
class FakeChain:
    """A node with the four calls the follower makes; blocks are mined and reorganised by hand."""

    blocks: list[BlockHeader] = field(default_factory=list)
    logs: dict[int, list[Log]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._append([])  # genesis

    def mine(self, *moves: Move) -> BlockHeader:
        return self._append(list(moves))

    def reorg(self, depth: int, *branch: list[Move]) -> None:
        """Drop the newest ``depth`` blocks and mine ``branch`` (one block per list) instead."""
        for header in self.blocks[-depth:]:
            self.logs.pop(header.number, None)
        del self.blocks[-depth:]
        for moves in branch:
            self._append(moves)

    def _append(self, moves: list[Move]) -> BlockHeader:
        parent = self.blocks[-1] if self.blocks else None
        header = BlockHeader(
            number=parent.number + 1 if parent else 0,
            hash=_hash(),
            parent_hash=parent.hash if parent else "0x" + "00" * 32,
            timestamp=int(time.time()),
            gas_used=0,
            gas_limit=30_000_000,
            base_fee_per_gas=0,
            transaction_count=len(moves),
        )
        self.blocks.append(header)
        logs: list[Log] = []
        for move in moves:
            tx_hash = _hash()
            for topics, data in (
                ((AUTHORIZATION_USED, _word(move.authorizer), move.nonce), "0x"),
                ((TRANSFER, _word(move.authorizer), _word(move.to)), f"0x{move.value:064x}"),
            ):
                logs.append(
                    Log(
                        address=TOKEN.lower(),
                        topics=topics,
                        data=data,
                        block_number=header.number,
                        block_hash=header.hash,
                        transaction_hash=tx_hash,
                        log_index=len(logs),
                        removed=False,
                    )
                )
        self.logs[header.number] = logs
        return header

    # -- the follower's calls ------------------------------------------------------------------
    async def block_number(self) -> int:
        return self.blocks[-1].number

    async def get_block(self, block: int) -> BlockHeader | None:
        return self.blocks[block] if 0 <= block < len(self.blocks) else None

    async def get_blocks(self, numbers: list[int]) -> list[BlockHeader | None]:
        return [await self.get_block(number) for number in numbers]

    async def get_logs(self, *, from_block: int, to_block: int, addresses: Any = ()) -> list[Log]:
        return [log for n in range(from_block, to_block + 1) for log in self.logs.get(n, [])]


@dataclass
class Scene:
    chain: FakeChain
    sessions: sessionmaker[Session]
    user_id: str

    def follower(self) -> Follower:
        """The follower with the worker's handlers, from block 1."""
        return Follower(
            cast(RpcClient, self.chain),
            self.sessions,
            chain_id=CHAIN,
            decoder=EventDecoder({TOKEN: FIAT_TOKEN_EVENTS_ABI}),
            start_block=1,
            handlers=[
                TransferEventHandler(),
                InvitationEventHandler(),
                PaymentEventHandler(),
                DepositEventHandler(),
            ],
        )

    def submitted(self, count: int, *, to: str | None = None) -> list[tuple[str, Move]]:
        """``count`` transfers in flight (``submitted``), each with the move that confirms it."""
        made: list[tuple[str, Move]] = []
        with self.sessions.begin() as session:
            for _ in range(count):
                payer = Account.create().address
                move = Move(payer, to or Account.create().address, USDC, _hash())
                transfer_id = os.urandom(16).hex()
                session.add(
                    Transfer(
                        id=transfer_id,
                        user_id=self.user_id,
                        idempotency_key=transfer_id,
                        request_hash=hashlib.sha256(transfer_id.encode()).hexdigest(),
                        chain_id=CHAIN,
                        token=TOKEN,
                        symbol="USDC",
                        decimals=6,
                        from_address=payer,
                        to_address=move.to,
                        recipient_input=move.to,
                        amount_units=move.value,
                        note="",
                        nonce=move.nonce,
                        valid_after=0,
                        valid_before=2**40,
                        intent="{}",
                        intent_digest="00" * 32,
                        signature="0x" + "11" * 65,
                        status=TransferStatus.SUBMITTED,
                        attempts=1,
                        tx_hash=_hash(),
                        submitted_at=datetime.now(UTC),
                    )
                )
                made.append((transfer_id, move))
        return made

    def statuses(self, transfer_ids: list[str]) -> list[TransferStatus]:
        with self.sessions() as session:
            rows = {t.id: t for t in session.scalars(select(Transfer))}
            return [rows[i].status for i in transfer_ids]


@pytest.fixture
def scene(engine: Engine) -> Scene:
    sessions = session_factory(engine)
    user_id = os.urandom(16).hex()
    with sessions.begin() as session:
        session.add(User(id=user_id, status=UserStatus.ACTIVE))
    return Scene(FakeChain(), sessions, user_id)


@dataclass
class Statements:
    """The SQL statements sent on an engine while counting."""

    sent: list[str] = field(default_factory=list)

    @property
    def selects(self) -> int:
        return sum(1 for sql in self.sent if sql.lstrip().upper().startswith("SELECT"))

    @property
    def others(self) -> int:
        """Statements other than SELECTs and the inserts of ``chain_events`` rows."""
        return sum(
            1
            for sql in self.sent
            if not sql.lstrip().upper().startswith(("SELECT", "INSERT INTO CHAIN_EVENTS"))
        )


@contextmanager
def counting(engine: Engine) -> Iterator[Statements]:
    statements = Statements()

    def record(conn: Any, cursor: Any, sql: str, *args: Any) -> None:
        statements.sent.append(sql)

    event.listen(engine, "before_cursor_execute", record)
    try:
        yield statements
    finally:
        event.remove(engine, "before_cursor_execute", record)


async def test_a_range_costs_the_same_queries_for_5_or_50_transfers(
    scene: Scene, engine: Engine
) -> None:
    costs: dict[int, Statements] = {}
    for count in (5, 50):
        made = scene.submitted(count)
        scene.chain.mine(*(move for _, move in made))
        follower = scene.follower()
        with counting(engine) as statements:
            result = await follower.poll()
        assert result.events == 2 * count
        assert scene.statuses([i for i, _ in made]) == [TransferStatus.CONFIRMED] * count
        costs[count] = statements
    few, many = costs[5], costs[50]
    assert many.selects == few.selects
    assert many.selects <= 8  # the checkpoint (twice), a look-up per handler's kind of event
    # Nor do the other statements grow: updates go in one executemany, and so do the inserts,
    # but for the events' own rows on SQLite (the ORM needs their ids back, and SQLite promises
    # no order for a many-row RETURNING): one statement each there, all in one flush.
    assert many.others == few.others


async def test_chunks_split_a_large_range_without_losing_events(
    scene: Scene, engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(follower_module, "IN_CHUNK", 7)
    made = scene.submitted(30)
    scene.chain.mine(*(move for _, move in made))
    with counting(engine) as statements:
        await scene.follower().poll()
    assert scene.statuses([i for i, _ in made]) == [TransferStatus.CONFIRMED] * 30
    with counting(engine) as baseline:
        await scene.follower().poll()  # nothing new: the fixed cost of a poll
    # Five chunks of seven nonces (transfers, refund ids) and of seven recipients (boxes), and
    # the checkpoint's lock.
    assert statements.selects - baseline.selects == 3 * 5 + 1


async def test_two_deposits_of_one_range_into_one_box_apply_in_order(scene: Scene) -> None:
    shop = Shop(scene.sessions, chain_id=CHAIN, router=ROUTER)
    invoice_id, box = shop.invoice(TOKEN, DEPOSITS)
    payer = Account.create().address
    # One block: a transfer to someone else, 4 USDC into the box, then 7 more (11 of 10).
    scene.chain.mine(
        Move(payer, Account.create().address, 3 * USDC, _hash()),
        Move(payer, box, 4 * USDC, _hash()),
        Move(payer, box, 7 * USDC, _hash()),
    )
    await scene.follower().poll()
    invoice, deposit, receipts = shop.state(invoice_id)
    assert [(r.kind, r.value_units) for r in receipts] == [
        (DepositKind.PARTIAL, 4 * USDC),
        (DepositKind.SETTLING, 7 * USDC),
    ]
    assert invoice.status is InvoiceStatus.SETTLED
    assert invoice.anomalies == ["paid_over"]  # the second saw the first: the partial is cleared
    assert (deposit.received_units, invoice.paid_units) == (11 * USDC, 11 * USDC)
    assert shop.events(invoice_id) == [
        ("invoice.anomaly", "paid_partial"),
        ("invoice.settled", None),
    ]


async def test_a_reorganisation_reverts_a_batch_then_applies_the_new_branch(
    scene: Scene,
) -> None:
    shop = Shop(scene.sessions, chain_id=CHAIN, router=ROUTER)
    invoice_id, box = shop.invoice(TOKEN, DEPOSITS)
    made = scene.submitted(6)
    payer = Account.create().address
    partial, rest = Move(payer, box, 4 * USDC, _hash()), Move(payer, box, 6 * USDC, _hash())
    moves = [move for _, move in made]
    scene.chain.mine(*moves[:3], partial)
    scene.chain.mine(*moves[3:], rest)
    follower = scene.follower()
    result = await follower.poll()
    assert (result.from_block, result.to_block, result.events) == (1, 2, 16)
    ids = [i for i, _ in made]
    assert scene.statuses(ids) == [TransferStatus.CONFIRMED] * 6
    assert shop.state(invoice_id)[0].status is InvoiceStatus.SETTLED

    # Both blocks leave the chain; the new branch carries half of the transfers and the partial
    # deposit only, in one block.
    scene.chain.reorg(2, [*moves[:3], partial], [])
    result = await follower.poll()
    assert result.reorged_blocks == 2
    with scene.sessions() as session:
        transfers = {t.id: t for t in session.scalars(select(Transfer))}
        assert all(transfers[i].block_number == 1 for i in ids[:3])
        assert all(transfers[i].block_number is None for i in ids[3:])
        events = session.scalars(select(ChainEvent).where(ChainEvent.chain_id == CHAIN)).all()
        assert {e.block_hash for e in events} == {scene.chain.blocks[1].hash}
    assert scene.statuses(ids) == [TransferStatus.CONFIRMED] * 3 + [TransferStatus.SUBMITTED] * 3
    invoice, deposit, receipts = shop.state(invoice_id)
    assert [(r.kind, r.block_hash) for r in receipts] == [
        (DepositKind.PARTIAL, scene.chain.blocks[1].hash)
    ]
    assert invoice.status is InvoiceStatus.NEW
    assert invoice.paid_partial
    assert (deposit.received_units, invoice.paid_units) == (4 * USDC, 4 * USDC)
    assert shop.events(invoice_id) == [
        ("invoice.anomaly", "paid_partial"),
        ("invoice.settled", None),
        ("invoice.anomaly", "deposit_reverted"),  # the settling deposit left the chain
        ("invoice.anomaly", "paid_partial"),  # the partial one, mined again
    ]

    # The rest arrives later: it settles the invoice once more.
    scene.chain.mine(*moves[3:], rest)
    results: list[PollResult] = [await follower.poll()]
    assert results[-1].caught_up
    assert scene.statuses(ids) == [TransferStatus.CONFIRMED] * 6
    assert shop.state(invoice_id)[0].status is InvoiceStatus.SETTLED
