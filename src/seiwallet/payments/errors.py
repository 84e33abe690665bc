"""Errors of the payments domain, each with a stable ``code`` and a message that says what to do.

PaymentError
├── MerchantError
│   ├── AlreadyMerchant              this user already owns a merchant account
│   ├── MerchantNotFound             no such merchant (or not yours: answered alike)
│   ├── StoreNotFound / TerminalNotFound / StaffNotFound / ApiKeyNotFound
│   ├── StaffUserUnknown             no active user with this e-mail / id to add as staff
│   ├── UnsupportedSettlementToken   not a token this platform settles in
│   ├── PayoutWalletNotHeld          refunds need the payout wallet to be one of ours
│   ├── ApproverNotFound / ApproverNotAwaitingOwner
│   └── RefundApprovalNotSetUp       a staff member approving without a refund passkey
├── AccessError
│   ├── ApiKeyInvalid                unknown, revoked or malformed ``swk_`` key (401)
│   ├── ScopeMissing                 the API key lacks the scope (403)
│   ├── NotPermitted                 the staff role may not do this (403)
│   ├── RefundOverLimit              above the staff role's refund limit (403)
│   └── RateLimited                  too many requests for this key (429, Retry-After)
├── InvoiceError
│   ├── InvoiceNotFound
│   ├── InvoiceExpired               past its expiry: ask the merchant for a new one
│   ├── InvoiceAlreadyPaid           settled, or being settled from another phone
│   ├── InvoiceBeingPaid             another phone is approving it right now
│   ├── InvoiceForeign               another chain, router or token than this wallet's
│   ├── InvoiceNotPayable            invalid (failed on-chain) or otherwise closed
│   ├── SelfPayment                  the payer is the merchant's payout wallet
│   ├── UnsupportedCurrency          no rate for this currency
│   ├── InvalidExpiry / MetadataTooLarge / InvalidCursor
│   └── IdempotencyConflict          same Idempotency-Key, different request
├── PayerError
│   ├── AttemptNotFound / AttemptNotAwaitingApproval
│   └── InsufficientBalance
├── RefundError
│   ├── RefundNotFound / RefundNotAwaitingApproval
│   ├── InvoiceNotRefundable         not settled (yet), nothing to refund
│   ├── RefundExceedsRefundable      more than was paid minus refunds
│   ├── RefundNeedsPayerAddress      paid to its deposit address by several: name the payer
│   └── RefundPayerNotRecorded       that address did not pay this invoice
└── WebhookError
    ├── WebhookNotFound / DeliveryNotFound
    ├── WebhookUrlInvalid
    └── UnknownEventType
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from seiwallet.errors import SeiwalletError


class PaymentError(SeiwalletError):
    code = "payment.error"
    status = 400


# -- merchants ------------------------------------------------------------------------------


class MerchantError(PaymentError):
    code = "payment.merchant_error"


class AlreadyMerchant(MerchantError):
    """You already have a merchant account."""

    code = "payment.already_merchant"
    status = 409

    def __init__(self) -> None:
        super().__init__("you already own a merchant account: add stores to it instead")


class MerchantNotFound(MerchantError):
    code = "payment.merchant_not_found"
    status = 404

    def __init__(self) -> None:
        super().__init__("no such merchant account among yours")


class StoreNotFound(MerchantError):
    code = "payment.store_not_found"
    status = 404

    def __init__(self) -> None:
        super().__init__("no such store among the stores you can use")


class TerminalNotFound(MerchantError):
    code = "payment.terminal_not_found"
    status = 404

    def __init__(self) -> None:
        super().__init__("no such terminal in this store")


class StaffNotFound(MerchantError):
    code = "payment.staff_not_found"
    status = 404

    def __init__(self) -> None:
        super().__init__("no such staff member in this merchant account")


class ApiKeyNotFound(MerchantError):
    code = "payment.api_key_not_found"
    status = 404

    def __init__(self) -> None:
        super().__init__("no such API key in your stores")


class StaffUserUnknown(MerchantError):
    """No user to add as staff."""

    code = "payment.staff_user_unknown"
    status = 404

    def __init__(self) -> None:
        super().__init__(
            "no seiwallet user with this verified e-mail: ask them to sign up first, then add them"
        )


class UnsupportedSettlementToken(MerchantError):
    code = "payment.unsupported_token"
    status = 422

    def __init__(self, symbol: str, offered: Iterable[str]) -> None:
        super().__init__(
            f"{symbol!r} is not a settlement token here: choose one of {', '.join(sorted(offered))}"
        )


class PayoutWalletNotHeld(MerchantError):
    """Refunds are paid from the payout wallet, which must be a wallet of this platform."""

    code = "payment.payout_wallet_not_held"
    status = 409

    def __init__(self) -> None:
        super().__init__(
            "the payout address is not a seiwallet wallet, so the platform cannot sign a refund "
            "from it: refund from that wallet directly, or set your own wallet as payout address"
        )


class ApproverNotFound(MerchantError):
    code = "payment.approver_not_found"
    status = 404

    def __init__(self) -> None:
        super().__init__("no such refund approver in this merchant account")


class ApproverNotAwaitingOwner(MerchantError):
    code = "payment.approver_not_awaiting_owner"
    status = 409

    def __init__(self, status: str) -> None:
        super().__init__(f"this refund approver is {status.replace('_', ' ')}, not awaiting you")


class RefundApprovalNotSetUp(MerchantError):
    """A staff member asked to approve a refund without an active refund passkey."""

    code = "payment.refund_approval_not_set_up"
    status = 403

    def __init__(self) -> None:
        super().__init__(
            "you have no active refund passkey for this merchant: set one up from a payment's "
            "Refund page and ask the owner to approve it, or ask the owner to approve this refund"
        )


# -- access ---------------------------------------------------------------------------------


class AccessError(PaymentError):
    code = "payment.access_error"
    status = 403


class ApiKeyInvalid(AccessError):
    """The API key is not valid."""

    code = "payment.api_key_invalid"
    status = 401

    def __init__(self) -> None:
        super().__init__(
            "this API key is unknown or revoked: create a new key in the store's settings"
        )


class ScopeMissing(AccessError):
    """The API key lacks a scope."""

    code = "payment.scope_missing"

    def __init__(self, scope: str) -> None:
        self.scope = scope
        super().__init__(f"this API key does not have the {scope!r} scope: use a key that has it")


class NotPermitted(AccessError):
    """Your role does not allow this."""

    code = "payment.not_permitted"

    def __init__(self, role: str, permission: str) -> None:
        self.role = role
        super().__init__(
            f"a {role} may not {permission.replace(':', ' ').replace('_', ' ')}: "
            "ask the merchant's owner or a manager"
        )


class RefundOverLimit(AccessError):
    """The refund is above what your role may refund."""

    code = "payment.refund_over_limit"

    def __init__(self, limit: str, symbol: str) -> None:
        super().__init__(
            f"your role may refund at most {limit} {symbol} at once: "
            "ask the owner or a manager to make this refund"
        )


class RateLimited(AccessError):
    """Too many requests."""

    code = "payment.rate_limited"
    status = 429

    def __init__(self, retry_after: int) -> None:
        self.retry_after = retry_after
        super().__init__(
            f"this API key sent too many requests: wait {retry_after} s and send fewer"
        )


# -- invoices -------------------------------------------------------------------------------


class InvoiceError(PaymentError):
    code = "payment.invoice_error"
    status = 409


class InvoiceNotFound(InvoiceError):
    code = "payment.invoice_not_found"
    status = 404

    def __init__(self) -> None:
        super().__init__("no such invoice: check the QR code or link")


class InvoiceExpired(InvoiceError):
    """The invoice has expired."""

    code = "payment.invoice_expired"

    def __init__(self) -> None:
        super().__init__("this invoice has expired: ask the shop for a new one. Nothing was paid")


class InvoiceAlreadyPaid(InvoiceError):
    """The invoice is already paid."""

    code = "payment.invoice_already_paid"

    def __init__(self) -> None:
        super().__init__(
            "this invoice is already paid (perhaps from another phone): nothing was taken from "
            "your wallet"
        )


class InvoiceBeingPaid(InvoiceError):
    """Someone else is paying this invoice right now."""

    code = "payment.invoice_being_paid"

    def __init__(self) -> None:
        super().__init__(
            "another phone is paying this invoice right now: nothing was taken from your wallet; "
            "check with the shop before trying again"
        )


class InvoiceForeign(InvoiceError):
    """The invoice is for another network or payment contract."""

    code = "payment.invoice_foreign"
    status = 422

    def __init__(self, why: str) -> None:
        super().__init__(f"this invoice cannot be paid from this wallet: {why}")


class InvoiceNotPayable(InvoiceError):
    """The invoice can no longer be paid."""

    code = "payment.invoice_not_payable"

    def __init__(self, status: str) -> None:
        super().__init__(f"this invoice is {status.replace('_', ' ')}: ask the shop for a new one")


class SelfPayment(InvoiceError):
    code = "payment.self_payment"
    status = 422

    def __init__(self) -> None:
        super().__init__("this invoice pays your own wallet: pay it from another wallet")


class UnsupportedCurrency(InvoiceError):
    """No exchange rate for this currency."""

    code = "payment.unsupported_currency"
    status = 422

    def __init__(self, currency: str, known: Iterable[str]) -> None:
        super().__init__(
            f"no exchange rate for {currency!r}: price in one of {', '.join(sorted(known))}"
        )


class InvalidExpiry(InvoiceError):
    code = "payment.invalid_expiry"
    status = 422

    def __init__(self, low: int, high: int) -> None:
        super().__init__(f"expires_in_seconds must be from {low} to {high}")


class MetadataTooLarge(InvoiceError):
    code = "payment.metadata_too_large"
    status = 422

    def __init__(self, limit: int) -> None:
        super().__init__(f"metadata is at most {limit} bytes of JSON: keep references, not data")


class InvalidCursor(InvoiceError):
    code = "payment.invalid_cursor"
    status = 422

    def __init__(self) -> None:
        super().__init__("this cursor is not one we gave out: start again without a cursor")


class IdempotencyConflict(InvoiceError):
    """The Idempotency-Key was used before for a different request."""

    code = "payment.idempotency_conflict"
    status = 422

    def __init__(self) -> None:
        super().__init__(
            "this Idempotency-Key was already used for a different request: "
            "use a new key for a new request"
        )


# -- the payer ------------------------------------------------------------------------------


class PayerError(PaymentError):
    code = "payment.payer_error"
    status = 409


class AttemptNotFound(PayerError):
    code = "payment.attempt_not_found"
    status = 404

    def __init__(self) -> None:
        super().__init__("no such payment in your wallet: scan the invoice again")


class AttemptNotAwaitingApproval(PayerError):
    code = "payment.attempt_not_awaiting_approval"

    def __init__(self, status: str) -> None:
        super().__init__(
            f"this payment is {status.replace('_', ' ')}: it cannot be approved now; "
            "scan the invoice again"
        )


class InsufficientBalance(PayerError):
    """Not enough money in the wallet."""

    code = "payment.insufficient_balance"
    status = 422

    def __init__(self, available: str, symbol: str) -> None:
        self.available = available
        super().__init__(
            f"not enough {symbol}: {available} {symbol} can be spent right now; "
            "add money or pay another way"
        )


# -- refunds --------------------------------------------------------------------------------


class RefundError(PaymentError):
    code = "payment.refund_error"
    status = 409


class RefundNotFound(RefundError):
    code = "payment.refund_not_found"
    status = 404

    def __init__(self) -> None:
        super().__init__("no such refund among your stores' invoices")


class RefundNotAwaitingApproval(RefundError):
    code = "payment.refund_not_awaiting_approval"

    def __init__(self, status: str) -> None:
        super().__init__(f"this refund is {status.replace('_', ' ')}: it cannot be approved now")


class InvoiceNotRefundable(RefundError):
    """The invoice has nothing to refund."""

    code = "payment.invoice_not_refundable"

    def __init__(self, status: str) -> None:
        super().__init__(
            f"this invoice is {status.replace('_', ' ')}: only a settled invoice can be refunded"
        )


class RefundExceedsRefundable(RefundError):
    """More than is left to refund."""

    code = "payment.refund_exceeds_refundable"
    status = 422

    def __init__(self, refundable: str, symbol: str) -> None:
        self.refundable = refundable
        super().__init__(
            f"at most {refundable} {symbol} of this invoice can still be refunded "
            "(what was paid minus refunds made or on their way)"
        )


class RefundNeedsPayerAddress(RefundError):
    """Paid to its deposit address from several addresses: the merchant names the one to refund."""

    code = "payment.refund_needs_payer_address"

    def __init__(self, payers: Sequence[str]) -> None:
        self.payers = list(payers)
        super().__init__(
            f"this invoice's deposit address was paid from {len(self.payers)} addresses "
            f"({', '.join(self.payers)}): say which one to refund (`payer`), after confirming "
            "with the customer that it is theirs (an exchange may have sent the money for them)"
        )


class RefundPayerNotRecorded(RefundError):
    """A refund may only go to an address the chain showed paying the invoice."""

    code = "payment.refund_payer_not_recorded"
    status = 422

    def __init__(self, payer: str, payers: Sequence[str]) -> None:
        self.payer = payer
        super().__init__(
            f"{payer} did not pay this invoice: a refund goes back to an address that paid it "
            f"({', '.join(payers) or 'none recorded'})"
        )


# -- webhooks -------------------------------------------------------------------------------


class WebhookError(PaymentError):
    code = "payment.webhook_error"
    status = 422


class WebhookNotFound(WebhookError):
    code = "payment.webhook_not_found"
    status = 404

    def __init__(self) -> None:
        super().__init__("no such webhook endpoint in your stores")


class DeliveryNotFound(WebhookError):
    code = "payment.delivery_not_found"
    status = 404

    def __init__(self) -> None:
        super().__init__("no such webhook delivery in your stores")


class WebhookUrlInvalid(WebhookError):
    code = "payment.webhook_url_invalid"

    def __init__(self, why: str) -> None:
        super().__init__(f"the webhook URL is not usable: {why}")


class UnknownEventType(WebhookError):
    code = "payment.unknown_event_type"

    def __init__(self, name: str, known: Iterable[str]) -> None:
        super().__init__(f"{name!r} is not an event type: choose from {', '.join(sorted(known))}")
