"""The README shows the course as it is: its pictures exist and are current, its chapter table lists
every chapter with the video timestamp the chapter itself gives, and its commands exist."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text(encoding="utf-8")
sys.path.insert(0, str(ROOT / "scripts"))

import readme_figures  # noqa: E402

CHAPTERS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.py"))


def test_every_picture_exists():
    images = re.findall(r'<img src="([^"]+)"', README) + re.findall(r"!\[[^\]]*\]\(([^)]+)\)", README)
    assert len(images) >= len(CHAPTERS), "a picture per chapter"
    missing = [src for src in images if not (ROOT / src).is_file()]
    assert not missing, missing


def test_a_picture_per_chapter():
    labels = [int(n) for n in re.findall(r"<br>(\d+) · ", README)]
    assert labels == list(range(len(CHAPTERS)))


def test_fact_check_figure_is_current():
    stored = (ROOT / "docs" / "figures" / "13_fact_check.svg").read_text(encoding="utf-8")
    assert stored == readme_figures.fact_check_svg(), "run python scripts/readme_figures.py"


def test_bench_figure_is_a_png():
    assert (ROOT / "docs" / "figures" / "14_how_fast_really.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize("source", CHAPTERS, ids=lambda p: p.stem)
def test_chapter_table_row(source):
    number = int(source.stem[:2])
    row = re.search(rf"^\| {number} \| `{source.stem}` \| [^|]+ \| ([^|]+) \|$", README, re.M)
    assert row, f"README's chapter table has no row for {source.stem}"
    said = re.search(r"\*Video chapter at (\d\d:\d\d)\.\*", source.read_text(encoding="utf-8"))
    assert row.group(1).strip() == (said.group(1) if said else "course"), source.stem


def test_commands_exist():
    usage = subprocess.run(["bash", str(ROOT / "course")], capture_output=True, text=True)
    for command in set(re.findall(r"\./course (\w+)", README)):
        assert re.search(rf"\./course {command}\b", usage.stdout), f"./course {command} is not a sub-command"
