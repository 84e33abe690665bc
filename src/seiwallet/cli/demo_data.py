"""Demo data for ``seiwallet up`` on the local chain.

Two parts:

- :func:`seed` (a freshly deployed chain only): anvil development accounts 8 and 9 as a customer
  and a merchant, and one shop payment settled through the router. Demo keys are anvil's public
  development keys: fine for a local chain, where nothing has value, never used elsewhere.
- :func:`seed_shop` (every start, idempotent): a counter ready to take a payment in the wallet
  app. Two test persons of the development identity provider — the owner of the merchant
  "Demo Coffee" and a customer — with their users and wallets made by the same sign-in service
  a browser's first sign-in uses; the merchant's Hong Kong store (prices in HKD) with a counter
  and a webhook endpoint pointing at the local receiver (``/dev-webhooks/demo-coffee``); test
  USDC for the customer and a small float for the shop's refunds. And someone in the EU: a third
  test person with a verified French phone number (so the EU's rules apply: tier 1, the EU's
  tokens and limits) holding test EURC. Everything is found before it is made, so a second start
  on the same data directory creates nothing. Passkeys cannot be made here: each person adds one
  in the browser on their first sign-in.
"""

from __future__ import annotations

import asyncio
import logging
import os
from dataclasses import dataclass
from decimal import Decimal

import phonenumbers
from babel import Locale
from eth_account import Account
from eth_account.signers.local import LocalAccount
from sqlalchemy.orm import Session, sessionmaker

from seiwallet.accounts.devidp import DevIdentityProvider
from seiwallet.accounts.oidc import VerifiedIdentity
from seiwallet.accounts.services import SignedInUser, SignInService
from seiwallet.chain.deploy import ANVIL_MNEMONIC, Deployment, local_accounts
from seiwallet.chain.router import Authorization, Payment, encode_pay, payment_authorization
from seiwallet.chain.rpc import RpcClient
from seiwallet.chain.sender import TransactionSender, TxRequest
from seiwallet.chain.tokens import (
    RECEIVE_WITH_AUTHORIZATION,
    Token,
    authorization_typed_data,
    balance_of,
    encode_mint,
    read_token,
)
from seiwallet.compliance.jurisdictions import RULES_DIR, JurisdictionRules, RuleStore
from seiwallet.compliance.placement import phone_country
from seiwallet.config import Settings
from seiwallet.deployments import contracts_for
from seiwallet.errors import InvalidInput
from seiwallet.money import TokenAmount, basis_points_fee
from seiwallet.payments.merchants import (
    MerchantOwner,
    MerchantService,
    MerchantView,
    StoreView,
    TerminalView,
)
from seiwallet.payments.webhooks import SUBSCRIBABLE, EndpointView, WebhookService
from seiwallet.signer.client import SignerClient

log = logging.getLogger(__name__)

DEMO_BALANCE = "1000"
DEMO_PAYMENT = "4.20"
DEMO_FEE_BPS = 100  # 1 %


@dataclass(frozen=True)
class DemoData:
    """What was seeded, for the banner."""

    customer: str
    merchant: str
    invoice_id: str
    paid: TokenAmount
    fee: TokenAmount


def demo_people() -> tuple[LocalAccount, LocalAccount]:
    """The demo customer and merchant: anvil development accounts 8 and 9."""
    Account.enable_unaudited_hdwallet_features()
    customer = Account.from_mnemonic(ANVIL_MNEMONIC, account_path="m/44'/60'/0'/0/8")
    merchant = Account.from_mnemonic(ANVIL_MNEMONIC, account_path="m/44'/60'/0'/0/9")
    return customer, merchant


async def seed(rpc: RpcClient, deployment: Deployment, sessions: sessionmaker[Session]) -> DemoData:
    """Fund the demo customer with USDC and EURC, then pay one invoice through the router."""
    customer, merchant = demo_people()
    accounts = local_accounts()
    minter = TransactionSender(
        rpc, accounts.token_admin, chain_id=deployment.chain_id, sessions=sessions
    )
    usdc = await read_token(rpc, deployment.token("USDC").address)
    for symbol in ("USDC", "EURC"):
        token = await read_token(rpc, deployment.token(symbol).address)
        amount = TokenAmount.parse(DEMO_BALANCE, token.decimals, token.symbol)
        await minter.send_and_wait(
            TxRequest(
                to=token.address,
                data=encode_mint(customer.address, amount.units),
                purpose=f"demo:mint:{symbol}",
            )
        )

    paid = TokenAmount.parse(DEMO_PAYMENT, usdc.decimals, usdc.symbol)
    fee = TokenAmount.from_units(
        basis_points_fee(paid.units, DEMO_FEE_BPS), usdc.decimals, usdc.symbol
    )
    invoice_id = os.urandom(32)
    payment = Payment(
        invoice_id=invoice_id,
        merchant=merchant.address,
        token=usdc.address,
        amount_units=paid.units,
        fee_units=fee.units,
    )
    latest = await rpc.get_block("latest")
    now = latest.timestamp if latest else 0
    terms = payment_authorization(
        payment,
        payer=customer.address,
        router=deployment.router,
        chain_id=deployment.chain_id,
        valid_after=now - 60,
        valid_before=now + 600,
    )
    signed = Account.sign_typed_data(
        customer.key,
        full_message=authorization_typed_data(usdc.domain, terms, RECEIVE_WITH_AUTHORIZATION),
    )
    relayer = TransactionSender(
        rpc, accounts.sponsors[0], chain_id=deployment.chain_id, sessions=sessions
    )
    await relayer.send_and_wait(
        TxRequest(
            to=deployment.router,
            data="0x"
            + encode_pay(
                payment,
                Authorization(
                    customer.address, terms.valid_after, terms.valid_before, bytes(signed.signature)
                ),
            ).hex(),
            purpose="demo:router.pay",
        )
    )
    log.info("demo data: %s paid %s to %s", customer.address, paid, merchant.address)
    return DemoData(customer.address, merchant.address, "0x" + invoice_id.hex(), paid, fee)


# -- the demo shop: a counter ready in the wallet app (every start, idempotent) -----------------

#: The merchant, its store and counter, and the receiver its webhooks go to.
SHOP_NAME = "Demo Coffee"
STORE_NAME = "Demo Coffee Central"
STORE_ADDRESS = "1 Queen's Road Central, Hong Kong"
COUNTER_NAME = "Counter 1"
SETTLEMENT_TOKEN = "USDC"  # noqa: S105 - a token symbol, not a secret
#: (name, e-mail) of the shop's owner and of the customer, as the sign-in page lists them.
SHOP_OWNER = ("Mei Wong", "mei@demo-coffee.example")
CUSTOMER = ("Alex Chan", "alex@customer.example")
#: The shop's manager: refunds within the manager's limit with a refund passkey of their own,
#: once the owner approved it (``payments.approvers``).
SHOP_MANAGER = ("Sam Lee", "sam@demo-coffee.example")
RECEIVER_NAME = "demo-coffee"
#: invoice.* and refund.*: every event a counter's sale and its refund produce.
WEBHOOK_EVENTS = tuple(sorted(t for t in SUBSCRIBABLE if t.startswith(("invoice.", "refund."))))
#: The customer is topped up to 1,000 USDC whenever a start finds less than 100.
CUSTOMER_USDC = ("1000", "100")
#: The shop's float: a refund is paid whole from the shop's wallet, which received the payment
#: minus the fee, so a full refund needs a little more than the payment brought in.
SHOP_FLOAT_USDC = ("100", "20")
#: Someone in the EU: a verified French mobile number places her under the EU's rules. A made-up
#: number (France's range reserved for fiction is not a valid number, which the sign-in refuses).
EU_CUSTOMER = ("Camille Martin", "camille@customer.example")
EU_CUSTOMER_PHONE = "+33612345678"
#: Her test euros (the EU's rules offer EURC and USDC): topped up to 500 whenever below 50.
EU_CUSTOMER_EURC = ("500", "50")


@dataclass(frozen=True)
class DemoPerson:
    """A test person of the development identity provider, with their user and wallet."""

    name: str
    email: str
    user_id: str
    wallet_address: str
    #: Their verified phone number (E.164), which places them in a jurisdiction; None: none.
    phone: str | None = None


@dataclass(frozen=True)
class DemoShop:
    """What :func:`seed_shop` found or made, for the start-up report and the tests."""

    owner: DemoPerson
    customer: DemoPerson
    manager: DemoPerson
    #: The person in the EU and the rules her phone number places her under.
    eu_customer: DemoPerson
    eu_rules: JurisdictionRules
    merchant_id: str
    store_id: str
    terminal_id: str
    endpoint_id: str
    pos_url: str
    dashboard_url: str
    receiver_url: str
    #: What this start made ("merchant", "store", …); empty when everything was there.
    created: tuple[str, ...]
    #: What this start minted, e.g. ("1000 USDC to the customer",).
    minted: tuple[str, ...]


async def seed_shop(
    config: Settings,
    *,
    sessions: sessionmaker[Session],
    signer: SignerClient,
    rpc: RpcClient,
) -> DemoShop:
    """Make (or find) the demo shop, its people and their test money; idempotent."""
    if not config.network.is_local:
        raise InvalidInput(f"demo data is for the local profile only, not {config.profile}")
    public = config.web.public_url.rstrip("/")
    created: list[str] = []
    # The same provider (and issuer) the web app serves: these persons sign in there.
    idp = DevIdentityProvider.from_settings(config, issuer=f"{public}/dev-idp")
    sign_in = SignInService(sessions, signer)
    owner_user = await _person(idp, sign_in, *SHOP_OWNER, created=created, role="owner")
    customer_user = await _person(idp, sign_in, *CUSTOMER, created=created, role="customer")
    manager_user = await _person(idp, sign_in, *SHOP_MANAGER, created=created, role="manager")
    eu_rules = _rules_for_phone(config, EU_CUSTOMER_PHONE)
    eu_user = await _person(
        idp, sign_in, *EU_CUSTOMER, created=created, role="EU customer", phone=EU_CUSTOMER_PHONE
    )

    tokens = {
        symbol: await read_token(rpc, address)
        for symbol, address in sorted(contracts_for(config).tokens.items())
    }
    merchants = MerchantService(
        sessions,
        settlement_tokens={symbol: token.decimals for symbol, token in tokens.items()},
        fee_bps=config.payments.fee_bps,
        manager_refund_limit=config.payments.manager_refund_limit,
        cashier_refund_limit=config.payments.cashier_refund_limit,
    )
    merchant = await _merchant(merchants, owner_user, created)
    await asyncio.to_thread(_manager, merchants, owner_user.id, merchant.id, created)
    receiver_url = f"{public}/dev-webhooks/{RECEIVER_NAME}"
    store, terminal, endpoint = await asyncio.to_thread(
        _counter,
        merchants,
        WebhookService(sessions, allow_http=True),
        (owner_user.id, merchant.id),
        receiver_url,
        created,
    )

    minted: list[str] = []
    minter = TransactionSender(
        rpc, local_accounts().token_admin, chain_id=config.network.chain_id, sessions=sessions
    )
    for who, user, token, (target, floor) in (
        ("the customer", customer_user, tokens["USDC"], CUSTOMER_USDC),
        ("the shop", owner_user, tokens["USDC"], SHOP_FLOAT_USDC),
        ("the EU customer", eu_user, tokens["EURC"], EU_CUSTOMER_EURC),
    ):
        assert user.wallet_address is not None  # an active user has a wallet
        amount = await _top_up(rpc, minter, token, user.wallet_address, (target, floor))
        if amount is not None:
            minted.append(f"{amount.format()} {amount.symbol} to {who}")
    if created or minted:
        log.info("demo shop: made %s; minted %s", created or "nothing", minted or "nothing")
    return DemoShop(
        owner=_demo_person(owner_user, *SHOP_OWNER),
        customer=_demo_person(customer_user, *CUSTOMER),
        manager=_demo_person(manager_user, *SHOP_MANAGER),
        eu_customer=_demo_person(eu_user, *EU_CUSTOMER),
        eu_rules=eu_rules,
        merchant_id=merchant.id,
        store_id=store.id,
        terminal_id=terminal.id,
        endpoint_id=endpoint.id,
        pos_url=f"{public}/pos/{terminal.id}",
        dashboard_url=f"{public}/merchant/stores/{store.id}",
        receiver_url=receiver_url,
        created=tuple(created),
        minted=tuple(minted),
    )


def _counter(
    merchants: MerchantService,
    webhooks: WebhookService,
    owner_and_merchant: tuple[str, str],
    receiver_url: str,
    created: list[str],
) -> tuple[StoreView, TerminalView, EndpointView]:
    """The shop's store, its counter and its webhook endpoint to the local receiver."""
    principal = merchants.principal_for_user(*owner_and_merchant)
    store = next((s for s in merchants.stores(principal) if s.name == STORE_NAME), None)
    if store is None:
        store = merchants.create_store(
            principal, name=STORE_NAME, country="HK", currency="HKD", address=STORE_ADDRESS
        )
        created.append("store")
    terminal = next((t for t in merchants.terminals(principal, store.id) if not t.revoked), None)
    if terminal is None:
        terminal = merchants.create_terminal(principal, store.id, COUNTER_NAME)
        created.append("counter")
    endpoint = next(
        (
            e
            for e in webhooks.endpoints(principal, store.id)
            if e.url == receiver_url and not e.disabled
        ),
        None,
    )
    if endpoint is None:
        # Its secret is not shown: the local receiver looks it up to check signatures.
        endpoint, _secret = webhooks.create(
            principal,
            store.id,
            url=receiver_url,
            events=WEBHOOK_EVENTS,
            description="Local test receiver (seiwallet up)",
        )
        created.append("webhook endpoint")
    return store, terminal, endpoint


async def _person(
    idp: DevIdentityProvider,
    sign_in: SignInService,
    name: str,
    email: str,
    *,
    created: list[str],
    role: str,
    phone: str | None = None,
) -> SignedInUser:
    """The test person (made once, found by e-mail) and their user with a wallet.

    A ``phone`` is verified, as the development provider's ID token says for its persons.
    """
    person = idp.create_person(name, email, phone)
    result = await sign_in.complete(
        VerifiedIdentity(
            issuer=idp.issuer,
            subject=person.subject,
            email=person.email,
            email_verified=person.email_verified,
            name=person.name,
            phone_number=person.phone_number,
            phone_number_verified=person.phone_number is not None,
        )
    )
    if result.created:
        created.append(role)
    return result.user


async def _merchant(
    merchants: MerchantService, owner: SignedInUser, created: list[str]
) -> MerchantView:
    """The merchant the owner owns, made with their own wallet as the payout wallet."""
    mine = await asyncio.to_thread(merchants.merchants_of, owner.id)
    owned = [m for m in mine if m.role == "owner"]
    if owned:
        return owned[0]
    assert owner.wallet_id is not None
    assert owner.wallet_address is not None
    made = await merchants.become_merchant(
        MerchantOwner(owner.id, owner.wallet_id, owner.wallet_address),
        name=SHOP_NAME,
        settlement_token=SETTLEMENT_TOKEN,
    )
    created.append("merchant")
    return made


def _manager(
    merchants: MerchantService, owner_id: str, merchant_id: str, created: list[str]
) -> None:
    """The manager on the shop's team (all stores), added once."""
    owner = merchants.principal_for_user(owner_id, merchant_id)
    if any(s.email == SHOP_MANAGER[1] for s in merchants.staff(owner)):
        return
    merchants.add_staff(owner, email=SHOP_MANAGER[1], role="manager")
    created.append("manager on the team")


async def _top_up(
    rpc: RpcClient,
    minter: TransactionSender,
    token: Token,
    owner: str,
    target_and_floor: tuple[str, str],
) -> TokenAmount | None:
    """Mint ``owner`` up to the target if they hold less than the floor; what was minted."""
    target, floor = target_and_floor
    held = await balance_of(rpc, token.address, owner)
    if held >= TokenAmount.parse(floor, token.decimals, token.symbol).units:
        return None
    amount = TokenAmount.from_units(
        TokenAmount.parse(target, token.decimals, token.symbol).units - held,
        token.decimals,
        token.symbol,
    )
    await minter.send_and_wait(
        TxRequest(
            to=token.address,
            data=encode_mint(owner, amount.units),
            purpose=f"demo:top-up:{token.symbol}",
        )
    )
    return amount


def _demo_person(user: SignedInUser, name: str, email: str) -> DemoPerson:
    assert user.wallet_address is not None
    phone = user.phone if user.phone_verified else None
    return DemoPerson(name, email, user.id, user.wallet_address, phone)


def _rules_for_phone(config: Settings, phone: str) -> JurisdictionRules:
    """The rules a verified ``phone`` places its owner under (the rule files the app loads)."""
    book = RuleStore(config.compliance.rules_dir or RULES_DIR).book
    country = phone_country(phone)
    rules = book.for_country(country)
    if rules is None:  # pragma: no cover - the shipped rules have the EU
        raise InvalidInput(f"the demo's EU person ({country}) has no rules in the rule files")
    return rules


def eu_customer_lines(shop: DemoShop) -> tuple[str, ...]:
    """How to see the EU's rules as the demo's EU person, from her rule file (rich markup)."""
    person, rules = shop.eu_customer, shop.eu_rules
    country = phone_country(person.phone) or "?"
    phone = "none"
    if person.phone:
        phone = phonenumbers.format_number(
            phonenumbers.parse(person.phone, None), phonenumbers.PhoneNumberFormat.INTERNATIONAL
        )

    def limit(value: Decimal | None) -> str:
        return "no limit" if value is None else f"{value:,} {rules.currency}"

    now, verified = rules.tier(1), rules.tier(2)
    sending = (
        f"can send up to {limit(now.per_transfer)} a transfer"
        if now.can_send
        else "can send nothing before her identity is verified"
    )
    return (
        f"\n[bold]Someone in the {rules.code}[/] — "
        f"{Locale('en').territories.get(country, country)}, under {rules.name} rules "
        f"(limits in {rules.currency}):",
        f"  In another private window, sign in as [bold]{person.name}[/] ({person.email}, "
        f"verified phone {phone}, holds {EU_CUSTOMER_EURC[0]} test EURC). *Limits* shows her "
        f"rules: tokens {', '.join(rules.tokens.allowed)}; at level 1 she {sending}. "
        "*Verify my identity* (a demo check, local only) raises her to level 2: "
        f"{limit(verified.per_transfer)} a transfer, {limit(verified.per_day)} a day, "
        f"{limit(verified.per_month)} a month.",
    )
