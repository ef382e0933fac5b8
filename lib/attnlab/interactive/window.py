"""The widget and figures of chapter 17 (sliding windows, sinks and shared KV).

Everything the widget shows is computed by pure functions, so tests check it without a browser:
:func:`explorer_numbers` (a published model's head shape with the window, sinks and local:global ratio the
sliders set, sized by :func:`attnlab.costs.windowed_cache_bytes`), :func:`cache_curve` (cache bytes against
context, with and without the windows), :func:`readout_html`, and :func:`draw_cache_curve` (the chart, on a
matplotlib axis). :class:`WindowExplorer` wraps them: sliders that offer only valid values, the chart as a PNG
in an ``ipywidgets.Image`` and an HTML table, both replaced in place. Callbacks only set widget values.

(A plotly ``FigureWidget`` would store plotly.js, about 5 MB, in every executed notebook's widget state; a
PNG of the chart is about 30 kB.)
"""

from __future__ import annotations

import ipywidgets as widgets
import matplotlib.pyplot as plt

from attnlab import costs
from attnlab._validate import check_non_negative_int, check_positive_int
from attnlab.interactive.svg import html_table
from attnlab.plots import figure_png
from attnlab.schemes import get_scheme
from attnlab.sizing import MODELS, format_bytes, layer_tokens
from attnlab.widgets import context_options, row

#: The published models the explorer starts from (their heads, layers and bf16 are kept; the sliders set the
#: windows): the four sliding-window designs of the chapter and a dense model for comparison.
EXPLORER_MODELS: tuple[str, ...] = ("gpt-oss-120b", "gemma-3-27b", "gemma-2-9b", "mistral-7b-v0.1", "llama-3-8b")
#: Windows the slider offers (tokens): 128 (gpt-oss) to 8192, the powers of two between.
WINDOW_OPTIONS: tuple[int, ...] = tuple(2**k for k in range(7, 14))
#: Sink tokens the slider offers (StreamingLLM keeps 4).
SINK_OPTIONS: tuple[int, ...] = (0, 1, 2, 4, 8, 16)
#: Local:global ratios: (label, global_every), layer i global iff (i + 1) % global_every == 0 (0: none global).
RATIO_OPTIONS: tuple[tuple[str, int], ...] = (("all global", 1), ("1 : 1", 2), ("3 : 1", 4), ("5 : 1", 6),
                                              ("all sliding", 0))
#: Context lengths the slider offers: 1K to 1M tokens.
CONTEXT_OPTIONS: tuple[tuple[str, int], ...] = context_options()
#: Where each model starts: its published window, sinks, ratio (global_every).
PUBLISHED: dict[str, tuple[int, int, int]] = {"gpt-oss-120b": (128, 0, 2), "gemma-3-27b": (1024, 0, 6),
                                              "gemma-2-9b": (4096, 0, 2), "mistral-7b-v0.1": (4096, 0, 0),
                                              "llama-3-8b": (4096, 0, 1)}


def _check(model: object, window: object, n_sinks: object, global_every: object, context: object) -> None:
    if model not in EXPLORER_MODELS:
        raise ValueError(f"model={model!r} must be one of {EXPLORER_MODELS}")
    check_positive_int("window", window)
    check_non_negative_int("n_sinks", n_sinks)
    check_non_negative_int("global_every", global_every)
    check_positive_int("context", context)


def windows_of(n_layers: int, window: int, global_every: int) -> list[int | None]:
    """Each layer's window: None for a global layer ((i + 1) % global_every == 0), else ``window``."""
    check_positive_int("n_layers", n_layers)
    check_positive_int("window", window)
    check_non_negative_int("global_every", global_every)
    return [None if global_every and (i + 1) % global_every == 0 else window for i in range(n_layers)]


def explorer_numbers(model: str, window: int, n_sinks: int, global_every: int, context: int) -> dict:
    """The cache of ``model``'s heads and layers in bf16, batch 1, at ``context`` tokens: every layer global
    ("full") against the sliders' pattern ("windowed"), the layers of each kind, and the pattern's decode FLOPs
    per token (one sliding and one global layer). Pure."""
    _check(model, window, n_sinks, global_every, context)
    spec = MODELS[model]
    shape = spec.attention_shape()
    windows = windows_of(spec.n_layers, window, global_every)
    full = costs.windowed_cache_bytes(spec.attention, shape, context, "bfloat16")
    windowed = costs.windowed_cache_bytes(spec.attention, shape, context, "bfloat16", windows, n_sinks)
    n_global = windows.count(None)
    return {
        "model": spec.name, "n_layers": spec.n_layers, "n_global": n_global, "n_sliding": spec.n_layers - n_global,
        "full": full, "windowed": windowed, "ratio": full / windowed,
        "held_sliding": costs.window_cache_tokens(context, window, n_sinks),
        "flops_sliding": costs.window_decode_attention_flops(spec.attention, shape, context, window, n_sinks),
        "flops_global": costs.window_decode_attention_flops(spec.attention, shape, context),
        "published": costs.windowed_cache_bytes(spec.attention, shape, context, "bfloat16")
        if not spec.windowed else sum(layer_tokens(spec, context)) * costs.cache_bytes_per_token(
            spec.attention, shape, "bfloat16", per_layer=True),
    }


def cache_curve(model: str, window: int, n_sinks: int, global_every: int) -> dict[str, list]:
    """Cache bytes against context (every context of the slider): "context", "full", "windowed". Pure."""
    _check(model, window, n_sinks, global_every, 1)
    contexts = [n for _, n in CONTEXT_OPTIONS]
    numbers = [explorer_numbers(model, window, n_sinks, global_every, n) for n in contexts]
    return {"context": contexts, "full": [n["full"] for n in numbers], "windowed": [n["windowed"] for n in numbers]}


def readout_html(model: str, window: int, n_sinks: int, global_every: int, context: int) -> str:
    """The numbers of :func:`explorer_numbers` as an HTML table. Pure."""
    n = explorer_numbers(model, window, n_sinks, global_every, context)
    rows = [
        ("Layers", f"{n['n_sliding']} sliding (W = {window:,}, {n_sinks} sinks) + {n['n_global']} global"),
        ("Tokens a sliding layer holds", f"{n['held_sliding']:,} = min(L, S + W)"),
        (f"Cache at {context:,} tokens, every layer global", format_bytes(n["full"])),
        (f"Cache at {context:,} tokens, this pattern", f"{format_bytes(n['windowed'])} ({n['ratio']:.2f}× smaller)"),
        (f"As published ({n['model']})", format_bytes(n["published"])),
        ("Decode FLOPs per token, sliding / global layer",
         f"{n['flops_sliding'] / 1e6:,.1f} M / {n['flops_global'] / 1e6:,.1f} M"),
    ]
    return html_table(rows)


def draw_cache_curve(ax, model: str, window: int, n_sinks: int, global_every: int, context: int) -> None:
    """Cache (GiB) against context on log axes, on the matplotlib axis ``ax``: every layer global, the sliders'
    pattern, and the chosen context marked."""
    curve = cache_curve(model, window, n_sinks, global_every)
    at = explorer_numbers(model, window, n_sinks, global_every, context)
    ax.plot(curve["context"], [b / 2**30 for b in curve["full"]], marker="o", color=get_scheme("gqa").color,
            label="every layer global")
    ax.plot(curve["context"], [b / 2**30 for b in curve["windowed"]], marker="P", color=get_scheme("gqa_window").color,
            label=f"{at['n_sliding']} sliding (W = {window:,}, S = {n_sinks}) + {at['n_global']} global")
    ax.scatter([context], [at["windowed"] / 2**30], s=120, color="#222222", zorder=3, label=f"L = {context:,}")
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel("context L (tokens)")
    ax.set_ylabel("KV cache, GiB (bf16, batch 1)")
    ax.set_title(f"{at['model']}: {at['ratio']:.2f}× smaller at {context:,} tokens", fontsize=11)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=9, loc="upper left")


def cache_chart_png(model: str, window: int, n_sinks: int, global_every: int, context: int) -> bytes:
    """:func:`draw_cache_curve` as PNG bytes, for the explorer's ``ipywidgets.Image``. Pure."""
    fig, ax = plt.subplots(figsize=(7.0, 3.6))
    draw_cache_curve(ax, model, window, n_sinks, global_every, context)
    fig.tight_layout()
    return figure_png(fig, dpi=90)


class WindowExplorer(widgets.VBox):
    """The container :func:`window_explorer` returns: ``.model`` (Dropdown), ``.window``, ``.sinks``, ``.ratio``
    and ``.context`` (SelectionSliders offering only valid values), ``.chart`` (an Image holding the PNG of
    :func:`cache_chart_png`) and ``.readout`` (HTML), both replaced in place."""

    def __init__(self, model: str = "gpt-oss-120b", context: int = 131_072) -> None:
        if model not in EXPLORER_MODELS:
            raise ValueError(f"model={model!r} must be one of {EXPLORER_MODELS}")
        if context not in dict(CONTEXT_OPTIONS).values():
            raise ValueError(f"context={context!r} must be one of {[n for _, n in CONTEXT_OPTIONS]}")
        window, sinks, every = PUBLISHED[model]
        style, layout = {"description_width": "110px"}, widgets.Layout(width="330px")
        self.model = widgets.Dropdown(options=list(EXPLORER_MODELS), value=model, description="heads of",
                                      style=style, layout=layout)
        self.window = widgets.SelectionSlider(options=[(f"{w:,}", w) for w in WINDOW_OPTIONS], value=window,
                                              description="window W", style=style, layout=layout)
        self.sinks = widgets.SelectionSlider(options=[(str(s), s) for s in SINK_OPTIONS], value=sinks,
                                             description="sinks S", style=style, layout=layout)
        self.ratio = widgets.SelectionSlider(options=list(RATIO_OPTIONS), value=every, description="local : global",
                                             style=style, layout=layout)
        self.context = widgets.SelectionSlider(options=list(CONTEXT_OPTIONS), value=context, description="context L",
                                               style=style, layout=layout)
        self.chart = widgets.Image(format="png", layout=widgets.Layout(max_width="100%"))
        self.readout = widgets.HTML()
        self.model.observe(self._load, names="value")
        for control in (self.window, self.sinks, self.ratio, self.context):
            control.observe(self._refresh, names="value")
        super().__init__([row(self.model, self.window, self.sinks), row(self.ratio, self.context), self.chart,
                          self.readout])
        self._refresh()

    def _load(self, change: dict | None = None) -> None:
        # A callback: the model's published window, sinks and ratio go into the sliders, which redraw.
        window, sinks, every = PUBLISHED[self.model.value]
        with self.hold_trait_notifications():
            self.window.value, self.sinks.value, self.ratio.value = window, sinks, every
        self._refresh()

    def _refresh(self, change: dict | None = None) -> None:
        # A callback: it only sets the chart's PNG and the HTML table.
        args = (self.model.value, self.window.value, self.sinks.value, self.ratio.value, self.context.value)
        self.chart.value = cache_chart_png(*args)
        self.readout.value = readout_html(*args)

    def __repr__(self) -> str:
        # A short, deterministic text form (the notebook stores it as the cell's plain-text output).
        return (f"WindowExplorer(model={self.model.value!r}, window={self.window.value}, sinks={self.sinks.value}, "
                f"global_every={self.ratio.value}, context={self.context.value})")


def window_explorer(model: str = "gpt-oss-120b", context: int = 131_072) -> WindowExplorer:
    """Return chapter 17's widget: ``model``'s heads and layers, with the window, sinks and local:global ratio
    the sliders set, and its cache against context (:func:`explorer_numbers`)."""
    return WindowExplorer(model, context)
