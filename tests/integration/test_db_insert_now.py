"""``insert_now``: new rows by Core statements, column defaults applied, on both databases."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import event, select
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from seiwallet.compliance.models import DecisionRecord
from seiwallet.db import insert_now


def _decision(ident: str, **changes: Any) -> DecisionRecord:
    fields: dict[str, Any] = {
        "id": ident,
        "user_id": "u" * 32,
        "kind": "transfer",
        "outcome": "allow",
        "rule": "allowed",
        "reason": "",
        "from_address": "0x" + "1" * 40,
        "to_address": "0x" + "2" * 40,
        "symbol": "USDC",
        "amount_units": 2**200,
        "rules_version": "v1",
    }
    fields.update(changes)
    return DecisionRecord(**fields)


def test_rows_are_inserted_with_defaults_and_stay_out_of_the_session(
    engine: Engine, db_session: Session
) -> None:
    statements: list[str] = []

    def count(*args: Any) -> None:
        statements.append(str(args[2]).split()[0])

    event.listen(engine, "before_cursor_execute", count)
    try:
        first, second, other = _decision("a" * 32), _decision("b" * 32), _decision("c" * 32)
        insert_now(db_session, first, second)
        insert_now(db_session, other)
    finally:
        event.remove(engine, "before_cursor_execute", count)
    assert statements == ["INSERT", "INSERT"]  # one statement per call and table
    assert first not in db_session
    db_session.commit()
    stored = {row.id: row for row in db_session.scalars(select(DecisionRecord))}
    assert set(stored) == {"a" * 32, "b" * 32, "c" * 32}
    # Unset attributes get the columns' defaults, exactly as a flush would give them.
    assert stored["a" * 32].needs == ""
    assert stored["a" * 32].created_at is not None
    assert stored["b" * 32].amount_units == 2**200  # the column's own type (Uint256) binds it


def test_a_duplicate_fails_like_a_flush_would(db_session: Session) -> None:
    insert_now(db_session, _decision("d" * 32))
    with pytest.raises(IntegrityError):
        insert_now(db_session, _decision("d" * 32))
