"""Worked solutions to the exercises of chapter 6, Grouped-query attention.

Each name matches an answer cell in ``notebooks/06_grouped_query_attention.ipynb``; for example
``print(ch06.check_mean_pool(answer_mean_pool))`` passes with the function below.
"""

from __future__ import annotations

import torch


# Exercise 1. Rows h*d .. (h+1)*d - 1 of W^K belong to head h, and KV head g serves the r = n_heads /
# n_kv_heads NEIGHBOURING query heads g*r .. g*r + r - 1. So split the rows as (n_kv_heads, r, d) and
# average over r (the GQA paper, sec. 2.1: "mean pooling all the original heads within that group").
def answer_mean_pool(w: torch.Tensor, n_heads: int, n_kv_heads: int) -> torch.Tensor:
    """w: (n_heads * d, d_model) -> (n_kv_heads * d, d_model)."""
    d = w.shape[0] // n_heads
    r = n_heads // n_kv_heads
    return w.reshape(n_kv_heads, r, d, w.shape[1]).mean(dim=1).reshape(n_kv_heads * d, w.shape[1])


# Exercise 2. Every KV head serves the same number r of query heads, so n_kv_heads must divide 12.
# Both ends count: 1 is MQA, 12 is MHA.
answer_valid_kv_heads = [n for n in range(1, 13) if 12 % n == 0]  # [1, 2, 3, 4, 6, 12]

# Exercise 3. Qwen2.5-7B's config.json (https://huggingface.co/Qwen/Qwen2.5-7B): num_hidden_layers 28,
# num_attention_heads 28, num_key_value_heads 4, hidden_size 3584, so head_dim = 3584 / 28 = 128.
# Per token and layer: a key and a value for each of the 4 KV heads, 2 x 4 x 128 = 1,024 numbers;
# 28 layers; 2 bytes each in bfloat16.
answer_qwen_bytes_per_token = 2 * 4 * 128 * 28 * 2  # 57,344 bytes; 7x less than MHA's 28 KV heads
