"""The gate's chain reader: the issuer's blacklist over JSON-RPC, cached, retried when the node's
head moved under it, and 'unknown' (never a crash) when the node cannot say."""

from __future__ import annotations

import json
from typing import Any

import httpx

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
