"""Compliance: jurisdictions, identity tiers, decisions, screening lists.

Revision ID: d9a3e2c4f6b8
Revises: c8f2d1b3e5a7
Create Date: 2026-11-24 00:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "d9a3e2c4f6b8"
down_revision: str | Sequence[str] | None = "c8f2d1b3e5a7"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Apply this revision."""
    op.create_table(
        "compliance_alerts",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("severity", sa.String(length=8), nullable=False),
        sa.Column("user_id", sa.String(length=32), nullable=True),
        sa.Column("decision_id", sa.String(length=32), nullable=True),
        sa.Column("address", sa.String(length=64), nullable=True),
        sa.Column("detail", sa.String(length=600), nullable=False),
        sa.Column("acknowledged_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("acknowledged_by", sa.String(length=320), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_compliance_alerts")),
    )
    op.create_index(
        op.f("ix_compliance_alerts_created_at"), "compliance_alerts", ["created_at"], unique=False
    )
    op.create_index(
        op.f("ix_compliance_alerts_user_id"), "compliance_alerts", ["user_id"], unique=False
    )
    op.create_table(
        "compliance_decisions",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("user_id", sa.String(length=32), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("outcome", sa.String(length=20), nullable=False),
        sa.Column("rule", sa.String(length=64), nullable=False),
        sa.Column("reason", sa.String(length=600), nullable=False),
        sa.Column("jurisdiction", sa.String(length=8), nullable=True),
        sa.Column("country", sa.String(length=2), nullable=True),
        sa.Column("tier", sa.Integer(), nullable=True),
        sa.Column("from_address", sa.String(length=64), nullable=False),
        sa.Column("to_address", sa.String(length=64), nullable=False),
        sa.Column("symbol", sa.String(length=16), nullable=False),
        sa.Column(
            "amount_units",
            sa.String(78).with_variant(sa.Numeric(78, 0), "postgresql"),
            nullable=False,
        ),
        sa.Column("value_minor", sa.BigInteger(), nullable=True),
        sa.Column("currency", sa.String(length=3), nullable=True),
        sa.Column("needs", sa.String(length=300), nullable=False),
        sa.Column("reference", sa.String(length=255), nullable=True),
        sa.Column("travel", sa.Text(), nullable=True),
        sa.Column("rules_version", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_compliance_decisions")),
    )
    op.create_index(
        op.f("ix_compliance_decisions_created_at"),
        "compliance_decisions",
        ["created_at"],
        unique=False,
    )
    op.create_index(
        op.f("ix_compliance_decisions_jurisdiction"),
        "compliance_decisions",
        ["jurisdiction"],
        unique=False,
    )
    op.create_index(
        op.f("ix_compliance_decisions_outcome"), "compliance_decisions", ["outcome"], unique=False
    )
    op.create_index(
        op.f("ix_compliance_decisions_user_id"), "compliance_decisions", ["user_id"], unique=False
    )
    op.create_table(
        "compliance_rule_versions",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("jurisdiction", sa.String(length=8), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("content", sa.Text(), nullable=False),
        sa.Column("loaded_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_compliance_rule_versions")),
    )
    op.create_index(
        op.f("ix_compliance_rule_versions_jurisdiction"),
        "compliance_rule_versions",
        ["jurisdiction"],
        unique=False,
    )
    op.create_table(
        "compliance_sanctioned_addresses",
        sa.Column("list_name", sa.String(length=32), nullable=False),
        sa.Column("address", sa.String(length=40), nullable=False),
        sa.Column("written", sa.String(length=120), nullable=False),
        sa.Column("entry", sa.String(length=300), nullable=False),
        sa.Column("reference", sa.String(length=64), nullable=False),
        sa.Column("asset", sa.String(length=32), nullable=False),
        sa.PrimaryKeyConstraint(
            "list_name", "address", name=op.f("pk_compliance_sanctioned_addresses")
        ),
    )
    op.create_index(
        op.f("ix_compliance_sanctioned_addresses_address"),
        "compliance_sanctioned_addresses",
        ["address"],
        unique=False,
    )
    op.create_table(
        "compliance_sanctions_lists",
        sa.Column("name", sa.String(length=32), nullable=False),
        sa.Column("source", sa.String(length=500), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("addresses", sa.Integer(), nullable=False),
        sa.Column("skipped", sa.Integer(), nullable=False),
        sa.Column("loaded_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_compliance_sanctions_lists")),
    )
    op.create_table(
        "compliance_travel_rule",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("user_id", sa.String(length=32), nullable=False),
        sa.Column("address", sa.String(length=42), nullable=False),
        sa.Column("wallet_type", sa.String(length=16), nullable=False),
        sa.Column("provider_name", sa.String(length=200), nullable=False),
        sa.Column("beneficiary_name", sa.String(length=200), nullable=False),
        sa.Column("beneficiary_is_originator", sa.Boolean(), nullable=False),
        sa.Column("beneficiary_country", sa.String(length=2), nullable=True),
        sa.Column("challenge", sa.Text(), nullable=True),
        sa.Column("challenge_expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("proof_signature", sa.String(length=200), nullable=True),
        sa.Column("proven_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_compliance_travel_rule")),
        sa.UniqueConstraint(
            "user_id", "address", name=op.f("uq_compliance_travel_rule_user_id_address")
        ),
    )
    op.create_index(
        op.f("ix_compliance_travel_rule_user_id"),
        "compliance_travel_rule",
        ["user_id"],
        unique=False,
    )
    op.create_table(
        "compliance_usage",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("user_id", sa.String(length=32), nullable=False),
        sa.Column("jurisdiction", sa.String(length=8), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("value_minor", sa.BigInteger(), nullable=False),
        sa.Column("status", sa.String(length=10), nullable=False),
        sa.Column("reference", sa.String(length=255), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("settled_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_compliance_usage")),
    )
    op.create_index(
        op.f("ix_compliance_usage_reference"), "compliance_usage", ["reference"], unique=False
    )
    op.create_index(
        "ix_compliance_usage_user_id_created_at",
        "compliance_usage",
        ["user_id", "created_at"],
        unique=False,
    )
    op.create_table(
        "compliance_profiles",
        sa.Column("user_id", sa.String(length=32), nullable=False),
        sa.Column("country", sa.String(length=2), nullable=True),
        sa.Column("assigned_by", sa.String(length=320), nullable=True),
        sa.Column("assigned_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("kyc_status", sa.String(length=16), nullable=False),
        sa.Column("kyc_provider", sa.String(length=32), nullable=True),
        sa.Column("kyc_reference", sa.String(length=128), nullable=True),
        sa.Column("kyc_verified_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_compliance_profiles_user_id_users")
        ),
        sa.PrimaryKeyConstraint("user_id", name=op.f("pk_compliance_profiles")),
    )


def downgrade() -> None:
    """Revert this revision."""
    op.drop_table("compliance_profiles")
    op.drop_index("ix_compliance_usage_user_id_created_at", table_name="compliance_usage")
    op.drop_index(op.f("ix_compliance_usage_reference"), table_name="compliance_usage")
    op.drop_table("compliance_usage")
    op.drop_index(op.f("ix_compliance_travel_rule_user_id"), table_name="compliance_travel_rule")
    op.drop_table("compliance_travel_rule")
    op.drop_table("compliance_sanctions_lists")
    op.drop_index(
        op.f("ix_compliance_sanctioned_addresses_address"),
        table_name="compliance_sanctioned_addresses",
    )
    op.drop_table("compliance_sanctioned_addresses")
    op.drop_index(
        op.f("ix_compliance_rule_versions_jurisdiction"), table_name="compliance_rule_versions"
    )
    op.drop_table("compliance_rule_versions")
    op.drop_index(op.f("ix_compliance_decisions_user_id"), table_name="compliance_decisions")
    op.drop_index(op.f("ix_compliance_decisions_outcome"), table_name="compliance_decisions")
    op.drop_index(op.f("ix_compliance_decisions_jurisdiction"), table_name="compliance_decisions")
    op.drop_index(op.f("ix_compliance_decisions_created_at"), table_name="compliance_decisions")
    op.drop_table("compliance_decisions")
    op.drop_index(op.f("ix_compliance_alerts_user_id"), table_name="compliance_alerts")
    op.drop_index(op.f("ix_compliance_alerts_created_at"), table_name="compliance_alerts")
    op.drop_table("compliance_alerts")
