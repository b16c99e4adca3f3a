"""The README's table of steps is generated from the subtask table and must not drift from it."""

from __future__ import annotations

from pathlib import Path

from workflows.subtasks import steps_table_markdown

README = Path(__file__).resolve().parents[1] / "README.md"


def test_readme_steps_table_matches_the_code() -> None:
    text = README.read_text()
    begin = text.index("<!-- steps:begin -->") + len("<!-- steps:begin -->\n")
    end = text.index("<!-- steps:end -->")
    assert text[begin:end].strip() == steps_table_markdown(), "regenerate with: python -m workflows.subtasks"
