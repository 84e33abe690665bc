"""Payments and refunds ride the relayer's outbox: transfer_router_calls, links from payments.

Revision ID: e4b7c1d9a2f3
Revises: d9a3e2c4f6b8
Create Date: 2026-11-24 00:50:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "e4b7c1d9a2f3"
down_revision: str | Sequence[str] | None = "d9a3e2c4f6b8"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_UINT256 = sa.String(78).with_variant(sa.Numeric(78, 0), "postgresql")


def upgrade() -> None:
    """Apply this revision."""
    op.create_table(
        "transfer_router_calls",
        sa.Column("transfer_id", sa.String(length=32), nullable=False),
        sa.Column(
            "kind",
            sa.Enum("pay", "refund", name="routercallkind", native_enum=False, length=10),
            nullable=False,
        ),
        sa.Column("router", sa.String(length=42), nullable=False),
        sa.Column("invoice_id", sa.String(length=66), nullable=False),
        sa.Column("merchant", sa.String(length=42), nullable=False),
        sa.Column("payment_amount_units", _UINT256, nullable=False),
        sa.Column("fee_units", _UINT256, nullable=False),
        sa.Column("payer", sa.String(length=42), nullable=True),
        sa.Column("refund_id", sa.String(length=66), nullable=True),
        sa.ForeignKeyConstraint(
            ["transfer_id"],
            ["transfers.id"],
            name=op.f("fk_transfer_router_calls_transfer_id_transfers"),
        ),
        sa.PrimaryKeyConstraint("transfer_id", name=op.f("pk_transfer_router_calls")),
    )
    for table in ("payment_attempts", "payment_refunds"):
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.add_column(sa.Column("transfer_id", sa.String(length=32), nullable=True))
            batch_op.create_index(
                batch_op.f(f"ix_{table}_transfer_id"), ["transfer_id"], unique=False
            )


def downgrade() -> None:
    """Revert this revision."""
    for table in ("payment_refunds", "payment_attempts"):
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.drop_index(batch_op.f(f"ix_{table}_transfer_id"))
            batch_op.drop_column("transfer_id")
    op.drop_table("transfer_router_calls")
