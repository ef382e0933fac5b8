"""Worked solutions to the exercises of chapter 9, Applying RoPE to MLA (decoupled RoPE).

Each name matches an answer cell in ``notebooks/09_decoupled_rope.ipynb``; for example
``print(ch09.check_decoupled_scores(answer_decoupled_scores))`` passes with the function below.
"""

from __future__ import annotations

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

# Exercise 3. Decoupled RoPE, wired by hand. The layer has no query latent: w_q's rows are, head by head,
# [W^UQ_i (d_h rows); W^QR_i (d_h^R rows)]; w_dkv's rows are [W^DKV (d_c); W^KR (d_h^R)] (DeepSeek-V2 eqs.
# 37-44). The latent c^KV gets RMSNorm and no rotation; the RoPE key k^R is ONE per token, rotated at its own
# position and shared by every head; each head's q^R is rotated at the query's position. The score adds the
# content part (absorbed: W^UK_i^T q^C_i against c^KV) and the position part, times the softmax scale,
# which under YaRN is (d_h + d_h^R)^-0.5 m^2.
def answer_decoupled_scores(layer, x: torch.Tensor) -> torch.Tensor:
    """x (b, s, d_model) at positions 0 .. s-1 -> pre-softmax, unmasked scores (b, s, h, s)."""
    c = layer.config
    b, s, _ = x.shape
    positions = torch.arange(s)
    q = layer.w_q(x).view(b, s, c.n_heads, c.qk_nope_head_dim + c.qk_rope_head_dim)
    q_nope, q_rope = q.split([c.qk_nope_head_dim, c.qk_rope_head_dim], dim=-1)  # (b, s, h, d_h), (b, s, h, d_h^R)
    c_kv, k_rope = layer.w_dkv(x).split([c.kv_lora_rank, c.qk_rope_head_dim], dim=-1)  # (b, s, d_c), (b, s, d_h^R)
    c_kv = layer.kv_norm(c_kv)  # eq. 41
    q_rope, k_rope = layer.rope(q_rope, positions), layer.rope(k_rope, positions)  # eqs. 39, 43
    q_latent = torch.einsum("bshd,hdc->bshc", q_nope, layer.w_uk)  # W^UK_i^T q^C_i
    content = torch.einsum("bshc,btc->bsht", q_latent, c_kv)
    position = torch.einsum("bshr,btr->bsht", q_rope, k_rope)  # one k^R per token, every head
    return (content + position) * c.softmax_scale


# Exercise 4 (predict). The content part has no position in it, and RoPE makes q^R · k^R depend on n - m
# only: shifting every position by the same amount leaves the scores as they were.
prediction_scores_change = False
