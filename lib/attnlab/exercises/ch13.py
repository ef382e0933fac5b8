"""Checks for chapter 13, Fact-check.

    from attnlab.exercises import ch13
    print(ch13.check_cache_numbers(answer_cache_numbers))        # a function config -> int
    print(ch13.check_prediction_naive_cache(prediction_naive_cache))  # predict, then run: a float
    print(ch13.check_gpus_needed(answer_gpus_needed))            # an int, GPUs

Exercise 1 reads published configs by hand (its check reads them its own way, :func:`reference_numbers`);
exercise 3 compares with :mod:`attnlab.factcheck`: ``None`` returns a reminder, a right answer "✓ ...", a
wrong one raises ``AssertionError`` with a hint aimed at the usual slip.
"""

from __future__ import annotations

from attnlab import costs, factcheck, sizing
from attnlab.exercises._common import Shortcut, as_integer, as_number, call_answer, run_check, run_prediction

#: Exercise 1's configs: the fields of each model's config.json that size its cache, under the names
#: transformers gives them (Falcon's own file says n_head; FalconConfig maps it to num_attention_heads).
#: Sources: huggingface.co/meta-llama/Meta-Llama-3-70B, google/gemma-2-9b, tiiuae/falcon-7b,
#: Qwen/Qwen2.5-7B, deepseek-ai/DeepSeek-V3 (config.json of each).
CONFIGS: dict[str, dict] = {
    "Llama-3-70B": {"hidden_size": 8192, "num_attention_heads": 64, "num_key_value_heads": 8,
                    "num_hidden_layers": 80},
    "Gemma-2-9B": {"hidden_size": 3584, "num_attention_heads": 16, "num_key_value_heads": 8, "head_dim": 256,
                   "num_hidden_layers": 42},
    "Falcon-7B": {"hidden_size": 4544, "num_attention_heads": 71, "multi_query": True, "num_hidden_layers": 32},
    "Qwen2.5-7B": {"hidden_size": 3584, "num_attention_heads": 28, "num_key_value_heads": 4,
                   "num_hidden_layers": 28},
    "DeepSeek-V3": {"hidden_size": 7168, "num_attention_heads": 128, "num_key_value_heads": 128,
                    "kv_lora_rank": 512, "qk_rope_head_dim": 64, "qk_nope_head_dim": 128, "v_head_dim": 128,
                    "num_hidden_layers": 61},
}

#: Exercise 1 reads configs by hand: the course's sizing and cost modules would do it for the learner.
SIZING_SHORTCUT = Shortcut("attnlab.sizing or attnlab.costs", (sizing, costs),
                           "read the fields of the config dict yourself")


def reference_numbers(config: dict) -> int:
    """Numbers one token adds to one full-attention layer's cache, read off ``config`` as the model code
    does: MLA (kv_lora_rank set) caches d_c + d_h^R; otherwise a key and a value of head_dim (the explicit
    field when there is one, else hidden_size / num_attention_heads) per KV head, one KV head under
    multi_query, num_attention_heads when num_key_value_heads is absent (MHA)."""
    if config.get("kv_lora_rank"):
        return config["kv_lora_rank"] + config["qk_rope_head_dim"]
    heads = config["num_attention_heads"]
    n_kv = 1 if config.get("multi_query") else config.get("num_key_value_heads", heads)
    head_dim = config.get("head_dim") or config["hidden_size"] // heads
    return 2 * n_kv * head_dim


def _slips(config: dict) -> dict[str, int]:
    """The usual misreadings of ``config``, each with its message (those that give the right number are
    dropped by the caller)."""
    heads, hidden = config["num_attention_heads"], config["hidden_size"]
    out = {}
    if config.get("kv_lora_rank"):
        d_c, d_r = config["kv_lora_rank"], config["qk_rope_head_dim"]
        out["the latent alone: MLA also caches the decoupled RoPE key, qk_rope_head_dim wide"] = d_c
        out["MLA's latent serves keys AND values: it is cached once, not twice"] = 2 * (d_c + d_r)
        out["that counts the heads' keys and values MLA rebuilds; it caches the latent and the RoPE key, shared "
            "by every head"] = heads * (config["qk_nope_head_dim"] + d_r + config["v_head_dim"])
        return out
    head_dim = config.get("head_dim") or hidden // heads
    n_kv = 1 if config.get("multi_query") else config.get("num_key_value_heads", heads)
    out["hidden_size / num_attention_heads is only the default: this config sets head_dim explicitly"] = (
        2 * n_kv * (hidden // heads))
    out["multi_query: true means ONE key head and ONE value head for all query heads"] = 2 * heads * head_dim
    out["that counts every query head; only num_key_value_heads heads are cached (GQA)"] = 2 * heads * head_dim
    out["a key AND a value per KV head: multiply by 2"] = n_kv * head_dim
    out["that is over all layers; the question asks for one layer"] = 2 * n_kv * head_dim * config["num_hidden_layers"]
    return out


def check_cache_numbers(answer: object) -> str:
    """Exercise 1: a function ``config -> int``, the numbers one token adds to ONE full-attention layer's
    cache, read off a config dict (:data:`CONFIGS`); compared with :func:`reference_numbers`. The answer may
    not call :mod:`attnlab.sizing` or :mod:`attnlab.costs`."""

    def check(fn: object) -> str:
        assert callable(fn), f"answer should be a function config -> int, got {type(fn).__name__}"
        for name, config in CONFIGS.items():
            got = call_answer(fn, dict(config), shortcuts=[SIZING_SHORTCUT])
            value = as_integer(got, f"the numbers per token of {name}")
            want = reference_numbers(config)
            if value == want:
                continue
            for message, slip in _slips(config).items():
                if value == slip and slip != want:
                    raise AssertionError(f"{name}: {message} (expected {want:,}, got {value:,})")
            raise AssertionError(f"{name}: expected {want:,} numbers per token and layer, got {value:,}")
        summary = ", ".join(f"{name} {reference_numbers(c):,}" for name, c in CONFIGS.items())
        return f"right for all {len(CONFIGS)} configs: {summary} numbers per token and layer"

    return run_check("cache numbers from a config", answer, check)


def check_prediction_naive_cache(prediction: object) -> str:
    """Exercise 2, predict then run: how many times DeepSeek-V3's MLA cache would its cache be if it kept
    the per-head keys and values that MLA's naive mode rebuilds (keys d_h + d_h^R = 192 wide, values 128, 128
    heads)? Right within 10%."""

    def judge(guess: object) -> tuple[bool, str]:
        value = as_number(guess, "your prediction")
        assert value > 0, f"a ratio of cache sizes is positive, got {value}"
        c = CONFIGS["DeepSeek-V3"]
        heads, d_h, d_r, d_v = c["num_attention_heads"], c["qk_nope_head_dim"], c["qk_rope_head_dim"], c["v_head_dim"]
        mla = reference_numbers(c)
        naive, mha_128 = heads * (d_h + d_r + d_v), heads * 2 * d_h
        right = abs(value - naive / mla) <= 0.1 * naive / mla
        slip = (f"{mha_128 / mla:.1f}× is the comparison with 128-wide keys, MHA of DeepSeek-V3's head width; the "
                "keys MLA rebuilds are wider. " if abs(value - mha_128 / mla) <= 0.05 * mha_128 / mla else "")
        return right, (
            f"{slip}Per token and layer: MLA caches {c['kv_lora_rank']} + {d_r} = {mla} numbers; the naive mode's keys "
            f"and values take {heads} × ({d_h} + {d_r} + {d_v}) = {naive:,}, {naive / mla:.1f}× as much. Quoting "
            f"\"{mha_128 / mla:.0f}×\" means comparing with MHA keys of width {d_h} "
            f"({heads} × 2 × {d_h} = {mha_128:,}): "
            "both are what-ifs, so a claim should say which one it uses."
        )

    return run_prediction("naive-mode cache / MLA cache", prediction, judge)


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
