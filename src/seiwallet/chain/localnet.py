"""The local chain: anvil with Sei-like settings, our contracts deployed, its state kept on disk.

:class:`LocalChain` starts the anvil binary from ``node_modules`` (0.4 s blocks, a 10 M gas
limit, the Prague EVM, chain id :data:`~seiwallet.config.LOCAL_CHAIN_ID`), waits until *its own*
process answers, deploys the stablecoins, the router, the invite escrow and the invoice deposits
contract if the chain does not already hold them (a resumed chain whose manifest predates the
escrow or the deposits contract gets it added in place), funds the sponsor, releaser and sweeper
accounts and writes the deployment manifest every other process
reads with :func:`load_deployment`.

The chain's state is saved to ``<data_dir>/chain/state.json`` (every few seconds and on stop), so a
restart resumes the same chain. When that cannot work it starts a new chain instead, the same way
every time, moves the old state file aside, and says which case happened (:class:`StartMode`):
the state file is unreadable, or the chain it holds is not the one the manifest describes.
"""

from __future__ import annotations

import contextlib
import ctypes
import enum
import json
import logging
import os
import platform
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import IO, Any, Self

from eth_utils.address import to_checksum_address
from web3 import HTTPProvider, Web3
from web3.types import RPCEndpoint

from seiwallet.chain.artifacts import ArtifactNotFound, find_node_modules
from seiwallet.chain.deploy import (
    Deployment,
    LocalAccounts,
    add_invite_escrow,
    add_invoice_deposits,
    check_deployment,
    deploy_local,
    local_accounts,
    read_manifest,
    write_manifest,
)
from seiwallet.chain.errors import ChainError, DeploymentMissing
from seiwallet.config import Settings

log = logging.getLogger(__name__)

#: Environment variable naming the anvil binary to run (overrides the search).
ANVIL_ENV = "SEIWALLET_ANVIL"

#: Sponsors are topped up to this balance (in wei) when they hold less than a tenth of it.
SPONSOR_BALANCE_WEI = 10_000 * 10**18

_ADDRESS_IN_USE = "Address already in use"
_STATE_UNREADABLE = "failed to parse json file"

#: Linux's prctl(PR_SET_PDEATHSIG), looked up before any fork: the child only calls it.
_PR_SET_PDEATHSIG = 1
_prctl = ctypes.CDLL(None, use_errno=True).prctl if sys.platform == "linux" else None


def _die_with_parent() -> None:
    """In anvil's process before exec: get SIGTERM (and so save state) if we die unannounced.

    Without it a killed test run or CLI leaves anvil holding the port. Linux ties this to the
    thread that started anvil, so start the chain from a thread that lives as long as it.
    """
    if _prctl is not None:
        _prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


class LocalChainError(ChainError):
    """The local chain could not be started or stopped; the message says what to do."""

    code = "chain.local_chain_failed"
    status = 503


class _StateUnusable(Exception):
    """anvil refused the saved state file (internal: handled by starting a new chain)."""


class StartMode(enum.StrEnum):
    """How :meth:`LocalChain.start` got its chain."""

    #: No saved state: a new chain, contracts deployed.
    FRESH = "fresh"
    #: The saved state and the manifest agree: the same chain as before, nothing deployed.
    RESUMED = "resumed"
    #: anvil could not read the saved state: moved aside, a new chain, contracts deployed.
    STATE_UNUSABLE = "state_unusable"
    #: The saved chain is not the manifest's (no manifest, or contracts absent or different):
    #: moved aside, a new chain, contracts deployed.
    MANIFEST_MISMATCH = "manifest_mismatch"


@dataclass(frozen=True)
class StartReport:
    """What :meth:`LocalChain.start` did, in one line for people and a mode for code."""

    mode: StartMode
    detail: str
    #: Where an unusable or mismatched state file was moved, if one was.
    moved_state_to: Path | None = None

    @property
    def deployed(self) -> bool:
        """Whether the contracts were deployed by this start."""
        return self.mode is not StartMode.RESUMED

    def __str__(self) -> str:
        return self.detail


def find_anvil() -> Path:
    """The anvil binary: ``$SEIWALLET_ANVIL``, else the npm package for this platform, else PATH."""
    configured = os.environ.get(ANVIL_ENV)
    if configured:
        path = Path(configured).expanduser()
        if path.is_file() and os.access(path, os.X_OK):
            return path
        raise LocalChainError(f"{ANVIL_ENV}={configured} is not an executable file")
    machine = {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64"}.get(
        platform.machine().lower(), platform.machine().lower()
    )
    package = f"@foundry-rs/anvil-{platform.system().lower()}-{machine}"
    with contextlib.suppress(ArtifactNotFound):
        binary = find_node_modules(package) / package / "bin" / "anvil"
        if binary.is_file():
            return binary
    on_path = shutil.which("anvil")
    if on_path:
        return Path(on_path)
    raise LocalChainError(
        f"cannot find anvil: run `npm ci` in the repository root (it installs {package}), "
        f"install Foundry, or set {ANVIL_ENV}"
    )


def load_deployment(settings: Settings) -> Deployment:
    """The manifest of the profile's deployment, for processes that did not start the chain."""
    deployment = read_manifest(settings.deployment_manifest_path)
    expected = settings.network.chain_id
    if deployment.chain_id != expected:
        raise LocalChainError(
            f"the manifest {settings.deployment_manifest_path} is for chain {deployment.chain_id}, "
            f"but profile {settings.profile!r} is chain {expected}: restart `seiwallet chain`"
        )
    return deployment


class LocalChain:
    """One anvil process we own, with our contracts deployed on it.

    ``automine=True`` mines each transaction at once instead of every ``block_time`` seconds
    (tests use it for speed; the demo keeps Sei's 0.4 s blocks). ``persist=False`` keeps no state
    on disk (every start is a new chain).
    """

    def __init__(
        self,
        settings: Settings,
        *,
        automine: bool = False,
        persist: bool = True,
        accounts: LocalAccounts | None = None,
        anvil: Path | None = None,
        startup_timeout: float = 20.0,
        state_interval_seconds: int = 5,
    ) -> None:
        if not settings.network.is_local:
            raise LocalChainError(
                f"profile {settings.profile!r} is a public network: the local chain runs only "
                "with SEIWALLET_PROFILE=local"
            )
        self.settings = settings
        self.automine = automine
        self.persist = persist
        self.accounts = accounts or local_accounts()
        self._anvil = anvil
        self._startup_timeout = startup_timeout
        self._state_interval = state_interval_seconds
        self._process: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None
        self._w3: Web3 | None = None
        self._deployment: Deployment | None = None
        self._report: StartReport | None = None
        self._discarded = False

    # -- where things are ------------------------------------------------------------------

    @property
    def chain_dir(self) -> Path:
        """The directory of the chain's saved state and log."""
        return self.settings.data_dir / "chain"

    @property
    def state_path(self) -> Path:
        return self.chain_dir / "state.json"

    @property
    def log_path(self) -> Path:
        return self.chain_dir / "anvil.log"

    @property
    def rpc_url(self) -> str:
        chain = self.settings.local_chain
        return f"http://{chain.host}:{chain.port}"

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process else None

    @property
    def deployment(self) -> Deployment:
        """The contracts on this chain (after :meth:`start`)."""
        if self._deployment is None:
            raise LocalChainError("the local chain is not started")
        return self._deployment

    @property
    def report(self) -> StartReport:
        """What the last :meth:`start` did."""
        if self._report is None:
            raise LocalChainError("the local chain is not started")
        return self._report

    def web3(self) -> Web3:
        """A synchronous web3 client of this chain (one per chain object)."""
        if self._w3 is None:
            self._w3 = Web3(
                HTTPProvider(self.rpc_url, request_kwargs={"timeout": self.settings.rpc_timeout})
            )
        return self._w3

    def is_running(self) -> bool:
        """Whether our anvil process is alive (not merely whether the port answers)."""
        return self._process is not None and self._process.poll() is None

    # -- lifecycle -------------------------------------------------------------------------

    def discard_state(self) -> bool:
        """Delete the saved chain state, so the next :meth:`start` begins a new chain.

        Returns whether there was a state to discard. Only before :meth:`start`: a running
        anvil would write its state again on stop.
        """
        if self._process is not None:
            raise LocalChainError("stop the local chain before discarding its state")
        existed = self.state_path.exists()
        self.state_path.unlink(missing_ok=True)
        self._discarded = existed
        if existed:
            log.info("discarded the saved chain state %s", self.state_path)
        return existed

    def start(self) -> StartReport:
        """Start anvil, resume or deploy, fund sponsors, write the manifest; say what happened."""
        if self._process is not None:
            raise LocalChainError("this local chain is already started")
        self.chain_dir.mkdir(parents=True, exist_ok=True)
        try:
            report = self._start()
            self._fund_sponsors()
        except BaseException:
            self.stop()
            raise
        self._report = report
        self._discarded = False
        log.info("local chain at %s: %s", self.rpc_url, report.detail)
        return report

    def _start(self) -> StartReport:
        manifest_path = self.settings.deployment_manifest_path
        if not (self.persist and self.state_path.exists()):
            self._launch()
            self._deploy()
            detail = "started a new chain and deployed the contracts"
            if self._discarded:
                detail = "discarded the saved chain state as asked; " + detail
            if self.persist:
                detail += f"; its state is saved to {self.state_path}"
            return StartReport(StartMode.FRESH, detail)

        try:
            self._launch()
        except _StateUnusable as exc:
            moved = _move_aside(self.state_path, "unusable")
            self._launch()
            self._deploy()
            return StartReport(
                StartMode.STATE_UNUSABLE,
                f"the saved chain state was unusable ({exc}); moved it to {moved.name}, "
                "started a new chain and deployed the contracts",
                moved,
            )

        problem = self._manifest_problem()
        if problem is None:
            upgraded = self._add_missing_contracts()
            deployment = self.deployment
            return StartReport(
                StartMode.RESUMED,
                f"resumed the saved chain at block {self.web3().eth.block_number}; contracts as "
                f"in {manifest_path} (router {deployment.router})" + upgraded,
            )
        # Recreate rather than deploy on top: a new chain gets the same addresses every time.
        self._terminate()
        moved = _move_aside(self.state_path, "mismatched")
        self._launch()
        self._deploy()
        return StartReport(
            StartMode.MANIFEST_MISMATCH,
            f"the saved chain did not match the manifest ({problem}); moved its state to "
            f"{moved.name}, started a new chain and deployed the contracts",
            moved,
        )

    def stop(self, timeout: float = 10.0) -> None:
        """Stop anvil (it saves its state on SIGTERM), killing it if it does not stop in time."""
        self._terminate(timeout)
        self._w3 = None

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    # -- test support ----------------------------------------------------------------------

    def snapshot(self) -> str:
        """Take an ``evm_snapshot``; :meth:`revert` returns the chain to it."""
        return str(self._rpc("evm_snapshot", []))

    def revert(self, snapshot_id: str) -> None:
        """Return the chain to a snapshot (which is used up, as in anvil)."""
        if self._rpc("evm_revert", [snapshot_id]) is not True:
            raise LocalChainError(f"anvil could not revert to snapshot {snapshot_id}")

    # -- internals -------------------------------------------------------------------------

    def _command(self) -> list[str]:
        chain = self.settings.local_chain
        command = [
            str(self._anvil or find_anvil()),
            "--host",
            chain.host,
            "--port",
            str(chain.port),
            "--chain-id",
            str(self.settings.network.chain_id),
            "--gas-limit",
            str(chain.gas_limit),
            "--hardfork",
            chain.hardfork,
            # Pre-signed transactions stall if the base fee climbs under load; Sei's stays low.
            "--base-fee",
            "0",
            "--quiet",
        ]
        if not self.automine:
            command += ["--block-time", f"{chain.block_time:g}"]
        if chain.prune_history:
            command.append("--prune-history")
        if self.persist:
            command += [
                "--state",
                str(self.state_path),
                "--state-interval",
                str(self._state_interval),
            ]
        return command

    def _launch(self) -> None:
        """Start anvil and wait until our process (not some other) answers with our chain id."""
        chain = self.settings.local_chain
        if _port_answers(chain.host, chain.port):
            raise LocalChainError(
                f"port {chain.port} on {chain.host} is already in use (another `seiwallet chain` "
                "or node?): stop it, or set SEIWALLET_LOCAL_CHAIN__PORT to a free port"
            )
        command = self._command()
        self._log = self.log_path.open("ab")
        self._log.write(f"--- {datetime.now(UTC).isoformat()} {' '.join(command)}\n".encode())
        self._log.flush()
        log_offset = self._log.tell()
        self._process = subprocess.Popen(  # noqa: S603 - our own argument list, no shell
            command,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            # Its own session: a Ctrl-C in the terminal reaches us, and we stop anvil cleanly.
            start_new_session=True,
            # Only calls prctl, which is safe between fork and exec even with threads around.
            preexec_fn=_die_with_parent if _prctl is not None else None,  # noqa: PLW1509
        )
        deadline = time.monotonic() + self._startup_timeout
        while True:
            returncode = self._process.poll()
            if returncode is not None:
                self._fail_exited(returncode, log_offset)
            chain_id = _chain_id(self.rpc_url)
            if chain_id is not None:
                # The port answers; make sure it is our process answering, and our chain.
                if self._process.poll() is not None:
                    self._fail_exited(self._process.returncode, log_offset)
                if chain_id != self.settings.network.chain_id:
                    self._terminate()
                    raise LocalChainError(
                        f"{self.rpc_url} answers with chain id {chain_id}, not "
                        f"{self.settings.network.chain_id}: another node holds the port"
                    )
                return
            if time.monotonic() > deadline:
                self._terminate()
                raise LocalChainError(
                    f"anvil did not answer on {self.rpc_url} within {self._startup_timeout:g} s: "
                    f"see {self.log_path}"
                )
            time.sleep(0.05)

    def _fail_exited(self, returncode: int, log_offset: int) -> None:
        output = self._log_since(log_offset)
        self._close_log()
        self._process = None
        if _ADDRESS_IN_USE in output:
            chain = self.settings.local_chain
            raise LocalChainError(
                f"anvil cannot listen on {chain.host}:{chain.port}: address already in use; "
                "stop the other process or set SEIWALLET_LOCAL_CHAIN__PORT to a free port"
            )
        if self.persist and _STATE_UNREADABLE in output:
            raise _StateUnusable(_line_with(output, _STATE_UNREADABLE))
        raise LocalChainError(
            f"anvil exited with code {returncode}: {_last_line(output) or 'no output'} "
            f"(see {self.log_path})"
        )

    def _log_since(self, offset: int) -> str:
        try:
            with self.log_path.open("rb") as handle:
                handle.seek(offset)
                return handle.read().decode("utf-8", "replace")
        except OSError:
            return ""

    def _manifest_problem(self) -> str | None:
        """Why the saved chain is not the one the manifest describes, or ``None`` if it is."""
        path = self.settings.deployment_manifest_path
        try:
            deployment = read_manifest(path)
        except DeploymentMissing:
            return f"no readable manifest at {path}"
        problems = check_deployment(self.web3(), deployment)
        if problems:
            return problems[0]
        self._deployment = deployment
        return None

    def _add_missing_contracts(self) -> str:
        """Deploy what a manifest older than this version lacks (the invite escrow, the invoice
        deposits contract) in place.

        The chain and everything on it are kept; the manifest is rewritten. Returns what was
        added, for the start report ("" if nothing).
        """
        deployment = self.deployment
        added: list[str] = []
        if deployment.invite_escrow is None:
            deployment = add_invite_escrow(self.web3(), deployment, self.accounts)
            added.append(f"; deployed the invite escrow it lacked at {deployment.invite_escrow}")
        if deployment.invoice_deposits is None:
            deployment = add_invoice_deposits(self.web3(), deployment, self.accounts)
            added.append(
                f"; deployed the invoice deposits contract it lacked at "
                f"{deployment.invoice_deposits}"
            )
        if not added:
            return ""
        write_manifest(deployment, self.settings.deployment_manifest_path)
        self._deployment = deployment
        return "".join(added)

    def _deploy(self) -> None:
        deployment = deploy_local(self.web3(), self.accounts)
        write_manifest(deployment, self.settings.deployment_manifest_path)
        self._deployment = deployment

    def _fund_sponsors(self) -> None:
        """Top up the accounts that pay gas: the sponsors (for users), the escrow's releaser and
        the deposit boxes' sweeper (anvil can set balances directly)."""
        w3 = self.web3()
        addresses = [account.address for account in self.accounts.sponsors]
        addresses.append(self.accounts.releaser.address)
        addresses.append(self.accounts.sweeper.address)
        for key in self.settings.sponsor_keys:
            addresses.append(
                w3.eth.account.from_key(key.get_secret_value()).address,
            )
        for address in dict.fromkeys(addresses):
            checksummed = to_checksum_address(address)
            if w3.eth.get_balance(checksummed) < SPONSOR_BALANCE_WEI // 10:
                self._rpc("anvil_setBalance", [checksummed, hex(SPONSOR_BALANCE_WEI)])

    def _rpc(self, method: str, params: list[Any]) -> Any:
        response = self.web3().provider.make_request(RPCEndpoint(method), params)
        if "error" in response:
            raise LocalChainError(f"{method} failed: {response['error']}")
        return response.get("result")

    def _terminate(self, timeout: float = 10.0) -> None:
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            # SIGTERM lets anvil write its state file before exiting.
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                log.warning(
                    "anvil (pid %s) ignored SIGTERM for %g s; killing it", process.pid, timeout
                )
                process.kill()
                process.wait()
        self._close_log()

    def _close_log(self) -> None:
        if self._log is not None:
            self._log.close()
            self._log = None


def _port_answers(host: str, port: int) -> bool:
    """Whether something already accepts connections on the port."""
    with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=0.2):
        return True
    return False


def _chain_id(url: str) -> int | None:
    """The chain id ``url`` answers with, or ``None`` if nothing answers (yet)."""
    body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "eth_chainId", "params": []}).encode()
    request = urllib.request.Request(  # noqa: S310 - a URL we built from host and port
        url, data=body, headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=0.5) as response:  # noqa: S310
            return int(json.loads(response.read())["result"], 16)
    except (OSError, ValueError, KeyError, TypeError, urllib.error.URLError):
        return None


def _move_aside(path: Path, why: str) -> Path:
    """Rename a state file we will not use, keeping it for inspection."""
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    target = path.with_name(f"{path.stem}.{why}-{stamp}{path.suffix}")
    path.replace(target)
    log.warning("moved the chain state %s aside to %s (%s)", path, target, why)
    return target


def _line_with(text: str, fragment: str) -> str:
    """The first line of ``text`` that contains ``fragment``, stripped."""
    return next((line.strip() for line in text.splitlines() if fragment in line), fragment)


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1] if lines else ""
