"""Every relative link in the README and docs/ points at a file of the checkout (results, plots, pages)."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LINK = re.compile(r"\]\(([^)\s]+)\)")


def broken_links(markdown: Path) -> list:
    """Relative link targets of a markdown file that do not exist (anchors and URLs are not checked)."""
    broken = []
    for target in LINK.findall(markdown.read_text()):
        if re.match(r"[a-z]+://|mailto:|#", target):
            continue
        if not (markdown.parent / target.split("#")[0]).exists():
            broken.append(target)
    return broken


def test_relative_links_resolve():
    pages = [ROOT / "README.md"] + sorted((ROOT / "docs").rglob("*.md"))
    assert len(pages) > 10
    broken = {str(p.relative_to(ROOT)): b for p in pages if (b := broken_links(p))}
    assert not broken, f"links to files that do not exist: {broken}"


def test_broken_link_is_reported(tmp_path):
    page = tmp_path / "page.md"
    (tmp_path / "there.json").write_text("{}")
    page.write_text("[ok](there.json) [anchor](#x) [web](https://example.org/a) [gone](results/missing.json#top)")
    assert broken_links(page) == ["results/missing.json#top"]
