"""Checks for chapter 4, Key-Value caching.

    from attnlab.exercises import ch04
    print(ch04.check_cache_bytes(answer_cache_bytes))                # an int, bytes
    print(ch04.check_decode_loop(answer_decode_loop))                # a function (layer, x) -> y
    print(ch04.check_llama3_tokens_in_24gib(answer_tokens_in_24gib)) # an int, tokens
    print(ch04.check_prediction_key_rows(prediction_key_rows))       # predict, then run: an int

Each check compares the answer with :mod:`attnlab.kv_cache`, :mod:`attnlab.gqa` and :mod:`attnlab.sizing`:
``None`` returns a reminder, a right answer "✓ ...", a wrong one raises ``AssertionError`` with a hint
aimed at the usual slip.
"""

from __future__ import annotations

import torch

from attnlab import sizing
from attnlab.devices import dtype_bytes
from attnlab.exercises._common import as_number, run_check, run_prediction
from attnlab.gqa import AttentionConfig, GroupedQueryAttention
from attnlab.kv_cache import LayerCache

#: Exercise 1's model: 24 layers of this attention shape, cache in float16, 4 sequences of 8,192 tokens.
EXERCISE_1 = {"config": AttentionConfig(d_model=2048, n_heads=16, n_kv_heads=4), "n_layers": 24,
              "dtype": torch.float16, "batch": 4, "seq_len": 8192}

#: Exercise 3: the model, the memory (GiB) and the dtype of both its weights and its cache.
EXERCISE_3 = {"model": "llama-3-8b", "gpu_gib": 24, "dtype": "bfloat16"}


def expected_cache_bytes() -> int:
    """Exercise 1's answer: 2 n_kv_heads d_h (``cache_elements_per_token``) x layers x bytes x tokens x batch."""
    e = EXERCISE_1
    per_token_layer = e["config"].cache_elements_per_token()  # 2 * n_kv_heads * head_dim
    return per_token_layer * e["n_layers"] * dtype_bytes(e["dtype"]) * e["seq_len"] * e["batch"]


def check_cache_bytes(answer: object) -> str:
    """Exercise 1: bytes of the KV cache of :data:`EXERCISE_1` (an int)."""
    e = EXERCISE_1
    c = e["config"]
    expected = expected_cache_bytes()

    def check(a: object) -> str:
        value = as_number(a, "the cache size in bytes")
        assert value != expected * c.group_size, (
            f"that caches all {c.n_heads} query heads; only the {c.n_kv_heads} KV heads have keys and values"
        )
        assert value != expected // 2, (
            "half the answer: every token keeps a key AND a value, and float16 takes 2 bytes a number"
        )
        assert value != expected * 2, "twice the answer: float16 takes 2 bytes a number, not 4"
        assert value != expected // e["n_layers"], f"that is one layer; the model has {e['n_layers']}"
        assert value != expected // e["batch"], (
            f"that is one sequence (or K and V and the 2 bytes both left out); the batch holds {e['batch']}"
        )
        assert value != expected / 2**30, "that is in GiB; the exercise asks for bytes"
        assert value == expected, (
            "not yet: 2 (K and V) × KV heads × head_dim × layers × bytes per number × tokens × batch, "
            "with head_dim = d_model / n_heads"
        )
        return (f"{expected:,} bytes = 2 × {c.n_kv_heads} × {c.head_dim} × {e['n_layers']} × "
                f"{dtype_bytes(e['dtype'])} B × {e['seq_len']:,} × {e['batch']} ({expected / 2**30:g} GiB)")

    return run_check("cache bytes", answer, check)


class _CallLog:
    """Records every call of an attention layer: the tokens fed and the cache passed (None if none)."""

    def __init__(self, layer: GroupedQueryAttention) -> None:
        self.calls: list[tuple[int, LayerCache | None]] = []
        self.handle = layer.register_forward_pre_hook(self._hook, with_kwargs=True)

    def _hook(self, module, args, kwargs) -> None:
        x = args[0] if args else kwargs.get("x")
        cache = args[1] if len(args) > 1 else kwargs.get("cache")
        seq = x.shape[1] if isinstance(x, torch.Tensor) and x.dim() == 3 else -1
        self.calls.append((seq, cache if isinstance(cache, LayerCache) else None))


def _decode_cases() -> list[tuple[GroupedQueryAttention, torch.Tensor]]:
    """Random float64 layers (MHA, GQA, MQA; RoPE on and off) and inputs (batch 1 and 2, 1 to 9 tokens)."""
    g = torch.Generator().manual_seed(4)
    cases = []
    for d_model, n_heads, n_kv, rope, batch, seq in [(32, 4, 4, True, 1, 9), (32, 4, 2, True, 2, 6),
                                                     (48, 6, 1, False, 1, 5), (16, 2, 2, True, 1, 1)]:
        torch.manual_seed(int(torch.randint(0, 2**31, (1,), generator=g)))
        layer = GroupedQueryAttention(AttentionConfig(d_model, n_heads, n_kv, rope=rope)).double().eval()
        x = torch.randn(batch, seq, d_model, generator=g, dtype=torch.float64)
        cases.append((layer, x))
    return cases


def check_decode_loop(answer: object) -> str:
    """Exercise 2: a function ``(layer, x) -> y`` that runs ``layer`` one token at a time through a
    :class:`LayerCache` and returns the outputs of all positions, equal to ``layer(x).output``.

    Verified on random MHA, GQA and MQA layers in float64: every call feeds exactly one token, passes
    one cache to every call, and the result matches the full causal forward."""

    def check(fn: object) -> str:
        assert callable(fn), f"answer should be a function (layer, x) -> y, got {type(fn).__name__}"
        cases = _decode_cases()
        for layer, x in cases:
            log = _CallLog(layer)
            try:
                with torch.no_grad():
                    got = fn(layer, x.clone())
            except AssertionError:
                raise
            except Exception as err:  # a learner's bug: report it as a failed check
                hint = ("; the layer returns an AttentionOutput: keep its .output, the (batch, 1, d_model) tensor"
                        if "AttentionOutput" in str(err) else "")
                raise AssertionError(
                    f"calling your function on x of shape {tuple(x.shape)} raised {type(err).__name__}: {err}{hint}"
                ) from err
            finally:
                log.handle.remove()
            with torch.no_grad():
                want = layer(x).output
            b, n, _ = x.shape
            assert log.calls, "your function never called the layer"
            seqs = [s for s, _ in log.calls]
            assert all(s == 1 for s in seqs), (
                f"for {n} tokens your loop fed the layer {seqs} tokens per call: a decode step feeds only "
                "the new token, x[:, t:t+1]; the cache supplies the earlier ones"
            )
            assert len(seqs) == n, f"{n} tokens need {n} decode steps, your function made {len(seqs)} calls"
            caches = [c for _, c in log.calls]
            assert all(c is not None for c in caches), (
                "pass the cache to the layer: layer(x_t, cache=cache), with cache = LayerCache()"
            )
            assert all(c is caches[0] for c in caches), (
                "a new LayerCache at every step forgets the earlier tokens: create one before the loop"
            )
            assert isinstance(got, torch.Tensor), f"return a tensor (batch, seq, d_model), got {type(got).__name__}"
            assert tuple(got.shape) == tuple(x.shape), (
                f"for x of shape {tuple(x.shape)} you returned shape {tuple(got.shape)}: concatenate the "
                "per-step outputs along the sequence axis, torch.cat(outputs, dim=1)"
            )
            assert torch.allclose(got, want, atol=1e-10, rtol=0), (
                f"the outputs differ from layer(x).output by up to {float((got - want).abs().max()):.2e}: "
                "feed token t, x[:, t:t+1], at step t and keep each step's output in order"
            )
        return (f"one token per call, one growing LayerCache, and the outputs equal the full forward on "
                f"{len(cases)} random layers (MHA, GQA, MQA)")

    return run_check("decode loop with LayerCache", answer, check)


def expected_tokens_in_24gib() -> int:
    """Exercise 3's answer: floor((24 GiB - weights) / bytes per token), both in bfloat16."""
    e = EXERCISE_3
    return sizing.tokens_that_fit(e["model"], e["gpu_gib"], e["dtype"], weights_dtype=e["dtype"])


def check_llama3_tokens_in_24gib(answer: object) -> str:
    """Exercise 3: tokens of Llama-3-8B's bfloat16 cache that fit in 24 GiB beside its bfloat16 weights
    (an int; off by one is accepted, for rounding)."""
    e = EXERCISE_3
    spec = sizing.get_model(e["model"])
    expected = expected_tokens_in_24gib()
    per_token = sizing.cache_bytes_per_token(spec, e["dtype"])
    weights = sizing.weight_bytes(spec, e["dtype"])
    no_weights = sizing.tokens_that_fit(spec, e["gpu_gib"], e["dtype"])
    in_gb = (e["gpu_gib"] * 10**9 - weights) // per_token
    as_mha = sizing.tokens_that_fit(spec, e["gpu_gib"], e["dtype"], scheme="mha", weights_dtype=e["dtype"])

    def close(value: float, target: int) -> bool:
        return abs(value - target) <= 1

    def check(a: object) -> str:
        value = as_number(a, "the number of tokens")
        assert not close(value, no_weights), (
            f"that fills all {e['gpu_gib']} GiB with cache; the {sizing.format_bytes(weights)} of weights "
            "sit in the same memory first"
        )
        assert not close(value, in_gb), f"that reads {e['gpu_gib']} GB (10^9 bytes); 1 GiB is 2^30 bytes"
        assert not close(value, as_mha), (
            f"that caches all {spec.n_heads} heads (MHA); Llama-3-8B caches {spec.n_kv_heads} KV heads (GQA)"
        )
        assert close(value, expected), (
            "not yet: (24 × 2^30 − n_params × 2 bytes) // (2 × KV heads × head_dim × layers × 2 bytes)"
        )
        return (f"{expected:,} tokens: ({e['gpu_gib']} GiB − {sizing.gib(weights):.2f} GiB of weights) / "
                f"{per_token:,} B per token")

    return run_check("Llama-3-8B tokens in 24 GiB", answer, check)


# ----------------------------------------------------------------------------------------------------
# exercise 4: predict, then run

#: Exercise 4: generate this many tokens with a small layer, with and without a cache.
GENERATE = {"tokens": 100, "config": AttentionConfig(d_model=16, n_heads=2, n_kv_heads=2), "seed": 4}


def count_key_rows() -> dict[str, int]:
    """Token positions projected by W^K while a layer produces GENERATE["tokens"] outputs one at a time:
    without a cache (each step re-runs the whole prefix) and with one (each step projects its new token)."""
    e = GENERATE
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(e["seed"])
        layer = GroupedQueryAttention(e["config"]).eval()
        x = torch.randn(1, e["tokens"], e["config"].d_model)
    rows = [0]
    handle = layer.w_k.register_forward_hook(lambda module, args, out: rows.__setitem__(0, rows[0] + out.shape[1]))
    counts = {}
    try:
        with torch.no_grad():
            for t in range(1, e["tokens"] + 1):  # no cache: step t runs the layer on tokens 0 .. t-1
                layer(x[:, :t])
            counts["no_cache"], rows[0] = rows[0], 0
            cache = LayerCache()
            for t in range(e["tokens"]):  # cache: step t runs the layer on token t alone
                layer(x[:, t : t + 1], cache=cache)
            counts["cache"] = rows[0]
    finally:
        handle.remove()
    return counts


def check_prediction_key_rows(prediction: object) -> str:
    """Exercise 4, predict then run: generating 100 tokens one at a time WITHOUT a cache, how many token
    positions pass through W^K in total? Right within 1% of the count a forward hook measures."""

    def judge(guess: object) -> tuple[bool, str]:
        value = as_number(guess, "your prediction")
        counts, n = count_key_rows(), GENERATE["tokens"]
        right = abs(value - counts["no_cache"]) <= 0.01 * counts["no_cache"]
        slip = ""
        if value == n:
            slip = f"{n} is the count WITH a cache. "
        elif value == n * n:
            slip = f"{n}² counts a full prefix at every step; step t runs only its t tokens. "
        return right, (
            f"{slip}A hook on W^K counted {counts['no_cache']:,} rows without a cache: step t re-projects all t tokens "
            f"of the prefix, 1 + 2 + ... + {n} = {n}·{n + 1}/2. With a cache it counted {counts['cache']}: each key is "
            f"projected once and kept. The gap grows with length: at 4,096 tokens, {4096 * 4097 // 2:,} against 4,096."
        )

    return run_prediction("key projections without a cache", prediction, judge)
