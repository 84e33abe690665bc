"""Engines and sessions: SQLite (the embedded default) and PostgreSQL (production), set up alike.

SQLite is opened in WAL mode with foreign keys enforced, a busy timeout and ``synchronous=NORMAL``
(durable across process crashes, fast enough for many writers). SQLAlchemy, not the ``sqlite3``
module, emits ``BEGIN``, so SQLite transactions cover DDL and savepoints as PostgreSQL's do; the
execution option :data:`SQLITE_BEGIN` (``"IMMEDIATE"``) takes the write lock up front where a
transaction reads before it writes. PostgreSQL goes through psycopg 3 with pre-ping and a connect
timeout. :func:`check_connection` turns a wrong or unreachable database into one
:class:`~seiwallet.errors.DatabaseError` line that says what to fix, never naming the password.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.pool import ConnectionPoolEntry

from seiwallet.config import ENV_PREFIX
from seiwallet.errors import DatabaseError

#: The setting every database message points to.
DATABASE_URL_SETTING: Final = f"{ENV_PREFIX}DATABASE_URL"

#: How long a SQLite statement waits for another process's write lock before failing.
SQLITE_BUSY_TIMEOUT_MS: Final = 5_000
#: How often a writer asks again for a file another process is writing (first, at most).
_POLL_FIRST_S: Final = 0.0002
_POLL_LAST_S: Final = 0.002

#: How long opening a PostgreSQL connection may take before it counts as unreachable.
POSTGRES_CONNECT_TIMEOUT_S: Final = 10

#: Execution option: how SQLite begins a transaction (DEFERRED, IMMEDIATE or EXCLUSIVE).
SQLITE_BEGIN: Final = "sqlite_begin"

_SQLITE_BEGIN_MODES: Final = frozenset({"DEFERRED", "IMMEDIATE", "EXCLUSIVE"})
_HOLDS_WRITER_LOCK: Final = "seiwallet_holds_writer_lock"
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
    if _is_sqlite(parsed):
        engine = create_engine(parsed, **engine_options)
        path = sqlite_path(parsed)
        if path is not None:
            event.listen(engine, "do_connect", _directory_creator(path.parent))
        event.listen(engine, "connect", _sqlite_on_connect)
        writers = _WriterLock()
        event.listen(engine, "begin", writers.on_begin)
        event.listen(engine, "commit", writers.on_end)
        event.listen(engine, "rollback", writers.on_end)
        # A connection returned to the pool mid-transaction is rolled back by the pool itself.
        event.listen(engine, "reset", writers.on_reset)
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


def _begin_polling(connection: Connection, mode: str) -> None:
    """``BEGIN <mode>``, asking again every 0.2–2 ms while another process holds the file."""
    deadline = time.monotonic() + SQLITE_BUSY_TIMEOUT_MS / 1000
    pause = _POLL_FIRST_S
    # Straight to the driver: these run inside the process's writer lock, and SQLAlchemy's
    # per-statement work would lengthen every writer's turn.
    raw = connection.connection.dbapi_connection
    assert raw is not None
    raw.execute("PRAGMA busy_timeout = 0")
    try:
        while True:
            try:
                connection.exec_driver_sql(f"BEGIN {mode}")
                return
            except DBAPIError as exc:
                busy = isinstance(exc.orig, sqlite3.OperationalError) and (
                    "locked" in str(exc.orig) or "busy" in str(exc.orig)
                )
                if not busy or time.monotonic() >= deadline:
                    raise
            time.sleep(pause)
            pause = min(pause * 2, _POLL_LAST_S)
    finally:
        raw.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}")


class _WriterLock:
    """Writers of one process queue on a lock, not in SQLite's busy handler.

    SQLite lets one writer in at a time; the others wait in its busy handler, which *sleeps* in
    steps of up to 100 ms. Under many concurrent writers (an API with a thread pool) that
    turns microseconds of waiting into tens of milliseconds. A transaction that announces it will
    write (``BEGIN IMMEDIATE``/``EXCLUSIVE``) first takes this process-wide lock, so writers of
    the same process hand over at once.

    Between processes (the API and the worker) the busy handler's growing sleeps were unfair:
    the API's writers hand the lock to each other at once, and the worker, asleep for up to
    100 ms a try, found it free only after the API's burst — a payment signed at the start of
    a burst of approvals waited two seconds to be submitted (bench/payments.py). So a writer
    that finds the file locked by another process asks again every 0.2–2 ms itself, with the
    busy handler off for that ``BEGIN`` only.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()

    def on_begin(self, connection: Connection) -> None:
        """Emit BEGIN ourselves, in the mode the connection's :data:`SQLITE_BEGIN` asks for."""
        mode = str(connection.get_execution_options().get(SQLITE_BEGIN, "DEFERRED")).upper()
        if mode not in _SQLITE_BEGIN_MODES:
            allowed = ", ".join(sorted(_SQLITE_BEGIN_MODES))
            raise ValueError(f"{SQLITE_BEGIN} must be one of {allowed}, not {mode!r}")
        holds = mode != "DEFERRED"
        if holds:
            if not self._lock.acquire(timeout=SQLITE_BUSY_TIMEOUT_MS / 1000):
                raise DatabaseError("the database is busy: another writer held it for too long")
            connection.info[_HOLDS_WRITER_LOCK] = True
        try:
            if holds:
                _begin_polling(connection, mode)
            else:
                connection.exec_driver_sql(f"BEGIN {mode}")
        except BaseException:
            self.on_end(connection)
            raise

    def on_end(self, connection: Connection) -> None:
        if connection.info.pop(_HOLDS_WRITER_LOCK, False):
            self._lock.release()

    def on_reset(
        self, dbapi_connection: Any, record: ConnectionPoolEntry, reset_state: Any
    ) -> None:
        if record.info.pop(_HOLDS_WRITER_LOCK, False):
            self._lock.release()
