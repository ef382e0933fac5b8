"""Figures and tables of the papers' own evidence (:mod:`attnlab.evidence`), drawn with matplotlib in the
course's colours: each attention scheme in its :attr:`attnlab.schemes.Scheme.color` and marker, roles in
:data:`attnlab.plots.COLORS`. Every function draws published numbers only; the caption of each figure names
the table or figure it comes from, and the read-off cost curves say that they are read off."""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib.pyplot as plt

from attnlab import evidence as E
from attnlab._validate import check_real, check_type
from attnlab.plots import COLORS, SCHEME_COLORS
from attnlab.schemes import SCHEMES

__all__ = ["score_bars", "gqa_tradeoff", "delta_bars", "cost_curves", "paper_gaps", "gap_points", "category_gaps",
           "markdown_table", "PAPER_GAPS"]


def _short(source: str) -> str:
    """"DeepSeek-V2, arXiv 2405.04434, Appendix D.1, Table 8" -> "DeepSeek-V2, Appendix D.1, Table 8"."""
    source = source.replace(E.V32_REPORT, "DeepSeek-V3.2-Exp report")
    return ", ".join(p.strip() for p in source.split(",") if "arXiv" not in p)


def _style(ax) -> None:
    ax.spines[["top", "right"]].set_visible(False)
    ax.grid(axis="y", alpha=0.3)


def score_bars(table: E.ScoreTable, ax=None, title: str | None = None):
    """Grouped bars of a :class:`~attnlab.evidence.ScoreTable` of percentages: one group per benchmark, one
    bar per arm in its scheme's colour, the score printed on each bar; the source in the title. Returns ax."""
    check_type("table", table, E.ScoreTable)
    if not all(b.percent for b in table.benchmarks):
        raise ValueError(f"table={table.key!r} has ratings among its scores: use delta_bars for it")
    if ax is None:
        _, ax = plt.subplots(figsize=(1.9 * len(table.benchmarks) + 1.5, 3.6))
    n = len(table.arms)
    width = 0.8 / n
    for j, arm in enumerate(table.arms):
        xs = [i + (j - (n - 1) / 2) * width for i in range(len(table.benchmarks))]
        ys = [row[j] for row in table.scores]
        bars = ax.bar(xs, ys, width * 0.92, color=SCHEME_COLORS[arm.scheme], label=arm.label)
        ax.bar_label(bars, [f"{y:.1f}" for y in ys], fontsize=8, padding=2)
    ax.set_xticks(range(len(table.benchmarks)), [f"{b.name}\n{b.metric} {b.shots}".strip() for b in table.benchmarks],
                  fontsize=9)
    low = min(min(row) for row in table.scores)
    ax.set_ylim(max(0.0, low - 10), max(max(row) for row in table.scores) + 7)  # room for the legend
    ax.set_ylabel("score (%)")
    ax.set_title(title or f"{table.title}\n({_short(table.source)})", fontsize=10)
    ax.legend(frameon=False, fontsize=8, loc="upper left", ncol=n)
    _style(ax)
    return ax


def gqa_tradeoff(ax=None):
    """The GQA paper's Table 1 as its Figure 3 draws it: average quality against inference time per sample,
    one point per model (T5-Large and T5-XXL with MHA, T5-XXL uptrained to MQA and GQA-8). Returns ax."""
    if ax is None:
        _, ax = plt.subplots(figsize=(6.4, 3.8))
    for row in E.GQA_T5_XXL:
        scheme = SCHEMES[row.scheme]
        large = row.size == "Large"
        ax.scatter(row.t_infer_s, row.average, s=70, marker=scheme.marker, color=scheme.color,
                   alpha=0.5 if large else 1.0, zorder=3)
        note = f"{row.label}\n{row.t_infer_s:.2f} s, {row.average:.1f}"
        if row.uptrain_fraction:
            note += f"\n(uptrained {row.uptrain_fraction:.0%})"
        ax.annotate(note, (row.t_infer_s, row.average), xytext=(8, -4), textcoords="offset points", fontsize=8,
                    va="top")
    ax.set_xlim(0, max(r.t_infer_s for r in E.GQA_T5_XXL) * 1.35)
    ax.set_ylim(min(r.average for r in E.GQA_T5_XXL) - 0.4, max(r.average for r in E.GQA_T5_XXL) + 0.3)
    ax.set(xlabel="inference time per sample (s)", ylabel="average dev-set score")
    ax.set_title("T5 with MHA, MQA and GQA-8 (GQA paper, Table 1)", fontsize=10)
    _style(ax)
    return ax


def delta_bars(table: E.ScoreTable, new: str, old: str, tolerance: float = 1.0, ax=None):
    """Horizontal bars: score(new) - score(old) per percentage benchmark of ``table`` (ratings left out),
    grey inside the +-``tolerance`` band (drawn), red where ``new`` is worse, ``new``'s scheme colour where
    it is better. Returns ax."""
    check_type("table", table, E.ScoreTable)
    tolerance = check_real("tolerance", tolerance, minimum=0)
    deltas = table.deltas(new, old)
    names = [b.name for b in table.benchmarks if b.percent]
    better = SCHEME_COLORS[table.arms[table.arm(new)].scheme or "mha"]
    colors = [COLORS["muted"] if abs(deltas[n]) <= tolerance else better if deltas[n] > 0 else COLORS["cache"]
              for n in names]
    if ax is None:
        _, ax = plt.subplots(figsize=(7.5, 0.32 * len(names) + 1.3))
    ys = range(len(names))[::-1]
    bars = ax.barh(list(ys), [deltas[n] for n in names], color=colors, height=0.65)
    ax.bar_label(bars, [f"{deltas[n]:+.1f}" for n in names], fontsize=8, padding=3)
    ax.axvspan(-tolerance, tolerance, color=COLORS["muted"], alpha=0.12, lw=0)
    ax.axvline(0, color="black", lw=0.8)
    ax.set_yticks(list(ys), names, fontsize=9)
    span = max(abs(d) for d in (deltas[n] for n in names)) + 1
    ax.set_xlim(-span, span)
    ax.set_xlabel(f"{table.arms[table.arm(new)].label} minus {table.arms[table.arm(old)].label} (points)")
    ax.set_title(f"{_short(table.source)}; shaded: within {tolerance:g} point", fontsize=10)
    ax.spines[["top", "right"]].set_visible(False)
    return ax


def cost_curves(axes: Sequence | None = None):
    """DeepSeek-V3.2-Exp's Figure 3, redrawn from the values read off it: cost per million tokens against the
    token position, prefill (left) and decode (right), DeepSeek-V3.1-Terminus (MLA) against DeepSeek-V3.2-Exp
    (DSA), H800 at 2 USD per GPU hour. Dots are the read-off points. Returns the two axes."""
    if axes is None:
        _, axes = plt.subplots(1, 2, figsize=(11, 3.8))
    for ax, phase in zip(axes, ("prefill", "decode"), strict=True):
        for model, scheme in (("DeepSeek-V3.1-Terminus", "mla"), ("DeepSeek-V3.2-Exp", "dsa")):
            curve = E.cost_curve(phase, model)
            ax.plot([p / 1024 for p in curve.positions], curve.usd_per_million, marker=SCHEMES[scheme].marker, ms=5,
                    lw=2, color=SCHEME_COLORS[scheme], label=f"{model} ({scheme.upper()})")
        ax.set(xlabel="token position (K tokens)", ylabel="USD per million tokens", ylim=(0, None), xlim=(0, 132))
        ax.set_title(f"{phase.capitalize()}: read off the report's Figure 3 (± {curve.resolution_usd:g} USD)",
                     fontsize=10)
        ax.legend(frameon=False, fontsize=8, loc="upper left")
        _style(ax)
    return axes


#: The comparisons :func:`paper_gaps` draws: (label, table, newer arm, baseline arm); for the GQA paper's T5
#: table, whose per-dataset rows are not part of :mod:`attnlab.evidence`, the average alone.
PAPER_GAPS: tuple[tuple[str, object, str, str], ...] = (
    ("MQA − MHA, 7B dense\n(DeepSeek-V2, D.1)", E.V2_DENSE_7B, "mqa", "mha"),
    ("GQA − MHA, 7B dense\n(DeepSeek-V2, D.1)", E.V2_DENSE_7B, "gqa", "mha"),
    ("MQA − MHA, T5-XXL avg\n(GQA paper, Table 1)", E.GQA_T5_XXL, "MQA-XXL", "MHA-XXL"),
    ("GQA-8 − MHA, T5-XXL avg\n(GQA paper, Table 1)", E.GQA_T5_XXL, "GQA-8-XXL", "MHA-XXL"),
    ("MLA − MHA, small MoE\n(DeepSeek-V2, D.2)", E.V2_MOE_SMALL, "mla", "mha"),
    ("MLA − MHA, large MoE\n(DeepSeek-V2, D.2)", E.V2_MOE_LARGE, "mla", "mha"),
    ("V3.2-Exp (DSA) − V3.1-Terminus\n(V3.2-Exp report, Table 1)", E.V32_TABLE1, "dsa", "mla"),
)


def gap_points(table: object, new: str, old: str) -> list[float]:
    """The score differences new - old one comparison of :data:`PAPER_GAPS` draws: per percentage benchmark of
    a ScoreTable, or the one average of the GQA paper's T5 table (:data:`attnlab.evidence.GQA_T5_XXL`)."""
    if table is E.GQA_T5_XXL:
        return [round(E.gqa_row(new).average - E.gqa_row(old).average, 1)]
    deltas = table.deltas(new, old)
    return [deltas[b.name] for b in table.benchmarks if b.percent]


def paper_gaps(ax=None):
    """One row per published comparison (:data:`PAPER_GAPS`): every benchmark's score difference as a dot,
    the mean as a bar, in the newer scheme's colour; zero marked. What each paper measured, side by side.
    Returns ax."""
    if ax is None:
        _, ax = plt.subplots(figsize=(8.5, 4.6))
    ys = list(range(len(PAPER_GAPS)))[::-1]
    for y, (_, table, new, old) in zip(ys, PAPER_GAPS, strict=True):
        points = gap_points(table, new, old)
        scheme = new if new in SCHEMES else next(r.scheme for r in E.GQA_T5_XXL if r.label == new)
        color = SCHEME_COLORS[scheme]
        mean = sum(points) / len(points)
        ax.barh(y, mean, color=color, alpha=0.35, height=0.6)
        ax.scatter(points, [y] * len(points), color=color, marker=SCHEMES[scheme].marker, s=28, zorder=3)
        ax.annotate(f"mean {mean:+.1f} ({len(points)} {'score' if len(points) == 1 else 'scores'})",
                    (max(0.0, *points), y), xytext=(8, 0), textcoords="offset points", fontsize=7.5, va="center")
    ax.axvline(0, color="black", lw=0.8)
    ax.set_xlim(None, ax.get_xlim()[1] + 3)  # room for the labels
    ax.set_yticks(ys, [label for label, *_ in PAPER_GAPS], fontsize=8.5)
    ax.set_xlabel("score difference, newer scheme minus baseline (points; dots: benchmarks, bar: mean)")
    ax.set_title("What the papers measured: quality of each scheme against its baseline", fontsize=10)
    ax.spines[["top", "right"]].set_visible(False)
    ax.grid(axis="x", alpha=0.3)
    return ax


def category_gaps(table: E.ScoreTable, new: str, old: str, ax=None):
    """score(new) - score(old) per percentage benchmark of ``table``, grouped by the table's categories
    (General, Search Agent, Code, ...): one row per category, a dot per benchmark (labelled), the category's
    mean as a bar in ``new``'s scheme colour. Returns ax."""
    check_type("table", table, E.ScoreTable)
    deltas = table.deltas(new, old)
    categories = list(dict.fromkeys(b.category for b in table.benchmarks if b.percent))
    color = SCHEME_COLORS[table.arms[table.arm(new)].scheme or "mha"]
    if ax is None:
        _, ax = plt.subplots(figsize=(8.5, 0.75 * len(categories) + 1.2))
    ys = list(range(len(categories)))[::-1]
    for y, category in zip(ys, categories, strict=True):
        names = [b.name for b in table.benchmarks if b.percent and b.category == category]
        values = [deltas[n] for n in names]
        ax.barh(y, sum(values) / len(values), color=color, alpha=0.35, height=0.6)
        ax.scatter(values, [y] * len(values), color=color, s=26, zorder=3)
        for i, (name, value) in enumerate(sorted(zip(names, values, strict=True), key=lambda nv: nv[1])):
            ax.annotate(name.split(" (")[0], (value, y), xytext=(0, 7 if i % 2 == 0 else -11),
                        textcoords="offset points", fontsize=7, ha="center")
    ax.axvline(0, color="black", lw=0.8)
    ax.set_yticks(ys, categories, fontsize=9)
    span = max(abs(deltas[b.name]) for b in table.benchmarks if b.percent) + 1.5
    ax.set_xlim(-span, span)
    ax.set_ylim(-0.7, len(categories) - 0.3)
    ax.set_xlabel(f"{_arm_name(table, new)} minus {_arm_name(table, old)} (points; bar: category mean)")
    ax.set_title(_short(table.source), fontsize=10)
    ax.spines[["top", "right"]].set_visible(False)
    ax.grid(axis="x", alpha=0.3)
    return ax


def _arm_name(table: E.ScoreTable, which: str) -> str:
    """An arm's short name: "Small MoE w/ MLA" -> "MLA", "DeepSeek-V3.2-Exp" -> "V3.2-Exp"."""
    label = table.arms[table.arm(which)].label
    return label.split("w/ ")[-1] if "w/ " in label else label.removeprefix("DeepSeek-")


def markdown_table(table: E.ScoreTable, new: str | None = None, old: str | None = None) -> str:
    """``table`` as Markdown: one row per benchmark, a column per arm, and with ``new`` and ``old`` a last
    column score(new) - score(old); the source under it."""
    check_type("table", table, E.ScoreTable)
    if (new is None) != (old is None):
        raise ValueError(f"new={new!r} and old={old!r} must be given together or not at all")
    arms = [a.label for a in table.arms]
    head = ["benchmark", *arms] + ([f"{_arm_name(table, new)} − {_arm_name(table, old)}"] if new else [])
    lines = ["| " + " | ".join(head) + " |", "|---|" + "---:|" * (len(head) - 1)]
    deltas = table.deltas(new, old) if new else {}
    for bench, row in zip(table.benchmarks, table.scores, strict=True):
        cells = [f"{bench.name} ({bench.metric}{', ' + bench.shots if bench.shots else ''})",
                 *[f"{v:g}" if not bench.percent else f"{v:.1f}" for v in row]]
        if new:
            cells.append(f"{deltas[bench.name]:+g}" if not bench.percent else f"{deltas[bench.name]:+.1f}")
        lines.append("| " + " | ".join(cells) + " |")
    facts = sorted({name for arm in table.arms for name, _ in arm.facts})
    for name in facts:
        lines.append(f"| *{name}* | " + " | ".join(dict(a.facts).get(name, "") for a in table.arms)
                     + (" | |" if new else " |"))
    return "\n".join(lines) + f"\n\n*Source: {table.source}. {table.setting[:1].upper()}{table.setting[1:]}.*"
