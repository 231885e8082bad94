"""Loading a policy set: every file of a directory checked, then checked together."""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Iterable, Sequence

from engine.policy.model import Policy, PolicySet
from engine.policy.problems import PolicyError, Position, Problem
from engine.policy.validate import check_document
from engine.policy.yamlsource import YamlDocument, parse_policy_text, read_policy_file

POLICY_SUFFIXES = (".yaml", ".yml")


def discover(paths: Iterable[str]) -> list[str]:
    """Policy files named by `paths`: files as given, directories by their *.yaml files
    (not recursive: subdirectories such as tests/ hold other documents)."""
    files: list[str] = []
    for p in paths:
        if os.path.isdir(p):
            files.extend(sorted(os.path.join(p, n) for n in os.listdir(p)
                                if n.endswith(POLICY_SUFFIXES)
                                and os.path.isfile(os.path.join(p, n))))
        else:
            files.append(p)
    return files


def load_policy_set(paths: Iterable[str]) -> PolicySet:
    """Load, validate and cross-check policies; raises PolicyError listing every problem."""
    paths = list(paths)
    files = discover(paths)
    if not files:
        where = ", ".join(paths) or "(nothing)"
        raise PolicyError([Problem(Position(where, 1, 1), "no policy files (*.yaml) found")])
    return _build_set([functools.partial(read_policy_file, f) for f in files])


def policy_set_from_texts(sources: Sequence[tuple[str, str]]) -> PolicySet:
    """Rebuild a policy set from recorded (path, text) pairs, e.g. from the audit store."""
    return _build_set([functools.partial(parse_policy_text, path, text)
                       for path, text in sources])


def _build_set(readers: Sequence[Callable[[], YamlDocument]]) -> PolicySet:
    """Check every document, then the set; every problem of every file is reported."""
    problems: list[Problem] = []
    policies: list[Policy] = []
    for read in readers:
        try:
            doc = read()
        except PolicyError as e:
            problems.extend(e.problems)
            continue
        policy, found = check_document(doc)
        problems.extend(found)
        if policy is not None:
            policies.append(policy)
    problems.extend(cross_check(policies))
    if problems:
        raise PolicyError(problems)
    return PolicySet(tuple(policies))


def cross_check(policies: Sequence[Policy]) -> list[Problem]:
    """What only the whole set can show: rule ids and policy names used twice, and alert
    settings declared by two safety policies (which one applies would be a guess)."""
    problems: list[Problem] = []
    first_rule: dict[str, Position] = {}
    first_name: dict[str, str] = {}
    alerts_in: str | None = None
    for p in policies:
        if p.kind == "SafetyPolicy" and "alerts" in p.spec:
            if alerts_in is not None:
                problems.append(Problem(Position(p.path, 1, 1),
                                        f"spec.alerts is also set in {alerts_in}: declare the "
                                        "alert settings in one safety policy"))
            else:
                alerts_in = p.path
        if p.name in first_name:
            problems.append(Problem(Position(p.path, 1, 1),
                                    f"policy name '{p.name}' is also used by {first_name[p.name]}"))
        else:
            first_name[p.name] = p.path
        for r in p.rules:
            if r.id in first_rule:
                problems.append(Problem(r.pos, f"duplicate rule id '{r.id}': already defined at "
                                               f"{first_rule[r.id]}"))
            else:
                first_rule[r.id] = r.pos
    return problems
