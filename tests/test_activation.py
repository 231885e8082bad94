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
