"""Chapter 6 · grouped-query attention (GQA): the query heads split into groups, and each group shares
one key head and one value head, between MHA (a group per head) and MQA (one group).

Llama-3-8B, as published: 32 query heads in 8 groups of 4. Converting MHA to GQA mean-pools the K/V
heads of each group (:func:`attnlab.gqa.mha_to_gqa`), drawn here as the heads of a group merging. The
bars are the cache per token (all layers, bfloat16) from :func:`attnlab.sizing.cache_bytes_per_token`.
"""

from __future__ import annotations

from manim import LEFT, UP, FadeIn, ReplacementTransform, Transform

from animations.components import HEADS_MODEL, BarChart, HeadsDiagram, cache_bars
from animations.style import INK, MUTED, QUERY, SMALL, CourseScene, text, title
from attnlab import sizing

MODEL = HEADS_MODEL


def gqa_bars(model: str = MODEL):
    """MHA, the model's GQA and MQA bars (see :func:`animations.components.cache_bars`)."""
    return cache_bars(model, ("mha", "gqa", "mqa"))


class GQAScene(CourseScene):
    """MHA -> GQA-8 for Llama-3-8B: K/V heads merge within groups of four query heads; the cache shrinks 4x."""

    def construct(self) -> None:
        spec = sizing.get_model(MODEL)
        bars = gqa_bars()
        n_kv, group = spec.n_kv_heads, spec.group_size
        diagram = HeadsDiagram(spec.n_heads)
        chart = BarChart(bars)

        heading = title("Grouped-query attention", chapter=6)
        q_label = text(f"{spec.n_heads} query heads", SMALL, color=QUERY)
        q_label.next_to(diagram.q_heads, UP, buff=0.15).align_to(diagram.q_heads, LEFT)
        kv = diagram.kv_heads(spec.n_heads)
        links = diagram.links(spec.n_heads)
        kv_label = self._kv_label(f"{spec.n_heads} K/V heads: one per query head (MHA)", diagram)
        header = text(f"KV cache per token, {spec.name} ({spec.n_layers} layers, bf16)", SMALL, color=MUTED)
        header.move_to([0, chart.y0 + 0.6, 0])
        mha_bar = chart.make(0)
        gqa_bar = chart.make(1, bars[0].bytes_per_token, bars[0].value_label())  # starts as big as MHA

        self.add(heading)
        self.play(FadeIn(diagram.q_heads), FadeIn(q_label), run_time=0.8)
        self.play(FadeIn(kv), FadeIn(links), FadeIn(kv_label), FadeIn(diagram.legend()), run_time=1.0)
        self.play(FadeIn(header), FadeIn(mha_bar), run_time=0.8)
        self.wait(1.0)

        # groups of query heads form; inside each group the K/V heads merge (mean-pooled) into one
        bands = diagram.groups(n_kv)
        group_label = text(f"{n_kv} groups of {group}", SMALL, color=INK)
        group_label.next_to(diagram.q_heads, UP, buff=0.15).align_to(diagram.q_heads, LEFT).shift(
            [q_label.width + 0.4, 0, 0])
        self.add_foreground_mobjects(diagram.q_heads)
        self.play(FadeIn(bands), FadeIn(group_label), run_time=1.2)
        self.play(FadeIn(gqa_bar), run_time=0.5)
        anims, kv_gqa = diagram.merge(kv, spec.n_heads, n_kv)
        kv_label_gqa = self._kv_label(f"{n_kv} K/V heads: one per group of {group} query heads (GQA)", diagram)
        self.play(*anims, Transform(links, diagram.links(n_kv)), ReplacementTransform(kv_label, kv_label_gqa),
                  ReplacementTransform(gqa_bar, chart.make(1)), run_time=2.5)
        self.wait(1.0)

        # MQA, one group for all, is the other end
        self.play(FadeIn(chart.make(2), shift=UP * 0.1), run_time=0.8)
        self.wait(3.0)

    @staticmethod
    def _kv_label(s: str, diagram: HeadsDiagram):
        return text(s, SMALL, color=INK).move_to([0, diagram.y_kv - diagram.side - 0.42, 0])
