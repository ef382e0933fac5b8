"""Checks for chapter 14, how fast, really.

    from attnlab.exercises import ch14
    print(ch14.check_mqa_counts(answer_mqa_counts))                  # a function (shape, context) -> (flops, bytes)
    print(ch14.check_prediction_bounds(prediction_bounds))           # predict, then run: a dict
    print(ch14.check_crossover_context(answer_crossover))            # an int, cached tokens

No check here asks the formulas of :mod:`attnlab.costs` for its reference, so no answer can be had by calling
them: every reference is MEASURED on the real layer (:func:`measure_step`): torch's FLOP counter runs one
decode step, and the bytes are the layer's weights plus the cache it attends to, as stored. Exercise 1 may
not call :mod:`attnlab.costs` or :mod:`attnlab.bench` either. ``None`` returns a reminder, a right answer
"✓ ...", a wrong one raises ``AssertionError`` with a hint aimed at the usual slip.
"""

from __future__ import annotations

import dataclasses
import math

import torch
from torch.utils.flop_counter import FlopCounterMode

from attnlab import bench, costs
from attnlab.costs import AttentionShape
from attnlab.exercises._common import Shortcut, as_integer, call_answer, run_check, run_prediction
from attnlab.schemes import get_scheme

#: The context of exercises 1 and 2 (cached tokens L; the step attends to T = L + 1 keys).
CONTEXT = 8192
#: The machine balance (FLOP per byte) of exercises 2 and 3.
BALANCE = 4.0
#: The shape and dtype of every exercise.
SHAPE = bench.DEFAULT_SHAPE
DTYPE = torch.float32
#: The schemes exercise 2 asks about: the two dense extremes and absorbed MLA.
PREDICT_SCHEMES = ("mha", "mqa", "mla_absorbed")

#: Exercise 1 counts by hand, so the formulas that count for the course are off limits.
COUNTS_SHORTCUT = Shortcut("attnlab.costs or attnlab.bench", (costs, bench),
                           "count the weights and the cached numbers from the shape's fields yourself")


def measure_step(scheme: str, shape: AttentionShape, context: int) -> dict[str, int]:
    """One decode step of a real ``scheme`` layer (float32, CPU) after ``context`` cached tokens, measured:
    "flops" by :class:`torch.utils.flop_counter.FlopCounterMode` (the matmuls: 2 per multiply-add), "bytes"
    as the weights' bytes plus the bytes of the cache the step attends to (T = context + 1 tokens, read from
    the cache itself), and the two parts of the bytes. For dense schemes and absorbed MLA every one of those
    bytes is read exactly once."""
    record = get_scheme(scheme)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(14)
        layer = record.build_layer(shape).to(DTYPE).eval()
        if record.mode is not None and record.base is not None:
            layer.use(record.mode)
        cache = bench.filled_cache(scheme, shape, context, torch.device("cpu"), DTYPE)
        x = torch.randn(1, 1, shape.d_model, dtype=DTYPE)
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        layer(x, cache=cache)
    weights = sum(p.numel() * p.element_size() for p in layer.parameters())
    return {"flops": counter.get_total_flops(), "bytes": weights + cache.nbytes, "weight_bytes": weights,
            "cache_bytes": cache.nbytes}


# ----------------------------------------------------------------------------------------------------
# exercise 1: FLOPs and bytes of an MQA step, by hand

#: Exercise 1's cases: (shape, cached tokens).
COUNT_CASES = ((SHAPE, CONTEXT), (bench.QUICK_SHAPE, 40), (dataclasses.replace(bench.QUICK_SHAPE, n_heads=8), 5))


def check_mqa_counts(answer: object) -> str:
    """Exercise 1: a function ``(shape, context) -> (flops, n_bytes)`` for one MQA decode step of one layer in
    float32 (4 bytes a number), batch 1, after ``context`` cached tokens: the FLOPs (2 per multiply-add) and
    the bytes read, weights included. Compared with :func:`measure_step` on :data:`COUNT_CASES`."""

    def check(fn: object) -> str:
        assert callable(fn), f"answer should be a function (shape, context) -> (flops, bytes), got {type(fn).__name__}"
        for shape, context in COUNT_CASES:
            got = call_answer(fn, shape, context, shortcuts=[COUNTS_SHORTCUT])
            assert isinstance(got, (tuple, list)) and len(got) == 2, "return a pair (flops, n_bytes)"
            flops = as_integer(got[0], "the FLOPs")
            n_bytes = as_integer(got[1], "the bytes")
            m = measure_step("mqa", shape, context)
            d, h, d_h, t = shape.d_model, shape.n_heads, shape.head_dim, context + 1
            attend = 4 * h * d_h * t
            where = f"at d_model {d}, {h} heads of {d_h}, L = {context}"
            if flops != m["flops"]:
                assert flops != m["flops"] // 2, f"{where}: that counts multiply-adds; a multiply-add is 2 FLOPs"
                assert flops != m["flops"] - 4 * h * d_h, (
                    f"{where}: the step attends to T = L + 1 keys, the new token's own key included"
                )
                assert flops != m["flops"] - attend, f"{where}: add the attention itself, scores and weighted sum"
                assert flops != attend, f"{where}: the projections count too: 2 FLOPs per weight, applied once"
                raise AssertionError(f"{where}: {flops:,} FLOPs, the FLOP counter measured {m['flops']:,} "
                                     "(2 W for the projections + 2 × 2 n_h d_h T for scores and weighted sum)")
            if n_bytes != m["bytes"]:
                kv_mha = 4 * 2 * h * d_h * t
                assert n_bytes != m["weight_bytes"] + kv_mha, (
                    f"{where}: MQA caches ONE key head and ONE value head, 2 d_h numbers per token, not 2 n_h d_h"
                )
                assert n_bytes != m["bytes"] // 2, f"{where}: float32 takes 4 bytes a number, not 2"
                assert n_bytes != m["cache_bytes"], f"{where}: the step reads the weights too, once each"
                assert n_bytes != m["weight_bytes"], f"{where}: the step reads the whole cache too"
                raise AssertionError(f"{where}: {n_bytes:,} bytes; weights and cache take {m['bytes']:,}")
        m = measure_step("mqa", SHAPE, CONTEXT)
        return (f"equal to the measured step on {len(COUNT_CASES)} shapes; at the default shape and L = {CONTEXT:,}: "
                f"{m['flops']:,} FLOPs over {m['bytes']:,} bytes, {m['flops'] / m['bytes']:.2f} FLOP/byte")

    return run_check("MQA step, counted by hand", answer, check)


# ----------------------------------------------------------------------------------------------------
# exercise 2: predict, then run


def measured_intensities() -> dict[str, float]:
    """FLOP per byte of one decode step at :data:`CONTEXT`, :data:`SHAPE`, float32, measured per scheme of
    :data:`PREDICT_SCHEMES`."""
    out = {}
    for scheme in PREDICT_SCHEMES:
        m = measure_step(scheme, SHAPE, CONTEXT)
        out[scheme] = m["flops"] / m["bytes"]
    return out


def check_prediction_bounds(prediction: object) -> str:
    """Exercise 2, predict then run: for MHA, MQA and absorbed MLA, is one decode step at :data:`CONTEXT` tokens
    memory- or compute-bound on a machine of balance :data:`BALANCE` FLOP/byte? A dict scheme -> "memory" or
    "compute"; the check measures each intensity (:func:`measure_step`)."""

    def judge(guess: object) -> tuple[bool, str]:
        assert isinstance(guess, dict), (
            f"answer with a dict scheme -> 'memory' or 'compute', got {type(guess).__name__}"
        )
        assert set(guess) == set(PREDICT_SCHEMES), f"give exactly the keys {list(PREDICT_SCHEMES)}, got {sorted(guess)}"
        bad = {k: v for k, v in guess.items() if v not in ("memory", "compute")}
        assert not bad, f"every value must be 'memory' or 'compute', got {bad}"
        intensity = measured_intensities()
        truth = {s: "memory" if i < BALANCE else "compute" for s, i in intensity.items()}
        wrong = [s for s in PREDICT_SCHEMES if guess[s] != truth[s]]
        measured = "; ".join(f"{s} {intensity[s]:.2f} FLOP/byte, {truth[s]}-bound" for s in PREDICT_SCHEMES)
        head = f"Wrong for {', '.join(wrong)}. " if wrong else ""
        return not wrong, (
            f"{head}Measured at L = {CONTEXT:,} against a balance of {BALANCE:g}: {measured}. A step does one "
            "multiply-add per cached number per query head that reads it. MHA's heads read their own K and V: 2 "
            "FLOPs per 4-byte number. MQA's heads share one K/V head, 8× more work per cached byte, but its cache "
            "is so small that the weights, each used once, dominate the bytes. Absorbed MLA's heads all score and "
            "mix the same latent, and the latent is wide enough to dominate the bytes: that lifts it over the "
            "balance."
        )

    return run_prediction("memory- or compute-bound", prediction, judge)


# ----------------------------------------------------------------------------------------------------
# exercise 3: the crossover


def crossover_context() -> int:
    """The smallest L at which absorbed MLA's step reaches :data:`BALANCE` FLOP/byte, from measurements, not
    formulas: FLOPs and bytes are linear in T = L + 1 (F = F0 + f T, B = B0 + b T), so two measured steps give
    the four constants, and F >= BALANCE B solves to T >= (BALANCE B0 - F0) / (f - BALANCE b)."""
    lo, hi = measure_step("mla_absorbed", SHAPE, 1), measure_step("mla_absorbed", SHAPE, 65)  # T = 2 and T = 66
    f, b = (hi["flops"] - lo["flops"]) // 64, (hi["bytes"] - lo["bytes"]) // 64
    f0, b0 = lo["flops"] - 2 * f, lo["bytes"] - 2 * b
    assert f > BALANCE * b, "absorbed MLA never reaches the balance at this shape"
    t = math.ceil((BALANCE * b0 - f0) / (f - BALANCE * b))
    return max(t - 1, 1)


def check_crossover_context(answer: object) -> str:
    """Exercise 3: the smallest number of cached tokens L at which one absorbed-MLA decode step (:data:`SHAPE`,
    float32) reaches :data:`BALANCE` FLOP/byte. The reference comes from two measured steps
    (:func:`crossover_context`)."""

    def check(a: object) -> str:
        expected = crossover_context()
        value = as_integer(a, "the context")
        assert value != expected + 1, "one too many: the step attends to T = L + 1 keys, so solve for L = T - 1"
        if value == expected - 1:
            m = measure_step("mla_absorbed", SHAPE, value)
            raise AssertionError(f"one short: at L = {value} the measured intensity is "
                                 f"{m['flops'] / m['bytes']:.5f}, still below {BALANCE}")
        assert value == expected, (
            "not yet: intensity(L) = (2 W' + 2 n_h (2 d_c + d_h^R) T) / (4 (W + (d_c + d_h^R) T)); find the first L "
            f"where it is >= {BALANCE} (W' = W minus the latent's norm weights, which do no matmul)"
        )
        at = measure_step("mla_absorbed", SHAPE, expected)
        return (f"L = {expected:,}: measured there, {at['flops']:,} FLOPs over {at['bytes']:,} bytes = "
                f"{at['flops'] / at['bytes']:.4f} FLOP/byte; the dense schemes never get there")

    return run_check("crossover context", answer, check)
