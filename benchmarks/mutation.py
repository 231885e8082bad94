"""The mutation score per module, from what `mutmut run` left in mutants/ (`make mutate`).

A mutant is a small change to the code (a flipped comparison, a dropped statement, a changed
constant); a test that fails on it kills it. A module's score is the share of its mutants
that were killed, leaving out the equivalent mutants listed below (changes no caller could
ever observe). Mutants whose tests ran out of time count as killed: the change made the code
hang. Mutants no test reaches, or that were not run, are listed apart. The figures go to
benchmarks/mutation.json; the survivors are printed for `mutmut show NAME`.
"""

from __future__ import annotations

import json
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

MUTANTS = Path("mutants")
OUT = Path("benchmarks/mutation.json")
#: What each exit code of a mutant's test run means (mutmut's own table, grouped).
KILLED_CODES = {1, 3, 37}
SURVIVED_CODES = {0}
NO_TEST_CODES = {5, 33}
TIMEOUT_CODES = {24, -24, 36, 152, 255}


def _same(reason: str, prefix: str, *numbers: int) -> dict[str, str]:
    """The mutants `prefix__mutmut_N` for each N, all equivalent for one reason."""
    return {f"{prefix}__mutmut_{n}": reason for n in numbers}


_EVALUATOR = "engine.evaluator."
_FAST_PATH = ("only decides whether a plain float skips the full check; the full check "
              "(read_fact) returns the same value or finding, only slower")
#: Equivalent mutants, by name, with why no test can tell them from the original.
EQUIVALENT: dict[str, str] = {
    **_same(_FAST_PATH, _EVALUATOR + "x_fast_bounds", 2, 3, 5, 7, 8, 18),
    **_same("every number fact of the catalogue has a minimum: the branch for one without "
            "is never taken", _EVALUATOR + "x_fast_bounds", 10, 12),
    **_same(_FAST_PATH, _EVALUATOR + "x__read_values", 4, 5, 6, 7, 11, 13, 14, 15),
    **_same("the values a fired rule saw are cached per fact tuple; without the cache they "
            "are worked out again, the same", _EVALUATOR + "xǁSafetyEvaluatorǁdecide",
            76, 77, 81),
    **_same("on the wall clock now is read at the start of decide or again at its stamp: "
            "the same instant to the microsecond for any caller",
            _EVALUATOR + "xǁSafetyEvaluatorǁdecide", 99),
    **_same("every fact a finding names is read by some rule of its policy, so the default "
            "of readers.get is never used", _EVALUATOR + "xǁSafetyEvaluatorǁdecide", 47, 49),
    **_same("a finding always names a policy of the set, and a policy has at least one rule "
            "(schema minItems): the fallbacks for neither are never taken",
            _EVALUATOR + "xǁDecisionAssemblerǁ_deciding", 7, 16, 20, 21, 31, 33, 34),
    **_same("unreachable: a restrictive action always has a fired rule or finding behind it",
            _EVALUATOR + "xǁDecisionAssemblerǁ_deciding", 44, 45, 46),
    **_same("a guard: the equity divided is above 0 (BookView.equity is None otherwise), so "
            "the daily loss stays above -100% and the drawdown below 1; neither bound is "
            "reached", "engine.execution.order_facts.x_order_facts", 100, 117),
    **_same("the compiled order policies and their fail-closed actions are built from one "
            "list in __init__: zip's strictness can never be tested",
            "engine.execution.order_policy.xǁOrderPolicyEvaluatorǁjudge", 8, 11, 12),
}


@dataclass(frozen=True)
class ModuleScore:
    module: str
    killed: int
    timeout: int
    survived: tuple[str, ...]
    no_tests: tuple[str, ...]
    not_checked: int
    other: int
    equivalent: int

    @property
    def tested(self) -> int:
        return self.killed + self.timeout + len(self.survived) + len(self.no_tests)

    @property
    def score(self) -> float | None:
        return (self.killed + self.timeout) / self.tested if self.tested else None

    def to_json(self) -> dict[str, object]:
        return {"killed": self.killed, "timeout": self.timeout,
                "survived": len(self.survived), "no_tests": len(self.no_tests),
                "not_checked": self.not_checked, "other": self.other,
                "equivalent": self.equivalent,
                "score": None if self.score is None else round(self.score, 3)}


def module_score(meta: Path) -> ModuleScore:
    codes: dict[str, int | None] = json.loads(meta.read_text(encoding="utf-8"))[
        "exit_code_by_key"]
    module = str(meta.relative_to(MUTANTS)).removesuffix(".meta")
    counts: Counter[str] = Counter()
    survived: list[str] = []
    no_tests: list[str] = []
    for name, code in sorted(codes.items()):
        if name in EQUIVALENT:
            counts["equivalent"] += 1
        elif code is None:
            counts["not_checked"] += 1
        elif code in KILLED_CODES:
            counts["killed"] += 1
        elif code in TIMEOUT_CODES:
            counts["timeout"] += 1
        elif code in SURVIVED_CODES:
            survived.append(name)
        elif code in NO_TEST_CODES:
            no_tests.append(name)
        else:  # a crash of the test process, or something mutmut found suspicious
            counts["other"] += 1
    return ModuleScore(module, counts["killed"], counts["timeout"], tuple(survived),
                       tuple(no_tests), counts["not_checked"], counts["other"],
                       counts["equivalent"])


def main() -> int:
    metas = sorted(MUTANTS.rglob("*.py.meta"))
    if not metas:
        print("no mutation results in mutants/: run `make mutate` first", file=sys.stderr)
        return 1
    scores = [s for s in map(module_score, metas) if s.tested or s.not_checked]
    OUT.write_text(json.dumps({
        "tool": "mutmut",
        "modules": {s.module: s.to_json() for s in scores},
        "survivors": {s.module: list(s.survived + s.no_tests) for s in scores
                      if s.survived or s.no_tests},
    }, indent=2) + "\n", encoding="utf-8")
    print(f"{'module':44} {'score':>6} {'killed':>7} {'alive':>6} {'no test':>8} {'unrun':>6}")
    for s in scores:
        score = "-" if s.score is None else f"{s.score:.0%}"
        print(f"{s.module:44} {score:>6} {s.killed + s.timeout:>7} {len(s.survived):>6} "
              f"{len(s.no_tests):>8} {s.not_checked:>6}")
    for s in scores:
        for name in s.survived + s.no_tests:
            print(f"survived: {name}")
    print(f"written to {OUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
