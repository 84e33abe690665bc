"""Settlement reports: per store and UTC day, what was settled, the fees, refunds and the net.

Gross is the sum of the invoices settled that day (what payers paid), fees the operator's part
of it, net what reached the payout wallet (gross − fees), refunds what went back to payers that
day, and ``net_after_refunds`` what stayed. Amounts are summed as integers in base units (in
Python: SQLite keeps them as text) and shown exactly in the token.
"""

from __future__ import annotations

import csv
import io
from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any, Final

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from seiwallet.db import as_utc
from seiwallet.errors import InvalidInput
from seiwallet.money import TokenAmount
from seiwallet.payments.models import PAID_STATUSES, Invoice, Refund, RefundStatus
from seiwallet.payments.permissions import Permission, Principal

#: The longest period one report covers.
MAX_DAYS: Final = 366
COLUMNS: Final = (
    "date",
    "token",
    "count",
    "gross",
    "fees",
    "net",
    "refunds",
    "net_after_refunds",
)


@dataclass
class DayTotals:
    day: date
    symbol: str
    decimals: int
    count: int = 0
    gross_units: int = 0
    fee_units: int = 0
    refund_units: int = 0

    def _fmt(self, units: int) -> str:
        sign = "-" if units < 0 else ""
        amount = TokenAmount.from_units(abs(units), self.decimals, self.symbol)
        return sign + amount.format(min_fraction_digits=2)

    def as_json(self) -> dict[str, Any]:
        net = self.gross_units - self.fee_units
        return {
            "date": self.day.isoformat(),
            "token": self.symbol,
            "count": self.count,
            "gross": self._fmt(self.gross_units),
            "gross_units": str(self.gross_units),
            "fees": self._fmt(self.fee_units),
            "fee_units": str(self.fee_units),
            "net": self._fmt(net),
            "net_units": str(net),
            "refunds": self._fmt(self.refund_units),
            "refund_units": str(self.refund_units),
            "net_after_refunds": self._fmt(net - self.refund_units),
            "net_after_refunds_units": str(net - self.refund_units),
        }


class ReportService:
    def __init__(self, sessions: sessionmaker[Session]) -> None:
        self._sessions = sessions

    def settlements(
        self, principal: Principal, store_id: str, first: date, last: date
    ) -> dict[str, Any]:
        """Per day and token, from ``first`` to ``last`` (UTC days, both included)."""
        principal.require(Permission.REPORTS_READ, store_id)
        if last < first:
            raise InvalidInput("the report's end date is before its start date")
        if (last - first).days >= MAX_DAYS:
            raise InvalidInput(f"a report covers at most {MAX_DAYS} days")
        start = datetime.combine(first, time(), UTC)
        end = datetime.combine(last + timedelta(days=1), time(), UTC)
        days: dict[tuple[date, str], DayTotals] = {}

        def bucket(moment: datetime | None, symbol: str, decimals: int) -> DayTotals:
            assert moment is not None  # the query asks for settled rows only
            day = as_utc(moment).date()
            key = (day, symbol)
            if key not in days:
                days[key] = DayTotals(day, symbol, decimals)
            return days[key]

        decimals_of: dict[str, tuple[str, int]] = {}
        with self._sessions() as db:
            invoices = db.execute(
                select(
                    Invoice.settled_at,
                    Invoice.symbol,
                    Invoice.decimals,
                    Invoice.amount_units,
                    Invoice.fee_units,
                ).where(
                    Invoice.store_id == store_id,
                    Invoice.merchant_id == principal.merchant_id,
                    Invoice.status.in_(PAID_STATUSES),
                    Invoice.settled_at >= start,
                    Invoice.settled_at < end,
                )
            ).all()
            for settled_at, symbol, decimals, amount, fee in invoices:
                day = bucket(settled_at, symbol, decimals)
                day.count += 1
                day.gross_units += amount
                day.fee_units += fee
            refunds = db.execute(
                select(Refund.settled_at, Refund.amount_units, Refund.invoice_id).where(
                    Refund.store_id == store_id,
                    Refund.merchant_id == principal.merchant_id,
                    Refund.status == RefundStatus.SETTLED,
                    Refund.settled_at >= start,
                    Refund.settled_at < end,
                )
            ).all()
            for settled_at, amount, invoice_id in refunds:
                if invoice_id not in decimals_of:
                    row = db.get(Invoice, invoice_id)
                    decimals_of[invoice_id] = (row.symbol, row.decimals) if row else ("?", 6)
                symbol, decimals = decimals_of[invoice_id]
                bucket(settled_at, symbol, decimals).refund_units += amount
        rows = [days[key].as_json() for key in sorted(days)]
        totals: dict[str, dict[str, Any]] = {}
        merged: dict[str, DayTotals] = defaultdict(lambda: DayTotals(first, "", 6))
        for (_, symbol), day in sorted(days.items()):
            total = merged[symbol]
            total.symbol, total.decimals = symbol, day.decimals
            total.count += day.count
            total.gross_units += day.gross_units
            total.fee_units += day.fee_units
            total.refund_units += day.refund_units
        for symbol, total in merged.items():
            body = total.as_json()
            body.pop("date")
            totals[symbol] = body
        return {
            "store_id": store_id,
            "from": first.isoformat(),
            "to": last.isoformat(),
            "timezone": "UTC",
            "days": rows,
            "totals": totals,
        }


def report_csv(report: dict[str, Any]) -> str:
    """The report's days as CSV (one row per day and token)."""
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(COLUMNS)
    for day in report["days"]:
        writer.writerow([day[column] for column in COLUMNS])
    return out.getvalue()
