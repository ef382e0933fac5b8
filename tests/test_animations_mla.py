"""The MLA animations (chapters 7-9) show attnlab's numbers: DeepSeek-V3's cache per token as MHA and as
MLA (56.9x), the 512 + 64 = 576 numbers MLA caches per token and layer, the RoPE angles m theta_0, and
formulas that hold for attnlab's own MLA layer. Rendering, text sizes and clipping of these scenes are
checked with every other registered scene in ``tests/test_animations.py``."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

import pytest
import torch

from attnlab import sizing
from attnlab.kv_cache import LayerCache
from attnlab.mla import MLAConfig, MultiHeadLatentAttention
from attnlab.rope import rope_angles

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

pytest.importorskip("manim")
registry = importlib.import_module("animations.scenes")
ch07 = importlib.import_module("animations.ch07_mla")
ch08 = importlib.import_module("animations.ch08_absorption")
ch09 = importlib.import_module("animations.ch09_decoupled_rope")

V3 = sizing.MODELS["deepseek-v3"]
F64 = torch.float64


def test_the_mla_scenes_are_registered_as_chapters_7_to_9():
    assert registry.SCENES[7:10] == ((7, "ch07_mla", "MLAScene"), (8, "ch08_absorption", "AbsorptionScene"),
                                     (9, "ch09_decoupled_rope", "DecoupledRoPEScene"))
    for name in ("MLAScene", "AbsorptionScene", "DecoupledRoPEScene"):
        assert registry.module_path(name).is_file()
        assert registry.load_scene(name).__name__ == name


def test_mla_bars_are_deepseek_v3_sizing_numbers():
    assert sizing.get_model(ch07.MODEL) is V3
    mha, mla = ch07.mla_bars()
    assert (mha.name, mla.name) == ("MHA", "MLA")
    bf16 = 2  # bytes per number
    assert mha.bytes_per_token == sizing.cache_bytes_per_token(V3, scheme="mha") == 2 * V3.n_heads * V3.head_dim * (
        V3.n_layers * bf16)
    assert mla.bytes_per_token == sizing.cache_bytes_per_token(V3) == (V3.kv_lora_rank + V3.qk_rope_head_dim) * (
        V3.n_layers * bf16)
    assert mla.ratio == pytest.approx(mha.bytes_per_token / mla.bytes_per_token)
    assert sizing.format_ratio(mla.ratio) == "56.9"
    assert mha.value_label() == sizing.format_bytes(mha.bytes_per_token)
    assert mla.value_label() == f"{sizing.format_bytes(mla.bytes_per_token)} · 56.9× less"


def test_mla_per_layer_formula_comes_from_sizing():
    mha, mla = ch07.per_layer_elements()
    assert mha == sizing.kv_elements_per_token(V3, "mha", per_layer=True) == 2 * V3.n_heads * V3.head_dim
    assert mla == sizing.kv_elements_per_token(V3, per_layer=True) == V3.kv_lora_rank + V3.qk_rope_head_dim
    assert ch07.per_layer_tex() == rf"2 n_h d_h = {mha:,} \;\to\; d_c + d_h^R = {mla}".replace(",", "{,}")
    cfg = ch07.layer_config()
    assert (cfg.d_model, cfg.n_heads, cfg.kv_lora_rank, cfg.qk_nope_head_dim, cfg.qk_rope_head_dim) == (
        V3.hidden_size, V3.n_heads, V3.kv_lora_rank, V3.head_dim, V3.qk_rope_head_dim)
    assert cfg.cache_elements_per_token() == mla


def _small_layer(seed: int = 0, n_heads: int = 3) -> MultiHeadLatentAttention:
    """An MLA layer with V3's cached widths (d_c 512, d_h^R 64) and a few small heads, float64."""
    torch.manual_seed(seed)
    cfg = MLAConfig(d_model=32, n_heads=n_heads, kv_lora_rank=V3.kv_lora_rank, qk_nope_head_dim=8,
                    qk_rope_head_dim=V3.qk_rope_head_dim)
    return MultiHeadLatentAttention(cfg).to(F64)


def test_absorption_formulas_hold_for_attnlabs_weights():
    """q_i^T (W^UK_i c) = ((W^UK_i)^T q_i)^T c with the layer's own W^UK_i, and
    W^O_i sum_t a_t W^UV_i c_t = (W^O_i W^UV_i) sum_t a_t c_t with its W^O and W^UV."""
    before, after = ch08.score_parts()
    assert before.index(r"W^{UK}_i") > before.index(r"W^{UQ}_i")  # W^UK starts on the key side
    assert after.index(r"(W^{UK}_i)^\top") < after.index("q_i") < after.index(r"\;c^{KV}_t")  # and moves over
    layer = _small_layer()
    cfg = layer.config
    g = torch.Generator().manual_seed(1)
    q = torch.randn(cfg.n_heads, cfg.qk_nope_head_dim, generator=g, dtype=F64)  # (h, d_h)
    c = torch.randn(5, cfg.kv_lora_rank, generator=g, dtype=F64)  # (t, d_c)
    keys = torch.einsum("hdc,tc->htd", layer.w_uk, c)  # k_{t,i} = W^UK_i c_t
    naive = torch.einsum("hd,htd->ht", q, keys)
    absorbed = torch.einsum("hc,tc->ht", torch.einsum("hdc,hd->hc", layer.w_uk, q), c)
    torch.testing.assert_close(absorbed, naive)

    v_before, v_after = ch08.value_parts()
    assert v_before.index(r"W^{UV}_i") > v_before.index(r"\sum_t a_{i,t}")  # W^UV_i starts inside the sum
    assert v_after.index(r"W^{UV}_i") == v_after.index(r"\,W^O_i") + 1  # and ends next to W^O_i
    a = torch.softmax(torch.randn(cfg.n_heads, 5, generator=g, dtype=F64), dim=-1)  # (h, t)
    w_o = layer.w_o.weight.view(cfg.d_model, cfg.n_heads, cfg.v_head_dim)  # W^O_i: (d, h, d_v)
    values = torch.einsum("hvc,tc->htv", layer.w_uv, c)  # v_{t,i} = W^UV_i c_t
    u_naive = torch.einsum("dhv,ht,htv->d", w_o, a, values)
    folded = torch.einsum("dhv,hvc->hdc", w_o, layer.w_uv)  # W^O_i W^UV_i, once per head
    u_folded = torch.einsum("hdc,ht,tc->d", folded, a, c)
    torch.testing.assert_close(u_folded, u_naive)


def test_decoupled_rope_cache_is_512_plus_64():
    widths = ch09.cached_widths()
    assert (widths.d_c, widths.d_h_rope) == (V3.kv_lora_rank, V3.qk_rope_head_dim)
    assert widths.total == sizing.kv_elements_per_token(V3, per_layer=True) == ch07.per_layer_elements()[1]
    assert ch09.cache_tex() == f"d_c + d_h^R = {V3.kv_lora_rank} + {V3.qk_rope_head_dim} = {widths.total}"
    assert widths.total == 576  # the published figure (DeepSeek-V2 paper, Table 1 with V3's shapes)


def test_attnlabs_cache_holds_the_latent_and_one_rope_key_per_token():
    """What the scene draws as cached is what the layer caches: c^KV (d_c) and k^R (d_h^R), whatever n_h."""
    widths = ch09.cached_widths()
    for n_heads in (1, 4):
        layer = _small_layer(n_heads=n_heads)
        cache = LayerCache(seq_dim=1)
        layer(torch.randn(2, 3, layer.config.d_model, dtype=F64), cache=cache)
        assert {name: tuple(t.shape) for name, t in cache.tensors.items()} == {
            "c_kv": (2, 3, widths.d_c), "k_rope": (2, 3, widths.d_h_rope)}


def test_rope_angles_shown_are_attnlabs():
    angles = ch09.pair_angles()
    expected = rope_angles(torch.tensor(ch09.POSITIONS), V3.qk_rope_head_dim, ch07.layer_config().rope_base)[:, 0]
    assert angles == pytest.approx(expected.tolist())
    assert angles == pytest.approx([float(m) for m in ch09.POSITIONS])  # theta_0 = base^0 = 1 rad
    parts = ch09.rope_parts()
    assert parts.index("R_s") < parts.index(r"\,R_t\,") < parts.index(r"W^{UK}_i")  # R_t sits in the middle
