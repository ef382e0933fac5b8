"""Checks for chapter 15, FlashAttention.

    from attnlab.exercises import ch15
    print(ch15.check_online_step(answer_online_step))       # a function (m, l, o, s, v) -> (m, l, o)
    print(ch15.check_merge(answer_merge))                   # a function (o1, lse1, o2, lse2) -> (o, lse)
    print(ch15.check_kv_bytes(answer_kv_bytes))             # an int, bytes of K and V read from HBM

Each check compares the answer with :mod:`attnlab.flash` and :mod:`attnlab.costs`: ``None`` returns a
reminder, a right answer "✓ ...", a wrong one raises ``AssertionError`` with a hint aimed at the usual slip.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from attnlab import costs
from attnlab.exercises._common import as_integer, run_check
from attnlab.flash import flash_attention, merge_partials

#: Exercise 3: one head of a causal prefill, the tiled forward with these tiles, in bfloat16.
EXERCISE_3 = {"length": 4096, "head_dim": 128, "block_q": 128, "block_k": 64, "dtype": "bfloat16"}


def _call(fn: Callable, what: str, *args: torch.Tensor):
    """Call a learner's function; any error but an AssertionError becomes a failed check naming the call."""
    try:
        return fn(*(a.clone() for a in args))
    except AssertionError:
        raise
    except Exception as err:  # a learner's bug: report it as a failed check
        shapes = ", ".join(str(tuple(a.shape)) for a in args)
        raise AssertionError(f"calling your {what} on tensors of shapes {shapes} raised "
                             f"{type(err).__name__}: {err}") from err


# ----------------------------------------------------------------------------------------------------
# exercise 1: the online-softmax update, with the output accumulator


def _reference_step(m, l, o, s, v, slip: str | None = None):  # noqa: E741 (the papers' l)
    """The right update, or one of the usual slips."""
    m_new = torch.maximum(m, s.max())
    alpha = torch.exp(m - m_new)
    if slip == "inverted":
        alpha = torch.exp(m_new - m) if torch.isfinite(m) else torch.zeros_like(m)
    p = torch.exp(s - m_new)
    l_new = (l if slip == "no_rescale_l" else alpha * l) + p.sum()
    o_new = (o if slip == "no_rescale_o" else alpha * o) + p @ v
    return m_new, l_new, o_new


def _run_row(step: Callable, s: torch.Tensor, v: torch.Tensor, block: int, what: str):
    """Fold the row's scores s (n,) and values v (n, d_v) into (m, l, o) block by block with ``step``."""
    m = torch.tensor(float("-inf"), dtype=s.dtype)
    l = torch.tensor(0.0, dtype=s.dtype)  # noqa: E741
    o = torch.zeros(v.shape[1], dtype=s.dtype)
    for start in range(0, s.shape[0], block):
        out = _call(step, what, m, l, o, s[start:start + block], v[start:start + block])
        assert isinstance(out, tuple) and len(out) == 3, (
            f"return the new state as a tuple (m, l, o), got {type(out).__name__}")
        m, l, o = (torch.as_tensor(x, dtype=s.dtype) for x in out)  # noqa: E741
    return m, l, o


def _rows() -> list[tuple[torch.Tensor, torch.Tensor, int]]:
    """Rows whose maximum moves up from block to block (so every rescaling matters), float64."""
    g = torch.Generator().manual_seed(15)
    cases = []
    for n, d_v, block in [(12, 3, 4), (9, 2, 2), (7, 4, 3)]:
        s = torch.randn(n, generator=g, dtype=torch.float64) + torch.linspace(0, 6, n, dtype=torch.float64)
        cases.append((s, torch.randn(n, d_v, generator=g, dtype=torch.float64), block))
    return cases


def check_online_step(answer: object) -> str:
    """Exercise 1: a function ``(m, l, o, s, v) -> (m_new, l_new, o_new)`` that folds one block of scores s (B,)
    and its values v (B, d_v) into the running max m, running sum l and unnormalised output o (d_v,) of one
    query row (FlashAttention, Algorithm 1, lines 10-12). Run over rows block by block, o / l must be
    softmax(s) v and l the sum of exp(s - m)."""

    def check(fn: object) -> str:
        assert callable(fn), f"answer should be a function (m, l, o, s, v) -> (m, l, o), got {type(fn).__name__}"
        for s, v, block in _rows():
            m, l, o = _run_row(fn, s, v, block, "online_step")  # noqa: E741
            assert tuple(o.shape) == (v.shape[1],), f"o should keep the shape (d_v,) = ({v.shape[1]},)"
            want = torch.softmax(s, dim=0) @ v
            if torch.allclose(o / l, want, atol=1e-10) and math.isclose(float(m), float(s.max())):
                continue
            if torch.allclose(o, want, atol=1e-10):
                raise AssertionError("o came out normalised: keep o unnormalised (o_new = alpha o + p v) and divide "
                                     "by l once, after the last block (FlashAttention-2's deferred normalisation)")
            for slip, hint in (
                ("no_rescale_l", "l is not rescaled: when the maximum moves, the old sum was taken against the old "
                                 "maximum, so l_new = exp(m - m_new) l + sum exp(s - m_new)"),
                ("no_rescale_o", "o is not rescaled: the accumulated output was weighted against the old maximum "
                                 "too, so o_new = exp(m - m_new) o + exp(s - m_new) v"),
                ("inverted", "the rescaling is upside down: the factor is exp(m_old - m_new) <= 1, not "
                             "exp(m_new - m_old)"),
            ):
                got = _run_row(lambda *a, slip=slip: _reference_step(*a, slip=slip), s, v, block, "")
                if torch.allclose(o, got[2], atol=1e-10, equal_nan=True) and torch.allclose(l, got[1], atol=1e-10):
                    raise AssertionError(hint)
            assert math.isclose(float(m), float(s.max()), rel_tol=1e-12), (
                f"after the last block m should be the row's maximum {float(s.max()):.4f}, got {float(m):.4f}: "
                "m_new = max(m, max_j s_j)")
            raise AssertionError("not yet: o / l differs from softmax(s) v; check p = exp(s - m_new) and that both "
                                 "l and o are multiplied by exp(m - m_new) before the new block is added")
        return ("o / l equals softmax(s) v on every test row, though no step saw more than one block of "
                "scores")

    return run_check("online softmax step", answer, check)


# ----------------------------------------------------------------------------------------------------
# exercise 2: merge two partial results


def _partials(seed: int = 16) -> list[tuple]:
    """Two chunks of keys attended separately by :func:`attnlab.flash.flash_attention`, and the whole."""
    g = torch.Generator().manual_seed(seed)
    cases = []
    for n_q, n_k, cut, d in [(1, 20, 7, 4), (3, 16, 12, 5), (2, 9, 1, 3)]:
        q = torch.randn(1, 1, n_q, d, generator=g, dtype=torch.float64) * 2
        k = torch.randn(1, 1, n_k, d, generator=g, dtype=torch.float64) * 2
        v = torch.randn(1, 1, n_k, d, generator=g, dtype=torch.float64)
        (o1, l1), (o2, l2) = (flash_attention(q, k[..., a:z, :], v[..., a:z, :]) for a, z in ((0, cut), (cut, n_k)))
        whole = flash_attention(q, k, v)
        cases.append(((o1[0, 0], l1[0, 0], o2[0, 0], l2[0, 0]), (whole[0][0, 0], whole[1][0, 0])))
    return cases


def check_merge(answer: object) -> str:
    """Exercise 2: a function ``(o1, lse1, o2, lse2) -> (o, lse)`` that merges attention over two disjoint sets
    of keys, o_c (n_q, d_v) and lse_c (n_q,), into attention over all of them (what
    :func:`attnlab.flash.merge_partials` does for any number of chunks)."""

    def check(fn: object) -> str:
        assert callable(fn), f"answer should be a function (o1, lse1, o2, lse2) -> (o, lse), got {type(fn).__name__}"
        for (o1, l1, o2, l2), (want_o, want_lse) in _partials():
            out = _call(fn, "merge", o1, l1, o2, l2)
            assert isinstance(out, tuple) and len(out) == 2, f"return (o, lse), got {type(out).__name__}"
            o, lse = (torch.as_tensor(x, dtype=torch.float64) for x in out)
            assert tuple(o.shape) == tuple(want_o.shape), (
                f"o should have the partial outputs' shape {tuple(want_o.shape)}, got {tuple(o.shape)}")
            if torch.allclose(o, (o1 + o2) / 2, atol=1e-10) and not torch.allclose(o, want_o, atol=1e-10):
                raise AssertionError("a plain average gives both chunks the same weight; chunk c should weigh "
                                     "exp(lse_c - lse), its share of the softmax's denominator")
            w1 = torch.exp(l1).unsqueeze(-1)
            w2 = torch.exp(l2).unsqueeze(-1)
            if torch.allclose(o, w1 * o1 + w2 * o2, atol=1e-10):
                raise AssertionError("the weights exp(lse_c) are not normalised: divide by exp(lse1) + exp(lse2), "
                                     "i.e. use exp(lse_c - lse) with lse = log(exp(lse1) + exp(lse2))")
            assert torch.allclose(o, want_o, atol=1e-10), (
                "not yet: o should be exp(lse1 - lse) o1 + exp(lse2 - lse) o2 with lse = logaddexp(lse1, lse2)")
            if torch.allclose(lse, torch.maximum(l1, l2), atol=1e-10):
                raise AssertionError("the merged lse is not the larger of the two: it is log(exp(lse1) + "
                                     "exp(lse2)), torch.logaddexp(lse1, lse2)")
            if torch.allclose(lse, l1 + l2, atol=1e-10):
                raise AssertionError("lse1 + lse2 multiplies the two denominators; they add: "
                                     "lse = log(exp(lse1) + exp(lse2))")
            assert torch.allclose(lse, want_lse, atol=1e-10), "the output is right; lse should be logaddexp(lse1, lse2)"
            ref_o, _ = merge_partials([o1, o2], [l1, l2])
            assert torch.allclose(ref_o, want_o, atol=1e-12)
        return ("the merged output and log-sum-exp equal attention over all the keys, the merge FlashDecoding and "
                "FlashMLA use")

    return run_check("merge", answer, check)


# ----------------------------------------------------------------------------------------------------
# exercise 3: predict, then run: K and V bytes the causal tiled forward reads


def expected_kv_bytes() -> int:
    """:func:`attnlab.costs.flash_attention_hbm_bytes`'s "read K, V" for :data:`EXERCISE_3`, causal."""
    e = EXERCISE_3
    return costs.flash_attention_hbm_bytes(e["length"], e["length"], e["head_dim"], e["block_q"], e["block_k"],
                                           e["dtype"], causal=True)["read K, V"]


def check_kv_bytes(answer: object) -> str:
    """Exercise 3: bytes of K and V the causal tiled forward reads from HBM for one head of
    ``EXERCISE_3["length"]`` tokens (an int)."""
    e = EXERCISE_3
    n, d, b_r, b = e["length"], e["head_dim"], e["block_q"], 2
    expected = expected_kv_bytes()

    def check(a: object) -> str:
        value = as_integer(a, "the number of bytes")
        full = costs.flash_attention_hbm_bytes(n, n, d, b_r, e["block_k"], e["dtype"])["read K, V"]
        assert value != full, (
            f"{full:,} is the count without the causal mask: query block i loads only the keys up to its last "
            "query, so later key blocks are skipped")
        assert value != expected // 2, "that counts K only: V is streamed alongside it, d_v = d more per key row"
        assert value != expected * 2, "bfloat16 has 2 bytes per element, not 4"
        assert value != n * n * b, "that is one n x n score matrix in bfloat16, what the tiled form never writes"
        assert value != (n // b_r) * n * d * b, "that is K alone, without the causal skip; count V too and skip"
        assert value == expected, (
            f"not yet: sum over the {n // b_r} query blocks of the key rows each loads (whole B_c blocks up to its "
            "last query), times (d + d_v) x 2 bytes")
        return (f"{expected:,} bytes, against {full:,} without the mask and "
                f"{costs.standard_attention_hbm_bytes(n, n, d, e['dtype'])['total']:,} for the whole standard form")

    return run_check("K and V bytes", answer, check)
