"""End-to-end person-to-person transfers per second: API → signer → relayer → chain → follower.

Each transfer goes the whole way a person's does: ``POST /v1/transfers`` (recipient, balance
and compliance checks, the intent, an Idempotency-Key) and ``POST /v1/transfers/{id}/approve``
with a device-key approval, through the app's real ASGI stack in this process (a bearer token per
user; requests handed to the ASGI app directly, see :class:`AsgiClient`); the **signer
process** verifies the approval, evaluates the policy and signs; the **worker process**
(``seiwallet worker``: relayer and follower) submits the authorizations from the sponsor accounts
and confirms them from the token's ``AuthorizationUsed`` events. The clock runs from the first
API call to the last transfer confirmed; every transfer is then checked
(confirmed, its recipient's balance on chain).

Baseline, side by side on the same chain and in the same run: the foundation's
``chain_baseline`` (pre-signed EIP-3009 transfers submitted raw, nothing else) for the same
number of transfers. On the chain's default Sei-like settings (0.4 s blocks, 10 M gas) both are
bounded by block gas; ``ratio`` = ours / baseline (goal ≥ 0.8). Latency: per transfer from its
approval to its confirmation (p50, p99), against the block time. Then the same pipeline on a
chain with the block gas limit lifted (``--uncapped-gas-limit``, default 300 M) gives
``uncapped_per_s``: the software's own limit, apart from the chain's.

``--api-processes N`` runs the API as production does instead: ``seiwallet serve --workers N``
(N processes on one port, on the pipeline's database and signer), driven over real HTTP from
this process by one aiohttp session (keep-alive, the same number of requests in flight). The
people, their tokens and device keys are made the same way and the same checks run at the end;
the JSON's ``api_processes`` says which mode ran (0: the API in this process, the default).
The HTTP client's own work then counts against the platform's CPU, as a load balancer's would.
The processes boot (not timed) while the people are made; the log shows how the kernel spread
the connections over them and the CPU seconds each process used while the clock ran.

    .venv/bin/python bench/transfers.py [--quick] [--transfers 2000] [--users 50]
        [--database sqlite|postgresql] [--api-processes N]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import aiohttp
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from sqlalchemy import func, select

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository's test helpers

from tests.e2e.api_processes import ApiProcesses, worker_env
from tests.e2e.web_helpers import start_signer
from tests.fixtures.chain import free_port
from tests.fixtures.database import DatabaseMaker, ThrowawayCluster

import chain_baseline as baseline_bench
from seiwallet.accounts.models import SessionKind
from seiwallet.accounts.oidc import VerifiedIdentity
from seiwallet.api.app import create_app
from seiwallet.api.services import build_services
from seiwallet.chain.localnet import LocalChain
from seiwallet.chain.rpc import RpcClient
from seiwallet.chain.tokens import Token, balance_of, encode_call, read_token
from seiwallet.config import LocalChainSettings, Settings
from seiwallet.process import settle_garbage_collector
from seiwallet.signer.approvals import DeviceApproval, challenge_bytes
from seiwallet.signer.service import approval_subject
from seiwallet.transfers.models import Transfer, TransferStatus

BENCH = "transfers"
METRIC = "confirmed_transfers_per_second"
BASELINE = "chain_baseline: pre-signed EIP-3009 transfers submitted raw"
ORIGIN = "http://localhost:8000"
#: Each transfer moves 0.01 USDC, as the baseline's do.
AMOUNT = "0.01"
console = baseline_bench.console


class BenchFailure(Exception):
    pass


class Databases:
    """Where each pipeline's platform database lives: a SQLite file (the embedded default) or a
    fresh database on a throwaway PostgreSQL cluster (production's engine), the test suite's
    cluster: in memory, with ``fsync`` off (SQLite's WAL with ``synchronous=NORMAL`` does not
    sync a commit either)."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._cluster: ThrowawayCluster | None = None
        self._maker: DatabaseMaker | None = None

    def start(self) -> None:
        if self.kind == "postgresql":
            self._cluster = ThrowawayCluster()
            server, _ = self._cluster.start()
            self._maker = DatabaseMaker(server)

    def close(self) -> None:
        if self._maker is not None:
            self._maker.close()
        if self._cluster is not None:
            self._cluster.stop()

    def url(self, directory: Path) -> str:
        """A new, empty database for one pipeline."""
        if self._maker is None:
            return f"sqlite:///{directory / 'platform.sqlite3'}"
        return self._maker.server.url(self._maker.create())


@dataclass
class Person:
    user_id: str
    address: str
    token: str
    key: ec.EllipticCurvePrivateKey
    authenticator_id: str


@dataclass
class PipelineResult:
    transfers: int
    seconds: float
    per_second: float
    latency_p50_ms: float
    latency_p99_ms: float
    gas_limit: int
    #: The front half alone: created and signed through the API and the signer, per second.
    api_per_second: float


@dataclass(frozen=True)
class Reply:
    status_code: int
    content: bytes

    @property
    def text(self) -> str:
        return self.content.decode("utf-8", "replace")

    def json(self) -> Any:
        return json.loads(self.content)


class AsgiClient:
    """Requests straight into the ASGI app: the whole app runs (middleware, routing,
    validation, the handlers, serialisation), but no HTTP client library does.

    The load generator shares the bench's core with the API; in production the clients are
    phones. httpx's ``ASGITransport`` cost about as much CPU as the app's own event-loop work
    here (py-spy), and counted it against the platform.
    """

    def __init__(self, app: Any, origin: str) -> None:
        self._app = app
        scheme, _, host = origin.partition("://")
        self._scheme = scheme
        self._host = host
        name, _, port = host.partition(":")
        self._server = (name, int(port or (443 if scheme == "https" else 80)))

    async def post(self, path: str, *, json: Any, headers: dict[str, str] | None = None) -> Reply:
        body = _json_bytes(json)
        raw_headers = [
            (b"host", self._host.encode()),
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            *((k.lower().encode(), v.encode()) for k, v in (headers or {}).items()),
        ]
        scope = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": "POST",
            "scheme": self._scheme,
            "path": path,
            "raw_path": path.encode(),
            "query_string": b"",
            "root_path": "",
            "headers": raw_headers,
            "client": ("127.0.0.1", 50000),
            "server": self._server,
        }
        done = asyncio.Event()
        delivered = False
        status = 0
        chunks: list[bytes] = []

        async def receive() -> dict[str, Any]:
            nonlocal delivered
            if not delivered:
                delivered = True
                return {"type": "http.request", "body": body, "more_body": False}
            await done.wait()
            return {"type": "http.disconnect"}

        async def send(message: dict[str, Any]) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            elif message["type"] == "http.response.body":
                chunks.append(message.get("body", b""))
                if not message.get("more_body", False):
                    done.set()

        await self._app(scope, receive, send)
        return Reply(status, b"".join(chunks))


class Poster(Protocol):
    async def post(
        self, path: str, *, json: Any, headers: dict[str, str] | None = None
    ) -> Reply: ...


class HttpPoster:
    """Requests over real HTTP to ``seiwallet serve``: one aiohttp session, kept-alive
    connections, as many as requests in flight."""

    def __init__(self, session: aiohttp.ClientSession) -> None:
        self._session = session

    async def post(self, path: str, *, json: Any, headers: dict[str, str] | None = None) -> Reply:
        async with self._session.post(
            path,
            data=_json_bytes(json),
            headers={"content-type": "application/json", **(headers or {})},
        ) as answer:
            return Reply(answer.status, await answer.read())


def _json_bytes(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode()


def _device_approval(person: Person, wallet_id: str, digest_hex: str) -> dict[str, Any]:
    nonce = os.urandom(16)
    expires_at = int(time.time()) + 120
    challenge = challenge_bytes(
        approval_subject(wallet_id, bytes.fromhex(digest_hex)), nonce, expires_at
    )
    return DeviceApproval(
        authenticator_id=person.authenticator_id,
        nonce=nonce,
        expires_at=expires_at,
        signature=person.key.sign(challenge, ec.ECDSA(hashes.SHA256())),
    ).to_json()


async def _mint(
    rpc: RpcClient, chain: LocalChain, token_address: str, holders: list[str], units: int
) -> None:
    admin = baseline_bench.Key.from_bytes(bytes(chain.accounts.token_admin.key))
    first = await rpc.get_transaction_count(admin.address, "pending")
    raws = [
        baseline_bench.sign_type2(
            admin,
            chain_id=chain.settings.network.chain_id,
            nonce=first + index,
            to=token_address,
            data=bytes.fromhex(
                encode_call("mint(address,uint256)", ["address", "uint256"], [holder, units])[2:]
            ),
            gas=baseline_bench.MINT_GAS,
        )
        for index, holder in enumerate(holders)
    ]
    await baseline_bench.send_all(rpc, raws)
    await baseline_bench.wait_mined(rpc, {admin.address: first + len(raws)}, timeout=120)


async def run_pipeline(
    chain: LocalChain,
    home: Path,
    *,
    transfers: int,
    users: int,
    concurrency: int,
    databases: Databases,
    api_processes: int = 0,
) -> PipelineResult:
    """The whole platform on ``chain``: signer and worker processes, and the API in this
    process (``api_processes`` 0) or as ``seiwallet serve --workers api_processes``."""
    platform = home / "platform"
    (platform / "deployments").mkdir(parents=True)
    shutil.copy(chain.settings.deployment_manifest_path, platform / "deployments" / "local.json")
    database_url = databases.url(platform)
    port = chain.settings.local_chain.port
    api_port = free_port() if api_processes else 0
    origin = f"http://127.0.0.1:{api_port}" if api_processes else ORIGIN
    settings = Settings(
        profile="local",
        data_dir=platform,
        database_url=database_url,
        local_chain=LocalChainSettings(port=port),
        web={"public_url": origin},
        signer={"origins": [origin]},
        compliance={"per_transfer_cap": {}},
    )
    signer = start_signer(home / "signer-home", origin=origin)
    client = signer.client()
    services = build_services(settings, signer=client)
    worker: subprocess.Popen[bytes] | None = None
    api: ApiProcesses | None = None
    closing = contextlib.AsyncExitStack()
    try:
        if api_processes:
            # Started now (the database is migrated, the signer up): its processes boot while
            # the people are made and funded; waited for below.
            api = ApiProcesses(
                worker_env(
                    data_dir=platform,
                    database_url=database_url,
                    origin=origin,
                    signer_socket=signer.socket,
                    signer_secret=signer.secret,
                    chain_port=port,
                    SEIWALLET_COMPLIANCE__PER_TRANSFER_CAP="{}",
                ),
                workers=api_processes,
                port=api_port,
                log_path=home / "serve.log",
            )
            api.launch()
        transfers_service = await services.connect_chain()
        usdc = transfers_service.token("USDC")
        people: list[Person] = []
        for index in range(users):
            identity = VerifiedIdentity(
                issuer="https://bench.example",
                subject=f"person-{index}",
                email=f"person{index}@bench.example",
                email_verified=True,
            )
            result = await services.sign_in.complete(identity)
            key = ec.generate_private_key(ec.SECP256R1())
            public = key.public_key().public_bytes(Encoding.X962, PublicFormat.UncompressedPoint)
            authenticator_id = f"dk_bench_{index}"
            await client.add_authenticator(
                result.user.id,
                {
                    "kind": "device",
                    "id": authenticator_id,
                    "public_key": public.hex(),
                    "label": "bench",
                },
            )
            _, token = services.sessions.open(
                result.user.id, SessionKind.API, label="bench", authenticator_id=authenticator_id
            )
            assert result.user.wallet_address is not None
            people.append(
                Person(result.user.id, result.user.wallet_address, token, key, authenticator_id)
            )
        rpc = services.rpc
        assert rpc is not None
        per_person = -(-transfers // users)
        await _mint(
            rpc, chain, usdc.address, [p.address for p in people], per_person * 10_000 + 1_000_000
        )

        log_path = home / "worker.log"
        env = {k: v for k, v in os.environ.items() if not k.startswith("SEIWALLET_")}
        env.update(
            SEIWALLET_PROFILE="local",
            SEIWALLET_DATA_DIR=str(platform),
            SEIWALLET_DATABASE_URL=database_url,
            SEIWALLET_LOCAL_CHAIN__PORT=str(port),
        )
        with log_path.open("wb") as log_file:
            worker = subprocess.Popen(  # noqa: ASYNC220 - once, before the clock starts
                [sys.executable, "-m", "seiwallet", "worker"],
                env=env,
                stdout=log_file,
                stderr=log_file,
            )
        worker_started = time.monotonic()
        http: Poster
        if api is not None:
            try:
                await asyncio.to_thread(api.wait_ready)  # every process has answered
            except RuntimeError as exc:
                raise BenchFailure(str(exc)) from None
            session = await closing.enter_async_context(
                aiohttp.ClientSession(
                    base_url=api.base_url, connector=aiohttp.TCPConnector(limit=concurrency)
                )
            )
            await _warm_up(session, people, concurrency)
            console.log(f"API processes (pid: open connections): {api.connections_per_worker()}")
            http = HttpPoster(session)
        else:
            http = AsgiClient(create_app(settings, services=services), ORIGIN)
        # The worker's start-up (imports, recovery, first poll).
        await asyncio.sleep(max(0.0, 3.0 - (time.monotonic() - worker_started)))
        if worker.poll() is not None:
            raise BenchFailure(f"the worker exited: {log_path.read_text()[-2000:]}")

        recipients = [baseline_bench._address(os.urandom(64)) for _ in range(transfers)]
        gate = asyncio.Semaphore(concurrency)

        async def send(index: int) -> None:
            person = people[index % users]
            headers = {"authorization": f"Bearer {person.token}"}
            async with gate:
                created = await http.post(
                    "/v1/transfers",
                    json={"recipient": recipients[index], "token": "USDC", "amount": AMOUNT},
                    headers={**headers, "Idempotency-Key": uuid.uuid4().hex},
                )
                if created.status_code != 201:
                    raise BenchFailure(f"create refused: {created.text}")
                body = created.json()
                approval = _device_approval(person, body["wallet_id"], body["intent_digest"])
                approved = await http.post(
                    f"/v1/transfers/{body['id']}/approve",
                    json={"approvals": [approval]},
                    headers=headers,
                )
                if approved.status_code != 200:
                    raise BenchFailure(f"approval refused: {approved.text}")

        # Where the cores go while the clock runs (2 on the reference machine).
        assert signer.process is not None
        processes = {
            "bench": os.getpid(),
            **{f"api {i + 1}": pid for i, pid in enumerate(api.worker_pids() if api else [])},
            "worker": worker.pid,
            "signer": signer.process.pid,
        }
        if api is None:
            # The API serves from this process: start-up is over, as `seiwallet serve` says
            # before it serves (seiwallet.process; the worker and signer do the same).
            settle_garbage_collector()
        cpu_before = {name: _cpu_seconds(pid) for name, pid in processes.items()}
        started = time.perf_counter()
        # A task group: the first failure cancels the others before the services close.
        async with asyncio.TaskGroup() as group:
            for index in range(transfers):
                group.create_task(send(index))
        api_done = time.perf_counter()
        console.log(
            f"API: {transfers} transfers created and signed in {api_done - started:.1f} s "
            f"({transfers / (api_done - started):,.0f}/s)"
        )
        deadline = time.monotonic() + 120 + transfers / 20
        while True:
            with services.db() as db:
                counts = dict(
                    db.execute(
                        select(Transfer.status, func.count()).group_by(Transfer.status)
                    ).all()
                )
            confirmed = counts.get(TransferStatus.CONFIRMED, 0)
            if counts.get(TransferStatus.FAILED):
                raise BenchFailure(f"{counts[TransferStatus.FAILED]} transfers failed")
            if confirmed >= transfers:
                finished = time.perf_counter()
                break
            if time.monotonic() > deadline or worker.poll() is not None:
                raise BenchFailure(
                    f"only {confirmed}/{transfers} confirmed ({counts}); "
                    f"worker log: {log_path.read_text()[-1500:]}"
                )
            await asyncio.sleep(0.02)
        seconds = finished - started
        cpu = {name: _cpu_seconds(pid) - cpu_before[name] for name, pid in processes.items()}
        console.log(
            f"CPU seconds in the {seconds:.1f} s run: "
            + ", ".join(f"{name} {used:.1f}" for name, used in cpu.items())
            + (" (the bench process runs the API)" if api is None else "")
        )
        with services.db() as db:
            rows = db.execute(
                select(Transfer.signed_at, Transfer.confirmed_at, Transfer.to_address)
            ).all()
        latencies = sorted(
            (row.confirmed_at - row.signed_at).total_seconds() * 1000
            for row in rows
            if row.confirmed_at and row.signed_at
        )
        # Every recipient holds exactly what was sent (a sample of 200 balances read from chain).
        for row in rows[:200]:
            if await balance_of(rpc, usdc.address, row.to_address) != 10_000:
                raise BenchFailure(f"{row.to_address} does not hold the 0.01 USDC sent to it")
        return PipelineResult(
            transfers=transfers,
            seconds=seconds,
            per_second=transfers / seconds,
            latency_p50_ms=statistics.median(latencies),
            latency_p99_ms=latencies[min(len(latencies) - 1, round(0.99 * (len(latencies) - 1)))],
            gas_limit=chain.settings.local_chain.gas_limit,
            api_per_second=transfers / (api_done - started),
        )
    finally:
        await closing.aclose()
        if api is not None:
            api.terminate()  # both stop at once
        if worker is not None and worker.poll() is None:
            worker.terminate()
            worker.wait(10)
        if api is not None:
            api.stop()
        await services.aclose()
        await client.aclose()
        signer.stop()


def _cpu_seconds(pid: int) -> float:
    """User + system CPU time a process has used (Linux ``/proc``; 0 elsewhere)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def _warm_up(session: aiohttp.ClientSession, people: list[Person], connections: int) -> None:
    """Open the session's connections and have every API process connect to the chain (on its
    first transfer request), before the clock starts: the in-process API is warm too."""

    async def one(index: int) -> None:
        person = people[index % len(people)]
        async with session.get(
            "/v1/transfers",
            params={"limit": "1"},
            headers={"authorization": f"Bearer {person.token}"},
        ) as answer:
            if answer.status != 200:
                raise BenchFailure(f"warm-up refused: {await answer.text()}")

    for _ in range(2):
        await asyncio.gather(*(one(index) for index in range(connections)))


@dataclass(frozen=True)
class RawBaseline:
    """chain_baseline's run on our chain: its token, its workload (payers, sponsors) and what
    it measured."""

    token: Token
    workload: baseline_bench.Workload
    outcome: baseline_bench.Outcome


async def raw_baseline(rpc: RpcClient, chain: LocalChain, transfers: int) -> RawBaseline:
    """chain_baseline's raw submission of pre-signed transfers on ``chain``, checked."""
    token = await read_token(rpc, chain.deployment.token("USDC").address)
    workload = baseline_bench.build_workload(
        "baseline", token, transfers=transfers, sponsors=4, payers=100
    )
    await baseline_bench.fund(rpc, chain, token, [workload])
    await baseline_bench.preflight(rpc, token, workload)
    async with RpcClient(chain.rpc_url, timeout=120.0, retries=0) as sender:
        await sender.chain_id()
        timing = await baseline_bench.measure(
            rpc, workload, baseline_bench.batched_submitter(sender, 200)
        )
    return RawBaseline(token, workload, await baseline_bench.check(rpc, token, workload, timing))


async def run_baseline(chain: LocalChain, transfers: int) -> float:
    """chain_baseline's raw submission of pre-signed transfers on the same chain: mined/s."""
    async with RpcClient(chain.rpc_url, timeout=120.0, retries=0) as rpc:
        return (await raw_baseline(rpc, chain, transfers)).outcome.timing.mined_per_second


def _options(gas_limit: int) -> baseline_bench.Options:
    return baseline_bench.Options(
        transfers=0, sponsors=4, payers=100, batch_size=200, gas_limit=gas_limit,
        block_time=LocalChainSettings().block_time, quick=True,
    )  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer transfers (under 60 s)")
    parser.add_argument("--transfers", type=int, default=None)
    parser.add_argument("--users", type=int, default=50)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--uncapped-gas-limit", type=int, default=300_000_000)
    parser.add_argument(
        "--api-processes",
        type=int,
        default=0,
        metavar="N",
        help="run the API as `seiwallet serve --workers N` over HTTP (default 0: in this process)",
    )
    parser.add_argument(
        "--database",
        choices=("sqlite", "postgresql"),
        default="sqlite",
        help="the platform's database: a SQLite file (default) or a throwaway PostgreSQL cluster",
    )
    args = parser.parse_args()
    if args.api_processes < 0:
        parser.error("--api-processes must be 0 (the API in this process) or more")
    # --quick stays under a minute on 2 cores: 400 transfers a phase (baseline, capped, uncapped).
    transfers = args.transfers or (400 if args.quick else 3000)
    logging.basicConfig(level=logging.WARNING)
    block_time = LocalChainSettings().block_time
    home = Path(tempfile.mkdtemp(prefix="bench-transfers-"))
    chains: list[LocalChain] = []
    databases = Databases(args.database)
    try:
        databases.start()
        chain = baseline_bench.start_chain(home / "chain", _options(LocalChainSettings().gas_limit))
        chains.append(chain)
        console.log(f"Sei-like chain at {chain.rpc_url}")
        baseline = asyncio.run(run_baseline(chain, transfers))
        console.log(f"baseline: {baseline:,.1f} mined/s")
        capped = asyncio.run(
            run_pipeline(
                chain,
                home / "capped",
                transfers=transfers,
                users=args.users,
                concurrency=args.concurrency,
                databases=databases,
                api_processes=args.api_processes,
            )
        )
        console.log(f"pipeline: {capped.per_second:,.1f} confirmed/s")
        chain.stop()
        uncapped_chain = baseline_bench.start_chain(
            home / "chain-uncapped", _options(args.uncapped_gas_limit)
        )
        chains.append(uncapped_chain)
        uncapped = asyncio.run(
            run_pipeline(
                uncapped_chain,
                home / "uncapped",
                transfers=transfers if args.quick else transfers * 2,
                users=args.users,
                concurrency=args.concurrency,
                databases=databases,
                api_processes=args.api_processes,
            )
        )
        console.log(f"pipeline, gas limit lifted: {uncapped.per_second:,.1f} confirmed/s")
    except BenchFailure as exc:
        console.print(f"[red]benchmark failed:[/red] {exc}")
        return 1
    except ExceptionGroup as group:
        console.print(f"[red]benchmark failed:[/red] {group.exceptions[0]}")
        return 1
    finally:
        for running in chains:
            running.stop()
        databases.close()
        shutil.rmtree(home, ignore_errors=True)
    ratio = capped.per_second / baseline
    print(
        f"{transfers} transfers end to end on the Sei-like chain: {capped.per_second:,.1f}/s "
        f"confirmed vs {baseline:,.1f}/s mined raw (ratio {ratio:.2f}); approval → confirmed "
        f"p50 {capped.latency_p50_ms:,.0f} ms, p99 {capped.latency_p99_ms:,.0f} ms "
        f"({block_time * 1000:.0f} ms blocks); gas limit lifted: {uncapped.per_second:,.1f}/s"
    )
    print(
        json.dumps(
            {
                "bench": BENCH,
                "metric": METRIC,
                "value": round(capped.per_second, 1),
                "unit": "transfers/s",
                "baseline": BASELINE,
                "baseline_value": round(baseline, 1),
                "ratio": round(ratio, 3),
                "latency_p50_ms": round(capped.latency_p50_ms, 1),
                "latency_p99_ms": round(capped.latency_p99_ms, 1),
                "block_time_ms": round(block_time * 1000),
                "uncapped_per_s": round(uncapped.per_second, 1),
                "api_signed_per_s": round(capped.api_per_second, 1),
                "uncapped_gas_limit": args.uncapped_gas_limit,
                "transfers": transfers,
                "users": args.users,
                "database": args.database,
                "api_processes": args.api_processes,
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
