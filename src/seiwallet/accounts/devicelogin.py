"""``seiwallet login``: a CLI or SDK gets an API token and a device key, approved with a passkey.

The OAuth 2.0 device authorization grant (RFC 8628) against our own API, because what the CLI
needs is not an ID token but a seiwallet session and an authenticator on the wallet:

1. The CLI generates a P-256 device key (kept in a 0600 file on the device) and starts a login
   with its public key: it gets a ``device_code`` (its secret) and a short ``user_code``.
2. The person opens ``/device`` in the wallet app (signed in with their account, as usual),
   checks the code the terminal shows, and approves with their passkey the addition of exactly
   that device key. The signer verifies that approval and adds the key, active at once. A wallet
   that has no authenticator yet takes the key as its first one.
3. The CLI, polling, receives a bearer token bound to that device key.

Nobody who only sees the terminal (or only holds the account password) can finish it: the
approval is the wallet's own passkey over the device key's digest.
"""

from __future__ import annotations

import asyncio
import hashlib
import secrets
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from cryptography.hazmat.primitives.asymmetric import ec
from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from seiwallet.accounts.errors import (
    DeviceLoginDenied,
    DeviceLoginExpired,
    DeviceLoginPending,
    DeviceLoginSlowDown,
)
from seiwallet.accounts.models import DeviceLogin, DeviceLoginStatus, Enrolment, SessionKind
from seiwallet.accounts.oidc import Clock
from seiwallet.accounts.passkeys import PasskeyService
from seiwallet.accounts.sessions import SessionInfo, SessionService
from seiwallet.db import SQLITE_BEGIN, as_utc
from seiwallet.errors import InvalidInput
from seiwallet.signer.client import SignerClient

LOGIN_TTL: Final = timedelta(minutes=10)
POLL_INTERVAL: Final = 2  # seconds, RFC 8628 §3.2 ``interval``
# No vowels-lookalikes: B, D, G, H, J… (RFC 8628 §6.1 suggests a base-20 alphabet).
_USER_CODE_ALPHABET: Final = "BCDFGHJKLMNPQRSTVWXZ"
_WRITE: Final = {SQLITE_BEGIN: "IMMEDIATE"}


def _digest(device_code: str) -> str:
    return hashlib.sha256(device_code.encode()).hexdigest()


def normalise_user_code(code: str) -> str:
    letters = "".join(c for c in code.upper() if c.isalnum())
    return f"{letters[:4]}-{letters[4:]}" if len(letters) == 8 else letters


@dataclass(frozen=True)
class DeviceLoginStarted:
    device_code: str
    user_code: str
    expires_in: int
    interval: int


@dataclass(frozen=True)
class PendingDevice:
    id: str
    user_code: str
    label: str
    authenticator_id: str
    public_key: str
    status: DeviceLoginStatus
    expires_at: datetime

    def document(self) -> dict[str, str]:
        """What the passkey approves (and the signer adds): exactly this device key."""
        return {
            "kind": "device",
            "id": self.authenticator_id,
            "public_key": self.public_key,
            "label": self.label,
        }


@dataclass(frozen=True)
class DeviceToken:
    token: str
    user_id: str
    wallet_address: str
    authenticator_id: str


class DeviceLoginService:
    def __init__(
        self,
        sessions: sessionmaker[Session],
        session_service: SessionService,
        passkeys: PasskeyService,
        signer: SignerClient,
        clock: Clock = time.time,
    ) -> None:
        self._sessions = sessions
        self._session_service = session_service
        self._passkeys = passkeys
        self._signer = signer
        self._clock = clock

    def _now(self) -> datetime:
        return datetime.fromtimestamp(self._clock(), UTC)

    def start(self, public_key_hex: str, label: str) -> DeviceLoginStarted:
        """Begin a login for the device key ``public_key_hex`` (X9.62 P-256 point, hex)."""
        try:
            point = bytes.fromhex(public_key_hex.removeprefix("0x"))
            ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), point)
        except ValueError:
            raise InvalidInput("public_key must be a P-256 public key in hex (X9.62)") from None
        label = " ".join(label.split())[:100] or "Command line"
        device_code = secrets.token_urlsafe(32)
        letters = "".join(secrets.choice(_USER_CODE_ALPHABET) for _ in range(8))
        user_code = f"{letters[:4]}-{letters[4:]}"
        now = self._now()
        with self._sessions.begin() as db:
            db.add(
                DeviceLogin(
                    id=uuid.uuid4().hex,
                    device_code_hash=_digest(device_code),
                    user_code=user_code,
                    public_key=point.hex(),
                    label=label,
                    status=DeviceLoginStatus.PENDING,
                    authenticator_id="dk_" + uuid.uuid4().hex,
                    created_at=now,
                    expires_at=now + LOGIN_TTL,
                )
            )
        return DeviceLoginStarted(
            device_code, user_code, int(LOGIN_TTL.total_seconds()), POLL_INTERVAL
        )

    def find(self, user_code: str) -> PendingDevice:
        """The pending login the person typed (or followed a link to)."""
        with self._sessions() as db:
            row = db.scalars(
                select(DeviceLogin).where(DeviceLogin.user_code == normalise_user_code(user_code))
            ).first()
            if (
                row is None
                or row.status is not DeviceLoginStatus.PENDING
                or as_utc(row.expires_at) <= self._now()
            ):
                raise DeviceLoginExpired
            return PendingDevice(
                row.id,
                row.user_code,
                row.label,
                str(row.authenticator_id),
                row.public_key,
                row.status,
                as_utc(row.expires_at),
            )

    async def approve(
        self, session: SessionInfo, user_code: str, approval: dict[str, Any] | None
    ) -> PendingDevice:
        """Add the device key to the wallet (with the passkey's approval) and release the login."""
        pending = await asyncio.to_thread(self.find, user_code)
        added = await self._signer.add_authenticator(
            session.wallet_id, pending.document(), [approval] if approval else []
        )
        active_from = datetime.fromtimestamp(int(added["active_from"]), UTC)
        enrolment = Enrolment.APPROVED if approval else Enrolment.FIRST
        if active_from > self._now():
            enrolment = Enrolment.RECOVERY
        await asyncio.to_thread(self._approved, session, pending, enrolment, active_from)
        return pending

    def _approved(
        self,
        session: SessionInfo,
        pending: PendingDevice,
        enrolment: Enrolment,
        active_from: datetime,
    ) -> None:
        """The signer added the key: list it with the user's devices and release the login."""
        self._passkeys.record_device(
            session.user_id,
            pending.authenticator_id,
            public_key=bytes.fromhex(pending.public_key),
            label=pending.label,
            enrolment=enrolment,
            active_from=active_from,
        )
        with self._sessions.begin() as db:
            db.execute(
                update(DeviceLogin)
                .where(DeviceLogin.id == pending.id)
                .values(status=DeviceLoginStatus.APPROVED, user_id=session.user_id)
                .execution_options(synchronize_session=False)
            )

    def deny(self, session: SessionInfo, user_code: str) -> None:
        pending = self.find(user_code)
        with self._sessions.begin() as db:
            db.execute(
                update(DeviceLogin)
                .where(DeviceLogin.id == pending.id)
                .values(status=DeviceLoginStatus.DENIED, user_id=session.user_id)
                .execution_options(synchronize_session=False)
            )

    def poll(self, device_code: str) -> DeviceToken:
        """The CLI's token once approved (once); the RFC 8628 errors meanwhile."""
        now = self._now()
        with self._sessions.begin() as db:
            db.connection(execution_options=_WRITE)
            row = db.scalars(
                select(DeviceLogin).where(DeviceLogin.device_code_hash == _digest(device_code))
            ).first()
            if row is None or row.status is DeviceLoginStatus.DONE:
                raise DeviceLoginExpired
            too_fast = (
                row.last_polled_at is not None
                and (now - as_utc(row.last_polled_at)).total_seconds() < POLL_INTERVAL - 0.5
            )
            row.last_polled_at = now
            status = row.status
            expired = as_utc(row.expires_at) <= now
            if status is DeviceLoginStatus.APPROVED:
                row.status = DeviceLoginStatus.DONE
            user_id, authenticator_id, label = row.user_id, row.authenticator_id, row.label
        if status is DeviceLoginStatus.DENIED:
            raise DeviceLoginDenied
        if status is DeviceLoginStatus.PENDING:
            if expired:
                raise DeviceLoginExpired
            raise DeviceLoginSlowDown if too_fast else DeviceLoginPending
        if user_id is None or authenticator_id is None:  # pragma: no cover - set on approval
            raise DeviceLoginExpired
        _, token = self._session_service.open(
            user_id, SessionKind.API, label=label, authenticator_id=authenticator_id
        )
        info = self._session_service.authenticate(token, SessionKind.API)
        return DeviceToken(token, user_id, info.wallet_address, authenticator_id)
