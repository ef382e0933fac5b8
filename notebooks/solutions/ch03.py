"""Worked solutions to the exercises of chapter 3, Attention in matrix form.

Each name matches an answer cell of ``notebooks/03_attention_matrix_form.ipynb``; for example
``print(ch03.check_causal_mask(answer_causal_mask))`` passes with the function below.
"""

from __future__ import annotations

import torch


def answer_causal_mask(n: int) -> torch.Tensor:
    """Exercise 1: True where key j is not in the future of query i, i.e. j <= i: the lower triangle,
    diagonal included (a token may look at itself)."""
    i = torch.arange(n).unsqueeze(1)  # (n, 1), query positions down the rows
    j = torch.arange(n).unsqueeze(0)  # (1, n), key positions along the columns
    return j <= i  # (n, n) by broadcasting; the same as torch.ones(n, n, dtype=torch.bool).tril()


def answer_split_heads(x: torch.Tensor, n_heads: int) -> torch.Tensor:
    """Exercise 2: (b, s, d_model) -> (b, n_heads, s, d_h), d_h = d_model / n_heads.

    First cut the last axis into (n_heads, d_h), so head h gets columns h*d_h .. (h+1)*d_h - 1 at every
    position; then swap the sequence and head axes so each head is a (s, d_h) matrix of its own."""
    b, s, d_model = x.shape
    d_h = d_model // n_heads
    return x.view(b, s, n_heads, d_h).transpose(1, 2)


# Exercise 3. One layer stores an n x n score matrix per head. With 32 heads, n = 65,536 tokens and
# float32 (4 bytes a number): 32 x 65,536^2 x 4 bytes = 32 x 2^32 x 4 = 2^39 bytes; divided by 2^30 for GiB.
answer_score_gib = 32 * 65_536**2 * 4 / 2**30  # 512.0 GiB

# Exercise 4 (predict). The last token attends to ALL earlier tokens, and softmax(q k_j) v_j summed over j
# does not depend on the order of the j: without positions, attention sees a set. The output stays.
prediction_last_output_changes = False
