"""Decision latency, audit throughput and alert hand-off, every figure measured in one run.

Decision latency, per snapshot, at 4 rules (the shipped rails) and at 100 rules:
- plain: the rules as Python expressions (the floor);
- raw: the same rules through durable-rules' C API and nothing else;
- engine: SafetyEvaluator.decide;
- engine+record: decide, then the audit record's canonical text and hash (no SQLite).
Contenders run interleaved in rotating chunks, every call is timed and kept, and every
result is checked against plain's on every snapshot (the run fails if any disagrees). The
machine is shared and noisy: quote the ratios, which compare calls made side by side.

The gate per order (benchmarks/gate.py): the order and book facts and the gate with the shipped
order policy (pre-trade controls), against the safety decision alone, interleaved the same way;
each order's outcome must be the same in every repeat (the run fails if any differs).

Backends: durable-rules and the vectorised backend on the shipped history, snapshots a second
of each and their agreement on every snapshot (the run fails if any disagrees).

Audit throughput: decide and append in batches (group commit), and the store alone.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from importlib import metadata
from pathlib import Path
from typing import Any

from benchmarks import api, backends, gate
from benchmarks import contenders as ct
from benchmarks.timing import HEADER, interleaved, print_latencies, ratio, summary
from engine.audit.store import AuditStore, encode_record
from engine.backends.vector import VectorBackend
from engine.decision import Decision
from engine.evaluator import SafetyEvaluator
from engine.policy.loader import load_policy_set, policy_set_from_texts
from engine.policy.model import Policy, PolicySet

ROOT = Path(__file__).resolve().parents[1]
PATHS = ("plain", "raw_durable_rules", "engine", "engine+record")


def machine() -> dict[str, Any]:
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT,
                                capture_output=True, text=True, timeout=5).stdout.strip()
    except OSError:
        commit = ""
    return {"python": platform.python_version(), "platform": platform.platform(),
            "cpu": model, "cpus": os.cpu_count(), "durable_rules": metadata.version(
                "durable-rules"), "commit": commit,
            "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
            "started_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}


def policy_set(n_rules: int) -> PolicySet:
    if n_rules == 4:
        return load_policy_set([str(ROOT / "policies" / "safety.yaml")])
    return policy_set_from_texts([("bench.yaml", ct.policy_text(n_rules))])


def record_of(d: Decision, s: ct.Snapshot) -> tuple[str, str]:
    """What appending a decision costs before SQLite: its canonical text and its hash."""
    return encode_record(1, "decision", d.decision_id, d.decided_at, "0" * 64,
                         {"decision": d.to_json(), "facts": d.record_facts(), "run_id": None})


def checker(policy: Policy) -> Callable[[str, Any, Any, Any], str | None]:
    def check(name: str, s: Any, result: Any, reference: Any) -> str | None:
        decision = result[0] if isinstance(result, tuple) else result
        if isinstance(decision, Decision):
            fired = frozenset(f.rule for f in decision.fired)
            action = ct.expected_action(policy, reference)
            if decision.action.value != action or decision.findings:
                return (f"{name}: {decision.action.value} (findings {len(decision.findings)}) "
                        f"where the rules give {action} for {s}")
        else:
            fired = result
        if fired != reference:
            return f"{name}: fired {sorted(fired)} where plain fired {sorted(reference)} for {s}"
        return None
    return check


def latency(n_rules: int, items: list[ct.Snapshot], repeats: int, chunk: int
            ) -> dict[str, Any]:
    ps = policy_set(n_rules)
    policy = ps.of_kind("SafetyPolicy")[0]
    evaluator = SafetyEvaluator(ps)
    raw, close_raw = ct.raw(policy, f"{n_rules}-{time.time_ns()}")
    decide = evaluator.decide
    paths: dict[str, Callable[[ct.Snapshot], Any]] = {
        "plain": ct.plain(policy), "raw_durable_rules": raw, "engine": decide,
        "engine+record": lambda s: (d := decide(s), record_of(d, s))}
    for fn in paths.values():  # warm up every path
        for s in items[:300]:
            fn(s)
    runs = interleaved(paths, items, repeats=repeats, chunk=chunk, check=checker(policy))
    close_raw()
    evaluator.close()
    s = runs.samples
    return {
        **{name: summary(s[name]) for name in PATHS},
        "ratio_engine_to_raw": ratio(s["engine"], s["raw_durable_rules"]),
        "ratio_engine_record_to_raw": ratio(s["engine+record"], s["raw_durable_rules"]),
        "ratio_engine_to_plain": ratio(s["engine"], s["plain"]),
        "agreement": {"checked": runs.checked, "disagreements": runs.disagreements},
    }


def decision_record(d: Decision) -> tuple[str, str, dict[str, Any]]:
    return ("decision", d.decision_id, {"decision": d.to_json(), "facts": d.record_facts(),
                                        "run_id": None})


def throughput(tmp: Path, items: list[ct.Snapshot], repeats: int) -> dict[str, Any]:
    """Decisions per second decided and appended in batches of 500 (one durable commit per
    batch), deciding in durable-rules one snapshot at a time and in the vectorised backend a
    batch at a time; and records per second for the store alone. The three alternate, each
    `repeats` times, and each is also timed in CPU seconds (steadier on a busy machine)."""
    ps = policy_set(4)
    evaluator = SafetyEvaluator(ps)
    vector = VectorBackend(ps)
    store = AuditStore(tmp / "throughput.db")
    store.record_activation(ps)
    decided = [decision_record(evaluator.decide(s)) for s in items]

    def durable() -> None:
        for i in range(0, len(items), 500):
            store.append_many([decision_record(evaluator.decide(s))
                               for s in items[i:i + 500]])

    def vectorised() -> None:
        for i in range(0, len(items), 500):
            batch = vector.evaluate(items[i:i + 500])
            store.append_many([decision_record(batch.decision(k)) for k in range(len(batch))])

    def alone() -> None:
        for i in range(0, len(decided), 500):
            store.append_many(decided[i:i + 500])

    paths = {"decide_and_append_per_s": durable, "vector_decide_and_append_per_s": vectorised,
             "append_alone_per_s": alone}
    wall: dict[str, list[float]] = {k: [] for k in paths}
    cpu: dict[str, list[float]] = {k: [] for k in paths}
    for _ in range(repeats):
        for name, fn in paths.items():
            t0, c0 = time.perf_counter(), time.process_time()
            fn()
            wall[name].append(len(items) / (time.perf_counter() - t0))
            cpu[name].append(len(items) / (time.process_time() - c0))
    verified = store.verify()
    store.close()
    evaluator.close()

    def spread(xs: list[float]) -> dict[str, Any]:
        return {"median": round(statistics.median(xs)), "range": [round(min(xs)),
                                                                  round(max(xs))]}
    return {"batch": 500, **{k: spread(v) for k, v in wall.items()},
            "per_cpu_second": {k: spread(v) for k, v in cpu.items()},
            "records_verified": verified.checked, "chain_ok": verified.ok}


def alert_latency(tmp: Path, n: int = 200, pace_s: float = 0.0) -> dict[str, Any]:
    """Time from an event reaching the alert engine to each sink starting to send it: the
    JSONL file and a webhook on a local HTTP server, both behind the non-blocking
    dispatcher. Also the time the event call itself takes (what a cycle waits for)."""
    import http.server
    import threading

    from engine.monitoring.alerting.engine import AlertEngine
    from engine.monitoring.dispatch import AlertDispatcher
    from engine.monitoring.sinks import JsonlSink, WebhookSink

    class Quiet(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length", 0)))
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Quiet)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/hook"
    tag = "paced" if pace_s else "burst"
    store = AuditStore(tmp / f"alerts-{tag}.db")
    engine = AlertEngine(store, None, "bench")
    dispatcher = AlertDispatcher([JsonlSink(tmp / f"alerts-{tag}.jsonl"),
                                  WebhookSink(url, timeout_s=5.0)],
                                 on_failure=engine.on_sink_failure)
    engine.attach_dispatcher(dispatcher)
    call_us: list[float] = []
    actions = ("halt", "allow")
    for i in range(n):
        t0 = time.perf_counter_ns()
        engine.on_safety(f"2024-01-{1 + i % 28:02d}T21:00:00Z", f"S{i}", actions[i % 2], "r")
        call_us.append((time.perf_counter_ns() - t0) / 1000)
        if pace_s:
            time.sleep(pace_s)
    dispatcher.flush(30.0)
    samples = dispatcher.stats().samples
    dispatcher.close()
    engine.close()
    store.close()
    server.shutdown()
    by_sink: dict[str, list[float]] = {}
    for smp in samples:
        by_sink.setdefault(smp.sink, []).append(smp.handoff_s * 1e6)
    return {"pace_s": pace_s, "event_call": summary([call_us]),
            "handoff": {k: summary([v]) for k, v in sorted(by_sink.items())}}


def run(n: int, repeats: int, chunk: int, out: Path) -> dict[str, Any]:
    items = ct.snapshots(n)
    results: dict[str, Any] = {"machine": machine(), "snapshots": n, "repeats": repeats,
                               "chunk": chunk}
    for n_rules in (4, 100):
        print(f"decision latency, {n_rules} rules ...", file=sys.stderr)
        results[f"rules_{n_rules}"] = latency(n_rules, items, repeats, chunk)
    print("gate per order, with the order policy ...", file=sys.stderr)
    results["gate"] = gate.bench(ROOT, items, repeats, chunk)
    print("backends on the shipped history ...", file=sys.stderr)
    results["backends"] = backends.run(repeats)
    with tempfile.TemporaryDirectory() as tmp:
        print("audit throughput ...", file=sys.stderr)
        results["audit"] = throughput(Path(tmp), items, repeats)
        print("alerts ...", file=sys.stderr)
        # One event per 10 ms cycle (about what a replay day costs), then everything at once.
        results["alerts"] = alert_latency(Path(tmp), pace_s=0.01)
        results["alerts_burst"] = alert_latency(Path(tmp))
    print("API: POST /v1/decide of fugger serve ...", file=sys.stderr)
    results["api"] = api.bench(requests=1000, clients=4)
    results["machine"]["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    if out.exists():  # the replay's figures are `make bench-replay`'s: kept
        kept = json.loads(out.read_text(encoding="utf-8")).get("replay")
        if kept is not None:
            results["replay"] = kept
    out.write_text(json.dumps(results, indent=2) + "\n")
    return results


def print_table(results: dict[str, Any]) -> None:
    m = results["machine"]
    print(f"{results['snapshots']} snapshots x {results['repeats']} repeats, chunks of "
          f"{results['chunk']}; Python {m['python']}, {m['cpus']} CPUs ({m['cpu']}), load "
          f"{m['load_average_at_start'][0]} -> {m['load_average_at_end'][0]}")
    for key in ("rules_4", "rules_100"):
        print(f"\n{key.replace('_', ' ')}")
        print_latencies(results[key], PATHS, (
            ("engine / raw", "ratio_engine_to_raw"),
            ("engine+record / raw", "ratio_engine_record_to_raw"),
            ("engine / plain", "ratio_engine_to_plain")))
    a, ip = results["api"]["api_decide"], results["api"]["in_process_decide"]
    print(f"\nPOST /v1/decide, {a['requests']} requests from {a['clients']} clients: "
          f"{a['decisions_per_s']} decisions/s, p50 {a['p50_ms']} ms, p99 {a['p99_ms']} ms; "
          f"in-process decide median {ip['median_ms']} ms")
    gate.print_table(results["gate"])
    backends.print_table(results["backends"])
    au = results["audit"]
    print(f"\naudit store, batches of {au['batch']} (one commit each)")
    for label, k in (("decide and append /s", "decide_and_append_per_s"),
                     ("vector decide+append /s", "vector_decide_and_append_per_s"),
                     ("append alone /s", "append_alone_per_s")):
        r, c = au[k], au["per_cpu_second"][k]
        print(f"{label:26} {r['median']:>10}  (repeats {r['range'][0]}..{r['range'][1]}); "
              f"per CPU second {c['median']} ({c['range'][0]}..{c['range'][1]})")
    print(f"{'chain verified':26} {au['records_verified']:>10} records, ok={au['chain_ok']}")
    for key, label in (("alerts", "one event per 10 ms cycle"),
                       ("alerts_burst", "all events back to back")):
        al = results[key]
        print(f"\nalerts, {label} ({al['event_call']['n']} events, half raise an alert)"
              f"\n{HEADER[:48]}")
        print(f"{'event call (record + queue)':26} {al['event_call']['median_us']:>10} "
              f"{al['event_call']['p99_us']:>10}")
        for sink, st in al["handoff"].items():
            print(f"{'hand-off to ' + sink:26} {st['median_us']:>10} {st['p99_us']:>10}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--snapshots", type=int, default=5000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--chunk", type=int, default=250)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results.json")
    args = parser.parse_args()
    results = run(args.snapshots, args.repeats, args.chunk, args.out)
    print_table(results)
    print(f"\nwritten to {args.out}")
    bad = [k for k in ("rules_4", "rules_100", "gate")
           if results[k]["agreement"]["disagreements"]]
    for k in bad:
        for line in results[k]["agreement"]["disagreements"]:
            print(f"DISAGREEMENT ({k}): {line}", file=sys.stderr)
    first = results["backends"]["agreement"]["first_disagreement"]
    if first:
        print(f"DISAGREEMENT (backends): {first}", file=sys.stderr)
    if bad or first:
        sys.exit(1)


if __name__ == "__main__":
    main()
