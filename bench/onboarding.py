"""Server-side time from a received ID token to "wallet ready", for many new users.

Each new user goes through what the API does when the identity provider sends them back:
the ID token (signed by the development provider, ES256) is verified against the provider's
JWKS, the user is reserved, the **real signer process** generates and seals their wallet key,
the user is activated and a browser session opened. The person's own time (choosing an account,
the fingerprint) and the provider's network round trip are not in it.

Load is open-loop, as phones being switched on are: new users arrive at ``--rate`` per second
(evenly spaced, each handled as it arrives, however many are in flight), so the figures are the
latency a person sees at that load, not the queue a closed loop builds at saturation. Capacity
(how many users per second the machine onboards flat out) is reported beside them.

Also measured, per user, the passkey enrolment that follows (WebAuthn registration verified
with ``webauthn`` and the credential added to the wallet in the signer).

    .venv/bin/python bench/onboarding.py [--quick] [--users 1000] [--rate 15]
        [--database-url postgresql+psycopg://…]

Last line: JSON with ``value`` = p50 in ms, and ``p99`` beside it (goal: p50 < 150 ms,
p99 < 300 ms).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository's test helpers

from tests.e2e.web_helpers import start_signer
from tests.fixtures.authenticators import SoftPasskey

from seiwallet.accounts.models import SessionKind
from seiwallet.api.services import DEV_CLIENT_ID, build_services
from seiwallet.config import Settings

ORIGIN = "http://localhost:8000"


def percentile(samples: list[float], fraction: float) -> float:
    ordered = sorted(samples)
    index = min(len(ordered) - 1, max(0, round(fraction * (len(ordered) - 1))))
    return ordered[index]


async def run(users: int, rate: float, database_url: str | None) -> dict[str, Any]:
    home = Path(tempfile.mkdtemp(prefix="seiwallet-bench-onboarding-"))
    signer = start_signer(home / "signer", origin=ORIGIN)
    try:
        settings = Settings(
            data_dir=home,
            database_url=database_url or f"sqlite:///{home / 'bench.sqlite3'}",
            web={"public_url": ORIGIN},
            signer={"origins": [ORIGIN]},
        )
        client = signer.client()
        services = build_services(settings, signer=client)
        devidp = services.devidp
        oidc = services.oidc["dev"]
        assert devidp is not None
        await oidc.jwks()  # discovery and keys fetched once, as a running server has them
        tokens: list[tuple[str, str]] = []
        for index in range(users):
            person = devidp.create_person(f"Person {index}", f"person{index}@example.com")
            nonce = f"nonce-{index}"
            claims = {
                "iss": devidp.issuer,
                "sub": person.subject,
                "aud": DEV_CLIENT_ID,
                "azp": DEV_CLIENT_ID,
                "iat": int(time.time()),
                "exp": int(time.time()) + 600,
                "nonce": nonce,
                "email": person.email,
                "email_verified": True,
                "name": person.name,
            }
            tokens.append((devidp.sign_id_token(claims), nonce))

        ready_ms: list[float] = []
        passkey_ms: list[float] = []
        created = 0
        in_flight = 0
        most_in_flight = 0

        async def onboard(id_token: str, nonce: str) -> None:
            nonlocal created, in_flight, most_in_flight
            in_flight += 1
            most_in_flight = max(most_in_flight, in_flight)
            try:
                began = time.perf_counter()
                identity = await oidc.verify_id_token(id_token, nonce=nonce)
                result = await services.sign_in.complete(identity)
                _, token = await asyncio.to_thread(
                    services.sessions.open, result.user.id, SessionKind.WEB, label="bench"
                )
                ready_ms.append((time.perf_counter() - began) * 1000)
                created += result.created
                session = await asyncio.to_thread(services.sessions.authenticate, token)
                passkey = SoftPasskey(rp_id="localhost", origin=ORIGIN)
                began = time.perf_counter()
                options = await asyncio.to_thread(services.passkeys.registration_options, session)
                challenge = _unb64(options["challenge"])
                await services.passkeys.register(
                    session, passkey.registration_response(challenge), "bench"
                )
                passkey_ms.append((time.perf_counter() - began) * 1000)
            finally:
                in_flight -= 1

        wall = time.perf_counter()
        tasks = []
        for index, (id_token, nonce) in enumerate(tokens):
            # Arrivals on a fixed schedule: a slow user does not delay the next one's arrival.
            delay = wall + index / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(onboard(id_token, nonce)))
        await asyncio.gather(*tasks)
        wall = time.perf_counter() - wall
        await services.aclose()
        await client.aclose()
        if created != users:
            raise SystemExit(f"expected {users} new wallets, got {created}")
        return {
            "users": users,
            "rate": rate,
            "most_in_flight": most_in_flight,
            "database": "postgresql" if database_url else "sqlite",
            "p50_ms": statistics.median(ready_ms),
            "p99_ms": percentile(ready_ms, 0.99),
            "max_ms": max(ready_ms),
            "passkey_p50_ms": statistics.median(passkey_ms),
            "passkey_p99_ms": percentile(passkey_ms, 0.99),
            "users_per_s": users / wall,
        }
    finally:
        signer.stop()
        shutil.rmtree(home, ignore_errors=True)


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer users (under 60 s)")
    parser.add_argument("--users", type=int, default=None)
    parser.add_argument("--rate", type=float, default=15.0, help="new users per second")
    parser.add_argument("--database-url", default=None)
    args = parser.parse_args()
    users = args.users or (300 if args.quick else 2000)
    figures = asyncio.run(run(users, args.rate, args.database_url))
    print(
        f"{figures['users']} new users arriving at {figures['rate']:g}/s "
        f"(at most {figures['most_in_flight']} in flight), "
        f"{figures['database']}: ID token → wallet ready p50 {figures['p50_ms']:.1f} ms, "
        f"p99 {figures['p99_ms']:.1f} ms, max {figures['max_ms']:.1f} ms; passkey enrolment "
        f"p50 {figures['passkey_p50_ms']:.1f} ms, p99 {figures['passkey_p99_ms']:.1f} ms; "
        f"{figures['users_per_s']:.1f} users/s done"
    )
    print(
        json.dumps(
            {
                "bench": "onboarding",
                "metric": "id_token_to_wallet_ready_p50",
                "value": round(figures["p50_ms"], 2),
                "unit": "ms",
                "p99": round(figures["p99_ms"], 2),
                "passkey_p50": round(figures["passkey_p50_ms"], 2),
                "passkey_p99": round(figures["passkey_p99_ms"], 2),
                "users": figures["users"],
                "rate_per_s": figures["rate"],
                "database": figures["database"],
            }
        )
    )


if __name__ == "__main__":
    main()
