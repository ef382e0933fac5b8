"""Worked solutions to the exercises of chapter 13, Fact-check.

Each name matches an answer cell in ``notebooks/13_fact_check.ipynb``; for example
``print(ch13.check_llama3_70b_bytes(answer_llama3_70b_bytes))`` passes with the value below.
"""

from __future__ import annotations

import math

# Exercise 1. Llama-3-70B's config.json: num_hidden_layers 80, num_key_value_heads 8, hidden_size 8192 over
# 64 heads = head_dim 128. A key and a value per KV head, 2 bytes each in bfloat16.
answer_llama3_70b_bytes = 2 * 8 * 128 * 80 * 2  # 327,680 bytes, about 328 kB per token

# Exercise 2. Gemma-2-9B's config.json sets head_dim 256 (hidden_size 3584 / 16 heads would give 224):
# 42 layers, 8 KV heads.
answer_gemma2_bytes = 2 * 8 * 256 * 42 * 2  # 344,064 bytes

# Exercise 3. Weights: 671e9 parameters x 2 bytes. Cache: 32 sequences x 131,072 tokens x (512 + 64) x 61 x 2.
weights = 671_000_000_000 * 2
cache = 32 * 131_072 * (512 + 64) * 61 * 2
answer_gpus_needed = math.ceil((weights + cache) / (80 * 2**30))  # 20
