"""Editors complete fact names and actions from the policy schema, whose fact names come
from the fact catalogue; every shipped policy names the schema for the YAML language server."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

from engine.catalogue import CATALOGUE
from engine.schema_sync import synced
from tests.conftest import REPO_ROOT, RunCli

SCHEMA = REPO_ROOT / "schemas" / "policy.schema.json"
HEADER = "# yaml-language-server: $schema=../schemas/policy.schema.json"


def _schema() -> dict[str, object]:
    doc: dict[str, object] = json.loads(SCHEMA.read_text(encoding="utf-8"))
    return doc


def test_the_schema_fact_enum_is_the_catalogue() -> None:
    defs = _schema()["$defs"]
    assert isinstance(defs, dict)
    fact = defs["leaf"]["properties"]["fact"]
    assert fact["anyOf"][0]["enum"] == list(CATALOGUE)
    # Written by engine.schema_sync: running it again changes nothing.
    text = SCHEMA.read_text(encoding="utf-8")
    assert synced(text) == text


def _kind_actions(node: object) -> Iterator[str]:
    """Every action some kind of policy takes: the enums and consts under an `action` key."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "action" and isinstance(value, dict):
                yield from value.get("enum", [])
                if "const" in value:
                    yield value["const"]
            yield from _kind_actions(value)
    elif isinstance(node, list):
        for item in node:
            yield from _kind_actions(item)


def test_the_schema_action_enum_holds_every_action_a_policy_kind_takes() -> None:
    schema = _schema()
    defs = schema["$defs"]
    assert isinstance(defs, dict)
    listed = defs["rule"]["properties"]["action"]["anyOf"][0]["enum"]
    per_kind = set(_kind_actions(schema)) | set(defs["safetyAction"]["enum"])
    assert set(listed) == per_kind
    assert {"halt", "rebalance", "require_approval"} <= per_kind


def test_every_shipped_policy_names_its_schema_for_editors() -> None:
    files = sorted((REPO_ROOT / "policies").glob("*.yaml"))
    assert files
    for f in files:
        first = f.read_text(encoding="utf-8").splitlines()[0]
        assert first == HEADER, f
        assert (f.parent / "../schemas/policy.schema.json").resolve() == SCHEMA.resolve()


def test_init_ships_the_schema_beside_the_policies(tmp_path: Path,
                                                   invoke_cli: RunCli) -> None:
    assert invoke_cli("init", str(tmp_path / "t")).returncode == 0
    assert (tmp_path / "t" / "schemas" / "policy.schema.json").is_file()
    text = (tmp_path / "t" / "policies" / "safety.yaml").read_text(encoding="utf-8")
    assert text.startswith(HEADER)
