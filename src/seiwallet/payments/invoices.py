"""Invoices: priced in the store's currency, quoted once into the settlement token, then fixed.

``create`` quotes the price (HKD, EUR, USD… through the pluggable rate source, or directly in
the token), takes the operator's fee from it (the merchant receives ``amount - fee``; the payer
pays ``amount``), draws a random bytes32 invoice id and computes the router's payment id (the
hash of the terms, which is the payer's EIP-3009 nonce). One set of terms per invoice id: a new
quote is a new invoice. An ``Idempotency-Key`` (per store) returns the first invoice for the same
request and refuses a different request under the same key.

Lists are paginated with an opaque cursor (newest first, keyset on ``created_at``, ``id``).

**Deposit addresses.** When the chain has an ``InvoiceDeposits`` contract
(``deposit_contract``), every new invoice gets its deposit address in the transaction that
creates it (``payments.deposits.open_deposit``), before anyone can see it: a wallet that is not
ours pays by a plain token transfer to it. The merchant's and the payer's views carry it as
``deposit: {"address", "uri"}`` (``uri``: the EIP-681 link a QR code shows, for what is still
due); ``null`` for an invoice without one.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import logging
import re
import secrets
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import ROUND_HALF_EVEN, Decimal, InvalidOperation
from typing import Any, Final

from sqlalchemy import and_, or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from seiwallet.chain.router import Payment, payment_nonce
from seiwallet.config import PaymentSettings
from seiwallet.db import SQLITE_BEGIN, as_utc
from seiwallet.errors import InvalidInput
from seiwallet.money import TokenAmount, basis_points_fee
from seiwallet.payments.deposit_models import InvoiceDeposit
from seiwallet.payments.errors import (
    IdempotencyConflict,
    InvalidCursor,
    InvalidExpiry,
    InvoiceNotFound,
    MetadataTooLarge,
    StoreNotFound,
    TerminalNotFound,
    UnsupportedCurrency,
    UnsupportedSettlementToken,
)
from seiwallet.payments.events import EventView, append_event
from seiwallet.payments.models import (
    Invoice,
    InvoiceStatus,
    Merchant,
    PaymentEvent,
    Store,
    Terminal,
)
from seiwallet.payments.permissions import Permission, Principal
from seiwallet.transfers.rates import RateSource, currency_of_token
from seiwallet.transfers.services import TokenInfo

log = logging.getLogger(__name__)

_WRITE: Final = {SQLITE_BEGIN: "IMMEDIATE"}
_MAX_KEY: Final = 255
_PRICE: Final = re.compile(r"^\d{1,15}(\.\d{1,2})?$")
#: Token amounts of a fiat price are quoted to the cent (half-even): a payer sees 12.50 USDC,
#: not 12.500321, and neither side gains or loses more than half a cent.
_QUOTE_PLACES: Final = Decimal("0.01")


@dataclass(frozen=True)
class InvoiceRequest:
    """What a store asks: an amount in a currency (the store's by default) or in the token."""

    amount: str
    currency: str | None = None
    order_id: str | None = None
    metadata: Mapping[str, Any] | None = None
    terminal_id: str | None = None
    expires_in_seconds: int | None = None

    def fingerprint(self) -> str:
        canonical = json.dumps(
            {
                "amount": self.amount.strip(),
                "currency": (self.currency or "").strip().upper(),
                "order_id": self.order_id,
                "metadata": self.metadata or {},
                "terminal_id": self.terminal_id,
                "expires_in_seconds": self.expires_in_seconds,
            },
            sort_keys=True,
            default=str,
        )
        return hashlib.sha256(canonical.encode()).hexdigest()


@dataclass(frozen=True)
class Quote:
    """A price turned into token units at a rate fixed for the invoice's life."""

    price_amount: Decimal
    price_currency: str
    amount_units: int
    rate: Decimal
    rate_source: str
    rate_as_of: date


@dataclass
class Cursor:
    created_at: datetime
    id: str

    def encode(self) -> str:
        raw = f"{self.created_at.astimezone(UTC).isoformat()}|{self.id}".encode()
        return base64.urlsafe_b64encode(raw).decode().rstrip("=")

    @classmethod
    def decode(cls, text: str) -> Cursor:
        try:
            raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)).decode()
            moment, invoice_id = raw.split("|", 1)
            return cls(datetime.fromisoformat(moment), invoice_id)
        except (ValueError, UnicodeDecodeError):
            raise InvalidCursor from None


@dataclass(frozen=True)
class InvoiceFilter:
    status: InvoiceStatus | None = None
    terminal_id: str | None = None
    order_id: str | None = None
    created_from: datetime | None = None
    created_to: datetime | None = None


@dataclass
class InvoicePage:
    invoices: list[dict[str, Any]] = field(default_factory=list)
    next_cursor: str | None = None


def _amount(units: int, decimals: int, symbol: str) -> str:
    return TokenAmount.from_units(units, decimals, symbol).format(min_fraction_digits=2)


def _iso(moment: datetime | None) -> str | None:
    return as_utc(moment).astimezone(UTC).isoformat() if moment else None


def deposit_json(row: Invoice, deposit: InvoiceDeposit | None) -> dict[str, str] | None:
    """The invoice's deposit address and the EIP-681 link for what is still due, if it has one."""
    if deposit is None:
        return None
    # payments.deposits reads this module (invoice_json), so its helper is imported when used.
    from seiwallet.payments.deposits import payment_uri  # noqa: PLC0415

    due = row.amount_units - deposit.received_units
    return {
        "address": deposit.address,
        "uri": payment_uri(
            token=row.token,
            chain_id=row.chain_id,
            address=deposit.address,
            amount_units=due if due > 0 else row.amount_units,
        ),
    }


def invoice_json(row: Invoice) -> dict[str, Any]:
    """The merchant's view of an invoice (API answers and webhook payloads)."""
    return {
        "id": row.id,
        "store_id": row.store_id,
        "terminal_id": row.terminal_id,
        "status": str(row.status),
        "anomalies": row.anomalies,
        "order_id": row.order_id,
        "metadata": row.metadata_json,
        "price": {"amount": row.price_amount, "currency": row.price_currency},
        "token": row.symbol,
        "token_address": row.token,
        "amount": _amount(row.amount_units, row.decimals, row.symbol),
        "amount_units": str(row.amount_units),
        "fee": _amount(row.fee_units, row.decimals, row.symbol),
        "fee_units": str(row.fee_units),
        "fee_bps": row.fee_bps,
        "net": _amount(row.amount_units - row.fee_units, row.decimals, row.symbol),
        "net_units": str(row.amount_units - row.fee_units),
        "rate": {
            "value": row.rate,
            "pair": f"{row.price_currency}/{row.symbol}",
            "source": row.rate_source,
            "as_of": row.rate_as_of,
        },
        "chain_id": row.chain_id,
        "router": row.router,
        "merchant_address": row.merchant_address,
        "payment_id": row.payment_id,
        "payer": row.payer_address,
        "tx_hash": row.tx_hash,
        "block_number": row.block_number,
        "paid_units": str(row.paid_units),
        "refunded": _amount(row.refunded_units, row.decimals, row.symbol),
        "refunded_units": str(row.refunded_units),
        "created_at": _iso(row.created_at),
        "expires_at": _iso(row.expires_at),
        "settled_at": _iso(row.settled_at),
    }


def invoice_view(row: Invoice, deposit: InvoiceDeposit | None) -> dict[str, Any]:
    """:func:`invoice_json` with the invoice's deposit address (``deposit``: ``null`` when it
    has none): what the API answers and the ``invoice.created`` event carries."""
    return {**invoice_json(row), "deposit": deposit_json(row, deposit)}


def public_json(
    row: Invoice, store: Store, merchant_name: str, deposit: InvoiceDeposit | None = None
) -> dict[str, Any]:
    """What a payer's phone may see: who, how much, the fee, until when, the status, and where
    another wallet may pay it."""
    return {
        "id": row.id,
        "status": str(row.status),
        "store": {"name": store.name, "country": store.country, "logo_url": store.logo_url},
        "merchant_name": merchant_name,
        "price": {"amount": row.price_amount, "currency": row.price_currency},
        "token": row.symbol,
        "amount": _amount(row.amount_units, row.decimals, row.symbol),
        "amount_units": str(row.amount_units),
        "fee": _amount(row.fee_units, row.decimals, row.symbol),
        "fee_bps": row.fee_bps,
        "rate": {"value": row.rate, "pair": f"{row.price_currency}/{row.symbol}"},
        "chain_id": row.chain_id,
        "expires_at": _iso(row.expires_at),
        "settled_at": _iso(row.settled_at),
        "deposit": deposit_json(row, deposit),
    }


def _deposits(db: Session, invoice_ids: list[str]) -> dict[str, InvoiceDeposit]:
    """The deposit rows of these invoices (one query)."""
    if not invoice_ids:
        return {}
    rows = db.scalars(select(InvoiceDeposit).where(InvoiceDeposit.invoice_id.in_(invoice_ids)))
    return {row.invoice_id: row for row in rows}


class InvoiceService:
    """Create, read, list and expire invoices."""

    def __init__(
        self,
        sessions: sessionmaker[Session],
        *,
        tokens: Mapping[str, TokenInfo],
        chain_id: int,
        router: str,
        rates: RateSource,
        settings: PaymentSettings,
        deposit_contract: str | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._sessions = sessions
        self.tokens = {symbol.upper(): info for symbol, info in tokens.items()}
        self.chain_id = chain_id
        self.router = router
        self._rates = rates
        self.settings = settings
        #: The chain's ``InvoiceDeposits``: new invoices get a deposit address (``None``: none).
        self.deposit_contract = deposit_contract
        self._clock = clock

    def _now(self) -> datetime:
        return datetime.fromtimestamp(self._clock(), UTC)

    # -- quoting -------------------------------------------------------------------------------
    def quote(self, price_text: str, currency: str, token: TokenInfo) -> Quote:
        """``price_text`` of ``currency`` in units of ``token`` (directly if it is the token)."""
        currency = currency.strip().upper()
        today = self._now().date()
        if currency == token.symbol:
            amount = TokenAmount.parse(price_text, token.decimals, token.symbol)
            if amount.units <= 0:
                raise InvalidInput("the amount must be more than zero")
            return Quote(amount.to_decimal(), currency, amount.units, Decimal(1), "token", today)
        text = price_text.strip()
        if not _PRICE.match(text):
            raise InvalidInput(
                f"the amount must be a number with at most two decimals, like 97.25 ({text!r})"
            )
        price = Decimal(text)
        if price <= 0:
            raise InvalidInput("the amount must be more than zero")
        pegged = currency_of_token(token.symbol)
        table = self._rates.table()
        rate = table.rate(currency, pegged) if pegged else None
        if rate is None:
            raise UnsupportedCurrency(currency, set(table.currencies) | {token.symbol})
        try:
            value = (price * rate).quantize(_QUOTE_PLACES, rounding=ROUND_HALF_EVEN)
        except InvalidOperation:  # pragma: no cover - bounded by _PRICE
            raise InvalidInput("the amount is too large") from None
        units = int(value * 10**token.decimals)
        if units <= 0:
            raise InvalidInput(f"the amount is worth less than 0.01 {token.symbol}")
        return Quote(price, currency, units, rate, table.source, table.as_of)

    def _expiry(self, request: InvoiceRequest) -> int:
        settings = self.settings
        if request.expires_in_seconds is None:
            return (
                settings.terminal_expiry_seconds
                if request.terminal_id
                else settings.default_expiry_seconds
            )
        if not 15 <= request.expires_in_seconds <= settings.max_expiry_seconds:
            raise InvalidExpiry(15, settings.max_expiry_seconds)
        return request.expires_in_seconds

    def _metadata(self, request: InvoiceRequest) -> dict[str, Any]:
        metadata = dict(request.metadata or {})
        try:
            size = len(json.dumps(metadata, separators=(",", ":")).encode())
        except (TypeError, ValueError):
            raise InvalidInput("metadata must be a JSON object") from None
        if size > self.settings.metadata_max_bytes:
            raise MetadataTooLarge(self.settings.metadata_max_bytes)
        return metadata

    # -- create --------------------------------------------------------------------------------
    async def create(
        self,
        principal: Principal,
        store_id: str,
        request: InvoiceRequest,
        idempotency_key: str | None = None,
    ) -> tuple[dict[str, Any], bool]:
        """A new invoice (``True``), or the one this Idempotency-Key already made (``False``)."""
        return await asyncio.to_thread(
            self.create_sync, principal, store_id, request, idempotency_key
        )

    def create_sync(
        self,
        principal: Principal,
        store_id: str,
        request: InvoiceRequest,
        idempotency_key: str | None = None,
    ) -> tuple[dict[str, Any], bool]:
        principal.require(Permission.INVOICES_CREATE, store_id)
        key = _check_key(idempotency_key)
        fingerprint = request.fingerprint()
        if key is not None:
            earlier = self._by_key(store_id, key)
            if earlier is not None:
                return self._replay(earlier, fingerprint), False
        with self._sessions() as db:
            store = db.get(Store, store_id)
            if store is None or store.merchant_id != principal.merchant_id:
                raise StoreNotFound
            merchant = db.get(Merchant, store.merchant_id)
            if merchant is None:  # pragma: no cover - a foreign key
                raise StoreNotFound
            if request.terminal_id is not None:
                terminal = db.get(Terminal, request.terminal_id)
                if terminal is None or terminal.store_id != store_id or terminal.revoked_at:
                    raise TerminalNotFound
        token = self.tokens.get(merchant.settlement_symbol)
        if token is None:
            raise UnsupportedSettlementToken(merchant.settlement_symbol, self.tokens)
        quote = self.quote(request.amount, request.currency or store.currency, token)
        order_id = None
        if request.order_id is not None:
            order_id = request.order_id.strip()
            if not order_id or len(order_id) > 128 or not order_id.isprintable():
                raise InvalidInput("order_id is 1 to 128 printable characters")
        metadata = self._metadata(request)
        fee_bps = self.settings.fee_bps if merchant.fee_bps is None else merchant.fee_bps
        fee_units = basis_points_fee(quote.amount_units, fee_bps)
        invoice_id = secrets.token_bytes(32)
        payment = Payment(
            invoice_id=invoice_id,
            merchant=merchant.payout_address,
            token=token.address,
            amount_units=quote.amount_units,
            fee_units=fee_units,
        )
        now = self._now()
        row = Invoice(
            id="0x" + invoice_id.hex(),
            merchant_id=merchant.id,
            store_id=store_id,
            terminal_id=request.terminal_id,
            chain_id=self.chain_id,
            router=self.router,
            token=token.address,
            symbol=token.symbol,
            decimals=token.decimals,
            merchant_address=merchant.payout_address,
            amount_units=quote.amount_units,
            fee_units=fee_units,
            fee_bps=fee_bps,
            payment_id="0x"
            + payment_nonce(payment, router=self.router, chain_id=self.chain_id).hex(),
            price_amount=str(quote.price_amount),
            price_currency=quote.price_currency,
            rate=str(quote.rate),
            rate_source=quote.rate_source,
            rate_as_of=quote.rate_as_of.isoformat(),
            order_id=order_id,
            metadata_json=metadata,
            status=InvoiceStatus.NEW,
            paid_late=False,
            paid_over=False,
            paid_partial=False,
            idempotency_key=key,
            request_hash=fingerprint if key is not None else None,
            created_by=principal.actor,
            expires_at=now + timedelta(seconds=self._expiry(request)),
            created_at=now,
            updated_at=now,
            paid_units=0,
            refunded_units=0,
        )
        try:
            with self._sessions.begin() as db:
                db.add(row)
                db.flush()
                deposit = None
                if self.deposit_contract is not None:
                    # In the invoice's own transaction: its address exists before anyone sees it.
                    from seiwallet.payments.deposits import open_deposit  # noqa: PLC0415

                    deposit = open_deposit(db, row, contract=self.deposit_contract)
                    db.flush()
                view = invoice_view(row, deposit)
                append_event(
                    db,
                    type="invoice.created",
                    merchant_id=row.merchant_id,
                    store_id=row.store_id,
                    invoice_id=row.id,
                    terminal_id=row.terminal_id,
                    data={"invoice": view},
                    now=now,
                )
        except IntegrityError:
            # The same key raced in from a second request: the first one's invoice stands.
            earlier = self._by_key(store_id, key) if key is not None else None
            if earlier is None:  # pragma: no cover - the unique key is what failed
                raise
            return self._replay(earlier, fingerprint), False
        log.info("invoice %s created: %s %s", row.id, view["amount"], row.symbol)
        return view, True

    def _replay(self, earlier: Invoice, fingerprint: str) -> dict[str, Any]:
        if earlier.request_hash != fingerprint:
            raise IdempotencyConflict
        return self._view(earlier)

    def _view(self, row: Invoice) -> dict[str, Any]:
        """The merchant's view of ``row`` with its deposit address."""
        with self._sessions() as db:
            return invoice_view(row, db.get(InvoiceDeposit, row.id))

    def _by_key(self, store_id: str, key: str) -> Invoice | None:
        with self._sessions() as db:
            return db.scalars(
                select(Invoice).where(Invoice.store_id == store_id, Invoice.idempotency_key == key)
            ).first()

    # -- reading -------------------------------------------------------------------------------
    def row(self, invoice_id: str) -> Invoice:
        with self._sessions() as db:
            row = db.get(Invoice, invoice_id.lower())
            if row is None:
                raise InvoiceNotFound
            return row

    def get(self, principal: Principal, invoice_id: str) -> dict[str, Any]:
        row = self.row(invoice_id)
        if row.merchant_id != principal.merchant_id or not principal.can_see(row.store_id):
            raise InvoiceNotFound
        principal.require(Permission.INVOICES_READ, row.store_id)
        return self._view(row)

    def events(self, principal: Principal, invoice_id: str, limit: int = 200) -> list[EventView]:
        """The invoice's payment events, oldest first (its history on the merchant's page)."""
        row = self.row(invoice_id)
        if row.merchant_id != principal.merchant_id or not principal.can_see(row.store_id):
            raise InvoiceNotFound
        principal.require(Permission.INVOICES_READ, row.store_id)
        with self._sessions() as db:
            found = db.scalars(
                select(PaymentEvent)
                .where(PaymentEvent.invoice_id == row.id)
                .order_by(PaymentEvent.id)
                .limit(limit)
            ).all()
            return [EventView.of(event) for event in found]

    def public(self, invoice_id: str) -> dict[str, Any]:
        with self._sessions() as db:
            row = db.get(Invoice, invoice_id.lower())
            if row is None:
                raise InvoiceNotFound
            store = db.get(Store, row.store_id)
            merchant = db.get(Merchant, row.merchant_id)
            if store is None or merchant is None:  # pragma: no cover - foreign keys
                raise InvoiceNotFound
            return public_json(row, store, merchant.name, db.get(InvoiceDeposit, row.id))

    def list(
        self,
        principal: Principal,
        store_id: str,
        filters: InvoiceFilter,
        *,
        cursor: str | None = None,
        limit: int = 50,
    ) -> InvoicePage:
        principal.require(Permission.INVOICES_READ, store_id)
        limit = max(1, min(limit, 200))
        query = select(Invoice).where(
            Invoice.store_id == store_id, Invoice.merchant_id == principal.merchant_id
        )
        if filters.status is not None:
            query = query.where(Invoice.status == filters.status)
        if filters.terminal_id is not None:
            query = query.where(Invoice.terminal_id == filters.terminal_id)
        if filters.order_id is not None:
            query = query.where(Invoice.order_id == filters.order_id)
        if filters.created_from is not None:
            query = query.where(Invoice.created_at >= filters.created_from)
        if filters.created_to is not None:
            query = query.where(Invoice.created_at < filters.created_to)
        if cursor:
            after = Cursor.decode(cursor)
            query = query.where(
                or_(
                    Invoice.created_at < after.created_at,
                    and_(Invoice.created_at == after.created_at, Invoice.id < after.id),
                )
            )
        query = query.order_by(Invoice.created_at.desc(), Invoice.id.desc()).limit(limit + 1)
        with self._sessions() as db:
            rows = list(db.scalars(query))
            deposits = _deposits(db, [r.id for r in rows[:limit]])
        page = InvoicePage([invoice_view(r, deposits.get(r.id)) for r in rows[:limit]])
        if len(rows) > limit:
            last = rows[limit - 1]
            page.next_cursor = Cursor(as_utc(last.created_at), last.id).encode()
        return page

    # -- expiry --------------------------------------------------------------------------------
    def expire_due(self, limit: int = 500) -> int:
        """Mark this chain's new invoices past their expiry ``expired``; how many."""
        return expire_invoices(self._sessions, chain_id=self.chain_id, now=self._now(), limit=limit)


def expire_invoices(
    sessions: sessionmaker[Session], *, chain_id: int, now: datetime, limit: int = 500
) -> int:
    """Mark new invoices past their expiry ``expired``, each with its event; how many.

    An invoice a payer holds right now (a live claim, a few seconds) is left to them: their
    approval either makes it ``processing`` or lets the claim lapse, and the next run expires it.
    """
    due_now = (
        Invoice.chain_id == chain_id,
        Invoice.status == InvoiceStatus.NEW,
        Invoice.expires_at <= now,
    )
    # A read first: the writer's lock (one per SQLite database) is taken only with work to do.
    with sessions() as db:
        if db.scalar(select(Invoice.id).where(*due_now).limit(1)) is None:
            return 0
    with sessions.begin() as db:
        db.connection(execution_options=_WRITE)
        due = list(
            db.scalars(
                select(Invoice)
                .where(*due_now)
                .order_by(Invoice.expires_at)
                .limit(limit)
                .with_for_update(skip_locked=True)
            )
        )
        expired = 0
        for row in due:
            if row.claim_expires_at is not None and as_utc(row.claim_expires_at) > now:
                continue
            row.status = InvoiceStatus.EXPIRED
            row.updated_at = now
            db.flush()
            append_event(
                db,
                type="invoice.expired",
                merchant_id=row.merchant_id,
                store_id=row.store_id,
                invoice_id=row.id,
                terminal_id=row.terminal_id,
                data={"invoice": invoice_json(row)},
                now=now,
            )
            expired += 1
    return expired


def _check_key(key: str | None) -> str | None:
    if key is None:
        return None
    if not key.strip() or len(key) > _MAX_KEY or not key.isprintable():
        raise InvalidInput(f"the Idempotency-Key must be 1 to {_MAX_KEY} printable characters")
    return key
