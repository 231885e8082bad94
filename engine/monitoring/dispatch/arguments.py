"""The dispatcher's numeric arguments: a bad one is refused when the dispatcher is built, and a
bad timeout given later never turns a bounded wait into an unbounded one."""

from __future__ import annotations

import math


def check_int(name: str, value: object, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")


def check_seconds(name: str, value: object, *, allow_zero: bool) -> None:
    ok = (
        not isinstance(value, bool)
        and isinstance(value, int | float)
        and math.isfinite(value)
        and (value >= 0 if allow_zero else value > 0)
    )
    if not ok:
        bound = ">= 0" if allow_zero else "> 0"
        raise ValueError(f"{name} must be a finite number of seconds {bound}, got {value!r}")


def timeout_or_zero(timeout_s: object) -> float:
    # A bad timeout must not turn a bounded wait into an unbounded one.
    if isinstance(timeout_s, bool) or not isinstance(timeout_s, int | float):
        return 0.0
    if math.isnan(timeout_s) or timeout_s < 0:
        return 0.0
    return min(float(timeout_s), 86_400.0)
