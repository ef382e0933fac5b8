"""Checks for chapter 11, quantization and rotation.

    from attnlab.exercises import ch11
    print(ch11.check_ue8m0_scale(answer_ue8m0_scale))          # a float, the block's scale
    print(ch11.check_fwht(answer_fwht))                        # a function x -> x H / sqrt(n)
    print(ch11.check_fp8_cache_bytes(answer_fp8_cache_bytes))  # an int, bytes per token

Each check compares the answer with :mod:`attnlab.quant` and :mod:`attnlab.sizing`: ``None`` returns a
reminder, a right answer "✓ ...", a wrong one raises ``AssertionError`` with a hint aimed at the usual slip.
"""

from __future__ import annotations

import math

import torch

from attnlab.exercises._common import as_number, run_check
from attnlab.quant import FP8_E4M3_MAX, block_scales, fwht
from attnlab.sizing import MODELS, indexer_elements_per_token, kv_elements_per_token

#: Exercise 3: FlashMLA's FP8 MLA cache per token and layer: 512 FP8 latent values, 4 fp32 scales (one per
#: 128 values), the 64-wide RoPE key in bf16 (deepseek-ai/FlashMLA); the index key in FP8 with one fp32 scale.
EXERCISE_3 = {"model": "deepseek-v3.2", "mla_fp8_bytes": 512 + 4 * 4 + 64 * 2}


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
            try:
                got = fn(x.clone())
            except AssertionError:
                raise
            except Exception as err:  # a learner's bug: report it as a failed check
                raise AssertionError(f"calling your function on x of shape {tuple(x.shape)} raised "
                                     f"{type(err).__name__}: {err}") from err
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
# exercise 3


def expected_fp8_cache_bytes() -> int:
    """Bytes one token adds over all layers of DeepSeek-V3.2 with FlashMLA's FP8 MLA cache (656 per layer)
    and the FP8 index key (d^I bytes plus one fp32 scale per 128 values)."""
    spec = MODELS[EXERCISE_3["model"]]
    d_i = indexer_elements_per_token(spec, per_layer=True)
    index_key = d_i + 4 * math.ceil(d_i / 128)
    return (EXERCISE_3["mla_fp8_bytes"] + index_key) * spec.n_layers


def check_fp8_cache_bytes(answer: object) -> str:
    """Exercise 3: the cache bytes per token of DeepSeek-V3.2 over all its layers, FP8 MLA cache in
    FlashMLA's format plus the FP8 index keys (an int)."""
    spec = MODELS[EXERCISE_3["model"]]
    expected = expected_fp8_cache_bytes()
    layers = spec.n_layers
    mla_fp8, mla_bf16 = EXERCISE_3["mla_fp8_bytes"], kv_elements_per_token(spec, per_layer=True) * 2
    d_i = indexer_elements_per_token(spec, per_layer=True)
    index_fp8 = d_i + 4 * math.ceil(d_i / 128)

    def check(a: object) -> str:
        value = as_number(a, "the bytes per token")
        assert value != expected // layers, f"that is one layer; DeepSeek-V3.2 has {layers}"
        assert value != mla_fp8 * layers, "the lightning indexer caches a key per token and layer too"
        assert value != (mla_bf16 + index_fp8) * layers, (
            f"that keeps the MLA cache in bf16 ({mla_bf16} B per layer); FlashMLA's FP8 format takes {mla_fp8}"
        )
        assert value != (mla_fp8 + 2 * d_i) * layers, "the index key is stored in FP8 (1 byte a value), not bf16"
        assert value != (mla_fp8 + d_i) * layers, "each 128 FP8 values of the index key carry a 4-byte fp32 scale"
        assert value == expected, (
            "not yet: (FP8 MLA bytes per layer + FP8 index-key bytes per layer, scale included) × layers"
        )
        bf16 = (mla_bf16 + 2 * d_i) * layers
        return (f"{expected:,} B per token = ({mla_fp8} + {index_fp8}) × {layers}, against {bf16:,} B with both in "
                f"bf16 ({bf16 / expected:.2f}× more)")

    return run_check("FP8 cache bytes per token", answer, check)
