"""Signatures from the signer process move real money on Circle's FiatToken on anvil: a gasless
EIP-3009 transfer, and an invoice paid through the PaymentRouter."""

from __future__ import annotations

import os
import time
from typing import Any

import pytest
from eth_account import Account
from tests.fixtures.authenticators import SoftDeviceKey
from tests.fixtures.chain import ChainKit
from tests.fixtures.signer import SignerProcess

from seiwallet.chain.deploy import mint
from seiwallet.chain.router import Authorization, Payment, encode_pay
from seiwallet.chain.tokens import (
    Authorization3009,
    TokenDomain,
    encode_transfer_with_authorization,
)
from seiwallet.signer.client import SignerClient
from seiwallet.signer.intents import intent_digest, parse_intent
from seiwallet.signer.service import approval_subject

pytestmark = pytest.mark.chain


def domain_json(domain: TokenDomain) -> dict[str, Any]:
    return {
        "name": domain.name,
        "version": domain.version,
        "chain_id": str(domain.chain_id),
        "verifying_contract": domain.verifying_contract,
    }


async def signed(
    client: SignerClient, wallet_id: str, device: SoftDeviceKey, intent: dict[str, Any]
) -> dict[str, Any]:
    subject = approval_subject(wallet_id, intent_digest(parse_intent(intent)))
    approval = device.approve(subject, os.urandom(16), int(time.time()) + 120)
    return await client.sign(wallet_id, intent, [approval.to_json()])


async def test_signer_signatures_settle_on_fiat_token(signer: SignerProcess, kit: ChainKit) -> None:
    device = SoftDeviceKey(authenticator_id="phone-chain")
    async with signer.client() as client:
        wallet = await client.create_wallet(
            "chain-wallet",
            {"id": "phone-chain", "kind": "device", "public_key": device.public_key.hex()},
        )
        owner = wallet["address"]
        mint(kit.w3, kit.deployment, "USDC", owner, 10_000_000, accounts=kit.accounts)
        domain = kit.domain("USDC")  # read from the token, never assumed
        now = kit.latest_timestamp()

        # 1. A gasless transfer: the signer signs, a sponsor submits.
        recipient = Account.create().address
        nonce = os.urandom(32)
        transfer = {
            "kind": "erc3009.transfer",
            "version": 1,
            "token": domain_json(domain),
            "to": recipient,
            "amount_units": "2500000",
            "valid_after": str(now - 60),
            "valid_before": str(now + 3600),
            "nonce": "0x" + nonce.hex(),
        }
        result = await signed(client, "chain-wallet", device, transfer)
        terms = Authorization3009(owner, recipient, 2_500_000, now - 60, now + 3600, nonce)
        kit.transact(
            domain.verifying_contract,
            bytes.fromhex(
                encode_transfer_with_authorization(terms, bytes.fromhex(result["signature"][2:]))[
                    2:
                ]
            ),
        )
        assert kit.balance(recipient) == 2_500_000

        # 2. An invoice paid through the router: the nonce the signer signed is the router's.
        merchant = Account.create().address
        invoice_id = os.urandom(32)
        pay = {
            "kind": "router.pay",
            "version": 1,
            "token": domain_json(domain),
            "router": kit.deployment.router,
            "invoice_id": "0x" + invoice_id.hex(),
            "merchant": merchant,
            "amount_units": "4000000",
            "fee_units": "40000",
            "valid_after": str(now - 60),
            "valid_before": str(now + 3600),
        }
        result = await signed(client, "chain-wallet", device, pay)
    payment = Payment(invoice_id, merchant, domain.verifying_contract, 4_000_000, 40_000)
    authorization = Authorization(
        owner, now - 60, now + 3600, bytes.fromhex(result["signature"][2:])
    )
    kit.transact(kit.deployment.router, encode_pay(payment, authorization))
    assert kit.balance(merchant) == 3_960_000
    assert kit.balance(owner) == 10_000_000 - 2_500_000 - 4_000_000
