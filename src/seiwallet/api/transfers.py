"""The JSON API for money: balances, transfers (create, approve, read, history, CSV), faucet.

Sending is two calls, so that the owner approves exactly what was checked (a recipient's phone
number or e-mail that has no wallet yet gives a transfer to the invite escrow with an
``invitation`` block: the money waits there for them until its deadline):

1. ``POST /v1/transfers`` with an ``Idempotency-Key`` → the transfer ``awaiting_approval`` with
   its intent and the intent's digest (the same key and body returns the same transfer);
2. ``POST /v1/transfers/{id}/approve`` with the owner's approval: a passkey assertion (browser:
   ``approval_id`` + ``credential`` from ``/v1/transfers/{id}/approval-options``) or device-key
   approvals the CLI made itself over the digest (``approvals``).
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool
from starlette.responses import JSONResponse, Response

from seiwallet.accounts.errors import CeremonyInvalid
from seiwallet.accounts.sessions import SessionInfo
from seiwallet.api.auth import current_session, services_dependency
from seiwallet.api.services import Services
from seiwallet.chain.deploy import local_accounts
from seiwallet.chain.sender import TransactionSender, TxRequest
from seiwallet.chain.tokens import encode_mint
from seiwallet.errors import InvalidInput
from seiwallet.money import TokenAmount
from seiwallet.transfers.services import Owner, SendRequest, TransferService, TransferView

router = APIRouter(prefix="/v1")

Svc = Annotated[Services, Depends(services_dependency)]
Caller = Annotated[SessionInfo, Depends(current_session)]
#: Test money per faucet request at most (local chain only).
FAUCET_MAX = Decimal(1000)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class TransferBody(_Strict):
    recipient: str = Field(min_length=1, max_length=320)
    token: str = Field(min_length=1, max_length=16)
    amount: str = Field(min_length=1, max_length=100)
    note: str = Field(default="", max_length=140)


class ApproveBody(_Strict):
    approval_id: str | None = Field(default=None, max_length=64)
    credential: dict[str, Any] | None = None
    approvals: list[dict[str, Any]] | None = Field(default=None, max_length=16)


class FaucetBody(_Strict):
    token: str = Field(default="USDC", max_length=16)
    amount: str = Field(default="100", max_length=40)


def owner_of(caller: SessionInfo) -> Owner:
    return Owner(caller.user_id, caller.wallet_id, caller.wallet_address)


async def transfers_of(svc: Services) -> TransferService:
    return await svc.connect_chain()


def _iso(moment: datetime | None) -> str | None:
    return moment.astimezone(UTC).isoformat() if moment else None


def transfer_json(view: TransferView, svc: Services, *, me: str | None = None) -> dict[str, Any]:
    explorer = svc.settings.network.explorer_link(view.tx_hash) if view.tx_hash else None
    body: dict[str, Any] = {
        "id": view.id,
        "status": str(view.status),
        "token": view.symbol,
        "token_address": view.token,
        "amount": view.amount.format(),
        "amount_units": str(view.amount_units),
        "from": view.from_address,
        "to": view.to_address,
        "recipient": view.recipient,
        "note": view.note,
        "intent": view.intent,
        "intent_digest": view.intent_digest,
        "tx_hash": view.tx_hash,
        "explorer_url": explorer,
        "block_number": view.block_number,
        "gas_cost_wei": str(view.gas_cost_wei) if view.gas_cost_wei is not None else None,
        "failure_reason": view.failure_reason,
        "delayed": view.delay_reason,
        "created_at": _iso(view.created_at),
        "confirmed_at": _iso(view.confirmed_at),
    }
    body["invitation"] = invitation_json(view)
    if me is not None:
        body["direction"] = "sent" if view.from_address.lower() == me.lower() else "received"
    return body


def invitation_json(view: TransferView) -> dict[str, Any] | None:
    """The invitation block of a transfer to an alias without a wallet (never the salt).

    ``claim_hash``, ``deadline`` and ``escrow`` let a client recompute the nonce it approves
    (``chain.escrow.invitation_nonce``) and so check the deadline it shows is the one signed.
    """
    found = view.invitation
    if found is None:
        return None
    return {
        "status": str(found.status),
        "alias": found.alias,
        "alias_kind": found.alias_kind,
        "deadline": _iso(found.deadline),
        "deadline_unix": int(found.deadline.timestamp()),
        "escrow": found.escrow,
        "invitation_id": found.invitation_id,
        "claim_hash": found.claim_hash,
        "released_to": found.recipient_address if str(found.status) == "released" else None,
        "settled_tx_hash": found.settled_tx_hash,
        "settled_at": _iso(found.settled_at),
    }


@router.get("/balances")
async def balances(svc: Svc, caller: Caller) -> dict[str, Any]:
    transfers = await transfers_of(svc)
    owner = owner_of(caller)
    answer = []
    for info in transfers.tokens.values():
        available = await transfers.available(owner, info)
        answer.append(
            {
                "token": info.symbol,
                "name": info.name,
                "address": info.address,
                "decimals": info.decimals,
                "amount": TokenAmount.from_units(available, info.decimals, info.symbol).format(),
                "amount_units": str(available),
            }
        )
    return {"balances": answer}


@router.post("/transfers")
async def create_transfer(
    body: TransferBody,
    svc: Svc,
    caller: Caller,
    idempotency_key: Annotated[str | None, Header()] = None,
) -> JSONResponse:
    transfers = await transfers_of(svc)
    view, created = await transfers.create(
        owner_of(caller),
        SendRequest(body.recipient, body.token, body.amount, body.note),
        idempotency_key,
    )
    answer = transfer_json(view, svc)
    answer["wallet_id"] = caller.wallet_id
    return JSONResponse(answer, status_code=201 if created else 200)


@router.post("/transfers/{transfer_id}/approval-options")
async def transfer_approval_options(transfer_id: str, svc: Svc, caller: Caller) -> dict[str, Any]:
    transfers = await transfers_of(svc)
    view = await run_in_threadpool(transfers.get, caller.user_id, transfer_id)
    approval_id, options = await run_in_threadpool(
        svc.passkeys.approval_options, caller, "intent", {"digest": view.intent_digest}
    )
    return {"approval_id": approval_id, "options": options}


@router.post("/transfers/{transfer_id}/approve")
async def approve_transfer(
    transfer_id: str, body: ApproveBody, svc: Svc, caller: Caller
) -> JSONResponse:
    transfers = await transfers_of(svc)
    if body.approval_id and body.credential is not None:
        view = await run_in_threadpool(transfers.get, caller.user_id, transfer_id)
        approved = await run_in_threadpool(
            svc.passkeys.approval, caller, body.approval_id, body.credential
        )
        if approved.action != "intent" or approved.document != {"digest": view.intent_digest}:
            raise CeremonyInvalid("approves something else")
        approvals = [approved.approval]
    elif body.approvals:
        approvals = body.approvals
    else:
        raise InvalidInput("send a passkey answer (approval_id, credential) or approvals")
    view = await transfers.approve(owner_of(caller), transfer_id, approvals)
    answer = transfer_json(view, svc)
    answer["redirect"] = f"/transfers/{view.id}"
    # Already JSON types: straight to the response, not through FastAPI's generic encoder.
    return JSONResponse(answer)


@router.get("/transfers/{transfer_id}")
async def get_transfer(transfer_id: str, svc: Svc, caller: Caller) -> dict[str, Any]:
    transfers = await transfers_of(svc)
    view = await run_in_threadpool(transfers.get, caller.user_id, transfer_id)
    return transfer_json(view, svc, me=caller.wallet_address)


@router.get("/transfers")
async def list_transfers(svc: Svc, caller: Caller, limit: int = 50) -> dict[str, Any]:
    transfers = await transfers_of(svc)
    views = await run_in_threadpool(
        transfers.history, caller.user_id, caller.wallet_address, max(1, min(limit, 200))
    )
    return {"transfers": [transfer_json(v, svc, me=caller.wallet_address) for v in views]}


@router.get("/transfers.csv")
async def transfers_csv(svc: Svc, caller: Caller) -> Response:
    transfers = await transfers_of(svc)
    explorer = svc.settings.network.explorer_link("{tx}")
    text = await run_in_threadpool(
        transfers.history_csv, caller.user_id, caller.wallet_address, explorer
    )
    return Response(
        text,
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": 'attachment; filename="seiwallet-history.csv"'},
    )


async def mint_test_money(svc: Services, to: str, symbol: str, amount_text: str) -> TokenAmount:
    """Mint test stablecoins to ``to`` on the local chain (refused on the Sei networks)."""
    if not svc.settings.network.is_local:
        raise InvalidInput("the faucet mints test money on the local chain only")
    transfers = await transfers_of(svc)
    info = transfers.token(symbol)
    amount = TokenAmount.parse(amount_text, info.decimals, info.symbol)
    if amount.units <= 0 or amount.to_decimal() > FAUCET_MAX:
        raise InvalidInput(f"the faucet gives between 0 and {FAUCET_MAX:,} {info.symbol}")
    sender = svc.extras.get("faucet")
    if not isinstance(sender, TransactionSender):
        # One sender for the process: its nonce manager keeps concurrent requests apart.
        if svc.rpc is None:  # pragma: no cover - connect_chain sets it
            raise InvalidInput("the chain is not connected")
        sender = TransactionSender(
            svc.rpc,
            local_accounts().token_admin,
            chain_id=svc.settings.network.chain_id,
            sessions=svc.db,
        )
        svc.extras["faucet"] = sender
    await sender.send_and_wait(
        TxRequest(
            to=info.address, data=encode_mint(to, amount.units), purpose=f"faucet:{info.symbol}"
        )
    )
    if svc.balances is not None:
        svc.balances.forget(to)
    return amount


@router.post("/faucet")
async def faucet(body: FaucetBody, svc: Svc, caller: Caller) -> dict[str, Any]:
    """Test money on the local chain (refused on the Sei networks)."""
    amount = await mint_test_money(svc, caller.wallet_address, body.token, body.amount)
    return {"token": amount.symbol, "amount": amount.format(), "to": caller.wallet_address}
