"""The signer's own storage: wallets and sealed keys, authenticators, used nonces, spends, audit.

The signer is a trust boundary, so its storage is its own: its own declarative base and metadata
(:class:`SignerBase`), its own engine setup (:func:`create_signer_engine`), never
``seiwallet.db``. By default a SQLite file (WAL, foreign keys, a busy timeout, ``synchronous=FULL``
because a lost spend record could let the daily limit be exceeded); in production a PostgreSQL
schema of its own (``signer`` unless told otherwise), which the API's database role need not be
able to read.

Concurrency — the one rule everything rests on: every write concerning a wallet happens in a
transaction that holds that wallet's lock, taken first thing:

* PostgreSQL: ``SELECT … FOR UPDATE`` of the wallet's row. Two sign requests of one wallet
  serialize there; requests of other wallets run in parallel.
* SQLite: ``BEGIN IMMEDIATE``, the database's write lock: every writer serializes.

So "read what was spent in the last 24 hours, decide, record the spend" cannot interleave for one
wallet, and racing requests cannot together exceed a daily limit. The same holds for single-use
nonces and sign counters. A batch (:meth:`SignerStore.batch_transaction`) locks all its wallets
at once, in sorted id order: every transaction takes its locks in that one order, so two batches
never wait on each other in a cycle (no deadlock). The audit log's head is locked last, at
commit, so the one lock every transaction shares is held only for the last few statements.

Batches: signing thousands of intents a second, a commit (and its fsync) per intent would
dominate, so many intents — of one wallet or many — are decided and audited in one transaction.
Reads are made once per batch for all its wallets (wallets, authenticators, used nonces via
:meth:`prefetch_nonces <BatchTransaction.prefetch_nonces>`, spending windows) and writes are
buffered and written at commit with one statement per table (sign counts, nonces, spends, hourly
totals, audit records; on PostgreSQL ``unnest`` of arrays, sent in one pipeline). Nothing a batch
decided may leave the signer before its commit returns: a signature released before its spend is
durable could be spent again after a crash.

Rolling 24-hour limits read hourly totals (:class:`SignerSpendTotal`) plus the spends of the one
hour the window starts in, so checking a limit costs the same for a wallet with ten spends a day
as for one with a million; amounts are summed in Python as exact integers on both databases.
"""

from __future__ import annotations

import functools
import json
import operator
import re
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Final, Literal, NamedTuple

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Connection,
    Dialect,
    Engine,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    Numeric,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
    UniqueConstraint,
    bindparam,
    create_engine,
    event,
    func,
    insert,
    inspect,
    select,
    update,
)
from sqlalchemy import delete as sql_delete
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.schema import CreateSchema
from sqlalchemy.types import JSON, TypeDecorator, TypeEngine

from seiwallet.errors import ConfigError
from seiwallet.signer.audit import (
    GENESIS,
    AuditEntry,
    AuditHead,
    AuditRecord,
    AuditRow,
    VerifyResult,
    seal_rows,
    verify_chain,
)
from seiwallet.signer.errors import (
    ApprovalRefused,
    AuditUpgradeRefused,
    PolicyVersionConflict,
    SignerSchemaMismatch,
    UnknownAuthenticator,
    UnknownWallet,
)

__all__ = [
    "DEFAULT_POSTGRES_SCHEMA",
    "NONCE_PRUNE_GRACE_SECONDS",
    "REPLAYED",
    "SCHEMA_VERSION",
    "SPEND_BUCKET_SECONDS",
    "AuditUpgradeRefused",
    "AuthenticatorRecord",
    "BatchTransaction",
    "SignerAuditRow",
    "SignerAuthenticator",
    "SignerBase",
    "SignerMeta",
    "SignerSpend",
    "SignerSpendTotal",
    "SignerStore",
    "SignerUsedNonce",
    "SignerWallet",
    "Units",
    "WalletRecord",
    "WalletTransaction",
    "create_signer_engine",
]

#: The version of the tables below; a database at a newer one is refused, an older one is
#: upgraded step by step (see create_schema). 2: the slim audit table (see SignerAuditRow).
SCHEMA_VERSION: Final = 2

#: The PostgreSQL schema the signer's tables live in unless told otherwise.
DEFAULT_POSTGRES_SCHEMA: Final = "signer"

#: The reason an approval's nonce is refused a second time.
REPLAYED: Final = "replayed: this approval was already used"

#: How long a SQLite statement waits for another transaction's write lock before failing.
SQLITE_BUSY_TIMEOUT_MS: Final = 10_000
#: Page size of a new SQLite store (SQLite's default: 4096).
SQLITE_PAGE_SIZE: Final = 8192
POSTGRES_CONNECT_TIMEOUT_S: Final = 10

#: Used nonces are kept this long past their expiry before pruning: approvals are checked against
#: clocks of other processes, and a nonce must outlive any clock that still takes it for fresh.
NONCE_PRUNE_GRACE_SECONDS: Final = 300

META_SCHEMA_VERSION: Final = "schema_version"
META_AUDIT_HEAD: Final = "audit_head"
_RESERVED_META_KEYS: Final = frozenset({META_SCHEMA_VERSION, META_AUDIT_HEAD})

# Execution option: how a SQLite transaction begins. The signer's default is IMMEDIATE (take the
# write lock first); read-only paths ask for DEFERRED.
_SQLITE_BEGIN: Final = "seiwallet_signer_sqlite_begin"
# Ids per IN (…) list: well under SQLite's limit on bound parameters.
_CHUNK: Final = 500
# Guards schema creation when several signers start at once on PostgreSQL (pg_advisory_xact_lock).
_SCHEMA_LOCK_KEY: Final = 0x5E1_5167_0001
_SCHEMA_NAME: Final = re.compile(r"[a-z_][a-z0-9_]{0,62}")
_MAX_UNITS: Final = 2**256 - 1
_MAX_NONCE_CHARS: Final = 128
#: Spends are also added up per wallet, token and hour (``signer_spend_totals``), so a rolling
#: 24-hour window reads at most 25 totals plus the spends of the hour it starts in, however many
#: spends the wallet made: the cost of a limit check does not grow with the wallet's volume.
SPEND_BUCKET_SECONDS: Final = 3600


# --- tables -----------------------------------------------------------------------------------


class SignerBase(DeclarativeBase):
    """The signer's own declarative base: its tables share no metadata with the platform's."""

    metadata = MetaData(
        naming_convention={
            "ix": "ix_%(column_0_label)s",
            "uq": "uq_%(table_name)s_%(column_0_N_name)s",
            "ck": "ck_%(table_name)s_%(constraint_name)s",
            "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
            "pk": "pk_%(table_name)s",
        }
    )


class Units(TypeDecorator[int]):
    """Token base units, exact up to 2**256-1: NUMERIC(78, 0) on PostgreSQL, digits on SQLite.

    SQLite would store a NUMERIC beyond 2**63 as a float and lose money, so there the column is
    text; sums are made in Python, exactly, over the few rows a window needs.
    """

    impl = String(78)
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        if dialect.name == "postgresql":
            return dialect.type_descriptor(Numeric(78, 0))
        return dialect.type_descriptor(String(78))

    def process_bind_param(self, value: int | None, dialect: Dialect) -> Any:
        if value is None:
            return None
        if type(value) is not int or not 0 <= value <= _MAX_UNITS:
            raise ValueError(f"base units must be an integer from 0 to 2**256-1, not {value!r}")
        return value if dialect.name == "postgresql" else str(value)

    def process_result_value(self, value: Any, dialect: Dialect) -> int | None:
        return None if value is None else int(value)


class SignerMeta(SignerBase):
    """Key/value facts about the store: its schema version, the audit head, the master key check."""

    __tablename__ = "signer_meta"

    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = mapped_column(Text)


class SignerWallet(SignerBase):
    """A wallet: its address, its key sealed under the master key, and its policy."""

    __tablename__ = "signer_wallets"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    address: Mapped[str] = mapped_column(String(42), unique=True)
    public_key: Mapped[bytes] = mapped_column(LargeBinary)
    sealed_key: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[int] = mapped_column(BigInteger)
    policy: Mapped[dict[str, Any]] = mapped_column(JSON)
    #: Raised by one on every change; a change names the version it was approved against.
    policy_version: Mapped[int] = mapped_column(Integer)


class SignerAuthenticator(SignerBase):
    """A passkey or device key that may approve the wallet's intents."""

    __tablename__ = "signer_authenticators"
    __table_args__ = (UniqueConstraint("wallet_id", "credential_id"),)

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    wallet_id: Mapped[str] = mapped_column(ForeignKey("signer_wallets.id"), index=True)
    #: "passkey" (WebAuthn) or "device" (a P-256 device key).
    kind: Mapped[str] = mapped_column(String(16))
    credential_id: Mapped[bytes] = mapped_column(LargeBinary)
    public_key: Mapped[bytes] = mapped_column(LargeBinary)
    sign_count: Mapped[int] = mapped_column(BigInteger)
    rp_id: Mapped[str | None] = mapped_column(String(253))
    origins: Mapped[list[str]] = mapped_column(JSON)
    #: Unix time from which it may approve (a new authenticator may have to wait).
    active_from: Mapped[int] = mapped_column(BigInteger)
    revoked: Mapped[bool] = mapped_column(Boolean)
    label: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[int] = mapped_column(BigInteger)


class SignerUsedNonce(SignerBase):
    """An approval's single-use nonce, kept until its expiry has passed to refuse replays."""

    __tablename__ = "signer_used_nonces"
    # Nonce first: a batch looks its nonces up by nonce alone (random, so nearly unique) and
    # checks the wallet in Python; a (wallet, nonce) pair list would cost a scan on SQLite.
    __table_args__ = (PrimaryKeyConstraint("nonce", "wallet_id"),)

    wallet_id: Mapped[str] = mapped_column(ForeignKey("signer_wallets.id"))
    nonce: Mapped[str] = mapped_column(String(_MAX_NONCE_CHARS))
    expires_at: Mapped[int] = mapped_column(BigInteger, index=True)


class SignerSpend(SignerBase):
    """Money a signed intent moved: the rows the rolling daily limit sums."""

    __tablename__ = "signer_spends"
    # The edge of a window: a wallet's spends within one hour.
    __table_args__ = (Index("ix_signer_spends_wallet_at", "wallet_id", "at"),)

    id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer(), "sqlite"), primary_key=True, autoincrement=True
    )
    wallet_id: Mapped[str] = mapped_column(ForeignKey("signer_wallets.id"))
    chain_id: Mapped[int] = mapped_column(BigInteger)
    #: Lowercase, so that a differently cased address cannot escape the window's sum.
    token: Mapped[str] = mapped_column(String(42))
    amount_units: Mapped[int] = mapped_column(Units())
    recipient: Mapped[str] = mapped_column(String(42))
    at: Mapped[int] = mapped_column(BigInteger)
    intent_digest: Mapped[str] = mapped_column(String(66))


class SignerSpendTotal(SignerBase):
    """What a wallet spent of a token in one hour (see :data:`SPEND_BUCKET_SECONDS`).

    Kept by the same transactions that record the spends, under the wallet's lock.
    """

    __tablename__ = "signer_spend_totals"

    # The hour before the token, so that one range scan per wallet reads a window's totals.
    wallet_id: Mapped[str] = mapped_column(ForeignKey("signer_wallets.id"), primary_key=True)
    hour: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    chain_id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    token: Mapped[str] = mapped_column(String(42), primary_key=True)
    total_units: Mapped[int] = mapped_column(Units())


class SignerAuditRow(SignerBase):
    """One record of the hash-chained audit log (see :mod:`seiwallet.signer.audit`).

    Schema 2: the hashed JSON, its hash, and the columns queries need (``COLUMN_FIELDS``); the
    rest is read from the JSON. On SQLite ``seq`` is the table's rowid (``INTEGER PRIMARY KEY``),
    so an append writes two b-trees (the table, the wallet index), not three.
    """

    __tablename__ = "signer_audit"
    __table_args__ = (Index("ix_signer_audit_wallet", "wallet_id", "seq"),)

    seq: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer(), "sqlite"), primary_key=True, autoincrement=False
    )
    at: Mapped[int] = mapped_column(BigInteger)
    wallet_id: Mapped[str | None] = mapped_column(String(64))
    kind: Mapped[str] = mapped_column(String(32))
    decision: Mapped[str] = mapped_column(String(16))
    #: The hashed canonical JSON, exactly as hashed.
    entry: Mapped[str] = mapped_column(Text)
    #: ``sha256(previous record's hash ‖ entry)``.
    hash: Mapped[bytes] = mapped_column(LargeBinary(32))


def _table_of(model: type[SignerBase]) -> Table:
    table = model.__table__
    if not isinstance(table, Table):  # pragma: no cover - declarative always makes a Table
        raise TypeError(f"{model.__name__} has no table")
    return table


# The hot path uses Core statements on the tables: cheaper than ORM sessions, same schema.
_meta = _table_of(SignerMeta)
_wallets = _table_of(SignerWallet)
_authenticators = _table_of(SignerAuthenticator)
_nonces = _table_of(SignerUsedNonce)
_spends = _table_of(SignerSpend)
_totals = _table_of(SignerSpendTotal)
_audit = _table_of(SignerAuditRow)


# Buffered rows are tuples in these column orders (the tables' own, checked here), which the
# bulk inserts take as they are: no dict per row.
_NONCE_COLUMNS: Final = ("wallet_id", "nonce", "expires_at")
_SPEND_COLUMNS: Final = (
    "wallet_id", "chain_id", "token", "amount_units", "recipient", "at", "intent_digest"
)  # fmt: skip
_AUDIT_ROW_COLUMNS: Final = ("seq", "at", "wallet_id", "kind", "decision", "entry", "hash")
for _table, _columns in (
    (_nonces, _NONCE_COLUMNS),
    (_spends, ("id", *_SPEND_COLUMNS)),
    (_audit, _AUDIT_ROW_COLUMNS),
):
    if tuple(column.name for column in _table.columns) != _columns:  # pragma: no cover
        raise RuntimeError(f"{_table.name}: its columns moved; update the row tuples")


# --- records ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class WalletRecord:
    """A wallet as stored; ``sealed_key`` opens only with the master key."""

    id: str
    address: str
    public_key: bytes
    sealed_key: bytes = field(repr=False)
    created_at: int
    #: The policy document (parse it with :meth:`seiwallet.signer.policy.Policy.parse`).
    policy: Mapping[str, Any]
    policy_version: int


@dataclass(frozen=True, slots=True)
class AuthenticatorRecord:
    """An authenticator as stored, with its sign count as of this transaction."""

    id: str
    wallet_id: str
    kind: str
    credential_id: bytes
    public_key: bytes
    sign_count: int
    rp_id: str | None
    origins: tuple[str, ...]
    active_from: int
    revoked: bool
    label: str
    created_at: int

    def is_active(self, now: int) -> bool:
        """Whether it may approve at ``now``: not revoked and past its ``active_from``."""
        return not self.revoked and self.active_from <= now


def _wallet_record(row: Any) -> WalletRecord:
    return WalletRecord(
        id=row.id,
        address=row.address,
        public_key=bytes(row.public_key),
        sealed_key=bytes(row.sealed_key),
        created_at=row.created_at,
        policy=row.policy,
        policy_version=row.policy_version,
    )


def _authenticator_record(row: Any) -> AuthenticatorRecord:
    return AuthenticatorRecord(
        id=row.id,
        wallet_id=row.wallet_id,
        kind=row.kind,
        credential_id=bytes(row.credential_id),
        public_key=bytes(row.public_key),
        sign_count=row.sign_count,
        rp_id=row.rp_id,
        origins=tuple(row.origins or ()),
        active_from=row.active_from,
        revoked=bool(row.revoked),
        label=row.label,
        created_at=row.created_at,
    )


_AUDIT_COLUMNS: Final = (
    _audit.c.seq,
    _audit.c.at,
    _audit.c.wallet_id,
    _audit.c.kind,
    _audit.c.decision,
    _audit.c.entry,
    _audit.c.hash,
)


def _audit_record(row: Any) -> AuditRecord:
    return AuditRecord(
        seq=row.seq,
        at=row.at,
        wallet_id=row.wallet_id,
        kind=row.kind,
        decision=row.decision,
        entry_json=row.entry,
        hash=bytes(row.hash),
    )


# --- engine -----------------------------------------------------------------------------------


def create_signer_engine(
    url: str | URL,
    *,
    sqlite_synchronous: Literal["NORMAL", "FULL"] = "FULL",
    **engine_options: Any,
) -> Engine:
    """An engine for the signer's database: a SQLite file or PostgreSQL, set up as the store needs.

    ``sqlite_synchronous="FULL"`` syncs the WAL at every commit, so a signature the signer
    released is never followed, after a power cut, by the loss of the spend it recorded. With
    batches there is one commit per batch, not per intent.
    """
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise ConfigError(
            "signer database URL", "not a database URL: use sqlite:///PATH or postgresql://…"
        ) from None
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        database = parsed.database or ""
        if database in ("", ":memory:") or "mode=memory" in database:
            raise ConfigError(
                "signer database URL",
                "an in-memory SQLite database would be lost on restart, with every key: "
                "use sqlite:///PATH",
            )
        Path(database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(parsed.set(drivername="sqlite"), **engine_options)
        event.listen(engine, "connect", _sqlite_connect_listener(sqlite_synchronous))
        event.listen(engine, "begin", _sqlite_on_begin)
        return engine
    if backend == "postgresql":
        connect_args: dict[str, Any] = {
            "connect_timeout": POSTGRES_CONNECT_TIMEOUT_S,
            "application_name": "seiwallet-signer",
            **engine_options.pop("connect_args", {}),
        }
        engine_options.setdefault("pool_pre_ping", True)
        return create_engine(
            parsed.set(drivername="postgresql+psycopg"), connect_args=connect_args, **engine_options
        )
    raise ConfigError(
        "signer database URL",
        f"{parsed.drivername} is not supported: use sqlite:///PATH or postgresql://…",
    )


def _sqlite_connect_listener(synchronous: str) -> Any:
    if synchronous not in ("NORMAL", "FULL"):
        raise ValueError(f"sqlite_synchronous must be NORMAL or FULL, not {synchronous!r}")

    def on_connect(dbapi_connection: Any, _record: Any) -> None:
        # SQLAlchemy, not the sqlite3 module, emits BEGIN (see _sqlite_on_begin), so that the
        # write lock is taken at BEGIN and DDL runs inside transactions.
        dbapi_connection.isolation_level = None
        dbapi_connection.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}")
        # Takes effect only when the file is created (before WAL, before any table); an
        # existing store keeps its own. A batch dirties pages all over the nonce index: at 8 KiB
        # its commit writes fewer WAL frames (~25 % less commit CPU than 4 KiB, measured).
        dbapi_connection.execute(f"PRAGMA page_size = {SQLITE_PAGE_SIZE}")
        dbapi_connection.execute("PRAGMA journal_mode = WAL")
        dbapi_connection.execute(f"PRAGMA synchronous = {synchronous}")
        dbapi_connection.execute("PRAGMA foreign_keys = ON")

    return on_connect


def _sqlite_on_begin(connection: Connection) -> None:
    """BEGIN IMMEDIATE unless a read-only path asked for DEFERRED: the write lock is the lock."""
    mode = connection.get_execution_options().get(_SQLITE_BEGIN, "IMMEDIATE")
    if mode not in ("IMMEDIATE", "DEFERRED"):
        raise ValueError(f"unknown SQLite BEGIN mode {mode!r}")
    connection.exec_driver_sql(f"BEGIN {mode}")


# --- the store --------------------------------------------------------------------------------


class SignerStore:
    """The signer's storage; all writes go through :meth:`transaction` or
    :meth:`batch_transaction`, which lock the wallets they touch."""

    def __init__(self, engine: Engine, *, schema: str | None = None) -> None:
        self._backend = engine.dialect.name
        if self._backend == "sqlite":
            if schema is not None:
                raise ConfigError(
                    "signer database schema",
                    "a schema applies to PostgreSQL only; on SQLite the signer has its own file",
                )
            # Without our BEGIN IMMEDIATE two requests could both read the window before
            # either records its spend: refuse an engine that was not set up for the signer.
            if not event.contains(engine, "begin", _sqlite_on_begin):
                raise ValueError("build the signer's SQLite engine with create_signer_engine()")
            self.schema: str | None = None
            self._engine = engine
        elif self._backend == "postgresql":
            self.schema = schema or DEFAULT_POSTGRES_SCHEMA
            if not _SCHEMA_NAME.fullmatch(self.schema):
                raise ConfigError(
                    "signer database schema",
                    f"{self.schema!r} is not a plain lowercase identifier (a-z, 0-9, _)",
                )
            self._engine = engine.execution_options(schema_translate_map={None: self.schema})
        else:
            raise ConfigError("signer database URL", f"{self._backend} is not supported")
        self._statements = _Statements.build(engine.dialect, self.schema)
        for bulk, columns in (
            (self._statements.insert_nonces, _NONCE_COLUMNS),
            (self._statements.insert_spends, _SPEND_COLUMNS),
            (self._statements.insert_audit, _AUDIT_ROW_COLUMNS),
        ):
            if bulk.names != columns:  # pragma: no cover - the row tuples' order is the table's
                raise RuntimeError(f"{bulk.sql}: parameters {bulk.names} are not {columns}")
        # SQLite has one writer at a time: this process's writers queue here, woken as soon as
        # the previous one commits, instead of polling in SQLite's busy handler (which sleeps
        # up to 100 ms between tries). Other processes still wait on the database's own lock.
        # PostgreSQL locks rows: its transactions need no lock here.
        self._writer: AbstractContextManager[Any] = (
            threading.RLock() if self._backend == "sqlite" else nullcontext()
        )
        #: SQLite: wallet and authenticator records by their rows' contents (_SqliteReads).
        self._row_records: _RowRecords = {}

    @property
    def engine(self) -> Engine:
        """The engine the store runs on (on PostgreSQL, mapped to its schema)."""
        return self._engine

    # -- schema ---------------------------------------------------------------------------------

    def create_schema(self) -> None:
        """Create the tables if missing and record the schema version; refuse a newer database.

        Safe to run at every start and by several signers at once: on PostgreSQL under an
        advisory lock, on SQLite under the write lock.
        """
        with self._writer, self._engine.connect() as connection, connection.begin():
            if self._backend == "postgresql":
                connection.execute(select(func.pg_advisory_xact_lock(_SCHEMA_LOCK_KEY)))
                connection.execute(CreateSchema(str(self.schema), if_not_exists=True))
            found: int | None = None
            if inspect(connection).has_table(_meta.name, schema=self.schema):
                found = _read_version(connection)
                # Checked before anything is created: a newer signer's database stays untouched.
                if found is not None and found > SCHEMA_VERSION:
                    raise SignerSchemaMismatch(found, SCHEMA_VERSION)
            # Older versions are upgraded step by tested step, in this one transaction.
            upgrade_audit = found == 1
            if upgrade_audit:
                self._set_aside_schema_1_audit(connection)
            SignerBase.metadata.create_all(connection)
            if upgrade_audit:
                self._copy_schema_1_audit(connection)
            if found is None:
                connection.execute(
                    insert(_meta),
                    [
                        {"key": META_SCHEMA_VERSION, "value": str(SCHEMA_VERSION)},
                        {"key": META_AUDIT_HEAD, "value": GENESIS.encode()},
                    ],
                )
            elif found < SCHEMA_VERSION:
                connection.execute(
                    update(_meta)
                    .where(_meta.c.key == META_SCHEMA_VERSION)
                    .values(value=str(SCHEMA_VERSION))
                )

    def _set_aside_schema_1_audit(self, connection: Connection) -> None:
        """Schema 1 → 2, first step: check the old audit log, then make room for the new table.

        The old log is verified as schema 1 stored it (its copied columns and ``prev_hash``
        included) before anything changes: the upgrade drops those copies, so a record whose
        copies were tampered with must be reported now, not silently become clean. A log that
        does not verify is left exactly as it was and the signer does not start.

        SQLite: the table is renamed aside (and its index dropped, whose name the new table
        takes) so that the new one, with ``seq`` as its rowid, can be created and filled.
        PostgreSQL: the copies are dropped in place (``seq`` stays the primary key).
        """
        problem = _schema_1_audit_problem(connection)
        if problem is not None:
            seq, reason = problem
            raise AuditUpgradeRefused(
                f"the signer's audit log does not verify at record {seq} ({reason}): the store "
                "was not upgraded to schema 2 and nothing was changed; find out what happened "
                "to the log (restore it from a backup, or keep a copy of the database as "
                "evidence) before starting this signer"
            )
        if self._backend == "postgresql":
            # The schema is a checked plain identifier (see __init__); the names are our own.
            connection.exec_driver_sql(
                f"ALTER TABLE {self.schema}.signer_audit "
                + ", ".join(f"DROP COLUMN {name}" for name in _SCHEMA_1_AUDIT_COPIES)
            )
            return
        connection.exec_driver_sql("DROP INDEX ix_signer_audit_wallet")
        connection.exec_driver_sql("ALTER TABLE signer_audit RENAME TO signer_audit_schema_1")

    def _copy_schema_1_audit(self, connection: Connection) -> None:
        """Schema 1 → 2, last step (SQLite): the records, byte for byte, into the new table."""
        if self._backend == "postgresql":
            return
        names = ", ".join(_AUDIT_ROW_COLUMNS)
        connection.exec_driver_sql(
            f"INSERT INTO signer_audit ({names}) "  # noqa: S608 - our own column names
            f"SELECT {names} FROM signer_audit_schema_1 ORDER BY seq"
        )
        connection.exec_driver_sql("DROP TABLE signer_audit_schema_1")

    def schema_version(self) -> int | None:
        """The stored schema version, ``None`` if the store was never created."""
        with self._reading() as connection:
            if not inspect(connection).has_table(_meta.name, schema=self.schema):
                return None
            return _read_version(connection)

    # -- meta -----------------------------------------------------------------------------------

    def get_meta(self, key: str) -> str | None:
        """A value of ``signer_meta`` (e.g. the master key's check value), or ``None``."""
        with self._reading() as connection:
            return connection.execute(
                select(_meta.c.value).where(_meta.c.key == key)
            ).scalar_one_or_none()

    def set_meta(self, key: str, value: str) -> None:
        """Set a value of ``signer_meta``; the schema version and audit head are not settable."""
        if key in _RESERVED_META_KEYS:
            raise ValueError(f"{key!r} is kept by the store itself")
        upsert = (postgresql.insert if self._backend == "postgresql" else sqlite.insert)(_meta)
        statement = upsert.values(key=key, value=value).on_conflict_do_update(
            index_elements=[_meta.c.key], set_={"value": value}
        )
        with self._writer, self._engine.connect() as connection, connection.begin():
            connection.execute(statement)

    # -- transactions ---------------------------------------------------------------------------

    @contextmanager
    def transaction(self, wallet_id: str | None = None) -> Iterator[WalletTransaction]:
        """A unit of work on one wallet, whose lock it holds until it commits on leaving.

        ``wallet_id=None`` locks no wallet: for creating one
        (:meth:`WalletTransaction.insert_wallet`) or auditing a request naming no known wallet.
        An unknown ``wallet_id`` raises :class:`UnknownWallet`. An exception rolls all back.
        """
        with self.batch_transaction([] if wallet_id is None else [wallet_id]) as batch:
            yield batch.unbound() if wallet_id is None else batch.for_wallet(wallet_id)

    @contextmanager
    def batch_transaction(
        self, wallet_ids: Iterable[str], *, before_commit: Callable[[], None] | None = None
    ) -> Iterator[BatchTransaction]:
        """One transaction for many intents, of one wallet or many, committed on leaving.

        Locks every existing wallet of ``wallet_ids`` in sorted id order (no deadlocks), loads
        them and their authenticators in a few queries, and writes the batch's nonces, sign
        counts, spends and audit records with one statement per table at commit. Unknown ids are
        not an error here: :meth:`BatchTransaction.for_wallet` raises :class:`UnknownWallet` for
        them, so one bad intent refuses alone. An exception rolls the whole batch back.

        ``before_commit`` is called once everything is written, just before the commit (and
        its wait for the disk): nothing of the batch can change any more.
        """
        ids = sorted(set(wallet_ids))
        with self._writer, self._engine.connect() as connection, connection.begin():
            batch = BatchTransaction(self, connection, ids)
            try:
                yield batch
                batch._flush()
                batch._closed = True
                if before_commit is not None:
                    before_commit()
            finally:
                # The views refer to the batch and the batch to its views: without this cycle
                # a batch's thousands of objects go at once, not at the next garbage collection.
                batch._views.clear()
        batch._closed = True

    # -- nonces, audit --------------------------------------------------------------------------

    def prune_nonces(self, now: int) -> int:
        """Forget used nonces whose approvals expired (with a grace period); how many went.

        An expired approval is refused for its expiry, so its nonce no longer needs keeping.
        """
        cutoff = now - NONCE_PRUNE_GRACE_SECONDS
        with self._writer, self._engine.connect() as connection, connection.begin():
            result = connection.execute(sql_delete(_nonces).where(_nonces.c.expires_at < cutoff))
            return int(result.rowcount)

    def audit_head(self) -> AuditHead:
        """The last audit record's ``seq`` and hash, as the store keeps them."""
        with self._reading() as connection:
            return _read_head(connection, lock=False)

    def read_audit(
        self, *, wallet_id: str | None = None, after_seq: int = 0, limit: int = 100
    ) -> list[AuditRecord]:
        """Audit records after ``after_seq`` in order, all or one wallet's, at most ``limit``."""
        query = select(*_AUDIT_COLUMNS).where(_audit.c.seq > after_seq)
        if wallet_id is not None:
            query = query.where(_audit.c.wallet_id == wallet_id)
        with self._reading() as connection:
            rows = connection.execute(query.order_by(_audit.c.seq).limit(limit))
            return [_audit_record(row) for row in rows]

    def verify_audit(self, *, page: int = 1000) -> VerifyResult:
        """Check the whole audit chain against the stored head, reading one snapshot page by page.

        What ``seiwallet signer verify-audit`` reports: ok, or the first broken ``seq`` and why.
        """
        options: dict[str, Any] = {}
        if self._backend == "postgresql":
            # One snapshot for the head and every page, or a concurrent append looks like damage.
            options["isolation_level"] = "REPEATABLE READ"
        with self._reading(**options) as connection:
            head = _read_head(connection, lock=False)
            return verify_chain(_audit_pages(connection, page), head=head)

    @contextmanager
    def _reading(self, **options: Any) -> Iterator[Connection]:
        """A read-only transaction (DEFERRED on SQLite: it takes no write lock)."""
        with self._engine.connect() as connection:
            connection.execution_options(**{_SQLITE_BEGIN: "DEFERRED"}, **options)
            with connection.begin():
                yield connection


def _audit_pages(connection: Connection, page: int) -> Iterator[AuditRecord]:
    """Every audit record in ``seq`` order, fetched ``page`` at a time (keyset pagination)."""
    after = 0
    while True:
        query = select(*_AUDIT_COLUMNS).where(_audit.c.seq > after).order_by(_audit.c.seq)
        records = [_audit_record(row) for row in connection.execute(query.limit(page))]
        yield from records
        if len(records) < page:
            return
        after = records[-1].seq


#: Schema 1's copies of hashed fields in the audit table, which schema 2 reads from the JSON.
_SCHEMA_1_AUDIT_COPIES: Final = ("intent_digest", "rule", "reason", "approvals", "prev_hash")

# Schema 1's audit table, for checking it before the upgrade (its own metadata: never created).
_audit_schema_1 = Table(
    "signer_audit",
    MetaData(),
    Column("seq", BigInteger, primary_key=True),
    Column("at", BigInteger),
    Column("wallet_id", String(64)),
    Column("kind", String(32)),
    Column("intent_digest", String(66)),
    Column("decision", String(16)),
    Column("rule", String(64)),
    Column("reason", Text),
    Column("approvals", Text),
    Column("entry", Text),
    Column("prev_hash", LargeBinary(32)),
    Column("hash", LargeBinary(32)),
)


def _schema_1_audit_problem(connection: Connection, page: int = 1000) -> tuple[int, str] | None:
    """Where and why a schema 1 audit log does not verify, or ``None`` if it does.

    Everything schema 2 checks (:func:`verify_chain` against the head), and what schema 1 also
    stored: each ``prev_hash`` is the previous record's hash, and the copied digest, rule,
    reason and approvals equal the hashed JSON's.
    """
    table, columns = _audit_schema_1, _audit_schema_1.c
    head = _read_head(connection, lock=False)
    extras: list[tuple[int, str]] = []

    def records() -> Iterator[AuditRecord]:
        after, prev = 0, GENESIS.hash
        while True:
            rows = connection.execute(
                select(table).where(columns.seq > after).order_by(columns.seq).limit(page)
            ).all()
            for row in rows:
                record = _audit_record(row)
                problem = _schema_1_copies_problem(row, record, prev)
                if problem is not None:
                    extras.append((row.seq, problem))
                    return
                yield record
                prev = record.hash
            if len(rows) < page:
                return
            after = rows[-1].seq

    result = verify_chain(records(), head=head)
    # A copy that disagrees stops the records there: a break verify_chain found before it is
    # the first; one it reports at that record (the log "ends" there) is the copy's.
    if extras and (result.ok or (result.first_broken_seq or 0) >= extras[0][0]):
        return extras[0]
    if not result.ok:
        return result.first_broken_seq or 0, result.reason or "it does not verify"
    return None


def _schema_1_copies_problem(row: Any, record: AuditRecord, prev: bytes) -> str | None:
    """Why schema 1's copied columns of ``row`` disagree with its chain or JSON, if they do."""
    if bytes(row.prev_hash) != prev:
        return "its prev_hash is not the previous record's hash"
    body = record.body()
    try:
        approvals = json.loads(row.approvals) if isinstance(row.approvals, str) else row.approvals
    except ValueError:
        approvals = object()  # unreadable: differs from anything
    copies = {
        "intent_digest": row.intent_digest,
        "rule": row.rule,
        "reason": row.reason,
        "approvals": approvals,
    }
    mismatched = [name for name, value in copies.items() if value != body.get(name)]
    if mismatched:
        return f"its columns differ from its hashed entry: {', '.join(mismatched)}"
    return None


def _read_version(connection: Connection) -> int | None:
    value = connection.execute(
        select(_meta.c.value).where(_meta.c.key == META_SCHEMA_VERSION)
    ).scalar_one_or_none()
    return None if value is None else int(value)


def _read_head(connection: Connection, *, lock: bool) -> AuditHead:
    query = select(_meta.c.value).where(_meta.c.key == META_AUDIT_HEAD)
    if lock:
        # The audit head is the one row every signing transaction updates: the chain's
        # serialization point. FOR UPDATE makes the next transaction wait and then read the
        # head this one commits (SQLite: the write lock already serializes).
        query = query.with_for_update()
    value = connection.execute(query).scalar_one_or_none()
    if value is None:
        raise RuntimeError("the signer's store has no audit head: run create_schema() first")
    return AuditHead.decode(value)


# --- statements -------------------------------------------------------------------------------
# Built once per store: constructing a statement costs more than running it on SQLite. Lists of
# ids are one array parameter on PostgreSQL (``IN (SELECT unnest(:ids))``: one plan, prepared
# once) and an expanding IN on SQLite.


def _member(column: Any, name: str, postgres: bool) -> Any:
    """``column`` is one of the list bound as ``name``."""
    if postgres:
        # VARCHAR[] with no length: a ``::VARCHAR(64)[]`` cast of the text[] parameter would be
        # an array coercion PostgreSQL re-evaluates for every row it filters (measured: 14 ms
        # instead of 1 for 100 nonces against 2,400 rows).
        item = String() if isinstance(column.type, String) else column.type
        # IN (SELECT unnest(…)), not = ANY(…): a semi-join, hashed when the planner has no
        # statistics yet, where ANY would compare every row with every element.
        array = bindparam(name, type_=postgresql.ARRAY(item))
        return column.in_(select(func.unnest(array)).scalar_subquery())
    return column.in_(bindparam(name, expanding=True))


class _Bulk:
    """One batch write run as a single driver call, skipping SQLAlchemy's per-row processing.

    SQLite: a compiled statement and ``executemany`` (in-process, cheap per row). PostgreSQL:
    one statement over ``unnest`` of one array per column — one plan for the whole batch, where
    ``executemany`` would run a statement per row — with the arrays sent in binary
    (``%(name)b``), which spares psycopg escaping every element of text arrays.
    """

    def __init__(self, sql: str, names: Sequence[str], mode: Literal["many", "columns", "one"]):
        self.sql = sql
        self._names = tuple(names)
        self._mode = mode
        self._positional = False
        # A row's parameters as one tuple, picked in C: a Python loop per row cost more than
        # SQLite's insert of it. (itemgetter of one name gives the value, not a 1-tuple.)
        getter = operator.itemgetter(*self._names) if self._names else None
        self._row: Callable[[Mapping[str, Any]], tuple[Any, ...]] = (
            (lambda row: ())
            if getter is None
            else (lambda row: (getter(row),))
            if len(self._names) == 1
            else getter
        )

    @classmethod
    def sqlite(cls, statement: Any, dialect: Dialect, *, one: bool = False) -> _Bulk:
        compiled = statement.compile(dialect=dialect)
        bulk = cls(str(compiled), compiled.positiontup or (), "one" if one else "many")
        bulk._positional = True
        return bulk

    def run_rows(self, cursor: Any, rows: Sequence[tuple[Any, ...]]) -> None:
        """:meth:`run` for rows given as tuples in :attr:`names` order (no dict per row)."""
        if self._mode == "many":
            cursor.executemany(self.sql, rows)
        elif self._mode == "columns":
            columns = zip(*rows, strict=True)
            cursor.execute(
                self.sql, {n: list(c) for n, c in zip(self._names, columns, strict=True)}
            )
        else:
            self.run(cursor, [dict(zip(self._names, row, strict=True)) for row in rows])

    @property
    def names(self) -> tuple[str, ...]:
        """The parameters' names, in the order :meth:`run_rows` takes them."""
        return self._names

    def run(self, cursor: Any, rows: Sequence[Mapping[str, Any]]) -> None:
        """Run on a DBAPI cursor of the batch's connection (inside its transaction)."""
        if self._mode == "columns":
            cursor.execute(self.sql, {name: [row[name] for row in rows] for name in self._names})
        elif self._mode == "one":
            (row,) = rows
            # Positional names (SQLite's qmark) or named parameters (psycopg's pyformat).
            cursor.execute(self.sql, [row[n] for n in self._names] if self._positional else row)
        else:
            cursor.executemany(self.sql, list(map(self._row, rows)))


def _insert_all(table: Table, *, skip: tuple[str, ...] = ()) -> Any:
    return insert(table).values(
        {column.name: bindparam(column.name) for column in table.columns if column.name not in skip}
    )


def _unnest_insert(
    table: Table, schema: str, dialect: Dialect, skip: tuple[str, ...] = ()
) -> _Bulk:
    columns = [column for column in table.columns if column.name not in skip]
    names = [column.name for column in columns]
    arrays = ", ".join(
        f"%({column.name})b::{column.type.compile(dialect=dialect)}[]" for column in columns
    )
    # The schema is a checked identifier and the names are our own: nothing comes from input.
    sql = f"INSERT INTO {schema}.{table.name} ({', '.join(names)}) SELECT * FROM unnest({arrays})"  # noqa: S608
    return _Bulk(sql, names, "columns")


@dataclass(frozen=True)
class _Statements:
    """The statements a batch runs, for one store's database and schema."""

    lock_wallets: Any
    load_authenticators: Any
    find_nonces: Any
    window_totals: Any
    window_edge: Any
    hour_totals: Any
    write_head: _Bulk
    insert_nonces: _Bulk
    insert_spends: _Bulk
    insert_audit: _Bulk
    insert_totals: _Bulk
    set_sign_counts: _Bulk
    set_totals: _Bulk

    @classmethod
    def build(cls, dialect: Dialect, schema: str | None) -> _Statements:
        pg = dialect.name == "postgresql"
        totals_columns = (
            _totals.c.wallet_id,
            _totals.c.hour,
            _totals.c.chain_id,
            _totals.c.token,
            _totals.c.total_units,
        )
        queries = {
            "lock_wallets": select(_wallets)
            .where(_member(_wallets.c.id, "ids", pg))
            # PostgreSQL locks rows in ORDER BY order: every batch locks in the same order.
            .order_by(_wallets.c.id)
            .with_for_update(),
            "load_authenticators": select(_authenticators)
            .where(_member(_authenticators.c.wallet_id, "ids", pg))
            .order_by(_authenticators.c.created_at, _authenticators.c.id),
            "find_nonces": select(_nonces.c.wallet_id, _nonces.c.nonce).where(
                _member(_nonces.c.nonce, "nonces", pg)
            ),
            "window_totals": select(*totals_columns).where(
                _member(_totals.c.wallet_id, "ids", pg), _totals.c.hour > bindparam("after_hour")
            ),
            "window_edge": select(
                _spends.c.wallet_id, _spends.c.chain_id, _spends.c.token, _spends.c.amount_units
            ).where(
                _member(_spends.c.wallet_id, "ids", pg),
                _spends.c.at >= bindparam("since"),
                _spends.c.at < bindparam("until"),
            ),
            "hour_totals": select(*totals_columns).where(
                _member(_totals.c.wallet_id, "ids", pg), _member(_totals.c.hour, "hours", pg)
            ),
        }
        if not pg:
            return cls(
                **queries,
                write_head=_Bulk.sqlite(
                    update(_meta)
                    .where(_meta.c.key == bindparam("b_key"))
                    .values(value=bindparam("b_head")),
                    dialect,
                    one=True,
                ),
                insert_nonces=_Bulk.sqlite(_insert_all(_nonces), dialect),
                insert_spends=_Bulk.sqlite(_insert_all(_spends, skip=("id",)), dialect),
                insert_audit=_Bulk.sqlite(_insert_all(_audit), dialect),
                insert_totals=_Bulk.sqlite(_insert_all(_totals), dialect),
                set_sign_counts=_Bulk.sqlite(
                    update(_authenticators)
                    .where(_authenticators.c.id == bindparam("b_id"))
                    .values(sign_count=bindparam("b_count")),
                    dialect,
                ),
                set_totals=_Bulk.sqlite(
                    update(_totals)
                    .where(
                        _totals.c.wallet_id == bindparam("b_wallet_id"),
                        _totals.c.hour == bindparam("b_hour"),
                        _totals.c.chain_id == bindparam("b_chain_id"),
                        _totals.c.token == bindparam("b_token"),
                    )
                    .values(total_units=bindparam("b_total")),
                    dialect,
                ),
            )
        # The schema is a checked plain identifier (see SignerStore), safe to write into SQL.
        schema = schema or "public"
        return cls(
            **queries,
            write_head=_Bulk(
                f"UPDATE {schema}.signer_meta SET value = %(b_head)s WHERE key = %(b_key)s",  # noqa: S608
                ("b_head", "b_key"),
                "one",
            ),
            insert_nonces=_unnest_insert(_nonces, schema, dialect),
            insert_spends=_unnest_insert(_spends, schema, dialect, skip=("id",)),
            insert_audit=_unnest_insert(_audit, schema, dialect),
            insert_totals=_unnest_insert(_totals, schema, dialect),
            set_sign_counts=_Bulk(
                f"UPDATE {schema}.signer_authenticators AS a SET sign_count = v.b_count "  # noqa: S608
                "FROM unnest(%(b_id)b::varchar[], %(b_count)b::bigint[]) AS v(b_id, b_count) "
                "WHERE a.id = v.b_id",
                ("b_id", "b_count"),
                "columns",
            ),
            set_totals=_Bulk(
                f"UPDATE {schema}.signer_spend_totals AS t SET total_units = v.b_total "  # noqa: S608
                "FROM unnest(%(b_wallet_id)b::varchar[], %(b_hour)b::bigint[], "
                "%(b_chain_id)b::bigint[], %(b_token)b::varchar[], %(b_total)b::numeric[]) "
                "AS v(b_wallet_id, b_hour, b_chain_id, b_token, b_total) "
                "WHERE t.wallet_id = v.b_wallet_id AND t.hour = v.b_hour "
                "AND t.chain_id = v.b_chain_id AND t.token = v.b_token",
                ("b_wallet_id", "b_hour", "b_chain_id", "b_token", "b_total"),
                "columns",
            ),
        )


# The batch's reads on SQLite, straight through the driver: SQLAlchemy's work per statement
# (building, caching, expanding IN lists, result processing) cost ~7 µs per signed intent,
# several times the queries themselves. Same columns, same conversions as the SQLAlchemy types
# (JSON text, Units digits, 0/1 booleans), so the records built are the same; the store's tests
# run every read on both databases, and PostgreSQL keeps the SQLAlchemy statements.
class _WalletRow(NamedTuple):
    id: str
    address: str
    public_key: bytes
    sealed_key: bytes
    created_at: int
    policy: Any
    policy_version: int


class _AuthenticatorRow(NamedTuple):
    id: str
    wallet_id: str
    kind: str
    credential_id: bytes
    public_key: bytes
    sign_count: int
    rp_id: str | None
    origins: Any
    active_from: int
    revoked: bool
    label: str
    created_at: int


class _NonceRow(NamedTuple):
    wallet_id: str
    nonce: str


class _TotalRow(NamedTuple):
    wallet_id: str
    hour: int
    chain_id: int
    token: str
    total_units: int | None


class _EdgeRow(NamedTuple):
    wallet_id: str
    chain_id: int
    token: str
    amount_units: int | None


# Our own table and column names; only "?" marks are put in (``{ids}``, ``{hours}``).
_SQLITE_READS: Final = {
    "lock_wallets": "SELECT id, address, public_key, sealed_key, created_at, policy, "
    "policy_version FROM signer_wallets WHERE id IN ({ids}) ORDER BY id",
    "load_authenticators": "SELECT id, wallet_id, kind, credential_id, public_key, sign_count, "
    "rp_id, origins, active_from, revoked, label, created_at FROM signer_authenticators "
    "WHERE wallet_id IN ({ids}) ORDER BY created_at, id",
    "find_nonces": "SELECT wallet_id, nonce FROM signer_used_nonces WHERE nonce IN ({ids})",
    "window_totals": "SELECT wallet_id, hour, chain_id, token, total_units "
    "FROM signer_spend_totals WHERE wallet_id IN ({ids}) AND hour > ?",
    "hour_totals": "SELECT wallet_id, hour, chain_id, token, total_units "
    "FROM signer_spend_totals WHERE wallet_id IN ({ids}) AND hour IN ({hours})",
    "window_edge": "SELECT wallet_id, chain_id, token, amount_units FROM signer_spends "
    "WHERE wallet_id IN ({ids}) AND at >= ? AND at < ?",
}


@functools.lru_cache(maxsize=256)
def _sqlite_read(name: str, ids: int, hours: int = 0) -> str:
    return _SQLITE_READS[name].format(ids=",".join("?" * ids), hours=",".join("?" * hours))


def _json_column(value: str | None) -> Any:
    return None if value is None else json.loads(value)


#: Records built from SQLite rows, by the row's exact contents (see _SqliteReads.records).
_RowRecords = dict[tuple[Any, ...], Any]
_ROW_RECORDS_KEPT: Final = 65_536


class _SqliteReads:
    """The few reads a batch makes, as plain SQLite statements on the batch's connection."""

    def __init__(self, connection: Connection, built: _RowRecords) -> None:
        self._driver: Any = connection.connection.driver_connection
        self._built = built

    def records(self, name: str, ids: Sequence[str]) -> list[Any]:
        """The wallets (``lock_wallets``) or authenticators (``load_authenticators``) of
        ``ids`` as :class:`WalletRecord` / :class:`AuthenticatorRecord`, in the read's order.

        A record is built once per distinct row and reused while the row stays the same: the
        key is the row's whole contents (every column), so a changed row (policy, sign count,
        revocation…) is a new key and a new record, never the old one. Building them cost more
        per batch (a policy's JSON, a frozen dataclass per row) than reading them. The records
        are frozen and shared read-only.
        """
        build: Callable[[Any], Any]
        if name == "lock_wallets":
            build = _wallet_from_sqlite
        elif name == "load_authenticators":
            build = _authenticator_from_sqlite
        else:  # pragma: no cover - only those two are records
            raise KeyError(name)
        built, found = self._built, []
        for row in self._driver.execute(_sqlite_read(name, len(ids)), ids):
            record = built.get(row)
            if record is None:
                if len(built) >= _ROW_RECORDS_KEPT:
                    built.clear()
                record = built[row] = build(row)
            found.append(record)
        return found

    def read(self, name: str, params: Mapping[str, Any]) -> list[Any]:
        """Rows of the other reads (wallets and authenticators come from :meth:`records`)."""
        execute = self._driver.execute
        if name == "find_nonces":
            nonces = params["nonces"]
            return [_NonceRow(*row) for row in execute(_sqlite_read(name, len(nonces)), nonces)]
        if name == "window_totals":
            ids = params["ids"]
            rows = execute(_sqlite_read(name, len(ids)), [*ids, params["after_hour"]])
            return [_TotalRow(r[0], r[1], r[2], r[3], _units_column(r[4])) for r in rows]
        if name == "hour_totals":
            ids, hours = params["ids"], params["hours"]
            rows = execute(_sqlite_read(name, len(ids), len(hours)), [*ids, *hours])
            return [_TotalRow(r[0], r[1], r[2], r[3], _units_column(r[4])) for r in rows]
        if name == "window_edge":
            ids = params["ids"]
            rows = execute(_sqlite_read(name, len(ids)), [*ids, params["since"], params["until"]])
            return [_EdgeRow(r[0], r[1], r[2], _units_column(r[3])) for r in rows]
        raise KeyError(name)  # pragma: no cover - every read of a batch is above

    def audit_head(self) -> AuditHead:
        """The audit head (the write lock, taken at BEGIN, already serializes writers)."""
        row = self._driver.execute(
            "SELECT value FROM signer_meta WHERE key = ?", (META_AUDIT_HEAD,)
        ).fetchone()
        if row is None:
            raise RuntimeError("the signer's store has no audit head: run create_schema() first")
        return AuditHead.decode(row[0])


def _units_column(value: Any) -> int | None:
    return None if value is None else int(value)


def _wallet_from_sqlite(row: tuple[Any, ...]) -> WalletRecord:
    return _wallet_record(
        _WalletRow(row[0], row[1], row[2], row[3], row[4], _json_column(row[5]), row[6])
    )


def _authenticator_from_sqlite(row: tuple[Any, ...]) -> AuthenticatorRecord:
    return _authenticator_record(
        _AuthenticatorRow(
            row[0],
            row[1],
            row[2],
            row[3],
            row[4],
            row[5],
            row[6],
            _json_column(row[7]),
            row[8],
            bool(row[9]),
            row[10],
            row[11],
        )
    )


# --- units of work ----------------------------------------------------------------------------

_TotalKey = tuple[str, int, int, str]  # wallet_id, hour, chain_id, token


@dataclass
class _WalletState:
    """What a transaction knows of one locked wallet: valid because no one else can change it."""

    record: WalletRecord
    authenticators: dict[str, AuthenticatorRecord]
    #: since → {(chain_id, token): committed spends from since on}.
    windows: dict[int, dict[tuple[int, str], int]] = field(default_factory=dict)
    #: (chain_id, token) → [sum, earliest at] of the spends this transaction records.
    pending_spent: dict[tuple[int, str], list[int]] = field(default_factory=dict)
    pending_spends: list[tuple[int, str, int, int]] = field(default_factory=list)
    #: (now, ids of the authenticators active then), until the authenticators change.
    active: tuple[int, frozenset[str]] | None = None


class BatchTransaction:
    """One database transaction holding the locks of a batch's wallets; see
    :meth:`SignerStore.batch_transaction`. Use it from one thread."""

    def __init__(self, store: SignerStore, connection: Connection, wallet_ids: Sequence[str]):
        self._connection = connection
        self._sql = store._statements
        # Base units as the driver takes them: exact integers (PostgreSQL), digits (SQLite).
        self._units: Callable[[int], Any] = int if store._backend == "postgresql" else str
        self._closed = False
        self._states: dict[str, _WalletState] = {}
        self._views: dict[str, WalletTransaction] = {}
        self._used_nonces: set[tuple[str, str]] = set()
        self._unused_nonces: set[tuple[str, str]] = set()
        #: Rows to insert, as tuples in _NONCE_COLUMNS and _SPEND_COLUMNS order.
        self._pending_nonces: list[tuple[str, str, int]] = []
        self._pending_counts: dict[str, int] = {}
        self._pending_spends: list[tuple[Any, ...]] = []
        self._pending_audit: list[AuditEntry] = []
        #: Hourly totals read in this transaction (None: known to have no row yet).
        self._known_totals: dict[_TotalKey, int | None] = {}
        self._audit_rows: list[AuditRow] = []
        #: After commit: the audit head this transaction left.
        self.audit_head: AuditHead | None = None
        self._raw = (
            _SqliteReads(connection, store._row_records) if store._backend == "sqlite" else None
        )
        self._lock(wallet_ids)

    @property
    def audit_records(self) -> list[AuditRecord]:
        """After commit: the audit records this transaction appended, linked, in order."""
        return [AuditRecord(*row) for row in self._audit_rows]

    @property
    def wallet_ids(self) -> tuple[str, ...]:
        """The batch's wallets that exist (and are locked), in lock order."""
        return tuple(self._states)

    def for_wallet(self, wallet_id: str) -> WalletTransaction:
        """The unit of work of one of the batch's wallets; :class:`UnknownWallet` if none."""
        view = self._views.get(wallet_id)
        if view is None:
            state = self._states.get(wallet_id)
            if state is None:
                raise UnknownWallet(wallet_id)
            view = self._views[wallet_id] = WalletTransaction(self, wallet_id, state)
        return view

    def unbound(self) -> WalletTransaction:
        """A unit of work bound to no wallet yet: for ``insert_wallet`` or wallet-less audits."""
        return WalletTransaction(self, None)

    def prefetch_nonces(self, pairs: Iterable[tuple[str, str]]) -> None:
        """Look up many ``(wallet_id, nonce)`` pairs in one query before consuming them.

        The answers stay true until commit: only a transaction holding a wallet's lock adds
        nonces of that wallet, and this one holds them.
        """
        self._check_open()
        wanted = {pair for pair in pairs if pair[0] in self._states}
        wanted -= self._used_nonces | self._unused_nonces
        if not wanted:
            return
        nonces = sorted({nonce for _, nonce in wanted})
        for chunk in _chunks(nonces):
            for row in self._read("find_nonces", {"nonces": chunk}):
                if (row.wallet_id, row.nonce) in wanted:
                    self._used_nonces.add((row.wallet_id, row.nonce))
        self._unused_nonces.update(wanted - self._used_nonces)

    def append_audit(self, entry: AuditEntry) -> None:
        """Queue ``entry`` for the audit log; it is numbered and linked at commit."""
        self._check_open()
        self._pending_audit.append(entry)

    # -- per-wallet operations, reached through WalletTransaction --------------------------------

    def _state(self, wallet_id: str | None) -> _WalletState:
        if self._closed:
            self._check_open()
        state = self._states.get(wallet_id) if wallet_id is not None else None
        if state is None:
            if wallet_id is None:
                raise RuntimeError("this unit of work has no wallet: insert_wallet() first")
            raise UnknownWallet(wallet_id)
        return state

    def _consume_nonce(self, wallet_id: str, nonce: str, expires_at: int) -> None:
        self._state(wallet_id)
        if not isinstance(nonce, str) or not 0 < len(nonce) <= _MAX_NONCE_CHARS:
            raise ApprovalRefused(f"its nonce is not 1 to {_MAX_NONCE_CHARS} characters")
        key = (wallet_id, nonce)
        if key in self._used_nonces:
            raise ApprovalRefused(REPLAYED)
        if key not in self._unused_nonces:
            self.prefetch_nonces([key])
            if key in self._used_nonces:
                raise ApprovalRefused(REPLAYED)
        self._unused_nonces.discard(key)
        # Used from now on, also within this batch: a second intent with the same approval fails.
        self._used_nonces.add(key)
        self._pending_nonces.append((wallet_id, nonce, int(expires_at)))

    def _consume_fresh_nonces(self, wallet_id: str, nonces: Sequence[tuple[str, int]]) -> bool:
        """Consume ``(nonce, expires_at)`` pairs if every one is known unused (prefetched, not
        yet consumed, distinct); else change nothing and return ``False``.

        What :meth:`_consume_nonce` does for each, for the common case only: anything it would
        refuse or look up is left to it (the caller takes the long way).
        """
        self._state(wallet_id)
        unused, used = self._unused_nonces, self._used_nonces
        if len(nonces) == 1:  # one approval, as nearly every request has
            ((nonce, expires_at),) = nonces
            key = (wallet_id, nonce)
            if (
                type(nonce) is not str
                or not 0 < len(nonce) <= _MAX_NONCE_CHARS
                or key not in unused
                or key in used
            ):
                return False
            unused.discard(key)
            used.add(key)
            self._pending_nonces.append((wallet_id, nonce, int(expires_at)))
            return True
        keys = []
        for nonce, _expires_at in nonces:
            key = (wallet_id, nonce)
            if (
                type(nonce) is not str
                or not 0 < len(nonce) <= _MAX_NONCE_CHARS
                or key not in unused
                or key in used
                or key in keys
            ):
                return False
            keys.append(key)
        pending = self._pending_nonces
        for key, (nonce, expires_at) in zip(keys, nonces, strict=True):
            unused.discard(key)
            used.add(key)
            pending.append((wallet_id, nonce, int(expires_at)))
        return True

    def _set_sign_count(self, wallet_id: str, authenticator_id: str, count: int) -> None:
        state = self._state(wallet_id)
        current = state.authenticators.get(authenticator_id)
        if current is None:
            raise UnknownAuthenticator(wallet_id, authenticator_id)
        if type(count) is not int or count < current.sign_count:
            # A counter going back means a cloned authenticator (or a bug): never store it.
            raise ApprovalRefused(
                f"sign counter went back from {current.sign_count} to {count}",
                authenticator_id=authenticator_id,
            )
        state.authenticators[authenticator_id] = _with_sign_count(current, count)
        self._pending_counts[authenticator_id] = count

    def _spent_since(self, wallet_id: str, chain_id: int, token: str, since: int) -> int:
        state = self._state(wallet_id)
        token = token.lower()
        window = state.windows.get(since)
        if window is None:
            self._load_windows(since)
            window = state.windows[since]
        committed = window.get((chain_id, token), 0)
        pending = state.pending_spent.get((chain_id, token))
        if pending is None:
            return committed
        total, earliest = pending
        if since <= earliest:
            return committed + total
        # A window starting after some of this batch's own spends (not the usual case).
        return committed + sum(
            amount
            for spent_chain, spent_token, at, amount in state.pending_spends
            if spent_chain == chain_id and spent_token == token and at >= since
        )

    def _load_windows(self, since: int) -> None:
        """Read, for every wallet of the batch at once, the committed spends from ``since`` on.

        Whole hours after ``since``'s hour come from the hourly totals; the hour ``since`` falls
        in, from its spends at or after ``since``. Sums are exact Python integers: money.
        """
        missing = [
            wallet_id for wallet_id, state in self._states.items() if since not in state.windows
        ]
        windows: dict[str, dict[tuple[int, str], int]] = {wallet_id: {} for wallet_id in missing}
        since_hour = since // SPEND_BUCKET_SECONDS
        for chunk in _chunks(missing):
            totals = self._read("window_totals", {"ids": chunk, "after_hour": since_hour})
            for row in totals:
                key = (row.chain_id, row.token)
                window = windows[row.wallet_id]
                window[key] = window.get(key, 0) + row.total_units
                self._known_totals[(row.wallet_id, row.hour, row.chain_id, row.token)] = (
                    row.total_units
                )
            edge = {
                "ids": chunk,
                "since": since,
                "until": (since_hour + 1) * SPEND_BUCKET_SECONDS,
            }
            for spend in self._read("window_edge", edge):
                key = (spend.chain_id, spend.token)
                window = windows[spend.wallet_id]
                window[key] = window.get(key, 0) + spend.amount_units
        for wallet_id, window in windows.items():
            self._states[wallet_id].windows[since] = window

    def _record_spend(  # noqa: PLR0917 - positional: once per signed transfer
        self,
        wallet_id: str,
        chain_id: int,
        token: str,
        amount_units: int,
        recipient: str,
        at: int,
        intent_digest: str,
    ) -> None:
        state = self._state(wallet_id)
        if type(amount_units) is not int or not 0 <= amount_units <= _MAX_UNITS:
            raise ValueError(f"amount must be base units from 0 to 2**256-1, not {amount_units!r}")
        token = token.lower()
        self._pending_spends.append(
            (wallet_id, chain_id, token, self._units(amount_units), recipient, at, intent_digest)
        )
        state.pending_spends.append((chain_id, token, at, amount_units))
        pending = state.pending_spent.get((chain_id, token))
        if pending is None:
            state.pending_spent[chain_id, token] = [amount_units, at]
        else:
            pending[0] += amount_units
            pending[1] = min(pending[1], at)

    def _insert_wallet(self, record: WalletRecord) -> None:
        self._check_open()
        self._connection.execute(
            insert(_wallets).values(
                id=record.id,
                address=record.address,
                public_key=record.public_key,
                sealed_key=record.sealed_key,
                created_at=record.created_at,
                policy=dict(record.policy),
                policy_version=record.policy_version,
            )
        )
        # A row this transaction inserted is invisible to others until commit: it is ours.
        self._states[record.id] = _WalletState(record, {})

    def _insert_authenticator(self, record: AuthenticatorRecord) -> None:
        state = self._state(record.wallet_id)
        self._connection.execute(
            insert(_authenticators).values(
                id=record.id,
                wallet_id=record.wallet_id,
                kind=record.kind,
                credential_id=record.credential_id,
                public_key=record.public_key,
                sign_count=record.sign_count,
                rp_id=record.rp_id,
                origins=list(record.origins),
                active_from=record.active_from,
                revoked=record.revoked,
                label=record.label,
                created_at=record.created_at,
            )
        )
        state.authenticators[record.id] = record
        state.active = None

    def _revoke_authenticator(self, wallet_id: str, authenticator_id: str) -> AuthenticatorRecord:
        state = self._state(wallet_id)
        current = state.authenticators.get(authenticator_id)
        if current is None:
            raise UnknownAuthenticator(wallet_id, authenticator_id)
        self._connection.execute(
            update(_authenticators)
            .where(_authenticators.c.id == authenticator_id)
            .values(revoked=True)
        )
        revoked = state.authenticators[authenticator_id] = replace(current, revoked=True)
        state.active = None
        return revoked

    def _set_policy(self, wallet_id: str, policy: Mapping[str, Any], expected_version: int) -> int:
        state = self._state(wallet_id)
        current = state.record.policy_version
        # The wallet is locked, so its version cannot move under us; the check is against the
        # version the change was approved under, which may be older than the stored one.
        if current != expected_version:
            raise PolicyVersionConflict(wallet_id, expected_version, current)
        new_version = current + 1
        result = self._connection.execute(
            update(_wallets)
            .where(_wallets.c.id == wallet_id, _wallets.c.policy_version == current)
            .values(policy=dict(policy), policy_version=new_version)
        )
        if result.rowcount != 1:  # pragma: no cover - only if someone bypassed the lock
            raise PolicyVersionConflict(wallet_id, expected_version, -1)
        state.record = replace(state.record, policy=dict(policy), policy_version=new_version)
        return new_version

    # -- locking and commit ----------------------------------------------------------------------

    def _lock(self, wallet_ids: Sequence[str]) -> None:
        """Lock and load the wallets (sorted id order, chunk by chunk) and their authenticators."""
        raw = self._raw
        for chunk in _chunks(wallet_ids):
            if raw is not None:
                for wallet in raw.records("lock_wallets", chunk):
                    self._states[wallet.id] = _WalletState(wallet, {})
                continue
            for row in self._read("lock_wallets", {"ids": chunk}):
                self._states[row.id] = _WalletState(_wallet_record(row), {})
        for chunk in _chunks(list(self._states)):
            if raw is not None:
                for record in raw.records("load_authenticators", chunk):
                    self._states[record.wallet_id].authenticators[record.id] = record
                continue
            for row in self._read("load_authenticators", {"ids": chunk}):
                self._states[row.wallet_id].authenticators[row.id] = _authenticator_record(row)

    def _read(self, name: str, params: Mapping[str, Any]) -> Sequence[Any]:
        """The rows of one of the batch's reads (a statement of _Statements, by name)."""
        if self._raw is not None:
            return self._raw.read(name, params)
        return self._connection.execute(getattr(self._sql, name), params).all()

    def _flush(self) -> None:
        """Write the buffered rows: one statement per table, the audit head last.

        Reads first (hourly totals not yet known, then the audit head under its lock), then all
        writes; on PostgreSQL the writes go in one pipeline, so the batch's commit costs a few
        round trips whatever its size.
        """
        self._check_open()
        sql = self._sql
        writes: list[tuple[_Bulk, Sequence[Any]]] = []
        if self._pending_counts:
            counts = self._pending_counts.items()
            writes.append((sql.set_sign_counts, [{"b_id": i, "b_count": n} for i, n in counts]))
        if self._pending_nonces:
            writes.append((sql.insert_nonces, self._pending_nonces))
        if self._pending_spends:
            writes.append((sql.insert_spends, self._pending_spends))
            writes.extend(self._total_writes())
        rows: list[AuditRow] = []
        new_head: AuditHead | None = None
        if self._pending_audit:
            # Last, so the lock every signing transaction shares is held the shortest time.
            if self._raw is not None:
                head = self._raw.audit_head()
            else:
                head = _read_head(self._connection, lock=True)
            rows, new_head = seal_rows(self._pending_audit, head)
            writes.append((sql.insert_audit, rows))
            writes.append(
                (sql.write_head, [{"b_head": new_head.encode(), "b_key": META_AUDIT_HEAD}])
            )
        self._run_writes(writes)
        self._audit_rows, self.audit_head = rows, new_head

    def _run_writes(self, writes: Sequence[tuple[_Bulk, Sequence[Any]]]) -> None:
        """Run bulk writes; rows are tuples (in the bulk's column order) or mappings."""
        if not writes:
            return
        # The driver's own connection, inside the transaction SQLAlchemy began.
        driver = self._connection.connection.driver_connection
        pipeline = getattr(driver, "pipeline", None) if _pipeline_supported() else None
        with pipeline() if pipeline is not None else nullcontext():
            cursor = self._connection.connection.cursor()
            try:
                for bulk, rows in writes:
                    if rows and type(rows[0]) is tuple:
                        bulk.run_rows(cursor, rows)
                    else:
                        bulk.run(cursor, rows)
            finally:
                cursor.close()

    def _total_writes(self) -> list[tuple[_Bulk, Sequence[Mapping[str, Any]]]]:
        """The writes adding the batch's spends to their hourly totals (under the locks)."""
        added: dict[_TotalKey, int] = {}
        for wallet_id, state in self._states.items():
            for chain_id, token, at, amount in state.pending_spends:
                key = (wallet_id, at // SPEND_BUCKET_SECONDS, chain_id, token)
                added[key] = added.get(key, 0) + amount
        unknown = [key for key in added if key not in self._known_totals]
        if unknown:
            wallets = sorted({key[0] for key in unknown})
            hours = sorted({key[1] for key in unknown})
            for chunk in _chunks(wallets):
                rows = self._read("hour_totals", {"ids": chunk, "hours": hours})
                for row in rows:
                    total_key = (row.wallet_id, row.hour, row.chain_id, row.token)
                    self._known_totals[total_key] = row.total_units
        inserts: list[dict[str, Any]] = []
        updates: list[dict[str, Any]] = []
        for key, amount in added.items():
            wallet_id, hour, chain_id, token = key
            known = self._known_totals.get(key)
            # Money: exact integers; the total is read and rewritten under the wallet's lock.
            total = amount + (known or 0)
            if known is None:
                inserts.append(
                    {
                        "wallet_id": wallet_id,
                        "hour": hour,
                        "chain_id": chain_id,
                        "token": token,
                        "total_units": self._units(total),
                    }
                )
            else:
                updates.append(
                    {
                        "b_wallet_id": wallet_id,
                        "b_hour": hour,
                        "b_chain_id": chain_id,
                        "b_token": token,
                        "b_total": self._units(total),
                    }
                )
            self._known_totals[key] = total
        writes: list[tuple[_Bulk, Sequence[Mapping[str, Any]]]] = []
        if inserts:
            writes.append((self._sql.insert_totals, inserts))
        if updates:
            writes.append((self._sql.set_totals, updates))
        return writes

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError("this transaction has ended; open another")


class WalletTransaction:
    """The unit of work of one locked wallet (or of none yet), inside a :class:`BatchTransaction`.

    Reads reflect this transaction's own writes (sign counts, spends, nonces); writes reach the
    database at commit, all or nothing.
    """

    def __init__(
        self, batch: BatchTransaction, wallet_id: str | None, state: _WalletState | None = None
    ) -> None:
        self.batch = batch
        self.wallet_id = wallet_id
        self._known_state = state

    def _state(self) -> _WalletState:
        # The batch's look-up (which refuses a closed batch or a missing wallet), short-cut for
        # a view made by for_wallet() while its batch is open: the state object never changes.
        state = self._known_state
        if state is None or self.batch._closed:
            return self.batch._state(self.wallet_id)
        return state

    def wallet(self) -> WalletRecord:
        """The locked wallet."""
        return self._state().record

    def authenticators(self) -> tuple[AuthenticatorRecord, ...]:
        """The wallet's authenticators, revoked ones included, oldest first."""
        return tuple(self._state().authenticators.values())

    def authenticator(self, authenticator_id: str) -> AuthenticatorRecord | None:
        """One of the wallet's authenticators (revoked ones included), ``None`` if foreign."""
        return self._state().authenticators.get(authenticator_id)

    def active_authenticator_ids(self, now: int) -> frozenset[str]:
        """Ids of the wallet's authenticators that may approve at ``now``."""
        state = self._state()
        cached = state.active
        if cached is not None and cached[0] == now:
            return cached[1]
        active = frozenset(r.id for r in state.authenticators.values() if r.is_active(now))
        state.active = (now, active)  # forgotten when an authenticator is added or revoked
        return active

    def consume_nonce(self, nonce: str, expires_at: int) -> None:
        """Mark an approval's nonce used; :class:`ApprovalRefused` (replayed) if it was.

        The caller checks the approval's expiry; ``expires_at`` says when the nonce may be pruned.
        """
        self.batch._consume_nonce(self._bound(), nonce, expires_at)

    def consume_fresh_nonces(self, nonces: Sequence[tuple[str, int]]) -> bool:
        """Consume approvals' ``(nonce, expires_at)`` at once if each is known unused in this
        batch (see :meth:`BatchTransaction.prefetch_nonces`); else change nothing and return
        ``False``, and let :meth:`consume_nonce` decide each (and name a replay)."""
        return self.batch._consume_fresh_nonces(self._bound(), nonces)

    def set_sign_count(self, authenticator_id: str, count: int) -> None:
        """Store an authenticator's new sign count; a count going back is refused."""
        self.batch._set_sign_count(self._bound(), authenticator_id, count)

    def spent_since(self, chain_id: int, token: str, since: int) -> int:
        """Base units of ``token`` the wallet spent from ``since`` (unix time) on, this
        transaction's own spends included."""
        return self.batch._spent_since(self._bound(), chain_id, token, since)

    def record_spend(
        self,
        *,
        chain_id: int,
        token: str,
        amount_units: int,
        recipient: str,
        at: int,
        intent_digest: str,
    ) -> None:
        """Record money a signed intent moves; it counts against the daily limit from now on."""
        self.batch._record_spend(
            self._bound(), chain_id, token, amount_units, recipient, at, intent_digest
        )

    def insert_wallet(
        self,
        *,
        wallet_id: str,
        address: str,
        public_key: bytes,
        sealed_key: bytes,
        created_at: int,
        policy: Mapping[str, Any] | None = None,
    ) -> WalletRecord:
        """Create a wallet (at policy version 1) and bind this unit of work to it."""
        if self.wallet_id is not None:
            raise RuntimeError("this unit of work already has a wallet")
        record = WalletRecord(
            id=wallet_id,
            address=address,
            public_key=public_key,
            sealed_key=sealed_key,
            created_at=created_at,
            policy=dict(policy or {}),
            policy_version=1,
        )
        self.batch._insert_wallet(record)
        self.wallet_id = wallet_id
        return record

    def insert_authenticator(
        self,
        *,
        authenticator_id: str,
        kind: str,
        credential_id: bytes,
        public_key: bytes,
        created_at: int,
        active_from: int,
        sign_count: int = 0,
        rp_id: str | None = None,
        origins: Sequence[str] = (),
        label: str = "",
    ) -> AuthenticatorRecord:
        """Add an authenticator to the wallet; it may approve from ``active_from`` on."""
        record = AuthenticatorRecord(
            id=authenticator_id,
            wallet_id=self._bound(),
            kind=kind,
            credential_id=credential_id,
            public_key=public_key,
            sign_count=sign_count,
            rp_id=rp_id,
            origins=tuple(origins),
            active_from=active_from,
            revoked=False,
            label=label,
            created_at=created_at,
        )
        self.batch._insert_authenticator(record)
        return record

    def revoke_authenticator(self, authenticator_id: str) -> AuthenticatorRecord:
        """Revoke an authenticator for good: it can approve nothing from this commit on."""
        return self.batch._revoke_authenticator(self._bound(), authenticator_id)

    def set_policy(self, policy: Mapping[str, Any], expected_version: int) -> int:
        """Replace the policy if it is still at ``expected_version`` (the version the change
        was approved under); the new version, or :class:`PolicyVersionConflict`."""
        return self.batch._set_policy(self._bound(), policy, expected_version)

    def append_audit(self, entry: AuditEntry) -> None:
        """Queue an audit entry (numbered and linked at commit); it defaults to this wallet."""
        if entry.wallet_id is None and self.wallet_id is not None:
            entry = AuditEntry(
                kind=entry.kind,
                decision=entry.decision,
                at=entry.at,
                wallet_id=self.wallet_id,
                intent_digest=entry.intent_digest,
                rule=entry.rule,
                reason=entry.reason,
                approvals=entry.approvals,
                details=entry.details,
            )
        self.batch.append_audit(entry)

    def _bound(self) -> str:
        if self.wallet_id is None:
            raise RuntimeError("this unit of work has no wallet: insert_wallet() first")
        return self.wallet_id


@functools.cache
def _pipeline_supported() -> bool:
    """Whether psycopg's libpq can pipeline (14+; the wheels bundle a newer one)."""
    try:
        from psycopg import Pipeline  # noqa: PLC0415 - only PostgreSQL stores need it
    except ImportError:  # pragma: no cover - psycopg is a dependency
        return False
    return bool(Pipeline.is_supported())


def _with_sign_count(record: AuthenticatorRecord, count: int) -> AuthenticatorRecord:
    # Direct, not dataclasses.replace: this runs for every approval of a batch.
    return AuthenticatorRecord(
        id=record.id,
        wallet_id=record.wallet_id,
        kind=record.kind,
        credential_id=record.credential_id,
        public_key=record.public_key,
        sign_count=count,
        rp_id=record.rp_id,
        origins=record.origins,
        active_from=record.active_from,
        revoked=record.revoked,
        label=record.label,
        created_at=record.created_at,
    )


def _chunks(items: Sequence[str]) -> Iterator[Sequence[str]]:
    for start in range(0, len(items), _CHUNK):
        yield items[start : start + _CHUNK]
