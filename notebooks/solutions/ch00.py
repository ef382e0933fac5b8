"""Worked solutions to the exercises of chapter 0, Introduction and map of the course.

Each name matches an answer cell in ``notebooks/00_introduction.ipynb``; for example
``print(ch00.check_llama3_bytes_per_token(answer_llama3_bytes_per_token))`` passes with the value below.
The answers are worked by hand from the published configs, not read off ``attnlab.sizing``.
"""

from __future__ import annotations

# Exercise 1. Llama-3-8B's config.json (https://huggingface.co/meta-llama/Meta-Llama-3-8B):
# num_hidden_layers 32, num_attention_heads 32, num_key_value_heads 8, hidden_size 4096, so
# head_dim = 4096 / 32 = 128. Per token and layer the cache keeps a key and a value for each of the
# 8 KV heads (GQA): 2 x 8 x 128 = 2,048 numbers; 32 layers; 2 bytes each in bfloat16.
answer_llama3_bytes_per_token = 2 * 8 * 128 * 32 * 2  # 131,072 bytes = 128 KiB per token

# Exercise 2. MHA caches 2 n_h d_h numbers per token and layer, GQA 2 n_g d_h: the ratio is n_h / n_g.
# DeepSeek-V3's shape has n_h = 128 query heads, so 8x less than MHA needs n_g = 128 / 8 KV heads.
answer_kv_heads_for_8x = 128 // 8  # 16, and 16 divides 128, so the heads split into 16 equal groups

# Exercise 3. MLA caches d_c + d_h^R = 512 + 64 = 576 numbers per token and layer (the latent c^KV and
# the decoupled RoPE key k^R); DeepSeek-V3 has 61 layers; 128K tokens = 131,072; bfloat16 = 2 bytes.
answer_mla_cache_gib = (512 + 64) * 61 * 131_072 * 2 / 2**30  # 8.578125 GiB
