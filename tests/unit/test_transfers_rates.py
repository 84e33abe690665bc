"""Rates for values in the reader's currency: the offline table, conversions, currencies."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from types import MappingProxyType

import pytest

from seiwallet.transfers.rates import (
    LOCALE_CURRENCIES,
    OFFLINE_RATES,
    OfflineRates,
    RateSource,
    RateTable,
    currency_for_locale,
    currency_of_token,
)
from seiwallet.web.i18n import SUPPORTED_LOCALES


def test_the_offline_table_is_dated_and_indicative() -> None:
    table = OfflineRates().table()
    assert table is OFFLINE_RATES
    assert table.as_of == dt.date(2026, 11, 20)
    assert table.indicative
    assert table.currencies == {"USD", "EUR", "HKD"}


def test_offline_rates_are_a_rate_source() -> None:
    source: RateSource = OfflineRates()
    custom = RateTable(dt.date(2027, 1, 2), {"USD": Decimal(1), "EUR": Decimal("0.9")})
    assert OfflineRates(custom).table() is custom
    assert source.table().rate("USD", "USD") == 1


@pytest.mark.parametrize(
    ("base", "quote", "rate"),
    [
        ("USD", "USD", Decimal(1)),
        ("EUR", "USD", Decimal("1.085")),
        ("USD", "HKD", Decimal("7.78")),
        ("EUR", "HKD", Decimal("8.4413")),
        ("HKD", "USD", Decimal("0.12853470")),
        ("usd", "hkd", Decimal("7.78")),
    ],
)
def test_rates_go_through_the_dollar(base: str, quote: str, rate: Decimal) -> None:
    assert OFFLINE_RATES.rate(base, quote) == rate


def test_unknown_currencies_have_no_rate() -> None:
    assert OFFLINE_RATES.rate("USD", "JPY") is None
    assert OFFLINE_RATES.rate("GBP", "USD") is None
    assert OFFLINE_RATES.convert(Decimal(1), "USD", "JPY") is None


@pytest.mark.parametrize(
    ("amount", "symbol", "currency", "value"),
    [
        ("12.5", "USDC", "USD", "12.50"),
        ("12.5", "USDC", "HKD", "97.25"),
        ("12.5", "EURC", "EUR", "12.50"),
        ("12.5", "EURC", "USD", "13.56"),  # 13.5625 to the cent, half-even
        ("100", "EURC", "HKD", "844.13"),
        ("0.000001", "USDC", "HKD", "0.00"),
        ("1000000", "USDC", "EUR", "921658.99"),
    ],
)
def test_stablecoins_are_valued_at_their_peg(
    amount: str, symbol: str, currency: str, value: str
) -> None:
    assert OFFLINE_RATES.value_of_token(Decimal(amount), symbol, currency) == Decimal(value)


def test_other_tokens_have_no_value() -> None:
    assert OFFLINE_RATES.value_of_token(Decimal(1), "DOGE", "USD") is None
    assert OFFLINE_RATES.token_rate("DOGE", "USD") is None
    assert OFFLINE_RATES.token_rate("USDC", "HKD") == Decimal("7.78")
    assert OFFLINE_RATES.token_rate("eurc", "EUR") == 1


def test_currencies_of_tokens_and_locales() -> None:
    assert currency_of_token("USDC") == "USD"
    assert currency_of_token(" eurc ") == "EUR"
    assert currency_of_token("WETH") is None
    assert currency_for_locale("zh_Hant") == "HKD"
    assert currency_for_locale("fr") == "EUR"
    assert currency_for_locale("en") == "USD"
    assert currency_for_locale("de") == "USD"
    # Every language of the app has its currency, and the table can value it.
    assert set(LOCALE_CURRENCIES) == set(SUPPORTED_LOCALES)
    assert set(LOCALE_CURRENCIES.values()) <= OFFLINE_RATES.currencies


@pytest.mark.parametrize(
    "per_usd",
    [
        {"EUR": Decimal("0.9")},
        {"USD": Decimal(2)},
        {"USD": Decimal(1), "EUR": Decimal(0)},
        {"USD": Decimal(1), "EUR": Decimal(-1)},
        {"USD": Decimal(1), "EUR": Decimal("NaN")},
        {"USD": Decimal(1), "EUR": 0.9},
    ],
)
def test_a_table_refuses_rates_it_cannot_use(per_usd: dict[str, object]) -> None:
    with pytest.raises(ValueError, match=r"rate|dollar"):
        RateTable(dt.date(2026, 1, 1), MappingProxyType(per_usd))  # type: ignore[arg-type]
