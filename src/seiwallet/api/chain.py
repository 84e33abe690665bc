"""The API's view of the chain: the offered tokens (domains read from the chain) and balances.

Balances are read from the chain and cached for a moment per (token, owner): a page showing
balances does not cost an RPC round trip per view, and a transfer's balance check still sees
the chain within the cache's few seconds (the in-flight transfers are subtracted separately).
"""

from __future__ import annotations

import asyncio
import time
from typing import Final

from seiwallet.chain.rpc import RpcClient
from seiwallet.chain.tokens import balance_of, read_token
from seiwallet.config import Settings
from seiwallet.deployments import contracts_for
from seiwallet.transfers.services import TokenInfo

#: How long a balance read from the chain is served from memory.
BALANCE_TTL: Final = 2.0
#: Entries kept before the cache starts over (a bound on memory, not a tuning knob).
_CACHED_MAX: Final = 100_000
_NAMES: Final = {"USDC": "USD Coin", "EURC": "Euro Coin"}


class CachedBalances:
    """``BalanceReader`` over JSON-RPC with a short per-(token, owner) cache.

    Concurrent misses for one (token, owner) share one read: a person's burst of transfers, or
    a page and a transfer at once, costs one ``eth_call``. After :meth:`forget` every caller
    reads afresh, and a read that began before it is not kept.
    """

    def __init__(self, rpc: RpcClient, ttl: float = BALANCE_TTL) -> None:
        self._rpc = rpc
        self._ttl = ttl
        self._cache: dict[tuple[str, str], tuple[float, int]] = {}
        self._reading: dict[tuple[str, str], asyncio.Future[int]] = {}
        # Each forget() is a new epoch; a read is kept only if its owner was not forgotten
        # since the read began (an owner no longer listed counts as forgotten at ``_floor``).
        self._epoch = 0
        self._floor = 0
        self._forgotten: dict[str, int] = {}

    async def balance(self, token: str, owner: str) -> int:
        key = (token.lower(), owner.lower())
        hit = self._cache.get(key)
        if hit is not None and time.monotonic() - hit[0] < self._ttl:
            return hit[1]
        reading = self._reading.get(key)
        if reading is None:
            reading = asyncio.ensure_future(self._read(key))
            self._reading[key] = reading
        # Shielded: one caller giving up (its client gone) must not cancel the others' read.
        return await asyncio.shield(reading)

    async def _read(self, key: tuple[str, str]) -> int:
        token, owner = key
        started, epoch = time.monotonic(), self._epoch
        try:
            value = await self._read_chain(token, owner)
        finally:
            if self._reading.get(key) is asyncio.current_task():
                del self._reading[key]
        if self._forgotten.get(owner, self._floor) <= epoch:
            if len(self._cache) >= _CACHED_MAX:
                self._cache.clear()
            self._cache[key] = (started, value)
        return value

    async def _read_chain(self, token: str, owner: str) -> int:
        return await balance_of(self._rpc, token, owner)

    def forget(self, owner: str) -> None:
        """Drop an owner's cached balances (after a transfer of theirs moved)."""
        owner = owner.lower()
        for key in [k for k in self._cache if k[1] == owner]:
            del self._cache[key]
        # A read under way may have begun before the money moved: it is not kept, and callers
        # from now on start their own.
        for key in [k for k in self._reading if k[1] == owner]:
            del self._reading[key]
        self._epoch += 1
        if len(self._forgotten) >= _CACHED_MAX:
            self._forgotten.clear()
            self._floor = self._epoch  # reads under way now are not kept, whoever they are for
        self._forgotten[owner] = self._epoch


async def load_tokens(settings: Settings, rpc: RpcClient) -> dict[str, TokenInfo]:
    """The tokens the wallet offers, their EIP-712 domains read from the chain itself."""
    tokens: dict[str, TokenInfo] = {}
    for symbol, address in contracts_for(settings).tokens.items():
        token = await read_token(rpc, address)
        tokens[symbol.upper()] = TokenInfo(
            symbol=symbol.upper(),
            name=_NAMES.get(symbol.upper(), token.domain.name),
            decimals=token.decimals,
            domain=token.domain,
        )
    return tokens
