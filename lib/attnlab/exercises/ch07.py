"""Checks for chapter 7, Multi-head latent attention.

    from attnlab.exercises import ch07
    print(ch07.check_v2_bytes_per_token(answer_v2_bytes_per_token))  # an int, bytes
    print(ch07.check_gqa_groups(answer_gqa_groups))                  # a number, KV groups
    print(ch07.check_lowrank_error(answer_lowrank_error))            # a function (matrix, r) -> float

Each check compares the answer with :mod:`attnlab.sizing` or :mod:`attnlab.lowrank`: ``None`` returns a
reminder, a right answer "✓ ...", a wrong one raises ``AssertionError`` with a hint aimed at the usual slip.
"""

from __future__ import annotations

import math

import torch

from attnlab import lowrank, sizing
from attnlab.exercises._common import as_number, run_check


def check_v2_bytes_per_token(answer: object) -> str:
    """Exercise 1: bytes one token adds to DeepSeek-V2's MLA cache in bfloat16, all layers.

    Expected (d_c + d_h^R) x l x 2 bytes = (512 + 64) x 60 x 2, from its config.json.
    """
    spec = sizing.MODELS["deepseek-v2"]
    expected = sizing.cache_bytes_per_token(spec, "bfloat16")
    d_c, d_h_rope = sizing.mla_dims(spec)

    def check(a: object) -> str:
        value = as_number(a, "bytes per token")
        assert value != d_c * spec.n_layers * 2, (
            "that is the latent alone: MLA also caches the decoupled RoPE key k^R (d_h^R numbers) per token and layer"
        )
        assert value != expected * spec.n_heads, (
            f"the latent is shared by all {spec.n_heads} heads: it is cached once per token and layer, not per head"
        )
        assert value != 2 * expected, (
            "the latent already serves both K and V: there is no separate key and value to count twice"
            " (or you used 4 bytes a number; bfloat16 takes 2)"
        )
        assert value != expected // spec.n_layers, f"that is one layer; DeepSeek-V2 has {spec.n_layers}"
        assert value != expected // 2, "that counts numbers, not bytes: bfloat16 takes 2 bytes a number"
        assert value == expected, "not yet: (d_c + d_h^R) x layers x 2 bytes"
        return f"{expected:,} bytes per token = ({d_c} + {d_h_rope}) × {spec.n_layers} × 2"

    return run_check("DeepSeek-V2 bytes per token", answer, check)


def check_gqa_groups(answer: object) -> str:
    """Exercise 2: how many K/V groups n_g would GQA need to cache as much per token as DeepSeek-V3's MLA?

    Expected n_g with 2 n_g d_h = d_c + d_h^R, i.e. (512 + 64) / (2 x 128) = 2.25 (DeepSeek-V2 paper, Table 1).
    """
    spec = sizing.MODELS["deepseek-v3"]
    d_c, d_h_rope = sizing.mla_dims(spec)
    expected = (d_c + d_h_rope) / (2 * spec.head_dim)

    def check(a: object) -> str:
        value = as_number(a, "the number of groups")
        assert not math.isclose(value, d_c / (2 * spec.head_dim)), (
            "that leaves out the RoPE key: MLA caches d_c + d_h^R numbers per token and layer"
        )
        assert not math.isclose(value, (d_c + d_h_rope) / spec.head_dim), (
            "GQA caches a key AND a value per group: 2 n_g d_h numbers, so divide by 2 d_h"
        )
        assert not math.isclose(value, spec.n_heads / expected), (
            "that is how many times smaller than MHA; the question asks for the GQA group count n_g"
        )
        assert math.isclose(value, expected, rel_tol=1e-9), "not yet: solve 2 n_g d_h = d_c + d_h^R for n_g"
        return (f"n_g = ({d_c} + {d_h_rope}) / (2 × {spec.head_dim}) = {expected:g}: "
                "the paper's \u201cGQA with only 2.25 groups\u201d, not a whole number of heads")

    return run_check("GQA groups with MLA's cache", answer, check)


def _matrices() -> list[tuple[torch.Tensor, int]]:
    """Random float64 matrices, some low-rank, some wide, with the ranks to test."""
    gen = torch.Generator().manual_seed(7)
    cases = []
    for rows, cols, true_rank in ((40, 12, 12), (12, 40, 12), (50, 30, 5), (30, 30, 30), (64, 16, 3)):
        m = torch.randn(rows, true_rank, generator=gen, dtype=torch.float64) @ torch.randn(
            true_rank, cols, generator=gen, dtype=torch.float64)
        m = m + 1e-3 * torch.randn(rows, cols, generator=gen, dtype=torch.float64) * (true_rank < min(rows, cols))
        for r in (0, 1, 2, true_rank, min(rows, cols) // 2, min(rows, cols)):
            cases.append((m, r))
    return cases


def check_lowrank_error(answer: object) -> str:
    """Exercise 3: a function (M, r) -> the relative error ||M - M_r||_F / ||M||_F of the best rank-r
    approximation M_r of a 2-D tensor M, compared with :func:`attnlab.lowrank.lowrank_error`."""

    def check(fn: object) -> str:
        assert callable(fn), f"answer should be a function (matrix, r) -> float, got {type(fn).__name__}"
        cases = _matrices()
        for m, r in cases:
            want = lowrank.lowrank_error(m, r)[0]
            try:
                got = fn(m.clone(), r)
            except Exception as err:
                raise AssertionError(f"calling your function on a {tuple(m.shape)} matrix with r={r} raised "
                                     f"{type(err).__name__}: {err}") from err
            got = float(got)
            s = torch.linalg.svdvals(m)
            if not math.isclose(got, want, rel_tol=1e-6, abs_tol=1e-9):
                if math.isclose(got, want**2, rel_tol=1e-6, abs_tol=1e-9):
                    raise AssertionError("that is the squared error (the share of energy left out); "
                                         "take the square root")
                if r < s.numel() and math.isclose(got, float(s[r:].sum() / s.sum()), rel_tol=1e-6, abs_tol=1e-9):
                    raise AssertionError("square the singular values before summing: ||M||_F^2 = sum of s_j^2")
                if 0 < r < s.numel() and math.isclose(got, float((s[r - 1:].square().sum() / s.square().sum()).sqrt()),
                                                      rel_tol=1e-6, abs_tol=1e-9):
                    raise AssertionError("off by one: a rank-r approximation keeps the r largest singular values, "
                                         "s[0] to s[r-1]; the error is made of s[r:]")
                raise AssertionError(f"for a {tuple(m.shape)} matrix and r={r} you returned {got:.6g}, "
                                     f"expected {want:.6g}")
        return f"agrees with lowrank.lowrank_error on {len(cases)} matrices and ranks, r = 0 and full rank included"

    return run_check("rank-r error", answer, check)
