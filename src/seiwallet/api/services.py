"""The objects one API process works with, built once from settings and passed to the routes.

No module-level singletons: :func:`build_services` makes everything from settings (and what a
test hands in instead: a signer client, an HTTP client, a clock), and the app keeps it on its
state. The API holds no key material: the signer is reached through its client only.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

import httpx
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker
from starlette.applications import Starlette
from starlette.routing import Mount

from seiwallet.accounts.aliases import AliasService
from seiwallet.accounts.devicelogin import DeviceLoginService
from seiwallet.accounts.devidp import DevClient, DevIdentityProvider
from seiwallet.accounts.devidp_app import create_devidp_app
from seiwallet.accounts.notices import DevMailbox, Mailer, Notifier, SmtpMailer
from seiwallet.accounts.oidc import (
    GOOGLE_ISSUER,
    PHONE_SCOPES,
    Clock,
    OidcClient,
    OidcProvider,
)
from seiwallet.accounts.passkeys import PasskeyService
from seiwallet.accounts.recovery import OneTimeCodes, RecoveryService
from seiwallet.accounts.services import SignInService
from seiwallet.accounts.sessions import SessionService
from seiwallet.addresses import parse_evm_address
from seiwallet.api.chain import CachedBalances, load_tokens
from seiwallet.api.devhooks_inbox import DevWebhookInbox, receiver_app
from seiwallet.chain.rpc import RpcClient
from seiwallet.compliance.gate import ComplianceGate, load_sanctions_list
from seiwallet.compliance.kyc import FakeKycProvider, KycProvider
from seiwallet.compliance.onchain import RpcTokenReader
from seiwallet.compliance.services import ComplianceService, build_compliance
from seiwallet.config import Settings
from seiwallet.db import create_engine_for, session_factory
from seiwallet.db.migrations import upgrade
from seiwallet.deployments import contracts_for, open_chain
from seiwallet.errors import ConfigError, SeiwalletError
from seiwallet.payments.bus import EventBus
from seiwallet.payments.services import Payments, build_payments
from seiwallet.payments.webhooks import WebhookSender
from seiwallet.signer.client import SignerClient
from seiwallet.signer.secret import read_or_create_secret
from seiwallet.transfers.invitations import InvitationPolicy
from seiwallet.transfers.rates import OfflineRates
from seiwallet.transfers.services import TransferService

log = logging.getLogger(__name__)

#: The development provider's client id in the web app.
DEV_CLIENT_ID = "seiwallet-web"
DEV_PROVIDER = "dev"


@dataclass(frozen=True)
class ProviderButton:
    """A sign-in choice on the welcome page."""

    name: str
    label: str
    kind: str  # "google" | "phone-maker" | "dev"
    url: str


@dataclass
class Services:
    settings: Settings
    engine: Engine
    db: sessionmaker[Session]
    signer: SignerClient
    http: httpx.AsyncClient
    sign_in: SignInService
    sessions: SessionService
    passkeys: PasskeyService
    recovery: RecoveryService
    aliases: AliasService
    notifier: Notifier
    device_logins: DeviceLoginService
    oidc: dict[str, OidcClient]
    providers: list[ProviderButton]
    mailbox: DevMailbox | None = None
    devidp: DevIdentityProvider | None = None
    devidp_app: Starlette | None = None
    #: The development webhook receiver (``/dev-webhooks``; local only).
    devhooks: DevWebhookInbox | None = None
    owned: list[object] = field(default_factory=list)
    gate: ComplianceGate = field(default_factory=ComplianceGate)
    #: Jurisdictions, limits, travel rule, the operator console (``compliance_service``).
    compliance: ComplianceService | None = None
    #: Set by :meth:`connect_chain` (at start, or on first use if the chain was down then).
    rpc: RpcClient | None = None
    balances: CachedBalances | None = None
    _transfers: TransferService | None = None
    clock: Clock = time.time
    #: Objects made on first use and kept for the process (the faucet's sender).
    extras: dict[str, object] = field(default_factory=dict)
    _payments: Payments | None = None
    _payment_bus: EventBus | None = None
    _webhook_sender: WebhookSender | None = None

    async def connect_chain(self) -> TransferService:
        """Connect to the chain and read the offered tokens; the transfer service on top."""
        if self._transfers is not None:
            return self._transfers
        rpc = await open_chain(self.settings)
        try:
            tokens = await load_tokens(self.settings, rpc)
        except BaseException:
            await rpc.aclose()
            raise
        self.rpc = rpc
        self.owned.append(rpc)
        if isinstance(self.gate.tokens, RpcTokenReader):
            self.gate.tokens.use(rpc)  # blacklist flags read ahead on this loop, coalesced
        self.balances = CachedBalances(rpc)
        self._transfers = TransferService(
            self.db,
            self.signer,
            self.balances,
            tokens,
            self.gate,
            invitations=invitation_policy(self.settings),
            clock=self.clock,
        )
        return self._transfers

    async def connect_payments(self) -> Payments:
        """The payments domain on the connected chain (its tokens and router)."""
        if self._payments is not None:
            return self._payments
        transfers = await self.connect_chain()
        contracts = contracts_for(self.settings)
        router = contracts.router
        if router is None:
            raise ConfigError(
                "SEIWALLET_ROUTER_ADDRESS", "payments need the PaymentRouter's address"
            )
        assert self.balances is not None  # set by connect_chain
        self._payments = build_payments(
            self.db,
            self.signer,
            self.balances,
            transfers.tokens,
            self.gate,
            chain_id=self.settings.network.chain_id,
            router=parse_evm_address(router),
            settings=self.settings.payments,
            rates=OfflineRates(),
            allow_http_webhooks=self.settings.network.is_local,
            # Outside wallets pay to a per-invoice deposit address where the contract exists.
            deposit_contract=contracts.invoice_deposits if self.settings.deposits.enabled else None,
            passkeys=self.passkeys,
            clock=self.clock,
        )
        return self._payments

    def webhook_sender(self) -> WebhookSender:
        """This process's webhook sender, for deliveries the API sends at once (test events)."""
        if self._webhook_sender is None:
            self._webhook_sender = WebhookSender(
                self.db, self.http, self.settings.payments, clock=self.clock
            )
        return self._webhook_sender

    def payment_bus(self) -> EventBus:
        """This process's payment event bus (LISTEN/NOTIFY on PostgreSQL, a poller on SQLite)."""
        if self._payment_bus is None:
            self._payment_bus = EventBus.for_engine(
                self.engine, self.db, poll_seconds=self.settings.payments.event_poll_seconds
            )
        return self._payment_bus

    def use_transfers(self, transfers: TransferService) -> None:
        """Hand in a transfer service built elsewhere (tests)."""
        self._transfers = transfers

    async def aclose(self) -> None:
        if self._payment_bus is not None:
            await self._payment_bus.aclose()
        for thing in self.owned:
            if isinstance(thing, (httpx.AsyncClient, SignerClient, RpcClient)):
                await thing.aclose()
            elif isinstance(thing, Engine):
                thing.dispose()
            elif isinstance(thing, RpcTokenReader):
                thing.close()


def web_secret(settings: Settings) -> bytes:
    """The app's own secret (CSRF tokens, one-time code MACs): configured, or a 0600 file."""
    if settings.web.secret is not None:
        value = settings.web.secret.get_secret_value()
        if len(value) < 32:
            raise ConfigError("SEIWALLET_WEB__SECRET", "must be at least 32 characters")
        return value.encode()
    settings.web_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    return read_or_create_secret(settings.web_dir / "secret", create=True).encode()


def signer_client(settings: Settings) -> SignerClient:
    """The client of the signer these settings name (its secret is read, never created here)."""
    if settings.signer.secret is not None:
        secret = settings.signer.secret.get_secret_value()
    else:
        path = settings.signer_dir / "secret"
        try:
            secret = read_or_create_secret(path, create=False)
        except (OSError, ValueError) as exc:
            raise ConfigError(
                "SEIWALLET_SIGNER__SECRET",
                f"cannot read the signer's secret ({exc}): start `seiwallet signer` first",
            ) from None
    if settings.signer.url:
        return SignerClient(secret=secret, url=settings.signer.url)
    return SignerClient(secret=secret, socket=settings.signer_socket)


def _providers(
    settings: Settings,
    devidp: DevIdentityProvider | None,
    http: httpx.AsyncClient,
    clock: Clock,
) -> tuple[dict[str, OidcClient], list[ProviderButton]]:
    """An OIDC client and a sign-in button per configured provider (and the dev one)."""
    public = settings.web.public_url
    oidc: dict[str, OidcClient] = {}
    providers: list[ProviderButton] = []
    for configured in settings.web.providers:
        redirect = f"{public}/auth/callback/{configured.name}"
        secret_value = (
            configured.client_secret.get_secret_value() if configured.client_secret else None
        )
        if configured.preset == "google":
            provider = OidcProvider(
                configured.name,
                configured.issuer or GOOGLE_ISSUER,
                configured.client_id,
                redirect,
                secret_value,
            )
        else:
            if not configured.issuer:
                raise ConfigError(
                    "SEIWALLET_WEB__PROVIDERS", f"provider {configured.name!r} needs an issuer"
                )
            provider = OidcProvider.generic(
                configured.issuer,
                configured.client_id,
                redirect,
                client_secret=secret_value,
                name=configured.name,
                scopes=PHONE_SCOPES,
            )
        oidc[configured.name] = OidcClient(provider, http, clock=clock)
        providers.append(
            ProviderButton(
                configured.name,
                configured.label,
                "google" if configured.preset == "google" else "phone-maker",
                f"/sign-in/{configured.name}",
            )
        )
    if devidp is not None:
        oidc[DEV_PROVIDER] = OidcClient(
            OidcProvider.generic(
                devidp.issuer,
                DEV_CLIENT_ID,
                f"{public}/auth/callback/{DEV_PROVIDER}",
                name=DEV_PROVIDER,
                scopes=PHONE_SCOPES,
            ),
            http,
            clock=clock,
        )
        providers.append(
            ProviderButton(DEV_PROVIDER, "Development sign-in", "dev", f"/sign-in/{DEV_PROVIDER}")
        )

    return oidc, providers


def _mailer(
    settings: Settings, db: sessionmaker[Session], clock: Clock
) -> tuple[DevMailbox | None, Mailer]:
    """Where codes and notices go: the dev mailbox (local only) or SMTP."""
    mailbox: DevMailbox | None = None
    mailer: Mailer
    if settings.web.mailer == "dev-mailbox":
        if not settings.network.is_local:
            raise ConfigError(
                "SEIWALLET_WEB__MAILER",
                "the development mailbox is for the local profile only: configure smtp",
            )
        mailbox = DevMailbox(db, clock)
        mailer = mailbox
    else:
        mailer = SmtpMailer(
            settings.web.smtp_host,
            settings.web.smtp_port,
            settings.web.smtp_sender,
            username=settings.web.smtp_username,
            password=(
                settings.web.smtp_password.get_secret_value()
                if settings.web.smtp_password
                else None
            ),
        )
    return mailbox, mailer


def build_services(
    settings: Settings,
    *,
    signer: SignerClient | None = None,
    engine: Engine | None = None,
    clock: Clock = time.time,
    migrate: bool = True,
) -> Services:
    owned: list[object] = []
    if engine is None:
        engine = create_engine_for(settings.effective_database_url)
        owned.append(engine)
    if migrate:
        upgrade(engine)
    db = session_factory(engine)
    if signer is None:
        signer = signer_client(settings)
        owned.append(signer)
    secret = web_secret(settings)
    public = settings.web.public_url

    devidp: DevIdentityProvider | None = None
    devidp_app: Starlette | None = None
    devhooks: DevWebhookInbox | None = None
    transport: httpx.AsyncBaseTransport | None = None
    if settings.network.is_local:
        devidp = DevIdentityProvider.from_settings(
            settings,
            issuer=f"{public}/dev-idp",
            clients=[
                DevClient(
                    client_id=DEV_CLIENT_ID,
                    redirect_uris=(f"{public}/auth/callback/{DEV_PROVIDER}",),
                )
            ],
        )
        devidp_app = create_devidp_app(devidp)
        # The app asks its own provider in process: no request to itself over the network.
        devhooks = DevWebhookInbox(db, public_url=public, clock=clock)
        # (The webhook receiver too: a test event sent from this process reaches it.)
        transport = httpx.ASGITransport(
            app=Starlette(
                routes=[
                    Mount("/dev-idp", devidp_app),
                    Mount("/dev-webhooks", receiver_app(devhooks)),
                ]
            )
        )
    http = httpx.AsyncClient(
        timeout=10.0, mounts={public: transport} if transport is not None else None
    )
    owned.append(http)

    oidc, providers = _providers(settings, devidp, http, clock)

    sessions = SessionService(
        db,
        secret,
        web_lifetime=timedelta(days=settings.web.session_days),
        api_lifetime=timedelta(days=settings.web.api_token_days),
        clock=clock,
    )
    mailbox, mailer = _mailer(settings, db, clock)
    notifier = Notifier(db, mailer, clock)
    codes = OneTimeCodes(
        db,
        mailer,
        secret,
        code_ttl=timedelta(minutes=settings.web.otp_ttl_minutes),
        max_attempts=settings.web.otp_max_attempts,
        per_hour=settings.web.otp_per_hour,
        clock=clock,
    )
    passkeys = PasskeyService(
        db,
        signer,
        rp_id=settings.signer.rp_id,
        rp_name="seiwallet",
        origins=settings.signer.origins,
        recovery_timelock=timedelta(hours=settings.signer.recovery_timelock_hours),
        clock=clock,
    )
    if public not in settings.signer.origins:
        raise ConfigError(
            "SEIWALLET_SIGNER__ORIGINS",
            f"the web app's origin {public} must be one of the passkey origins "
            f"{settings.signer.origins}",
        )
    compliance = compliance_service(settings, db, clock=clock)
    if isinstance(compliance.gate.tokens, RpcTokenReader):
        owned.append(compliance.gate.tokens)
    return Services(
        settings=settings,
        engine=engine,
        db=db,
        signer=signer,
        http=http,
        sign_in=SignInService(db, signer, clock),
        sessions=sessions,
        passkeys=passkeys,
        recovery=RecoveryService(codes, sessions, notifier, clock=clock),
        aliases=AliasService(db, codes, notifier, clock=clock),
        notifier=notifier,
        device_logins=DeviceLoginService(db, sessions, passkeys, signer, clock),
        gate=compliance.gate,
        compliance=compliance,
        clock=clock,
        oidc=oidc,
        providers=providers,
        mailbox=mailbox,
        devidp=devidp,
        devidp_app=devidp_app,
        devhooks=devhooks,
        owned=owned,
    )


def invitation_escrow(settings: Settings) -> str | None:
    """The invite escrow to use: the deployment's, else the configured one; ``None`` if off."""
    if not settings.invitations.enabled:
        return None
    found = contracts_for(settings).invite_escrow or settings.invitations.escrow_address
    return parse_evm_address(found) if found else None


def invitation_policy(settings: Settings) -> InvitationPolicy | None:
    """How transfers to aliases without a wallet become invitations (``None``: refused)."""
    escrow = invitation_escrow(settings)
    return InvitationPolicy.from_settings(settings.invitations, escrow) if escrow else None


def mailer_for(settings: Settings, db: sessionmaker[Session], clock: Clock = time.time) -> Mailer:
    """Where messages go for a process other than the API (the worker's invitation notices)."""
    return _mailer(settings, db, clock)[1]


def compliance_service(
    settings: Settings, db: sessionmaker[Session], *, clock: Clock = time.time
) -> ComplianceService:
    """Compliance on this database: the rule files (a malformed one stops the start), the
    gate with limits, travel rule, sanctions lists and the token's blacklist, the KYC provider."""
    config = settings.compliance
    sanctioned: frozenset[str] = frozenset()
    if config.sanctions_list is not None:
        sanctioned = load_sanctions_list(config.sanctions_list)
    default_country = config.default_country or ("HK" if settings.network.is_local else None)
    tokens = None
    if config.issuer_blacklist_check:

        def offered() -> dict[str, tuple[str, int]]:
            try:
                found = contracts_for(settings).tokens
            except SeiwalletError as exc:
                log.warning("compliance: no token addresses for the blacklist check: %s", exc)
                return {}
            # USDC and EURC (FiatToken) have 6 decimals on every network we run.
            return {symbol: (address, 6) for symbol, address in found.items()}

        tokens = RpcTokenReader(settings.effective_rpc_url, offered)
    kyc: KycProvider | None = None
    if config.kyc_provider == "fake-local" or (
        config.kyc_provider == "auto" and settings.network.is_local
    ):
        if not settings.network.is_local:
            raise ConfigError(
                "SEIWALLET_COMPLIANCE__KYC_PROVIDER",
                "the fake identity provider is for the local profile only",
            )
        kyc = FakeKycProvider(profile_is_local=True)
    table = OfflineRates().table()
    return build_compliance(
        db,
        rules_dir=config.rules_dir,
        sanctioned=sanctioned,
        per_transfer_cap=config.per_transfer_cap,
        default_country=default_country,
        valuer=table.value_of_token,
        tokens=tokens,
        kyc=kyc,
        clock=clock,
    )


def compliance_gate(settings: Settings) -> ComplianceGate:
    """The first version's gate (no database): the sanctions file and per-transfer caps."""
    sanctioned: frozenset[str] = frozenset()
    if settings.compliance.sanctions_list is not None:
        sanctioned = load_sanctions_list(settings.compliance.sanctions_list)
    return ComplianceGate(
        sanctioned=sanctioned, per_transfer_cap=settings.compliance.per_transfer_cap
    )


def static_dir() -> Path:
    return Path(__file__).resolve().parent.parent / "web" / "static"
