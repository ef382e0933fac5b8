"""Tests for attnlab.v4: DeepSeek-V4's attention layer against its plain forms (dense attention over the
visible entries when top-k covers them, HCA with blocks of 1 token, a window-only layer as masked attention,
the sink as a dropped softmax column, the overlapping pooling written slot by slot), causality, cached
decode equal to prefill across window boundaries, the cache's contents, parity with Hugging Face's
DeepseekV4Attention (prefill and token-by-token decode, compressor state included), devices and dtypes."""

from __future__ import annotations

import copy
import dataclasses
import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from attnlab.attention import attention_matrix, causal_mask
from attnlab.devices import supported_dtypes
from attnlab.huggingface import attention_forward
from attnlab.v4 import (
    DeepSeekV4Attention,
    V4AttentionConfig,
    V4Cache,
    from_transformers,
    pool_windows,
    rope_tail,
    sink_softmax,
)

F64 = torch.float64


def config(layer_type: str = "csa", **change) -> V4AttentionConfig:
    fields = dict(d_model=24, n_heads=4, q_lora_rank=12, o_groups=2, o_lora_rank=6, head_dim=16, rope_head_dim=8,
                  window=6, layer_type=layer_type, index_n_heads=3, index_head_dim=8, index_topk=3,
                  compress_rate={"sliding": None, "csa": 4, "hca": 5}[layer_type])
    return V4AttentionConfig(**(fields | change))


def make_layer(cfg: V4AttentionConfig, seed: int = 0, dtype: torch.dtype = F64) -> DeepSeekV4Attention:
    torch.manual_seed(seed)
    layer = DeepSeekV4Attention(cfg).to(dtype)
    with torch.no_grad():
        for p in layer.parameters():
            p.normal_(0.0, 0.5)
    return layer


def dense_reference(layer: DeepSeekV4Attention, x: torch.Tensor) -> torch.Tensor:
    """The plain form: every query attends to its window and to EVERY compressed entry w < (t + 1) // m, one
    softmax over [scores, sink] with the sink's column dropped, written with loops over queries and keys."""
    c = layer.config
    b, s, _ = x.shape
    positions = torch.arange(s)
    q, _ = layer.queries(x, positions)  # (b, s, h, c)
    keys = [layer.key_values(x, positions)]  # (b, s, c)
    allowed = [causal_mask(s, s, window=c.window)]
    if c.compressed:
        entries = layer.compressor(x)  # (b, n, c), no state: the complete windows of x
        keys.append(entries)
        allowed.append(torch.tensor([[w < (t + 1) // c.compress_rate for w in range(entries.shape[1])]
                                     for t in range(s)], dtype=torch.bool).view(s, entries.shape[1]))
    keys, allowed = torch.cat(keys, 1), torch.cat(allowed, 1)  # (b, T, c), (s, T)
    scores = torch.einsum("bshc,btc->bsht", q, keys) / math.sqrt(c.head_dim)
    scores = scores.masked_fill(~allowed[None, :, None, :], -math.inf)
    sink = layer.sinks.view(1, 1, -1, 1).expand(b, s, -1, 1)
    weights = torch.softmax(torch.cat([scores, sink], -1), dim=-1)[..., :-1]  # the sink's column dropped
    return layer.output(torch.einsum("bsht,btc->bshc", weights, keys), positions)


@st.composite
def shapes(draw, layer_type: str) -> dict:
    """Random layer shapes: heads, groups, KV width, RoPE width (0 included), window, compression rate."""
    n_heads = draw(st.sampled_from([1, 2, 4]))
    head_dim = draw(st.sampled_from([4, 8, 16]))
    return dict(n_heads=n_heads, o_groups=draw(st.sampled_from([g for g in (1, 2, 4) if n_heads % g == 0])),
                head_dim=head_dim, rope_head_dim=draw(st.sampled_from([r for r in (0, 2, 4, 8) if r <= head_dim])),
                window=draw(st.integers(1, 8)),
                compress_rate=None if layer_type == "sliding" else draw(st.integers(1, 5)))


# --- plain forms ----------------------------------------------------------------------------------------


@settings(max_examples=20, deadline=None)
@given(data=st.data(), layer_type=st.sampled_from(["csa", "hca"]), seq=st.integers(1, 23), batch=st.integers(1, 2),
       seed=st.integers(0, 2**16))
def test_top_k_covering_every_entry_equals_dense_attention_over_visible_entries(data, layer_type, seq, batch, seed):
    """CSA with top-k >= the number of entries attends to every visible entry, as HCA always does."""
    layer = make_layer(config(layer_type, index_topk=32, **data.draw(shapes(layer_type))), seed)
    x = torch.randn(batch, seq, 24, dtype=F64)
    reference = dense_reference(layer, x)
    for impl in ("gather", "mask"):
        torch.testing.assert_close(layer.use(impl)(x).output, reference, rtol=1e-10, atol=1e-10)


def test_hca_with_blocks_of_one_token_attends_to_every_tokens_entry():
    """m' = 1: each entry pools one token (softmax over one slot = 1), so entry t = RoPE_t(RMSNorm(W^C h_t)),
    and the query at t sees entries 0..t: attention over every earlier token's entry plus the window."""
    layer = make_layer(config("hca", compress_rate=1, window=1), seed=3)
    with torch.no_grad():
        layer.sinks.fill_(-math.inf)  # no sink: a plain softmax
    x = torch.randn(2, 9, 24, dtype=F64)
    positions = torch.arange(9)
    entries = layer.compressor(x)
    expected = rope_tail(layer.compressor.norm(layer.compressor.wkv(x)), positions, layer.theta)
    torch.testing.assert_close(entries, expected, rtol=1e-12, atol=1e-12)
    q, _ = layer.queries(x, positions)  # (b, s, h, c)
    keys = torch.cat([layer.key_values(x, positions), entries], 1)[:, None]  # window (itself) + entries
    mask = torch.cat([torch.eye(9, dtype=torch.bool), causal_mask(9, 9)], 1)
    o, _ = attention_matrix(q.transpose(1, 2), keys, keys, mask=mask)
    torch.testing.assert_close(layer(x).output, layer.output(o.transpose(1, 2), positions), rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("window", [1, 3, 6, 40])
def test_window_only_layer_is_masked_full_attention(window):
    """A sliding layer (sinks at -inf) is ordinary attention with the sliding-window mask; with the sinks it is
    the plain form above."""
    layer = make_layer(config("sliding", window=window), seed=4)
    x = torch.randn(2, 11, 24, dtype=F64)
    torch.testing.assert_close(layer(x).output, dense_reference(layer, x), rtol=1e-10, atol=1e-10)
    with torch.no_grad():
        layer.sinks.fill_(-math.inf)
    positions = torch.arange(11)
    q, _ = layer.queries(x, positions)
    kv = layer.key_values(x, positions)[:, None]  # one KV head, broadcast over the query heads
    o, _ = attention_matrix(q.transpose(1, 2), kv, kv, mask=causal_mask(11, 11, window=window))
    torch.testing.assert_close(layer(x).output, layer.output(o.transpose(1, 2), positions), rtol=1e-10, atol=1e-10)


@settings(max_examples=25, deadline=None)
@given(shape=st.tuples(st.integers(1, 2), st.integers(1, 5), st.integers(1, 4), st.integers(1, 9)),
       seed=st.integers(0, 2**16))
def test_sinks_are_a_dropped_softmax_column(shape, seed):
    """exp(s_j) / (exp(z) + sum exp(s)) = softmax([s, z])[:-1], with masked scores at -inf and large ones."""
    torch.manual_seed(seed)
    b, s, h, n = shape
    scores = torch.randn(shape, dtype=F64) * 30
    scores[..., 1:] = scores[..., 1:].masked_fill(torch.rand(b, s, h, n - 1) < 0.3, -math.inf)
    sinks = torch.randn(h, dtype=F64) * 30
    full = torch.softmax(torch.cat([scores, sinks.view(1, 1, h, 1).expand(b, s, h, 1)], -1), -1)
    weights = sink_softmax(scores, sinks)
    torch.testing.assert_close(weights, full[..., :-1], rtol=1e-12, atol=1e-15)  # the sink's column dropped
    torch.testing.assert_close(1 - weights.sum(-1), full[..., -1], rtol=1e-9, atol=1e-12)  # the sink takes the rest


def test_overlapping_pooling_written_slot_by_slot():
    """CSA entry w pools the first halves of tokens m(w-1)..mw-1 and the second halves of tokens mw..mw+m-1,
    one softmax per channel over those 2m slots, the position bias B by slot."""
    torch.manual_seed(5)
    b, n, m, c = 2, 4, 3, 5
    content, gate = torch.randn(b, n, m, 2 * c, dtype=F64), torch.randn(b, n, m, 2 * c, dtype=F64)
    pooled = pool_windows(content, gate, overlap=True)
    for w in range(n):
        slots_c = [content[:, w, j, c:] for j in range(m)]  # second halves of window w
        slots_z = [gate[:, w, j, c:] for j in range(m)]
        if w > 0:  # first halves of window w - 1
            slots_c += [content[:, w - 1, j, :c] for j in range(m)]
            slots_z += [gate[:, w - 1, j, :c] for j in range(m)]
        weights = torch.softmax(torch.stack(slots_z), dim=0)  # over slots, per channel
        torch.testing.assert_close(pooled[:, w], (weights * torch.stack(slots_c)).sum(0), rtol=1e-12, atol=1e-12)
    hca = pool_windows(content[..., :c], gate[..., :c], overlap=False)
    torch.testing.assert_close(hca, (torch.softmax(gate[..., :c], 2) * content[..., :c]).sum(2), rtol=1e-12, atol=0)


# --- causality, decode, cache ---------------------------------------------------------------------------


@pytest.mark.parametrize("layer_type", ["sliding", "csa", "hca"])
def test_outputs_do_not_depend_on_later_tokens(layer_type):
    layer = make_layer(config(layer_type, index_topk=2), seed=6)
    x = torch.randn(1, 17, 24, dtype=F64)
    y = layer(x).output
    for t in (0, 3, 4, 9, 15):
        changed = x.clone()
        changed[:, t + 1:] = torch.randn_like(changed[:, t + 1:])
        torch.testing.assert_close(layer(changed).output[:, : t + 1], y[:, : t + 1], rtol=1e-12, atol=1e-12)


@settings(max_examples=15, deadline=None)
@given(data=st.data(), layer_type=st.sampled_from(["sliding", "csa", "hca"]),
       cuts=st.lists(st.integers(1, 25), max_size=4), top_k=st.integers(1, 4), impl=st.sampled_from(["gather", "mask"]),
       seed=st.integers(0, 2**16))
def test_cached_decode_in_any_chunks_equals_prefill(data, layer_type, cuts, top_k, impl, seed):
    """Chunks of any length (single tokens included) through the cache give the prefill's outputs and
    selections: the window, the entries, and the compressors' unfinished windows carry over."""
    layer = make_layer(config(layer_type, index_topk=top_k, **data.draw(shapes(layer_type))), seed).use(impl)
    x = torch.randn(2, 26, 24, dtype=F64)
    prefill = layer(x)
    cache = layer.make_cache()
    bounds = sorted({0, 26, *cuts})
    outs = [layer(x[:, a:e], cache=cache) for a, e in zip(bounds, bounds[1:], strict=False)]
    torch.testing.assert_close(torch.cat([o.output for o in outs], 1), prefill.output, rtol=1e-10, atol=1e-10)
    if layer_type == "csa":  # each chunk's choices, best first, are the prefill's (padded with -1)
        full = prefill.selection.indices
        for (a, e), out in zip(zip(bounds, bounds[1:], strict=False), outs, strict=True):
            mine, width = out.selection.indices, out.selection.indices.shape[-1]
            assert torch.equal(mine, full[:, a:e, :width]) and (full[:, a:e, width:] == -1).all()


@pytest.mark.parametrize("layer_type", ["sliding", "csa", "hca"])
def test_cache_holds_window_entries_index_keys_and_the_unfinished_window(layer_type):
    cfg = config(layer_type)
    layer = make_layer(cfg, seed=7)
    cache = layer.make_cache()
    x = torch.randn(2, 23, 24, dtype=F64)
    for t in range(23):
        layer(x[:, t: t + 1], cache=cache)
    assert cache.seq_len == 23 and cache.window.n_tokens == cfg.window
    assert cache.window.tensors["kv"].shape == (2, cfg.window, cfg.head_dim)
    if layer_type == "sliding":
        assert cache.n_entries == 0 and cache.compressor.pending is None
        return
    m = cfg.compress_rate
    held = cache.compressed.tensors
    assert cache.n_entries == 23 // m and cache.compressor.entries == 23 // m
    torch.testing.assert_close(held["kv"], layer.compressor(x), rtol=1e-12, atol=1e-12)  # stateless prefill
    assert cache.compressor.pending.shape[1] == 23 % m
    if layer_type == "csa":
        assert held["index_key"].shape == (2, 23 // m, cfg.index_head_dim)
        assert cache.compressor.previous.shape == (2, m, 2 * cfg.head_dim)
    else:
        assert set(held) == {"kv"} and cache.compressor.previous is None
    assert cache.nbytes == sum(t.numel() * 8 for t in (*cache.window.tensors.values(), *held.values(),
                                                        cache.compressor.pending, cache.compressor.previous,
                                                        cache.indexer.pending, cache.indexer.previous)
                               if t is not None)


@pytest.mark.parametrize("layer_type", ["sliding", "csa", "hca"])
@pytest.mark.parametrize("length", [3, 8, 17, 20, 23])
def test_a_loaded_cache_decodes_as_the_prefilled_one(layer_type, length):
    """V4Cache.load with a prefill's own tensors (window, entries, index keys, both compressors' running states)
    gives a cache whose decode steps equal the prefilled cache's, across window completions; its nbytes is the
    prefilled cache's and what attnlab.costs.v4_layer_cache_bytes counts."""
    from attnlab.costs import V4Model, v4_layer_cache_bytes
    from attnlab.v4 import CompressorState

    cfg = config(layer_type)
    layer = make_layer(cfg, seed=3)
    x = torch.randn(2, length + 6, 24, dtype=F64)
    prefilled = layer.make_cache()
    layer(x[:, :length], cache=prefilled)

    def copied(state: CompressorState) -> CompressorState:
        out = CompressorState()
        out.pending, out.previous = (None if t is None else t.clone() for t in (state.pending, state.previous))
        out.entries = state.entries
        return out

    held = prefilled.compressed.tensors  # empty before the first entry: (b, 0, width) then
    held = {"kv": torch.zeros(2, 0, cfg.head_dim, dtype=F64),
            "index_key": torch.zeros(2, 0, cfg.index_head_dim, dtype=F64)} | held
    loaded = layer.make_cache()
    loaded.load(length, prefilled.window.tensors["kv"].clone(),
                held["kv"].clone() if cfg.compressed else None,
                held["index_key"].clone() if layer_type == "csa" else None,
                copied(prefilled.compressor) if cfg.compressed else None,
                copied(prefilled.indexer) if layer_type == "csa" else None)
    assert loaded.seq_len == length and loaded.nbytes == prefilled.nbytes
    model = V4Model(name="test", compress_ratios=(4,), d_model=24, n_heads=4, q_lora_rank=12, o_groups=2,
                    index_topk=3, source="test", head_dim=16, rope_head_dim=8, o_lora_rank=6, window=6,
                    index_n_heads=3, index_head_dim=8)
    assert loaded.nbytes == 2 * v4_layer_cache_bytes(model, layer_type, length, F64, cfg.compress_rate)  # batch 2
    for t in range(length, length + 6):  # 6 steps: the window slides, windows of m complete
        ours = layer(x[:, t:t + 1], cache=loaded)
        theirs = layer(x[:, t:t + 1], cache=prefilled)
        torch.testing.assert_close(ours.output, theirs.output, rtol=0, atol=0)
    assert loaded.nbytes == prefilled.nbytes


def test_load_refuses_tensors_of_the_wrong_shapes():
    layer = make_layer(config("csa"), seed=3)
    cache = layer.make_cache()
    with pytest.raises(ValueError, match="window has shape"):
        cache.load(10, torch.zeros(1, 5, 16, dtype=F64))
    with pytest.raises(ValueError, match="entries has shape"):
        cache.load(10, torch.zeros(1, 6, 16, dtype=F64), torch.zeros(1, 3, 16, dtype=F64))
    with pytest.raises(ValueError, match="entries must be None"):
        make_layer(config("sliding")).make_cache().load(10, torch.zeros(1, 6, 16), torch.zeros(1, 2, 16))


def test_csa_selects_only_among_visible_entries():
    layer = make_layer(config("csa", index_topk=2), seed=8)
    out = layer(torch.randn(1, 19, 24, dtype=F64), return_weights=True)
    indices = out.selection.indices[0]  # (s, min(k, n))
    for t in range(19):
        chosen = indices[t][indices[t] >= 0]
        assert len(chosen) == min(2, (t + 1) // 4) and (chosen < (t + 1) // 4).all()
    weights = out.weights[0]  # (h, s, window + entries)
    assert ((weights[..., 19:] > 0).sum(-1) <= 2).all()


def test_gather_and_mask_return_the_same_weights():
    layer = make_layer(config("csa", index_topk=2), seed=9)
    x = torch.randn(2, 21, 24, dtype=F64)
    gather, mask = layer.use("gather")(x, return_weights=True), layer.use("mask")(x, return_weights=True)
    torch.testing.assert_close(gather.weights, mask.weights, rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(gather.output, mask.output, rtol=1e-10, atol=1e-10)


# --- Hugging Face ---------------------------------------------------------------------------------------


YARN = {"rope_type": "yarn", "factor": 16.0, "original_max_position_embeddings": 64, "beta_fast": 32, "beta_slow": 1}
HF_LAYERS = {"sliding": 0, "csa": 1, "hca": 2}


@pytest.fixture(scope="module")
def hf():
    transformers = pytest.importorskip("transformers", minversion="5.23")
    from transformers.cache_utils import DynamicCache
    from transformers.models.deepseek_v4 import modeling_deepseek_v4 as modeling

    return transformers.DeepseekV4Config, modeling, DynamicCache


def hf_config(hf, yarn: bool = True, index_topk: int = 3):
    """A tiny random V4 (deepseek-v4.md, "Running it offline"): one layer of each type, CSA m = 4, HCA m' = 8,
    window 8, explicit layer_types (transformers' default schedule matches neither release)."""
    config_cls = hf[0]
    config = config_cls(vocab_size=64, hidden_size=32, num_attention_heads=4, head_dim=32, q_lora_rank=16,
                        o_groups=2, o_lora_rank=8, index_n_heads=16, index_head_dim=16, index_topk=index_topk,
                        sliding_window=8, hc_mult=2, num_hidden_layers=3, moe_intermediate_size=16,
                        n_routed_experts=4, num_experts_per_tok=2, max_position_embeddings=1024,
                        partial_rotary_factor=0.25, layer_types=list(HF_LAYERS_TYPES),
                        compress_rates={"compressed_sparse_attention": 4, "heavily_compressed_attention": 8},
                        **({"rope_parameters": dict(YARN)} if yarn else {}))
    config._attn_implementation = "eager"
    return config


HF_LAYERS_TYPES = ("sliding_attention", "compressed_sparse_attention", "heavily_compressed_attention")


def hf_attention(hf, config, layer_type: str, seed: int = 0):
    torch.manual_seed(seed)
    attention = hf[1].DeepseekV4Attention(config, HF_LAYERS[layer_type]).to(F64)
    with torch.no_grad():
        for p in attention.parameters():
            p.normal_(0.0, 0.5)
    return attention, hf[1].DeepseekV4RotaryEmbedding(config).to(F64)


def window_mask(start: int, s: int, n_keys: int, window: int, batch: int) -> torch.Tensor:
    """The additive sliding-window mask Hugging Face's model builds for keys [cached window; new tokens]."""
    q = torch.arange(start, start + s)[:, None]
    k = torch.arange(start + s - n_keys, start + s)[None]
    allowed = (k <= q) & (k > q - window)
    return torch.zeros(s, n_keys, dtype=F64).masked_fill(~allowed, -math.inf)[None, None].expand(batch, 1, -1, -1)


def hf_call(attention, rotary, x, start, cache):
    """One call of transformers' DeepseekV4Attention on x (tokens start .. start + s) through
    ``attention_forward``: the cache under the keyword the installed version takes, the mask by name (V4 takes
    position_ids third)."""
    b, s, _ = x.shape
    positions = torch.arange(start, start + s)[None].expand(b, -1)
    embeddings = {kind: rotary(x, positions, layer_type=kind) for kind in ("main", "compress")}
    n_keys = s + (0 if cache is None else min(start, attention.config.sliding_window - 1))
    mask = window_mask(start, s, n_keys, attention.config.sliding_window, b)
    return attention_forward(attention, x, embeddings, mask, cache, position_ids=positions)[0]


def assert_clear_choices(selection, k: int) -> None:
    """Every query's k-th best visible entry beats its (k+1)-th by more than float32's rounding: Hugging Face
    scores in float32, so a near-tie could flip its choice (tie-breaking, not a difference in the math)."""
    top = selection.scores.sort(dim=-1, descending=True).values
    if top.shape[-1] > k:
        gap = top[..., k - 1] - top[..., k]
        assert (gap[torch.isfinite(top[..., k])] > 1e-5).all()


PARITY = {}  # max |ours - Hugging Face|, by (layer type, phase): the closing note quotes them


@pytest.mark.parametrize("yarn", [True, False])
@pytest.mark.parametrize("layer_type", ["sliding", "csa", "hca"])
def test_matches_hugging_face_prefill(hf, layer_type, yarn):
    """Same weights -> the same output as transformers' DeepseekV4Attention over 29 tokens (7 CSA entries of
    which each late query keeps 3; 3 HCA entries). Hugging Face runs its norms, RoPE and pooling softmax in
    float32 inside a float64 model, hence 1e-5."""
    config = hf_config(hf, yarn)
    attention, rotary = hf_attention(hf, config, layer_type, seed=1)
    layer = from_transformers(attention)
    assert sum(p.numel() for p in layer.parameters()) == sum(p.numel() for p in attention.parameters())  # all mapped
    assert layer.config.layer_type == layer_type and layer.config.rope_head_dim == 8
    assert layer.config.rope_base == (10000.0 if layer_type == "sliding" else 160000.0)
    x = torch.randn(2, 29, 32, dtype=F64)
    theirs = hf_call(attention, rotary, x, 0, None)
    for impl in ("gather", "mask"):
        out = layer.use(impl)(x)
        ours = out.output
        if layer_type == "csa":
            assert_clear_choices(out.selection, 3)
        torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-5)
    PARITY[layer_type, "prefill", yarn] = (ours - theirs).abs().max().item()


@pytest.mark.parametrize("layer_type", ["sliding", "csa", "hca"])
def test_matches_hugging_face_token_by_token_decode(hf, layer_type):
    """A 5-token prefill, then one token at a time across several compressor windows (CSA 4, HCA 8) and the
    8-token window: outputs agree with Hugging Face's at every step, and so do the compressed entries, the
    index keys and the unfinished windows its cache holds."""
    config = hf_config(hf)
    attention, rotary = hf_attention(hf, config, layer_type, seed=2)
    layer = from_transformers(attention)
    x = torch.randn(2, 27, 32, dtype=F64)
    theirs, ours = hf[2](config=config), layer.make_cache()
    errors = []
    for start, end in [(0, 5)] + [(t, t + 1) for t in range(5, 27)]:
        y_hf = hf_call(attention, rotary, x[:, start:end], start, theirs)
        out = layer(x[:, start:end], cache=ours)
        if layer_type == "csa":
            assert_clear_choices(out.selection, 3)
        y = out.output
        torch.testing.assert_close(y, y_hf, rtol=1e-5, atol=1e-5)
        errors.append((y - y_hf).abs().max().item())
    PARITY[layer_type, "decode", True] = max(errors)
    torch.testing.assert_close(layer(x).output[:, -1], y[:, -1], rtol=1e-10, atol=1e-10)  # decode == prefill
    if layer_type == "sliding":
        return
    hf_layer = theirs.layers[HF_LAYERS[layer_type]]
    held = ours.compressed.tensors
    torch.testing.assert_close(held["kv"], hf_layer.compressed_kv["compressor"], rtol=1e-5, atol=1e-5)
    pending = 27 % layer.config.compress_rate  # tokens of the unfinished window
    assert ours.compressor.pending.shape[1] == hf_layer.buffer_kv["compressor"].shape[1] == pending
    if layer_type == "csa":
        torch.testing.assert_close(held["index_key"], hf_layer.compressed_kv["indexer"], rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(ours.compressor.previous[..., : layer.config.head_dim],
                                   hf_layer.overlap_kv["compressor"], rtol=1e-12, atol=1e-12)


def test_from_transformers_rejects_other_modules(hf):
    with pytest.raises(ValueError, match="DeepseekV4Attention"):
        from_transformers(torch.nn.Linear(2, 2))


# --- devices and dtypes ---------------------------------------------------------------------------------


def test_runs_on_every_device_and_dtype(device):
    reference_layer = make_layer(config("csa", index_topk=2), seed=11)
    x64 = torch.randn(2, 13, 24, dtype=F64)
    reference = reference_layer(x64).output
    for dtype in supported_dtypes(device):
        layer = copy.deepcopy(reference_layer).to(device=device, dtype=dtype)
        x = x64.to(device=device, dtype=dtype)
        cache = layer.make_cache()
        y = torch.cat([layer(x[:, :6], cache=cache).output, layer(x[:, 6:], cache=cache).output], dim=1)
        assert y.shape == (2, 13, 24) and y.dtype == dtype and y.device.type == device.type
        if dtype != torch.bfloat16:  # bfloat16 may flip near-tied selections
            tol = {torch.float32: 1e-4, F64: 1e-10}[dtype]
            assert (y.cpu().double() - reference).abs().max().item() <= tol * reference.abs().max().item()
        assert torch.isfinite(y).all()


def test_config_fills_the_published_compression_rates():
    assert config("csa", compress_rate=None).compress_rate == 4
    assert config("hca", compress_rate=None).compress_rate == 128
    assert dataclasses.replace(config("sliding"), window=128).compress_rate is None
    assert isinstance(make_layer(config("hca")).make_cache(), V4Cache)


@pytest.mark.parametrize("layer_type", ["sliding", "csa", "hca"])
@pytest.mark.parametrize("length", [3, 6, 17, 40])
def test_cache_holds_what_the_cost_formula_counts(layer_type, length):
    """attnlab.costs.v4_layer_cache_entries (the published comparison's arithmetic) counts what the layer's
    cache really holds: min(W, L) window vectors, floor(L / m) entries, and as many index keys in CSA."""
    from attnlab.costs import v4_layer_cache_entries

    cfg = config(layer_type)
    layer = make_layer(cfg, seed=12)
    cache = layer.make_cache()
    layer(torch.randn(1, length, 24, dtype=F64), cache=cache)
    held = cache.compressed.tensors
    counted = {"window": cache.window.n_tokens, "entries": held["kv"].shape[1] if held else 0,
               "index_keys": held["index_key"].shape[1] if "index_key" in held else 0}
    assert counted == v4_layer_cache_entries(layer_type, length, cfg.compress_rate, cfg.window)
