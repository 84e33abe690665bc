"""``seiwallet compliance``: show, check and refresh-lists as an operator runs them, and their
one-line errors with a non-zero exit on bad input."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

VECTORS = Path(__file__).resolve().parents[1] / "vectors" / "sanctions"
OUTSIDE = "0x8ba1f109551bD432803012645Ac136ddd64DBA72"
LISTED = "0x1DA5821544E25C636C1417BA96ADE4CF6D2F9B5A"


@pytest.fixture
def run(tmp_path: Path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("SEIWALLET_")}
    env.update(
        SEIWALLET_DATA_DIR=str(tmp_path), SEIWALLET_DATABASE_URL=f"sqlite:///{tmp_path}/c.sqlite3"
    )

    def invoke(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "seiwallet", "compliance", *args],
            env=env,
            check=False,
            capture_output=True,
            text=True,
            timeout=120,
        )

    return invoke


@pytest.mark.parametrize(("code", "status"), [("HK", "live"), ("EU", "live"), ("SG", "pending")])
def test_show_prints_the_effective_rules_with_status_and_sources(run, code, status) -> None:
    shown = run("show", code, "--json")
    assert shown.returncode == 0, shown.stderr
    rules = json.loads(shown.stdout)
    assert (rules["code"], rules["status"]) == (code, status)
    assert rules["status_source"]
    assert all(rules["tiers"][tier]["source"] for tier in ("0", "1", "2"))
    assert rules["travel_rule"]["source"]
    assert len(rules["rules_version"]) == 64


def test_check_decides_with_the_rule_and_lists_refresh_from_files(run) -> None:
    asked = run(
        "check", "--from", OUTSIDE, "--to", "0x" + "42" * 20, "--token", "EURC",
        "--amount", "1500", "--country", "FR", "--tier", "2", "--json",
    )  # fmt: skip
    assert asked.returncode == 0, asked.stderr
    decision = json.loads(asked.stdout)
    assert (decision["outcome"], decision["rule"]) == (
        "needs_information",
        "travel_rule.beneficiary",
    )
    assert "ownership_proof_if_self_hosted" in decision["needs"]
    pending = run(
        "check", "--from", OUTSIDE, "--to", LISTED, "--token", "USDC", "--amount", "1",
        "--country", "SG", "--json",
    )  # fmt: skip
    assert json.loads(pending.stdout)["rule"] == "jurisdiction.pending"
    loaded = run("refresh-lists", "--ofac", str(VECTORS / "sdn_classic_sample.xml"), "--json")
    assert loaded.returncode == 0, loaded.stderr
    assert json.loads(loaded.stdout)[0]["addresses"] == 2
    listed = run(
        "check", "--from", OUTSIDE, "--to", LISTED, "--token", "USDC", "--amount", "1", "--json"
    )
    assert json.loads(listed.stdout)["rule"] == "sanctions.recipient"


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (("show", "ZZ"), "unknown country or jurisdiction code 'ZZ'"),
        (("check", "--from", "x", "--to", OUTSIDE, "--token", "USDC", "--amount", "1"), "--from"),
        (("check", "--from", OUTSIDE, "--to", OUTSIDE, "--token", "USDC", "--amount", "-1"), "amo"),
        (
            ("check", "--from", OUTSIDE, "--to", OUTSIDE, "--token", "USDC", "--amount", "1",
             "--country", "ZZ"),
            "ZZ",
        ),
        (("refresh-lists",), "--ofac"),
        (("refresh-lists", "--csv", "/nonexistent.csv"), "cannot read the sanctions list"),
    ],
)  # fmt: skip
def test_bad_input_is_one_line_and_a_non_zero_exit(run, args, words) -> None:
    refused = run(*args)
    assert refused.returncode != 0
    assert words in refused.stderr
    assert "Traceback" not in refused.stderr
