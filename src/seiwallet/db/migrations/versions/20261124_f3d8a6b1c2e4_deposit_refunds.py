"""Payments: refunds of invoices paid through a deposit address (a plain transfer to the payer).

Revision ID: f3d8a6b1c2e4
Revises: a5c3e8f1d2b9
Create Date: 2026-11-24 09:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "f3d8a6b1c2e4"
down_revision: str | Sequence[str] | None = "a5c3e8f1d2b9"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Apply this revision."""
    # Every refund so far went through the router: the default says so for existing rows.
    op.add_column(
        "payment_refunds",
        sa.Column(
            "method",
            sa.Enum("router", "transfer", name="refundmethod", native_enum=False, length=16),
            server_default="router",
            nullable=False,
        ),
    )


def downgrade() -> None:
    """Revert this revision."""
    with op.batch_alter_table("payment_refunds") as batch:
        batch.drop_column("method")
