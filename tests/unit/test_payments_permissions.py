"""Who may do what: the staff roles' permission table, API key scopes, refund limits, and the
token-bucket rate limit of API keys."""

from __future__ import annotations

import pytest

from seiwallet.errors import InvalidInput
from seiwallet.payments.apikeys import RateLimiter
from seiwallet.payments.errors import (
    NotPermitted,
    RateLimited,
    RefundOverLimit,
    ScopeMissing,
    StoreNotFound,
)
from seiwallet.payments.models import StaffRole
from seiwallet.payments.permissions import (
    API_KEY_SCOPES,
    ROLE_PERMISSIONS,
    Permission,
    Principal,
    parse_scopes,
)

P = Permission
#: The table as the docs state it: (permission, owner, manager, cashier).
TABLE = [
    (P.INVOICES_CREATE, True, True, True),
    (P.INVOICES_READ, True, True, True),
    (P.REFUNDS_CREATE, True, True, True),
    (P.WEBHOOKS_MANAGE, True, True, False),
    (P.REPORTS_READ, True, True, False),
    (P.KEYS_MANAGE, True, True, False),
    (P.TERMINALS_MANAGE, True, True, False),
    (P.STORES_MANAGE, True, False, False),
    (P.STAFF_MANAGE, True, False, False),
]


def staff(role: StaffRole, *, stores: frozenset[str] | None = None, limit: int | None = None):
    return Principal(
        merchant_id="m1",
        actor="user:u1",
        permissions=ROLE_PERMISSIONS[role],
        store_ids=stores,
        role=role,
        refund_limit_units=limit,
        user_id="u1",
    )


def key(*scopes: str) -> Principal:
    return Principal(
        merchant_id="m1",
        actor="key:k1",
        permissions=parse_scopes(list(scopes)),
        store_ids=frozenset({"s1"}),
        api_key_id="k1",
    )


@pytest.mark.parametrize(("permission", "owner", "manager", "cashier"), TABLE)
def test_the_role_table(permission: Permission, owner: bool, manager: bool, cashier: bool) -> None:
    for role, allowed in (
        (StaffRole.OWNER, owner),
        (StaffRole.MANAGER, manager),
        (StaffRole.CASHIER, cashier),
    ):
        principal = staff(role)
        if allowed:
            principal.require(permission)
        else:
            with pytest.raises(NotPermitted) as refused:
                principal.require(permission)
            assert refused.value.code == "payment.not_permitted"
            assert str(role) in str(refused.value)


def test_the_table_covers_every_permission() -> None:
    assert {row[0] for row in TABLE} == set(Permission)


def test_api_keys_have_only_their_scopes_and_their_store() -> None:
    reader = key("invoices:read")
    reader.require(P.INVOICES_READ, "s1")
    with pytest.raises(ScopeMissing) as missing:
        reader.require(P.INVOICES_CREATE, "s1")
    assert missing.value.code == "payment.scope_missing"
    assert "invoices:create" in str(missing.value)
    # Another store of the same merchant is answered like a store that does not exist.
    with pytest.raises(StoreNotFound):
        reader.require(P.INVOICES_READ, "s2")


def test_scopes_are_a_closed_set() -> None:
    assert parse_scopes("invoices:create invoices:read") == {P.INVOICES_CREATE, P.INVOICES_READ}
    assert parse_scopes(sorted(API_KEY_SCOPES)) == API_KEY_SCOPES
    for bad in (["staff:manage"], ["keys:manage"], ["invoices:delete"], []):
        with pytest.raises(InvalidInput):
            parse_scopes(bad)


def test_staff_of_one_store_see_only_it() -> None:
    cashier = staff(StaffRole.CASHIER, stores=frozenset({"s1"}))
    cashier.require(P.INVOICES_CREATE, "s1")
    with pytest.raises(StoreNotFound):
        cashier.require(P.INVOICES_CREATE, "s2")


def test_refund_limits() -> None:
    staff(StaffRole.OWNER).require_refund(10**12, shown="any", symbol="USDC")
    manager = staff(StaffRole.MANAGER, limit=500_000_000)
    manager.require_refund(500_000_000, shown="500", symbol="USDC")
    with pytest.raises(RefundOverLimit) as over:
        manager.require_refund(500_000_001, shown="500", symbol="USDC")
    assert over.value.code == "payment.refund_over_limit"
    assert "500 USDC" in str(over.value)
    with pytest.raises(ScopeMissing):
        key("invoices:read").require_refund(1, shown="0", symbol="USDC")
    key("refunds:create").require_refund(10**12, shown="0", symbol="USDC")


def test_token_bucket_allows_a_burst_then_the_rate() -> None:
    now = [100.0]
    limiter = RateLimiter(rate=2.0, burst=3, clock=lambda: now[0])
    for _ in range(3):
        limiter.take("k")
    with pytest.raises(RateLimited) as limited:
        limiter.take("k")
    assert limited.value.status == 429
    assert limited.value.retry_after == 1
    limiter.take("other")  # buckets are per key
    now[0] += 0.5  # one token back at 2 per second
    limiter.take("k")
    with pytest.raises(RateLimited):
        limiter.take("k")
    now[0] += 10  # refills up to the burst, not beyond
    for _ in range(3):
        limiter.take("k")
    with pytest.raises(RateLimited):
        limiter.take("k")
