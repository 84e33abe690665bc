"""How many approved EIP-3009 transfers the signer signs per second, through its real RPC.

Each intent carries a device-key approval made beforehand (the phone's work, not the
signer's); the signer verifies it, consumes its nonce, evaluates the wallet's policy (per-
transaction and rolling 24-hour limits, so the spend window is read), unseals the wallet key,
signs the EIP-712 digest and appends a hash-chained audit record, durably, one commit per batch.
The signer process is pinned to one core, which it has to itself: this (client) process runs on
the other cores while the signer is measured.

Baseline, side by side in the same run: ``eth_account.Account.sign_typed_data`` on the same
typed data with the key in the clear — which verifies nothing, evaluates nothing and records
nothing — timed on the signer's core.

    .venv/bin/python bench/signer.py [--quick] [--batch 500] [--profile signer.prof]

``--profile`` runs the signer under cProfile (far slower: for where the time goes, not for the
figure); ``py-spy record --pid`` on the signer's process is the low-overhead alternative.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from eth_account import Account

from seiwallet.chain.tokens import Authorization3009, TokenDomain, authorization_typed_data
from seiwallet.signer.client import SignerClient
from seiwallet.signer.intents import intent_digest, parse_intent
from seiwallet.signer.service import action_digest, approval_subject

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository's test helpers
from tests.fixtures.authenticators import SoftDeviceKey

USDC = TokenDomain("USD Coin", "2", 713715, "0x8464135c8F25Da09e49BC8782676a84730C318bC")
RECIPIENT = "0x70997970C51812dc3A010C7d01b50e0d17dc79C8"
#: The one core the signer runs on; the baseline is timed on it too.
SIGNER_CORE = 0


def pin(cores: set[int]) -> None:
    """Run this (the bench's) process on ``cores``, where the OS allows it."""
    if hasattr(os, "sched_setaffinity") and cores:
        os.sched_setaffinity(0, cores)


def other_cores() -> set[int]:
    """The cores the client may use: all but the signer's (all of them on a one-core machine)."""
    if not hasattr(os, "sched_getaffinity"):
        return set()
    cores = set(os.sched_getaffinity(0))
    return cores - {SIGNER_CORE} or cores


def start_signer(data_dir: Path, profile: Path | None = None) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SEIWALLET_")}
    env["SEIWALLET_DATA_DIR"] = str(data_dir)
    profiler = ["-m", "cProfile", "-o", str(profile)] if profile else []
    command = [sys.executable, *profiler, "-m", "seiwallet", "signer"]
    if shutil.which("taskset"):
        command = ["taskset", "-c", str(SIGNER_CORE), *command]  # one core, as the issue asks
    log = (data_dir / "signer.log").open("ab")
    process = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
    log.close()
    sock = data_dir / "signer" / "signer.sock"
    deadline = time.monotonic() + 30
    while True:
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            probe.connect(str(sock))
            return process
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                log_text = (data_dir / "signer.log").read_text()
                raise SystemExit(f"the signer did not start: {log_text}") from None
            time.sleep(0.05)
        finally:
            probe.close()


def cpu_seconds(pid: int) -> float | None:
    """CPU time a process's threads have had so far (Linux ``schedstat``, ns), or ``None``.

    Read around each signer round, it says how much of the round the signer spent computing:
    the throughput alone also counts the moments its core ran someone else (a shared machine).
    """
    total = 0
    try:
        for task in Path(f"/proc/{pid}/task").iterdir():
            total += int((task / "schedstat").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None
    return total / 1e9


def transfer_intent(value: int, now: int) -> dict[str, Any]:
    return {
        "kind": "erc3009.transfer",
        "version": 1,
        "token": {
            "name": USDC.name,
            "version": USDC.version,
            "chain_id": str(USDC.chain_id),
            "verifying_contract": USDC.verifying_contract,
        },
        "to": RECIPIENT,
        "amount_units": str(value),
        "valid_after": str(now - 60),
        "valid_before": str(now + 3600),
        "nonce": "0x" + os.urandom(32).hex(),
    }


async def setup_wallets(client: SignerClient, count: int) -> list[tuple[str, SoftDeviceKey]]:
    wallets = []
    for index in range(count):
        device = SoftDeviceKey(authenticator_id=f"phone-{index}")
        wallet_id = f"bench-{index}"
        await client.create_wallet(
            wallet_id,
            {"id": f"phone-{index}", "kind": "device", "public_key": device.public_key.hex()},
        )
        policy = await client.get_policy(wallet_id)
        update = {
            "kind": "policy.update",
            "version": 1,
            "expected_version": policy["version"],
            "policy": {
                "tokens": [
                    {
                        "chain_id": USDC.chain_id,
                        "address": USDC.verifying_contract,
                        "per_transaction_limit": "100000000",
                        "daily_limit": "1000000000000000",
                    }
                ]
            },
        }
        subject = approval_subject(wallet_id, intent_digest(parse_intent(update)))
        approval = device.approve(subject, os.urandom(16), int(time.time()) + 240)
        await client.sign(wallet_id, update, [approval.to_json()])
        wallets.append((wallet_id, device))
    assert action_digest  # the add-authenticator path is covered by the tests
    return wallets


def prepare(
    wallets: list[tuple[str, SoftDeviceKey]], count: int
) -> list[tuple[str, dict[str, Any], list[dict[str, Any]]]]:
    """Intents with their approvals, made before the clock starts (that is the phones' work)."""
    now = int(time.time())
    requests = []
    for index in range(count):
        wallet_id, device = wallets[index % len(wallets)]
        intent = transfer_intent(1_000 + index, now)
        subject = approval_subject(wallet_id, intent_digest(parse_intent(intent)))
        approval = device.approve(subject, os.urandom(16), now + 280)
        requests.append((wallet_id, intent, [approval.to_json()]))
    return requests


async def measure_signer(
    requests: list[Any], client: SignerClient, batch: int, streams: int = 2
) -> float:
    """Intents per second, with ``streams`` batches in flight so the signer never waits on us."""
    batches = [requests[start : start + batch] for start in range(0, len(requests), batch)]
    queue = iter(batches)

    async def stream() -> None:
        for chunk in queue:
            results = await client.sign_batch(chunk)
            failures = [r for r in results if not isinstance(r, dict)]
            if failures:
                raise SystemExit(f"the signer refused {len(failures)} intents: {failures[0]}")

    started = time.perf_counter()
    await asyncio.gather(*(stream() for _ in range(streams)))
    return len(requests) / (time.perf_counter() - started)


def measure_eth_account(requests: list[Any]) -> float:
    key = Account.create().key
    typed = []
    for _, intent, _ in requests:
        authorization = Authorization3009(
            from_address=Account.from_key(key).address if not typed else typed[0][1],
            to=intent["to"],
            value=int(intent["amount_units"]),
            valid_after=int(intent["valid_after"]),
            valid_before=int(intent["valid_before"]),
            nonce=bytes.fromhex(intent["nonce"][2:]),
        )
        typed.append((authorization_typed_data(USDC, authorization), authorization.from_address))
    started = time.perf_counter()
    for message, _ in typed:
        Account.sign_typed_data(key, full_message=message)
    return len(typed) / (time.perf_counter() - started)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a run under 60 s")
    parser.add_argument("--batch", type=int, default=500, help="intents per RPC call")
    parser.add_argument("--wallets", type=int, default=50)
    parser.add_argument(
        "--profile", type=Path, help="run the signer under cProfile, writing its stats here"
    )
    args = parser.parse_args()
    rounds = 3 if args.quick else 5
    per_round = 2_000 if args.quick else 6_000
    baseline_per_round = 600 if args.quick else 1_500

    # The signer has its core to itself: the client (which builds and reads every batch's JSON)
    # runs on the other cores, or the scheduler would now and then run it on the signer's.
    every_core = set(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else set()
    signer_core = {SIGNER_CORE} & every_core or every_core
    pin(other_cores())
    data_dir = Path(tempfile.mkdtemp(prefix="seiwallet-bench-signer-"))
    process = start_signer(data_dir, args.profile)
    ours_rounds: list[float] = []
    baseline_rounds: list[float] = []
    #: The signer's CPU time per intent in each round (µs), where the OS tells it.
    cpu_rounds: list[float | None] = []
    try:
        secret = (data_dir / "signer" / "secret").read_text().strip()
        async with SignerClient(
            secret=secret, socket=data_dir / "signer" / "signer.sock", timeout=120
        ) as client:
            wallets = await setup_wallets(client, args.wallets)
            requests = prepare(wallets, args.batch + rounds * per_round)
            await measure_signer(requests[: args.batch], client, args.batch)  # warm up
            # Rounds alternate the signer and the baseline, each on the signer's core, and the
            # figures are the medians: a neighbour's burst on the machine then lands on one
            # round of one side instead of deciding the ratio.
            for index in range(rounds):
                start = args.batch + index * per_round
                chunk = requests[start : start + per_round]
                cpu_before = cpu_seconds(process.pid)
                ours_rounds.append(await measure_signer(chunk, client, args.batch))
                cpu_after = cpu_seconds(process.pid)
                cpu_rounds.append(
                    None
                    if cpu_before is None or cpu_after is None
                    else (cpu_after - cpu_before) / len(chunk) * 1e6
                )
                pin(signer_core)
                baseline_rounds.append(measure_eth_account(chunk[:baseline_per_round]))
                pin(other_cores())
            audit = await client.audit(after_seq=0, limit=1)
        pin(every_core)
    finally:
        # SIGINT: uvicorn stops and re-raises it, and cProfile writes its stats on the way out.
        process.send_signal(signal.SIGINT if args.profile else signal.SIGTERM)
        process.wait(30)
        if os.environ.get("KEEP"):
            print("kept", data_dir)
        else:
            shutil.rmtree(data_dir, ignore_errors=True)

    ours, baseline = statistics.median(ours_rounds), statistics.median(baseline_rounds)
    for index, (mine, theirs) in enumerate(zip(ours_rounds, baseline_rounds, strict=True), 1):
        cpu_used = cpu_rounds[index - 1]
        cpu = "" if cpu_used is None else f", signer CPU {cpu_used:.0f} µs/intent"
        print(f"round {index}: signer {mine:,.0f}/s, eth_account {theirs:,.0f}/s{cpu}")
    print(
        f"signer (1 core, RPC, batches of {args.batch}, 2 in flight): "
        f"{ours:,.0f} approved intents/s (median of {rounds} rounds)"
    )
    print(
        f"eth_account.Account.sign_typed_data (no checks): {baseline:,.0f} signatures/s"
        f" (median of {rounds} rounds, on the signer's core, between the signer's rounds)"
    )
    print(
        json.dumps(
            {
                "bench": "signer",
                "metric": "approved_erc3009_intents_signed_per_second",
                "value": round(ours, 1),
                "unit": "intents/s",
                "baseline": "eth_account.Account.sign_typed_data, same payloads, no verification",
                "baseline_value": round(baseline, 1),
                "ratio": round(ours / baseline, 2),
                "batch": args.batch,
                "intents": rounds * per_round,
                "rounds": rounds,
                "audit_started": bool(audit),
                # Diagnostic, not the figure: the signer's CPU per intent (median of rounds).
                "signer_cpu_us_per_intent": (
                    round(statistics.median(cpu_known), 1)
                    if (cpu_known := [c for c in cpu_rounds if c is not None])
                    else None
                ),
            }
        )
    )


if __name__ == "__main__":
    asyncio.run(main())
