"""The signer's policy: parsing that names the bad field, each rule's decline and its wording."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from seiwallet.addresses import parse_evm_address
from seiwallet.signer.errors import IntentInvalid, PolicyDeclined, PolicyInvalid
from seiwallet.signer.policy import (
    MAX_UNITS,
    Decision,
    Policy,
    Spend,
    evaluate,
)

CHAIN_ID = 1329
TOKEN = parse_evm_address("0x" + "a0" * 20)
OTHER_TOKEN = parse_evm_address("0x" + "c2" * 20)
ALICE = parse_evm_address("0x" + "b1" * 20)
MALLORY = parse_evm_address("0x" + "d3" * 20)
DEVICES = ["phone", "laptop", "partner"]


def spend(amount: int, *, recipient: str = ALICE, token: str = TOKEN) -> Spend:
    return Spend(CHAIN_ID, token, amount, recipient)


def decide(
    policy: Policy,
    spend_: Spend | None,
    *,
    approvals: set[str] | None = None,
    active: set[str] | None = None,
    spent: int = 0,
    kind: str = "erc3009.transfer",
) -> Decision:
    return evaluate(
        policy,
        spend_,
        approvals={"phone"} if approvals is None else approvals,
        active=set(DEVICES) if active is None else active,
        spent_in_window=spent,
        kind=kind,
    )


def limits(per_transaction: int | None = None, daily: int | None = None) -> Policy:
    token: dict[str, Any] = {"chain_id": CHAIN_ID, "address": TOKEN}
    if per_transaction is not None:
        token["per_transaction_limit"] = per_transaction
    if daily is not None:
        token["daily_limit"] = str(daily)
    return Policy.parse({"tokens": [token]})


# --- each rule --------------------------------------------------------------------------------


def test_the_default_policy_needs_one_approval_from_an_active_authenticator() -> None:
    policy = Policy.default()
    assert decide(policy, spend(10**30)).allowed
    declined = decide(policy, spend(1), approvals=set())
    assert (declined.rule, declined.detail) == (
        "quorum",
        "needs 1 of any active authenticator, has 0",
    )
    # An approval from a revoked (inactive) authenticator counts for nothing.
    assert not decide(policy, spend(1), approvals={"phone"}, active={"laptop"}).allowed


def test_per_transaction_limit() -> None:
    policy = limits(per_transaction=500)
    assert decide(policy, spend(500)).allowed
    declined = decide(policy, spend(501))
    assert declined.rule == "per_transaction_limit"
    assert declined.detail == (
        f"501 base units of token {TOKEN} on chain {CHAIN_ID} exceed the per-transaction "
        "limit of 500"
    )
    # Other tokens and chains are not limited by it.
    assert decide(policy, spend(10**9, token=OTHER_TOKEN)).allowed
    assert decide(policy, Spend(CHAIN_ID + 1, TOKEN, 10**9, ALICE)).allowed


def test_daily_limit() -> None:
    policy = limits(daily=1_000)
    assert decide(policy, spend(400), spent=600).allowed
    declined = decide(policy, spend(401), spent=600)
    assert declined.rule == "daily_limit"
    assert declined.detail == (
        f"401 base units of token {TOKEN} on chain {CHAIN_ID} exceed what remains of the "
        "24-hour limit of 1000: 600 already spent, 400 left"
    )
    assert policy.needs_daily_window(spend(1))
    assert not limits(per_transaction=5).needs_daily_window(spend(1))


def test_denylist_is_checked_whatever_the_case() -> None:
    policy = Policy.parse({"denylist": [MALLORY]})
    assert decide(policy, spend(1)).allowed
    for recipient in (MALLORY, MALLORY.lower()):
        declined = decide(policy, spend(1, recipient=recipient))
        assert declined.rule == "denylist"
        assert declined.detail == f"recipient {recipient} is on the denylist"


def test_allowlist_admits_only_its_recipients() -> None:
    policy = Policy.parse({"allowlist": [ALICE.lower()]})
    assert policy.allowlist == (ALICE,)  # stored checksummed
    assert decide(policy, spend(1)).allowed
    declined = decide(policy, spend(1, recipient=MALLORY))
    assert (declined.rule, declined.detail) == (
        "allowlist",
        f"recipient {MALLORY} is not on the allowlist",
    )
    # An empty allowlist admits no one; an absent one admits everyone.
    assert not decide(Policy.parse({"allowlist": []}), spend(1)).allowed


def test_quorum_from_an_amount() -> None:
    policy = Policy.parse(
        {"quorum": [{"min_amount": "1000", "token": TOKEN, "chain_id": CHAIN_ID,
                     "required": 2, "of": DEVICES}]}
    )  # fmt: skip
    assert decide(policy, spend(999)).allowed
    declined = decide(policy, spend(1000))
    assert declined.rule == "quorum"
    assert declined.detail == (
        f"needs 2 of [phone, laptop, partner], has 1 (for amounts from 1000 base units "
        f"of token {TOKEN} on chain {CHAIN_ID})"
    )
    assert decide(policy, spend(1000), approvals={"phone", "partner"}).allowed
    # Approvals of authenticators outside the rule's list, or inactive, do not count.
    assert not decide(policy, spend(1000), approvals={"phone", "stranger"}).allowed
    assert not decide(
        policy, spend(1000), approvals={"phone", "partner"}, active={"phone", "laptop"}
    ).allowed
    # Another token is not covered by the rule.
    assert decide(policy, spend(10**6, token=OTHER_TOKEN)).allowed


def test_a_quorum_without_a_token_covers_every_spend_from_its_amount() -> None:
    policy = Policy.parse({"quorum": [{"min_amount": 50, "required": 2, "of": "any"}]})
    assert decide(policy, spend(49, token=OTHER_TOKEN)).allowed
    declined = decide(policy, spend(50, token=OTHER_TOKEN))
    assert declined.detail == (
        "needs 2 of any active authenticator, has 1 (for amounts from 50 base units)"
    )


def test_limits_hold_whatever_the_approvals() -> None:
    policy = limits(per_transaction=10)
    assert decide(policy, spend(11), approvals=set(DEVICES)).rule == "per_transaction_limit"


def test_rules_are_checked_in_a_fixed_order() -> None:
    policy = Policy.parse(
        {
            "tokens": [{"chain_id": CHAIN_ID, "address": TOKEN, "per_transaction_limit": 1}],
            "denylist": [MALLORY],
        }
    )
    assert decide(policy, spend(5, recipient=MALLORY), approvals=set()).rule == "denylist"
    assert decide(policy, spend(5), approvals=set()).rule == "per_transaction_limit"
    assert decide(policy, spend(1), approvals=set()).rule == "quorum"


def test_non_spend_intents_need_the_default_quorum_or_their_own() -> None:
    policy = Policy.parse(
        {
            "intents": {
                "policy.update": {"required": 2, "of": "any"},
                "key.export": {"required": 2, "of": ["phone", "laptop"]},
            }
        }
    )
    assert decide(policy, None, kind="message.sign").allowed
    assert decide(policy, None, approvals=set(), kind="message.sign").rule == "quorum"
    declined = decide(policy, None, kind="policy.update")
    assert declined.detail == "needs 2 of any active authenticator, has 1 (rule for policy.update)"
    assert decide(policy, None, approvals={"phone", "partner"}, kind="policy.update").allowed
    declined = decide(policy, None, approvals={"phone", "partner"}, kind="key.export")
    assert declined.detail == "needs 2 of [phone, laptop], has 1 (rule for key.export)"
    assert decide(policy, None, approvals={"phone", "laptop"}, kind="key.export").allowed


def test_a_decline_raises_policy_declined_naming_the_rule() -> None:
    decision = decide(limits(daily=10), spend(11))
    with pytest.raises(PolicyDeclined) as caught:
        decision.raise_if_declined()
    assert caught.value.rule == "daily_limit"
    assert str(caught.value).startswith("declined by the wallet's policy (daily_limit): 11 ")
    assert caught.value.code == "signer.policy_declined"
    decide(Policy.default(), spend(1)).raise_if_declined()  # allowed: nothing raised


# --- parsing ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("document", "field"),
    [
        ({"tokens": [{"chain_id": CHAIN_ID, "address": TOKEN, "daily_limit": 1.5}]},
         "tokens[0].daily_limit"),
        ({"tokens": [{"chain_id": CHAIN_ID, "address": TOKEN, "daily_limit": "-3"}]},
         "tokens[0].daily_limit"),
        ({"tokens": [{"chain_id": CHAIN_ID, "address": TOKEN, "daily_limit": 2**256}]},
         "tokens[0].daily_limit"),
        ({"tokens": [{"chain_id": CHAIN_ID, "address": TOKEN, "dailylimit": 5}]},
         "tokens[0].dailylimit"),
        ({"tokens": [{"chain_id": True, "address": TOKEN}]}, "tokens[0].chain_id"),
        ({"tokens": [{"address": TOKEN}]}, "tokens[0].chain_id"),
        ({"tokens": [{"chain_id": 1, "address": "0x1234"}]}, "tokens[0].address"),
        ({"tokens": [{"chain_id": 1, "address": TOKEN}, {"chain_id": 1, "address": TOKEN.lower()}]},
         "tokens[1]"),
        ({"denylist": [ALICE, "sei1abc"]}, "denylist[1]"),
        ({"allowlist": [ALICE, ALICE.lower()]}, "allowlist[1]"),
        ({"allowlist": ALICE}, "allowlist"),
        ({"quorum": [{"required": 0}]}, "quorum[0].required"),
        ({"quorum": [{"required": 3, "of": ["a", "b"]}]}, "quorum[0].required"),
        ({"quorum": [{"required": 1, "of": ["a", "a"]}]}, "quorum[0].of"),
        ({"quorum": [{"required": 1, "of": ["a", 7]}]}, "quorum[0].of[1]"),
        ({"quorum": [{"required": 1, "min_amount": "1e6"}]}, "quorum[0].min_amount"),
        ({"intents": {"policy.updte": {"required": 2}}}, "intents.policy.updte"),
        ({"intents": {"key.export": {"required": 2, "min_amount": 5}}},
         "intents.key.export.min_amount"),
        ({"limits": {}}, "limits"),
        ({"format": 2}, "format"),
    ],
)  # fmt: skip
def test_a_bad_document_is_refused_naming_the_field(document: dict[str, Any], field: str) -> None:
    with pytest.raises(PolicyInvalid) as caught:
        Policy.parse(document)
    assert caught.value.field == field
    assert str(caught.value).startswith(f"policy field {field}: ")
    assert isinstance(caught.value, IntentInvalid)


def test_json_text_is_read_strictly() -> None:
    token = f'{{"chain_id": {CHAIN_ID}, "address": "{TOKEN}"}}'
    assert Policy.parse(f'{{"tokens": [{token}]}}').tokens[0].address == TOKEN
    with pytest.raises(PolicyInvalid, match="appears twice"):
        Policy.parse('{"denylist": [], "denylist": []}')
    with pytest.raises(PolicyInvalid, match="not JSON"):
        Policy.parse("{")
    with pytest.raises(PolicyInvalid, match="NaN"):
        Policy.parse(f'{{"tokens": [{{"chain_id": 1, "address": "{TOKEN}", "daily_limit": NaN}}]}}')
    with pytest.raises(PolicyInvalid, match="JSON object"):
        Policy.parse("[]")


def test_a_spend_is_checked_for_shape() -> None:
    with pytest.raises(IntentInvalid, match="amount"):
        Spend(CHAIN_ID, TOKEN, -1, ALICE)
    with pytest.raises(IntentInvalid, match="amount"):
        Spend(CHAIN_ID, TOKEN, MAX_UNITS + 1, ALICE)
    with pytest.raises(IntentInvalid, match="chain id"):
        Spend(0, TOKEN, 1, ALICE)
    with pytest.raises(IntentInvalid, match="recipient"):
        Spend(CHAIN_ID, TOKEN, 1, "sei1xyz")


# --- properties -------------------------------------------------------------------------------

units = st.integers(min_value=0, max_value=MAX_UNITS)
small_units = st.integers(min_value=0, max_value=10**9)


@given(
    per_transaction=st.one_of(st.none(), small_units),
    daily=st.one_of(st.none(), small_units),
    amounts=st.lists(small_units, max_size=40),
)
def test_signed_spends_never_exceed_the_limits(
    per_transaction: int | None, daily: int | None, amounts: list[int]
) -> None:
    """Sign a stream of spends as the signer does: the total stays within the daily limit, each
    within the per-transaction limit, and a spend is declined only when it had to be."""
    policy = limits(per_transaction=per_transaction, daily=daily)
    spent = 0
    for amount in amounts:
        decision = decide(policy, spend(amount), spent=spent)
        fits = (per_transaction is None or amount <= per_transaction) and (
            daily is None or spent + amount <= daily
        )
        assert decision.allowed == fits
        if decision.allowed:
            spent += amount
    if daily is not None:
        assert spent <= daily


@given(amount=units, spent=units, daily=units)
def test_the_daily_limit_is_exact_at_any_size(amount: int, spent: int, daily: int) -> None:
    decision = decide(limits(daily=daily), spend(amount), spent=spent)
    assert decision.allowed == (spent + amount <= daily)


@given(
    per_transaction=st.one_of(st.none(), units),
    daily=st.one_of(st.none(), units),
    required=st.integers(min_value=1, max_value=3),
    min_amount=units,
    denied=st.booleans(),
)
def test_a_policy_survives_its_own_document(
    per_transaction: int | None, daily: int | None, required: int, min_amount: int, denied: bool
) -> None:
    token: dict[str, Any] = {"chain_id": CHAIN_ID, "address": TOKEN}
    if per_transaction is not None:
        token["per_transaction_limit"] = per_transaction
    if daily is not None:
        token["daily_limit"] = daily
    policy = Policy.parse(
        {
            "tokens": [token],
            "denylist": [MALLORY] if denied else [],
            "quorum": [{"min_amount": min_amount, "required": required, "of": DEVICES}],
            "intents": {"policy.update": {"required": required}},
            "delegates": {
                "partner": {
                    "intents": ["router.refund"],
                    "tokens": [
                        {"chain_id": CHAIN_ID, "address": TOKEN.lower(), "max_amount": min_amount}
                    ],
                }
            },
        }
    )
    document = policy.to_document()
    assert Policy.parse(document) == policy
    assert Policy.parse(json.dumps(document)) == policy


# -- delegates ----------------------------------------------------------------------------------


def delegated(cap: int = 100, kinds: tuple[str, ...] = ("router.refund",)) -> Policy:
    return Policy.parse(
        {
            "delegates": {
                "partner": {
                    "intents": list(kinds),
                    "tokens": [{"chain_id": CHAIN_ID, "address": TOKEN, "max_amount": cap}],
                }
            }
        }
    )


def test_a_delegate_counts_within_its_scope() -> None:
    policy = delegated()
    refund = "router.refund"
    assert decide(policy, spend(100), approvals={"partner"}, kind=refund).allowed
    over = decide(policy, spend(101), approvals={"partner"}, kind=refund)
    assert (over.rule, over.detail) == (
        "delegate_scope",
        "needs 1 of any active authenticator, has 0: partner may approve only router.refund"
        f" of up to 100 base units of {TOKEN.lower()} on chain {CHAIN_ID}",
    )
    # Another kind, another token: nothing.
    assert decide(policy, spend(1), approvals={"partner"}).rule == "delegate_scope"
    other = spend(1, token=OTHER_TOKEN)
    assert decide(policy, other, approvals={"partner"}, kind=refund).rule == "delegate_scope"
    # Never for an intent without a spend (policy, authenticators, export).
    for kind in ("policy.update", "authenticator.add", "key.export"):
        assert decide(policy, None, approvals={"partner"}, kind=kind).rule == "delegate_scope"
    # The owner's approval still counts, with or beside the delegate's.
    assert decide(policy, spend(10**6), approvals={"phone", "partner"}, kind=refund).allowed


def test_a_delegate_does_not_make_up_a_quorum_outside_its_scope() -> None:
    policy = Policy.parse(
        {
            **delegated(kinds=("router.refund",)).to_document(),
            "quorum": [{"min_amount": 50, "required": 2, "of": ["phone", "partner"]}],
        }
    )
    refund = "router.refund"
    assert decide(policy, spend(60), approvals={"phone", "partner"}, kind=refund).allowed
    declined = decide(policy, spend(60), approvals={"phone", "partner"})
    assert declined.rule == "delegate_scope"


@pytest.mark.parametrize(
    ("scope", "field"),
    [
        ({"intents": ["key.export"], "tokens": []}, "delegates.partner.intents[0]"),
        ({"intents": ["router.refund"], "tokens": []}, "delegates.partner.tokens"),
        ({"intents": ["router.refund"]}, "delegates.partner.tokens"),
        (
            {"intents": ["router.refund"], "tokens": [{"chain_id": CHAIN_ID, "address": TOKEN}]},
            "delegates.partner.tokens[0].max_amount",
        ),
        ({"intents": ["router.refund"], "tokens": [], "limit": 1}, "delegates.partner.limit"),
    ],
)
def test_a_bad_delegate_scope_names_its_field(scope: dict[str, Any], field: str) -> None:
    with pytest.raises(PolicyInvalid) as refused:
        Policy.parse({"delegates": {"partner": scope}})
    assert refused.value.field == field


# -- the lean path's question: allows_spend is evaluate(...).allowed ---------------------------

_amounts = st.integers(min_value=0, max_value=12)  # small: edges (equal amounts) are common
_limits = st.none() | _amounts


@st.composite
def _policies(draw: st.DrawFn) -> Policy:
    document: dict[str, Any] = {"tokens": []}
    for token in draw(st.lists(st.sampled_from([TOKEN, OTHER_TOKEN]), unique=True)):
        entry: dict[str, Any] = {"chain_id": draw(st.sampled_from([CHAIN_ID, 1])), "address": token}
        for key in ("per_transaction_limit", "daily_limit"):
            limit = draw(_limits)
            if limit is not None:
                entry[key] = str(limit)
        document["tokens"].append(entry)
    if draw(st.booleans()):
        document["allowlist"] = draw(st.lists(st.sampled_from([ALICE, MALLORY]), unique=True))
    document["denylist"] = draw(st.lists(st.sampled_from([ALICE, MALLORY]), unique=True))
    rules = []
    for _ in range(draw(st.integers(min_value=0, max_value=2))):
        of = draw(st.none() | st.lists(st.sampled_from(DEVICES), min_size=1, unique=True))
        rule: dict[str, Any] = {
            "min_amount": str(draw(_amounts)),
            "required": draw(st.integers(min_value=1, max_value=len(of) if of else 3)),
        }
        if of is not None:
            rule["of"] = of
        if draw(st.booleans()):
            rule["token"] = draw(st.sampled_from([TOKEN, OTHER_TOKEN])).lower()
        if draw(st.booleans()):
            rule["chain_id"] = draw(st.sampled_from([CHAIN_ID, 1]))
        rules.append(rule)
    document["quorum"] = rules
    if draw(st.booleans()):
        document["intents"] = {"erc3009.transfer": {"required": 2, "of": "any"}}
    delegates = draw(st.lists(st.sampled_from(DEVICES), unique=True, max_size=2))
    if delegates:
        document["delegates"] = {
            name: {
                "intents": draw(
                    st.lists(
                        st.sampled_from(["erc3009.transfer", "router.refund"]),
                        min_size=1,
                        unique=True,
                    )
                ),
                "tokens": [
                    {
                        "chain_id": draw(st.sampled_from([CHAIN_ID, 1])),
                        "address": draw(st.sampled_from([TOKEN, OTHER_TOKEN])),
                        "max_amount": str(draw(_amounts)),
                    }
                ],
            }
            for name in delegates
        }
    return Policy.parse(document)


@settings(max_examples=1500, deadline=None)
@given(
    policy=_policies(),
    chain_id=st.sampled_from([CHAIN_ID, 1]),
    token=st.sampled_from([TOKEN, OTHER_TOKEN, TOKEN.lower()]),
    amount=_amounts,
    recipient=st.sampled_from([ALICE, MALLORY, ALICE.lower()]),
    approvals=st.sets(st.sampled_from(DEVICES)),
    active=st.sets(st.sampled_from(DEVICES)),
    window=_amounts,
)
def test_allows_spend_is_evaluates_answer(
    policy: Policy,
    chain_id: int,
    token: str,
    amount: int,
    recipient: str,
    approvals: set[str],
    active: set[str],
    window: int,
) -> None:
    spend = Spend(chain_id=chain_id, token=token, amount_units=amount, recipient=recipient)
    expected = evaluate(
        policy,
        spend,
        approvals=approvals,
        active=frozenset(active),
        spent_in_window=window,
        kind="erc3009.transfer",
    ).allowed
    reads: list[int] = []

    def read_window() -> int:
        reads.append(window)
        return window

    answer = policy.allows_spend(
        chain_id,
        token,
        amount,
        recipient,
        approvals=approvals,
        active=frozenset(active),
        kind="erc3009.transfer",
        spent_in_window=read_window,
    )
    assert answer is expected
    # The window is read at most once, and only for a token with a daily limit.
    limits = policy.limits_for(chain_id, token)
    assert len(reads) <= (1 if limits is not None and limits.daily_limit is not None else 0)
