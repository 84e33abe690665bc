"""Where a database call made from the event loop runs: on the loop itself, or in a thread.

A request handler on the event loop cannot wait for the database on the loop in general: a
PostgreSQL round trip, or a SQLite *writer* waiting for the file's write lock, would stall every
other request. So calls go to a thread (``asyncio.to_thread``). But that hand-over is not free:
a thread woken, the GIL passed to it and back, the loop woken through its self-pipe to take the
result. Measured on the reference machine (2 shared cores, ``bench/transfers.py``'s load of 16–64
requests in flight), a one-statement read cost ~170 µs of CPU run in place and ~450–580 µs
through ``asyncio.to_thread``: the hand-over cost twice the read. A transfer made ~8 of them.

A **read of a SQLite file** never waits for a lock: in WAL mode (which every seiwallet SQLite
connection is in, ``db.engine``) readers see the last committed state without blocking writers
or being blocked by them, and the read is the same CPU work wherever it runs. So :func:`read`
runs such a read on the loop, in place, and sends anything else (PostgreSQL, an in-memory
database) to a thread as before.

A **write to a SQLite file** is tried on the loop too, but must not wait there: :func:`write`
runs it under ``engine.writes_without_waiting``, so if the writer lock is taken (a thread of
this process, the worker process, or another process queued first) its ``BEGIN`` raises
``WriterBusy`` before anything is done. The write then waits, on the loop, for the process's
turn (:class:`_WriterTurns`): one thread queues for the lock as every writer does, and the loop
runs the waiting writes in that turn, one after another. No write holds the lock from a thread,
where it would compete for the GIL with the busy loop. (A process outside
seiwallet's queue holding the file, the ``sqlite3`` shell, still meets SQLite's busy handler,
which would then hold the loop up to its timeout: an operator's doing, not the platform's.)

The rules for callers: only a function that *reads this database and does nothing else* goes
through :func:`read` — no write (a write waits for SQLite's writer lock), no network (a chain
read, an HTTP call), no sleeping. A function given to :func:`write` may read, but its first
database write must open its one write transaction (``BEGIN IMMEDIATE``, the ``SQLITE_BEGIN``
option) before it changes anything anywhere — so that a ``WriterBusy`` leaves nothing to undo
and running it again is safe — and it must not catch ``WriterBusy``. Everything else stays with
``asyncio.to_thread``.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final, ParamSpec, TypeVar

from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker

from seiwallet.db.engine import (
    WriterBusy,
    WriterQueue,
    writer_queue,
    writes_without_waiting,
    writing_in_turn,
)

P = ParamSpec("P")
T = TypeVar("T")


def _file_queue(sessions: sessionmaker[Session]) -> WriterQueue | None:
    """The writer queue of ``sessions``' database when it is a SQLite file, else ``None``."""
    bind = sessions.kw.get("bind")
    queue = writer_queue(bind) if isinstance(bind, Engine) else None
    return queue if queue is not None and queue.on_file else None


def reads_in_place(sessions: sessionmaker[Session]) -> bool:
    """Whether reads of ``sessions``' database run on the event loop: a SQLite file's do."""
    return _file_queue(sessions) is not None


async def write(
    sessions: sessionmaker[Session], fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs
) -> T:
    """``fn(*args, **kwargs)``, a function whose one write transaction comes first. On a SQLite
    file: in place when the writer lock is free at once, else on the loop in the process's next
    turn; elsewhere (PostgreSQL, in memory) in a thread (see the module's note)."""
    queue = _file_queue(sessions)
    if queue is None:
        return await asyncio.to_thread(fn, *args, **kwargs)
    try:
        with writes_without_waiting():
            return fn(*args, **kwargs)
    except WriterBusy:
        return await _turns(queue).submit(fn, args, kwargs)


#: How long one turn may run writes on the loop before it lets the lock go (and asks again).
TURN_SECONDS: Final = 0.010


class _WriterTurns:
    """The writes of one event loop that found a SQLite file's writer lock taken.

    They wait on the loop, not in threads: one thread waits for the process's turn (the locks,
    queued fairly with other processes), then the loop runs the waiting writes one after
    another in that turn and gives it back. A write run in a thread instead would hold the lock
    while competing for the GIL with the busy loop (measured: ~6 ms held for ~2 ms of work).
    A write whose caller was cancelled before its turn came is not run.
    """

    def __init__(self, queue: WriterQueue, loop: asyncio.AbstractEventLoop) -> None:
        self._queue = queue
        self._loop = loop
        self._waiting: deque[_Write] = deque()
        self._asking = False

    def submit(
        self, fn: Callable[..., T], args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> asyncio.Future[T]:
        answer: asyncio.Future[T] = self._loop.create_future()
        self._waiting.append(_Write(fn, args, kwargs, answer, contextvars.copy_context()))
        if not self._asking:
            self._ask()
        return answer

    def _ask(self) -> None:
        self._asking = True
        threading.Thread(target=self._wait_for_turn, name="sqlite-writer-turn", daemon=True).start()

    def _wait_for_turn(self) -> None:
        """In a thread: take the turn, then hand it to the loop (or back, if the loop is gone)."""
        try:
            self._queue.take_turn()
        except BaseException as exc:  # the in-process lock's timeout: the writes fail with it
            with contextlib.suppress(RuntimeError):
                self._loop.call_soon_threadsafe(self._fail, exc)
            return
        try:
            self._loop.call_soon_threadsafe(self._run)
        except RuntimeError:  # the loop is closed: nobody will write in this turn
            self._queue.give_back_turn()

    def _fail(self, exc: BaseException) -> None:
        self._asking = False
        while self._waiting:
            write = self._waiting.popleft()
            if not write.answer.done():
                write.answer.set_exception(exc)

    def _run(self) -> None:
        give_up = time.monotonic() + TURN_SECONDS
        try:
            while self._waiting and time.monotonic() < give_up:
                write = self._waiting.popleft()
                if write.answer.done():  # cancelled while it waited
                    continue
                try:
                    result = write.context.run(_in_turn, self._queue, write)
                except Exception as exc:
                    write.answer.set_exception(exc)
                else:
                    write.answer.set_result(result)
        finally:
            self._queue.give_back_turn()
            self._asking = False
            if self._waiting:
                self._ask()


@dataclass(frozen=True)
class _Write:
    fn: Callable[..., Any]
    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    answer: asyncio.Future[Any]
    context: contextvars.Context


def _in_turn(queue: WriterQueue, write: _Write) -> Any:
    with writing_in_turn(queue):
        return write.fn(*write.args, **write.kwargs)


#: Each loop's waiting writes, per writer queue.
_TURNS: Final[
    weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[WriterQueue, _WriterTurns]]
] = weakref.WeakKeyDictionary()


def _turns(queue: WriterQueue) -> _WriterTurns:
    loop = asyncio.get_running_loop()
    per_queue = _TURNS.setdefault(loop, {})
    found = per_queue.get(queue)
    if found is None:
        found = per_queue[queue] = _WriterTurns(queue, loop)
    return found


async def read(
    sessions: sessionmaker[Session], fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs
) -> T:
    """``fn(*args, **kwargs)``, a read of ``sessions``' database and nothing else: in place on
    a SQLite file, in a thread otherwise (see the module's note)."""
    if reads_in_place(sessions):
        return fn(*args, **kwargs)
    return await asyncio.to_thread(fn, *args, **kwargs)
