"""Worked solutions to the exercises of chapter 15, FlashAttention.

Each name matches an answer cell in ``notebooks/15_flash_attention.ipynb``; for example
``print(ch15.check_online_step(answer_online_step))`` passes with the function below.
The numbers are worked by hand from the shapes, not read off ``attnlab.flash``.
"""

from __future__ import annotations

import torch


# Exercise 1. The new block may raise the row's maximum from m to m_new. Everything summed so far, the sum l
# and the unnormalised output o, was exponentiated against the old maximum: multiply both by
# alpha = exp(m - m_new) <= 1 before adding the new block's exp(s - m_new) terms. Before the first block
# m = -inf, so alpha = exp(-inf) = 0 and the (empty) past drops out. Divide by l only after the last block.
def answer_online_step(m: torch.Tensor, l: torch.Tensor, o: torch.Tensor, s: torch.Tensor,  # noqa: E741
                       v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """m, l: () running max and sum; o (d_v,) unnormalised output; s (B,) scores; v (B, d_v) values."""
    m_new = torch.maximum(m, s.max())  # m_new = max(m, max_j s_j)
    alpha = torch.exp(m - m_new)  # rescales what was summed against the old maximum
    p = torch.exp(s - m_new)  # (B,)
    return m_new, alpha * l + p.sum(), alpha * o + p @ v


# Exercise 2. Chunk c's softmax was normalised by its own denominator Z_c = exp(lse_c). Over both chunks the
# denominator is Z = Z_1 + Z_2, so lse = log(exp(lse1) + exp(lse2)) (torch.logaddexp, which never overflows),
# and chunk c's output counts with weight Z_c / Z = exp(lse_c - lse). The weights sum to 1.
def answer_merge(o1: torch.Tensor, lse1: torch.Tensor, o2: torch.Tensor,
                 lse2: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """o_c (n_q, d_v), lse_c (n_q,) -> attention over both chunks' keys and its log-sum-exp."""
    lse = torch.logaddexp(lse1, lse2)
    w1, w2 = torch.exp(lse1 - lse).unsqueeze(-1), torch.exp(lse2 - lse).unsqueeze(-1)
    return w1 * o1 + w2 * o2, lse


# Exercise 3. n = 4096, d = d_v = 128, B_r = 128, B_c = 64, bfloat16 (2 bytes), causal. There are
# 4096 / 128 = 32 query blocks. Block i (i = 0..31) holds queries up to position 128 (i + 1) - 1, so it needs
# keys 0 .. 128 (i + 1) - 1: exactly 128 (i + 1) / 64 = 2 (i + 1) whole key blocks of 64, 128 (i + 1) rows.
# Rows loaded: 128 (1 + 2 + ... + 32) = 128 * 528 = 67,584, each K row and V row 128 numbers of 2 bytes:
#   67,584 * (128 + 128) * 2 = 34,603,008 bytes (33 MiB),
# against 32 * 4096 = 131,072 rows (64 MiB) without the mask, and the standard form's S and P alone,
# 4 * 4096^2 * 2 = 134,217,728 bytes (128 MiB).
answer_kv_bytes = 128 * (32 * 33 // 2) * (128 + 128) * 2
