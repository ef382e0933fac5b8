"""One interface for every attention layer, and the cache under it.

Every layer (GroupedQueryAttention as MHA, GQA and MQA; MultiHeadLatentAttention; DeepSeekSparseAttention) is an
``AttentionLayer``: ``forward(x, cache=None, return_weights=False)`` returns an ``AttentionOutput``, and
``use``/``using`` pick the implementation. Checked here: the interface itself; cached decoding (a prefill, then
chunks and single tokens through one ``LayerCache``) equals one uncached pass for every scheme and
implementation, in float64 on random shapes, and for the tiny model with each attention kind; and a windowed
cache gives sliding-window attention, equal to attention over each query's last W keys computed by hand.
"""

from __future__ import annotations

import inspect
import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from attnlab import bench
from attnlab.attention import AttentionLayer, AttentionOutput, causal_mask
from attnlab.dsa import DeepSeekSparseAttention, IndexSelection, indexer_config_for
from attnlab.gqa import AttentionConfig, GroupedQueryAttention, repeat_kv
from attnlab.kv_cache import ConcatCache, KVCache, LayerCache
from attnlab.mla import MLAConfig, MultiHeadLatentAttention
from attnlab.model import ATTENTION_KINDS, TinyLM, TinyLMConfig
from attnlab.window import SharedKVAttention

F64 = torch.float64
SETTINGS = settings(max_examples=30, deadline=None)
seeds = st.integers(0, 2**31 - 1)
#: Every scheme and implementation: (layer kind, implementation).
SCHEMES = [("mha", "grouped"), ("gqa", "grouped"), ("mqa", "grouped"), ("mla", "absorbed"), ("mla", "naive"),
           ("dsa", "gather"), ("dsa", "mask"), ("dsa", "dense")]


def randomize(layer: torch.nn.Module, seed: int) -> torch.nn.Module:
    """Every weight (norm gains included) drawn from N(0, 0.5^2), in float64, so no term hides."""
    torch.manual_seed(seed)
    layer = layer.to(F64)
    with torch.no_grad():
        for p in layer.parameters():
            p.normal_(0.0, 0.5)
    return layer


@st.composite
def layers(draw, kinds=("mha", "gqa", "mqa", "mla", "dsa")):
    """A random float64 layer of one of ``kinds`` and its cache's seq_dim."""
    kind = draw(st.sampled_from(kinds))
    seed = draw(seeds) % 10_000
    if kind in ("mha", "gqa", "mqa"):
        n_kv = draw(st.sampled_from([1, 2]))
        n_heads = {"mha": n_kv, "mqa": draw(st.sampled_from([1, 2, 4]))}.get(kind, n_kv * draw(st.integers(1, 3)))
        n_kv = 1 if kind == "mqa" else n_kv
        head_dim = draw(st.sampled_from([2, 4, 6]))
        config = AttentionConfig(d_model=draw(st.sampled_from([4, 8, 12])), n_heads=n_heads, n_kv_heads=n_kv,
                                 head_dim=head_dim, rope=draw(st.booleans()), bias=draw(st.booleans()))
        return randomize(GroupedQueryAttention(config), seed), -2
    mla = MLAConfig(d_model=draw(st.sampled_from([4, 8, 12])), n_heads=draw(st.integers(1, 3)),
                    q_lora_rank=draw(st.sampled_from([None, 3])), kv_lora_rank=draw(st.integers(1, 6)),
                    qk_nope_head_dim=draw(st.integers(1, 5)), qk_rope_head_dim=draw(st.sampled_from([2, 4])),
                    v_head_dim=draw(st.integers(1, 5)), rope_interleaved=draw(st.booleans()))
    if kind == "mla":
        return randomize(MultiHeadLatentAttention(mla), seed), 1
    indexer = indexer_config_for(mla, draw(st.integers(1, 3)), draw(st.sampled_from([4, 8])), draw(st.integers(1, 6)),
                                 hadamard=draw(st.booleans()))
    return randomize(DeepSeekSparseAttention(mla, indexer), seed), 1


def chunks(draw, seq: int) -> list[tuple[int, int]]:
    """A prefill of random length, then random chunks, ending in single tokens."""
    cuts = sorted(set(draw(st.lists(st.integers(1, max(seq - 1, 1)), max_size=4))))
    edges = [0, *[c for c in cuts if c < seq], seq]
    return [(a, b) for a, b in zip(edges, edges[1:], strict=False) if b > a]


# --- the interface ------------------------------------------------------------------------------------------


def one_of_each() -> dict[str, AttentionLayer]:
    mla = MLAConfig(d_model=8, n_heads=2, kv_lora_rank=4, qk_nope_head_dim=4, qk_rope_head_dim=2)
    return {"mha": GroupedQueryAttention(AttentionConfig(8, 2)), "mqa": GroupedQueryAttention(AttentionConfig(8, 2, 1)),
            "mla": MultiHeadLatentAttention(mla),
            "dsa": DeepSeekSparseAttention(mla, indexer_config_for(mla, 2, 4, 3))}


@pytest.mark.parametrize("kind", ["mha", "mqa", "mla", "dsa"])
def test_every_layer_has_the_same_forward_and_output(kind):
    layer = one_of_each()[kind]
    assert isinstance(layer, AttentionLayer)
    assert list(inspect.signature(layer.forward).parameters) == ["x", "cache", "return_weights"]
    x = torch.randn(2, 5, 8)
    out = layer(x)
    assert isinstance(out, AttentionOutput) and out.output.shape == (2, 5, 8) and out.weights is None
    assert (out.selection is not None) == (kind == "dsa")
    if kind == "dsa":
        assert isinstance(out.selection, IndexSelection) and out.selection.indices.shape == (2, 5, 3)
    weights = layer(x, return_weights=True).weights
    assert weights.shape == (2, 2, 5, 5)
    torch.testing.assert_close(weights.sum(-1), torch.ones(2, 2, 5))
    with pytest.raises(AttributeError):
        out.output = x  # a frozen record


def every_layer() -> dict[str, AttentionLayer]:
    """One float64 layer of every scheme the course builds (the benchmark's small shape), and a shared-KV layer
    reading a windowed one."""
    shape, cpu = bench.QUICK_SHAPE, torch.device("cpu")
    out = {s: bench.build_layer(s, shape, cpu, F64) for s in bench.SCHEMES}
    out.update({s: bench.build_newer_layer(s, shape, cpu, F64) for s in bench.NEWER_SCHEMES})
    source = out["gqa_window"]
    out["shared_kv"] = SharedKVAttention(source.config, source, source.window).to(F64)
    return out


def _subclasses(cls: type) -> set[type]:
    return {sub for direct in cls.__subclasses__() for sub in {direct} | _subclasses(direct)}


def test_every_layer_class_is_checked_below():
    covered = {type(layer) for layer in every_layer().values()}
    missing = {cls.__qualname__ for cls in _subclasses(AttentionLayer)
               if cls.__module__.startswith("attnlab.")} - {cls.__qualname__ for cls in covered}
    assert not missing, f"add these layers to every_layer(): {sorted(missing)}"


@pytest.mark.parametrize("name", [*bench.SCHEMES, *bench.NEWER_SCHEMES, "shared_kv"])
def test_every_layer_refuses_bad_hidden_states_before_torch(name):
    """The same rules, the same words, for every layer: x is (batch, seq, d_model), of the layer's width and
    dtype, with at least one sequence of at least one token; each a ValueError raised before any projection
    runs."""
    layer = every_layer()[name]
    d = bench.QUICK_SHAPE.d_model
    x = torch.randn(1, 3, d, dtype=F64)
    for bad, message in ((x[0], "x must have 3 dims"), (x[..., :d - 1], f"d_model={d - 1}"),
                         (x.float(), "dtype mismatch"), (x[:, :0], "seq=0"), (x[:0], "batch=0")):
        with pytest.raises(ValueError, match=message):
            layer(bad)


@pytest.mark.parametrize(("kind", "implementations"), [
    ("mha", ("grouped",)), ("mla", ("absorbed", "naive")), ("dsa", ("gather", "mask", "dense"))])
def test_implementations_are_a_layer_setting(kind, implementations):
    layer = one_of_each()[kind]
    assert layer.IMPLEMENTATIONS == implementations and layer.implementation == implementations[0]
    for name in implementations:
        assert layer.use(name) is layer and layer.implementation == name
    layer.use(implementations[0])
    with pytest.raises(ValueError, match=r"implementation='fast' must be one of \("):
        layer.use("fast")
    with layer.using(implementations[-1]) as same:
        assert same is layer and layer.implementation == implementations[-1]
    assert layer.implementation == implementations[0]
    with pytest.raises(RuntimeError, match="inside"), layer.using(implementations[-1]):
        raise RuntimeError("inside")
    assert layer.implementation == implementations[0]  # restored on an exception too


def test_dsa_top_k_is_set_with_the_implementation():
    layer = one_of_each()["dsa"]
    assert layer.settings() == {"implementation": "gather", "top_k": 3}
    x = torch.randn(1, 6, 8)
    with layer.using("mask", top_k=2):
        assert layer(x).selection.indices.shape == (1, 6, 2) and layer.implementation == "mask"
    assert layer.settings() == {"implementation": "gather", "top_k": 3}
    assert layer.use(top_k=5).settings() == {"implementation": "gather", "top_k": 5}
    dense = layer.use("dense")(x)
    assert dense.selection.indices is None and dense.selection.scores.shape == (1, 6, 6)


def test_layers_accept_the_teaching_cache_too():
    layer = randomize(GroupedQueryAttention(AttentionConfig(8, 2, 1)), 0)
    x = torch.randn(2, 5, 8, dtype=F64)
    cache = ConcatCache()
    y = torch.cat([layer(x[:, :3], cache=cache).output, layer(x[:, 3:], cache=cache).output], dim=1)
    torch.testing.assert_close(y, layer(x).output, rtol=1e-10, atol=1e-12)


# --- cached decoding equals one uncached pass, every scheme ----------------------------------------------------


@pytest.mark.parametrize(("kind", "implementation"), SCHEMES, ids=[f"{k}-{i}" for k, i in SCHEMES])
@SETTINGS
@given(data=st.data())
def test_cached_decode_equals_uncached_forward(kind, implementation, data):
    layer, seq_dim = data.draw(layers(kinds=(kind,)), label="layer")
    layer.use(implementation)
    batch, seq = data.draw(st.integers(1, 2), label="batch"), data.draw(st.integers(1, 9), label="seq")
    x = torch.randn(batch, seq, layer.config.d_model, dtype=F64,
                    generator=torch.Generator().manual_seed(data.draw(seeds, label="x")))
    bounds = chunks(data.draw, seq)
    full = layer(x, return_weights=True)
    cache, outputs = LayerCache(seq_dim=seq_dim, capacity=data.draw(st.sampled_from([None, 1, 16]))), []
    for a, b in bounds:
        step = layer(x[:, a:b], cache=cache, return_weights=True)
        outputs.append(step.output)
        # the step's weights are rows a..b of the full pass's, over the b keys seen so far
        torch.testing.assert_close(step.weights, full.weights[:, :, a:b, :b], rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(torch.cat(outputs, dim=1), full.output, rtol=1e-10, atol=1e-10)
    assert cache.seq_len == cache.n_tokens == seq


@pytest.mark.parametrize("attention", ATTENTION_KINDS)
@SETTINGS
@given(data=st.data())
def test_tiny_lm_cached_decode_equals_uncached_forward(attention, data):
    n_kv = data.draw(st.sampled_from([1, 2]), label="n_kv_heads")
    config = TinyLMConfig(vocab_size=24, d_model=16, n_layers=2, n_heads=4, n_kv_heads=n_kv, d_ff=20, max_seq_len=16,
                          attention=attention, kv_lora_rank=6, qk_rope_head_dim=2, index_n_heads=2, index_head_dim=4,
                          index_topk=data.draw(st.integers(1, 6), label="top_k"))
    torch.manual_seed(data.draw(seeds, label="seed") % 10_000)
    model = TinyLM(config).to(F64).eval()
    seq = data.draw(st.integers(1, 12), label="seq")
    ids = torch.randint(0, 24, (data.draw(st.integers(1, 2), label="batch"), seq))
    with torch.no_grad():
        full = model(ids)
        cache = model.new_cache()
        logits = torch.cat([model(ids[:, a:b], cache=cache) for a, b in chunks(data.draw, seq)], dim=1)
    torch.testing.assert_close(logits, full, rtol=1e-9, atol=1e-10)
    assert cache.seq_len == seq and cache.nbytes == cache.bytes_per_token() * seq


# --- a windowed cache: sliding-window attention ------------------------------------------------------------


def test_causal_mask_with_a_window():
    """Query i (the last n_q of n_k positions) sees keys i - W + 1 .. i; W >= n_k is the plain causal mask."""
    mask = causal_mask(3, 6, window=2)
    assert mask.int().tolist() == [[0, 0, 1, 1, 0, 0], [0, 0, 0, 1, 1, 0], [0, 0, 0, 0, 1, 1]]
    assert torch.equal(causal_mask(4, 4, window=4), causal_mask(4, 4))
    assert torch.equal(causal_mask(2, 5, window=1), torch.eye(5, dtype=torch.bool)[3:])


def windowed_gqa(layer: GroupedQueryAttention, x: torch.Tensor, window: int) -> torch.Tensor:
    """Causal attention in which query t reads keys max(0, t - W + 1) .. t, written out query by query."""
    c = layer.config
    q, k, v = layer.project(x)  # positions 0..T-1
    k, v = repeat_kv(k, c.group_size), repeat_kv(v, c.group_size)
    rows = []
    for t in range(x.shape[1]):
        keys = slice(max(0, t - window + 1), t + 1)
        scores = q[:, :, t : t + 1] @ k[:, :, keys].transpose(-1, -2) / math.sqrt(c.head_dim)
        rows.append(torch.softmax(scores, dim=-1) @ v[:, :, keys])
    out = torch.cat(rows, dim=2)  # (b, n_heads, T, d)
    return layer.w_o(out.transpose(1, 2).reshape(x.shape[0], x.shape[1], -1))


def windowed_mla(layer: MultiHeadLatentAttention, x: torch.Tensor, window: int) -> torch.Tensor:
    """MLA's equations 42-47 with query t reading the latents of tokens max(0, t - W + 1) .. t only."""
    c, positions = layer.config, torch.arange(x.shape[1])
    q_nope, q_rope = layer.queries(x, positions)
    c_kv, k_rope = layer.latents(x, positions)
    k_nope = torch.einsum("btc,hdc->bthd", c_kv, layer.w_uk)
    v = torch.einsum("btc,hvc->bthv", c_kv, layer.w_uv)
    rows = []
    for t in range(x.shape[1]):
        keys = slice(max(0, t - window + 1), t + 1)
        scores = (torch.einsum("bhd,bjhd->bhj", q_nope[:, t], k_nope[:, keys])
                  + torch.einsum("bhr,bjr->bhj", q_rope[:, t], k_rope[:, keys])) * c.softmax_scale
        rows.append(torch.einsum("bhj,bjhv->bhv", torch.softmax(scores, dim=-1), v[:, keys]))
    return layer.w_o(torch.stack(rows, dim=1).reshape(x.shape[0], x.shape[1], -1))


@pytest.mark.parametrize(("kind", "implementation"), SCHEMES[:5], ids=[f"{k}-{i}" for k, i in SCHEMES[:5]])
@SETTINGS
@given(data=st.data())
def test_windowed_decoding_is_attention_over_the_last_w_keys(kind, implementation, data):
    layer, seq_dim = data.draw(layers(kinds=(kind,)), label="layer")
    layer.use(implementation)
    seq, window = data.draw(st.integers(1, 12), label="seq"), data.draw(st.integers(1, 6), label="window")
    x = torch.randn(2, seq, layer.config.d_model, dtype=F64,
                    generator=torch.Generator().manual_seed(data.draw(seeds, label="x")))
    want = windowed_gqa(layer, x, window) if kind != "mla" else windowed_mla(layer, x, window)
    cache = LayerCache(seq_dim=seq_dim, window=window)
    outputs = [layer(x[:, a:b], cache=cache).output for a, b in chunks(data.draw, seq)]
    torch.testing.assert_close(torch.cat(outputs, dim=1), want, rtol=1e-10, atol=1e-10)
    assert cache.seq_len == seq and cache.n_tokens == min(window, seq)  # positions kept counting past the window
    if seq > window:
        assert not torch.allclose(want, layer(x).output)  # the window really dropped keys


def test_windowed_cache_holds_the_keys_at_their_absolute_positions():
    """The cached keys are rotated at the positions the tokens had in the whole sequence (RoPE), not at
    their slot in the window: they equal the last W keys of one uncached projection."""
    layer = randomize(GroupedQueryAttention(AttentionConfig(8, 2, 1)), 3)
    x = torch.randn(1, 10, 8, dtype=F64)
    cache = LayerCache(window=4)
    for t in range(10):
        layer(x[:, t : t + 1], cache=cache)
    _, k, v = layer.project(x)
    assert cache.first_position == 6 and cache.seq_len == 10
    torch.testing.assert_close(cache.tensors["k"], k[:, :, 6:], rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(cache.tensors["v"], v[:, :, 6:], rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("attention", ["mha", "gqa", "mqa", "mla"])
def test_tiny_lm_with_a_window(attention):
    """A windowed model cache: token-by-token decoding equals a chunked prefill (each query sees its last W
    keys either way); a window as long as the sequence changes nothing; a short one changes the logits."""
    config = TinyLMConfig(vocab_size=24, d_model=16, n_layers=2, n_heads=4, n_kv_heads=2, d_ff=20, max_seq_len=16,
                          attention=attention, kv_lora_rank=6, qk_rope_head_dim=2)
    torch.manual_seed(5)
    model = TinyLM(config).to(F64).eval()
    ids = torch.randint(0, 24, (2, 14))
    with torch.no_grad():
        full = model(ids)
        logits = {}
        for window in (3, 14):
            steps, chunked = model.new_cache(window=window), model.new_cache(window=window)
            logits[window] = torch.cat([model(ids[:, t : t + 1], cache=steps) for t in range(14)], dim=1)
            torch.testing.assert_close(torch.cat([model(ids[:, :6], cache=chunked), model(ids[:, 6:], cache=chunked)],
                                                 dim=1), logits[window], rtol=1e-10, atol=1e-10)
            assert steps.seq_len == 14 and steps.n_tokens == window
    torch.testing.assert_close(logits[14], full, rtol=1e-10, atol=1e-10)
    assert not torch.allclose(logits[3], full)
    with pytest.raises(ValueError, match="window=3"):
        TinyLM(TinyLMConfig(vocab_size=24, d_model=16, n_layers=1, n_heads=4, d_ff=20, max_seq_len=16,
                            attention="dsa", qk_rope_head_dim=2))(ids, cache=KVCache(1, seq_dim=1, window=3))
