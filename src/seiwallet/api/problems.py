"""Errors as RFC 9457 problem details: the one place an error becomes an HTTP answer.

Every deliberate error is a :class:`~seiwallet.errors.SeiwalletError` carrying a stable ``code``
and an HTTP ``status``: the answer is ``application/problem+json`` with ``type`` naming the code,
``title`` the kind of problem, ``detail`` the error's own message (which says what to do) and
``code`` for programs. Anything else is a bug: a 500 whose body says only that, with a request
id to quote; the traceback goes to the log, never to the client.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Mapping
from typing import Any, Final

from starlette.responses import JSONResponse

from seiwallet.errors import SeiwalletError
from seiwallet.web import i18n

log = logging.getLogger(__name__)

PROBLEM_JSON: Final = "application/problem+json"
#: Base of every problem ``type``: the page ``/problems/<code>`` explains it.
TYPE_BASE: Final = "/problems/"


def title_of(error: type[SeiwalletError]) -> str:
    """A problem type's short title: the first line of its class docstring, else its code."""
    doc = inspect.getdoc(error)
    if doc:
        return doc.splitlines()[0].rstrip(".")
    return error.code


def problem(
    status: int,
    code: str,
    title: str,
    detail: str,
    *,
    instance: str | None = None,
    headers: Mapping[str, str] | None = None,
    **extra: Any,
) -> JSONResponse:
    body: dict[str, Any] = {
        "type": TYPE_BASE + code,
        "title": title,
        "status": status,
        "detail": detail,
        "code": code,
    }
    if instance:
        body["instance"] = instance
    body.update(extra)
    return JSONResponse(body, status_code=status, media_type=PROBLEM_JSON, headers=headers)


#: Extra members some errors add to their problem (RFC 9457 §3.2 extension members).
_EXTENSIONS: Final = ("attempts_left", "retry_after", "reason", "rule", "authenticator_id")


def from_error(exc: SeiwalletError, *, instance: str | None = None, **more: Any) -> JSONResponse:
    extra: dict[str, Any] = {
        name: getattr(exc, name)
        for name in _EXTENSIONS
        if isinstance(getattr(exc, name, None), str | int)
    }
    extra.update(more)
    headers = None
    if isinstance(extra.get("retry_after"), int):
        headers = {"Retry-After": str(extra["retry_after"])}
    return problem(
        exc.status,
        exc.code,
        title_of(type(exc)),
        # Set by the edge middleware for the request: an error carrying the operator's own
        # text in several languages (a rule file's notice) answers in the reader's.
        exc.message_in(i18n.current_locale()),
        instance=instance,
        headers=headers,
        **extra,
    )


def internal(request_id: str) -> JSONResponse:
    return problem(
        500,
        "internal",
        "Internal error",
        f"something went wrong on our side; quote request id {request_id} to support",
        request_id=request_id,
    )
