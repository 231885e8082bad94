"""A running `fugger run` under policy files that change beneath it: a reload never removes a
policy and never ends the run. Whatever a changed set does wrong, the last good set stays in
force and a critical alert names the file; only an explicit, recorded `fugger activate` takes
a policy out of force.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from conftest import (
    REPO_ROOT,
    Finished,
    RunCli,
    replace_file,
    run_fugger_driven,
    write_frozen_policies,
)

from engine.audit import activation
from engine.audit.store import AuditStore
from engine.policy.loader import load_policy_set
from engine.policy.model import PolicySet
from engine.policy.watch import PolicyWatcher, WatchEvent

HISTORY = REPO_ROOT / "examples" / "history.jsonl"
PORTFOLIO = REPO_ROOT / "examples" / "portfolio.yaml"
# Long enough that the change lands early; the large-order approval of 2009-05-22 comes late.
SLICE = ("2008-09-01", "2009-06-30")
# What the run prints on stderr: progress after each day, and each reload's outcome.
DAY_ONE = "day 1/"
REJECTED = "warning: policy change rejected"
RELOADED = "policies reloaded"
HUGE = "9" * 5001


@dataclass(frozen=True)
class Changed:
    """A run whose policy files were changed while it ran."""

    policies: Path
    audit: Path
    done: Finished

    def records(self, kind: str) -> list[dict[str, Any]]:
        with AuditStore(self.audit, create=False) as store:
            return [r.body for r in store.iter_records(kind)]

    def activations(self) -> list[str]:
        with AuditStore(self.audit, create=False) as store:
            return [r.ref for r in store.iter_records("policy_activation")]

    def policy_alerts(self) -> list[dict[str, Any]]:
        return [a for a in self.records("alert") if a.get("kind") == "policy"]


def _copy_policies(root: Path) -> Path:
    policies = root / "policies"
    shutil.copytree(REPO_ROOT / "policies", policies, ignore=shutil.ignore_patterns("tests"))
    return policies


def _candidate_text() -> str:
    """The shipped safety policy with its volatility rail lowered to 0.30."""
    text = (REPO_ROOT / "policies" / "safety.yaml").read_text(encoding="utf-8")
    assert text.count("value: 0.35}") == 1 and "version: 2.1.0" in text
    return text.replace("value: 0.35}", "value: 0.30}").replace("version: 2.1.0",
                                                               "version: 2.2.0")


def _run(root: Path, steps: Callable[[Path], list[tuple[str, Callable[[], None]]]],
         *extra: str) -> Changed:
    policies = _copy_policies(root)
    audit = root / "audit.db"
    done = run_fugger_driven(["run", "--policies", str(policies), "--facts", str(HISTORY),
                              "--portfolio", str(PORTFOLIO), "--audit", str(audit),
                              "--from", SLICE[0], "--to", SLICE[1], *extra], steps(policies))
    return Changed(policies, audit, done)


def _delete_approval(policies: Path) -> list[tuple[str, Callable[[], None]]]:
    return [(DAY_ONE, (policies / "approval.yaml").unlink), (REJECTED, lambda: None)]


def _huge_then_candidate(policies: Path) -> list[tuple[str, Callable[[], None]]]:
    safety = policies / "safety.yaml"
    good = safety.read_text(encoding="utf-8")
    assert good.count("value: 0.8}") == 1
    huge = good.replace("value: 0.8}", f"value: {HUGE}}}")
    return [(DAY_ONE, lambda: replace_file(safety, huge)),
            (REJECTED, lambda: replace_file(safety, _candidate_text())),
            (RELOADED, lambda: None)]


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Changed]:
    """Two runs at once: one loses approval.yaml after its first day; the other, shadowed by a
    candidate set, gets a 5,001-digit threshold and then the candidate's own text."""
    deleted = tmp_path_factory.mktemp("deleted")
    huge = tmp_path_factory.mktemp("huge")
    candidate = huge / "candidate"
    shutil.copytree(REPO_ROOT / "policies", candidate, ignore=shutil.ignore_patterns("tests"))
    (candidate / "safety.yaml").write_text(_candidate_text(), encoding="utf-8")
    with ThreadPoolExecutor(max_workers=2) as pool:
        a = pool.submit(_run, deleted, _delete_approval)
        b = pool.submit(_run, huge, _huge_then_candidate, "--shadow", str(candidate))
        return {"deleted": a.result(), "huge": b.result()}


def _ran_to_the_end(run: Changed) -> None:
    assert run.done.returncode == 0, run.done.stderr
    finished = run.records("run_finished")
    assert len(finished) == 1 and finished[0]["days"] == len(run.records("cycle"))
    assert f"{SLICE[1]}\n" in run.done.stderr  # the last progress line is the last day


def test_deleting_a_policy_file_mid_run_keeps_its_controls(runs: dict[str, Changed]) -> None:
    run = runs["deleted"]
    assert run.done.steps_taken == 2, run.done.stderr
    _ran_to_the_end(run)
    approval = run.policies / "approval.yaml"
    assert not approval.exists()
    # No other set was ever put in force: every decision is under the one started with.
    (good,) = run.activations()
    decisions = run.records("decision")
    assert {d["decision"]["policy_set"]["hash"] for d in decisions} == {good}
    # One critical alert names the missing file and what it held.
    (alert,) = run.policy_alerts()
    assert alert["severity"] == "critical"
    assert f"{approval}:1:1: ApprovalPolicy 'human-approval' would be removed" in \
        alert["message"]
    assert "the file was removed" in alert["message"]
    # The approval policy still holds orders after the file went: the order of 2009-05-22
    # waited for a person, held by a rule of that policy, instead of being sent on its own.
    late = [r for r in run.records("approval_requested") if r.get("requested_at", "") >= "2009"]
    assert late, run.records("approval_requested")
    held_by = {"large-order-approval", "very-large-order-approval", "new-symbol-approval",
               "unconfirmed-signal-approval"}
    assert all(r["rule"] in held_by for r in late), [(r["rule"], r["summary"]) for r in late]


def test_a_failing_reload_never_ends_the_run(runs: dict[str, Changed]) -> None:
    run = runs["huge"]
    assert run.done.steps_taken == 3, run.done.stderr
    _ran_to_the_end(run)
    (alert,) = run.policy_alerts()
    assert alert["severity"] == "critical"
    assert f"{run.policies / 'safety.yaml'}:" in alert["message"]
    assert "a number of 5001 digits" in alert["message"]
    # The broken set was never in force; the valid change after it was.
    good, candidate = run.activations()
    assert candidate == load_policy_set([str(run.policies)]).hash != good


def test_shadow_compares_against_the_set_in_force(runs: dict[str, Changed]) -> None:
    """After the live set became the candidate's text, the candidate differs from nothing;
    every recorded difference names the live set it was measured against."""
    run = runs["huge"]
    good, live_candidate = run.activations()
    set_of = {d["decision"]["decision_id"]: d["decision"]["policy_set"]["hash"]
              for d in run.records("decision")}
    assert set(set_of.values()) == {good, live_candidate}
    diffs = run.records("shadow_difference")
    for d in diffs:
        assert d["active"] == set_of[d["decision_id"]] == good, d
    assert f"{len(diffs)} of {len(set_of)} decisions would differ" in run.done.stdout


# --- the explicit activation that alone may remove a policy ----------------------------------


def test_only_an_explicit_recorded_activation_removes_a_policy(tmp_path: Path,
                                                               run_cli: RunCli) -> None:
    policies = write_frozen_policies(tmp_path / "policies")
    db = tmp_path / "audit.db"
    events: list[WatchEvent] = []
    with AuditStore(db) as store:
        watcher = PolicyWatcher([str(policies)], events.append,
                                may_remove=lambda s: activation.explicitly_active(store, s))
        good = watcher.poll()
        assert isinstance(good, PolicySet)
        store.record_activation(good)  # as a run records the set it starts with
        (policies / "approval.yaml").unlink()
        assert watcher.poll() is None
        assert watcher.poll() is None  # held, and reported once
        assert [e.kind for e in events] == ["activated", "rejected"]
        assert "ApprovalPolicy 'human-approval' would be removed" in str(events[1].problems[0])

        refused = run_cli("activate", "--policies", str(policies), "--audit", str(db),
                          "--reason", "approvals move to the broker")
        assert refused.returncode == 1
        assert "would remove ApprovalPolicy 'human-approval'" in refused.stderr
        assert "--allow-removal" in refused.stderr
        assert watcher.poll() is None
        assert run_cli("activate", "--policies", str(policies), "--audit", str(db),
                       "--allow-removal").returncode == 2  # a reason is required

        done = run_cli("activate", "--policies", str(policies), "--audit", str(db),
                       "--allow-removal", "--reason", "approvals move to the broker")
        assert done.returncode == 0, done.stderr
        assert "removed: ApprovalPolicy 'human-approval'" in done.stdout
        smaller = watcher.poll()
        assert smaller is not None and smaller.policy("human-approval") is None
        assert "removed by an explicit activation: ApprovalPolicy 'human-approval'" in \
            events[-1].message
        latest = store.latest("policy_activation")
        assert latest is not None and latest.ref == smaller.hash
        assert latest.body["explicit"] is True
        assert latest.body["reason"] == "approvals move to the broker"
        assert latest.body["removed"] == [{"kind": "ApprovalPolicy", "name": "human-approval",
                                           "path": str(policies / "approval.yaml")}]
        assert [r.ref for r in store.iter_records("policy_activation")] == [good.hash,
                                                                             smaller.hash]


def test_an_evaluation_of_a_smaller_set_never_stands_in_for_the_set_in_force(
        tmp_path: Path, run_cli: RunCli) -> None:
    """`fugger eval` records the set it decided under; that record must not become what
    `fugger activate` compares against, or a set without the approval policy would go into
    force with nothing removed on record."""
    policies = write_frozen_policies(tmp_path / "policies")
    small = tmp_path / "small"
    small.mkdir()
    shutil.copy(policies / "safety.yaml", small / "safety.yaml")
    db = tmp_path / "audit.db"
    with AuditStore(db) as store:
        store.record_activation(load_policy_set([str(policies)]), scope="live")
    facts = tmp_path / "facts.jsonl"
    facts.write_text('{"ts": "2025-01-02T21:00:00Z", "symbol": "SPY", "drift_score": 0.1}\n',
                     encoding="utf-8")
    evaluated = run_cli("eval", "--policies", str(small), "--facts", str(facts), "--audit",
                        str(db), "--clock", "snapshot")
    assert evaluated.returncode == 0, evaluated.stderr

    refused = run_cli("activate", "--policies", str(small), "--audit", str(db), "--reason",
                      "fewer policies")
    assert refused.returncode == 1
    assert "would remove ApprovalPolicy 'human-approval'" in refused.stderr
