"""Webhooks: per-store endpoints, signed payloads, delivery from the outbox with back-off.

**Signature.** Every POST carries ``Seiwallet-Signature: t=<unix seconds>,v1=<hex>`` where the
hex is ``HMAC-SHA256(secret, f"{t}." + body)``. Receivers recompute it over the raw body and
refuse a signature older than their tolerance (5 minutes): a captured request cannot be replayed
later, and the body cannot be changed. The verification snippet in ``docs/architecture.md``
("Payments") is tested verbatim against :func:`sign`.

**Delivery.** :func:`~seiwallet.payments.events.append_event` writes one ``pending`` delivery per
subscribed endpoint in the transaction of the change. :class:`WebhookSender` (in the worker)
claims due deliveries (``FOR UPDATE SKIP LOCKED`` on PostgreSQL), POSTs them (timeout, no
redirects), logs every try (status code, latency) and reschedules failures with exponential
back-off and jitter until ``webhook_give_up_seconds`` (3 days) after the event, then ``failed``.
Receivers de-duplicate by the event id (``Seiwallet-Event-Id``, also ``id`` in the body): a
delivery can arrive twice if the receiver answered after our timeout.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import ipaddress
import logging
import random
import secrets
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Final
from urllib.parse import urlsplit

import httpx
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from seiwallet.config import PaymentSettings
from seiwallet.db import SQLITE_BEGIN, as_utc
from seiwallet.errors import InvalidInput
from seiwallet.payments.errors import (
    DeliveryNotFound,
    StoreNotFound,
    UnknownEventType,
    WebhookNotFound,
    WebhookUrlInvalid,
)
from seiwallet.payments.events import EVENT_TYPES, encode_body
from seiwallet.payments.models import (
    DeliveryStatus,
    Store,
    WebhookAttempt,
    WebhookDelivery,
    WebhookEndpoint,
)
from seiwallet.payments.permissions import Permission, Principal

log = logging.getLogger(__name__)

SIGNATURE_HEADER: Final = "Seiwallet-Signature"
EVENT_ID_HEADER: Final = "Seiwallet-Event-Id"
DELIVERY_ID_HEADER: Final = "Seiwallet-Delivery-Id"
EVENT_TYPE_HEADER: Final = "Seiwallet-Event-Type"
SECRET_PREFIX: Final = "whsec_"  # noqa: S105 - a prefix, not a secret
#: Event types an endpoint may subscribe to (``*`` = all of them).
SUBSCRIBABLE: Final = EVENT_TYPES - {"webhook.test"}
_WRITE: Final = {SQLITE_BEGIN: "IMMEDIATE"}
_DEFAULT_TOLERANCE: Final = 300


def sign(secret: str, body: bytes, timestamp: int) -> str:
    """The ``Seiwallet-Signature`` header value for ``body`` sent at ``timestamp``."""
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return f"t={timestamp},v1={mac.hexdigest()}"


def verify_signature(
    secret: str,
    header: str,
    body: bytes,
    *,
    tolerance: int = _DEFAULT_TOLERANCE,
    now: float | None = None,
) -> bool:
    """Whether ``header`` signs ``body`` with ``secret`` within ``tolerance`` seconds of ``now``.

    The same check as the documented snippet, with the clock as a parameter.
    """
    items = [part.split("=", 1) for part in header.split(",") if "=" in part]
    try:
        timestamp = int(next(value for key, value in items if key.strip() == "t"))
    except (ValueError, StopIteration):
        return False
    if abs((time.time() if now is None else now) - timestamp) > tolerance:
        return False
    expected = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return any(
        key.strip() == "v1" and hmac.compare_digest(value.strip(), expected.hexdigest())
        for key, value in items
    )


def check_url(url: str, *, allow_http: bool) -> str:
    """An endpoint URL: https (http only when allowed), a host, no credentials, no private IP."""
    text = url.strip()
    if len(text) > 2000:
        raise WebhookUrlInvalid("it is longer than 2000 characters")
    parts = urlsplit(text)
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise WebhookUrlInvalid("it must be an https:// URL")
    if parts.scheme == "http" and not allow_http:
        raise WebhookUrlInvalid("it must be https:// (plain http is for local testing only)")
    if parts.username or parts.password:
        raise WebhookUrlInvalid("put no credentials in the URL: verify our signature instead")
    try:
        address = ipaddress.ip_address(parts.hostname)
    except ValueError:
        address = None
    if address is not None and not allow_http and not address.is_global:
        raise WebhookUrlInvalid("it points at a private or local address")
    return text


def backoff(attempts: int, settings: PaymentSettings, rng: Callable[[], float]) -> float:
    """Seconds before the next try after ``attempts`` failed ones: doubling, capped, ±20 %."""
    base = min(
        settings.webhook_backoff_max_seconds,
        settings.webhook_backoff_initial_seconds * 2 ** min(max(attempts - 1, 0), 30),
    )
    return float(base * (0.8 + 0.4 * rng()))


@dataclass(frozen=True)
class EndpointView:
    id: str
    store_id: str
    url: str
    description: str
    events: tuple[str, ...]
    created_at: datetime
    disabled: bool

    @classmethod
    def of(cls, row: WebhookEndpoint) -> EndpointView:
        return cls(
            row.id,
            row.store_id,
            row.url,
            row.description,
            tuple(row.event_types.split()),
            as_utc(row.created_at),
            row.disabled_at is not None,
        )


def delivery_json(row: WebhookDelivery, attempts: Sequence[WebhookAttempt] = ()) -> dict[str, Any]:
    return {
        "id": row.id,
        "endpoint_id": row.endpoint_id,
        "event_id": f"evt_{row.event_id}" if row.event_id is not None else None,
        "event_type": row.event_type,
        "status": str(row.status),
        "attempts": row.attempts,
        "last_status_code": row.last_status_code,
        "last_error": row.last_error,
        "next_attempt_at": as_utc(row.next_attempt_at).isoformat()
        if row.next_attempt_at and row.status is DeliveryStatus.PENDING
        else None,
        "redelivery_of": row.redelivery_of,
        "created_at": as_utc(row.created_at).isoformat(),
        "delivered_at": as_utc(row.delivered_at).isoformat() if row.delivered_at else None,
        "log": [
            {
                "at": as_utc(a.attempted_at).isoformat(),
                "status_code": a.status_code,
                "latency_ms": a.latency_ms,
                "error": a.error,
            }
            for a in attempts
        ],
    }


class WebhookService:
    """Endpoints, their deliveries (log, redelivery) and test events."""

    def __init__(
        self,
        sessions: sessionmaker[Session],
        *,
        allow_http: bool,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._sessions = sessions
        self.allow_http = allow_http
        self._clock = clock

    def _now(self) -> datetime:
        return datetime.fromtimestamp(self._clock(), UTC)

    def create(
        self,
        principal: Principal,
        store_id: str,
        *,
        url: str,
        events: Sequence[str],
        description: str = "",
    ) -> tuple[EndpointView, str]:
        """A new endpoint and its signing secret (shown this once)."""
        principal.require(Permission.WEBHOOKS_MANAGE, store_id)
        checked = check_url(url, allow_http=self.allow_http)
        names = sorted(set(events))
        if not names:
            raise InvalidInput("choose at least one event type (or '*' for all)")
        for name in names:
            if name != "*" and name not in SUBSCRIBABLE:
                raise UnknownEventType(name, SUBSCRIBABLE)
        if len(description) > 200:
            raise InvalidInput("a description is at most 200 characters")
        secret = SECRET_PREFIX + secrets.token_urlsafe(32)
        with self._sessions.begin() as db:
            store = db.get(Store, store_id)
            if store is None or store.merchant_id != principal.merchant_id:
                raise StoreNotFound
            row = WebhookEndpoint(
                id=uuid.uuid4().hex,
                merchant_id=principal.merchant_id,
                store_id=store_id,
                url=checked,
                description=description,
                event_types=" ".join(names),
                secret=secret,
                created_at=self._now(),
            )
            db.add(row)
        return EndpointView.of(row), secret

    def _endpoint(self, db: Session, principal: Principal, endpoint_id: str) -> WebhookEndpoint:
        row = db.get(WebhookEndpoint, endpoint_id)
        if row is None or row.merchant_id != principal.merchant_id:
            raise WebhookNotFound
        principal.require(Permission.WEBHOOKS_MANAGE, row.store_id)
        return row

    def endpoints(self, principal: Principal, store_id: str) -> list[EndpointView]:
        principal.require(Permission.WEBHOOKS_MANAGE, store_id)
        with self._sessions() as db:
            rows = db.scalars(
                select(WebhookEndpoint)
                .where(
                    WebhookEndpoint.store_id == store_id,
                    WebhookEndpoint.merchant_id == principal.merchant_id,
                )
                .order_by(WebhookEndpoint.created_at)
            ).all()
            return [EndpointView.of(r) for r in rows]

    def disable(self, principal: Principal, endpoint_id: str) -> EndpointView:
        with self._sessions.begin() as db:
            row = self._endpoint(db, principal, endpoint_id)
            if row.disabled_at is None:
                row.disabled_at = self._now()
            return EndpointView.of(row)

    def deliveries(
        self, principal: Principal, endpoint_id: str, limit: int = 50
    ) -> list[dict[str, Any]]:
        with self._sessions() as db:
            self._endpoint(db, principal, endpoint_id)
            rows = db.scalars(
                select(WebhookDelivery)
                .where(WebhookDelivery.endpoint_id == endpoint_id)
                .order_by(WebhookDelivery.created_at.desc())
                .limit(max(1, min(limit, 200)))
            ).all()
            attempts: dict[str, list[WebhookAttempt]] = {r.id: [] for r in rows}
            if rows:
                for attempt in db.scalars(
                    select(WebhookAttempt)
                    .where(WebhookAttempt.delivery_id.in_(list(attempts)))
                    .order_by(WebhookAttempt.id)
                ):
                    attempts[attempt.delivery_id].append(attempt)
            return [delivery_json(r, attempts[r.id]) for r in rows]

    def redeliver(self, principal: Principal, delivery_id: str) -> dict[str, Any]:
        """Queue the same event (same body and event id) to the endpoint again, now."""
        now = self._now()
        with self._sessions.begin() as db:
            original = db.get(WebhookDelivery, delivery_id)
            if original is None or original.merchant_id != principal.merchant_id:
                raise DeliveryNotFound
            self._endpoint(db, principal, original.endpoint_id)
            row = WebhookDelivery(
                id=uuid.uuid4().hex,
                endpoint_id=original.endpoint_id,
                merchant_id=original.merchant_id,
                event_id=original.event_id,
                event_type=original.event_type,
                payload=original.payload,
                status=DeliveryStatus.PENDING,
                attempts=0,
                next_attempt_at=now,
                redelivery_of=original.id,
                created_at=now,
            )
            db.add(row)
            db.flush()
            return delivery_json(row)

    def test_event(self, principal: Principal, endpoint_id: str) -> str:
        """Queue a ``webhook.test`` event for this endpoint only; the delivery's id."""
        now = self._now()
        with self._sessions.begin() as db:
            endpoint = self._endpoint(db, principal, endpoint_id)
            delivery_id = uuid.uuid4().hex
            body = encode_body(
                {
                    "id": f"evt_test_{delivery_id}",
                    "type": "webhook.test",
                    "created_at": now.isoformat(),
                    "store_id": endpoint.store_id,
                    "data": {"message": "a test event from seiwallet: your endpoint works"},
                }
            )
            db.add(
                WebhookDelivery(
                    id=delivery_id,
                    endpoint_id=endpoint.id,
                    merchant_id=endpoint.merchant_id,
                    event_id=None,
                    event_type="webhook.test",
                    payload=body,
                    status=DeliveryStatus.PENDING,
                    attempts=0,
                    next_attempt_at=now,
                    created_at=now,
                )
            )
        return delivery_id

    def store_of(self, endpoint_id: str) -> str | None:
        """The store an endpoint belongs to (to decide who may manage it)."""
        with self._sessions() as db:
            row = db.get(WebhookEndpoint, endpoint_id)
            return row.store_id if row is not None else None

    def endpoint_of_delivery(self, delivery_id: str) -> str:
        with self._sessions() as db:
            row = db.get(WebhookDelivery, delivery_id)
            if row is None:
                raise DeliveryNotFound
            return row.endpoint_id

    def delivery(self, principal: Principal, delivery_id: str) -> dict[str, Any]:
        with self._sessions() as db:
            row = db.get(WebhookDelivery, delivery_id)
            if row is None or row.merchant_id != principal.merchant_id:
                raise DeliveryNotFound
            self._endpoint(db, principal, row.endpoint_id)
            attempts = db.scalars(
                select(WebhookAttempt)
                .where(WebhookAttempt.delivery_id == row.id)
                .order_by(WebhookAttempt.id)
            ).all()
            return delivery_json(row, attempts)


@dataclass(frozen=True)
class _Outgoing:
    id: str
    url: str
    secret: str
    payload: str
    event_id: str
    event_type: str
    attempts: int
    created_at: datetime
    disabled: bool


@dataclass(frozen=True)
class _Result:
    status_code: int | None
    latency_ms: int
    error: str | None

    @property
    def ok(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300


class WebhookSender:
    """Sends due deliveries from the outbox (the worker's task; also a test event at once)."""

    def __init__(
        self,
        sessions: sessionmaker[Session],
        http: httpx.AsyncClient,
        settings: PaymentSettings,
        *,
        clock: Callable[[], float] = time.time,
        rng: Callable[[], float] = random.random,
    ) -> None:
        self._sessions = sessions
        self._http = http
        self.settings = settings
        self._clock = clock
        self._rng = rng

    def _now(self) -> datetime:
        return datetime.fromtimestamp(self._clock(), UTC)

    def _claim(self, limit: int, only: str | None = None) -> list[_Outgoing]:
        now = self._now()
        hold = timedelta(seconds=self.settings.webhook_timeout_seconds + 30)
        due = [
            WebhookDelivery.status == DeliveryStatus.PENDING,
            WebhookDelivery.next_attempt_at <= now,
        ]
        if only is not None:
            due.append(WebhookDelivery.id == only)
        # A read first: the writer's lock (one per SQLite database) is taken only with work.
        with self._sessions() as db:
            if db.scalar(select(WebhookDelivery.id).where(*due).limit(1)) is None:
                return []
        with self._sessions.begin() as db:
            db.connection(execution_options=_WRITE)
            query = select(WebhookDelivery).where(*due)
            rows = list(
                db.scalars(
                    query.order_by(WebhookDelivery.next_attempt_at)
                    .limit(limit)
                    .with_for_update(skip_locked=True)
                )
            )
            work: list[_Outgoing] = []
            for row in rows:
                endpoint = db.get(WebhookEndpoint, row.endpoint_id)
                if endpoint is None:  # pragma: no cover - a foreign key
                    continue
                row.next_attempt_at = now + hold
                work.append(
                    _Outgoing(
                        id=row.id,
                        url=endpoint.url,
                        secret=endpoint.secret,
                        payload=row.payload,
                        event_id=f"evt_{row.event_id}" if row.event_id is not None else "test",
                        event_type=row.event_type,
                        attempts=row.attempts,
                        created_at=as_utc(row.created_at),
                        disabled=endpoint.disabled_at is not None,
                    )
                )
            return work

    async def _post(self, item: _Outgoing) -> _Result:
        body = item.payload.encode()
        headers = {
            "Content-Type": "application/json",
            "User-Agent": "seiwallet-webhooks/1",
            SIGNATURE_HEADER: sign(item.secret, body, int(self._clock())),
            EVENT_ID_HEADER: item.event_id,
            DELIVERY_ID_HEADER: item.id,
            EVENT_TYPE_HEADER: item.event_type,
        }
        began = time.perf_counter()
        try:
            response = await self._http.post(
                item.url,
                content=body,
                headers=headers,
                timeout=self.settings.webhook_timeout_seconds,
                follow_redirects=False,
            )
        except httpx.TimeoutException:
            return _Result(None, _ms(began), "timed out")
        except httpx.HTTPError as exc:
            return _Result(None, _ms(began), f"{type(exc).__name__}: {exc}"[:300])
        return _Result(response.status_code, _ms(began), None)

    def _record(self, item: _Outgoing, result: _Result) -> None:
        now = self._now()
        with self._sessions.begin() as db:
            db.connection(execution_options=_WRITE)
            row = db.get(WebhookDelivery, item.id)
            if row is None or row.status is not DeliveryStatus.PENDING:  # pragma: no cover
                return
            db.add(
                WebhookAttempt(
                    delivery_id=item.id,
                    attempted_at=now,
                    status_code=result.status_code,
                    latency_ms=result.latency_ms,
                    error=result.error,
                )
            )
            row.attempts += 1
            row.last_status_code = result.status_code
            row.last_error = result.error
            if result.ok:
                row.status = DeliveryStatus.DELIVERED
                row.delivered_at = now
                row.next_attempt_at = None
                return
            delay = backoff(row.attempts, self.settings, self._rng)
            give_up = as_utc(row.created_at) + timedelta(
                seconds=self.settings.webhook_give_up_seconds
            )
            if now + timedelta(seconds=delay) > give_up:
                row.status = DeliveryStatus.FAILED
                row.next_attempt_at = None
                log.warning(
                    "webhook delivery %s failed for good after %d tries", row.id, row.attempts
                )
            else:
                row.next_attempt_at = now + timedelta(seconds=delay)

    def _give_up(self, item: _Outgoing, why: str) -> None:
        with self._sessions.begin() as db:
            row = db.get(WebhookDelivery, item.id)
            if row is not None and row.status is DeliveryStatus.PENDING:
                row.status = DeliveryStatus.FAILED
                row.last_error = why
                row.next_attempt_at = None

    async def _send(self, item: _Outgoing) -> bool:
        if item.disabled:
            await asyncio.to_thread(self._give_up, item, "the endpoint was removed")
            return False
        result = await self._post(item)
        await asyncio.to_thread(self._record, item, result)
        return result.ok

    async def run_once(self, limit: int = 50) -> int:
        """Send the due deliveries (up to ``limit``, concurrently); how many were tried."""
        work = await asyncio.to_thread(self._claim, limit)
        if work:
            await asyncio.gather(*(self._send(item) for item in work))
        return len(work)

    async def deliver_now(self, delivery_id: str) -> bool:
        """Try one delivery right away (the test event), if it is due and not taken."""
        work = await asyncio.to_thread(self._claim, 1, delivery_id)
        return bool(work) and await self._send(work[0])


def _ms(began: float) -> int:
    return max(0, int((time.perf_counter() - began) * 1000))
