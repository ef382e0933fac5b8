"""Worked solutions to the exercises of chapter 18, linear attention and hybrids.

Each name matches an answer cell in ``notebooks/18_linear_attention_hybrids.ipynb``; for example
``print(ch18.check_state_bytes(answer_state_bytes))`` passes with the value below.
The numbers are worked by hand from the exercise's data, not read off ``attnlab.costs``.
"""

from __future__ import annotations

# Exercise 1. One Gated DeltaNet layer of Qwen3-Next-80B-A3B keeps one 128 x 128 state per value head, 32 heads,
# in float32: 32 x 128 x 128 x 4 = 2,097,152 bytes. Its short convolution (4 taps over the 8192 q, k, v channels)
# must remember the last 4 - 1 = 3 inputs of each channel, in bfloat16: 8192 x 3 x 2 = 49,152 bytes.
# Together 2,146,304 bytes (about 2.05 MiB), at any context length.
answer_state_bytes = 32 * 128 * 128 * 4 + 8192 * 3 * 2  # 2,146,304


# Exercise 2. A full layer of Qwen3-Next caches K and V for 2 KV heads of 256 numbers, in bfloat16:
# 2 x 2 x 256 x 2 = 2048 bytes per token. It holds more than the 2,146,304-byte state once
# 2048 L > 2,146,304, i.e. L > 1048.0: from L = floor(2,146,304 / 2048) + 1 = 1049 tokens on.
answer_crossover = 2_146_304 // 2048 + 1  # 1049


# Exercise 3. phi(e_1) = elu((1, 0)) + 1 = (2, 1). Linear attention adds phi(k) v^T to S and phi(k) to z at each
# write; the query reads S^T phi(q) / z^T phi(q). All three writes use the same key, so both the numerator and
# the denominator scale with the same factor phi(k)^T phi(q) = 5: the read-out is (sum of values) / (count):
# 1, (1 + 2) / 2 = 1.5, (1 + 2 + 3) / 3 = 2. The delta rule with beta = 1 and a unit key writes
# u = v - S^T k (what is missing), so S^T k becomes exactly the newest value: 1, 2, 3.
answer_overwrite = {"linear": [1.0, 1.5, 2.0], "delta": [1.0, 2.0, 3.0]}
