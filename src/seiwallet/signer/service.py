"""The signer's use cases: create wallets, manage authenticators, sign approved intents, export.

Every decision runs in one database transaction that holds the wallet's lock: approvals are
verified and their nonces consumed, the policy is evaluated against the spends already recorded,
the signature is made, the spend and the audit record are written — or nothing is. A batch of
requests shares one transaction (one commit), and each request succeeds or is refused alone.

Approvals bind the wallet as well as the intent: the challenge an authenticator signs is built
from :func:`approval_subject` (wallet id + intent digest), so an approval for one wallet is
worthless for another wallet that happens to share the authenticator.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import re
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from sqlalchemy.exc import IntegrityError

from seiwallet.addresses import sei_address_from_public_key
from seiwallet.errors import InvalidInput, SeiwalletError
from seiwallet.signer.approvals import (
    Approval,
    Authenticator,
    AuthenticatorKind,
    CheckedSignature,
    DeviceApproval,
    check_device_signature,
    parse_approval,
    passes_with_check,
    verify_approval,
)
from seiwallet.signer.audit import AuditDecision, AuditEntry, AuditRecord
from seiwallet.signer.errors import (
    AlreadyExists,
    ApprovalRefused,
    IntentInvalid,
    PolicyDeclined,
    PolicyInvalid,
    UnknownWallet,
)
from seiwallet.signer.export import export_sealed_key
from seiwallet.signer.intents import (
    Erc3009Transfer,
    Intent,
    KeyExport,
    PolicyUpdate,
    describe,
    intent_digest,
    parse_intent,
    parse_intent_with_digest,
    signing_hash,
    spend,
    transfer_signing_hash,
)
from seiwallet.signer.keystore import KeyStore, SealedKey, SigningSession
from seiwallet.signer.policy import (
    DAILY_WINDOW_SECONDS,
    DelegateScope,
    Policy,
    evaluate,
    parse_delegate_scope,
)
from seiwallet.signer.store import (
    AuthenticatorRecord,
    BatchTransaction,
    SignerStore,
    WalletTransaction,
)

_WALLET_ID: Final = re.compile(r"[A-Za-z0-9_.:-]{1,64}")
_SUBJECT_DOMAIN: Final = b"seiwallet.approval-subject.v1\x00"
#: At most this many approvals per request (a quorum is a handful of people or devices).
MAX_APPROVALS: Final = 16
#: At most this many intents per sign call.
MAX_BATCH: Final = 5000
#: Device keys remembered for checking signatures ahead of a batch's transaction.
_DEVICE_KEYS_KEPT: Final = 100_000
#: How long an authenticator added without the wallet's approval waits before it may approve
#: anything (account recovery): any existing device can remove it meanwhile.
DEFAULT_RECOVERY_TIMELOCK: Final = 48 * 3600


def approval_subject(wallet_id: str, digest: bytes) -> bytes:
    """What an approval's challenge commits to: this wallet and this intent (or action)."""
    return hashlib.sha256(_subject_prefix(wallet_id) + digest).digest()


@functools.lru_cache(maxsize=65_536)
def _subject_prefix(wallet_id: str) -> bytes:
    """What precedes the digest in a wallet's approval subjects (made once per wallet)."""
    return _SUBJECT_DOMAIN + wallet_id.encode() + b"\x00"


def action_digest(action: str, document: Mapping[str, Any]) -> bytes:
    """The digest of an authenticator change, approved like an intent."""
    canonical = json.dumps(document, sort_keys=True, separators=(",", ":")).encode()
    return hashlib.sha256(f"seiwallet.{action}.v1\x00".encode() + canonical).digest()


@functools.lru_cache(maxsize=65_536)
def wallet_aad(wallet_id: str) -> bytes:
    """Associated data binding a sealed key to its wallet (made once per wallet)."""
    return b"seiwallet.wallet\x00" + wallet_id.encode()


@dataclass(frozen=True)
class RelyingParty:
    """Where passkey approvals may come from."""

    rp_id: str
    origins: tuple[str, ...]


#: (wallet id, authenticator id) → (the stored record, the verifier's view of it).
_VERIFIERS: dict[tuple[str, str], tuple[AuthenticatorRecord, Authenticator]] = {}
_VERIFIERS_KEPT: Final = 16_384


def _authenticator(record: AuthenticatorRecord) -> Authenticator:
    """The verifier's view of a stored authenticator, built once per distinct record.

    Building one re-validates every field, which cost more per intent than the look-up. A view
    is reused only for an equal record — sign count, revocation and ``active_from`` included —
    so a hit is exactly what a miss would build (within a batch the record is the very same
    object, which is cheaper still to recognise).
    """
    key = (record.wallet_id, record.id)
    cached = _VERIFIERS.get(key)
    if cached is not None:
        if cached[0] is record:
            return cached[1]
        if cached[0] == record:
            _VERIFIERS[key] = (record, cached[1])
            return cached[1]
    view = Authenticator(
        id=record.id,
        wallet_id=record.wallet_id,
        kind=AuthenticatorKind(record.kind),
        public_key=record.public_key,
        credential_id=record.credential_id,
        sign_count=record.sign_count,
        rp_id=record.rp_id,
        origins=record.origins,
        active_from=record.active_from,
        revoked=record.revoked,
    )
    if len(_VERIFIERS) >= _VERIFIERS_KEPT:
        _VERIFIERS.clear()
    _VERIFIERS[key] = (record, view)
    return view


class _Turn:
    """A signing batch's turn to compute: from reading its requests to the start of its commit.

    One batch computes at a time, so a batch's data stays in the processor's caches (two
    batches interleaved on one core were measured ~10 % slower); when a batch starts its commit
    — a wait for the disk, done without the interpreter lock — the next one starts reading
    and checking its requests, so that wait is not lost. The store's locks, not this, keep the
    decisions consistent.
    """

    def __init__(self, lock: threading.Lock) -> None:
        self._lock = lock
        self._held = False

    def __enter__(self) -> _Turn:
        self._lock.acquire()
        self._held = True
        return self

    def end(self) -> None:
        """Let the next batch compute (called when this one starts its commit)."""
        if self._held:
            self._held = False
            self._lock.release()

    def __exit__(self, *_exc: object) -> None:
        self.end()


def _check_approvals(approvals: object) -> None:
    if not isinstance(approvals, list | tuple) or len(approvals) > MAX_APPROVALS:
        raise InvalidInput(f"approvals must be a list of at most {MAX_APPROVALS}")


def _parsed(raw: Any) -> Approval | SeiwalletError:
    """An approval read from JSON, or the error to raise when its turn to be verified comes."""
    try:
        return parse_approval(raw)
    except SeiwalletError as exc:
        return exc


class _Prepared:
    """A sign request read before the batch's transaction: each part, or the error it raised.

    The errors are raised later, in the order the checks run (request, wallet, intent,
    approvals), so reading ahead changes no answer.
    """

    __slots__ = (
        "approvals",
        "approvals_error",
        "checked",
        "digest",
        "error",
        "fresh_nonces",
        "intent",
        "intent_error",
        "nonces",
        "subject",
        "wallet_id",
    )

    def __init__(self) -> None:
        self.wallet_id: str | None = None
        self.error: SeiwalletError | None = None
        self.intent: Intent | None = None
        self.digest = b""
        self.intent_error: SeiwalletError | None = None
        self.approvals: list[Approval | SeiwalletError] = []
        #: Per approval: its nonce in hex (as the store keeps it), ``None`` if it did not parse.
        self.nonces: list[str | None] = []
        self.approvals_error: SeiwalletError | None = None
        #: Per approval: its signature checked ahead under the authenticator's last known key.
        self.checked: list[CheckedSignature | None] = []
        #: What the approvals sign over (wallet and intent digest), once computed.
        self.subject: bytes | None = None
        #: The lean path's ``(nonce, expires_at)`` per approval, to consume at once.
        self.fresh_nonces: list[tuple[str, int]] = []


def _prepare(request: object) -> _Prepared:
    """Read one sign request: pure work on the request alone, before any lock is taken."""
    prepared = _Prepared()
    try:
        if type(request) is not dict and not isinstance(request, Mapping):
            raise InvalidInput("each request is an object")
        prepared.wallet_id = _check_wallet_id(request.get("wallet_id"))
    except SeiwalletError as exc:
        prepared.error = exc
        return prepared
    try:
        prepared.intent, prepared.digest = parse_intent_with_digest(request.get("intent") or {})
    except SeiwalletError as exc:
        prepared.intent_error = exc
        return prepared
    approvals = request.get("approvals") or []
    if type(approvals) is not list or len(approvals) > MAX_APPROVALS:
        try:
            _check_approvals(approvals)
        except SeiwalletError as exc:
            prepared.approvals_error = exc
            return prepared
    parsed: list[Approval | SeiwalletError] = []
    nonces: list[str | None] = []
    for raw in approvals:
        approval = _parsed(raw)
        parsed.append(approval)
        nonces.append(None if isinstance(approval, SeiwalletError) else approval.nonce.hex())
    prepared.approvals, prepared.nonces = parsed, nonces
    return prepared


def _check_ahead(prepared: _Prepared, device_keys: Mapping[tuple[str, str], bytes]) -> None:
    """Verify device approvals' signatures under the keys their authenticators had when last
    seen: pure work, done before the batch takes its locks (so it overlaps another batch's
    commit). The transaction still verifies everything against the stored authenticator, and
    uses a check made here only if it was made under that very key (see verify_approval)."""
    wallet_id = prepared.wallet_id
    if wallet_id is None or prepared.intent is None or not prepared.approvals:
        return
    subject = prepared.subject = approval_subject(wallet_id, prepared.digest)
    approvals = prepared.approvals
    if len(approvals) == 1:  # one approval, as nearly every request has
        (approval,) = approvals
        check: CheckedSignature | None = None
        if type(approval) is DeviceApproval:
            key = device_keys.get((wallet_id, approval.authenticator_id))
            if key is not None:
                check = check_device_signature(approval, key, subject)
        prepared.checked = [check]
        return
    checked: list[CheckedSignature | None] = []
    for approval in approvals:
        check = None
        if type(approval) is DeviceApproval:
            key = device_keys.get((wallet_id, approval.authenticator_id))
            if key is not None:
                check = check_device_signature(approval, key, subject)
        checked.append(check)
    prepared.checked = checked


def _check_wallet_id(wallet_id: object) -> str:
    if not isinstance(wallet_id, str) or not _WALLET_ID.fullmatch(wallet_id):
        raise InvalidInput("a wallet id is 1 to 64 letters, digits or _ . : -")
    return wallet_id


@contextlib.contextmanager
def _unique(what: str) -> Iterator[None]:
    """Turn a uniqueness violation into :class:`AlreadyExists` (ids are chosen by the caller)."""
    try:
        yield
    except IntegrityError:
        raise AlreadyExists(f"{what} already exists: choose another id") from None


def _wallet_description(
    wallet_id: str, address: str, public_key: bytes, *, created: bool
) -> dict[str, Any]:
    return {
        "wallet_id": wallet_id,
        "address": address,
        "sei_address": sei_address_from_public_key(public_key),
        "public_key": "0x" + public_key.hex(),
        "created": created,
    }


def _done(
    kind: str,
    wallet_id: str,
    now: int,
    *,
    digest: bytes | None = None,
    approved: set[str] | frozenset[str] = frozenset(),
    details: Mapping[str, Any] | None = None,
) -> AuditEntry:
    """The audit record of a decision carried out (a signature, a change to the wallet)."""
    return AuditEntry(
        kind=kind,
        decision=AuditDecision.SIGNED,
        at=now,
        wallet_id=wallet_id,
        intent_digest=digest.hex() if digest is not None else None,
        approvals=tuple(sorted(approved)),
        details=dict(details or {}),
    )


def _error_body(exc: SeiwalletError) -> dict[str, Any]:
    body: dict[str, Any] = {"code": exc.code, "message": str(exc)}
    for attribute in ("reason", "rule", "authenticator_id"):
        value = getattr(exc, attribute, None)
        if value is not None:
            body[attribute] = str(value)
    return body


def _audit_view(record: AuditRecord) -> dict[str, Any]:
    """An audit record as the ``audit`` RPC answers it (the hashed JSON's fields, read once)."""
    body = record.body()
    details = body.get("details")
    return {
        "seq": record.seq,
        "at": record.at,
        "wallet_id": record.wallet_id,
        "kind": record.kind,
        "intent_digest": body.get("intent_digest"),
        "decision": record.decision,
        "rule": body.get("rule"),
        "reason": body.get("reason"),
        "details": details if isinstance(details, dict) else {},
        "hash": "0x" + record.hash.hex(),
    }


class SignerService:
    """The signer's operations; the RPC server exposes exactly these."""

    def __init__(
        self,
        store: SignerStore,
        keys: KeyStore,
        *,
        relying_party: RelyingParty,
        recovery_timelock: int = DEFAULT_RECOVERY_TIMELOCK,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._store = store
        self._keys = keys
        self._rp = relying_party
        self._timelock = recovery_timelock
        self._clock = clock
        self._policies: dict[tuple[str, int], Policy] = {}
        #: Held by the signing batch that is computing, until its commit starts (see _Turn).
        self._computing = threading.Lock()
        #: (wallet id, authenticator id) → the device key it had when last verified: what
        #: signatures are checked against before a batch locks anything (see _check_ahead).
        self._device_keys: dict[tuple[str, str], bytes] = {}

    def describe(self) -> str:
        return f"master key: {self._keys.master.describe()}"

    def _now(self) -> int:
        return int(self._clock())

    def _policy(self, wallet_id: str, version: int, document: Mapping[str, Any]) -> Policy:
        """The wallet's policy, parsed once per version."""
        key = (wallet_id, version)
        policy = self._policies.get(key)
        if policy is None:
            policy = Policy.parse(document) if document else Policy.default()
            if len(self._policies) > 100_000:
                self._policies.clear()
            self._policies[key] = policy
        return policy

    def _remember_device_key(self, record: AuthenticatorRecord) -> None:
        key = (record.wallet_id, record.id)
        if self._device_keys.get(key) != record.public_key:
            if len(self._device_keys) >= _DEVICE_KEYS_KEPT:
                self._device_keys.clear()
            self._device_keys[key] = record.public_key

    # -- health ------------------------------------------------------------------------------
    def health(self) -> dict[str, Any]:
        head = self._store.audit_head()
        return {"status": "ok", "master_key": self._keys.master.describe(), "audit_seq": head.seq}

    # -- wallets and authenticators ----------------------------------------------------------
    def _authenticator_fields(self, spec: Mapping[str, Any]) -> dict[str, Any]:
        """Validate an authenticator registration coming from the API."""
        try:
            kind = AuthenticatorKind(spec["kind"])
            fields: dict[str, Any] = {
                "authenticator_id": str(spec["id"]),
                "kind": str(kind),
                "public_key": bytes.fromhex(str(spec["public_key"]).removeprefix("0x")),
                "credential_id": bytes.fromhex(
                    str(spec.get("credential_id", "")).removeprefix("0x")
                ),
                "sign_count": int(spec.get("sign_count", 0)),
                "label": str(spec.get("label", ""))[:100],
            }
        except (KeyError, ValueError, TypeError) as exc:
            raise InvalidInput(f"bad authenticator registration: {exc}") from None
        if spec.get("scope") is not None:
            try:
                fields["scope"] = parse_delegate_scope(spec["scope"], "scope")
            except PolicyInvalid as exc:
                raise InvalidInput(f"bad authenticator registration: {exc}") from None
        if kind is AuthenticatorKind.DEVICE and not fields["credential_id"]:
            # A device key has no WebAuthn credential id: its key's hash identifies it.
            fields["credential_id"] = hashlib.sha256(fields["public_key"]).digest()
        if kind is AuthenticatorKind.PASSKEY:
            fields["rp_id"] = self._rp.rp_id
            fields["origins"] = self._rp.origins
            if not fields["credential_id"]:
                raise InvalidInput("a passkey registration needs its credential_id")
        # Check the key parses before storing it, by building the verifier's view of it.
        Authenticator(
            id=fields["authenticator_id"],
            wallet_id="check",
            kind=kind,
            public_key=fields["public_key"],
            credential_id=fields["credential_id"],
            rp_id=fields.get("rp_id"),
            origins=tuple(fields.get("origins", ())),
        )
        return fields

    def create_wallet(
        self, wallet_id: str, authenticator: Mapping[str, Any] | None = None
    ) -> dict[str, Any]:
        """Generate a wallet key inside the signer; optionally enrol its first authenticator.

        Idempotent: for a wallet id that exists, the existing wallet's public description is
        returned (``created`` false) and nothing changes — so a caller that crashed between our
        answer and its own commit can ask again and learn the address. Its authenticators are
        not touched: adding one to an existing wallet goes through ``add_authenticator``.
        """
        _check_wallet_id(wallet_id)
        existing = self._describe_wallet(wallet_id)
        if existing is not None:
            return existing
        fields = self._authenticator_fields(authenticator) if authenticator else None
        sealed, public_key, address = self._keys.generate(wallet_aad(wallet_id))
        now = self._now()
        with (
            _unique(f"wallet {wallet_id!r} or its authenticator"),
            self._store.transaction(None) as tx,
        ):
            tx.insert_wallet(
                wallet_id=wallet_id,
                address=address,
                public_key=public_key,
                sealed_key=sealed.to_bytes(),
                created_at=now,
            )
            if fields:
                # The first authenticator is enrolled at once: there is nobody to approve it.
                tx.insert_authenticator(created_at=now, active_from=now, **fields)
            tx.append_audit(_done("wallet.create", wallet_id, now, details={"address": address}))
        return _wallet_description(wallet_id, address, public_key, created=True)

    def _describe_wallet(self, wallet_id: str) -> dict[str, Any] | None:
        """The public description of an existing wallet, or ``None``."""
        try:
            with self._store.transaction(wallet_id) as tx:
                wallet = tx.wallet()
        except UnknownWallet:
            return None
        return _wallet_description(wallet.id, wallet.address, wallet.public_key, created=False)

    def _verify(
        self,
        tx: WalletTransaction,
        digest: bytes,
        approvals: Sequence[Mapping[str, Any]],
        now: int,
    ) -> set[str]:
        """Verify approvals over (wallet, digest); consume their nonces; return who approved."""
        _check_approvals(approvals)
        return self._verify_approvals(tx, digest, [_parsed(raw) for raw in approvals], now)

    def _verify_approvals(
        self,
        tx: WalletTransaction,
        digest: bytes,
        approvals: Sequence[Approval | SeiwalletError],
        now: int,
        *,
        checked: Sequence[CheckedSignature | None] = (),
        subject: bytes | None = None,
        nonces: Sequence[str | None] = (),
    ) -> set[str]:
        """Verify parsed approvals in order (a parse error is raised where it stands).

        ``subject``, if given, is ``approval_subject`` of this wallet and ``digest``; ``checked``
        and ``nonces``, per approval, its signature checked ahead and its nonce in hex.
        """
        if subject is None:
            subject = approval_subject(tx.wallet().id, digest)
        approved: set[str] = set()
        for index, approval in enumerate(approvals):
            if isinstance(approval, SeiwalletError):
                raise approval
            record = tx.authenticator(approval.authenticator_id)
            if record is None:
                raise ApprovalRefused(
                    "foreign: not an authenticator of this wallet",
                    authenticator_id=approval.authenticator_id,
                )
            if record.id in approved:
                raise ApprovalRefused("duplicate approval", authenticator_id=record.id)
            check = checked[index] if index < len(checked) else None
            verified = verify_approval(
                approval, _authenticator(record), subject, now=now, checked=check
            )
            if record.kind == "device" and (check is None or check.public_key != record.public_key):
                self._remember_device_key(record)  # (a check made ahead used the known key)
            nonce = nonces[index] if index < len(nonces) else None
            tx.consume_nonce(nonce or verified.nonce.hex(), verified.expires_at)
            if verified.new_sign_count != record.sign_count:
                tx.set_sign_count(record.id, verified.new_sign_count)
            approved.add(record.id)
        return approved

    def _require_quorum(
        self,
        tx: WalletTransaction,
        kind: str,
        digest: bytes,
        approvals: Sequence[Mapping[str, Any]],
        now: int,
    ) -> set[str]:
        """Verify approvals of an action that moves no money and apply the policy's quorum."""
        approved = self._verify(tx, digest, approvals, now)
        wallet = tx.wallet()
        evaluate(
            self._policy(wallet.id, wallet.policy_version, wallet.policy),
            None,
            approvals=approved,
            active=self._active(tx, now),
            spent_in_window=0,
            kind=kind,
        ).raise_if_declined()
        return approved

    def _active(self, tx: WalletTransaction, now: int) -> frozenset[str]:
        return tx.active_authenticator_ids(now)

    def add_authenticator(
        self,
        wallet_id: str,
        authenticator: Mapping[str, Any],
        approvals: Sequence[Mapping[str, Any]] = (),
    ) -> dict[str, Any]:
        """Add an authenticator: at once if the wallet approves, else after the recovery lock."""
        fields = self._authenticator_fields(authenticator)
        digest = action_digest("authenticator.add", dict(authenticator))
        now = self._now()
        with (
            _unique(f"authenticator {fields['authenticator_id']!r}"),
            self._store.transaction(_check_wallet_id(wallet_id)) as tx,
        ):
            registered = tx.authenticators()  # revoked and time-locked ones included
            for existing in registered:
                if fields["authenticator_id"] == existing.id or (
                    fields["credential_id"] == existing.credential_id
                ):
                    raise InvalidInput("this authenticator is already registered on the wallet")
            approved = self._verify(tx, digest, approvals, now) if approvals else set()
            wallet = tx.wallet()
            decision = evaluate(
                self._policy(wallet.id, wallet.policy_version, wallet.policy),
                None,
                approvals=approved,
                active=self._active(tx, now),
                spent_in_window=0,
                kind="authenticator.add",
            )
            # Without the wallet's approval (lost phone, account recovery) the new authenticator
            # waits out the time-lock, so a stolen identity-provider account cannot move money.
            # Only a wallet that never had an authenticator enrols one at once: "none active
            # right now" (all revoked or still time-locked) must not open a way around the lock.
            enrol_now = decision.allowed or not registered
            active_from = now if enrol_now else now + self._timelock
            scope: DelegateScope | None = fields.pop("scope", None)
            if scope is not None:
                # A delegate: its scope is written with it, in this transaction, so it never
                # approves one moment unscoped. The approval of this add covered the scope (it
                # is in the digest); a scope only narrows what the new authenticator may do.
                policy = self._policy(wallet.id, wallet.policy_version, wallet.policy)
                document = policy.with_delegate(fields["authenticator_id"], scope).to_document()
                tx.set_policy(document, wallet.policy_version)
            tx.insert_authenticator(created_at=now, active_from=active_from, **fields)
            tx.append_audit(
                _done(
                    "authenticator.add",
                    wallet_id,
                    now,
                    digest=digest,
                    approved=approved,
                    details={
                        "authenticator_id": fields["authenticator_id"],
                        "active_from": active_from,
                    },
                )
            )
        return {"authenticator_id": fields["authenticator_id"], "active_from": active_from}

    def remove_authenticator(
        self, wallet_id: str, authenticator_id: str, approvals: Sequence[Mapping[str, Any]]
    ) -> dict[str, Any]:
        """Revoke an authenticator, with the wallet's approval (a device may remove itself)."""
        digest = action_digest("authenticator.remove", {"authenticator_id": authenticator_id})
        now = self._now()
        with self._store.transaction(_check_wallet_id(wallet_id)) as tx:
            approved = self._require_quorum(tx, "authenticator.remove", digest, approvals, now)
            tx.revoke_authenticator(authenticator_id)
            wallet = tx.wallet()
            policy = self._policy(wallet.id, wallet.policy_version, wallet.policy)
            if authenticator_id in policy.delegates:  # its scope goes with it
                document = policy.with_delegate(authenticator_id, None).to_document()
                tx.set_policy(document, wallet.policy_version)
            tx.append_audit(
                _done(
                    "authenticator.remove",
                    wallet_id,
                    now,
                    digest=digest,
                    approved=approved,
                    details={"authenticator_id": authenticator_id},
                )
            )
        return {"authenticator_id": authenticator_id, "revoked": True}

    def get_policy(self, wallet_id: str) -> dict[str, Any]:
        with self._store.transaction(_check_wallet_id(wallet_id)) as tx:
            wallet = tx.wallet()
            policy = self._policy(wallet.id, wallet.policy_version, wallet.policy)
            return {"version": wallet.policy_version, "policy": policy.to_document()}

    # -- signing -----------------------------------------------------------------------------
    def sign(self, requests: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
        """Sign a batch of ``{wallet_id, intent, approvals}``; each slot: result or error.

        Each request is first read on its own (intent, digest, approvals: pure functions of the
        request), then decided inside the batch's one transaction, in the order a request's
        checks have always run, so each refusal names the same first fault.
        """
        if not isinstance(requests, list | tuple) or not 0 < len(requests) <= MAX_BATCH:
            raise InvalidInput(f"sign takes a list of 1 to {MAX_BATCH} requests")
        with _Turn(self._computing) as turn:
            now = self._now()
            prepared = [_prepare(request) for request in requests]
            for request in prepared:
                _check_ahead(request, self._device_keys)
            wallet_ids = [p.wallet_id for p in prepared if p.wallet_id is not None]
            answers: list[dict[str, Any]] = []
            with (
                self._store.batch_transaction(wallet_ids, before_commit=turn.end) as batch,
                self._keys.session() as keys,
            ):
                # One query finds every already-used nonce of the batch, not one per intent.
                batch.prefetch_nonces(
                    (p.wallet_id, nonce)
                    for p in prepared
                    if p.wallet_id is not None
                    for nonce in p.nonces
                    if nonce is not None
                )
                for request in prepared:
                    answers.append(self._sign_prepared(batch, keys, request, now))
                # Every key opened when its request was decided, so nothing here can refuse one
                # request alone: a failure (impossible for a key that opened) fails the batch.
                for result, signature in keys.sign_queued():
                    result["signature"] = "0x" + signature.hex()
        return answers

    def _refusal(
        self,
        *,
        kind: str,
        wallet_id: str | None,
        digest: bytes | None,
        exc: SeiwalletError,
        now: int,
        approved: Sequence[str] = (),
    ) -> AuditEntry:
        rule = getattr(exc, "rule", None) or (
            "approval" if isinstance(exc, ApprovalRefused) else None
        )
        return AuditEntry(
            kind=kind,
            decision=AuditDecision.REFUSED,
            at=now,
            wallet_id=wallet_id,
            intent_digest=digest.hex() if digest else None,
            rule=rule or exc.code,
            reason=str(exc)[:500],
            approvals=tuple(approved),
        )

    def _sign_prepared(
        self, batch: BatchTransaction, keys: SigningSession, request: _Prepared, now: int
    ) -> dict[str, Any]:
        try:
            if request.wallet_id is None:
                raise request.error or InvalidInput("a wallet id is required")
            tx = batch.for_wallet(request.wallet_id)
        except SeiwalletError as exc:
            batch.unbound().append_audit(
                self._refusal(kind="sign", wallet_id=None, digest=None, exc=exc, now=now)
            )
            return {"error": _error_body(exc)}
        intent: Intent | None = None
        digest: bytes | None = None
        try:
            intent = request.intent
            if intent is None:
                raise request.intent_error or IntentInvalid("an intent is required")
            if isinstance(intent, KeyExport):
                raise IntentInvalid("key.export goes through export_key, not sign")
            digest = request.digest
            if request.approvals_error is not None:
                raise request.approvals_error
            if type(intent) is Erc3009Transfer:
                lean = self._sign_transfer(tx, keys, intent, request, now)
                if lean is not None:
                    return {"result": lean}
            approved = self._verify_approvals(
                tx,
                digest,
                request.approvals,
                now,
                checked=request.checked,
                subject=request.subject,
                nonces=request.nonces,
            )
            result = self._decide_and_sign(tx, intent, digest, approved, now, keys=keys)
        except SeiwalletError as exc:
            kind = intent.KIND if intent is not None else "sign"
            tx.append_audit(
                self._refusal(kind=kind, wallet_id=tx.wallet_id, digest=digest, exc=exc, now=now)
            )
            return {"error": _error_body(exc)}
        return {"result": result}

    def _sign_transfer(
        self,
        tx: WalletTransaction,
        keys: SigningSession,
        intent: Erc3009Transfer,
        request: _Prepared,
        now: int,
    ) -> dict[str, Any] | None:
        """The lean path of the common request: an ``erc3009.transfer`` approved by device keys
        whose signatures were checked ahead. ``None``, having changed nothing, for anything
        else or anything that would be refused: the general path then decides it, with every
        check in its order and the first fault named.

        It makes the general path's decision with the same checks — each approval through
        :func:`passes_with_check` (what :func:`verify_approval` accepts with nothing left to
        verify), the nonces known unused, the policy through :meth:`Policy.allows_spend` (what
        :func:`evaluate` allows) with the window read under the wallet's lock — and writes the
        same nonces, spend, audit entry and answer; only the general path's per-step objects
        and indirections are left out. A test runs batches through both and compares answers,
        rows and audit entries.
        """
        approved = self._lean_approvals(tx, request, now)
        if approved is None:
            return None
        wallet = tx.wallet()
        policy = self._policies.get((wallet.id, wallet.policy_version))
        if policy is None:
            policy = self._policy(wallet.id, wallet.policy_version, wallet.policy)
        token = intent.token
        chain_id, contract = token.chain_id, token.verifying_contract
        amount, recipient = intent.amount_units, intent.to
        try:
            to_sign = transfer_signing_hash(intent, wallet.address)
        except SeiwalletError:
            return None  # a wallet address that does not check: the general path refuses it
        kind = intent.KIND
        if not policy.allows_spend(
            chain_id,
            contract,
            amount,
            recipient,
            approvals=approved,
            active=tx.active_authenticator_ids(now),
            kind=kind,
            spent_in_window=lambda: tx.spent_since(chain_id, contract, now - DAILY_WINDOW_SECONDS),
        ) or not tx.consume_fresh_nonces(request.fresh_nonces):
            return None
        # Decided: from here on, what the general path writes for a signed transfer.
        digest_hex = request.digest.hex()
        result: dict[str, Any] = {
            "digest": "0x" + digest_hex,
            "kind": kind,
            "hash": "0x" + to_sign.hex(),
            "signature": None,  # made once the batch is decided, before its commit
            "signer": wallet.address,
        }
        keys.sign_later(wallet.sealed_key, wallet_aad(wallet.id), to_sign, result)
        tx.record_spend(
            chain_id=chain_id,
            token=contract,
            amount_units=amount,
            recipient=recipient,
            at=now,
            intent_digest=digest_hex,
        )
        tx.append_audit(
            AuditEntry(
                kind,
                AuditDecision.SIGNED,
                now,
                wallet.id,
                digest_hex,
                None,
                None,
                tuple(sorted(approved)),
                {
                    "summary": intent.describe(),
                    "token": contract,
                    "amount_units": str(amount),
                    "recipient": recipient,
                    "chain_id": chain_id,
                },
            )
        )
        return result

    def _lean_approvals(
        self, tx: WalletTransaction, request: _Prepared, now: int
    ) -> set[str] | None:
        """Who approved, if every approval passes as it stands (see :func:`passes_with_check`)
        and is distinct; ``None`` otherwise. Sets ``request.fresh_nonces`` for consuming."""
        approvals, checked, nonces = request.approvals, request.checked, request.nonces
        subject = request.subject
        if subject is None or not approvals or len(checked) != len(approvals):
            return None
        if len(approvals) == 1:  # one approval, as nearly every request has
            return self._lean_approval(tx, request, subject, now)
        approved: set[str] = set()
        fresh: list[tuple[str, int]] = []
        for index, approval in enumerate(approvals):
            if type(approval) is not DeviceApproval:
                return None
            record = tx.authenticator(approval.authenticator_id)
            nonce = nonces[index]
            if (
                record is None
                or record.id in approved
                or nonce is None
                or not passes_with_check(
                    approval, _authenticator(record), subject, now=now, checked=checked[index]
                )
            ):
                return None
            approved.add(record.id)
            fresh.append((nonce, approval.expires_at))
        request.fresh_nonces = fresh
        return approved

    def _lean_approval(
        self, tx: WalletTransaction, request: _Prepared, subject: bytes, now: int
    ) -> set[str] | None:
        """:meth:`_lean_approvals` of a request with exactly one approval."""
        (approval,), (nonce,) = request.approvals, request.nonces
        if type(approval) is not DeviceApproval or nonce is None:
            return None
        record = tx.authenticator(approval.authenticator_id)
        if record is None or not passes_with_check(
            approval, _authenticator(record), subject, now=now, checked=request.checked[0]
        ):
            return None
        request.fresh_nonces = [(nonce, approval.expires_at)]
        return {record.id}

    def _decide_and_sign(
        self,
        tx: WalletTransaction,
        intent: Intent,
        digest: bytes,
        approved: set[str],
        now: int,
        *,
        keys: SigningSession,
    ) -> dict[str, Any]:
        wallet = tx.wallet()
        policy = self._policies.get((wallet.id, wallet.policy_version))
        if policy is None:
            policy = self._policy(wallet.id, wallet.policy_version, wallet.policy)
        moved = spend(intent, wallet.address)
        window = 0
        if moved is not None and policy.needs_daily_window(moved):
            window = tx.spent_since(moved.chain_id, moved.token, now - DAILY_WINDOW_SECONDS)
        decision = evaluate(
            policy,
            moved,
            approvals=approved,
            active=tx.active_authenticator_ids(now),
            spent_in_window=window,
            kind=intent.KIND,
        )
        if not decision.allowed:
            decision.raise_if_declined()
        digest_hex = digest.hex()
        result: dict[str, Any] = {"digest": "0x" + digest_hex, "kind": intent.KIND}
        if isinstance(intent, PolicyUpdate):
            document = intent.to_json()["policy"]  # plain JSON, as approved
            Policy.parse(document)  # a bad document is refused before it is stored
            result["policy_version"] = tx.set_policy(document, intent.expected_version)
        else:
            to_sign = signing_hash(intent, wallet.address)
            if to_sign is None:  # pragma: no cover - every other kind has a chain signature
                raise IntentInvalid(f"{intent.KIND} has nothing to sign")
            result["hash"] = "0x" + to_sign.hex()
            result["signature"] = None  # made once the batch is decided, before its commit
            result["signer"] = wallet.address
            keys.sign_later(wallet.sealed_key, wallet_aad(wallet.id), to_sign, result)
        details: dict[str, Any] = {"summary": describe(intent)}
        if moved is not None:
            tx.record_spend(
                chain_id=moved.chain_id,
                token=moved.token,
                amount_units=moved.amount_units,
                recipient=moved.recipient,
                at=now,
                intent_digest=digest_hex,
            )
            details["token"] = moved.token
            details["amount_units"] = str(moved.amount_units)
            details["recipient"] = moved.recipient
            details["chain_id"] = moved.chain_id
        tx.append_audit(
            AuditEntry(
                intent.KIND,
                AuditDecision.SIGNED,
                now,
                wallet.id,
                digest_hex,
                None,
                None,
                tuple(sorted(approved)),
                details,
            )
        )
        return result

    # -- export ------------------------------------------------------------------------------
    def export_key(
        self, wallet_id: str, intent: Mapping[str, Any], approvals: Sequence[Mapping[str, Any]]
    ) -> dict[str, Any]:
        """The wallet's key encrypted to the owner's public key, after an approved intent."""
        now = self._now()
        parsed = parse_intent(intent)
        if not isinstance(parsed, KeyExport):
            raise IntentInvalid("export_key takes a key.export intent")
        digest = intent_digest(parsed)
        try:
            with self._store.transaction(_check_wallet_id(wallet_id)) as tx:
                approved = self._require_quorum(tx, parsed.KIND, digest, approvals, now)
                wallet = tx.wallet()
                envelope = export_sealed_key(
                    self._keys,
                    SealedKey.from_bytes(wallet.sealed_key),
                    wallet_aad(wallet.id),
                    parsed.recipient_public_key,
                    curve=parsed.curve,
                )
                tx.append_audit(
                    _done(
                        parsed.KIND,
                        wallet.id,
                        now,
                        digest=digest,
                        approved=approved,
                        details={"curve": parsed.curve},
                    )
                )
        except (ApprovalRefused, PolicyDeclined) as exc:
            with self._store.transaction(wallet_id) as tx:
                tx.append_audit(
                    self._refusal(
                        kind=parsed.KIND, wallet_id=wallet_id, digest=digest, exc=exc, now=now
                    )
                )
            raise
        return envelope.to_dict()

    # -- audit -------------------------------------------------------------------------------
    def audit(self, after_seq: int = 0, limit: int = 100) -> list[dict[str, Any]]:
        if not isinstance(limit, int) or not 0 < limit <= 1000:
            raise InvalidInput("limit is 1 to 1000")
        records = self._store.read_audit(after_seq=after_seq, limit=limit)
        return [_audit_view(record) for record in records]


__all__ = [
    "RelyingParty",
    "SignerService",
    "action_digest",
    "approval_subject",
    "wallet_aad",
]
