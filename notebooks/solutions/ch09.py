"""Worked solutions to the exercises of chapter 9, Applying RoPE to MLA (decoupled RoPE).

Each name matches an answer cell in ``notebooks/09_decoupled_rope.ipynb``; for example
``print(ch09.check_permutation(answer_permutation))`` passes with the list below.
"""

from __future__ import annotations

import math

import torch


def answer_rope(x: torch.Tensor, m: int, base: float = 10000.0) -> torch.Tensor:
    """Exercise 1: halves convention. Pair i is (x[i], x[i + d/2]); it turns by the angle m * theta_i with
    theta_i = base^(-2i/d), i = 0 .. d/2 - 1, like a point in the plane:
    (a, b) -> (a cos - b sin, a sin + b cos)."""
    d = x.shape[-1]
    theta = base ** (-2.0 * torch.arange(d // 2, dtype=torch.float64) / d)
    angle = m * theta
    cos, sin = angle.cos().to(x.dtype), angle.sin().to(x.dtype)
    a, b = x[..., : d // 2], x[..., d // 2 :]
    return torch.cat([a * cos - b * sin, a * sin + b * cos], dim=-1)


# Exercise 2. Interleaved pair i is (2i, 2i+1); halves pair i is (i, i + d/2). Gathering x[p] must put
# dimension 2i at position i and dimension 2i+1 at position i + d/2: first the even dimensions, then the odd.
answer_permutation = [0, 2, 4, 6, 1, 3, 5, 7]

# Exercise 3. DeepSeek-V3: d_h + d_h^R = 128 + 64 = 192; YaRN factor 40 with mscale 1.0 gives
# m = 0.1 * 1.0 * ln(40) + 1 ≈ 1.3689; the query and the key each carry one factor m, so the scale has m^2.
answer_v3_softmax_scale = 192**-0.5 * (0.1 * math.log(40) + 1) ** 2  # ≈ 0.13524
