"""seiwallet: a seedless stablecoin wallet and payments platform for the Sei EVM chain."""

from __future__ import annotations

__version__ = "0.1.0"
