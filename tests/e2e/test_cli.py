"""The command line against the real chain and database: useful output, and for bad input one
line that says what to fix, a non-zero exit and never a traceback."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from eth_account import Account
from tests.fixtures.chain import ChainKit
from typer.testing import CliRunner

from seiwallet.chain.deploy import blacklist, write_manifest
from seiwallet.chain.localnet import LocalChain
from seiwallet.cli.app import app
from seiwallet.cli.main import load_commands


@pytest.fixture
def cli_env(
    local_chain: LocalChain, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> dict[str, str]:
    """Environment pointing the CLI at the session chain, with a fresh data dir and database."""
    for name in list(os.environ):
        if name.startswith("SEIWALLET_") and name not in ("SEIWALLET_TEST_POSTGRES_URL",):
            monkeypatch.delenv(name)
    write_manifest(local_chain.deployment, tmp_path / "deployments" / "local.json")
    env = {
        "SEIWALLET_PROFILE": "local",
        "SEIWALLET_DATA_DIR": str(tmp_path),
        "SEIWALLET_RPC_URL": local_chain.rpc_url,
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return env


load_commands([])


def run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(app, list(args))
    return result.exit_code, result.stdout, result.stderr


def assert_one_line_error(code: int, stderr: str, *fragments: str) -> None:
    assert code != 0
    assert "Traceback" not in stderr
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1, stderr
    assert lines[0].startswith("error: ")
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


@pytest.mark.chain
def test_status_json_shows_chain_contracts_and_token_domains(
    cli_env: dict[str, str], local_chain: LocalChain
) -> None:
    code, out, err = run("db", "upgrade")
    assert code == 0, err
    code, out, err = run("status", "--json")
    assert code == 0, err
    status = json.loads(out)
    deployment = local_chain.deployment
    assert status["chain_id"] == deployment.chain_id
    assert status["router"] == {"address": deployment.router, "deployed": True}
    domains = {token["symbol"]: token["eip712_domain"] for token in status["tokens"]}
    assert domains["USDC"] == {
        "name": "USD Coin",
        "version": "2",
        "chainId": deployment.chain_id,
        "verifyingContract": deployment.token("USDC").address,
    }
    assert domains["EURC"]["verifyingContract"] == deployment.token("EURC").address
    assert all(int(s["balance_wei"]) > 0 for s in status["sponsors"])
    assert status["database"]["up_to_date"] is True


@pytest.mark.chain
def test_faucet_then_balance(cli_env: dict[str, str], kit: ChainKit) -> None:
    someone = Account.create().address
    code, out, err = run("faucet", someone, "12.5", "--token", "eurc")
    assert code == 0, err
    code, out, err = run("balance", someone, "-t", "EURC")
    assert code == 0, err
    assert "12.5 EURC" in out
    assert kit.balance(someone, "EURC") == 12_500_000


@pytest.mark.chain
def test_blacklisted_address_is_refused_with_a_clear_message(
    cli_env: dict[str, str], kit: ChainKit
) -> None:
    someone = Account.create().address
    blacklist(kit.w3, kit.deployment, "USDC", someone, accounts=kit.accounts)
    code, _, err = run("faucet", someone, "1")
    assert_one_line_error(code, err, "blacklisted")
    code, out, _ = run("balance", someone)
    assert code == 0
    assert "blacklisted" in out


@pytest.mark.chain
def test_unreachable_rpc_names_the_setting(
    cli_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SEIWALLET_RPC_URL", "http://127.0.0.1:9")
    code, _, err = run("balance", Account.create().address)
    assert_one_line_error(code, err, "http://127.0.0.1:9", "SEIWALLET_RPC_URL")


def test_malformed_rpc_url_names_the_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SEIWALLET_RPC_URL", "localhost:8545")
    code, _, err = run("status")
    assert_one_line_error(code, err, "SEIWALLET_RPC_URL", "http")


@pytest.mark.chain
def test_chain_id_mismatch_with_the_profile(
    cli_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SEIWALLET_PROFILE", "sei-testnet")
    monkeypatch.setenv("SEIWALLET_TOKENS", '{"USDC": "0x4fCF1784B31630811181f670Aea7A7bEF803eaED"}')
    code, _, err = run("balance", Account.create().address)
    assert_one_line_error(code, err, "713715", "1328", "sei-testnet")


def test_unreachable_database_names_the_setting(
    cli_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SEIWALLET_DATABASE_URL", "postgresql://wallet:s3cret@127.0.0.1:9/wallet")
    code, _, err = run("db", "upgrade")
    assert_one_line_error(code, err, "SEIWALLET_DATABASE_URL")
    assert "s3cret" not in err


@pytest.mark.parametrize(
    ("address", "problem"),
    [
        ("0x123", "40"),
        ("0x70997970C51812dc3A010C7d01b50e0d17dc79c8", "checksum"),
        ("hello", "0x"),
    ],
)
def test_malformed_address(address: str, problem: str) -> None:
    code, _, err = run("balance", address)
    assert_one_line_error(code, err, problem)


@pytest.mark.chain
def test_bad_amount(cli_env: dict[str, str]) -> None:
    code, _, err = run("faucet", Account.create().address, "1.0000001")
    assert_one_line_error(code, err, "6 decimal places")


def test_faucet_is_refused_on_sei_networks(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SEIWALLET_PROFILE", "sei-mainnet")
    code, _, err = run("faucet", Account.create().address, "1")
    assert_one_line_error(code, err, "local chain")


def test_help_reads_well_in_a_real_process() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "seiwallet", "--help"],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    for command in ("up", "chain", "worker", "status", "balance", "faucet", "db"):
        assert command in result.stdout


def test_the_signer_process_loads_no_chain_or_database_code() -> None:
    """What runs beside the keys stays small: no web3, no platform database layer, no deployer."""
    probe = (
        "import sys; from seiwallet.cli.main import load_commands; load_commands(['signer']); "
        "print(sorted(m for m in ('web3', 'seiwallet.db', 'seiwallet.chain.localnet', "
        "'seiwallet.chain.sender') if m in sys.modules))"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=60
    )
    assert result.stdout.strip() == "[]"
