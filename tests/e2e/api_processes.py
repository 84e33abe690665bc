"""``seiwallet serve --workers N`` as a subprocess, and which of its workers holds a connection.

Used by the end-to-end test of several API processes and by ``bench/transfers.py
--api-processes``. Which worker process serves a TCP connection is read from ``/proc`` (the
worker whose open file descriptors include the server side of the connection): nothing is added
to the app to tell, so production exposes nothing either. Linux only.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
from tests.fixtures.processes import die_with_parent


def worker_env(
    *,
    data_dir: Path,
    database_url: str,
    origin: str,
    signer_socket: Path,
    signer_secret: str,
    rpc_url: str | None = None,
    chain_port: int | None = None,
    **more: str,
) -> dict[str, str]:
    """The environment of the platform's processes (``serve``, ``worker``) on one database."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SEIWALLET_")}
    env.update(
        SEIWALLET_PROFILE="local",
        SEIWALLET_DATA_DIR=str(data_dir),
        SEIWALLET_DATABASE_URL=database_url,
        SEIWALLET_WEB__PUBLIC_URL=origin,
        SEIWALLET_SIGNER__ORIGINS=f'["{origin}"]',
        SEIWALLET_SIGNER__SOCKET=str(signer_socket),
        SEIWALLET_SIGNER__SECRET=signer_secret,
    )
    if rpc_url is not None:
        env["SEIWALLET_RPC_URL"] = rpc_url
    if chain_port is not None:
        env["SEIWALLET_LOCAL_CHAIN__PORT"] = str(chain_port)
    env.update(more)
    return env


class ApiProcesses:
    """``seiwallet serve --workers N --port P`` started, waited for and stopped."""

    def __init__(self, env: dict[str, str], *, workers: int, port: int, log_path: Path) -> None:
        self.env = env
        self.workers = workers
        self.port = port
        self.log_path = log_path
        self.base_url = f"http://127.0.0.1:{port}"
        self.process: subprocess.Popen[bytes] | None = None
        self._worker_pids: list[int] = []

    def start(self, timeout: float = 120.0) -> None:
        """Start, and return once every worker has answered a request of its own."""
        self.launch()
        self.wait_ready(timeout)

    def launch(self) -> None:
        """Start the supervisor (it prepares, then spawns the workers) without waiting."""
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "seiwallet",
                    "serve",
                    "--workers",
                    str(self.workers),
                    "--host",
                    "127.0.0.1",
                    "--port",
                    str(self.port),
                ],
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                preexec_fn=die_with_parent,  # noqa: PLW1509 - prctl only, no locks taken
            )

    def wait_ready(self, timeout: float = 120.0) -> None:
        """Return once every worker has answered a request of its own."""
        assert self.process is not None, "launch() first"
        deadline = time.monotonic() + timeout
        answered: set[int] = set()
        while len(answered) < self.workers:
            if self.process.poll() is not None:
                raise RuntimeError(f"seiwallet serve exited: {self.log_tail()}")
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"only {len(answered)} of {self.workers} API processes answered in "
                    f"{timeout:.0f} s: {self.log_tail()}"
                )
            # A new connection each time: the kernel hands it to any worker that accepts.
            try:
                with httpx.Client(base_url=self.base_url, timeout=5) as probe:
                    answer = probe.get("/healthz")
                    if answer.status_code == 200:
                        owner = self.served_by(answer)
                        if owner is not None:
                            answered.add(owner)
                            continue
            except httpx.TransportError:
                pass
            time.sleep(0.1)

    def log_tail(self, characters: int = 3000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-characters:]
        except OSError:
            return "(no log)"

    def worker_pids(self) -> list[int]:
        """The processes serving: the supervisor's children (or itself, with one worker)."""
        if self.process is None:
            return []
        if self.workers == 1:
            return [self.process.pid]
        found = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            # The parent pid is the 2nd field after the command name (which may hold spaces).
            parent = int(stat.rsplit(")", 1)[1].split()[1])
            # (multiprocessing's resource tracker is a child too, but runs no app)
            if parent == self.process.pid and _is_worker(int(entry.name)):
                found.append(int(entry.name))
        self._worker_pids = sorted(set(self._worker_pids) | set(found))
        return sorted(found)

    def owner_of(self, client_port: int) -> int | None:
        """The worker process holding the server side of the connection from ``client_port``."""
        inodes = {
            inode
            for local, remote, inode in _tcp_connections()
            if local == self.port and remote == client_port
        }
        if not inodes:
            return None
        for pid in self.worker_pids():
            if inodes & _socket_inodes(pid):
                return pid
        return None

    def connections_per_worker(self) -> dict[int, int]:
        """How many open client connections each worker holds (how the kernel spread them)."""
        served = {
            inode
            for local, remote, inode in _tcp_connections()
            if local == self.port and remote != 0  # not the listening socket
        }
        return {pid: len(served & _socket_inodes(pid)) for pid in self.worker_pids()}

    def terminate(self) -> None:
        """Ask the supervisor to stop (its workers with it); :meth:`stop` waits for it."""
        if self.process is not None and self.process.poll() is None:
            self.worker_pids()
            self.process.terminate()

    def served_by(self, response: httpx.Response) -> int | None:
        """The worker that answered ``response`` (its connection is still open)."""
        return self.owner_of(client_port(response))

    @contextlib.contextmanager
    def client_on(self, worker: int, attempts: int = 400, **options: Any) -> Iterator[httpx.Client]:
        """An HTTP client whose (kept-alive) connection is served by ``worker``."""
        for _ in range(attempts):
            client = httpx.Client(base_url=self.base_url, timeout=30, **options)
            try:
                if self.served_by(client.get("/healthz")) == worker:
                    yield client
                    return
            finally:
                client.close()
        raise AssertionError(f"no new connection reached worker {worker} in {attempts} tries")

    def stop(self) -> None:
        """Stop the supervisor (it stops its workers); kill what is left after 20 s."""
        if self.process is None:
            return
        self.terminate()
        if self.process.poll() is None:
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        for pid in self._worker_pids:
            # A worker the supervisor left behind (it was killed): still a spawned worker of
            # ours, not a new process that took its number.
            if _is_worker(pid):
                with contextlib.suppress(OSError):
                    os.kill(pid, signal.SIGKILL)
        self.process = None


def client_port(response: httpx.Response) -> int:
    """The local (client) port of the connection ``response`` came over."""
    stream = response.extensions["network_stream"]
    return int(stream.get_extra_info("client_addr")[1])


def _is_worker(pid: int) -> bool:
    """Whether ``pid`` is a process multiprocessing spawned to run a worker."""
    try:
        return b"spawn_main" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False


def _tcp_connections() -> list[tuple[int, int, int]]:
    """(local port, remote port, socket inode) of this network namespace's TCP sockets."""
    rows = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            local, remote = (int(f.rsplit(":", 1)[1], 16) for f in fields[1:3])
            rows.append((local, remote, int(fields[9])))
    return rows


def _socket_inodes(pid: int) -> set[int]:
    inodes: set[int] = set()
    try:
        descriptors = list(Path(f"/proc/{pid}/fd").iterdir())
    except OSError:
        return inodes
    for descriptor in descriptors:
        try:
            target = os.readlink(descriptor)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(int(target[8:-1]))
    return inodes
