"""Checks for chapter 18, linear attention and hybrids.

    from attnlab.exercises import ch18
    print(ch18.check_state_bytes(answer_state_bytes))         # one Gated DeltaNet layer's state, in bytes
    print(ch18.check_crossover(answer_crossover))             # context where a full layer's cache passes it
    print(ch18.check_overwrite_prediction(answer_overwrite))  # predicted, then run

Each check compares the answer with :mod:`attnlab.costs` and :mod:`attnlab.linear_attention`: ``None`` returns
a reminder, a right answer "✓ ...", a wrong one raises ``AssertionError`` with a hint aimed at the usual slip.
"""

from __future__ import annotations

import torch

from attnlab import costs
from attnlab.exercises._common import as_integer, as_number, run_check
from attnlab.linear_attention import delta_rule_recurrent, linear_attention_recurrent

#: Exercise 1: a Gated DeltaNet layer of Qwen3-Next-80B-A3B (config.json): value heads with a d_k x d_v state each,
#: held in float32; a short convolution of ``conv_kernel`` taps over ``conv_channels`` channels, inputs in bfloat16.
EXERCISE_1 = {"n_heads": 32, "d_k": 128, "d_v": 128, "conv_channels": 8192, "conv_kernel": 4}

#: Exercise 2: the same layer's state against one of Qwen3-Next's full layers (2 KV heads of 256, bfloat16).
EXERCISE_2 = {"n_kv_heads": 2, "head_dim": 256}

#: Exercise 3: one head with d_k = 2, the key e_1 = (1, 0) written three times with values 1, 2, 3 (d_v = 1),
#: each time read with the query e_1. Linear attention as Katharopoulos et al. (phi = elu + 1, normalised);
#: the delta rule with beta = 1 and no gate.
EXERCISE_3 = {"values": (1.0, 2.0, 3.0)}


# ----------------------------------------------------------------------------------------------------
# exercise 1


def expected_state_bytes() -> int:
    """Bytes of one layer's fixed cache: :func:`attnlab.costs.linear_state_bytes` with float32 state, bf16 conv."""
    e = EXERCISE_1
    return costs.linear_state_bytes(e["n_heads"], e["d_k"], e["d_v"], torch.float32, conv_channels=e["conv_channels"],
                                    conv_kernel=e["conv_kernel"], conv_dtype=torch.bfloat16)


def check_state_bytes(answer: object) -> str:
    """Exercise 1: the bytes one Gated DeltaNet layer of ``EXERCISE_1`` holds per sequence, at any context."""
    e = EXERCISE_1
    state = e["n_heads"] * e["d_k"] * e["d_v"]
    conv = e["conv_channels"] * (e["conv_kernel"] - 1)
    want = expected_state_bytes()

    def check(a: object) -> str:
        got = as_integer(a, "the state in bytes")
        assert got != state * 2 + conv * 2, "the recurrent state is kept in float32 (4 bytes), not bfloat16"
        assert got != state * 4, "the short convolution keeps its last K - 1 inputs too: conv_channels x (K - 1)"
        assert got != state * 4 + e["conv_channels"] * e["conv_kernel"] * 2, (
            "the convolution needs the last K - 1 inputs, not K (Hugging Face keeps K; the math needs K - 1)")
        assert got != state * 4 + conv * 4, "the convolution's inputs are activations, kept in bfloat16 (2 bytes)"
        assert got != state, "count bytes, not numbers: float32 is 4 bytes"
        assert got == want, "not yet: n_heads x d_k x d_v x 4 + conv_channels x (K - 1) x 2"
        return (f"{want:,} bytes ({want / 2**20:.2f} MiB) per layer and sequence, the same at 1 token as at 1M: "
                f"{state * 4:,} of state and {conv * 2:,} of convolution inputs")

    return run_check("state bytes", answer, check)


# ----------------------------------------------------------------------------------------------------
# exercise 2


def expected_crossover() -> int:
    """The shortest context at which a full layer's bf16 K and V pass the linear layer's state
    (:func:`attnlab.costs.state_crossover_context`)."""
    per_token = 2 * EXERCISE_2["n_kv_heads"] * EXERCISE_2["head_dim"] * 2
    return costs.state_crossover_context(expected_state_bytes(), per_token)


def check_crossover(answer: object) -> str:
    """Exercise 2: the shortest context L (tokens) at which one full layer's cache holds more bytes than one
    linear layer's fixed state."""
    want = expected_crossover()
    kv = 2 * EXERCISE_2["n_kv_heads"] * EXERCISE_2["head_dim"]

    def check(a: object) -> str:
        got = as_integer(a, "the context")
        assert got != expected_state_bytes() // (kv // 2) + 1 and got != 2 * want - 1 and got != want * 2, (
            "a full layer caches K and V: 2 x n_kv_heads x head_dim numbers per token, 2 bytes each")
        assert got != expected_state_bytes() // kv + 1, "each cached number is bfloat16: 2 bytes per token and number"
        assert got != want - 1, (
            "at that length the cache is still no larger than the state: floor(state / per token) + 1")
        assert got == want, "not yet: floor(state bytes / cache bytes per token) + 1"
        return (f"from {want:,} tokens on a full layer's cache ({kv * 2:,} bytes per token) outgrows the linear "
                f"layer's state; at 128K it is {131_072 * kv * 2 / expected_state_bytes():.0f}× the state")

    return run_check("crossover context", answer, check)


# ----------------------------------------------------------------------------------------------------
# exercise 3


def expected_overwrite() -> dict[str, list[float]]:
    """What the query e_1 reads after each write, for linear attention (additive) and the delta rule (beta = 1),
    run with :mod:`attnlab.linear_attention` in float64."""
    vals = torch.tensor(EXERCISE_3["values"], dtype=torch.float64)
    n = len(vals)
    e1 = torch.tensor([1.0, 0.0], dtype=torch.float64)
    k = e1.expand(1, 1, n, 2).clone()
    v = vals.view(1, 1, n, 1)
    delta, _ = delta_rule_recurrent(k, k, v, torch.ones(1, 1, n, dtype=torch.float64))
    linear, _ = linear_attention_recurrent(k, k, v)
    return {"linear": linear[0, 0, :, 0].tolist(), "delta": delta[0, 0, :, 0].tolist()}


def check_overwrite_prediction(answer: object) -> str:
    """Exercise 3, predict then run: a dict {"linear": [3 reads], "delta": [3 reads]}, the query e_1's read-out
    after each of the three writes under each rule."""
    want = expected_overwrite()

    def check(a: object) -> str:
        assert isinstance(a, dict) and set(a) == {"linear", "delta"}, (
            'answer with a dict {"linear": [r1, r2, r3], "delta": [r1, r2, r3]}')
        got = {}
        for rule in ("linear", "delta"):
            assert isinstance(a[rule], (list, tuple)) and len(a[rule]) == 3, f"{rule}: three read-outs, one per write"
            got[rule] = [as_number(x, f"each {rule} read-out") for x in a[rule]]
        assert got["linear"] != want["delta"], (
            "linear attention only adds: S_t = S_{t-1} + phi(k) v^T, so the values under one key pile up, and the "
            "normaliser divides by how many were written")
        sums = [sum(EXERCISE_3["values"][:i + 1]) for i in range(3)]
        assert got["linear"] != sums, "the read-out is divided by z^T phi(q): the sum over the count of writes"
        assert got["delta"] != want["linear"], (
            "the delta rule first subtracts what the key already reads (S^T k): with beta = 1 the slot is replaced")
        assert got["linear"] == want["linear"], "not yet for linear attention: each write adds its value to the slot"
        assert got["delta"] == want["delta"], "not yet for the delta rule: with beta = 1 the read-out is the last value"
        return (f"linear attention reads {want['linear']}: the values written under one key are summed and the "
                f"normaliser divides by their count, so the read-out is their running mean and an old binding is "
                f"never replaced, only blurred; the delta rule reads {want['delta']}: u = beta (v - S^T k) writes "
                "only the difference, and with beta = 1 the key's slot holds the newest value")

    return run_check("overwrite prediction", answer, check)
