"""The JSON-RPC client against a fake transport: batching, typed errors, transport-only retries."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
import pytest
from eth_abi import encode as abi_encode
from eth_utils import keccak

from seiwallet.chain import errors
from seiwallet.chain.rpc import Call, RpcClient


def _revert_data(reason: str) -> str:
    return "0x" + (keccak(text="Error(string)")[:4] + abi_encode(["string"], [reason])).hex()


class FakeNode:
    """Answers JSON-RPC requests from a table; can fail the first N requests at transport level."""

    def __init__(self, answers: dict[str, Any], *, transport_failures: int = 0, status: int = 200):
        self.answers = answers
        self.transport_failures = transport_failures
        self.status = status
        self.requests: list[Any] = []

    def _answer(self, call: dict[str, Any]) -> dict[str, Any]:
        answer = self.answers[call["method"]]
        if isinstance(answer, dict) and "error" in answer:
            return {"jsonrpc": "2.0", "id": call["id"], "error": answer["error"]}
        return {"jsonrpc": "2.0", "id": call["id"], "result": answer}

    def handler(self, request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        self.requests.append(body)
        if self.transport_failures:
            self.transport_failures -= 1
            raise httpx.ConnectError("Connection refused", request=request)
        if self.status != 200:
            return httpx.Response(self.status, text="busy")
        if isinstance(body, list):
            # Nodes may answer a batch in any order.
            return httpx.Response(200, json=[self._answer(c) for c in reversed(body)])
        return httpx.Response(200, json=self._answer(body))

    def client(self, **kwargs: Any) -> RpcClient:
        return RpcClient(
            "http://node.test", transport=httpx.MockTransport(self.handler), backoff=0, **kwargs
        )


async def test_batch_matches_answers_by_id_and_keeps_errors_in_their_slot() -> None:
    node = FakeNode(
        {
            "eth_chainId": "0xae3f3",
            "eth_blockNumber": "0x10",
            "eth_call": {
                "error": {
                    "code": 3,
                    "message": "execution reverted",
                    "data": _revert_data("Pausable: paused"),
                }
            },
        }
    )
    async with node.client() as rpc:
        results = await rpc.batch(
            [Call("eth_chainId"), Call("eth_call", [{}]), Call("eth_blockNumber")]
        )
    assert results[0] == "0xae3f3"
    assert isinstance(results[1], errors.TokenPaused)
    assert results[2] == "0x10"
    assert len(node.requests) == 1


async def test_transport_failures_are_retried_then_succeed() -> None:
    node = FakeNode({"eth_blockNumber": "0x2a"}, transport_failures=2)
    async with node.client(retries=3) as rpc:
        assert await rpc.block_number() == 42
    assert len(node.requests) == 3


async def test_unreachable_endpoint_gives_one_line_error_naming_the_setting() -> None:
    node = FakeNode({}, transport_failures=10)
    async with node.client(retries=2) as rpc:
        with pytest.raises(errors.RpcUnavailable) as caught:
            await rpc.chain_id()
    message = str(caught.value)
    assert "\n" not in message
    assert "connection refused" in message
    assert "SEIWALLET_RPC_URL" in message


async def test_server_errors_are_retried_but_rpc_errors_are_not() -> None:
    busy = FakeNode({"eth_blockNumber": "0x1"}, status=503)
    async with busy.client(retries=1) as rpc:
        with pytest.raises(errors.RpcUnavailable, match="HTTP 503"):
            await rpc.block_number()
    assert len(busy.requests) == 2

    refusing = FakeNode(
        {"eth_sendRawTransaction": {"error": {"code": -32000, "message": "nonce too low"}}}
    )
    async with refusing.client(retries=3) as rpc:
        with pytest.raises(errors.NonceTooLow):
            await rpc.send_raw_transaction(b"\x02")
    assert len(refusing.requests) == 1


async def test_chain_id_mismatch_names_both_ids_and_the_profile() -> None:
    node = FakeNode({"eth_chainId": hex(1329)})
    async with node.client() as rpc:
        with pytest.raises(errors.ChainIdMismatch) as caught:
            await rpc.expect_chain_id(1328, profile="sei-testnet")
    assert "1329" in str(caught.value)
    assert "1328" in str(caught.value)
    assert "sei-testnet" in str(caught.value)


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (
            {"code": -32000, "message": "nonce too low: next nonce 5, tx nonce 4"},
            errors.NonceTooLow,
        ),
        (
            {"code": -32000, "message": "replacement transaction underpriced"},
            errors.ReplacementUnderpriced,
        ),
        (
            {"code": -32003, "message": "Insufficient funds for gas * price + value"},
            errors.InsufficientFunds,
        ),
        ({"code": -32000, "message": "intrinsic gas too low"}, errors.GasTooLow),
        # anvil, a call or transaction that ran out of the gas it was given; geth's wording.
        ({"code": -32603, "message": "EVM error OutOfGas"}, errors.GasTooLow),
        ({"code": -32000, "message": "out of gas"}, errors.GasTooLow),
        (
            {"code": 3, "message": "execution reverted: Blacklistable: account is blacklisted"},
            errors.AddressBlacklisted,
        ),
        (
            {
                "code": 3,
                "message": "execution reverted",
                "data": _revert_data("FiatTokenV2: authorization is used or canceled"),
            },
            errors.AuthorizationUsed,
        ),
        (
            {
                "code": 3,
                "message": "execution reverted",
                "data": _revert_data("FiatTokenV2: invalid signature"),
            },
            errors.InvalidAuthorizationSignature,
        ),
        (
            {
                "code": 3,
                "message": "execution reverted",
                "data": "0x"
                + (keccak(text="InvoiceAlreadySettled(bytes32)")[:4] + b"\x11" * 32).hex(),
            },
            errors.InvoiceAlreadySettled,
        ),
        (
            {"code": 3, "message": "execution reverted", "data": "0xdeadbeef"},
            errors.ExecutionReverted,
        ),
        ({"code": -32601, "message": "method not found"}, errors.RpcError),
    ],
)
def test_error_table(error: dict[str, Any], expected: type[errors.RpcError]) -> None:
    mapped = errors.error_from_rpc(error)
    assert type(mapped) is expected
    assert "\n" not in str(mapped)


def test_blacklisted_message_tells_the_user_what_happened() -> None:
    mapped = errors.error_from_rpc(
        {
            "code": 3,
            "message": "execution reverted",
            "data": _revert_data("Blacklistable: account is blacklisted"),
        }
    )
    assert isinstance(mapped, errors.AddressBlacklisted)
    assert mapped.code == "token.blacklisted"
    assert "blacklisted" in str(mapped)


def test_revert_data_decoding_is_robust_to_garbage() -> None:
    assert errors.decode_revert_data("0x") is None
    assert errors.decode_revert_data("0xzz") is None
    assert errors.decode_revert_data(None) is None
    assert errors.decode_revert_data({"data": _revert_data("x")}) == "x"
    truncated = _revert_data("hello")[:20]
    assert errors.decode_revert_data(truncated) is None


async def test_receipts_in_chunks_none_for_unmined_and_errors_left_out() -> None:
    mined = {
        "transactionHash": "0x" + "aa" * 32,
        "blockNumber": "0x7",
        "blockHash": "0x" + "bb" * 32,
        "status": "0x1",
        "gasUsed": "0x5208",
        "effectiveGasPrice": "0x3b9aca00",
        "logs": [],
    }
    batches: list[int] = []

    def answer(request: httpx.Request) -> httpx.Response:
        calls = json.loads(request.content)
        batches.append(len(calls))
        out = []
        for call in calls:
            tx_hash = call["params"][0]
            if tx_hash.startswith("0xaa"):
                out.append({"jsonrpc": "2.0", "id": call["id"], "result": mined})
            elif tx_hash.startswith("0xcc"):
                error = {"code": -32000, "message": "header not found"}
                out.append({"jsonrpc": "2.0", "id": call["id"], "error": error})
            else:
                out.append({"jsonrpc": "2.0", "id": call["id"], "result": None})
        return httpx.Response(200, json=out)

    hashes = ["0x" + "aa" * 32, "0x" + "00" * 32, "0x" + "cc" * 32]
    async with RpcClient(
        "http://node.test", transport=httpx.MockTransport(answer), backoff=0
    ) as rpc:
        receipts = await rpc.get_receipts(hashes, chunk=2)
    assert batches == [2, 1]
    found = receipts[hashes[0]]
    assert found is not None
    assert found.block_number == 7
    assert receipts[hashes[1]] is None  # not mined (yet)
    assert hashes[2] not in receipts  # the node could not tell: asked again later


class MovingHead(FakeNode):
    """A node whose ``eth_call`` at a tag fails ``misses`` times as its head moves."""

    def __init__(
        self, misses: int, message: str = "BlockOutOfRangeError: block height is 7"
    ) -> None:
        super().__init__({"eth_call": "0x" + "00" * 31 + "2a"})
        self.misses = misses
        self.message = message

    def _answer(self, call: dict[str, Any]) -> dict[str, Any]:
        if self.misses:
            self.misses -= 1
            return {
                "jsonrpc": "2.0",
                "id": call["id"],
                "error": {"code": -32000, "message": self.message},
            }
        return super()._answer(call)


async def test_a_call_at_a_tag_is_asked_again_when_the_head_moved() -> None:
    node = MovingHead(misses=2)
    async with node.client() as rpc:
        assert int.from_bytes(await rpc.call({"to": "0x" + "11" * 20, "data": "0x"})) == 42
    assert len(node.requests) == 3


async def test_a_head_that_keeps_moving_or_another_error_is_the_callers() -> None:
    node = MovingHead(misses=3)
    async with node.client() as rpc:
        with pytest.raises(errors.RpcError, match="BlockOutOfRange"):
            await rpc.call({"to": "0x" + "11" * 20, "data": "0x"})
    assert len(node.requests) == 3
    # At a block number, the answer is the block's: no second question.
    node = MovingHead(misses=1, message="header not found")
    async with node.client() as rpc:
        with pytest.raises(errors.RpcError, match="header not found"):
            await rpc.call({"to": "0x" + "11" * 20, "data": "0x"}, block=7)
    assert len(node.requests) == 1
    node = MovingHead(misses=1, message="execution reverted")
    async with node.client() as rpc:
        with pytest.raises(errors.RpcError):
            await rpc.call({"to": "0x" + "11" * 20, "data": "0x"})
    assert len(node.requests) == 1


async def test_calls_asked_together_leave_as_one_batch_each_with_its_own_answer() -> None:
    reverted = {"code": 3, "message": "execution reverted", "data": _revert_data("nope")}

    class Node(FakeNode):
        def _answer(self, call: dict[str, Any]) -> dict[str, Any]:
            data = call["params"][0]["data"]
            if data == "0xbad0":
                return {"jsonrpc": "2.0", "id": call["id"], "error": reverted}
            return {"jsonrpc": "2.0", "id": call["id"], "result": "0x" + data[2:] * 2}

    node = Node({})
    async with node.client() as rpc:
        answers = await asyncio.gather(
            *(rpc.call({"to": "0x" + "11" * 20, "data": f"0x{i:04x}"}) for i in range(5)),
            rpc.call({"to": "0x" + "11" * 20, "data": "0xbad0"}),
            return_exceptions=True,
        )
        assert answers[:5] == [bytes.fromhex(f"{i:04x}" * 2) for i in range(5)]
        assert isinstance(answers[5], errors.RpcError)
        assert len(node.requests) == 1  # one HTTP request...
        assert len(node.requests[0]) == 6  # ...carrying the six calls
        # One call alone is a plain request, not a batch of one.
        assert await rpc.call({"to": "0x" + "11" * 20, "data": "0x0102"}) == b"\x01\x02\x01\x02"
        assert isinstance(node.requests[-1], dict)


async def test_a_coalesced_batch_that_cannot_be_sent_fails_every_caller() -> None:
    node = FakeNode({"eth_call": "0x"}, transport_failures=10)
    async with node.client(retries=1) as rpc:
        answers = await asyncio.gather(
            *(rpc.call({"to": "0x" + "11" * 20, "data": "0x"}) for _ in range(3)),
            return_exceptions=True,
        )
    assert all(isinstance(a, errors.RpcUnavailable) for a in answers), answers


def test_a_revert_string_with_stray_padding_is_still_read() -> None:
    # FiatToken (solc 0.6) leaves bytes in the padding after its revert strings.
    data = bytearray.fromhex(_revert_data("ERC20: transfer amount exceeds balance")[2:])
    data[-1] = 0x41
    assert errors.decode_revert_data("0x" + data.hex()) == "ERC20: transfer amount exceeds balance"
    assert errors.decode_revert_data("0x08c379a0" + "00" * 4) is None  # cut short: no reason
