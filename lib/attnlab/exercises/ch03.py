"""Checks for chapter 3, Attention in matrix form.

    from attnlab.exercises import ch03
    print(ch03.check_causal_mask(answer_causal_mask))  # a function n -> bool (n, n), True = may attend
    print(ch03.check_split_heads(answer_split_heads))  # a function (x, n_heads) -> (b, n_heads, s, d_h)
    print(ch03.check_score_gib(answer_score_gib))      # a float, GiB

Each check compares the answer with :mod:`attnlab.attention` (or the layout of
:meth:`attnlab.gqa.GroupedQueryAttention.project`): ``None`` returns a reminder, a right answer "✓ ...",
a wrong one raises ``AssertionError`` with a hint aimed at the usual slip.
"""

from __future__ import annotations

import math
import numbers

import torch

from attnlab.attention import causal_mask
from attnlab.devices import dtype_bytes
from attnlab.exercises._common import run_check

#: Exercise 3's model: query heads of one layer, sequence length, and the dtype of the stored scores.
SCORE_HEADS = 32
SCORE_SEQ_LEN = 64 * 1024
SCORE_DTYPE = torch.float32

GIB = 2**30


def _call(fn, *args):
    """Call the learner's function; report an exception as a failed check naming the input."""
    try:
        return fn(*args)
    except Exception as err:
        shown = ", ".join(f"tensor of shape {tuple(a.shape)}" if torch.is_tensor(a) else repr(a) for a in args)
        raise AssertionError(f"calling your function on ({shown}) raised {type(err).__name__}: {err}") from err


def check_causal_mask(answer: object) -> str:
    """Exercise 1: a function ``n -> (n, n)`` boolean mask, True where query i may attend to key j (j <= i)."""

    def check(fn: object) -> str:
        assert callable(fn), f"answer should be a function n -> mask, got {type(fn).__name__}"
        sizes = [1, 2, 3, 5, 8, 16]
        for n in sizes:
            got = _call(fn, n)
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
