"""The signer client's group commit: concurrent sign() calls share calls, not each other's fate."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from typing import Any

import pytest

from seiwallet.signer.client import GROUP_FLIGHTS, SignerClient
from seiwallet.signer.errors import ApprovalRefused, SignerError, SignerUnavailable


class RecordingClient(SignerClient):
    """A client whose ``sign_batch`` is scripted: it records each call's size and answers."""

    def __init__(self) -> None:
        super().__init__(secret="s", url="http://signer.invalid")
        self.sizes: list[int] = []
        self.gate = asyncio.Event()
        self.gate.set()
        self.down = False

    async def sign_batch(
        self, requests: Sequence[tuple[str, Mapping[str, Any], Sequence[Mapping[str, Any]]]]
    ) -> list[dict[str, Any] | SignerError]:
        self.sizes.append(len(requests))
        await self.gate.wait()
        if self.down:
            raise SignerUnavailable("cannot reach the signer")
        if any(intent.get("poison") for _, intent, _ in requests):
            raise TypeError("Object of type bytes is not JSON serializable")
        return [
            ApprovalRefused("refused") if intent.get("refuse") else {"signature": wallet}
            for wallet, intent, _ in requests
        ]


async def occupy_flights(client: RecordingClient) -> list[asyncio.Task[dict[str, Any]]]:
    """One call in each flight, each flight held at the (closed) signer gate."""
    busy = []
    for index in range(GROUP_FLIGHTS):
        busy.append(asyncio.create_task(client.sign(f"busy{index}", {}, [])))
        calls_before = len(client.sizes)
        for _ in range(20):
            await asyncio.sleep(0)
            if len(client.sizes) > calls_before:
                break
    assert client.sizes[-GROUP_FLIGHTS:] == [1] * GROUP_FLIGHTS
    return busy


async def test_an_idle_client_sends_at_once_and_waiting_calls_are_grouped() -> None:
    client = RecordingClient()
    assert await client.sign("w0", {}, []) == {"signature": "w0"}
    assert client.sizes == [1]
    client.gate.clear()
    busy = await occupy_flights(client)
    calls = [asyncio.create_task(client.sign(f"w{i}", {}, [])) for i in range(1, 31)]
    await asyncio.sleep(0.01)
    client.gate.set()
    assert [r["signature"] for r in await asyncio.gather(*calls)] == [f"w{i}" for i in range(1, 31)]
    await asyncio.gather(*busy)
    # Everything that waited while the flights were busy left together, in one call.
    assert client.sizes[1 + GROUP_FLIGHTS :] == [30]
    await client.aclose()


async def test_calls_made_together_leave_together() -> None:
    client = RecordingClient()
    calls = [asyncio.create_task(client.sign(f"w{i}", {}, [])) for i in range(12)]
    assert len(await asyncio.gather(*calls)) == 12
    assert client.sizes == [12]
    await client.aclose()


async def test_a_refusal_is_its_own_callers_only() -> None:
    client = RecordingClient()
    client.gate.clear()
    calls = [asyncio.create_task(client.sign(f"w{i}", {"refuse": i == 5}, [])) for i in range(10)]
    await asyncio.sleep(0.01)
    client.gate.set()
    outcomes = await asyncio.gather(*calls, return_exceptions=True)
    assert isinstance(outcomes[5], ApprovalRefused)
    assert all(isinstance(o, dict) for i, o in enumerate(outcomes) if i != 5)
    await client.aclose()


async def test_a_request_that_breaks_the_call_fails_alone() -> None:
    client = RecordingClient()
    client.gate.clear()
    calls = [asyncio.create_task(client.sign(f"w{i}", {"poison": i == 6}, [])) for i in range(10)]
    await asyncio.sleep(0.01)
    client.gate.set()
    outcomes = await asyncio.gather(*calls, return_exceptions=True)
    assert isinstance(outcomes[6], SignerError)
    assert not isinstance(outcomes[6], SignerUnavailable)
    assert [o["signature"] for i, o in enumerate(outcomes) if i != 6] == [  # type: ignore[index]
        f"w{i}" for i in range(10) if i != 6
    ]
    await client.aclose()


async def test_an_unreachable_signer_fails_every_waiting_call_and_recovers() -> None:
    client = RecordingClient()
    client.down = True
    client.gate.clear()
    calls = [asyncio.create_task(client.sign(f"w{i}", {}, [])) for i in range(8)]
    await asyncio.sleep(0.01)
    client.gate.set()
    outcomes = await asyncio.gather(*calls, return_exceptions=True)
    assert all(isinstance(o, SignerUnavailable) for o in outcomes)
    assert len({id(o) for o in outcomes}) == len(outcomes)  # one error object per caller
    client.down = False
    assert await client.sign("w9", {}, []) == {"signature": "w9"}
    await client.aclose()


async def test_a_caller_that_gave_up_before_sending_is_not_sent() -> None:
    client = RecordingClient()
    client.gate.clear()
    first = await occupy_flights(client)
    gone = asyncio.create_task(client.sign("gone", {}, []))
    kept = asyncio.create_task(client.sign("kept", {}, []))
    await asyncio.sleep(0.01)
    gone.cancel()
    client.gate.set()
    assert (await kept)["signature"] == "kept"
    await asyncio.gather(*first)
    with pytest.raises(asyncio.CancelledError):
        await gone
    assert sum(client.sizes) == GROUP_FLIGHTS + 1
    await client.aclose()
