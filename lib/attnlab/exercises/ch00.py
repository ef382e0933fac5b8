"""Checks for chapter 0, Introduction: sizing a KV cache by hand.

    from attnlab.exercises import ch00
    print(ch00.check_prediction_cache_meets_weights(prediction_cache_meets_weights))  # predict, then run
    print(ch00.check_mla_cache_gib(answer_mla_cache_gib))                    # a float, GiB

Each check compares the answer with :mod:`attnlab.sizing`: ``None`` returns a reminder, a right answer
"✓ ...", a wrong one raises ``AssertionError`` with a hint aimed at the usual slip; the prediction is judged
and explained with the numbers.
"""

from __future__ import annotations

import math

from attnlab import sizing
from attnlab.exercises._common import as_number, run_check, run_prediction

GIB_PER_GB = sizing.GIB / 1e9  # a size in GiB times this is the same size in GB


#: Exercise 1: the model whose cache meets its weights, both in this dtype.
MEETS = {"model": "llama-3-8b", "dtype": "bfloat16"}


def cache_meets_weights() -> dict[str, float]:
    """The context (tokens of one sequence) at which Llama-3-8B's KV cache takes as many bytes as its weights,
    both in bfloat16, with the two sizes it compares (:mod:`attnlab.sizing`)."""
    spec = sizing.MODELS[MEETS["model"]]
    per_token = sizing.cache_bytes_per_token(spec, MEETS["dtype"])
    weights = sizing.weight_bytes(spec, MEETS["dtype"])
    return {"tokens": weights / per_token, "per_token": per_token, "weights": weights}


def check_prediction_cache_meets_weights(prediction: object) -> str:
    """Exercise 1, predict then run: at how many tokens of one sequence does Llama-3-8B's bfloat16 KV cache
    weigh as much as its bfloat16 weights? Right within 25%."""

    def judge(guess: object) -> tuple[bool, str]:
        value = as_number(guess, "your prediction")
        assert value > 0, f"a number of tokens is positive, got {value}"
        spec = sizing.MODELS[MEETS["model"]]
        m = cache_meets_weights()
        right = abs(value - m["tokens"]) <= 0.25 * m["tokens"]
        context = spec.max_context
        return right, (
            f"About {m['tokens']:,.0f} tokens: the weights take {sizing.format_bytes(m['weights'])}, and each token "
            f"adds 2 (K and V) × {spec.n_kv_heads} KV heads × {spec.head_dim} × {spec.n_layers} layers × 2 bytes = "
            f"{m['per_token']:,} bytes. That is beyond its published context of {context:,} tokens, so one sequence "
            f"never gets there (a full one caches {m['per_token'] * context / m['weights']:.2f}× the weights' size), "
            f"but a batch does: 32 full sequences cache {32 * m['per_token'] * context / m['weights']:.1f}×. When a "
            "model serves many users, the cache, not the model, fills the GPU: the pressure every chapter of this "
            "course relieves."
        )

    return run_prediction("tokens at which the cache weighs what the weights do", prediction, judge)


def check_mla_cache_gib(answer: object) -> str:
    """Exercise 2: GiB of DeepSeek-V3's MLA cache for one 128K-token (131,072) sequence in bfloat16.

    Expected (d_c + d_h^R) x l x 131072 x 2 bytes / 2^30, to 0.01 GiB.
    """
    spec = sizing.MODELS["deepseek-v3"]
    seq_len = 128 * 1024
    expected = sizing.gib(sizing.kv_cache_bytes(spec, seq_len, dtype="bfloat16"))
    latent_only = spec.kv_lora_rank * spec.n_layers * seq_len * 2 / sizing.GIB

    def check(a: object) -> str:
        value = as_number(a, "the cache size in GiB")
        assert not math.isclose(value, latent_only, abs_tol=0.01), (
            "that is the latent alone: MLA also caches the decoupled RoPE key k^R (d_h^R wide) per token"
        )
        assert not math.isclose(value, expected * GIB_PER_GB, abs_tol=0.01), (
            "that is in GB (10^9 bytes); divide by 2^30 for GiB"
        )
        assert math.isclose(value, expected, abs_tol=0.01), (
            "not yet: (d_c + d_h^R) x layers x tokens x 2 bytes, then divide by 2^30"
        )
        return (f"{expected:.2f} GiB = ({spec.kv_lora_rank} + {spec.qk_rope_head_dim}) × {spec.n_layers} × "
                f"{seq_len:,} × 2 B / 2^30")

    return run_check("DeepSeek-V3 MLA cache at 128K tokens", answer, check)

