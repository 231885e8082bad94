"""Problems found in a policy, each with the position a person has to look at."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True, order=True)
class Position:
    """A place in a source file; line and column are 1-based, as editors count."""

    file: str
    line: int
    col: int

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.col}"


@dataclass(frozen=True, order=True)
class Problem:
    pos: Position
    message: str

    def __str__(self) -> str:
        return f"{self.pos}: {self.message}"


class PolicyError(Exception):
    """A policy set that must not be applied; carries every problem found."""

    def __init__(self, problems: Sequence[Problem]) -> None:
        self.problems: tuple[Problem, ...] = tuple(sorted(problems))
        super().__init__("\n".join(str(p) for p in self.problems))
