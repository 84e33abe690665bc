"""Store API keys (``swk_…``): scoped, shown once, kept as SHA-256, revocable; rate limited.

A key is a random 256-bit secret with a recognisable prefix (a leaked key can be found in logs
and revoked). Only its SHA-256 is stored, so a copy of the table authenticates nobody. A key
acts as a :class:`~seiwallet.payments.permissions.Principal` limited to its store and scopes.

:class:`RateLimiter` is a token bucket per key: ``rate`` requests per second sustained, ``burst``
at once. It lives in the API process (as the recipient-lookup limiter does): with N processes
behind a balancer a key gets N buckets, which bounds abuse all the same.
"""

from __future__ import annotations

import asyncio
import hashlib
import math
import secrets
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Final

from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from seiwallet.db import as_utc, offload
from seiwallet.errors import InvalidInput
from seiwallet.payments.errors import ApiKeyInvalid, ApiKeyNotFound, RateLimited, StoreNotFound
from seiwallet.payments.models import ApiKey, Store
from seiwallet.payments.permissions import Permission, Principal, parse_scopes

#: Prefix of every API key: recognisable in a leaked log or repository.
KEY_PREFIX: Final = "swk_"
#: Refresh ``last_used_at`` at most this often.
_USED_GRANULARITY: Final = timedelta(minutes=1)


def key_hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


@dataclass(frozen=True)
class ApiKeyView:
    id: str
    store_id: str
    name: str
    prefix: str
    scopes: tuple[str, ...]
    created_at: datetime
    last_used_at: datetime | None
    revoked: bool

    @classmethod
    def of(cls, row: ApiKey) -> ApiKeyView:
        return cls(
            id=row.id,
            store_id=row.store_id,
            name=row.name,
            prefix=row.prefix,
            scopes=tuple(sorted(row.scopes.split())),
            created_at=as_utc(row.created_at),
            last_used_at=as_utc(row.last_used_at) if row.last_used_at else None,
            revoked=row.revoked_at is not None,
        )


class ApiKeyService:
    """Create, list, revoke and authenticate store API keys."""

    def __init__(
        self, sessions: sessionmaker[Session], *, clock: Callable[[], float] = time.time
    ) -> None:
        self._sessions = sessions
        self._clock = clock

    def _now(self) -> datetime:
        return datetime.fromtimestamp(self._clock(), UTC)

    def create(
        self, principal: Principal, store_id: str, name: str, scopes: list[str]
    ) -> tuple[ApiKeyView, str]:
        """A new key for the store: its view and the secret, which is never shown again."""
        principal.require(Permission.KEYS_MANAGE, store_id)
        if principal.user_id is None:  # pragma: no cover - keys:manage is never a key scope
            raise InvalidInput("API keys are made by people, not by other keys")
        wanted = parse_scopes(scopes)
        label = " ".join(name.split())
        if not label or len(label) > 100:
            raise InvalidInput("name the key (1 to 100 characters), e.g. 'web shop'")
        secret = KEY_PREFIX + secrets.token_urlsafe(32)
        with self._sessions.begin() as db:
            store = db.get(Store, store_id)
            if store is None or store.merchant_id != principal.merchant_id:
                raise StoreNotFound
            row = ApiKey(
                id=uuid.uuid4().hex,
                merchant_id=principal.merchant_id,
                store_id=store_id,
                name=label,
                prefix=secret[:12],
                secret_hash=key_hash(secret),
                scopes=" ".join(sorted(wanted)),
                created_by_user_id=principal.user_id,
                created_at=self._now(),
            )
            db.add(row)
        return ApiKeyView.of(row), secret

    def keys(self, principal: Principal, store_id: str) -> list[ApiKeyView]:
        principal.require(Permission.KEYS_MANAGE, store_id)
        with self._sessions() as db:
            rows = db.scalars(
                select(ApiKey)
                .where(ApiKey.store_id == store_id, ApiKey.merchant_id == principal.merchant_id)
                .order_by(ApiKey.created_at)
            ).all()
            return [ApiKeyView.of(r) for r in rows]

    def revoke(self, principal: Principal, key_id: str) -> ApiKeyView:
        with self._sessions.begin() as db:
            row = db.get(ApiKey, key_id)
            if row is None or row.merchant_id != principal.merchant_id:
                raise ApiKeyNotFound
            principal.require(Permission.KEYS_MANAGE, row.store_id)
            if row.revoked_at is None:
                row.revoked_at = self._now()
            return ApiKeyView.of(row)

    def authenticate(self, secret: str) -> Principal:
        """The principal of a presented key; ApiKeyInvalid if unknown, revoked or malformed."""
        principal, stale = self._live(secret)
        if stale:
            self._used(principal)
        return principal

    async def authenticate_on_loop(self, secret: str) -> Principal:
        """:meth:`authenticate` from the event loop: the read where ``db.offload`` runs reads
        (in place on a SQLite file), the once-a-minute write in a thread."""
        principal, stale = await offload.read(self._sessions, self._live, secret)
        if stale:
            await asyncio.to_thread(self._used, principal)
        return principal

    def _live(self, secret: str) -> tuple[Principal, bool]:
        """The key's principal, and whether its last use is to be recorded: reads only."""
        if not secret.startswith(KEY_PREFIX) or len(secret) > 100:
            raise ApiKeyInvalid
        now = self._now()
        with self._sessions() as db:
            row = db.scalars(select(ApiKey).where(ApiKey.secret_hash == key_hash(secret))).first()
            if row is None or row.revoked_at is not None:
                raise ApiKeyInvalid
            principal = Principal(
                merchant_id=row.merchant_id,
                actor=f"key:{row.id}",
                permissions=frozenset(Permission(s) for s in row.scopes.split()),
                store_ids=frozenset({row.store_id}),
                api_key_id=row.id,
            )
            stale = row.last_used_at is None or as_utc(row.last_used_at) < now - _USED_GRANULARITY
        return principal, stale

    def _used(self, principal: Principal) -> None:
        """Record the key's use (at most once a minute, the caller checked)."""
        now = self._now()
        with self._sessions.begin() as db:
            db.execute(
                update(ApiKey)
                .where(ApiKey.id == principal.api_key_id)
                .values(last_used_at=now)
                .execution_options(synchronize_session=False)
            )


class RateLimiter:
    """A token bucket per key: ``rate`` per second sustained, ``burst`` at once."""

    def __init__(
        self, rate: float, burst: int, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        if rate <= 0 or burst < 1:
            raise ValueError("a rate limit needs a positive rate and a burst of at least 1")
        self.rate = rate
        self.burst = burst
        self._clock = clock
        self._buckets: dict[str, tuple[float, float]] = {}
        self._lock = threading.Lock()

    def take(self, key: str) -> None:
        """Spend one token of ``key``'s bucket, or raise RateLimited with when to come back."""
        now = self._clock()
        with self._lock:
            tokens, last = self._buckets.get(key, (float(self.burst), now))
            tokens = min(float(self.burst), tokens + (now - last) * self.rate)
            if tokens < 1.0:
                self._buckets[key] = (tokens, now)
                raise RateLimited(max(1, math.ceil((1.0 - tokens) / self.rate)))
            self._buckets[key] = (tokens - 1.0, now)
            if len(self._buckets) > 100_000:  # forget idle keys rather than grow without end
                full = [k for k, (t, at) in self._buckets.items() if t >= self.burst - 1]
                for stale in full[:50_000]:
                    del self._buckets[stale]
