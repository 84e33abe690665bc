"""Deploy Circle's FiatToken (USDC, EURC), our PaymentRouter, InviteEscrow and InvoiceDeposits;
write a manifest.

FiatToken is deployed only on chains we run ourselves (anvil); on Sei the tokens are Circle's
own and only the router, the escrow and the deposits contract are ours (:func:`deploy_router`,
:func:`deploy_invite_escrow`, :func:`deploy_invoice_deposits`). The steps follow Circle's
deployment: ``SignatureChecker`` library → ``FiatTokenV2_2`` implementation, linked to it and
initialized with throw-away values so nobody can take it over → one ``FiatTokenProxy`` per token,
created by a dedicated proxy-admin account (the proxy's admin cannot call the token) →
``initialize``, ``initializeV2``, ``initializeV2_1``, ``initializeV2_2`` through the proxy →
``configureMinter``.

Transactions that do not depend on each other are sent together with consecutive nonces and
their contract addresses computed in advance, so a deployment takes three blocks, not twenty.
This is a one-off tool: it uses web3.py's synchronous client and local keys.
"""

from __future__ import annotations

import functools
import json
import os
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from types import MappingProxyType
from typing import Any

from eth_abi.abi import decode as abi_decode
from eth_account import Account
from eth_account.signers.local import LocalAccount
from eth_typing import HexStr
from eth_utils.address import to_checksum_address
from eth_utils.crypto import keccak
from hexbytes import HexBytes
from web3 import Web3
from web3.exceptions import TimeExhausted
from web3.types import Nonce, TxParams, TxReceipt
from web3.utils.address import get_create_address

from seiwallet.chain.artifacts import (
    SIGNATURE_CHECKER,
    ContractArtifact,
    load_artifact,
    load_fiat_token_artifact,
)
from seiwallet.chain.errors import (
    ChainError,
    DeploymentMissing,
    TransactionFailed,
    TransactionTimeout,
)

#: The mnemonic of anvil's (and Hardhat's) well-known development accounts. Never use it on a
#: chain where the accounts hold anything of value: the whole world knows these keys.
ANVIL_MNEMONIC = "test test test test test test test test test test test junk"

#: The version of the manifest's JSON layout; bumped when it changes incompatibly.
MANIFEST_VERSION = 1

#: Where Circle puts a contract's own balance and blacklists the contract's own address.
#: The implementation is initialized with this address in every role, as Circle's scripts do.
THROWAWAY_ADDRESS = "0x0000000000000000000000000000000000000001"

#: BIP-44 index of the local invite escrow's releaser: past anvil's ten funded accounts (of which
#: 8 and 9 are the demo's customer and merchant), so it is a role of its own; the local chain
#: gives it gas. Address 0xBcd4042DE499D14e55001CcbB24a551F3b954096.
RELEASER_INDEX = 10

#: BIP-44 index of the local sweeper of invoice deposit boxes (it pays the gas of ``sweep``), a
#: role of its own after the releaser; the local chain gives it gas.
SWEEPER_INDEX = 11

#: Unlimited minting for the local master minter's own minter (a test chain, not a real issuer).
_UNLIMITED = 2**256 - 1

#: Gas for calls whose estimate cannot be taken before an earlier transaction of the same
#: batch is mined (FiatToken's initializers and ``configureMinter``: 35–211 k measured).
_INIT_GAS = 400_000

#: Estimates are raised by this factor: gas a transaction does not use is not charged.
_GAS_MARGIN = 1.25


@dataclass(frozen=True)
class TokenSpec:
    """A stablecoin to deploy: its ERC-20 name and symbol, ISO currency and decimals."""

    name: str
    symbol: str
    currency: str
    decimals: int = 6


#: The stablecoins of the local chain, named like Circle's on Sei.
DEFAULT_TOKENS: tuple[TokenSpec, ...] = (
    TokenSpec(name="USD Coin", symbol="USDC", currency="USD"),
    TokenSpec(name="EURC", symbol="EURC", currency="EUR"),
)


@dataclass(frozen=True)
class LocalAccounts:
    """The keys of the local chain's roles, derived from anvil's development mnemonic.

    Index 0 deploys, 1 is the tokens' proxy admin (an account of its own, because the proxy's
    admin cannot call the token), 2 owns the tokens and is their master minter, minter, pauser,
    blacklister and lost-and-found, 3 collects fees and owns the router and the invite escrow,
    4–7 are sponsors that pay gas for users, 10 (:data:`RELEASER_INDEX`) is the invite escrow's
    releaser, 11 (:data:`SWEEPER_INDEX`) sweeps invoice deposit boxes. One place, so a test and
    the demo cannot disagree on who is who.
    """

    deployer: LocalAccount
    proxy_admin: LocalAccount
    token_admin: LocalAccount
    fee_collector: LocalAccount
    sponsors: tuple[LocalAccount, ...]
    releaser: LocalAccount
    sweeper: LocalAccount

    @classmethod
    def from_mnemonic(cls, mnemonic: str = ANVIL_MNEMONIC, *, sponsors: int = 4) -> LocalAccounts:
        """Derive the role accounts (BIP-44 path ``m/44'/60'/0'/0/i``) from ``mnemonic``."""
        if 4 + sponsors > RELEASER_INDEX:
            raise ValueError(
                f"at most {RELEASER_INDEX - 4} sponsors: index {RELEASER_INDEX} is the releaser"
            )
        keys = _derive(mnemonic, SWEEPER_INDEX + 1)
        return cls(
            deployer=keys[0],
            proxy_admin=keys[1],
            token_admin=keys[2],
            fee_collector=keys[3],
            sponsors=tuple(keys[4 : 4 + sponsors]),
            releaser=keys[RELEASER_INDEX],
            sweeper=keys[SWEEPER_INDEX],
        )

    @property
    def roles(self) -> Roles:
        """The public addresses of the roles, as the manifest records them."""
        admin = self.token_admin.address
        return Roles(
            deployer=self.deployer.address,
            proxy_admin=self.proxy_admin.address,
            token_owner=admin,
            master_minter=admin,
            minter=admin,
            pauser=admin,
            blacklister=admin,
            lost_and_found=admin,
            router_owner=self.fee_collector.address,
        )


@functools.cache
def _derive(mnemonic: str, count: int) -> tuple[LocalAccount, ...]:
    # Deriving is slow (PBKDF2); the keys of a mnemonic never change, so derive them once.
    Account.enable_unaudited_hdwallet_features()
    return tuple(
        Account.from_mnemonic(mnemonic, account_path=f"m/44'/60'/0'/0/{index}")
        for index in range(count)
    )


def local_accounts() -> LocalAccounts:
    """The role accounts of a local chain started from anvil's default mnemonic."""
    return LocalAccounts.from_mnemonic()


# -- the manifest ------------------------------------------------------------------------------


@dataclass(frozen=True)
class DeployedToken:
    """A stablecoin as deployed: its proxy's address and the metadata it was initialized with."""

    address: str
    name: str
    symbol: str
    currency: str
    decimals: int


@dataclass(frozen=True)
class Roles:
    """Who holds which role on the deployed contracts (addresses only; keys live elsewhere)."""

    deployer: str
    proxy_admin: str
    token_owner: str
    master_minter: str
    minter: str
    pauser: str
    blacklister: str
    lost_and_found: str
    router_owner: str


@dataclass(frozen=True)
class Deployment:
    """Where our contracts are on one chain: what ``seiwallet chain`` writes and others read."""

    chain_id: int
    #: The block in which the last contract of the deployment was mined.
    block_number: int
    tokens: Mapping[str, DeployedToken]
    router: str
    fee_collector: str
    roles: Roles
    #: keccak256 of the router's runtime code: tells a router built from older sources apart.
    router_code_hash: str
    fiat_token_implementation: str | None = None
    signature_checker: str | None = None
    #: The invite escrow, its releaser and the keccak256 of its runtime code. ``None`` in a
    #: manifest written before the escrow existed (still read; the local chain then adds one).
    #: Its owner is ``roles.router_owner``.
    invite_escrow: str | None = None
    invite_escrow_releaser: str | None = None
    invite_escrow_code_hash: str | None = None
    #: The invoice deposits contract (deposit addresses for outside wallets, bound to
    #: ``router``) and the keccak256 of its runtime code; ``None`` in an older manifest.
    invoice_deposits: str | None = None
    invoice_deposits_code_hash: str | None = None
    version: int = field(default=MANIFEST_VERSION)

    def token(self, symbol: str) -> DeployedToken:
        """The deployed token with this symbol."""
        try:
            return self.tokens[symbol]
        except KeyError:
            raise DeploymentMissing(
                f"no {symbol} in this deployment (it has {', '.join(sorted(self.tokens))})"
            ) from None

    def to_dict(self) -> dict[str, Any]:
        """A JSON-safe dict with the manifest's layout."""
        return {
            "version": self.version,
            "chain_id": self.chain_id,
            "block_number": self.block_number,
            "tokens": {symbol: asdict(token) for symbol, token in sorted(self.tokens.items())},
            "router": self.router,
            "fee_collector": self.fee_collector,
            "roles": asdict(self.roles),
            "router_code_hash": self.router_code_hash,
            "fiat_token_implementation": self.fiat_token_implementation,
            "signature_checker": self.signature_checker,
            # Top-level keys, not roles: a reader that predates them ignores them.
            "invite_escrow": self.invite_escrow,
            "invite_escrow_releaser": self.invite_escrow_releaser,
            "invite_escrow_code_hash": self.invite_escrow_code_hash,
            "invoice_deposits": self.invoice_deposits,
            "invoice_deposits_code_hash": self.invoice_deposits_code_hash,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Deployment:
        """Read a manifest's dict, refusing one of another layout version."""
        version = data.get("version")
        if version != MANIFEST_VERSION:
            raise ValueError(f"manifest version {version!r}, expected {MANIFEST_VERSION}")
        tokens = {
            str(symbol): DeployedToken(**token) for symbol, token in dict(data["tokens"]).items()
        }
        return cls(
            chain_id=int(data["chain_id"]),
            block_number=int(data["block_number"]),
            tokens=MappingProxyType(tokens),
            router=str(data["router"]),
            fee_collector=str(data["fee_collector"]),
            roles=Roles(**data["roles"]),
            router_code_hash=str(data["router_code_hash"]),
            fiat_token_implementation=data.get("fiat_token_implementation"),
            signature_checker=data.get("signature_checker"),
            invite_escrow=_optional_str(data.get("invite_escrow")),
            invite_escrow_releaser=_optional_str(data.get("invite_escrow_releaser")),
            invite_escrow_code_hash=_optional_str(data.get("invite_escrow_code_hash")),
            invoice_deposits=_optional_str(data.get("invoice_deposits")),
            invoice_deposits_code_hash=_optional_str(data.get("invoice_deposits_code_hash")),
            version=int(version),
        )

    def to_json(self) -> str:
        """The manifest as stable, human-readable JSON (sorted keys, trailing newline)."""
        return json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n"

    @classmethod
    def from_json(cls, text: str) -> Deployment:
        """Parse a manifest written by :meth:`to_json`."""
        return cls.from_dict(json.loads(text))


def _optional_str(value: Any) -> str | None:
    return None if value is None else str(value)


def write_manifest(deployment: Deployment, path: Path) -> None:
    """Write the manifest atomically: a reader sees the old file or the new one, never half."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(deployment.to_json())
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def read_manifest(path: Path) -> Deployment:
    """Read a manifest, with an error that says how to get a good one if it is absent or bad."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise DeploymentMissing(
            f"no deployment manifest at {path}: start the local chain with `seiwallet chain` "
            "(it deploys the contracts and writes the manifest)"
        ) from None
    try:
        return Deployment.from_json(text)
    except (ValueError, KeyError, TypeError) as exc:
        raise DeploymentMissing(
            f"the deployment manifest {path} is unreadable ({exc}): delete it and restart "
            "`seiwallet chain`, which deploys afresh"
        ) from None


# -- sending -----------------------------------------------------------------------------------


class _Sender:
    """Signs with local keys and sends, tracking nonces itself so independent txs pipeline."""

    def __init__(self, w3: Web3, *, timeout: float) -> None:
        self._w3 = w3
        self._timeout = timeout
        self._chain_id = w3.eth.chain_id
        self._nonces: dict[str, int] = {}
        self._pending: list[tuple[str, HexBytes, str | None]] = []
        self._block_gas_limit = int(w3.eth.get_block("latest")["gasLimit"])

    def next_address(self, account: LocalAccount, offset: int = 0) -> str:
        """The address of the contract created by ``account``'s next (+``offset``) transaction."""
        return str(get_create_address(account.address, Nonce(self._nonce(account) + offset)))

    def _nonce(self, account: LocalAccount) -> int:
        if account.address not in self._nonces:
            self._nonces[account.address] = self._w3.eth.get_transaction_count(
                account.address, "pending"
            )
        return self._nonces[account.address]

    def send(
        self,
        account: LocalAccount,
        data: bytes,
        *,
        label: str,
        to: str | None = None,
        gas: int | None = None,
    ) -> HexBytes:
        """Sign and send; the receipt is checked by :meth:`wait`."""
        request: TxParams = {"from": account.address, "data": HexStr("0x" + data.hex())}
        if to is not None:
            request["to"] = to_checksum_address(to)
        if gas is None:
            gas = min(int(self._w3.eth.estimate_gas(request) * _GAS_MARGIN), self._block_gas_limit)
        base_fee = int(self._w3.eth.get_block("latest").get("baseFeePerGas", 0))
        priority = int(self._w3.eth.max_priority_fee)
        transaction: dict[str, Any] = {
            "type": 2,
            "chainId": self._chain_id,
            "nonce": self._nonce(account),
            "gas": gas,
            # Twice the base fee survives several full blocks of a rising base fee.
            "maxFeePerGas": 2 * base_fee + priority,
            "maxPriorityFeePerGas": priority,
            "value": 0,
            "data": data,
        }
        if to is not None:
            transaction["to"] = to_checksum_address(to)
        # A creation's address follows from sender and nonce; checked against the receipt.
        creates = None if to is not None else self.next_address(account)
        signed = account.sign_transaction(transaction)
        tx_hash = self._w3.eth.send_raw_transaction(signed.raw_transaction)
        self._nonces[account.address] += 1
        self._pending.append((label, HexBytes(tx_hash), creates))
        return HexBytes(tx_hash)

    def wait(self) -> list[TxReceipt]:
        """Wait for every transaction sent since the last wait; raise on the first failure."""
        pending, self._pending = self._pending, []
        receipts: list[TxReceipt] = []
        for label, tx_hash, creates in pending:
            try:
                receipt = self._w3.eth.wait_for_transaction_receipt(
                    tx_hash, timeout=self._timeout, poll_latency=0.05
                )
            except TimeExhausted:
                raise TransactionTimeout(tx_hash.to_0x_hex(), self._timeout) from None
            if receipt["status"] != 1:
                raise TransactionFailed(tx_hash.to_0x_hex(), f"{label} failed")
            if creates is not None and receipt["contractAddress"] != creates:
                raise ChainError(
                    f"{label} created {receipt['contractAddress']}, not the predicted {creates}: "
                    "another process sent transactions from the same account"
                )
            receipts.append(receipt)
        return receipts


def _send_one(
    w3: Web3, account: LocalAccount, to: str, data: bytes, *, label: str, timeout: float = 30.0
) -> TxReceipt:
    sender = _Sender(w3, timeout=timeout)
    sender.send(account, data, to=to, label=label)
    return sender.wait()[0]


# -- deploying ---------------------------------------------------------------------------------


def deploy_local(
    w3: Web3,
    accounts: LocalAccounts | None = None,
    *,
    tokens: Sequence[TokenSpec] = DEFAULT_TOKENS,
    timeout: float = 60.0,
) -> Deployment:
    """Deploy the FiatToken stablecoins, the router, the invite escrow and the invoice deposits
    contract on a chain we run.

    Runs in three rounds of transactions: (1) library, implementation, router, invite escrow,
    invoice deposits and the implementation's throw-away initialization; (2) the proxies; (3)
    initializing every proxy and configuring its minter.
    """
    roles_keys = accounts or local_accounts()
    roles = roles_keys.roles
    library = load_fiat_token_artifact("SignatureChecker")
    implementation = load_fiat_token_artifact("FiatTokenV2_2")
    proxy = load_fiat_token_artifact("FiatTokenProxy")
    router = load_artifact("PaymentRouter")
    escrow = load_artifact("InviteEscrow")
    deposits = load_artifact("InvoiceDeposits")
    deployer, proxy_admin, admin = (
        roles_keys.deployer,
        roles_keys.proxy_admin,
        roles_keys.token_admin,
    )
    sender = _Sender(w3, timeout=timeout)

    # Round 1: everything the deployer creates, in nonce order, addresses known in advance.
    library_address = sender.next_address(deployer, 0)
    implementation_address = sender.next_address(deployer, 1)
    router_address = sender.next_address(deployer, 2)
    escrow_address = sender.next_address(deployer, 3)
    deposits_address = sender.next_address(deployer, 4)
    linked = {SIGNATURE_CHECKER: library_address}
    sender.send(deployer, library.encode_deploy(), label="deploy SignatureChecker")
    # The constructor does not call the library, so it can be estimated before the library
    # exists; its runtime calls only need the (predicted) address linked in.
    sender.send(
        deployer,
        implementation.encode_deploy(libraries=linked),
        label="deploy FiatTokenV2_2 implementation",
    )
    sender.send(
        deployer,
        router.encode_deploy(roles.router_owner, roles_keys.fee_collector.address),
        label="deploy PaymentRouter",
    )
    sender.send(
        deployer,
        escrow.encode_deploy(roles.router_owner, roles_keys.releaser.address),
        label="deploy InviteEscrow",
    )
    sender.send(deployer, deposits.encode_deploy(router_address), label="deploy InvoiceDeposits")
    # Circle initializes the implementation with dead values so nobody can claim its roles.
    for call in _initializers(
        TokenSpec(name="", symbol="", currency="", decimals=0),
        implementation,
        role=THROWAWAY_ADDRESS,
    ):
        sender.send(
            deployer, call, to=implementation_address, gas=_INIT_GAS, label="lock implementation"
        )
    sender.wait()

    # Round 2: the proxies, from the account that will be their admin and nothing else.
    proxies: dict[str, str] = {}
    for spec in tokens:
        proxies[spec.symbol] = sender.next_address(proxy_admin)
        sender.send(
            proxy_admin,
            proxy.encode_deploy(implementation_address),
            label=f"deploy FiatTokenProxy ({spec.symbol})",
        )
    sender.wait()

    # Round 3: initialize each token through its proxy, from a non-admin account.
    for spec in tokens:
        for call in _initializers(spec, implementation, role=roles.token_owner):
            sender.send(
                admin,
                call,
                to=proxies[spec.symbol],
                gas=_INIT_GAS,
                label=f"initialize {spec.symbol}",
            )
        sender.send(
            admin,
            implementation.encode_call("configureMinter", roles.minter, _UNLIMITED),
            to=proxies[spec.symbol],
            gas=_INIT_GAS,
            label=f"configure {spec.symbol} minter",
        )
    receipts = sender.wait()

    router_code = bytes(w3.eth.get_code(to_checksum_address(router_address)))
    escrow_code = bytes(w3.eth.get_code(to_checksum_address(escrow_address)))
    deposits_code = bytes(w3.eth.get_code(to_checksum_address(deposits_address)))
    deployment = Deployment(
        chain_id=w3.eth.chain_id,
        block_number=max(int(r["blockNumber"]) for r in receipts),
        tokens=MappingProxyType(
            {
                spec.symbol: DeployedToken(
                    address=proxies[spec.symbol],
                    name=spec.name,
                    symbol=spec.symbol,
                    currency=spec.currency,
                    decimals=spec.decimals,
                )
                for spec in tokens
            }
        ),
        router=router_address,
        fee_collector=roles_keys.fee_collector.address,
        roles=roles,
        router_code_hash="0x" + keccak(router_code).hex(),
        fiat_token_implementation=implementation_address,
        signature_checker=library_address,
        invite_escrow=escrow_address,
        invite_escrow_releaser=roles_keys.releaser.address,
        invite_escrow_code_hash="0x" + keccak(escrow_code).hex(),
        invoice_deposits=deposits_address,
        invoice_deposits_code_hash="0x" + keccak(deposits_code).hex(),
    )
    problems = check_deployment(w3, deployment)
    if problems:
        raise ChainError("the deployment does not check out: " + "; ".join(problems))
    return deployment


def _initializers(spec: TokenSpec, implementation: ContractArtifact, *, role: str) -> list[bytes]:
    """FiatToken v2.2's four initializers, in the order the versions require."""
    return [
        implementation.encode_call(
            "initialize",
            spec.name,
            spec.symbol,
            spec.currency,
            spec.decimals,
            role,  # master minter
            role,  # pauser
            role,  # blacklister
            role,  # owner
        ),
        implementation.encode_call("initializeV2", spec.name),
        implementation.encode_call("initializeV2_1", role),  # lost and found
        implementation.encode_call("initializeV2_2", [], spec.symbol),
    ]


def _deploy_alone(
    w3: Web3, deployer: LocalAccount, name: str, *args: str, timeout: float
) -> tuple[str, int]:
    """Deploy one of our contracts by itself, its constructor taking addresses; (address, block)."""
    sender = _Sender(w3, timeout=timeout)
    address = sender.next_address(deployer)
    sender.send(
        deployer,
        load_artifact(name).encode_deploy(*(to_checksum_address(a) for a in args)),
        label=f"deploy {name}",
    )
    (receipt,) = sender.wait()
    return address, int(receipt["blockNumber"])


def deploy_router(
    w3: Web3,
    deployer: LocalAccount,
    *,
    owner: str,
    fee_collector: str,
    timeout: float = 60.0,
) -> tuple[str, int]:
    """Deploy only the PaymentRouter (e.g. on Sei, next to Circle's USDC); (address, block)."""
    return _deploy_alone(w3, deployer, "PaymentRouter", owner, fee_collector, timeout=timeout)


def deploy_invite_escrow(
    w3: Web3,
    deployer: LocalAccount,
    *,
    owner: str,
    releaser: str,
    timeout: float = 60.0,
) -> tuple[str, int]:
    """Deploy only the InviteEscrow (e.g. on Sei, next to the router); (address, block)."""
    return _deploy_alone(w3, deployer, "InviteEscrow", owner, releaser, timeout=timeout)


def deploy_invoice_deposits(
    w3: Web3,
    deployer: LocalAccount,
    *,
    router: str,
    timeout: float = 60.0,
) -> tuple[str, int]:
    """Deploy only InvoiceDeposits bound to ``router`` (e.g. on Sei); (address, block).

    It has no owner and no settings: the router it is bound to is all there is to choose.
    """
    return _deploy_alone(w3, deployer, "InvoiceDeposits", router, timeout=timeout)


def add_invoice_deposits(
    w3: Web3,
    deployment: Deployment,
    accounts: LocalAccounts | None = None,
    *,
    timeout: float = 60.0,
) -> Deployment:
    """Deploy the invoice deposits contract next to a local deployment whose manifest predates
    it (bound to that deployment's router); returns the completed manifest."""
    if deployment.invoice_deposits is not None:
        return deployment
    keys = accounts or local_accounts()
    address, block = deploy_invoice_deposits(
        w3, keys.deployer, router=deployment.router, timeout=timeout
    )
    code = bytes(w3.eth.get_code(to_checksum_address(address)))
    upgraded = replace(
        deployment,
        block_number=max(deployment.block_number, block),
        invoice_deposits=address,
        invoice_deposits_code_hash="0x" + keccak(code).hex(),
    )
    problems = check_deployment(w3, upgraded)
    if problems:
        raise ChainError("the deployment does not check out: " + "; ".join(problems))
    return upgraded


def add_invite_escrow(
    w3: Web3,
    deployment: Deployment,
    accounts: LocalAccounts | None = None,
    *,
    timeout: float = 60.0,
) -> Deployment:
    """Deploy the invite escrow next to a local deployment whose manifest predates it.

    The escrow is owned by the router's owner and released by the local releaser account;
    the other contracts stay where they are. Returns the completed manifest.
    """
    if deployment.invite_escrow is not None:
        return deployment
    keys = accounts or local_accounts()
    address, block = deploy_invite_escrow(
        w3,
        keys.deployer,
        owner=deployment.roles.router_owner,
        releaser=keys.releaser.address,
        timeout=timeout,
    )
    code = bytes(w3.eth.get_code(to_checksum_address(address)))
    upgraded = replace(
        deployment,
        block_number=max(deployment.block_number, block),
        invite_escrow=address,
        invite_escrow_releaser=keys.releaser.address,
        invite_escrow_code_hash="0x" + keccak(code).hex(),
    )
    problems = check_deployment(w3, upgraded)
    if problems:
        raise ChainError("the deployment does not check out: " + "; ".join(problems))
    return upgraded


def check_deployment(w3: Web3, deployment: Deployment) -> list[str]:
    """What does not match between the manifest and the chain (empty if everything does)."""
    problems: list[str] = []
    chain_id = w3.eth.chain_id
    if chain_id != deployment.chain_id:
        return [f"the chain's id is {chain_id}, the manifest's {deployment.chain_id}"]
    router_code = bytes(w3.eth.get_code(to_checksum_address(deployment.router)))
    if not router_code:
        problems.append(f"no contract at the router address {deployment.router}")
    elif "0x" + keccak(router_code).hex() != deployment.router_code_hash:
        problems.append(f"the code at the router address {deployment.router} is not the manifest's")
    elif router_code != load_artifact("PaymentRouter").runtime_code():
        problems.append("the deployed router was built from other sources than this version's")
    # A manifest from before the escrow has none to check (the local chain adds one).
    if deployment.invite_escrow is not None:
        escrow_code = bytes(w3.eth.get_code(to_checksum_address(deployment.invite_escrow)))
        if not escrow_code:
            problems.append(f"no contract at the invite escrow address {deployment.invite_escrow}")
        elif "0x" + keccak(escrow_code).hex() != deployment.invite_escrow_code_hash:
            problems.append(
                f"the code at the invite escrow address {deployment.invite_escrow} is not the "
                "manifest's"
            )
        elif escrow_code != load_artifact("InviteEscrow").runtime_code():
            problems.append(
                "the deployed invite escrow was built from other sources than this version's"
            )
    problems.extend(_check_invoice_deposits(w3, deployment))
    fiat_token = load_fiat_token_artifact("FiatTokenV2_2") if deployment.tokens else None
    for symbol, token in sorted(deployment.tokens.items()):
        address = to_checksum_address(token.address)
        if not w3.eth.get_code(address):
            problems.append(f"no contract at the {symbol} address {address}")
            continue
        if fiat_token is not None:
            raw = w3.eth.call(
                {"to": address, "data": HexStr("0x" + fiat_token.encode_call("symbol").hex())}
            )
            if _decode_string(bytes(raw)) != token.symbol:
                problems.append(f"the token at {address} is not {symbol}")
    return problems


def _check_invoice_deposits(w3: Web3, deployment: Deployment) -> list[str]:
    """The invoice deposits contract: there, the manifest's code, this version's, our router's."""
    address = deployment.invoice_deposits
    if address is None:  # a manifest from before it: nothing to check (the local chain adds one)
        return []
    artifact = load_artifact("InvoiceDeposits")
    code = bytes(w3.eth.get_code(to_checksum_address(address)))
    if not code:
        return [f"no contract at the invoice deposits address {address}"]
    if "0x" + keccak(code).hex() != deployment.invoice_deposits_code_hash:
        return [f"the code at the invoice deposits address {address} is not the manifest's"]
    if not artifact.runtime_code_matches(code):
        return ["the deployed invoice deposits contract was built from other sources"]
    raw = w3.eth.call(
        {
            "to": to_checksum_address(address),
            "data": HexStr("0x" + artifact.encode_call("router").hex()),
        }
    )
    bound = to_checksum_address(abi_decode(["address"], bytes(raw))[0])
    if bound != to_checksum_address(deployment.router):
        return [f"the invoice deposits contract is bound to router {bound}, not the manifest's"]
    return []


def _decode_string(raw: bytes) -> str | None:
    try:
        return str(abi_decode(["string"], raw)[0])
    except Exception:  # anything undecodable means "not the token we expect"
        return None


# -- issuer operations on local tokens ----------------------------------------------------------


def _admin_call(
    w3: Web3,
    deployment: Deployment,
    symbol: str,
    function: str,
    *args: Any,
    accounts: LocalAccounts | None,
) -> TxReceipt:
    token = deployment.token(symbol)
    data = load_fiat_token_artifact("FiatTokenV2_2").encode_call(function, *args)
    admin = (accounts or local_accounts()).token_admin
    return _send_one(w3, admin, token.address, data, label=f"{function} on {symbol}")


def mint(
    w3: Web3,
    deployment: Deployment,
    symbol: str,
    to: str,
    amount_units: int,
    *,
    accounts: LocalAccounts | None = None,
) -> TxReceipt:
    """Mint ``amount_units`` of a local token to ``to`` (creates money: local chains only)."""
    return _admin_call(
        w3, deployment, symbol, "mint", to_checksum_address(to), amount_units, accounts=accounts
    )


def blacklist(
    w3: Web3,
    deployment: Deployment,
    symbol: str,
    address: str,
    *,
    accounts: LocalAccounts | None = None,
) -> TxReceipt:
    """Blacklist ``address`` on a local token, as Circle would: it can neither send nor receive."""
    return _admin_call(
        w3, deployment, symbol, "blacklist", to_checksum_address(address), accounts=accounts
    )


def unblacklist(
    w3: Web3,
    deployment: Deployment,
    symbol: str,
    address: str,
    *,
    accounts: LocalAccounts | None = None,
) -> TxReceipt:
    """Lift a blacklisting on a local token."""
    return _admin_call(
        w3, deployment, symbol, "unBlacklist", to_checksum_address(address), accounts=accounts
    )


def pause(
    w3: Web3, deployment: Deployment, symbol: str, *, accounts: LocalAccounts | None = None
) -> TxReceipt:
    """Pause every transfer of a local token, as its issuer can."""
    return _admin_call(w3, deployment, symbol, "pause", accounts=accounts)


def unpause(
    w3: Web3, deployment: Deployment, symbol: str, *, accounts: LocalAccounts | None = None
) -> TxReceipt:
    """Resume transfers of a paused local token."""
    return _admin_call(w3, deployment, symbol, "unpause", accounts=accounts)
