"""Jurisdiction rule files: the shipped ones load; a malformed one is reported with its file, line
and field, and the rules in force stay; sanctions parsing and ownership proofs (no I/O beyond
temporary files)."""

from __future__ import annotations

import shutil
from datetime import UTC, datetime
from pathlib import Path

import bech32
import pytest
from eth_account import Account
from eth_account.messages import encode_defunct

from seiwallet.compliance.errors import (
    RuleFileInvalid,
    SanctionsListUnreadable,
    UnknownJurisdiction,
)
from seiwallet.compliance.jurisdictions import (
    EU_MEMBER_STATES,
    NOTICE_DEFAULT_LANGUAGE,
    NOTICE_LANGUAGES,
    NOTICE_MAX_LENGTH,
    RULES_DIR,
    RuleStore,
    Status,
    check_country,
    line_of,
    load_rules,
    rules_json,
)
from seiwallet.compliance.placement import phone_country
from seiwallet.compliance.sanctions import address_key, parse_csv, parse_ofac_xml
from seiwallet.compliance.travelrule import challenge_text, recover_signer
from seiwallet.web import i18n

VECTORS = Path(__file__).resolve().parents[1] / "vectors" / "sanctions"


@pytest.fixture
def rules(tmp_path: Path) -> Path:
    target = tmp_path / "rules"
    shutil.copytree(RULES_DIR, target)
    return target


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text, old
    path.write_text(text.replace(old, new, 1))


def test_the_shipped_rules_load_with_their_sources() -> None:
    book = load_rules()
    assert book.codes() == ["EU", "HK", "SG"]
    assert set(book.jurisdictions["EU"].countries) == EU_MEMBER_STATES
    assert len(EU_MEMBER_STATES) == 27
    assert book.jurisdictions["HK"].status is Status.LIVE
    assert book.jurisdictions["SG"].status is Status.PENDING
    hk = rules_json(book.jurisdictions["HK"])
    assert hk["travel_rule"]["threshold"] == "8000"
    assert hk["tiers"]["1"]["per_day"] == "8000"
    assert "Cap. 656" in hk["tokens"]["source"]
    eu = rules_json(book.jurisdictions["EU"])
    assert "2023/1113" in eu["travel_rule"]["source"]
    assert eu["travel_rule"]["self_hosted_proof_threshold"] == "1000"
    assert book.resolve("de").code == "EU"
    assert len(book.version) == 64


@pytest.mark.parametrize(
    ("old", "new", "field", "words"),
    [
        ("per_day = 8000", 'per_day = "lots"', "tiers.1.per_day", "decimal"),
        ("per_day = 8000", "per_day = 8000.5", "tiers.1.per_day", "whole number"),
        ('status = "live"', 'status = "open"', "status", "live"),
        ('countries = ["HK"]', 'countries = ["HK", "ZZ"]', "countries", "ZZ"),
        ("timelock_hours = 48", "timelock_hours = -1", "recovery.timelock_hours", "greater"),
        ("[tiers.2]", "[tiers.3]", "tiers", "0, 1 and 2"),
        ("rewards = true", "rewards = true\nbonus = 1", "features.bonus", "Extra"),
    ],
)
def test_a_malformed_file_names_file_line_and_field(
    rules: Path, old: str, new: str, field: str, words: str
) -> None:
    hk = rules / "HK.toml"
    edit(hk, old, new)
    with pytest.raises(RuleFileInvalid) as bad:
        load_rules(rules)
    error = bad.value
    assert error.path == str(hk)
    assert error.field == field
    assert words in str(error)
    assert error.line is not None
    line = hk.read_text().splitlines()[error.line - 1]
    key = field.rsplit(".", 1)[-1]
    assert key in line or line.startswith("[tiers"), (error.line, line)
    assert "previous rules stay in force" in str(error)


def test_toml_syntax_errors_give_the_line(rules: Path) -> None:
    edit(rules / "EU.toml", 'currency = "EUR"\n', 'currency = "EUR\n')
    with pytest.raises(RuleFileInvalid) as bad:
        load_rules(rules)
    assert bad.value.line is not None
    assert "not valid TOML" in str(bad.value)


def test_the_eu_is_its_27_member_states_and_a_country_belongs_once(rules: Path) -> None:
    edit(rules / "EU.toml", '"SE",\n', '"SE", "CH",\n')
    with pytest.raises(RuleFileInvalid, match="27 member states"):
        load_rules(rules)
    edit(rules / "EU.toml", '"SE", "CH",\n', '"SE",\n')
    edit(rules / "SG.toml", 'countries = ["SG"]', 'countries = ["SG", "HK"]')
    with pytest.raises(RuleFileInvalid, match="HK already belongs to"):
        load_rules(rules)


def test_a_pending_jurisdiction_must_say_why(rules: Path) -> None:
    text = (rules / "SG.toml").read_text()
    start = text.index("notice = ")
    end = text.index("\n", start)
    (rules / "SG.toml").write_text(text[:start] + 'notice = ""' + text[end:])
    with pytest.raises(RuleFileInvalid, match="notice"):
        load_rules(rules)


def test_the_pending_notice_is_translated_into_the_wallets_languages() -> None:
    sg = load_rules().jurisdictions["SG"]
    assert set(sg.notice_translations) == set(NOTICE_LANGUAGES)
    english, lang = sg.notice_in(None)
    assert (english, lang) == (sg.notice, "en")
    assert "Monetary Authority of Singapore" in english
    assert sg.notice_in("zh-Hant") == (sg.notice_translations["zh-Hant"], "zh-Hant")
    assert "新加坡金融管理局" in sg.notice_in("zh_Hant")[0]  # the wallet's locale code
    assert "zh-Hant" in sg.notice_in("ZH-hant-HK")  # a longer tag, any case
    assert "Autorité monétaire de Singapour" in sg.notice_in("fr")[0]
    assert sg.notice_in("fr-CA")[1] == "fr"
    for other in ("en", "de", "zh", "zh-Hans", "", "-"):
        assert sg.notice_in(other) == (sg.notice, "en"), other
    # Every translation says as much as the English: the same three facts.
    for text in sg.notice_translations.values():
        assert "seiwallet" in text
        assert len(text) <= NOTICE_MAX_LENGTH


def test_the_wallets_languages_are_the_notices_languages() -> None:
    """The domain keeps its own list (it does not import the web edge): the two stay equal."""
    offered = {i18n.language_tag(code) for code in i18n.SUPPORTED_LOCALES}
    assert offered == {*NOTICE_LANGUAGES, NOTICE_DEFAULT_LANGUAGE}


@pytest.mark.parametrize(
    ("old", "new", "field", "words"),
    [
        ("\nfr = ", "\nde = ", "notice_translations.de", "zh-Hant, fr"),
        ("\nfr = ", "\nen = ", "notice_translations.en", "English text"),
        ("\nzh-Hant = ", "\nzh_Hant = ", "notice_translations.zh_Hant", "zh-Hant, fr"),
        ("\nfr = ", '\nfr = "x"\nfrench = ', "notice_translations.french", "offers"),
    ],
)
def test_a_notice_in_an_unknown_language_is_refused_on_its_line(
    rules: Path, old: str, new: str, field: str, words: str
) -> None:
    sg = rules / "SG.toml"
    edit(sg, old, new)
    with pytest.raises(RuleFileInvalid) as bad:
        load_rules(rules)
    assert bad.value.field == field
    assert words in str(bad.value)
    assert bad.value.line is not None
    line = sg.read_text().splitlines()[bad.value.line - 1]
    assert line.startswith(field.split(".")[1] + " = "), line


def test_a_translated_notice_has_the_notices_limits(rules: Path) -> None:
    sg = rules / "SG.toml"
    text = sg.read_text()
    start = text.index("\nfr = ") + 1
    end = text.index("\n", start)
    too_long = "é" * (NOTICE_MAX_LENGTH + 1)
    sg.write_text(text[:start] + f'fr = "{too_long}"' + text[end:])
    with pytest.raises(RuleFileInvalid, match="at most 600 characters") as bad:
        load_rules(rules)
    assert bad.value.field == "notice_translations.fr"
    assert bad.value.line is not None
    assert sg.read_text().splitlines()[bad.value.line - 1].startswith("fr = ")

    sg.write_text(text[:start] + 'fr = "  "' + text[end:])
    with pytest.raises(RuleFileInvalid, match="translated notice is empty"):
        load_rules(rules)


def test_translations_need_the_english_notice(rules: Path) -> None:
    # A live jurisdiction may have no notice at all, but not translations of nothing.
    edit(
        rules / "HK.toml",
        'notice = ""\n',
        'notice = ""\n\n[notice_translations]\nfr = "Bientôt"\n',
    )
    with pytest.raises(RuleFileInvalid, match="need the notice itself"):
        load_rules(rules)
    edit(rules / "HK.toml", 'notice = ""\n', 'notice = "Soon"\n')
    hk = load_rules(rules).jurisdictions["HK"]
    assert hk.notice_in("fr") == ("Bientôt", "fr")
    assert rules_json(hk)["notice_translations"] == {"fr": "Bientôt"}


def test_reload_keeps_the_rules_in_force_when_a_file_is_bad(rules: Path) -> None:
    store = RuleStore(rules)
    before = store.book
    edit(rules / "HK.toml", "per_transfer = 5000", "per_transfer = -5")
    with pytest.raises(RuleFileInvalid, match=r"HK.toml, line \d+ \(field tiers.1.per_transfer\)"):
        store.reload()
    assert store.book is before
    edit(rules / "HK.toml", "per_transfer = -5", "per_transfer = 4000")
    assert str(store.reload().jurisdictions["HK"].tier(1).per_transfer) == "4000"
    assert store.book.version != before.version


def test_unknown_country_codes() -> None:
    assert check_country(" fr ") == "FR"
    with pytest.raises(UnknownJurisdiction, match="ZZ"):
        check_country("ZZ")
    with pytest.raises(UnknownJurisdiction):
        load_rules().resolve("Atlantis")
    assert phone_country("+85291234567") == "HK"
    assert phone_country("+33612345678") == "FR"
    assert phone_country("not a number") is None


def test_line_of_finds_nested_keys() -> None:
    text = 'code = "HK"\n[tiers.1]\nper_day = 1\n[travel_rule]\nthreshold = 2\n'
    assert line_of(text, ["tiers", "1", "per_day"]) == 3
    assert line_of(text, ["travel_rule", "threshold"]) == 5
    assert line_of(text, ["travel_rule", "missing"]) == 4
    assert line_of(text, ["code"]) == 1


def test_ofac_and_csv_lists_parse(tmp_path: Path) -> None:
    advanced = parse_ofac_xml(VECTORS / "sdn_advanced_sample.xml")
    classic = parse_ofac_xml(VECTORS / "sdn_classic_sample.xml")
    assert {a.key for a in advanced.addresses} == {a.key for a in classic.addresses}
    assert {a.asset for a in advanced.addresses} == {"ETH", "USDC"}
    assert advanced.skipped == 2  # a bitcoin and a tron address
    listed = parse_csv(VECTORS / "other_list.csv")
    assert [a.key for a in listed.addresses] == ["00000000000000000000000000000000deadbeef"]
    not_xml = tmp_path / "x.xml"
    not_xml.write_text("<html></html>")
    with pytest.raises(SanctionsListUnreadable, match="sdnList"):
        parse_ofac_xml(not_xml)
    entities = tmp_path / "bomb.xml"
    entities.write_text('<?xml version="1.0"?><!DOCTYPE a [<!ENTITY b "c">]><sdnList/>')
    with pytest.raises(SanctionsListUnreadable, match="DTD"):
        parse_ofac_xml(entities)
    bad_csv = tmp_path / "bad.csv"
    bad_csv.write_text("address\nbc1qexample\n")
    with pytest.raises(SanctionsListUnreadable, match="line 2"):
        parse_csv(bad_csv)


def test_address_keys_meet_across_forms() -> None:
    evm = "0x000102030405060708090a0B0c0d0e0f10111213"
    assert address_key(evm) == "000102030405060708090a0b0c0d0e0f10111213"
    sei = bech32.bech32_encode("sei", bech32.convertbits(bytes.fromhex(evm[2:]), 8, 5))
    assert sei.startswith("sei1")
    assert address_key(sei) == address_key(evm)
    contract = bech32.bech32_encode("sei", bech32.convertbits(bytes(32), 8, 5))
    assert address_key(contract) is None  # a 32-byte contract address has no 0x twin
    assert address_key("12QtD5BFwRsdNsAZY76UVE1xyCGNTojH9h") is None


def test_an_ownership_proof_is_an_eip191_signature_by_the_address() -> None:
    wallet = Account.create()
    text = challenge_text(wallet.address, "user-1", "ab" * 16, datetime(2026, 11, 24, tzinfo=UTC))
    assert "It moves no money" in text
    signature = wallet.sign_message(encode_defunct(text=text)).signature.hex()
    assert recover_signer(text, signature) == wallet.address
    assert recover_signer(text + " ", signature) != wallet.address
    assert recover_signer(text, "0xnothex") is None
