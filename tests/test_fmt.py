"""fugger fmt: one canonical layout for policies, comments kept, never a change of meaning,
never a half-written or invalid file touched."""

from __future__ import annotations

import os
from pathlib import Path

from engine.policy.loader import load_policy_set
from engine.policy.model import PolicySet
from tests.conftest import REPO_ROOT, RunCli

MESSY = """\
# the safety rails
apiVersion: fuggerbot/v1
kind: SafetyPolicy
metadata:
    name: messy   \n\
    version: 1.0.0
spec:
    fail_closed: halt
    rules:
    -   id: drift-halt   # why this rule exists
        when: {fact: drift_score, op: '>=', value: 0.8}
        action: halt
    -   id: low-frs-wait
        when:
            any:
            - {fact: frs, op: <, value: 0.4}
        action: wait_confirmation


"""

CANONICAL = """\
# the safety rails
apiVersion: fuggerbot/v1
kind: SafetyPolicy
metadata:
  name: messy
  version: 1.0.0
spec:
  fail_closed: halt
  rules:
    - id: drift-halt     # why this rule exists
      when: {fact: drift_score, op: ">=", value: 0.8}
      action: halt
    - id: low-frs-wait
      when:
        any:
          - {fact: frs, op: "<", value: 0.4}
      action: wait_confirmation
"""


def _rules(ps: PolicySet) -> list[tuple[str, str, str]]:
    return [(r.id, r.when.text(), r.action) for p in ps.policies for r in p.rules]


def test_check_lists_what_would_change_then_fmt_rewrites_it_keeping_comments(
        run_cli: RunCli, tmp_path: Path) -> None:
    policy = tmp_path / "policies" / "safety.yaml"
    policy.parent.mkdir()
    policy.write_text(MESSY, encoding="utf-8")
    os.chmod(policy, 0o640)
    before = load_policy_set([str(policy)])
    checked = run_cli("fmt", "--check", str(policy.parent))
    assert checked.returncode == 1
    assert f"would reformat {policy}" in checked.stdout
    assert policy.read_text(encoding="utf-8") == MESSY
    rewritten = run_cli("fmt", str(policy.parent))
    assert rewritten.returncode == 0, rewritten.stderr
    assert policy.read_text(encoding="utf-8") == CANONICAL
    assert _rules(load_policy_set([str(policy)])) == _rules(before)
    assert policy.stat().st_mode & 0o777 == 0o640
    assert sorted(p.name for p in policy.parent.iterdir()) == ["safety.yaml"]  # no temp left
    again = run_cli("fmt", "--check", str(policy.parent))
    assert again.returncode == 0
    assert "0 of 1 file(s) would change" in again.stdout


def test_the_shipped_policies_are_canonical(invoke_cli: RunCli) -> None:
    proc = invoke_cli("fmt", "--check", str(REPO_ROOT / "policies"))
    assert proc.returncode == 0, proc.stdout


def test_an_invalid_policy_is_named_and_nothing_is_rewritten(invoke_cli: RunCli,
                                                             tmp_path: Path) -> None:
    good = tmp_path / "a.yaml"
    good.write_text(MESSY, encoding="utf-8")
    bad = tmp_path / "b.yaml"
    broken = MESSY.replace("name: messy", "name: other").replace("drift_score", "drift")
    bad.write_text(broken, encoding="utf-8")
    proc = invoke_cli("fmt", str(tmp_path))
    assert proc.returncode == 1
    assert f"{bad}:11:" in proc.stderr and "drift_score" in proc.stderr
    assert "nothing was rewritten" in proc.stderr
    assert good.read_text(encoding="utf-8") == MESSY
    assert bad.read_text(encoding="utf-8") == broken
