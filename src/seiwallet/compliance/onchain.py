"""What the gate reads from the chain: the issuer's blacklist and balances (for balance caps).

:class:`RpcTokenReader` is the gate's :class:`~seiwallet.compliance.gate.TokenReader` on a
JSON-RPC node: FiatToken's ``isBlacklisted(address)`` and ``balanceOf(address)`` as
``eth_call``\\ s in one JSON-RPC batch, with a short cache (a blacklisting takes effect within
``ttl`` seconds; the token itself refuses a blacklisted party at once, so the cache only delays
our *warning*). It is synchronous because the gate is: call the gate off the event loop
(``ComplianceGate.acheck``). A node that does not answer makes the reader say "unknown"
(``None``): the gate then relies on the token refusing the transfer and on the relayer's
simulation, which reads the same flag.

A process with an event loop and a JSON-RPC client (the API) attaches it (:meth:`use`) and warms
the cache before the gate runs (:meth:`prefetch`, through ``ComplianceGate.prefetch``): the flags
a movement needs are read as ``eth_call`` requests of that loop, coalesced with every other read of
the same turn (balances, other people's flags) into one JSON-RPC batch, instead of one
blocking HTTP round trip per address from the gate's thread.
"""

from __future__ import annotations

import asyncio
import logging
import re
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Final

import httpx
from eth_abi.abi import decode as abi_decode

from seiwallet.chain.tokens import encode_call, is_blacklisted
from seiwallet.compliance.gate import NotCached, cache_only

if TYPE_CHECKING:
    from seiwallet.chain.rpc import RpcClient

log = logging.getLogger(__name__)

DEFAULT_TTL: Final = 30.0
_ATTEMPTS: Final = 3
_TRANSIENT: Final = re.compile(r"BlockOutOfRange|header not found|unknown block", re.IGNORECASE)
_TIMEOUT: Final = 2.0


class RpcTokenReader:
    """Blacklist flags and balances of the offered tokens, read over JSON-RPC and cached."""

    def __init__(
        self,
        rpc_url: str,
        tokens: Callable[[], Mapping[str, tuple[str, int]]],
        *,
        ttl: float = DEFAULT_TTL,
        clock: Callable[[], float] = time.monotonic,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        """``tokens()`` gives symbol → (token address, decimals); asked once, when first needed."""
        self._url = rpc_url
        self._tokens_source = tokens
        self._tokens: Mapping[str, tuple[str, int]] | None = None
        self._ttl = ttl
        self._clock = clock
        self._http = httpx.Client(timeout=_TIMEOUT, transport=transport)
        self._cache: dict[tuple[str, str, str], tuple[float, Any]] = {}
        self._lock = threading.Lock()
        self._rpc: RpcClient | None = None

    def close(self) -> None:
        self._http.close()

    def use(self, rpc: RpcClient) -> None:
        """Read through ``rpc`` (its loop's coalesced ``eth_call`` requests) in :meth:`prefetch`."""
        self._rpc = rpc

    async def prefetch(self, symbol: str, addresses: Sequence[str]) -> None:
        """Read the blacklist flags of ``addresses`` not cached yet, on the attached client.

        Best effort: without a client, or when a read fails, nothing is cached and the gate's
        own read asks again (and says "unknown" if the node still does not answer).
        """
        rpc = self._rpc
        token = self._offered().get(symbol.upper())
        if rpc is None or token is None:
            return
        now = self._clock()
        keys = {("blacklisted", token[0], address.lower()): address for address in addresses}
        with self._lock:
            missing = [
                (key, address)
                for key, address in keys.items()
                if (cached := self._cache.get(key)) is None or cached[0] <= now
            ]
        if not missing:
            return
        answers = await asyncio.gather(
            *(is_blacklisted(rpc, token[0], address) for _, address in missing),
            return_exceptions=True,
        )
        with self._lock:
            for (key, _), answer in zip(missing, answers, strict=True):
                if isinstance(answer, bool):  # a failed or malformed read: the gate asks again
                    self._store(key, now, answer)

    def _offered(self) -> Mapping[str, tuple[str, int]]:
        if self._tokens is None:
            self._tokens = {s.upper(): v for s, v in self._tokens_source().items()}
        return self._tokens

    def is_blacklisted(self, symbol: str, address: str) -> bool | None:
        token = self._offered().get(symbol.upper())
        if token is None:
            return None
        found = self._read(("blacklisted", token[0], address.lower()), token[0], address)
        return None if found is None else bool(found)

    def holdings(self, address: str) -> Mapping[str, Decimal] | None:
        result: dict[str, Decimal] = {}
        for symbol, (token, decimals) in self._offered().items():
            units = self._read(("balance", token, address.lower()), token, address)
            if units is None:
                return None
            result[symbol] = Decimal(int(units)).scaleb(-decimals)
        return result

    def _read(self, key: tuple[str, str, str], token: str, address: str) -> Any:
        now = self._clock()
        with self._lock:
            cached = self._cache.get(key)
            if cached is not None and cached[0] > now:
                return cached[1]
        if cache_only():
            raise NotCached(key[0])
        signature = "isBlacklisted(address)" if key[0] == "blacklisted" else "balanceOf(address)"
        kind = "bool" if key[0] == "blacklisted" else "uint256"
        body = {
            "jsonrpc": "2.0",
            "id": 1,
            "method": "eth_call",
            "params": [
                {"to": token, "data": encode_call(signature, ["address"], [address])},
                "latest",
            ],
        }
        value: Any = None
        for attempt in range(_ATTEMPTS):
            try:
                answer = self._http.post(self._url, json=body).json()
                if "result" not in answer:
                    error = answer.get("error") or {}
                    message = str(error.get("message", answer))
                    # A node resolving "latest" while its head moves may answer for a block it
                    # no longer (or not yet) holds: asking again is right; anything else is not.
                    if attempt + 1 < _ATTEMPTS and _TRANSIENT.search(message):
                        continue
                    raise ValueError(f"the node answered: {message[:200]}")
                raw = bytes.fromhex(str(answer["result"])[2:])
                value = abi_decode([kind], raw)[0]
                break
            except (httpx.HTTPError, ValueError, KeyError, TypeError) as exc:
                log.warning(
                    "compliance: cannot read %s of %s on %s: %s", key[0], address, token, exc
                )
                return None
        with self._lock:
            self._store(key, now, value)
        return value

    def _store(self, key: tuple[str, str, str], now: float, value: Any) -> None:
        """Cache ``value`` (the caller holds the lock)."""
        if len(self._cache) > 10_000:
            self._cache.clear()
        self._cache[key] = (now + self._ttl, value)
