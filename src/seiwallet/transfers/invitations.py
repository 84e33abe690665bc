"""Invitations: money sent to a phone number or e-mail that has no wallet yet.

Sending to a well-formed alias that no user has verified makes an **invitation transfer**: an
ordinary ``erc3009.transfer`` intent whose ``to`` is the ``InviteEscrow`` and whose nonce is the
invitation id (``chain.escrow.invitation_nonce``), committing to the token, the sender, the
value, the claim hash of a random salt and the alias, and the deadline. The owner approves it as
any transfer; the relayer submits it as ``escrow.deposit``; the worker's
:class:`~seiwallet.transfers.tasks.InvitationWorker` releases it to whoever proves the alias
(after checking the claim hash *on-chain*), or reclaims it for the sender after the deadline.

This module holds what both the API and the worker need: the terms, the per-sender limit on new
aliases, the views and the words of the messages. The alias and the salt never leave our
database; the chain sees only the claim hash.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Final

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from seiwallet.chain.escrow import Invitation, claim_hash, invitation_nonce, new_claim_salt
from seiwallet.config import InvitationSettings
from seiwallet.db import as_utc
from seiwallet.transfers.errors import InvitationRateLimited
from seiwallet.transfers.models import InvitationStatus, TransferInvitation

#: Where the invited person signs up (the welcome page of the wallet app).
SIGN_UP_PATH: Final = "/"


@dataclass(frozen=True)
class Invitee:
    """A well-formed alias that no user has verified: sending to it makes an invitation."""

    kind: str  # "email" | "phone"
    #: The alias in its one stored form (``accounts.aliases.normalise``).
    alias: str


@dataclass(frozen=True)
class InvitationPolicy:
    """How the API makes invitations: the escrow, the deadline and the per-sender limit."""

    escrow: str
    deadline_seconds: int
    new_aliases_per_window: int
    window_seconds: float

    @classmethod
    def from_settings(cls, settings: InvitationSettings, escrow: str) -> InvitationPolicy:
        return cls(
            escrow=escrow,
            deadline_seconds=int(settings.deadline_days * 86_400),
            new_aliases_per_window=settings.new_aliases_per_window,
            window_seconds=settings.limit_window_hours * 3600,
        )


@dataclass(frozen=True)
class InvitationTerms:
    """A new invitation's terms, its salt and the EIP-3009 nonce (= the invitation id)."""

    invitation: Invitation
    salt: bytes
    nonce: str
    valid_before: int


def invitation_terms(
    policy: InvitationPolicy,
    *,
    token: str,
    sender: str,
    value_units: int,
    alias: str,
    chain_id: int,
    now: int,
    validity: int,
) -> InvitationTerms:
    """Draw a salt and build the terms the sender signs (``validBefore`` ≤ the deadline)."""
    salt = new_claim_salt()
    deadline = now + policy.deadline_seconds
    invitation = Invitation(
        token=token,
        sender=sender,
        value_units=value_units,
        claim_hash=claim_hash(salt, alias),
        deadline=deadline,
    )
    nonce = invitation_nonce(invitation, escrow=policy.escrow, chain_id=chain_id)
    return InvitationTerms(
        invitation=invitation,
        salt=salt,
        nonce="0x" + nonce.hex(),
        valid_before=min(now + validity, deadline),
    )


def check_new_alias_limit(
    db: Session, policy: InvitationPolicy, *, user_id: str, alias: str, now: datetime
) -> None:
    """Refuse a new invitation if this sender invited too many *other* aliases lately.

    Sending again to an alias this sender invited before tells them nothing new and is never
    limited. Run inside the transaction that inserts the invitation, with the sender's row
    locked, so two concurrent requests cannot both take the last place.
    """
    before = db.scalar(
        select(TransferInvitation.transfer_id)
        .where(TransferInvitation.user_id == user_id, TransferInvitation.alias == alias)
        .limit(1)
    )
    if before is not None:
        return
    since = now - timedelta(seconds=policy.window_seconds)
    recent = db.execute(
        select(TransferInvitation.alias, func.min(TransferInvitation.created_at))
        .where(TransferInvitation.user_id == user_id, TransferInvitation.created_at > since)
        .group_by(TransferInvitation.alias)
    ).all()
    if len(recent) < policy.new_aliases_per_window:
        return
    # A place frees when the oldest of the recent aliases leaves the window.
    oldest = min(as_utc(first) for _, first in recent)
    wait = (oldest + timedelta(seconds=policy.window_seconds) - now).total_seconds()
    raise InvitationRateLimited(max(1, math.ceil(wait)), policy.new_aliases_per_window)


@dataclass(frozen=True)
class InvitationView:
    """An invitation as its transfer's readers see it (never the salt)."""

    status: InvitationStatus
    alias_kind: str
    alias: str
    escrow: str
    invitation_id: str
    claim_hash: str
    deadline: datetime
    recipient_address: str | None
    settled_tx_hash: str | None
    settled_at: datetime | None

    @classmethod
    def of(cls, row: TransferInvitation) -> InvitationView:
        return cls(
            status=row.status,
            alias_kind=row.alias_kind,
            alias=row.alias,
            escrow=row.escrow,
            invitation_id=row.invitation_id,
            claim_hash=row.claim_hash,
            deadline=datetime.fromtimestamp(row.deadline, UTC),
            recipient_address=row.recipient_address,
            settled_tx_hash=row.settled_tx_hash,
            settled_at=as_utc(row.settled_at) if row.settled_at else None,
        )


def claim_hash_of(row: TransferInvitation) -> bytes:
    """The claim hash recomputed from the row's salt and alias (not read from the row)."""
    return claim_hash(bytes.fromhex(row.salt.removeprefix("0x")), row.alias)


# -- messages -----------------------------------------------------------------------------------
# E-mails leave in English, as the accounts domain's security e-mails do; the app's pages show
# the same facts in the reader's language.


def invitee_message(sender: str, amount: str, link: str, deadline: datetime) -> tuple[str, str]:
    """What the invited alias receives: who sent how much, and where to sign up. Nothing else:
    no note, no address, no amount in another currency."""
    return (
        f"{sender} sent you {amount}",
        f"{sender} sent you {amount} with seiwallet. To receive it, sign up at {link} "
        f"with this address or phone number before {deadline:%d %B %Y} (UTC); "
        "after that the money goes back to the sender.",
    )


def sender_message(status: InvitationStatus, alias: str, amount: str) -> tuple[str, str] | None:
    """What the sender receives when an invitation settles (``None`` for other states)."""
    if status is InvitationStatus.RELEASED:
        return (
            f"{alias} received your {amount}",
            f"{alias} joined seiwallet and received the {amount} you sent them.",
        )
    if status is InvitationStatus.RECLAIMED:
        return (
            f"Your {amount} came back",
            f"{alias} did not join seiwallet in time, so the {amount} you sent them is back "
            "in your wallet.",
        )
    return None


def sender_display(display_name: str | None) -> str:
    """How the invited person is told who sent the money: the sender's name, never an address."""
    name = " ".join((display_name or "").split())
    return name[:80] if name else "A seiwallet user"
