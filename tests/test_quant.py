"""Tests for attnlab.quant: Sylvester's Hadamard matrix and the fast Walsh-Hadamard transform against the
matrix product and the recursive definition, FP8 e4m3 block quantization against the format's precision,
ue8m0 scales, and why DeepSeek rotates before quantizing (outlier channels), argument checks."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from attnlab.quant import (
    AMAX_FLOOR,
    FP8_E4M3_MAX,
    FP8_E4M3_RELATIVE_ERROR,
    FP8_E4M3_SUBNORMAL_ERROR,
    block_scales,
    dequantize_fp8_blocks,
    fake_quantize_fp8,
    fwht,
    fwht_additions,
    hadamard_matrix,
    quantize_fp8_blocks,
)

F64 = torch.float64
SETTINGS = settings(max_examples=25, deadline=None)
seeds = st.integers(0, 2**31 - 1)
log2_sizes = st.integers(0, 8)


def fwht_recursive(x: torch.Tensor) -> torch.Tensor:
    """x @ H_n / sqrt(n) from the definition H_2n = [[H_n, H_n], [H_n, -H_n]]: for x = [x_1, x_2],
    x H_2n = [(x_1 + x_2) H_n, (x_1 - x_2) H_n]. Two half-size calls plus n additions: T(n) = 2 T(n/2) + n."""
    n = x.shape[-1]
    if n == 1:
        return x
    x_1, x_2 = x[..., : n // 2], x[..., n // 2 :]
    return torch.cat([fwht_recursive(x_1 + x_2), fwht_recursive(x_1 - x_2)], dim=-1) / math.sqrt(2)


# --- Hadamard -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("n", [1, 2, 4, 8, 64, 128])
def test_hadamard_matrix_is_orthonormal_symmetric_and_plus_minus_one(n):
    h = hadamard_matrix(n)
    torch.testing.assert_close(h @ h.T, torch.eye(n, dtype=F64), rtol=0, atol=1e-12)
    torch.testing.assert_close(h, h.T, rtol=0, atol=0)
    raw = hadamard_matrix(n, normalized=False)
    assert set(raw.unique().tolist()) <= {-1.0, 1.0} and raw[0].eq(1).all() and raw[:, 0].eq(1).all()
    if n > 1:  # Sylvester's block structure
        half = hadamard_matrix(n // 2, normalized=False)
        torch.testing.assert_close(raw, torch.cat([torch.cat([half, half], 1), torch.cat([half, -half], 1)], 0))


@SETTINGS
@given(log2_n=log2_sizes, batch=st.lists(st.integers(1, 3), max_size=2), seed=seeds)
def test_fwht_equals_x_times_h(log2_n, batch, seed):
    n = 2**log2_n
    x = torch.randn(*batch, n, dtype=F64, generator=torch.Generator().manual_seed(seed))
    torch.testing.assert_close(fwht(x), x @ hadamard_matrix(n), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("n", [1, 2, 8, 32, 128, 256])
def test_fwht_is_the_recursive_n_log_n_transform(n):
    x = torch.randn(3, n, dtype=F64)
    torch.testing.assert_close(fwht(x), fwht_recursive(x), rtol=1e-12, atol=1e-12)
    # the recursion T(n) = 2 T(n/2) + n solves to n log2 n, against n^2 for the matrix product
    assert fwht_additions(n) == n * round(math.log2(n))
    if n > 1:
        assert fwht_additions(n) == 2 * fwht_additions(n // 2) + n
    assert fwht_additions(128) == 896 < 128**2


def test_fwht_is_its_own_inverse_and_keeps_dtype():
    x = torch.randn(4, 64, dtype=F64)
    torch.testing.assert_close(fwht(fwht(x)), x, rtol=1e-12, atol=1e-12)  # H symmetric and orthonormal
    for dtype in (torch.float32, torch.bfloat16):
        assert fwht(x.to(dtype)).dtype == dtype


@SETTINGS
@given(log2_n=log2_sizes, seed=seeds)
def test_rotation_preserves_dot_products_and_norms(log2_n, seed):
    g = torch.Generator().manual_seed(seed)
    q, k = torch.randn(5, 2**log2_n, dtype=F64, generator=g), torch.randn(7, 2**log2_n, dtype=F64, generator=g)
    torch.testing.assert_close(fwht(q) @ fwht(k).T, q @ k.T, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(fwht(q).norm(dim=-1), q.norm(dim=-1), rtol=1e-12, atol=0)


# --- FP8 block quantization -----------------------------------------------------------------------------


def test_e4m3_constants_match_torch():
    info = torch.finfo(torch.float8_e4m3fn)
    assert FP8_E4M3_MAX == info.max == 448.0
    assert FP8_E4M3_RELATIVE_ERROR == info.eps / 2  # eps = 2^-3 is the spacing just above 1
    assert FP8_E4M3_SUBNORMAL_ERROR == info.tiny * 2.0**-3 / 2  # subnormal spacing 2^-9, half of it


@SETTINGS
@given(n_blocks=st.integers(1, 3), block=st.sampled_from([1, 4, 16, 128]), log_scale=st.floats(-6, 6),
       fmt=st.sampled_from(["fp32", "ue8m0"]), seed=seeds)
def test_fp8_round_trip_error_is_within_e4m3_precision(n_blocks, block, log_scale, fmt, seed):
    """|dequant(quant(x)) - x| <= 2^-4 |x| (normal range) or 2^-10 s (subnormal range), elementwise."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(3, n_blocks * block, dtype=F64, generator=g) * 10.0**log_scale
    x_fp8, scales = quantize_fp8_blocks(x, block, fmt)
    assert x_fp8.dtype == torch.float8_e4m3fn and x_fp8.shape == x.shape
    assert scales.dtype == torch.float32 and scales.shape == (3, n_blocks)
    back = dequantize_fp8_blocks(x_fp8, scales, dtype=F64)
    s = scales.double().repeat_interleave(block, dim=-1)
    bound = torch.maximum(FP8_E4M3_RELATIVE_ERROR * x.abs(), FP8_E4M3_SUBNORMAL_ERROR * s) * (1 + 1e-6)
    assert ((back - x).abs() <= bound).all()
    torch.testing.assert_close(fake_quantize_fp8(x, block, fmt), back, rtol=0, atol=0)


def test_fp32_scales_put_each_blocks_amax_on_448():
    x = torch.randn(4, 256, dtype=F64) * torch.tensor([1e-3, 1.0, 30.0, 1e4], dtype=F64)[:, None]
    x_fp8, scales = quantize_fp8_blocks(x, 128, "fp32")
    amax = x.abs().reshape(4, 2, 128).amax(-1)
    torch.testing.assert_close(scales, amax.float() / 448, rtol=0, atol=0)  # in float32, as DeepSeek's kernel
    assert x_fp8.double().abs().reshape(4, 2, 128).amax(-1).eq(448).all()  # the full range is used
    zero_scale = block_scales(torch.zeros(1, 128, dtype=F64))
    assert zero_scale.item() == pytest.approx(AMAX_FLOOR / 448, rel=1e-6)  # DeepSeek's amax floor
    assert quantize_fp8_blocks(torch.zeros(1, 128), 128)[0].float().eq(0).all()


@SETTINGS
@given(log_scale=st.floats(-5, 5), seed=seeds)
def test_ue8m0_scales_are_powers_of_two_rounded_up(log_scale, seed):
    x = torch.randn(6, 64, dtype=F64, generator=torch.Generator().manual_seed(seed)) * 10.0**log_scale
    x_fp8, scales = quantize_fp8_blocks(x, 32, "ue8m0")
    exponent = torch.log2(scales.double())
    torch.testing.assert_close(exponent, exponent.round(), rtol=0, atol=0)  # 2^e exactly
    ratio = x.abs().reshape(6, 2, 32).amax(-1).clamp_min(AMAX_FLOOR) / 448 / scales.double()
    assert ((ratio > 0.5 * (1 - 1e-6)) & (ratio <= 1 + 1e-6)).all()  # amax/448 <= s < 2 amax/448
    assert x_fp8.double().abs().max() <= 448
    # a power-of-two scale makes the round trip idempotent: quantizing the result again changes nothing
    once = fake_quantize_fp8(x, 32, "ue8m0")
    torch.testing.assert_close(fake_quantize_fp8(once, 32, "ue8m0"), once, rtol=0, atol=0)


def test_quantization_keeps_the_input_dtype_through_fake_quantize():
    for dtype in (torch.float32, torch.bfloat16, F64):
        x = torch.randn(2, 16).to(dtype)
        assert fake_quantize_fp8(x, 16).dtype == dtype
        assert dequantize_fp8_blocks(*quantize_fp8_blocks(x, 8), dtype=dtype).dtype == dtype


# --- rotation before quantization -----------------------------------------------------------------------


def overlap(scores: torch.Tensor, exact: torch.Tensor, k: int) -> float:
    """Mean fraction of each row's exact top-k that ``scores`` also puts in its top-k."""
    ours, truth = scores.topk(k).indices, exact.topk(k).indices
    hits = (ours[:, :, None] == truth[:, None, :]).any(-1).sum().item()
    return hits / truth.numel()


def quantized_scores(q, k, rotate, fmt):
    if rotate:
        q, k = fwht(q), fwht(k)
    return fake_quantize_fp8(q, 128, fmt) @ fake_quantize_fp8(k, 128, fmt).T


@pytest.mark.parametrize("fmt", ["fp32", "ue8m0"])
def test_rotation_reduces_fp8_error_with_outlier_channels(fmt):
    """Two channels 30x larger in every query and key (the outliers activations carry): without the
    rotation their rounding errors enter q·k as two large terms; rotated, each spreads over 128 coordinates
    whose rounding errors partly cancel. Seeded, so the numbers are fixed."""
    g = torch.Generator().manual_seed(1)
    q, k = torch.randn(64, 128, dtype=F64, generator=g), torch.randn(256, 128, dtype=F64, generator=g)
    q[:, [3, 77]] *= 30.0
    k[:, [3, 77]] *= 30.0
    exact = q @ k.T
    plain, rotated = quantized_scores(q, k, False, fmt), quantized_scores(q, k, True, fmt)
    error_plain = ((plain - exact).abs().mean() / exact.abs().mean()).item()
    error_rotated = ((rotated - exact).abs().mean() / exact.abs().mean()).item()
    assert error_rotated < error_plain / 2
    assert overlap(rotated, exact, 16) > overlap(plain, exact, 16)
    # rotation changes nothing in exact arithmetic
    torch.testing.assert_close(fwht(q) @ fwht(k).T, exact, rtol=1e-10, atol=1e-8)


def test_without_outliers_rotation_neither_helps_nor_hurts_much():
    g = torch.Generator().manual_seed(2)
    q, k = torch.randn(64, 128, dtype=F64, generator=g), torch.randn(256, 128, dtype=F64, generator=g)
    exact = q @ k.T
    errors = [((quantized_scores(q, k, r, "fp32") - exact).abs().mean() / exact.abs().mean()).item()
              for r in (False, True)]
    assert max(errors) < 0.05 and max(errors) / min(errors) < 1.5


# --- argument checks ------------------------------------------------------------------------------------


def test_rejects_bad_arguments():
    with pytest.raises(ValueError, match="x.shape\\[-1\\]=12 must be a power of two"):
        fwht(torch.zeros(2, 12))
    with pytest.raises(ValueError, match="n=6 must be a power of two"):
        hadamard_matrix(6)
    with pytest.raises(ValueError, match="n=0 must be a power of two"):
        fwht_additions(0)
    with pytest.raises(ValueError, match="at least 1 dim"):
        fwht(torch.tensor(1.0))
    with pytest.raises(ValueError, match="x.shape\\[-1\\]=100 is not divisible by block=128"):
        quantize_fp8_blocks(torch.zeros(2, 100))
    with pytest.raises(ValueError, match="block=0"):
        quantize_fp8_blocks(torch.zeros(2, 128), block=0)
    with pytest.raises(ValueError, match="scale_format='e8m0'"):
        quantize_fp8_blocks(torch.zeros(2, 128), scale_format="e8m0")
    with pytest.raises(ValueError, match="floating-point"):
        quantize_fp8_blocks(torch.zeros(2, 128, dtype=torch.int64))
    x_fp8, scales = quantize_fp8_blocks(torch.randn(2, 128), 64)
    with pytest.raises(ValueError, match="x_fp8 must be a torch.float8_e4m3fn"):
        dequantize_fp8_blocks(x_fp8.float(), scales)
    with pytest.raises(ValueError, match="scales must have shape"):
        dequantize_fp8_blocks(x_fp8, scales[0])
    with pytest.raises(ValueError, match="do not divide"):
        dequantize_fp8_blocks(x_fp8, torch.ones(2, 3))


def test_no_rows_quantize_to_no_rows():
    """A tensor with no rows (an empty batch of keys) has no blocks to scale: every function returns the empty
    shapes a row-wise result implies, as a cache with no tokens yet would need."""
    x = torch.zeros(3, 0, 256)
    x_fp8, scales = quantize_fp8_blocks(x, 128)
    assert x_fp8.shape == (3, 0, 256) and x_fp8.dtype == torch.float8_e4m3fn and scales.shape == (3, 0, 2)
    assert dequantize_fp8_blocks(x_fp8, scales).shape == (3, 0, 256)
    assert fake_quantize_fp8(x, 128).shape == (3, 0, 256)
