"""Four eyes: an order can need N distinct approvers, never its requester; each approval names
who, when, why and the exact order; concurrent approvals reach the quorum once."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

import pytest
from conftest import FROZEN_APPROVAL, FROZEN_SAFETY, RunCli, run_fugger_many, token_for

from engine.audit.store import AuditStore
from engine.execution import approvals
from engine.execution.approval_policy import ApprovalEvaluator
from engine.policy.loader import load_policy_set
from engine.policy.problems import PolicyError
from engine.timeutil import format_utc, utc_now

NOW = utc_now()

#: The tests' approval policy and a rule asking two people for orders above 1,000,000.
FOUR_EYES = FROZEN_APPROVAL + """\
    - id: very-large-order-approval
      when: {fact: order_notional, op: ">", value: 1000000}
      action: require_approval
      approvers: 2
"""


def _queue(store: AuditStore, approvers: int, item_id: str = "o-1", *,
           at: datetime = NOW) -> None:
    assert approvals.request(store, item_id=item_id, symbol="AAA", side="BUY", shares=12_000,
                             price=100.0, rule="very-large-order-approval", decision_id="d-1",
                             requested_at=at, ttl_seconds=900, approvers=approvers,
                             requested_by="tim") is not None


def test_the_approval_policy_asks_for_the_most_approvers_of_the_rules_that_fire(
        tmp_path: Path) -> None:
    (tmp_path / "approval.yaml").write_text(FOUR_EYES, encoding="utf-8")
    evaluator = ApprovalEvaluator(load_policy_set([str(tmp_path / "approval.yaml")]))
    try:
        facts = {"order_opens": True, "symbol_held": True, "safety_action": "allow"}
        assert evaluator.need({**facts, "order_notional": 500_000}).approvers == 1
        big = evaluator.need({**facts, "order_notional": 2_000_000})
        assert (big.required, big.approvers) == (True, 2)
        assert set(big.fired) == {"large-order-approval", "very-large-order-approval"}
    finally:
        evaluator.close()
    (tmp_path / "safety.yaml").write_text(
        FROZEN_SAFETY.replace("      action: halt\n", "      action: halt\n      approvers: 2\n",
                              1), encoding="utf-8")
    with pytest.raises(PolicyError, match="'approvers' belongs to ApprovalPolicy rules"):
        load_policy_set([str(tmp_path / "safety.yaml")])


def test_two_approvers_must_be_two_people_and_never_the_requester(tmp_path: Path) -> None:
    with AuditStore(tmp_path / "audit.db") as store:
        _queue(store, approvers=2)
        with pytest.raises(approvals.ApprovalError, match="tim requested item o-1 and cannot "
                                                          "approve it"):
            approvals.decide(store, "o-1", outcome="approved", by="tim", reason="mine", now=NOW)
        with pytest.raises(approvals.ApprovalError, match="says why"):
            approvals.decide(store, "o-1", outcome="approved", by="ann", reason=" ", now=NOW)
        first = approvals.decide(store, "o-1", outcome="approved", by="ann",
                                 reason="limits checked", now=NOW)
        assert first.pending
        with pytest.raises(approvals.ApprovalError, match="ann has already approved"):
            approvals.decide(store, "o-1", outcome="approved", by="ann", reason="again",
                             now=NOW)
        later = NOW + timedelta(minutes=1)
        done = approvals.decide(store, "o-1", outcome="approved", by="bob",
                                reason="counterparty fine", now=later)
        assert (done.outcome, done.decided_by) == ("approved", "bob")
        order = {"symbol": "AAA", "side": "BUY", "shares": 12_000, "price": 100.0}
        assert [(a["by"], a["at"], a["reason"], a["order"], a["count"])
                for a in approvals.approvals_of(store, "o-1")] == [
            ("ann", format_utc(NOW), "limits checked", order, 1),
            ("bob", format_utc(later), "counterparty fine", order, 2)]
        decided = [r.body for r in store.find("o-1") if r.kind == approvals.DECIDED]
        assert [(d["outcome"], d["approvers"]) for d in decided] == [("approved",
                                                                      ["ann", "bob"])]
        # A rejection needs one person, and a reason; the requester may withdraw.
        _queue(store, approvers=2, item_id="o-2")
        gone = approvals.decide(store, "o-2", outcome="rejected", by="tim",
                                reason="withdrawn", now=NOW)
        assert (gone.outcome, gone.decided_by) == ("rejected", "tim")


def test_eight_people_approving_at_once_reach_the_quorum_exactly_once(tmp_path: Path) -> None:
    """Eight real processes, eight people, one item needing three: three approvals count,
    one decision is recorded, five are told it was decided already."""
    db = tmp_path / "audit.db"
    people = [f"approver-{i}" for i in range(1, 9)]
    tokens = {p: token_for(p, db) for p in people}
    with AuditStore(db) as store:
        # Requested as the commands start, which approve on the wall clock: NOW was taken
        # when the module was imported, and a slow suite can outlive the item's 15 minutes.
        _queue(store, approvers=3, at=utc_now())
    procs = run_fugger_many(
        [["approvals", "approve", "o-1", "--reason", f"checked by {p}", "--audit", str(db)]
         for p in people], envs=[{"FUGGER_TOKEN": tokens[p]} for p in people], workers=8)
    ok = [p for p, proc in zip(people, procs, strict=True) if proc.returncode == 0]
    late = [proc for proc in procs if proc.returncode != 0]
    assert len(ok) == 3 and len(late) == 5, [proc.stderr[-400:] for proc in late]
    assert all("already approved by" in proc.stderr for proc in late)
    with AuditStore(db) as store:
        given = approvals.approvals_of(store, "o-1")
        decided = [r.body for r in store.find("o-1") if r.kind == approvals.DECIDED]
        assert store.verify().ok
    assert sorted(a["by"] for a in given) == sorted(ok)
    assert [a["count"] for a in given] == [1, 2, 3]
    assert len(decided) == 1 and decided[0]["approvers"] == [a["by"] for a in given]


def test_a_person_approves_by_the_short_id_the_queue_shows_and_an_ambiguous_one_is_refused(
        tmp_path: Path, run_cli: RunCli, invoke_cli: RunCli) -> None:
    db = tmp_path / "audit.db"
    ann = token_for("ann", db)
    items = ("o-7f3a0c11aa0000000000000a", "o-7f3a0c11bb0000000000000b")
    with AuditStore(db) as store:
        for item in items:
            _queue(store, approvers=1, item_id=item, at=utc_now())
    listed = invoke_cli("approvals", "list", "--audit", str(db), env={"COLUMNS": "200"})
    assert listed.returncode == 0, listed.stderr
    assert "o-7f3a0c11aa" in listed.stdout and items[0] not in listed.stdout

    ambiguous = invoke_cli("approvals", "approve", "o-7f3a0c11", "--reason", "checked",
                           "--audit", str(db), env={"FUGGER_TOKEN": ann})
    assert ambiguous.returncode == 2
    assert "more than one approval item" in ambiguous.stderr
    assert all(item in ambiguous.stderr for item in items)

    approved = run_cli("approvals", "approve", "o-7f3a0c11aa", "--reason", "checked",
                       "--audit", str(db), env={"FUGGER_TOKEN": ann})
    assert approved.returncode == 0, approved.stderr
    assert approved.stdout.startswith(f"{items[0]}: BUY 12000 AAA approved by ann")
    with AuditStore(db) as store:
        first, second = (approvals.get(store, item) for item in items)
        assert first is not None and (first.outcome, first.decided_by) == ("approved", "ann")
        assert second is not None and second.pending

    unreasoned = run_cli("approvals", "reject", "o-7f3a0c11bb", "--audit", str(db),
                         env={"FUGGER_TOKEN": ann})
    assert unreasoned.returncode == 2 and "Missing option '--reason'" in unreasoned.stderr
