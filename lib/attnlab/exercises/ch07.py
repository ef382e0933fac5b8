"""Checks for chapter 7, Multi-head latent attention.

    from attnlab.exercises import ch07
    print(ch07.check_joint_factors(answer_joint_factors))            # a function (w_k, w_v, r) -> 3 tensors
    print(ch07.check_prediction_random_rank(prediction_random_rank_error))  # predict, then run: a float
    print(ch07.check_lowrank_error(answer_lowrank_error))            # a function (matrix, r) -> float

Each check compares the answer with :mod:`attnlab.lowrank`, which the answers themselves may not call:
``None`` returns a reminder, a right answer "✓ ...", a wrong one raises ``AssertionError`` with a hint aimed
at the usual slip.
"""

from __future__ import annotations

import math

import torch

from attnlab import lowrank
from attnlab.exercises._common import Shortcut, as_number, call_answer, run_check, run_prediction

#: Exercises 1 and 3 do by hand what attnlab.lowrank does.
LOWRANK_SHORTCUT = Shortcut("attnlab.lowrank", (lowrank,),
                            "use torch.linalg.svd or torch.linalg.svdvals and the Eckart-Young theorem yourself")


# ----------------------------------------------------------------------------------------------------
# exercise 1: one latent for keys and values


def _factor_cases() -> list[tuple[torch.Tensor, torch.Tensor, int]]:
    """Random float64 (w_k (h d_h, d), w_v (h d_v, d), r): full-rank ones, and one whose joint [w_k; w_v] has
    rank 3 (so rank 3 is exact)."""
    gen = torch.Generator().manual_seed(17)
    cases = []
    for hd_k, hd_v, d, r in ((12, 8, 10, 4), (6, 6, 16, 5), (20, 12, 9, 9), (8, 4, 6, 1)):
        cases.append((torch.randn(hd_k, d, generator=gen, dtype=torch.float64),
                      torch.randn(hd_v, d, generator=gen, dtype=torch.float64), r))
    low = (torch.randn(18, 3, generator=gen, dtype=torch.float64)
           @ torch.randn(3, 11, generator=gen, dtype=torch.float64))
    cases.append((low[:10], low[10:], 3))
    return cases


def check_joint_factors(answer: object) -> str:
    """Exercise 1: a function ``(w_k, w_v, r) -> (w_dkv, w_uk, w_uv)`` that compresses K and V into ONE latent
    of width r, as MLA does (DeepSeek-V2 eqs. 41-42, 45): w_k (h d_h, d), w_v (h d_v, d) -> w_dkv (r, d),
    w_uk (h d_h, r), w_uv (h d_v, r) with [w_uk; w_uv] @ w_dkv the best rank-r approximation of [w_k; w_v]
    (Eckart-Young). Compared with :func:`attnlab.lowrank.lowrank_approx`; :mod:`attnlab.lowrank` is forbidden."""

    def check(fn: object) -> str:
        assert callable(fn), (
            f"answer should be a function (w_k, w_v, r) -> (w_dkv, w_uk, w_uv), got {type(fn).__name__}"
        )
        cases = _factor_cases()
        for w_k, w_v, r in cases:
            got = call_answer(fn, w_k.clone(), w_v.clone(), r, shortcuts=[LOWRANK_SHORTCUT])
            assert isinstance(got, (tuple, list)) and len(got) == 3 and all(isinstance(t, torch.Tensor) for t in got), (
                "return three tensors: (w_dkv, w_uk, w_uv)"
            )
            w_dkv, w_uk, w_uv = (t.detach().double() for t in got)
            d = w_k.shape[1]
            assert tuple(w_dkv.shape) == (r, d), (
                f"w_dkv maps a token (width d = {d}) to the latent (width r = {r}): shape ({r}, {d}), "
                f"got {tuple(w_dkv.shape)}"
            )
            assert tuple(w_uk.shape) == (w_k.shape[0], r) and tuple(w_uv.shape) == (w_v.shape[0], r), (
                f"w_uk and w_uv map the latent back to all heads' keys and values: shapes ({w_k.shape[0]}, {r}) and "
                f"({w_v.shape[0]}, {r}), got {tuple(w_uk.shape)} and {tuple(w_uv.shape)}"
            )
            joint = torch.cat([w_k, w_v])  # (h d_h + h d_v, d)
            want = lowrank.lowrank_approx(joint, r)
            product = torch.cat([w_uk, w_uv]) @ w_dkv
            if torch.allclose(product, want, atol=1e-9, rtol=1e-9):
                continue
            u, sv, vh = torch.linalg.svd(joint, full_matrices=False)
            if torch.allclose(product, (u[:, -r:] * sv[-r:]) @ vh[-r:], atol=1e-9, rtol=1e-9):
                raise AssertionError("you kept the r SMALLEST singular values: torch.linalg.svd sorts them largest "
                                     "first, so keep u[:, :r], s[:r], vh[:r]")
            k_only = lowrank.lowrank_approx(w_k, r)
            if torch.allclose(product[: w_k.shape[0]], k_only, atol=1e-9, rtol=1e-9):
                raise AssertionError("the latent serves the keys alone: factor K and V TOGETHER, the stacked "
                                     "[w_k; w_v], so one cached latent rebuilds both")
            err = float((product - want).norm() / want.norm())
            raise AssertionError(f"[w_uk; w_uv] @ w_dkv differs from the best rank-{r} approximation of [w_k; w_v] "
                                 f"(relative difference {err:.2e}): take the SVD of the stacked matrix, keep the r "
                                 "largest singular values, and split U_r diag(s_r) into its key and value rows")
        return (f"[w_uk; w_uv] @ w_dkv is the best rank-r approximation of [w_k; w_v] on {len(cases)} cases: one "
                "latent of width r per token rebuilds every head's key and value")

    return run_check("one latent for K and V", answer, check)


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
            got = call_answer(fn, m.clone(), r, shortcuts=[LOWRANK_SHORTCUT])
            assert isinstance(got, (int, float, torch.Tensor)) and not isinstance(got, bool), (
                f"return the error as a number, got {type(got).__name__}"
            )
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


# ----------------------------------------------------------------------------------------------------
# exercise 2: predict, then run

#: Exercise 2's experiment: a square matrix with standard normal entries, and the rank kept.
RANDOM_RANK = {"size": 256, "rank": 32, "seed": 7}


def random_rank_errors() -> dict[str, float]:
    """Relative error of the best rank-r approximation of a random Gaussian matrix, and of a matrix of true
    rank r plus 1% noise, both RANDOM_RANK["size"] square; and the share of dimensions kept."""
    e = RANDOM_RANK
    gen = torch.Generator().manual_seed(e["seed"])
    n, r = e["size"], e["rank"]
    noise = torch.randn(n, n, generator=gen, dtype=torch.float64)
    low = torch.randn(n, r, generator=gen, dtype=torch.float64) @ torch.randn(r, n, generator=gen, dtype=torch.float64)
    low = low + 0.01 * noise * low.norm() / noise.norm()
    return {"random": lowrank.lowrank_error(noise, r)[0], "low_rank": lowrank.lowrank_error(low, r)[0],
            "kept": r / n}


def check_prediction_random_rank(prediction: object) -> str:
    """Exercise 2, predict then run: the relative error ||M - M_r||_F / ||M||_F of the best rank-32
    approximation of a random 256 x 256 Gaussian matrix. Right within 0.05 of the measured value."""

    def judge(guess: object) -> tuple[bool, str]:
        value = as_number(guess, "your prediction")
        assert 0 <= value <= 1, f"a relative error of a best approximation lies between 0 and 1, got {value}"
        e, m = RANDOM_RANK, random_rank_errors()
        right = abs(value - m["random"]) <= 0.05
        return right, (
            f"Measured: {m['random']:.3f}. Keeping {e['rank']} of {e['size']} directions ({m['kept']:.0%}) leaves most "
            "of "
            f"a random matrix behind: its energy is spread over all its singular values. A matrix of true rank "
            f"{e['rank']} plus 1% noise loses only {m['low_rank']:.3f}. MLA's small latent works only because "
            "trained keys and values are far from random; DeepSeek trains the compression from the start rather "
            "than cutting a trained MHA."
        )

    return run_prediction("rank-32 error of a random matrix", prediction, judge)
