"""The documentation site builds with ``--strict`` (a broken link, anchor, nav entry,
API reference or benchmark table fails it), and ruff finds nothing to flag. Both tools
come with the ``test`` extra; these tests fail, not skip, when they are missing."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).parents[1]


def test_the_documentation_site_builds_strictly(tmp_path):
    site = tmp_path / "site"
    result = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "-q",
                             "-f", str(ROOT / "mkdocs.yml"), "-d", str(site)],
                            check=False, capture_output=True, text=True, cwd=ROOT,
                            timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    speed = (site / "speed" / "index.html").read_text(encoding="utf-8")
    assert "<table" in speed and "benchmarks/results/engine-cpu.json" in speed
    assert "<!-- results:" not in speed  # every marker became a table
    api = (site / "api" / "index.html").read_text(encoding="utf-8")
    assert "register_cell" in api and "EncoderConfig" in api


def test_every_page_is_in_the_navigation():
    import yaml

    nav = yaml.safe_load((ROOT / "mkdocs.yml").read_text().split("\nhooks:")[0])["nav"]

    def pages(entries):
        for entry in entries:
            for value in entry.values():
                yield from pages(value) if isinstance(value, list) else [value]

    assert set(pages(nav)) == {p.name for p in (ROOT / "docs").glob("*.md")}


def test_ruff_finds_nothing():
    result = subprocess.run([sys.executable, "-m", "ruff", "check", "src", "tests",
                             "benchmarks", "docs", "experiments", "examples"],
                            check=False, capture_output=True, text=True, cwd=ROOT,
                            timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_readme_stays_short():
    assert len((ROOT / "README.md").read_text().splitlines()) <= 250
