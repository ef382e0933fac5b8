"""Worked solutions to the exercises of chapter 2, Attention in vector form.

Each name matches an answer cell of ``notebooks/02_attention_vector_form.ipynb``; for example
``print(ch02.check_softmax(answer_softmax))`` passes with the function below.
"""

from __future__ import annotations

import math

import torch


def answer_softmax(scores: torch.Tensor) -> torch.Tensor:
    """Exercise 1: a_i = exp(s_i - m) / sum_j exp(s_j - m) with m = max_j s_j.

    Subtracting m multiplies numerator and denominator by the same exp(-m), so the weights do not change,
    but now every exponent is <= 0: exp never overflows, and the largest term is exactly exp(0) = 1, so
    the sum is at least 1 and never 0. A masked score of -inf gives exp(-inf) = 0, as it should."""
    shifted = scores - scores.max()  # (n,), every entry <= 0
    e = torch.exp(shifted)
    return e / e.sum()


def answer_scaled_scores(q: torch.Tensor, keys: torch.Tensor) -> torch.Tensor:
    """Exercise 2: s_i = q · k_i / sqrt(d). ``keys @ q`` is every dot product at once: (n, d) @ (d,) -> (n,)."""
    d = q.shape[0]
    return keys @ q / math.sqrt(d)


def answer_attend(q: torch.Tensor, keys: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
    """Exercise 3: o = sum_i a_i v_i with a = softmax(q · k_i / sqrt(d)), built from the two answers above.

    ``weights @ values`` is the weighted sum: (n,) @ (n, d_v) -> (d_v,)."""
    weights = answer_softmax(answer_scaled_scores(q, keys))  # (n,)
    return weights @ values  # (d_v,)


# Exercise 4 (predict). q·k sums 512 products of variance 1: its standard deviation is sqrt(512) ≈ 22.6.
# Among 16 such scores the best usually leads the runner-up by several units, and exp turns a lead of 5 into
# a factor of about 150: the largest weight is close to 1.
prediction_unscaled_max_weight = 0.9
