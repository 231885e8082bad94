"""fugger init: a working directory in which every command of the README tour runs."""

from __future__ import annotations

import json
import shutil
from datetime import timedelta
from pathlib import Path
from typing import Annotated

import typer

from cli.access_cmds import local_access_text
from cli.common import fail, out
from engine.access.identity import os_user
from engine.shipped import shipped
from engine.timeutil import format_utc, utc_now

#: One cycle of facts for three symbols: all clear, volatile enough to flatten, drifting
#: enough to halt. `snap.jsonl` shows the rails decide; `latest.jsonl` is a calm cycle the
#: book can trade on.
_SNAP = (
    {"symbol": "SP500", "drift_score": 0.2, "volatility": 0.18, "coherence": 0.82,
     "frs": 0.66, "meta_reliability": 0.9, "expected_return": 0.04, "price": 5000.0},
    {"symbol": "NASDAQ", "drift_score": 0.1, "volatility": 0.41, "coherence": 0.82,
     "frs": 0.61, "meta_reliability": 0.78, "expected_return": 0.05, "price": 16000.0},
    {"symbol": "WTI", "drift_score": 0.85, "volatility": 0.5, "coherence": 0.82,
     "frs": 0.37, "meta_reliability": 0.62, "expected_return": 0.07, "price": 75.0},
)
#: The same symbols calmed: what each changes from _SNAP.
_CALM: dict[str, dict[str, object]] = {
    "NASDAQ": {"volatility": 0.24, "frs": 0.63, "meta_reliability": 0.8},
    "WTI": {"drift_score": 0.3, "volatility": 0.3, "frs": 0.62, "meta_reliability": 0.7,
            "expected_return": 0.03},
}
_LATEST = tuple({**s, **_CALM.get(str(s["symbol"]), {})} for s in _SNAP)
_BOOK = """\
# The book rotate plans for: cash and shares held, as of when fugger init wrote it.
as_of: "{as_of}"
cash: 1000000
positions: {{}}
last_rebalance: null
"""


def init(
    directory: Annotated[Path, typer.Argument(metavar="DIR", help="Where to write it; made "
                                                                  "if missing.")],
    force: Annotated[bool, typer.Option("--force", help="Write over the files of an earlier "
                                                        "fugger init in DIR.")] = False,
) -> None:
    """Write a directory in which every command of the README tour runs.

    A policy set with its test cases (policies/, and old/ to diff against), an access policy
    naming you with every role (policies/access.yaml), sample snapshots dated now
    (snap.jsonl, latest.jsonl), a book (book.yaml), the sample history (examples/) and the
    JSON schemas editors read (schemas/)."""
    source = shipped("policies")
    if source is None:
        fail("the shipped policies are missing from this installation")
    targets = [directory / n for n in ("policies", "old", "snap.jsonl", "latest.jsonl",
                                       "book.yaml", "examples", "schemas")]
    present = [t for t in targets if t.exists()]
    if present and not force:
        fail(f"{directory} already holds {', '.join(str(p) for p in present)}; pass --force "
             "to write over them")
    access = local_access_text(os_user())
    directory.mkdir(parents=True, exist_ok=True)
    for name in ("policies", "old"):
        dest = directory / name
        if dest.exists():
            shutil.rmtree(dest)
        shutil.copytree(source, dest, ignore=shutil.ignore_patterns("__pycache__"))
        (dest / "access.yaml").write_text(access, encoding="utf-8")
    shutil.rmtree(directory / "old" / "tests", ignore_errors=True)
    schemas = shipped("schemas")
    if schemas is not None:  # where the policies' yaml-language-server line points
        shutil.copytree(schemas, directory / "schemas", dirs_exist_ok=True)
    now = utc_now().replace(microsecond=0)
    ts = format_utc(now)
    _write_snapshots(directory / "snap.jsonl", _SNAP, ts)
    _write_snapshots(directory / "latest.jsonl", _LATEST, ts)
    (directory / "book.yaml").write_text(
        _BOOK.format(as_of=format_utc(now - timedelta(days=1))), encoding="utf-8")
    examples = directory / "examples"
    examples.mkdir(exist_ok=True)
    for name in ("history.jsonl", "portfolio.yaml"):
        found = shipped(f"examples/{name}")
        if found is not None:
            shutil.copyfile(found, examples / name)
    out.print(f"{directory}: policies/ (with tests/ and access.yaml), old/, snap.jsonl and "
              f"latest.jsonl (dated {ts}), book.yaml, examples/; cd there and follow the "
              "README tour", markup=False)


def _write_snapshots(path: Path, rows: tuple[dict[str, object], ...], ts: str) -> None:
    path.write_text("".join(json.dumps({"ts": ts, **r}) + "\n" for r in rows),
                    encoding="utf-8")
