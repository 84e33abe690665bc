"""The API's balance cache: one read for concurrent misses, nothing stale kept after forget()."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from seiwallet.api import chain as api_chain
from seiwallet.api.chain import CachedBalances

TOKEN = "0x8464135c8F25Da09e49BC8782676a84730C318bC"
OWNER = "0x70997970C51812dc3A010C7d01b50e0d17dc79C8"


class FakeChain:
    """``balance_of`` stand-in: counts reads, answers ``value``, can hold reads until released."""

    def __init__(self, value: int) -> None:
        self.value = value
        self.reads = 0
        self.gate: asyncio.Event | None = None
        self.failures: list[Exception] = []

    async def balance_of(self, _rpc: Any, _token: str, _owner: str) -> int:
        self.reads += 1
        value = self.value  # what the chain held when the read was made
        if self.failures:
            raise self.failures.pop(0)
        if self.gate is not None:
            await self.gate.wait()
        return value


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> FakeChain:
    chain = FakeChain(1_000)
    monkeypatch.setattr(api_chain, "balance_of", chain.balance_of)
    return chain


async def reads_reach(chain: FakeChain, count: int) -> None:
    """Let the loop run until the fake chain has been asked ``count`` times."""
    for _ in range(100):
        if chain.reads >= count:
            return
        await asyncio.sleep(0)
    raise AssertionError(f"{chain.reads} reads, expected {count}")


def balances() -> CachedBalances:
    return CachedBalances(rpc=None, ttl=60)  # type: ignore[arg-type]  # the fake ignores it


async def test_concurrent_misses_share_one_read(fake: FakeChain) -> None:
    cache = balances()
    fake.gate = asyncio.Event()
    waiting = [asyncio.create_task(cache.balance(TOKEN, OWNER)) for _ in range(20)]
    await reads_reach(fake, 1)
    fake.gate.set()
    assert await asyncio.gather(*waiting) == [1_000] * 20
    assert fake.reads == 1
    assert await cache.balance(TOKEN.lower(), OWNER.upper().replace("0X", "0x")) == 1_000
    assert fake.reads == 1  # served from the cache, whatever the address's case


async def test_a_read_begun_before_forget_is_not_kept(fake: FakeChain) -> None:
    cache = balances()
    fake.gate = asyncio.Event()
    early = asyncio.create_task(cache.balance(TOKEN, OWNER))
    await reads_reach(fake, 1)
    fake.value = 400  # the owner's transfer lands...
    cache.forget(OWNER)  # ...and the API hears of it while the old read is under way
    late = asyncio.create_task(cache.balance(TOKEN, OWNER))
    await reads_reach(fake, 2)
    fake.gate.set()
    assert await early == 1_000
    assert await late == 400  # a caller after forget() did not join the earlier read
    fake.gate = None
    assert await cache.balance(TOKEN, OWNER) == 400
    assert fake.reads == 2


async def test_forget_drops_the_cached_value(fake: FakeChain) -> None:
    cache = balances()
    assert await cache.balance(TOKEN, OWNER) == 1_000
    fake.value = 250
    assert await cache.balance(TOKEN, OWNER) == 1_000
    cache.forget(OWNER.lower())
    assert await cache.balance(TOKEN, OWNER) == 250
    assert fake.reads == 2


async def test_expired_entries_are_read_again(fake: FakeChain) -> None:
    cache = CachedBalances(rpc=None, ttl=0)  # type: ignore[arg-type]
    await cache.balance(TOKEN, OWNER)
    await cache.balance(TOKEN, OWNER)
    assert fake.reads == 2


async def test_one_caller_cancelled_does_not_cancel_the_shared_read(fake: FakeChain) -> None:
    cache = balances()
    fake.gate = asyncio.Event()
    impatient = asyncio.create_task(cache.balance(TOKEN, OWNER))
    patient = asyncio.create_task(cache.balance(TOKEN, OWNER))
    await reads_reach(fake, 1)
    impatient.cancel()
    fake.gate.set()
    assert await patient == 1_000
    with pytest.raises(asyncio.CancelledError):
        await impatient
    assert fake.reads == 1
