"""Worked solutions to the exercises of chapter 11, quantization and rotation.

Each name matches an answer cell in ``notebooks/11_quantization_and_rotation.ipynb``; for example
``print(ch11.check_ue8m0_scale(answer_ue8m0_scale))`` passes with the value below.
The numbers are worked by hand, not read off ``attnlab.quant``.
"""

from __future__ import annotations

import torch

# Exercise 1. The block runs from -3.7 to 2.5, so amax = 3.7 and amax / 448 = 0.00826 = 2^-6.92.
# ue8m0 rounds the exponent UP, to -6, so that amax / s = 3.7 * 64 = 236.8 stays below 448:
answer_ue8m0_scale = 2.0**-6  # 0.015625


# Exercise 2. H_2n = [[H_n, H_n], [H_n, -H_n]], so x H_2n splits into butterflies: with a and b the two
# halves of x, (a, b) H_2n = (a H_n + b H_n, a H_n - b H_n). Doing the butterflies from the finest pairs
# (h = 1) to the coarsest (h = n/2), stage h pairs coordinate i with i + h inside blocks of 2h and
# replaces (a, b) by (a + b, a - b): log2(n) stages of n additions each. Divide by sqrt(n) at the end.
def answer_fwht(x: torch.Tensor) -> torch.Tensor:
    """x (..., n), n a power of two -> x H_n / sqrt(n), same shape."""
    n = x.shape[-1]
    lead = x.shape[:-1]
    y, h = x, 1
    while h < n:
        pairs = y.reshape(*lead, n // (2 * h), 2, h)  # (..., blocks, 2, h)
        a, b = pairs[..., 0, :], pairs[..., 1, :]
        y = torch.stack([a + b, a - b], dim=-2).reshape(*lead, n)
        h *= 2
    return y / n**0.5


# Exercise 3. One scale per block: amax over the block (clamped below at 1e-4, so a block of zeros gets a
# harmless scale), amax / 448 rounded UP to a power of two, so that |x / s| <= 448 always fits e4m3; divide
# each block by its scale and cast (round to nearest even). The power-of-two scale is a bare exponent:
# one byte (ue8m0), and multiplying by it is exact.
def answer_block_fp8(x: torch.Tensor, block: int) -> tuple[torch.Tensor, torch.Tensor]:
    """x (..., n) float32, n divisible by block -> x_fp8 (..., n) float8_e4m3fn, scales (..., n / block)."""
    blocks = x.reshape(*x.shape[:-1], x.shape[-1] // block, block)  # (..., n/B, B)
    amax = blocks.abs().amax(dim=-1).clamp_min(1e-4)  # (..., n/B)
    scales = torch.exp2(torch.ceil(torch.log2(amax / 448.0)))  # 2^ceil(log2(amax / 448))
    x_fp8 = (blocks / scales[..., None]).to(torch.float8_e4m3fn)  # |x / s| <= 448
    return x_fp8.reshape(x.shape), scales


# Exercise 4 (predict). e4m3 is floating point: dividing by a scale up to 2x larger lowers each value's exponent
# by at most one and keeps its 3 mantissa bits, so the relative error stays about the same. Only values pushed
# below 2^-6 (into the subnormals) lose precision: a few percent more error, not 2x.
prediction_ue8m0_cost = 1.05
