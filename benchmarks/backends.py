"""durable-rules against the vectorised backend on the shipped history: snapshots a second of
each, and their agreement on every snapshot.

Both decide the same chunks side by side (a vectorised batch of a chunk, then durable-rules
on each snapshot of it), so load on a shared machine falls on both alike; the ratio is the
figure to quote.
"""

from __future__ import annotations

import json
import statistics
from pathlib import Path
from typing import Any

from engine.backends.agreement import verify
from engine.policy.loader import load_policy_set

ROOT = Path(__file__).resolve().parents[1]
HISTORY = ROOT / "examples" / "history.jsonl"


def run(repeats: int) -> dict[str, Any]:
    ps = load_policy_set([str(ROOT / "policies")])
    lines = HISTORY.read_text(encoding="utf-8").splitlines()
    items = [(f"{HISTORY.name}:{n}", json.loads(line)) for n, line in enumerate(lines, 1)]
    durable: list[float] = []
    vector: list[float] = []
    compared = agreed = 0
    first = None
    for _ in range(repeats):
        a = verify(ps, items)
        durable.append(a.rate(a.compared, a.durable_seconds))
        vector.append(a.rate(a.compared, a.vector_seconds))
        compared += a.compared
        agreed += a.agreed
        first = first or (a.first.text() if a.first else None)
    ratios = [v / d for v, d in zip(vector, durable, strict=True)]
    return {
        "facts": HISTORY.name, "snapshots": len(items), "repeats": repeats,
        "durable_snapshots_per_s": {"median": round(statistics.median(durable)),
                                    "by_repeat": [round(x) for x in durable]},
        "vector_snapshots_per_s": {"median": round(statistics.median(vector)),
                                   "by_repeat": [round(x) for x in vector]},
        "ratio_vector_to_durable": {"median": round(statistics.median(ratios), 2),
                                    "range": [round(min(ratios), 2), round(max(ratios), 2)]},
        "agreement": {"compared": compared, "agreed": agreed, "first_disagreement": first},
    }


def print_table(sec: dict[str, Any]) -> None:
    print(f"\nbackends on {sec['facts']} ({sec['snapshots']} snapshots x {sec['repeats']})")
    for label, key in (("durable-rules /s", "durable_snapshots_per_s"),
                       ("vector /s", "vector_snapshots_per_s")):
        r = sec[key]
        spread = ", ".join(str(x) for x in r["by_repeat"])
        print(f"{label:26} {r['median']:>10}  (repeats {spread})")
    r = sec["ratio_vector_to_durable"]
    print(f"{'vector / durable-rules':26} {r['median']:>9}x  (repeats {r['range'][0]}.."
          f"{r['range'][1]})")
    ag = sec["agreement"]
    print(f"{'agreement':26} {ag['agreed']} of {ag['compared']} snapshots")
