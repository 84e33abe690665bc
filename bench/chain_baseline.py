"""Benchmark: how many pre-signed EIP-3009 USDC transfers per second the local chain mines.

This is the ceiling later benchmarks are compared against: nothing but the chain and the wire.
It starts its own local chain (anvil with the Sei-like settings of ``LocalChain``: 0.4 s blocks,
a 10 M block gas limit, Prague, base fee 0; ``--gas-limit`` / ``--block-time`` change them),
mints USDC to fresh payer keys that hold no gas, and pre-signs everything before the clock
starts: the payers' ``transferWithAuthorization`` authorizations (EIP-712 in the token's domain
as read from the chain) and the sponsors' type-2 transactions that submit them (explicit nonces,
fixed gas). Every transfer goes to a new holder, the dearest case for gas.

Two submitters run on the same chain, one after the other, each with its own sponsors, payers
and recipients:

* ours: :class:`~seiwallet.chain.rpc.RpcClient` ``batch`` of ``eth_sendRawTransaction`` (200 a
  batch), one asyncio stream per sponsor;
* the baseline: web3.py's ``AsyncWeb3(AsyncHTTPProvider)``, one ``send_raw_transaction``
  request per transfer, the same number of concurrent streams.

The baseline runs first, so any slowing of a chain that has grown counts against ours. For each
the clock runs from the first send until the last transfer is mined (every sponsor's mined
nonce has reached its count). Afterwards every receipt is checked (status 1, a ``Transfer`` of
the right amount to the right recipient) and every payer's and recipient's final balance: a
benchmark that silently counted failures would be worthless, so any failure ends the run with
exit status 1.

The human table goes to stdout, then the result as one JSON object on the last line.

    .venv/bin/python bench/chain_baseline.py --quick
    .venv/bin/python bench/chain_baseline.py --quick --gas-limit 300000000
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import socket
import statistics
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import coincurve
import rlp  # type: ignore[import-untyped]
from eth_abi.abi import decode as abi_decode
from eth_account import Account
from eth_account.messages import encode_typed_data
from eth_utils.address import to_checksum_address
from eth_utils.crypto import keccak
from rich.console import Console
from rich.table import Table
from web3 import AsyncHTTPProvider, AsyncWeb3

from seiwallet.chain.errors import RpcError
from seiwallet.chain.localnet import LocalChain, LocalChainError
from seiwallet.chain.rpc import Call, RpcClient, from_hex, to_hex
from seiwallet.chain.tokens import (
    Authorization3009,
    Token,
    authorization_digest,
    authorization_typed_data,
    encode_call,
    encode_transfer_with_authorization,
    read_token,
)
from seiwallet.config import LocalChainSettings, Settings
from seiwallet.errors import SeiwalletError

BENCH = "chain_baseline"
METRIC = "mined_transfers_per_second"
BASELINE = "web3.py AsyncHTTPProvider, one request per transfer"

#: Gas each sponsor transaction may use: ~103 k measured for a transfer to a new holder.
TRANSFER_GAS = 120_000
#: FiatToken ``mint`` to a new holder uses ~70 k.
MINT_GAS = 150_000
#: The chain's base fee is 0; the priority fee is what the sponsors pay per gas.
MAX_FEE_PER_GAS = 10**9
#: Sponsors get this much native currency (anvil sets balances directly).
SPONSOR_BALANCE_WEI = 1_000 * 10**18
#: Each transfer moves 0.01 USDC.
TRANSFER_UNITS = 10_000
#: What every payer keeps: no transfer empties a balance (which would earn a gas refund).
LEFTOVER_UNITS = 1_000_000
#: Far enough: authorizations never expire during a run.
VALID_BEFORE = 2**48
#: How often the mined nonces are polled while a side runs.
POLL_SECONDS = 0.02
#: Receipts, balances and mints are sent in batches of this many calls.
CHECK_BATCH = 500

TRANSFER_TOPIC = "0x" + keccak(text="Transfer(address,address,uint256)").hex()

console = Console(stderr=True)


class BenchFailure(Exception):
    """The run cannot produce a trustworthy figure (a rejected or failed transfer...)."""


# -- keys and signing (before the clock starts) -------------------------------------------------


@dataclass(frozen=True)
class Key:
    """A secp256k1 key and its EVM address."""

    secret: coincurve.PrivateKey
    address: str

    @classmethod
    def create(cls) -> Key:
        return cls.from_bytes(os.urandom(32))

    @classmethod
    def from_bytes(cls, secret: bytes) -> Key:
        private = coincurve.PrivateKey(secret)
        public = private.public_key.format(compressed=False)[1:]
        return cls(private, _address(public))

    def sign_digest(self, digest: bytes) -> bytes:
        """``r ‖ s ‖ v`` with ``v`` in {27, 28}, as EIP-3009's ``bytes signature`` wants."""
        signature = self.secret.sign_recoverable(digest, hasher=None)
        return signature[:64] + bytes([signature[64] + 27])


def _address(public_key: bytes) -> str:
    """The EVM address of an uncompressed public key (without its 0x04 prefix)."""
    return to_checksum_address(keccak(public_key)[12:])


def sign_type2(
    key: Key,
    *,
    chain_id: int,
    nonce: int,
    to: str,
    data: bytes,
    gas: int,
    max_fee: int = MAX_FEE_PER_GAS,
) -> bytes:
    """A signed EIP-1559 transaction (raw bytes), far quicker than eth-account for 20,000 of them.

    :func:`check_signers` compares it byte for byte with eth-account before every run.
    """
    fields: list[Any] = [
        chain_id,
        nonce,
        max_fee,  # max priority fee: with base fee 0 the whole fee is priority
        max_fee,
        gas,
        bytes.fromhex(to[2:]),
        0,
        data,
        [],
    ]
    signature = key.secret.sign_recoverable(keccak(b"\x02" + rlp.encode(fields)), hasher=None)
    r = int.from_bytes(signature[:32], "big")
    s = int.from_bytes(signature[32:64], "big")
    return b"\x02" + bytes(rlp.encode([*fields, signature[64], r, s]))


def tx_hash(raw: bytes) -> str:
    return "0x" + keccak(raw).hex()


@dataclass(frozen=True)
class Transfer:
    """One pre-signed transfer: the sponsor's raw transaction and what it must do."""

    raw: bytes
    hash: str
    #: The ``transferWithAuthorization`` call the transaction carries.
    calldata: bytes
    payer: str
    recipient: str


@dataclass(frozen=True)
class Workload:
    """Everything one side submits: per sponsor, its transactions in nonce order."""

    name: str
    sponsors: tuple[Key, ...]
    payers: tuple[Key, ...]
    streams: tuple[tuple[Transfer, ...], ...]

    @property
    def transfers(self) -> list[Transfer]:
        return [transfer for stream in self.streams for transfer in stream]

    def payer_units(self) -> dict[str, int]:
        """What each payer must hold before the run: its transfers and the leftover."""
        counts = Counter(transfer.payer for transfer in self.transfers)
        return {
            payer.address: counts[payer.address] * TRANSFER_UNITS + LEFTOVER_UNITS
            for payer in self.payers
        }


def build_workload(
    name: str, token: Token, *, transfers: int, sponsors: int, payers: int
) -> Workload:
    """Sign ``transfers`` authorizations and the sponsor transactions that submit them."""
    sponsor_keys = tuple(Key.create() for _ in range(sponsors))
    payer_keys = tuple(Key.create() for _ in range(min(payers, transfers)))
    streams: list[list[Transfer]] = [[] for _ in sponsor_keys]
    for index in range(transfers):
        payer = payer_keys[index % len(payer_keys)]
        recipient = _address(os.urandom(64))  # a new holder, nobody's key
        authorization = Authorization3009(
            from_address=payer.address,
            to=recipient,
            value=TRANSFER_UNITS,
            valid_after=0,
            valid_before=VALID_BEFORE,
            nonce=os.urandom(32),
        )
        signature = payer.sign_digest(authorization_digest(token.domain, authorization))
        calldata = bytes.fromhex(encode_transfer_with_authorization(authorization, signature)[2:])
        stream = index % sponsors
        raw = sign_type2(
            sponsor_keys[stream],
            chain_id=token.chain_id,
            nonce=len(streams[stream]),
            to=token.address,
            data=calldata,
            gas=TRANSFER_GAS,
        )
        streams[stream].append(Transfer(raw, tx_hash(raw), calldata, payer.address, recipient))
    return Workload(name, sponsor_keys, payer_keys, tuple(tuple(s) for s in streams))


def check_signers(token: Token) -> None:
    """Our fast signers must agree with eth-account, or the figures measure nothing."""
    key = Key.create()
    account = Account.from_key(key.secret.secret)
    if account.address != key.address:
        raise BenchFailure("the address derived with coincurve differs from eth-account's")
    authorization = Authorization3009(
        from_address=key.address,
        to=key.address,
        value=1,
        valid_after=0,
        valid_before=VALID_BEFORE,
        nonce=os.urandom(32),
    )
    signature = key.sign_digest(authorization_digest(token.domain, authorization))
    typed = encode_typed_data(full_message=authorization_typed_data(token.domain, authorization))
    if Account.recover_message(typed, signature=signature) != key.address:
        raise BenchFailure("the EIP-3009 signature does not recover to the payer")
    data = os.urandom(100)
    ours = sign_type2(
        key, chain_id=token.chain_id, nonce=7, to=token.address, data=data, gas=TRANSFER_GAS
    )
    reference = account.sign_transaction(
        {
            "type": 2,
            "chainId": token.chain_id,
            "nonce": 7,
            "to": token.address,
            "value": 0,
            "gas": TRANSFER_GAS,
            "maxFeePerGas": MAX_FEE_PER_GAS,
            "maxPriorityFeePerGas": MAX_FEE_PER_GAS,
            "data": data,
        }
    )
    if ours != bytes(reference.raw_transaction):
        raise BenchFailure("the type-2 transaction signer differs from eth-account's")


# -- setting up the chain's state -----------------------------------------------------------------


def _rejected(results: Sequence[Any], expected: Sequence[str]) -> list[str]:
    """Why sends were refused (an error, or a hash other than the transaction's)."""
    reasons: list[str] = []
    for result, want in zip(results, expected, strict=True):
        if isinstance(result, RpcError):
            reasons.append(str(result))
        elif str(result).lower() != want:
            reasons.append(f"the node answered {result!r} for {want}")
    return reasons


async def send_all(rpc: RpcClient, raws: Sequence[bytes]) -> None:
    """Send raw transactions in batches; raise on any refusal."""
    for start in range(0, len(raws), CHECK_BATCH):
        chunk = raws[start : start + CHECK_BATCH]
        results = await rpc.batch([Call("eth_sendRawTransaction", ["0x" + r.hex()]) for r in chunk])
        reasons = _rejected(results, [tx_hash(r) for r in chunk])
        if reasons:
            raise BenchFailure(f"{len(reasons)} transactions refused: {reasons[0]}")


async def fund(
    rpc: RpcClient, chain: LocalChain, token: Token, workloads: Sequence[Workload]
) -> None:
    """Give the sponsors gas and mint the payers their USDC (keys that hold no gas at all)."""
    for workload in workloads:
        for sponsor in workload.sponsors:
            await rpc.request("anvil_setBalance", [sponsor.address, to_hex(SPONSOR_BALANCE_WEI)])
    # Signed here rather than with deploy.mint, which waits for each mint's block in turn.
    admin = Key.from_bytes(bytes(chain.accounts.token_admin.key))
    first = await rpc.get_transaction_count(admin.address, "pending")
    amounts = [item for w in workloads for item in w.payer_units().items()]
    mints = [
        sign_type2(
            admin,
            chain_id=token.chain_id,
            nonce=first + index,
            to=token.address,
            data=bytes.fromhex(
                encode_call("mint(address,uint256)", ["address", "uint256"], [payer, units])[2:]
            ),
            gas=MINT_GAS,
        )
        for index, (payer, units) in enumerate(amounts)
    ]
    await send_all(rpc, mints)
    await wait_mined(rpc, {admin.address: first + len(mints)}, timeout=60 + len(mints) / 20)
    for receipt in await receipts(rpc, [tx_hash(raw) for raw in mints]):
        if from_hex(receipt["status"]) != 1:
            raise BenchFailure(f"minting to a payer failed: {receipt['transactionHash']}")


async def preflight(rpc: RpcClient, token: Token, workload: Workload) -> None:
    """Simulate one transfer, so a setup mistake fails now with the token's revert reason."""
    await rpc.call(
        {
            "from": workload.sponsors[0].address,
            "to": token.address,
            "data": "0x" + workload.streams[0][0].calldata.hex(),
            "gas": to_hex(TRANSFER_GAS),
        }
    )


# -- measuring ------------------------------------------------------------------------------------


async def wait_mined(rpc: RpcClient, targets: dict[str, int], *, timeout: float) -> float:
    """Poll until every account's mined nonce reaches its target; the ``perf_counter`` then."""
    deadline = time.perf_counter() + timeout
    addresses = list(targets)
    while True:
        answers = await rpc.batch(
            [Call("eth_getTransactionCount", [address, "latest"]) for address in addresses]
        )
        now = time.perf_counter()
        mined = [from_hex(a) if not isinstance(a, RpcError) else -1 for a in answers]
        if all(m >= targets[address] for m, address in zip(mined, addresses, strict=True)):
            return now
        if now > deadline:
            done = sum(min(m, targets[a]) for m, a in zip(mined, addresses, strict=True))
            raise BenchFailure(
                f"only {done} of {sum(targets.values())} transactions mined in {timeout:g} s"
            )
        await asyncio.sleep(POLL_SECONDS)


Submitter = Callable[[Sequence[Transfer]], Awaitable[None]]


def batched_submitter(rpc: RpcClient, batch_size: int) -> Submitter:
    """Ours: one JSON-RPC batch of ``eth_sendRawTransaction`` per ``batch_size`` transfers."""

    async def stream(transfers: Sequence[Transfer]) -> None:
        for start in range(0, len(transfers), batch_size):
            chunk = transfers[start : start + batch_size]
            results = await rpc.batch(
                [Call("eth_sendRawTransaction", ["0x" + t.raw.hex()]) for t in chunk]
            )
            reasons = _rejected(results, [t.hash for t in chunk])
            if reasons:
                raise BenchFailure(f"{len(reasons)} transfers refused: {reasons[0]}")

    return stream


def web3_submitter(w3: AsyncWeb3[Any]) -> Submitter:
    """The baseline: web3.py, one ``eth_sendRawTransaction`` request per transfer."""

    async def stream(transfers: Sequence[Transfer]) -> None:
        for transfer in transfers:
            answer = await w3.eth.send_raw_transaction(transfer.raw)
            if answer.to_0x_hex() != transfer.hash:
                raise BenchFailure(f"web3.py got {answer.to_0x_hex()} for {transfer.hash}")

    return stream


@dataclass(frozen=True)
class Timing:
    transfers: int
    accepted_seconds: float
    mined_seconds: float

    @property
    def accepted_per_second(self) -> float:
        return self.transfers / self.accepted_seconds

    @property
    def mined_per_second(self) -> float:
        return self.transfers / self.mined_seconds


async def measure(poller: RpcClient, workload: Workload, submit: Submitter) -> Timing:
    """Submit every stream concurrently; time acceptance and mining from the first send."""
    targets = {
        sponsor.address: len(stream)
        for sponsor, stream in zip(workload.sponsors, workload.streams, strict=True)
    }
    count = sum(targets.values())
    start = time.perf_counter()
    mined = asyncio.create_task(wait_mined(poller, targets, timeout=60 + count / 20))
    try:
        await asyncio.gather(*(submit(stream) for stream in workload.streams))
    except BaseException:
        mined.cancel()
        raise
    accepted = time.perf_counter()
    mined_at = await mined
    return Timing(count, accepted - start, mined_at - start)


# -- checking -------------------------------------------------------------------------------------


async def receipts(rpc: RpcClient, hashes: Sequence[str]) -> list[dict[str, Any]]:
    """The raw receipts of mined transactions, in order (a missing one fails the run)."""
    found: list[dict[str, Any]] = []
    for start in range(0, len(hashes), CHECK_BATCH):
        chunk = hashes[start : start + CHECK_BATCH]
        answers = await rpc.batch([Call("eth_getTransactionReceipt", [h]) for h in chunk])
        for want, answer in zip(chunk, answers, strict=True):
            if isinstance(answer, RpcError) or not answer:
                raise BenchFailure(f"no receipt for {want}: {answer}")
            found.append(dict(answer))
    return found


async def balances(rpc: RpcClient, token: Token, owners: Sequence[str]) -> list[int]:
    """``balanceOf`` each owner at the head."""
    found: list[int] = []
    for start in range(0, len(owners), CHECK_BATCH):
        found += await _balances_once(rpc, token, owners[start : start + CHECK_BATCH])
    return found


async def _balances_once(rpc: RpcClient, token: Token, chunk: Sequence[str]) -> list[int]:
    # With --prune-history anvil keeps almost no past states: a call at "latest" that races a
    # new block can fail with "BlockOutOfRangeError: block height is N+1 but requested was N".
    # That is no answer about the balance, so ask again.
    for attempt in range(5):
        answers = await rpc.batch(
            [
                Call(
                    "eth_call",
                    [
                        {
                            "to": token.address,
                            "data": encode_call("balanceOf(address)", ["address"], [owner]),
                        },
                        "latest",
                    ],
                )
                for owner in chunk
            ]
        )
        failed = [(o, a) for o, a in zip(chunk, answers, strict=True) if isinstance(a, RpcError)]
        if not failed:
            return [int(abi_decode(["uint256"], bytes.fromhex(str(a)[2:]))[0]) for a in answers]
        owner, error = failed[0]
        if "BlockOutOfRange" not in str(error) or attempt == 4:
            raise BenchFailure(f"balanceOf({owner}) failed: {error}")
    raise AssertionError("unreachable")  # pragma: no cover


@dataclass(frozen=True)
class Outcome:
    """One side's figures, after every transfer was checked."""

    name: str
    timing: Timing
    gas_per_transfer: float
    blocks: int
    transfers_per_block: float
    max_transfers_per_block: int


def _topic_address(topic: str) -> str:
    return "0x" + topic[-40:]


async def check(rpc: RpcClient, token: Token, workload: Workload, timing: Timing) -> Outcome:
    """Every transfer mined with status 1 and moved the right amount; balances add up."""
    transfers = workload.transfers
    gas: list[int] = []
    per_block: Counter[int] = Counter()
    token_address = token.address.lower()
    for transfer, receipt in zip(
        transfers, await receipts(rpc, [t.hash for t in transfers]), strict=True
    ):
        if from_hex(receipt["status"]) != 1:
            raise BenchFailure(f"transfer {transfer.hash} failed (status 0)")
        moved = [
            log
            for log in receipt["logs"]
            if log["address"].lower() == token_address and log["topics"][0] == TRANSFER_TOPIC
        ]
        if len(moved) != 1 or (
            _topic_address(moved[0]["topics"][1]) != transfer.payer.lower()
            or _topic_address(moved[0]["topics"][2]) != transfer.recipient.lower()
            or from_hex(moved[0]["data"]) != TRANSFER_UNITS
        ):
            raise BenchFailure(f"transfer {transfer.hash} did not move the authorized amount")
        gas.append(from_hex(receipt["gasUsed"]))
        per_block[from_hex(receipt["blockNumber"])] += 1
    recipients = [t.recipient for t in transfers]
    received = await balances(rpc, token, recipients)
    if any(units != TRANSFER_UNITS for units in received):
        raise BenchFailure("a recipient's balance is not the amount it was sent")
    kept = await balances(rpc, token, [p.address for p in workload.payers])
    if any(units != LEFTOVER_UNITS for units in kept):
        raise BenchFailure("a payer's balance is not what it kept after its transfers")
    if sum(received) != len(transfers) * TRANSFER_UNITS:  # pragma: no cover - implied above
        raise BenchFailure("the balances do not add up")
    return Outcome(
        name=workload.name,
        timing=timing,
        gas_per_transfer=statistics.fmean(gas),
        blocks=max(per_block) - min(per_block) + 1,
        transfers_per_block=len(transfers) / len(per_block),
        max_transfers_per_block=max(per_block.values()),
    )


# -- the run --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Options:
    transfers: int
    sponsors: int
    payers: int
    batch_size: int
    gas_limit: int
    block_time: float
    quick: bool


async def run(chain: LocalChain, options: Options) -> tuple[Outcome, Outcome]:
    """Prepare both sides, run the baseline then ours, check both; (ours, baseline)."""
    async with RpcClient(chain.rpc_url, timeout=120.0, retries=0) as rpc:
        token = await read_token(rpc, chain.deployment.token("USDC").address)
        check_signers(token)
        started = time.perf_counter()
        workloads = [
            build_workload(
                name,
                token,
                transfers=options.transfers,
                sponsors=options.sponsors,
                payers=options.payers,
            )
            for name in ("web3.py, a request each", "ours, RpcClient.batch")
        ]
        baseline_work, our_work = workloads
        console.log(
            f"signed {2 * options.transfers} authorizations and transactions "
            f"in {time.perf_counter() - started:.1f} s (not measured)"
        )
        await fund(rpc, chain, token, workloads)
        for workload in workloads:
            await preflight(rpc, token, workload)

        w3 = AsyncWeb3(AsyncHTTPProvider(chain.rpc_url, request_kwargs={"timeout": 120}))
        try:
            await w3.eth.chain_id  # open the session before the clock starts
            console.log(f"baseline: {baseline_work.name}, {options.sponsors} streams")
            baseline_timing = await measure(rpc, baseline_work, web3_submitter(w3))
        finally:
            await w3.provider.disconnect()
        console.log(f"ours: {our_work.name}, {options.sponsors} streams")
        async with RpcClient(chain.rpc_url, timeout=120.0, retries=0) as sender:
            await sender.chain_id()  # likewise
            our_timing = await measure(rpc, our_work, batched_submitter(sender, options.batch_size))

        console.log("checking every receipt and balance")
        baseline = await check(rpc, token, baseline_work, baseline_timing)
        ours = await check(rpc, token, our_work, our_timing)
        return ours, baseline


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        return int(probe.getsockname()[1])


def start_chain(data_dir: Path, options: Options) -> LocalChain:
    """Our own anvil on a free port (retrying if another process takes the port first)."""
    for attempt in range(3):
        settings = Settings(
            profile="local",
            data_dir=data_dir,
            sponsor_keys=[],
            local_chain=LocalChainSettings(
                port=free_port(), gas_limit=options.gas_limit, block_time=options.block_time
            ),
        )
        chain = LocalChain(settings, persist=False)
        try:
            chain.start()
        except LocalChainError:
            if attempt == 2:
                raise
            continue
        return chain
    raise AssertionError("unreachable")  # pragma: no cover


def report(ours: Outcome, baseline: Outcome, options: Options) -> dict[str, Any]:
    """Print the table on stdout; the JSON result."""
    ceiling = options.gas_limit / ours.gas_per_transfer / options.block_time
    table = Table(
        title=(
            f"Pre-signed EIP-3009 USDC transfers, {options.transfers} a side, "
            f"{options.sponsors} sponsors/streams, gas limit {options.gas_limit:,}, "
            f"{options.block_time:g} s blocks"
        )
    )
    table.add_column("submitter")
    for column in (
        "accepted/s",
        "mined/s",
        "mined in s",
        "gas/transfer",
        "blocks",
        "transfers/block",
        "max/block",
    ):
        table.add_column(column, justify="right")
    for outcome in (ours, baseline):
        table.add_row(
            outcome.name,
            f"{outcome.timing.accepted_per_second:,.0f}",
            f"{outcome.timing.mined_per_second:,.0f}",
            f"{outcome.timing.mined_seconds:.2f}",
            f"{outcome.gas_per_transfer:,.0f}",
            str(outcome.blocks),
            f"{outcome.transfers_per_block:.1f}",
            str(outcome.max_transfers_per_block),
        )
    # Piped output (CI logs, `| tail`) would otherwise be cut to 80 columns.
    out = Console() if sys.stdout.isatty() else Console(width=120)
    out.print(table)
    out.print(
        f"ratio (mined/s): {ours.timing.mined_per_second / baseline.timing.mined_per_second:.2f}"
        f"   ratio (accepted/s): "
        f"{ours.timing.accepted_per_second / baseline.timing.accepted_per_second:.2f}"
        f"   gas ceiling: {ceiling:,.0f} transfers/s "
        f"({options.gas_limit / ours.gas_per_transfer:,.1f} per block)"
    )
    return {
        "bench": BENCH,
        "metric": METRIC,
        "value": round(ours.timing.mined_per_second, 1),
        "unit": "transfers/s",
        "baseline": BASELINE,
        "baseline_value": round(baseline.timing.mined_per_second, 1),
        "ratio": round(ours.timing.mined_per_second / baseline.timing.mined_per_second, 3),
        "accepted_per_second": round(ours.timing.accepted_per_second, 1),
        "baseline_accepted_per_second": round(baseline.timing.accepted_per_second, 1),
        "accepted_ratio": round(
            ours.timing.accepted_per_second / baseline.timing.accepted_per_second, 3
        ),
        "gas_per_transfer": round(ours.gas_per_transfer, 1),
        "transfers_per_block": round(ours.transfers_per_block, 1),
        "max_transfers_per_block": ours.max_transfers_per_block,
        "blocks": ours.blocks,
        "gas_ceiling_per_second": round(ceiling, 1),
        "gas_limit": options.gas_limit,
        "block_time": options.block_time,
        "transfers": options.transfers,
        "sponsors": options.sponsors,
        "batch_size": options.batch_size,
        "quick": options.quick,
    }


def parse_args(argv: Sequence[str] | None = None) -> Options:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="2,000 transfers a side (< 60 s)")
    parser.add_argument("--transfers", type=int, help="transfers a side (default 10,000)")
    parser.add_argument("--sponsors", type=int, default=4, help="sponsors = streams (4)")
    parser.add_argument("--payers", type=int, default=100, help="payer keys a side (100)")
    parser.add_argument("--batch-size", type=int, default=200, help="calls per batch (200)")
    defaults = LocalChainSettings()
    parser.add_argument("--gas-limit", type=int, default=defaults.gas_limit)
    parser.add_argument("--block-time", type=float, default=defaults.block_time)
    args = parser.parse_args(argv)
    transfers = args.transfers or (2_000 if args.quick else 10_000)
    if min(transfers, args.sponsors, args.payers, args.batch_size) < 1:
        parser.error("--transfers, --sponsors, --payers and --batch-size must be positive")
    return Options(
        transfers=transfers,
        sponsors=args.sponsors,
        payers=args.payers,
        batch_size=args.batch_size,
        gas_limit=args.gas_limit,
        block_time=args.block_time,
        quick=args.quick,
    )


def main(argv: Sequence[str] | None = None) -> int:
    options = parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    with tempfile.TemporaryDirectory(prefix="bench-chain-") as data_dir:
        chain: LocalChain | None = None
        try:
            started = time.perf_counter()
            chain = start_chain(Path(data_dir), options)
            console.log(f"chain up at {chain.rpc_url} in {time.perf_counter() - started:.1f} s")
            ours, baseline = asyncio.run(run(chain, options))
        except KeyboardInterrupt:
            console.print("interrupted")
            return 130
        except (BenchFailure, SeiwalletError) as exc:
            console.print(f"[red]benchmark failed:[/red] {exc}")
            return 1
        finally:
            if chain is not None:
                chain.stop()
    result = report(ours, baseline, options)
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
