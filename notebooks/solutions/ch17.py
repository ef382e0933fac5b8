"""Worked solutions to the exercises of chapter 17, sliding windows, sinks and shared KV.

Each name matches an answer cell in ``notebooks/17_sliding_windows_and_sinks.ipynb``; for example
``print(ch17.check_ring_slot(answer_ring_slot))`` passes with the function below. They are written from the
formulas, not read off ``attnlab.window``.
"""

from __future__ import annotations

import torch


# Exercise 1. The ring has S + W slots. A sink (t < S) keeps slot t forever. The window's tokens are numbered
# from S: token S is the window's 0th, so it goes to slot S + 0, token S + W - 1 to slot S + W - 1, and token
# S + W wraps to slot S again, over token S, which the query at S + W no longer sees (it sees S + 1 .. S + W).
def answer_ring_slot(t: int, window: int, n_sinks: int) -> int:
    """Slot of token t in a ring of n_sinks sinks and a window of ``window`` slots."""
    if t < n_sinks:
        return t
    return n_sinks + (t - n_sinks) % window


# Exercise 2. Append the sink as one more "key" column, take a safe softmax over it, drop the column:
#   a_ij = exp(z_ij - m) / (exp(s_h - m) + sum_k exp(z_ik - m)),   m = max(max_k z_ik, s_h).
# The maximum includes the sink, so exp never overflows and a fully masked row gives zeros, not NaN.
def answer_sink_softmax(scores: torch.Tensor, sink: torch.Tensor) -> torch.Tensor:
    """scores (b, heads, n_q, n_k), sink (heads,) -> weights (b, heads, n_q, n_k)."""
    s = sink.view(1, -1, 1, 1).expand(*scores.shape[:-1], 1)  # one logit per head, for every query
    combined = torch.cat([scores, s], dim=-1)  # (b, heads, n_q, n_k + 1)
    combined = combined - combined.amax(dim=-1, keepdim=True)
    e = combined.exp()
    return (e / e.sum(dim=-1, keepdim=True))[..., :-1]  # the sink's share stays out of every row


# Exercise 3 (predict, then run). gpt-oss-120b has 36 layers; the even ones slide over 128 tokens, the odd ones
# see everything (config.json, layer_types). At L = 131,072 tokens, per-token widths being the same in every
# layer, the cache holds 18 x 128 + 18 x 131,072 tokens' worth against 36 x 131,072 without windows:
#   (18 * 128 + 18 * 131072) / (36 * 131072) = (128 + 131072) / (2 * 131072) = 0.50049 ...
answer_gpt_oss_fraction = (18 * 128 + 18 * 131_072) / (36 * 131_072)
