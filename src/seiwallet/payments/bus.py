"""The payment event bus of an API process: live events for server-sent-event streams.

Payment events are written by other processes (the worker's follower settles invoices), so the
bus reads the ``payment_events`` table — the one source of truth — by increasing id, and only
needs to know *when* to read:

* **PostgreSQL**: one ``LISTEN`` connection per API process; every event's transaction
  ``pg_notify``\\ s its id at commit (:func:`~seiwallet.payments.events.append_event`), which wakes
  the reader at once. A slow safety poll (1 s) covers a lost connection or notification.
* **SQLite** (no notifications across processes): one server-side poller per API process reads
  the table every ``poll_seconds`` (25 ms) while anyone listens. Clients never poll.

Subscribers name what they watch (an invoice or a terminal) and get an asyncio queue; a slow
subscriber whose queue fills is dropped (its stream ends and the client resumes with
``Last-Event-ID``). :meth:`EventBus.stream` replays from the table after a given id first, so a
resumed stream misses nothing and repeats nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any, Final

import psycopg
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session, sessionmaker

from seiwallet.db import offload
from seiwallet.payments.events import NOTIFY_CHANNEL, EventView
from seiwallet.payments.models import PaymentEvent

log = logging.getLogger(__name__)

_QUEUE_SIZE: Final = 1_000
_BATCH: Final = 500
#: On PostgreSQL, a read this often even without notifications (a lost LISTEN connection).
_SAFETY_POLL: Final = 1.0
#: How long an id skipped over is looked for again (an uncommitted transaction's event).
_GAP_SECONDS: Final = 10.0


@dataclass(frozen=True)
class Topic:
    """What a stream watches: one invoice, or every invoice of one terminal."""

    invoice_id: str | None = None
    terminal_id: str | None = None

    def matches(self, event: EventView) -> bool:
        if self.invoice_id is not None:
            return event.invoice_id == self.invoice_id
        return self.terminal_id is not None and event.terminal_id == self.terminal_id

    def where(self) -> Any:
        if self.invoice_id is not None:
            return PaymentEvent.invoice_id == self.invoice_id
        return PaymentEvent.terminal_id == self.terminal_id


@dataclass(eq=False)
class Subscription:
    topic: Topic
    queue: asyncio.Queue[EventView | None] = field(
        default_factory=lambda: asyncio.Queue(_QUEUE_SIZE)
    )


class EventBus:
    """Reads new payment events and hands them to the subscribers of this process."""

    def __init__(
        self,
        sessions: sessionmaker[Session],
        *,
        poll_seconds: float = 0.025,
        listen: Callable[[], Any] | None = None,
    ) -> None:
        """``listen``: an async context manager factory yielding notifications (PostgreSQL)."""
        self._sessions = sessions
        self._poll = poll_seconds
        self._listen = listen
        self._subscribers: set[Subscription] = set()
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._listener: asyncio.Task[None] | None = None
        self._last_id = 0
        #: Ids skipped over, and until when to look for them (monotonic seconds).
        self._gaps: dict[int, float] = {}
        self._started = False

    @classmethod
    def for_engine(
        cls, engine: Engine, sessions: sessionmaker[Session], *, poll_seconds: float = 0.025
    ) -> EventBus:
        """LISTEN/NOTIFY on PostgreSQL, the poller on SQLite."""
        if engine.dialect.name == "postgresql":
            conninfo = engine.url.set(drivername="postgresql").render_as_string(hide_password=False)
            return cls(sessions, poll_seconds=poll_seconds, listen=_pg_listener(conninfo))
        return cls(sessions, poll_seconds=poll_seconds)

    @property
    def uses_notifications(self) -> bool:
        return self._listen is not None

    # -- life ------------------------------------------------------------------------------------
    async def start(self) -> None:
        if self._started:
            return
        self._started = True
        self._last_id = await offload.read(self._sessions, self._max_id)
        self._task = asyncio.create_task(self._run(), name="payment-event-bus")
        if self._listen is not None:
            self._listener = asyncio.create_task(self._listen_loop(), name="payment-event-listen")

    async def aclose(self) -> None:
        for task in (self._listener, self._task):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
        self._task = self._listener = None
        self._started = False
        for subscription in list(self._subscribers):
            with contextlib.suppress(asyncio.QueueFull):
                subscription.queue.put_nowait(None)
        self._subscribers.clear()

    # -- subscribing -----------------------------------------------------------------------------
    async def subscribe(self, topic: Topic) -> Subscription:
        await self.start()
        subscription = Subscription(topic)
        self._subscribers.add(subscription)
        self._wake.set()
        return subscription

    def unsubscribe(self, subscription: Subscription) -> None:
        self._subscribers.discard(subscription)

    async def stream(
        self, topic: Topic, *, after: int = 0, heartbeat: float = 15.0
    ) -> AsyncIterator[EventView | None]:
        """Events of ``topic`` with an id above ``after``: the stored ones, then live ones.

        Yields ``None`` after ``heartbeat`` seconds of quiet (for a keep-alive comment).
        """
        subscription = await self.subscribe(topic)
        try:
            # Ids already sent (a late-committed event may arrive below the highest one).
            sent: set[int] = set()
            # Stored events page by page until a page comes back short: a client resuming far
            # behind gets every one of them (live ones wait in the subscription meanwhile).
            cursor = after
            while True:
                page = await offload.read(self._sessions, self._replay, topic, cursor)
                for event in page:
                    sent.add(event.id)
                    yield event
                if len(page) < _BATCH:
                    break
                cursor = page[-1].id
            while True:
                try:
                    item = await asyncio.wait_for(subscription.queue.get(), timeout=heartbeat)
                except TimeoutError:
                    yield None
                    continue
                if item is None:
                    return
                if item.id > after and item.id not in sent:
                    sent.add(item.id)
                    if len(sent) > 10_000:
                        sent = set(sorted(sent)[-5_000:])
                    yield item
        finally:
            self.unsubscribe(subscription)

    # -- reading ---------------------------------------------------------------------------------
    def _max_id(self) -> int:
        with self._sessions() as db:
            return int(db.scalar(select(func.max(PaymentEvent.id))) or 0)

    def _replay(self, topic: Topic, after: int) -> list[EventView]:
        with self._sessions() as db:
            rows = db.scalars(
                select(PaymentEvent)
                .where(topic.where(), PaymentEvent.id > after)
                .order_by(PaymentEvent.id)
                .limit(_BATCH)
            ).all()
            return [EventView.of(row) for row in rows]

    def _read_new(self, after: int, gaps: frozenset[int]) -> list[EventView]:
        condition = PaymentEvent.id > after
        if gaps:
            condition = condition | PaymentEvent.id.in_(sorted(gaps))
        with self._sessions() as db:
            rows = db.scalars(
                select(PaymentEvent).where(condition).order_by(PaymentEvent.id).limit(_BATCH)
            ).all()
            return [EventView.of(row) for row in rows]

    def _note_gaps(self, events: list[EventView], now: float) -> None:
        """Ids skipped over may belong to transactions not committed yet (PostgreSQL hands out
        ids at insert, and commits in any order): look for them again for a while."""
        for event in events:
            self._gaps.pop(event.id, None)
        expected = self._last_id + 1
        for event in events:
            if event.id <= self._last_id:
                continue
            for missing in range(expected, min(event.id, expected + 1_000)):
                self._gaps[missing] = now + _GAP_SECONDS
            expected = event.id + 1
            self._last_id = event.id
        for missing in [gap for gap, until in self._gaps.items() if until < now]:
            del self._gaps[missing]

    async def _run(self) -> None:
        """Read new events when woken (or every poll / safety interval) and fan them out."""
        interval = _SAFETY_POLL if self._listen is not None else self._poll
        while True:
            if not self._subscribers:
                # Nobody listens: skip reads, but keep the position current when one arrives.
                self._wake.clear()
                await self._wake.wait()
                self._last_id = max(self._last_id, await offload.read(self._sessions, self._max_id))
                continue
            try:
                events = await offload.read(
                    self._sessions, self._read_new, self._last_id, frozenset(self._gaps)
                )
            except Exception:  # a database hiccup must not end the bus
                log.exception("payment event bus: reading events failed; retrying")
                events = []
                await asyncio.sleep(1.0)
            self._note_gaps(events, time.monotonic())
            for event in events:
                self._deliver(event)
            if len(events) >= _BATCH:
                continue
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=interval)

    def _deliver(self, event: EventView) -> None:
        for subscription in list(self._subscribers):
            if not subscription.topic.matches(event):
                continue
            try:
                subscription.queue.put_nowait(event)
            except asyncio.QueueFull:
                # Too slow: end its stream; the client resumes from its Last-Event-ID.
                self._subscribers.discard(subscription)
                with contextlib.suppress(asyncio.QueueEmpty):
                    subscription.queue.get_nowait()
                subscription.queue.put_nowait(None)

    async def _listen_loop(self) -> None:
        """Wake the reader on every notification; reconnect (and re-read) after a failure."""
        assert self._listen is not None
        while True:
            try:
                async with self._listen() as notifications:
                    self._wake.set()  # catch up with what happened while not listening
                    async for _ in notifications:
                        self._wake.set()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("payment event bus: LISTEN failed (%s); reconnecting", exc)
                await asyncio.sleep(1.0)


def _pg_listener(conninfo: str) -> Callable[[], Any]:
    """An async context manager factory: a LISTEN connection's notifications."""

    @contextlib.asynccontextmanager
    async def listen() -> AsyncIterator[AsyncIterator[Any]]:
        connection = await psycopg.AsyncConnection.connect(conninfo, autocommit=True)
        try:
            await connection.execute(f"LISTEN {NOTIFY_CHANNEL}")
            yield connection.notifies()
        finally:
            await connection.close()

    return listen
