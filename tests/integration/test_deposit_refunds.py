"""Refunds of invoices paid through a deposit address, on anvil and both databases: the customer
pays from an outside wallet, the merchant refunds part of it from the payout wallet by a plain
EIP-3009 transfer that the relayer sends (surviving a crash before its broadcast) and the
follower settles from the token's ``AuthorizationUsed``; the money moves payout wallet → payer.

The signer is a stand-in holding the payout wallet's key (the real signer is tested on its own):
it signs exactly the ``erc3009.transfer`` intent the refund stored.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import pytest
from eth_account import Account
from eth_account.signers.local import LocalAccount
from sqlalchemy import Engine, func, select
from tests.fixtures.chain import ChainKit
from tests.integration.test_deposits import deposits_artifact, deposits_of, outside_wallet, transfer
from tests.integration.test_relayer import SETTINGS, DiesAtBroadcast, ProcessDied

from seiwallet.accounts.models import User, UserStatus
from seiwallet.chain.events import FIAT_TOKEN_EVENTS_ABI, EventDecoder
from seiwallet.chain.follower import Follower
from seiwallet.chain.rpc import RpcClient
from seiwallet.chain.sender import TransactionSender
from seiwallet.chain.tokens import Authorization3009, authorization_typed_data
from seiwallet.compliance.gate import ComplianceGate
from seiwallet.config import DepositSettings, PaymentSettings
from seiwallet.db import session_factory
from seiwallet.payments.deposits import DepositEventHandler, DepositSweeper
from seiwallet.payments.handlers import PaymentEventHandler, reconcile_outbox
from seiwallet.payments.invoices import InvoiceRequest
from seiwallet.payments.merchants import MerchantOwner
from seiwallet.payments.models import Invoice, InvoiceStatus, Refund, RefundStatus
from seiwallet.payments.services import build_payments
from seiwallet.signer.intents import Erc3009Transfer, parse_intent
from seiwallet.transfers.handlers import TransferEventHandler
from seiwallet.transfers.models import Transfer
from seiwallet.transfers.rates import OfflineRates
from seiwallet.transfers.relayer import Relayer
from seiwallet.transfers.services import TokenInfo

pytestmark = pytest.mark.chain
USDC = 10**6


@dataclass
class KeySigner:
    """Signs ``erc3009.transfer`` intents with the payout wallet's key."""

    account: LocalAccount

    async def sign(
        self, wallet_id: str, intent: Mapping[str, Any], approvals: Sequence[Mapping[str, Any]]
    ) -> dict[str, Any]:
        parsed = parse_intent(dict(intent))
        assert isinstance(parsed, Erc3009Transfer)
        terms = Authorization3009(
            from_address=self.account.address,
            to=parsed.to,
            value=parsed.amount_units,
            valid_after=parsed.valid_after,
            valid_before=parsed.valid_before,
            nonce=parsed.nonce,
        )
        typed = authorization_typed_data(parsed.token, terms)
        signed = Account.sign_typed_data(self.account.key, full_message=typed)
        return {"signature": "0x" + bytes(signed.signature).hex()}


class ChainBalances:
    def __init__(self, kit: ChainKit) -> None:
        self.kit = kit

    async def balance(self, token: str, owner: str) -> int:
        return self.kit.balance(owner)


async def test_a_deposit_payment_is_refunded_from_the_payout_wallet_to_the_payer(
    kit: ChainKit, engine: Engine
) -> None:
    sessions = session_factory(engine)
    token, deposits = kit.token_address("USDC"), deposits_of(kit)
    usdc = TokenInfo("USDC", "USD Coin", 6, kit.domain("USDC"))
    merchant_key: LocalAccount = Account.create()
    payments = build_payments(
        sessions,
        KeySigner(merchant_key),  # type: ignore[arg-type]
        ChainBalances(kit),
        {"USDC": usdc},
        ComplianceGate(per_transfer_cap={"USDC": Decimal(10_000)}),
        chain_id=kit.chain_id,
        router=kit.deployment.router,
        settings=PaymentSettings(),
        rates=OfflineRates(),
        allow_http_webhooks=True,
        deposit_contract=deposits,
    )
    owner_id = "0" * 31 + "1"
    with sessions.begin() as db:
        db.add(
            User(
                id=owner_id,
                email="owner@shop.example",
                email_verified=True,
                wallet_id=owner_id,
                wallet_address=merchant_key.address,
                status=UserStatus.ACTIVE,
            )
        )
    merchant = await payments.merchants.become_merchant(
        MerchantOwner(owner_id, owner_id, merchant_key.address),
        name="Lantau Tea Ltd",
        settlement_token="USDC",
    )
    principal = payments.merchants.principal_for_user(owner_id, merchant.id)
    store = payments.merchants.create_store(principal, name="Tea", country="HK", currency="HKD")
    view, _ = await payments.invoices.create(
        principal, store.id, InvoiceRequest(amount="10", currency="USDC")
    )
    invoice_id, box = view["id"], view["deposit"]["address"]

    async with RpcClient(str(kit.w3.provider.endpoint_uri), timeout=10) as client:  # type: ignore[attr-defined]
        follower = Follower(
            client,
            sessions,
            chain_id=kit.chain_id,
            decoder=EventDecoder(
                {
                    token: FIAT_TOKEN_EVENTS_ABI,
                    deposits: [dict(entry) for entry in deposits_artifact().abi],
                }
            ),
            start_block=kit.w3.eth.block_number + 1,
            handlers=[TransferEventHandler(), PaymentEventHandler(), DepositEventHandler()],
        )
        sweeper = DepositSweeper(
            client,
            sessions,
            TransactionSender(
                client, kit.accounts.sweeper, chain_id=kit.chain_id, sessions=sessions
            ),
            chain_id=kit.chain_id,
            contract=deposits,
            settings=DepositSettings(),
        )

        def relayer(rpc: RpcClient) -> Relayer:
            sender = TransactionSender(
                rpc, kit.accounts.sponsors[1], chain_id=kit.chain_id, sessions=sessions
            )
            return Relayer(rpc, sessions, [sender], chain_id=kit.chain_id, settings=SETTINGS)

        async def drive(until: Callable[[], bool], timeout: float = 30.0) -> None:
            deadline = time.monotonic() + timeout
            worker = relayer(client)
            await worker.recover()
            while not until():
                assert time.monotonic() < deadline, "not done in time"
                await worker.submit_once()
                await worker.track_once()
                await follower.poll()
                with sessions.begin() as db:
                    reconcile_outbox(db, chain_id=kit.chain_id)
                await asyncio.sleep(0.05)

        # The customer pays 12 for a 10 invoice from an outside wallet; the box is swept.
        payer = outside_wallet(kit, 20 * USDC)
        transfer(kit, payer, box, 12 * USDC)
        await follower.poll()
        with sessions() as db:
            invoice = db.get(Invoice, invoice_id)
            assert invoice is not None
            assert (invoice.status, invoice.paid_over) == (InvoiceStatus.SETTLED, True)
        for _ in range(3):
            await sweeper.run_once()
        payout_before = kit.balance(merchant_key.address)
        assert payout_before == 12 * USDC - int(view["fee_units"])
        payer_before = kit.balance(payer.address)

        # The excess and 3 more, approved by the payout wallet; the worker dies at broadcast.
        refund, _ = await payments.refunds.create(principal, invoice_id, amount="5")
        assert (refund["method"], refund["payer"]) == ("transfer", payer.address)
        await payments.refunds.approve(principal, refund["id"], [])
        async with DiesAtBroadcast(str(kit.w3.provider.endpoint_uri), timeout=10) as dying:  # type: ignore[attr-defined]
            with pytest.raises(ProcessDied):
                await relayer(dying).submit_once()

        def settled() -> bool:
            with sessions() as db:
                row = db.get(Refund, refund["id"])
                return row is not None and row.status is RefundStatus.SETTLED

        await drive(settled)
        assert kit.balance(payer.address) == payer_before + 5 * USDC
        assert kit.balance(merchant_key.address) == payout_before - 5 * USDC
        with sessions() as db:
            invoice = db.get(Invoice, invoice_id)
            assert invoice is not None
            assert (invoice.status, invoice.refunded_units) == (
                InvoiceStatus.PARTIALLY_REFUNDED,
                5 * USDC,
            )
            assert db.scalar(select(func.count()).select_from(Transfer)) == 1
        assert payments.refunds.refundable(principal, invoice_id) == 7 * USDC
