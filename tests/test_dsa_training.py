"""Chapter 12, DSA training: attnlab.dsa_training (building a DSA model from an MLA one, the dense warm-up,
sparse training with its gradient routing, top-k recall, validation loss, the script), the chapter's
widget (attnlab.interactive.dsa_training) and the exercise checks (attnlab.exercises.ch12)."""

from __future__ import annotations

import copy
import dataclasses
import importlib.util
import math
from pathlib import Path

import pytest
import torch

from attnlab import dsa_training as dt
from attnlab.dsa import indexer_kl_loss, indexer_parameters, selection_mask, set_training_stage
from attnlab.exercises import ch12
from attnlab.interactive import dsa_training as dw
from attnlab.model import TinyLM, TinyLMConfig, load_checkpoint, save_checkpoint
from attnlab.tokenization import load_tokenizer
from attnlab.train import lr_at, sample_batch

SOLUTIONS = Path(__file__).resolve().parents[1] / "notebooks" / "solutions" / "ch12.py"
TOP_K = 8
CFG = dt.DSATrainConfig(warmup_steps=40, sparse_steps=6, warmup_lr=2e-2, sparse_lr=3e-3, batch_size=4,
                        seq_len=32, top_k=TOP_K, eval_every=20, eval_batches=1, seed=3)
TEXT = 'The simple form, "assert expression", is equivalent to <if __debug__> & if not expression: raise'


def tiny_mla(seed: int = 0, max_seq_len: int = 64) -> TinyLM:
    """A small MLA model whose attention is peaked (weights drawn wider than the default init), so the
    indexer has something to learn without training the model first."""
    config = TinyLMConfig(d_model=32, n_layers=2, n_heads=4, d_ff=64, max_seq_len=max_seq_len, attention="mla",
                          kv_lora_rank=16, qk_rope_head_dim=4, index_n_heads=2, index_head_dim=8, index_topk=TOP_K)
    torch.manual_seed(seed)
    model = TinyLM(config)
    with torch.no_grad():
        for block in model.blocks:
            for name in ("w_q", "w_dkv", "w_ukv"):
                getattr(block.attn, name).weight.normal_(0.0, 0.35)
    return model.eval()


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """The tiny models gain nothing from threads, and on a busy machine extra threads only wait."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def mla():
    return tiny_mla()


@pytest.fixture(scope="module")
def warmed(mla):
    """A DSA model after CFG's warm-up, with the warm-up's metrics."""
    model = dt.dsa_from_mla(mla, index_topk=TOP_K, seed=CFG.seed)
    return model, dt.warmup_indexer(model, CFG)


@pytest.fixture(scope="module")
def probe_ids():
    return dt.probe_ids(CFG, batch_size=2)


def solutions():
    spec = importlib.util.spec_from_file_location("solutions_ch12", SOLUTIONS)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# -- building the DSA model ------------------------------------------------------------------------------


def test_dsa_from_mla_copies_every_mla_weight(mla):
    model = dt.dsa_from_mla(mla, index_topk=TOP_K)
    assert model.config == dataclasses.replace(mla.config, attention="dsa")
    dsa_state = model.state_dict()
    for name, value in mla.state_dict().items():
        parts = name.split(".")
        if parts[0] == "blocks" and parts[2] == "attn":
            name = ".".join([*parts[:3], "mla", *parts[3:]])
        assert torch.equal(dsa_state[name], value), name
    new = [name for name in dsa_state if ".attn.indexer." in name]
    assert len(new) + len(mla.state_dict()) == len(dsa_state) and new
    assert not model.training and all(p.requires_grad for p in model.parameters())


def test_new_indexers_are_seeded_and_leave_the_global_rng_alone(mla):
    torch.manual_seed(5)
    before = torch.rand(3)
    torch.manual_seed(5)
    a = dt.dsa_from_mla(mla, seed=1)
    assert torch.equal(torch.rand(3), before)
    b, c = dt.dsa_from_mla(mla, seed=1), dt.dsa_from_mla(mla, seed=2)
    pa, pb, pc = (torch.cat([p.flatten() for p in indexer_parameters(m)]) for m in (a, b, c))
    assert torch.equal(pa, pb) and not torch.equal(pa, pc)


def test_dense_dsa_is_the_mla_model_and_sparse_too_when_top_k_covers_the_length(mla):
    ids = sample_batch(dt._corpus("val"), 2, 20, torch.Generator().manual_seed(0))
    with torch.no_grad():
        want = mla(ids)
        model = dt.dsa_from_mla(mla)
        with dt.attention_mode(model, dense=True):
            assert torch.equal(model(ids), want)  # the same absorbed attention, bit for bit
        mla64 = copy.deepcopy(mla).double()
        covering = dt.dsa_from_mla(mla64, index_topk=ids.shape[1])  # every token kept
        torch.testing.assert_close(covering(ids), mla64(ids), rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("bad, match", [
    (torch.nn.Linear(2, 2), "mla_model must be a TinyLM"),
    (TinyLM(TinyLMConfig(d_model=32, n_layers=1, n_heads=4, d_ff=8, attention="gqa")), "expected 'mla'"),
])
def test_dsa_from_mla_rejects_other_models(bad, match):
    with pytest.raises(ValueError, match=match):
        dt.dsa_from_mla(bad)


def test_dsa_from_mla_rejects_a_bad_seed(mla):
    with pytest.raises(ValueError, match="seed=True"):
        dt.dsa_from_mla(mla, seed=True)


# -- stage 1: dense warm-up ------------------------------------------------------------------------------


def test_warmup_changes_only_the_indexers(mla, warmed):
    model, _ = warmed
    fresh = dt.dsa_from_mla(mla, index_topk=TOP_K, seed=CFG.seed)
    before, after = fresh.state_dict(), model.state_dict()
    changed = {name for name in before if not torch.equal(before[name], after[name])}
    assert changed and all(".attn.indexer." in name for name in changed)
    indexer_weights = {name for name in before if ".attn.indexer." in name and name.endswith(".weight")}
    assert indexer_weights <= changed  # every indexer matrix and norm gain moved
    assert not model.training and all(p.requires_grad for p in model.parameters())  # back to "inference"


def probe_kl(model, ids):
    """Stage 1's loss on fixed windows, without training."""
    set_training_stage(model, "warmup")
    try:
        with torch.no_grad():
            return dt.warmup_loss(model, ids).item()
    finally:
        set_training_stage(model, "inference")


def test_warmup_lowers_the_kl_and_raises_recall(mla, warmed, probe_ids):
    model, m = warmed
    assert m["step"] == list(range(1, CFG.warmup_steps + 1)) and len(m["kl"]) == CFG.warmup_steps
    fresh = dt.dsa_from_mla(mla, index_topk=TOP_K, seed=CFG.seed)
    assert probe_kl(model, probe_ids) < 0.95 * probe_kl(fresh, probe_ids)
    assert m["eval_step"] == [0, 20, 40] and len(m["recall"]) == 3
    assert m["recall"][0] == dt.topk_recall(fresh, dt.probe_ids(CFG), TOP_K)
    assert m["recall"][-1] > m["recall"][0] + 0.05
    assert all(0.0 <= r <= 1.0 for r in m["recall"])


def test_warmup_loss_is_the_dense_kl_averaged_over_queries_and_layers(mla, probe_ids):
    model = dt.dsa_from_mla(mla, index_topk=TOP_K)
    set_training_stage(model, "warmup")
    loss = dt.warmup_loss(model, probe_ids)
    layers = dt._dsa_layers(model)
    want = sum(indexer_kl_loss(layer.kl_inputs[0], layer.kl_inputs[1], None, "mean") for layer in layers)
    torch.testing.assert_close(loss, want / len(layers))
    assert all(layer.kl_inputs[2] is None for layer in layers)  # dense: nothing selected


def test_training_is_deterministic(mla, warmed):
    model = dt.dsa_from_mla(mla, index_topk=TOP_K, seed=CFG.seed)
    again = dt.warmup_indexer(model, CFG)
    _, first = warmed
    assert again["kl"] == first["kl"] and again["recall"] == first["recall"]


# -- stage 2: sparse training ----------------------------------------------------------------------------


def test_stage_2_routes_each_loss_to_its_own_parameters(warmed):
    model, _ = warmed
    set_training_stage(model, "sparse")
    try:
        batch = sample_batch(dt._corpus("train"), 2, CFG.seq_len, torch.Generator().manual_seed(1))
        lm, kl = dt.sparse_losses(model, batch)
        assert all(layer.kl_inputs[2] is not None for layer in dt._dsa_layers(model))  # over the selected set
        names = [name for name, _ in model.named_parameters()]
        params = list(model.parameters())
        from_lm = torch.autograd.grad(lm, params, retain_graph=True, allow_unused=True)
        from_kl = torch.autograd.grad(kl, params, allow_unused=True)
        for name, g_lm, g_kl in zip(names, from_lm, from_kl, strict=True):
            reached_lm = g_lm is not None and bool(g_lm.abs().any())
            reached_kl = g_kl is not None and bool(g_kl.abs().any())
            if ".attn.indexer." in name:
                assert not reached_lm and reached_kl, name  # the indexer learns only from its KL
            else:
                assert not reached_kl, name  # the model learns only from the LM loss
        assert all(g is not None for name, g in zip(names, from_lm, strict=True) if ".attn.mla." in name)
    finally:
        set_training_stage(model, "inference")


def test_train_sparse_lowers_the_lm_loss(mla):
    model = dt.dsa_from_mla(mla, index_topk=TOP_K, seed=CFG.seed)
    before = dt.validation_loss(model, True, CFG)
    m = dt.train_sparse(model, CFG)
    assert m["step"] == list(range(1, CFG.sparse_steps + 1))
    assert len(m["lm_loss"]) == len(m["kl"]) == CFG.sparse_steps
    assert m["val_loss_sparse"][0] == pytest.approx(before)
    assert m["val_loss_sparse"][-1] < before - 0.05
    assert m["val_loss_sparse"][-1] == pytest.approx(dt.validation_loss(model, True, CFG))
    assert sum(m["lm_loss"][-2:]) < sum(m["lm_loss"][:2])
    assert not model.training and all(p.requires_grad for p in model.parameters())
    assert all(layer.kl_inputs is None and layer.implementation == "gather" for layer in dt._dsa_layers(model))


# -- measuring -------------------------------------------------------------------------------------------


def test_recall_is_one_when_top_k_covers_the_length(mla, probe_ids):
    model = dt.dsa_from_mla(mla)
    assert dt.topk_recall(model, probe_ids, probe_ids.shape[1]) == 1.0
    assert dt.topk_recall(model, probe_ids, 10 * probe_ids.shape[1]) == 1.0


@pytest.mark.parametrize("k", [1, 3, TOP_K, 20])
def test_recall_lies_between_zero_and_one(mla, probe_ids, k):
    model = dt.dsa_from_mla(mla)
    per_layer = dt.recall_by_layer(model, probe_ids, k)
    assert len(per_layer) == mla.config.n_layers
    assert all(0.0 <= r <= 1.0 for r in per_layer)
    assert dt.topk_recall(model, probe_ids, k) == pytest.approx(sum(per_layer) / len(per_layer))


def test_recall_leaves_the_model_as_it_was(mla, probe_ids):
    model = dt.dsa_from_mla(mla)
    set_training_stage(model, "sparse")
    model.train()
    dt.topk_recall(model, probe_ids, 4)
    layers = dt._dsa_layers(model)
    assert model.training and all(layer.implementation == "gather" and layer.keep_for_kl for layer in layers)
    assert all(layer.kl_inputs is None for layer in layers)


def test_validation_loss_dense_and_sparse(mla):
    cfg = dataclasses.replace(CFG, eval_batches=2)
    model = dt.dsa_from_mla(mla, index_topk=TOP_K)
    dense = dt.validation_loss(model, False, cfg)
    assert dense == dt.validation_loss(mla, False, cfg)
    assert dt.validation_loss(model, True, cfg) != dense  # the random indexer drops tokens attention needs
    assert dt.validation_loss(model, True, cfg) == dt.validation_loss(model, True, cfg)


def test_sparse_lr_is_where_the_mla_run_ended():
    from attnlab.train import TrainConfig

    mla_run = TrainConfig()
    assert dt.DSATrainConfig().sparse_lr == pytest.approx(lr_at(mla_run.steps - 1, mla_run))


# -- bad input -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("change, match", [
    ({"top_k": 32}, "top_k=32 must be smaller than seq_len=32"),
    ({"warmup_steps": 0}, "warmup_steps=0"),
    ({"sparse_steps": 2.5}, "sparse_steps=2.5"),
    ({"warmup_lr": 0.0}, "warmup_lr=0.0"),
    ({"sparse_lr": float("nan")}, "sparse_lr=nan"),
    ({"weight_decay": -0.1}, "weight_decay=-0.1"),
    ({"batch_size": True}, "batch_size=True"),
    ({"seed": "0"}, "seed='0'"),
])
def test_config_rejects_bad_values(change, match):
    with pytest.raises(ValueError, match=match):
        dataclasses.replace(CFG, **change)


def test_training_rejects_mismatched_models_and_configs(mla):
    model = dt.dsa_from_mla(mla, index_topk=TOP_K)
    with pytest.raises(ValueError, match="attention='mla'"):
        dt.warmup_indexer(mla, CFG)
    with pytest.raises(ValueError, match="cfg.top_k=4 must equal the model's index_topk=8"):
        dt.train_sparse(model, dataclasses.replace(CFG, top_k=4))
    with pytest.raises(ValueError, match="cfg.seq_len=100 exceeds the model's max_seq_len=64"):
        dt.warmup_indexer(model, dataclasses.replace(CFG, seq_len=100))
    with pytest.raises(ValueError, match="cfg must be a DSATrainConfig"):
        dt.warmup_indexer(model, {"steps": 3})
    with pytest.raises(ValueError, match="sparse=True needs a DSA model"):
        dt.validation_loss(mla, True, CFG)
    with pytest.raises(ValueError, match="sparse=1"):
        dt.validation_loss(model, 1, CFG)
    with pytest.raises(ValueError, match="k=0"):
        dt.topk_recall(model, torch.zeros(1, 4, dtype=torch.long), 0)
    with pytest.raises(ValueError, match="ids must have 2 dims"):
        dt.topk_recall(model, torch.zeros(4, dtype=torch.long), 2)


# -- the script ------------------------------------------------------------------------------------------


def test_main_writes_a_checkpoint_with_both_stages(tmp_path, capsys):
    source, out = tmp_path / "mla.pt", tmp_path / "dsa.pt"
    save_checkpoint(tiny_mla(max_seq_len=160), source, {"val_loss": 0.0})
    dt.main(["--source", str(source), "--out", str(out), "--warmup-steps", "2", "--sparse-steps", "1"])
    model = load_checkpoint(out)
    m = model.metrics
    assert model.config.attention == "dsa" and model.config.index_topk == dt.DSATrainConfig().top_k
    assert m["dsa_train"]["warmup_steps"] == 2 and m["dsa_train"]["sparse_steps"] == 1
    assert len(m["warmup"]["kl"]) == 2 and len(m["sparse"]["lm_loss"]) == 1
    assert set(m["recall"]) == {"untrained", "after_warmup", "after_sparse"}
    assert set(m["val_loss"]) == {"mla_dense", "dsa_sparse_untrained", "dsa_dense_after_warmup",
                                  "dsa_sparse_after_warmup", "dsa_dense", "dsa_sparse"}
    assert m["val_loss"]["dsa_dense_after_warmup"] == m["val_loss"]["mla_dense"]  # stage 1 leaves the model
    assert m["n_indexer_params"] == sum(p.numel() for p in indexer_parameters(model))
    assert "recall@" in capsys.readouterr().out


# -- the widget ------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tok():
    return load_tokenizer()


@pytest.fixture(scope="module")
def explorer(mla, warmed, tok):
    untrained = dt.dsa_from_mla(mla, index_topk=TOP_K, seed=CFG.seed)
    return dw.indexer_explorer({"untrained": untrained, "warmed up": warmed[0]}, tok, TEXT)


def test_probe_rows_are_distributions_and_match_recall(explorer, warmed, tok):
    probe = explorer.probes["warmed up"]
    n = probe.seq_len
    assert n == len(tok.encode(TEXT)) > TOP_K
    causal = torch.ones(n, n).tril()
    for dist in (probe.attention, probe.index_dist):
        torch.testing.assert_close(dist.sum(-1), torch.ones(probe.n_layers, n))
        assert not (dist * (1 - causal)).any()  # nothing on future tokens
    ids = torch.tensor([probe.ids])
    by_layer = dt.recall_by_layer(warmed[0], ids, TOP_K)
    for layer in range(probe.n_layers):
        curve = dw.recall_curve(probe, layer)
        assert float(curve[TOP_K:].mean()) == pytest.approx(by_layer[layer], abs=1e-6)
        assert torch.equal(curve[:TOP_K], torch.ones(TOP_K))  # no choice yet: everything kept


def test_query_stats(explorer):
    probe = explorer.probes["untrained"]
    s = dw.query_stats(probe, 1, probe.seq_len - 1)
    assert s["n_visible"] == probe.seq_len and s["n_selected"] == TOP_K
    assert 0.0 <= s["recall"] <= 1.0 and 0.0 < s["mass"] < 1.0 and s["kl"] > 0
    early = dw.query_stats(probe, 0, 3)
    assert early["n_selected"] == 4 and early["recall"] == 1.0 and early["mass"] == pytest.approx(1.0)


def test_moving_the_controls_changes_the_picture_and_readout(explorer):
    explorer.position.value = explorer.probe.seq_len - 1
    image, readout = explorer.image.value, explorer.readout.value
    assert bytes(image).startswith(b"\x89PNG") and "keeps k = 8" in readout
    explorer.position.value = 5
    assert explorer.image.value != image and "nothing can be missed" in explorer.readout.value
    explorer.indexer.value = "untrained"
    assert "<b>untrained</b>" in explorer.readout.value
    explorer.layer.value = 0
    assert explorer.readout.value == dw.query_html(explorer.probes["untrained"], 0, 5)


def test_callbacks_do_not_print(explorer, capsys):
    for position in (0, 9, explorer.probe.seq_len - 1):
        explorer.position.value = position
    explorer.layer.value = 1
    explorer.indexer.value = "warmed up"
    assert capsys.readouterr() == ("", "")


def test_readout_is_pure_and_escapes_text(explorer):
    probe = explorer.probes["warmed up"]
    last = probe.seq_len - 1
    assert dw.query_html(probe, 1, last) == dw.query_html(probe, 1, last)
    position = next(i for i, t in enumerate(probe.tokens) if "<" in t)
    assert "&lt;" in dw.query_html(probe, 1, position + 1) or "&lt;" in dw.query_html(probe, 0, position)
    assert repr(explorer) == f"IndexerExplorer(indexers=['untrained', 'warmed up'], tokens={probe.seq_len})"


def test_widget_rejects_bad_input(explorer, mla, tok):
    probe = explorer.probes["untrained"]
    with pytest.raises(ValueError, match="layer=2"):
        dw.query_stats(probe, 2, 0)
    with pytest.raises(ValueError, match="position=-1"):
        dw.query_html(probe, 0, -1)
    with pytest.raises(ValueError, match="attention='dsa'"):
        dw.probe_indexer(mla, tok, TEXT)
    with pytest.raises(ValueError, match="at least one token"):
        dw.probe_indexer(explorer_model(mla), tok, "")
    with pytest.raises(ValueError, match="more than max_seq_len=64"):
        dw.probe_indexer(explorer_model(mla), tok, list(range(65)))
    with pytest.raises(ValueError, match="non-empty mapping"):
        dw.indexer_explorer({}, tok, TEXT)


def explorer_model(mla):
    return dt.dsa_from_mla(mla, index_topk=TOP_K)


# -- chapter 12 exercises --------------------------------------------------------------------------------


def test_solutions_pass_the_checks():
    sol = solutions()
    assert ch12.check_selected_kl(sol.answer_selected_kl).startswith("✓")
    assert ch12.check_kl_reach(sol.answer_kl_reach).startswith("✓")
    assert ch12.check_prediction_flat_kl(sol.prediction_flat_kl).startswith("✓")


def test_unattempted_exercises_say_so():
    assert "write your prediction first" in ch12.check_prediction_flat_kl(None)
    for check in (ch12.check_selected_kl, ch12.check_kl_reach):
        assert "not attempted" in check(None)


def _kl_by_hand(w, i, sel, reduction="sum", dense=False):
    """The stage-2 loss written out (the check forbids indexer_kl_loss), or stage 1's with ``dense``."""
    allowed = torch.isfinite(i) if dense else torch.isfinite(i) & selection_mask(sel, i.shape[-1])
    p = w.detach().sum(dim=1) * allowed
    p = p / p.sum(dim=-1, keepdim=True)
    log_q = torch.log_softmax(i.masked_fill(~allowed, float("-inf")), dim=-1).masked_fill(~allowed, 0.0)
    kl = (torch.xlogy(p, p) - p * log_q).sum(dim=-1)
    return kl.sum() if reduction == "sum" else kl.mean()


def _dense_kl(w, i, sel):
    return _kl_by_hand(w, i, sel, dense=True)


def _mean_kl(w, i, sel):
    return _kl_by_hand(w, i, sel, "mean")


def _not_detached(w, i, sel):  # the right value, but the target p is not detached
    allowed = torch.isfinite(i) & selection_mask(sel, i.shape[-1])
    p = w.sum(dim=1) * allowed
    p = p / p.sum(dim=-1, keepdim=True)
    log_q = torch.log_softmax(i.masked_fill(~allowed, float("-inf")), dim=-1).masked_fill(~allowed, 0.0)
    return (torch.xlogy(p, p) - p * log_q).sum()


@pytest.mark.parametrize("wrong, hint", [
    (_dense_kl, "stage 1's KL"),
    (_mean_kl, "mean over queries"),
    (lambda w, i, sel: ch12._kl_slip(w, i, sel, "reverse"), "wrong way round"),
    (lambda w, i, sel: ch12._kl_slip(w, i, sel, "no_renorm"), "renormalise p"),
    (lambda w, i, sel: ch12._kl_slip(w, i, sel, "softmax_all"), "over S_t only"),
    (lambda w, i, sel: _kl_by_hand(w, i, sel) * 1.1, "expected"),
    (lambda w, i, sel: torch.tensor(float("nan")), "not finite"),
    (_not_detached, "detach it"),
    (lambda w, i, sel: w.view(-1, 7), "raised RuntimeError"),
    (lambda w, i, sel: w.sum(dim=1), "return one number"),
    ("kl", "should be a function"),
])
def test_wrong_selected_kl_fails(wrong, hint):
    with pytest.raises(AssertionError, match=hint):
        ch12.check_selected_kl(wrong)


def test_the_hand_written_kl_passes():
    assert ch12.check_selected_kl(_kl_by_hand).startswith("✓")


def test_wrong_kl_reach_fails():
    right = ch12.kl_reach(detach=False)
    everything = {name for name, _ in ch12.exercise_model().named_parameters()}
    for wrong, hint in [
        (ch12.kl_reach(detach=True), "WITH the detach"),
        (everything, "not everything"),
        (right | {"norm.weight"}, "final norm"),
        (right - {"embed.weight"}, "embed.weight"),
        (right - {"blocks.0.mlp.w_1.weight"}, "missing"),
        (right | {"blocks.1.attn.mla.w_o.weight"}, "should not be there"),
        (right | {"blocks.9.attn.w_q.weight"}, "not parameters"),
        ("embed.weight", "set of parameter names"),
    ]:
        with pytest.raises(AssertionError, match=hint):
            ch12.check_kl_reach(wrong)
    assert ch12.check_kl_reach(sorted(right)).startswith("✓")  # a list is fine


def test_flat_indexer_prediction_is_log_k():
    """One-hot attention against flat scores over k tokens costs log k nats; uniform attention costs nothing."""
    kl = ch12.flat_index_kl()
    assert kl["one_hot"] == pytest.approx(math.log(ch12.KL_EXPERIMENT["top_k"]))
    assert kl["uniform"] == pytest.approx(0.0, abs=1e-12)
    verdict = ch12.check_prediction_flat_kl(1.0)
    assert verdict.startswith("✗") and "not bounded by 1" in verdict
