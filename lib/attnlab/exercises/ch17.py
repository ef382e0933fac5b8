"""Checks for chapter 17, sliding windows, sinks and shared KV.

    from attnlab.exercises import ch17
    print(ch17.check_ring_slot(answer_ring_slot))            # a function (t, window, n_sinks) -> slot
    print(ch17.check_sink_softmax(answer_sink_softmax))      # a function (scores, sink) -> weights
    print(ch17.check_gpt_oss_fraction(answer_gpt_oss_fraction))  # a number: predict, then run

Each check compares the answer with :mod:`attnlab.window` and :mod:`attnlab.costs`: ``None`` returns a reminder,
a right answer "✓ ...", a wrong one raises ``AssertionError`` with a hint aimed at the usual slip.
"""

from __future__ import annotations

import torch

from attnlab import costs
from attnlab.exercises._common import as_number, run_check
from attnlab.window import PATTERNS, RollingCache, ring_slot, softmax_with_sink

#: Exercise 3: gpt-oss-120b's cache at its longest context, against the same model with every layer global.
EXERCISE_3 = {"model": "gpt-oss-120b", "context": 131_072}


# ----------------------------------------------------------------------------------------------------
# exercise 1


def _slot_cases() -> list[tuple[int, int, int]]:
    """(t, W, S): sinks, the first pass through the ring, wrap-arounds, and tokens whose t mod W < S."""
    return [(0, 4, 0), (3, 4, 0), (4, 4, 0), (9, 4, 0), (1, 4, 2), (2, 4, 2), (5, 4, 2), (6, 4, 2), (8, 4, 2),
            (13, 5, 3), (8194, 4096, 4), (10_000, 4096, 4), (127, 128, 0), (128, 128, 0), (300, 128, 1)]


def check_ring_slot(answer: object) -> str:
    """Exercise 1: a function (t, window, n_sinks) -> the slot of a ring of n_sinks + window slots that token t
    is written to (tokens 0..n_sinks-1 are sinks and keep their slots)."""

    def check(f: object) -> str:
        assert callable(f), f"answer_ring_slot should be a function (t, window, n_sinks) -> slot, got {f!r}"
        for t, w, s in _slot_cases():
            got = f(t, w, s)
            expected = ring_slot(t, w, s)
            if got == expected:
                continue
            if t >= s and got == t % w:
                raise AssertionError(
                    f"token {t} with W = {w}, S = {s}: you gave t mod W = {got}, expected {expected}. The first S "
                    "slots belong to the sinks: count the window's tokens from S, S + (t − S) mod W")
            if t >= s and got == s + t % w:
                raise AssertionError(
                    f"token {t} with W = {w}, S = {s}: you gave S + t mod W = {got}, expected {expected}. Token S is "
                    "the window's first: subtract the sinks before taking the remainder, S + (t − S) mod W")
            if t < s:
                raise AssertionError(f"token {t} is a sink (t < S = {s}): it keeps slot {t}, got {got}")
            if isinstance(got, int) and not 0 <= got < s + w:
                raise AssertionError(f"slot {got} for token {t} is outside the ring's {s + w} slots (0 .. {s + w - 1})")
            raise AssertionError(f"token {t} with W = {w}, S = {s}: expected slot {expected}, got {got!r}")
        # and the slots really are a ring: replaying a sequence into a RollingCache puts each token where f says
        cache = RollingCache(3, 2)
        for t in range(9):
            cache.update(k=torch.zeros(1, 1, 1, 1))
            assert int(cache.positions[f(t, 3, 2)]) == t, f"token {t} is not in slot {f(t, 3, 2)} of a real ring"
        return (f"{len(_slot_cases())} tokens in their slots; token 10,000 with W = 4096 and 4 sinks goes to slot "
                f"{ring_slot(10_000, 4096, 4):,}, over token {10_000 - 4096:,}, which no later query sees")

    return run_check("ring slot", answer, check)


# ----------------------------------------------------------------------------------------------------
# exercise 2


def _sink_cases() -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Random float64 (scores (b, heads, n_q, n_k), sink (heads,)), one with huge logits, one with masked keys."""
    g = torch.Generator().manual_seed(17)
    cases = []
    for b, h, q, k, scale in [(1, 3, 2, 5, 1.0), (2, 4, 3, 3, 3.0), (1, 2, 1, 6, 800.0)]:
        scores = torch.randn(b, h, q, k, generator=g, dtype=torch.float64) * scale
        sink = torch.randn(h, generator=g, dtype=torch.float64) * scale
        cases.append((scores, sink))
    masked = torch.randn(1, 2, 3, 4, generator=g, dtype=torch.float64)
    masked[..., 2:] = float("-inf")
    cases.append((masked, torch.tensor([0.5, -1.0], dtype=torch.float64)))
    return cases


def check_sink_softmax(answer: object) -> str:
    """Exercise 2: a function (scores (b, heads, n_q, n_k), sink (heads,)) -> weights of the scores' shape:
    gpt-oss's softmax with one learned sink logit per head."""

    def check(f: object) -> str:
        assert callable(f), f"answer_sink_softmax should be a function (scores, sink) -> weights, got {f!r}"
        for scores, sink in _sink_cases():
            got = f(scores.clone(), sink.clone())
            expected = softmax_with_sink(scores, sink)
            assert isinstance(got, torch.Tensor), f"return a tensor, got {type(got).__name__}"
            if got.shape[-1] == scores.shape[-1] + 1:
                raise AssertionError("the weights have one column too many: the sink joins the softmax, then its "
                                     "column is dropped (it has no value to mix)")
            assert got.shape == scores.shape, f"weights should have the scores' shape {tuple(scores.shape)}, got " \
                                              f"{tuple(got.shape)}"
            assert not torch.isnan(got).any(), (
                "NaN in the weights: with logits near 800, exp overflows; subtract the maximum over [scores, sink] "
                "before exp (the sink's logit too), as any safe softmax does")
            if torch.allclose(got, torch.softmax(scores, dim=-1), atol=1e-9) and not torch.allclose(got, expected):
                raise AssertionError(
                    "that is the plain softmax: the rows sum to 1. The sink adds exp(s) to the denominator only, so "
                    "each row sums to less than 1 (adding s to every score, or renormalising after dropping the "
                    "sink's column, cancels it)")
            swapped = softmax_with_sink(scores.transpose(-3, -1), sink).transpose(-3, -1) \
                if scores.shape[-1] == scores.shape[-3] else None
            if swapped is not None and torch.allclose(got, swapped, atol=1e-9) and not torch.allclose(got, expected):
                raise AssertionError("the sink went to the wrong axis: one logit per HEAD, shaped (1, heads, 1, 1)")
            torch.testing.assert_close(got, expected, rtol=1e-9, atol=1e-12,
                                       msg=lambda m: f"not yet: weights differ from softmax over [scores, s_h] "
                                                     f"with the sink's column dropped ({m})")
        scores, sink = _sink_cases()[0]
        share = 1 - softmax_with_sink(scores, sink).sum(-1)
        return (f"the sink takes {float(share.min()):.0%} to {float(share.max()):.0%} of each row in the first case; "
                "the rest is the plain softmax, scaled down")

    return run_check("learned sink", answer, check)


# ----------------------------------------------------------------------------------------------------
# exercise 3


def expected_gpt_oss_fraction() -> float:
    """gpt-oss-120b's cache at EXERCISE_3's context over the same model's cache with every layer global:
    (18 min(L, 128) + 18 L) / (36 L). Only the number of held tokens matters; per-token widths cancel."""
    pattern = PATTERNS[EXERCISE_3["model"]]
    shape = costs.AttentionShape(d_model=64, n_heads=1, head_dim=64, n_layers=pattern.n_layers)
    L = EXERCISE_3["context"]
    windowed = sum(costs.layer_cache_tokens(shape, L, pattern.windows()))
    return windowed / sum(costs.layer_cache_tokens(shape, L))


def check_gpt_oss_fraction(answer: object) -> str:
    """Exercise 3 (predict, then run): gpt-oss-120b's cache at 131,072 tokens as a fraction of the cache it would
    have if none of its layers slid (a number between 0 and 1)."""
    pattern = PATTERNS[EXERCISE_3["model"]]
    expected = expected_gpt_oss_fraction()
    L, W = EXERCISE_3["context"], pattern.window

    def check(a: object) -> str:
        value = as_number(a, "the fraction")
        assert 0 < value <= 1, f"a fraction of the full cache lies in (0, 1], got {value}"
        assert abs(value - W / L) > 1e-4, (
            f"{W} / {L:,} slides every layer; gpt-oss slides only the even ones (layer_types alternates), so half "
            "its layers keep every token")
        assert abs(value - 5 / 6) > 0.01 and abs(value - 1 / 6) > 0.01, (
            "that is Gemma 3's 5 local : 1 global; gpt-oss alternates 1 : 1")
        assert abs(value - expected) < 5e-3, f"not yet: count the tokens each of the {pattern.n_layers} layers holds"
        return (f"{expected:.4f}: the {pattern.n_layers // 2} global layers hold all {L:,} tokens and dominate; the "
                f"sliding ones add {W} each, so windows on half the layers save at most 2× (the cache still grows "
                "linearly with the context)")

    return run_check("gpt-oss fraction", answer, check)

