"""A real `fugger serve` on a free port of 127.0.0.1, with real SQLite stores and API tokens."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import httpx
from conftest import CLI_HANG_GUARD_S, REPO_ROOT, run_fugger, write_frozen_policies

from engine.access.loading import load_access
from engine.access.tokens import create
from engine.audit.store import AuditStore
from engine.timeutil import utc_now


@dataclass(frozen=True)
class Server:
    url: str
    home: Path
    proc: subprocess.Popen[str]
    tokens: dict[str, str]

    @property
    def audit(self) -> Path:
        return self.home / "audit.db"

    @property
    def broker(self) -> Path:
        return self.home / "paper.db"

    def client(self, who: str | None = None) -> httpx.Client:
        headers = {"Authorization": f"Bearer {self.tokens[who]}"} if who else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=CLI_HANG_GUARD_S)

    def stop(self) -> tuple[int, str]:
        """SIGTERM, then the exit status and what it wrote to stderr."""
        self.proc.send_signal(signal.SIGTERM)
        _, err = self.proc.communicate(timeout=CLI_HANG_GUARD_S)
        return self.proc.returncode, err


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def serving(home: Path, *, policies: Path | None = None,
            holders: tuple[str, ...] = ("tim", "ann", "rita"),
            access: Path | None = None) -> Iterator[Server]:
    """Start `fugger serve` in `home` (frozen policies unless `policies`, a paper account of
    1,000,000, the tests' access policy unless `access`) and wait until it answers; stopped
    with SIGTERM afterwards."""
    home.mkdir(parents=True, exist_ok=True)
    if policies is None:
        policies = write_frozen_policies(home / "policies")
    audit, broker = home / "audit.db", home / "paper.db"
    init = run_fugger(["paper", "init", "--cash", "1000000", "--broker", str(broker),
                       "--audit", str(audit)])
    assert init.returncode == 0, init.stderr
    access_path = str(access or os.environ["FUGGER_ACCESS"])
    policy = load_access(access_path)
    with AuditStore(audit) as store:
        tokens = {h: create(store, policy, h, by="me", ttl=timedelta(days=1),
                            now=utc_now())[0] for h in holders}
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "cli.main", "serve", "--policies", str(policies), "--audit",
         str(audit), "--broker", str(broker), "--port", str(port), "--access", access_path],
        cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    server = Server(f"http://127.0.0.1:{port}", home, proc, tokens)
    try:
        _wait_until_listening(server)
        yield server
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()


def _wait_until_listening(server: Server) -> None:
    """A hang guard, not a speed requirement."""
    deadline = time.monotonic() + CLI_HANG_GUARD_S
    while time.monotonic() < deadline:
        if server.proc.poll() is not None:
            _, err = server.proc.communicate()
            raise AssertionError(f"fugger serve exited {server.proc.returncode}: {err}")
        try:
            httpx.get(f"{server.url}/v1/health", timeout=5)
            return
        except httpx.TransportError:
            time.sleep(0.1)
    raise AssertionError("fugger serve did not start listening")
