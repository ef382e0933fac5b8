"""Checks for chapter 1, Tokenization.

    from attnlab.exercises import ch01
    print(ch01.check_pair_counts(answer_pair_counts))      # a function ids -> {(a, b): count}
    print(ch01.check_merge(answer_merge))                  # a function (ids, pair, new_id) -> list
    print(ch01.check_bytes_per_token(answer_bytes_per_token))  # a float
    print(ch01.check_prediction_mean_abs_cos(prediction_mean_abs_cos))  # predict, then run: a float

Each check compares the answer with :mod:`attnlab.tokenization` on hand-picked and random inputs; the two
functions must not call the library functions they rewrite (``get_pair_counts``, ``merge``).
"""

from __future__ import annotations

import math
import random

import torch

from attnlab import corpus, tokenization
from attnlab.exercises._common import Shortcut, as_number, call_answer, run_check, run_prediction

#: What exercises 1 and 2 rewrite, and so may not call.
PAIR_COUNTS_SHORTCUT = Shortcut("tokenization.get_pair_counts", (tokenization.get_pair_counts,),
                                "count the adjacent pairs yourself, with a loop over positions or zip(ids, ids[1:])")
MERGE_SHORTCUT = Shortcut("tokenization.merge", (tokenization.merge,),
                          "walk the list left to right yourself and skip both ids after a match")


def _random_ids(rng: random.Random, n_lists: int) -> list[list[int]]:
    """Short lists over a small alphabet, so that pairs repeat and runs like [3, 3, 3] occur."""
    return [[rng.randrange(4) for _ in range(rng.randrange(0, 12))] for _ in range(n_lists)]


def check_pair_counts(answer: object) -> str:
    """Check a function ``ids -> {(a, b): count}`` counting adjacent pairs (``get_pair_counts``)."""

    def check(fn: object) -> str:
        assert callable(fn), f"answer should be a function ids -> dict, got {type(fn).__name__}"
        cases = [[1, 2, 3, 1, 2], [7, 7, 7], [5], [], *_random_ids(random.Random(1), 200)]
        for ids in cases:
            before = list(ids)
            got = call_answer(fn, ids, shortcuts=[PAIR_COUNTS_SHORTCUT])
            assert ids == before, f"your function changed its input list {before} into {ids}"
            assert isinstance(got, dict), f"for ids={before} expected a dict, got {type(got).__name__}"
            want = tokenization.get_pair_counts(before)
            if got != want and before == [7, 7, 7]:
                raise AssertionError(
                    f"for ids=[7, 7, 7] you returned {got}; pairs overlap: positions (0, 1) and (1, 2) "
                    f"are both (7, 7), so the expected answer is {want}"
                )
            assert got == want, f"for ids={before} you returned {got}, expected {want}"
        return f"counts agree with get_pair_counts on {len(cases)} lists, including overlaps and empty input"

    return run_check("pair counts", answer, check)


def check_merge(answer: object) -> str:
    """Check a function ``(ids, pair, new_id) -> list`` that replaces a pair everywhere (``merge``)."""

    def check(fn: object) -> str:
        assert callable(fn), (
            f"answer should be a function (ids, pair, new_id) -> list, got {type(fn).__name__}"
        )
        rng = random.Random(2)
        cases = [
            ([1, 2, 3, 1, 2], (1, 2), 4),
            ([7, 7, 7], (7, 7), 8),
            ([7, 7, 7, 7], (7, 7), 8),
            ([3, 1, 2], (1, 2), 9),
            ([1, 2], (2, 1), 9),
            ([], (1, 2), 9),
            *[(ids, (rng.randrange(4), rng.randrange(4)), 256) for ids in _random_ids(rng, 200)],
        ]
        for ids, pair, new_id in cases:
            before = list(ids)
            got = call_answer(fn, ids, pair, new_id, shortcuts=[MERGE_SHORTCUT])
            assert ids == before, f"your function changed its input list {before} into {ids}"
            want = tokenization.merge(before, pair, new_id)
            assert isinstance(got, list), f"for ids={before} expected a list, got {type(got).__name__}"
            if got != want and before[:3] == [7, 7, 7]:
                raise AssertionError(
                    f"merging (7, 7) in {before} gave {got}, expected {want}: scan left to right and "
                    "skip both ids after a match, so matches never overlap"
                )
            assert got == want, f"merge({before}, {pair}, {new_id}) returned {got}, expected {want}"
        return f"merge agrees with tokenization.merge on {len(cases)} cases, including runs like [7, 7, 7]"

    return run_check("merge", answer, check)


def expected_bytes_per_token() -> float:
    """Bytes per token of the course tokenizer on the validation text (the value the last check wants)."""
    val = corpus.load_text("val")
    return tokenization.utf8_bytes_per_token(val, tokenization.load_tokenizer().encode(val))


def check_bytes_per_token(answer: object) -> str:
    """Check the compression of the course tokenizer on ``corpus.load_text("val")``: UTF-8 bytes per token."""

    def check(value: object) -> str:
        assert isinstance(value, (int, float)) and not isinstance(value, bool), (
            f"answer should be a number (bytes / tokens), got {type(value).__name__}"
        )
        want = expected_bytes_per_token()
        val = corpus.load_text("val")
        n_tokens = len(tokenization.load_tokenizer().encode(val))
        if math.isclose(value, 1 / want, rel_tol=1e-6):
            raise AssertionError(f"{value:.4f} is tokens per byte; invert it: bytes divided by tokens")
        if math.isclose(value, len(val) / n_tokens, rel_tol=1e-6):
            raise AssertionError(
                f"{value:.4f} divides characters by tokens; count UTF-8 bytes instead: "
                "len(text.encode('utf-8'))"
            )
        assert math.isclose(value, want, rel_tol=1e-6), (
            f"{value} is not the bytes per token of load_tokenizer() on load_text('val'); "
            "encode the text, then divide len(text.encode('utf-8')) by the number of ids"
        )
        return f"{value:.3f} bytes per token: each token carries that many bytes of text on average"

    return run_check("bytes per token", answer, check)


# ----------------------------------------------------------------------------------------------------
# exercise 4: predict, then run

#: The experiment of exercise 4: this many pairs of random directions of this width.
COS_EXPERIMENT = {"pairs": 2000, "dim": 64, "seed": 1}


def measured_mean_abs_cos() -> float:
    """Mean |cos| between the two vectors of ``COS_EXPERIMENT["pairs"]`` pairs of standard Gaussian vectors in
    ``COS_EXPERIMENT["dim"]`` dimensions (seeded)."""
    e = COS_EXPERIMENT
    gen = torch.Generator().manual_seed(e["seed"])
    a = torch.randn(e["pairs"], e["dim"], generator=gen, dtype=torch.float64)
    b = torch.randn(e["pairs"], e["dim"], generator=gen, dtype=torch.float64)
    cos = torch.nn.functional.cosine_similarity(a, b, dim=-1)  # (pairs,)
    return float(cos.abs().mean())


def check_prediction_mean_abs_cos(prediction: object) -> str:
    """Exercise 4, predict then run: the mean |cos| of random pairs of directions in 64 dimensions.

    Right within 0.02 of the measured mean. The explanation compares it with E|cos| = sqrt(2 / (pi d)) (cos
    of two random directions is close to a normal of variance 1/d for large d, and E|N(0, s^2)| = s
    sqrt(2/pi)) and with 1/sqrt(d), which is the standard deviation, not the mean of |cos|."""

    def judge(guess: object) -> tuple[bool, str]:
        value = as_number(guess, "your prediction")
        d = COS_EXPERIMENT["dim"]
        measured = measured_mean_abs_cos()
        theory, sd = math.sqrt(2 / (math.pi * d)), 1 / math.sqrt(d)
        right = abs(value - measured) <= 0.02
        slip = ""
        if not right and abs(value - sd) <= 0.005:
            slip = f"1/√d = {sd:.3f} is the standard deviation of cos, not the mean of its absolute value. "
        elif not right and value > 0.3:
            slip = "In many dimensions random directions are nearly orthogonal: large |cos| is rare. "
        return right, (f"{slip}Measured over {COS_EXPERIMENT['pairs']:,} pairs in d = {d}: {measured:.3f}. "
                       f"Theory: cos is about normal with standard deviation 1/√d = {sd:.3f}, and the mean of "
                       f"|N(0, σ²)| "
                       f"is σ·√(2/π), so E|cos| ≈ √(2/(π d)) = {theory:.3f}. At d = 768 it would be "
                       f"{math.sqrt(2 / (math.pi * 768)):.3f}: two unrelated embeddings look orthogonal.")

    return run_prediction("mean |cos| of random directions", prediction, judge)
