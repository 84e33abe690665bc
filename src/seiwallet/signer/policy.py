"""A wallet's policy and its evaluation: limits, recipient lists and k-of-n approval quorums.

A policy is a JSON document, kept with the wallet in the signer's store and changed only by a
``policy.update`` intent approved under the current policy. :meth:`Policy.parse` validates it and
names the bad field (``tokens[0].daily_limit``); :func:`evaluate` decides one intent and, when it
declines, names the rule that did (``per_transaction_limit``, ``daily_limit``, ``denylist``,
``allowlist``, ``quorum``), so the user and the audit log learn why.

The document (amounts in the token's base units, as JSON integers or decimal strings; every key
but ``tokens`` entries' ``chain_id``/``address`` and rules' ``required`` is optional)::

    {
      "format": 1,
      "tokens": [{"chain_id": 1329, "address": "0x…",
                  "per_transaction_limit": "500000000", "daily_limit": "2000000000"}],
      "allowlist": ["0x…"],             # present: every recipient must be on it
      "denylist": ["0x…"],
      "quorum": [{"min_amount": "1000000000", "chain_id": 1329, "token": "0x…",
                  "required": 2, "of": ["auth-1", "auth-2", "auth-3"]}],
      "intents": {"policy.update": {"required": 2, "of": "any"},
                  "key.export": {"required": 2, "of": ["auth-1", "auth-2"]}},
      "delegates": {"staff-7": {"intents": ["router.refund"],
                                "tokens": [{"chain_id": 1329, "address": "0x…",
                                            "max_amount": "50000000"}]}}
    }

Every intent needs at least the default quorum, one approval from any active authenticator; it
cannot be configured away. A spend must also meet every ``quorum`` rule it falls under (same
token if the rule names one, amount from ``min_amount``), and any intent its kind's rule under
``intents``. Tokens without an entry under ``tokens`` have no limits, only quorums.

A *delegate* is an authenticator whose approval counts only within its scope: for the intent kinds
it lists (spending kinds only) and, per token it lists, up to ``max_amount`` base units a time —
a shop's cashier approving small refunds from the merchant's payout wallet with their own passkey.
Outside its scope a delegate's approval counts for nothing: not for larger amounts, other tokens
or kinds, and never for changing the policy, the authenticators or exporting the key (those are
not spending kinds). A scope is written when the authenticator is added (the owner approves the
two together, see the service) and can only be changed by an approved ``policy.update``.

Limits are hard caps that approvals cannot lift. The daily limit is a rolling 24 hours: the
caller passes what the wallet spent of the token in the window, read in the transaction that
locks the wallet, so concurrent requests cannot both fit under the limit (see ``store``).
Evaluation is pure and allocation-light: it runs for every intent in a signing batch.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence, Set
from dataclasses import dataclass, field, replace
from typing import Any, Final

from seiwallet.addresses import InvalidAddress, parse_evm_address
from seiwallet.signer.errors import IntentInvalid, PolicyDeclined, PolicyInvalid

__all__ = [
    "DAILY_WINDOW_SECONDS",
    "DEFAULT_QUORUM",
    "DELEGABLE_KINDS",
    "INTENT_KINDS",
    "MAX_UNITS",
    "Decision",
    "DelegateScope",
    "Policy",
    "QuorumRule",
    "Spend",
    "TokenLimits",
    "evaluate",
    "parse_delegate_scope",
]

#: The rolling window of ``daily_limit``.
DAILY_WINDOW_SECONDS: Final = 24 * 60 * 60

#: Amounts are uint256 on chain; nothing larger can be a limit or a spend.
MAX_UNITS: Final = 2**256 - 1

#: The intent kinds a policy may give rules of their own under ``intents``.
INTENT_KINDS: Final = frozenset(
    {
        "erc3009.transfer",
        "router.pay",
        "router.refund",
        "safe.sign",
        "message.sign",
        "policy.update",
        "key.export",
    }
)

#: What a delegate may be allowed to approve: intents that move a token, so that every one of
#: them has an amount its scope can bound.
DELEGABLE_KINDS: Final = frozenset({"erc3009.transfer", "router.pay", "router.refund"})

POLICY_FORMAT: Final = 1

# Bounds on a document's size: a policy is evaluated for every intent and stored per wallet.
_MAX_LIST_ENTRIES: Final = 10_000
_MAX_RULES: Final = 100
_MAX_ID_CHARS: Final = 128

_TOP_LEVEL_KEYS: Final = frozenset(
    {"format", "tokens", "allowlist", "denylist", "quorum", "intents", "delegates"}
)
_DELEGATE_KEYS: Final = frozenset({"intents", "tokens"})
_DELEGATE_TOKEN_KEYS: Final = frozenset({"chain_id", "address", "max_amount"})
_TOKEN_KEYS: Final = frozenset({"chain_id", "address", "per_transaction_limit", "daily_limit"})
_QUORUM_KEYS: Final = frozenset({"min_amount", "chain_id", "token", "required", "of"})
_INTENT_RULE_KEYS: Final = frozenset({"required", "of"})


@dataclass(frozen=True, slots=True)
class Spend:
    """Money an intent moves out of the wallet: what limits, lists and quorums look at.

    ``token`` and ``recipient`` are checksummed ``0x`` addresses (the intents module parses
    them); the policy compares them case-insensitively all the same, so a differently cased
    address can never slip past the denylist.
    """

    chain_id: int
    token: str
    amount_units: int
    recipient: str

    def __post_init__(self) -> None:
        if type(self.chain_id) is not int or self.chain_id <= 0:
            raise IntentInvalid(f"chain id must be a positive integer, not {self.chain_id!r}")
        if type(self.amount_units) is not int or not 0 <= self.amount_units <= MAX_UNITS:
            raise IntentInvalid(
                f"amount must be an integer of base units from 0 to 2**256-1, "
                f"not {self.amount_units!r}"
            )
        _check_address("token", self.token)
        _check_address("recipient", self.recipient)


def _check_address(name: str, value: object) -> None:
    if not isinstance(value, str) or len(value) != 42 or value[:2] != "0x":
        raise IntentInvalid(f"{name} must be a 0x address, not {value!r}")


@dataclass(frozen=True, slots=True)
class TokenLimits:
    """The limits of one token on one chain, in its base units; ``None`` is no limit."""

    chain_id: int
    address: str
    per_transaction_limit: int | None = None
    daily_limit: int | None = None


@dataclass(frozen=True, slots=True)
class QuorumRule:
    """``required`` approvals from the authenticators ``of`` (``None``: any active one).

    As a spend rule it applies from ``min_amount`` base units, to the token it names if any.
    """

    required: int
    of: tuple[str, ...] | None = None
    min_amount: int = 0
    chain_id: int | None = None
    token: str | None = None
    #: ``of`` as a set, for counting.
    of_set: frozenset[str] | None = field(init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "of_set", None if self.of is None else frozenset(self.of))

    def applies_to(self, spend: Spend) -> bool:
        """Whether this spend rule covers ``spend``."""
        if spend.amount_units < self.min_amount:
            return False
        if self.chain_id is not None and spend.chain_id != self.chain_id:
            return False
        return self.token is None or spend.token.lower() == self.token.lower()

    def count(self, approvals: Set[str], active: Set[str]) -> int:
        """How many of ``approvals`` count for this rule: active, and listed if it lists."""
        counted = 0
        for authenticator_id in approvals:
            if authenticator_id in active and (
                self.of_set is None or authenticator_id in self.of_set
            ):
                counted += 1
        return counted

    def describe_need(self, has: int) -> str:
        """``needs k of [a, b], has m``: the wording of a quorum decline."""
        among = "any active authenticator" if self.of is None else f"[{', '.join(self.of)}]"
        return f"needs {self.required} of {among}, has {has}"


@dataclass(frozen=True, slots=True)
class DelegateScope:
    """What a delegate's approval counts for: ``intents`` (kinds), and per ``(chain id, token)``
    (lowercase address) at most ``max_amount`` base units a time."""

    intents: frozenset[str]
    tokens: Mapping[tuple[int, str], int]

    def covers(self, kind: str, spend: Spend | None) -> bool:
        """Whether an approval by the delegate counts for this intent."""
        if kind not in self.intents or spend is None:
            return False
        return self.covers_spend(kind, spend.chain_id, spend.token, spend.amount_units)

    def covers_spend(self, kind: str, chain_id: int, token: str, amount_units: int) -> bool:
        if kind not in self.intents:
            return False
        cap = self.tokens.get((chain_id, token.lower()))
        return cap is not None and amount_units <= cap

    def describe(self) -> str:
        caps = ", ".join(
            f"{cap} base units of {token} on chain {chain_id}"
            for (chain_id, token), cap in sorted(self.tokens.items())
        )
        return f"only {', '.join(sorted(self.intents))} of up to {caps}"


#: One approval from any active authenticator: what every intent needs, whatever the policy.
DEFAULT_QUORUM: Final = QuorumRule(required=1)


@dataclass(frozen=True, slots=True)
class Decision:
    """The policy's answer for one intent; when declined, ``rule`` and ``detail`` say why."""

    allowed: bool
    rule: str | None = None
    detail: str | None = None

    @property
    def error(self) -> PolicyDeclined | None:
        """The error to raise or report for a decline, ``None`` when allowed."""
        if self.allowed:
            return None
        return PolicyDeclined(self.rule or "policy", self.detail or "declined")

    def raise_if_declined(self) -> None:
        """Raise :class:`PolicyDeclined` naming the rule, if the intent was declined."""
        error = self.error
        if error is not None:
            raise error


ALLOWED: Final = Decision(True)


@dataclass(frozen=True, slots=True)
class Policy:
    """A wallet's validated policy; build it with :meth:`parse` (or :meth:`default`)."""

    tokens: tuple[TokenLimits, ...] = ()
    #: ``None``: any recipient not on the denylist; a tuple: only these.
    allowlist: tuple[str, ...] | None = None
    denylist: tuple[str, ...] = ()
    quorum: tuple[QuorumRule, ...] = ()
    intents: Mapping[str, QuorumRule] = field(default_factory=dict)
    #: Authenticators whose approvals count only within a scope, by authenticator id.
    delegates: Mapping[str, DelegateScope] = field(default_factory=dict)
    # Lookups built once, in lowercase so that address case never matters.
    _limits: dict[tuple[int, str], TokenLimits] = field(init=False, compare=False, repr=False)
    _allowed: frozenset[str] | None = field(init=False, compare=False, repr=False)
    _denied: frozenset[str] = field(init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        limits = {(t.chain_id, t.address.lower()): t for t in self.tokens}
        object.__setattr__(self, "_limits", limits)
        allowed = None if self.allowlist is None else frozenset(a.lower() for a in self.allowlist)
        object.__setattr__(self, "_allowed", allowed)
        object.__setattr__(self, "_denied", frozenset(a.lower() for a in self.denylist))

    @classmethod
    def default(cls) -> Policy:
        """No limits, no lists: only the default quorum (one approval from any authenticator)."""
        return cls()

    @classmethod
    def parse(cls, document: Mapping[str, Any] | str | bytes) -> Policy:
        """Validate a policy document (a mapping or JSON text); :class:`PolicyInvalid` names the
        first bad field."""
        if isinstance(document, str | bytes):
            document = _load_json(document)
        if not isinstance(document, Mapping):
            raise PolicyInvalid("(document)", "a policy is a JSON object")
        _check_keys(document, _TOP_LEVEL_KEYS, "")
        policy_format = document.get("format", POLICY_FORMAT)
        if policy_format != POLICY_FORMAT or type(policy_format) is not int:
            raise PolicyInvalid("format", f"this signer reads policy format {POLICY_FORMAT} only")
        return cls(
            tokens=_parse_tokens(document.get("tokens", [])),
            allowlist=(
                _parse_addresses(document["allowlist"], "allowlist")
                if "allowlist" in document
                else None
            ),
            denylist=_parse_addresses(document.get("denylist", []), "denylist"),
            quorum=_parse_quorum(document.get("quorum", [])),
            intents=_parse_intent_rules(document.get("intents", {})),
            delegates=_parse_delegates(document.get("delegates", {})),
        )

    def to_document(self) -> dict[str, Any]:
        """The policy as a JSON document (amounts as decimal strings), which :meth:`parse` reads
        back to an equal policy."""
        document: dict[str, Any] = {"format": POLICY_FORMAT}
        if self.tokens:
            document["tokens"] = [_token_document(t) for t in self.tokens]
        if self.allowlist is not None:
            document["allowlist"] = list(self.allowlist)
        if self.denylist:
            document["denylist"] = list(self.denylist)
        if self.quorum:
            document["quorum"] = [_rule_document(r, spend_rule=True) for r in self.quorum]
        if self.intents:
            document["intents"] = {
                kind: _rule_document(rule, spend_rule=False)
                for kind, rule in sorted(self.intents.items())
            }
        if self.delegates:
            document["delegates"] = {
                authenticator_id: _delegate_document(scope)
                for authenticator_id, scope in sorted(self.delegates.items())
            }
        return document

    def with_delegate(self, authenticator_id: str, scope: DelegateScope | None) -> Policy:
        """This policy with ``authenticator_id``'s scope set (``None``: no entry)."""
        delegates = dict(self.delegates)
        if scope is None:
            delegates.pop(authenticator_id, None)
        else:
            delegates[authenticator_id] = scope
        return replace(self, delegates=delegates)

    def counted(self, approvals: Set[str], kind: str, spend: Spend | None) -> Set[str]:
        """The approvals that count for this intent: delegates' only within their scope."""
        delegates = self.delegates
        if not delegates or approvals.isdisjoint(delegates):
            return approvals
        return {
            a for a in approvals if (scope := delegates.get(a)) is None or scope.covers(kind, spend)
        }

    def limits_for(self, chain_id: int, token: str) -> TokenLimits | None:
        """The limits of a token, or ``None`` if the policy sets none."""
        return self._limits.get((chain_id, token.lower()))

    def allows_spend(
        self,
        chain_id: int,
        token: str,
        amount_units: int,
        recipient: str,
        *,
        approvals: Set[str],
        active: Set[str],
        kind: str,
        spent_in_window: Callable[[], int],
    ) -> bool:
        """Whether :func:`evaluate` allows this spend, answered without building the spend or a
        decision: the signer's lean path asks this for every transfer, and takes the long way
        (:func:`evaluate`, which names the rule) for any spend it declines.

        ``spent_in_window`` is called, once, only if the token has a daily limit (reading the
        window costs a query). A property test holds this to :func:`evaluate`.
        """
        delegates = self.delegates
        if delegates and not approvals.isdisjoint(delegates):
            approvals = {
                a
                for a in approvals
                if (scope := delegates.get(a)) is None
                or scope.covers_spend(kind, chain_id, token, amount_units)
            }
        recipient_key = recipient.lower()
        if recipient_key in self._denied or (
            self._allowed is not None and recipient_key not in self._allowed
        ):
            return False
        token_key = token.lower()
        limits = self._limits.get((chain_id, token_key))
        if limits is not None:
            per_transaction, daily = limits.per_transaction_limit, limits.daily_limit
            if per_transaction is not None and amount_units > per_transaction:
                return False
            if daily is not None:
                window = spent_in_window()
                if window < 0:
                    raise ValueError(f"spent_in_window cannot be negative: {window}")
                if window + amount_units > daily:
                    return False
        for rule in self.quorum:
            if (
                amount_units >= rule.min_amount
                and (rule.chain_id is None or rule.chain_id == chain_id)
                and (rule.token is None or rule.token.lower() == token_key)
                and rule.count(approvals, active) < rule.required
            ):
                return False
        kind_rule = self.intents.get(kind)
        if kind_rule is not None and kind_rule.count(approvals, active) < kind_rule.required:
            return False
        # DEFAULT_QUORUM: one approval from any active authenticator.
        return not approvals.isdisjoint(active)

    def needs_daily_window(self, spend: Spend) -> bool:
        """Whether evaluating ``spend`` needs the amount spent in the last 24 hours.

        Reading the window costs a query; skip it for tokens without a daily limit.
        """
        limits = self.limits_for(spend.chain_id, spend.token)
        return limits is not None and limits.daily_limit is not None

    def quorum_rules(self, spend: Spend | None, kind: str) -> list[QuorumRule]:
        """Every quorum an intent must meet: its spend rules, its kind's rule, the default."""
        rules = [r for r in self.quorum if spend is not None and r.applies_to(spend)]
        kind_rule = self.intents.get(kind)
        if kind_rule is not None:
            rules.append(kind_rule)
        rules.append(DEFAULT_QUORUM)
        return rules


def evaluate(
    policy: Policy,
    spend: Spend | None,
    *,
    approvals: Set[str],
    active: Set[str],
    spent_in_window: int,
    kind: str,
) -> Decision:
    """Decide one intent of ``kind`` under ``policy``.

    ``approvals`` are the ids of authenticators whose approvals verified for this intent;
    ``active`` the wallet's authenticators that may approve now (not revoked, past their
    ``active_from``); ``spent_in_window`` what the wallet spent of the spend's token in the last
    :data:`DAILY_WINDOW_SECONDS`. Rules are checked in this order, and the first that declines is
    named: ``denylist``, ``allowlist``, ``per_transaction_limit``, ``daily_limit``, ``quorum``.
    """
    if spend is not None:
        declined = _spend_decision(policy, spend, spent_in_window)
        if declined is not None:
            return declined
    counted = policy.counted(approvals, kind, spend)
    for rule in policy.quorum_rules(spend, kind):
        has = rule.count(counted, active)
        if has < rule.required:
            if len(counted) < len(approvals):
                # What would have met the rule is a delegate's approval outside its scope.
                outside = sorted(set(approvals) - set(counted))
                scopes = "; ".join(
                    f"{a} may approve {policy.delegates[a].describe()}" for a in outside
                )
                return Decision(False, "delegate_scope", f"{rule.describe_need(has)}: {scopes}")
            detail = rule.describe_need(has) + _rule_scope(rule, policy, kind)
            return Decision(False, "quorum", detail)
    return ALLOWED


def _spend_decision(policy: Policy, spend: Spend, spent_in_window: int) -> Decision | None:
    recipient = spend.recipient.lower()
    if recipient in policy._denied:
        return Decision(False, "denylist", f"recipient {spend.recipient} is on the denylist")
    if policy._allowed is not None and recipient not in policy._allowed:
        return Decision(False, "allowlist", f"recipient {spend.recipient} is not on the allowlist")
    limits = policy.limits_for(spend.chain_id, spend.token)
    if limits is None:
        return None
    amount = spend.amount_units
    if limits.per_transaction_limit is not None and amount > limits.per_transaction_limit:
        return Decision(
            False,
            "per_transaction_limit",
            f"{amount} base units {_of_token(spend)} exceed the per-transaction limit of "
            f"{limits.per_transaction_limit}",
        )
    if limits.daily_limit is not None:
        if spent_in_window < 0:
            raise ValueError(f"spent_in_window cannot be negative: {spent_in_window}")
        # Money: integers throughout, so the sum is exact whatever the token's decimals.
        if spent_in_window + amount > limits.daily_limit:
            remaining = max(limits.daily_limit - spent_in_window, 0)
            return Decision(
                False,
                "daily_limit",
                f"{amount} base units {_of_token(spend)} exceed what remains of the 24-hour "
                "limit of "
                f"{limits.daily_limit}: {spent_in_window} already spent, {remaining} left",
            )
    return None


def _of_token(spend: Spend) -> str:
    return f"of token {spend.token} on chain {spend.chain_id}"


def _rule_scope(rule: QuorumRule, policy: Policy, kind: str) -> str:
    """Where a quorum rule comes from, for the decline's wording."""
    if rule is DEFAULT_QUORUM:
        return ""
    if rule is policy.intents.get(kind):
        return f" (rule for {kind})"
    scope = [f"for amounts from {rule.min_amount} base units"]
    if rule.token is not None:
        scope.append(f"of token {rule.token}")
    if rule.chain_id is not None:
        scope.append(f"on chain {rule.chain_id}")
    return f" ({' '.join(scope)})"


# --- parsing ----------------------------------------------------------------------------------


def _load_json(text: str | bytes) -> Any:
    """Parse JSON text, refusing duplicate keys: which of two limits would apply is ambiguous."""

    def no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        result: dict[str, Any] = {}
        for key, value in pairs:
            if key in result:
                raise PolicyInvalid(key, "the key appears twice")
            result[key] = value
        return result

    def no_constant(name: str) -> Any:
        raise PolicyInvalid("(document)", f"{name} is not a number a policy can hold")

    try:
        return json.loads(text, object_pairs_hook=no_duplicates, parse_constant=no_constant)
    except ValueError as exc:
        if isinstance(exc, PolicyInvalid):
            raise
        raise PolicyInvalid("(document)", f"not JSON: {exc}") from None


def _check_keys(document: Mapping[str, Any], allowed: frozenset[str], path: str) -> None:
    # Unknown keys are refused: a misspelt "dailylimit" must not silently mean "no limit".
    for key in document:
        if key not in allowed:
            where = f"{path}.{key}" if path else str(key)
            raise PolicyInvalid(where, f"unknown key; expected one of {', '.join(sorted(allowed))}")


def _as_list(value: Any, path: str, limit: int) -> Sequence[Any]:
    if not isinstance(value, list):
        raise PolicyInvalid(path, "must be a JSON array")
    if len(value) > limit:
        raise PolicyInvalid(path, f"has {len(value)} entries; at most {limit} are allowed")
    return value


def _as_object(value: Any, path: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise PolicyInvalid(path, "must be a JSON object")
    return value


def _parse_units(value: Any, path: str) -> int:
    """Base units as a JSON integer or a decimal string (JSON numbers lose digits in browsers)."""
    if type(value) is int:
        units = value
    elif isinstance(value, str) and value.isascii() and value.isdigit() and len(value) <= 78:
        units = int(value)
    else:
        raise PolicyInvalid(
            path, f"must be base units (an integer or a string of digits), not {value!r}"
        )
    if not 0 <= units <= MAX_UNITS:
        raise PolicyInvalid(path, "must be from 0 to 2**256-1 base units")
    return units


def _parse_chain_id(value: Any, path: str) -> int:
    if type(value) is not int or value <= 0:
        raise PolicyInvalid(path, f"must be a positive integer chain id, not {value!r}")
    return value


def _parse_address(value: Any, path: str) -> str:
    if not isinstance(value, str):
        raise PolicyInvalid(path, f"must be a 0x address, not {value!r}")
    try:
        return str(parse_evm_address(value))
    except InvalidAddress as exc:
        raise PolicyInvalid(path, exc.problem) from None


def _parse_addresses(value: Any, path: str) -> tuple[str, ...]:
    addresses = [
        _parse_address(item, f"{path}[{index}]")
        for index, item in enumerate(_as_list(value, path, _MAX_LIST_ENTRIES))
    ]
    seen: set[str] = set()
    for index, address in enumerate(addresses):
        if address in seen:
            raise PolicyInvalid(f"{path}[{index}]", f"{address} is listed twice")
        seen.add(address)
    return tuple(addresses)


def _parse_tokens(value: Any) -> tuple[TokenLimits, ...]:
    tokens: list[TokenLimits] = []
    seen: set[tuple[int, str]] = set()
    for index, item in enumerate(_as_list(value, "tokens", _MAX_RULES)):
        path = f"tokens[{index}]"
        entry = _as_object(item, path)
        _check_keys(entry, _TOKEN_KEYS, path)
        for required in ("chain_id", "address"):
            if required not in entry:
                raise PolicyInvalid(f"{path}.{required}", "is required")
        limits = TokenLimits(
            chain_id=_parse_chain_id(entry["chain_id"], f"{path}.chain_id"),
            address=_parse_address(entry["address"], f"{path}.address"),
            per_transaction_limit=_optional_units(entry, "per_transaction_limit", path),
            daily_limit=_optional_units(entry, "daily_limit", path),
        )
        key = (limits.chain_id, limits.address)
        if key in seen:
            raise PolicyInvalid(path, "this token on this chain already has an entry")
        seen.add(key)
        tokens.append(limits)
    return tuple(tokens)


def _optional_units(entry: Mapping[str, Any], key: str, path: str) -> int | None:
    if key not in entry or entry[key] is None:
        return None
    return _parse_units(entry[key], f"{path}.{key}")


def _parse_rule(entry: Mapping[str, Any], path: str, *, spend_rule: bool) -> QuorumRule:
    _check_keys(entry, _QUORUM_KEYS if spend_rule else _INTENT_RULE_KEYS, path)
    required = entry.get("required")
    if type(required) is not int or required < 1:
        raise PolicyInvalid(f"{path}.required", f"must be an integer from 1, not {required!r}")
    of_value = entry.get("of", "any")
    of: tuple[str, ...] | None
    if of_value == "any":
        of = None
    else:
        ids = _as_list(of_value, f"{path}.of", _MAX_LIST_ENTRIES)
        for index, item in enumerate(ids):
            if not isinstance(item, str) or not 0 < len(item) <= _MAX_ID_CHARS:
                raise PolicyInvalid(f"{path}.of[{index}]", "must be an authenticator id")
        if len(set(ids)) != len(ids):
            raise PolicyInvalid(f"{path}.of", "lists an authenticator twice")
        if required > len(ids):
            raise PolicyInvalid(
                f"{path}.required", f"asks for {required} approvals of {len(ids)} authenticators"
            )
        of = tuple(ids)
    if not spend_rule:
        return QuorumRule(required=required, of=of)
    token = entry.get("token")
    return QuorumRule(
        required=required,
        of=of,
        min_amount=_parse_units(entry.get("min_amount", 0), f"{path}.min_amount"),
        chain_id=(
            _parse_chain_id(entry["chain_id"], f"{path}.chain_id")
            if entry.get("chain_id") is not None
            else None
        ),
        token=_parse_address(token, f"{path}.token") if token is not None else None,
    )


def _parse_quorum(value: Any) -> tuple[QuorumRule, ...]:
    return tuple(
        _parse_rule(_as_object(item, f"quorum[{index}]"), f"quorum[{index}]", spend_rule=True)
        for index, item in enumerate(_as_list(value, "quorum", _MAX_RULES))
    )


def _parse_intent_rules(value: Any) -> dict[str, QuorumRule]:
    rules: dict[str, QuorumRule] = {}
    for kind, item in _as_object(value, "intents").items():
        path = f"intents.{kind}"
        if kind not in INTENT_KINDS:
            raise PolicyInvalid(
                path, f"unknown intent kind; expected one of {', '.join(sorted(INTENT_KINDS))}"
            )
        rules[kind] = _parse_rule(_as_object(item, path), path, spend_rule=False)
    return rules


def _parse_delegates(value: Any) -> dict[str, DelegateScope]:
    delegates: dict[str, DelegateScope] = {}
    entries = _as_object(value, "delegates")
    if len(entries) > _MAX_RULES:
        raise PolicyInvalid("delegates", f"has {len(entries)} entries; at most {_MAX_RULES}")
    for authenticator_id, item in entries.items():
        path = f"delegates.{authenticator_id}"
        if not isinstance(authenticator_id, str) or not 0 < len(authenticator_id) <= _MAX_ID_CHARS:
            raise PolicyInvalid(path, "must be keyed by an authenticator id")
        delegates[authenticator_id] = parse_delegate_scope(item, path)
    return delegates


def parse_delegate_scope(value: Any, path: str = "scope") -> DelegateScope:
    """A delegate's scope from its JSON (``{"intents": [...], "tokens": [...]}``)."""
    entry = _as_object(value, path)
    _check_keys(entry, _DELEGATE_KEYS, path)
    kinds = _as_list(entry.get("intents"), f"{path}.intents", len(DELEGABLE_KINDS))
    if not kinds:
        raise PolicyInvalid(f"{path}.intents", "names at least one intent kind")
    for index, kind in enumerate(kinds):
        if kind not in DELEGABLE_KINDS:
            raise PolicyInvalid(
                f"{path}.intents[{index}]",
                f"a delegate may approve only {', '.join(sorted(DELEGABLE_KINDS))}",
            )
    tokens: dict[tuple[int, str], int] = {}
    items = _as_list(entry.get("tokens"), f"{path}.tokens", _MAX_RULES)
    if not items:
        raise PolicyInvalid(f"{path}.tokens", "names at least one token and its max_amount")
    for index, item in enumerate(items):
        where = f"{path}.tokens[{index}]"
        token = _as_object(item, where)
        _check_keys(token, _DELEGATE_TOKEN_KEYS, where)
        for required in ("chain_id", "address", "max_amount"):
            if required not in token:
                raise PolicyInvalid(f"{where}.{required}", "is required")
        key = (
            _parse_chain_id(token["chain_id"], f"{where}.chain_id"),
            _parse_address(token["address"], f"{where}.address").lower(),
        )
        if key in tokens:
            raise PolicyInvalid(where, "this token on this chain already has an entry")
        tokens[key] = _parse_units(token["max_amount"], f"{where}.max_amount")
    return DelegateScope(intents=frozenset(kinds), tokens=tokens)


def _delegate_document(scope: DelegateScope) -> dict[str, Any]:
    return {
        "intents": sorted(scope.intents),
        "tokens": [
            {
                "chain_id": chain_id,
                "address": str(parse_evm_address(token)),
                "max_amount": str(cap),
            }
            for (chain_id, token), cap in sorted(scope.tokens.items())
        ],
    }


def _token_document(limits: TokenLimits) -> dict[str, Any]:
    document: dict[str, Any] = {"chain_id": limits.chain_id, "address": limits.address}
    if limits.per_transaction_limit is not None:
        document["per_transaction_limit"] = str(limits.per_transaction_limit)
    if limits.daily_limit is not None:
        document["daily_limit"] = str(limits.daily_limit)
    return document


def _rule_document(rule: QuorumRule, *, spend_rule: bool) -> dict[str, Any]:
    document: dict[str, Any] = {
        "required": rule.required,
        "of": "any" if rule.of is None else list(rule.of),
    }
    if spend_rule:
        document["min_amount"] = str(rule.min_amount)
        if rule.chain_id is not None:
            document["chain_id"] = rule.chain_id
        if rule.token is not None:
            document["token"] = rule.token
    return document
