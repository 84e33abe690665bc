"""Errors of the signer; each says which rule or check refused, never anything secret."""

from __future__ import annotations

from seiwallet.errors import InvalidInput, SeiwalletError


class SignerError(SeiwalletError):
    """Base of the signer's errors."""

    code = "signer.error"
    status = 500


class SignerUnavailable(SignerError):
    """The signer process cannot be reached."""

    code = "signer.unavailable"
    status = 503


class SignerUnauthorized(SignerError):
    """The caller did not present the signer's shared secret."""

    code = "signer.unauthorized"
    status = 401


class MasterKeyMismatch(SignerError):
    """The master key does not open this key store: the signer refuses to start."""

    code = "signer.master_key_mismatch"


class UnknownWallet(SignerError):
    code = "signer.unknown_wallet"
    status = 404

    def __init__(self, wallet_id: str) -> None:
        super().__init__(f"the signer holds no wallet {wallet_id!r}")


class IntentInvalid(SignerError, InvalidInput):
    """An intent that cannot be signed as given (unknown kind, bad field, wrong version)."""

    code = "signer.intent_invalid"
    status = 422


class ApprovalRefused(SignerError):
    """An approval did not verify: replayed, expired, tampered, foreign, wrong origin..."""

    code = "signer.approval_refused"
    status = 403

    def __init__(self, reason: str, *, authenticator_id: str | None = None) -> None:
        self.reason = reason
        self.authenticator_id = authenticator_id
        who = f" from authenticator {authenticator_id}" if authenticator_id else ""
        super().__init__(f"approval{who} refused: {reason}")


class PolicyDeclined(SignerError):
    """The wallet's policy declines the intent; ``rule`` names the rule that did."""

    code = "signer.policy_declined"
    status = 403

    def __init__(self, rule: str, detail: str) -> None:
        self.rule = rule
        self.detail = detail
        super().__init__(f"declined by the wallet's policy ({rule}): {detail}")
