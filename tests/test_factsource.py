"""The facts reader in-process: every form streams to the same snapshots a whole-file parse
gives, and refuses what it cannot read at its file and line."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from engine.facts import Duplicated
from engine.factsource import FactsError, FactsInput, read_snapshots

SNAP: dict[str, Any] = {"ts": "2025-03-04T15:30:00Z", "symbol": "SP500", "drift_score": 0.1}


def _write(tmp_path: Path, name: str, text: str) -> str:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return str(path)


def _errors(path: str, **kw: Any) -> list[str]:
    with pytest.raises(FactsError) as info:
        read_snapshots(path, **kw)
    return info.value.messages


@pytest.mark.parametrize("sep", [",\n  ", ","])
def test_a_long_json_array_streams_to_what_json_reads(tmp_path: Path, sep: str) -> None:
    # Elements of varied size and spacing cross the reader's 64 KiB window many times, and
    # plain numbers may end exactly at its edge.
    items: list[Any] = [{**SNAP, "n": i, "pad": "y" * (i % 97)} for i in range(3000)]
    items += [123456789, -0.5e-3, "x", None, True, [1, 2]]
    text = "[\n" + sep.join(json.dumps(x) for x in items) + "\n]\n"
    path = _write(tmp_path, "facts.json", text)
    got = read_snapshots(path)
    assert [s.data for s in got] == json.loads(text)
    assert got[5].where == f"{path}:[5]"


@pytest.mark.parametrize("after", [0, 5000])
def test_a_json_array_error_names_its_line(tmp_path: Path, after: int) -> None:
    good = [json.dumps(SNAP)] * 5000
    text = "[\n" + ",\n".join([*good, '{"ts": }', *good[:after]]) + "\n]"
    path = _write(tmp_path, "facts.json", text)
    (message,) = _errors(path)
    assert message == f"{path}:5002:8: invalid JSON: Expecting value"


def test_a_json_array_element_over_the_limit_is_refused(tmp_path: Path) -> None:
    text = json.dumps([SNAP, {**SNAP, "pad": "z" * 5000}, SNAP], indent=1)
    path = _write(tmp_path, "facts.json", text)
    (message,) = _errors(path, max_snapshot_bytes=4096)
    assert "snapshot larger than 4 KiB" in message
    assert len(read_snapshots(path, max_snapshot_bytes=8192)) == 3


@pytest.mark.parametrize("text", ["[1, 2", "[1 2]", "[1,]", "{} {}", "[] x"])
def test_a_broken_json_document_is_refused(tmp_path: Path, text: str) -> None:
    assert _errors(_write(tmp_path, "facts.json", text))


def test_jsonl_problems_are_all_listed_with_their_lines(tmp_path: Path) -> None:
    lines = [json.dumps(SNAP), "{oops", json.dumps(SNAP), json.dumps({**SNAP, "p": "x" * 300}),
             '{"ts": "\\udc00"}', ""]
    path = _write(tmp_path, "facts.jsonl", "\n".join(lines))
    messages = _errors(path, max_snapshot_bytes=200)
    assert [m.split(": ")[0] for m in messages] == [f"{path}:2:2", f"{path}:4", f"{path}:5"]


def test_jsonl_line_that_is_not_utf8_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "facts.jsonl"
    path.write_bytes(json.dumps(SNAP).encode() + b"\n{\"symbol\": \"\xff\"}\n")
    (message,) = _errors(str(path))
    assert message == f"{path}:2:13: not valid UTF-8 text"


def test_repeated_keys_keep_every_value(tmp_path: Path) -> None:
    path = _write(tmp_path, "facts.jsonl",
                  '{"a": 1, "a": 2, "a": 3, "b": {"value": 1, "value": [4]}}\n')
    (snap,) = read_snapshots(path)
    assert snap.data == {"a": [1, 2, 3], "b": {"value": [1, [4]]}}
    assert isinstance(snap.data["a"], Duplicated)
    assert isinstance(snap.data["b"]["value"], Duplicated)


def test_csv_record_spanning_lines_counts_against_the_limit(tmp_path: Path) -> None:
    quoted = '"' + "\n".join(["w" * 100] * 50) + '"'
    path = _write(tmp_path, "facts.csv", f"ts,symbol,note\n{SNAP['ts']},SP500,{quoted}\n")
    (message,) = _errors(path, max_snapshot_bytes=4096)
    assert "snapshot larger than 4 KiB" in message
    (snap,) = read_snapshots(path)
    assert snap.data["note"].count("\n") == 49


def test_the_input_is_read_once_checked(tmp_path: Path) -> None:
    with FactsInput(_write(tmp_path, "facts.jsonl", json.dumps(SNAP) + "\n")) as source:
        with pytest.raises(RuntimeError):
            list(source)
        assert source.check() == 1
        assert [s.data for s in source] == [SNAP]


def test_a_file_cut_short_or_rewritten_after_the_check_stops_the_reading(tmp_path: Path) -> None:
    lines = [json.dumps({**SNAP, "n": i}) + "\n" for i in range(3)]
    path = _write(tmp_path, "facts.jsonl", "".join(lines))
    with FactsInput(path) as source:
        assert source.check() == 3
        Path(path).write_text("".join(lines[:2]), encoding="utf-8")  # truncated in place
        with pytest.raises(FactsError, match="changed while it was read"):
            list(source)
    path = _write(tmp_path, "same.jsonl", "".join(lines))
    with FactsInput(path) as source:
        assert source.check() == 3
        with open(path, "r+", encoding="utf-8") as f:  # same length, another value
            f.write(lines[0].replace('"n": 0', '"n": 7'))
        os.utime(path, ns=(1, 1))
        with pytest.raises(FactsError, match="changed while it was read"):
            list(source)
