"""Refund approvers: staff members' passkeys on the merchant's payout wallet.

``user_authenticators.wallet_id`` says which wallet a passkey approves for (``NULL``: the user's
own); ``merchant_refund_approvers`` keeps a staff member's refund passkey from its registration
to the owner's approval (and its removal).

Revision ID: b3d5f7a9c1e2
Revises: a7e2c9d4b1f6
Create Date: 2026-11-24 09:40:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "b3d5f7a9c1e2"
down_revision: str | Sequence[str] | None = "a7e2c9d4b1f6"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Apply this revision."""
    with op.batch_alter_table("user_authenticators") as batch:
        batch.add_column(sa.Column("wallet_id", sa.String(length=64), nullable=True))
    op.create_table(
        "merchant_refund_approvers",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("merchant_id", sa.String(length=32), nullable=False),
        sa.Column("staff_id", sa.String(length=32), nullable=False),
        sa.Column("user_id", sa.String(length=32), nullable=False),
        sa.Column(
            "status",
            sa.Enum(
                "awaiting_owner",
                "active",
                "revoked",
                name="approverstatus",
                native_enum=False,
                length=16,
            ),
            nullable=False,
        ),
        sa.Column("registration", sa.Text(), nullable=False),
        sa.Column(
            "max_amount_units",
            sa.String(78).with_variant(sa.Numeric(78, 0), "postgresql"),
            nullable=True,
        ),
        sa.Column("symbol", sa.String(length=16), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("approved_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["merchant_id"],
            ["merchants.id"],
            name=op.f("fk_merchant_refund_approvers_merchant_id_merchants"),
        ),
        sa.ForeignKeyConstraint(
            ["staff_id"],
            ["merchant_staff.id"],
            name=op.f("fk_merchant_refund_approvers_staff_id_merchant_staff"),
        ),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_merchant_refund_approvers_user_id_users")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_merchant_refund_approvers")),
    )
    op.create_index(
        "ix_merchant_refund_approvers_merchant",
        "merchant_refund_approvers",
        ["merchant_id", "status"],
        unique=False,
    )
    op.create_index(
        op.f("ix_merchant_refund_approvers_user_id"),
        "merchant_refund_approvers",
        ["user_id"],
        unique=False,
    )


def downgrade() -> None:
    """Revert this revision."""
    op.drop_index(
        op.f("ix_merchant_refund_approvers_user_id"), table_name="merchant_refund_approvers"
    )
    op.drop_index("ix_merchant_refund_approvers_merchant", table_name="merchant_refund_approvers")
    op.drop_table("merchant_refund_approvers")
    with op.batch_alter_table("user_authenticators") as batch:
        batch.drop_column("wallet_id")
