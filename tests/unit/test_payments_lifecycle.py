"""The invoice lifecycle: its one transition table, and a state machine that follows it.

Hypothesis drives an invoice through every action the platform and the chain can take (a payer
approving, expiry, the router settling it — again, failing, refunding — and reorganisations
undoing settlements and refunds) and checks the invariants after each step.
"""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from seiwallet.payments.models import (
    ATTEMPT_TRANSITIONS,
    INVOICE_TRANSITIONS,
    PAID_STATUSES,
    REFUND_TRANSITIONS,
    UNPAID_STATUSES,
    AttemptStatus,
    InvoiceStatus,
    RefundStatus,
    can_transition,
    refund_status,
)

S = InvoiceStatus


def test_every_status_has_its_transitions_declared() -> None:
    assert set(INVOICE_TRANSITIONS) == set(InvoiceStatus)
    assert set(ATTEMPT_TRANSITIONS) == set(AttemptStatus)
    assert set(REFUND_TRANSITIONS) == set(RefundStatus)
    for table in (INVOICE_TRANSITIONS, ATTEMPT_TRANSITIONS, REFUND_TRANSITIONS):
        for targets in table.values():
            assert targets <= set(table)


def test_paid_and_unpaid_split_the_states() -> None:
    assert set(InvoiceStatus) == PAID_STATUSES | UNPAID_STATUSES
    assert not PAID_STATUSES & UNPAID_STATUSES


def test_the_btcpay_path_and_its_exits() -> None:
    assert can_transition(S.NEW, S.PROCESSING)
    assert can_transition(S.PROCESSING, S.SETTLED)
    assert can_transition(S.NEW, S.EXPIRED)
    assert can_transition(S.PROCESSING, S.INVALID)
    assert can_transition(S.SETTLED, S.PARTIALLY_REFUNDED)
    assert can_transition(S.PARTIALLY_REFUNDED, S.REFUNDED)
    # What must never happen: an expired invoice taking a new payer, a refunded one re-opening.
    assert not can_transition(S.EXPIRED, S.PROCESSING)
    assert not can_transition(S.EXPIRED, S.NEW)
    assert not can_transition(S.REFUNDED, S.NEW)
    assert not can_transition(S.INVALID, S.PROCESSING)
    # Every unpaid state can still be settled: the chain is the truth.
    for status in UNPAID_STATUSES:
        assert can_transition(status, S.SETTLED)


@given(amount=st.integers(1, 10**30), refunded=st.integers(0, 10**30))
def test_refund_status_follows_what_was_refunded(amount: int, refunded: int) -> None:
    status = refund_status(amount, refunded)
    if refunded == 0:
        assert status is S.SETTLED
    elif refunded >= amount:
        assert status is S.REFUNDED
    else:
        assert status is S.PARTIALLY_REFUNDED


class InvoiceMachine(RuleBasedStateMachine):
    """A model of one invoice moved by the platform (approve, expire) and the chain."""

    def __init__(self) -> None:
        super().__init__()
        self.status = S.NEW
        self.amount = 1_000
        self.refunds: list[int] = []
        self.settlements = 0
        self.paid_over = False
        self.paid_late = False
        self.history: list[tuple[InvoiceStatus, InvoiceStatus]] = []

    def move(self, target: InvoiceStatus) -> None:
        if target is self.status and target is not S.PARTIALLY_REFUNDED:
            return
        assert can_transition(self.status, target), (self.status, target)
        self.history.append((self.status, target))
        self.status = target

    @precondition(lambda self: self.status is S.NEW)
    @rule()
    def payer_approves(self) -> None:
        self.move(S.PROCESSING)

    @precondition(lambda self: self.status is S.NEW)
    @rule()
    def expires(self) -> None:
        self.move(S.EXPIRED)

    @precondition(lambda self: self.status is S.PROCESSING)
    @rule()
    def fails_on_chain(self) -> None:
        self.move(S.INVALID)

    @rule()
    def router_settles(self) -> None:
        if self.status in PAID_STATUSES:
            self.paid_over = True  # a second settlement of the id: an anomaly, no transition
            return
        self.paid_late = self.status is S.EXPIRED
        self.settlements += 1
        self.move(S.SETTLED)

    @precondition(lambda self: self.status in PAID_STATUSES)
    @rule(data=st.data())
    def refunds_part(self, data: st.DataObject) -> None:
        left = self.amount - sum(self.refunds)
        if left <= 0:
            return
        amount = data.draw(st.integers(1, left))
        self.refunds.append(amount)
        self.move(refund_status(self.amount, sum(self.refunds)))

    @precondition(lambda self: bool(self.refunds) and self.status in PAID_STATUSES)
    @rule()
    def reorg_undoes_a_refund(self) -> None:
        self.refunds.pop()
        self.move(refund_status(self.amount, sum(self.refunds)))

    @precondition(lambda self: self.status is S.SETTLED and not self.refunds)
    @rule()
    def reorg_undoes_the_settlement(self) -> None:
        self.settlements -= 1
        self.move(S.EXPIRED if self.paid_late else S.PROCESSING)
        self.paid_late = False

    @invariant()
    def refunds_never_exceed_the_payment(self) -> None:
        assert sum(self.refunds) <= self.amount

    @invariant()
    def settled_at_most_once(self) -> None:
        assert self.settlements in (0, 1)
        assert (self.settlements == 1) == (self.status in PAID_STATUSES)

    @invariant()
    def status_matches_refunds(self) -> None:
        if self.status in PAID_STATUSES:
            assert self.status is refund_status(self.amount, sum(self.refunds))


TestInvoiceMachine = InvoiceMachine.TestCase
TestInvoiceMachine.settings = settings(max_examples=200, stateful_step_count=30, deadline=None)
