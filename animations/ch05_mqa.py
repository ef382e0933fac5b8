"""Chapter 5 · multi-query attention (MQA): every query head keeps its own query, but all of them share
ONE key head and ONE value head, so the cache holds 2 d_h numbers per token and layer instead of
2 n_h d_h.

The heads drawn are Llama-3-8B's 32 query heads; the bars are its cache per token (all layers,
bfloat16) from :func:`attnlab.sizing.bytes_per_token`, as published (GQA) and as the what-if MHA and
MQA. :class:`HeadsDiagram` and :func:`cache_bars` are shared with chapter 6.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from manim import (
    DOWN,
    LEFT,
    UP,
    FadeIn,
    Indicate,
    Line,
    ReplacementTransform,
    RoundedRectangle,
    Square,
    Transform,
    VGroup,
)

from animations.style import (
    CACHE,
    INK,
    KEY,
    MIN_MATH_FONT_SIZE,
    MUTED,
    QUERY,
    SCHEME,
    SMALL,
    VALUE,
    CourseScene,
    bar,
    mathtex,
    text,
    tint,
    title,
)
from attnlab import sizing

MODEL = "llama-3-8b"


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


def cache_bars(model: str = MODEL, schemes: Sequence[str | tuple[str, int]] = ("mha", "mqa")) -> list[CacheBar]:
    """The bars for ``schemes``: "mha", "mqa", "mla", "gqa" (the model's own KV heads) or ("gqa", n_kv):
    bytes per token from :func:`attnlab.sizing.bytes_per_token` (bfloat16) and the factor from
    :func:`attnlab.sizing.reduction_vs_mha`."""
    spec = sizing.get_model(model)
    bars = []
    for item in schemes:
        scheme, n_kv = item if isinstance(item, tuple) else (item, None)
        if scheme == "gqa" and n_kv is None:
            n_kv = spec.n_kv_heads
        name = f"GQA-{n_kv}" if scheme == "gqa" else scheme.upper()
        bars.append(CacheBar(name, scheme, n_kv, sizing.bytes_per_token(spec, scheme=scheme, n_kv_heads=n_kv),
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


class MQAScene(CourseScene):
    """Llama-3-8B's 32 query heads: MHA gives each its own K/V head; MQA merges them all into one."""

    def construct(self) -> None:
        spec = sizing.get_model(MODEL)
        bars = cache_bars(MODEL, ("mha", "mqa"))
        diagram = HeadsDiagram(spec.n_heads)
        chart = BarChart(bars)

        heading = title("Multi-query attention", chapter=5)
        q_label = text(f"{spec.n_heads} query heads", SMALL, color=QUERY)
        q_label.next_to(diagram.q_heads, UP, buff=0.15).align_to(diagram.q_heads, LEFT)
        kv = diagram.kv_heads(spec.n_heads)
        links = diagram.links(spec.n_heads)
        kv_label = self._kv_label(f"{spec.n_heads} K/V heads: one per query head (MHA)", kv, diagram)
        header = text(f"KV cache per token, {spec.name} ({spec.n_layers} layers, bf16)", SMALL, color=MUTED)
        header.move_to([0, chart.y0 + 0.6, 0])
        mha_bar = chart.make(0)
        now = chart.make(1, bars[0].bytes_per_token, bars[0].value_label())  # starts as big as MHA

        self.add(heading)
        self.play(FadeIn(diagram.q_heads), FadeIn(q_label), run_time=0.8)
        self.play(FadeIn(kv), FadeIn(links), FadeIn(kv_label), FadeIn(diagram.legend()), run_time=1.0)
        self.play(FadeIn(header), FadeIn(mha_bar), run_time=0.8)
        self.wait(1.5)

        # MQA: the 32 K/V heads merge into one that every query head reads
        self.play(FadeIn(now), run_time=0.6)
        anims, kv_one = diagram.merge(kv, spec.n_heads, 1)
        kv_label_mqa = self._kv_label(f"1 K/V head, shared by all {spec.n_heads} query heads (MQA)", kv_one, diagram)
        self.play(*anims, Transform(links, diagram.links(1)), ReplacementTransform(kv_label, kv_label_mqa),
                  ReplacementTransform(now, chart.make(1)), run_time=3.0)
        self.wait(1.0)
        # every query head still asks its own question; they all read the same key and value
        self.play(Indicate(diagram.q_heads, color=QUERY, scale_factor=1.05), run_time=1.0)
        self.play(Indicate(kv_one, color=CACHE, scale_factor=1.3), run_time=1.0)
        self.wait(3.0)

    @staticmethod
    def _kv_label(s: str, kv: VGroup, diagram: HeadsDiagram):
        return text(s, SMALL, color=INK).move_to([0, diagram.y_kv - diagram.side - 0.42, 0])

