"""Hot reload by polling (PolicyWatcher) and shadow evaluation of a candidate set."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from engine.evaluator import SafetyEvaluator
from engine.policy.loader import load_policy_set
from engine.policy.model import PolicySet
from engine.policy.watch import PolicyWatcher, WatchEvent
from engine.shadow import CANDIDATE_ERROR, ShadowComparison, ShadowSummary
from tests.conftest import FROZEN_SAFETY, write_frozen_policies

TS = "2024-01-02T21:00:00Z"

def snap(symbol: str, **facts: object) -> dict[str, object]:
    base: dict[str, object] = {"ts": TS, "symbol": symbol, "drift_score": 0.1,
                               "volatility": 0.1, "coherence": 0.9, "frs": 0.9,
                               "meta_reliability": 0.9}
    base.update(facts)
    return base


@pytest.fixture
def policy_dir(tmp_path: Path) -> Path:
    return write_frozen_policies(tmp_path / "policies")


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text(encoding="utf-8")
    assert old in text
    path.write_text(text.replace(old, new), encoding="utf-8")


class Events:
    def __init__(self) -> None:
        self.seen: list[WatchEvent] = []

    def __call__(self, event: WatchEvent) -> None:
        self.seen.append(event)

    def kinds(self) -> list[str]:
        return [e.kind for e in self.seen]


# --- the watcher ---------------------------------------------------------------------------


def test_first_poll_loads_then_nothing_until_content_changes(policy_dir: Path) -> None:
    events = Events()
    watcher = PolicyWatcher([str(policy_dir)], events)
    first = watcher.poll()
    assert isinstance(first, PolicySet)
    assert first.hash == load_policy_set([str(policy_dir)]).hash
    assert watcher.poll() is None
    assert events.kinds() == ["activated"]
    assert "core-safety 2.0.0" in events.seen[0].message


def test_valid_change_swaps_even_with_the_old_mtime(policy_dir: Path) -> None:
    events = Events()
    watcher = PolicyWatcher([str(policy_dir)], events)
    before = watcher.poll()
    assert before is not None
    safety = policy_dir / "safety.yaml"
    stat = safety.stat()
    edit(safety, "value: 0.8}", "value: 0.7}")
    edit(safety, "version: 2.0.0", "version: 2.0.1")
    os.utime(safety, ns=(stat.st_atime_ns, stat.st_mtime_ns))  # content, not mtime, counts
    after = watcher.poll()
    assert after is not None and after.hash != before.hash
    assert after.policy("core-safety") is not None
    assert after.policy("core-safety").version == "2.0.1"  # type: ignore[union-attr]
    assert watcher.current is after
    assert events.kinds() == ["activated", "activated"]


def test_broken_change_keeps_last_good_and_reports_once(policy_dir: Path) -> None:
    events = Events()
    watcher = PolicyWatcher([str(policy_dir)], events)
    good = watcher.poll()
    assert good is not None
    safety = policy_dir / "safety.yaml"
    edit(safety, "value: 0.35}", "value: 35}")
    assert watcher.poll() is None
    assert watcher.poll() is None  # the same broken content is not reported again
    assert watcher.current is good
    assert events.kinds() == ["activated", "rejected"]
    rejected = events.seen[1]
    assert str(rejected.problems[0]).startswith(
        f"{safety}:14:49: 35 is outside the range of 'volatility'")
    # a different broken content is a new report: a YAML syntax error
    safety.write_text(safety.read_text(encoding="utf-8") + "  rules: [oops\n",
                      encoding="utf-8")
    assert watcher.poll() is None
    assert events.kinds() == ["activated", "rejected", "rejected"]
    assert any("YAML syntax error" in p.message for p in events.seen[2].problems)
    # back to the active content: nothing to swap, and the recovery is said once
    safety.write_text(FROZEN_SAFETY, encoding="utf-8")
    assert watcher.poll() is None
    assert watcher.poll() is None
    assert events.kinds() == ["activated", "rejected", "rejected", "restored"]
    assert watcher.current is good


EXTRA_SAFETY = """\
apiVersion: fuggerbot/v1
kind: SafetyPolicy
metadata: {name: extra-safety, version: 1.0.0}
spec:
  rules:
    - id: extreme-volatility-halt
      when: {fact: volatility, op: ">=", value: 0.9}
      action: halt
"""


def test_removed_and_added_files_count_as_changes(policy_dir: Path) -> None:
    events = Events()
    watcher = PolicyWatcher([str(policy_dir)], events)
    assert watcher.poll() is not None
    (policy_dir / "extra.yaml").write_text(EXTRA_SAFETY, encoding="utf-8")
    larger = watcher.poll()
    assert larger is not None and larger.policy("extra-safety") is not None
    # A removed file would take its policy out of force: held back, the file named.
    (policy_dir / "extra.yaml").unlink()
    assert watcher.poll() is None
    assert watcher.current is larger
    assert events.kinds() == ["activated", "activated", "rejected"]
    assert str(events.seen[-1].problems[0]).startswith(
        f"{policy_dir / 'extra.yaml'}:1:1: SafetyPolicy 'extra-safety' would be removed "
        "from the active set (the file was removed)")
    (policy_dir / "extra.yaml").write_text(EXTRA_SAFETY, encoding="utf-8")
    assert watcher.poll() is None
    assert events.kinds()[-1] == "restored"
    for f in policy_dir.glob("*.yaml"):
        f.unlink()
    assert watcher.poll() is None
    assert "no policy files" in events.seen[-1].problems[0].message
    assert watcher.current is larger


def test_a_file_that_no_longer_defines_its_policy_is_a_removal(policy_dir: Path) -> None:
    events = Events()
    watcher = PolicyWatcher([str(policy_dir)], events, may_remove=lambda s: False)
    good = watcher.poll()
    assert good is not None
    edit(policy_dir / "approval.yaml", "name: human-approval", "name: other-approval")
    assert watcher.poll() is None
    assert watcher.current is good
    assert "ApprovalPolicy 'human-approval' would be removed from the active set (the file no "\
        "longer defines it)" in events.seen[-1].problems[0].message


def test_a_number_python_cannot_read_is_a_rejected_change(policy_dir: Path) -> None:
    """Past 4,300 digits Python refuses to convert an integer: the change is refused at the
    number's position and the last good set stays."""
    events = Events()
    watcher = PolicyWatcher([str(policy_dir)], events)
    good = watcher.poll()
    assert good is not None
    safety = policy_dir / "safety.yaml"
    edit(safety, "value: 0.8}", "value: " + "9" * 5001 + "}")
    assert watcher.poll() is None
    assert watcher.current is good
    assert events.kinds() == ["activated", "rejected"]
    assert str(events.seen[1].problems[0]).startswith(
        f"{safety}:11:50: a number of 5001 digits")


def test_compile_failure_keeps_the_last_good_object(policy_dir: Path) -> None:
    events = Events()
    compiled: list[SafetyEvaluator] = []

    def compile_set(ps: PolicySet) -> SafetyEvaluator:
        if ps.policy("core-safety") is not None and \
                ps.policy("core-safety").version == "9.9.9":  # type: ignore[union-attr]
            raise RuntimeError("ruleset refused")
        evaluator = SafetyEvaluator(ps)
        compiled.append(evaluator)
        return evaluator

    # Removals allowed here: the set without a safety policy must reach the compile step.
    watcher = PolicyWatcher([str(policy_dir)], events, compile=compile_set,
                            may_remove=lambda s: True)
    try:
        good = watcher.poll()
        assert isinstance(good, SafetyEvaluator)
        edit(policy_dir / "safety.yaml", "version: 2.0.0", "version: 9.9.9")
        assert watcher.poll() is None
        assert watcher.poll() is None
        assert watcher.current is good
        assert events.kinds() == ["activated", "rejected"]
        assert "compile failed: RuntimeError: ruleset refused" in \
            events.seen[1].problems[0].message
        # a set without any safety policy fails the real compile step too
        (policy_dir / "safety.yaml").unlink()
        assert watcher.poll() is None
        assert events.kinds() == ["activated", "rejected", "rejected"]
        assert "no SafetyPolicy" in events.seen[2].problems[0].message
        assert good.decide(snap("SPY", drift_score=0.9)).action.value == "halt"
    finally:
        for e in compiled:
            e.close()


# --- shadow evaluation -----------------------------------------------------------------------


@pytest.fixture
def evaluators(policy_dir: Path) -> Iterator[tuple[SafetyEvaluator, SafetyEvaluator]]:
    active = SafetyEvaluator(load_policy_set([str(policy_dir)]))
    edit(policy_dir / "safety.yaml", 'op: "<=", value: 0.5}', 'op: "<=", value: 0.6}')
    edit(policy_dir / "safety.yaml", """      action: halt
""", """      action: halt
    - id: very-low-coherence-block
      when: {fact: coherence, op: "<", value: 0.2}
      action: block_new
""")
    candidate = SafetyEvaluator(load_policy_set([str(policy_dir)]))
    yield active, candidate
    active.close()
    candidate.close()


def test_shadow_reports_only_differences(
        evaluators: tuple[SafetyEvaluator, SafetyEvaluator]) -> None:
    shadow = ShadowComparison(*evaluators)
    assert shadow.compare(snap("SAME")) is None
    assert shadow.compare(snap("HALT", drift_score=0.9, coherence=0.55)) is None
    diff = shadow.compare(snap("AAA", coherence=0.55))
    assert diff is not None
    assert (diff.symbol, diff.active_action, diff.active_rule, diff.candidate_action,
            diff.candidate_rule) == ("AAA", "allow", None, "block_new", "coherence-break-block")
    assert diff.transition == "allow -> block_new"
    # same action, another deciding rule: still a difference
    rule_only = shadow.compare(snap("LOW", coherence=0.1))
    assert rule_only is not None
    assert rule_only.transition == "block_new -> block_new"
    assert (rule_only.active_rule, rule_only.candidate_rule) == (
        "coherence-break-block", "very-low-coherence-block")


def test_shadow_summary_counts_transitions(
        evaluators: tuple[SafetyEvaluator, SafetyEvaluator]) -> None:
    active, candidate = evaluators
    shadow = ShadowComparison(active, candidate)
    summary = ShadowSummary(examples=2)
    snaps = [snap("A", coherence=0.55), snap("B", coherence=0.58), snap("C"),
             snap("D", coherence=0.6, frs=0.1), snap("E", coherence=0.1), snap("F", coherence=0.3)]
    for s in snaps:
        decided = active.decide(s)  # the active decision is what the bot acts on
        summary.add(shadow.compare(s, active_decision=decided))
    assert summary.compared == 6
    assert dict(summary.transitions) == {"allow -> block_new": 2,
                                         "wait_confirmation -> block_new": 1,
                                         "block_new -> block_new": 1}
    assert summary.changed == 4
    assert [d.symbol for d in summary.examples] == ["A", "B"]
    assert summary.to_json()["transitions"]["allow -> block_new"] == 2


def test_a_failing_candidate_never_disturbs_the_active_decision(
        evaluators: tuple[SafetyEvaluator, SafetyEvaluator]) -> None:
    active, _ = evaluators

    class Broken(SafetyEvaluator):
        def decide(self, raw: object, **kwargs: object) -> object:  # type: ignore[override]
            raise RuntimeError("candidate crashed")

    broken = Broken(active.policy_set)
    try:
        diff = ShadowComparison(active, broken).compare(snap("A", coherence=0.4))
    finally:
        broken.close()
    assert diff is not None
    assert diff.transition == CANDIDATE_ERROR
    assert (diff.active_action, diff.active_rule) == ("block_new", "coherence-break-block")
    assert "candidate crashed" in diff.error
