"""What the wallet's money pages show, read for one person: balances, transfers, values.

Shared by the home page (``pages.py``) and the money pages (``money_pages.py``). Reading the
chain may fail (the node is down, the deployment is missing): pages then show what they can and
say that balances are delayed — they never fail because of it. Transfers are rows of our own
database, readable whatever the chain does.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Final

import phonenumbers
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request

from seiwallet.accounts.sessions import SessionInfo
from seiwallet.api.services import Services
from seiwallet.errors import SeiwalletError
from seiwallet.money import TokenAmount
from seiwallet.transfers.models import InvitationStatus, TransferStatus
from seiwallet.transfers.rates import (
    OfflineRates,
    RateSource,
    RateTable,
    currency_for_locale,
)
from seiwallet.transfers.services import (
    APPROVAL_WINDOW,
    Owner,
    TokenInfo,
    TransferService,
    TransferView,
)
from seiwallet.web.payments import format_fiat, format_signed_token, format_token
from seiwallet.web.templating import short_address

log = logging.getLogger(__name__)

#: How long a page waits for the chain before showing its balances as delayed.
CHAIN_WAIT_SECONDS: Final = 3.0
#: The stablecoins in the order pages list them, with their names when the chain is unreachable.
OFFERED: Final[Mapping[str, str]] = {"USDC": "USD Coin", "EURC": "Euro Coin"}
FINAL_STATUSES: Final = frozenset(
    {TransferStatus.CONFIRMED, TransferStatus.FAILED, TransferStatus.EXPIRED}
)
_DEFAULT_RATES: Final = OfflineRates()


def rate_source(request: Request) -> RateSource:
    """The app's rate source (``app.state.rates``), else the offline table."""
    found: RateSource | None = getattr(request.app.state, "rates", None)
    return found if found is not None else _DEFAULT_RATES


def owner_of(session: SessionInfo) -> Owner:
    return Owner(session.user_id, session.wallet_id, session.wallet_address)


async def connected(svc: Services) -> TransferService | None:
    """The transfer service on the chain, or None if the chain cannot be reached right now."""
    try:
        return await asyncio.wait_for(svc.connect_chain(), CHAIN_WAIT_SECONDS)
    except (SeiwalletError, OSError, TimeoutError) as exc:
        log.warning("the chain is unreachable for a page: %s", exc)
        return None


class _NoBalances:
    """A balance reader for reading history while the chain is unreachable: it reads nothing."""

    async def balance(self, token: str, owner: str) -> int:  # pragma: no cover - never called
        raise RuntimeError("balances are not read without the chain")


def history_reader(svc: Services, transfers: TransferService | None) -> TransferService:
    """A transfer service for reading transfers: ``transfers`` if given, else one on the database
    alone (reading needs no chain, so a page of transfers never waits for it)."""
    if transfers is not None:
        return transfers
    return TransferService(svc.db, svc.signer, _NoBalances(), {}, svc.gate, clock=svc.clock)


@dataclass(frozen=True)
class Money:
    """How a page values amounts: the reader's locale and currency, and the rate table."""

    locale: str
    currency: str
    rates: RateTable

    @classmethod
    def for_locale(cls, locale: str, source: RateSource) -> Money:
        return cls(locale, currency_for_locale(locale), source.table())

    def value(self, amount: TokenAmount) -> Decimal | None:
        return self.rates.value_of_token(amount.to_decimal(), amount.symbol, self.currency)

    def fiat(self, amount: TokenAmount) -> str | None:
        """``amount``'s value in the reader's currency, formatted, or None if it has none."""
        value = self.value(amount)
        return format_fiat(value, self.currency, locale=self.locale) if value is not None else None

    def rate_of(self, symbol: str) -> Decimal | None:
        return self.rates.token_rate(symbol, self.currency)


@dataclass(frozen=True)
class TokenBalance:
    symbol: str
    name: str
    decimals: int
    #: What can be sent now (chain balance less transfers in flight); None when unknown.
    available: TokenAmount | None


async def balances(
    transfers: TransferService | None, session: SessionInfo
) -> tuple[list[TokenBalance], bool]:
    """The offered tokens and what is available of each; ``True`` when the chain did not answer."""
    if transfers is None:
        return [TokenBalance(s, n, 6, None) for s, n in OFFERED.items()], True
    owner = owner_of(session)
    found: list[TokenBalance] = []
    delayed = False
    for info in _ordered(transfers.tokens):
        amount: TokenAmount | None = None
        try:
            units = await asyncio.wait_for(transfers.available(owner, info), CHAIN_WAIT_SECONDS)
            amount = TokenAmount.from_units(units, info.decimals, info.symbol)
        except (SeiwalletError, OSError, TimeoutError) as exc:
            log.warning("the %s balance could not be read: %s", info.symbol, exc)
            delayed = True
        found.append(TokenBalance(info.symbol, info.name, info.decimals, amount))
    return found, delayed


def _ordered(tokens: Mapping[str, TokenInfo]) -> list[TokenInfo]:
    order = list(OFFERED)
    return sorted(
        tokens.values(),
        key=lambda t: (order.index(t.symbol) if t.symbol in order else 99, t.symbol),
    )


def balance_rows(found: list[TokenBalance], money: Money) -> list[dict[str, Any]]:
    """Balances as the templates show them (amounts formatted in the reader's locale)."""
    return [
        {
            "symbol": b.symbol,
            "name": b.name,
            "amount": format_token(b.available, locale=money.locale, with_symbol=False)
            if b.available is not None
            else None,
            "fiat": money.fiat(b.available) if b.available is not None else None,
        }
        for b in found
    ]


def total_value(found: list[TokenBalance], money: Money) -> str | None:
    """Everything available, valued in the reader's currency; None if any balance is unknown."""
    total = Decimal(0)
    for balance in found:
        if balance.available is None:
            return None
        value = money.value(balance.available)
        if value is not None:
            total += value
    return format_fiat(total, money.currency, locale=money.locale)


async def recent_transfers(
    svc: Services, transfers: TransferService | None, session: SessionInfo, limit: int
) -> list[TransferView]:
    reader = history_reader(svc, transfers)
    return await run_in_threadpool(reader.history, session.user_id, session.wallet_address, limit)


def transfer_row(
    view: TransferView, session: SessionInfo, money: Money, svc: Services
) -> dict[str, Any]:
    """One transfer as the pages show it, from this person's side (sent or received)."""
    outgoing = view.from_address.lower() == session.wallet_address.lower()
    counterparty_address = view.to_address if outgoing else view.from_address
    label = ""
    if outgoing and not view.recipient.lower().startswith("0x"):
        label = pretty_alias(view.recipient)
    explorer = svc.settings.network.explorer_link(view.tx_hash) if view.tx_hash else None
    status = shown_status(view, svc.clock())
    return {
        "id": view.id,
        "url": f"/transfers/{view.id}",
        "outgoing": outgoing,
        "status": str(status),
        "final": status in FINAL_STATUSES,
        "delayed": view.delay_reason,
        "failure": view.failure_reason,
        "symbol": view.symbol,
        "amount": format_token(view.amount, locale=money.locale),
        "amount_number": format_token(view.amount, locale=money.locale, with_symbol=False),
        "amount_plain": view.amount.format(min_fraction_digits=2),
        "signed_amount": format_signed_token(view.amount, outgoing, locale=money.locale),
        "signed_number": ("\u2212" if outgoing else "+")
        + format_token(view.amount, locale=money.locale, with_symbol=False),
        "fiat": money.fiat(view.amount),
        "counterparty": label or short_address(counterparty_address),
        "counterparty_label": label,
        "counterparty_address": counterparty_address,
        "counterparty_short": short_address(counterparty_address),
        "note": view.note,
        "created_at": view.created_at,
        "day": view.created_at.date(),
        "confirmed_at": view.confirmed_at,
        "tx_hash": view.tx_hash,
        "explorer_url": explorer,
        "block_number": view.block_number,
        "invitation": invitation_row(view) if outgoing else None,
    }


def invitation_row(view: TransferView) -> dict[str, Any] | None:
    """An invitation as the sender's pages show it.

    ``state`` is what the sender reads: ``pending`` until the deposit is confirmed (the
    transfer's own status tells how it goes), then the invitation's ``open`` ("waiting for …
    to join until …"), ``released`` ("claimed") or ``reclaimed`` ("returned to you").
    """
    found = view.invitation
    if found is None:
        return None
    state = str(found.status)
    if found.status is InvitationStatus.PENDING and view.status is TransferStatus.CONFIRMED:
        state = "open"  # a deposit sent straight to the token, not yet registered: it waits
    return {
        "state": state,
        "alias": pretty_alias(found.alias),
        "deadline": found.deadline,
        "escrow": found.escrow,
        "escrow_short": short_address(found.escrow),
        "settled_at": found.settled_at,
        "settled_tx_hash": found.settled_tx_hash,
    }


def shown_status(view: TransferView, now: float) -> TransferStatus:
    """The status to show: one never approved within its window is expired (as approving it
    would find), though nobody has tried since to mark it so."""
    if (
        view.status is TransferStatus.AWAITING_APPROVAL
        and view.created_at.timestamp() + APPROVAL_WINDOW < now
    ):
        return TransferStatus.EXPIRED
    return view.status


def pretty_alias(alias: str) -> str:
    """An alias as people write it: a phone number grouped (``+852 9123 4567``), else as is."""
    if not alias.startswith("+"):
        return alias
    try:
        number = phonenumbers.parse(alias, None)
    except phonenumbers.NumberParseException:
        return alias
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.INTERNATIONAL)


def rates_note(money: Money) -> dict[str, Any]:
    """What a page says about the rates it used: their date, and that they are indicative."""
    return {"as_of": money.rates.as_of, "indicative": money.rates.indicative}
