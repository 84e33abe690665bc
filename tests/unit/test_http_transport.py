"""The internal HTTP hops' transport against a real loopback server (TCP and Unix socket)."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from pathlib import Path

import orjson
import pytest
from aiohttp import web

from seiwallet.chain.errors import RpcUnavailable
from seiwallet.chain.rpc import RpcClient
from seiwallet.http import AiohttpTransport, TransportFailure
from seiwallet.signer.client import SignerClient
from seiwallet.signer.errors import SignerUnavailable


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class Server:
    """A loopback aiohttp server answering with ``answer`` and remembering what it got."""

    def __init__(self) -> None:
        self.bodies: list[bytes] = []
        self.headers: list[dict[str, str]] = []
        self.statuses: list[int] = []
        self.delay = 0.0
        self._runner: web.AppRunner | None = None

    async def _handle(self, request: web.Request) -> web.Response:
        self.bodies.append(await request.read())
        self.headers.append(dict(request.headers))
        if self.delay:
            await asyncio.sleep(self.delay)
        status = self.statuses.pop(0) if self.statuses else 200
        payload = orjson.loads(self.bodies[-1])
        answer = {"jsonrpc": "2.0", "id": payload.get("id"), "result": "0x2a"}
        return web.Response(status=status, body=orjson.dumps(answer))

    async def start(self, *, port: int | None = None, path: Path | None = None) -> None:
        app = web.Application()
        app.router.add_post("/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site: web.BaseSite
        if path is not None:
            site = web.UnixSite(self._runner, str(path))
        else:
            site = web.TCPSite(self._runner, "127.0.0.1", port)
        await site.start()

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()


@pytest.fixture
async def server() -> AsyncIterator[tuple[Server, str]]:
    running = Server()
    port = _free_port()
    await running.start(port=port)
    try:
        yield running, f"http://127.0.0.1:{port}/"
    finally:
        await running.stop()


async def test_post_answers_status_and_body_and_sends_the_headers(
    server: tuple[Server, str],
) -> None:
    node, url = server
    node.statuses = [503]
    transport = AiohttpTransport(timeout=5, headers={"authorization": "Bearer s3cret"})
    try:
        status, body = await transport.post(url, b'{"id": 7}')
        assert status == 503
        assert orjson.loads(body)["id"] == 7
        status, _ = await transport.post(url, b'{"id": 8}')
        assert status == 200
    finally:
        await transport.aclose()
    assert node.bodies == [b'{"id": 7}', b'{"id": 8}']
    assert node.headers[0]["Authorization"] == "Bearer s3cret"
    assert node.headers[0]["Content-Type"] == "application/json"


async def test_a_closed_port_is_connection_refused() -> None:
    transport = AiohttpTransport(timeout=5)
    try:
        with pytest.raises(TransportFailure) as caught:
            await transport.post(f"http://127.0.0.1:{_free_port()}/", b"{}")
    finally:
        await transport.aclose()
    assert caught.value.reason == "connection refused"
    assert not caught.value.timed_out


async def test_a_slow_answer_times_out(server: tuple[Server, str]) -> None:
    node, url = server
    node.delay = 2.0
    transport = AiohttpTransport(timeout=0.2)
    try:
        with pytest.raises(TransportFailure) as caught:
            await transport.post(url, b"{}")
    finally:
        await transport.aclose()
    assert caught.value.timed_out
    assert caught.value.reason == "timed out"


async def test_unix_socket_and_a_missing_one(tmp_path: Path) -> None:
    node = Server()
    path = tmp_path / "rpc.sock"
    await node.start(path=path)
    transport = AiohttpTransport(timeout=5, unix_socket=str(path))
    missing = AiohttpTransport(timeout=5, unix_socket=str(tmp_path / "nobody.sock"))
    try:
        status, _ = await transport.post("http://signer/v1/health", b'{"id": 1}')
        assert status == 200
        with pytest.raises(TransportFailure) as caught:
            await missing.post("http://signer/v1/health", b"{}")
        assert caught.value.reason == "cannot connect: no such file or directory"
    finally:
        await transport.aclose()
        await missing.aclose()
        await node.stop()


def test_one_transport_serves_one_event_loop_after_another() -> None:
    """A CLI runs ``asyncio.run`` more than once with the same services: each loop gets its own
    connection pool instead of one bound to a closed loop."""
    port = _free_port()
    transport = AiohttpTransport(timeout=5)

    async def once() -> int:
        node = Server()
        await node.start(port=port)
        try:
            status, _ = await transport.post(f"http://127.0.0.1:{port}/", b'{"id": 1}')
            return status
        finally:
            await node.stop()

    assert asyncio.run(once()) == 200
    assert asyncio.run(once()) == 200

    async def close() -> None:
        await transport.aclose()

    asyncio.run(close())


async def test_rpc_client_retries_server_errors_over_the_real_transport(
    server: tuple[Server, str],
) -> None:
    node, url = server
    node.statuses = [502, 503]
    async with RpcClient(url, retries=3, backoff=0) as rpc:
        assert await rpc.block_number() == 42
    assert len(node.bodies) == 3
    assert orjson.loads(node.bodies[0])["method"] == "eth_blockNumber"


async def test_rpc_client_names_an_unreachable_node_in_one_line() -> None:
    async with RpcClient(f"http://127.0.0.1:{_free_port()}/", retries=1, backoff=0) as rpc:
        with pytest.raises(RpcUnavailable) as caught:
            await rpc.chain_id()
    assert "connection refused" in str(caught.value)
    assert "\n" not in str(caught.value)


async def test_signer_client_says_how_to_start_a_missing_signer(tmp_path: Path) -> None:
    async with SignerClient(secret="s" * 43, socket=tmp_path / "signer.sock") as client:
        with pytest.raises(SignerUnavailable) as caught:
            await client.health()
    message = str(caught.value)
    assert "cannot connect: no such file or directory" in message
    assert "seiwallet signer" in message
