"""Typed chain errors, and the one table that maps JSON-RPC errors and reverts onto them.

Nodes word their errors differently (geth, anvil/reth, Sei's seid); :func:`error_from_rpc`
matches on the stable fragments, decodes revert data (``Error(string)`` and our contracts'
custom errors), and returns the most specific error, whose message says what to do.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any, ClassVar

from eth_abi.abi import decode as abi_decode
from eth_utils.crypto import keccak

from seiwallet.errors import SeiwalletError


class ChainError(SeiwalletError):
    """Base of errors from the chain, its JSON-RPC endpoint or our contracts."""

    code = "chain.error"
    status = 502


class RpcUnavailable(ChainError):
    """The endpoint could not be reached (after retrying transport failures)."""

    code = "chain.rpc_unavailable"
    status = 503

    def __init__(self, url: str, reason: str) -> None:
        self.url = url
        super().__init__(
            f"cannot reach the JSON-RPC endpoint {url} ({reason}): "
            "check SEIWALLET_RPC_URL, or start the local chain with `seiwallet chain`"
        )


class ChainIdMismatch(ChainError):
    """The endpoint serves a different chain than the configured profile expects."""

    code = "chain.id_mismatch"

    def __init__(self, url: str, expected: int, actual: int, profile: str) -> None:
        self.expected, self.actual = expected, actual
        super().__init__(
            f"the endpoint {url} serves chain id {actual}, but profile {profile!r} expects "
            f"{expected}: point SEIWALLET_RPC_URL at a {profile} node or change SEIWALLET_PROFILE"
        )


class DeploymentMissing(ChainError):
    """Our contracts are not known on this network (no manifest, or nothing at the address)."""

    code = "chain.deployment_missing"
    status = 503


class RpcError(ChainError):
    """The node answered with a JSON-RPC error object."""

    code = "chain.rpc_error"

    def __init__(self, message: str, *, rpc_code: int | None = None, data: Any = None) -> None:
        self.rpc_code = rpc_code
        self.data = data
        super().__init__(message)


class NonceTooLow(RpcError):
    """The transaction's nonce was already used: resynchronise the nonce and resend."""

    code = "chain.nonce_too_low"


class ReplacementUnderpriced(RpcError):
    """A transaction with this nonce is pending and the new fees do not outbid it."""

    code = "chain.replacement_underpriced"


class InsufficientFunds(RpcError):
    """The sender cannot pay value plus gas: top up the sponsor account."""

    code = "chain.insufficient_funds"


class GasTooLow(RpcError):
    """The gas limit is below what the transaction needs (intrinsic gas or block limit)."""

    code = "chain.gas_too_low"


class ExecutionReverted(RpcError):
    """The call or transaction reverted; ``reason`` is the decoded revert reason, if any."""

    code = "chain.reverted"
    status = 422
    #: The revert reason this class stands for (substring match), for the table below.
    reason_fragment: ClassVar[str | None] = None

    def __init__(self, reason: str | None, *, rpc_code: int | None = None, data: Any = None):
        self.reason = reason
        super().__init__(self._describe(reason), rpc_code=rpc_code, data=data)

    def _describe(self, reason: str | None) -> str:
        return f"the transaction reverted: {reason}" if reason else "the transaction reverted"


def _reverted(
    name: str, code: str, fragment: str, advice: str, status: int = 422
) -> type[ExecutionReverted]:
    """Build a revert class with a fixed human message for a known revert reason."""

    def _describe(self: ExecutionReverted, reason: str | None) -> str:
        return advice

    return type(
        name,
        (ExecutionReverted,),
        {
            "code": code,
            "status": status,
            "reason_fragment": fragment,
            "_describe": _describe,
            "__doc__": advice,
            "__module__": __name__,
        },
    )


# -- Circle FiatToken v2.2 --------------------------------------------------------------------
AddressBlacklisted = _reverted(
    "AddressBlacklisted",
    "token.blacklisted",
    "Blacklistable: account is blacklisted",
    "the token issuer has blacklisted the sender or the recipient: this token cannot move "
    "to or from that address",
    403,
)
TokenPaused = _reverted(
    "TokenPaused",
    "token.paused",
    "Pausable: paused",
    "the token issuer has paused all transfers of this token: try again when it is resumed",
    503,
)
AuthorizationUsed = _reverted(
    "AuthorizationUsed",
    "token.authorization_used",
    "authorization is used or canceled",
    "this transfer authorization was already used or canceled: it cannot move funds again",
    409,
)
AuthorizationExpired = _reverted(
    "AuthorizationExpired",
    "token.authorization_expired",
    "authorization is expired",
    "the transfer authorization has expired: approve the payment again",
)
AuthorizationNotYetValid = _reverted(
    "AuthorizationNotYetValid",
    "token.authorization_not_yet_valid",
    "authorization is not yet valid",
    "the transfer authorization is not valid yet: wait for its start time or approve again",
)
InvalidAuthorizationSignature = _reverted(
    "InvalidAuthorizationSignature",
    "token.invalid_signature",
    "invalid signature",
    "the authorization's signature does not match its terms or signer: the payment terms were "
    "changed after approval, or another key signed",
)
TransferExceedsBalance = _reverted(
    "TransferExceedsBalance",
    "token.insufficient_balance",
    "transfer amount exceeds balance",
    "the payer's token balance is too low for this amount",
)
CallerMustBePayee = _reverted(
    "CallerMustBePayee",
    "token.caller_must_be_payee",
    "caller must be the payee",
    "receiveWithAuthorization must be sent by its recipient: pay through the payment router",
)

# -- our PaymentRouter (custom errors, matched by selector) ------------------------------------
InvoiceAlreadySettled = _reverted(
    "InvoiceAlreadySettled",
    "router.invoice_already_settled",
    "InvoiceAlreadySettled",
    "this invoice is already settled on-chain: it cannot be paid twice",
    409,
)
FeeExceedsAmount = _reverted(
    "FeeExceedsAmount",
    "router.fee_exceeds_amount",
    "FeeExceedsAmount",
    "the payment's fee is larger than its amount",
)
UnknownPayment = _reverted(
    "UnknownPayment",
    "router.unknown_payment",
    "UnknownPayment",
    "the router has no settled payment with these terms to refund",
    404,
)
RefundExceedsPayment = _reverted(
    "RefundExceedsPayment",
    "router.refund_exceeds_payment",
    "RefundExceedsPayment",
    "the refunds would exceed the amount paid for this invoice",
)

PayerMismatch = _reverted(
    "PayerMismatch",
    "router.payer_mismatch",
    "PayerMismatch",
    "a refund must be authorized by the merchant that was paid",
    403,
)
ZeroAmount = _reverted(
    "ZeroAmount",
    "router.zero_amount",
    "ZeroAmount",
    "a payment or refund must move a positive amount",
)
BatchGasTooLow = _reverted(
    "BatchGasTooLow",
    "router.batch_gas_too_low",
    "BatchGasTooLow",
    "a payment in the batch ran out of gas: resend the batch with a higher gas limit",
)

# -- our InviteEscrow (custom errors, matched by selector) -------------------------------------
InvitationExists = _reverted(
    "InvitationExists",
    "escrow.invitation_exists",
    "InvitationExists",
    "an invitation with exactly these terms is already in the escrow",
    409,
)
UnknownInvitation = _reverted(
    "UnknownInvitation",
    "escrow.unknown_invitation",
    "UnknownInvitation",
    "the escrow holds no invitation with this id",
    404,
)
InvitationAlreadySettled = _reverted(
    "InvitationAlreadySettled",
    "escrow.invitation_settled",
    "InvitationAlreadySettled",
    "this invitation was already claimed or returned to its sender",
    409,
)
InvitationExpired = _reverted(
    "InvitationExpired",
    "escrow.invitation_expired",
    "InvitationExpired",
    "this invitation's deadline has passed: it can only go back to its sender now",
    409,
)
InvitationNotExpired = _reverted(
    "InvitationNotExpired",
    "escrow.invitation_not_expired",
    "InvitationNotExpired",
    "this invitation's deadline has not passed yet: it cannot be returned to its sender before",
    409,
)
NotReleaser = _reverted(
    "NotReleaser",
    "escrow.not_releaser",
    "NotReleaser",
    "only the escrow's releaser may release or register invitations: check the releaser key",
    403,
)
AuthorizationNotUsed = _reverted(
    "AuthorizationNotUsed",
    "escrow.authorization_not_used",
    "AuthorizationNotUsed",
    "the token has not seen this invitation's authorization used: deposit it instead",
    409,
)
EscrowUnderfunded = _reverted(
    "EscrowUnderfunded",
    "escrow.underfunded",
    "EscrowUnderfunded",
    "the escrow does not hold the money for this invitation beyond its open invitations: the "
    "authorization was canceled, not used, or its transfer went elsewhere",
    409,
)
DeadlineOutOfRange = _reverted(
    "DeadlineOutOfRange",
    "escrow.deadline_out_of_range",
    "DeadlineOutOfRange",
    "the invitation's deadline has passed already (or is beyond 2**64 - 1 seconds)",
)
ValueTooLarge = _reverted(
    "ValueTooLarge",
    "escrow.value_too_large",
    "ValueTooLarge",
    "an invitation holds at most 2**96 - 1 base units of a token",
)
ZeroClaimHash = _reverted(
    "ZeroClaimHash",
    "escrow.zero_claim_hash",
    "ZeroClaimHash",
    "an invitation needs a claim hash (of a salt and the recipient's alias)",
)

# -- our InvoiceDeposits (custom errors, matched by selector) ---------------------------------
NothingToSweep = _reverted(
    "NothingToSweep",
    "deposits.nothing_to_sweep",
    "NothingToSweep",
    "the invoice's deposit address holds none of this token: nothing to sweep",
    409,
)
RescueOfPaymentToken = _reverted(
    "RescueOfPaymentToken",
    "deposits.rescue_of_payment_token",
    "RescueOfPaymentToken",
    "the invoice's own token leaves its deposit address by sweep (which takes the fee), not by "
    "rescue",
)
NotDepositsContract = _reverted(
    "NotDepositsContract",
    "deposits.not_creator",
    "NotCreator",
    "a deposit box obeys only the InvoiceDeposits contract that made it: call sweep or rescue",
    403,
)

#: Known revert reasons, most specific first; the first whose fragment occurs wins.
KNOWN_REVERTS: tuple[type[ExecutionReverted], ...] = (
    AddressBlacklisted,
    TokenPaused,
    AuthorizationUsed,
    AuthorizationExpired,
    AuthorizationNotYetValid,
    InvalidAuthorizationSignature,
    TransferExceedsBalance,
    CallerMustBePayee,
    InvoiceAlreadySettled,
    FeeExceedsAmount,
    UnknownPayment,
    RefundExceedsPayment,
    PayerMismatch,
    ZeroAmount,
    BatchGasTooLow,
    InvitationExists,
    UnknownInvitation,
    InvitationAlreadySettled,
    InvitationExpired,
    InvitationNotExpired,
    NotReleaser,
    AuthorizationNotUsed,
    EscrowUnderfunded,
    DeadlineOutOfRange,
    ValueTooLarge,
    ZeroClaimHash,
    NothingToSweep,
    RescueOfPaymentToken,
    NotDepositsContract,
)


class TransactionFailed(ChainError):
    """A transaction was mined but failed (status 0)."""

    code = "chain.transaction_failed"

    def __init__(self, tx_hash: str, reason: str | None = None) -> None:
        self.tx_hash = tx_hash
        self.reason = reason
        detail = f": {reason}" if reason else ""
        super().__init__(f"transaction {tx_hash} was mined but failed{detail}")


class TransactionTimeout(ChainError):
    """A transaction was not mined within the time we waited."""

    code = "chain.transaction_timeout"
    status = 504

    def __init__(self, tx_hash: str, seconds: float) -> None:
        self.tx_hash = tx_hash
        super().__init__(
            f"transaction {tx_hash} was not mined within {seconds:g} s: "
            "it may be stuck; it will be replaced with higher fees"
        )


# -- decoding ---------------------------------------------------------------------------------
_ERROR_STRING_SELECTOR = keccak(text="Error(string)")[:4]
_PANIC_SELECTOR = keccak(text="Panic(uint256)")[:4]

#: Custom errors of our contracts (PaymentRouter, InviteEscrow and InvoiceDeposits, which share
#: ``ZeroAddress``, ``ZeroAmount`` and ``FeeExceedsAmount``), by 4-byte selector → name (their
#: arguments are not needed to choose the error class; they stay in ``data`` for logs).
CUSTOM_ERROR_SIGNATURES = (
    "InvoiceAlreadySettled(bytes32)",
    "FeeExceedsAmount()",
    "ZeroAddress()",
    "ZeroAmount()",
    "BatchGasTooLow()",
    "UnknownPayment(bytes32)",
    "RefundExceedsPayment(bytes32,uint256,uint256)",
    "OnlySelf()",
    "LengthMismatch()",
    "PayerMismatch()",
    "ReentrancyGuardReentrantCall()",
    "SafeERC20FailedOperation(address)",
    "OwnableUnauthorizedAccount(address)",
    "OwnableInvalidOwner(address)",
    # InviteEscrow
    "InvitationExists(bytes32)",
    "UnknownInvitation(bytes32)",
    "InvitationAlreadySettled(bytes32)",
    "InvitationExpired(bytes32,uint256)",
    "InvitationNotExpired(bytes32,uint256)",
    "NotReleaser(address)",
    "AuthorizationNotUsed(bytes32)",
    "EscrowUnderfunded(address,uint256,uint256)",
    "DeadlineOutOfRange(uint256)",
    "ValueTooLarge(uint256)",
    "ZeroClaimHash()",
    # InvoiceDeposits and its DepositBox (with OpenZeppelin's errors they can raise)
    "NothingToSweep(bytes32,address)",
    "RescueOfPaymentToken(address)",
    "NotCreator(address)",
    "SafeCastOverflowedUintDowncast(uint8,uint256)",
    "FailedDeployment()",
    "FailedCall()",
    "InsufficientBalance(uint256,uint256)",
)
_CUSTOM_ERRORS: Mapping[bytes, str] = {
    keccak(text=signature)[:4]: signature.split("(")[0] for signature in CUSTOM_ERROR_SIGNATURES
}


def decode_revert_data(data: Any) -> str | None:
    """Turn ABI-encoded revert data into a reason string, or ``None`` if there is none."""
    if isinstance(data, dict):  # some nodes nest it: {"data": "0x..."}
        data = data.get("data")
    if not isinstance(data, str) or not data.startswith("0x") or len(data) < 10:
        return None
    try:
        raw = bytes.fromhex(data[2:])
    except ValueError:
        return None
    selector, body = raw[:4], raw[4:]
    try:
        # Not strict: contracts built with older solc (FiatToken, 0.6) leave stray bytes in
        # the padding after a revert string ("…exceeds balance" ends in ``…0041``).
        if selector == _ERROR_STRING_SELECTOR:
            return str(abi_decode(["string"], body, strict=False)[0])
        if selector == _PANIC_SELECTOR:
            return f"Panic(0x{abi_decode(['uint256'], body, strict=False)[0]:02x})"
    except Exception:
        return None
    return _CUSTOM_ERRORS.get(selector, f"custom error 0x{selector.hex()}")


_REVERT_PREFIX = re.compile(r"^(execution reverted|reverted)(: )?", re.IGNORECASE)

#: Node error messages (lower-cased fragments) → error class, for errors that are not reverts.
_RPC_FRAGMENTS: tuple[tuple[str, Callable[..., RpcError]], ...] = (
    ("nonce too low", NonceTooLow),
    ("nonce has already been used", NonceTooLow),
    ("replacement transaction underpriced", ReplacementUnderpriced),
    ("transaction underpriced", ReplacementUnderpriced),
    ("already known", ReplacementUnderpriced),
    ("insufficient funds", InsufficientFunds),
    ("intrinsic gas too low", GasTooLow),
    ("exceeds block gas limit", GasTooLow),
    ("gas too low", GasTooLow),
    ("out of gas", GasTooLow),
    ("outofgas", GasTooLow),  # anvil: "EVM error OutOfGas" (a call given too little gas)
)


def revert_error(reason: str | None, *, rpc_code: int | None = None, data: Any = None) -> RpcError:
    """The most specific :class:`ExecutionReverted` subclass for a revert reason."""
    if reason:
        for cls in KNOWN_REVERTS:
            if cls.reason_fragment and cls.reason_fragment in reason:
                return cls(reason, rpc_code=rpc_code, data=data)
    return ExecutionReverted(reason, rpc_code=rpc_code, data=data)


def error_from_rpc(error: Mapping[str, Any]) -> RpcError:
    """Map a JSON-RPC error object to the most specific typed error (the one mapping table)."""
    message = str(error.get("message", "")) or "unknown JSON-RPC error"
    rpc_code = error.get("code")
    data = error.get("data")
    lowered = message.lower()
    if "revert" in lowered or rpc_code == 3:
        reason = decode_revert_data(data)
        if reason is None:
            stripped = _REVERT_PREFIX.sub("", message).strip()
            reason = stripped or None
        return revert_error(
            reason, rpc_code=rpc_code if isinstance(rpc_code, int) else None, data=data
        )
    code = rpc_code if isinstance(rpc_code, int) else None
    for fragment, cls in _RPC_FRAGMENTS:
        if fragment in lowered:
            return cls(message, rpc_code=code, data=data)
    return RpcError(message, rpc_code=code, data=data)
