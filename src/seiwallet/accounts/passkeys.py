"""Passkeys in the wallet app: enrolling them (WebAuthn registration) and approving actions.

The signer verifies every approval itself; this module runs the browser side's ceremonies:

- **Registration.** Options with user verification required; the answer verified with the
  ``webauthn`` library against the RP id and origin from settings; then the signer is asked to
  add the credential to the wallet. Which way it may join is decided here and enforced again by
  the signer: the wallet's *first* authenticator joins at once; once the wallet has one, a new
  passkey joins only by account recovery (second factor proven, then the signer's time-lock).
- **Approval.** An action (remove a device, add a CLI's device key) is approved by an
  assertion whose challenge is the signer's approval challenge for that action on this wallet:
  ``challenge_bytes(approval_subject(wallet, action_digest(action, document)), nonce, expiry)``.
  The browser signs it; the assertion goes to the signer as a ``passkey`` approval unchanged.

Every challenge is a stored *ceremony* bound to the session that asked for it, answered at most
once and within five minutes.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import secrets
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Final

import webauthn
from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker
from webauthn.helpers import (
    base64url_to_bytes,
    bytes_to_base64url,
    options_to_json_dict,
    parse_authentication_credential_json,
)
from webauthn.helpers.cose import COSEAlgorithmIdentifier
from webauthn.helpers.exceptions import InvalidJSONStructure, InvalidRegistrationResponse
from webauthn.helpers.structs import (
    AuthenticatorSelectionCriteria,
    AuthenticatorTransport,
    PublicKeyCredentialDescriptor,
    ResidentKeyRequirement,
    UserVerificationRequirement,
)
from webauthn.registration.verify_registration_response import VerifiedRegistration

from seiwallet.accounts.errors import (
    AuthenticatorUnknown,
    CeremonyInvalid,
    PasskeyEnrolmentNotAllowed,
    PasskeyRegistrationRefused,
)
from seiwallet.accounts.models import (
    AuthenticatorKindName,
    CeremonyPurpose,
    Enrolment,
    UserAuthenticator,
    WebAuthnCeremony,
)
from seiwallet.accounts.oidc import Clock
from seiwallet.accounts.sessions import SessionInfo
from seiwallet.db import SQLITE_BEGIN, as_utc
from seiwallet.signer.approvals import challenge_bytes
from seiwallet.signer.client import SignerClient
from seiwallet.signer.errors import SignerError
from seiwallet.signer.service import action_digest, approval_subject

log = logging.getLogger(__name__)

#: How long a browser has to answer a challenge (the signer refuses approvals older than 5 min).
CEREMONY_TTL: Final = timedelta(minutes=5)
_APPROVAL_LIFETIME: Final = 240  # seconds; within the signer's 5-minute ceiling
#: ``active_from`` of a delegated passkey its wallet's owner has not added yet.
_NOT_YET: Final = datetime(9999, 12, 31, tzinfo=UTC)
_ALGORITHMS: Final = [
    COSEAlgorithmIdentifier.ECDSA_SHA_256,
    COSEAlgorithmIdentifier.RSASSA_PKCS1_v1_5_SHA_256,
]
_WRITE: Final = {SQLITE_BEGIN: "IMMEDIATE"}
#: Actions a passkey approves through the app, and the document fields each takes.
APPROVABLE: Final = {
    "authenticator.remove": ("authenticator_id",),
    "authenticator.add": ("kind", "id", "public_key", "label"),
    # A signer intent (a transfer, a payment): the document is the intent's digest.
    "intent": ("digest",),
}


@dataclass(frozen=True)
class AuthenticatorView:
    """A passkey or device of the user, as the devices page shows it."""

    id: str
    kind: AuthenticatorKindName
    label: str
    enrolment: Enrolment
    created_at: datetime
    active_from: datetime
    revoked_at: datetime | None

    def status(self, now: datetime) -> str:
        if self.revoked_at is not None:
            return "revoked"
        return "pending" if self.active_from > now else "active"


@dataclass(frozen=True)
class Enrolled:
    authenticator_id: str
    enrolment: Enrolment
    active_from: datetime


@dataclass(frozen=True)
class ApprovedAction:
    """An action with a verified-by-the-browser, to-be-verified-by-the-signer approval."""

    action: str
    document: dict[str, Any]
    approval: dict[str, Any]
    authenticator_id: str


class PasskeyService:
    """WebAuthn ceremonies for one relying party."""

    def __init__(
        self,
        sessions: sessionmaker[Session],
        signer: SignerClient,
        *,
        rp_id: str,
        rp_name: str,
        origins: Sequence[str],
        recovery_timelock: timedelta,
        clock: Clock = time.time,
    ) -> None:
        self._sessions = sessions
        self._signer = signer
        self.rp_id = rp_id
        self._rp_name = rp_name
        self._origins = list(origins)
        self.recovery_timelock = recovery_timelock
        self._clock = clock

    def _now(self) -> datetime:
        return datetime.fromtimestamp(self._clock(), UTC)

    # -- what the user has -----------------------------------------------------------------------
    def authenticators(self, user_id: str) -> list[AuthenticatorView]:
        with self._sessions() as db:
            rows = db.scalars(
                select(UserAuthenticator)
                .where(UserAuthenticator.user_id == user_id, UserAuthenticator.wallet_id.is_(None))
                .order_by(UserAuthenticator.created_at)
            ).all()
            return [
                AuthenticatorView(
                    id=r.id,
                    kind=r.kind,
                    label=r.label,
                    enrolment=r.enrolment,
                    created_at=as_utc(r.created_at),
                    active_from=as_utc(r.active_from),
                    revoked_at=as_utc(r.revoked_at) if r.revoked_at else None,
                )
                for r in rows
            ]

    def _descriptors(
        self, db: Session, user_id: str, wallet_id: str | None = None
    ) -> list[PublicKeyCredentialDescriptor]:
        """The user's passkeys for their own wallet, or (``wallet_id``) as a delegate on it."""
        rows = db.scalars(
            select(UserAuthenticator).where(
                UserAuthenticator.user_id == user_id,
                UserAuthenticator.kind == AuthenticatorKindName.PASSKEY,
                UserAuthenticator.revoked_at.is_(None),
                UserAuthenticator.wallet_id.is_(None)
                if wallet_id is None
                else UserAuthenticator.wallet_id == wallet_id,
            )
        ).all()
        descriptors = []
        for row in rows:
            transports = [
                AuthenticatorTransport(t)
                for t in row.transports.split(",")
                if t in AuthenticatorTransport._value2member_map_
            ]
            descriptors.append(
                PublicKeyCredentialDescriptor(
                    id=base64url_to_bytes(row.credential_id), transports=transports or None
                )
            )
        return descriptors

    def _new_ceremony(self, db: Session, session: SessionInfo, **fields: Any) -> WebAuthnCeremony:
        now = self._now()
        ceremony = WebAuthnCeremony(
            id=uuid.uuid4().hex,
            user_id=session.user_id,
            session_id=session.id,
            created_at=now,
            expires_at=now + CEREMONY_TTL,
            **fields,
        )
        db.add(ceremony)
        return ceremony

    def _take(
        self, db: Session, session: SessionInfo, purpose: CeremonyPurpose, ceremony_id: str | None
    ) -> WebAuthnCeremony:
        """The session's open ceremony (the newest, or the named one), consumed now."""
        query = select(WebAuthnCeremony).where(
            WebAuthnCeremony.session_id == session.id, WebAuthnCeremony.purpose == purpose
        )
        if ceremony_id is not None:
            query = query.where(WebAuthnCeremony.id == ceremony_id)
        ceremony = db.scalars(query.order_by(WebAuthnCeremony.created_at.desc()).limit(1)).first()
        if ceremony is None:
            raise CeremonyInvalid("is unknown")
        if ceremony.consumed_at is not None:
            raise CeremonyInvalid("was already answered")
        now = self._now()
        if as_utc(ceremony.expires_at) <= now:
            raise CeremonyInvalid("expired")
        taken = db.execute(
            update(WebAuthnCeremony)
            .where(WebAuthnCeremony.id == ceremony.id, WebAuthnCeremony.consumed_at.is_(None))
            .values(consumed_at=now)
            .execution_options(synchronize_session=False)
        )
        if taken.rowcount != 1:  # type: ignore[attr-defined]
            raise CeremonyInvalid("was already answered")
        return ceremony

    # -- registration ----------------------------------------------------------------------------
    def enrolment_for(self, session: SessionInfo) -> Enrolment:
        """How a passkey registered now would join the wallet; refuses if it may not."""
        with self._sessions() as db:
            registered = db.scalars(
                select(UserAuthenticator.id).where(
                    UserAuthenticator.user_id == session.user_id,
                    UserAuthenticator.wallet_id.is_(None),
                )
            ).first()
        if registered is None:
            return Enrolment.FIRST
        if session.recovery_until is not None and session.recovery_until > self._now():
            return Enrolment.RECOVERY
        raise PasskeyEnrolmentNotAllowed

    def registration_options(self, session: SessionInfo) -> dict[str, Any]:
        """``PublicKeyCredentialCreationOptions`` as JSON, for ``navigator.credentials.create``."""
        self.enrolment_for(session)
        with self._sessions.begin() as db:
            db.connection(execution_options=_WRITE)
            options = webauthn.generate_registration_options(
                rp_id=self.rp_id,
                rp_name=self._rp_name,
                user_id=session.wallet_id.encode(),
                user_name=session.email or session.phone or session.wallet_address,
                user_display_name=session.display_name or session.email or "",
                authenticator_selection=AuthenticatorSelectionCriteria(
                    resident_key=ResidentKeyRequirement.PREFERRED,
                    user_verification=UserVerificationRequirement.REQUIRED,
                ),
                exclude_credentials=self._descriptors(db, session.user_id),
                supported_pub_key_algs=_ALGORITHMS,
                timeout=int(CEREMONY_TTL.total_seconds() * 1000),
            )
            self._new_ceremony(
                db, session, purpose=CeremonyPurpose.REGISTER, challenge=options.challenge
            )
        return options_to_json_dict(options)

    async def register(
        self, session: SessionInfo, credential: Mapping[str, Any], label: str
    ) -> Enrolled:
        """Verify the browser's registration and add the passkey to the wallet in the signer."""
        enrolment, spec = await asyncio.to_thread(self._record, session, credential, label)
        authenticator_id = str(spec["id"])
        try:
            added = await self._signer.add_authenticator(session.wallet_id, spec)
        except SignerError:
            await asyncio.to_thread(self._forget, authenticator_id)
            raise
        active_from = datetime.fromtimestamp(int(added["active_from"]), UTC)
        await asyncio.to_thread(self._activate, authenticator_id, active_from)
        return Enrolled(authenticator_id, enrolment, active_from)

    # -- delegated passkeys: the user's passkey on another's wallet, within a scope ----------------
    def delegate_registration_options(
        self, session: SessionInfo, wallet_id: str, *, label: str
    ) -> dict[str, Any]:
        """Options to make a passkey for approving on ``wallet_id`` (not the user's own).

        A credential of its own, under a user handle of its own: a discoverable passkey for the
        same relying party and handle would replace the user's wallet passkey on their phone.
        """
        handle = hashlib.sha256(
            b"seiwallet.delegate\x00" + wallet_id.encode() + b"\x00" + session.user_id.encode()
        ).digest()
        who = session.email or session.phone or session.wallet_address
        with self._sessions.begin() as db:
            db.connection(execution_options=_WRITE)
            options = webauthn.generate_registration_options(
                rp_id=self.rp_id,
                rp_name=self._rp_name,
                user_id=handle,
                user_name=f"{who} · {label}"[:64],
                user_display_name=f"{session.display_name or who} · {label}"[:64],
                authenticator_selection=AuthenticatorSelectionCriteria(
                    resident_key=ResidentKeyRequirement.DISCOURAGED,
                    user_verification=UserVerificationRequirement.REQUIRED,
                ),
                exclude_credentials=self._descriptors(db, session.user_id, wallet_id),
                supported_pub_key_algs=_ALGORITHMS,
                timeout=int(CEREMONY_TTL.total_seconds() * 1000),
            )
            self._new_ceremony(
                db,
                session,
                purpose=CeremonyPurpose.REGISTER,
                challenge=options.challenge,
                action="delegate",
                document=json.dumps({"wallet_id": wallet_id}),
            )
        return options_to_json_dict(options)

    def register_delegate(
        self, session: SessionInfo, wallet_id: str, credential: Mapping[str, Any], *, label: str
    ) -> dict[str, Any]:
        """Verify a delegated passkey's registration and keep its row (not yet able to approve:
        the wallet's owner adds it to the signer with its scope). Returns the signer's
        registration fields for it (public: key, credential id, counter, label)."""
        with self._sessions.begin() as db:
            db.connection(execution_options=_WRITE)
            ceremony = self._take(db, session, CeremonyPurpose.REGISTER, None)
            if ceremony.action != "delegate" or json.loads(ceremony.document or "{}") != {
                "wallet_id": wallet_id
            }:
                raise CeremonyInvalid("was for another passkey")
            challenge = ceremony.challenge
        verified = self._verify_registration(session, credential, challenge, "delegated passkey")
        authenticator_id = "dk_" + uuid.uuid4().hex
        credential_id = bytes_to_base64url(verified.credential_id)
        label = label.strip()[:100] or "Delegated passkey"
        # Not before the owner approves it (then set to that moment).
        self._keep_passkey(
            UserAuthenticator(
                id=authenticator_id,
                user_id=session.user_id,
                wallet_id=wallet_id,
                kind=AuthenticatorKindName.PASSKEY,
                label=label,
                credential_id=credential_id,
                transports=_transports(credential),
                enrolment=Enrolment.DELEGATED,
                created_at=self._now(),
                active_from=_NOT_YET,
            )
        )
        return {
            "kind": "passkey",
            "id": authenticator_id,
            "public_key": verified.credential_public_key.hex(),
            "credential_id": verified.credential_id.hex(),
            "sign_count": verified.sign_count,
            "label": label,
        }

    def delegate_added(self, authenticator_id: str, *, at: datetime) -> None:
        """The wallet's owner added the delegated passkey to the signer: it approves from now."""
        self._activate(authenticator_id, at)

    def delegate_removed(self, authenticator_id: str) -> None:
        """The delegated passkey no longer approves (removed in the signer, or never added)."""
        with self._sessions.begin() as db:
            db.execute(
                update(UserAuthenticator)
                .where(
                    UserAuthenticator.id == authenticator_id,
                    UserAuthenticator.revoked_at.is_(None),
                )
                .values(revoked_at=self._now())
                .execution_options(synchronize_session=False)
            )

    def _keep_passkey(self, row: UserAuthenticator) -> None:
        """Keep a newly registered passkey's row; refused if its credential is known already."""
        with self._sessions.begin() as db:
            db.connection(execution_options=_WRITE)
            if db.scalars(
                select(UserAuthenticator.id).where(
                    UserAuthenticator.credential_id == row.credential_id
                )
            ).first():
                raise PasskeyRegistrationRefused("this passkey is already registered")
            db.add(row)

    def _verify_registration(
        self,
        session: SessionInfo,
        credential: Mapping[str, Any],
        challenge: bytes,
        what: str,
    ) -> VerifiedRegistration:
        """The browser's registration answer checked against our challenge, RP id and origins
        (user verification required); :class:`PasskeyRegistrationRefused` otherwise."""
        try:
            return webauthn.verify_registration_response(
                credential=dict(credential),
                expected_challenge=challenge,
                expected_rp_id=self.rp_id,
                expected_origin=self._origins,
                require_user_verification=True,
                supported_pub_key_algs=_ALGORITHMS,
            )
        except (InvalidRegistrationResponse, InvalidJSONStructure, ValueError, KeyError) as exc:
            log.info("%s registration refused for user %s: %s", what, session.user_id, exc)
            raise PasskeyRegistrationRefused(str(exc) or type(exc).__name__) from None

    def _record(
        self, session: SessionInfo, credential: Mapping[str, Any], label: str
    ) -> tuple[Enrolment, dict[str, Any]]:
        """Take the ceremony, verify the registration, keep the row; what to ask the signer."""
        enrolment = self.enrolment_for(session)
        with self._sessions.begin() as db:
            db.connection(execution_options=_WRITE)
            ceremony = self._take(db, session, CeremonyPurpose.REGISTER, None)
            if ceremony.action is not None:
                raise CeremonyInvalid("was for a passkey on another wallet")
            challenge = ceremony.challenge
        verified = self._verify_registration(session, credential, challenge, "passkey")
        authenticator_id = "pk_" + uuid.uuid4().hex
        label = (label or "Passkey").strip()[:100]
        credential_id = bytes_to_base64url(verified.credential_id)
        now = self._now()
        # The app's row first, pessimistically time-locked: should we crash after the signer
        # answered, the device is still listed (and can be cancelled) rather than invisible.
        self._keep_passkey(
            UserAuthenticator(
                id=authenticator_id,
                user_id=session.user_id,
                kind=AuthenticatorKindName.PASSKEY,
                label=label,
                credential_id=credential_id,
                transports=_transports(credential),
                enrolment=enrolment,
                created_at=now,
                active_from=now + self.recovery_timelock,
            )
        )
        return enrolment, {
            "kind": "passkey",
            "id": authenticator_id,
            "public_key": verified.credential_public_key.hex(),
            "credential_id": verified.credential_id.hex(),
            "sign_count": verified.sign_count,
            "label": label,
        }

    def _forget(self, authenticator_id: str) -> None:
        """The signer refused the passkey: the app keeps no row of it either."""
        with self._sessions.begin() as db:
            row = db.get(UserAuthenticator, authenticator_id)
            if row is not None:
                db.delete(row)

    def _activate(self, authenticator_id: str, active_from: datetime) -> None:
        """Record when the signer lets the passkey approve (now, or after the time-lock)."""
        with self._sessions.begin() as db:
            db.execute(
                update(UserAuthenticator)
                .where(UserAuthenticator.id == authenticator_id)
                .values(active_from=active_from)
                .execution_options(synchronize_session=False)
            )

    # -- approvals -------------------------------------------------------------------------------
    def approval_options(
        self,
        session: SessionInfo,
        action: str,
        document: Mapping[str, Any],
        *,
        wallet_id: str | None = None,
    ) -> tuple[str, dict[str, Any]]:
        """A challenge for approving ``action`` with a passkey: ``(approval id, options JSON)``.

        For the user's own wallet, or (``wallet_id``) for another wallet on which the user
        holds a delegated passkey: then only that passkey is offered and the challenge binds
        that wallet (the signer still decides whether the delegate's scope covers the intent).
        """
        wallet = session.wallet_id if wallet_id is None else wallet_id
        fields = APPROVABLE.get(action)
        if fields is None or set(document) != set(fields):
            raise CeremonyInvalid(f"cannot approve {action!r} with these fields")
        canonical = {k: str(document[k]) for k in fields}
        nonce = secrets.token_bytes(16)
        expires_at = int(self._clock()) + _APPROVAL_LIFETIME
        if action == "intent":
            try:
                digest = bytes.fromhex(canonical["digest"])
            except ValueError:
                raise CeremonyInvalid("names a malformed intent digest") from None
            if len(digest) != 32:
                raise CeremonyInvalid("names a malformed intent digest")
        else:
            digest = action_digest(action, canonical)
        challenge = challenge_bytes(approval_subject(wallet, digest), nonce, expires_at)
        with self._sessions.begin() as db:
            db.connection(execution_options=_WRITE)
            allow = self._descriptors(db, session.user_id, wallet_id)
            if not allow:
                raise AuthenticatorUnknown
            ceremony = self._new_ceremony(
                db,
                session,
                purpose=CeremonyPurpose.APPROVE,
                challenge=challenge,
                action=action,
                document=json.dumps(canonical, sort_keys=True),
                nonce=nonce,
                approval_expires_at=expires_at,
            )
            options = webauthn.generate_authentication_options(
                rp_id=self.rp_id,
                challenge=challenge,
                allow_credentials=allow,
                user_verification=UserVerificationRequirement.REQUIRED,
                timeout=_APPROVAL_LIFETIME * 1000,
            )
            return ceremony.id, options_to_json_dict(options)

    def approval(
        self, session: SessionInfo, approval_id: str, credential: Mapping[str, Any]
    ) -> ApprovedAction:
        """The signer approval the browser's assertion makes, and the action it approves.

        Nothing is verified cryptographically here: the signer does it, against the key it
        holds. This only checks the answer belongs to this session's ceremony and reshapes it.
        """
        try:
            parsed = parse_authentication_credential_json(dict(credential))
        except (InvalidJSONStructure, ValueError, KeyError) as exc:
            raise CeremonyInvalid(f"answer is malformed ({exc})") from None
        with self._sessions.begin() as db:
            db.connection(execution_options=_WRITE)
            ceremony = self._take(db, session, CeremonyPurpose.APPROVE, approval_id)
            row = db.scalars(
                select(UserAuthenticator).where(
                    UserAuthenticator.user_id == session.user_id,
                    UserAuthenticator.credential_id == bytes_to_base64url(parsed.raw_id),
                )
            ).first()
            if row is None:
                raise AuthenticatorUnknown
            row.last_used_at = self._now()
            if ceremony.nonce is None or ceremony.approval_expires_at is None:
                raise CeremonyInvalid("is not an approval")  # pragma: no cover
            approval: dict[str, Any] = {
                "kind": "passkey",
                "authenticator_id": row.id,
                "nonce": bytes_to_base64url(ceremony.nonce),
                "expires_at": ceremony.approval_expires_at,
                "authenticator_data": bytes_to_base64url(parsed.response.authenticator_data),
                "client_data_json": bytes_to_base64url(parsed.response.client_data_json),
                "signature": bytes_to_base64url(parsed.response.signature),
            }
            if parsed.response.user_handle:
                approval["user_handle"] = bytes_to_base64url(parsed.response.user_handle)
            return ApprovedAction(
                action=str(ceremony.action),
                document=json.loads(ceremony.document or "{}"),
                approval=approval,
                authenticator_id=row.id,
            )

    async def remove(
        self, session: SessionInfo, authenticator_id: str, approval: Mapping[str, Any]
    ) -> None:
        """Revoke an authenticator in the signer (approved), then in the app."""
        with self._sessions() as db:
            row = db.get(UserAuthenticator, authenticator_id)
            if row is None or row.user_id != session.user_id or row.revoked_at is not None:
                raise AuthenticatorUnknown
        await self._signer.remove_authenticator(session.wallet_id, authenticator_id, [approval])
        with self._sessions.begin() as db:
            db.execute(
                update(UserAuthenticator)
                .where(UserAuthenticator.id == authenticator_id)
                .values(revoked_at=self._now())
                .execution_options(synchronize_session=False)
            )

    def record_device(
        self,
        user_id: str,
        authenticator_id: str,
        *,
        public_key: bytes,
        label: str,
        enrolment: Enrolment,
        active_from: datetime,
    ) -> None:
        """Keep a device key the signer added (``seiwallet login``) in the user's list."""
        with self._sessions.begin() as db:
            db.add(
                UserAuthenticator(
                    id=authenticator_id,
                    user_id=user_id,
                    kind=AuthenticatorKindName.DEVICE,
                    label=label[:100],
                    credential_id=bytes_to_base64url(hashlib.sha256(public_key).digest()),
                    enrolment=enrolment,
                    created_at=self._now(),
                    active_from=active_from,
                )
            )


def _transports(credential: Mapping[str, Any]) -> str:
    """How the browser says the authenticator is reached ("internal,hybrid"), as kept."""
    transports = credential.get("response", {}).get("transports") or []
    return ",".join(str(t) for t in transports if isinstance(t, str))[:200]
