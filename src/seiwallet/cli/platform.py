"""The platform's commands: run the chain, worker and whole local platform; look at state."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Annotated

import httpx
import typer
from rich.table import Table
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from seiwallet import __version__
from seiwallet.addresses import parse_evm_address
from seiwallet.api.services import invitation_escrow, mailer_for, signer_client
from seiwallet.chain.deploy import local_accounts
from seiwallet.chain.errors import RpcUnavailable
from seiwallet.chain.follower import Follower
from seiwallet.chain.localnet import LocalChain
from seiwallet.chain.sender import TransactionSender, TxRequest
from seiwallet.chain.tokens import balance_of, encode_mint, is_blacklisted, read_token
from seiwallet.cli.app import app, configure_logging, console, handles_errors, settings
from seiwallet.cli.demo_data import DemoData, DemoShop, eu_customer_lines, seed, seed_shop
from seiwallet.cli.runtime import (
    build_follower,
    event_decoder,
    open_database,
    releaser_account,
    sponsor_accounts,
)
from seiwallet.cli.status import gather_status, render_status
from seiwallet.config import Settings
from seiwallet.db import SQLITE_BEGIN, describe_url, session_factory
from seiwallet.db.migrations import current_revision, head_revision, upgrade
from seiwallet.deployments import contracts_for, open_chain
from seiwallet.errors import InvalidInput, SeiwalletError
from seiwallet.money import TokenAmount
from seiwallet.payments.deposits import DepositEventHandler, DepositSweeper, sweeper_account
from seiwallet.payments.handlers import (
    PaymentEventHandler,
    outbox_verdicts_waiting,
    reconcile_outbox,
)
from seiwallet.payments.tasks import run_payment_tasks
from seiwallet.process import settle_garbage_collector
from seiwallet.transfers.handlers import InvitationEventHandler, TransferEventHandler
from seiwallet.transfers.relayer import Relayer
from seiwallet.transfers.tasks import InvitationWorker

log = logging.getLogger("seiwallet")

Verbose = Annotated[bool, typer.Option("--verbose", "-v", help="Log debug details.")]

db_app = typer.Typer(help="Database migrations.", no_args_is_help=True)
app.add_typer(db_app, name="db")


@app.command()
@handles_errors
def version() -> None:
    """Print seiwallet's version."""
    console.print(f"seiwallet {__version__}")


@app.command()
@handles_errors
def status(
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Show the chain, contracts, token domains, sponsors, database and follower."""
    data = asyncio.run(gather_status(settings()))
    if as_json:
        print(json.dumps(data, indent=2, sort_keys=True))
    else:
        render_status(console, data)


@db_app.command("upgrade")
@handles_errors
def db_upgrade() -> None:
    """Apply every pending migration to the configured database."""
    config = settings()
    engine = open_database(config, migrate=False)
    try:
        upgrade(engine)
        console.print(f"{describe_url(engine.url)} is at revision {current_revision(engine)}")
    finally:
        engine.dispose()


@db_app.command("current")
@handles_errors
def db_current() -> None:
    """Show the database's migration revision and the code's."""
    engine = open_database(settings(), migrate=False)
    try:
        console.print(f"database: {current_revision(engine) or 'none'}  code: {head_revision()}")
    finally:
        engine.dispose()


@app.command()
@handles_errors
def chain(
    fresh: Annotated[
        bool, typer.Option("--fresh", help="Discard the saved chain state and deploy anew.")
    ] = False,
    verbose: Verbose = False,
) -> None:
    """Run the local Sei-like chain (anvil) with USDC, EURC and the PaymentRouter deployed."""
    configure_logging(verbose)
    config = settings()
    local = LocalChain(config)
    if fresh:
        local.discard_state()
    with local:
        _print_chain(local)
        console.print("[dim]Ctrl-C stops the chain (its state is saved).[/]")
        _wait_for_signal(lambda: not local.is_running())


def _print_chain(local: LocalChain) -> None:
    deployment = local.deployment
    table = Table(title=f"Local chain — {local.report.detail}", show_header=False)
    table.add_column(style="bold")
    table.add_column()
    table.add_row("JSON-RPC", local.rpc_url)
    table.add_row("chain id", str(deployment.chain_id))
    table.add_row("PaymentRouter", deployment.router)
    for symbol, token in deployment.tokens.items():
        table.add_row(symbol, token.address)
    table.add_row("manifest", str(local.settings.deployment_manifest_path))
    console.print(table)


TokenOption = Annotated[str, typer.Option("--token", "-t", help="Token symbol, e.g. USDC or EURC.")]


@app.command()
@handles_errors
def balance(
    address: Annotated[str, typer.Argument(help="A 0x address.")],
    token: TokenOption = "USDC",  # noqa: S107 - a token symbol, not a secret
) -> None:
    """Show an address's stablecoin balance (and whether the issuer has blacklisted it)."""
    owner = parse_evm_address(address)
    amount, blacklisted = asyncio.run(_balance(settings(), owner, token))
    console.print(f"{owner}: [bold]{amount.format()} {amount.symbol}[/]")
    if blacklisted:
        console.print(
            f"[red]{amount.symbol}'s issuer has blacklisted this address:[/] "
            "it can neither send nor receive this token."
        )


async def _balance(config: Settings, owner: str, symbol: str) -> tuple[TokenAmount, bool]:
    token_address = _token_address(config, symbol)
    async with await open_chain(config) as rpc:
        token = await read_token(rpc, token_address)
        units = await balance_of(rpc, token.address, owner)
        return TokenAmount.from_units(units, token.decimals, token.symbol), await is_blacklisted(
            rpc, token.address, owner
        )


def _token_address(config: Settings, symbol: str) -> str:
    tokens = {name.upper(): address for name, address in contracts_for(config).tokens.items()}
    try:
        return tokens[symbol.upper()]
    except KeyError:
        known = ", ".join(sorted(tokens)) or "none"
        raise InvalidInput(
            f"no token {symbol!r} on {config.profile} (known: {known}); "
            "configure it with SEIWALLET_TOKENS"
        ) from None


@app.command()
@handles_errors
def faucet(
    address: Annotated[str, typer.Argument(help="The 0x address to fund.")],
    amount: Annotated[str, typer.Argument(help="How much, e.g. 25 or 12.50.")],
    token: TokenOption = "USDC",  # noqa: S107 - a token symbol, not a secret
) -> None:
    """Mint test stablecoins to an address on the local chain (refused on Sei networks)."""
    config = settings()
    if not config.network.is_local:
        raise InvalidInput(
            f"the faucet mints test money and runs only on the local chain, not {config.profile}"
        )
    owner = parse_evm_address(address)
    minted = asyncio.run(_faucet(config, owner, amount, token))
    console.print(f"minted [bold]{minted.format()} {minted.symbol}[/] to {owner}")


async def _faucet(config: Settings, owner: str, amount_text: str, symbol: str) -> TokenAmount:
    token_address = _token_address(config, symbol)
    engine = open_database(config)
    try:
        async with await open_chain(config) as rpc:
            token = await read_token(rpc, token_address)
            amount = TokenAmount.parse(amount_text, token.decimals, token.symbol)
            minter = local_accounts().token_admin
            sender = TransactionSender(
                rpc, minter, chain_id=config.network.chain_id, sessions=session_factory(engine)
            )
            await sender.send_and_wait(
                TxRequest(
                    to=token.address,
                    data=encode_mint(owner, amount.units),
                    purpose=f"faucet:{token.symbol}",
                )
            )
            return amount
    finally:
        engine.dispose()


@app.command()
@handles_errors
def worker(verbose: Verbose = False) -> None:
    """Run the background worker: the relayer (submits signed transfers) and the chain follower."""
    configure_logging(verbose)
    asyncio.run(_run_worker(settings()))


async def _run_worker(config: Settings) -> None:
    engine = open_database(config)
    sessions = session_factory(engine)
    rpc = await open_chain(config)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    try:
        chain_id = config.network.chain_id
        senders = [
            TransactionSender(rpc, account, chain_id=chain_id, sessions=sessions)
            for account in sponsor_accounts(config)
        ]
        escrow = invitation_escrow(config)
        contracts = contracts_for(config)
        relayer = Relayer(
            rpc,
            sessions,
            senders,
            chain_id=chain_id,
            settings=config.relayer,
            escrow=escrow,
            router=contracts.router,
        )
        deposits = (
            DepositSweeper(
                rpc,
                sessions,
                TransactionSender(
                    rpc, sweeper_account(config), chain_id=chain_id, sessions=sessions
                ),
                chain_id=chain_id,
                contract=contracts.invoice_deposits,
                tokens=list(contracts.tokens.values()),
                settings=config.deposits,
            )
            if contracts.invoice_deposits
            else None
        )
        follower = await build_follower(
            config,
            rpc,
            sessions,
            handlers=[
                TransferEventHandler(),
                InvitationEventHandler(),
                PaymentEventHandler(),
                DepositEventHandler(
                    partial_sweep_delay=timedelta(
                        seconds=config.deposits.partial_sweep_delay_seconds
                    )
                ),
            ],
        )
        invitations = (
            InvitationWorker(
                rpc,
                sessions,
                TransactionSender(
                    rpc, releaser_account(config), chain_id=chain_id, sessions=sessions
                ),
                chain_id=chain_id,
                escrow=escrow,
                decoder=event_decoder(contracts_for(config)),
                settings=config.invitations,
                mailer=mailer_for(config, sessions),
                public_url=config.web.public_url,
            )
            if escrow is not None
            else None
        )
        checkpoint = follower.checkpoint()
        log.info(
            "following chain %s %s; relaying from %d sponsor(s)%s",
            chain_id,
            f"after block {checkpoint[0]}" if checkpoint else f"from block {follower.start_block}",
            len(senders),
            f"; invitations released by {invitations.releaser}" if invitations else "",
        )
        settle_garbage_collector()  # start-up is over (see seiwallet.process)
        # The relayer recovers the sponsors' open transactions before it submits anything new.
        async with asyncio.TaskGroup() as group:
            group.create_task(_follow(follower, stop, interval=config.follower_poll_seconds))
            group.create_task(relayer.run(stop))
            group.create_task(run_payment_tasks(sessions, config.payments, stop, chain_id=chain_id))
            group.create_task(_reconcile_payments(sessions, stop, chain_id=chain_id))
            if deposits is not None:
                group.create_task(deposits.run(stop))
            if invitations is not None:
                group.create_task(invitations.run(stop))
    finally:
        await rpc.aclose()
        engine.dispose()


async def _reconcile_payments(
    sessions: sessionmaker[Session], stop: asyncio.Event, *, chain_id: int, every: float = 0.25
) -> None:
    """Carry the relayer's verdicts on payment and refund outbox rows to their invoices."""

    def once() -> None:
        # A read first: the writer's lock (one per SQLite database) only when there is work.
        with sessions() as session:
            if not outbox_verdicts_waiting(session, chain_id=chain_id):
                return
        with sessions.begin() as session:
            session.connection(execution_options={SQLITE_BEGIN: "IMMEDIATE"})
            reconcile_outbox(session, chain_id=chain_id)

    while not stop.is_set():
        try:
            await asyncio.to_thread(once)
        except SQLAlchemyError:
            log.exception("payments: reconciling the outbox failed; trying again")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=every)


async def _follow(
    follower: Follower, stop: asyncio.Event, *, interval: float = 0.2, backoff_max: float = 30.0
) -> None:
    """Run the follower until ``stop``, waiting out the network instead of dying with it."""
    failures, last_failure = 0, -math.inf
    while not stop.is_set():
        try:
            await follower.run(stop, interval=interval)
        except RpcUnavailable as exc:
            # A failure long after the last one starts a new outage: back off from the start.
            failures = failures + 1 if time.monotonic() - last_failure < 2 * backoff_max else 1
            last_failure = time.monotonic()
            if failures == 1:
                log.warning("follower: the network is not answering (%s); waiting", exc)
            wait = min(backoff_max, 0.5 * 2 ** min(failures, 10))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=wait)


@app.command()
@handles_errors
def up(verbose: Verbose = False) -> None:
    """Run the whole local platform: chain, signer, worker, wallet app — and print the URL."""
    configure_logging(verbose)
    config = settings()
    engine = open_database(config)  # migrate once, before any worker starts
    database = describe_url(engine.url)
    engine.dispose()
    with LocalChain(config) as local:
        demo = asyncio.run(_seed_demo(config, local)) if local.report.deployed else None
        env = {**os.environ, "SEIWALLET_PROFILE": config.profile}
        log_dir = config.data_dir / "logs"
        log_dir.mkdir(parents=True, exist_ok=True)
        children = {"signer": _spawn(["signer"], env, log_dir / "signer.log")}
        try:
            # The app reads the signer's secret, which the signer writes when it starts.
            _wait_for_signer(config, children["signer"][0])
            # The demo shop's people need the signer for their wallets; found, not remade.
            shop = asyncio.run(_seed_shop(config))
            children["worker"] = _spawn(["worker"], env, log_dir / "worker.log")
            children["web"] = _spawn(["serve"], env, log_dir / "web.log")
            _wait_for_web(config, children["web"][0])
            _print_chain(local)
            running = Table(title="Running", show_header=True, title_justify="left")
            running.add_column("process", no_wrap=True)
            running.add_column("pid", justify="right")
            running.add_column("where", overflow="fold")
            running.add_row("chain (anvil)", str(local.pid), local.rpc_url)
            where = {
                "signer": config.signer.url or str(config.signer_socket),
                "worker": database,
                "web": config.web.public_url,
            }
            for name, (process, _) in children.items():
                running.add_row(name, str(process.pid), where[name])
            console.print(running)
            console.print(f"[dim]Logs: {local.log_path} and {log_dir}/[/]")
            if demo is not None:
                console.print(
                    f"Demo data: customer {demo.customer} holds 1,000 USDC and 1,000 EURC and "
                    f"paid {demo.paid.format()} {demo.paid.symbol} (fee {demo.fee.format()}) "
                    f"to merchant {demo.merchant} through the PaymentRouter "
                    f"(invoice {demo.invoice_id[:10]}…)."
                )
            console.print(
                f"\n[bold green]Open {config.web.public_url}[/] on this machine and sign in with "
                "the development provider: your wallet is ready at once."
            )
            _print_shop(shop)
            console.print(
                "Try [bold]seiwallet status[/] in another terminal. "
                "[dim]Ctrl-C stops everything.[/]"
            )
            _wait_for_signal(
                lambda: (
                    not local.is_running()
                    or any(p.poll() is not None for p, _ in children.values())
                )
            )
            for name, (process, log_path) in children.items():
                if process.poll() not in (None, 0):
                    console.print(
                        f"[red]{name} exited with {process.returncode}[/]: see {log_path}"
                    )
        finally:
            for process, _ in children.values():
                _stop(process)


async def _seed_demo(config: Settings, local: LocalChain) -> DemoData:
    engine = open_database(config)
    try:
        async with await open_chain(config) as rpc:
            return await seed(rpc, local.deployment, session_factory(engine))
    finally:
        engine.dispose()


async def _seed_shop(config: Settings) -> DemoShop:
    engine = open_database(config)
    signer = signer_client(config)
    try:
        async with await open_chain(config) as rpc:
            return await seed_shop(config, sessions=session_factory(engine), signer=signer, rpc=rpc)
    finally:
        await signer.aclose()
        engine.dispose()


def _print_shop(shop: DemoShop) -> None:
    """How to take a payment at the demo counter, in six steps (URLs unbroken, to click); then
    who to sign in as to see the EU's rules."""
    owner, customer = shop.owner, shop.customer
    lines = (
        "\n[bold]Try a payment at the counter[/] — Demo Coffee, Hong Kong (prices in HKD):",
        f"  1. Shop owner, in this browser: Development sign-in as [bold]{owner.name}[/] "
        f"({owner.email}); add a passkey the first time.",
        f"  2. The counter: {shop.pos_url} — type an amount, Charge.",
        "  3. Customer, in a private window or another browser profile: sign in as "
        f"[bold]{customer.name}[/] ({customer.email}, holds test USDC), open the pay link "
        "the counter shows, Pay. The counter turns green.",
        f"  4. Refund it from the payment's page on the dashboard, {shop.dashboard_url} "
        "(the report is there too).",
        f"  5. The shop's webhooks, signatures checked: {shop.receiver_url}",
        f"  6. A manager's refund: sign in as [bold]{shop.manager.name}[/] ({shop.manager.email}) "
        "in another private window, open a payment, Refund → Set up a refund passkey; the owner "
        "approves it under Business → Team, then the manager refunds with it.",
        *eu_customer_lines(shop),
    )
    for line in lines:
        console.print(line, soft_wrap=True, highlight=False)


def _spawn(
    args: list[str], env: dict[str, str], log_path: Path
) -> tuple[subprocess.Popen[bytes], Path]:
    handle = log_path.open("ab")
    process = subprocess.Popen(  # noqa: S603 - our own entry point, fixed arguments
        [sys.executable, "-m", "seiwallet", *args], env=env, stdout=handle, stderr=handle
    )
    handle.close()
    return process, log_path


class ProcessFailed(SeiwalletError):
    """A process ``seiwallet up`` started did not come up."""

    code = "platform.process_failed"

    def __init__(self, what: str, returncode: int | None) -> None:
        how = f"exited with {returncode}" if returncode is not None else "did not start in 60 s"
        super().__init__(f"the {what} {how}: see its log in <data dir>/logs/{what}.log")


def _wait_until(ready: Callable[[], bool], process: subprocess.Popen[bytes], what: str) -> None:
    deadline = time.monotonic() + 60
    while not ready():
        if process.poll() is not None:
            raise ProcessFailed(what, process.returncode)
        if time.monotonic() > deadline:
            raise ProcessFailed(what, None)
        time.sleep(0.1)


def _wait_for_signer(config: Settings, process: subprocess.Popen[bytes]) -> None:
    def ready() -> bool:
        if config.signer.url:
            return _answers(f"{config.signer.url}/v1/health", ok=(200, 401, 405))
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            probe.connect(str(config.signer_socket))
        except OSError:
            return False
        finally:
            probe.close()
        return True

    _wait_until(ready, process, "signer")


def _wait_for_web(config: Settings, process: subprocess.Popen[bytes]) -> None:
    url = f"http://{config.web.host}:{config.web.port}/healthz"
    _wait_until(lambda: _answers(url, ok=(200,)), process, "web")


def _answers(url: str, *, ok: tuple[int, ...]) -> bool:
    try:
        return httpx.get(url, timeout=1).status_code in ok
    except httpx.TransportError:
        return False


def _stop(process: subprocess.Popen[bytes], timeout: float = 10.0) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _wait_for_signal(finished: object) -> None:
    """Block until Ctrl-C / SIGTERM, or until ``finished()`` is true (a child died)."""
    stopping = False

    def _on_signal(signum: int, frame: object) -> None:
        nonlocal stopping
        stopping = True

    previous = signal.signal(signal.SIGTERM, _on_signal)
    try:
        while not stopping:
            if callable(finished) and finished():
                return
            time.sleep(0.2)
    except KeyboardInterrupt:
        return
    finally:
        signal.signal(signal.SIGTERM, previous)
