"""Chapter 2 · attention in vector form: one query scores every key, softmax turns the scores into
weights, and the output is the weighted sum of the values.

    s_i = q · k_i / sqrt(d),   a = softmax(s),   o = sum_i a_i v_i

The vectors are small random ones (seed fixed); the scores, weights and output shown are computed by
:func:`attnlab.attention.attention_vector` and :func:`attnlab.attention.softmax`
(:func:`animations.components.attention_data`, shared with chapter 3).
"""

from __future__ import annotations

from manim import (
    DOWN,
    LEFT,
    RIGHT,
    UP,
    FadeIn,
    FadeOut,
    GrowFromEdge,
    LaggedStart,
    Line,
    Rectangle,
    ReplacementTransform,
    VGroup,
)

from animations.components import attention_data
from animations.style import (
    BODY,
    INK,
    KEY,
    MUTED,
    QUERY,
    SMALL,
    VALUE,
    CourseScene,
    column,
    step_caption,
    text,
    title,
)


class AttentionVectorScene(CourseScene):
    """One query against five keys: dot products as bars, softmax, the weighted sum of values."""

    def construct(self) -> None:
        data = attention_data()
        n = len(data.tokens)
        heading = title("One query, five keys", chapter=2)
        xs = [-3.4 + 1.75 * i for i in range(n)]

        words = VGroup(*[text(t, BODY).move_to([x, 2.45, 0]) for t, x in zip(data.tokens, xs, strict=True)])
        keys = VGroup(*[column(data.keys[i].tolist(), KEY, f"k_{i + 1}") for i in range(n)])
        values = VGroup(*[column(data.values[i].tolist(), VALUE, f"v_{i + 1}") for i in range(n)])
        for i in range(n):
            keys[i].move_to([xs[i] - 0.27, 0, 0])
            keys[i].shift(UP * (1.95 - keys[i].get_top()[1]))  # cells start just under the words
            values[i].next_to(keys[i], RIGHT, buff=0.12).align_to(keys[i], UP)
        q = column(data.q.tolist(), QUERY, f"q_{n}").align_to(keys[0], UP).set_x(-6.0)
        q_word = text(f"“{data.tokens[-1]}”", SMALL, color=QUERY).next_to(q, UP, buff=0.15)

        self.add(heading)
        self.play(FadeIn(words), FadeIn(keys), FadeIn(q), FadeIn(q_word), run_time=1.5)

        # 1. scores: s_i = q · k_i / sqrt(d), as bars on a baseline (negative ones hang below it)
        base_y, unit = -1.75, 0.45  # baseline height, bar units per score unit
        baseline = Line([xs[0] - 0.8, base_y, 0], [xs[-1] + 0.8, base_y, 0], color=INK, stroke_width=2)
        step = step_caption("score", r"s_i = q \cdot k_i / \sqrt{d}")
        self.play(FadeIn(step), FadeIn(baseline), run_time=0.8)
        score_bars, score_labels = VGroup(), VGroup()
        for i, s in enumerate(data.scores.tolist()):
            score_bars.add(self._bar(xs[i], base_y, s * unit, MUTED))
            score_labels.add(self._bar_label(f"{s:.2f}", score_bars[i], s >= 0))
        flashes = VGroup(*[q.cells.copy() for _ in range(n)])
        self.play(LaggedStart(*[flashes[i].animate.move_to(keys[i].cells).set_opacity(0) for i in range(n)],
                              lag_ratio=0.25), run_time=1.6)
        self.remove(flashes)
        self.play(LaggedStart(*[GrowFromEdge(b, DOWN if s >= 0 else UP)
                                for b, s in zip(score_bars, data.scores.tolist(), strict=True)], lag_ratio=0.2),
                  LaggedStart(*[FadeIn(lb) for lb in score_labels], lag_ratio=0.2), run_time=1.6)
        self.wait(0.8)

        # 2. softmax: every weight positive, together they sum to 1
        weight_unit = 1.05 / float(data.weights.max())
        weight_bars = VGroup(*[self._bar(xs[i], base_y, a * weight_unit, QUERY)
                               for i, a in enumerate(data.weights.tolist())])
        weight_labels = VGroup(*[self._bar_label(f"{a:.2f}", weight_bars[i], True)
                                 for i, a in enumerate(data.weights.tolist())])
        total = float(data.weights.sum())
        step2 = step_caption("weights", rf"a = \mathrm{{softmax}}(s), \quad \textstyle\sum_i a_i = {total:.2f}")
        self.play(ReplacementTransform(step, step2), ReplacementTransform(score_bars, weight_bars),
                  ReplacementTransform(score_labels, weight_labels), run_time=1.8)
        self.wait(1.0)

        # 3. output: o = sum_i a_i v_i, each value counted by its weight
        self.play(FadeIn(values, shift=LEFT * 0.2), run_time=1.0)
        out = column(data.output.tolist(), VALUE, "o").align_to(keys[0], UP).set_x(6.1)
        step3 = step_caption("output", r"o = \textstyle\sum_i a_i v_i")
        movers = VGroup(*[values[i].cells.copy() for i in range(n)])
        self.play(ReplacementTransform(step2, step3), run_time=0.6)
        self.play(LaggedStart(*[movers[i].animate.move_to(out.cells).set_opacity(0.15 + 0.85 * a / float(
            data.weights.max())) for i, a in enumerate(data.weights.tolist())], lag_ratio=0.15), run_time=2.0)
        self.play(FadeIn(out), FadeOut(movers), run_time=0.8)
        self.wait(2.0)

    @staticmethod
    def _bar(x: float, base_y: float, height: float, color) -> Rectangle:
        """A vertical bar of signed ``height`` standing on (or hanging from) the baseline at ``x``."""
        rect = Rectangle(width=0.7, height=max(abs(height), 0.03), stroke_width=0, fill_color=color, fill_opacity=1)
        return rect.move_to([x, base_y, 0], aligned_edge=DOWN if height >= 0 else UP)

    @staticmethod
    def _bar_label(s: str, bar: Rectangle, above: bool):
        return text(s, SMALL).next_to(bar, UP if above else DOWN, buff=0.1)
