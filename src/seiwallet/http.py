"""The platform's internal HTTP hops: JSON POSTs to the chain node and to the signer.

Every transfer and payment makes several of these (chain reads, the signer's ``sign``, the
relayer's submissions and receipts, the follower's logs), so their client-side cost is paid
on the hot path of every process. httpx costs ~570 µs of CPU per request on this machine and
aiohttp ~70 µs (same loopback server, one request at a time; ``bench/`` results in
BENCHMARKS.md, "HTTP client"), so these hops go through :class:`AiohttpTransport`. httpx stays
for the edges where its API is worth more than its cost (OpenID Connect, webhooks) and as a
test seam: :class:`HttpxTransport` adapts any ``httpx.AsyncBaseTransport`` (a
``MockTransport`` answering from a table, an ASGI app) to the same interface.

A transport answers ``(status, body)`` or raises :class:`TransportFailure` with a short human
reason ("connection refused", "timed out"): what to retry and what to tell the operator is the
caller's business.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Final, Protocol

import aiohttp
import httpx

JSON_HEADERS: Final = {"content-type": "application/json"}
#: Idle pooled connections are dropped after this long. Below the servers' own idle timeouts
#: (uvicorn closes after 5 s), so a request is not written into a connection the server is
#: closing at that moment.
KEEPALIVE_S: Final = 3.0


class TransportFailure(Exception):
    """The request got no HTTP answer (connection refused, reset, timed out)."""

    def __init__(self, reason: str, *, timed_out: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.timed_out = timed_out


class PostTransport(Protocol):
    """POSTs a body and answers ``(HTTP status, body)``; :class:`TransportFailure` otherwise."""

    async def post(self, url: str, body: bytes) -> tuple[int, bytes]: ...

    async def aclose(self) -> None: ...


class AiohttpTransport:
    """A pooled aiohttp client, over TCP or a Unix socket (``unix_socket``; the URL's host is
    then only a name).

    The session is made on first use inside the running event loop, and made again if the
    client is later used from another loop (a CLI command's ``asyncio.run`` after another).
    """

    def __init__(
        self,
        *,
        timeout: float,
        headers: Mapping[str, str] | None = None,
        max_connections: int = 32,
        unix_socket: str | None = None,
    ) -> None:
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._headers = {**JSON_HEADERS, **(headers or {})}
        self._max_connections = max_connections
        self._unix_socket = unix_socket
        self._session: aiohttp.ClientSession | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    async def _open(self) -> aiohttp.ClientSession:
        loop = asyncio.get_running_loop()
        stale = self._session
        if stale is not None and self._loop is loop and not stale.closed:
            return stale
        if stale is not None and self._loop is not None and self._loop.is_closed():
            # Its connections died with their loop; closing it only marks it so (no warning).
            await stale.close()
        connector: aiohttp.BaseConnector
        if self._unix_socket is not None:
            connector = aiohttp.UnixConnector(
                path=self._unix_socket,
                limit=self._max_connections,
                keepalive_timeout=KEEPALIVE_S,
            )
        else:
            connector = aiohttp.TCPConnector(
                limit=self._max_connections,
                keepalive_timeout=KEEPALIVE_S,
                # Node URLs are fixed; a DNS answer cached for a minute is plenty fresh.
                ttl_dns_cache=60,
            )
        self._session = aiohttp.ClientSession(
            connector=connector,
            timeout=self._timeout,
            headers=self._headers,
        )
        self._loop = loop
        return self._session

    async def post(self, url: str, body: bytes) -> tuple[int, bytes]:
        session = await self._open()
        try:
            async with session.post(url, data=body) as response:
                return response.status, await response.read()
        except TimeoutError:
            raise TransportFailure("timed out", timed_out=True) from None
        except aiohttp.ClientConnectorError as exc:
            raise TransportFailure(_connect_reason(exc.os_error)) from None
        except aiohttp.ClientError as exc:
            raise TransportFailure(str(exc) or type(exc).__name__) from None

    async def aclose(self) -> None:
        session, self._session = self._session, None
        if session is None or session.closed:
            return
        loop = self._loop
        # A session of a loop still running elsewhere cannot be closed from this one.
        if loop is asyncio.get_running_loop() or (loop is not None and loop.is_closed()):
            await session.close()


class HttpxTransport:
    """Any ``httpx.AsyncBaseTransport`` (tests' ``MockTransport``, an ASGI app) as a
    :class:`PostTransport`."""

    def __init__(
        self,
        transport: httpx.AsyncBaseTransport,
        *,
        timeout: float,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        self._http = httpx.AsyncClient(
            transport=transport,
            timeout=httpx.Timeout(timeout),
            headers={**JSON_HEADERS, **(headers or {})},
        )

    async def post(self, url: str, body: bytes) -> tuple[int, bytes]:
        try:
            response = await self._http.post(url, content=body)
        except httpx.TimeoutException:
            raise TransportFailure("timed out", timed_out=True) from None
        except httpx.TransportError as exc:
            text = str(exc) or type(exc).__name__
            if isinstance(exc, httpx.ConnectError):
                text = _connect_reason(None, text)
            raise TransportFailure(text) from None
        return response.status_code, response.content

    async def aclose(self) -> None:
        await self._http.aclose()


def _connect_reason(error: OSError | None, text: str | None = None) -> str:
    """A short reason for a failed connect: "connection refused" when it is one."""
    if isinstance(error, ConnectionRefusedError) or "refused" in (text or str(error)).lower():
        return "connection refused"
    if error is not None:
        return f"cannot connect: {(error.strerror or str(error)).lower()}"
    return f"cannot connect: {text}"
