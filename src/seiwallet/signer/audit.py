"""The signer's hash-chained audit log: every decision, linked so that no record changes unseen.

Each record is a canonical JSON object holding its ``seq`` and time with the decision (signed or
refused), the intent's digest, the approvals and the rule that decided. Its hash is
``sha256(prev_hash ‖ canonical JSON)``, where ``prev_hash`` is the previous record's hash (32 zero
bytes for the first record). So changing, removing or reordering any record breaks the chain at
that record, and :func:`verify_chain` names the first broken ``seq``. Cutting records off the end
is caught against the head (last ``seq`` and hash) that the store keeps beside the log.

A stored record is its hashed JSON, its hash and a few columns copied out of the JSON for queries
(:data:`COLUMN_FIELDS`: ``seq``, time, wallet, kind, decision), which :func:`verify_chain` checks
against the JSON. Everything else (digest, rule, reason, approvals, details) is read from the JSON
itself, and ``prev_hash`` is the previous record's ``hash``: storing copies of them (schema 1)
made every signature's audit row larger for nothing the chain did not already prove.

Appending is a serialization point: the next record needs the head. The store reads and updates
the head inside the transaction that writes the records, holding a lock on the head row, and
:func:`seal` links a whole batch to one head read, so a batch costs one read and one write of the
head however many records it appends. This module is pure (no I/O): the store does the locking.

What the chain cannot do alone: someone able to rewrite the database *and* recompute every later
hash and the head goes unseen. Publishing the head elsewhere (a log, a ticket) anchors it.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from hashlib import sha256
from types import MappingProxyType
from typing import Any, Final, NamedTuple, TypeAlias

import orjson

__all__ = [
    "COLUMN_FIELDS",
    "GENESIS",
    "GENESIS_HASH",
    "AuditDecision",
    "AuditEntry",
    "AuditHead",
    "AuditRecord",
    "AuditRow",
    "JsonValue",
    "VerifyResult",
    "canonical_json",
    "link_hash",
    "mismatched_columns",
    "seal",
    "seal_rows",
    "verify_chain",
]

JsonValue: TypeAlias = "str | int | bool | Sequence[JsonValue] | Mapping[str, JsonValue] | None"

#: The ``prev_hash`` of the first record.
GENESIS_HASH: Final = bytes(32)

_HASH_BYTES: Final = 32

#: The fields of a record's hashed JSON kept also as columns, for queries.
COLUMN_FIELDS: Final = ("seq", "at", "wallet_id", "kind", "decision")


class AuditDecision(StrEnum):
    """What the signer did with an intent: the only two outcomes an audit record states."""

    SIGNED = "signed"
    REFUSED = "refused"


# One encoder for every record: building one per call costs as much as encoding a record.
_ENCODER: Final = json.JSONEncoder(
    sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False
)


def canonical_json(value: Any) -> bytes:
    """The one encoding of a JSON value that is hashed: sorted keys, no spaces, ASCII only.

    Floats are refused: they have more than one spelling, and no audit field needs one.

    The encoding is the json module's (``sort_keys``, ``(",", ":")``, ``ensure_ascii``); orjson
    writes the same bytes several times faster where the two provably agree, which a test checks
    over every character class:

    * both escape ``"``, ``\\`` and the control characters alike, and JSON's syntax is ASCII;
    * orjson writes other characters beyond ASCII as UTF-8, where the json module writes
      ``\\uXXXX`` (lowercase hex). Python's ``backslashreplace`` writes exactly that for
      U+0100–U+FFFF, but ``\\xXX`` for U+0080–U+00FF and ``\\UXXXXXXXX`` beyond the BMP, and
      leaves DEL (which the json module escapes) alone: output holding ``\\x``, ``\\U`` or
      DEL anywhere (even where it only looks like one) is encoded by the json module.

    What orjson refuses (integers beyond 64 bits, non-string keys, lone surrogates) is encoded by
    the json module too. The one non-ASCII character every signed transfer's summary holds, the
    ellipsis of a shortened address, is escaped first (``\\u2026``, as the json module writes
    it), so those entries stay on the quick path.
    """
    _refuse_floats(value)
    try:
        encoded = orjson.dumps(value, option=orjson.OPT_SORT_KEYS)
    except TypeError:
        return _ENCODER.encode(value).encode("ascii")
    if not encoded.isascii():
        # The ellipsis of the signer's own summaries ("0x7099…79C8"), escaped as the json module
        # escapes it: in UTF-8 these three bytes are that character and nothing else.
        encoded = encoded.replace(_ELLIPSIS_UTF8, _ELLIPSIS_ESCAPED)
    if not encoded.isascii():
        encoded = encoded.decode("utf-8").encode("ascii", "backslashreplace")
        if _NOT_JSON_ESCAPE.search(encoded):
            return _ENCODER.encode(value).encode("ascii")
    if b"\x7f" in encoded:
        return _ENCODER.encode(value).encode("ascii")
    return encoded


_NOT_JSON_ESCAPE: Final = re.compile(rb"\\[xU]")
_ELLIPSIS_UTF8: Final = "\u2026".encode()
_ELLIPSIS_ESCAPED: Final = b"\\u2026"


def _refuse_floats(value: Any) -> None:
    # Exact type checks: this walks every record appended, and abc checks cost more than the
    # encoding itself. Other container types are refused by the encoder anyway.
    kind = type(value)
    if kind is float:
        raise TypeError("audit entries hold no floats: use integers (base units, seconds)")
    if kind is dict:
        for item in value.values():
            if type(item) not in _SCALARS:
                _refuse_floats(item)
    elif kind is list or kind is tuple:
        for item in value:
            if type(item) not in _SCALARS:
                _refuse_floats(item)


_SCALARS: Final = frozenset({str, int, bool, type(None)})


def link_hash(prev_hash: bytes, entry_json: bytes) -> bytes:
    """The hash of a record: ``sha256(prev_hash ‖ entry_json)``."""
    return hashlib.sha256(prev_hash + entry_json).digest()


class AuditEntry(NamedTuple):
    """A decision to record; the store gives it its ``seq`` and links it when it commits.

    A named tuple, not a dataclass: every intent of a signing batch makes one, and a frozen
    dataclass cost four times as much to build. Its decision is checked when it is hashed
    (:meth:`body`): a plain ``"signed"``/``"refused"`` is accepted, anything else is a bug and
    is refused before anything is written.
    """

    kind: str
    decision: AuditDecision | str
    #: Unix time in seconds.
    at: int
    wallet_id: str | None = None
    #: The intent's digest, hex; ``None`` when the request was too broken to have one.
    intent_digest: str | None = None
    #: The policy rule (``daily_limit``, ``quorum``…) or check (``approval``) that refused.
    rule: str | None = None
    #: Why, in words; never anything secret.
    reason: str | None = None
    #: The approvals presented (authenticator ids, or small objects describing each).
    approvals: tuple[JsonValue, ...] = ()
    #: Anything else worth keeping (token, amount in base units, recipient…), JSON only.
    details: Mapping[str, JsonValue] = MappingProxyType({})

    def body(self, seq: int) -> dict[str, Any]:
        """The JSON object hashed for this entry once it is record ``seq``."""
        decision = _DECISIONS.get(self.decision)
        if decision is None:
            raise ValueError(f"an audit decision is signed or refused, not {self.decision!r}")
        details = self.details
        return {
            "seq": seq,
            "at": self.at,
            "wallet_id": self.wallet_id,
            "kind": self.kind,
            "intent_digest": self.intent_digest,
            "decision": decision,
            "rule": self.rule,
            "reason": self.reason,
            # Encoded as they are (a tuple is a JSON array), copied only when not a plain dict.
            "approvals": self.approvals,
            "details": details if type(details) is dict else dict(details),
        }


#: A decision's value by the decision or its value (a StrEnum member hashes as its value).
_DECISIONS: Final[dict[object, str]] = {str(d): str(d) for d in AuditDecision}


@dataclass(frozen=True, slots=True)
class AuditRecord:
    """A record as stored: the hashed JSON, its hash, and the columns copied out of the JSON.

    The columns serve queries (by wallet, by decision) and are checked against the JSON by
    :func:`verify_chain`; the JSON is what the hash covers, and the rest of the record (digest,
    rule, reason, approvals, details) is read from it. ``decision`` is a plain string so a
    tampered value can still be read and reported.
    """

    seq: int
    at: int
    wallet_id: str | None
    kind: str
    decision: str
    #: The hashed canonical JSON (ASCII).
    entry_json: str
    #: ``sha256(previous record's hash ‖ entry_json)``.
    hash: bytes

    def body(self) -> dict[str, Any]:
        """The hashed JSON object (``{}`` if it is not one: :func:`verify_chain` says why)."""
        try:
            body = json.loads(self.entry_json)
        except ValueError:
            return {}
        return body if isinstance(body, dict) else {}

    @property
    def intent_digest(self) -> str | None:
        """The intent's digest (hex) as the entry states it, if it has one."""
        value = self.body().get("intent_digest")
        return value if isinstance(value, str) else None

    @property
    def rule(self) -> str | None:
        """The rule or check that refused, as the entry states it."""
        value = self.body().get("rule")
        return value if isinstance(value, str) else None

    @property
    def reason(self) -> str | None:
        """Why it was refused, in words, as the entry states it."""
        value = self.body().get("reason")
        return value if isinstance(value, str) else None

    @property
    def details(self) -> dict[str, Any]:
        """The entry's ``details`` object, read from the hashed JSON."""
        details = self.body().get("details", {})
        return details if isinstance(details, dict) else {}


@dataclass(frozen=True, slots=True)
class AuditHead:
    """The last record's ``seq`` and hash (``seq`` 0 and zero bytes for an empty log)."""

    seq: int
    hash: bytes

    def encode(self) -> str:
        """The head as kept in ``signer_meta``: ``seq:hexhash``."""
        return f"{self.seq}:{self.hash.hex()}"

    @classmethod
    def decode(cls, text: str) -> AuditHead:
        """Read a head written by :meth:`encode`; ``ValueError`` if it is not one."""
        seq_text, _, hash_hex = text.partition(":")
        head = cls(int(seq_text), bytes.fromhex(hash_hex))
        if head.seq < 0 or len(head.hash) != _HASH_BYTES:
            raise ValueError(f"not an audit head: {text!r}")
        return head


GENESIS: Final = AuditHead(0, GENESIS_HASH)


def seal(entries: Iterable[AuditEntry], head: AuditHead) -> tuple[list[AuditRecord], AuditHead]:
    """Number and link ``entries`` after ``head``: the records to insert and the new head.

    Pure, so a batch of N entries is linked with one head read and one head write around it.
    """
    rows, new_head = seal_rows(entries, head)
    return [AuditRecord(*row) for row in rows], new_head


#: An audit record as a row: :class:`AuditRecord`'s fields, in its order (the table's).
AuditRow: TypeAlias = tuple[int, int, "str | None", str, str, str, bytes]


def seal_rows(entries: Iterable[AuditEntry], head: AuditHead) -> tuple[list[AuditRow], AuditHead]:
    """:func:`seal`, giving each record as a row (:class:`AuditRecord`'s fields, in order).

    What the store inserts: a signing batch links hundreds of entries, and a record object per
    entry cost more than its hash.
    """
    rows: list[AuditRow] = []
    append = rows.append
    seq, prev = head.seq, head.hash
    for entry in entries:
        seq += 1
        body = entry.body(seq)
        entry_bytes = canonical_json(body)
        prev = sha256(prev + entry_bytes).digest()  # link_hash, inline: once per record
        entry_text = entry_bytes.decode()
        append((seq, entry.at, entry.wallet_id, entry.kind, body["decision"], entry_text, prev))
    return rows, AuditHead(seq, prev)


@dataclass(frozen=True, slots=True)
class VerifyResult:
    """The outcome of :func:`verify_chain`: ``first_broken_seq`` and ``reason`` when not ``ok``."""

    ok: bool
    #: Records found intact (before the first broken one).
    checked: int
    first_broken_seq: int | None = None
    reason: str | None = None


def verify_chain(
    records: Iterable[AuditRecord],
    *,
    head: AuditHead | None = None,
    start: AuditHead = GENESIS,
) -> VerifyResult:
    """Check records in ``seq`` order from ``start``; report the first broken link and why.

    A record is broken when its ``seq`` is not the next one, its hash is not that of its JSON
    after the previous record's hash, its JSON is not canonical or names another ``seq``, or its
    columns differ from its JSON. With ``head`` (the store's), records
    missing at the end, or present beyond the head, are caught too.
    """
    expected_seq, prev = start.seq + 1, start.hash
    checked = 0
    for record in records:
        problem = _record_problem(record, expected_seq, prev)
        if problem is not None:
            broken_seq, reason = problem
            return VerifyResult(False, checked, broken_seq, reason)
        checked += 1
        expected_seq, prev = record.seq + 1, record.hash
    last_seq = expected_seq - 1
    if head is not None:
        if head.seq > last_seq:
            reason = f"the log ends at record {last_seq} but its head is at record {head.seq}"
            return VerifyResult(False, checked, last_seq + 1, f"{reason}: records were removed")
        if head.seq < last_seq:
            reason = f"the log runs to record {last_seq} past its head at record {head.seq}"
            return VerifyResult(False, checked, head.seq + 1, reason)
        if head.hash != prev:
            reason = f"record {last_seq}'s hash differs from the head's"
            return VerifyResult(False, checked, last_seq, reason)
    return VerifyResult(True, checked)


def _record_problem(record: AuditRecord, expected_seq: int, prev: bytes) -> tuple[int, str] | None:
    """``(seq, reason)`` if ``record`` does not link as record ``expected_seq`` after ``prev``."""
    if record.seq != expected_seq:
        if record.seq > expected_seq:
            return expected_seq, f"record {expected_seq} is missing (the next is {record.seq})"
        return record.seq, f"record {record.seq} is out of order (expected {expected_seq})"
    entry_bytes = record.entry_json.encode("utf-8")
    if link_hash(prev, entry_bytes) != record.hash:
        return record.seq, (
            "its hash does not match its entry after the previous record's hash: "
            "the entry was changed (or the previous record's hash was)"
        )
    problem = _content_problem(record, entry_bytes)
    return None if problem is None else (record.seq, problem)


def _content_problem(record: AuditRecord, entry_bytes: bytes) -> str | None:
    """Why a correctly linked record's entry or columns cannot be trusted, if they cannot."""
    try:
        body = json.loads(entry_bytes)
        canonical = canonical_json(body)
    except (ValueError, TypeError):
        return "its entry is not canonical JSON"
    if canonical != entry_bytes or not isinstance(body, dict):
        return "its entry is not canonical JSON"
    if body.get("seq") != record.seq:
        return f"its entry names record {body.get('seq')!r}"
    mismatched = mismatched_columns(record, body)
    if mismatched:
        return f"its columns differ from its hashed entry: {', '.join(mismatched)}"
    return None


def mismatched_columns(record: AuditRecord, body: Mapping[str, Any]) -> list[str]:
    """The :data:`COLUMN_FIELDS` whose column differs from the hashed JSON's value."""
    columns: dict[str, Any] = {
        "seq": record.seq,
        "at": record.at,
        "wallet_id": record.wallet_id,
        "kind": record.kind,
        "decision": record.decision,
    }
    return [name for name in COLUMN_FIELDS if columns[name] != body.get(name)]
