"""The development webhook receiver's storage: what ``POST /dev-webhooks/{name}`` received.

On the ``local`` profile a store's webhook endpoint can point at this server itself
(``{public_url}/dev-webhooks/<name>``), so a person trying the platform sees the deliveries a
merchant's systems would get, without running a server of their own. Each delivery is kept with
its headers, body and time, and its signature is checked the way a merchant's receiver would:
against the secret of the endpoint(s) whose URL is this receiver's, within the documented
tolerance, at the moment it arrives. The receiver reads the payments domain's endpoints and
changes nothing of theirs.

The table is a development tool's: it is pruned to the newest :data:`KEEP` deliveries, and no
other profile ever writes it (the receiver and its page answer 404 there).
"""

from __future__ import annotations

import asyncio
import enum
import json
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final
from urllib.parse import urlsplit

from sqlalchemy import BigInteger, DateTime, Integer, String, Text, delete, select
from sqlalchemy.orm import Mapped, Session, mapped_column, sessionmaker
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from seiwallet.api.problems import problem
from seiwallet.db import SQLITE_BEGIN, as_utc
from seiwallet.db.base import Base
from seiwallet.payments.models import Store, WebhookEndpoint
from seiwallet.payments.webhooks import (
    DELIVERY_ID_HEADER,
    EVENT_ID_HEADER,
    EVENT_TYPE_HEADER,
    SIGNATURE_HEADER,
    verify_signature,
)

#: A receiver's name: lower-case letters, digits and dashes (it is a URL path segment, and
#: never contains SQL ``LIKE`` wildcards).
NAME: Final = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,62}[a-z0-9])?$")
#: The newest deliveries kept (all receivers together); older ones are deleted on arrival.
KEEP: Final = 1000
#: A body larger than this is refused (413): our own payloads are a few KiB.
MAX_BODY_BYTES: Final = 256 * 1024
#: The replay window a receiver applies (the documented snippet's default).
TOLERANCE_SECONDS: Final = 300
#: Headers that could carry someone's credentials are never stored.
_REDACTED: Final = frozenset({"authorization", "cookie", "proxy-authorization"})
_WRITE: Final = {SQLITE_BEGIN: "IMMEDIATE"}


class SignatureCheck(enum.StrEnum):
    """What checking a delivery's ``Seiwallet-Signature`` found."""

    #: Signed with the secret of an endpoint at this URL, within the tolerance.
    VALID = "valid"
    #: Signed with such a secret, but too long ago (or ahead): a replay would look like this.
    STALE = "stale"
    #: No endpoint's secret at this URL gives this signature: forged, or changed on the way.
    INVALID = "invalid"
    #: The request carried no signature header.
    MISSING = "missing"
    #: No store has an endpoint with this receiver's URL, so there is no secret to check with.
    NO_ENDPOINT = "no_endpoint"


def _bigint_id() -> Any:
    return BigInteger().with_variant(Integer(), "sqlite")


class DevWebhookDelivery(Base):
    """One request the development webhook receiver got (``local`` only)."""

    __tablename__ = "dev_webhook_deliveries"

    id: Mapped[int] = mapped_column(_bigint_id(), primary_key=True, autoincrement=True)
    #: The receiver's name: the last segment of ``/dev-webhooks/<name>``.
    name: Mapped[str] = mapped_column(String(64), index=True)
    received_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    event_type: Mapped[str | None] = mapped_column(String(64), nullable=True)
    event_id: Mapped[str | None] = mapped_column(String(100), nullable=True)
    delivery_id: Mapped[str | None] = mapped_column(String(100), nullable=True)
    #: The request's headers as a JSON object (credentials left out).
    headers: Mapped[str] = mapped_column(Text)
    #: The raw body, decoded as UTF-8 (undecodable bytes replaced).
    body: Mapped[str] = mapped_column(Text)
    signature: Mapped[str] = mapped_column(String(16))
    #: The endpoint whose secret verified the signature, if one did.
    endpoint_id: Mapped[str | None] = mapped_column(String(32), nullable=True)


@dataclass(frozen=True)
class ReceivedWebhook:
    """A delivery as the ``/dev-webhooks`` page shows it."""

    id: int
    name: str
    received_at: datetime
    event_type: str | None
    event_id: str | None
    delivery_id: str | None
    signature: SignatureCheck
    endpoint_id: str | None
    store_name: str | None
    headers: dict[str, str]
    body: str

    @property
    def pretty_body(self) -> str:
        """The body as indented JSON, or as it came when it is not JSON."""
        try:
            parsed = json.loads(self.body)
        except ValueError:
            return self.body
        return json.dumps(parsed, indent=2, ensure_ascii=False)


def check_signature(
    header: str | None,
    body: bytes,
    secrets: Mapping[str, str],
    *,
    now: float,
    tolerance: int = TOLERANCE_SECONDS,
) -> tuple[SignatureCheck, str | None]:
    """Check ``header`` over ``body`` against each endpoint's secret (``{endpoint id: secret}``).

    Answers the verdict and the endpoint whose secret signed it. A signature that matches only
    outside ``tolerance`` is ``STALE``, told apart from one that matches nothing.
    """
    if not header:
        return SignatureCheck.MISSING, None
    if not secrets:
        return SignatureCheck.NO_ENDPOINT, None
    for endpoint_id, secret in secrets.items():
        if verify_signature(secret, header, body, tolerance=tolerance, now=now):
            return SignatureCheck.VALID, endpoint_id
    for endpoint_id, secret in secrets.items():
        # Any age at all: the signature is right, only the time is not.
        if verify_signature(secret, header, body, tolerance=2**62, now=now):
            return SignatureCheck.STALE, endpoint_id
    return SignatureCheck.INVALID, None


class DevWebhookInbox:
    """Records deliveries to ``/dev-webhooks/<name>`` and lists them, newest first."""

    def __init__(
        self,
        sessions: sessionmaker[Session],
        *,
        public_url: str,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._sessions = sessions
        self.public_url = public_url.rstrip("/")
        self._clock = clock

    def url_of(self, name: str) -> str:
        """The URL a store's webhook endpoint names to deliver to the receiver ``name``."""
        return f"{self.public_url}/dev-webhooks/{name}"

    def _secrets(self, db: Session, name: str) -> dict[str, str]:
        """The secrets of the endpoints that deliver here (any host: localhost or 127.0.0.1)."""
        path = f"/dev-webhooks/{name}"
        rows = db.execute(
            select(WebhookEndpoint.id, WebhookEndpoint.url, WebhookEndpoint.secret)
            .where(WebhookEndpoint.url.like(f"%{path}"))
            .order_by(WebhookEndpoint.created_at.desc())
        ).all()
        return {
            endpoint_id: secret
            for endpoint_id, url, secret in rows
            if urlsplit(url).path.rstrip("/") == path
        }

    def record(self, name: str, headers: Mapping[str, str], body: bytes) -> ReceivedWebhook:
        """Keep one delivery (its signature checked now) and prune the oldest beyond KEEP."""
        if not NAME.match(name):
            raise ValueError(f"not a receiver name: {name!r}")
        now = self._clock()
        lowered = {key.lower(): value for key, value in headers.items()}
        event_type = lowered.get(EVENT_TYPE_HEADER.lower())
        if event_type is None:
            event_type = _body_type(body)
        kept = {key: value for key, value in lowered.items() if key not in _REDACTED}
        with self._sessions.begin() as db:
            db.connection(execution_options=_WRITE)
            verdict, endpoint_id = check_signature(
                lowered.get(SIGNATURE_HEADER.lower()), body, self._secrets(db, name), now=now
            )
            row = DevWebhookDelivery(
                name=name,
                received_at=datetime.fromtimestamp(now, UTC),
                event_type=(event_type or None) and event_type[:64],
                event_id=_short(lowered.get(EVENT_ID_HEADER.lower())),
                delivery_id=_short(lowered.get(DELIVERY_ID_HEADER.lower())),
                headers=json.dumps(kept, sort_keys=True),
                body=body.decode("utf-8", errors="replace"),
                signature=str(verdict),
                endpoint_id=endpoint_id,
            )
            db.add(row)
            db.flush()
            db.execute(delete(DevWebhookDelivery).where(DevWebhookDelivery.id <= row.id - KEEP))
            store_name = (
                db.scalar(
                    select(Store.name)
                    .join(WebhookEndpoint, WebhookEndpoint.store_id == Store.id)
                    .where(WebhookEndpoint.id == endpoint_id)
                )
                if endpoint_id is not None
                else None
            )
            return _view(row, store_name)

    def deliveries(self, name: str | None = None, limit: int = 50) -> list[ReceivedWebhook]:
        """The newest deliveries (to ``name`` only, if given)."""
        with self._sessions() as db:
            query = (
                select(DevWebhookDelivery, Store.name)
                .outerjoin(WebhookEndpoint, WebhookEndpoint.id == DevWebhookDelivery.endpoint_id)
                .outerjoin(Store, Store.id == WebhookEndpoint.store_id)
                .order_by(DevWebhookDelivery.id.desc())
            )
            if name is not None:
                query = query.where(DevWebhookDelivery.name == name)
            return [_view(row, store) for row, store in db.execute(query.limit(max(1, limit)))]


def _view(row: DevWebhookDelivery, store_name: str | None) -> ReceivedWebhook:
    return ReceivedWebhook(
        id=row.id,
        name=row.name,
        received_at=as_utc(row.received_at),
        event_type=row.event_type,
        event_id=row.event_id,
        delivery_id=row.delivery_id,
        signature=SignatureCheck(row.signature),
        endpoint_id=row.endpoint_id,
        store_name=store_name,
        headers=json.loads(row.headers),
        body=row.body,
    )


def _short(value: str | None) -> str | None:
    return value[:100] if value else None


def _body_type(body: bytes) -> str | None:
    """The ``type`` of a JSON body (for senders that do not set the event-type header)."""
    try:
        parsed = json.loads(body)
    except ValueError:
        return None
    found = parsed.get("type") if isinstance(parsed, dict) else None
    return found if isinstance(found, str) else None


async def receive(inbox: DevWebhookInbox | None, request: Request) -> Response:
    """``POST /dev-webhooks/{name}``: keep the delivery and answer 200 at once, as receivers
    should; 404 outside the ``local`` profile or for a name that is not one."""
    name = str(request.path_params.get("name", ""))
    if inbox is None or not NAME.match(name):
        return problem(
            404,
            "http.404",
            "Not found",
            "the development webhook receiver exists on the local profile only, "
            "at /dev-webhooks/<name> (lower-case letters, digits and dashes)",
            instance=request.url.path,
        )
    body = await request.body()
    if len(body) > MAX_BODY_BYTES:
        return problem(
            413,
            "http.413",
            "Payload too large",
            f"a delivery is at most {MAX_BODY_BYTES} bytes",
            instance=request.url.path,
        )
    received = await asyncio.to_thread(inbox.record, name, dict(request.headers), body)
    return JSONResponse({"received": received.id, "signature": str(received.signature)})


def receiver_app(inbox: DevWebhookInbox) -> Starlette:
    """The receiver alone, for the API process's in-process HTTP client (its test events)."""

    async def endpoint(request: Request) -> Response:
        return await receive(inbox, request)

    return Starlette(routes=[Route("/{name}", endpoint, methods=["POST"])])
