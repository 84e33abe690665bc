"""What a stablecoin amount is worth in the reader's currency: exchange rates, where they come from.

A :class:`RateSource` answers a :class:`RateTable`: rates against the US dollar, the day they are
of, and whether they are only indicative. The wallet ships :class:`OfflineRates`, a fixed table
(no network call, nothing to fail), so every value shown is labelled with its date; a live feed
is another ``RateSource`` with the same shape.

The stablecoins are valued at their peg (1 USDC = 1 USD, 1 EURC = 1 EUR); other currencies go
through the dollar. Values are ``Decimal`` throughout, never ``float``.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import ROUND_HALF_EVEN, Decimal
from types import MappingProxyType
from typing import Final, Protocol

__all__ = [
    "DEFAULT_CURRENCY",
    "LOCALE_CURRENCIES",
    "OFFLINE_RATES",
    "PEGS",
    "OfflineRates",
    "RateSource",
    "RateTable",
    "currency_for_locale",
    "currency_of_token",
]

#: The currency each stablecoin is pegged to.
PEGS: Final[Mapping[str, str]] = MappingProxyType({"USDC": "USD", "EURC": "EUR"})
#: The reader's currency by the app's locale, until people can choose their own.
LOCALE_CURRENCIES: Final[Mapping[str, str]] = MappingProxyType(
    {"en": "USD", "zh_Hant": "HKD", "fr": "EUR"}
)
DEFAULT_CURRENCY: Final = "USD"
_CENT: Final = Decimal("0.01")
#: Cross rates are kept to 8 decimal places (the precision rates are quoted in, and then some).
_RATE_PLACES: Final = Decimal("0.00000001")


def currency_for_locale(locale: str) -> str:
    """The currency values are shown in for a reader of ``locale`` (zh_Hant → HKD, fr → EUR)."""
    return LOCALE_CURRENCIES.get(locale, DEFAULT_CURRENCY)


def currency_of_token(symbol: str) -> str | None:
    """The currency a stablecoin is pegged to, or None for a token we do not value."""
    return PEGS.get(symbol.strip().upper())


@dataclass(frozen=True)
class RateTable:
    """Exchange rates of one moment: ``per_usd[C]`` is how many C one US dollar buys."""

    as_of: dt.date
    per_usd: Mapping[str, Decimal]
    #: Shown as "indicative": not a price anyone can trade at.
    indicative: bool = True
    source: str = "offline table"

    def __post_init__(self) -> None:
        if "USD" not in self.per_usd or self.per_usd["USD"] != 1:
            raise ValueError("a rate table is against the US dollar: per_usd['USD'] must be 1")
        for currency, rate in self.per_usd.items():
            if not isinstance(rate, Decimal) or not rate.is_finite() or rate <= 0:
                raise ValueError(f"the rate of {currency} must be a positive Decimal: {rate!r}")

    @property
    def currencies(self) -> frozenset[str]:
        return frozenset(self.per_usd)

    def rate(self, base: str, quote: str) -> Decimal | None:
        """How many ``quote`` one ``base`` buys (through the dollar); None if either is unknown."""
        base, quote = base.upper(), quote.upper()
        if base == quote:
            return Decimal(1)
        base_per_usd = self.per_usd.get(base)
        quote_per_usd = self.per_usd.get(quote)
        if base_per_usd is None or quote_per_usd is None:
            return None
        return (quote_per_usd / base_per_usd).quantize(_RATE_PLACES, rounding=ROUND_HALF_EVEN)

    def convert(self, amount: Decimal, base: str, quote: str) -> Decimal | None:
        """``amount`` of ``base`` in ``quote``, to the cent (half-even), or None if unknown."""
        rate = self.rate(base, quote)
        if rate is None:
            return None
        return (amount * rate).quantize(_CENT, rounding=ROUND_HALF_EVEN)

    def value_of_token(self, amount: Decimal, symbol: str, currency: str) -> Decimal | None:
        """What ``amount`` of the stablecoin ``symbol`` is worth in ``currency``, to the cent."""
        pegged = currency_of_token(symbol)
        if pegged is None:
            return None
        return self.convert(amount, pegged, currency)

    def token_rate(self, symbol: str, currency: str) -> Decimal | None:
        """``currency`` per one ``symbol`` (for pages that convert as the person types)."""
        pegged = currency_of_token(symbol)
        return self.rate(pegged, currency) if pegged is not None else None


class RateSource(Protocol):
    """Where exchange rates come from: the offline table, or a live feed with the same shape."""

    def table(self) -> RateTable: ...


#: The shipped table: indicative mid-market rates of its date, against the US dollar.
OFFLINE_RATES: Final = RateTable(
    as_of=dt.date(2026, 11, 20),
    per_usd=MappingProxyType(
        {
            "USD": Decimal(1),
            # EUR/USD 1.0850: one euro buys 1.085 dollars.
            "EUR": Decimal(1) / Decimal("1.0850"),
            # USD/HKD 7.7800 (the Hong Kong dollar's band is 7.75-7.85).
            "HKD": Decimal("7.7800"),
        }
    ),
)


class OfflineRates:
    """A fixed rate table (the default): no network, always the same answer, dated."""

    def __init__(self, table: RateTable = OFFLINE_RATES) -> None:
        self._table = table

    def table(self) -> RateTable:
        return self._table
