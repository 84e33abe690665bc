"""Sending transactions from sponsor accounts: nonces, EIP-1559 fees, receipts, stuck replacement.

The rule that keeps money safe: a signed transaction is written to ``chain_transactions``
*before* it is broadcast. After a crash, :meth:`TransactionSender.recover` rebroadcasts every
open transaction (the same bytes, so at most one of them can ever be mined per nonce) and
settles the status of the others from their receipts.

Sponsor keys pay gas only; they hold no user funds. They live in the worker process, never
in the API process.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import coincurve
import rlp  # type: ignore[import-untyped]
from Crypto.Hash import keccak as pycryptodome_keccak
from eth_account import Account
from eth_account.signers.local import LocalAccount
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from seiwallet.chain.errors import (
    ChainError,
    GasTooLow,
    NonceTooLow,
    ReplacementUnderpriced,
    RpcError,
    RpcUnavailable,
    TransactionFailed,
    TransactionTimeout,
)
from seiwallet.chain.models import OPEN_TX_STATUSES, TX_TRANSITIONS, SentTransaction, TxStatus
from seiwallet.chain.rpc import Call, Receipt, RpcClient, from_hex
from seiwallet.db import SQLITE_BEGIN

log = logging.getLogger(__name__)

#: Geth and anvil accept a replacement only if both fees rise by at least 10 %.
REPLACEMENT_BUMP_PERCENT = 125


def _keccak256(data: bytes) -> bytes:
    return pycryptodome_keccak.new(data=data, digest_bits=256).digest()


def sign_type2(
    key: coincurve.PrivateKey,
    *,
    chain_id: int,
    nonce: int,
    max_priority_fee_per_gas: int,
    max_fee_per_gas: int,
    gas: int,
    to: str | None,
    value: int,
    data: bytes,
) -> bytes:
    """A signed EIP-1559 transaction (its raw bytes), without an access list.

    The same bytes eth-account produces (a test pins them), in a tenth of its time: at a few
    hundred transactions a second its argument checking and dict round trips were the relayer's
    largest use of CPU. libsecp256k1 signs deterministically (RFC 6979) with a low ``s``.
    """
    fields: list[Any] = [
        chain_id,
        nonce,
        max_priority_fee_per_gas,
        max_fee_per_gas,
        gas,
        bytes.fromhex(to.removeprefix("0x")) if to is not None else b"",
        value,
        data,
        [],
    ]
    signature = key.sign_recoverable(_keccak256(b"\x02" + rlp.encode(fields)), hasher=None)
    r = int.from_bytes(signature[:32], "big")
    s = int.from_bytes(signature[32:64], "big")
    return b"\x02" + bytes(rlp.encode([*fields, signature[64], r, s]))


def calldata_of(raw: bytes) -> str:
    """The calldata (``0x…``) of a signed EIP-1559 transaction, as :func:`sign_type2` made it."""
    if raw[:1] != b"\x02":
        raise ValueError("not an EIP-1559 (type 2) transaction")
    fields = rlp.decode(raw[1:])
    return "0x" + bytes(fields[7]).hex()


class NonceManager:
    """Hands out one sponsor account's nonces in order, safe under concurrent senders.

    A nonce whose transaction the node refused is given back and handed out again first, so
    a refusal never leaves a gap that would stall every later transaction.
    """

    def __init__(self, rpc: RpcClient, address: str) -> None:
        self._rpc = rpc
        self.address = address
        self._lock = asyncio.Lock()
        self._next: int | None = None
        self._returned: list[int] = []

    async def _chain_next(self) -> int:
        return await self._rpc.get_transaction_count(self.address, "pending")

    async def next(self, *, at_least: int = 0) -> int:
        """Reserve the next nonce (a returned one first)."""
        async with self._lock:
            if self._next is None:
                self._next = await self._chain_next()
            self._next = max(self._next, at_least)
            if self._returned:
                return heapq.heappop(self._returned)
            nonce = self._next
            self._next += 1
            return nonce

    @property
    def returned(self) -> tuple[int, ...]:
        """Nonces given back and not yet handed out again: gaps until something fills them."""
        return tuple(sorted(self._returned))

    async def give_back(self, nonce: int) -> None:
        """Return a nonce whose transaction never reached the node's pool."""
        async with self._lock:
            if self._next is not None and nonce < self._next and nonce not in self._returned:
                heapq.heappush(self._returned, nonce)

    async def resync(self) -> int:
        """Skip past nonces the chain has already used (after "nonce too low" or a restart)."""
        async with self._lock:
            chain_next = await self._chain_next()
            self._returned = [n for n in self._returned if n >= chain_next]
            heapq.heapify(self._returned)
            # Never go back below a nonce we handed out: it may be in flight right now.
            self._next = max(chain_next, self._next or 0)
            return self._next


@dataclass(frozen=True)
class TxRequest:
    """What to send; the sender fills in nonce, gas and fees."""

    to: str | None
    data: str = "0x"
    value: int = 0
    gas: int | None = None
    purpose: str = ""


@dataclass(frozen=True)
class SentTx:
    """A signed transaction as broadcast (or about to be)."""

    tx_hash: str
    nonce: int
    sponsor: str
    request: TxRequest
    gas: int
    max_fee_per_gas: int
    max_priority_fee_per_gas: int
    raw: bytes


@dataclass(frozen=True)
class FeePolicy:
    """EIP-1559 fees: pay the tip, and a cap that survives the base fee doubling."""

    min_priority_fee: int = 0
    base_fee_multiplier: int = 2
    #: Extra gas over the estimate, in percent (estimates can be tight for token transfers).
    gas_margin_percent: int = 20


@dataclass(frozen=True)
class RecoveryReport:
    """What :meth:`TransactionSender.recover` found after a restart."""

    rebroadcast: int
    mined: int
    failed: int
    dropped: int


#: Runs inside the database transaction that records signed transactions, before any of them is
#: broadcast: a caller's own state (an outbox row marked submitted) commits with them or not at
#: all. Raising rolls the recording back (the nonces are given back).
RecordHook = Callable[[Session, Sequence[SentTx]], None]
#: Runs inside the database transaction that settles a recorded transaction's status.
SettleHook = Callable[[Session, SentTransaction], None]


def settle_transaction(
    session: Session,
    *,
    chain_id: int,
    tx_hash: str,
    status: TxStatus,
    receipt: Receipt | None = None,
) -> SentTransaction | None:
    """Move a recorded transaction to ``status`` in ``session``; the row if it changed.

    Returns ``None`` when the row is unknown or already has that status, so a caller that does
    something once per settlement (counting a receipt's gas) does it exactly once.
    """
    changed = settle_transactions(session, chain_id=chain_id, changes={tx_hash: (status, receipt)})
    return changed[0] if changed else None


def settle_transactions(
    session: Session,
    *,
    chain_id: int,
    changes: Mapping[str, tuple[TxStatus, Receipt | None]],
) -> list[SentTransaction]:
    """Move many recorded transactions (by hash) to their new status; the rows that changed."""
    changed: list[SentTransaction] = []
    hashes = list(changes)
    for start in range(0, len(hashes), 500):
        rows = session.scalars(
            select(SentTransaction).where(
                SentTransaction.chain_id == chain_id,
                SentTransaction.tx_hash.in_(hashes[start : start + 500]),
            )
        ).all()
        for row in rows:
            status, receipt = changes[row.tx_hash]
            if row.status == status:
                continue
            if status not in TX_TRANSITIONS[row.status]:
                raise ChainError(f"transaction {row.tx_hash}: {row.status} cannot become {status}")
            row.status = status
            if receipt is not None:
                row.block_number = receipt.block_number
                row.gas_used = receipt.gas_used
                row.effective_gas_price = receipt.effective_gas_price
            changed.append(row)
    return changed


def sent_tx_of(row: SentTransaction) -> SentTx:
    """A recorded transaction as :meth:`TransactionSender.rebroadcast` sends it (the raw bytes)."""
    return SentTx(
        tx_hash=row.tx_hash,
        nonce=row.nonce,
        sponsor=row.sponsor,
        request=TxRequest(to=row.to, purpose=row.purpose),
        gas=row.gas_limit,
        max_fee_per_gas=row.max_fee_per_gas,
        max_priority_fee_per_gas=row.max_priority_fee_per_gas,
        raw=row.raw,
    )


@dataclass(frozen=True)
class Followed:
    """What :meth:`TransactionSender.follow` found of the actions' transactions.

    ``changes`` is for :func:`settle_transactions`, ``done`` maps each action whose transaction
    will never be pending again to (its tx hash, ``None`` if it was mined with success, else why
    not); the caller writes both in one database transaction of its own.
    """

    changes: dict[str, tuple[TxStatus, Receipt | None]]
    done: dict[str, tuple[str, str | None]]


def _about_the_node(error: RpcError) -> bool:
    """An error answer that says nothing about the transaction itself (worth asking again)."""
    return type(error) is RpcError


def _already_known(error: RpcError) -> bool:
    """The node already holds these very bytes: as good as accepted."""
    return isinstance(error, ReplacementUnderpriced) and "already known" in str(error).lower()


class TransactionSender:
    """Signs, records and broadcasts one sponsor's transactions, and follows them to a receipt."""

    def __init__(
        self,
        rpc: RpcClient,
        account: LocalAccount,
        *,
        chain_id: int,
        sessions: sessionmaker[Session],
        fees: FeePolicy | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._rpc = rpc
        self._account = account
        self.chain_id = chain_id
        self.sponsor = account.address
        self._sessions = sessions
        self._fees = fees or FeePolicy()
        self._clock = clock
        self.nonces = NonceManager(rpc, account.address)
        self._key = coincurve.PrivateKey(bytes(account.key))

    @classmethod
    def from_key(cls, rpc: RpcClient, private_key: str, **kwargs: Any) -> TransactionSender:
        return cls(rpc, Account.from_key(private_key), **kwargs)

    # -- fees and gas ------------------------------------------------------------------------
    async def _fees_now(self) -> tuple[int, int]:
        block = await self._rpc.get_block("latest")
        base_fee = block.base_fee_per_gas if block else 0
        try:
            tip = await self._rpc.max_priority_fee()
        except RpcError:
            tip = 0
        tip = max(tip, self._fees.min_priority_fee)
        return base_fee * self._fees.base_fee_multiplier + tip, tip

    async def _gas_for(self, request: TxRequest) -> int:
        """Estimate gas; a revert surfaces here as its typed error, before any gas is spent."""
        if request.gas is not None:
            return request.gas
        estimate = await self._rpc.estimate_gas(
            {
                "from": self.sponsor,
                "to": request.to,
                "data": request.data,
                "value": hex(request.value),
            }
        )
        return estimate * (100 + self._fees.gas_margin_percent) // 100

    # -- sending -----------------------------------------------------------------------------
    def _sign(self, request: TxRequest, *, nonce: int, gas: int, max_fee: int, tip: int) -> SentTx:
        raw = sign_type2(
            self._key,
            chain_id=self.chain_id,
            nonce=nonce,
            max_priority_fee_per_gas=tip,
            max_fee_per_gas=max_fee,
            gas=gas,
            to=request.to,
            value=request.value,
            data=bytes.fromhex(request.data.removeprefix("0x")),
        )
        return SentTx(
            tx_hash="0x" + _keccak256(raw).hex(),
            nonce=nonce,
            sponsor=self.sponsor,
            request=request,
            gas=gas,
            max_fee_per_gas=max_fee,
            max_priority_fee_per_gas=tip,
            raw=raw,
        )

    def _row(self, sent: SentTx) -> SentTransaction:
        return SentTransaction(
            chain_id=self.chain_id,
            sponsor=sent.sponsor,
            nonce=sent.nonce,
            tx_hash=sent.tx_hash,
            raw=sent.raw,
            to=sent.request.to,
            purpose=sent.request.purpose[:200],
            gas_limit=sent.gas,
            max_fee_per_gas=sent.max_fee_per_gas,
            max_priority_fee_per_gas=sent.max_priority_fee_per_gas,
            status=TxStatus.SIGNED,
        )

    def _record(self, sent: SentTx, record: RecordHook | None = None) -> None:
        self._record_all([sent], record)

    def _record_all(self, sent: Sequence[SentTx], record: RecordHook | None = None) -> None:
        if not sent:
            return
        with self._sessions.begin() as session:
            # SQLite: take the write lock at BEGIN (asked for again every few ms while another
            # process writes) rather than wait in the busy handler's long sleeps at the INSERT.
            session.connection(execution_options={SQLITE_BEGIN: "IMMEDIATE"})
            session.add_all([self._row(item) for item in sent])
            if record is not None:
                session.flush()
                record(session, sent)

    def _set_status(
        self,
        tx_hash: str,
        status: TxStatus,
        receipt: Receipt | None = None,
        *,
        settled: SettleHook | None = None,
    ) -> None:
        self._set_statuses({tx_hash: (status, receipt)}, settled=settled)

    def _set_statuses(
        self,
        changes: Mapping[str, tuple[TxStatus, Receipt | None]],
        *,
        settled: SettleHook | None = None,
    ) -> None:
        if not changes:
            return
        with self._sessions.begin() as session:
            # SQLite: reads, then writes; take the write lock at BEGIN (see the follower).
            session.connection(execution_options={SQLITE_BEGIN: "IMMEDIATE"})
            rows = settle_transactions(session, chain_id=self.chain_id, changes=changes)
            if settled is not None:
                for row in rows:
                    settled(session, row)

    async def send(self, request: TxRequest) -> SentTx:
        """Estimate, sign, record, broadcast; return once the node has accepted it."""
        gas = await self._gas_for(request)
        max_fee, tip = await self._fees_now()
        for _attempt in range(3):
            nonce = await self.nonces.next()
            sent = self._sign(request, nonce=nonce, gas=gas, max_fee=max_fee, tip=tip)
            self._record(sent)
            try:
                await self._rpc.send_raw_transaction(sent.raw)
            except NonceTooLow:
                # Someone else used this nonce (another process, a previous run): resync, retry.
                self._set_status(sent.tx_hash, TxStatus.DROPPED)
                await self.nonces.resync()
                continue
            except RpcUnavailable:
                # We cannot know whether the node took it: it stays SIGNED, recover() resends it.
                raise
            except RpcError:
                self._set_status(sent.tx_hash, TxStatus.DROPPED)
                await self.nonces.give_back(nonce)
                raise
            self._set_status(sent.tx_hash, TxStatus.BROADCAST)
            return sent
        raise ChainError(
            f"sponsor {self.sponsor}: nonces keep being taken by another sender; "
            "give each process its own sponsor accounts"
        )

    async def send_batch(
        self,
        requests: Sequence[TxRequest],
        *,
        record: RecordHook | None = None,
        simulate: bool = True,
    ) -> list[SentTx | ChainError]:
        """Estimate, sign, record and broadcast many transactions in two JSON-RPC round trips.

        Each slot holds the transaction the node accepted, or the typed error that stopped it:
        a revert found by the estimate (nothing signed, no nonce used), or the node's refusal
        (recorded as dropped; its nonce is given back, or resynchronised after "nonce too low").
        Requests with a gas limit are simulated at it rather than estimated (``simulate``).
        All are recorded in one database transaction, with ``record``, before any is broadcast.
        If the endpoint cannot be reached before anything is signed, :class:`RpcUnavailable` is
        raised; if it fails while broadcasting, the recorded slots hold it and the transactions
        stay ``signed`` (:meth:`rebroadcast` or :meth:`recover` sends the same bytes later).
        """
        if not requests:
            return []
        results: list[SentTx | ChainError] = [ChainError("not sent")] * len(requests)
        max_fee, tip, gases = await self._prepare(requests, results, simulate=simulate)
        slots = sorted(gases)
        signed: list[SentTx] = []
        reserved: list[int] = []
        try:
            for i in slots:
                reserved.append(await self.nonces.next())
                signed.append(
                    self._sign(
                        requests[i], nonce=reserved[-1], gas=gases[i], max_fee=max_fee, tip=tip
                    )
                )
            self._record_all(signed, record)
        except BaseException:
            # Nothing was recorded, so nothing can be broadcast: the nonces are free again.
            for nonce in reserved:
                await self.nonces.give_back(nonce)
            raise
        if signed:
            for i, outcome in zip(slots, await self._broadcast_all(signed), strict=True):
                results[i] = outcome
        return results

    async def _prepare(
        self,
        requests: Sequence[TxRequest],
        results: list[SentTx | ChainError],
        *,
        simulate: bool,
    ) -> tuple[int, int, dict[int, int]]:
        """Fees, and every request checked, in one batch: (max fee, tip, gas by slot).

        A request without gas is estimated; one with gas is simulated (``eth_call`` with that
        gas, a tenth of an estimate's work for the node) if ``simulate``. A slot that reverts
        gets its typed error in ``results`` and no gas. One that runs out of its fixed gas is
        estimated instead, and one the node answered with an error of its own (not about the
        transaction: anvil's "block out of range" while it mines) is checked once more.
        """
        checks = [i for i, request in enumerate(requests) if request.gas is None or simulate]
        answers = await self._rpc.batch(
            [Call("eth_getBlockByNumber", ["latest", False]), Call("eth_maxPriorityFeePerGas")]
            + [self._check_call(requests[i], estimate=requests[i].gas is None) for i in checks]
        )
        block, tip_answer, *checked = answers
        if isinstance(block, RpcError):
            raise block
        base_fee = from_hex(block.get("baseFeePerGas")) if isinstance(block, dict) else 0
        tip = 0 if isinstance(tip_answer, RpcError) else from_hex(tip_answer)
        tip = max(tip, self._fees.min_priority_fee)
        gases = {i: request.gas for i, request in enumerate(requests) if request.gas is not None}
        again: list[tuple[int, bool]] = []
        for i, answer in zip(checks, checked, strict=True):
            estimated = requests[i].gas is None
            if not isinstance(answer, RpcError):
                if estimated:
                    gases[i] = self._with_margin(from_hex(answer))
            elif isinstance(answer, GasTooLow) and not estimated:
                again.append((i, True))
            elif _about_the_node(answer):
                again.append((i, estimated))
            else:
                results[i] = answer
                gases.pop(i, None)
        if again:
            for (i, estimate), answer in zip(
                again,
                await self._rpc.batch(
                    [self._check_call(requests[i], estimate=estimate) for i, estimate in again]
                ),
                strict=True,
            ):
                if isinstance(answer, RpcError):
                    results[i] = answer
                    gases.pop(i, None)
                elif estimate:
                    gases[i] = self._with_margin(from_hex(answer))
        return base_fee * self._fees.base_fee_multiplier + tip, tip, gases

    def _check_call(self, request: TxRequest, *, estimate: bool) -> Call:
        tx: dict[str, Any] = {
            "from": self.sponsor,
            "to": request.to,
            "data": request.data,
            "value": hex(request.value),
        }
        if estimate:
            # Not "pending" (the default of some nodes): estimating on top of the pool
            # re-executes it for every call (anvil: 2 ms each becomes 23 ms with a thousand
            # transactions pending) and starves block production.
            return Call("eth_estimateGas", [tx, "latest"])
        return Call("eth_call", [{**tx, "gas": hex(request.gas or 0)}, "latest"])

    def _with_margin(self, estimate: int) -> int:
        return estimate * (100 + self._fees.gas_margin_percent) // 100

    async def _broadcast_all(self, signed: Sequence[SentTx]) -> list[SentTx | ChainError]:
        """Broadcast recorded transactions in one batch and record what the node said."""
        try:
            answers = await self._rpc.batch(
                [Call("eth_sendRawTransaction", ["0x" + sent.raw.hex()]) for sent in signed]
            )
        except RpcUnavailable as exc:
            # We cannot know whether the node took them: they stay SIGNED, to be sent again.
            return [exc] * len(signed)
        outcomes: list[SentTx | ChainError] = []
        changes: dict[str, tuple[TxStatus, Receipt | None]] = {}
        resync = False
        for sent, answer in zip(signed, answers, strict=True):
            if not isinstance(answer, RpcError) or _already_known(answer):
                changes[sent.tx_hash] = (TxStatus.BROADCAST, None)
                outcomes.append(sent)
                continue
            changes[sent.tx_hash] = (TxStatus.DROPPED, None)
            outcomes.append(answer)
            if isinstance(answer, NonceTooLow | ReplacementUnderpriced):
                resync = True  # the nonce is taken (by another process, or a pending tx)
            else:
                await self.nonces.give_back(sent.nonce)
        self._set_statuses(changes)
        if resync:
            await self.nonces.resync()
        return outcomes

    async def rebroadcast(self, sent: Sequence[SentTx]) -> list[SentTx | RpcError]:
        """Send recorded transactions again, the same bytes (after the endpoint was unreachable).

        A slot holds the transaction if the node has it now, else the node's answer ("nonce too
        low" means it, or another transaction with its nonce, was mined: its receipt decides).
        """
        if not sent:
            return []
        answers = await self._rpc.batch(
            [Call("eth_sendRawTransaction", ["0x" + item.raw.hex()]) for item in sent]
        )
        results: list[SentTx | RpcError] = []
        changes: dict[str, tuple[TxStatus, Receipt | None]] = {}
        for item, answer in zip(sent, answers, strict=True):
            if not isinstance(answer, RpcError) or _already_known(answer):
                changes[item.tx_hash] = (TxStatus.BROADCAST, None)
                results.append(item)
            else:
                results.append(answer)
        self._set_statuses(changes)
        return results

    async def wait(
        self, sent: SentTx | str, *, timeout: float = 30.0, poll: float = 0.05
    ) -> Receipt:
        """Wait for a receipt; a failed transaction raises :class:`TransactionFailed`."""
        tx_hash = sent if isinstance(sent, str) else sent.tx_hash
        deadline = self._clock() + timeout
        while True:
            receipt = await self._rpc.get_receipt(tx_hash)
            if receipt is not None:
                self._settle(tx_hash, receipt)
                if not receipt.succeeded:
                    raise TransactionFailed(tx_hash)
                return receipt
            if self._clock() >= deadline:
                raise TransactionTimeout(tx_hash, timeout)
            await asyncio.sleep(poll)

    def _settle(self, tx_hash: str, receipt: Receipt, *, settled: SettleHook | None = None) -> None:
        self._set_status(
            tx_hash,
            TxStatus.MINED if receipt.succeeded else TxStatus.FAILED,
            receipt,
            settled=settled,
        )

    async def send_and_wait(self, request: TxRequest, *, timeout: float = 30.0) -> Receipt:
        sent = await self.send(request)
        return await self.wait(sent, timeout=timeout)

    async def replace(self, sent: SentTx, *, record: RecordHook | None = None) -> SentTx:
        """Re-sign a stuck transaction with the same nonce and fees raised enough to replace it.

        ``record`` runs in the transaction that records the replacement, before its broadcast.
        """
        max_fee, tip = await self._fees_now()
        bumped = self._sign(
            sent.request,
            nonce=sent.nonce,
            gas=sent.gas,
            max_fee=max(max_fee, sent.max_fee_per_gas * REPLACEMENT_BUMP_PERCENT // 100, 1),
            tip=max(tip, sent.max_priority_fee_per_gas * REPLACEMENT_BUMP_PERCENT // 100, 1),
        )
        self._record(bumped, record)
        try:
            await self._rpc.send_raw_transaction(bumped.raw)
        except (NonceTooLow, ReplacementUnderpriced):
            # The original was mined meanwhile (or a better replacement is pending).
            self._set_status(bumped.tx_hash, TxStatus.DROPPED)
            raise
        self._set_status(bumped.tx_hash, TxStatus.BROADCAST)
        return bumped

    # -- tracking one action at a time --------------------------------------------------------
    async def follow(
        self, actions: Sequence[tuple[str, str | None, SentTransaction | None]]
    ) -> Followed:
        """Where the transactions of a worker's actions stand: one tracking round.

        ``actions`` are (action key, the tx hash the action recorded, that transaction's row if
        recorded) of this sponsor. Open ones are read (their receipts, in batches, and the
        sponsor's mined nonce): mined → done (failed if status 0); their nonce used by another
        transaction → replaced, done with an error; still ``signed`` (the broadcast failed, or a
        crash) → the same bytes are sent again. Those already settled (or never recorded) are
        done from their row. The invitation releaser and the deposit sweeper share this round.
        """
        waiting = [
            (key, tx) for key, _, tx in actions if tx is not None and tx.status in OPEN_TX_STATUSES
        ]
        receipts = await self._rpc.get_receipts([tx.tx_hash for _, tx in waiting])
        mined_nonce = (
            await self._rpc.get_transaction_count(self.sponsor, "latest") if waiting else 0
        )
        changes: dict[str, tuple[TxStatus, Receipt | None]] = {}
        done: dict[str, tuple[str, str | None]] = {}
        unsent: list[SentTransaction] = []
        for key, tx in waiting:
            receipt = receipts.get(tx.tx_hash)
            if receipt is not None:
                status = TxStatus.MINED if receipt.succeeded else TxStatus.FAILED
                changes[tx.tx_hash] = (status, receipt)
                done[key] = (
                    tx.tx_hash,
                    None if receipt.succeeded else f"{tx.tx_hash} failed on-chain",
                )
            elif tx.nonce < mined_nonce:
                changes[tx.tx_hash] = (TxStatus.REPLACED, None)
                done[key] = (tx.tx_hash, f"{tx.tx_hash} was never mined")
            elif tx.status == TxStatus.SIGNED:
                unsent.append(tx)  # the broadcast failed (or a crash): the same bytes again
        for key, recorded, row in actions:
            if row is None or row.status not in OPEN_TX_STATUSES:
                ok = row is not None and row.status == TxStatus.MINED
                done[key] = (recorded or "", None if ok else f"{recorded} was not mined")
        if unsent:
            await self.rebroadcast([sent_tx_of(tx) for tx in unsent])
        return Followed(changes, done)

    # -- after a restart ---------------------------------------------------------------------
    async def recover(self, *, settled: SettleHook | None = None) -> RecoveryReport:
        """Settle every open transaction of this sponsor from the chain; resend the rest.

        ``settled`` runs in the transaction that settles each row from a receipt or as replaced,
        so a caller can account for it exactly once.
        """
        with self._sessions() as session:
            open_rows = session.execute(
                select(SentTransaction.tx_hash, SentTransaction.nonce, SentTransaction.raw)
                .where(
                    SentTransaction.chain_id == self.chain_id,
                    SentTransaction.sponsor == self.sponsor,
                    SentTransaction.status.in_(OPEN_TX_STATUSES),
                )
                .order_by(SentTransaction.nonce, SentTransaction.id)
            ).all()
        mined_count = await self._rpc.get_transaction_count(self.sponsor, "latest")
        rebroadcast = mined = failed = dropped = 0
        for tx_hash, nonce, raw in open_rows:
            receipt = await self._rpc.get_receipt(tx_hash)
            if receipt is not None:
                self._settle(tx_hash, receipt, settled=settled)
                mined += receipt.succeeded
                failed += not receipt.succeeded
            elif nonce < mined_count:
                # Its nonce was consumed by another transaction of ours (a replacement).
                self._set_status(tx_hash, TxStatus.REPLACED, settled=settled)
                dropped += 1
            else:
                # "Already known" or "nonce too low": it, or a replacement, is already there.
                with contextlib.suppress(NonceTooLow, ReplacementUnderpriced):
                    await self._rpc.send_raw_transaction(raw)
                self._set_status(tx_hash, TxStatus.BROADCAST)
                rebroadcast += 1
        await self.nonces.resync()
        report = RecoveryReport(
            rebroadcast=rebroadcast, mined=mined, failed=failed, dropped=dropped
        )
        if open_rows:
            log.info("sponsor %s recovered: %s", self.sponsor, report)
        return report
