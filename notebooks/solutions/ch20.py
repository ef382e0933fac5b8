"""Worked solutions to the exercises of chapter 20, DeepSeek-V4's compressed sparse attention.

Each name matches an answer cell in ``notebooks/20_deepseek_v4.ipynb``; for example
``print(ch20.check_visible_entries(answer_csa_entries, answer_hca_entries))`` passes with the values below.
The numbers are worked by hand from the exercise's data, not read off ``attnlab.v4``.
"""

from __future__ import annotations

# Exercise 1. Entry w of a layer with compression rate m is complete once its last token, m w + m - 1, has
# arrived, so the query at position t may use w < (t + 1) // m. CSA, m = 4, t = 39: token 39 completes window 9
# (tokens 36..39), so entries 0..9: (39 + 1) // 4 = 10. HCA, m = 128, t = 255: token 255 completes block 1
# (tokens 128..255), so entries 0 and 1: 256 // 128 = 2.
answer_csa_entries = (39 + 1) // 4  # 10
answer_hca_entries = (255 + 1) // 128  # 2


# Exercise 2. One V4 entry in DeepSeek's FP8 layout: 448 values in e4m3 (1 B each), the 64 RoPE values in
# bfloat16 (2 B each), one ue8m0 scale byte per 64 FP8 values (448 / 64 = 7) and one pad byte:
# 448 + 128 + 7 + 1 = 584 bytes. A CSA layer keeps one entry and one FP4 index key (128 values x 4 bit = 64 B,
# plus 128 / 32 = 4 scale bytes = 68 B) per 4 tokens: (584 + 68) / 4 = 163 bytes per token.
answer_entry_bytes = 448 * 1 + 64 * 2 + 448 // 64 + 1  # 584
answer_csa_bytes_per_token = (answer_entry_bytes + 128 // 2 + 128 // 32) / 4  # 163.0


# Exercise 3. After 14 tokens with m = 4: windows 0..2 (tokens 0..11) are complete, 3 entries (entry 0 too:
# it has no window before it, its first-half slots simply get weight 0). The window keeps the last 6 raw
# tokens (8..13). Tokens 12 and 13 wait in the unfinished window: 2 (the first halves of tokens 8..11 are
# kept apart, for entry 3).
answer_entries = 14 // 4  # 3
answer_window = min(6, 14)  # 6
answer_pending = 14 % 4  # 2
