"""Reads asked from the event loop: in place on a SQLite file, in a thread elsewhere; and the
session check that uses it (``SessionService.authenticate_on_loop``), on both databases."""

from __future__ import annotations

import asyncio
import threading
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine, select, text
from sqlalchemy.orm import Session, sessionmaker

from seiwallet.accounts.errors import NotSignedIn
from seiwallet.accounts.models import SessionKind, User, UserSession, UserStatus
from seiwallet.accounts.sessions import SessionService
from seiwallet.db import SQLITE_BEGIN, as_utc, create_engine_for, offload, session_factory


def _reader(sessions: sessionmaker[Session]) -> tuple[int, int]:
    with sessions() as db:
        return threading.get_ident(), int(db.execute(text("SELECT 1")).scalar_one())


async def test_a_sqlite_file_is_read_in_place_and_other_databases_from_a_thread(
    engine: Engine,
) -> None:
    sessions = session_factory(engine)
    thread, one = await offload.read(sessions, _reader, sessions)
    assert one == 1
    on_loop = thread == threading.get_ident()
    assert on_loop is (engine.dialect.name == "sqlite")
    assert offload.reads_in_place(sessions) is on_loop


async def test_an_in_memory_sqlite_database_is_read_from_a_thread(tmp_path: Path) -> None:
    engine = create_engine_for("sqlite://")
    try:
        sessions = session_factory(engine)
        assert not offload.reads_in_place(sessions)
        thread, _ = await offload.read(sessions, _reader, sessions)
        assert thread != threading.get_ident()
    finally:
        engine.dispose()


async def test_a_failing_read_raises_to_the_caller(engine: Engine) -> None:
    sessions = session_factory(engine)

    def broken() -> None:
        with sessions() as db:
            db.execute(text("SELECT * FROM no_such_table"))

    with pytest.raises(Exception, match="no_such_table"):
        await offload.read(sessions, broken)


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2026, 11, 24, 12, 0, tzinfo=UTC).timestamp()

    def __call__(self) -> float:
        return self.now


async def test_a_session_is_checked_from_the_loop_and_marked_seen_once_a_minute(
    engine: Engine,
) -> None:
    sessions = session_factory(engine)
    user_id = uuid.uuid4().hex
    with sessions.begin() as db:
        db.add(
            User(
                id=user_id,
                email="ada@example.com",
                email_verified=True,
                wallet_id=user_id,
                wallet_address="0x" + "ab" * 20,
                status=UserStatus.ACTIVE,
            )
        )
    clock = Clock()
    service = SessionService(sessions, b"k" * 32, clock=clock)
    session_id, token = service.open(user_id, SessionKind.API, label="cli")

    def seen() -> datetime:
        with sessions() as db:
            found = db.scalar(select(UserSession.last_seen_at).where(UserSession.id == session_id))
            assert found is not None
            return as_utc(found)

    opened = seen()
    clock.now += 30
    info = await service.authenticate_on_loop(token, SessionKind.API)
    assert (info.id, info.user_id, info.wallet_address) == (session_id, user_id, "0x" + "ab" * 20)
    assert seen() == opened  # within the minute: a read, no write

    clock.now += 31
    await service.authenticate_on_loop(token, SessionKind.API)
    assert seen() == opened + timedelta(seconds=61)

    with pytest.raises(NotSignedIn):
        await service.authenticate_on_loop(token, SessionKind.WEB)  # another kind
    with pytest.raises(NotSignedIn):
        await service.authenticate_on_loop(token[:-2] + "xx", SessionKind.API)
    service.revoke(user_id, session_id)
    with pytest.raises(NotSignedIn):
        await service.authenticate_on_loop(token, SessionKind.API)


def _counter_table(engine: Engine) -> None:
    with engine.begin() as connection:
        connection.execute(text("CREATE TABLE counter (id INTEGER PRIMARY KEY, n INTEGER)"))
        connection.execute(text("INSERT INTO counter VALUES (1, 0)"))


def _bump(sessions: sessionmaker[Session], by: int = 1) -> int:
    """Add ``by`` to the counter in a write transaction (``BEGIN IMMEDIATE``); the new value."""
    with sessions.begin() as db:
        db.connection(execution_options={SQLITE_BEGIN: "IMMEDIATE"})
        db.execute(text("UPDATE counter SET n = n + :by WHERE id = 1"), {"by": by})
        return int(db.execute(text("SELECT n FROM counter WHERE id = 1")).scalar_one())


def _hold_the_writer(
    sessions: sessionmaker[Session], by: int = 0
) -> tuple[threading.Thread, threading.Event]:
    """A thread in a write transaction (adding ``by``) until the returned event is set."""
    holding, release = threading.Event(), threading.Event()

    def hold() -> None:
        with sessions.begin() as db:
            db.connection(execution_options={SQLITE_BEGIN: "IMMEDIATE"})
            db.execute(text("UPDATE counter SET n = n + :by WHERE id = 1"), {"by": by})
            holding.set()
            release.wait(10)

    holder = threading.Thread(target=hold)
    holder.start()
    assert holding.wait(10)
    return holder, release


async def test_a_write_runs_in_place_when_the_sqlite_writer_lock_is_free(engine: Engine) -> None:
    _counter_table(engine)
    sessions = session_factory(engine)
    threads: list[int] = []

    def bump() -> int:
        threads.append(threading.get_ident())
        return _bump(sessions)

    assert await offload.write(sessions, bump) == 1
    assert await offload.write(sessions, bump) == 2
    on_loop = [thread == threading.get_ident() for thread in threads]
    assert on_loop == [engine.dialect.name == "sqlite"] * 2


async def test_a_write_that_finds_the_lock_taken_waits_for_its_turn_and_runs_once(
    engine: Engine,
) -> None:
    """Another writer holds the file: the attempt on the loop stops at BEGIN (nothing done, the
    loop not blocked); a thread waits for the process's turn and the write runs again on the
    loop in it, after the holder commits (PostgreSQL: in a thread, after the row lock)."""
    _counter_table(engine)
    sessions = session_factory(engine)
    holder, release = _hold_the_writer(sessions, by=10)
    attempts: list[bool] = []

    def bump() -> int:
        attempts.append(threading.get_ident() == loop_thread)
        return _bump(sessions)

    loop_thread = threading.get_ident()
    pending = asyncio.ensure_future(offload.write(sessions, bump))
    await asyncio.sleep(0.2)  # the loop runs meanwhile: nothing waits on it
    assert not pending.done()
    release.set()
    assert await asyncio.wait_for(pending, 10) == 11  # after the holder's +10, once
    holder.join()
    assert attempts == ([True, True] if engine.dialect.name == "sqlite" else [False])


async def test_writes_waiting_for_a_turn_run_in_order_and_alone_in_failure(
    tmp_path: Path,
) -> None:
    """Several writes wait while another thread holds the file: they run in one turn, in the
    order they came; one that fails fails alone; one whose caller gave up is not run."""
    engine = create_engine_for(f"sqlite:///{tmp_path / 'turns.sqlite3'}")
    try:
        _counter_table(engine)
        sessions = session_factory(engine)
        holder, release = _hold_the_writer(sessions)
        ran: list[str] = []

        def add(name: str, fail: bool = False) -> int:
            with sessions.begin() as db:
                db.connection(execution_options={SQLITE_BEGIN: "IMMEDIATE"})
                ran.append(name)
                db.execute(text("UPDATE counter SET n = n + 1 WHERE id = 1"))
                if fail:
                    raise ValueError(f"{name} refused")
                return int(db.execute(text("SELECT n FROM counter WHERE id = 1")).scalar_one())

        first = asyncio.ensure_future(offload.write(sessions, add, "first"))
        failing = asyncio.ensure_future(offload.write(sessions, add, "failing", fail=True))
        dropped = asyncio.ensure_future(offload.write(sessions, add, "dropped"))
        last = asyncio.ensure_future(offload.write(sessions, add, "last"))
        await asyncio.sleep(0.1)
        dropped.cancel()
        release.set()
        assert await asyncio.wait_for(first, 10) == 1
        with pytest.raises(ValueError, match="failing refused"):
            await failing
        assert await asyncio.wait_for(last, 10) == 2  # the failed one's +1 was rolled back
        holder.join()
        assert ran == ["first", "failing", "last"]
        # The turn was given back: a write from a thread gets the lock at once.
        await asyncio.wait_for(asyncio.to_thread(add, "after"), 5)
    finally:
        engine.dispose()
