"""The README's pictures for the chapters without an animation, drawn by the library's own code.

``python scripts/readme_figures.py`` writes ``docs/figures/13_fact_check.svg`` (chapter 13's cache
explorer chart as a still picture, drawn with matplotlib in the course's style: DeepSeek-V3 at 128K tokens
on an 80 GiB GPU, every scheme) and
``docs/figures/14_how_fast_really.png`` (chapter 14's decode time against context, from the committed
CPU benchmark). Chapters 0-12 use their animation posters (``animations/posters/``).
"""

from __future__ import annotations

import io
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402

from attnlab.figures import MATPLOTLIB_RC  # noqa: E402
from attnlab.interactive import bench as bench_ui  # noqa: E402
from attnlab.interactive import factcheck as fc_widgets  # noqa: E402
from attnlab.plots import figure_png  # noqa: E402
from attnlab.sizing import MODELS, format_bytes  # noqa: E402

FIGURES = Path(__file__).resolve().parents[1] / "docs" / "figures"

#: Chapter 13's explorer as the chapter opens it (notebooks/13_fact_check.py).
FACT_CHECK = {"model": "deepseek-v3", "seq_len": 131072, "gpu_gib": 80, "dtype": "bfloat16"}


def fact_check_svg() -> str:
    """Chapter 13's cache chart for :data:`FACT_CHECK` (the bars of :func:`attnlab.interactive.factcheck.
    chart_figure`, published scheme outlined) as SVG text, deterministic: no date, a fixed id salt."""
    bars = fc_widgets.chart_figure(**FACT_CHECK).data[0]  # the chapter's chart: labels, bytes, colours
    seq_len = FACT_CHECK["seq_len"]
    with plt.rc_context({**MATPLOTLIB_RC, "svg.hashsalt": "attnlab", "svg.fonttype": "none"}):
        fig, ax = plt.subplots(figsize=(6.4, 0.55 * len(bars.y) + 1.0))
        values = list(bars.x)
        drawn = ax.barh(range(len(values)), values, color=list(bars.marker.color),
                        edgecolor=["#1a1a1a" if w else "none" for w in bars.marker.line.width], linewidth=1.5)
        for bar, value in zip(drawn, values, strict=True):
            ax.annotate(format_bytes(value), (bar.get_width(), bar.get_y() + bar.get_height() / 2),
                        xytext=(5, 0), textcoords="offset points", va="center")
        ax.set_yticks(range(len(values)), list(bars.y))
        ax.invert_yaxis()
        ax.set_axisbelow(True)
        ax.set_xlim(0, max(values) * 1.35)
        ax.xaxis.set_major_formatter(lambda v, _: format_bytes(v) if v else "0")
        ax.set_title(f"{MODELS[FACT_CHECK['model']].name}: KV cache at {seq_len:,} tokens", loc="left")
        ax.grid(axis="y", visible=False)
        ax.spines[["top", "right"]].set_visible(False)
        buf = io.StringIO()
        fig.savefig(buf, format="svg", bbox_inches="tight", metadata={"Date": None})
        plt.close(fig)
    return buf.getvalue()


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
