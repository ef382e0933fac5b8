"""The widgets of chapters 5 (multi-query attention) and 6 (grouped-query attention).

Query head h reads KV head g(h) = h // r, with group size r = n_heads / n_kv_heads (the rule of
:func:`attnlab.gqa.grouped_attention`). Everything the widgets show is rendered by pure functions, so
tests check it without a browser:

- :func:`kv_head_options`: the KV-head counts GQA allows for n_heads query heads (its divisors)
- :func:`kv_head_of`: query head -> KV head it reads, from :class:`attnlab.gqa.AttentionConfig`
- :func:`sharing_svg`: the diagram of which query heads share which K/V head (inline SVG)
- :func:`gqa_figures`, :func:`gqa_readout_html`: a real model's cache bytes per token at n_kv_heads
- :func:`decode_read_bytes`, :func:`decode_figure`: bytes one decode step reads, MHA against MQA (plotly)

:func:`gqa_explorer` (chapter 6) and :func:`mqa_decode_explorer` (chapter 5) wrap them in ipywidgets
containers; their callbacks only set widget values (HTML, slider options), never print. Every byte count
comes from :mod:`attnlab.sizing`.
"""

from __future__ import annotations

import html

import ipywidgets as widgets
import plotly.graph_objects as go
import torch

from attnlab import sizing
from attnlab._validate import check_non_negative_int, check_positive_int
from attnlab.figures import Bar, LiveFigure, Segment, hbar_figure
from attnlab.gqa import AttentionConfig
from attnlab.plots import COLORS
from attnlab.schemes import get_scheme
from attnlab.sizing import MODELS, ModelSpec
from attnlab.widgets import context_options, divisors, gqa_start, row

#: Context lengths the decode widget offers (label, tokens): 1K to 128K.
CONTEXT_OPTIONS: tuple[tuple[str, int], ...] = context_options(2**17)

#: Batch sizes the decode widget offers: powers of two from 1 to 256.
BATCH_OPTIONS: tuple[int, ...] = tuple(2**k for k in range(9))

#: Context the GQA readout sizes a whole cache for (tokens, one sequence).
READOUT_CONTEXT = 32_768

#: Group colours of the sharing diagram (Okabe-Ito, distinguishable with colour blindness), cycled.
GROUP_COLOURS = ("#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#000000")


# ----------------------------------------------------------------------------------------------------
# who reads which KV head


def _attention_config(n_heads: int, n_kv_heads: int) -> AttentionConfig:
    """An :class:`AttentionConfig` with these head counts; it raises the library's ValueError when
    n_kv_heads does not divide n_heads (head widths do not matter for who shares what)."""
    check_positive_int("n_heads", n_heads)
    check_positive_int("n_kv_heads", n_kv_heads)
    return AttentionConfig(d_model=n_heads, n_heads=n_heads, n_kv_heads=n_kv_heads, head_dim=1, rope=False)


#: The KV-head counts n_g that GQA allows for n query heads: every divisor, increasing (1 is MQA, n is
#: MHA); 12 heads -> [1, 2, 3, 4, 6, 12]. The same function the cache calculator offers its slider from.
kv_head_options = divisors


def kv_head_of(n_heads: int, n_kv_heads: int) -> list[int]:
    """g(h) = h // r for every query head h, with r = n_heads / n_kv_heads: the KV head query head h reads.

    The same assignment as :func:`attnlab.gqa.grouped_attention` (query heads viewed as n_kv_heads
    groups of r) and :func:`attnlab.gqa.repeat_kv`. Returns a list of length n_heads."""
    r = _attention_config(n_heads, n_kv_heads).group_size
    return [h // r for h in range(n_heads)]


def sharing_svg(n_heads: int, n_kv_heads: int, width: int = 720, title: str | None = None) -> str:
    """Inline SVG of head sharing: n_heads query boxes on top, n_kv_heads cached K/V boxes below, a line
    from every query head to the KV head it reads, one colour per group.

    Boxes are labelled when there are at most 16 of them in a row. ``title`` replaces the default
    heading ("8 query heads → 2 KV heads · group size r = 4 · GQA"). Pure: same arguments, same string."""
    config = _attention_config(n_heads, n_kv_heads)
    check_positive_int("width", width)
    r, owner = config.group_size, kv_head_of(n_heads, n_kv_heads)
    left, right, q_y, q_h, kv_y, kv_h = 118, 12, 40, 26, 136, 30
    height = kv_y + kv_h + 42
    plot_w = width - left - right
    slot = plot_w / n_heads
    q_w = max(1.5, min(40.0, slot * 0.78))
    kv_slot = plot_w / n_kv_heads
    kv_w = max(3.0, min(kv_slot * 0.86, max(q_w * r * 0.8, 14.0), 150.0))
    if title is None:
        kind = get_scheme(config.kind).label
        q_word = "query head" if n_heads == 1 else "query heads"
        kv_word = "KV head" if n_kv_heads == 1 else "KV heads"
        title = f"{n_heads} {q_word} → {n_kv_heads} {kv_word} · group size r = {r} · {kind}"
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" font-family="DejaVu Sans, Arial, sans-serif" font-size="12">',
        f'<rect width="{width}" height="{height}" fill="white"/>',
        f'<text x="4" y="18" font-size="14" font-weight="bold">{html.escape(title)}</text>',
        f'<text x="{left - 8}" y="{q_y + q_h * 0.65:.1f}" text-anchor="end">query heads</text>',
        f'<text x="{left - 8}" y="{kv_y + kv_h * 0.45:.1f}" text-anchor="end">K/V heads</text>',
        f'<text x="{left - 8}" y="{kv_y + kv_h * 0.45 + 14:.1f}" text-anchor="end" fill="{COLORS["cache"]}">'
        f'(cached)</text>',
    ]
    kv_x = [left + (g + 0.5) * kv_slot for g in range(n_kv_heads)]  # centres
    lines, boxes = [], []
    for h in range(n_heads):
        x = left + (h + 0.5) * slot
        colour = GROUP_COLOURS[owner[h] % len(GROUP_COLOURS)]
        lines.append(f'<line x1="{x:.1f}" y1="{q_y + q_h}" x2="{kv_x[owner[h]]:.1f}" y2="{kv_y}" '
                     f'stroke="{colour}" stroke-width="{1.6 if n_heads <= 32 else 0.8}" stroke-opacity="0.8"/>')
        boxes.append(f'<rect x="{x - q_w / 2:.1f}" y="{q_y}" width="{q_w:.1f}" height="{q_h}" rx="2" '
                     f'fill="{COLORS["query"]}" stroke="{colour}" stroke-width="{2 if n_heads <= 32 else 0}"/>')
        if n_heads <= 16:
            boxes.append(f'<text x="{x:.1f}" y="{q_y + q_h * 0.68:.1f}" text-anchor="middle" fill="white" '
                         f'font-size="11">q{h}</text>')
    for g, x in enumerate(kv_x):
        colour = GROUP_COLOURS[g % len(GROUP_COLOURS)]
        half = kv_w / 2
        boxes += [
            f'<rect x="{x - half:.1f}" y="{kv_y}" width="{half:.1f}" height="{kv_h}" fill="{COLORS["key"]}"/>',
            f'<rect x="{x:.1f}" y="{kv_y}" width="{half:.1f}" height="{kv_h}" fill="{COLORS["value"]}"/>',
        ]
        if n_kv_heads <= 32:
            boxes.append(f'<rect x="{x - half:.1f}" y="{kv_y}" width="{kv_w:.1f}" height="{kv_h}" fill="none" '
                         f'stroke="{colour}" stroke-width="2.5"/>')
        if n_kv_heads <= 16 and kv_w >= 40:
            boxes += [
                f'<text x="{x - half / 2:.1f}" y="{kv_y + kv_h * 0.65:.1f}" text-anchor="middle" fill="white" '
                f'font-size="11">K{g}</text>',
                f'<text x="{x + half / 2:.1f}" y="{kv_y + kv_h * 0.65:.1f}" text-anchor="middle" fill="white" '
                f'font-size="11">V{g}</text>',
            ]
    caption = (f"query head h reads K/V head h // {r}" if r > 1 else "every query head reads its own K/V head")
    parts += lines + boxes
    parts += [
        f'<text x="4" y="{height - 22}" font-size="12" fill="#444">{html.escape(caption)}</text>',
        f'<text x="4" y="{height - 6}" font-size="12" fill="#444">cache per token and layer: '
        f'{n_kv_heads} × (K + V)</text>',
    ]
    parts.append("</svg>")
    return "".join(parts)


# ----------------------------------------------------------------------------------------------------
# chapter 6: a real model at any valid n_kv_heads


def start_kv_heads(model: ModelSpec | str) -> int:
    """The KV-head count the GQA explorer starts at: the model's own, except for an MLA model (which
    does not use GQA), where it starts at the what-if n_g = n_h / 8 (16 for DeepSeek-V3's 128 heads)."""
    return gqa_start(sizing.get_model(model))


def gqa_figures(model: ModelSpec | str, n_kv_heads: int, dtype: torch.dtype | str = torch.bfloat16) -> dict:
    """What the GQA explorer shows for ``model`` resized to ``n_kv_heads`` KV heads, all from
    :mod:`attnlab.sizing`: group size r, bytes per token (all layers), the per-layer formula, the cache
    of one :data:`READOUT_CONTEXT`-token sequence, the reduction against the same model's MHA, the bytes
    per token as published (DeepSeek-V4: its average growth past the window, an entry per 4 or 128 tokens), and
    whether this setting is the published one (never for MLA or V4 models, whose GQA is a what-if)."""
    spec = sizing.get_model(model)
    config = _attention_config(spec.n_heads, n_kv_heads)
    per_token = sizing.cache_bytes_per_token(spec, dtype, "gqa", n_kv_heads)
    return {
        "model": spec.name,
        "n_heads": spec.n_heads,
        "n_kv_heads": n_kv_heads,
        "group_size": config.group_size,
        "kind": config.kind,
        "bytes_per_token": per_token,
        "formula": sizing.kv_formula(spec, "gqa", n_kv_heads),
        "cache_bytes": sizing.kv_cache_bytes(spec, READOUT_CONTEXT, 1, dtype, "gqa", n_kv_heads),
        "reduction_vs_mha": sizing.reduction_vs_mha(spec, "gqa", n_kv_heads),
        "published_scheme": spec.attention,
        "published_bytes_per_token": (sizing.growth_bytes_per_token(spec, dtype) if spec.v4 is not None
                                      else sizing.cache_bytes_per_token(spec, dtype)),
        "is_published": spec.attention != "mla" and spec.v4 is None and n_kv_heads == spec.n_kv_heads,
    }


def gqa_readout_html(model: ModelSpec | str, n_kv_heads: int, dtype: torch.dtype | str = torch.bfloat16) -> str:
    """The GQA explorer's numbers for ``model`` at ``n_kv_heads`` as an HTML table, with a line saying
    whether the setting is the model's published one or a what-if. Pure: same arguments, same string."""
    f = gqa_figures(model, n_kv_heads, dtype)
    spec = sizing.get_model(model)
    dtype_name = str(sizing.get_dtype(dtype)).removeprefix("torch.")
    rows = [
        ("Query heads n_h / KV heads n_g", f"{f['n_heads']} / {f['n_kv_heads']} (group size r = {f['group_size']}, "
                                           f"{get_scheme(f['kind']).label})"),
        ("Cached numbers per token per layer", f["formula"]),
        (f"Bytes per token inside the {spec.sliding_window:,}-token window ({dtype_name})" if spec.windowed
         else f"Bytes per token ({spec.n_layers - spec.layer_types.count('linear')} layers, {dtype_name})",
         f"{f['bytes_per_token']:,} B ({sizing.format_bytes(f['bytes_per_token'])})"),
        (f"Cache of one {READOUT_CONTEXT:,}-token sequence", f"{sizing.gib(f['cache_bytes']):,.2f} GiB"),
        ("Against the same model with MHA", f"{sizing.format_ratio(f['reduction_vs_mha'])}× smaller"),
    ]
    cells = "".join(
        f'<tr><td style="padding:2px 12px 2px 0">{html.escape(k)}</td>'
        f'<td style="padding:2px 0;font-variant-numeric:tabular-nums"><b>{html.escape(v)}</b></td></tr>'
        for k, v in rows
    )
    published = sizing.format_bytes(f["published_bytes_per_token"])
    if spec.v4 is not None:
        note = (f"{spec.name} does not use GQA: each layer keeps its last {spec.v4.window} tokens and compressed "
                f"entries (chapter 20), {published} per token on average as published. Every GQA setting here is a "
                "what-if with every layer full.")
    elif f["published_scheme"] == "mla":
        note = (f"{spec.name} does not use GQA: it uses MLA (chapter 7), {published} per token as published. "
                f"Every GQA setting here is a what-if.")
    elif f["is_published"]:
        note = f"This is {spec.name} as published ({get_scheme(spec.attention).label}, {spec.n_kv_heads} KV heads)."
    else:
        note = (f"What-if: {spec.name} as published has {spec.n_kv_heads} KV heads "
                f"({get_scheme(spec.attention).label}, {published} per token).")
    return (f'<div style="font-size:14px"><table style="border-collapse:collapse">{cells}</table>'
            f'<div style="margin-top:4px;color:#444">{html.escape(note)}</div></div>')


class GQAExplorer(widgets.VBox):
    """The container :func:`gqa_explorer` returns: ``.model`` (Dropdown), ``.n_kv_heads``
    (SelectionSlider offering only the divisors of the model's n_heads), ``.diagram`` and ``.readout``
    (HTML widgets the callbacks fill)."""

    def __init__(self, model: str = "llama-3-8b", dtype: torch.dtype | str = torch.bfloat16) -> None:
        if not isinstance(model, str) or model not in MODELS:
            raise ValueError(f"model={model!r} must be one of {sorted(MODELS)}")
        self.dtype = sizing.get_dtype(dtype)
        style = {"description_width": "110px"}
        self.model = widgets.Dropdown(options=[(m.name, k) for k, m in MODELS.items()], value=model,
                                      description="Model", style=style, layout=widgets.Layout(width="360px"))
        start = start_kv_heads(model)
        self.n_kv_heads = widgets.SelectionSlider(options=kv_head_options(MODELS[model].n_heads), value=start,
                                                  description="KV heads n_g", continuous_update=True,
                                                  style=style, layout=widgets.Layout(width="560px"))
        self.diagram = widgets.HTML()
        self.readout = widgets.HTML()
        self._switching = False
        self.model.observe(self._on_model, names="value")
        self.n_kv_heads.observe(self._refresh, names="value")
        super().__init__([row(self.model, self.n_kv_heads), self.diagram, self.readout])
        self._refresh()

    def _on_model(self, change: dict | None = None) -> None:
        # A callback: it only sets widget values (the slider's options and value, then the two HTMLs).
        spec = MODELS[self.model.value]
        self._switching = True
        try:
            self.n_kv_heads.options = kv_head_options(spec.n_heads)
            self.n_kv_heads.value = start_kv_heads(spec)
        finally:
            self._switching = False
        self._refresh()

    def _refresh(self, change: dict | None = None) -> None:
        # A callback: it only sets the HTML widgets' values.
        if self._switching:
            return
        spec, n_kv = MODELS[self.model.value], self.n_kv_heads.value
        self.diagram.value = sharing_svg(spec.n_heads, n_kv, title=f"{spec.name}: "
                                         f"{spec.n_heads} query heads → {n_kv} K/V heads (r = {spec.n_heads // n_kv})")
        self.readout.value = gqa_readout_html(spec, n_kv, self.dtype)

    def __repr__(self) -> str:
        # A short, deterministic text form (the notebook stores it as the cell's plain-text output).
        return f"GQAExplorer(model={self.model.value!r}, n_kv_heads={self.n_kv_heads.value})"


def gqa_explorer(model: str = "llama-3-8b", dtype: torch.dtype | str = torch.bfloat16) -> GQAExplorer:
    """Return chapter 6's widget: pick a model, slide n_kv_heads over the divisors of its n_heads, and
    see which query heads share which K/V head and what one token costs in the cache (``dtype``)."""
    return GQAExplorer(model, dtype)


# ----------------------------------------------------------------------------------------------------
# chapter 5: bytes a decode step reads, MHA against MQA


def decode_read_bytes(model: ModelSpec | str, seq_len: int, batch: int = 1, scheme: str | None = None,
                      dtype: torch.dtype | str = torch.bfloat16) -> dict:
    """Bytes one decode step reads from memory: every weight once (shared by the batch) plus every
    sequence's whole K/V cache (each new token attends to all ``seq_len`` cached ones).

        weights = n_params x bytes(dtype)      cache = batch x seq_len x cache_bytes_per_token(scheme)

    Returns {"weights", "cache", "total", "per_token" (total / batch)} in bytes. Only dense models
    (n_params all read each step); a mixture-of-experts model reads only its active experts."""
    spec = sizing.get_model(model)
    check_non_negative_int("seq_len", seq_len)
    check_positive_int("batch", batch)
    weights = sizing.weight_bytes(spec, dtype)
    cache = sizing.kv_cache_bytes(spec, seq_len, batch, dtype, scheme)
    return {"weights": weights, "cache": cache, "total": weights + cache, "per_token": (weights + cache) / batch}


#: Dense models the decode widget offers (DeepSeek-V2/V3 are mixtures of experts: n_params is not read; V4's
#: layers are none of the MHA/MQA pair the widget compares).
DENSE_MODELS: tuple[str, ...] = tuple(k for k, m in MODELS.items() if m.attention != "mla" and m.v4 is None)


def decode_figure(model: ModelSpec | str, seq_len: int, batch: int = 1,
                  dtype: torch.dtype | str = torch.bfloat16) -> go.Figure:
    """Two stacked bars, MHA and MQA of the same model, each split into weights (grey) and K/V cache (red)
    read by one decode step of ``batch`` sequences at ``seq_len`` tokens (:func:`decode_read_bytes`),
    labelled with the total and the share the cache takes; hover gives each part's bytes. Pure."""
    spec = sizing.get_model(model)
    bars = []
    for scheme in ("mha", "mqa"):
        r = decode_read_bytes(spec, seq_len, batch, scheme, dtype)
        record = get_scheme(scheme)
        published = " (published)" if spec.attention == scheme else ""
        bars.append(Bar(
            label=f"{record.label} · {record.describe(spec.attention_shape())}{published}",
            segments=(Segment("weights (once per step)", r["weights"], COLORS["muted"]),
                      Segment("K/V cache (all sequences)", r["cache"], COLORS["cache"])),
            text=f"{sizing.format_bytes(r['total'])} · cache {r['cache'] / r['total']:.0%}"))
    title = (f"Bytes read per decode step · {spec.name} · {seq_len:,} tokens × batch {batch}"
             f"<br><sup>grey: weights (once per step) · red: K/V cache (all sequences)</sup>")
    return hbar_figure(bars, title, "bytes read", format_value=sizing.format_bytes, height=230)


def decode_readout_html(model: ModelSpec | str, seq_len: int, batch: int = 1,
                        dtype: torch.dtype | str = torch.bfloat16) -> str:
    """One sentence with the decode widget's numbers: the cache bytes a step reads with MHA and with MQA,
    their ratio (n_heads), and how many times fewer bytes the whole step reads. Pure."""
    spec = sizing.get_model(model)
    mha = decode_read_bytes(spec, seq_len, batch, "mha", dtype)
    mqa = decode_read_bytes(spec, seq_len, batch, "mqa", dtype)
    cache_ratio = sizing.format_ratio(mha["cache"] / mqa["cache"])
    return (f'<div style="font-size:14px">Per step the cache read is {sizing.format_bytes(mha["cache"])} with MHA '
            f'and {sizing.format_bytes(mqa["cache"])} with MQA: <b>{cache_ratio}× less'
            f'</b> (one K/V head instead of {spec.n_heads}). With the weights counted, the whole step reads '
            f'<b>{sizing.format_ratio(mha["total"] / mqa["total"])}× less</b>; per generated token '
            f'{sizing.format_bytes(mha["per_token"])} against {sizing.format_bytes(mqa["per_token"])}.</div>')


class MQADecodeExplorer(widgets.VBox):
    """The container :func:`mqa_decode_explorer` returns: ``.model``, ``.seq_len`` and ``.batch``
    controls, the ``.chart`` (:class:`attnlab.figures.LiveFigure`) and ``.readout`` (HTML) the callbacks fill."""

    def __init__(self, model: str = "llama-2-7b", seq_len: int = 4096, batch: int = 8,
                 dtype: torch.dtype | str = torch.bfloat16) -> None:
        if model not in DENSE_MODELS:
            raise ValueError(f"model={model!r} must be one of the dense models {sorted(DENSE_MODELS)}")
        if seq_len not in dict(CONTEXT_OPTIONS).values():
            raise ValueError(f"seq_len={seq_len!r} must be one of {[n for _, n in CONTEXT_OPTIONS]}")
        if batch not in BATCH_OPTIONS:
            raise ValueError(f"batch={batch!r} must be one of {list(BATCH_OPTIONS)}")
        self.dtype = sizing.get_dtype(dtype)
        style = {"description_width": "90px"}
        self.model = widgets.Dropdown(options=[(MODELS[k].name, k) for k in DENSE_MODELS], value=model,
                                      description="Model", style=style, layout=widgets.Layout(width="320px"))
        self.seq_len = widgets.SelectionSlider(options=list(CONTEXT_OPTIONS), value=seq_len, description="Context",
                                               style=style, layout=widgets.Layout(width="420px"))
        self.batch = widgets.SelectionSlider(options=list(BATCH_OPTIONS), value=batch, description="Batch",
                                             style=style, layout=widgets.Layout(width="420px"))
        self.chart = LiveFigure(decode_figure(model, seq_len, batch, self.dtype))
        self.readout = widgets.HTML()
        for control in (self.model, self.seq_len, self.batch):
            control.observe(self._refresh, names="value")
        super().__init__([self.model, row(self.seq_len, self.batch), self.chart, self.readout])
        self._refresh()

    def _refresh(self, change: dict | None = None) -> None:
        # A callback: it only sets the widgets' values (the chart's in place).
        args = (self.model.value, self.seq_len.value, self.batch.value, self.dtype)
        self.chart.show_figure(decode_figure(*args))
        self.readout.value = decode_readout_html(*args)

    def __repr__(self) -> str:
        # A short, deterministic text form (the notebook stores it as the cell's plain-text output).
        return (f"MQADecodeExplorer(model={self.model.value!r}, seq_len={self.seq_len.value}, "
                f"batch={self.batch.value})")


def mqa_decode_explorer(model: str = "llama-2-7b", seq_len: int = 4096, batch: int = 8,
                        dtype: torch.dtype | str = torch.bfloat16) -> MQADecodeExplorer:
    """Return chapter 5's widget: pick a dense model, a context length and a batch, and compare the bytes
    one decode step reads with MHA and with MQA (weights + K/V cache, from :mod:`attnlab.sizing`)."""
    return MQADecodeExplorer(model, seq_len, batch, dtype)
