"""Putting another domain's signed authorization in the relayer's outbox.

Payments and refunds through the PaymentRouter are EIP-3009 ``ReceiveWithAuthorization``s to the
router: money leaving a wallet under its owner's signature, exactly like a transfer. They ride the
same outbox (the ``transfers`` table) so that the relayer's claims, sponsors, simulations,
tracking, replacement and crash recovery — and the follower's confirmation on the token's
``AuthorizationUsed`` — serve them unchanged, and so that the payer's in-flight money (the
balance check of a transfer or a payment) counts them too. The row's ``to_address`` is the
router; :class:`~seiwallet.transfers.models.TransferRouterCall` keeps the terms the router needs.

Several ``router.pay`` rows may travel in one ``payBatch`` transaction
(:class:`~seiwallet.transfers.models.TransferBatchMember` names them): :func:`carried_by` tells
whether a transaction carried a given row, alone or in a batch, and :func:`failure_is_final`
whether a payment that failed can never settle (the relayer and the follower judge alike).
"""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from seiwallet.chain.errors import (
    AuthorizationNotYetValid,
    AuthorizationUsed,
    BatchGasTooLow,
    ChainError,
    ExecutionReverted,
    TokenPaused,
)
from seiwallet.chain.router import Payment, Refund
from seiwallet.db import insert_now
from seiwallet.transfers.models import (
    RouterCallKind,
    Transfer,
    TransferBatchMember,
    TransferRouterCall,
    TransferStatus,
)


@dataclass(frozen=True)
class SignedRouterCall:
    """A signed ``router.pay`` or ``router.refund`` authorization, ready for the relayer."""

    #: The wallet's owner (the payer, or the merchant for a refund): the row's user.
    user_id: str
    #: What the caller knows this movement by (an attempt id, a refund id): one row per reference.
    reference: str
    chain_id: int
    symbol: str
    decimals: int
    from_address: str
    router: str
    terms: Payment | Refund
    nonce: bytes
    valid_after: int
    valid_before: int
    intent: str
    intent_digest: str
    signature: str
    #: How the owner's history names the other side ("Coffee Corner", "Refund from …").
    label: str
    note: str = ""

    @property
    def amount_units(self) -> int:
        return self.terms.amount_units


def enqueue_router_call(session: Session, call: SignedRouterCall, *, now: datetime) -> str:
    """Add ``call`` to the outbox (``signed``) in the caller's transaction; the transfer id.

    Idempotent per (user, reference): the unique key makes a second insert of the same
    reference fail the caller's transaction instead of queueing the money twice.
    """
    payment = call.terms.payment if isinstance(call.terms, Refund) else call.terms
    transfer = Transfer(
        id=uuid.uuid4().hex,
        user_id=call.user_id,
        idempotency_key=f"router:{call.reference}",
        request_hash=hashlib.sha256(call.reference.encode()).hexdigest(),
        chain_id=call.chain_id,
        token=payment.token,
        symbol=call.symbol,
        decimals=call.decimals,
        from_address=call.from_address,
        to_address=call.router,
        recipient_input=call.label[:320],
        recipient_user_id=None,
        amount_units=call.amount_units,
        note=call.note[:140],
        nonce="0x" + call.nonce.hex(),
        valid_after=call.valid_after,
        valid_before=call.valid_before,
        intent=call.intent,
        intent_digest=call.intent_digest,
        signature=call.signature,
        status=TransferStatus.SIGNED,
        attempts=0,
        created_at=now,
        signed_at=now,
    )
    refund = call.terms if isinstance(call.terms, Refund) else None
    # Core INSERTs (nothing reads them back in this transaction): the unit of work's
    # bookkeeping would lengthen the write transaction that holds SQLite's lock.
    insert_now(
        session,
        transfer,
        TransferRouterCall(
            transfer_id=transfer.id,
            kind=RouterCallKind.REFUND if refund is not None else RouterCallKind.PAY,
            router=call.router,
            invoice_id="0x" + payment.invoice_id.hex(),
            merchant=payment.merchant,
            payment_amount_units=payment.amount_units,
            fee_units=payment.fee_units,
            payer=refund.payer if refund is not None else None,
            refund_id="0x" + refund.refund_id.hex() if refund is not None else None,
        ),
    )
    return transfer.id


def carried_by(session: Session, *, chain_id: int, tx_hash: str, transfer_id: str) -> bool:
    """Whether our relayer sent outbox row ``transfer_id`` in transaction ``tx_hash``.

    True for the row's own latest transaction, and for any transaction of a batch that carried
    it (each recorded hash of the batch, replacements included). A ``PaymentFailed`` from any
    other transaction is someone else's ``payBatch`` naming our invoice: not a verdict on ours.
    """
    tx_hash = tx_hash.lower()
    latest = session.scalar(select(Transfer.tx_hash).where(Transfer.id == transfer_id))
    if latest is not None and latest.lower() == tx_hash:
        return True
    member = session.scalar(
        select(TransferBatchMember.position)
        .where(
            TransferBatchMember.chain_id == chain_id,
            TransferBatchMember.tx_hash == tx_hash,
            TransferBatchMember.transfer_id == transfer_id,
        )
        .limit(1)
    )
    return member is not None


def failure_is_final(error: ChainError) -> bool:
    """Whether an authorization that reverted with ``error`` can never go through as signed.

    A paused token or an authorization not valid yet may pass later (the relayer sends it again);
    a used authorization means it went through already (another transaction, perhaps someone
    else's, carried it); a starved batch is the batch's fault, not the payment's. Every other
    revert — bad signature, blacklisted, balance too low, expired, terms already settled — is
    final: the attempt fails and the invoice becomes ``invalid``.
    """
    return isinstance(error, ExecutionReverted) and not isinstance(
        error, TokenPaused | AuthorizationNotYetValid | AuthorizationUsed | BatchGasTooLow
    )
