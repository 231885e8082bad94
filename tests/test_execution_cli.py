"""The trading commands as a new user runs them: each test in its own directory, on the
default file locations, no traceback on any stderr. Commands run in-process; the first cycle
of each test (paper init, step, approvals, resume) also runs as a real process, so every
command is seen end to end and the state it leaves is read by the next process."""

from __future__ import annotations

import json
import shutil
import subprocess
from collections import defaultdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from conftest import REPO_ROOT, invoke_fugger, run_fugger, run_fugger_many, token_for

from engine.audit.store import AuditStore
from engine.execution import state as trading
from engine.execution.gateway import ORDER, latest_status
from engine.execution.paper import PaperBroker, init_account
from engine.ids import short
from engine.timeutil import format_utc

AUDIT = ".fugger/audit.db"
PAPER = ".fugger/paper.db"


def _workspace(root: Path, mode: str = "semi_autonomous", **facts: dict[str, float]) -> Path:
    """A user's directory: the default policies in `mode`, and this cycle's facts (ts = now)
    for AAA and BBB, each optionally changed by `facts[SYMBOL]`."""
    shutil.copytree(REPO_ROOT / "policies", root / "policies")
    approval = root / "policies" / "approval.yaml"
    text = approval.read_text(encoding="utf-8")
    assert "mode: semi_autonomous" in text
    approval.write_text(text.replace("mode: semi_autonomous", f"mode: {mode}"),
                        encoding="utf-8")
    _write_facts(root / "facts.jsonl", **facts)
    return root


def _write_facts(path: Path, **changes: dict[str, float]) -> Path:
    ts = format_utc(datetime.now(UTC).replace(microsecond=0))
    base = {"AAA": {"price": 100.0, "volatility": 0.2, "expected_return": 0.05},
            "BBB": {"price": 50.0, "volatility": 0.25, "expected_return": 0.04}}
    with path.open("w", encoding="utf-8") as f:
        for symbol, facts in base.items():
            row = {"ts": ts, "symbol": symbol, **facts, "drift_score": 0.1, "coherence": 0.8,
                   "frs": 0.8, "meta_reliability": 0.8, **changes.get(symbol, {})}
            f.write(json.dumps(row) + "\n")
    return path


def _paper_account(home: Path) -> None:
    """What `fugger paper init --cash 200000` makes, without paying for a process."""
    (home / PAPER).parent.mkdir()
    init_account(home / PAPER, 200_000)


def fugger(cwd: Path, *args: str, env: dict[str, str] | None = None,
           ) -> subprocess.CompletedProcess[str]:
    return invoke_fugger(args, cwd=cwd, env=env)


def process(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """`fugger ARGS` as a real process."""
    return run_fugger(args, cwd=cwd)


def _many(cwd: Path, *commands: list[str]) -> list[subprocess.CompletedProcess[str]]:
    """Commands one after another in-process."""
    return [invoke_fugger(c, cwd=cwd) for c in commands]


def _processes(cwd: Path, *commands: list[str]) -> list[subprocess.CompletedProcess[str]]:
    """Independent commands as real processes, at once."""
    return run_fugger_many(commands, cwd=cwd)


def step(cwd: Path, facts: str = "facts.jsonl", *, as_process: bool = False) -> dict[str, Any]:
    args = ("step", "--policies", "policies", "--facts", facts, "--format", "json")
    proc = process(cwd, *args) if as_process else fugger(cwd, *args)
    assert proc.returncode == 0, proc.stderr
    doc: dict[str, Any] = json.loads(proc.stdout)
    return doc


def _orders(doc: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {o["symbol"]: o for o in doc["orders"]}


def test_autonomous_cycle_fills_its_orders_and_paper_show_agrees(tmp_path: Path) -> None:
    home = _workspace(tmp_path, "autonomous")
    init = process(home, "paper", "init", "--cash", "200000")
    assert init.returncode == 0, init.stderr
    assert (home / PAPER).is_file()

    doc = step(home, as_process=True)
    assert doc["trading_state"]["state"] == "ACTIVE"
    assert doc["rebalance"]["triggered"] and doc["rebalance"]["rule"] == "first-build"
    orders = _orders(doc)
    assert sorted(orders) == ["AAA", "BBB"]
    assert all(o["side"] == "BUY" and o["status"] == "filled" and o["rule"] is None
               for o in orders.values())

    shown = fugger(home, "paper", "show", "--format", "json")
    assert shown.returncode == 0, shown.stderr
    account = json.loads(shown.stdout)
    assert [(o["client_id"], o["symbol"], o["side"], o["shares"], o["status"])
            for o in account["orders"]] == [
        (o["client_id"], o["symbol"], o["side"], o["shares"], "filled") for o in doc["orders"]]
    assert account["positions"] == {s: o["shares"] for s, o in orders.items()}
    spent = sum(o["shares"] * o["fill_price"] + o["commission"] for o in account["orders"])
    assert account["cash"] == round(200_000 - spent, 2)
    with AuditStore(home / AUDIT) as store:
        for o in doc["orders"]:
            assert latest_status(store, o["client_id"]) == "filled"


def test_semi_autonomous_holds_new_symbols_until_a_person_approves(tmp_path: Path) -> None:
    home = _workspace(tmp_path, "semi_autonomous")
    (home / "book.yaml").write_text('as_of: "2025-01-01T00:00:00Z"\ncash: 150000\n'
                                    "positions: {AAA: 300}\n", encoding="utf-8")
    init = fugger(home, "paper", "init", "--cash", "150000", "--positions", "book.yaml")
    assert init.returncode == 0, init.stderr

    first = _orders(step(home))
    assert (first["AAA"]["status"], first["AAA"]["rule"]) == ("filled", None)  # held symbol
    assert (first["BBB"]["status"], first["BBB"]["rule"]) == ("pending_approval",
                                                              "new-symbol-approval")
    item = first["BBB"]["client_id"]

    # The queue outlives the process that filled it.
    listed, posing, own = _processes(
        home, ["approvals", "list", "--format", "json"],
        ["approvals", "approve", item, "--by", "ann", "--reason", "ok"],
        ["approvals", "approve", item, "--reason", "mine"])
    assert listed.returncode == 0, listed.stderr
    queue = [json.loads(line) for line in listed.stdout.splitlines()]
    assert [(q["item_id"], q["symbol"], q["shares"], q["rule"], q["outcome"],
             q["requested_by"]) for q in queue] \
        == [(item, "BBB", first["BBB"]["shares"], "new-symbol-approval", None, "me")]
    # --by names who acts; it cannot choose someone else.
    assert posing.returncode == 1 and "authenticated as me" in posing.stderr
    # The person who stepped the cycle requested the order: four eyes.
    assert own.returncode == 1 and "me requested item" in own.stderr

    as_ann = {"FUGGER_TOKEN": token_for("ann", home / AUDIT)}
    approved = fugger(home, "approvals", "approve", item, "--reason", "new name, vetted",
                      env=as_ann)
    assert approved.returncode == 0, approved.stderr
    twice = fugger(home, "approvals", "approve", item, "--reason", "again",
                   env={"FUGGER_TOKEN": token_for("bob", home / AUDIT)})
    assert twice.returncode != 0
    assert "already approved by ann" in twice.stderr

    second = step(home)
    sent = [o for o in second["orders"] if o["client_id"] == item]
    assert [(o["status"], o["shares"]) for o in sent] == [("filled",
                                                           first["BBB"]["shares"])]

    shown, why = _many(home, ["paper", "show", "--format", "json"], ["audit", "why", item])
    assert shown.returncode == 0 and why.returncode == 0, shown.stderr + why.stderr
    account = json.loads(shown.stdout)
    assert [(o["symbol"], o["shares"], o["status"]) for o in account["orders"]
            if o["client_id"] == item] == [("BBB", first["BBB"]["shares"], "filled")]
    assert account["positions"] == {"AAA": 300 + first["AAA"]["shares"],
                                    "BBB": first["BBB"]["shares"]}
    with AuditStore(home / AUDIT) as store:
        bodies = [r.body for r in store.find(item) if r.kind == ORDER]
    decision_id = bodies[-1]["decision_id"]
    assert "new-symbol-approval" in why.stdout
    assert f"Decision {short(decision_id)}" in why.stdout
    assert "approved by ann" in why.stdout


def test_manual_mode_holds_every_order_and_a_rejected_one_is_never_sent(
        tmp_path: Path) -> None:
    home = _workspace(tmp_path, "manual")
    _paper_account(home)

    first = _orders(step(home))
    assert sorted(first) == ["AAA", "BBB"]
    assert all((o["status"], o["rule"]) == ("pending_approval", "mode-manual")
               for o in first.values())
    rejected, approved = first["AAA"]["client_id"], first["BBB"]["client_id"]

    as_ann = {"FUGGER_TOKEN": token_for("ann", home / AUDIT)}
    posing, reject, approve = run_fugger_many(
        [["approvals", "reject", rejected, "--by", "fuggerbot", "--reason", "x"],
         ["approvals", "reject", rejected, "--by", "me", "--reason", "not today"],
         ["approvals", "approve", approved, "--reason", "fine"]], cwd=home,
        envs=[None, None, as_ann])
    assert posing.returncode == 1 and "authenticated as me" in posing.stderr
    assert reject.returncode == 0, reject.stderr
    assert approve.returncode == 0, approve.stderr

    second = step(home)
    statuses = defaultdict(list)
    for o in second["orders"]:
        statuses[o["client_id"]].append(o["status"])
    assert statuses[approved] == ["filled"]
    assert rejected not in statuses
    # What the rotation plans anew for AAA waits for a person again.
    assert all(o["status"] == "pending_approval" and o["rule"] == "mode-manual"
               for o in second["orders"] if o["client_id"] != approved)

    account = PaperBroker(home / PAPER).account_summary()
    assert [o.client_id for o in account.orders] == [approved]
    assert account.positions == {"BBB": first["BBB"]["shares"]}
    with AuditStore(home / AUDIT) as store:
        assert latest_status(store, rejected) == "rejected"
        assert latest_status(store, approved) == "filled"


def test_a_halt_latches_and_only_a_named_resume_with_a_reason_lifts_it(
        tmp_path: Path) -> None:
    home = _workspace(tmp_path, "autonomous", AAA={"drift_score": 0.85})
    _write_facts(home / "calm.jsonl")
    _paper_account(home)

    halted = step(home)
    assert halted["trading_state"]["state"] == "HALTED"
    assert halted["trading_state"]["rule"] == "drift-spike-halt"
    assert halted["orders"] and all(o["status"] == "denied" for o in halted["orders"])

    posing, unreasoned, no_reason, still = _many(
        home, ["resume", "--by", "rita", "--reason", "drift is back"], ["resume"],
        ["resume", "--reason", " "], ["resume", "--reason", "drift is back"])
    assert posing.returncode == 1 and "authenticated as me" in posing.stderr
    assert unreasoned.returncode == 2 and "Missing option '--reason'" in unreasoned.stderr
    for proc in (no_reason, still):
        assert proc.returncode != 0
        assert "resume refused" in proc.stderr
    assert "--reason" in no_reason.stderr
    assert "still fires" in still.stderr and "drift-spike-halt" in still.stderr

    # The drift falls: the halt holds, and nothing goes out.
    calm = step(home, "calm.jsonl")
    assert calm["trading_state"]["state"] == "HALTED"
    assert calm["decisions"]["AAA"]["action"] == "allow"
    assert calm["orders"] and all((o["status"], o["rule"]) == ("denied", "drift-spike-halt")
                                  for o in calm["orders"])
    assert PaperBroker(home / PAPER).account_summary().orders == ()

    resumed = process(home, "resume", "--reason", "drift is back under 0.8")
    assert resumed.returncode == 0, resumed.stderr
    assert "resumed by me" in resumed.stdout

    with AuditStore(home / AUDIT) as store:
        assert trading.load(store).state is trading.TradingState.ACTIVE
        changes = [(r.body["previous"], r.body["state"], r.body.get("by"))
                   for r in store.iter_records(trading.KIND)]
    assert changes == [("ACTIVE", "HALTED", None), ("HALTED", "ACTIVE", "me")]


def test_a_halt_in_a_live_step_alerts_once_through_the_sinks(tmp_path: Path) -> None:
    home = _workspace(tmp_path, "autonomous", AAA={"drift_score": 0.85})
    _paper_account(home)
    (home / "sinks.yaml").write_text("sinks:\n  - type: jsonl\n    path: alerts.jsonl\n",
                                     encoding="utf-8")
    args = ["step", "--policies", "policies", "--facts", "facts.jsonl", "--sinks", "sinks.yaml",
            "--format", "json"]
    first, again = _many(home, args, args)
    assert first.returncode == 0, first.stderr
    assert again.returncode == 0, again.stderr
    sent = [json.loads(line) for line in
            (home / "alerts.jsonl").read_text(encoding="utf-8").splitlines()]
    # The halt is announced by the step that latched it, not again by the next one.
    assert [(a["severity"], a["title"]) for a in sent] == [("critical", "Trading halted")]
    assert "drift-spike-halt" in sent[0]["message"]
    with AuditStore(home / AUDIT) as store:
        kept = [r.body["alert_id"] for r in store.iter_records("alert")]
    assert kept == [sent[0]["alert_id"]]
