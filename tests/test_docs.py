"""The documentation: a short README, every page in the site's nav, no broken relative link, the text the
README shares with the site kept equal, and the site built with ``mkdocs build --strict``."""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
README = ROOT / "README.md"
MARKDOWN = [README, ROOT / "CONTRIBUTING.md", *sorted(DOCS.glob("*.md"))]


def nav_files(entries: list) -> list[str]:
    """Every page file named in a mkdocs nav (nested sections included)."""
    found = []
    for entry in entries:
        value = next(iter(entry.values())) if isinstance(entry, dict) else entry
        found.extend(nav_files(value) if isinstance(value, list) else [value])
    return found


def prose(text: str) -> str:
    """``text`` without fenced code blocks and inline code spans, where link syntax is not a link."""
    text = re.sub(r"^```.*?^```", "", text, flags=re.S | re.M)
    return re.sub(r"`[^`\n]*`", "", text)


def relative_links(path: Path) -> list[str]:
    targets = re.findall(r"\]\(([^)\s]+)\)", prose(path.read_text()))
    return [t for t in targets if not re.match(r"[a-z]+:", t) and not t.startswith("#")]


def section(path: Path, title: str) -> str:
    """A ``## title`` section (``#`` for the text before the first ``##``), links made relative to docs/."""
    text = path.read_text()
    if title == "#":
        body = text.split("\n## ", 1)[0]
    else:
        body = re.split(r"\n## ", text.split(f"\n## {title}\n", 1)[1], maxsplit=1)[0]
    return body.replace("](docs/", "](").strip()


def first_table_after(path: Path, needle: str) -> list[str]:
    lines = path.read_text().split(needle, 1)[1].splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("| "))
    end = next(i for i in range(start, len(lines)) if not lines[i].startswith("| "))
    return lines[start:end]


def test_the_readme_is_a_front_page_of_at_most_300_lines():
    assert len(README.read_text().splitlines()) <= 300


def test_every_page_is_in_the_nav_and_every_nav_entry_exists():
    nav = nav_files(yaml.safe_load((ROOT / "mkdocs.yml").read_text())["nav"])
    pages = sorted(path.name for path in DOCS.glob("*.md"))
    assert sorted(nav) == pages


def test_every_relative_link_points_at_a_file():
    broken = [
        f"{path.relative_to(ROOT)}: {target}"
        for path in MARKDOWN
        for target in relative_links(path)
        if not (path.parent / target.split("#", 1)[0]).is_file()
    ]
    assert not broken, broken
    assert "docs/results.md" in relative_links(README) and "CONTRIBUTING.md" in relative_links(README)


@pytest.mark.parametrize(
    ("title", "page"),
    [("#", "index.md"), ("Set-up (two commands)", "getting-started.md"), ("Quick start", "getting-started.md")],
)
def test_what_the_readme_shares_with_the_site_is_the_same_text(title, page):
    readme = section(README, title)
    assert readme and readme == section(DOCS / page, title)


def test_the_readme_headline_table_is_the_results_page_table():
    command = "`ppad bench --data ../shared/data/zhanglab --out runs/bench-zhanglab --methods"
    table = first_table_after(README, command)
    assert table[0] == "| Method | ACC | AUC | F1 | AP |" and len(table) == 9
    assert table == first_table_after(DOCS / "results.md", command)


@pytest.mark.skipif(
    importlib.util.find_spec("mkdocs") is None, reason="mkdocs is not installed (pip install -e '.[docs]')"
)
def test_the_site_builds_strictly_with_every_command(tmp_path):
    from ppad.cli.main import COMMANDS

    site = tmp_path / "site"
    command = [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(site)]
    done = subprocess.run(command, capture_output=True, text=True, cwd=ROOT, timeout=600)
    assert done.returncode == 0, done.stderr
    assert not re.search(r"^WARNING\b", done.stderr, re.M), done.stderr
    cli = (site / "cli" / "index.html").read_text()
    assert [name for name in COMMANDS if f'id="ppad-{name}"' not in cli] == []
    api = (site / "api" / "index.html").read_text()
    assert 'id="ppad.scoring.evaluation.evaluate"' in api and 'id="ppad.backbones.load_backbone"' in api
