"""The database layer on SQLite and PostgreSQL: engines, connection errors, migrations."""

from __future__ import annotations

import queue
import socket
import sqlite3
import stat
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine, inspect, make_url, text
from sqlalchemy.exc import IntegrityError, OperationalError
from tests.fixtures.database import PostgresServer

from seiwallet.db import (
    SQLITE_BEGIN,
    check_connection,
    create_engine_for,
    describe_url,
    parse_database_url,
    session_factory,
    sqlite_path,
)
from seiwallet.db.base import Base
from seiwallet.db.engine import SQLITE_BUSY_TIMEOUT_MS, SQLITE_WRITER_LOCK_SUFFIX
from seiwallet.db.migrations import (
    alembic_config,
    current_revision,
    head_revision,
    migration_connection,
    upgrade,
)
from seiwallet.db.models import MODEL_MODULES, load_all
from seiwallet.errors import DatabaseError

SECRET = "s3cret-Pa55word"


def _closed_port() -> int:
    """A port on 127.0.0.1 that nothing listens on (bound, then released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


def _create_parent_and_child(connection: Connection) -> None:
    connection.exec_driver_sql("CREATE TABLE parent (id INTEGER PRIMARY KEY)")
    connection.exec_driver_sql(
        "CREATE TABLE child (id INTEGER PRIMARY KEY,"
        " parent_id INTEGER NOT NULL REFERENCES parent (id))"
    )


def _assert_one_line_without_secret(error: DatabaseError) -> str:
    message = str(error)
    assert "\n" not in message
    assert SECRET not in message
    assert "Traceback" not in message
    return message


# --- migrations ------------------------------------------------------------------------------


def test_upgrade_brings_an_empty_database_to_head(database_url: str) -> None:
    engine = create_engine_for(database_url)
    try:
        assert current_revision(engine) is None
        upgrade(engine)
        assert current_revision(engine) == head_revision()
        upgrade(engine)  # already at head: nothing to do, nothing fails
        assert current_revision(engine) == head_revision()
    finally:
        engine.dispose()


def test_migrations_create_exactly_the_models(engine: Engine) -> None:
    """Autogenerate finds nothing to do: every model change has its migration, and no more."""
    load_all()
    with engine.connect() as connection:
        differences = compare_metadata(MigrationContext.configure(connection), Base.metadata)
    assert differences == [], "run `make migration m=...` and commit the revision"
    assert set(Base.metadata.tables) <= set(inspect(engine).get_table_names())


def test_downgrade_to_base_and_upgrade_again(engine: Engine) -> None:
    with migration_connection(engine) as connection:
        command.downgrade(alembic_config(connection), "base")
    assert current_revision(engine) is None
    assert set(inspect(engine).get_table_names()) <= {"alembic_version"}
    upgrade(engine)
    assert current_revision(engine) == head_revision()


def test_revisions_form_one_line() -> None:
    heads = ScriptDirectory.from_config(alembic_config()).get_heads()
    assert len(heads) <= 1, f"several heads {heads}: merge them with `alembic merge`"


def test_processes_starting_together_migrate_once(database_url: str) -> None:
    engines = [create_engine_for(database_url) for _ in range(3)]
    errors: list[BaseException] = []

    def start(engine: Engine) -> None:
        try:
            upgrade(engine)
        except BaseException as exc:  # reported below, from the test's thread
            errors.append(exc)

    threads = [threading.Thread(target=start, args=(engine,)) for engine in engines]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
        assert errors == []
        assert current_revision(engines[0]) == head_revision()
    finally:
        for engine in engines:
            engine.dispose()


def test_a_database_from_a_newer_seiwallet_is_refused(engine: Engine) -> None:
    with engine.begin() as connection:
        connection.execute(text("DELETE FROM alembic_version"))
        connection.execute(text("INSERT INTO alembic_version (version_num) VALUES ('f00dfeed')"))
    with pytest.raises(DatabaseError) as caught:
        upgrade(engine)
    message = _assert_one_line_without_secret(caught.value)
    assert "is at revision f00dfeed, which this version of seiwallet does not know" in message


def test_migration_leaving_dangling_foreign_keys_rolls_back(tmp_path: Path) -> None:
    """On SQLite foreign keys are off while migrating, then checked before the commit."""
    engine = create_engine_for(f"sqlite:///{tmp_path / 'fk.sqlite3'}")

    def migrate_badly() -> None:
        with migration_connection(engine) as connection:
            _create_parent_and_child(connection)
            connection.exec_driver_sql("INSERT INTO child (id, parent_id) VALUES (1, 42)")

    try:
        with pytest.raises(DatabaseError, match="foreign keys point nowhere"):
            migrate_badly()
        assert inspect(engine).get_table_names() == []  # the DDL was rolled back too
        with engine.connect() as connection:
            assert connection.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
    finally:
        engine.dispose()


def test_load_all_imports_every_model_module() -> None:
    modules = load_all()
    assert tuple(module.__name__ for module in modules) == MODEL_MODULES


# --- connections -----------------------------------------------------------------------------


def test_check_connection_accepts_a_working_database(database_url: str) -> None:
    engine = create_engine_for(database_url)
    try:
        check_connection(engine)
        with session_factory(engine)() as session:
            assert session.execute(text("SELECT 1")).scalar_one() == 1
    finally:
        engine.dispose()


def test_unreachable_postgresql_is_one_line_naming_the_setting() -> None:
    port = _closed_port()
    engine = create_engine_for(f"postgresql://wallet:{SECRET}@127.0.0.1:{port}/seiwallet")
    try:
        with pytest.raises(DatabaseError) as caught:
            check_connection(engine)
    finally:
        engine.dispose()
    message = _assert_one_line_without_secret(caught.value)
    assert message == (
        f"cannot connect to PostgreSQL at 127.0.0.1:{port} (connection refused): "
        "check SEIWALLET_DATABASE_URL"
    )


@pytest.mark.postgres
@pytest.mark.parametrize(
    ("wrong_password", "database", "reason"),
    [
        (True, "postgres", "password authentication failed for user"),
        (False, "no_such_database", 'database "no_such_database" does not exist'),
    ],
    ids=["wrong-password", "missing-database"],
)
def test_wrong_postgresql_credentials_or_database_are_named(
    postgres_server: PostgresServer, wrong_password: bool, database: str, reason: str
) -> None:
    """The server's own reason is passed on (a server with trust auth would accept any password)."""
    url = make_url(postgres_server.url(database))
    if wrong_password:
        url = url.set(password=SECRET)
    engine = create_engine_for(url)
    try:
        with pytest.raises(DatabaseError) as caught:
            check_connection(engine)
    finally:
        engine.dispose()
    message = _assert_one_line_without_secret(caught.value)
    assert postgres_server.password is None or postgres_server.password not in message
    address = f"{postgres_server.host}:{postgres_server.port}"
    assert message.startswith(f"cannot connect to PostgreSQL at {address} ({reason}")
    assert message.endswith("): check SEIWALLET_DATABASE_URL")


def test_sqlite_file_whose_directory_cannot_be_made(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("a file where the database's directory should be")
    engine = create_engine_for(f"sqlite:///{blocker / 'wallet.sqlite3'}")
    with pytest.raises(DatabaseError) as caught:
        check_connection(engine)
    assert _assert_one_line_without_secret(caught.value) == (
        f"cannot create the directory {blocker} for the SQLite database "
        "(a file is in the way of the directory): check SEIWALLET_DATABASE_URL"
    )


def test_sqlite_path_that_cannot_be_opened(tmp_path: Path) -> None:
    engine = create_engine_for(f"sqlite:///{tmp_path}")  # a directory, not a file
    with pytest.raises(DatabaseError) as caught:
        check_connection(engine)
    assert _assert_one_line_without_secret(caught.value) == (
        f"cannot open the SQLite database at {tmp_path} (unable to open database file): "
        "check that it and its directory are writable; check SEIWALLET_DATABASE_URL"
    )


def test_missing_sqlite_directory_is_created(tmp_path: Path) -> None:
    path = tmp_path / "new" / "nested" / "wallet.sqlite3"
    engine = create_engine_for(f"sqlite:///{path}")
    try:
        check_connection(engine)
    finally:
        engine.dispose()
    assert path.is_file()


@pytest.mark.parametrize(
    ("url", "driver"),
    [
        ("postgresql://u:p@db.example:5433/w", "postgresql+psycopg"),
        ("postgres://u:p@db.example/w", "postgresql+psycopg"),
        ("postgresql+psycopg://u:p@db.example/w", "postgresql+psycopg"),
        ("sqlite:////var/lib/seiwallet/w.sqlite3", "sqlite"),
        ("sqlite+pysqlite:///w.sqlite3", "sqlite"),
    ],
)
def test_urls_are_normalised_to_our_drivers(url: str, driver: str) -> None:
    assert parse_database_url(url).drivername == driver


@pytest.mark.parametrize(
    "url",
    [f"mysql://root:{SECRET}@localhost/w", f"not a url {SECRET}", "postgresql+psycopg2://u@h/w"],
)
def test_unsupported_urls_are_refused_without_echoing_them(url: str) -> None:
    with pytest.raises(DatabaseError) as caught:
        create_engine_for(url)
    assert "SEIWALLET_DATABASE_URL" in _assert_one_line_without_secret(caught.value)


def test_descriptions_never_show_the_password() -> None:
    assert (
        describe_url(f"postgresql://wallet:{SECRET}@db.example:5433/seiwallet")
        == "PostgreSQL at db.example:5433/seiwallet"
    )
    assert describe_url("sqlite:////srv/w.sqlite3") == "SQLite at /srv/w.sqlite3"
    assert describe_url("sqlite://") == "in-memory SQLite"


# --- SQLite specifics ------------------------------------------------------------------------


@pytest.fixture
def sqlite_engine(tmp_path: Path) -> Iterator[Engine]:
    engine = create_engine_for(f"sqlite:///{tmp_path / 'wallet.sqlite3'}")
    yield engine
    engine.dispose()


def test_sqlite_pragmas_are_set_on_every_connection(sqlite_engine: Engine) -> None:
    with sqlite_engine.connect() as connection:
        pragma = connection.exec_driver_sql
        assert pragma("PRAGMA journal_mode").scalar() == "wal"
        assert pragma("PRAGMA foreign_keys").scalar() == 1
        assert pragma("PRAGMA synchronous").scalar() == 1  # NORMAL
        assert pragma("PRAGMA busy_timeout").scalar() == 5000


def test_sqlite_enforces_foreign_keys(sqlite_engine: Engine) -> None:
    with sqlite_engine.begin() as connection:
        _create_parent_and_child(connection)
    with (
        sqlite_engine.connect() as connection,
        pytest.raises(IntegrityError, match="FOREIGN KEY constraint failed"),
    ):
        connection.exec_driver_sql("INSERT INTO child (id, parent_id) VALUES (1, 42)")


def test_sqlite_transactions_cover_ddl_and_savepoints(sqlite_engine: Engine) -> None:
    """SQLAlchemy emits BEGIN, so SQLite rolls back DDL and savepoints nest as on PostgreSQL."""

    def create_then_fail() -> None:
        with sqlite_engine.begin() as connection:
            connection.exec_driver_sql("CREATE TABLE doomed (id INTEGER)")
            raise RuntimeError("roll back")

    with pytest.raises(RuntimeError):
        create_then_fail()
    assert inspect(sqlite_engine).get_table_names() == []

    with sqlite_engine.begin() as connection:
        connection.exec_driver_sql("CREATE TABLE kept (id INTEGER)")
        connection.exec_driver_sql("INSERT INTO kept VALUES (1)")
        savepoint = connection.begin_nested()
        connection.exec_driver_sql("INSERT INTO kept VALUES (2)")
        savepoint.rollback()
    with sqlite_engine.connect() as connection:
        assert connection.exec_driver_sql("SELECT id FROM kept").scalars().all() == [1]


# --- SQLite writers queueing for the write lock -----------------------------------------------

_WRITE = {SQLITE_BEGIN: "IMMEDIATE"}

# Another process writing to the same file, driven one command a line on its stdin.
_OTHER_PROCESS = """
import fcntl, sys
from seiwallet.db import SQLITE_BEGIN, create_engine_for

engine = create_engine_for(sys.argv[1])
connection = engine.connect().execution_options(**{SQLITE_BEGIN: "IMMEDIATE"})
probe = None
print("ready", flush=True)
for line in sys.stdin:
    command, *argument = line.split()
    if command == "begin":
        transaction = connection.begin()
        connection.exec_driver_sql("INSERT INTO writes VALUES ('other')")
        print("holding", flush=True)
    elif command == "commit":
        transaction.commit()
        print("committed", flush=True)
    elif command == "probe":
        # Is this byte of the lock file held by another process? Only asked while this one
        # holds nothing: record locks belong to the process, the unlock would drop its own.
        probe = probe or open(sys.argv[2], "r+b")
        byte = int(argument[0])
        try:
            fcntl.lockf(probe, fcntl.LOCK_EX | fcntl.LOCK_NB, 1, byte)
        except OSError:
            print("held", flush=True)
        else:
            fcntl.lockf(probe, fcntl.LOCK_UN, 1, byte)
            print("free", flush=True)
connection.close()
engine.dispose()
"""


class _OtherProcess:
    """A second process writing to the SQLite file, as the worker does beside the API."""

    def __init__(self, engine: Engine) -> None:
        database = sqlite_path(engine.url)
        assert database is not None
        self._process = subprocess.Popen(
            [
                sys.executable,
                "-c",
                _OTHER_PROCESS,
                engine.url.render_as_string(hide_password=False),
                f"{database}{SQLITE_WRITER_LOCK_SUFFIX}",
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        self._lines: queue.Queue[str] = queue.Queue()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        assert self.receive(timeout=60) == "ready"

    def _read(self) -> None:
        assert self._process.stdout is not None
        for line in self._process.stdout:
            self._lines.put(line.strip())

    def send(self, command: str) -> None:
        assert self._process.stdin is not None
        self._process.stdin.write(f"{command}\n")
        self._process.stdin.flush()

    def receive(self, timeout: float = 10) -> str | None:
        """Its next line, or ``None`` if it says nothing for ``timeout`` seconds."""
        try:
            return self._lines.get(timeout=timeout)
        except queue.Empty:
            return None

    def ask(self, command: str) -> str | None:
        self.send(command)
        return self.receive()

    def close(self) -> None:
        assert self._process.stdin is not None
        self._process.stdin.close()
        try:
            self._process.wait(timeout=10)
        except subprocess.TimeoutExpired:  # stuck waiting for a lock: the test already failed
            self._process.kill()
            self._process.wait()
        self._reader.join(10)
        assert self._process.stdout is not None
        self._process.stdout.close()


class _Writer(threading.Thread):
    """A write transaction of this process in a thread of its own: did it get in, or fail?"""

    def __init__(self, engine: Engine, statement: str = "INSERT INTO writes VALUES ('this')"):
        super().__init__(daemon=True)
        self._engine = engine
        self._statement = statement
        self.outcome: list[BaseException | None] = []
        self.busy_timeout: int | None = None

    def run(self) -> None:
        try:
            with (
                self._engine.connect() as connection,
                connection.execution_options(**_WRITE).begin(),
            ):
                connection.exec_driver_sql(self._statement)
                self.busy_timeout = connection.exec_driver_sql("PRAGMA busy_timeout").scalar()
        except BaseException as exc:  # reported from the test's thread
            self.outcome.append(exc)
        else:
            self.outcome.append(None)


def _writes(engine: Engine) -> list[str]:
    with engine.connect() as connection:
        return list(connection.exec_driver_sql("SELECT who FROM writes ORDER BY rowid").scalars())


@pytest.fixture
def other_process(sqlite_engine: Engine) -> Iterator[_OtherProcess]:
    with sqlite_engine.begin() as connection:
        connection.exec_driver_sql("CREATE TABLE writes (who TEXT)")
    other = _OtherProcess(sqlite_engine)
    yield other
    other.close()


def test_sqlite_writer_of_another_process_gets_in_once_the_holder_commits(
    sqlite_engine: Engine, other_process: _OtherProcess
) -> None:
    """It waits in the kernel (at the lock file's turnstile), not asking SQLite again and
    again; SQLite's busy handler stays on, for processes that do not queue."""
    assert other_process.ask("begin") == "holding"
    writer = _Writer(sqlite_engine)
    writer.start()
    writer.join(0.3)
    assert writer.is_alive()
    assert writer.outcome == []
    assert other_process.ask("probe 1") == "held"  # queued for the writer's byte
    assert other_process.ask("commit") == "committed"
    writer.join(10)
    assert writer.outcome == [None]
    assert writer.busy_timeout == SQLITE_BUSY_TIMEOUT_MS
    assert _writes(sqlite_engine) == ["other", "this"]


def test_sqlite_write_lock_goes_back_and_forth_between_processes(
    sqlite_engine: Engine, other_process: _OtherProcess
) -> None:
    with sqlite_engine.connect() as connection, connection.execution_options(**_WRITE).begin():
        connection.exec_driver_sql("INSERT INTO writes VALUES ('this')")
        other_process.send("begin")
        assert other_process.receive(timeout=0.3) is None  # it waits for this commit
    assert other_process.receive() == "holding"
    writer = _Writer(sqlite_engine)
    writer.start()
    writer.join(0.3)
    assert writer.is_alive()
    assert other_process.ask("commit") == "committed"
    writer.join(10)
    assert writer.outcome == [None]
    assert _writes(sqlite_engine) == ["this", "other", "this"]


def _commit(connection: Connection) -> None:
    with connection.begin():
        connection.exec_driver_sql("INSERT INTO writes VALUES ('kept')")


def _roll_back(connection: Connection) -> None:
    transaction = connection.begin()
    connection.exec_driver_sql("INSERT INTO writes VALUES ('rolled back')")
    transaction.rollback()


def _fail(connection: Connection) -> None:
    def write_then_fail() -> None:
        with connection.begin():
            connection.exec_driver_sql("INSERT INTO writes VALUES ('failed')")
            raise RuntimeError("roll back")

    with pytest.raises(RuntimeError):
        write_then_fail()


def _close_mid_transaction(connection: Connection) -> None:
    connection.begin()
    connection.exec_driver_sql("INSERT INTO writes VALUES ('closed')")
    connection.close()


def _invalidate(connection: Connection) -> None:
    """Connection lost mid-transaction (what a disconnect error does): the pool closes it."""
    transaction = connection.begin()
    connection.exec_driver_sql("INSERT INTO writes VALUES ('invalidated')")
    connection.invalidate()
    transaction.rollback()


@pytest.mark.parametrize(
    ("end", "kept"),
    [
        (_commit, ["kept"]),
        (_roll_back, []),
        (_fail, []),
        (_close_mid_transaction, []),
        (_invalidate, []),
    ],
    ids=["commit", "rollback", "exception", "close", "invalidate"],
)
def test_sqlite_writer_lets_the_lock_go_however_its_transaction_ends(
    sqlite_engine: Engine,
    other_process: _OtherProcess,
    end: Callable[[Connection], None],
    kept: list[str],
) -> None:
    with sqlite_engine.connect() as connection:
        end(connection.execution_options(**_WRITE))
    assert other_process.ask("probe 0") == "free"  # the other process may write...
    writer = _Writer(sqlite_engine)
    writer.start()
    writer.join(10)
    assert writer.outcome == [None]  # ...and so may this one's next writer
    assert _writes(sqlite_engine) == [*kept, "this"]


def test_sqlite_failed_begin_lets_the_lock_go(
    sqlite_engine: Engine, other_process: _OtherProcess, tmp_path: Path
) -> None:
    """A writer outside seiwallet (the sqlite3 shell) does not queue: ours waits for it in
    SQLite's busy handler, and gives up both locks at once when that fails."""
    outsider = sqlite3.connect(tmp_path / "wallet.sqlite3", isolation_level=None)
    try:
        with sqlite_engine.connect() as connection:
            connection.exec_driver_sql("PRAGMA busy_timeout = 50")
            connection.commit()
            outsider.execute("BEGIN IMMEDIATE")
            with pytest.raises(OperationalError, match="database is locked"):
                connection.execution_options(**_WRITE).begin()
            outsider.execute("ROLLBACK")
            # Still checked out, so not the pool's reset: the failed BEGIN let both go.
            assert other_process.ask("probe 0") == "free"
            writer = _Writer(sqlite_engine)
            writer.start()
            writer.join(10)
            assert writer.outcome == [None]
    finally:
        outsider.close()


def test_sqlite_failed_commit_is_reported_and_lets_the_lock_go(
    sqlite_engine: Engine, other_process: _OtherProcess
) -> None:
    """The writer's COMMIT, which the engine emits itself, fails as SQLAlchemy's would."""
    with sqlite_engine.begin() as connection:
        _create_parent_and_child(connection)
    with sqlite_engine.connect() as connection:
        transaction = connection.execution_options(**_WRITE).begin()
        connection.exec_driver_sql("PRAGMA defer_foreign_keys = ON")  # checked at COMMIT
        connection.exec_driver_sql("INSERT INTO child (id, parent_id) VALUES (1, 42)")
        with pytest.raises(IntegrityError, match="FOREIGN KEY constraint failed"):
            transaction.commit()
        assert other_process.ask("probe 0") == "free"
        transaction.rollback()
    writer = _Writer(sqlite_engine)
    writer.start()
    writer.join(10)
    assert writer.outcome == [None]
    with sqlite_engine.connect() as connection:
        assert connection.exec_driver_sql("SELECT count(*) FROM child").scalar() == 0


def test_sqlite_engines_of_one_process_share_its_queue(
    sqlite_engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Record locks belong to the process: two engines on one file take turns on the
    process's lock, and a thread that holds the file and starts a second writer fails after
    the busy timeout instead of waiting for itself."""
    with sqlite_engine.begin() as connection:
        connection.exec_driver_sql("CREATE TABLE writes (who TEXT)")
    other = create_engine_for(sqlite_engine.url)
    try:
        with sqlite_engine.connect() as first, first.execution_options(**_WRITE).begin():
            writer = _Writer(other)
            writer.start()
            writer.join(0.3)
            assert writer.is_alive()
        writer.join(10)
        assert writer.outcome == [None]

        monkeypatch.setattr("seiwallet.db.engine.SQLITE_BUSY_TIMEOUT_MS", 200)
        with (
            sqlite_engine.connect() as first,
            first.execution_options(**_WRITE).begin(),
            other.connect() as second,
            pytest.raises(DatabaseError, match="busy"),
        ):
            second.execution_options(**_WRITE).begin()
    finally:
        other.dispose()


def test_sqlite_lock_file_is_made_next_to_the_database_with_its_mode(tmp_path: Path) -> None:
    database = tmp_path / "wallet.sqlite3"
    engine = create_engine_for(f"sqlite:///{database}")
    try:
        with engine.connect():
            pass  # the database file exists now
        database.chmod(0o600)
        check_connection(engine)  # a writer
    finally:
        engine.dispose()
    lock_file = tmp_path / f"wallet.sqlite3{SQLITE_WRITER_LOCK_SUFFIX}"
    assert lock_file.is_file()
    assert stat.S_IMODE(lock_file.stat().st_mode) == 0o600


def test_in_memory_sqlite_writers_take_turns_in_the_process(tmp_path: Path) -> None:
    engine = create_engine_for("sqlite://")
    try:
        check_connection(engine)
        with engine.connect() as connection, connection.execution_options(**_WRITE).begin():
            connection.exec_driver_sql("CREATE TABLE kept (id INTEGER)")
            # Each thread has its own in-memory database, but writers still queue.
            writer = _Writer(engine, "CREATE TABLE mine (id INTEGER)")
            writer.start()
            writer.join(0.3)
            assert writer.is_alive()
        writer.join(10)
        assert writer.outcome == [None]
        with engine.connect() as connection:
            assert connection.exec_driver_sql("SELECT count(*) FROM kept").scalar() == 0
    finally:
        engine.dispose()
    assert list(tmp_path.iterdir()) == []
