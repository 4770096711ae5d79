"""Start and stop real server processes: ``redis-server`` and the explorec service.

Used by the tests, the crash test and the load benchmark. Everything binds to 127.0.0.1 on
a free port and lives in a caller-given directory.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from explorec.errors import ExploRecError


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_port(port: int, proc: subprocess.Popen[bytes], timeout: float, what: str, log: Path) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise ExploRecError(f"{what} exited with code {proc.returncode}:\n{_tail(log)}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return
        time.sleep(0.05)
    raise ExploRecError(f"{what} did not open port {port} within {timeout} s:\n{_tail(log)}")


def _tail(path: Path, n: int = 4000) -> str:
    try:
        return path.read_text(errors="replace")[-n:]
    except OSError:
        return ""


@dataclass
class RedisServer:
    """A ``redis-server`` with ``appendonly yes`` and ``appendfsync always`` (every
    acknowledged write is fsynced to the AOF before the reply)."""

    directory: Path
    port: int = 0
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 20.0) -> RedisServer:
        exe = shutil.which("redis-server")
        if exe is None:
            raise ExploRecError("redis-server not found: `make test` installs it (Debian package "
                                "redis-server), or apt-get install -y redis-server")
        self.directory.mkdir(parents=True, exist_ok=True)
        self.port = self.port or free_port()
        log = self.directory / "redis.log"
        self.proc = subprocess.Popen(
            [exe, "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.directory),
             "--appendonly", "yes", "--appendfsync", "always", "--save", "", "--daemonize", "no",
             "--protected-mode", "yes", "--logfile", str(log)],
            stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
        _wait_port(self.port, self.proc, timeout, "redis-server", log)
        import redis

        r = redis.Redis(port=self.port)
        deadline = time.monotonic() + timeout
        while True:  # the port opens before the AOF is loaded
            try:
                if r.ping():
                    break
            except redis.BusyLoadingError:
                pass
            if time.monotonic() > deadline:
                raise ExploRecError(f"redis-server not ready:\n{_tail(log)}")
            time.sleep(0.05)
        r.close()
        return self

    def kill(self) -> None:
        """``kill -9``: no shutdown, no final fsync."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@dataclass
class ServiceProcess:
    """``python -m explorec.serve`` (or ``explorec serve``) in a subprocess on 127.0.0.1."""

    artifact: str | Path
    store: str
    directory: Path
    env: Mapping[str, str] = field(default_factory=dict)
    port: int = 0
    workers: int = 1
    cli: bool = False
    access_log: bool = False
    prefix: tuple[str, ...] = ()  # e.g. ("taskset", "-c", "0,1") to pin the server's CPUs
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def log_path(self) -> Path:
        return self.directory / f"service-{self.port}.log"

    def start(self, timeout: float = 90.0) -> ServiceProcess:
        self.directory.mkdir(parents=True, exist_ok=True)
        self.port = self.port or free_port()
        env = {**os.environ, "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1",
               "MKL_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
               **self.env}
        if self.cli:
            cmd = [*self.prefix, sys.executable, "-m", "explorec.cli.main", "serve"]
        else:
            cmd = [*self.prefix, sys.executable, "-m", "explorec.serve"]
        cmd += ["--artifact", str(self.artifact), "--store", self.store, "--host", "127.0.0.1",
                "--port", str(self.port), "--workers", str(self.workers),
                "--log-level", "info" if self.access_log else "warning"]
        if self.access_log:
            cmd.append("--access-log")
        log = open(self.log_path, "ab")  # handed to the child
        try:
            self.proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT,
                                         start_new_session=True)
        finally:
            log.close()
        _wait_port(self.port, self.proc, timeout, "explorec service", self.log_path)
        self.wait_ready(timeout)
        return self

    def wait_ready(self, timeout: float = 60.0) -> None:
        import httpx

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(self.url + "/readyz", timeout=5).status_code == 200:
                    return
            if self.proc is not None and self.proc.poll() is not None:
                raise ExploRecError(f"service exited:\n{_tail(self.log_path)}")
            time.sleep(0.05)
        raise ExploRecError(f"service not ready within {timeout} s:\n{_tail(self.log_path)}")

    def signal(self, sig: int) -> None:
        assert self.proc is not None
        os.kill(self.proc.pid, sig)

    def kill(self) -> None:
        """``kill -9`` the server (and its workers)."""
        if self.proc is not None and self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.kill()

    def log(self) -> str:
        return _tail(self.log_path, 100_000)
