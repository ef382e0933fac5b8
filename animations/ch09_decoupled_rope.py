"""Chapter 9 · decoupled RoPE: why MLA carries position in a separate, small key.

RoPE turns pair j of a query or key at position m by the angle m theta_j (:func:`attnlab.rope.rope_frequencies`;
the pair drawn is j = 0, theta_0 = 1 rad). Put on keys made from the latent, k_{t,i} = R_t W^UK_i c^KV_t,
the rotation R_t sits between the query and W^UK_i and changes with the cached token t, so W^UK_i can no
longer be folded into the query (chapter 8; :func:`attnlab.mla.rope_on_latent_keys`). MLA keeps the latent
path free of RoPE and adds a small RoPE part per query head, q^R_{t,i}, and ONE RoPE key k^R_t per token
shared by all heads (DeepSeek-V2 paper, eqs. 39, 43, 44), cached next to the latent: d_c + d_h^R numbers
per token and layer, 512 + 64 = 576 for DeepSeek-V3 (``kv_lora_rank`` + ``qk_rope_head_dim``).
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
    Arc,
    Arrow,
    Circle,
    Create,
    Cross,
    DashedLine,
    FadeIn,
    FadeOut,
    Indicate,
    Line,
    RoundedRectangle,
    SurroundingRectangle,
    ValueTracker,
    VGroup,
    always_redraw,
    there_and_back,
)

from animations.components import MLA_MODEL, layer_config, per_layer_elements, swap_caption
from animations.style import (
    BODY,
    CACHE,
    HIGHLIGHT,
    INK,
    KEY,
    LATENT,
    MIN_MATH_FONT_SIZE,
    MUTED,
    QUERY,
    ROPE,
    SMALL,
    CourseScene,
    cell,
    column,
    mathtex,
    step_caption,
    text,
    tint,
    title,
)
from attnlab import sizing
from attnlab.rope import rope_frequencies

POSITIONS = (1, 2, 3)  # the positions m the drawn pair turns through
START_ANGLE = 0.35  # the pair's direction at m = 0, radians
HEADS_DRAWN = 6  # query heads drawn: five, "...", the last
SEED = 9
MODEL = MLA_MODEL


@dataclass(frozen=True)
class CachedWidths:
    """What MLA caches per token and layer: the latent (``d_c``) and the shared RoPE key (``d_h_rope``)."""

    d_c: int
    d_h_rope: int

    @property
    def total(self) -> int:
        """d_c + d_h^R."""
        return self.d_c + self.d_h_rope


def cached_widths(model: str = MODEL) -> CachedWidths:
    """``kv_lora_rank`` and ``qk_rope_head_dim`` of ``model`` (:data:`attnlab.sizing.MODELS`), checked
    against the MLA count of :func:`attnlab.sizing.kv_elements_per_token`."""
    spec = sizing.get_model(model)
    widths = CachedWidths(spec.kv_lora_rank, spec.qk_rope_head_dim)
    if widths.total != per_layer_elements(model)[1]:
        raise RuntimeError("kv_lora_rank + qk_rope_head_dim differs from attnlab.sizing's MLA cache per token")
    return widths


def cache_tex(model: str = MODEL) -> str:
    """The closing formula, numbers from :func:`cached_widths`: "d_c + d_h^R = 512 + 64 = 576"."""
    widths = cached_widths(model)
    return rf"d_c + d_h^R = {widths.d_c} + {widths.d_h_rope} = {widths.total}"


def pair_angles(model: str = MODEL, positions: tuple[int, ...] = POSITIONS) -> list[float]:
    """The angle m theta_0 (radians) pair 0 of ``model``'s RoPE part turns by at each position m."""
    cfg = layer_config(model)
    theta_0 = float(rope_frequencies(cfg.qk_rope_head_dim, cfg.rope_base)[0])
    return [m * theta_0 for m in positions]


def rope_parts() -> list[str]:
    """score_i = (R_s q_i)^T R_t W^UK_i c^KV_t as MathTex parts: RoPE on keys made from the latent."""
    return [r"\mathrm{score}_i", "=", "(", "R_s", "q_i", r")^\top", r"\,R_t\,", r"W^{UK}_i", r"c^{KV}_t"]


def decoupled_parts() -> list[str]:
    """score_i = (W^UK_i^T q^C_i)^T c^KV_t + (q^R_i)^T k^R_t as MathTex parts: the latent term absorbs as in
    chapter 8 (q~_i), position lives only in the RoPE term (DeepSeek-V2 paper, eqs. 40, 44, 46)."""
    return [r"\mathrm{score}_i", "=", r"\tilde q_i^\top", r"c^{KV}_t", "+", r"(q^R_i)^\top", r"k^R_t"]


class SplitHeads(VGroup):
    """Query heads in a row centred at (x, y), each a q^C cell (blue) over a small q^R cell (brown):
    ``drawn - 1`` heads, a "...", the last one. ``result.rope_cells`` are the q^R cells."""

    def __init__(self, drawn: int, x: float, y: float, width: float = 0.42, pitch: float = 0.8) -> None:
        super().__init__()
        xs = [x + (k - drawn / 2) * pitch for k in range(drawn + 1)]  # slot drawn - 1 holds the dots
        self.heads = VGroup()
        for k in range(drawn + 1):
            if k == drawn - 1:
                continue
            q_c = cell(width, 0.6, QUERY, 0.6)
            q_r = cell(width, 0.4, ROPE, 0.6)
            self.heads.add(VGroup(q_c, q_r).arrange(DOWN, buff=0).move_to([xs[k], y, 0]))
        self.rope_cells = VGroup(*[head[1] for head in self.heads])
        self.dots = mathtex(r"\cdots", color=QUERY).move_to([xs[drawn - 1], y, 0])
        self.add(self.heads, self.dots)


class DecoupledRoPEScene(CourseScene):
    """RoPE turns a pair; R_t blocks the absorption; the fix caches a shared RoPE key next to the latent."""

    def construct(self) -> None:
        cfg = layer_config()
        widths = cached_widths()
        angles = pair_angles()
        heading = title("Decoupled RoPE", chapter=9)

        # 1 · RoPE turns each pair of a vector by m theta_j
        g = torch.Generator().manual_seed(SEED)
        vec = column(torch.randn(6, generator=g).tolist(), ROPE, cell_size=0.34).move_to([-6.2, 1.1, 0])
        pair = SurroundingRectangle(VGroup(*vec.cells[:2]), color=HIGHLIGHT, buff=0.04, stroke_width=4)
        centre = [-4.0, 1.1, 0]
        radius = 1.0
        ring = Circle(radius, color=tint(MUTED, 0.5), stroke_width=2).move_to(centre)
        axes = VGroup(Line([-5.15, 1.1, 0], [-2.85, 1.1, 0], color=tint(MUTED, 0.5), stroke_width=1.5),
                      Line([-4.0, -0.05, 0], [-4.0, 2.25, 0], color=tint(MUTED, 0.5), stroke_width=1.5))
        link = DashedLine(pair.get_right(), ring.get_left(), color=HIGHLIGHT, stroke_width=2)
        m = ValueTracker(0.0)  # the angle turned so far, m theta_0

        def tip(angle: float):
            return [centre[0] + radius * math.cos(angle), centre[1] + radius * math.sin(angle), 0]

        ghost = Arrow(centre, tip(START_ANGLE), buff=0, color=tint(ROPE, 0.35), stroke_width=4)
        arrow = always_redraw(lambda: Arrow(centre, tip(START_ANGLE + m.get_value()), buff=0, color=ROPE,
                                            stroke_width=5))
        sweep = always_redraw(lambda: Arc(0.55, START_ANGLE, max(m.get_value(), 1e-3), arc_center=centre,
                                          color=HIGHLIGHT, stroke_width=4))
        angle_label = mathtex(r"m\,\theta_0", size=MIN_MATH_FONT_SIZE, color=INK).move_to([-4.0, -0.35, 0])
        m_label = text("m = 0", SMALL).move_to([-6.2, -0.35, 0])
        cap1 = step_caption("RoPE turns pair j at position m by", r"m\,\theta_j")

        self.add(heading)
        self.play(FadeIn(vec), FadeIn(ring), FadeIn(axes), FadeIn(ghost), FadeIn(m_label), FadeIn(cap1),
                  run_time=0.9)
        self.add(arrow, sweep)
        self.play(Create(pair), Create(link), FadeIn(angle_label), run_time=0.6)
        for position, angle in zip(POSITIONS, angles, strict=True):
            new_label = text(f"m = {position}", SMALL).move_to(m_label)
            self.play(m.animate.set_value(angle), FadeOut(m_label), FadeIn(new_label), run_time=0.6)
            m_label = new_label
        self.wait(0.3)

        # 2 · on keys made from the latent, R_t sits between the query and W^UK_i
        parts = rope_parts()
        score = mathtex(*parts).move_to([2.5, 1.45, 0])
        for k, colour in {2: INK, 3: ROPE, 4: QUERY, 6: ROPE, 7: KEY, 8: LATENT}.items():
            score[k].set_color(colour)
        r_t, w_uk = score[6], score[7]
        cap2 = step_caption("RoPE on keys from the latent:", r"k_{t,i} = R_t\, W^{UK}_i\, c^{KV}_t")
        cap3 = VGroup(mathtex("R_t", color=ROPE), text("changes with every cached token:", BODY),
                      mathtex(r"W^{UK}_i", color=KEY), text("is stuck", BODY))
        cap3.arrange(RIGHT, buff=0.2).to_edge(DOWN, buff=0.3)
        self.play(FadeIn(score), *swap_caption(cap1, cap2), run_time=1.0)
        self.wait(0.6)
        self.play(w_uk.animate(rate_func=there_and_back).shift(LEFT * 0.45),
                  Indicate(r_t, color=HIGHLIGHT, scale_factor=1.4), *swap_caption(cap2, cap3), run_time=1.4)
        cross = Cross(r_t, stroke_color=CACHE, stroke_width=6, scale_factor=1.3)
        self.play(Create(cross), run_time=0.7)
        self.wait(0.6)

        # 3 · the fix: no RoPE on the latent path; a small RoPE part per head and one shared RoPE key
        self.play(FadeOut(VGroup(vec, pair, link, ring, axes, ghost, arrow, sweep, angle_label, m_label, score,
                                 cross)), run_time=0.8)
        heads = SplitHeads(HEADS_DRAWN, x=0.0, y=0.75)
        heads_label = text(f"{cfg.n_heads} heads", SMALL, color=QUERY).next_to(heads, LEFT, buff=0.45)
        q_c_name = mathtex(r"q^C_i", size=MIN_MATH_FONT_SIZE, color=QUERY)
        q_c_name.next_to(heads, RIGHT, buff=0.3).align_to(heads.heads[-1][0], UP).shift(UP * 0.08)
        q_r_name = mathtex(r"q^R_i", size=MIN_MATH_FONT_SIZE, color=ROPE)
        q_r_name.next_to(heads, RIGHT, buff=0.3).align_to(heads.heads[-1][1], DOWN).shift(DOWN * 0.1)

        unit = 6.4 / widths.total  # scene units per cached number
        latent = cell(widths.d_c * unit, 0.5, LATENT, 0.35, f"{widths.d_c}", SMALL)
        rope_key = cell(widths.d_h_rope * unit, 0.5, ROPE, 0.35, f"{widths.d_h_rope}", SMALL)
        row = VGroup(latent, rope_key).arrange(RIGHT, buff=0).move_to([0, -1.45, 0])
        box = RoundedRectangle(corner_radius=0.12, width=row.width + 0.3, height=row.height + 0.3,
                               stroke_color=CACHE, stroke_width=4).move_to(row)
        latent_name = mathtex(r"c^{KV}_t", color=LATENT).next_to(latent, DOWN, buff=0.3)
        rope_name = mathtex(r"k^R_t", color=ROPE).next_to(rope_key, DOWN, buff=0.3)
        cached_label = text("cached", SMALL, color=CACHE).next_to(box, LEFT, buff=0.3)
        links = VGroup(*[Line(r.get_bottom(), box.get_top() + [rope_key.get_x(), 0, 0] - [box.get_x(), 0, 0],
                              color=ROPE, stroke_width=2) for r in heads.rope_cells])
        cap4 = step_caption("one RoPE key per token, shared by all heads:", r"k^R_t")
        cap5 = step_caption("cached per token and layer:", cache_tex())

        self.play(FadeIn(heads), FadeIn(heads_label), FadeIn(q_c_name), FadeIn(q_r_name), FadeOut(cap3),
                  run_time=0.8)
        self.play(FadeIn(latent), FadeIn(latent_name), Create(box), FadeIn(cached_label), run_time=0.8)
        self.play(FadeIn(rope_key, shift=LEFT * 0.3), FadeIn(rope_name), Create(links), FadeIn(cap4), run_time=1.2)
        self.play(Indicate(rope_key, color=ROPE, scale_factor=1.3), run_time=0.8)
        fixed = mathtex(*decoupled_parts()).move_to([0, 2.45, 0])
        for k, colour in {2: QUERY, 3: LATENT, 5: ROPE, 6: ROPE}.items():
            fixed[k].set_color(colour)
        self.play(FadeIn(fixed, shift=DOWN * 0.1), *swap_caption(cap4, cap5), run_time=1.0)
        self.wait(3.0)
