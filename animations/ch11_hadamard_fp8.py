"""Chapter 11 · DSA in FP8: why the lightning indexer rotates its queries and keys by a Hadamard matrix
before quantizing them to FP8 e4m3.

A key k of 16 channels with one outlier channel is block-quantized (one block, one scale) with
:func:`attnlab.quant.quantize_fp8_blocks` and power-of-two scales, s = 2^ceil(log2(amax / 448)) ("ue8m0",
as DeepSeek-V3.2 configures it). The outlier sets the scale and its rounding error is ONE large term;
a query q with the same outlier channel multiplies it in q · k. The orthonormal Hadamard rotation
(:func:`attnlab.quant.fwht`) spreads the outlier over all 16 coordinates and leaves dot products alone,
(Hq) · (Hk) = q · k; after quantizing, the errors are 16 small ones of mixed sign that partly cancel in
the score. The error bars below the key are magnified; every number is computed here.

With a plain float32 scale, amax / 448, the outlier lands exactly on 448 and plain FP8 is already
accurate: there the rotation does not help (see the chapter's notebook).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from manim import (
    DOWN,
    LEFT,
    RIGHT,
    UP,
    FadeIn,
    FadeOut,
    Line,
    Rectangle,
    ReplacementTransform,
    Transform,
    VGroup,
)

from animations.style import (
    BODY,
    CACHE,
    INK,
    KEY,
    MUTED,
    SMALL,
    CourseScene,
    mathtex,
    step_caption,
    text,
    tint,
    title,
)
from attnlab import quant

N = 16  # channels of the vector, one FP8 block
OUTLIER = 5  # the outlier channel
SCALE_FORMAT = "ue8m0"  # power-of-two scales, DeepSeek-V3.2's scale_fmt
SEED = 2  # the example pair (its error ratio is close to the median over random pairs)
N_PAIRS = 1000  # random pairs for the median
PAIRS_SEED = 1234


@dataclass(frozen=True)
class FP8Step:
    """One quantization of the key: ``values`` (N,) quantized (k, or Hk after rotation), ``fp8`` (N,) the
    dequantized FP8 values s x_fp8, ``scale`` s (a power of two), and ``dot_error`` = |q_fp8 · k_fp8 - q · k|,
    the query treated alike."""

    values: torch.Tensor
    fp8: torch.Tensor
    scale: float
    dot_error: float

    @property
    def errors(self) -> torch.Tensor:
        """The rounding error per coordinate, fp8 - values: (N,)."""
        return self.fp8 - self.values

    def scale_tex(self) -> str:
        """"s = 1/32" (the scale is a power of two, 2^-5 here)."""
        return f"s = 1/{round(1 / self.scale)}" if self.scale < 1 else f"s = {round(self.scale)}"


def random_pairs(generator: torch.Generator, n_pairs: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    """``n_pairs`` queries and keys (n_pairs, N), float64: N(0, 1) channels, except the outlier channel,
    uniform in [8, 12) in both (an activation outlier shared by the query and the key)."""
    q = torch.randn(n_pairs, N, generator=generator, dtype=torch.float64)
    k = torch.randn(n_pairs, N, generator=generator, dtype=torch.float64)
    q[:, OUTLIER] = 8 + 4 * torch.rand(n_pairs, generator=generator, dtype=torch.float64)
    k[:, OUTLIER] = 8 + 4 * torch.rand(n_pairs, generator=generator, dtype=torch.float64)
    return q, k


def fake_fp8(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(s x_fp8, s): x (..., N) quantized as one block by :func:`attnlab.quant.quantize_fp8_blocks`, then
    dequantized; s (...,) the block's scale."""
    x_fp8, scales = quant.quantize_fp8_blocks(x, N, SCALE_FORMAT)
    return quant.dequantize_fp8_blocks(x_fp8, scales, dtype=x.dtype), scales[..., 0]


def dot_errors(q: torch.Tensor, k: torch.Tensor, rotate: bool) -> torch.Tensor:
    """|q_fp8 · k_fp8 - q · k| per pair, after rotating both by H (``rotate``) or not: q, k (..., N) -> (...)."""
    exact = (q * k).sum(-1)
    if rotate:
        q, k = quant.fwht(q), quant.fwht(k)
    return ((fake_fp8(q)[0] * fake_fp8(k)[0]).sum(-1) - exact).abs()


def fp8_steps(seed: int = SEED) -> tuple[FP8Step, FP8Step]:
    """The example key quantized plainly and after the Hadamard rotation."""
    q, k = (t[0] for t in random_pairs(torch.Generator().manual_seed(seed)))
    steps = []
    for rotate in (False, True):
        values = quant.fwht(k) if rotate else k
        fp8, scale = fake_fp8(values)
        steps.append(FP8Step(values, fp8, float(scale), float(dot_errors(q, k, rotate))))
    return steps[0], steps[1]


def median_errors(n_pairs: int = N_PAIRS, seed: int = PAIRS_SEED) -> tuple[float, float]:
    """Median |q_fp8 · k_fp8 - q · k| over ``n_pairs`` random pairs: (plain, rotated)."""
    q, k = random_pairs(torch.Generator().manual_seed(seed), n_pairs)
    return float(dot_errors(q, k, False).median()), float(dot_errors(q, k, True).median())


def _vbar(x: float, base: float, height: float, width: float, color, outline=None) -> Rectangle:
    """A vertical bar at x standing on y = base (hanging from it when height < 0)."""
    h = max(abs(height), 0.03)
    rect = Rectangle(width=width, height=h, stroke_width=0 if outline is None else 2.5,
                     stroke_color=outline or color, fill_color=color, fill_opacity=1.0)
    return rect.move_to([x, base + (h / 2 if height >= 0 else -h / 2), 0])


class HadamardFP8Scene(CourseScene):
    """k with an outlier -> FP8 (one big rounding error) -> Hk (spread) -> FP8 (small errors); q·k error shrinks."""

    def construct(self) -> None:
        plain, rotated = fp8_steps()
        med_plain, med_rotated = median_errors()
        xs = [-3.85 + 0.5 * i for i in range(N)]
        bar_w = 0.34
        y_main, y_err = 0.55, -1.55  # baselines of the values and of the rounding errors
        unit = 2.2 / float(plain.values.abs().max())  # scene units per value
        err_top = float(torch.cat([plain.errors, rotated.errors]).abs().max())
        magnify = 10 ** round(float(torch.log10(torch.tensor(0.7 / (err_top * unit)))))  # a power of ten
        e_unit = unit * magnify

        def value_bars(values: torch.Tensor, outline=None) -> VGroup:
            return VGroup(*[_vbar(x, y_main, float(v) * unit, bar_w, tint(KEY, 0.7), outline)
                            for x, v in zip(xs, values, strict=True)])

        def error_bars(errors: torch.Tensor) -> VGroup:
            return VGroup(*[_vbar(x, y_err, float(e) * e_unit, bar_w, CACHE) for x, e in zip(xs, errors, strict=True)])

        def error_meter(error: float) -> Rectangle:
            """The q·k error as a horizontal bar: 2.5 units for the plain error."""
            rect = Rectangle(width=max(2.5 * error / plain.dot_error, 0.04), height=0.32, stroke_width=0,
                             fill_color=CACHE, fill_opacity=1.0)
            return rect.move_to([4.2, -1.95, 0], aligned_edge=LEFT)

        heading = title("DSA in FP8: rotate first", chapter=11)
        axis = Line([xs[0] - 0.3, y_main, 0], [xs[-1] + 0.3, y_main, 0], color=MUTED, stroke_width=1.5)
        e_axis = Line([xs[0] - 0.3, y_err, 0], [xs[-1] + 0.3, y_err, 0], color=MUTED, stroke_width=1.5)
        bars = value_bars(plain.values)
        name = mathtex("k", color=KEY).move_to([-5.6, 1.45, 0])
        name_note = VGroup(text(f"{N} channels", SMALL, color=MUTED), text("1 FP8 block", SMALL, color=MUTED))
        name_note.arrange(DOWN, buff=0.08).next_to(name, DOWN, buff=0.15)
        outlier = text("outlier", SMALL, color=KEY).next_to(bars[OUTLIER], RIGHT, buff=0.15).shift(UP * 0.9)
        err_label = VGroup(text("rounding", SMALL, color=CACHE), text("error", SMALL, color=CACHE),
                           mathtex(rf"\times {magnify:g}", size=38, color=CACHE)).arrange(DOWN, buff=0.08)
        err_label.move_to([-5.6, y_err, 0])
        scale = mathtex(plain.scale_tex(), color=INK).move_to([5.4, 1.9, 0])
        fmt = text("FP8 e4m3", SMALL, color=MUTED).next_to(scale, UP, buff=0.15)
        caption = VGroup(text("scale per block:"), mathtex(r"\max |k_i| \,/\, 448"), text("rounded up to 2ⁿ"))
        caption.arrange(RIGHT, buff=0.25).to_edge(DOWN, buff=0.3)
        meter_label = VGroup(text("error in", SMALL), mathtex(r"q\cdot k", size=38)).arrange(RIGHT, buff=0.15)
        meter_label.move_to([5.5, -0.75, 0])
        q_note = VGroup(text("q shares", SMALL, color=MUTED), text("the outlier", SMALL, color=MUTED))
        q_note.arrange(DOWN, buff=0.08).move_to([5.5, 0.35, 0])
        meter = error_meter(plain.dot_error)
        meter_value = text(f"{plain.dot_error:.2f}", BODY, color=CACHE).move_to([5.5, -1.35, 0])

        self.add(heading)
        self.play(FadeIn(axis), FadeIn(bars, shift=UP * 0.1), FadeIn(name), FadeIn(name_note), run_time=1.0)
        self.play(FadeIn(outlier), run_time=0.5)

        # plain FP8: the outlier sets the scale; its rounding error is one big term
        fp8_bars = value_bars(plain.fp8, outline=INK)
        self.play(FadeIn(caption, shift=UP * 0.1), FadeIn(fmt), FadeIn(scale), run_time=0.8)
        errs = error_bars(plain.errors)
        self.play(Transform(bars, fp8_bars), FadeIn(e_axis), FadeIn(err_label), FadeIn(errs, shift=UP * 0.1),
                  run_time=1.2)
        self.play(FadeIn(meter_label), FadeIn(q_note), FadeIn(meter), FadeIn(meter_value), run_time=0.8)
        self.wait(1.0)

        # the Hadamard rotation spreads the outlier over every coordinate; dot products are unchanged
        rot_name = mathtex("Hk", color=KEY).move_to(name)
        spread = text(f"spread over all {N}", SMALL, color=KEY).move_to([xs[N // 2], 2.35, 0])
        rot_caption = step_caption("Hadamard rotation, orthonormal:", r"(Hq)\cdot(Hk) = q\cdot k")
        self.play(Transform(bars, value_bars(rotated.values)), ReplacementTransform(name, rot_name),
                  ReplacementTransform(outlier, spread), FadeOut(errs), FadeOut(scale),
                  ReplacementTransform(caption, rot_caption), run_time=1.6)
        self.wait(0.6)

        # FP8 again: sixteen small errors of mixed sign, which partly cancel in q·k
        rot_scale = mathtex(rotated.scale_tex(), color=INK).move_to(scale)
        rot_errs = error_bars(rotated.errors)
        self.play(Transform(bars, value_bars(rotated.fp8, outline=INK)), FadeIn(rot_scale),
                  FadeIn(rot_errs, shift=UP * 0.1), run_time=1.2)
        old_value = meter_value.copy().set_color(MUTED)
        arrow = text("→", BODY, color=MUTED)
        new_value = text(f"{rotated.dot_error:.2f}", BODY, color=CACHE)
        row = VGroup(old_value, arrow, new_value).arrange(RIGHT, buff=0.15).move_to(meter_value)
        self.play(Transform(meter, error_meter(rotated.dot_error)), Transform(meter_value, old_value),
                  FadeIn(row[1:]), run_time=1.2)
        median = text(f"median over {N_PAIRS:,} random pairs: {med_plain:.2f} → {med_rotated:.2f}", SMALL,
                      color=MUTED).move_to([0, -2.75, 0])
        self.play(FadeIn(median, shift=UP * 0.1), run_time=0.8)
        self.wait(3.0)
