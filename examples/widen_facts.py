"""A wide history for scale measurements: every day of a facts file (the shipped history by
default) repeated for N symbols, each a copy of one of the file's own symbols under a new name
(SP500 becomes SP500_00, SP500_03, ...), so the facts of every symbol stay those of a real
market and the file stays in time order.

    python -m examples.widen_facts --symbols 50 --out /tmp/wide.jsonl
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
from collections.abc import Iterator
from pathlib import Path

DEFAULT_IN = Path(__file__).with_name("history.jsonl")


def widen(lines: Iterator[str], symbols: int) -> Iterator[str]:
    """The lines of the wide history, a day at a time (days are consecutive lines with one
    ts, as the shipped history is written)."""
    for _ts, day in itertools.groupby((json.loads(line) for line in lines if line.strip()),
                                      key=lambda s: s["ts"]):
        base = sorted(day, key=lambda s: s["symbol"])
        out = [dict(base[n % len(base)], symbol=f"{base[n % len(base)]['symbol']}_{n:02d}")
               for n in range(symbols)]
        for snap in sorted(out, key=lambda s: s["symbol"]):
            yield json.dumps(snap, sort_keys=True, separators=(",", ":"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--symbols", type=int, default=50)
    parser.add_argument("--facts", type=Path, default=DEFAULT_IN)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    if args.symbols < 1:
        parser.error("--symbols must be at least 1")
    with args.facts.open(encoding="utf-8") as src, args.out.open("w", encoding="utf-8") as dst:
        n = 0
        for line in widen(src, args.symbols):
            dst.write(line + "\n")
            n += 1
    print(f"{n} snapshots written to {args.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
