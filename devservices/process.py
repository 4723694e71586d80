"""Start, watch and stop a local server process with bounded waits.

Every service Headrace's tests use (Cassandra, PostgreSQL, etcd,
kube-apiserver) is a child process started here. A service that does not come
up raises ``ServiceError`` naming the service, its command and the last lines
of its log; nothing waits without a deadline.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path


class ServiceError(RuntimeError):
    """A local service failed to start or stop."""


def cache_dir() -> Path:
    """Where heavy downloads and builds are kept between runs: ``$HEADRACE_CACHE`` or ``~/.cache/headrace``."""
    return Path(os.environ.get("HEADRACE_CACHE", Path.home() / ".cache" / "headrace"))


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that was free a moment ago on ``host``."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def port_open(host: str, port: int, timeout: float = 0.5) -> bool:
    """True when something accepts TCP connections on host:port."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def tail(path: Path, lines: int = 30) -> str:
    """The last ``lines`` lines of a log file, or a note that it is missing."""
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return f"(no log at {path})"
    return "\n".join(text.splitlines()[-lines:])


@dataclass
class ManagedProcess:
    """A child process with its log file; stopped in its own process group."""

    name: str
    command: Sequence[str]
    log_file: Path
    env: dict[str, str] | None = None
    cwd: Path | None = None
    user: str | None = None
    process: subprocess.Popen[bytes] | None = field(default=None, init=False)

    def start(self) -> None:
        self.log_file.parent.mkdir(parents=True, exist_ok=True)
        command = list(self.command)
        if self.user is not None:
            command = ["runuser", "-u", self.user, "--", *command]
        with self.log_file.open("ab") as log:
            try:
                self.process = subprocess.Popen(
                    command,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                    env={**os.environ, **(self.env or {})},
                    cwd=self.cwd,
                    start_new_session=True,
                )
            except OSError as exc:
                raise ServiceError(f"{self.name}: cannot run {command[0]}: {exc}") from exc

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def failure(self, why: str) -> ServiceError:
        return ServiceError(
            f"{self.name} {why}\ncommand: {' '.join(self.command)}\n"
            f"last lines of {self.log_file}:\n{tail(self.log_file)}"
        )

    def wait_until(self, ready: Callable[[], bool], timeout: float, interval: float = 0.25) -> None:
        """Poll ``ready`` until it is true; fail if the process exits or time runs out."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                raise self.failure(f"exited with code {self.process.returncode} before it was ready")
            with contextlib.suppress(Exception):
                if ready():
                    return
            time.sleep(interval)
        self.stop()
        raise self.failure(f"was not ready after {timeout:.0f}s")

    def stop(self, timeout: float = 30.0) -> None:
        """SIGTERM the process group, then SIGKILL what is left after ``timeout``."""
        if self.process is None or self.process.poll() is not None:
            return
        stop_process_group(self.process.pid, timeout)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout=1)


def stop_process_group(pid: int, timeout: float = 30.0) -> None:
    """Terminate the process group led by ``pid``; kill it if it lingers."""
    try:
        os.killpg(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.killpg(pid, 0)
        except ProcessLookupError:
            return
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)
        time.sleep(0.1)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGKILL)
