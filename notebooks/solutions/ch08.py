"""Worked solutions to the exercises of chapter 8, MLA at inference time.

Each name matches an answer cell in ``notebooks/08_mla_at_inference.ipynb``; for example
``print(ch08.check_absorbed_output(answer_absorbed_output))`` passes with the function below.
"""

from __future__ import annotations

import torch


def answer_absorbed_scores(q_nope: torch.Tensor, w_uk: torch.Tensor, c_kv: torch.Tensor) -> torch.Tensor:
    """Exercise 1: q · (W^UK_h c_t) = (W^UK_h^T q) · c_t. Fold W^UK_h into each head's query once (index d,
    the head width, is summed away), then score the folded query against every cached latent (index c)."""
    q_latent = torch.einsum("bshd,hdc->bshc", q_nope, w_uk)  # (b, s, h, d_c)
    return torch.einsum("bshc,btc->bsht", q_latent, c_kv)  # (b, s, h, t)


# Exercise 2. o_h = sum_t a_{h,t} W^UV_h c_t = W^UV_h (sum_t a_{h,t} c_t): mix the cached latents with each
# head's weights first (index t summed away, the result is latent-wide), then apply W^UV_h once per query
# instead of once per cached token; concatenate the heads and apply W^O (DeepSeek-V2 eqs. 45-47).
def answer_absorbed_output(weights: torch.Tensor, c_kv: torch.Tensor, w_uv: torch.Tensor,
                           w_o: torch.Tensor) -> torch.Tensor:
    """weights (b, s, h, t), c_kv (b, t, d_c), w_uv (h, d_v, d_c), w_o (d_model, h d_v) -> (b, s, d_model)."""
    o_latent = torch.einsum("bsht,btc->bshc", weights, c_kv)  # o~_{s,h} = sum_t a c_t   (b, s, h, d_c)
    o = torch.einsum("bshc,hvc->bshv", o_latent, w_uv)  # o_{s,h} = W^UV_h o~_{s,h}   (b, s, h, d_v)
    return o.flatten(-2) @ w_o.T  # [o_1; ...; o_h] W^O^T   (b, s, d_model)


# Exercise 3. DeepSeek-V3: n_h = 128, d_c = 512, d_h = d_v = 128, d_h^R = 64; t = 4096 cached tokens.
n_h, d_c, d_h, d_v, d_h_rope, t = 128, 512, 128, 128, 64, 4096
fold = n_h * d_c * (d_h + d_v)  # W^UK_i^T q^C_i and W^UV_i o~_i, once per step: 16,777,216
scores = n_h * t * (d_c + d_h_rope)  # every head scores every cached [c^KV; k^R]: 301,989,888
weighted_sum = n_h * t * d_c  # every head mixes the cached latents: 268,435,456
answer_absorbed_step_macs = fold + scores + weighted_sum  # 587,202,560

# Exercise 4 (predict). Per query-key pair and head, naive spends 2 (d_h + d_h^R + d_v) = 2 x 320 FLOPs,
# absorbed 2 (2 d_c + d_h^R) = 2 x 1088: about 3.4 times as much. Expanding K and V costs once per TOKEN,
# which a prefill amortizes over all its queries; only decode (one query) makes absorption pay.
prediction_prefill_ratio = (2 * 512 + 64) / (128 + 64 + 128)  # 3.4
