"""The development webhook receiver's deliveries (``local`` only): dev_webhook_deliveries.

Revision ID: bb59cc3797ab
Revises: e4b7c1d9a2f3
Create Date: 2026-11-24 12:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "bb59cc3797ab"
down_revision: str | Sequence[str] | None = "e4b7c1d9a2f3"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Apply this revision."""
    op.create_table(
        "dev_webhook_deliveries",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("event_type", sa.String(length=64), nullable=True),
        sa.Column("event_id", sa.String(length=100), nullable=True),
        sa.Column("delivery_id", sa.String(length=100), nullable=True),
        sa.Column("headers", sa.Text(), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("signature", sa.String(length=16), nullable=False),
        sa.Column("endpoint_id", sa.String(length=32), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_dev_webhook_deliveries")),
    )
    op.create_index(
        op.f("ix_dev_webhook_deliveries_name"), "dev_webhook_deliveries", ["name"], unique=False
    )


def downgrade() -> None:
    """Revert this revision."""
    op.drop_index(op.f("ix_dev_webhook_deliveries_name"), table_name="dev_webhook_deliveries")
    op.drop_table("dev_webhook_deliveries")
