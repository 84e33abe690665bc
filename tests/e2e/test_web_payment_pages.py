"""The payment pages over HTTP, as a browser without JavaScript sees them: who may open what,
readable refusals, and forms that say what is wrong.

The local anvil chain (payments need its tokens and router), a real signer process, SQLite and
PostgreSQL. Money never moves here: the browser test (``test_browser_payments.py``) pays.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import Engine
from tests.e2e.web_helpers import Browser, settings_for, start_signer, web_app
from tests.fixtures.signer import SignerProcess

from seiwallet.api.services import Services
from seiwallet.chain.localnet import LocalChain
from seiwallet.config import LocalChainSettings

pytestmark = pytest.mark.chain

HEX32 = re.compile(r"[0-9a-f]{32}")


@pytest.fixture
def signer_process(tmp_path: Path) -> Any:
    process = start_signer(tmp_path / "signer-home")
    yield process
    process.stop()


@pytest.fixture
async def app(
    tmp_path: Path,
    database_url: str,
    engine: Engine,
    signer_process: SignerProcess,
    clean_chain: LocalChain,
) -> AsyncIterator[tuple[Services, FastAPI]]:
    manifest = tmp_path / "deployments" / "local.json"
    manifest.parent.mkdir(parents=True)
    shutil.copy(clean_chain.settings.deployment_manifest_path, manifest)
    settings = settings_for(tmp_path, database_url).model_copy(
        update={"local_chain": LocalChainSettings(port=clean_chain.settings.local_chain.port)}
    )
    async with web_app(settings, signer_process, engine) as built:
        yield built


async def person(browsers: Callable[[], Browser], name: str, email: str) -> tuple[Browser, str]:
    """A signed-up person with a passkey, and their CSRF token."""
    browser = browsers()
    await browser.sign_in(name, email)
    csrf = await browser.csrf("/setup/passkey")
    assert (await browser.enrol_passkey(csrf)).status_code == 200
    return browser, csrf


async def post_form(browser: Browser, path: str, csrf: str, **fields: Any) -> httpx.Response:
    return await browser.http.post(path, data={"csrf_token": csrf, **fields})


def text_of(response: httpx.Response) -> str:
    """The page's words, tags removed and spaces collapsed (what a reader reads)."""
    words = re.sub(r"<[^>]+>", " ", response.text)
    return " ".join(words.replace("&#39;", "'").replace("&amp;", "&").split())


async def open_shop(
    browsers: Callable[[], Browser],
) -> tuple[Browser, str, str, str]:
    """Mei becomes a merchant with a store (HKD) and its first counter, through the pages."""
    mei, csrf = await person(browsers, "Mei Lin", "mei@example.com")
    signup = await mei.http.get("/merchant")
    assert signup.status_code == 200
    assert "Take payments in your shop" in signup.text
    made = await post_form(mei, "/merchant/signup", csrf, name="Lantau Tea Ltd", token="USDC")
    assert made.status_code == 303, made.text
    assert made.headers["location"] == "/merchant/stores/new"
    store = await post_form(
        mei, "/merchant/stores", csrf, name="Lantau Tea House", country="hk", currency="HKD"
    )
    assert store.status_code == 303, store.text
    store_id = store.headers["location"].split("/")[3]
    assert HEX32.fullmatch(store_id)
    terminals = await mei.http.get(store.headers["location"])
    assert terminals.status_code == 200
    terminal_id = re.search(r'href="/pos/([0-9a-f]{32})"', terminals.text)
    assert terminal_id, terminals.text
    return mei, csrf, store_id, terminal_id.group(1)


async def test_the_owner_sets_up_a_shop_and_takes_a_sale(app, browsers) -> None:
    mei, csrf, store_id, terminal_id = await open_shop(browsers)

    # The dashboard: the store, a way to the counter, empty totals and table.
    home = await mei.http.get("/merchant")
    assert home.status_code == 303
    assert home.headers["location"] == f"/merchant/stores/{store_id}"
    dashboard = await mei.http.get(home.headers["location"])
    assert dashboard.status_code == 200
    words = text_of(dashboard)
    assert "Lantau Tea House" in words
    assert "No payments yet" in words
    assert "0.00 USDC" in words  # totals, for those who may read reports
    assert f'href="/pos/{terminal_id}"' in dashboard.text
    assert 'class="tab" href="/merchant" aria-current="page"' in dashboard.text
    for path in (
        f"/merchant/stores/{store_id}/terminals",
        f"/merchant/stores/{store_id}/developers",
        "/merchant/team",
        "/merchant/stores/new",
    ):
        page = await mei.http.get(path)
        assert page.status_code == 200, path

    # The point of sale: a keypad in HKD; a sale it made, rendered with its QR code.
    pos = await mei.http.get(f"/pos/{terminal_id}")
    assert pos.status_code == 200
    assert 'data-currency="HKD"' in pos.text
    assert "HK$0.00" in pos.text
    assert f'data-create-url="/v1/stores/{store_id}/invoices"' in pos.text
    created = await mei.http.post(
        f"/v1/stores/{store_id}/invoices",
        json={"amount": "97.25", "terminal_id": terminal_id, "order_id": "A-1"},
        headers={"X-CSRF-Token": csrf, "Idempotency-Key": "sale-1"},
    )
    assert created.status_code == 201, created.text
    invoice = created.json()
    # Its own deposit address at the chain's InvoiceDeposits, for wallets that are not ours.
    deposit = invoice["deposit"]
    assert deposit["address"].startswith("0x")
    assert deposit["uri"].endswith(f"transfer?address={deposit['address']}&uint256=12500000")
    sale = await mei.http.get(f"/pos/{terminal_id}/sales/{invoice['id']}")
    assert sale.status_code == 200
    assert 'data-state="waiting"' in sale.text
    assert "HK$97.25" in sale.text
    assert "12.50" in sale.text
    assert "<svg" in sale.text
    assert f"https://localhost/pay/{invoice['id']}" in sale.text
    assert "Paying from another wallet" in sale.text
    assert deposit["address"] in sale.text
    # It is in the table, found by its order number, and its page lists its events.
    found = await mei.http.get(f"/merchant/stores/{store_id}", params={"q": "A-1"})
    assert f'data-invoice="{invoice["id"]}"' in found.text
    assert "Waiting" in text_of(found)
    by_id = await mei.http.get(f"/merchant/stores/{store_id}", params={"q": invoice["id"]})
    assert by_id.status_code == 303
    assert by_id.headers["location"] == f"/merchant/invoices/{invoice['id']}"
    detail = await mei.http.get(by_id.headers["location"])
    assert detail.status_code == 200
    assert "invoice.created" in detail.text
    assert "HK$97.25" in detail.text
    # Not paid: nothing to refund yet, said in words.
    refund = await mei.http.get(f"/merchant/invoices/{invoice['id']}/refund")
    assert refund.status_code == 409
    assert "Nothing to refund" in text_of(refund)

    # The payer's side: signed out, the invoice and sign-in links that come back.
    bob = browsers()
    signed_out = await bob.http.get(f"/pay/{invoice['id']}")
    assert signed_out.status_code == 200
    assert "Sign in to pay" in signed_out.text
    assert "HK$97.25" in signed_out.text
    assert f"next=%2Fpay%2F{invoice['id']}" in signed_out.text
    assert "Paying from another wallet" in signed_out.text
    assert deposit["address"] in signed_out.text
    # Signed in without money: the balance, and why the button is off.
    bob, _ = await person(browsers, "Bob Chan", "bob@example.com")
    broke = await bob.http.get(f"/pay/{invoice['id']}")
    assert broke.status_code == 200
    assert "Not enough USDC" in text_of(broke)
    assert re.search(r"data-pay\s+disabled", broke.text)
    # The merchant's own request cannot be paid from the payout wallet.
    own = await mei.http.get(f"/pay/{invoice['id']}")
    assert "your own shop" in text_of(own)
    # Every page shows the "Business" tab to people who work for a merchant, and only to them.
    for path in ("/home", "/send", "/history", "/settings/devices"):
        assert 'class="tab" href="/merchant"' in (await mei.http.get(path)).text, path
        assert 'href="/merchant"' not in (await bob.http.get(path)).text, path


async def test_a_cashier_takes_payments_but_opens_no_keys_team_or_refunds(app, browsers) -> None:
    mei, csrf, store_id, terminal_id = await open_shop(browsers)
    cashier, _ = await person(browsers, "Kit Wong", "kit@example.com")
    invited = await post_form(
        mei, "/merchant/team", csrf, email="kit@example.com", role="cashier", store_id=""
    )
    assert invited.status_code == 303, invited.text
    team = await mei.http.get("/merchant/team")
    assert "kit@example.com" in team.text
    assert "Cashier: takes payments" in text_of(team)
    invoice = (
        await mei.http.post(
            f"/v1/stores/{store_id}/invoices",
            json={"amount": "10", "terminal_id": terminal_id},
            headers={"X-CSRF-Token": csrf},
        )
    ).json()

    # The counter and the payments list: yes. Totals (reports): not for a cashier.
    assert (await cashier.http.get(f"/pos/{terminal_id}")).status_code == 200
    listing = await cashier.http.get(f"/merchant/stores/{store_id}")
    assert listing.status_code == 200
    assert "data-total-gross" not in listing.text
    assert "/developers" not in listing.text
    assert 'href="/merchant/team"' not in listing.text
    assert (await cashier.http.get(f"/merchant/invoices/{invoice['id']}")).status_code == 200
    # Keys and webhooks, the team, refunds: a readable refusal.
    for path in (
        f"/merchant/stores/{store_id}/developers",
        "/merchant/team",
        f"/merchant/invoices/{invoice['id']}/refund",
        "/merchant/stores/new",
    ):
        refused = await cashier.http.get(path)
        assert refused.status_code == 403, path
        assert "Not allowed" in refused.text, path
        assert "Traceback" not in refused.text
    cashier_csrf = await cashier.csrf(f"/merchant/stores/{store_id}")
    key = await post_form(
        cashier, f"/merchant/stores/{store_id}/api-keys", cashier_csrf, name="x", scopes="x"
    )
    assert key.status_code == 403
    # Removed from the team, the counter is closed to them (as if it did not exist).
    rows = re.findall(r'data-staff="([0-9a-f]{32})">(.*?)</li>', team.text, re.S)
    kit = [staff_id for staff_id, row in rows if "kit@example.com" in row]
    assert len(kit) == 1, team.text
    removed = await post_form(mei, f"/merchant/team/{kit[0]}/remove", csrf)
    assert removed.status_code == 303
    assert (await cashier.http.get(f"/pos/{terminal_id}")).status_code == 404


async def test_a_stranger_gets_readable_not_found_pages(app, browsers) -> None:
    mei, csrf, store_id, terminal_id = await open_shop(browsers)
    invoice = (
        await mei.http.post(
            f"/v1/stores/{store_id}/invoices",
            json={"amount": "10", "terminal_id": terminal_id},
            headers={"X-CSRF-Token": csrf},
        )
    ).json()
    stranger, _ = await person(browsers, "Sam Lee", "sam@example.com")
    for path in (
        f"/pos/{terminal_id}",
        f"/pos/{terminal_id}/sales/{invoice['id']}",
        f"/merchant/stores/{store_id}",
        f"/merchant/stores/{store_id}/developers",
        f"/merchant/invoices/{invoice['id']}",
        "/pos/not-a-terminal",
        f"/pay/0x{'ab' * 32}",
        "/pay/nonsense",
    ):
        page = await stranger.http.get(path)
        assert page.status_code == 404, path
        assert "Not found" in page.text, path
        assert 'class="error-code"' in page.text
    # The stranger is no merchant: the dashboard offers to become one.
    assert "Take payments in your shop" in (await stranger.http.get("/merchant")).text
    # Signed out: the dashboard and the counter ask to sign in first, then come back.
    nobody = browsers()
    for path in ("/merchant", f"/pos/{terminal_id}"):
        page = await nobody.http.get(path)
        assert page.status_code == 303
        assert page.headers["location"] == f"/?next={path}"


async def test_forms_say_what_is_wrong(app, browsers) -> None:
    mei, csrf = await person(browsers, "Mei Lin", "mei@example.com")
    blank = await post_form(mei, "/merchant/signup", csrf, name="  ", token="USDC")
    assert blank.status_code == 422
    assert "Enter your business's name" in text_of(blank)
    token = await post_form(mei, "/merchant/signup", csrf, name="Tea", token="DOGE")
    assert token.status_code == 422
    assert "is not a settlement token here" in text_of(token)
    # Without the CSRF token nothing happens.
    forged = await mei.http.post("/merchant/signup", data={"name": "Tea", "token": "USDC"})
    assert forged.status_code == 403
    assert (
        await post_form(mei, "/merchant/signup", csrf, name="Tea", token="USDC")
    ).status_code == 303

    country = await post_form(
        mei, "/merchant/stores", csrf, name="Tea House", country="Hong Kong", currency="HKD"
    )
    assert country.status_code == 422
    assert "two-letter ISO 3166 code" in text_of(country)
    assert 'value="Tea House"' in country.text  # what was typed stays
    no_name = await post_form(mei, "/merchant/stores", csrf, name="", country="HK", currency="HKD")
    assert "Enter the store's name" in text_of(no_name)
    store = await post_form(
        mei, "/merchant/stores", csrf, name="Tea House", country="HK", currency="HKD"
    )
    store_id = store.headers["location"].split("/")[3]
    unnamed = await post_form(mei, f"/merchant/stores/{store_id}/terminals", csrf, name=" ")
    assert unnamed.status_code == 422
    assert "Name the terminal" in text_of(unnamed)

    developers = f"/merchant/stores/{store_id}/developers"
    no_scope = await post_form(mei, f"/merchant/stores/{store_id}/api-keys", csrf, name="shop")
    assert no_scope.status_code == 422
    assert "Choose at least one thing the key may do" in text_of(no_scope)
    made = await mei.http.post(
        f"/merchant/stores/{store_id}/api-keys",
        data={
            "csrf_token": csrf,
            "name": "web shop",
            "scopes": ["invoices:create", "invoices:read"],
        },
    )
    assert made.status_code == 200
    secret = re.search(r"swk_[A-Za-z0-9_-]+", made.text)
    assert secret
    assert secret.group(0) not in (await mei.http.get(developers)).text  # shown once
    bad_url = await mei.http.post(
        f"/merchant/stores/{store_id}/webhooks",
        data={"csrf_token": csrf, "url": "ftp://example.com/x", "events": ["invoice.settled"]},
    )
    assert bad_url.status_code == 422
    assert "The URL can't be used" in text_of(bad_url)
    no_events = await post_form(
        mei, f"/merchant/stores/{store_id}/webhooks", csrf, url="https://example.com/hook"
    )
    assert "Choose at least one event" in text_of(no_events)

    unknown = await post_form(
        mei, "/merchant/team", csrf, email="nobody@example.com", role="cashier", store_id=""
    )
    assert unknown.status_code == 422
    assert "No seiwallet user has this verified e-mail" in text_of(unknown)
    owner = await post_form(
        mei, "/merchant/team", csrf, email="mei@example.com", role="owner", store_id=""
    )
    assert "Choose a role" in text_of(owner)

    dates = await mei.http.get(
        f"/merchant/stores/{store_id}", params={"from": "2026-12-01", "to": "2026-11-01"}
    )
    assert dates.status_code == 200
    assert "The start date is after the end date" in text_of(dates)
    garbled = await mei.http.get(f"/merchant/stores/{store_id}", params={"from": "yesterday"})
    assert "Choose the dates with the date fields" in text_of(garbled)
    status = await mei.http.get(f"/merchant/stores/{store_id}", params={"status": "lost"})
    assert "Choose a status from the list" in text_of(status)
    missing = await mei.http.get(f"/merchant/stores/{store_id}", params={"q": "0x" + "cd" * 32})
    assert "No payment of this store has this invoice id" in text_of(missing)


async def test_the_pages_speak_the_readers_language(app, browsers) -> None:
    mei, _csrf, store_id, terminal_id = await open_shop(browsers)
    mei.http.cookies.set("lang", "zh_Hant")
    dashboard = await mei.http.get(f"/merchant/stores/{store_id}")
    assert dashboard.headers["content-language"] == "zh-Hant"
    assert "收款" in dashboard.text
    mei.http.cookies.set("lang", "fr")
    pos = await mei.http.get(f"/pos/{terminal_id}")
    assert "0,00" in pos.text  # French digits
    assert "Encaisser" in pos.text
