"""The widgets and helpers of chapters 10 (DeepSeek Sparse Attention) and 11 (quantization and rotation).

Everything a widget shows is computed by a pure function, so tests check it without a browser:

- chapter 10: :func:`tiny_dsa_model` (the course's tiny DSA model, or the tiny MLA model with fresh,
  untrained indexers when no trained one is shipped), :func:`index_scores` (the indexer's scores with either RoPE
  pairing), :func:`attention_captured` and :func:`recent_selection` (how much of the dense attention a
  selection keeps), :func:`selection_figure` (an attention map with the selected cells outlined, plotly), and the
  cost explorer: :func:`decode_cost_figures` (numbers from :func:`attnlab.dsa.layer_cost`),
  :func:`cost_figure`, :func:`cost_readout_html`, :func:`cost_explorer`;
- chapter 11: :func:`outlier_inputs` (queries and keys with a few large channels),
  :func:`rotation_experiment` (FP8 block quantization with and without the Hadamard rotation: the
  quantization error and the overlap of the top-k by q · k), :func:`rotation_figure`,
  :func:`rotation_readout_html`, :func:`rotation_explorer`.

The explorers wrap them in ipywidgets containers whose sliders offer only valid values and whose callbacks
only set widget values.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from pathlib import Path

import ipywidgets as widgets
import plotly.graph_objects as go
import torch
from plotly.subplots import make_subplots

from attnlab._validate import check_ndim, check_non_negative_int, check_positive_int
from attnlab.dsa import DeepSeekSparseAttention, LightningIndexer, crossover_context, layer_cost
from attnlab.figures import INK, Bar, LiveFigure, Segment, hbar_figure, heatmap_figure, new_figure
from attnlab.interactive.svg import html_table as _table
from attnlab.model import TinyLM, checkpoint_path, load_checkpoint
from attnlab.plots import COLORS, SCHEME_COLORS
from attnlab.quant import FP8_E4M3_MAX, SCALE_FORMATS, fake_quantize_fp8, fwht
from attnlab.rope import rotate_pairs
from attnlab.sizing import MODELS, ModelSpec, format_bytes, format_si, get_model
from attnlab.widgets import context_options


def format_flops(flops: int | float) -> str:
    """FLOPs in decimal units, three significant digits: 36,507,222,016 -> "36.5 GFLOP"."""
    return format_si(flops, ("FLOP", "kFLOP", "MFLOP", "GFLOP", "TFLOP", "PFLOP"))


def format_times(ratio: float) -> str:
    """A factor for prose: 13.21 -> "13.2×", 0.83 -> "0.83×"."""
    return f"{ratio:.2f}×" if ratio < 10 else f"{ratio:.1f}×"


# ----------------------------------------------------------------------------------------------------
# chapter 10: the tiny DSA model


#: The trained checkpoint chapter 10 uses when it is shipped, and the MLA model it falls back on.
TINY_DSA, TINY_MLA = "tiny_dsa", "tiny_mla"


def tiny_dsa_model(dtype: torch.dtype = torch.float32, dsa: str | Path = TINY_DSA,
                   mla: str | Path = TINY_MLA) -> tuple[TinyLM, str]:
    """(model, source): the checkpoint ``dsa`` (a shipped name or a path) with its trained indexers,
    source "tiny_dsa", when it exists; else the MLA checkpoint ``mla`` turned into a DSA model by
    :func:`attnlab.dsa_training.dsa_from_mla`, whose indexers are untrained, source "tiny_mla".
    Raises ValueError when neither exists."""
    from attnlab.dsa_training import dsa_from_mla

    def path(name: str | Path) -> Path:
        return Path(name) if Path(name).suffix else checkpoint_path(str(name))

    if path(dsa).exists():
        return load_checkpoint(path(dsa), dtype=dtype), TINY_DSA
    if path(mla).exists():
        return dsa_from_mla(load_checkpoint(path(mla), dtype=dtype)), TINY_MLA
    raise ValueError(f"neither {str(dsa)!r} nor {str(mla)!r} exists (looked in {checkpoint_path(TINY_DSA).parent})")


def index_scores(layer: DeepSeekSparseAttention, x: torch.Tensor, interleaved: bool = False) -> torch.Tensor:
    """The layer's index scores I (b, s, s) for x (b, s, d_model), causal, with the indexer's RoPE pairing
    chosen: ``interleaved=False`` is the halves pairing (i, i + d^R/2) the indexer uses (equal to
    ``layer.indexer(x, ...)``); True pairs (2i, 2i + 1), as DeepSeek's first release of V3.2-Exp did."""
    if not isinstance(layer, DeepSeekSparseAttention):
        raise ValueError(f"layer must be a DeepSeekSparseAttention, got {type(layer).__name__}")
    check_ndim("x", x, 3, "(batch, seq, d_model)")
    indexer: LightningIndexer = layer.indexer
    d_rope = indexer.config.rope_head_dim
    positions = torch.arange(x.shape[1])

    def rope(t: torch.Tensor) -> torch.Tensor:  # (b, s, [heads,] d^I): rotate the first d^R coordinates
        angles = positions.double()[:, None] * indexer.theta  # (s, d^R / 2)
        angles = angles.view(angles.shape[0], *([1] * (t.dim() - 3)), angles.shape[1])
        t_rope, t_pass = t.split([d_rope, t.shape[-1] - d_rope], dim=-1)
        return torch.cat([rotate_pairs(t_rope, angles, interleaved=interleaved), t_pass], dim=-1)

    b, s, _ = x.shape
    c = indexer.config
    q = indexer.w_q(layer.query_input(x)).view(b, s, c.index_n_heads, c.index_head_dim)  # q^I (b, s, H^I, d^I)
    k = indexer.k_norm(indexer.w_k(x))  # k^I (b, s, d^I)
    q, k = indexer.prepare(rope(q)), indexer.prepare(rope(k))
    return indexer.score(q, indexer.head_weights(x), k)


def recent_selection(seq: int, top_k: int) -> torch.Tensor:
    """The sliding-window choice for comparison: query t keeps the min(top_k, t + 1) most recent tokens
    t - k_t + 1, ..., t. Returns a boolean (seq, seq) mask."""
    check_positive_int("seq", seq)
    check_positive_int("top_k", top_k)
    t = torch.arange(seq)
    gap = t[:, None] - t[None, :]  # how far back key s lies from query t
    return (gap >= 0) & (gap < top_k)


def attention_captured(weights: torch.Tensor, selected: torch.Tensor) -> torch.Tensor:
    """The share of each query's dense attention that falls on its selected tokens:
    sum_{s in S_t} a_{t,s}, with a the weights averaged over heads.

    weights (n_heads, seq, keys) or (seq, keys), rows summing to 1; selected (seq, keys) boolean
    -> (seq,) in [0, 1]."""
    if not isinstance(weights, torch.Tensor) or weights.dim() not in (2, 3):
        raise ValueError("weights must be a tensor (n_heads, seq, keys) or (seq, keys)")
    a = weights.double().mean(dim=0) if weights.dim() == 3 else weights.double()
    if not isinstance(selected, torch.Tensor) or selected.dtype != torch.bool or selected.shape != a.shape:
        raise ValueError(f"selected must be a boolean tensor of shape {tuple(a.shape)}")
    return (a * selected).sum(dim=-1)


def selection_figure(weights: torch.Tensor, selected: torch.Tensor, tokens: Sequence[str], title: str = "",
                     zmax: float | None = None) -> go.Figure:
    """:func:`attnlab.figures.heatmap_figure` of ``weights`` (seq, seq) with every selected cell of
    ``selected`` (seq, seq, boolean: the indexer's top-k per query) outlined in red; hover names the token
    pair and its weight."""
    if selected.shape != weights.shape or selected.dtype != torch.bool:
        raise ValueError(f"selected must be a boolean tensor of shape {tuple(weights.shape)}")
    return heatmap_figure(weights, tokens, title=title, zmax=zmax, selected=selected, height=640)


# ----------------------------------------------------------------------------------------------------
# chapter 10: what one decoded token costs, dense MLA against DSA


#: Context lengths the cost explorer offers: the sliders' 1K to 128K, and DeepSeek-V3.2's longest, 163,840.
CONTEXT_OPTIONS: tuple[int, ...] = (*(n for _, n in context_options(2**17)), 163_840)
#: Top-k values the explorer offers (DeepSeek-V3.2 uses 2048).
TOPK_OPTIONS: tuple[int, ...] = (256, 512, 1024, 2048, 4096, 8192)


def _check_context(spec: ModelSpec, context_len: object) -> int:
    check_positive_int("context_len", context_len)
    if spec.max_context and context_len > spec.max_context:
        raise ValueError(f"context_len={context_len} exceeds {spec.name}'s max_context={spec.max_context:,}")
    return context_len


@functools.lru_cache(maxsize=256)
def _crossovers(top_k: int, model: str) -> dict[str, int | None]:
    spec = get_model(model)
    return {metric: crossover_context(spec, top_k, metric) for metric in ("decode_flops", "decode_bytes")}


def decode_cost_figures(context_len: int, top_k: int, model: str = "deepseek-v3.2") -> dict:
    """One decoded token, one layer of ``model``, from :func:`attnlab.dsa.layer_cost`: FLOPs and bytes of
    dense MLA and of DSA (indexer and top-k attention apart), dense / DSA ratios, prefill FLOPs of the
    whole context and their ratio, and the crossover contexts for this top-k (None if never cheaper)."""
    spec = get_model(model)
    _check_context(spec, context_len)
    check_positive_int("top_k", top_k)
    cost = layer_cost(spec, context_len, top_k)
    cross = _crossovers(top_k, model)
    return {
        "context_len": context_len, "top_k": top_k, "selected": cost["selected"], "model": spec.name,
        "flops_dense": cost["decode_flops_dense"], "flops_indexer": cost["decode_flops_indexer"],
        "flops_sparse": cost["decode_flops_sparse"], "flops_dsa": cost["decode_flops_dsa"],
        "bytes_dense": cost["decode_bytes_dense"], "bytes_indexer": cost["decode_bytes_indexer"],
        "bytes_sparse": cost["decode_bytes_sparse"], "bytes_dsa": cost["decode_bytes_dsa"],
        "flops_ratio": cost["decode_flops_dense"] / cost["decode_flops_dsa"],
        "bytes_ratio": cost["decode_bytes_dense"] / cost["decode_bytes_dsa"],
        "prefill_dense": cost["prefill_flops_dense"], "prefill_dsa": cost["prefill_flops_dsa"],
        "prefill_ratio": cost["prefill_flops_dense"] / cost["prefill_flops_dsa"],
        "crossover_flops": cross["decode_flops"], "crossover_bytes": cross["decode_bytes"],
    }


def _verdict(ratio: float) -> str:
    if ratio > 1:
        return f"DSA {format_times(ratio)} cheaper"
    return f"DSA {format_times(1 / ratio)} dearer"


def cost_figure(context_len: int, top_k: int, model: str = "deepseek-v3.2") -> go.Figure:
    """For one decoded token in one layer, a bar for dense MLA and a stacked bar for DSA (lightning indexer
    + attention over the k selected tokens), in two panels, FLOPs and bytes read, each on its own linear
    scale with the verdict (cheaper or dearer, and by how much) in its title; hover gives the exact
    counts. Pure: same arguments, same figure."""
    f = decode_cost_figures(context_len, top_k, model)
    attn, index = SCHEME_COLORS["mla"], COLORS["index"]
    groups = [("FLOPs", "flops", format_flops), ("bytes read", "bytes", format_bytes)]
    fig = make_subplots(rows=2, cols=1, vertical_spacing=0.3,
                        subplot_titles=[f"{title}: {_verdict(f[f'{key}_ratio'])}" for title, key, _ in groups])
    for i, (title, key, fmt) in enumerate(groups, start=1):
        bars = [Bar("dense MLA", (Segment("MLA attention over all L tokens", f[f"{key}_dense"], attn),),
                    fmt(f[f"{key}_dense"])),
                Bar("DSA", (Segment("lightning indexer (scores all L tokens)", f[f"{key}_indexer"], index),
                            Segment("MLA attention over the k selected", f[f"{key}_sparse"], attn)),
                    fmt(f[f"{key}_dsa"]))]
        hbar_figure(bars, title, format_value=fmt, fig=fig, row=i, col=1)
    cross = f["crossover_flops"]
    note = (f"With top-k = {top_k:,}, DSA needs fewer FLOPs from L = {cross:,} tokens on." if cross
            else f"With top-k = {top_k:,}, DSA never needs fewer FLOPs.")
    fig.update_layout(template="attnlab", barmode="stack", showlegend=False, bargap=0.3, height=330,
                      margin=dict(t=90, b=40),
                      title=dict(text=f"One decoded token, one layer of {f['model']}: context L = {context_len:,}, "
                                      f"top-k = {top_k:,}<br><sup>purple: MLA attention · teal: lightning "
                                      f"indexer · {note}</sup>"))
    return fig


def cost_readout_html(context_len: int, top_k: int, model: str = "deepseek-v3.2") -> str:
    """The numbers of :func:`cost_figure` as an HTML table, plus the prefill and the crossovers. Pure."""
    f = decode_cost_figures(context_len, top_k, model)
    cross = {k: (f"L = {f[k]:,}" if f[k] else "never") for k in ("crossover_flops", "crossover_bytes")}
    rows = [
        ("Tokens the attention reads", f"dense {context_len:,} · DSA {f['selected']:,} (min(k, L))"),
        ("FLOPs per decoded token, dense MLA", format_flops(f["flops_dense"])),
        ("FLOPs per decoded token, DSA", f"{format_flops(f['flops_dsa'])} = {format_flops(f['flops_indexer'])} "
                                         f"indexer + {format_flops(f['flops_sparse'])} attention"),
        ("Bytes read per decoded token, dense MLA", format_bytes(f["bytes_dense"])),
        ("Bytes read per decoded token, DSA", f"{format_bytes(f['bytes_dsa'])} = {format_bytes(f['bytes_indexer'])} "
                                              f"index keys + {format_bytes(f['bytes_sparse'])} latents"),
        ("Dense / DSA", f"FLOPs {f['flops_ratio']:.2f}× · bytes {f['bytes_ratio']:.2f}×"),
        (f"Prefill of all {context_len:,} tokens, dense / DSA",
         f"{format_flops(f['prefill_dense'])} / {format_flops(f['prefill_dsa'])} = {f['prefill_ratio']:.2f}×"),
        (f"DSA cheaper from (top-k {top_k:,})",
         f"FLOPs: {cross['crossover_flops']} · bytes: {cross['crossover_bytes']}"),
    ]
    return _table(rows)


class CostExplorer(widgets.VBox):
    """The container :func:`cost_explorer` returns: ``.context`` and ``.top_k`` (SelectionSliders offering
    :data:`CONTEXT_OPTIONS` and :data:`TOPK_OPTIONS`), ``.chart`` (:class:`attnlab.figures.LiveFigure`) and
    ``.readout`` (HTML)."""

    def __init__(self, context_len: int = 131_072, top_k: int = 2048, model: str = "deepseek-v3.2") -> None:
        if context_len not in CONTEXT_OPTIONS:
            raise ValueError(f"context_len={context_len!r} must be one of {list(CONTEXT_OPTIONS)}")
        if top_k not in TOPK_OPTIONS:
            raise ValueError(f"top_k={top_k!r} must be one of {list(TOPK_OPTIONS)}")
        self.model = model
        style = {"description_width": "120px"}
        layout = widgets.Layout(width="560px")
        self.context = widgets.SelectionSlider(options=[(f"{n:,}", n) for n in CONTEXT_OPTIONS], value=context_len,
                                               description="context L", style=style, layout=layout)
        self.top_k = widgets.SelectionSlider(options=[(f"{k:,}", k) for k in TOPK_OPTIONS], value=top_k,
                                             description="top-k", style=style, layout=layout)
        self.chart = LiveFigure(cost_figure(context_len, top_k, model))
        self.readout = widgets.HTML()
        for control in (self.context, self.top_k):
            control.observe(self._refresh, names="value")
        super().__init__([self.context, self.top_k, self.chart, self.readout])
        self._refresh()

    def _refresh(self, change: dict | None = None) -> None:
        # A callback: it only sets the widgets' values (the chart's in place).
        self.chart.show_figure(cost_figure(self.context.value, self.top_k.value, self.model))
        self.readout.value = cost_readout_html(self.context.value, self.top_k.value, self.model)

    def __repr__(self) -> str:
        # A short, deterministic text form (the notebook stores it as the cell's plain-text output).
        return f"CostExplorer(context_len={self.context.value}, top_k={self.top_k.value})"


def cost_explorer(context_len: int = 131_072, top_k: int = 2048, model: str = "deepseek-v3.2") -> CostExplorer:
    """Return chapter 10's widget: slide the context length and the top-k and read what one decoded token
    costs in one layer of ``model`` with dense MLA and with DSA (:func:`attnlab.dsa.layer_cost`)."""
    if model not in MODELS:
        raise ValueError(f"model={model!r} must be one of {sorted(MODELS)}")
    return CostExplorer(context_len, top_k, model)


# ----------------------------------------------------------------------------------------------------
# chapter 11: outliers, FP8 blocks and the Hadamard rotation


#: Outlier magnitudes the rotation explorer offers (0: no outlier).
OUTLIER_OPTIONS: tuple[int, ...] = (0, 1, 2, 5, 10, 20, 50, 100, 200, 500, 1000)
#: FP8 block sizes it offers (DeepSeek: 128; each divides the 128-wide index vectors).
BLOCK_OPTIONS: tuple[int, ...] = (32, 64, 128)
#: The channels that carry the outliers in :func:`outlier_inputs`.
OUTLIER_CHANNELS: tuple[int, ...] = (3, 40, 77, 100)


def outlier_inputs(outlier: float, n_queries: int = 32, n_keys: int = 2048, dim: int = 128,
                   channels: Sequence[int] = OUTLIER_CHANNELS, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Queries (n_queries, dim) and keys (n_keys, dim), float64: N(0, 1) entries, plus ``outlier`` added to
    the given channels of every query and every key (a few channels that are large in every token, a
    stylised version of the "outlier features" of trained transformers). Deterministic for a seed."""
    if isinstance(outlier, bool) or not isinstance(outlier, (int, float)) or not math.isfinite(outlier) \
            or outlier < 0:
        raise ValueError(f"outlier={outlier!r} must be a finite number >= 0")
    for name, value in (("n_queries", n_queries), ("n_keys", n_keys), ("dim", dim)):
        check_positive_int(name, value)
    check_non_negative_int("seed", seed)
    if any(not 0 <= c < dim for c in channels):
        raise ValueError(f"channels={tuple(channels)} must lie in [0, dim={dim})")
    g = torch.Generator().manual_seed(seed)
    q = torch.randn(n_queries, dim, generator=g, dtype=torch.float64)
    k = torch.randn(n_keys, dim, generator=g, dtype=torch.float64)
    index = list(channels)
    q[:, index] += outlier
    k[:, index] += outlier
    return q, k


def topk_overlap(exact: torch.Tensor, approx: torch.Tensor, top_k: int) -> float:
    """Mean over rows of |top-k(exact) ∩ top-k(approx)| / k: the share of the right tokens a selection
    made from ``approx`` scores keeps. exact, approx (n_queries, n_keys)."""
    check_ndim("exact", exact, 2, "(n_queries, n_keys)")
    if approx.shape != exact.shape:
        raise ValueError(f"approx has shape {tuple(approx.shape)}, exact {tuple(exact.shape)}")
    check_positive_int("top_k", top_k)
    if top_k > exact.shape[1]:
        raise ValueError(f"top_k={top_k} exceeds the {exact.shape[1]} keys")
    chosen = torch.zeros_like(exact, dtype=torch.bool).scatter_(-1, exact.topk(top_k, dim=-1).indices, True)
    kept = chosen.gather(-1, approx.topk(top_k, dim=-1).indices)
    return float(kept.double().sum(dim=-1).mean() / top_k)


@functools.lru_cache(maxsize=512)
def rotation_experiment(outlier: float, block: int = 128, scale_format: str = "ue8m0", top_k: int = 64,
                        seed: int = 0) -> dict:
    """FP8 e4m3 block quantization of :func:`outlier_inputs` (32 queries, 2048 keys, width 128) with and
    without the orthonormal Hadamard rotation first. For each ("plain", "rotated"):

    - ``key_error``: ||dequant(quant(k)) - k|| / ||k|| over all keys (in the space that is quantized);
    - ``score_error``: RMS error of the scores q · k against exact float64, divided by the RMS spread of
      the exact scores across keys (what decides the ranking);
    - ``overlap``: :func:`topk_overlap` of the top ``top_k`` keys by FP8 scores against exact ones.

    Since (q H) · (k H) = q · k, both sides are compared with the same exact scores. Pure (cached)."""
    check_positive_int("block", block)
    if 128 % block:
        raise ValueError(f"block={block} must divide the width 128")
    if scale_format not in SCALE_FORMATS:
        raise ValueError(f"scale_format={scale_format!r} must be one of {SCALE_FORMATS}")
    q, k = outlier_inputs(outlier, seed=seed)
    exact = q @ k.T  # (n_queries, n_keys)
    spread = (exact - exact.mean(dim=-1, keepdim=True)).pow(2).mean().sqrt()
    result = {"outlier": outlier, "block": block, "scale_format": scale_format, "top_k": top_k}
    for name, rotate in (("plain", False), ("rotated", True)):
        q_in, k_in = (fwht(q), fwht(k)) if rotate else (q, k)
        q_fp8, k_fp8 = fake_quantize_fp8(q_in, block, scale_format), fake_quantize_fp8(k_in, block, scale_format)
        scores = q_fp8 @ k_fp8.T
        result[name] = {
            "key_error": float((k_fp8 - k_in).norm() / k_in.norm()),
            "score_error": float((scores - exact).pow(2).mean().sqrt() / spread),
            "overlap": topk_overlap(exact, scores, top_k),
        }
    return result


def _check_rotation_args(outlier: object, block: object, scale_format: object) -> None:
    if outlier not in OUTLIER_OPTIONS:
        raise ValueError(f"outlier={outlier!r} must be one of {list(OUTLIER_OPTIONS)}")
    if block not in BLOCK_OPTIONS:
        raise ValueError(f"block={block!r} must be one of {list(BLOCK_OPTIONS)}")
    if scale_format not in SCALE_FORMATS:
        raise ValueError(f"scale_format={scale_format!r} must be one of {SCALE_FORMATS}")


def rotation_figure(outlier: int, block: int = 128, scale_format: str = "ue8m0") -> go.Figure:
    """The top-k overlap of FP8 scores with exact q · k, without and with the Hadamard rotation, against the
    outlier magnitude (every value of :data:`OUTLIER_OPTIONS`, for this block size and scale format, one
    evenly spaced slot each), the chosen magnitude marked by a dashed line and two points; hover gives overlap and key
    error. Pure: same arguments, same figure."""
    _check_rotation_args(outlier, block, scale_format)
    runs = [rotation_experiment(m, block, scale_format) for m in OUTLIER_OPTIONS]
    now = rotation_experiment(outlier, block, scale_format)
    colours = {"plain": COLORS["cache"], "rotated": COLORS["query"]}
    names = {"plain": "no rotation", "rotated": "Hadamard first"}
    slots = list(range(len(OUTLIER_OPTIONS)))  # one evenly spaced slot per offered magnitude (0 has no log)
    at = OUTLIER_OPTIONS.index(outlier)
    fig = new_figure(f"Top-{now['top_k']} overlap after FP8 e4m3 (blocks of {block}, {scale_format} scales) "
                     f"against exact q · k", "outlier added to 4 of 128 channels (typical entry: 1)",
                     "top-k overlap", height=360)
    for name, colour in colours.items():
        fig.add_trace(go.Scatter(
            x=slots, y=[r[name]["overlap"] for r in runs], mode="lines+markers", name=names[name],
            line=dict(color=colour, width=2),
            customdata=[[m, r[name]["key_error"]] for m, r in zip(OUTLIER_OPTIONS, runs, strict=True)],
            hovertemplate=f"{names[name]}<br>outlier %{{customdata[0]:g}}<br>overlap %{{y:.1%}}<br>"
                          f"key error %{{customdata[1]:.2%}}<extra></extra>"))
    fig.add_trace(go.Scatter(
        x=[at, at], y=[now["plain"]["overlap"], now["rotated"]["overlap"]], mode="markers",
        marker=dict(color=[colours["plain"], colours["rotated"]], size=12, line=dict(color=INK, width=1.5)),
        name=f"outlier = {outlier:g}", showlegend=False,
        text=[f"no rotation: overlap {now['plain']['overlap']:.1%}, key error {now['plain']['key_error']:.2%}",
              f"Hadamard first: overlap {now['rotated']['overlap']:.1%}, key error "
              f"{now['rotated']['key_error']:.2%}"], hovertemplate="%{text}<extra></extra>"))
    fig.add_vline(x=at, line=dict(color=INK, dash="dash", width=1))
    fig.update_yaxes(range=[0, 1.05], tickformat=".0%")
    fig.update_xaxes(tickvals=slots, ticktext=[f"{m:g}" for m in OUTLIER_OPTIONS])
    fig.update_layout(legend=dict(x=0.01, y=0.05, xanchor="left", yanchor="bottom"))
    return fig


def rotation_readout_html(outlier: int, block: int = 128, scale_format: str = "ue8m0") -> str:
    """The numbers of :func:`rotation_figure` at the chosen magnitude as an HTML table: key error, score
    error and top-k overlap without and with the rotation, and which keeps more of the top-k. Pure."""
    _check_rotation_args(outlier, block, scale_format)
    r = rotation_experiment(outlier, block, scale_format)
    p, h = r["plain"], r["rotated"]
    diff = h["overlap"] - p["overlap"]
    verdict = ("the rotation keeps more of the top-k" if diff > 0.005 else
               "the rotation keeps less of the top-k" if diff < -0.005 else "about the same either way")
    rows = [
        ("Scale per block", f"amax / {FP8_E4M3_MAX:g}" + (", rounded up to a power of two" if scale_format == "ue8m0"
                                                          else ", a float32")),
        ("Key quantization error (no rotation · rotated)", f"{p['key_error']:.2%} · {h['key_error']:.2%}"),
        ("Score error, relative to the spread of q · k", f"{p['score_error']:.3f} · {h['score_error']:.3f}"),
        (f"Top-{r['top_k']} overlap with exact scores", f"{p['overlap']:.1%} · {h['overlap']:.1%}"),
        ("Verdict", f"{verdict} ({diff * 100:+.1f} points)"),
    ]
    return _table(rows)


class RotationExplorer(widgets.VBox):
    """The container :func:`rotation_explorer` returns: ``.outlier`` (SelectionSlider over
    :data:`OUTLIER_OPTIONS`), ``.block`` (ToggleButtons over :data:`BLOCK_OPTIONS`), ``.scale_format``
    (ToggleButtons "fp32" / "ue8m0"), ``.chart`` (:class:`attnlab.figures.LiveFigure`) and ``.readout`` (HTML)."""

    def __init__(self, outlier: int = 20, block: int = 128, scale_format: str = "ue8m0") -> None:
        _check_rotation_args(outlier, block, scale_format)
        style = {"description_width": "120px"}
        self.outlier = widgets.SelectionSlider(options=list(OUTLIER_OPTIONS), value=outlier,
                                               description="outlier size", style=style,
                                               layout=widgets.Layout(width="560px"))
        self.block = widgets.ToggleButtons(options=list(BLOCK_OPTIONS), value=block, description="block",
                                           style=style)
        self.scale_format = widgets.ToggleButtons(options=list(SCALE_FORMATS), value=scale_format,
                                                  description="scale format", style=style)
        self.chart = LiveFigure(rotation_figure(outlier, block, scale_format))
        self.readout = widgets.HTML()
        for control in (self.outlier, self.block, self.scale_format):
            control.observe(self._refresh, names="value")
        super().__init__([self.outlier, self.block, self.scale_format, self.chart, self.readout])
        self._refresh()

    def _refresh(self, change: dict | None = None) -> None:
        # A callback: it only sets the widgets' values (the chart's in place).
        args = (self.outlier.value, self.block.value, self.scale_format.value)
        self.chart.show_figure(rotation_figure(*args))
        self.readout.value = rotation_readout_html(*args)

    def __repr__(self) -> str:
        # A short, deterministic text form (the notebook stores it as the cell's plain-text output).
        return (f"RotationExplorer(outlier={self.outlier.value}, block={self.block.value}, "
                f"scale_format={self.scale_format.value!r})")


def rotation_explorer(outlier: int = 20, block: int = 128, scale_format: str = "ue8m0") -> RotationExplorer:
    """Return chapter 11's widget: slide the outlier magnitude, pick the FP8 block size and scale format,
    and read the quantization error and the top-k overlap with and without the Hadamard rotation."""
    return RotationExplorer(outlier, block, scale_format)
