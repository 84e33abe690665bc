"""The shared secret callers present to the signer: configured, or a 0600 file made once."""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from seiwallet.signer.errors import SignerError

SECRET_BYTES = 32


def read_or_create_secret(path: Path, *, create: bool) -> str:
    """Read the secret file; create it (0600, in a 0700 directory) when allowed and missing."""
    if path.exists():
        mode = path.stat().st_mode & 0o777
        if mode & 0o077:
            raise SignerError(
                f"the signer secret {path} is readable by others (mode {mode:o}): "
                f"run `chmod 600 {path}`"
            )
        secret = path.read_text(encoding="ascii").strip()
        if len(secret) < 32:
            raise SignerError(f"the signer secret {path} is too short: delete it to make a new one")
        return secret
    if not create:
        raise SignerError(
            f"no signer secret at {path}: start `seiwallet signer` first, "
            "or set SEIWALLET_SIGNER__SECRET"
        )
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    secret = secrets.token_urlsafe(SECRET_BYTES)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w", encoding="ascii") as handle:
        handle.write(secret + "\n")
    return secret
