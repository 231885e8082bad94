"""Every file a person writes is refused, with its position, when nested past the limit:
books (YAML and JSON) and sink configs go through the same guard as policies."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.monitoring.sink_config import SinkConfigError, load_sinks
from engine.portfolio.book import BookError, load_book


@pytest.mark.parametrize(("name", "text"), [
    ("book.yaml", "cash: " + "[" * 3000 + "]" * 3000 + "\n"),
    ("book.json", '{"cash": ' + "[" * 3000 + "]" * 3000 + "}\n"),
])
def test_a_deeply_nested_book_is_refused_at_its_position(tmp_path: Path, name: str,
                                                          text: str) -> None:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    with pytest.raises(BookError) as err:
        load_book(path)
    assert str(err.value).startswith(f"{path}:1:")
    assert "nested more than" in str(err.value)


def test_a_deeply_nested_sink_config_is_refused_at_its_position(tmp_path: Path) -> None:
    path = tmp_path / "sinks.yaml"
    path.write_text("sinks: " + "[" * 3000 + "]" * 3000 + "\n", encoding="utf-8")
    with pytest.raises(SinkConfigError) as err:
        load_sinks(path)
    assert str(err.value).startswith(f"{path}:1:")
    assert "nested more than" in str(err.value)
