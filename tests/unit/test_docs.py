"""The README is a front page and docs/ the reference: short, its links resolve, and the
product speaks of itself, never of how it was built (no issue or session numbers)."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def test_the_readme_is_a_front_page():
    text = (ROOT / "README.md").read_text()
    assert len(text.splitlines()) <= 120, "the reference belongs in docs/"
    for heading in ("## The two commands", "## What works where", "## Headline figures",
                    "## Documentation"):
        assert heading in text
    for page in ("reference", "architecture", "testing", "benchmarks"):
        assert f"(docs/{page}.md)" in text


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_pages_speak_of_the_product_not_of_its_making(page):
    text = page.read_text()
    found = re.findall(r"(?i)\b(?:issue|session|sprint) \d+|helper measurement", text)
    assert not found, f"{page.name}: {found}"


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_relative_links_resolve(page):
    for target in re.findall(r"\]\(([^)#:]+)\)", page.read_text()):
        assert (page.parent / target).exists(), f"{page.name} links to {target}"
