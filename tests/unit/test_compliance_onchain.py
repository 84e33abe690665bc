"""The gate's chain reader: the issuer's blacklist over JSON-RPC, cached, retried when the node's
head moved under it, and 'unknown' (never a crash) when the node cannot say."""

from __future__ import annotations

import json
from typing import Any

import httpx

from seiwallet.chain.rpc import RpcClient
from seiwallet.compliance.onchain import RpcTokenReader

TOKEN = "0x8464135c8F25Da09e49BC8782676a84730C318bC"
WHO = "0x70997970C51812dc3A010C7d01b50e0d17dc79C8"
TRUE = "0x" + "00" * 31 + "01"


def reader(answers: list[dict[str, Any]], seen: list[dict[str, Any]]) -> RpcTokenReader:
    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(json.loads(request.content))
        return httpx.Response(200, json={"jsonrpc": "2.0", "id": 1, **answers.pop(0)})

    return RpcTokenReader(
        "http://node.invalid",
        lambda: {"USDC": (TOKEN, 6)},
        transport=httpx.MockTransport(answer),
    )


def test_a_moving_head_is_asked_again_and_the_answer_cached() -> None:
    seen: list[dict[str, Any]] = []
    chain = reader(
        [
            {"error": {"code": -32000, "message": "BlockOutOfRangeError: block height is 7"}},
            {"result": TRUE},
        ],
        seen,
    )
    assert chain.is_blacklisted("usdc", WHO) is True
    assert chain.is_blacklisted("USDC", WHO.lower()) is True  # cached, whatever the case
    assert len(seen) == 2
    assert seen[0]["params"][0]["to"] == TOKEN
    chain.close()


def test_a_node_error_is_unknown_not_a_crash() -> None:
    seen: list[dict[str, Any]] = []
    chain = reader([{"error": {"code": 3, "message": "execution reverted"}}], seen)
    assert chain.is_blacklisted("USDC", WHO) is None
    assert len(seen) == 1  # not a moving head: not asked again
    assert chain.is_blacklisted("EURC", WHO) is None  # a token we do not offer: not asked
    assert len(seen) == 1
    chain.close()


async def test_prefetch_reads_on_the_loop_in_one_batch_and_the_gate_finds_it_cached() -> None:
    """The API warms the flags on its event loop: the parties' reads leave as one JSON-RPC
    batch, and the gate's synchronous read is then answered from the cache."""
    other = "0x3C44CdDdB6a900fa2b585dd299e03d12FA4293BC"
    blocking: list[dict[str, Any]] = []
    chain = reader([], blocking)  # the gate's own HTTP client must not be asked
    batches: list[Any] = []

    def node(request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        batches.append(body)
        calls = body if isinstance(body, list) else [body]
        answers = [
            {
                "jsonrpc": "2.0",
                "id": call["id"],
                "result": TRUE
                if WHO[2:].lower() in call["params"][0]["data"]
                else "0x" + "00" * 32,
            }
            for call in calls
        ]
        return httpx.Response(200, json=answers if isinstance(body, list) else answers[0])

    async with RpcClient("http://node.test", transport=httpx.MockTransport(node)) as rpc:
        chain.use(rpc)
        await chain.prefetch("USDC", [WHO, other])
        await chain.prefetch("usdc", [WHO.lower()])  # cached: nothing asked
    assert len(batches) == 1
    assert len(batches[0]) == 2
    assert chain.is_blacklisted("USDC", WHO) is True
    assert chain.is_blacklisted("USDC", other) is False
    assert blocking == []
    chain.close()


async def test_prefetch_that_fails_leaves_the_gate_to_ask_itself() -> None:
    seen: list[dict[str, Any]] = []
    chain = reader([{"result": TRUE}], seen)

    def down(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("Connection refused", request=request)

    async with RpcClient("http://node.test", transport=httpx.MockTransport(down), retries=0) as rpc:
        chain.use(rpc)
        await chain.prefetch("USDC", [WHO])  # best effort: no error, nothing cached
    assert chain.is_blacklisted("USDC", WHO) is True
    assert len(seen) == 1
    chain.close()
