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
``WriterBusy`` before anything is done, and the write runs again in a thread, where it queues as
every writer does. Most of the time the lock is free: the API's own writers all run on the loop,
one at a time, and the worker holds the file a small part of the time. (A process outside
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
import weakref
from collections.abc import Callable
from typing import Final, ParamSpec, TypeVar

from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker

from seiwallet.db.engine import WriterBusy, sqlite_path, writes_without_waiting

P = ParamSpec("P")
T = TypeVar("T")

#: Each engine's answer, worked out once.
_IN_PLACE: Final[weakref.WeakKeyDictionary[Engine, bool]] = weakref.WeakKeyDictionary()


def reads_in_place(sessions: sessionmaker[Session]) -> bool:
    """Whether reads of ``sessions``' database run on the event loop: a SQLite file's do."""
    bind = sessions.kw.get("bind")
    if not isinstance(bind, Engine):
        return False
    inline = _IN_PLACE.get(bind)
    if inline is None:
        inline = bind.dialect.name == "sqlite" and sqlite_path(bind.url) is not None
        _IN_PLACE[bind] = inline
    return inline


async def write(
    sessions: sessionmaker[Session], fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs
) -> T:
    """``fn(*args, **kwargs)``, a function whose one write transaction comes first: tried in
    place on a SQLite file when the writer lock is free at once, in a thread otherwise (see the
    module's note)."""
    if reads_in_place(sessions):
        try:
            with writes_without_waiting():
                return fn(*args, **kwargs)
        except WriterBusy:
            pass
    return await asyncio.to_thread(fn, *args, **kwargs)


async def read(
    sessions: sessionmaker[Session], fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs
) -> T:
    """``fn(*args, **kwargs)``, a read of ``sessions``' database and nothing else: in place on
    a SQLite file, in a thread otherwise (see the module's note)."""
    if reads_in_place(sessions):
        return fn(*args, **kwargs)
    return await asyncio.to_thread(fn, *args, **kwargs)
