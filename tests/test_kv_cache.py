"""Tests for attnlab.kv_cache: append semantics, measured bytes, argument checks."""

from __future__ import annotations

import doctest

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from attnlab import kv_cache
from attnlab.devices import dtype_bytes
from attnlab.gqa import AttentionConfig, GroupedQueryAttention
from attnlab.kv_cache import KVCache, LayerCache
from attnlab.model import TinyLM, TinyLMConfig

F64 = torch.float64


def test_doctests():
    result = doctest.testmod(kv_cache)
    assert result.attempted > 0 and result.failed == 0


def test_empty_layer_cache():
    cache = LayerCache()
    assert cache.seq_len == 0 and cache.nbytes == 0 and cache.tensors == {}


def test_update_appends_along_seq_dim_and_returns_everything():
    cache = LayerCache()
    k1, v1 = torch.randn(2, 3, 4, 5), torch.randn(2, 3, 4, 5)
    k, v = cache.update(k=k1, v=v1)
    assert torch.equal(k, k1) and torch.equal(v, v1)
    assert cache.seq_len == 4
    k2, v2 = torch.randn(2, 3, 1, 5), torch.randn(2, 3, 1, 5)
    k, v = cache.update(k=k2, v=v2)
    assert k.shape == (2, 3, 5, 5) and cache.seq_len == 5
    assert torch.equal(k[:, :, :4], k1) and torch.equal(k[:, :, 4:], k2)
    assert torch.equal(v[:, :, :4], v1) and torch.equal(v[:, :, 4:], v2)
    assert torch.equal(cache.tensors["k"], k) and torch.equal(cache.tensors["v"], v)


def test_update_returns_in_argument_order():
    cache = LayerCache()
    k, v = torch.zeros(1, 1, 2, 3), torch.ones(1, 1, 2, 3)
    cache.update(k=k, v=v)
    first, second = cache.update(v=v, k=k)
    assert torch.equal(first, torch.ones(1, 1, 4, 3)) and torch.equal(second, torch.zeros(1, 1, 4, 3))


def test_custom_seq_dim_and_single_tensor():
    """MLA caches one latent (batch, seq, d_c): seq_dim=1, a single named tensor."""
    cache = LayerCache(seq_dim=1)
    parts = [torch.randn(2, n, 7) for n in (3, 1, 2)]
    for part in parts:
        (c_kv,) = cache.update(c_kv=part)
    assert torch.equal(c_kv, torch.cat(parts, dim=1))
    assert cache.seq_len == 6
    assert cache.nbytes == 2 * 6 * 7 * 4


@settings(max_examples=25, deadline=None)
@given(
    steps=st.lists(st.integers(0, 4), min_size=1, max_size=5),
    batch=st.integers(1, 3),
    heads=st.integers(1, 3),
    dim=st.integers(1, 5),
    dtype=st.sampled_from([torch.float16, torch.bfloat16, torch.float32, F64]),
)
def test_nbytes_is_numel_times_element_size(steps, batch, heads, dim, dtype):
    cache = LayerCache()
    for n in steps:
        cache.update(k=torch.zeros(batch, heads, n, dim, dtype=dtype), v=torch.zeros(batch, heads, n, dim, dtype=dtype))
    total = sum(steps)
    assert cache.seq_len == total
    real = sum(t.numel() * t.element_size() for t in cache.tensors.values())
    assert cache.nbytes == real == 2 * batch * heads * total * dim * dtype_bytes(dtype)


@settings(max_examples=15, deadline=None)
@given(
    n_kv_heads=st.sampled_from([1, 2, 4]),
    head_dim=st.sampled_from([2, 4, 6]),
    batch=st.integers(1, 3),
    steps=st.lists(st.integers(1, 3), min_size=1, max_size=3),
    dtype=st.sampled_from([torch.float32, torch.bfloat16, F64]),
)
def test_gqa_layer_cache_bytes(n_kv_heads, head_dim, batch, steps, dtype):
    cfg = AttentionConfig(d_model=8, n_heads=4, n_kv_heads=n_kv_heads, head_dim=head_dim)
    layer = GroupedQueryAttention(cfg).to(dtype)
    cache = LayerCache()
    with torch.no_grad():
        for n in steps:
            layer(torch.randn(batch, n, 8, dtype=dtype), cache=cache)
    seq = sum(steps)
    assert cache.seq_len == seq
    assert cache.nbytes == batch * seq * 2 * n_kv_heads * head_dim * dtype_bytes(dtype)
    assert cache.nbytes == batch * seq * cfg.cache_elements_per_token() * dtype_bytes(dtype)
    assert cache.nbytes == sum(t.numel() * t.element_size() for t in cache.tensors.values())


def test_kv_cache_layers_and_totals():
    cache = KVCache(n_layers=3)
    assert len(cache) == 3 and cache.seq_len == 0 and cache.nbytes == 0
    assert all(isinstance(layer, LayerCache) for layer in cache.layers)
    assert cache[0] is cache.layers[0] and cache[0] is not cache[1]
    for i in range(3):
        cache[i].update(k=torch.zeros(2, 1, 5, 4), v=torch.zeros(2, 1, 5, 4))
    assert cache.seq_len == 5
    assert cache.nbytes == 3 * 2 * (2 * 1 * 5 * 4) * 4
    assert cache.bytes_per_token() == cache.nbytes / 5 == 3 * 2 * 2 * 1 * 4 * 4


@pytest.mark.parametrize("attention", ["mha", "mqa", "gqa"])
def test_bytes_per_token_of_a_model_cache(attention):
    config = TinyLMConfig(vocab_size=32, d_model=16, n_layers=2, n_heads=4, n_kv_heads=2, d_ff=16,
                          max_seq_len=16, attention=attention)
    model = TinyLM(config)
    cache = model.new_cache()
    batch = 3
    with torch.no_grad():
        model(torch.randint(0, 32, (batch, 5)), cache=cache)
        model(torch.randint(0, 32, (batch, 1)), cache=cache)
    n_kv = {"mha": 4, "mqa": 1, "gqa": 2}[attention]
    assert cache.seq_len == 6
    assert cache.bytes_per_token() == 2 * batch * 2 * n_kv * 4 * 4  # layers * batch * (K, V) * heads * d * fp32


def test_bytes_per_token_of_empty_cache_raises():
    with pytest.raises(ValueError, match="the cache is empty"):
        KVCache(n_layers=2).bytes_per_token()


@pytest.mark.parametrize("n_layers", [0, -1, 1.5, True])
def test_kv_cache_rejects_bad_layer_count(n_layers):
    with pytest.raises(ValueError, match="n_layers=.* must be a positive integer"):
        KVCache(n_layers=n_layers)


def test_update_errors():
    cache = LayerCache()
    with pytest.raises(ValueError, match="update\\(\\) needs at least one named tensor"):
        cache.update()
    with pytest.raises(ValueError, match="new tensors must add the same number of tokens"):
        cache.update(k=torch.zeros(1, 1, 2, 4), v=torch.zeros(1, 1, 3, 4))
    with pytest.raises(ValueError, match="dtype mismatch: k is torch.float32 but v is torch.float64"):
        cache.update(k=torch.zeros(1, 1, 2, 4), v=torch.zeros(1, 1, 2, 4, dtype=F64))
    assert cache.seq_len == 0 and cache.tensors == {}  # nothing stored by a failed update


def test_update_rejects_changes_against_the_cache():
    cache = LayerCache()
    k, v = torch.zeros(2, 3, 4, 5), torch.zeros(2, 3, 4, 5)
    cache.update(k=k, v=v)
    with pytest.raises(ValueError, match=r"cache holds \['k', 'v'\], update got \['k', 'x'\]"):
        cache.update(k=k, x=v)
    with pytest.raises(ValueError, match=r"cache holds \['k', 'v'\], update got \['k'\]"):
        cache.update(k=k)
    with pytest.raises(ValueError, match="dtype mismatch: cached k is torch.float32, new k is torch.float64"):
        cache.update(k=k.double(), v=v.double())
    with pytest.raises(ValueError, match="may differ only along seq_dim=-2"):
        cache.update(k=torch.zeros(1, 3, 1, 5), v=torch.zeros(1, 3, 1, 5))  # batch changed
    with pytest.raises(ValueError, match="may differ only along seq_dim=-2"):
        cache.update(k=torch.zeros(2, 3, 1, 5), v=torch.zeros(2, 3, 1, 6))  # v's head_dim changed
    with pytest.raises(ValueError, match="may differ only along seq_dim=-2"):
        cache.update(k=torch.zeros(1, 2, 3, 1, 5), v=torch.zeros(1, 2, 3, 1, 5))  # an extra dim
    with pytest.raises(ValueError, match="device mismatch: cached k is on cpu but new k is on meta"):
        cache.update(k=torch.zeros(2, 3, 1, 5, device="meta"), v=torch.zeros(2, 3, 1, 5, device="meta"))
    # failed updates leave the cache as it was, with k and v still the same length
    assert cache.seq_len == 4
    assert cache.tensors["k"].shape == cache.tensors["v"].shape == (2, 3, 4, 5)


# --- preallocated storage -----------------------------------------------------------------------------------


def test_storage_doubles_when_full_and_keeps_the_data():
    cache = LayerCache()
    parts = [torch.randn(2, 3, n, 4) for n in (3, 1, 1, 1, 2, 5)]
    capacities, pointers = [], []
    for i, part in enumerate(parts):
        (k,) = cache.update(k=part)
        capacities.append(cache.capacity)
        pointers.append(k.data_ptr())
        assert torch.equal(k, torch.cat(parts[: i + 1], dim=2))  # every token kept, in order
        assert cache.nbytes == k.numel() * 4 <= cache.capacity_nbytes == 2 * 3 * cache.capacity * 4 * 4
    # the first 3 tokens get room for 3; the 4th doubles it to 6, where the 5th and 6th fit; 8 needs 12, 13 needs 24
    assert capacities == [3, 6, 6, 6, 12, 24]
    assert pointers[1] == pointers[2] == pointers[3]  # no reallocation between doublings


def test_appends_write_in_place_amortised_constant():
    """One token per step for 1000 steps: the storage is reallocated only log2(1000) times, and a step
    between two growths writes into the same buffer (the returned view starts at the same address)."""
    cache = LayerCache(seq_dim=1)
    growths, last_ptr = 0, None
    for t in range(1000):
        (c_kv,) = cache.update(c_kv=torch.full((1, 1, 2), float(t)))
        if c_kv.data_ptr() != last_ptr:
            growths, last_ptr = growths + 1, c_kv.data_ptr()
    assert growths <= 11 and cache.capacity == 1024
    assert torch.equal(cache.tensors["c_kv"][0, :, 0], torch.arange(1000.0))


def test_capacity_preallocates_and_no_step_reallocates():
    cache = LayerCache(capacity=8)
    (k,) = cache.update(k=torch.zeros(1, 1, 2, 3))
    ptr = k.data_ptr()
    for _ in range(6):
        (k,) = cache.update(k=torch.ones(1, 1, 1, 3))
        assert k.data_ptr() == ptr
    assert cache.capacity == 8 and cache.seq_len == cache.n_tokens == 8
    assert cache.capacity_nbytes == cache.nbytes == 8 * 3 * 4
    cache.update(k=torch.ones(1, 1, 1, 3))  # the 9th token doubles the storage
    assert cache.capacity == 16 and cache.nbytes == 9 * 3 * 4 < cache.capacity_nbytes


@settings(max_examples=60, deadline=None)
@given(steps=st.lists(st.integers(0, 5), min_size=1, max_size=8), seq_dim=st.sampled_from([0, 1, 2, -1, -2]),
       capacity=st.sampled_from([None, 1, 4, 32]), transposed=st.sampled_from([(), ("v",), ("k", "v")]))
def test_same_tensors_as_the_concatenating_cache(steps, seq_dim, capacity, transposed):
    """LayerCache returns, at every update, exactly what the torch.cat version returns, for any axis, and
    with any names stored transposed (the token axis innermost, through growth included)."""
    ours = LayerCache(seq_dim=seq_dim, capacity=capacity, transposed=transposed)
    reference = kv_cache.ConcatCache(seq_dim=seq_dim)
    g = torch.Generator().manual_seed(len(steps))
    for n in steps:
        shape = [2, 3, 2]
        shape[seq_dim] = n
        new = {"k": torch.randn(*shape, generator=g, dtype=F64), "v": torch.randn(*shape, generator=g, dtype=F64)}
        got, want = ours.update(**new), reference.update(**new)
        assert all(torch.equal(a, b) for a, b in zip(got, want, strict=True))
        assert ours.seq_len == ours.n_tokens == reference.seq_len == reference.n_tokens
        assert ours.nbytes == reference.nbytes
        for name, held in zip(new, got, strict=True):  # the layout asked for, in the views returned
            innermost = seq_dim if name in transposed else -1  # the token axis, or the usual last one
            assert held.stride(innermost) == 1 or held.shape[innermost] <= 1
    assert all(torch.equal(ours.tensors[name], reference.tensors[name]) for name in ("k", "v"))


@pytest.mark.parametrize("window", [None, 3])
def test_transposed_storage_keeps_its_layout_through_compaction_crop_and_load(window):
    """A name stored transposed keeps the token axis innermost when a window compacts the buffer, after a
    crop and after load; its values match the usual layout's at every step; a missing name is refused."""
    plain, transposed = LayerCache(window=window), LayerCache(window=window, transposed=("v",))
    g = torch.Generator().manual_seed(0)
    for _ in range(12):
        new = {"k": torch.randn(1, 2, 1, 4, generator=g), "v": torch.randn(1, 2, 1, 4, generator=g)}
        want, got = plain.update(**new), transposed.update(**new)
        assert all(torch.equal(a, b) for a, b in zip(want, got, strict=True))
        assert got[1].stride(2) == 1 and got[0].stride(3) == 1
    plain.crop(10), transposed.crop(10)
    assert torch.equal(plain.tensors["v"], transposed.tensors["v"]) and transposed.tensors["v"].stride(2) == 1
    held = plain.tensors
    transposed.load(10, **held)
    assert torch.equal(transposed.tensors["v"], held["v"]) and transposed.tensors["v"].stride(2) == 1
    assert "transposed=['v']" in repr(transposed)
    with pytest.raises(ValueError, match=r"transposed names \['v'\], which the update lacks"):
        LayerCache(transposed=("v",)).update(k=torch.zeros(1, 1, 1, 2))


def test_crop_forgets_the_last_tokens_and_keeps_the_storage():
    cache = LayerCache()
    k = torch.randn(1, 2, 6, 4)
    cache.update(k=k)
    cache.update(k=torch.randn(1, 2, 1, 4))
    capacity = cache.capacity
    cache.crop(6)
    assert cache.seq_len == cache.n_tokens == 6 and cache.capacity == capacity
    assert torch.equal(cache.tensors["k"], k)
    (again,) = cache.update(k=torch.zeros(1, 2, 1, 4))  # the next step overwrites the dropped token
    assert torch.equal(again[:, :, :6], k) and torch.equal(again[:, :, 6:], torch.zeros(1, 2, 1, 4))
    with pytest.raises(ValueError, match="seq_len=8 must lie between first_position=0 and the cache's seq_len=7"):
        cache.crop(8)


@pytest.mark.parametrize("window", [None, 3, 8])
@pytest.mark.parametrize("seq_len", [0, 2, 5])
def test_load_holds_what_appending_leaves(window, seq_len):
    """load(L, ...) of the held tokens gives the cache that appending L tokens leaves (with a window: the same W
    tokens, but storage for W, not L); the next update returns the same tensors."""
    k = torch.randn(1, 2, seq_len, 4)
    appended = LayerCache(window=window)
    if seq_len:
        appended.update(k=k)
    held = seq_len if window is None else min(seq_len, window)
    loaded = LayerCache(window=window, capacity=4)
    loaded.load(seq_len, k=k[:, :, seq_len - held:])
    assert (loaded.seq_len, loaded.n_tokens, loaded.first_position) == (seq_len, held, seq_len - held)
    assert loaded.capacity == max(held, 4) and loaded.nbytes == held * 2 * 4 * 4
    new = torch.randn(1, 2, 1, 4)
    expected = new if not seq_len else appended.update(k=new)[0]
    before = loaded.tensors["k"].clone()
    assert torch.equal(loaded.update(k=new)[0], expected)
    loaded.crop(seq_len)  # the step undone: the token it pushed out of the window is held again
    assert loaded.seq_len == seq_len and loaded.n_tokens == held and torch.equal(loaded.tensors["k"], before)
    with pytest.raises(ValueError, match="holds 1 tokens"):
        loaded.load(seq_len + 5, k=new)


def test_repr_and_model_cache_totals():
    cache = KVCache(n_layers=2, window=3, capacity=4)
    assert cache.window == 3 and cache.n_tokens == 0 and cache.capacity_nbytes == 0
    for layer in cache.layers:
        layer.update(k=torch.zeros(1, 1, 5, 2), v=torch.zeros(1, 1, 5, 2))
    assert cache.seq_len == 5 and cache.n_tokens == 3
    assert cache.nbytes == 2 * 2 * 3 * 2 * 4 and cache.bytes_per_token() == cache.nbytes / 3
    assert cache.capacity_nbytes >= cache.nbytes
    cache.crop(4)
    assert cache.seq_len == 4 and cache.n_tokens == 3  # the window's 3 tokens at 4, still in the storage
    assert repr(cache[0]) == "LayerCache(seq_len=4, n_tokens=3, capacity=5, window=3, names=['k', 'v'])"


# --- a sliding window ---------------------------------------------------------------------------------------


@settings(max_examples=60, deadline=None)
@given(window=st.integers(1, 6), steps=st.lists(st.integers(1, 7), min_size=1, max_size=12),
       capacity=st.sampled_from([None, 1, 8]))
def test_window_holds_exactly_the_last_w_tokens(window, steps, capacity):
    """After every update the cache holds the last min(W, seen) tokens, in order; positions keep counting
    every token seen; the update returns the W - 1 tokens before the new ones and the new ones; and the
    storage stays bounded (compaction instead of growth)."""
    cache = LayerCache(seq_dim=1, window=window, capacity=capacity)
    stream = torch.arange(float(sum(steps)))[None, :, None].expand(2, -1, 3)  # token t holds the number t
    seen = 0
    for n in steps:
        (returned,) = cache.update(x=stream[:, seen : seen + n])
        seen += n
        assert cache.seq_len == seen and cache.n_tokens == min(window, seen)
        assert cache.first_position == seen - cache.n_tokens
        assert torch.equal(cache.tensors["x"], stream[:, seen - cache.n_tokens : seen])
        reach = min(window - 1 + n, seen)
        assert torch.equal(returned, stream[:, seen - reach : seen])
        assert cache.nbytes == 2 * cache.n_tokens * 3 * 4
        assert cache.capacity <= max(capacity or 0, 4 * (window + max(steps)))


def test_window_compacts_in_place_after_the_buffer_fills():
    """With W = 4 and one token per step, the buffer reaches twice the tokens it must hold and then stays:
    the held tokens move back to its front (one copy of W tokens) instead of growing it."""
    cache = LayerCache(seq_dim=1, window=4)
    pointers = set()
    for t in range(100):
        (x,) = cache.update(x=torch.full((1, 1, 1), float(t)))
        pointers.add(cache.tensors["x"].untyped_storage().data_ptr())
        assert x.shape == (1, min(t + 1, 4), 1)  # a decode step attends to the last W tokens
    assert cache.capacity <= 16 and len(pointers) <= 5
    assert cache.tensors["x"].flatten().tolist() == [96.0, 97.0, 98.0, 99.0]


def test_crop_within_the_window():
    cache = LayerCache(seq_dim=1, window=3)
    cache.update(x=torch.arange(5.0)[None, :, None])
    cache.crop(4)  # the cache after 4 tokens: its window of 3 holds 1, 2, 3 again (still in the storage)
    assert cache.seq_len == 4 and cache.n_tokens == 3 and cache.tensors["x"].flatten().tolist() == [1.0, 2.0, 3.0]
    (x,) = cache.update(x=torch.tensor([[[9.0]]]))
    assert x.flatten().tolist() == [2.0, 3.0, 9.0] and cache.first_position == 2
