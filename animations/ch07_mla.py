"""Chapter 7 · multi-head latent attention (MLA): each token's hidden vector h_t is compressed by W^DKV
into one small latent c^KV_t, the only thing the cache keeps; every head's key and value are computed
from it by that head's up-projections W^UK_i and W^UV_i (DeepSeek-V2 paper, eqs. 41, 42, 45).

The widths are DeepSeek-V3's, as published (hidden 7168, d_c = 512, 128 heads); the bars are its cache
per token (61 layers, bfloat16) from :func:`attnlab.sizing.cache_bytes_per_token`, as plain MHA and as MLA,
and the factor between them from :func:`attnlab.sizing.reduction_vs_mha`. MLA's d_c + d_h^R counts
the decoupled RoPE key too (chapter 9).
"""

from __future__ import annotations

import torch
from manim import (
    DOWN,
    LEFT,
    RIGHT,
    UP,
    Arrow,
    Create,
    FadeIn,
    FadeOut,
    GrowArrow,
    Indicate,
    LaggedStart,
    Line,
    ReplacementTransform,
    RoundedRectangle,
    TransformFromCopy,
    VGroup,
)

from animations.components import MLA_MODEL, BarChart, CacheBar, cache_bars, layer_config, per_layer_elements
from animations.style import (
    CACHE,
    INK,
    KEY,
    LATENT,
    MUTED,
    SMALL,
    VALUE,
    CourseScene,
    column,
    mathtex,
    step_caption,
    text,
    title,
)
from attnlab import sizing

MODEL = MLA_MODEL
HEAD_XS = (0.7, 1.6, 2.5, 4.3)  # where heads 1, 2, 3 and the last one are drawn
DOTS_X = 3.4  # the "..." between them
SEED = 7


def mla_bars(model: str = MODEL) -> list[CacheBar]:
    """``model``'s cache per token (all layers, bf16) as MHA and as MLA, with MLA's factor against MHA."""
    return cache_bars(model, ("mha", "mla"))


def per_layer_tex(model: str = MODEL) -> str:
    """The closing formula, numbers from :func:`per_layer_elements`: "2 n_h d_h = 32,768 -> d_c + d_h^R = 576"."""
    mha, mla = per_layer_elements(model)
    return rf"2 n_h d_h = {mha:,} \;\to\; d_c + d_h^R = {mla:,}".replace(",", "{,}")


class MLAScene(CourseScene):
    """h_t -> W^DKV -> c^KV_t (cached) -> W^UK_i, W^UV_i -> every head's key and value; the cache bar
    of DeepSeek-V3 shrinks from MHA to MLA."""

    def construct(self) -> None:
        spec = sizing.get_model(MODEL)
        cfg = layer_config()
        bars = mla_bars()
        g = torch.Generator().manual_seed(SEED)
        y = 1.0  # the centre line of h_t and c^KV_t

        heading = title("Multi-head latent attention", chapter=7)

        # h_t, wide, compressed by W^DKV into the small latent c^KV_t
        h = column(torch.randn(6, generator=g).tolist(), MUTED, cell_size=0.32).move_to([-5.6, y, 0])
        h_name = mathtex("h_t", color=INK).next_to(h, DOWN, buff=0.12)
        h_width = text(f"{cfg.d_model:,}", SMALL, color=MUTED).next_to(h_name, DOWN, buff=0.1)
        c = column(torch.randn(3, generator=g).tolist(), LATENT, cell_size=0.32).move_to([-2.4, y, 0])
        c_name = mathtex(r"c^{KV}_t", color=LATENT).next_to(c, DOWN, buff=0.12)
        down = Arrow([-5.15, y, 0], [-2.85, y, 0], buff=0, color=LATENT, stroke_width=4)
        w_dkv = mathtex(r"W^{DKV}", color=LATENT).next_to(down, UP, buff=0.1)
        box = RoundedRectangle(corner_radius=0.12, width=1.45, height=VGroup(c, c_name).height + 0.35,
                               stroke_color=CACHE, stroke_width=4).move_to(VGroup(c, c_name))
        cached = text(f"{cfg.kv_lora_rank}, cached", SMALL, color=CACHE).next_to(box, DOWN, buff=0.1)

        # per head: k_{t,i} = W^UK_i c^KV_t above, v_{t,i} = W^UV_i c^KV_t below
        keys = VGroup(*[column(torch.randn(3, generator=g).tolist(), KEY, cell_size=0.3).move_to([x, 2.05, 0])
                        for x in HEAD_XS])
        values = VGroup(*[column(torch.randn(3, generator=g).tolist(), VALUE, cell_size=0.3).move_to([x, -0.05, 0])
                          for x in HEAD_XS])
        dots = VGroup(mathtex(r"\cdots", color=KEY).move_to([DOTS_X, 2.05, 0]),
                      mathtex(r"\cdots", color=VALUE).move_to([DOTS_X, -0.05, 0]))
        start = box.get_right()
        k_lines = VGroup(*[Line(start, k.get_bottom(), color=KEY, stroke_width=2) for k in keys])
        v_lines = VGroup(*[Line(start, v.get_top(), color=VALUE, stroke_width=2) for v in values])
        w_uk = mathtex(r"W^{UK}_i", color=KEY).move_to([-0.6, 1.95, 0])
        w_uv = mathtex(r"W^{UV}_i", color=VALUE).move_to([-0.6, 0.05, 0])
        k_name = mathtex(r"k_{t,i}", color=KEY).next_to(keys, RIGHT, buff=0.3)
        v_name = mathtex(r"v_{t,i}", color=VALUE).next_to(values, RIGHT, buff=0.3)
        heads_note = text(f"{cfg.n_heads} heads · computed, never cached", SMALL, color=MUTED)
        heads_note.move_to([2.5, 2.8, 0])

        # the cache per token of the whole model: MHA, then MLA
        chart = BarChart(bars, x0=-3.0, y0=-1.85, pitch=0.6, max_length=6.6, height=0.38)
        header = text(f"KV cache per token, {spec.name} ({spec.n_layers} layers, bf16)", SMALL, color=MUTED)
        header.move_to([0, chart.y0 + 0.55, 0])
        mha_bar = chart.make(0)
        mla_bar = chart.make(1, bars[0].bytes_per_token, bars[0].value_label())  # starts as big as MHA
        caption = step_caption("per token and layer:", per_layer_tex())

        self.add(heading)
        self.play(FadeIn(h), FadeIn(h_name), FadeIn(h_width), run_time=0.8)
        self.play(GrowArrow(down), FadeIn(w_dkv), run_time=0.8)
        self.play(TransformFromCopy(h.cells, c.cells), FadeIn(c_name), run_time=1.0)
        self.play(Create(box), FadeIn(cached), run_time=0.7)
        self.wait(0.5)

        # every head's key and value come out of the one latent
        self.play(Create(k_lines), Create(v_lines), FadeIn(w_uk), FadeIn(w_uv), run_time=0.8)
        self.play(LaggedStart(*[TransformFromCopy(c.cells, k.cells) for k in keys],
                              *[TransformFromCopy(c.cells, v.cells) for v in values], lag_ratio=0.1),
                  FadeIn(dots), FadeIn(k_name), FadeIn(v_name), FadeIn(heads_note), run_time=1.6)
        self.wait(0.6)

        # MHA would cache all of those keys and values; MLA caches the latent
        self.play(FadeIn(header), FadeIn(mha_bar), run_time=0.8)
        self.play(FadeIn(mla_bar), run_time=0.5)
        mla_final = chart.make(1)
        self.play(ReplacementTransform(mla_bar.rect, mla_final.rect),
                  ReplacementTransform(mla_bar.name, mla_final.name), FadeOut(mla_bar.value),
                  Indicate(box, color=CACHE, scale_factor=1.1), run_time=1.8)
        self.play(FadeIn(mla_final.value, shift=LEFT * 0.3), run_time=0.5)
        self.play(FadeIn(caption, shift=UP * 0.1), run_time=0.8)
        self.wait(3.0)

