"""The compliance gate: one entry point called before every value-moving intent.

In this first version it screens both sides against a sanctions address list (a file of
addresses, one per line, ``#`` comments) and enforces a per-transfer cap per token. The
jurisdiction rules (identity tiers, rolling limits, travel rule) extend :meth:`check` without
changing its callers. Every decision says which rule decided and why, in words for the user.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

from seiwallet.addresses import parse_evm_address
from seiwallet.compliance.errors import ComplianceDenied, SanctionsListUnreadable
from seiwallet.errors import InvalidInput

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Movement:
    """Money about to move: who, from where, to where, what and how much (base units)."""

    kind: str  # "transfer" | "payment" | "refund" | ...
    user_id: str
    from_address: str
    to_address: str
    symbol: str
    decimals: int
    amount_units: int


@dataclass(frozen=True)
class Decision:
    allowed: bool
    rule: str
    reason: str

    def raise_if_denied(self) -> None:
        if not self.allowed:
            raise ComplianceDenied(self.rule, self.reason)


ALLOW = Decision(True, "allowed", "")


def load_sanctions_list(path: Path) -> frozenset[str]:
    """Addresses from a text file (one per line; blank lines and ``#`` comments ignored)."""
    try:
        lines = path.read_text().splitlines()
    except OSError as exc:
        raise SanctionsListUnreadable(str(path), exc.strerror or str(exc)) from None
    found: set[str] = set()
    for number, line in enumerate(lines, 1):
        text = line.split("#", 1)[0].strip()
        if not text:
            continue
        try:
            found.add(parse_evm_address(text).lower())
        except InvalidInput as exc:
            raise SanctionsListUnreadable(str(path), f"line {number}: {exc}") from None
    return frozenset(found)


class ComplianceGate:
    """Screens a movement; returns allow, or deny with the rule and a user-facing reason."""

    def __init__(
        self,
        *,
        sanctioned: Iterable[str] = (),
        per_transfer_cap: Mapping[str, Decimal] | None = None,
    ) -> None:
        self._sanctioned = frozenset(a.lower() for a in sanctioned)
        self._caps = {k.upper(): v for k, v in (per_transfer_cap or {}).items()}

    def check(self, movement: Movement) -> Decision:
        if movement.from_address.lower() in self._sanctioned:
            log.warning("compliance: sanctioned sender for user %s", movement.user_id)
            return Decision(
                False,
                "sanctions.sender",
                "this wallet cannot send money right now; contact support",
            )
        if movement.to_address.lower() in self._sanctioned:
            log.warning("compliance: sanctioned recipient refused for user %s", movement.user_id)
            return Decision(
                False,
                "sanctions.recipient",
                "this recipient cannot be paid: the address is on a sanctions list",
            )
        cap = self._caps.get(movement.symbol.upper())
        if cap is not None:
            cap_units = int(cap * (10**movement.decimals))
            if movement.amount_units > cap_units:
                return Decision(
                    False,
                    "limits.per_transfer",
                    f"the most you can send in one transfer is {cap:,} {movement.symbol}",
                )
        return ALLOW
