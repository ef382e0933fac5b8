"""Worked solutions to the exercises of chapter 19, selecting blocks instead of tokens.

Each name matches an answer cell in ``notebooks/19_block_sparse_selection.ipynb``; for example
``print(ch19.check_block_mask(answer_block_mask))`` passes with the value below.
The answers are worked by hand from the exercise's data, not read off ``attnlab.block_sparse``.
"""

from __future__ import annotations

# Exercise 1. T = 10 tokens in blocks of B = 4: blocks 0 (tokens 0-3), 1 (4-7) and 2 (8-9, partial).
# Query p may route to block j iff the block starts at or before it, j·4 <= p: its own block c(p) = p // 4
# (always routed to, read up to p) and every earlier one, never a later one.
T, B = 10, 4
answer_block_mask = [[j * B <= p for j in range(-(-T // B))] for p in range(T)]
# rows 0-3: [True, False, False]; rows 4-7: [True, True, False]; rows 8-9: [True, True, True]


# Exercise 2. The block's keys (0.5, 1, -1), (2, -0.5, 0), (-1, 0.5, 2): channel-wise min m = (-1, -0.5, -1),
# max M = (2, 1, 2). With q = (1, -2, 0.5), channel by channel the larger of q_i m_i and q_i M_i:
#   channel 0: q_0 = 1 > 0, so q_0 M_0 = 2; channel 1: q_1 = -2 < 0, so q_1 m_1 = 1; channel 2: 0.5 · 2 = 1.
# U = 2 + 1 + 1 = 4, above the block's best dot product q · (2, -0.5, 0) = 3.
answer_bound = 2.0 + 1.0 + 1.0


# Exercise 3. For one query the softmax is increasing in q · k, so the k tokens of largest score are the k of
# largest weight: no other set of k tokens, whole blocks included, holds more of that query's attention.
# Token top-k (per head) therefore holds more than MoBA, at this budget and at every other.
answer_more = "token"
answer_ever = False
