"""Checking one policy document: the JSON Schema first, then what a schema cannot say.

Every problem is reported, each at the position of the node it is about, so a person fixes a
file in one pass. A document with any problem builds no Policy.

`schema_errors` tells the JSON Schema's errors, `semantics` finds what a schema cannot say,
`build` makes the Policy, and `wording` is how every problem names its place and value.
"""

from __future__ import annotations

from collections.abc import Mapping

from engine.policy.model import Policy
from engine.policy.problems import Position, Problem
from engine.policy.validate.build import build
from engine.policy.validate.schema_errors import schema_problems
from engine.policy.validate.semantics import semantic_problems
from engine.policy.yamlsource import YamlDocument


def check_document(doc: YamlDocument) -> tuple[Policy | None, list[Problem]]:
    """Validate a parsed document; the Policy is built only when no problem was found."""
    data = doc.data
    if not isinstance(data, Mapping):
        return None, [Problem(Position(doc.path, 1, 1),
                              "a policy is a mapping with apiVersion, kind, metadata and spec")]
    semantic = list(semantic_problems(doc))
    # A value the semantic checks explain (with the fact's unit and range) needs no second,
    # vaguer line from the schema at the same place.
    explained = {p.pos for p in semantic}
    problems = [p for p in schema_problems(doc) if p.pos not in explained]
    problems = sorted(set(problems + semantic))
    if problems:
        return None, problems
    return build(doc), []
