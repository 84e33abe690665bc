"""``seiwallet compliance``: show a jurisdiction's rules, dry-run the gate, refresh sanctions lists.

* ``show HK [--json]`` — the effective rules of a jurisdiction (or of the one a country is in),
  with status and sources, and the rules' version;
* ``check --from … --to … --token … --amount … [--country …] [--tier …] [--json]`` — what the
  gate would decide, with the rule that decided (a dry run: nothing reserved or recorded);
* ``refresh-lists --ofac SDN.XML --csv other.csv`` — load sanctions lists from files (no network).
"""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from seiwallet.addresses import InvalidAddress, parse_evm_address, parse_sei_address
from seiwallet.cli.app import app, console, handles_errors, settings
from seiwallet.cli.runtime import open_database
from seiwallet.compliance.gate import Movement
from seiwallet.compliance.jurisdictions import RULES_DIR, RuleStore, rules_json
from seiwallet.compliance.services import ComplianceService, build_compliance
from seiwallet.config import Settings
from seiwallet.db import session_factory
from seiwallet.errors import InvalidInput
from seiwallet.money import TokenAmount
from seiwallet.transfers.rates import OfflineRates

compliance_app = typer.Typer(
    help="Jurisdiction rules, the compliance gate, sanctions lists.", no_args_is_help=True
)
app.add_typer(compliance_app, name="compliance")

AsJson = Annotated[bool, typer.Option("--json", help="Print one JSON object.")]
#: FiatToken (USDC, EURC) has 6 decimals everywhere we run.
TOKEN_DECIMALS = 6


def _rules(config: Settings) -> RuleStore:
    return RuleStore(config.compliance.rules_dir or RULES_DIR)


def _service(config: Settings) -> tuple[ComplianceService, Any]:
    engine = open_database(config)
    sessions = session_factory(engine)
    default = config.compliance.default_country or ("HK" if config.network.is_local else None)
    service = build_compliance(
        sessions,
        rules_dir=config.compliance.rules_dir,
        per_transfer_cap=config.compliance.per_transfer_cap,
        default_country=default,
        valuer=OfflineRates().table().value_of_token,
    )
    return service, engine


@compliance_app.command("show")
@handles_errors
def show(
    code: Annotated[str, typer.Argument(help="A jurisdiction (HK, EU, SG) or a country (FR).")],
    as_json: AsJson = False,
) -> None:
    """Show a jurisdiction's effective rules, with their status and sources."""
    store = _rules(settings())
    rules = store.book.resolve(code)
    data = rules_json(rules)
    data["rules_version"] = store.book.version
    data["file_sha256"] = store.book.files[rules.code].sha256
    if as_json:
        print(json.dumps(data, indent=2, ensure_ascii=False))
        return
    table = Table(title=f"{rules.name} ({rules.code}) — {rules.status.value}", show_header=False)
    table.add_column(style="bold")
    table.add_column(overflow="fold")  # a Chinese notice has no spaces to wrap at
    table.add_row("launch date", str(rules.launch_date or "—"))
    table.add_row("status source", rules.status_source)
    if rules.notice:
        table.add_row("notice", rules.notice)
    for tag, text in rules.notice_translations.items():
        table.add_row(f"notice ({tag})", text)
    table.add_row("countries", " ".join(rules.countries))
    features = rules.features
    on = [f for f in ("wallet", "p2p", "merchant_payments", "rewards") if getattr(features, f)]
    table.add_row("features", ", ".join(on) or "none")
    table.add_row("discovery", ", ".join(features.discovery_categories) or "none")
    table.add_row("tokens", ", ".join(rules.tokens.allowed) or "none")
    for tier, limits in sorted(rules.tiers.items()):
        shown = " · ".join(
            f"{name} {value if value is not None else 'no limit'}"
            for name, value in (
                ("per transfer", limits.per_transfer),
                ("per day", limits.per_day),
                ("per month", limits.per_month),
                ("balance cap", limits.balance_cap),
            )
        )
        table.add_row(f"tier {tier} ({rules.currency})", shown)
    travel = rules.travel_rule
    table.add_row(
        "travel rule",
        f"from {travel.threshold} {travel.currency}; self-hosted proof above "
        f"{travel.self_hosted_proof_threshold} {travel.currency}",
    )
    table.add_row("recovery time-lock", f"{rules.recovery.timelock_hours} h")
    table.add_row("retention", f"{rules.retention.years} years")
    console.print(table)
    console.print(f"[dim]rules version {store.book.version}[/]")


def _address(text: str, what: str, *, sei_ok: bool = False) -> str:
    try:
        if sei_ok and text.strip().lower().startswith("sei1"):
            # Screened as the 20 bytes it names, as lists are.
            return str(parse_sei_address(text))
        return parse_evm_address(text)
    except InvalidAddress as exc:
        raise InvalidInput(f"{what}: {exc.problem}") from None


@compliance_app.command("check")
@handles_errors
def check(  # noqa: PLR0917 - each is a command-line option
    from_: Annotated[str, typer.Option("--from", help="The sender's 0x address.")],
    to: Annotated[str, typer.Option("--to", help="The recipient's 0x (or sei1) address.")],
    token: Annotated[str, typer.Option("--token", help="USDC or EURC.")],
    amount: Annotated[str, typer.Option("--amount", help="In whole tokens, e.g. 1500.")],
    country: Annotated[
        str | None, typer.Option("--country", help="Judge as a user of this country (FR, HK…).")
    ] = None,
    tier: Annotated[
        int | None, typer.Option("--tier", min=0, max=2, help="Judge at this identity tier.")
    ] = None,
    kind: Annotated[str, typer.Option("--kind", help="transfer, payment, refund…")] = "transfer",
    as_json: AsJson = False,
) -> None:
    """What the gate would decide for a movement, and which rule decided (nothing is recorded)."""
    config = settings()
    sender = _address(from_, "--from")
    recipient = _address(to, "--to", sei_ok=True)
    parsed = TokenAmount.parse(amount, TOKEN_DECIMALS, token.upper())
    if parsed.units <= 0:
        raise InvalidInput("--amount must be more than zero")
    service, engine = _service(config)
    try:
        if country is not None:
            service.book.resolve(country)  # an unknown code is bad input, not "not served"
        assert service.gate.directory is not None
        person = service.gate.directory.person_by_address(sender)
        movement = Movement(
            kind=kind,
            user_id=person.user_id if person else "cli-check",
            from_address=sender,
            to_address=recipient,
            symbol=token.upper(),
            decimals=TOKEN_DECIMALS,
            amount_units=parsed.units,
        )
        decision = service.gate.evaluate(movement, country=country, tier=tier)
    finally:
        engine.dispose()
    data = decision.to_json()
    data["amount"] = parsed.format()
    data["token"] = token.upper()
    if as_json:
        print(json.dumps(data, indent=2, ensure_ascii=False))
        return
    style = {"allow": "green", "deny": "red"}.get(str(decision.outcome), "yellow")
    console.print(f"[bold {style}]{decision.outcome}[/] by rule [bold]{decision.rule}[/]")
    if decision.reason:
        console.print(decision.reason)
    if decision.value is not None:
        value = Decimal(decision.value).quantize(Decimal("0.01"))
        console.print(
            f"[dim]{decision.jurisdiction} · tier {decision.tier} · worth {value} "
            f"{decision.currency}[/]"
        )


@compliance_app.command("refresh-lists")
@handles_errors
def refresh_lists(
    ofac: Annotated[
        Path | None, typer.Option("--ofac", help="OFAC's SDN.XML or SDN_ADVANCED.XML file.")
    ] = None,
    csv_file: Annotated[
        Path | None, typer.Option("--csv", help="A CSV list: a header row with 'address'.")
    ] = None,
    as_json: AsJson = False,
) -> None:
    """Load sanctions lists from files into the screening table (no network)."""
    if ofac is None and csv_file is None:
        raise InvalidInput("give --ofac FILE and/or --csv FILE")
    service, engine = _service(settings())
    try:
        loaded = service.refresh_lists(ofac=ofac, csv_file=csv_file)
    finally:
        engine.dispose()
    if as_json:
        print(
            json.dumps(
                [
                    {
                        "list": item.name,
                        "source": item.source,
                        "sha256": item.sha256,
                        "addresses": item.addresses,
                        "skipped_non_evm": item.skipped,
                    }
                    for item in loaded
                ],
                indent=2,
            )
        )
        return
    for item in loaded:
        console.print(
            f"{item.name}: {item.addresses} EVM addresses loaded from {item.source} "
            f"({item.skipped} non-EVM addresses skipped)"
        )
