"""The follower's handler for transfers: the token's ``AuthorizationUsed`` confirms a transfer.

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

from seiwallet.chain.models import ChainEvent
from seiwallet.transfers.models import TRANSFER_TRANSITIONS, Transfer, TransferStatus

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
