"""The "Phone & e-mail" page over HTTP: send a code, prove it, and the alias is the wallet's.

A real signer process, the development identity provider and mailbox, SQLite and PostgreSQL.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect
from tests.e2e.test_browser_wallet import LiveWallet, sign_in
from tests.e2e.web_helpers import Browser
from tests.fixtures.browser import serve_app_at

from seiwallet.accounts.notices import SmtpMailer
from seiwallet.api.services import Services

PAGE = "/settings/aliases"
PHONE = "+852 9123 4567"
E164 = "+85291234567"


def code_sent_to(services: Services, to: str) -> str:
    """The newest alias code the development mailbox caught for ``to``."""
    for message in services.mailbox.messages(20, recipient=to):
        if "verification" in message.subject:
            return re.search(r"\b(\d{6})\b", message.body).group(1)
    raise AssertionError(f"no verification code was sent to {to}")


async def signed_in(browsers: Callable[[], Browser], name: str = "Ada") -> tuple[Browser, str]:
    browser = browsers()
    await browser.sign_in(name, f"{name.lower()}@example.com")
    return browser, await browser.csrf(PAGE)


async def send_code(browser: Browser, csrf: str, kind: str, value: str):
    return await browser.http.post(
        f"{PAGE}/send", data={"csrf_token": csrf, "kind": kind, "value": value}
    )


def text_of(html: str) -> str:
    """The page's words, tags dropped and spaces squeezed (HTML escapes undone for quotes)."""
    words = re.sub(r"<[^>]+>", " ", html).replace("&#39;", "'").replace("&amp;", "&")
    return " ".join(words.split())


async def test_a_phone_number_is_verified_with_the_code_from_the_mailbox(app, browsers) -> None:
    services, _ = app
    ada, csrf = await signed_in(browsers)
    page = await ada.http.get(PAGE)
    assert page.status_code == 200
    assert 'action="/settings/aliases/send"' in page.text
    assert "ada@example.com" in page.text  # the e-mail the sign-in verified is already an alias
    assert 'href="/dev/mailbox"' in page.text  # local profile: where the codes land

    sent = await send_code(ada, csrf, "phone", PHONE)
    assert sent.status_code == 303, sent.text
    assert sent.headers["location"] == PAGE
    step = await ada.http.get(PAGE)
    assert 'autocomplete="one-time-code"' in step.text
    assert "+852 •••• 67" in step.text  # masked: the page never echoes the whole number
    assert E164 not in step.text
    assert PHONE not in step.text
    assert "5 attempts left" in text_of(step.text)

    verified = await ada.http.post(
        f"{PAGE}/verify", data={"csrf_token": csrf, "code": code_sent_to(services, E164)}
    )
    assert verified.status_code == 303, verified.text
    assert verified.headers["location"] == f"{PAGE}?done=phone"
    done = await ada.http.get(verified.headers["location"])
    words = text_of(done.text)
    assert "Your phone number is verified. People can now pay you with it." in words
    assert PHONE in words
    assert 'action="/settings/aliases/send"' in done.text  # back to the form, no code waiting
    me = (await ada.http.get("/v1/me")).json()
    assert me["phone"] == E164
    assert me["phone_verified"] is True
    receive = await ada.http.get("/receive")
    assert PHONE in receive.text
    assert f'href="{PAGE}"' in receive.text


async def test_a_wrong_code_says_so_with_the_attempts_left(app, browsers) -> None:
    services, _ = app
    ada, csrf = await signed_in(browsers)
    assert (await send_code(ada, csrf, "phone", PHONE)).status_code == 303
    real = code_sent_to(services, E164)
    wrong = "000000" if real != "000000" else "111111"
    answer = await ada.http.post(f"{PAGE}/verify", data={"csrf_token": csrf, "code": wrong})
    assert answer.status_code == 400
    words = text_of(answer.text)
    assert "That code isn't right. Check it and try again." in words
    assert "4 attempts left" in words
    assert 'aria-invalid="true"' in answer.text
    assert 'action="/settings/aliases/verify"' in answer.text  # still on the code step
    # The right code still works after a wrong one.
    verified = await ada.http.post(f"{PAGE}/verify", data={"csrf_token": csrf, "code": real})
    assert verified.status_code == 303


async def test_a_used_up_code_sends_the_person_back_to_the_form(app, browsers) -> None:
    services, _ = app
    ada, csrf = await signed_in(browsers)
    await send_code(ada, csrf, "email", "ada.work@example.com")
    code = code_sent_to(services, "ada.work@example.com")
    assert (
        await ada.http.post(f"{PAGE}/verify", data={"csrf_token": csrf, "code": code})
    ).status_code == 303
    again = await ada.http.post(f"{PAGE}/verify", data={"csrf_token": csrf, "code": code})
    assert again.status_code == 400
    assert "That code can no longer be used" in text_of(again.text)
    assert 'action="/settings/aliases/send"' in again.text


async def test_an_invalid_number_is_explained_next_to_the_form(app, browsers) -> None:
    services, _ = app
    ada, csrf = await signed_in(browsers)
    answer = await send_code(ada, csrf, "phone", "12345")
    assert answer.status_code == 422
    words = text_of(answer.text)
    assert "That isn't a phone number we can use. Include the country code" in words
    assert 'value="12345"' in answer.text  # what they typed stays, to correct it
    assert 'value="phone" checked' in answer.text
    bad_mail = await send_code(ada, csrf, "email", "ada@")
    assert bad_mail.status_code == 422
    assert "That isn't an e-mail address we can use." in text_of(bad_mail.text)
    unknown = await send_code(ada, csrf, "fax", "+85291234567")
    assert unknown.status_code == 422
    assert not services.mailbox.messages(20, recipient=E164)


async def test_errors_are_in_the_reader_s_language(app, browsers) -> None:
    ada, csrf = await signed_in(browsers)
    answer = await ada.http.post(
        f"{PAGE}/send",
        data={"csrf_token": csrf, "kind": "phone", "value": "12345"},
        headers={"Accept-Language": "fr"},
    )
    assert answer.status_code == 422
    assert "Ce n’est pas un numéro de téléphone utilisable." in text_of(answer.text)


async def test_a_form_without_its_csrf_token_is_refused(app, browsers) -> None:
    services, _ = app
    ada, csrf = await signed_in(browsers)
    refused = await ada.http.post(f"{PAGE}/send", data={"kind": "phone", "value": PHONE})
    assert refused.status_code == 403
    forged = await ada.http.post(
        f"{PAGE}/send", data={"csrf_token": "forged", "kind": "phone", "value": PHONE}
    )
    assert forged.status_code == 403
    assert not services.mailbox.messages(20, recipient=E164)
    await send_code(ada, csrf, "phone", PHONE)
    no_token = await ada.http.post(f"{PAGE}/verify", data={"code": code_sent_to(services, E164)})
    assert no_token.status_code == 403
    assert (await ada.http.get("/v1/me")).json()["phone_verified"] is False


async def test_an_alias_someone_else_holds_is_refused_only_after_the_code(app, browsers) -> None:
    services, _ = app
    ada, ada_csrf = await signed_in(browsers, "Ada")
    await send_code(ada, ada_csrf, "phone", PHONE)
    await ada.http.post(
        f"{PAGE}/verify", data={"csrf_token": ada_csrf, "code": code_sent_to(services, E164)}
    )
    bob, bob_csrf = await signed_in(browsers, "Bob")
    started = await send_code(bob, bob_csrf, "phone", PHONE)
    assert started.status_code == 303  # the same answer as for a free number: no probing
    taken = await bob.http.post(
        f"{PAGE}/verify", data={"csrf_token": bob_csrf, "code": code_sent_to(services, E164)}
    )
    assert taken.status_code == 409
    assert "already receives payments for another seiwallet account" in text_of(taken.text)
    assert (await bob.http.get("/v1/me")).json()["phone_verified"] is False


async def test_a_new_code_goes_to_the_same_place(app, browsers) -> None:
    services, _ = app
    ada, csrf = await signed_in(browsers)
    await send_code(ada, csrf, "phone", PHONE)
    first = code_sent_to(services, E164)
    resent = await ada.http.post(f"{PAGE}/resend", data={"csrf_token": csrf})
    assert resent.status_code == 303
    assert len(services.mailbox.messages(20, recipient=E164)) == 2
    newest = code_sent_to(services, E164)
    if newest != first:  # the first code was retired by the new one
        stale = await ada.http.post(f"{PAGE}/verify", data={"csrf_token": csrf, "code": first})
        assert stale.status_code == 400
    # "Use another number" shows the form while a code is waiting.
    other = await ada.http.get(f"{PAGE}?step=start")
    assert 'action="/settings/aliases/send"' in other.text


async def test_the_page_is_linked_and_needs_a_sign_in(app, browsers) -> None:
    stranger = browsers()
    away = await stranger.http.get(PAGE, follow_redirects=False)
    assert away.status_code == 303
    assert away.headers["location"] == f"/?next={PAGE}"
    ada, _csrf = await signed_in(browsers)
    devices = await ada.http.get("/settings/devices")
    assert f'href="{PAGE}"' in devices.text
    page = await ada.http.get(PAGE)
    assert re.search(r'href="/settings/devices" aria-current="page"', page.text)


# -- in Chromium at phone size ------------------------------------------------------------------
@pytest.fixture
def wallet_url(tmp_path: Path) -> Iterator[tuple[str, LiveWallet]]:
    live = LiveWallet(tmp_path)
    try:
        with serve_app_at(live.make) as base_url:
            yield base_url, live
    finally:
        live.close()


def test_verify_a_phone_number_on_a_phone(
    wallet_url: tuple[str, LiveWallet],
    phone: Page,
    screenshots: Callable[[Page, str], Path],
) -> None:
    base_url, live = wallet_url
    sign_in(phone, base_url, new=("Ada Lovelace", "ada@example.com"))
    expect(phone).to_have_url(f"{base_url}/setup/passkey")
    phone.goto(f"{base_url}/settings/devices")
    phone.get_by_role("link", name=re.compile("Phone & e-mail")).click()
    expect(phone.get_by_role("heading", level=1)).to_have_text("Phone & e-mail")
    screenshots(phone, "aliases")

    phone.get_by_label("Your phone number or e-mail address").fill("12345")
    phone.get_by_role("button", name="Send code").click()
    expect(phone.get_by_role("alert")).to_contain_text("isn't a phone number we can use")
    screenshots(phone, "aliases-invalid")

    phone.get_by_label("Your phone number or e-mail address").fill(PHONE)
    phone.get_by_role("button", name="Send code").click()
    expect(phone.get_by_text("+852 •••• 67")).to_be_visible()
    code = code_sent_to(live.services, E164)
    phone.get_by_label("6-digit code").fill("000000" if code != "000000" else "111111")
    phone.get_by_role("button", name="Verify").click()
    expect(phone.get_by_role("alert")).to_contain_text("That code isn't right")
    screenshots(phone, "aliases-wrong-code")

    phone.get_by_label("6-digit code").fill(code)
    phone.get_by_role("button", name="Verify").click()
    expect(phone.get_by_role("status").first).to_contain_text("Your phone number is verified")
    expect(phone.locator(".chip-verified", has_text=PHONE)).to_be_visible()
    screenshots(phone, "aliases-verified")


async def test_a_server_without_text_messages_says_so_before_making_a_code(app, browsers) -> None:
    services, _ = app
    ada, csrf = await signed_in(browsers)
    # A production mailer: e-mail only (no SMS gateway configured).
    services.aliases._codes._mailer = SmtpMailer(
        host="smtp.invalid", port=587, sender="wallet@example.com"
    )
    answer = await send_code(ada, csrf, "phone", E164)
    assert answer.status_code == 409
    assert "We can't send text messages from this server yet" in text_of(answer.text)
    assert 'value="phone" checked' in answer.text
    # No code was made (it would have counted against the hour's limit, unsent): the page
    # still offers the form, not a code to enter.
    assert not services.mailbox.messages(20, recipient=E164)
    again = await ada.http.get(PAGE)
    assert 'autocomplete="one-time-code"' not in again.text
