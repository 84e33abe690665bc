"""Payments end to end over HTTP: a live API server, its signer process, the local chain.

A merchant signs up, opens a store, a terminal, API keys and a webhook; an API key creates an
invoice (idempotently); a payer pays it from their wallet with a passkey; the test stands in
for the relayer (not built yet) and submits the signed authorization to the PaymentRouter; the
follower settles the invoice; the terminal's event stream turns "paid"; the webhook reaches a
local receiver that failed once, is retried and verified with the documented snippet; the owner
refunds with their passkey; the report shows it. Scopes, bad keys and the rate limit are refused
with problem documents.
"""

from __future__ import annotations

import asyncio
import json
import queue
import shutil
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from tests.e2e.live import Person, _unb64
from tests.e2e.web_helpers import settings_for, start_signer
from tests.fixtures.authenticators import SoftPasskey, b64url
from tests.fixtures.browser import serve_app, serve_app_at
from tests.fixtures.chain import ChainKit
from tests.unit.test_payments_webhooks import documented_verifier

from seiwallet.api.app import create_app
from seiwallet.chain.follower import Follower
from seiwallet.chain.router import Authorization, Payment, encode_pay
from seiwallet.chain.rpc import RpcClient
from seiwallet.cli.runtime import event_decoder
from seiwallet.config import LocalChainSettings, PaymentSettings, SignerSettings
from seiwallet.db import create_engine_for, session_factory
from seiwallet.deployments import contracts_for
from seiwallet.payments.handlers import PaymentEventHandler
from seiwallet.payments.models import Invoice, PaymentAttempt
from seiwallet.payments.webhooks import WebhookSender

pytestmark = [pytest.mark.chain, pytest.mark.slow]


class Receiver:
    """A merchant's webhook endpoint: answers 500 to the first delivery, then 200."""

    def __init__(self) -> None:
        self.received: list[tuple[dict[str, str], bytes, int]] = []
        self.fail_first = True

    async def hook(self, request: Request) -> Response:
        body = await request.body()
        status = 500 if self.fail_first else 200
        self.fail_first = False
        self.received.append((dict(request.headers), body, status))
        return Response("ok" if status == 200 else "down", status_code=status)

    def app(self) -> Starlette:
        return Starlette(routes=[Route("/hooks", self.hook, methods=["POST"])])


@pytest.fixture
def platform(tmp_path: Path, kit: ChainKit, clean_chain: Any) -> Iterator[tuple[str, Any]]:
    signer = None

    def make(base_url: str) -> Any:
        nonlocal signer
        origin = base_url.replace("localhost", "127.0.0.1")
        signer = start_signer(tmp_path / "signer-home", origin=origin)
        manifest = tmp_path / "deployments" / "local.json"
        manifest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(clean_chain.settings.deployment_manifest_path, manifest)
        settings = settings_for(
            tmp_path, f"sqlite:///{tmp_path / 'w.sqlite3'}", origin=origin
        ).model_copy(
            update={
                "signer": SignerSettings(
                    socket=signer.socket, secret=signer.secret, origins=[origin]
                ),
                "local_chain": LocalChainSettings(port=clean_chain.settings.local_chain.port),
                "payments": PaymentSettings(
                    api_key_rate_per_second=1.0,
                    api_key_burst=8,
                    webhook_backoff_initial_seconds=0.1,
                ),
            }
        )
        make.settings = settings  # type: ignore[attr-defined]
        return create_app(settings)

    try:
        with serve_app_at(make) as base_url:
            yield base_url.replace("localhost", "127.0.0.1"), make.settings  # type: ignore[attr-defined]
    finally:
        if signer is not None:
            signer.stop()


def approve(person: Person, options_path: str, approve_path: str) -> httpx.Response:
    options = person.post(options_path, {})
    assert options.status_code == 200, options.text
    signed = person.passkey.get_assertion(_unb64(options.json()["options"]["challenge"]))
    credential = {
        "id": b64url(person.passkey.credential_id),
        "rawId": b64url(person.passkey.credential_id),
        "type": "public-key",
        "response": {
            "clientDataJSON": b64url(signed.client_data_json),
            "authenticatorData": b64url(signed.authenticator_data),
            "signature": b64url(signed.signature),
        },
    }
    return person.post(
        approve_path, {"approval_id": options.json()["approval_id"], "credential": credential}
    )


def key_client(base: str, secret: str) -> httpx.Client:
    return httpx.Client(base_url=base, headers={"Authorization": f"Bearer {secret}"}, timeout=10)


def problem(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body: dict[str, Any] = response.json()
    assert body["code"] == code
    assert body["detail"]
    return body


def watch(
    base: str, path: str, secret: str, found: queue.Queue[tuple[str, dict[str, Any]]]
) -> None:
    """Read a server-sent-event stream in a thread, putting (event, data) on ``found``."""
    with (
        httpx.Client(base_url=base, timeout=None) as client,
        client.stream("GET", path, headers={"Authorization": f"Bearer {secret}"}) as stream,
    ):
        found.put(("open", {"content-type": stream.headers["content-type"]}))
        event = ""
        for line in stream.iter_lines():
            if line.startswith("event: "):
                event = line[7:]
            elif line.startswith("data: "):
                found.put((event, json.loads(line[6:])))
                if event == "invoice.settled":
                    return


def test_a_payment_at_the_counter_end_to_end(
    platform: tuple[str, Any], kit: ChainKit, people: list[httpx.Client]
) -> None:
    base, settings = platform
    receiver = Receiver()
    with serve_app(receiver.app()) as hooks_base:
        merchant = Person(base, people, name="Mei Chan", email="mei@shop.example")
        payer = Person(base, people, name="Pat Lee", email="pat@example.com")

        # -- the merchant sets up -------------------------------------------------------------
        created = merchant.post("/v1/merchants", {"name": "Lantau Tea Ltd"})
        assert created.status_code == 201, created.text
        merchant_id = created.json()["id"]
        store = merchant.post(
            f"/v1/merchants/{merchant_id}/stores",
            {"name": "Lantau Tea House", "country": "HK", "currency": "HKD"},
        ).json()
        terminal = merchant.post(f"/v1/stores/{store['id']}/terminals", {"name": "Counter 1"})
        assert terminal.status_code == 201, terminal.text
        terminal_id = terminal.json()["id"]
        keys = {}
        for name, scopes in (
            ("pos", ["invoices:create", "invoices:read", "refunds:create", "reports:read"]),
            ("reader", ["invoices:read"]),
            ("hammer", ["invoices:read"]),
        ):
            made = merchant.post(
                f"/v1/stores/{store['id']}/api-keys", {"name": name, "scopes": scopes}
            )
            assert made.status_code == 201, made.text
            assert made.json()["secret"].startswith("swk_")
            keys[name] = made.json()["secret"]
        listed = merchant.http.get(f"/v1/stores/{store['id']}/api-keys").json()["api_keys"]
        assert all("secret" not in k for k in listed)
        assert len(listed) == 3
        hook = merchant.post(
            f"/v1/stores/{store['id']}/webhooks",
            {
                "url": f"{hooks_base.replace('localhost', '127.0.0.1')}/hooks",
                "events": ["invoice.settled"],
            },
        )
        assert hook.status_code == 201, hook.text
        hook_secret = hook.json()["secret"]

        pos = key_client(base, keys["pos"])
        reader = key_client(base, keys["reader"])
        people.extend([pos, reader])

        # -- an invoice from the API, idempotently ---------------------------------------------
        body = {"amount": "97.25", "terminal_id": terminal_id, "order_id": "A-1024"}
        first = pos.post(
            f"/v1/stores/{store['id']}/invoices", json=body, headers={"Idempotency-Key": "k1"}
        )
        assert first.status_code == 201, first.text
        invoice = first.json()
        assert (invoice["amount"], invoice["fee"], invoice["status"]) == ("12.50", "0.125", "new")
        again = pos.post(
            f"/v1/stores/{store['id']}/invoices", json=body, headers={"Idempotency-Key": "k1"}
        )
        assert again.status_code == 200
        assert again.json()["id"] == invoice["id"]
        problem(
            pos.post(
                f"/v1/stores/{store['id']}/invoices",
                json={**body, "amount": "1"},
                headers={"Idempotency-Key": "k1"},
            ),
            422,
            "payment.idempotency_conflict",
        )
        # Scopes, bad keys, other stores.
        problem(
            reader.post(f"/v1/stores/{store['id']}/invoices", json=body),
            403,
            "payment.scope_missing",
        )
        problem(
            httpx.post(
                f"{base}/v1/stores/{store['id']}/invoices",
                json=body,
                headers={"Authorization": "Bearer swk_not-a-key"},
            ),
            401,
            "payment.api_key_invalid",
        )
        problem(reader.get("/v1/stores/nope/invoices"), 404, "payment.store_not_found")
        assert reader.get(f"/v1/invoices/{invoice['id']}").json()["order_id"] == "A-1024"
        public = httpx.get(f"{base}/v1/invoices/{invoice['id']}/public").json()
        assert public["store"]["name"] == "Lantau Tea House"
        assert "order_id" not in public

        # -- the rate limit of one key ---------------------------------------------------------
        with key_client(base, keys["hammer"]) as hammer:
            answers = [hammer.get(f"/v1/invoices/{invoice['id']}") for _ in range(12)]
        limited = [a for a in answers if a.status_code == 429]
        assert limited
        assert all(a.status_code == 200 for a in answers[:8])
        body_429 = problem(limited[0], 429, "payment.rate_limited")
        assert int(limited[0].headers["Retry-After"]) >= 1
        assert body_429["retry_after"] >= 1
        assert reader.get(f"/v1/invoices/{invoice['id']}").status_code == 200  # others unaffected

        # -- the terminal listens ---------------------------------------------------------------
        events: queue.Queue[tuple[str, dict[str, Any]]] = queue.Queue()
        listener = threading.Thread(
            target=watch,
            args=(base, f"/v1/terminals/{terminal_id}/events", keys["pos"], events),
            daemon=True,
        )
        listener.start()
        assert events.get(timeout=10)[1]["content-type"].startswith("text/event-stream")
        assert events.get(timeout=10)[0] == "invoice.created"  # replayed from the table

        # -- the payer pays from their wallet --------------------------------------------------
        funded = payer.post("/v1/faucet", {"token": "USDC", "amount": "100"})
        assert funded.status_code == 200, funded.text
        attempt = payer.post(f"/v1/invoices/{invoice['id']}/pay", {})
        assert attempt.status_code == 201, attempt.text
        attempt_id = attempt.json()["id"]
        assert attempt.json()["intent"]["kind"] == "router.pay"
        signed = approve(
            payer,
            f"/v1/payment-attempts/{attempt_id}/approval-options",
            f"/v1/payment-attempts/{attempt_id}/approve",
        )
        assert signed.status_code == 200, signed.text
        assert signed.json()["status"] == "signed"
        assert events.get(timeout=10)[0] == "invoice.processing"
        # The merchant cannot pay their own invoice; it is taken anyway.
        problem(
            merchant.post(f"/v1/invoices/{invoice['id']}/pay", {}),
            409,
            "payment.invoice_already_paid",
        )

        # -- the relayer's part (a later step): submit the signed authorization ----------------
        engine = create_engine_for(settings.effective_database_url)
        sessions = session_factory(engine)
        with sessions() as db:
            row = db.get(Invoice, invoice["id"])
            signed_attempt = db.scalars(
                select(PaymentAttempt).where(PaymentAttempt.id == attempt_id)
            ).one()
            assert row is not None
            assert signed_attempt.signature
        payment = Payment(
            invoice_id=bytes.fromhex(row.id[2:]),
            merchant=row.merchant_address,
            token=row.token,
            amount_units=row.amount_units,
            fee_units=row.fee_units,
        )
        authorization = Authorization(
            from_address=signed_attempt.payer_address,
            valid_after=signed_attempt.valid_after,
            valid_before=signed_attempt.valid_before,
            signature=bytes.fromhex(signed_attempt.signature[2:]),
        )
        start = kit.w3.eth.block_number
        receipt = kit.transact(kit.deployment.router, encode_pay(payment, authorization))
        assert receipt["status"] == 1

        # -- the follower settles it; the terminal hears it ------------------------------------
        async def follow() -> None:
            rpc = RpcClient(settings.effective_rpc_url)
            try:
                follower = Follower(
                    rpc,
                    sessions,
                    chain_id=kit.chain_id,
                    decoder=event_decoder(contracts_for(settings)),
                    start_block=start,
                    handlers=[PaymentEventHandler()],
                )
                await follower.poll()
            finally:
                await rpc.aclose()

        committed = time.perf_counter()
        asyncio.run(follow())
        kind, data = events.get(timeout=10)
        while kind != "invoice.settled":
            kind, data = events.get(timeout=10)
        took = (time.perf_counter() - committed) * 1000
        print(f"\nfollower commit → terminal stream: {took:.0f} ms (includes the follower's poll)")
        assert data["data"]["invoice"]["status"] == "settled"
        settled = reader.get(f"/v1/invoices/{invoice['id']}").json()
        assert settled["status"] == "settled"
        assert settled["payer"] == payer_address(payer)

        # -- the webhook: 500 first, retried, verified ----------------------------------------
        async def send_webhooks() -> None:
            async with httpx.AsyncClient() as http:
                sender = WebhookSender(sessions, http, settings.payments)
                deadline = time.monotonic() + 10
                while time.monotonic() < deadline and not any(
                    status == 200 for _, _, status in receiver.received
                ):
                    await sender.run_once()
                    await asyncio.sleep(0.05)

        asyncio.run(send_webhooks())
        assert [status for _, _, status in receiver.received] == [500, 200]
        verify = documented_verifier()
        for headers, raw, _ in receiver.received:
            assert verify(hook_secret, headers["seiwallet-signature"], raw)
            assert not verify("whsec_forged", headers["seiwallet-signature"], raw)
            assert headers["seiwallet-event-type"] == "invoice.settled"
        first_body, second_body = (raw for _, raw, _ in receiver.received)
        assert first_body == second_body  # the same event, the same bytes
        delivered = json.loads(second_body)
        assert delivered["type"] == "invoice.settled"
        assert delivered["data"]["invoice"]["id"] == invoice["id"]
        log = merchant.http.get(f"/v1/webhooks/{hook.json()['id']}/deliveries").json()
        [delivery] = log["deliveries"]
        assert delivery["status"] == "delivered"
        assert [t["status_code"] for t in delivery["log"]] == [500, 200]
        test_event = merchant.post(f"/v1/webhooks/{hook.json()['id']}/test", {})
        assert test_event.status_code == 200, test_event.text
        assert test_event.json()["status"] == "delivered"
        redelivered = merchant.post(f"/v1/webhook-deliveries/{delivery['id']}/redeliver", {})
        assert redelivered.status_code == 200
        assert redelivered.json()["status"] == "pending"

        # -- a refund, approved by the owner's passkey -----------------------------------------
        refund = pos.post(
            f"/v1/invoices/{invoice['id']}/refunds", json={"amount": "2", "reason": "cold tea"}
        )
        assert refund.status_code == 201, refund.text
        assert refund.json()["status"] == "awaiting_approval"
        problem(
            pos.post(f"/v1/invoices/{invoice['id']}/refunds", json={"amount": "13"}),
            422,
            "payment.refund_exceeds_refundable",
        )
        problem(
            payer.post(f"/v1/refunds/{refund.json()['id']}/approval-options", {}),
            404,
            "payment.refund_not_found",
        )
        approved = approve(
            merchant,
            f"/v1/refunds/{refund.json()['id']}/approval-options",
            f"/v1/refunds/{refund.json()['id']}/approve",
        )
        assert approved.status_code == 200, approved.text
        assert approved.json()["status"] == "signed"

        # -- the report ------------------------------------------------------------------------
        report = pos.get(f"/v1/stores/{store['id']}/reports/settlements")
        assert report.status_code == 200, report.text
        [day] = report.json()["days"]
        assert (day["count"], day["gross"], day["fees"], day["net"]) == (
            1,
            "12.50",
            "0.125",
            "12.375",
        )
        csv_text = pos.get(f"/v1/stores/{store['id']}/reports/settlements.csv").text
        assert (
            csv_text.splitlines()[0] == "date,token,count,gross,fees,net,refunds,net_after_refunds"
        )
        problem(
            reader.get(f"/v1/stores/{store['id']}/reports/settlements"),
            403,
            "payment.scope_missing",
        )
        # -- a cashier refunds with their own passkey, within the cap the owner approved --------
        cashier = Person(base, people, name="Kit Wong", email="kit@shop.example")
        added = merchant.post(
            f"/v1/merchants/{merchant_id}/staff", {"email": "kit@shop.example", "role": "cashier"}
        )
        assert added.status_code == 201, added.text
        small = cashier.post(
            f"/v1/invoices/{invoice['id']}/refunds", {"amount": "3", "reason": "wrong size"}
        )
        assert small.status_code == 201, small.text
        small_id = small.json()["id"]
        # No refund passkey yet: the cashier cannot approve it.
        problem(
            cashier.post(f"/v1/refunds/{small_id}/approval-options", {}),
            403,
            "payment.refund_approval_not_set_up",
        )
        # The cashier makes a passkey for the payout wallet (a second one on their phone)...
        delegate = SoftPasskey(rp_id="localhost", origin=base)
        options = cashier.post(
            f"/v1/merchants/{merchant_id}/refund-passkey/registration-options", {}
        )
        assert options.status_code == 200, options.text
        assert options.json()["options"]["user"]["id"] != b64url(cashier.passkey.user_handle)
        made = cashier.post(
            f"/v1/merchants/{merchant_id}/refund-passkey",
            {
                "credential": delegate.registration_response(
                    _unb64(options.json()["options"]["challenge"])
                )
            },
        )
        assert made.status_code == 201, made.text
        assert made.json()["status"] == "awaiting_owner"
        approver_id = made.json()["id"]
        # ... which approves nothing until the owner adds it to the wallet with its cap.
        problem(
            cashier.post(f"/v1/refunds/{small_id}/approval-options", {}),
            403,
            "payment.refund_approval_not_set_up",
        )
        problem(
            cashier.post(
                f"/v1/merchants/{merchant_id}/refund-approvers/{approver_id}/approval-options", {}
            ),
            403,
            "payment.not_permitted",
        )
        listed = merchant.http.get(f"/v1/merchants/{merchant_id}/refund-approvers").json()
        assert [a["id"] for a in listed["refund_approvers"]] == [approver_id]
        owner_ok = approve(
            merchant,
            f"/v1/merchants/{merchant_id}/refund-approvers/{approver_id}/approval-options",
            f"/v1/merchants/{merchant_id}/refund-approvers/{approver_id}/approve",
        )
        assert owner_ok.status_code == 200, owner_ok.text
        assert (owner_ok.json()["status"], owner_ok.json()["max_amount"]) == ("active", "20.00")
        # Now the cashier's own passkey approves the refund; the signer checked its scope.
        options = cashier.post(f"/v1/refunds/{small_id}/approval-options", {})
        assert options.status_code == 200, options.text
        allowed = options.json()["options"]["allowCredentials"]
        assert [c["id"] for c in allowed] == [b64url(delegate.credential_id)]
        signed = delegate.get_assertion(_unb64(options.json()["options"]["challenge"]))
        by_cashier = cashier.post(
            f"/v1/refunds/{small_id}/approve",
            {
                "approval_id": options.json()["approval_id"],
                "credential": {
                    "id": b64url(delegate.credential_id),
                    "rawId": b64url(delegate.credential_id),
                    "type": "public-key",
                    "response": {
                        "clientDataJSON": b64url(signed.client_data_json),
                        "authenticatorData": b64url(signed.authenticator_data),
                        "signature": b64url(signed.signature),
                    },
                },
            },
        )
        assert by_cashier.status_code == 200, by_cashier.text
        assert by_cashier.json()["status"] == "signed"
        # The owner removes the refund passkey (approved by theirs): it approves nothing more.
        removed = approve(
            merchant,
            f"/v1/merchants/{merchant_id}/refund-approvers/{approver_id}/removal-options",
            f"/v1/merchants/{merchant_id}/refund-approvers/{approver_id}/revoke",
        )
        assert removed.status_code == 204, removed.text
        again = cashier.post(
            f"/v1/invoices/{invoice['id']}/refunds", {"amount": "1", "reason": "again"}
        )
        problem(
            cashier.post(f"/v1/refunds/{again.json()['id']}/approval-options", {}),
            403,
            "payment.refund_approval_not_set_up",
        )

        listener.join(timeout=5)
        # The server notices a closed stream within a second; let it, before it stops.
        time.sleep(1.5)
        engine.dispose()


def payer_address(person: Person) -> str:
    return str(person.http.get("/v1/me").json()["wallet"]["address"])
