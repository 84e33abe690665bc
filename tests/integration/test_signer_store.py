"""The signer's store on SQLite and PostgreSQL: schema, replays, racing limits, audit chain, policy.

Each test builds the signer's own engine (never ``seiwallet.db``) on a fresh database.
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from itertools import pairwise
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import (
    Engine,
    Index,
    MetaData,
    Table,
    create_engine,
    func,
    insert,
    inspect,
    select,
    update,
)

from seiwallet.addresses import parse_evm_address
from seiwallet.signer import store as store_module
from seiwallet.signer.audit import GENESIS_HASH, AuditDecision, AuditEntry, link_hash, verify_chain
from seiwallet.signer.errors import (
    ApprovalRefused,
    PolicyVersionConflict,
    SignerSchemaMismatch,
    UnknownAuthenticator,
    UnknownWallet,
)
from seiwallet.signer.policy import DAILY_WINDOW_SECONDS, Policy, Spend, evaluate
from seiwallet.signer.store import (
    REPLAYED,
    SCHEMA_VERSION,
    SPEND_BUCKET_SECONDS,
    AuditUpgradeRefused,
    SignerAuditRow,
    SignerBase,
    SignerMeta,
    SignerSpend,
    SignerStore,
    WalletTransaction,
    _authenticator_record,
    _wallet_record,
    create_signer_engine,
)

CHAIN_ID = 1329
TOKEN = parse_evm_address("0x" + "a0" * 20)
RECIPIENT = parse_evm_address("0x" + "b1" * 20)
NOW = 1_800_000_000

TABLES = {
    "signer_meta",
    "signer_wallets",
    "signer_authenticators",
    "signer_used_nonces",
    "signer_spends",
    "signer_spend_totals",
    "signer_audit",
}


def table_of(model: type[SignerBase]) -> Table:
    """A signer model's table, typed as one (for direct SQL that goes around the store)."""
    table = model.__table__
    assert isinstance(table, Table)
    return table


@pytest.fixture
def signer_engine(database_url: str) -> Iterator[Engine]:
    # Room for the racing test's 50 threads to hold a connection each.
    engine = create_signer_engine(database_url, pool_size=10, max_overflow=60)
    try:
        yield engine
    finally:
        engine.dispose()


@pytest.fixture
def store(signer_engine: Engine) -> SignerStore:
    signer_store = SignerStore(signer_engine)
    signer_store.create_schema()
    return signer_store


def add_wallet(
    store: SignerStore, wallet_id: str, *, policy: Policy | None = None, authenticators: int = 1
) -> None:
    with store.transaction() as tx:
        tx.insert_wallet(
            wallet_id=wallet_id,
            address=parse_evm_address("0x" + wallet_id.encode().hex().ljust(40, "0")[:40]),
            public_key=b"\x02" + bytes(32),
            sealed_key=b"sealed",
            created_at=NOW,
            policy=(policy or Policy.default()).to_document(),
        )
        for index in range(authenticators):
            tx.insert_authenticator(
                authenticator_id=f"{wallet_id}-auth-{index}",
                kind="device",
                credential_id=f"cred-{index}".encode(),
                public_key=b"\x04" + bytes(64),
                created_at=NOW,
                active_from=0,
                origins=["https://wallet.example"],
                label=f"device {index}",
            )


def audit(decision: AuditDecision, *, rule: str | None = None, amount: int = 0) -> AuditEntry:
    return AuditEntry(
        kind="erc3009.transfer",
        decision=decision,
        at=NOW,
        intent_digest="0x" + "cd" * 32,
        rule=rule,
        reason=None if rule is None else f"declined by {rule}",
        approvals=({"authenticator_id": "auth-0", "nonce": "n"},),
        details={"amount_units": str(amount), "token": TOKEN},
    )


# --- schema -----------------------------------------------------------------------------------


def test_schema_is_created_in_its_own_place_and_versioned(store: SignerStore) -> None:
    store.create_schema()  # again, as at every start: nothing to do
    assert store.schema_version() == SCHEMA_VERSION
    tables = set(inspect(store.engine).get_table_names(schema=store.schema))
    assert tables >= TABLES
    if store.engine.dialect.name == "postgresql":
        assert store.schema == "signer"
        assert not TABLES & set(inspect(store.engine).get_table_names(schema="public"))


def test_a_newer_schema_is_refused_and_left_alone(store: SignerStore) -> None:
    meta = table_of(SignerMeta)
    with store.engine.begin() as connection:
        connection.execute(
            update(meta).where(meta.c.key == "schema_version").values(value=str(SCHEMA_VERSION + 1))
        )
    with pytest.raises(SignerSchemaMismatch, match="upgrade seiwallet") as caught:
        store.create_schema()
    assert caught.value.found == SCHEMA_VERSION + 1
    assert store.schema_version() == SCHEMA_VERSION + 1


def test_meta_values_round_trip_and_the_store_keeps_its_own(store: SignerStore) -> None:
    assert store.get_meta("master_key_check") is None
    store.set_meta("master_key_check", "v1:abcd")
    store.set_meta("master_key_check", "v1:ef01")
    assert store.get_meta("master_key_check") == "v1:ef01"
    for reserved in ("schema_version", "audit_head"):
        with pytest.raises(ValueError, match="kept by the store"):
            store.set_meta(reserved, "0")


def test_an_engine_not_set_up_for_the_signer_is_refused() -> None:
    plain = create_engine("sqlite://")
    with pytest.raises(ValueError, match="create_signer_engine"):
        SignerStore(plain)


# --- wallets, authenticators, nonces ----------------------------------------------------------


def test_unknown_wallet_is_refused(store: SignerStore) -> None:
    with pytest.raises(UnknownWallet), store.transaction("nobody"):
        pass
    add_wallet(store, "w1")
    with store.batch_transaction(["w1", "nobody"]) as batch:
        assert batch.wallet_ids == ("w1",)
        with pytest.raises(UnknownWallet):
            batch.for_wallet("nobody")


def test_replayed_nonce_is_refused(store: SignerStore) -> None:
    add_wallet(store, "w1")
    with store.transaction("w1") as tx:
        tx.consume_nonce("nonce-1", NOW + 300)
        # Twice in one transaction is a replay too (two intents of one batch, one approval).
        with pytest.raises(ApprovalRefused) as caught:
            tx.consume_nonce("nonce-1", NOW + 300)
        assert caught.value.reason == REPLAYED
    with store.transaction("w1") as tx, pytest.raises(ApprovalRefused, match="replayed"):
        tx.consume_nonce("nonce-1", NOW + 300)
    with store.batch_transaction(["w1"]) as batch:
        batch.prefetch_nonces([("w1", "nonce-1"), ("w1", "nonce-2")])
        wallet = batch.for_wallet("w1")
        wallet.consume_nonce("nonce-2", NOW + 300)
        with pytest.raises(ApprovalRefused, match="replayed"):
            wallet.consume_nonce("nonce-1", NOW + 300)


def test_a_rolled_back_transaction_consumes_nothing(store: SignerStore) -> None:
    add_wallet(store, "w1")

    def consume_then_fail() -> None:
        with store.transaction("w1") as tx:
            tx.consume_nonce("nonce-1", NOW + 300)
            tx.append_audit(audit(AuditDecision.SIGNED))
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        consume_then_fail()
    with store.transaction("w1") as tx:
        tx.consume_nonce("nonce-1", NOW + 300)
    assert store.audit_head().seq == 0


def test_expired_nonces_are_pruned_after_a_grace_period(store: SignerStore) -> None:
    add_wallet(store, "w1")
    with store.transaction("w1") as tx:
        tx.consume_nonce("old", NOW - 1000)
        tx.consume_nonce("fresh", NOW + 300)
    assert store.prune_nonces(NOW) == 1
    with store.transaction("w1") as tx, pytest.raises(ApprovalRefused):
        tx.consume_nonce("fresh", NOW + 300)


def test_sign_counts_only_go_forward_and_revocation_sticks(store: SignerStore) -> None:
    add_wallet(store, "w1", authenticators=2)
    with store.transaction("w1") as tx:
        tx.set_sign_count("w1-auth-0", 5)
        tx.set_sign_count("w1-auth-0", 7)
        assert tx.authenticators()[0].sign_count == 7
        with pytest.raises(ApprovalRefused, match="went back from 7 to 6"):
            tx.set_sign_count("w1-auth-0", 6)
        with pytest.raises(UnknownAuthenticator):
            tx.set_sign_count("w2-auth-0", 1)
        tx.revoke_authenticator("w1-auth-1")
    with store.transaction("w1") as tx:
        first, second = tx.authenticators()
        assert first.sign_count == 7
        assert second.revoked
        assert not second.is_active(NOW)
        assert first.is_active(NOW)
        assert first.origins == ("https://wallet.example",)


# --- spends and limits ------------------------------------------------------------------------


def test_spends_sum_exactly_beyond_64_bits(store: SignerStore) -> None:
    add_wallet(store, "w1")
    amounts = [2**255, 10**30 + 7, 2**64 + 1, *[10**18 - 1] * 30, 1]
    with store.transaction("w1") as tx:
        for offset, amount in enumerate(amounts):
            tx.record_spend(
                chain_id=CHAIN_ID,
                token=TOKEN,
                amount_units=amount,
                recipient=RECIPIENT,
                at=NOW + offset,
                intent_digest="0x" + "00" * 32,
            )
        # Case does not matter: a lowercased token must not escape the window.
        assert tx.spent_since(CHAIN_ID, TOKEN.lower(), NOW) == sum(amounts)
    with store.transaction("w1") as tx:
        assert tx.spent_since(CHAIN_ID, TOKEN, NOW) == sum(amounts)
        assert tx.spent_since(CHAIN_ID, TOKEN, NOW + 3) == sum(amounts[3:])
        assert tx.spent_since(CHAIN_ID + 1, TOKEN, NOW) == 0
    spends = table_of(SignerSpend)
    with store.engine.connect() as connection:
        stored = connection.execute(select(spends.c.amount_units).order_by(spends.c.id)).scalars()
        assert list(stored) == amounts


def test_a_rolling_window_counts_exactly_the_spends_from_its_start(store: SignerStore) -> None:
    """Spends across hours, in several transactions: every window's sum is the brute-force one."""
    add_wallet(store, "w1")
    add_wallet(store, "w2")
    hour = SPEND_BUCKET_SECONDS
    base = (NOW // hour) * hour
    times = [base - 26 * hour, base - 3 * hour + 5, base - hour - 1, base - hour, base + 1]
    times += [base + 7, base + hour - 1, base + hour, base + 2 * hour + 30]
    spends = [(at, 10**20 + index) for index, at in enumerate(times)]
    for chunk in (spends[:3], spends[3:6], spends[6:]):
        with store.batch_transaction(["w1", "w2"]) as batch:
            for at, amount in chunk:
                for wallet_id in ("w1", "w2"):
                    batch.for_wallet(wallet_id).record_spend(
                        chain_id=CHAIN_ID,
                        token=TOKEN,
                        amount_units=amount if wallet_id == "w1" else 1,
                        recipient=RECIPIENT,
                        at=at,
                        intent_digest="0x" + "00" * 32,
                    )
    starts = [base - 30 * hour, base - 3 * hour, base - 3 * hour + 6, base - hour, base]
    starts += [base + 1, base + 2, base + hour - 1, base + hour, base + 3 * hour]
    with store.batch_transaction(["w1", "w2"]) as batch:
        for since in starts:
            expected = sum(amount for at, amount in spends if at >= since)
            assert batch.for_wallet("w1").spent_since(CHAIN_ID, TOKEN, since) == expected
            count = sum(1 for at, _ in spends if at >= since)
            assert batch.for_wallet("w2").spent_since(CHAIN_ID, TOKEN, since) == count


def _sign_if_allowed(
    store: SignerStore, policy: Policy, amount: int, start: threading.Barrier
) -> bool:
    """One sign request: lock, read the window, decide, record; True if it was signed."""
    start.wait()
    spend = Spend(CHAIN_ID, TOKEN, amount, RECIPIENT)
    with store.transaction("w1") as tx:
        spent = tx.spent_since(CHAIN_ID, TOKEN, NOW - DAILY_WINDOW_SECONDS)
        # Widen the window between read and write: without the lock, racers would interleave.
        time.sleep(0.001)
        decision = evaluate(
            policy,
            spend,
            approvals={"w1-auth-0"},
            active={"w1-auth-0"},
            spent_in_window=spent,
            kind="erc3009.transfer",
        )
        if decision.allowed:
            tx.record_spend(
                chain_id=CHAIN_ID,
                token=TOKEN,
                amount_units=amount,
                recipient=RECIPIENT,
                at=NOW,
                intent_digest="0x" + "ee" * 32,
            )
            tx.append_audit(audit(AuditDecision.SIGNED, amount=amount))
        else:
            tx.append_audit(audit(AuditDecision.REFUSED, rule=decision.rule, amount=amount))
        return decision.allowed


def test_fifty_concurrent_requests_cannot_exceed_a_daily_limit(store: SignerStore) -> None:
    limit, amount, requests = 1_000, 70, 50
    policy = Policy.parse(
        {"tokens": [{"chain_id": CHAIN_ID, "address": TOKEN, "daily_limit": str(limit)}]}
    )
    add_wallet(store, "w1", policy=policy)
    start = threading.Barrier(requests)
    with ThreadPoolExecutor(max_workers=requests) as pool:
        futures = [
            pool.submit(_sign_if_allowed, store, policy, amount, start) for _ in range(requests)
        ]
        results = [future.result(timeout=120) for future in futures]
    assert sum(results) == limit // amount
    with store.transaction("w1") as tx:
        total = tx.spent_since(CHAIN_ID, TOKEN, NOW - DAILY_WINDOW_SECONDS)
    assert total == (limit // amount) * amount <= limit
    records = store.read_audit(limit=1000)
    assert len(records) == requests
    assert sum(record.decision == "signed" for record in records) == limit // amount
    assert {record.rule for record in records if record.decision == "refused"} == {"daily_limit"}
    assert store.verify_audit().ok


def test_a_batch_spans_wallets_with_one_commit(store: SignerStore) -> None:
    for wallet_id in ("w3", "w1", "w2"):
        add_wallet(store, wallet_id)
    with store.batch_transaction(["w3", "w1", "w2", "w1"]) as batch:
        assert batch.wallet_ids == ("w1", "w2", "w3")  # locked in sorted order
        batch.prefetch_nonces((wallet_id, f"n-{wallet_id}") for wallet_id in batch.wallet_ids)
        for wallet_id in batch.wallet_ids:
            wallet: WalletTransaction = batch.for_wallet(wallet_id)
            assert wallet.wallet().id == wallet_id
            wallet.consume_nonce(f"n-{wallet_id}", NOW + 300)
            wallet.set_sign_count(f"{wallet_id}-auth-0", 1)
            for _ in range(2):
                wallet.record_spend(
                    chain_id=CHAIN_ID,
                    token=TOKEN,
                    amount_units=100,
                    recipient=RECIPIENT,
                    at=NOW,
                    intent_digest="0x" + "11" * 32,
                )
                assert wallet.spent_since(CHAIN_ID, TOKEN, NOW - DAILY_WINDOW_SECONDS) in (100, 200)
                wallet.append_audit(audit(AuditDecision.SIGNED, amount=100))
        batch.append_audit(audit(AuditDecision.REFUSED, rule="approval"))
    assert [record.seq for record in batch.audit_records] == list(range(1, 8))
    assert [record.wallet_id for record in batch.audit_records] == [
        "w1", "w1", "w2", "w2", "w3", "w3", None,
    ]  # fmt: skip
    assert batch.audit_head == store.audit_head()
    for wallet_id in ("w1", "w2", "w3"):
        with store.transaction(wallet_id) as tx:
            assert tx.spent_since(CHAIN_ID, TOKEN, NOW - DAILY_WINDOW_SECONDS) == 200
            assert tx.authenticators()[0].sign_count == 1
            with pytest.raises(ApprovalRefused):
                tx.consume_nonce(f"n-{wallet_id}", NOW + 300)
    assert len(store.read_audit(wallet_id="w2")) == 2


def test_sqlite_reads_through_the_driver_are_sqlalchemys(tmp_path: Path) -> None:
    """On SQLite a batch reads through the driver; every read gives SQLAlchemy's rows.

    SQLite only, by construction (PostgreSQL reads through SQLAlchemy): its own store.
    """
    store = SignerStore(create_signer_engine(f"sqlite:///{tmp_path / 'signer.sqlite3'}"))
    store.create_schema()
    policy = Policy.parse(
        {"tokens": [{"chain_id": CHAIN_ID, "address": TOKEN, "daily_limit": "9"}]}
    )
    for wallet_id in ("w1", "w2"):
        add_wallet(store, wallet_id, policy=policy, authenticators=2)
    hour = NOW // SPEND_BUCKET_SECONDS
    with store.batch_transaction(["w1", "w2"]) as batch:
        batch.for_wallet("w1").consume_nonce("n-1", NOW + 300)
        for at in (NOW - 2 * SPEND_BUCKET_SECONDS, NOW):
            batch.for_wallet("w2").record_spend(
                chain_id=CHAIN_ID,
                token=TOKEN,
                amount_units=2**70,
                recipient=RECIPIENT,
                at=at,
                intent_digest="0x" + "22" * 32,
            )
    reads: list[tuple[str, dict[str, Any]]] = [
        ("find_nonces", {"nonces": ["n-1", "n-2"]}),
        ("window_totals", {"ids": ["w1", "w2"], "after_hour": hour - 5}),
        ("hour_totals", {"ids": ["w2"], "hours": [hour - 2, hour]}),
        ("window_edge", {"ids": ["w2"], "since": NOW - 3 * SPEND_BUCKET_SECONDS, "until": NOW + 1}),
    ]
    with store.batch_transaction(["w1", "w2"]) as batch:
        assert batch._raw is not None
        for name, params in reads:
            through_driver = batch._raw.read(name, params)
            through_sqlalchemy = batch._connection.execute(getattr(batch._sql, name), params)
            expected = [tuple(row) for row in through_sqlalchemy.all()]
            assert [tuple(row) for row in through_driver] == expected, name
            assert expected, name  # every read found something to compare
        # Wallets and authenticators come as records, built as from SQLAlchemy's rows.
        for name, build, ids in (
            ("lock_wallets", _wallet_record, ["w1", "w2", "w9"]),
            ("load_authenticators", _authenticator_record, ["w1", "w2"]),
        ):
            rows = batch._connection.execute(getattr(batch._sql, name), {"ids": ids}).all()
            assert batch._raw.records(name, ids) == [build(row) for row in rows], name
            assert rows, name
        assert batch._raw.audit_head() == store.audit_head()


def test_sqlite_records_are_rebuilt_when_their_row_changes(tmp_path: Path) -> None:
    """Records built from SQLite rows are reused only for the very same row contents."""
    store = SignerStore(create_signer_engine(f"sqlite:///{tmp_path / 'signer.sqlite3'}"))
    store.create_schema()
    add_wallet(store, "w1", authenticators=2)
    with store.transaction("w1") as tx:
        wallet, (first, second) = tx.wallet(), tx.authenticators()
    with store.transaction("w1") as tx:
        assert tx.wallet() is wallet  # same rows: the records built before
        assert tx.authenticators() == (first, second)
        assert tx.authenticator(first.id) is first
        tx.revoke_authenticator(second.id)
        tx.set_policy({"allowlist": [RECIPIENT]}, expected_version=1)
    with store.transaction("w1") as tx:
        assert tx.authenticator(first.id) is first
        revoked = tx.authenticator(second.id)
        assert revoked is not None
        assert (revoked.revoked, second.revoked) == (True, False)
        assert (tx.wallet().policy_version, wallet.policy_version) == (2, 1)
        assert tx.wallet().policy == {"allowlist": [RECIPIENT]}


def test_overlapping_batches_neither_deadlock_nor_lose_spends(store: SignerStore) -> None:
    """Batches over overlapping wallets, named in any order, all commit (sorted lock order)."""
    wallet_ids = [f"w{index}" for index in range(6)]
    for wallet_id in wallet_ids:
        add_wallet(store, wallet_id)
    workers, batches = 8, 5

    def run(worker: int) -> None:
        for batch_number in range(batches):
            # A different subset and order per batch: the store sorts them.
            chosen = [wallet_ids[(worker + batch_number + k) % 6] for k in range(4)][::-1]
            with store.batch_transaction(chosen) as batch:
                for wallet_id in chosen:
                    wallet = batch.for_wallet(wallet_id)
                    wallet.spent_since(CHAIN_ID, TOKEN, NOW - DAILY_WINDOW_SECONDS)
                    wallet.record_spend(
                        chain_id=CHAIN_ID,
                        token=TOKEN,
                        amount_units=1,
                        recipient=RECIPIENT,
                        at=NOW,
                        intent_digest="0x" + "22" * 32,
                    )
                    wallet.append_audit(audit(AuditDecision.SIGNED, amount=1))

    with ThreadPoolExecutor(max_workers=workers) as pool:
        for future in [pool.submit(run, worker) for worker in range(workers)]:
            future.result(timeout=120)
    with store.batch_transaction(wallet_ids) as batch:
        spent = [
            batch.for_wallet(w).spent_since(CHAIN_ID, TOKEN, NOW - DAILY_WINDOW_SECONDS)
            for w in wallet_ids
        ]
    assert sum(spent) == workers * batches * 4
    assert store.audit_head().seq == workers * batches * 4
    assert store.verify_audit().ok


# --- audit ------------------------------------------------------------------------------------


def _fill_audit(store: SignerStore, transactions: int = 3, per_transaction: int = 3) -> None:
    add_wallet(store, "w1")
    for _ in range(transactions):
        with store.transaction("w1") as tx:
            for index in range(per_transaction):
                decision = AuditDecision.SIGNED if index % 2 == 0 else AuditDecision.REFUSED
                tx.append_audit(audit(decision, rule=None if index % 2 == 0 else "quorum"))


def test_audit_chain_verifies(store: SignerStore) -> None:
    _fill_audit(store)
    result = store.verify_audit()
    assert result.ok, result.reason
    assert result.checked == 9
    assert store.audit_head().seq == 9
    records = store.read_audit(limit=100)
    assert records[0].hash == link_hash(GENESIS_HASH, records[0].entry_json.encode())
    assert all(b.hash == link_hash(a.hash, b.entry_json.encode()) for a, b in pairwise(records))
    assert records[0].details == {"amount_units": "0", "token": TOKEN}
    # What schema 2 no longer copies into columns is read from the hashed JSON.
    assert (records[1].rule, records[1].reason) == ("quorum", "declined by quorum")
    assert (records[0].rule, records[0].intent_digest) == (None, "0x" + "cd" * 32)
    assert verify_chain(records, head=store.audit_head()).ok


def test_a_tampered_audit_entry_is_found_at_its_seq(store: SignerStore) -> None:
    _fill_audit(store)
    audit_table = table_of(SignerAuditRow)
    with store.engine.begin() as connection:
        entry = connection.execute(
            select(audit_table.c.entry).where(audit_table.c.seq == 5)
        ).scalar_one()
        connection.execute(
            update(audit_table)
            .where(audit_table.c.seq == 5)
            .values(entry=entry.replace('"refused"', '"signed"'))
        )
    result = store.verify_audit()
    assert not result.ok
    assert result.first_broken_seq == 5
    assert result.checked == 4
    assert "entry was changed" in (result.reason or "")


def test_a_tampered_audit_column_is_found(store: SignerStore) -> None:
    _fill_audit(store)
    audit_table = table_of(SignerAuditRow)
    with store.engine.begin() as connection:
        connection.execute(
            update(audit_table).where(audit_table.c.seq == 2).values(decision="signed")
        )
    result = store.verify_audit()
    assert (result.ok, result.first_broken_seq) == (False, 2)
    assert "decision" in (result.reason or "")


def test_a_tampered_audit_hash_is_found_at_its_seq(store: SignerStore) -> None:
    _fill_audit(store)
    audit_table = table_of(SignerAuditRow)
    with store.engine.begin() as connection:
        connection.execute(update(audit_table).where(audit_table.c.seq == 3).values(hash=bytes(32)))
    result = store.verify_audit()
    assert (result.ok, result.first_broken_seq, result.checked) == (False, 3, 2)


# --- schema 1 → 2 -----------------------------------------------------------------------------


def _as_schema_1(store: SignerStore) -> list[dict[str, Any]]:
    """Turn ``store`` back into schema 1: its audit table as schema 1 stored it (copies of the
    digest, rule, reason and approvals, and each record's prev_hash), version 1. Returns the
    schema 1 rows."""
    records = store.read_audit(limit=1000)
    rows, prev = [], GENESIS_HASH
    for record in records:
        body = json.loads(record.entry_json)
        rows.append(
            {
                "seq": record.seq,
                "at": record.at,
                "wallet_id": record.wallet_id,
                "kind": record.kind,
                "intent_digest": body["intent_digest"],
                "decision": record.decision,
                "rule": body["rule"],
                "reason": body["reason"],
                "approvals": json.dumps(body["approvals"], sort_keys=True, separators=(",", ":")),
                "entry": record.entry_json,
                "prev_hash": prev,
                "hash": record.hash,
            }
        )
        prev = record.hash
    # A copy, with schema 1's index (the module's table is only ever read).
    schema_1 = store_module._audit_schema_1.to_metadata(MetaData())
    Index("ix_signer_audit_wallet", schema_1.c.wallet_id, schema_1.c.seq)
    meta = table_of(SignerMeta)
    with store.engine.begin() as connection:
        table_of(SignerAuditRow).drop(connection)
        schema_1.create(connection)
        if rows:
            connection.execute(insert(schema_1), rows)
        connection.execute(update(meta).where(meta.c.key == "schema_version").values(value="1"))
    return rows


def _audit_columns(store: SignerStore) -> set[str]:
    return {c["name"] for c in inspect(store.engine).get_columns("signer_audit", store.schema)}


def test_a_schema_1_store_is_upgraded_with_its_audit_log_intact(store: SignerStore) -> None:
    _fill_audit(store)
    before = store.read_audit(limit=100)
    _as_schema_1(store)
    assert store.schema_version() == 1
    assert {"prev_hash", "rule", "approvals"} <= _audit_columns(store)

    SignerStore(store.engine).create_schema()

    assert store.schema_version() == SCHEMA_VERSION == 2
    assert _audit_columns(store) == {"seq", "at", "wallet_id", "kind", "decision", "entry", "hash"}
    assert store.read_audit(limit=100) == before  # every record, byte for byte
    assert store.verify_audit().ok
    # The log goes on from the old head, and old and new records verify as one chain.
    with store.transaction("w1") as tx:
        tx.append_audit(audit(AuditDecision.REFUSED, rule="daily_limit"))
    result = store.verify_audit()
    assert (result.ok, result.checked) == (True, 10)
    assert store.read_audit(after_seq=9)[0].rule == "daily_limit"
    if store.engine.dialect.name == "sqlite":
        with store.engine.connect() as connection:
            indexes = connection.exec_driver_sql(
                "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'signer_audit'"
            ).all()
            # seq is the rowid: no index of its own, only the wallet's.
            assert [name for (name,) in indexes] == ["ix_signer_audit_wallet"]
            assert not connection.exec_driver_sql(
                "SELECT name FROM sqlite_master WHERE name = 'signer_audit_schema_1'"
            ).all()


def test_an_empty_schema_1_store_is_upgraded(store: SignerStore) -> None:
    _as_schema_1(store)
    store.create_schema()
    assert store.schema_version() == SCHEMA_VERSION
    add_wallet(store, "w1")
    with store.transaction("w1") as tx:
        tx.append_audit(audit(AuditDecision.SIGNED))
    assert store.verify_audit().ok


@pytest.mark.parametrize(
    ("column", "value", "found"),
    [
        ("rule", "daily_limit", "its columns differ from its hashed entry: rule"),
        ("approvals", "[]", "its columns differ from its hashed entry: approvals"),
        ("prev_hash", bytes(32), "its prev_hash is not the previous record's hash"),
        ("entry", None, "the entry was changed"),
    ],
)
def test_a_schema_1_log_that_does_not_verify_is_not_upgraded(
    store: SignerStore, column: str, value: Any, found: str
) -> None:
    """The upgrade drops schema 1's copies: tampering with them is reported first, and a log
    that does not verify is left as it was (the signer does not start)."""
    _fill_audit(store)
    rows = _as_schema_1(store)
    schema_1 = store_module._audit_schema_1
    if value is None:  # the entry itself: a refusal turned into a signature
        value = rows[4]["entry"].replace('"decision":"refused"', '"decision":"signed"')
        assert value != rows[4]["entry"]
    with store.engine.begin() as connection:
        connection.execute(update(schema_1).where(schema_1.c.seq == 5).values({column: value}))
    with pytest.raises(AuditUpgradeRefused, match=f"at record 5 .*{re.escape(found)}"):
        SignerStore(store.engine).create_schema()
    assert store.schema_version() == 1
    assert "prev_hash" in _audit_columns(store)
    with store.engine.connect() as connection:
        assert connection.execute(select(func.count()).select_from(schema_1)).scalar_one() == 9


def test_removed_audit_records_are_found(store: SignerStore) -> None:
    _fill_audit(store)
    audit_table = table_of(SignerAuditRow)
    with store.engine.begin() as connection:
        connection.execute(audit_table.delete().where(audit_table.c.seq == 9))
    result = store.verify_audit()
    assert (result.ok, result.first_broken_seq) == (False, 9)
    assert "removed" in (result.reason or "")
    with store.engine.begin() as connection:
        connection.execute(audit_table.delete().where(audit_table.c.seq == 4))
    result = store.verify_audit()
    assert (result.ok, result.first_broken_seq) == (False, 4)


# --- policy versions --------------------------------------------------------------------------


def test_a_policy_change_against_an_old_version_is_refused(store: SignerStore) -> None:
    add_wallet(store, "w1")
    strict = Policy.parse({"intents": {"policy.update": {"required": 2, "of": "any"}}})
    with store.transaction("w1") as tx:
        assert tx.wallet().policy_version == 1
        assert tx.set_policy(strict.to_document(), expected_version=1) == 2
        assert tx.wallet().policy_version == 2
    # A second change approved when the policy was at version 1 arrives late.
    with (
        store.transaction("w1") as tx,
        pytest.raises(PolicyVersionConflict, match="at policy version 2, not 1"),
    ):
        tx.set_policy(Policy.default().to_document(), expected_version=1)
    with store.transaction("w1") as tx:
        assert tx.wallet().policy_version == 2
        assert Policy.parse(tx.wallet().policy) == strict
