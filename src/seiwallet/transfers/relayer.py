"""The relayer: submits owner-signed EIP-3009 transfers from the sponsor accounts and follows them.

The ``transfers`` table is the outbox. A ``signed`` row whose ``next_attempt_at`` is due is work:

1. **Claim.** A worker takes a batch of due rows (``FOR UPDATE SKIP LOCKED`` on PostgreSQL) and
   holds them for ``claim_seconds`` (``next_attempt_at``), so two workers never submit the same
   transfer at once and a worker that dies lets go of its claim.
2. **Submit.** Each sponsor (one :class:`TransactionSender` each, its own nonces, its own loop)
   takes a share: one JSON-RPC batch reads the fees and simulates every transfer (a revert —
   blacklisted, expired, used — is found here, before any gas is spent); the signed transactions
   are recorded in ``chain_transactions`` **in the same database transaction** that marks their
   transfers ``submitted`` (tx hash, sponsor, attempts + 1); then one JSON-RPC batch broadcasts
   them. A crash after that commit leaves transactions that :meth:`TransactionSender.recover`
   rebroadcasts (the same bytes); a crash before it leaves the transfer ``signed``. Nothing is
   lost, and the chain refuses a second use of an authorization's nonce, so nothing is paid twice.
3. **Track.** Receipts are read only for transactions whose nonce the sponsor's mined count has
   passed (one batched ``eth_getTransactionCount`` a poll, then batched receipts). A receipt
   records the block and the sponsor's spend (``gasUsed × effectiveGasPrice``) on the transfer;
   *confirmation* is the follower's (:mod:`seiwallet.transfers.handlers`), on the canonical chain.
   A sponsor whose mined nonce stops moving has its lowest transactions sent again (nodes drop
   pool entries) or its nonce gap filled; one still without a receipt after
   ``stuck_after_seconds`` is replaced with higher fees.
4. **Resolve.** A submitted transfer left with no transaction that can still be mined (failed with
   status 0, replaced, dropped, reorganised away) is decided by the token's
   ``authorizationState``: used means done (the follower confirms it); unused means a simulation
   says why (a permanent revert fails it with the chain error's code and message) or, if nothing
   stands in the way, it goes back to ``signed`` and is submitted again.

Payments batch. The ``router.pay`` rows of one sponsor's round (two or more) are simulated one by
one (a payment that would fail is decided before any gas is spent), and those that pass go in
``payBatch`` transactions of up to ``router_batch_max``: 91.5 k gas a payment instead of 139.6 k.
A lone payment goes as ``pay`` (a batch of one costs 3 k more). A batch is one sponsor
transaction carrying several rows: its members are written to ``transfer_batch_members`` in the
same database transaction as the transaction itself (and again for a replacement), all marked
``submitted`` with its hash; its receipt's gas is split evenly among them. A mined batch can
hold failed payments (the router's ``PaymentFailed``, each in its own frame): such a member is
decided from the revert reason the event carries, exactly as a failed ``pay`` is decided from its
simulation — failed for good (``failure_is_final``), or sent again (a paused token).

Invitations (a transfer to an alias with no wallet yet, ``transfers.invitations``) ride the same
outbox: their row has a ``transfer_invitations`` row, and the relayer submits ``escrow.deposit``
(the escrow pulls the money with the same authorization) instead of the token's call. Anything
that uses the authorization — our deposit, or someone who sent it straight to the token — is
the token's ``AuthorizationUsed``, so tracking and confirmation are the same; a deposit that
went straight to the token is then recorded by the releaser (``transfers.tasks``).

Faults: when the network does not answer, transfers stay ``signed`` with a backed-off
``next_attempt_at`` and a ``delay_reason`` the user sees; a sponsor the node refuses for lack of
funds is rested and its transfers go to the others; sponsors' balances under a threshold raise one
alert (logger ``seiwallet.alerts``) per crossing.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import logging
import math
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal, cast

from eth_utils.address import to_checksum_address
from sqlalchemy import Table, bindparam, insert, select, update
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from seiwallet.chain.errors import (
    AuthorizationExpired,
    AuthorizationNotYetValid,
    AuthorizationUsed,
    BatchGasTooLow,
    ChainError,
    GasTooLow,
    InsufficientFunds,
    InvitationExists,
    NonceTooLow,
    ReplacementUnderpriced,
    RpcError,
    RpcUnavailable,
    TokenPaused,
    revert_error,
)
from seiwallet.chain.escrow import Invitation, encode_deposit
from seiwallet.chain.models import OPEN_TX_STATUSES, SentTransaction, TxStatus
from seiwallet.chain.router import Authorization as RouterAuthorization
from seiwallet.chain.router import (
    Payment,
    Refund,
    encode_pay,
    encode_pay_batch,
    encode_refund,
    payment_failures,
)
from seiwallet.chain.rpc import Call, Receipt, RpcClient, from_hex
from seiwallet.chain.sender import (
    SentTx,
    TransactionSender,
    TxRequest,
    calldata_of,
    settle_transactions,
)
from seiwallet.chain.tokens import (
    Authorization3009,
    encode_call,
    encode_transfer_with_authorization,
)
from seiwallet.config import RelayerSettings
from seiwallet.db import SQLITE_BEGIN
from seiwallet.transfers.handlers import applied_authorization_event, confirm
from seiwallet.transfers.models import (
    RouterCallKind,
    Transfer,
    TransferBatchMember,
    TransferInvitation,
    TransferRouterCall,
    TransferStatus,
)
from seiwallet.transfers.outbox import failure_is_final

log = logging.getLogger(__name__)
alerts = logging.getLogger("seiwallet.alerts")

#: SQLite: a transaction that reads, then writes, takes the write lock at BEGIN, so another
#: process's writer makes it wait (busy timeout) instead of failing to upgrade its read lock.
_WRITE = {SQLITE_BEGIN: "IMMEDIATE"}

#: ``chain_transactions.purpose`` of a sponsor transaction carrying a transfer.
PURPOSE_PREFIX = "transfer:"
#: ``chain_transactions.purpose`` of one carrying several (``router.payBatch``): its members are
#: in ``transfer_batch_members``.
BATCH_PURPOSE_PREFIX = "transfers.batch:"

#: What the user reads while a transfer waits (``delay_reason``).
NETWORK_DELAY = "the network is not answering; your transfer is queued"
SPONSORS_DELAY = "the accounts that pay network fees are being topped up; your transfer is queued"
PAUSED_DELAY = "the token's issuer has paused all transfers; your transfer is queued"
NOT_YET_VALID_DELAY = "the transfer cannot be sent before its start time; it is queued"
REFUSED_DELAY = "the network refused the transfer for now; it will be tried again"

#: A transaction whose nonce was used but which has no receipt is taken as replaced after this
#: long (a node may index the receipt a moment after it counts the nonce).
REPLACED_GRACE_SECONDS = 3.0
#: Receipts and calls per JSON-RPC batch.
RPC_BATCH = 500
#: Stuck transactions replaced per sponsor per poll (the first stuck nonce blocks the rest anyway).
MAX_REPLACEMENTS_PER_POLL = 20
#: Transactions sent again when a sponsor makes no progress (its lowest nonces).
RESEND_PER_STALL = 64

_TRANSFER_WITH_AUTHORIZATION_VRS = (
    "transferWithAuthorization(address,address,uint256,uint256,uint256,bytes32,uint8,bytes32,"
    "bytes32)"
)
_AUTHORIZATION_STATE = "authorizationState(address,bytes32)"


def transfer_purpose(transfer_id: str) -> str:
    return f"{PURPOSE_PREFIX}{transfer_id}"


def transfer_id_of(purpose: str) -> str | None:
    """The transfer a sponsor transaction carries, from its purpose; ``None`` if not a transfer."""
    return purpose[len(PURPOSE_PREFIX) :] if purpose.startswith(PURPOSE_PREFIX) else None


def batch_purpose(transfer_ids: Sequence[str]) -> str:
    """The purpose of a batch transaction: its size and first member (unique within a round)."""
    return f"{BATCH_PURPOSE_PREFIX}{len(transfer_ids)}:{transfer_ids[0]}"


def is_batch_purpose(purpose: str) -> bool:
    return purpose.startswith(BATCH_PURPOSE_PREFIX)


def gas_shares(gas_used: int, members: int) -> list[int]:
    """A batch's gas split among its members: evenly, the remainder one unit each to the first.

    The shares add up to the receipt's gas exactly, so the members' ``gas_used`` (and
    ``gas_cost_wei``, share × price) add up to what the sponsor paid. Even rather than by
    payment: a member that failed inside the batch cost less than one that settled, but only a
    trace could say how much, and the batch was sent for all of them.
    """
    if members <= 0:
        return []
    share, rest = divmod(gas_used, members)
    return [share + (1 if position < rest else 0) for position in range(members)]


def _utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class Outbound:
    """What the relayer needs of a transfer to submit it (read from its row)."""

    id: str
    token: str
    from_address: str
    to_address: str
    amount_units: int
    valid_after: int
    valid_before: int
    nonce: str
    signature: str | None
    attempts: int
    #: An invitation's terms and its escrow: submitted as ``escrow.deposit``.
    invitation: Invitation | None = None
    escrow: str | None = None
    #: A PaymentRouter call's terms and the router: submitted as ``router.pay``/``refund``.
    router_call: Payment | Refund | None = None
    router: str | None = None
    #: The latest sponsor transaction that carried it (a batch's hash for a batch member).
    tx_hash: str | None = None

    @classmethod
    def from_row(
        cls,
        transfer: Transfer,
        invitation: TransferInvitation | None = None,
        router_call: TransferRouterCall | None = None,
    ) -> Outbound:
        terms = None
        if invitation is not None:
            terms = Invitation(
                token=transfer.token,
                sender=transfer.from_address,
                value_units=transfer.amount_units,
                claim_hash=bytes.fromhex(invitation.claim_hash.removeprefix("0x")),
                deadline=invitation.deadline,
            )
        return cls(
            id=transfer.id,
            token=_checksummed(transfer.token),
            from_address=transfer.from_address,
            to_address=transfer.to_address,
            amount_units=transfer.amount_units,
            valid_after=transfer.valid_after,
            valid_before=transfer.valid_before,
            nonce=transfer.nonce,
            signature=transfer.signature,
            attempts=transfer.attempts,
            invitation=terms,
            escrow=_checksummed(invitation.escrow) if invitation is not None else None,
            router_call=_router_terms(transfer, router_call) if router_call is not None else None,
            router=_checksummed(router_call.router) if router_call is not None else None,
            tx_hash=transfer.tx_hash,
        )

    @property
    def batchable(self) -> bool:
        """A ``router.pay`` signed by a key: its cost is known, so it can ride a ``payBatch``.
        (A smart account's signature costs what its wallet does: it goes alone, estimated.)"""
        return (
            isinstance(self.router_call, Payment)
            and self.router is not None
            and (self.signed_by_key)
        )

    def router_authorization(self) -> RouterAuthorization:
        """The owner's authorization as the router takes it."""
        signature = self.signature_bytes()
        if signature is None:
            raise ValueError(f"transfer {self.id} has no signature")
        return RouterAuthorization(
            from_address=self.from_address,
            valid_after=self.valid_after,
            valid_before=self.valid_before,
            signature=signature,
        )

    @property
    def target(self) -> str:
        """The contract the transaction calls: the escrow for an invitation, the router for a
        payment or a refund, else the token."""
        if self.invitation is not None and self.escrow:
            return self.escrow
        if self.router_call is not None and self.router:
            return self.router
        return self.token

    @property
    def nonce_bytes(self) -> bytes:
        return bytes.fromhex(self.nonce.removeprefix("0x"))

    def signature_bytes(self) -> bytes | None:
        """The owner's signature, or ``None`` if it is missing or not hex."""
        if not self.signature:
            return None
        try:
            return bytes.fromhex(self.signature.removeprefix("0x"))
        except ValueError:
            return None

    @property
    def signed_by_key(self) -> bool:
        """A 65-byte ``r ‖ s ‖ v`` signature (not a smart account's)."""
        signature = self.signature_bytes()
        return signature is not None and len(signature) == 65

    def calldata(self) -> str:
        """``transferWithAuthorization`` on the token: the v, r, s form for a 65-byte signature
        (0.4 k gas cheaper), the ``bytes`` form otherwise (ERC-1271 smart-account signatures)."""
        signature = self.signature_bytes()
        if signature is None:
            raise ValueError(f"transfer {self.id} has no signature")
        if self.router_call is not None:
            # The router recomputes the nonce from the terms and receives the money itself.
            signed = self.router_authorization()
            if isinstance(self.router_call, Refund):
                return "0x" + encode_refund(self.router_call, signed).hex()
            return "0x" + encode_pay(self.router_call, signed).hex()
        if self.invitation is not None:
            # The escrow recomputes the nonce from the terms and pulls the money itself.
            return (
                "0x"
                + encode_deposit(
                    self.invitation,
                    valid_after=self.valid_after,
                    valid_before=self.valid_before,
                    signature=signature,
                ).hex()
            )
        authorization = Authorization3009(
            from_address=self.from_address,
            to=self.to_address,
            value=self.amount_units,
            valid_after=self.valid_after,
            valid_before=self.valid_before,
            nonce=self.nonce_bytes,
        )
        if len(signature) != 65:
            return encode_transfer_with_authorization(authorization, signature)
        v = signature[64] + 27 if signature[64] < 27 else signature[64]
        return encode_call(
            _TRANSFER_WITH_AUTHORIZATION_VRS,
            [
                "address",
                "address",
                "uint256",
                "uint256",
                "uint256",
                "bytes32",
                "uint8",
                "bytes32",
                "bytes32",
            ],
            [
                # As bytes: eth-abi would verify a checksummed string's checksum (a keccak).
                _address_bytes(self.from_address),
                _address_bytes(self.to_address),
                self.amount_units,
                self.valid_after,
                self.valid_before,
                self.nonce_bytes,
                v,
                signature[:32],
                signature[32:64],
            ],
        )


@dataclass(frozen=True)
class SponsorBalance:
    """A sponsor account as the relayer sees it (for ``seiwallet status``)."""

    address: str
    balance_wei: int
    #: Under ``low_balance_wei`` (an alert was logged when it crossed).
    low: bool
    #: The node refused its transactions for lack of funds; it is rested for a while.
    out_of_funds: bool
    #: Its transactions broadcast and not yet mined.
    in_flight: int


@dataclass(frozen=True)
class RelayerRecovery:
    """What :meth:`Relayer.recover` found after a restart."""

    rebroadcast: int
    mined: int
    failed: int
    dropped: int
    #: Submitted transfers still carried by an open transaction, now watched again.
    in_flight: int
    #: Submitted transfers with no transaction left, decided from ``authorizationState``.
    resolved: int


@dataclass
class _Flight:
    """A broadcast (or recorded) transaction of ours carrying transfers, not yet settled.

    One transfer, or the members of a ``payBatch`` in calldata order.
    """

    transfer_ids: tuple[str, ...]
    sent: SentTx
    #: ``time.monotonic()`` of its last broadcast (replacement is decided from it).
    sent_at: float
    #: False while the node may not have it (the endpoint failed during the broadcast).
    broadcast: bool
    #: When its nonce was first seen used without a receipt for it.
    consumed_since: float | None = None


@dataclass
class _Sponsor:
    sender: TransactionSender
    flights: dict[str, _Flight] = field(default_factory=dict)
    out_of_funds_until: float | None = None
    balance_wei: int | None = None
    low: bool = False
    #: The sponsor's mined transaction count (its next nonce on-chain), as last read.
    mined_nonce: int | None = None
    #: When its mined nonce last moved (or it last had nothing waiting).
    progress_at: float = 0.0

    @property
    def address(self) -> str:
        return self.sender.sponsor

    @property
    def in_flight(self) -> int:
        return len({flight.sent.nonce for flight in self.flights.values()})

    def resting(self, now: float) -> bool:
        return self.out_of_funds_until is not None and now < self.out_of_funds_until


OutcomeKind = Literal["fail", "delay", "requeue", "used", "sponsor", "waiting"]


@dataclass(frozen=True)
class _Outcome:
    """What to do with a transfer that was not (or is no longer) carried by a transaction."""

    kind: OutcomeKind
    code: str | None = None
    reason: str | None = None
    until: datetime | None = None


_USED = _Outcome("used")
_REQUEUE = _Outcome("requeue")
_SPONSOR = _Outcome("sponsor")


@dataclass(frozen=True)
class _Unit:
    """One sponsor transaction to send: one transfer, or the members of a ``payBatch``."""

    members: tuple[Outbound, ...]
    request: TxRequest

    @property
    def ids(self) -> tuple[str, ...]:
        return tuple(member.id for member in self.members)

    @property
    def is_batch(self) -> bool:
        return is_batch_purpose(self.request.purpose)


_TRANSFERS = cast(Table, Transfer.__table__)
#: Marks one transfer submitted, only if it is still ``signed`` (run once per transfer of a
#: batch, as one executemany in the transaction that records the sponsor transactions).
_MARK_SUBMITTED = (
    update(_TRANSFERS)
    .where(
        _TRANSFERS.c.id == bindparam("b_id"),
        _TRANSFERS.c.status == TransferStatus.SIGNED,
    )
    .values(
        status=TransferStatus.SUBMITTED,
        tx_hash=bindparam("b_tx"),
        sponsor=bindparam("b_sponsor"),
        attempts=_TRANSFERS.c.attempts + 1,
        next_attempt_at=None,
        delay_reason=None,
    )
)


class _StaleClaims(Exception):
    """Transfers we meant to mark submitted are no longer ``signed`` (another worker took them)."""

    def __init__(self, ids: Iterable[str]) -> None:
        self.ids = frozenset(ids)
        super().__init__(f"{len(self.ids)} transfer(s) changed under us")


class Relayer:
    """Submits the outbox's signed transfers from the sponsors, tracks them, recovers after a crash.

    One relayer per set of sponsor accounts: two processes must not share a sponsor (their nonces
    would collide), but any number of relayers with their own sponsors may share the outbox.
    """

    def __init__(
        self,
        rpc: RpcClient,
        sessions: sessionmaker[Session],
        senders: Sequence[TransactionSender],
        *,
        chain_id: int,
        settings: RelayerSettings | None = None,
        escrow: str | None = None,
        router: str | None = None,
        clock: Callable[[], datetime] = _utcnow,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        if not senders:
            raise ValueError("the relayer needs at least one sponsor account")
        #: The invite escrow: transfers to it are looked up as invitations (none: no look-up).
        self._escrow = escrow.lower() if escrow else None
        #: The PaymentRouter: transfers to it are payments or refunds (none: no look-up).
        self._router = router.lower() if router else None
        self._rpc = rpc
        self._sessions = sessions
        self.chain_id = chain_id
        self.settings = settings or RelayerSettings()
        self._now = clock
        self._mono = monotonic
        self._sponsors = [_Sponsor(sender) for sender in senders]
        self._network_failures = 0
        self._last_sweep = -math.inf
        self._last_balance_check = -math.inf
        #: When each submitted transfer without a transaction was last resolved (no re-checking
        #: one that waits for the follower on every sweep).
        self._checked: dict[str, float] = {}

    # -- public surface ----------------------------------------------------------------------
    @property
    def sponsors(self) -> list[str]:
        return [sponsor.address for sponsor in self._sponsors]

    def in_flight(self) -> int:
        """Transactions broadcast by all sponsors and not yet mined."""
        return sum(sponsor.in_flight for sponsor in self._sponsors)

    async def run(self, stop: asyncio.Event) -> None:
        """Recover, then submit and track until ``stop`` is set."""
        while not stop.is_set():
            try:
                await self.recover()
                break
            except ChainError as exc:
                # Nothing new is submitted before the sponsors' open transactions are settled.
                self._network_failed(exc)
                await _sleep_unless(stop, self._backoff().total_seconds())
        async with asyncio.TaskGroup() as group:
            # One submitting loop per sponsor: a slow batch of one does not hold up the others.
            for sponsor in self._sponsors:
                group.create_task(self._loop(stop, functools.partial(self._submit_round, sponsor)))
            group.create_task(self._loop(stop, self.track_once))

    async def recover(self) -> RelayerRecovery:
        """After a start: settle and resend the sponsors' open transactions, then decide every
        submitted transfer that no transaction carries any more."""
        totals = [0, 0, 0, 0]
        for sponsor in self._sponsors:
            report = await sponsor.sender.recover(settled=self._settled_by_recovery)
            for i, value in enumerate(
                (report.rebroadcast, report.mined, report.failed, report.dropped)
            ):
                totals[i] += value
        self._load_flights()
        resolved = await self._sweep(grace=0.0)
        recovery = RelayerRecovery(
            rebroadcast=totals[0],
            mined=totals[1],
            failed=totals[2],
            dropped=totals[3],
            in_flight=self.in_flight(),
            resolved=resolved,
        )
        log.info("relayer recovered: %s", recovery)
        return recovery

    async def submit_once(self) -> int:
        """Take due transfers from the outbox and submit them, spread over every sponsor that
        can take some; the number broadcast. (The worker runs one loop per sponsor instead.)"""
        now = self._mono()
        capacity = {
            sponsor.address: min(
                self.settings.batch_size, self.settings.max_in_flight - sponsor.in_flight
            )
            for sponsor in self._sponsors
            if not sponsor.resting(now)
        }
        capacity = {address: room for address, room in capacity.items() if room > 0}
        if not capacity:
            if all(sponsor.resting(now) for sponsor in self._sponsors):
                await self._delay_for_sponsors()
            return 0
        work = self._claim(sum(capacity.values()))
        if not work:
            return 0
        shares: dict[str, list[Outbound]] = defaultdict(list)
        order = sorted(capacity, key=lambda address: -capacity[address])
        turn = 0
        for item in work:
            while capacity[order[turn % len(order)]] <= 0:
                turn += 1
            address = order[turn % len(order)]
            shares[address].append(item)
            capacity[address] -= 1
            turn += 1
        by_address = {sponsor.address: sponsor for sponsor in self._sponsors}
        counts = await asyncio.gather(
            *(self._submit(by_address[address], items) for address, items in shares.items())
        )
        return sum(counts)

    async def track_once(self) -> int:
        """Follow what was submitted: receipts, stuck transactions, orphans, balances.

        Returns the number of receipts settled.
        """
        try:
            await self._rebroadcast_unsent()
            settled = await self._follow_receipts()
            await self._unstick()
            now = self._mono()
            if now - self._last_sweep >= min(self.settings.stuck_after_seconds, 10.0):
                self._last_sweep = now
                await self._sweep(grace=self.settings.stuck_after_seconds)
            if now - self._last_balance_check >= self.settings.balance_check_seconds:
                self._last_balance_check = now
                await self.sponsor_balances()
        except RpcUnavailable as exc:
            self._network_failed(exc)
            return 0
        return settled

    async def sponsor_balances(self) -> list[SponsorBalance]:
        """Read every sponsor's balance (one batch), alerting on a fall under the threshold."""
        answers = await self._rpc.batch(
            [Call("eth_getBalance", [sponsor.address, "latest"]) for sponsor in self._sponsors]
        )
        balances: list[SponsorBalance] = []
        now = self._mono()
        for sponsor, answer in zip(self._sponsors, answers, strict=True):
            if isinstance(answer, RpcError):
                log.warning("cannot read the balance of sponsor %s: %s", sponsor.address, answer)
                continue
            self._observe_balance(sponsor, from_hex(answer))
            balances.append(
                SponsorBalance(
                    address=sponsor.address,
                    balance_wei=from_hex(answer),
                    low=sponsor.low,
                    out_of_funds=sponsor.resting(now),
                    in_flight=sponsor.in_flight,
                )
            )
        return balances

    # -- the loops ---------------------------------------------------------------------------
    async def _submit_round(self, sponsor: _Sponsor) -> int:
        """One sponsor takes its share of due transfers and submits them."""
        if sponsor.resting(self._mono()):
            if all(other.resting(self._mono()) for other in self._sponsors):
                await self._delay_for_sponsors()
            return 0
        room = min(self.settings.batch_size, self.settings.max_in_flight - sponsor.in_flight)
        work = self._claim(room) if room > 0 else []
        return await self._submit(sponsor, work) if work else 0

    async def _loop(self, stop: asyncio.Event, step: Callable[[], Awaitable[int]]) -> None:
        while not stop.is_set():
            try:
                done = await step()
            except SQLAlchemyError:
                # The database is away (restarting, a deadlock victim): the outbox waits for it.
                log.exception("relayer: database error; retrying")
                done = 0
                await _sleep_unless(stop, self._backoff().total_seconds())
            except ChainError as exc:
                log.warning("relayer: %s; retrying", exc)
                done = 0
                await _sleep_unless(stop, self._backoff().total_seconds())
            if not done:
                await _sleep_unless(stop, self.settings.poll_seconds)

    def _backoff(self) -> timedelta:
        settings = self.settings
        exponent = max(0, self._network_failures - 1)
        seconds = settings.backoff_initial_seconds * 2 ** min(exponent, 30)
        return timedelta(seconds=min(seconds, settings.backoff_max_seconds))

    def _network_failed(self, exc: ChainError) -> None:
        self._network_failures += 1
        if self._network_failures == 1:
            log.warning("relayer: the network is not answering (%s); transfers wait", exc)
        else:
            log.debug("relayer: the network is still not answering (%s)", exc)

    def _network_ok(self) -> None:
        if self._network_failures:
            log.info("relayer: the network answers again")
        self._network_failures = 0

    # -- the outbox --------------------------------------------------------------------------
    def _claim(self, limit: int) -> list[Outbound]:
        """Take up to ``limit`` due ``signed`` transfers and hold them for ``claim_seconds``.

        Those delayed and now due come first (they are the older), in the order they fell due,
        then new ones in the order they were signed. Two queries rather than one with ``OR``:
        each is an index range scan on (chain, status, next_attempt_at), so a large backlog
        of delayed transfers (an outage) costs nothing to skip.
        """
        now = self._now()
        outbox_rows = (Transfer.chain_id == self.chain_id, Transfer.status == TransferStatus.SIGNED)
        # A read first: an idle relayer (one loop per sponsor, ten rounds a second) must not take
        # the writer's lock — one per SQLite database, shared with the API — to find nothing.
        with self._sessions() as session:
            due = (Transfer.next_attempt_at <= now) | Transfer.next_attempt_at.is_(None)
            if session.scalar(select(Transfer.id).where(*outbox_rows, due).limit(1)) is None:
                return []
        with self._sessions.begin() as session:
            session.connection(execution_options=_WRITE)
            outbox = select(Transfer).where(*outbox_rows)
            rows = list(
                session.scalars(
                    outbox.where(Transfer.next_attempt_at <= now)
                    .order_by(Transfer.next_attempt_at)
                    .limit(limit)
                    .with_for_update(skip_locked=True)
                )
            )
            if len(rows) < limit:
                rows += session.scalars(
                    outbox.where(Transfer.next_attempt_at.is_(None))
                    .order_by(Transfer.created_at)
                    .limit(limit - len(rows))
                    .with_for_update(skip_locked=True)
                )
            if not rows:
                return []
            session.execute(
                update(Transfer)
                .where(Transfer.id.in_([row.id for row in rows]))
                .values(next_attempt_at=now + timedelta(seconds=self.settings.claim_seconds))
                .execution_options(synchronize_session=False)
            )
            return self._outbound(session, rows)

    async def _delay_for_sponsors(self) -> None:
        """Every sponsor is out of funds: tell the waiting transfers why."""
        work = self._claim(self.settings.batch_size)
        if not work:
            return
        rested = [s.out_of_funds_until for s in self._sponsors if s.out_of_funds_until is not None]
        wait = max(min(rested) - self._mono(), 1.0) if rested else 1.0
        outcome = _Outcome(
            "delay", reason=SPONSORS_DELAY, until=self._now() + timedelta(seconds=wait)
        )
        self._apply_outcomes([(item.id, TransferStatus.SIGNED, None, outcome) for item in work])

    async def _submit(self, sponsor: _Sponsor, work: list[Outbound]) -> int:
        """Submit one sponsor's share: pre-checks, one simulation batch, one broadcast batch."""
        outcomes: list[tuple[str, TransferStatus, str | None, _Outcome]] = []
        ready: list[Outbound] = []
        deadline = int(self._now().timestamp()) + self.settings.expiry_margin_seconds
        for item in work:
            if item.signature_bytes() is None:
                outcomes.append(
                    (
                        item.id,
                        TransferStatus.SIGNED,
                        None,
                        _Outcome(
                            "fail",
                            "transfer.unsigned",
                            "the transfer has no valid signature: approve it again",
                        ),
                    )
                )
            elif item.valid_before <= deadline:
                outcomes.append((item.id, TransferStatus.SIGNED, None, self._expired(item)))
            else:
                ready.append(item)
        # A transfer tried before may have been carried by a transaction we lost track of:
        # the token says whether its authorization is used (then resubmitting is pointless).
        retrying = [item for item in ready if item.attempts > 0]
        if retrying:
            try:
                used = await self._authorizations_used(retrying)
            except RpcUnavailable as exc:
                self._network_failed(exc)
                network = self._delay(NETWORK_DELAY)
                for item in ready:
                    outcomes.append((item.id, TransferStatus.SIGNED, None, network))
                self._apply_outcomes(outcomes)
                return 0
            done = {item.id for item, is_used in zip(retrying, used, strict=True) if is_used}
            for item_id in done:
                outcomes.append((item_id, TransferStatus.SIGNED, None, _USED))
            ready = [item for item in ready if item.id not in done]
        sent_count = await self._send(sponsor, ready, outcomes)
        self._apply_outcomes(outcomes)
        return sent_count

    async def _send(
        self,
        sponsor: _Sponsor,
        ready: list[Outbound],
        outcomes: list[tuple[str, TransferStatus, str | None, _Outcome]],
        *,
        retried: bool = False,
    ) -> int:
        """Group ``ready`` into transactions and send them; the number of transfers taken."""
        if not ready:
            return 0
        try:
            units = await self._group(sponsor, ready, outcomes)
        except RpcUnavailable as exc:
            self._network_failed(exc)
            network = self._delay(NETWORK_DELAY)
            outcomes.extend((item.id, TransferStatus.SIGNED, None, network) for item in ready)
            return 0
        return await self._send_units(sponsor, units, outcomes, retried=retried)

    async def _send_units(
        self,
        sponsor: _Sponsor,
        units: list[_Unit],
        outcomes: list[tuple[str, TransferStatus, str | None, _Outcome]],
        *,
        retried: bool = False,
        estimated: bool = False,
    ) -> int:
        if not units:
            return 0
        members = [item for unit in units for item in unit.members]
        recorded: dict[str, SentTx] = {}
        try:
            results = await sponsor.sender.send_batch(
                [unit.request for unit in units],
                record=self._mark_submitted(self._now(), recorded, units),
            )
        except RpcUnavailable as exc:
            self._network_failed(exc)
            network = self._delay(NETWORK_DELAY)
            outcomes.extend((item.id, TransferStatus.SIGNED, None, network) for item in members)
            return 0
        except _StaleClaims as stale:
            # Another worker took some of them meanwhile (its claim ran out on ours): theirs now.
            log.info("relayer: %d transfer(s) taken by another worker", len(stale.ids))
            if retried:
                return 0
            rest = [item for item in members if item.id not in stale.ids]
            return await self._send(sponsor, rest, outcomes, retried=True)
        except ChainError as exc:
            # The node answered the fee or estimate batch with an error of its own.
            log.warning("relayer: sponsor %s cannot send now: %s", sponsor.address, exc)
            refused = self._delay(REFUSED_DELAY)
            outcomes.extend((item.id, TransferStatus.SIGNED, None, refused) for item in members)
            return 0
        self._network_ok()
        starved: list[_Unit] = []
        sent_count = self._take_results(
            sponsor, units, results, recorded, outcomes, starved=starved
        )
        if starved and not estimated:
            # The batch needs more gas than the formula gives (payments to new merchants cost
            # ~112 k, not ~91 k): estimate it. payBatch reverts as a whole when a payment is
            # starved, so the estimate is the gas that settles every payment.
            log.info("relayer: %d payBatch transaction(s) need more gas: estimating", len(starved))
            again = [
                _Unit(unit.members, dataclasses.replace(unit.request, gas=None)) for unit in starved
            ]
            sent_count += await self._send_units(
                sponsor, again, outcomes, retried=retried, estimated=True
            )
        return sent_count

    async def _group(
        self,
        sponsor: _Sponsor,
        ready: list[Outbound],
        outcomes: list[tuple[str, TransferStatus, str | None, _Outcome]],
    ) -> list[_Unit]:
        """One unit per transfer, except ``router.pay`` rows: two or more go in ``payBatch``es.

        A batch's transaction succeeds even when a payment in it fails, so each payment is
        simulated alone first (``pay`` at ``router_gas_limit``, one JSON-RPC batch): one that
        would revert is decided here, like a refused single transfer, and spends no gas. A lone
        payment goes as ``pay`` (a ``payBatch`` of one costs 3 k gas more).
        """
        limit = self.settings.router_batch_max
        payments = [item for item in ready if item.batchable] if limit > 1 else []
        if len(payments) < 2:
            return [self._single(item) for item in ready]
        singles = [item for item in ready if not item.batchable]
        passing: list[Outbound] = []
        for start in range(0, len(payments), RPC_BATCH):
            chunk = payments[start : start + RPC_BATCH]
            answers = await self._rpc.batch(
                [
                    Call(
                        "eth_call",
                        [
                            {
                                "from": sponsor.address,
                                "to": item.target,
                                "data": item.calldata(),
                                "gas": hex(self.settings.router_gas_limit),
                            },
                            "latest",
                        ],
                    )
                    for item in chunk
                ]
            )
            for item, answer in zip(chunk, answers, strict=True):
                if not isinstance(answer, RpcError):
                    passing.append(item)
                elif type(answer) is RpcError or isinstance(answer, GasTooLow):
                    # The node's trouble, not the payment's: it goes alone and is checked again.
                    singles.append(item)
                else:
                    outcome = self._classify(answer, item)
                    if outcome.kind == "sponsor":
                        self._rest(sponsor, answer)
                    outcomes.append((item.id, TransferStatus.SIGNED, None, outcome))
        units = [self._single(item) for item in singles]
        by_router: dict[str, list[Outbound]] = defaultdict(list)
        for item in passing:
            by_router[item.target].append(item)
        for items in by_router.values():
            for start in range(0, len(items), limit):
                chunk = items[start : start + limit]
                units.append(self._batch(chunk) if len(chunk) > 1 else self._single(chunk[0]))
        return units

    def _single(self, item: Outbound) -> _Unit:
        return _Unit(
            (item,),
            TxRequest(
                to=item.target,
                data=item.calldata(),
                # A key's signature costs the same every time: simulated at a fixed limit. A
                # smart account's (ERC-1271) costs what its wallet does: estimated.
                gas=self._gas_limit(item) if item.signed_by_key else None,
                purpose=transfer_purpose(item.id),
            ),
        )

    def _batch(self, items: Sequence[Outbound]) -> _Unit:
        pairs = [(cast(Payment, item.router_call), item.router_authorization()) for item in items]
        settings = self.settings
        return _Unit(
            tuple(items),
            TxRequest(
                to=items[0].target,
                data="0x" + encode_pay_batch(pairs).hex(),
                # Tight, not generous: a block packs transactions by their limit (see config).
                gas=settings.router_batch_gas_overhead
                + len(items) * settings.router_batch_gas_per_payment,
                purpose=batch_purpose([item.id for item in items]),
            ),
        )

    def _take_results(
        self,
        sponsor: _Sponsor,
        units: Sequence[_Unit],
        results: Sequence[SentTx | ChainError],
        recorded: dict[str, SentTx],
        outcomes: list[tuple[str, TransferStatus, str | None, _Outcome]],
        *,
        starved: list[_Unit],
    ) -> int:
        """Watch what the node took; decide what it did not. The number of transfers it took."""
        now = self._mono()
        sent_count = 0
        unsent: list[tuple[str, TransferStatus, str | None, _Outcome]] = []
        for unit, result in zip(units, results, strict=True):
            carried = recorded.get(unit.members[0].id)
            if isinstance(result, SentTx):
                sponsor.flights[result.tx_hash] = _Flight(unit.ids, result, now, broadcast=True)
                sent_count += len(unit.members)
            elif carried is not None and isinstance(result, RpcUnavailable):
                # Recorded, and perhaps received: it stays submitted and is sent again (the same
                # bytes) when the network answers; the user sees why it waits.
                sponsor.flights[carried.tx_hash] = _Flight(unit.ids, carried, now, broadcast=False)
                waiting = _Outcome("waiting", reason=NETWORK_DELAY)
                unsent.extend(
                    (item_id, TransferStatus.SUBMITTED, carried.tx_hash, waiting)
                    for item_id in unit.ids
                )
            elif (
                carried is None
                and unit.is_batch
                and unit.request.gas is not None
                and isinstance(result, BatchGasTooLow | GasTooLow)
            ):
                starved.append(unit)
            else:
                # Refused by the estimate (a revert: nothing recorded) or by the node (recorded,
                # and recorded as dropped): decided from the error, back to signed or failed.
                outcome = self._classify(result, unit.members[0])
                if outcome.kind == "sponsor":
                    self._rest(sponsor, result)
                if unit.is_batch and outcome.kind in ("fail", "used"):
                    # Each member passed its own simulation: the batch as a whole is refused
                    # (a gas estimate that failed, a hostile token). Decided again next round.
                    log.warning("relayer: a payBatch of %d was refused: %s", len(unit.ids), result)
                    outcome = self._delay(REFUSED_DELAY)
                for item_id in unit.ids:
                    if carried is None:
                        outcomes.append((item_id, TransferStatus.SIGNED, None, outcome))
                    else:
                        outcomes.append(
                            (item_id, TransferStatus.SUBMITTED, carried.tx_hash, outcome)
                        )
        if unsent:
            self._network_failed(RpcUnavailable(self._rpc.url, "the broadcast failed"))
            outcomes.extend(unsent)
        return sent_count

    def _mark_submitted(
        self, now: datetime, recorded: dict[str, SentTx], units: Sequence[_Unit]
    ) -> Callable[[Session, Sequence[SentTx]], None]:
        """The hook that marks transfers submitted in the transaction recording their txs (and
        writes the members of each batch)."""
        members = {unit.request.purpose: unit.ids for unit in units}

        def record(session: Session, sent: Sequence[SentTx]) -> None:
            carried = [(tx, members.get(tx.request.purpose, ())) for tx in sent]
            params = [
                {"b_id": transfer_id, "b_tx": tx.tx_hash, "b_sponsor": tx.sponsor}
                for tx, ids in carried
                for transfer_id in ids
            ]
            if not params:
                return
            links = [
                {
                    "chain_id": self.chain_id,
                    "tx_hash": tx.tx_hash,
                    "position": position,
                    "transfer_id": transfer_id,
                }
                for tx, ids in carried
                if is_batch_purpose(tx.request.purpose)
                for position, transfer_id in enumerate(ids)
            ]
            if links:
                session.execute(insert(TransferBatchMember), links)
            result = session.execute(
                _MARK_SUBMITTED.values(submitted_at=now, updated_at=now), params
            )
            if _rowcount(result) != len(params):
                # Some were no longer ``signed`` (another worker's now): roll the batch back.
                wanted = [param["b_id"] for param in params]
                still = set(
                    session.scalars(
                        select(Transfer.id).where(
                            Transfer.id.in_(wanted),
                            Transfer.tx_hash.in_([tx.tx_hash for tx in sent]),
                        )
                    )
                )
                raise _StaleClaims(set(wanted) - still)
            for tx, ids in carried:
                for transfer_id in ids:
                    recorded[transfer_id] = tx

        return record

    def _gas_limit(self, item: Outbound) -> int:
        if item.invitation is not None:
            return self.settings.deposit_gas_limit
        if item.router_call is not None:
            return self.settings.router_gas_limit
        return self.settings.transfer_gas_limit

    def _outbound(self, session: Session, rows: Sequence[Transfer]) -> list[Outbound]:
        """What to submit for ``rows``: transfers to the escrow with their invitation's terms,
        transfers to the router with their payment's or refund's (a look-up each, made only
        when a row goes there)."""
        escrow, router = self._escrow, self._router
        to_escrow = [row.id for row in rows if escrow and row.to_address.lower() == escrow]
        to_router = [row.id for row in rows if router and row.to_address.lower() == router]
        invitations: dict[str, TransferInvitation] = {}
        if to_escrow:
            invitations = {
                found.transfer_id: found
                for found in session.scalars(
                    select(TransferInvitation).where(TransferInvitation.transfer_id.in_(to_escrow))
                )
            }
        calls: dict[str, TransferRouterCall] = {}
        if to_router:
            calls = {
                found.transfer_id: found
                for found in session.scalars(
                    select(TransferRouterCall).where(TransferRouterCall.transfer_id.in_(to_router))
                )
            }
        return [Outbound.from_row(row, invitations.get(row.id), calls.get(row.id)) for row in rows]

    # -- deciding ----------------------------------------------------------------------------
    def _delay(self, reason: str, seconds: float | None = None) -> _Outcome:
        wait = timedelta(seconds=seconds) if seconds is not None else self._backoff()
        return _Outcome("delay", reason=reason, until=self._now() + wait)

    def _expired(self, item: Outbound) -> _Outcome:
        until = datetime.fromtimestamp(item.valid_before, UTC).isoformat(timespec="seconds")
        return _Outcome(
            "fail",
            AuthorizationExpired.code,
            f"the authorization expired (valid until {until}) before it could be submitted: "
            "approve the transfer again",
        )

    def _classify(self, error: ChainError, item: Outbound) -> _Outcome:
        """What a chain error means for a transfer (the chain's error table names it)."""
        if isinstance(error, AuthorizationUsed) or (
            # Someone deposited our signed terms already: recorded, the money is in the escrow.
            isinstance(error, InvitationExists) and item.invitation is not None
        ):
            return _USED
        if isinstance(error, InsufficientFunds):
            return _SPONSOR
        if isinstance(error, NonceTooLow | ReplacementUnderpriced):
            return _REQUEUE
        if isinstance(error, AuthorizationExpired):
            return self._expired(item)
        if failure_is_final(error):
            # Blacklisted, bad signature, balance too low, any other revert: it cannot happen.
            return _Outcome("fail", error.code, str(error)[:500])
        return self._delay(*self._wait_for(error, item))

    def _wait_for(self, error: ChainError, item: Outbound) -> tuple[str, float | None]:
        """Why a transfer waits, and how long (``None``: the back-off)."""
        if isinstance(error, TokenPaused):
            return PAUSED_DELAY, self.settings.backoff_max_seconds
        if isinstance(error, AuthorizationNotYetValid):
            wait = item.valid_after + 1 - self._now().timestamp()
            return NOT_YET_VALID_DELAY, max(wait, self.settings.backoff_initial_seconds)
        if isinstance(error, RpcUnavailable):
            return NETWORK_DELAY, None
        log.warning("relayer: transfer %s refused by the node: %s", item.id, error)
        return REFUSED_DELAY, None

    def _rest(self, sponsor: _Sponsor, error: ChainError) -> None:
        """The node refused a sponsor for lack of funds: give its work to the others for a while."""
        if not sponsor.resting(self._mono()):
            alerts.error(
                "sponsor %s cannot pay for gas (%s): its transfers go to the other sponsors; "
                "top it up",
                sponsor.address,
                error,
            )
        sponsor.out_of_funds_until = self._mono() + self.settings.backoff_max_seconds

    def _apply_outcomes(
        self, outcomes: Sequence[tuple[str, TransferStatus, str | None, _Outcome]]
    ) -> None:
        """Write what was decided, each only if the transfer is still as it was seen."""
        if not outcomes:
            return
        with self._sessions.begin() as session:
            session.connection(execution_options=_WRITE)
            # Rows are locked in id order, as everywhere in the relayer: no deadlock among us.
            for transfer_id, expected, tx_hash, outcome in sorted(outcomes, key=lambda o: o[0]):
                transfer = session.scalars(
                    select(Transfer).where(Transfer.id == transfer_id).with_for_update()
                ).one_or_none()
                if transfer is None or transfer.status != expected:
                    continue
                if tx_hash is not None and transfer.tx_hash != tx_hash:
                    continue
                self._apply(session, transfer, outcome)

    def _apply(self, session: Session, transfer: Transfer, outcome: _Outcome) -> None:
        if outcome.kind == "fail":
            transfer.status = TransferStatus.FAILED
            transfer.failure_code = outcome.code
            transfer.failure_reason = (outcome.reason or "")[:500]
            transfer.next_attempt_at = None
            transfer.delay_reason = None
            log.info("transfer %s failed: %s", transfer.id, outcome.reason)
        elif outcome.kind == "waiting":
            transfer.delay_reason = outcome.reason
        elif outcome.kind == "used":
            event = applied_authorization_event(
                session,
                chain_id=transfer.chain_id,
                token=transfer.token,
                nonce=transfer.nonce,
                authorizer=transfer.from_address,
            )
            if event is not None:
                confirm(
                    session,
                    transfer,
                    block_number=event.block_number,
                    tx_hash=event.transaction_hash,
                )
                return
            # Done on-chain; the follower confirms it when it reaches the block.
            transfer.status = TransferStatus.SUBMITTED
            transfer.next_attempt_at = None
            transfer.delay_reason = None
        else:
            transfer.status = TransferStatus.SIGNED
            transfer.next_attempt_at = outcome.until
            transfer.delay_reason = outcome.reason if outcome.kind == "delay" else None

    # -- tracking ----------------------------------------------------------------------------
    async def _rebroadcast_unsent(self) -> None:
        """Send again what the node may never have received (the endpoint failed mid-way)."""
        for sponsor in self._sponsors:
            unsent = [flight for flight in sponsor.flights.values() if not flight.broadcast]
            if not unsent:
                continue
            results = await sponsor.sender.rebroadcast([flight.sent for flight in unsent])
            self._network_ok()
            now = self._mono()
            cleared: list[tuple[str, TransferStatus, str | None, _Outcome]] = []
            for flight, result in zip(unsent, results, strict=True):
                if isinstance(result, SentTx | NonceTooLow):
                    # Taken (or its nonce already mined: the receipt will tell which).
                    flight.broadcast, flight.sent_at = True, now
                    cleared.extend(
                        (
                            transfer_id,
                            TransferStatus.SUBMITTED,
                            flight.sent.tx_hash,
                            _Outcome("waiting"),
                        )
                        for transfer_id in flight.transfer_ids
                    )
                else:
                    log.warning("relayer: %s refused again: %s", flight.sent.tx_hash, result)
            self._apply_outcomes(cleared)

    async def _follow_receipts(self) -> int:
        sponsors = [sponsor for sponsor in self._sponsors if sponsor.flights]
        if not sponsors:
            return 0
        answers = await self._rpc.batch(
            [Call("eth_getTransactionCount", [sponsor.address, "latest"]) for sponsor in sponsors]
        )
        self._network_ok()
        candidates: list[tuple[_Sponsor, _Flight]] = []
        for sponsor, answer in zip(sponsors, answers, strict=True):
            if isinstance(answer, RpcError):
                log.warning("cannot read the nonce of sponsor %s: %s", sponsor.address, answer)
                continue
            mined = from_hex(answer)
            if sponsor.mined_nonce is None or mined > sponsor.mined_nonce:
                sponsor.progress_at = self._mono()
            sponsor.mined_nonce = mined
            candidates.extend(
                (sponsor, flight)
                for flight in list(sponsor.flights.values())
                if flight.sent.nonce < mined
            )
        if not candidates:
            return 0
        receipts = await self._rpc.get_receipts(
            [flight.sent.tx_hash for _, flight in candidates], chunk=RPC_BATCH
        )
        mined_flights, replaced = self._sort_out(candidates, receipts)
        if not mined_flights and not replaced:
            return 0
        to_resolve = self._settle(mined_flights, replaced)
        for sponsor, flight in [(s, f) for s, f, _ in mined_flights] + replaced:
            sponsor.flights.pop(flight.sent.tx_hash, None)
        if to_resolve:
            batches = {
                flight.sent.tx_hash: receipt
                for _, flight, receipt in mined_flights
                if receipt.succeeded and is_batch_purpose(flight.sent.request.purpose)
            }
            await self._resolve(to_resolve, receipts=batches)
        return len(mined_flights)

    def _sort_out(
        self,
        candidates: Sequence[tuple[_Sponsor, _Flight]],
        receipts: dict[str, Receipt | None],
    ) -> tuple[list[tuple[_Sponsor, _Flight, Receipt]], list[tuple[_Sponsor, _Flight]]]:
        """Transactions whose nonce was used: the mined ones, and those that never will be."""
        families: dict[tuple[str, int], list[tuple[_Sponsor, _Flight]]] = defaultdict(list)
        for sponsor, flight in candidates:
            families[(sponsor.address, flight.sent.nonce)].append((sponsor, flight))
        now = self._mono()
        mined: list[tuple[_Sponsor, _Flight, Receipt]] = []
        replaced: list[tuple[_Sponsor, _Flight]] = []
        for members in families.values():
            found = [(s, f, receipts.get(f.sent.tx_hash)) for s, f in members]
            with_receipt = [(s, f, r) for s, f, r in found if r is not None]
            if with_receipt:
                # One transaction per nonce is mined; the others of its family never will be.
                mined.extend(with_receipt)
                replaced.extend((s, f) for s, f, r in found if r is None)
                continue
            for _, flight in members:
                if flight.consumed_since is None:
                    flight.consumed_since = now
            if all(
                now - (flight.consumed_since or now) >= REPLACED_GRACE_SECONDS
                for _, flight in members
            ):
                replaced.extend(members)
        return mined, replaced

    def _settle(
        self,
        mined: Sequence[tuple[_Sponsor, _Flight, Receipt]],
        replaced: Sequence[tuple[_Sponsor, _Flight]],
    ) -> set[str]:
        """Record receipts on the transactions and their transfers, in one transaction.

        Returns the transfers left with no transaction that can still carry them: those of a
        failed or replaced transaction, and the payments that failed inside a mined batch.
        """
        succeeded: set[str] = set()
        failed_inside: set[str] = set()
        for _, flight, receipt in mined:
            if not receipt.succeeded:
                continue
            if is_batch_purpose(flight.sent.request.purpose) and payment_failures(
                receipt.logs, router=flight.sent.request.to or ""
            ):
                # Which members failed is decided with their terms (``_resolve``): the others
                # read as used there and wait for the follower, as they would anyway.
                failed_inside.update(flight.transfer_ids)
            else:
                succeeded.update(flight.transfer_ids)
        ids = {tid for _, flight, _ in mined for tid in flight.transfer_ids}
        ids |= {tid for _, flight in replaced for tid in flight.transfer_ids}
        with self._sessions.begin() as session:
            session.connection(execution_options=_WRITE)
            transfers = {
                transfer.id: transfer
                for transfer in session.scalars(
                    select(Transfer)
                    .where(Transfer.id.in_(ids))
                    .order_by(Transfer.id)
                    .with_for_update()
                )
            }
            changes: dict[str, tuple[TxStatus, Receipt | None]] = {
                flight.sent.tx_hash: (
                    TxStatus.MINED if receipt.succeeded else TxStatus.FAILED,
                    receipt,
                )
                for _, flight, receipt in mined
            }
            changes.update(
                {flight.sent.tx_hash: (TxStatus.REPLACED, None) for _, flight in replaced}
            )
            carried_by = {flight.sent.tx_hash: flight.transfer_ids for _, flight, _ in mined}
            for row in settle_transactions(session, chain_id=self.chain_id, changes=changes):
                # Once: only a row that changed is returned.
                members = carried_by.get(row.tx_hash, ())
                for transfer_id, share in zip(
                    members, gas_shares(row.gas_used or 0, len(members)), strict=True
                ):
                    transfer = transfers.get(transfer_id)
                    if transfer is not None:
                        _account(transfer, row, share)
        to_resolve = {
            tid for _, flight, r in mined if not r.succeeded for tid in flight.transfer_ids
        }
        to_resolve |= {tid for _, flight in replaced for tid in flight.transfer_ids}
        return (to_resolve - succeeded) | (failed_inside - succeeded)

    def _settled_by_recovery(self, session: Session, row: SentTransaction) -> None:
        """``TransactionSender.recover`` settled one of our transactions: account for it."""
        if row.status not in (TxStatus.MINED, TxStatus.FAILED):
            return
        if is_batch_purpose(row.purpose):
            members = list(
                session.scalars(
                    select(TransferBatchMember.transfer_id)
                    .where(
                        TransferBatchMember.chain_id == self.chain_id,
                        TransferBatchMember.tx_hash == row.tx_hash,
                    )
                    .order_by(TransferBatchMember.position)
                )
            )
        else:
            transfer_id = transfer_id_of(row.purpose)
            members = [transfer_id] if transfer_id is not None else []
        if not members:
            return
        transfers = {
            transfer.id: transfer
            for transfer in session.scalars(
                select(Transfer)
                .where(Transfer.id.in_(members))
                .order_by(Transfer.id)
                .with_for_update()
            )
        }
        for transfer_id, share in zip(
            members, gas_shares(row.gas_used or 0, len(members)), strict=True
        ):
            transfer = transfers.get(transfer_id)
            if transfer is not None:
                _account(transfer, row, share)

    async def _unstick(self) -> None:
        """Resend what a node seems to have lost, fill nonce gaps, replace what is underpriced."""
        now = self._mono()
        for sponsor in self._sponsors:
            newest: dict[int, _Flight] = {}
            for flight in list(sponsor.flights.values()):
                current = newest.get(flight.sent.nonce)
                if current is None or flight.sent_at > current.sent_at:
                    newest[flight.sent.nonce] = flight
            mined = sponsor.mined_nonce
            waiting = [n for n in newest if mined is not None and n >= mined]
            if not waiting or mined is None:
                sponsor.progress_at = now
                continue
            if now - sponsor.progress_at >= self.settings.resend_after_seconds:
                sponsor.progress_at = now
                if min(waiting) > mined:
                    # Nothing of ours waits at the nonces below: every later transaction is
                    # stuck behind the gap until something fills it.
                    await self._fill_nonce_gap(sponsor, range(mined, min(waiting)))
                    continue
                # The lowest ones may have been dropped from the node's pool although it took
                # them: the same bytes again ("already known" if it still has them).
                lowest = [newest[n] for n in sorted(waiting)[:RESEND_PER_STALL]]
                await sponsor.sender.rebroadcast(
                    [flight.sent for flight in lowest if flight.broadcast]
                )
                log.info(
                    "relayer: sponsor %s made no progress for %.0f s at nonce %d: sent its "
                    "lowest %d transaction(s) again",
                    sponsor.address,
                    self.settings.resend_after_seconds,
                    mined,
                    len(lowest),
                )
            stuck = sorted(
                (
                    flight
                    for flight in newest.values()
                    if flight.broadcast
                    and flight.consumed_since is None
                    and now - flight.sent_at >= self.settings.stuck_after_seconds
                ),
                key=lambda flight: flight.sent.nonce,
            )
            for flight in stuck[:MAX_REPLACEMENTS_PER_POLL]:
                if not await self._replace(sponsor, flight, now):
                    break

    async def _replace(self, sponsor: _Sponsor, flight: _Flight, now: float) -> bool:
        recorded: list[SentTx] = []

        def record(session: Session, sent: Sequence[SentTx]) -> None:
            recorded.extend(sent)
            if is_batch_purpose(flight.sent.request.purpose):
                # Every hash of the batch names its members: whichever is mined, they follow it.
                session.execute(
                    insert(TransferBatchMember),
                    [
                        {
                            "chain_id": self.chain_id,
                            "tx_hash": sent[0].tx_hash,
                            "position": position,
                            "transfer_id": transfer_id,
                        }
                        for position, transfer_id in enumerate(flight.transfer_ids)
                    ],
                )
            session.execute(
                update(Transfer)
                .where(
                    Transfer.id.in_(flight.transfer_ids),
                    Transfer.status == TransferStatus.SUBMITTED,
                )
                .values(tx_hash=sent[0].tx_hash)
                .execution_options(synchronize_session=False)
            )

        flight.sent_at = now
        try:
            replacement = await sponsor.sender.replace(flight.sent, record=record)
        except (NonceTooLow, ReplacementUnderpriced):
            return True  # mined meanwhile, or a better replacement is pending: receipts decide
        except InsufficientFunds as exc:
            self._rest(sponsor, exc)
            return False
        except RpcUnavailable:
            if recorded:  # recorded, perhaps received: sent again when the network answers
                sponsor.flights[recorded[0].tx_hash] = _Flight(
                    flight.transfer_ids, recorded[0], now, broadcast=False
                )
            raise
        except RpcError as exc:
            log.warning("relayer: cannot replace %s: %s", flight.sent.tx_hash, exc)
            return True
        log.info(
            "relayer: %s (sponsor %s nonce %d) stuck for %.0f s: replaced by %s",
            flight.sent.tx_hash,
            sponsor.address,
            flight.sent.nonce,
            self.settings.stuck_after_seconds,
            replacement.tx_hash,
        )
        sponsor.flights[replacement.tx_hash] = _Flight(
            flight.transfer_ids, replacement, now, broadcast=True
        )
        return True

    async def _fill_nonce_gap(self, sponsor: _Sponsor, gap: range) -> None:
        """Fill nonces nothing will use (refused, or reorganised away by a node that forgets
        such transactions) with 0-value transfers to the sponsor itself, 21 k gas each."""
        with self._sessions() as session:
            pending = set(
                session.scalars(
                    select(SentTransaction.nonce).where(
                        SentTransaction.chain_id == self.chain_id,
                        SentTransaction.sponsor == sponsor.address,
                        SentTransaction.status.in_(OPEN_TX_STATUSES),
                        SentTransaction.nonce >= gap.start,
                        SentTransaction.nonce < gap.stop,
                    )
                )
            )
        for nonce in gap:
            if nonce in pending:
                continue  # recorded by another path: recover() sends it again
            await sponsor.sender.nonces.give_back(nonce)
            try:
                sent = await sponsor.sender.send(
                    TxRequest(to=sponsor.address, gas=21_000, purpose="nonce gap filler")
                )
            except InsufficientFunds as exc:
                self._rest(sponsor, exc)
                return
            except RpcError as exc:
                log.warning("relayer: cannot fill nonce %d of %s: %s", nonce, sponsor.address, exc)
                return
            log.info("relayer: filled nonce %d of sponsor %s", sent.nonce, sponsor.address)

    # -- resolving orphans -------------------------------------------------------------------
    async def _sweep(self, *, grace: float) -> int:
        """Decide submitted transfers that no open transaction of ours carries any more.

        Only those unchanged for ``grace`` seconds: a transfer just mined is the follower's to
        confirm, and deciding it again and again would only cost calls.
        """
        carried = self._carried()
        now = self._mono()
        cutoff = self._now() - timedelta(seconds=grace)
        with self._sessions() as session:
            candidates = session.scalars(
                select(Transfer.id)
                .where(
                    Transfer.chain_id == self.chain_id,
                    Transfer.status == TransferStatus.SUBMITTED,
                    Transfer.updated_at <= cutoff,
                )
                .order_by(Transfer.updated_at)
                .limit(RPC_BATCH)
            ).all()
        ids = [
            transfer_id
            for transfer_id in candidates
            if transfer_id not in carried
            and now - self._checked.get(transfer_id, -math.inf) >= grace
        ]
        return await self._resolve(ids)

    def _carried(self) -> set[str]:
        return {
            transfer_id
            for sponsor in self._sponsors
            for flight in list(sponsor.flights.values())
            for transfer_id in flight.transfer_ids
        }

    async def _resolve(
        self, transfer_ids: Iterable[str], *, receipts: Mapping[str, Receipt] | None = None
    ) -> int:
        """Decide submitted transfers with no open transaction from ``authorizationState``.

        An unused one is simulated, except a payment whose last transaction is a mined batch:
        it failed inside it, and the reason the router reported (``PaymentFailed``) decides, as
        a simulation's revert would. ``receipts``: mined batches' receipts already at hand.
        """
        carried = self._carried()
        wanted = [transfer_id for transfer_id in transfer_ids if transfer_id not in carried]
        if not wanted:
            return 0
        with self._sessions() as session:
            items = self._outbound(
                session,
                session.scalars(
                    select(Transfer).where(
                        Transfer.id.in_(wanted),
                        Transfer.status == TransferStatus.SUBMITTED,
                        Transfer.signature.is_not(None),
                    )
                ).all(),
            )
        if not items:
            return 0
        now = self._mono()
        for item in items:
            self._checked[item.id] = now
        used = await self._authorizations_used(items)
        outcomes: list[tuple[str, TransferStatus, str | None, _Outcome]] = []
        unused: list[Outbound] = []
        for item, is_used in zip(items, used, strict=True):
            if is_used:
                outcomes.append((item.id, TransferStatus.SUBMITTED, None, _USED))
            elif is_used is False:
                unused.append(item)
        failed_inside = await self._failed_inside(unused, receipts or {})
        outcomes.extend(
            (item.id, TransferStatus.SUBMITTED, None, self._failed_in_batch(item, failure))
            for item in unused
            if (failure := failed_inside.get(item.id)) is not None
        )
        unused = [item for item in unused if item.id not in failed_inside]
        simulated = await self._simulate(unused)
        for item, error in zip(unused, simulated, strict=True):
            if error is None:
                outcome = _REQUEUE
                if item.attempts >= self.settings.max_attempts:
                    outcome = self._too_many_attempts(item)
            else:
                outcome = self._classify(error, item)
                if outcome.kind == "sponsor":
                    outcome = _REQUEUE
            outcomes.append((item.id, TransferStatus.SUBMITTED, None, outcome))
        self._apply_outcomes(outcomes)
        if len(self._checked) > 100_000:
            self._checked.clear()
        return len(outcomes)

    def _failed_in_batch(self, item: Outbound, failure: ChainError) -> _Outcome:
        """The verdict on a payment that failed inside a mined batch: what a simulation that
        reverted with the same reason would decide (failed for good, or sent again)."""
        log.info("relayer: payment %s failed inside batch %s: %s", item.id, item.tx_hash, failure)
        outcome = self._classify(failure, item)
        if outcome.kind in ("requeue", "delay", "sponsor"):
            if item.attempts >= self.settings.max_attempts:
                return self._too_many_attempts(item)
            if outcome.kind == "sponsor":
                return _REQUEUE
        return outcome

    @staticmethod
    def _too_many_attempts(item: Outbound) -> _Outcome:
        return _Outcome(
            "fail",
            "chain.transaction_failed",
            f"{item.attempts} transactions carrying this transfer failed on-chain",
        )

    async def _failed_inside(
        self, items: Sequence[Outbound], receipts: Mapping[str, Receipt]
    ) -> dict[str, ChainError]:
        """The payments among ``items`` that failed inside a mined batch, with the reason.

        Payments whose last transaction is a batch recorded as mined, matched to the router's
        ``PaymentFailed`` by (invoice id, payer): a batch never holds two payments of one invoice
        by one payer (that would be one nonce). Receipts not at hand are read (one batch).
        """
        candidates = [
            item
            for item in items
            if isinstance(item.router_call, Payment) and item.tx_hash and item.router
        ]
        if not candidates:
            return {}
        hashes = {item.tx_hash for item in candidates if item.tx_hash}
        at_hand = {tx_hash: receipts[tx_hash] for tx_hash in hashes if tx_hash in receipts}
        missing = hashes - set(at_hand)
        if missing:
            with self._sessions() as session:
                batches = list(
                    session.scalars(
                        select(SentTransaction.tx_hash).where(
                            SentTransaction.chain_id == self.chain_id,
                            SentTransaction.tx_hash.in_(sorted(missing)),
                            SentTransaction.status == TxStatus.MINED,
                            SentTransaction.purpose.startswith(BATCH_PURPOSE_PREFIX),
                        )
                    )
                )
            if batches:
                read = await self._rpc.get_receipts(batches, chunk=RPC_BATCH)
                at_hand.update({h: r for h, r in read.items() if r is not None})
        failures: dict[str, ChainError] = {}
        for item in candidates:
            receipt = at_hand.get(item.tx_hash or "")
            if receipt is None or not receipt.succeeded:
                continue
            payment = cast(Payment, item.router_call)
            for failure in payment_failures(receipt.logs, router=item.router or ""):
                if failure.invoice_id == payment.invoice_id and (
                    failure.payer.lower() == item.from_address.lower()
                ):
                    reason = failure.reason_text or "the payment was refused"
                    failures[item.id] = revert_error(reason, data=failure.reason_hex)
                    break
        return failures

    async def _authorizations_used(self, items: Sequence[Outbound]) -> list[bool | None]:
        """The token's ``authorizationState`` of each item; ``None`` where the node did not say."""
        states: list[bool | None] = []
        for start in range(0, len(items), RPC_BATCH):
            chunk = items[start : start + RPC_BATCH]
            answers = await self._rpc.batch(
                [
                    Call(
                        "eth_call",
                        [
                            {
                                "to": item.token,
                                "data": encode_call(
                                    _AUTHORIZATION_STATE,
                                    ["address", "bytes32"],
                                    [_address_bytes(item.from_address), item.nonce_bytes],
                                ),
                            },
                            "latest",
                        ],
                    )
                    for item in chunk
                ]
            )
            for answer in answers:
                if isinstance(answer, RpcError) or not isinstance(answer, str):
                    states.append(None)
                else:
                    states.append(int(answer, 16) != 0 if answer not in ("0x", "") else None)
        return states

    async def _simulate(self, items: Sequence[Outbound]) -> list[ChainError | None]:
        """What submitting each item now would do: its revert's typed error, or ``None``."""
        sponsor = self._sponsors[0].address
        errors: list[ChainError | None] = []
        for start in range(0, len(items), RPC_BATCH):
            chunk = items[start : start + RPC_BATCH]
            answers = await self._rpc.batch(
                [
                    Call(
                        "eth_call",
                        [{"from": sponsor, "to": item.target, "data": item.calldata()}, "latest"],
                    )
                    for item in chunk
                ]
            )
            errors.extend(answer if isinstance(answer, RpcError) else None for answer in answers)
        return errors

    # -- start-up ----------------------------------------------------------------------------
    def _load_flights(self) -> None:
        """Watch again the open transactions that carry transfers (after ``recover``)."""
        by_address = {sponsor.address: sponsor for sponsor in self._sponsors}
        with self._sessions() as session:
            rows = session.scalars(
                select(SentTransaction).where(
                    SentTransaction.chain_id == self.chain_id,
                    SentTransaction.sponsor.in_(list(by_address)),
                    SentTransaction.status.in_(OPEN_TX_STATUSES),
                    SentTransaction.purpose.startswith(PURPOSE_PREFIX)
                    | SentTransaction.purpose.startswith(BATCH_PURPOSE_PREFIX),
                )
            ).all()
            members: dict[str, list[str]] = defaultdict(list)
            batch_hashes = [row.tx_hash for row in rows if is_batch_purpose(row.purpose)]
            for start in range(0, len(batch_hashes), RPC_BATCH):
                for tx_hash, transfer_id in session.execute(
                    select(TransferBatchMember.tx_hash, TransferBatchMember.transfer_id)
                    .where(
                        TransferBatchMember.chain_id == self.chain_id,
                        TransferBatchMember.tx_hash.in_(batch_hashes[start : start + RPC_BATCH]),
                    )
                    .order_by(TransferBatchMember.tx_hash, TransferBatchMember.position)
                ):
                    members[tx_hash].append(transfer_id)
            for row in rows:
                if (tid := transfer_id_of(row.purpose)) is not None:
                    members[row.tx_hash].append(tid)
            ids = {tid for carried in members.values() for tid in carried}
            transfers = {
                item.id: item
                for item in self._outbound(
                    session, session.scalars(select(Transfer).where(Transfer.id.in_(ids))).all()
                )
            }
        now = self._mono()
        for row in rows:
            carried = members.get(row.tx_hash, [])
            items = [transfers.get(transfer_id) for transfer_id in carried]
            if not carried or any(item is None or item.signature_bytes() is None for item in items):
                continue
            sent = SentTx(
                tx_hash=row.tx_hash,
                nonce=row.nonce,
                sponsor=row.sponsor,
                # The calldata as signed (a replacement re-signs exactly this).
                request=TxRequest(to=row.to, data=calldata_of(row.raw), purpose=row.purpose),
                gas=row.gas_limit,
                max_fee_per_gas=row.max_fee_per_gas,
                max_priority_fee_per_gas=row.max_priority_fee_per_gas,
                raw=row.raw,
            )
            by_address[row.sponsor].flights[row.tx_hash] = _Flight(
                tuple(carried), sent, now, broadcast=row.status == TxStatus.BROADCAST
            )

    # -- balances ----------------------------------------------------------------------------
    def _observe_balance(self, sponsor: _Sponsor, balance: int) -> None:
        previous, sponsor.balance_wei = sponsor.balance_wei, balance
        threshold = self.settings.low_balance_wei
        if balance < threshold and not sponsor.low:
            sponsor.low = True
            alerts.warning(
                "sponsor %s balance is low: %d wei (alert threshold %d wei); top it up before "
                "transfers are delayed",
                sponsor.address,
                balance,
                threshold,
            )
        elif balance >= threshold and sponsor.low:
            sponsor.low = False
            alerts.info("sponsor %s balance is back to %d wei", sponsor.address, balance)
        if sponsor.out_of_funds_until is not None and previous is not None and balance > previous:
            sponsor.out_of_funds_until = None  # topped up: try it again at once


def _account(transfer: Transfer, row: SentTransaction, gas_used: int) -> None:
    """Add a settled transaction's gas (``gas_used``: the transfer's share of a batch's) to its
    transfer (called once per settlement)."""
    transfer.gas_used = (transfer.gas_used or 0) + gas_used
    transfer.gas_cost_wei = (transfer.gas_cost_wei or 0) + gas_used * (row.effective_gas_price or 0)
    if row.status == TxStatus.MINED:
        transfer.tx_hash = row.tx_hash
        transfer.block_number = row.block_number
        if transfer.status == TransferStatus.SUBMITTED:
            transfer.delay_reason = None


@functools.lru_cache(maxsize=1024)
def _router_terms(transfer: Transfer, call: TransferRouterCall) -> Payment | Refund:
    """The router's terms for an outbox row to it (its authorization is the row itself)."""
    payment = Payment(
        invoice_id=bytes.fromhex(call.invoice_id.removeprefix("0x")),
        merchant=call.merchant,
        token=transfer.token,
        amount_units=call.payment_amount_units,
        fee_units=call.fee_units,
    )
    if call.kind is RouterCallKind.PAY:
        return payment
    if call.payer is None or call.refund_id is None:
        raise ValueError(f"refund {transfer.id} has no payer or refund id")
    return Refund(
        payment=payment,
        payer=call.payer,
        refund_id=bytes.fromhex(call.refund_id.removeprefix("0x")),
        amount_units=transfer.amount_units,
    )


def _checksummed(address: str) -> str:
    return to_checksum_address(address)


def _address_bytes(address: str) -> bytes:
    raw = bytes.fromhex(address.removeprefix("0x"))
    if len(raw) != 20:
        raise ValueError(f"not a 20-byte address: {address!r}")
    return raw


def _rowcount(result: Any) -> int:
    return int(getattr(result, "rowcount", 0))


async def _sleep_unless(stop: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), timeout=seconds)
