"""Every module that defines tables, imported in one place so Alembic and tests see all of them."""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import Final

#: Modules whose import registers tables on ``seiwallet.db.base.Base.metadata``; add new ones here.
MODEL_MODULES: Final[tuple[str, ...]] = (
    "seiwallet.chain.models",
    "seiwallet.accounts.models",
    "seiwallet.transfers.models",
    "seiwallet.payments.models",
    "seiwallet.payments.deposit_models",
    "seiwallet.compliance.models",
    # The development webhook receiver's table (``local`` only; an edge's tool, not a domain's).
    "seiwallet.api.devhooks_inbox",
)


def load_all() -> tuple[ModuleType, ...]:
    """Import every model module; a missing one fails loudly (a skipped table loses a migration)."""
    return tuple(importlib.import_module(name) for name in MODEL_MODULES)
