"""The chain follower: applies our contracts' events to the database exactly once, in order.

Each poll reads the blocks after the stored checkpoint (up to the head minus the network's
confirmations), checks they extend the blocks already applied, and applies their events,
the recent block hashes and the new checkpoint in **one** database transaction. Hence:

* a crash or restart resumes from the checkpoint: no event is missed, none applied twice;
* a reorganisation is found by a parent-hash mismatch; the follower walks back through the
  recent hashes it kept to the fork point, removes the events of the abandoned blocks (and
  lets handlers undo their effects) and reads the new branch;
* two followers of one chain cannot both apply a range: the checkpoint row is locked and
  re-checked before writing (``SELECT … FOR UPDATE`` on PostgreSQL), the loser backs off.

A range is applied in a constant number of statements per handler, not one per event: its rows
are inserted in one flush, then each handler that has the batch hooks of
:class:`BatchEventHandler` loads (and locks) in a few ``IN`` queries what the range's events
will touch, and only then is each event applied in order, the handlers reading what they loaded
from memory (the session's identity map), so an event sees what the events before it did.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Hashable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar, cast

from sqlalchemy import delete, select
from sqlalchemy.orm import Session, sessionmaker

from seiwallet.chain.errors import ChainError
from seiwallet.chain.events import DecodedEvent, EventDecoder
from seiwallet.chain.models import ChainEvent, FollowerCursor, SeenBlock
from seiwallet.chain.rpc import BlockHeader, Log, RpcClient
from seiwallet.db import SQLITE_BEGIN

log = logging.getLogger(__name__)
_WRITE = {SQLITE_BEGIN: "IMMEDIATE"}

#: Keys per ``IN`` list of a handler's batch look-up: far below every backend's parameter limit
#: (SQLite 32766, PostgreSQL 65535) and small enough for the planner to use the index.
IN_CHUNK = 500
#: Where handlers keep what their batch hook loaded, in ``Session.info`` (see :func:`batch_cache`).
_BATCH_INFO = "seiwallet.follower.batch"

_K = TypeVar("_K", bound=Hashable)
_M = TypeVar("_M")


def read_checkpoint(
    sessions: sessionmaker[Session], chain_id: int, name: str = "main"
) -> tuple[int, str] | None:
    """A follower's last applied block (number, hash), or ``None`` if it never applied one."""
    with sessions() as session:
        cursor = session.get(FollowerCursor, (chain_id, name))
        return (cursor.block_number, cursor.block_hash) if cursor else None


def chunked(values: Iterable[_K], size: int | None = None) -> Iterator[list[_K]]:
    """``values`` without repeats, in first-seen order, in lists of at most ``size`` (default
    :data:`IN_CHUNK`): the keys of a batch look-up, one ``IN`` list per query."""
    unique = list(dict.fromkeys(values))
    step = size or IN_CHUNK
    for start in range(0, len(unique), step):
        yield unique[start : start + step]


def locked_in(
    session: Session,
    entity: type[_M],
    column: Any,
    keys: Iterable[Any],
    *,
    order_by: Any,
    where: Sequence[Any] = (),
) -> Iterator[_M]:
    """The ``entity`` rows whose ``column`` is one of ``keys`` (and ``where`` holds), locked for
    update in ``order_by`` order — the order every writer of that table takes its rows in — one
    query per :func:`chunked` list of keys: a batch hook's look-up."""
    for chunk in chunked(keys):
        yield from session.scalars(
            select(entity).where(*where, column.in_(chunk)).order_by(order_by).with_for_update()
        )


def batch_cache(session: Session) -> dict[str, object]:
    """Where a handler's batch hook keeps what it loaded for the range being applied (or
    reverted) in ``session``, under a key of its own; the follower empties it after the range,
    so nothing outlives the transaction it was loaded (and locked) in."""
    return cast("dict[str, object]", session.info.setdefault(_BATCH_INFO, {}))


class EventHandler(Protocol):
    """A domain's reaction to chain events, run inside the follower's transaction."""

    def apply(self, session: Session, event: ChainEvent) -> None:
        """React to a newly applied event (e.g. mark an invoice paid)."""

    def revert(self, session: Session, event: ChainEvent) -> None:
        """Undo :meth:`apply` for an event whose block left the canonical chain."""


class BatchEventHandler(EventHandler, Protocol):
    """A handler that loads what a whole range needs before its events are applied one by one.

    Both hooks are optional (the follower calls each one a handler has): ``prepare`` runs once
    with all of a range's new events before their :meth:`apply` calls, ``prepare_revert`` once
    with all the orphaned events of a reorganisation (newest first) before their :meth:`revert`
    calls. A hook loads its rows in a few queries (``IN`` lists of :func:`chunked` keys), takes
    the locks the per-event code would take (``with_for_update``), and remembers hits *and*
    misses in :func:`batch_cache`; ``apply``/``revert`` then look events up there and fall back
    to their own query for an event the hook did not see. Rows are shared through the session's
    identity map, so a later event of the range sees what an earlier one changed. A miss stays a
    miss for the range only because no handler creates the rows another one looks up.
    """

    def prepare(self, session: Session, events: Sequence[ChainEvent]) -> None:
        """Load what :meth:`apply` of ``events`` (in this order) will read."""

    def prepare_revert(self, session: Session, events: Sequence[ChainEvent]) -> None:
        """Load what :meth:`revert` of ``events`` (in this order) will read."""


class DeepReorg(ChainError):
    """The chain reorganised deeper than the blocks the follower remembers."""

    code = "chain.deep_reorg"

    def __init__(self, chain_id: int, depth: int) -> None:
        super().__init__(
            f"chain {chain_id} reorganised more than {depth} blocks deep: the follower stopped; "
            "raise SEIWALLET_CONFIRMATIONS for this network and resync it from an earlier block"
        )


class _RangeChanged(Exception):
    """The chain changed while a range was being read; read it again."""


@dataclass(frozen=True)
class PollResult:
    """What one poll did."""

    from_block: int
    to_block: int
    events: int
    reorged_blocks: int
    head: int
    #: The newest block with enough confirmations to be applied.
    target: int

    @property
    def caught_up(self) -> bool:
        return self.to_block >= self.target


class Follower:
    """Follows one chain from ``start_block``, writing its events to ``chain_events``.

    ``name`` keys the checkpoint; the events table belongs to the chain, so run one event
    follower per chain (any number of processes may run it: they coordinate through the
    checkpoint row).
    """

    def __init__(
        self,
        rpc: RpcClient,
        sessions: sessionmaker[Session],
        *,
        chain_id: int,
        decoder: EventDecoder,
        name: str = "main",
        start_block: int = 0,
        confirmations: int = 1,
        handlers: Sequence[EventHandler] = (),
        max_range: int = 500,
        remembered_blocks: int = 256,
    ) -> None:
        if confirmations < 1:
            raise ValueError("confirmations counts the block itself: it is at least 1")
        self._rpc = rpc
        self._sessions = sessions
        self.chain_id = chain_id
        self.name = name
        self._decoder = decoder
        self.start_block = start_block
        self._confirmations = confirmations
        self._handlers = tuple(handlers)
        self._max_range = max_range
        self._remembered = remembered_blocks

    # -- state -------------------------------------------------------------------------------
    def checkpoint(self) -> tuple[int, str] | None:
        """The last applied block (number, hash), or ``None`` before the first poll."""
        return read_checkpoint(self._sessions, self.chain_id, self.name)

    # -- one step ----------------------------------------------------------------------------
    async def poll(self) -> PollResult:
        """Apply the next range of blocks (or undo a reorganisation); return what was done."""
        head = await self._rpc.block_number()
        target = head - (self._confirmations - 1)
        checkpoint = self.checkpoint()
        reorged = 0
        if checkpoint is not None:
            applied_number, applied_hash = checkpoint
            canonical = await self._rpc.get_block(applied_number)
            if canonical is None or canonical.hash != applied_hash:
                reorged = await self._rewind(applied_number)
                checkpoint = self.checkpoint()
        first = checkpoint[0] + 1 if checkpoint else self.start_block
        last = min(target, first + self._max_range - 1)
        if last < first:
            return PollResult(first, first - 1, 0, reorged, head, target)
        try:
            headers, logs = await self._read_range(first, last, checkpoint)
        except _RangeChanged:
            log.info("chain %s changed while reading %s-%s: retrying", self.chain_id, first, last)
            return PollResult(first, first - 1, 0, reorged, head, target)
        events = self._decoder.decode_all(logs)
        applied = self._apply(checkpoint, headers, events)
        return PollResult(first, last if applied else first - 1, len(events), reorged, head, target)

    async def _read_range(
        self, first: int, last: int, checkpoint: tuple[int, str] | None
    ) -> tuple[list[BlockHeader], list[Log]]:
        """Headers and logs of a range, checked to form one branch on top of the checkpoint."""
        numbers = list(range(first, last + 1))
        chunks = [numbers[i : i + 100] for i in range(0, len(numbers), 100)]
        logs_task = asyncio.ensure_future(
            self._rpc.get_logs(from_block=first, to_block=last, addresses=self._decoder.addresses)
        )
        header_chunks = await asyncio.gather(*(self._rpc.get_blocks(c) for c in chunks))
        logs = await logs_task
        headers: list[BlockHeader] = []
        for chunk_headers in header_chunks:
            for header in chunk_headers:
                if header is None:
                    raise _RangeChanged
                headers.append(header)
        parent = checkpoint[1] if checkpoint else None
        for header in headers:
            if parent is not None and header.parent_hash != parent:
                raise _RangeChanged
            parent = header.hash
        hashes = {h.number: h.hash for h in headers}
        if any(
            entry.removed or hashes.get(entry.block_number) != entry.block_hash for entry in logs
        ):
            raise _RangeChanged
        return headers, logs

    def _apply(
        self,
        checkpoint: tuple[int, str] | None,
        headers: list[BlockHeader],
        events: list[DecodedEvent],
    ) -> bool:
        """Write a range's events, block hashes and the new checkpoint in one transaction."""
        timestamps = {h.number: h.timestamp for h in headers}
        with self._sessions.begin() as session:
            # SQLite: take the write lock at BEGIN, so another process's writer makes us wait
            # (busy timeout) rather than fail to upgrade a read lock ("database is locked").
            session.connection(execution_options=_WRITE)
            cursor = session.scalars(
                select(FollowerCursor)
                .where(FollowerCursor.chain_id == self.chain_id, FollowerCursor.name == self.name)
                .with_for_update()
            ).one_or_none()
            current = (cursor.block_number, cursor.block_hash) if cursor else None
            if current != checkpoint:
                log.info("follower %s/%s: another follower moved on", self.chain_id, self.name)
                return False
            rows = [
                ChainEvent(
                    chain_id=self.chain_id,
                    block_number=event.log.block_number,
                    block_hash=event.log.block_hash,
                    transaction_hash=event.log.transaction_hash,
                    log_index=event.log.log_index,
                    contract=event.contract,
                    name=event.name,
                    key=event.key,
                    args=event.args,
                    block_timestamp=timestamps[event.log.block_number],
                )
                for event in events
            ]
            if rows:
                # One flush for the range (the unique key still refuses a block applied
                # twice), then the handlers' batch loads, then each event in order.
                session.add_all(rows)
                session.flush()
                self._prepare(session, rows, revert=False)
                for row in rows:
                    for handler in self._handlers:
                        handler.apply(session, row)
                session.info.pop(_BATCH_INFO, None)
            keep_from = headers[-1].number - self._remembered + 1
            for header in headers:
                if header.number >= keep_from:
                    session.add(
                        SeenBlock(
                            chain_id=self.chain_id,
                            follower=self.name,
                            number=header.number,
                            hash=header.hash,
                            parent_hash=header.parent_hash,
                            timestamp=header.timestamp,
                        )
                    )
            session.execute(
                delete(SeenBlock).where(
                    SeenBlock.chain_id == self.chain_id,
                    SeenBlock.follower == self.name,
                    SeenBlock.number < keep_from,
                )
            )
            tip = headers[-1]
            if cursor is None:
                session.add(
                    FollowerCursor(
                        chain_id=self.chain_id,
                        name=self.name,
                        block_number=tip.number,
                        block_hash=tip.hash,
                    )
                )
            else:
                cursor.block_number, cursor.block_hash = tip.number, tip.hash
        return True

    def _prepare(self, session: Session, rows: Sequence[ChainEvent], *, revert: bool) -> None:
        """Run the handlers' batch hooks (:class:`BatchEventHandler`) for ``rows``, in the order
        the per-event calls will run (reverse for a revert), so locks are taken in that order."""
        if not rows:
            return
        handlers = reversed(self._handlers) if revert else iter(self._handlers)
        for handler in handlers:
            hook = getattr(handler, "prepare_revert" if revert else "prepare", None)
            if hook is not None:
                hook(session, rows)

    async def _rewind(self, applied_number: int) -> int:
        """Find the fork point among the remembered blocks and undo what lies above it."""
        with self._sessions() as session:
            remembered = session.execute(
                select(SeenBlock.number, SeenBlock.hash)
                .where(SeenBlock.chain_id == self.chain_id, SeenBlock.follower == self.name)
                .order_by(SeenBlock.number.desc())
            ).all()
        canonical = await self._rpc.get_blocks([number for number, _ in remembered])
        fork: tuple[int, str] | None = None
        for (number, stored_hash), header in zip(remembered, canonical, strict=True):
            if header is not None and header.hash == stored_hash:
                fork = (number, stored_hash)
                break
        if fork is None:
            if remembered and remembered[-1][0] > self.start_block:
                raise DeepReorg(self.chain_id, len(remembered))
            fork_number, fork_hash = self.start_block - 1, None
        else:
            fork_number, fork_hash = fork
        with self._sessions.begin() as session:
            session.connection(execution_options=_WRITE)
            cursor = session.scalars(
                select(FollowerCursor)
                .where(FollowerCursor.chain_id == self.chain_id, FollowerCursor.name == self.name)
                .with_for_update()
            ).one()
            if cursor.block_number != applied_number:
                return 0  # another follower already handled it
            orphaned = session.scalars(
                select(ChainEvent)
                .where(ChainEvent.chain_id == self.chain_id, ChainEvent.block_number > fork_number)
                .order_by(ChainEvent.block_number.desc(), ChainEvent.log_index.desc())
            ).all()
            self._prepare(session, orphaned, revert=True)
            for row in orphaned:
                for handler in reversed(self._handlers):
                    handler.revert(session, row)
                session.delete(row)
            session.info.pop(_BATCH_INFO, None)
            session.execute(
                delete(SeenBlock).where(
                    SeenBlock.chain_id == self.chain_id,
                    SeenBlock.follower == self.name,
                    SeenBlock.number > fork_number,
                )
            )
            if fork_hash is None:
                session.delete(cursor)
            else:
                cursor.block_number, cursor.block_hash = fork_number, fork_hash
        depth = applied_number - fork_number
        log.warning(
            "chain %s reorganised: %d block(s) above %d undone, %d event(s) removed",
            self.chain_id,
            depth,
            fork_number,
            len(orphaned),
        )
        return depth

    # -- the loop ----------------------------------------------------------------------------
    async def run(self, stop: asyncio.Event, *, interval: float = 0.2) -> None:
        """Poll until ``stop`` is set; sleep only when caught up."""
        while not stop.is_set():
            result = await self.poll()
            # Sleep when there is nothing new, and also when no progress was made (the chain
            # changed under us, or another follower is ahead), so we never spin on the node.
            if result.caught_up or result.to_block < result.from_block:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), timeout=interval)
