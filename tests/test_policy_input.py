"""Policy text that would be read ambiguously is refused through the real `fugger validate`:
a value ending in a newline beside the one without, a YAML merge key beside the key it
merges."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from conftest import SAFETY_YAML, RunCli

from engine.schemas import load_schema

#: The shipped safety policy's version line, whatever version it is at.
_VERSION = next(line.strip() for line in SAFETY_YAML.read_text(encoding="utf-8").splitlines()
                if line.strip().startswith("version:"))
_DRIFT_WHEN = 'when: {fact: drift_score, op: ">=", value: 0.8}'


def _policy_dir(tmp_path: Path, old: str, new: str) -> Path:
    text = SAFETY_YAML.read_text(encoding="utf-8")
    assert old in text
    folder = tmp_path / "policies"
    folder.mkdir()
    (folder / "safety.yaml").write_text(text.replace(old, new, 1), encoding="utf-8")
    return folder


@pytest.mark.parametrize(("old", "new", "problem"), [
    ("- id: drift-spike-halt", '- id: "drift-spike-halt\\n"', "spec.rules[0].id"),
    (_VERSION, f'version: "{_VERSION.split()[1]}\\n"', "metadata.version"),
    ("max_fact_age: 1d", 'max_fact_age: "1d\\n"', "spec.max_fact_age"),
])
def test_schema_patterns_refuse_a_final_newline(tmp_path: Path, run_cli: RunCli, old: str,
                                               new: str, problem: str) -> None:
    folder = _policy_dir(tmp_path, old, new)
    proc = run_cli("validate", str(folder))
    assert proc.returncode == 1, proc.stdout
    assert f"{folder / 'safety.yaml'}:" in proc.stderr
    assert problem in proc.stderr


SAMPLES = ("drift-spike-halt", "2.0.0", "1d", "01ARZ3NDEKTSV4RRFFQ69G5FAV", "ab" * 32,
           "2024-01-02T21:00:00Z",
           "$argon2id$v=19$m=65536,t=3,p=4$c2FsdHNhbHRzYWx0$aGFzaGhhc2hoYXNoaGFzaA")


def _patterns(node: object) -> list[str]:
    if isinstance(node, dict):
        found = [node["pattern"]] if isinstance(node.get("pattern"), str) else []
        return found + [p for v in node.values() for p in _patterns(v)]
    if isinstance(node, list):
        return [p for v in node for p in _patterns(v)]
    return []


@pytest.mark.parametrize("schema", ["policy", "facts", "decision"])
def test_every_schema_pattern_is_anchored_to_the_end(schema: str) -> None:
    """jsonschema checks `pattern` with Python's re.search, where `$` also matches before a
    final newline."""
    patterns = _patterns(load_schema(schema))
    assert patterns
    for pattern in patterns:
        matched = [s for s in SAMPLES if re.search(pattern, s)]
        assert matched, f"no sample string matches {pattern}: add one"
        for s in matched:
            assert not re.search(pattern, s + "\n"), pattern


def test_yaml_merge_key_is_refused(tmp_path: Path, run_cli: RunCli) -> None:
    folder = _policy_dir(tmp_path, _DRIFT_WHEN,
                         'when:\n        <<: {fact: drift_score, op: ">=", value: 0.8}\n'
                         '        value: 1.0')
    # The merge key sits on the line after the one that held the rule's `when`.
    lines = SAFETY_YAML.read_text(encoding="utf-8").splitlines()
    merge_line = next(n for n, line in enumerate(lines, start=1) if _DRIFT_WHEN in line) + 1
    proc = run_cli("validate", str(folder))
    assert proc.returncode == 1, proc.stdout
    assert proc.stderr.startswith(
        f"{folder / 'safety.yaml'}:{merge_line}:9: YAML merge key '<<'")
