"""Tests for attnlab.window: the window/sink mask against the causal mask it narrows, windowed decoding through the
rolling cache against masked full attention (with and without sinks, any chunking), gpt-oss's learned sink
against the softmax over [scores, sink] with the sink's column dropped, a shared-KV layer against recomputing
with the source layer's K/V, the published patterns against transformers' configs, parity with transformers'
GptOssAttention (sinks and window, prefill and token-by-token decode, float64) and MistralAttention (the
rolling window of Mistral 7B v0.1, to float32 accuracy), the tiny model's variants,
and the cost formulas against measured caches."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from attnlab import costs
from attnlab.attention import attention_matrix, causal_mask
from attnlab.devices import supported_dtypes
from attnlab.gqa import AttentionConfig, grouped_attention, repeat_kv
from attnlab.huggingface import attention_forward
from attnlab.kv_cache import LayerCache
from attnlab.model import TINY_VARIANTS, TinyLM, checkpoint_metrics, generate, load_checkpoint, tiny_config
from attnlab.rope import apply_rope, rope_angles
from attnlab.schemes import GQA_SHARED, GQA_WINDOW, SHARED_KV_DEFAULTS, WINDOW_DEFAULTS
from attnlab.window import (
    PATTERNS,
    LayerPattern,
    RollingCache,
    SharedKVAttention,
    WindowConfig,
    WindowedAttention,
    from_gpt_oss,
    layer_types,
    ring_positions,
    ring_slot,
    sliding_window_mask,
    softmax_with_sink,
    window_attention,
    window_mask,
)

F64 = torch.float64
SETTINGS = settings(max_examples=25, deadline=None)


def random_layer(window: WindowConfig, n_heads=4, n_kv_heads=2, head_dim=4, seed=0) -> WindowedAttention:
    torch.manual_seed(seed)
    layer = WindowedAttention(AttentionConfig(n_heads * head_dim, n_heads, n_kv_heads, head_dim), window).double()
    if layer.sinks is not None:
        with torch.no_grad():
            layer.sinks.normal_(0.0, 2.0)
    return layer


def run_chunks(layer, x, chunks, cache):
    outs, start = [], 0
    for n in chunks:
        outs.append(layer(x[:, start:start + n], cache=cache).output)
        start += n
    return torch.cat(outs, dim=1)


def chunkings(n: int):
    """Ways to feed n tokens: a prefill of any length, then chunks of 1 to 4 tokens."""
    return st.integers(1, n).flatmap(
        lambda first: st.lists(st.integers(1, 4), min_size=0, max_size=n).map(
            lambda rest: _cut(n, [first, *rest])))


def _cut(n, sizes):
    out, total = [], 0
    for s in sizes:
        s = min(s, n - total)
        if s:
            out.append(s)
            total += s
    return out + ([n - total] if total < n else [])


# --- the masks --------------------------------------------------------------------------------------------


@given(n=st.integers(1, 12), window=st.integers(1, 14))
@SETTINGS
def test_window_mask_is_the_causal_mask_narrowed(n, window):
    assert torch.equal(sliding_window_mask(n, window), causal_mask(n, n, window=window))
    assert torch.equal(sliding_window_mask(n), causal_mask(n, n))
    m = sliding_window_mask(n, window)
    assert m.sum(dim=1).tolist() == [min(i + 1, window) for i in range(n)]  # the query's own key counts


@given(n=st.integers(1, 14), window=st.integers(1, 6), n_sinks=st.integers(0, 4))
@SETTINGS
def test_sinks_add_the_first_tokens_to_every_row(n, window, n_sinks):
    m = sliding_window_mask(n, window, n_sinks)
    sinks = torch.arange(n) < n_sinks
    expected = causal_mask(n, n, window=window) | (causal_mask(n, n) & sinks[None, :])
    assert torch.equal(m, expected)
    assert m.sum(dim=1).max() <= window + n_sinks


def test_empty_slots_are_never_attended():
    m = window_mask(torch.tensor([2]), torch.tensor([0, 1, 2, -1]), window=8)
    assert m.tolist() == [[True, True, True, False]]


# --- the ring --------------------------------------------------------------------------------------------


@given(window=st.integers(1, 6), n_sinks=st.integers(0, 3), n=st.integers(1, 30))
@SETTINGS
def test_ring_slots_hold_the_sinks_and_the_last_w_tokens(window, n_sinks, n):
    cache = RollingCache(window, n_sinks)
    for t in range(n):
        cache.update(k=torch.full((1, 1, 1, 2), float(t)))
        assert cache.positions[ring_slot(t, window, n_sinks)] == t  # token t sits in its slot
    held = sorted(p for p in cache.positions.tolist() if p >= 0)
    expected = sorted(set(range(min(n, n_sinks))) | set(range(max(0, n - window), n)))
    assert held == expected
    assert cache.n_tokens == len(expected) == min(n, n_sinks + window)
    k = cache.tensors["k"][0, 0, :, 0]
    assert k.tolist() == cache.positions[: cache.n_tokens].double().tolist()  # each slot holds its token
    assert cache.capacity_nbytes == (n_sinks + window) * 2 * 4  # fixed, however long the sequence


def test_ring_slot_formula():
    assert [ring_slot(t, 4) for t in range(9)] == [0, 1, 2, 3, 0, 1, 2, 3, 0]  # t mod W (Mistral)
    assert [ring_slot(t, 3, 2) for t in range(8)] == [0, 1, 2, 3, 4, 2, 3, 4]  # sinks stay put


@given(window=st.integers(1, 6), n_sinks=st.integers(0, 3), n=st.integers(0, 30), chunk=st.integers(1, 7))
@SETTINGS
def test_a_loaded_ring_is_the_ring_its_tokens_leave(window, n_sinks, n, chunk):
    """ring_positions says which token each slot holds after n tokens, and load(n, ...) of the held entries gives
    the very ring that appending them leaves: same positions, entries, count; the next decode step the same."""
    layer = random_layer(WindowConfig(window, n_sinks))
    x = torch.randn(1, n + 1, 16, dtype=F64)
    ran = RollingCache(window, n_sinks)
    with torch.no_grad():
        if n:
            run_chunks(layer, x[:, :n], [chunk] * (n // chunk) + [n % chunk] * bool(n % chunk), ran)
        assert ring_positions(n, window, n_sinks).tolist() == (ran.positions.tolist() if n else
                                                               [-1] * (window + n_sinks))
        if not n:
            return
        loaded = RollingCache(window, n_sinks)
        loaded.load(n, **{name: t.clone() for name, t in ran.tensors.items()})
        assert torch.equal(loaded.positions, ran.positions) and loaded.seq_len == ran.seq_len == n
        expected = costs.windowed_cache_bytes("gqa", layer_shape(), n, F64, [window], n_sinks)
        assert loaded.nbytes == ran.nbytes == expected
        saved = {name: t.clone() for name, t in loaded.tensors.items()}
        step = layer(x[:, n:], cache=loaded).output
        torch.testing.assert_close(step, layer(x[:, n:], cache=ran).output, rtol=0, atol=0)
        # undo the step: the slot it wrote gets its old entries back (zeros if it held none), the count goes back
        slot = ring_slot(n, window, n_sinks)
        old = {name: (t.narrow(2, slot, 1) if slot < t.shape[2] else torch.zeros_like(t[:, :, :1]))
               for name, t in saved.items()}
        loaded.load(n, slots=torch.tensor([slot]), **old)
        assert torch.equal(loaded.positions, ring_positions(n, window, n_sinks)) and loaded.seq_len == n
        assert all(torch.equal(loaded.tensors[name], saved[name]) for name in saved)
        torch.testing.assert_close(layer(x[:, n:], cache=loaded).output, step, rtol=0, atol=0)


def layer_shape() -> costs.AttentionShape:
    """random_layer's shape: d = 16, 4 heads of 4, 2 K/V heads."""
    return costs.AttentionShape(d_model=16, n_heads=4, head_dim=4, n_kv_heads=2)


# --- windowed decoding == masked full attention ------------------------------------------------------------


@given(data=st.data(), window=st.integers(1, 6), n_sinks=st.integers(0, 3), learned=st.booleans(),
       n=st.integers(1, 14), kv=st.sampled_from([1, 2, 4]))
@SETTINGS
def test_rolling_cache_decode_equals_masked_full_attention(data, window, n_sinks, learned, n, kv):
    """Any chunking through the RollingCache == one pass over the sequence == plain attention with the mask."""
    w = WindowConfig(window, n_sinks, learned)
    layer = random_layer(w, n_kv_heads=kv)
    x = torch.randn(2, n, 16, dtype=F64)
    with torch.no_grad():
        full = layer(x).output
        chunked = run_chunks(layer, x, data.draw(chunkings(n)), w.new_cache())
        # the plain form: repeat K/V per head, softmax(QK^T/sqrt(d) + M) V with M from the window and the sinks
        q, k, v = layer.project(x)
        allowed = sliding_window_mask(n, window, n_sinks)
        if learned:
            scores = (q @ repeat_kv(k, 4 // kv).transpose(-1, -2)) / 2.0
            scores = scores.masked_fill(~allowed, -math.inf)
            sink = layer.sinks.view(1, -1, 1, 1).expand(2, -1, n, 1)
            a = torch.softmax(torch.cat([scores, sink], dim=-1), dim=-1)[..., :-1]
            o = a @ repeat_kv(v, 4 // kv)
        else:
            o, _ = attention_matrix(q, repeat_kv(k, 4 // kv), repeat_kv(v, 4 // kv), mask=allowed)
        plain = layer.w_o(o.transpose(1, 2).reshape(2, n, -1))
    torch.testing.assert_close(chunked, full, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(full, plain, rtol=1e-12, atol=1e-12)


@given(window=st.integers(1, 6), n=st.integers(1, 14))
@SETTINGS
def test_without_sinks_it_is_grouped_attention_with_a_window(window, n):
    layer = random_layer(WindowConfig(window))
    x = torch.randn(1, n, 16, dtype=F64)
    q, k, v = layer.project(x)
    out, _ = grouped_attention(q, k, v, window=window)
    ours, _ = window_attention(q, k, v, torch.arange(n), torch.arange(n), window)
    torch.testing.assert_close(ours, out, rtol=1e-12, atol=1e-12)
    # a LayerCache that keeps everything gives the same decode; the mask does the limiting
    torch.testing.assert_close(run_chunks(layer, x, [1] * n, LayerCache()), layer(x).output, rtol=1e-12, atol=1e-12)


def test_the_ring_decodes_in_place_and_holds_s_plus_w_tokens():
    layer = random_layer(WindowConfig(3, 2))
    cache = layer.window.new_cache()
    x = torch.randn(1, 20, 16, dtype=F64)
    run_chunks(layer, x, [4] + [1] * 16, cache)
    assert cache.n_tokens == 5 and cache.seq_len == 20
    assert sorted(cache.positions.tolist()) == [0, 1, 17, 18, 19]
    assert cache.nbytes == 5 * 2 * 2 * 4 * 8  # 5 tokens x (k, v) x 2 KV heads x d_h 4 x float64


# --- the learned sink ------------------------------------------------------------------------------------


@given(heads=st.integers(1, 4), n_q=st.integers(1, 5), n_k=st.integers(1, 6), scale=st.floats(0.1, 30.0))
@SETTINGS
def test_learned_sink_is_the_softmax_with_the_sink_column_dropped(heads, n_q, n_k, scale):
    scores = torch.randn(2, heads, n_q, n_k, dtype=F64) * scale
    sink = torch.randn(heads, dtype=F64) * scale
    combined = torch.cat([scores, sink.view(1, -1, 1, 1).expand(2, -1, n_q, 1)], dim=-1)
    expected = torch.softmax(combined, dim=-1)[..., :-1]
    got = softmax_with_sink(scores, sink)
    torch.testing.assert_close(got, expected, rtol=1e-12, atol=1e-15)
    # the sink only adds to the denominator: each row is the plain softmax times 1 - (the sink's share)
    share = torch.softmax(combined, dim=-1)[..., -1:]
    torch.testing.assert_close(got, torch.softmax(scores, dim=-1) * (1 - share), rtol=1e-10, atol=1e-15)


def test_a_fully_masked_row_gives_zeros_with_a_sink():
    scores = torch.full((1, 2, 1, 3), -math.inf, dtype=F64)
    assert torch.equal(softmax_with_sink(scores, torch.zeros(2, dtype=F64)), torch.zeros_like(scores))


def test_huge_sink_logits_do_not_overflow():
    scores = torch.tensor([[[[1000.0, 999.0]]]], dtype=F64)
    w = softmax_with_sink(scores, torch.tensor([1001.0], dtype=F64))
    assert torch.isfinite(w).all() and float(w.sum()) < 1


# --- shared KV -----------------------------------------------------------------------------------------


@given(data=st.data(), n=st.integers(1, 12), window=st.sampled_from([None, 3, 5]), kv=st.sampled_from([1, 2]))
@SETTINGS
def test_a_shared_layer_equals_recomputing_with_the_source_layers_kv(data, n, window, kv):
    source = random_layer(WindowConfig(window), n_kv_heads=kv, seed=1)
    torch.manual_seed(2)
    shared = SharedKVAttention(source.config, source, WindowConfig(window)).double()
    x_src, x = torch.randn(2, n, 16, dtype=F64), torch.randn(2, n, 16, dtype=F64)
    with torch.no_grad():
        source(x_src)
        y = shared(x).output
        # recompute: the shared layer's queries against the K/V the source projects from its own input
        _, k, v = source.project(x_src)
        q = apply_rope(shared.w_q(x).view(2, n, 4, 4).transpose(1, 2), torch.arange(n))
        o, _ = grouped_attention(q, k, v, window=window)
        expected = shared.w_o(o.transpose(1, 2).reshape(2, n, -1))
        torch.testing.assert_close(y, expected, rtol=1e-12, atol=1e-12)
        # decoding through the source's cache gives the same, and the shared layer adds nothing to it
        cache = source.window.new_cache()
        outs, start = [], 0
        for size in data.draw(chunkings(n)):
            source(x_src[:, start:start + size], cache=cache)
            outs.append(shared(x[:, start:start + size]).output)
            start += size
        torch.testing.assert_close(torch.cat(outs, dim=1), y, rtol=1e-12, atol=1e-12)
    assert not any("k" in name or "v" in name for name, _ in shared.named_parameters() if name.startswith("w_"))
    assert set(dict(shared.named_parameters())) == {"w_q.weight", "w_o.weight"}


def test_a_shared_layer_refuses_tokens_its_source_has_not_seen():
    source = random_layer(WindowConfig())
    shared = SharedKVAttention(source.config, source).double()
    x = torch.randn(1, 4, 16, dtype=F64)
    with pytest.raises(ValueError, match="has not run yet"):
        shared(x)
    source(x)
    with pytest.raises(ValueError, match="run it on these tokens first"):
        shared(x[:, :2])
    with pytest.raises(ValueError, match="does not keep"):
        SharedKVAttention(random_layer(WindowConfig(3)).config, random_layer(WindowConfig(3)), WindowConfig())


# --- published patterns ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def transformers():
    return pytest.importorskip("transformers")


def test_patterns_match_transformers_configs(transformers):
    """Each pattern's layer types against transformers' own default pattern for that architecture."""
    assert PATTERNS["gpt-oss-120b"].layer_types() == tuple(transformers.GptOssConfig(num_hidden_layers=36).layer_types)
    assert PATTERNS["gemma-2-9b"].layer_types() == tuple(transformers.Gemma2Config(num_hidden_layers=42).layer_types)
    gemma3 = transformers.Gemma3TextConfig(num_hidden_layers=62)
    assert PATTERNS["gemma-3-27b"].layer_types() == tuple(gemma3.layer_types)
    assert transformers.GptOssConfig().sliding_window == PATTERNS["gpt-oss-120b"].window == 128
    assert transformers.MistralConfig().sliding_window == PATTERNS["mistral-7b-v0.1"].window == 4096
    gemma3 = [i for i, t in enumerate(PATTERNS["gemma-3-27b"].layer_types()) if t == "full_attention"]
    assert gemma3 == list(range(5, 62, 6)) and len(gemma3) == 10  # 5 local : 1 global
    assert set(PATTERNS["mistral-7b-v0.1"].windows()) == {4096}
    assert PATTERNS["gemma-2-9b"].windows()[:2] == (4096, None)
    assert all(p.source for p in PATTERNS.values())


def test_patterns_agree_with_the_sizing_catalogue():
    from attnlab import sizing

    for name, pattern in PATTERNS.items():
        spec = sizing.MODELS[name]
        assert tuple("sliding" if w else "full" for w in pattern.windows()) == spec.layer_types, name
        assert (spec.n_layers, spec.sliding_window) == (pattern.n_layers, pattern.window), name


def test_layer_types_rule():
    assert layer_types(4, 2) == ("sliding_attention", "full_attention") * 2
    assert layer_types(3, 0) == ("sliding_attention",) * 3
    assert layer_types(2, 1) == ("full_attention",) * 2
    with pytest.raises(ValueError, match="window"):
        LayerPattern("x", 4, 0, 2)


# --- Hugging Face GptOssAttention ------------------------------------------------------------------------


def gpt_oss_layers(transformers, window=3):
    from transformers.models.gpt_oss import modeling_gpt_oss as modeling

    config = transformers.GptOssConfig(
        hidden_size=32, num_attention_heads=4, num_key_value_heads=2, head_dim=8, num_hidden_layers=2,
        layer_types=["sliding_attention", "full_attention"], sliding_window=window, attention_bias=True,
        rope_parameters={"rope_type": "default", "rope_theta": 10000.0}, max_position_embeddings=64,
        num_local_experts=2, num_experts_per_tok=1, intermediate_size=8, vocab_size=16)
    config._attn_implementation = "eager"
    torch.manual_seed(0)
    layers = [modeling.GptOssAttention(config, i).to(F64) for i in range(2)]
    with torch.no_grad():
        for layer in layers:
            for p in layer.parameters():
                p.normal_(0.0, 0.5)
    return config, layers


@pytest.mark.parametrize("window", [2, 3, 6])
def test_matches_hugging_face_gpt_oss(transformers, window):
    """Outputs and weights of transformers' GptOssAttention (a sliding layer and a full one, both with learned
    sinks), prefill and token-by-token decode through its DynamicCache and masks against ours through the
    RollingCache, in float64 (RoPE's cos and sin computed once, in float64, for both)."""
    from transformers.cache_utils import DynamicCache
    from transformers.masking_utils import create_causal_mask, create_sliding_window_causal_mask

    config, theirs = gpt_oss_layers(transformers, window)
    ours = [from_gpt_oss(layer) for layer in theirs]
    assert [o.window.window for o in ours] == [window, None]
    x = torch.randn(2, 9, 32, dtype=F64)
    hf_cache, caches = DynamicCache(config=config), [o.window.new_cache() for o in ours]
    for start, end in ((0, 5), (5, 6), (6, 7), (7, 8), (8, 9)):
        positions = torch.arange(start, end)
        angles = rope_angles(positions, 8, 10000.0)
        cos, sin = angles.cos()[None].expand(2, -1, -1), angles.sin()[None].expand(2, -1, -1)
        xs, ids = x[:, start:end], positions[None].expand(2, -1)
        masks = {"full_attention": create_causal_mask(config=config, inputs_embeds=xs, attention_mask=None,
                                                      cache=hf_cache, position_ids=ids),
                 "sliding_attention": create_sliding_window_causal_mask(
                     config=config, inputs_embeds=xs, attention_mask=None, cache=hf_cache, position_ids=ids)}
        for i, (hf, layer, cache) in enumerate(zip(theirs, ours, caches, strict=True)):
            y_hf, w_hf = attention_forward(hf, xs, (cos, sin), masks[config.layer_types[i]], hf_cache)
            out = layer(xs, cache=cache, return_weights=True)
            torch.testing.assert_close(out.output, y_hf, rtol=1e-12, atol=1e-12)
            # the ring's keys are in slot order; Hugging Face's in position order (it keeps W - 1 between steps)
            order = cache.last_positions.argsort() if isinstance(cache, RollingCache) else slice(None)
            w = out.weights[..., order]
            w = w[..., -w_hf.shape[-1]:]  # the ring may hold one older key that no query sees
            torch.testing.assert_close(w, w_hf, rtol=1e-12, atol=1e-14)
            assert float(out.weights.detach().sum(dim=-1).max()) < 1  # the sink takes a share of every row


@pytest.mark.parametrize("window", [2, 3, 5])
def test_matches_hugging_face_mistral_rolling_window(transformers, window):
    """Mistral 7B v0.1's layer (every layer sliding, no sinks, no biases): transformers' MistralAttention with its
    DynamicSlidingWindowLayer cache and sliding mask, prefill and token-by-token decode, against WindowedAttention
    through the RollingCache. Its eager softmax runs in float32 whatever the input dtype, so float64 agrees to
    float32 accuracy; a window off by one would differ by far more."""
    from transformers.cache_utils import DynamicCache
    from transformers.masking_utils import create_sliding_window_causal_mask
    from transformers.models.mistral import modeling_mistral as modeling

    config = transformers.MistralConfig(hidden_size=32, num_attention_heads=4, num_key_value_heads=2, head_dim=8,
                                        num_hidden_layers=1, sliding_window=window, max_position_embeddings=64,
                                        intermediate_size=8, vocab_size=16)
    config._attn_implementation = "eager"
    torch.manual_seed(3)
    hf = modeling.MistralAttention(config, 0).to(F64)
    with torch.no_grad():
        for p in hf.parameters():
            p.normal_(0.0, 0.5)
    ours = WindowedAttention(AttentionConfig(32, 4, 2, 8), WindowConfig(window)).double()
    wrong = WindowedAttention(AttentionConfig(32, 4, 2, 8), WindowConfig(window + 1)).double()
    with torch.no_grad():
        for layer in (ours, wrong):
            for name, theirs in (("w_q", "q_proj"), ("w_k", "k_proj"), ("w_v", "v_proj"), ("w_o", "o_proj")):
                getattr(layer, name).load_state_dict(getattr(hf, theirs).state_dict())
    x = torch.randn(2, 9, 32, dtype=F64)
    hf_cache, cache, wrong_cache = DynamicCache(config=config), ours.window.new_cache(), wrong.window.new_cache()
    gaps = []
    for start, end in ((0, 5), (5, 6), (6, 7), (7, 8), (8, 9)):
        positions = torch.arange(start, end)
        angles = rope_angles(positions, 8, config.rope_parameters["rope_theta"])
        angles = torch.cat([angles, angles], dim=-1)  # rotate_half's cos and sin are full width
        cos, sin = angles.cos()[None].expand(2, -1, -1), angles.sin()[None].expand(2, -1, -1)
        xs = x[:, start:end]
        mask = create_sliding_window_causal_mask(config=config, inputs_embeds=xs, attention_mask=None,
                                                 cache=hf_cache, position_ids=positions[None].expand(2, -1))
        y_hf, _ = attention_forward(hf, xs, (cos, sin), mask, hf_cache)
        with torch.no_grad():
            torch.testing.assert_close(ours(xs, cache=cache).output, y_hf, rtol=1e-5, atol=1e-5)
            far = (wrong(xs, cache=wrong_cache).output - y_hf).abs().max()
        if end > window:  # once the window is full, one more key changes the output
            gaps.append(float(far))
    assert max(gaps) > 100 * 1e-5  # far outside the float32 tolerance the right window meets
    assert cache.n_tokens == window  # Hugging Face keeps W - 1 between steps; the ring keeps W


# --- the tiny model --------------------------------------------------------------------------------------


@pytest.mark.parametrize("key, fields", [("gqa_window", {}), ("gqa_shared", {}),
                                         ("gqa_window", {"global_every": 2, "window": 5, "n_sinks": 1}),
                                         ("gqa_shared", {"window": 6, "n_sinks": 2, "n_kv_heads": 1})])
def test_tiny_variants_decode_as_they_prefill(key, fields):
    torch.manual_seed(0)
    model = TinyLM(tiny_config(key, n_layers=4, **fields)).double().eval()
    ids = torch.randint(0, 512, (2, 45))
    with torch.no_grad():
        full = model(ids)
        cache = model.new_cache()
        steps = [model(ids[:, :7], cache=cache)] + [model(ids[:, t:t + 1], cache=cache) for t in range(7, 45)]
    torch.testing.assert_close(torch.cat(steps, dim=1), full, rtol=1e-10, atol=1e-10)
    c = model.config
    windows = [c.layer_window(i).window for i in range(4)]
    sources = [c.kv_source(i) for i in range(4)]
    shape = c.attention_shape()
    expected = costs.windowed_cache_bytes("gqa", shape, 45, F64, windows, c.n_sinks, sources, batch=2)
    assert cache.nbytes == expected
    assert generate(model, ids[:, :5], 8).tolist() == generate(model, ids[:, :5], 8, use_cache=False).tolist()


def test_tiny_variants_settings():
    assert tiny_config("gqa_window").window == WINDOW_DEFAULTS["window"]
    assert tiny_config("gqa_shared").kv_share == SHARED_KV_DEFAULTS["kv_share"]
    assert set(TINY_VARIANTS) == {GQA_WINDOW.key, GQA_SHARED.key, "gqa_hybrid"}  # chapter 18 adds the hybrid
    shared = TinyLM(tiny_config("gqa_shared"))
    assert [type(b.attn).__name__ for b in shared.blocks] == ["WindowedAttention", "SharedKVAttention"] * 2
    assert shared.blocks[1].attn.source is shared.blocks[0].attn
    gqa = TinyLM(tiny_config("gqa"))
    n = sum(p.numel() for p in gqa.parameters()) - sum(p.numel() for p in shared.parameters())
    assert n == 2 * 2 * 128 * 2 * 16  # two layers without W^K, W^V (2 KV heads of 16)


@pytest.mark.parametrize("name", ["tiny_gqa_window", "tiny_gqa_shared"])
def test_shipped_variant_checkpoints(name):
    model = load_checkpoint(name)
    key = name.removeprefix("tiny_")
    assert model.config == tiny_config(key)
    metrics = checkpoint_metrics(name)
    assert metrics["train"] == checkpoint_metrics("tiny_gqa")["train"]  # trained like the others
    assert 2.0 < metrics["val_loss"] < 4.0


# --- costs -----------------------------------------------------------------------------------------------


def test_window_costs():
    shape = costs.AttentionShape(d_model=128, n_heads=8, head_dim=16, n_kv_heads=2, n_layers=4)
    assert costs.window_cache_tokens(100, 32, 4) == 36 and costs.window_cache_tokens(20, 32, 4) == 20
    assert costs.window_cache_tokens(100) == 100
    assert costs.windowed_cache_bytes("gqa", shape, 100, "float32") == costs.cache_bytes("gqa", shape, 100, "float32")
    assert costs.windowed_cache_bytes("gqa", shape, 100, "float32", [32] * 4, 4) == 4 * 36 * 64 * 4
    assert costs.windowed_cache_bytes("gqa", shape, 100, "float32", kv_sources=[0, 0, 2, 2]) == 2 * 100 * 64 * 4
    assert costs.layer_cache_tokens(shape, 1000, [8, None, 8, None], 2, [0, 1, 0, 1]) == [10, 1000, 0, 0]
    # the decode step stops growing at S + W keys
    assert costs.window_decode_attention_flops("gqa", shape, 10_000, 32, 4) == costs.decode_attention_flops(
        "gqa", shape, 35)
    assert costs.window_decode_attention_flops("gqa", shape, 10) == costs.decode_attention_flops("gqa", shape, 10)
    with pytest.raises(ValueError, match="kv_sources"):
        costs.layer_cache_tokens(shape, 10, kv_sources=[0, 2, 2, 3])
    with pytest.raises(ValueError, match="one per layer"):
        costs.layer_cache_tokens(shape, 10, [4, 4])


def test_window_decode_flops_match_the_flop_counter():
    from torch.utils.flop_counter import FlopCounterMode

    shape = costs.AttentionShape(d_model=16, n_heads=4, head_dim=4, n_kv_heads=2, n_layers=1)
    q = torch.randn(1, 4, 1, 4)
    k, v = torch.randn(1, 2, 7, 4), torch.randn(1, 2, 7, 4)  # a ring of S + W = 7 slots
    with FlopCounterMode(display=False) as counter:
        window_attention(q, k, v, torch.tensor([40]), torch.tensor([0, 1, 36, 37, 38, 39, 40]), 5, 2)
    assert counter.get_total_flops() == costs.window_decode_attention_flops("gqa", shape, 40, 5, 2)


# --- dtypes and devices ----------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", supported_dtypes("cpu"), ids=str)
def test_runs_in_every_dtype(dtype):
    layer = random_layer(WindowConfig(3, 1, True)).to(dtype)
    x = torch.randn(1, 6, 16).to(dtype)
    cache = layer.window.new_cache()
    y = run_chunks(layer, x, [3, 1, 1, 1], cache)
    assert y.dtype == dtype and torch.isfinite(y).all()
    ref = layer(x).output
    tol = {torch.bfloat16: 3e-2, torch.float16: 3e-3}.get(dtype, 1e-5)
    torch.testing.assert_close(y, ref, rtol=tol, atol=tol)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_runs_on_cuda():
    layer = random_layer(WindowConfig(3, 1, True)).cuda()
    x = torch.randn(1, 6, 16, dtype=F64, device="cuda")
    cache = layer.window.new_cache()
    torch.testing.assert_close(run_chunks(layer, x, [2, 1, 1, 1, 1], cache), layer(x).output)
