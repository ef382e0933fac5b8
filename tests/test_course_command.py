"""The ``./course`` command as a user meets it: numbered install steps, and a clear word on a bad chapter.

The install steps print "[k/n]" whether they have work to do or find everything in place, so a first
install (minutes of pip and apt) says how far along it is. Here the environment is already installed, so
each step reports what it found; the numbering is the same.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _course(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["./course", *args], cwd=ROOT, capture_output=True, text=True, timeout=300)


def test_setup_numbers_its_steps():
    run = _course("setup")
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    steps = re.findall(r"==> \[(\d+)/(\d+)\] (.+)", run.stdout)
    assert [(int(k), int(n)) for k, n, _ in steps] == [(k, 4) for k in range(1, 5)], run.stdout
    what = " ".join(text for _, _, text in steps)
    for word in ("system packages", "virtual environment", "Python packages", "attnlab"):
        assert word in what, what


def test_lab_names_the_chapters_when_one_does_not_exist():
    run = _course("lab", "99")
    assert run.returncode == 2
    assert "there is no chapter 99" in run.stderr
    assert re.search(r"the chapters are 0 1 2 .* 14", run.stderr), run.stderr
