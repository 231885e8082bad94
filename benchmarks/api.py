"""POST /v1/decide of a real `fugger serve`, audit store on, from a concurrent local client,
beside the in-process `decide` on the same snapshots in the same run.

    python -m benchmarks.api [--requests N] [--clients C]
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx

from engine.access.identity import os_user
from engine.access.loading import load_access
from engine.access.tokens import create
from engine.audit.store import AuditStore
from engine.clock import WALL
from engine.evaluator import SafetyEvaluator
from engine.policy.loader import load_policy_set
from engine.timeutil import format_utc, utc_now

ROOT = Path(__file__).resolve().parents[1]
ACCESS = """apiVersion: fuggerbot/v1
kind: AccessPolicy
metadata: {{name: bench-access, version: 1.0.0}}
spec:
  roles: {{trader: [trade], approver: [approve, reject], risk: [resume, kill, reenable],
          admin: [activate, rollback, init_account, manage_tokens]}}
  people:
    - {{name: me, os_user: {user}, roles: [trader, admin]}}
"""
CALM = {"price": 100.0, "volatility": 0.2, "expected_return": 0.05, "drift_score": 0.1,
        "coherence": 0.8, "frs": 0.8, "meta_reliability": 0.8}


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def _fugger(home: Path, *args: str, wait: bool = True) -> subprocess.Popen[str]:
    env = {**os.environ, "FUGGER_ACCESS": str(home / "access.yaml")}
    proc = subprocess.Popen([sys.executable, "-m", "cli.main", *args], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    if wait:
        _, err = proc.communicate()
        if proc.returncode != 0:
            raise SystemExit(f"fugger {' '.join(args)}: {err}")
    return proc


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--requests", type=int, default=2000)
    ap.add_argument("--clients", type=int, default=4)
    args = ap.parse_args()
    sys.stdout.write(json.dumps(bench(args.requests, args.clients), indent=2) + "\n")


def bench(requests: int, clients: int) -> dict[str, Any]:
    """Start a real `fugger serve` on a free port with fresh stores, measure, stop it."""
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp)
        (home / "access.yaml").write_text(ACCESS.format(user=os_user()), encoding="utf-8")
        audit, broker = str(home / "audit.db"), str(home / "paper.db")
        _fugger(home, "paper", "init", "--cash", "1000000", "--broker", broker, "--audit", audit)
        with AuditStore(audit) as store:
            token, _ = create(store, load_access(str(home / "access.yaml")), "me", by="me",
                              ttl=timedelta(hours=1), now=utc_now())
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = int(s.getsockname()[1])
        server = _fugger(home, "serve", "--policies", str(ROOT / "policies"), "--audit", audit,
                         "--broker", broker, "--port", str(port), wait=False)
        url = f"http://127.0.0.1:{port}"
        try:
            for _ in range(600):
                try:
                    httpx.get(f"{url}/v1/health", timeout=5)
                    break
                except httpx.TransportError:
                    time.sleep(0.1)
            return _measure(url, token, requests, clients)
        finally:
            server.terminate()
            server.communicate()


def _measure(url: str, token: str, n: int, clients: int) -> dict[str, Any]:
    snaps = [{"ts": format_utc(utc_now()), "symbol": f"S{i % 20}", **CALM} for i in range(n)]

    def one(snap: dict[str, Any], http: httpx.Client) -> float:
        t0 = time.perf_counter()
        r = http.post("/v1/decide", json=snap)
        r.raise_for_status()
        return time.perf_counter() - t0

    https = [httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"},
                          timeout=120)
             for _ in range(clients)]
    commits_before = _audit_commits(https[0])
    t0 = time.perf_counter()
    with ThreadPoolExecutor(max_workers=clients) as pool:
        lat = list(pool.map(lambda p: one(p[1], https[p[0] % clients]), enumerate(snaps)))
    wall = time.perf_counter() - t0
    commits_after = _audit_commits(https[0])
    commits = (commits_after - commits_before
               if commits_after is not None and commits_before is not None else None)
    for h in https:
        h.close()
    evaluator = SafetyEvaluator(load_policy_set([str(ROOT / "policies")]))
    inproc = []
    for s in snaps:
        t = time.perf_counter()
        evaluator.decide(s, clock=WALL)
        inproc.append(time.perf_counter() - t)
    evaluator.close()
    return {"api_decide": {"requests": n, "clients": clients,
                           "decisions_per_s": round(n / wall, 1),
                           "p50_ms": round(_pct(lat, 0.5) * 1e3, 3),
                           "p99_ms": round(_pct(lat, 0.99) * 1e3, 3),
                           # group commit: requests recorded per durable commit of the store
                           "requests_per_commit": (round(n / commits, 2) if commits else None)},
            "in_process_decide": {"median_ms": round(statistics.median(inproc) * 1e3, 4),
                                  "p99_ms": round(_pct(inproc, 0.99) * 1e3, 4)}}


def _audit_commits(http: httpx.Client) -> float | None:
    """The server's durable commits so far (None from a server that does not count them)."""
    for line in http.get("/metrics").text.splitlines():
        if line.startswith("fugger_audit_commits "):
            return float(line.split()[1])
    return None


if __name__ == "__main__":
    main()
