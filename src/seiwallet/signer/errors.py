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


class AuditUpgradeRefused(SignerError):
    """The audit log does not verify, so the store was not upgraded: the signer will not start."""

    code = "signer.audit_upgrade_refused"
    status = 503


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


class ApprovalMalformed(ApprovalRefused):
    """An approval that cannot even be read (bad field, size or encoding); ``reason`` "malformed".

    Keeps its parent's ``code`` so every table that maps ``ApprovalRefused`` maps it too, and
    adds which field is wrong to the message (the approval's own data, nothing secret).
    """

    status = 422

    def __init__(self, problem: str, *, authenticator_id: str | None = None) -> None:
        super().__init__("malformed", authenticator_id=authenticator_id)
        self.problem = problem
        self.message = f"{self.message} ({problem})"
        self.args = (self.message,)


class PolicyDeclined(SignerError):
    """The wallet's policy declines the intent; ``rule`` names the rule that did."""

    code = "signer.policy_declined"
    status = 403

    def __init__(self, rule: str, detail: str) -> None:
        self.rule = rule
        self.detail = detail
        super().__init__(f"declined by the wallet's policy ({rule}): {detail}")


class PolicyInvalid(IntentInvalid):
    """A policy document that cannot be used; ``field`` is its JSON path (``tokens[0].address``)."""

    code = "signer.policy_invalid"

    def __init__(self, field: str, problem: str) -> None:
        self.field = field
        self.problem = problem
        super().__init__(f"policy field {field}: {problem}")


class PolicyVersionConflict(SignerError):
    """A policy change was approved against a version that is no longer the wallet's."""

    code = "signer.policy_version_conflict"
    status = 409

    def __init__(self, wallet_id: str, expected: int, actual: int) -> None:
        self.wallet_id = wallet_id
        self.expected = expected
        self.actual = actual
        super().__init__(
            f"wallet {wallet_id!r} is at policy version {actual}, not {expected}: the change was "
            "approved against an older policy; review the current one and approve again"
        )


class UnknownAuthenticator(SignerError):
    """The wallet has no authenticator with this id."""

    code = "signer.unknown_authenticator"
    status = 404

    def __init__(self, wallet_id: str, authenticator_id: str) -> None:
        self.wallet_id = wallet_id
        self.authenticator_id = authenticator_id
        super().__init__(f"wallet {wallet_id!r} has no authenticator {authenticator_id!r}")


class SignerSchemaMismatch(SignerError):
    """The signer's database was written by another (newer) version: the signer will not start."""

    code = "signer.schema_mismatch"
    status = 503

    def __init__(self, found: int, supported: int) -> None:
        self.found = found
        self.supported = supported
        super().__init__(
            f"the signer database is at schema version {found}, newer than this signer "
            f"supports ({supported}): upgrade seiwallet before starting the signer; nothing "
            "was changed"
        )


class MasterKeyUnavailable(SignerError):
    """The master key cannot be used: missing, unsafe file mode, wrong PIN, absent token..."""

    code = "signer.master_key_unavailable"
    status = 503

    def __init__(self, source: str, problem: str) -> None:
        self.source = source
        self.problem = problem
        super().__init__(f"master key {source}: {problem}")


class SealedKeyInvalid(SignerError):
    """A sealed key does not open: tampered, bound to another wallet, or another master key's."""

    code = "signer.sealed_key_invalid"

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(
            f"sealed key refused: {reason}; nothing was decrypted. Check that the signer runs "
            "with the master key this store was created with and that its storage is intact"
        )


class InvalidRecipientKey(IntentInvalid):
    """The public key given for a key export is not a usable P-256 or secp256k1 key."""

    code = "signer.export_recipient_invalid"

    def __init__(self, problem: str) -> None:
        self.problem = problem
        super().__init__(f"export recipient key refused: {problem}")


class ExportEnvelopeInvalid(SignerError, InvalidInput):
    """A key-export envelope is malformed, tampered, or not for the private key given."""

    code = "signer.export_envelope_invalid"
    status = 422

    def __init__(self, problem: str) -> None:
        self.problem = problem
        super().__init__(f"key export cannot be decrypted: {problem}")


class AlreadyExists(SignerError):
    """A wallet or authenticator id that is already taken."""

    code = "signer.already_exists"
    status = 409
