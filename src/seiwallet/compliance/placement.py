"""Where a user belongs and how far their identity is verified: country, jurisdiction, tier.

The country comes from, in this order: an operator's assignment; the region of the user's
*verified* phone number (``phonenumbers``); the configured default for people whose country is
not known yet. Never from an IP address: it says where a phone is, not whose rules apply.

Identity tiers: 0 — an account only; 1 — a verified phone number or e-mail address (the
accounts' aliases); 2 — identity verified by the KYC provider (``kyc.py``).
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Final

import phonenumbers
from sqlalchemy import bindparam, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from seiwallet.accounts.models import User
from seiwallet.chain.events import checksum_address
from seiwallet.compliance.jurisdictions import JurisdictionRules, RuleBook, check_country
from seiwallet.compliance.models import ComplianceProfile, KycStatus

#: Where a country came from.
FROM_OPERATOR: Final = "operator"
FROM_PHONE: Final = "phone"
FROM_DEFAULT: Final = "default"


@dataclass(frozen=True)
class Person:
    """What placement needs of a user, read in one query."""

    user_id: str
    display_name: str | None
    email: str | None
    email_verified: bool
    phone: str | None
    phone_verified: bool
    wallet_address: str | None
    assigned_country: str | None
    kyc_status: str


@dataclass(frozen=True)
class Placement:
    """A user's country, where it came from, their jurisdiction's rules and their tier."""

    user_id: str
    country: str | None
    country_source: str | None
    jurisdiction: JurisdictionRules | None
    tier: int
    person: Person | None

    @property
    def jurisdiction_code(self) -> str | None:
        return self.jurisdiction.code if self.jurisdiction else None


def phone_country(phone: str | None) -> str | None:
    """The region (ISO alpha-2) of an E.164 phone number, or ``None``."""
    if not phone:
        return None
    try:
        number = phonenumbers.parse(phone, None)
    except phonenumbers.NumberParseException:
        return None
    region = phonenumbers.region_code_for_number(number)
    return region if region and region != "ZZ" else None


def tier_of(person: Person) -> int:
    if person.kyc_status == KycStatus.VERIFIED.value:
        return 2
    if person.phone_verified or person.email_verified:
        return 1
    return 0


def place(person: Person | None, user_id: str, book: RuleBook, default: str | None) -> Placement:
    """The placement of ``person`` under ``book`` (pure: no database)."""
    if person is None:
        country = default
        source = FROM_DEFAULT if default else None
        return Placement(user_id, country, source, book.for_country(country), 0, None)
    if person.assigned_country:
        country, source = person.assigned_country, FROM_OPERATOR
    elif person.phone_verified and (found := phone_country(person.phone)):
        country, source = found, FROM_PHONE
    elif default:
        country, source = default, FROM_DEFAULT
    else:
        country, source = None, None
    return Placement(user_id, country, source, book.for_country(country), tier_of(person), person)


#: Every movement's look-ups of its parties, built once (making a statement on each call cost
#: about as much as running it).
_PEOPLE = select(User, ComplianceProfile).outerjoin(
    ComplianceProfile, ComplianceProfile.user_id == User.id
)
_PERSON_BY_ID = _PEOPLE.where(User.id == bindparam("user_id"))
_PEOPLE_BY_ID = _PEOPLE.where(User.id.in_(bindparam("user_ids", expanding=True)))
_PERSON_BY_ADDRESS = _PEOPLE.where(User.wallet_address.in_(bindparam("spellings", expanding=True)))


class Directory:
    """Reads people for placement and keeps the compliance profile (country, KYC state)."""

    def __init__(self, sessions: sessionmaker[Session]) -> None:
        self._sessions = sessions

    def person(self, user_id: str, db: Session | None = None) -> Person | None:
        if db is None:
            with self._sessions() as session:
                return self.person(user_id, session)
        row = db.execute(_PERSON_BY_ID, {"user_id": user_id}).first()
        if row is None:
            return None
        user, profile = row
        return _person(user, profile)

    def persons(self, user_ids: Collection[str], db: Session) -> dict[str, Person]:
        """The people among ``user_ids`` (one query: a movement's two parties)."""
        rows = db.execute(_PEOPLE_BY_ID, {"user_ids": sorted(set(user_ids))}).all()
        return {user.id: _person(user, profile) for user, profile in rows}

    def person_by_address(self, address: str, db: Session | None = None) -> Person | None:
        """The user whose wallet is ``address`` (0x, any case), if one of ours."""
        if db is None:
            with self._sessions() as session:
                return self.person_by_address(address, session)
        spellings = sorted({address, address.lower(), _checksum(address)})
        row = db.execute(_PERSON_BY_ADDRESS, {"spellings": spellings}).first()
        if row is None:
            return None
        user, profile = row
        return _person(user, profile)

    def ensure_profile(self, db: Session, user_id: str) -> None:
        """Make sure the user's profile row exists (it is also their lock row)."""
        if db.get(ComplianceProfile, user_id) is not None:
            return
        try:
            with db.begin_nested():
                db.add(
                    ComplianceProfile(
                        user_id=user_id,
                        kyc_status=KycStatus.NONE.value,
                        updated_at=datetime.now(UTC),
                    )
                )
        except IntegrityError:
            pass  # another transaction made it first

    def assign_country(self, user_id: str, country: str | None, by: str) -> None:
        """An operator places a user (``None`` removes the assignment)."""
        checked = check_country(country) if country else None
        with self._sessions.begin() as db:
            self.ensure_profile(db, user_id)
            profile = db.get(ComplianceProfile, user_id, with_for_update=True)
            assert profile is not None
            profile.country = checked
            profile.assigned_by = by[:320]
            profile.assigned_at = datetime.now(UTC)
            profile.updated_at = datetime.now(UTC)

    def set_kyc(self, user_id: str, status: KycStatus, provider: str, reference: str) -> None:
        with self._sessions.begin() as db:
            self.ensure_profile(db, user_id)
            profile = db.get(ComplianceProfile, user_id, with_for_update=True)
            assert profile is not None
            profile.kyc_status = status.value
            profile.kyc_provider = provider[:32]
            profile.kyc_reference = reference[:128]
            now = datetime.now(UTC)
            profile.kyc_verified_at = now if status is KycStatus.VERIFIED else None
            profile.updated_at = now

    def kyc_reference(self, user_id: str) -> str | None:
        with self._sessions() as db:
            profile = db.get(ComplianceProfile, user_id)
            return profile.kyc_reference if profile else None

    def people(self, limit: int = 1_000) -> list[Person]:
        with self._sessions() as db:
            rows = db.execute(
                select(User, ComplianceProfile)
                .outerjoin(ComplianceProfile, ComplianceProfile.user_id == User.id)
                .order_by(User.created_at.desc())
                .limit(limit)
            ).all()
            return [_person(user, profile) for user, profile in rows]


def _checksum(address: str) -> str:
    try:
        return checksum_address(address)  # remembered: a movement's parties recur
    except ValueError:
        return address


def _person(user: User, profile: ComplianceProfile | None) -> Person:
    return Person(
        user_id=user.id,
        display_name=user.display_name,
        email=user.email,
        email_verified=bool(user.email_verified),
        phone=user.phone,
        phone_verified=bool(user.phone_verified),
        wallet_address=user.wallet_address,
        assigned_country=profile.country if profile else None,
        kyc_status=profile.kyc_status if profile else KycStatus.NONE.value,
    )
