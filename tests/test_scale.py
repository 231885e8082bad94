"""Work spread over a Dask cluster gives the single-process result: eval and diff partitioned
by symbol, a sweep one replay per policy set (a LocalCluster of two worker processes)."""

from __future__ import annotations

import json
import pickle
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import REPO_ROOT

from engine.actions import Action
from engine.backends.agreement import BackendDisagreement, Disagreement
from engine.backends.vector import Verdict
from engine.clock import SNAPSHOT
from engine.evaluator import SafetyEvaluator
from engine.policy.loader import load_policy_set
from engine.policy.model import PolicySet
from engine.scale.partition import by_symbol, in_order
from engine.scale.sweep import SweepSettings, sweep
from engine.scale.work import decide_spread, diff_spread
from engine.tooling.diff import replay

HISTORY = REPO_ROOT / "examples" / "history.jsonl"
PORTFOLIO = REPO_ROOT / "examples" / "portfolio.yaml"

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def client() -> Iterator[Any]:
    from distributed import Client, LocalCluster
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                      dashboard_address=None) as cluster, Client(cluster) as c:
        yield c


@pytest.fixture(scope="module")
def live() -> PolicySet:
    return load_policy_set([str(REPO_ROOT / "policies")])


@pytest.fixture(scope="module")
def candidate(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, PolicySet]:
    """The shipped set with the flatten rail moved from 35% to 45% volatility."""
    folder = tmp_path_factory.mktemp("candidate")
    for f in (REPO_ROOT / "policies").glob("*.yaml"):
        shutil.copy(f, folder / f.name)
    safety = folder / "safety.yaml"
    text = safety.read_text(encoding="utf-8")
    safety.write_text(text.replace("value: 0.35}", "value: 0.45}")
                      .replace("version: 2.1.0", "version: 2.2.0"), encoding="utf-8")
    return str(folder), load_policy_set([str(folder)])


def _snapshots(n: int) -> list[tuple[str, object]]:
    lines = HISTORY.read_text(encoding="utf-8").splitlines()[:n]
    return [(f"{HISTORY.name}:{i}", json.loads(line)) for i, line in enumerate(lines, 1)]


def _plain(d: Any) -> dict[str, Any]:
    out: dict[str, Any] = d.to_json()
    del out["decision_id"], out["decided_at"]
    return out


def test_partitions_keep_a_symbol_whole_and_merge_back_in_order() -> None:
    raws = [{"symbol": s} for s in "ABCABCDDA"] + [{"ts": "no symbol"}, 7]
    parts = by_symbol(raws, 3)
    assert sorted(i for p in parts for i in p) == list(range(len(raws)))
    for symbol in "ABCD":
        holding = [n for n, p in enumerate(parts) if any(raws[i] == {"symbol": symbol}
                                                         for i in p)]
        assert len(holding) == 1, symbol
    results = [[f"r{i}" for i in p] for p in parts]
    assert in_order(len(raws), parts, results) == [f"r{i}" for i in range(len(raws))]


def test_a_disagreement_crosses_from_a_worker_whole() -> None:
    v = Verdict(Action.HALT, "r", frozenset({"r"}), ())
    e = BackendDisagreement(Disagreement("f:1", "A", "ts", v, v))
    back = pickle.loads(pickle.dumps(e))
    assert back.first == e.first and str(back) == str(e)


def test_eval_on_the_cluster_decides_as_one_process(client: Any, live: PolicySet) -> None:
    items = _snapshots(3000)
    single = SafetyEvaluator(live)
    try:
        expected = [_plain(single.decide(raw)) for _, raw in items]
    finally:
        single.close()
    spread = list(decide_spread(client, live, items, lambda x: x[1], SNAPSHOT))
    assert [item for _, item in spread] == items
    assert [_plain(d) for d, _ in spread] == expected


def test_diff_on_the_cluster_counts_as_one_process(client: Any, live: PolicySet,
                                                   candidate: tuple[str, PolicySet]) -> None:
    items = _snapshots(6000)
    expected = replay(live, candidate[1], items, examples=5).to_json()
    got = diff_spread(client, live, candidate[1], items, examples=5).to_json()
    assert got == expected and expected["changed"] > 0


def test_a_sweep_on_the_cluster_gives_the_rows_of_one_process(
        client: Any, live: PolicySet, candidate: tuple[str, PolicySet]) -> None:
    settings = SweepSettings(facts=str(HISTORY), portfolio=str(PORTFOLIO),
                             start="2008-09-01", end="2008-12-31",
                             approve_rules=frozenset({"new-symbol-approval"}))
    sets = [("live", live), candidate]
    single = [r.figures() for r in sweep(sets, settings)]
    spread = [r.figures() for r in sweep(sets, settings, client)]
    assert spread == single
    assert single[0]["decisions_changed"] == 0 and single[1]["decisions_changed"] > 0
    assert single[0]["total_return"] != single[1]["total_return"]


def test_eval_with_workers_records_what_one_process_records(run_cli: Any,
                                                            tmp_path: Path) -> None:
    facts = tmp_path / "facts.jsonl"
    facts.write_text("".join(json.dumps(raw) + "\n" for _, raw in _snapshots(600)),
                     encoding="utf-8")
    outputs = []
    for extra in ((), ("--workers", "2")):
        proc = run_cli("eval", "--policies", str(REPO_ROOT / "policies"), "--facts",
                       str(facts), "--clock", "snapshot", "--format", "json",
                       "--audit", str(tmp_path / f"audit{len(extra)}.db"), *extra)
        assert proc.returncode == 0, proc.stderr
        outputs.append([_strip(json.loads(line)) for line in proc.stdout.splitlines()])
    assert outputs[0] == outputs[1] and len(outputs[0]) == 600


def _strip(d: dict[str, Any]) -> dict[str, Any]:
    del d["decision_id"], d["decided_at"]
    return d


@pytest.mark.parametrize(("args", "message"), [
    (("--cluster", "tcp://localhost:8786"), "dask://HOST:PORT"),
    (("--workers", "2", "--cluster", "dask://localhost:8786"), "not both"),
])
def test_a_bad_cluster_option_is_a_usage_error(invoke_cli: Any, args: tuple[str, ...],
                                              message: str, tmp_path: Path) -> None:
    proc = invoke_cli("diff", str(REPO_ROOT / "policies"), str(REPO_ROOT / "policies"),
                      "--facts", str(HISTORY), *args)
    assert proc.returncode == 2
    assert message in proc.stderr
