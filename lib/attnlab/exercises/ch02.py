"""Checks for chapter 2, Attention in vector form.

    from attnlab.exercises import ch02
    print(ch02.check_softmax(answer_softmax))              # a function scores (n,) -> weights (n,)
    print(ch02.check_scaled_scores(answer_scaled_scores))  # a function (q (d,), keys (n, d)) -> (n,)
    print(ch02.check_attend(answer_attend))                # a function (q, keys, values) -> output (d_v,)
    print(ch02.check_prediction_unscaled_max_weight(prediction_unscaled_max_weight))  # predict, then run

Each check compares the learner's function with :mod:`attnlab.attention` on hand-picked and random
inputs: ``None`` returns a reminder, a right answer "✓ ...", a wrong one raises ``AssertionError`` with a
hint aimed at the usual slip. Exercise 1 must not call a library softmax (``torch.softmax``,
``F.softmax``, ``Tensor.softmax``, ``attnlab.attention.softmax``): the check watches for each.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from attnlab import attention
from attnlab.attention import attention_vector, softmax
from attnlab.exercises._common import Shortcut, as_number, call_answer, run_check, run_prediction

#: Exercise 1 writes softmax, so no library softmax may do it: torch's (as a function, a method, in
#: torch.nn.functional or torch.special, or through log_softmax) nor the course's.
SOFTMAX_SHORTCUT = Shortcut(
    "a library softmax (torch.softmax, F.softmax, Tensor.softmax, log_softmax or attnlab.attention.softmax)",
    (torch.softmax, torch.Tensor.softmax, F.softmax, torch.special.softmax, torch.log_softmax,
     torch.Tensor.log_softmax, F.log_softmax, torch.special.log_softmax, attention.softmax),
    "build it from torch.exp, a max and a sum, which is the point of the exercise",
)


#: Exercise 3 builds attention from the learner's own pieces.
ATTEND_SHORTCUT = Shortcut(
    "a library attention (attention_vector, attention_matrix or scaled_dot_product_attention)",
    (attention.attention_vector, attention.attention_matrix, F.scaled_dot_product_attention),
    "combine your own scaled scores and softmax: o = Σ a_i v_i",
)


def _call(fn, *args, shortcuts=()):
    """Call the learner's function; report an exception or a forbidden shortcut as a failed check."""
    return call_answer(fn, *args, shortcuts=shortcuts)


def _as_tensor(got: object, like: torch.Tensor, what: str) -> torch.Tensor:
    assert torch.is_tensor(got), f"{what} should be a torch.Tensor, got {type(got).__name__}"
    assert got.shape == like.shape, (
        f"{what} should have shape {tuple(like.shape)}, got {tuple(got.shape)}"
    )
    return got.to(like.dtype)


def _close(a: torch.Tensor, b: torch.Tensor) -> bool:
    tol = 1e-5 if a.dtype == torch.float32 else 1e-10
    return bool(torch.allclose(a, b, rtol=tol, atol=tol))


def softmax_cases() -> list[torch.Tensor]:
    """The score vectors the softmax check tries: small, random, huge (overflow bait), masked (-inf)."""
    gen = torch.Generator().manual_seed(2)
    return [
        torch.tensor([1.0, 2.0, 3.0]),
        torch.tensor([0.0]),
        torch.tensor([0.5, 0.5, 0.5, 0.5]),
        torch.randn(10, generator=gen),
        torch.randn(7, generator=gen, dtype=torch.float64) * 3,
        torch.tensor([0.0, float("-inf"), 1.0]),
        torch.tensor([-1000.0, -1001.0, -1002.0]),
        torch.tensor([100.0, 95.0, 90.0]),  # exp(100) is inf in float32
        torch.tensor([-100.0, 0.0, 100.0]),  # a spread of 200: subtracting the min would overflow
        torch.tensor([1000.0, 1001.0, 1002.0]),
    ]


def check_softmax(answer: object) -> str:
    """Exercise 1: a numerically safe softmax of a 1-D score vector, a_i = exp(s_i) / sum_j exp(s_j)."""

    def check(fn: object) -> str:
        assert callable(fn), f"answer should be a function scores -> weights, got {type(fn).__name__}"
        for s in softmax_cases():
            before = s.clone()
            got = _call(fn, s, shortcuts=[SOFTMAX_SHORTCUT])
            assert torch.equal(s, before), "your function changed its input scores in place"
            got = _as_tensor(got, s, f"softmax of {s.tolist()}")
            want = softmax(s)
            if not torch.isfinite(got).all():
                raise AssertionError(
                    f"for scores {s.tolist()} you returned {got.tolist()}: exp overflowed (or 0/0). "
                    "Subtract max(scores) before exp; the result does not change, the overflow goes away"
                )
            if not _close(got, want) and _close(got, s / s.sum()):
                raise AssertionError(f"for scores {s.tolist()} you returned {got.tolist()}: exponentiate first")
            total = float(got.sum())
            assert math.isclose(total, 1.0, abs_tol=1e-5), (
                f"for scores {s.tolist()} your weights sum to {total:.6f}: divide by the sum of the exponentials"
            )
            assert _close(got, want), f"for scores {s.tolist()} you returned {got.tolist()}, expected {want.tolist()}"
        return (f"agrees with attnlab.attention.softmax on {len(softmax_cases())} score vectors, "
                "including 1002.0 in float32 and a masked -inf")

    return run_check("softmax", answer, check)


def scores_cases() -> list[tuple[torch.Tensor, torch.Tensor]]:
    """(q (d,), keys (n, d)) pairs for the scores and attend checks: a 2-D example, then random shapes."""
    gen = torch.Generator().manual_seed(3)
    cases = [(torch.tensor([1.0, 0.0]), torch.tensor([[2.0, 0.5], [0.5, 2.0], [-1.5, 1.0]]))]
    for n, d in ((1, 3), (5, 4), (8, 16), (6, 64)):
        cases.append((torch.randn(d, generator=gen), torch.randn(n, d, generator=gen)))
    return cases


def check_scaled_scores(answer: object) -> str:
    """Exercise 2: scaled dot-product scores s_i = q · k_i / sqrt(d) for one query against n keys."""

    def check(fn: object) -> str:
        assert callable(fn), f"answer should be a function (q, keys) -> scores, got {type(fn).__name__}"
        for q, keys in scores_cases():
            d = q.shape[0]
            dots = keys @ q  # (n,)
            got = _as_tensor(_call(fn, q, keys), dots, f"scores for q of shape {(d,)} and keys {tuple(keys.shape)}")
            want = dots / math.sqrt(d)
            if d > 1 and not _close(got, want):
                assert not _close(got, dots), "those are the raw dot products q·k_i: divide them by √d"
                assert not _close(got, dots / d), "that divides by d: the scale is 1/√d, the square root of d"
                assert not _close(got, dots * math.sqrt(d)), "that multiplies by √d: divide by it instead"
            assert _close(got, want), (
                f"for d={d}, n={keys.shape[0]} you returned {got.tolist()}, expected {want.tolist()}"
            )
        return f"q·kᵢ/√d agrees on {len(scores_cases())} cases, d from 2 to 64"

    return run_check("scaled scores", answer, check)


def check_attend(answer: object) -> str:
    """Exercise 3: the attention output o = sum_i softmax(q · k_i / sqrt(d))_i v_i for one query."""

    def check(fn: object) -> str:
        assert callable(fn), f"answer should be a function (q, keys, values) -> output, got {type(fn).__name__}"
        gen = torch.Generator().manual_seed(4)
        for q, keys in scores_cases():
            n, d = keys.shape
            values = torch.randn(n, 3, generator=gen)  # d_v = 3, unlike d, to catch a mix-up
            want, weights = attention_vector(q, keys, values)
            got = _call(fn, q, keys, values, shortcuts=[ATTEND_SHORTCUT])
            assert torch.is_tensor(got), f"answer should return a torch.Tensor, got {type(got).__name__}"
            if got.shape == weights.shape and (got.shape != want.shape or _close(got.to(weights.dtype), weights)):
                raise AssertionError("that returns the weights (one per key): return sum_i a_i v_i, a vector of "
                                     f"values' width {values.shape[1]}")
            got = _as_tensor(got, want, f"the output for {n} values of width {values.shape[1]}")
            if d > 1 and not _close(got, want):
                unscaled = softmax(keys @ q) @ values
                assert not _close(got, unscaled), "the weights come from unscaled scores: divide q·k_i by √d"
                assert not _close(got, values.mean(0)), "that is the plain mean of the values: weight them by a_i"
                assert not _close(got, (keys @ q / math.sqrt(d)) @ values), (
                    "that weights the values by the scores: take softmax of the scores first"
                )
            assert _close(got, want), f"for n={n}, d={d} you returned {got.tolist()}, expected {want.tolist()}"
        return f"agrees with attnlab.attention.attention_vector on {len(scores_cases())} cases"

    return run_check("attention output", answer, check)


# ----------------------------------------------------------------------------------------------------
# exercise 4: predict, then run

#: Exercise 4's experiment: queries and keys with standard normal entries, this wide, this many keys.
SCALE_EXPERIMENT = {"dim": 512, "keys": 16, "queries": 500, "seed": 2}


def measured_max_weights() -> dict[str, float]:
    """Mean over the queries of the largest softmax weight, with raw scores q·k and with q·k/sqrt(d), and
    the standard deviation of the raw scores."""
    e = SCALE_EXPERIMENT
    gen = torch.Generator().manual_seed(e["seed"])
    q = torch.randn(e["queries"], e["dim"], generator=gen, dtype=torch.float64)
    k = torch.randn(e["keys"], e["dim"], generator=gen, dtype=torch.float64)
    raw = q @ k.T  # (queries, keys)
    return {"unscaled": float(softmax(raw).max(-1).values.mean()),
            "scaled": float(softmax(raw / math.sqrt(e["dim"])).max(-1).values.mean()),
            "score_std": float(raw.std())}


def check_prediction_unscaled_max_weight(prediction: object) -> str:
    """Exercise 4, predict then run: with d = 512 and 16 keys, the average largest softmax weight of the RAW
    scores q·k (no 1/sqrt(d)). Right within 0.1 of the measured value."""

    def judge(guess: object) -> tuple[bool, str]:
        value = as_number(guess, "your prediction")
        assert 0 <= value <= 1, f"a softmax weight lies between 0 and 1, got {value}"
        e, m = SCALE_EXPERIMENT, measured_max_weights()
        right = abs(value - m["unscaled"]) <= 0.1
        slip = ""
        if not right and value < 0.5:
            slip = (f"You may have pictured scores near 1; q·k adds {e['dim']} products of variance 1, so it "
                    f"has variance d. ")
        return right, (f"{slip}Measured over {e['queries']} queries: the raw scores have standard deviation "
                       f"{m['score_std']:.1f} ≈ √{e['dim']} = {math.sqrt(e['dim']):.1f}, so one key wins by tens "
                       f"and takes {m['unscaled']:.3f} of the weight on average: softmax has saturated and its "
                       f"gradient vanishes. Divided by √d the scores have standard deviation 1 and the largest of "
                       f"{e['keys']} weights is {m['scaled']:.3f} on average: attention can still spread.")

    return run_prediction("largest weight without the 1/√d scale", prediction, judge)
