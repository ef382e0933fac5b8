"""Worked solutions to the exercises of chapter 5, Multi-query attention.

Each name matches an answer cell in ``notebooks/05_multi_query_attention.ipynb``; for example
``print(ch05.check_mqa_attention(answer_mqa_attention))`` passes with the function below.
The numbers are worked by hand from the published configs, not read off ``attnlab.sizing``.
"""

from __future__ import annotations

import math

import torch

# Exercise 1 (predict). MHA: W^Q, W^K, W^V, W^O, each 512 x 512. MQA keeps W^Q and W^O and shrinks W^K and
# W^V to one head, 512 x 64 each: 4 x 512^2 / (2 x 512^2 + 2 x 512 x 64), without biases.
prediction_mqa_parameters = 4 * 512 * 512 / (2 * 512 * 512 + 2 * 512 * 64)  # about 1.78


# Exercise 2. With one K/V head, k and v are (b, 1, n, d): broadcasting over the head axis gives every
# query head the same keys and values, with no copy. The rest is plain causal attention.
def answer_mqa_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """q: (b, h, n, d); k, v: (b, 1, n, d) -> (b, h, n, d)."""
    n, d = q.shape[-2], q.shape[-1]
    scores = q @ k.transpose(-2, -1) / math.sqrt(d)  # (b, h, n, n): k broadcasts over the h query heads
    future = torch.ones(n, n, dtype=torch.bool).triu(diagonal=1)  # key j > query i
    weights = torch.softmax(scores.masked_fill(future, float("-inf")), dim=-1)
    return weights @ v  # (b, h, n, d): v broadcasts the same way


# Exercise 3. Llama-2-7B (https://huggingface.co/meta-llama/Llama-2-7b-hf): 6.738e9 parameters, 32 layers,
# 32 heads of width 128, plain MHA. In bfloat16 a decode step reads the weights once:
#     6,738,000,000 x 2 = 13,476,000,000 bytes,
# and each sequence's cache: 4096 tokens x (2 x 32 x 128 x 32 layers x 2 bytes = 524,288 bytes/token)
#     = 2,147,483,648 bytes with MHA, and 32x less with MQA (one K/V head): 67,108,864 bytes.
# The cache read is at least the weights' once batch >= 13,476,000,000 / per-sequence bytes:
#     MHA: 6.28 -> 7 sequences;  MQA: 200.8 -> 201 sequences.
answer_cache_dominates = (
    math.ceil(6_738_000_000 * 2 / (4096 * 2 * 32 * 128 * 32 * 2)),
    math.ceil(6_738_000_000 * 2 / (4096 * 2 * 1 * 128 * 32 * 2)),
)  # (7, 201)
