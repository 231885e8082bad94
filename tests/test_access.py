"""Who may do what: the access policy, authentication as the OS user, one authorise, and every
refusal recorded with an alert."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from conftest import REPO_ROOT, RunCli, access_text

from engine.access.authorise import AccessDenied, Actor, authorise
from engine.access.identity import from_os_user, os_user
from engine.access.loading import load_access
from engine.access.model import ACTIONS
from engine.audit.store import AuditStore
from engine.policy.problems import PolicyError


@pytest.fixture
def access_file(tmp_path: Path) -> Path:
    path = tmp_path / "access.yaml"
    path.write_text(access_text(), encoding="utf-8")
    return path


def test_the_shipped_access_policy_defines_every_role_and_loads() -> None:
    access = load_access(str(REPO_ROOT / "policies" / "access.yaml"))
    assert {"trader", "approver", "risk", "admin"} <= set(access.roles)
    assert set().union(*access.roles.values()) == set(ACTIONS)


def test_each_role_may_take_only_its_own_actions(access_file: Path) -> None:
    access = load_access(str(access_file))
    rights = {"tim": {"trade"}, "ann": {"approve", "reject"},
              "rita": {"resume", "kill", "reenable"}}
    for name, allowed in rights.items():
        actor = Actor(name, "person", "token t")
        for action in ACTIONS:
            if action in allowed:
                authorise(access, actor, action)
            else:
                with pytest.raises(AccessDenied, match=f"{name} may not {action}: needs role"):
                    authorise(access, actor, action)
    with pytest.raises(AccessDenied, match="not a person"):
        authorise(access, Actor("mallory", "person", "token t"), "approve")
    # A service account of the same name as a person is not that person.
    with pytest.raises(AccessDenied, match="not a service"):
        authorise(access, Actor("ann", "service", "token t"), "approve")


def test_the_os_user_is_the_identity_and_by_is_only_a_check(access_file: Path) -> None:
    access = load_access(str(access_file))
    me = from_os_user(access, os_user(), "approve")
    assert (me.name, me.via) == ("me", f"os-user {os_user()}")
    assert from_os_user(access, os_user(), "approve", "me") == me
    with pytest.raises(AccessDenied, match="authenticated as me"):
        from_os_user(access, os_user(), "approve", "ann")
    with pytest.raises(AccessDenied, match="OS user 'nobody-here' is not mapped"):
        from_os_user(access, "nobody-here", "approve")


def test_an_access_policy_with_mistakes_is_refused_at_its_positions(tmp_path: Path) -> None:
    path = tmp_path / "access.yaml"
    path.write_text(access_text(people={"fuggerbot": ("approver",), "ann": ("auditor",)}),
                    encoding="utf-8")
    with pytest.raises(PolicyError) as info:
        load_access(str(path))
    found = [(p.pos.line, p.pos.col, p.message) for p in info.value.problems]
    assert [(line, col) for line, col, _ in found] == [(12, 14), (13, 27)]
    assert "'fuggerbot' is a reserved system name" in found[0][2]
    assert "unknown role 'auditor'" in found[1][2]


def _refusals(db: Path) -> list[dict[str, object]]:
    with AuditStore(db) as store:
        return [r.body for r in store.iter_records("access") if not r.body["allowed"]]


def _alerts(db: Path) -> list[dict[str, object]]:
    with AuditStore(db) as store:
        return [r.body for r in store.iter_records("alert") if r.body["kind"] == "access"]


def test_every_role_is_refused_outside_its_rights_through_the_cli(
        tmp_path: Path, run_cli: RunCli) -> None:
    """The OS user is a trader only: approving, rejecting, resuming, opening an account and
    starting a run are each refused, recorded with who and why, and alerted."""
    db = tmp_path / "audit.db"
    AuditStore(db).close()
    trader = tmp_path / "trader.yaml"
    trader.write_text(access_text(me_roles=("trader",)), encoding="utf-8")
    env = {"FUGGER_ACCESS": str(trader)}
    attempts = {
        "approve": ["approvals", "approve", "o-1", "--reason", "fine"],
        "reject": ["approvals", "reject", "o-1", "--reason", "no"],
        "resume": ["resume", "--reason", "calm again"],
        "init_account": ["paper", "init", "--cash", "1000", "--broker",
                         str(tmp_path / "paper.db")],
        "activate": ["run", "--facts", str(REPO_ROOT / "examples" / "history.jsonl")],
    }
    for action, args in attempts.items():
        proc = run_cli(*args, "--audit", str(db), env=env)
        assert proc.returncode == 1, (action, proc.stdout, proc.stderr)
        assert f"refused: me may not {action}: needs role" in proc.stderr
    assert not (tmp_path / "paper.db").exists()
    refused = _refusals(db)
    assert [(r["action"], r["by"], r["os_user"]) for r in refused] == [
        (a, "me", os_user()) for a in attempts]
    assert all("needs role" in str(r["reason"]) for r in refused)
    assert [(a["context"]["action"], a["severity"]) for a in _alerts(db)] == [  # type: ignore[index]
        (a, "critical") for a in attempts]


def test_a_user_the_policy_does_not_name_and_a_false_by_are_refused_and_recorded(
        tmp_path: Path, run_cli: RunCli, access_file: Path) -> None:
    db = tmp_path / "audit.db"
    AuditStore(db).close()
    stranger = tmp_path / "stranger.yaml"
    stranger.write_text(access_text().replace(f"os_user: {os_user()}", "os_user: someone-else"),
                        encoding="utf-8")
    unknown = run_cli("resume", "--reason", "x", "--audit", str(db),
                      env={"FUGGER_ACCESS": str(stranger)})
    assert unknown.returncode == 1
    assert f"OS user '{os_user()}' is not mapped to a person" in unknown.stderr
    # Variables anyone can set do not change who is acting.
    posing = run_cli("approvals", "approve", "o-1", "--by", "ann", "--reason", "x",
                     "--audit", str(db),
                     env={"FUGGER_ACCESS": str(access_file), "USER": "ann", "LOGNAME": "ann"})
    assert posing.returncode == 1
    assert "--by ann is not who is acting: authenticated as me" in posing.stderr
    refused = _refusals(db)
    assert [(r["action"], r["by"]) for r in refused] == [("resume", f"os-user:{os_user()}"),
                                                          ("approve", "ann")]
    assert len(_alerts(db)) == 2


def test_stepping_under_a_new_policy_set_needs_admin(tmp_path: Path, run_cli: RunCli) -> None:
    home = tmp_path / "home"
    shutil.copytree(REPO_ROOT / "policies", home / "policies")
    (home / "facts.jsonl").write_text(json.dumps({
        "ts": "2030-01-02T15:00:00Z", "symbol": "AAA", "price": 10.0, "drift_score": 0.1,
        "volatility": 0.1, "coherence": 0.9, "frs": 0.8, "meta_reliability": 0.8,
        "expected_return": 0.01}) + "\n", encoding="utf-8")
    trader = tmp_path / "trader.yaml"
    trader.write_text(access_text(me_roles=("trader",)), encoding="utf-8")
    assert run_cli("paper", "init", "--cash", "1000", cwd=home).returncode == 0
    refused = run_cli("step", "-f", "facts.jsonl", cwd=home, env={"FUGGER_ACCESS": str(trader)})
    assert refused.returncode == 1 and "me may not activate" in refused.stderr
    admin = run_cli("step", "-f", "facts.jsonl", cwd=home)
    assert admin.returncode == 0, admin.stderr
    again = run_cli("step", "-f", "facts.jsonl", cwd=home, env={"FUGGER_ACCESS": str(trader)})
    assert again.returncode == 0, again.stderr  # the set in force: trading needs no admin
    with AuditStore(home / ".fugger" / "audit.db") as store:
        live = store.active("live")
        assert live is not None and live.body["activated_by"] == "me"
        assert [r.body["action"] for r in store.iter_records("access")
                if not r.body["allowed"]] == ["activate"]


def test_access_init_writes_a_local_policy_for_the_os_user(tmp_path: Path,
                                                           run_cli: RunCli) -> None:
    made = run_cli("access", "init", "--out", str(tmp_path / "local.yaml"))
    assert made.returncode == 0, made.stderr
    access = load_access(str(tmp_path / "local.yaml"))
    person = access.person_for_os_user(os_user())
    assert person is not None
    assert access.actions_of(person) == frozenset(ACTIONS)
    kept = run_cli("access", "init", "--out", str(tmp_path / "local.yaml"))
    assert kept.returncode == 0 and "kept as it is" in kept.stdout
