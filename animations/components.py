"""Scene pieces that more than one chapter's animation uses; the chapters' scene modules import them from
here, never from each other (``tests/test_animations.py`` checks it).

* Chapters 2 and 3: :func:`attention_data`, the five tokens' q, keys and values and the vector form's
  result (chapter 3's matrix form ends in the same row).
* Chapters 0, 5, 6 and 7: :class:`CacheBar`, :func:`cache_bars` and :class:`BarChart`, the cache per
  token as bars from :mod:`attnlab.sizing`; chapters 5 and 6: :class:`HeadsDiagram`, query heads over the
  K/V heads they share, drawn for :data:`HEADS_MODEL`.
* Chapters 7, 8 and 9: :func:`layer_config` and :func:`per_layer_elements`, one MLA layer of
  :data:`MLA_MODEL`; chapters 8 and 9: :func:`swap_caption`.

Like the scene modules, this one imports :mod:`animations.style` and attnlab, never a scene module.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from manim import (
    DOWN,
    UP,
    FadeIn,
    FadeOut,
    Line,
    ReplacementTransform,
    RoundedRectangle,
    Square,
    VGroup,
)

from animations.style import (
    KEY,
    MIN_MATH_FONT_SIZE,
    MUTED,
    QUERY,
    SCHEME,
    VALUE,
    bar,
    mathtex,
    tint,
)
from attnlab import sizing
from attnlab.attention import attention_vector, softmax
from attnlab.mla import MLAConfig

# --------------------------------------------------------------------------------------------------
# chapters 2 and 3: one query against five keys

VECTOR_TOKENS = ("The", "cat", "sat", "on", "the")  # the query belongs to the last token
VECTOR_D = 4  # width of q, k, v
VECTOR_SEED = 4


@dataclass(frozen=True)
class VectorAttention:
    """What chapter 2's scene shows (and chapter 3's last row): q (d,), keys and values (n, d), scores s (n,),
    weights a (n,), output o (d,)."""

    tokens: tuple[str, ...]
    q: torch.Tensor
    keys: torch.Tensor
    values: torch.Tensor
    scores: torch.Tensor
    weights: torch.Tensor
    output: torch.Tensor


def attention_data(seed: int = VECTOR_SEED) -> VectorAttention:
    """Random q, K, V (float64, ``seed``), then s = K q / sqrt(d), a = softmax(s) and o = sum_i a_i v_i
    from :mod:`attnlab.attention`."""
    g = torch.Generator().manual_seed(seed)
    q = torch.randn(VECTOR_D, generator=g, dtype=torch.float64)  # (d,)
    keys = torch.randn(len(VECTOR_TOKENS), VECTOR_D, generator=g, dtype=torch.float64)  # (n, d)
    values = torch.randn(len(VECTOR_TOKENS), VECTOR_D, generator=g, dtype=torch.float64)  # (n, d)
    scores = keys @ q / math.sqrt(VECTOR_D)  # s_i = q · k_i / sqrt(d), (n,)
    output, weights = attention_vector(q, keys, values)  # (d,), (n,)
    if not torch.allclose(weights, softmax(scores)):
        raise RuntimeError("attention_vector's weights differ from softmax(q K^T / sqrt(d))")
    return VectorAttention(VECTOR_TOKENS, q, keys, values, scores, weights, output)


# --------------------------------------------------------------------------------------------------
# chapters 0 and 5-7: the cache per token as bars; chapters 5 and 6: heads sharing K/V

HEADS_MODEL = "llama-3-8b"  # chapters 5 and 6 draw its 32 query heads


@dataclass(frozen=True)
class CacheBar:
    """One bar of the chart: ``name`` ("GQA-8"), the sizing ``scheme`` and ``n_kv_heads`` it stands for,
    the cache ``bytes_per_token`` (all layers, bf16) and how many times smaller than MHA it is."""

    name: str
    scheme: str
    n_kv_heads: int | None
    bytes_per_token: int
    ratio: float

    def value_label(self) -> str:
        """"131 kB · 4× less" (no ratio for MHA itself)."""
        size = sizing.format_bytes(self.bytes_per_token)
        return size if self.scheme == "mha" else f"{size} · {sizing.format_ratio(self.ratio)}× less"


def cache_bars(model: str = HEADS_MODEL, schemes: Sequence[str | tuple[str, int]] = ("mha", "mqa")) -> list[CacheBar]:
    """The bars for ``schemes``: "mha", "mqa", "mla", "gqa" (the model's own KV heads) or ("gqa", n_kv):
    bytes per token from :func:`attnlab.sizing.cache_bytes_per_token` (bfloat16) and the factor from
    :func:`attnlab.sizing.reduction_vs_mha`."""
    spec = sizing.get_model(model)
    bars = []
    for item in schemes:
        scheme, n_kv = item if isinstance(item, tuple) else (item, None)
        if scheme == "gqa" and n_kv is None:
            n_kv = spec.n_kv_heads
        name = f"GQA-{n_kv}" if scheme == "gqa" else scheme.upper()
        bars.append(CacheBar(name, scheme, n_kv, sizing.cache_bytes_per_token(spec, scheme=scheme, n_kv_heads=n_kv),
                             sizing.reduction_vs_mha(spec, scheme=scheme, n_kv_heads=n_kv)))
    return bars


class HeadsDiagram:
    """``n_heads`` query heads in a row, and below them ``n_kv`` key/value heads, each shared by a group
    of n_heads / n_kv neighbouring query heads (query head h reads KV head h // group size, as in
    :func:`attnlab.gqa.grouped_attention`). A KV head is drawn as a key square over a value square."""

    def __init__(self, n_heads: int, y_q: float = 2.0, y_kv: float = 0.25, side: float = 0.3,
                 gap: float = 0.06) -> None:
        self.n_heads, self.y_q, self.y_kv, self.side = n_heads, y_q, y_kv, side
        pitch = side + gap
        self.xs = [(h - (n_heads - 1) / 2) * pitch for h in range(n_heads)]
        self.q_heads = VGroup(*[Square(side, stroke_color=QUERY, stroke_width=1.5, fill_color=tint(QUERY, 0.75),
                                       fill_opacity=1).move_to([x, y_q, 0]) for x in self.xs])

    def _group_x(self, n_kv: int, g: int) -> float:
        size = self.n_heads // n_kv
        return sum(self.xs[g * size:(g + 1) * size]) / size

    def legend(self) -> VGroup:
        """"K" and "V" at the left edge, level with the key and value squares of the KV heads."""
        return VGroup(mathtex("K", size=MIN_MATH_FONT_SIZE, color=KEY).move_to([-6.7, self.y_kv + 0.21, 0]),
                      mathtex("V", size=MIN_MATH_FONT_SIZE, color=VALUE).move_to([-6.7, self.y_kv - 0.21, 0]))

    def kv_heads(self, n_kv: int) -> VGroup:
        """The ``n_kv`` KV heads, each centred under its group of query heads."""
        heads = VGroup()
        for g in range(n_kv):
            k = Square(self.side, stroke_color=KEY, stroke_width=1.5, fill_color=tint(KEY, 0.75), fill_opacity=1)
            v = Square(self.side, stroke_color=VALUE, stroke_width=1.5, fill_color=tint(VALUE, 0.75), fill_opacity=1)
            heads.add(VGroup(k, v).arrange(DOWN, buff=0).move_to([self._group_x(n_kv, g), self.y_kv, 0]))
        return heads

    def links(self, n_kv: int) -> VGroup:
        """One line per query head, from its bottom to the top of the KV head it reads."""
        size = self.n_heads // n_kv
        top = self.y_kv + self.side
        return VGroup(*[Line([x, self.y_q - self.side / 2, 0], [self._group_x(n_kv, h // size), top, 0],
                             color=MUTED, stroke_width=1.5) for h, x in enumerate(self.xs)])

    def groups(self, n_kv: int) -> VGroup:
        """A tinted band behind each group of query heads (none for MHA, where every group is one head)."""
        size = self.n_heads // n_kv
        bands = VGroup()
        if size == 1:
            return bands
        pitch = self.xs[1] - self.xs[0]
        for g in range(n_kv):
            band = RoundedRectangle(corner_radius=0.08, width=size * pitch - 0.02, height=self.side + 0.22,
                                    stroke_width=0, fill_color=tint(MUTED, 0.35 if g % 2 == 0 else 0.2),
                                    fill_opacity=1)
            bands.add(band.move_to([self._group_x(n_kv, g), self.y_q, 0]))
        return bands

    def merge(self, old: VGroup, n_kv_old: int, n_kv_new: int) -> tuple[list, VGroup]:
        """Animations that merge ``old`` KV heads (``n_kv_old`` of them) into ``n_kv_new`` heads: each new
        head takes the place of the old heads of its group. Returns (animations, the new heads)."""
        new = self.kv_heads(n_kv_new)
        pool = n_kv_old // n_kv_new
        anims = [ReplacementTransform(VGroup(*old[g * pool:(g + 1) * pool]), new[g]) for g in range(n_kv_new)]
        return anims, new


class BarChart:
    """Horizontal bars sharing their left edge at ``x0``, bar i centred at y0 - i pitch; the longest is
    ``max_length`` units."""

    def __init__(self, bars: Sequence[CacheBar], x0: float = -3.3, y0: float = -2.05, pitch: float = 0.62,
                 max_length: float = 7.0, height: float = 0.42) -> None:
        self.bars, self.x0, self.y0, self.pitch, self.height = list(bars), x0, y0, pitch, height
        self.unit = max_length / max(b.bytes_per_token for b in bars)

    def make(self, i: int, n_bytes: int | None = None, label: str | None = None):
        """Bar ``i`` drawn at ``n_bytes`` (default: its own size) with ``label`` (default: its value)."""
        b = self.bars[i]
        n_bytes = b.bytes_per_token if n_bytes is None else n_bytes
        mob = bar(n_bytes * self.unit, SCHEME[b.scheme], b.name, label or b.value_label(), height=self.height)
        return mob.shift([self.x0, self.y0 - i * self.pitch, 0])


# --------------------------------------------------------------------------------------------------
# chapters 7-9: one MLA layer; chapters 8 and 9: captions

MLA_MODEL = "deepseek-v3"  # chapters 7, 8 and 9 draw its widths


def layer_config(model: str = MLA_MODEL) -> MLAConfig:
    """One MLA layer of ``model`` as an :class:`~attnlab.mla.MLAConfig` (published widths; the query
    latent is left out, it does not change what is cached)."""
    spec = sizing.get_model(model)
    d_c, d_h_rope = sizing.mla_dims(spec)
    return MLAConfig(d_model=spec.hidden_size, n_heads=spec.n_heads, kv_lora_rank=d_c,
                     qk_nope_head_dim=spec.head_dim, qk_rope_head_dim=d_h_rope, v_head_dim=spec.head_dim)


def per_layer_elements(model: str = MLA_MODEL) -> tuple[int, int]:
    """Numbers cached per token and layer, (MHA: 2 n_h d_h, MLA: d_c + d_h^R), from
    :func:`attnlab.sizing.kv_elements_per_token`; MLA's is checked against :class:`MLAConfig`."""
    mha = sizing.kv_elements_per_token(model, "mha", per_layer=True)
    mla = sizing.kv_elements_per_token(model, "mla", per_layer=True)
    if mla != layer_config(model).cache_elements_per_token():
        raise RuntimeError("MLAConfig and attnlab.sizing disagree on MLA's cache per token")
    return mha, mla


def swap_caption(old: VGroup, new: VGroup) -> list:
    """Animations that replace the caption ``old`` by ``new``: one fades out upwards as the other fades in."""
    return [FadeOut(old, shift=UP * 0.15), FadeIn(new, shift=UP * 0.15)]
