"""The wallet app's money pages: send, a transfer's progress, receive, request, history, faucet.

Server-rendered like the rest of the app (``pages.render``). Money moves only through the JSON
API (``/v1/transfers``): the send page's script posts the form there with an Idempotency-Key made
once per view of the form, shows the checked transfer for review, and has it approved with the
phone's passkey. The pages here read; the faucet (local profile) is the one form they take.
"""

from __future__ import annotations

import logging
import uuid
from datetime import UTC, datetime
from typing import Any, Final
from urllib.parse import urlencode

from fastapi import APIRouter, Request
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from seiwallet.accounts.sessions import SessionInfo
from seiwallet.api import transfers as transfers_api
from seiwallet.api import wallet_view
from seiwallet.api.auth import current_session, services
from seiwallet.api.pages import (
    _redirect,
    _signed_in,
    compliance_notice,
    error_page,
    locale_of,
    render,
    set_flash,
)
from seiwallet.api.services import Services
from seiwallet.deployments import contracts_for
from seiwallet.errors import InvalidInput, SeiwalletError
from seiwallet.money import TokenAmount
from seiwallet.transfers.errors import TransferNotFound
from seiwallet.transfers.services import TransferService, TransferView
from seiwallet.web.i18n import gettext as _
from seiwallet.web.payments import (
    NOTE_MAX,
    decimal_separator,
    eip681_uri,
    format_token,
    qr_svg,
    send_link,
)

log = logging.getLogger(__name__)

router = APIRouter()

#: What "Get test money" gives, per token (the API's faucet caps a request at 1,000).
FAUCET_GRANT: Final = "100"
HISTORY_LIMIT: Final = 100
_TOKEN_DECIMALS: Final = 6
_MAX_PREFILL: Final = 320


def _money(request: Request) -> wallet_view.Money:
    return wallet_view.Money.for_locale(locale_of(request), wallet_view.rate_source(request))


def _choose_token(value: str | None, offered: list[str]) -> str:
    chosen = (value or "").strip().upper()
    return chosen if chosen in offered else offered[0]


def _plain_amount(text: str | None, symbol: str, decimals: int) -> str:
    """A prefilled amount, if it reads as one (else nothing: the person types it)."""
    if not text:
        return ""
    try:
        amount = TokenAmount.parse(text[:40], decimals, symbol)
    except InvalidInput:
        return ""
    return amount.format(min_fraction_digits=2) if amount.units > 0 else ""


# -- send ----------------------------------------------------------------------------------------
@router.get("/send")
async def send(
    request: Request,
    to: str | None = None,
    token: str | None = None,
    amount: str | None = None,
    note: str | None = None,
) -> Response:
    session = await _signed_in(request)
    if isinstance(session, Response):
        return session
    svc = services(request)
    money = _money(request)
    transfers = await wallet_view.connected(svc)
    found, delayed = await wallet_view.balances(transfers, session)
    chosen = _choose_token(token, [b.symbol for b in found])
    decimals = next(b.decimals for b in found if b.symbol == chosen)
    return render(
        request,
        "send.html",
        session,
        tokens=[
            {
                "symbol": b.symbol,
                "name": b.name,
                "available": format_token(b.available, locale=money.locale, with_symbol=False)
                if b.available is not None
                else None,
                "available_plain": b.available.format() if b.available is not None else "",
                "rate": str(money.rate_of(b.symbol) or ""),
            }
            for b in found
        ],
        prefill={
            "to": (to or "").strip()[:_MAX_PREFILL],
            "token": chosen,
            "amount": _plain_amount(amount, chosen, decimals),
            "note": " ".join((note or "").split())[:NOTE_MAX],
        },
        requested=bool(to),
        idempotency_key=uuid.uuid4().hex,
        currency=money.currency,
        decimal_separator=decimal_separator(money.locale),
        balances_delayed=delayed,
        rates=wallet_view.rates_note(money),
        note_max=NOTE_MAX,
        compliance_notice=await compliance_notice(svc, session.user_id),
    )


# -- one transfer --------------------------------------------------------------------------------
@router.get("/transfers/{transfer_id}")
async def transfer_detail(request: Request, transfer_id: str) -> Response:
    session = await _signed_in(request)
    if isinstance(session, Response):
        return session
    svc = services(request)
    reader = wallet_view.history_reader(svc, None)
    try:
        view = await run_in_threadpool(reader.get, session.user_id, transfer_id[:64])
    except TransferNotFound:
        return error_page(
            request,
            404,
            _("Transfer not found"),
            _("There is no such transfer in your wallet. Check your history."),
        )
    row = wallet_view.transfer_row(view, session, _money(request), svc)
    return render(
        request,
        "transfer.html",
        session,
        transfer=row,
        rates=wallet_view.rates_note(_money(request)),
        send_again_url=_send_again(view) if row["outgoing"] else None,
    )


def _send_again(view: TransferView) -> str:
    """The send page filled in like this transfer (to whom it was sent, as they were named)."""
    params = {
        "to": view.recipient,
        "token": view.symbol,
        "amount": view.amount.format(min_fraction_digits=2),
    }
    if view.note:
        params["note"] = view.note
    return f"/send?{urlencode(params)}"


# -- history -------------------------------------------------------------------------------------
@router.get("/history")
async def history(request: Request) -> Response:
    session = await _signed_in(request)
    if isinstance(session, Response):
        return session
    svc = services(request)
    money = _money(request)
    reader = wallet_view.history_reader(svc, None)
    views = await run_in_threadpool(
        reader.history, session.user_id, session.wallet_address, HISTORY_LIMIT
    )
    return render(
        request,
        "history.html",
        session,
        transfers=[wallet_view.transfer_row(v, session, money, svc) for v in views],
        today=datetime.now(UTC).date(),
        rates=wallet_view.rates_note(money),
        csv_url="/v1/transfers.csv",
    )


# -- receive and request -------------------------------------------------------------------------
def _token_addresses(
    svc: Services, transfers: TransferService | None
) -> dict[str, tuple[str, int]]:
    """Symbol → (token address, decimals): from the chain if connected, else the deployment."""
    if transfers is not None:
        return {s: (i.address, i.decimals) for s, i in transfers.tokens.items()}
    try:
        tokens = contracts_for(svc.settings).tokens
    except SeiwalletError as exc:
        log.warning("no token addresses for the receive page: %s", exc)
        return {}
    return {symbol.upper(): (address, _TOKEN_DECIMALS) for symbol, address in tokens.items()}


def _ordered_symbols(found: dict[str, tuple[str, int]]) -> list[str]:
    order = list(wallet_view.OFFERED)
    return sorted(found, key=lambda s: (order.index(s) if s in order else 99, s))


def _aliases(session: SessionInfo) -> list[str]:
    found = []
    if session.phone and session.phone_verified:
        found.append(wallet_view.pretty_alias(session.phone))
    if session.email and session.email_verified:
        found.append(session.email)
    return found


def _amount_or_error(
    text: str | None, symbol: str, decimals: int
) -> tuple[TokenAmount | None, str | None]:
    if not text or not text.strip():
        return None, None
    try:
        amount = TokenAmount.parse(text.strip()[:40], decimals, symbol)
    except InvalidInput:
        return None, _(
            "Enter the amount as a number such as 12.50, with at most %(places)d decimal places."
        ) % {"places": decimals}
    if amount.units <= 0:
        return None, _("Enter an amount greater than zero.")
    return amount, None


def _normalised_amount_text(text: str | None, separator: str) -> str | None:
    """What a decimal keypad typed, in the form the API reads (``12,50`` → ``12.50`` in fr)."""
    if text is None or separator != ",":
        return text
    compact = "".join(text.split())
    if compact.count(",") == 1 and "." not in compact:
        return compact.replace(",", ".")
    return text


@router.get("/receive")
async def receive(
    request: Request, token: str | None = None, amount: str | None = None
) -> Response:
    session = await _signed_in(request)
    if isinstance(session, Response):
        return session
    svc = services(request)
    locale = locale_of(request)
    tokens = _token_addresses(svc, await wallet_view.connected(svc))
    symbols = _ordered_symbols(tokens) or list(wallet_view.OFFERED)
    chosen = _choose_token(token, symbols)
    qr = uri = None
    asked, error = None, None
    if chosen in tokens:
        address, decimals = tokens[chosen]
        asked, error = _amount_or_error(
            _normalised_amount_text(amount, decimal_separator(locale)), chosen, decimals
        )
        uri = eip681_uri(
            address,
            svc.settings.network.chain_id,
            session.wallet_address,
            asked.units if asked else None,
        )
        label = (
            _("QR code to pay %(amount)s to this wallet") % {"amount": format_token(asked)}
            if asked
            else _("QR code to pay %(token)s to this wallet") % {"token": chosen}
        )
        qr = qr_svg(uri, label=label)
    return render(
        request,
        "receive.html",
        session,
        tokens=symbols,
        token=chosen,
        amount_text=(amount or "").strip()[:40],
        asked=format_token(asked) if asked else None,
        amount_error=error,
        qr=qr,
        uri=uri,
        evm_address=session.wallet_address,
        sei_address=session.wallet_sei_address,
        aliases=_aliases(session),
    )


@router.get("/request")
async def request_money(
    request: Request,
    token: str | None = None,
    amount: str | None = None,
    note: str | None = None,
) -> Response:
    session = await _signed_in(request)
    if isinstance(session, Response):
        return session
    svc = services(request)
    money = _money(request)
    symbols = list(wallet_view.OFFERED)
    chosen = _choose_token(token, symbols)
    cleaned_note = " ".join((note or "").split())[:NOTE_MAX]
    asked, error = _amount_or_error(
        _normalised_amount_text(amount, decimal_separator(money.locale)), chosen, _TOKEN_DECIMALS
    )
    link = qr = None
    if asked is not None:
        link = send_link(
            svc.settings.web.public_url, session.wallet_address, chosen, asked, cleaned_note
        )
        qr = qr_svg(link, label=_("QR code of the payment link"))
    return render(
        request,
        "request.html",
        session,
        tokens=symbols,
        token=chosen,
        amount_text=(amount or "").strip()[:40],
        note=cleaned_note,
        note_max=NOTE_MAX,
        amount_error=error,
        asked=format_token(asked) if asked else None,
        asked_fiat=money.fiat(asked) if asked else None,
        link=link,
        qr=qr,
        share_text=(
            _("Please pay me %(amount)s with seiwallet.") % {"amount": format_token(asked)}
            if asked
            else ""
        ),
    )


# -- the faucet (local profile) ------------------------------------------------------------------
async def grant_test_money(svc: Services, session: SessionInfo) -> list[dict[str, Any]]:
    """Mint test USDC and EURC to the wallet, as the API's faucet does (local chain only)."""
    granted = []
    for symbol in wallet_view.OFFERED:
        amount = await transfers_api.mint_test_money(
            svc, session.wallet_address, symbol, FAUCET_GRANT
        )
        granted.append(
            {"token": amount.symbol, "amount": amount.format(), "to": session.wallet_address}
        )
    return granted


@router.post("/faucet")
async def faucet(request: Request) -> Response:
    session = await current_session(request)  # checks the form's CSRF token
    svc = services(request)
    if not svc.settings.network.is_local:
        return error_page(
            request,
            404,
            _("Not here"),
            _("Test money exists on the local test network only."),
        )
    response = _redirect("/home")
    try:
        await grant_test_money(svc, session)
    except (SeiwalletError, OSError, TimeoutError) as exc:
        log.warning("the faucet failed for a page: %s", exc)
        set_flash(response, "faucet_failed")
        return response
    set_flash(response, "faucet")
    return response
