"""``seiwallet status``: what the platform sees of its chain, contracts, sponsors and database."""

from __future__ import annotations

import asyncio
from decimal import Decimal
from typing import Any

from rich.console import Console
from rich.table import Table

from seiwallet.chain.errors import ChainError
from seiwallet.chain.follower import read_checkpoint
from seiwallet.chain.rpc import RpcClient
from seiwallet.chain.tokens import is_paused, read_token
from seiwallet.cli.runtime import open_database, sponsor_accounts
from seiwallet.config import Settings
from seiwallet.db import describe_url, session_factory
from seiwallet.db.migrations import current_revision, head_revision
from seiwallet.deployments import contracts_for, open_chain

#: Blocks over which the block time is measured: timestamps are whole seconds, so a short
#: window of 0.4 s blocks would read as 0 s or 1 s.
BLOCK_TIME_WINDOW = 50
WEI_PER_SEI = Decimal(10) ** 18


async def observed_block_time(rpc: RpcClient, head: int) -> float | None:
    """Mean seconds per block over the last :data:`BLOCK_TIME_WINDOW` blocks."""
    window = min(BLOCK_TIME_WINDOW, head)
    if window < 1:
        return None
    newest, oldest = await rpc.get_blocks([head, head - window])
    if newest is None or oldest is None:
        return None
    return (newest.timestamp - oldest.timestamp) / window


async def gather_status(settings: Settings) -> dict[str, Any]:
    """Everything ``status`` shows, as JSON-ready data. Chain or database errors propagate."""
    network = settings.network
    engine = open_database(settings, migrate=False)
    try:
        revision, head = current_revision(engine), head_revision()
        database: dict[str, Any] = {
            "url": describe_url(engine.url),
            "revision": revision,
            "head": head,
            "up_to_date": revision == head,
        }
        rpc = await open_chain(settings)
        try:
            head_block = await rpc.get_block("latest")
            if head_block is None:
                raise ChainError(f"{settings.effective_rpc_url} returned no latest block")
            contracts = contracts_for(settings)
            token_addresses = list(contracts.tokens.items())
            tokens_read = await asyncio.gather(
                *(read_token(rpc, address) for _, address in token_addresses)
            )
            paused = await asyncio.gather(*(is_paused(rpc, t.address) for t in tokens_read))
            sponsors = sponsor_accounts(settings)
            balances = await asyncio.gather(*(rpc.get_balance(a.address) for a in sponsors))
            router_code = await rpc.get_code(contracts.router) if contracts.router else b""
            checkpoint = None
            if database["up_to_date"]:
                checkpoint = read_checkpoint(session_factory(engine), network.chain_id)
            return {
                "profile": settings.profile,
                "network": network.display_name,
                "rpc_url": settings.effective_rpc_url,
                "chain_id": network.chain_id,
                "height": head_block.number,
                "block_gas_limit": head_block.gas_limit,
                "block_time_seconds": await observed_block_time(rpc, head_block.number),
                "confirmations": settings.effective_confirmations,
                "router": {
                    "address": contracts.router,
                    "deployed": bool(router_code),
                },
                "tokens": [
                    {
                        "symbol": token.symbol,
                        "address": token.address,
                        "decimals": token.decimals,
                        "currency": token.currency,
                        "paused": is_token_paused,
                        "eip712_domain": token.domain.as_dict(),
                    }
                    for token, is_token_paused in zip(tokens_read, paused, strict=True)
                ],
                "sponsors": [
                    {"address": account.address, "balance_wei": str(balance)}
                    for account, balance in zip(sponsors, balances, strict=True)
                ],
                "database": database,
                "follower": (
                    {"block": checkpoint[0], "behind": head_block.number - checkpoint[0]}
                    if checkpoint
                    else None
                ),
            }
        finally:
            await rpc.aclose()
    finally:
        engine.dispose()


def render_status(console: Console, status: dict[str, Any]) -> None:
    """Print the status as a few rich tables."""
    chain = Table(title="Chain", show_header=False, title_justify="left")
    chain.add_column(style="bold")
    chain.add_column()
    block_time = status["block_time_seconds"]
    chain.add_row("profile", f"{status['profile']} — {status['network']}")
    chain.add_row("RPC", status["rpc_url"])
    chain.add_row("chain id", str(status["chain_id"]))
    chain.add_row("height", f"{status['height']:,}")
    chain.add_row("block time", f"{block_time:.2f} s (observed)" if block_time else "—")
    chain.add_row("block gas limit", f"{status['block_gas_limit']:,}")
    chain.add_row("confirmations", str(status["confirmations"]))
    router = status["router"]
    chain.add_row(
        "PaymentRouter",
        f"{router['address']} "
        + ("[green]deployed[/]" if router["deployed"] else "[red]no code[/]")
        if router["address"]
        else "[yellow]not configured[/]",
    )
    follower = status["follower"]
    chain.add_row(
        "follower",
        f"block {follower['block']:,} ({follower['behind']} behind)" if follower else "not started",
    )
    console.print(chain)

    tokens = Table(title="Stablecoins (EIP-712 domain read from the chain)", title_justify="left")
    tokens.add_column("token")
    tokens.add_column("address", no_wrap=True, min_width=42)  # never cut an address
    tokens.add_column("domain · decimals")
    for token in status["tokens"]:
        domain = token["eip712_domain"]
        state = " [red]paused[/]" if token["paused"] else ""
        tokens.add_row(
            f"{token['symbol']}{state}",
            token["address"],
            f"{domain['name']} v{domain['version']} · {token['decimals']}",
        )
    console.print(tokens)

    sponsors = Table(title="Gas sponsors", title_justify="left")
    sponsors.add_column("address", no_wrap=True, min_width=42)
    sponsors.add_column("balance (SEI)", justify="right")
    for sponsor in status["sponsors"]:
        sei = Decimal(sponsor["balance_wei"]) / WEI_PER_SEI
        sponsors.add_row(sponsor["address"], f"{sei:,.4f}")
    console.print(sponsors)

    database = status["database"]
    db = Table(title="Database", show_header=False, title_justify="left")
    db.add_column(style="bold")
    db.add_column()
    db.add_row("URL", database["url"])
    state = "[green]up to date[/]" if database["up_to_date"] else "[yellow]needs migrating[/]"
    db.add_row("migration", f"{database['revision'] or 'none'} (head {database['head']}) {state}")
    console.print(db)
