"""Worked solutions to the exercises of chapter 0, Introduction and map of the course.

Each name matches an answer cell in ``notebooks/00_introduction.ipynb``; for example
``print(ch00.check_mla_cache_gib(answer_mla_cache_gib))`` passes with the value below.
The answers are worked by hand from the published configs, not read off ``attnlab.sizing``.
"""

from __future__ import annotations

# Exercise 1 (predict). Llama-3-8B's config.json (https://huggingface.co/meta-llama/Meta-Llama-3-8B):
# num_hidden_layers 32, num_key_value_heads 8, hidden_size 4096 over 32 heads = head_dim 128; 8.03e9
# parameters. One token: 2 x 8 x 128 x 32 x 2 bytes = 131,072 bytes; the weights: 8.03e9 x 2 bytes. The
# cache catches up after 16.06e9 / 131,072 tokens.
prediction_cache_meets_weights = 8_030_000_000 * 2 / (2 * 8 * 128 * 32 * 2)  # about 122,500 tokens

# Exercise 2. MLA caches d_c + d_h^R = 512 + 64 = 576 numbers per token and layer (the latent c^KV and
# the decoupled RoPE key k^R); DeepSeek-V3 has 61 layers; 128K tokens = 131,072; bfloat16 = 2 bytes.
answer_mla_cache_gib = (512 + 64) * 61 * 131_072 * 2 / 2**30  # 8.578125 GiB
