"""The payment router, mirrored in Python: its value types, nonces and calldata.

The nonces here must equal the contract's ``paymentNonce`` / ``refundNonce`` views bit for bit
(the integration tests compare them on a live chain): the payer's wallet signs an EIP-3009
``ReceiveWithAuthorization`` whose nonce is :func:`payment_nonce`, and the router recomputes that
hash from the calldata, so a relayer cannot change any term of the payment. The calldata encoders
take their types from the compiled artifact's ABI, so Python and Solidity cannot drift apart
silently.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from eth_abi.abi import decode as abi_decode
from eth_abi.abi import encode as abi_encode
from eth_utils.crypto import keccak

from seiwallet.chain.artifacts import ContractArtifact, event_topic, load_artifact
from seiwallet.chain.errors import decode_revert_data
from seiwallet.chain.rpc import Log
from seiwallet.chain.terms import (
    checksummed,
    require_bytes32,
    require_uint,
)
from seiwallet.chain.tokens import Authorization3009
from seiwallet.errors import InvalidInput

#: Name of the router's artifact in the package.
ROUTER_CONTRACT = "PaymentRouter"

PAYMENT_TYPE = (
    "seiwallet.PaymentRouter.Payment(bytes32 invoiceId,address merchant,address token,"
    "uint256 amount,uint256 fee,address router,uint256 chainId)"
)
REFUND_TYPE = (
    "seiwallet.PaymentRouter.Refund(bytes32 paymentId,address payer,bytes32 refundId,"
    "uint256 amount,address router,uint256 chainId)"
)
PAYMENT_TYPEHASH = keccak(text=PAYMENT_TYPE)
REFUND_TYPEHASH = keccak(text=REFUND_TYPE)


@dataclass(frozen=True)
class Payment:
    """The terms a payer signs: ``amount_units`` of ``token``, ``fee_units`` of it to the platform.

    The merchant receives ``amount_units - fee_units``. Every field is part of the nonce, so
    none can be changed after the payer signed.
    """

    invoice_id: bytes
    merchant: str
    token: str
    amount_units: int
    fee_units: int

    def __post_init__(self) -> None:
        require_bytes32("invoice_id", self.invoice_id)
        object.__setattr__(self, "merchant", checksummed("merchant", self.merchant))
        object.__setattr__(self, "token", checksummed("token", self.token))
        require_uint("amount_units", self.amount_units)
        require_uint("fee_units", self.fee_units)
        # The router refuses these too; refusing them here saves a signature and a revert.
        if self.amount_units == 0:
            raise InvalidInput("a payment's amount must be positive")
        if self.fee_units > self.amount_units:
            raise InvalidInput("a payment's fee cannot exceed its amount")
        if int(self.merchant, 16) == 0:
            raise InvalidInput("a payment's merchant cannot be the zero address")

    @property
    def merchant_units(self) -> int:
        """What the merchant receives: the amount minus the fee."""
        return self.amount_units - self.fee_units

    def as_abi(self) -> tuple[bytes, str, str, int, int]:
        """The ``Payment`` struct as ABI values."""
        return (self.invoice_id, self.merchant, self.token, self.amount_units, self.fee_units)


@dataclass(frozen=True)
class Authorization:
    """An EIP-3009 ``ReceiveWithAuthorization`` signature by ``from_address`` to the router.

    ``signature`` is 65 bytes ``r‖s‖v`` for an externally owned account, or whatever the smart
    account's ERC-1271 ``isValidSignature`` accepts.
    """

    from_address: str
    valid_after: int
    valid_before: int
    signature: bytes

    def __post_init__(self) -> None:
        object.__setattr__(self, "from_address", checksummed("from_address", self.from_address))
        require_uint("valid_after", self.valid_after)
        require_uint("valid_before", self.valid_before)
        if not isinstance(self.signature, bytes) or not self.signature:
            raise InvalidInput("an authorization needs a non-empty signature")

    def as_abi(self) -> tuple[str, int, int, bytes]:
        """The ``Authorization`` struct as ABI values."""
        return (self.from_address, self.valid_after, self.valid_before, self.signature)


@dataclass(frozen=True)
class Refund:
    """A (partial) refund of a settled payment to the payer the router recorded for it.

    The merchant pays it and signs it; the signed nonce names the payment's terms, the payer,
    the refund id (one use each) and the amount.
    """

    payment: Payment
    payer: str
    refund_id: bytes
    amount_units: int

    def __post_init__(self) -> None:
        object.__setattr__(self, "payer", checksummed("payer", self.payer))
        require_bytes32("refund_id", self.refund_id)
        require_uint("amount_units", self.amount_units)
        if self.amount_units == 0:
            raise InvalidInput("a refund's amount must be positive")
        if self.amount_units > self.payment.amount_units:
            raise InvalidInput("a refund cannot exceed the amount paid")

    def as_abi(self) -> tuple[tuple[bytes, str, str, int, int], str, bytes, int]:
        """The ``Refund`` struct as ABI values."""
        return (self.payment.as_abi(), self.payer, self.refund_id, self.amount_units)


def payment_nonce(payment: Payment, *, router: str, chain_id: int) -> bytes:
    """The EIP-3009 nonce a payer signs for ``payment``; also the router's id of the payment.

    Binding the router and the chain id means a signature for one deployment or network is
    worthless on any other.
    """
    return keccak(
        abi_encode(
            [
                "bytes32",
                "bytes32",
                "address",
                "address",
                "uint256",
                "uint256",
                "address",
                "uint256",
            ],
            [
                PAYMENT_TYPEHASH,
                *payment.as_abi(),
                checksummed("router", router),
                chain_id,
            ],
        )
    )


def refund_nonce(refund: Refund, *, router: str, chain_id: int) -> bytes:
    """The EIP-3009 nonce the merchant signs to authorize ``refund``."""
    return keccak(
        abi_encode(
            ["bytes32", "bytes32", "address", "bytes32", "uint256", "address", "uint256"],
            [
                REFUND_TYPEHASH,
                payment_nonce(refund.payment, router=router, chain_id=chain_id),
                refund.payer,
                refund.refund_id,
                refund.amount_units,
                checksummed("router", router),
                chain_id,
            ],
        )
    )


def payment_authorization(
    payment: Payment,
    *,
    payer: str,
    router: str,
    chain_id: int,
    valid_after: int,
    valid_before: int,
) -> Authorization3009:
    """The EIP-3009 terms the payer signs (as ``ReceiveWithAuthorization``) to make ``payment``."""
    return Authorization3009(
        from_address=checksummed("payer", payer),
        to=checksummed("router", router),
        value=payment.amount_units,
        valid_after=valid_after,
        valid_before=valid_before,
        nonce=payment_nonce(payment, router=router, chain_id=chain_id),
    )


def refund_authorization(
    refund: Refund, *, router: str, chain_id: int, valid_after: int, valid_before: int
) -> Authorization3009:
    """The EIP-3009 terms the merchant signs (as ``ReceiveWithAuthorization``) for ``refund``."""
    return Authorization3009(
        from_address=refund.payment.merchant,
        to=checksummed("router", router),
        value=refund.amount_units,
        valid_after=valid_after,
        valid_before=valid_before,
        nonce=refund_nonce(refund, router=router, chain_id=chain_id),
    )


# -- calldata --------------------------------------------------------------------------------


def router_artifact() -> ContractArtifact:
    """The compiled ``PaymentRouter`` shipped with the package."""
    return load_artifact(ROUTER_CONTRACT)


def _encode(function: str, *args: Any) -> bytes:
    return router_artifact().encode_call(function, *args)


def encode_pay(payment: Payment, authorization: Authorization) -> bytes:
    """Calldata of ``pay(payment, authorization)``."""
    return _encode("pay", payment.as_abi(), authorization.as_abi())


def encode_pay_batch(items: Sequence[tuple[Payment, Authorization]]) -> bytes:
    """Calldata of ``payBatch(payments, authorizations)`` for (payment, authorization) pairs."""
    if not items:
        raise InvalidInput("a batch needs at least one payment")
    return _encode(
        "payBatch",
        [payment.as_abi() for payment, _ in items],
        [auth.as_abi() for _, auth in items],
    )


def encode_refund(refund: Refund, authorization: Authorization) -> bytes:
    """Calldata of ``refund(refund, authorization)``."""
    return _encode("refund", refund.as_abi(), authorization.as_abi())


@functools.cache
def event_topics() -> Mapping[str, bytes]:
    """The router's events by name → topic 0, for filtering logs."""
    artifact = router_artifact()
    names = [str(entry["name"]) for entry in artifact.abi if entry.get("type") == "event"]
    return {name: event_topic(artifact, name) for name in names}


@dataclass(frozen=True)
class PaymentFailure:
    """A payment of a ``payBatch`` that failed in its own frame (the router's ``PaymentFailed``).

    Its authorization is unused (the frame reverted) and nothing of it was recorded; ``reason``
    is the revert data, cut to 256 bytes by the router.
    """

    invoice_id: bytes
    payer: str
    reason: bytes

    @property
    def reason_hex(self) -> str:
        """The revert data as ``0x…``."""
        return "0x" + self.reason.hex()

    @property
    def reason_text(self) -> str | None:
        """The revert reason as text (see :func:`failure_reason`)."""
        return failure_reason(self.reason)


_ERROR_STRING = keccak(text="Error(string)")[:4]


def failure_reason(data: bytes | str | None) -> str | None:
    """The reason of a ``PaymentFailed``'s revert data, or ``None`` if it has none."""
    if isinstance(data, bytes | bytearray):
        data = bytes(data).hex()
    return decode_revert_data("0x" + data.removeprefix("0x")) if data else None


def payment_failures(logs: Iterable[Log], *, router: str) -> list[PaymentFailure]:
    """The ``PaymentFailed`` events ``router`` emitted in a receipt's logs, in order."""
    topic = "0x" + event_topics()["PaymentFailed"].hex()
    failures: list[PaymentFailure] = []
    for log in logs:
        if log.address.lower() != router.lower() or len(log.topics) != 3:
            continue
        if log.topics[0].lower() != topic:
            continue
        (reason,) = abi_decode(["bytes"], bytes.fromhex(log.data.removeprefix("0x")))
        failures.append(
            PaymentFailure(
                invoice_id=bytes.fromhex(log.topics[1].removeprefix("0x")),
                payer=checksummed("payer", "0x" + log.topics[2].removeprefix("0x")[-40:]),
                reason=bytes(reason),
            )
        )
    return failures
