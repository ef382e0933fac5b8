"""Worked solutions to the exercises of chapter 10, DeepSeek Sparse Attention.

Each name matches an answer cell in ``notebooks/10_deepseek_sparse_attention.ipynb``; for example
``print(ch10.check_prefill_pairs(answer_prefill_pairs))`` passes with the value below.
The numbers are worked by hand from the shapes, not read off ``attnlab.dsa``.
"""

from __future__ import annotations

import torch

# Exercise 1. Query t (counting from 1) can see t tokens, itself included, and keeps min(k, t) of them.
# The first k queries keep all they see: 1 + 2 + ... + k = k(k+1)/2 pairs. Each of the other L - k
# queries keeps exactly k. With L = 8192 and k = 2048:
#   2048 * 2049 / 2 + (8192 - 2048) * 2048 = 2,098,176 + 12,582,912 = 14,681,088 pairs,
# against 8192 * 8193 / 2 = 33,558,528 for dense causal attention.
answer_prefill_pairs = 2048 * 2049 // 2 + (8192 - 2048) * 2048


# Exercise 2. Every index head j scores the ONE shared key k[s] with its own query q[t, j]; ReLU cuts the
# negative dot products; the per-token weights w[t, j] mix the heads. One einsum per step:
def answer_index_scores(q: torch.Tensor, w: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """q (T, H, d), w (T, H), k (S, d) -> I (T, S), I[t, s] = sum_j w[t, j] ReLU(q[t, j] · k[s])."""
    logits = torch.einsum("tjd,sd->tjs", q, k)  # q[t, j] · k[s]   (T, H, S)
    return torch.einsum("tj,tjs->ts", w, torch.relu(logits))


# Exercise 3. Per decoded token and layer, with L tokens of context and L > k:
#   dense MLA: C_attn L          DSA: F_proj + C_idx L + C_attn k
# DeepSeek-V3.2: C_attn = 2 n_h (2 d_c + d_h^R) = 2 * 128 * (1024 + 64) = 278,528;
# C_idx = 2 H^I d^I + 2 H^I = 2 * 64 * 128 + 2 * 64 = 16,512;
# F_proj = 2 (d'_c H^I d^I + d d^I + d H^I) = 2 * (1536 * 8192 + 7168 * 128 + 7168 * 64) = 27,918,336.
# DSA is cheaper when C_attn L > F_proj + C_idx L + C_attn k, i.e. L > (C_attn k + F_proj) / (C_attn - C_idx)
# = (278,528 * 1024 + 27,918,336) / 262,016 = 1195.06..., so the first whole L is 1196.
answer_crossover = (278_528 * 1024 + 27_918_336) // (278_528 - 16_512) + 1  # 1,196 tokens
