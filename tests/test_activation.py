"""Which activation counts as putting a set in force on purpose, in-process on a real store
and the shipped policies."""

from __future__ import annotations

import shutil
from pathlib import Path

from conftest import REPO_ROOT

from engine.audit import activation
from engine.audit.store import AuditStore
from engine.policy.loader import load_policy_set
from engine.policy.removal import Member


def test_an_explicit_activation_of_one_set_never_vouches_for_another(tmp_path: Path) -> None:
    whole = load_policy_set([str(REPO_ROOT / "policies")])
    smaller_dir = tmp_path / "smaller"
    shutil.copytree(REPO_ROOT / "policies", smaller_dir, ignore=shutil.ignore_patterns("tests"))
    (smaller_dir / "pretrade.yaml").unlink()
    smaller = load_policy_set([str(smaller_dir)])
    assert smaller.hash != whole.hash
    with AuditStore(tmp_path / "audit.db") as store:
        assert not activation.explicitly_active(store, whole)  # nothing recorded yet
        activation.record_explicit(store, smaller, reason="drop pretrade on purpose",
                                   removed=[Member("OrderPolicy", "pretrade-controls",
                                                   "policies/pretrade.yaml")], actor="me")
        assert activation.explicitly_active(store, smaller)
        # An explicit activation vouches only for the very set it put in force.
        assert not activation.explicitly_active(store, whole)
        assert "OrderPolicy" not in {m.kind for m in activation.in_force(store)}


def test_what_is_in_force_is_what_something_trades_under(tmp_path: Path) -> None:
    """The newest live or run activation says which policies are in force; an evaluation's
    set only decided and never stands in for it, unless nothing else was ever activated. An
    explicit activation records who, why and what it removed, and any later activation
    supersedes it."""
    whole = load_policy_set([str(REPO_ROOT / "policies")])
    safety = load_policy_set([str(REPO_ROOT / "policies" / "safety.yaml")])
    members = {Member(p.kind, p.name, p.path) for p in whole.policies}
    with AuditStore(tmp_path / "audit.db") as store:
        assert activation.in_force(store) == ()
        store.record_activation(safety)  # an evaluation: the only activation so far
        assert activation.in_force(store) == (Member("SafetyPolicy", "core-safety",
                                                     safety.policies[0].path),)
        store.record_activation(whole, scope="run", run_id="r1")
        store.record_activation(safety, scope="evaluation")
        assert set(activation.in_force(store)) == members
        assert list(activation.in_force(store)) == sorted(members)
        record = activation.record_explicit(
            store, safety, reason="safety only", actor="rita",
            removed=[Member("OrderPolicy", "pretrade-controls", "policies/pretrade.yaml")])
        assert record.kind == activation.KIND and record.ref == safety.hash
        assert {k: record.body[k] for k in ("explicit", "reason", "scope", "run_id",
                                            "activated_by", "removed")} == {
            "explicit": True, "reason": "safety only", "scope": "live", "run_id": None,
            "activated_by": "rita",
            "removed": [{"kind": "OrderPolicy", "name": "pretrade-controls",
                         "path": "policies/pretrade.yaml"}]}
        assert store.active("live") == record
        assert activation.explicitly_active(store, safety)
        assert [m.name for m in activation.in_force(store)] == ["core-safety"]
        store.record_activation(whole, scope="live")
        assert not activation.explicitly_active(store, safety)
        assert not activation.explicitly_active(store, whole)  # recorded, not explicit
