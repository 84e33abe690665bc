"""Sending and receiving stablecoins in the wallet app: Debian's Chromium, virtual passkeys, the
local anvil chain, a real signer and the worker that relays signed transfers.

One story on two phones: Ada and Bob sign up (Bob with his phone number, which the development
provider vouches for), Ada gets test money, sends 12.50 USDC to Bob's phone number, reviews it,
approves it with her passkey and watches it complete; Bob finds it in his history. Then the other
money pages: receive (a QR code of an EIP-681 request), request (a link that opens the pay screen
filled in, tried on Bob's phone), history; and the same pages in the dark, in Chinese and French.
Every page is saved under ``test-artifacts/screenshots/``.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from playwright.sync_api import Page, expect
from tests.e2e.web_helpers import settings_for, start_signer
from tests.fixtures.browser import VirtualAuthenticator, serve_app_at
from tests.fixtures.processes import die_with_parent
from tests.fixtures.signer import SignerProcess

from seiwallet.api.app import create_app
from seiwallet.api.services import Services
from seiwallet.chain.localnet import LocalChain
from seiwallet.config import LocalChainSettings, SignerSettings

pytestmark = pytest.mark.chain

BOB_PHONE = "+852 9123 4567"
BOB_E164 = "+85291234567"
#: How long the worker may take to relay and confirm a transfer on the automining chain.
COMPLETION_TIMEOUT_MS = 30_000
HAS_RELAYER = importlib.util.find_spec("seiwallet.transfers.relayer") is not None


class MoneyWallet:
    """The API process on localhost for the browser, with a signer, the chain and a database."""

    def __init__(self, tmp_path: Path, chain: LocalChain) -> None:
        self.tmp_path = tmp_path
        self.chain = chain
        self.database_url = f"sqlite:///{tmp_path / 'wallet.sqlite3'}"
        self.signer: SignerProcess | None = None
        self.services: Services | None = None
        self.worker: subprocess.Popen[bytes] | None = None

    def make(self, base_url: str) -> Any:
        manifest = self.tmp_path / "deployments" / "local.json"
        manifest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(self.chain.settings.deployment_manifest_path, manifest)
        self.signer = start_signer(self.tmp_path / "signer-home", origin=base_url)
        settings = settings_for(self.tmp_path, self.database_url, origin=base_url).model_copy(
            update={
                "signer": SignerSettings(
                    socket=self.signer.socket, secret=self.signer.secret, origins=[base_url]
                ),
                "local_chain": LocalChainSettings(port=self.chain.settings.local_chain.port),
            }
        )
        app = create_app(settings)
        self.services = app.state.services
        return app

    @contextlib.contextmanager
    def running_worker(self) -> Iterator[subprocess.Popen[bytes] | None]:
        """``seiwallet worker`` (relayer and follower) on the same database and chain."""
        if not HAS_RELAYER:
            yield None
            return
        env = {k: v for k, v in os.environ.items() if not k.startswith("SEIWALLET_")}
        env.update(
            SEIWALLET_PROFILE="local",
            SEIWALLET_DATA_DIR=str(self.tmp_path),
            SEIWALLET_DATABASE_URL=self.database_url,
            SEIWALLET_LOCAL_CHAIN__PORT=str(self.chain.settings.local_chain.port),
        )
        log_path = self.tmp_path / "worker.log"
        with log_path.open("ab") as log:
            self.worker = subprocess.Popen(
                [sys.executable, "-m", "seiwallet", "worker"],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                preexec_fn=die_with_parent,  # noqa: PLW1509 - prctl only, no locks taken
            )
        try:
            yield self.worker
        finally:
            self.worker.terminate()
            try:
                self.worker.wait(timeout=15)
            except subprocess.TimeoutExpired:  # pragma: no cover - a hung worker
                self.worker.kill()
                self.worker.wait(timeout=5)
            print(f"[worker log]\n{log_path.read_text(errors='replace')[-4000:]}")

    def close(self) -> None:
        if self.signer is not None:
            self.signer.stop()


@pytest.fixture
def money_wallet(tmp_path: Path, clean_chain: LocalChain) -> Iterator[tuple[str, MoneyWallet]]:
    live = MoneyWallet(tmp_path, clean_chain)
    try:
        with serve_app_at(live.make) as base_url:
            yield base_url, live
    finally:
        live.close()


def sign_up(page: Page, base_url: str, name: str, email: str, phone: str | None = None) -> None:
    """A new person through the development provider, with a passkey on this phone."""
    page.goto(base_url)
    page.get_by_role("link", name=re.compile("Development sign-in")).click()
    page.locator("input[name=new_name]").fill(name)
    page.locator("input[name=new_email]").fill(email)
    if phone:
        page.locator("input[name=new_phone]").fill(phone)
    page.get_by_role("button", name="Create and sign in").click()
    expect(page).to_have_url(f"{base_url}/setup/passkey")
    page.locator("[data-passkey-register]").click()
    expect(page).to_have_url(f"{base_url}/setup/ready")


def page_shot(screenshots: Callable[[Page, str], Path]) -> Callable[[Page, str], Path]:
    """``screenshots`` of the whole page as a tall phone shows it: the header at the top and the
    tab bar at the bottom (a plain full-page capture leaves sticky bars where the screen ended)."""

    def shot(page: Page, label: str) -> Path:
        page.evaluate("window.scrollTo(0, 0)")
        viewport = page.viewport_size or {"width": 390, "height": 844}
        height = int(page.evaluate("document.documentElement.scrollHeight"))
        page.set_viewport_size({"width": viewport["width"], "height": max(height, 844)})
        try:
            return screenshots(page, label)
        finally:
            page.set_viewport_size(viewport)

    return shot


def use_language(page: Page, base_url: str, code: str) -> None:
    page.context.add_cookies([{"name": "lang", "value": code, "url": base_url}])


def test_send_to_a_phone_number_approve_with_a_passkey_and_follow_it(
    money_wallet: tuple[str, MoneyWallet],
    phone: Page,
    new_phone: Callable[[], Page],
    authenticator_factory: Callable[..., VirtualAuthenticator],
    screenshots: Callable[[Page, str], Path],
) -> None:
    base_url, live = money_wallet
    screenshots = page_shot(screenshots)
    ada = phone
    authenticator_factory(ada)
    bob = new_phone()
    authenticator_factory(bob)

    sign_up(ada, base_url, "Ada Lovelace", "ada@example.com")
    sign_up(bob, base_url, "Bob Chan", "bob@example.com", BOB_PHONE)

    # Ada's home: real (empty) balances from the chain, then test money.
    ada.goto(f"{base_url}/home")
    usdc = ada.locator("[data-balance=USDC]")
    expect(usdc).to_contain_text("0.00")
    expect(ada.get_by_role("link", name="Send", exact=True).first).to_be_visible()
    screenshots(ada, "home-empty")
    ada.get_by_role("button", name="Get test money").click()
    expect(ada).to_have_url(f"{base_url}/home")
    expect(ada.get_by_text("Test money added")).to_be_visible()
    expect(usdc).to_contain_text("100.00")
    expect(ada.locator("[data-balance=EURC]")).to_contain_text("100.00")
    expect(ada.locator("[data-total]")).to_contain_text("$")
    screenshots(ada, "home-funded")

    # Send: a number that cannot be anyone's first — refused next to the form, in words. (A
    # well-formed number nobody verified is an invitation now: tests/e2e/test_web_transfers.py.)
    ada.get_by_role("navigation", name="Money").get_by_role("link", name="Send").click()
    expect(ada).to_have_url(f"{base_url}/send")
    expect(ada.locator("label[for=send-token-usdc]")).to_contain_text("100.00")
    ada.get_by_label("To", exact=True).fill("+852 98")
    ada.get_by_label("Amount").fill("12.50")
    expect(ada.locator("[data-amount-value]")).to_contain_text("$12.50")
    ada.get_by_role("button", name="Review").click()
    error = ada.locator("[data-step=form] [data-error]")
    expect(error).to_contain_text("Enter a phone number with its country code")
    expect(ada.get_by_label("To", exact=True)).to_have_attribute("aria-invalid", "true")
    screenshots(ada, "send-error")

    # Then Bob, by the phone number he signed up with; a double tap sends once.
    ada.get_by_label("To", exact=True).fill(BOB_PHONE)
    ada.get_by_label("Note (optional)").fill("Dim sum")
    screenshots(ada, "send-form")
    review_button = ada.get_by_role("button", name="Review")
    review_button.dblclick()
    review = ada.locator("[data-step=review]")
    expect(review).to_be_visible()
    expect(review.locator("[data-review-amount]")).to_have_text("12.50 USDC")
    expect(review.locator("[data-review-recipient]")).to_have_text(BOB_PHONE)
    expect(review.locator("[data-review-address]")).to_have_text(re.compile(r"^0x[0-9a-fA-F]{4}…"))
    expect(review).to_contain_text("Paid by seiwallet")
    expect(review).to_contain_text("Dim sum")
    screenshots(ada, "review")

    # Approve with the passkey → the transfer's own page, following it live.
    ada.get_by_role("button", name="Approve with passkey").click()
    expect(ada).to_have_url(re.compile(rf"{re.escape(base_url)}/transfers/[0-9a-f]{{32}}$"))
    transfer_id = ada.url.rsplit("/", 1)[1]
    headline = ada.locator("[data-status-headline]")
    expect(headline).to_have_text(re.compile("Approved|Sent to the network|Completed"))
    expect(ada.locator(".tx-hero-amount")).to_contain_text("12.50")
    expect(ada.get_by_text("Paid by seiwallet")).to_be_visible()
    screenshots(ada, "detail-approved")
    mine = ada.request.get(f"{base_url}/v1/transfers").json()["transfers"]
    assert [t["id"] for t in mine] == [transfer_id], "the double tap made a second transfer"
    assert mine[0]["recipient"] == BOB_E164

    with live.running_worker() as worker:
        if worker is not None:
            # The relayer submits it and the follower confirms it: the page follows by itself.
            expect(headline).to_have_text("Completed", timeout=COMPLETION_TIMEOUT_MS)
            expect(ada.locator(".step-done")).to_have_count(3)
            expect(ada.get_by_text("Transaction", exact=True)).to_be_visible()
        else:  # pragma: no cover - before the relayer existed
            expect(headline).to_have_text("Approved")
        screenshots(ada, "detail-final")

        # Bob's side: it is in his history, and on his home.
        bob.goto(f"{base_url}/history")
        item = bob.locator(".tx-item").first
        expect(item).to_contain_text("+12.50")
        expect(item).to_contain_text("USDC")
        if worker is not None:
            bob.goto(f"{base_url}/home")
            expect(bob.locator("[data-balance=USDC]")).to_contain_text("12.50")
            screenshots(bob, "bob-home")
            bob.goto(f"{base_url}/history")
        screenshots(bob, "bob-history")
        bob.locator(".tx-item").first.click()
        if worker is not None:
            expect(bob.get_by_role("heading", name="You received")).to_be_visible()
            expect(bob.locator("[data-status-headline]")).to_have_text("Completed")
        else:  # pragma: no cover - before the relayer existed
            expect(bob.get_by_role("heading", name="On its way to you")).to_be_visible()
        screenshots(bob, "bob-detail")

        # Ada's history, and the CSV of it.
        ada.goto(f"{base_url}/history")
        expect(ada.locator(".tx-item").first).to_contain_text("+852")
        expect(ada.locator(".tx-item").first).to_contain_text("\u221212.50")
        csv_text = ada.request.get(f"{base_url}/v1/transfers.csv").text()
        assert BOB_E164 in csv_text
        assert "12.5" in csv_text
        screenshots(ada, "history")
        if worker is not None:
            ada.goto(f"{base_url}/home")
            expect(ada.locator("[data-balance=USDC]")).to_contain_text("87.50")
            expect(ada.locator(".tx-item").first).to_contain_text("\u221212.50")
            screenshots(ada, "home-after")

    # Receive: addresses, and a QR code of an EIP-681 request for an amount.
    ada.goto(f"{base_url}/receive")
    expect(ada.locator("svg.qr-code")).to_be_visible()
    ada.get_by_label("Amount (optional)").fill("5")
    ada.get_by_role("button", name="Update").click()
    expect(ada.get_by_text("Scan to pay 5.00")).to_be_visible()
    uri = (ada.locator("details.disclosure code").text_content() or "").strip()
    assert re.fullmatch(
        r"ethereum:0x[0-9a-fA-F]{40}@713715/transfer\?address=0x[0-9a-fA-F]{40}&uint256=5000000",
        uri,
    ), uri
    expect(ada.get_by_text("Only USDC or EURC on the Sei network")).to_be_visible()
    screenshots(ada, "receive")

    # Request: a link (and its QR code) that opens the pay screen filled in.
    ada.goto(f"{base_url}/request")
    ada.locator("label[for=request-token-eurc]").click()
    ada.get_by_label("Amount").fill("20")
    ada.get_by_label("Note (optional)").fill("Concert tickets")
    ada.get_by_role("button", name="Create link").click()
    link = ada.locator("#request-link").inner_text()
    assert link.startswith(f"{base_url}/send?")
    query = parse_qs(urlsplit(link).query)
    assert query["token"] == ["EURC"]
    assert query["amount"] == ["20.00"]
    assert query["note"] == ["Concert tickets"]
    expect(ada.locator("[data-request-result] svg.qr-code")).to_be_visible()
    screenshots(ada, "request")
    bob.goto(link)
    expect(bob.get_by_label("To", exact=True)).to_have_value(query["to"][0])
    expect(bob.locator("#send-token-eurc")).to_be_checked()
    expect(bob.get_by_label("Amount")).to_have_value("20.00")
    expect(bob.get_by_label("Note (optional)")).to_have_value("Concert tickets")
    screenshots(bob, "pay-a-request")

    # The same pages in the dark, in Chinese (HKD) and French (EUR).
    ada.emulate_media(color_scheme="dark")
    for page_path, label in (
        ("/home", "home"),
        ("/send", "send"),
        (f"/transfers/{transfer_id}", "detail"),
        ("/history", "history"),
        ("/receive?token=USDC&amount=5", "receive"),
        ("/request?token=USDC&amount=20&note=Dinner", "request"),
    ):
        ada.goto(f"{base_url}{page_path}")
        screenshots(ada, f"dark-{label}")
    use_language(ada, base_url, "zh_Hant")
    ada.goto(f"{base_url}/home")
    expect(ada.locator("[data-total]")).to_contain_text("HK$")
    for page_path, label in (
        ("/home", "home"),
        ("/send", "send"),
        (f"/transfers/{transfer_id}", "detail"),
        ("/history", "history"),
        ("/receive", "receive"),
    ):
        ada.goto(f"{base_url}{page_path}")
        screenshots(ada, f"zh-dark-{label}")
    ada.emulate_media(color_scheme="light")
    for page_path, label in (("/home", "home"), ("/send", "send"), ("/request", "request")):
        ada.goto(f"{base_url}{page_path}")
        screenshots(ada, f"zh-{label}")
    use_language(ada, base_url, "fr")
    ada.goto(f"{base_url}/home")
    expect(ada.locator("[data-total]")).to_contain_text("€")
    screenshots(ada, "fr-home")
    ada.goto(f"{base_url}/send?to=%2B85291234567&amount=3")
    expect(ada.get_by_label("À", exact=True)).to_have_value(BOB_E164)
    ada.get_by_label("Montant").fill("3,25")
    expect(ada.locator("[data-amount-value]")).to_contain_text("€")
    screenshots(ada, "fr-send")
    ada.goto(f"{base_url}/transfers/{transfer_id}")
    screenshots(ada, "fr-detail")


def test_editing_after_review_is_a_new_payment_and_an_unapproved_one_can_be_approved_later(
    money_wallet: tuple[str, MoneyWallet],
    phone: Page,
    new_phone: Callable[[], Page],
    authenticator_factory: Callable[..., VirtualAuthenticator],
    screenshots: Callable[[Page, str], Path],
) -> None:
    base_url, _live = money_wallet
    screenshots = page_shot(screenshots)
    ada = phone
    authenticator_factory(ada)
    bob = new_phone()
    authenticator_factory(bob)
    sign_up(ada, base_url, "Ada Lovelace", "ada@example.com")
    sign_up(bob, base_url, "Bob Chan", "bob@example.com")
    ada.goto(f"{base_url}/home")
    ada.get_by_role("button", name="Get test money").click()
    expect(ada.get_by_text("Test money added")).to_be_visible()

    # Too much first: the server's answer, in words, next to the form.
    ada.goto(f"{base_url}/send?token=EURC")
    ada.get_by_label("To", exact=True).fill("bob@example.com")
    ada.get_by_label("Amount").fill("150")
    ada.get_by_role("button", name="Review").click()
    expect(ada.locator("[data-step=form] [data-error]")).to_contain_text(
        "Not enough EURC: you can send up to 100.00 EURC."
    )
    ada.get_by_label("Amount").fill("7")
    key = ada.locator("[data-idempotency-key]").input_value()
    ada.get_by_role("button", name="Review").click()
    expect(ada.locator("[data-review-amount]")).to_have_text("7.00 EURC")
    expect(ada.locator("[data-review-recipient]")).to_have_text("bob@example.com")

    # Back to the form (the phone's back gesture): a changed payment is a new one.
    ada.go_back()
    expect(ada.locator("[data-step=form]")).to_be_visible()
    assert ada.locator("[data-idempotency-key]").input_value() != key
    ada.get_by_label("Amount").fill("8")
    ada.get_by_role("button", name="Review").click()
    expect(ada.locator("[data-review-amount]")).to_have_text("8.00 EURC")
    mine = ada.request.get(f"{base_url}/v1/transfers").json()["transfers"]
    assert sorted(t["amount"] for t in mine) == ["7", "8"]
    assert {t["status"] for t in mine} == {"awaiting_approval"}

    # The first one, left unapproved, waits on its own page with its button.
    first = next(t for t in mine if t["amount"] == "7")
    ada.goto(f"{base_url}/transfers/{first['id']}")
    expect(ada.locator("[data-status-headline]")).to_have_text("Waiting for your approval")
    screenshots(ada, "detail-awaiting")
    ada.get_by_role("button", name="Approve with passkey").click()
    expect(ada.locator("[data-status-headline]")).to_have_text(
        re.compile("Approved|Sent to the network|Completed")
    )
    ada.goto(f"{base_url}/history")
    expect(ada.locator(".tx-item")).to_have_count(2)
    expect(ada.locator(".tx-item", has_text="8.00")).to_contain_text("Needs approval")
    screenshots(ada, "history-mixed")


def test_the_money_pages_wait_for_the_chain_rather_than_fail(
    tmp_path: Path,
    phone: Page,
    authenticator_factory: Callable[..., VirtualAuthenticator],
    screenshots: Callable[[Page, str], Path],
) -> None:
    """With no chain at all, home says balances are delayed; nothing is a server error."""
    screenshots = page_shot(screenshots)
    signer: SignerProcess | None = None

    def make(base_url: str) -> Any:
        nonlocal signer
        signer = start_signer(tmp_path / "signer-home", origin=base_url)
        settings = settings_for(
            tmp_path, f"sqlite:///{tmp_path / 'w.sqlite3'}", origin=base_url
        ).model_copy(
            update={
                "signer": SignerSettings(
                    socket=signer.socket, secret=signer.secret, origins=[base_url]
                ),
                # Nothing listens there, and there is no deployment manifest either.
                "local_chain": LocalChainSettings(port=1),
            }
        )
        return create_app(settings)

    try:
        with serve_app_at(make) as base_url:
            authenticator_factory(phone)
            sign_up(phone, base_url, "Grace Hopper", "grace@example.com")
            started = time.monotonic()
            phone.goto(f"{base_url}/home")
            assert time.monotonic() - started < 8
            expect(phone.locator("[data-balances-delayed]")).to_contain_text("Balances are delayed")
            expect(phone.locator("[data-total]")).to_contain_text("—")
            screenshots(phone, "home-delayed")
            for path in ("/send", "/receive", "/request", "/history"):
                response = phone.goto(f"{base_url}{path}")
                assert response is not None
                assert response.status == 200, path
            screenshots(phone, "history-empty")
            # Test money needs the chain too: a readable notice, not an error page.
            phone.goto(f"{base_url}/home")
            phone.get_by_role("button", name="Get test money").click()
            expect(phone).to_have_url(f"{base_url}/home")
            expect(phone.get_by_text("no test money was added")).to_be_visible()
    finally:
        if signer is not None:
            signer.stop()
