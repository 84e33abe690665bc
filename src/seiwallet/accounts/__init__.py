"""Accounts: users, OpenID Connect sign-in (with a development identity provider), passkeys."""
