"""The widget and helpers of chapter 15 (FlashAttention).

Everything the widget shows is computed by pure functions, so tests check it without a browser:
:func:`tile_figures` (HBM traffic of the standard and the tiled forward, SRAM per tile, score bytes never
written, all from :mod:`attnlab.costs`), :func:`tile_readout_html` (them as an HTML table) and
:func:`traffic_figure` (a plotly ``FigureWidget`` of the traffic, updated in place by
:func:`update_traffic_figure`). :func:`tile_explorer` wraps them in sliders that offer only valid values
and whose callbacks only set widget values.
"""

from __future__ import annotations

import html

import ipywidgets as widgets
import plotly.graph_objects as go

from attnlab import costs
from attnlab._validate import check_bool, check_choice
from attnlab.plots import COLORS
from attnlab.sizing import format_bytes
from attnlab.widgets import row

#: Tile sizes the sliders offer (B_r and B_c): powers of two, as the kernels use.
BLOCK_OPTIONS: tuple[int, ...] = (16, 32, 64, 128, 256)
#: Head widths offered (d): the usual ones.
HEAD_DIM_OPTIONS: tuple[int, ...] = (64, 128, 256)
#: Sequence lengths offered: 1K to 128K tokens.
LENGTH_OPTIONS: tuple[tuple[str, int], ...] = tuple((f"{n // 1024}K", n) for n in (2**k for k in range(10, 18)))
#: Shared memory of one streaming multiprocessor of an H100 (SXM5): up to 228 KB per SM (NVIDIA H100
#: Tensor Core GPU Architecture whitepaper, "H100 SM architecture"), of which one thread block may use 227 KB.
H100_SMEM_BYTES = 227 * 1024
#: The inputs' dtype the widget counts in: bfloat16, as the kernels run.
DTYPE = "bfloat16"


def tile_figures(length: int, head_dim: int, block_q: int, block_k: int, causal: bool = True) -> dict:
    """What one head of one sequence of ``length`` tokens moves through HBM, in bfloat16, computed by
    :mod:`attnlab.costs`: "standard" (:func:`~attnlab.costs.standard_attention_hbm_bytes`, S and P
    materialised), "tiled" (:func:`~attnlab.costs.flash_attention_hbm_bytes` with B_r = ``block_q``, B_c =
    ``block_k``), "ratio" (standard / tiled), "sram" (:func:`~attnlab.costs.flash_sram_bytes`), "fits" (SRAM
    within an H100 SM's 227 KB), "not_written" (:func:`~attnlab.costs.score_bytes_not_written`) and the
    arguments. The standard form is counted without the causal saving (it writes the masked entries too)."""
    check_choice("length", length, tuple(n for _, n in LENGTH_OPTIONS))
    check_choice("head_dim", head_dim, HEAD_DIM_OPTIONS)
    check_choice("block_q", block_q, BLOCK_OPTIONS)
    check_choice("block_k", block_k, BLOCK_OPTIONS)
    check_bool("causal", causal)
    standard = costs.standard_attention_hbm_bytes(length, length, head_dim, DTYPE)
    tiled = costs.flash_attention_hbm_bytes(length, length, head_dim, block_q, block_k, DTYPE, causal=causal)
    sram = costs.flash_sram_bytes(block_q, block_k, head_dim, DTYPE)
    return {"length": length, "head_dim": head_dim, "block_q": block_q, "block_k": block_k, "causal": causal,
            "standard": standard, "tiled": tiled, "ratio": standard["total"] / tiled["total"], "sram": sram,
            "fits": sram["total"] <= H100_SMEM_BYTES,
            "not_written": costs.score_bytes_not_written(length, length, DTYPE)}


def tile_readout_html(f: dict) -> str:
    """The numbers of :func:`tile_figures` as an HTML table: HBM traffic of each form and its largest part,
    the saving, the SRAM one query block needs against an H100 SM, and the score bytes never written."""
    sram, fits = f["sram"]["total"], f["fits"]
    rows = [
        ("standard attention, HBM traffic", format_bytes(f["standard"]["total"])),
        ("  of which S and P (written, read back)", format_bytes(2 * f["not_written"])),
        (f"tiled, B_r = {f['block_q']}, B_c = {f['block_k']}", format_bytes(f["tiled"]["total"])),
        ("  of which K, V streamed", format_bytes(f["tiled"]["read K, V"])),
        ("standard / tiled", f"{f['ratio']:.1f}×"),
        ("score bytes never written", format_bytes(f["not_written"])),
        ("SRAM per query block", f"{format_bytes(sram)} ({'fits' if fits else 'does not fit'} an H100 SM's "
                                 f"{H100_SMEM_BYTES // 1024} KB)"),
    ]
    cells = "".join(
        f'<tr><td style="padding:2px 12px 2px 0;white-space:pre">{html.escape(k)}</td>'
        f'<td style="padding:2px 0;font-variant-numeric:tabular-nums"><b>{html.escape(v)}</b></td></tr>'
        for k, v in rows)
    note = ("" if fits else '<p style="color:#d62728;margin:4px 0">These tiles do not fit one SM: a kernel '
            "would pick smaller ones (FlashAttention takes B_c = M / 4d).</p>")
    head = (f"<p style='margin:2px 0'>One head, n = {f['length']:,} tokens, d = {f['head_dim']}, bfloat16"
            f"{', causal' if f['causal'] else ''}:</p>")
    return f'{head}<table style="border-collapse:collapse;font-size:14px">{cells}</table>{note}'


#: The bars of :func:`traffic_figure`, top to bottom: (label, colour).
TRAFFIC_BARS: tuple[tuple[str, str], ...] = (
    ("standard: S and P", COLORS["cache"]),
    ("standard: Q, K, V, O", COLORS["query"]),
    ("tiled: K, V streamed", COLORS["key"]),
    ("tiled: Q, O, L", COLORS["query"]),
)


def traffic_parts(f: dict) -> list[float]:
    """MB of each bar of :data:`TRAFFIC_BARS` for the figures ``f`` of :func:`tile_figures`."""
    s, t = f["standard"], f["tiled"]
    scores = 2 * f["not_written"]  # S and P, each written once and read back once
    return [v / 1e6 for v in (scores, s["total"] - scores, t["read K, V"], t["total"] - t["read K, V"])]


def traffic_figure(f: dict) -> go.FigureWidget:
    """A horizontal bar chart (plotly ``FigureWidget``) of HBM traffic in MB, standard against tiled, split as
    :data:`TRAFFIC_BARS`; :func:`update_traffic_figure` changes it in place."""
    labels = [label for label, _ in TRAFFIC_BARS]
    fig = go.FigureWidget(go.Bar(
        x=traffic_parts(f), y=labels, orientation="h", uid="traffic",
        marker_color=[color for _, color in TRAFFIC_BARS], texttemplate="%{x:,.0f} MB", textposition="auto",
        hovertemplate="%{y}: %{x:,.1f} MB<extra></extra>"))
    fig.update_layout(width=620, height=260, margin={"l": 10, "r": 20, "t": 40, "b": 40},
                      template="simple_white", yaxis={"autorange": "reversed"},
                      xaxis={"title": {"text": "MB moved through HBM, one head"}},
                      title={"text": _figure_title(f), "font": {"size": 14}})
    return fig


def _figure_title(f: dict) -> str:
    return f"n = {f['length']:,}, d = {f['head_dim']}: standard / tiled = {f['ratio']:.1f}×"


def update_traffic_figure(fig: go.FigureWidget, f: dict) -> None:
    """Set the bars and the title of :func:`traffic_figure`'s chart to the figures ``f``, in place."""
    with fig.batch_update():
        fig.data[0].x = traffic_parts(f)
        fig.layout.title.text = _figure_title(f)


class TileExplorer(widgets.VBox):
    """Chapter 15's widget: sliders for B_r, B_c, the sequence length and d; the HBM traffic of the standard
    and the tiled forward and the SRAM a query block needs (:func:`tile_figures`), as a table and a chart."""

    def __init__(self, length: int, head_dim: int, block_q: int, block_k: int) -> None:
        style = {"description_width": "initial"}
        self.length = widgets.SelectionSlider(options=LENGTH_OPTIONS, value=length, description="tokens n",
                                              style=style)
        self.head_dim = widgets.SelectionSlider(options=HEAD_DIM_OPTIONS, value=head_dim, description="head dim d",
                                                style=style)
        self.block_q = widgets.SelectionSlider(options=BLOCK_OPTIONS, value=block_q, description="B_r (query rows)",
                                               style=style)
        self.block_k = widgets.SelectionSlider(options=BLOCK_OPTIONS, value=block_k, description="B_c (key rows)",
                                               style=style)
        f = tile_figures(length, head_dim, block_q, block_k)
        self.readout = widgets.HTML(tile_readout_html(f))
        self.figure = traffic_figure(f)
        for control in (self.length, self.head_dim, self.block_q, self.block_k):
            control.observe(self._refresh, names="value")
        # the chart is an anywidget (its .layout is plotly's, not ipywidgets'), so it sits below the controls
        super().__init__([row(self.length, self.head_dim), row(self.block_q, self.block_k), self.readout,
                          self.figure])

    def figures(self) -> dict:
        """:func:`tile_figures` for the sliders' values."""
        return tile_figures(self.length.value, self.head_dim.value, self.block_q.value, self.block_k.value)

    def _refresh(self, _change=None) -> None:
        f = self.figures()
        self.readout.value = tile_readout_html(f)
        update_traffic_figure(self.figure, f)

    def __repr__(self) -> str:
        return (f"TileExplorer(length={self.length.value}, head_dim={self.head_dim.value}, "
                f"block_q={self.block_q.value}, block_k={self.block_k.value})")


def tile_explorer(length: int = 16_384, head_dim: int = 128, block_q: int = 128, block_k: int = 64) -> TileExplorer:
    """Return chapter 15's widget, starting at these values (each one of the sliders' options)."""
    tile_figures(length, head_dim, block_q, block_k)  # refuses a value the sliders do not offer
    return TileExplorer(length, head_dim, block_q, block_k)
