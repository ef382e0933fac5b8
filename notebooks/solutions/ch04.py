"""Worked solutions to the exercises of chapter 4, Key-Value caching.

Each name matches an answer cell in ``notebooks/04_kv_caching.ipynb``; for example
``print(ch04.check_cache_bytes(answer_cache_bytes))`` passes with the value below.
The numbers are worked by hand from the shapes, not read off ``attnlab.sizing``.
"""

from __future__ import annotations

import torch

from attnlab.kv_cache import LayerCache

# Exercise 1. AttentionConfig(d_model=2048, n_heads=16, n_kv_heads=4): head_dim = 2048 / 16 = 128.
# Per token and layer the cache keeps a key and a value for each of the 4 KV heads (not the 16 query
# heads): 2 x 4 x 128 = 1,024 numbers. 24 layers, float16 = 2 bytes, 8,192 tokens, 4 sequences.
answer_cache_bytes = 2 * 4 * 128 * 24 * 2 * 8192 * 4  # 1,610,612,736 bytes = 1.5 GiB


# Exercise 2. One LayerCache for the whole loop, created before it. Step t feeds only token t,
# x[:, t:t+1] of shape (batch, 1, d_model); inside forward, the layer projects q, k, v of that token,
# rotates them at position cache.seq_len = t, appends k and v to the cache and attends over all t + 1
# cached keys; it returns an AttentionOutput, whose .output is the (batch, 1, d_model) tensor. Causality
# makes each step's output the same as row t of the full forward.
def answer_decode_loop(layer, x: torch.Tensor) -> torch.Tensor:
    """(batch, seq, d_model) -> (batch, seq, d_model), one token per call through a LayerCache."""
    cache = LayerCache()
    outputs = []
    for t in range(x.shape[1]):
        outputs.append(layer(x[:, t : t + 1], cache=cache).output)  # (batch, 1, d_model)
    return torch.cat(outputs, dim=1)


# Exercise 3. Llama-3-8B (https://huggingface.co/meta-llama/Meta-Llama-3-8B): 32 layers, 8 KV heads,
# head_dim 4096 / 32 = 128, 8.03e9 parameters. In bfloat16 (2 bytes) one token of cache is
# 2 x 8 x 128 x 32 x 2 = 131,072 bytes, and the weights take 8.03e9 x 2 = 16.06e9 bytes.
# 24 GiB = 24 x 2^30 = 25,769,803,776 bytes; what the weights leave, divided by the bytes per token:
answer_tokens_in_24gib = (24 * 2**30 - 8_030_000_000 * 2) // (2 * 8 * 128 * 32 * 2)  # 74,079 tokens

# Exercise 4 (predict). Without a cache, step t runs the layer on all t tokens so far, and W^K projects each:
# 1 + 2 + ... + 100 = 100 x 101 / 2. With a cache each token is projected once: 100.
prediction_key_rows = 100 * 101 // 2  # 5,050
