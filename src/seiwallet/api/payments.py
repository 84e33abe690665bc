"""The JSON API for merchants and payers: stores, keys, invoices, payments, refunds, webhooks.

Who is asking decides what is allowed:

* a store's **API key** (``Authorization: Bearer swk_…``): its store only, its scopes only, and
  its rate limit (token bucket; ``429`` with ``Retry-After``);
* a **staff session** (cookie + CSRF, or the CLI's bearer token): the person's role in the
  merchant (``seiwallet.payments.permissions``);
* the **payer** (a session): prepares and approves the payment of an invoice;
* anyone: the public view of an invoice (what a payer's phone shows before signing in).

Live events are server-sent events (``text/event-stream``) fed by the process's event bus, with
``Last-Event-ID`` resume. Every error is an RFC 9457 problem with a stable ``code``.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import asdict, dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Annotated, Any, Final, Literal

from fastapi import APIRouter, Depends, Header, Query, Request
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool
from starlette.responses import JSONResponse, Response, StreamingResponse

from seiwallet.accounts.errors import CeremonyInvalid
from seiwallet.accounts.sessions import SessionInfo
from seiwallet.api.auth import current_session, services_dependency
from seiwallet.api.services import Services
from seiwallet.db import offload
from seiwallet.errors import InvalidInput
from seiwallet.money import TokenAmount
from seiwallet.payments.apikeys import KEY_PREFIX, ApiKeyView
from seiwallet.payments.approvers import ApproverView, RefundApproverService
from seiwallet.payments.bus import Topic
from seiwallet.payments.errors import (
    ApiKeyNotFound,
    InvoiceNotFound,
    NotPermitted,
    RefundApprovalNotSetUp,
    RefundNotFound,
    ScopeMissing,
    StoreNotFound,
    TerminalNotFound,
    WebhookNotFound,
)
from seiwallet.payments.invoices import InvoiceFilter, InvoiceRequest
from seiwallet.payments.merchants import MerchantOwner, MerchantView, StaffView, StoreView
from seiwallet.payments.models import Invoice as InvoiceRow
from seiwallet.payments.models import InvoiceStatus
from seiwallet.payments.permissions import Permission, Principal
from seiwallet.payments.reports import report_csv
from seiwallet.payments.services import Payer, Payments
from seiwallet.payments.webhooks import EndpointView

router = APIRouter(prefix="/v1", tags=["payments"])

Svc = Annotated[Services, Depends(services_dependency)]
Session_ = Annotated[SessionInfo, Depends(current_session)]
#: How often an idle event stream sends a keep-alive comment.
HEARTBEAT_SECONDS: Final = 15.0


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


# -- problems in the schema ---------------------------------------------------------------------


class Problem(BaseModel):
    """An RFC 9457 problem: every error of this API."""

    type: str
    title: str
    status: int
    detail: str
    code: str
    instance: str | None = None
    model_config = ConfigDict(
        extra="allow",
        json_schema_extra={
            "example": {
                "type": "/problems/payment.invoice_expired",
                "title": "The invoice has expired",
                "status": 409,
                "detail": "this invoice has expired: ask the shop for a new one. Nothing was paid",
                "code": "payment.invoice_expired",
                "instance": "/v1/invoices/0x5f…/pay",
            }
        },
    )


def _problems(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` documenting the problems an operation may answer with."""
    described = {
        401: "No or an invalid API key / session (`payment.api_key_invalid`, `auth.not_signed_in`)",
        403: "Not allowed: a missing scope (`payment.scope_missing`), a role that may not "
        "(`payment.not_permitted`), above the refund limit (`payment.refund_over_limit`)",
        404: "Not found, or not yours (`payment.invoice_not_found`, `payment.store_not_found`…)",
        409: "The state does not allow it (`payment.invoice_expired`, "
        "`payment.invoice_already_paid`, `payment.invoice_being_paid`…)",
        422: "Invalid input (`input.invalid`, `payment.idempotency_conflict`, "
        "`payment.unsupported_currency`, `payment.refund_exceeds_refundable`…)",
        429: "Too many requests for this API key (`payment.rate_limited`, with Retry-After)",
    }
    return {
        status: {
            "model": Problem,
            "description": described[status],
            "content": {"application/problem+json": {}},
        }
        for status in statuses
    }


def _with(
    first: dict[int | str, dict[str, Any]], second: dict[int | str, dict[str, Any]]
) -> dict[int | str, dict[str, Any]]:
    return {**first, **second}


# -- response models ----------------------------------------------------------------------------


class Price(BaseModel):
    amount: str
    currency: str


class Rate(BaseModel):
    value: str = Field(description="Token per one unit of the price's currency, fixed")
    pair: str
    source: str | None = None
    as_of: str | None = None


_INVOICE_EXAMPLE: Final[dict[str, Any]] = {
    "id": "0x5f1c0d8f0a7a3b9e4c2d1e0f9a8b7c6d5e4f3a2b1c0d9e8f7a6b5c4d3e2f1a0b",
    "store_id": "3c2a9b1f8e7d4c6a5b0f1e2d3c4b5a69",
    "terminal_id": None,
    "status": "new",
    "anomalies": [],
    "order_id": "A-1024",
    "metadata": {"table": "7"},
    "price": {"amount": "97.25", "currency": "HKD"},
    "token": "USDC",
    "token_address": "0x5FbDB2315678afecb367f032d93F642f64180aa3",
    "amount": "12.50",
    "amount_units": "12500000",
    "fee": "0.125",
    "fee_units": "125000",
    "fee_bps": 100,
    "net": "12.375",
    "net_units": "12375000",
    "rate": {
        "value": "0.12853470",
        "pair": "HKD/USDC",
        "source": "offline table",
        "as_of": "2026-11-20",
    },
    "chain_id": 713715,
    "router": "0xe7f1725E7734CE288F8367e1Bb143E90bb3F0512",
    "merchant_address": "0xa0Ee7A142d267C1f36714E4a8F75612F20a79720",
    "payment_id": "0x9d…",
    "payer": None,
    "tx_hash": None,
    "block_number": None,
    "paid_units": "0",
    "refunded": "0.00",
    "refunded_units": "0",
    "created_at": "2026-11-24T09:30:00+00:00",
    "expires_at": "2026-11-24T09:32:00+00:00",
    "settled_at": None,
}


class Invoice(BaseModel):
    """An invoice as its merchant sees it. Amounts are exact decimal text and base units."""

    model_config = ConfigDict(json_schema_extra={"example": _INVOICE_EXAMPLE})

    id: str = Field(description="The router's invoice id (bytes32, 0x + 64 hex)")
    store_id: str
    terminal_id: str | None
    status: Literal[
        "new", "processing", "settled", "expired", "invalid", "refunded", "partially_refunded"
    ]
    anomalies: list[Literal["paid_late", "paid_over", "paid_partial"]]
    order_id: str | None
    metadata: dict[str, Any]
    price: Price
    token: str
    token_address: str
    amount: str = Field(description="What the payer pays, in the token")
    amount_units: str
    fee: str = Field(description="The operator's fee, taken from the amount")
    fee_units: str
    fee_bps: int
    net: str = Field(description="What the merchant receives: amount - fee")
    net_units: str
    rate: Rate
    chain_id: int
    router: str
    merchant_address: str
    payment_id: str = Field(description="Hash of the terms: the payer's EIP-3009 nonce")
    payer: str | None
    tx_hash: str | None
    block_number: int | None
    paid_units: str
    refunded: str
    refunded_units: str
    created_at: str
    expires_at: str
    settled_at: str | None


class InvoicePage(BaseModel):
    """A page of invoices, newest first; pass ``next_cursor`` as ``cursor`` for the next."""

    invoices: list[Invoice]
    next_cursor: str | None
    model_config = ConfigDict(
        json_schema_extra={
            "example": {"invoices": [_INVOICE_EXAMPLE], "next_cursor": "MjAyNi0xMS0yNFQw…"}
        }
    )


class PublicStore(BaseModel):
    name: str
    country: str
    logo_url: str | None


class PublicInvoice(BaseModel):
    """What a payer's phone may see: no order id, metadata, addresses or payer."""

    id: str
    status: str
    store: PublicStore
    merchant_name: str
    price: Price
    token: str
    amount: str
    amount_units: str
    fee: str
    fee_bps: int
    rate: Rate
    chain_id: int
    expires_at: str
    settled_at: str | None
    model_config = ConfigDict(
        json_schema_extra={
            "example": {
                "id": _INVOICE_EXAMPLE["id"],
                "status": "new",
                "store": {"name": "Lantau Tea House", "country": "HK", "logo_url": None},
                "merchant_name": "Lantau Tea Ltd",
                "price": {"amount": "97.25", "currency": "HKD"},
                "token": "USDC",
                "amount": "12.50",
                "amount_units": "12500000",
                "fee": "0.125",
                "fee_bps": 100,
                "rate": {"value": "0.12853470", "pair": "HKD/USDC"},
                "chain_id": 713715,
                "expires_at": "2026-11-24T09:32:00+00:00",
                "settled_at": None,
            }
        }
    )


class RefundOut(BaseModel):
    id: str
    refund_id: str
    invoice_id: str
    status: Literal["awaiting_approval", "signed", "submitted", "settled", "failed", "expired"]
    amount: str
    amount_units: str
    token: str
    payer: str = Field(description="Where the refund goes: the address that paid the invoice")
    method: Literal["router", "transfer"] = Field(
        description=(
            "`router`: the PaymentRouter's refund to the payer it recorded (`router.refund` "
            "intent); `transfer`: the invoice was paid to its deposit address from an outside "
            "wallet, so the payout wallet sends a plain transfer (`erc3009.transfer` intent) "
            "back to the address that paid it"
        )
    )
    reason: str
    requested_by: str
    intent: dict[str, Any]
    intent_digest: str
    tx_hash: str | None
    failure_reason: str | None
    created_at: str
    settled_at: str | None

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "id": "4b1e0c9d2f3a4e5b8c7d6e5f4a3b2c1d",
                    "refund_id": (
                        "0x9f8e7d6c5b4a39281706f5e4d3c2b1a09f8e7d6c5b4a39281706f5e4d3c2b1a0"
                    ),
                    "invoice_id": (
                        "0x1c2b3a4958677685a4b3c2d1e0f1a2b3c4d5e6f708192a3b4c5d6e7f8091a2b3"
                    ),
                    "status": "awaiting_approval",
                    "amount": "2.00",
                    "amount_units": "2000000",
                    "token": "USDC",
                    "payer": "0x70997970C51812dc3A010C7d01b50e0d17dc79C8",
                    "method": "transfer",
                    "reason": "paid 2.00 too much",
                    "requested_by": "user:5f0c1e2d3b4a59687766554433221100",
                    "intent": {"kind": "erc3009.transfer", "version": 1, "...": "..."},
                    "intent_digest": (
                        "3d2c1b0a99887766554433221100ffeeddccbbaa99887766554433221100ffee"
                    ),
                    "tx_hash": None,
                    "failure_reason": None,
                    "created_at": "2026-11-24T09:40:00+00:00",
                    "settled_at": None,
                }
            ]
        }
    )


class ReportDay(BaseModel):
    date: str
    token: str
    count: int
    gross: str
    gross_units: str
    fees: str
    fee_units: str
    net: str
    net_units: str
    refunds: str
    refund_units: str
    net_after_refunds: str
    net_after_refunds_units: str


class SettlementReport(BaseModel):
    """Per UTC day and token: settled invoices, fees, net, refunds."""

    store_id: str
    from_: str = Field(alias="from")
    to: str
    timezone: str
    days: list[ReportDay]
    totals: dict[str, dict[str, Any]]
    model_config = ConfigDict(
        populate_by_name=True,
        json_schema_extra={
            "example": {
                "store_id": "3c2a9b1f8e7d4c6a5b0f1e2d3c4b5a69",
                "from": "2026-11-24",
                "to": "2026-11-24",
                "timezone": "UTC",
                "days": [
                    {
                        "date": "2026-11-24",
                        "token": "USDC",
                        "count": 2,
                        "gross": "25.00",
                        "gross_units": "25000000",
                        "fees": "0.25",
                        "fee_units": "250000",
                        "net": "24.75",
                        "net_units": "24750000",
                        "refunds": "5.00",
                        "refund_units": "5000000",
                        "net_after_refunds": "19.75",
                        "net_after_refunds_units": "19750000",
                    }
                ],
                "totals": {},
            }
        },
    )


# -- request bodies -----------------------------------------------------------------------------


class MerchantBody(_Strict):
    name: str = Field(min_length=1, max_length=200)
    settlement_token: str = Field(default="USDC", max_length=16)
    payout_address: str | None = Field(default=None, max_length=42)


class StoreBody(_Strict):
    name: str = Field(min_length=1, max_length=200)
    country: str = Field(min_length=2, max_length=2)
    currency: str = Field(min_length=3, max_length=3)
    address: str = Field(default="", max_length=500)
    logo_url: str | None = Field(default=None, max_length=2000)


class TerminalBody(_Strict):
    name: str = Field(min_length=1, max_length=100)


class StaffBody(_Strict):
    email: str = Field(min_length=3, max_length=320)
    role: Literal["manager", "cashier"]
    store_id: str | None = Field(default=None, max_length=32)
    refund_limit: str | None = Field(
        default=None, max_length=40, description="In the settlement token; default: the role's"
    )


class ApiKeyBody(_Strict):
    name: str = Field(min_length=1, max_length=100)
    scopes: list[str] = Field(min_length=1, max_length=10)


class InvoiceBody(_Strict):
    amount: str = Field(min_length=1, max_length=40, examples=["97.25"])
    currency: str | None = Field(
        default=None,
        max_length=8,
        description="ISO 4217 (HKD, EUR…) or the settlement token (USDC); default: the store's",
    )
    order_id: str | None = Field(default=None, max_length=128)
    metadata: dict[str, Any] | None = None
    terminal_id: str | None = Field(default=None, max_length=32)
    expires_in_seconds: int | None = Field(
        default=None, description="Default 120 s for a terminal's invoice, else 900 s"
    )
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"example": {"amount": "97.25", "currency": "HKD", "order_id": "A-1024"}},
    )


class ApproveBody(_Strict):
    approval_id: str | None = Field(default=None, max_length=64)
    credential: dict[str, Any] | None = None
    approvals: list[dict[str, Any]] | None = Field(default=None, max_length=16)


class RefundBody(_Strict):
    amount: str | None = Field(default=None, max_length=40, description="Default: all that is left")
    reason: str = Field(default="", max_length=200)
    payer: str | None = Field(
        default=None,
        max_length=42,
        description=(
            "The address to refund, for an invoice paid to its deposit address from several "
            "addresses (`payment.refund_needs_payer_address` lists them); it must be one of the "
            "addresses that paid. Default: the invoice's one payer"
        ),
        examples=["0x70997970C51812dc3A010C7d01b50e0d17dc79C8"],
    )


class WebhookBody(_Strict):
    url: str = Field(min_length=8, max_length=2000)
    events: list[str] = Field(min_length=1, max_length=32, examples=[["invoice.settled"]])
    description: str = Field(default="", max_length=200)


# -- who is asking ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Caller:
    """An API key's principal, or a signed-in person (staff or payer)."""

    key: Principal | None
    session: SessionInfo | None

    @property
    def user(self) -> SessionInfo:
        if self.session is None:
            raise NotPermitted("API key", "do this (sign in as a person)")
        return self.session


def _bearer(request: Request) -> str | None:
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


async def payments_of(svc: Services) -> Payments:
    return await svc.connect_payments()


async def caller(request: Request, svc: Svc) -> Caller:
    token = _bearer(request)
    if token is not None and token.startswith(KEY_PREFIX):
        payments = await payments_of(svc)
        principal = await payments.api_keys.authenticate_on_loop(token)
        assert principal.api_key_id is not None
        payments.rate_limiter.take(principal.api_key_id)
        return Caller(principal, None)
    return Caller(None, await current_session(request))


Who = Annotated[Caller, Depends(caller)]


async def for_store(who: Caller, payments: Payments, store_id: str) -> Principal:
    if who.key is not None:
        if not who.key.can_see(store_id):
            raise StoreNotFound
        return who.key
    return await offload.read(
        payments.sessions, payments.merchants.principal_for_store, who.user.user_id, store_id
    )


async def for_merchant(who: Caller, payments: Payments, merchant_id: str) -> Principal:
    if who.key is not None:
        if who.key.merchant_id != merchant_id:
            raise StoreNotFound
        return who.key
    return await run_in_threadpool(
        payments.merchants.principal_for_user, who.user.user_id, merchant_id
    )


async def for_invoice(who: Caller, payments: Payments, invoice_id: str) -> Principal:
    return (await _invoice_for(who, payments, invoice_id))[1]


async def _invoice_for(
    who: Caller, payments: Payments, invoice_id: str
) -> tuple[InvoiceRow, Principal]:
    """The invoice and who acts on it; InvoiceNotFound for a caller outside its store."""
    row = await offload.read(payments.sessions, payments.invoices.row, invoice_id)
    try:
        return row, await for_store(who, payments, row.store_id)
    except StoreNotFound:
        raise InvoiceNotFound from None


def _iso(moment: datetime | None) -> str | None:
    return moment.astimezone(UTC).isoformat() if moment else None


def _merchant_json(view: MerchantView) -> dict[str, Any]:
    body = asdict(view)
    body["created_at"] = _iso(view.created_at)
    return body


def _store_json(view: StoreView) -> dict[str, Any]:
    body = asdict(view)
    body["created_at"] = _iso(view.created_at)
    return body


def _staff_json(view: StaffView) -> dict[str, Any]:
    body = asdict(view)
    body["created_at"] = _iso(view.created_at)
    body["refund_limit_units"] = (
        str(view.refund_limit_units) if view.refund_limit_units is not None else None
    )
    return body


def _key_json(view: ApiKeyView) -> dict[str, Any]:
    body = asdict(view)
    body["scopes"] = list(view.scopes)
    body["created_at"] = _iso(view.created_at)
    body["last_used_at"] = _iso(view.last_used_at)
    return body


def _endpoint_json(view: EndpointView) -> dict[str, Any]:
    body = asdict(view)
    body["events"] = list(view.events)
    body["created_at"] = _iso(view.created_at)
    return body


# -- merchants, stores, terminals, staff, keys ----------------------------------------------------


@router.post("/merchants", status_code=201, responses=_problems(401, 409, 422))
async def become_merchant(body: MerchantBody, svc: Svc, me: Session_) -> dict[str, Any]:
    """Become a merchant: your wallet is the payout wallet unless you name another address."""
    payments = await payments_of(svc)
    view = await payments.merchants.become_merchant(
        MerchantOwner(me.user_id, me.wallet_id, me.wallet_address),
        name=body.name,
        settlement_token=body.settlement_token,
        payout_address=body.payout_address,
    )
    return _merchant_json(view)


@router.get("/merchants", responses=_problems(401))
async def my_merchants(svc: Svc, me: Session_) -> dict[str, Any]:
    """The merchants you work for, with your role in each."""
    payments = await payments_of(svc)
    views = await run_in_threadpool(payments.merchants.merchants_of, me.user_id)
    return {"merchants": [_merchant_json(v) for v in views]}


@router.post(
    "/merchants/{merchant_id}/stores", status_code=201, responses=_problems(401, 403, 404, 422)
)
async def create_store(merchant_id: str, body: StoreBody, svc: Svc, who: Who) -> dict[str, Any]:
    payments = await payments_of(svc)
    principal = await for_merchant(who, payments, merchant_id)
    view = await run_in_threadpool(
        lambda: payments.merchants.create_store(
            principal,
            name=body.name,
            country=body.country,
            currency=body.currency,
            address=body.address,
            logo_url=body.logo_url,
        )
    )
    return _store_json(view)


@router.get("/merchants/{merchant_id}/stores", responses=_problems(401, 404))
async def list_stores(merchant_id: str, svc: Svc, who: Who) -> dict[str, Any]:
    payments = await payments_of(svc)
    principal = await for_merchant(who, payments, merchant_id)
    views = await run_in_threadpool(payments.merchants.stores, principal)
    return {"stores": [_store_json(v) for v in views]}


@router.get("/stores/{store_id}", responses=_problems(401, 404))
async def get_store(store_id: str, svc: Svc, who: Who) -> dict[str, Any]:
    payments = await payments_of(svc)
    await for_store(who, payments, store_id)
    return _store_json(await run_in_threadpool(payments.merchants.store, store_id))


@router.post(
    "/stores/{store_id}/terminals", status_code=201, responses=_problems(401, 403, 404, 422)
)
async def create_terminal(store_id: str, body: TerminalBody, svc: Svc, who: Who) -> dict[str, Any]:
    payments = await payments_of(svc)
    principal = await for_store(who, payments, store_id)
    view = await run_in_threadpool(
        payments.merchants.create_terminal, principal, store_id, body.name
    )
    return {**asdict(view), "created_at": _iso(view.created_at)}


@router.get("/stores/{store_id}/terminals", responses=_problems(401, 403, 404))
async def list_terminals(store_id: str, svc: Svc, who: Who) -> dict[str, Any]:
    payments = await payments_of(svc)
    principal = await for_store(who, payments, store_id)
    views = await run_in_threadpool(payments.merchants.terminals, principal, store_id)
    return {"terminals": [{**asdict(v), "created_at": _iso(v.created_at)} for v in views]}


@router.post(
    "/merchants/{merchant_id}/staff", status_code=201, responses=_problems(401, 403, 404, 422)
)
async def add_staff(merchant_id: str, body: StaffBody, svc: Svc, who: Who) -> dict[str, Any]:
    payments = await payments_of(svc)
    principal = await for_merchant(who, payments, merchant_id)
    limit_units = None
    if body.refund_limit is not None:
        merchant = await run_in_threadpool(payments.merchants.merchant, principal)
        decimals = payments.merchants.settlement_tokens.get(merchant.settlement_token, 6)
        limit_units = TokenAmount.parse(
            body.refund_limit, decimals, merchant.settlement_token
        ).units
    view = await run_in_threadpool(
        lambda: payments.merchants.add_staff(
            principal,
            email=body.email,
            role=body.role,
            store_id=body.store_id,
            refund_limit_units=limit_units,
        )
    )
    return _staff_json(view)


@router.get("/merchants/{merchant_id}/staff", responses=_problems(401, 403, 404))
async def list_staff(merchant_id: str, svc: Svc, who: Who) -> dict[str, Any]:
    payments = await payments_of(svc)
    principal = await for_merchant(who, payments, merchant_id)
    views = await run_in_threadpool(payments.merchants.staff, principal)
    return {"staff": [_staff_json(v) for v in views]}


@router.delete(
    "/merchants/{merchant_id}/staff/{staff_id}", status_code=204, responses=_problems(401, 403, 404)
)
async def remove_staff(merchant_id: str, staff_id: str, svc: Svc, who: Who) -> Response:
    payments = await payments_of(svc)
    principal = await for_merchant(who, payments, merchant_id)
    await run_in_threadpool(payments.merchants.remove_staff, principal, staff_id)
    return Response(status_code=204)


# -- refund approvers: staff members' own passkeys on the payout wallet ----------------------------


class CredentialBody(_Strict):
    credential: dict[str, Any]
    #: The phone's name ("iPhone"), shown to the owner beside the merchant's name.
    label: str | None = Field(default=None, max_length=100)


def _approvers_of(payments: Payments) -> RefundApproverService:
    if payments.approvers is None:  # pragma: no cover - the API process always builds them
        raise InvalidInput("refund approvers are not available in this process")
    return payments.approvers


def _approver_json(view: ApproverView) -> dict[str, Any]:
    body = asdict(view)
    body["created_at"] = _iso(view.created_at)
    body["approved_at"] = _iso(view.approved_at)
    units = view.max_amount_units
    body["max_amount_units"] = str(units) if units is not None else None
    body["max_amount"] = (
        TokenAmount.from_units(units, view.decimals, view.symbol).format(min_fraction_digits=2)
        if units is not None
        else None
    )
    return body


async def _staff_principal(who: Caller, payments: Payments, merchant_id: str) -> Principal:
    if who.key is not None:
        raise NotPermitted("API key", "hold a refund passkey")
    return await for_merchant(who, payments, merchant_id)


@router.post(
    "/merchants/{merchant_id}/refund-passkey/registration-options",
    responses=_problems(401, 403, 404, 409),
)
async def refund_passkey_options(merchant_id: str, svc: Svc, who: Who) -> dict[str, Any]:
    """Options to make your refund passkey (a manager's or cashier's own, on this phone): once
    the owner approves it, it approves refunds up to your refund limit, and nothing else."""
    payments = await payments_of(svc)
    principal = await _staff_principal(who, payments, merchant_id)
    options = await run_in_threadpool(_approvers_of(payments).begin, principal, who.user)
    return {"options": options}


@router.post(
    "/merchants/{merchant_id}/refund-passkey",
    status_code=201,
    responses=_problems(401, 403, 404, 409, 422),
)
async def refund_passkey_register(
    merchant_id: str, body: CredentialBody, svc: Svc, who: Who
) -> dict[str, Any]:
    """Keep your new refund passkey; it waits for the owner's approval."""
    payments = await payments_of(svc)
    principal = await _staff_principal(who, payments, merchant_id)
    view = await run_in_threadpool(
        lambda: _approvers_of(payments).finish(
            principal, who.user, body.credential, device=body.label
        )
    )
    return _approver_json(view)


@router.get("/merchants/{merchant_id}/refund-passkey", responses=_problems(401, 403, 404))
async def refund_passkey_mine(merchant_id: str, svc: Svc, who: Who) -> dict[str, Any]:
    """Your refund passkey for this merchant (``null`` if you have none)."""
    payments = await payments_of(svc)
    principal = await _staff_principal(who, payments, merchant_id)
    view = await run_in_threadpool(_approvers_of(payments).mine, principal)
    return {"refund_passkey": _approver_json(view) if view is not None else None}


@router.get("/merchants/{merchant_id}/refund-approvers", responses=_problems(401, 403, 404))
async def list_refund_approvers(merchant_id: str, svc: Svc, who: Who) -> dict[str, Any]:
    """The team's refund passkeys: active, and awaiting your approval."""
    payments = await payments_of(svc)
    principal = await for_merchant(who, payments, merchant_id)
    views = await run_in_threadpool(_approvers_of(payments).approvers, principal)
    return {"refund_approvers": [_approver_json(v) for v in views]}


@router.post(
    "/merchants/{merchant_id}/refund-approvers/{approver_id}/approval-options",
    responses=_problems(401, 403, 404, 409),
)
async def refund_approver_approval_options(
    merchant_id: str, approver_id: str, svc: Svc, who: Who
) -> dict[str, Any]:
    """A passkey challenge for adding the staff member's refund passkey to your payout wallet,
    with its cap (their refund limit now): the owner's passkey answers it."""
    payments = await payments_of(svc)
    principal = await _staff_principal(who, payments, merchant_id)
    proposal = await run_in_threadpool(_approvers_of(payments).proposal, principal, approver_id)
    approval_id, options = await run_in_threadpool(
        svc.passkeys.approval_options, who.user, "intent", {"digest": proposal.digest}
    )
    return {
        "approval_id": approval_id,
        "options": options,
        "max_amount_units": str(proposal.max_amount_units),
    }


@router.post(
    "/merchants/{merchant_id}/refund-approvers/{approver_id}/approve",
    responses=_problems(401, 403, 404, 409, 422),
)
async def approve_refund_approver(
    merchant_id: str, approver_id: str, body: ApproveBody, svc: Svc, who: Who
) -> dict[str, Any]:
    """Add the refund passkey to the payout wallet, approved by your passkey."""
    payments = await payments_of(svc)
    principal = await _staff_principal(who, payments, merchant_id)
    approvers = _approvers_of(payments)
    proposal = await run_in_threadpool(approvers.pending_proposal, principal, approver_id)
    approvals = await _approvals(svc, who.session, body, proposal.digest)
    return _approver_json(await approvers.approve(principal, approver_id, approvals))


@router.post(
    "/merchants/{merchant_id}/refund-approvers/{approver_id}/removal-options",
    responses=_problems(401, 403, 404),
)
async def refund_approver_removal_options(
    merchant_id: str, approver_id: str, svc: Svc, who: Who
) -> dict[str, Any]:
    """A passkey challenge for removing an active refund passkey (``approval_needed: false``
    for one still awaiting you: nothing to remove from the wallet)."""
    payments = await payments_of(svc)
    principal = await _staff_principal(who, payments, merchant_id)
    removal = await run_in_threadpool(
        _approvers_of(payments).removal_digest, principal, approver_id
    )
    if removal is None:
        return {"approval_needed": False}
    approval_id, options = await run_in_threadpool(
        svc.passkeys.approval_options, who.user, "intent", {"digest": removal[1]}
    )
    return {"approval_needed": True, "approval_id": approval_id, "options": options}


@router.post(
    "/merchants/{merchant_id}/refund-approvers/{approver_id}/revoke",
    status_code=204,
    responses=_problems(401, 403, 404, 422),
)
async def revoke_refund_approver(
    merchant_id: str, approver_id: str, body: ApproveBody, svc: Svc, who: Who
) -> Response:
    """Remove a refund passkey (from the payout wallet too, approved by your passkey)."""
    payments = await payments_of(svc)
    principal = await _staff_principal(who, payments, merchant_id)
    approvers = _approvers_of(payments)
    removal = await run_in_threadpool(approvers.removal_digest, principal, approver_id)
    approvals: list[dict[str, Any]] = []
    if removal is not None:
        approvals = await _approvals(svc, who.session, body, removal[1])
    await approvers.revoke(principal, approver_id, approvals)
    return Response(status_code=204)


@router.post(
    "/stores/{store_id}/api-keys", status_code=201, responses=_problems(401, 403, 404, 422)
)
async def create_api_key(store_id: str, body: ApiKeyBody, svc: Svc, who: Who) -> dict[str, Any]:
    """A new API key for the store. ``secret`` is shown in this answer only: store it now."""
    payments = await payments_of(svc)
    if who.key is not None:
        raise ScopeMissing(str(Permission.KEYS_MANAGE))
    principal = await for_store(who, payments, store_id)
    view, secret = await run_in_threadpool(
        payments.api_keys.create, principal, store_id, body.name, body.scopes
    )
    return {**_key_json(view), "secret": secret}


@router.get("/stores/{store_id}/api-keys", responses=_problems(401, 403, 404))
async def list_api_keys(store_id: str, svc: Svc, who: Who) -> dict[str, Any]:
    payments = await payments_of(svc)
    principal = await for_store(who, payments, store_id)
    views = await run_in_threadpool(payments.api_keys.keys, principal, store_id)
    return {"api_keys": [_key_json(v) for v in views]}


@router.delete("/api-keys/{key_id}", responses=_problems(401, 403, 404))
async def revoke_api_key(key_id: str, svc: Svc, who: Who) -> dict[str, Any]:
    payments = await payments_of(svc)
    if who.key is not None:
        raise ScopeMissing(str(Permission.KEYS_MANAGE))
    merchants = await run_in_threadpool(payments.merchants.merchants_of, who.user.user_id)
    for merchant in merchants:
        principal = await for_merchant(who, payments, merchant.id)
        try:
            view = await run_in_threadpool(payments.api_keys.revoke, principal, key_id)
        except Exception as exc:
            if getattr(exc, "code", "") == "payment.api_key_not_found":
                continue
            raise
        return _key_json(view)
    raise ApiKeyNotFound


# -- invoices -----------------------------------------------------------------------------------


@router.post(
    "/stores/{store_id}/invoices",
    status_code=201,
    response_model=Invoice,
    responses=_with(
        {200: {"model": Invoice, "description": "The invoice this Idempotency-Key made"}},
        _problems(401, 403, 404, 422, 429),
    ),
)
async def create_invoice(
    store_id: str,
    body: InvoiceBody,
    svc: Svc,
    who: Who,
    idempotency_key: Annotated[str | None, Header()] = None,
) -> JSONResponse:
    """Create an invoice, quoted into the store's settlement token at a rate fixed for its life.

    With an ``Idempotency-Key``, the same request returns the first invoice (200) and another
    request under the same key is refused (``payment.idempotency_conflict``).
    """
    payments = await payments_of(svc)
    principal = await for_store(who, payments, store_id)
    view, created = await payments.invoices.create(
        principal,
        store_id,
        InvoiceRequest(
            amount=body.amount,
            currency=body.currency,
            order_id=body.order_id,
            metadata=body.metadata,
            terminal_id=body.terminal_id,
            expires_in_seconds=body.expires_in_seconds,
        ),
        idempotency_key,
    )
    return JSONResponse(view, status_code=201 if created else 200)


@router.get(
    "/stores/{store_id}/invoices",
    response_model=InvoicePage,
    responses=_problems(401, 403, 404, 422, 429),
)
async def list_invoices(
    store_id: str,
    svc: Svc,
    who: Who,
    *,
    status: InvoiceStatus | None = None,
    terminal_id: str | None = None,
    order_id: str | None = None,
    created_from: datetime | None = None,
    created_to: datetime | None = None,
    cursor: str | None = Query(default=None, max_length=200),
    limit: int = Query(default=50, ge=1, le=200),
) -> dict[str, Any]:
    """The store's invoices, newest first, filtered; follow ``next_cursor`` for more."""
    payments = await payments_of(svc)
    principal = await for_store(who, payments, store_id)
    page = await run_in_threadpool(
        lambda: payments.invoices.list(
            principal,
            store_id,
            InvoiceFilter(status, terminal_id, order_id, created_from, created_to),
            cursor=cursor,
            limit=limit,
        )
    )
    return {"invoices": page.invoices, "next_cursor": page.next_cursor}


@router.get("/invoices/{invoice_id}", response_model=Invoice, responses=_problems(401, 403, 404))
async def get_invoice(invoice_id: str, svc: Svc, who: Who) -> dict[str, Any]:
    payments = await payments_of(svc)
    principal = await for_invoice(who, payments, invoice_id)
    return await run_in_threadpool(payments.invoices.get, principal, invoice_id)


@router.get("/invoices/{invoice_id}/public", response_model=PublicInvoice, responses=_problems(404))
async def get_public_invoice(invoice_id: str, svc: Svc) -> dict[str, Any]:
    """What a payer's phone shows: store, amounts in fiat and token, fee, expiry, status."""
    payments = await payments_of(svc)
    return await run_in_threadpool(payments.invoices.public, invoice_id)


# -- live events --------------------------------------------------------------------------------


def _last_event_id(request: Request) -> int:
    raw = request.headers.get("last-event-id") or request.query_params.get("last_event_id") or "0"
    try:
        return max(0, int(raw))
    except ValueError:
        raise InvalidInput("Last-Event-ID must be the id of an event we sent") from None


def _event_stream(svc: Services, request: Request, topic: Topic, after: int) -> StreamingResponse:
    bus = svc.payment_bus()

    async def frames() -> AsyncIterator[str]:
        yield "retry: 1000\n: connected\n\n"
        quiet = 0.0
        # Wake every second while quiet: a client gone away ends its stream (and its
        # subscription) within a second instead of at the next heartbeat.
        async for event in bus.stream(topic, after=after, heartbeat=1.0):
            if event is None:
                if await request.is_disconnected():
                    return
                quiet += 1.0
                if quiet >= HEARTBEAT_SECONDS:
                    quiet = 0.0
                    yield ": keep-alive\n\n"
                continue
            quiet = 0.0
            data = json.dumps(event.body(), separators=(",", ":"))
            yield f"id: {event.id}\nevent: {event.type}\ndata: {data}\n\n"

    return StreamingResponse(
        frames(),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


_SSE: Final[dict[int | str, dict[str, Any]]] = {
    200: {"content": {"text/event-stream": {}}, "description": "Server-sent events"}
}


@router.get(
    "/invoices/{invoice_id}/events",
    response_class=StreamingResponse,
    responses=_with(_SSE, _problems(401, 403, 404)),
)
async def invoice_events(invoice_id: str, request: Request, svc: Svc, who: Who) -> Response:
    """The invoice's events as they happen (``text/event-stream``); resume with Last-Event-ID."""
    payments = await payments_of(svc)
    row, principal = await _invoice_for(who, payments, invoice_id)
    principal.require(Permission.INVOICES_READ, row.store_id)
    return _event_stream(svc, request, Topic(invoice_id=row.id), _last_event_id(request))


@router.get(
    "/terminals/{terminal_id}/events",
    response_class=StreamingResponse,
    responses=_with(_SSE, _problems(401, 403, 404)),
)
async def terminal_events(terminal_id: str, request: Request, svc: Svc, who: Who) -> Response:
    """Every event of the terminal's invoices: the counter turns green on ``invoice.settled``."""
    payments = await payments_of(svc)
    store_id = await run_in_threadpool(payments.merchants.terminal_store, terminal_id)
    try:
        principal = await for_store(who, payments, store_id)
    except StoreNotFound:
        raise TerminalNotFound from None
    principal.require(Permission.INVOICES_READ, store_id)
    return _event_stream(svc, request, Topic(terminal_id=terminal_id), _last_event_id(request))


# -- paying (the payer's side) --------------------------------------------------------------------


def _payer(me: SessionInfo) -> Payer:
    return Payer(me.user_id, me.wallet_id, me.wallet_address)


@router.post("/invoices/{invoice_id}/pay", status_code=201, responses=_problems(401, 404, 409, 422))
async def prepare_payment(invoice_id: str, svc: Svc, me: Session_) -> dict[str, Any]:
    """Prepare paying the invoice from your wallet: the intent to approve and its digest."""
    payments = await payments_of(svc)
    view = await payments.payments.prepare(invoice_id, _payer(me))
    return view.as_json()


@router.get("/payment-attempts/{attempt_id}", responses=_problems(401, 404))
async def get_payment_attempt(attempt_id: str, svc: Svc, me: Session_) -> dict[str, Any]:
    payments = await payments_of(svc)
    view = await run_in_threadpool(payments.payments.attempt, me.user_id, attempt_id)
    return view.as_json()


@router.post("/payment-attempts/{attempt_id}/approval-options", responses=_problems(401, 404))
async def payment_approval_options(attempt_id: str, svc: Svc, me: Session_) -> dict[str, Any]:
    payments = await payments_of(svc)
    view = await run_in_threadpool(payments.payments.attempt, me.user_id, attempt_id)
    approval_id, options = await run_in_threadpool(
        svc.passkeys.approval_options, me, "intent", {"digest": view.intent_digest}
    )
    return {"approval_id": approval_id, "options": options}


async def _approvals(
    svc: Services, me: SessionInfo | None, body: ApproveBody, digest: str
) -> list[dict[str, Any]]:
    if body.approval_id and body.credential is not None:
        if me is None:
            raise InvalidInput("a passkey approval needs a signed-in session")
        approved = await run_in_threadpool(
            svc.passkeys.approval, me, body.approval_id, body.credential
        )
        if approved.action != "intent" or approved.document != {"digest": digest}:
            raise CeremonyInvalid("approves something else")
        return [approved.approval]
    if body.approvals:
        return body.approvals
    raise InvalidInput("send a passkey answer (approval_id, credential) or approvals")


@router.post("/payment-attempts/{attempt_id}/approve", responses=_problems(401, 404, 409, 422))
async def approve_payment(
    attempt_id: str, body: ApproveBody, svc: Svc, me: Session_
) -> dict[str, Any]:
    """Approve the payment (passkey or device keys): signed, it goes to the relayer."""
    payments = await payments_of(svc)
    view = await offload.read(payments.sessions, payments.payments.attempt, me.user_id, attempt_id)
    approvals = await _approvals(svc, me, body, view.intent_digest)
    signed = await payments.payments.approve(_payer(me), attempt_id, approvals, view=view)
    return signed.as_json()


# -- refunds ------------------------------------------------------------------------------------


@router.post(
    "/invoices/{invoice_id}/refunds",
    status_code=201,
    response_model=RefundOut,
    responses=_problems(401, 403, 404, 409, 422, 429),
)
async def create_refund(
    invoice_id: str,
    body: RefundBody,
    svc: Svc,
    who: Who,
    idempotency_key: Annotated[str | None, Header()] = None,
) -> JSONResponse:
    """Request a refund (all that is left by default); the payout wallet approves it next."""
    payments = await payments_of(svc)
    principal = await for_invoice(who, payments, invoice_id)
    view, created = await payments.refunds.create(
        principal,
        invoice_id,
        amount=body.amount,
        reason=body.reason,
        idempotency_key=idempotency_key,
        payer=body.payer,
    )
    return JSONResponse(view, status_code=201 if created else 200)


@router.get("/invoices/{invoice_id}/refunds", responses=_problems(401, 403, 404))
async def list_refunds(invoice_id: str, svc: Svc, who: Who) -> dict[str, Any]:
    payments = await payments_of(svc)
    principal = await for_invoice(who, payments, invoice_id)
    return {"refunds": await run_in_threadpool(payments.refunds.refunds, principal, invoice_id)}


async def _refund_principal(who: Caller, payments: Payments, refund_id: str) -> Principal:
    if who.key is not None:
        return who.key
    for merchant in await run_in_threadpool(payments.merchants.merchants_of, who.user.user_id):
        principal = await for_merchant(who, payments, merchant.id)
        try:
            await run_in_threadpool(payments.refunds.get, principal, refund_id)
        except Exception as exc:
            if getattr(exc, "code", "") == "payment.refund_not_found":
                continue
            raise
        return principal
    raise RefundNotFound


@router.get("/refunds/{refund_id}", response_model=RefundOut, responses=_problems(401, 404))
async def get_refund(refund_id: str, svc: Svc, who: Who) -> dict[str, Any]:
    payments = await payments_of(svc)
    principal = await _refund_principal(who, payments, refund_id)
    return await run_in_threadpool(payments.refunds.get, principal, refund_id)


@router.post("/refunds/{refund_id}/approval-options", responses=_problems(401, 403, 404))
async def refund_approval_options(refund_id: str, svc: Svc, who: Who) -> dict[str, Any]:
    """A passkey challenge for the refund: only the payout wallet's owner can answer it."""
    payments = await payments_of(svc)
    principal = await _refund_principal(who, payments, refund_id)
    wallet_id, digest = await run_in_threadpool(
        payments.refunds.payout_wallet, principal, refund_id
    )
    me = who.user
    delegated: str | None = None
    if me.wallet_id != wallet_id:
        # A manager or cashier approves with their refund passkey on the payout wallet (the
        # signer counts it only for refunds up to the cap the owner approved).
        delegated = await run_in_threadpool(
            _approvers_of(payments).approver_for, principal.merchant_id, me.user_id
        )
        if delegated != wallet_id:  # pragma: no cover - one payout wallet per merchant
            raise RefundApprovalNotSetUp
    approval_id, options = await run_in_threadpool(
        lambda: svc.passkeys.approval_options(me, "intent", {"digest": digest}, wallet_id=delegated)
    )
    return {"approval_id": approval_id, "options": options}


@router.post(
    "/refunds/{refund_id}/approve",
    response_model=RefundOut,
    responses=_problems(401, 403, 404, 409, 422),
)
async def approve_refund(refund_id: str, body: ApproveBody, svc: Svc, who: Who) -> dict[str, Any]:
    """Sign the refund from the payout wallet with its owner's approval."""
    payments = await payments_of(svc)
    principal = await _refund_principal(who, payments, refund_id)
    _, digest = await run_in_threadpool(payments.refunds.payout_wallet, principal, refund_id)
    approvals = await _approvals(svc, who.session, body, digest)
    return await payments.refunds.approve(principal, refund_id, approvals)


# -- webhooks -----------------------------------------------------------------------------------


@router.post(
    "/stores/{store_id}/webhooks", status_code=201, responses=_problems(401, 403, 404, 422)
)
async def create_webhook(store_id: str, body: WebhookBody, svc: Svc, who: Who) -> dict[str, Any]:
    """A webhook endpoint. ``secret`` (for checking signatures) is shown in this answer only."""
    payments = await payments_of(svc)
    principal = await for_store(who, payments, store_id)
    view, secret = await run_in_threadpool(
        lambda: payments.webhooks.create(
            principal, store_id, url=body.url, events=body.events, description=body.description
        )
    )
    return {**_endpoint_json(view), "secret": secret}


@router.get("/stores/{store_id}/webhooks", responses=_problems(401, 403, 404))
async def list_webhooks(store_id: str, svc: Svc, who: Who) -> dict[str, Any]:
    payments = await payments_of(svc)
    principal = await for_store(who, payments, store_id)
    views = await run_in_threadpool(payments.webhooks.endpoints, principal, store_id)
    return {"webhooks": [_endpoint_json(v) for v in views]}


async def _webhook_principal(who: Caller, payments: Payments, endpoint_id: str) -> Principal:
    store_id = await run_in_threadpool(payments.webhooks.store_of, endpoint_id)
    if store_id is None:
        raise WebhookNotFound
    try:
        return await for_store(who, payments, store_id)
    except StoreNotFound:
        raise WebhookNotFound from None


@router.delete("/webhooks/{endpoint_id}", responses=_problems(401, 403, 404))
async def delete_webhook(endpoint_id: str, svc: Svc, who: Who) -> dict[str, Any]:
    payments = await payments_of(svc)
    principal = await _webhook_principal(who, payments, endpoint_id)
    view = await run_in_threadpool(payments.webhooks.disable, principal, endpoint_id)
    return _endpoint_json(view)


@router.get("/webhooks/{endpoint_id}/deliveries", responses=_problems(401, 403, 404))
async def webhook_deliveries(
    endpoint_id: str, svc: Svc, who: Who, limit: int = Query(default=50, ge=1, le=200)
) -> dict[str, Any]:
    """The delivery log: each event sent, its tries, status codes and latency."""
    payments = await payments_of(svc)
    principal = await _webhook_principal(who, payments, endpoint_id)
    return {
        "deliveries": await run_in_threadpool(
            payments.webhooks.deliveries, principal, endpoint_id, limit
        )
    }


@router.post("/webhooks/{endpoint_id}/test", responses=_problems(401, 403, 404))
async def webhook_test(endpoint_id: str, svc: Svc, who: Who) -> dict[str, Any]:
    """Send a ``webhook.test`` event to the endpoint now; the answer shows how it went."""
    payments = await payments_of(svc)
    principal = await _webhook_principal(who, payments, endpoint_id)
    delivery_id = await run_in_threadpool(payments.webhooks.test_event, principal, endpoint_id)
    await svc.webhook_sender().deliver_now(delivery_id)
    return await run_in_threadpool(payments.webhooks.delivery, principal, delivery_id)


@router.post("/webhook-deliveries/{delivery_id}/redeliver", responses=_problems(401, 403, 404))
async def redeliver(delivery_id: str, svc: Svc, who: Who) -> dict[str, Any]:
    """Send a delivery's event again (same body and event id); the worker sends it."""
    payments = await payments_of(svc)
    endpoint_id = await run_in_threadpool(payments.webhooks.endpoint_of_delivery, delivery_id)
    principal = await _webhook_principal(who, payments, endpoint_id)
    return await run_in_threadpool(payments.webhooks.redeliver, principal, delivery_id)


# -- reports ------------------------------------------------------------------------------------


def _period(first: date | None, last: date | None) -> tuple[date, date]:
    today = datetime.now(UTC).date()
    last = last or today
    return first or last - timedelta(days=29), last


@router.get(
    "/stores/{store_id}/reports/settlements",
    response_model=SettlementReport,
    response_model_by_alias=True,
    responses=_problems(401, 403, 404, 422, 429),
)
async def settlement_report(
    store_id: str,
    svc: Svc,
    who: Who,
    from_: Annotated[date | None, Query(alias="from")] = None,
    to: date | None = None,
) -> dict[str, Any]:
    """Per UTC day: count, gross, fees, net, refunds (last 30 days by default)."""
    payments = await payments_of(svc)
    principal = await for_store(who, payments, store_id)
    first, last = _period(from_, to)
    return await run_in_threadpool(payments.reports.settlements, principal, store_id, first, last)


@router.get(
    "/stores/{store_id}/reports/settlements.csv",
    response_class=Response,
    responses=_with({200: {"content": {"text/csv": {}}}}, _problems(401, 403, 404, 422, 429)),
)
async def settlement_report_csv(
    store_id: str,
    svc: Svc,
    who: Who,
    from_: Annotated[date | None, Query(alias="from")] = None,
    to: date | None = None,
) -> Response:
    payments = await payments_of(svc)
    principal = await for_store(who, payments, store_id)
    first, last = _period(from_, to)
    report = await run_in_threadpool(payments.reports.settlements, principal, store_id, first, last)
    return Response(
        report_csv(report),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="settlements-{first}-{last}.csv"'},
    )
