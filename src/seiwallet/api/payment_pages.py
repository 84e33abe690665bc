"""The payment pages: the point of sale, the wallet's pay screen and the merchant dashboard.

Server-rendered like the rest of the wallet app (``pages.render``), and thin: every rule lives
in ``seiwallet.payments`` and every change of money goes through the JSON API (``/v1``), which
the pages' scripts call with the session's CSRF token:

* ``/pos/{terminal}``: a cashier's keypad. ``pos.js`` creates the invoice
  (``POST /v1/stores/{store}/invoices`` with an Idempotency-Key per sale), shows the sale that
  ``/pos/{terminal}/sales/{invoice}`` renders (QR code of the pay link, amounts formatted by
  Babel, countdown) and listens to the invoice's server-sent events; when it settles the sale
  is read again (the receipt) and the screen turns green.
* ``/pay/{invoice}``: what the QR code opens. ``pay.js`` prepares the payment, runs the passkey
  ceremony, then follows ``/pay/{invoice}/events`` (the invoice's status only, for the payer)
  and re-reads the page's live part until it is settled.
* ``/merchant/...``: signing up as a merchant, stores, terminals, payments (filters, totals, a
  daily volume chart drawn here as SVG), an invoice with its events and refunds, API keys,
  webhooks, staff. Forms post here (CSRF in the form) and are answered with the page again;
  a secret (API key, webhook signing secret) is shown in that one answer and never again.

What each person may see is the payments domain's decision (``Principal.require``); a page
refuses with a readable page, in the reader's language, never a traceback.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any, Final
from urllib.parse import urlencode

from babel.numbers import format_percent, get_currency_precision
from fastapi import APIRouter, Request
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response, StreamingResponse

from seiwallet.accounts.sessions import SessionInfo
from seiwallet.api import wallet_view
from seiwallet.api.auth import current_session, optional_session, services
from seiwallet.api.pages import (
    _redirect,
    _signed_in,
    error_page,
    locale_of,
    merchant_nav,
    render,
)
from seiwallet.api.services import Services
from seiwallet.db import as_utc
from seiwallet.errors import InvalidInput, SeiwalletError
from seiwallet.money import TokenAmount
from seiwallet.payments.approvers import ApproverView
from seiwallet.payments.bus import Topic
from seiwallet.payments.errors import (
    AccessError,
    AlreadyMerchant,
    InvoiceNotFound,
    MerchantNotFound,
    StaffUserUnknown,
    StoreNotFound,
    TerminalNotFound,
    UnsupportedSettlementToken,
    WebhookUrlInvalid,
)
from seiwallet.payments.invoices import InvoiceFilter
from seiwallet.payments.merchants import MerchantOwner, MerchantView, StoreView
from seiwallet.payments.models import InvoiceStatus, RefundMethod
from seiwallet.payments.permissions import API_KEY_SCOPES, Permission, Principal
from seiwallet.payments.services import Payer, Payments
from seiwallet.payments.webhooks import SUBSCRIBABLE
from seiwallet.transfers.rates import currency_of_token
from seiwallet.web.i18n import gettext as _
from seiwallet.web.payments import format_fiat, format_token, qr_svg
from seiwallet.web.templating import short_address

log = logging.getLogger(__name__)

router = APIRouter()

#: How long a page waits for the chain (payments need its tokens) before saying so.
PAYMENTS_WAIT_SECONDS: Final = 5.0
#: Payments listed per page of the dashboard.
PAGE_SIZE: Final = 25
#: Days the dashboard shows when no period is chosen.
DEFAULT_DAYS: Final = 14
#: An idle payer's stream sends a keep-alive comment this often.
HEARTBEAT_SECONDS: Final = 15.0
_INVOICE_ID: Final = re.compile(r"^0x[0-9a-fA-F]{64}$")
_HEX_ID: Final = re.compile(r"^[0-9a-f]{32}$")
#: Invoice states in which the payer's money reached the merchant.
_PAID: Final = frozenset({"settled", "partially_refunded", "refunded"})
#: Event types a payer's stream passes on (as the status they lead to).
_PAYER_EVENTS: Final = frozenset(
    {
        "invoice.processing",
        "invoice.settled",
        "invoice.expired",
        "invoice.invalid",
        "invoice.refunded",
        "invoice.partially_refunded",
    }
)
#: Webhook event types offered on the form, in the order a merchant thinks of them.
WEBHOOK_EVENTS: Final = (
    "invoice.created",
    "invoice.processing",
    "invoice.settled",
    "invoice.expired",
    "invoice.invalid",
    "invoice.refunded",
    "invoice.partially_refunded",
    "invoice.anomaly",
    "refund.created",
    "refund.signed",
    "refund.settled",
    "refund.failed",
)
#: Scopes offered for a new API key, with what they let a key do.
KEY_SCOPES: Final = (
    "invoices:create",
    "invoices:read",
    "refunds:create",
    "webhooks:manage",
    "reports:read",
)
assert set(KEY_SCOPES) == {str(s) for s in API_KEY_SCOPES}
assert set(WEBHOOK_EVENTS) == set(SUBSCRIBABLE)


class Refused(Exception):
    """A page's readable refusal: status, title and what to do (already translated)."""

    def __init__(self, status: int, title: str, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.title = title
        self.detail = detail


def _refusal(exc: SeiwalletError) -> Refused:
    """A domain refusal as the reader's page says it (the common ones in their language)."""
    not_found = _("Not found")
    if isinstance(exc, (TerminalNotFound,)):
        return Refused(
            404, not_found, _("There is no such terminal among the stores you work for.")
        )
    if isinstance(exc, (StoreNotFound, MerchantNotFound)):
        return Refused(404, not_found, _("There is no such store among the stores you work for."))
    if isinstance(exc, InvoiceNotFound):
        return Refused(404, not_found, _("There is no such payment. Check the link or QR code."))
    if isinstance(exc, AccessError):
        return Refused(
            exc.status if exc.status in (401, 403) else 403,
            _("Not allowed"),
            _("Your role doesn't allow this. Ask the owner or a manager of the business."),
        )
    if exc.status == 404:
        return Refused(404, not_found, str(exc))
    return Refused(exc.status, _("This can't be done"), str(exc))


def _refused_page(request: Request, refused: Refused) -> Response:
    return error_page(request, refused.status, refused.title, refused.detail)


async def _payments(svc: Services) -> Payments:
    """The payments services, or a readable refusal while the chain cannot be reached."""
    try:
        return await asyncio.wait_for(svc.connect_payments(), PAYMENTS_WAIT_SECONDS)
    except (SeiwalletError, OSError, TimeoutError) as exc:
        log.warning("payments are unavailable for a page: %s", exc)
        raise Refused(
            503,
            _("Payments are unavailable right now"),
            _("The Sei network isn't answering. Nothing was changed; try again in a moment."),
        ) from None


# -- formatting ------------------------------------------------------------------------------------


def _decimal(text: object) -> Decimal:
    try:
        return Decimal(str(text))
    except InvalidOperation:
        return Decimal(0)


def fiat_text(amount: object, currency: str, locale: str, tokens: Mapping[str, Any]) -> str:
    """A price in its currency (``HK$97.25``, ``97,25 €``), or in a token when priced in one."""
    if currency.upper() in tokens:
        return format_token(_decimal(amount), currency.upper(), locale=locale)
    return format_fiat(_decimal(amount), currency, locale=locale)


def token_text(amount: object, symbol: str, locale: str) -> str:
    return format_token(_decimal(amount), symbol, locale=locale)


def _moment(text: object) -> datetime | None:
    if not text:
        return None
    try:
        return datetime.fromisoformat(str(text))
    except ValueError:
        return None


def explorer(svc: Services, tx_hash: object) -> str | None:
    return svc.settings.network.explorer_link(str(tx_hash)) if tx_hash else None


def invoice_row(
    invoice: Mapping[str, Any], locale: str, svc: Services, tokens: Mapping[str, Any]
) -> dict[str, Any]:
    """An invoice (``invoice_json``) as the merchant's pages show it."""
    symbol = str(invoice["token"])
    price = invoice["price"]
    refunded = _decimal(invoice.get("refunded", "0"))
    return {
        "id": invoice["id"],
        "short_id": short_address(str(invoice["id"])),
        "url": f"/merchant/invoices/{invoice['id']}",
        "store_id": invoice["store_id"],
        "terminal_id": invoice.get("terminal_id"),
        "status": invoice["status"],
        "anomalies": list(invoice.get("anomalies") or []),
        "order_id": invoice.get("order_id"),
        "note": (invoice.get("metadata") or {}).get("note"),
        "price": fiat_text(price["amount"], price["currency"], locale, tokens),
        "currency": price["currency"],
        "symbol": symbol,
        "amount": token_text(invoice["amount"], symbol, locale),
        "amount_plain": invoice["amount"],
        "amount_units": int(invoice["amount_units"]),
        "fee": token_text(invoice["fee"], symbol, locale),
        "fee_bps": invoice["fee_bps"],
        "fee_percent": format_percent(
            Decimal(int(invoice["fee_bps"])) / 10_000, "#,##0.##%", locale=locale
        ),
        "net": token_text(invoice["net"], symbol, locale),
        "refunded": token_text(refunded, symbol, locale) if refunded else None,
        "refunded_units": int(invoice.get("refunded_units") or 0),
        "rate": invoice["rate"],
        "payer": invoice.get("payer"),
        "tx_hash": invoice.get("tx_hash"),
        "explorer_url": explorer(svc, invoice.get("tx_hash")),
        "created_at": _moment(invoice.get("created_at")),
        "expires_at": _moment(invoice.get("expires_at")),
        "settled_at": _moment(invoice.get("settled_at")),
        "paid": invoice["status"] in _PAID,
    }


def decimals_of(payments: Payments, symbol: str) -> int:
    token = payments.payments.tokens.get(symbol)
    return token.decimals if token is not None else 6


def money_context(request: Request) -> tuple[str, wallet_view.Money]:
    locale = locale_of(request)
    return locale, wallet_view.Money.for_locale(locale, wallet_view.rate_source(request))


# -- the pay screen (the payer) --------------------------------------------------------------------


def _payer(session: SessionInfo) -> Payer:
    return Payer(session.user_id, session.wallet_id, session.wallet_address)


@dataclass(frozen=True)
class PayState:
    """Where an invoice stands for the person looking at it."""

    #: sign_in | payable | processing | paid | paid_elsewhere | expired | closed | own
    state: str
    attempt: dict[str, Any] | None = None


def _pay_state(  # noqa: PLR0911 - one answer per state, in the order they are decided
    invoice: Any, session: SessionInfo | None, now: datetime
) -> PayState:
    status = str(invoice.status)
    mine = session is not None and invoice.payer_user_id == session.user_id
    if session is None and status == "new" and as_utc(invoice.expires_at) > now:
        return PayState("sign_in")
    if status == "processing":
        return PayState("processing" if mine else "paid_elsewhere")
    if status in _PAID:
        return PayState("paid" if mine else "paid_elsewhere")
    if status == "invalid":
        return PayState("closed")
    if status == "expired" or as_utc(invoice.expires_at) <= now:
        return PayState("expired")
    if session is None:
        return PayState("sign_in")
    if invoice.merchant_address.lower() == session.wallet_address.lower():
        return PayState("own")
    return PayState("payable")


@router.get("/pay/{invoice_id}")
async def pay(request: Request, invoice_id: str) -> Response:
    """What the counter's QR code opens: the invoice, the payer's balance, and "Pay"."""
    svc = services(request)
    session = await optional_session(request)
    try:
        payments = await _payments(svc)
        if not _INVOICE_ID.match(invoice_id):
            raise InvoiceNotFound
        invoice = await run_in_threadpool(payments.invoices.row, invoice_id)
        public = await run_in_threadpool(payments.invoices.public, invoice_id)
    except Refused as refused:
        return _refused_page(request, refused)
    except SeiwalletError as exc:
        return _refused_page(request, _refusal(exc))
    locale, money = money_context(request)
    now = datetime.fromtimestamp(svc.clock(), UTC)
    state = _pay_state(invoice, session, now)
    tokens = payments.payments.tokens
    symbol = invoice.symbol
    token = tokens.get(symbol)
    amount = TokenAmount.from_units(invoice.amount_units, invoice.decimals, symbol)
    balance: str | None = None
    short = False
    if state.state == "payable" and session is not None and token is not None:
        try:
            units = await asyncio.wait_for(
                payments.payments.available(_payer(session), token), PAYMENTS_WAIT_SECONDS
            )
        except (SeiwalletError, OSError, TimeoutError) as exc:
            log.warning("the payer's balance could not be read: %s", exc)
        else:
            available = TokenAmount.from_units(units, invoice.decimals, symbol)
            balance = format_token(available, locale=locale)
            short = units < invoice.amount_units
    attempt: dict[str, Any] | None = None
    if state.state in ("processing", "paid") and session is not None and invoice.attempt_id:
        try:
            view = await run_in_threadpool(
                payments.payments.attempt, session.user_id, invoice.attempt_id
            )
        except SeiwalletError:
            view = None
        if view is not None:
            attempt = {"status": str(view.status), "failure": view.failure_reason}
    tx_hash = invoice.tx_hash
    price = public["price"]
    # Outside wallets (and the shop's own): the invoice's deposit address while it is open.
    deposit = (
        _deposit_view(public.get("deposit"), format_token(amount, locale=locale))
        if state.state in ("sign_in", "payable", "own")
        else None
    )
    context: dict[str, Any] = {
        "invoice": {
            "id": invoice.id,
            "status": str(invoice.status),
            "store_name": public["store"]["name"],
            "merchant_name": public["merchant_name"],
            "price": fiat_text(price["amount"], price["currency"], locale, tokens),
            "priced_in_token": price["currency"].upper() == symbol,
            "amount": format_token(amount, locale=locale),
            "amount_number": format_token(amount, locale=locale, with_symbol=False),
            "symbol": symbol,
            "fee": token_text(public["fee"], symbol, locale),
            "fee_bps": invoice.fee_bps,
            # Its value in the reader's currency, unless that is already on screen.
            "value": money.fiat(amount)
            if money.currency not in (price["currency"], currency_of_token(symbol))
            else None,
            "expires_at": as_utc(invoice.expires_at),
            "settled_at": as_utc(invoice.settled_at) if invoice.settled_at else None,
            "tx_hash": tx_hash,
            "explorer_url": explorer(svc, tx_hash),
        },
        "state": state.state,
        "attempt": attempt,
        "balance": balance,
        "insufficient": short,
        "providers": [
            {
                "label": p.label,
                "kind": p.kind,
                "url": f"{p.url}?{urlencode({'next': f'/pay/{invoice.id}'})}",
            }
            for p in svc.providers
        ],
        "events_url": f"/pay/{invoice.id}/events",
        "deposit": deposit,
    }
    return render(request, "pay.html", session, **context)


def _deposit_view(found: object, amount: str) -> dict[str, Any] | None:
    """An invoice's ``deposit`` member as a page shows it: address, link, and its QR code."""
    if not isinstance(found, Mapping) or not found.get("uri") or not found.get("address"):
        return None
    return {
        "address": str(found["address"]),
        "uri": str(found["uri"]),
        "qr": qr_svg(
            str(found["uri"]),
            label=_("QR code for other wallets to pay %(amount)s") % {"amount": amount},
        ),
    }


@router.get("/pay/{invoice_id}/events")
async def pay_events(request: Request, invoice_id: str) -> Response:
    """The invoice's status as it changes (server-sent events): all a payer's phone needs.

    Only the event type and the status it leads to are sent, never the merchant's view."""
    svc = services(request)
    await current_session(request)
    payments = await svc.connect_payments()
    if not _INVOICE_ID.match(invoice_id):
        raise InvoiceNotFound
    invoice = await run_in_threadpool(payments.invoices.row, invoice_id)
    bus = svc.payment_bus()
    topic = Topic(invoice_id=invoice.id)

    async def frames() -> AsyncIterator[str]:
        yield "retry: 1000\n: connected\n\n"
        async for event in bus.stream(topic, after=0, heartbeat=HEARTBEAT_SECONDS):
            if event is None:
                yield ": keep-alive\n\n"
                continue
            if event.type not in _PAYER_EVENTS:
                continue
            status = event.type.removeprefix("invoice.")
            data = json.dumps({"type": event.type, "status": status}, separators=(",", ":"))
            yield f"id: {event.id}\nevent: status\ndata: {data}\n\n"

    return StreamingResponse(
        frames(),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


# -- the point of sale -----------------------------------------------------------------------------


async def _terminal(
    svc: Services, payments: Payments, session: SessionInfo, terminal_id: str
) -> tuple[Principal, Any, StoreView]:
    """The terminal if this person works in its store (else TerminalNotFound, said alike)."""
    if not _HEX_ID.match(terminal_id):
        raise TerminalNotFound
    store_id = await run_in_threadpool(payments.merchants.terminal_store, terminal_id)
    try:
        principal = await run_in_threadpool(
            payments.merchants.principal_for_store, session.user_id, store_id
        )
    except StoreNotFound:
        raise TerminalNotFound from None
    principal.require(Permission.INVOICES_CREATE, store_id)
    terminal = await run_in_threadpool(payments.merchants.terminal, principal, terminal_id)
    if terminal.revoked:
        raise TerminalNotFound
    store = await run_in_threadpool(payments.merchants.store, store_id)
    return principal, terminal, store


@router.get("/pos/{terminal_id}")
async def pos(request: Request, terminal_id: str) -> Response:
    session = await _signed_in(request)
    if isinstance(session, Response):
        return session
    svc = services(request)
    try:
        payments = await _payments(svc)
        principal, terminal, store = await _terminal(svc, payments, session, terminal_id)
        merchant = await run_in_threadpool(payments.merchants.merchant, principal)
    except Refused as refused:
        return _refused_page(request, refused)
    except SeiwalletError as exc:
        return _refused_page(request, _refusal(exc))
    locale = locale_of(request)
    currency = store.currency
    precision = get_currency_precision(currency)
    return render(
        request,
        "pos.html",
        session,
        merchant_nav=True,
        terminal={"id": terminal.id, "name": terminal.name},
        store={"id": store.id, "name": store.name, "currency": currency},
        merchant_name=merchant.name,
        settlement_token=merchant.settlement_token,
        precision=precision,
        zero=format_fiat(Decimal(0), currency, locale=locale),
        expiry_seconds=svc.settings.payments.terminal_expiry_seconds,
        dashboard_url=f"/merchant/stores/{store.id}",
        create_url=f"/v1/stores/{store.id}/invoices",
        sale_url=f"/pos/{terminal.id}/sales/",
    )


@router.get("/pos/{terminal_id}/sales/{invoice_id}")
async def pos_sale(request: Request, terminal_id: str, invoice_id: str) -> Response:
    """One sale as the counter shows it (a fragment ``pos.js`` puts on screen)."""
    session = await current_session(request)
    svc = services(request)
    try:
        payments = await _payments(svc)
        principal, terminal, store = await _terminal(svc, payments, session, terminal_id)
        if not _INVOICE_ID.match(invoice_id):
            raise InvoiceNotFound
        invoice = await run_in_threadpool(payments.invoices.get, principal, invoice_id)
    except Refused as refused:
        return _refused_page(request, refused)
    except SeiwalletError as exc:
        return _refused_page(request, _refusal(exc))
    if invoice.get("terminal_id") != terminal.id:
        return _refused_page(request, _refusal(InvoiceNotFound()))
    locale = locale_of(request)
    row = invoice_row(invoice, locale, svc, payments.payments.tokens)
    now = datetime.fromtimestamp(svc.clock(), UTC)
    status = row["status"]
    if status in _PAID:
        state = "paid"
    elif status == "processing":
        state = "processing"
    elif status == "invalid":
        state = "failed"
    elif status == "expired" or (row["expires_at"] is not None and row["expires_at"] <= now):
        state = "expired"
    else:
        state = "waiting"
    pay_url = f"{svc.settings.web.public_url.rstrip('/')}/pay/{row['id']}"
    # Outside wallets: the invoice's own deposit address, when it has one.
    deposit = _deposit_view(invoice.get("deposit"), row["amount"]) if state == "waiting" else None
    return render(
        request,
        "_pos_sale.html",
        session,
        sale=row,
        state=state,
        store={"name": store.name},
        pay_url=pay_url,
        deposit=deposit,
        qr=qr_svg(pay_url, label=_("QR code to pay %(amount)s") % {"amount": row["price"]})
        if state == "waiting"
        else None,
    )


# -- the merchant dashboard ------------------------------------------------------------------------


@dataclass(frozen=True)
class Desk:
    """The signed-in person at a merchant: who they are there and what they may open."""

    session: SessionInfo
    payments: Payments
    merchant: MerchantView
    principal: Principal
    stores: list[StoreView]
    #: A manager's or cashier's own refund passkey on the payout wallet, if they made one.
    refund_passkey: ApproverView | None = None

    @property
    def role(self) -> str:
        return str(self.principal.role or "")

    def may(self, permission: Permission) -> bool:
        return permission in self.principal.permissions

    @property
    def approves_refunds(self) -> bool:
        """Refunds are signed by the payout wallet: its owner's passkey approves them here, or a
        staff member's refund passkey the owner added to it (up to its cap, router refunds)."""
        if not self.merchant.payout_is_own_wallet:
            return False
        return self.role == "owner" or self.delegated_refunds

    @property
    def delegated_refunds(self) -> bool:
        """Whether this person approves refunds with an active refund passkey of their own."""
        return self.refund_passkey is not None and self.refund_passkey.status == "active"

    @property
    def offers_refund_passkey(self) -> bool:
        """Whether to offer making a refund passkey: staff who make refunds, on a payout wallet
        of this platform, who have none yet."""
        return (
            self.role != "owner"
            and self.merchant.payout_is_own_wallet
            and self.may(Permission.REFUNDS_CREATE)
            and self.refund_passkey is None
        )

    def nav(self) -> dict[str, bool]:
        return {
            "developers": self.may(Permission.KEYS_MANAGE),
            "team": self.may(Permission.STAFF_MANAGE),
            "new_store": self.may(Permission.STORES_MANAGE),
            "terminals": self.may(Permission.TERMINALS_MANAGE),
            "reports": self.may(Permission.REPORTS_READ),
            "refunds": (self.role in ("owner", "manager") or self.delegated_refunds)
            and self.may(Permission.REFUNDS_CREATE),
        }


async def _desk(svc: Services, session: SessionInfo, merchant_id: str | None = None) -> Desk | None:
    """The person's merchant (the one they own first), or None if they work for none."""
    payments = await _payments(svc)
    merchants = await run_in_threadpool(payments.merchants.merchants_of, session.user_id)
    if not merchants:
        return None
    chosen = next((m for m in merchants if m.id == merchant_id), None)
    if chosen is None:
        chosen = next((m for m in merchants if m.role == "owner"), merchants[0])
    principal = await run_in_threadpool(
        payments.merchants.principal_for_user, session.user_id, chosen.id
    )
    stores = await run_in_threadpool(payments.merchants.stores, principal)
    refund_passkey = None
    if chosen.role != "owner" and chosen.payout_is_own_wallet and payments.approvers is not None:
        refund_passkey = await run_in_threadpool(payments.approvers.mine, principal)
    return Desk(session, payments, chosen, principal, stores, refund_passkey)


async def _desk_for_store(
    svc: Services, session: SessionInfo, store_id: str
) -> tuple[Desk, StoreView]:
    payments = await _payments(svc)
    if not _HEX_ID.match(store_id):
        raise StoreNotFound
    principal = await run_in_threadpool(
        payments.merchants.principal_for_store, session.user_id, store_id
    )
    desk = await _desk(svc, session, principal.merchant_id)
    assert desk is not None  # the person works there
    store = next((s for s in desk.stores if s.id == store_id), None)
    if store is None:
        raise StoreNotFound
    return desk, store


def _desk_context(desk: Desk, store: StoreView | None, section: str) -> dict[str, Any]:
    return {
        "merchant_nav": True,
        "merchant": {
            "id": desk.merchant.id,
            "name": desk.merchant.name,
            "token": desk.merchant.settlement_token,
            "payout": desk.merchant.payout_address,
            "payout_is_own": desk.merchant.payout_is_own_wallet,
            "fee_bps": desk.merchant.fee_bps,
        },
        "role": desk.role,
        "can": desk.nav(),
        "stores": [{"id": s.id, "name": s.name, "currency": s.currency} for s in desk.stores],
        "store": (
            {
                "id": store.id,
                "name": store.name,
                "currency": store.currency,
                "country": store.country,
                "address": store.address,
            }
            if store is not None
            else None
        ),
        "section": section,
    }


def _form_error(exc: SeiwalletError) -> str:
    """A refused form's message: the domain's own words, as a sentence."""
    if isinstance(exc, AccessError):
        return _refusal(exc).detail
    if isinstance(exc, StaffUserUnknown):
        return _(
            "No seiwallet user has this verified e-mail. Ask them to sign up first, "
            "then invite them again."
        )
    if isinstance(exc, WebhookUrlInvalid):
        return _("The URL can't be used: %(reason)s") % {"reason": str(exc).split(": ", 1)[-1]}
    text = str(exc)
    return text[:1].upper() + text[1:]


async def _form(request: Request) -> dict[str, Any]:
    form = await request.form()
    values: dict[str, Any] = {}
    for key, value in form.multi_items():
        if not isinstance(value, str):
            continue
        if key in values:
            existing = values[key]
            values[key] = [*existing, value] if isinstance(existing, list) else [existing, value]
        else:
            values[key] = value
    return values


def _as_list(value: object) -> list[str]:
    if value is None:
        return []
    if isinstance(value, list):
        return [str(v) for v in value]
    return [str(value)]


# -- signing up, stores ----------------------------------------------------------------------------


def _signup_page(
    request: Request,
    session: SessionInfo,
    payments: Payments,
    *,
    error: str | None = None,
    values: Mapping[str, str] | None = None,
    status: int = 200,
) -> Response:
    tokens = list(payments.merchants.settlement_tokens)
    return render(
        request,
        "merchant/signup.html",
        session,
        status,
        merchant_nav=False,
        tokens=[t for t in wallet_view.OFFERED if t in tokens] or tokens,
        values={"name": "", "token": "USDC", **(values or {})},
        error=error,
        payout=session.wallet_address,
    )


@router.get("/merchant")
async def merchant_home(request: Request) -> Response:
    session = await _signed_in(request)
    if isinstance(session, Response):
        return session
    svc = services(request)
    try:
        desk = await _desk(svc, session)
        if desk is None:
            return _signup_page(request, session, await _payments(svc))
    except (Refused, SeiwalletError) as exc:
        return _refused_page(request, exc if isinstance(exc, Refused) else _refusal(exc))
    if desk.stores:
        return _redirect(f"/merchant/stores/{desk.stores[0].id}")
    if not desk.may(Permission.STORES_MANAGE):
        return _refused_page(
            request,
            Refused(404, _("No store yet"), _("The business has no store you work in yet.")),
        )
    return _redirect("/merchant/stores/new")


@router.get("/merchant/go")
async def merchant_go(request: Request, store: str = "") -> Response:
    """Where the store switcher's form goes (without JavaScript): that store's payments."""
    return _redirect(f"/merchant/stores/{store}" if _HEX_ID.match(store) else "/merchant")


@router.post("/merchant/signup")
async def merchant_signup(request: Request) -> Response:
    session = await current_session(request)
    svc = services(request)
    form = await _form(request)
    values = {"name": str(form.get("name", "")).strip(), "token": str(form.get("token", "USDC"))}
    try:
        payments = await _payments(svc)
    except Refused as refused:
        return _refused_page(request, refused)
    if not values["name"]:
        return _signup_page(
            request,
            session,
            payments,
            error=_("Enter your business's name, as customers know it."),
            values=values,
            status=422,
        )
    try:
        await payments.merchants.become_merchant(
            MerchantOwner(session.user_id, session.wallet_id, session.wallet_address),
            name=values["name"][:200],
            settlement_token=values["token"],
        )
    except AlreadyMerchant:
        return _redirect("/merchant")
    except (InvalidInput, UnsupportedSettlementToken) as exc:
        return _signup_page(
            request, session, payments, error=_form_error(exc), values=values, status=422
        )
    merchant_nav(svc).forget(session.user_id)  # the "Business" tab shows from the next page
    return _redirect("/merchant/stores/new")


#: Currencies offered for a store's prices (those the offline rate table knows, common first).
STORE_CURRENCIES: Final = ("HKD", "EUR", "USD", "GBP", "SGD", "JPY", "TWD", "CHF")


def _store_form(
    request: Request,
    desk: Desk,
    *,
    error: str | None = None,
    values: Mapping[str, str] | None = None,
    status: int = 200,
) -> Response:
    known = set(wallet_view.rate_source(request).table().currencies)
    currencies = [c for c in STORE_CURRENCIES if c in known] or ["USD"]
    return render(
        request,
        "merchant/store_new.html",
        desk.session,
        status,
        **_desk_context(desk, None, "stores"),
        currencies=currencies,
        values={"name": "", "country": "HK", "currency": "HKD", "address": "", **(values or {})},
        error=error,
    )


@router.get("/merchant/stores/new")
async def store_new(request: Request) -> Response:
    desk = await _desk_allowed(request, Permission.STORES_MANAGE, csrf=False)
    if isinstance(desk, Response):
        return desk
    return _store_form(request, desk)


@router.post("/merchant/stores")
async def store_create(request: Request) -> Response:
    session = await current_session(request)
    svc = services(request)
    form = await _form(request)
    values = {k: str(form.get(k, "")).strip() for k in ("name", "country", "currency", "address")}
    try:
        desk = await _desk(svc, session)
        if desk is None:
            return _redirect("/merchant")
    except Refused as refused:
        return _refused_page(request, refused)
    if not values["name"]:
        return _store_form(
            request, desk, error=_("Enter the store's name."), values=values, status=422
        )
    try:
        store = await run_in_threadpool(
            lambda: desk.payments.merchants.create_store(
                desk.principal,
                name=values["name"][:200],
                country=values["country"],
                currency=values["currency"],
                address=values["address"][:500],
            )
        )
        # Every store starts with a counter: the point of sale is one tap away.
        await run_in_threadpool(
            desk.payments.merchants.create_terminal, desk.principal, store.id, _("Counter 1")
        )
    except AccessError as exc:
        return _refused_page(request, _refusal(exc))
    except SeiwalletError as exc:
        return _store_form(request, desk, error=_form_error(exc), values=values, status=422)
    return _redirect(f"/merchant/stores/{store.id}/terminals")


# -- payments of a store ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Period:
    first: date
    last: date
    error: str | None = None


def _period(text_from: str | None, text_to: str | None, today: date) -> Period:
    """The chosen days (both included), or the last ``DEFAULT_DAYS`` with a message why."""
    default = Period(today - timedelta(days=DEFAULT_DAYS - 1), today)
    if not text_from and not text_to:
        return default
    try:
        last = date.fromisoformat(text_to) if text_to else today
        first = date.fromisoformat(text_from) if text_from else last - timedelta(DEFAULT_DAYS - 1)
    except ValueError:
        return Period(default.first, default.last, _("Choose the dates with the date fields."))
    if first > last:
        return Period(default.first, default.last, _("The start date is after the end date."))
    if (last - first).days >= 366:
        return Period(default.first, default.last, _("Choose a period of at most a year."))
    return Period(first, last)


def volume_chart(
    days: list[dict[str, Any]], period: Period, symbol: str, locale: str, decimals: int = 6
) -> dict[str, Any]:
    """The daily volume as bars (SVG geometry in a 320 × 140 box), and their summary."""
    gross: dict[str, int] = {}
    for row in days:
        if row["token"] == symbol:
            gross[row["date"]] = gross.get(row["date"], 0) + int(row["gross_units"])
    count = (period.last - period.first).days + 1
    width, height, top, bottom = 320.0, 140.0, 14.0, 22.0
    plot = height - top - bottom
    biggest = max(gross.values(), default=0)
    slot = width / count
    bar = max(1.5, slot * 0.68)
    bars = []
    label_every = max(1, round(count / 6))
    for index in range(count):
        day = period.first + timedelta(days=index)
        units = gross.get(day.isoformat(), 0)
        tall = (units / biggest) * plot if biggest else 0.0
        tall = max(tall, 2.0) if units else 0.0
        value = format_token(TokenAmount.from_units(units, decimals, symbol), locale=locale)
        bars.append(
            {
                "x": round(index * slot + (slot - bar) / 2, 2),
                "y": round(top + plot - tall, 2),
                "width": round(bar, 2),
                "height": round(tall, 2),
                "title": f"{day.isoformat()}: {value}",
                "label": day if (count - 1 - index) % label_every == 0 else None,
                "label_x": round(index * slot + slot / 2, 2),
                "empty": units == 0,
            }
        )
    return {
        "bars": bars,
        "width": width,
        "height": height,
        "baseline": top + plot,
        "max": format_token(TokenAmount.from_units(biggest, decimals, symbol), locale=locale)
        if biggest
        else None,
        "label_y": height - 6,
    }


def _totals(
    report: dict[str, Any], period: Period, symbol: str, locale: str, decimals: int
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The period's totals in the settlement token, and its daily volume chart."""
    found = report["totals"].get(symbol)
    totals: dict[str, Any] = {
        key: token_text(found[key] if found else "0", symbol, locale)
        for key in ("gross", "fees", "net", "refunds", "net_after_refunds")
    }
    totals["count"] = found["count"] if found else 0
    return totals, volume_chart(report["days"], period, symbol, locale, decimals)


@dataclass(frozen=True)
class Search:
    """What the payments table is asked for: a status, an order id, or one invoice."""

    status: InvoiceStatus | None
    order_id: str | None
    invoice_id: str | None
    errors: list[str]


def _search(status: str | None, text: str) -> Search:
    errors: list[str] = []
    chosen: InvoiceStatus | None = None
    if status:
        try:
            chosen = InvoiceStatus(status)
        except ValueError:
            errors.append(_("Choose a status from the list."))
    if _INVOICE_ID.match(text):
        return Search(chosen, None, text.lower(), errors)
    return Search(chosen, text or None, None, errors)


@router.get("/merchant/stores/{store_id}")
async def store_payments(
    request: Request,
    store_id: str,
    *,
    status: str | None = None,
    q: str | None = None,
    to: str | None = None,
    cursor: str | None = None,
) -> Response:
    """A store's payments: totals and daily volume, filters, search, the table."""
    session = await _signed_in(request)
    if isinstance(session, Response):
        return session
    svc = services(request)
    try:
        desk, store = await _desk_for_store(svc, session, store_id)
        desk.principal.require(Permission.INVOICES_READ, store.id)
    except Refused as refused:
        return _refused_page(request, refused)
    except SeiwalletError as exc:
        return _refused_page(request, _refusal(exc))
    locale = locale_of(request)
    today = datetime.fromtimestamp(svc.clock(), UTC).date()
    period = _period(request.query_params.get("from"), to, today)
    text = (q or "").strip()[:128]
    search = _search(status, text)
    errors = ([period.error] if period.error else []) + search.errors
    if search.invoice_id is not None:
        try:
            found = await run_in_threadpool(
                desk.payments.invoices.get, desk.principal, search.invoice_id
            )
        except SeiwalletError:
            found = None
        if found is not None and found["store_id"] == store.id:
            return _redirect(f"/merchant/invoices/{found['id']}")
        errors.append(_("No payment of this store has this invoice id."))
    start = datetime.combine(period.first, time(), UTC)
    end = datetime.combine(period.last + timedelta(days=1), time(), UTC)
    try:
        page = await run_in_threadpool(
            lambda: desk.payments.invoices.list(
                desk.principal,
                store.id,
                InvoiceFilter(search.status, None, search.order_id, start, end),
                cursor=cursor or None,
                limit=PAGE_SIZE,
            )
        )
    except SeiwalletError as exc:
        errors.append(_form_error(exc))
        page = None
    symbol = desk.merchant.settlement_token
    totals: dict[str, Any] | None = None
    chart: dict[str, Any] | None = None
    if desk.may(Permission.REPORTS_READ):
        report = await run_in_threadpool(
            desk.payments.reports.settlements, desk.principal, store.id, period.first, period.last
        )
        totals, chart = _totals(report, period, symbol, locale, decimals_of(desk.payments, symbol))
    filters = {
        "status": status or "",
        "q": text,
        "from": period.first.isoformat(),
        "to": period.last.isoformat(),
    }
    next_url = None
    if page is not None and page.next_cursor:
        query = {k: v for k, v in filters.items() if v} | {"cursor": page.next_cursor}
        next_url = f"/merchant/stores/{store.id}?{urlencode(query)}"
    terminals = await run_in_threadpool(desk.payments.merchants.terminals, desk.principal, store.id)
    tokens = desk.payments.payments.tokens
    return render(
        request,
        "merchant/dashboard.html",
        session,
        **_desk_context(desk, store, "payments"),
        invoices=[invoice_row(i, locale, svc, tokens) for i in page.invoices] if page else [],
        next_url=next_url,
        first_page=not cursor,
        filters=filters,
        statuses=[str(s) for s in InvoiceStatus],
        errors=errors,
        period={"first": period.first, "last": period.last},
        totals=totals,
        chart=chart,
        symbol=symbol,
        terminals=[{"id": t.id, "name": t.name} for t in terminals if not t.revoked],
        report_url=f"/v1/stores/{store.id}/reports/settlements.csv",
    )


# -- terminals -------------------------------------------------------------------------------------


async def _terminals_page(
    request: Request,
    desk: Desk,
    store: StoreView,
    *,
    error: str | None = None,
    status: int = 200,
) -> Response:
    terminals = await run_in_threadpool(desk.payments.merchants.terminals, desk.principal, store.id)
    return render(
        request,
        "merchant/terminals.html",
        desk.session,
        status,
        **_desk_context(desk, store, "terminals"),
        terminals=[
            {"id": t.id, "name": t.name, "created_at": t.created_at, "url": f"/pos/{t.id}"}
            for t in terminals
            if not t.revoked
        ],
        error=error,
    )


@router.get("/merchant/stores/{store_id}/terminals")
async def terminals(request: Request, store_id: str) -> Response:
    session = await _signed_in(request)
    if isinstance(session, Response):
        return session
    svc = services(request)
    try:
        desk, store = await _desk_for_store(svc, session, store_id)
        return await _terminals_page(request, desk, store)
    except Refused as refused:
        return _refused_page(request, refused)
    except SeiwalletError as exc:
        return _refused_page(request, _refusal(exc))


@router.post("/merchant/stores/{store_id}/terminals")
async def terminal_create(request: Request, store_id: str) -> Response:
    session = await current_session(request)
    svc = services(request)
    form = await _form(request)
    name = str(form.get("name", "")).strip()
    try:
        desk, store = await _desk_for_store(svc, session, store_id)
    except Refused as refused:
        return _refused_page(request, refused)
    except SeiwalletError as exc:
        return _refused_page(request, _refusal(exc))
    if not name:
        return await _terminals_page(
            request, desk, store, error=_("Name the terminal, e.g. “Front counter”."), status=422
        )
    try:
        await run_in_threadpool(
            desk.payments.merchants.create_terminal, desk.principal, store.id, name[:100]
        )
    except AccessError as exc:
        return _refused_page(request, _refusal(exc))
    except SeiwalletError as exc:
        return await _terminals_page(request, desk, store, error=_form_error(exc), status=422)
    return _redirect(f"/merchant/stores/{store.id}/terminals")


# -- one invoice, refunds --------------------------------------------------------------------------


async def _invoice_desk(
    svc: Services, session: SessionInfo, invoice_id: str
) -> tuple[Desk, StoreView, dict[str, Any]]:
    payments = await _payments(svc)
    if not _INVOICE_ID.match(invoice_id):
        raise InvoiceNotFound
    row = await run_in_threadpool(payments.invoices.row, invoice_id)
    try:
        desk, store = await _desk_for_store(svc, session, row.store_id)
    except StoreNotFound:
        raise InvoiceNotFound from None
    invoice = await run_in_threadpool(payments.invoices.get, desk.principal, invoice_id)
    return desk, store, invoice


def _refund_rows(refunds: list[dict[str, Any]], locale: str, svc: Services) -> list[dict[str, Any]]:
    return [
        {
            "id": r["id"],
            "status": r["status"],
            "amount": token_text(r["amount"], r["token"], locale),
            "reason": r["reason"],
            "created_at": _moment(r["created_at"]),
            "settled_at": _moment(r["settled_at"]),
            "tx_hash": r["tx_hash"],
            "explorer_url": explorer(svc, r["tx_hash"]),
            "failure": r["failure_reason"],
            "method": r["method"],
        }
        for r in refunds
    ]


@router.get("/merchant/invoices/{invoice_id}")
async def invoice_detail(request: Request, invoice_id: str) -> Response:
    session = await _signed_in(request)
    if isinstance(session, Response):
        return session
    svc = services(request)
    try:
        desk, store, invoice = await _invoice_desk(svc, session, invoice_id)
        # The events first: the page's live stream resumes after the last one shown, so the
        # state shown must be read after it (a refund settling in between is then streamed,
        # not lost between a stale row and a newer cursor).
        events = await run_in_threadpool(
            desk.payments.invoices.events, desk.principal, invoice["id"]
        )
        invoice = await run_in_threadpool(desk.payments.invoices.get, desk.principal, invoice["id"])
        refunds = await run_in_threadpool(
            desk.payments.refunds.refunds, desk.principal, invoice["id"]
        )
        refundable = await run_in_threadpool(
            desk.payments.refunds.refundable, desk.principal, invoice["id"]
        )
    except Refused as refused:
        return _refused_page(request, refused)
    except SeiwalletError as exc:
        return _refused_page(request, _refusal(exc))
    locale = locale_of(request)
    row = invoice_row(invoice, locale, svc, desk.payments.payments.tokens)
    decimals = decimals_of(desk.payments, row["symbol"])
    return render(
        request,
        "merchant/invoice.html",
        session,
        **_desk_context(desk, store, "payments"),
        invoice=row,
        events=[{"id": e.id, "type": e.type, "created_at": e.created_at} for e in events],
        refunds=_refund_rows(refunds, locale, svc),
        refundable=format_token(
            TokenAmount.from_units(refundable, decimals, row["symbol"]), locale=locale
        )
        if refundable
        else None,
        refund_url=f"/merchant/invoices/{row['id']}/refund",
        approves_refunds=desk.approves_refunds,
        # A refund passkey approves router refunds only (see payments.approvers).
        delegated_refunds=desk.role != "owner",
    )


def _refund_passkey_context(desk: Desk, locale: str) -> dict[str, Any] | None:
    """A staff member's refund passkey as the refund page shows it (offer, waiting, active)."""
    view = desk.refund_passkey
    merchant_id = desk.merchant.id
    if view is None:
        if not desk.offers_refund_passkey:
            return None
        return {
            "status": "none",
            "options_url": f"/v1/merchants/{merchant_id}/refund-passkey/registration-options",
            "finish_url": f"/v1/merchants/{merchant_id}/refund-passkey",
        }
    cap = (
        format_token(
            TokenAmount.from_units(view.max_amount_units, view.decimals, view.symbol),
            locale=locale,
        )
        if view.max_amount_units is not None
        else None
    )
    return {"status": view.status, "max_amount": cap, "label": view.label}


@router.get("/merchant/invoices/{invoice_id}/refund")
async def refund_form(request: Request, invoice_id: str) -> Response:
    """Refund all or part of a payment: the owner approves it with their passkey here; a
    manager's request waits for the owner's approval."""
    session = await _signed_in(request)
    if isinstance(session, Response):
        return session
    svc = services(request)
    try:
        desk, store, invoice = await _invoice_desk(svc, session, invoice_id)
        if not desk.nav()["refunds"]:
            raise Refused(
                403,
                _("Not allowed"),
                _("Refunds are made by the business's owner or a manager. Ask one of them."),
            )
        refundable = await run_in_threadpool(
            desk.payments.refunds.refundable, desk.principal, invoice["id"]
        )
        recipients = await run_in_threadpool(
            desk.payments.refunds.recipients, desk.principal, invoice["id"]
        )
    except Refused as refused:
        return _refused_page(request, refused)
    except SeiwalletError as exc:
        return _refused_page(request, _refusal(exc))
    locale = locale_of(request)
    row = invoice_row(invoice, locale, svc, desk.payments.payments.tokens)
    decimals = decimals_of(desk.payments, row["symbol"])
    # Where it goes: the wallet that paid through the router, or an address the chain showed
    # paying the deposit address (the merchant picks one when several did; none is preselected
    # then, so nobody is refunded by default).
    payers = [
        {
            "address": r.address,
            "paid": format_token(
                TokenAmount.from_units(r.paid_units, decimals, row["symbol"]), locale=locale
            ),
            "refundable_units": r.refundable_units,
        }
        for r in recipients
        if r.refundable_units > 0
    ]
    if not refundable or not payers:
        return _refused_page(
            request,
            Refused(
                409,
                _("Nothing to refund"),
                _("This payment isn't settled, or it has been refunded in full already."),
            ),
        )
    amount = TokenAmount.from_units(refundable, decimals, row["symbol"])
    via_deposit = any(r.method is RefundMethod.TRANSFER for r in recipients)
    return render(
        request,
        "merchant/refund.html",
        session,
        **_desk_context(desk, store, "payments"),
        invoice=row,
        refundable=format_token(amount, locale=locale),
        refundable_plain=amount.format(min_fraction_digits=2),
        payers=payers,
        via_deposit=via_deposit,
        # A refund passkey approves router refunds only: one to a deposit payer is the owner's.
        approves_refunds=desk.approves_refunds and not (desk.role != "owner" and via_deposit),
        refund_passkey=_refund_passkey_context(desk, locale),
        create_url=f"/v1/invoices/{row['id']}/refunds",
        done_url=row["url"],
    )


# -- developers: API keys and webhooks -------------------------------------------------------------


async def _developers_page(
    request: Request,
    desk: Desk,
    store: StoreView,
    *,
    secret: dict[str, str] | None = None,
    key_error: str | None = None,
    hook_error: str | None = None,
    values: Mapping[str, Any] | None = None,
    status: int = 200,
) -> Response:
    payments = desk.payments
    keys = await run_in_threadpool(payments.api_keys.keys, desk.principal, store.id)
    endpoints = await run_in_threadpool(payments.webhooks.endpoints, desk.principal, store.id)
    hooks = []
    for endpoint in endpoints:
        if endpoint.disabled:
            continue
        deliveries = await run_in_threadpool(
            payments.webhooks.deliveries, desk.principal, endpoint.id, 10
        )
        hooks.append(
            {
                "id": endpoint.id,
                "url": endpoint.url,
                "description": endpoint.description,
                "events": list(endpoint.events),
                "created_at": endpoint.created_at,
                "deliveries": [
                    {
                        "id": d["id"],
                        "event_type": d["event_type"],
                        "status": d["status"],
                        "code": d["last_status_code"],
                        "error": d["last_error"],
                        "attempts": d["attempts"],
                        "created_at": _moment(d["created_at"]),
                        "redelivery": bool(d["redelivery_of"]),
                    }
                    for d in deliveries
                ],
            }
        )
    return render(
        request,
        "merchant/developers.html",
        desk.session,
        status,
        **_desk_context(desk, store, "developers"),
        keys=[
            {
                "id": k.id,
                "name": k.name,
                "prefix": k.prefix,
                "scopes": list(k.scopes),
                "created_at": k.created_at,
                "last_used_at": k.last_used_at,
            }
            for k in keys
            if not k.revoked
        ],
        hooks=hooks,
        scopes=list(KEY_SCOPES),
        event_types=list(WEBHOOK_EVENTS),
        secret=secret,
        key_error=key_error,
        hook_error=hook_error,
        values={
            "key_name": "",
            "key_scopes": ["invoices:create", "invoices:read"],
            "hook_url": "",
            "hook_description": "",
            "hook_events": ["invoice.settled", "invoice.expired", "refund.settled"],
            **(values or {}),
        },
        api_base=services(request).settings.web.public_url.rstrip("/") + "/v1",
    )


async def _developers_desk(
    request: Request, store_id: str, *, csrf: bool
) -> tuple[Desk, StoreView] | Response:
    if csrf:
        session: SessionInfo | Response = await current_session(request)
    else:
        session = await _signed_in(request)
    if isinstance(session, Response):
        return session
    svc = services(request)
    try:
        desk, store = await _desk_for_store(svc, session, store_id)
        desk.principal.require(Permission.KEYS_MANAGE, store.id)
        desk.principal.require(Permission.WEBHOOKS_MANAGE, store.id)
    except Refused as refused:
        return _refused_page(request, refused)
    except SeiwalletError as exc:
        return _refused_page(request, _refusal(exc))
    return desk, store


@router.get("/merchant/stores/{store_id}/developers")
async def developers(request: Request, store_id: str) -> Response:
    found = await _developers_desk(request, store_id, csrf=False)
    if isinstance(found, Response):
        return found
    return await _developers_page(request, *found)


@router.post("/merchant/stores/{store_id}/api-keys")
async def api_key_create(request: Request, store_id: str) -> Response:
    found = await _developers_desk(request, store_id, csrf=True)
    if isinstance(found, Response):
        return found
    desk, store = found
    form = await _form(request)
    name = str(form.get("name", "")).strip()
    scopes = _as_list(form.get("scopes"))
    values = {"key_name": name, "key_scopes": scopes}
    if not name:
        return await _developers_page(
            request,
            desk,
            store,
            key_error=_("Name the key after what uses it, e.g. “web shop”."),
            values=values,
            status=422,
        )
    if not scopes:
        return await _developers_page(
            request,
            desk,
            store,
            key_error=_("Choose at least one thing the key may do."),
            values=values,
            status=422,
        )
    try:
        view, secret = await run_in_threadpool(
            desk.payments.api_keys.create, desk.principal, store.id, name[:100], scopes
        )
    except SeiwalletError as exc:
        return await _developers_page(
            request, desk, store, key_error=_form_error(exc), values=values, status=422
        )
    return await _developers_page(
        request, desk, store, secret={"kind": "key", "name": view.name, "value": secret}
    )


@router.post("/merchant/api-keys/{key_id}/revoke")
async def api_key_revoke(request: Request, key_id: str) -> Response:
    session = await current_session(request)
    svc = services(request)
    form = await _form(request)
    store_id = str(form.get("store_id", ""))
    try:
        desk, store = await _desk_for_store(svc, session, store_id)
        await run_in_threadpool(desk.payments.api_keys.revoke, desk.principal, key_id)
    except Refused as refused:
        return _refused_page(request, refused)
    except SeiwalletError as exc:
        return _refused_page(request, _refusal(exc))
    return _redirect(f"/merchant/stores/{store.id}/developers#keys")


@router.post("/merchant/stores/{store_id}/webhooks")
async def webhook_create(request: Request, store_id: str) -> Response:
    found = await _developers_desk(request, store_id, csrf=True)
    if isinstance(found, Response):
        return found
    desk, store = found
    form = await _form(request)
    url = str(form.get("url", "")).strip()
    events = _as_list(form.get("events"))
    description = str(form.get("description", "")).strip()[:200]
    values = {"hook_url": url, "hook_events": events, "hook_description": description}
    if not url:
        error = _("Enter the URL that receives the events (https://…).")
    elif not events:
        error = _("Choose at least one event to send.")
    else:
        error = None
    if error is not None:
        return await _developers_page(
            request, desk, store, hook_error=error, values=values, status=422
        )
    try:
        view, secret = await run_in_threadpool(
            lambda: desk.payments.webhooks.create(
                desk.principal, store.id, url=url, events=events, description=description
            )
        )
    except SeiwalletError as exc:
        return await _developers_page(
            request, desk, store, hook_error=_form_error(exc), values=values, status=422
        )
    return await _developers_page(
        request, desk, store, secret={"kind": "webhook", "name": view.url, "value": secret}
    )


async def _webhook_store(request: Request, endpoint_id: str) -> tuple[Desk, StoreView] | Response:
    session = await current_session(request)
    svc = services(request)
    try:
        payments = await _payments(svc)
        store_id = await run_in_threadpool(payments.webhooks.store_of, endpoint_id)
        if store_id is None:
            raise Refused(404, _("Not found"), _("There is no such webhook endpoint."))
        desk, store = await _desk_for_store(svc, session, store_id)
    except Refused as refused:
        return _refused_page(request, refused)
    except SeiwalletError as exc:
        return _refused_page(request, _refusal(exc))
    return desk, store


@router.post("/merchant/webhooks/{endpoint_id}/test")
async def webhook_test(request: Request, endpoint_id: str) -> Response:
    found = await _webhook_store(request, endpoint_id)
    if isinstance(found, Response):
        return found
    desk, store = found
    svc = services(request)
    try:
        delivery_id = await run_in_threadpool(
            desk.payments.webhooks.test_event, desk.principal, endpoint_id
        )
        await svc.webhook_sender().deliver_now(delivery_id)
    except SeiwalletError as exc:
        return _refused_page(request, _refusal(exc))
    return _redirect(f"/merchant/stores/{store.id}/developers#hook-{endpoint_id}")


@router.post("/merchant/webhooks/{endpoint_id}/disable")
async def webhook_disable(request: Request, endpoint_id: str) -> Response:
    found = await _webhook_store(request, endpoint_id)
    if isinstance(found, Response):
        return found
    desk, store = found
    try:
        await run_in_threadpool(desk.payments.webhooks.disable, desk.principal, endpoint_id)
    except SeiwalletError as exc:
        return _refused_page(request, _refusal(exc))
    return _redirect(f"/merchant/stores/{store.id}/developers#webhooks")


@router.post("/merchant/webhook-deliveries/{delivery_id}/redeliver")
async def webhook_redeliver(request: Request, delivery_id: str) -> Response:
    await current_session(request)
    svc = services(request)
    try:
        payments = await _payments(svc)
        endpoint_id = await run_in_threadpool(payments.webhooks.endpoint_of_delivery, delivery_id)
    except Refused as refused:
        return _refused_page(request, refused)
    except SeiwalletError as exc:
        return _refused_page(request, _refusal(exc))
    found = await _webhook_store(request, endpoint_id)
    if isinstance(found, Response):
        return found
    desk, store = found
    try:
        redelivery = await run_in_threadpool(
            desk.payments.webhooks.redeliver, desk.principal, delivery_id
        )
        await svc.webhook_sender().deliver_now(str(redelivery["id"]))
    except SeiwalletError as exc:
        return _refused_page(request, _refusal(exc))
    return _redirect(f"/merchant/stores/{store.id}/developers#hook-{endpoint_id}")


# -- the team --------------------------------------------------------------------------------------


async def _team_page(
    request: Request,
    desk: Desk,
    *,
    error: str | None = None,
    values: Mapping[str, str] | None = None,
    status: int = 200,
) -> Response:
    staff = await run_in_threadpool(desk.payments.merchants.staff, desk.principal)
    names = {s.id: s.name for s in desk.stores}
    approvers = await run_in_threadpool(_approver_rows, desk, locale_of(request))
    return render(
        request,
        "merchant/team.html",
        desk.session,
        status,
        **_desk_context(desk, desk.stores[0] if desk.stores else None, "team"),
        staff=[
            {
                "id": s.id,
                "name": s.name,
                "email": s.email,
                "role": s.role,
                "store": names.get(s.store_id) if s.store_id else None,
                "created_at": s.created_at,
                "me": s.user_id == desk.session.user_id,
            }
            for s in staff
        ],
        values={"email": "", "role": "cashier", "store_id": "", **(values or {})},
        error=error,
        approvers=approvers,
        owner_approves=desk.role == "owner" and desk.merchant.payout_is_own_wallet,
    )


def _approver_rows(desk: Desk, locale: str) -> list[dict[str, Any]]:
    """The team's refund passkeys for the Team page, each with the cap it has (or would get:
    the staff member's refund limit now)."""
    approvers = desk.payments.approvers
    if approvers is None or not desk.merchant.payout_is_own_wallet:
        return []
    rows = []
    for view in approvers.approvers(desk.principal):
        units = view.max_amount_units
        if view.status == "awaiting_owner" and view.staff_active:
            units = desk.payments.merchants.principal_for_user(
                view.user_id, desk.merchant.id
            ).refund_limit_units
        base = f"/v1/merchants/{desk.merchant.id}/refund-approvers/{view.id}"
        rows.append(
            {
                "id": view.id,
                "name": view.name or view.email,
                "email": view.email,
                "role": view.role,
                "status": view.status,
                "label": view.label,
                "staff_active": view.staff_active,
                "max_amount": format_token(
                    TokenAmount.from_units(units, view.decimals, view.symbol), locale=locale
                )
                if units is not None
                else None,
                "approve_options_url": f"{base}/approval-options",
                "approve_url": f"{base}/approve",
                "removal_options_url": f"{base}/removal-options",
                "revoke_url": f"{base}/revoke",
            }
        )
    return rows


async def _desk_allowed(request: Request, permission: Permission, *, csrf: bool) -> Desk | Response:
    """The person's merchant desk if their role has ``permission`` (merchant-wide), else the
    page to show instead: sign-in, the merchant sign-up, or a readable refusal."""
    if csrf:
        session: SessionInfo | Response = await current_session(request)
    else:
        session = await _signed_in(request)
    if isinstance(session, Response):
        return session
    svc = services(request)
    try:
        desk = await _desk(svc, session)
        if desk is None:
            return _redirect("/merchant")
        desk.principal.require(permission)
    except Refused as refused:
        return _refused_page(request, refused)
    except SeiwalletError as exc:
        return _refused_page(request, _refusal(exc))
    return desk


@router.get("/merchant/team")
async def team(request: Request) -> Response:
    desk = await _desk_allowed(request, Permission.STAFF_MANAGE, csrf=False)
    if isinstance(desk, Response):
        return desk
    return await _team_page(request, desk)


@router.post("/merchant/team")
async def team_invite(request: Request) -> Response:
    desk = await _desk_allowed(request, Permission.STAFF_MANAGE, csrf=True)
    if isinstance(desk, Response):
        return desk
    form = await _form(request)
    values = {k: str(form.get(k, "")).strip() for k in ("email", "role", "store_id")}
    if "@" not in values["email"]:
        return await _team_page(
            request,
            desk,
            error=_("Enter the e-mail address they signed up to seiwallet with."),
            values=values,
            status=422,
        )
    if values["role"] not in ("manager", "cashier"):
        return await _team_page(
            request, desk, error=_("Choose a role: manager or cashier."), values=values, status=422
        )
    try:
        await run_in_threadpool(
            lambda: desk.payments.merchants.add_staff(
                desk.principal,
                email=values["email"][:320],
                role=values["role"],
                store_id=values["store_id"] or None,
            )
        )
    except SeiwalletError as exc:
        return await _team_page(request, desk, error=_form_error(exc), values=values, status=422)
    return _redirect("/merchant/team")


@router.post("/merchant/team/{staff_id}/remove")
async def team_remove(request: Request, staff_id: str) -> Response:
    desk = await _desk_allowed(request, Permission.STAFF_MANAGE, csrf=True)
    if isinstance(desk, Response):
        return desk
    try:
        await run_in_threadpool(desk.payments.merchants.remove_staff, desk.principal, staff_id)
    except SeiwalletError as exc:
        return await _team_page(request, desk, error=_form_error(exc), status=exc.status)
    return _redirect("/merchant/team")
