"""Compliance over HTTP (no chain needed): limits, recipient details, the fake identity check, the
operator console and its CSV, on SQLite and PostgreSQL, with a real signer process."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from eth_account import Account
from eth_account.messages import encode_defunct
from fastapi import FastAPI
from markupsafe import escape
from sqlalchemy import Engine
from tests.e2e.web_helpers import Browser, settings_for, web_app
from tests.fixtures.signer import SignerProcess

from seiwallet.api.services import Services
from seiwallet.compliance.gate import Movement

OPERATOR = "ops@example.com"


@pytest.fixture
async def app(
    tmp_path: Path, database_url: str, engine: Engine, signer_process: SignerProcess
) -> AsyncIterator[tuple[Services, FastAPI]]:
    settings = settings_for(tmp_path, database_url, operators=[OPERATOR])
    settings.compliance.issuer_blacklist_check = False
    async with web_app(settings, signer_process, engine) as built:
        yield built


async def signed_in(app: FastAPI, name: str, email: str) -> tuple[Browser, str]:
    browser = Browser(app)
    await browser.sign_in(name, email)
    return browser, await browser.csrf("/limits")


async def test_limits_recipients_and_identity_check(app) -> None:
    _services, fastapi = app
    ada, csrf = await signed_in(fastapi, "Ada", "ada@example.com")
    try:
        page = await ada.http.get("/limits")
        assert page.status_code == 200
        assert "data-jurisdiction>Hong Kong" in page.text
        assert 'data-tier="1"' in page.text
        me = (await ada.http.get("/v1/compliance/me")).json()
        assert (me["jurisdiction"], me["tier"], me["country_source"]) == ("HK", 1, "default")
        assert me["limits"]["per_day"] == "8000"
        # The fake identity check (local only) raises Ada to tier 2.
        started = await ada.http.post(
            "/limits/verify", data={"csrf_token": csrf}, follow_redirects=False
        )
        assert started.status_code == 303
        fake = await ada.http.get(started.headers["location"])
        assert "Fake: for the local demo only" in fake.text
        reference = started.headers["location"].split("reference=")[1]
        done = await ada.http.post(
            "/limits/verify/fake",
            data={"csrf_token": csrf, "reference": reference, "decision": "approve"},
            follow_redirects=False,
        )
        assert done.headers["location"] == "/limits?done=verified"
        assert (await ada.http.get("/v1/compliance/me")).json()["tier"] == 2
        # Recipient details and an ownership proof, over the API.
        wallet = Account.create()
        added = await ada.post_json(
            "/v1/compliance/travel-rule",
            {"address": wallet.address, "beneficiary_name": "Ada L.", "wallet_type": "self_hosted"},
            csrf=csrf,
        )
        assert added.status_code == 201, added.text
        record = added.json()
        challenge = record["ownership_proof"]["challenge"]
        bad = await ada.post_json(
            f"/v1/compliance/travel-rule/{record['id']}/proof", {"signature": "0x00"}, csrf=csrf
        )
        assert bad.status_code == 422
        assert bad.json()["code"] == "compliance.travel_rule_invalid"
        signature = wallet.sign_message(encode_defunct(text=challenge)).signature.hex()
        proven = await ada.post_json(
            f"/v1/compliance/travel-rule/{record['id']}/proof", {"signature": signature}, csrf=csrf
        )
        assert proven.status_code == 200, proven.text
        assert proven.json()["ownership_proof"]["proven_at"]
        page = await ada.http.get(f"/limits/recipients/{record['id']}")
        assert "Proven" in page.text
        # The form refuses what it cannot use, next to the form.
        refused = await ada.http.post(
            "/limits/recipients",
            data={
                "csrf_token": csrf,
                "address": "sei1nope",
                "beneficiary_name": "X",
                "wallet_type": "hosted",
            },
        )
        assert refused.status_code == 422
        assert "data-error" in refused.text
    finally:
        await ada.aclose()


async def test_the_operator_console(app) -> None:
    services, fastapi = app
    ada, _ = await signed_in(fastapi, "Ada", "ada@example.com")
    ops, ops_csrf = await signed_in(fastapi, "Olive Ops", OPERATOR)
    try:
        assert (await ada.http.get("/operator")).status_code == 404
        console = await ops.http.get("/operator")
        assert console.status_code == 200
        assert 'data-jurisdiction="SG"' in console.text
        hk = await ops.http.get("/operator/jurisdictions/HK")
        assert "Cap. 656" in hk.text
        # A decision and an alert to look at.
        compliance = services.compliance
        assert compliance is not None
        me = (await ada.http.get("/v1/me")).json()
        ada_id = me["user_id"]
        dead = "0x000000000000000000000000000000000000dEaD"
        listed = Path(services.settings.data_dir) / "list.csv"
        listed.write_text(f"address,name\n{dead},Test entity\n")
        compliance.refresh_lists(csv_file=listed)
        decision = compliance.gate.check(
            Movement("transfer", ada_id, me["wallet"]["address"], dead, "USDC", 6, 10**6)
        )
        assert decision.rule == "sanctions.recipient"
        log = await ops.http.get("/operator/decisions?outcome=deny")
        assert decision.id in log.text
        csv_text = (await ops.http.get("/operator/decisions.csv?outcome=deny")).text
        assert csv_text.splitlines()[0].startswith("decision_id,created_at_utc")
        assert "sanctions.recipient" in csv_text
        alerts = await ops.http.get("/operator/alerts")
        assert 'data-alert="sanctions_hit"' in alerts.text
        # Placing Ada in Singapore (pending): she is told, and cannot send.
        placed = await ops.http.post(
            f"/operator/users/{ada_id}/country",
            data={"csrf_token": ops_csrf, "country": "SG"},
            follow_redirects=False,
        )
        assert placed.status_code == 303
        limits = await ada.http.get("/limits")
        assert 'data-compliance-notice="pending"' in limits.text
        sg = compliance.book.jurisdictions["SG"]
        assert f'<p lang="en" data-notice-text>{escape(sg.notice)}</p>' in limits.text
        # The rule file's notice in the reader's language: the limits page, the home page's
        # banner (by Accept-Language; the send page by the language cookie) and the API.
        for language, words in (("zh-Hant", "新加坡金融管理局"), ("fr", "Autorité monétaire")):
            text = escape(sg.notice_translations[language])
            assert words in text
            wanted = f'<p lang="{language}" data-notice-text>{text}</p>'
            headers = {"Accept-Language": f"{language};q=1, en;q=0.5"}
            assert wanted in (await ada.http.get("/limits", headers=headers)).text
            assert wanted in (await ada.http.get("/home", headers=headers)).text
            mine = (await ada.http.get("/v1/compliance/me", headers=headers)).json()
            assert mine["notice"] == {
                "kind": "pending",
                "text": sg.notice_in(language)[0],
                "lang": language,
            }
        ada.http.cookies.set("lang", "fr")
        assert 'lang="fr" data-notice-text>' in (await ada.http.get("/send")).text
        ada.http.cookies.delete("lang")
        # The operator sees every language the notice is written in.
        sg_page = (await ops.http.get("/operator/jurisdictions/SG")).text
        for language, text in {"en": sg.notice, **sg.notice_translations}.items():
            shown = f'lang="{language}" data-notice-lang="{language}">{escape(text)}</dd>'
            assert shown in sg_page
        again = compliance.gate.check(
            Movement("transfer", ada_id, me["wallet"]["address"], dead[:-4] + "beef", "USDC", 6, 1)
        )
        assert again.rule == "jurisdiction.pending"
        users = await ops.http.get("/operator/users")
        assert "SG" in users.text
    finally:
        await ada.aclose()
        await ops.aclose()
