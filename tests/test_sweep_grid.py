"""A sweep over a grid of thresholds: one candidate per value (or combination), each the live
set with that rule's threshold moved and checked by the loader; a grid that names no rule, an
ambiguous fact, a value that is not a number or a point that does not validate is refused."""

from __future__ import annotations

import json

import pytest
from conftest import REPO_ROOT, RunCli

from engine.policy.loader import load_policy_set
from engine.policy.model import PolicySet, leaves
from engine.scale.grid import MAX_CANDIDATES, GridError, candidates, parse_axis

POLICIES = str(REPO_ROOT / "policies")


@pytest.fixture(scope="module")
def live() -> PolicySet:
    return load_policy_set([POLICIES])


def _thresholds(ps: PolicySet, rule_id: str) -> dict[str, object]:
    rule = next(r for p in ps.policies for r in p.rules if r.id == rule_id)
    return {leaf.fact: leaf.value for leaf in leaves(rule.when)}


def test_each_point_of_the_grid_moves_only_its_thresholds(live: PolicySet) -> None:
    sets = candidates(live, [parse_axis("drift-spike-halt=0.7,0.9"),
                             parse_axis("low-confidence-wait:frs=0.3")])
    assert [label for label, _ in sets] == [
        "drift-spike-halt=0.7 low-confidence-wait:frs=0.3",
        "drift-spike-halt=0.9 low-confidence-wait:frs=0.3"]
    for (_, ps), drift in zip(sets, (0.7, 0.9), strict=True):
        assert _thresholds(ps, "drift-spike-halt") == {"drift_score": drift}
        assert _thresholds(ps, "low-confidence-wait") == {"frs": 0.3, "meta_reliability": 0.4}
        assert _thresholds(ps, "high-volatility-flatten") == _thresholds(
            live, "high-volatility-flatten")
        safety = next(p for p in ps.policies if p.kind == "SafetyPolicy")
        assert "# Any fact a rule needs that is missing" in safety.text  # comments kept
        unchanged = {p.path: p.hash for p in ps.policies if p.kind != "SafetyPolicy"}
        assert unchanged == {p.path: p.hash for p in live.policies if p.kind != "SafetyPolicy"}
    assert len({ps.hash for _, ps in sets} | {live.hash}) == 3


@pytest.mark.parametrize(("axis", "message"), [
    ("drift-spike-hal=0.7", "unknown rule 'drift-spike-hal'; did you mean drift-spike-halt"),
    ("low-confidence-wait=0.3", "rule low-confidence-wait compares frs, meta_reliability; "
                                "name one as low-confidence-wait:FACT=..."),
    ("low-confidence-wait:coherence=0.3", "rule low-confidence-wait does not compare coherence"),
    ("drift-spike-halt=0.7,high", "'high' is not a number"),
    ("drift-spike-halt=0.7,nan", "'nan' is not a finite number"),
    ("drift-spike-halt=0.7,0.7", "a value is given twice"),
    ("drift-spike-halt", "write RULE=V1,V2,... or RULE:FACT=V1,V2,..."),
    ("drift-spike-halt=-5", "grid point drift-spike-halt=-5: the policy set does not validate"),
])
def test_a_grid_that_cannot_be_meant_is_refused(live: PolicySet, axis: str,
                                                message: str) -> None:
    with pytest.raises(GridError) as refused:
        candidates(live, [parse_axis(axis)])
    assert message in str(refused.value)


def test_a_grid_larger_than_a_sweep_should_be_is_refused(live: PolicySet) -> None:
    values = ",".join(f"0.{i:02d}" for i in range(1, 10))
    with pytest.raises(GridError, match=f"makes 81 policy sets.*at most {MAX_CANDIDATES}"):
        candidates(live, [parse_axis(f"drift-spike-halt={values}"),
                          parse_axis(f"coherence-break-block={values}")])


def test_fugger_sweep_replays_each_point_of_the_grid(run_cli: RunCli) -> None:
    proc = run_cli("sweep", "--policies", POLICIES, "--grid", "coherence-break-block=0.4,0.6",
                   "--facts", "examples/history.jsonl", "--portfolio",
                   "examples/portfolio.yaml", "--from", "2006-07-01", "--to", "2006-09-30",
                   "--format", "json", cwd=REPO_ROOT)
    assert proc.returncode == 0, proc.stderr
    rows = json.loads(proc.stdout)["rows"]
    assert [r["label"] for r in rows] == [POLICIES, "coherence-break-block=0.4",
                                          "coherence-break-block=0.6"]
    live, lower, higher = rows
    assert live["decisions_changed"] == 0
    assert lower["compared"] == higher["compared"] == live["compared"] > 0
    # A block at 0.6 blocks more snapshots than at 0.5, and at 0.4 fewer: both change some.
    assert lower["decisions_changed"] > 0 and higher["decisions_changed"] > 0
    refused = run_cli("sweep", "--policies", POLICIES, "--grid", "nope=1", "--facts",
                      "examples/history.jsonl", cwd=REPO_ROOT)
    assert refused.returncode == 2 and "unknown rule 'nope'" in refused.stderr
