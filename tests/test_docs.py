"""The documentation names what the code has: a page per detector, an index row per kind,
and README links that lead somewhere."""

from __future__ import annotations

import re
from pathlib import Path

from fastprof.detectors import DETECTORS

ROOT = Path(__file__).resolve().parents[1]


def test_every_detector_has_a_page_and_a_row_in_the_index() -> None:
    index = (ROOT / "docs" / "detectors" / "README.md").read_text(encoding="utf-8")
    rows = {line.split("|")[1].strip(" `") for line in index.splitlines() if line.startswith("| `")}
    assert rows == set(DETECTORS)
    for kind in DETECTORS:
        page = ROOT / "docs" / "detectors" / f"{kind}.md"
        assert page.exists(), f"no docs page for {kind}"
        assert f"`{kind}`" in page.read_text(encoding="utf-8").splitlines()[0]


def test_readme_links_lead_to_files() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    links = re.findall(r"\]\(((?:docs/)[^)#]+)\)", readme)
    assert links
    missing = [link for link in links if not (ROOT / link).exists()]
    assert not missing, missing
