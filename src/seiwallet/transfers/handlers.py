"""The follower's handlers for transfers: the token's ``AuthorizationUsed`` confirms a transfer;
the invite escrow's events move an invitation (:class:`InvitationEventHandler`).

It runs inside the follower's database transaction, so a confirmation is written together with
the event and the checkpoint, and a reorganisation that removes the event takes the confirmation
back (``revert``). Both are idempotent, and events of nonces we do not know are ignored.

A transfer is matched on (chain, token = the event's contract, nonce) **and** the authorizer:
EIP-3009 nonces are per authorizer, so anyone may use the same 32 bytes for an authorization of
their own; matching the nonce alone would let a stranger "confirm" one of our transfers.

Both handlers have the follower's batch hooks (``BatchEventHandler``): a range's transfers (or
invitations) are locked in one query per token and chunk of nonces (:func:`load_transfers`)
before its events are applied, instead of one query per event.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from seiwallet.accounts.models import User, UserStatus
from seiwallet.chain.follower import batch_cache, chunked, locked_in
from seiwallet.chain.models import ChainEvent
from seiwallet.transfers.models import (
    INVITATION_TRANSITIONS,
    TRANSFER_TRANSITIONS,
    InvitationAction,
    InvitationStatus,
    Transfer,
    TransferInvitation,
    TransferStatus,
)

log = logging.getLogger(__name__)
alerts = logging.getLogger("seiwallet.alerts")

AUTHORIZATION_USED = "AuthorizationUsed"


def find_transfer(
    session: Session, *, chain_id: int, token: str, nonce: str, authorizer: str, lock: bool = True
) -> Transfer | None:
    """The transfer an EIP-3009 (token, authorizer, nonce) belongs to, locked for update."""
    # Addresses may be stored checksummed or lower-case and nonces are lower-case hex: match
    # both spellings of the token through the (chain, token, nonce) unique index.
    query = select(Transfer).where(
        Transfer.chain_id == chain_id,
        Transfer.token.in_({token, token.lower()}),
        Transfer.nonce == nonce.lower(),
    )
    if lock:
        query = query.with_for_update()
    transfer = session.scalars(query).one_or_none()
    if transfer is None or transfer.from_address.lower() != authorizer.lower():
        return None
    return transfer


#: (chain, token in lower case, nonce) of an EIP-3009 authorization.
TransferKey = tuple[int, str, str]


def load_transfers(
    session: Session, events: Iterable[ChainEvent], *, lock: bool = True
) -> dict[TransferKey, list[Transfer]]:
    """:func:`find_transfer` for all the ``AuthorizationUsed`` of ``events`` at once: every key
    asked for, with the transfers stored under it (normally none or one; the authorizer is for
    the caller to check). One query per token and :func:`~seiwallet.chain.follower.chunked`
    list of nonces, through the same (chain, token, nonce) unique index, rows locked in id
    order (as the relayer locks them) when ``lock``."""
    wanted: dict[tuple[int, str], tuple[set[str], list[str]]] = {}
    for event in events:
        if event.name != AUTHORIZATION_USED or not event.key:
            continue
        spellings, nonces = wanted.setdefault((event.chain_id, event.contract.lower()), (set(), []))
        spellings.update((event.contract, event.contract.lower()))
        nonces.append(event.key.lower())
    found: dict[TransferKey, list[Transfer]] = {}
    for (chain_id, token), (spellings, nonces) in wanted.items():
        for nonce in nonces:
            found[(chain_id, token, nonce)] = []
        for chunk in chunked(nonces):
            query = (
                select(Transfer)
                .where(
                    Transfer.chain_id == chain_id,
                    Transfer.token.in_(spellings),
                    Transfer.nonce.in_(chunk),
                )
                .order_by(Transfer.id)
            )
            if lock:
                query = query.with_for_update()
            for transfer in session.scalars(query):
                found[(chain_id, token, transfer.nonce)].append(transfer)
    return found


def confirm(session: Session, transfer: Transfer, *, block_number: int, tx_hash: str) -> bool:
    """Mark a transfer confirmed in ``block_number``; ``False`` if its state does not allow it."""
    if transfer.status == TransferStatus.CONFIRMED:
        return False
    if TransferStatus.CONFIRMED not in TRANSFER_TRANSITIONS[transfer.status]:
        # The money moved although we had given the transfer up: someone submitted its
        # authorization after we failed it. An operator must look (and the user be told).
        alerts.error(
            "transfer %s is %s but its authorization was used on-chain in block %d (tx %s)",
            transfer.id,
            transfer.status.value,
            block_number,
            tx_hash,
        )
        return False
    transfer.status = TransferStatus.CONFIRMED
    transfer.block_number = block_number
    transfer.confirmed_at = datetime.now(UTC)
    transfer.next_attempt_at = None
    transfer.delay_reason = None
    return True


def applied_authorization_event(
    session: Session, *, chain_id: int, token: str, nonce: str, authorizer: str
) -> ChainEvent | None:
    """The applied ``AuthorizationUsed`` event of an authorization, if the follower has one."""
    events = session.scalars(
        select(ChainEvent).where(
            ChainEvent.chain_id == chain_id,
            ChainEvent.name == AUTHORIZATION_USED,
            ChainEvent.key == nonce.lower(),
        )
    ).all()
    for event in events:
        if (
            event.contract.lower() == token.lower()
            and str(event.args.get("authorizer", "")).lower() == authorizer.lower()
        ):
            return event
    return None


_TRANSFERS = "transfers.transfers"


class TransferEventHandler:
    """Applies ``AuthorizationUsed`` to the matching transfer (follower ``BatchEventHandler``)."""

    def prepare(self, session: Session, events: Sequence[ChainEvent]) -> None:
        batch_cache(session)[_TRANSFERS] = load_transfers(session, events)

    prepare_revert = prepare

    def apply(self, session: Session, event: ChainEvent) -> None:
        transfer = self._transfer(session, event)
        if transfer is not None and confirm(
            session, transfer, block_number=event.block_number, tx_hash=event.transaction_hash
        ):
            log.debug("transfer %s confirmed in block %d", transfer.id, event.block_number)

    def revert(self, session: Session, event: ChainEvent) -> None:
        transfer = self._transfer(session, event)
        if transfer is None or transfer.status != TransferStatus.CONFIRMED:
            return
        # Back to "submitted": the transaction may be mined again on the new branch (the event
        # is then applied again) or be gone, which the relayer finds and resubmits.
        transfer.status = TransferStatus.SUBMITTED
        transfer.block_number = None
        transfer.confirmed_at = None
        log.warning(
            "transfer %s: its confirmation in block %d left the canonical chain",
            transfer.id,
            event.block_number,
        )

    @staticmethod
    def _transfer(session: Session, event: ChainEvent) -> Transfer | None:
        if event.name != AUTHORIZATION_USED or not event.key:
            return None
        authorizer = str(event.args.get("authorizer", ""))
        loaded = batch_cache(session).get(_TRANSFERS)
        if isinstance(loaded, dict):
            found = loaded.get((event.chain_id, event.contract.lower(), event.key.lower()))
            if found is not None and len(found) <= 1:
                transfer: Transfer | None = found[0] if found else None
                if transfer is None or transfer.from_address.lower() != authorizer.lower():
                    return None
                return transfer
        # Not prepared (or two spellings of one token stored: find_transfer refuses that).
        return find_transfer(
            session,
            chain_id=event.chain_id,
            token=event.contract,
            nonce=event.key,
            authorizer=authorizer,
        )


INVITATION_CREATED = "InvitationCreated"
INVITATION_CLAIMED = "InvitationClaimed"
INVITATION_RECLAIMED = "InvitationReclaimed"
_INVITATION_EVENTS = frozenset({INVITATION_CREATED, INVITATION_CLAIMED, INVITATION_RECLAIMED})
_SETTLED_BY = {
    INVITATION_CLAIMED: InvitationStatus.RELEASED,
    INVITATION_RECLAIMED: InvitationStatus.RECLAIMED,
}


@dataclass
class _Invitations:
    """What :meth:`InvitationEventHandler.prepare` loaded for a range."""

    #: (chain, invitation id) → the invitation (locked), ``None`` if we have none.
    rows: dict[tuple[int, str], TransferInvitation | None] = field(default_factory=dict)
    #: Ids of the invitations' transfers locked for the range (in the identity map from then on).
    locked: set[str] = field(default_factory=set)
    #: Those transfers and the ones read for creations, held here: the session's identity map
    #: keeps only weak references, so rows loaded and dropped would be read again per event.
    transfers: list[Transfer] = field(default_factory=list)
    #: Addresses paid by claims, as the events spell them → their active user, if any.
    users: dict[str, str | None] = field(default_factory=dict)


_INVITATIONS = "transfers.invitations"


class InvitationEventHandler:
    """Applies the invite escrow's events to the invitation rows (follower ``BatchEventHandler``).

    ``InvitationCreated`` opens an invitation (a deposit, or the releaser's ``register`` of a
    front-run one); ``InvitationClaimed`` marks it released and makes the transfer visible to
    the user whose wallet was paid; ``InvitationReclaimed`` marks it returned. Events of another
    contract than the escrow the invitation was made for are ignored, and so are events that
    contradict the invitation's terms (logged on ``seiwallet.alerts``: the id commits to them,
    so that would be a bug or a forged row). Both directions are idempotent.
    """

    def prepare(self, session: Session, events: Sequence[ChainEvent]) -> None:
        batch_cache(session)[_INVITATIONS] = self._load(session, events, reverting=False)

    def prepare_revert(self, session: Session, events: Sequence[ChainEvent]) -> None:
        batch_cache(session)[_INVITATIONS] = self._load(session, events, reverting=True)

    @staticmethod
    def _load(session: Session, events: Sequence[ChainEvent], *, reverting: bool) -> _Invitations:
        """The range's invitations (locked, as :meth:`_invitation` locks them), then the
        transfers a claim or reclaim may update (locked) and those whose terms a creation is
        checked against, then the users the claims paid: one query each (per chunk)."""
        mine = [e for e in events if e.name in _INVITATION_EVENTS and e.key]
        loaded = _Invitations()
        for chain_id in dict.fromkeys(e.chain_id for e in mine):
            ids = [e.key.lower() for e in mine if e.chain_id == chain_id and e.key]
            for key in ids:
                loaded.rows[(chain_id, key)] = None
            for row in locked_in(
                session,
                TransferInvitation,
                TransferInvitation.invitation_id,
                ids,
                where=[TransferInvitation.chain_id == chain_id],
                order_by=TransferInvitation.transfer_id,
            ):
                loaded.rows[(chain_id, row.invitation_id)] = row
        ours: list[tuple[ChainEvent, TransferInvitation]] = []
        for event in mine:
            found = loaded.rows.get((event.chain_id, str(event.key).lower()))
            if found is not None and found.escrow.lower() == event.contract.lower():
                ours.append((event, found))
        settling = [row.transfer_id for event, row in ours if event.name != INVITATION_CREATED]
        for chunk in chunked(settling):
            query = select(Transfer).where(Transfer.id.in_(chunk)).order_by(Transfer.id)
            rows = list(session.scalars(query.with_for_update()))
            loaded.transfers.extend(rows)
            loaded.locked.update(t.id for t in rows)
        if reverting:
            return loaded
        # Read (into the identity map, unlocked as _same_terms reads them) for the creations.
        created = [row.transfer_id for event, row in ours if event.name == INVITATION_CREATED]
        for chunk in chunked(t for t in created if t not in loaded.locked):
            loaded.transfers.extend(session.scalars(select(Transfer).where(Transfer.id.in_(chunk))))
        paid = [
            str(event.args.get("to", "")) for event, _ in ours if event.name == INVITATION_CLAIMED
        ]
        wallets: dict[str, str] = {}
        for chunk in chunked(
            spelling for address in paid for spelling in (address, address.lower())
        ):
            for user_id, wallet in session.execute(
                select(User.id, User.wallet_address).where(
                    User.wallet_address.in_(chunk), User.status == UserStatus.ACTIVE
                )
            ):
                wallets.setdefault(str(wallet), user_id)
        for address in paid:
            loaded.users[address] = wallets.get(address) or wallets.get(address.lower())
        return loaded

    def apply(self, session: Session, event: ChainEvent) -> None:
        row = self._invitation(session, event)
        if row is None:
            return
        if event.name == INVITATION_CREATED:
            if not _same_terms(session, row, event):
                return
            if row.status is InvitationStatus.PENDING:
                row.status = InvitationStatus.OPEN
                row.created_tx_hash = event.transaction_hash
                if row.action is InvitationAction.REGISTER:
                    row.action, row.action_tx_hash = None, None
                log.debug("invitation %s open (block %d)", row.invitation_id, event.block_number)
            return
        settled = _SETTLED_BY[event.name]
        if row.status is settled:
            return
        if settled not in INVITATION_TRANSITIONS[row.status]:
            alerts.error(
                "invitation %s is %s but the escrow says %s in block %d (tx %s)",
                row.invitation_id,
                row.status.value,
                event.name,
                event.block_number,
                event.transaction_hash,
            )
            return
        row.status = settled
        row.settled_tx_hash = event.transaction_hash
        row.settled_at = datetime.now(UTC)
        row.action, row.action_tx_hash, row.next_attempt_at = None, None, None
        if settled is InvitationStatus.RELEASED:
            paid = str(event.args.get("to", ""))
            if row.recipient_address is None or row.recipient_address.lower() != paid.lower():
                row.recipient_address = paid
                row.recipient_user_id = _user_at(session, paid)
            transfer = _locked_transfer(session, row.transfer_id)
            if transfer is not None:
                # The money reached them: the transfer shows in their history from now on.
                transfer.recipient_user_id = row.recipient_user_id
        log.debug("invitation %s %s (block %d)", row.invitation_id, settled, event.block_number)

    def revert(self, session: Session, event: ChainEvent) -> None:
        row = self._invitation(session, event)
        if row is None:
            return
        if event.name == INVITATION_CREATED:
            if row.status is InvitationStatus.OPEN:
                row.status = InvitationStatus.PENDING
                row.created_tx_hash = None
            return
        if row.status is not _SETTLED_BY[event.name]:
            return
        row.status = InvitationStatus.OPEN
        row.settled_tx_hash = None
        row.settled_at = None
        transfer = _locked_transfer(session, row.transfer_id)
        if transfer is not None and event.name == INVITATION_CLAIMED:
            transfer.recipient_user_id = None
        log.warning(
            "invitation %s: its %s in block %d left the canonical chain",
            row.invitation_id,
            event.name,
            event.block_number,
        )

    @staticmethod
    def _invitation(session: Session, event: ChainEvent) -> TransferInvitation | None:
        if event.name not in _INVITATION_EVENTS or not event.key:
            return None
        loaded = _prepared_invitations(session)
        key = (event.chain_id, event.key.lower())
        if loaded is not None and key in loaded.rows:
            row: TransferInvitation | None = loaded.rows[key]
        else:
            row = session.scalars(
                select(TransferInvitation)
                .where(
                    TransferInvitation.chain_id == event.chain_id,
                    TransferInvitation.invitation_id == event.key.lower(),
                )
                .with_for_update()
            ).one_or_none()
        if row is None or row.escrow.lower() != event.contract.lower():
            return None
        return row


def _prepared_invitations(session: Session) -> _Invitations | None:
    loaded = batch_cache(session).get(_INVITATIONS)
    return loaded if isinstance(loaded, _Invitations) else None


def _locked_transfer(session: Session, transfer_id: str) -> Transfer | None:
    """An invitation's transfer, locked: from the identity map if the range's batch locked it."""
    loaded = _prepared_invitations(session)
    if loaded is not None and transfer_id in loaded.locked:
        return session.get(Transfer, transfer_id)
    return session.get(Transfer, transfer_id, with_for_update=True)


def _same_terms(session: Session, row: TransferInvitation, event: ChainEvent) -> bool:
    """Whether an ``InvitationCreated`` names the terms the invitation was made with."""
    transfer = session.get(Transfer, row.transfer_id)
    args = event.args
    same = (
        transfer is not None
        and str(args.get("from", "")).lower() == transfer.from_address.lower()
        and str(args.get("token", "")).lower() == transfer.token.lower()
        and str(args.get("value", "")) == str(transfer.amount_units)
        and str(args.get("claimHash", "")).lower() == row.claim_hash.lower()
        and str(args.get("deadline", "")) == str(row.deadline)
    )
    if not same:
        alerts.error(
            "invitation %s: InvitationCreated in tx %s does not match the stored terms",
            row.invitation_id,
            event.transaction_hash,
        )
    return same


def _user_at(session: Session, address: str) -> str | None:
    """The active user whose wallet is ``address``, if any."""
    loaded = _prepared_invitations(session)
    if loaded is not None and address in loaded.users:
        return loaded.users[address]
    return session.scalars(
        select(User.id).where(
            User.wallet_address.in_({address, address.lower()}),
            User.status == UserStatus.ACTIVE,
        )
    ).first()
