"""Building a process's objects from settings: database, chain client, contracts, follower.

Entry points call these and pass the results down; nothing here is a global.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

from eth_account import Account
from eth_account.signers.local import LocalAccount
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from seiwallet.chain.deploy import local_accounts
from seiwallet.chain.deposits import deposits_artifact
from seiwallet.chain.errors import DeploymentMissing
from seiwallet.chain.escrow import escrow_artifact
from seiwallet.chain.events import FIAT_TOKEN_EVENTS_ABI, EventDecoder
from seiwallet.chain.follower import EventHandler, Follower
from seiwallet.chain.router import router_artifact
from seiwallet.chain.rpc import RpcClient
from seiwallet.config import ENV_PREFIX, Settings
from seiwallet.db import check_connection, create_engine_for
from seiwallet.db.migrations import upgrade
from seiwallet.deployments import Contracts, contracts_for
from seiwallet.errors import ConfigError


def open_database(settings: Settings, *, migrate: bool = True) -> Engine:
    """Connect to the configured database (one-line error if unreachable) and migrate it."""
    engine = create_engine_for(settings.effective_database_url)
    check_connection(engine)
    if migrate:
        upgrade(engine)
    return engine


def event_decoder(contracts: Contracts) -> EventDecoder:
    """A decoder for the router's events and the FiatToken events of every configured token."""
    abis: dict[str, list[dict[str, object]]] = {
        address: FIAT_TOKEN_EVENTS_ABI for address in contracts.tokens.values()
    }
    if contracts.router:
        abis[contracts.router] = [dict(entry) for entry in router_artifact().abi]
    if contracts.invite_escrow:
        abis[contracts.invite_escrow] = [dict(entry) for entry in escrow_artifact().abi]
    if contracts.invoice_deposits:
        abis[contracts.invoice_deposits] = [dict(entry) for entry in deposits_artifact().abi]
    return EventDecoder(abis)


async def build_follower(
    settings: Settings,
    rpc: RpcClient,
    sessions: sessionmaker[Session],
    *,
    handlers: Sequence[EventHandler] = (),
) -> Follower:
    """The chain follower for the profile, starting where the contracts were deployed.

    ``handlers`` are the domains' reactions to the events, run in the follower's transaction.
    """
    contracts = contracts_for(settings)
    if contracts.invite_escrow is None and settings.invitations.escrow_address:
        contracts = replace(contracts, invite_escrow=settings.invitations.escrow_address)
    if contracts.router is None and not contracts.tokens:
        raise DeploymentMissing(
            f"nothing to follow on {settings.profile}: set {ENV_PREFIX}ROUTER_ADDRESS "
            f"and {ENV_PREFIX}TOKENS"
        )
    start = settings.follower_start_block
    if start is None:
        start = contracts.deployed_at
    if start is None:
        start = await rpc.block_number()
    return Follower(
        rpc,
        sessions,
        chain_id=settings.network.chain_id,
        decoder=event_decoder(contracts),
        start_block=start,
        confirmations=settings.effective_confirmations,
        handlers=handlers,
    )


def releaser_account(settings: Settings) -> LocalAccount:
    """The invite escrow's releaser: the configured key (or key file), else anvil's account #10
    locally. The key is never echoed, even in an error."""
    setting = f"{ENV_PREFIX}INVITATIONS__RELEASER_KEY"
    key: str | None = None
    if settings.invitations.releaser_key is not None:
        key = settings.invitations.releaser_key.get_secret_value()
    elif settings.invitations.releaser_key_file is not None:
        path = settings.invitations.releaser_key_file
        setting = f"{ENV_PREFIX}INVITATIONS__RELEASER_KEY_FILE"
        try:
            if path.stat().st_mode & 0o077:
                raise ConfigError(setting, f"{path} must be readable by its owner only (chmod 600)")
            key = path.read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise ConfigError(setting, f"cannot read {path}: {exc.strerror}") from None
    if key is not None:
        try:
            account: LocalAccount = Account.from_key(key)
        except (ValueError, TypeError):
            raise ConfigError(setting, "not a 32-byte hex private key") from None
        return account
    if settings.network.is_local:
        return local_accounts().releaser
    raise ConfigError(
        setting, f"profile {settings.profile!r} needs the invite escrow's releaser key"
    )


def sponsor_accounts(settings: Settings) -> list[LocalAccount]:
    """The accounts that pay gas: configured keys, or anvil's development accounts locally."""
    if settings.sponsor_keys:
        accounts = []
        for index, key in enumerate(settings.sponsor_keys):
            try:
                accounts.append(Account.from_key(key.get_secret_value()))
            except (ValueError, TypeError):
                # Never echo the value: it is a private key.
                raise ConfigError(
                    f"{ENV_PREFIX}SPONSOR_KEYS",
                    f"entry {index} is not a 32-byte hex private key",
                ) from None
        return accounts
    if settings.network.is_local:
        return list(local_accounts().sponsors)
    raise ConfigError(
        f"{ENV_PREFIX}SPONSOR_KEYS", f"profile {settings.profile!r} needs the gas sponsors' keys"
    )
