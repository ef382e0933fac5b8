"""The README shows the course as it is: its pictures exist and are current, its chapter table is the
course's chapter list (:data:`attnlab.chapters.CHAPTERS`: number, notebook, topic, video timestamp), and
its commands exist. The chapter list is the source; README's table is checked against it."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from attnlab.chapters import CHAPTERS, numbers

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text(encoding="utf-8")
sys.path.insert(0, str(ROOT / "scripts"))

import readme_figures  # noqa: E402


def test_every_picture_exists():
    images = re.findall(r'<img src="([^"]+)"', README) + re.findall(r"!\[[^\]]*\]\(([^)]+)\)", README)
    assert len(images) >= len(CHAPTERS), "a picture per chapter"
    missing = [src for src in images if not (ROOT / src).is_file()]
    assert not missing, missing


def test_a_picture_per_chapter():
    labels = [int(n) for n in re.findall(r"<br>(\d+) · ", README)]
    assert labels == numbers()


def test_fact_check_figure_is_current():
    stored = (ROOT / "docs" / "figures" / "13_fact_check.svg").read_text(encoding="utf-8")
    assert stored == readme_figures.fact_check_svg(), "run python scripts/readme_figures.py"


def test_bench_figure_is_a_png():
    assert (ROOT / "docs" / "figures" / "14_how_fast_really.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_chapter_table_is_the_chapter_list():
    """README's table, row for row, is :data:`attnlab.chapters.CHAPTERS`: | number | `slug` | topic | video |
    (the video column: the video chapter's timestamp, "course" for a chapter the course adds)."""
    table = README[README.index("| # | notebook | topic | video |"):].split("\n\n")[0].splitlines()
    assert table[1] == "|---|---|---|---|"
    expected = [f"| {c.number} | `{c.slug}` | {c.topic} | {c.video_label} |" for c in CHAPTERS]
    assert table[2:] == expected, "README's chapter table differs from attnlab.chapters.CHAPTERS"


def test_commands_exist():
    usage = subprocess.run(["bash", str(ROOT / "course")], capture_output=True, text=True)
    for command in set(re.findall(r"\./course (\w+)", README)):
        assert re.search(rf"\./course {command}\b", usage.stdout), f"./course {command} is not a sub-command"
