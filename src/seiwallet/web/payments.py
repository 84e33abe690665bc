"""Money on the wallet's pages: amounts and values in the reader's locale, payment links, QR codes.

Pure functions (no request, no database), so that the pages stay thin and these stay tested:

* ``format_token`` / ``format_fiat`` / ``format_signed_token``: Babel's number and currency
  formats in the current locale (``12.50 USDC``, ``12,50 USDC``, ``HK$97.25``, ``11,52 €``);
* ``eip681_uri``: the ERC-20 transfer request wallets understand
  (``ethereum:<token>@<chain>/transfer?address=<to>&uint256=<units>``);
* ``send_link``: a link to this site's send page, filled in (how a payment request is shared);
* ``qr_svg``: a QR code as an inline SVG (no image request, no script; fine under the CSP).
"""

from __future__ import annotations

import io
import re
from decimal import Decimal
from typing import Final
from urllib.parse import urlencode

import segno
from babel.numbers import format_currency, format_decimal, get_decimal_symbol
from markupsafe import Markup

from seiwallet.addresses import parse_evm_address
from seiwallet.money import TokenAmount
from seiwallet.web import i18n

__all__ = [
    "decimal_separator",
    "eip681_uri",
    "format_fiat",
    "format_signed_token",
    "format_token",
    "qr_svg",
    "send_link",
]

#: Longest note a payment request carries (the send form's limit).
NOTE_MAX: Final = 140
# At least the cents, at most what the stablecoins have (6 decimals).
_AMOUNT_DIGITS: Final = "#,##0.00####"
_QR_DARK: Final = "#0d1321"
_QR_LIGHT: Final = "#ffffff"


def _locale(locale: str | None) -> str:
    return locale or i18n.current_locale()


def format_token(
    amount: TokenAmount | Decimal,
    symbol: str | None = None,
    *,
    locale: str | None = None,
    with_symbol: bool = True,
) -> str:
    """An amount of a token in the locale's digits, with its symbol: ``1,250.50 USDC``.

    ``symbol`` names the token of a plain ``Decimal``; ``with_symbol=False`` gives the number.
    """
    if isinstance(amount, TokenAmount):
        value, symbol = amount.to_decimal(), symbol or amount.symbol
    else:
        value = amount
    number = format_decimal(value, format=_AMOUNT_DIGITS, locale=_locale(locale))
    return f"{number}\u00a0{symbol}" if symbol and with_symbol else number


def format_signed_token(amount: TokenAmount, outgoing: bool, *, locale: str | None = None) -> str:
    """An amount with the direction it moved: ``−12.50 USDC`` sent, ``+12.50 USDC`` received."""
    sign = "\u2212" if outgoing else "+"
    return sign + format_token(amount, locale=locale)


def format_fiat(value: Decimal, currency: str, *, locale: str | None = None) -> str:
    """A value in a currency, in the locale's way: ``$1,250.00``, ``HK$97.25``, ``11,52 €``."""
    return format_currency(value, currency, locale=_locale(locale))


def decimal_separator(locale: str | None = None) -> str:
    """The locale's decimal separator (what a phone's decimal keypad types)."""
    return get_decimal_symbol(_locale(locale))


def eip681_uri(token: str, chain_id: int, to: str, amount_units: int | None = None) -> str:
    """The EIP-681 request to pay ``to`` in the ERC-20 at ``token`` on ``chain_id``.

    ``amount_units`` (base units) is included when given and positive; addresses are written
    checksummed. Raises ``InvalidAddress`` for a malformed address, ``ValueError`` otherwise.
    """
    if isinstance(chain_id, bool) or not isinstance(chain_id, int) or chain_id <= 0:
        raise ValueError(f"a chain id is a positive integer, not {chain_id!r}")
    if amount_units is not None and (isinstance(amount_units, bool) or amount_units < 0):
        raise ValueError(f"an amount is a non-negative number of base units: {amount_units!r}")
    uri = f"ethereum:{parse_evm_address(token)}@{chain_id}/transfer?address={parse_evm_address(to)}"
    if amount_units:
        uri += f"&uint256={amount_units}"
    return uri


def send_link(
    public_url: str,
    to: str,
    token: str,
    amount: TokenAmount | None = None,
    note: str = "",
) -> str:
    """This site's send page, filled in: ``<public_url>/send?to=…&token=…&amount=…&note=…``.

    Opened by the payer, it shows the pay screen ready to review; empty parts are left out.
    """
    params: dict[str, str] = {"to": parse_evm_address(to), "token": token.strip().upper()}
    if amount is not None and amount.units > 0:
        params["amount"] = amount.format(min_fraction_digits=2)
    cleaned = " ".join(note.split())[:NOTE_MAX]
    if cleaned:
        params["note"] = cleaned
    return f"{public_url.rstrip('/')}/send?{urlencode(params)}"


_SVG_SIZE: Final = re.compile(r'\s(?:width|height)="[^"]*"')


def qr_svg(data: str, *, label: str, css_class: str = "qr-code") -> Markup:
    """A QR code of ``data`` as an inline, labelled SVG that scales to its box.

    Dark modules on white whatever the page's theme (scanners expect dark on light), with a
    two-module margin; the container adds the rest of the quiet zone.
    """
    code = segno.make(data, error="m", micro=False)
    buffer = io.BytesIO()
    code.save(
        buffer,
        kind="svg",
        xmldecl=False,
        svgns=True,
        nl=False,
        border=2,
        dark=_QR_DARK,
        light=_QR_LIGHT,
        svgclass=None,
        lineclass=None,
        omitsize=True,
        title=None,
        desc=None,
    )
    svg = buffer.getvalue().decode("utf-8")
    svg = _SVG_SIZE.sub("", svg)
    attributes = (
        f'<svg class="{Markup.escape(css_class)}" role="img" aria-label="{Markup.escape(label)}" '
        'shape-rendering="crispEdges" '
    )
    return Markup(svg.replace("<svg ", attributes, 1))  # noqa: S704 - segno's own SVG, escaped attributes
