"""Errors of the accounts domain: OpenID Connect sign-in, first-sign-in wallets, the dev provider.

Every check that refuses a sign-in has its own class, so logs and the API say exactly which
one failed; messages never repeat a token, a code or a secret. The tree::

    AccountsError
    ├── OidcError                               sign-in with an OpenID Connect provider
    │   ├── ProviderUnavailable                 the provider cannot be reached
    │   ├── ProviderResponseInvalid             discovery, JWKS or token response unusable
    │   │   └── IssuerMismatch                  discovery names another issuer
    │   ├── StateMismatch                       callback's state is not the one we sent
    │   ├── TokenExchangeFailed                 token endpoint refused the code
    │   └── IdTokenInvalid                      the ID token is refused
    │       ├── IdTokenMalformed
    │       ├── IdTokenAlgorithmRefused         not RS256/ES256 (``none``, HS256…)
    │       ├── UnknownSigningKey               ``kid`` not in the JWKS, even after a refetch
    │       ├── IdTokenSignatureInvalid
    │       ├── IdTokenIssuerMismatch
    │       ├── IdTokenAudienceMismatch
    │       ├── IdTokenAuthorizedPartyMismatch
    │       ├── IdTokenExpired
    │       ├── IdTokenIssuedInFuture
    │       ├── IdTokenClaimMissing
    │       └── NonceMismatch
    ├── SignInRequestError                      a stored sign-in cannot be resumed
    │   ├── SignInRequestUnknown                never started here (or purged)
    │   ├── SignInRequestExpired                started too long ago
    │   └── SignInRequestReplayed               already used once
    ├── RedirectRefused                         return address not a path on this site
    ├── WalletProvisioningFailed                the signer could not create the wallet
    ├── SignInInterrupted                       a concurrent attempt undid this one; retry
    ├── SessionError                            who is asking
    │   ├── NotSignedIn                         no live session or token
    │   ├── SessionUnknown                      no such session of this user
    │   └── CsrfRefused                         a form without this session's CSRF token
    ├── PasskeyError                            WebAuthn ceremonies in the app
    │   ├── CeremonyInvalid                     unknown, expired, used or another session's
    │   ├── PasskeyRegistrationRefused          the registration did not verify
    │   ├── PasskeyEnrolmentNotAllowed          the wallet has passkeys: approve or recover
    │   └── AuthenticatorUnknown                not an authenticator of this user
    ├── RecoveryError                           account recovery
    │   ├── RecoveryUnavailable                 no verified e-mail or phone to send a code to
    │   ├── OneTimeCodeWrong                    wrong code (tries left given)
    │   ├── OneTimeCodeSpent                    expired, used or burnt: ask for a new one
    │   └── TooManyCodes                        rate limit on sending codes
    ├── AliasError                              phone/e-mail aliases
    │   ├── AliasInvalid                        not a phone number or e-mail address
    │   └── AliasTaken                          proven, but another wallet's alias
    ├── DeviceLoginError                        ``seiwallet login`` (RFC 8628)
    │   ├── DeviceLoginPending                  not approved yet (``authorization_pending``)
    │   ├── DeviceLoginSlowDown                 polled too fast (``slow_down``)
    │   ├── DeviceLoginDenied                   the person refused (``access_denied``)
    │   └── DeviceLoginExpired                  unknown, expired or collected
    └── DevIdpError                             the development identity provider
        ├── DevIdpRefused                       not on the ``local`` profile
        ├── DevIdpRequestInvalid                bad authorization request (never redirected)
        ├── DevIdpGrantInvalid                  token request refused (OAuth ``invalid_grant``…)
        └── UnknownTestPerson
"""

from __future__ import annotations

from seiwallet.errors import SeiwalletError

_RETRY = "start the sign-in again"


class AccountsError(SeiwalletError):
    """Base of the accounts domain's errors."""

    code = "accounts.error"
    status = 400


# --- sessions ---------------------------------------------------------------------------------


class SessionError(AccountsError):
    code = "accounts.session_error"
    status = 401


class NotSignedIn(SessionError):
    """No live session: never says whether the token was unknown, expired or revoked."""

    code = "accounts.not_signed_in"

    def __init__(self) -> None:
        super().__init__("you are not signed in (or your session ended): sign in again")


class SessionUnknown(SessionError):
    code = "accounts.session_unknown"
    status = 404

    def __init__(self) -> None:
        super().__init__("no such session on your account (it may already be signed out)")


class CsrfRefused(SessionError):
    code = "accounts.csrf_refused"
    status = 403

    def __init__(self) -> None:
        super().__init__(
            "this form is out of date or did not come from this site: reload the page and retry"
        )


# --- passkeys and authenticators ---------------------------------------------------------------


class PasskeyError(AccountsError):
    code = "accounts.passkey_error"


class CeremonyInvalid(PasskeyError):
    """A WebAuthn answer to a challenge we do not have, or no longer have, for this session."""

    code = "accounts.ceremony_invalid"

    def __init__(self, why: str) -> None:
        self.why = why
        super().__init__(f"this passkey request {why}: start again")


class PasskeyRegistrationRefused(PasskeyError):
    code = "accounts.passkey_registration_refused"

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(f"the passkey could not be registered: {reason}")


class PasskeyEnrolmentNotAllowed(PasskeyError):
    """A wallet that has authenticators gets a new one only approved, or through recovery."""

    code = "accounts.passkey_enrolment_not_allowed"
    status = 403

    def __init__(self) -> None:
        super().__init__(
            "your wallet already has a passkey: add this device from one of your devices, "
            "or recover your account if you lost them"
        )


class AuthenticatorUnknown(PasskeyError):
    code = "accounts.authenticator_unknown"
    status = 404

    def __init__(self) -> None:
        super().__init__("no such passkey or device on your wallet")


# --- recovery ----------------------------------------------------------------------------------


class RecoveryError(AccountsError):
    code = "accounts.recovery_error"


class RecoveryUnavailable(RecoveryError):
    code = "accounts.recovery_unavailable"
    status = 409

    def __init__(self) -> None:
        super().__init__(
            "your account has no verified e-mail address or phone number to send a code to: "
            "contact support to recover your wallet"
        )


class ChannelUnavailable(RecoveryError):
    """Codes cannot be sent this way on this server (no SMS gateway configured, say)."""

    code = "accounts.channel_unavailable"
    status = 409

    def __init__(self, channel: str) -> None:
        self.channel = channel
        what = "text messages" if channel == "sms" else f"{channel} messages"
        super().__init__(
            f"this server cannot send {what} yet: use an e-mail address instead, "
            "or ask the operator to configure an SMS gateway"
        )


class OneTimeCodeWrong(RecoveryError):
    code = "accounts.one_time_code_wrong"

    def __init__(self, attempts_left: int) -> None:
        self.attempts_left = attempts_left
        super().__init__(
            f"that code is not right: {attempts_left} "
            f"{'try' if attempts_left == 1 else 'tries'} left"
        )


class OneTimeCodeSpent(RecoveryError):
    code = "accounts.one_time_code_spent"

    def __init__(self) -> None:
        super().__init__(
            "this code can no longer be used (expired, used, or too many wrong tries): "
            "ask for a new one"
        )


class TooManyCodes(RecoveryError):
    code = "accounts.too_many_codes"
    status = 429

    def __init__(self, retry_after: int) -> None:
        self.retry_after = retry_after
        super().__init__(
            f"too many codes were sent: try again in {max(1, retry_after // 60)} minutes"
        )


# --- aliases -----------------------------------------------------------------------------------


class AliasError(AccountsError):
    code = "accounts.alias_error"


class AliasInvalid(AliasError):
    """Not a phone number or an e-mail address that can be an alias."""

    code = "accounts.alias_invalid"
    status = 422

    def __init__(self, problem: str) -> None:
        super().__init__(problem)


class AliasTaken(AliasError):
    """The address was proven, but it is already another wallet's alias."""

    code = "accounts.alias_taken"
    status = 409

    def __init__(self) -> None:
        super().__init__(
            "this address already receives payments for another seiwallet account: "
            "contact support if it is yours"
        )


# --- seiwallet login (device authorization) ------------------------------------------------------


class DeviceLoginError(AccountsError):
    code = "accounts.device_login_error"
    #: RFC 8628 §3.5 error code.
    oauth_error = "invalid_request"


class DeviceLoginPending(DeviceLoginError):
    code = "accounts.device_login_pending"
    oauth_error = "authorization_pending"

    def __init__(self) -> None:
        super().__init__("waiting for you to approve this device in the wallet app")


class DeviceLoginSlowDown(DeviceLoginError):
    code = "accounts.device_login_slow_down"
    oauth_error = "slow_down"
    status = 429

    def __init__(self) -> None:
        super().__init__("polling too fast: wait longer between checks")


class DeviceLoginDenied(DeviceLoginError):
    code = "accounts.device_login_denied"
    oauth_error = "access_denied"
    status = 403

    def __init__(self) -> None:
        super().__init__("the sign-in of this device was refused in the wallet app")


class DeviceLoginExpired(DeviceLoginError):
    code = "accounts.device_login_expired"
    oauth_error = "expired_token"

    def __init__(self) -> None:
        super().__init__("this device sign-in expired or was already used: run the login again")


# --- OpenID Connect relying party -------------------------------------------------------------


class OidcError(AccountsError):
    """Base of errors while signing in with an OpenID Connect provider."""

    code = "accounts.oidc_error"
    status = 401


class ProviderUnavailable(OidcError):
    """The provider's discovery, JWKS or token endpoint could not be reached."""

    code = "accounts.oidc_provider_unavailable"
    status = 503

    def __init__(self, url: str, reason: str) -> None:
        self.url = url
        super().__init__(
            f"cannot reach the identity provider at {url} ({reason}): "
            "check the network and the provider's issuer URL, then try again"
        )


class ProviderResponseInvalid(OidcError):
    """The provider answered with something that is not a usable OIDC document."""

    code = "accounts.oidc_provider_response_invalid"
    status = 502

    def __init__(self, url: str, problem: str) -> None:
        self.url = url
        self.problem = problem
        super().__init__(
            f"the identity provider's answer from {url} is unusable: {problem}; "
            "check that the configured issuer URL is the provider's"
        )


class IssuerMismatch(ProviderResponseInvalid):
    """Discovery names another issuer than configured (RFC 8414 §3.3: they must be equal)."""

    code = "accounts.oidc_issuer_mismatch"

    def __init__(self, url: str, expected: str, actual: str) -> None:
        self.expected, self.actual = expected, actual
        super().__init__(
            url,
            f"it names the issuer {actual!r}, not the configured {expected!r} "
            "(they must be equal character for character; fix the provider's issuer setting)",
        )


class StateMismatch(OidcError):
    """The callback's ``state`` is not the one this sign-in sent: a forged or crossed callback."""

    code = "accounts.oidc_state_mismatch"
    status = 400

    def __init__(self) -> None:
        super().__init__(
            f"the sign-in callback does not belong to this sign-in (state mismatch): {_RETRY}"
        )


class TokenExchangeFailed(OidcError):
    """The token endpoint refused the authorization code (used, expired, wrong PKCE verifier…)."""

    code = "accounts.oidc_token_exchange_failed"
    status = 400

    def __init__(self, error: str, description: str | None = None) -> None:
        self.error = error
        self.description = description
        detail = f"{error}: {description}" if description else error
        super().__init__(f"the identity provider refused the sign-in code ({detail}): {_RETRY}")


class IdTokenInvalid(OidcError):
    """The ID token failed a check; the subclass says which."""

    code = "accounts.id_token_invalid"

    def __init__(self, problem: str) -> None:
        self.problem = problem
        super().__init__(f"the identity provider's ID token is refused: {problem}; {_RETRY}")


class IdTokenMalformed(IdTokenInvalid):
    code = "accounts.id_token_malformed"


class IdTokenAlgorithmRefused(IdTokenInvalid):
    """Only asymmetric RS256/ES256 are accepted: never ``none``, never HMAC with a public key."""

    code = "accounts.id_token_algorithm_refused"

    def __init__(self, alg: object) -> None:
        self.alg = alg
        super().__init__(f"it is signed with {alg!r}; only RS256 and ES256 are accepted")


class UnknownSigningKey(IdTokenInvalid):
    code = "accounts.id_token_unknown_key"

    def __init__(self, kid: str | None) -> None:
        self.kid = kid
        super().__init__(f"it names the signing key {kid!r}, which the provider does not publish")


class IdTokenSignatureInvalid(IdTokenInvalid):
    code = "accounts.id_token_signature_invalid"

    def __init__(self) -> None:
        super().__init__("its signature does not verify against the provider's published keys")


class IdTokenIssuerMismatch(IdTokenInvalid):
    code = "accounts.id_token_issuer_mismatch"

    def __init__(self, expected: str, actual: object) -> None:
        self.expected, self.actual = expected, actual
        super().__init__(f"it was issued by {actual!r}, not {expected!r}")


class IdTokenAudienceMismatch(IdTokenInvalid):
    code = "accounts.id_token_audience_mismatch"

    def __init__(self, client_id: str, audience: object) -> None:
        self.client_id, self.audience = client_id, audience
        super().__init__(f"it is meant for {audience!r}, not for this client {client_id!r}")


class IdTokenAuthorizedPartyMismatch(IdTokenInvalid):
    code = "accounts.id_token_azp_mismatch"

    def __init__(self, client_id: str, azp: object) -> None:
        self.client_id, self.azp = client_id, azp
        super().__init__(f"its authorized party (azp) is {azp!r}, not this client {client_id!r}")


class IdTokenExpired(IdTokenInvalid):
    code = "accounts.id_token_expired"

    def __init__(self, exp: int, now: int) -> None:
        self.exp, self.now = exp, now
        super().__init__(
            f"it expired at {exp} (now {now}); if this keeps happening, check this server's clock"
        )


class IdTokenIssuedInFuture(IdTokenInvalid):
    code = "accounts.id_token_issued_in_future"

    def __init__(self, iat: int, now: int) -> None:
        self.iat, self.now = iat, now
        super().__init__(
            f"it claims to be issued at {iat}, after now ({now}); check this server's clock"
        )


class IdTokenClaimMissing(IdTokenInvalid):
    code = "accounts.id_token_claim_missing"

    def __init__(self, claim: str) -> None:
        self.claim = claim
        super().__init__(f"its required claim {claim!r} is missing or not of the right type")


class NonceMismatch(IdTokenInvalid):
    """The token's nonce is not this sign-in's: a replayed or injected ID token."""

    code = "accounts.id_token_nonce_mismatch"

    def __init__(self) -> None:
        super().__init__("its nonce is not this sign-in's (a replayed or injected token)")


# --- sign-ins in progress and first sign-in -------------------------------------------------


class SignInRequestError(AccountsError):
    """A sign-in callback whose stored request cannot be used; the subclass says why."""

    code = "accounts.sign_in_request_invalid"

    def __init__(self, problem: str) -> None:
        self.problem = problem
        super().__init__(f"this sign-in cannot be completed: {problem}; {_RETRY}")


class SignInRequestUnknown(SignInRequestError):
    code = "accounts.sign_in_request_unknown"

    def __init__(self) -> None:
        super().__init__("it was not started here, or too long ago")


class SignInRequestExpired(SignInRequestError):
    code = "accounts.sign_in_request_expired"

    def __init__(self, ttl_s: int) -> None:
        self.ttl_s = ttl_s
        super().__init__(f"it was started more than {ttl_s // 60} minutes ago")


class SignInRequestReplayed(SignInRequestError):
    """The callback was already used once: a reload, a double submit, or a replay."""

    code = "accounts.sign_in_request_replayed"

    def __init__(self) -> None:
        super().__init__("its callback was already used once")


class RedirectRefused(AccountsError):
    """Only a path on this site may be returned to after sign-in (no open redirect)."""

    code = "accounts.redirect_refused"

    def __init__(self) -> None:
        super().__init__(
            "the address to return to after sign-in must be a path on this site, "
            "starting with a single '/'"
        )


class WalletProvisioningFailed(AccountsError):
    """The signer could not create the new user's wallet; nothing was kept, retrying is safe."""

    code = "accounts.wallet_provisioning_failed"
    status = 503

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(
            f"your wallet could not be created ({reason}); no account was kept: "
            "sign in again in a moment (operators: check that `seiwallet signer` runs)"
        )


class SignInInterrupted(AccountsError):
    """A first sign-in lost a race with a failing concurrent attempt for the same person."""

    code = "accounts.sign_in_interrupted"
    status = 409

    def __init__(self) -> None:
        super().__init__(f"another sign-in for the same account interrupted this one: {_RETRY}")


# --- development identity provider -----------------------------------------------------------


class DevIdpError(AccountsError):
    """Base of the development identity provider's errors."""

    code = "accounts.dev_idp_error"


class DevIdpRefused(DevIdpError):
    """The development identity provider only runs on the ``local`` profile."""

    code = "accounts.dev_idp_refused"
    status = 403

    def __init__(self, profile: str) -> None:
        self.profile = profile
        super().__init__(
            f"the development identity provider signs in anyone as anyone and only runs on the "
            f"'local' profile, not {profile!r}: configure a real OpenID Connect provider "
            "(Google or the phone maker's account service) for this profile"
        )


class DevIdpRequestInvalid(DevIdpError):
    """An authorization request the development provider will not serve (shown, not redirected)."""

    code = "accounts.dev_idp_request_invalid"

    def __init__(self, problem: str) -> None:
        self.problem = problem
        super().__init__(f"invalid sign-in request to the development identity provider: {problem}")


class DevIdpGrantInvalid(DevIdpError):
    """A token request the development provider refuses; ``error`` is the OAuth 2.0 error code."""

    code = "accounts.dev_idp_grant_invalid"

    def __init__(self, problem: str, *, error: str = "invalid_grant") -> None:
        self.error = error
        self.problem = problem
        super().__init__(f"{problem}; start the sign-in again")


class UnknownTestPerson(DevIdpError):
    code = "accounts.dev_idp_unknown_person"
    status = 404

    def __init__(self, subject: str) -> None:
        self.subject = subject
        super().__init__(f"no test person {subject!r}: choose one from the list or create one")
