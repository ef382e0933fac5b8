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


# Exercise 3. Per layer: FlashMLA's FP8 MLA entry is 512 FP8 latent bytes + 4 fp32 scales (16 bytes) + the
# 64-wide RoPE key in bf16 (128 bytes) = 656 bytes; the index key is 128 FP8 bytes + one fp32 scale
# (4 bytes) = 132 bytes. Over DeepSeek-V3.2's 61 layers: (656 + 132) * 61 = 48,068 bytes per token.
answer_fp8_cache_bytes = (512 + 4 * 4 + 64 * 2 + 128 + 4) * 61
