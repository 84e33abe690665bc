"""Payment events: appended with every state change, fanned out to webhooks and live streams.

:func:`append_event` runs inside the transaction that changes the invoice or refund, and in it

* inserts the :class:`PaymentEvent` row (its ``id`` orders events and is the SSE event id);
* inserts one :class:`WebhookDelivery` per subscribed endpoint of the store (the outbox: a
  crash loses no webhook, and none is queued for a change that rolled back);
* on PostgreSQL, ``pg_notify``\\ s the event id, delivered to listeners at commit only.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

from sqlalchemy import select, text
from sqlalchemy.orm import Session

from seiwallet.db import as_utc
from seiwallet.payments.models import (
    DeliveryStatus,
    PaymentEvent,
    WebhookDelivery,
    WebhookEndpoint,
)

#: The PostgreSQL channel payment events are announced on (payload: the event id).
NOTIFY_CHANNEL: Final = "seiwallet_payment_events"

#: Every event type, for webhook subscriptions and the live streams.
EVENT_TYPES: Final = frozenset(
    {
        "invoice.created",
        "invoice.processing",
        "invoice.settled",
        "invoice.expired",
        "invoice.invalid",
        "invoice.partially_refunded",
        "invoice.refunded",
        "invoice.anomaly",
        "refund.created",
        "refund.signed",
        "refund.settled",
        "refund.failed",
        "webhook.test",
    }
)


@dataclass(frozen=True)
class EventView:
    """A payment event as streams and webhooks carry it."""

    id: int
    type: str
    merchant_id: str
    store_id: str
    invoice_id: str | None
    terminal_id: str | None
    data: Mapping[str, Any]
    created_at: datetime

    @classmethod
    def of(cls, row: PaymentEvent) -> EventView:
        return cls(
            id=row.id,
            type=row.type,
            merchant_id=row.merchant_id,
            store_id=row.store_id,
            invoice_id=row.invoice_id,
            terminal_id=row.terminal_id,
            data=row.data,
            created_at=as_utc(row.created_at),
        )

    def body(self) -> dict[str, Any]:
        """The JSON document webhooks POST and live streams send as ``data``."""
        return {
            "id": f"evt_{self.id}",
            "type": self.type,
            "created_at": self.created_at.astimezone(UTC).isoformat(),
            "store_id": self.store_id,
            "data": dict(self.data),
        }


def encode_body(document: Mapping[str, Any]) -> str:
    """One compact JSON encoding, the exact bytes that are signed and sent."""
    return json.dumps(document, separators=(",", ":"), sort_keys=True, ensure_ascii=False)


def subscribed(event_types: str, event_type: str) -> bool:
    names = event_types.split()
    return "*" in names or event_type in names


def append_event(
    session: Session,
    *,
    type: str,
    merchant_id: str,
    store_id: str,
    data: Mapping[str, Any],
    invoice_id: str | None = None,
    terminal_id: str | None = None,
    now: datetime | None = None,
) -> PaymentEvent:
    """Record an event (with its webhook deliveries) in ``session``'s transaction."""
    if type not in EVENT_TYPES:  # pragma: no cover - a programming error
        raise ValueError(f"unknown payment event type {type!r}")
    moment = now or datetime.now(UTC)
    row = PaymentEvent(
        merchant_id=merchant_id,
        store_id=store_id,
        invoice_id=invoice_id,
        terminal_id=terminal_id,
        type=type,
        data=dict(data),
        created_at=moment,
    )
    session.add(row)
    session.flush()
    endpoints = session.scalars(
        select(WebhookEndpoint).where(
            WebhookEndpoint.store_id == store_id, WebhookEndpoint.disabled_at.is_(None)
        )
    ).all()
    body = encode_body(EventView.of(row).body())
    for endpoint in endpoints:
        if subscribed(endpoint.event_types, type):
            session.add(
                WebhookDelivery(
                    id=uuid.uuid4().hex,
                    endpoint_id=endpoint.id,
                    merchant_id=merchant_id,
                    event_id=row.id,
                    event_type=type,
                    payload=body,
                    status=DeliveryStatus.PENDING,
                    attempts=0,
                    next_attempt_at=moment,
                    created_at=moment,
                )
            )
    if session.get_bind().dialect.name == "postgresql":
        # Delivered at commit, and only if the transaction commits.
        session.execute(
            text("SELECT pg_notify(:channel, :payload)"),
            {"channel": NOTIFY_CHANNEL, "payload": str(row.id)},
        )
    return row
