"""Chapter 3 · attention as matrices: every query at once.

    Attention(Q, K, V) = softmax(Q K^T / sqrt(d) + M) V

The scene builds the score grid Q K^T, greys the upper triangle with the causal mask M (a query never
sees later keys), takes the softmax of each row and multiplies by V. Its keys, values and last query are
chapter 2's, so the bottom row of weights is the vector form's; the numbers come from
:func:`attnlab.attention.attention_matrix`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from manim import (
    LEFT,
    RIGHT,
    UP,
    AnimationGroup,
    FadeIn,
    LaggedStart,
    ReplacementTransform,
    SurroundingRectangle,
    Transform,
    VGroup,
)

from animations.components import VECTOR_TOKENS, attention_data
from animations.style import (
    CELL,
    FAINT,
    HIGHLIGHT,
    INK,
    KEY,
    MIN_MATH_FONT_SIZE,
    MUTED,
    QUERY,
    SMALL,
    VALUE,
    CourseScene,
    cell,
    grid,
    mathtex,
    shades,
    step_caption,
    text,
    title,
)
from attnlab.attention import attention_matrix, causal_mask

SEED = 3  # the first n - 1 queries; the last is chapter 2's q


@dataclass(frozen=True)
class MatrixAttention:
    """Q, K, V (n, d), scores Q K^T / sqrt(d) (n, n), the causal mask (n, n, True = may look),
    weights (n, n) and output (n, d)."""

    q: torch.Tensor
    k: torch.Tensor
    v: torch.Tensor
    scores: torch.Tensor
    allowed: torch.Tensor
    weights: torch.Tensor
    output: torch.Tensor


def matrix_data(seed: int = SEED) -> MatrixAttention:
    """Chapter 2's keys and values, n queries (the last one chapter 2's q), and causal attention from
    :func:`attnlab.attention.attention_matrix`."""
    vec = attention_data()
    n, d = vec.keys.shape
    g = torch.Generator().manual_seed(seed)
    q = torch.cat([torch.randn(n - 1, d, generator=g, dtype=torch.float64), vec.q[None]])  # (n, d)
    scores = q @ vec.keys.T / math.sqrt(d)  # (n, n)
    output, weights = attention_matrix(q, vec.keys, vec.values, causal=True)  # (n, d), (n, n)
    return MatrixAttention(q, vec.keys, vec.values, scores, causal_mask(n, n), weights, output)


class AttentionMatrixScene(CourseScene):
    """Q K^T as a grid, the causal mask greying the upper triangle, row softmax, times V."""

    def construct(self) -> None:
        data = matrix_data()
        n, d = data.q.shape
        cw, ch = 0.9, 0.52  # score cell width and height

        heading = title("Attention as matrices", chapter=3)
        formula = mathtex(r"\mathrm{softmax}\Big(", r"\frac{QK^\top}{\sqrt{d}}", r"+ M", r"\Big)", r"V")

        scores = grid(n, n, cw, ch, FAINT, [[0.0] * n for _ in range(n)])
        q_mat = grid(n, d, CELL, ch, QUERY, [shades(row) for row in data.q.tolist()])
        kt_mat = grid(d, n, cw, CELL, KEY, [shades(col) for col in data.k.T.tolist()])
        v_mat = grid(n, d, CELL, ch, VALUE, [shades(row) for row in data.v.tolist()])
        o_mat = grid(n, d, CELL, ch, VALUE, [shades(row) for row in data.output.tolist()])

        scores.move_to([-1.0, 0.0, 0])
        scores.shift(UP * (0.1 - scores.get_top()[1]))  # K^T and the key tokens fit above it
        q_mat.next_to(scores, LEFT, buff=0.35)
        kt_mat.next_to(scores, UP, buff=0.3)
        v_mat.next_to(scores, RIGHT, buff=0.55)
        equals = mathtex("=").next_to(v_mat, RIGHT, buff=0.35)
        o_mat.next_to(equals, RIGHT, buff=0.35)
        formula.move_to([(v_mat.get_left()[0] + o_mat.get_right()[0]) / 2, 1.5, 0])
        labels = VGroup(
            mathtex("Q", color=QUERY).next_to(q_mat, LEFT, buff=0.2),
            mathtex(r"K^\top", color=KEY).next_to(kt_mat, LEFT, buff=0.2),
            mathtex("V", color=VALUE).next_to(v_mat, UP, buff=0.2),
            mathtex("O", color=VALUE).next_to(o_mat, UP, buff=0.2),
        )
        words = VGroup(*[text(t, SMALL, color=MUTED).next_to(kt_mat[0][j], UP, buff=0.12)
                         for j, t in enumerate(VECTOR_TOKENS)])

        self.add(heading)
        self.play(FadeIn(formula), FadeIn(q_mat), FadeIn(kt_mat), FadeIn(labels[:2]), FadeIn(words),
                  FadeIn(scores), run_time=1.5)

        # 1. scores: entry (i, j) is q_i · k_j / sqrt(d)
        mark = SurroundingRectangle(formula[1], color=HIGHLIGHT, buff=0.06)
        step = step_caption("scores", r"S = QK^\top/\sqrt{d}")
        lo, hi = float(data.scores.min()), float(data.scores.max())
        fill = [[0.1 + 0.8 * (s - lo) / (hi - lo) for s in row] for row in data.scores.tolist()]
        score_cells = VGroup(*[VGroup(*[cell(cw, ch, MUTED, fill[i][j]).move_to(scores[i][j]) for j in range(n)])
                               for i in range(n)])
        self.play(FadeIn(mark), FadeIn(step), run_time=0.7)
        self.play(LaggedStart(*[Transform(scores[i], score_cells[i]) for i in range(n)], lag_ratio=0.3),
                  run_time=1.8)
        self.wait(0.5)

        # 2. the causal mask: query i may not look at keys j > i
        masked = [(i, j) for i in range(n) for j in range(n) if not data.allowed[i, j]]
        step2 = step_caption("causal mask", r"M_{ij} = -\infty \ \text{for}\ j > i")
        minus_inf = VGroup(*[mathtex(r"-\infty", size=MIN_MATH_FONT_SIZE, color=MUTED).move_to(scores[i][j])
                             for i, j in masked])
        self.play(mark.animate.become(SurroundingRectangle(formula[2], color=HIGHLIGHT, buff=0.06)),
                  ReplacementTransform(step, step2), run_time=0.7)
        self.play(*[scores[i][j].animate.become(cell(cw, ch, MUTED, 0.0).move_to(scores[i][j]).set_fill(FAINT))
                    for i, j in masked], FadeIn(minus_inf), run_time=1.2)
        self.wait(0.5)

        # 3. softmax along each row: the weights of one query sum to 1
        step3 = step_caption("row softmax", r"A = \mathrm{softmax}(S + M)")
        weight_rows, numbers = VGroup(), VGroup()  # numbers[i]: the weights written in row i
        for i in range(n):
            row_w = data.weights[i].tolist()
            top = max(row_w)
            row, row_numbers = VGroup(), VGroup()
            for j, a in enumerate(row_w):
                if data.allowed[i, j]:
                    row.add(cell(cw, ch, QUERY, 0.08 + 0.62 * a / top).move_to(scores[i][j]))
                    row_numbers.add(text(_short(a), SMALL, color=INK).move_to(scores[i][j]))
                else:
                    row.add(cell(cw, ch, MUTED, 0.0).move_to(scores[i][j]).set_fill(FAINT))
            weight_rows.add(row)
            numbers.add(row_numbers)
        self.play(mark.animate.become(SurroundingRectangle(VGroup(formula[0], formula[3]), color=HIGHLIGHT,
                                                           buff=0.06)),
                  ReplacementTransform(step2, step3), minus_inf.animate.set_opacity(0), run_time=0.7)
        self.remove(minus_inf)
        self.play(LaggedStart(*[AnimationGroup(Transform(scores[i], weight_rows[i]),
                                               FadeIn(numbers[i]))
                                for i in range(n)], lag_ratio=0.35), run_time=2.4)
        self.wait(0.6)

        # 4. times V: output row i mixes the values with row i's weights
        step4 = step_caption("output", r"O = AV")
        self.play(mark.animate.become(SurroundingRectangle(formula[4], color=HIGHLIGHT, buff=0.06)),
                  ReplacementTransform(step3, step4), FadeIn(v_mat), FadeIn(labels[2]), run_time=0.9)
        self.play(FadeIn(equals), LaggedStart(*[FadeIn(o_mat[i], shift=RIGHT * 0.2) for i in range(n)],
                                              lag_ratio=0.3), FadeIn(labels[3]), run_time=1.6)
        self.play(mark.animate.become(SurroundingRectangle(formula, color=HIGHLIGHT, buff=0.08)), run_time=0.6)
        self.wait(2.0)


def _short(a: float) -> str:
    """A weight in at most three characters: 0.23 -> ".23", 1.0 -> "1"."""
    return "1" if a >= 0.995 else f"{a:.2f}".lstrip("0")
