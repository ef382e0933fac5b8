"""Checks for chapter 3, Attention in matrix form.

    from attnlab.exercises import ch03
    print(ch03.check_causal_mask(answer_causal_mask))  # a function n -> bool (n, n), True = may attend
    print(ch03.check_split_heads(answer_split_heads))  # a function (x, n_heads) -> (b, n_heads, s, d_h)
    print(ch03.check_score_gib(answer_score_gib))      # a float, GiB
    print(ch03.check_prediction_shuffled_past(prediction_last_output_changes))  # predict, then run: a bool

Each check compares the answer with :mod:`attnlab.attention` (or the layout of
:meth:`attnlab.gqa.GroupedQueryAttention.project`): ``None`` returns a reminder, a right answer "✓ ...",
a wrong one raises ``AssertionError`` with a hint aimed at the usual slip. Exercise 1 must not call
:func:`attnlab.attention.causal_mask`.
"""

from __future__ import annotations

import math
import numbers

import torch

from attnlab import attention
from attnlab.attention import attention_matrix, causal_mask
from attnlab.devices import dtype_bytes
from attnlab.exercises._common import Shortcut, call_answer, run_check, run_prediction

#: Exercise 1 writes the mask, so it may not ask the library for it.
CAUSAL_MASK_SHORTCUT = Shortcut("attnlab.attention.causal_mask", (attention.causal_mask,),
                                "compare the query positions with the key positions yourself (j <= i)")

#: Exercise 3's model: query heads of one layer, sequence length, and the dtype of the stored scores.
SCORE_HEADS = 32
SCORE_SEQ_LEN = 64 * 1024
SCORE_DTYPE = torch.float32

GIB = 2**30


def _call(fn, *args, shortcuts=()):
    """Call the learner's function; report an exception or a forbidden shortcut as a failed check."""
    return call_answer(fn, *args, shortcuts=shortcuts)


def check_causal_mask(answer: object) -> str:
    """Exercise 1: a function ``n -> (n, n)`` boolean mask, True where query i may attend to key j (j <= i)."""

    def check(fn: object) -> str:
        assert callable(fn), f"answer should be a function n -> mask, got {type(fn).__name__}"
        sizes = [1, 2, 3, 5, 8, 16]
        for n in sizes:
            got = _call(fn, n, shortcuts=[CAUSAL_MASK_SHORTCUT])
            want = causal_mask(n, n)
            assert torch.is_tensor(got), f"for n={n} expected a torch.Tensor, got {type(got).__name__}"
            assert got.shape == (n, n), f"for n={n} expected shape ({n}, {n}), got {tuple(got.shape)}"
            if got.dtype != torch.bool:
                raise AssertionError(
                    f"for n={n} your mask has dtype {got.dtype}; return booleans (True = may attend). "
                    "The -inf comes later, from scores.masked_fill(~mask, float('-inf'))"
                )
            if n > 1 and torch.equal(got, want.T):
                raise AssertionError("row i is query i and column j key j: your mask lets query 0 see every key, "
                                     "the future included. Keep j <= i (the lower triangle)")
            if torch.equal(got, want & ~torch.eye(n, dtype=torch.bool)):
                raise AssertionError("a token may attend to itself: include the diagonal (j <= i, not j < i)")
            assert torch.equal(got, want), f"for n={n} you returned\n{got.int()}\nexpected\n{want.int()}"
        return f"equals attnlab.attention.causal_mask(n, n) for n in {sizes}"

    return run_check("causal mask", answer, check)


def check_split_heads(answer: object) -> str:
    """Exercise 2: split x (b, s, d_model) into heads (b, n_heads, s, d_model / n_heads); head h is
    columns h*d_h .. (h+1)*d_h - 1 of x, the layout of ``GroupedQueryAttention.project``."""

    def check(fn: object) -> str:
        assert callable(fn), f"answer should be a function (x, n_heads) -> heads, got {type(fn).__name__}"
        gen = torch.Generator().manual_seed(5)
        shapes = [(1, 3, 4, 2), (2, 5, 12, 3), (3, 7, 128, 8), (1, 1, 8, 8), (2, 4, 6, 1)]
        for b, s, d_model, n_heads in shapes:
            x = torch.randn(b, s, d_model, generator=gen)
            d_h = d_model // n_heads
            want = x.view(b, s, n_heads, d_h).transpose(1, 2)  # (b, n_heads, s, d_h)
            got = _call(fn, x.clone(), n_heads)
            assert torch.is_tensor(got), f"expected a torch.Tensor, got {type(got).__name__}"
            if got.shape == (b, s, n_heads, d_h) and (s, n_heads) != (n_heads, s):
                raise AssertionError("the heads axis goes before the sequence axis: (b, n_heads, s, d_h); "
                                     "add .transpose(1, 2)")
            assert got.shape == want.shape, (
                f"for x of shape {(b, s, d_model)} and n_heads={n_heads} expected shape {tuple(want.shape)}, "
                f"got {tuple(got.shape)}"
            )
            if s > 1 and n_heads > 1 and torch.equal(got, x.reshape(b, n_heads, s, d_h)):
                raise AssertionError(
                    "a reshape straight to (b, n_heads, s, d_h) mixes positions into heads: view x as "
                    "(b, s, n_heads, d_h) first, so head h keeps columns h·d_h..(h+1)·d_h-1, then transpose(1, 2)"
                )
            assert torch.equal(got, want), (
                f"for x of shape {(b, s, d_model)} and n_heads={n_heads} head h should hold columns "
                "h·d_h..(h+1)·d_h-1 of x at every position"
            )
        return f"matches the (b, n_heads, s, d_h) layout of GroupedQueryAttention.project on {len(shapes)} shapes"

    return run_check("split into heads", answer, check)


def expected_score_gib() -> float:
    """GiB of one layer's attention scores: n_heads x n x n numbers of SCORE_DTYPE's size."""
    return SCORE_HEADS * SCORE_SEQ_LEN**2 * dtype_bytes(SCORE_DTYPE) / GIB


def check_score_gib(answer: object) -> str:
    """Exercise 3: GiB that the score matrices of one layer take: SCORE_HEADS heads, each n x n, n =
    SCORE_SEQ_LEN, SCORE_DTYPE numbers (4 bytes for float32)."""
    expected = expected_score_gib()
    size = dtype_bytes(SCORE_DTYPE)

    def check(value: object) -> str:
        assert isinstance(value, numbers.Real) and not isinstance(value, bool), (
            f"answer should be a number of GiB, got {type(value).__name__} {value!r}"
        )
        value = float(value)
        close = lambda x: math.isclose(value, x, rel_tol=1e-3)
        assert not close(expected / SCORE_HEADS), f"that is one head; the layer has {SCORE_HEADS}"
        assert not close(expected / size), f"that counts numbers, not bytes: each takes {size} bytes"
        assert not close(expected * GIB / 1e9), "that is in GB (10^9 bytes); divide bytes by 2^30 for GiB"
        assert not close(expected / 2), f"that is 2 bytes a number; the scores are {SCORE_DTYPE}, {size} bytes"
        assert close(expected), "not yet: n_heads × n × n × bytes per number, then divide by 2^30"
        return (f"{expected:,.0f} GiB = {SCORE_HEADS} × {SCORE_SEQ_LEN:,}² × {size} B / 2^30, the scores "
                "of a single layer, before any weights or cache")

    return run_check("score matrix GiB", answer, check)


# ----------------------------------------------------------------------------------------------------
# exercise 4: predict, then run

#: Exercise 4's experiment: one head of causal attention without positions, on random projections.
SHUFFLE_EXPERIMENT = {"seq": 8, "d_model": 16, "seed": 3}


def shuffled_past_changes() -> dict[str, float]:
    """Largest change of the LAST token's output, and of token 1's, when tokens 0 .. n-2 are shuffled (a
    fixed permutation that moves token 0) under causal attention with no positional information."""
    e = SHUFFLE_EXPERIMENT
    gen = torch.Generator().manual_seed(e["seed"])
    n, d = e["seq"], e["d_model"]
    x = torch.randn(n, d, generator=gen, dtype=torch.float64)
    w_q, w_k, w_v = (torch.randn(d, d, generator=gen, dtype=torch.float64) / math.sqrt(d) for _ in range(3))
    order = torch.cat([torch.arange(n - 1).roll(1), torch.tensor([n - 1])])  # past rotated, last token kept

    def outputs(tokens: torch.Tensor) -> torch.Tensor:
        return attention_matrix(tokens @ w_q, tokens @ w_k, tokens @ w_v, causal=True)[0]  # (n, d)

    before, after = outputs(x), outputs(x[order])
    return {"last": float((after[-1] - before[-1]).abs().max()),
            "token_1": float((after[1] - before[1]).abs().max()),
            "size": float(before[-1].abs().max())}


def check_prediction_shuffled_past(prediction: object) -> str:
    """Exercise 4, predict then run: causal attention with no positional encoding; shuffle tokens 0 .. n-2
    and keep the last token in place. Does the last token's output change? (True or False.)"""

    def judge(guess: object) -> tuple[bool, str]:
        assert isinstance(guess, bool), f"answer True (it changes) or False (it stays), got {guess!r}"
        m = shuffled_past_changes()
        changes = m["last"] > 1e-9 * m["size"]
        return guess == changes, (
            f"The last token's output moved by at most {m['last']:.1e} (its entries are of size "
            f"{m['size']:.2f}): the same. It attends to every earlier token, and a weighted sum over a set does "
            f"not care about the set's order; the mask only decides WHICH tokens are in it. Token 1's output, "
            f"whose set did change, moved by {m['token_1']:.2f}. Without positional information attention sees "
            "a bag of words: word order must be put in, which RoPE does (chapter 9 looks at it closely)."
        )

    return run_prediction("shuffled past, last token", prediction, judge)
