"""Checks for chapter 13, Fact-check.

    from attnlab.exercises import ch13
    print(ch13.check_llama3_70b_bytes(answer_llama3_70b_bytes))  # an int, bytes per token
    print(ch13.check_gemma2_bytes(answer_gemma2_bytes))          # an int, bytes per token
    print(ch13.check_gpus_needed(answer_gpus_needed))            # an int, GPUs

Each check compares the answer with :mod:`attnlab.sizing` or :mod:`attnlab.factcheck`: ``None`` returns a
reminder, a right answer "✓ ...", a wrong one raises ``AssertionError`` with a hint aimed at the usual slip.
"""

from __future__ import annotations

from attnlab import factcheck, sizing
from attnlab.exercises._common import as_integer, run_check


def check_llama3_70b_bytes(answer: object) -> str:
    """Exercise 1: bytes one token adds to Llama-3-70B's cache in bfloat16, all layers: 2 n_g d_h l x 2."""
    spec = sizing.MODELS["llama-3-70b"]
    expected = sizing.cache_bytes_per_token(spec)

    def check(a: object) -> str:
        value = as_integer(a, "bytes per token")
        assert value != sizing.cache_bytes_per_token(spec, scheme="mha"), (
            f"that counts the {spec.n_heads} query heads; only the {spec.n_kv_heads} KV heads are cached"
        )
        assert value != expected // spec.n_layers, f"that is one layer; Llama-3-70B has {spec.n_layers}"
        assert value != expected // 2, "that counts numbers, not bytes: bfloat16 takes 2 bytes a number"
        assert value != expected * 2, "a key AND a value per KV head, 2 bytes each: 2 x n_g x d_h x l x 2, no more"
        assert value == expected, "not yet: 2 (K and V) x n_g x d_h x layers x 2 bytes"
        return f"{expected:,} bytes = 2 × {spec.n_kv_heads} × {spec.head_dim} × {spec.n_layers} × 2"

    return run_check("Llama-3-70B bytes per token", answer, check)


def check_gemma2_bytes(answer: object) -> str:
    """Exercise 2: bytes per token for Gemma-2-9B in bfloat16, whose config sets head_dim 256 explicitly."""
    spec = sizing.MODELS["gemma-2-9b"]
    expected = sizing.cache_bytes_per_token(spec)
    mistakes = factcheck.common_mistakes()

    def check(a: object) -> str:
        value = as_integer(a, "bytes per token")
        assert value != mistakes["head_dim"]["wrong"], (
            f"that uses hidden_size / n_heads = {spec.hidden_size // spec.n_heads}; Gemma-2's config.json sets "
            f"head_dim = {spec.head_dim}"
        )
        assert value != sizing.cache_bytes_per_token(spec, scheme="mha"), (
            f"that counts {spec.n_heads} query heads; {spec.n_kv_heads} KV heads are cached"
        )
        assert value == expected, "not yet: 2 x n_g x head_dim x layers x 2 bytes"
        return f"{expected:,} bytes = 2 × {spec.n_kv_heads} × {spec.head_dim} × {spec.n_layers} × 2"

    return run_check("Gemma-2-9B bytes per token", answer, check)


BATCH, SEQ_LEN, GPU_GIB = 32, 131_072, 80


def check_gpus_needed(answer: object) -> str:
    """Exercise 3: 80 GiB GPUs to hold DeepSeek-V3's bf16 weights plus the MLA cache of 32 sequences of
    128K tokens (:func:`attnlab.factcheck.gpus_needed`)."""
    expected = factcheck.gpus_needed("deepseek-v3", BATCH, SEQ_LEN, GPU_GIB)
    no_rope = factcheck.common_mistakes()["rope_key"]["wrong"]

    def check(a: object) -> str:
        value = as_integer(a, "the number of GPUs")
        assert value != factcheck.gpus_needed("deepseek-v3", BATCH, SEQ_LEN, GPU_GIB, no_rope), (
            "that leaves out MLA's decoupled RoPE key: the cache holds d_c + d_h^R = 576 numbers per token and layer"
        )
        assert value != factcheck.gpus_needed("deepseek-v3", BATCH, SEQ_LEN, GPU_GIB, 0), (
            "that is the weights alone: add the cache, batch x tokens x bytes per token"
        )
        assert value != factcheck.gpus_needed("deepseek-v3", BATCH, SEQ_LEN, GPU_GIB,
                                              sizing.cache_bytes_per_token("deepseek-v3", scheme="mha")), (
            "that sizes the cache as MHA; DeepSeek-V3 caches MLA's latent"
        )
        assert value == expected, "not yet: ceil((weights + 32 x 131,072 x bytes per token) / (80 x 2^30))"
        return f"{expected} GPUs of {GPU_GIB} GiB"

    return run_check("GPUs for DeepSeek-V3 at 32 x 128K", answer, check)
