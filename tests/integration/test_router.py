"""The PaymentRouter against Circle's FiatToken v2.2 on a local anvil chain.

Each test starts from the freshly deployed contracts (``kit`` reverts the chain afterwards).
Payers are new keys that hold tokens and no gas; a sponsor account submits every transaction,
as the relayer does. Reverts are checked through the project's one error-mapping table
(``error_from_rpc``), so a test also proves that the typed error a caller would see is right.
"""

from __future__ import annotations

import os
from dataclasses import replace
from typing import Any

import pytest
from eth_abi.abi import decode as abi_decode
from eth_account import Account
from eth_account.signers.local import LocalAccount
from tests.fixtures.chain import ChainKit
from web3.logs import DISCARD

from seiwallet.chain import errors
from seiwallet.chain.artifacts import load_fiat_token_artifact
from seiwallet.chain.deploy import blacklist, mint, pause
from seiwallet.chain.router import (
    Authorization,
    Payment,
    Refund,
    encode_pay,
    encode_pay_batch,
    encode_refund,
    event_topics,
    payment_authorization,
    payment_nonce,
    refund_authorization,
    refund_nonce,
    router_artifact,
)

pytestmark = pytest.mark.chain

USDC = 10**6  # one USDC in base units

#: Gas budgets: measured on anvil (Ethereum's gas schedule) plus ~5 % headroom. A regression
#: guard, because gas per payment is the chain's capacity.
GAS_BUDGETS = {
    "pay to a new merchant": 183_000,  # measured 173.8 k
    "pay to a known merchant": 147_000,  # measured 139.6 k
    "payBatch of 10, per payment": 101_000,  # measured 95.7 k
    "first refund": 139_000,  # measured 131.6 k
    "second refund": 121_000,  # measured 114.5 k
}


def invoice_id() -> bytes:
    return os.urandom(32)


def new_payment(
    kit: ChainKit, merchant: str, amount: int = 5 * USDC, fee: int = 5 * USDC // 100
) -> Payment:
    return Payment(
        invoice_id=invoice_id(),
        merchant=merchant,
        token=kit.token_address("USDC"),
        amount_units=amount,
        fee_units=fee,
    )


def authorize(
    kit: ChainKit,
    payer: LocalAccount,
    payment: Payment,
    *,
    valid_after: int = 0,
    valid_before: int | None = None,
    signer: LocalAccount | None = None,
) -> Authorization:
    """The payer's signed ReceiveWithAuthorization for ``payment``."""
    valid_before = valid_before if valid_before is not None else kit.latest_timestamp() + 3600
    terms = payment_authorization(
        payment,
        payer=payer.address,
        router=kit.deployment.router,
        chain_id=kit.chain_id,
        valid_after=valid_after,
        valid_before=valid_before,
    )
    return Authorization(
        from_address=payer.address,
        valid_after=valid_after,
        valid_before=valid_before,
        signature=kit.sign_receive(signer or payer, terms),
    )


def router_call(kit: ChainKit, function: str, *args: Any) -> bytes:
    return router_artifact().encode_call(function, *args)


def router_view(kit: ChainKit, function: str, *args: Any, returns: str) -> Any:
    raw = kit.call(kit.deployment.router, router_call(kit, function, *args))
    value = abi_decode([returns], raw)[0]
    return kit.w3.to_checksum_address(value) if returns == "address" else value


def events(kit: ChainKit, receipt: Any, name: str) -> list[dict[str, Any]]:
    """Decoded router events of ``name`` in a receipt (token events are skipped)."""
    contract = kit.w3.eth.contract(
        address=kit.w3.to_checksum_address(kit.deployment.router), abi=router_artifact().web3_abi
    )
    return [
        dict(e["args"]) for e in contract.events[name]().process_receipt(receipt, errors=DISCARD)
    ]


@pytest.fixture
def merchant() -> LocalAccount:
    """A merchant's new key: it needs no gas either (the relayer submits refunds)."""
    account: LocalAccount = Account.create()
    return account


# -- the nonce ---------------------------------------------------------------------------------


def test_python_nonces_equal_the_contracts(kit: ChainKit, merchant: LocalAccount) -> None:
    payments = [
        new_payment(kit, merchant.address),
        Payment(
            invoice_id=b"\xff" * 32,
            merchant="0x" + "ff" * 20,
            token=kit.token_address("EURC"),
            amount_units=2**256 - 1,
            fee_units=2**256 - 1,
        ),
        new_payment(kit, merchant.address, amount=1, fee=0),
    ]
    for payment in payments:
        expected = router_view(kit, "paymentNonce", payment.as_abi(), returns="bytes32")
        python = payment_nonce(payment, router=kit.deployment.router, chain_id=kit.chain_id)
        assert python == expected
        refund = Refund(
            payment=payment, payer=merchant.address, refund_id=b"\x01" * 32, amount_units=1
        )
        expected_refund = router_view(kit, "refundNonce", refund.as_abi(), returns="bytes32")
        assert refund_nonce(refund, router=kit.deployment.router, chain_id=kit.chain_id) == (
            expected_refund
        )
    # The nonce binds the router and the chain: the same terms elsewhere are another nonce.
    here = payment_nonce(payments[0], router=kit.deployment.router, chain_id=kit.chain_id)
    other_router = payment_nonce(payments[0], router="0x" + "11" * 20, chain_id=kit.chain_id)
    other_chain = payment_nonce(payments[0], router=kit.deployment.router, chain_id=1329)
    assert len({here, other_router, other_chain}) == 3


# -- paying ------------------------------------------------------------------------------------


def test_pay_settles_and_splits_the_fee(kit: ChainKit, merchant: LocalAccount) -> None:
    payer = kit.funded_account(10 * USDC)
    payment = new_payment(kit, merchant.address, amount=5 * USDC, fee=5 * USDC // 100)
    fee_collector = kit.deployment.fee_collector
    collector_before = kit.balance(fee_collector)

    receipt = kit.transact(
        kit.deployment.router, encode_pay(payment, authorize(kit, payer, payment))
    )

    assert kit.balance(payer.address) == 5 * USDC
    assert kit.balance(merchant.address) == 5 * USDC - 5 * USDC // 100
    assert kit.balance(fee_collector) - collector_before == 5 * USDC // 100
    assert kit.balance(kit.deployment.router) == 0  # the router never keeps money
    (settled,) = events(kit, receipt, "PaymentSettled")
    assert settled == {
        "invoiceId": payment.invoice_id,
        "payer": payer.address,
        "merchant": merchant.address,
        "token": payment.token,
        "amount": payment.amount_units,
        "fee": payment.fee_units,
    }
    payment_id = payment_nonce(payment, router=kit.deployment.router, chain_id=kit.chain_id)
    assert router_view(kit, "payerOf", payment_id, returns="address") == payer.address
    assert router_view(kit, "isSettled", payment.as_abi(), returns="bool") is True


def test_pay_without_fee_pays_the_merchant_everything(
    kit: ChainKit, merchant: LocalAccount
) -> None:
    payer = kit.funded_account(3 * USDC)
    payment = new_payment(kit, merchant.address, amount=3 * USDC, fee=0)
    receipt = kit.transact(
        kit.deployment.router, encode_pay(payment, authorize(kit, payer, payment))
    )
    assert kit.balance(merchant.address) == 3 * USDC
    transfer_topic = kit.w3.keccak(text="Transfer(address,address,uint256)")
    transfers = [log for log in receipt["logs"] if log["topics"][0] == transfer_topic]
    assert len(transfers) == 2  # payer → router → merchant; no zero transfer to the collector


def test_the_same_terms_settle_once(kit: ChainKit, merchant: LocalAccount) -> None:
    payer = kit.funded_account(10 * USDC)
    payment = new_payment(kit, merchant.address)
    authorization = authorize(kit, payer, payment)
    kit.transact(kit.deployment.router, encode_pay(payment, authorization))

    # The same signed payment again: the router refuses before the token is even asked.
    again = kit.simulate(kit.deployment.router, encode_pay(payment, authorization))
    assert isinstance(again, errors.InvoiceAlreadySettled)
    # A second payer signing identical terms is refused too, and keeps the money.
    second = kit.funded_account(10 * USDC)
    other = kit.simulate(
        kit.deployment.router, encode_pay(payment, authorize(kit, second, payment))
    )
    assert isinstance(other, errors.InvoiceAlreadySettled)
    receipt = kit.transact(
        kit.deployment.router,
        encode_pay(payment, authorize(kit, second, payment)),
        gas=300_000,
        expect_success=False,
    )
    assert receipt["status"] == 0
    assert kit.balance(second.address) == 10 * USDC


@pytest.mark.parametrize(
    "change",
    [
        {"merchant": "0x" + "77" * 20},
        {"fee_units": 4 * USDC},
        {"amount_units": 6 * USDC},
        {"invoice_id": b"\x42" * 32},
    ],
    ids=["merchant", "fee", "amount", "invoice"],
)
def test_a_relayer_cannot_change_the_terms(
    kit: ChainKit, merchant: LocalAccount, change: dict[str, Any]
) -> None:
    payer = kit.funded_account(10 * USDC)
    payment = new_payment(kit, merchant.address)
    authorization = authorize(kit, payer, payment)
    tampered = replace(payment, **change)
    error = kit.simulate(kit.deployment.router, encode_pay(tampered, authorization))
    assert isinstance(error, errors.InvalidAuthorizationSignature)


def test_a_relayer_cannot_switch_the_token(kit: ChainKit, merchant: LocalAccount) -> None:
    payer = kit.funded_account(10 * USDC)
    kit.funded_account(10 * USDC, symbol="EURC")
    payment = new_payment(kit, merchant.address)
    authorization = authorize(kit, payer, payment)
    as_eurc = replace(payment, token=kit.token_address("EURC"))
    error = kit.simulate(kit.deployment.router, encode_pay(as_eurc, authorization))
    assert isinstance(error, errors.InvalidAuthorizationSignature)


def test_an_expired_authorization_is_refused(kit: ChainKit, merchant: LocalAccount) -> None:
    payer = kit.funded_account(10 * USDC)
    payment = new_payment(kit, merchant.address)
    expired = authorize(kit, payer, payment, valid_before=kit.latest_timestamp() - 1)
    error = kit.simulate(kit.deployment.router, encode_pay(payment, expired))
    assert isinstance(error, errors.AuthorizationExpired)


def test_a_not_yet_valid_authorization_is_refused(kit: ChainKit, merchant: LocalAccount) -> None:
    payer = kit.funded_account(10 * USDC)
    payment = new_payment(kit, merchant.address)
    early = authorize(kit, payer, payment, valid_after=kit.latest_timestamp() + 3600)
    error = kit.simulate(kit.deployment.router, encode_pay(payment, early))
    assert isinstance(error, errors.AuthorizationNotYetValid)


def test_a_signature_by_another_key_is_refused(kit: ChainKit, merchant: LocalAccount) -> None:
    payer = kit.funded_account(10 * USDC)
    thief = kit.funded_account(0)
    payment = new_payment(kit, merchant.address)
    forged = authorize(kit, payer, payment, signer=thief)
    error = kit.simulate(kit.deployment.router, encode_pay(payment, forged))
    assert isinstance(error, errors.InvalidAuthorizationSignature)


def test_a_blacklisted_payer_cannot_pay(kit: ChainKit, merchant: LocalAccount) -> None:
    payer = kit.funded_account(10 * USDC)
    payment = new_payment(kit, merchant.address)
    authorization = authorize(kit, payer, payment)
    blacklist(kit.w3, kit.deployment, "USDC", payer.address, accounts=kit.accounts)
    error = kit.simulate(kit.deployment.router, encode_pay(payment, authorization))
    assert isinstance(error, errors.AddressBlacklisted)


def test_a_blacklisted_merchant_cannot_be_paid(kit: ChainKit, merchant: LocalAccount) -> None:
    payer = kit.funded_account(10 * USDC)
    payment = new_payment(kit, merchant.address)
    authorization = authorize(kit, payer, payment)
    blacklist(kit.w3, kit.deployment, "USDC", merchant.address, accounts=kit.accounts)
    receipt = kit.transact(
        kit.deployment.router, encode_pay(payment, authorization), gas=300_000, expect_success=False
    )
    # The whole payment reverts: the payer keeps the money and the authorization stays usable.
    assert receipt["status"] == 0
    assert kit.balance(payer.address) == 10 * USDC
    assert router_view(kit, "isSettled", payment.as_abi(), returns="bool") is False


def test_a_paused_token_cannot_pay(kit: ChainKit, merchant: LocalAccount) -> None:
    payer = kit.funded_account(10 * USDC)
    payment = new_payment(kit, merchant.address)
    authorization = authorize(kit, payer, payment)
    pause(kit.w3, kit.deployment, "USDC", accounts=kit.accounts)
    error = kit.simulate(kit.deployment.router, encode_pay(payment, authorization))
    assert isinstance(error, errors.TokenPaused)


def test_the_router_checks_the_terms_itself(kit: ChainKit, merchant: LocalAccount) -> None:
    """What the Python types refuse, the contract refuses too (for callers that bypass them)."""
    payer = kit.funded_account(10 * USDC)
    valid = new_payment(kit, merchant.address)
    auth = authorize(kit, payer, valid).as_abi()
    token = valid.token
    fee_too_high = (invoice_id(), merchant.address, token, 10, 11)
    error = kit.simulate(kit.deployment.router, router_call(kit, "pay", fee_too_high, auth))
    assert isinstance(error, errors.FeeExceedsAmount)
    cases = {
        "ZeroAmount()": (invoice_id(), merchant.address, token, 0, 0),
        "ZeroAddress()": (invoice_id(), "0x" + "00" * 20, token, 10, 1),
    }
    for custom_error, terms in cases.items():
        error = kit.simulate(kit.deployment.router, router_call(kit, "pay", terms, auth))
        assert isinstance(error, errors.ExecutionReverted)
        assert error.data == "0x" + _selector(kit, custom_error)


def _smart_account(kit: ChainKit, owner: LocalAccount, amount_units: int) -> str:
    """A minimal ERC-1271 smart account owned by ``owner``, holding ``amount_units`` of USDC."""
    wallet_artifact = load_fiat_token_artifact("MockERC1271Wallet")
    wallet = kit.deploy(wallet_artifact.encode_deploy(owner.address))
    mint(kit.w3, kit.deployment, "USDC", wallet, amount_units, accounts=kit.accounts)
    return wallet


def _authorize_as(
    kit: ChainKit, payer: str, signer: LocalAccount, payment: Payment
) -> Authorization:
    """An authorization from ``payer`` (an address) with a signature made by ``signer``."""
    valid_before = kit.latest_timestamp() + 3600
    terms = payment_authorization(
        payment,
        payer=payer,
        router=kit.deployment.router,
        chain_id=kit.chain_id,
        valid_after=0,
        valid_before=valid_before,
    )
    return Authorization(
        from_address=payer,
        valid_after=0,
        valid_before=valid_before,
        signature=kit.sign_receive(signer, terms),
    )


def test_a_smart_account_pays_with_an_erc1271_signature(
    kit: ChainKit, merchant: LocalAccount
) -> None:
    owner = kit.funded_account(0)
    wallet = _smart_account(kit, owner, 10 * USDC)
    payment = new_payment(kit, merchant.address)
    receipt = kit.transact(
        kit.deployment.router, encode_pay(payment, _authorize_as(kit, wallet, owner, payment))
    )
    (settled,) = events(kit, receipt, "PaymentSettled")
    assert settled["payer"] == wallet
    assert kit.balance(wallet) == 10 * USDC - payment.amount_units
    assert kit.balance(merchant.address) == payment.merchant_units
    # The wallet decides: a signature by anyone but its owner is refused.
    stranger = kit.funded_account(0)
    other = new_payment(kit, merchant.address)
    error = kit.simulate(
        kit.deployment.router, encode_pay(other, _authorize_as(kit, wallet, stranger, other))
    )
    assert isinstance(error, errors.InvalidAuthorizationSignature)


# -- batches -----------------------------------------------------------------------------------


def test_a_batch_settles_the_good_payments_and_reports_the_bad(
    kit: ChainKit, merchant: LocalAccount
) -> None:
    payers = [kit.funded_account(10 * USDC) for _ in range(4)]
    payments = [new_payment(kit, merchant.address) for _ in payers]
    authorizations = [authorize(kit, p, pay) for p, pay in zip(payers, payments, strict=True)]
    # The third payer's authorization has expired: only that payment must fail.
    authorizations[2] = authorize(
        kit, payers[2], payments[2], valid_before=kit.latest_timestamp() - 1
    )
    data = encode_pay_batch(list(zip(payments, authorizations, strict=True)))

    (settled_count,) = abi_decode(["uint256"], kit.call(kit.deployment.router, data))
    assert settled_count == 3
    receipt = kit.transact(kit.deployment.router, data)

    settled = events(kit, receipt, "PaymentSettled")
    assert [e["invoiceId"] for e in settled] == [payments[i].invoice_id for i in (0, 1, 3)]
    (failed,) = events(kit, receipt, "PaymentFailed")
    assert failed["invoiceId"] == payments[2].invoice_id
    assert failed["payer"] == payers[2].address
    assert isinstance(
        errors.revert_error(errors.decode_revert_data("0x" + failed["reason"].hex())),
        errors.AuthorizationExpired,
    )
    assert kit.balance(payers[2].address) == 10 * USDC
    assert kit.balance(merchant.address) == 3 * payments[0].merchant_units
    # The failed payment left nothing behind: its terms are unsettled and can be paid again.
    assert router_view(kit, "isSettled", payments[2].as_abi(), returns="bool") is False
    retry = authorize(kit, payers[2], payments[2])
    kit.transact(kit.deployment.router, encode_pay(payments[2], retry))
    assert kit.balance(payers[2].address) == 10 * USDC - payments[2].amount_units


def test_a_batch_needs_as_many_authorizations_as_payments(
    kit: ChainKit, merchant: LocalAccount
) -> None:
    payer = kit.funded_account(10 * USDC)
    payment = new_payment(kit, merchant.address)
    auth = authorize(kit, payer, payment)
    data = router_call(kit, "payBatch", [payment.as_abi(), payment.as_abi()], [auth.as_abi()])
    error = kit.simulate(kit.deployment.router, data)
    assert error is not None
    assert error.data == "0x" + _selector(kit, "LengthMismatch()")


def test_only_the_router_may_settle_a_batch_entry(kit: ChainKit, merchant: LocalAccount) -> None:
    payer = kit.funded_account(10 * USDC)
    payment = new_payment(kit, merchant.address)
    data = router_call(
        kit, "settleFromBatch", payment.as_abi(), authorize(kit, payer, payment).as_abi()
    )
    error = kit.simulate(kit.deployment.router, data)
    assert error is not None
    assert error.data == "0x" + _selector(kit, "OnlySelf()")


def test_a_starved_batch_reverts_instead_of_failing_payments(
    kit: ChainKit, merchant: LocalAccount
) -> None:
    """With too little gas the batch reverts: it never reports a starved payment as failed."""
    wallet_owner = kit.funded_account(0)
    wallet = _smart_account(kit, wallet_owner, 10 * USDC)
    payer = kit.funded_account(10 * USDC)
    items = []
    for who, signer in ((payer.address, payer), (wallet, wallet_owner)):
        payment = new_payment(kit, merchant.address)
        items.append((payment, _authorize_as(kit, who, signer, payment)))
    data = encode_pay_batch(items)
    estimate = kit.w3.eth.estimate_gas(
        {"from": kit.accounts.sponsors[0].address, "to": kit.deployment.router, "data": data}
    )
    (settled,) = abi_decode(["uint256"], kit.call(kit.deployment.router, data, gas=estimate))
    assert settled == 2  # the estimate settles every payment
    too_low = 0
    for percent in range(40, 100, 3):
        gas = estimate * percent // 100
        try:
            (settled,) = abi_decode(["uint256"], kit.call(kit.deployment.router, data, gas=gas))
        except errors.RpcError as exc:
            # Reverted as a whole (BatchGasTooLow, or out of gas outside the payments).
            too_low += exc.data == "0x" + _selector(kit, "BatchGasTooLow()")
            continue
        assert settled == 2, f"{settled} of 2 settled with {percent} % of the estimate"
    assert too_low > 0


def _selector(kit: ChainKit, signature: str) -> str:
    return kit.w3.keccak(text=signature)[:4].hex().removeprefix("0x")


# -- refunds -----------------------------------------------------------------------------------


def _paid(
    kit: ChainKit, merchant: LocalAccount, amount: int = 5 * USDC
) -> tuple[LocalAccount, Payment]:
    payer = kit.funded_account(amount)
    payment = new_payment(kit, merchant.address, amount=amount, fee=amount // 100)
    kit.transact(kit.deployment.router, encode_pay(payment, authorize(kit, payer, payment)))
    return payer, payment


def _refund_authorization(
    kit: ChainKit, refund: Refund, signer: LocalAccount, from_address: str | None = None
) -> Authorization:
    valid_before = kit.latest_timestamp() + 3600
    terms = refund_authorization(
        refund,
        router=kit.deployment.router,
        chain_id=kit.chain_id,
        valid_after=0,
        valid_before=valid_before,
    )
    if from_address is not None:
        terms = replace(terms, from_address=from_address)
    return Authorization(
        from_address=from_address or refund.payment.merchant,
        valid_after=0,
        valid_before=valid_before,
        signature=kit.sign_receive(signer, terms),
    )


def test_a_merchant_refunds_in_parts_up_to_the_amount_paid(
    kit: ChainKit, merchant: LocalAccount
) -> None:
    payer, payment = _paid(kit, merchant)
    # The merchant received amount - fee; top it up so it can refund the gross amount.
    mint(kit.w3, kit.deployment, "USDC", merchant.address, payment.fee_units, accounts=kit.accounts)

    first = Refund(
        payment=payment, payer=payer.address, refund_id=os.urandom(32), amount_units=2 * USDC
    )
    receipt = kit.transact(
        kit.deployment.router, encode_refund(first, _refund_authorization(kit, first, merchant))
    )
    assert kit.balance(payer.address) == 2 * USDC
    (refunded,) = events(kit, receipt, "PaymentRefunded")
    assert refunded == {
        "invoiceId": payment.invoice_id,
        "refundId": first.refund_id,
        "merchant": merchant.address,
        "payer": payer.address,
        "token": payment.token,
        "amount": 2 * USDC,
    }
    payment_id = payment_nonce(payment, router=kit.deployment.router, chain_id=kit.chain_id)
    assert router_view(kit, "refunded", payment_id, returns="uint256") == 2 * USDC

    # The same refund again: its nonce is used up in the merchant's EIP-3009 nonce space.
    replay = kit.simulate(
        kit.deployment.router, encode_refund(first, _refund_authorization(kit, first, merchant))
    )
    assert isinstance(replay, errors.AuthorizationUsed)

    too_much = Refund(
        payment=payment, payer=payer.address, refund_id=os.urandom(32), amount_units=3 * USDC + 1
    )
    error = kit.simulate(
        kit.deployment.router,
        encode_refund(too_much, _refund_authorization(kit, too_much, merchant)),
    )
    assert isinstance(error, errors.RefundExceedsPayment)

    rest = replace(too_much, refund_id=os.urandom(32), amount_units=3 * USDC)
    kit.transact(
        kit.deployment.router, encode_refund(rest, _refund_authorization(kit, rest, merchant))
    )
    assert kit.balance(payer.address) == payment.amount_units
    assert kit.balance(kit.deployment.router) == 0


def test_only_the_merchant_can_fund_a_refund(kit: ChainKit, merchant: LocalAccount) -> None:
    payer, payment = _paid(kit, merchant)
    stranger = kit.funded_account(10 * USDC)
    refund = Refund(
        payment=payment, payer=payer.address, refund_id=os.urandom(32), amount_units=USDC
    )
    by_stranger = _refund_authorization(kit, refund, stranger, from_address=stranger.address)
    error = kit.simulate(kit.deployment.router, encode_refund(refund, by_stranger))
    assert error is not None
    assert error.data == "0x" + _selector(kit, "PayerMismatch()")
    # Claiming to be the merchant with another key fails at the token's signature check.
    forged = _refund_authorization(kit, refund, stranger)
    assert isinstance(
        kit.simulate(kit.deployment.router, encode_refund(refund, forged)),
        errors.InvalidAuthorizationSignature,
    )


def test_a_refund_goes_only_to_the_recorded_payer(kit: ChainKit, merchant: LocalAccount) -> None:
    payer, payment = _paid(kit, merchant)
    accomplice = kit.funded_account(0)
    refund = Refund(
        payment=payment, payer=accomplice.address, refund_id=os.urandom(32), amount_units=USDC
    )
    error = kit.simulate(
        kit.deployment.router, encode_refund(refund, _refund_authorization(kit, refund, merchant))
    )
    assert isinstance(error, errors.UnknownPayment)
    never_paid = replace(refund, payment=new_payment(kit, merchant.address), payer=payer.address)
    error = kit.simulate(
        kit.deployment.router,
        encode_refund(never_paid, _refund_authorization(kit, never_paid, merchant)),
    )
    assert isinstance(error, errors.UnknownPayment)


# -- administration ----------------------------------------------------------------------------


def test_only_the_owner_changes_the_fee_collector(kit: ChainKit) -> None:
    new_collector = "0x" + "c0" * 20
    data = router_call(kit, "setFeeCollector", new_collector)
    stranger_error = kit.simulate(kit.deployment.router, data)
    assert stranger_error is not None
    assert str(stranger_error.data).startswith(
        "0x" + _selector(kit, "OwnableUnauthorizedAccount(address)")
    )
    receipt = kit.transact(kit.deployment.router, data, sender=kit.accounts.fee_collector)
    (changed,) = events(kit, receipt, "FeeCollectorChanged")
    assert changed["newCollector"] == kit.w3.to_checksum_address(new_collector)
    assert router_view(kit, "feeCollector", returns="address") == kit.w3.to_checksum_address(
        new_collector
    )


def test_event_topics_match_the_abi(kit: ChainKit) -> None:
    topics = event_topics()
    assert topics["PaymentSettled"] == kit.w3.keccak(
        text="PaymentSettled(bytes32,address,address,address,uint256,uint256)"
    )
    assert set(topics) == {
        "PaymentSettled",
        "PaymentFailed",
        "PaymentRefunded",
        "FeeCollectorChanged",
        "OwnershipTransferStarted",
        "OwnershipTransferred",
    }


# -- gas ---------------------------------------------------------------------------------------


def test_gas_per_payment_stays_within_budget(kit: ChainKit, merchant: LocalAccount) -> None:
    payer = kit.funded_account(1_000 * USDC)
    measured: dict[str, float] = {}

    def pay() -> tuple[Payment, int]:
        payment = new_payment(kit, merchant.address)
        receipt = kit.transact(
            kit.deployment.router, encode_pay(payment, authorize(kit, payer, payment))
        )
        return payment, int(receipt["gasUsed"])

    _, measured["pay to a new merchant"] = pay()
    paid, measured["pay to a known merchant"] = pay()

    batch = []
    for batch_payer in [kit.funded_account(10 * USDC) for _ in range(10)]:
        payment = new_payment(kit, merchant.address)
        batch.append((payment, authorize(kit, batch_payer, payment)))
    receipt = kit.transact(kit.deployment.router, encode_pay_batch(batch))
    measured["payBatch of 10, per payment"] = receipt["gasUsed"] / 10

    for label in ("first refund", "second refund"):
        refund = Refund(
            payment=paid, payer=payer.address, refund_id=os.urandom(32), amount_units=USDC
        )
        receipt = kit.transact(
            kit.deployment.router,
            encode_refund(refund, _refund_authorization(kit, refund, merchant)),
        )
        measured[label] = receipt["gasUsed"]

    over = {k: v for k, v in measured.items() if v > GAS_BUDGETS[k]}
    assert not over, f"over the gas budget: {over} (all measured: {measured})"
