"""Decoding event logs of our contracts and of FiatToken stablecoins into JSON-safe values."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from eth_abi.abi import decode as abi_decode
from eth_utils.abi import event_abi_to_log_topic
from eth_utils.address import to_checksum_address

from seiwallet.chain.rpc import Log

#: The FiatToken v2.2 events the platform reacts to. Declared here rather than read from
#: node_modules, so a production install (which has no node_modules) decodes them too.
FIAT_TOKEN_EVENTS_ABI: list[dict[str, Any]] = [
    {
        "type": "event",
        "name": "Transfer",
        "inputs": [
            {"name": "from", "type": "address", "indexed": True},
            {"name": "to", "type": "address", "indexed": True},
            {"name": "value", "type": "uint256", "indexed": False},
        ],
    },
    {
        "type": "event",
        "name": "AuthorizationUsed",
        "inputs": [
            {"name": "authorizer", "type": "address", "indexed": True},
            {"name": "nonce", "type": "bytes32", "indexed": True},
        ],
    },
    {
        "type": "event",
        "name": "AuthorizationCanceled",
        "inputs": [
            {"name": "authorizer", "type": "address", "indexed": True},
            {"name": "nonce", "type": "bytes32", "indexed": True},
        ],
    },
    {
        "type": "event",
        "name": "Blacklisted",
        "inputs": [{"name": "_account", "type": "address", "indexed": True}],
    },
    {
        "type": "event",
        "name": "UnBlacklisted",
        "inputs": [{"name": "_account", "type": "address", "indexed": True}],
    },
    {"type": "event", "name": "Pause", "inputs": []},
    {"type": "event", "name": "Unpause", "inputs": []},
]

#: Argument that names the business object an event is about, per event name.
EVENT_KEYS: Mapping[str, str] = {
    "PaymentSettled": "invoiceId",
    "PaymentFailed": "invoiceId",
    "PaymentRefunded": "invoiceId",
    "InvitationCreated": "id",
    "InvitationClaimed": "id",
    "InvitationReclaimed": "id",
    "DepositSwept": "invoiceId",
    "DepositSettled": "invoiceId",
    "DepositRescued": "invoiceId",
    "AuthorizationUsed": "nonce",
    "AuthorizationCanceled": "nonce",
}


@lru_cache(maxsize=16384)
def _checksummed(address: str) -> str:
    return to_checksum_address(address)


def checksum_address(address: Any) -> str:
    """``to_checksum_address``, remembered: the same addresses (tokens, the router, sponsors, a
    transfer's authorizer who is also its sender) recur in every range, and each costs a
    Keccak hash to checksum."""
    if isinstance(address, str):
        return _checksummed(address)
    return to_checksum_address(address)


def json_safe(abi_type: str, value: Any) -> Any:
    """Make a decoded ABI value JSON-safe without losing precision (uint256 → decimal string)."""
    if abi_type.endswith("]"):
        inner = abi_type[: abi_type.rindex("[")]
        return [json_safe(inner, item) for item in value]
    if abi_type == "address":
        return checksum_address(value)
    if abi_type.startswith(("uint", "int")):
        return str(int(value))
    if abi_type.startswith("bytes"):
        return "0x" + bytes(value).hex()
    return value


def _indexed(abi_type: str, topic: str) -> Any:
    """An indexed static argument from its topic, JSON-safe: the two the tokens index on every
    transfer (an address, a bytes32 nonce) read straight from the word, the others decoded."""
    word = bytes.fromhex(topic[2:])
    if len(word) == 32:
        if abi_type == "address" and not any(word[:12]):
            return checksum_address("0x" + word[12:].hex())
        if abi_type == "bytes32":
            return "0x" + word.hex()
    return json_safe(abi_type, abi_decode([abi_type], word)[0])


@dataclass(frozen=True)
class DecodedEvent:
    """One decoded log."""

    contract: str
    name: str
    args: dict[str, Any]
    key: str | None
    log: Log


@dataclass(frozen=True)
class _EventSpec:
    name: str
    indexed: tuple[tuple[str, str], ...]
    data: tuple[tuple[str, str], ...]
    order: tuple[str, ...]


class EventDecoder:
    """Decodes logs of known contracts, matched on (address, topic0)."""

    def __init__(self, contracts: Mapping[str, Sequence[Mapping[str, Any]]]) -> None:
        self._specs: dict[tuple[str, str], _EventSpec] = {}
        for address, abi in contracts.items():
            for entry in abi:
                if entry.get("type") != "event" or entry.get("anonymous"):
                    continue
                event_abi: Any = dict(entry)
                topic = "0x" + bytes(event_abi_to_log_topic(event_abi)).hex()
                inputs = entry["inputs"]
                self._specs[(address.lower(), topic)] = _EventSpec(
                    name=entry["name"],
                    indexed=tuple((i["name"], i["type"]) for i in inputs if i.get("indexed")),
                    data=tuple((i["name"], i["type"]) for i in inputs if not i.get("indexed")),
                    order=tuple(i["name"] for i in inputs),
                )

    @property
    def addresses(self) -> list[str]:
        """The contract addresses whose logs this decoder understands."""
        return sorted({to_checksum_address(address) for address, _ in self._specs})

    def decode(self, log: Log) -> DecodedEvent | None:
        """Decode a log, or ``None`` if it is not an event we know."""
        if not log.topics:
            return None
        spec = self._specs.get((log.address.lower(), log.topics[0].lower()))
        if spec is None or len(log.topics) != 1 + len(spec.indexed):
            return None
        args: dict[str, Any] = {}
        for (name, abi_type), topic in zip(spec.indexed, log.topics[1:], strict=True):
            # Indexed dynamic types are stored as their hash; keep the hash.
            if abi_type in ("string", "bytes") or abi_type.endswith("]"):
                args[name] = topic
            else:
                args[name] = _indexed(abi_type, topic)
        if spec.data:
            values = abi_decode([t for _, t in spec.data], bytes.fromhex(log.data[2:]))
            for (name, abi_type), value in zip(spec.data, values, strict=True):
                args[name] = json_safe(abi_type, value)
        ordered = {name: args[name] for name in spec.order}
        key_arg = EVENT_KEYS.get(spec.name)
        key = str(ordered[key_arg]) if key_arg and key_arg in ordered else None
        return DecodedEvent(
            contract=checksum_address(log.address),
            name=spec.name,
            args=ordered,
            key=key,
            log=log,
        )

    def decode_all(self, logs: Iterable[Log]) -> list[DecodedEvent]:
        return [event for event in map(self.decode, logs) if event is not None]
