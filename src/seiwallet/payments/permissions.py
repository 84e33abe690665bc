"""Who may do what for a merchant: the permission table of staff roles and API key scopes.

A request acts as a :class:`Principal`: a staff member (their role decides) or a store's API key
(its scopes decide, and it reaches only its own store). Every service method that acts for a
merchant asks ``principal.require(permission, store_id)`` first.

======================  =======  =========  =========  =============================
permission              owner    manager    cashier    API key scope
======================  =======  =========  =========  =============================
invoices:create         yes      yes        yes        ``invoices:create``
invoices:read           yes      yes        yes        ``invoices:read``
refunds:create          any      ≤ limit    ≤ limit    ``refunds:create`` (no limit)
webhooks:manage         yes      yes        no         ``webhooks:manage``
reports:read            yes      yes        no         ``reports:read``
keys:manage             yes      yes        no         —
terminals:manage        yes      yes        no         —
stores:manage           yes      no         no         —
staff:manage            yes      no         no         —
======================  =======  =========  =========  =============================

A refund made with an API key or by staff is only *requested* here: the payout wallet's own
approval (verified by the signer) is still needed before anything is signed.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Final

from seiwallet.errors import InvalidInput
from seiwallet.payments.errors import NotPermitted, RefundOverLimit, ScopeMissing, StoreNotFound
from seiwallet.payments.models import StaffRole


class Permission(enum.StrEnum):
    INVOICES_CREATE = "invoices:create"
    INVOICES_READ = "invoices:read"
    REFUNDS_CREATE = "refunds:create"
    WEBHOOKS_MANAGE = "webhooks:manage"
    REPORTS_READ = "reports:read"
    KEYS_MANAGE = "keys:manage"
    TERMINALS_MANAGE = "terminals:manage"
    STORES_MANAGE = "stores:manage"
    STAFF_MANAGE = "staff:manage"


P = Permission
#: What an API key may be given.
API_KEY_SCOPES: Final = frozenset(
    {P.INVOICES_CREATE, P.INVOICES_READ, P.REFUNDS_CREATE, P.WEBHOOKS_MANAGE, P.REPORTS_READ}
)
ROLE_PERMISSIONS: Final[dict[StaffRole, frozenset[Permission]]] = {
    StaffRole.OWNER: frozenset(Permission),
    StaffRole.MANAGER: frozenset(Permission) - {P.STORES_MANAGE, P.STAFF_MANAGE},
    StaffRole.CASHIER: frozenset({P.INVOICES_CREATE, P.INVOICES_READ, P.REFUNDS_CREATE}),
}


def parse_scopes(scopes: str | list[str]) -> frozenset[Permission]:
    """API key scopes from their list or space-separated text; unknown ones are refused."""
    names = scopes.split() if isinstance(scopes, str) else scopes
    found: set[Permission] = set()
    for name in names:
        try:
            permission = Permission(name)
        except ValueError:
            permission = None
        if permission is None or permission not in API_KEY_SCOPES:
            known = ", ".join(sorted(API_KEY_SCOPES))
            raise InvalidInput(f"{name!r} is not an API key scope: choose from {known}")
        found.add(permission)
    if not found:
        raise InvalidInput("an API key needs at least one scope")
    return frozenset(found)


@dataclass(frozen=True)
class Principal:
    """Who is acting for merchant ``merchant_id``, and what they may touch."""

    merchant_id: str
    #: ``user:<id>`` or ``key:<id>``: recorded on what they create.
    actor: str
    permissions: frozenset[Permission]
    #: ``None``: every store of the merchant.
    store_ids: frozenset[str] | None
    role: StaffRole | None = None
    #: The most one refund may be (base units of the settlement token); ``None``: no limit.
    refund_limit_units: int | None = None
    user_id: str | None = None
    api_key_id: str | None = None
    extra: dict[str, str] = field(default_factory=dict)

    @property
    def is_api_key(self) -> bool:
        return self.api_key_id is not None

    def can_see(self, store_id: str) -> bool:
        return self.store_ids is None or store_id in self.store_ids

    def require(self, permission: Permission, store_id: str | None = None) -> None:
        """Raise unless this principal may do ``permission`` (in ``store_id``)."""
        if store_id is not None and not self.can_see(store_id):
            raise StoreNotFound
        if permission in self.permissions:
            return
        if self.role is None:
            raise ScopeMissing(str(permission))
        raise NotPermitted(str(self.role), str(permission))

    def require_refund(self, amount_units: int, *, shown: str, symbol: str) -> None:
        """Raise unless this principal may refund ``amount_units`` at once."""
        self.require(Permission.REFUNDS_CREATE)
        if self.refund_limit_units is not None and amount_units > self.refund_limit_units:
            raise RefundOverLimit(shown, symbol)
