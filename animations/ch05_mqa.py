"""Chapter 5 · multi-query attention (MQA): every query head keeps its own query, but all of them share
ONE key head and ONE value head, so the cache holds 2 d_h numbers per token and layer instead of
2 n_h d_h.

The heads drawn are Llama-3-8B's 32 query heads; the bars are its cache per token (all layers,
bfloat16) from :func:`attnlab.sizing.cache_bytes_per_token`, as published (GQA) and as the what-if MHA and
MQA. :class:`~animations.components.HeadsDiagram` and :func:`~animations.components.cache_bars`, shared
with chapter 6, are in :mod:`animations.components`.
"""

from __future__ import annotations

from manim import (
    LEFT,
    UP,
    FadeIn,
    Indicate,
    ReplacementTransform,
    Transform,
    VGroup,
)

from animations.components import HEADS_MODEL, BarChart, HeadsDiagram, cache_bars
from animations.style import (
    CACHE,
    INK,
    MUTED,
    QUERY,
    SMALL,
    CourseScene,
    text,
    title,
)
from attnlab import sizing

MODEL = HEADS_MODEL


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

