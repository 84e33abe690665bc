"""The API's view of the chain: the offered tokens (domains read from the chain) and balances.

Balances are read from the chain and cached for a moment per (token, owner): a page showing
balances does not cost an RPC round trip per view, and a transfer's balance check still sees
the chain within the cache's few seconds (the in-flight transfers are subtracted separately).
"""

from __future__ import annotations

import asyncio
import re
import time
from typing import Final

from seiwallet.chain.errors import RpcError
from seiwallet.chain.rpc import RpcClient
from seiwallet.chain.tokens import balance_of, read_token
from seiwallet.config import Settings
from seiwallet.deployments import contracts_for
from seiwallet.transfers.services import TokenInfo

_ATTEMPTS: Final = 3
_TRANSIENT: Final = re.compile(r"BlockOutOfRange|header not found|unknown block", re.IGNORECASE)
#: How long a balance read from the chain is served from memory.
BALANCE_TTL: Final = 2.0
_NAMES: Final = {"USDC": "USD Coin", "EURC": "Euro Coin"}


class CachedBalances:
    """``BalanceReader`` over JSON-RPC with a short per-(token, owner) cache."""

    def __init__(self, rpc: RpcClient, ttl: float = BALANCE_TTL) -> None:
        self._rpc = rpc
        self._ttl = ttl
        self._cache: dict[tuple[str, str], tuple[float, int]] = {}

    async def balance(self, token: str, owner: str) -> int:
        key = (token.lower(), owner.lower())
        now = time.monotonic()
        hit = self._cache.get(key)
        if hit is not None and now - hit[0] < self._ttl:
            return hit[1]
        for attempt in range(_ATTEMPTS):
            try:
                value = await balance_of(self._rpc, token, owner)
                break
            except RpcError as exc:
                # A node resolving "latest" while its head moves can answer for a block it no
                # longer (or not yet) holds: anvil's BlockOutOfRangeError, geth's "header not
                # found". Asking again is right; anything else is not ours to retry.
                if attempt + 1 == _ATTEMPTS or not _TRANSIENT.search(str(exc)):
                    raise
                await asyncio.sleep(0.05 * (attempt + 1))
        self._cache[key] = (now, value)
        return value

    def forget(self, owner: str) -> None:
        """Drop an owner's cached balances (after a transfer of theirs moved)."""
        for key in [k for k in self._cache if k[1] == owner.lower()]:
            del self._cache[key]


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
