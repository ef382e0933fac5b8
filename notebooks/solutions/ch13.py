"""Worked solutions to the exercises of chapter 13, Fact-check.

Each name matches an answer cell in ``notebooks/13_fact_check.ipynb``; for example
``print(ch13.check_cache_numbers(answer_cache_numbers))`` passes with the function below.
"""

from __future__ import annotations

import math


# Exercise 1. Read the fields the way the model code does. MLA (kv_lora_rank set) caches the latent and the
# shared RoPE key, d_c + d_h^R. Otherwise every KV head caches a key and a value of head_dim numbers: the
# explicit head_dim when the config has one (Gemma-2: 256, not 3584 / 16 = 224), else hidden_size / heads;
# multi_query (Falcon) means one KV head; without num_key_value_heads every query head has its own (MHA).
def answer_cache_numbers(config: dict) -> int:
    """config.json fields -> numbers per token in one full-attention layer's cache."""
    if config.get("kv_lora_rank"):
        return config["kv_lora_rank"] + config["qk_rope_head_dim"]
    heads = config["num_attention_heads"]
    n_kv = 1 if config.get("multi_query") else config.get("num_key_value_heads", heads)
    head_dim = config.get("head_dim") or config["hidden_size"] // heads
    return 2 * n_kv * head_dim


# Exercise 2 (predict). Naive mode: 128 heads x (128 + 64 key + 128 value) = 40,960 numbers per token and layer,
# against MLA's 512 + 64 = 576: about 71x (the "57x" compares with 128-wide MHA keys, 128 x 256 = 32,768).
prediction_naive_cache = 128 * (128 + 64 + 128) / (512 + 64)  # 71.1

# Exercise 3. Weights: 671e9 parameters x 2 bytes. Cache: 32 sequences x 131,072 tokens x (512 + 64) x 61 x 2.
weights = 671_000_000_000 * 2
cache = 32 * 131_072 * (512 + 64) * 61 * 2
answer_gpus_needed = math.ceil((weights + cache) / (80 * 2**30))  # 20
