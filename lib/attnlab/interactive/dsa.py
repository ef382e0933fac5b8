"""The widgets and helpers of chapters 10 (DeepSeek Sparse Attention) and 11 (quantization and rotation).

Everything a widget shows is computed by a pure function, so tests check it without a browser:

- chapter 10: :func:`tiny_dsa_model` (the course's tiny DSA model, or the tiny MLA model with fresh,
  untrained indexers when no trained one is shipped), :func:`index_scores` (the indexer's scores with either RoPE
  pairing), :func:`attention_captured` and :func:`recent_selection` (how much of the dense attention a
  selection keeps), :func:`draw_selection` (an attention map with the selected cells outlined), and the
  cost explorer: :func:`decode_cost_figures` (numbers from :func:`attnlab.dsa.layer_cost`),
  :func:`cost_svg`, :func:`cost_readout_html`, :func:`cost_explorer`;
- chapter 11: :func:`outlier_inputs` (queries and keys with a few large channels),
  :func:`rotation_experiment` (FP8 block quantization with and without the Hadamard rotation: the
  quantization error and the overlap of the top-k by q · k), :func:`rotation_svg`,
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
import torch
from matplotlib.patches import Rectangle

from attnlab._validate import check_ndim, check_non_negative_int, check_positive_int
from attnlab.dsa import DeepSeekSparseAttention, LightningIndexer, crossover_context, layer_cost
from attnlab.interactive.svg import html_table as _table
from attnlab.interactive.svg import svg_open as _svg_open
from attnlab.interactive.svg import svg_text as _text
from attnlab.model import TinyLM, checkpoint_path, load_checkpoint
from attnlab.plots import COLORS, SCHEME_COLORS, attention_heatmap
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


def draw_selection(ax, weights: torch.Tensor, selected: torch.Tensor, tokens: Sequence[str],
                   title: str | None = None, vmax: float | None = None, color: str = COLORS["cache"]):
    """:func:`attnlab.plots.attention_heatmap` of ``weights`` (seq, seq) with every selected cell of
    ``selected`` (seq, seq, boolean) outlined in ``color``. Returns the Axes."""
    if selected.shape != weights.shape or selected.dtype != torch.bool:
        raise ValueError(f"selected must be a boolean tensor of shape {tuple(weights.shape)}")
    attention_heatmap(weights, tokens, ax=ax, title=title, vmax=vmax)
    for t, s in selected.nonzero().tolist():
        ax.add_patch(Rectangle((s - 0.5, t - 0.5), 1, 1, fill=False, edgecolor=color, linewidth=1.1))
    return ax


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


def cost_svg(context_len: int, top_k: int, model: str = "deepseek-v3.2", width: int = 720) -> str:
    """Inline SVG: for one decoded token in one layer, a bar for dense MLA and a stacked bar for DSA
    (lightning indexer + attention over the k selected tokens), once for FLOPs and once for bytes read,
    each pair drawn to its own scale, with the ratio beside it. Pure: same arguments, same string."""
    f = decode_cost_figures(context_len, top_k, model)
    attn, index = SCHEME_COLORS["mla"], COLORS["index"]
    parts = _svg_open(width, 262)
    parts.append(_text(4, 18, f"One decoded token, one layer of {f['model']}: context L = {context_len:,}, "
                              f"top-k = {top_k:,}", font_size=14, font_weight="bold"))
    label_w, value_w, bar_h = 110, 200, 22
    plot_w = width - label_w - value_w
    groups = [("FLOPs", "flops", format_flops), ("bytes read", "bytes", format_bytes)]
    y = 40
    for title, key, fmt in groups:
        top = max(f[f"{key}_dense"], f[f"{key}_dsa"])
        parts.append(_text(4, y + 12, title, font_weight="bold"))
        parts.append(_text(width - 4, y + 12, _verdict(f[f"{key}_ratio"]), text_anchor="end", font_weight="bold",
                           fill=COLORS["cache"] if f[f"{key}_ratio"] < 1 else "#2e7d32"))
        y += 20
        rows = [("dense MLA", [(f[f"{key}_dense"], attn)]),
                ("DSA", [(f[f"{key}_indexer"], index), (f[f"{key}_sparse"], attn)])]
        for name, segments in rows:
            x = label_w
            parts.append(_text(label_w - 8, y + bar_h * 0.72, name, text_anchor="end"))
            for value, colour in segments:
                w = plot_w * value / top
                parts.append(f'<rect x="{x:.1f}" y="{y}" width="{max(w, 0.5):.1f}" height="{bar_h}" '
                             f'fill="{colour}"/>')
                x += w
            total = sum(v for v, _ in segments)
            parts.append(_text(x + 6, y + bar_h * 0.72, fmt(total), font_size=12))
            y += bar_h + 6
        y += 14
    parts += [f'<rect x="{label_w}" y="{y}" width="12" height="12" fill="{attn}"/>',
              _text(label_w + 18, y + 10, "MLA attention (all L tokens, or the k selected)", font_size=12),
              f'<rect x="{label_w + 330}" y="{y}" width="12" height="12" fill="{index}"/>',
              _text(label_w + 348, y + 10, "lightning indexer (scores all L tokens)", font_size=12)]
    cross = f["crossover_flops"]
    note = (f"With top-k = {top_k:,}, DSA needs fewer FLOPs from L = {cross:,} tokens on." if cross
            else f"With top-k = {top_k:,}, DSA never needs fewer FLOPs.")
    parts.append(_text(4, y + 34, note, font_size=12, fill="#444"))
    parts.append("</svg>")
    return "".join(parts)


def cost_readout_html(context_len: int, top_k: int, model: str = "deepseek-v3.2") -> str:
    """The numbers of :func:`cost_svg` as an HTML table, plus the prefill and the crossovers. Pure."""
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
    :data:`CONTEXT_OPTIONS` and :data:`TOPK_OPTIONS`), ``.chart`` and ``.readout`` (HTML widgets)."""

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
        self.chart = widgets.HTML()
        self.readout = widgets.HTML()
        for control in (self.context, self.top_k):
            control.observe(self._refresh, names="value")
        super().__init__([self.context, self.top_k, self.chart, self.readout])
        self._refresh()

    def _refresh(self, change: dict | None = None) -> None:
        # A callback: it only sets the HTML widgets' values.
        self.chart.value = cost_svg(self.context.value, self.top_k.value, self.model)
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


def rotation_svg(outlier: int, block: int = 128, scale_format: str = "ue8m0", width: int = 720) -> str:
    """Inline SVG: the top-k overlap of FP8 scores, plain and rotated, against the outlier magnitude (every
    value of :data:`OUTLIER_OPTIONS`, for this block size and scale format), with the chosen magnitude
    marked and its two overlaps written beside it. Pure: same arguments, same string."""
    _check_rotation_args(outlier, block, scale_format)
    runs = [rotation_experiment(m, block, scale_format) for m in OUTLIER_OPTIONS]
    now = rotation_experiment(outlier, block, scale_format)
    colours = {"plain": COLORS["cache"], "rotated": COLORS["query"]}
    parts = _svg_open(width, 330)
    parts.append(_text(4, 18, f"Top-{now['top_k']} overlap after FP8 e4m3 (blocks of {block}, {scale_format} "
                              f"scales) against exact q · k", font_size=14, font_weight="bold"))
    px0, py0, pw, ph = 60, 40, width - 250, 230
    parts.append(f'<rect x="{px0}" y="{py0}" width="{pw}" height="{ph}" fill="none" stroke="#999"/>')
    for tick in (0.0, 0.25, 0.5, 0.75, 1.0):
        y = py0 + ph * (1 - tick)
        parts += [f'<line x1="{px0 - 4}" y1="{y:.1f}" x2="{px0 + pw}" y2="{y:.1f}" stroke="#ddd"/>',
                  _text(px0 - 8, y + 4, f"{tick:.0%}", text_anchor="end", font_size=11)]
    n = len(OUTLIER_OPTIONS)
    xs = [px0 + pw * i / (n - 1) for i in range(n)]  # one evenly spaced slot per offered magnitude
    for x, m in zip(xs, OUTLIER_OPTIONS, strict=True):
        parts.append(_text(x, py0 + ph + 16, f"{m:g}", text_anchor="middle", font_size=11))
    parts.append(_text(px0 + pw / 2, py0 + ph + 34, "outlier added to 4 of 128 channels (typical entry: 1)",
                       text_anchor="middle", font_size=12))
    for name, colour in colours.items():
        pts = " ".join(f"{x:.1f},{py0 + ph * (1 - r[name]['overlap']):.1f}" for x, r in zip(xs, runs, strict=True))
        parts.append(f'<polyline points="{pts}" fill="none" stroke="{colour}" stroke-width="2"/>')
    x_now = xs[OUTLIER_OPTIONS.index(outlier)]
    parts.append(f'<line x1="{x_now:.1f}" y1="{py0}" x2="{x_now:.1f}" y2="{py0 + ph}" stroke="#444" '
                 f'stroke-dasharray="4 3"/>')
    for name, colour in colours.items():
        y = py0 + ph * (1 - now[name]["overlap"])
        parts.append(f'<circle cx="{x_now:.1f}" cy="{y:.1f}" r="4.5" fill="{colour}"/>')
    lx = px0 + pw + 18
    for i, (name, colour) in enumerate(colours.items()):
        y = py0 + 20 + i * 58
        label = "no rotation" if name == "plain" else "Hadamard first"
        parts += [f'<rect x="{lx}" y="{y - 10}" width="12" height="12" fill="{colour}"/>',
                  _text(lx + 18, y, label, font_weight="bold", fill=colour),
                  _text(lx + 18, y + 18, f"overlap {now[name]['overlap']:.1%}", font_size=12),
                  _text(lx + 18, y + 34, f"key error {now[name]['key_error']:.2%}", font_size=12)]
    parts.append(_text(lx, py0 + 150, f"outlier = {outlier:g}", font_weight="bold"))
    parts.append("</svg>")
    return "".join(parts)


def rotation_readout_html(outlier: int, block: int = 128, scale_format: str = "ue8m0") -> str:
    """The numbers of :func:`rotation_svg` at the chosen magnitude as an HTML table: key error, score
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
    (ToggleButtons "fp32" / "ue8m0"), ``.chart`` and ``.readout`` (HTML widgets)."""

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
        self.chart = widgets.HTML()
        self.readout = widgets.HTML()
        for control in (self.outlier, self.block, self.scale_format):
            control.observe(self._refresh, names="value")
        super().__init__([self.outlier, self.block, self.scale_format, self.chart, self.readout])
        self._refresh()

    def _refresh(self, change: dict | None = None) -> None:
        # A callback: it only sets the HTML widgets' values.
        args = (self.outlier.value, self.block.value, self.scale_format.value)
        self.chart.value = rotation_svg(*args)
        self.readout.value = rotation_readout_html(*args)

    def __repr__(self) -> str:
        # A short, deterministic text form (the notebook stores it as the cell's plain-text output).
        return (f"RotationExplorer(outlier={self.outlier.value}, block={self.block.value}, "
                f"scale_format={self.scale_format.value!r})")


def rotation_explorer(outlier: int = 20, block: int = 128, scale_format: str = "ue8m0") -> RotationExplorer:
    """Return chapter 11's widget: slide the outlier magnitude, pick the FP8 block size and scale format,
    and read the quantization error and the top-k overlap with and without the Hadamard rotation."""
    return RotationExplorer(outlier, block, scale_format)
