"""The wallet app over HTTP: sign-in, first passkey, sessions, CSRF, recovery, device login.

A real signer process, the development identity provider in process, SQLite and PostgreSQL.
"""

from __future__ import annotations

import re
from urllib.parse import parse_qsl, urlsplit

from tests.fixtures.authenticators import SoftPasskey

from seiwallet.api.services import Services


def latest_code(services: Services, to: str) -> str:
    """The newest recovery code the development mailbox caught for ``to``."""
    for message in services.mailbox.messages(20, recipient=to):
        if message.subject == "Your seiwallet recovery code":
            return re.search(r"\b(\d{6})\b", message.body).group(1)
    raise AssertionError(f"no recovery code was sent to {to}")


async def test_first_sign_in_creates_a_wallet_and_asks_for_a_passkey(app, browsers) -> None:
    browser = browsers()
    landed = await browser.sign_in("Ada Lovelace", "ada@example.com")
    assert landed.status_code == 303
    assert landed.headers["location"] == "/setup/passkey"
    cookie = landed.headers["set-cookie"]
    assert "sw_session=sws_" in cookie
    assert "HttpOnly" in cookie
    assert "Secure" in cookie
    assert "samesite=lax" in cookie.lower()
    me = (await browser.http.get("/v1/me")).json()
    assert me["email"] == "ada@example.com"
    assert re.fullmatch(r"0x[0-9a-fA-F]{40}", me["wallet"]["address"])
    assert me["wallet"]["sei_address"].startswith("sei1")


async def test_passkey_enrolment_makes_the_first_authenticator_active(app, browsers) -> None:
    browser = browsers()
    await browser.sign_in("Ada", "ada@example.com")
    csrf = await browser.csrf("/setup/passkey")
    enrolled = await browser.enrol_passkey(csrf)
    assert enrolled.status_code == 200, enrolled.text
    body = enrolled.json()
    assert body["enrolment"] == "first"
    assert body["redirect"] == "/setup/ready"
    listed = (await browser.http.get("/v1/authenticators")).json()["authenticators"]
    assert [a["status"] for a in listed] == ["active"]
    # A second passkey without approval or recovery is refused.
    again = await browser.post_json("/v1/passkeys/registration/options", {}, csrf=csrf)
    assert again.status_code == 403
    assert again.headers["content-type"] == "application/problem+json"
    assert again.json()["code"] == "accounts.passkey_enrolment_not_allowed"


async def test_state_changes_need_the_csrf_token(app, browsers) -> None:
    browser = browsers()
    await browser.sign_in("Ada", "ada@example.com")
    refused = await browser.post_json("/v1/passkeys/registration/options", {}, csrf=None)
    assert refused.status_code == 403
    assert refused.json()["code"] == "accounts.csrf_refused"
    wrong = await browser.post_json("/v1/passkeys/registration/options", {}, csrf="0" * 64)
    assert wrong.status_code == 403
    foreign = await browser.http.post(
        "/v1/passkeys/registration/options",
        json={},
        headers={
            "X-CSRF-Token": await browser.csrf("/setup/passkey"),
            "Origin": "https://evil.example",
        },
    )
    assert foreign.status_code == 403


async def test_not_signed_in_is_a_problem_for_the_api_and_a_redirect_for_pages(
    app, browsers
) -> None:
    browser = browsers()
    api = await browser.http.get("/v1/me")
    assert api.status_code == 401
    assert api.json()["code"] == "accounts.not_signed_in"
    page = await browser.http.get("/home", follow_redirects=False)
    assert page.status_code == 303


async def test_every_answer_carries_the_security_headers(app, browsers) -> None:
    browser = browsers()
    page = await browser.http.get("/")
    problem = await browser.http.get("/v1/me", headers={"accept-language": "fr"})
    missing = await browser.http.get("/no-such-page")
    for response in (page, problem, missing):
        assert response.headers["content-security-policy"].startswith("default-src 'self'")
        assert "'unsafe-inline'" not in response.headers["content-security-policy"]
        assert response.headers["x-content-type-options"] == "nosniff"
        assert response.headers["x-frame-options"] == "DENY"
        assert response.headers["referrer-policy"] == "same-origin"
        # The app is served at https://: browsers must keep to it.
        assert response.headers["strict-transport-security"].startswith("max-age=31536000")
    assert problem.status_code == 401
    # A versioned static file is cached for good; an unversioned one is revalidated.
    stylesheet = re.search(r'href="(/static/[^"?]+\?v=[^"]+)"', page.text)
    assert stylesheet, "the welcome page links no versioned stylesheet"
    versioned = await browser.http.get(stylesheet.group(1))
    assert versioned.headers["cache-control"] == "public, max-age=31536000, immutable"
    plain = await browser.http.get(stylesheet.group(1).split("?")[0])
    assert plain.headers["cache-control"] == "no-cache"


async def test_a_passkey_from_another_site_is_refused(app, browsers) -> None:
    browser = browsers()
    await browser.sign_in("Ada", "ada@example.com")
    browser.passkey = SoftPasskey(rp_id="evil.example", origin="https://evil.example")
    refused = await browser.enrol_passkey(await browser.csrf("/setup/passkey"))
    assert refused.status_code == 400
    assert refused.json()["code"] == "accounts.passkey_registration_refused"
    # Nothing was kept: a right passkey can still be the first.
    browser.passkey = SoftPasskey(rp_id="localhost", origin="https://localhost")
    accepted = await browser.enrol_passkey(await browser.csrf("/setup/passkey"))
    assert accepted.status_code == 200


async def test_sessions_are_listed_and_revoked(app, browsers) -> None:
    first = browsers()
    await first.sign_in("Ada", "ada@example.com")
    subject = (await first.http.get("/v1/me")).json()["user_id"]
    assert subject
    second = browsers()
    persons = app[0].devidp.persons()
    await second.sign_in("", "", subject=persons[0].subject)
    sessions = (await first.http.get("/v1/sessions")).json()["sessions"]
    assert len(sessions) == 2
    other = next(s for s in sessions if not s["current"])
    gone = await first.http.delete(
        f"/v1/sessions/{other['id']}", headers={"X-CSRF-Token": await first.csrf("/setup/passkey")}
    )
    assert gone.status_code == 204
    assert (await second.http.get("/v1/me")).status_code == 401


async def test_recovery_with_a_one_time_code_and_the_time_lock(app, browsers) -> None:
    services, _ = app
    phone = browsers()
    await phone.sign_in("Ada", "ada@example.com")
    await phone.enrol_passkey(await phone.csrf("/setup/passkey"))
    subject = services.devidp.persons()[0].subject

    # The phone is lost: a new browser signs in with the same account.
    new = browsers()
    landed = await new.sign_in("", "", subject=subject)
    assert landed.headers["location"] == "/recovery"
    csrf = await new.csrf("/recovery")
    # Enrolling a passkey straight away is refused.
    assert (
        await new.post_json("/v1/passkeys/registration/options", {}, csrf=csrf)
    ).status_code == 403
    sent = await new.http.post("/recovery/send", data={"csrf_token": csrf}, follow_redirects=False)
    assert sent.status_code == 303
    code = latest_code(services, "ada@example.com")
    wrong = "000000" if code != "000000" else "111111"
    tried = await new.http.post("/recovery/verify", data={"csrf_token": csrf, "code": wrong})
    assert tried.status_code == 400
    assert "4 tries left" in tried.text
    right = await new.http.post(
        "/recovery/verify", data={"csrf_token": csrf, "code": code}, follow_redirects=False
    )
    assert right.status_code == 303
    enrolled = await new.enrol_passkey(csrf, label="New phone")
    assert enrolled.status_code == 200, enrolled.text
    assert enrolled.json()["enrolment"] == "recovery"
    listed = {
        a["label"]: a for a in (await new.http.get("/v1/authenticators")).json()["authenticators"]
    }
    assert listed["New phone"]["status"] == "pending"
    # The signer refuses an approval from the time-locked passkey…
    refused = await new.approve(
        csrf, {"action": "authenticator.remove", "authenticator_id": listed["Pixel 9"]["id"]}
    )
    removal = await new.post_json(
        f"/v1/authenticators/{listed['Pixel 9']['id']}/remove",
        {"approval_id": refused[0], "credential": refused[1]},
        csrf=csrf,
    )
    assert removal.status_code == 403, removal.text
    assert removal.json()["code"] == "signer.approval_refused"
    # …while the old phone (if found again) can cancel the recovery passkey.
    phone_csrf = await phone.csrf("/home")
    approval_id, credential = await phone.approve(
        phone_csrf,
        {"action": "authenticator.remove", "authenticator_id": listed["New phone"]["id"]},
    )
    cancelled = await phone.post_json(
        f"/v1/authenticators/{listed['New phone']['id']}/remove",
        {"approval_id": approval_id, "credential": credential},
        csrf=phone_csrf,
    )
    assert cancelled.status_code == 200, cancelled.text
    user_id = (await new.http.get("/v1/me")).json()["user_id"]
    events = [n.event for n in services.notifier.notices(user_id)]
    assert "recovery.passkey_added" in events
    assert "authenticator.removed" in events


async def test_one_time_codes_burn_after_too_many_wrong_tries(app, browsers) -> None:
    services, _ = app
    phone = browsers()
    await phone.sign_in("Ada", "ada@example.com")
    await phone.enrol_passkey(await phone.csrf("/setup/passkey"))
    new = browsers()
    await new.sign_in("", "", subject=services.devidp.persons()[0].subject)
    csrf = await new.csrf("/recovery")
    await new.http.post("/recovery/send", data={"csrf_token": csrf})
    code = latest_code(services, "ada@example.com")
    wrong = "000000" if code != "000000" else "111111"
    for _ in range(5):
        await new.http.post("/recovery/verify", data={"csrf_token": csrf, "code": wrong})
    burnt = await new.http.post("/recovery/verify", data={"csrf_token": csrf, "code": code})
    assert burnt.status_code == 400
    assert "ask for a new one" in burnt.text
    assert (
        await new.post_json("/v1/passkeys/registration/options", {}, csrf=csrf)
    ).status_code == 403


async def test_forged_and_replayed_callbacks_are_refused_with_a_page(app, browsers) -> None:
    browser = browsers()
    forged = await browser.http.get("/auth/callback/dev?code=abc&state=never-issued")
    assert forged.status_code == 400
    assert "sw_session" not in forged.headers.get("set-cookie", "")
    assert "Traceback" not in forged.text
    # A real sign-in, then its callback URL once more (a replayed authorization response).
    started = await browser.http.get("/sign-in/dev", follow_redirects=False)
    authorize = urlsplit(started.headers["location"])
    params = dict(parse_qsl(authorize.query))
    params.update(new_name="Ada", new_email="ada@example.com")
    chosen = await browser.http.post("/dev-idp/authorize", data=params, follow_redirects=False)
    callback = urlsplit(chosen.headers["location"])
    url = f"{callback.path}?{callback.query}"
    first = await browser.http.get(url, follow_redirects=False)
    assert first.status_code == 303
    replayed = await browsers().http.get(url, follow_redirects=False)
    assert replayed.status_code == 400
    assert "already" in replayed.text
    cancelled = await browser.http.get("/auth/callback/dev?error=access_denied&state=x")
    assert cancelled.status_code == 400
    assert "cancelled" in cancelled.text


async def test_api_errors_are_problem_details(app, browsers) -> None:
    browser = browsers()
    await browser.sign_in("Ada", "ada@example.com")
    csrf = await browser.csrf("/setup/passkey")
    malformed = await browser.post_json(
        "/v1/passkeys/registration", {"credential": {}, "unexpected": 1}, csrf=csrf
    )
    assert malformed.status_code == 422
    body = malformed.json()
    assert malformed.headers["content-type"] == "application/problem+json"
    assert body["type"] == "/problems/input.invalid"
    assert body["status"] == 422
    assert "unexpected" in body["detail"]
    no_ceremony = await browser.post_json(
        "/v1/passkeys/registration", {"credential": {"id": "x"}}, csrf=csrf
    )
    assert no_ceremony.status_code == 400
    assert no_ceremony.json()["code"] == "accounts.ceremony_invalid"
    unknown = await browser.http.delete(
        "/v1/sessions/0123456789abcdef0123456789abcdef", headers={"X-CSRF-Token": csrf}
    )
    assert unknown.status_code == 404
    assert unknown.json()["code"] == "accounts.session_unknown"


async def test_an_alias_is_proven_with_a_code_and_one_wallet_holds_it(app, browsers) -> None:
    services, _ = app
    ada = browsers()
    await ada.sign_in("Ada", "ada@example.com")
    csrf = await ada.csrf("/setup/passkey")
    bad = await ada.post_json("/v1/aliases", {"kind": "phone", "value": "12345"}, csrf=csrf)
    assert bad.status_code == 422
    assert bad.json()["code"] == "accounts.alias_invalid"
    started = await ada.post_json(
        "/v1/aliases", {"kind": "phone", "value": "+852 9123 4567"}, csrf=csrf
    )
    assert started.status_code == 202, started.text
    code = _code_to(services, "+85291234567", "verification")
    verified = await ada.post_json("/v1/aliases/verify", {"code": code}, csrf=csrf)
    assert verified.status_code == 200, verified.text
    assert verified.json()["alias"] == "+85291234567"
    assert (await ada.http.get("/v1/me")).json()["phone_verified"] is True
    # Bob proves the same number: refused after the code (the form never tells who holds it).
    bob = browsers()
    await bob.sign_in("Bob", "bob@example.com")
    bob_csrf = await bob.csrf("/setup/passkey")
    again = await bob.post_json(
        "/v1/aliases", {"kind": "phone", "value": "+85291234567"}, csrf=bob_csrf
    )
    assert again.status_code == 202
    taken = await bob.post_json(
        "/v1/aliases/verify",
        {"code": _code_to(services, "+85291234567", "verification")},
        csrf=bob_csrf,
    )
    assert taken.status_code == 409
    assert taken.json()["code"] == "accounts.alias_taken"


def _code_to(services: Services, to: str, word: str) -> str:
    for message in services.mailbox.messages(20, recipient=to):
        if word in message.subject:
            return re.search(r"\b(\d{6})\b", message.body).group(1)
    raise AssertionError(f"no {word} code was sent to {to}")
