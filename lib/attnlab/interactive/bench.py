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
- :func:`readout_html` is the widget's table.

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

from attnlab.bench import roofline_bound
from attnlab.figures import INK, new_figure, scheme_style
from attnlab.interactive.svg import html_table as _table
from attnlab.plots import figure_png
from attnlab.schemes import BENCH_SCHEMES, get_scheme
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
    over attnlab naive MLA} (the Hugging Face ones only when the report ran that peer; "hf_over_naive" only
    in reports that timed the naive form beside it)."""
    out: dict[str, dict[int, float]] = {}
    for r in report["peers"]["sdpa"]:
        out.setdefault(f"sdpa_{r['scheme']}", {})[r["context"]] = r["ratio_grouped_attention_over_sdpa"]
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
    """The peers' median-time ratios against the context: grouped_attention / SDPA per dense scheme, and
    Hugging Face DeepseekV3Attention / attnlab absorbed MLA and / attnlab naive MLA (dashed); a dashed grey
    line at 1 (equal speed)."""
    fig, ax = plt.subplots(figsize=(6.4, 3.8))
    ratios = peer_ratios(report)
    for key, by_ctx in ratios.items():
        ctx = sorted(by_ctx)
        style = "-"
        if key == "hf_over_absorbed":
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


def roofline_figure(report: dict, schemes: Sequence[str] | None = None, context: int | None = None):
    """Log-log roofline of the report's machine (:func:`roofline_machine`: read bandwidth and decode-shaped
    matmul ceiling): attainable FLOP/s = min(bandwidth x intensity, ceiling), the balance point marked; each
    scheme's decode step at ``context`` (default: the largest) placed at its formula intensity and its
    achieved FLOP/s (formula FLOPs / median time)."""
    schemes = _check_schemes(report, report["schemes"] if schemes is None else schemes)
    context = max(report["contexts"]) if context is None else _check_context(report, context)
    roof = roofline_machine(report)
    bw, peak, balance = roof["bandwidth"], roof["peak"], roof["balance"]
    rows = select_rows(report, schemes, context)
    lo = min([r["intensity"] for r in rows] + [balance]) / 4
    hi = max([r["intensity"] for r in rows] + [balance]) * 4
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


def roofline_plotly(report: dict, schemes: Sequence[str] | None = None, context: int | None = None) -> go.Figure:
    """:func:`roofline_figure` to explore: the roofline of the report's machine (:func:`roofline_machine`),
    attainable FLOP/s = min(bandwidth x intensity, ceiling) with the balance point marked, and each scheme's
    decode step at ``context`` (default: the largest) at its formula intensity and achieved FLOP/s, on log
    axes one can zoom; hover gives the intensity, the achieved and the attainable FLOP/s."""
    schemes = _check_schemes(report, report["schemes"] if schemes is None else schemes)
    context = max(report["contexts"]) if context is None else _check_context(report, context)
    roof = roofline_machine(report)
    bw, peak, balance = roof["bandwidth"], roof["peak"], roof["balance"]
    rows = select_rows(report, schemes, context)
    lo = min([r["intensity"] for r in rows] + [balance]) / 4
    hi = max([r["intensity"] for r in rows] + [balance]) * 4
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
    fig.add_annotation(text=f"{roof['bandwidth_probe']}: {bw / 1e9:.1f} GB/s<br>{roof['peak_probe']}: "
                            f"{peak / 1e9:.0f} GFLOP/s", xref="paper", yref="paper", x=0.99, y=0.02,
                       xanchor="right", yanchor="bottom", showarrow=False, font=dict(size=11, color="#555555"),
                       align="right")
    fig.update_yaxes(range=[math.log10(min(r["achieved_flops"] for r in rows) / 4), math.log10(peak * 2.5)])
    fig.update_layout(legend=dict(x=0.01, y=0.99, xanchor="left", yanchor="top"))
    return fig


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
