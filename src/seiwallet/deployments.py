"""Where our contracts are on the profile's chain, and a checked connection to that chain.

Shared by every process (the CLI's commands, the worker, the API): the local chain's deployment
manifest, or the addresses configured for a public network.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from seiwallet.addresses import parse_evm_address
from seiwallet.chain.localnet import load_deployment
from seiwallet.chain.rpc import RpcClient
from seiwallet.config import ENV_PREFIX, Settings
from seiwallet.errors import ConfigError, InvalidInput


async def open_chain(settings: Settings) -> RpcClient:
    """A JSON-RPC client of the profile's chain, its chain id checked against the profile."""
    rpc = RpcClient(settings.effective_rpc_url, timeout=settings.rpc_timeout)
    try:
        await rpc.expect_chain_id(settings.network.chain_id, profile=settings.profile)
    except BaseException:
        await rpc.aclose()
        raise
    return rpc


@dataclass(frozen=True)
class Contracts:
    """Where our router and the stablecoins are on the profile's chain."""

    router: str | None
    tokens: Mapping[str, str]
    #: The block the contracts appeared in, when known (the follower starts there).
    deployed_at: int | None
    #: The invite escrow (money sent to an alias with no wallet yet), when deployed: from the
    #: local manifest; not configurable for public networks yet.
    invite_escrow: str | None = None
    #: The invoice deposits contract (deposit addresses for outside wallets), when deployed:
    #: from the local manifest, or ``SEIWALLET_DEPOSITS__CONTRACT_ADDRESS`` on public networks.
    invoice_deposits: str | None = None


def contracts_for(settings: Settings) -> Contracts:
    """The local chain's manifest, or the addresses configured for a public network."""
    if settings.network.is_local:
        deployment = load_deployment(settings)
        tokens = {symbol: token.address for symbol, token in deployment.tokens.items()}
        return Contracts(
            deployment.router,
            {**tokens, **settings.tokens},
            deployment.block_number,
            invite_escrow=deployment.invite_escrow,
            invoice_deposits=deployment.invoice_deposits,
        )
    tokens = {}
    for symbol, address in settings.token_addresses().items():
        tokens[symbol] = _configured_address(f"{ENV_PREFIX}TOKENS", address)
    router = (
        _configured_address(f"{ENV_PREFIX}ROUTER_ADDRESS", settings.router_address)
        if settings.router_address
        else None
    )
    deposits = (
        _configured_address(
            f"{ENV_PREFIX}DEPOSITS__CONTRACT_ADDRESS", settings.deposits.contract_address
        )
        if settings.deposits.contract_address
        else None
    )
    return Contracts(router, tokens, None, invoice_deposits=deposits)


def _configured_address(setting: str, value: str) -> str:
    try:
        return parse_evm_address(value)
    except InvalidInput as exc:
        raise ConfigError(setting, str(exc)) from None
