"""The README's pictures for the chapters without an animation, drawn by the library's own code.

``python scripts/readme_figures.py`` writes ``docs/figures/13_fact_check.svg`` (chapter 13's cache
explorer chart: DeepSeek-V3 at 128K tokens on an 80 GiB GPU, every scheme) and
``docs/figures/14_how_fast_really.png`` (chapter 14's decode time against context, from the committed
CPU benchmark). Chapters 0-12 use their animation posters (``animations/posters/``).
"""

from __future__ import annotations

import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

from attnlab.interactive import bench as bench_ui  # noqa: E402
from attnlab.interactive import factcheck as fc_widgets  # noqa: E402
from attnlab.plots import figure_png  # noqa: E402

FIGURES = Path(__file__).resolve().parents[1] / "docs" / "figures"

#: Chapter 13's explorer as the chapter opens it (notebooks/13_fact_check.py).
FACT_CHECK = {"model": "deepseek-v3", "seq_len": 131072, "gpu_gib": 80, "dtype": "bfloat16"}


def fact_check_svg() -> str:
    """Chapter 13's cache chart for :data:`FACT_CHECK` (pure, deterministic text)."""
    return fc_widgets.chart_svg(**FACT_CHECK)


def bench_png() -> bytes:
    """Chapter 14's first figure: one decode step's time per scheme against the context length."""
    return figure_png(bench_ui.time_figure(bench_ui.load_results()))


def main() -> int:
    FIGURES.mkdir(parents=True, exist_ok=True)
    (FIGURES / "13_fact_check.svg").write_text(fact_check_svg(), encoding="utf-8")
    (FIGURES / "14_how_fast_really.png").write_bytes(bench_png())
    for path in sorted(FIGURES.iterdir()):
        print(path.relative_to(FIGURES.parents[1]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
