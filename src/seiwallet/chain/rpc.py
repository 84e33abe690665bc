"""An async Ethereum JSON-RPC client: batching, timeouts, typed errors, transport retries only.

Only transport failures (connection refused, timeouts, 5xx, 429) are retried: a JSON-RPC error
is an answer and is raised as a typed error at once, because retrying e.g. a rejected
transaction would only hide the reason. Sending a raw transaction twice is harmless (the node
answers "already known" or "nonce too low"), so retries are safe for every method we use.
"""

from __future__ import annotations

import asyncio
import itertools
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, Self

import httpx
import orjson

from seiwallet.chain.errors import ChainIdMismatch, RpcError, RpcUnavailable, error_from_rpc
from seiwallet.http import AiohttpTransport, HttpxTransport, PostTransport, TransportFailure

BlockId = int | str
"""A block number, or a tag: ``"latest"``, ``"pending"``, ``"safe"``, ``"finalized"``."""


def to_hex(value: int) -> str:
    """Encode a quantity as JSON-RPC wants it (``0x``-prefixed, no leading zeros)."""
    return hex(value)


def from_hex(value: str | None) -> int:
    """Decode a JSON-RPC quantity (``None`` decodes as 0, as nodes omit zero fields)."""
    return int(value, 16) if value else 0


#: A node resolving a block tag while its head moves can answer for a block it no longer (or not
#: yet) holds: anvil's ``BlockOutOfRangeError``, geth's "header not found". Asking again is right.
_HEAD_MOVED: Final = re.compile(r"BlockOutOfRange|header not found|unknown block", re.IGNORECASE)
_HEAD_MOVED_ATTEMPTS: Final = 3
#: Most ``eth_call`` requests one coalesced batch carries (providers cap batches; 100 is common).
_COALESCED_MAX: Final = 100


def _fail_all(calls: Sequence[tuple[Call, asyncio.Future[Any]]], exc: BaseException) -> None:
    """Every caller still waiting hears ``exc`` (or is cancelled, when the loop is closing)."""
    for _, answer in calls:
        if answer.done():
            continue
        if isinstance(exc, asyncio.CancelledError):
            answer.cancel()
        else:
            answer.set_exception(exc)


def _block_param(block: BlockId) -> str:
    return to_hex(block) if isinstance(block, int) else block


@dataclass(frozen=True)
class Call:
    """One JSON-RPC call, for :meth:`RpcClient.batch`."""

    method: str
    params: Sequence[Any] = ()


@dataclass(frozen=True)
class Log:
    """An event log as the node returns it, with quantities decoded."""

    address: str
    topics: tuple[str, ...]
    data: str
    block_number: int
    block_hash: str
    transaction_hash: str
    log_index: int
    removed: bool

    @classmethod
    def from_rpc(cls, raw: Mapping[str, Any]) -> Log:
        return cls(
            address=str(raw["address"]),
            topics=tuple(str(t) for t in raw["topics"]),
            data=str(raw["data"]),
            block_number=from_hex(raw["blockNumber"]),
            block_hash=str(raw["blockHash"]),
            transaction_hash=str(raw["transactionHash"]),
            log_index=from_hex(raw["logIndex"]),
            removed=bool(raw.get("removed", False)),
        )


@dataclass(frozen=True)
class BlockHeader:
    """The parts of a block the follower needs to detect reorganisations."""

    number: int
    hash: str
    parent_hash: str
    timestamp: int
    gas_used: int
    gas_limit: int
    base_fee_per_gas: int
    transaction_count: int

    @classmethod
    def from_rpc(cls, raw: Mapping[str, Any]) -> BlockHeader:
        return cls(
            number=from_hex(raw["number"]),
            hash=str(raw["hash"]),
            parent_hash=str(raw["parentHash"]),
            timestamp=from_hex(raw["timestamp"]),
            gas_used=from_hex(raw["gasUsed"]),
            gas_limit=from_hex(raw["gasLimit"]),
            base_fee_per_gas=from_hex(raw.get("baseFeePerGas")),
            transaction_count=len(raw.get("transactions", ())),
        )


@dataclass(frozen=True)
class Receipt:
    """A transaction receipt with the fields we act on."""

    transaction_hash: str
    block_number: int
    block_hash: str
    status: int
    gas_used: int
    effective_gas_price: int
    logs: tuple[Log, ...]

    @property
    def succeeded(self) -> bool:
        return self.status == 1

    @classmethod
    def from_rpc(cls, raw: Mapping[str, Any]) -> Receipt:
        return cls(
            transaction_hash=str(raw["transactionHash"]),
            block_number=from_hex(raw["blockNumber"]),
            block_hash=str(raw["blockHash"]),
            status=from_hex(raw.get("status")),
            gas_used=from_hex(raw["gasUsed"]),
            effective_gas_price=from_hex(raw.get("effectiveGasPrice")),
            logs=tuple(Log.from_rpc(log) for log in raw.get("logs", ())),
        )


class RpcClient:
    """Async JSON-RPC over HTTP(S) for one endpoint.

    Requests go through :class:`~seiwallet.http.AiohttpTransport` (one connection pool; share the
    client within a process and close it with ``aclose()``); ``transport`` is the seam for tests
    (an ``httpx.MockTransport``, or any :class:`~seiwallet.http.PostTransport`).

    :meth:`call` coalesces: the ``eth_call`` requests made in one turn of the event loop leave
    as one JSON-RPC batch (one alone leaves as a plain request), each caller answered with its
    own result or typed error: an API answering many people at once (balances, blacklist flags)
    pays one HTTP round trip per turn, not one per read.
    """

    def __init__(
        self,
        url: str,
        *,
        timeout: float = 10.0,
        retries: int = 3,
        backoff: float = 0.1,
        transport: httpx.AsyncBaseTransport | PostTransport | None = None,
        max_connections: int = 32,
    ) -> None:
        self.url = url
        self._retries = retries
        self._backoff = backoff
        self._ids = itertools.count(1)
        self._calls: list[tuple[Call, asyncio.Future[Any]]] = []
        self._sending: set[asyncio.Task[None]] = set()
        self._transport: PostTransport
        if transport is None:
            self._transport = AiohttpTransport(timeout=timeout, max_connections=max_connections)
        elif isinstance(transport, httpx.AsyncBaseTransport):
            self._transport = HttpxTransport(transport, timeout=timeout)
        else:
            self._transport = transport

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._transport.aclose()

    # -- the wire ---------------------------------------------------------------------------
    async def _post(self, payload: Any) -> Any:
        """POST a request body, retrying transport failures with exponential back-off."""
        last_reason = "no attempt made"
        body = orjson.dumps(payload)
        for attempt in range(self._retries + 1):
            if attempt:
                await asyncio.sleep(self._backoff * 2 ** (attempt - 1))
            try:
                status, content = await self._transport.post(self.url, body)
            except TransportFailure as exc:
                last_reason = exc.reason
                continue
            if status == 429 or status >= 500:
                last_reason = f"HTTP {status}"
                continue
            if status >= 400:
                # A 4xx other than 429 will not improve by retrying (bad URL path, auth...).
                raise RpcUnavailable(self.url, f"HTTP {status}")
            try:
                return orjson.loads(content)
            except orjson.JSONDecodeError:
                raise RpcUnavailable(self.url, "the answer is not JSON") from None
        raise RpcUnavailable(self.url, last_reason)

    async def request(self, method: str, params: Sequence[Any] = ()) -> Any:
        """Call one method; return its ``result`` or raise the typed error for its ``error``."""
        body = await self._post(
            {"jsonrpc": "2.0", "id": next(self._ids), "method": method, "params": list(params)}
        )
        if not isinstance(body, dict):
            raise RpcUnavailable(self.url, "the answer is not a JSON-RPC response")
        if "error" in body and body["error"] is not None:
            raise error_from_rpc(body["error"])
        return body.get("result")

    async def batch(self, calls: Sequence[Call]) -> list[Any | RpcError]:
        """Send calls in one HTTP request; each slot holds its result or its typed error."""
        if not calls:
            return []
        ids = [next(self._ids) for _ in calls]
        body = await self._post(
            [
                {"jsonrpc": "2.0", "id": ident, "method": call.method, "params": list(call.params)}
                for ident, call in zip(ids, calls, strict=True)
            ]
        )
        if isinstance(body, dict) and "error" in body:  # the whole batch was refused
            raise error_from_rpc(body["error"])
        if not isinstance(body, list):
            raise RpcUnavailable(self.url, "the answer to a batch is not a JSON array")
        by_id = {item.get("id"): item for item in body if isinstance(item, dict)}
        results: list[Any | RpcError] = []
        for ident in ids:
            item = by_id.get(ident)
            if item is None:
                results.append(RpcError("the node did not answer this call of the batch"))
            elif item.get("error") is not None:
                results.append(error_from_rpc(item["error"]))
            else:
                results.append(item.get("result"))
        return results

    # -- typed helpers ----------------------------------------------------------------------
    async def chain_id(self) -> int:
        return from_hex(await self.request("eth_chainId"))

    async def block_number(self) -> int:
        return from_hex(await self.request("eth_blockNumber"))

    async def get_block(self, block: BlockId = "latest") -> BlockHeader | None:
        raw = await self.request("eth_getBlockByNumber", [_block_param(block), False])
        return BlockHeader.from_rpc(raw) if raw else None

    async def get_blocks(self, numbers: Sequence[int]) -> list[BlockHeader | None]:
        """Fetch many block headers in one round trip."""
        answers = await self.batch(
            [Call("eth_getBlockByNumber", [to_hex(n), False]) for n in numbers]
        )
        blocks: list[BlockHeader | None] = []
        for answer in answers:
            if isinstance(answer, RpcError):
                raise answer
            blocks.append(BlockHeader.from_rpc(answer) if answer else None)
        return blocks

    async def get_logs(
        self,
        *,
        from_block: int,
        to_block: int,
        addresses: Sequence[str] = (),
        topics: Sequence[Sequence[str] | str | None] = (),
        block_hash: str | None = None,
    ) -> list[Log]:
        """Logs in a block range (or in one block by hash, which pins the fork)."""
        query: dict[str, Any] = {}
        if block_hash is not None:
            query["blockHash"] = block_hash
        else:
            query["fromBlock"] = to_hex(from_block)
            query["toBlock"] = to_hex(to_block)
        if addresses:
            query["address"] = list(addresses)
        if topics:
            query["topics"] = [list(t) if isinstance(t, list | tuple) else t for t in topics]
        return [Log.from_rpc(raw) for raw in await self.request("eth_getLogs", [query])]

    async def get_balance(self, address: str, block: BlockId = "latest") -> int:
        return from_hex(await self.request("eth_getBalance", [address, _block_param(block)]))

    async def get_code(self, address: str, block: BlockId = "latest") -> bytes:
        raw = await self.request("eth_getCode", [address, _block_param(block)])
        return bytes.fromhex(str(raw)[2:])

    async def get_transaction_count(self, address: str, block: BlockId = "pending") -> int:
        return from_hex(
            await self.request("eth_getTransactionCount", [address, _block_param(block)])
        )

    async def call(self, tx: Mapping[str, Any], block: BlockId = "latest") -> bytes:
        """``eth_call``; a revert raises its typed error (blacklisted, paused, ...).

        A call at a block tag (``latest``…) that meets the node's head moving under it is asked
        again, twice at most; any other error is the caller's.
        """
        for attempt in itertools.count(1):
            try:
                raw = await self._coalesced(Call("eth_call", [dict(tx), _block_param(block)]))
            except RpcError as exc:
                if (
                    isinstance(block, int)
                    or attempt == _HEAD_MOVED_ATTEMPTS
                    or not _HEAD_MOVED.search(str(exc))
                ):
                    raise
                await asyncio.sleep(0.05 * attempt)
            else:
                return bytes.fromhex(str(raw)[2:])
        raise AssertionError("unreachable")  # pragma: no cover

    async def _coalesced(self, call: Call) -> Any:
        """``call``'s result, sent with the other calls asked in this turn of the loop."""
        loop = asyncio.get_running_loop()
        answer: asyncio.Future[Any] = loop.create_future()
        self._calls.append((call, answer))
        if len(self._calls) == 1:
            loop.call_soon(self._send_calls)
        return await answer

    def _send_calls(self) -> None:
        calls, self._calls = self._calls, []
        for start in range(0, len(calls), _COALESCED_MAX):
            task = asyncio.ensure_future(self._answer(calls[start : start + _COALESCED_MAX]))
            self._sending.add(task)
            task.add_done_callback(self._sending.discard)

    async def _answer(self, calls: Sequence[tuple[Call, asyncio.Future[Any]]]) -> None:
        results: list[Any]
        try:
            if len(calls) == 1:
                call = calls[0][0]
                try:
                    results = [await self.request(call.method, call.params)]
                except RpcError as exc:
                    results = [exc]
            else:
                results = await self.batch([call for call, _ in calls])
        except BaseException as exc:  # the transport failed: every caller hears it
            _fail_all(calls, exc)
            if not isinstance(exc, Exception):
                raise
            return
        for (_, answer), result in zip(calls, results, strict=True):
            if answer.done():  # its caller gave up
                continue
            if isinstance(result, RpcError):
                answer.set_exception(result)
            else:
                answer.set_result(result)

    async def estimate_gas(self, tx: Mapping[str, Any]) -> int:
        return from_hex(await self.request("eth_estimateGas", [dict(tx)]))

    async def gas_price(self) -> int:
        return from_hex(await self.request("eth_gasPrice"))

    async def max_priority_fee(self) -> int:
        return from_hex(await self.request("eth_maxPriorityFeePerGas"))

    async def send_raw_transaction(self, raw: bytes) -> str:
        return str(await self.request("eth_sendRawTransaction", ["0x" + raw.hex()]))

    async def get_receipt(self, tx_hash: str) -> Receipt | None:
        raw = await self.request("eth_getTransactionReceipt", [tx_hash])
        return Receipt.from_rpc(raw) if raw else None

    async def get_receipts(
        self, tx_hashes: Sequence[str], *, chunk: int = 500
    ) -> dict[str, Receipt | None]:
        """Receipts of many transactions, in JSON-RPC batches of ``chunk``: ``None`` for one the
        node does not know as mined; one the node answered with an error is left out (ask
        again later), so a caller never mistakes "could not tell" for "not mined"."""
        found: dict[str, Receipt | None] = {}
        for start in range(0, len(tx_hashes), chunk):
            part = tx_hashes[start : start + chunk]
            answers = await self.batch(
                [Call("eth_getTransactionReceipt", [tx_hash]) for tx_hash in part]
            )
            for tx_hash, answer in zip(part, answers, strict=True):
                if not isinstance(answer, RpcError):
                    found[tx_hash] = Receipt.from_rpc(answer) if answer else None
        return found

    async def get_transaction(self, tx_hash: str) -> dict[str, Any] | None:
        raw = await self.request("eth_getTransactionByHash", [tx_hash])
        return dict(raw) if raw else None

    async def expect_chain_id(self, expected: int, *, profile: str) -> int:
        """Check the endpoint serves the profile's chain; raise :class:`ChainIdMismatch`."""
        actual = await self.chain_id()
        if actual != expected:
            raise ChainIdMismatch(self.url, expected, actual, profile)
        return actual
