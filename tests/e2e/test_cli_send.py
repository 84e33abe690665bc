"""``seiwallet send`` / ``receive`` / ``history`` against a live API on the local chain.

The CLI's device key (from ``seiwallet login``, approved by the passkey) approves the transfer;
the CLI first checks that the intent the API returned is the one it asked for.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from tests.e2e.live import Live, Person, live_server

from seiwallet.chain.localnet import LocalChain

pytestmark = pytest.mark.chain


@pytest.fixture
def chain_live(tmp_path: Path, clean_chain: LocalChain) -> Iterator[tuple[str, Live]]:
    with live_server(tmp_path, clean_chain) as running:
        yield running


def _cli(*args: str, home: Path, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SEIWALLET_")}
    env["SEIWALLET_DATA_DIR"] = str(home)
    return subprocess.run(
        [sys.executable, "-m", "seiwallet", *args],
        env=env,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def _login(base_url: str, person: Person, home: Path) -> Path:
    credentials = home / "device.json"
    process = subprocess.Popen(
        [
            sys.executable, "-m", "seiwallet", "login", "--api", base_url, "--no-browser",
            "--credentials", str(credentials), "--timeout", "60",
        ],
        env={
            **{k: v for k, v in os.environ.items() if not k.startswith("SEIWALLET_")},
            "SEIWALLET_DATA_DIR": str(home),
        },
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    assert process.stdout is not None
    code = re.search(r"code ([A-Z]{4}-[A-Z]{4})", process.stdout.readline())
    assert code
    assert person.approve_device(code.group(1)).status_code == 200
    _, err = process.communicate(timeout=60)
    assert process.returncode == 0, err
    return credentials


def test_send_approved_by_the_device_key(
    chain_live: tuple[str, Live], tmp_path: Path, people: list[httpx.Client]
) -> None:
    base_url, _ = chain_live
    ada = Person(base_url, people, name="Ada", email="ada@example.com")
    Person(base_url, people, name="Bob", email="bob@example.com")
    funded = ada.post("/v1/faucet", {"token": "USDC", "amount": "50"})
    assert funded.status_code == 200, funded.text
    home = tmp_path / "cli"
    credentials = _login(base_url, ada, home)

    sent = _cli(
        "send", "bob@example.com", "7.25", "--note", "tickets", "--yes", "--no-wait",
        "--idempotency-key", "cli-1", "--credentials", str(credentials), home=home,
    )  # fmt: skip
    assert sent.returncode == 0, sent.stderr
    assert "7.25 USDC" in sent.stdout
    assert "signed" in sent.stdout
    # The same key again: the same transfer, not a second one.
    again = _cli(
        "send", "bob@example.com", "7.25", "--note", "tickets", "--yes", "--no-wait",
        "--idempotency-key", "cli-1", "--credentials", str(credentials), home=home,
    )  # fmt: skip
    assert again.returncode == 0, again.stderr
    transfers = ada.http.get("/v1/transfers").json()["transfers"]
    assert len(transfers) == 1
    assert transfers[0]["status"] == "signed"
    assert transfers[0]["invitation"] is None

    too_much = _cli(
        "send", "bob@example.com", "60", "--yes", "--credentials", str(credentials), home=home
    )
    assert too_much.returncode == 1
    assert "not enough USDC" in too_much.stderr
    assert "Traceback" not in too_much.stderr
    bad_amount = _cli(
        "send", "bob@example.com", "1.2.3", "--yes", "--credentials", str(credentials), home=home
    )
    assert bad_amount.returncode == 1
    assert "amount" in bad_amount.stderr

    # Someone not on seiwallet yet: an invitation, whose terms the CLI checks before approving.
    invited = _cli(
        "send", "carol@example.com", "2", "--yes", "--no-wait",
        "--credentials", str(credentials), home=home,
    )  # fmt: skip
    assert invited.returncode == 0, invited.stderr
    assert "carol@example.com is not on seiwallet yet" in " ".join(invited.stdout.split())
    assert "signed" in invited.stdout

    history = _cli("history", "--credentials", str(credentials), home=home)
    assert history.returncode == 0, history.stderr
    assert "-7.25 USDC" in history.stdout
    receive = _cli("receive", "--amount", "3", "--credentials", str(credentials), home=home)
    assert receive.returncode == 0, receive.stderr
    assert "uint256=3000000" in receive.stdout
    assert "sei1" in receive.stdout


def test_send_without_login_fails_in_one_line(tmp_path: Path) -> None:
    result = _cli("send", "bob@example.com", "1", "--yes", home=tmp_path)
    assert result.returncode == 1
    assert "not logged in" in result.stderr
