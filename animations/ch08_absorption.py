"""Chapter 8 · MLA at inference: the up-projections are absorbed, so attention runs on the cached
latents themselves.

Matrix products regroup (DeepSeek-V2 paper, §2.1.2; :meth:`attnlab.mla.MultiHeadLatentAttention.attend_absorbed`):

    q_i^T k_{t,i} = (W^UQ_i c^Q)^T (W^UK_i c^KV_t) = ((W^UK_i)^T q_i)^T c^KV_t,

so W^UK_i moves to the query side, once per generated token, and every head scores the same cached
latents c^KV_t: multi-query attention whose one key is the latent. On the value side
sum_t a_{i,t} W^UV_i c^KV_t = W^UV_i sum_t a_{i,t} c^KV_t, and W^UV_i folds into the output projection:
W^O_i W^UV_i is one matrix, computed once. The widths are DeepSeek-V3's (128 heads, d_c = 512).
"""

from __future__ import annotations

import torch
from manim import (
    LEFT,
    PI,
    RIGHT,
    Create,
    FadeIn,
    FadeOut,
    Indicate,
    Line,
    ReplacementTransform,
    RoundedRectangle,
    Square,
    SurroundingRectangle,
    VGroup,
)

from animations.components import MLA_MODEL, layer_config, swap_caption
from animations.style import (
    CACHE,
    HIGHLIGHT,
    INK,
    KEY,
    LATENT,
    MUTED,
    QUERY,
    SMALL,
    VALUE,
    CourseScene,
    column,
    mathtex,
    step_caption,
    text,
    tint,
    title,
)

HEADS_DRAWN = 8  # query heads drawn: seven, "...", the last
TOKENS_DRAWN = 6  # cached latents drawn
SEED = 8
MODEL = MLA_MODEL


class QueryHeads(VGroup):
    """A row of query heads centred at (x, y): ``drawn - 1`` squares, a "...", and the last head."""

    def __init__(self, drawn: int, x: float, y: float, side: float = 0.36, pitch: float = 0.62,
                 color=QUERY) -> None:
        super().__init__()
        xs = [x + (k - drawn / 2) * pitch for k in range(drawn + 1)]  # slot drawn - 1 holds the dots
        self.squares = VGroup(*[Square(side, stroke_color=color, stroke_width=2, fill_color=tint(color, 0.7),
                                       fill_opacity=1).move_to([xs[k], y, 0])
                                for k in range(drawn + 1) if k != drawn - 1])
        self.dots = mathtex(r"\cdots", color=color).move_to([xs[drawn - 1], y, 0])
        self.add(self.squares, self.dots)

    def links_to(self, point) -> VGroup:
        """One line from the bottom of every head to ``point``."""
        return VGroup(*[Line(sq.get_bottom(), point, color=MUTED, stroke_width=1.8) for sq in self.squares])


def latent_cache(n_tokens: int, x: float, y: float, seed: int = SEED) -> VGroup:
    """``n_tokens`` latents c^KV_t as purple columns in a red cache outline centred at (x, y);
    ``result.box`` is the outline."""
    g = torch.Generator().manual_seed(seed)
    cols = VGroup(*[column(torch.randn(3, generator=g).tolist(), LATENT, cell_size=0.28)
                    for _ in range(n_tokens)]).arrange(RIGHT, buff=0.28).move_to([x, y, 0])
    box = RoundedRectangle(corner_radius=0.12, width=cols.width + 0.5, height=cols.height + 0.32,
                           stroke_color=CACHE, stroke_width=4).move_to(cols)
    group = VGroup(cols, box)
    group.box = box
    return group


def score_parts() -> tuple[list[str], list[str]]:
    """The score before and after the regrouping, as MathTex parts:
    q_i^T k_{t,i} = (W^UQ_i c^Q)^T (W^UK_i c^KV_t)  and  q_i^T k_{t,i} = ((W^UK_i)^T q_i)^T c^KV_t."""
    before = [r"q_i^\top", r"k_{t,i}", "=", "(", r"W^{UQ}_i", r"c^Q", r")^\top", "(", r"W^{UK}_i", r"c^{KV}_t", ")"]
    after = [r"q_i^\top", r"k_{t,i}", "=", r"\big(", r"(W^{UK}_i)^\top", r"q_i", r"\big)^\top", r"\;c^{KV}_t"]
    return before, after


def value_parts() -> tuple[list[str], list[str]]:
    """The output before and after folding, as MathTex parts:
    u = sum_i W^O_i sum_t a_{i,t} W^UV_i c^KV_t  and  u = sum_i W^O_i W^UV_i sum_t a_{i,t} c^KV_t."""
    before = [r"u", "=", r"\sum_i", r"W^O_i", r"\sum_t a_{i,t}", r"W^{UV}_i", r"c^{KV}_t"]
    after = [r"u", "=", r"\sum_i", r"\,W^O_i", r"W^{UV}_i", r"\,\sum_t a_{i,t}", r"c^{KV}_t"]
    return before, after


def _coloured(parts: list[str]):
    """A MathTex of ``parts`` with each matrix and vector in its role's colour."""
    colours = {r"q_i^\top": QUERY, r"q_i": QUERY, r"k_{t,i}": KEY, r"W^{UQ}_i": QUERY, r"c^Q": QUERY,
               r"W^{UK}_i": KEY, r"(W^{UK}_i)^\top": KEY, r"W^{UV}_i": VALUE}
    colours |= {tex: LATENT for tex in parts if "c^{KV}" in tex}
    mob = mathtex(*parts)
    for part, tex in zip(mob, parts, strict=True):
        part.set_color(colours.get(tex, INK))
    return mob


class AbsorptionScene(CourseScene):
    """W^UK slides over to the query; every head then reads the one latent cache; W^UV folds into W^O."""

    def construct(self) -> None:
        cfg = layer_config(MODEL)
        heading = title("MLA at inference: absorption", chapter=8)

        # the score, and its regrouping: W^UK_i moves over to the query side
        before, after = score_parts()
        score = _coloured(before).move_to([0, 2.45, 0])
        regrouped = _coloured(after).move_to([0, 2.45, 0])
        cap1 = step_caption("keys come from the cached latent:", r"k_{t,i} = W^{UK}_i\, c^{KV}_t")
        cap2 = step_caption("fold into the query, once per token:", r"\tilde q_i = (W^{UK}_i)^\top q_i")
        cap3 = step_caption("every head reads the same latents:", r"\tilde q_i^\top c^{KV}_t")
        cap4 = step_caption("values too, one matrix per head:", r"W^O_i W^{UV}_i")

        self.add(heading)
        self.play(FadeIn(score), FadeIn(cap1), run_time=1.0)
        self.wait(1.2)
        self.play(*[ReplacementTransform(score[k], regrouped[k]) for k in (0, 1, 2)],
                  ReplacementTransform(VGroup(*score[3:7]), regrouped[5]),  # W^UQ_i c^Q is q_i
                  ReplacementTransform(score[8], regrouped[4], path_arc=PI * 0.7),
                  ReplacementTransform(score[9], regrouped[7]),
                  FadeOut(score[7]), FadeOut(score[10]), FadeIn(regrouped[3]), FadeIn(regrouped[6]),
                  *swap_caption(cap1, cap2), run_time=2.0)
        absorbed = SurroundingRectangle(VGroup(regrouped[4], regrouped[5]), color=QUERY, buff=0.08, corner_radius=0.08)
        cached = SurroundingRectangle(regrouped[7], color=CACHE, buff=0.08, corner_radius=0.08)
        self.play(Create(absorbed), Create(cached), run_time=0.8)
        self.wait(0.8)

        # MQA-style: all heads' absorbed queries score the one cache of latents
        heads = QueryHeads(HEADS_DRAWN, x=0.2, y=1.15)
        heads_label = text(f"{cfg.n_heads} heads", SMALL, color=QUERY).next_to(heads, LEFT, buff=0.4)
        cache = latent_cache(TOKENS_DRAWN, x=0.2, y=-0.55)
        cache_label = text(f"{cfg.kv_lora_rank} per token", SMALL, color=CACHE).next_to(cache, LEFT, buff=0.4)
        heads_name = mathtex(r"\tilde q_i", color=QUERY).next_to(heads, RIGHT, buff=0.3)
        cache_name = mathtex(r"c^{KV}_t", color=LATENT).next_to(cache, RIGHT, buff=0.3)
        links = heads.links_to(cache.box.get_top())
        self.play(FadeIn(heads), FadeIn(heads_label), FadeIn(cache), FadeIn(cache_label), FadeIn(cache_name),
                  FadeIn(heads_name), *swap_caption(cap2, cap3), run_time=1.0)
        self.play(Create(links), run_time=0.8)
        self.play(Indicate(cache, color=CACHE, scale_factor=1.06), run_time=0.9)

        # the value side: W^UV_i leaves the sum and folds into W^O_i
        v_before, v_after = value_parts()
        out = _coloured(v_before).move_to([0, -2.2, 0])
        folded = _coloured(v_after).move_to([0, -2.2, 0])
        self.play(FadeIn(out), *swap_caption(cap3, cap4), run_time=0.9)
        self.wait(0.5)
        self.play(*[ReplacementTransform(out[k], folded[k]) for k in (0, 1, 2, 3, 6)],
                  ReplacementTransform(out[5], folded[4], path_arc=PI * 0.7),
                  ReplacementTransform(out[4], folded[5]), run_time=1.6)
        one = SurroundingRectangle(VGroup(folded[3], folded[4]), color=HIGHLIGHT, buff=0.08, corner_radius=0.08)
        self.play(Create(one), run_time=0.7)
        self.wait(3.0)
