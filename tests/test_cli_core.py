"""The `fugger` command as a user runs it: real files, real audit stores; in-process, with one
real process per command (validate, eval, explain, audit) end to end."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from conftest import SAFETY_YAML, RunCli, WritePolicy, invoke_fugger, run_fugger_many

from engine.audit.store import AuditStore
from engine.schemas import validator

TS = "2025-03-04T15:30:00Z"
CALM: dict[str, Any] = {"ts": TS, "symbol": "SP500", "drift_score": 0.1, "volatility": 0.12,
                        "coherence": 0.9, "frs": 0.9, "meta_reliability": 0.9}
SNAPSHOTS: list[dict[str, Any]] = [
    CALM,
    {**CALM, "symbol": "NASDAQ", "drift_score": 0.8},
    {**CALM, "symbol": "WTI", "volatility": 0.35, "frs": 0.3999999},
    {**CALM, "coherence": 0.5},
]
EXPECTED = [("allow", None), ("halt", "drift-spike-halt"),
            ("flatten", "high-volatility-flatten"), ("block_new", "coherence-break-block")]


def json_lines(stdout: str) -> list[dict[str, Any]]:
    docs = [json.loads(ln) for ln in stdout.splitlines() if ln.strip()]
    for d in docs:
        validator("decision").validate(d)
    return docs


def outcomes(docs: list[dict[str, Any]]) -> list[tuple[str, str | None]]:
    return [(d["action"], (d["deciding_rule"] or {}).get("rule")) for d in docs]


def decisions_in(db: Path) -> list[dict[str, Any]]:
    with AuditStore(db, create=False) as store:
        assert store.verify().ok
        return [r.body for r in store.iter_records("decision")]


def eval_json(run_cli: RunCli, cwd: Path, facts: str, *extra: str,
              stdin: str | None = None) -> tuple[int, list[dict[str, Any]], str]:
    # The snapshots here are fixed in March 2025: they are decided on their own clock.
    proc = run_cli("eval", "--policies", "policies", "--facts", facts, "--audit", "audit.db",
                   "--format", "json", "--clock", "snapshot", *extra, cwd=cwd, stdin=stdin)
    docs = json_lines(proc.stdout) if proc.returncode == 0 else []
    return proc.returncode, docs, proc.stderr


# --- validate ---------------------------------------------------------------------------


def test_validate_good_and_bad(safety_dir: Path, write_policy: WritePolicy,
                               run_cli: RunCli) -> None:
    good = run_cli("validate", str(safety_dir))
    assert good.returncode == 0, good.stderr
    assert f"ok  {safety_dir / 'safety.yaml'}  SafetyPolicy core-safety 2.1.0" in good.stdout

    bad = write_policy(SAFETY_YAML.read_text(encoding="utf-8").replace(
        "value: 0.35", "value: 35"), "bad.yaml", "bad")
    proc = run_cli("validate", str(bad))
    assert proc.returncode == 1
    assert proc.stdout == ""
    first = proc.stderr.splitlines()[0]
    assert first.startswith(f"{bad}:")
    assert "write 0.35" in first
    assert "1 problem" in proc.stderr


def test_eval_refuses_invalid_policies(write_policy: WritePolicy, tmp_path: Path,
                                       invoke_cli: RunCli) -> None:
    write_policy(SAFETY_YAML.read_text(encoding="utf-8").replace("drift_score", "drift"))
    (tmp_path / "f.jsonl").write_text(json.dumps(CALM) + "\n")
    code, _, err = eval_json(invoke_cli, tmp_path, "f.jsonl")
    assert code == 1
    assert "unknown fact 'drift'" in err
    assert "did you mean drift_score" in err
    assert not (tmp_path / "audit.db").exists()


# --- eval -------------------------------------------------------------------------------


def test_eval_jsonl(safety_dir: Path, tmp_path: Path, run_cli: RunCli) -> None:
    (tmp_path / "facts.jsonl").write_text(
        "".join(json.dumps(s) + "\n" + ("\n" if i == 1 else "") for i, s in enumerate(SNAPSHOTS)))
    code, docs, err = eval_json(run_cli, tmp_path, "facts.jsonl")
    assert code == 0, err
    assert outcomes(docs) == EXPECTED
    assert [d["symbol"] for d in docs] == [s["symbol"] for s in SNAPSHOTS]
    assert len({d["decision_id"] for d in docs}) == len(docs)
    # the third snapshot also waits: every fired rule is listed, the most restrictive decides
    assert [f["rule"] for f in docs[2]["fired"]] == ["high-volatility-flatten",
                                                     "low-confidence-wait"]
    recorded = decisions_in(tmp_path / "audit.db")
    assert [r["decision"] for r in recorded] == docs
    assert [r["facts"] for r in recorded] == SNAPSHOTS
    assert recorded[2]["source"] == "facts.jsonl:4"  # the blank line counts


def test_eval_json_array(safety_dir: Path, tmp_path: Path, invoke_cli: RunCli) -> None:
    (tmp_path / "facts.json").write_text(json.dumps(SNAPSHOTS, indent=2))
    code, docs, err = eval_json(invoke_cli, tmp_path, "facts.json")
    assert code == 0, err
    assert outcomes(docs) == EXPECTED
    assert [r["source"] for r in decisions_in(tmp_path / "audit.db")] == [
        f"facts.json:[{i}]" for i in range(len(SNAPSHOTS))]


def test_eval_csv_empty_cell_is_a_missing_fact(safety_dir: Path, tmp_path: Path,
                                               invoke_cli: RunCli) -> None:
    (tmp_path / "facts.csv").write_text(
        "ts,symbol,drift_score,volatility,coherence,frs,meta_reliability\n"
        f"{TS},SP500,0.1,0.12,0.9,0.9,0.9\n"
        f"{TS},WTI,0.1,,0.9,0.9,0.9\n"
        f"{TS},NASDAQ,0.85,0.12,0.9,0.9,0.3\n"
        f"{TS},GOLD,0.1,abc,0.9,0.9,0.9\n"
        f"{TS},SILVER,0.1,0.12,0.9,0.9,\n")
    code, docs, err = eval_json(invoke_cli, tmp_path, "facts.csv")
    assert code == 0, err
    assert outcomes(docs) == [
        ("allow", None),
        ("halt", "fact-missing:volatility"),
        ("halt", "drift-spike-halt"),
        ("halt", "fact-invalid:volatility"),
        ("halt", "fact-missing:meta_reliability"),
    ]
    assert [f["rule"] for f in docs[2]["fired"]] == ["drift-spike-halt", "low-confidence-wait"]
    assert docs[1]["findings"][0]["problem"] == "missing"
    # an empty cell never becomes a zero
    assert "volatility" not in decisions_in(tmp_path / "audit.db")[1]["facts"]


def test_eval_stdin(safety_dir: Path, tmp_path: Path, run_cli: RunCli) -> None:
    text = "".join(json.dumps(s) + "\n" for s in SNAPSHOTS)
    code, docs, err = eval_json(run_cli, tmp_path, "-", stdin=text)
    assert code == 0, err
    assert outcomes(docs) == EXPECTED
    assert decisions_in(tmp_path / "audit.db")[0]["source"] == "<stdin>:1"


def test_eval_stdin_csv_with_input_format(safety_dir: Path, tmp_path: Path,
                                          invoke_cli: RunCli) -> None:
    text = ("ts,symbol,drift_score,volatility,coherence,frs,meta_reliability\n"
            f"{TS},SP500,0.1,0.12,0.5,0.9,0.9\n")
    code, docs, err = eval_json(invoke_cli, tmp_path, "-", "--input-format", "csv", stdin=text)
    assert code == 0, err
    assert outcomes(docs) == [("block_new", "coherence-break-block")]


def test_eval_text_output(safety_dir: Path, tmp_path: Path, invoke_cli: RunCli) -> None:
    (tmp_path / "facts.jsonl").write_text(json.dumps(SNAPSHOTS[1]) + "\n")
    proc = invoke_cli("eval", "--policies", "policies", "--facts", "facts.jsonl", "--audit",
                      "audit.db", "--clock", "snapshot", cwd=tmp_path, env={"COLUMNS": "240"})
    assert proc.returncode == 0, proc.stderr
    assert "1 decision(s), recorded in audit.db" in proc.stdout
    assert "halt" in proc.stdout
    assert "drift-spike-halt" in proc.stdout
    assert len(decisions_in(tmp_path / "audit.db")) == 1


def test_eval_invalid_json_line_records_nothing(safety_dir: Path, tmp_path: Path,
                                                invoke_cli: RunCli) -> None:
    (tmp_path / "good.jsonl").write_text(json.dumps(CALM) + "\n")
    code, _, err = eval_json(invoke_cli, tmp_path, "good.jsonl")
    assert code == 0, err
    assert len(decisions_in(tmp_path / "audit.db")) == 1

    (tmp_path / "bad.jsonl").write_text(json.dumps(CALM) + "\n{\"ts\": \n"
                                        + json.dumps(SNAPSHOTS[1]) + "\n")
    proc = invoke_cli("eval", "--policies", "policies", "--facts", "bad.jsonl", "--audit",
                   "audit.db", "--format", "json", cwd=tmp_path)
    assert proc.returncode == 1
    assert proc.stdout == ""
    assert "bad.jsonl:2:" in proc.stderr
    assert "invalid JSON" in proc.stderr
    assert len(decisions_in(tmp_path / "audit.db")) == 1


def test_eval_invalid_json_records_nothing_in_a_new_store(safety_dir: Path, tmp_path: Path,
                                                          invoke_cli: RunCli) -> None:
    (tmp_path / "bad.json").write_text("[" + json.dumps(CALM) + ",\n{oops}]")
    proc = invoke_cli("eval", "--policies", "policies", "--facts", "bad.json", "--audit",
                   "audit.db", cwd=tmp_path)
    assert proc.returncode == 1
    assert "bad.json:2:" in proc.stderr
    db = tmp_path / "audit.db"
    assert not db.exists() or decisions_in(db) == []


def test_eval_csv_with_ragged_row_records_nothing(safety_dir: Path, tmp_path: Path,
                                                  invoke_cli: RunCli) -> None:
    (tmp_path / "facts.csv").write_text(
        "ts,symbol,drift_score,volatility,coherence,frs,meta_reliability\n"
        f"{TS},SP500,0.1,0.12,0.9,0.9,0.9\n"
        f"{TS},WTI,0.1,0.12\n")
    proc = invoke_cli("eval", "--policies", "policies", "--facts", "facts.csv", "--audit",
                   "audit.db", cwd=tmp_path)
    assert proc.returncode == 1
    assert "facts.csv:3:" in proc.stderr
    db = tmp_path / "audit.db"
    assert not db.exists() or decisions_in(db) == []


def test_eval_missing_facts_file(safety_dir: Path, tmp_path: Path, invoke_cli: RunCli) -> None:
    proc = invoke_cli("eval", "--policies", "policies", "--facts", "nope.jsonl", "--audit",
                   "audit.db", cwd=tmp_path)
    assert proc.returncode == 1
    assert "nope.jsonl" in proc.stderr


def test_eval_snapshot_that_is_not_an_object(safety_dir: Path, tmp_path: Path,
                                             invoke_cli: RunCli) -> None:
    (tmp_path / "facts.jsonl").write_text("[1, 2]\n\"SP500\"\nnull\n")
    code, docs, err = eval_json(invoke_cli, tmp_path, "facts.jsonl")
    assert code == 0, err
    assert outcomes(docs) == [("halt", "fact-invalid:snapshot")] * 3


# --- usage ------------------------------------------------------------------------------


USAGE_ERRORS: list[tuple[str, ...]] = [
    ("eval", "--no-such-option"),
    ("no-such-command",),
    ("eval", "--input-format", "xml", "--facts", "f.jsonl"),
    ("audit", "list", "--from", "yesterday"),
]


def test_usage_errors_exit_2(safety_dir: Path, tmp_path: Path) -> None:
    (tmp_path / "f.jsonl").write_text(json.dumps(CALM) + "\n")
    for args in USAGE_ERRORS:
        proc = invoke_fugger(args, cwd=tmp_path)
        assert proc.returncode == 2, (args, proc.stdout, proc.stderr)
        assert proc.stderr.strip(), args
    assert not (tmp_path / ".fugger").exists()


HELP: list[tuple[str, ...]] = [
    ("--help",), ("validate", "--help"), ("eval", "--help"), ("explain", "--help"),
    ("audit", "list", "--help"), ("audit", "show", "--help"),
    ("audit", "why", "--help"), ("audit", "verify", "--help"),
]


def test_help(tmp_path: Path) -> None:
    for args in HELP:
        proc = invoke_fugger(args, cwd=tmp_path)
        assert proc.returncode == 0, (args, proc.stderr)
        assert "Usage" in proc.stdout, args
        assert proc.stderr == "", args
    assert list(tmp_path.iterdir()) == []


# --- explain ----------------------------------------------------------------------------


def test_explain_shows_every_rule(safety_dir: Path, tmp_path: Path, run_cli: RunCli) -> None:
    snap = {**CALM, "volatility": 0.42, "frs": 0.39}
    (tmp_path / "facts.jsonl").write_text(json.dumps(snap) + "\n")
    proc = run_cli("explain", "--policies", "policies", "--facts", "facts.jsonl",
                   "--clock", "snapshot", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    lines = [ln.strip() for ln in proc.stdout.splitlines()]
    assert lines[0].startswith(f"SP500 {TS}: flatten by high-volatility-flatten")

    def verdict(rule: str) -> str:
        return next(ln for ln in lines if f" {rule} -> " in ln).split()[0]

    assert verdict("drift-spike-halt") == "no"
    assert verdict("high-volatility-flatten") == "MATCH"
    assert verdict("coherence-break-block") == "no"
    assert verdict("low-confidence-wait") == "MATCH"
    assert sum("no match" in ln for ln in lines) == 2
    for comparison in ("drift_score >= 0.8: observed 0.1 -> false",
                       "volatility >= 0.35: observed 0.42 -> true",
                       "coherence <= 0.5: observed 0.9 -> false",
                       "frs < 0.4: observed 0.39 -> true",
                       "meta_reliability < 0.4: observed 0.9 -> false"):
        assert comparison in lines
    assert not (tmp_path / ".fugger").exists()  # explain records nothing


def test_explain_json_and_unknown_facts(safety_dir: Path, tmp_path: Path,
                                        invoke_cli: RunCli) -> None:
    snap = {k: v for k, v in CALM.items() if k != "coherence"}
    proc = invoke_cli("explain", "--policies", "policies", "--facts", "-", "--format", "json",
                      "--clock", "snapshot", cwd=tmp_path, stdin=json.dumps(snap) + "\n")
    assert proc.returncode == 0, proc.stderr
    (report,) = [json.loads(ln) for ln in proc.stdout.splitlines()]
    validator("decision").validate(report["decision"])
    assert report["decision"]["deciding_rule"]["rule"] == "fact-missing:coherence"
    rules = {r["rule"]: r for r in report["rules"]}
    assert set(rules) == {"drift-spike-halt", "high-volatility-flatten",
                          "coherence-break-block", "low-confidence-wait"}
    assert not any(r["matched"] for r in rules.values())
    (coherence,) = rules["coherence-break-block"]["comparisons"]
    assert coherence == {"fact": "coherence", "op": "<=", "threshold": 0.5,
                         "observed": None, "result": None, "margin": None}
    (drift,) = rules["drift-spike-halt"]["comparisons"]
    assert drift == {"fact": "drift_score", "op": ">=", "threshold": 0.8,
                     "observed": 0.1, "result": False, "margin": pytest.approx(0.7)}
    # how far from tripping: below 0.4 trips low-confidence-wait, frs is 0.9
    assert [c["margin"] for c in rules["low-confidence-wait"]["comparisons"]] == [
        pytest.approx(0.5), pytest.approx(0.5)]
    assert "warning" not in proc.stderr


# --- audit commands on what eval recorded -------------------------------------------------


def test_audit_list_show_and_unknown_ids(safety_dir: Path, tmp_path: Path,
                                         invoke_cli: RunCli) -> None:
    (tmp_path / "facts.jsonl").write_text("".join(json.dumps(s) + "\n" for s in SNAPSHOTS))
    code, docs, err = eval_json(invoke_cli, tmp_path, "facts.jsonl")
    assert code == 0, err
    listed, shown, missing, why_missing = run_fugger_many(
        [("audit", "list", "--audit", "audit.db", "--format", "json", "--kind", "decision"),
         ("audit", "show", docs[1]["decision_id"], "--audit", "audit.db"),
         ("audit", "show", "nothing-here", "--audit", "audit.db"),
         ("audit", "why", "nothing-here", "--audit", "audit.db")],
        cwd=tmp_path)
    assert listed.returncode == 0, listed.stderr
    refs = [json.loads(ln)["ref"] for ln in listed.stdout.splitlines()]
    assert refs == [d["decision_id"] for d in reversed(docs)]  # newest first
    assert shown.returncode == 0, shown.stderr
    record = json.loads(shown.stdout)
    assert record["kind"] == "decision"
    assert record["body"]["decision"] == docs[1]
    for proc in (missing, why_missing):
        assert proc.returncode == 1
        assert "no record with id 'nothing-here'" in proc.stderr


# --- inputs built to break the readers --------------------------------------------------


@pytest.mark.parametrize("name", ["facts.jsonl", "facts.json"])
def test_eval_deeply_nested_json_is_invalid_input(safety_dir: Path, tmp_path: Path,
                                                  invoke_cli: RunCli, name: str) -> None:
    deep = json.dumps(CALM)[:-1] + ', "junk": ' + "[" * 5000 + "]" * 5000 + "}"
    lines = [json.dumps(CALM), deep]
    text = "\n".join(lines) + "\n" if name.endswith("jsonl") else "[" + ",\n".join(lines) + "]"
    (tmp_path / name).write_text(text)
    proc = invoke_cli("eval", "--policies", "policies", "--facts", name, "--audit", "audit.db",
                   cwd=tmp_path)
    assert proc.returncode == 1, proc.stderr
    assert proc.stderr.startswith(f"{name}:")
    db = tmp_path / "audit.db"
    assert not db.exists() or decisions_in(db) == []


def test_eval_integer_beyond_float_fails_closed(safety_dir: Path, tmp_path: Path,
                                                invoke_cli: RunCli) -> None:
    huge = "1" + "0" * 400
    line = json.dumps({**CALM, "drift_score": 0.0}).replace('"drift_score": 0.0',
                                                             f'"drift_score": {huge}')
    (tmp_path / "facts.jsonl").write_text(json.dumps(CALM) + "\n" + line + "\n")
    code, docs, err = eval_json(invoke_cli, tmp_path, "facts.jsonl")
    assert code == 0, err
    assert outcomes(docs) == [("allow", None), ("halt", "fact-invalid:drift_score")]
    assert len(decisions_in(tmp_path / "audit.db")) == 2
