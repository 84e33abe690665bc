"""Demo data for a freshly deployed local chain: funded demo people and one settled shop payment.

Demo keys are anvil's public development keys (indexes 8 and 9): fine for a local chain, where
nothing has value, and never used on any other profile.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass

from eth_account import Account
from eth_account.signers.local import LocalAccount
from sqlalchemy.orm import Session, sessionmaker

from seiwallet.chain.deploy import ANVIL_MNEMONIC, Deployment, local_accounts
from seiwallet.chain.router import Authorization, Payment, encode_pay, payment_authorization
from seiwallet.chain.rpc import RpcClient
from seiwallet.chain.sender import TransactionSender, TxRequest
from seiwallet.chain.tokens import (
    RECEIVE_WITH_AUTHORIZATION,
    authorization_typed_data,
    encode_mint,
    read_token,
)
from seiwallet.money import TokenAmount, basis_points_fee

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
