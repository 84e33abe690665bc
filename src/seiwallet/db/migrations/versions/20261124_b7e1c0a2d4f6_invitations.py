"""Invitations: money sent to an alias that has no wallet yet.

Revision ID: b7e1c0a2d4f6
Revises: 17a1a247b660
Create Date: 2026-11-24 00:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "b7e1c0a2d4f6"
down_revision: str | Sequence[str] | None = "17a1a247b660"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Apply this revision."""
    op.create_table(
        "transfer_invitations",
        sa.Column("transfer_id", sa.String(length=32), nullable=False),
        sa.Column("user_id", sa.String(length=32), nullable=False),
        sa.Column("chain_id", sa.BigInteger(), nullable=False),
        sa.Column("escrow", sa.String(length=42), nullable=False),
        sa.Column("invitation_id", sa.String(length=66), nullable=False),
        sa.Column("alias_kind", sa.String(length=8), nullable=False),
        sa.Column("alias", sa.String(length=320), nullable=False),
        sa.Column("salt", sa.String(length=66), nullable=False),
        sa.Column("claim_hash", sa.String(length=66), nullable=False),
        sa.Column("deadline", sa.BigInteger(), nullable=False),
        sa.Column(
            "status",
            sa.Enum(
                "pending",
                "open",
                "released",
                "reclaimed",
                name="invitationstatus",
                native_enum=False,
                length=16,
            ),
            nullable=False,
        ),
        sa.Column("recipient_user_id", sa.String(length=32), nullable=True),
        sa.Column("recipient_address", sa.String(length=42), nullable=True),
        sa.Column(
            "action",
            sa.Enum(
                "register",
                "release",
                "reclaim",
                name="invitationaction",
                native_enum=False,
                length=16,
            ),
            nullable=True,
        ),
        sa.Column("action_tx_hash", sa.String(length=66), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_error", sa.String(length=300), nullable=True),
        sa.Column("created_tx_hash", sa.String(length=66), nullable=True),
        sa.Column("settled_tx_hash", sa.String(length=66), nullable=True),
        sa.Column("settled_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("invitee_notified_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("sender_notified", sa.String(length=16), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["transfer_id"], ["transfers.id"]),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"]),
        sa.PrimaryKeyConstraint("transfer_id"),
        sa.UniqueConstraint("chain_id", "invitation_id"),
    )
    with op.batch_alter_table("transfer_invitations", schema=None) as batch_op:
        batch_op.create_index("ix_transfer_invitations_alias", ["alias"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_transfer_invitations_recipient_user_id"),
            ["recipient_user_id"],
            unique=False,
        )
        batch_op.create_index(
            "ix_transfer_invitations_user_created", ["user_id", "created_at"], unique=False
        )
        batch_op.create_index(
            "ix_transfer_invitations_work", ["chain_id", "status", "deadline"], unique=False
        )


def downgrade() -> None:
    """Revert this revision."""
    with op.batch_alter_table("transfer_invitations", schema=None) as batch_op:
        batch_op.drop_index("ix_transfer_invitations_work")
        batch_op.drop_index("ix_transfer_invitations_user_created")
        batch_op.drop_index(batch_op.f("ix_transfer_invitations_recipient_user_id"))
        batch_op.drop_index("ix_transfer_invitations_alias")
    op.drop_table("transfer_invitations")
