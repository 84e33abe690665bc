"""The PKCS#11 master key against SoftHSM2: non-extractable, persistent, refusing a wrong PIN.

SoftHSM2 reads ``SOFTHSM2_CONF`` when the library is loaded, and python-pkcs11 loads it once
per process: the session fixture points it at a private token directory before anything
loads it, and initializes the tokens with ``softhsm2-util`` first. Without SoftHSM2 these
tests fail (``make system-deps`` installs it); they never skip.

PKCS#11 logins are per process and token, so each test closes its master key, and the
contract's second key lives on a second token.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pkcs11
import pytest
from eth_account import Account
from pkcs11 import Attribute, KeyType, Mechanism, ObjectClass
from pkcs11 import exceptions as p11
from tests.unit.test_signer_keystore import MasterKeyContract

from seiwallet.signer.errors import MasterKeyUnavailable, SealedKeyInvalid
from seiwallet.signer.keystore import KeyStore, SealedKey
from seiwallet.signer.masterkey import FileMasterKey, MasterKey, Pkcs11MasterKey

SOFTHSM_LIBRARY = Path("/usr/lib/softhsm/libsofthsm2.so")
SOFTHSM_UTIL = "softhsm2-util"
TOKEN = "seiwallet-test"
OTHER_TOKEN = "seiwallet-other"
PIN = "user-pin-4821"
SO_PIN = "so-pin-9317"
WALLET = b"wallet:7c0d5f2e-1a3b-4c5d-8e9f-0a1b2c3d4e5f"


@dataclass(frozen=True)
class SoftHsm:
    """A private SoftHSM2 installation: its config file and the tokens it was given."""

    library: str
    config: Path

    def open(
        self, key_label: str, *, token: str = TOKEN, pin: str = PIN, create: bool = True
    ) -> Pkcs11MasterKey:
        return Pkcs11MasterKey.open(self.library, token, pin, key_label, create=create)

    def environment(self) -> dict[str, str]:
        return {**os.environ, "SOFTHSM2_CONF": str(self.config)}

    def token(self, label: str = TOKEN) -> pkcs11.Token:
        return pkcs11.lib(self.library).get_token(token_label=label)


@pytest.fixture(scope="session")
def softhsm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SoftHsm]:
    util = shutil.which(SOFTHSM_UTIL)
    if not SOFTHSM_LIBRARY.exists() or util is None:
        pytest.fail(
            f"SoftHSM2 is not installed ({SOFTHSM_LIBRARY} or {SOFTHSM_UTIL} missing): "
            "run `make system-deps`, which installs Debian's softhsm2 package"
        )
    if str(SOFTHSM_LIBRARY) in getattr(pkcs11, "_loaded", {}):
        pytest.fail(
            "SoftHSM2 was loaded in this process before SOFTHSM2_CONF was set: the tokens "
            "made here would be invisible; load it only through this fixture"
        )
    root = tmp_path_factory.mktemp("softhsm")
    tokens = root / "tokens"
    tokens.mkdir(mode=0o700)
    config = root / "softhsm2.conf"
    config.write_text(
        f"directories.tokendir = {tokens}\nobjectstore.backend = file\nlog.level = ERROR\n",
        encoding="utf-8",
    )
    hsm = SoftHsm(library=str(SOFTHSM_LIBRARY), config=config)
    for label in (TOKEN, OTHER_TOKEN):
        subprocess.run(
            [util, "--init-token", "--free", "--label", label, "--so-pin", SO_PIN, "--pin", PIN],
            env=hsm.environment(),
            check=True,
            capture_output=True,
            timeout=60,
        )
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("SOFTHSM2_CONF", str(config))  # before the library is first loaded
        yield hsm


class TestPkcs11MasterKey(MasterKeyContract):
    @pytest.fixture
    def master(self, softhsm: SoftHsm) -> Iterator[MasterKey]:
        with softhsm.open("contract-master") as key:
            yield key

    @pytest.fixture
    def other_master(self, softhsm: SoftHsm) -> Iterator[MasterKey]:
        with softhsm.open("contract-master", token=OTHER_TOKEN) as key:
            yield key


def test_master_key_never_leaves_the_token(softhsm: SoftHsm) -> None:
    label = f"sealed-{uuid.uuid4().hex[:8]}"
    with softhsm.open(label) as master:
        assert label in master.describe()
        # The process is logged in through the master key's session: a second, PIN-less
        # session sees the same private objects, as any code in this process could.
        with softhsm.token().open() as session:
            key = session.get_key(ObjectClass.SECRET_KEY, KeyType.AES, label=label)
            assert key[Attribute.EXTRACTABLE] is False
            assert key[Attribute.NEVER_EXTRACTABLE] is True
            assert key[Attribute.SENSITIVE] is True
            assert key[Attribute.ALWAYS_SENSITIVE] is True
            assert key[Attribute.TOKEN] is True
            assert key[Attribute.VALUE_LEN] == 32
            with pytest.raises(p11.AttributeSensitive):
                key[Attribute.VALUE]
            # Not even wrapped under another key can it leave.
            wrapper = session.generate_key(KeyType.AES, 256, template={Attribute.TOKEN: False})
            with pytest.raises((p11.KeyUnextractable, p11.MechanismInvalid)):
                wrapper.wrap_key(key, mechanism=Mechanism.AES_KEY_WRAP)
            # GCM only: ECB on a zero block would hand out GCM's hash subkey.
            with pytest.raises(p11.MechanismInvalid):
                key.encrypt(bytes(16), mechanism=Mechanism.AES_ECB)


def test_key_sealed_in_one_session_opens_in_a_fresh_one(softhsm: SoftHsm) -> None:
    label = f"fresh-{uuid.uuid4().hex[:8]}"
    with softhsm.open(label) as first:
        sealed, _, address = KeyStore(first).generate(WALLET)
        kcv = first.key_check_value()
    with softhsm.open(label, create=False) as second:
        store = KeyStore(second)
        store.verify_master_key(kcv)
        digest = os.urandom(32)
        assert Account._recover_hash(digest, signature=store.sign_hash(sealed, WALLET, digest)) == (
            address
        )


CHILD = """
import json, sys
from seiwallet.signer.keystore import KeyStore, SealedKey
from seiwallet.signer.masterkey import Pkcs11MasterKey

library, token, pin, label, wallet, command, *arguments = sys.argv[1:]
with Pkcs11MasterKey.open(library, token, pin, label, create=command == "seal") as master:
    store = KeyStore(master)
    if command == "seal":
        sealed, _, address = store.generate(wallet.encode())
        result = {"sealed": sealed.to_bytes().hex(), "address": address}
    else:
        sealed = SealedKey.from_bytes(bytes.fromhex(arguments[0]))
        signature = store.sign_hash(sealed, wallet.encode(), bytes.fromhex(arguments[1]))
        result = {"signature": signature.hex()}
    result["kcv"] = master.key_check_value().hex()
print(json.dumps(result))
"""


def run_child(softhsm: SoftHsm, label: str, command: str, *arguments: str) -> dict[str, str]:
    """Run the child script in a new process (its own PKCS#11 login) and return its JSON."""
    completed = subprocess.run(
        [
            sys.executable,
            "-c",
            CHILD,
            softhsm.library,
            TOKEN,
            PIN,
            label,
            WALLET.decode(),
            command,
            *arguments,
        ],
        env=softhsm.environment(),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr
    result: dict[str, str] = json.loads(completed.stdout)
    return result


def test_master_key_persists_across_processes(softhsm: SoftHsm) -> None:
    label = f"persist-{uuid.uuid4().hex[:8]}"
    # Another process creates the master key and seals a wallet key under it, then exits.
    child = run_child(softhsm, label, "seal")
    sealed = SealedKey.from_bytes(bytes.fromhex(child["sealed"]))
    with softhsm.open(label, create=False) as master:
        store = KeyStore(master)
        store.verify_master_key(bytes.fromhex(child["kcv"]))
        digest = os.urandom(32)
        signature = store.sign_hash(sealed, WALLET, digest)
        assert Account._recover_hash(digest, signature=signature) == child["address"]
        # ...and a key this process seals opens in yet another process.
        mine, _, address = store.generate(WALLET)
    digest = os.urandom(32)
    signed = run_child(softhsm, label, "sign", mine.to_bytes().hex(), digest.hex())
    assert Account._recover_hash(digest, signature=bytes.fromhex(signed["signature"])) == address


def test_wrong_pin_is_refused_with_a_clear_error(softhsm: SoftHsm) -> None:
    with pytest.raises(MasterKeyUnavailable, match="refused the PIN") as caught:
        softhsm.open("any", pin="not-the-pin")
    assert caught.value.code == "signer.master_key_unavailable"
    assert "not-the-pin" not in str(caught.value)


def test_unknown_token_is_named_in_the_error(softhsm: SoftHsm) -> None:
    with pytest.raises(MasterKeyUnavailable, match=r"no token labelled 'nope'.*--init-token"):
        softhsm.open("any", token="nope")


def test_missing_library_says_how_to_install(softhsm: SoftHsm) -> None:
    with pytest.raises(MasterKeyUnavailable, match="make system-deps"):
        Pkcs11MasterKey.open("/nonexistent/libsofthsm2.so", TOKEN, PIN, "any")


def test_missing_key_is_not_created_when_creation_is_off(softhsm: SoftHsm) -> None:
    with pytest.raises(MasterKeyUnavailable, match="holds no AES key labelled 'absent'"):
        softhsm.open("absent", create=False)


def test_second_login_in_one_process_is_explained(softhsm: SoftHsm) -> None:
    with softhsm.open("login-once"), pytest.raises(MasterKeyUnavailable, match="per process"):
        softhsm.open("login-twice")


def test_an_extractable_key_is_refused(softhsm: SoftHsm) -> None:
    label = f"unsafe-{uuid.uuid4().hex[:8]}"
    with softhsm.token().open(rw=True, user_pin=PIN) as session:
        session.generate_key(
            KeyType.AES,
            256,
            label=label,
            store=True,
            template={Attribute.EXTRACTABLE: True, Attribute.SENSITIVE: False},
        )
    with pytest.raises(MasterKeyUnavailable, match=r"SENSITIVE=False|EXTRACTABLE=True"):
        softhsm.open(label)


def test_keys_sealed_under_another_hsm_key_or_a_file_key_do_not_open(
    softhsm: SoftHsm, tmp_path: Path
) -> None:
    with FileMasterKey.open_or_create(tmp_path / "master.key") as file_master:
        sealed, _, _ = KeyStore(file_master).generate(WALLET)
        file_kcv = file_master.key_check_value()
    with softhsm.open("not-the-file-key") as master:
        store = KeyStore(master)
        assert master.key_check_value() != file_kcv
        with pytest.raises(SealedKeyInvalid):
            store.sign_hash(sealed, WALLET, bytes(32))


def test_concurrent_threads_share_the_session_safely(softhsm: SoftHsm) -> None:
    with softhsm.open("threads") as master:
        store = KeyStore(master)
        sealed, _, address = store.generate(WALLET)
        failures: list[BaseException] = []

        def worker() -> None:
            try:
                for _ in range(40):
                    digest = os.urandom(32)
                    signature = store.sign_hash(sealed, WALLET, digest)
                    assert Account._recover_hash(digest, signature=signature) == address
            except BaseException as exc:  # reported below, from the main thread
                failures.append(exc)

        threads = [threading.Thread(target=worker) for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert failures == []
