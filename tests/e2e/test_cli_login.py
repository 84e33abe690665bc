"""``seiwallet login`` end to end: the real command against a live API, approved by a passkey.

The CLI makes its device key and polls; the person (here: a browser profile with a software
passkey, over real HTTP) approves exactly that key on ``/device``; the signer adds it; the CLI
stores its token and key 0600 and ``whoami`` works with them. Refusal and misuse: a denied or
unknown code, a token asked for before approval, a login with a non-P-256 key.
"""

from __future__ import annotations

import os
import re
import stat
import subprocess
import sys
from pathlib import Path

import httpx
from tests.e2e.live import Live, Person
from tests.fixtures.authenticators import SoftDeviceKey


def _cli(*args: str, home: Path) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SEIWALLET_")}
    env["SEIWALLET_DATA_DIR"] = str(home)
    return subprocess.Popen(
        [sys.executable, "-m", "seiwallet", *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_login_registers_a_device_key_approved_by_the_passkey(
    live: tuple[str, Live], tmp_path: Path, people: list[httpx.Client]
) -> None:
    base_url, _ = live
    person = Person(base_url, people)
    credentials = tmp_path / "cli" / "device.json"
    login = _cli(
        "login", "--api", base_url, "--no-browser", "--credentials", str(credentials),
        "--label", "CI laptop", "--timeout", "60",
        home=tmp_path / "cli-home",
    )  # fmt: skip
    assert login.stdout is not None
    first_line = login.stdout.readline()
    code = re.search(r"code ([A-Z]{4}-[A-Z]{4})", first_line)
    assert code, first_line
    approved = person.approve_device(code.group(1))
    assert approved.status_code == 200, approved.text
    out, err = login.communicate(timeout=60)
    assert login.returncode == 0, err
    assert "Logged in" in out
    assert stat.S_IMODE(credentials.stat().st_mode) == 0o600
    devices = person.http.get("/v1/authenticators").json()["authenticators"]
    added = next(d for d in devices if d["kind"] == "device")
    assert added["label"] == "CI laptop"
    assert added["status"] == "active"
    assert added["enrolment"] == "approved"
    whoami = _cli("whoami", "--credentials", str(credentials), home=tmp_path / "cli-home")
    out, err = whoami.communicate(timeout=60)
    assert whoami.returncode == 0, err
    assert "Grace Hopper" in out
    assert re.search(r"0x[0-9a-fA-F]{40}", out)


def test_device_login_errors_follow_rfc_8628(
    live: tuple[str, Live], people: list[httpx.Client]
) -> None:
    base_url, _ = live
    http = httpx.Client(base_url=base_url, timeout=10)
    people.append(http)
    bad_key = http.post("/v1/device/code", json={"public_key": "04" + "00" * 64})
    assert bad_key.status_code == 422
    assert bad_key.headers["content-type"] == "application/problem+json"
    started = http.post(
        "/v1/device/code",
        json={"public_key": SoftDeviceKey().public_key.hex(), "label": "x"},
    ).json()
    pending = http.post("/v1/device/token", json={"device_code": started["device_code"]})
    assert pending.status_code == 400
    assert pending.json()["error"] == "authorization_pending"
    too_fast = http.post("/v1/device/token", json={"device_code": started["device_code"]})
    assert too_fast.json()["error"] == "slow_down"
    unknown = http.post("/v1/device/token", json={"device_code": "nope"})
    assert unknown.json()["error"] == "expired_token"
    person = Person(base_url, people)
    refused = person.post("/v1/device/approve", {"user_code": "ZZZZ-ZZZZ"})
    assert refused.status_code == 400
    assert refused.json()["code"] == "accounts.device_login_expired"


def test_login_fails_in_one_line_when_the_api_is_unreachable(tmp_path: Path) -> None:
    login = _cli(
        "login", "--api", "http://127.0.0.1:9", "--no-browser",
        "--credentials", str(tmp_path / "d.json"), home=tmp_path,
    )  # fmt: skip
    _out, err = login.communicate(timeout=60)
    assert login.returncode == 1
    assert "cannot reach the seiwallet API" in err
    assert "Traceback" not in err
