"""Decision latency and audit throughput, every figure measured in the same run.

Paths compared, per snapshot:
- plain: a Python if/else of the four v2.0 rails (the floor);
- raw: the same rules through durable-rules' C API (serialise, assert as a fact, drain the
  fired rules, retract), with nothing else;
- engine: SafetyEvaluator.decide (fact checks, durable-rules, the decision record);
- engine+audit: decide, then record, one transaction per decision (what an order gate waits for);
- throughput with the audit store, appending in batches of 500.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import durable_rules_engine as dre

from engine.audit.store import AuditStore
from engine.evaluator import SafetyEvaluator
from engine.policy.loader import load_policy_set, policy_set_from_texts

ROOT = Path(__file__).resolve().parents[1]
FACTS = ("drift_score", "volatility", "coherence", "frs", "meta_reliability")


def snapshots(n: int, seed: int = 7) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    return [{"ts": "2024-01-02T21:00:00Z", "symbol": f"S{i % 50}",
             "drift_score": rng.random(), "volatility": rng.random() * 0.6,
             "coherence": rng.random(), "frs": rng.random(), "meta_reliability": rng.random()}
            for i in range(n)]


def plain(s: dict[str, Any]) -> str:
    if s["drift_score"] >= 0.8:
        return "halt"
    if s["volatility"] >= 0.35:
        return "flatten"
    if s["coherence"] <= 0.5:
        return "block_new"
    if s["frs"] < 0.4 or s["meta_reliability"] < 0.4:
        return "wait_confirmation"
    return "allow"


def raw_ruleset(n_rules: int) -> Callable[[dict[str, Any]], set[str]]:
    """The same rules registered straight through the C API. Past 64 matching conditions one
    ruleset fails (error 303), so larger sets are split into rulesets of 40 rules, as the
    engine does, and the snapshot is asserted into each."""
    base = [("$gte", "drift_score", 0.8), ("$gte", "volatility", 0.35),
            ("$lte", "coherence", 0.5), ("$lt", "frs", 0.4), ("$lt", "meta_reliability", 0.4)]
    count = 5 if n_rules <= 5 else n_rules
    handles = []
    for start in range(0, count, 40):
        rules: dict[str, Any] = {}
        for i in range(start, min(count, start + 40)):
            op, fact, thr = base[i % 5]
            thr = thr if i < 5 else round(thr + (i // 5) * 0.001, 6)
            rules[f"r{i}"] = {"all": [{"m": {"$and": [{"fb": 1}, {op: {fact: thr}}]}}]}
        handles.append(dre.create_ruleset(f"bench-raw-{n_rules}-{start}-{time.time_ns()}",
                                          json.dumps(rules)))
    counter = iter(range(1, 10**9))

    def fire(s: dict[str, Any]) -> set[str]:
        fact = json.dumps({"sid": "0", "id": next(counter), "fb": 1,
                           **{k: s[k] for k in FACTS}})
        fired: set[str] = set()
        for handle in handles:
            try:
                code, state = dre.assert_fact(handle, fact)
                if code == 0:
                    result = dre.start_action_for_state(handle, state)
                    while result:
                        fired.update(json.loads(result[1] if isinstance(result, tuple)
                                                else result))
                        result = dre.complete_and_start_action(handle, state)
            finally:
                dre.retract_fact(handle, fact)
        return fired

    return fire


def policy_text(n_rules: int) -> str:
    base = [("drift_score", ">=", 0.8, "halt"), ("volatility", ">=", 0.35, "flatten"),
            ("coherence", "<=", 0.5, "block_new"), ("frs", "<", 0.4, "wait_confirmation"),
            ("meta_reliability", "<", 0.4, "wait_confirmation")]
    lines = ["apiVersion: fuggerbot/v1", "kind: SafetyPolicy",
             "metadata: {name: bench, version: 1.0.0}", "spec:", "  rules:"]
    for i in range(n_rules):
        fact, op, thr, action = base[i % 5]
        thr = thr if i < 5 else round(thr + (i // 5) * 0.001, 6)
        lines.append(f"    - id: r{i}\n      when: {{fact: {fact}, op: \"{op}\", value: {thr}}}"
                     f"\n      action: {action}")
    return "\n".join(lines) + "\n"


def timed(fn: Callable[[dict[str, Any]], object], items: list[dict[str, Any]],
          repeat: int = 3) -> list[float]:
    """Per-call latency in microseconds, best of `repeat` passes per item position."""
    best: list[float] = [float("inf")] * len(items)
    for _ in range(repeat):
        for i, s in enumerate(items):
            t0 = time.perf_counter_ns()
            fn(s)
            dt = (time.perf_counter_ns() - t0) / 1000
            if dt < best[i]:
                best[i] = dt
    return best


def summary(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    return {"median_us": round(statistics.median(ordered), 2),
            "p99_us": round(ordered[int(len(ordered) * 0.99) - 1], 2),
            "n": len(ordered)}


def run(n: int, out: Path) -> dict[str, Any]:
    items = snapshots(n)
    results: dict[str, Any] = {
        "machine": {"python": platform.python_version(), "cpus": os.cpu_count(),
                    "platform": platform.platform()},
        "snapshots": n,
    }
    with tempfile.TemporaryDirectory() as tmp:
        for n_rules in (4, 100):
            if n_rules == 4:
                ps = load_policy_set([str(ROOT / "policies" / "safety.yaml")])
            else:
                ps = policy_set_from_texts([("bench.yaml", policy_text(n_rules))])
            evaluator = SafetyEvaluator(ps)
            raw = raw_ruleset(n_rules)
            for s in items[:200]:  # warm up every path
                evaluator.decide(s)
                raw(s)
                plain(s)
            section: dict[str, Any] = {}
            section["plain"] = summary(timed(plain, items))
            section["raw_durable_rules"] = summary(timed(raw, items))
            section["engine"] = summary(timed(evaluator.decide, items))

            store = AuditStore(Path(tmp) / f"audit-{n_rules}.db")
            store.record_activation(ps)

            def decide_and_record(s: dict[str, Any], store: AuditStore = store,
                                  ev: SafetyEvaluator = evaluator) -> None:
                d = ev.decide(s)
                store.append("decision", d.decision_id, {"decision": d.to_json(), "facts": s})

            section["engine_audit_each"] = summary(timed(decide_and_record, items[:1000], 1))

            t0 = time.perf_counter()
            batch: list[tuple[str, str, dict[str, Any]]] = []
            for s in items:
                d = evaluator.decide(s)
                batch.append(("decision", d.decision_id, {"decision": d.to_json(), "facts": s}))
                if len(batch) == 500:
                    store.append_many(batch)
                    batch = []
            store.append_many(batch)
            elapsed = time.perf_counter() - t0
            section["audit_batched_decisions_per_s"] = round(n / elapsed)
            # The store alone: the same records, already decided, appended in batches of 500.
            bodies = [("decision", evaluator.decide(s).decision_id,
                       {"decision": evaluator.decide(s).to_json(), "facts": s}) for s in items]
            t0 = time.perf_counter()
            for i in range(0, len(bodies), 500):
                store.append_many(bodies[i:i + 500])
            section["audit_store_records_per_s"] = round(n / (time.perf_counter() - t0))
            verified = store.verify()
            section["audit_records_verified"] = verified.checked
            store.close()
            evaluator.close()
            section["ratio_engine_to_raw"] = round(
                section["engine"]["median_us"] / section["raw_durable_rules"]["median_us"], 2)
            section["ratio_engine_to_plain"] = round(
                section["engine"]["median_us"] / section["plain"]["median_us"], 1)
            results[f"rules_{n_rules}"] = section
        # One event per 10 ms cycle (about what a replay day costs), then everything at once.
        results["alerts"] = alert_latency(Path(tmp), pace_s=0.01)
        results["alerts_burst"] = alert_latency(Path(tmp))
    out.write_text(json.dumps(results, indent=2) + "\n")
    return results


def alert_latency(tmp: Path, n: int = 200, pace_s: float = 0.0) -> dict[str, Any]:
    """Time from an event reaching the alert engine to each sink starting to send it: the
    JSONL file and a webhook on a local HTTP server, both behind the non-blocking
    dispatcher. Also the time the event call itself takes (what a cycle waits for)."""
    import http.server
    import threading

    from engine.monitoring.alerting import AlertEngine
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
    engine = AlertEngine.with_sinks(store, [JsonlSink(tmp / f"alerts-{tag}.jsonl"),
                                            WebhookSink(url, timeout_s=5.0)], "bench")
    call_us: list[float] = []
    actions = ("halt", "allow")
    for i in range(n):
        t0 = time.perf_counter_ns()
        engine.on_safety(f"2024-01-{1 + i % 28:02d}T21:00:00Z", f"S{i}", actions[i % 2], "r")
        call_us.append((time.perf_counter_ns() - t0) / 1000)
        if pace_s:
            time.sleep(pace_s)
    dispatcher = engine._dispatcher
    assert dispatcher is not None
    dispatcher.flush(30.0)
    samples = dispatcher.stats().samples
    engine.close()
    store.close()
    server.shutdown()
    by_sink: dict[str, list[float]] = {}
    for smp in samples:
        by_sink.setdefault(smp.sink, []).append(smp.handoff_s * 1e6)
    return {"pace_s": pace_s, "event_call": summary(call_us),
            "handoff": {k: summary(v) for k, v in sorted(by_sink.items())}}


def print_table(results: dict[str, Any]) -> None:
    print(f"{results['snapshots']} snapshots, Python {results['machine']['python']}, "
          f"{results['machine']['cpus']} CPUs")
    header = f"{'path':34} {'median us':>10} {'p99 us':>10}"
    for key in ("rules_4", "rules_100"):
        sec = results[key]
        print(f"\n{key.replace('_', ' ')}\n{header}")
        for name in ("plain", "raw_durable_rules", "engine", "engine_audit_each"):
            s = sec[name]
            print(f"{name:34} {s['median_us']:>10} {s['p99_us']:>10}")
        print(f"{'engine / raw durable-rules':34} {sec['ratio_engine_to_raw']:>10}x")
        print(f"{'engine / plain Python':34} {sec['ratio_engine_to_plain']:>10}x")
        print(f"{'decisions/s, audit batched by 500':34} "
              f"{sec['audit_batched_decisions_per_s']:>10}")
        print(f"{'audit store alone, records/s':34} {sec['audit_store_records_per_s']:>10}")
    for key, label in (("alerts", "one event per 10 ms cycle"),
                       ("alerts_burst", "all events back to back")):
        al = results[key]
        print(f"\nalerts, {label} ({al['event_call']['n']} events, half raise an alert)"
              f"\n{header}")
        print(f"{'event call (record + queue)':34} {al['event_call']['median_us']:>10} "
              f"{al['event_call']['p99_us']:>10}")
        for sink, st in al["handoff"].items():
            print(f"{'hand-off to ' + sink:34} {st['median_us']:>10} {st['p99_us']:>10}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--snapshots", type=int, default=20000)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results.json")
    args = parser.parse_args()
    print(f"benchmarking {args.snapshots} snapshots ...", file=sys.stderr)
    print_table(run(args.snapshots, args.out))
    print(f"\nwritten to {args.out}")


if __name__ == "__main__":
    main()
