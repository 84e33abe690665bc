"""Alembic's environment: migrate the connection seiwallet hands over, or the CLI's database."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from logging.config import fileConfig

from alembic import context
from alembic.operations import MigrationScript
from alembic.runtime.migration import MigrationContext
from alembic.util import CommandError
from sqlalchemy import Connection

from seiwallet.config import load_settings
from seiwallet.db.base import Base
from seiwallet.db.engine import check_connection, create_engine_for, parse_database_url
from seiwallet.db.migrations import migration_connection
from seiwallet.db.models import load_all
from seiwallet.errors import SeiwalletError

load_all()
TARGET_METADATA = Base.metadata


def _skip_empty_autogenerate(
    migration_context: MigrationContext,
    revision: str | Iterable[str | None] | Iterable[str],
    directives: list[MigrationScript],
) -> None:
    """Write no revision when autogenerate finds the models and the migrations in agreement."""
    if getattr(context.config.cmd_opts, "autogenerate", False):
        script = directives[0]
        if script.upgrade_ops is not None and script.upgrade_ops.is_empty():
            directives[:] = []
            logging.getLogger("alembic.env").info("Models match the migrations: nothing written.")


def _cli_database_url() -> str:
    """The alembic CLI's database: ``-x url=…``, else seiwallet's settings."""
    url = context.get_x_argument(as_dictionary=True).get("url")
    return url or load_settings().effective_database_url


def _migrate(connection: Connection) -> None:
    """Run the migrations on ``connection`` (already in seiwallet's migration transaction)."""
    context.configure(
        connection=connection,
        target_metadata=TARGET_METADATA,
        # Batch operations rebuild tables on SQLite and are plain ALTERs on PostgreSQL.
        render_as_batch=True,
        process_revision_directives=_skip_empty_autogenerate,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_offline() -> None:
    """Print the SQL of the migrations (``alembic upgrade head --sql``) for review."""
    context.configure(
        url=parse_database_url(_cli_database_url()),
        target_metadata=TARGET_METADATA,
        render_as_batch=True,
        literal_binds=True,
        dialect_opts={"paramstyle": "named"},
    )
    with context.begin_transaction():
        context.run_migrations()


def run_online() -> None:
    """Migrate seiwallet's connection, or open one on the CLI's database under the same lock."""
    connection = context.config.attributes.get("connection")
    if connection is not None:
        _migrate(connection)
        return
    try:
        engine = create_engine_for(_cli_database_url())
        try:
            check_connection(engine)
            with migration_connection(engine) as cli_connection:
                _migrate(cli_connection)
        finally:
            engine.dispose()
    except SeiwalletError as exc:
        # The alembic CLI prints a CommandError as one line; anything else as a traceback.
        raise CommandError(str(exc)) from exc


# Only the alembic CLI passes an ini file; a running seiwallet keeps its own logging setup.
if context.config.config_file_name is not None:
    fileConfig(context.config.config_file_name, disable_existing_loggers=False)

if context.is_offline_mode():
    run_offline()
else:
    run_online()
