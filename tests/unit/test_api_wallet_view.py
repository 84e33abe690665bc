"""What the money pages show of a transfer and of balances, from one person's side."""

from __future__ import annotations

import datetime as dt
from types import SimpleNamespace
from typing import Any

import pytest

from seiwallet.api.wallet_view import (
    Money,
    TokenBalance,
    balance_rows,
    pretty_alias,
    shown_status,
    total_value,
    transfer_row,
)
from seiwallet.config import PROFILES
from seiwallet.money import TokenAmount
from seiwallet.transfers.models import TransferStatus
from seiwallet.transfers.rates import OfflineRates
from seiwallet.transfers.services import APPROVAL_WINDOW, TransferView
from seiwallet.web import i18n

ADA = "0x52908400098527886E0F7030069857D2E4169EE7"
BOB = "0x8ba1f109551bD432803012645Ac136ddd64DBA72"
CREATED = dt.datetime(2026, 11, 23, 9, 0, tzinfo=dt.UTC)


def view(**changes: Any) -> TransferView:
    values: dict[str, Any] = {
        "id": "t1",
        "status": TransferStatus.CONFIRMED,
        "symbol": "USDC",
        "decimals": 6,
        "token": "0xA0b86991c6218b36c1d19D4a2e9Eb0cE3606eB48",
        "amount_units": 12_500_000,
        "from_address": ADA,
        "to_address": BOB,
        "recipient": "+85291234567",
        "recipient_user_id": "bob",
        "note": "Dim sum",
        "intent": {},
        "intent_digest": "00",
        "tx_hash": "0x" + "ab" * 32,
        "block_number": 7,
        "gas_cost_wei": 1,
        "failure_reason": None,
        "delay_reason": None,
        "created_at": CREATED,
        "confirmed_at": CREATED + dt.timedelta(seconds=3),
    }
    values.update(changes)
    return TransferView(**values)


def services(profile: str = "local", now: dt.datetime = CREATED) -> Any:
    return SimpleNamespace(settings=SimpleNamespace(network=PROFILES[profile]), clock=now.timestamp)


def person(address: str) -> Any:
    return SimpleNamespace(wallet_address=address)


HKD = Money.for_locale("zh_Hant", OfflineRates())


def test_the_sender_sees_whom_they_paid_as_they_named_them() -> None:
    row = transfer_row(view(), person(ADA.lower()), HKD, services())
    assert row["outgoing"] is True
    assert row["counterparty"] == "+852 9123 4567"
    assert row["counterparty_address"] == BOB
    assert row["signed_amount"] == "\u221212.50\u00a0USDC"
    assert row["amount_number"] == "12.50"
    assert row["fiat"] == "HK$97.25"
    assert row["status"] == "confirmed"
    assert row["final"] is True
    assert row["explorer_url"] is None  # the local chain has no explorer
    assert row["day"] == CREATED.date()


def test_the_recipient_sees_the_sender_address_only() -> None:
    row = transfer_row(view(), person(BOB), HKD, services("sei-mainnet"))
    assert row["outgoing"] is False
    assert row["counterparty_label"] == ""
    assert row["counterparty"] == "0x5290…9EE7"
    assert row["signed_amount"] == "+12.50\u00a0USDC"
    assert row["explorer_url"] == f"https://seitrace.com/tx/0x{'ab' * 32}?chain=pacific-1"


def test_an_address_typed_is_not_repeated_as_a_name() -> None:
    row = transfer_row(view(recipient=BOB.lower()), person(ADA), HKD, services())
    assert row["counterparty_label"] == ""
    assert row["counterparty"] == "0x8ba1…BA72"


def test_an_unapproved_transfer_past_its_window_shows_as_expired() -> None:
    waiting = view(status=TransferStatus.AWAITING_APPROVAL, tx_hash=None, confirmed_at=None)
    assert shown_status(waiting, CREATED.timestamp() + 60) is TransferStatus.AWAITING_APPROVAL
    late = CREATED.timestamp() + APPROVAL_WINDOW + 1
    assert shown_status(waiting, late) is TransferStatus.EXPIRED
    row = transfer_row(waiting, person(ADA), HKD, services(now=CREATED + dt.timedelta(hours=1)))
    assert (row["status"], row["final"]) == ("expired", True)
    assert shown_status(view(), late) is TransferStatus.CONFIRMED


@pytest.mark.parametrize(
    ("alias", "shown"),
    [
        ("+85291234567", "+852 9123 4567"),
        ("+33612345678", "+33 6 12 34 56 78"),
        ("bob@example.com", "bob@example.com"),
        ("+not-a-number", "+not-a-number"),
    ],
)
def test_pretty_alias(alias: str, shown: str) -> None:
    assert pretty_alias(alias) == shown


def test_balances_and_their_total_in_the_reader_currency() -> None:
    found = [
        TokenBalance("USDC", "USD Coin", 6, TokenAmount.parse("87.5", 6, "USDC")),
        TokenBalance("EURC", "Euro Coin", 6, TokenAmount.parse("100", 6, "EURC")),
    ]
    with i18n.use_locale("fr"):
        euros = Money.for_locale("fr", OfflineRates())
        rows = balance_rows(found, euros)
        assert rows[0] == {
            "symbol": "USDC",
            "name": "USD Coin",
            "amount": "87,50",
            "fiat": "80,65\u00a0€",
        }
        assert total_value(found, euros) == "180,65\u00a0€"
    delayed = [*found[:1], TokenBalance("EURC", "Euro Coin", 6, None)]
    assert total_value(delayed, HKD) is None
    assert balance_rows(delayed, HKD)[1]["amount"] is None
