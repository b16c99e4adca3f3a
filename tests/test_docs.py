"""The documentation: its generated tables must not drift from the code, the site must build in strict mode
(no broken page, file or heading link) without loading anything from another host, and the README stays a
short page whose links lead to pages that exist."""

from __future__ import annotations

import re
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import pytest
from markdown.extensions.toc import slugify

from contracts.settings import settings_table_markdown
from contracts.stages import mermaid_diagram, steps_table_markdown

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
DOCS = ROOT / "docs"
STEPS_PAGE = DOCS / "steps.md"
SETTINGS_PAGE = DOCS / "configuration.md"
README_MAX_LINES = 200
QUICK_START = """```bash
bash scripts/demo.sh     # set up .venv and take over a simulated 3-zone x 2-server cluster, end to end
bash scripts/test.sh     # set up .venv, install, run ruff, mypy and the whole test suite
```"""


def test_the_steps_table_matches_the_code() -> None:
    text = STEPS_PAGE.read_text()
    begin = text.index("<!-- steps:begin -->") + len("<!-- steps:begin -->\n")
    end = text.index("<!-- steps:end -->")
    assert text[begin:end].strip() == steps_table_markdown(), "regenerate with: python -m contracts.stages"


def test_the_diagram_matches_the_code() -> None:
    text = STEPS_PAGE.read_text()
    begin = text.index("<!-- diagram:begin -->\n```mermaid\n") + len("<!-- diagram:begin -->\n```mermaid\n")
    end = text.index("```\n<!-- diagram:end -->")
    assert text[begin:end].strip() == mermaid_diagram(), "regenerate with: python -m contracts.stages --mermaid"


def test_the_settings_table_matches_the_code() -> None:
    text = SETTINGS_PAGE.read_text()
    begin = text.index("<!-- settings:begin -->\n") + len("<!-- settings:begin -->\n")
    end = text.index("<!-- settings:end -->")
    assert text[begin:end].strip() == settings_table_markdown(), "regenerate with: python -m contracts.settings"


class _Assets(HTMLParser):
    """What a page loads by itself: scripts, stylesheets, icons, fonts, images, frames (not the links a
    reader follows)."""

    def __init__(self) -> None:
        super().__init__()
        self.loaded: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        if tag == "link":
            self.loaded.append(values.get("href") or "")
        elif tag in ("script", "img", "iframe", "source", "video", "audio", "embed"):
            self.loaded.append(values.get("src") or "")
        elif tag == "object":
            self.loaded.append(values.get("data") or "")
        self.loaded.extend((values.get("srcset") or "").split())
        style = values.get("style") or ""
        self.loaded.extend(re.findall(r"url\(\s*['\"]?([^'\")\s]+)", style))


def _foreign(reference: str) -> bool:
    return bool(re.match(r"(?i)^\s*(https?:)?//", reference))


def test_the_site_builds_strictly_and_loads_nothing_from_another_host(tmp_path: Path) -> None:
    site = tmp_path / "site"
    build = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--config-file", str(ROOT / "mkdocs.yml"),
         "--site-dir", str(site)],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert build.returncode == 0, build.stdout + build.stderr
    pages = sorted(site.rglob("*.html"))
    assert {p.relative_to(site).as_posix() for p in pages} >= {
        "index.html",
        "first-hour/index.html",
        "operators-guide/index.html",
        "configuration/index.html",
    }
    foreign: list[str] = []
    for page in pages:
        assets = _Assets()
        assets.feed(page.read_text())
        foreign += [f"{page.relative_to(site)}: {ref}" for ref in assets.loaded if _foreign(ref)]
    for sheet in site.rglob("*.css"):
        text = sheet.read_text(errors="replace")
        references = re.findall(r"url\(\s*['\"]?([^'\")\s]+)", text) + re.findall(r"@import\s+['\"]([^'\"]+)", text)
        foreign += [f"{sheet.relative_to(site)}: {ref}" for ref in references if _foreign(ref)]
    assert foreign == []
    # The timeline the observability page shows is copied with the site.
    assert (site / "timeline.svg").is_file()


def _anchors(page: Path) -> set[str]:
    """The ids MkDocs gives the page's headings (code spans and links reduced to their text)."""
    anchors = set()
    in_code = False
    for line in page.read_text().splitlines():
        if line.startswith("```"):
            in_code = not in_code
        elif not in_code and (heading := re.match(r"#{1,6}\s+(.*)", line)):
            text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading.group(1)).replace("`", "")
            anchors.add(slugify(text, "-"))
    return anchors


def test_the_readme_is_short_and_links_to_pages_that_exist() -> None:
    text = README.read_text()
    assert len(text.splitlines()) <= README_MAX_LINES, "the README is the first screens; the rest goes in docs/"
    links = re.findall(r"\]\((?!https?://)([^)#\s]+)(?:#([^)\s]+))?\)", text)
    assert {target for target, _ in links} >= {"docs/first-hour.md", "docs/operators-guide.md", "docs/rest-api.md"}
    for target, anchor in links:
        page = ROOT / target
        assert page.is_file(), f"README links to {target}, which does not exist"
        if anchor:
            assert anchor in _anchors(page), f"README links to {target}#{anchor}, a heading that does not exist"
    # Every page of the site is reachable from the README.
    assert {f"docs/{p.name}" for p in DOCS.glob("*.md")} <= {target for target, _ in links}
    # The quick start's two commands.
    assert QUICK_START in text
