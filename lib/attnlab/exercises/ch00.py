"""Checks for chapter 0, Introduction: sizing a KV cache by hand.

    from attnlab.exercises import ch00
    print(ch00.check_llama3_bytes_per_token(answer_llama3_bytes_per_token))  # an int, bytes
    print(ch00.check_kv_heads_for_8x(answer_kv_heads_for_8x))                # an int, KV heads
    print(ch00.check_mla_cache_gib(answer_mla_cache_gib))                    # a float, GiB

Each check compares the answer with :mod:`attnlab.sizing`: ``None`` returns a reminder, a right answer
"✓ ...", a wrong one raises ``AssertionError`` with a hint aimed at the usual slip.
"""

from __future__ import annotations

import math

from attnlab import sizing
from attnlab.exercises._common import as_number, run_check

GIB_PER_GB = sizing.GIB / 1e9  # a size in GiB times this is the same size in GB


def check_llama3_bytes_per_token(answer: object) -> str:
    """Exercise 1: bytes one token adds to Llama-3-8B's KV cache in bfloat16, all layers.

    Expected: 2 (K and V) x n_g x d_h x l x 2 bytes, from its config.json.
    """
    spec = sizing.MODELS["llama-3-8b"]
    expected = sizing.cache_bytes_per_token(spec, "bfloat16")

    def check(a: object) -> str:
        value = as_number(a, "bytes per token")
        assert value != expected // 2, (
            "half the answer: the cache holds a key AND a value per KV head, "
            "and bfloat16 takes 2 bytes a number"
        )
        assert value != expected * spec.group_size, (
            f"that counts all {spec.n_heads} query heads; "
            f"only the {spec.n_kv_heads} KV heads are cached (GQA)"
        )
        assert value != expected // spec.n_layers, f"that is one layer; the model has {spec.n_layers}"
        assert value == expected, (
            "not yet: multiply 2 (K and V) x KV heads x head dim x layers x bytes per number; "
            "head dim = hidden_size / num_attention_heads"
        )
        return f"{expected:,} bytes per token (2 × {spec.n_kv_heads} × {spec.head_dim} × {spec.n_layers} × 2)"

    return run_check("Llama-3-8B bytes per token", answer, check)


def check_kv_heads_for_8x(answer: object) -> str:
    """Exercise 2: how many KV heads make DeepSeek-V3-shaped GQA's cache 8x smaller than its MHA cache.

    Expected n_g with 2 n_h d_h / (2 n_g d_h) = 8, i.e. n_g = n_h / 8.
    """
    spec = sizing.MODELS["deepseek-v3"]
    expected = spec.n_heads // 8

    def check(a: object) -> str:
        value = as_number(a, "the number of KV heads")
        assert value == int(value) and value > 0, "a head count is a positive whole number"
        value = int(value)
        assert spec.n_heads % value == 0, (
            f"{value} does not divide the {spec.n_heads} query heads, "
            "so the heads cannot be split into equal groups"
        )
        ratio = sizing.reduction_vs_mha(spec, "gqa", value)
        assert value == expected, (
            f"{value} KV heads give a cache {sizing.format_ratio(ratio)}× smaller than MHA, not 8×: "
            "the ratio is n_h / n_g"
        )
        return f"{expected} KV heads: {spec.n_heads} / {expected} = 8× less than MHA"

    return run_check("KV heads for 8× less than MHA", answer, check)


def check_mla_cache_gib(answer: object) -> str:
    """Exercise 3: GiB of DeepSeek-V3's MLA cache for one 128K-token (131,072) sequence in bfloat16.

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

