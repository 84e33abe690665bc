"""The signer's narrow RPC: JSON over HTTP on a Unix socket (or loopback TCP), secret required.

Every request must carry ``Authorization: Bearer <secret>``; the comparison is constant-time and
a refusal says nothing else. Only the methods in :data:`METHODS` exist. Errors are
``{"error": {"code", "message", ...}}`` with the error's HTTP status; anything unexpected is a
500 whose details stay in the signer's log (never key material: nothing here holds any).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hmac
import inspect
import json
import logging
import os
import socket
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from seiwallet.errors import SeiwalletError
from seiwallet.signer.errors import SignerError, SignerUnauthorized
from seiwallet.signer.service import SignerService

log = logging.getLogger(__name__)

#: The whole surface of the signer.
METHODS = (
    "health",
    "create_wallet",
    "add_authenticator",
    "remove_authenticator",
    "get_policy",
    "sign",
    "export_key",
    "audit",
)

#: Threads the service runs on. Two let a signing batch be read and checked while the previous
#: one waits for its commit to reach the disk (the service lets one batch compute at a time);
#: two more keep a health check or a wallet creation from queueing behind signing batches.
RPC_WORKERS = 4

#: Largest request body accepted (a batch of a few thousand intents fits).
MAX_BODY_BYTES = 16 * 1024 * 1024


def dump_json(content: Any) -> bytes:
    """What Starlette's JSONResponse writes (compact UTF-8 JSON), by orjson when it can.

    orjson writes the same compact form ~15× faster (a batch's answer: ~0.8 ms less on the
    signer's core); what it refuses (integers beyond 64 bits, non-string keys, lone surrogates)
    is written by the json module as before. (Requests are read by the json module: orjson
    reads integers beyond 64 bits as floats, and telling whether a body holds one costs more
    than orjson saves.)
    """
    try:
        return orjson.dumps(content)
    except TypeError:
        return json.dumps(
            content, ensure_ascii=False, allow_nan=False, indent=None, separators=(",", ":")
        ).encode("utf-8")


class _JSONResponse(Response):
    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return dump_json(content)


class _Refusal(Exception):
    """A request refused before it reaches the service (auth, method, body)."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


def _answer_error(code: str, message: str, status: int, **details: Any) -> Response:
    body = {"code": code, "message": message} | {k: v for k, v in details.items() if v is not None}
    return _JSONResponse({"error": body}, status_code=status)


def _error(exc: SeiwalletError) -> Response:
    return _answer_error(
        exc.code,
        str(exc),
        exc.status,
        reason=getattr(exc, "reason", None),
        rule=getattr(exc, "rule", None),
        authenticator_id=getattr(exc, "authenticator_id", None),
    )


def create_app(service: SignerService, secret: str) -> Starlette:
    """The signer's ASGI application around a service object."""
    expected = f"Bearer {secret}".encode()
    workers = ThreadPoolExecutor(max_workers=RPC_WORKERS, thread_name_prefix="signer-rpc")

    async def parse(request: Request) -> tuple[Callable[..., Any], dict[str, Any]]:
        presented = request.headers.get("authorization", "").encode()
        if not hmac.compare_digest(presented, expected):
            unauthorized = SignerUnauthorized("missing or wrong signer secret")
            raise _Refusal(unauthorized.status, unauthorized.code, str(unauthorized))
        method = request.path_params["method"]
        if method not in METHODS:
            raise _Refusal(404, "signer.unknown_method", f"no method {method!r}")
        body = await request.body()
        if len(body) > MAX_BODY_BYTES:
            raise _Refusal(413, "signer.too_large", "request body too large")
        try:
            params = json.loads(body) if body else {}
        except ValueError:
            raise _Refusal(400, "signer.bad_request", "the body is not JSON") from None
        if not isinstance(params, dict):
            raise _Refusal(400, "signer.bad_request", "params must be a JSON object")
        handler: Callable[..., Any] = getattr(service, method)
        try:
            inspect.signature(handler).bind(**params)
        except TypeError as exc:
            # Wrong or missing parameters: say which, without a trace.
            raise _Refusal(400, "signer.bad_request", f"{method}: {exc}") from None
        return handler, params

    async def rpc(request: Request) -> Response:
        try:
            handler, params = await parse(request)
        except _Refusal as refusal:
            return _answer_error(refusal.code, refusal.message, refusal.status)
        try:
            # The service is synchronous: it runs on a few worker threads, so that while one
            # signing batch waits for its commit to reach the disk, the next one is read and
            # its approvals checked (the service's and the store's locks keep the rest serial
            # where it must be: per wallet, one SQLite writer, one batch computing at a time).
            loop = asyncio.get_running_loop()
            result = await loop.run_in_executor(workers, functools.partial(handler, **params))
        except SeiwalletError as exc:
            return _error(exc)
        except Exception:
            log.exception("signer: unexpected error in %s", request.path_params["method"])
            return _answer_error("signer.internal", "internal signer error", 500)
        return _JSONResponse({"result": result})

    @contextlib.asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        try:
            yield
        finally:
            workers.shutdown(wait=True)

    return Starlette(routes=[Route("/v1/{method}", rpc, methods=["POST"])], lifespan=lifespan)


def prepare_socket(path: Path) -> None:
    """Make the socket's directory private and remove a stale socket file.

    A socket another signer still answers on is left alone: unlinking it would silently take
    that signer's place, with two processes writing one key store.
    """
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(path.parent, 0o700)
    if not path.is_socket():
        return
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.connect(str(path))
    except OSError:
        path.unlink()  # nobody listens: a crashed signer's leftover
        return
    finally:
        probe.close()
    raise SignerError(
        f"another signer is already listening on {path}: stop it first, "
        "or give this one its own SEIWALLET_DATA_DIR"
    )
