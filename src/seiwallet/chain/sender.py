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
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from eth_account import Account
from eth_account.signers.local import LocalAccount
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from seiwallet.chain.errors import (
    ChainError,
    NonceTooLow,
    ReplacementUnderpriced,
    RpcError,
    RpcUnavailable,
    TransactionFailed,
    TransactionTimeout,
)
from seiwallet.chain.models import OPEN_TX_STATUSES, TX_TRANSITIONS, SentTransaction, TxStatus
from seiwallet.chain.rpc import Receipt, RpcClient

log = logging.getLogger(__name__)

#: Geth and anvil accept a replacement only if both fees rise by at least 10 %.
REPLACEMENT_BUMP_PERCENT = 125


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
        tx: dict[str, Any] = {
            "type": 2,
            "chainId": self.chain_id,
            "nonce": nonce,
            "to": request.to,
            "value": request.value,
            "data": request.data,
            "gas": gas,
            "maxFeePerGas": max_fee,
            "maxPriorityFeePerGas": tip,
        }
        if request.to is None:
            del tx["to"]
        signed = self._account.sign_transaction(tx)
        return SentTx(
            tx_hash="0x" + bytes(signed.hash).hex(),
            nonce=nonce,
            sponsor=self.sponsor,
            request=request,
            gas=gas,
            max_fee_per_gas=max_fee,
            max_priority_fee_per_gas=tip,
            raw=bytes(signed.raw_transaction),
        )

    def _record(self, sent: SentTx) -> None:
        with self._sessions.begin() as session:
            session.add(
                SentTransaction(
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
            )

    def _set_status(self, tx_hash: str, status: TxStatus, receipt: Receipt | None = None) -> None:
        with self._sessions.begin() as session:
            row = session.scalars(
                select(SentTransaction).where(
                    SentTransaction.chain_id == self.chain_id, SentTransaction.tx_hash == tx_hash
                )
            ).one_or_none()
            if row is None or row.status == status:
                return
            if status not in TX_TRANSITIONS[row.status]:
                raise ChainError(f"transaction {tx_hash}: {row.status} cannot become {status}")
            row.status = status
            if receipt is not None:
                row.block_number = receipt.block_number
                row.gas_used = receipt.gas_used
                row.effective_gas_price = receipt.effective_gas_price

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

    def _settle(self, tx_hash: str, receipt: Receipt) -> None:
        self._set_status(tx_hash, TxStatus.MINED if receipt.succeeded else TxStatus.FAILED, receipt)

    async def send_and_wait(self, request: TxRequest, *, timeout: float = 30.0) -> Receipt:
        sent = await self.send(request)
        return await self.wait(sent, timeout=timeout)

    async def replace(self, sent: SentTx) -> SentTx:
        """Re-sign a stuck transaction with the same nonce and fees raised enough to replace it."""
        max_fee, tip = await self._fees_now()
        bumped = self._sign(
            sent.request,
            nonce=sent.nonce,
            gas=sent.gas,
            max_fee=max(max_fee, sent.max_fee_per_gas * REPLACEMENT_BUMP_PERCENT // 100, 1),
            tip=max(tip, sent.max_priority_fee_per_gas * REPLACEMENT_BUMP_PERCENT // 100, 1),
        )
        self._record(bumped)
        try:
            await self._rpc.send_raw_transaction(bumped.raw)
        except (NonceTooLow, ReplacementUnderpriced):
            # The original was mined meanwhile (or a better replacement is pending).
            self._set_status(bumped.tx_hash, TxStatus.DROPPED)
            raise
        self._set_status(bumped.tx_hash, TxStatus.BROADCAST)
        return bumped

    # -- after a restart ---------------------------------------------------------------------
    async def recover(self) -> RecoveryReport:
        """Settle every open transaction of this sponsor from the chain; resend the rest."""
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
                self._settle(tx_hash, receipt)
                mined += receipt.succeeded
                failed += not receipt.succeeded
            elif nonce < mined_count:
                # Its nonce was consumed by another transaction of ours (a replacement).
                self._set_status(tx_hash, TxStatus.REPLACED)
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
