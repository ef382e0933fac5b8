"""The widget of chapter 14 (how fast, really) and the pure functions behind it.

A benchmark report is the dict :func:`attnlab.bench.run_benchmark` returns (and ``python -m attnlab.bench
--out`` writes as JSON); the committed CPU run lives in ``attnlab/data/bench_cpu.json``. Everything shown is
computed from a report by pure functions, so tests check it without a browser:

- :func:`load_results` reads a report, :func:`report_label` names its device and date, :func:`cpu_description`
  the processor, :func:`roofline_machine` the bandwidth and FLOP rate its roofline uses;
- :func:`select_rows` joins the timing and roofline entries of some schemes at one context;
- :func:`cache_matches_formula`, :func:`ratios_vs_mha`, :func:`peer_ratios` summarise it;
- :func:`targets_markdown` and :func:`run_cost` give the goals against what was measured and what the run cost;
- :func:`time_figure`, :func:`peer_figure`, :func:`roofline_figure` draw it (matplotlib figures, for the README
  and the widget's image); :func:`time_plotly` and :func:`roofline_plotly` draw it to explore (plotly: hover, zoom);
- :func:`readout_html` is the widget's table;
- the newer schemes of chapters 17-20 (:data:`attnlab.bench.NEWER_SCHEMES`, rows with ``"group": "newer"``):
  :func:`newer_measured` says which of them a report timed, :func:`newer_points` gives each one's formula FLOPs
  and bytes and its roofline bound at every context (and its measured time where the report has it),
  :func:`newer_time_plotly` and :func:`newer_roofline_plotly` draw them beside MHA, absorbed MLA and DSA,
  :func:`newer_summary` gives the numbers chapter 14's prose about them quotes. A report written before
  they were timed draws them from the formulas alone: their roofline bounds, dashed.

Reports written before the read-bandwidth and decode-matmul probes (no ``"roofline_bandwidth"`` in
``report["machine"]``) are drawn against their copy bandwidth and square-GEMM rate, as they were.

:func:`bench_explorer` wraps them in an ipywidgets container whose controls offer only the report's schemes
and contexts and whose callbacks only set widget values.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path

import ipywidgets as widgets
import matplotlib.pyplot as plt
import plotly.graph_objects as go

from attnlab import bench, costs
from attnlab.bench import roofline_bound
from attnlab.figures import INK, PLOTLY_SYMBOLS, new_figure, scheme_style
from attnlab.interactive.svg import html_table as _table
from attnlab.plots import figure_png
from attnlab.schemes import BENCH_SCHEMES, NEWER_SCHEMES, get_scheme
from attnlab.sizing import format_bytes
from attnlab.widgets import row

#: The committed CPU run.
CPU_RESULTS = Path(__file__).resolve().parents[1] / "data" / "bench_cpu.json"

#: Colour and marker per benchmarked scheme, from :mod:`attnlab.schemes` (the two MLA forms share MLA's
#: colour, told apart by marker).
SCHEME_STYLE: dict[str, tuple[str, str]] = {key: (get_scheme(key).color, get_scheme(key).marker)
                                            for key in BENCH_SCHEMES}

#: Readable names for the benchmarked schemes (:attr:`attnlab.schemes.Scheme.label`).
SCHEME_LABELS: dict[str, str] = {key: get_scheme(key).label for key in BENCH_SCHEMES}

#: Colour and marker, and label, of each newer scheme (:data:`attnlab.schemes.NEWER_SCHEMES`).
NEWER_STYLE: dict[str, tuple[str, str]] = {key: (s.color, s.marker) for key, s in NEWER_SCHEMES.items()}
NEWER_LABELS: dict[str, str] = {key: s.label for key, s in NEWER_SCHEMES.items()}
#: The course's schemes drawn beside the newer ones for reference.
NEWER_REFERENCES: tuple[str, ...] = ("mha", "mla_absorbed", "dsa")


def load_results(path: str | Path | None = None) -> dict:
    """Read a benchmark report (JSON written by ``python -m attnlab.bench --out``); None reads the committed
    CPU run :data:`CPU_RESULTS`. Raises ValueError when the file lacks the report's keys."""
    path = CPU_RESULTS if path is None else Path(path)
    report = json.loads(path.read_text(encoding="utf-8"))
    keys = {"device", "date", "dtype", "contexts", "schemes", "machine", "results", "roofline", "peers"}
    missing = keys - set(report)
    if missing:
        raise ValueError(f"path={str(path)!r} is not a benchmark report: it lacks {sorted(missing)}")
    return report


def report_label(report: dict) -> str:
    """"cpu (Intel(R) Xeon(R) Processor, 2 CPUs, 1 thread), float32, 2026-11-23": where and when it ran."""
    dev = report["device"]
    threads = dev.get("torch_threads")
    extra = f", {threads} thread{'s' if threads != 1 else ''}" if threads is not None else ""
    cpus = f", {dev['cpu_count']} CPUs" if "cpu_count" in dev else ""
    return f"{dev['type']} ({dev.get('name', '?')}{cpus}{extra}), {report['dtype']}, {report['date'][:10]}"


def cpu_description(report: dict) -> str:
    """The processor a report ran on, in words, from its device info: "AMD EPYC (family 26, model 2; AVX512;
    L2 1024K, L3 32768K per CPU 0; 2 CPUs)"; only what the report recorded (older reports: name and count)."""
    dev = report["device"]
    name = (dev.get("cpu_name") or dev.get("name", "?")) if dev["type"] == "cpu" else dev.get("cpu_name", "?")
    parts = []
    if "cpu_family" in dev:
        parts.append(f"family {dev['cpu_family']}, model {dev.get('cpu_model', '?')}")
    if "cpu_capability" in dev:
        parts.append(str(dev["cpu_capability"]))
    caches = dev.get("cpu_caches", {})
    if caches:
        parts.append(", ".join(f"{level} {size}" for level, size in caches.items() if level[-1] != "i"))
    if "cpu_count" in dev:
        parts.append(f"{dev['cpu_count']} CPUs")
    return f"{name} ({'; '.join(parts)})" if parts else name


def roofline_machine(report: dict) -> dict:
    """The roofline a report's machine is drawn with: {"bandwidth" (bytes/s), "peak" (FLOP/s), "balance"
    (FLOP/byte), "bandwidth_probe", "peak_probe" (what measured them)}. The read bandwidth and the
    decode-shaped matmul ceiling where the report has them, else (older reports) the copy bandwidth and the
    square GEMM rate."""
    m = report["machine"]
    if "roofline_bandwidth" in m:
        rows, width, tokens = m["decode_matmul_shape"]
        return {"bandwidth": m["roofline_bandwidth"], "peak": m["roofline_flops"], "balance": m["roofline_balance"],
                "bandwidth_probe": "read bandwidth (x.sum())",
                "peak_probe": f"decode matmul ({rows} x {width}) @ ({width} x {tokens})"}
    return {"bandwidth": m["copy_bandwidth"], "peak": m["matmul_rate"], "balance": m["balance_flops_per_byte"],
            "bandwidth_probe": "copy bandwidth", "peak_probe": f"{m.get('gemm_n', '?')}^2 GEMM"}


def _format_target(value: float | None, unit: str) -> str:
    if value is None:
        return "not measured"
    return f"{value:.0%}" if unit == "%" else f"{value:.2f}×"


def targets_markdown(report: dict) -> str:
    """The report's goals against what it measured (``report["targets"]``, :func:`attnlab.bench.measure_targets`)
    as a Markdown table: target, goal, measured, met, and how "measured" was computed. Raises ValueError
    for a report without targets."""
    if "targets" not in report:
        raise ValueError("this report has no targets: it was written before attnlab.bench measured them")
    rows = ["| target (at L = {:,}) | goal | measured | met | measured as |".format(report["targets"][0]["context"]),
            "|---|---:|---:|:---:|---|"]
    for t in report["targets"]:
        met = {True: "yes", False: "**no**", None: "–"}[t["met"]]
        rows.append(f"| {t['target']} | ≥ {_format_target(t['goal'], t['unit'])} | "
                    f"{_format_target(t['measured'], t['unit'])} | {met} | {t['measured_as']}: {t['detail']} |")
    return "\n".join(rows)


def run_cost(report: dict) -> dict | None:
    """What the run itself cost: {"wall_s", "peak_gib", "sections_s"} from ``report["run"]``, or None for an
    older report that did not record it."""
    run = report.get("run")
    if run is None:
        return None
    return {"wall_s": run["wall_s"], "peak_gib": run["peak_rss_bytes"] / 2**30, "sections_s": run.get("sections_s", {})}


def _check_context(report: dict, context: object) -> int:
    if context not in report["contexts"]:
        raise ValueError(f"context={context!r} must be one of the report's contexts {report['contexts']}")
    return context


def _check_schemes(report: dict, schemes: Sequence[str]) -> tuple[str, ...]:
    schemes = tuple(schemes)
    if not schemes:
        raise ValueError("schemes must name at least one scheme")
    for s in schemes:
        if s not in report["schemes"]:
            raise ValueError(f"scheme={s!r} must be one of the report's schemes {report['schemes']}")
    return schemes


def select_rows(report: dict, schemes: Sequence[str], context: int) -> list[dict]:
    """One dict per scheme at ``context`` (in the order given): the timing entry of ``report["results"]``
    (time_s, time_min_s, cache_bytes_measured, cache_bytes_formula, time_vs_mha, cache_vs_mha) merged with
    the roofline entry (flops, bytes, intensity, bound, achieved_flops, bandwidth_fraction, ...)."""
    context = _check_context(report, context)
    schemes = _check_schemes(report, schemes)
    timing = {(r["scheme"], r["context"]): r for r in report["results"]}
    roof = {(r["scheme"], r["context"]): r for r in report["roofline"]}
    return [{**timing[(s, context)], **roof[(s, context)]} for s in schemes]


def cache_matches_formula(report: dict) -> bool:
    """True when every measured cache size equals :func:`attnlab.bench.cache_bytes`' formula."""
    return all(r["cache_bytes_measured"] == r["cache_bytes_formula"] for r in report["results"])


def ratios_vs_mha(report: dict, context: int) -> dict[str, dict[str, float]]:
    """{scheme: {"time": step time / MHA's, "cache": cache bytes / MHA's}} at ``context``."""
    rows = select_rows(report, report["schemes"], context)
    return {r["scheme"]: {"time": r["time_vs_mha"], "cache": r["cache_vs_mha"]} for r in rows}


def peer_ratios(report: dict) -> dict[str, dict[int, float]]:
    """Median-time ratios against the peers, by context: {"sdpa_<scheme>": grouped_attention / SDPA, ...,
    "hf_over_absorbed": Hugging Face DeepseekV3Attention / attnlab absorbed MLA, "hf_over_naive": the same
    over attnlab naive MLA, "vt_<scheme>": grouped_attention with V in rows / with V stored transposed (above 1:
    the transposed V is faster)} (the Hugging Face ones only when the report ran that peer; "hf_over_naive" and
    "vt_<scheme>" only in reports that timed them)."""
    out: dict[str, dict[int, float]] = {}
    for r in report["peers"]["sdpa"]:
        out.setdefault(f"sdpa_{r['scheme']}", {})[r["context"]] = r["ratio_grouped_attention_over_sdpa"]
        if "ratio_grouped_attention_over_v_t" in r:
            out.setdefault(f"vt_{r['scheme']}", {})[r["context"]] = r["ratio_grouped_attention_over_v_t"]
    for r in report["peers"].get("hf_deepseek_v3", []):
        out.setdefault("hf_over_absorbed", {})[r["context"]] = r["ratio_hf_over_attnlab_absorbed"]
        if "ratio_hf_over_attnlab_naive" in r:
            out.setdefault("hf_over_naive", {})[r["context"]] = r["ratio_hf_over_attnlab_naive"]
    return out


def _context_axes(ax, report: dict, ylabel: str, title: str, legend_size: int) -> None:
    """Log-log axes against the report's contexts (ticks at each measured context), titled with the run."""
    ax.set_xscale("log", base=2)
    ax.set_xticks(report["contexts"], [f"{c:,}" for c in report["contexts"]])
    ax.set_yscale("log")
    ax.set_xlabel("context L (cached tokens)")
    ax.set_ylabel(ylabel)
    ax.set_title(f"{title} · {report_label(report)}", fontsize=9)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=legend_size)


def time_figure(report: dict):
    """Median decode-step time (ms) against the context, one line per scheme, log-log axes."""
    fig, ax = plt.subplots(figsize=(6.4, 4.0))
    for s in report["schemes"]:
        rows = [r for r in report["results"] if r["scheme"] == s]
        color, marker = SCHEME_STYLE.get(s, ("#333333", "o"))
        ax.plot([r["context"] for r in rows], [r["time_s"] * 1e3 for r in rows], marker=marker, color=color,
                label=SCHEME_LABELS.get(s, s))
    _context_axes(ax, report, "decode step, median (ms)", "One layer, batch 1", legend_size=8)
    return fig


def peer_figure(report: dict):
    """The peers' median-time ratios against the context: grouped_attention / SDPA per dense scheme, MHA's
    attention core with V in rows / with V transposed (dotted: what MHA's transposed cache gains), and Hugging
    Face DeepseekV3Attention / attnlab absorbed MLA and / attnlab naive MLA (dashed); a dashed grey line at 1
    (equal speed)."""
    fig, ax = plt.subplots(figsize=(6.4, 3.8))
    ratios = peer_ratios(report)
    for key, by_ctx in ratios.items():
        ctx = sorted(by_ctx)
        style = "-"
        if key.startswith("vt_"):
            if key != "vt_mha":  # GQA's and MQA's keep V in rows: their ratios stay in the text
                continue
            (color, marker), label, style = SCHEME_STYLE["mha"], "V in rows / V transposed, MHA", ":"
        elif key == "hf_over_absorbed":
            (color, marker), label = SCHEME_STYLE["mla_absorbed"], "HF DeepseekV3Attention / attnlab MLA absorbed"
        elif key == "hf_over_naive":
            (color, marker), label = SCHEME_STYLE["mla_naive"], "HF DeepseekV3Attention / attnlab MLA naive"
            style = "--"
        else:
            s = key.removeprefix("sdpa_")
            color, marker = SCHEME_STYLE[s]
            label = f"grouped_attention / SDPA, {SCHEME_LABELS[s]}"
        ax.plot(ctx, [by_ctx[c] for c in ctx], marker=marker, color=color, label=label, linestyle=style)
    ax.axhline(1.0, color="#777777", linestyle="--", linewidth=1)
    _context_axes(ax, report, "time ratio (> 1: the first is slower)", "Against the peers", legend_size=7)
    return fig


def _roofline_points(report: dict, schemes: Sequence[str] | None, context: int | None):
    """What both roofline figures draw: the context (default the largest), the machine's roofline
    (:func:`roofline_machine`), the schemes' rows at that context, and the intensity axis's range (a factor 4
    beyond the outermost point or the balance)."""
    schemes = _check_schemes(report, report["schemes"] if schemes is None else schemes)
    context = max(report["contexts"]) if context is None else _check_context(report, context)
    roof = roofline_machine(report)
    rows = select_rows(report, schemes, context)
    intensities = [r["intensity"] for r in rows] + [roof["balance"]]
    return context, roof, rows, (min(intensities) / 4, max(intensities) * 4)


def roofline_figure(report: dict, schemes: Sequence[str] | None = None, context: int | None = None):
    """Log-log roofline of the report's machine (:func:`roofline_machine`: read bandwidth and decode-shaped
    matmul ceiling): attainable FLOP/s = min(bandwidth x intensity, ceiling), the balance point marked; each
    scheme's decode step at ``context`` (default: the largest) placed at its formula intensity and its
    achieved FLOP/s (formula FLOPs / median time)."""
    context, roof, rows, (lo, hi) = _roofline_points(report, schemes, context)
    bw, peak, balance = roof["bandwidth"], roof["peak"], roof["balance"]
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    xs = [lo, balance, hi]
    ax.plot(xs, [min(bw * x, peak) for x in xs], color="#333333", linewidth=2)
    ax.axvline(balance, color="#999999", linestyle=":", linewidth=1)
    y_lo = min(r["achieved_flops"] for r in rows) / 4
    ax.text(balance / 1.1, y_lo * 1.3, f"balance {balance:.1f} FLOP/B", fontsize=8, color="#555555", ha="right")
    ax.text(0.98, 0.04, f"{roof['bandwidth_probe']}: {bw / 1e9:.1f} GB/s\n{roof['peak_probe']}: "
            f"{peak / 1e9:.0f} GFLOP/s", transform=ax.transAxes, fontsize=7, color="#555555", ha="right",
            va="bottom")
    for r in rows:
        color, marker = SCHEME_STYLE.get(r["scheme"], ("#333333", "o"))
        ax.scatter([r["intensity"]], [r["achieved_flops"]], color=color, marker=marker, s=60, zorder=3,
                   label=f"{SCHEME_LABELS.get(r['scheme'], r['scheme'])} ({r['intensity']:.2f} FLOP/B)")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_ylim(y_lo, peak * 2.5)
    ax.set_xlabel("arithmetic intensity (FLOP per byte)")
    ax.set_ylabel("FLOP/s (achieved: formula FLOPs / median time)")
    ax.set_title(f"Roofline at L = {context:,} · {report_label(report)}", fontsize=9)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    return fig


def _scheme_marker(key: str) -> dict:
    if key in NEWER_STYLE:
        color, marker = NEWER_STYLE[key]
        return {"color": color, "symbol": PLOTLY_SYMBOLS[marker]}
    style = scheme_style(key) if key in SCHEME_STYLE else {"color": "#333333", "symbol": "circle", "label": key}
    return {"color": style["color"], "symbol": style["symbol"]}


def time_plotly(report: dict) -> go.Figure:
    """:func:`time_figure` to explore: median decode-step time (ms) against the context, one line per scheme,
    log-log axes one can zoom, a legend entry per scheme to toggle; hover gives scheme, context, median
    time, the spread of the repeats and the bytes the step reads by formula."""
    fig = new_figure(f"One layer, batch 1 · {report_label(report)}", "context L (cached tokens)",
                     "decode step, median (ms)", log_x=True, log_y=True, height=420)
    for s in report["schemes"]:
        rows = [r for r in report["results"] if r["scheme"] == s]
        fig.add_scatter(x=[r["context"] for r in rows], y=[r["time_s"] * 1e3 for r in rows], mode="lines+markers",
                        name=SCHEME_LABELS.get(s, s), line_color=_scheme_marker(s)["color"],
                        marker=dict(_scheme_marker(s), size=9),
                        customdata=[[r["spread"] * 1e3] for r in rows],
                        hovertemplate=f"{SCHEME_LABELS.get(s, s)}<br>L = %{{x:,}}<br>median %{{y:.3f}} ms "
                                      f"(spread %{{customdata[0]:.3f}} ms)<extra></extra>")
    fig.update_xaxes(tickvals=report["contexts"], ticktext=[f"{c:,}" for c in report["contexts"]])
    return fig


def _roofline_frame(fig: go.Figure, roof: dict, lowest: float) -> go.Figure:
    """The roofline figures' shared frame: the machine's two probes written in the corner, the log y axis from
    ``lowest`` / 4 (the lowest point drawn) up to 2.5x the ceiling, the legend top left."""
    bw, peak = roof["bandwidth"], roof["peak"]
    fig.add_annotation(text=f"{roof['bandwidth_probe']}: {bw / 1e9:.1f} GB/s<br>{roof['peak_probe']}: "
                            f"{peak / 1e9:.0f} GFLOP/s", xref="paper", yref="paper", x=0.99, y=0.02,
                       xanchor="right", yanchor="bottom", showarrow=False, font=dict(size=11, color="#555555"),
                       align="right")
    fig.update_yaxes(range=[math.log10(lowest / 4), math.log10(peak * 2.5)])
    fig.update_layout(legend=dict(x=0.01, y=0.99, xanchor="left", yanchor="top"))
    return fig


def roofline_plotly(report: dict, schemes: Sequence[str] | None = None, context: int | None = None) -> go.Figure:
    """:func:`roofline_figure` to explore: the roofline of the report's machine (:func:`roofline_machine`),
    attainable FLOP/s = min(bandwidth x intensity, ceiling) with the balance point marked, and each scheme's
    decode step at ``context`` (default: the largest) at its formula intensity and achieved FLOP/s, on log
    axes one can zoom; hover gives the intensity, the achieved and the attainable FLOP/s."""
    context, roof, rows, (lo, hi) = _roofline_points(report, schemes, context)
    bw, peak, balance = roof["bandwidth"], roof["peak"], roof["balance"]
    fig = new_figure(f"Roofline at L = {context:,} · {report_label(report)}", "arithmetic intensity (FLOP per byte)",
                     "FLOP/s (achieved: formula FLOPs / median time)", log_x=True, log_y=True, height=440)
    xs = [lo, balance, hi]
    fig.add_scatter(x=xs, y=[min(bw * x, peak) for x in xs], mode="lines", name="roofline",
                    line=dict(color=INK, width=2), showlegend=False,
                    hovertemplate="intensity %{x:.3g} FLOP/B<br>attainable %{y:.3g} FLOP/s<extra>roofline</extra>")
    fig.add_vline(x=balance, line=dict(color="#999999", dash="dot", width=1))
    fig.add_annotation(x=math.log10(balance), y=0.02, xref="x", yref="paper", text=f"balance {balance:.1f} FLOP/B ",
                       xanchor="right", yanchor="bottom", showarrow=False, font=dict(color="#555555"))  # log axis
    for r in rows:
        label = SCHEME_LABELS.get(r["scheme"], r["scheme"])
        fig.add_scatter(x=[r["intensity"]], y=[r["achieved_flops"]], mode="markers", name=label,
                        marker=dict(_scheme_marker(r["scheme"]), size=13, line=dict(color=INK, width=1)),
                        customdata=[[min(bw * r["intensity"], peak), r["time_s"] * 1e3]],
                        hovertemplate=f"{label}<br>intensity %{{x:.3f}} FLOP/B<br>achieved %{{y:.3g}} FLOP/s<br>"
                                      f"attainable %{{customdata[0]:.3g}} FLOP/s<br>median %{{customdata[1]:.3f}} ms"
                                      f"<extra></extra>")
    return _roofline_frame(fig, roof, min(r["achieved_flops"] for r in rows))


def readout_html(report: dict, schemes: Sequence[str], context: int) -> str:
    """An HTML table, one block of rows per scheme at ``context``: median time, cache bytes measured and by
    the formula, intensity, bound (against the report's roofline balance, :func:`roofline_machine`) and the
    fraction of that roofline's bandwidth used."""
    rows = select_rows(report, schemes, context)
    roof = roofline_machine(report)
    balance, bandwidth = roof["balance"], roof["bandwidth_probe"].split(" (")[0]
    cells: list[tuple[str, str]] = [("run", report_label(report)), ("context L", f"{context:,} tokens"),
                                    ("machine balance", f"{balance:.1f} FLOP/byte")]
    for r in rows:
        name = SCHEME_LABELS.get(r["scheme"], r["scheme"])
        same = "= formula" if r["cache_bytes_measured"] == r["cache_bytes_formula"] else "≠ formula!"
        cells += [
            (f"{name}: step time", f"{r['time_s'] * 1e3:.3f} ms (median), {r['time_vs_mha']:.2f}× MHA"),
            (f"{name}: cache", f"{format_bytes(r['cache_bytes_measured'])} measured {same}, "
                               f"{r['cache_vs_mha']:.4g}× MHA"),
            (f"{name}: roofline", f"{r['intensity']:.2f} FLOP/byte, {roofline_bound(r['intensity'], balance)}-"
                                  f"bound, {r['bandwidth_fraction']:.0%} of {bandwidth}"),
        ]
    return _table(cells)


class BenchExplorer(widgets.VBox):
    """The container :func:`bench_explorer` returns: ``.schemes`` (a SelectMultiple over the report's
    schemes), ``.context`` (a SelectionSlider over its contexts), ``.image`` (the roofline, PNG) and
    ``.readout`` (HTML)."""

    def __init__(self, report: dict, schemes: Sequence[str], context: int) -> None:
        self.report = report
        schemes, context = _check_schemes(report, schemes), _check_context(report, context)
        self.schemes = widgets.SelectMultiple(
            options=[(SCHEME_LABELS.get(s, s), s) for s in report["schemes"]], value=schemes,
            description="schemes", rows=len(report["schemes"]), layout=widgets.Layout(width="260px"))
        self.context = widgets.SelectionSlider(
            options=[(f"{c:,}", c) for c in report["contexts"]], value=context, description="context L",
            layout=widgets.Layout(width="380px"))
        self.image = widgets.Image(format="png", layout=widgets.Layout(max_width="100%"))
        self.readout = widgets.HTML()
        for control in (self.schemes, self.context):
            control.observe(self._refresh, names="value")
        super().__init__([row(self.schemes, self.context), self.image, self.readout])
        self._refresh()

    def _refresh(self, change: dict | None = None) -> None:
        # A callback: it only sets the Image and HTML widgets' values (an empty selection keeps the last view).
        if not self.schemes.value:
            return
        self.image.value = figure_png(roofline_figure(self.report, self.schemes.value, self.context.value), dpi=80)
        self.readout.value = readout_html(self.report, self.schemes.value, self.context.value)

    def __repr__(self) -> str:
        # A short, deterministic text form (the notebook stores it as the cell's plain-text output).
        return f"BenchExplorer(schemes={list(self.schemes.value)}, context={self.context.value})"


def bench_explorer(report: dict | None = None, schemes: Sequence[str] = ("mha", "mqa", "mla_absorbed", "dsa"),
                   context: int | None = None) -> BenchExplorer:
    """Return chapter 14's widget over ``report`` (default: the committed CPU run): pick schemes and one of
    the report's contexts (default: the largest) and see the measured step time, cache bytes and the
    roofline position."""
    report = load_results() if report is None else report
    context = max(report["contexts"]) if context is None else context
    return BenchExplorer(report, schemes, context)


# ----------------------------------------------------------------------------------------------------
# the newer schemes (chapters 17-20) on the same roofline


def _label(key: str) -> str:
    return NEWER_LABELS.get(key) or SCHEME_LABELS.get(key, key)


def newer_settings_of(report: dict) -> bench.NewerSettings:
    """The newer schemes' settings a report ran with (``report["newer_settings"]``), or for a report written
    before they were timed, those :func:`attnlab.bench.newer_settings` gives its shape now."""
    stored = report.get("newer_settings")
    if stored is not None:
        return bench.NewerSettings(**stored)
    return bench.newer_settings(bench.BenchShape(**report["shape"]))


def newer_measured(report: dict) -> tuple[str, ...]:
    """The newer schemes the report timed (rows with ``"group": "newer"``), in :data:`attnlab.bench.NEWER_SCHEMES`
    order; () for a report written before they were."""
    timed = {r["scheme"] for r in report["results"] if r.get("group") == "newer"}
    return tuple(key for key in bench.NEWER_SCHEMES if key in timed)


def newer_points(report: dict, schemes: Sequence[str] | None = None) -> dict[str, list[dict]]:
    """For each scheme (default: the references MHA, absorbed MLA, DSA and every newer scheme) and each of the
    report's contexts: the formula counts of one decode step in the report's dtype (:mod:`attnlab.costs`:
    "flops", "bytes" read + written, "intensity"), its roofline bound "bound_s" = max(bytes / bandwidth,
    FLOPs / ceiling) on the report's machine (:func:`roofline_machine`), and "time_s" and "achieved_flops"
    where the report timed it (else None). {scheme: [one dict per context, in the report's order]}."""
    schemes = (*NEWER_REFERENCES, *bench.NEWER_SCHEMES) if schemes is None else tuple(schemes)
    shape, dtype = bench.BenchShape(**report["shape"]), report["dtype"]
    newer = newer_settings_of(report)
    roof = roofline_machine(report)
    timing = {(r["scheme"], r["context"]): r for r in report["results"]}
    out: dict[str, list[dict]] = {}
    for s in schemes:
        if s not in bench.NEWER_SCHEMES and s not in report["schemes"]:
            raise ValueError(f"scheme={s!r} must be one of the report's schemes {report['schemes']} or "
                             f"{bench.NEWER_SCHEMES}")
        rows = []
        for context in report["contexts"]:
            if s in bench.NEWER_SCHEMES:
                counts = bench.newer_step_costs(s, shape, context, dtype, newer)
                flops, n_bytes = counts["flops"], counts["bytes_read"] + counts["bytes_appended"]
            else:
                flops, n_bytes = costs.decode_flops(s, shape, context), costs.decode_bytes_moved(s, shape, context,
                                                                                                  dtype)
            measured = timing.get((s, context))
            rows.append({"scheme": s, "context": context, "flops": flops, "bytes": n_bytes,
                         "intensity": flops / n_bytes,
                         "bound_s": max(n_bytes / roof["bandwidth"], flops / roof["peak"]),
                         "time_s": None if measured is None else measured["time_s"],
                         "achieved_flops": None if measured is None else flops / measured["time_s"]})
        out[s] = rows
    return out


def newer_time_plotly(report: dict) -> go.Figure:
    """Decode step time against the context for the newer schemes beside MHA, absorbed MLA and DSA, log-log.
    Every scheme has a thin dashed line, its roofline bound from the formulas (max(bytes / bandwidth, FLOPs /
    ceiling) on the report's machine: what its step cannot beat there), and where the report timed it a
    solid line with markers, the measured median; a scheme without measurements is named "(bound only)". One
    legend entry per scheme toggles both. Hover: scheme, context, time, the step's bytes and FLOPs."""
    points = newer_points(report)
    fig = new_figure(f"Newer schemes, one layer, batch 1 · {report_label(report)}", "context L (cached tokens)",
                     "decode step (ms)", log_x=True, log_y=True, height=460)
    for s, rows in points.items():
        measured = all(r["time_s"] is not None for r in rows)
        label = _label(s) + ("" if measured else " (bound only)")
        marker = _scheme_marker(s)
        data = [[r["bytes"] / 1e6, r["flops"] / 1e6] for r in rows]
        width = 2.5 if s in bench.NEWER_SCHEMES else 1.5
        fig.add_scatter(x=[r["context"] for r in rows], y=[r["bound_s"] * 1e3 for r in rows], mode="lines",
                        name=label, legendgroup=s, showlegend=not measured,
                        line=dict(color=marker["color"], dash="dash", width=1.2), customdata=data,
                        hovertemplate=f"{_label(s)}, roofline bound<br>L = %{{x:,}}<br>%{{y:.3f}} ms<br>"
                                      f"%{{customdata[0]:.3f}} MB, %{{customdata[1]:.2f}} MFLOP by formula"
                                      f"<extra></extra>")
        if measured:
            fig.add_scatter(x=[r["context"] for r in rows], y=[r["time_s"] * 1e3 for r in rows],
                            mode="lines+markers", name=label, legendgroup=s, line=dict(color=marker["color"],
                                                                                        width=width),
                            marker=dict(marker, size=9), customdata=data,
                            hovertemplate=f"{label}, measured median<br>L = %{{x:,}}<br>%{{y:.3f}} ms<br>"
                                          f"%{{customdata[0]:.3f}} MB, %{{customdata[1]:.2f}} MFLOP by formula"
                                          f"<extra></extra>")
    fig.add_annotation(text="solid: measured median · dashed: roofline bound from the formulas", xref="paper",
                       yref="paper", x=0.99, y=0.01, xanchor="right", yanchor="bottom", showarrow=False,
                       font=dict(size=11, color="#555555"))
    fig.update_xaxes(tickvals=report["contexts"], ticktext=[f"{c:,}" for c in report["contexts"]])
    return fig


def newer_roofline_plotly(report: dict, context: int | None = None) -> go.Figure:
    """:func:`roofline_plotly` for the newer schemes and the references at ``context`` (default: the largest): each
    step at its formula intensity; up, the FLOP/s its measured median achieved (filled marker), or for a
    scheme the report did not time, the roofline's attainable FLOP/s at that intensity (hollow marker, "bound"
    in its name)."""
    context = max(report["contexts"]) if context is None else _check_context(report, context)
    points = {s: next(r for r in rows if r["context"] == context) for s, rows in newer_points(report).items()}
    roof = roofline_machine(report)
    bw, peak, balance = roof["bandwidth"], roof["peak"], roof["balance"]
    intensities = [r["intensity"] for r in points.values()]
    lo, hi = min(intensities + [balance]) / 4, max(intensities + [balance]) * 4
    fig = new_figure(f"Newer schemes on the roofline at L = {context:,} · {report_label(report)}",
                     "arithmetic intensity (FLOP per byte)", "FLOP/s (achieved, or attainable)", log_x=True,
                     log_y=True, height=440)
    xs = [lo, balance, hi]
    fig.add_scatter(x=xs, y=[min(bw * x, peak) for x in xs], mode="lines", name="roofline",
                    line=dict(color=INK, width=2), showlegend=False,
                    hovertemplate="intensity %{x:.3g} FLOP/B<br>attainable %{y:.3g} FLOP/s<extra>roofline</extra>")
    fig.add_vline(x=balance, line=dict(color="#999999", dash="dot", width=1))
    ys = []
    for s, r in points.items():
        attainable = min(bw * r["intensity"], peak)
        measured = r["achieved_flops"] is not None
        y = r["achieved_flops"] if measured else attainable
        ys.append(y)
        label = _label(s) + ("" if measured else " (bound)")
        marker = _scheme_marker(s)
        fig.add_scatter(x=[r["intensity"]], y=[y], mode="markers", name=label,
                        marker=dict(color=marker["color"] if measured else "rgba(0,0,0,0)", symbol=marker["symbol"],
                                    size=13, line=dict(color=marker["color"] if not measured else INK, width=2)),
                        customdata=[[attainable, r["bytes"] / 1e6]],
                        hovertemplate=f"{label}<br>intensity %{{x:.3f}} FLOP/B<br>%{{y:.3g}} FLOP/s<br>attainable "
                                      f"%{{customdata[0]:.3g}} FLOP/s<br>%{{customdata[1]:.3f}} MB a step"
                                      f"<extra></extra>")
    return _roofline_frame(fig, roof, min(ys))


def _per_token(rows: Sequence[dict], key: str) -> float:
    """How much ``key`` grows per added cached token between the first and the last context."""
    return (rows[-1][key] - rows[0][key]) / (rows[-1]["context"] - rows[0]["context"])


def newer_summary(report: dict) -> dict:
    """The numbers chapter 14 says about the newer schemes, from the formulas (the report's shape, dtype and
    newer settings) and, where the report timed them, its measurements:

    "settings" (:class:`~attnlab.bench.NewerSettings`), "small" and "big" (the first and last context),
    "measured" (the newer schemes timed), "bytes" {scheme: (bytes a step at small, at big)}, "bytes_per_token"
    {scheme: bytes a step adds per cached token, between small and big}, "window_equal_gqa_until" (the last
    context at which the window's step equals GQA's), "window_flat_from" (S + W: the ring is full),
    "hca_vs_uncompressed" (HCA's growth over that of reading every token's c-wide vector: 1 / m),
    "csa_vs_dsa", "quest_vs_gqa", "hca_vs_mla" (ratios of bytes per token), "growth" {scheme: time at big /
    time at small, measured, for the newer schemes timed and the references} and "bound_growth" (the same
    from the roofline bounds)."""
    shape, dtype = bench.BenchShape(**report["shape"]), report["dtype"]
    newer = newer_settings_of(report)
    points = newer_points(report)
    small, big = min(report["contexts"]), max(report["contexts"])
    gqa = [{"context": c, "bytes": costs.decode_bytes_moved("gqa", shape, c, dtype)} for c in (small, big)]
    per_token = {s: _per_token(rows, "bytes") for s, rows in points.items()}
    per_token["gqa"] = _per_token(gqa, "bytes")
    model = bench.v4_bench_model(shape, newer)
    b = costs.dtype_bytes(costs.get_dtype(dtype))
    equal = [c for c in report["contexts"] if bench.newer_step_costs("gqa_window", shape, c, dtype, newer)["flops"]
             == costs.decode_flops("gqa", shape, c)]
    measured = newer_measured(report)
    timed = [s for s in (*NEWER_REFERENCES, *measured)]
    return {
        "settings": newer, "small": small, "big": big, "measured": measured,
        "bytes": {s: (rows[0]["bytes"], rows[-1]["bytes"]) for s, rows in points.items()},
        "bytes_per_token": per_token,
        "window_equal_gqa_until": max(equal) if equal else None,
        "window_flat_from": newer.window + newer.n_sinks,
        "hca_vs_uncompressed": per_token["v4_hca"] / (model.head_dim * b),
        "csa_vs_dsa": per_token["v4_csa"] / per_token["dsa"],
        "quest_vs_gqa": per_token["quest"] / per_token["gqa"],
        "hca_vs_mla": per_token["v4_hca"] / per_token["mla_absorbed"],
        "growth": {s: points[s][-1]["time_s"] / points[s][0]["time_s"] for s in timed},
        "bound_growth": {s: rows[-1]["bound_s"] / rows[0]["bound_s"] for s, rows in points.items()},
        "v4": model,
    }
