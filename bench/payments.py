"""Payments at the counter: approval → "paid" on the terminal, and settled payments per second.

The whole platform, as a shop and its customers use it: the app's real ASGI stack in this
process, the **signer process**, the **worker process** (``seiwallet worker``: relayer, follower
and payment tasks) and a Sei-like local chain. A merchant (identity verified: tier 2) signs up,
opens a store in Hong Kong dollars with terminals and a store API key; payers are signed-in users
with a device key each and USDC minted to their wallets. Every invoice is created with the store's
API key (``POST /v1/stores/{id}/invoices``, an Idempotency-Key, a price in HKD quoted into USDC),
prepared by its payer (``POST /v1/invoices/{id}/pay``) and approved with a device-key approval
(``POST /v1/payment-attempts/{id}/approve``); the signer signs the ``router.pay`` intent, the
relayer submits it to the PaymentRouter, the follower settles the invoice from ``PaymentSettled``
and the terminal's server-sent-event stream (``GET /v1/terminals/{id}/events``) says
``invoice.settled``. The streams are read by a real SSE client over TCP (uvicorn serving the same
app in this process; httpx's ASGI transport buffers whole responses, so it cannot carry a stream).

(a) **Counter latency**: the phase's invoices rung up and prepared first, then one payment at a
    time (each after a random wait within a block time, so approvals fall at random points of
    the block cycle, as customers' do), from the approval request to the ``invoice.settled``
    event arriving on the terminal's stream: p50 and p99 against the chain's block time (goal:
    p50 ≤ block time + 100 ms). Where it goes, from the worker's own timestamps: the relayer's
    broadcast (``relayer_submitted_p50_ms``) and the follower's commit of the settled event
    (``follower_settled_p50_ms``), both from the approval request.
(b) **Throughput**: many invoices created with the API key across the terminals, prepared by many
    payers, then — clock on — all approved concurrently; the clock stops at the last
    ``invoice.settled`` event received on the terminals' streams. Then every invoice is checked
    (settled in the database, its settlement transaction's receipt status 1), and the balances on
    chain: the merchant holds exactly the sum of (amount − fee) of every settled invoice, each
    payer exactly what was minted less what they paid.

Baselines in the same run, on the same chain: the foundation's ``chain_baseline`` (pre-signed
EIP-3009 transfers submitted raw: nothing but the chain and the wire) for as many transfers as
payments, at least 1,000 (600 with ``--quick``: fewer fill a handful of blocks, and the wait for
the last block tick would weigh on the figure); and the gas of a plain
``transferWithAuthorization`` read from its receipt (to an existing holder, as the merchant is;
chain_baseline's go to new holders, reported beside it). ``gas_per_payment`` is the gas of the
settlement transactions (receipts) per settled payment. Then the throughput phase again on a
chain with the block gas limit lifted (``--uncapped-gas-limit``, default 300 M):
``uncapped_per_s``, the software's own limit.

One signer process serves both chains' platforms (its start-up is not what is measured); each
platform has its own database, users, worker and chain.

Operator settings the bench changes: the store API key's rate limit (10/s per key by default) is
raised, since one key creates every invoice here; the first-version per-transfer cap is off, as in
bench/transfers.py.

    .venv/bin/python bench/payments.py [--quick] [--payments 1000] [--latency-payments 100]
        [--database sqlite|postgresql]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import random
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import uvicorn
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from sqlalchemy import func, select

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository's test helpers

from tests.e2e.web_helpers import start_signer
from tests.fixtures.signer import SignerProcess

import chain_baseline as baseline_bench
import transfers as transfers_bench
from seiwallet.accounts.models import SessionKind
from seiwallet.accounts.oidc import VerifiedIdentity
from seiwallet.api.app import create_app
from seiwallet.api.services import Services, build_services
from seiwallet.chain.localnet import LocalChain
from seiwallet.chain.rpc import RpcClient, from_hex
from seiwallet.chain.tokens import (
    Authorization3009,
    authorization_digest,
    encode_transfer_with_authorization,
    read_token,
)
from seiwallet.compliance.models import KycStatus
from seiwallet.config import LocalChainSettings, Settings
from seiwallet.db import as_utc
from seiwallet.errors import SeiwalletError
from seiwallet.payments.models import (
    AttemptStatus,
    Invoice,
    InvoiceStatus,
    PaymentAttempt,
    PaymentEvent,
)
from seiwallet.process import settle_garbage_collector
from seiwallet.signer.client import SignerClient
from seiwallet.transfers.models import Transfer

BENCH = "payments"
METRIC = "settled_payments_per_second"
BASELINE = "chain_baseline: pre-signed EIP-3009 transfers submitted raw"
ORIGIN = "http://localhost:8000"
#: Prices typed at the counter, in the store's currency, cycled (quoted into USDC per invoice).
PRICES = ("12.00", "38.50", "7.25", "24.80", "56.00")
STORE_CURRENCY = "HKD"
#: What each payer is minted per payment they will make: more than the dearest price (56 HKD is
#: ~7.2 USDC at the offline table's rate), in USDC base units; plus a float left over.
MINT_PER_PAYMENT = 10_000_000
MINT_LEFTOVER = 10_000_000
#: Throughput invoices live this long (the counter's default, 120 s, is for one sale at a time).
INVOICE_SECONDS = 1_800
#: The counter phase's invoices are all rung up first: they must outlive the phase.
COUNTER_INVOICE_SECONDS = 600
#: A counter payment not settled after this long fails the run.
COUNTER_TIMEOUT = 30.0
#: Payments before the counter-latency phase's clock (first requests warm the process).
WARMUP_PAYMENTS = 1
console = baseline_bench.console


class BenchFailure(baseline_bench.BenchFailure):
    pass


# -- the terminal's live stream: a real SSE client -------------------------------------------------


class TerminalStream:
    """Reads ``/v1/terminals/{id}/events`` over TCP, as the counter's page does; notes when each
    invoice's ``invoice.settled`` (and ``invoice.processing``) arrives (``perf_counter``)."""

    def __init__(self, http: httpx.AsyncClient, terminal_id: str, api_key: str) -> None:
        self._http = http
        self.terminal_id = terminal_id
        self._key = api_key
        self.settled: dict[str, float] = {}
        self.processing: dict[str, float] = {}
        self._waiters: dict[str, asyncio.Future[float]] = {}
        self.connected = asyncio.Event()
        self.last_event_id: str | None = None
        #: The stream ended and was resumed with Last-Event-ID (the bus drops slow readers).
        self.resumed = 0
        self.events = 0
        self._task: asyncio.Task[None] | None = None
        self._closing = False

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=f"sse:{self.terminal_id}")

    async def aclose(self) -> None:
        self._closing = True
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task

    def failure(self) -> BaseException | None:
        """Why the reader stopped, if it did."""
        if self._task is not None and self._task.done() and not self._task.cancelled():
            return self._task.exception()
        return None

    def settled_future(self, invoice_id: str) -> asyncio.Future[float]:
        """Resolves with the arrival time of the invoice's ``invoice.settled`` event."""
        future = self._waiters.get(invoice_id)
        if future is None:
            future = asyncio.get_running_loop().create_future()
            if invoice_id in self.settled:
                future.set_result(self.settled[invoice_id])
            self._waiters[invoice_id] = future
        return future

    async def _run(self) -> None:
        path = f"/v1/terminals/{self.terminal_id}/events"
        while True:
            headers = {"Authorization": f"Bearer {self._key}", "Accept": "text/event-stream"}
            if self.last_event_id is not None:
                headers["Last-Event-ID"] = self.last_event_id
            try:
                async with self._http.stream("GET", path, headers=headers) as response:
                    if response.status_code != 200:
                        await response.aread()
                        raise BenchFailure(
                            f"the terminal's stream answered {response.status_code}: "
                            f"{response.text[:300]}"
                        )
                    if not response.headers["content-type"].startswith("text/event-stream"):
                        raise BenchFailure("the terminal's stream is not text/event-stream")
                    self.connected.set()
                    await self._read(response)
            except httpx.HTTPError:
                if self._closing:
                    return
            # The server ended the stream (a slow reader is dropped): resume after the last id.
            self.resumed += 1
            await asyncio.sleep(0.05)

    async def _read(self, response: httpx.Response) -> None:
        event_type, data, event_id = "", [], None
        async for line in response.aiter_lines():
            if line:
                name, _, value = line.partition(":")
                value = value.removeprefix(" ")
                if name == "event":
                    event_type = value
                elif name == "data":
                    data.append(value)
                elif name == "id":
                    event_id = value
                continue
            # A blank line ends a frame (comments and ``retry:`` carry no data).
            if data:
                self._dispatch(event_type, "\n".join(data))
            if event_id is not None:
                self.last_event_id = event_id
            event_type, data, event_id = "", [], None

    def _dispatch(self, event_type: str, data: str) -> None:
        arrived = time.perf_counter()
        self.events += 1
        if event_type not in ("invoice.settled", "invoice.processing"):
            return
        invoice_id = str(json.loads(data)["data"]["invoice"]["id"])
        if event_type == "invoice.processing":
            self.processing.setdefault(invoice_id, arrived)
            return
        self.settled.setdefault(invoice_id, arrived)
        future = self._waiters.get(invoice_id)
        if future is not None and not future.done():
            future.set_result(self.settled[invoice_id])


# -- the platform ----------------------------------------------------------------------------------


@dataclass
class Payer:
    person: transfers_bench.Person
    wallet_id: str
    minted: int = 0

    @property
    def headers(self) -> dict[str, str]:
        return {"authorization": f"Bearer {self.person.token}"}


@dataclass
class Sale:
    """One invoice and its payment, as the bench sees them."""

    invoice_id: str
    terminal_id: str
    payer: Payer
    amount_units: int
    net_units: int
    attempt_id: str = ""
    approval: dict[str, Any] = field(default_factory=dict)
    approve_started: float = 0.0
    #: The same moment on the wall clock (to compare with the worker's timestamps).
    approve_wall: float = 0.0
    signed_at: float = 0.0


@dataclass
class Platform:
    services: Services
    http: httpx.AsyncClient  # the app over ASGI, in process (set-up and checks)
    #: The same app, requests handed to it directly: the measured calls (see AsgiClient).
    api: transfers_bench.AsgiClient
    live: httpx.AsyncClient  # the same app over TCP (uvicorn), for the streams
    payers: list[Payer]
    store_id: str
    terminals: list[str]
    api_key: str
    merchant_address: str
    usdc: str
    rpc: RpcClient
    worker: subprocess.Popen[bytes]
    worker_log: Path
    streams: dict[str, TerminalStream] = field(default_factory=dict)
    sales: list[Sale] = field(default_factory=list)

    def worker_tail(self) -> str:
        return self.worker_log.read_text(errors="replace")[-1500:]

    async def create_invoice(self, terminal_id: str, price: str, *, seconds: int | None) -> str:
        body: dict[str, Any] = {"amount": price, "terminal_id": terminal_id}
        if seconds is not None:
            body["expires_in_seconds"] = seconds
        created = await self.api.post(
            f"/v1/stores/{self.store_id}/invoices",
            json=body,
            headers={
                "authorization": f"Bearer {self.api_key}",
                "Idempotency-Key": uuid.uuid4().hex,
            },
        )
        if created.status_code != 201:
            raise BenchFailure(f"invoice refused: {created.status_code} {created.text[:500]}")
        return created.text

    async def sale(
        self, terminal_id: str, price: str, payer: Payer, *, seconds: int | None
    ) -> Sale:
        """An invoice made with the store's key, prepared by ``payer``, its approval signed."""
        invoice = json.loads(await self.create_invoice(terminal_id, price, seconds=seconds))
        prepared = await self.api.post(
            f"/v1/invoices/{invoice['id']}/pay", json={}, headers=payer.headers
        )
        if prepared.status_code != 201:
            raise BenchFailure(f"prepare refused: {prepared.status_code} {prepared.text[:500]}")
        attempt = prepared.json()
        if attempt["intent"]["kind"] != "router.pay":
            raise BenchFailure(f"the attempt's intent is {attempt['intent']['kind']!r}")
        sale = Sale(
            invoice_id=invoice["id"],
            terminal_id=terminal_id,
            payer=payer,
            amount_units=int(invoice["amount_units"]),
            net_units=int(invoice["net_units"]),
            attempt_id=attempt["id"],
            # The payer's touch on the phone: before any clock starts.
            approval=transfers_bench._device_approval(
                payer.person, payer.wallet_id, attempt["intent_digest"]
            ),
        )
        self.sales.append(sale)
        return sale

    async def approve(self, sale: Sale) -> None:
        sale.approve_wall = time.time()
        sale.approve_started = time.perf_counter()
        approved = await self.api.post(
            f"/v1/payment-attempts/{sale.attempt_id}/approve",
            json={"approvals": [sale.approval]},
            headers=sale.payer.headers,
        )
        sale.signed_at = time.perf_counter()
        if approved.status_code != 200:
            raise BenchFailure(f"approval refused: {approved.status_code} {approved.text[:500]}")
        status = approved.json()["status"]
        if status not in ("signed", "submitted", "settled"):
            raise BenchFailure(f"the approved attempt is {status!r}")

    async def settled(
        self, sales: Sequence[Sale], futures: Sequence[asyncio.Future[float]], timeout: float
    ) -> None:
        """Wait until every future has its settled event; fail at once if the worker or a
        stream dies, and with the count of payments not settled after ``timeout``."""
        began = time.monotonic()
        waiting = [f for f in futures if not f.done()]
        while waiting:
            _, pending = await asyncio.wait(waiting, timeout=0.5)
            waiting = list(pending)
            if not waiting:
                return
            if self.worker.poll() is not None:
                raise BenchFailure(
                    f"the worker exited ({self.worker.returncode}) with "
                    f"{len(waiting)} of {len(sales)} payments not settled:\n{self.worker_tail()}"
                )
            for stream in self.streams.values():
                if (failure := stream.failure()) is not None:
                    raise BenchFailure(f"a terminal's stream failed: {failure!r}") from failure
            if time.monotonic() - began > timeout:
                raise self.not_settled(sales, time.monotonic() - began)

    def not_settled(self, sales: Sequence[Sale], seconds: float) -> BenchFailure:
        """The failure to report: how many were not settled, and where they stand."""
        ids = [s.invoice_id for s in sales]
        with self.services.db() as db:
            invoices = Counter(
                str(status)
                for status in db.scalars(select(Invoice.status).where(Invoice.id.in_(ids)))
            )
            attempts = Counter(
                str(status)
                for status in db.scalars(
                    select(PaymentAttempt.status).where(PaymentAttempt.invoice_id.in_(ids))
                )
            )
            outbox = Counter(
                str(status)
                for status in db.scalars(
                    select(Transfer.status)
                    .join(PaymentAttempt, PaymentAttempt.transfer_id == Transfer.id)
                    .where(PaymentAttempt.invoice_id.in_(ids))
                )
            )
        pending = len(sales) - invoices.get(str(InvoiceStatus.SETTLED), 0)
        heard = sum(1 for s in sales if s.invoice_id in self.streams[s.terminal_id].settled)
        return BenchFailure(
            f"{pending} of {len(sales)} payments not settled after {seconds:.0f} s "
            f"({heard} settled events heard on the terminals' streams; invoices "
            f"{dict(invoices)}, payment attempts {dict(attempts)}, their relayer outbox rows "
            f"{dict(outbox)}). Worker log:\n{self.worker_tail()}"
        )


async def _person(services: Services, signer: SignerClient, name: str) -> Payer:
    """A signed-in user with a wallet, a device key enrolled in the signer and an API session."""
    identity = VerifiedIdentity(
        issuer="https://bench.example",
        subject=name,
        email=f"{name}@bench.example",
        email_verified=True,
    )
    result = await services.sign_in.complete(identity)
    key = ec.generate_private_key(ec.SECP256R1())
    public = key.public_key().public_bytes(Encoding.X962, PublicFormat.UncompressedPoint)
    authenticator_id = f"dk_bench_{name}_{uuid.uuid4().hex[:8]}"
    await signer.add_authenticator(
        result.user.id,
        {"kind": "device", "id": authenticator_id, "public_key": public.hex(), "label": "bench"},
    )
    _, token = services.sessions.open(
        result.user.id, SessionKind.API, label="bench", authenticator_id=authenticator_id
    )
    user = result.user
    assert user.wallet_address is not None
    assert user.wallet_id is not None
    person = transfers_bench.Person(user.id, user.wallet_address, token, key, authenticator_id)
    return Payer(person, user.wallet_id)


async def _call(http: httpx.AsyncClient, path: str, body: dict[str, Any], token: str) -> Any:
    answer = await http.post(path, json=body, headers={"authorization": f"Bearer {token}"})
    if answer.status_code != 201:
        raise BenchFailure(f"POST {path} refused: {answer.status_code} {answer.text[:500]}")
    return answer.json()


@contextlib.asynccontextmanager
async def serve(app: Any) -> AsyncIterator[str]:
    """``app`` served by uvicorn on a free port, in this event loop; its base URL."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(
        uvicorn.Config(
            app, log_level="warning", ws="none", lifespan="off", timeout_graceful_shutdown=2
        )
    )
    task = asyncio.create_task(server.serve(sockets=[sock]), name="uvicorn")
    try:
        while not server.started:
            if task.done():
                task.result()
                raise BenchFailure("uvicorn stopped before it started")
            await asyncio.sleep(0.01)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await asyncio.wait_for(task, timeout=5)
        sock.close()


@contextlib.asynccontextmanager
async def platform_on(
    chain: LocalChain,
    home: Path,
    signer: SignerProcess,
    *,
    payers: int,
    terminals: int,
    payments_per_payer: int,
    databases: transfers_bench.Databases,
) -> AsyncIterator[Platform]:
    """The whole platform on ``chain``, set up as a shop and its customers; torn down after.

    ``signer`` is the signer process (one for the run: its start-up is not what is measured).
    """
    began = time.perf_counter()
    data = home / "platform"
    (data / "deployments").mkdir(parents=True)
    shutil.copy(chain.settings.deployment_manifest_path, data / "deployments" / "local.json")
    database_url = databases.url(data)
    port = chain.settings.local_chain.port
    settings = Settings(
        profile="local",
        data_dir=data,
        database_url=database_url,
        local_chain=LocalChainSettings(port=port),
        web={"public_url": ORIGIN},
        signer={"origins": [ORIGIN]},
        compliance={"per_transfer_cap": {}},
        # One key creates every invoice here: lift its rate limit (an operator setting).
        payments={"api_key_rate_per_second": 10_000, "api_key_burst": 100_000},
    )
    async with contextlib.AsyncExitStack() as stack:
        client = signer.client()
        stack.push_async_callback(client.aclose)
        services = build_services(settings, signer=client)
        stack.push_async_callback(services.aclose)
        app = create_app(settings, services=services)
        transfers = await services.connect_chain()
        usdc = transfers.token("USDC").address
        http = await stack.enter_async_context(
            httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=ORIGIN, timeout=60)
        )

        # The worker starts now: its start-up (imports, recovery, first poll) overlaps the set-up.
        log_path = home / "worker.log"
        env = {k: v for k, v in os.environ.items() if not k.startswith("SEIWALLET_")}
        env.update(
            SEIWALLET_PROFILE="local",
            SEIWALLET_DATA_DIR=str(data),
            SEIWALLET_DATABASE_URL=database_url,
            SEIWALLET_LOCAL_CHAIN__PORT=str(port),
        )
        worker_started = time.monotonic()
        with log_path.open("wb") as log_file:
            worker = subprocess.Popen(  # noqa: ASYNC220 - once, before any clock starts
                [sys.executable, "-m", "seiwallet", "worker"],
                env=env,
                stdout=log_file,
                stderr=log_file,
            )

        def stop_worker() -> None:
            if worker.poll() is None:
                worker.terminate()
                try:
                    worker.wait(10)
                except subprocess.TimeoutExpired:
                    worker.kill()
                    worker.wait(5)

        stack.callback(stop_worker)

        # The shop: a merchant whose identity is verified (tier 2, as a business would be: a
        # personal wallet's balance cap would soon refuse its takings), a store, terminals, a key.
        merchant = await _person(services, client, "merchant")
        kyc = services.compliance.kyc if services.compliance is not None else None
        if kyc is None:
            raise BenchFailure("the platform has no identity verification to verify the merchant")
        started = await asyncio.to_thread(kyc.start, merchant.person.user_id)
        if (
            await asyncio.to_thread(kyc.complete, merchant.person.user_id, started.reference)
            is not KycStatus.VERIFIED
        ):
            raise BenchFailure("the merchant's identity verification failed")
        token = merchant.person.token
        signed_up = await _call(http, "/v1/merchants", {"name": "Bench Tea House Ltd"}, token)
        merchant_id = signed_up["id"]
        store = await _call(
            http,
            f"/v1/merchants/{merchant_id}/stores",
            {"name": "Bench Tea House", "country": "HK", "currency": STORE_CURRENCY},
            token,
        )
        terminal_ids = [
            (
                await _call(
                    http, f"/v1/stores/{store['id']}/terminals", {"name": f"Counter {n}"}, token
                )
            )["id"]
            for n in range(1, terminals + 1)
        ]
        api_key = (
            await _call(
                http,
                f"/v1/stores/{store['id']}/api-keys",
                {"name": "till", "scopes": ["invoices:create", "invoices:read"]},
                token,
            )
        )["secret"]

        gate = asyncio.Semaphore(16)

        async def payer(n: int) -> Payer:
            async with gate:
                return await _person(services, client, f"payer-{n}")

        people = list(await asyncio.gather(*(payer(n) for n in range(payers))))
        rpc = services.rpc
        assert rpc is not None
        for payer in people:
            payer.minted = payments_per_payer * MINT_PER_PAYMENT + MINT_LEFTOVER
        await transfers_bench._mint(
            rpc, chain, usdc, [p.person.address for p in people], people[0].minted
        )

        base_url = await stack.enter_async_context(serve(app))
        live = await stack.enter_async_context(
            httpx.AsyncClient(base_url=base_url, timeout=httpx.Timeout(30.0, read=None))
        )
        platform = Platform(
            services=services,
            http=http,
            api=transfers_bench.AsgiClient(app, ORIGIN),
            live=live,
            payers=people,
            store_id=store["id"],
            terminals=terminal_ids,
            api_key=api_key,
            merchant_address=merchant.person.address,
            usdc=usdc,
            rpc=rpc,
            worker=worker,
            worker_log=log_path,
        )
        for terminal_id in terminal_ids:
            stream = TerminalStream(live, terminal_id, api_key)
            platform.streams[terminal_id] = stream
            stack.push_async_callback(stream.aclose)
            stream.start()
        for stream in platform.streams.values():
            await asyncio.wait_for(stream.connected.wait(), timeout=10)
        await asyncio.sleep(max(0.0, 3.0 - (time.monotonic() - worker_started)))
        if worker.poll() is not None:
            raise BenchFailure(f"the worker exited: {platform.worker_tail()}")
        console.log(f"platform ready in {time.perf_counter() - began:.1f} s")
        # The API serves from this process: start-up is over, as `seiwallet serve` says before
        # it serves (seiwallet.process; the worker and signer do the same).
        settle_garbage_collector()
        yield platform


# -- the phases ------------------------------------------------------------------------------------


def _percentile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


@dataclass
class CounterResult:
    payments: int
    latency_p50_ms: float
    latency_p99_ms: float
    #: Approval request → the signed answer (API + signer), p50.
    signed_p50_ms: float
    #: Approval request → ``invoice.processing`` on the stream, p50.
    processing_p50_ms: float
    #: Approval request → the relayer's broadcast of the settlement (its ``submitted_at``), p50.
    submitted_p50_ms: float
    #: Approval request → the follower's commit of ``invoice.settled`` (the event's time), p50.
    settled_commit_p50_ms: float


async def counter_latency(platform: Platform, count: int, block_time: float) -> CounterResult:
    """One payment at a time at the first terminal, its stream open; approval → settled event."""
    terminal = platform.terminals[0]
    stream = platform.streams[terminal]
    total = WARMUP_PAYMENTS + count
    # The invoices rung up and the payers' pay screens prepared (no clock runs for these).
    sales: list[Sale] = await _gather_limited(
        total,
        8,
        lambda i: platform.sale(
            terminal,
            PRICES[i % len(PRICES)],
            platform.payers[i % len(platform.payers)],
            seconds=COUNTER_INVOICE_SECONDS,
        ),
    )
    measured: list[Sale] = []
    latencies: list[float] = []
    for index, sale in enumerate(sales):
        settled = stream.settled_future(sale.invoice_id)
        # Customers approve at any point of the block cycle, not in step with it.
        await asyncio.sleep(random.uniform(0, block_time))
        await platform.approve(sale)
        await platform.settled(sales[: index + 1], [settled], COUNTER_TIMEOUT)
        arrived = settled.result()
        if index >= WARMUP_PAYMENTS:
            measured.append(sale)
            latencies.append((arrived - sale.approve_started) * 1000)
    console.log(
        f"counter: {count} payments, approval → settled on the terminal's stream "
        f"p50 {statistics.median(latencies):,.0f} ms"
    )
    return CounterResult(
        payments=count,
        latency_p50_ms=statistics.median(latencies),
        latency_p99_ms=_percentile(latencies, 0.99),
        signed_p50_ms=statistics.median((s.signed_at - s.approve_started) * 1000 for s in measured),
        processing_p50_ms=statistics.median(
            (stream.processing[s.invoice_id] - s.approve_started) * 1000
            for s in measured
            if s.invoice_id in stream.processing
        ),
        **_worker_times(platform, measured),
    )


def _worker_times(platform: Platform, sales: Sequence[Sale]) -> dict[str, float]:
    """Where the worker's part of the counter latency goes, from its own timestamps: when the
    relayer broadcast each settlement, and when the follower committed its settled event."""
    ids = [s.invoice_id for s in sales]
    with platform.services.db() as db:
        submitted = dict(
            db.execute(
                select(PaymentAttempt.invoice_id, Transfer.submitted_at)
                .join(Transfer, Transfer.id == PaymentAttempt.transfer_id)
                .where(PaymentAttempt.invoice_id.in_(ids))
            ).all()
        )
        committed = dict(
            db.execute(
                select(PaymentEvent.invoice_id, PaymentEvent.created_at).where(
                    PaymentEvent.invoice_id.in_(ids), PaymentEvent.type == "invoice.settled"
                )
            ).all()
        )

    def p50(moments: dict[str, Any]) -> float:
        spans = [
            (as_utc(moments[s.invoice_id]).timestamp() - s.approve_wall) * 1000
            for s in sales
            if moments.get(s.invoice_id) is not None
        ]
        return statistics.median(spans) if spans else float("nan")

    return {"submitted_p50_ms": p50(submitted), "settled_commit_p50_ms": p50(committed)}


@dataclass
class ThroughputResult:
    payments: int
    seconds: float
    per_second: float
    invoices_per_second: float
    prepared_per_second: float
    #: Approvals answered (signed) per second, from the first approval request.
    signed_per_second: float
    #: Approval request → settled event, per payment, under this load.
    loaded_p50_ms: float
    loaded_p99_ms: float
    #: The approval's answer (signed) → settled event, p50: the back half under this load.
    loaded_back_half_p50_ms: float
    gas_per_payment: float
    transactions: int
    resumed_streams: int


async def _gather_limited(count: int, concurrency: int, job: Any) -> list[Any]:
    """``job(i)`` for each index, at most ``concurrency`` at once; the first failure cancels all."""
    gate = asyncio.Semaphore(concurrency)
    results: list[Any] = [None] * count

    async def one(index: int) -> None:
        async with gate:
            results[index] = await job(index)

    async with asyncio.TaskGroup() as group:
        for index in range(count):
            group.create_task(one(index))
    return results


async def throughput(platform: Platform, count: int, concurrency: int) -> ThroughputResult:
    """Invoices with the key and payments prepared (not timed), then all approved concurrently:
    the clock runs from the first approval to the last ``invoice.settled`` on the streams."""
    terminals = platform.terminals
    payers = platform.payers
    started = time.perf_counter()
    invoices = await _gather_limited(
        count,
        concurrency,
        lambda i: platform.create_invoice(
            terminals[i % len(terminals)], PRICES[i % len(PRICES)], seconds=INVOICE_SECONDS
        ),
    )
    created = time.perf_counter()
    invoices_per_second = count / (created - started)

    async def prepare(index: int) -> Sale:
        invoice = json.loads(invoices[index])
        payer = payers[index % len(payers)]
        prepared = await platform.api.post(
            f"/v1/invoices/{invoice['id']}/pay", json={}, headers=payer.headers
        )
        if prepared.status_code != 201:
            raise BenchFailure(f"prepare refused: {prepared.status_code} {prepared.text[:500]}")
        attempt = prepared.json()
        return Sale(
            invoice_id=invoice["id"],
            terminal_id=invoice["terminal_id"],
            payer=payer,
            amount_units=int(invoice["amount_units"]),
            net_units=int(invoice["net_units"]),
            attempt_id=attempt["id"],
            approval=transfers_bench._device_approval(
                payer.person, payer.wallet_id, attempt["intent_digest"]
            ),
        )

    sales: list[Sale] = await _gather_limited(count, concurrency, prepare)
    platform.sales.extend(sales)
    prepared_per_second = count / (time.perf_counter() - created)
    console.log(
        f"throughput: {count} invoices created ({invoices_per_second:,.0f}/s) and prepared "
        f"({prepared_per_second:,.0f}/s), not timed; approving"
    )
    futures = [platform.streams[s.terminal_id].settled_future(s.invoice_id) for s in sales]

    clock = time.perf_counter()
    await _gather_limited(count, concurrency, lambda i: platform.approve(sales[i]))
    signed = time.perf_counter()
    console.log(f"throughput: {count} approvals signed in {signed - clock:.1f} s")
    await platform.settled(sales, futures, 60 + count / 20 - (signed - clock))
    last = max(future.result() for future in futures)
    seconds = last - clock
    loaded = [(f.result() - s.approve_started) * 1000 for f, s in zip(futures, sales, strict=True)]
    gas, transactions = await _settlement_gas(platform, sales)
    return ThroughputResult(
        payments=count,
        seconds=seconds,
        per_second=count / seconds,
        invoices_per_second=invoices_per_second,
        prepared_per_second=prepared_per_second,
        signed_per_second=count / (signed - clock),
        loaded_p50_ms=statistics.median(loaded),
        loaded_p99_ms=_percentile(loaded, 0.99),
        loaded_back_half_p50_ms=statistics.median(
            (f.result() - s.signed_at) * 1000 for f, s in zip(futures, sales, strict=True)
        ),
        gas_per_payment=gas / count,
        transactions=transactions,
        resumed_streams=sum(s.resumed for s in platform.streams.values()),
    )


async def _settlement_gas(platform: Platform, sales: Sequence[Sale]) -> tuple[int, int]:
    """Total gas of the transactions that settled ``sales`` (receipts), and how many there were."""
    ids = [s.invoice_id for s in sales]
    with platform.services.db() as db:
        hashes = sorted(
            {
                str(h)
                for h in db.scalars(select(Invoice.tx_hash).where(Invoice.id.in_(ids)))
                if h is not None
            }
        )
    if not hashes:
        raise BenchFailure("no settlement transaction is recorded for the settled invoices")
    gas = 0
    for receipt in await baseline_bench.receipts(platform.rpc, hashes):
        if from_hex(receipt["status"]) != 1:
            raise BenchFailure(f"settlement transaction {receipt['transactionHash']} failed")
        gas += from_hex(receipt["gasUsed"])
    return gas, len(hashes)


async def verify(platform: Platform) -> int:
    """Every invoice settled, its attempt too; the merchant and every payer hold what they must."""
    sales = platform.sales
    ids = [s.invoice_id for s in sales]
    with platform.services.db() as db:
        statuses = Counter(
            str(status) for status in db.scalars(select(Invoice.status).where(Invoice.id.in_(ids)))
        )
        attempts = Counter(
            str(status)
            for status in db.scalars(
                select(PaymentAttempt.status).where(
                    PaymentAttempt.invoice_id.in_(ids),
                    PaymentAttempt.status != AttemptStatus.ABANDONED,
                )
            )
        )
        others = db.scalar(select(func.count()).select_from(Invoice).where(Invoice.id.not_in(ids)))
    if statuses != Counter({str(InvoiceStatus.SETTLED): len(sales)}) or others:
        raise BenchFailure(f"invoices not all settled: {dict(statuses)}, {others} unknown ones")
    if attempts != Counter({str(AttemptStatus.SETTLED): len(sales)}):
        raise BenchFailure(f"payment attempts not all settled: {dict(attempts)}")
    holders = [platform.merchant_address, *(p.person.address for p in platform.payers)]
    token = await read_token(platform.rpc, platform.usdc)
    merchant, *paid = await baseline_bench.balances(platform.rpc, token, holders)
    expected = sum(s.net_units for s in sales)
    if merchant != expected:
        raise BenchFailure(
            f"the merchant holds {merchant} units on chain, not the {expected} "
            "(sum of amount − fee) of its settled invoices"
        )
    spent: Counter[str] = Counter()
    for sale in sales:
        spent[sale.payer.person.address] += sale.amount_units
    for payer, balance in zip(platform.payers, paid, strict=True):
        if balance != payer.minted - spent[payer.person.address]:
            raise BenchFailure(
                f"payer {payer.person.address} holds {balance} units, not "
                f"{payer.minted - spent[payer.person.address]} (minted less paid)"
            )
    return len(sales)


@dataclass
class PipelineResult:
    counter: CounterResult | None
    throughput: ThroughputResult
    verified: int
    gas_limit: int


async def run_pipeline(
    chain: LocalChain,
    home: Path,
    signer: SignerProcess,
    *,
    latency_payments: int,
    payments: int,
    payers: int,
    terminals: int,
    concurrency: int,
    block_time: float,
    databases: transfers_bench.Databases,
) -> PipelineResult:
    per_payer = -(-(payments + latency_payments + WARMUP_PAYMENTS) // payers)
    async with platform_on(
        chain,
        home,
        signer,
        payers=payers,
        terminals=terminals,
        payments_per_payer=per_payer,
        databases=databases,
    ) as platform:
        counter = (
            await counter_latency(platform, latency_payments, block_time)
            if latency_payments
            else None
        )
        result = await throughput(platform, payments, concurrency)
        verified = await verify(platform)
        return PipelineResult(counter, result, verified, chain.settings.local_chain.gas_limit)


# -- the baselines ---------------------------------------------------------------------------------


@dataclass
class Baseline:
    mined_per_second: float
    #: Gas of one ``transferWithAuthorization`` to an address that already holds the token.
    gas_known_holder: int
    #: The same to a new holder (chain_baseline's transfers).
    gas_new_holder: float


async def run_baseline(chain: LocalChain, transfers: int) -> Baseline:
    """chain_baseline's raw submission on the same chain; then one plain transfer to a holder."""
    async with RpcClient(chain.rpc_url, timeout=120.0, retries=0) as rpc:
        raw_run = await transfers_bench.raw_baseline(rpc, chain, transfers)
        token, workload, outcome = raw_run.token, raw_run.workload, raw_run.outcome

        # One more, from a payer that keeps a balance to a recipient that already holds one: the
        # case of a payment to a merchant (both sides' balances exist before and after).
        payer, first = workload.payers[0], workload.transfers[0]
        authorization = Authorization3009(
            from_address=payer.address,
            to=first.recipient,
            value=baseline_bench.TRANSFER_UNITS,
            valid_after=0,
            valid_before=baseline_bench.VALID_BEFORE,
            nonce=os.urandom(32),
        )
        signature = payer.sign_digest(authorization_digest(token.domain, authorization))
        raw = baseline_bench.sign_type2(
            workload.sponsors[0],
            chain_id=token.chain_id,
            nonce=len(workload.streams[0]),
            to=token.address,
            data=bytes.fromhex(encode_transfer_with_authorization(authorization, signature)[2:]),
            gas=baseline_bench.TRANSFER_GAS,
        )
        await baseline_bench.send_all(rpc, [raw])
        await baseline_bench.wait_mined(
            rpc, {workload.sponsors[0].address: len(workload.streams[0]) + 1}, timeout=30
        )
        (receipt,) = await baseline_bench.receipts(rpc, [baseline_bench.tx_hash(raw)])
        if from_hex(receipt["status"]) != 1:
            raise BenchFailure("the plain transfer to an existing holder failed")
        return Baseline(
            mined_per_second=outcome.timing.mined_per_second,
            gas_known_holder=from_hex(receipt["gasUsed"]),
            gas_new_holder=outcome.gas_per_transfer,
        )


# -- the run ---------------------------------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--quick", action="store_true", help="400 payments, 15 at the counter (under a minute)"
    )
    parser.add_argument("--payments", type=int, default=None, help="throughput phase (1000)")
    parser.add_argument(
        "--latency-payments", type=int, default=None, help="counter phase, one at a time (100)"
    )
    parser.add_argument("--payers", type=int, default=50)
    parser.add_argument("--terminals", type=int, default=8)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--uncapped-gas-limit", type=int, default=300_000_000)
    parser.add_argument(
        "--database",
        choices=("sqlite", "postgresql"),
        default="sqlite",
        help="the platform's database: a SQLite file (default) or a throwaway PostgreSQL cluster",
    )
    args = parser.parse_args()
    payments = args.payments or (400 if args.quick else 1000)
    latency_payments = args.latency_payments or (15 if args.quick else 100)
    if min(payments, latency_payments, args.payers, args.terminals, args.concurrency) < 1:
        parser.error("counts must be positive")
    logging.basicConfig(level=logging.WARNING)
    block_time = LocalChainSettings().block_time
    home = Path(tempfile.mkdtemp(prefix="bench-payments-"))
    chains: list[LocalChain] = []
    signer: SignerProcess | None = None
    databases = transfers_bench.Databases(args.database)
    began = time.perf_counter()
    try:
        databases.start()
        chain = baseline_bench.start_chain(
            home / "chain", transfers_bench._options(LocalChainSettings().gas_limit)
        )
        chains.append(chain)
        console.log(f"Sei-like chain at {chain.rpc_url}")
        baseline_transfers = max(payments, 600 if args.quick else 1_000)
        baseline = asyncio.run(run_baseline(chain, baseline_transfers))
        console.log(
            f"baseline: {baseline.mined_per_second:,.1f} mined/s; a plain "
            f"transferWithAuthorization {baseline.gas_known_holder:,} gas to a holder, "
            f"{baseline.gas_new_holder:,.0f} to a new one"
        )
        signer = start_signer(home / "signer-home", origin=ORIGIN)
        capped = asyncio.run(
            run_pipeline(
                chain,
                home / "capped",
                signer,
                latency_payments=latency_payments,
                payments=payments,
                payers=args.payers,
                terminals=args.terminals,
                concurrency=args.concurrency,
                block_time=block_time,
                databases=databases,
            )
        )
        console.log(f"pipeline: {capped.throughput.per_second:,.1f} settled/s")
        chain.stop()
        uncapped_chain = baseline_bench.start_chain(
            home / "chain-uncapped", transfers_bench._options(args.uncapped_gas_limit)
        )
        chains.append(uncapped_chain)
        uncapped = asyncio.run(
            run_pipeline(
                uncapped_chain,
                home / "uncapped",
                signer,
                latency_payments=0,
                payments=payments,
                payers=args.payers,
                terminals=args.terminals,
                concurrency=args.concurrency,
                block_time=block_time,
                databases=databases,
            )
        )
        console.log(f"pipeline, gas limit lifted: {uncapped.throughput.per_second:,.1f} settled/s")
    except KeyboardInterrupt:
        console.print("interrupted")
        return 130
    except (baseline_bench.BenchFailure, SeiwalletError) as exc:
        console.print(f"[red]benchmark failed:[/red] {exc}")
        return 1
    except ExceptionGroup as group:
        first = group.exceptions[0]
        while isinstance(first, ExceptionGroup):
            first = first.exceptions[0]
        console.print(f"[red]benchmark failed:[/red] {first}")
        return 1
    finally:
        if signer is not None:
            signer.stop()
        for running in chains:
            running.stop()
        databases.close()
        shutil.rmtree(home, ignore_errors=True)
    counter = capped.counter
    assert counter is not None
    result = capped.throughput
    ratio = result.per_second / baseline.mined_per_second
    print(
        f"{payments} payments on the Sei-like chain: {result.per_second:,.1f}/s settled vs "
        f"{baseline.mined_per_second:,.1f}/s mined raw (ratio {ratio:.2f}); counter latency "
        f"(approval → settled on the terminal's stream, {counter.payments} one at a time) p50 "
        f"{counter.latency_p50_ms:,.0f} ms, p99 {counter.latency_p99_ms:,.0f} ms "
        f"({block_time * 1000:.0f} ms blocks); gas {result.gas_per_payment:,.0f} a payment "
        f"({payments / result.transactions:.1f} a transaction) vs {baseline.gas_known_holder:,} "
        f"a plain transferWithAuthorization; gas limit lifted: "
        f"{uncapped.throughput.per_second:,.1f}/s; {time.perf_counter() - began:.0f} s in all"
    )
    print(
        json.dumps(
            {
                "bench": BENCH,
                "metric": METRIC,
                "value": round(result.per_second, 1),
                "unit": "payments/s",
                "baseline": BASELINE,
                "baseline_value": round(baseline.mined_per_second, 1),
                "ratio": round(ratio, 3),
                "latency_p50_ms": round(counter.latency_p50_ms, 1),
                "latency_p99_ms": round(counter.latency_p99_ms, 1),
                "block_time_ms": round(block_time * 1000),
                "gas_per_payment": round(result.gas_per_payment, 1),
                "gas_baseline": baseline.gas_known_holder,
                "gas_baseline_new_holder": round(baseline.gas_new_holder, 1),
                "uncapped_per_s": round(uncapped.throughput.per_second, 1),
                "uncapped_gas_limit": args.uncapped_gas_limit,
                "signed_p50_ms": round(counter.signed_p50_ms, 1),
                "processing_event_p50_ms": round(counter.processing_p50_ms, 1),
                "relayer_submitted_p50_ms": round(counter.submitted_p50_ms, 1),
                "follower_settled_p50_ms": round(counter.settled_commit_p50_ms, 1),
                "loaded_latency_p50_ms": round(result.loaded_p50_ms, 1),
                "loaded_latency_p99_ms": round(result.loaded_p99_ms, 1),
                "loaded_back_half_p50_ms": round(result.loaded_back_half_p50_ms, 1),
                "approvals_signed_per_s": round(result.signed_per_second, 1),
                "invoices_created_per_s": round(result.invoices_per_second, 1),
                "payments_prepared_per_s": round(result.prepared_per_second, 1),
                "uncapped_approvals_signed_per_s": round(uncapped.throughput.signed_per_second, 1),
                "settlement_transactions": result.transactions,
                "payments_per_transaction": round(payments / result.transactions, 2),
                "payments": payments,
                "baseline_transfers": baseline_transfers,
                "latency_payments": counter.payments,
                "settled_checked": capped.verified,
                "payers": args.payers,
                "database": args.database,
                "terminals": args.terminals,
                "concurrency": args.concurrency,
                "stream_resumes": result.resumed_streams,
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
