"""Relayer: several outbox rows settled by one sponsor transaction (the router's payBatch).

Revision ID: a5c3e8f1d2b9
Revises: bb59cc3797ab
Create Date: 2026-11-24 03:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "a5c3e8f1d2b9"
down_revision: str | Sequence[str] | None = "bb59cc3797ab"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Apply this revision."""
    op.create_table(
        "transfer_batch_members",
        sa.Column("chain_id", sa.BigInteger(), nullable=False),
        sa.Column("tx_hash", sa.String(length=66), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("transfer_id", sa.String(length=32), nullable=False),
        sa.ForeignKeyConstraint(
            ["transfer_id"],
            ["transfers.id"],
            name=op.f("fk_transfer_batch_members_transfer_id_transfers"),
        ),
        sa.PrimaryKeyConstraint(
            "chain_id", "tx_hash", "position", name=op.f("pk_transfer_batch_members")
        ),
    )
    op.create_index(
        "ix_transfer_batch_members_transfer",
        "transfer_batch_members",
        ["transfer_id"],
        unique=False,
    )


def downgrade() -> None:
    """Revert this revision."""
    op.drop_index("ix_transfer_batch_members_transfer", table_name="transfer_batch_members")
    op.drop_table("transfer_batch_members")
