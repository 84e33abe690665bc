"""The database layer on SQLite and PostgreSQL: engines, connection errors, migrations."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine, inspect, make_url, text
from sqlalchemy.exc import IntegrityError
from tests.fixtures.database import PostgresServer

from seiwallet.db import (
    SQLITE_BEGIN,
    check_connection,
    create_engine_for,
    describe_url,
    parse_database_url,
    session_factory,
)
from seiwallet.db.base import Base
from seiwallet.db.engine import SQLITE_BUSY_TIMEOUT_MS
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


def test_sqlite_immediate_transactions_take_the_write_lock(sqlite_engine: Engine) -> None:
    """A writer of another engine (another process, as far as SQLite knows) waits for the lock
    by asking again itself, and gets in once the holder commits; its busy handler is back on
    afterwards."""
    check_connection(sqlite_engine)
    other = create_engine_for(sqlite_engine.url)
    outcome: list[BaseException | None] = []

    def begin_immediate(connection: Connection) -> None:
        try:
            with connection.execution_options(**{SQLITE_BEGIN: "IMMEDIATE"}).begin():
                connection.exec_driver_sql("CREATE TABLE IF NOT EXISTS second_writer (id INT)")
        except BaseException as exc:
            outcome.append(exc)
        else:
            outcome.append(None)

    try:
        with sqlite_engine.connect() as first, other.connect() as second:
            waiter = threading.Thread(target=begin_immediate, args=(second,))
            with first.execution_options(**{SQLITE_BEGIN: "IMMEDIATE"}).begin():
                waiter.start()
                waiter.join(0.3)
                # No write yet, but the lock is held: the second writer cannot be in.
                assert waiter.is_alive()
                assert outcome == []
            waiter.join(10)  # released at commit
            assert outcome == [None]
            busy = second.exec_driver_sql("PRAGMA busy_timeout").scalar()
            assert busy == SQLITE_BUSY_TIMEOUT_MS
    finally:
        other.dispose()
