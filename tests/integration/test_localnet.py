"""LocalChain keeps its chain across restarts, and recreates it predictably (saying so) when not."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from tests.fixtures.chain import free_port

from seiwallet.chain.localnet import LocalChain, LocalChainError, StartMode, load_deployment
from seiwallet.config import LocalChainSettings, Settings

pytestmark = [pytest.mark.chain, pytest.mark.slow]


def _settings(data_dir: Path, port: int) -> Settings:
    return Settings(
        profile="local",
        data_dir=data_dir,
        sponsor_keys=[],
        local_chain=LocalChainSettings(port=port),
    )


def test_the_sei_like_chain_resumes_and_recreates_predictably(tmp_path: Path) -> None:
    settings = _settings(tmp_path, free_port())
    with LocalChain(settings) as first:  # 0.4 s blocks, as in the demo
        assert first.report.mode is StartMode.FRESH
        deployment = first.deployment
        with pytest.raises(LocalChainError, match="already in use"):
            LocalChain(settings).start()
    assert load_deployment(settings) == deployment

    with LocalChain(settings) as resumed:
        assert resumed.report.mode is StartMode.RESUMED
        assert resumed.deployment == deployment

    # A manifest from before the invite escrow: the same chain resumes and gets an escrow added.
    older = json.loads(settings.deployment_manifest_path.read_text())
    for key in ("invite_escrow", "invite_escrow_releaser", "invite_escrow_code_hash"):
        del older[key]
    settings.deployment_manifest_path.write_text(json.dumps(older))
    with LocalChain(settings) as upgraded:
        assert upgraded.report.mode is StartMode.RESUMED
        assert "invite escrow" in upgraded.report.detail
        assert upgraded.deployment.router == deployment.router
        assert upgraded.deployment.invite_escrow not in (None, deployment.invite_escrow)
    assert load_deployment(settings) == upgraded.deployment
    with LocalChain(settings) as again:
        assert again.report.mode is StartMode.RESUMED
        assert again.deployment == upgraded.deployment

    (tmp_path / "chain" / "state.json").write_text('{"truncated": ')
    with LocalChain(settings) as recreated:
        assert recreated.report.mode is StartMode.STATE_UNUSABLE
        assert recreated.report.moved_state_to is not None
        assert recreated.report.moved_state_to.exists()
        # A new chain gets the same addresses: deployment is deterministic.
        assert recreated.deployment.router == deployment.router
        assert recreated.deployment.invite_escrow == deployment.invite_escrow

    settings.deployment_manifest_path.unlink()
    with LocalChain(settings) as mismatched:
        assert mismatched.report.mode is StartMode.MANIFEST_MISMATCH
    assert settings.deployment_manifest_path.exists()

    chain = LocalChain(settings)
    assert chain.discard_state() is True
    with chain:
        assert chain.report.mode is StartMode.FRESH
        assert "discarded" in chain.report.detail
