"""`fugger run` over the shipped history: this checkout against the round-1 code, side by side.

The baseline is commit 71f2b68 ("Benchmark figures after the clean-up"), the last commit of
the first round, before any of the replay's speed work of the second (the honest bench,
then one broker connection and one transaction a day in d483ce4, and what followed). Issue
13's "twenty times faster than today's" was measured against it. `--ref REF` adds other
commits (say, main before a change) as further contenders.

Each contender other than this checkout is built from git in a temporary worktree with a
venv of its own (pip's wheel cache makes that quick; `--cache DIR` keeps them between
runs). All replay the same input: the shipped history and book of this checkout, under the
policy set shipped at the baseline (safety, rotation, approval; the baseline cannot read the
later pre-trade policy). Runs are interleaved, A B A B ..., the first contender rotating
from round to round, each run a fresh audit store in its own directory; wall time and CPU
time (user + system) of every run are kept. The figures to quote are the speed-ups: in each
round the baseline's time over the contender's, median and range over the rounds.

Every run's result is checked before any figure is written: the summary (apart from ids and
times), the number of records of each kind and every day's book, state and order lines.
Runs of one contender must match each other and the contenders of round 2 must match each
other exactly; against the round-1 baseline they must match apart from what round 2 changed
on purpose (ROUND_2_CHANGES, each with the commit that made it). A mismatch fails the bench.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import closing, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results.json"
BASELINE = "71f2b68"
FACTS = ROOT / "examples" / "history.jsonl"
BOOK = ROOT / "examples" / "portfolio.yaml"
#: The record kinds a replay writes in both rounds (round 2 adds access, access_policy and
#: equity_mark records, and counts alerts by episode).
KINDS = ("decision", "order", "approval_requested", "approval_decided", "trading_state",
         "rebalance", "cycle")
#: Where round 2 changed a replay's output on purpose: not compared against round 1.
ROUND_2_CHANGES = {
    "summary.alerts": "167bc46: alert episodes with hysteresis (an action alerts when it "
                      "starts and when it ends, with its span), not one per change of a day",
    "summary.orders.denied_by_rule": "08eff2c: the summary counts denied orders by rule",
    "summary.resume_rule": "3a113f7: the declared operator also re-enables a reduce-only "
                           "latch, and says so",
}


@dataclass
class Contender:
    name: str
    commit: str
    fugger: Path
    policies: Path = Path()
    wall_s: list[float] = field(default_factory=list)
    cpu_s: list[float] = field(default_factory=list)
    digest: dict[str, Any] | None = None


def git(*args: str, cwd: Path = ROOT) -> str:
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True,
                          text=True).stdout.strip()


def build(commit: str, where: Path) -> Path:
    """The `fugger` of `commit`: a worktree of it at `where` with its own venv, made unless
    a complete one is there already. Returns the executable."""
    exe = where / ".venv" / "bin" / "fugger"
    if exe.exists():
        return exe
    if where.exists():
        shutil.rmtree(where)
        git("worktree", "prune")
    print(f"building {commit[:7]} in {where} ...", file=sys.stderr)
    git("worktree", "add", "--detach", str(where), commit)
    subprocess.run([sys.executable, "-m", "venv", str(where / ".venv")], check=True)
    pip = subprocess.run([str(where / ".venv" / "bin" / "python"), "-m", "pip", "install",
                          "--quiet", "--disable-pip-version-check", "-e", str(where)],
                         capture_output=True, text=True, check=False)
    if pip.returncode != 0:
        raise SystemExit(f"{commit[:7]}: pip install failed:\n{pip.stdout}{pip.stderr}")
    return exe


@contextmanager
def contenders(refs: Sequence[str], cache: Path | None) -> Iterator[list[Contender]]:
    """The baseline, each of `refs`, and this checkout (as it is on disk, last)."""
    tmp = Path(tempfile.mkdtemp(prefix="fugger-replay-bench-"))
    home = cache or tmp
    built: list[Path] = []
    try:
        out = []
        for ref in (BASELINE, *refs):
            commit = git("rev-parse", "--verify", f"{ref}^{{commit}}")
            where = home / commit[:12]
            out.append(Contender(f"{ref} ({commit[:7]})", commit, build(commit, where)))
            built.append(where)
        head = git("rev-parse", "HEAD")
        dirty = " + changes" if git("status", "--porcelain", "--untracked-files=no") else ""
        out.append(Contender(f"this checkout ({head[:7]}{dirty})", head,
                             Path(sys.executable).parent / "fugger"))
        for c in out:  # the policy set shipped at the baseline, for every contender
            c.policies = built[0] / "policies"
        yield out
    finally:
        if cache is None:
            for where in built:
                subprocess.run(["git", "worktree", "remove", "--force", str(where)], cwd=ROOT,
                               capture_output=True, check=False)
            shutil.rmtree(tmp, ignore_errors=True)
            git("worktree", "prune")


def replay(c: Contender, work: Path, access: Path) -> dict[str, Any]:
    """One `fugger run` of `c` in a fresh directory: its time is added to `c`, its result
    returned as a digest."""
    work.mkdir()
    audit = work / "audit.db"
    args = [str(c.fugger), "run", "--policies", str(c.policies), "--facts", str(FACTS),
            "--portfolio", str(BOOK), "--audit", str(audit), "--format", "json"]
    # Round 1 had no access policy; later rounds read it from the environment.
    env = {**os.environ, "FUGGER_ACCESS": str(access)}
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    proc = subprocess.run(args, cwd=work, env=env, capture_output=True, text=True,
                          check=False)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        raise SystemExit(f"{c.name}: fugger run failed ({proc.returncode}):\n{proc.stderr}")
    c.wall_s.append(wall)
    c.cpu_s.append(after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime)
    result = digest(json.loads(proc.stdout), audit)
    shutil.rmtree(work)
    return result


def digest(summary: dict[str, Any], audit: Path) -> dict[str, Any]:
    """What a speed-up must not change: the summary without ids and times, the number of
    records of each kind, and each day's book, state and order lines. Read with sqlite3
    itself, so the stores of every round are read alike."""
    import sqlite3

    for key in ("run_id", "started_at", "finished_at"):
        summary.pop(key)
    for alert in summary.get("alerts", {}).get("last", []):
        alert.pop("alert_id", None)
    with closing(sqlite3.connect(audit)) as db:
        counts = {k: db.execute("SELECT COUNT(*) FROM records WHERE kind = ?",
                                (k,)).fetchone()[0] for k in KINDS}
        days = [[b["ts"][:10], b["equity"], b["cash"], b["positions"], b["trading_state"],
                 [[o["symbol"], o["side"], o["shares"], o["status"], o["rule"]]
                  for o in b["order_lines"]]]
                for (text,) in db.execute("SELECT body FROM records WHERE kind = 'cycle' "
                                          "ORDER BY seq")
                for b in (json.loads(text),)]
    return {"summary": summary, "records": counts, "days": days}


def differences(a: Any, b: Any, ignore: Sequence[str] = (), path: str = "") -> list[str]:
    """Where `a` and `b` differ, by dotted path, apart from the paths in `ignore`."""
    if path.lstrip(".") in ignore:
        return []
    if isinstance(a, dict) and isinstance(b, dict):
        return [d for k in sorted(set(a) | set(b), key=str)
                for d in differences(a.get(k), b.get(k), ignore, f"{path}.{k}")]
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        return [d for i, (x, y) in enumerate(zip(a, b, strict=True))
                for d in differences(x, y, ignore, f"{path}[{i}]")]
    return [] if a == b else [f"{path.lstrip('.')}: {str(a)[:120]} != {str(b)[:120]}"]


def compare(cs: Sequence[Contender]) -> list[str]:
    base, problems = cs[0], []
    for c in cs[1:]:
        assert c.digest is not None
        ignore = ROUND_2_CHANGES if c is cs[1] else ()
        against = base if c is cs[1] else cs[1]
        problems += [f"{c.name} against {against.name}: {d}"
                     for d in differences(against.digest, c.digest, tuple(ignore))]
    return problems


def speedup(base: Sequence[float], other: Sequence[float]) -> dict[str, Any]:
    ratios = sorted(b / o for b, o in zip(base, other, strict=True))
    return {"median": round(statistics.median(ratios), 2),
            "range": [round(ratios[0], 2), round(ratios[-1], 2)]}


def run(rounds: int, refs: Sequence[str], cache: Path | None) -> dict[str, Any]:
    from benchmarks.run import machine

    info = machine()
    with contenders(refs, cache) as cs, tempfile.TemporaryDirectory() as tmp:
        access = Path(tmp) / "access.yaml"
        subprocess.run([str(cs[-1].fugger), "access", "init", "--out", str(access)],
                       check=True, capture_output=True)
        problems: list[str] = []
        for r in range(rounds):
            order = cs[r % len(cs):] + cs[:r % len(cs)]
            for c in order:
                print(f"round {r + 1}/{rounds}: {c.name} ...", file=sys.stderr, flush=True)
                got = replay(c, Path(tmp) / f"{r}-{c.commit[:12]}-{len(c.wall_s)}", access)
                if c.digest is None:
                    c.digest = got
                else:
                    problems += [f"{c.name}, round {r + 1} against its first: {d}"
                                 for d in differences(c.digest, got)]
                print(f"  {c.wall_s[-1]:.1f} s wall, {c.cpu_s[-1]:.1f} s CPU",
                      file=sys.stderr)
        problems += compare(cs)
    info["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    base = cs[0]
    assert base.digest is not None
    return {
        "machine": info,
        "what": "fugger run over examples/history.jsonl with examples/portfolio.yaml, "
                f"under the policy set shipped at {BASELINE}; no report",
        "baseline": {"commit": base.commit,
                     "why": "the last commit of round 1, before any replay speed work"},
        "days": base.digest["summary"]["days"], "rounds": rounds,
        "order": "interleaved, the first contender rotating from round to round",
        "contenders": {c.name: {
            "commit": c.commit,
            "wall_s": [round(x, 2) for x in c.wall_s],
            "median_wall_s": round(statistics.median(c.wall_s), 2),
            "cpu_s": [round(x, 2) for x in c.cpu_s],
            "median_cpu_s": round(statistics.median(c.cpu_s), 2)} for c in cs},
        "speedup_wall": {c.name: speedup(base.wall_s, c.wall_s) for c in cs[1:]},
        "speedup_cpu": {c.name: speedup(base.cpu_s, c.cpu_s) for c in cs[1:]},
        "equivalence": {"ok": not problems, "problems": problems[:20],
                        "not_compared_against_round_1": ROUND_2_CHANGES},
    }


def write(results: dict[str, Any], out: Path) -> None:
    """Into `out` under "replay", keeping what `make bench` wrote there."""
    data = json.loads(out.read_text(encoding="utf-8")) if out.exists() else {}
    data["replay"] = results
    out.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")


def print_table(results: dict[str, Any]) -> None:
    m = results["machine"]
    print(f"fugger run, {results['days']} days, {results['rounds']} rounds interleaved; "
          f"{m['cpus']} CPUs, load {m['load_average_at_start'][0]} -> "
          f"{m['load_average_at_end'][0]}")
    print(f"{'contender':40} {'median wall s':>14} {'median CPU s':>13} "
          f"{'speed-up wall':>22} {'speed-up CPU':>22}")
    for name, c in results["contenders"].items():
        w, u = results["speedup_wall"].get(name), results["speedup_cpu"].get(name)
        fw = f"{w['median']}x ({w['range'][0]}..{w['range'][1]})" if w else "1x"
        fu = f"{u['median']}x ({u['range'][0]}..{u['range'][1]})" if u else "1x"
        print(f"{name:40} {c['median_wall_s']:>14} {c['median_cpu_s']:>13} {fw:>22} "
              f"{fu:>22}")
    eq = results["equivalence"]
    print("same run in every contender" if eq["ok"] else "RUNS DIFFER:")
    for p in eq["problems"]:
        print(f"  {p}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3, help="runs of each contender")
    parser.add_argument("--ref", action="append", default=[], metavar="REF",
                        help="another commit to measure beside the baseline")
    parser.add_argument("--cache", type=Path, metavar="DIR",
                        help="keep the built contenders here and reuse them")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    results = run(args.rounds, args.ref, args.cache.resolve() if args.cache else None)
    print_table(results)
    if not results["equivalence"]["ok"]:
        sys.exit(1)
    write(results, args.out)
    print(f"written to {args.out} (replay)")


if __name__ == "__main__":
    main()
