"""Compliance in Debian's Chromium: a person's limits, the demo identity check, recipient details
with a self-hosted wallet's signed proof, a person in a pending country, and the operator
console (rules with the diff of a change reloaded at runtime, people, decisions and their CSV,
alerts). Screenshots of every page under ``test-artifacts/screenshots/``.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from eth_account import Account
from eth_account.messages import encode_defunct
from playwright.sync_api import Page, expect
from sqlalchemy import select
from tests.e2e.web_helpers import settings_for, start_signer
from tests.fixtures.browser import VirtualAuthenticator, serve_app_at
from tests.fixtures.signer import SignerProcess

from seiwallet.accounts.models import User
from seiwallet.api.app import create_app
from seiwallet.api.services import Services
from seiwallet.compliance.gate import Movement
from seiwallet.compliance.jurisdictions import RULES_DIR
from seiwallet.config import SignerSettings

OPERATOR = "ops@example.com"
SANCTIONED = "0x000000000000000000000000000000000000dEaD"


class ConsoleWallet:
    def __init__(self, tmp_path: Path) -> None:
        self.tmp_path = tmp_path
        self.rules = tmp_path / "rules"
        shutil.copytree(RULES_DIR, self.rules)
        self.signer: SignerProcess | None = None
        self.services: Services | None = None

    def make(self, base_url: str) -> Any:
        self.signer = start_signer(self.tmp_path / "signer-home", origin=base_url)
        settings = settings_for(
            self.tmp_path,
            f"sqlite:///{self.tmp_path / 'wallet.sqlite3'}",
            origin=base_url,
            operators=[OPERATOR],
        ).model_copy(
            update={
                "signer": SignerSettings(
                    socket=self.signer.socket, secret=self.signer.secret, origins=[base_url]
                )
            }
        )
        settings.compliance.rules_dir = self.rules
        settings.compliance.issuer_blacklist_check = False
        app = create_app(settings)
        self.services = app.state.services
        return app

    def user(self, email: str) -> User:
        assert self.services is not None
        with self.services.db() as db:
            found = db.scalars(select(User).where(User.email == email)).one()
            return found

    def close(self) -> None:
        if self.signer is not None:
            self.signer.stop()


@pytest.fixture
def console_wallet(tmp_path: Path) -> Iterator[tuple[str, ConsoleWallet]]:
    live = ConsoleWallet(tmp_path)
    try:
        with serve_app_at(live.make) as base_url:
            yield base_url, live
    finally:
        live.close()


def sign_up(page: Page, base_url: str, name: str, email: str, phone: str | None = None) -> None:
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


def test_limits_recipients_and_the_operator_console(
    console_wallet: tuple[str, ConsoleWallet],
    phone: Page,
    new_phone: Callable[[], Page],
    authenticator_factory: Callable[..., VirtualAuthenticator],
    screenshots: Callable[[Page, str], Path],
    tmp_path: Path,
) -> None:
    base_url, live = console_wallet
    services = live.services
    assert services is not None
    compliance = services.compliance
    assert compliance is not None

    # Ada, in Hong Kong by her verified phone number: her limits and how to raise them.
    ada = phone
    authenticator_factory(ada)
    sign_up(ada, base_url, "Ada Chan", "ada@example.com", "+852 9123 4567")
    ada.get_by_role("link", name="Limits").click()
    expect(ada).to_have_url(f"{base_url}/limits")
    expect(ada.locator("[data-jurisdiction]")).to_have_text("Hong Kong")
    expect(ada.locator("[data-tier]")).to_contain_text("Level 1")
    expect(ada.locator("[data-tier-card='1']")).to_contain_text("HK$5,000.00")
    screenshots(ada, "limits-hk-tier-1")
    ada.get_by_role("button", name="Verify my identity").click()
    expect(ada.locator("[data-fake-kyc]")).to_contain_text("Fake: for the local demo only")
    screenshots(ada, "demo-identity-check")
    ada.get_by_role("button", name="Approve (demo)").click()
    expect(ada.get_by_text("Your identity is verified: your limits went up.")).to_be_visible()
    expect(ada.locator("[data-tier]")).to_contain_text("Level 2")
    screenshots(ada, "limits-hk-tier-2")

    # Recipient details for a wallet of her own, proven with a signed message.
    wallet = Account.create()
    ada.get_by_role("link", name="Manage recipient details").click()
    ada.get_by_label("Their 0x address").fill(wallet.address)
    ada.get_by_label("Full name of the recipient").fill("Ada Chan")
    ada.get_by_label("This is my own wallet").check()
    ada.get_by_role("button", name="Save recipient").click()
    expect(ada.get_by_text("Saved. You can send to this address now.")).to_be_visible()
    challenge = ada.locator("[data-challenge]").inner_text()
    assert wallet.address in challenge
    screenshots(ada, "recipient-challenge")
    ada.get_by_label("Signature").fill("0x" + "11" * 65)
    ada.get_by_role("button", name="Check signature").click()
    expect(ada.locator("[data-error]")).to_be_visible()
    signature = wallet.sign_message(encode_defunct(text=challenge)).signature.hex()
    ada.get_by_label("Signature").fill(signature)
    ada.get_by_role("button", name="Check signature").click()
    expect(ada.get_by_text("Proven: this wallet is yours.")).to_be_visible()
    expect(ada.locator("[data-proof]")).to_contain_text("Proven")
    screenshots(ada, "recipient-proven")

    # Mei, in Singapore (pending): she signs in and is told what she cannot do, and why.
    mei = new_phone()
    authenticator_factory(mei)
    sign_up(mei, base_url, "Mei Tan", "mei@example.com", "+65 8123 4567")
    mei.goto(f"{base_url}/limits")
    expect(mei.locator("[data-compliance-notice=pending]")).to_contain_text("Singapore")
    screenshots(mei, "limits-pending-country")
    # The rule file's words in her language, on the home page's banner and on Limits.
    for code, tag, words in (
        ("zh_Hant", "zh-Hant", "新加坡金融管理局"),
        ("fr", "fr", "Autorité monétaire de Singapour"),
    ):
        mei.context.add_cookies([{"name": "lang", "value": code, "url": base_url}])
        for path in ("/home", "/limits"):
            mei.goto(f"{base_url}{path}")
            said = mei.locator("[data-compliance-notice=pending] [data-notice-text]")
            expect(said).to_contain_text(words)
            expect(said).to_have_attribute("lang", tag)
            screenshots(mei, f"pending-country-banner-{path.strip('/')}-{tag}")
    mei.context.add_cookies([{"name": "lang", "value": "en", "url": base_url}])

    # What the gate decided meanwhile (the chain is not needed to ask it).
    ada_user, mei_user = live.user("ada@example.com"), live.user("mei@example.com")
    assert ada_user.wallet_address
    assert mei_user.wallet_address
    listed = tmp_path / "list.csv"
    listed.write_text(f"address,name\n{SANCTIONED},Example sanctioned entity\n")
    compliance.refresh_lists(csv_file=listed)
    for user, to, amount in (
        (mei_user, ada_user.wallet_address, 5),
        (ada_user, SANCTIONED, 20),
        (ada_user, mei_user.wallet_address, 12),
        (ada_user, "0x8ba1f109551bD432803012645Ac136ddd64DBA72", 1500),
        (ada_user, wallet.address, 1500),
    ):
        compliance.gate.check(
            Movement("transfer", user.id, user.wallet_address or "", to, "USDC", 6, amount * 10**6)
        )

    # The operator's console.
    ops = new_phone()
    authenticator_factory(ops)
    sign_up(ops, base_url, "Olive Ops", OPERATOR)
    ops.goto(f"{base_url}/operator")
    expect(ops.locator("[data-jurisdiction=SG]")).to_contain_text("pending")
    expect(ops.locator("[data-open-alerts]")).to_have_text("1")
    screenshots(ops, "operator-jurisdictions")
    # A pending country's notice, in each language the rule file writes it in.
    ops.get_by_role("link", name="Singapore (SG)").click()
    expect(ops.locator("[data-notice-lang=en]")).to_contain_text("Monetary Authority")
    expect(ops.locator("[data-notice-lang=zh-Hant]")).to_contain_text("新加坡金融管理局")
    expect(ops.locator("[data-notice-lang=fr]")).to_contain_text("Autorité monétaire")
    screenshots(ops, "operator-jurisdiction-notices")
    ops.goto(f"{base_url}/operator")
    # A rule file changes; the operator reloads, and sees the diff. A broken file is refused.
    hk = live.rules / "HK.toml"
    hk.write_text(hk.read_text().replace("per_day = 8000", "per_day = 6000"))
    ops.get_by_role("button", name="Reload the rule files").click()
    ops.get_by_role("link", name="Hong Kong (HK)").click()
    expect(ops.locator("[data-diff] .diff-del")).to_contain_text("per_day = 8000")
    expect(ops.locator("[data-diff] .diff-add")).to_contain_text("per_day = 6000")
    screenshots(ops, "operator-jurisdiction-diff")
    hk.write_text(hk.read_text().replace("per_day = 6000", 'per_day = "lots"'))
    ops.goto(f"{base_url}/operator")
    ops.get_by_role("button", name="Reload the rule files").click()
    expect(ops.locator("[data-error]")).to_contain_text("line")
    expect(ops.locator("[data-error]")).to_contain_text("tiers.1.per_day")
    screenshots(ops, "operator-bad-rule-file")
    assert str(compliance.book.jurisdictions["HK"].tier(1).per_day) == "6000"

    ops.get_by_role("link", name="People").click()
    expect(ops.locator("[data-summary]")).to_contain_text("SG")
    screenshots(ops, "operator-people")
    ops.get_by_role("link", name="Decisions").click()
    expect(ops.locator("[data-decisions] tr[data-decision]")).to_have_count(5)
    ops.get_by_label("Outcome").select_option("deny")
    ops.get_by_role("button", name="Filter").click()
    expect(ops.locator("[data-decisions] tr[data-decision]")).to_have_count(3)
    screenshots(ops, "operator-decisions")
    with ops.expect_download() as download:
        ops.get_by_role("link", name="CSV for the regulator").click()
    exported = Path(download.value.path()).read_text()
    assert exported.startswith("decision_id,created_at_utc")
    assert "sanctions.recipient" in exported
    assert "jurisdiction.pending" in exported
    ops.locator("nav.op-nav").get_by_role("link", name="Alerts").click()
    expect(ops.locator("[data-alert=sanctions_hit]")).to_contain_text(SANCTIONED)
    screenshots(ops, "operator-alerts")
    ops.get_by_role("button", name="Acknowledge").click()
    expect(ops.get_by_text("No alerts.")).to_be_visible()

    # Ada cannot open the console: to her it does not exist.
    answer = ada.goto(f"{base_url}/operator")
    assert answer is not None
    assert answer.status == 404
