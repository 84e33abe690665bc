"""Jurisdiction rules and the compliance gate every value-moving intent passes through."""
