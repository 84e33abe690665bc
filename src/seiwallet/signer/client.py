"""The only way the rest of the platform talks to the signer.

:class:`SignerClient` speaks the signer's RPC over its Unix socket (or loopback TCP) and turns
its error answers back into the same typed errors the signer raised, so a caller handles
``PolicyDeclined`` or ``ApprovalRefused`` whether the signer runs in-process (tests) or apart.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Self

import orjson

from seiwallet.errors import SeiwalletError
from seiwallet.http import AiohttpTransport, TransportFailure
from seiwallet.signer.errors import (
    AlreadyExists,
    ApprovalRefused,
    IntentInvalid,
    MasterKeyMismatch,
    PolicyDeclined,
    SignerError,
    SignerUnauthorized,
    SignerUnavailable,
    UnknownWallet,
)

#: Errors the signer may answer with, by their stable code.
_ERRORS_BY_CODE: dict[str, type[SignerError]] = {
    cls.code: cls
    for cls in (
        AlreadyExists,
        ApprovalRefused,
        PolicyDeclined,
        IntentInvalid,
        SignerUnauthorized,
        MasterKeyMismatch,
        UnknownWallet,
        SignerUnavailable,
    )
}


log = logging.getLogger(__name__)

#: Requests one grouped ``sign`` call carries at most (the signer takes up to 1,000).
GROUP_MAX = 500
#: Grouped ``sign`` calls under way at once: one being decided while the other's commit
#: reaches the signer's disk, as the signer overlaps them.
GROUP_FLIGHTS = 2

_SignRequest = tuple[str, Mapping[str, Any], Sequence[Mapping[str, Any]]]


def _rebuild(error: Mapping[str, Any]) -> SignerError:
    """The typed error for an error answer, with the signer's message and details."""
    code = str(error.get("code", SignerError.code))
    cls = _ERRORS_BY_CODE.get(code, SignerError)
    exc = cls.__new__(cls)
    SeiwalletError.__init__(exc, str(error.get("message", "signer error")))
    for attribute in ("reason", "rule", "authenticator_id"):
        setattr(exc, attribute, error.get(attribute))
    if cls is SignerError:
        exc.code = code  # type: ignore[misc]  # keep an unknown code as the signer sent it
    return exc


def _group_failure() -> SignerError:
    return SignerError("the signer request could not be made (see the log)")


class SignerClient:
    """Async client of the signer's RPC."""

    def __init__(
        self,
        *,
        secret: str,
        socket: Path | None = None,
        url: str | None = None,
        timeout: float = 10.0,
    ) -> None:
        if (socket is None) == (url is None):
            raise ValueError("give the signer's socket or its loopback URL, not both")
        self._where = str(socket) if socket is not None else str(url)
        self._base = (url or "http://signer").rstrip("/")
        self._http = AiohttpTransport(
            timeout=timeout,
            headers={"authorization": f"Bearer {secret}"},
            unix_socket=str(socket) if socket is not None else None,
        )
        self._waiting: list[tuple[_SignRequest, asyncio.Future[dict[str, Any] | SignerError]]] = []
        self._flights: set[asyncio.Task[None]] = set()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        if self._flights:
            await asyncio.gather(*self._flights, return_exceptions=True)
        await self._http.aclose()

    async def call(self, method: str, **params: Any) -> Any:
        """Call one RPC method; raise the signer's typed error if it refused."""
        try:
            _, content = await self._http.post(f"{self._base}/v1/{method}", orjson.dumps(params))
        except TransportFailure as exc:
            raise SignerUnavailable(
                f"cannot reach the signer at {self._where} ({exc.reason}): "
                "start it with `seiwallet signer`"
            ) from None
        try:
            body = orjson.loads(content)
        except orjson.JSONDecodeError:
            raise SignerUnavailable(f"the signer at {self._where} answered non-JSON") from None
        if not isinstance(body, dict):
            raise SignerUnavailable(f"the signer at {self._where} answered non-JSON")
        if "error" in body:
            raise _rebuild(body["error"])
        return body["result"]

    # -- the narrow surface ------------------------------------------------------------------
    async def health(self) -> dict[str, Any]:
        return dict(await self.call("health"))

    async def create_wallet(
        self, wallet_id: str, authenticator: Mapping[str, Any] | None = None
    ) -> dict[str, Any]:
        return dict(
            await self.call(
                "create_wallet",
                wallet_id=wallet_id,
                authenticator=dict(authenticator) if authenticator else None,
            )
        )

    async def add_authenticator(
        self,
        wallet_id: str,
        authenticator: Mapping[str, Any],
        approvals: Sequence[Mapping[str, Any]] = (),
    ) -> dict[str, Any]:
        return dict(
            await self.call(
                "add_authenticator",
                wallet_id=wallet_id,
                authenticator=dict(authenticator),
                approvals=[dict(a) for a in approvals],
            )
        )

    async def remove_authenticator(
        self, wallet_id: str, authenticator_id: str, approvals: Sequence[Mapping[str, Any]]
    ) -> dict[str, Any]:
        return dict(
            await self.call(
                "remove_authenticator",
                wallet_id=wallet_id,
                authenticator_id=authenticator_id,
                approvals=[dict(a) for a in approvals],
            )
        )

    async def get_policy(self, wallet_id: str) -> dict[str, Any]:
        return dict(await self.call("get_policy", wallet_id=wallet_id))

    async def sign(
        self, wallet_id: str, intent: Mapping[str, Any], approvals: Sequence[Mapping[str, Any]]
    ) -> dict[str, Any]:
        """Sign one intent; raise the typed error if it is refused.

        Concurrent calls are grouped (group commit): a call made while :data:`GROUP_FLIGHTS`
        grouped calls are under way waits for the next one, which carries every request that
        waited. An idle client sends at once. The signer decides each request of a group on its
        own (its answer, its refusal, its audit record), so grouping changes no answer; it
        shares the RPC round trip, the signer's transaction and its commit.
        """
        answer: asyncio.Future[dict[str, Any] | SignerError] = (
            asyncio.get_running_loop().create_future()
        )
        self._waiting.append(((wallet_id, intent, approvals), answer))
        if len(self._flights) < GROUP_FLIGHTS:
            flight = asyncio.create_task(self._fly())
            self._flights.add(flight)
            flight.add_done_callback(self._flights.discard)
        result = await answer
        if isinstance(result, SignerError):
            raise result
        return result

    async def _fly(self) -> None:
        """Send the waiting requests as one ``sign`` call, and again while more are waiting."""
        group: list[tuple[_SignRequest, asyncio.Future[dict[str, Any] | SignerError]]] = []
        try:
            while self._waiting:
                # A caller that gave up (its client went away) before its request left is dropped.
                group = [item for item in self._waiting[:GROUP_MAX] if not item[1].done()]
                del self._waiting[:GROUP_MAX]
                if not group:
                    continue
                answers: list[dict[str, Any] | SignerError]
                try:
                    answers = await self._answers([request for request, _ in group])
                except SignerUnavailable as exc:
                    answers = [SignerUnavailable(str(exc)) for _ in group]
                for (_, answer), result in zip(group, answers, strict=True):
                    if not answer.done():
                        answer.set_result(result)
                group = []
        except asyncio.CancelledError:
            # Shutting down: nobody is left waiting for an answer that will not come.
            for _, answer in [*group, *self._waiting]:
                if not answer.done():
                    answer.set_exception(SignerUnavailable("the signer client was closed"))
            raise

    async def _answers(self, group: list[_SignRequest]) -> list[dict[str, Any] | SignerError]:
        """Each request's answer; only an unreachable signer raises (for all of them)."""
        try:
            return await self.sign_batch(group)
        except SignerUnavailable:
            raise
        except Exception as exc:
            if len(group) == 1:
                if isinstance(exc, SignerError):
                    return [exc]
                log.exception("signer: a sign request could not be made")
                return [_group_failure()]
        # Something in one request broke the whole call (it could not be encoded, say): each
        # request goes again on its own, so that it fails only its own caller.
        answers: list[dict[str, Any] | SignerError] = []
        for request in group:
            answers.extend(await self._answers([request]))
        return answers

    async def sign_batch(
        self,
        requests: Sequence[tuple[str, Mapping[str, Any], Sequence[Mapping[str, Any]]]],
    ) -> list[dict[str, Any] | SignerError]:
        """Sign many intents in one call; each slot holds its result or its typed error."""
        answers = await self.call(
            "sign",
            requests=[
                {"wallet_id": w, "intent": dict(i), "approvals": [dict(a) for a in approvals]}
                for w, i, approvals in requests
            ],
        )
        return [
            _rebuild(answer["error"]) if "error" in answer else dict(answer["result"])
            for answer in answers
        ]

    async def export_key(
        self, wallet_id: str, intent: Mapping[str, Any], approvals: Sequence[Mapping[str, Any]]
    ) -> dict[str, Any]:
        return dict(
            await self.call(
                "export_key",
                wallet_id=wallet_id,
                intent=dict(intent),
                approvals=[dict(a) for a in approvals],
            )
        )

    async def audit(self, after_seq: int = 0, limit: int = 100) -> list[dict[str, Any]]:
        return list(await self.call("audit", after_seq=after_seq, limit=limit))
