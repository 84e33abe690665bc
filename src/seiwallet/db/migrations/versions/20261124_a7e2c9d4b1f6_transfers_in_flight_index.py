"""Transfers: an index for what a sender has in flight (user, token, status).

Every new transfer and payment subtracts the sender's signed and submitted transfers of the
token from their balance; the (user, created) index made that read walk the sender's whole
history.

Revision ID: a7e2c9d4b1f6
Revises: f3d8a6b1c2e4
Create Date: 2026-11-24 06:20:00
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "a7e2c9d4b1f6"
down_revision: str | Sequence[str] | None = "f3d8a6b1c2e4"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Apply this revision."""
    op.create_index(
        "ix_transfers_user_in_flight", "transfers", ["user_id", "token", "status"], unique=False
    )


def downgrade() -> None:
    """Revert this revision."""
    op.drop_index("ix_transfers_user_in_flight", table_name="transfers")
