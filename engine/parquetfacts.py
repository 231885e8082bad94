"""Facts from a Parquet file (a large history written by a data pipeline), read one batch of
rows at a time through pyarrow, so memory stays flat however many rows it holds.

A row is a snapshot; a column is a fact. A null cell is a missing fact, never a zero, as an
empty CSV cell is. A `ts` column of Parquet timestamps is written as the UTC text every other
form uses. Positions are FILE:row N (the first row is row 1), since a Parquet file has no
lines.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import IO, Any

from engine.factformats import Bad, Item, SourcedSnapshot, header_problem, too_large
from engine.timeutil import format_utc

#: The first bytes of every Parquet file.
MAGIC = b"PAR1"
#: Rows decoded into Python at once: at most BATCH_ROWS, and about BATCH_BYTES of data, so
#: that pyarrow's per-batch cost is small and a wide history never holds much of itself.
BATCH_ROWS = 4096
BATCH_BYTES = 1 << 20
_BUFFER = 64 * 1024
PROBE_ROWS = 16


def read_parquet(name: str, f: IO[bytes], cap: int) -> Iterator[Item]:
    # pyarrow takes a second to import: only a Parquet input pays for it.
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        # Column chunks read a buffer at a time: memory follows the batch, not the row group.
        parquet = pq.ParquetFile(f, buffer_size=_BUFFER, pre_buffer=False)
    except (pa.ArrowException, OSError) as e:
        yield Bad(name, f"not a readable Parquet file: {_first_line(e)}")
        return
    header = list(parquet.schema_arrow.names)
    problem = header_problem(header, "a Parquet file")
    if problem:
        yield Bad(f"{name}:row 0", problem)
        return
    row = 0
    try:
        for batch in parquet.iter_batches(batch_size=_batch_rows(parquet)):
            for values in zip(*(c.to_pylist() for c in batch.columns), strict=True):
                row += 1
                yield _snapshot(f"{name}:row {row}", header, values, cap)
    except (pa.ArrowException, OSError) as e:
        yield Bad(f"{name}:row {row + 1}", f"cannot read Parquet data: {_first_line(e)}")


def _batch_rows(parquet: Any) -> int:
    """Rows per batch, from the decoded size of the first few rows (what the file's metadata
    says is the encoded size: a column of one repeated long text is tiny there)."""
    probe = next(parquet.iter_batches(batch_size=PROBE_ROWS), None)
    if probe is None or probe.num_rows == 0:
        return BATCH_ROWS
    per_row = max(1, int(probe.nbytes) // int(probe.num_rows))
    return max(1, min(BATCH_ROWS, BATCH_BYTES // per_row))


def _snapshot(where: str, header: list[str], values: tuple[Any, ...], cap: int) -> Item:
    snap: dict[str, Any] = {}
    size = 0
    for column, value in zip(header, values, strict=True):
        if value is None:
            continue  # a null cell is a missing fact
        if column == "ts" and isinstance(value, datetime):
            if value.tzinfo is None:
                return Bad(where, "ts is a Parquet timestamp without a time zone; write it "
                                  "in UTC (timestamp with tz='UTC') so the time is not a guess")
            value = format_utc(value.astimezone(UTC))
        size += _size(value)
        snap[column] = value
    if size > cap:
        return Bad(where, too_large(cap))
    return SourcedSnapshot(where, snap, size)


def _size(value: Any) -> int:
    """About the bytes `value` would take as JSON: what the snapshot cap is measured in."""
    if isinstance(value, str | bytes):
        return len(value) + 2
    if isinstance(value, list | tuple):
        return sum(_size(v) for v in value) + 2
    if isinstance(value, dict):
        return sum(_size(k) + _size(v) for k, v in value.items()) + 2
    if isinstance(value, float) and not math.isfinite(value):
        return 4
    return 8


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__
