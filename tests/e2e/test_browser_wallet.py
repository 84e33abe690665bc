"""The wallet app in Debian's Chromium on a phone-sized screen, with virtual passkeys.

One story, as a person lives it: sign in through the development provider, enrol the passkey,
see the wallet's addresses, sign out and back in, then lose the phone — a new phone signs in,
proves the e-mailed code, enrols a passkey that waits out the time-lock, and the old phone
(found again) sees the warning and cancels it with its own passkey. A screenshot of every page
is saved under ``test-artifacts/screenshots/``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Page, expect
from tests.e2e.web_helpers import settings_for, start_signer
from tests.fixtures.browser import VirtualAuthenticator, serve_app_at
from tests.fixtures.signer import SignerProcess

from seiwallet.api.app import create_app
from seiwallet.api.services import Services
from seiwallet.config import SignerSettings


class LiveWallet:
    """The API process served on localhost for the browser, with a real signer behind it."""

    def __init__(self, tmp_path: Path) -> None:
        self.tmp_path = tmp_path
        self.signer: SignerProcess | None = None
        self.services: Services | None = None

    def make(self, base_url: str) -> Any:
        self.signer = start_signer(self.tmp_path / "signer-home", origin=base_url)
        settings = settings_for(
            self.tmp_path, f"sqlite:///{self.tmp_path / 'wallet.sqlite3'}", origin=base_url
        ).model_copy(
            update={
                "signer": SignerSettings(
                    socket=self.signer.socket,
                    secret=self.signer.secret,
                    origins=[base_url],
                )
            }
        )
        # The app builds and owns its clients, and closes them when the server stops.
        app = create_app(settings)
        self.services = app.state.services
        return app

    def latest_code(self, to: str) -> str:
        assert self.services is not None
        assert self.services.mailbox is not None
        for message in self.services.mailbox.messages(20, recipient=to):
            if message.subject == "Your seiwallet recovery code":
                found = re.search(r"\b(\d{6})\b", message.body)
                assert found
                return found.group(1)
        raise AssertionError(f"no code was sent to {to}")

    def close(self) -> None:
        if self.signer is not None:
            self.signer.stop()


@pytest.fixture
def wallet_url(tmp_path: Path) -> Iterator[tuple[str, LiveWallet]]:
    live = LiveWallet(tmp_path)
    try:
        with serve_app_at(live.make) as base_url:
            yield base_url, live
    finally:
        live.close()


def sign_in(page: Page, base_url: str, *, new: tuple[str, str] | None = None) -> None:
    page.goto(base_url)
    page.get_by_role("link", name=re.compile("Development sign-in")).click()
    if new is not None:
        name, email = new
        page.locator("input[name=new_name]").fill(name)
        page.locator("input[name=new_email]").fill(email)
        page.get_by_role("button", name="Create and sign in").click()
    else:
        page.get_by_role("button", name=re.compile("Sign in as")).first.click()


def test_sign_in_enrol_sign_out_and_recover_a_lost_phone(
    wallet_url: tuple[str, LiveWallet],
    phone: Page,
    new_phone: Callable[[], Page],
    authenticator_factory: Callable[..., VirtualAuthenticator],
    screenshots: Callable[[Page, str], Path],
) -> None:
    base_url, live = wallet_url
    first_key = authenticator_factory(phone)

    # Welcome → the development provider → first run.
    phone.goto(base_url)
    expect(phone.get_by_role("heading", level=1)).to_contain_text("No seed phrase")
    screenshots(phone, "welcome")
    phone.get_by_role("link", name=re.compile("Development sign-in")).click()
    screenshots(phone, "dev-provider")
    sign_in(phone, base_url, new=("Ada Lovelace", "ada@example.com"))
    expect(phone).to_have_url(f"{base_url}/setup/passkey")
    screenshots(phone, "setup-passkey")

    # The passkey: the virtual authenticator answers navigator.credentials.create().
    phone.locator("[data-passkey-register]").click()
    expect(phone).to_have_url(f"{base_url}/setup/ready")
    expect(phone.get_by_text(re.compile(r"0x[0-9a-fA-F]{40}")).first).to_be_visible()
    expect(phone.get_by_text(re.compile(r"sei1[0-9a-z]{38}")).first).to_be_visible()
    screenshots(phone, "wallet-ready")
    assert len(first_key.credentials()) == 1

    phone.goto(f"{base_url}/home")
    screenshots(phone, "home")
    phone.goto(f"{base_url}/settings/devices")
    expect(phone.get_by_text("Active").first).to_be_visible()
    screenshots(phone, "devices")

    # Sign out and back in: the same wallet, straight home (this device is known).
    phone.locator("form[action='/sign-out'] button").click()
    expect(phone).to_have_url(f"{base_url}/")
    sign_in(phone, base_url)
    expect(phone).to_have_url(f"{base_url}/home")

    # The phone is lost. A new phone signs in with the same account…
    lost = new_phone()
    authenticator_factory(lost)
    sign_in(lost, base_url)
    expect(lost).to_have_url(f"{base_url}/recovery")
    screenshots(lost, "recovery-start")
    lost.get_by_role("button", name="Send code").click()
    expect(lost.locator("input[name=code]")).to_be_visible()
    screenshots(lost, "recovery-code")
    # A wrong code first: refused with the tries left.
    code = live.latest_code("ada@example.com")
    lost.locator("input[name=code]").fill("000000" if code != "000000" else "111111")
    lost.get_by_role("button", name="Verify").click()
    expect(lost.get_by_text(re.compile("tries left"))).to_be_visible()
    lost.locator("input[name=code]").fill(code)
    lost.get_by_role("button", name="Verify").click()
    expect(lost.locator("[data-passkey-register]")).to_be_visible()
    screenshots(lost, "recovery-passkey")
    lost.locator("[data-passkey-register]").click()
    expect(lost.get_by_text(re.compile("active from", re.IGNORECASE)).first).to_be_visible()
    screenshots(lost, "recovery-pending")

    # The development mailbox shows what was sent.
    lost.goto(f"{base_url}/dev/mailbox")
    expect(lost.get_by_text("Your seiwallet recovery code").first).to_be_visible()
    screenshots(lost, "dev-mailbox")

    # The old phone, found again, is warned and cancels the recovery passkey with its own.
    phone.goto(f"{base_url}/home")
    expect(phone.get_by_text(re.compile("account recovery", re.IGNORECASE)).first).to_be_visible()
    screenshots(phone, "home-recovery-warning")
    phone.goto(f"{base_url}/settings/devices")
    screenshots(phone, "devices-pending")
    phone.get_by_role("button", name=re.compile("^Cancel")).first.click()
    phone.get_by_role("dialog").get_by_role("button", name="Cancel passkey").click()
    expect(phone.get_by_text("Removed").first).to_be_visible()
    screenshots(phone, "devices-cancelled")
