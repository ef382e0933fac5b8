"""Worked solutions to the exercises of chapter 16, the paged KV cache and prefix sharing.

Each name matches an answer cell in ``notebooks/16_paged_kv_cache.ipynb``; for example
``print(ch16.check_locate(answer_locate))`` passes with the value below.
The numbers are worked by hand from the exercise's data, not read off ``attnlab.paged``.
"""

from __future__ import annotations

# Exercise 1. Pages of B = 16 slots; the block table is (7, 3, 9, 4). Token 37 is in logical block
# 37 // 16 = 2 (block 0 holds positions 0-15, block 1 16-31, block 2 32-47), at slot 37 mod 16 = 5.
# The table maps logical block 2 to physical page table[2] = 9.
block_table, B, p = (7, 3, 9, 4), 16, 37
answer_locate = (block_table[p // B], p % B)  # (9, 5)


# Exercise 2. The finished request holds 1000 + 300 = 1300 tokens. Pages are allocated one at a time, when
# the last is full, so it holds ceil(1300 / 16) = 82 pages = 1312 slots, and 1312 - 1300 = 12 are empty.
# (A contiguous cache reserved at 4096 tokens would leave 4096 - 1300 = 2796 slots empty.)
answer_pages = -(-1300 // 16)  # 82
answer_waste = answer_pages * 16 - 1300  # 12


# Exercise 3. The 40-token prompt fills pages 0 and 1 (32 tokens) and 8 slots of a third page. Forking twice
# shares all three (count 3); freeing the prompt's own sequence leaves count 2. The first fork writes into the
# shared third page: it copies it (1 copy) and writes its 10 tokens: 8 + 10 = 18 tokens after the two full
# pages, ceil(18 / 16) = 2 pages of its own. The second fork now holds the old third page alone (count 1):
# it writes in place, no copy, and also needs 2 pages. In use: 2 shared + 2 + 2 = 6 pages, 1 copy
# (without sharing: 2 x ceil(50 / 16) = 8 pages).
answer_fork_pages = 2 + 2 * -(-(8 + 10) // 16)  # 6
answer_fork_copies = 1
