"""Paying at the counter in Chromium: the point of sale, the wallet's pay screen, the dashboard.

One story on three screens, on the local anvil chain with a real signer and the worker (relayer,
follower, webhook sender): Mei signs up as a merchant on her phone, creates her tea house (prices
in HKD) with a counter, adds a webhook endpoint (a small receiver this test runs) and opens the
point of sale on the counter's tablet. Bob, a customer with test money, opens the sale's pay
link on his phone, signs in, and pays with his passkey; the tablet turns green with a receipt.
Mei refunds part of it from the dashboard with her passkey; the payment is in the settlement
report, and the receiver got ``invoice.settled`` with a valid signature. Every screen is saved
under ``test-artifacts/screenshots/``.
"""

from __future__ import annotations

import csv
import io
import json
import re
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, BrowserContext, Page, expect
from tests.e2e.test_browser_money import MoneyWallet, page_shot, sign_up, use_language
from tests.fixtures.browser import PAGE_TIMEOUT_MS, VirtualAuthenticator, serve_app_at

from seiwallet.chain.localnet import LocalChain
from seiwallet.payments.webhooks import SIGNATURE_HEADER, verify_signature

pytestmark = pytest.mark.chain

#: How long the worker may take to relay a payment or refund and the follower to confirm it.
SETTLE_TIMEOUT_MS = 30_000
TABLET = {
    "viewport": {"width": 1024, "height": 768},
    "device_scale_factor": 2,
    "is_mobile": True,
    "has_touch": True,
    "locale": "en-US",
}


@pytest.fixture
def shop(tmp_path: Path, clean_chain: LocalChain) -> Iterator[tuple[str, MoneyWallet]]:
    live = MoneyWallet(tmp_path, clean_chain)
    try:
        with serve_app_at(live.make) as base_url:
            yield base_url, live
    finally:
        live.close()


class Receiver:
    """A merchant's webhook endpoint: records what it is sent and answers 200."""

    def __init__(self) -> None:
        self.received: list[dict[str, Any]] = []
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length") or 0))
                with receiver.lock:
                    receiver.received.append({"headers": dict(self.headers), "body": body})
                self.send_response(200)
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/seiwallet-hook"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def events(self, event_type: str) -> list[dict[str, Any]]:
        with self.lock:
            return [r for r in self.received if json.loads(r["body"]).get("type") == event_type]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    found = Receiver()
    found.thread.start()
    try:
        yield found
    finally:
        found.server.shutdown()
        found.server.server_close()


@pytest.fixture
def tablet(browser: Browser, shop: tuple[str, MoneyWallet]) -> Iterator[Callable[[Page], Page]]:
    """``tablet(phone)``: the counter's tablet, signed in as the phone's person (their session
    cookie). Closed before the server stops, so no live stream outlasts it."""
    contexts: list[BrowserContext] = []

    def make(phone: Page) -> Page:
        context = browser.new_context(**TABLET)  # type: ignore[arg-type]
        context.set_default_timeout(PAGE_TIMEOUT_MS)
        context.add_cookies(phone.context.cookies())  # type: ignore[arg-type]
        contexts.append(context)
        page = context.new_page()
        page.on("console", lambda message: print(f"[tablet {message.type}] {message.text}"))
        page.on("pageerror", lambda error: print(f"[tablet pageerror] {error}"))
        return page

    yield make
    for context in contexts:
        context.close()


def wait_for(condition: Callable[[], bool], page: Page, timeout_ms: int) -> None:
    """Poll ``condition`` (a check of the test's own receiver) while the pages run."""
    waited = 0
    while not condition():
        if waited >= timeout_ms:
            raise AssertionError(f"not within {timeout_ms} ms")
        page.wait_for_timeout(200)
        waited += 200


def test_a_counter_payment_from_keypad_to_refund_report_and_webhook(
    shop: tuple[str, MoneyWallet],
    tablet: Callable[[Page], Page],
    phone: Page,
    new_phone: Callable[[], Page],
    authenticator_factory: Callable[..., VirtualAuthenticator],
    receiver: Receiver,
    screenshots: Callable[[Page, str], Path],
) -> None:
    base_url, live = shop
    shot = page_shot(screenshots)
    mei = phone
    authenticator_factory(mei)

    # Mei signs up, then becomes a merchant: her own wallet is the payout wallet.
    sign_up(mei, base_url, "Mei Lin", "mei@example.com")
    mei.goto(f"{base_url}/merchant")
    expect(mei.get_by_role("heading", name="Take payments in your shop")).to_be_visible()
    shot(mei, "merchant-signup")
    mei.get_by_role("button", name="Start taking payments").click()
    expect(mei.locator("[role=alert]")).to_contain_text("Enter your business's name")
    mei.get_by_label("Business name").fill("Lantau Tea Ltd")
    mei.get_by_role("button", name="Start taking payments").click()
    expect(mei).to_have_url(f"{base_url}/merchant/stores/new")
    mei.get_by_label("Store name").fill("Lantau Tea House")
    mei.get_by_label("Country").fill("HK")
    mei.get_by_label("Prices in").select_option("HKD")
    mei.get_by_label("Address (optional)").fill("12 Tai O Road, Lantau")
    shot(mei, "store-new")
    mei.get_by_role("button", name="Add store").click()
    expect(mei).to_have_url(
        re.compile(rf"{re.escape(base_url)}/merchant/stores/[0-9a-f]{{32}}/terminals$")
    )
    store_id = mei.url.split("/")[-2]
    mei.get_by_label("Name").fill("Tea bar")
    mei.get_by_role("button", name="Add").click()
    expect(mei.locator(".list-item")).to_have_count(2)
    shot(mei, "terminals")
    pos_url = mei.get_by_role("link", name=re.compile("Open.*Counter 1")).get_attribute("href")
    assert pos_url
    assert re.fullmatch(r"/pos/[0-9a-f]{32}", pos_url)

    # A webhook endpoint (the test's receiver), its secret shown once; a test event arrives.
    mei.goto(f"{base_url}/merchant/stores/{store_id}/developers")
    mei.get_by_label("Endpoint URL").fill(receiver.url)
    for box in mei.locator("input[name=events]").all():
        box.uncheck()
    mei.get_by_label(re.compile("Paid: the money reached")).check()
    mei.get_by_label(re.compile("Refund reached the customer")).check()
    mei.get_by_role("button", name="Add endpoint").click()
    secret = (mei.locator("[data-secret-value]").text_content() or "").strip()
    assert secret.startswith("whsec_")
    shot(mei, "webhook-secret")
    mei.get_by_role("button", name="Send test event").click()
    expect(mei.locator(".delivery").first).to_contain_text("200")
    assert receiver.events("webhook.test"), "the test event did not arrive"
    mei.goto(f"{base_url}/merchant/stores/{store_id}/developers")
    expect(mei.locator("[data-secret-value]")).to_have_count(0)  # shown once only
    mei.locator("details", has_text="Create an API key").locator("summary").click()
    mei.get_by_label("Name", exact=True).fill("web shop")
    mei.get_by_role("button", name="Create key").click()
    expect(mei.locator("[data-secret-value]")).to_contain_text("swk_")
    shot(mei, "developers")

    # Bob: a customer with test money, on his own phone.
    bob = new_phone()
    authenticator_factory(bob)
    sign_up(bob, base_url, "Bob Chan", "bob@example.com")
    bob.goto(f"{base_url}/home")
    bob.get_by_role("button", name="Get test money").click()
    expect(bob.get_by_text("Test money added")).to_be_visible()

    with live.running_worker() as worker:
        assert worker is not None, "the worker (relayer and follower) is needed"

        # The counter's tablet: the keypad, then the sale's QR code.
        counter = tablet(mei)
        counter.goto(f"{base_url}{pos_url}")
        expect(counter.locator("[data-amount-display]")).to_have_text("HK$0.00")
        expect(counter.locator("[data-charge]")).to_be_disabled()
        for key in "9725":
            counter.locator(f"[data-key='{key}']").click()
        expect(counter.locator("[data-amount-display]")).to_have_text("HK$97.25")
        counter.get_by_text("Add a note or order number").click()
        counter.get_by_label("Order number (optional)").fill("A-1024")
        counter.get_by_label("Note (optional)").fill("Table 7")
        screenshots(counter, "pos-keypad-tablet")
        counter.locator("[data-charge]").dblclick()  # a double tap makes one sale
        sale = counter.locator("[data-sale-view]")
        expect(sale).to_have_attribute("data-state", "waiting")
        expect(sale).to_contain_text("HK$97.25")
        expect(sale).to_contain_text("USDC")
        expect(sale.locator(".sale-qr svg.qr-code")).to_be_visible()
        expect(sale.locator("[data-countdown-text]")).to_contain_text(
            re.compile(r"Expires in [12]:\d\d")
        )
        screenshots(counter, "pos-qr-tablet")
        invoice_id = sale.get_attribute("data-invoice")
        assert invoice_id
        assert re.fullmatch(r"0x[0-9a-f]{64}", invoice_id)
        pay_code = counter.locator(".sale-link:not([data-deposit]) code")
        pay_link = (pay_code.text_content() or "").strip()
        assert pay_link == f"{base_url}/pay/{invoice_id}"
        listed = mei.request.get(f"{base_url}/v1/stores/{store_id}/invoices").json()["invoices"]
        assert [i["id"] for i in listed] == [invoice_id], "the double tap made a second sale"
        assert listed[0]["order_id"] == "A-1024"

        # Bob opens the link: the shop, the amount in HKD and USDC, the fee, his balance.
        bob.goto(pay_link)
        expect(bob.get_by_role("heading", name="Lantau Tea House")).to_be_visible()
        expect(bob.locator("[data-pay-price]")).to_have_text("HK$97.25")
        expect(bob.locator(".pay-card")).to_contain_text("USDC")
        expect(bob.locator(".pay-card")).to_contain_text("paid by the shop")
        expect(bob.locator(".pay-card")).to_contain_text("100.00")
        shot(bob, "pay")
        bob.get_by_role("button", name=re.compile("Pay HK\\$97.25")).click()
        headline = bob.locator("[data-pay-headline]")
        expect(headline).to_have_text(re.compile("Paying…|Paid"))
        shot(bob, "pay-processing")
        expect(counter.locator("[data-sale-view]")).to_have_attribute(
            "data-state", re.compile("processing|paid")
        )

        # Settled on-chain: the phone says so, the tablet turns green with its receipt.
        expect(headline).to_have_text("Paid", timeout=SETTLE_TIMEOUT_MS)
        shot(bob, "pay-success")
        expect(counter.locator("[data-sale-view]")).to_have_attribute(
            "data-state", "paid", timeout=SETTLE_TIMEOUT_MS
        )
        expect(counter.locator("body")).to_have_class(re.compile("pos-paid"))
        receipt = counter.locator(".receipt")
        expect(receipt).to_contain_text("HK$97.25")
        expect(receipt).to_contain_text("Fee")
        expect(receipt).to_contain_text("Transaction")
        screenshots(counter, "pos-paid-tablet")

        # The webhook: invoice.settled, signed with the endpoint's secret.
        wait_for(lambda: bool(receiver.events("invoice.settled")), mei, SETTLE_TIMEOUT_MS)
        settled = receiver.events("invoice.settled")[0]
        headers = {k.lower(): v for k, v in settled["headers"].items()}
        assert verify_signature(secret, headers[SIGNATURE_HEADER.lower()], settled["body"])
        assert not verify_signature(
            secret, headers[SIGNATURE_HEADER.lower()], settled["body"] + b" "
        )
        assert json.loads(settled["body"])["data"]["invoice"]["id"] == invoice_id

        # Mei's dashboard: the payment, its totals; then a partial refund with her passkey.
        mei.goto(f"{base_url}/merchant/stores/{store_id}")
        row = mei.locator(f"tr[data-invoice='{invoice_id}']")
        expect(row).to_contain_text("Order A-1024")
        expect(row).to_contain_text("Paid")
        expect(mei.locator("[data-total-gross]")).to_contain_text("USDC")
        expect(mei.locator(".chart-bar")).to_have_count(1)
        shot(mei, "dashboard")
        mei.get_by_label("Search").fill("A-1024")
        mei.get_by_role("button", name="Show payments").click()
        expect(mei.locator("tr[data-invoice]")).to_have_count(1)
        row.locator("a").click()
        expect(mei).to_have_url(f"{base_url}/merchant/invoices/{invoice_id}")
        expect(mei.locator(".events")).to_contain_text("invoice.settled")
        shot(mei, "invoice")
        mei.get_by_role("link", name="Refund").click()
        amount = mei.get_by_label("Amount in USDC")
        full = amount.input_value()
        amount.fill("5")
        mei.get_by_label("Reason (optional)").fill("One cup was cold")
        shot(mei, "refund")
        mei.get_by_role("button", name="Refund with passkey").click()
        expect(mei).to_have_url(f"{base_url}/merchant/invoices/{invoice_id}")
        refund = mei.locator("[data-refund]").first
        expect(refund).to_contain_text("5.00")
        expect(refund).to_contain_text(re.compile("Sending|Refunded"))
        assert full != "5"
        expect(refund).to_contain_text("Refunded", timeout=SETTLE_TIMEOUT_MS)
        mei.reload()
        expect(mei.locator(".invoice-status")).to_contain_text("Partly refunded")
        shot(mei, "invoice-refunded")
        wait_for(lambda: bool(receiver.events("refund.settled")), mei, SETTLE_TIMEOUT_MS)

        # The settlement report: one payment, its gross, fee and the refund.
        mei.goto(f"{base_url}/merchant/stores/{store_id}")
        expect(mei.locator("[data-total-refunds]")).to_contain_text("5.00")
        report_url = mei.get_by_role("link", name="Report (CSV)").get_attribute("href")
        assert report_url
        text = mei.request.get(f"{base_url}{report_url}").text()
        rows = list(csv.DictReader(io.StringIO(text)))
        assert len(rows) == 1, text
        assert rows[0]["count"] == "1"
        assert rows[0]["token"] == "USDC"
        assert rows[0]["gross"] == listed[0]["amount"]
        assert rows[0]["refunds"] == "5.00"
        shot(mei, "dashboard-after-refund")

        # Kit, a manager, refunds with a passkey of his own on his phone, once Mei approved it.
        kit = new_phone()
        authenticator_factory(kit)
        sign_up(kit, base_url, "Kit Wong", "kit@example.com")
        mei.goto(f"{base_url}/merchant/team")
        mei.get_by_label("Their e-mail").fill("kit@example.com")
        mei.get_by_label("Role").select_option("manager")
        mei.get_by_role("button", name="Add to the team").click()
        expect(mei.locator("[data-staff]")).to_have_count(2)
        kit.goto(f"{base_url}/merchant/invoices/{invoice_id}/refund")
        expect(kit.get_by_role("button", name="Ask the owner to refund")).to_be_visible()
        shot(kit, "refund-passkey-offer")
        kit.get_by_role("button", name="Set up a refund passkey").click()
        expect(kit.locator("[data-refund-passkey='awaiting_owner']")).to_be_visible()
        shot(kit, "refund-passkey-waiting")
        mei.goto(f"{base_url}/merchant/team")
        approver = mei.locator("[data-approver]")
        expect(approver).to_have_attribute("data-status", "awaiting_owner")
        expect(approver).to_contain_text("Kit Wong")
        expect(approver).to_contain_text("500.00")
        shot(mei, "team-refund-passkey")
        approver.get_by_role("button", name="Approve with passkey").click()
        expect(mei.locator("[data-approver]")).to_have_attribute("data-status", "active")
        shot(mei, "team-refund-passkey-active")
        kit.reload()
        kit.get_by_label("Amount in USDC").fill("2")
        kit.get_by_label("Reason (optional)").fill("Spilt tea")
        expect(kit.locator(".fine-print").first).to_contain_text("your refund passkey")
        shot(kit, "refund-by-manager")
        kit.get_by_role("button", name="Refund with passkey").click()
        expect(kit).to_have_url(f"{base_url}/merchant/invoices/{invoice_id}")
        by_kit = kit.locator("[data-refund]", has_text="Spilt tea")
        expect(by_kit).to_contain_text(re.compile("Sending|Refunded"))
        expect(by_kit).to_contain_text("Refunded", timeout=SETTLE_TIMEOUT_MS)

        # The counter starts the next sale.
        counter.get_by_role("button", name="New sale").click()
        expect(counter.locator("[data-amount-display]")).to_have_text("HK$0.00")
        expect(counter.locator("body")).not_to_have_class(re.compile("pos-paid"))

    # The pages at phone size in Chinese and in the dark, the POS on the phone too.
    use_language(mei, base_url, "zh_Hant")
    mei.goto(f"{base_url}{pos_url}")
    for key in "42":
        mei.locator(f"[data-key='{key}']").click()
    shot(mei, "zh-pos-keypad")
    mei.locator("[data-charge]").click()
    expect(mei.locator("[data-sale-view]")).to_have_attribute("data-state", "waiting")
    shot(mei, "zh-pos-qr")
    mei.goto(f"{base_url}/merchant/team")
    shot(mei, "zh-team")
    mei.goto(f"{base_url}/merchant/stores/{store_id}")
    shot(mei, "zh-dashboard")
    use_language(bob, base_url, "fr")
    bob.goto(pay_link)
    shot(bob, "fr-pay-done")
    mei.emulate_media(color_scheme="dark")
    mei.goto(f"{base_url}/merchant/invoices/{invoice_id}")
    shot(mei, "zh-dark-invoice")


def test_the_pay_screen_says_why_an_invoice_cannot_be_paid(
    shop: tuple[str, MoneyWallet],
    tablet: Callable[[Page], Page],
    phone: Page,
    new_phone: Callable[[], Page],
    authenticator_factory: Callable[..., VirtualAuthenticator],
    screenshots: Callable[[Page, str], Path],
) -> None:
    """Signed out → sign in and back; no money → says so; expired → says so; the POS too."""
    base_url, _live = shop
    shot = page_shot(screenshots)
    mei = phone
    authenticator_factory(mei)
    sign_up(mei, base_url, "Mei Lin", "mei@example.com")
    csrf = mei.locator("meta[name=csrf-token]").get_attribute("content") or ""
    merchant = mei.request.post(
        f"{base_url}/v1/merchants",
        data={"name": "Lantau Tea Ltd", "settlement_token": "USDC"},
        headers={"X-CSRF-Token": csrf},
    )
    assert merchant.status == 201, merchant.text()
    store = mei.request.post(
        f"{base_url}/v1/merchants/{merchant.json()['id']}/stores",
        data={"name": "Lantau Tea House", "country": "HK", "currency": "HKD"},
        headers={"X-CSRF-Token": csrf},
    ).json()
    terminal = mei.request.post(
        f"{base_url}/v1/stores/{store['id']}/terminals",
        data={"name": "Counter 1"},
        headers={"X-CSRF-Token": csrf},
    ).json()

    def invoice(amount: str, seconds: int | None = None) -> str:
        body: dict[str, Any] = {"amount": amount, "terminal_id": terminal["id"]}
        if seconds is not None:
            body["expires_in_seconds"] = seconds
        answer = mei.request.post(
            f"{base_url}/v1/stores/{store['id']}/invoices",
            data=body,
            headers={"X-CSRF-Token": csrf},
        )
        assert answer.status == 201, answer.text()
        return str(answer.json()["id"])

    # Signed out: the invoice, and sign-in buttons that come back to it.
    bob = new_phone()
    authenticator_factory(bob)
    unpaid = invoice("38.50")
    bob.goto(f"{base_url}/pay/{unpaid}")
    expect(bob.get_by_role("heading", name="Sign in to pay")).to_be_visible()
    expect(bob.locator("[data-pay-price]")).to_have_text("HK$38.50")
    shot(bob, "pay-signed-out")
    sign_in = bob.get_by_role("link", name=re.compile("Development sign-in"))
    assert f"next=%2Fpay%2F{unpaid}" in (sign_in.get_attribute("href") or "")
    sign_up(bob, base_url, "Bob Chan", "bob@example.com")

    # No money yet: the balance, in words, and no button to press.
    bob.goto(f"{base_url}/pay/{unpaid}")
    expect(bob.locator("[data-insufficient]")).to_contain_text("Not enough USDC")
    expect(bob.locator("[data-pay]")).to_be_disabled()
    shot(bob, "pay-insufficient")

    # A request that expires while it is on screen.
    short = invoice("12.00", seconds=15)
    bob.goto(f"{base_url}/pay/{short}")
    expect(bob.get_by_role("heading", name="This payment request has expired")).to_be_visible(
        timeout=25_000
    )
    shot(bob, "pay-expired")
    counter = tablet(mei)
    counter.goto(f"{base_url}/pos/{terminal['id']}")
    counter.locator("[data-key='5']").click()
    screenshots(counter, "pos-keypad-small-amount")

    # Someone else's counter is not found, in words; the pay page of nothing, too.
    response = bob.goto(f"{base_url}/pos/{terminal['id']}")
    assert response is not None
    assert response.status == 404
    expect(bob.get_by_role("heading", name="Not found")).to_be_visible()
    shot(bob, "pos-stranger")
    response = bob.goto(f"{base_url}/pay/0x{'ab' * 32}")
    assert response is not None
    assert response.status == 404
