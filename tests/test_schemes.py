"""attnlab.schemes: one record per scheme; the registry's order, names, colours and markers; every record's
cache rule against what its layer really caches; every module that lists schemes reads the registry."""

from __future__ import annotations

import dataclasses
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from attnlab import bench, costs, model, plots, schemes, sizing
from attnlab.costs import AttentionShape
from attnlab.dsa import IndexerConfig
from attnlab.gqa import AttentionConfig
from attnlab.kv_cache import LayerCache
from attnlab.linear_attention import LinearAttention, RecurrentState
from attnlab.mla import MLAConfig
from attnlab.schemes import BENCH_SCHEMES, SCHEMES, TABLE1_SCHEMES, VARIANTS, get_scheme, variants

ROOT = Path(__file__).resolve().parents[1]
ALL = (*SCHEMES.values(), *VARIANTS.values())
# d = 16, 4 query heads of 4, GQA 2 K/V heads, d_c 8, d_h^R 2, d_v 6, a query latent of 10, indexer 2 x 4, k 3
TINY = AttentionShape(d_model=16, n_heads=4, head_dim=4, n_kv_heads=2, v_head_dim=6, kv_lora_rank=8,
                      qk_rope_head_dim=2, q_lora_rank=10, index_n_heads=2, index_head_dim=4, index_topk=3, n_layers=3)


def test_registry_order_and_groups():
    assert list(SCHEMES) == ["mha", "mqa", "gqa", "mla", "dsa"]  # the course's chapter order
    assert list(VARIANTS) == ["mla_naive", "mla_absorbed", "gqa_window", "gqa_shared", "gqa_hybrid"]
    assert [s.key for s in variants("mla")] == ["mla_naive", "mla_absorbed"] and variants("mha") == ()
    assert [s.key for s in variants("gqa")] == ["gqa_window", "gqa_shared", "gqa_hybrid"]  # chapters 17 and 18
    assert all(s.base == "mla" and s.mode in ("naive", "absorbed") for s in variants("mla"))
    assert all(s.dense and s.caches == ("k", "v") and s.cache is schemes.GQA.cache for s in variants("gqa"))
    assert TABLE1_SCHEMES == ("mha", "mqa", "gqa", "mla") == sizing.SCHEMES
    assert BENCH_SCHEMES == ("mha", "gqa", "mqa", "mla_naive", "mla_absorbed", "dsa") == bench.SCHEMES
    assert bench.DENSE_SCHEMES == ("mha", "gqa", "mqa")
    assert [k for k, s in SCHEMES.items() if s.dense] == ["mha", "mqa", "gqa"]
    assert all(key == s.key for key, s in (*SCHEMES.items(), *VARIANTS.items()))


def test_labels_colours_and_markers_are_the_figures_own():
    # the exact values the course's figures were drawn with before the registry existed
    colours = {"mha": "#4c72b0", "gqa": "#55a868", "mqa": "#c44e52", "mla": "#8172b2", "dsa": "#64b5cd"}
    assert {k: s.color for k, s in SCHEMES.items()} == colours == plots.SCHEME_COLORS
    markers = {"mha": "o", "gqa": "s", "mqa": "^", "mla_naive": "x", "mla_absorbed": "D", "dsa": "v"}
    assert {k: get_scheme(k).marker for k in BENCH_SCHEMES} == markers
    assert all(s.color == colours["mla"] for s in variants("mla"))
    # the variants of GQA of chapters 17 and 18 get colours and markers of their own, none of the five schemes'
    assert {s.key: s.color for s in variants("gqa")} == {"gqa_window": "#dd8452", "gqa_shared": "#937860",
                                                         "gqa_hybrid": "#da8bc3"}
    assert len({s.color for s in ALL if s.base != "mla"}) == len(ALL) - 2
    assert len({s.marker for s in variants("gqa")} | set(markers.values())) == len(markers) + 3
    labels = {"mha": "MHA", "mqa": "MQA", "gqa": "GQA", "mla": "MLA", "dsa": "DSA", "mla_naive": "MLA naive",
              "mla_absorbed": "MLA absorbed", "gqa_window": "GQA window", "gqa_shared": "GQA shared KV",
              "gqa_hybrid": "GQA hybrid 3:1"}
    assert {s.key: s.label for s in ALL} == labels


def test_get_scheme():
    assert get_scheme("gqa") is schemes.GQA and get_scheme(schemes.MLA_NAIVE) is schemes.MLA_NAIVE
    assert get_scheme("mla_absorbed", "scheme", BENCH_SCHEMES).base == "mla"
    with pytest.raises(ValueError, match=r"scheme='mla' must be one of \('mha', 'gqa'"):
        get_scheme("mla", "scheme", BENCH_SCHEMES)
    with pytest.raises(ValueError, match="key='flash'"):
        get_scheme("flash")
    with pytest.raises(TypeError, match="scheme=3"):
        get_scheme(3, "scheme")


@pytest.mark.parametrize("change, match", [
    (dict(color="#4C72B0"), "color="), (dict(caches=()), "caches="), (dict(cache=None), "cache="),
    (dict(mode="fast"), "mode="), (dict(key=""), "key="), (dict(kv_heads=3), "kv_heads="),
])
def test_a_record_checks_its_fields(change, match):
    with pytest.raises(ValueError, match=match):
        dataclasses.replace(schemes.MHA, **change)


@pytest.mark.parametrize("record", ALL, ids=lambda s: s.key)
def test_each_record_caches_what_its_layer_caches(record):
    """The rule's {tensor: numbers per token} against a real layer of the scheme, run on 5 + 2 tokens of a batch
    of 2 into a LayerCache: the same tensor names and the same numbers per token."""
    shape = dataclasses.replace(TINY, v_head_dim=TINY.head_dim) if record.dense else TINY  # GQA: d_v = d_h
    widths = record.cache(shape)
    assert tuple(widths) == record.caches
    layer = record.build_layer(shape).double()
    cache = LayerCache(seq_dim=-2)
    x = torch.randn(2, 7, TINY.d_model, dtype=torch.float64)
    with torch.no_grad():
        layer(x[:, :5], cache=cache)  # a prefill, then one decoded token
        layer(x[:, 5:6], cache=cache)
        layer(x[:, 6:], cache=cache)
    measured = {name: t.numel() // (2 * 7) for name, t in cache.tensors.items()}
    assert measured == widths
    assert cache.nbytes == 2 * 7 * sum(widths.values()) * 8


def test_the_hybrids_linear_layer_caches_a_state_that_does_not_grow():
    """The hybrid's record describes its full layer's cache, per token; its other layers are Gated DeltaNet and
    hold a fixed state instead, no entry per token: the same bytes after 5 tokens as after 7, equal to
    costs.linear_state_bytes (state and convolution inputs in the layer's dtype)."""
    shape = dataclasses.replace(TINY, v_head_dim=TINY.head_dim)
    layer = schemes.GQA_HYBRID.build_layer(shape, linear=True).double()
    assert isinstance(layer, LinearAttention) and layer.config.rule == "gated_delta"
    cache = RecurrentState()
    x = torch.randn(2, 7, TINY.d_model, dtype=torch.float64)
    sizes = []
    with torch.no_grad():
        for chunk in (x[:, :5], x[:, 5:6], x[:, 6:]):
            layer(chunk, cache=cache)
            sizes.append(cache.nbytes)
    c = layer.config
    state = costs.linear_state_bytes(c.n_heads, c.head_dim, c.d_v, torch.float64, conv_channels=c.conv_channels,
                                     conv_kernel=c.conv_size, conv_dtype=torch.float64)
    assert sizes == [2 * state] * 3 and cache.n_tokens == 0 and cache.seq_len == 7
    assert schemes.GQA_HYBRID.build_layer(shape, linear=True, chunk_size=4).config.chunk_size == 4


@pytest.mark.parametrize("record", ALL, ids=lambda s: s.key)
def test_layer_configs_carry_the_shape(record):
    if record.dense:
        with pytest.raises(ValueError, match="v_head_dim=6 must equal head_dim=4"):
            record.layer_config(TINY)
    config = record.layer_config(dataclasses.replace(TINY, v_head_dim=4) if record.dense else TINY)
    if record.dense:
        assert isinstance(config, AttentionConfig)
        assert (config.d_model, config.n_heads, config.head_dim) == (16, 4, 4)
        assert config.n_kv_heads == record.kv_heads(TINY) == {"mha": 4, "mqa": 1, "gqa": 2}[record.base or record.key]
        assert config.kind == (record.base or record.key)
        return
    mla, indexer = config if record.indexer else (config, None)
    assert isinstance(mla, MLAConfig)
    assert (mla.kv_lora_rank, mla.qk_rope_head_dim, mla.qk_nope_head_dim, mla.v_head_dim, mla.q_lora_rank) == (
        8, 2, 4, 6, 10)
    options = record.layer_config(TINY, rope_interleaved=False)
    assert (options[0] if record.indexer else options).rope_interleaved is False
    if record.indexer:
        assert isinstance(indexer, IndexerConfig)
        assert (indexer.index_n_heads, indexer.index_head_dim, indexer.index_topk) == (2, 4, 3)


def test_describe_and_formula():
    v3 = sizing.MODELS["deepseek-v3"].attention_shape(16)
    assert [get_scheme(k).describe(v3) for k in SCHEMES] == [
        "128 KV heads", "1 KV head", "16 KV heads", "d_c 512 + d_h^R 64", "d_c 512 + d_h^R 64 + d^I 0"]
    assert schemes.GQA.formula.format(**vars(v3)) == "2 n_g d_h = 2 × 16 × 128"


def test_the_library_lists_schemes_only_through_the_registry():
    assert model.ATTENTION_KINDS == tuple(SCHEMES)
    listed = subprocess.run([sys.executable, "-m", "attnlab.train", "--list"], capture_output=True, text=True,
                            check=True).stdout.split()
    trained = [k for k, s in (*SCHEMES.items(), *VARIANTS.items()) if s.trainer == "attnlab.train"]
    assert listed == trained == ["mha", "mqa", "gqa", "mla", "gqa_window", "gqa_shared", "gqa_hybrid"]
    assert SCHEMES["dsa"].trainer == "attnlab.dsa_training"
    course = (ROOT / "course").read_text(encoding="utf-8")
    assert '$("$PY" -m attnlab.train --list)' in course and "mha gqa mqa mla" not in course
    # no module keeps its own table of scheme names or colours
    library = ROOT / "lib" / "attnlab"
    for path in library.rglob("*.py"):
        if path.name == "schemes.py":
            continue
        text = path.read_text(encoding="utf-8")
        assert not re.search(r'\{"mha": "MHA"', text), path
        assert not re.search(r'"#4c72b0"', text), path
