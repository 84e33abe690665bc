"""Starting the signer from settings: master key, key store check, database, socket, server."""

from __future__ import annotations

import base64
import contextlib
import os
from pathlib import Path

import uvicorn

from seiwallet.config import Settings
from seiwallet.process import settle_garbage_collector
from seiwallet.signer.errors import MasterKeyMismatch, SignerError
from seiwallet.signer.keystore import KeyStore
from seiwallet.signer.masterkey import FileMasterKey, MasterKey, Pkcs11MasterKey
from seiwallet.signer.secret import read_or_create_secret
from seiwallet.signer.server import create_app, prepare_socket
from seiwallet.signer.service import RelyingParty, SignerService
from seiwallet.signer.store import SignerStore, create_signer_engine

#: Where the store records its master key's check value.
KEY_CHECK_META = "master_key_check"
#: Allocations (net of deallocations) between two collections of young objects (Python: 700).
GC_YOUNG_THRESHOLD = 100_000


def open_master_key(settings: Settings) -> MasterKey:
    """The configured master key provider."""
    signer = settings.signer
    if signer.master_key == "pkcs11":
        if signer.pkcs11_pin is None:
            raise SignerError("the pkcs11 master key needs SEIWALLET_SIGNER__PKCS11_PIN")
        return Pkcs11MasterKey.open(
            signer.pkcs11_library,
            signer.pkcs11_token,
            signer.pkcs11_pin.get_secret_value(),
            signer.pkcs11_key_label,
        )
    return FileMasterKey.open_or_create(settings.signer_master_key_file)


def check_master_key(store: SignerStore, keys: KeyStore, where: str) -> None:
    """Refuse to start with a master key that does not open this store; record it the first time.

    Nothing is decrypted and nothing is overwritten when it does not match.
    """
    recorded = store.get_meta(KEY_CHECK_META)
    current = keys.key_check_value()
    if recorded is None:
        store.set_meta(KEY_CHECK_META, base64.b64encode(current).decode())
        return
    try:
        keys.verify_master_key(base64.b64decode(recorded))
    except MasterKeyMismatch:
        raise MasterKeyMismatch(
            f"the master key ({keys.master.describe()}) does not open the key store at {where}: "
            "the signer refuses to start; configure the master key this store was created with"
        ) from None


def open_store(settings: Settings) -> SignerStore:
    """The signer's own database, its schema created or checked (no key material involved)."""
    settings.signer_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    engine = create_signer_engine(settings.signer_database_url)
    store = SignerStore(engine, schema=settings.signer.database_schema)
    store.create_schema()
    return store


def open_service(settings: Settings) -> SignerService:
    """The signer service for these settings, its store created and its master key checked."""
    store = open_store(settings)
    keys = KeyStore(open_master_key(settings))
    check_master_key(store, keys, settings.signer_database_url.split("@")[-1])
    return SignerService(
        store,
        keys,
        relying_party=RelyingParty(settings.signer.rp_id, tuple(settings.signer.origins)),
        recovery_timelock=round(settings.signer.recovery_timelock_hours * 3600),
    )


def signer_secret(settings: Settings, *, create: bool) -> str:
    """The shared secret: configured, or the signer's secret file (created by the signer)."""
    if settings.signer.secret is not None:
        return settings.signer.secret.get_secret_value()
    return read_or_create_secret(settings.signer_dir / "secret", create=create)


def _settle_garbage_collector() -> None:
    """Keep the garbage collector off the signing path (:mod:`seiwallet.process`).

    With the signer's libraries loaded a full collection walks ~135,000 objects (~100 ms on a
    small machine), and a few signing batches' allocations trigger one; freezing what start-up
    left makes collections walk only what came later. A batch's own objects die by reference
    counting when it ends; collecting young objects only every 100,000 net allocations lets
    them, where a lower threshold walked each batch's live objects several times (measured:
    ~10 µs per intent at 700, ~5 at 10,000, none at 100,000; see BENCHMARKS.md).
    """
    settle_garbage_collector(GC_YOUNG_THRESHOLD)


def serve(settings: Settings, service: SignerService, secret: str) -> None:
    """Serve the signer's RPC until interrupted (Unix socket by default, private to its owner)."""
    app = create_app(service, secret)
    if settings.signer.url:
        host, _, port = settings.signer.url.removeprefix("http://").partition(":")
        config = uvicorn.Config(
            app, host=host, port=int(port), log_level="warning", access_log=False
        )
    else:
        socket: Path = settings.signer_socket
        prepare_socket(socket)
        config = uvicorn.Config(app, uds=str(socket), log_level="warning", access_log=False)
    _settle_garbage_collector()
    previous = os.umask(0o077)  # the socket file is created 0600
    try:
        uvicorn.Server(config).run()
    finally:
        os.umask(previous)
        if not settings.signer.url:
            with contextlib.suppress(FileNotFoundError):
                settings.signer_socket.unlink()
