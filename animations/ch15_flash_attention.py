"""Chapter 15 · FlashAttention: attention without the score matrix.

The scene lays out the n x n score grid of a causal attention cut into tiles of B_r query rows and B_c key
columns. A highlighted tile sweeps over it query block by query block; tiles wholly above the diagonal are
never visited. Beside the grid, the running maximum m and running sum l of the block's last query row
update tile by tile, with the rescaling exp(m_old - m_new) whenever the maximum moves; at the end the
grid has never been stored whole, only m, l and the output of each row. The tile plan comes from
:func:`attnlab.flash.tile_schedule`, the numbers from :func:`attnlab.flash.online_softmax_trace` on the
scores of random queries and keys, and the output from :func:`attnlab.flash.flash_attention`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from manim import (
    DOWN,
    LEFT,
    RIGHT,
    UP,
    FadeIn,
    FadeOut,
    Rectangle,
    ReplacementTransform,
    VGroup,
)

from animations.style import (
    FAINT,
    HIGHLIGHT,
    INK,
    KEY,
    MIN_MATH_FONT_SIZE,
    MUTED,
    QUERY,
    SMALL,
    CourseScene,
    cell,
    mathtex,
    step_caption,
    text,
    title,
)
from attnlab.flash import OnlineSoftmaxStep, flash_attention, online_softmax_trace, tile_schedule

N = 8  # tokens: an 8 x 8 score grid
D = 4  # head width
B_R, B_C = 4, 2  # tile: 4 query rows x 2 key columns
SEED = 9  # chosen so that the tracked rows' maximum moves from tile to tile


@dataclass(frozen=True)
class FlashSceneData:
    """The scores (N, N) with the causal mask applied (-inf above the diagonal), the tile plan
    (:func:`tile_schedule`), for each query block the online-softmax steps of its last row (one per visited
    key block), and that row's output's log-sum-exp from :func:`flash_attention`."""

    scores: torch.Tensor
    schedule: list[list[str]]
    steps: list[list[OnlineSoftmaxStep]]
    lse: list[float]


def flash_scene_data(seed: int = SEED) -> FlashSceneData:
    """Random q, k, v (N, D), float64; the steps of the online softmax of row B_r - 1, 2 B_r - 1, ... over its
    visible keys, B_c at a time, and those rows' log-sum-exp as the tiled forward returns it."""
    g = torch.Generator().manual_seed(seed)
    q, k, v = (torch.randn(1, 1, N, D, generator=g, dtype=torch.float64) * 1.5 for _ in range(3))
    scores = (q[0, 0] @ k[0, 0].T) / math.sqrt(D)  # (N, N)
    scores = scores.masked_fill(torch.ones(N, N, dtype=torch.bool).triu(1), float("-inf"))
    _, lse = flash_attention(q, k, v, causal=True, block_q=B_R, block_k=B_C)
    rows = [min(i0 + B_R, N) - 1 for i0 in range(0, N, B_R)]  # the last row of each query block
    steps = [online_softmax_trace(scores[r, :r + 1], B_C)[0] for r in rows]
    return FlashSceneData(scores, tile_schedule(N, N, B_R, B_C, causal=True), steps,
                          [float(lse[0, 0, r]) for r in rows])


class FlashAttentionScene(CourseScene):
    """Tiles sweep the causal score grid; the running max m and sum l of one row update tile by tile."""

    def construct(self) -> None:
        data = flash_scene_data()
        side = 0.56  # one score cell
        heading = title("FlashAttention", chapter=15)

        cells = VGroup(*[VGroup(*[cell(side, side, MUTED, 0.0).set_fill(FAINT if j > i else "#FFFFFF")
                                  for j in range(N)]).arrange(RIGHT, buff=0) for i in range(N)])
        cells.arrange(DOWN, buff=0).move_to([-3.3, -0.35, 0])
        tiles = VGroup()
        for bi, row in enumerate(data.schedule):
            for bj, kind in enumerate(row):
                box = Rectangle(width=side * B_C, height=side * B_R, stroke_color=INK, stroke_width=3)
                box.move_to(VGroup(*[cells[i][j] for i in range(bi * B_R, (bi + 1) * B_R)
                                     for j in range(bj * B_C, (bj + 1) * B_C)]))
                box.kind, box.block = kind, (bi, bj)
                tiles.add(box)
        b_c = mathtex("B_c", color=KEY).next_to(tiles[0], UP, buff=0.12)
        b_r = mathtex("B_r", color=QUERY).next_to(tiles[0], LEFT, buff=0.12)
        keys = text("keys", SMALL, color=KEY).next_to(cells, UP, buff=0.12).align_to(cells, RIGHT)
        queries = text("queries", SMALL, color=QUERY).rotate(math.pi / 2).next_to(cells, LEFT, buff=0.12)
        queries.align_to(cells, DOWN)

        self.add(heading)
        self.play(FadeIn(cells), FadeIn(tiles), FadeIn(b_c), FadeIn(b_r), FadeIn(keys), FadeIn(queries),
                  run_time=1.2)

        panel_x = 2.9
        caption = step_caption("one tile at a time", r"S_{ij} = Q_i K_j^\top / \sqrt{d}")
        self.play(FadeIn(caption), run_time=0.6)
        cursor = tiles[0].copy().set_stroke(HIGHLIGHT, width=7)
        self.play(FadeIn(cursor), run_time=0.4)
        readout = VGroup()
        for bi, row in enumerate(data.schedule):
            r = min((bi + 1) * B_R, N) - 1  # the row whose statistics the panel follows
            tracked = Rectangle(width=side * N, height=side, stroke_color=HIGHLIGHT, stroke_width=3)
            tracked.move_to(cells[r]).set_fill(HIGHLIGHT, opacity=0.12)
            self.play(FadeIn(tracked), run_time=0.3)
            for bj, kind in enumerate(row):
                tile = tiles[bi * len(row) + bj]
                if kind == "skipped":
                    self.play(tile.animate.set_stroke(MUTED, width=2).set_fill(FAINT, opacity=0.8), run_time=0.25)
                    continue
                step = data.steps[bi][bj]
                new = _panel(r, step, panel_x)
                fill = [cells[i][j] for i in range(bi * B_R, (bi + 1) * B_R) for j in range(bj * B_C, (bj + 1) * B_C)
                        if j <= i]
                self.play(cursor.animate.move_to(tile),
                          *[c.animate.set_fill(QUERY, opacity=0.35) for c in fill],
                          ReplacementTransform(readout, new) if len(readout) else FadeIn(new), run_time=0.7)
                readout = new
                self.wait(0.35)
            self.play(*[c.animate.set_fill(QUERY, opacity=0.12)  # computed, used, and not kept
                        for c_i, row_cells in enumerate(cells) for c_j, c in enumerate(row_cells)
                        if bi * B_R <= c_i < (bi + 1) * B_R and c_j <= c_i],
                      FadeOut(tracked), run_time=0.4)

        skipped = VGroup(*[tiles[bi * len(row) + bj] for bi, row in enumerate(data.schedule)
                           for bj, kind in enumerate(row) if kind == "skipped"])
        never = text("skipped", SMALL, color=MUTED).move_to(VGroup(*[t for t in skipped if t.block[0] == 0]))
        done = step_caption("scores never stored:", r"O = \tilde O / \ell,\ \ L = m + \log \ell")
        kept = VGroup(text("kept per row:", SMALL, color=INK),
                      mathtex(r"m,\ \ell,\ O", size=MIN_MATH_FONT_SIZE, color=INK)).arrange(RIGHT, buff=0.2)
        kept.next_to(readout, DOWN, buff=0.35).align_to(readout, LEFT)
        self.play(ReplacementTransform(caption, done), FadeOut(cursor), FadeIn(kept), FadeIn(never),
                  run_time=0.8)
        self.wait(2.0)


def _panel(row: int, step: OnlineSoftmaxStep, x: float) -> VGroup:
    """The running statistics of query row ``row`` after ``step``: m, l and the rescaling factor."""
    rescale = (text("first tile: no rescaling", SMALL, color=MUTED) if step.start == 0 else
               mathtex(rf"e^{{m_\mathrm{{old}} - m_\mathrm{{new}}}} = {step.alpha:.2f}",
                       color=HIGHLIGHT if step.alpha < 1 else INK))
    lines = VGroup(
        text(f"row {row + 1}, keys {step.start + 1}-{step.stop}", SMALL, color=MUTED),
        mathtex(rf"m = {step.m:.2f}", color=INK),
        mathtex(rf"\ell = {step.l:.2f}", color=INK),
        rescale,
    ).arrange(DOWN, buff=0.3, aligned_edge=LEFT)
    return lines.move_to([x, 0.9, 0])
