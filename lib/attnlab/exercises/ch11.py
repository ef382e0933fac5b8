"""Checks for chapter 11, quantization and rotation.

    from attnlab.exercises import ch11
    print(ch11.check_ue8m0_scale(answer_ue8m0_scale))          # a float, the block's scale
    print(ch11.check_fwht(answer_fwht))                        # a function x -> x H / sqrt(n)
    print(ch11.check_block_fp8(answer_block_fp8))              # a function (x, block) -> (x_fp8, scales)
    print(ch11.check_prediction_ue8m0_cost(prediction_ue8m0_cost))  # predict, then run: a float

Each check compares the answer with :mod:`attnlab.quant`, whose Hadamard transforms (exercise 2) and block
quantization (exercise 3) the answers may not call: ``None`` returns a reminder, a right answer "✓ ...", a
wrong one raises ``AssertionError`` with a hint aimed at the usual slip.
"""

from __future__ import annotations

import math

import torch

from attnlab import quant
from attnlab.exercises._common import Shortcut, as_number, call_answer, run_check, run_prediction
from attnlab.quant import FP8_E4M3_MAX, SCALE_FORMATS, block_scales, fake_quantize_fp8, fwht, quantize_fp8_blocks

#: Exercise 2 writes the butterflies, so no library Hadamard may stand in for them.
FWHT_SHORTCUT = Shortcut("attnlab.quant's Hadamard (fwht, hadamard_matrix or hadamard_rotation)",
                         (quant.fwht, quant.hadamard_matrix, quant.hadamard_rotation),
                         "write the log2(n) butterfly stages, (a, b) -> (a + b, a - b), yourself")
#: Exercise 3 writes the block quantizer.
QUANTIZE_SHORTCUT = Shortcut("attnlab.quant's block quantizer (quantize_fp8_blocks, block_scales or "
                             "fake_quantize_fp8)",
                             (quant.quantize_fp8_blocks, quant.block_scales, quant.fake_quantize_fp8),
                             "compute each block's amax, its power-of-two scale and the FP8 cast yourself")

# ----------------------------------------------------------------------------------------------------
# exercise 1


def exercise_1_block() -> torch.Tensor:
    """Exercise 1's block of 128 values (float32): evenly spaced from -3.7 to 2.5."""
    return torch.linspace(-3.7, 2.5, 128)


def expected_ue8m0_scale() -> float:
    """2^ceil(log2(amax / 448)) for :func:`exercise_1_block` (:func:`attnlab.quant.block_scales`)."""
    return float(block_scales(exercise_1_block(), 128, "ue8m0")[0])


def check_ue8m0_scale(answer: object) -> str:
    """Exercise 1: the ue8m0 scale of :func:`exercise_1_block` (a float)."""
    x = exercise_1_block()
    amax = float(x.abs().max())
    expected = expected_ue8m0_scale()
    fp32 = amax / FP8_E4M3_MAX

    def close(value: float, target: float) -> bool:
        return math.isclose(value, target, rel_tol=1e-6)

    def check(a: object) -> str:
        value = as_number(a, "the scale")
        assert not close(value, fp32), (
            f"{fp32:.6g} = amax / 448 is the fp32 scale; ue8m0 rounds it UP to a power of two"
        )
        assert not close(value, expected / 2), (
            "that power of two is below amax / 448, so amax / s would exceed 448: round the exponent up"
        )
        assert not close(value, 1 / expected) and not close(value, FP8_E4M3_MAX / amax), (
            "the scale multiplies the FP8 values back: s = amax / 448 (rounded up), not its inverse"
        )
        assert not close(value, 2.0 ** math.ceil(math.log2(amax))), "divide amax by 448 before rounding up"
        assert close(value, expected), "not yet: s = 2^ceil(log2(amax / 448)), with amax the largest |x| of the block"
        return (f"s = 2^{round(math.log2(expected))} = {expected:g}: amax / s = {amax / expected:.1f} <= 448 "
                f"(the fp32 scale would be {fp32:.6g})")

    return run_check("ue8m0 scale", answer, check)


# ----------------------------------------------------------------------------------------------------
# exercise 2


def _fwht_cases() -> list[torch.Tensor]:
    """Random float64 inputs of widths 1 to 256, with and without leading axes."""
    g = torch.Generator().manual_seed(11)
    shapes = [(1,), (2,), (4, 4), (8,), (5, 4), (3, 16), (2, 3, 128), (256,)]
    return [torch.randn(*shape, generator=g, dtype=torch.float64) for shape in shapes]


def check_fwht(answer: object) -> str:
    """Exercise 2: a function ``x -> x H_n / sqrt(n)`` along the last axis of x (..., n), n a power of two,
    with Sylvester's H_n. Compared with :func:`attnlab.quant.fwht` on random float64 inputs."""

    def check(fn: object) -> str:
        assert callable(fn), f"answer should be a function x -> y, got {type(fn).__name__}"
        cases = _fwht_cases()
        for x in cases:
            got = call_answer(fn, x.clone(), shortcuts=[FWHT_SHORTCUT])
            want = fwht(x)
            n = x.shape[-1]
            assert isinstance(got, torch.Tensor), f"return a tensor, got {type(got).__name__}"
            assert tuple(got.shape) == tuple(x.shape), (
                f"for x of shape {tuple(x.shape)} you returned {tuple(got.shape)}: the transform keeps the shape"
            )
            got = got.to(torch.float64)
            if torch.allclose(got, want, atol=1e-10, rtol=0):
                continue
            assert not torch.allclose(got, want * n**0.5, atol=1e-9, rtol=0), (
                f"that is x H_n without the factor 1 / sqrt(n) = 1 / sqrt({n}): the rotation must be orthonormal"
            )
            assert not torch.allclose(got, want / n**0.5, atol=1e-9, rtol=0), (
                "scaled twice: divide by sqrt(n) once, at the end"
            )
            if x.dim() == 2 and x.shape[0] == x.shape[1]:
                assert not torch.allclose(got, fwht(x.T).T, atol=1e-9, rtol=0), (
                    "you transformed the first axis: the butterflies run along the last axis, x[..., i]"
                )
            diff = float((got - want).abs().max())
            raise AssertionError(f"for x of shape {tuple(x.shape)} the result differs from x H / sqrt(n) by up to "
                                 f"{diff:.2e}: stage h pairs i with i + h inside blocks of 2h, "
                                 "(a, b) -> (a + b, a - b)")
        return f"equals x H_n / sqrt(n) on {len(cases)} random inputs, widths 1 to 256"

    return run_check("fast Walsh-Hadamard transform", answer, check)


# ----------------------------------------------------------------------------------------------------
# exercise 3: block FP8 with ue8m0 scales


def _fp8_cases() -> list[tuple[torch.Tensor, int]]:
    """float32 inputs with their block: an outlier channel, leading axes, an all-zero block, blocks of 32."""
    g = torch.Generator().manual_seed(13)
    outlier = torch.randn(2, 256, generator=g)
    outlier[:, 7] *= 60.0
    zero_block = torch.randn(1, 256, generator=g)
    zero_block[:, 128:] = 0.0
    return [(outlier, 128), (torch.randn(3, 4, 128, generator=g) * 1e-3, 128), (zero_block, 128),
            (torch.randn(5, 96, generator=g) * 30.0, 32)]


def check_block_fp8(answer: object) -> str:
    """Exercise 3: a function ``(x, block) -> (x_fp8, scales)``: DeepSeek's block FP8 with ue8m0 scales
    (DeepSeek-V3.2 ``inference/kernel.py``, ``act_quant`` with ``scale_fmt="ue8m0"``). x (..., n) float32,
    n divisible by block -> x_fp8 (..., n) ``torch.float8_e4m3fn`` = round(x / s) per block and scales
    (..., n / block) float32, s = 2^ceil(log2(max(amax, 1e-4) / 448)). Compared bit for bit with
    :func:`attnlab.quant.quantize_fp8_blocks`, which the answer may not call (nor ``block_scales`` or
    ``fake_quantize_fp8``)."""

    def check(fn: object) -> str:
        assert callable(fn), f"answer should be a function (x, block) -> (x_fp8, scales), got {type(fn).__name__}"
        cases = _fp8_cases()
        for x, block in cases:
            got = call_answer(fn, x.clone(), block, shortcuts=[QUANTIZE_SHORTCUT])
            want_fp8, want_scales = quantize_fp8_blocks(x, block, "ue8m0")
            assert isinstance(got, (tuple, list)) and len(got) == 2 and all(isinstance(t, torch.Tensor) for t in got), (
                "return two tensors: (x_fp8, scales)"
            )
            got_fp8, got_scales = got
            shape = tuple(x.shape)
            assert tuple(got_scales.shape) == tuple(want_scales.shape), (
                f"for x of shape {shape} and block {block}: one scale per block of {block} along the last axis, "
                f"shape {tuple(want_scales.shape)}, got {tuple(got_scales.shape)}"
            )
            assert got_fp8.dtype == torch.float8_e4m3fn, (
                f"x_fp8 should be stored in FP8: .to(torch.float8_e4m3fn), got {got_fp8.dtype}"
            )
            assert tuple(got_fp8.shape) == shape, f"x_fp8 keeps x's shape {shape}, got {tuple(got_fp8.shape)}"
            got_scales = got_scales.float()
            if not torch.isfinite(got_scales).all() or bool((got_scales == 0).any()):
                raise AssertionError("a block of zeros got a zero (or non-finite) scale: clamp amax below at 1e-4 "
                                     "first, as DeepSeek's act_quant does")
            if not torch.equal(got_scales, want_scales):
                blocks = x.reshape(*x.shape[:-1], -1, block)
                fp32 = blocks.abs().amax(-1).clamp_min(1e-4) / FP8_E4M3_MAX
                if torch.allclose(got_scales, fp32, rtol=1e-6):
                    raise AssertionError("those are fp32 scales, amax / 448: ue8m0 rounds each UP to a power of two, "
                                         "2^ceil(log2(amax / 448))")
                floor = torch.exp2(torch.floor(torch.log2(fp32)))
                if torch.equal(got_scales, want_scales / 2) or torch.equal(got_scales, floor):
                    raise AssertionError("the power of two is rounded DOWN: then amax / s exceeds 448 and the "
                                         "largest values overflow FP8; round the exponent up (ceil)")
                if torch.allclose(got_scales, 1 / want_scales):
                    raise AssertionError("the scale multiplies the FP8 values back, x ≈ s · x_fp8: "
                                         "s = 2^ceil(log2(amax / 448)), not its inverse")
                raise AssertionError(f"for x of shape {shape} and block {block} the scales differ: one per block, "
                                     "2^ceil(log2(max(amax, 1e-4) / 448)) with amax the block's largest |x|")
            if not torch.equal(got_fp8.view(torch.uint8), want_fp8.view(torch.uint8)):
                raise AssertionError("the scales are right but the FP8 values differ: divide each block by its own "
                                     "scale (broadcast scales[..., None] over the block), then cast to float8_e4m3fn")
        err = {f: float((fake_quantize_fp8(cases[0][0], 128, f) - cases[0][0]).norm() / cases[0][0].norm())
               for f in ("fp32", "ue8m0")}
        return (f"bit for bit equal to quantize_fp8_blocks on {len(cases)} inputs, an all-zero block and an outlier "
                f"included; on the outlier input the relative error is {err['ue8m0']:.4f} with ue8m0 scales and "
                f"{err['fp32']:.4f} with fp32 ones")

    return run_check("block FP8 with ue8m0 scales", answer, check)


# ----------------------------------------------------------------------------------------------------
# exercise 4: predict, then run

#: Exercise 4's experiment: standard normal blocks of 128 values.
SCALE_EXPERIMENT = {"blocks": 512, "block": 128, "seed": 11}


def scale_format_errors() -> dict[str, float]:
    """RMS quantization error relative to the RMS of the values, with fp32 and with ue8m0 block scales, and
    with a uniform INT8 grid (scale amax / 127) for comparison."""
    e = SCALE_EXPERIMENT
    x = torch.randn(e["blocks"], e["block"], generator=torch.Generator().manual_seed(e["seed"]))
    rms = x.pow(2).mean().sqrt()
    out = {f: float((fake_quantize_fp8(x, e["block"], f) - x).pow(2).mean().sqrt() / rms) for f in SCALE_FORMATS}
    s = x.abs().amax(-1, keepdim=True) / 127
    out["int8"] = float(((x / s).round() * s - x).pow(2).mean().sqrt() / rms)
    return out


def check_prediction_ue8m0_cost(prediction: object) -> str:
    """Exercise 4, predict then run: how many times larger is the RMS error of block FP8 with ue8m0
    (power-of-two) scales than with exact fp32 scales, on standard normal data? Right within 0.15."""

    def judge(guess: object) -> tuple[bool, str]:
        value = as_number(guess, "your prediction")
        assert value > 0, f"a ratio of errors is positive, got {value}"
        m = scale_format_errors()
        ratio = m["ue8m0"] / m["fp32"]
        right = abs(value - ratio) <= 0.15
        slip = ("Rounding the scale up by up to 2× does NOT cost a factor of up to 2. " if value >= 1.4 else "")
        return right, (
            f"{slip}Measured: {ratio:.3f}× ({m['ue8m0']:.4f} against {m['fp32']:.4f} of the values' RMS). FP8 is "
            "floating point: a larger scale shifts every value's exponent down by at most one, and e4m3 keeps 3 "
            "mantissa bits at every exponent, so only values pushed into the subnormal range lose precision. A "
            f"fixed-point grid would lose a whole bit (INT8's error here is {m['int8']:.4f}, and it would double). "
            "That is why DeepSeek can store its scales as bare exponents (ue8m0, one byte) and multiply by them "
            "exactly."
        )

    return run_prediction("cost of power-of-two scales", prediction, judge)
