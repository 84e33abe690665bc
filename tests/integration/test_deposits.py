"""InvoiceDeposits against Circle's FiatToken v2.2 on a local anvil chain, and the platform's side.

Part one is the contract: each test starts from the freshly deployed contracts (``kit`` reverts
the chain afterwards). Payers are new keys holding tokens and some gas, as an outside wallet
would; anyone (a sponsor, a stranger) sweeps. Reverts are checked through the project's one
error-mapping table (``error_from_rpc``). A hostile ERC-20 for the revert and reentrancy cases
is compiled here with the repository's solc-js (it is a test fixture, never shipped).

Part two is the platform: the follower's handler recording each transfer into a box exactly once
and moving the invoice (on SQLite and PostgreSQL), and the sweeper sweeping from its own account.
"""

from __future__ import annotations

import functools
import json
import os
import shutil
import subprocess
import uuid
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from eth_abi.abi import decode as abi_decode
from eth_account import Account
from eth_account.signers.local import LocalAccount
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session, sessionmaker
from tests.fixtures.chain import ChainKit, free_port
from web3.logs import DISCARD
from web3.types import RPCEndpoint, TxReceipt

from seiwallet.accounts.models import User, UserStatus
from seiwallet.chain import errors
from seiwallet.chain.artifacts import load_fiat_token_artifact
from seiwallet.chain.deploy import Deployment, add_invoice_deposits, blacklist, check_deployment
from seiwallet.chain.deposits import (
    NATIVE_COIN,
    box_implementation,
    decode_totals,
    deposit_address,
    deposits_artifact,
    encode_deposit_address,
    encode_get_totals,
    encode_rescue,
    encode_sweep,
    event_topics,
)
from seiwallet.chain.events import FIAT_TOKEN_EVENTS_ABI, EventDecoder
from seiwallet.chain.follower import Follower
from seiwallet.chain.localnet import LocalChain, StartMode, load_deployment
from seiwallet.chain.models import ChainEvent
from seiwallet.chain.router import (
    Authorization,
    Payment,
    encode_pay,
    payment_authorization,
    payment_nonce,
    router_artifact,
)
from seiwallet.chain.rpc import RpcClient
from seiwallet.chain.sender import TransactionSender
from seiwallet.config import DepositSettings, LocalChainSettings, Settings
from seiwallet.db import session_factory
from seiwallet.payments.deposit_models import DepositKind, DepositReceipt, InvoiceDeposit
from seiwallet.payments.deposits import (
    DepositEventHandler,
    DepositSweeper,
    deposit_effect,
    open_deposit,
)
from seiwallet.payments.models import (
    Invoice,
    InvoiceStatus,
    Merchant,
    MerchantStatus,
    PaymentEvent,
    Store,
)

USDC = 10**6  # one USDC in base units
ROOT = Path(__file__).resolve().parents[2]

#: Gas budgets: measured on anvil (Ethereum's gas schedule) plus ~5 % headroom. A regression
#: guard; the measured figures are in docs/architecture.md ("Deposit addresses").
GAS_BUDGETS = {
    "sweep, deploying the box (settles, fee)": 171_000,  # measured 162.8 k
    "sweep of an existing box (settles, fee)": 92_000,  # measured 87.4 k
    "sweep of an existing box (partial, no fee)": 67_500,  # measured 64.0 k
    "rescue of another token": 61_000,  # measured 58.1 k
}


# -- helpers ------------------------------------------------------------------------------------


def deposits_of(kit: ChainKit) -> str:
    address = kit.deployment.invoice_deposits
    assert address is not None, "the local deployment has an invoice deposits contract"
    return address


def rpc(kit: ChainKit, method: str, *params: Any) -> Any:
    response = kit.w3.provider.make_request(RPCEndpoint(method), list(params))
    assert "error" not in response, response
    return response.get("result")


def view(kit: ChainKit, function: str, *args: Any, returns: str) -> Any:
    raw = kit.call(deposits_of(kit), deposits_artifact().encode_call(function, *args))
    value = abi_decode([returns], raw)[0]
    return kit.w3.to_checksum_address(value) if returns == "address" else value


def terms(
    kit: ChainKit,
    amount: int = 10 * USDC,
    fee: int = USDC // 10,
    *,
    merchant: str | None = None,
    token: str | None = None,
) -> Payment:
    return Payment(
        invoice_id=os.urandom(32),
        merchant=merchant or Account.create().address,
        token=token or kit.token_address("USDC"),
        amount_units=amount,
        fee_units=fee,
    )


def address_of(kit: ChainKit, payment: Payment) -> str:
    return deposit_address(
        payment, router=kit.deployment.router, deposits=deposits_of(kit), chain_id=kit.chain_id
    )


def outside_wallet(kit: ChainKit, units: int, symbol: str = "USDC") -> LocalAccount:
    """A wallet of the payer's own: it holds the token and pays its own gas."""
    payer = kit.funded_account(units, symbol)
    rpc(kit, "anvil_setBalance", payer.address, hex(10**18))
    return payer


def transfer(
    kit: ChainKit, payer: LocalAccount, to: str, units: int, symbol: str = "USDC"
) -> TxReceipt:
    """A plain ERC-20 ``transfer`` from the payer's own wallet."""
    data = load_fiat_token_artifact("FiatTokenV2_2").encode_call("transfer", to, units)
    return kit.transact(kit.token_address(symbol), data, sender=payer)


def sweep(kit: ChainKit, payment: Payment, sender: LocalAccount | None = None) -> TxReceipt:
    return kit.transact(deposits_of(kit), encode_sweep(payment), sender=sender)


def events(kit: ChainKit, receipt: TxReceipt, name: str) -> list[dict[str, Any]]:
    contract = kit.w3.eth.contract(
        address=kit.w3.to_checksum_address(deposits_of(kit)), abi=deposits_artifact().web3_abi
    )
    return [
        dict(e["args"]) for e in contract.events[name]().process_receipt(receipt, errors=DISCARD)
    ]


def totals(kit: ChainKit, payment: Payment) -> tuple[int, int]:
    payment_id = payment_nonce(payment, router=kit.deployment.router, chain_id=kit.chain_id)
    got = decode_totals(kit.call(deposits_of(kit), encode_get_totals(payment_id)))
    return got.swept_units, got.fee_taken_units


def fee_collector(kit: ChainKit) -> str:
    return kit.deployment.fee_collector


def box_move(kit: ChainKit, token: str, to: str, units: int) -> bytes:
    """Calldata of a box's ``move`` (the box has no artifact of its own: encoded by hand)."""
    selector = kit.w3.keccak(text="move(address,address,uint256)")[:4]
    return bytes(selector) + kit.w3.codec.encode(
        ["address", "address", "uint256"], [token, to, units]
    )


# -- a hostile token, compiled for the tests only -----------------------------------------------

HOSTILE_TOKEN_SOURCE = """
// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.37;

/// A token that can refuse transfers with a reason, or call anything (reenter) from transfer().
contract HostileToken {
    mapping(address => uint256) public balanceOf;
    string public refusal;
    address public hookTarget;
    bytes public hookData;

    event Transfer(address indexed from, address indexed to, uint256 value);

    function mint(address to, uint256 value) external {
        balanceOf[to] += value;
        emit Transfer(address(0), to, value);
    }

    function refuse(string calldata reason) external { refusal = reason; }

    function hook(address target, bytes calldata data) external {
        hookTarget = target;
        hookData = data;
    }

    function transfer(address to, uint256 value) external returns (bool) {
        if (bytes(refusal).length != 0) revert(refusal);
        if (hookTarget != address(0)) {
            (bool ok, bytes memory reason) = hookTarget.call(hookData);
            if (!ok) assembly { revert(add(reason, 32), mload(reason)) }
        }
        balanceOf[msg.sender] -= value;
        balanceOf[to] += value;
        emit Transfer(msg.sender, to, value);
        return true;
    }
}
"""

_COMPILE = """
const solc = require("solc");
const input = JSON.parse(require("fs").readFileSync(0, "utf8"));
process.stdout.write(solc.compile(JSON.stringify(input)));
"""


@functools.cache
def hostile_token_build() -> tuple[list[dict[str, Any]], bytes]:
    """(ABI, creation code) of the hostile token, compiled with the pinned solc-js."""
    node = shutil.which("node")
    assert node is not None, "node is needed to compile the test token"
    request = {
        "language": "Solidity",
        "sources": {"HostileToken.sol": {"content": HOSTILE_TOKEN_SOURCE}},
        "settings": {
            "evmVersion": "prague",
            "outputSelection": {"*": {"*": ["abi", "evm.bytecode.object"]}},
        },
    }
    result = subprocess.run(
        [node, "-e", _COMPILE],
        input=json.dumps(request),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    output = json.loads(result.stdout)
    problems = [e for e in output.get("errors", []) if e["severity"] == "error"]
    assert not problems, problems
    compiled = output["contracts"]["HostileToken.sol"]["HostileToken"]
    return compiled["abi"], bytes.fromhex(compiled["evm"]["bytecode"]["object"])


class Hostile:
    def __init__(self, kit: ChainKit) -> None:
        abi, code = hostile_token_build()
        self.kit = kit
        self.address = kit.deploy(code)
        self.contract = kit.w3.eth.contract(
            address=kit.w3.to_checksum_address(self.address), abi=abi
        )

    def send(self, function: str, *args: Any) -> TxReceipt:
        data = self.contract.encode_abi(function, list(args))
        return self.kit.transact(self.address, bytes.fromhex(data[2:]))


# -- addresses -------------------------------------------------------------------------------


def test_python_addresses_equal_the_contracts(kit: ChainKit) -> None:
    deposits, router = deposits_of(kit), kit.deployment.router
    assert view(kit, "router", returns="address") == router
    assert view(kit, "boxImplementation", returns="address") == box_implementation(deposits)
    assert view(kit, "PAYMENT_TYPEHASH", returns="bytes32") == kit.w3.keccak(
        text="seiwallet.PaymentRouter.Payment(bytes32 invoiceId,address merchant,address token,"
        "uint256 amount,uint256 fee,address router,uint256 chainId)"
    )
    cases = [
        terms(kit),
        terms(kit, 1, 0),
        terms(kit, 2**256 - 1, 2**256 - 1, token=kit.token_address("EURC")),
        Payment(
            invoice_id=b"\xff" * 32,
            merchant="0x" + "ff" * 20,
            token="0x" + "01" * 20,
            amount_units=12_500_000,
            fee_units=125_000,
        ),
    ]
    for payment in cases:
        on_chain = view(kit, "depositAddress", payment.as_abi(), returns="address")
        assert address_of(kit, payment) == on_chain
        assert (
            kit.call(deposits, encode_deposit_address(payment))[-20:].hex() == on_chain[2:].lower()
        )
        # The salt is the router's payment id, bit for bit.
        router_id = abi_decode(
            ["bytes32"],
            kit.call(router, router_artifact().encode_call("paymentNonce", payment.as_abi())),
        )[0]
        assert view(kit, "paymentId", payment.as_abi(), returns="bytes32") == router_id
        assert payment_nonce(payment, router=router, chain_id=kit.chain_id) == router_id
    # Every term is in the address.
    base = cases[0]
    variants = [
        replace(base, invoice_id=os.urandom(32)),
        replace(base, merchant=Account.create().address),
        replace(base, token=kit.token_address("EURC")),
        replace(base, amount_units=base.amount_units + 1),
        replace(base, fee_units=base.fee_units + 1),
    ]
    addresses = {address_of(kit, p) for p in [base, *variants]}
    assert len(addresses) == 6
    other_chain = deposit_address(base, router=router, deposits=deposits, chain_id=1329)
    assert other_chain not in addresses


def test_the_vectors_hold_on_chain(kit: ChainKit) -> None:
    """``tests/vectors/deposit_addresses.json`` (checked offline by the unit tests) is what the
    local deployment computes: its contract addresses are the local chain's, which are fixed."""
    vectors = json.loads((ROOT / "tests" / "vectors" / "deposit_addresses.json").read_text())
    assert vectors["deposits"] == deposits_of(kit)
    assert vectors["router"] == kit.deployment.router
    assert vectors["chain_id"] == kit.chain_id
    for case in vectors["cases"]:
        payment = Payment(
            invoice_id=bytes.fromhex(case["invoice_id"][2:]),
            merchant=case["merchant"],
            token=case["token"],
            amount_units=int(case["amount_units"]),
            fee_units=int(case["fee_units"]),
        )
        assert view(kit, "depositAddress", payment.as_abi(), returns="address") == case["address"]


# -- paying by a plain transfer ----------------------------------------------------------------


def test_an_exact_payment_is_swept_by_anyone(kit: ChainKit) -> None:
    payment = terms(kit, 10 * USDC, USDC // 10)
    box = address_of(kit, payment)
    payer = outside_wallet(kit, 10 * USDC)
    transfer(kit, payer, box, 10 * USDC)
    assert kit.w3.eth.get_code(kit.w3.to_checksum_address(box)) == b""  # not deployed yet
    fees_before = kit.balance(fee_collector(kit))

    stranger = outside_wallet(kit, 0)
    receipt = sweep(kit, payment, stranger)

    assert kit.balance(payment.merchant) == 10 * USDC - USDC // 10
    assert kit.balance(fee_collector(kit)) - fees_before == USDC // 10
    assert kit.balance(box) == 0
    assert kit.balance(stranger.address) == 0  # the caller gets nothing
    assert kit.w3.eth.get_code(kit.w3.to_checksum_address(box)) != b""
    payment_id = payment_nonce(payment, router=kit.deployment.router, chain_id=kit.chain_id)
    (swept,) = events(kit, receipt, "DepositSwept")
    assert swept == {
        "paymentId": payment_id,
        "invoiceId": payment.invoice_id,
        "merchant": payment.merchant,
        "token": payment.token,
        "value": 10 * USDC,
        "feeTaken": USDC // 10,
    }
    (settled,) = events(kit, receipt, "DepositSettled")
    assert settled["swept"] == 10 * USDC
    assert settled["feeTaken"] == USDC // 10
    assert totals(kit, payment) == (10 * USDC, USDC // 10)
    assert view(kit, "isSettled", payment.as_abi(), returns="bool") is True
    # Nothing left: a second sweep is refused (and our sweeper never sends it).
    again = kit.simulate(deposits_of(kit), encode_sweep(payment))
    assert isinstance(again, errors.NothingToSweep)
    assert set(event_topics()) == {"DepositSwept", "DepositSettled", "DepositRescued"}


def test_partial_then_the_rest_takes_the_fee_once(kit: ChainKit) -> None:
    payment = terms(kit, 10 * USDC, USDC // 2)
    box = address_of(kit, payment)
    payer = outside_wallet(kit, 10 * USDC)
    fees_before = kit.balance(fee_collector(kit))

    transfer(kit, payer, box, 4 * USDC)
    first = sweep(kit, payment)  # early: harmless, all to the merchant, the fee waits
    assert kit.balance(payment.merchant) == 4 * USDC
    assert kit.balance(fee_collector(kit)) == fees_before
    assert events(kit, first, "DepositSettled") == []
    assert totals(kit, payment) == (4 * USDC, 0)
    assert view(kit, "isSettled", payment.as_abi(), returns="bool") is False

    transfer(kit, payer, box, 6 * USDC)
    second = sweep(kit, payment)
    assert kit.balance(payment.merchant) == 10 * USDC - USDC // 2
    assert kit.balance(fee_collector(kit)) - fees_before == USDC // 2
    (settled,) = events(kit, second, "DepositSettled")
    assert (settled["swept"], settled["feeTaken"]) == (10 * USDC, USDC // 2)
    assert totals(kit, payment) == (10 * USDC, USDC // 2)


def test_a_fee_larger_than_the_completing_sweep_is_taken_from_later_ones(kit: ChainKit) -> None:
    """Someone sweeping between two parts can defer the fee, never avoid it: it is owed up to
    ``fee`` from every later sweep (our sweeper waits for the whole amount instead)."""
    payment = terms(kit, 10 * USDC, USDC)
    box = address_of(kit, payment)
    payer = outside_wallet(kit, 20 * USDC)
    fees_before = kit.balance(fee_collector(kit))
    transfer(kit, payer, box, 10 * USDC - USDC // 2)
    sweep(kit, payment)
    transfer(kit, payer, box, USDC // 2)
    sweep(kit, payment)
    assert totals(kit, payment) == (10 * USDC, USDC // 2)
    transfer(kit, payer, box, 2 * USDC)  # paid again later: the rest of the fee comes first
    sweep(kit, payment)
    assert totals(kit, payment) == (12 * USDC, USDC)
    assert kit.balance(fee_collector(kit)) - fees_before == USDC
    assert kit.balance(payment.merchant) == 11 * USDC


def test_over_payment_goes_to_the_merchant_with_one_fee(kit: ChainKit) -> None:
    payment = terms(kit, 10 * USDC, USDC // 10)
    box = address_of(kit, payment)
    transfer(kit, outside_wallet(kit, 13 * USDC), box, 13 * USDC)
    receipt = sweep(kit, payment)
    assert kit.balance(payment.merchant) == 13 * USDC - USDC // 10
    (settled,) = events(kit, receipt, "DepositSettled")
    assert (settled["swept"], settled["feeTaken"]) == (13 * USDC, USDC // 10)


def test_a_late_second_payment_is_swept_to_the_merchant_without_fee(kit: ChainKit) -> None:
    payment = terms(kit, 10 * USDC, USDC // 10)
    box = address_of(kit, payment)
    payer = outside_wallet(kit, 20 * USDC)
    transfer(kit, payer, box, 10 * USDC)
    sweep(kit, payment)
    fees = kit.balance(fee_collector(kit))
    transfer(kit, payer, box, 10 * USDC)  # the same invoice paid twice
    receipt = sweep(kit, payment)
    assert kit.balance(payment.merchant) == 20 * USDC - USDC // 10
    assert kit.balance(fee_collector(kit)) == fees
    assert events(kit, receipt, "DepositSettled") == []  # settled once only
    (swept,) = events(kit, receipt, "DepositSwept")
    assert (swept["value"], swept["feeTaken"]) == (10 * USDC, 0)


def test_terms_the_router_settled_pay_no_second_fee(kit: ChainKit) -> None:
    """The payer paid from the wallet (router) and by transfer: the router took the fee."""
    wallet = kit.funded_account(10 * USDC)
    payment = terms(kit, 10 * USDC, USDC // 10)
    now = kit.latest_timestamp()
    authorization = payment_authorization(
        payment,
        payer=wallet.address,
        router=kit.deployment.router,
        chain_id=kit.chain_id,
        valid_after=0,
        valid_before=now + 3600,
    )
    signature = kit.sign_receive(wallet, authorization)
    kit.transact(
        kit.deployment.router,
        encode_pay(payment, Authorization(wallet.address, 0, now + 3600, signature)),
    )
    fees = kit.balance(fee_collector(kit))
    transfer(kit, outside_wallet(kit, 10 * USDC), address_of(kit, payment), 10 * USDC)
    sweep(kit, payment)
    assert kit.balance(fee_collector(kit)) == fees
    assert kit.balance(payment.merchant) == 20 * USDC - USDC // 10  # refundable: 10 USDC


# -- where money can go ------------------------------------------------------------------------


def test_other_terms_name_another_empty_box(kit: ChainKit) -> None:
    payment = terms(kit, 10 * USDC, USDC // 10)
    transfer(kit, outside_wallet(kit, 10 * USDC), address_of(kit, payment), 10 * USDC)
    thief = Account.create().address
    for other in (
        replace(payment, merchant=thief),
        replace(payment, fee_units=10 * USDC),
        replace(payment, amount_units=USDC),
        replace(payment, invoice_id=os.urandom(32)),
    ):
        error = kit.simulate(deposits_of(kit), encode_sweep(other))
        assert isinstance(error, errors.NothingToSweep), other
    assert kit.balance(address_of(kit, payment)) == 10 * USDC
    # Nor can another token's rescue take the invoice's own token, fee-free.
    error = kit.simulate(deposits_of(kit), encode_rescue(payment, payment.token))
    assert isinstance(error, errors.RescueOfPaymentToken)


def test_only_the_contract_commands_a_box(kit: ChainKit) -> None:
    payment = terms(kit)
    box = address_of(kit, payment)
    transfer(kit, outside_wallet(kit, 10 * USDC), box, 10 * USDC)
    sweep(kit, payment)  # deploys it
    transfer(kit, outside_wallet(kit, 5 * USDC), box, 5 * USDC)
    thief = Account.create().address
    data = box_move(kit, payment.token, thief, 5 * USDC)
    for who in (kit.accounts.sponsors[0].address, kit.accounts.fee_collector.address, thief):
        error = kit.simulate(box, data, who)
        assert isinstance(error, errors.NotDepositsContract), who
    implementation = box_implementation(deposits_of(kit))
    assert isinstance(kit.simulate(implementation, data), errors.NotDepositsContract)
    assert kit.balance(box) == 5 * USDC


def test_the_terms_are_checked(kit: ChainKit) -> None:
    token = kit.token_address("USDC")
    merchant = Account.create().address
    cases: list[tuple[tuple[Any, ...], str]] = [
        ((os.urandom(32), merchant, token, 0, 0), "ZeroAmount()"),
        ((os.urandom(32), merchant, token, 1, 2), "FeeExceedsAmount()"),
        ((os.urandom(32), "0x" + "00" * 20, token, 1, 0), "ZeroAddress()"),
        ((os.urandom(32), merchant, "0x" + "00" * 20, 1, 0), "ZeroAddress()"),
    ]
    for raw, signature in cases:
        error = kit.simulate(deposits_of(kit), deposits_artifact().encode_call("sweep", raw))
        assert error is not None
        assert str(error.data).startswith("0x" + kit.w3.keccak(text=signature)[:4].hex()), raw


def test_another_token_and_the_native_coin_are_rescued_to_the_merchant(kit: ChainKit) -> None:
    payment = terms(kit)
    box = address_of(kit, payment)
    # SEI sent before the box exists (after, the box refuses it), and EURC by mistake.
    rpc(kit, "anvil_setBalance", box, hex(3 * 10**17))
    transfer(kit, outside_wallet(kit, 2 * USDC, "EURC"), box, 2 * USDC, "EURC")
    stranger = outside_wallet(kit, 0)
    receipt = kit.transact(
        deposits_of(kit), encode_rescue(payment, kit.token_address("EURC")), sender=stranger
    )
    assert kit.balance(payment.merchant, "EURC") == 2 * USDC
    (rescued,) = events(kit, receipt, "DepositRescued")
    assert (rescued["token"], rescued["value"]) == (kit.token_address("EURC"), 2 * USDC)
    kit.transact(deposits_of(kit), encode_rescue(payment, NATIVE_COIN), sender=stranger)
    assert kit.w3.eth.get_balance(kit.w3.to_checksum_address(payment.merchant)) == 3 * 10**17
    assert kit.w3.eth.get_balance(kit.w3.to_checksum_address(box)) == 0
    assert totals(kit, payment) == (0, 0)  # the invoice's own accounting is untouched
    empty = kit.simulate(deposits_of(kit), encode_rescue(payment, NATIVE_COIN))
    assert isinstance(empty, errors.NothingToSweep)


# -- tokens that misbehave ---------------------------------------------------------------------


def test_the_tokens_own_reasons_surface(kit: ChainKit) -> None:
    payment = terms(kit)
    box = address_of(kit, payment)
    transfer(kit, outside_wallet(kit, 10 * USDC), box, 10 * USDC)
    blacklist(kit.w3, kit.deployment, "USDC", payment.merchant, accounts=kit.accounts)
    error = kit.simulate(deposits_of(kit), encode_sweep(payment))
    assert isinstance(error, errors.AddressBlacklisted)
    assert kit.balance(box) == 10 * USDC  # nothing moved, nothing counted

    hostile = Hostile(kit)
    other = terms(kit, token=hostile.address)
    hostile.send("mint", address_of(kit, other), 10 * USDC)
    hostile.send("refuse", "HostileToken: not today")
    error = kit.simulate(deposits_of(kit), encode_sweep(other))
    assert isinstance(error, errors.ExecutionReverted)
    assert error.reason == "HostileToken: not today"


def test_a_reentering_token_is_stopped(kit: ChainKit) -> None:
    hostile = Hostile(kit)
    payment = terms(kit, token=hostile.address)
    box = address_of(kit, payment)
    hostile.send("mint", box, 10 * USDC)
    # From inside the box's transfer, sweep again (the totals must not be counted twice) ...
    hostile.send("hook", deposits_of(kit), encode_sweep(payment))
    error = kit.simulate(deposits_of(kit), encode_sweep(payment))
    assert error is not None
    assert error.reason == "ReentrancyGuardReentrantCall"
    # ... or command the box directly (from the token: not the deposits contract).
    thief = Account.create().address
    hostile.send("hook", box, box_move(kit, hostile.address, thief, 10 * USDC))
    error = kit.simulate(deposits_of(kit), encode_sweep(payment))
    assert isinstance(error, errors.NotDepositsContract)
    hostile.send("hook", "0x" + "00" * 20, b"")
    sweep(kit, payment)
    assert totals(kit, payment) == (10 * USDC, USDC // 10)


def test_every_error_and_event_is_known(kit: ChainKit) -> None:
    declared = {
        f"{e['name']}({','.join(i['type'] for i in e['inputs'])})"
        for e in deposits_artifact().abi
        if e["type"] == "error"
    }
    declared.add("NotCreator(address)")  # the box's, raised through the contract
    assert declared <= set(errors.CUSTOM_ERROR_SIGNATURES), declared - set(
        errors.CUSTOM_ERROR_SIGNATURES
    )
    assert event_topics()["DepositSwept"] == kit.w3.keccak(
        text="DepositSwept(bytes32,bytes32,address,address,uint256,uint256)"
    )


# -- the manifest ------------------------------------------------------------------------------


def test_an_older_manifest_reads_and_gets_the_contract_added(kit: ChainKit) -> None:
    current = kit.deployment
    assert Deployment.from_json(current.to_json()) == current
    older = current.to_dict()
    del older["invoice_deposits"], older["invoice_deposits_code_hash"]
    old = Deployment.from_dict(older)
    assert old.invoice_deposits is None
    assert check_deployment(kit.w3, old) == []
    upgraded = add_invoice_deposits(kit.w3, old, kit.accounts)
    assert upgraded.invoice_deposits not in (None, current.invoice_deposits)
    assert check_deployment(kit.w3, upgraded) == []
    broken = replace(upgraded, invoice_deposits_code_hash="0x" + "00" * 32)
    assert check_deployment(kit.w3, broken) != []
    # Bound to another router: its code hash differs, and the check names the router.
    elsewhere = kit.deploy(deposits_artifact().encode_deploy(kit.token_address("USDC")))
    code = bytes(kit.w3.eth.get_code(kit.w3.to_checksum_address(elsewhere)))
    foreign = replace(
        upgraded,
        invoice_deposits=elsewhere,
        invoice_deposits_code_hash="0x" + kit.w3.keccak(code).hex().removeprefix("0x"),
    )
    (problem,) = check_deployment(kit.w3, foreign)
    assert "bound to router" in problem


# -- gas ---------------------------------------------------------------------------------------


def test_gas_stays_within_budget(kit: ChainKit) -> None:
    payer = outside_wallet(kit, 100 * USDC)
    merchant = Account.create().address
    transfer(kit, outside_wallet(kit, 1, "EURC"), merchant, 1, "EURC")  # a known holder
    transfer(kit, payer, merchant, 1)
    measured: dict[str, int] = {}

    payment = terms(kit, 10 * USDC, USDC // 10, merchant=merchant)
    transfer(kit, payer, address_of(kit, payment), 10 * USDC)
    measured["sweep, deploying the box (settles, fee)"] = int(sweep(kit, payment)["gasUsed"])

    partial = terms(kit, 10 * USDC, USDC // 10, merchant=merchant)
    transfer(kit, payer, address_of(kit, partial), 4 * USDC)
    sweep(kit, partial)  # deploys the box
    transfer(kit, payer, address_of(kit, partial), 3 * USDC)
    measured["sweep of an existing box (partial, no fee)"] = int(sweep(kit, partial)["gasUsed"])
    transfer(kit, payer, address_of(kit, partial), 3 * USDC)
    measured["sweep of an existing box (settles, fee)"] = int(sweep(kit, partial)["gasUsed"])

    transfer(kit, outside_wallet(kit, USDC, "EURC"), address_of(kit, partial), USDC, "EURC")
    receipt = kit.transact(deposits_of(kit), encode_rescue(partial, kit.token_address("EURC")))
    measured["rescue of another token"] = int(receipt["gasUsed"])

    print("\nInvoiceDeposits gas (anvil, Ethereum schedule):")
    for label, gas in measured.items():
        print(f"  {label:<45} {gas:>8,}")
    over = {k: v for k, v in measured.items() if v > GAS_BUDGETS[k]}
    assert not over, f"over the gas budget: {over} (all measured: {measured})"


# == the platform: the follower's handler and the sweeper =======================================

CHAIN = 713715


class Shop:
    """A merchant with a store, and invoices made straight in the tables (the payments domain's
    services are not under test here)."""

    def __init__(self, sessions: sessionmaker[Session], *, chain_id: int, router: str) -> None:
        self.sessions = sessions
        self.chain_id = chain_id
        self.router = router
        self.merchant_address = Account.create().address
        owner = uuid.uuid4().hex
        self.merchant_id, self.store_id = uuid.uuid4().hex, uuid.uuid4().hex
        with sessions.begin() as db:
            db.add(
                User(
                    id=owner,
                    email=f"{owner}@shop.example",
                    email_verified=True,
                    wallet_id=owner,
                    wallet_address=self.merchant_address,
                    status=UserStatus.ACTIVE,
                )
            )
            db.flush()
            db.add(
                Merchant(
                    id=self.merchant_id,
                    owner_user_id=owner,
                    name="Lantau Tea Ltd",
                    payout_address=self.merchant_address,
                    settlement_symbol="USDC",
                    status=MerchantStatus.ACTIVE,
                )
            )
            db.flush()
            db.add(
                Store(
                    id=self.store_id,
                    merchant_id=self.merchant_id,
                    name="Lantau Tea House",
                    country="HK",
                    currency="HKD",
                )
            )

    def invoice(
        self,
        token: str,
        contract: str,
        amount: int = 10 * USDC,
        fee: int = USDC // 10,
        *,
        expires_in: timedelta = timedelta(minutes=15),
    ) -> tuple[str, str]:
        """A new invoice with its deposit address: (invoice id, address)."""
        payment = Payment(
            invoice_id=os.urandom(32),
            merchant=self.merchant_address,
            token=token,
            amount_units=amount,
            fee_units=fee,
        )
        invoice_id = "0x" + payment.invoice_id.hex()
        with self.sessions.begin() as db:
            invoice = Invoice(
                id=invoice_id,
                merchant_id=self.merchant_id,
                store_id=self.store_id,
                chain_id=self.chain_id,
                router=self.router,
                token=token,
                symbol="USDC",
                decimals=6,
                merchant_address=self.merchant_address,
                amount_units=amount,
                fee_units=fee,
                fee_bps=100,
                payment_id="0x"
                + payment_nonce(payment, router=self.router, chain_id=self.chain_id).hex(),
                price_amount="10",
                price_currency="USDC",
                rate="1",
                rate_source="test",
                rate_as_of="2026-11-24",
                metadata_json={},
                status=InvoiceStatus.NEW,
                paid_units=0,
                refunded_units=0,
                created_by="user:test",
                expires_at=datetime.now(UTC) + expires_in,
            )
            db.add(invoice)
            db.flush()
            box = open_deposit(db, invoice, contract=contract)
            assert open_deposit(db, invoice, contract=contract) is box  # idempotent
            address = box.address
        return invoice_id, address

    def state(self, invoice_id: str) -> tuple[Invoice, InvoiceDeposit, list[DepositReceipt]]:
        with self.sessions() as db:
            invoice = db.get(Invoice, invoice_id)
            box = db.get(InvoiceDeposit, invoice_id)
            assert invoice is not None
            assert box is not None
            receipts = list(
                db.scalars(
                    select(DepositReceipt)
                    .where(DepositReceipt.invoice_id == invoice_id)
                    .order_by(DepositReceipt.id)
                )
            )
            return invoice, box, receipts

    def events(self, invoice_id: str) -> list[tuple[str, Any]]:
        with self.sessions() as db:
            rows = db.scalars(
                select(PaymentEvent)
                .where(PaymentEvent.invoice_id == invoice_id)
                .order_by(PaymentEvent.id)
            )
            return [(row.type, row.data.get("anomaly")) for row in rows]


TOKEN = "0x" + "12" * 20
CONTRACT = "0x" + "34" * 20
ROUTER = "0x" + "56" * 20


def _transfer_event(
    to: str, value: int, *, payer: str, token: str = TOKEN, at: datetime | None = None
) -> ChainEvent:
    moment = at or datetime.now(UTC)
    return ChainEvent(
        chain_id=CHAIN,
        block_number=100,
        block_hash="0x" + uuid.uuid4().hex * 2,
        transaction_hash="0x" + uuid.uuid4().hex * 2,
        log_index=3,
        contract=token,
        name="Transfer",
        key=None,
        args={"from": payer, "to": to, "value": str(value)},
        block_timestamp=int(moment.timestamp()),
    )


def _apply(sessions: sessionmaker[Session], event: ChainEvent, *, undo: bool = False) -> None:
    handler = DepositEventHandler()
    with sessions.begin() as db:
        if undo:
            handler.revert(db, event)
        else:
            handler.apply(db, event)


def test_the_handler_records_each_deposit_once_and_moves_the_invoice(engine: Engine) -> None:
    sessions = session_factory(engine)
    shop = Shop(sessions, chain_id=CHAIN, router=ROUTER)
    invoice_id, address = shop.invoice(TOKEN, CONTRACT)
    payer = Account.create().address

    # A transfer to someone else is not ours; one to the box is, once however often applied.
    _apply(sessions, _transfer_event(Account.create().address, 10 * USDC, payer=payer))
    partial = _transfer_event(address, 4 * USDC, payer=payer)
    _apply(sessions, partial)
    _apply(sessions, partial)
    invoice, box, receipts = shop.state(invoice_id)
    assert [(r.kind, r.value_units) for r in receipts] == [(DepositKind.PARTIAL, 4 * USDC)]
    assert invoice.status is InvoiceStatus.NEW  # still waiting for the rest
    assert invoice.anomalies == ["paid_partial"]
    assert (box.received_units, invoice.paid_units) == (4 * USDC, 4 * USDC)
    # The sweeper waits for the rest until after the expiry (so the fee is taken whole).
    assert box.sweep_due_at is not None
    assert abs(
        (as_aware(box.sweep_due_at) - as_aware(invoice.expires_at)) - timedelta(minutes=10)
    ) < timedelta(seconds=1)

    rest = _transfer_event(address, 7 * USDC, payer=payer)
    _apply(sessions, rest)
    invoice, box, receipts = shop.state(invoice_id)
    assert invoice.status is InvoiceStatus.SETTLED
    assert invoice.anomalies == ["paid_over"]  # 11 of 10: the partial flag is gone
    assert invoice.tx_hash == rest.transaction_hash
    assert invoice.payer_address == payer
    assert box.received_units == 11 * USDC
    assert box.sweep_due_at is not None
    assert as_aware(box.sweep_due_at) <= datetime.now(UTC)

    late = _transfer_event(
        address, 10 * USDC, payer=payer, at=datetime.now(UTC) + timedelta(hours=1)
    )
    _apply(sessions, late)
    invoice, box, receipts = shop.state(invoice_id)
    assert [r.kind for r in receipts] == [
        DepositKind.PARTIAL,
        DepositKind.SETTLING,
        DepositKind.OVER,
    ]
    assert invoice.status is InvoiceStatus.SETTLED
    assert set(invoice.anomalies) == {"paid_over", "paid_late"}
    assert invoice.paid_units == 21 * USDC
    assert shop.events(invoice_id) == [
        ("invoice.anomaly", "paid_partial"),
        ("invoice.settled", None),
        ("invoice.anomaly", "paid_over"),
    ]

    # A reorganisation takes the late payment, then the settling one, back.
    _apply(sessions, late, undo=True)
    _apply(sessions, rest, undo=True)
    invoice, box, receipts = shop.state(invoice_id)
    assert [r.kind for r in receipts] == [DepositKind.PARTIAL]
    assert invoice.status is InvoiceStatus.NEW
    assert invoice.paid_partial
    assert (box.received_units, invoice.paid_units) == (4 * USDC, 4 * USDC)
    _apply(sessions, rest, undo=True)  # undoing twice changes nothing
    assert shop.state(invoice_id)[1].received_units == 4 * USDC


def test_another_token_is_noted_not_counted(engine: Engine) -> None:
    sessions = session_factory(engine)
    shop = Shop(sessions, chain_id=CHAIN, router=ROUTER)
    invoice_id, address = shop.invoice(TOKEN, CONTRACT)
    other = _transfer_event(address, 5 * USDC, payer=Account.create().address, token=CONTRACT)
    _apply(sessions, other)
    invoice, box, receipts = shop.state(invoice_id)
    assert [r.kind for r in receipts] == [DepositKind.OTHER_TOKEN]
    assert (invoice.status, invoice.paid_units, box.received_units) == (InvoiceStatus.NEW, 0, 0)
    assert box.sweep_due_at is not None  # rescued to the merchant by the sweeper
    _apply(sessions, other, undo=True)
    assert shop.state(invoice_id)[2] == []


def test_the_effect_rule() -> None:
    now = datetime.now(UTC)
    later = now + timedelta(minutes=5)

    def effect(status: InvoiceStatus, before: int, value: int, at: datetime = now) -> Any:
        return deposit_effect(
            status=status,
            amount_units=100,
            received_before_units=before,
            value_units=value,
            expires_at=later,
            paid_at=at,
        )

    partial = effect(InvoiceStatus.NEW, 0, 40)
    assert (partial.kind, partial.status, partial.outstanding_units) == (
        DepositKind.PARTIAL,
        InvoiceStatus.NEW,
        60,
    )
    assert partial.paid_partial
    assert not partial.sweep_now
    exact = effect(InvoiceStatus.NEW, 40, 60)
    assert exact.settles
    assert exact.clears_partial
    assert not exact.paid_over
    assert (exact.excess_units, exact.outstanding_units) == (0, 0)
    over = effect(InvoiceStatus.PROCESSING, 0, 130)
    assert over.settles
    assert over.paid_over
    assert over.excess_units == 30
    expired = effect(InvoiceStatus.EXPIRED, 0, 100)
    assert expired.settles
    assert expired.paid_late
    after = effect(InvoiceStatus.SETTLED, 100, 100, later + timedelta(seconds=1))
    assert (after.kind, after.settles, after.paid_over, after.paid_late) == (
        DepositKind.OVER,
        False,
        True,
        True,
    )
    assert after.excess_units == 100
    refunded = effect(InvoiceStatus.REFUNDED, 0, 5)
    assert refunded.kind is DepositKind.OVER
    assert refunded.status is InvoiceStatus.REFUNDED


def as_aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


@pytest.mark.chain
async def test_follower_and_sweeper_end_to_end(kit: ChainKit, engine: Engine) -> None:
    """A customer pays in two transfers from an outside wallet; the follower matches them to the
    invoice, the sweeper sweeps (once, from its own account), the follower books the sweep."""
    sessions = session_factory(engine)
    deposits, token = deposits_of(kit), kit.token_address("USDC")
    shop = Shop(sessions, chain_id=kit.chain_id, router=kit.deployment.router)
    invoice_id, address = shop.invoice(token, deposits)
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
            handlers=[DepositEventHandler()],
        )
        sweeper = DepositSweeper(
            client,
            sessions,
            TransactionSender(
                client, kit.accounts.sweeper, chain_id=kit.chain_id, sessions=sessions
            ),
            chain_id=kit.chain_id,
            contract=deposits,
            tokens=[token, kit.token_address("EURC")],
            settings=DepositSettings(),
        )
        payer = outside_wallet(kit, 20 * USDC)

        transfer(kit, payer, address, 4 * USDC)
        await follower.poll()
        assert shop.state(invoice_id)[0].status is InvoiceStatus.NEW
        assert (await sweeper.run_once()).sent == 0  # a partial payment waits for the rest

        transfer(kit, payer, address, 6 * USDC)
        await follower.poll()
        await follower.poll()  # nothing new: nothing applied twice
        invoice, box, receipts = shop.state(invoice_id)
        assert invoice.status is InvoiceStatus.SETTLED
        assert [r.value_units for r in receipts] == [4 * USDC, 6 * USDC]
        assert {r.payer for r in receipts} == {payer.address}

        report = await sweeper.run_once()
        assert report.sent == 1
        assert shop.state(invoice_id)[1].sweep_tx_hash is not None
        assert (await sweeper.run_once()).sent == 0  # in flight: not sent twice
        await sweeper.run_once()  # its receipt frees the box (and looks once more)
        await sweeper.run_once()  # empty now: nothing more to do
        await follower.poll()
        invoice, box, _ = shop.state(invoice_id)
        assert (box.swept_units, box.fee_taken_units) == (10 * USDC, USDC // 10)
        assert (box.sweep_tx_hash, box.sweep_due_at) == (None, None)
        assert box.sweep_attempts == 1
        assert kit.balance(shop.merchant_address) == 10 * USDC - USDC // 10
        assert kit.balance(address) == 0

        # Paid again later, plus some EURC by mistake: swept and rescued to the merchant.
        transfer(kit, payer, address, 10 * USDC)
        transfer(kit, outside_wallet(kit, USDC, "EURC"), address, USDC, "EURC")
        await follower.poll()
        assert shop.state(invoice_id)[0].paid_over
        for _ in range(4):
            await sweeper.run_once()
        assert kit.balance(shop.merchant_address) == 20 * USDC - USDC // 10
        assert kit.balance(shop.merchant_address, "EURC") == USDC


@pytest.mark.chain
@pytest.mark.slow
def test_a_resumed_chain_with_an_older_manifest_gets_the_contract(tmp_path: Path) -> None:
    settings = Settings(
        profile="local",
        data_dir=tmp_path,
        sponsor_keys=[],
        local_chain=LocalChainSettings(port=free_port()),
    )
    with LocalChain(settings, automine=True) as first:
        deployment = first.deployment
        assert (
            deployment.invoice_deposits
            == json.loads((ROOT / "tests" / "vectors" / "deposit_addresses.json").read_text())[
                "deposits"
            ]
        )
        sweeper = first.accounts.sweeper.address
        assert first.web3().eth.get_balance(sweeper) > 0  # the local chain pays its gas
    older = json.loads(settings.deployment_manifest_path.read_text())
    del older["invoice_deposits"], older["invoice_deposits_code_hash"]
    settings.deployment_manifest_path.write_text(json.dumps(older))
    with LocalChain(settings, automine=True) as upgraded:
        assert upgraded.report.mode is StartMode.RESUMED
        assert "invoice deposits" in upgraded.report.detail
        assert upgraded.deployment.router == deployment.router
        assert upgraded.deployment.invoice_deposits not in (None, deployment.invoice_deposits)
    assert load_deployment(settings) == upgraded.deployment
