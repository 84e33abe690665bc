"""Errors of the transfers domain, each with a message that says what to do.

TransferError
├── UnknownToken                 not a token this wallet offers
├── RecipientInvalid             cannot be read as an address, phone number or e-mail
├── RecipientUnknown             no wallet (yet) behind this alias or sei1 address
├── SelfTransfer                 sending to your own wallet
├── InsufficientBalance          not enough of the token (available amount given)
├── IdempotencyConflict          same Idempotency-Key, different request
├── TransferNotFound
├── TransferNotAwaitingApproval  approved, expired or failed already
├── LookupRateLimited            too many recipient lookups
└── InvitationRateLimited        too many new aliases (people without a wallet) sent to
"""

from __future__ import annotations

from seiwallet.errors import SeiwalletError


class TransferError(SeiwalletError):
    code = "transfer.error"
    status = 400


class UnknownToken(TransferError):
    """Not a token this wallet offers."""

    code = "transfer.unknown_token"

    def __init__(self, symbol: str, offered: list[str]) -> None:
        super().__init__(f"{symbol!r} is not offered here: choose one of {', '.join(offered)}")


class RecipientInvalid(TransferError):
    """The recipient cannot be read as an address, a phone number or an e-mail address."""

    code = "transfer.recipient_invalid"
    status = 422

    def __init__(self, problem: str) -> None:
        super().__init__(problem)


class RecipientUnknown(TransferError):
    """No wallet can be found for this recipient."""

    code = "transfer.recipient_unknown"
    status = 404

    def __init__(self, problem: str) -> None:
        super().__init__(problem)


class SelfTransfer(TransferError):
    """Sending to your own wallet moves nothing."""

    code = "transfer.self"
    status = 422

    def __init__(self) -> None:
        super().__init__("this is your own wallet: choose someone else to send to")


class InsufficientBalance(TransferError):
    """Not enough of the token for this transfer."""

    code = "transfer.insufficient_balance"
    status = 422

    def __init__(self, available: str, symbol: str) -> None:
        self.available = available
        super().__init__(
            f"not enough {symbol}: you can send at most {available} {symbol} right now"
        )


class IdempotencyConflict(TransferError):
    """The Idempotency-Key was used before for a different request."""

    code = "transfer.idempotency_conflict"
    status = 422

    def __init__(self) -> None:
        super().__init__(
            "this Idempotency-Key was already used for a different transfer: "
            "use a new key for a new transfer"
        )


class TransferNotFound(TransferError):
    code = "transfer.not_found"
    status = 404

    def __init__(self) -> None:
        super().__init__("no such transfer in your wallet")


class TransferNotAwaitingApproval(TransferError):
    """The transfer was already approved, or can no longer be."""

    code = "transfer.not_awaiting_approval"
    status = 409

    def __init__(self, status: str) -> None:
        super().__init__(f"this transfer is {status.replace('_', ' ')}: it cannot be approved now")


class LookupRateLimited(TransferError):
    code = "transfer.lookup_rate_limited"
    status = 429

    def __init__(self, retry_after: int) -> None:
        self.retry_after = retry_after
        super().__init__("too many recipients looked up: wait a few minutes and try again")


class InvitationRateLimited(TransferError):
    """Too many transfers to distinct aliases that have no wallet yet.

    Each such transfer tells its sender that the alias has not joined, so their number per
    sender is what bounds anyone probing which phone numbers or e-mails have a wallet.
    """

    code = "transfer.invitation_rate_limited"
    status = 429

    def __init__(self, retry_after: int, limit: int) -> None:
        self.retry_after = retry_after
        super().__init__(
            f"you have sent to {limit} people who have not joined seiwallet yet recently: "
            "wait before inviting someone new, or send to their 0x address"
        )
