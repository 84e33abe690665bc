"""Token amounts: exact parsing and formatting, arithmetic rules, and the fee rounding policy."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from decimal import ROUND_FLOOR, Decimal, localcontext
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from seiwallet.errors import InvalidInput
from seiwallet.money import (
    BPS_DENOMINATOR,
    MAX_DECIMALS,
    UINT256_MAX,
    InvalidAmount,
    TokenAmount,
    TokenMismatch,
    basis_points_fee,
)


def usdc(text: str) -> TokenAmount:
    return TokenAmount.parse(text, 6, "USDC")


decimals_st = st.one_of(
    st.integers(min_value=0, max_value=36), st.integers(min_value=0, max_value=MAX_DECIMALS)
)
units_st = st.one_of(
    st.integers(min_value=0, max_value=10**30), st.integers(min_value=0, max_value=UINT256_MAX)
)
amounts = st.builds(TokenAmount.from_units, units_st, decimals_st, st.just("TOK"))


def _exact_decimal(units: int, decimals: int) -> Decimal:
    """units / 10**decimals computed with enough precision to be exact."""
    with localcontext() as context:
        context.prec = 400
        return Decimal(units) / (Decimal(10) ** decimals)


# ---------------------------------------------------------------------------------------------
# Parsing
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "decimals", "units"),
    [
        ("12.5", 6, 12_500_000),
        ("12.50", 6, 12_500_000),
        ("0.000001", 6, 1),
        ("1", 6, 1_000_000),
        ("0", 6, 0),
        ("0.0", 6, 0),
        ("000123", 6, 123_000_000),
        (".5", 6, 500_000),
        ("5.", 6, 5_000_000),
        ("  7.25 \n", 6, 7_250_000),
        ("42", 0, 42),
        ("1.000000000000000001", 18, 10**18 + 1),
        (str(UINT256_MAX), 0, UINT256_MAX),
        ("0." + "0" * 254 + "1", 255, 1),
    ],
)
def test_parse(text: str, decimals: int, units: int) -> None:
    amount = TokenAmount.parse(text, decimals, "TOK")
    assert amount == TokenAmount(units=units, decimals=decimals, symbol="TOK")


PARSE_REJECTIONS: list[tuple[str, int, str]] = [
    ("", 6, "it is empty; write a plain decimal number such as 1234.5"),
    ("   ", 6, "it is empty"),
    (".", 6, "it has no digits"),
    ("-1", 6, "amounts cannot be negative"),
    ("-0.5", 6, "amounts cannot be negative"),
    ("+1", 6, "write the amount without a '+' sign"),
    ("1e6", 6, "exponent notation is not accepted; write the number out in full"),
    ("1.5E-3", 6, "exponent notation is not accepted"),
    (".5e1", 6, "exponent notation is not accepted"),
    ("NaN", 6, "it is not a number"),
    ("nan", 6, "it is not a number"),
    ("sNaN", 6, "it is not a number"),
    ("-inf", 6, "it is not a number"),
    ("Infinity", 6, "it is not a number"),
    ("1,000", 6, "character 2 is ',': write the amount without thousands separators"),
    ("1,5", 6, "with '.' as the decimal point"),
    ("1 000", 6, "character 2 is ' ': write the amount without thousands separators"),
    ("1\u00a0000", 6, "character 2 is '\\xa0'"),
    ("1_000", 6, "character 2 is '_'"),
    ("1'000", 6, "without thousands separators"),
    ("1\u2019000", 6, "without thousands separators"),
    ("\uff11", 6, "character 1 is '１'; write digits as 0-9"),
    ("\u0661", 6, "write digits as 0-9"),
    ("$5", 6, "character 1 is '$', which is not a digit or '.'"),
    ("5 USDC", 6, "character 2 is ' '"),
    ("5USDC", 6, "character 2 is 'U', which is not a digit or '.'"),
    ("0x10", 6, "character 2 is 'x'"),
    ("1.2.3", 6, "it has more than one decimal point"),
    (
        "1.1234567",
        6,
        "it has 7 digits after the point; USDC has 6 decimal places, "
        "so enter at most 6 digits after the point",
    ),
    ("1.5000000", 6, "(the extra digits are zeros: remove them)"),
    ("1.5", 0, "USDC has no decimal places: enter a whole number"),
    (str(UINT256_MAX + 1), 0, "it is more USDC than can exist on chain"),
    ("1" * 500, 6, "it is far longer than any amount can be"),
]


@pytest.mark.parametrize(("text", "decimals", "problem"), PARSE_REJECTIONS)
def test_parse_refuses(text: str, decimals: int, problem: str) -> None:
    with pytest.raises(InvalidAmount) as caught:
        TokenAmount.parse(text, decimals, "USDC")
    assert problem in caught.value.problem
    assert problem in str(caught.value)
    assert caught.value.text == text


def test_excess_non_zero_digits_get_no_zeros_hint() -> None:
    with pytest.raises(InvalidAmount) as caught:
        usdc("1.1234567")
    assert "zeros" not in str(caught.value)


def test_parse_error_message_quotes_the_input() -> None:
    with pytest.raises(InvalidAmount) as caught:
        usdc("1,000")
    assert str(caught.value).startswith("cannot use '1,000' as an amount: ")


def test_invalid_amount_is_a_422_value_error_with_a_stable_code() -> None:
    with pytest.raises(InvalidAmount) as caught:
        usdc("abc")
    assert isinstance(caught.value, InvalidInput)
    assert isinstance(caught.value, ValueError)
    assert caught.value.code == "amount.invalid"
    assert caught.value.status == 422


def test_messages_escape_control_characters_and_cut_long_input() -> None:
    with pytest.raises(InvalidAmount) as caught:
        usdc("1\x1b[2J")
    assert "\x1b" not in str(caught.value)
    with pytest.raises(InvalidAmount) as caught:
        usdc("9" * 300 + "x")
    assert "(301 characters)" in str(caught.value)
    assert len(str(caught.value)) < 400


@given(st.text(max_size=60), st.integers(min_value=0, max_value=40))
def test_parse_refuses_junk_only_with_invalid_amount(text: str, decimals: int) -> None:
    # Anything other than InvalidAmount escaping here is a bug (a 500, not a 422).
    with contextlib.suppress(InvalidAmount):
        TokenAmount.parse(text, decimals, "TOK")


@pytest.mark.parametrize(
    ("decimals", "symbol", "error"),
    [
        (-1, "TOK", ValueError),
        (MAX_DECIMALS + 1, "TOK", ValueError),
        (True, "TOK", TypeError),
        (6.0, "TOK", TypeError),
        (6, "", ValueError),
        (6, " TOK", ValueError),
    ],
)
def test_parse_refuses_impossible_token_metadata(decimals: Any, symbol: str, error: type) -> None:
    with pytest.raises(error):
        TokenAmount.parse("1", decimals, symbol)


# ---------------------------------------------------------------------------------------------
# Construction, formatting, Decimal
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("units", "decimals", "error", "fragment"),
    [
        (-1, 6, InvalidAmount, "amounts cannot be negative"),
        (UINT256_MAX + 1, 6, InvalidAmount, "more than can exist on chain"),
        (1.5, 6, TypeError, "units must be an int, not float"),
        (Decimal(1), 6, TypeError, "not Decimal"),
        (True, 6, TypeError, "not bool"),
        ("1", 6, TypeError, "not str"),
        (1, -1, ValueError, "decimals must be between 0 and 255"),
    ],
)
def test_from_units_refuses(units: Any, decimals: Any, error: type, fragment: str) -> None:
    with pytest.raises(error, match=fragment):
        TokenAmount.from_units(units, decimals, "USDC")


@pytest.mark.parametrize(
    ("units", "decimals", "minimum", "text"),
    [
        (12_500_000, 6, 0, "12.5"),
        (12_500_000, 6, 2, "12.50"),
        (12_000_000, 6, 0, "12"),
        (12_000_000, 6, 2, "12.00"),
        (1, 6, 0, "0.000001"),
        (1, 6, 2, "0.000001"),
        (0, 6, 0, "0"),
        (0, 6, 6, "0.000000"),
        (42, 0, 0, "42"),
        (42, 0, 2, "42"),  # never padded beyond the token's decimals
        (5, 1, 3, "0.5"),
        (10**18 + 1, 18, 0, "1.000000000000000001"),
        (UINT256_MAX, 0, 0, str(UINT256_MAX)),
    ],
)
def test_format(units: int, decimals: int, minimum: int, text: str) -> None:
    amount = TokenAmount.from_units(units, decimals, "TOK")
    assert amount.format(min_fraction_digits=minimum) == text
    assert TokenAmount.parse(text, decimals, "TOK") == amount


def test_format_refuses_negative_padding() -> None:
    with pytest.raises(ValueError, match="min_fraction_digits"):
        usdc("1").format(min_fraction_digits=-1)


def test_str_and_decimal() -> None:
    amount = usdc("12.5")
    assert str(amount) == "12.5 USDC"
    assert amount.to_decimal() == Decimal("12.5")
    assert isinstance(amount.to_decimal(), Decimal)


def test_to_decimal_is_exact_beyond_the_default_context_precision() -> None:
    amount = TokenAmount.from_units(UINT256_MAX, 18, "TOK")
    assert amount.to_decimal() == _exact_decimal(UINT256_MAX, 18)
    assert len(amount.to_decimal().as_tuple().digits) == 78


@given(amounts)
def test_parse_format_round_trip(amount: TokenAmount) -> None:
    assert TokenAmount.parse(amount.format(), amount.decimals, amount.symbol) == amount


@given(amounts, st.integers(min_value=0, max_value=MAX_DECIMALS))
def test_padded_format_round_trips(amount: TokenAmount, minimum: int) -> None:
    padded = amount.format(min_fraction_digits=minimum)
    assert TokenAmount.parse(padded, amount.decimals, amount.symbol) == amount
    assert len(padded.partition(".")[2]) >= min(minimum, amount.decimals)


@given(amounts)
def test_to_decimal_is_exact(amount: TokenAmount) -> None:
    value = amount.to_decimal()
    assert value == _exact_decimal(amount.units, amount.decimals)
    # The fixed-point text of the Decimal parses back to the same amount.
    assert TokenAmount.parse(format(value, "f"), amount.decimals, amount.symbol) == amount


@given(units_st, decimals_st)
def test_format_never_ends_in_a_fractional_zero(units: int, decimals: int) -> None:
    text = TokenAmount.from_units(units, decimals, "TOK").format()
    assert "." not in text or not text.endswith(("0", "."))


# ---------------------------------------------------------------------------------------------
# Arithmetic and comparison
# ---------------------------------------------------------------------------------------------


def test_add_and_subtract() -> None:
    assert usdc("1.5") + usdc("2.25") == usdc("3.75")
    assert usdc("3.75") - usdc("2.25") == usdc("1.5")
    assert usdc("1") - usdc("1") == usdc("0")


def test_subtract_refuses_a_negative_result() -> None:
    with pytest.raises(InvalidAmount) as caught:
        usdc("3") - usdc("5")
    assert str(caught.value) == "cannot subtract 5 USDC from 3 USDC: the result would be negative"
    assert caught.value.code == "amount.invalid"


def test_add_refuses_a_sum_beyond_uint256() -> None:
    top = TokenAmount.from_units(UINT256_MAX, 0, "TOK")
    with pytest.raises(InvalidAmount, match="more than can exist on chain"):
        top + TokenAmount.from_units(1, 0, "TOK")


SEI = TokenAmount.parse("1", 18, "SEI")
USDC_18 = TokenAmount.parse("1", 18, "USDC")


@pytest.mark.parametrize("other", [SEI, USDC_18], ids=["other-symbol", "other-decimals"])
def test_mixing_tokens_is_refused(other: TokenAmount) -> None:
    one = usdc("1")
    combinations: list[tuple[Callable[[], object], str]] = [
        (lambda: one + other, "add"),
        (lambda: one - other, "subtract"),
        (lambda: one < other, "compare"),
        (lambda: one <= other, "compare"),
        (lambda: one > other, "compare"),
        (lambda: one >= other, "compare"),
    ]
    for combine, verb in combinations:
        with pytest.raises(TokenMismatch) as caught:
            combine()
        assert str(caught.value).startswith(f"cannot {verb} amounts of different tokens: ")
        assert caught.value.code == "amount.token_mismatch"
        assert isinstance(caught.value, InvalidAmount)


def test_mismatch_message_names_both_tokens() -> None:
    with pytest.raises(TokenMismatch) as caught:
        usdc("1") + SEI
    assert str(caught.value) == (
        "cannot add amounts of different tokens: 1 USDC (6 decimals) and 1 SEI (18 decimals)"
    )


def test_arithmetic_with_non_amounts_is_a_type_error() -> None:
    one = usdc("1")
    with pytest.raises(TypeError, match="cannot add a TokenAmount and int"):
        one + 1  # type: ignore[operator]
    with pytest.raises(TypeError, match="cannot compare a TokenAmount and Decimal"):
        one < Decimal(1)  # type: ignore[operator]  # noqa: B015


def test_equality_and_hashing() -> None:
    assert usdc("1.50") == usdc("1.5")
    assert hash(usdc("1.50")) == hash(usdc("1.5"))
    assert usdc("1") != TokenAmount.parse("1", 6, "EURC")
    assert usdc("1") != 1_000_000  # type: ignore[comparison-overlap]
    assert len({usdc("1"), usdc("1.0"), usdc("2")}) == 2


def test_amounts_are_frozen() -> None:
    amount = usdc("1")
    with pytest.raises(AttributeError):
        amount.units = 5  # type: ignore[misc]


def test_ordering_and_sorting() -> None:
    values = [usdc("2"), usdc("0.5"), usdc("10"), usdc("0.5")]
    assert sorted(values) == [usdc("0.5"), usdc("0.5"), usdc("2"), usdc("10")]
    assert usdc("1") <= usdc("1") < usdc("1.000001")
    assert usdc("2") >= usdc("2") > usdc("1.999999")
    assert max(values) == usdc("10")


same_token_pairs = st.tuples(
    st.integers(min_value=0, max_value=UINT256_MAX // 2),
    st.integers(min_value=0, max_value=UINT256_MAX // 2),
    decimals_st,
).map(
    lambda t: (TokenAmount.from_units(t[0], t[2], "TOK"), TokenAmount.from_units(t[1], t[2], "TOK"))
)


@given(same_token_pairs)
def test_arithmetic_matches_integer_arithmetic(pair: tuple[TokenAmount, TokenAmount]) -> None:
    a, b = pair
    assert (a + b).units == a.units + b.units
    assert (a + b) - b == a
    assert (a < b) == (a.units < b.units)
    assert (a <= b) == (a.units <= b.units)
    assert (a > b) == (a.units > b.units)
    assert (a >= b) == (a.units >= b.units)
    big, small = max(a, b), min(a, b)
    assert (big - small).units == big.units - small.units


# ---------------------------------------------------------------------------------------------
# Fees
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("amount_units", "bps", "fee"),
    [
        (1_000_000, 250, 25_000),  # 2.5 % of 1 USDC
        (1_000_000, 1, 100),
        (3, 5_000, 1),  # 1.5 units rounds down to 1
        (1, 9_999, 0),  # 0.9999 units rounds down to 0
        (19_999, 1, 1),  # 1.9999 units rounds down to 1
        (123_456_789, 0, 0),
        (123_456_789, BPS_DENOMINATOR, 123_456_789),
        (0, 250, 0),
        (UINT256_MAX, BPS_DENOMINATOR, UINT256_MAX),
    ],
)
def test_basis_points_fee(amount_units: int, bps: int, fee: int) -> None:
    assert basis_points_fee(amount_units, bps) == fee


@pytest.mark.parametrize(
    ("amount_units", "bps", "error", "fragment"),
    [
        (-1, 100, ValueError, "amount_units cannot be negative"),
        (100, -1, ValueError, "bps must be between 0 and 10000"),
        (100, BPS_DENOMINATOR + 1, ValueError, "bps must be between 0 and 10000"),
        (1.5, 100, TypeError, "amount_units must be an int, not float"),
        (100, 2.5, TypeError, "bps must be an int, not float"),
        (True, 100, TypeError, "not bool"),
    ],
)
def test_basis_points_fee_refuses(amount_units: Any, bps: Any, error: type, fragment: str) -> None:
    with pytest.raises(error, match=fragment):
        basis_points_fee(amount_units, bps)


fee_units = st.integers(min_value=0, max_value=UINT256_MAX)
fee_bps = st.integers(min_value=0, max_value=BPS_DENOMINATOR)


@given(fee_units, fee_bps)
def test_fee_never_exceeds_the_stated_rate_and_loses_under_one_unit(
    amount_units: int, bps: int
) -> None:
    fee = basis_points_fee(amount_units, bps)
    exact = amount_units * bps  # the fee times BPS_DENOMINATOR, exactly
    assert fee * BPS_DENOMINATOR <= exact < (fee + 1) * BPS_DENOMINATOR
    assert 0 <= fee <= amount_units


@given(fee_units, fee_bps)
def test_fee_equals_decimal_floor(amount_units: int, bps: int) -> None:
    with localcontext() as context:
        context.prec = 200
        expected = (Decimal(amount_units) * bps / BPS_DENOMINATOR).to_integral_value(ROUND_FLOOR)
    assert basis_points_fee(amount_units, bps) == int(expected)


@given(fee_units, fee_units, fee_bps)
def test_fee_is_monotonic_in_the_amount(a: int, b: int, bps: int) -> None:
    low, high = sorted((a, b))
    assert basis_points_fee(low, bps) <= basis_points_fee(high, bps)
