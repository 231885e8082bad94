"""Shared fixtures: where the repository is, running the `fugger` command (as a real process or
in-process), writing policies."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Protocol

import pytest

# `fugger` sizes its output by COLUMNS when it is set, and a test worker may have it from its
# terminal: output is as wide as a test asks (env=...), else the piped default.
os.environ.pop("COLUMNS", None)
os.environ.pop("LINES", None)

from typer.testing import CliRunner

from cli.main import app
from engine.access.identity import os_user
from engine.access.loading import load_access
from engine.access.tokens import create
from engine.audit.store import AuditStore
from engine.evaluator import SafetyEvaluator
from engine.policy.loader import load_policy_set
from engine.policy.model import PolicySet
from engine.timeutil import utc_now

REPO_ROOT = Path(__file__).resolve().parent.parent
SAFETY_YAML = REPO_ROOT / "policies" / "safety.yaml"
#: A hang guard for one command, not a speed requirement.
CLI_HANG_GUARD_S = 120.0


#: A safety and an approval policy frozen as the tooling tests need them, apart from the
#: shipped policies/ so that editing those never changes what these tests check.
FROZEN_SAFETY = """\
apiVersion: fuggerbot/v1
kind: SafetyPolicy
metadata:
  name: core-safety
  version: 2.0.0
spec:
  fail_closed: halt
  max_fact_age: 1d
  rules:
    - id: drift-spike-halt
      when: {fact: drift_score, op: ">=", value: 0.8}
      action: halt
    - id: high-volatility-flatten
      when: {fact: volatility, op: ">=", value: 0.35}
      action: flatten
    - id: coherence-break-block
      when: {fact: coherence, op: "<=", value: 0.5}
      action: block_new
    - id: low-confidence-wait
      when:
        any:
          - {fact: frs, op: "<", value: 0.4}
          - {fact: meta_reliability, op: "<", value: 0.4}
      action: wait_confirmation
"""

FROZEN_APPROVAL = """\
apiVersion: fuggerbot/v1
kind: ApprovalPolicy
metadata: {name: human-approval, version: 1.0.0}
spec:
  mode: semi_autonomous
  rules:
    - id: large-order-approval
      when: {fact: order_notional, op: ">", value: 250000}
      action: require_approval
"""


#: The people of the tests' access policy besides the OS user's own person (`me`, who holds
#: every role): they act only through API tokens. ann and bob approve, rita resumes.
ACCESS_PEOPLE: dict[str, tuple[str, ...]] = {
    "ann": ("approver",), "bob": ("approver",), "rita": ("risk",), "tim": ("trader",),
    **{f"approver-{i}": ("approver",) for i in range(1, 9)},
}


def access_text(me_roles: Sequence[str] = ("trader", "approver", "risk", "admin"),
                people: Mapping[str, Sequence[str]] | None = None) -> str:
    """An access policy naming the OS user running the tests as `me` with `me_roles`."""
    lines = ["apiVersion: fuggerbot/v1", "kind: AccessPolicy",
             "metadata: {name: test-access, version: 1.0.0}", "spec:", "  roles:",
             "    trader: [trade]", "    approver: [approve, reject]",
             "    risk: [resume, kill, reenable]",
             "    admin: [activate, rollback, init_account, manage_tokens]", "  people:",
             f"    - {{name: me, os_user: {os_user()}, roles: [{', '.join(me_roles)}]}}"]
    for name, roles in (ACCESS_PEOPLE if people is None else people).items():
        lines.append(f"    - {{name: {name}, roles: [{', '.join(roles)}]}}")
    return "\n".join(lines) + "\n"


@pytest.fixture(scope="session", autouse=True)
def access_policy(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Every `fugger` the tests run reads this access policy (FUGGER_ACCESS), unless a test
    names another with --access."""
    path = tmp_path_factory.mktemp("access") / "access.yaml"
    path.write_text(access_text(), encoding="utf-8")
    patch = pytest.MonkeyPatch()
    patch.setenv("FUGGER_ACCESS", str(path))
    yield path
    patch.undo()


def token_for(name: str, db: Path, access: Path | None = None) -> str:
    """An API token for person `name` of the tests' access policy, kept in the store `db`:
    how a test acts as another person."""
    policy = load_access(str(access or os.environ["FUGGER_ACCESS"]))
    with AuditStore(db) as store:
        token, _ = create(store, policy, name, by="me", ttl=timedelta(days=1), now=utc_now())
    return token


def write_frozen_policies(dest: Path) -> Path:
    """A new directory `dest` holding FROZEN_SAFETY and FROZEN_APPROVAL."""
    dest.mkdir()
    (dest / "safety.yaml").write_text(FROZEN_SAFETY, encoding="utf-8")
    (dest / "approval.yaml").write_text(FROZEN_APPROVAL, encoding="utf-8")
    return dest


@pytest.fixture
def db(tmp_path: Path) -> Path:
    """Where a test's audit store lives."""
    return tmp_path / "audit.db"


@pytest.fixture
def store(db: Path) -> Iterator[AuditStore]:
    """A real audit store in `db`, closed after the test."""
    with AuditStore(db) as s:
        yield s


class RunCli(Protocol):
    def __call__(self, *args: str, cwd: Path | None = None, stdin: str | None = None,
                 env: Mapping[str, str] | None = None) -> subprocess.CompletedProcess[str]: ...


class WritePolicy(Protocol):
    def __call__(self, text: str, name: str = ..., directory: str = ...) -> Path: ...


def safety_rule_line(rule_id: str) -> int:
    """The line of `- id: RULE_ID` in the default safety policy."""
    lines = SAFETY_YAML.read_text(encoding="utf-8").splitlines()
    for n, line in enumerate(lines, start=1):
        if line.strip() == f"- id: {rule_id}":
            return n
    raise LookupError(f"{rule_id} is not a rule of {SAFETY_YAML}")


def run_fugger(args: Sequence[str], *, cwd: Path | None = None, stdin: str | None = None,
               env: Mapping[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run `fugger ARGS` as a real process; a traceback on stderr fails the test at once,
    because nothing a user can do may end in one. `env` adds to the inherited environment."""
    proc = subprocess.run(
        [sys.executable, "-m", "cli.main", *args],
        cwd=cwd if cwd is not None else REPO_ROOT,
        input=stdin if stdin is not None else "",
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        timeout=CLI_HANG_GUARD_S,
        check=False,
    )
    assert "Traceback" not in proc.stderr, proc.stderr
    assert "internal error" not in proc.stderr, proc.stderr
    return proc


@dataclass(frozen=True)
class Finished:
    returncode: int
    stdout: str
    stderr: str
    #: How many steps were reached (all of them unless the command ended first).
    steps_taken: int


def run_fugger_driven(args: Sequence[str],
                      steps: Sequence[tuple[str, Callable[[], None]]], *,
                      env: Mapping[str, str] | None = None) -> Finished:
    """Run `fugger ARGS` and, while it runs, take each step in turn: wait for a stderr line
    that starts with the step's prefix, then call its action (e.g. change a policy file). The
    command's own output orders the steps, so no step depends on timing."""
    proc = subprocess.Popen([sys.executable, "-m", "cli.main", *args], cwd=REPO_ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, **(env or {})})
    assert proc.stderr is not None
    # A hang guard, not a speed requirement: reading stderr below has no timeout of its own.
    guard = threading.Timer(CLI_HANG_GUARD_S, proc.kill)
    guard.start()
    seen: list[str] = []
    taken = 0
    try:
        for prefix, action in steps:
            for line in proc.stderr:
                seen.append(line)
                if line.startswith(prefix):
                    action()
                    taken += 1
                    break
        out, rest = proc.communicate()
    finally:
        guard.cancel()
    stderr = "".join(seen) + rest
    assert "Traceback" not in stderr, stderr
    assert "internal error" not in stderr, stderr
    return Finished(proc.returncode, out, stderr, taken)


def replace_file(path: Path, text: str) -> None:
    """Replace `path` in one step, so no poll reads half of it."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def invoke_fugger(args: Sequence[str], *, cwd: Path | None = None, stdin: str | None = None,
                  env: Mapping[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run `fugger ARGS` in this process (typer's CliRunner on the same app as the command),
    with the working directory, standard input and environment a real process would have.
    The answer reads like `run_fugger`'s. An exception that escapes a command fails the test
    with its traceback, as would a traceback or an internal error on stderr: `fugger` would
    have ended in one. Not thread-safe (it changes the working directory): one at a time."""
    with contextlib.chdir(cwd if cwd is not None else REPO_ROOT):
        result = CliRunner().invoke(app, list(args), input=stdin if stdin is not None else "",
                                    env=dict(env or {}), catch_exceptions=False)
    proc = subprocess.CompletedProcess(["fugger", *args], result.exit_code, result.stdout,
                                       result.stderr)
    assert "Traceback" not in proc.stderr, proc.stderr
    assert "internal error" not in proc.stderr, proc.stderr
    return proc


def run_fugger_many(commands: Sequence[Sequence[str]], *, cwd: Path | None = None,
                    envs: Sequence[Mapping[str, str] | None] | None = None,
                    workers: int = 4) -> list[subprocess.CompletedProcess[str]]:
    """Run several independent `fugger` commands at once (each as in `run_fugger`, the i-th
    with `envs[i]` added), in order."""
    envs = list(envs) if envs is not None else [None] * len(commands)
    with ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(lambda job: run_fugger(job[0], cwd=cwd, env=job[1]),
                             zip(commands, envs, strict=True)))


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO_ROOT


@pytest.fixture
def run_cli() -> RunCli:
    def run(*args: str, cwd: Path | None = None, stdin: str | None = None,
            env: Mapping[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        return run_fugger(args, cwd=cwd, stdin=stdin, env=env)

    return run


@pytest.fixture
def invoke_cli() -> RunCli:
    """`fugger` in-process (see `invoke_fugger`): the default for checking what a command
    prints and records; `run_cli` for the few end-to-end runs of each command."""
    def run(*args: str, cwd: Path | None = None, stdin: str | None = None,
            env: Mapping[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        return invoke_fugger(args, cwd=cwd, stdin=stdin, env=env)

    return run


@pytest.fixture
def write_policy(tmp_path: Path) -> WritePolicy:
    """Write policy text to `tmp_path/DIR/NAME` (DIR defaults to `policies`) and return the
    file's path."""

    def write(text: str, name: str = "policy.yaml", directory: str = "policies") -> Path:
        folder = tmp_path / directory
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / name
        path.write_text(text, encoding="utf-8")
        return path

    return write


@pytest.fixture
def safety_dir(tmp_path: Path) -> Path:
    """`tmp_path/policies` holding a copy of the default safety policy and nothing else."""
    folder = tmp_path / "policies"
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copy(SAFETY_YAML, folder / "safety.yaml")
    return folder


@pytest.fixture(scope="session")
def safety_set() -> PolicySet:
    return load_policy_set([str(SAFETY_YAML)])


@pytest.fixture(scope="session")
def safety_evaluator(safety_set: PolicySet) -> Iterator[SafetyEvaluator]:
    evaluator = SafetyEvaluator(safety_set)
    yield evaluator
    evaluator.close()
