"""Database access: engines and sessions on SQLite or PostgreSQL (migrations: ``.migrations``)."""

from __future__ import annotations

from seiwallet.db.base import insert_now
from seiwallet.db.engine import (
    DATABASE_URL_SETTING,
    SQLITE_BEGIN,
    as_utc,
    check_connection,
    create_engine_for,
    describe_url,
    parse_database_url,
    session_factory,
    sqlite_path,
)

__all__ = [
    "DATABASE_URL_SETTING",
    "SQLITE_BEGIN",
    "as_utc",
    "check_connection",
    "create_engine_for",
    "describe_url",
    "insert_now",
    "parse_database_url",
    "session_factory",
    "sqlite_path",
]
