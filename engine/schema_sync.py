"""The fact names of the policy schema, written from the fact catalogue: the catalogue stays
the one source, and the schema lists the names so that an editor with the YAML language
server completes them. Validation does not depend on the list (any string passes it); the
loader's check against the catalogue names an unknown fact with the nearest ones.

Run `python -m engine.schema_sync` after adding a fact; a test fails until the schema agrees.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

from engine.catalogue import CATALOGUE

_FACT_LINE = re.compile(r'^(?P<indent>\s*)"fact": \{.*\},$', re.MULTILINE)


def fact_property() -> str:
    names = json.dumps(list(CATALOGUE))
    return ('"fact": {"anyOf": [{"enum": ' + names + '}, {"type": "string"}], '
            '"description": "A fact of the catalogue (fugger facts)."},')


def synced(text: str) -> str:
    """The schema text with its leaf's `fact` property listing the catalogue."""
    found = _FACT_LINE.search(text)
    if found is None:
        raise ValueError("the policy schema has no one-line \"fact\" property to update")
    return text[:found.start()] + found["indent"] + fact_property() + text[found.end():]


def main(path: str = "schemas/policy.schema.json") -> int:
    target = Path(path)
    text = target.read_text(encoding="utf-8")
    new = synced(text)
    if new != text:
        target.write_text(new, encoding="utf-8")
        print(f"{path}: fact names updated from the catalogue")
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))
