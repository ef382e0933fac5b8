"""The widgets of chapters 7 (multi-head latent attention), 8 (MLA at inference) and 9 (decoupled RoPE).

Everything a widget shows is rendered by a pure function, so tests check it without a browser:

- chapter 7: :func:`latent_figures` (DeepSeek-V3's cache at any latent width d_c and RoPE width d_h^R, from
  :mod:`attnlab.sizing`), :func:`tiny_rank` and :func:`latent_figure` / :func:`latent_readout_html` (the same
  ratio d_c / d_h applied to the tiny MHA model's real keys and values, whose rank-r errors are computed
  once by :mod:`attnlab.lowrank`), :func:`latent_diagram_svg` (what is cached and what is rebuilt);
- chapter 8: :func:`decode_costs_figure` and :func:`decode_readout_html` (multiply-adds and bytes of one decode
  step for three ways to run MLA, from :func:`attnlab.costs.mla_decode_step_costs`);
- chapter 9: :func:`rope_pair_state` (one RoPE pair of a query at position m and a key at position n),
  :func:`rope_pair_svg`, :func:`rope_readout_html`.

:func:`latent_explorer`, :func:`absorption_explorer` and :func:`rope_explorer` wrap them in ipywidgets
containers whose sliders offer only valid values and whose callbacks only set widget values.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence

import ipywidgets as widgets
import plotly.graph_objects as go
import torch
from plotly.subplots import make_subplots

from attnlab import sizing
from attnlab._validate import check_even, check_non_negative_int, check_positive_int
from attnlab.costs import MLA_STRATEGIES, AttentionShape, mla_decode_step_costs
from attnlab.figures import Bar, LiveFigure, Segment, hbar_figure
from attnlab.interactive.svg import html_table as _table
from attnlab.interactive.svg import svg_open as _svg_open
from attnlab.interactive.svg import svg_text as _text
from attnlab.plots import COLORS, SCHEME_COLORS
from attnlab.rope import apply_rope, rope_frequencies
from attnlab.sizing import ModelSpec
from attnlab.widgets import context_options, row

# ----------------------------------------------------------------------------------------------------
# chapter 7: the latent's width against the cache and against the error on real keys and values

#: Latent widths d_c the chapter 7 slider offers (DeepSeek-V3 uses 512 = 4 d_h).
DC_OPTIONS: tuple[int, ...] = tuple(range(64, 1025, 64))

#: Decoupled RoPE key widths d_h^R the slider offers: even, as RoPE rotates pairs (DeepSeek-V3: 64 = d_h / 2).
ROPE_OPTIONS: tuple[int, ...] = (0, 16, 32, 64, 128)


def latent_spec(d_c: int, d_h_rope: int, model: ModelSpec | str = "deepseek-v3") -> ModelSpec:
    """``model``'s shape with MLA's latent width set to ``d_c`` and its RoPE key width to ``d_h_rope``
    (layers, heads and d_h unchanged); raises ValueError for d_c < 1 or an odd or negative d_h_rope."""
    check_positive_int("d_c", d_c)
    check_non_negative_int("d_h_rope", d_h_rope)
    check_even("d_h_rope", d_h_rope)
    spec = sizing.get_model(model)
    return dataclasses.replace(spec, name=f"{spec.name} (d_c {d_c}, d_h^R {d_h_rope})", attention="mla",
                               kv_lora_rank=d_c, qk_rope_head_dim=d_h_rope)


def latent_figures(d_c: int, d_h_rope: int, model: ModelSpec | str = "deepseek-v3",
                   dtype: torch.dtype | str = torch.bfloat16) -> dict:
    """The cache of ``model``'s shape with MLA at latent width d_c and RoPE width d_h^R, from
    :mod:`attnlab.sizing`: numbers per token and layer (d_c + d_h^R), bytes per token (all layers) with MLA
    and with MHA, their ratio, and the GQA group count with the same cache, (d_c + d_h^R) / (2 d_h)."""
    spec = latent_spec(d_c, d_h_rope, model)
    mla = sizing.cache_bytes_per_token(spec, dtype)
    mha = sizing.cache_bytes_per_token(spec, dtype, "mha")
    per_layer = sizing.kv_elements_per_token(spec, per_layer=True)
    return {"d_c": d_c, "d_h_rope": d_h_rope, "n_layers": spec.n_layers, "head_dim": spec.head_dim,
            "elements_per_layer": per_layer, "mla_bytes_per_token": mla, "mha_bytes_per_token": mha,
            "ratio_vs_mha": mha / mla, "gqa_groups": per_layer / (2 * spec.head_dim)}


def tiny_rank(d_c: int, tiny_head_dim: int, model: ModelSpec | str = "deepseek-v3") -> int:
    """The rank with the same ratio to a head as d_c has in ``model``: d_c x tiny_head_dim / d_h.

    DeepSeek-V2 chooses d_c = 4 d_h; the tiny MLA model, with 16-wide heads, has d_c = 64 = 4 x 16. So
    DeepSeek-V3's d_c = 512 corresponds to rank 64 on the tiny model's keys and values."""
    check_positive_int("d_c", d_c)
    check_positive_int("tiny_head_dim", tiny_head_dim)
    spec = sizing.get_model(model)
    rank = d_c * tiny_head_dim / spec.head_dim
    if rank != int(rank):
        raise ValueError(f"d_c={d_c} x tiny_head_dim={tiny_head_dim} / d_h={spec.head_dim} is not a whole rank")
    return int(rank)


def _check_errors(errors: Mapping[int, Sequence[float]]) -> None:
    if not errors:
        raise ValueError("errors must map ranks to per-layer errors, got an empty mapping")
    widths = {len(v) for v in errors.values()}
    if len(widths) != 1 or 0 in widths:
        raise ValueError("errors must hold the same number (> 0) of per-layer values for every rank")


def latent_figure(d_c: int, d_h_rope: int, errors: Mapping[int, Sequence[float]], tiny_head_dim: int = 16,
                  model: ModelSpec | str = "deepseek-v3") -> go.Figure:
    """Two panels. Top: bytes per token of ``model``'s shape with MHA and with MLA at (d_c, d_h^R),
    bfloat16, as bars. Bottom: ``errors`` (rank -> relative error of the best rank-r approximation of one
    layer's joint [K, V], one value per layer) as one curve per layer, the rank :func:`tiny_rank` gives for
    d_c marked by a dashed line and one point per layer (hover: layer, rank, error). Pure."""
    _check_errors(errors)
    f = latent_figures(d_c, d_h_rope, model)
    rank = tiny_rank(d_c, tiny_head_dim, model)
    spec = sizing.get_model(model)
    fig = make_subplots(rows=2, cols=1, row_heights=[0.3, 0.7], vertical_spacing=0.2, subplot_titles=[
        f"{spec.name} shape, bytes per token ({f['n_layers']} layers, bfloat16): MLA is "
        f"{sizing.format_ratio(f['ratio_vs_mha'])}× smaller than MHA, as GQA with {f['gqa_groups']:g} groups",
        f"Tiny MHA model: error of the best rank-r [K, V] at r = d_c × {tiny_head_dim} / {spec.head_dim} "
        f"(same d_c / d_h)"])
    bars = [Bar("MHA", (Segment("cache per token", f["mha_bytes_per_token"], SCHEME_COLORS["mha"]),),
                f"{sizing.format_bytes(f['mha_bytes_per_token'])} · 2 n_h d_h = "
                f"{2 * spec.n_heads * spec.head_dim:,} per layer"),
            Bar("MLA", (Segment("cache per token", f["mla_bytes_per_token"], SCHEME_COLORS["mla"]),),
                f"{sizing.format_bytes(f['mla_bytes_per_token'])} · d_c + d_h^R = {d_c} + {d_h_rope} per layer")]
    hbar_figure(bars, "bytes per token", format_value=lambda v: f"{v:,} B", fig=fig, row=1, col=1)
    ranks = sorted(errors)
    n_layers = len(next(iter(errors.values())))
    shades = ["#b39ddb", "#9575cd", "#7e57c2", "#5e35b1", "#4527a0", "#311b92"]
    for layer in range(n_layers):
        fig.add_trace(go.Scatter(x=ranks, y=[errors[r][layer] for r in ranks], mode="lines",
                                 name=f"layer {layer}", line=dict(color=shades[layer % len(shades)], width=1.8),
                                 hovertemplate=f"layer {layer}<br>rank %{{x}}<br>error %{{y:.1%}}<extra></extra>"),
                      row=2, col=1)
    marked = errors.get(rank, [])
    fig.add_trace(go.Scatter(x=[rank] * len(marked), y=list(marked), mode="markers", name=f"r = {rank}",
                             marker=dict(color=COLORS["cache"], size=8),
                             text=[f"layer {i}" for i in range(len(marked))],
                             hovertemplate=f"%{{text}}<br>rank {rank}<br>error %{{y:.1%}}<extra></extra>"),
                  row=2, col=1)
    mean = sum(marked) / len(marked) if marked else float("nan")
    fig.add_vline(x=rank, line=dict(color=COLORS["cache"], dash="dash", width=1.5), row=2, col=1,
                  annotation=dict(text=f"r = {rank}: mean error {mean:.1%}" if marked else f"r = {rank}",
                                  font=dict(color=COLORS["cache"]), yanchor="top"),
                  annotation_position="top right" if rank < ranks[-1] * 0.6 else "top left")
    fig.update_xaxes(title_text="rank r (numbers a latent would cache per token and layer)", range=[0, ranks[-1]],
                     row=2, col=1)
    fig.update_yaxes(title_text="relative error", range=[0, 1.02], tickformat=".0%", row=2, col=1)
    fig.update_layout(template="attnlab", barmode="stack", bargap=0.3, height=520, showlegend=False,
                      margin=dict(t=60))
    return fig


def latent_readout_html(d_c: int, d_h_rope: int, errors: Mapping[int, Sequence[float]], tiny_head_dim: int = 16,
                        model: ModelSpec | str = "deepseek-v3") -> str:
    """The numbers of :func:`latent_figure` as an HTML table (bytes per token, ratio against MHA, the GQA
    group count with the same cache, the tiny model's rank and mean error). Pure."""
    _check_errors(errors)
    f = latent_figures(d_c, d_h_rope, model)
    rank = tiny_rank(d_c, tiny_head_dim, model)
    spec = sizing.get_model(model)
    rows = [
        ("Cached per token and layer", f"d_c + d_h^R = {d_c} + {d_h_rope} = {f['elements_per_layer']:,} numbers"),
        (f"Bytes per token ({spec.n_layers} layers, bfloat16)",
         f"{f['mla_bytes_per_token']:,} B ({sizing.format_bytes(f['mla_bytes_per_token'])})"),
        ("Against MHA of the same shape", f"{sizing.format_ratio(f['ratio_vs_mha'])}× smaller "
                                          f"({sizing.format_bytes(f['mha_bytes_per_token'])} per token)"),
        ("Same cache as GQA with", f"{f['gqa_groups']:g} groups of K/V heads"),
    ]
    if rank in errors:
        layer_errors = ", ".join(f"{e:.1%}" for e in errors[rank])
        rows.append((f"Tiny MHA, rank {rank} of its [K, V]", f"error {sum(errors[rank]) / len(errors[rank]):.1%} "
                                                            f"(layers: {layer_errors})"))
    return _table(rows)


class LatentExplorer(widgets.VBox):
    """The container :func:`latent_explorer` returns: ``.d_c`` and ``.d_h_rope`` (SelectionSliders offering
    :data:`DC_OPTIONS` and :data:`ROPE_OPTIONS`), ``.chart`` (:class:`attnlab.figures.LiveFigure`) and
    ``.readout`` (HTML)."""

    def __init__(self, errors: Mapping[int, Sequence[float]], tiny_head_dim: int = 16, d_c: int = 512,
                 d_h_rope: int = 64, model: str = "deepseek-v3") -> None:
        _check_errors(errors)
        if d_c not in DC_OPTIONS:
            raise ValueError(f"d_c={d_c!r} must be one of {list(DC_OPTIONS)}")
        if d_h_rope not in ROPE_OPTIONS:
            raise ValueError(f"d_h_rope={d_h_rope!r} must be one of {list(ROPE_OPTIONS)}")
        missing = [tiny_rank(d, tiny_head_dim, model) for d in DC_OPTIONS
                   if tiny_rank(d, tiny_head_dim, model) not in errors]
        if missing:
            raise ValueError(f"errors has no entry for the ranks {missing} the d_c slider reaches")
        self.errors, self.tiny_head_dim, self.model = dict(errors), tiny_head_dim, model
        style = {"description_width": "150px"}
        self.d_c = widgets.SelectionSlider(options=list(DC_OPTIONS), value=d_c, description="latent d_c",
                                           style=style, layout=widgets.Layout(width="520px"))
        self.d_h_rope = widgets.SelectionSlider(options=list(ROPE_OPTIONS), value=d_h_rope,
                                                description="RoPE key d_h^R", style=style,
                                                layout=widgets.Layout(width="520px"))
        self.chart = LiveFigure(latent_figure(d_c, d_h_rope, self.errors, tiny_head_dim, model))
        self.readout = widgets.HTML()
        for control in (self.d_c, self.d_h_rope):
            control.observe(self._refresh, names="value")
        super().__init__([self.d_c, self.d_h_rope, self.readout, self.chart])
        self._refresh()

    def _refresh(self, change: dict | None = None) -> None:
        # A callback: it only sets the widgets' values, the chart's in place (the errors were computed beforehand).
        args = (self.d_c.value, self.d_h_rope.value, self.errors, self.tiny_head_dim, self.model)
        self.chart.show_figure(latent_figure(*args))
        self.readout.value = latent_readout_html(*args)

    def __repr__(self) -> str:
        # A short, deterministic text form (the notebook stores it as the cell's plain-text output).
        return f"LatentExplorer(d_c={self.d_c.value}, d_h_rope={self.d_h_rope.value})"


def latent_explorer(errors: Mapping[int, Sequence[float]], tiny_head_dim: int = 16, d_c: int = 512,
                    d_h_rope: int = 64, model: str = "deepseek-v3") -> LatentExplorer:
    """Return chapter 7's widget: slide the latent width d_c and the RoPE key width d_h^R and read
    ``model``'s cache per token against MHA, and the error of a rank-(d_c x tiny_head_dim / d_h)
    factorisation of the tiny model's real keys and values (``errors``: rank -> per-layer errors, from
    :func:`attnlab.lowrank.lowrank_error`, for every rank the slider reaches)."""
    return LatentExplorer(errors, tiny_head_dim, d_c, d_h_rope, model)


def latent_diagram_svg(n_heads: int = 4, d_model: int = 7168, d_c: int = 512, d_h: int = 128,
                       d_h_rope: int = 64, total_heads: int | None = None, width: int = 720) -> str:
    """Inline SVG of MLA's key/value path for one token: h_t (d_model) -> W^DKV, RMSNorm -> the cached latent
    c^KV_t (d_c) -> one W^UK_i and one W^UV_i per head -> k^C_{t,i}, v^C_{t,i}; beside it the cached RoPE
    key k^R_t (d_h^R). Draws ``n_heads`` heads (at most 8) of ``total_heads`` (default n_heads). Pure."""
    check_positive_int("n_heads", n_heads)
    if n_heads > 8:
        raise ValueError(f"n_heads={n_heads} must be at most 8 to fit the drawing")
    total_heads = n_heads if total_heads is None else total_heads
    check_positive_int("total_heads", total_heads)
    height = 318
    parts = _svg_open(width, height, 12)
    cx, rx = 200, 430  # centres of the latent and of the RoPE key

    def box(x, y, w, h, fill, label, sub=""):
        out = [f'<rect x="{x:.1f}" y="{y:.1f}" width="{w:.1f}" height="{h:.1f}" rx="4" fill="{fill}"/>',
               _text(x + w / 2, y + h / 2 + (-2 if sub else 4), label, text_anchor="middle", fill="white",
                     font_weight="bold")]
        if sub:
            out.append(_text(x + w / 2, y + h / 2 + 13, sub, text_anchor="middle", fill="white", font_size=11))
        return out

    def arrow(x1, y1, x2, y2):
        return [f'<line x1="{x1:.1f}" y1="{y1:.1f}" x2="{x2:.1f}" y2="{y2:.1f}" stroke="#555" stroke-width="1.4" '
                f'marker-end="url(#arrow)"/>']

    parts.append('<defs><marker id="arrow" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" markerHeight="7" '
                 'orient="auto-start-reverse"><path d="M 0 0 L 10 5 L 0 10 z" fill="#555"/></marker></defs>')
    parts += box(cx - 75, 8, 150, 38, COLORS["muted"], "h_t", f"hidden state, {d_model:,}")
    parts += arrow(cx, 46, cx, 92)
    parts.append(_text(cx - 8, 74, "W^DKV, RMSNorm", text_anchor="end", font_size=11, fill="#333"))
    parts += arrow(cx + 75, 36, rx - 10, 92)
    parts.append(_text(rx - 20, 56, "W^KR, RoPE", font_size=11, fill="#333"))
    parts += box(cx - 85, 94, 170, 40, COLORS["latent"], "c^KV_t", f"latent, d_c = {d_c}")
    parts += box(rx - 70, 94, 140, 40, COLORS["rope"], "k^R_t", f"RoPE key, d_h^R = {d_h_rope}")
    parts.append(f'<rect x="{cx - 97}" y="86" width="{rx + 82 - (cx - 97)}" height="56" rx="6" fill="none" '
                 f'stroke="{COLORS["cache"]}" stroke-width="2" stroke-dasharray="6 4"/>')
    parts.append(_text(rx + 90, 110, "the cache:", fill=COLORS["cache"], font_weight="bold"))
    parts.append(_text(rx + 90, 127, f"{d_c + d_h_rope} numbers per token", fill=COLORS["cache"]))
    parts.append(_text(rx + 90, 142, "and layer", fill=COLORS["cache"]))
    left, right = 20, width - 20
    slot = (right - left) / n_heads
    kw = min(56.0, slot * 0.4)
    for i in range(n_heads):
        x = left + slot * i + slot / 2
        parts += arrow(cx, 134, x, 196)
        parts += box(x - kw - 2, 198, kw, 32, COLORS["key"], f"k{i}")
        parts += box(x + 2, 198, kw, 32, COLORS["value"], f"v{i}")
    parts.append(_text(width - 20, 156, "up-projections W^UK_i, W^UV_i, one pair per head", text_anchor="end",
                       font_size=11, fill="#333"))
    shown = f"{n_heads} of {total_heads} heads drawn" if total_heads > n_heads else f"{n_heads} heads"
    notes = [
        f"{shown}; head i rebuilds k^C_t,i = W^UK_i c^KV_t and v^C_t,i = W^UV_i c^KV_t, {d_h} wide each,",
        "with its own matrices. The latent and the RoPE key are shared by K and V and by all heads;",
        "the per-head keys and values are never cached.",
    ]
    parts += [_text(left, 254 + 18 * j, line, font_size=12, fill="#333") for j, line in enumerate(notes)]
    parts.append("</svg>")
    return "".join(parts)


# ----------------------------------------------------------------------------------------------------
# chapter 8: one decode step, three ways to run MLA

#: The three ways to run MLA that chapter 8 compares, in display order, with their labels.
STRATEGIES: dict[str, str] = MLA_STRATEGIES

#: Context lengths the chapter 8 slider offers (label, tokens): 1K to 128K.
CONTEXT_OPTIONS: tuple[tuple[str, int], ...] = context_options(2**17)

#: Head counts the chapter 8 slider offers (DeepSeek-V3 has 128).
HEAD_OPTIONS: tuple[int, ...] = (1, 2, 4, 8, 16, 32, 64, 128)


def step_shape(n_heads: int, d_c: int = 512, d_h: int = 128, d_v: int = 128, d_h_rope: int = 64) -> AttentionShape:
    """The MLA layer the chapter 8 widget counts: n_h heads, latent d_c, key d_h, value d_v, RoPE key d_h^R
    (defaults: DeepSeek-V3's widths). d_model does not enter the counts; it is set to n_h d_h."""
    for name, value in (("n_heads", n_heads), ("d_c", d_c), ("d_h", d_h), ("d_v", d_v)):
        check_positive_int(name, value)
    check_non_negative_int("d_h_rope", d_h_rope)
    return AttentionShape(d_model=n_heads * d_h, n_heads=n_heads, head_dim=d_h, v_head_dim=d_v, kv_lora_rank=d_c,
                          qk_rope_head_dim=d_h_rope)


def _si(n: float) -> str:
    """3 significant digits with an SI prefix: 1.23e9 -> "1.23 G"."""
    for unit, scale in (("T", 1e12), ("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(n) >= scale * 0.9995:
            value = n / scale
            return f"{value:.{0 if value >= 100 else 1 if value >= 10 else 2}f} {unit}"
    return f"{n:.0f} "


def decode_costs_figure(n_heads: int, seq_len: int, d_c: int = 512, d_h: int = 128, d_v: int = 128,
                        d_h_rope: int = 64) -> go.Figure:
    """FLOPs and bytes of one decode step of one layer (:func:`attnlab.costs.mla_decode_step_costs`,
    bfloat16) in two panels, one bar per strategy on linear scales; the bytes split into the cache read
    (red) and the K and V rebuilt in memory (the strategy's colour, lighter). Hover gives exact counts. Pure."""
    costs = mla_decode_step_costs(step_shape(n_heads, d_c, d_h, d_v, d_h_rope), seq_len)
    colours = {"expanded": SCHEME_COLORS["mha"], "naive": COLORS["muted"], "absorbed": SCHEME_COLORS["mla"]}
    fig = make_subplots(rows=2, cols=1, vertical_spacing=0.22, subplot_titles=[
        "FLOPs (2 per multiply-add)", "bytes: cache read (red) + K/V rebuilt in memory (written, then read)"])
    flops = [Bar(STRATEGIES[s], (Segment("FLOPs", costs[s]["flops"], colours[s]),), f"{_si(costs[s]['flops'])}FLOP")
             for s in STRATEGIES]
    hbar_figure(flops, "FLOPs", format_value=lambda v: f"{v:,} FLOP", fig=fig, row=1, col=1)
    nbytes = [Bar(STRATEGIES[s], (Segment("cache read", costs[s]["cache_bytes"], COLORS["cache"]),
                                  Segment("K/V rebuilt, written then read", costs[s]["extra_bytes"], colours[s])),
                  sizing.format_bytes(costs[s]["cache_bytes"] + costs[s]["extra_bytes"])) for s in STRATEGIES]
    hbar_figure(nbytes, "bytes", format_value=lambda v: f"{v:,} B", fig=fig, row=2, col=1)
    fig.update_layout(template="attnlab", barmode="stack", bargap=0.3, height=420, showlegend=False,
                      margin=dict(t=80),
                      title=dict(text=f"One decode step, one layer: {n_heads} heads, {seq_len:,} cached tokens, "
                                      f"bfloat16"))
    return fig


def decode_readout_html(n_heads: int, seq_len: int, d_c: int = 512, d_h: int = 128, d_v: int = 128,
                        d_h_rope: int = 64) -> str:
    """The numbers of :func:`decode_costs_figure` as an HTML table: FLOPs, bytes and FLOPs per byte of each
    strategy. Pure."""
    costs = mla_decode_step_costs(step_shape(n_heads, d_c, d_h, d_v, d_h_rope), seq_len)
    rows = []
    for s, label in STRATEGIES.items():
        c = costs[s]
        n_bytes = c["cache_bytes"] + c["extra_bytes"]
        rows.append((label, f"{_si(c['flops'])}FLOP · {sizing.format_bytes(n_bytes)} · "
                            f"{c['flops'] / n_bytes:.1f} FLOP/byte"))
    naive, absorbed = costs["naive"]["flops"], costs["absorbed"]["flops"]
    rows.append(("Re-expanding against absorbing", f"{naive / absorbed:.1f}× the FLOPs"))
    return _table(rows)


class AbsorptionExplorer(widgets.VBox):
    """The container :func:`absorption_explorer` returns: ``.seq_len`` and ``.n_heads`` (SelectionSliders
    over :data:`CONTEXT_OPTIONS` and :data:`HEAD_OPTIONS`), ``.chart`` (:class:`attnlab.figures.LiveFigure`) and
    ``.readout`` (HTML)."""

    def __init__(self, seq_len: int = 4096, n_heads: int = 128, d_c: int = 512, d_h: int = 128, d_v: int = 128,
                 d_h_rope: int = 64) -> None:
        if seq_len not in dict(CONTEXT_OPTIONS).values():
            raise ValueError(f"seq_len={seq_len!r} must be one of {[n for _, n in CONTEXT_OPTIONS]}")
        if n_heads not in HEAD_OPTIONS:
            raise ValueError(f"n_heads={n_heads!r} must be one of {list(HEAD_OPTIONS)}")
        self.widths = (d_c, d_h, d_v, d_h_rope)
        step_shape(n_heads, *self.widths)  # validates the widths
        style = {"description_width": "110px"}
        self.seq_len = widgets.SelectionSlider(options=list(CONTEXT_OPTIONS), value=seq_len, description="context",
                                               style=style, layout=widgets.Layout(width="420px"))
        self.n_heads = widgets.SelectionSlider(options=list(HEAD_OPTIONS), value=n_heads, description="heads n_h",
                                               style=style, layout=widgets.Layout(width="420px"))
        self.chart = LiveFigure(decode_costs_figure(n_heads, seq_len, *self.widths))
        self.readout = widgets.HTML()
        for control in (self.seq_len, self.n_heads):
            control.observe(self._refresh, names="value")
        super().__init__([row(self.seq_len, self.n_heads), self.chart, self.readout])
        self._refresh()

    def _refresh(self, change: dict | None = None) -> None:
        # A callback: it only sets the widgets' values (the chart's in place).
        args = (self.n_heads.value, self.seq_len.value, *self.widths)
        self.chart.show_figure(decode_costs_figure(*args))
        self.readout.value = decode_readout_html(*args)

    def __repr__(self) -> str:
        # A short, deterministic text form (the notebook stores it as the cell's plain-text output).
        return f"AbsorptionExplorer(seq_len={self.seq_len.value}, n_heads={self.n_heads.value})"


def absorption_explorer(seq_len: int = 4096, n_heads: int = 128, d_c: int = 512, d_h: int = 128, d_v: int = 128,
                        d_h_rope: int = 64) -> AbsorptionExplorer:
    """Return chapter 8's widget: slide the context length and the number of heads and compare the FLOPs
    and bytes of one decode step for the three ways to run MLA (:func:`attnlab.costs.mla_decode_step_costs`)."""
    return AbsorptionExplorer(seq_len, n_heads, d_c, d_h, d_v, d_h_rope)


# ----------------------------------------------------------------------------------------------------
# chapter 9: one RoPE pair of a query at position m and a key at position n

#: Positions the chapter 9 sliders offer for m and n, and for the shift added to both.
POSITION_MAX = 64
SHIFT_MAX = 960


def _vector(name: str, x: torch.Tensor) -> torch.Tensor:
    if not isinstance(x, torch.Tensor) or x.dim() != 1:
        raise ValueError(f"{name} must be a 1-D tensor, got {type(x).__name__} "
                         f"{tuple(x.shape) if isinstance(x, torch.Tensor) else ''}")
    check_even(f"{name}.shape[0]", x.shape[0])
    return x.detach().to("cpu", torch.float64)


def rope_pair_state(q: torch.Tensor, k: torch.Tensor, m: int, n: int, pair: int, base: float = 10000.0,
                    shift: int = 0) -> dict:
    """One RoPE pair (halves convention: dimensions (i, i + d/2)) of query q at position m + shift and key k
    at position n + shift: the 2-D pairs before and after rotation, the angles, the pair's dot product and
    the full score q_m · k_n over all pairs (:func:`attnlab.rope.apply_rope`), float64.

    Returns {"q", "k" (unrotated pairs), "q_rot", "k_rot" (rotated pairs, as (x, y) tuples), "theta" (the
    pair's frequency), "angle_q", "angle_k", "pair_score", "score", "offset" (m - n), "m", "n" (with shift)}."""
    q, k = _vector("q", q), _vector("k", k)
    if q.shape != k.shape:
        raise ValueError(f"q has shape {tuple(q.shape)}, k has {tuple(k.shape)}: they must match")
    for name, value in (("m", m), ("n", n), ("shift", shift)):
        check_non_negative_int(name, value)
    d = q.shape[0]
    check_non_negative_int("pair", pair)
    if pair >= d // 2:
        raise ValueError(f"pair={pair} must be < d/2 = {d // 2}")
    mm, nn = m + shift, n + shift
    q_rot = apply_rope(q[None], torch.tensor([mm]), base)[0]
    k_rot = apply_rope(k[None], torch.tensor([nn]), base)[0]
    theta = float(rope_frequencies(d, base)[pair])
    a, b = pair, pair + d // 2

    def xy(v):
        return (float(v[a]), float(v[b]))

    return {"q": xy(q), "k": xy(k), "q_rot": xy(q_rot), "k_rot": xy(k_rot), "theta": theta,
            "angle_q": mm * theta, "angle_k": nn * theta,
            "pair_score": float(q_rot[a] * k_rot[a] + q_rot[b] * k_rot[b]), "score": float(q_rot @ k_rot),
            "offset": m - n, "m": mm, "n": nn}


def rope_pair_svg(q: torch.Tensor, k: torch.Tensor, m: int, n: int, pair: int, base: float = 10000.0,
                  shift: int = 0, width: int = 720) -> str:
    """Inline SVG of :func:`rope_pair_state`: the chosen pair of q (blue) and k (green) on a circle, faint
    before rotation and solid after, with the angle between them; on the right the numbers. Pure."""
    s = rope_pair_state(q, k, m, n, pair, base, shift)
    d = len(q)
    height = 350
    parts = _svg_open(width, height)
    parts.append('<defs>' + "".join(
        f'<marker id="tip-{name}" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="6" markerHeight="6" '
        f'orient="auto-start-reverse"><path d="M 0 0 L 10 5 L 0 10 z" fill="{colour}"/></marker>'
        for name, colour in (("q", COLORS["query"]), ("k", COLORS["key"]))) + '</defs>')
    cx, cy, radius = 175, 190, 125
    scale = radius / max(math.hypot(*s["q"]), math.hypot(*s["k"]), 1e-12)
    parts.append(_text(4, 18, f"pair i = {pair} (dimensions {pair} and {pair + d // 2} of {d}): "
                       f"θ_{pair} = {s['theta']:.4g} rad per position", font_size=14, font_weight="bold"))
    parts += [f'<circle cx="{cx}" cy="{cy}" r="{radius}" fill="none" stroke="#ddd"/>',
              f'<line x1="{cx - radius - 8}" y1="{cy}" x2="{cx + radius + 8}" y2="{cy}" stroke="#eee"/>',
              f'<line x1="{cx}" y1="{cy - radius - 8}" x2="{cx}" y2="{cy + radius + 8}" stroke="#eee"/>']

    def vec(xy, colour, tip, faint):
        x, y = cx + scale * xy[0], cy - scale * xy[1]
        if faint:
            return (f'<line x1="{cx}" y1="{cy}" x2="{x:.1f}" y2="{y:.1f}" stroke="{colour}" stroke-width="2" '
                    f'stroke-opacity="0.35" stroke-dasharray="5 4"/>'
                    f'<circle cx="{x:.1f}" cy="{y:.1f}" r="3" fill="{colour}" fill-opacity="0.35"/>')
        return (f'<line x1="{cx}" y1="{cy}" x2="{x:.1f}" y2="{y:.1f}" stroke="{colour}" stroke-width="3" '
                f'marker-end="url(#tip-{tip})"/>')

    parts += [vec(s["q"], COLORS["query"], "q", True), vec(s["k"], COLORS["key"], "k", True),
              vec(s["q_rot"], COLORS["query"], "q", False), vec(s["k_rot"], COLORS["key"], "k", False)]
    for name, xy, colour in (("q_m", s["q_rot"], COLORS["query"]), ("k_n", s["k_rot"], COLORS["key"])):
        norm = math.hypot(*xy) or 1.0
        parts.append(_text(cx + (scale * xy[0] + 18 * xy[0] / norm), cy - (scale * xy[1] + 18 * xy[1] / norm) + 4,
                           name, text_anchor="middle", fill=colour, font_weight="bold"))
    x0 = 340
    lines = [
        ("query position (m + shift)", f"{s['m']}"), ("key position (n + shift)", f"{s['n']}"),
        ("their difference m − n", f"{s['m'] - s['n']}"),
        ("q rotated by m θ", f"{math.degrees(s['angle_q']) % 360:.1f}°"),
        ("k rotated by n θ", f"{math.degrees(s['angle_k']) % 360:.1f}°"),
        ("this pair's q · k", f"{s['pair_score']:+.4f}"),
        (f"score q_m · k_n (all {d // 2} pairs)", f"{s['score']:+.4f}"),
    ]
    for i, (label, value) in enumerate(lines):
        y = 70 + i * 28
        bold = "bold" if i >= 5 else "normal"
        parts += [_text(x0, y, label, fill="#333"), _text(width - 12, y, value, text_anchor="end", font_weight=bold)]
    parts.append(_text(x0, 70 + len(lines) * 28 + 8, "dashed: before rotation · solid: after", font_size=11,
                       fill="#666"))
    parts.append("</svg>")
    return "".join(parts)


def rope_readout_html(q: torch.Tensor, k: torch.Tensor, m: int, n: int, pair: int, base: float = 10000.0,
                      shift: int = 0) -> str:
    """One sentence: the score at (m + shift, n + shift) and the same score at shift 0, which it equals
    (to float64 rounding) because RoPE scores depend only on m - n. Pure."""
    s = rope_pair_state(q, k, m, n, pair, base, shift)
    s0 = rope_pair_state(q, k, m, n, pair, base, 0)
    same = math.isclose(s["score"], s0["score"], rel_tol=1e-9, abs_tol=1e-12)
    return (f'<div style="font-size:14px">Score at positions ({s["m"]}, {s["n"]}): <b>{s["score"]:+.4f}</b>; '
            f'at ({m}, {n}) without the shift: <b>{s0["score"]:+.4f}</b> '
            f'({"the same: only m − n = " + str(m - n) + " matters" if same else "different"}).</div>')


class RoPEExplorer(widgets.VBox):
    """The container :func:`rope_explorer` returns: ``.m``, ``.n`` (IntSliders 0..POSITION_MAX), ``.shift``
    (IntSlider 0..SHIFT_MAX, added to both positions), ``.pair`` (IntSlider over the d/2 pairs), and the
    ``.chart`` and ``.readout`` HTML widgets."""

    def __init__(self, q: torch.Tensor, k: torch.Tensor, m: int = 5, n: int = 2, pair: int = 0,
                 base: float = 10000.0) -> None:
        rope_pair_state(q, k, m, n, pair, base)  # validates the arguments
        if max(m, n) > POSITION_MAX:
            raise ValueError(f"m={m} and n={n} must be at most {POSITION_MAX}")
        self.q, self.k, self.base = _vector("q", q), _vector("k", k), base
        style = {"description_width": "130px"}
        layout = widgets.Layout(width="440px")
        self.m = widgets.IntSlider(value=m, min=0, max=POSITION_MAX, description="query position m", style=style,
                                   layout=layout)
        self.n = widgets.IntSlider(value=n, min=0, max=POSITION_MAX, description="key position n", style=style,
                                   layout=layout)
        self.shift = widgets.IntSlider(value=0, min=0, max=SHIFT_MAX, step=8, description="shift both by",
                                       style=style, layout=layout)
        self.pair = widgets.IntSlider(value=pair, min=0, max=self.q.shape[0] // 2 - 1,
                                      description="frequency index i", style=style, layout=layout)
        self.chart = widgets.HTML()
        self.readout = widgets.HTML()
        for control in (self.m, self.n, self.shift, self.pair):
            control.observe(self._refresh, names="value")
        super().__init__([row(widgets.VBox([self.m, self.n]), widgets.VBox([self.shift, self.pair])),
                          self.chart, self.readout])
        self._refresh()

    def _refresh(self, change: dict | None = None) -> None:
        # A callback: it only sets the HTML widgets' values.
        args = (self.q, self.k, self.m.value, self.n.value, self.pair.value, self.base, self.shift.value)
        self.chart.value = rope_pair_svg(*args)
        self.readout.value = rope_readout_html(*args)

    def __repr__(self) -> str:
        # A short, deterministic text form (the notebook stores it as the cell's plain-text output).
        return (f"RoPEExplorer(m={self.m.value}, n={self.n.value}, shift={self.shift.value}, "
                f"pair={self.pair.value})")


def rope_explorer(q: torch.Tensor, k: torch.Tensor, m: int = 5, n: int = 2, pair: int = 0,
                  base: float = 10000.0) -> RoPEExplorer:
    """Return chapter 9's widget: move the query position m, the key position n, a shift added to both and
    the frequency index i, and watch one rotated pair of q and k and the score q_m · k_n, which stays the
    same whenever m - n does."""
    return RoPEExplorer(q, k, m, n, pair, base)
