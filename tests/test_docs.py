"""The README's table of steps is generated from the subtask table and must not drift from it."""

from __future__ import annotations

from pathlib import Path

import pytest

from contracts.settings import settings_table_markdown
from contracts.stages import mermaid_diagram, steps_table_markdown

pytestmark = pytest.mark.unit

README = Path(__file__).resolve().parents[1] / "README.md"


def test_readme_steps_table_matches_the_code() -> None:
    text = README.read_text()
    begin = text.index("<!-- steps:begin -->") + len("<!-- steps:begin -->\n")
    end = text.index("<!-- steps:end -->")
    assert text[begin:end].strip() == steps_table_markdown(), "regenerate with: python -m contracts.stages"


def test_readme_diagram_matches_the_code() -> None:
    text = README.read_text()
    begin = text.index("<!-- diagram:begin -->\n```mermaid\n") + len("<!-- diagram:begin -->\n```mermaid\n")
    end = text.index("```\n<!-- diagram:end -->")
    assert text[begin:end].strip() == mermaid_diagram(), "regenerate with: python -m contracts.stages --mermaid"


def test_readme_settings_table_matches_the_code() -> None:
    text = README.read_text()
    begin = text.index("<!-- settings:begin -->\n") + len("<!-- settings:begin -->\n")
    end = text.index("<!-- settings:end -->")
    assert text[begin:end].strip() == settings_table_markdown(), "regenerate with: python -m contracts.settings"
