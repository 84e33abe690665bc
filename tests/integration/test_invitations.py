"""Invitations end to end on anvil and both databases: a transfer to an alias without a wallet is
deposited in the invite escrow by the relayer, released by the worker to whoever proves the alias
(after checking the claim hash on-chain), or reclaimed for the sender after the deadline; a
deposit sent straight to the token is registered; crashes and repeats move money once."""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pytest
from eth_account import Account
from eth_account.signers.local import LocalAccount
from sqlalchemy import Engine, func, select, update
from sqlalchemy.orm import Session, sessionmaker
from tests.fixtures.chain import ChainKit
from web3.types import RPCEndpoint

from seiwallet.accounts.models import User, UserStatus
from seiwallet.chain.escrow import (
    Invitation,
    claim_hash,
    decode_invitation_state,
    encode_get_invitation,
    invitation_nonce,
    new_claim_salt,
)
from seiwallet.chain.escrow import (
    InvitationStatus as OnChain,
)
from seiwallet.chain.follower import Follower
from seiwallet.chain.localnet import LocalChain
from seiwallet.chain.models import SentTransaction, TxStatus
from seiwallet.chain.rpc import Call, RpcClient
from seiwallet.chain.sender import TransactionSender
from seiwallet.chain.tokens import (
    Authorization3009,
    authorization_typed_data,
    encode_transfer_with_authorization,
)
from seiwallet.cli.runtime import event_decoder
from seiwallet.compliance.gate import ComplianceGate
from seiwallet.config import InvitationSettings, RelayerSettings
from seiwallet.db import session_factory
from seiwallet.deployments import Contracts
from seiwallet.transfers.errors import InvitationRateLimited, RecipientInvalid
from seiwallet.transfers.handlers import InvitationEventHandler, TransferEventHandler
from seiwallet.transfers.invitations import InvitationPolicy, invitation_terms
from seiwallet.transfers.models import (
    InvitationStatus,
    Transfer,
    TransferInvitation,
    TransferStatus,
)
from seiwallet.transfers.relayer import Relayer
from seiwallet.transfers.services import (
    Owner,
    SendRequest,
    TokenInfo,
    TransferService,
    TransferView,
)
from seiwallet.transfers.tasks import InvitationWorker

pytestmark = pytest.mark.chain

USDC = 10**6
RELAYER = RelayerSettings(poll_seconds=0.05, backoff_initial_seconds=0.2, backoff_max_seconds=2)
WORKER = InvitationSettings(poll_seconds=0.05, retry_seconds=0.2)


class ProcessDied(BaseException):
    """The worker process 'dies' here."""


class DiesAtBroadcast(RpcClient):
    async def batch(self, calls: Sequence[Call]) -> list[Any]:
        if any(call.method == "eth_sendRawTransaction" for call in calls):
            raise ProcessDied
        return await super().batch(calls)


class ChainBalances:
    def __init__(self, kit: ChainKit) -> None:
        self._kit = kit

    async def balance(self, token: str, owner: str) -> int:
        return int(self._kit.view(token, "balanceOf", owner, decoder="uint256"))


@dataclass
class FakeMailer:
    sent: list[tuple[str, str, str, str]] = field(default_factory=list)
    channels: frozenset[str] = frozenset({"email", "sms"})

    async def send(self, channel: str, to: str, subject: str, body: str) -> None:
        self.sent.append((channel, to, subject, body))


@dataclass
class World:
    kit: ChainKit
    rpc: RpcClient
    sessions: sessionmaker[Session]
    start_block: int
    escrow: str
    sender_id: str
    payer: LocalAccount
    mailer: FakeMailer = field(default_factory=FakeMailer)

    def service(self, **policy: Any) -> TransferService:
        domain = self.kit.domain("USDC")
        token = TokenInfo("USDC", "USD Coin", 6, domain)
        return TransferService(
            self.sessions,
            signer=None,  # type: ignore[arg-type]  # creating a transfer asks no signer
            balances=ChainBalances(self.kit),
            tokens={"USDC": token},
            gate=ComplianceGate(),
            invitations=InvitationPolicy(
                escrow=self.escrow,
                deadline_seconds=policy.get("deadline_seconds", 14 * 86_400),
                new_aliases_per_window=policy.get("limit", 10),
                window_seconds=86_400,
            ),
        )

    @property
    def owner(self) -> Owner:
        return Owner(self.sender_id, self.sender_id, self.payer.address)

    async def invite(self, alias: str, amount: str = "12.5", **policy: Any) -> TransferView:
        """An invitation transfer made by the service, signed by the payer's key (as the signer
        would after the owner's approval): in the relayer's outbox."""
        view, created = await self.service(**policy).create(
            self.owner, SendRequest(alias, "USDC", amount), os.urandom(8).hex()
        )
        assert created
        self.sign(view.id)
        return view

    def authorization(self, transfer_id: str) -> Authorization3009:
        row = self.transfer(transfer_id)
        return Authorization3009(
            from_address=row.from_address,
            to=row.to_address,
            value=row.amount_units,
            valid_after=row.valid_after,
            valid_before=row.valid_before,
            nonce=bytes.fromhex(row.nonce[2:]),
        )

    def signature(self, transfer_id: str) -> bytes:
        typed = authorization_typed_data(self.kit.domain("USDC"), self.authorization(transfer_id))
        return bytes(Account.sign_typed_data(self.payer.key, full_message=typed).signature)

    def sign(self, transfer_id: str) -> None:
        with self.sessions.begin() as session:
            session.execute(
                update(Transfer)
                .where(Transfer.id == transfer_id)
                .values(
                    signature="0x" + self.signature(transfer_id).hex(),
                    status=TransferStatus.SIGNED,
                    signed_at=datetime.now(UTC),
                )
            )

    def join(self, email: str) -> tuple[str, str]:
        """Someone signs up and proves ``email``: an active user with a wallet of their own."""
        user_id, address = os.urandom(16).hex(), Account.create().address
        with self.sessions.begin() as session:
            session.add(
                User(
                    id=user_id,
                    status=UserStatus.ACTIVE,
                    display_name="Carol",
                    email=email,
                    email_verified=True,
                    wallet_id=user_id,
                    wallet_address=address,
                )
            )
        return user_id, address

    # -- the worker's parts --------------------------------------------------------------------
    def relayer(self) -> Relayer:
        sender = TransactionSender(
            self.rpc,
            self.kit.accounts.sponsors[1],
            chain_id=self.kit.chain_id,
            sessions=self.sessions,
        )
        return Relayer(
            self.rpc,
            self.sessions,
            [sender],
            chain_id=self.kit.chain_id,
            settings=RELAYER,
            escrow=self.escrow,
        )

    def contracts(self) -> Contracts:
        deployment = self.kit.deployment
        return Contracts(
            router=deployment.router,
            tokens={symbol: token.address for symbol, token in deployment.tokens.items()},
            deployed_at=self.start_block,
            invite_escrow=self.escrow,
        )

    def follower(self) -> Follower:
        return Follower(
            self.rpc,
            self.sessions,
            chain_id=self.kit.chain_id,
            decoder=event_decoder(self.contracts()),
            start_block=self.start_block,
            handlers=[TransferEventHandler(), InvitationEventHandler()],
        )

    def worker(self, rpc: RpcClient | None = None) -> InvitationWorker:
        client = rpc or self.rpc
        return InvitationWorker(
            client,
            self.sessions,
            TransactionSender(
                client,
                self.kit.accounts.releaser,
                chain_id=self.kit.chain_id,
                sessions=self.sessions,
            ),
            chain_id=self.kit.chain_id,
            escrow=self.escrow,
            decoder=event_decoder(self.contracts()),
            settings=WORKER,
            mailer=self.mailer,
            public_url="https://wallet.example",
        )

    async def drive(
        self,
        until: Callable[[], bool],
        *,
        relayer: Relayer | None = None,
        worker: InvitationWorker | None = None,
        follower: Follower | None = None,
        timeout: float = 30.0,
    ) -> None:
        deadline = time.monotonic() + timeout
        while not until():
            if relayer is not None:
                await relayer.submit_once()
                await relayer.track_once()
            if worker is not None:
                await worker.run_once()
            if follower is not None:
                await follower.poll()
            if time.monotonic() > deadline:
                raise AssertionError(f"not done in {timeout} s")
            await asyncio.sleep(0.02)

    # -- reading ---------------------------------------------------------------------------------
    def transfer(self, transfer_id: str) -> Transfer:
        with self.sessions() as session:
            found = session.get(Transfer, transfer_id)
            assert found is not None
            return found

    def invitation(self, transfer_id: str) -> TransferInvitation:
        with self.sessions() as session:
            found = session.get(TransferInvitation, transfer_id)
            assert found is not None
            return found

    def is_(self, transfer_id: str, status: InvitationStatus) -> Callable[[], bool]:
        return lambda: self.invitation(transfer_id).status is status

    def on_chain(self, transfer_id: str) -> Any:
        raw = self.kit.call(
            self.escrow,
            encode_get_invitation(bytes.fromhex(self.invitation(transfer_id).invitation_id[2:])),
        )
        return decode_invitation_state(raw)

    def actions(self, transfer_id: str, action: str) -> list[SentTransaction]:
        with self.sessions() as session:
            return list(
                session.scalars(
                    select(SentTransaction).where(
                        SentTransaction.purpose == f"invitation.{action}:{transfer_id}"
                    )
                )
            )

    async def deposited(self, transfer_id: str) -> None:
        """Relayer and follower until the deposit is confirmed and the invitation open."""
        await self.drive(
            lambda: (
                self.transfer(transfer_id).status is TransferStatus.CONFIRMED
                and self.invitation(transfer_id).status is InvitationStatus.OPEN
            ),
            relayer=self.relayer(),
            follower=self.follower(),
        )


def travel(kit: ChainKit, seconds: int) -> None:
    for method, params in (("evm_increaseTime", [seconds]), ("evm_mine", [])):
        response = kit.w3.provider.make_request(RPCEndpoint(method), params)
        assert "error" not in response, response


@pytest.fixture
async def world(kit: ChainKit, engine: Engine, local_chain: LocalChain) -> AsyncIterator[World]:
    sessions = session_factory(engine)
    payer = kit.funded_account(100 * USDC)
    sender_id = os.urandom(16).hex()
    with sessions.begin() as session:
        session.add(
            User(
                id=sender_id,
                status=UserStatus.ACTIVE,
                display_name="Ada Lovelace",
                email="ada@example.com",
                email_verified=True,
                wallet_id=sender_id,
                wallet_address=payer.address,
            )
        )
    escrow = kit.deployment.invite_escrow
    assert escrow is not None
    async with RpcClient(local_chain.rpc_url) as rpc:
        yield World(
            kit=kit,
            rpc=rpc,
            sessions=sessions,
            start_block=await rpc.block_number(),
            escrow=escrow,
            sender_id=sender_id,
            payer=payer,
        )


# -- the whole way: invite, deposit, prove the alias, release -----------------------------------


async def test_invite_deposit_then_release_to_who_proves_the_alias(world: World) -> None:
    kit = world.kit
    view = await world.invite("  Carol@Example.com ")
    invitation = view.invitation
    assert invitation is not None
    assert invitation.status is InvitationStatus.PENDING
    assert invitation.alias == "carol@example.com"  # normalised
    assert view.to_address == world.escrow
    assert view.recipient == "carol@example.com"
    assert view.intent["to"] == world.escrow
    # The intent's nonce is the invitation id, and its window ends before the deadline.
    assert view.intent["nonce"] == invitation.invitation_id
    assert int(view.intent["valid_before"]) <= invitation.deadline.timestamp()
    assert 13 * 86_400 < invitation.deadline.timestamp() - time.time() <= 14 * 86_400

    await world.deposited(view.id)
    transfer = world.transfer(view.id)
    assert transfer.gas_used is not None
    assert 150_000 < transfer.gas_used < 260_000
    assert world.on_chain(view.id).status is OnChain.OPEN
    assert kit.balance(world.escrow) == 12_500_000
    assert kit.balance(world.payer.address) == 87_500_000

    # Nobody holds the alias yet: nothing is released, but the alias hears of the money.
    worker = world.worker()
    report = await worker.run_once()
    assert report.sent == 0
    [(channel, to, subject, body)] = world.mailer.sent
    assert (channel, to) == ("email", "carol@example.com")
    assert subject == "Ada Lovelace sent you 12.50 USDC"
    assert "https://wallet.example/" in body
    assert "0x" not in body  # no address, no note, no amount in another currency
    assert (await worker.run_once()).notified == 0  # once

    carol_id, carol_address = world.join("carol@example.com")
    first = await worker.run_once()
    assert first.released == 1
    # Run again before the follower saw it: the escrow says released, nothing more is sent.
    again = await worker.run_once()
    assert again.sent == 0
    await world.drive(world.is_(view.id, InvitationStatus.RELEASED), follower=world.follower())
    assert len(world.actions(view.id, "release")) == 1
    assert kit.balance(carol_address) == 12_500_000
    assert kit.balance(world.escrow) == 0
    assert world.on_chain(view.id).status is OnChain.RELEASED
    row = world.invitation(view.id)
    assert (row.recipient_user_id, row.recipient_address) == (carol_id, carol_address)
    assert row.settled_tx_hash is not None
    assert row.action is None
    # Carol now sees the money in her history, as received.
    service = world.service()
    [seen] = service.history(carol_id, carol_address)
    assert seen.id == view.id
    assert seen.invitation is not None
    assert seen.invitation.status is InvitationStatus.RELEASED
    assert service.get(carol_id, view.id).amount_units == 12_500_000
    # The sender hears that it was claimed, once.
    await worker.run_once()
    await worker.run_once()
    told = [m for m in world.mailer.sent if m[1] == "ada@example.com"]
    assert [m[2] for m in told] == ["carol@example.com received your 12.50 USDC"]


async def test_after_the_deadline_the_money_goes_back_to_the_sender(world: World) -> None:
    kit = world.kit
    view = await world.invite("dave@example.com", "7", deadline_seconds=2 * 3600)
    await world.deposited(view.id)
    assert kit.balance(world.payer.address) == 93 * USDC
    worker = world.worker()
    assert (await worker.run_once()).reclaimed == 0  # not yet

    travel(kit, 2 * 3600 + 1)
    world.join("dave@example.com")  # too late: only a reclaim may happen now
    report = await worker.run_once()
    assert (report.released, report.reclaimed) == (0, 1)
    await world.drive(world.is_(view.id, InvitationStatus.RECLAIMED), follower=world.follower())
    assert kit.balance(world.payer.address) == 100 * USDC
    assert world.on_chain(view.id).status is OnChain.RECLAIMED
    assert (await worker.run_once()).sent == 0
    assert len(world.actions(view.id, "reclaim")) == 1
    told = [m for m in world.mailer.sent if m[1] == "ada@example.com"]
    assert [m[2] for m in told] == ["Your 7.00 USDC came back"]


async def test_a_deposit_sent_straight_to_the_token_is_registered(world: World) -> None:
    kit = world.kit
    view = await world.invite("erin@example.com", "3")
    # Someone takes the signed authorization and submits it to the token themselves.
    data = encode_transfer_with_authorization(
        world.authorization(view.id), world.signature(view.id)
    )
    kit.transact(kit.token_address("USDC"), bytes.fromhex(data[2:]))
    assert kit.balance(world.escrow) == 3 * USDC
    assert world.on_chain(view.id).status is OnChain.NONE

    # The relayer finds the authorization used; the follower confirms the transfer.
    await world.drive(
        lambda: world.transfer(view.id).status is TransferStatus.CONFIRMED,
        relayer=world.relayer(),
        follower=world.follower(),
    )
    assert world.invitation(view.id).status is InvitationStatus.PENDING
    worker = world.worker()
    assert (await worker.run_once()).registered == 1
    await world.drive(world.is_(view.id, InvitationStatus.OPEN), follower=world.follower())
    assert world.on_chain(view.id).status is OnChain.OPEN
    _, erin = world.join("erin@example.com")
    await world.drive(
        world.is_(view.id, InvitationStatus.RELEASED), worker=worker, follower=world.follower()
    )
    assert kit.balance(erin) == 3 * USDC
    assert len(world.actions(view.id, "register")) == 1


@pytest.mark.parametrize("tamper", ["alias and its hash", "salt only"])
async def test_the_releaser_refuses_when_the_chain_holds_another_claim_hash(
    world: World, caplog: pytest.LogCaptureFixture, tamper: str
) -> None:
    view = await world.invite("frank@example.com", "2")
    await world.deposited(view.id)
    salt = new_claim_salt()
    changes: dict[str, Any] = {"salt": "0x" + salt.hex()}
    if tamper == "alias and its hash":
        # A consistent forgery: the row now says mallory, with a matching salt and hash.
        changes.update(
            alias="mallory@example.com",
            claim_hash="0x" + claim_hash(salt, "mallory@example.com").hex(),
        )
    with world.sessions.begin() as session:
        session.execute(
            update(TransferInvitation)
            .where(TransferInvitation.transfer_id == view.id)
            .values(**changes)
        )
    world.join("mallory@example.com")
    if tamper == "salt only":
        world.join("frank@example.com")
    with caplog.at_level(logging.ERROR, logger="seiwallet.alerts"):
        report = await world.worker().run_once()
    assert report.released == 0
    assert world.actions(view.id, "release") == []
    assert world.on_chain(view.id).status is OnChain.OPEN
    assert any("refusing to release" in r.getMessage() for r in caplog.records)
    row = world.invitation(view.id)
    assert row.last_error == "claim hash differs from the chain's"
    assert row.next_attempt_at is not None  # it waits for an operator, not the next round


async def test_a_crash_between_recording_and_broadcasting_releases_once(world: World) -> None:
    kit = world.kit
    view = await world.invite("grace@example.com", "4")
    await world.deposited(view.id)
    _, grace = world.join("grace@example.com")

    async with DiesAtBroadcast(world.rpc.url) as dying:
        with pytest.raises(ProcessDied):
            await world.worker(dying).run_once()
    [recorded] = world.actions(view.id, "release")
    assert recorded.status == TxStatus.SIGNED  # recorded before the broadcast that never was
    assert world.invitation(view.id).action_tx_hash == recorded.tx_hash
    assert world.on_chain(view.id).status is OnChain.OPEN

    restarted = world.worker()
    await restarted.recover()  # the same bytes again
    await world.drive(
        world.is_(view.id, InvitationStatus.RELEASED), worker=restarted, follower=world.follower()
    )
    for _ in range(3):
        assert (await restarted.run_once()).sent == 0
    [only] = world.actions(view.id, "release")
    assert only.tx_hash == recorded.tx_hash
    assert only.status == TxStatus.MINED
    assert kit.balance(grace) == 4 * USDC
    assert world.invitation(view.id).action is None


async def test_new_aliases_are_limited_per_sender(world: World) -> None:
    service = world.service(limit=2)

    async def send(alias: str) -> TransferView:
        view, _ = await service.create(
            world.owner, SendRequest(alias, "USDC", "1"), os.urandom(8).hex()
        )
        return view

    await send("one@example.com")
    await send("+85291234567")
    with pytest.raises(InvitationRateLimited) as refused:
        await send("three@example.com")
    assert 86_000 < refused.value.retry_after <= 86_400
    # Sending again to someone already invited tells nothing new: not limited.
    again = await send("one@example.com")
    assert again.invitation is not None
    assert again.invitation.alias == "one@example.com"
    phone = await send("+852 9123 4567")
    assert phone.invitation is not None
    assert phone.invitation.alias_kind == "phone"
    with world.sessions() as session:
        count = session.scalar(select(func.count()).select_from(TransferInvitation))
        assert count == 4


async def test_the_escrow_itself_is_not_a_recipient(world: World) -> None:
    with pytest.raises(RecipientInvalid):
        await world.service().create(
            world.owner, SendRequest(world.escrow, "USDC", "1"), "escrow-key"
        )


def test_the_invitation_id_is_what_the_escrow_computes(kit: ChainKit) -> None:
    """The stored nonce is ``invitation_nonce`` of the stored terms (pinned on-chain by
    test_escrow); here, that the service's helper builds the same terms."""
    escrow = kit.deployment.invite_escrow
    assert escrow is not None
    policy = InvitationPolicy(escrow, 3600, 10, 86_400)
    terms = invitation_terms(
        policy,
        token=kit.token_address(),
        sender=Account.create().address,
        value_units=5,
        alias="x@example.com",
        chain_id=kit.chain_id,
        now=1_000,
        validity=7200,
    )
    assert terms.valid_before == terms.invitation.deadline == 4_600  # capped at the deadline
    assert terms.invitation.claim_hash == claim_hash(terms.salt, "x@example.com")
    rebuilt = Invitation(**{**terms.invitation.__dict__})
    assert (
        terms.nonce == "0x" + invitation_nonce(rebuilt, escrow=escrow, chain_id=kit.chain_id).hex()
    )
