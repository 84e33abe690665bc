"""Token amounts as whole base units, parsed from and formatted to exact decimal text.

An amount is an ``int`` count of a token's smallest unit (1 USDC = 1_000_000 units at 6
decimals), which is what ERC-20 contracts store; ``Decimal`` appears only for display and
``float`` never. Parsing is strict on purpose: a person typing an amount sees an error rather
than a guess whenever the text could mean two things (``1,000`` is a thousand or one, ``1e3``
might be a typo) or could only be used after rounding.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, replace
from decimal import Decimal
from typing import Final

from seiwallet.errors import InvalidInput

__all__ = [
    "BPS_DENOMINATOR",
    "MAX_DECIMALS",
    "UINT256_MAX",
    "InvalidAmount",
    "TokenAmount",
    "TokenMismatch",
    "basis_points_fee",
]

#: The largest balance an ERC-20 token can hold: amounts beyond it cannot exist on chain.
UINT256_MAX: Final = 2**256 - 1
#: ERC-20 ``decimals()`` is a ``uint8``.
MAX_DECIMALS: Final = 255
#: Basis points per whole: 1 bp = 0.01 %.
BPS_DENOMINATOR: Final = 10_000

# Longer than the longest amount that fits in a uint256 at MAX_DECIMALS; refused before any
# arithmetic is done on it.
_MAX_INPUT_CHARS: Final = 400
_SHOWN_CHARS: Final = 100
_EXAMPLE: Final = "write a plain decimal number such as 1234.5"
_EXPONENT: Final = re.compile(r"[0-9]*\.?[0-9]*[eE][+-]?[0-9]+", re.ASCII)
_NOT_NUMBERS: Final = frozenset({"nan", "snan", "inf", "infinity"})
_SEPARATORS: Final = frozenset(",_'’")


class InvalidAmount(InvalidInput):
    """An amount that cannot be used as given; the message says why and what would work."""

    code = "amount.invalid"

    def __init__(self, problem: str, *, text: str | None = None) -> None:
        self.text = text
        self.problem = problem
        if text is None:
            super().__init__(problem)
        else:
            super().__init__(f"cannot use {_show(text)} as an amount: {problem}")


class TokenMismatch(InvalidAmount):
    """Two amounts of different tokens were combined or compared."""

    code = "amount.token_mismatch"

    def __init__(self, verb: str, left: TokenAmount, right: TokenAmount) -> None:
        self.left, self.right = left, right
        super().__init__(
            f"cannot {verb} amounts of different tokens: {left} ({left.decimals} decimals) "
            f"and {right} ({right.decimals} decimals)"
        )


def _show(text: str) -> str:
    """Quote user text for a message: escaped (no control characters reach logs) and cut short."""
    if len(text) > _SHOWN_CHARS:
        return repr(text[:_SHOWN_CHARS]) + f"… ({len(text)} characters)"
    return repr(text)


def _check_token(decimals: int, symbol: str) -> None:
    """Refuse token metadata that no real token has; these come from code, not from people."""
    if isinstance(decimals, bool) or not isinstance(decimals, int):
        raise TypeError(f"decimals must be an int, not {type(decimals).__name__}")
    if not 0 <= decimals <= MAX_DECIMALS:
        raise ValueError(f"decimals must be between 0 and {MAX_DECIMALS}, not {decimals}")
    if not isinstance(symbol, str) or not symbol or symbol != symbol.strip():
        raise ValueError(f"a token symbol is non-empty text without surrounding spaces: {symbol!r}")


def _scale(decimals: int) -> int:
    """Base units per whole token."""
    return int(10**decimals)


# Checks on the whole text, in order; the first that fails names the problem.
_SHAPE_RULES: Final[tuple[tuple[Callable[[str], bool], str], ...]] = (
    (lambda text: not text, f"it is empty; {_EXAMPLE}"),
    (lambda text: len(text) > _MAX_INPUT_CHARS, "it is far longer than any amount can be"),
    (lambda text: text.lower().lstrip("+-") in _NOT_NUMBERS, f"it is not a number; {_EXAMPLE}"),
    (lambda text: text.startswith("-"), "amounts cannot be negative"),
    (lambda text: text.startswith("+"), "write the amount without a '+' sign"),
    (
        lambda text: _EXPONENT.fullmatch(text) is not None,
        "exponent notation is not accepted; write the number out in full",
    ),
)
_POINT_RULES: Final[tuple[tuple[Callable[[str], bool], str], ...]] = (
    (lambda text: text.count(".") > 1, f"it has more than one decimal point; {_EXAMPLE}"),
    (lambda text: text == ".", f"it has no digits; {_EXAMPLE}"),
)


def _character_problem(text: str) -> str | None:
    """The first character that is neither an ASCII digit nor '.', described, if any."""
    for index, char in enumerate(text, start=1):
        if char in "0123456789.":
            continue
        if char in _SEPARATORS or char.isspace():
            # A comma may be a thousands separator or a decimal comma: guessing could be off
            # by a factor of a thousand, so the person is asked to write it unambiguously.
            return (
                f"character {index} is {char!r}: write the amount without thousands "
                "separators and with '.' as the decimal point, such as 1234.5"
            )
        if char.isdigit():
            return f"character {index} is {char!r}; write digits as 0-9"
        return f"character {index} is {char!r}, which is not a digit or '.'; {_EXAMPLE}"
    return None


def _shape_problem(text: str) -> str | None:
    """Why ``text`` is not plain decimal digits with at most one point, or None if it is."""
    for rejects, problem in _SHAPE_RULES:
        if rejects(text):
            return problem
    character_problem = _character_problem(text)
    if character_problem is not None:
        return character_problem
    return next((problem for rejects, problem in _POINT_RULES if rejects(text)), None)


def _parse_units(text: str, decimals: int, symbol: str) -> int:
    """Turn human decimal text into base units, or raise InvalidAmount saying what is wrong."""
    cleaned = text.strip()
    problem = _shape_problem(cleaned)
    if problem is not None:
        raise InvalidAmount(problem, text=text)
    whole, _, fraction = cleaned.partition(".")
    if len(fraction) > decimals:
        # Rounding would change what the person asked to pay, so it is theirs to do.
        allowed = (
            f"{symbol} has no decimal places: enter a whole number"
            if decimals == 0
            else f"{symbol} has {decimals} decimal places, so enter at most {decimals} "
            "digits after the point"
        )
        if not fraction[decimals:].strip("0"):
            allowed += " (the extra digits are zeros: remove them)"
        raise InvalidAmount(f"it has {len(fraction)} digits after the point; {allowed}", text=text)
    units = int(whole or "0") * _scale(decimals) + int(fraction.ljust(decimals, "0") or "0")
    if units > UINT256_MAX:
        raise InvalidAmount(
            f"it is more {symbol} than can exist on chain (2**256 - 1 base units)", text=text
        )
    return units


@dataclass(frozen=True, slots=True)
class TokenAmount:
    """A non-negative amount of one token, held as ``int`` base units with the token's decimals.

    Two amounts are the same token when symbol and decimals match; adding, subtracting or
    ordering amounts of different tokens raises :class:`TokenMismatch`.
    """

    units: int
    decimals: int
    symbol: str

    def __post_init__(self) -> None:
        """Refuse floats, negatives and amounts larger than a uint256 balance."""
        _check_token(self.decimals, self.symbol)
        # bool is an int subclass and float is the classic money bug: neither is an amount.
        if isinstance(self.units, bool) or not isinstance(self.units, int):
            raise TypeError(f"units must be an int, not {type(self.units).__name__}")
        if self.units < 0:
            raise InvalidAmount(f"amounts cannot be negative ({self.units} base units)")
        if self.units > UINT256_MAX:
            raise InvalidAmount(
                f"{self.units} base units is more than can exist on chain (2**256 - 1)"
            )

    @classmethod
    def from_units(cls, units: int, decimals: int, symbol: str) -> TokenAmount:
        """An amount from base units, as read from a contract or the database."""
        return cls(units=units, decimals=decimals, symbol=symbol)

    @classmethod
    def parse(cls, text: str, decimals: int, symbol: str) -> TokenAmount:
        """An amount from the decimal text a person typed, such as ``"12.50"`` for 12.5 USDC.

        Accepted: ASCII digits with at most one ``.``, surrounding whitespace ignored, at most
        ``decimals`` digits after the point. Refused, each with its own message: empty text,
        signs, exponents, NaN and infinities, thousands separators, and amounts beyond uint256.
        """
        _check_token(decimals, symbol)
        return cls(units=_parse_units(text, decimals, symbol), decimals=decimals, symbol=symbol)

    def format(self, *, min_fraction_digits: int = 0) -> str:
        """Exact decimal text, such as ``12.5``, that :meth:`parse` reads back to this amount.

        Trailing zeros are dropped, then the fraction is padded with zeros to
        ``min_fraction_digits`` (``12.50`` for 2), but never beyond the token's decimals.
        """
        if min_fraction_digits < 0:
            raise ValueError(f"min_fraction_digits cannot be negative: {min_fraction_digits}")
        whole, fraction = divmod(self.units, _scale(self.decimals))
        digits = str(fraction).rjust(self.decimals, "0").rstrip("0") if self.decimals else ""
        digits = digits.ljust(min(min_fraction_digits, self.decimals), "0")
        return f"{whole}.{digits}" if digits else str(whole)

    def to_decimal(self) -> Decimal:
        """The exact value as a ``Decimal``, for display and reports (never for arithmetic)."""
        # Built from text, which Decimal takes exactly whatever the context precision.
        return Decimal(self.format())

    def __str__(self) -> str:
        """Human form, such as ``12.5 USDC``."""
        return f"{self.format()} {self.symbol}"

    def _same_token(self, other: object, verb: str) -> TokenAmount:
        """``other`` as an amount of this token, or the error that explains why it is not."""
        if not isinstance(other, TokenAmount):
            raise TypeError(f"cannot {verb} a TokenAmount and {type(other).__name__}")
        if (other.symbol, other.decimals) != (self.symbol, self.decimals):
            raise TokenMismatch(verb, self, other)
        return other

    def __add__(self, other: TokenAmount) -> TokenAmount:
        """The sum of two amounts of the same token."""
        return replace(self, units=self.units + self._same_token(other, "add").units)

    def __sub__(self, other: TokenAmount) -> TokenAmount:
        """The difference of two amounts of the same token; never below zero."""
        subtrahend = self._same_token(other, "subtract")
        if subtrahend.units > self.units:
            raise InvalidAmount(
                f"cannot subtract {subtrahend} from {self}: the result would be negative"
            )
        return replace(self, units=self.units - subtrahend.units)

    def __lt__(self, other: TokenAmount) -> bool:
        """Order amounts of the same token."""
        return self.units < self._same_token(other, "compare").units

    def __le__(self, other: TokenAmount) -> bool:
        """Order amounts of the same token."""
        return self.units <= self._same_token(other, "compare").units

    def __gt__(self, other: TokenAmount) -> bool:
        """Order amounts of the same token."""
        return self.units > self._same_token(other, "compare").units

    def __ge__(self, other: TokenAmount) -> bool:
        """Order amounts of the same token."""
        return self.units >= self._same_token(other, "compare").units


def basis_points_fee(amount_units: int, bps: int) -> int:
    """The fee of ``bps`` basis points on ``amount_units``, rounded down to a whole base unit.

    Rounding policy: always down (floor). Whoever bears the fee, payer or merchant, is then
    never charged more than the stated rate, and the platform gives up less than one base unit
    (0.000001 USDC) per payment. It is also what Solidity's ``amount * bps / 10000`` computes,
    so a fee worked out here equals the one a contract deducts for the same payment.
    """
    for name, value in (("amount_units", amount_units), ("bps", bps)):
        if isinstance(value, bool) or not isinstance(value, int):
            raise TypeError(f"{name} must be an int, not {type(value).__name__}")
    if amount_units < 0:
        raise ValueError(f"amount_units cannot be negative: {amount_units}")
    if not 0 <= bps <= BPS_DENOMINATOR:
        raise ValueError(f"bps must be between 0 and {BPS_DENOMINATOR}, not {bps}")
    return amount_units * bps // BPS_DENOMINATOR
