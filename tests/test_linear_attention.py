"""attnlab.linear_attention: the recurrent and chunkwise forms agree in float64 (hypothesis over lengths, chunk
sizes that divide the length and that do not, heads, widths, gates); linear attention's recurrence equals its
quadratic form; the delta rule overwrites a key's slot; the layer decodes token by token exactly as it
prefills, in every rule and form; parity with Hugging Face's Qwen3-Next Gated DeltaNet core; the cost formulas
of chapter 18 against the layer's own state; the recall probe's task and shipped results; the exercises."""

from __future__ import annotations

import importlib.util
import warnings
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from attnlab import costs, recall, sizing
from attnlab.linear_attention import (
    RULES,
    LinearAttention,
    LinearAttentionConfig,
    RecurrentState,
    delta_rule_chunkwise,
    delta_rule_recurrent,
    delta_rule_weights,
    elu_feature_map,
    linear_attention_chunkwise,
    linear_attention_parallel,
    linear_attention_recurrent,
)

F64 = torch.float64


def random_inputs(B, H, L, d_k, d_v, gated, seed=0, dtype=F64):
    """q, k (unit-norm keys, as the layer uses them), v, beta in (0, 1), g = log alpha <= 0 (None: no gate)."""
    gen = torch.Generator().manual_seed(seed)
    q = torch.randn(B, H, L, d_k, generator=gen, dtype=dtype)
    k = F.normalize(torch.randn(B, H, L, d_k, generator=gen, dtype=dtype), dim=-1)
    v = torch.randn(B, H, L, d_v, generator=gen, dtype=dtype)
    beta = torch.rand(B, H, L, generator=gen, dtype=dtype)
    g = -2 * torch.rand(B, H, L, generator=gen, dtype=dtype) if gated else None
    return q, k, v, beta, g


@settings(max_examples=40, deadline=None)
@given(L=st.integers(1, 40), C=st.integers(1, 24), H=st.integers(1, 3), d_k=st.integers(1, 9),
       d_v=st.integers(1, 9), gated=st.booleans(), with_state=st.booleans(), seed=st.integers(0, 2**16))
def test_chunkwise_equals_recurrent_float64(L, C, H, d_k, d_v, gated, with_state, seed):
    q, k, v, beta, g = random_inputs(2, H, L, d_k, d_v, gated, seed)
    state = torch.randn(2, H, d_k, d_v, dtype=F64) if with_state else None
    o_rec, S_rec = delta_rule_recurrent(q, k, v, beta, g, state=state)
    o_chunk, S_chunk = delta_rule_chunkwise(q, k, v, beta, g, chunk_size=C, state=state)
    torch.testing.assert_close(o_chunk, o_rec, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(S_chunk, S_rec, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("C", [4, 5, 12, 64])  # 4 divides 12, 5 does not, 12 is one chunk, 64 is longer
def test_chunk_size_dividing_and_not(C):
    q, k, v, beta, g = random_inputs(1, 2, 12, 6, 5, True)
    torch.testing.assert_close(delta_rule_chunkwise(q, k, v, beta, g, chunk_size=C)[0],
                               delta_rule_recurrent(q, k, v, beta, g)[0], rtol=1e-12, atol=1e-12)


@settings(max_examples=25, deadline=None)
@given(L=st.integers(1, 30), C=st.integers(1, 16), d_k=st.integers(1, 8), d_v=st.integers(1, 8),
       split=st.integers(0, 30), seed=st.integers(0, 2**16))
def test_linear_attention_three_forms_agree(L, C, d_k, d_v, split, seed):
    q, k, v, _, _ = random_inputs(1, 2, L, d_k, d_v, False, seed)
    parallel = linear_attention_parallel(q, k, v)
    rec, state = linear_attention_recurrent(q, k, v)
    chunk, state_c = linear_attention_chunkwise(q, k, v, chunk_size=C)
    torch.testing.assert_close(rec, parallel, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(chunk, parallel, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(state_c.S, state.S, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(state_c.z, state.z, rtol=1e-10, atol=1e-10)
    s = min(split, L)  # the state carries the past: two calls equal one
    first, st1 = linear_attention_chunkwise(q[:, :, :s], k[:, :, :s], v[:, :, :s], chunk_size=C)
    second, _ = linear_attention_recurrent(q[:, :, s:], k[:, :, s:], v[:, :, s:], state=st1)
    torch.testing.assert_close(torch.cat([first, second], dim=2), parallel, rtol=1e-10, atol=1e-10)


def test_linear_state_is_the_sum_of_outer_products():
    q, k, v, _, _ = random_inputs(1, 1, 7, 3, 2, False)
    _, state = linear_attention_recurrent(q, k, v)
    fk = elu_feature_map(k)
    torch.testing.assert_close(state.S, torch.einsum("bhtd,bhte->bhde", fk, v))  # sum_t phi(k_t) v_t^T
    torch.testing.assert_close(state.z, fk.sum(2))
    assert (elu_feature_map(torch.linspace(-30, 3, 50, dtype=F64)) > 0).all()


def test_delta_rule_overwrites_a_key_slot_and_linear_attention_does_not():
    d = 4
    k = torch.eye(d, dtype=F64)[None, None, [0, 0]]  # the same unit key twice
    v = torch.tensor([[[[1.0, 0, 0, 0], [0, 1.0, 0, 0]]]], dtype=F64)  # first value, then a new one
    beta = torch.ones(1, 1, 2, dtype=F64)
    _, S = delta_rule_recurrent(k, k, v, beta)
    torch.testing.assert_close(S[0, 0].T @ k[0, 0, 0], v[0, 0, 1])  # S^T k = the latest value only
    _, lin = linear_attention_recurrent(k, k, v)  # the additive state keeps the sum of both values
    assert lin.S[0, 0, 0, 0] > 0 and lin.S[0, 0, 0, 1] > 0


def test_gate_fades_the_state():
    q, k, v, beta, _ = random_inputs(1, 1, 5, 3, 3, False)
    g = torch.full((1, 1, 5), -1.0, dtype=F64)
    _, S = delta_rule_recurrent(q, k, v, beta, g)
    zero_v = torch.zeros(1, 1, 1, 3, dtype=F64)  # one more token that writes nothing (beta = 0)
    _, S_next = delta_rule_recurrent(q[:, :, :1], k[:, :, :1], zero_v, torch.zeros(1, 1, 1, dtype=F64),
                                     torch.full((1, 1, 1), -1.0, dtype=F64), state=S)
    torch.testing.assert_close(S_next, S * torch.exp(torch.tensor(-1.0, dtype=F64)))  # S'_t = alpha_t S_{t-1}


def test_delta_rule_weights_reproduce_the_output():
    q, k, v, beta, g = random_inputs(2, 2, 9, 4, 3, True)
    W = delta_rule_weights(q, k, beta, g)
    assert torch.all(W.triu(1) == 0)
    torch.testing.assert_close(W @ v, delta_rule_recurrent(q, k, v, beta, g)[0], rtol=1e-10, atol=1e-10)


def _decode(layer, x, prompt):
    cache = RecurrentState()
    outs = [layer(x[:, :prompt], cache=cache).output]
    outs += [layer(x[:, t:t + 1], cache=cache).output for t in range(prompt, x.shape[1])]
    return torch.cat(outs, dim=1), cache


@pytest.mark.parametrize("rule", RULES)
@pytest.mark.parametrize("form", LinearAttention.IMPLEMENTATIONS)
@pytest.mark.parametrize("conv_size", [0, 4])
def test_layer_decode_equals_prefill(rule, form, conv_size):
    torch.manual_seed(0)
    config = LinearAttentionConfig(d_model=12, n_heads=3, head_dim=4, v_head_dim=5, rule=rule, conv_size=conv_size,
                                   chunk_size=3)
    layer = LinearAttention(config).double().eval().use(form)
    x = torch.randn(2, 11, 12, dtype=F64)
    with torch.no_grad():
        full = layer(x).output
        decoded, cache = _decode(layer, x, prompt=4)
        other = LinearAttention.IMPLEMENTATIONS[1 - LinearAttention.IMPLEMENTATIONS.index(form)]
        with layer.using(other):
            torch.testing.assert_close(layer(x).output, full, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(decoded, full, rtol=1e-10, atol=1e-10)
    assert cache.seq_len == 11
    assert cache.nbytes == 2 * config.state_numbers() * 8  # batch 2, float64: the formula counts what it holds


def test_cache_does_not_grow():
    layer = LinearAttention(LinearAttentionConfig(d_model=8, n_heads=2, head_dim=4)).eval()
    cache = RecurrentState()
    sizes = []
    with torch.no_grad():
        for n in (5, 1, 1, 50, 1):
            layer(torch.randn(1, n, 8), cache=cache)
            sizes.append(cache.nbytes)
    assert len(set(sizes)) == 1 and cache.seq_len == 58


@pytest.mark.parametrize("rule", RULES)
def test_layer_weights_reproduce_the_output(rule):
    torch.manual_seed(1)
    layer = LinearAttention(LinearAttentionConfig(d_model=8, n_heads=2, head_dim=4, rule=rule, chunk_size=4)).double()
    x = torch.randn(1, 7, 8, dtype=F64)
    out = layer(x, return_weights=True)
    assert out.weights.shape == (1, 2, 7, 7)
    # rebuild the output from the weights: o = W v per head, then the output projection
    v = layer._conv(torch.cat([layer.W_q(x), layer.W_k(x), layer.W_v(x)], -1), None)[..., -8:]
    v = v.view(1, 7, 2, 4).transpose(1, 2)
    rebuilt = layer.W_o((out.weights @ v).transpose(1, 2).reshape(1, 7, 8))
    torch.testing.assert_close(rebuilt, out.output, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_low_precision_runs_and_stays_close(dtype):
    torch.manual_seed(0)
    layer = LinearAttention(LinearAttentionConfig(d_model=16, n_heads=2, head_dim=8, chunk_size=4)).double()
    x = torch.randn(1, 10, 16, dtype=F64)
    ref = layer(x).output
    out = layer.to(dtype)(x.to(dtype)).output
    assert out.dtype == dtype
    torch.testing.assert_close(out.double(), ref, rtol=0.05, atol=0.05)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_runs_on_cuda():
    layer = LinearAttention(LinearAttentionConfig(d_model=16, n_heads=2, head_dim=8, chunk_size=4)).cuda()
    x = torch.randn(1, 10, 16, device="cuda")
    torch.testing.assert_close(layer(x).output.cpu(), layer.cpu()(x.cpu()).output, rtol=1e-4, atol=1e-4)


# --- Hugging Face's Qwen3-Next Gated DeltaNet core ------------------------------------------------------

def _hf_kernels():
    from transformers.models.qwen3_next import modeling_qwen3_next as hf
    return hf.torch_chunk_gated_delta_rule, hf.torch_recurrent_gated_delta_rule


@pytest.mark.parametrize("L,C", [(21, 8), (16, 4), (5, 64)])
def test_parity_with_hugging_face_qwen3_next(L, C):
    """Hugging Face's reference functions take (batch, seq, heads, dim), L2-normalise q and k, scale q by d_k^-1/2,
    and compute in float32 whatever the input dtype: the parity is at float32 rounding."""
    hf_chunk, hf_recurrent = _hf_kernels()
    gen = torch.Generator().manual_seed(0)
    B, H, d_k, d_v = 2, 3, 8, 6
    q, k = (torch.randn(B, L, H, d_k, generator=gen, dtype=F64) for _ in range(2))
    v = torch.randn(B, L, H, d_v, generator=gen, dtype=F64)
    g = -torch.rand(B, L, H, generator=gen, dtype=F64)
    beta = torch.rand(B, L, H, generator=gen, dtype=F64)
    S0 = 0.1 * torch.randn(B, H, d_k, d_v, generator=gen, dtype=F64)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref_c, ref_Sc = hf_chunk(q, k, v, g, beta, chunk_size=C, initial_state=S0, output_final_state=True,
                                 use_qk_l2norm_in_kernel=True)
        ref_r, ref_Sr = hf_recurrent(q, k, v, g, beta, initial_state=S0, output_final_state=True,
                                     use_qk_l2norm_in_kernel=True)
    t = lambda x: x.transpose(1, 2)  # noqa: E731  (batch, seq, heads, .) <-> (batch, heads, seq, .)
    qn, kn = F.normalize(t(q), dim=-1) / d_k**0.5, F.normalize(t(k), dim=-1)
    ours_c, S_c = delta_rule_chunkwise(qn, kn, t(v), t(beta), t(g), chunk_size=C, state=S0)
    ours_r, S_r = delta_rule_recurrent(qn, kn, t(v), t(beta), t(g), state=S0)
    for ours, ref in ((t(ours_c), ref_c), (t(ours_r), ref_r), (S_c, ref_Sc.double()), (S_r, ref_Sr.double())):
        torch.testing.assert_close(ours, ref.double(), rtol=1e-5, atol=1e-5)


# --- costs ------------------------------------------------------------------------------------------------

def test_state_bytes_formula_matches_the_layer():
    config = LinearAttentionConfig(d_model=16, n_heads=2, head_dim=8, v_head_dim=4, conv_size=4)
    layer = LinearAttention(config).to(torch.bfloat16)
    cache = RecurrentState()
    layer(torch.randn(1, 9, 16, dtype=torch.bfloat16), cache=cache)
    expected = costs.linear_state_bytes(2, 8, 4, torch.bfloat16, conv_channels=config.conv_channels, conv_kernel=4,
                                        conv_dtype=torch.bfloat16)
    assert cache.nbytes == expected


def test_published_hybrids():
    qwen, kimi = costs.QWEN3_NEXT, costs.KIMI_LINEAR
    assert (qwen.n_full, qwen.n_linear) == (12, 36) and qwen.full_layers == costs.hybrid_full_layers(48, 3)
    assert (kimi.n_full, kimi.n_linear) == (7, 20) and kimi.full_layers == tuple(i - 1 for i in (4, 8, 12, 16, 20,
                                                                                                   24, 27))
    assert qwen.conv_channels == 8192 and kimi.conv_channels == 12_288
    state = costs.linear_state_bytes(32, 128, 128, conv_channels=8192, conv_kernel=4)
    assert state == 32 * 128 * 128 * 4 + 8192 * 3 * 2
    L = 131_072
    parts = costs.hybrid_cache_bytes("qwen3-next-80b-a3b", L)
    assert parts["full"] == 12 * L * 2 * 2 * 256 * 2 and parts["linear"] == 36 * state
    assert parts["all_full"] == 4 * parts["full"] and parts["total"] == parts["full"] + parts["linear"]
    kimi_parts = costs.hybrid_cache_bytes("kimi-linear-48b-a3b", L)
    assert kimi_parts["full"] == 7 * L * 576 * 2
    assert costs.hybrid_cache_bytes(qwen, L, full_layers=())["full"] == 0


@pytest.mark.parametrize("key", sorted(costs.HYBRID_MODELS))
def test_catalogue_and_hybrid_formula_agree(key):
    """sizing.MODELS takes a published hybrid's layers from its costs.HybridModel; its per-layer accounting
    (layer_cache_bytes: linear layers hold linear_state_elements, full ones grow) must then give the total that
    costs.hybrid_cache_bytes gives, with every number in one dtype, at any length."""
    record, spec = costs.HYBRID_MODELS[key], sizing.MODELS[key]
    assert tuple(i for i, kind in enumerate(spec.layer_types) if kind == "full") == record.full_layers
    assert (spec.name, spec.max_context) == (record.name, record.max_context)
    for length in (1, 4096, 131_072):
        for dtype in (torch.bfloat16, torch.float32):
            parts = costs.hybrid_cache_bytes(record, length, cache_dtype=dtype, state_dtype=dtype)
            assert sizing.kv_cache_bytes(spec, length, dtype=dtype) == parts["total"]


def test_crossover():
    state, per_token = 2_146_304, 2048
    L = costs.state_crossover_context(state, per_token)
    assert (L - 1) * per_token <= state < L * per_token
    assert costs.hybrid_full_layers(8, 0) == tuple(range(8)) and costs.hybrid_full_layers(8, 8) == ()


# --- the recall probe ---------------------------------------------------------------------------------------

def test_recall_batch_layout():
    task = recall.RecallTask(n_keys=10, n_values=5, max_pairs=6, n_queries=3)
    data = recall.recall_batch(task, 4, 8, torch.Generator().manual_seed(0))
    for t in (data.keys, data.values, data.role, data.targets):
        assert t.shape == (8, task.seq_len)
    assert torch.all(data.role[:, :2] == 0) and torch.all(data.role[:, 2:6] == 1) and torch.all(data.role[:, 6:] == 2)
    assert torch.all(data.values[:, 6:] == -1) and torch.all(data.targets[:, :6] == -100)
    for b in range(8):
        keys = data.keys[b, 2:6].tolist()
        assert len(set(keys)) == 4  # distinct keys
        lookup = dict(zip(keys, data.values[b, 2:6].tolist(), strict=True))
        for pos in range(6, 9):
            assert lookup[int(data.keys[b, pos])] == int(data.targets[b, pos])


def test_probe_model_patterns_build_and_run():
    task = recall.RecallTask(n_keys=8, n_values=8, max_pairs=4, n_queries=2)
    for pattern, layers in recall.PATTERNS.items():
        model = recall.RecallModel(recall.RecallModelConfig(pattern=pattern, d_model=16, n_heads=2, d_ff=16), task)
        assert [type(a).__name__ for a in model.attn] == [
            "GroupedQueryAttention" if kind == "full" else "LinearAttention" for kind in layers]
        assert model(recall.recall_batch(task, 3, 2)).shape == (2, task.seq_len, task.n_values)
    assert recall.PATTERNS["hybrid_3_1"] == ("gdn", "gdn", "gdn", "full")


def test_written_recall_measures_the_state_capacity():
    delta = [recall.written_recall("delta", P, 16, trials=50) for P in (2, 8, 32, 64)]
    linear = [recall.written_recall("linear", P, 16, trials=50) for P in (2, 8, 32, 64)]
    assert delta[0] == 1.0  # two unit keys, beta = 1: both bindings read back exactly
    assert delta == sorted(delta, reverse=True) and linear == sorted(linear, reverse=True)
    assert all(d > lin for d, lin in zip(delta, linear, strict=True))  # the delta rule holds more than adding
    assert delta[-1] < 0.5  # 64 keys in a 16-wide state: most are lost
    assert recall.written_recall("softmax", 64, 16, trials=50) == 1.0  # the full layer's cache reads every pair


@pytest.mark.parametrize("budget", ["long", "short"])
def test_shipped_probe_results_are_consistent(budget):
    probe = recall.load_probe(budget)
    s = probe["settings"]
    assert len(s["seeds"]) >= 3
    for pattern, r in probe["results"].items():
        assert pattern in recall.PATTERNS
        assert len(r["accuracy"]) == len(s["seeds"]) and all(len(a) == len(s["pairs"]) for a in r["accuracy"])
        for i in range(len(s["pairs"])):
            column = [a[i] for a in r["accuracy"]]
            assert r["min"][i] == min(column) and r["max"][i] == max(column)
            assert abs(r["mean"][i] - sum(column) / len(column)) < 1e-12
        assert len(r["seconds"]) == len(s["seeds"]) and all(t > 0 for t in r["seconds"])
        assert r == {**r, **recall.probe_cache_numbers(recall.RecallModelConfig(pattern=pattern, **s["model"]),
                                                        recall.RecallTask(**s["task"]).seq_len)}
    res = probe["results"]
    # the findings the chapter reports: at the most pairs softmax attention and the hybrid recall more than the
    # linear-only models
    for strong in ("full", "hybrid_3_1"):
        for weak in ("linear", "gated_deltanet"):
            assert res[strong]["mean"][-1] > res[weak]["mean"][-1]


def test_probe_budgets():
    long, short = recall.load_probe("long")["settings"], recall.load_probe("short")["settings"]
    assert long["steps"] == recall.ProbeSettings().steps and long["lr"] == recall.ProbeSettings().lr
    assert short["steps"] < long["steps"] and short["task"] == long["task"] and short["model"] == long["model"]


# --- exercises ----------------------------------------------------------------------------------------------

def _solutions():
    path = Path(__file__).resolve().parents[1] / "notebooks" / "solutions" / "ch18.py"
    spec = importlib.util.spec_from_file_location("solutions_ch18", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_ch18_solutions_pass():
    from attnlab.exercises import ch18
    sol = _solutions()
    assert ch18.check_state_bytes(sol.answer_state_bytes).startswith("✓")
    assert ch18.check_crossover(sol.answer_crossover).startswith("✓")
    assert ch18.check_overwrite_prediction(sol.answer_overwrite).startswith("✓")
    assert ch18.check_state_bytes(None).startswith("…")


def test_ch18_checks_name_the_slips():
    from attnlab.exercises import ch18
    e = ch18.EXERCISE_1
    conv_only = e["conv_channels"] * (e["conv_kernel"] - 1) * 2
    with pytest.raises(AssertionError, match="float32"):
        ch18.check_state_bytes(e["n_heads"] * e["d_k"] * e["d_v"] * 2 + conv_only)  # state in bfloat16
    with pytest.raises(AssertionError, match="convolution"):
        ch18.check_state_bytes(e["n_heads"] * e["d_k"] * e["d_v"] * 4)  # conv state forgotten
    with pytest.raises(AssertionError, match="per token"):
        ch18.check_crossover(ch18.expected_crossover() * 2)
    with pytest.raises(AssertionError):
        ch18.check_overwrite_prediction(ch18.expected_overwrite()["linear"][::-1] + [0.0])


# --- the explorer -------------------------------------------------------------------------------------------

def test_hybrid_explorer_shows_the_cost_formulas():
    from attnlab.interactive import linear as explorer_module

    table = explorer_module.explorer_html("qwen3-next-80b-a3b", 2**17, None)
    parts = costs.hybrid_cache_bytes("qwen3-next-80b-a3b", 2**17)
    for key in ("full", "linear", "total", "all_full"):
        assert f"{parts[key] / 2**30:,.3f}" in table
    assert "12 full (GQA) layers" in table and "36 linear (Gated DeltaNet) layers" in table
    every_full = explorer_module.explorer_html("kimi-linear-48b-a3b", 2**20, 0)
    assert "27 full (MLA) layers" in every_full and "0 linear (KDA) layers" in every_full
    assert "beyond its longest context" in explorer_module.explorer_html("qwen3-next-80b-a3b", 2**20, 3)
    with pytest.raises(ValueError, match="context"):
        explorer_module.explorer_html("qwen3-next-80b-a3b", 1000, None)
    with pytest.raises(ValueError, match="ratio"):
        explorer_module.explorer_html("qwen3-next-80b-a3b", 2**17, 2)
    widget = explorer_module.hybrid_explorer()
    widget.ratio.value = 0
    assert widget.table.value == explorer_module.explorer_html("qwen3-next-80b-a3b", 2**17, 0)
    assert repr(widget) == "HybridExplorer(model='qwen3-next-80b-a3b', context=131072, ratio=0)"
