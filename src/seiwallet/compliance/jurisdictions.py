"""Jurisdictions as data: one TOML rule file each, validated by a schema, loaded as a rule book.

A rule file (``rules/HK.toml``) says whether the jurisdiction is live, which features and tokens
it allows, the limits of each identity tier in its own currency, the travel-rule thresholds, the
recovery time-lock and how long records are kept — each section with the ``source`` it comes
from. A malformed file is reported with its path, line and field (:class:`RuleFileInvalid`);
:class:`RuleStore` then keeps the rules that were in force. The rule book's version is the
SHA-256 of the files' contents, so a decision names exactly the rules that made it.

What people read from a rule file (its ``notice``) is written in English, the default, with
translations in a ``[notice_translations]`` table keyed by the wallet's language tags
(:data:`NOTICE_LANGUAGES`); :meth:`JurisdictionRules.notice_in` picks the reader's.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re
import threading
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, Final

import phonenumbers
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from seiwallet.compliance.errors import RuleFileInvalid, UnknownJurisdiction

#: The rule files shipped with seiwallet.
RULES_DIR: Final = Path(__file__).parent / "rules"
#: ISO 3166-1 alpha-2 codes we recognise (phonenumbers' regions, which are those codes).
COUNTRY_CODES: Final = frozenset(phonenumbers.SUPPORTED_REGIONS)
#: The Union's 27 member states (ISO codes; Greece is GR, not the EU's own "EL").
EU_MEMBER_STATES: Final = frozenset(
    {"AT", "BE", "BG", "HR", "CY", "CZ", "DK", "EE", "FI", "FR", "DE", "GR", "HU", "IE"}
    | {"IT", "LV", "LT", "LU", "MT", "NL", "PL", "PT", "RO", "SK", "SI", "ES", "SE"}
)
TIERS: Final = (0, 1, 2)
#: The language tags (BCP 47) a notice may be translated into: the wallet app's languages other
#: than English, which is the ``notice`` itself. Kept equal to ``web.i18n``'s by a unit test (a
#: domain does not import the web edge).
NOTICE_LANGUAGES: Final = ("zh-Hant", "fr")
#: A notice's default language.
NOTICE_DEFAULT_LANGUAGE: Final = "en"
NOTICE_MAX_LENGTH: Final = 600


class Status(StrEnum):
    """Whether people in a jurisdiction may use the platform."""

    #: Launched: features and limits apply.
    LIVE = "live"
    #: Not launched yet: people may sign in and see their wallet; nothing moves.
    PENDING = "pending"
    #: Not served: people may sign in and see why; nothing moves.
    BLOCKED = "blocked"


class Feature(StrEnum):
    WALLET = "wallet"
    P2P = "p2p"
    MERCHANT_PAYMENTS = "merchant_payments"
    REWARDS = "rewards"


def _no_float(value: Any) -> Any:
    """Amounts are whole numbers or decimal strings: a TOML float (0.1) is not exact."""
    if isinstance(value, float):
        raise ValueError('write an amount as a whole number or a quoted decimal ("12.50")')
    if isinstance(value, bool):
        raise ValueError("an amount is a number")
    return value


Amount = Annotated[Decimal, BeforeValidator(_no_float), Field(ge=0, max_digits=20)]
Source = Annotated[str, Field(min_length=3, max_length=600)]


def _notice_language(value: str) -> str:
    """A language a notice may be translated into, spelt as the wallet spells it."""
    if value not in NOTICE_LANGUAGES:
        offered = ", ".join(NOTICE_LANGUAGES)
        raise ValueError(
            f"{value!r} is not a language the wallet offers: write one of {offered} "
            f"(the notice itself is the English text)"
        )
    return value


def _not_blank(value: str) -> str:
    if not value.strip():
        raise ValueError("a translated notice is empty: write the text or leave the line out")
    return value


NoticeLanguage = Annotated[str, AfterValidator(_notice_language)]
NoticeText = Annotated[str, Field(max_length=NOTICE_MAX_LENGTH)]
TranslatedNotice = Annotated[NoticeText, AfterValidator(_not_blank)]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Features(_Section):
    wallet: bool
    p2p: bool
    merchant_payments: bool
    discovery_categories: tuple[Annotated[str, Field(pattern=r"^[a-z][a-z0-9-]{0,31}$")], ...]
    rewards: bool
    source: Source

    def enabled(self, feature: Feature) -> bool:
        return bool(getattr(self, feature.value))


class Tokens(_Section):
    allowed: tuple[Annotated[str, Field(pattern=r"^[A-Z0-9]{2,12}$")], ...]
    source: Source


class TierLimits(_Section):
    """What one identity tier may do, in the jurisdiction's currency; ``None`` is no limit."""

    per_transfer: Amount | None = None
    per_day: Amount | None = None
    per_month: Amount | None = None
    balance_cap: Amount | None = None
    source: Source

    @property
    def can_send(self) -> bool:
        return all(limit is None or limit > 0 for limit in self.sending_limits())

    def sending_limits(self) -> tuple[Decimal | None, ...]:
        return (self.per_transfer, self.per_day, self.per_month)


class TravelRule(_Section):
    #: At or above this value a transfer leaving the platform carries originator and beneficiary
    #: data.
    threshold: Amount
    currency: Annotated[str, Field(pattern=r"^[A-Z]{3}$")]
    #: Above this value a transfer to a self-hosted wallet needs proof the sender controls it.
    self_hosted_proof_threshold: Amount
    source: Source


class Recovery(_Section):
    timelock_hours: Annotated[int, Field(ge=0, le=24 * 30)]
    source: Source


class Retention(_Section):
    years: Annotated[int, Field(ge=1, le=30)]
    source: Source


class JurisdictionRules(BaseModel):
    """The schema of one rule file."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    code: Annotated[str, Field(pattern=r"^[A-Z]{2}$")]
    name: Annotated[str, Field(min_length=2, max_length=80)]
    currency: Annotated[str, Field(pattern=r"^[A-Z]{3}$")]
    countries: tuple[str, ...] = Field(min_length=1)
    status: Status
    launch_date: dt.date | None = None
    status_source: Source
    #: Shown to people here when the jurisdiction is not live, in English (the default).
    notice: NoticeText = ""
    #: The notice in the wallet's other languages, by language tag (``fr``, ``zh-Hant``).
    notice_translations: dict[NoticeLanguage, TranslatedNotice] = Field(default_factory=dict)
    features: Features
    tokens: Tokens
    tiers: dict[int, TierLimits]
    travel_rule: TravelRule
    recovery: Recovery
    retention: Retention

    @field_validator("countries")
    @classmethod
    def _known_countries(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for country in value:
            if country not in COUNTRY_CODES:
                raise ValueError(f"{country!r} is not an ISO 3166-1 alpha-2 country code")
        if len(set(value)) != len(value):
            raise ValueError("a country is listed twice")
        return value

    @field_validator("tiers")
    @classmethod
    def _three_tiers(cls, value: dict[int, TierLimits]) -> dict[int, TierLimits]:
        if sorted(value) != list(TIERS):
            raise ValueError("give exactly the tiers 0, 1 and 2 ([tiers.0], [tiers.1], [tiers.2])")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> JurisdictionRules:
        if self.status is Status.LIVE and self.launch_date is None:
            raise ValueError("a live jurisdiction needs its launch_date")
        if self.status is not Status.LIVE and not self.notice.strip():
            raise ValueError("a pending or blocked jurisdiction needs a notice telling people why")
        if self.notice_translations and not self.notice.strip():
            raise ValueError("translations of the notice need the notice itself (English) first")
        if self.code == "EU" and set(self.countries) != EU_MEMBER_STATES:
            missing = sorted(EU_MEMBER_STATES - set(self.countries))
            extra = sorted(set(self.countries) - EU_MEMBER_STATES)
            raise ValueError(
                f"the EU's countries are its 27 member states (missing {missing}, extra {extra})"
            )
        return self

    def tier(self, tier: int) -> TierLimits:
        return self.tiers[max(0, min(tier, max(TIERS)))]

    def allows_token(self, symbol: str) -> bool:
        return symbol.upper() in self.tokens.allowed

    def notice_in(self, language: str | None) -> tuple[str, str]:
        """The notice for a reader of ``language`` and the tag of the language it is written in.

        ``language`` is a tag or a locale code in any case (``fr``, ``fr-CA``, ``zh_Hant``): an
        exact translation, else the one for a shorter form of the tag (``zh-Hant-HK`` → ``zh-Hant``,
        ``fr-CA`` → ``fr``), else the default.
        """
        by_tag = {tag.lower(): tag for tag in self.notice_translations}
        parts = (language or "").strip().replace("_", "-").lower().split("-")
        for end in range(len(parts), 0, -1):
            tag = by_tag.get("-".join(parts[:end]))
            if tag is not None:
                return self.notice_translations[tag], tag
        return self.notice, NOTICE_DEFAULT_LANGUAGE


@dataclass(frozen=True)
class RuleFile:
    """A rule file as loaded: where from, its text and the SHA-256 of its bytes."""

    path: str
    text: str
    sha256: str


@dataclass(frozen=True)
class RuleBook:
    """Every jurisdiction's rules and which country belongs to which."""

    jurisdictions: Mapping[str, JurisdictionRules]
    files: Mapping[str, RuleFile]

    @property
    def version(self) -> str:
        """SHA-256 over the files' hashes (in code order): names the rules a decision used."""
        digest = hashlib.sha256()
        for code in sorted(self.files):
            digest.update(f"{code}:{self.files[code].sha256}\n".encode())
        return digest.hexdigest()

    @property
    def by_country(self) -> dict[str, str]:
        return {
            country: code
            for code, rules in self.jurisdictions.items()
            for country in rules.countries
        }

    def codes(self) -> list[str]:
        return sorted(self.jurisdictions)

    def for_country(self, country: str | None) -> JurisdictionRules | None:
        """The rules for a country (ISO alpha-2), or ``None`` where we have none."""
        if not country:
            return None
        code = self.by_country.get(country.upper())
        return self.jurisdictions[code] if code else None

    def resolve(self, given: str) -> JurisdictionRules:
        """A jurisdiction by its code (``EU``) or by a country in it (``FR``)."""
        text = given.strip().upper()
        if text in self.jurisdictions:
            return self.jurisdictions[text]
        found = self.for_country(text) if text in COUNTRY_CODES else None
        if found is None:
            raise UnknownJurisdiction(given, self.codes())
        return found


def check_country(given: str) -> str:
    """An ISO 3166-1 alpha-2 code, upper-case, or :class:`UnknownJurisdiction`."""
    text = given.strip().upper()
    if text not in COUNTRY_CODES:
        raise UnknownJurisdiction(given, ["an ISO 3166-1 alpha-2 code"])
    return text


# -- loading -------------------------------------------------------------------------------------
_HEADER: Final = re.compile(r"^\s*\[\[?\s*([^\]]+?)\s*\]\]?\s*(#.*)?$")
_KEY: Final = re.compile(r"^\s*([A-Za-z0-9_\-\.\"' ]+?)\s*=")


def _parts(dotted: str) -> list[str]:
    return [part.strip().strip("\"'") for part in dotted.split(".")]


def line_of(text: str, loc: Sequence[str | int]) -> int | None:
    """The line (1-based) of the TOML key ``loc`` points at, or of its closest enclosing one."""
    wanted = [str(part) for part in loc]
    best: tuple[int, int] | None = None  # (matched parts, line)
    table: list[str] = []
    for number, line in enumerate(text.splitlines(), 1):
        header = _HEADER.match(line)
        if header:
            table = _parts(header.group(1))
            path = table
        else:
            key = _KEY.match(line)
            if not key or line.lstrip().startswith("#"):
                continue
            path = table + _parts(key.group(1))
        matched = 0
        for have, want in zip(path, wanted, strict=False):
            if have != want:
                break
            matched += 1
        # A key on the way to (or at) the field; a deeper table counts for its first line.
        if matched == min(len(path), len(wanted)) and (best is None or matched > best[0]):
            best = (matched, number)
    return best[1] if best else None


def parse_rule_file(path: Path) -> tuple[JurisdictionRules, RuleFile]:
    """Read and validate one rule file, or :class:`RuleFileInvalid` naming file, line and field."""
    shown = str(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise RuleFileInvalid(shown, None, None, exc.strerror or str(exc)) from None
    try:
        text = raw.decode("utf-8")
        data = tomllib.loads(text)
    except UnicodeDecodeError:
        raise RuleFileInvalid(shown, None, None, "the file is not UTF-8 text") from None
    except tomllib.TOMLDecodeError as exc:
        found = re.search(r"line (\d+)", str(exc))
        line = int(found.group(1)) if found else text.count("\n") + 1
        raise RuleFileInvalid(shown, line, None, f"not valid TOML ({exc})") from None
    try:
        rules = JurisdictionRules.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        # pydantic marks a refused table key with a "[key]" step after it: the key names the field.
        loc = [part for part in first["loc"] if isinstance(part, str | int) and part != "[key]"]
        field = ".".join(str(part) for part in loc) or None
        message = first["msg"].removeprefix("Value error, ")
        raise RuleFileInvalid(shown, line_of(text, loc) or 1, field, message) from None
    if rules.code != path.stem.upper():
        raise RuleFileInvalid(
            shown,
            line_of(text, ["code"]),
            "code",
            f"the file of {rules.code} must be {rules.code}.toml",
        )
    return rules, RuleFile(shown, text, hashlib.sha256(raw).hexdigest())


def load_rules(directory: Path = RULES_DIR) -> RuleBook:
    """Every ``*.toml`` file of ``directory`` as one rule book; a country may belong to one only."""
    jurisdictions: dict[str, JurisdictionRules] = {}
    files: dict[str, RuleFile] = {}
    owner: dict[str, str] = {}
    paths = sorted(directory.glob("*.toml"))
    if not paths:
        raise RuleFileInvalid(str(directory), None, None, "no rule files (*.toml) in the directory")
    for path in paths:
        rules, loaded = parse_rule_file(path)
        for country in rules.countries:
            if country in owner:
                raise RuleFileInvalid(
                    loaded.path,
                    line_of(loaded.text, ["countries"]),
                    "countries",
                    f"{country} already belongs to {owner[country]}",
                )
            owner[country] = rules.code
        jurisdictions[rules.code] = rules
        files[rules.code] = loaded
    return RuleBook(jurisdictions, files)


class RuleStore:
    """The rules in force; :meth:`reload` swaps them only when every file is valid."""

    def __init__(self, directory: Path = RULES_DIR, book: RuleBook | None = None) -> None:
        self.directory = directory
        self._lock = threading.Lock()
        self._book = book if book is not None else load_rules(directory)

    @property
    def book(self) -> RuleBook:
        return self._book

    def reload(self) -> RuleBook:
        """Load the files again; a malformed one raises and leaves the previous rules in force."""
        fresh = load_rules(self.directory)
        with self._lock:
            self._book = fresh
        return fresh


def rules_json(rules: JurisdictionRules) -> dict[str, Any]:
    """A rule file's effective rules as JSON-safe values (amounts as decimal strings)."""
    data: dict[str, Any] = rules.model_dump(mode="json")
    data["tiers"] = {str(tier): limits for tier, limits in data["tiers"].items()}
    return data
