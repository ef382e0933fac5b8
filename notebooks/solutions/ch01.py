"""Worked solutions to the exercises of chapter 1, Tokenization.

Each name matches an answer cell of ``notebooks/01_tokenization.ipynb``; for example
``print(ch01.check_merge(answer_merge))`` passes with the function below.
"""

from __future__ import annotations

import math
from itertools import pairwise

from attnlab import corpus, tokenization


def answer_pair_counts(ids: list[int]) -> dict[tuple[int, int], int]:
    """Exercise 1: count every adjacent pair. ``pairwise(ids)`` walks the pairs, overlaps included:
    ``[7, 7, 7]`` has two, at positions (0, 1) and (1, 2)."""
    counts: dict[tuple[int, int], int] = {}
    for pair in pairwise(ids):
        counts[pair] = counts.get(pair, 0) + 1
    return counts


def answer_merge(ids: list[int], pair: tuple[int, int], new_id: int) -> list[int]:
    """Exercise 2: replace each occurrence of ``pair`` by ``new_id``, left to right. After a match, jump
    two places, so ``[7, 7, 7]`` with pair ``(7, 7)`` becomes ``[new_id, 7]``."""
    out = []
    i = 0
    while i < len(ids):
        if i + 1 < len(ids) and (ids[i], ids[i + 1]) == pair:
            out.append(new_id)
            i += 2
        else:
            out.append(ids[i])
            i += 1
    return out


def compute_bytes_per_token() -> float:
    """Exercise 3: encode the validation text with the course tokenizer; UTF-8 bytes divided by tokens."""
    text = corpus.load_text("val")
    ids = tokenization.load_tokenizer().encode(text)
    return len(text.encode("utf-8")) / len(ids)


answer_bytes_per_token = compute_bytes_per_token()

# Exercise 4 (predict). In d dimensions the cosine of two random directions is nearly normal with mean 0 and
# standard deviation 1/sqrt(d); the mean of |N(0, s^2)| is s * sqrt(2 / pi). At d = 64: sqrt(2 / (64 pi)).
prediction_mean_abs_cos = math.sqrt(2 / (math.pi * 64))  # about 0.0997
