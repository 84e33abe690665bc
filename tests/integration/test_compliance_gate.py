"""The compliance gate on SQLite and PostgreSQL: every rule type, racing limits, screening lists,
the travel rule with a real EIP-191 ownership proof, and the audit trail."""

from __future__ import annotations

import json
import shutil
import threading
import uuid
from decimal import Decimal
from pathlib import Path

import bech32
import httpx
import pytest
from eth_account import Account
from eth_account.messages import encode_defunct
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session, sessionmaker

from seiwallet.accounts.models import User, UserStatus
from seiwallet.api import problems
from seiwallet.compliance.errors import (
    ComplianceDenied,
    ComplianceNeedsInformation,
    RuleFileInvalid,
    TravelRuleError,
    UnknownJurisdiction,
)
from seiwallet.compliance.gate import ComplianceGate, Movement
from seiwallet.compliance.jurisdictions import RULES_DIR
from seiwallet.compliance.models import Alert, DecisionRecord, KycStatus, Usage
from seiwallet.compliance.onchain import RpcTokenReader
from seiwallet.compliance.services import ComplianceService, build_compliance
from seiwallet.compliance.travelrule import Beneficiary
from seiwallet.db import session_factory
from seiwallet.transfers.rates import OFFLINE_RATES
from seiwallet.web import i18n

VECTORS = Path(__file__).resolve().parents[1] / "vectors" / "sanctions"
T0 = 1_790_000_000.0
OUTSIDE = "0x8ba1f109551bD432803012645Ac136ddd64DBA72"


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> float:
        return self.now


class FakeTokens:
    """The chain's answers: blacklisted addresses and holdings."""

    def __init__(self) -> None:
        self.blacklisted: set[str] = set()
        self.balances: dict[str, dict[str, Decimal]] = {}

    def is_blacklisted(self, symbol: str, address: str) -> bool | None:
        return address.lower() in self.blacklisted

    def holdings(self, address: str) -> dict[str, Decimal] | None:
        return self.balances.get(address.lower(), {})


@pytest.fixture
def sessions(engine: Engine) -> sessionmaker[Session]:
    return session_factory(engine)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def chain() -> FakeTokens:
    return FakeTokens()


def build(
    sessions: sessionmaker[Session],
    clock: Clock,
    chain: FakeTokens,
    rules_dir: Path | None = None,
    default_country: str | None = None,
) -> ComplianceService:
    return build_compliance(
        sessions,
        rules_dir=rules_dir,
        per_transfer_cap={},
        default_country=default_country,
        valuer=OFFLINE_RATES.value_of_token,
        tokens=chain,
        clock=clock,
    )


@pytest.fixture
def compliance(
    sessions: sessionmaker[Session], clock: Clock, chain: FakeTokens
) -> ComplianceService:
    return build(sessions, clock, chain)


def person(
    sessions: sessionmaker[Session],
    *,
    phone: str | None = None,
    email: str | None = None,
    name: str = "Test person",
) -> tuple[str, str]:
    """A user (tier 1 when a phone or e-mail is given: both count as verified) and their address."""
    account = Account.create()
    user_id = uuid.uuid4().hex
    with sessions.begin() as db:
        db.add(
            User(
                id=user_id,
                display_name=name,
                email=email,
                email_verified=email is not None,
                phone=phone,
                phone_verified=phone is not None,
                wallet_id=user_id,
                wallet_address=account.address,
                status=UserStatus.ACTIVE,
            )
        )
    return user_id, account.address


def send(
    gate: ComplianceGate,
    user: tuple[str, str],
    amount: str,
    *,
    to: str = OUTSIDE,
    symbol: str = "USDC",
    kind: str = "transfer",
):
    user_id, address = user
    units = int(Decimal(amount) * 10**6)
    return gate.check(Movement(kind, user_id, address, to, symbol, 6, units, reference=None))


HK_PHONE = "+85291234567"
SG_PHONE = "+6581234567"
FR_PHONE = "+33612345678"


def test_a_pending_jurisdiction_refuses_every_movement(compliance, sessions) -> None:
    singapore = person(sessions, phone=SG_PHONE)
    decision = send(compliance.gate, singapore, "1")
    assert not decision.allowed
    assert decision.rule == "jurisdiction.pending"
    assert "Singapore" in decision.reason
    assert decision.jurisdiction == "SG"
    with pytest.raises(ComplianceDenied) as refused:
        decision.raise_if_denied()
    assert refused.value.code == "compliance.denied"
    # The refusal is the rule file's notice: it answers in the reader's language where the
    # file has one (the API's problem detail uses it with the request's locale).
    sg = compliance.book.jurisdictions["SG"]
    assert refused.value.message_in("fr") == sg.notice_translations["fr"]
    assert refused.value.message_in("zh_Hant") == sg.notice_translations["zh-Hant"]
    assert refused.value.message_in("zh-Hant-HK") == sg.notice_translations["zh-Hant"]
    assert refused.value.message_in("de") == refused.value.message_in(None) == sg.notice
    with i18n.use_locale("fr"):
        detail = json.loads(problems.from_error(refused.value).body)["detail"]
    assert detail == sg.notice_translations["fr"]
    notice = compliance.notice(singapore[0])
    assert notice is not None
    assert notice.kind == "pending"
    assert (notice.text, notice.lang) == (compliance.book.jurisdictions["SG"].notice, "en")
    # The rule file's own words, in the reader's language where the file has it.
    chinese = compliance.notice(singapore[0], "zh-Hant")
    assert chinese is not None
    assert chinese.lang == "zh-Hant"
    assert "新加坡" in chinese.text
    french = compliance.limits(singapore[0], "fr").notice
    assert french is not None
    assert french.lang == "fr"
    assert "Singapour" in french.text
    assert compliance.notice(singapore[0], "de") == notice
    with sessions() as db:
        recorded = db.get(DecisionRecord, decision.id)
        assert recorded is not None
        assert (recorded.outcome, recorded.rule, recorded.country) == ("deny", decision.rule, "SG")
        assert recorded.rules_version == compliance.book.version


def test_a_changed_translation_is_a_new_rule_version(
    sessions, clock, chain, tmp_path: Path
) -> None:
    rules = tmp_path / "rules"
    shutil.copytree(RULES_DIR, rules)
    service = build(sessions, clock, chain, rules_dir=rules)
    singapore = person(sessions, phone=SG_PHONE)
    sg = rules / "SG.toml"
    before = service.book.jurisdictions["SG"].notice_translations["fr"]
    after = "seiwallet arrive bientôt à Singapour."
    sg.write_text(sg.read_text().replace(before, after))
    assert service.reload_rules() == ["SG"]
    diff = service.last_diff("SG")
    assert diff is not None
    assert f'-fr = "{before}"' in diff
    assert f'+fr = "{after}"' in diff
    notice = service.notice(singapore[0], "fr")
    assert notice is not None
    assert notice.text == after
    assert service.rule_history("SG")[0].content == sg.read_text()
    # A bad translation is refused and the one in force stays.
    sg.write_text(sg.read_text().replace("\nfr = ", "\nfrench = "))
    with pytest.raises(RuleFileInvalid, match="'french' is not a language"):
        service.reload_rules()
    assert service.notice(singapore[0], "fr") == notice


def test_feature_and_token_gating(compliance, sessions, clock, chain, tmp_path: Path) -> None:
    french = person(sessions, phone=FR_PHONE)
    assert compliance.gate.directory is not None
    compliance.gate.directory.set_kyc(french[0], KycStatus.VERIFIED, "test", "r1")
    # The EU allows no rewards yet; transfers are fine.
    reward = send(compliance.gate, french, "5", kind="reward", symbol="EURC")
    assert (reward.allowed, reward.rule) == (False, "features.rewards")
    friend = person(sessions, phone="+33612345679")
    # An EU account without identity verification cannot hold money (balance cap 0)...
    capped = send(compliance.gate, french, "5", to=friend[1], symbol="EURC")
    assert capped.rule == "limits.recipient_balance_cap"
    compliance.gate.directory.set_kyc(friend[0], KycStatus.VERIFIED, "test", "r2")
    assert send(compliance.gate, french, "5", to=friend[1], symbol="EURC").allowed
    # A token not in the allow-list (HK offering only USDC).
    rules = tmp_path / "rules"
    shutil.copytree(RULES_DIR, rules)
    hk = rules / "HK.toml"
    hk.write_text(hk.read_text().replace('allowed = ["USDC", "EURC"]', 'allowed = ["USDC"]'))
    only_usdc = build(sessions, clock, chain, rules_dir=rules)
    hong_kong = person(sessions, phone=HK_PHONE)
    refused = send(only_usdc.gate, hong_kong, "5", symbol="EURC")
    assert (refused.allowed, refused.rule) == (False, "tokens.not_allowed")
    assert "EURC is not offered in Hong Kong" in refused.reason
    assert send(only_usdc.gate, hong_kong, "5", symbol="USDC").allowed
    # The changed file is a new version of HK's rules, with its diff.
    diff = only_usdc.last_diff("HK")
    assert diff is not None
    assert '-allowed = ["USDC", "EURC"]' in diff
    assert '+allowed = ["USDC"]' in diff
    assert compliance.last_diff("EU") is None


def test_tier_limits_per_transfer_day_and_month(compliance, sessions, clock) -> None:
    gate = compliance.gate
    ada = person(sessions, phone=HK_PHONE)  # HK tier 1: 5,000 / 8,000 a day / 25,000 a month HKD
    too_big = send(gate, ada, "700")  # 5,446 HKD
    assert (too_big.allowed, too_big.rule) == (False, "limits.per_transfer")
    assert "5,000 HKD" in too_big.reason
    assert send(gate, ada, "600").allowed  # 4,668
    assert send(gate, ada, "400").allowed  # 3,112: 7,780 today
    over_day = send(gate, ada, "100")  # 778 more: over 8,000
    assert (over_day.allowed, over_day.rule) == (False, "limits.per_day")
    assert "220 HKD more" in over_day.reason
    # A failed movement gives its reservation back.
    assert gate.release(over_day.id or "") is False  # a denial reserved nothing
    last = send(gate, ada, "25")
    assert last.allowed
    assert gate.release(last.id or "")
    assert not gate.release(last.id or "")  # once
    # Rolling: a day later the day is free again, the month keeps counting.
    for _ in range(2):
        clock.now += 25 * 3600
        assert send(gate, ada, "600").allowed
        assert send(gate, ada, "400").allowed
    clock.now += 25 * 3600
    over_month = send(gate, ada, "300")  # 23,340 + 2,334 > 25,000
    assert (over_month.allowed, over_month.rule) == (False, "limits.per_month")
    view = compliance.limits(ada[0])
    assert view.rules is not None
    assert view.placement.tier == 1
    assert view.left_month == Decimal("1660.00")
    assert gate.commit(send(gate, ada, "100").id or "")
    with compliance._sessions() as db:
        alerts = db.scalars(select(Alert).where(Alert.kind == "limit_breach")).all()
    assert len(alerts) == 2


def test_tier_0_and_unverified_eu_accounts_cannot_send(compliance, sessions) -> None:
    french = person(sessions, phone=FR_PHONE)  # tier 1 in the EU: identity not verified
    refused = send(compliance.gate, french, "1", symbol="EURC")
    assert (refused.allowed, refused.rule) == (False, "limits.tier_1")
    assert "verify your identity" in refused.reason
    nobody = person(sessions)  # no phone, no country, no default
    unknown = send(compliance.gate, nobody, "1")
    assert (unknown.allowed, unknown.rule) == (False, "jurisdiction.unknown")
    american = person(sessions, phone="+12025550143")
    assert send(compliance.gate, american, "1").rule == "jurisdiction.not_served"


def test_racing_transfers_cannot_pass_a_limit_together(compliance, sessions) -> None:
    ada = person(sessions, phone=HK_PHONE)
    racers = 6
    barrier = threading.Barrier(racers)
    results: list[bool] = []
    errors: list[BaseException] = []

    def race() -> None:
        try:
            barrier.wait()
            results.append(send(compliance.gate, ada, "600").allowed)  # 4,668 of 8,000 HKD
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=race) for _ in range(racers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert not errors, errors
    assert sorted(results) == [False] * (racers - 1) + [True]
    with sessions() as db:
        assert db.scalar(select(func.count()).select_from(Usage)) == 1
        assert db.scalar(select(func.count()).select_from(DecisionRecord)) == racers


def test_sanctions_lists_catch_both_address_forms_and_alert(
    compliance, sessions, chain, tmp_path: Path
) -> None:
    ada = person(sessions, phone=HK_PHONE)
    loaded = compliance.refresh_lists(
        ofac=VECTORS / "sdn_advanced_sample.xml", csv_file=VECTORS / "other_list.csv"
    )
    assert [(list_.name, list_.addresses, list_.skipped) for list_ in loaded] == [
        ("ofac-sdn", 2, 2),
        ("csv", 1, 0),
    ]
    listed = send(compliance.gate, ada, "1", to="0x8576acc5C05D6CE88f4e49bf65BdF0C62F91353C")
    assert (listed.allowed, listed.rule) == (False, "sanctions.recipient")
    # A list that writes an account as sei1: the same 20 bytes as its 0x form, caught.
    key = bytes(range(1, 21))
    sei_form = bech32.bech32_encode("sei", bech32.convertbits(key, 8, 5))
    other = tmp_path / "other.csv"
    other.write_text(f"address,name\n{sei_form},Example in sei1 form\n")
    compliance.refresh_lists(csv_file=other)
    caught = send(compliance.gate, ada, "1", to="0x" + key.hex())
    assert (caught.allowed, caught.rule) == (False, "sanctions.recipient")
    # The list replaced the earlier CSV list whole.
    assert send(compliance.gate, ada, "1", to="0x00000000000000000000000000000000DeaDBeef").allowed
    # The issuer's own blacklist: said before anyone signs.
    chain.blacklisted.add(OUTSIDE.lower())
    blocked = send(compliance.gate, ada, "1")
    assert (blocked.allowed, blocked.rule) == (False, "issuer_blacklist.recipient")
    with sessions() as db:
        kinds = sorted(a.kind for a in db.scalars(select(Alert)))
    assert kinds == ["issuer_blacklist", "sanctions_hit", "sanctions_hit"]


def test_the_classic_sdn_format_loads_too(compliance, sessions) -> None:
    ada = person(sessions, phone=HK_PHONE)
    (loaded,) = compliance.refresh_lists(ofac=VECTORS / "sdn_classic_sample.xml")
    assert (loaded.addresses, loaded.skipped) == (2, 1)
    hit = send(compliance.gate, ada, "1", to="0x1da5821544e25c636c1417ba96ade4cf6d2f9b5a")
    assert hit.rule == "sanctions.recipient"
    # A sanctioned sender is refused too.
    listed = ("user-x", "0x1DA5821544E25C636C1417BA96ADE4CF6D2F9B5A")
    assert send(compliance.gate, (ada[0], listed[1]), "1").rule == "sanctions.sender"


def test_travel_rule_asks_for_data_then_an_ownership_proof(compliance, sessions) -> None:
    french = person(sessions, phone=FR_PHONE, name="Amélie Durand")
    assert compliance.gate.directory is not None
    compliance.gate.directory.set_kyc(french[0], KycStatus.VERIFIED, "test", "r1")
    wallet = Account.create()
    # 1,500 EUR to an outside address: the recipient's details first.
    first = send(compliance.gate, french, "1500", to=wallet.address, symbol="EURC")
    assert first.outcome == "needs_information"
    assert first.needs == ("beneficiary_name", "wallet_type", "ownership_proof_if_self_hosted")
    with pytest.raises(ComplianceNeedsInformation) as asked:
        first.raise_if_denied()
    assert asked.value.code == "compliance.needs_information"
    record = compliance.travel.submit(
        french[0],
        Beneficiary(wallet.address, "Amélie Durand", "self_hosted", is_originator=True),
    )
    assert record.needs_proof
    assert record.challenge is not None
    assert wallet.address in record.challenge
    # Then, above 1,000 EUR to a self-hosted wallet, proof that it is hers.
    second = send(compliance.gate, french, "1500", to=wallet.address, symbol="EURC")
    assert (second.outcome, second.needs) == ("needs_information", ("ownership_proof",))
    # 900 EUR needs no proof.
    assert send(compliance.gate, french, "900", to=wallet.address, symbol="EURC").allowed
    stranger = Account.create()
    wrong = stranger.sign_message(encode_defunct(text=record.challenge)).signature.hex()
    with pytest.raises(TravelRuleError, match="not by"):
        compliance.travel.prove(french[0], record.id, wrong)
    with pytest.raises(TravelRuleError, match="65-byte"):
        compliance.travel.prove(french[0], record.id, "0x1234")
    signed = wallet.sign_message(encode_defunct(text=record.challenge)).signature.hex()
    proven = compliance.travel.prove(french[0], record.id, signed)
    assert proven.proven_at is not None
    allowed = send(compliance.gate, french, "1500", to=wallet.address, symbol="EURC")
    assert allowed.allowed
    assert allowed.travel is not None
    assert allowed.travel["beneficiary"]["name"] == "Amélie Durand"
    assert allowed.travel["beneficiary"]["ownership_proven_at"] is not None
    assert allowed.travel["originator"]["user_id"] == french[0]
    with sessions() as db:
        kept = db.get(DecisionRecord, allowed.id)
        assert kept is not None
        assert kept.travel is not None
        assert "Amélie Durand" in kept.travel


def test_internal_transfers_carry_the_data_and_hk_threshold(compliance, sessions) -> None:
    ada = person(sessions, phone=HK_PHONE, name="Ada")
    bob = person(sessions, phone="+85291234568", name="Bob")
    assert compliance.gate.directory is not None
    compliance.gate.directory.set_kyc(ada[0], KycStatus.VERIFIED, "test", "r1")
    internal = send(compliance.gate, ada, "2000", to=bob[1])  # 15,560 HKD, over HK$8,000
    assert internal.allowed
    assert internal.travel is not None
    assert internal.travel["beneficiary"]["user_id"] == bob[0]
    assert send(compliance.gate, ada, "500").allowed  # 3,890 HKD outside: under the threshold
    outside = send(compliance.gate, ada, "2000")
    assert outside.outcome == "needs_information"
    compliance.travel.submit(
        ada[0], Beneficiary(OUTSIDE, "Example Exchange Ltd", "hosted", provider_name="Example")
    )
    assert send(compliance.gate, ada, "2000").allowed


def test_the_recipient_side_is_checked(compliance, sessions, chain) -> None:
    ada = person(sessions, phone=HK_PHONE)
    singapore = person(sessions, phone=SG_PHONE)
    refused = send(compliance.gate, ada, "5", to=singapore[1])
    assert refused.rule == "recipient.unavailable"
    bob = person(sessions, phone="+85291234568")  # tier 1: balance cap 25,000 HKD
    chain.balances[bob[1].lower()] = {"USDC": Decimal(3200)}  # 24,896 HKD
    capped = send(compliance.gate, ada, "20", to=bob[1])
    assert capped.rule == "limits.recipient_balance_cap"


def test_operator_placement_and_unknown_country_codes(compliance, sessions) -> None:
    ada = person(sessions, email="ada@example.com")  # no phone: no country
    directory = compliance.gate.directory
    assert directory is not None
    with pytest.raises(UnknownJurisdiction, match="ZZ"):
        directory.assign_country(ada[0], "ZZ", "ops@example.com")
    with pytest.raises(UnknownJurisdiction):
        compliance.book.resolve("XX")
    assert compliance.book.resolve("fr").code == "EU"
    directory.assign_country(ada[0], "HK", "ops@example.com")
    placed = compliance.placement(ada[0])
    assert (placed.country, placed.country_source, placed.tier) == ("HK", "operator", 1)
    assert send(compliance.gate, ada, "5").allowed


def test_a_default_country_places_unknown_people_and_dry_runs_record_nothing(
    sessions, clock, chain
) -> None:
    compliance = build(sessions, clock, chain, default_country="HK")
    ada = person(sessions, email="ada@example.com")
    movement = Movement("transfer", ada[0], ada[1], OUTSIDE, "USDC", 6, 5 * 10**6)
    dry = compliance.gate.evaluate(movement, country="FR", tier=2)
    # In the EU every transfer leaving the platform carries beneficiary data (no threshold).
    assert (dry.outcome, dry.jurisdiction, dry.id) == ("needs_information", "EU", None)
    with sessions() as db:
        assert db.scalar(select(func.count()).select_from(DecisionRecord)) == 0
    assert compliance.gate.check(movement).jurisdiction == "HK"


def test_the_first_version_still_works_without_a_database() -> None:
    gate = ComplianceGate(
        sanctioned=["0x000000000000000000000000000000000000dEaD"],
        per_transfer_cap={"USDC": Decimal(10)},
    )
    base = Movement("transfer", "u", OUTSIDE, OUTSIDE, "USDC", 6, 10**6)
    assert gate.check(base).allowed
    dead = Movement(
        "transfer", "u", OUTSIDE, "0x000000000000000000000000000000000000dead", "USDC", 6, 1
    )
    assert gate.check(dead).rule == "sanctions.recipient"
    big = Movement("transfer", "u", OUTSIDE, OUTSIDE, "USDC", 6, 11 * 10**6)
    assert gate.check(big).rule == "limits.per_transfer"


def test_a_screening_runs_in_place_only_from_the_readers_cache(
    sessions: sessionmaker[Session], clock: Clock
) -> None:
    """On the event loop the gate must not wait for the node: it screens in place when the
    parties' flags are cached (and its reads run in place: a SQLite file), and says "not
    here" (``None``) without asking the node otherwise; the caller then screens in a thread."""
    asked: list[str] = []

    def node(request: httpx.Request) -> httpx.Response:
        asked.append(json.loads(request.content)["params"][0]["data"])
        return httpx.Response(200, json={"jsonrpc": "2.0", "id": 1, "result": "0x" + "00" * 32})

    reader = RpcTokenReader(
        "http://node.invalid",
        lambda: {"USDC": ("0x" + "11" * 20, 6)},
        transport=httpx.MockTransport(node),
    )
    gate = build_compliance(
        sessions,
        per_transfer_cap={},
        valuer=OFFLINE_RATES.value_of_token,
        tokens=reader,
        clock=clock,
    ).gate
    sender = person(sessions, phone=HK_PHONE)
    movement = Movement("transfer", sender[0], sender[1], OUTSIDE, "USDC", 6, 5 * 10**6)
    in_place = sessions.kw["bind"].dialect.name == "sqlite"

    assert gate.screen_in_place(movement) is None  # nothing cached yet
    assert asked == []  # and the node was not asked from here
    screening = gate.screen(movement)  # the thread's way: asks the node
    assert len(asked) == 2
    assert not screening.refused
    again = gate.screen_in_place(movement)
    assert len(asked) == 2  # cached now: no new request
    if in_place:
        assert again is not None
        assert not again.refused
        assert again.context is not None
        assert again.context.placed.country == "HK"
    else:
        assert again is None  # PostgreSQL: the reads go to a thread
    reader.close()
