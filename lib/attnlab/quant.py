"""FP8 block quantization and the Walsh-Hadamard rotation that DeepSeek applies before it.

FP8 e4m3 (``torch.float8_e4m3fn``): 1 sign bit, 4 exponent bits, 3 mantissa bits, largest finite value
448. Normal numbers carry 3 fraction bits, so rounding to nearest moves a value by at most half a unit in
the last place, a relative error of at most 2^-4; below the smallest normal 2^-6 the spacing is a fixed
2^-9 (subnormals), an absolute error of at most 2^-10.

Block quantization (DeepSeek-V3 and V3.2 ``inference/kernel.py``, ``act_quant``): split the last axis into
blocks of B values (B = 128) and give each block one scale

    s = amax / 448,   amax = max_i |x_i| over the block,   x_fp8_i = round_e4m3(x_i / s),   x_i ~ s x_fp8_i,

so the largest value of every block lands on 448 and uses the full range. DeepSeek clamps amax below at
1e-4 (an all-zero block gets a harmless non-zero scale). With ``scale_format="ue8m0"`` the scale is rounded
UP to a power of two, s = 2^ceil(log2(amax / 448)): it then fits in 8 exponent bits (unsigned e8m0), and
multiplying by it is exact; rounding up keeps |x_i / s| <= 448.

One outlier channel makes amax large for its whole block, which squeezes the other values towards the
subnormal range and, above all, leaves the outlier's own rounding error in the dot product as ONE large
term. An orthonormal Hadamard rotation H (H H^T = I) first spreads every channel over all n coordinates:
dot products are unchanged, (x H) · (y H) = x H H^T y^T = x · y, but the rounding errors of the n rotated
coordinates are independent and partly cancel. DeepSeek-V3.2's lightning indexer rotates its queries
and keys this way (``rotate_activation``, ``fast_hadamard_transform`` with scale n^-0.5) before FP8.

Sylvester's construction H_1 = [1], H_2n = [[H_n, H_n], [H_n, -H_n]] gives Hadamard matrices of every
power-of-two order; :func:`fwht` applies H_n / sqrt(n) in n log2 n additions instead of n^2 multiply-adds.
"""

from __future__ import annotations

import functools
import math

import torch

from attnlab._validate import (
    ArgumentTypeError,
    check_bool,
    check_device,
    check_dtype,
    check_floating,
    check_positive_int,
    check_tensor,
)

#: Largest finite float8_e4m3fn value: 1.75 x 2^8.
FP8_E4M3_MAX: float = float(torch.finfo(torch.float8_e4m3fn).max)  # 448.0
#: Relative rounding error bound of e4m3 normal numbers: half an ulp of 3 fraction bits, 2^-4.
FP8_E4M3_RELATIVE_ERROR: float = 2.0**-4
#: Absolute rounding error bound of e4m3 subnormals (spacing 2^-9), in units of the scale: 2^-10.
FP8_E4M3_SUBNORMAL_ERROR: float = 2.0**-10
#: DeepSeek's ``act_quant`` clamps a block's amax below at this value before dividing by 448.
AMAX_FLOOR: float = 1e-4
#: Formats of the per-block scale: a plain float32 or a power of two (unsigned e8m0, DeepSeek's "ue8m0").
SCALE_FORMATS: tuple[str, ...] = ("fp32", "ue8m0")


def _check_blocks(name: str, x: torch.Tensor, block: int) -> int:
    """Return the number of blocks along x's last axis; ValueError unless ``block`` divides it."""
    check_tensor(name, x)
    if x.dim() == 0:
        raise ValueError(f"{name} must have at least 1 dim (..., n), got a scalar")
    check_positive_int("block", block)
    n = x.shape[-1]
    if n % block != 0:
        raise ValueError(f"{name}.shape[-1]={n} is not divisible by block={block}")
    return n // block


def block_scales(x: torch.Tensor, block: int = 128, scale_format: str = "fp32") -> torch.Tensor:
    """One scale per block of ``block`` values along the last axis: s = max(amax, 1e-4) / 448, or with
    ``scale_format="ue8m0"`` s = 2^ceil(log2(max(amax, 1e-4) / 448)).

    x (..., n) float, n divisible by block -> scales (..., n / block), float32."""
    n_blocks = _check_blocks("x", x, block)
    if not isinstance(scale_format, str) or scale_format not in SCALE_FORMATS:
        raise ValueError(f"scale_format={scale_format!r} must be one of {SCALE_FORMATS}")
    if not x.dtype.is_floating_point:
        raise ValueError(f"x must be a floating-point tensor, got {x.dtype}")
    blocks = x.detach().reshape(*x.shape[:-1], n_blocks, block).float()  # (..., n/B, B)
    amax = blocks.abs().amax(dim=-1).clamp_min(AMAX_FLOOR)  # (..., n/B)
    scale = amax / FP8_E4M3_MAX
    if scale_format == "ue8m0":
        scale = torch.exp2(torch.ceil(torch.log2(scale)))  # round up to a power of two
    return scale


def quantize_fp8_blocks(x: torch.Tensor, block: int = 128,
                        scale_format: str = "fp32") -> tuple[torch.Tensor, torch.Tensor]:
    """x_fp8 = round_e4m3(clamp(x / s, -448, 448)) with one scale s per block (see :func:`block_scales`).

    x (..., n) -> (x_fp8 (..., n) float8_e4m3fn, scales (..., n / block) float32). The division runs in
    x's dtype (float32 for bfloat16 and float16 input) and rounds once, to nearest even."""
    scales = block_scales(x, block, scale_format)  # (..., n/B)
    work = x.to(torch.promote_types(x.dtype, torch.float32))
    blocks = work.reshape(*scales.shape, block) / scales.to(work.dtype).unsqueeze(-1)  # (..., n/B, B)
    x_fp8 = blocks.clamp(-FP8_E4M3_MAX, FP8_E4M3_MAX).to(torch.float8_e4m3fn)
    return x_fp8.reshape(x.shape), scales


def dequantize_fp8_blocks(x_fp8: torch.Tensor, scales: torch.Tensor,
                          dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """x ~ s * x_fp8 per block: x_fp8 (..., n) float8_e4m3fn, scales (..., n / B) -> (..., n) in ``dtype``."""
    check_tensor("x_fp8", x_fp8)
    check_tensor("scales", scales)
    if not isinstance(x_fp8, torch.Tensor) or x_fp8.dtype != torch.float8_e4m3fn:
        raise ValueError(f"x_fp8 must be a torch.float8_e4m3fn tensor, got {getattr(x_fp8, 'dtype', type(x_fp8))}")
    if not isinstance(scales, torch.Tensor) or scales.dim() != x_fp8.dim() or scales.shape[:-1] != x_fp8.shape[:-1]:
        raise ValueError(f"scales must have shape x_fp8.shape[:-1] + (n_blocks,), got "
                         f"{tuple(getattr(scales, 'shape', ()))} for x_fp8 {tuple(x_fp8.shape)}")
    n, n_blocks = x_fp8.shape[-1], scales.shape[-1]
    if n_blocks == 0 or n % n_blocks != 0:
        raise ValueError(f"scales has {n_blocks} blocks, which do not divide x_fp8.shape[-1]={n}")
    check_floating("scales", scales)
    check_dtype("dtype", dtype, floating=True)
    work = torch.promote_types(dtype, torch.float32)
    blocks = x_fp8.to(work).reshape(*x_fp8.shape[:-1], n_blocks, n // n_blocks)
    return (blocks * scales.to(work).unsqueeze(-1)).reshape(x_fp8.shape).to(dtype)


def fake_quantize_fp8(x: torch.Tensor, block: int = 128, scale_format: str = "fp32") -> torch.Tensor:
    """dequantize(quantize(x)): the values an FP8 kernel would compute with, in x's dtype and shape.

    Since s > 0, ReLU(s_q q_fp8 · s_k k_fp8) = s_q s_k ReLU(q_fp8 · k_fp8), so scoring the dequantized
    vectors equals DeepSeek's ``fp8_index`` (FP8 product, then x q_scale, x k_scale) up to float rounding."""
    x_fp8, scales = quantize_fp8_blocks(x, block, scale_format)
    return dequantize_fp8_blocks(x_fp8, scales, dtype=x.dtype)


# ----------------------------------------------------------------------------------------------------
# Hadamard rotation


def _check_power_of_two(name: str, n: object) -> int:
    if isinstance(n, bool) or not isinstance(n, int):
        raise ArgumentTypeError(f"{name}={n!r} must be a power of two (1, 2, 4, 8, ...)")
    if n < 1 or n & (n - 1):
        raise ValueError(f"{name}={n!r} must be a power of two (1, 2, 4, 8, ...)")
    return n


def hadamard_matrix(n: int, normalized: bool = True, dtype: torch.dtype = torch.float64,
                    device: torch.device | str | None = None) -> torch.Tensor:
    """Sylvester's Hadamard matrix H_1 = [1], H_2n = [[H_n, H_n], [H_n, -H_n]] of order n (a power of two),
    times n^-0.5 when ``normalized`` (then H H^T = I; H is also symmetric). -> (n, n)."""
    _check_power_of_two("n", n)
    check_bool("normalized", normalized)
    check_dtype("dtype", dtype)
    if dtype.is_complex or not dtype.is_signed or (normalized and not dtype.is_floating_point):
        raise ValueError(f"dtype={dtype} cannot hold a{' normalized' if normalized else ''} Hadamard matrix: "
                         f"use a floating-point dtype{'' if normalized else ' or a signed integer one'}")
    check_device("device", device)
    h = torch.ones(1, 1, dtype=dtype, device=device)
    while h.shape[0] < n:
        h = torch.cat([torch.cat([h, h], dim=1), torch.cat([h, -h], dim=1)], dim=0)
    return h * n**-0.5 if normalized else h


@functools.lru_cache(maxsize=64)
def hadamard_rotation(n: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """H_n / sqrt(n), the orthonormal Hadamard matrix (:func:`hadamard_matrix`), in ``dtype`` on ``device``,
    built once (in float64, then rounded) and kept: ``x @ hadamard_rotation(n, ...)`` is :func:`fwht` as one
    matmul, which is what a decode step should run at the indexer's widths (one kernel instead of log2(n)
    rounds of small tensor operations). An ordinary tensor even when first asked for under
    ``torch.inference_mode``."""
    _check_power_of_two("n", check_positive_int("n", n))
    check_dtype("dtype", dtype, floating=True)
    with torch.inference_mode(False):
        return hadamard_matrix(n, device=device).to(dtype)


def fwht(x: torch.Tensor) -> torch.Tensor:
    """Fast Walsh-Hadamard transform along the last axis: x @ H_n / sqrt(n) with Sylvester's H_n.

    x (..., n), n a power of two -> (..., n), same dtype. H_2n = H_2 (x) H_n (Kronecker product) factors
    H_n into log2(n) butterfly stages; stage h pairs coordinate i with i + h inside blocks of 2h and
    replaces (a, b) by (a + b, a - b). That is n additions per stage, n log2 n in all, against n^2 for the
    matrix product, and the stages commute, so their order does not matter. The final n^-0.5 makes the
    transform orthonormal (DeepSeek's ``hadamard_transform(x, scale=n ** -0.5)``). (On a CPU or GPU, for
    the indexer's small widths, one matmul with :func:`hadamard_rotation` is faster than these passes;
    :meth:`attnlab.dsa.LightningIndexer.prepare` runs that.)"""
    check_tensor("x", x)
    if x.dim() == 0:
        raise ValueError("x must be a torch.Tensor with at least 1 dim (..., n)")
    check_floating("x", x)
    n = _check_power_of_two("x.shape[-1]", x.shape[-1])
    lead = x.shape[:-1]
    h = 1
    while h < n:
        pairs = x.reshape(*lead, n // (2 * h), 2, h)  # (..., blocks, 2, h): a = pairs[..., 0, :], b = [..., 1, :]
        a, b = pairs[..., 0, :], pairs[..., 1, :]
        x = torch.stack([a + b, a - b], dim=-2).reshape(*lead, n)
        h *= 2
    return x * n**-0.5


def fwht_additions(n: int) -> int:
    """Additions and subtractions :func:`fwht` performs on one vector: n log2 n (n/2 butterflies of 2 per
    stage, log2 n stages), against n^2 multiply-adds for x @ H."""
    _check_power_of_two("n", n)
    return n * int(math.log2(n))
