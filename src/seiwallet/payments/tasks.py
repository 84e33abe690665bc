"""The payments domain's background jobs, run by the worker: expiring invoices, sending webhooks.

:func:`run_payment_tasks` is what the worker's task group starts; each loop survives a database
or network hiccup (logged, retried after a pause) and stops when ``stop`` is set.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

import httpx
from sqlalchemy.orm import Session, sessionmaker

from seiwallet.config import PaymentSettings
from seiwallet.payments.invoices import expire_invoices
from seiwallet.payments.webhooks import WebhookSender

log = logging.getLogger(__name__)


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
    """Expire due invoices and send due webhooks until ``stop`` is set."""
    owned = http is None
    client = http or httpx.AsyncClient()
    sender = WebhookSender(sessions, client, settings, clock=clock)

    async def expire() -> int:
        now = datetime.fromtimestamp(clock(), UTC)
        return await asyncio.to_thread(expire_invoices, sessions, chain_id=chain_id, now=now)

    try:
        async with asyncio.TaskGroup() as group:
            group.create_task(_loop("expiring invoices", expire, stop, settings.poll_seconds))
            group.create_task(
                _loop("sending webhooks", sender.run_once, stop, settings.poll_seconds)
            )
    finally:
        if owned:
            await client.aclose()
