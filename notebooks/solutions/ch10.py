"""Worked solutions to the exercises of chapter 10, DeepSeek Sparse Attention.

Each name matches an answer cell in ``notebooks/10_deepseek_sparse_attention.ipynb``; for example
``print(ch10.check_causal_topk(answer_causal_topk))`` passes with the function below.
The numbers are worked by hand from the shapes, not read off ``attnlab.dsa``.
"""

from __future__ import annotations

import torch


# Exercise 1. Query t of the T sits at position p = S - T + t and may see keys 0 .. p. Hide the others with
# -inf, take the top min(k, S) (torch.topk sorts best first), and where a query sees fewer than k tokens
# (p + 1 < k) the slots from p + 1 on hold -inf keys: replace them with -1, the padding.
def answer_causal_topk(scores: torch.Tensor, k: int) -> torch.Tensor:
    """scores (T, S), the last T positions of S keys -> indices (T, min(k, S)), best first, -1 padded."""
    t, s = scores.shape
    position = torch.arange(s - t, s)[:, None]  # (T, 1): each query's position
    visible = torch.arange(s)[None, :] <= position  # (T, S)
    kk = min(k, s)
    order = scores.masked_fill(~visible, float("-inf")).topk(kk, dim=-1).indices  # (T, kk), best first
    slots = torch.arange(kk)[None, :]  # (1, kk)
    return order.masked_fill(slots > position, -1)  # query at p has p + 1 tokens: slot i is real iff i <= p


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


# Exercise 4 (predict). Dense MLA: C_attn L FLOPs; DSA: F_proj + C_idx L + C_attn k. At L = 131,072,
# k = 2048: dense 278,528 x 131,072 = 36.5 GFLOP; DSA 27.9 M + 16,512 x 131,072 + 278,528 x 2048 = 2.76 GFLOP.
# About 13x, not the 64x of L / k: the indexer still touches every token.
prediction_decode_speedup = (278_528 * 131_072) / (27_918_336 + 16_512 * 131_072 + 278_528 * 2048)
