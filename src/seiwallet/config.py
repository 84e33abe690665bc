"""Settings and network profiles: one place that says which chain, database and files we use.

Settings come from ``SEIWALLET_*`` environment variables, then from the TOML file named by
``SEIWALLET_CONFIG`` (if any), then from the profile's defaults. A wrong value is reported once,
naming the environment variable to fix, as a :class:`~seiwallet.errors.ConfigError`.

Each setting's variable is ``SEIWALLET_`` and its name in capitals (``SEIWALLET_RPC_URL``). A
setting of a nested group takes the group's name, two underscores and its own
(``SEIWALLET_LOCAL_CHAIN__BLOCK_TIME=1``; ``[local_chain]`` in the TOML file); that is the only
spelling, so the name an error gives is always the one to set. Lists and tables are JSON
(``SEIWALLET_TOKENS='{"EURC": "0x…"}'``).
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from types import MappingProxyType
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator
from pydantic.fields import FieldInfo
from pydantic_settings import (
    BaseSettings,
    EnvSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from seiwallet.errors import ConfigError

ProfileName = Literal["local", "sei-testnet", "sei-mainnet"]

ENV_PREFIX = "SEIWALLET_"


@dataclass(frozen=True)
class NetworkProfile:
    """What we know about a network before talking to it."""

    name: str
    display_name: str
    chain_id: int
    default_rpc_url: str | None
    #: Blocks on top of a block (itself included) before we act on it. Sei is instantly final.
    confirmations: int
    #: ``{tx}`` is replaced by the transaction hash; ``None`` where there is no explorer.
    explorer_tx_url: str | None
    #: Token addresses known for the network (symbol → address); settings may add or override.
    tokens: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    #: True for the chain we start ourselves (anvil); its contracts come from a local manifest.
    is_local: bool = False

    def explorer_link(self, tx_hash: str) -> str | None:
        """A link to the transaction on the network's explorer, if it has one."""
        return self.explorer_tx_url.format(tx=tx_hash) if self.explorer_tx_url else None


#: Chain id of the local chain: ours, so a wallet never confuses it with a public network.
LOCAL_CHAIN_ID = 713_715

PROFILES: Mapping[str, NetworkProfile] = MappingProxyType(
    {
        "local": NetworkProfile(
            name="local",
            display_name="Local Sei-like chain (anvil)",
            chain_id=LOCAL_CHAIN_ID,
            default_rpc_url="http://127.0.0.1:8545",
            confirmations=1,
            explorer_tx_url=None,
            is_local=True,
        ),
        "sei-testnet": NetworkProfile(
            name="sei-testnet",
            display_name="Sei atlantic-2 (testnet)",
            chain_id=1328,
            default_rpc_url="https://evm-rpc-testnet.sei-apis.com",
            confirmations=1,
            explorer_tx_url="https://seitrace.com/tx/{tx}?chain=atlantic-2",
        ),
        "sei-mainnet": NetworkProfile(
            name="sei-mainnet",
            display_name="Sei pacific-1 (mainnet)",
            chain_id=1329,
            default_rpc_url="https://evm-rpc.sei-apis.com",
            confirmations=1,
            explorer_tx_url="https://seitrace.com/tx/{tx}?chain=pacific-1",
            # Circle's native USDC on Sei (FiatToken v2.2 behind a proxy).
            tokens=MappingProxyType({"USDC": "0xe15fC38F6D8c56aF07bbCBe3BAf5708A2Bf42392"}),
        ),
    }
)


class LocalChainSettings(BaseModel):
    """How ``seiwallet chain`` runs anvil: Sei-like by default (0.4 s blocks, 10 M gas, Prague)."""

    # A plain model, not BaseSettings: as a BaseSettings it also read SEIWALLET_LOCAL_*, a second
    # spelling whose errors were reported under names that do not exist (SEIWALLET_BLOCK_TIME).
    model_config = ConfigDict(extra="forbid")

    host: str = "127.0.0.1"
    port: int = Field(default=8545, ge=1, le=65535)
    block_time: float = Field(default=0.4, gt=0, le=60)
    gas_limit: int = Field(default=10_000_000, ge=1_000_000)
    hardfork: str = "prague"
    #: Keep only recent state in memory (anvil grows to gigabytes after ~100 k transfers).
    prune_history: bool = True


class SignerSettings(BaseModel):
    """How the isolated signer stores keys and how other processes reach it.

    Paths left empty live in ``<data_dir>/signer/``. The API and worker need only ``socket`` (or
    ``url``) and ``secret``; the master key and the signer's database are the signer's alone.
    """

    model_config = ConfigDict(extra="forbid")

    #: Unix socket the signer listens on (default ``<data_dir>/signer/signer.sock``).
    socket: Path | None = None
    #: Alternatively, ``http://127.0.0.1:PORT`` (loopback only); overrides ``socket``.
    url: str | None = None
    #: Shared secret every caller presents; default: a 0600 file ``<data_dir>/signer/secret``.
    secret: SecretStr | None = None
    #: The signer's own database (default: SQLite ``<data_dir>/signer/signer.sqlite3``).
    database_url: str | None = None
    #: PostgreSQL schema of the signer's tables in production.
    database_schema: str | None = None
    master_key: Literal["file", "pkcs11"] = "file"
    #: ``file``: the master key file (default ``<data_dir>/signer/master.key``, created 0600).
    master_key_file: Path | None = None
    #: ``pkcs11``: the module, the token's label, its user PIN and the key's label.
    pkcs11_library: str = "/usr/lib/softhsm/libsofthsm2.so"
    pkcs11_token: str = "seiwallet"  # noqa: S105 - a token label, not a secret
    pkcs11_pin: SecretStr | None = None
    pkcs11_key_label: str = "seiwallet-master"
    #: WebAuthn relying party: passkey approvals must come from this RP id and these origins.
    rp_id: str = "localhost"
    origins: list[str] = Field(default_factory=lambda: ["http://localhost:8000"])
    #: A passkey or device added without the wallet's approval (account recovery) can approve
    #: nothing for this long; the wallet's other devices can cancel it meanwhile.
    recovery_timelock_hours: float = Field(default=48, ge=0, le=24 * 30)

    @field_validator("url")
    @classmethod
    def _loopback(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("http://127.0.0.1:", "http://localhost:")):
            raise ValueError("the signer listens on loopback only: http://127.0.0.1:PORT")
        return value


class ProviderSettings(BaseModel):
    """One OpenID Connect provider people sign in with (``[[web.providers]]`` in the TOML file).

    ``preset = "google"`` fills in Google's issuer; ``generic`` is any issuer (the phone maker's
    account service). The redirect URI is always ``<public_url>/auth/callback/<name>``.
    """

    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9-]{0,31}$")
    #: What the sign-in button says ("Google", "Acme Account").
    label: str = Field(min_length=1, max_length=40)
    preset: Literal["google", "generic"] = "generic"
    issuer: str | None = None
    client_id: str = Field(min_length=1)
    client_secret: SecretStr | None = None

    @field_validator("issuer")
    @classmethod
    def _https_issuer(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("https://", "http://localhost")):
            raise ValueError("an issuer is an https:// URL")
        return value


class WebSettings(BaseModel):
    """The API and the wallet app: where they are served and how people sign in."""

    model_config = ConfigDict(extra="forbid")

    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=1, le=65535)
    #: The origin people open (and the WebAuthn origin): scheme, host and port, no path.
    public_url: str = "http://localhost:8000"
    #: Signs CSRF tokens; default: a 0600 file ``<data_dir>/web/secret`` created on first start.
    secret: SecretStr | None = None
    #: A browser session lasts this long after sign-in; an API token this long after issue.
    session_days: int = Field(default=30, ge=1, le=365)
    api_token_days: int = Field(default=90, ge=1, le=730)
    providers: list[ProviderSettings] = Field(default_factory=list)
    #: How recovery codes and security notices leave: ``dev-mailbox`` (local only) or ``smtp``.
    mailer: Literal["dev-mailbox", "smtp"] = "dev-mailbox"
    smtp_host: str = "localhost"
    smtp_port: int = Field(default=587, ge=1, le=65535)
    smtp_username: str | None = None
    smtp_password: SecretStr | None = None
    smtp_sender: str = "seiwallet <no-reply@localhost>"
    #: One-time recovery codes: lifetime, and wrong tries before the code is burnt.
    otp_ttl_minutes: int = Field(default=10, ge=1, le=60)
    otp_max_attempts: int = Field(default=5, ge=1, le=10)
    #: Codes sent per user per hour, at most.
    otp_per_hour: int = Field(default=5, ge=1, le=100)
    #: Who may open the operator console (``/operator``): user ids, or e-mail addresses the
    #: user has verified. JSON list: ``SEIWALLET_WEB__OPERATORS='["ops@example.com"]'``.
    operators: list[str] = Field(default_factory=list)

    @field_validator("public_url")
    @classmethod
    def _origin(cls, value: str) -> str:
        if not value.startswith(("https://", "http://localhost", "http://127.0.0.1")):
            raise ValueError("must be https:// (plain http only for localhost)")
        if value.rstrip("/").count("/") > 2:
            raise ValueError("an origin has no path: scheme://host[:port]")
        return value.rstrip("/")


class ComplianceSettings(BaseModel):
    """The compliance gate's first rules (the jurisdiction rule files extend them)."""

    model_config = ConfigDict(extra="forbid")

    #: A text file of sanctioned addresses, one per line (``#`` comments allowed).
    sanctions_list: Path | None = None
    #: The most one transfer may move, in whole tokens, by symbol.
    per_transfer_cap: dict[str, Decimal] = Field(
        default_factory=lambda: {"USDC": Decimal(10_000), "EURC": Decimal(10_000)}
    )
    #: A directory of jurisdiction rule files (``HK.toml``…); default: the rules shipped with
    #: seiwallet (``seiwallet/compliance/rules``).
    rules_dir: Path | None = None
    #: The country (ISO 3166-1 alpha-2) of people whose country is not known yet (no verified
    #: phone number, no operator assignment). Unset: such people cannot send until it is known;
    #: on the ``local`` profile the demo treats them as ``HK``.
    default_country: str | None = Field(default=None, pattern=r"^[A-Z]{2}$")
    #: Ask the token (FiatToken ``isBlacklisted``) about both sides before a movement.
    issuer_blacklist_check: bool = True
    #: Identity verification (tier 2): ``auto`` is the clearly-marked fake provider on ``local``
    #: and none elsewhere; ``fake-local`` is refused outside ``local``.
    kyc_provider: Literal["auto", "none", "fake-local"] = "auto"


class RelayerSettings(BaseModel):
    """How the worker's relayer submits signed transfers from the sponsors and watches them."""

    model_config = ConfigDict(extra="forbid")

    #: Transactions one sponsor may have broadcast and not yet mined (held in the node's pool).
    max_in_flight: int = Field(default=256, ge=1, le=10_000)
    #: Transfers one sponsor signs, records and broadcasts together (one JSON-RPC batch).
    batch_size: int = Field(default=100, ge=1, le=1_000)
    #: How often the outbox and the receipts are read when there is nothing else to do.
    poll_seconds: float = Field(default=0.1, gt=0, le=60)
    #: A sponsor whose mined nonce has not moved for this long, with transactions in flight, has
    #: its lowest ones sent again (the same bytes: a node may drop them from its pool) or its
    #: nonce gap filled.
    resend_after_seconds: float = Field(default=2.0, gt=0, le=3600)
    #: A transaction still without a receipt after this long is replaced with higher fees.
    stuck_after_seconds: float = Field(default=30.0, gt=0, le=3600)
    #: Gas limit of a transfer signed with a plain key (65-byte signature): it is simulated at
    #: this limit (``eth_call``) instead of estimated, a tenth of the node's work; only the gas
    #: used is charged. Other signatures (smart accounts) are estimated.
    transfer_gas_limit: int = Field(default=150_000, ge=50_000, le=10_000_000)
    #: The same for an invitation's deposit into the invite escrow (it uses 168–202 k).
    deposit_gas_limit: int = Field(default=260_000, ge=50_000, le=10_000_000)
    #: The same for a PaymentRouter ``pay`` or ``refund`` (``pay`` uses 140–174 k).
    router_gas_limit: int = Field(default=240_000, ge=50_000, le=10_000_000)
    #: Most ``router.pay`` rows one ``payBatch`` transaction settles (1: every payment alone).
    #: 50 fills a Sei block (10 M gas) with two batches: ~100 payments a block, against ~72
    #: single ``pay`` calls; 40 would leave room for only two batches of 40.
    router_batch_max: int = Field(default=50, ge=1, le=90)
    #: A ``payBatch`` of n payments is simulated and sent at ``overhead + n × per_payment`` gas
    #: (measured on anvil: 51 k overhead, 90.5 k a payment to a known merchant). Kept tight, since
    #: a block packs transactions by their limit; a batch that needs more (new merchants:
    #: ~112 k a payment) fails that simulation with ``BatchGasTooLow`` and is estimated instead.
    router_batch_gas_overhead: int = Field(default=60_000, ge=21_000, le=1_000_000)
    router_batch_gas_per_payment: int = Field(default=100_000, ge=50_000, le=1_000_000)
    #: A sponsor whose balance (wei) falls under this logs one alert on ``seiwallet.alerts``.
    low_balance_wei: int = Field(default=10 * 10**18, ge=0)
    #: How often the sponsors' balances are read.
    balance_check_seconds: float = Field(default=10.0, gt=0, le=3600)
    #: Delays after the network or the sponsors failed: doubled from the first to the cap.
    backoff_initial_seconds: float = Field(default=1.0, gt=0, le=3600)
    backoff_max_seconds: float = Field(default=60.0, gt=0, le=86_400)
    #: A transfer fails after this many of its transactions failed on-chain.
    max_attempts: int = Field(default=5, ge=1, le=100)
    #: An authorization with less validity left (seconds) is failed rather than submitted.
    expiry_margin_seconds: int = Field(default=2, ge=0, le=3600)
    #: How long a worker holds the transfers it took from the outbox before another may take them.
    claim_seconds: float = Field(default=30.0, gt=0, le=3600)


class InvitationSettings(BaseModel):
    """Money sent to a phone number or e-mail with no wallet yet: held in the invite escrow.

    The releaser is the account that tells the escrow who proved an alias (``release``) and
    records deposits someone else submitted (``register``); it also pays the gas of reclaims.
    Locally it is the anvil-mnemonic account #10; elsewhere its key is configured here (or in a
    0600 file), read by the worker only and never logged.
    """

    model_config = ConfigDict(extra="forbid")

    #: False: unknown aliases are refused as before (no invitations, no escrow needed).
    enabled: bool = True
    #: How long an invitation waits for its recipient; after it, the money goes back.
    deadline_days: float = Field(default=14, gt=0, le=365)
    #: Distinct aliases without a wallet one user may send to per ``limit_window_hours``.
    #: Each such transfer tells its sender that the alias has not joined: this bounds the leak.
    new_aliases_per_window: int = Field(default=10, ge=1, le=1_000)
    limit_window_hours: float = Field(default=24, gt=0, le=24 * 30)
    #: The escrow on public networks (the local chain's comes from its manifest).
    escrow_address: str | None = None
    #: The releaser's private key (hex), or a file holding it; local: anvil account #10.
    releaser_key: SecretStr | None = None
    releaser_key_file: Path | None = None
    #: How often the worker looks for invitations to register, release or reclaim.
    poll_seconds: float = Field(default=1.0, gt=0, le=3600)
    #: Gas limit at which register/release/reclaim are simulated and sent (they use 64–118 k).
    gas_limit: int = Field(default=200_000, ge=50_000, le=10_000_000)
    #: No release is sent this close to the deadline (it could land after it and revert).
    release_margin_seconds: int = Field(default=60, ge=0, le=86_400)
    #: After a refused or failed action the invitation waits this long before the next try.
    retry_seconds: float = Field(default=30.0, gt=0, le=86_400)


class PaymentSettings(BaseModel):
    """Merchant payments: the operator's fee, invoice expiry, API key limits, webhooks."""

    model_config = ConfigDict(extra="forbid")

    #: The operator's fee on every payment, in basis points of the amount (100 = 1 %); the
    #: merchant receives the amount minus it. A merchant's own rate (set by the operator) wins.
    fee_bps: int = Field(default=100, ge=0, le=1_000)
    #: How long an invoice may be paid: at a counter (a terminal's invoice), by default, at most.
    terminal_expiry_seconds: int = Field(default=120, ge=15, le=86_400)
    default_expiry_seconds: int = Field(default=900, ge=15, le=86_400)
    max_expiry_seconds: int = Field(default=86_400, ge=60, le=7 * 86_400)
    #: A signed payment stays submittable this long after its invoice expired (the relayer's
    #: window; the invoice was still open when the payer approved it).
    settlement_window_seconds: int = Field(default=600, ge=60, le=86_400)
    #: How long a payer has to approve a prepared payment.
    approval_window_seconds: int = Field(default=300, ge=30, le=3_600)
    #: Largest invoice metadata, in bytes of JSON.
    metadata_max_bytes: int = Field(default=4_096, ge=0, le=65_536)
    #: Per API key: sustained requests per second, and the burst above it (token bucket).
    api_key_rate_per_second: float = Field(default=10.0, gt=0, le=10_000)
    api_key_burst: int = Field(default=20, ge=1, le=100_000)
    #: Most one refund may be for a manager / a cashier, in whole settlement tokens.
    manager_refund_limit: Decimal = Field(default=Decimal(500), ge=0)
    cashier_refund_limit: Decimal = Field(default=Decimal(20), ge=0)
    #: Webhooks: request timeout, back-off from the first to the largest delay (with jitter), and
    #: how long a delivery is retried before it is given up.
    webhook_timeout_seconds: float = Field(default=10.0, gt=0, le=60)
    webhook_backoff_initial_seconds: float = Field(default=10.0, gt=0, le=3_600)
    webhook_backoff_max_seconds: float = Field(default=6 * 3_600, gt=0, le=86_400)
    webhook_give_up_seconds: float = Field(default=3 * 86_400, gt=0, le=30 * 86_400)
    #: Plain-http endpoints (and private addresses) are allowed on the local profile only,
    #: unless this says so.
    webhook_allow_http: bool = False
    #: How often the worker's payment tasks (expiry, webhook sending) look for work.
    poll_seconds: float = Field(default=0.5, gt=0, le=60)
    #: How often an API process on SQLite reads new payment events for its live streams.
    event_poll_seconds: float = Field(default=0.025, gt=0, le=5)


class DepositSettings(BaseModel):
    """Outside wallets paying invoices by a plain transfer to a per-invoice deposit address.

    The worker's sweeper calls ``InvoiceDeposits.sweep`` for deposit boxes holding money, from an
    account of its own (gas only; it never holds funds): locally the anvil-mnemonic account #11,
    elsewhere a key configured here (or in a 0600 file), read by the worker only, never logged.
    """

    model_config = ConfigDict(extra="forbid")

    #: False: invoices get no deposit address (only the wallet's router payment).
    enabled: bool = True
    #: The InvoiceDeposits contract on public networks (the local chain's is in its manifest).
    contract_address: str | None = None
    #: The sweeper's private key (hex), or a file holding it; local: anvil account #11.
    sweeper_key: SecretStr | None = None
    sweeper_key_file: Path | None = None
    #: How often the sweeper looks for boxes to sweep.
    poll_seconds: float = Field(default=1.0, gt=0, le=3600)
    #: Gas limit at which sweeps are simulated and sent (they use ~95–150 k).
    gas_limit: int = Field(default=300_000, ge=100_000, le=10_000_000)
    #: An under-payment is swept this long after its invoice expired (the payer may still add
    #: the rest until then, and the fee is taken from the sweep that completes the amount).
    partial_sweep_delay_seconds: int = Field(default=600, ge=0, le=30 * 86_400)
    #: After a refused or failed sweep the box waits this long before the next try.
    retry_seconds: float = Field(default=30.0, gt=0, le=86_400)


class Settings(BaseSettings):
    """Everything a seiwallet process is configured with."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_nested_delimiter="__",
        extra="forbid",
        validate_default=True,
    )

    profile: ProfileName = "local"
    #: JSON-RPC endpoint; defaults to the profile's.
    rpc_url: str | None = None
    #: SQLAlchemy URL; defaults to a SQLite file in ``data_dir``.
    database_url: str | None = None
    #: Where local state lives: the SQLite file, the chain's state and deployment manifests.
    data_dir: Path = Path(".seiwallet")
    #: Token addresses by symbol, added to (or overriding) the profile's.
    tokens: dict[str, str] = Field(default_factory=dict)
    #: The PaymentRouter on public networks (the local chain's comes from its manifest).
    router_address: str | None = None
    #: First block the follower reads on a new database (default: the deployment block, or
    #: the current head on a public network).
    follower_start_block: int | None = Field(default=None, ge=0)
    #: How often the follower asks for a new block when it has caught up. A counter's "paid"
    #: waits for it: at 400 ms blocks, 0.05 s adds ~25 ms on average where 0.2 s added ~100 ms,
    #: for two cheap calls (block number, checkpoint's hash) 20 times a second.
    follower_poll_seconds: float = Field(default=0.05, gt=0, le=60)
    #: Override the profile's confirmation depth (e.g. for a chain without instant finality).
    confirmations: int | None = Field(default=None, ge=1, le=1000)
    #: Private keys (hex) of the accounts that pay gas for users. Local: anvil's dev accounts.
    sponsor_keys: list[SecretStr] = Field(default_factory=list)
    rpc_timeout: float = Field(default=10.0, gt=0, le=300)
    local_chain: LocalChainSettings = Field(default_factory=LocalChainSettings)
    signer: SignerSettings = Field(default_factory=SignerSettings)
    web: WebSettings = Field(default_factory=WebSettings)
    relayer: RelayerSettings = Field(default_factory=RelayerSettings)
    compliance: ComplianceSettings = Field(default_factory=ComplianceSettings)
    payments: PaymentSettings = Field(default_factory=PaymentSettings)
    invitations: InvitationSettings = Field(default_factory=InvitationSettings)
    deposits: DepositSettings = Field(default_factory=DepositSettings)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [init_settings, _EnvSource(settings_cls)]
        config_file = os.environ.get(f"{ENV_PREFIX}CONFIG")
        if config_file:
            sources.append(_toml_source(settings_cls, Path(config_file)))
        return tuple(sources)

    @field_validator("rpc_url")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("http://", "https://")):
            raise ValueError("must be an http:// or https:// URL of a JSON-RPC endpoint")
        return value

    @property
    def network(self) -> NetworkProfile:
        """The network profile these settings select."""
        return PROFILES[self.profile]

    @property
    def effective_rpc_url(self) -> str:
        """The JSON-RPC endpoint: the configured one, else the local chain's, else the profile's."""
        if self.rpc_url:
            return self.rpc_url
        if self.network.is_local:
            return f"http://{self.local_chain.host}:{self.local_chain.port}"
        url = self.network.default_rpc_url
        if url is None:  # pragma: no cover - every profile ships a default today
            raise ConfigError(f"{ENV_PREFIX}RPC_URL", "no RPC URL configured for this profile")
        return url

    @property
    def effective_database_url(self) -> str:
        """The database to use: the configured one, else a SQLite file in ``data_dir``."""
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / f'{self.profile}.sqlite3').resolve()}"

    @property
    def effective_confirmations(self) -> int:
        return self.confirmations or self.network.confirmations

    @property
    def deployment_manifest_path(self) -> Path:
        """The manifest ``seiwallet chain`` writes and every other process reads."""
        return self.data_dir / "deployments" / f"{self.profile}.json"

    @property
    def signer_dir(self) -> Path:
        """Where the signer keeps its files by default (its database, master key, socket)."""
        return self.data_dir / "signer"

    @property
    def signer_socket(self) -> Path:
        return self.signer.socket or self.signer_dir / "signer.sock"

    @property
    def signer_database_url(self) -> str:
        if self.signer.database_url:
            return self.signer.database_url
        return f"sqlite:///{(self.signer_dir / 'signer.sqlite3').resolve()}"

    @property
    def signer_master_key_file(self) -> Path:
        return self.signer.master_key_file or self.signer_dir / "master.key"

    @property
    def web_dir(self) -> Path:
        """Where the web app keeps its files (its CSRF secret)."""
        return self.data_dir / "web"

    def token_addresses(self) -> dict[str, str]:
        """Configured token addresses by symbol (profile defaults, then settings)."""
        return {**self.network.tokens, **self.tokens}


class _EnvSource(EnvSettingsSource):
    """The environment, with a variable that is not the JSON its setting needs a ConfigError."""

    def prepare_field_value(
        self, field_name: str, field: FieldInfo, value: Any, value_is_complex: bool
    ) -> Any:
        try:
            return super().prepare_field_value(field_name, field, value, value_is_complex)
        except ValueError as exc:
            # The cause says where the JSON breaks; the value itself is not repeated, as it may
            # hold sponsor keys.
            raise ConfigError(
                f"{ENV_PREFIX}{field_name.upper()}", f"must be JSON (a list or an object): {exc}"
            ) from None


def _toml_source(settings_cls: type[BaseSettings], path: Path) -> TomlConfigSettingsSource:
    """The TOML file ``SEIWALLET_CONFIG`` names: it must exist, parse and name known settings."""
    setting = f"{ENV_PREFIX}CONFIG"
    # pydantic-settings skips a missing file silently; a typo in the path must not go unnoticed.
    if not path.is_file():
        raise ConfigError(setting, f"no such file: {path}")
    try:
        source = TomlConfigSettingsSource(settings_cls, toml_file=path)
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(setting, f"cannot read {path}: {exc}") from None
    unknown = _unknown_key(source.toml_data, settings_cls)
    if unknown:
        key, model = unknown
        known = ", ".join(model.model_fields)
        raise ConfigError(setting, f"unknown setting {key!r} in {path} (known: {known})")
    return source


def _unknown_key(
    data: Mapping[str, Any], model: type[BaseModel], prefix: str = ""
) -> tuple[str, type[BaseModel]] | None:
    """The first dotted key of ``data`` that no field of ``model`` (or a nested model) has."""
    for key, value in data.items():
        info = model.model_fields.get(key)
        if info is None:
            return f"{prefix}{key}", model
        nested = info.annotation
        if not (isinstance(nested, type) and issubclass(nested, BaseModel)):
            continue
        if isinstance(value, Mapping) and (found := _unknown_key(value, nested, f"{prefix}{key}.")):
            return found
    return None


def load_settings(**overrides: Any) -> Settings:
    """Read settings, turning pydantic's report into one :class:`ConfigError` naming the setting."""
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        first = exc.errors()[0]
        # A list item's index is no part of a variable's name (SEIWALLET_SPONSOR_KEYS, not …__0).
        names: list[str] = []
        for part in first["loc"]:
            if not isinstance(part, str):
                break
            names.append(part)
        location = "__".join(names) or "settings"
        problem = first["msg"].removeprefix("Value error, ")
        raise ConfigError(f"{ENV_PREFIX}{location.upper()}", problem) from None
