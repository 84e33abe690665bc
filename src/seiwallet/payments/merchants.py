"""Merchants, their stores, terminals and staff, and who may act for them (:class:`Principal`).

A signed-in user becomes a merchant: the merchant's payout wallet is, by default, their own
wallet (so refunds can be approved with their passkey) and they are its ``owner``. The owner
adds stores (priced in a currency), terminals (the counters' devices) and staff (a user of the
platform, found by verified e-mail, in a role). Another merchant's store is answered exactly
like a store that does not exist.
"""

from __future__ import annotations

import asyncio
import re
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Final
from urllib.parse import urlsplit

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from seiwallet.accounts.models import User, UserStatus
from seiwallet.addresses import parse_evm_address
from seiwallet.db import as_utc
from seiwallet.errors import InvalidInput
from seiwallet.payments.errors import (
    AlreadyMerchant,
    MerchantNotFound,
    StaffNotFound,
    StaffUserUnknown,
    StoreNotFound,
    TerminalNotFound,
    UnsupportedSettlementToken,
)
from seiwallet.payments.models import (
    ApproverStatus,
    Merchant,
    MerchantStatus,
    RefundApprover,
    StaffMember,
    StaffRole,
    Store,
    Terminal,
)
from seiwallet.payments.permissions import ROLE_PERMISSIONS, Permission, Principal

_COUNTRY: Final = re.compile(r"^[A-Z]{2}$")
_CURRENCY: Final = re.compile(r"^[A-Z]{3}$")


def _clean(text: str, name: str, limit: int, *, required: bool = True) -> str:
    value = " ".join(text.split())
    if required and not value:
        raise InvalidInput(f"{name} cannot be empty")
    if len(value) > limit:
        raise InvalidInput(f"{name} is at most {limit} characters")
    return value


@dataclass(frozen=True)
class MerchantOwner:
    """The signed-in user becoming a merchant: their id, wallet and its address."""

    user_id: str
    wallet_id: str
    wallet_address: str


@dataclass(frozen=True)
class MerchantView:
    id: str
    name: str
    payout_address: str
    payout_is_own_wallet: bool
    settlement_token: str
    fee_bps: int
    status: str
    role: str | None
    created_at: datetime


@dataclass(frozen=True)
class StoreView:
    id: str
    merchant_id: str
    name: str
    address: str
    country: str
    currency: str
    logo_url: str | None
    created_at: datetime

    @classmethod
    def of(cls, row: Store) -> StoreView:
        return cls(
            row.id,
            row.merchant_id,
            row.name,
            row.address,
            row.country,
            row.currency,
            row.logo_url,
            as_utc(row.created_at),
        )


@dataclass(frozen=True)
class TerminalView:
    id: str
    store_id: str
    name: str
    created_at: datetime
    revoked: bool


@dataclass(frozen=True)
class StaffView:
    id: str
    user_id: str
    name: str | None
    email: str | None
    role: str
    store_id: str | None
    refund_limit_units: int | None
    created_at: datetime


class MerchantService:
    """Merchant accounts, stores, terminals, staff; and the principal of a request."""

    def __init__(
        self,
        sessions: sessionmaker[Session],
        *,
        settlement_tokens: Mapping[str, int],
        fee_bps: int,
        manager_refund_limit: Decimal = Decimal(500),
        cashier_refund_limit: Decimal = Decimal(20),
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._sessions = sessions
        #: Settlement token symbol → decimals.
        self.settlement_tokens = {k.upper(): v for k, v in settlement_tokens.items()}
        self.fee_bps = fee_bps
        self._limits = {
            StaffRole.MANAGER: manager_refund_limit,
            StaffRole.CASHIER: cashier_refund_limit,
        }
        self._clock = clock

    def _now(self) -> datetime:
        return datetime.fromtimestamp(self._clock(), UTC)

    # -- merchants ------------------------------------------------------------------------------
    async def become_merchant(
        self,
        owner: MerchantOwner,
        *,
        name: str,
        settlement_token: str,
        payout_address: str | None = None,
    ) -> MerchantView:
        return await asyncio.to_thread(self._become, owner, name, settlement_token, payout_address)

    def _become(
        self, owner: MerchantOwner, name: str, settlement_token: str, payout: str | None
    ) -> MerchantView:
        symbol = settlement_token.strip().upper()
        if symbol not in self.settlement_tokens:
            raise UnsupportedSettlementToken(settlement_token, self.settlement_tokens)
        own = parse_evm_address(owner.wallet_address)
        address = parse_evm_address(payout) if payout else own
        merchant = Merchant(
            id=uuid.uuid4().hex,
            owner_user_id=owner.user_id,
            name=_clean(name, "the merchant's name", 200),
            payout_address=address,
            # Refunds are signed by the payout wallet: only possible when it is the owner's own.
            payout_wallet_id=owner.wallet_id if address == own else None,
            settlement_symbol=symbol,
            fee_bps=None,
            status=MerchantStatus.ACTIVE,
            created_at=self._now(),
        )
        try:
            with self._sessions.begin() as db:
                db.add(merchant)
                db.flush()
                db.add(
                    StaffMember(
                        id=uuid.uuid4().hex,
                        merchant_id=merchant.id,
                        user_id=owner.user_id,
                        role=StaffRole.OWNER,
                        created_at=self._now(),
                    )
                )
        except IntegrityError:
            raise AlreadyMerchant from None
        return self._view(merchant, StaffRole.OWNER)

    def _view(self, row: Merchant, role: StaffRole | None) -> MerchantView:
        return MerchantView(
            id=row.id,
            name=row.name,
            payout_address=row.payout_address,
            payout_is_own_wallet=row.payout_wallet_id is not None,
            settlement_token=row.settlement_symbol,
            fee_bps=self.fee_bps if row.fee_bps is None else row.fee_bps,
            status=str(row.status),
            role=str(role) if role else None,
            created_at=as_utc(row.created_at),
        )

    def merchants_of(self, user_id: str) -> list[MerchantView]:
        """The merchants the user works for, with their role."""
        with self._sessions() as db:
            rows = db.execute(
                select(Merchant, StaffMember.role)
                .join(StaffMember, StaffMember.merchant_id == Merchant.id)
                .where(StaffMember.user_id == user_id, StaffMember.revoked_at.is_(None))
                .order_by(Merchant.created_at)
            ).all()
            return [self._view(merchant, role) for merchant, role in rows]

    def merchant(self, principal: Principal) -> MerchantView:
        with self._sessions() as db:
            row = db.get(Merchant, principal.merchant_id)
            if row is None:  # pragma: no cover - a principal names an existing merchant
                raise MerchantNotFound
            return self._view(row, principal.role)

    # -- principals -----------------------------------------------------------------------------
    def principal_for_user(self, user_id: str, merchant_id: str) -> Principal:
        """The user acting for ``merchant_id`` (their staff role), or MerchantNotFound."""
        with self._sessions() as db:
            return self._principal(db, user_id, merchant_id)

    def _principal(self, db: Session, user_id: str, merchant_id: str) -> Principal:
        found = db.execute(
            select(StaffMember, Merchant)
            .join(Merchant, Merchant.id == StaffMember.merchant_id)
            .where(
                StaffMember.merchant_id == merchant_id,
                StaffMember.user_id == user_id,
                StaffMember.revoked_at.is_(None),
            )
        ).first()
        if found is None:
            raise MerchantNotFound
        staff, merchant = found
        return Principal(
            merchant_id=merchant_id,
            actor=f"user:{user_id}",
            permissions=ROLE_PERMISSIONS[staff.role],
            store_ids=frozenset({staff.store_id}) if staff.store_id else None,
            role=staff.role,
            refund_limit_units=self._refund_limit(staff, merchant),
            user_id=user_id,
        )

    def _refund_limit(self, staff: StaffMember, merchant: Merchant) -> int | None:
        if staff.role is StaffRole.OWNER:
            return None
        if staff.refund_limit_units is not None:
            return staff.refund_limit_units
        decimals = self.settlement_tokens.get(merchant.settlement_symbol, 6)
        return int(self._limits[staff.role] * 10**decimals)

    def principal_for_store(self, user_id: str, store_id: str) -> Principal:
        """The user acting in ``store_id``: StoreNotFound if they do not work there."""
        with self._sessions() as db:
            store = db.get(Store, store_id)
            if store is None:
                raise StoreNotFound
            try:
                principal = self._principal(db, user_id, store.merchant_id)
            except MerchantNotFound:
                raise StoreNotFound from None
        if not principal.can_see(store_id):
            raise StoreNotFound
        return principal

    # -- stores ---------------------------------------------------------------------------------
    def create_store(
        self,
        principal: Principal,
        *,
        name: str,
        country: str,
        currency: str,
        address: str = "",
        logo_url: str | None = None,
    ) -> StoreView:
        principal.require(Permission.STORES_MANAGE)
        country = country.strip().upper()
        currency = currency.strip().upper()
        if not _COUNTRY.match(country):
            raise InvalidInput("country is a two-letter ISO 3166 code, e.g. HK or FR")
        if not _CURRENCY.match(currency):
            raise InvalidInput("currency is a three-letter ISO 4217 code, e.g. HKD or EUR")
        if logo_url:
            parts = urlsplit(logo_url)
            if parts.scheme != "https" or not parts.netloc or len(logo_url) > 2000:
                raise InvalidInput("the logo URL must be an https:// URL")
        row = Store(
            id=uuid.uuid4().hex,
            merchant_id=principal.merchant_id,
            name=_clean(name, "the store's name", 200),
            address=_clean(address, "the address", 500, required=False),
            country=country,
            currency=currency,
            logo_url=logo_url or None,
            created_at=self._now(),
        )
        with self._sessions.begin() as db:
            db.add(row)
        return StoreView.of(row)

    def stores(self, principal: Principal) -> list[StoreView]:
        with self._sessions() as db:
            rows = db.scalars(
                select(Store)
                .where(Store.merchant_id == principal.merchant_id)
                .order_by(Store.created_at)
            ).all()
            return [StoreView.of(r) for r in rows if principal.can_see(r.id)]

    def store(self, store_id: str) -> StoreView:
        with self._sessions() as db:
            row = db.get(Store, store_id)
            if row is None:
                raise StoreNotFound
            return StoreView.of(row)

    # -- terminals ------------------------------------------------------------------------------
    def create_terminal(self, principal: Principal, store_id: str, name: str) -> TerminalView:
        principal.require(Permission.TERMINALS_MANAGE, store_id)
        self._own_store(principal, store_id)
        row = Terminal(
            id=uuid.uuid4().hex,
            merchant_id=principal.merchant_id,
            store_id=store_id,
            name=_clean(name, "the terminal's name", 100),
            created_at=self._now(),
        )
        with self._sessions.begin() as db:
            db.add(row)
        return TerminalView(row.id, store_id, row.name, as_utc(row.created_at), False)

    def terminals(self, principal: Principal, store_id: str) -> list[TerminalView]:
        principal.require(Permission.INVOICES_READ, store_id)
        with self._sessions() as db:
            rows = db.scalars(
                select(Terminal).where(Terminal.store_id == store_id).order_by(Terminal.created_at)
            ).all()
            return [
                TerminalView(
                    r.id, r.store_id, r.name, as_utc(r.created_at), r.revoked_at is not None
                )
                for r in rows
            ]

    def terminal(self, principal: Principal, terminal_id: str) -> TerminalView:
        with self._sessions() as db:
            row = db.get(Terminal, terminal_id)
            if (
                row is None
                or row.merchant_id != principal.merchant_id
                or not principal.can_see(row.store_id)
            ):
                raise TerminalNotFound
            return TerminalView(
                row.id, row.store_id, row.name, as_utc(row.created_at), row.revoked_at is not None
            )

    def terminal_store(self, terminal_id: str) -> str:
        """The store a terminal belongs to (for resolving who may watch it)."""
        with self._sessions() as db:
            row = db.get(Terminal, terminal_id)
            if row is None:
                raise TerminalNotFound
            return row.store_id

    def _own_store(self, principal: Principal, store_id: str) -> Store:
        with self._sessions() as db:
            store = db.get(Store, store_id)
            if store is None or store.merchant_id != principal.merchant_id:
                raise StoreNotFound
            return store

    # -- staff ----------------------------------------------------------------------------------
    def add_staff(
        self,
        principal: Principal,
        *,
        email: str,
        role: str,
        store_id: str | None = None,
        refund_limit_units: int | None = None,
    ) -> StaffView:
        principal.require(Permission.STAFF_MANAGE)
        try:
            staff_role = StaffRole(role)
        except ValueError:
            raise InvalidInput("role is one of owner, manager, cashier") from None
        if staff_role is StaffRole.OWNER:
            raise InvalidInput("a merchant has one owner: add a manager instead")
        if store_id is not None:
            self._own_store(principal, store_id)
        if refund_limit_units is not None and refund_limit_units < 0:
            raise InvalidInput("a refund limit cannot be negative")
        with self._sessions.begin() as db:
            user = db.scalars(
                select(User).where(
                    User.email == email.strip().lower(),
                    User.email_verified.is_(True),
                    User.status == UserStatus.ACTIVE,
                )
            ).first()
            if user is None:
                raise StaffUserUnknown
            existing = db.scalars(
                select(StaffMember).where(
                    StaffMember.merchant_id == principal.merchant_id,
                    StaffMember.user_id == user.id,
                )
            ).first()
            if existing is not None and existing.role is StaffRole.OWNER:
                raise InvalidInput("this person owns the merchant account already")
            row = existing or StaffMember(
                id=uuid.uuid4().hex, merchant_id=principal.merchant_id, user_id=user.id
            )
            row.role = staff_role
            row.store_id = store_id
            row.refund_limit_units = refund_limit_units
            row.revoked_at = None
            row.created_at = row.created_at or self._now()
            db.add(row)
            db.flush()
            return StaffView(
                row.id,
                user.id,
                user.display_name,
                user.email,
                str(staff_role),
                store_id,
                refund_limit_units,
                as_utc(row.created_at),
            )

    def staff(self, principal: Principal) -> list[StaffView]:
        principal.require(Permission.STAFF_MANAGE)
        with self._sessions() as db:
            rows = db.execute(
                select(StaffMember, User)
                .join(User, User.id == StaffMember.user_id)
                .where(
                    StaffMember.merchant_id == principal.merchant_id,
                    StaffMember.revoked_at.is_(None),
                )
                .order_by(StaffMember.created_at)
            ).all()
            return [
                StaffView(
                    s.id,
                    u.id,
                    u.display_name,
                    u.email,
                    str(s.role),
                    s.store_id,
                    s.refund_limit_units,
                    as_utc(s.created_at),
                )
                for s, u in rows
            ]

    def remove_staff(self, principal: Principal, staff_id: str) -> None:
        principal.require(Permission.STAFF_MANAGE)
        with self._sessions.begin() as db:
            row = db.get(StaffMember, staff_id)
            if row is None or row.merchant_id != principal.merchant_id or row.revoked_at:
                raise StaffNotFound
            if row.role is StaffRole.OWNER:
                raise InvalidInput("the owner cannot be removed")
            row.revoked_at = self._now()
            # A refund passkey the owner has not added yet goes with them (one on the wallet
            # stays listed for the owner to remove: that needs the owner's approval).
            db.execute(
                update(RefundApprover)
                .where(
                    RefundApprover.staff_id == row.id,
                    RefundApprover.status == ApproverStatus.AWAITING_OWNER,
                )
                .values(status=ApproverStatus.REVOKED, revoked_at=row.revoked_at)
                .execution_options(synchronize_session=False)
            )


def settlement_decimals(tokens: Iterable[tuple[str, int]]) -> dict[str, int]:
    return {symbol.upper(): decimals for symbol, decimals in tokens}
