"""The compliance gate's limit reservations, settled together with the movement that made them.

The gate (``compliance.gate``) reserves an allowed movement's value against its sender's rolling
limits under the caller's ``reference`` (:func:`reference`: ``transfer:<id>``,
``payment:<attempt id>``, ``refund:<id>``). The movement settles it, in the same database
transaction as its own change wherever the code making the change is ours:

* signed → **committed** (it stays counted for good: the money moves);
* expired, abandoned, failed → **released** (the limit frees up: no money moved).

Settling follows ``USAGE_TRANSITIONS`` only (a released reservation never counts again, a
committed one may still be released when the chain refuses the movement), so running it twice,
or after a crash, changes nothing more. Reservations older than the longest limit window
(30 days) no longer count, so nothing older is ever looked at.
"""

from __future__ import annotations

import functools
from collections.abc import Collection
from datetime import datetime, timedelta
from typing import Any, Final

from sqlalchemy import ColumnElement, Select, String, Update, bindparam, literal, update
from sqlalchemy.orm import InstrumentedAttribute, Session

from seiwallet.compliance.models import USAGE_TRANSITIONS, Usage, UsageStatus

#: Reservations older than this no longer count against any limit (the gate's 30-day window).
COUNTED_FOR: Final = timedelta(days=30)


def reference(kind: str, row_id: str) -> str:
    """The reference a movement's reservation is made under: ``<kind>:<row id>``."""
    return f"{kind}:{row_id}"


def reference_of(
    kind: str, row_id: ColumnElement[str] | InstrumentedAttribute[str]
) -> ColumnElement[str]:
    """:func:`reference` as SQL, for a query selecting the references of many rows."""
    return literal(f"{kind}:", String) + row_id


def settle_reservations(
    db: Session,
    references: Collection[str] | Select[Any],
    status: UsageStatus,
    *,
    now: datetime,
) -> int:
    """Commit or release the reservations made under ``references`` (strings, or a query
    selecting them) in ``db``'s transaction; how many moved."""
    if isinstance(references, Select):
        allowed_from = [s.value for s, nexts in USAGE_TRANSITIONS.items() if status in nexts]
        result = db.execute(
            update(Usage)
            .where(Usage.reference.in_(references), Usage.status.in_(allowed_from))
            .values(status=status.value, settled_at=now)
            .execution_options(synchronize_session=False)
        )
    elif not references:
        return 0
    else:
        result = db.execute(_settle(status), {"b_references": list(references), "b_now": now})
    return int(getattr(result, "rowcount", 0) or 0)


@functools.cache
def _settle(status: UsageStatus) -> Update:
    """``settle_reservations`` of a list of references, built once per status (every approval
    settles its reservation)."""
    allowed_from = [s.value for s, nexts in USAGE_TRANSITIONS.items() if status in nexts]
    return (
        update(Usage)
        .where(
            Usage.reference.in_(bindparam("b_references", expanding=True)),
            Usage.status.in_(allowed_from),
        )
        .values(status=status.value, settled_at=bindparam("b_now"))
        .execution_options(synchronize_session=False)
    )
