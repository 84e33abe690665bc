"""Travel-rule data for money leaving the platform, and proof of control of a self-hosted wallet.

FATF Recommendation 16 and the EU's Transfer of Funds Regulation make the sender's provider
collect and keep who the originator and the beneficiary are. The originator is our user (we
know them); for an address outside the platform the user tells us the beneficiary: a name, and
whether the address is a self-hosted wallet or held by a provider (an exchange). The data is
kept per (user, address), so a second transfer to the same address needs nothing new.

Above the EU's EUR 1,000 (TFR art. 14(5)), a transfer to a self-hosted address needs proof that
the sender controls it: an EIP-191 ``personal_sign`` of a challenge we issue, by that address
(``eth_account`` recovers the signer). The challenge names the address, the account and a
nonce, expires, and says that signing moves no money.
"""

from __future__ import annotations

import secrets
import time
import unicodedata
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Final

from eth_account import Account
from eth_account.messages import encode_defunct
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from seiwallet.addresses import InvalidAddress, parse_evm_address
from seiwallet.compliance.errors import TravelRuleError
from seiwallet.compliance.jurisdictions import check_country
from seiwallet.compliance.models import TravelRuleRecord
from seiwallet.db import SQLITE_BEGIN, as_utc

WALLET_TYPES: Final = ("self_hosted", "hosted")
CHALLENGE_LIFETIME: Final = timedelta(minutes=30)
_WRITE: Final = {SQLITE_BEGIN: "IMMEDIATE"}


@dataclass(frozen=True)
class TravelRuleView:
    id: str
    address: str
    beneficiary_name: str
    wallet_type: str
    provider_name: str
    beneficiary_is_originator: bool
    beneficiary_country: str | None
    challenge: str | None
    challenge_expires_at: datetime | None
    proven_at: datetime | None
    updated_at: datetime

    @property
    def needs_proof(self) -> bool:
        return self.wallet_type == "self_hosted" and self.proven_at is None

    @classmethod
    def of(cls, row: TravelRuleRecord) -> TravelRuleView:
        return cls(
            id=row.id,
            address=row.address,
            beneficiary_name=row.beneficiary_name,
            wallet_type=row.wallet_type,
            provider_name=row.provider_name,
            beneficiary_is_originator=row.beneficiary_is_originator,
            beneficiary_country=row.beneficiary_country,
            challenge=row.challenge,
            challenge_expires_at=as_utc(row.challenge_expires_at)
            if row.challenge_expires_at
            else None,
            proven_at=as_utc(row.proven_at) if row.proven_at else None,
            updated_at=as_utc(row.updated_at),
        )

    def to_json(self) -> dict[str, object]:
        return {
            "id": self.id,
            "address": self.address,
            "beneficiary_name": self.beneficiary_name,
            "wallet_type": self.wallet_type,
            "provider_name": self.provider_name or None,
            "beneficiary_is_originator": self.beneficiary_is_originator,
            "beneficiary_country": self.beneficiary_country,
            "ownership_proof": {
                "required_for_self_hosted": self.wallet_type == "self_hosted",
                "proven_at": self.proven_at.isoformat() if self.proven_at else None,
                "challenge": self.challenge if self.needs_proof else None,
                "challenge_expires_at": self.challenge_expires_at.isoformat()
                if self.needs_proof and self.challenge_expires_at
                else None,
            },
        }


@dataclass(frozen=True)
class Beneficiary:
    """What the user says about the recipient of an outside address."""

    address: str
    name: str
    wallet_type: str
    provider_name: str = ""
    is_originator: bool = False
    country: str | None = None


def challenge_text(address: str, user_id: str, nonce: str, issued: datetime) -> str:
    """The message a self-hosted wallet signs (EIP-191) to prove the sender controls it."""
    expires = issued + CHALLENGE_LIFETIME
    return (
        "seiwallet: I control this wallet.\n\n"
        f"Address: {address}\n"
        f"Account: {user_id}\n"
        f"Nonce: {nonce}\n"
        f"Issued: {issued.strftime('%Y-%m-%dT%H:%M:%SZ')}\n"
        f"Expires: {expires.strftime('%Y-%m-%dT%H:%M:%SZ')}\n\n"
        "Signing this proves ownership for the travel rule. It moves no money."
    )


def recover_signer(message: str, signature: str) -> str | None:
    """The address that signed ``message`` with EIP-191 ``personal_sign``, or ``None``."""
    text = signature.strip()
    try:
        raw = bytes.fromhex(text.removeprefix("0x"))
    except ValueError:
        return None
    if len(raw) != 65:
        return None
    try:
        return str(Account.recover_message(encode_defunct(text=message), signature=raw))
    except Exception:  # eth_account raises several types for a malformed signature
        return None


def _clean_name(value: str, what: str) -> str:
    text = unicodedata.normalize("NFC", " ".join(value.split()))
    if not 2 <= len(text) <= 200 or not text.isprintable():
        raise TravelRuleError(f"{what}: 2 to 200 printable characters")
    return text


class TravelRuleService:
    """Keep beneficiary data per (user, address); issue and check ownership challenges."""

    def __init__(
        self, sessions: sessionmaker[Session], *, clock: Callable[[], float] = time.time
    ) -> None:
        self._sessions = sessions
        self._clock = clock

    def _now(self) -> datetime:
        return datetime.fromtimestamp(self._clock(), UTC)

    def submit(self, user_id: str, given: Beneficiary) -> TravelRuleView:
        """Store (or update) what the user says about an outside address."""
        try:
            address = parse_evm_address(given.address)
        except InvalidAddress as exc:
            raise TravelRuleError(
                f"the recipient's address must be a 0x address: {exc.problem}"
            ) from None
        name = _clean_name(given.name, "the recipient's name")
        if given.wallet_type not in WALLET_TYPES:
            raise TravelRuleError("the wallet type is 'self_hosted' or 'hosted'")
        provider = ""
        if given.wallet_type == "hosted":
            provider = _clean_name(given.provider_name, "the provider holding the wallet")
        country = check_country(given.country) if given.country else None
        now = self._now()
        with self._sessions.begin() as db:
            db.connection(execution_options=_WRITE)
            row = db.scalars(
                select(TravelRuleRecord).where(
                    TravelRuleRecord.user_id == user_id, TravelRuleRecord.address == address
                )
            ).first()
            if row is None:
                row = TravelRuleRecord(id=uuid.uuid4().hex, user_id=user_id, address=address)
                row.created_at = now
                db.add(row)
            if row.wallet_type != given.wallet_type:
                row.proven_at = None
                row.proof_signature = None
            row.wallet_type = given.wallet_type
            row.beneficiary_name = name
            row.provider_name = provider
            row.beneficiary_is_originator = given.is_originator
            row.beneficiary_country = country
            row.updated_at = now
            if given.wallet_type == "self_hosted" and row.proven_at is None:
                self._new_challenge(row, user_id, now)
            elif given.wallet_type == "hosted":
                row.challenge = None
                row.challenge_expires_at = None
            db.flush()
            return TravelRuleView.of(row)

    @staticmethod
    def _new_challenge(row: TravelRuleRecord, user_id: str, now: datetime) -> None:
        issued = now.replace(microsecond=0)
        row.challenge = challenge_text(row.address, user_id, secrets.token_hex(16), issued)
        row.challenge_expires_at = issued + CHALLENGE_LIFETIME

    def challenge(self, user_id: str, record_id: str) -> TravelRuleView:
        """The record with a live challenge (a new one if the last expired)."""
        now = self._now()
        with self._sessions.begin() as db:
            db.connection(execution_options=_WRITE)
            row = self._mine(db, user_id, record_id)
            if row.wallet_type != "self_hosted" or row.proven_at is not None:
                return TravelRuleView.of(row)
            if row.challenge_expires_at is None or as_utc(row.challenge_expires_at) <= now:
                self._new_challenge(row, user_id, now)
            return TravelRuleView.of(row)

    def prove(self, user_id: str, record_id: str, signature: str) -> TravelRuleView:
        """Check the address's signature of its challenge; the address is then proven the user's."""
        now = self._now()
        with self._sessions.begin() as db:
            db.connection(execution_options=_WRITE)
            row = self._mine(db, user_id, record_id)
            if row.wallet_type != "self_hosted":
                raise TravelRuleError("only a self-hosted wallet needs an ownership proof")
            if row.proven_at is not None:
                return TravelRuleView.of(row)
            if row.challenge is None or row.challenge_expires_at is None:
                raise TravelRuleError("ask for a challenge first")
            if as_utc(row.challenge_expires_at) <= now:
                raise TravelRuleError("the challenge expired: ask for a new one and sign that")
            signer = recover_signer(row.challenge, signature[:200])
            if signer is None:
                raise TravelRuleError(
                    "the signature is not a 65-byte hex signature of the challenge "
                    "(use personal_sign / 'Sign message' in your wallet)"
                )
            if signer.lower() != row.address.lower():
                raise TravelRuleError(
                    f"the message was signed by {signer}, not by {row.address}: sign it with "
                    "the wallet you are sending to"
                )
            row.proof_signature = signature.strip()[:200]
            row.proven_at = now
            row.challenge = None
            row.challenge_expires_at = None
            row.updated_at = now
            return TravelRuleView.of(row)

    def records(self, user_id: str) -> list[TravelRuleView]:
        with self._sessions() as db:
            rows = db.scalars(
                select(TravelRuleRecord)
                .where(TravelRuleRecord.user_id == user_id)
                .order_by(TravelRuleRecord.updated_at.desc())
            ).all()
            return [TravelRuleView.of(r) for r in rows]

    def record(self, user_id: str, record_id: str) -> TravelRuleView:
        with self._sessions() as db:
            return TravelRuleView.of(self._mine(db, user_id, record_id))

    def for_address(self, user_id: str, address: str) -> TravelRuleView | None:
        try:
            checksummed = parse_evm_address(address)
        except InvalidAddress:
            return None
        with self._sessions() as db:
            row = db.scalars(
                select(TravelRuleRecord).where(
                    TravelRuleRecord.user_id == user_id, TravelRuleRecord.address == checksummed
                )
            ).first()
            return TravelRuleView.of(row) if row else None

    @staticmethod
    def _mine(db: Session, user_id: str, record_id: str) -> TravelRuleRecord:
        row = db.get(TravelRuleRecord, record_id[:32])
        if row is None or row.user_id != user_id:
            raise TravelRuleError("no such recipient details in your account")
        return row
