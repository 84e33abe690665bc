"""Engines and sessions: SQLite (the embedded default) and PostgreSQL (production), set up alike.

SQLite is opened in WAL mode with foreign keys enforced, a busy timeout and ``synchronous=NORMAL``
(durable across process crashes, fast enough for many writers). We, not the ``sqlite3`` module,
emit ``BEGIN``, so SQLite transactions cover DDL and savepoints as PostgreSQL's do; the execution
option :data:`SQLITE_BEGIN` (``"IMMEDIATE"``) takes the write lock up front where a transaction
reads before it writes, after queueing for it in the kernel (:class:`WriterQueue`).
PostgreSQL goes through psycopg 3 with pre-ping and a connect timeout. :func:`check_connection`
turns a wrong or unreachable database into one :class:`~seiwallet.errors.DatabaseError` line
that says what to fix, never naming the password.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import logging
import os
import sqlite3
import threading
import time
import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final, cast

from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.pool import ConnectionPoolEntry, PoolResetState

from seiwallet.config import ENV_PREFIX
from seiwallet.errors import DatabaseError

log = logging.getLogger(__name__)

#: The setting every database message points to.
DATABASE_URL_SETTING: Final = f"{ENV_PREFIX}DATABASE_URL"

#: How long a SQLite statement waits for another process's write lock before failing, and a
#: writer for another thread of its process.
SQLITE_BUSY_TIMEOUT_MS: Final = 5_000
#: Next to the database ``wallet.sqlite3``, ``wallet.sqlite3-writer``: the file our processes
#: queue on for its write lock (:class:`WriterQueue`).
SQLITE_WRITER_LOCK_SUFFIX: Final = "-writer"
# The lock file's bytes: held by the process that writes, and passed by one that queues for it.
_WRITER_BYTE: Final = 0
_TURNSTILE_BYTE: Final = 1

#: How long opening a PostgreSQL connection may take before it counts as unreachable.
POSTGRES_CONNECT_TIMEOUT_S: Final = 10
#: Connections an engine keeps open, and how many more it may open for a burst. An API process
#: runs up to ~46 database calls at once (anyio's 40 threads for FastAPI's sync work and
#: asyncio's default executor); SQLAlchemy's default (5 kept) made every burst open and close
#: connections: 68 PostgreSQL connections (each a TCP handshake, authentication and a backend
#: process) for 300 transfers in bench/transfers.py. Several processes share PostgreSQL's
#: ``max_connections`` (100 by default): 20 + 10 per process leaves room for three.
POOL_SIZE: Final = 20
POOL_OVERFLOW: Final = 10

#: Execution option: how SQLite begins a transaction (DEFERRED, IMMEDIATE or EXCLUSIVE).
SQLITE_BEGIN: Final = "sqlite_begin"

_SQLITE_BEGIN_MODES: Final = frozenset({"DEFERRED", "IMMEDIATE", "EXCLUSIVE"})
_SQLITE_DRIVERS: Final = frozenset({"sqlite", "sqlite+pysqlite"})
_POSTGRES_DRIVERS: Final = frozenset({"postgres", "postgresql", "postgresql+psycopg"})
_URL_EXAMPLES: Final = "sqlite:///PATH or postgresql://USER:PASSWORD@HOST:PORT/DATABASE"
# Longest driver reason quoted in a message: enough to act on, short enough for one line.
_MAX_REASON_CHARS: Final = 200


def parse_database_url(url: str | URL) -> URL:
    """Parse and normalise a database URL (``postgresql://`` → psycopg 3), rejecting other kinds."""
    try:
        parsed = make_url(url)
    except ArgumentError:
        # The URL may hold a password: say what is expected, never echo the value.
        raise DatabaseError(
            f"{DATABASE_URL_SETTING} is not a database URL: use {_URL_EXAMPLES}"
        ) from None
    if parsed.drivername in _SQLITE_DRIVERS:
        return parsed.set(drivername="sqlite")
    if parsed.drivername in _POSTGRES_DRIVERS:
        return parsed.set(drivername="postgresql+psycopg")
    raise DatabaseError(
        f"{DATABASE_URL_SETTING} names an unsupported database ({parsed.drivername}): "
        f"use {_URL_EXAMPLES}"
    )


def describe_url(url: str | URL) -> str:
    """Where a database is, for messages and logs: never the password."""
    parsed = parse_database_url(url)
    if _is_sqlite(parsed):
        path = sqlite_path(parsed)
        return f"SQLite at {path}" if path is not None else "in-memory SQLite"
    return f"PostgreSQL at {_postgres_address(parsed)}/{parsed.database or ''}"


def sqlite_path(url: str | URL) -> Path | None:
    """The file of a SQLite URL, or ``None`` for an in-memory database."""
    parsed = make_url(url)
    database = parsed.database or ""
    if database in ("", ":memory:"):
        return None
    if parsed.query.get("uri") in ("true", "1", "True"):
        # A sqlite3 URI ("file:name?mode=memory"): the path is between "file:" and "?".
        if "mode=memory" in database:
            return None
        return Path(database.removeprefix("file:").split("?", 1)[0])
    return Path(database)


def as_utc(moment: datetime) -> datetime:
    """A datetime read back from the database, aware: SQLite returns the UTC we stored naive."""
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def create_engine_for(url: str | URL, **engine_options: Any) -> Engine:
    """An engine for a SQLite or PostgreSQL URL, with the settings seiwallet relies on."""
    parsed = parse_database_url(url)
    if parsed.get_backend_name() == "postgresql" or sqlite_path(parsed) is not None:
        # (An in-memory SQLite database has a pool of its own kind, without these knobs.)
        engine_options.setdefault("pool_size", POOL_SIZE)
        engine_options.setdefault("max_overflow", POOL_OVERFLOW)
    if _is_sqlite(parsed):
        engine = create_engine(parsed, **engine_options)
        path = sqlite_path(parsed)
        if path is not None:
            event.listen(engine, "do_connect", _directory_creator(path.parent))
        event.listen(engine, "connect", _sqlite_on_connect)
        writers = _writer_queue(path)
        _ENGINE_QUEUES[engine] = writers
        event.listen(engine, "begin", writers.on_begin)
        event.listen(engine, "commit", writers.on_commit)
        event.listen(engine, "rollback", writers.on_rollback)
        # A connection returned to the pool mid-transaction is rolled back by the pool itself;
        # one invalidated or closed mid-transaction ends it by closing.
        event.listen(engine, "reset", writers.on_reset)
        event.listen(engine, "invalidate", writers.on_close)
        event.listen(engine, "close", writers.on_close)
        event.listen(engine, "close_detached", writers.on_close)
        return engine
    connect_args: dict[str, Any] = {}
    if "connect_timeout" not in parsed.query:
        connect_args["connect_timeout"] = POSTGRES_CONNECT_TIMEOUT_S
    if "application_name" not in parsed.query:
        connect_args["application_name"] = "seiwallet"
    connect_args.update(engine_options.pop("connect_args", {}))
    engine_options.setdefault("pool_pre_ping", True)
    return create_engine(parsed, connect_args=connect_args, **engine_options)


def session_factory(engine: Engine) -> sessionmaker[Session]:
    """Sessions bound to ``engine``; objects stay readable after commit for the edges to render."""
    return sessionmaker(bind=engine, expire_on_commit=False)


def check_connection(engine: Engine) -> None:
    """Connect (on SQLite: take the write lock) so a wrong database fails at start, in one line."""
    try:
        with engine.connect() as connection:
            if _is_sqlite(engine.url):
                # WAL mode was set on connect; IMMEDIATE also proves we may write the file.
                with connection.execution_options(**{SQLITE_BEGIN: "IMMEDIATE"}).begin():
                    connection.exec_driver_sql("SELECT 1")
            else:
                connection.exec_driver_sql("SELECT 1")
    except DBAPIError as exc:
        raise DatabaseError(_explain(engine.url, exc.orig)) from exc


def _explain(url: URL, error: BaseException | None) -> str:
    """One line saying why ``url`` could not be used and what to fix, without its password."""
    reason = _reason(error, url.password)
    if _is_sqlite(url):
        path = sqlite_path(url)
        where = str(path) if path is not None else ":memory:"
        if "locked" in reason:
            advice = "another process is writing to it; retry, or stop that process"
        else:
            advice = f"check that it and its directory are writable; check {DATABASE_URL_SETTING}"
        return f"cannot open the SQLite database at {where} ({reason}): {advice}"
    where = _postgres_address(url)
    return f"cannot connect to PostgreSQL at {where} ({reason}): check {DATABASE_URL_SETTING}"


def _is_sqlite(url: URL) -> bool:
    return url.get_backend_name() == "sqlite"


def _postgres_address(url: URL) -> str:
    host = url.host or url.query.get("host") or "the local socket"
    if isinstance(host, tuple):  # a repeated ?host= lists fallbacks; the first names it well enough
        host = host[0]
    return f"{host}:{url.port or 5432}"


def _reason(error: BaseException | None, password: str | None) -> str:
    """The driver's first line, without libpq's prefixes, with the password blanked if present."""
    text = str(error or "unknown error").strip()
    first_line = text.splitlines()[0] if text else "unknown error"
    # libpq: 'connection failed: connection to server at "h", port 5432 failed: FATAL:  …'
    detail = first_line.rsplit(" failed: ", 1)[-1].removeprefix("connection failed: ")
    detail = " ".join(detail.removeprefix("FATAL:").split())
    if password:
        detail = detail.replace(password, "***")
    if len(detail) > _MAX_REASON_CHARS:
        detail = detail[: _MAX_REASON_CHARS - 1] + "…"
    return (detail[:1].lower() + detail[1:]) or "unknown error"


def _directory_creator(directory: Path) -> Callable[..., None]:
    """A ``do_connect`` listener creating the database file's directory before SQLite opens it."""

    def make_directory(*_: Any) -> None:
        try:
            directory.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            if isinstance(exc, FileExistsError | NotADirectoryError):
                reason = "a file is in the way of the directory"
            else:
                reason = (exc.strerror or str(exc)).lower()
            raise DatabaseError(
                f"cannot create the directory {directory} for the SQLite database ({reason}): "
                f"check {DATABASE_URL_SETTING}"
            ) from exc

    return make_directory


def _sqlite_on_connect(dbapi_connection: Any, record: ConnectionPoolEntry) -> None:
    """Set the pragmas every seiwallet SQLite connection needs, and take over BEGIN."""
    if not isinstance(dbapi_connection, sqlite3.Connection):  # pragma: no cover - pysqlite only
        raise TypeError(f"expected a sqlite3 connection, got {type(dbapi_connection).__name__}")
    # Let SQLAlchemy emit BEGIN (see _WriterLock.on_begin): sqlite3's legacy mode would run DDL
    # and SAVEPOINTs outside the transaction.
    dbapi_connection.isolation_level = None
    # busy_timeout first, so switching to WAL waits for another process instead of failing.
    dbapi_connection.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}")
    _enable_wal(dbapi_connection)
    dbapi_connection.execute("PRAGMA synchronous = NORMAL")
    dbapi_connection.execute("PRAGMA foreign_keys = ON")


def _enable_wal(dbapi_connection: sqlite3.Connection) -> None:
    """Switch the file to WAL (it stays so), retrying while other connections open it too."""
    (mode,) = dbapi_connection.execute("PRAGMA journal_mode").fetchone()
    if mode in ("wal", "memory"):
        return
    # The switch needs an exclusive lock, and SQLite reports a concurrent opener at once as
    # "database is locked" rather than waiting in the busy handler: wait here instead.
    deadline = time.monotonic() + SQLITE_BUSY_TIMEOUT_MS / 1000
    while True:
        try:
            dbapi_connection.execute("PRAGMA journal_mode = WAL")
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() >= deadline:
                raise
            time.sleep(0.005)
        else:
            return


def _driver_connection(connection: Connection) -> sqlite3.Connection:
    return cast(sqlite3.Connection, connection.connection.dbapi_connection)


def _driver_error(statement: str, error: sqlite3.Error, connection: Connection) -> BaseException:
    """The error SQLAlchemy would have raised for ``statement``, had it run it."""
    return DBAPIError.instance(statement, (), error, sqlite3.Error, dialect=connection.dialect)


class WriterBusy(Exception):
    """A writer that asked not to wait (:func:`writes_without_waiting`) found the SQLite file's
    write lock taken, by this process or another, or another process queued for it first.
    Nothing was begun: the caller runs the write again where it may wait."""


#: Set while a write must not wait for the writer lock (see :func:`writes_without_waiting`).
_NO_WAIT: Final[ContextVar[bool]] = ContextVar("seiwallet_sqlite_writer_no_wait", default=False)


@contextmanager
def writes_without_waiting() -> Iterator[None]:
    """Within this block a SQLite write transaction that cannot have the writer lock at once
    raises :class:`WriterBusy` at its ``BEGIN`` instead of queueing (``db.offload.write``: a
    write tried on the event loop, which must never sleep)."""
    token = _NO_WAIT.set(True)
    try:
        yield
    finally:
        _NO_WAIT.reset(token)


#: The writer turn the running code writes in (see :func:`writing_in_turn`).
_IN_TURN: Final[ContextVar[WriterQueue | None]] = ContextVar(
    "seiwallet_sqlite_writer_turn", default=None
)


@contextmanager
def writing_in_turn(queue: WriterQueue) -> Iterator[None]:
    """Within this block write transactions on ``queue``'s file use the turn the process holds
    (:meth:`WriterQueue.take_turn`) instead of taking the locks each: one after another, with
    no hand-over between them."""
    token = _IN_TURN.set(queue)
    try:
        yield
    finally:
        _IN_TURN.reset(token)


def writer_queue(engine: Engine) -> WriterQueue | None:
    """The writer queue of ``engine``'s SQLite file (``None``: not a SQLite engine of ours)."""
    return _ENGINE_QUEUES.get(engine)


#: Each SQLite engine's writer queue.
_ENGINE_QUEUES: Final[weakref.WeakKeyDictionary[Engine, WriterQueue]] = weakref.WeakKeyDictionary()

# One queue per database file in a process: record locks belong to the process (see below).
_QUEUES: Final[weakref.WeakValueDictionary[str, WriterQueue]] = weakref.WeakValueDictionary()
_QUEUES_LOCK: Final = threading.Lock()


def _writer_queue(database: Path | None) -> WriterQueue:
    """The queue for writers of ``database``: this process's one for the file, or a new one."""
    if database is None:
        return WriterQueue(None)
    key = os.path.realpath(database)
    with _QUEUES_LOCK:
        queue = _QUEUES.get(key)
        if queue is None:
            queue = WriterQueue(Path(key))
            _QUEUES[key] = queue
    return queue


class WriterQueue:
    """Writers of a SQLite file queue for it in the kernel, not in SQLite's busy handler.

    SQLite lets one writer in at a time; the others wait in its busy handler, which *sleeps* in
    steps of up to 100 ms. Under many writers that turns microseconds of waiting into tens of
    milliseconds, and between processes it was unfair: the API's threads handed the file to
    each other while the worker slept, and a payment signed at the start of a burst of approvals
    waited two seconds to be submitted (bench/payments.py). Asking again every 0.2–2 ms instead
    cost the API ~21 failed ``BEGIN`` a transfer, each an exception.

    So a transaction that announces it will write (``BEGIN IMMEDIATE``/``EXCLUSIVE``) first takes
    this process's lock for the file (its threads hand over at once), then a POSIX record lock
    on byte 0 of ``<database>-writer`` (another process waiting for it sleeps in the kernel, at
    no CPU cost, and is woken as soon as it is let go), and only then asks SQLite. SQLite's lock
    is then free unless a process that does not queue here holds it (the ``sqlite3`` shell):
    for that the busy handler stays on. Both locks are let go right after ``COMMIT`` or
    ``ROLLBACK``, which this class emits itself for that reason: SQLAlchemy's events come before
    it would. SQLite's locking still guards correctness; this queue only decides who asks next.

    Fairness: to queue for byte 0 a process first takes byte 1, the turnstile, and lets it go
    once it holds byte 0. A process that lets byte 0 go and wants it back at once (the API's
    next thread) waits at the turnstile behind the process already queued, instead of winning
    the race against the waiter the kernel has just woken: under contention they alternate.

    Record locks belong to a process, not to a descriptor (and closing any descriptor of the
    file would drop them), so a process opens each lock file once and its engines on one file
    share one queue (:func:`_writer_queue`). A thread that holds the write lock and starts
    another writer of the same file thus fails after the busy timeout, as before, rather than
    wait for itself. The wait for *another* process has no deadline, like PostgreSQL's lock
    waits: the holder is a transaction of ours, and the kernel lets go if its process dies.
    A database without a file (in memory) queues on the process's lock alone.
    """

    def __init__(self, database: Path | None) -> None:
        self._lock = threading.Lock()
        self._database = database
        self._descriptor: int | None = None
        self._queues_in_file = database is not None
        # The driver connection whose transaction holds the lock, and whether it holds byte 0.
        self._holder: sqlite3.Connection | None = None
        self._holds_file = False
        #: Whether the process holds the locks for a turn (``take_turn``) rather than for one
        #: transaction.
        self._turn = False

    def on_begin(self, connection: Connection) -> None:
        """Emit BEGIN ourselves, in the mode the connection's :data:`SQLITE_BEGIN` asks for."""
        mode = str(connection.get_execution_options().get(SQLITE_BEGIN, "DEFERRED")).upper()
        if mode not in _SQLITE_BEGIN_MODES:
            allowed = ", ".join(sorted(_SQLITE_BEGIN_MODES))
            raise ValueError(f"{SQLITE_BEGIN} must be one of {allowed}, not {mode!r}")
        driver = _driver_connection(connection)
        writes = mode != "DEFERRED"
        if writes:
            self._acquire(driver)
        # Straight to the driver: SQLAlchemy's per-statement work (an execution context, a
        # cursor wrapper, events) would lengthen every writer's turn and add nothing here.
        statement = f"BEGIN {mode}"
        try:
            driver.execute(statement)
        except BaseException as exc:
            if writes:
                self._release(driver)
            if isinstance(exc, sqlite3.Error):
                raise _driver_error(statement, exc, connection) from exc
            raise

    def on_commit(self, connection: Connection) -> None:
        """Commit a writer's transaction ourselves, then let the next writer in."""
        if self._holder is None or connection.invalidated:
            return  # not ours; or closed, and the close let the lock go
        driver = _driver_connection(connection)
        if driver is not self._holder:
            return
        try:
            # SQLAlchemy's own commit, right after this event, then finds nothing to do.
            driver.commit()
        except sqlite3.Error as exc:
            raise _driver_error("COMMIT", exc, connection) from exc
        finally:
            self._release(driver)

    def on_rollback(self, connection: Connection) -> None:
        """Roll back a writer's transaction ourselves, then let the next writer in."""
        if self._holder is None or connection.invalidated:
            return
        driver = _driver_connection(connection)
        if driver is self._holder:
            self._roll_back_and_release(driver)

    def on_reset(
        self, dbapi_connection: Any, record: ConnectionPoolEntry, reset_state: PoolResetState
    ) -> None:
        """A connection back in the pool mid-transaction: roll it back, let the lock go."""
        holder = self._holder
        if holder is None or dbapi_connection is not holder:
            return
        if reset_state.terminate_only:  # it is being closed, which ends the transaction
            self._release(holder)
        else:
            self._roll_back_and_release(holder)

    def on_close(self, dbapi_connection: Any, *_: Any) -> None:
        """A connection invalidated or closed mid-transaction: closing ends it."""
        holder = self._holder
        if holder is not None and dbapi_connection is holder:
            self._release(holder)

    def _roll_back_and_release(self, driver: sqlite3.Connection) -> None:
        try:
            driver.rollback()
        except sqlite3.Error:
            pass  # SQLAlchemy rolls back right after this, and reports the failure
        finally:
            self._release(driver)

    @property
    def on_file(self) -> bool:
        """Whether the database is a file (not in memory): its readers never wait (WAL)."""
        return self._database is not None

    def take_turn(self) -> None:
        """Wait until this process may write, and keep the right — the locks a writer's BEGIN
        takes — for a run of write transactions made under :func:`writing_in_turn`, until
        :meth:`give_back_turn`. Blocks: call it from a thread (``db.offload``)."""
        self._take_locks(waits=True)
        self._turn = True

    def give_back_turn(self) -> None:
        if not self._turn:
            return
        self._turn = False
        holder, self._holder = self._holder, None
        if holder is not None:  # a transaction of the turn left open: it cannot outlive it
            with contextlib.suppress(sqlite3.Error):
                holder.rollback()
        try:
            self._unlock_file()
        finally:
            self._lock.release()

    def _acquire(self, driver: sqlite3.Connection) -> None:
        if self._turn and _IN_TURN.get() is self:
            if self._holder is not None:
                raise DatabaseError("a writer turn runs one write transaction at a time")
            self._holder = driver
            return
        self._take_locks(waits=not _NO_WAIT.get())
        self._holder = driver

    def _take_locks(self, *, waits: bool) -> None:
        if waits:
            if not self._lock.acquire(timeout=SQLITE_BUSY_TIMEOUT_MS / 1000):
                raise DatabaseError("the database is busy: another writer held it for too long")
        elif not self._lock.acquire(blocking=False):
            raise WriterBusy
        mode = fcntl.LOCK_EX if waits else fcntl.LOCK_EX | fcntl.LOCK_NB
        try:
            descriptor = self._lock_file()
            if descriptor is not None:
                self._holds_file = True  # first: an interrupted wait then leaves nothing held
                try:
                    fcntl.lockf(descriptor, mode, 1, _TURNSTILE_BYTE)
                    try:
                        fcntl.lockf(descriptor, mode, 1, _WRITER_BYTE)
                    finally:
                        fcntl.lockf(descriptor, fcntl.LOCK_UN, 1, _TURNSTILE_BYTE)
                except OSError as exc:
                    if not waits and exc.errno in (errno.EACCES, errno.EAGAIN):
                        raise WriterBusy from None  # held, or another process queued first
                    self._give_up_file("lock", exc)
        except BaseException:
            try:
                self._unlock_file()
            finally:
                self._lock.release()
            raise

    def _release(self, driver: sqlite3.Connection) -> None:
        if driver is not self._holder:
            return
        self._holder = None
        if self._turn and _IN_TURN.get() is self:
            return  # the turn keeps the locks for its next transaction
        try:
            self._unlock_file()
        finally:
            self._lock.release()

    def _unlock_file(self) -> None:
        if self._holds_file:
            self._holds_file = False
            assert self._descriptor is not None
            fcntl.lockf(self._descriptor, fcntl.LOCK_UN, 1, _WRITER_BYTE)

    def _lock_file(self) -> int | None:
        """The lock file's descriptor, opened (and made) on first use; ``None`` without one."""
        if not self._queues_in_file:
            return None
        if self._descriptor is not None:
            return self._descriptor
        assert self._database is not None
        try:
            # Made as SQLite makes its -wal and -shm files: with the database file's mode.
            mode = self._database.stat().st_mode & 0o777
        except OSError:
            mode = 0o600
        path = f"{self._database}{SQLITE_WRITER_LOCK_SUFFIX}"
        try:
            descriptor = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, mode)
        except OSError as exc:
            self._give_up_file("open", exc)
            return None
        self._descriptor = descriptor
        weakref.finalize(self, os.close, descriptor)
        return descriptor

    def _give_up_file(self, action: str, error: OSError) -> None:
        """Queue on the process's lock alone from now on: SQLite still orders the processes."""
        self._unlock_file()
        self._queues_in_file = False
        log.warning(
            "cannot %s the SQLite writer lock file %s%s (%s): writers of other processes will "
            "wait in SQLite's busy handler",
            action,
            self._database,
            SQLITE_WRITER_LOCK_SUFFIX,
            error.strerror or error,
        )
