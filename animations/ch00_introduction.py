"""Chapter 0 · introduction: the title, the map of the course, and the headline numbers.

The map shows every chapter of :data:`attnlab.chapters.CHAPTERS` as a named chip, then folds into a strip of
numbered badges in the colours of the course's parts, which stays above the headline chart.

The headline is the KV cache one token of context costs DeepSeek-V3 (61 layers, bfloat16) under each
scheme, with its own heads and head width: plain multi-head attention, multi-query attention, GQA with
16 KV heads (the figure popular summaries quote) and MLA, which V3 actually uses. Every size and factor
is computed by :mod:`attnlab.sizing` in the scene (:func:`headline_bars`).
"""

from __future__ import annotations

from manim import (
    DOWN,
    LEFT,
    UP,
    FadeIn,
    FadeOut,
    GrowFromEdge,
    LaggedStart,
    ManimColor,
    ReplacementTransform,
    RoundedRectangle,
    VGroup,
)

from animations.components import BarChart, CacheBar, cache_bars
from animations.style import (
    BODY,
    CACHE,
    INK,
    MUTED,
    SCHEME,
    SMALL,
    TITLE,
    CourseScene,
    baseline_text,
    centre_label,
    text,
    tint,
    title,
)
from attnlab import sizing
from attnlab.chapters import CHAPTERS
from attnlab.schemes import get_scheme

MODEL = "deepseek-v3"
WINDOW = ManimColor(get_scheme("gqa_window").color)
GQA_KV_HEADS = 16  # the "16 groups" the popular summaries quote

#: The colour of a chapter's part of the course, by chapter number; the others are MUTED.
#: Serving the cache (FlashAttention, pages) shares the KV cache's colour, windows and linear layers the sliding
#: window's (a cache that stops growing), block selection and DeepSeek-V4 the sparse attention's.
PART_COLOURS = {4: CACHE, 5: SCHEME["mqa"], 6: SCHEME["gqa"], 7: SCHEME["mla"], 8: SCHEME["mla"], 9: SCHEME["mla"],
                10: SCHEME["dsa"], 11: SCHEME["dsa"], 12: SCHEME["dsa"], 15: CACHE, 16: CACHE,
                17: WINDOW, 18: WINDOW, 19: SCHEME["dsa"], 20: SCHEME["dsa"]}
MAP_COLUMNS = 3
MAP_PITCH = 0.6  # rows of the named map, in scene units

#: (chapter, short name, colour of its part of the course), from the course's chapter list.
COURSE_MAP = tuple((c.number, c.short, PART_COLOURS.get(c.number, MUTED)) for c in CHAPTERS)


def headline_bars(model: str = MODEL) -> list[CacheBar]:
    """DeepSeek-V3's cache per token, bfloat16, as MHA, MQA, GQA-16 and MLA (as published), with the
    factor each saves against MHA (:func:`attnlab.sizing.cache_bytes_per_token`, ``reduction_vs_mha``)."""
    return cache_bars(model, ("mha", "mqa", ("gqa", GQA_KV_HEADS), "mla"))


def badge(n: int, color, width: float = 0.62, height: float = 0.52) -> VGroup:
    """Chapter ``n``'s number on a square of its part's colour."""
    square = RoundedRectangle(corner_radius=0.06, width=width, height=height, stroke_width=0, fill_color=color,
                              fill_opacity=1)
    return VGroup(square, centre_label(baseline_text(str(n), SMALL, color="#FFFFFF", bold=True), square))


def course_strip() -> VGroup:
    """The chapters as numbered badges in two rows, centred at the origin: the map once it has been read."""
    badges = VGroup(*[badge(n, color, width=0.76) for n, _, color in COURSE_MAP])
    return badges.arrange_in_grid(rows=2, buff=(0.08, 0.08))


def course_map() -> VGroup:
    """The chapters as chips in three columns (of seven, for 21 chapters), filled column by column, a coloured
    number square on each; the first chip's box is centred at x = -4.62, y = 0."""
    chips = VGroup()
    for n, name, color in COURSE_MAP:
        box = RoundedRectangle(corner_radius=0.08, width=4.5, height=0.52, stroke_color=tint(color, 0.6),
                               stroke_width=2, fill_color=tint(color, 0.08), fill_opacity=1)
        badge = RoundedRectangle(corner_radius=0.06, width=0.62, height=0.52, stroke_width=0,
                                 fill_color=color, fill_opacity=1).align_to(box, LEFT)
        number = centre_label(baseline_text(str(n), SMALL, color="#FFFFFF", bold=True), badge)
        label = baseline_text(name, SMALL).next_to(badge, direction=[1, 0, 0], buff=0.15)
        chips.add(VGroup(box, badge, number, label))
    rows = -(-len(chips) // MAP_COLUMNS)
    for k, chip in enumerate(chips):  # column k // rows, row k % rows
        column, row = k // rows - (MAP_COLUMNS - 1) / 2, k % rows  # column -1, 0, 1 from the centre
        chip.shift([column * 4.62 - chip[0].get_x(), -row * MAP_PITCH - chip[0].get_y(), 0])
    return chips


class IntroductionScene(CourseScene):
    """Title card, the course map, then DeepSeek-V3's bytes per token under MHA, MQA, GQA-16 and MLA."""

    def construct(self) -> None:
        spec = sizing.get_model(MODEL)
        bars = headline_bars()

        big = VGroup(text("How attention got efficient", TITLE + 8, bold=True),
                     text("KV caching · MQA · GQA · MLA · DSA", BODY, color=MUTED)).arrange(DOWN, buff=0.3)
        self.play(FadeIn(big, shift=UP * 0.2), run_time=1.2)
        self.wait(1.0)

        heading = title("How attention got efficient")
        chips = course_map()
        chips.shift(UP * (heading.get_bottom()[1] - 0.25 - chips.get_top()[1]))
        self.play(FadeOut(big), FadeIn(heading), run_time=0.8)
        self.play(LaggedStart(*[FadeIn(chip, shift=UP * 0.1) for chip in chips],
                              lag_ratio=0.08), run_time=2.5)
        self.wait(1.5)

        strip = course_strip()
        strip.shift(UP * (heading.get_bottom()[1] - 0.25 - strip.get_top()[1]))
        self.play(*[ReplacementTransform(chip, small) for chip, small in zip(chips, strip, strict=True)],
                  run_time=1.2)

        chart = BarChart(bars, x0=-2.6, y0=strip.get_bottom()[1] - 1.6, pitch=0.75, max_length=6.3, height=0.46)
        header = text(f"{spec.name}: KV cache per token ({spec.n_layers} layers, bf16)", SMALL, color=INK)
        header.move_to([0, chart.y0 + 0.52, 0])
        rows = [chart.make(i) for i in range(len(bars))]
        self.play(FadeIn(header), run_time=0.6)
        for row in rows:
            self.play(GrowFromEdge(row.rect, LEFT), FadeIn(row.name), run_time=0.7)
            self.play(FadeIn(row.value), run_time=0.3)
        self.wait(3.0)
