"""Worked solutions to the exercises of chapter 7, Multi-head latent attention.

Each name matches an answer cell in ``notebooks/07_multi_head_latent_attention.ipynb``; for example
``print(ch07.check_joint_factors(answer_joint_factors))`` passes with the function below.
"""

from __future__ import annotations

import torch


# Exercise 1. MLA caches ONE latent per token for both keys and values, so factor the stacked [W^K; W^V]:
# by Eckart-Young its best rank-r approximation keeps the r largest singular values, U_r diag(s_r) V_r^T.
# V_r^T is the down-projection W^DKV (r, d); U_r diag(s_r), split into its key rows and value rows, gives
# W^UK and W^UV (DeepSeek-V2 eqs. 41-42, 45).
def answer_joint_factors(w_k: torch.Tensor, w_v: torch.Tensor, r: int):
    """w_k (h d_h, d), w_v (h d_v, d), r -> w_dkv (r, d), w_uk (h d_h, r), w_uv (h d_v, r)."""
    joint = torch.cat([w_k, w_v])  # (h d_h + h d_v, d)
    u, s, vh = torch.linalg.svd(joint, full_matrices=False)  # singular values largest first
    up = u[:, :r] * s[:r]  # (h d_h + h d_v, r)
    return vh[:r], up[: w_k.shape[0]], up[w_k.shape[0]:]


# Exercise 2 (predict). A random Gaussian matrix spreads its energy over all 256 singular values (they follow
# the quarter-circle law), so keeping 32 of 256 directions leaves most of it: about 0.8.
prediction_random_rank_error = 0.8


def answer_lowrank_error(matrix: torch.Tensor, r: int) -> float:
    """Exercise 3: by Eckart-Young the best rank-r approximation keeps the r largest singular values, so
    ||M - M_r||_F^2 is the sum of the squares of the others, and ||M||_F^2 the sum of all the squares."""
    s = torch.linalg.svdvals(matrix.double())  # decreasing
    energy = s.square()
    return float((energy[r:].sum() / energy.sum()).sqrt())
