"""Identity verification (tier 2) through a pluggable KYC provider.

A :class:`KycProvider` starts a verification for a user (``start`` gives the URL the person
opens) and later reports its result (``result``). Real providers are integrations with the
operator's KYC vendor; :class:`FakeKycProvider` is a **fake for the local demo only**: it
verifies whoever asks, and refuses to exist outside the ``local`` profile.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Final, Protocol

from seiwallet.compliance.errors import KycUnavailable
from seiwallet.compliance.models import KycStatus
from seiwallet.compliance.placement import Directory

FAKE_PROVIDER: Final = "fake-local"


@dataclass(frozen=True)
class KycStart:
    """A verification begun: the provider's reference and where the person goes next."""

    reference: str
    url: str


class KycProvider(Protocol):
    """An identity-verification vendor, as the platform uses it."""

    name: str
    #: Shown to people: who verifies them.
    label: str
    #: True only for the local demo's fake provider (pages say so).
    is_fake: bool

    def start(self, user_id: str) -> KycStart: ...

    def result(self, reference: str) -> KycStatus: ...


class FakeKycProvider:
    """FAKE, for the local demo: "verifies" anyone who asks. Never used outside ``local``."""

    name = FAKE_PROVIDER
    label = "Demo identity check (fake, local only)"
    is_fake = True

    def __init__(self, *, profile_is_local: bool) -> None:
        if not profile_is_local:
            raise KycUnavailable(
                "the fake identity provider exists on the local profile only: "
                "configure a real KYC provider"
            )
        self._started: dict[str, str] = {}

    def start(self, user_id: str) -> KycStart:
        reference = "fake_" + secrets.token_hex(8)
        self._started[reference] = user_id
        return KycStart(reference, f"/limits/verify/fake?reference={reference}")

    def result(self, reference: str) -> KycStatus:
        return KycStatus.VERIFIED if reference in self._started else KycStatus.REJECTED

    def user_of(self, reference: str) -> str | None:
        return self._started.get(reference)


class KycService:
    """Start a verification and record its result on the user's compliance profile."""

    def __init__(self, directory: Directory, provider: KycProvider | None) -> None:
        self._directory = directory
        self.provider = provider

    def _provider(self) -> KycProvider:
        if self.provider is None:
            raise KycUnavailable("identity verification is not configured on this platform yet")
        return self.provider

    def start(self, user_id: str) -> KycStart:
        provider = self._provider()
        started = provider.start(user_id)
        self._directory.set_kyc(user_id, KycStatus.PENDING, provider.name, started.reference)
        return started

    def complete(self, user_id: str, reference: str) -> KycStatus:
        """Ask the provider for the result of ``reference`` and record it (tier 2 if verified)."""
        provider = self._provider()
        if self._directory.kyc_reference(user_id) != reference:
            raise KycUnavailable("this verification was not started from your account: start again")
        status = provider.result(reference)
        self._directory.set_kyc(user_id, status, provider.name, reference)
        return status
