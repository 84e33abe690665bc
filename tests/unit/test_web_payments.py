"""Money on the pages: EIP-681 requests, payment links, QR codes, amounts in the reader's locale."""

from __future__ import annotations

from decimal import Decimal
from urllib.parse import parse_qs, urlsplit

import pytest

from seiwallet.addresses import InvalidAddress
from seiwallet.money import TokenAmount
from seiwallet.web import i18n
from seiwallet.web.payments import (
    decimal_separator,
    eip681_uri,
    format_fiat,
    format_signed_token,
    format_token,
    qr_svg,
    send_link,
)

TOKEN = "0xA0b86991c6218b36c1d19D4a2e9Eb0cE3606eB48"
ME = "0x52908400098527886E0F7030069857D2E4169EE7"


def usdc(text: str) -> TokenAmount:
    return TokenAmount.parse(text, 6, "USDC")


# -- EIP-681 ------------------------------------------------------------------------------------


def test_eip681_transfer_request() -> None:
    assert eip681_uri(TOKEN, 713715, ME) == (f"ethereum:{TOKEN}@713715/transfer?address={ME}")
    assert eip681_uri(TOKEN, 1329, ME, 12_500_000) == (
        f"ethereum:{TOKEN}@1329/transfer?address={ME}&uint256=12500000"
    )


def test_eip681_checksums_addresses_and_leaves_out_no_amount() -> None:
    uri = eip681_uri(TOKEN.lower(), 1, ME.lower(), 0)
    assert uri == f"ethereum:{TOKEN}@1/transfer?address={ME}"
    assert eip681_uri(TOKEN, 1, ME, None) == uri


@pytest.mark.parametrize(
    ("token", "chain_id", "to", "units", "error"),
    [
        ("0x1234", 1, ME, None, InvalidAddress),
        (TOKEN, 1, "bob@example.com", None, InvalidAddress),
        (TOKEN, 0, ME, None, ValueError),
        (TOKEN, -5, ME, None, ValueError),
        (TOKEN, True, ME, None, ValueError),
        (TOKEN, 1, ME, -1, ValueError),
    ],
)
def test_eip681_refuses_what_no_wallet_could_pay(
    token: str, chain_id: int, to: str, units: int | None, error: type[Exception]
) -> None:
    with pytest.raises(error):
        eip681_uri(token, chain_id, to, units)


# -- payment links ------------------------------------------------------------------------------


def test_send_link_fills_in_the_pay_screen() -> None:
    link = send_link("https://wallet.example/", ME.lower(), "eurc", usdc("20"), "Concert  tickets")
    parts = urlsplit(link)
    assert (parts.scheme, parts.netloc, parts.path) == ("https", "wallet.example", "/send")
    assert parse_qs(parts.query) == {
        "to": [ME],
        "token": ["EURC"],
        "amount": ["20.00"],
        "note": ["Concert tickets"],
    }


def test_send_link_leaves_out_empty_parts_and_cuts_long_notes() -> None:
    assert send_link("http://localhost:8000", ME, "USDC") == (
        f"http://localhost:8000/send?to={ME}&token=USDC"
    )
    assert "amount" not in send_link("http://localhost:8000", ME, "USDC", usdc("0"))
    note = parse_qs(urlsplit(send_link("https://w.example", ME, "USDC", note="x" * 500)).query)
    assert note["note"] == ["x" * 140]
    # A note's characters survive the trip through the URL.
    tricky = "R&D + 午餐 = 100%"
    query = parse_qs(urlsplit(send_link("https://w.example", ME, "USDC", note=tricky)).query)
    assert query["note"] == [tricky]


def test_send_link_needs_an_address() -> None:
    with pytest.raises(InvalidAddress):
        send_link("https://w.example", "+85291234567", "USDC")


# -- QR codes -----------------------------------------------------------------------------------


def test_qr_svg_is_inline_labelled_and_escaped() -> None:
    svg = str(qr_svg(f"ethereum:{TOKEN}@1/transfer?address={ME}", label='Pay "me" <now>'))
    assert svg.startswith(
        '<svg class="qr-code" role="img" aria-label="Pay &#34;me&#34; &lt;now&gt;"'
    )
    assert 'viewBox="0 0 ' in svg
    # It scales to its box, and nothing in it needs a style attribute or a script (CSP).
    assert " width=" not in svg.split(">", 1)[0]
    assert "style=" not in svg
    assert "<script" not in svg
    assert "#ffffff" in svg or "#fff" in svg  # light modules: scanners want dark on light


def test_qr_svg_encodes_the_data() -> None:
    segno = pytest.importorskip("segno")
    data = f"ethereum:{TOKEN}@1/transfer?address={ME}&uint256=5000000"
    expected = segno.make(data, error="m", micro=False)
    svg = str(qr_svg(data, label="QR"))
    size = expected.symbol_size(border=2)[0]
    assert f'viewBox="0 0 {size} {size}"' in svg


# -- amounts in the reader's locale -------------------------------------------------------------


@pytest.mark.parametrize(
    ("locale", "token", "fiat", "separator"),
    [
        ("en", "1,250.50\u00a0USDC", "HK$9,725.50", "."),
        ("zh_Hant", "1,250.50\u00a0USDC", "HK$9,725.50", "."),
        ("fr", "1\u202f250,50\u00a0USDC", "9\u202f725,50\u00a0HKD", ","),
    ],
)
def test_amounts_follow_the_locale(locale: str, token: str, fiat: str, separator: str) -> None:
    with i18n.use_locale(locale):
        assert format_token(usdc("1250.5")) == token
        assert format_fiat(Decimal("9725.5"), "HKD") == fiat
        assert decimal_separator() == separator


def test_token_amounts_keep_every_digit_and_at_least_the_cents() -> None:
    assert format_token(usdc("0.000001"), locale="en") == "0.000001\u00a0USDC"
    assert format_token(usdc("12"), locale="en") == "12.00\u00a0USDC"
    assert format_token(usdc("12"), locale="en", with_symbol=False) == "12.00"
    assert format_token(Decimal("3.5"), "EURC", locale="fr") == "3,50\u00a0EURC"
    assert format_signed_token(usdc("12.5"), True, locale="en") == "\u221212.50\u00a0USDC"
    assert format_signed_token(usdc("12.5"), False, locale="en") == "+12.50\u00a0USDC"
