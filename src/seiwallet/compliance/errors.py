"""Errors of the compliance domain.

ComplianceError
├── ComplianceDenied              the gate refused a movement (rule and reason given)
│   └── ComplianceNeedsInformation    it may go ahead once the named data is given
├── SanctionsListUnreadable       a sanctions list file cannot be read or parsed
├── RuleFileInvalid               a jurisdiction rule file is malformed (file, line, field)
├── UnknownJurisdiction (+ InvalidInput)  a country or jurisdiction code we have no rules for
├── TravelRuleError (+ InvalidInput)      travel-rule data or an ownership proof refused
├── KycUnavailable                the identity provider cannot be used here
└── NotAnOperator                 an operator page asked by someone who is not one
"""

from __future__ import annotations

from collections.abc import Mapping

from seiwallet.errors import InvalidInput, SeiwalletError


class ComplianceError(SeiwalletError):
    code = "compliance.error"
    status = 400


class ComplianceDenied(ComplianceError):
    """The compliance gate refused this movement of money."""

    code = "compliance.denied"
    status = 403

    def __init__(
        self, rule: str, reason: str, translations: Mapping[str, str] | None = None
    ) -> None:
        self.rule = rule
        self.reason = reason
        #: The reason in other languages, by tag, when it is the operator's own text (a rule
        #: file's notice with its translations).
        self.translations = dict(translations or {})
        super().__init__(reason)

    def message_in(self, language: str | None) -> str:
        by_tag = {tag.lower(): text for tag, text in self.translations.items()}
        parts = (language or "").strip().replace("_", "-").lower().split("-")
        for end in range(len(parts), 0, -1):
            found = by_tag.get("-".join(parts[:end]))
            if found is not None:
                return found
        return self.reason


class ComplianceNeedsInformation(ComplianceDenied):
    """More information is needed before this movement of money can go ahead."""

    code = "compliance.needs_information"
    status = 409

    def __init__(self, rule: str, reason: str, needs: tuple[str, ...]) -> None:
        self.needs = needs
        super().__init__(rule, reason)


class SanctionsListUnreadable(ComplianceError):
    code = "compliance.sanctions_list_unreadable"
    status = 500

    def __init__(self, path: str, problem: str) -> None:
        super().__init__(f"cannot read the sanctions list {path}: {problem}")


class RuleFileInvalid(ComplianceError):
    """A jurisdiction rule file is malformed; the rules in force stay as they were."""

    code = "compliance.rule_file_invalid"
    status = 500

    def __init__(self, path: str, line: int | None, field: str | None, problem: str) -> None:
        self.path = path
        self.line = line
        self.field = field
        where = f"{path}, line {line}" if line else path
        what = f" (field {field})" if field else ""
        super().__init__(
            f"{where}{what}: {problem}; fix the file, the previous rules stay in force"
        )


class UnknownJurisdiction(ComplianceError, InvalidInput):
    """No rules exist for this country or jurisdiction code."""

    code = "compliance.unknown_jurisdiction"
    status = 404

    def __init__(self, given: str, known: list[str]) -> None:
        self.given = given
        super().__init__(
            f"unknown country or jurisdiction code {given[:16]!r}: use an ISO 3166-1 alpha-2 "
            f"country code (e.g. FR) or one of {', '.join(known)}"
        )


class TravelRuleError(ComplianceError, InvalidInput):
    """Travel-rule information or an ownership proof that cannot be accepted."""

    code = "compliance.travel_rule_invalid"
    status = 422


class KycUnavailable(ComplianceError):
    """Identity verification cannot be done here."""

    code = "compliance.kyc_unavailable"
    status = 404


class NotAnOperator(ComplianceError):
    """Only the platform's operators can see this."""

    code = "compliance.not_operator"
    status = 404

    def __init__(self) -> None:
        super().__init__("there is no such page")
