"""Worked solutions to the exercises of chapter 8, MLA at inference time.

Each name matches an answer cell in ``notebooks/08_mla_at_inference.ipynb``; for example
``print(ch08.check_absorbed_query_width(answer_absorbed_query_width))`` passes with the value below.
"""

from __future__ import annotations

import torch


def answer_absorbed_scores(q_nope: torch.Tensor, w_uk: torch.Tensor, c_kv: torch.Tensor) -> torch.Tensor:
    """Exercise 1: q · (W^UK_h c_t) = (W^UK_h^T q) · c_t. Fold W^UK_h into each head's query once (index d,
    the head width, is summed away), then score the folded query against every cached latent (index c)."""
    q_latent = torch.einsum("bshd,hdc->bshc", q_nope, w_uk)  # (b, s, h, d_c)
    return torch.einsum("bshc,btc->bsht", q_latent, c_kv)  # (b, s, h, t)


# Exercise 2. The absorbed query of head i is [W^UK_i^T q^C_i; q^R_i]: d_c = 512 numbers that score the
# cached latent and d_h^R = 64 that score the shared RoPE key, for DeepSeek-V3.
answer_absorbed_query_width = 512 + 64  # 576

# Exercise 3. DeepSeek-V3: n_h = 128, d_c = 512, d_h = d_v = 128, d_h^R = 64; t = 4096 cached tokens.
n_h, d_c, d_h, d_v, d_h_rope, t = 128, 512, 128, 128, 64, 4096
fold = n_h * d_c * (d_h + d_v)  # W^UK_i^T q^C_i and W^UV_i o~_i, once per step: 16,777,216
scores = n_h * t * (d_c + d_h_rope)  # every head scores every cached [c^KV; k^R]: 301,989,888
weighted_sum = n_h * t * d_c  # every head mixes the cached latents: 268,435,456
answer_absorbed_step_macs = fold + scores + weighted_sum  # 587,202,560
