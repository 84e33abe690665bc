"""The development webhook receiver (``local`` only): ``POST /dev-webhooks/{name}`` and its page.

Point a store's webhook endpoint at ``{public_url}/dev-webhooks/<name>`` and every event the
worker (or the Developers page's "Send test event") delivers there is kept and listed at
``/dev-webhooks`` — newest first, with the event type, the delivery id, whether the signature
verifies with the endpoint's secret, and the JSON body — so a person trying the platform sees
what a merchant's own systems would receive. On any other profile both answer 404, like the
development mailbox. Storage and the signature check live in :mod:`seiwallet.api.devhooks_inbox`.
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from seiwallet.api.auth import optional_session, services
from seiwallet.api.devhooks_inbox import NAME, receive
from seiwallet.api.pages import error_page, render
from seiwallet.web.i18n import gettext as _

router = APIRouter()

#: How many deliveries the page lists.
PAGE_SIZE = 50


@router.post("/dev-webhooks/{name}", include_in_schema=False)
async def receive_delivery(request: Request, name: str) -> Response:
    return await receive(services(request).devhooks, request)


@router.get("/dev-webhooks", include_in_schema=False)
async def all_deliveries(request: Request) -> Response:
    return await _page(request, None)


@router.get("/dev-webhooks/{name}", include_in_schema=False)
async def deliveries_to(request: Request, name: str) -> Response:
    return await _page(request, name)


async def _page(request: Request, name: str | None) -> Response:
    inbox = services(request).devhooks
    if inbox is None:
        return error_page(
            request,
            404,
            _("Not here"),
            _("The development webhook receiver exists on the local profile only."),
        )
    if name is not None and not NAME.match(name):
        return error_page(
            request,
            404,
            _("Not found"),
            _("A receiver's name has lower-case letters, digits and dashes only."),
        )
    session = await optional_session(request)
    deliveries = await run_in_threadpool(inbox.deliveries, name, PAGE_SIZE)
    return render(
        request,
        "dev_webhooks.html",
        session,
        receiver=name,
        receiver_url=inbox.url_of(name or "<name>"),
        deliveries=deliveries,
    )
