"""Errors of the compliance domain."""

from __future__ import annotations

from seiwallet.errors import SeiwalletError


class ComplianceError(SeiwalletError):
    code = "compliance.error"
    status = 400


class ComplianceDenied(ComplianceError):
    """The compliance gate refused this movement of money."""

    code = "compliance.denied"
    status = 403

    def __init__(self, rule: str, reason: str) -> None:
        self.rule = rule
        self.reason = reason
        super().__init__(reason)


class SanctionsListUnreadable(ComplianceError):
    code = "compliance.sanctions_list_unreadable"
    status = 500

    def __init__(self, path: str, problem: str) -> None:
        super().__init__(f"cannot read the sanctions list {path}: {problem}")
