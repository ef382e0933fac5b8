"""One plotting style for every figure of the course, matplotlib and plotly alike, and the plotly helpers.

The look is the animations' (``animations/style.py``): white background, ink :data:`INK`, faint grid
:data:`FAINT`, the DejaVu Sans font, the role colours of :data:`attnlab.plots.COLORS` (a key is green
everywhere) and each scheme's colour and marker from its record in :mod:`attnlab.schemes` (MLA is the
same purple diamond in a chapter's plot, a live widget and a scene). :data:`MATPLOTLIB_RC` carries it to
matplotlib, the plotly template ``"attnlab"`` (registered once, on import) to plotly.

Plotly figures reach a notebook in two ways:

- :func:`show` displays a static figure one can hover, zoom and toggle. Its output is built here, not by
  plotly's renderers, which put a random ``uuid4`` div id into ``text/html``: the bundle holds the figure
  as ``application/vnd.plotly.v1+json`` (JupyterLab's and RISE's plotly renderer draws it, plotly.js
  bundled with the extension) and as ``text/html`` with a fixed div id and no plotly.js (the static
  slides load their own copy, ``vendor/plotly.min.js``). Two executions store byte-identical outputs.
- :class:`LiveFigure` is the chart of a live widget: a ``go.FigureWidget`` built once, whose traces and
  layout :meth:`LiveFigure.show_figure` updates in place (one ``batch_update``: no re-creation, no
  flicker) from a figure a pure function built, so tests check the function's figure data.

:func:`hbar_figure` is the horizontal bar chart every calculator draws (one bar per scheme or strategy,
stacked segments, the value written beside each bar).
"""

from __future__ import annotations

import html
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import plotly.graph_objects as go
import plotly.io as pio
import torch
from cycler import cycler
from plotly.basedatatypes import BaseFigure

from attnlab._validate import check_positive_int
from attnlab.plots import COLORS
from attnlab.schemes import SCHEMES, get_scheme

# --------------------------------------------------------------------------------------------------
# the style

BACKGROUND = "#ffffff"
INK = "#1a1a1a"  # text, axes and outlines
FAINT = "#e4e4e4"  # grid lines, empty or masked cells
HIGHLIGHT = "#e8a400"  # the thing to look at right now
FONT = "DejaVu Sans"
FONT_FAMILY = "DejaVu Sans, Arial, sans-serif"
FONT_SIZE = 13  # tick labels, hover text, annotations (px)
TITLE_SIZE = 15  # a figure's title (px)
HEIGHT = 380  # a figure's default height (px); width follows the page

#: matplotlib's marker letters -> plotly's symbol names, for the markers the scheme records use.
PLOTLY_SYMBOLS = {"o": "circle", "s": "square", "^": "triangle-up", "v": "triangle-down", "D": "diamond",
                  "x": "x", "+": "cross", "*": "star", "P": "cross", "X": "x", "<": "triangle-left",
                  ">": "triangle-right", "h": "hexagon", "p": "pentagon"}

#: Sequential colour scale of attention weights and scores: white (0) to the query blue (largest).
WEIGHT_SCALE = ((0.0, BACKGROUND), (1.0, COLORS["query"]))

#: matplotlib settings of the same look (``plt.rcParams.update(MATPLOTLIB_RC)`` or ``plt.rc_context``).
MATPLOTLIB_RC = {
    "font.family": "sans-serif", "font.sans-serif": [FONT, "Arial"], "font.size": 11,
    "axes.titlesize": 13, "axes.edgecolor": INK, "axes.labelcolor": INK, "text.color": INK,
    "xtick.color": INK, "ytick.color": INK, "axes.grid": True, "grid.color": FAINT,
    "axes.facecolor": BACKGROUND, "figure.facecolor": BACKGROUND,
    "axes.prop_cycle": cycler(color=[s.color for s in SCHEMES.values()]),
}


def scheme_style(key: str) -> dict:
    """The colour, plotly marker symbol and label of scheme ``key`` (a record of :data:`attnlab.schemes.SCHEMES`
    or :data:`~attnlab.schemes.VARIANTS`), as every figure draws it: ``{"color", "symbol", "label"}``."""
    record = get_scheme(key)
    return {"color": record.color, "symbol": PLOTLY_SYMBOLS[record.marker], "label": record.label}


def _axis() -> dict:
    return dict(gridcolor=FAINT, linecolor=INK, zerolinecolor=FAINT, ticks="outside", tickcolor=INK,
                showline=True, automargin=True, title=dict(standoff=8))


#: The plotly template of the course, registered as ``pio.templates["attnlab"]``.
TEMPLATE = go.layout.Template(layout=dict(
    font=dict(family=FONT_FAMILY, size=FONT_SIZE, color=INK),
    title=dict(font=dict(size=TITLE_SIZE), x=0.0, xanchor="left", xref="paper"),
    paper_bgcolor=BACKGROUND, plot_bgcolor=BACKGROUND,
    colorway=[s.color for s in SCHEMES.values()],
    xaxis=_axis(), yaxis=_axis(),
    hoverlabel=dict(font=dict(family=FONT_FAMILY, size=FONT_SIZE), bgcolor=BACKGROUND),
    legend=dict(bgcolor="rgba(255,255,255,0.8)", borderwidth=0),
    margin=dict(l=10, r=20, t=50, b=10),
    height=HEIGHT,
))
if "attnlab" not in pio.templates:
    pio.templates["attnlab"] = TEMPLATE

#: plotly.js settings of every figure: no logo, the mode bar on hover, scroll zooms only after a click.
CONFIG = {"displaylogo": False, "responsive": True, "scrollZoom": False}


def new_figure(title: str, x_title: str = "", y_title: str = "", log_x: bool = False, log_y: bool = False,
               height: int = HEIGHT, **layout: object) -> go.Figure:
    """An empty ``go.Figure`` in the course's template: title, axis titles, log axes as asked, ``height``
    pixels high (its width follows the page); more ``layout`` keywords go to ``update_layout``."""
    check_positive_int("height", height)
    fig = go.Figure()
    fig.update_layout(template="attnlab", title=dict(text=title), height=height, **layout)
    fig.update_xaxes(title_text=x_title, type="log" if log_x else "linear")
    fig.update_yaxes(title_text=y_title, type="log" if log_y else "linear")
    return fig


# --------------------------------------------------------------------------------------------------
# static figures in a notebook

#: A figure's id: lower-case letters, digits and dashes ("ch04-cache-vs-context"); it is its div's id.
FIGURE_ID = re.compile(r"[a-z][a-z0-9-]*")
PLOTLY_MIME = "application/vnd.plotly.v1+json"


def _check_figure_id(figure_id: object) -> str:
    if not isinstance(figure_id, str) or not FIGURE_ID.fullmatch(figure_id):
        raise ValueError(f"figure_id={figure_id!r} must be lower-case letters, digits and dashes, starting "
                         f"with a letter (it is the figure's div id)")
    return figure_id


def _check_figure(name: str, fig: object) -> None:
    if not isinstance(fig, BaseFigure):
        raise ValueError(f"{name} must be a plotly figure (go.Figure or a FigureWidget), got {type(fig).__name__}")


def figure_json(fig: go.Figure) -> dict:
    """``fig`` as plotly.js reads it, ``{"data", "layout"}``, through plotly's JSON encoder (numpy arrays
    become typed arrays), with nothing that differs between two runs."""
    _check_figure("fig", fig)
    return json.loads(pio.to_json(fig, validate=True))


def figure_html(fig: go.Figure, figure_id: str) -> str:
    """``fig`` as an HTML fragment: a div with id ``figure_id`` and the script that draws it with the
    page's plotly.js (``window.Plotly``; none is embedded and none is fetched)."""
    _check_figure_id(figure_id)
    spec = figure_json(fig)
    payload = json.dumps([spec["data"], spec["layout"], CONFIG], separators=(",", ":"), sort_keys=True)
    payload = payload.replace("</", "<\\/")  # a "</script>" inside a label cannot end the script
    height = fig.layout.height or HEIGHT
    return (f'<div id="{figure_id}" class="plotly-graph-div attnlab-figure" style="height:{height}px;width:100%">'
            f'</div>\n<script type="text/javascript">(function () {{ var f = {payload}; '
            f'if (window.Plotly) {{ window.Plotly.newPlot("{figure_id}", f[0], f[1], f[2]); }} }})();</script>')


def mimebundle(fig: go.Figure, figure_id: str) -> dict:
    """The outputs :func:`show` stores: the figure for JupyterLab's plotly renderer, the HTML fragment of
    :func:`figure_html` for exported pages, and a one-line text form. Pure: same figure, same bundle."""
    _check_figure_id(figure_id)
    spec = figure_json(fig)
    title = fig.layout.title.text or figure_id
    spec["config"] = dict(CONFIG)
    return {PLOTLY_MIME: spec, "text/html": figure_html(fig, figure_id),
            "text/plain": f"<plotly figure {figure_id}: {html.unescape(re.sub('<[^>]+>', ' ', title)).strip()}>"}


def show(fig: go.Figure, figure_id: str) -> None:
    """Display ``fig`` in the notebook as :func:`mimebundle` builds it (deterministic: nbval-strict)."""
    from IPython.display import display

    display(mimebundle(fig, figure_id), raw=True)


def trace_data(fig: go.Figure) -> list[dict]:
    """Each trace of ``fig`` (a Figure or a :class:`LiveFigure`) as plotly.js reads it, without the random
    ``uid`` a FigureWidget gives its traces: what a test compares between a live chart and the pure
    function that built its figure."""
    _check_figure("fig", fig)
    traces = []
    for trace in fig.data:
        props = json.loads(pio.to_json(trace.to_plotly_json(), validate=False))
        props.pop("uid", None)
        traces.append(props)
    return traces


def figure_text(fig: go.Figure) -> str:
    """Every string ``fig`` writes on the page, in order: its title, the annotations (subplot titles, line
    labels), the bars' category labels (once each) and the traces' written texts (not hover-only ones),
    joined by newlines."""
    _check_figure("fig", fig)
    parts = [fig.layout.title.text or ""] + [a.text or "" for a in fig.layout.annotations]
    for trace in fig.data:
        if trace.type == "bar" and trace.orientation == "h":  # stacked traces share their labels: once each
            parts += [str(y) for y in trace.y or () if str(y) not in parts]
        if trace.type == "scatter" and "text" in (trace.mode or "") and trace.text is not None:
            parts += [str(t) for t in (trace.text if isinstance(trace.text, (list, tuple)) else [trace.text])]
    return "\n".join(parts)


def _rows(values, name: str) -> list[list[float]]:
    rows = values.detach().to("cpu", torch.float64).tolist() if isinstance(values, torch.Tensor) else values
    if (not isinstance(rows, (list, tuple)) or not rows or not all(isinstance(r, (list, tuple)) for r in rows)
            or len({len(r) for r in rows}) != 1 or not rows[0]):
        raise ValueError(f"{name} must be a non-empty 2-D tensor or list of equal rows (n_q, n_k)")
    return [list(r) for r in rows]


def heatmap_figure(weights, keys: Sequence[str], queries: Sequence[str] | None = None, title: str = "",
                   zmax: float | None = None, selected=None, height: int | None = None,
                   value_name: str = "weight") -> go.Figure:
    """An attention matrix (n_q, n_k) as a heatmap, rows the queries, columns the keys, white (0) to blue
    (``zmax``, default the largest entry); hovering a cell names the token pair, "query 'sat' 5 -> key
    'cat' 2" (token and position), and its ``value_name``. ``queries`` label the rows (default: the last n_q keys, as in
    causal self-attention). ``selected`` (a 0/1 matrix of the same shape, e.g. DSA's top-k) outlines the
    chosen cells. Tokens are shown with escapes (``repr``) and their positions (repeated tokens stay apart); values are
    stored to 4 decimals (what hover shows), so the figure is the same on every CPU."""
    z = [[round(v, 4) for v in r] for r in _rows(weights, "weights")]  # the last bits differ between CPUs
    n_q, n_k = len(z), len(z[0])
    keys = [str(k) for k in keys]
    if len(keys) != n_k:
        raise ValueError(f"len(keys)={len(keys)} must equal the number of keys n_k={n_k}")
    if queries is None:
        if n_q > n_k:
            raise ValueError(f"n_q={n_q} > n_k={n_k}: pass queries to label the rows")
        queries = keys[n_k - n_q:]
    queries = [str(q) for q in queries]
    if len(queries) != n_q:
        raise ValueError(f"len(queries)={len(queries)} must equal the number of queries n_q={n_q}")
    # each axis label names the token and its position, "'cat' 2", so repeated tokens stay apart
    x = [f"{repr(t)} {j}" for j, t in enumerate(keys)]
    y = [f"{repr(t)} {n_k - n_q + i}" for i, t in enumerate(queries)]
    top = zmax if zmax is not None else (max(max(r) for r in z) or 1.0)
    size = height or max(360, min(720, 200 + 18 * n_q))
    fig = new_figure(title, "key (attended to)", "query (attending)", height=size)
    fig.add_trace(go.Heatmap(
        z=z, x=x, y=y, zmin=0.0, zmax=top, colorscale=[list(c) for c in WEIGHT_SCALE], xgap=1, ygap=1,
        colorbar=dict(title=dict(text=value_name), thickness=12),
        hovertemplate=f"query %{{y}} → key %{{x}}<br>{value_name} %{{z:.3f}}<extra></extra>"))
    if selected is not None:
        mask = _rows(selected, "selected")
        if (len(mask), len(mask[0])) != (n_q, n_k):
            raise ValueError(f"selected has shape ({len(mask)}, {len(mask[0])}), weights ({n_q}, {n_k})")
        cells = [(j, i) for i in range(n_q) for j in range(n_k) if mask[i][j]]
        fig.add_trace(go.Scatter(
            x=[x[j] for j, _ in cells], y=[y[i] for _, i in cells], mode="markers", name="selected",
            marker=dict(symbol="square-open", size=max(6, min(16, 300 // max(n_q, n_k))), color=COLORS["cache"],
                        line=dict(width=1.5)), hoverinfo="skip", showlegend=False))
    small = dict(size=FONT_SIZE - 2) if max(n_q, n_k) > 24 else {}  # every token labelled, smaller when many
    fig.update_xaxes(type="category", tickmode="array", tickvals=x, ticktext=x, tickangle=-90, tickfont=small,
                     showgrid=False, showline=False, ticks="")
    fig.update_yaxes(type="category", tickmode="array", tickvals=y, ticktext=y, autorange="reversed",
                     tickfont=small, showgrid=False, showline=False, ticks="")
    return fig


def choice_figure(options: Mapping[str, go.Figure]) -> go.Figure:
    """One figure that shows one of several (same axes, e.g. heatmaps of one sentence for several heads),
    picked with buttons above it (plotly ``updatemenus``: works in a static page too). The first option
    shows at first; each button shows its option's traces and title. The layout is the first option's."""
    if not isinstance(options, Mapping) or not options:
        raise ValueError("options must be a non-empty mapping of button label -> figure")
    for label, fig in options.items():
        _check_figure(f"options[{label!r}]", fig)
    first = next(iter(options.values()))
    combined = go.Figure(layout=first.layout)
    spans = []
    for fig in options.values():
        start = len(combined.data)
        for trace in fig.data:
            combined.add_trace(trace)
        spans.append((start, len(combined.data)))
    n = len(combined.data)
    buttons = []
    for (label, fig), (start, end) in zip(options.items(), spans, strict=True):
        visible = [start <= i < end for i in range(n)]
        buttons.append(dict(label=label, method="update",
                            args=[{"visible": visible}, {"title.text": fig.layout.title.text}]))
    for i, trace in enumerate(combined.data):
        trace.visible = spans[0][0] <= i < spans[0][1]
    combined.update_layout(updatemenus=[dict(type="buttons", direction="right", buttons=buttons, x=0.0,
                                             xanchor="left", y=1.0, yanchor="bottom", pad=dict(b=6),
                                             showactive=True, active=0)],
                           margin=dict(t=(first.layout.margin.t or 50) + 40))
    return combined


# --------------------------------------------------------------------------------------------------
# the bar chart of the calculators

@dataclass(frozen=True)
class Segment:
    """A piece of a horizontal bar: what it counts (hover text), its value and its colour."""

    name: str
    value: float
    color: str

    def __post_init__(self) -> None:
        if not isinstance(self.value, (int, float)) or self.value < 0:
            raise ValueError(f"value={self.value!r} must be a number >= 0 (segment {self.name!r})")


@dataclass(frozen=True)
class Bar:
    """One horizontal bar: its ``label`` on the left, its ``segments`` stacked left to right, the ``text``
    written after its end (the total, a ratio), ``selected`` drawn outlined and opaque, the others lighter."""

    label: str
    segments: tuple[Segment, ...]
    text: str = ""
    selected: bool = True

    def __post_init__(self) -> None:
        if not self.segments:
            raise ValueError(f"segments of bar {self.label!r} must not be empty")

    @property
    def total(self) -> float:
        """The bar's length: the sum of its segments."""
        return sum(s.value for s in self.segments)


def hbar_figure(bars: Sequence[Bar], title: str, x_title: str = "", format_value=None, height: int | None = None,
                fig: go.Figure | None = None, row: int | None = None, col: int | None = None) -> go.Figure:
    """Horizontal bars, first on top, on a linear axis from 0: trace j holds every bar's j-th segment
    (stacked), a text trace writes each bar's ``text`` after its end, hover gives label, segment and value
    (``format_value(v)``, default ``f"{v:,}"``). With ``fig`` (from ``plotly.subplots.make_subplots``) the
    bars go into its panel (``row``, ``col``), whose subplot title names them (``title`` is then unused).
    Pure: same bars, same figure; the number of traces is the longest bar's segment count plus one."""
    if not bars:
        raise ValueError("bars must not be empty")
    fmt = format_value or (lambda v: f"{v:,}")
    labels = [b.label for b in bars]
    if len(set(labels)) != len(labels):
        raise ValueError(f"bar labels must differ (they are the y axis), got {labels}")
    panel = {} if fig is None else {"row": row, "col": col}
    if fig is None:
        fig = new_figure(title, x_title, height=height or 90 + 44 * len(bars))
        fig.update_layout(barmode="stack", showlegend=False, bargap=0.3)
    depth = max(len(b.segments) for b in bars)
    emphasis = not all(b.selected for b in bars)  # outline the selected bars only when some are not
    for j in range(depth):
        parts = [b.segments[j] if j < len(b.segments) else None for b in bars]
        fig.add_trace(go.Bar(
            y=labels, x=[p.value if p else 0 for p in parts], orientation="h", name=f"segment {j}",
            marker=dict(color=[p.color if p else BACKGROUND for p in parts],
                        opacity=[1.0 if b.selected else 0.55 for b in bars],
                        line=dict(color=INK, width=[1.5 if b.selected and emphasis else 0 for b in bars])),
            customdata=[[p.name if p else "", fmt(p.value) if p else ""] for p in parts],
            hovertemplate="%{y}<br>%{customdata[0]}: %{customdata[1]}<extra></extra>", showlegend=False),
            **panel)
    longest = max(b.total for b in bars) or 1
    fig.add_trace(go.Scatter(
        y=labels, x=[b.total for b in bars], mode="text", text=[f"  {b.text}" for b in bars],
        textposition="middle right", hoverinfo="skip", showlegend=False, name="values",
        textfont=dict(size=FONT_SIZE, color=INK)), **panel)
    fig.update_xaxes(range=[0, longest * 1.6], rangemode="tozero", **panel)
    fig.update_yaxes(autorange="reversed", categoryorder="array", categoryarray=labels, showgrid=False, **panel)
    if panel and x_title:
        fig.update_xaxes(title_text=x_title, **panel)
    return fig


# --------------------------------------------------------------------------------------------------
# the chart of a live widget

class LiveFigure(go.FigureWidget):
    """A live widget's chart: a ``go.FigureWidget`` (anywidget) shown once and updated in place.

    Build it from the widget's first figure; on every change give :meth:`show_figure` the figure a pure
    function builds for the new state: one ``batch_update`` copies each trace's and the layout's values
    into the shown figure, so the browser restyles it (no new widget, no flicker). The figures must have
    the same traces, in number and type, as the first one."""

    def __init__(self, figure: go.Figure) -> None:
        _check_figure("figure", figure)
        super().__init__(figure)

    def show_figure(self, figure: go.Figure) -> None:
        """Make the shown figure equal ``figure`` (same traces by number and type), in one batch update."""
        _check_figure("figure", figure)
        kinds, now = [t.type for t in figure.data], [t.type for t in self.data]
        if kinds != now:
            raise ValueError(f"figure has traces {kinds}, the live figure {now}: a live figure keeps its traces")
        with self.batch_update():
            for shown, new in zip(self.data, figure.data, strict=True):
                props = new.to_plotly_json()
                props.pop("type", None)
                shown.update(props, overwrite=True)
            layout = figure.layout.to_plotly_json()
            layout.pop("template", None)
            self.layout.update(layout, overwrite=True)

    def __repr__(self) -> str:
        # A short, deterministic text form (plotly's own is the whole figure).
        return f"LiveFigure(traces={len(self.data)}, title={self.layout.title.text!r})"


__all__ = ["BACKGROUND", "CONFIG", "FAINT", "FONT", "FONT_FAMILY", "HIGHLIGHT", "INK", "MATPLOTLIB_RC",
           "PLOTLY_SYMBOLS", "TEMPLATE", "WEIGHT_SCALE", "Bar", "LiveFigure", "Segment", "choice_figure", "figure_html",
           "figure_json", "figure_text", "hbar_figure", "heatmap_figure", "mimebundle", "new_figure",
           "scheme_style", "show", "trace_data"]
