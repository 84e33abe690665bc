"""Payments: merchants, stores, terminals, staff, API keys, invoices, webhooks.

Revision ID: c8f2d1b3e5a7
Revises: b7e1c0a2d4f6
Create Date: 2026-11-24 00:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "c8f2d1b3e5a7"
down_revision: str | Sequence[str] | None = "b7e1c0a2d4f6"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Apply this revision."""
    op.create_table(
        "payment_events",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("merchant_id", sa.String(length=32), nullable=False),
        sa.Column("store_id", sa.String(length=32), nullable=False),
        sa.Column("invoice_id", sa.String(length=66), nullable=True),
        sa.Column("terminal_id", sa.String(length=32), nullable=True),
        sa.Column("type", sa.String(length=40), nullable=False),
        sa.Column("data", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_payment_events")),
    )
    op.create_index(
        "ix_payment_events_invoice", "payment_events", ["invoice_id", "id"], unique=False
    )
    op.create_index("ix_payment_events_store", "payment_events", ["store_id", "id"], unique=False)
    op.create_index(
        "ix_payment_events_terminal", "payment_events", ["terminal_id", "id"], unique=False
    )
    op.create_table(
        "merchants",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("owner_user_id", sa.String(length=32), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("payout_address", sa.String(length=42), nullable=False),
        sa.Column("payout_wallet_id", sa.String(length=64), nullable=True),
        sa.Column("settlement_symbol", sa.String(length=16), nullable=False),
        sa.Column("fee_bps", sa.Integer(), nullable=True),
        sa.Column(
            "status",
            sa.Enum("active", "suspended", name="merchantstatus", native_enum=False, length=16),
            nullable=False,
        ),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["owner_user_id"], ["users.id"], name=op.f("fk_merchants_owner_user_id_users")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_merchants")),
        sa.UniqueConstraint("owner_user_id", name=op.f("uq_merchants_owner_user_id")),
    )
    op.create_table(
        "merchant_stores",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("merchant_id", sa.String(length=32), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("address", sa.String(length=500), nullable=False),
        sa.Column("country", sa.String(length=2), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("logo_url", sa.String(length=2000), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["merchant_id"], ["merchants.id"], name=op.f("fk_merchant_stores_merchant_id_merchants")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_merchant_stores")),
    )
    op.create_index(
        "ix_merchant_stores_merchant",
        "merchant_stores",
        ["merchant_id", "created_at"],
        unique=False,
    )
    op.create_table(
        "merchant_api_keys",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("merchant_id", sa.String(length=32), nullable=False),
        sa.Column("store_id", sa.String(length=32), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("prefix", sa.String(length=16), nullable=False),
        sa.Column("secret_hash", sa.String(length=64), nullable=False),
        sa.Column("scopes", sa.String(length=200), nullable=False),
        sa.Column("created_by_user_id", sa.String(length=32), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_used_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["merchant_id"],
            ["merchants.id"],
            name=op.f("fk_merchant_api_keys_merchant_id_merchants"),
        ),
        sa.ForeignKeyConstraint(
            ["store_id"],
            ["merchant_stores.id"],
            name=op.f("fk_merchant_api_keys_store_id_merchant_stores"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_merchant_api_keys")),
        sa.UniqueConstraint("secret_hash", name=op.f("uq_merchant_api_keys_secret_hash")),
    )
    op.create_index(
        op.f("ix_merchant_api_keys_store_id"), "merchant_api_keys", ["store_id"], unique=False
    )
    op.create_table(
        "merchant_staff",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("merchant_id", sa.String(length=32), nullable=False),
        sa.Column("user_id", sa.String(length=32), nullable=False),
        sa.Column(
            "role",
            sa.Enum("owner", "manager", "cashier", name="staffrole", native_enum=False, length=16),
            nullable=False,
        ),
        sa.Column("store_id", sa.String(length=32), nullable=True),
        sa.Column(
            "refund_limit_units",
            sa.String(78).with_variant(sa.Numeric(78, 0), "postgresql"),
            nullable=True,
        ),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["merchant_id"], ["merchants.id"], name=op.f("fk_merchant_staff_merchant_id_merchants")
        ),
        sa.ForeignKeyConstraint(
            ["store_id"],
            ["merchant_stores.id"],
            name=op.f("fk_merchant_staff_store_id_merchant_stores"),
        ),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_merchant_staff_user_id_users")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_merchant_staff")),
        sa.UniqueConstraint(
            "merchant_id", "user_id", name=op.f("uq_merchant_staff_merchant_id_user_id")
        ),
    )
    op.create_index(op.f("ix_merchant_staff_user_id"), "merchant_staff", ["user_id"], unique=False)
    op.create_table(
        "merchant_terminals",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("merchant_id", sa.String(length=32), nullable=False),
        sa.Column("store_id", sa.String(length=32), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["merchant_id"],
            ["merchants.id"],
            name=op.f("fk_merchant_terminals_merchant_id_merchants"),
        ),
        sa.ForeignKeyConstraint(
            ["store_id"],
            ["merchant_stores.id"],
            name=op.f("fk_merchant_terminals_store_id_merchant_stores"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_merchant_terminals")),
    )
    op.create_index(
        op.f("ix_merchant_terminals_store_id"), "merchant_terminals", ["store_id"], unique=False
    )
    op.create_table(
        "webhook_endpoints",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("merchant_id", sa.String(length=32), nullable=False),
        sa.Column("store_id", sa.String(length=32), nullable=False),
        sa.Column("url", sa.String(length=2000), nullable=False),
        sa.Column("description", sa.String(length=200), nullable=False),
        sa.Column("event_types", sa.String(length=1000), nullable=False),
        sa.Column("secret", sa.String(length=100), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("disabled_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["merchant_id"],
            ["merchants.id"],
            name=op.f("fk_webhook_endpoints_merchant_id_merchants"),
        ),
        sa.ForeignKeyConstraint(
            ["store_id"],
            ["merchant_stores.id"],
            name=op.f("fk_webhook_endpoints_store_id_merchant_stores"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_webhook_endpoints")),
    )
    op.create_index(
        op.f("ix_webhook_endpoints_store_id"), "webhook_endpoints", ["store_id"], unique=False
    )
    op.create_table(
        "invoices",
        sa.Column("id", sa.String(length=66), nullable=False),
        sa.Column("merchant_id", sa.String(length=32), nullable=False),
        sa.Column("store_id", sa.String(length=32), nullable=False),
        sa.Column("terminal_id", sa.String(length=32), nullable=True),
        sa.Column("chain_id", sa.BigInteger(), nullable=False),
        sa.Column("router", sa.String(length=42), nullable=False),
        sa.Column("token", sa.String(length=42), nullable=False),
        sa.Column("symbol", sa.String(length=16), nullable=False),
        sa.Column("decimals", sa.Integer(), nullable=False),
        sa.Column("merchant_address", sa.String(length=42), nullable=False),
        sa.Column(
            "amount_units",
            sa.String(78).with_variant(sa.Numeric(78, 0), "postgresql"),
            nullable=False,
        ),
        sa.Column(
            "fee_units", sa.String(78).with_variant(sa.Numeric(78, 0), "postgresql"), nullable=False
        ),
        sa.Column("fee_bps", sa.Integer(), nullable=False),
        sa.Column("payment_id", sa.String(length=66), nullable=False),
        sa.Column("price_amount", sa.String(length=40), nullable=False),
        sa.Column("price_currency", sa.String(length=8), nullable=False),
        sa.Column("rate", sa.String(length=40), nullable=False),
        sa.Column("rate_source", sa.String(length=64), nullable=False),
        sa.Column("rate_as_of", sa.String(length=10), nullable=False),
        sa.Column("order_id", sa.String(length=128), nullable=True),
        sa.Column("metadata", sa.JSON(), nullable=False),
        sa.Column(
            "status",
            sa.Enum(
                "new",
                "processing",
                "settled",
                "expired",
                "invalid",
                "refunded",
                "partially_refunded",
                name="invoicestatus",
                native_enum=False,
                length=20,
            ),
            nullable=False,
        ),
        sa.Column("paid_late", sa.Boolean(), nullable=False),
        sa.Column("paid_over", sa.Boolean(), nullable=False),
        sa.Column("paid_partial", sa.Boolean(), nullable=False),
        sa.Column("idempotency_key", sa.String(length=255), nullable=True),
        sa.Column("request_hash", sa.String(length=64), nullable=True),
        sa.Column("created_by", sa.String(length=64), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("claim_attempt_id", sa.String(length=32), nullable=True),
        sa.Column("claim_expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("attempt_id", sa.String(length=32), nullable=True),
        sa.Column("payer_user_id", sa.String(length=32), nullable=True),
        sa.Column("payer_address", sa.String(length=42), nullable=True),
        sa.Column("processing_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("settled_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("tx_hash", sa.String(length=66), nullable=True),
        sa.Column("block_number", sa.BigInteger(), nullable=True),
        sa.Column(
            "paid_units",
            sa.String(78).with_variant(sa.Numeric(78, 0), "postgresql"),
            nullable=False,
        ),
        sa.Column(
            "refunded_units",
            sa.String(78).with_variant(sa.Numeric(78, 0), "postgresql"),
            nullable=False,
        ),
        sa.Column("failure_code", sa.String(length=64), nullable=True),
        sa.Column("failure_reason", sa.String(length=500), nullable=True),
        sa.ForeignKeyConstraint(
            ["merchant_id"], ["merchants.id"], name=op.f("fk_invoices_merchant_id_merchants")
        ),
        sa.ForeignKeyConstraint(
            ["store_id"], ["merchant_stores.id"], name=op.f("fk_invoices_store_id_merchant_stores")
        ),
        sa.ForeignKeyConstraint(
            ["terminal_id"],
            ["merchant_terminals.id"],
            name=op.f("fk_invoices_terminal_id_merchant_terminals"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_invoices")),
        sa.UniqueConstraint("payment_id", name=op.f("uq_invoices_payment_id")),
        sa.UniqueConstraint(
            "store_id", "idempotency_key", name=op.f("uq_invoices_store_id_idempotency_key")
        ),
    )
    op.create_index(
        "ix_invoices_expiry", "invoices", ["chain_id", "status", "expires_at"], unique=False
    )
    op.create_index(
        "ix_invoices_merchant_created", "invoices", ["merchant_id", "created_at"], unique=False
    )
    op.create_index(
        "ix_invoices_store_created", "invoices", ["store_id", "created_at"], unique=False
    )
    op.create_index(op.f("ix_invoices_terminal_id"), "invoices", ["terminal_id"], unique=False)
    op.create_table(
        "webhook_deliveries",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("endpoint_id", sa.String(length=32), nullable=False),
        sa.Column("merchant_id", sa.String(length=32), nullable=False),
        sa.Column("event_id", sa.BigInteger(), nullable=True),
        sa.Column("event_type", sa.String(length=40), nullable=False),
        sa.Column("payload", sa.Text(), nullable=False),
        sa.Column(
            "status",
            sa.Enum(
                "pending",
                "delivered",
                "failed",
                name="deliverystatus",
                native_enum=False,
                length=16,
            ),
            nullable=False,
        ),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_status_code", sa.Integer(), nullable=True),
        sa.Column("last_error", sa.String(length=300), nullable=True),
        sa.Column("redelivery_of", sa.String(length=32), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("delivered_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["endpoint_id"],
            ["webhook_endpoints.id"],
            name=op.f("fk_webhook_deliveries_endpoint_id_webhook_endpoints"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_webhook_deliveries")),
    )
    op.create_index(
        "ix_webhook_deliveries_due",
        "webhook_deliveries",
        ["status", "next_attempt_at"],
        unique=False,
    )
    op.create_index(
        "ix_webhook_deliveries_endpoint",
        "webhook_deliveries",
        ["endpoint_id", "created_at"],
        unique=False,
    )
    op.create_table(
        "payment_attempts",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("invoice_id", sa.String(length=66), nullable=False),
        sa.Column("merchant_id", sa.String(length=32), nullable=False),
        sa.Column("payer_user_id", sa.String(length=32), nullable=False),
        sa.Column("payer_wallet_id", sa.String(length=64), nullable=False),
        sa.Column("payer_address", sa.String(length=42), nullable=False),
        sa.Column("chain_id", sa.BigInteger(), nullable=False),
        sa.Column("router", sa.String(length=42), nullable=False),
        sa.Column("token", sa.String(length=42), nullable=False),
        sa.Column(
            "amount_units",
            sa.String(78).with_variant(sa.Numeric(78, 0), "postgresql"),
            nullable=False,
        ),
        sa.Column(
            "fee_units", sa.String(78).with_variant(sa.Numeric(78, 0), "postgresql"), nullable=False
        ),
        sa.Column("valid_after", sa.BigInteger(), nullable=False),
        sa.Column("valid_before", sa.BigInteger(), nullable=False),
        sa.Column("intent", sa.Text(), nullable=False),
        sa.Column("intent_digest", sa.String(length=64), nullable=False),
        sa.Column("signature", sa.Text(), nullable=True),
        sa.Column(
            "status",
            sa.Enum(
                "awaiting_approval",
                "signed",
                "submitted",
                "settled",
                "failed",
                "abandoned",
                name="attemptstatus",
                native_enum=False,
                length=20,
            ),
            nullable=False,
        ),
        sa.Column("failure_code", sa.String(length=64), nullable=True),
        sa.Column("failure_reason", sa.String(length=500), nullable=True),
        sa.Column("tx_hash", sa.String(length=66), nullable=True),
        sa.Column("sponsor", sa.String(length=42), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("block_number", sa.BigInteger(), nullable=True),
        sa.Column("gas_used", sa.BigInteger(), nullable=True),
        sa.Column(
            "gas_cost_wei",
            sa.String(78).with_variant(sa.Numeric(78, 0), "postgresql"),
            nullable=True,
        ),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("delay_reason", sa.String(length=200), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("signed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("submitted_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("settled_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["invoice_id"], ["invoices.id"], name=op.f("fk_payment_attempts_invoice_id_invoices")
        ),
        sa.ForeignKeyConstraint(
            ["payer_user_id"], ["users.id"], name=op.f("fk_payment_attempts_payer_user_id_users")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_payment_attempts")),
    )
    op.create_index(
        "ix_payment_attempts_invoice",
        "payment_attempts",
        ["invoice_id", "payer_user_id"],
        unique=False,
    )
    op.create_index(
        "ix_payment_attempts_outbox",
        "payment_attempts",
        ["chain_id", "status", "next_attempt_at", "created_at"],
        unique=False,
    )
    op.create_index(
        "ix_payment_attempts_payer", "payment_attempts", ["payer_user_id", "status"], unique=False
    )
    op.create_table(
        "payment_refunds",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("refund_id", sa.String(length=66), nullable=False),
        sa.Column("invoice_id", sa.String(length=66), nullable=False),
        sa.Column("merchant_id", sa.String(length=32), nullable=False),
        sa.Column("store_id", sa.String(length=32), nullable=False),
        sa.Column("requested_by", sa.String(length=64), nullable=False),
        sa.Column("payer_address", sa.String(length=42), nullable=False),
        sa.Column(
            "amount_units",
            sa.String(78).with_variant(sa.Numeric(78, 0), "postgresql"),
            nullable=False,
        ),
        sa.Column("reason", sa.String(length=200), nullable=False),
        sa.Column("chain_id", sa.BigInteger(), nullable=False),
        sa.Column("router", sa.String(length=42), nullable=False),
        sa.Column("token", sa.String(length=42), nullable=False),
        sa.Column("valid_after", sa.BigInteger(), nullable=False),
        sa.Column("valid_before", sa.BigInteger(), nullable=False),
        sa.Column("intent", sa.Text(), nullable=False),
        sa.Column("intent_digest", sa.String(length=64), nullable=False),
        sa.Column("signature", sa.Text(), nullable=True),
        sa.Column(
            "status",
            sa.Enum(
                "awaiting_approval",
                "signed",
                "submitted",
                "settled",
                "failed",
                "expired",
                name="refundstatus",
                native_enum=False,
                length=20,
            ),
            nullable=False,
        ),
        sa.Column("idempotency_key", sa.String(length=255), nullable=True),
        sa.Column("request_hash", sa.String(length=64), nullable=True),
        sa.Column("failure_code", sa.String(length=64), nullable=True),
        sa.Column("failure_reason", sa.String(length=500), nullable=True),
        sa.Column("tx_hash", sa.String(length=66), nullable=True),
        sa.Column("sponsor", sa.String(length=42), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("block_number", sa.BigInteger(), nullable=True),
        sa.Column("gas_used", sa.BigInteger(), nullable=True),
        sa.Column(
            "gas_cost_wei",
            sa.String(78).with_variant(sa.Numeric(78, 0), "postgresql"),
            nullable=True,
        ),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("delay_reason", sa.String(length=200), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("signed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("submitted_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("settled_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["invoice_id"], ["invoices.id"], name=op.f("fk_payment_refunds_invoice_id_invoices")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_payment_refunds")),
        sa.UniqueConstraint(
            "invoice_id",
            "idempotency_key",
            name=op.f("uq_payment_refunds_invoice_id_idempotency_key"),
        ),
        sa.UniqueConstraint("refund_id", name=op.f("uq_payment_refunds_refund_id")),
    )
    op.create_index(
        op.f("ix_payment_refunds_invoice_id"), "payment_refunds", ["invoice_id"], unique=False
    )
    op.create_index(
        "ix_payment_refunds_outbox",
        "payment_refunds",
        ["chain_id", "status", "next_attempt_at", "created_at"],
        unique=False,
    )
    op.create_index(
        "ix_payment_refunds_store_settled",
        "payment_refunds",
        ["store_id", "settled_at"],
        unique=False,
    )
    op.create_table(
        "webhook_delivery_attempts",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("delivery_id", sa.String(length=32), nullable=False),
        sa.Column("attempted_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("status_code", sa.Integer(), nullable=True),
        sa.Column("latency_ms", sa.Integer(), nullable=False),
        sa.Column("error", sa.String(length=300), nullable=True),
        sa.ForeignKeyConstraint(
            ["delivery_id"],
            ["webhook_deliveries.id"],
            name=op.f("fk_webhook_delivery_attempts_delivery_id_webhook_deliveries"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_webhook_delivery_attempts")),
    )
    op.create_index(
        op.f("ix_webhook_delivery_attempts_delivery_id"),
        "webhook_delivery_attempts",
        ["delivery_id"],
        unique=False,
    )

    # -- invoice deposit addresses (payments.deposit_models) -----------------------------------
    op.create_table(
        "invoice_deposits",
        sa.Column("invoice_id", sa.String(length=66), nullable=False),
        sa.Column("merchant_id", sa.String(length=32), nullable=False),
        sa.Column("chain_id", sa.BigInteger(), nullable=False),
        sa.Column("contract", sa.String(length=42), nullable=False),
        sa.Column("router", sa.String(length=42), nullable=False),
        sa.Column("address", sa.String(length=42), nullable=False),
        sa.Column("token", sa.String(length=42), nullable=False),
        sa.Column("payment_id", sa.String(length=66), nullable=False),
        sa.Column(
            "received_units",
            sa.String(78).with_variant(sa.Numeric(78, 0), "postgresql"),
            nullable=False,
        ),
        sa.Column(
            "swept_units",
            sa.String(78).with_variant(sa.Numeric(78, 0), "postgresql"),
            nullable=False,
        ),
        sa.Column(
            "fee_taken_units",
            sa.String(78).with_variant(sa.Numeric(78, 0), "postgresql"),
            nullable=False,
        ),
        sa.Column("sweep_due_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("sweep_tx_hash", sa.String(length=66), nullable=True),
        sa.Column("sweep_attempts", sa.Integer(), nullable=False),
        sa.Column("last_error", sa.String(length=300), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["invoice_id"], ["invoices.id"], name=op.f("fk_invoice_deposits_invoice_id_invoices")
        ),
        sa.PrimaryKeyConstraint("invoice_id", name=op.f("pk_invoice_deposits")),
        sa.UniqueConstraint(
            "chain_id", "address", name=op.f("uq_invoice_deposits_chain_id_address")
        ),
    )
    op.create_index(
        "ix_invoice_deposits_due", "invoice_deposits", ["chain_id", "sweep_due_at"], unique=False
    )
    op.create_index(
        "ix_invoice_deposits_in_flight",
        "invoice_deposits",
        ["chain_id", "sweep_tx_hash"],
        unique=False,
    )
    op.create_table(
        "deposit_receipts",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("invoice_id", sa.String(length=66), nullable=False),
        sa.Column("merchant_id", sa.String(length=32), nullable=False),
        sa.Column("chain_id", sa.BigInteger(), nullable=False),
        sa.Column("token", sa.String(length=42), nullable=False),
        sa.Column("payer", sa.String(length=42), nullable=False),
        sa.Column(
            "value_units",
            sa.String(78).with_variant(sa.Numeric(78, 0), "postgresql"),
            nullable=False,
        ),
        sa.Column(
            "kind",
            sa.Enum(
                "partial",
                "settling",
                "over",
                "other_token",
                name="depositkind",
                native_enum=False,
                length=16,
            ),
            nullable=False,
        ),
        sa.Column("tx_hash", sa.String(length=66), nullable=False),
        sa.Column("block_number", sa.BigInteger(), nullable=False),
        sa.Column("block_hash", sa.String(length=66), nullable=False),
        sa.Column("log_index", sa.Integer(), nullable=False),
        sa.Column("paid_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["invoice_id"],
            ["invoice_deposits.invoice_id"],
            name=op.f("fk_deposit_receipts_invoice_id_invoice_deposits"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_deposit_receipts")),
        sa.UniqueConstraint(
            "chain_id",
            "block_hash",
            "log_index",
            name=op.f("uq_deposit_receipts_chain_id_block_hash_log_index"),
        ),
    )
    op.create_index(
        "ix_deposit_receipts_invoice", "deposit_receipts", ["invoice_id", "id"], unique=False
    )


def downgrade() -> None:
    """Revert this revision."""
    # -- invoice deposit addresses first: they refer to invoices -------------------------------
    op.drop_index("ix_deposit_receipts_invoice", table_name="deposit_receipts")
    op.drop_table("deposit_receipts")
    op.drop_index("ix_invoice_deposits_in_flight", table_name="invoice_deposits")
    op.drop_index("ix_invoice_deposits_due", table_name="invoice_deposits")
    op.drop_table("invoice_deposits")
    op.drop_index(
        "ix_webhook_delivery_attempts_delivery_id", table_name="webhook_delivery_attempts"
    )
    op.drop_table("webhook_delivery_attempts")
    op.drop_index("ix_payment_refunds_store_settled", table_name="payment_refunds")
    op.drop_index("ix_payment_refunds_outbox", table_name="payment_refunds")
    op.drop_index("ix_payment_refunds_invoice_id", table_name="payment_refunds")
    op.drop_table("payment_refunds")
    op.drop_index("ix_payment_attempts_payer", table_name="payment_attempts")
    op.drop_index("ix_payment_attempts_outbox", table_name="payment_attempts")
    op.drop_index("ix_payment_attempts_invoice", table_name="payment_attempts")
    op.drop_table("payment_attempts")
    op.drop_index("ix_webhook_deliveries_endpoint", table_name="webhook_deliveries")
    op.drop_index("ix_webhook_deliveries_due", table_name="webhook_deliveries")
    op.drop_table("webhook_deliveries")
    op.drop_index("ix_invoices_terminal_id", table_name="invoices")
    op.drop_index("ix_invoices_store_created", table_name="invoices")
    op.drop_index("ix_invoices_merchant_created", table_name="invoices")
    op.drop_index("ix_invoices_expiry", table_name="invoices")
    op.drop_table("invoices")
    op.drop_index("ix_webhook_endpoints_store_id", table_name="webhook_endpoints")
    op.drop_table("webhook_endpoints")
    op.drop_index("ix_merchant_terminals_store_id", table_name="merchant_terminals")
    op.drop_table("merchant_terminals")
    op.drop_index("ix_merchant_staff_user_id", table_name="merchant_staff")
    op.drop_table("merchant_staff")
    op.drop_index("ix_merchant_api_keys_store_id", table_name="merchant_api_keys")
    op.drop_table("merchant_api_keys")
    op.drop_index("ix_merchant_stores_merchant", table_name="merchant_stores")
    op.drop_table("merchant_stores")
    op.drop_table("merchants")
    op.drop_index("ix_payment_events_terminal", table_name="payment_events")
    op.drop_index("ix_payment_events_store", table_name="payment_events")
    op.drop_index("ix_payment_events_invoice", table_name="payment_events")
    op.drop_table("payment_events")
