"""The invitation escrow, mirrored in Python: its terms, ids, claim hashes and calldata.

Money sent to an alias (phone number, e-mail) that has no wallet yet waits in ``InviteEscrow``.
The sender signs an ordinary EIP-3009 ``TransferWithAuthorization`` (the signer's
``erc3009.transfer`` intent) to the escrow, whose nonce is :func:`invitation_nonce` — the hash of
the invitation's terms, which the contract recomputes, so whoever submits the deposit cannot
change them. :func:`invitation_authorization` builds exactly those EIP-3009 terms.

The alias never reaches the chain: an invitation carries :func:`claim_hash` of a random
per-invitation salt (:func:`new_claim_salt`) and the alias in its normalised form
(``seiwallet.accounts.aliases.normalise(...).value``: lower-case e-mail or E.164 phone number);
the salt stops anyone from finding the alias by hashing every phone number.

The ids here must equal the contract's ``invitationId`` / ``claimHashOf`` bit for bit (the
integration tests compare them on a live chain); the calldata encoders take their types from
the compiled artifact's ABI.
"""

from __future__ import annotations

import enum
import functools
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from eth_abi.abi import decode as abi_decode
from eth_abi.abi import encode as abi_encode
from eth_utils.crypto import keccak

from seiwallet.chain.artifacts import ContractArtifact, event_topic, load_artifact
from seiwallet.chain.events import DecodedEvent
from seiwallet.chain.terms import (
    checksummed,
    nonzero_address,
    require_bytes32,
    require_uint,
)
from seiwallet.chain.tokens import Authorization3009
from seiwallet.errors import InvalidInput

#: Name of the escrow's artifact in the package.
ESCROW_CONTRACT = "InviteEscrow"

INVITATION_TYPE = (
    "seiwallet.InviteEscrow.Invitation(uint256 chainId,address escrow,address token,"
    "address from,uint256 value,bytes32 claimHash,uint256 deadline)"
)
CLAIM_TYPE = "seiwallet.InviteEscrow.Claim(bytes32 salt,bytes32 aliasHash)"
INVITATION_TYPEHASH = keccak(text=INVITATION_TYPE)
CLAIM_TYPEHASH = keccak(text=CLAIM_TYPE)

#: The escrow stores a value in 96 bits and a deadline in 64 (three storage slots a record).
MAX_VALUE_UNITS = 2**96 - 1
MAX_DEADLINE = 2**64 - 1


class InvitationStatus(enum.IntEnum):
    """Where an invitation stands on-chain (the contract's ``Status``)."""

    NONE = 0  # no record with this id
    OPEN = 1
    RELEASED = 2
    RECLAIMED = 3


def new_claim_salt() -> bytes:
    """A fresh random 32-byte salt for one invitation's claim hash (keep it with the alias)."""
    return os.urandom(32)


def claim_hash(salt: bytes, alias: str) -> bytes:
    """``keccak256(abi.encode(CLAIM_TYPEHASH, salt, keccak256(utf8(alias))))``.

    ``alias`` must already be normalised (the accounts domain's one stored form); this only
    refuses values that plainly are not (empty, or padded with whitespace), because an alias
    hashed in another form than the one the recipient later proves is unclaimable.
    """
    require_bytes32("salt", salt)
    if not isinstance(alias, str) or not alias or alias != alias.strip():
        raise InvalidInput("claim_hash needs the normalised alias (non-empty, no padding)")
    return keccak(
        abi_encode(
            ["bytes32", "bytes32", "bytes32"],
            [CLAIM_TYPEHASH, salt, keccak(alias.encode("utf-8"))],
        )
    )


@dataclass(frozen=True)
class Invitation:
    """The terms a sender signs: ``value_units`` of ``token`` for whoever proves the alias that
    ``claim_hash`` commits to, before ``deadline`` (unix seconds); back to ``sender`` after it.

    Every field is part of the nonce (:func:`invitation_nonce`), so none can change after the
    sender signed.
    """

    token: str
    sender: str
    value_units: int
    claim_hash: bytes
    deadline: int

    def __post_init__(self) -> None:
        object.__setattr__(self, "token", nonzero_address("token", self.token))
        object.__setattr__(self, "sender", nonzero_address("sender", self.sender))
        require_uint("value_units", self.value_units, MAX_VALUE_UNITS)
        require_bytes32("claim_hash", self.claim_hash)
        require_uint("deadline", self.deadline, MAX_DEADLINE)
        # The escrow refuses these too; refusing them here saves a signature and a revert.
        if self.value_units == 0:
            raise InvalidInput("an invitation's value must be positive")
        if self.claim_hash == bytes(32):
            raise InvalidInput("an invitation's claim hash cannot be zero")

    def as_abi(self) -> tuple[str, str, int, bytes, int]:
        """(token, from, value, claimHash, deadline), the order of the contract's arguments."""
        return (self.token, self.sender, self.value_units, self.claim_hash, self.deadline)


@dataclass(frozen=True)
class InvitationState:
    """An invitation as the escrow records it (``invitations(id)``)."""

    token: str
    deadline: int
    status: InvitationStatus
    sender: str
    value_units: int
    claim_hash: bytes

    def is_open(self) -> bool:
        return self.status is InvitationStatus.OPEN


def invitation_nonce(invitation: Invitation, *, escrow: str, chain_id: int) -> bytes:
    """The EIP-3009 nonce the sender signs for ``invitation``; also the escrow's id of it.

    Binding the escrow and the chain id means a signature for one deployment or network is
    worthless on any other.
    """
    return keccak(
        abi_encode(
            [
                "bytes32",
                "uint256",
                "address",
                "address",
                "address",
                "uint256",
                "bytes32",
                "uint256",
            ],
            [
                INVITATION_TYPEHASH,
                chain_id,
                checksummed("escrow", escrow),
                *invitation.as_abi(),
            ],
        )
    )


def invitation_authorization(
    invitation: Invitation,
    *,
    escrow: str,
    chain_id: int,
    valid_after: int,
    valid_before: int,
) -> Authorization3009:
    """The EIP-3009 terms the sender signs (``TransferWithAuthorization``) for ``invitation``.

    As an ``erc3009.transfer`` intent: ``to`` = the escrow, ``amount_units`` = the value and
    ``nonce`` = :func:`invitation_nonce`. Choose ``valid_before`` at or before the deadline: a
    deposit after the deadline is refused anyway.
    """
    return Authorization3009(
        from_address=invitation.sender,
        to=checksummed("escrow", escrow),
        value=invitation.value_units,
        valid_after=valid_after,
        valid_before=valid_before,
        nonce=invitation_nonce(invitation, escrow=escrow, chain_id=chain_id),
    )


def deposit_proven(
    events: Iterable[DecodedEvent], invitation: Invitation, *, escrow: str, chain_id: int
) -> bool:
    """Whether a transaction's token events prove the invitation's money reached the escrow.

    The check the releaser makes before :func:`encode_register`: the token's
    ``AuthorizationUsed(sender, nonce)`` immediately followed by its
    ``Transfer(sender, escrow, value)`` (FiatToken emits exactly this pair, in this order, for
    one ``transferWithAuthorization``). An ``AuthorizationCanceled`` makes the nonce look used
    to the contract too, but moves nothing: it never passes here. ``events`` are the decoded
    logs of one transaction (an :class:`~seiwallet.chain.events.EventDecoder` that knows the
    token), in log order.
    """
    nonce = "0x" + invitation_nonce(invitation, escrow=escrow, chain_id=chain_id).hex()
    escrow_address = checksummed("escrow", escrow)
    token = invitation.token
    previous: DecodedEvent | None = None
    for event in events:
        if (
            previous is not None
            and previous.name == "AuthorizationUsed"
            and event.name == "Transfer"
            and previous.contract == event.contract == token
            and previous.log.transaction_hash == event.log.transaction_hash
            and event.log.log_index == previous.log.log_index + 1
            and not (previous.log.removed or event.log.removed)
            and previous.args.get("authorizer") == invitation.sender
            and str(previous.args.get("nonce", "")).lower() == nonce
            and event.args.get("from") == invitation.sender
            and event.args.get("to") == escrow_address
            and event.args.get("value") == str(invitation.value_units)
        ):
            return True
        previous = event
    return False


# -- calldata --------------------------------------------------------------------------------


def escrow_artifact() -> ContractArtifact:
    """The compiled ``InviteEscrow`` shipped with the package."""
    return load_artifact(ESCROW_CONTRACT)


def _encode(function: str, *args: Any) -> bytes:
    return escrow_artifact().encode_call(function, *args)


def encode_deposit(
    invitation: Invitation, *, valid_after: int, valid_before: int, signature: bytes
) -> bytes:
    """Calldata of ``deposit(...)``: the sender's signed authorization plus the terms."""
    if not isinstance(signature, bytes) or not signature:
        raise InvalidInput("a deposit needs the sender's non-empty signature")
    require_uint("valid_after", valid_after)
    require_uint("valid_before", valid_before)
    token, sender, value, claim, deadline = invitation.as_abi()
    return _encode(
        "deposit", token, sender, value, valid_after, valid_before, claim, deadline, signature
    )


def encode_register(invitation: Invitation) -> bytes:
    """Calldata of ``register(...)`` (releaser only): record a front-run deposit's terms.

    Send it only after checking the token's logs: an ``AuthorizationUsed(sender, nonce)`` (not
    ``AuthorizationCanceled``) and a ``Transfer(sender, escrow, value)`` in the same transaction.
    """
    return _encode("register", *invitation.as_abi())


def encode_release(invitation_id: bytes, to: str) -> bytes:
    """Calldata of ``release(id, to)`` (releaser only, before the deadline)."""
    require_bytes32("invitation_id", invitation_id)
    return _encode("release", invitation_id, nonzero_address("to", to))


def encode_reclaim(invitation_id: bytes) -> bytes:
    """Calldata of ``reclaim(id)`` (anyone, from the deadline on): back to the sender."""
    require_bytes32("invitation_id", invitation_id)
    return _encode("reclaim", invitation_id)


def encode_set_releaser(new_releaser: str) -> bytes:
    """Calldata of ``setReleaser(newReleaser)`` (owner only, immediate)."""
    return _encode("setReleaser", nonzero_address("new_releaser", new_releaser))


def encode_get_invitation(invitation_id: bytes) -> bytes:
    """Calldata of the ``invitations(id)`` view; decode the answer with
    :func:`decode_invitation_state`."""
    require_bytes32("invitation_id", invitation_id)
    return _encode("invitations", invitation_id)


def decode_invitation_state(raw: bytes) -> InvitationState:
    """The answer of ``invitations(id)``; ``status`` is ``NONE`` if there is no such record."""
    token, deadline, status, sender, value, claim = abi_decode(
        ["address", "uint64", "uint8", "address", "uint96", "bytes32"], raw
    )
    return InvitationState(
        token=checksummed("token", token),
        deadline=int(deadline),
        status=InvitationStatus(int(status)),
        sender=checksummed("sender", sender),
        value_units=int(value),
        claim_hash=bytes(claim),
    )


@functools.cache
def event_topics() -> Mapping[str, bytes]:
    """The escrow's events by name → topic 0, for filtering logs."""
    artifact = escrow_artifact()
    names = [str(entry["name"]) for entry in artifact.abi if entry.get("type") == "event"]
    return {name: event_topic(artifact, name) for name in names}
