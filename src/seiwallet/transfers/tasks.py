"""The worker's transfer jobs: invitations (register, release, reclaim, tell people), and the
limit reservations of transfers that ended without moving money.

:func:`settle_transfer_reservations` expires transfers left unapproved past the approval window
and releases the compliance gate's reservation of every transfer that ended ``expired`` or
``failed`` (the relayer fails a transfer the chain refuses): the sender's limit frees up. It is
idempotent (a released reservation stays released) and cheap: unapproved transfers are read
from the outbox index, failed ones (rare) over the limits' 30-day window only.

Invitations:

:class:`InvitationWorker` runs in the worker beside the relayer and the follower, sending from
the escrow's **releaser** account (one :class:`~seiwallet.chain.sender.TransactionSender` of its
own: never share it with another process). Each round:

1. **Track** its own transactions: receipts settle ``chain_transactions`` and free the
   invitation for its next step; a failed or lost one is retried after ``retry_seconds``.
2. **Register** a deposit that someone submitted straight to the token (the transfer is
   confirmed by the token's ``AuthorizationUsed``, but the escrow has no record): only after
   ``escrow.deposit_proven`` finds ``AuthorizationUsed`` + ``Transfer(sender, escrow, value)``
   in that transaction's logs.
3. **Release** open invitations whose alias a user has proven (a verified e-mail or phone on an
   active user with a wallet; exactly one such user) to that user's wallet — but only if the
   claim hash recomputed from our salt and alias equals the one the escrow holds *on-chain*
   (``invitations(id)``), and the deadline is not near. A tampered row cannot redirect money.
4. **Reclaim** open invitations whose deadline has passed *on the chain's clock*: the money
   goes back to the sender (anyone may call ``reclaim``; we pay the gas).
5. **Tell** the invited alias once its money waits in the escrow, and the sender once it was
   claimed or came back (at most once each: marked, then sent).

Every action is idempotent and crash-safe: the chain state is read before anything is sent, a
transaction is recorded (with the invitation's ``action`` and ``action_tx_hash``) *before* it is
broadcast, in one database transaction, and :meth:`InvitationWorker.recover` resends what a
crash left recorded. The escrow itself settles an invitation once; the status a reader sees is
written by the follower (:class:`~seiwallet.transfers.handlers.InvitationEventHandler`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import and_, func, or_, select, update
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from seiwallet.accounts.models import User, UserStatus
from seiwallet.accounts.notices import Mailer
from seiwallet.chain.errors import ChainError, RpcError
from seiwallet.chain.escrow import (
    Invitation,
    InvitationState,
    decode_invitation_state,
    deposit_proven,
    encode_get_invitation,
    encode_reclaim,
    encode_register,
    encode_release,
)
from seiwallet.chain.escrow import (
    InvitationStatus as ChainInvitationStatus,
)
from seiwallet.chain.events import EventDecoder
from seiwallet.chain.models import SentTransaction
from seiwallet.chain.rpc import Call, RpcClient
from seiwallet.chain.sender import SentTx, TransactionSender, TxRequest, settle_transactions
from seiwallet.compliance.models import UsageStatus
from seiwallet.config import InvitationSettings
from seiwallet.db import SQLITE_BEGIN
from seiwallet.money import TokenAmount
from seiwallet.transfers.handlers import applied_authorization_event
from seiwallet.transfers.invitations import (
    claim_hash_of,
    invitee_message,
    sender_display,
    sender_message,
)
from seiwallet.transfers.models import (
    InvitationAction,
    InvitationStatus,
    Transfer,
    TransferInvitation,
    TransferStatus,
)
from seiwallet.transfers.reservations import COUNTED_FOR, reference_of, settle_reservations
from seiwallet.transfers.services import APPROVAL_WINDOW, expire_transfers

log = logging.getLogger(__name__)
alerts = logging.getLogger("seiwallet.alerts")

_WRITE = {SQLITE_BEGIN: "IMMEDIATE"}
#: ``chain_transactions.purpose`` of the releaser's transactions: ``invitation.<action>:<id>``.
PURPOSE_PREFIX = "invitation."
#: Invitations looked at per step and round.
BATCH = 200
#: How long a refused release waits when its claim hash does not match the chain (an operator
#: must look: retrying soon would only repeat the alert).
MISMATCH_WAIT = timedelta(hours=1)


#: An unapproved transfer is expired by the worker this long after the approval window closed:
#: an approval already at the signer when the window closed is not cut short.
EXPIRY_GRACE = timedelta(seconds=60)


def settle_transfer_reservations(
    sessions: sessionmaker[Session], *, chain_id: int, now: datetime, limit: int = 500
) -> int:
    """Expire this chain's transfers left unapproved, and release the limit reservations of
    transfers that failed; how many reservations or transfers changed."""
    cutoff = now - timedelta(seconds=APPROVAL_WINDOW) - EXPIRY_GRACE
    with sessions() as db:
        stale = list(
            db.scalars(
                select(Transfer.id)
                .where(
                    Transfer.chain_id == chain_id,
                    Transfer.status == TransferStatus.AWAITING_APPROVAL,
                    Transfer.created_at < cutoff,
                )
                .order_by(Transfer.created_at)
                .limit(limit)
            )
        )
    expired = expire_transfers(sessions, stale, now=now)
    with sessions.begin() as db:
        db.connection(execution_options=_WRITE)
        released = settle_reservations(
            db,
            # Expiring releases in its own transaction; a failure is the relayer's (or the
            # chain's) word, after the transfer may already have been signed and committed.
            select(reference_of("transfer", Transfer.id)).where(
                Transfer.chain_id == chain_id,
                Transfer.status == TransferStatus.FAILED,
                Transfer.created_at > now - COUNTED_FOR,
            ),
            UsageStatus.RELEASED,
            now=now,
        )
    if expired or released:
        log.info(
            "transfers: %d left unapproved expired, %d limit reservations released",
            len(expired),
            released,
        )
    return len(expired) + released


def action_purpose(action: InvitationAction, transfer_id: str) -> str:
    return f"{PURPOSE_PREFIX}{action.value}:{transfer_id}"


def _transfer_of(purpose: str) -> str | None:
    if not purpose.startswith(PURPOSE_PREFIX) or ":" not in purpose:
        return None
    return purpose.split(":", 1)[1]


def _utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class RoundReport:
    """What one :meth:`InvitationWorker.run_once` did (transactions broadcast per step)."""

    settled: int
    registered: int
    released: int
    reclaimed: int
    notified: int

    @property
    def sent(self) -> int:
        return self.registered + self.released + self.reclaimed


@dataclass(frozen=True)
class _Work:
    """One invitation with its transfer, as read for a step."""

    invitation: TransferInvitation
    transfer: Transfer

    @property
    def terms(self) -> Invitation:
        return Invitation(
            token=self.transfer.token,
            sender=self.transfer.from_address,
            value_units=self.transfer.amount_units,
            claim_hash=bytes.fromhex(self.invitation.claim_hash.removeprefix("0x")),
            deadline=self.invitation.deadline,
        )

    @property
    def id_bytes(self) -> bytes:
        return bytes.fromhex(self.invitation.invitation_id.removeprefix("0x"))


class _Stale(Exception):
    """An invitation changed between reading and recording (another worker took it)."""


class InvitationWorker:
    """Registers, releases and reclaims invitations from the releaser account; tells people."""

    def __init__(
        self,
        rpc: RpcClient,
        sessions: sessionmaker[Session],
        releaser: TransactionSender,
        *,
        chain_id: int,
        escrow: str,
        decoder: EventDecoder,
        settings: InvitationSettings | None = None,
        mailer: Mailer | None = None,
        public_url: str = "http://localhost:8000",
        clock: Callable[[], datetime] = _utcnow,
    ) -> None:
        self._rpc = rpc
        self._sessions = sessions
        self._sender = releaser
        self.chain_id = chain_id
        self.escrow = escrow
        self._decoder = decoder
        self.settings = settings or InvitationSettings()
        self._mailer = mailer
        self._link = public_url.rstrip("/") + "/"
        self._now = clock

    @property
    def releaser(self) -> str:
        return self._sender.sponsor

    # -- running -----------------------------------------------------------------------------
    async def run(self, stop: asyncio.Event) -> None:
        """Recover, then run rounds every ``poll_seconds`` until ``stop`` is set."""
        failures = 0
        while not stop.is_set():
            try:
                await self.recover()
                break
            except ChainError as exc:
                failures += 1
                if failures == 1:
                    log.warning("invitations: the network is not answering (%s); waiting", exc)
                await _sleep_unless(stop, min(30.0, 0.5 * 2 ** min(failures, 6)))
        while not stop.is_set():
            try:
                await self.run_once()
            except SQLAlchemyError:
                log.exception("invitations: database error; retrying")
            except ChainError as exc:
                log.warning("invitations: %s; retrying", exc)
            await _sleep_unless(stop, self.settings.poll_seconds)

    async def recover(self) -> None:
        """After a start: resend or settle the releaser's recorded transactions (a crash between
        recording and broadcasting left them ``signed``); the next round frees their
        invitations from the settled rows."""
        report = await self._sender.recover()
        if report.rebroadcast or report.mined or report.failed or report.dropped:
            log.info("invitations: releaser recovered: %s", report)

    async def run_once(self) -> RoundReport:
        """One round of every step (see the module's docstring)."""
        head = await self._rpc.get_block("latest")
        chain_now = head.timestamp if head is not None else int(self._now().timestamp())
        settled = await self._track()
        registered = await self._register()
        released = await self._release(chain_now)
        reclaimed = await self._reclaim(chain_now)
        notified = await self._notify()
        return RoundReport(settled, registered, released, reclaimed, notified)

    # -- 1. tracking -------------------------------------------------------------------------
    async def _track(self) -> int:
        """Settle our in-flight actions' transactions; free their invitations."""
        with self._sessions() as session:
            rows = session.execute(
                select(
                    TransferInvitation.transfer_id,
                    TransferInvitation.action_tx_hash,
                    SentTransaction,
                )
                .join(
                    SentTransaction,
                    and_(
                        SentTransaction.chain_id == TransferInvitation.chain_id,
                        SentTransaction.tx_hash == TransferInvitation.action_tx_hash,
                    ),
                    isouter=True,
                )
                .where(
                    TransferInvitation.chain_id == self.chain_id,
                    TransferInvitation.action.is_not(None),
                )
                .limit(BATCH)
            ).all()
        if not rows:
            return 0
        # transfer id → (tx hash, error or None for success)
        followed = await self._sender.follow(rows)
        changes, freed = followed.changes, followed.done
        if not changes and not freed:
            return 0
        retry_at = self._now() + timedelta(seconds=self.settings.retry_seconds)
        with self._sessions.begin() as session:
            session.connection(execution_options=_WRITE)
            settle_transactions(session, chain_id=self.chain_id, changes=changes)
            for transfer_id, (tx_hash, error) in sorted(freed.items()):
                values: dict[str, Any] = {"action": None, "action_tx_hash": None}
                if error is not None:
                    values.update(next_attempt_at=retry_at, last_error=error[:300])
                    log.warning("invitation of transfer %s: %s", transfer_id, error)
                session.execute(
                    update(TransferInvitation)
                    .where(
                        TransferInvitation.transfer_id == transfer_id,
                        TransferInvitation.action_tx_hash == (tx_hash or None),
                    )
                    .values(**values)
                    .execution_options(synchronize_session=False)
                )
        return len(changes)

    # -- 2. register -------------------------------------------------------------------------
    async def _register(self) -> int:
        """Record deposits that reached the escrow straight through the token."""
        work = self._read(
            TransferInvitation.status == InvitationStatus.PENDING,
            Transfer.status == TransferStatus.CONFIRMED,
        )
        if not work:
            return 0
        states = await self._states(work)
        requests: list[tuple[_Work, TxRequest, dict[str, Any]]] = []
        for item, state in zip(work, states, strict=True):
            if state is None or state.status is not ChainInvitationStatus.NONE:
                continue  # not readable now, or recorded already (the follower will say so)
            with self._sessions() as session:
                used = applied_authorization_event(
                    session,
                    chain_id=self.chain_id,
                    token=item.transfer.token,
                    nonce=item.invitation.invitation_id,
                    authorizer=item.transfer.from_address,
                )
            if used is None:
                continue
            receipt = await self._rpc.get_receipt(used.transaction_hash)
            if receipt is None:
                continue
            events = self._decoder.decode_all(receipt.logs)
            if not deposit_proven(events, item.terms, escrow=self.escrow, chain_id=self.chain_id):
                alerts.error(
                    "invitation %s: its authorization was used in %s but no transfer of its "
                    "value to the escrow is in that transaction: not registering it",
                    item.invitation.invitation_id,
                    used.transaction_hash,
                )
                self._postpone([item], "no proof of the deposit in its transaction", MISMATCH_WAIT)
                continue
            data = "0x" + encode_register(item.terms).hex()
            requests.append((item, self._request(InvitationAction.REGISTER, item, data), {}))
        return await self._send(requests, InvitationStatus.PENDING)

    # -- 3. release --------------------------------------------------------------------------
    async def _release(self, chain_now: int) -> int:
        """Pay open invitations to the wallets of their aliases' proven owners."""
        margin = self.settings.release_margin_seconds
        work = self._read(
            TransferInvitation.status == InvitationStatus.OPEN,
            TransferInvitation.deadline > chain_now + margin,
        )
        if not work:
            return 0
        holders = self._holders([item.invitation for item in work])
        claimed: list[tuple[_Work, tuple[str, str]]] = []
        for item in work:
            found = holders.get((item.invitation.alias_kind, item.invitation.alias), [])
            if len(found) == 1:
                claimed.append((item, found[0]))
            elif len(found) > 1:
                alerts.error(
                    "invitation %s: %d users hold its alias as verified: not releasing it",
                    item.invitation.invitation_id,
                    len(found),
                )
                self._postpone([item], "more than one user holds the alias", MISMATCH_WAIT)
        if not claimed:
            return 0
        states = await self._states([item for item, _ in claimed])
        requests: list[tuple[_Work, TxRequest, dict[str, Any]]] = []
        for (item, (user_id, address)), state in zip(claimed, states, strict=True):
            if state is None or not state.is_open():
                continue
            if not self._matches_chain(item, state):
                continue
            if chain_now + margin >= state.deadline:
                continue
            data = "0x" + encode_release(item.id_bytes, address).hex()
            requests.append(
                (
                    item,
                    self._request(InvitationAction.RELEASE, item, data),
                    {"recipient_user_id": user_id, "recipient_address": address},
                )
            )
        return await self._send(requests, InvitationStatus.OPEN)

    def _matches_chain(self, item: _Work, state: InvitationState) -> bool:
        """The release check: the claim hash recomputed from our salt and alias must be the one
        the escrow holds on-chain (and the row's own copy), and the terms the transfer's."""
        recomputed = claim_hash_of(item.invitation)
        stored = item.invitation.claim_hash.lower()
        if recomputed != state.claim_hash or "0x" + recomputed.hex() != stored:
            alerts.error(
                "invitation %s: the claim hash of its stored salt and alias is not the one the "
                "escrow holds on-chain: refusing to release it (the database row may have been "
                "altered)",
                item.invitation.invitation_id,
            )
            self._postpone([item], "claim hash differs from the chain's", MISMATCH_WAIT)
            return False
        terms = item.terms
        if (
            state.token.lower() != terms.token.lower()
            or state.sender.lower() != terms.sender.lower()
            or state.value_units != terms.value_units
            or state.deadline != terms.deadline
        ):
            alerts.error(
                "invitation %s: the escrow's record differs from the transfer's terms: "
                "refusing to release it",
                item.invitation.invitation_id,
            )
            self._postpone([item], "terms differ from the chain's", MISMATCH_WAIT)
            return False
        return True

    def _holders(
        self, invitations: Sequence[TransferInvitation]
    ) -> dict[tuple[str, str], list[tuple[str, str]]]:
        """(kind, alias) → the active users with a wallet who hold it verified."""
        emails = sorted({i.alias for i in invitations if i.alias_kind == "email"})
        phones = sorted({i.alias for i in invitations if i.alias_kind == "phone"})
        conditions = []
        if emails:
            # E-mails verified by a sign-in provider may be stored as the provider spelled them.
            conditions.append(
                and_(func.lower(User.email).in_(emails), User.email_verified.is_(True))
            )
        if phones:
            conditions.append(and_(User.phone.in_(phones), User.phone_verified.is_(True)))
        found: dict[tuple[str, str], list[tuple[str, str]]] = defaultdict(list)
        with self._sessions() as session:
            for user in session.scalars(
                select(User).where(
                    User.status == UserStatus.ACTIVE,
                    User.wallet_address.is_not(None),
                    or_(*conditions),
                )
            ):
                address = user.wallet_address or ""
                if user.email and user.email_verified and user.email.lower() in emails:
                    found[("email", user.email.lower())].append((user.id, address))
                if user.phone and user.phone_verified and user.phone in phones:
                    found[("phone", user.phone)].append((user.id, address))
        return found

    # -- 4. reclaim --------------------------------------------------------------------------
    async def _reclaim(self, chain_now: int) -> int:
        """Send expired invitations back to their senders."""
        work = self._read(
            TransferInvitation.status == InvitationStatus.OPEN,
            TransferInvitation.deadline <= chain_now,
        )
        if not work:
            return 0
        states = await self._states(work)
        requests: list[tuple[_Work, TxRequest, dict[str, Any]]] = []
        for item, state in zip(work, states, strict=True):
            if state is None or not state.is_open() or chain_now < state.deadline:
                continue
            data = "0x" + encode_reclaim(item.id_bytes).hex()
            requests.append((item, self._request(InvitationAction.RECLAIM, item, data), {}))
        return await self._send(requests, InvitationStatus.OPEN)

    # -- sending -----------------------------------------------------------------------------
    def _request(self, action: InvitationAction, item: _Work, data: str) -> TxRequest:
        return TxRequest(
            to=self.escrow,
            data=data,
            gas=self.settings.gas_limit,
            purpose=action_purpose(action, item.invitation.transfer_id),
        )

    async def _send(
        self,
        requests: Sequence[tuple[_Work, TxRequest, dict[str, Any]]],
        expected: InvitationStatus,
    ) -> int:
        """Simulate, record (with the invitations' action) and broadcast; refusals wait."""
        if not requests:
            return 0
        extra = {item.invitation.transfer_id: values for item, _, values in requests}
        recorded: set[str] = set()

        def record(session: Session, sent: Sequence[SentTx]) -> None:
            for tx in sent:
                transfer_id = _transfer_of(tx.request.purpose)
                action = tx.request.purpose[len(PURPOSE_PREFIX) :].split(":", 1)[0]
                if transfer_id is None:  # pragma: no cover - every request has one
                    continue
                result = session.execute(
                    update(TransferInvitation)
                    .where(
                        TransferInvitation.transfer_id == transfer_id,
                        TransferInvitation.action.is_(None),
                        TransferInvitation.status == expected,
                    )
                    .values(
                        action=InvitationAction(action),
                        action_tx_hash=tx.tx_hash,
                        attempts=TransferInvitation.attempts + 1,
                        next_attempt_at=None,
                        last_error=None,
                        **extra.get(transfer_id, {}),
                    )
                    .execution_options(synchronize_session=False)
                )
                if int(getattr(result, "rowcount", 0)) != 1:
                    raise _Stale(transfer_id)
                recorded.add(transfer_id)

        try:
            results = await self._sender.send_batch(
                [request for _, request, _ in requests], record=record
            )
        except _Stale as stale:
            log.info("invitations: %s changed meanwhile; its turn comes next round", stale)
            return 0
        sent = 0
        refused: list[tuple[_Work, str]] = []
        for (item, request, _), result in zip(requests, results, strict=True):
            if isinstance(result, SentTx):
                sent += 1
                log.info(
                    "invitation %s: %s sent (%s)",
                    item.invitation.invitation_id,
                    request.purpose.split(":", 1)[0],
                    result.tx_hash,
                )
            elif item.invitation.transfer_id not in recorded:
                # Refused by the simulation: nothing was signed. Why, and wait.
                refused.append((item, f"{result.code}: {result}"))
            # Recorded but refused by the node: tracking frees it from the dropped row.
        for item, reason in refused:
            log.warning("invitation %s: not sent: %s", item.invitation.invitation_id, reason)
            self._postpone([item], reason, timedelta(seconds=self.settings.retry_seconds))
        return sent

    def _postpone(self, items: Iterable[_Work], reason: str, wait: timedelta) -> None:
        with self._sessions.begin() as session:
            session.execute(
                update(TransferInvitation)
                .where(
                    TransferInvitation.transfer_id.in_([i.invitation.transfer_id for i in items]),
                    TransferInvitation.action.is_(None),
                )
                .values(next_attempt_at=self._now() + wait, last_error=reason[:300])
                .execution_options(synchronize_session=False)
            )

    # -- reading -----------------------------------------------------------------------------
    def _read(self, *conditions: Any) -> list[_Work]:
        """Due invitations (no action in flight, not waiting) of this chain's escrow."""
        now = self._now()
        with self._sessions() as session:
            rows = session.execute(
                select(TransferInvitation, Transfer)
                .join(Transfer, Transfer.id == TransferInvitation.transfer_id)
                .where(
                    TransferInvitation.chain_id == self.chain_id,
                    TransferInvitation.escrow.in_({self.escrow, self.escrow.lower()}),
                    TransferInvitation.action.is_(None),
                    or_(
                        TransferInvitation.next_attempt_at.is_(None),
                        TransferInvitation.next_attempt_at <= now,
                    ),
                    *conditions,
                )
                .order_by(TransferInvitation.deadline)
                .limit(BATCH)
            ).all()
        return [_Work(invitation, transfer) for invitation, transfer in rows]

    async def _states(self, work: Sequence[_Work]) -> list[InvitationState | None]:
        """The escrow's ``invitations(id)`` of each (one batch); ``None`` where it did not say."""
        answers = await self._rpc.batch(
            [
                Call(
                    "eth_call",
                    [
                        {"to": self.escrow, "data": "0x" + encode_get_invitation(i.id_bytes).hex()},
                        "latest",
                    ],
                )
                for i in work
            ]
        )
        states: list[InvitationState | None] = []
        for answer in answers:
            if isinstance(answer, RpcError) or not isinstance(answer, str) or len(answer) < 4:
                states.append(None)
            else:
                states.append(decode_invitation_state(bytes.fromhex(answer[2:])))
        return states

    # -- 5. telling people -------------------------------------------------------------------
    async def _notify(self) -> int:
        """Tell invited aliases their money waits, and senders how their invitations ended."""
        if self._mailer is None:
            return 0
        messages = await asyncio.to_thread(self._take_messages)
        for channel, to, subject, body, invitation_id in messages:
            try:
                await self._mailer.send(channel, to, subject, body)
            except Exception:  # a message must not stop the jobs; never log the address
                log.exception("invitations: could not send a message about %s", invitation_id)
        return len(messages)

    def _take_messages(self) -> list[tuple[str, str, str, str, str]]:
        """Mark and return the messages due (at most once each: marked before they are sent)."""
        out: list[tuple[str, str, str, str, str]] = []
        now = self._now()
        with self._sessions.begin() as session:
            session.connection(execution_options=_WRITE)
            rows = session.execute(
                select(TransferInvitation, Transfer, User)
                .join(Transfer, Transfer.id == TransferInvitation.transfer_id)
                .join(User, User.id == TransferInvitation.user_id)
                .where(
                    TransferInvitation.chain_id == self.chain_id,
                    or_(
                        and_(
                            TransferInvitation.status == InvitationStatus.OPEN,
                            TransferInvitation.invitee_notified_at.is_(None),
                        ),
                        and_(
                            TransferInvitation.status.in_(
                                (InvitationStatus.RELEASED, InvitationStatus.RECLAIMED)
                            ),
                            or_(
                                TransferInvitation.sender_notified.is_(None),
                                TransferInvitation.sender_notified != TransferInvitation.status,
                            ),
                        ),
                    ),
                )
                .limit(BATCH)
                .with_for_update(skip_locked=True, of=TransferInvitation)
            ).all()
            for invitation, transfer, sender in rows:
                amount = TokenAmount.from_units(
                    transfer.amount_units, transfer.decimals, transfer.symbol
                )
                shown = f"{amount.format(min_fraction_digits=2)} {transfer.symbol}"
                if invitation.status is InvitationStatus.OPEN:
                    invitation.invitee_notified_at = now
                    subject, body = invitee_message(
                        sender_display(sender.display_name),
                        shown,
                        self._link,
                        datetime.fromtimestamp(invitation.deadline, UTC),
                    )
                    channel = "email" if invitation.alias_kind == "email" else "sms"
                    out.append((channel, invitation.alias, subject, body, invitation.invitation_id))
                    continue
                invitation.sender_notified = invitation.status.value
                text = sender_message(invitation.status, invitation.alias, shown)
                if text is not None and sender.email and sender.email_verified:
                    out.append(("email", sender.email, *text, invitation.invitation_id))
        return out


async def _sleep_unless(stop: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), timeout=seconds)
