"""Worked solutions to the exercises of chapter 7, Multi-head latent attention.

Each name matches an answer cell in ``notebooks/07_multi_head_latent_attention.ipynb``; for example
``print(ch07.check_v2_bytes_per_token(answer_v2_bytes_per_token))`` passes with the value below.
"""

from __future__ import annotations

import torch

# Exercise 1. DeepSeek-V2's config.json (https://huggingface.co/deepseek-ai/DeepSeek-V2): kv_lora_rank
# d_c = 512, qk_rope_head_dim d_h^R = 64, num_hidden_layers 60. Per token and layer MLA caches the latent
# c^KV (512 numbers) and the shared RoPE key k^R (64), however many heads there are; bfloat16 = 2 bytes.
answer_v2_bytes_per_token = (512 + 64) * 60 * 2  # 69,120 bytes, about 69 kB per token

# Exercise 2. GQA caches 2 n_g d_h numbers per token and layer, MLA d_c + d_h^R. With DeepSeek-V3's
# d_h = 128: 2 n_g 128 = 512 + 64, so n_g = 576 / 256.
answer_gqa_groups = (512 + 64) / (2 * 128)  # 2.25


def answer_lowrank_error(matrix: torch.Tensor, r: int) -> float:
    """Exercise 3: by Eckart-Young the best rank-r approximation keeps the r largest singular values, so
    ||M - M_r||_F^2 is the sum of the squares of the others, and ||M||_F^2 the sum of all the squares."""
    s = torch.linalg.svdvals(matrix.double())  # decreasing
    energy = s.square()
    return float((energy[r:].sum() / energy.sum()).sqrt())
