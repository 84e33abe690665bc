"""Webhook signatures: the signer, the library's check and the documented snippet *verbatim*.

The snippet a merchant copies from ``docs/architecture.md`` is extracted from the page and run
here: it must accept what we sign, refuse a forged or altered one, and refuse a replay outside
its tolerance window.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from seiwallet.config import PaymentSettings
from seiwallet.payments.errors import WebhookUrlInvalid
from seiwallet.payments.webhooks import backoff, check_url, sign, verify_signature

DOCS = Path(__file__).resolve().parents[2] / "docs" / "architecture.md"
MARKER = "<!-- webhook-verification-snippet -->"


def documented_verifier() -> Callable[..., bool]:
    text = DOCS.read_text()
    assert MARKER in text, "the docs lost the webhook verification snippet"
    block = re.search(r"```python\n(.*?)```", text[text.index(MARKER) :], re.DOTALL)
    assert block is not None
    namespace: dict[str, Any] = {}
    exec(compile(block.group(1), "verification-snippet", "exec"), namespace)
    verifier: Callable[..., bool] = namespace["verify_seiwallet_signature"]
    return verifier


VERIFY = documented_verifier()
secrets_ = st.text(min_size=1, max_size=64).filter(lambda s: "\x00" not in s)
bodies = st.binary(max_size=2048)


@given(secret=secrets_, body=bodies)
def test_what_we_sign_the_snippet_accepts(secret: str, body: bytes) -> None:
    header = sign(secret, body, int(time.time()))
    assert VERIFY(secret, header, body)
    assert verify_signature(secret, header, body)


@given(secret=secrets_, other=secrets_, body=bodies, extra=st.binary(min_size=1, max_size=8))
def test_forged_or_altered_is_refused(secret: str, other: str, body: bytes, extra: bytes) -> None:
    now = int(time.time())
    header = sign(secret, body, now)
    assert not VERIFY(secret, header, body + extra)  # body altered
    if other != secret:
        assert not VERIFY(other, header, body)  # signed with another secret
        assert not VERIFY(secret, sign(other, body, now), body)
    # The timestamp is signed too: moving it breaks the signature.
    moved = header.replace(f"t={now}", f"t={now + 1}")
    assert not VERIFY(secret, moved, body)
    assert not verify_signature(secret, moved, body)


@given(offset=st.integers(301, 10**6), sign_=st.sampled_from([1, -1]))
def test_outside_the_tolerance_window_is_refused(offset: int, sign_: int) -> None:
    stamp = int(time.time()) + sign_ * offset
    header = sign("whsec_x", b"{}", stamp)
    assert not VERIFY("whsec_x", header, b"{}")
    assert verify_signature("whsec_x", header, b"{}", now=stamp)  # fine at its own time
    assert not verify_signature("whsec_x", header, b"{}", now=stamp - sign_ * offset)


@pytest.mark.parametrize(
    "header",
    ["", "garbage", "t=,v1=", "t=abc,v1=00", "v1=00", "t=1", ",,,", "t=1=2,v1"],
)
def test_malformed_headers_are_refused(header: str) -> None:
    assert not VERIFY("whsec_x", header, b"{}")
    assert not verify_signature("whsec_x", header, b"{}")


def test_a_header_with_two_signatures_passes_if_one_matches() -> None:
    now = int(time.time())
    good = sign("whsec_new", b"{}", now)
    header = f"{good},v1={'0' * 64}"
    assert VERIFY("whsec_new", header, b"{}")


def test_backoff_doubles_with_jitter_up_to_the_cap() -> None:
    settings = PaymentSettings(webhook_backoff_initial_seconds=10, webhook_backoff_max_seconds=3600)
    assert backoff(1, settings, lambda: 0.5) == pytest.approx(10)
    assert backoff(2, settings, lambda: 0.5) == pytest.approx(20)
    assert backoff(4, settings, lambda: 0.0) == pytest.approx(64)
    assert backoff(4, settings, lambda: 1.0) == pytest.approx(96)
    assert backoff(50, settings, lambda: 0.5) == pytest.approx(3600)
    # Three days of doubling from 10 s, capped at 6 h: ~20 tries before giving up.
    default = PaymentSettings()
    elapsed, tries = 0.0, 0
    while elapsed < default.webhook_give_up_seconds:
        tries += 1
        elapsed += backoff(tries, default, lambda: 0.5)
    assert 15 <= tries <= 25


@pytest.mark.parametrize(
    ("url", "allow_http", "ok"),
    [
        ("https://shop.example/hooks", False, True),
        ("http://shop.example/hooks", False, False),
        ("http://127.0.0.1:9000/hooks", True, True),
        ("https://127.0.0.1/hooks", False, False),
        ("https://10.0.0.5/hooks", False, False),
        ("https://user:pw@shop.example/", False, False),
        ("ftp://shop.example/", False, False),
        ("https:///nohost", False, False),
    ],
)
def test_endpoint_urls(url: str, allow_http: bool, ok: bool) -> None:
    if ok:
        assert check_url(url, allow_http=allow_http) == url
    else:
        with pytest.raises(WebhookUrlInvalid):
            check_url(url, allow_http=allow_http)
