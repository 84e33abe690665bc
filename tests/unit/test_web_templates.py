"""The wallet app's shell: every page renders in every language, catalogs are complete, filters
and negotiation behave, static URLs carry content versions."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import re
import threading
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
from babel.messages.extract import extract_from_dir
from babel.messages.frontend import parse_mapping_cfg
from babel.messages.pofile import read_po

from seiwallet.api.devhooks_inbox import ReceivedWebhook, SignatureCheck
from seiwallet.web import i18n
from seiwallet.web.payments import qr_svg
from seiwallet.web.templating import (
    STATIC_DIR,
    TEMPLATES_DIR,
    StaticUrls,
    Templates,
    create_templates,
    format_datetime,
    format_relative,
    format_timedelta,
    short_address,
)

REPO = Path(__file__).resolve().parents[2]
NOW = dt.datetime(2025, 3, 14, 9, 26, 53, tzinfo=dt.UTC)
EVM = "0x52908400098527886E0F7030069857D2E4169EE7"
SEI = "sei12jggqqqfs5ug5msg7qcqmy9h6ugzc60h8gqjvs"
CSRF = "csrf-token-Zm9vYmFy"


@dataclass(frozen=True)
class SampleUser:
    display_name: str | None
    email: str | None
    wallet_address: str
    sei_address: str


@dataclass(frozen=True)
class SampleProvider:
    name: str
    label: str
    kind: str
    url: str


USER = SampleUser("Mei Lin", "mei.lin@example.com", EVM, SEI)


RATES = {"as_of": dt.date(2026, 11, 20), "indicative": True}
BOB = "0x8ba1f109551bD432803012645Ac136ddd64DBA72"


def sample_transfer(now: dt.datetime = NOW, **overrides: Any) -> dict[str, Any]:
    """A transfer as the pages get it (api/wallet_view.transfer_row)."""
    row: dict[str, Any] = {
        "id": "7f3a9c",
        "url": "/transfers/7f3a9c",
        "outgoing": True,
        "status": "confirmed",
        "final": True,
        "delayed": None,
        "failure": None,
        "symbol": "USDC",
        "amount": "12.50\u00a0USDC",
        "amount_number": "12.50",
        "amount_plain": "12.50",
        "signed_amount": "\u221212.50\u00a0USDC",
        "signed_number": "\u221212.50",
        "fiat": "HK$97.25",
        "counterparty": "+85291234567",
        "counterparty_label": "+85291234567",
        "counterparty_address": BOB,
        "counterparty_short": "0x8ba1…BA72",
        "note": "Dim sum 🥟",
        "created_at": now - dt.timedelta(minutes=3),
        "day": (now - dt.timedelta(minutes=3)).date(),
        "confirmed_at": now - dt.timedelta(minutes=2),
        "tx_hash": "0x" + "ab" * 32,
        "explorer_url": "https://seitrace.com/tx/0x" + "ab" * 32 + "?chain=pacific-1",
        "block_number": 1234,
    }
    row.update(overrides)
    return row


def money_home(**overrides: Any) -> dict[str, Any]:
    """The home page's money part, funded."""
    values: dict[str, Any] = {
        "balances": [
            {"symbol": "USDC", "name": "USD Coin", "amount": "1,250.00", "fiat": "$1,250.00"},
            {"symbol": "EURC", "name": "Euro Coin", "amount": "80.50", "fiat": "$87.34"},
        ],
        "total": "$1,337.34",
        "funded": True,
        "currency": "USD",
        "balances_delayed": False,
        "rates": RATES,
        "recent": [
            sample_transfer(),
            sample_transfer(
                id="91bd",
                url="/transfers/91bd",
                outgoing=False,
                status="submitted",
                final=False,
                signed_amount="+80.50\u00a0EURC",
                signed_number="+80.50",
                symbol="EURC",
                counterparty="0x8ba1…BA72",
                counterparty_label="",
            ),
        ],
        "flash": None,
    }
    values.update(overrides)
    return values


def base_context(*, user: SampleUser | None = USER, path: str = "/home") -> dict[str, Any]:
    """What every page gets (templating.py's contract)."""
    return {
        "user": user,
        "csrf_token": CSRF,
        "is_local": True,
        "request_path": path,
    }


def sample_pages(now: dt.datetime = NOW) -> dict[str, tuple[str, dict[str, Any]]]:
    """Realistic contexts for every page, by sample name: (template, context)."""
    hour = dt.timedelta(hours=1)
    passkey_urls = {
        "options_url": "/v1/passkeys/registration/options",
        "finish_url": "/v1/passkeys/registration",
        "next_url": "/setup/ready",
    }
    aliases = {
        "step": "start",
        "aliases": [],
        "destination": None,
        "attempts_left": None,
        "kind": "phone",
        "value": "",
        "error": None,
        "done": None,
        "mailbox": True,
    }
    recovery = {
        "destination": "m•••@example.com",
        "attempts_left": None,
        "error": None,
        "pending_until": None,
        "timelock_hours": 48,
        **passkey_urls,
        "next_url": "/recovery",
    }
    return {
        "welcome": (
            "welcome.html",
            {
                **base_context(user=None, path="/"),
                "providers": [
                    SampleProvider("google", "Google", "google", "/sign-in/google"),
                    SampleProvider("acme", "Acme ID", "phone-maker", "/sign-in/acme"),
                    SampleProvider("dev", "Local test accounts", "dev", "/sign-in/dev"),
                ],
                "error": None,
            },
        ),
        "welcome_error": (
            "welcome.html",
            {
                **base_context(user=None, path="/"),
                "providers": [SampleProvider("google", "Google", "google", "/sign-in/google")],
                "error": "The sign-in was cancelled or refused. Try again.",
            },
        ),
        "setup_passkey": (
            "setup_passkey.html",
            {
                **base_context(path="/setup/passkey"),
                "recovery": False,
                "timelock_hours": 48,
                **passkey_urls,
            },
        ),
        "setup_passkey_recovery": (
            "setup_passkey.html",
            {
                **base_context(path="/setup/passkey"),
                "recovery": True,
                "timelock_hours": 48,
                **passkey_urls,
            },
        ),
        "wallet_ready": (
            "wallet_ready.html",
            {**base_context(path="/setup/ready"), "evm_address": EVM, "sei_address": SEI},
        ),
        "home": (
            "home.html",
            {
                **base_context(),
                **money_home(
                    balances=[
                        {"symbol": "USDC", "name": "USD Coin", "amount": None, "fiat": None},
                        {"symbol": "EURC", "name": "Euro Coin", "amount": None, "fiat": None},
                    ],
                    total=None,
                    funded=False,
                    balances_delayed=True,
                    recent=[],
                ),
                "evm_address": EVM,
                "sei_address": SEI,
                "notifications": [
                    {
                        "title": "New passkey by recovery",
                        "body": "“Pixel 9” can approve payments from 16 March, 09:26 UTC.",
                        "created_at": now - 2 * hour,
                        "kind": "security",
                    },
                    {
                        "title": "Your wallet was created",
                        "body": "Welcome to seiwallet.",
                        "created_at": now - 3 * 24 * hour,
                        "kind": "info",
                    },
                ],
                "pending_devices": [{"label": "Pixel 9", "active_from": now + 46 * hour}],
            },
        ),
        "home_funded": (
            "home.html",
            {
                **base_context(user=SampleUser(None, None, EVM, SEI)),
                **money_home(flash={"kind": "success", "text": "Test money added."}),
                "evm_address": EVM,
                "sei_address": SEI,
                "notifications": [],
                "pending_devices": [],
            },
        ),
        "send": (
            "send.html",
            {
                **base_context(path="/send"),
                "tokens": [
                    {
                        "symbol": "USDC",
                        "name": "USD Coin",
                        "available": "87.50\u00a0USDC",
                        "available_plain": "87.5",
                        "rate": "7.78",
                    },
                    {
                        "symbol": "EURC",
                        "name": "Euro Coin",
                        "available": "0.00\u00a0EURC",
                        "available_plain": "0",
                        "rate": "8.4413",
                    },
                ],
                "prefill": {"to": "", "token": "USDC", "amount": "", "note": ""},
                "requested": False,
                "idempotency_key": "4f1c2e0b9a7d4e21b3c5d6e7f8091a2b",
                "currency": "HKD",
                "decimal_separator": ".",
                "balances_delayed": False,
                "rates": RATES,
                "note_max": 140,
            },
        ),
        "send_requested_delayed": (
            "send.html",
            {
                **base_context(path="/send"),
                "tokens": [
                    {
                        "symbol": "USDC",
                        "name": "USD Coin",
                        "available": None,
                        "available_plain": "",
                        "rate": "",
                    },
                    {
                        "symbol": "EURC",
                        "name": "Euro Coin",
                        "available": None,
                        "available_plain": "",
                        "rate": "",
                    },
                ],
                "prefill": {"to": BOB, "token": "EURC", "amount": "12.50", "note": "Rent"},
                "requested": True,
                "idempotency_key": "9d1c",
                "currency": "EUR",
                "decimal_separator": ",",
                "balances_delayed": True,
                "rates": RATES,
                "note_max": 140,
            },
        ),
        "transfer_confirmed": (
            "transfer.html",
            {
                **base_context(path="/transfers/7f3a9c"),
                "transfer": sample_transfer(),
                "rates": RATES,
                "send_again_url": "/send?to=%2B85291234567&token=USDC&amount=12.50",
            },
        ),
        "transfer_awaiting": (
            "transfer.html",
            {
                **base_context(path="/transfers/7f3a9c"),
                "transfer": sample_transfer(
                    status="awaiting_approval",
                    final=False,
                    tx_hash=None,
                    explorer_url=None,
                    confirmed_at=None,
                    note="",
                ),
                "rates": RATES,
                "send_again_url": "/send?to=x",
            },
        ),
        "transfer_submitted_delayed": (
            "transfer.html",
            {
                **base_context(path="/transfers/7f3a9c"),
                "transfer": sample_transfer(
                    status="submitted",
                    final=False,
                    outgoing=False,
                    delayed="the network is busy; retrying",
                    explorer_url=None,
                    confirmed_at=None,
                    counterparty_label="",
                    fiat=None,
                ),
                "rates": RATES,
                "send_again_url": None,
            },
        ),
        "transfer_failed": (
            "transfer.html",
            {
                **base_context(path="/transfers/7f3a9c"),
                "transfer": sample_transfer(
                    status="failed", failure="the authorization expired", confirmed_at=None
                ),
                "rates": RATES,
                "send_again_url": "/send?to=x",
            },
        ),
        "transfer_expired": (
            "transfer.html",
            {
                **base_context(path="/transfers/7f3a9c"),
                "transfer": sample_transfer(
                    status="expired", tx_hash=None, explorer_url=None, confirmed_at=None
                ),
                "rates": RATES,
                "send_again_url": "/send?to=x",
            },
        ),
        "history": (
            "history.html",
            {
                **base_context(path="/history"),
                "transfers": [
                    sample_transfer(),
                    sample_transfer(
                        id="91bd",
                        url="/transfers/91bd",
                        outgoing=False,
                        status="signed",
                        signed_amount="+80.50\u00a0EURC",
                        signed_number="+80.50",
                        symbol="EURC",
                        created_at=now - 3 * 24 * hour,
                        day=(now - 3 * 24 * hour).date(),
                    ),
                    sample_transfer(id="a1", url="/transfers/a1", status="failed"),
                ],
                "today": NOW.date(),
                "rates": RATES,
                "csv_url": "/v1/transfers.csv",
            },
        ),
        "history_empty": (
            "history.html",
            {
                **base_context(path="/history"),
                "transfers": [],
                "today": NOW.date(),
                "rates": RATES,
                "csv_url": "/v1/transfers.csv",
            },
        ),
        "receive": (
            "receive.html",
            {
                **base_context(path="/receive"),
                "tokens": ["USDC", "EURC"],
                "token": "USDC",
                "amount_text": "12.50",
                "asked": "12.50\u00a0USDC",
                "amount_error": None,
                "qr": qr_svg("ethereum:" + EVM + "@713715/transfer?address=" + EVM, label="QR"),
                "uri": "ethereum:" + EVM + "@713715/transfer?address=" + EVM + "&uint256=12500000",
                "evm_address": EVM,
                "sei_address": SEI,
                "aliases": ["+852 9123 4567", "mei.lin@example.com"],
            },
        ),
        "receive_unavailable": (
            "receive.html",
            {
                **base_context(path="/receive"),
                "tokens": ["USDC", "EURC"],
                "token": "EURC",
                "amount_text": "abc",
                "asked": None,
                "amount_error": "Enter the amount as a number such as 12.50.",
                "qr": None,
                "uri": None,
                "evm_address": EVM,
                "sei_address": SEI,
                "aliases": [],
            },
        ),
        "request": (
            "request.html",
            {
                **base_context(path="/request"),
                "tokens": ["USDC", "EURC"],
                "token": "USDC",
                "amount_text": "",
                "note": "",
                "note_max": 140,
                "amount_error": None,
                "asked": None,
                "asked_fiat": None,
                "link": None,
                "qr": None,
                "share_text": "",
            },
        ),
        "request_link": (
            "request.html",
            {
                **base_context(path="/request"),
                "tokens": ["USDC", "EURC"],
                "token": "EURC",
                "amount_text": "20",
                "note": "Concert tickets",
                "note_max": 140,
                "amount_error": None,
                "asked": "20.00\u00a0EURC",
                "asked_fiat": "€20.00",
                "link": "https://wallet.example/send?to=" + EVM + "&token=EURC&amount=20.00",
                "qr": qr_svg("https://wallet.example/send", label="QR"),
                "share_text": "Please pay me 20.00 EURC with seiwallet.",
            },
        ),
        "devices": (
            "devices.html",
            {
                **base_context(path="/settings/devices"),
                "authenticators": [
                    {
                        "id": "auth_01",
                        "kind": "passkey",
                        "label": "Galaxy S24",
                        "created_at": now - 40 * 24 * hour,
                        "status": "active",
                        "active_from": None,
                        "this_device": True,
                    },
                    {
                        "id": "auth_02",
                        "kind": "passkey",
                        "label": "Pixel 9",
                        "created_at": now - 2 * hour,
                        "status": "pending",
                        "active_from": now + 46 * hour,
                        "this_device": False,
                    },
                    {
                        "id": "auth_03",
                        "kind": "device",
                        "label": "MacBook · seiwallet CLI",
                        "created_at": now - 9 * 24 * hour,
                        "status": "active",
                        "active_from": None,
                        "this_device": False,
                    },
                    {
                        "id": "auth_04",
                        "kind": "passkey",
                        "label": "Old iPhone",
                        "created_at": now - 200 * 24 * hour,
                        "status": "revoked",
                        "active_from": None,
                        "this_device": False,
                    },
                ],
                "sessions": [
                    {
                        "id": "ses_01",
                        "kind": "web",
                        "label": "Chrome on Android",
                        "created_at": now - 3 * 24 * hour,
                        "last_seen_at": now - dt.timedelta(minutes=2),
                        "current": True,
                    },
                    {
                        "id": "ses_02",
                        "kind": "api",
                        "label": "seiwallet CLI",
                        "created_at": now - 9 * 24 * hour,
                        "last_seen_at": now - 5 * hour,
                        "current": False,
                    },
                ],
                "approve_options_url": "/v1/approvals/options",
                "remove_url_template": "/v1/authenticators/{id}/remove",
            },
        ),
        "recovery_start": (
            "recovery.html",
            {**base_context(path="/recovery"), **recovery, "step": "start"},
        ),
        "recovery_no_destination": (
            "recovery.html",
            {**base_context(path="/recovery"), **recovery, "step": "start", "destination": None},
        ),
        "recovery_code": (
            "recovery.html",
            {
                **base_context(path="/recovery"),
                **recovery,
                "step": "code",
                "attempts_left": 2,
                "error": "That code is not right. Check it and try again.",
            },
        ),
        "recovery_passkey": (
            "recovery.html",
            {**base_context(path="/recovery"), **recovery, "step": "passkey"},
        ),
        "recovery_pending": (
            "recovery.html",
            {
                **base_context(path="/recovery"),
                **recovery,
                "step": "pending",
                "pending_until": now + 48 * hour,
            },
        ),
        "aliases": (
            "aliases.html",
            {
                **base_context(path="/settings/aliases"),
                **aliases,
                "aliases": [
                    {"kind": "phone", "value": "+852 9123 4567"},
                    {"kind": "email", "value": "mei.lin@example.com"},
                ],
                "done": "phone",
            },
        ),
        "aliases_error": (
            "aliases.html",
            {
                **base_context(path="/settings/aliases"),
                **aliases,
                "kind": "email",
                "value": "mei.lin@",
                "error": "That isn't an e-mail address we can use. Check it and try again.",
            },
        ),
        "aliases_code": (
            "aliases.html",
            {
                **base_context(path="/settings/aliases"),
                **aliases,
                "step": "code",
                "destination": "+852 •••• 67",
                "attempts_left": 2,
                "error": "That code isn't right. Check it and try again.",
                "aliases": [{"kind": "email", "value": "mei.lin@example.com"}],
            },
        ),
        "device": (
            "device.html",
            {
                **base_context(path="/device"),
                "code": "BCDF-GHJK",
                "pending": {
                    "user_code": "BCDF-GHJK",
                    "label": "MacBook · seiwallet CLI",
                    "status": "pending",
                    "expires_at": now + dt.timedelta(minutes=9),
                },
                "error": None,
                "has_passkey": True,
                "approve_options_url": "/v1/approvals/options",
                "approve_url": "/v1/device/approve",
            },
        ),
        "device_enter_code": (
            "device.html",
            {
                **base_context(path="/device"),
                "code": "",
                "pending": None,
                "error": None,
                "has_passkey": False,
                "approve_options_url": "/v1/approvals/options",
                "approve_url": "/v1/device/approve",
            },
        ),
        "dev_mailbox": (
            "dev_mailbox.html",
            {
                **base_context(user=None, path="/dev/mailbox"),
                "messages": [
                    {
                        "to": "mei.lin@example.com",
                        "subject": "Your seiwallet recovery code",
                        "body": "Your code is 482913.\nIt expires in 10 minutes.",
                        "created_at": now - dt.timedelta(minutes=1),
                    }
                ],
            },
        ),
        "dev_webhooks": (
            "dev_webhooks.html",
            {
                **base_context(user=None, path="/dev-webhooks/demo-coffee"),
                "receiver": "demo-coffee",
                "receiver_url": "http://localhost:8000/dev-webhooks/demo-coffee",
                "deliveries": [
                    ReceivedWebhook(
                        id=2,
                        name="demo-coffee",
                        received_at=now - dt.timedelta(seconds=20),
                        event_type="invoice.settled",
                        event_id="evt_41",
                        delivery_id="3f2c0d9e8b7a4c1e9f0a2b3c4d5e6f70",
                        signature=SignatureCheck.VALID,
                        endpoint_id="e" * 32,
                        store_name="Demo Coffee Central",
                        headers={"content-type": "application/json"},
                        body='{"id": "evt_41", "type": "invoice.settled", "data": {}}',
                    ),
                    ReceivedWebhook(
                        id=1,
                        name="demo-coffee",
                        received_at=now - dt.timedelta(minutes=3),
                        event_type=None,
                        event_id=None,
                        delivery_id=None,
                        signature=SignatureCheck.MISSING,
                        endpoint_id=None,
                        store_name=None,
                        headers={},
                        body="not json",
                    ),
                ],
            },
        ),
        "dev_webhooks_empty": (
            "dev_webhooks.html",
            {
                **base_context(user=None, path="/dev-webhooks"),
                "receiver": None,
                "receiver_url": "http://localhost:8000/dev-webhooks/<name>",
                "deliveries": [],
            },
        ),
        **payment_pages(now),
        **compliance_pages(now),
        "error": (
            "error.html",
            {
                **base_context(),
                "status": 404,
                "title": "Page not found",
                "detail": "This page doesn't exist or has moved.",
            },
        ),
        "error_signed_out": (
            "error.html",
            {
                **base_context(user=None, path="/oops"),
                "status": 503,
                "title": "Cannot sign in right now",
                "detail": "Google did not answer. Try again in a minute.",
            },
        ),
    }


INVOICE_ID = "0x" + "7c" * 32
DEPOSIT = "0x5B38Da6a701c568545dCfcB03FcB875f56beddC4"


def sample_invoice(now: dt.datetime = NOW, **overrides: Any) -> dict[str, Any]:
    """An invoice as the pay screen gets it (api/payment_pages.pay)."""
    row: dict[str, Any] = {
        "id": INVOICE_ID,
        "status": "new",
        "store_name": "Lantau Tea House",
        "merchant_name": "Lantau Tea Ltd",
        "price": "HK$97.25",
        "priced_in_token": False,
        "amount": "12.50 USDC",
        "amount_number": "12.50",
        "symbol": "USDC",
        "fee": "0.12 USDC",
        "fee_bps": 100,
        "value": "$12.50",
        "expires_at": now + dt.timedelta(minutes=2),
        "settled_at": None,
        "tx_hash": None,
        "explorer_url": None,
    }
    row.update(overrides)
    return row


def sample_deposit() -> dict[str, Any]:
    uri = f"ethereum:{BOB}@713715/transfer?address={DEPOSIT}&uint256=12500000"
    return {"address": DEPOSIT, "uri": uri, "qr": qr_svg(uri, label="QR code")}


def payment_pages(now: dt.datetime = NOW) -> dict[str, tuple[str, dict[str, Any]]]:
    """The point of sale and the pay screen in their states."""
    pay = {
        **base_context(path=f"/pay/{INVOICE_ID}"),
        "invoice": sample_invoice(now),
        "state": "payable",
        "attempt": None,
        "balance": "1,250.00 USDC",
        "insufficient": False,
        "providers": [],
        "events_url": f"/pay/{INVOICE_ID}/events",
        "deposit": sample_deposit(),
    }
    paid_invoice = sample_invoice(
        now,
        status="settled",
        settled_at=now,
        tx_hash="0x" + "ab" * 32,
        explorer_url="https://seitrace.com/tx/0xab",
    )
    return {
        "pos": (
            "pos.html",
            {
                **base_context(path="/pos/0a1b"),
                "merchant_nav": True,
                "locale": "en",
                "terminal": {"id": "0a1b", "name": "Counter 1"},
                "store": {"id": "5e6f", "name": "Lantau Tea House", "currency": "HKD"},
                "merchant_name": "Lantau Tea Ltd",
                "settlement_token": "USDC",
                "precision": 2,
                "zero": "HK$0.00",
                "expiry_seconds": 120,
                "dashboard_url": "/merchant/stores/5e6f",
                "create_url": "/v1/stores/5e6f/invoices",
                "sale_url": "/pos/0a1b/sales/",
            },
        ),
        "pay": ("pay.html", pay),
        "pay_short": ("pay.html", {**pay, "insufficient": True, "balance": "3.00 USDC"}),
        "pay_signed_out": (
            "pay.html",
            {
                **pay,
                **base_context(user=None, path=f"/pay/{INVOICE_ID}"),
                "state": "sign_in",
                "balance": None,
                "providers": [SampleProvider("dev", "Local test accounts", "dev", "/sign-in/dev")],
            },
        ),
        "pay_processing": (
            "pay.html",
            {**pay, "state": "processing", "deposit": None, "invoice": sample_invoice(now)},
        ),
        "pay_paid": (
            "pay.html",
            {
                **pay,
                "state": "paid",
                "deposit": None,
                "invoice": paid_invoice,
                "attempt": {"status": "settled", "failure": None},
            },
        ),
        "pay_expired": ("pay.html", {**pay, "state": "expired", "deposit": None}),
        "pay_own": ("pay.html", {**pay, "state": "own"}),
    }


def compliance_pages(now: dt.datetime = NOW) -> dict[str, tuple[str, dict[str, Any]]]:
    """Limits, the demo identity check and recipient details (travel rule)."""
    rows = [
        ("Per transfer", "HK$5,000.00"),
        ("Per 24 hours", "HK$8,000.00"),
        ("Per 30 days", "HK$25,000.00"),
        ("Balance cap", "HK$25,000.00"),
    ]
    limits = {
        **base_context(path="/limits"),
        "notice": None,
        "country": "HK",
        "country_source": "phone",
        "jurisdiction": "Hong Kong",
        "tier": 1,
        "tier_name": "Verified phone or e-mail",
        "tiers": [
            {"tier": 0, "name": "Account", "current": False, "rows": rows},
            {"tier": 1, "name": "Verified phone or e-mail", "current": True, "rows": rows},
            {"tier": 2, "name": "Verified identity", "current": False, "rows": rows},
        ],
        "tokens": ["USDC", "EURC"],
        "unavailable": [],
        "left_day": "HK$3,331.00",
        "left_month": "HK$20,331.00",
        "can_verify": True,
        "fake_kyc": True,
        "done": None,
    }
    record = {
        "id": "r1",
        "address": BOB,
        "name": "Bob Chan",
        "self_hosted": True,
        "provider": None,
        "mine": False,
        "proven_at": None,
        "needs_proof": True,
        "challenge": "seiwallet asks you to prove you hold 0x8ba1…BA72.\nIt moves no money.",
        "url": "/limits/recipients/r1",
    }
    travel = {
        **base_context(path="/limits/recipients"),
        "records": [
            record,
            {**record, "id": "r2", "self_hosted": False, "provider": "Example Exchange"},
        ],
        "record": record,
        "error": None,
        "prefill": {
            "address": "",
            "name": "",
            "wallet_type": "self_hosted",
            "provider": "",
            "mine": False,
        },
        "done": None,
    }
    return {
        "limits": ("limits.html", limits),
        "limits_unavailable": (
            "limits.html",
            {
                **limits,
                "notice": {
                    "kind": "pending",
                    "text": "seiwallet opens in Singapore soon.",
                    "lang": "en",
                },
                "country": "SG",
                "country_source": "operator",
                "jurisdiction": "Singapore",
                "tier": 0,
                "tier_name": "Account",
                "tiers": [],
                "tokens": [],
                "unavailable": ["Sending money to people", "Paying in shops"],
                "left_day": None,
                "left_month": None,
                "can_verify": False,
                "fake_kyc": False,
                "done": "rejected",
            },
        ),
        "kyc_fake": (
            "kyc_fake.html",
            {**base_context(path="/limits/verify/fake"), "reference": "kyc_01"},
        ),
        "travel_rule": ("travel_rule.html", travel),
        "travel_rule_empty": (
            "travel_rule.html",
            {
                **travel,
                "records": [],
                "record": None,
                "done": "saved",
                "error": "Enter a 0x address.",
            },
        ),
    }


@pytest.fixture(scope="module")
def templates() -> Templates:
    return create_templates(static_dir=STATIC_DIR)


class _Page(HTMLParser):
    """Collects what the assertions look at: attributes of a few elements, ids, text."""

    def __init__(self) -> None:
        super().__init__()
        self.html_lang: str | None = None
        self.meta: dict[str, str] = {}
        self.ids: list[str] = []
        self.labels_for: set[str] = set()
        self.inputs: list[dict[str, str | None]] = []
        self.buttons: list[dict[str, str | None]] = []
        self.forms: list[dict[str, str | None]] = []
        self.hidden_fields: list[tuple[str | None, str | None]] = []
        self._in_label = 0

    def handle_endtag(self, tag: str) -> None:
        if tag == "label":
            self._in_label = max(0, self._in_label - 1)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = dict(attrs)
        if tag == "label":
            self._in_label += 1
        # A field inside its <label> is labelled by it (a radio button or a checkbox).
        if tag in {"input", "select"} and self._in_label:
            attributes.setdefault("data-labelled-by-parent", "1")
        if element_id := attributes.get("id"):
            self.ids.append(element_id)
        if tag == "html":
            self.html_lang = attributes.get("lang")
        elif tag == "meta" and attributes.get("name"):
            self.meta[str(attributes["name"])] = str(attributes.get("content"))
        elif tag == "label" and attributes.get("for"):
            self.labels_for.add(str(attributes["for"]))
        elif tag in {"input", "select"}:
            if attributes.get("type") == "hidden":
                self.hidden_fields.append((attributes.get("name"), attributes.get("value")))
            else:
                self.inputs.append(attributes)
        elif tag == "button":
            self.buttons.append(attributes)
        elif tag == "form":
            self.forms.append(attributes)


def parse(html: str) -> _Page:
    page = _Page()
    page.feed(html)
    return page


PAGES = sample_pages()
CASES = [(name, locale) for name in PAGES for locale in i18n.SUPPORTED_LOCALES]


@pytest.mark.parametrize(("sample", "locale"), CASES)
def test_every_page_renders_in_every_locale(templates: Templates, sample: str, locale: str) -> None:
    name, context = PAGES[sample]
    response = templates.render(name, context, locale=locale)
    html = bytes(response.body).decode()
    page = parse(html)

    assert response.status_code == 200
    assert response.headers["content-language"] == i18n.language_tag(locale)
    assert page.html_lang == i18n.language_tag(locale)
    assert page.meta["csrf-token"] == CSRF
    assert page.meta["viewport"].startswith("width=device-width")
    assert len(page.ids) == len(set(page.ids)), "duplicate ids"
    # Every visible field is labelled; every POST form carries the CSRF token.
    for field in page.inputs:
        assert field.get("id") in page.labels_for or field.get("data-labelled-by-parent"), field
    posts = [form for form in page.forms if form.get("method") == "post"]
    assert sum(1 for field in page.hidden_fields if field == ("csrf_token", CSRF)) == len(posts)
    assert "/static/css/app.css?v=" in html
    assert "/static/js/app.js?v=" in html
    # Nothing leaked from Python or a missing translation's placeholder.
    assert "None" not in re.sub(r"<[^>]+>", " ", html)
    assert "%(" not in html


def test_signed_in_pages_have_the_tab_bar_and_sign_out(templates: Templates) -> None:
    name, context = PAGES["home"]
    html = templates.render_to_string(name, context, locale="en")
    for tab in ("/home", "/send", "/history", "/settings/devices"):
        assert f'class="tab" href="{tab}"' in html
    assert 'href="/home" aria-current="page"' in html
    # Sign-out lives with the account, on Devices (one form, reachable from the tab bar).
    devices, devices_context = PAGES["devices"]
    assert (
        templates.render_to_string(devices, devices_context, locale="en").count(
            'action="/sign-out"'
        )
        == 1
    )
    welcome, welcome_context = PAGES["welcome"]
    assert 'action="/sign-out"' not in templates.render_to_string(
        welcome, welcome_context, locale="en"
    )
    # The tab of the page's section is the current one.
    history = templates.render_to_string(*PAGES["transfer_confirmed"], locale="en")
    assert 'href="/history" aria-current="page"' in history


def test_language_switcher_posts_the_current_path(templates: Templates) -> None:
    name, context = PAGES["devices"]
    page = parse(templates.render_to_string(name, context, locale="fr"))
    assert ("next", "/settings/devices") in page.hidden_fields
    assert {"method": "post", "action": "/settings/language", "class": "lang-switch"} in page.forms


def test_test_network_pill_only_when_local(templates: Templates) -> None:
    name, context = PAGES["wallet_ready"]
    assert "pill-test" in templates.render_to_string(name, context, locale="en")
    remote = {**context, "is_local": False}
    assert "pill-test" not in templates.render_to_string(name, remote, locale="en")


def test_translated_pages_are_translated(templates: Templates) -> None:
    name, context = PAGES["welcome"]
    assert "No seed phrase" in templates.render_to_string(name, context, locale="en")
    assert "助記詞" in templates.render_to_string(name, context, locale="zh_Hant")
    assert "phrase de récupération" in templates.render_to_string(name, context, locale="fr")


def test_devices_buttons_carry_the_approval_contract(templates: Templates) -> None:
    name, context = PAGES["devices"]
    page = parse(templates.render_to_string(name, context, locale="en"))
    approve = [button for button in page.buttons if "data-passkey-approve" in button]
    # Active and pending authenticators get a button; the revoked one does not.
    assert len(approve) == 3
    by_id = {json.loads(str(b["data-options-body"]))["authenticator_id"]: b for b in approve}
    assert set(by_id) == {"auth_01", "auth_02", "auth_03"}
    for authenticator_id, button in by_id.items():
        assert json.loads(str(button["data-options-body"])) == {
            "action": "authenticator.remove",
            "authenticator_id": authenticator_id,
        }
        assert button["data-options-url"] == "/v1/approvals/options"
        assert button["data-finish-url"] == f"/v1/authenticators/{authenticator_id}/remove"
        assert button["data-confirm"]
    # The current session cannot be signed out from the list; the other one can.
    assert {form.get("action") for form in page.forms if form.get("method") == "post"} >= {
        "/settings/sessions/ses_02/revoke"
    }
    assert "/settings/sessions/ses_01/revoke" not in str(page.forms)


def test_options_body_is_escaped_for_its_attribute(templates: Templates) -> None:
    name, context = PAGES["devices"]
    hostile = dict(context["authenticators"][0], id="a'b\"<c>", label="<script>x</script>")
    html = templates.render_to_string(name, {**context, "authenticators": [hostile]}, locale="en")
    assert "<script>x</script>" not in html
    button = next(b for b in parse(html).buttons if "data-passkey-approve" in b)
    assert json.loads(str(button["data-options-body"]))["authenticator_id"] == "a'b\"<c>"


def test_passkey_pages_wire_registration(templates: Templates) -> None:
    for sample in ("setup_passkey", "recovery_passkey"):
        name, context = PAGES[sample]
        html = templates.render_to_string(name, context, locale="en")
        button = next(b for b in parse(html).buttons if "data-passkey-register" in b)
        assert button["data-options-url"] == context["options_url"]
        assert button["data-finish-url"] == context["finish_url"]
        assert button["data-next"] == context["next_url"]
        assert "data-error" in html
    plain = templates.render_to_string(*PAGES["setup_passkey"], locale="en")
    recovering = templates.render_to_string(*PAGES["setup_passkey_recovery"], locale="en")
    assert "48 hours" not in plain
    assert "can approve nothing for 48 hours" in recovering


def test_recovery_code_field(templates: Templates) -> None:
    html = templates.render_to_string(*PAGES["recovery_code"], locale="en")
    field = next(f for f in parse(html).inputs if f.get("name") == "code")
    assert field["inputmode"] == "numeric"
    assert field["autocomplete"] == "one-time-code"
    assert field["pattern"] == "[0-9]{6}"
    assert "2 attempts left" in html
    assert "That code is not right" in html
    one_left = {**PAGES["recovery_code"][1], "attempts_left": 1}
    assert "1 attempt left" in templates.render_to_string("recovery.html", one_left, locale="en")


def test_server_values_are_escaped(templates: Templates) -> None:
    name, context = PAGES["welcome_error"]
    html = templates.render_to_string(name, {**context, "error": "<b>bad</b>"}, locale="fr")
    assert "&lt;b&gt;bad&lt;/b&gt;" in html


def test_missing_context_fails_loudly(templates: Templates) -> None:
    name, context = PAGES["home"]
    incomplete = {key: value for key, value in context.items() if key != "evm_address"}
    with pytest.raises(Exception, match="evm_address"):
        templates.render_to_string(name, incomplete, locale="en")


# -- catalogs ------------------------------------------------------------------------------------


def _catalog(locale: str) -> Any:
    path = i18n.LOCALE_DIR / locale / "LC_MESSAGES" / "messages.po"
    with path.open("rb") as po_file:
        return read_po(po_file, locale=locale)


def _extracted_msgids() -> set[str | tuple[str, ...]]:
    with (REPO / "babel.cfg").open() as config:
        method_map, options_map = parse_mapping_cfg(config)
    found: set[str | tuple[str, ...]] = set()
    for _filename, _lineno, message, _comments, _context in extract_from_dir(
        str(REPO / "src"), method_map, options_map
    ):
        found.add(message[0] if isinstance(message, tuple) else message)
    return found


@pytest.mark.parametrize("locale", ["zh_Hant", "fr"])
def test_catalog_is_complete(locale: str) -> None:
    catalog = _catalog(locale)
    missing = []
    for message in catalog:
        if not message.id:
            continue
        strings = message.string if isinstance(message.string, tuple) else (message.string,)
        if message.fuzzy or not all(strings):
            missing.append(message.id)
    assert not missing, f"untranslated or fuzzy in {locale}: {missing}"
    assert not list(catalog.obsolete), f"obsolete entries in {locale}: drop them"


@pytest.mark.parametrize("locale", ["zh_Hant", "fr"])
def test_catalog_covers_every_extracted_string(locale: str) -> None:
    catalog = _catalog(locale)
    known = {message.id[0] if isinstance(message.id, tuple) else message.id for message in catalog}
    missing = {m for m in _extracted_msgids() if m not in known}
    assert not missing, (
        f"strings missing from {locale}: run pybabel extract and update (see i18n.py): {missing}"
    )


@pytest.mark.parametrize("locale", ["zh_Hant", "fr"])
def test_placeholders_survive_translation(locale: str) -> None:
    placeholder = re.compile(r"%\([a-z_]+\)s|%\([a-z_]+\)d")
    for message in _catalog(locale):
        if not message.id:
            continue
        ids = message.id if isinstance(message.id, tuple) else (message.id,)
        strings = message.string if isinstance(message.string, tuple) else (message.string,)
        expected = set(placeholder.findall(ids[-1]))
        for string in strings:
            assert set(placeholder.findall(string)) <= expected | set(
                placeholder.findall(ids[0])
            ), (message.id, string)
            # Markup in a msgid must come back in the translation.
            assert sorted(re.findall(r"</?\w+>", string)) == sorted(
                re.findall(r"</?\w+>", ids[0])
            ), (message.id, string)


def test_no_compiled_catalogs_in_the_tree() -> None:
    assert not list(i18n.LOCALE_DIR.rglob("*.mo"))


def test_gettext_uses_the_current_locale() -> None:
    assert i18n.current_locale() == "en"
    with i18n.use_locale("fr"):
        assert i18n.gettext("Devices") == "Appareils"
        with i18n.use_locale("zh_Hant"):
            assert i18n.gettext("Devices") == "裝置"
        assert i18n.current_locale() == "fr"
    assert i18n.gettext("Devices") == "Devices"


def test_plural_forms_follow_the_language() -> None:
    singular, plural = "%(count)s attempt left", "%(count)s attempts left"
    assert i18n.ngettext(singular, plural, 1) == singular
    assert i18n.ngettext(singular, plural, 0) == plural
    with i18n.use_locale("fr"):
        # French takes the singular for 0 and 1.
        assert i18n.ngettext(singular, plural, 0) == "Il reste %(count)s essai"
        assert i18n.ngettext(singular, plural, 2) == "Il reste %(count)s essais"
    with i18n.use_locale("zh_Hant"):
        assert i18n.ngettext(singular, plural, 1) == i18n.ngettext(singular, plural, 5)


def test_locale_is_per_thread_context() -> None:
    seen: dict[str, str] = {}
    barrier = threading.Barrier(3)

    def worker(locale: str) -> None:
        with i18n.use_locale(locale):
            barrier.wait()
            seen[locale] = i18n.gettext("Devices")

    threads = [threading.Thread(target=worker, args=(code,)) for code in i18n.SUPPORTED_LOCALES]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert seen == {"en": "Devices", "fr": "Appareils", "zh_Hant": "裝置"}


def test_unsupported_locale_is_refused() -> None:
    with pytest.raises(ValueError, match="unsupported locale"), i18n.use_locale("de"):
        pass


# -- negotiation ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("accept_language", "cookie", "expected"),
    [
        (None, None, "en"),
        ("", None, "en"),
        ("fr-FR,fr;q=0.9,en;q=0.8", None, "fr"),
        ("fr-CA", None, "fr"),
        ("de-DE,de;q=0.9", None, "en"),
        ("de-DE,fr;q=0.5", None, "fr"),
        ("zh-TW,zh;q=0.9", None, "zh_Hant"),
        ("zh-HK", None, "zh_Hant"),
        ("zh-Hant-TW", None, "zh_Hant"),
        ("zh-hant", None, "zh_Hant"),
        ("zh-CN,zh;q=0.9,en;q=0.5", None, "en"),
        ("en;q=0.1,fr;q=0.9", None, "fr"),
        ("fr;q=0,en", None, "en"),
        ("*", None, "en"),
        ("garbage;;;q=x,,", None, "en"),
        ("en-US", "fr", "fr"),
        ("fr", "zh_Hant", "zh_Hant"),
        ("fr", "zh-TW", "zh_Hant"),
        ("fr", "klingon", "fr"),
        (None, "", "en"),
    ],
)
def test_negotiate(accept_language: str | None, cookie: str | None, expected: str) -> None:
    assert i18n.negotiate(accept_language, cookie) == expected


def test_locale_choices_are_native_names() -> None:
    assert i18n.locale_choices() == [("en", "English"), ("zh_Hant", "繁體中文"), ("fr", "Français")]
    assert i18n.language_tag("zh_Hant") == "zh-Hant"


# -- static URLs ---------------------------------------------------------------------------------


def test_static_url_carries_a_content_hash(tmp_path: Path) -> None:
    (tmp_path / "css").mkdir()
    sheet = tmp_path / "css" / "app.css"
    sheet.write_text("body { color: red }")
    urls = StaticUrls(tmp_path)
    digest = hashlib.sha256(b"body { color: red }").hexdigest()[:10]
    assert urls("css/app.css") == f"/static/css/app.css?v={digest}"
    assert urls("/css/app.css") == f"/static/css/app.css?v={digest}"
    # Cached: the version is computed once (a restart picks up a change).
    sheet.write_text("body { color: blue }")
    assert urls("css/app.css") == f"/static/css/app.css?v={digest}"


def test_static_url_in_debug_follows_changes(tmp_path: Path) -> None:
    sheet = tmp_path / "app.css"
    sheet.write_text("a")
    urls = StaticUrls(tmp_path, debug=True)
    first = urls("app.css")
    sheet.write_text("b")
    # A new mtime (forced, in case the clock's granularity hides the write).
    stat = sheet.stat()
    os.utime(sheet, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000))
    assert urls("app.css") != first


def test_static_url_refuses_missing_and_outside_files(tmp_path: Path) -> None:
    urls = StaticUrls(tmp_path)
    with pytest.raises(FileNotFoundError):
        urls("nope.css")
    (tmp_path.parent / "secret.txt").write_text("x")
    with pytest.raises(FileNotFoundError):
        urls("../secret.txt")


def test_shell_assets_exist() -> None:
    for path in (
        "css/app.css",
        "js/app.js",
        "js/webauthn.js",
        "js/offline.js",
        "sw.js",
        "offline.html",
        "manifest.webmanifest",
        "icons/favicon.svg",
        "icons/icon-192.png",
        "icons/icon-512.png",
        "icons/maskable-192.png",
        "icons/maskable-512.png",
        "icons/apple-touch-icon.png",
    ):
        assert (STATIC_DIR / path).is_file(), path
    manifest = json.loads((STATIC_DIR / "manifest.webmanifest").read_text())
    assert manifest["start_url"] == "/home"
    assert manifest["display"] == "standalone"
    sizes = {(icon["sizes"], icon["purpose"]) for icon in manifest["icons"]}
    assert {("192x192", "any"), ("512x512", "any"), ("512x512", "maskable")} <= sizes
    for icon in manifest["icons"]:
        assert (STATIC_DIR / icon["src"].removeprefix("/static/")).is_file()
    # Every file the service worker precaches exists.
    for url in re.findall(r'"(/static/[^"]+)"', (STATIC_DIR / "sw.js").read_text()):
        assert (STATIC_DIR / url.removeprefix("/static/")).is_file(), url


def test_icons_are_real_pngs_of_their_size() -> None:
    for name, size in (("icon-192.png", 192), ("icon-512.png", 512), ("maskable-512.png", 512)):
        data = (STATIC_DIR / "icons" / name).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n"
        assert int.from_bytes(data[16:20], "big") == size
        assert int.from_bytes(data[20:24], "big") == size


def test_templates_dir_holds_every_page() -> None:
    pages = {path.name for path in TEMPLATES_DIR.glob("*.html") if not path.name.startswith("_")}
    rendered = {template for template, _context in PAGES.values()} | {"base.html"}
    assert pages == rendered


# -- filters -------------------------------------------------------------------------------------


def test_datetime_filter_shows_utc_in_the_locale() -> None:
    moment = dt.datetime(2025, 3, 14, 9, 26, 53, tzinfo=dt.UTC)
    with i18n.use_locale("en"):
        assert format_datetime(moment) == "Mar 14, 2025, 9:26\u202fAM UTC"
        assert format_datetime(moment, tz="Asia/Taipei") == "Mar 14, 2025, 5:26\u202fPM GMT+08:00"
        assert "2025" in format_datetime(moment, "long")
    with i18n.use_locale("fr"):
        assert format_datetime(moment) == "14 mars 2025, 09:26 UTC"
    with i18n.use_locale("zh_Hant"):
        assert format_datetime(moment).startswith("2025年3月14日")
    # Naive datetimes (SQLite) are taken as UTC.
    naive = moment.replace(tzinfo=None)
    with i18n.use_locale("en"):
        assert format_datetime(naive) == format_datetime(moment)
    # Another offset is converted, not relabelled.
    taipei = moment.astimezone(dt.timezone(dt.timedelta(hours=8)))
    with i18n.use_locale("en"):
        assert format_datetime(taipei) == format_datetime(moment)


def test_relative_and_timedelta_filters() -> None:
    now = dt.datetime(2025, 3, 14, 12, 0, tzinfo=dt.UTC)
    with i18n.use_locale("en"):
        assert format_relative(now - dt.timedelta(hours=3), now) == "3 hours ago"
        assert format_relative(now + dt.timedelta(days=2), now) == "in 2 days"
        assert format_timedelta(dt.timedelta(hours=48)) == "2 days"
    with i18n.use_locale("fr"):
        assert format_relative(now - dt.timedelta(hours=3), now) == "il y a 3 heures"
    with i18n.use_locale("zh_Hant"):
        assert format_relative(now + dt.timedelta(days=2), now) == "2 天後"


@pytest.mark.parametrize(
    ("address", "short"),
    [
        (EVM, "0x5290…9EE7"),
        (SEI, "sei12jg…qjvs"),
        ("0x1234", "0x1234"),
        ("sei1abc", "sei1abc"),
    ],
)
def test_short_address(address: str, short: str) -> None:
    assert short_address(address) == short
