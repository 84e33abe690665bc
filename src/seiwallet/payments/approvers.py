"""Refund approvers: a staff member's own passkey approving refunds from the payout wallet.

Refunds are paid from the merchant's payout wallet, the owner's wallet, whose key is in the
signer; the signer signs only with an approval of one of the wallet's authenticators. So that a
manager or cashier can refund at the counter without the owner's phone, their own passkey is
added to the payout wallet as a **delegate** (``seiwallet.signer.policy``): the signer counts its
approval only for ``router.refund`` intents of the settlement token, up to a cap, and for nothing
else — not a transfer, not a larger refund, not a change to the wallet.

1. The staff member, on their phone (the Business tab), makes a passkey for the payout wallet
   (:meth:`RefundApproverService.begin` / :meth:`~RefundApproverService.finish`): a credential of
   its own, kept awaiting the owner. Nothing can approve with it yet.
2. The owner (the Team page) approves adding it with its scope — the cap is the staff member's
   refund limit at that moment (:meth:`~RefundApproverService.proposal`, then
   :meth:`~RefundApproverService.approve`): one approval of theirs covers the key *and* its scope,
   which the signer writes in one transaction, so the key never approves unscoped.
3. A refund the staff member asks for (within their role's limit, as before) is then approved by
   their own passkey (:meth:`~RefundApproverService.approver_for`): the API asks that passkey,
   the signer checks the scope.
4. The owner removes an approver with their passkey (:meth:`~RefundApproverService.revoke`).
   Removing someone from the team also ends it at once on the API side (they no longer act for
   the merchant); the Team page then offers removing the passkey from the signer too.

Only ``router.refund`` is delegated: a refund by the router goes to the payer the router
recorded. A refund of a payment made to a deposit address is an ``erc3009.transfer`` to an
address the API chose, which a delegated key could aim anywhere: those stay the owner's.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from seiwallet.accounts.models import User
from seiwallet.accounts.passkeys import PasskeyService
from seiwallet.accounts.sessions import SessionInfo
from seiwallet.db import SQLITE_BEGIN, as_utc
from seiwallet.errors import InvalidInput
from seiwallet.payments.errors import (
    ApproverNotAwaitingOwner,
    ApproverNotFound,
    NotPermitted,
    PayoutWalletNotHeld,
    RefundApprovalNotSetUp,
)
from seiwallet.payments.merchants import MerchantService
from seiwallet.payments.models import (
    ApproverStatus,
    Merchant,
    RefundApprover,
    StaffMember,
    StaffRole,
)
from seiwallet.payments.permissions import Permission, Principal
from seiwallet.signer.client import SignerClient
from seiwallet.signer.errors import AlreadyExists
from seiwallet.signer.service import action_digest
from seiwallet.transfers.services import TokenInfo

__all__ = ["DELEGATED_KINDS", "ApproverView", "Proposal", "RefundApproverService"]

#: What a refund approver's passkey may approve (see the module's last paragraph).
DELEGATED_KINDS: tuple[str, ...] = ("router.refund",)
_WRITE = {SQLITE_BEGIN: "IMMEDIATE"}


@dataclass(frozen=True)
class ApproverView:
    """A refund approver as the Team page and the Business tab show it."""

    id: str
    staff_id: str
    user_id: str
    name: str | None
    email: str | None
    role: str
    status: str
    #: The cap approved (or proposed to the owner), base units of ``symbol``.
    max_amount_units: int | None
    symbol: str
    decimals: int
    label: str
    created_at: datetime
    approved_at: datetime | None
    #: ``False`` once the person left the team: an active passkey of theirs approves nothing
    #: through the API any more, and the owner is shown it to remove from the wallet.
    staff_active: bool = True


@dataclass(frozen=True)
class Proposal:
    """What the owner approves: the signer's add of the passkey, with its scope."""

    approver_id: str
    wallet_id: str
    registration: dict[str, Any]
    #: ``action_digest("authenticator.add", registration)`` in hex: what their passkey signs.
    digest: str
    max_amount_units: int


class RefundApproverService:
    """Staff members' refund passkeys on the payout wallet: registered, approved, removed."""

    def __init__(
        self,
        sessions: sessionmaker[Session],
        signer: SignerClient,
        passkeys: PasskeyService,
        merchants: MerchantService,
        tokens: Mapping[str, TokenInfo],
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._sessions = sessions
        self._signer = signer
        self._passkeys = passkeys
        self._merchants = merchants
        self._tokens = {symbol.upper(): info for symbol, info in tokens.items()}
        self._clock = clock

    def _now(self) -> datetime:
        return datetime.fromtimestamp(self._clock(), UTC)

    # -- the staff member ------------------------------------------------------------------------
    def _payout_wallet(self, db: Session, principal: Principal) -> Merchant:
        merchant = db.get(Merchant, principal.merchant_id)
        if merchant is None:  # pragma: no cover - the principal was made from it
            raise PayoutWalletNotHeld
        if merchant.payout_wallet_id is None:
            raise PayoutWalletNotHeld
        return merchant

    def _check_staff(self, principal: Principal) -> None:
        principal.require(Permission.REFUNDS_CREATE)
        if principal.role is StaffRole.OWNER:
            raise InvalidInput("the owner approves refunds with their own wallet's passkey already")
        if principal.role is None or principal.user_id is None:
            raise NotPermitted("API key", "set up a refund passkey")

    def begin(self, principal: Principal, session: SessionInfo) -> dict[str, Any]:
        """WebAuthn options for the staff member's refund passkey on the payout wallet."""
        self._check_staff(principal)
        with self._sessions() as db:
            merchant = self._payout_wallet(db, principal)
            wallet_id, label = str(merchant.payout_wallet_id), _label(merchant)
        return self._passkeys.delegate_registration_options(session, wallet_id, label=label)

    def finish(
        self,
        principal: Principal,
        session: SessionInfo,
        credential: Mapping[str, Any],
        *,
        device: str | None = None,
    ) -> ApproverView:
        """Keep the new refund passkey, awaiting the owner (an older one awaiting is replaced).

        ``device`` names the phone it was made on ("iPhone"), so the owner knows which it is.
        """
        self._check_staff(principal)
        with self._sessions() as db:
            merchant = self._payout_wallet(db, principal)
            wallet_id, label = str(merchant.payout_wallet_id), _label(merchant)
            symbol = merchant.settlement_symbol
        if device and device.strip():
            label = f"{label} · {device.strip()[:30]}"
        registration = self._passkeys.register_delegate(session, wallet_id, credential, label=label)
        now = self._now()
        replaced: list[str] = []
        with self._sessions.begin() as db:
            db.connection(execution_options=_WRITE)
            staff = self._staff_row(db, principal.merchant_id, session.user_id)
            for older in db.scalars(
                select(RefundApprover).where(
                    RefundApprover.merchant_id == principal.merchant_id,
                    RefundApprover.user_id == session.user_id,
                    RefundApprover.status == ApproverStatus.AWAITING_OWNER,
                )
            ):
                older.status, older.revoked_at = ApproverStatus.REVOKED, now
                replaced.append(older.id)
            db.add(
                RefundApprover(
                    id=str(registration["id"]),
                    merchant_id=principal.merchant_id,
                    staff_id=staff.id,
                    user_id=session.user_id,
                    status=ApproverStatus.AWAITING_OWNER,
                    registration=json.dumps(registration, sort_keys=True),
                    symbol=symbol,
                    created_at=now,
                )
            )
        for approver_id in replaced:
            self._passkeys.delegate_removed(approver_id)
        found = self.mine(principal)
        assert found is not None
        return found

    def mine(self, principal: Principal) -> ApproverView | None:
        """The caller's refund passkey for this merchant (active, or awaiting the owner)."""
        if principal.user_id is None:
            return None
        views = self._views(principal.merchant_id, user_id=principal.user_id)
        return views[0] if views else None

    def approver_for(self, merchant_id: str, user_id: str) -> str:
        """The payout wallet whose delegated passkey ``user_id`` approves refunds with, or
        :class:`RefundApprovalNotSetUp`."""
        with self._sessions() as db:
            found = db.execute(
                select(RefundApprover.id, Merchant.payout_wallet_id)
                .join(Merchant, Merchant.id == RefundApprover.merchant_id)
                .where(
                    RefundApprover.merchant_id == merchant_id,
                    RefundApprover.user_id == user_id,
                    RefundApprover.status == ApproverStatus.ACTIVE,
                )
                .limit(1)
            ).first()
        if found is None or found.payout_wallet_id is None:
            raise RefundApprovalNotSetUp
        return str(found.payout_wallet_id)

    # -- the owner -------------------------------------------------------------------------------
    def approvers(self, principal: Principal) -> list[ApproverView]:
        """Every refund passkey of the team, active or awaiting the owner."""
        principal.require(Permission.STAFF_MANAGE)
        return self._views(principal.merchant_id)

    def _owner_merchant(self, db: Session, principal: Principal) -> Merchant:
        principal.require(Permission.STAFF_MANAGE)
        merchant = self._payout_wallet(db, principal)
        if principal.user_id is None or merchant.owner_user_id != principal.user_id:
            raise NotPermitted(str(principal.role or "API key"), "approve refund passkeys")
        return merchant

    def proposal(self, principal: Principal, approver_id: str) -> Proposal:
        """What the owner approves to add ``approver_id``; the cap is fixed here, at the staff
        member's refund limit now, so the approval and the add name the same scope."""
        with self._sessions.begin() as db:
            db.connection(execution_options=_WRITE)
            merchant = self._owner_merchant(db, principal)
            row = self._row(db, principal.merchant_id, approver_id)
            if row.status is not ApproverStatus.AWAITING_OWNER:
                raise ApproverNotAwaitingOwner(str(row.status))
            staff = db.get(StaffMember, row.staff_id)
            if staff is None or staff.revoked_at is not None:
                raise ApproverNotFound
            limit = self._merchants.principal_for_user(
                staff.user_id, merchant.id
            ).refund_limit_units
            if limit is None:  # pragma: no cover - only the owner has no limit
                raise InvalidInput("the owner approves refunds with their own passkey")
            row.max_amount_units = limit
            return self._proposal(merchant, row)

    def _proposal(self, merchant: Merchant, row: RefundApprover) -> Proposal:
        token = self._tokens.get(row.symbol.upper())
        if token is None or row.max_amount_units is None:
            raise InvalidInput(f"{row.symbol} is not a token this platform refunds in")
        registration = {
            **json.loads(row.registration),
            "scope": {
                "intents": list(DELEGATED_KINDS),
                "tokens": [
                    {
                        "chain_id": token.domain.chain_id,
                        "address": token.address,
                        "max_amount": str(row.max_amount_units),
                    }
                ],
            },
        }
        return Proposal(
            approver_id=row.id,
            wallet_id=str(merchant.payout_wallet_id),
            registration=registration,
            digest=action_digest("authenticator.add", registration).hex(),
            max_amount_units=row.max_amount_units,
        )

    async def approve(
        self, principal: Principal, approver_id: str, approvals: Sequence[Mapping[str, Any]]
    ) -> ApproverView:
        """Add the passkey to the payout wallet with its scope, on the owner's approval."""
        proposal = await asyncio.to_thread(self.pending_proposal, principal, approver_id)
        try:
            added = await self._signer.add_authenticator(
                proposal.wallet_id, proposal.registration, list(approvals)
            )
        except AlreadyExists:
            # Added by an earlier call that did not get to record it (a crash, a lost answer):
            # the signer has it, with the scope that call's approval covered.
            added = {"active_from": int(self._clock())}
        if int(added["active_from"]) > int(self._clock()) + 60:
            # Not approved after all (time-locked): do not show it as approving.
            raise InvalidInput(
                "your approval did not count for adding this refund passkey (it waits out the "
                "recovery time-lock instead): remove it and approve it again with your passkey"
            )
        await asyncio.to_thread(self._activate, principal.merchant_id, approver_id)
        return await asyncio.to_thread(self._view, principal.merchant_id, approver_id)

    def pending_proposal(self, principal: Principal, approver_id: str) -> Proposal:
        """The proposal :meth:`proposal` fixed, as the owner's approval must cover it."""
        with self._sessions() as db:
            merchant = self._owner_merchant(db, principal)
            row = self._row(db, principal.merchant_id, approver_id)
            if row.status is not ApproverStatus.AWAITING_OWNER:
                raise ApproverNotAwaitingOwner(str(row.status))
            if row.max_amount_units is None:
                raise InvalidInput(
                    "ask for the approval challenge first (approval-options): it fixes the limit"
                )
            return self._proposal(merchant, row)

    def _activate(self, merchant_id: str, approver_id: str) -> None:
        now = self._now()
        with self._sessions.begin() as db:
            db.connection(execution_options=_WRITE)
            db.execute(
                update(RefundApprover)
                .where(
                    RefundApprover.id == approver_id,
                    RefundApprover.merchant_id == merchant_id,
                    RefundApprover.status == ApproverStatus.AWAITING_OWNER,
                )
                .values(status=ApproverStatus.ACTIVE, approved_at=now)
                .execution_options(synchronize_session=False)
            )
        self._passkeys.delegate_added(approver_id, at=now)

    def removal_digest(self, principal: Principal, approver_id: str) -> tuple[str, str] | None:
        """(payout wallet, digest the owner approves) to remove an active approver from the
        signer; ``None`` if it is not in the signer (awaiting the owner: nothing to remove)."""
        with self._sessions() as db:
            merchant = self._owner_merchant(db, principal)
            row = self._row(db, principal.merchant_id, approver_id)
            if row.status is ApproverStatus.REVOKED:
                raise ApproverNotFound
            if row.status is ApproverStatus.AWAITING_OWNER:
                return None
            digest = action_digest("authenticator.remove", {"authenticator_id": row.id})
            return str(merchant.payout_wallet_id), digest.hex()

    async def revoke(
        self, principal: Principal, approver_id: str, approvals: Sequence[Mapping[str, Any]]
    ) -> None:
        """Remove a refund passkey: from the signer (the owner's approval) if it was added."""
        removal = await asyncio.to_thread(self.removal_digest, principal, approver_id)
        if removal is not None:
            if not approvals:
                raise InvalidInput("removing an active refund passkey needs your approval")
            await self._signer.remove_authenticator(removal[0], approver_id, list(approvals))
        await asyncio.to_thread(self._revoked, principal.merchant_id, approver_id)

    def _revoked(self, merchant_id: str, approver_id: str) -> None:
        with self._sessions.begin() as db:
            db.connection(execution_options=_WRITE)
            db.execute(
                update(RefundApprover)
                .where(RefundApprover.id == approver_id, RefundApprover.merchant_id == merchant_id)
                .values(status=ApproverStatus.REVOKED, revoked_at=self._now())
                .execution_options(synchronize_session=False)
            )
        self._passkeys.delegate_removed(approver_id)

    # -- rows ------------------------------------------------------------------------------------
    @staticmethod
    def _staff_row(db: Session, merchant_id: str, user_id: str) -> StaffMember:
        staff = db.scalars(
            select(StaffMember).where(
                StaffMember.merchant_id == merchant_id,
                StaffMember.user_id == user_id,
                StaffMember.revoked_at.is_(None),
            )
        ).first()
        if staff is None:  # pragma: no cover - the principal was made from it
            raise ApproverNotFound
        return staff

    @staticmethod
    def _row(db: Session, merchant_id: str, approver_id: str) -> RefundApprover:
        row = db.get(RefundApprover, approver_id)
        if row is None or row.merchant_id != merchant_id:
            raise ApproverNotFound
        return row

    def _view(self, merchant_id: str, approver_id: str) -> ApproverView:
        found = self._views(merchant_id, approver_id=approver_id, include_revoked=True)
        if not found:  # pragma: no cover - it was just written
            raise ApproverNotFound
        return found[0]

    def _views(
        self,
        merchant_id: str,
        *,
        user_id: str | None = None,
        approver_id: str | None = None,
        include_revoked: bool = False,
    ) -> list[ApproverView]:
        query = (
            select(RefundApprover, StaffMember, User)
            .join(StaffMember, StaffMember.id == RefundApprover.staff_id)
            .join(User, User.id == RefundApprover.user_id)
            .where(RefundApprover.merchant_id == merchant_id)
            .order_by(RefundApprover.created_at.desc())
        )
        if user_id is not None:
            query = query.where(RefundApprover.user_id == user_id)
        if approver_id is not None:
            query = query.where(RefundApprover.id == approver_id)
        if not include_revoked:
            # A passkey still on the wallet stays listed after its holder left the team, so
            # the owner can remove it; one that never reached the wallet goes with them.
            query = query.where(
                RefundApprover.status != ApproverStatus.REVOKED,
                (StaffMember.revoked_at.is_(None))
                | (RefundApprover.status == ApproverStatus.ACTIVE),
            )
        with self._sessions() as db:
            rows = db.execute(query).all()
        views = []
        for row, staff, user in rows:
            token = self._tokens.get(row.symbol.upper())
            views.append(
                ApproverView(
                    id=row.id,
                    staff_id=staff.id,
                    user_id=user.id,
                    name=user.display_name,
                    email=user.email,
                    role=str(staff.role),
                    status=str(row.status),
                    max_amount_units=row.max_amount_units,
                    symbol=row.symbol,
                    decimals=token.decimals if token is not None else 6,
                    label=str(json.loads(row.registration).get("label", "")),
                    created_at=as_utc(row.created_at),
                    approved_at=as_utc(row.approved_at) if row.approved_at else None,
                    staff_active=staff.revoked_at is None,
                )
            )
        return views


def _label(merchant: Merchant) -> str:
    return f"{merchant.name[:60]} refunds"
