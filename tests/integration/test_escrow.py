"""The InviteEscrow against Circle's FiatToken v2.2 on a local anvil chain.

Each test starts from the freshly deployed contracts (``kit`` reverts the chain afterwards, the
clock included, so time travel stays inside a test). Senders are new keys that hold tokens and
no gas; a sponsor submits deposits and reclaims, the local releaser account releases. Reverts
are checked through the project's one error-mapping table (``error_from_rpc``), so a test also
proves that the typed error a caller would see is right.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from typing import Any

import pytest
from eth_abi.abi import decode as abi_decode
from eth_account import Account
from eth_account.signers.local import LocalAccount
from tests.fixtures.chain import ChainKit
from web3.logs import DISCARD
from web3.types import RPCEndpoint, TxReceipt

from seiwallet.chain import errors
from seiwallet.chain.artifacts import load_fiat_token_artifact
from seiwallet.chain.deploy import (
    Deployment,
    add_invite_escrow,
    blacklist,
    check_deployment,
    mint,
)
from seiwallet.chain.escrow import (
    CLAIM_TYPEHASH,
    INVITATION_TYPEHASH,
    Invitation,
    InvitationStatus,
    claim_hash,
    decode_invitation_state,
    deposit_proven,
    encode_deposit,
    encode_get_invitation,
    encode_reclaim,
    encode_register,
    encode_release,
    encode_set_releaser,
    escrow_artifact,
    event_topics,
    invitation_authorization,
    invitation_nonce,
    new_claim_salt,
)
from seiwallet.chain.events import FIAT_TOKEN_EVENTS_ABI, EventDecoder
from seiwallet.chain.rpc import Log
from seiwallet.chain.tokens import (
    EIP712_DOMAIN_FIELDS,
    TRANSFER_WITH_AUTHORIZATION,
    Authorization3009,
    authorization_typed_data,
    encode_transfer_with_authorization,
)
from seiwallet.errors import InvalidInput
from seiwallet.signer.intents import Erc3009Transfer, signing_hash

pytestmark = pytest.mark.chain

USDC = 10**6  # one USDC in base units
DAY = 24 * 3600
ALIAS = "+85291234567"  # normalised (E.164), as the accounts domain stores it

#: Gas budgets: measured on anvil (Ethereum's gas schedule) plus ~5 % headroom. A regression
#: guard; the measured figures are in docs/architecture.md ("Invitations: the escrow").
GAS_BUDGETS = {
    "first deposit of a token": 212_000,  # measured 202.4 k
    "deposit": 177_000,  # measured 168.2 k
    "release to a new address": 88_000,  # measured 83.6 k
    "reclaim": 67_500,  # measured 64.0 k
    "register a front-run deposit": 124_000,  # measured 117.9 k
}


# -- helpers ------------------------------------------------------------------------------------


def escrow_address(kit: ChainKit) -> str:
    address = kit.deployment.invite_escrow
    assert address is not None, "the local deployment has an invite escrow"
    return address


@dataclass(frozen=True)
class Signed:
    """An invitation and the sender's TransferWithAuthorization to the escrow for it."""

    invitation: Invitation
    id: bytes
    authorization: Authorization3009
    signature: bytes

    def deposit(self) -> bytes:
        return encode_deposit(
            self.invitation,
            valid_after=self.authorization.valid_after,
            valid_before=self.authorization.valid_before,
            signature=self.signature,
        )

    def straight_to_the_token(self) -> bytes:
        """The same authorization submitted to the token itself, as a front-runner would."""
        data = encode_transfer_with_authorization(self.authorization, self.signature)
        return bytes.fromhex(data[2:])


def sign_transfer(
    kit: ChainKit, signer: LocalAccount, authorization: Authorization3009, symbol: str = "USDC"
) -> bytes:
    """Sign a ``TransferWithAuthorization`` in the token's domain; 65 bytes ``r‖s‖v``."""
    typed = authorization_typed_data(kit.domain(symbol), authorization, TRANSFER_WITH_AUTHORIZATION)
    return bytes(Account.sign_typed_data(signer.key, full_message=typed).signature)


def invite(
    kit: ChainKit,
    sender: LocalAccount,
    value: int = 5 * USDC,
    *,
    deadline: int | None = None,
    symbol: str = "USDC",
    alias: str = ALIAS,
    signer: LocalAccount | None = None,
    from_address: str | None = None,
) -> Signed:
    """A new invitation from ``sender`` (or the address ``from_address``, signed by ``signer``)."""
    now = kit.latest_timestamp()
    invitation = Invitation(
        token=kit.token_address(symbol),
        sender=from_address or sender.address,
        value_units=value,
        claim_hash=claim_hash(new_claim_salt(), alias),
        deadline=deadline if deadline is not None else now + 7 * DAY,
    )
    authorization = invitation_authorization(
        invitation,
        escrow=escrow_address(kit),
        chain_id=kit.chain_id,
        valid_after=0,
        valid_before=now + 3600,
    )
    return Signed(
        invitation=invitation,
        id=authorization.nonce,
        authorization=authorization,
        signature=sign_transfer(kit, signer or sender, authorization, symbol),
    )


def escrow_view(kit: ChainKit, function: str, *args: Any, returns: str) -> Any:
    raw = kit.call(escrow_address(kit), escrow_artifact().encode_call(function, *args))
    value = abi_decode([returns], raw)[0]
    return kit.w3.to_checksum_address(value) if returns == "address" else value


def state(kit: ChainKit, invitation_id: bytes) -> Any:
    return decode_invitation_state(
        kit.call(escrow_address(kit), encode_get_invitation(invitation_id))
    )


def events(kit: ChainKit, receipt: Any, name: str) -> list[dict[str, Any]]:
    """Decoded escrow events of ``name`` in a receipt (token events are skipped)."""
    contract = kit.w3.eth.contract(
        address=kit.w3.to_checksum_address(escrow_address(kit)), abi=escrow_artifact().web3_abi
    )
    return [
        dict(e["args"]) for e in contract.events[name]().process_receipt(receipt, errors=DISCARD)
    ]


def raw_logs(kit: ChainKit, receipt: TxReceipt) -> list[Log]:
    """A receipt's logs as the platform's RPC client reads them."""
    response = kit.w3.provider.make_request(
        RPCEndpoint("eth_getTransactionReceipt"), [receipt["transactionHash"].to_0x_hex()]
    )
    return [Log.from_rpc(raw) for raw in response["result"]["logs"]]


def decoder(kit: ChainKit) -> EventDecoder:
    return EventDecoder(
        {
            kit.token_address("USDC"): FIAT_TOKEN_EVENTS_ABI,
            escrow_address(kit): [dict(entry) for entry in escrow_artifact().abi],
        }
    )


def releaser(kit: ChainKit) -> LocalAccount:
    return kit.accounts.releaser


def rpc(kit: ChainKit, method: str, *params: Any) -> Any:
    response = kit.w3.provider.make_request(RPCEndpoint(method), list(params))
    assert "error" not in response, response
    return response.get("result")


def travel(kit: ChainKit, seconds: int) -> None:
    """Move the chain's clock forward and mine a block at the new time."""
    rpc(kit, "evm_increaseTime", seconds)
    rpc(kit, "evm_mine")


def next_block_at(kit: ChainKit, timestamp: int) -> None:
    """Make the next mined block carry exactly ``timestamp``."""
    rpc(kit, "evm_setNextBlockTimestamp", timestamp)


def selector(kit: ChainKit, signature: str) -> str:
    return "0x" + kit.w3.keccak(text=signature)[:4].hex().removeprefix("0x")


def deposited(kit: ChainKit, sender: LocalAccount, value: int = 5 * USDC, **kw: Any) -> Signed:
    signed = invite(kit, sender, value, **kw)
    kit.transact(escrow_address(kit), signed.deposit())
    return signed


# -- ids and hashes ------------------------------------------------------------------------------


def test_python_ids_equal_the_contracts(kit: ChainKit) -> None:
    escrow = escrow_address(kit)
    assert escrow_view(kit, "INVITATION_TYPEHASH", returns="bytes32") == INVITATION_TYPEHASH
    assert escrow_view(kit, "CLAIM_TYPEHASH", returns="bytes32") == CLAIM_TYPEHASH
    for salt, alias in [
        (new_claim_salt(), ALIAS),
        (b"\x00" * 32, "alice@example.com"),
        (b"\xff" * 32, "zoë@exämple.org"),  # UTF-8, as the alias is stored
    ]:
        expected = escrow_view(kit, "claimHashOf", salt, alias, returns="bytes32")
        assert claim_hash(salt, alias) == expected
    # The salt is what keeps a phone number from being found by hashing them all.
    assert claim_hash(b"\x01" * 32, ALIAS) != claim_hash(b"\x02" * 32, ALIAS)

    invitations = [
        Invitation(
            token=kit.token_address("USDC"),
            sender=kit.accounts.sponsors[1].address,
            value_units=1,
            claim_hash=claim_hash(new_claim_salt(), ALIAS),
            deadline=1,
        ),
        Invitation(
            token=kit.token_address("EURC"),
            sender="0x" + "ff" * 20,
            value_units=2**96 - 1,
            claim_hash=b"\xff" * 32,
            deadline=2**64 - 1,
        ),
    ]
    for invitation in invitations:
        expected = escrow_view(kit, "invitationId", *invitation.as_abi(), returns="bytes32")
        assert invitation_nonce(invitation, escrow=escrow, chain_id=kit.chain_id) == expected
    # The id binds the escrow and the chain: the same terms elsewhere are another nonce.
    here = invitation_nonce(invitations[0], escrow=escrow, chain_id=kit.chain_id)
    elsewhere = invitation_nonce(invitations[0], escrow="0x" + "11" * 20, chain_id=kit.chain_id)
    other_chain = invitation_nonce(invitations[0], escrow=escrow, chain_id=1329)
    assert len({here, elsewhere, other_chain}) == 3


def test_python_refuses_what_the_escrow_would() -> None:
    token, sender = "0x" + "01" * 20, "0x" + "02" * 20
    good = {
        "token": token,
        "sender": sender,
        "value_units": 1,
        "claim_hash": b"\x01" * 32,
        "deadline": 10,
    }
    Invitation(**good)
    for change in (
        {"value_units": 0},
        {"value_units": 2**96},
        {"claim_hash": bytes(32)},
        {"claim_hash": b"\x01" * 31},
        {"deadline": 2**64},
        {"sender": "0x" + "00" * 20},
        {"token": "not an address"},
    ):
        with pytest.raises(InvalidInput):
            Invitation(**(good | change))
    for alias in ("", " +85291234567", "alice@example.com\n"):
        with pytest.raises(InvalidInput):
            claim_hash(b"\x01" * 32, alias)
    with pytest.raises(InvalidInput):
        encode_release(b"\x01" * 32, "0x" + "00" * 20)


# -- deposit and release ------------------------------------------------------------------------


def test_deposit_then_release_to_a_new_wallet(kit: ChainKit) -> None:
    sender = kit.funded_account(10 * USDC)
    recipient: LocalAccount = Account.create()  # the wallet made at sign-up
    escrow = escrow_address(kit)
    signed = invite(kit, sender, 4 * USDC)

    receipt = kit.transact(escrow, signed.deposit())

    assert kit.balance(sender.address) == 6 * USDC
    assert kit.balance(escrow) == 4 * USDC
    assert escrow_view(kit, "escrowed", signed.invitation.token, returns="uint256") == 4 * USDC
    (created,) = events(kit, receipt, "InvitationCreated")
    assert created == {
        "id": signed.id,
        "from": sender.address,
        "token": signed.invitation.token,
        "value": 4 * USDC,
        "claimHash": signed.invitation.claim_hash,
        "deadline": signed.invitation.deadline,
    }
    recorded = state(kit, signed.id)
    assert recorded.status is InvitationStatus.OPEN
    assert (recorded.token, recorded.sender, recorded.value_units) == (
        signed.invitation.token,
        sender.address,
        4 * USDC,
    )
    assert (recorded.claim_hash, recorded.deadline) == (
        signed.invitation.claim_hash,
        signed.invitation.deadline,
    )
    # The platform's event decoder keys the escrow's events by invitation id.
    decoded = [e for e in decoder(kit).decode_all(raw_logs(kit, receipt)) if e.contract == escrow]
    assert [(e.name, e.key) for e in decoded] == [("InvitationCreated", "0x" + signed.id.hex())]
    assert decoded[0].args["value"] == str(4 * USDC)

    receipt = kit.transact(
        escrow, encode_release(signed.id, recipient.address), sender=releaser(kit)
    )

    assert kit.balance(recipient.address) == 4 * USDC
    assert kit.balance(escrow) == 0
    assert kit.balance(sender.address) == 6 * USDC
    assert escrow_view(kit, "escrowed", signed.invitation.token, returns="uint256") == 0
    (claimed,) = events(kit, receipt, "InvitationClaimed")
    assert claimed == {
        "id": signed.id,
        "to": recipient.address,
        "token": signed.invitation.token,
        "value": 4 * USDC,
    }
    assert state(kit, signed.id).status is InvitationStatus.RELEASED


def test_the_signers_erc3009_transfer_intent_signs_a_deposit(kit: ChainKit) -> None:
    """No new intent kind: the wallet signs an ordinary ``erc3009.transfer`` to the escrow."""
    sender = kit.funded_account(10 * USDC)
    signed = invite(kit, sender, 3 * USDC)
    terms = signed.authorization
    intent = Erc3009Transfer(
        token=kit.domain("USDC"),
        to=terms.to,
        amount_units=terms.value,
        valid_after=terms.valid_after,
        valid_before=terms.valid_before,
        nonce=terms.nonce,
    )
    digest = signing_hash(intent, sender.address)
    assert digest is not None
    signature = bytes(Account.unsafe_sign_hash(digest, sender.key).signature)
    assert signature == signed.signature  # the same bytes eth-account's EIP-712 signing gives
    kit.transact(escrow_address(kit), replace(signed, signature=signature).deposit())
    assert state(kit, signed.id).status is InvitationStatus.OPEN


def test_a_smart_account_can_invite(kit: ChainKit) -> None:
    owner = kit.funded_account(0)
    wallet = kit.deploy(load_fiat_token_artifact("MockERC1271Wallet").encode_deploy(owner.address))
    mint(kit.w3, kit.deployment, "USDC", wallet, 10 * USDC, accounts=kit.accounts)
    signed = invite(kit, owner, 2 * USDC, from_address=wallet)
    kit.transact(escrow_address(kit), signed.deposit())
    assert kit.balance(wallet) == 8 * USDC
    assert state(kit, signed.id).sender == wallet


def test_a_blacklisted_recipient_leaves_the_invitation_open(kit: ChainKit) -> None:
    sender = kit.funded_account(10 * USDC)
    signed = deposited(kit, sender)
    blocked, other = Account.create(), Account.create()
    blacklist(kit.w3, kit.deployment, "USDC", blocked.address, accounts=kit.accounts)
    error = kit.simulate(
        escrow_address(kit),
        encode_release(signed.id, blocked.address),
        releaser(kit).address,
    )
    assert isinstance(error, errors.AddressBlacklisted)
    # Nothing was used up: the platform can still pay the recipient's other address.
    kit.transact(escrow_address(kit), encode_release(signed.id, other.address), releaser(kit))
    assert kit.balance(other.address) == signed.invitation.value_units


# -- reclaim and the deadline -------------------------------------------------------------------


def test_deposit_then_reclaim_after_the_deadline(kit: ChainKit) -> None:
    sender = kit.funded_account(10 * USDC)
    escrow = escrow_address(kit)
    signed = deposited(kit, sender, 7 * USDC, deadline=kit.latest_timestamp() + 2 * DAY)
    assert kit.balance(sender.address) == 3 * USDC

    travel(kit, 2 * DAY + 60)
    # Anyone may send it back (here a sponsor, as our relayer would); it goes to the sender.
    receipt = kit.transact(escrow, encode_reclaim(signed.id))

    assert kit.balance(sender.address) == 10 * USDC
    assert kit.balance(escrow) == 0
    (reclaimed,) = events(kit, receipt, "InvitationReclaimed")
    assert reclaimed == {
        "id": signed.id,
        "from": sender.address,
        "token": signed.invitation.token,
        "value": 7 * USDC,
    }
    assert state(kit, signed.id).status is InvitationStatus.RECLAIMED


def test_release_after_the_deadline_is_refused(kit: ChainKit) -> None:
    sender = kit.funded_account(10 * USDC)
    signed = deposited(kit, sender, deadline=kit.latest_timestamp() + DAY)
    travel(kit, DAY + 60)
    error = kit.simulate(
        escrow_address(kit),
        encode_release(signed.id, Account.create().address),
        releaser(kit).address,
    )
    assert isinstance(error, errors.InvitationExpired)
    assert kit.balance(escrow_address(kit)) == signed.invitation.value_units


def test_reclaim_before_the_deadline_is_refused(kit: ChainKit) -> None:
    sender = kit.funded_account(10 * USDC)
    signed = deposited(kit, sender, deadline=kit.latest_timestamp() + DAY)
    error = kit.simulate(escrow_address(kit), encode_reclaim(signed.id))
    assert isinstance(error, errors.InvitationNotExpired)
    travel(kit, DAY - 600)
    error = kit.simulate(escrow_address(kit), encode_reclaim(signed.id), sender.address)
    assert isinstance(error, errors.InvitationNotExpired)


def test_the_deadline_second_belongs_to_the_sender(kit: ChainKit) -> None:
    """Release while ``now < deadline``; reclaim from ``now == deadline`` on: no gap, no overlap."""
    sender = kit.funded_account(10 * USDC)
    deadline = kit.latest_timestamp() + 600
    first = deposited(kit, sender, USDC, deadline=deadline)
    second = deposited(kit, sender, USDC, deadline=deadline)
    escrow, recipient = escrow_address(kit), Account.create().address

    def at(timestamp: int, data: bytes, sender: LocalAccount | None = None) -> int:
        """Send ``data`` in a block of exactly ``timestamp``; the receipt's status."""
        next_block_at(kit, timestamp)
        receipt = kit.transact(escrow, data, sender, gas=200_000, expect_success=False)
        assert kit.latest_timestamp() == timestamp
        return int(receipt["status"])

    assert at(deadline - 2, encode_reclaim(first.id)) == 0
    assert at(deadline - 1, encode_release(second.id, recipient), releaser(kit)) == 1
    assert at(deadline, encode_release(first.id, recipient), releaser(kit)) == 0
    assert at(deadline, encode_reclaim(first.id)) == 1  # anvil allows a second block that second
    assert state(kit, first.id).status is InvitationStatus.RECLAIMED
    assert state(kit, second.id).status is InvitationStatus.RELEASED
    assert kit.balance(recipient) == USDC
    assert kit.balance(sender.address) == 9 * USDC


# -- who may do what ----------------------------------------------------------------------------


def test_only_the_releaser_releases_and_registers(kit: ChainKit) -> None:
    sender = kit.funded_account(10 * USDC)
    signed = deposited(kit, sender)
    escrow = escrow_address(kit)
    release = encode_release(signed.id, Account.create().address)
    for who in (
        sender.address,  # the sender cannot take it back early
        kit.accounts.sponsors[0].address,  # the relayer that submitted the deposit
        kit.accounts.fee_collector.address,  # the owner
    ):
        error = kit.simulate(escrow, release, who)
        assert isinstance(error, errors.NotReleaser), who
        assert str(error.data).startswith(selector(kit, "NotReleaser(address)"))
    stranger = kit.simulate(escrow, encode_register(signed.invitation))
    assert isinstance(stranger, errors.NotReleaser)
    assert escrow_view(kit, "releaser", returns="address") == releaser(kit).address
    assert kit.deployment.invite_escrow_releaser == releaser(kit).address


def test_an_invitation_settles_exactly_once(kit: ChainKit) -> None:
    sender = kit.funded_account(20 * USDC)
    escrow = escrow_address(kit)
    deadline = kit.latest_timestamp() + DAY
    released = deposited(kit, sender, deadline=deadline)
    reclaimed = deposited(kit, sender, deadline=deadline)
    kit.transact(escrow, encode_release(released.id, Account.create().address), releaser(kit))

    again = kit.simulate(
        escrow, encode_release(released.id, Account.create().address), releaser(kit).address
    )
    assert isinstance(again, errors.InvitationAlreadySettled)

    travel(kit, DAY + 1)
    assert isinstance(
        kit.simulate(escrow, encode_reclaim(released.id)), errors.InvitationAlreadySettled
    )
    kit.transact(escrow, encode_reclaim(reclaimed.id))
    assert isinstance(
        kit.simulate(escrow, encode_reclaim(reclaimed.id)), errors.InvitationAlreadySettled
    )
    assert isinstance(
        kit.simulate(escrow, encode_release(reclaimed.id, sender.address), releaser(kit).address),
        errors.InvitationAlreadySettled,
    )
    unknown = kit.simulate(escrow, encode_reclaim(os.urandom(32)))
    assert isinstance(unknown, errors.UnknownInvitation)
    assert kit.balance(sender.address) == 15 * USDC
    assert kit.balance(escrow) == 0


# -- the terms ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "change",
    [
        {"value_units": 6 * USDC},
        {"claim_hash": b"\x42" * 32},
        {"deadline": 2**40},
        {"sender": "0x" + "77" * 20},
    ],
    ids=["value", "claim-hash", "deadline", "sender"],
)
def test_tampered_terms_are_refused(kit: ChainKit, change: dict[str, Any]) -> None:
    sender = kit.funded_account(10 * USDC)
    signed = invite(kit, sender, 5 * USDC)
    tampered = replace(signed, invitation=replace(signed.invitation, **change))
    error = kit.simulate(escrow_address(kit), tampered.deposit())
    assert isinstance(error, errors.InvalidAuthorizationSignature)
    assert kit.balance(sender.address) == 10 * USDC


def test_the_token_cannot_be_switched(kit: ChainKit) -> None:
    sender = kit.funded_account(10 * USDC)
    mint(kit.w3, kit.deployment, "EURC", sender.address, 10 * USDC, accounts=kit.accounts)
    signed = invite(kit, sender, 5 * USDC)
    as_eurc = replace(
        signed, invitation=replace(signed.invitation, token=kit.token_address("EURC"))
    )
    error = kit.simulate(escrow_address(kit), as_eurc.deposit())
    assert isinstance(error, errors.InvalidAuthorizationSignature)


def test_the_same_deposit_twice_is_refused(kit: ChainKit) -> None:
    sender = kit.funded_account(10 * USDC)
    signed = deposited(kit, sender)
    error = kit.simulate(escrow_address(kit), signed.deposit())
    assert isinstance(error, errors.InvitationExists)


def test_the_escrow_checks_the_terms_itself(kit: ChainKit) -> None:
    """What the Python types refuse, the contract refuses too (for callers that bypass them)."""
    escrow, token = escrow_address(kit), kit.token_address("USDC")
    sender = kit.funded_account(10 * USDC).address
    later = kit.latest_timestamp() + DAY
    claim = b"\x01" * 32
    sig = b"\x01" * 65
    cases: dict[type[errors.ExecutionReverted], tuple[Any, ...]] = {
        errors.ZeroAmount: (token, sender, 0, 0, later, claim, later, sig),
        errors.ValueTooLarge: (token, sender, 2**96, 0, later, claim, later, sig),
        errors.ZeroClaimHash: (token, sender, 1, 0, later, bytes(32), later, sig),
        errors.DeadlineOutOfRange: (token, sender, 1, 0, later, claim, 2**64, sig),
    }
    for expected, args in cases.items():
        error = kit.simulate(escrow, escrow_artifact().encode_call("deposit", *args))
        assert isinstance(error, expected), (expected, error)
    past = (token, sender, 1, 0, later, claim, kit.latest_timestamp() - 1, sig)
    error = kit.simulate(escrow, escrow_artifact().encode_call("deposit", *past))
    assert isinstance(error, errors.DeadlineOutOfRange)
    no_sender = (token, "0x" + "00" * 20, 1, 0, later, claim, later, sig)
    error = kit.simulate(escrow, escrow_artifact().encode_call("deposit", *no_sender))
    assert error is not None
    assert error.data == selector(kit, "ZeroAddress()")


# -- front-running ------------------------------------------------------------------------------


def test_a_front_run_deposit_is_registered_then_claimable(kit: ChainKit) -> None:
    sender = kit.funded_account(10 * USDC)
    recipient = Account.create()
    escrow = escrow_address(kit)
    signed = invite(kit, sender, 5 * USDC)

    # Someone submits the authorization straight to the token: the money arrives, no record.
    front_run = kit.transact(signed.invitation.token, signed.straight_to_the_token())
    assert kit.balance(escrow) == 5 * USDC
    assert state(kit, signed.id).status is InvitationStatus.NONE
    # Our deposit of it now fails at the token...
    assert isinstance(kit.simulate(escrow, signed.deposit()), errors.AuthorizationUsed)
    # ...and the releaser, having checked the token's logs, registers it.
    logs = decoder(kit).decode_all(raw_logs(kit, front_run))
    assert deposit_proven(logs, signed.invitation, escrow=escrow, chain_id=kit.chain_id)
    receipt = kit.transact(escrow, encode_register(signed.invitation), releaser(kit))
    (created,) = events(kit, receipt, "InvitationCreated")
    assert created["id"] == signed.id
    assert created["value"] == 5 * USDC
    assert state(kit, signed.id).status is InvitationStatus.OPEN

    twice = kit.simulate(escrow, encode_register(signed.invitation), releaser(kit).address)
    assert isinstance(twice, errors.InvitationExists)
    assert isinstance(kit.simulate(escrow, signed.deposit()), errors.InvitationExists)

    kit.transact(escrow, encode_release(signed.id, recipient.address), releaser(kit))
    assert kit.balance(recipient.address) == 5 * USDC
    assert kit.balance(escrow) == 0


def test_register_binds_the_terms_the_nonce_commits_to(kit: ChainKit) -> None:
    sender = kit.funded_account(10 * USDC)
    escrow = escrow_address(kit)
    signed = invite(kit, sender, 5 * USDC)
    kit.transact(signed.invitation.token, signed.straight_to_the_token())
    # Other terms hash to another nonce, which the token has never seen used.
    for change in ({"value_units": 4 * USDC}, {"deadline": 1}, {"claim_hash": b"\x09" * 32}):
        other = replace(signed.invitation, **change)
        error = kit.simulate(escrow, encode_register(other), releaser(kit).address)
        assert isinstance(error, errors.AuthorizationNotUsed), change
    # Terms nobody ever signed at all.
    unsigned = invite(kit, sender, USDC).invitation
    error = kit.simulate(escrow, encode_register(unsigned), releaser(kit).address)
    assert isinstance(error, errors.AuthorizationNotUsed)


def _cancel(kit: ChainKit, signer: LocalAccount, nonce: bytes) -> TxReceipt:
    """Cancel an unused EIP-3009 nonce with the authorizer's signature (anyone may submit)."""
    typed = {
        "types": {
            "EIP712Domain": EIP712_DOMAIN_FIELDS,
            "CancelAuthorization": [
                {"name": "authorizer", "type": "address"},
                {"name": "nonce", "type": "bytes32"},
            ],
        },
        "primaryType": "CancelAuthorization",
        "domain": kit.domain("USDC").as_dict(),
        "message": {"authorizer": signer.address, "nonce": nonce},
    }
    signature = bytes(Account.sign_typed_data(signer.key, full_message=typed).signature)
    data = load_fiat_token_artifact("FiatTokenV2_2").encode_call(
        "cancelAuthorization(address,bytes32,bytes)", signer.address, nonce, signature
    )
    return kit.transact(kit.token_address("USDC"), data)


def test_a_canceled_authorization_cannot_become_an_invitation(kit: ChainKit) -> None:
    """The flaw a permissionless ``register`` would have, and the two checks that close it.

    FiatToken's ``authorizationState`` is true for a *canceled* nonce too. An attacker signs
    terms for any value, cancels them, and registers them: without more, the escrow would owe
    money it never received and the attacker would reclaim other people's after the deadline.
    """
    victim, attacker = kit.funded_account(50 * USDC), kit.funded_account(0)
    escrow = escrow_address(kit)
    victims = deposited(kit, victim, 50 * USDC)
    fake = invite(kit, attacker, 50 * USDC, deadline=kit.latest_timestamp() + 60)
    cancel = _cancel(kit, attacker, fake.id)
    assert (
        kit.view(
            fake.invitation.token, "authorizationState", attacker.address, fake.id, decoder="bool"
        )
        is True
    )

    # 1. Only the releaser registers.
    assert isinstance(
        kit.simulate(escrow, encode_register(fake.invitation), attacker.address), errors.NotReleaser
    )
    # 2. Even the releaser cannot record more than the escrow holds beyond open invitations.
    error = kit.simulate(escrow, encode_register(fake.invitation), releaser(kit).address)
    assert isinstance(error, errors.EscrowUnderfunded)
    # 3. When unrecorded money *is* there (a front-run), the logs tell used from canceled.
    assert not deposit_proven(
        decoder(kit).decode_all(raw_logs(kit, cancel)),
        fake.invitation,
        escrow=escrow,
        chain_id=kit.chain_id,
    )
    assert state(kit, victims.id).status is InvitationStatus.OPEN


def test_deposit_proof_needs_the_exact_transfer(kit: ChainKit) -> None:
    sender = kit.funded_account(10 * USDC)
    escrow = escrow_address(kit)
    signed = invite(kit, sender, 5 * USDC)
    logs = decoder(kit).decode_all(
        raw_logs(kit, kit.transact(signed.invitation.token, signed.straight_to_the_token()))
    )
    assert deposit_proven(logs, signed.invitation, escrow=escrow, chain_id=kit.chain_id)
    for change in ({"value_units": 4 * USDC}, {"deadline": 5}):
        other = replace(signed.invitation, **change)
        assert not deposit_proven(logs, other, escrow=escrow, chain_id=kit.chain_id)
    assert not deposit_proven(
        logs, signed.invitation, escrow="0x" + "12" * 20, chain_id=kit.chain_id
    )
    assert not deposit_proven(
        list(reversed(logs)), signed.invitation, escrow=escrow, chain_id=kit.chain_id
    )


# -- administration -----------------------------------------------------------------------------


def test_the_owner_rotates_the_releaser(kit: ChainKit) -> None:
    sender = kit.funded_account(10 * USDC)
    escrow = escrow_address(kit)
    signed = deposited(kit, sender)
    successor: LocalAccount = kit.accounts.sponsors[3]
    data = encode_set_releaser(successor.address)

    stranger = kit.simulate(escrow, data, releaser(kit).address)
    assert stranger is not None
    assert str(stranger.data).startswith(selector(kit, "OwnableUnauthorizedAccount(address)"))
    receipt = kit.transact(escrow, data, sender=kit.accounts.fee_collector)
    (changed,) = events(kit, receipt, "ReleaserChanged")
    assert changed == {
        "previousReleaser": releaser(kit).address,
        "newReleaser": successor.address,
    }
    # The old key is powerless at once; the new one releases.
    release = encode_release(signed.id, Account.create().address)
    assert isinstance(kit.simulate(escrow, release, releaser(kit).address), errors.NotReleaser)
    kit.transact(escrow, release, sender=successor)
    assert state(kit, signed.id).status is InvitationStatus.RELEASED

    zero = escrow_artifact().encode_call("setReleaser", "0x" + "00" * 20)
    error = kit.simulate(escrow, zero, kit.accounts.fee_collector.address)
    assert error is not None
    assert error.data == selector(kit, "ZeroAddress()")


def test_every_escrow_error_and_event_is_known(kit: ChainKit) -> None:
    abi = escrow_artifact().abi
    declared = {
        f"{e['name']}({','.join(i['type'] for i in e['inputs'])})"
        for e in abi
        if e["type"] == "error"
    }
    assert declared <= set(errors.CUSTOM_ERROR_SIGNATURES), declared - set(
        errors.CUSTOM_ERROR_SIGNATURES
    )
    assert set(event_topics()) == {
        "InvitationCreated",
        "InvitationClaimed",
        "InvitationReclaimed",
        "ReleaserChanged",
        "OwnershipTransferStarted",
        "OwnershipTransferred",
    }
    assert event_topics()["InvitationCreated"] == kit.w3.keccak(
        text="InvitationCreated(bytes32,address,address,uint256,bytes32,uint256)"
    )


# -- the manifest -------------------------------------------------------------------------------


def test_an_older_manifest_reads_and_gets_an_escrow_added(kit: ChainKit) -> None:
    current = kit.deployment
    assert Deployment.from_json(current.to_json()) == current
    older = current.to_dict()
    for key in ("invite_escrow", "invite_escrow_releaser", "invite_escrow_code_hash"):
        del older[key]
    old = Deployment.from_dict(older)
    assert old.invite_escrow is None
    assert old.invite_escrow_releaser is None
    assert check_deployment(kit.w3, old) == []  # nothing to check is not a problem

    upgraded = add_invite_escrow(kit.w3, old, kit.accounts)
    assert upgraded.invite_escrow not in (None, current.invite_escrow)
    assert upgraded.invite_escrow_releaser == releaser(kit).address
    assert upgraded.router == current.router
    assert check_deployment(kit.w3, upgraded) == []
    broken = replace(upgraded, invite_escrow_code_hash="0x" + "00" * 32)
    assert check_deployment(kit.w3, broken) != []


# -- gas ----------------------------------------------------------------------------------------


def test_gas_stays_within_budget(kit: ChainKit) -> None:
    sender = kit.funded_account(100 * USDC)
    escrow = escrow_address(kit)
    measured: dict[str, int] = {}
    deadline = kit.latest_timestamp() + DAY

    def deposit() -> tuple[Signed, int]:
        signed = invite(kit, sender, USDC, deadline=deadline)
        return signed, int(kit.transact(escrow, signed.deposit())["gasUsed"])

    to_release, measured["first deposit of a token"] = deposit()
    to_reclaim, measured["deposit"] = deposit()
    receipt = kit.transact(
        escrow, encode_release(to_release.id, Account.create().address), releaser(kit)
    )
    measured["release to a new address"] = int(receipt["gasUsed"])

    front_run = invite(kit, sender, USDC, deadline=deadline)
    kit.transact(front_run.invitation.token, front_run.straight_to_the_token())
    receipt = kit.transact(escrow, encode_register(front_run.invitation), releaser(kit))
    measured["register a front-run deposit"] = int(receipt["gasUsed"])

    travel(kit, DAY)
    measured["reclaim"] = int(kit.transact(escrow, encode_reclaim(to_reclaim.id))["gasUsed"])

    print("\nInviteEscrow gas (anvil, Ethereum schedule):")
    for label, gas in measured.items():
        print(f"  {label:<30} {gas:>8,}")
    over = {k: v for k, v in measured.items() if v > GAS_BUDGETS[k]}
    assert not over, f"over the gas budget: {over} (all measured: {measured})"
