"""The root of every error seiwallet raises on purpose.

Each domain has a base class below :class:`SeiwalletError`; specific errors take typed arguments,
build a message that says what went wrong *and what to do*, and carry a stable dotted ``code``
that the API maps to RFC 9457 problem details and the CLI prints before exiting non-zero.
Anything that is not a ``SeiwalletError`` is a bug.

The tree (leaves in their own modules)::

    SeiwalletError
    ├── ConfigError                       config.py: a wrong or missing setting
    ├── InvalidInput (+ ValueError)       bad input at the edge
    │   ├── InvalidAddress                addresses.py
    │   └── InvalidAmount                 money.py
    ├── DatabaseError                     db/: unreachable database, unapplied migrations
    ├── SignerError                       signer/errors.py: the isolated signer
    │   ├── ApprovalRefused               an approval that did not verify (reason given)
    │   ├── PolicyDeclined                the wallet's policy declined (rule given)
    │   ├── IntentInvalid (+ InvalidInput)
    │   └── MasterKeyMismatch / SignerUnauthorized / SignerUnavailable / AlreadyExists ...
    └── ChainError                        chain/errors.py
        ├── RpcUnavailable                transport failures after retries
        ├── ChainIdMismatch               RPC endpoint is another chain than the profile
        ├── RpcError                      a JSON-RPC error object
        │   ├── NonceTooLow / ReplacementUnderpriced / InsufficientFunds / GasTooLow
        │   └── ExecutionReverted          revert reason decoded
        │       ├── AddressBlacklisted / TokenPaused / Authorization* (FiatToken)
        │       └── InvoiceAlreadySettled / FeeExceedsAmount / Refund* (PaymentRouter)
        ├── TransactionFailed             mined with status 0
        └── DeploymentMissing             no deployment manifest for the profile
"""

from __future__ import annotations

from typing import ClassVar


class SeiwalletError(Exception):
    """Root of every deliberate seiwallet error; ``code`` is stable, ``str()`` is for humans."""

    code: ClassVar[str] = "seiwallet.error"
    #: HTTP status the API uses for this error when it reaches an edge.
    status: ClassVar[int] = 500

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message

    def message_in(self, language: str | None) -> str:
        """The message for a reader of ``language``; errors whose words come from data with
        translations (a rule file's notice) override this, the rest are translated at the edge."""
        del language
        return str(self)


class ConfigError(SeiwalletError):
    """A setting is missing or wrong; the message names the setting and how to fix it."""

    code = "config.invalid"

    def __init__(self, setting: str, problem: str) -> None:
        self.setting = setting
        super().__init__(f"setting {setting}: {problem}")


class InvalidInput(SeiwalletError, ValueError):
    """Input from a person or a client that cannot be used as given."""

    code = "input.invalid"
    status = 422


class DatabaseError(SeiwalletError):
    """The database cannot be reached or is not at the expected migration."""

    code = "database.unavailable"
    status = 503
