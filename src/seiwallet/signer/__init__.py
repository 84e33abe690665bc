"""The isolated signer: the only process that holds key material.

It signs an intent only with fresh approvals from the wallet's own authenticators (passkeys,
device keys), under the wallet's policy, and records every decision in a hash-chained audit
log. The rest of the platform reaches it only through :mod:`seiwallet.signer.client`.
"""
