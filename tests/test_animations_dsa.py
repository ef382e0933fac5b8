"""The DSA animations (chapters 10-12) show attnlab's numbers: the lightning indexer's scores and top-k,
DeepSeek-V3.2's cost crossover, the FP8 block quantization before and after the Hadamard rotation, the
indexer's two training stages and the report's token counts. Rendering, text sizes and clipping are
checked for every registered scene by ``tests/test_animations.py``.

These tests import the scene modules, so they need manim; they render nothing.
"""

from __future__ import annotations

import importlib
import math
import sys
from pathlib import Path

import pytest
import torch

from attnlab import dsa, quant, sizing

pytest.importorskip("manim")

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

registry = importlib.import_module("animations.scenes")
ch10 = importlib.import_module("animations.ch10_dsa")
ch11 = importlib.import_module("animations.ch11_hadamard_fp8")
ch12 = importlib.import_module("animations.ch12_dsa_training")

V32 = sizing.MODELS["deepseek-v3.2"]


def test_the_three_scenes_are_registered_after_chapter_9():
    entries = {name: (chapter, module) for chapter, module, name in registry.SCENES}
    assert entries["DSAScene"] == (10, "ch10_dsa")
    assert entries["HadamardFP8Scene"] == (11, "ch11_hadamard_fp8")
    assert entries["DSATrainingScene"] == (12, "ch12_dsa_training")
    for name in ("DSAScene", "HadamardFP8Scene", "DSATrainingScene"):
        assert registry.load_scene(name).__name__ == name


# --------------------------------------------------------------------------------------------------
# chapter 10: the indexer, top-k and the cost counter


def test_index_scores_are_the_lightning_indexers():
    data = ch10.index_scores()
    n, h = ch10.N_TOKENS, ch10.N_INDEX_HEADS
    assert data.head_scores.shape == (h, n) and data.weights.shape == (h,) and data.scores.shape == (n,)
    assert torch.all(data.head_scores >= 0), "per-head scores are ReLU'd"
    torch.testing.assert_close(data.weights @ data.head_scores, data.scores)

    # the same indexer and input, rebuilt here
    config = dsa.IndexerConfig(d_model=ch10.D_MODEL, q_lora_rank=None, index_n_heads=h,
                               index_head_dim=ch10.INDEX_HEAD_DIM, rope_head_dim=4, index_topk=ch10.TOP_K)
    torch.manual_seed(ch10.SEED)
    indexer = dsa.LightningIndexer(config).to(torch.float64)
    x = torch.randn(1, n, ch10.D_MODEL, dtype=torch.float64)
    with torch.no_grad():
        scores = indexer(x)
    torch.testing.assert_close(data.scores, scores[0, -1])
    assert data.selected == tuple(dsa.topk_indices(scores, ch10.TOP_K)[0, -1].tolist())
    assert len(set(data.selected)) == ch10.TOP_K
    assert set(data.selected) == set(torch.topk(data.scores, ch10.TOP_K).indices.tolist())


def test_index_scores_leave_the_global_generator_alone():
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    ch10.index_scores()
    torch.testing.assert_close(torch.rand(3), expected)


def test_cost_counter_is_deepseek_v32s_crossover():
    counter = ch10.cost_counter()
    assert counter.top_k == V32.index_topk == 2048
    assert counter.crossover == dsa.crossover_context(V32, V32.index_topk)
    before, at = dsa.layer_cost(V32, counter.crossover - 1), dsa.layer_cost(V32, counter.crossover)
    assert before["decode_flops_dsa"] >= before["decode_flops_dense"]
    assert at["decode_flops_dsa"] < at["decode_flops_dense"]
    assert counter.label() == (f"{V32.name}, k = {V32.index_topk:,}: fewer FLOPs per token from "
                               f"L = {counter.crossover:,}")


# --------------------------------------------------------------------------------------------------
# chapter 11: FP8 block quantization, with and without the Hadamard rotation


def _example_pair():
    q, k = ch11.random_pairs(torch.Generator().manual_seed(ch11.SEED))
    return q[0], k[0]


def test_the_example_key_has_one_outlier_channel():
    q, k = _example_pair()
    for v in (q, k):
        assert int(v.abs().argmax()) == ch11.OUTLIER
        others = torch.cat([v[: ch11.OUTLIER], v[ch11.OUTLIER + 1 :]]).abs()
        assert v[ch11.OUTLIER] > 2 * others.max()


def test_fp8_steps_are_attnlab_quant():
    q, k = _example_pair()
    plain, rotated = ch11.fp8_steps()
    torch.testing.assert_close(plain.values, k)
    torch.testing.assert_close(rotated.values, quant.fwht(k))
    torch.testing.assert_close(rotated.values, k @ quant.hadamard_matrix(ch11.N))
    for step in (plain, rotated):
        torch.testing.assert_close(step.fp8, quant.fake_quantize_fp8(step.values, ch11.N, "ue8m0"))
        amax = float(step.values.abs().max())
        assert step.scale == 2.0 ** math.ceil(math.log2(amax / quant.FP8_E4M3_MAX))
        assert step.scale == float(quant.block_scales(step.values, ch11.N, "ue8m0")[0])
        assert step.scale_tex() == f"s = 1/{round(1 / step.scale)}"
        torch.testing.assert_close(step.errors, step.fp8 - step.values)
    exact = float(q @ k)
    fq, fk = quant.fake_quantize_fp8(q, ch11.N, "ue8m0"), quant.fake_quantize_fp8(k, ch11.N, "ue8m0")
    assert plain.dot_error == pytest.approx(abs(float(fq @ fk) - exact))
    hq, hk = (quant.fake_quantize_fp8(quant.fwht(v), ch11.N, "ue8m0") for v in (q, k))
    assert rotated.dot_error == pytest.approx(abs(float(hq @ hk) - exact))
    assert float(quant.fwht(q) @ quant.fwht(k)) == pytest.approx(exact), "the rotation keeps dot products"


def test_the_outlier_carries_the_plain_error_and_the_rotation_shrinks_it():
    plain, rotated = ch11.fp8_steps()
    assert int(plain.errors.abs().argmax()) == ch11.OUTLIER
    assert rotated.errors.abs().max() < plain.errors.abs().max()
    assert rotated.dot_error < plain.dot_error / 2
    # the example is typical: its improvement is within a factor 1.5 of the median one
    med_plain, med_rotated = ch11.median_errors()
    assert med_rotated < med_plain
    assert 1 / 1.5 < (plain.dot_error / rotated.dot_error) / (med_plain / med_rotated) < 1.5


def test_with_float32_scales_the_rotation_does_not_help():
    """Why the scene uses power-of-two scales: with s = amax / 448 exactly, the outlier lands on 448 with
    no rounding error, plain FP8 is already accurate and the rotation makes q · k worse."""
    q, k = ch11.random_pairs(torch.Generator().manual_seed(ch11.PAIRS_SEED), 500)

    def median_error(rotate: bool) -> float:
        a, b = (quant.fwht(q), quant.fwht(k)) if rotate else (q, k)
        qa, kb = (quant.fake_quantize_fp8(v, ch11.N, "fp32") for v in (a, b))
        return float(((qa * kb).sum(-1) - (q * k).sum(-1)).abs().median())

    assert median_error(rotate=True) > median_error(rotate=False)


# --------------------------------------------------------------------------------------------------
# chapter 12: the two training stages and their token counts


def test_token_counts_are_the_reports():
    assert ch12.SEQ_LEN == 128 * 1024
    assert ch12.token_count(1000, 16) == 1000 * 16 * 128 * 1024 == 2_097_152_000
    assert ch12.token_count(15000, 480) == 15000 * 480 * 128 * 1024 == 943_718_400_000
    assert ch12.format_tokens(2_097_152_000) == "2.1B"
    assert ch12.format_tokens(943_718_400_000) == "943.7B"
    assert ch12.stage_line(1) == "stage 1: 1,000 steps × 16 × 128K = 2.1B tokens"
    assert ch12.stage_line(2) == "stage 2: 15,000 steps × 480 × 128K = 943.7B tokens"


@pytest.fixture(scope="module")
def toy():
    return ch12.training_toy()


def test_warmup_freezes_the_model_and_the_indexer_converges(toy):
    assert toy.frozen_unchanged
    assert [s.step for s in toy.warmup] == list(ch12.SNAPSHOT_STEPS)
    kls = [s.kl for s in toy.warmup]
    assert kls == sorted(kls, reverse=True) and kls[-1] < kls[0] / 100
    first_p = toy.warmup[0].p
    for snap in toy.warmup:
        torch.testing.assert_close(snap.p, first_p)  # the frozen model's attention does not move
        assert float(snap.p.sum()) == pytest.approx(1.0) and float(snap.index.sum()) == pytest.approx(1.0)
        assert snap.selected is None


def test_warmup_snapshot_is_the_layers_attention_and_index(toy):
    layer, x = toy.layer, toy.x
    dsa.set_training_stage(layer, "warmup")
    try:
        with torch.no_grad():
            out = layer(x, return_weights=True)
        weights, selection = out.weights, out.selection  # dense: (1, h, s, t)
        p = weights[0, :, -1].sum(0)
        last = toy.warmup[-1]
        torch.testing.assert_close(last.p, p / p.sum())
        torch.testing.assert_close(last.index, torch.softmax(selection.scores[0, -1], -1))
        assert last.kl == pytest.approx(float(dsa.indexer_kl_loss(weights[:, :, -1:], selection.scores[:, -1:])))
    finally:
        dsa.set_training_stage(layer, "sparse")


def test_sparse_stage_selects_top_k_and_detaches_the_indexer(toy):
    layer, x, sparse = toy.layer, toy.x, toy.sparse
    dsa.set_training_stage(layer, "sparse")
    out = layer(x, return_weights=True)
    weights, selection = out.weights, out.selection
    chosen = dsa.topk_indices(selection.scores, ch12.TOP_K)[0, -1]
    assert sparse.selected == tuple(sorted(chosen.tolist()))
    off = torch.ones(ch12.N_TOKENS, dtype=torch.bool)
    off[list(sparse.selected)] = False
    assert torch.all(sparse.p[off] == 0) and torch.all(sparse.index[off] == 0)
    assert float(sparse.p.sum()) == pytest.approx(1.0) and float(sparse.index.sum()) == pytest.approx(1.0)
    kl = dsa.indexer_kl_loss(weights[:, :, -1:].detach(), selection.scores[:, -1:], selection.indices[:, -1:])
    assert sparse.kl == pytest.approx(float(kl.detach()))
    # the indexer's KL loss reaches the indexer only
    layer.zero_grad()
    dsa.indexer_loss(layer).backward()
    assert all(p.grad is None or torch.all(p.grad == 0) for p in layer.mla.parameters())
    assert any(p.grad is not None and torch.any(p.grad != 0) for p in dsa.indexer_parameters(layer))
