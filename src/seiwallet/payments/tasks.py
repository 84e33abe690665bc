"""The payments domain's background jobs, run by the worker: expiring invoices, sending webhooks,
settling the compliance gate's limit reservations.

:func:`run_payment_tasks` is what the worker's task group starts; each loop survives a database
or network hiccup (logged, retried after a pause) and stops when ``stop`` is set.

:func:`settle_payment_reservations` abandons payment attempts that can no longer be approved
(their invoice moved on, or the payer walked away past the approval window), expires refunds
whose authorization could no longer be submitted, and releases the limit reservations of those
and of attempts and refunds that failed: the payer's (or merchant's) limits free up. The same
loop runs the transfers' counterpart (``transfers.tasks.settle_transfer_reservations``), so one
worker job keeps every movement's reservation in step with the movement.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Final

import httpx
from sqlalchemy import or_, select, update
from sqlalchemy.orm import Session, sessionmaker

from seiwallet.compliance.models import UsageStatus
from seiwallet.config import PaymentSettings
from seiwallet.db import SQLITE_BEGIN
from seiwallet.payments.invoices import expire_invoices
from seiwallet.payments.models import (
    AttemptStatus,
    Invoice,
    InvoiceStatus,
    PaymentAttempt,
    Refund,
    RefundStatus,
)
from seiwallet.payments.services import abandon_attempts
from seiwallet.payments.webhooks import WebhookSender
from seiwallet.transfers.models import Transfer, TransferStatus
from seiwallet.transfers.reservations import (
    COUNTED_FOR,
    reference,
    reference_of,
    settle_reservations,
)
from seiwallet.transfers.tasks import settle_transfer_reservations

log = logging.getLogger(__name__)

_WRITE: Final = {SQLITE_BEGIN: "IMMEDIATE"}
#: How often reservations are settled (approval windows are minutes long: no hurry).
RESERVATION_SECONDS: Final = 5.0
#: An unapproved attempt is abandoned this long after its approval window closed: an approval
#: already holding the invoice (a 30 s claim) when the window closed is not cut short.
APPROVAL_GRACE: Final = timedelta(seconds=60)


def settle_payment_reservations(
    sessions: sessionmaker[Session],
    *,
    chain_id: int,
    now: datetime,
    approval_window: timedelta,
    limit: int = 500,
) -> int:
    """Abandon attempts that can no longer be approved, expire refunds that can no longer be
    submitted, release the reservations of those and of failed ones; how many changed."""
    with sessions() as db:
        stale = list(
            db.scalars(
                select(PaymentAttempt.id)
                .join(Invoice, Invoice.id == PaymentAttempt.invoice_id)
                .where(
                    PaymentAttempt.chain_id == chain_id,
                    PaymentAttempt.status == AttemptStatus.AWAITING_APPROVAL,
                    or_(
                        Invoice.status != InvoiceStatus.NEW,
                        PaymentAttempt.created_at < now - approval_window - APPROVAL_GRACE,
                    ),
                )
                .limit(limit)
            )
        )
    abandoned = abandon_attempts(sessions, stale, now=now)
    with sessions.begin() as db:
        db.connection(execution_options=_WRITE)
        expired = list(
            db.scalars(
                update(Refund)
                .where(
                    Refund.chain_id == chain_id,
                    Refund.status == RefundStatus.AWAITING_APPROVAL,
                    # Past its authorization's own validBefore: a signature could not be used
                    # any more (approving refuses it a minute earlier, so no approval is cut).
                    Refund.valid_before < int(now.timestamp()),
                )
                .values(status=RefundStatus.EXPIRED, updated_at=now)
                .returning(Refund.id)
                .execution_options(synchronize_session=False)
            )
        )
        settle_reservations(
            db, [reference("refund", i) for i in expired], UsageStatus.RELEASED, now=now
        )
        # Failures come from the relayer and the chain, possibly after the movement was signed
        # and its reservation committed (rare: read over the limits' window only).
        released = settle_reservations(
            db,
            select(reference_of("payment", PaymentAttempt.id)).where(
                PaymentAttempt.chain_id == chain_id,
                PaymentAttempt.status == AttemptStatus.FAILED,
                PaymentAttempt.created_at > now - COUNTED_FOR,
            ),
            UsageStatus.RELEASED,
            now=now,
        )
        released += settle_reservations(
            db,
            select(reference_of("refund", Refund.id)).where(
                Refund.chain_id == chain_id,
                Refund.status == RefundStatus.FAILED,
                Refund.created_at > now - COUNTED_FOR,
            ),
            UsageStatus.RELEASED,
            now=now,
        )
        # Signed payments and refunds ride the transfers' outbox: the relayer fails the transfer
        # row that carries them.
        for kind, model in (("payment", PaymentAttempt), ("refund", Refund)):
            released += settle_reservations(
                db,
                select(reference_of(kind, model.id))
                .join(Transfer, Transfer.id == model.transfer_id)
                .where(
                    Transfer.chain_id == chain_id,
                    Transfer.status == TransferStatus.FAILED,
                    Transfer.created_at > now - COUNTED_FOR,
                ),
                UsageStatus.RELEASED,
                now=now,
            )
    if abandoned or expired or released:
        log.info(
            "payments: %d unapproved attempts abandoned, %d refunds expired, "
            "%d limit reservations of failed movements released",
            len(abandoned),
            len(expired),
            released,
        )
    return len(abandoned) + len(expired) + released


async def _loop(
    name: str, step: Callable[[], Awaitable[int]], stop: asyncio.Event, interval: float
) -> None:
    """Run ``step`` until ``stop``: again at once while it finds work, else after ``interval``."""
    while not stop.is_set():
        try:
            busy = await step()
        except Exception:
            log.exception("payments: %s failed; trying again shortly", name)
            busy = 0
            interval_now = max(interval, 2.0)
        else:
            interval_now = interval
        if busy:
            continue
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=interval_now)


async def run_payment_tasks(
    sessions: sessionmaker[Session],
    settings: PaymentSettings,
    stop: asyncio.Event,
    *,
    chain_id: int,
    http: httpx.AsyncClient | None = None,
    clock: Callable[[], float] = time.time,
) -> None:
    """Expire due invoices, send due webhooks and settle limit reservations until ``stop``."""
    owned = http is None
    client = http or httpx.AsyncClient()
    sender = WebhookSender(sessions, client, settings, clock=clock)

    async def expire() -> int:
        now = datetime.fromtimestamp(clock(), UTC)
        return await asyncio.to_thread(expire_invoices, sessions, chain_id=chain_id, now=now)

    def settle() -> int:
        now = datetime.fromtimestamp(clock(), UTC)
        window = timedelta(seconds=settings.approval_window_seconds)
        return settle_transfer_reservations(
            sessions, chain_id=chain_id, now=now
        ) + settle_payment_reservations(
            sessions, chain_id=chain_id, now=now, approval_window=window
        )

    async def reservations() -> int:
        # Work found does not make the loop spin: anything left is taken up next round.
        await asyncio.to_thread(settle)
        return 0

    try:
        async with asyncio.TaskGroup() as group:
            group.create_task(_loop("expiring invoices", expire, stop, settings.poll_seconds))
            group.create_task(
                _loop("settling limit reservations", reservations, stop, RESERVATION_SECONDS)
            )
            group.create_task(
                _loop("sending webhooks", sender.run_once, stop, settings.poll_seconds)
            )
    finally:
        if owned:
            await client.aclose()
