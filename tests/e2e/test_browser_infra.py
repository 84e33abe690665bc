"""The browser-test infrastructure end to end: Debian's Chromium under Playwright, a passkey from
Chromium's virtual authenticator, and the ``webauthn`` library verifying it server-side.

A tiny Starlette page registers a passkey (``navigator.credentials.create``), then signs in with
it twice (``navigator.credentials.get``), and posts each result as JSON with base64url fields, as
the wallet's web app will. The test verifies them as the relying party ``localhost`` does. A
second test shows the failures the wallet's tests will need: a failed user verification and a lost
phone (a fresh context with a fresh authenticator) both end in ``NotAllowedError`` at once.

Never call ``navigator.credentials`` on a page without a virtual authenticator: it does not fail,
it hangs for minutes (and ``page.evaluate`` has no timeout).
"""

from __future__ import annotations

import base64
import json
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Page, expect
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse
from starlette.routing import Route
from tests.fixtures.browser import VirtualAuthenticator, serve_app
from webauthn import (
    generate_registration_options,
    options_to_json,
    verify_authentication_response,
    verify_registration_response,
)
from webauthn.helpers import base64url_to_bytes, bytes_to_base64url
from webauthn.helpers.cose import COSEAlgorithmIdentifier
from webauthn.helpers.structs import (
    AuthenticatorSelectionCriteria,
    ResidentKeyRequirement,
    UserVerificationRequirement,
)

RP_ID = "localhost"
#: Each test (fixtures included) stays well under this.
BUDGET_SECONDS = 20

PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Passkey check</title>
<style>
  body { font-family: "Liberation Sans", sans-serif; margin: 24px; color: #14213d; }
  h1 { font-size: 22px; }
  button { font: inherit; font-size: 18px; width: 100%; padding: 14px; border: 0;
           border-radius: 12px; background: #14213d; color: white; }
  #status { margin-top: 20px; font-size: 16px; }
  li { margin: 4px 0; }
</style>
</head>
<body>
<h1>Passkey check</h1>
<button id="go">Create passkey and sign in</button>
<p id="status">Idle</p>
<ol id="log"></ol>
<script>
const SETUP = __SETUP__;

const fromB64url = (text) => {
  const base64 = text.replace(/-/g, "+").replace(/_/g, "/");
  return Uint8Array.from(atob(base64 + "===".slice((base64.length + 3) % 4)),
                         (c) => c.charCodeAt(0));
};
const toB64url = (buffer) => btoa(String.fromCharCode(...new Uint8Array(buffer)))
  .replace(/\\+/g, "-").replace(/\\//g, "_").replace(/=+$/, "");
const say = (text) => {
  document.getElementById("status").textContent = text;
  const item = document.createElement("li");
  item.textContent = text;
  document.getElementById("log").appendChild(item);
};
const post = async (path, body) => {
  const answer = await fetch(path, {
    method: "POST", headers: {"content-type": "application/json"}, body: JSON.stringify(body),
  });
  if (!answer.ok) throw new Error(path + " answered " + answer.status);
};

// Registers a passkey, posts it, and answers its id (base64url).
async function register() {
  const options = SETUP.registration;
  const created = await navigator.credentials.create({publicKey: {
    ...options,
    challenge: fromB64url(options.challenge),
    user: {...options.user, id: fromB64url(options.user.id)},
  }});
  await post("/registration", {
    id: created.id,
    rawId: toB64url(created.rawId),
    type: created.type,
    response: {
      clientDataJSON: toB64url(created.response.clientDataJSON),
      attestationObject: toB64url(created.response.attestationObject),
      transports: created.response.getTransports(),
    },
    authenticatorAttachment: created.authenticatorAttachment,
    clientExtensionResults: created.getClientExtensionResults(),
  });
  say("Passkey created");
  return toB64url(created.rawId);
}

// Signs in with that passkey over the challenge (base64url) and posts the assertion.
async function signIn(credentialId, challenge) {
  const got = await navigator.credentials.get({publicKey: {
    challenge: fromB64url(challenge),
    rpId: SETUP.rpId,
    allowCredentials: [{type: "public-key", id: fromB64url(credentialId)}],
    userVerification: "required",
    timeout: 60000,
  }});
  await post("/assertion", {
    id: got.id,
    rawId: toB64url(got.rawId),
    type: got.type,
    response: {
      clientDataJSON: toB64url(got.response.clientDataJSON),
      authenticatorData: toB64url(got.response.authenticatorData),
      signature: toB64url(got.response.signature),
      userHandle: got.response.userHandle ? toB64url(got.response.userHandle) : null,
    },
    authenticatorAttachment: got.authenticatorAttachment,
    clientExtensionResults: got.getClientExtensionResults(),
  });
  say("Signed in");
}

async function run() {
  const credentialId = await register();
  for (const challenge of SETUP.assertionChallenges) await signIn(credentialId, challenge);
  say("Done");
}

document.getElementById("go").addEventListener("click", () => {
  say("Working");
  run().catch((error) => say("Failed: " + error.name + ": " + error.message));
});
</script>
</body>
</html>
"""


@dataclass
class PasskeySite:
    """The served page, what it was set up with, and what the browser posted back."""

    base_url: str
    registration_challenge: bytes
    assertion_challenges: list[bytes]
    received: dict[str, list[dict[str, Any]]] = field(
        default_factory=lambda: {"registration": [], "assertion": []}
    )


def passkey_app(setup: dict[str, Any], received: dict[str, list[dict[str, Any]]]) -> Starlette:
    """The page, and two endpoints that keep what the browser posts for the test to verify."""

    async def page(request: Request) -> HTMLResponse:
        return HTMLResponse(PAGE.replace("__SETUP__", json.dumps(setup)))

    def keeper(kind: str) -> Any:
        async def keep(request: Request) -> JSONResponse:
            received[kind].append(await request.json())
            return JSONResponse({"ok": True})

        return keep

    return Starlette(
        routes=[
            Route("/", page),
            Route("/registration", keeper("registration"), methods=["POST"]),
            Route("/assertion", keeper("assertion"), methods=["POST"]),
        ]
    )


@pytest.fixture
def passkey_site() -> Iterator[PasskeySite]:
    started = time.monotonic()
    registration = generate_registration_options(
        rp_id=RP_ID,
        rp_name="seiwallet test",
        user_name="alice",
        user_id=os.urandom(16),
        authenticator_selection=AuthenticatorSelectionCriteria(
            resident_key=ResidentKeyRequirement.REQUIRED,
            user_verification=UserVerificationRequirement.REQUIRED,
        ),
        supported_pub_key_algs=[COSEAlgorithmIdentifier.ECDSA_SHA_256],
    )
    assertion_challenges = [os.urandom(32), os.urandom(32)]
    setup = {
        "rpId": RP_ID,
        "registration": json.loads(options_to_json(registration)),
        "assertionChallenges": [bytes_to_base64url(c) for c in assertion_challenges],
    }
    received: dict[str, list[dict[str, Any]]] = {"registration": [], "assertion": []}
    with serve_app(passkey_app(setup, received)) as base_url:
        assert base_url.startswith("http://localhost:")
        yield PasskeySite(base_url, registration.challenge, assertion_challenges, received)
    assert time.monotonic() - started < BUDGET_SECONDS


def register_and_sign_in_twice(phone: Page, site: PasskeySite) -> None:
    phone.goto(site.base_url)
    phone.get_by_role("button", name="Create passkey and sign in").click()
    expect(phone.locator("#status")).to_have_text("Done")


def sign_in(phone: Page, credential_id: str) -> str:
    """One more sign-in with that credential: "ok", or the DOMException's name."""
    result: str = phone.evaluate(
        """async ([credentialId, challenge]) => {
             try { await signIn(credentialId, challenge); return "ok"; }
             catch (error) { say("Failed: " + error.name); return error.name; }
           }""",
        [credential_id, bytes_to_base64url(os.urandom(32))],
    )
    return result


def test_passkey_registers_and_signs_in_with_the_virtual_authenticator(
    phone: Page,
    authenticator_factory: Callable[..., VirtualAuthenticator],
    screenshots: Callable[[Page, str], Path],
    passkey_site: PasskeySite,
) -> None:
    site = passkey_site
    authenticator = authenticator_factory(phone)
    assert authenticator.credentials() == []

    register_and_sign_in_twice(phone, site)
    assert screenshots(phone, "passkey-done").is_file()

    # The registration: user verified, ES256, from our origin and RP id.
    assert len(site.received["registration"]) == 1
    registered = verify_registration_response(
        credential=site.received["registration"][0],
        expected_challenge=site.registration_challenge,
        expected_rp_id=RP_ID,
        expected_origin=site.base_url,
        require_user_verification=True,
        supported_pub_key_algs=[COSEAlgorithmIdentifier.ECDSA_SHA_256],
    )
    assert registered.user_verified
    assert registered.credential_type == "public-key"

    # Each sign-in verifies against the stored key, and the counter only goes up.
    assert len(site.received["assertion"]) == len(site.assertion_challenges)
    sign_count = registered.sign_count
    for posted, challenge in zip(
        site.received["assertion"], site.assertion_challenges, strict=True
    ):
        verified = verify_authentication_response(
            credential=posted,
            expected_challenge=challenge,
            expected_rp_id=RP_ID,
            expected_origin=site.base_url,
            credential_public_key=registered.credential_public_key,
            credential_current_sign_count=sign_count,
            require_user_verification=True,
        )
        assert verified.credential_id == registered.credential_id
        assert verified.user_verified
        assert verified.new_sign_count > sign_count
        sign_count = verified.new_sign_count

    # The phone holds exactly that passkey, discoverable, at the last counter.
    (held,) = authenticator.credentials()
    assert base64.b64decode(held["credentialId"]) == registered.credential_id
    assert held["rpId"] == RP_ID
    assert held["isResidentCredential"] is True
    assert held["signCount"] == sign_count


def test_failed_user_verification_and_a_lost_phone_are_refused_by_the_browser(
    phone: Page,
    new_phone: Callable[[], Page],
    authenticator_factory: Callable[..., VirtualAuthenticator],
    screenshots: Callable[[Page, str], Path],
    passkey_site: PasskeySite,
) -> None:
    site = passkey_site
    authenticator = authenticator_factory(phone)
    register_and_sign_in_twice(phone, site)
    credential_id = site.received["registration"][0]["rawId"]
    posted = len(site.received["assertion"])

    # The biometric fails: the browser refuses at once, nothing reaches the server.
    authenticator.set_user_verified(False)
    assert sign_in(phone, credential_id) == "NotAllowedError"
    screenshots(phone, "user-not-verified")
    authenticator.set_user_verified(True)
    assert sign_in(phone, credential_id) == "ok"
    assert len(site.received["assertion"]) == posted + 1

    # The phone is lost: a new one (fresh context, fresh authenticator) has no such passkey.
    replacement = new_phone()
    fresh = authenticator_factory(replacement)
    replacement.goto(site.base_url)
    assert fresh.credentials() == []
    assert sign_in(replacement, credential_id) == "NotAllowedError"
    screenshots(replacement, "lost-phone")
    assert len(site.received["assertion"]) == posted + 1
    assert base64url_to_bytes(credential_id) == base64.b64decode(
        authenticator.credentials()[0]["credentialId"]
    )
