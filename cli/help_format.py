"""How --help shows options: a flag takes no value, so it shows none.

typer (0.29) writes a type placeholder after every option, `<bool>` after a flag too, which
reads as if the flag wanted a value; the placeholder is dropped for flags only.
"""

from __future__ import annotations

from typing import Any

from typer.core import TyperOption

_shown_type = TyperOption.display_type_rich


def _flag_shows_no_type(self: TyperOption, ctx: Any) -> str | None:
    if self.is_bool_flag:
        return None
    return _shown_type(self, ctx)


TyperOption.display_type_rich = _flag_shows_no_type  # type: ignore[method-assign]
