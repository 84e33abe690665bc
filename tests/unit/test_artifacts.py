"""The committed contract artifacts are exactly what the sources compile to, and load and link."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
from pathlib import Path

import pytest
from eth_utils.crypto import keccak

from seiwallet.chain.artifacts import (
    SIGNATURE_CHECKER,
    ArtifactNotFound,
    ContractArtifact,
    LinkReference,
    link_bytecode,
    link_placeholder,
    load_artifact,
    load_fiat_token_artifact,
)

ROOT = Path(__file__).resolve().parents[2]
COMPILE_SCRIPT = ROOT / "scripts" / "compile-contracts.mjs"


def test_the_committed_artifact_is_what_the_sources_compile_to() -> None:
    node = shutil.which("node")
    if node is None:  # pragma: no cover - the toolchain is part of `make test`
        pytest.fail("node is not installed: the artifact check needs Node.js and `npm ci`")
    result = subprocess.run(
        [node, str(COMPILE_SCRIPT), "--check"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr or result.stdout


ARTIFACTS_DIR = ROOT / "src" / "seiwallet" / "chain" / "artifacts"
CONTRACTS = sorted(path.stem for path in (ROOT / "contracts").glob("*.sol"))


def test_every_contract_has_a_committed_artifact_and_nothing_else_does() -> None:
    assert {"PaymentRouter", "InviteEscrow"} <= set(CONTRACTS)
    assert sorted(path.stem for path in ARTIFACTS_DIR.glob("*.json")) == CONTRACTS


@pytest.mark.parametrize("name", CONTRACTS)
def test_the_artifact_records_how_it_was_built(name: str) -> None:
    data = json.loads((ARTIFACTS_DIR / f"{name}.json").read_text())
    assert data["compiler"]["settings"] == {
        "evmVersion": "prague",  # Sei runs Pectra: a later EVM target could emit opcodes it lacks
        "optimizer": {"enabled": True, "runs": 200},
    }
    assert data["compiler"]["version"].startswith("0.8.37+")
    assert (data["contractName"], data["sourceName"]) == (name, f"contracts/{name}.sol")
    source = (ROOT / "contracts" / f"{name}.sol").read_bytes()
    assert data["sourceSha256"] == hashlib.sha256(source).hexdigest()


def test_our_artifact_loads_from_the_package() -> None:
    router = load_artifact("PaymentRouter")
    assert router.contract_name == "PaymentRouter"
    assert router.libraries == frozenset()
    assert router.runtime_code() == bytes.fromhex(router.deployed_bytecode[2:])
    assert router.function("pay")["inputs"][0]["internalType"] == "struct PaymentRouter.Payment"
    escrow = load_artifact("InviteEscrow")
    assert escrow.libraries == frozenset()
    assert [i["type"] for i in escrow.function("deposit")["inputs"]] == [
        "address",
        "address",
        "uint256",
        "uint256",
        "uint256",
        "bytes32",
        "uint256",
        "bytes",
    ]
    # EIP-170: runtime code above 24 576 bytes cannot be deployed.
    assert len(escrow.runtime_code()) < 24_576


def test_a_missing_artifact_says_how_to_build_it() -> None:
    with pytest.raises(ArtifactNotFound, match="compile-contracts"):
        load_artifact("NoSuchContract")


def test_fiat_token_links_the_signature_checker_at_its_offsets() -> None:
    token = load_fiat_token_artifact("FiatTokenV2_2")
    assert token.libraries == {SIGNATURE_CHECKER}
    assert len(token.link_references) == 2
    library = "0x" + "ab" * 20
    code = token.creation_code({SIGNATURE_CHECKER: library})
    for ref in token.link_references:
        assert code[ref.start : ref.start + ref.length] == bytes.fromhex("ab" * 20)
    assert b"__$" not in code
    with pytest.raises(ArtifactNotFound, match="needs library"):
        token.creation_code()


def test_the_placeholder_is_solidity_s() -> None:
    expected = "__$" + keccak(text=SIGNATURE_CHECKER).hex()[:34] + "$__"
    assert link_placeholder(SIGNATURE_CHECKER) == expected
    assert expected in load_fiat_token_artifact("FiatTokenV2_2").bytecode


def test_linking_refuses_offsets_that_do_not_hold_the_placeholder() -> None:
    code = "0x" + "00" * 64
    with pytest.raises(ArtifactNotFound, match="no placeholder"):
        link_bytecode(
            code, [LinkReference(library="a.sol:L", start=10)], {"a.sol:L": "0x" + "11" * 20}
        )


def test_the_constructor_arguments_are_appended() -> None:
    router = load_artifact("PaymentRouter")
    owner, collector = "0x" + "01" * 20, "0x" + "02" * 20
    code = router.encode_deploy(owner, collector)
    assert code.startswith(router.creation_code())
    assert code[-64:] == bytes(12) + bytes.fromhex("01" * 20) + bytes(12) + bytes.fromhex("02" * 20)
    with pytest.raises(ArtifactNotFound, match="takes 2 arguments"):
        router.encode_deploy(owner)


def test_a_malformed_artifact_is_reported() -> None:
    with pytest.raises(ArtifactNotFound, match="malformed"):
        ContractArtifact.from_json({"contractName": "X"})
