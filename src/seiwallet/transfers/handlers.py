"""The follower's handlers for transfers: the token's ``AuthorizationUsed`` confirms a transfer;
the invite escrow's events move an invitation (:class:`InvitationEventHandler`).

It runs inside the follower's database transaction, so a confirmation is written together with
the event and the checkpoint, and a reorganisation that removes the event takes the confirmation
back (``revert``). Both are idempotent, and events of nonces we do not know are ignored.

A transfer is matched on (chain, token = the event's contract, nonce) **and** the authorizer:
EIP-3009 nonces are per authorizer, so anyone may use the same 32 bytes for an authorization of
their own; matching the nonce alone would let a stranger "confirm" one of our transfers.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from seiwallet.accounts.models import User, UserStatus
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


class TransferEventHandler:
    """Applies ``AuthorizationUsed`` to the matching transfer (follower :class:`EventHandler`)."""

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
        return find_transfer(
            session,
            chain_id=event.chain_id,
            token=event.contract,
            nonce=event.key,
            authorizer=str(event.args.get("authorizer", "")),
        )


INVITATION_CREATED = "InvitationCreated"
INVITATION_CLAIMED = "InvitationClaimed"
INVITATION_RECLAIMED = "InvitationReclaimed"
_INVITATION_EVENTS = frozenset({INVITATION_CREATED, INVITATION_CLAIMED, INVITATION_RECLAIMED})
_SETTLED_BY = {
    INVITATION_CLAIMED: InvitationStatus.RELEASED,
    INVITATION_RECLAIMED: InvitationStatus.RECLAIMED,
}


class InvitationEventHandler:
    """Applies the invite escrow's events to the invitation rows (follower :class:`EventHandler`).

    ``InvitationCreated`` opens an invitation (a deposit, or the releaser's ``register`` of a
    front-run one); ``InvitationClaimed`` marks it released and makes the transfer visible to
    the user whose wallet was paid; ``InvitationReclaimed`` marks it returned. Events of another
    contract than the escrow the invitation was made for are ignored, and so are events that
    contradict the invitation's terms (logged on ``seiwallet.alerts``: the id commits to them,
    so that would be a bug or a forged row). Both directions are idempotent.
    """

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
            transfer = session.get(Transfer, row.transfer_id, with_for_update=True)
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
        transfer = session.get(Transfer, row.transfer_id, with_for_update=True)
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
    return session.scalars(
        select(User.id).where(
            User.wallet_address.in_({address, address.lower()}),
            User.status == UserStatus.ACTIVE,
        )
    ).first()
