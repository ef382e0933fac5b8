"""Worked solutions to the exercises of chapter 6, Grouped-query attention.

Each name matches an answer cell in ``notebooks/06_grouped_query_attention.ipynb``; for example
``print(ch06.check_mean_pool(answer_mean_pool))`` passes with the function below.
"""

from __future__ import annotations

import math

import torch


# Exercise 1. Rows h*d .. (h+1)*d - 1 of W^K belong to head h, and KV head g serves the r = n_heads /
# n_kv_heads NEIGHBOURING query heads g*r .. g*r + r - 1. So split the rows as (n_kv_heads, r, d) and
# average over r (the GQA paper, sec. 2.1: "mean pooling all the original heads within that group").
def answer_mean_pool(w: torch.Tensor, n_heads: int, n_kv_heads: int) -> torch.Tensor:
    """w: (n_heads * d, d_model) -> (n_kv_heads * d, d_model)."""
    d = w.shape[0] // n_heads
    r = n_heads // n_kv_heads
    return w.reshape(n_kv_heads, r, d, w.shape[1]).mean(dim=1).reshape(n_kv_heads * d, w.shape[1])


# Exercise 2. Query head h = g * r + j reads KV head g: view q as (b, n_kv_heads, r, n, d) and give k, v a
# group axis of size 1, (b, n_kv_heads, 1, n, d); broadcasting then hands every one of a group's r query
# heads the same keys and values, with no copy. The rest is plain causal attention.
def answer_gqa_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """q (b, h, n, d), k and v (b, g, n, d) -> (b, h, n, d)."""
    b, h, n, d = q.shape
    g = k.shape[1]
    qg = q.view(b, g, h // g, n, d)  # (b, g, r, n, d)
    scores = qg @ k[:, :, None].transpose(-2, -1) / math.sqrt(d)  # (b, g, r, n, n)
    future = torch.ones(n, n, dtype=torch.bool).triu(1)  # key j > query i
    weights = torch.softmax(scores.masked_fill(future, float("-inf")), dim=-1)
    return (weights @ v[:, :, None]).view(b, h, n, d)  # (b, g, r, n, d) -> (b, h, n, d)


# Exercise 3 (predict). Every query head still scores every cached key and mixes every value: the FLOPs
# n_h t (d_h + d_v) do not depend on how many KV heads there are. GQA cuts the bytes read (4x here), not the
# arithmetic.
prediction_gqa_flops = 1.0
