"""Alembic migrations, configured in code so a running seiwallet needs no alembic.ini.

:func:`upgrade` runs at start. All pending revisions apply in one transaction (SQLite's too: the
engine emits BEGIN, so DDL rolls back) under a lock, a PostgreSQL advisory lock or SQLite's write
lock, so processes that start together migrate once. On SQLite, foreign keys are off while batch
operations rebuild tables (dropping a parent table would otherwise cascade into its children) and
are checked before commit. Developers write revisions with ``make migration m="…"``, which runs
``alembic revision --autogenerate`` through the packaged ``seiwallet/db/alembic.ini``.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Final

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util import CommandError
from sqlalchemy import Connection, Engine, text

from seiwallet.db.engine import (
    DATABASE_URL_SETTING,
    SQLITE_BEGIN,
    check_connection,
    describe_url,
)
from seiwallet.errors import DatabaseError

#: The directory holding ``env.py``, ``script.py.mako`` and ``versions/``.
MIGRATIONS_DIR: Final = Path(__file__).resolve().parent

#: Key of the PostgreSQL advisory lock held while migrating ("seiwa" in ASCII; any fixed number).
MIGRATION_LOCK_KEY: Final = 0x7365697761


def alembic_config(connection: Connection | None = None) -> Config:
    """Alembic's configuration for our migrations, optionally handing env.py an open connection."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    if connection is not None:
        config.attributes["connection"] = connection
    return config


def head_revision() -> str | None:
    """The revision the code expects the database at (``None`` before the first revision)."""
    return ScriptDirectory.from_config(alembic_config()).get_current_head()


def current_revision(engine: Engine) -> str | None:
    """The revision the database is at (``None`` for a database never migrated)."""
    check_connection(engine)
    with engine.connect() as connection:
        heads = MigrationContext.configure(connection).get_current_heads()
    if len(heads) > 1:
        raise DatabaseError(
            f"{describe_url(engine.url)} is at several revisions at once ({', '.join(heads)}): "
            "merge them with `alembic merge` before starting seiwallet"
        )
    return heads[0] if heads else None


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Apply every migration up to ``revision`` (default: head); a no-op when already there."""
    check_connection(engine)
    with migration_connection(engine) as connection:
        _require_known_revisions(connection, engine)
        command.upgrade(alembic_config(connection), revision)


@contextmanager
def migration_connection(engine: Engine) -> Iterator[Connection]:
    """A connection inside the single transaction migrations run in, holding the migration lock."""
    with engine.connect() as connection:
        sqlite = connection.dialect.name == "sqlite"
        if sqlite:
            # Must precede BEGIN: SQLite ignores this pragma inside a transaction.
            _raw_execute(connection, "PRAGMA foreign_keys = OFF")
            connection.execution_options(**{SQLITE_BEGIN: "IMMEDIATE"})
        try:
            with connection.begin():
                if not sqlite:
                    connection.execute(
                        text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK_KEY}
                    )
                yield connection
                if sqlite:
                    _require_foreign_keys_hold(connection)
        finally:
            if sqlite and not connection.invalidated:
                _raw_execute(connection, "PRAGMA foreign_keys = ON")


def _require_known_revisions(connection: Connection, engine: Engine) -> None:
    """Refuse a database migrated by a newer seiwallet, naming the way out."""
    script = ScriptDirectory.from_config(alembic_config())
    for head in MigrationContext.configure(connection).get_current_heads():
        try:
            script.get_revision(head)
        except CommandError:
            raise DatabaseError(
                f"{describe_url(engine.url)} is at revision {head}, which this version of "
                f"seiwallet does not know: run the seiwallet that migrated it, or point "
                f"{DATABASE_URL_SETTING} at another database"
            ) from None


def _require_foreign_keys_hold(connection: Connection) -> None:
    """Fail the migration (rolling it back) if it left rows whose parent is missing."""
    violations = connection.exec_driver_sql("PRAGMA foreign_key_check").fetchall()
    if violations:
        table, rowid, parent, _ = violations[0]
        raise DatabaseError(
            f"a migration left {len(violations)} rows whose foreign keys point nowhere (first: "
            f"{table} row {rowid} → {parent}); it was rolled back: fix the migration"
        )


def _raw_execute(connection: Connection, statement: str) -> None:
    """Run a statement on the driver connection, outside SQLAlchemy's transaction handling."""
    dbapi_connection = connection.connection.dbapi_connection
    if dbapi_connection is None:  # pragma: no cover - only after the connection was closed
        raise DatabaseError("the database connection was closed during migration: retry")
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute(statement)
    finally:
        cursor.close()
