"""Sanctions lists: OFAC's SDN list (its published XML), a simple CSV, and indexed screening.

An account on Sei has one 20-byte key hash written two ways — ``0x`` hex for the EVM and
``sei1…`` bech32 on the Cosmos side (``addresses.py``). Lists and people may use either, so
everything here is reduced to those 20 bytes (:func:`address_key`, 40 lower-case hex digits) and
screening is one indexed lookup on that key: a sanctioned address written as ``sei1`` is caught
exactly as its ``0x`` form is.

OFAC publishes the SDN list in two XML formats, both read here without any network access:

* the classic ``SDN.XML`` (``<sdnList>``): an entry's ``<idList>`` holds ``<id>`` elements whose
  ``<idType>`` is e.g. ``Digital Currency Address - ETH`` and whose ``<idNumber>`` is the address;
* the advanced ``SDN_ADVANCED.XML`` (``<Sanctions>``): ``ReferenceValueSets/FeatureTypeValues``
  names the feature types (``<FeatureType ID="345">Digital Currency Address - ETH``), and each
  ``DistinctParty``'s profile has ``<Feature FeatureTypeID="345">`` whose ``VersionDetail`` is the
  address.

Only addresses that are EVM accounts (20 bytes: ``0x`` hex or a ``sei1`` account) can hold our
tokens; the others (bitcoin, tron, …) are counted as skipped.
"""

from __future__ import annotations

import csv
import hashlib
import io
import xml.etree.ElementTree as ET
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Final

from sqlalchemy import bindparam, delete, func, insert, select
from sqlalchemy.orm import Session, sessionmaker

from seiwallet.addresses import (
    SEI_ACCOUNT_PAYLOAD_BYTES,
    InvalidAddress,
    decode_sei_address,
    parse_evm_address,
)
from seiwallet.compliance.errors import SanctionsListUnreadable
from seiwallet.compliance.models import SanctionedAddress, SanctionsList
from seiwallet.db import SQLITE_BEGIN

DIGITAL_CURRENCY: Final = "Digital Currency Address - "
_WRITE: Final = {SQLITE_BEGIN: "IMMEDIATE"}
_BATCH: Final = 1_000


def address_key(text: str) -> str | None:
    """The 20 bytes an address names, as 40 lower-case hex digits; ``None`` if it names none.

    ``0x`` hex (any case; a wrong EIP-55 checksum is refused as a typo elsewhere, but a list is
    taken as written) and ``sei1`` account addresses both reduce to the same key.
    """
    cleaned = text.strip()
    lowered = cleaned.lower()
    if lowered.startswith("0x"):
        body = lowered[2:]
        if len(body) == 40 and all(c in "0123456789abcdef" for c in body):
            return body
        return None
    if lowered.startswith("sei1"):
        try:
            payload = decode_sei_address(cleaned)
        except InvalidAddress:
            return None
        return payload.hex() if len(payload) == SEI_ACCOUNT_PAYLOAD_BYTES else None
    return None


@dataclass(frozen=True)
class ListedAddress:
    """One address a list names: as written, its key, and who it belongs to on the list."""

    written: str
    key: str
    entry: str
    reference: str
    asset: str


@dataclass(frozen=True)
class ParsedList:
    addresses: tuple[ListedAddress, ...]
    #: Listed digital-currency addresses that are not EVM accounts (bitcoin, tron, …).
    skipped: int
    sha256: str


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def _text(element: ET.Element | None) -> str:
    return (element.text or "").strip() if element is not None else ""


def _child(element: ET.Element, name: str) -> ET.Element | None:
    return next((c for c in element if _local(c.tag) == name), None)


def parse_ofac_xml(path: Path) -> ParsedList:
    """Digital-currency addresses of OFAC's SDN list, classic (``sdnList``) or advanced format."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise SanctionsListUnreadable(str(path), exc.strerror or str(exc)) from None
    try:
        found, skipped = _parse_xml(raw)
    except ET.ParseError as exc:
        raise SanctionsListUnreadable(str(path), f"not well-formed XML ({exc})") from None
    except ValueError as exc:
        raise SanctionsListUnreadable(str(path), str(exc)) from None
    return ParsedList(tuple(_unique(found)), skipped, hashlib.sha256(raw).hexdigest())


def _parse_xml(raw: bytes) -> tuple[list[ListedAddress], int]:
    # OFAC's files declare no DTD. Refusing one keeps entity tricks (billion laughs, external
    # entities) out without defusedxml; expat would not fetch external entities anyway.
    if b"<!DOCTYPE" in raw[:4096] or b"<!ENTITY" in raw:
        raise ValueError("the file declares a DTD or entities, which OFAC's lists never do")
    # Stream the file: the real list is ~100 MB.
    events = ET.iterparse(io.BytesIO(raw), events=("start", "end"))  # noqa: S314 - see above
    _, root = next(events)
    kind = _local(root.tag)
    if kind == "sdnList":
        return _classic(events)
    if kind == "Sanctions":
        return _advanced(events)
    raise ValueError(f"the root element is <{kind}>: expected OFAC's <sdnList> or <Sanctions>")


def _classic(events: Iterator[tuple[str, ET.Element]]) -> tuple[list[ListedAddress], int]:
    found: list[ListedAddress] = []
    skipped = 0
    for event, element in events:
        if event != "end" or _local(element.tag) != "sdnEntry":
            continue
        uid = _text(_child(element, "uid"))
        name = " ".join(
            part
            for part in (_text(_child(element, "firstName")), _text(_child(element, "lastName")))
            if part
        )
        ids = _child(element, "idList")
        for identifier in ids if ids is not None else ():
            id_type = _text(_child(identifier, "idType"))
            if not id_type.startswith(DIGITAL_CURRENCY):
                continue
            written = _text(_child(identifier, "idNumber"))
            key = address_key(written)
            if key is None:
                skipped += 1
                continue
            found.append(ListedAddress(written, key, name, uid, id_type[len(DIGITAL_CURRENCY) :]))
        element.clear()
    return found, skipped


def _advanced(events: Iterator[tuple[str, ET.Element]]) -> tuple[list[ListedAddress], int]:
    feature_types: dict[str, str] = {}
    found: list[ListedAddress] = []
    skipped = 0
    for event, element in events:
        if event != "end":
            continue
        tag = _local(element.tag)
        if tag == "FeatureType":
            feature_types[element.get("ID", "")] = (element.text or "").strip()
        elif tag == "DistinctParty":
            reference = element.get("FixedRef", "")
            name = _party_name(element)
            for feature in element.iter():
                if _local(feature.tag) != "Feature":
                    continue
                type_name = feature_types.get(feature.get("FeatureTypeID", ""), "")
                if not type_name.startswith(DIGITAL_CURRENCY):
                    continue
                for detail in feature.iter():
                    if _local(detail.tag) != "VersionDetail" or not _text(detail):
                        continue
                    written = _text(detail)
                    key = address_key(written)
                    if key is None:
                        skipped += 1
                        continue
                    asset = type_name[len(DIGITAL_CURRENCY) :]
                    found.append(ListedAddress(written, key, name, reference, asset))
            element.clear()
    return found, skipped


def _party_name(party: ET.Element) -> str:
    """The primary alias's name parts of an advanced-format party, joined."""
    for alias in party.iter():
        if _local(alias.tag) == "Alias" and alias.get("Primary") == "true":
            parts = [_text(p) for p in alias.iter() if _local(p.tag) == "NamePartValue"]
            return " ".join(p for p in parts if p)
    return ""


def parse_csv(path: Path) -> ParsedList:
    """A simple list: a header row naming ``address`` (and optionally ``name``, ``reference``,
    ``asset``), then one address per row.

    Every row's address must be an EVM (``0x``) or Sei account (``sei1``) address: a list we
    cannot read entirely is refused rather than loaded in part.
    """
    try:
        raw = path.read_bytes()
        text = raw.decode("utf-8-sig")
    except OSError as exc:
        raise SanctionsListUnreadable(str(path), exc.strerror or str(exc)) from None
    except UnicodeDecodeError:
        raise SanctionsListUnreadable(str(path), "the file is not UTF-8 text") from None
    reader = csv.DictReader(io.StringIO(text))
    fields = [f.strip().lower() for f in reader.fieldnames or []]
    if "address" not in fields:
        raise SanctionsListUnreadable(
            str(path), "the first row must name the columns, one of them 'address'"
        )
    found: list[ListedAddress] = []
    for number, row in enumerate(reader, 2):
        values = {k.strip().lower(): (v or "").strip() for k, v in row.items() if k is not None}
        written = values.get("address", "")
        if not written:
            continue
        key = address_key(written)
        if key is None:
            raise SanctionsListUnreadable(
                str(path), f"line {number}: {written[:60]!r} is not a 0x or sei1 account address"
            )
        found.append(
            ListedAddress(
                written[:120],
                key,
                values.get("name", "")[:300],
                values.get("reference", "")[:64],
                values.get("asset", "")[:32],
            )
        )
    return ParsedList(tuple(_unique(found)), 0, hashlib.sha256(raw).hexdigest())


def parse_text_list(path: Path) -> ParsedList:
    """The first version's list: one ``0x`` address per line, ``#`` comments."""
    try:
        raw = path.read_bytes()
        lines = raw.decode("utf-8").splitlines()
    except OSError as exc:
        raise SanctionsListUnreadable(str(path), exc.strerror or str(exc)) from None
    except UnicodeDecodeError:
        raise SanctionsListUnreadable(str(path), "the file is not UTF-8 text") from None
    found = []
    for number, line in enumerate(lines, 1):
        text = line.split("#", 1)[0].strip()
        if not text:
            continue
        try:
            key = parse_evm_address(text)[2:].lower()
        except InvalidAddress as exc:
            raise SanctionsListUnreadable(str(path), f"line {number}: {exc}") from None
        found.append(ListedAddress(text, key, "", "", ""))
    return ParsedList(tuple(_unique(found)), 0, hashlib.sha256(raw).hexdigest())


def _unique(addresses: Iterable[ListedAddress]) -> Iterator[ListedAddress]:
    seen: set[str] = set()
    for address in addresses:
        if address.key not in seen:
            seen.add(address.key)
            yield address


@dataclass(frozen=True)
class Hit:
    """A screened address found on a list."""

    key: str
    list_name: str
    written: str
    entry: str
    reference: str


@dataclass(frozen=True)
class LoadedList:
    name: str
    source: str
    sha256: str
    addresses: int
    skipped: int
    loaded_at: datetime


#: Every movement's screening, built once (making a statement on each call cost about as much as
#: running it).
_LISTED = select(SanctionedAddress).where(
    SanctionedAddress.address.in_(bindparam("keys", expanding=True))
)


class SanctionsScreen:
    """The loaded lists in the database: replaced whole by :meth:`replace`, read by :meth:`hits`."""

    def __init__(self, sessions: sessionmaker[Session]) -> None:
        self._sessions = sessions

    def replace(self, name: str, source: str, parsed: ParsedList) -> LoadedList:
        """Make ``parsed`` the list ``name``, in one transaction (screening never sees half)."""
        now = datetime.now(UTC)
        with self._sessions.begin() as db:
            db.connection(execution_options=_WRITE)
            db.execute(delete(SanctionedAddress).where(SanctionedAddress.list_name == name))
            rows = [
                {
                    "list_name": name,
                    "address": a.key,
                    "written": a.written[:120],
                    "entry": a.entry[:300],
                    "reference": a.reference[:64],
                    "asset": a.asset[:32],
                }
                for a in parsed.addresses
            ]
            for start in range(0, len(rows), _BATCH):
                db.execute(insert(SanctionedAddress), rows[start : start + _BATCH])
            db.merge(
                SanctionsList(
                    name=name,
                    source=source[:500],
                    sha256=parsed.sha256,
                    addresses=len(rows),
                    skipped=parsed.skipped,
                    loaded_at=now,
                )
            )
        return LoadedList(name, source, parsed.sha256, len(rows), parsed.skipped, now)

    def hits(self, addresses: Iterable[str], db: Session | None = None) -> list[Hit]:
        """Which of ``addresses`` (any form) are on a loaded list."""
        keys = {k for k in (address_key(a) for a in addresses) if k}
        if not keys:
            return []
        params = {"keys": sorted(keys)}
        if db is not None:
            rows = db.scalars(_LISTED, params).all()
        else:
            with self._sessions() as session:
                rows = session.scalars(_LISTED, params).all()
        return [Hit(r.address, r.list_name, r.written, r.entry, r.reference) for r in rows]

    def lists(self) -> list[LoadedList]:
        with self._sessions() as db:
            rows = db.scalars(select(SanctionsList).order_by(SanctionsList.name)).all()
            return [
                LoadedList(r.name, r.source, r.sha256, r.addresses, r.skipped, r.loaded_at)
                for r in rows
            ]

    def count(self) -> int:
        with self._sessions() as db:
            return int(db.scalar(select(func.count()).select_from(SanctionedAddress)) or 0)
