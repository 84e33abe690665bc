"""The development webhook receiver and the demo shop ``seiwallet up`` seeds.

- Over HTTP (SQLite and PostgreSQL, a real signer process): ``POST /dev-webhooks/{name}`` keeps
  each delivery and checks its signature with the secret of the store's endpoint at that URL;
  the page lists them newest first; a test event sent from the API process (the Developers
  page's "Send test event") reaches it in process; on another profile neither exists.
- The demo shop seed (local anvil chain): made once, found the next time, and its owner signs in
  through the development provider as the same user.
- In Chromium: ``/dev-webhooks`` with deliveries, saved under ``test-artifacts/screenshots/``.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import re
import shutil
import time
from collections.abc import AsyncIterator, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from playwright.sync_api import Page, expect
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session, sessionmaker
from tests.e2e.test_browser_money import page_shot, use_language
from tests.e2e.test_browser_wallet import LiveWallet
from tests.e2e.web_helpers import ORIGIN, Browser, settings_for, web_app
from tests.fixtures.browser import serve_app_at
from tests.fixtures.chain import ChainKit
from tests.fixtures.signer import SignerProcess

from seiwallet.accounts.models import User
from seiwallet.accounts.oidc import VerifiedIdentity
from seiwallet.accounts.services import SignInService
from seiwallet.api.app import create_app
from seiwallet.api.devhooks_inbox import DevWebhookDelivery, SignatureCheck
from seiwallet.api.services import Services, build_services
from seiwallet.chain.localnet import LocalChain
from seiwallet.cli.demo_data import (
    CUSTOMER,
    EU_CUSTOMER,
    EU_CUSTOMER_PHONE,
    SHOP_MANAGER,
    SHOP_OWNER,
    WEBHOOK_EVENTS,
    eu_customer_lines,
    seed_shop,
)
from seiwallet.config import LocalChainSettings, Settings
from seiwallet.db import session_factory
from seiwallet.deployments import open_chain
from seiwallet.payments.merchants import MerchantOwner, MerchantService
from seiwallet.payments.models import Merchant, Store, Terminal, WebhookEndpoint
from seiwallet.payments.permissions import Principal
from seiwallet.payments.webhooks import (
    DELIVERY_ID_HEADER,
    EVENT_ID_HEADER,
    EVENT_TYPE_HEADER,
    SIGNATURE_HEADER,
    WebhookSender,
    WebhookService,
    sign,
)
from seiwallet.signer.client import SignerClient


@dataclass(frozen=True)
class Shop:
    principal: Principal
    store_id: str
    endpoint_id: str
    secret: str
    webhooks: WebhookService


async def open_shop(db: sessionmaker[Session], signer: SignerClient, hook_url: str) -> Shop:
    """Mei's merchant, her store and a webhook endpoint at ``hook_url`` (its secret shown once)."""
    signed_in = await SignInService(db, signer).complete(
        VerifiedIdentity(
            issuer="https://idp.example",
            subject="mei",
            email="mei@example.com",
            email_verified=True,
            name="Mei Lin",
        )
    )
    user = signed_in.user
    assert user.wallet_id is not None
    assert user.wallet_address is not None
    merchants = MerchantService(db, settlement_tokens={"USDC": 6}, fee_bps=100)
    merchant = await merchants.become_merchant(
        MerchantOwner(user.id, user.wallet_id, user.wallet_address),
        name="Lantau Tea Ltd",
        settlement_token="USDC",
    )
    principal = merchants.principal_for_user(user.id, merchant.id)
    store = merchants.create_store(principal, name="Lantau Tea House", country="HK", currency="HKD")
    webhooks = WebhookService(db, allow_http=True)
    endpoint, secret = webhooks.create(
        principal, store.id, url=hook_url, events=["invoice.settled", "refund.settled"]
    )
    return Shop(principal, store.id, endpoint.id, secret, webhooks)


def event_body(event_id: str, event_type: str = "invoice.settled") -> bytes:
    return json.dumps(
        {
            "id": event_id,
            "type": event_type,
            "data": {
                "invoice": {"id": "0x" + "ab" * 32, "status": "settled", "note": "Tea & <cake>"}
            },
        },
        separators=(",", ":"),
    ).encode()


def signed_headers(
    secret: str, body: bytes, *, at: int | None = None, **more: str
) -> dict[str, str]:
    return {
        "Content-Type": "application/json",
        SIGNATURE_HEADER: sign(secret, body, int(time.time()) if at is None else at),
        EVENT_TYPE_HEADER: "invoice.settled",
        **more,
    }


# -- over HTTP, on both databases ----------------------------------------------------------------


@pytest.fixture
async def shop(app: tuple[Services, FastAPI], signer_process: SignerProcess) -> AsyncIterator[Shop]:
    client = signer_process.client()
    try:
        yield await open_shop(app[0].db, client, f"{ORIGIN}/dev-webhooks/lantau-tea")
    finally:
        await client.aclose()


@pytest.fixture
async def http(app: tuple[Services, FastAPI]) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app[1]), base_url=ORIGIN
    ) as client:
        yield client


def text_of(response: httpx.Response) -> str:
    words = re.sub(r"<[^>]+>", " ", response.text)
    return " ".join(words.replace("&#39;", "'").replace("&amp;", "&").split())


async def test_the_receiver_keeps_each_delivery_and_checks_its_signature(
    app: tuple[Services, FastAPI], shop: Shop, http: httpx.AsyncClient
) -> None:
    services, _ = app
    hook = "/dev-webhooks/lantau-tea"

    # A delivery as the worker sends it: kept, verified with the endpoint's secret.
    body = event_body("evt_1")
    answer = await http.post(
        hook,
        content=body,
        headers=signed_headers(
            shop.secret,
            body,
            **{
                EVENT_ID_HEADER: "evt_1",
                DELIVERY_ID_HEADER: "d" * 32,
                "Authorization": "Bearer not-for-the-page",
            },
        ),
    )
    assert answer.status_code == 200, answer.text
    assert answer.json()["signature"] == "valid"

    # A changed body, an old signature, none at all, and a receiver no endpoint names.
    tampered = await http.post(
        hook,
        content=body.replace(b"settled", b"refunded"),
        headers=signed_headers(shop.secret, body),
    )
    assert tampered.json()["signature"] == "invalid"
    replayed = await http.post(
        hook, content=body, headers=signed_headers(shop.secret, body, at=int(time.time()) - 3600)
    )
    assert replayed.json()["signature"] == "stale"
    unsigned = await http.post(hook, content=event_body("evt_2"))
    assert unsigned.json()["signature"] == "missing"
    elsewhere = await http.post(
        "/dev-webhooks/elsewhere", content=body, headers=signed_headers(shop.secret, body)
    )
    assert elsewhere.json()["signature"] == "no_endpoint"
    wrong_secret = await http.post(
        hook, content=body, headers=signed_headers("whsec_someone-else", body)
    )
    assert wrong_secret.json()["signature"] == "invalid"

    # Not a receiver name; too large a body: refused, nothing kept.
    bad_name = await http.post("/dev-webhooks/Bad_Name", content=body)
    assert bad_name.status_code == 404
    assert bad_name.headers["content-type"] == "application/problem+json"
    too_big = await http.post(hook, content=b"x" * (256 * 1024 + 1))
    assert too_big.status_code == 413

    assert services.devhooks is not None
    kept = services.devhooks.deliveries("lantau-tea")
    assert [d.signature for d in kept] == [
        SignatureCheck.INVALID,
        SignatureCheck.MISSING,
        SignatureCheck.STALE,
        SignatureCheck.INVALID,
        SignatureCheck.VALID,
    ]
    first = kept[-1]
    assert first.event_type == "invoice.settled"
    assert first.event_id == "evt_1"
    assert first.delivery_id == "d" * 32
    assert first.endpoint_id == shop.endpoint_id
    assert first.store_name == "Lantau Tea House"
    assert "authorization" not in first.headers  # a credential is never kept
    assert first.headers[SIGNATURE_HEADER.lower()].startswith("t=")
    assert kept[1].event_type == "invoice.settled"  # from the body when no header says

    # The page: newest first, every receiver, the verdicts in words, the body indented.
    page = await http.get("/dev-webhooks")
    assert page.status_code == 200
    shown = [int(i) for i in re.findall(r'data-devhook="(\d+)"', page.text)]
    assert shown == sorted(shown, reverse=True)
    assert len(shown) == 6
    words = text_of(page)
    for verdict in (
        "Signature verified",
        "Signature does not match",
        "Signature too old",
        "Not signed",
        "No endpoint with this URL",
    ):
        assert verdict in words
    assert "Lantau Tea House" in words
    assert "d" * 32 in page.text
    assert "\n  &#34;data&#34;: {\n    &#34;invoice&#34;: {" in page.text  # indented JSON
    assert "&lt;cake&gt;" in page.text  # escaped, never markup
    assert "not-for-the-page" not in page.text
    only = await http.get(hook)
    assert len(re.findall(r'data-devhook="', only.text)) == 5
    assert "/dev-webhooks/elsewhere" not in only.text
    assert f"{ORIGIN}{hook}" in only.text


async def test_a_test_event_from_the_api_process_reaches_the_receiver(
    app: tuple[Services, FastAPI], shop: Shop
) -> None:
    """The Developers page's "Send test event" posts from the API process itself: its HTTP
    client routes our own origin in process, and the receiver is mounted there too."""
    services, _ = app
    delivery_id = shop.webhooks.test_event(shop.principal, shop.endpoint_id)
    sender = WebhookSender(services.db, services.http, services.settings.payments)
    assert await sender.deliver_now(delivery_id)
    [delivered] = shop.webhooks.deliveries(shop.principal, shop.endpoint_id)
    assert delivered["status"] == "delivered"
    assert delivered["last_status_code"] == 200
    assert services.devhooks is not None
    [received] = services.devhooks.deliveries()
    assert received.event_type == "webhook.test"
    assert received.delivery_id == delivery_id
    assert received.signature is SignatureCheck.VALID
    assert json.loads(received.body)["type"] == "webhook.test"


async def test_outside_the_local_profile_there_is_no_receiver(
    tmp_path: Path, database_url: str, engine: Engine
) -> None:
    origin = "https://wallet.example"
    settings = Settings(
        profile="sei-testnet",
        data_dir=tmp_path,
        database_url=database_url,
        web={
            "public_url": origin,
            "mailer": "smtp",
            "smtp_host": "smtp.wallet.example",
            "smtp_sender": "wallet@wallet.example",
        },
        signer={"origins": [origin], "rp_id": "wallet.example"},
    )
    signer = SignerClient(secret="s" * 43, socket=tmp_path / "no-signer.sock")
    services = build_services(settings, signer=signer, engine=engine)
    try:
        assert services.devhooks is None
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=create_app(settings, services=services)),
            base_url=origin,
        ) as http:
            answer = await http.post("/dev-webhooks/demo-coffee", content=event_body("evt_1"))
            assert answer.status_code == 404
            assert answer.json()["code"] == "http.404"
            assert "local profile only" in answer.json()["detail"]
            page = await http.get("/dev-webhooks")
            assert page.status_code == 404
            assert "local profile only" in text_of(page)
        with services.db() as db:
            assert db.scalar(select(func.count()).select_from(DevWebhookDelivery)) == 0
    finally:
        await services.aclose()
        await signer.aclose()


# -- the demo shop seeded by ``seiwallet up`` ------------------------------------------------------


def count(db: sessionmaker[Session], model: Any) -> int:
    with db() as session:
        return int(session.scalar(select(func.count()).select_from(model)) or 0)


@pytest.mark.chain
async def test_the_demo_shop_is_seeded_once_and_its_owner_signs_in_as_that_user(
    tmp_path: Path,
    database_url: str,
    engine: Engine,
    signer_process: SignerProcess,
    clean_chain: LocalChain,
    kit: ChainKit,
) -> None:
    manifest = tmp_path / "deployments" / "local.json"
    manifest.parent.mkdir(parents=True)
    shutil.copy(clean_chain.settings.deployment_manifest_path, manifest)
    settings = settings_for(tmp_path, database_url).model_copy(
        update={"local_chain": LocalChainSettings(port=clean_chain.settings.local_chain.port)}
    )
    # As `seiwallet up` does: the seed runs (twice here) before the web app starts.
    client = signer_process.client()
    try:
        async with await open_chain(settings) as rpc:
            first = await seed_shop(
                settings, sessions=session_factory(engine), signer=client, rpc=rpc
            )
            again = await seed_shop(
                settings, sessions=session_factory(engine), signer=client, rpc=rpc
            )
    finally:
        await client.aclose()

    async with web_app(settings, signer_process, engine) as (services, app):
        assert set(first.created) == {
            "owner",
            "customer",
            "manager",
            "EU customer",
            "merchant",
            "manager on the team",
            "store",
            "counter",
            "webhook endpoint",
        }
        assert first.minted == (
            "1000 USDC to the customer",
            "100 USDC to the shop",
            "500 EURC to the EU customer",
        )
        assert again.created == ()
        assert again.minted == ()
        assert again == dataclasses.replace(first, created=(), minted=())
        for model, expected in (
            (User, 4),
            (Merchant, 1),
            (Store, 1),
            (Terminal, 1),
            (WebhookEndpoint, 1),
        ):
            assert count(services.db, model) == expected, model

        # What the start-up report names.
        assert (first.owner.name, first.owner.email) == SHOP_OWNER
        assert (first.manager.name, first.manager.email) == SHOP_MANAGER
        [staff] = [s for s in services_staff(services, first) if s.email == SHOP_MANAGER[1]]
        assert staff.role == "manager"
        assert (first.customer.name, first.customer.email) == CUSTOMER
        assert first.pos_url == f"{ORIGIN}/pos/{first.terminal_id}"
        assert first.receiver_url == f"{ORIGIN}/dev-webhooks/demo-coffee"
        with services.db() as db:
            store = db.get(Store, first.store_id)
            assert store is not None
            assert (store.name, store.country, store.currency) == (
                "Demo Coffee Central",
                "HK",
                "HKD",
            )
            merchant = db.get(Merchant, first.merchant_id)
            assert merchant is not None
            assert merchant.name == "Demo Coffee"
            assert merchant.payout_address == first.owner.wallet_address
            endpoint = db.get(WebhookEndpoint, first.endpoint_id)
            assert endpoint is not None
            assert endpoint.url == first.receiver_url
            assert tuple(endpoint.event_types.split()) == WEBHOOK_EVENTS
            assert {t.split(".")[0] for t in WEBHOOK_EVENTS} == {"invoice", "refund"}
        assert kit.balance(first.customer.wallet_address) == 1_000_000_000
        assert kit.balance(first.owner.wallet_address) == 100_000_000
        assert kit.balance(first.eu_customer.wallet_address, "EURC") == 500_000_000
        assert kit.balance(first.eu_customer.wallet_address, "USDC") == 0

        # The EU person: a verified French number places her under the EU's rules, at tier 1.
        eu = first.eu_customer
        assert (eu.name, eu.email, eu.phone) == (*EU_CUSTOMER, EU_CUSTOMER_PHONE)
        assert services.compliance is not None
        limits = services.compliance.limits(eu.user_id)
        assert (limits.placement.country, limits.placement.country_source) == ("FR", "phone")
        assert (limits.placement.jurisdiction_code, limits.placement.tier) == ("EU", 1)
        assert limits.notice is None
        assert first.eu_rules == services.compliance.book.jurisdictions["EU"]
        steps = " ".join(eu_customer_lines(first))
        assert "Camille Martin" in steps
        assert "+33 6 12 34 56 78" in steps
        assert "France, under European Union rules" in steps
        assert "tokens USDC, EURC" in steps
        assert "10,000 EUR a transfer" in steps

        # The owner, listed by the development provider, signs in as the seeded user: no
        # passkey yet, so the wallet asks for one first.
        assert services.devidp is not None
        [owner] = [p for p in services.devidp.persons() if p.email == SHOP_OWNER[1]]
        browser = Browser(app)
        try:
            signed_in = await browser.sign_in("", "", subject=owner.subject)
            assert signed_in.status_code == 303
            assert signed_in.headers["location"] == "/setup/passkey"
            setup = await browser.http.get("/setup/passkey")
            assert setup.status_code == 200
        finally:
            await browser.aclose()
        # She signs in through the development provider as the seeded user, and her wallet's
        # limits are the EU's (the phone claim the provider sends changes nothing).
        [camille] = [p for p in services.devidp.persons() if p.email == EU_CUSTOMER[1]]
        assert camille.phone_number == EU_CUSTOMER_PHONE
        browser = Browser(app)
        try:
            signed_in = await browser.sign_in("", "", subject=camille.subject)
            assert signed_in.status_code == 303
            me = (await browser.http.get("/v1/compliance/me")).json()
            assert (me["jurisdiction"], me["country"], me["tier"]) == ("EU", "FR", 1)
            assert me["tokens"] == ["USDC", "EURC"]
            assert me["limits"]["per_transfer"] == "0"
            assert me["tiers"]["2"]["per_transfer"] == "10000"
        finally:
            await browser.aclose()
        assert count(services.db, User) == 4


def services_staff(services: Any, shop: Any) -> list[Any]:
    """The demo shop's team, as its owner sees it."""
    merchants = MerchantService(services.db, settlement_tokens={"USDC": 6}, fee_bps=0)
    owner = merchants.principal_for_user(shop.owner.user_id, shop.merchant_id)
    return merchants.staff(owner)


# -- in Chromium ----------------------------------------------------------------------------------


@pytest.fixture
def live_wallet(tmp_path: Path) -> Iterator[tuple[str, LiveWallet]]:
    live = LiveWallet(tmp_path)
    try:
        with serve_app_at(live.make) as base_url:
            yield base_url, live
    finally:
        live.close()


def test_the_receiver_page_in_the_browser(
    live_wallet: tuple[str, LiveWallet],
    phone: Page,
    screenshots: Callable[[Page, str], Path],
) -> None:
    base_url, live = live_wallet
    assert live.services is not None
    assert live.signer is not None
    hook_url = f"{base_url}/dev-webhooks/demo-coffee"

    async def deliver() -> None:
        client = live.signer.client()  # type: ignore[union-attr]
        try:
            shop = await open_shop(live.services.db, client, hook_url)  # type: ignore[union-attr]
        finally:
            await client.aclose()
        # A test event as the worker sends it: over the network, to the page's own server.
        delivery_id = shop.webhooks.test_event(shop.principal, shop.endpoint_id)
        async with httpx.AsyncClient() as http:
            sender = WebhookSender(live.services.db, http, live.services.settings.payments)  # type: ignore[union-attr]
            assert await sender.deliver_now(delivery_id)
            body = event_body("evt_7")
            answer = await http.post(
                hook_url,
                content=body,
                headers=signed_headers(
                    shop.secret,
                    body,
                    **{EVENT_ID_HEADER: "evt_7", DELIVERY_ID_HEADER: "7" * 32},
                ),
            )
            assert answer.json()["signature"] == "valid"
            forged = event_body("evt_8")
            await http.post(hook_url, content=forged, headers=signed_headers("whsec_x", forged))

    # Playwright's sync API runs an event loop in this thread: the setup runs in another.
    with ThreadPoolExecutor(1) as pool:
        pool.submit(asyncio.run, deliver()).result()

    shot = page_shot(screenshots)
    phone.goto(f"{base_url}/dev-webhooks/demo-coffee")
    expect(phone.get_by_role("heading", name="Webhooks received")).to_be_visible()
    cards = phone.locator("[data-devhook]")
    expect(cards).to_have_count(3)
    expect(cards.nth(0)).to_have_attribute("data-signature", "invalid")
    expect(cards.nth(1)).to_contain_text("invoice.settled")
    expect(cards.nth(1)).to_contain_text("Signature verified")
    expect(cards.nth(1)).to_contain_text("Lantau Tea House")
    expect(cards.nth(2)).to_contain_text("webhook.test")
    expect(phone.locator("#receiver-url")).to_have_text(hook_url)
    shot(phone, "dev-webhooks")
    cards.nth(1).get_by_text("Headers").click()
    expect(cards.nth(1)).to_contain_text("seiwallet-signature")
    shot(phone, "dev-webhooks-headers")
    use_language(phone, base_url, "zh_Hant")
    phone.goto(f"{base_url}/dev-webhooks")
    expect(phone.get_by_role("heading", name="收到的 Webhook")).to_be_visible()
    phone.emulate_media(color_scheme="dark")
    shot(phone, "zh-dark-dev-webhooks")
    use_language(phone, base_url, "fr")
    phone.emulate_media(color_scheme="light")
    phone.goto(f"{base_url}/dev-webhooks/nobody-yet")
    expect(phone.get_by_text("Aucun webhook pour l’instant")).to_be_visible()
    shot(phone, "fr-dev-webhooks-empty")
