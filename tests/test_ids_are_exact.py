"""An id that the engine writes under again (an approval item, an API token) is matched
exactly: a record's seq number given in its place must never resolve to the item and then be
written under the number, where the quorum and the revocation checks cannot see it. Only what
a person reads (`audit show`, `audit why`) may look a record up by its number."""

from __future__ import annotations

import json
import os
from datetime import timedelta
from pathlib import Path

import pytest
from conftest import RunCli

from engine.access.authorise import AccessDenied
from engine.access.loading import load_access
from engine.access.tokens import TokenError, create, from_token, revoke
from engine.audit.store import AuditStore
from engine.execution import approvals
from engine.timeutil import utc_now

NOW = utc_now()


def _seq_of(store: AuditStore, ref: str) -> int:
    return next(r.seq for r in store.find(ref))


def test_an_approval_given_by_record_number_is_refused_and_counts_for_nothing(
        tmp_path: Path) -> None:
    with AuditStore(tmp_path / "audit.db") as store:
        approvals.request(store, item_id="o-1", symbol="AAA", side="BUY", shares=12_000,
                          price=100.0, rule="very-large-order-approval", decision_id="d-1",
                          requested_at=NOW, ttl_seconds=900, approvers=3, requested_by="tim")
        seq = str(_seq_of(store, "o-1"))
        approvals.decide(store, "o-1", outcome="approved", by="ann", reason="ok", now=NOW)
        with pytest.raises(approvals.ApprovalError, match=f"no approval item '{seq}'"):
            approvals.decide(store, seq, outcome="approved", by="ann", reason="ok", now=NOW)
        approvals.decide(store, "o-1", outcome="approved", by="bob", reason="ok", now=NOW)
        item = approvals.get(store, "o-1")
        assert item is not None and item.pending  # two people of three: no quorum
        assert store.find(seq) == []


def test_a_token_revoked_by_record_number_is_refused_and_stays_usable_until_revoked(
        tmp_path: Path) -> None:
    access = load_access(os.environ["FUGGER_ACCESS"])
    with AuditStore(tmp_path / "audit.db") as store:
        token, info = create(store, access, "approver-1", by="me", ttl=timedelta(days=1),
                             now=NOW)
        seq = str(_seq_of(store, info.token_id))
        with pytest.raises(TokenError, match=f"no token '{seq}'"):
            revoke(store, seq, by="me", now=NOW)
        assert from_token(store, access, token, "approve", now=NOW).name == "approver-1"
        revoke(store, info.token_id, by="me", now=NOW)
        with pytest.raises(AccessDenied, match="is revoked"):
            from_token(store, access, token, "approve", now=NOW)


def test_a_person_may_still_show_a_record_by_its_number(tmp_path: Path,
                                                       run_cli: RunCli) -> None:
    db = tmp_path / "audit.db"
    with AuditStore(db) as store:
        store.append("note", "n-1", {"summary": "a note"})
        seq = _seq_of(store, "n-1")
    shown = run_cli("audit", "show", str(seq), "--audit", str(db))
    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout)["ref"] == "n-1"
