"""Worked solutions to the exercises of chapter 14, how fast, really.

Each name matches an answer cell in ``notebooks/14_how_fast_really.ipynb``; for example
``print(ch14.check_mqa_counts(answer_mqa_counts))`` passes with the function below. Everything is counted
by hand from the shape's fields, without ``attnlab.costs``.
"""

from __future__ import annotations

B = 4  # float32: 4 bytes per number


# Exercise 1. MQA: one key head and one value head. Its weights W^Q (d x n_h d_h), W^K and W^V (d x d_h each)
# and W^O (n_h d_h x d) are each applied once to the new token: 2 FLOPs per weight. The new token attends to
# T = L + 1 keys (the L cached and its own): every query head scores T keys and mixes T values of width d_h,
# 2 x 2 n_h d_h T FLOPs. The step reads every weight once and the one cached K and V head, 2 d_h T numbers.
def answer_mqa_counts(shape, context: int) -> tuple[int, int]:
    """(shape, L) -> (FLOPs, bytes read) of one MQA decode step of one layer in float32."""
    d, n_h, d_h = shape.d_model, shape.n_heads, shape.head_dim
    w = d * n_h * d_h + 2 * d * d_h + n_h * d_h * d  # W^Q, W^K, W^V, W^O
    t = context + 1
    flops = 2 * w + 2 * 2 * n_h * d_h * t  # projections; scores and weighted sum, every query head
    n_bytes = B * (w + 2 * d_h * t)  # the weights and the one cached K and V head, once each
    return flops, n_bytes


# Exercise 2 (predict). Per cached number, MHA does one multiply-add (2 FLOPs for 4 bytes: 0.5 FLOP/byte,
# memory-bound); MQA's 16 query heads share each cached number (8 FLOP/byte on the cache), but at 8192 tokens
# the weights' bytes still weigh in: about 2.9, below 4. Absorbed MLA: every head scores and mixes the same
# 576-wide latent, about 2 n_h (2 d_c + d_h^R) FLOPs per 4 (d_c + d_h^R) bytes: well above 4.
prediction_bounds = {"mha": "memory", "mqa": "memory", "mla_absorbed": "compute"}


# Exercise 3. Absorbed MLA at the default shape (d 1024, n_h 16, d_h = d_v 64, d_c 256, d_h^R 32, no query
# latent). Weights: W^Q d n_h (d_h + d_h^R), W^DKV/W^KR d (d_c + d_h^R), W^UK/W^UV d_c n_h (d_h + d_v),
# W^O n_h d_v d, and the latent's RMSNorm d_c (read, but no matmul). Per step the matmuls apply every other
# weight once (2 W' FLOPs); per key T, each head scores [c; k^R] (d_c + d_h^R) and mixes c (d_c).
def crossover(d=1024, n_h=16, d_h=64, d_v=64, d_c=256, d_r=32, balance=4.0) -> int:
    w_matmul = d * n_h * (d_h + d_r) + d * (d_c + d_r) + d_c * n_h * (d_h + d_v) + n_h * d_v * d
    w = w_matmul + d_c  # the norm weights are read too
    t = 1
    while 2 * w_matmul + 2 * n_h * (2 * d_c + d_r) * t < balance * B * (w + (d_c + d_r) * t):
        t += 1
    return t - 1  # L = T - 1 cached tokens


answer_crossover = crossover()  # 3,763
