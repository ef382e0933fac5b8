"""Checks for chapter 14, how fast, really.

    from attnlab.exercises import ch14
    print(ch14.check_mqa_intensity(answer_mqa_intensity))      # a float, FLOP per byte
    print(ch14.check_bounds(answer_bounds))                    # a dict scheme -> "memory" or "compute"
    print(ch14.check_crossover_context(answer_crossover))      # an int, cached tokens

Each check compares the answer with the formulas of :mod:`attnlab.costs` (:func:`~attnlab.costs.decode_flops`,
:func:`~attnlab.costs.decode_bytes_read`) and :func:`attnlab.bench.roofline_bound` at
:data:`attnlab.bench.DEFAULT_SHAPE` in float32: ``None`` returns a reminder, a right answer "✓ ...", a wrong one
raises ``AssertionError`` with a hint aimed at the usual slip.
"""

from __future__ import annotations

import math

from attnlab import bench, costs
from attnlab.exercises._common import as_number, run_check

#: The context of exercises 1 and 2 (cached tokens L; the step attends to T = L + 1 keys).
CONTEXT = 8192
#: The machine balance (FLOP per byte) of exercises 2 and 3.
BALANCE = 4.0
#: The shape and dtype of every exercise.
SHAPE = bench.DEFAULT_SHAPE
DTYPE = "float32"


def _close(a: float, b: float) -> bool:
    return math.isclose(a, b, rel_tol=1e-6)


def check_mqa_intensity(answer: object) -> str:
    """Exercise 1: arithmetic intensity (FLOPs / bytes) of one MQA decode step at :data:`CONTEXT` cached tokens,
    :data:`SHAPE`, float32, weights included: (2 W + 4 n_h d_h T) / (4 (W + 2 d_h T)) with T = L + 1."""
    flops = costs.decode_flops("mqa", SHAPE, CONTEXT)
    n_bytes = costs.decode_bytes_read("mqa", SHAPE, CONTEXT, DTYPE)
    expected = flops / n_bytes

    def check(a: object) -> str:
        value = as_number(a, "the intensity")
        s, t = SHAPE, CONTEXT + 1
        w = costs.weight_elements("mqa", s)
        assert not _close(value, 2 * expected), "the cache is float32: 4 bytes per number, not 2 (bfloat16)"
        assert not _close(value, expected / 2), "count 2 FLOPs per multiply-add, and 4 bytes per float32 number"
        assert not _close(value, 4 * s.n_heads * s.head_dim * t / (4 * 2 * s.head_dim * t)), (
            "that is the attention core alone; the step also reads the weights W once and applies them (2 W FLOPs)"
        )
        mha_bytes = 4 * (w + 2 * s.n_heads * s.head_dim * t)
        assert not _close(value, (2 * w + 4 * s.n_heads * s.head_dim * t) / mha_bytes), (
            "MQA caches ONE key and ONE value head: the bytes read are 4 (W + 2 d_h T), not 2 n_h d_h T"
        )
        assert not _close(value, n_bytes / flops), "intensity is FLOPs per byte, not bytes per FLOP"
        assert math.isclose(value, expected, rel_tol=1e-6), (
            f"not yet: FLOPs {flops:,} / bytes {n_bytes:,} (T = L + 1 keys: the new token attends to itself too)"
        )
        return (f"{expected:.4f} FLOP/byte = {flops:,} FLOPs / {n_bytes:,} bytes, far below any modern machine's "
                "balance: memory-bound")

    return run_check("MQA intensity", answer, check)


def expected_bounds() -> dict[str, str]:
    """Every scheme's bound at :data:`CONTEXT`, :data:`SHAPE`, float32, on a machine of balance :data:`BALANCE`."""
    return {s: bench.roofline_bound(costs.arithmetic_intensity(s, SHAPE, CONTEXT, DTYPE), BALANCE)
            for s in bench.SCHEMES}


def check_bounds(answer: object) -> str:
    """Exercise 2: for each scheme of :data:`attnlab.bench.SCHEMES`, "memory" or "compute": is one decode step at
    :data:`CONTEXT` tokens (:data:`SHAPE`, float32) memory- or compute-bound on a machine of balance
    :data:`BALANCE` FLOP/byte?"""
    expected = expected_bounds()

    def check(a: object) -> str:
        assert isinstance(a, dict), f"answer should be a dict scheme -> 'memory' or 'compute', got {type(a).__name__}"
        assert set(a) == set(expected), f"answer should have exactly the keys {sorted(expected)}, got {sorted(a)}"
        bad = {k: v for k, v in a.items() if v not in ("memory", "compute")}
        assert not bad, f"every value must be 'memory' or 'compute', got {bad}"
        flipped = {k: ("compute" if v == "memory" else "memory") for k, v in a.items()}
        assert flipped != expected, "swapped: below the balance (few FLOPs per byte) is MEMORY-bound"
        for s in ("mla_absorbed", "dsa", "mla_naive"):
            if a[s] != expected[s]:
                i = costs.arithmetic_intensity(s, SHAPE, CONTEXT, DTYPE)
                raise AssertionError(f"look again at {s}: its intensity at L = {CONTEXT} is {i:.2f} FLOP/byte "
                                     f"against a balance of {BALANCE}")
        assert a == expected, "not yet: compare each scheme's FLOPs / bytes with the balance"
        compute = sorted(k for k, v in expected.items() if v == "compute")
        return f"compute-bound: {', '.join(compute)}; every other scheme is memory-bound"

    return run_check("memory- or compute-bound", answer, check)


def crossover_context() -> int:
    """The smallest context L at which absorbed MLA's decode step is compute-bound at balance :data:`BALANCE`."""
    lo, hi = 1, 1
    while costs.arithmetic_intensity("mla_absorbed", SHAPE, hi, DTYPE) < BALANCE:
        lo, hi = hi, hi * 2
    while lo < hi:  # the intensity grows with L: bisect for the first L at or above the balance
        mid = (lo + hi) // 2
        if costs.arithmetic_intensity("mla_absorbed", SHAPE, mid, DTYPE) < BALANCE:
            lo = mid + 1
        else:
            hi = mid
    return lo


def check_crossover_context(answer: object) -> str:
    """Exercise 3: the smallest number of cached tokens L at which one absorbed-MLA decode step (:data:`SHAPE`,
    float32) reaches :data:`BALANCE` FLOP/byte, i.e. stops being memory-bound."""
    expected = crossover_context()

    def check(a: object) -> str:
        value = as_number(a, "the context")
        assert value == int(value), f"a context is a whole number of tokens, got {a!r}"
        value = int(value)
        assert value != expected + 1, "one too many: the step attends to T = L + 1 keys, so solve for L = T - 1"
        assert value != expected - 1, (
            f"one short: at L = {expected - 1} the intensity is "
            f"{costs.arithmetic_intensity('mla_absorbed', SHAPE, expected - 1, DTYPE):.5f}, still below {BALANCE}"
        )
        assert value == expected, (
            "not yet: intensity(L) = (2 W' + 2 n_h (2 d_c + d_h^R) T) / (4 (W + (d_c + d_h^R) T)); find the first L "
            f"where it is >= {BALANCE} (W' = W minus the latent's norm weights)"
        )
        return (f"L = {expected:,}: from there on absorbed MLA is compute-bound at {BALANCE} FLOP/byte; the dense "
                "schemes never get there (MHA stays at 0.5)")

    return run_check("crossover context", answer, check)
