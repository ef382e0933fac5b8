"""Tests for attnlab.model and attnlab.train: shapes, cached generation, attention maps, checkpoints, training."""

from __future__ import annotations

import math
from dataclasses import asdict

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from attnlab import model as model_module
from attnlab.model import TinyLM, TinyLMConfig, checkpoint_metrics, generate, load_checkpoint, save_checkpoint
from attnlab.train import TrainConfig, lr_at, sample_batch, train

F64 = torch.float64
seeds = st.integers(0, 2**31 - 1)


@st.composite
def tiny_configs(draw):
    attention = draw(st.sampled_from(["mha", "mqa", "gqa", "mla", "dsa"]))
    n_heads = draw(st.sampled_from([2, 4]))
    return TinyLMConfig(
        kv_lora_rank=draw(st.integers(2, 12)),
        qk_rope_head_dim=draw(st.sampled_from([2, 4])),
        index_n_heads=draw(st.integers(1, 3)),
        index_head_dim=8,
        index_topk=draw(st.integers(1, 6)),  # smaller than the context: the sparse path really drops tokens
        vocab_size=draw(st.integers(5, 40)),
        d_model=n_heads * draw(st.sampled_from([2, 4])),
        n_layers=draw(st.integers(1, 2)),
        n_heads=n_heads,
        n_kv_heads=draw(st.sampled_from([d for d in (1, 2, 4) if n_heads % d == 0])),
        d_ff=draw(st.integers(4, 24)),
        max_seq_len=16,
        attention=attention,
    )


def make_model(config: TinyLMConfig, seed: int, dtype: torch.dtype = F64) -> TinyLM:
    """A model with weights large enough that its logits are far from uniform (clear argmax)."""
    torch.manual_seed(seed)
    model = TinyLM(config).to(dtype).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0.0, 0.5)
    return model


SMALL = TinyLMConfig(vocab_size=32, d_model=16, n_layers=2, n_heads=4, n_kv_heads=2, d_ff=24, max_seq_len=12)


# --- shapes and config ----------------------------------------------------------------------------------


def test_logits_shape_and_layer_kinds():
    model = TinyLM(SMALL)
    logits = model(torch.randint(0, 32, (3, 7)))
    assert logits.shape == (3, 7, 32) and logits.dtype == torch.float32
    assert len(model.blocks) == 2
    assert all(block.attn.config.n_kv_heads == 2 for block in model.blocks)
    assert model.embed.weight.shape == (32, 16)


@pytest.mark.parametrize(("attention", "n_kv"), [("mha", 4), ("mqa", 1), ("gqa", 2)])
def test_attention_kind_sets_kv_heads(attention, n_kv):
    config = TinyLMConfig(vocab_size=8, d_model=16, n_layers=1, n_heads=4, n_kv_heads=2, attention=attention)
    attn = config.attention_config()
    assert attn.n_kv_heads == n_kv and attn.kind == attention and attn.rope
    assert TinyLM(config).blocks[0].attn.w_k.weight.shape == (n_kv * 4, 16)


def test_output_head_is_tied_to_the_embedding():
    model = TinyLM(SMALL)
    ids = torch.randint(0, 32, (1, 4))
    h = model.embed(ids)
    for block in model.blocks:
        h, _ = block(h)
    torch.testing.assert_close(model(ids), model.norm(h) @ model.embed.weight.T)
    assert not any(p is model.embed.weight for name, p in model.named_parameters() if name != "embed.weight")


def test_loss_is_next_token_cross_entropy():
    model = make_model(SMALL, 0)
    ids = torch.randint(0, 32, (2, 6))
    logits = model(ids)
    log_probs = torch.log_softmax(logits, dim=-1)
    expected = -sum(log_probs[b, t, ids[b, t + 1]] for b in range(2) for t in range(5)) / 10
    torch.testing.assert_close(model.loss(ids), expected)


def test_fresh_model_predicts_near_uniform():
    """The small init (std 0.02) starts near the uniform loss ln(vocab)."""
    model = TinyLM(SMALL)
    loss = model.loss(torch.randint(0, 32, (4, 12))).item()
    assert abs(loss - math.log(32)) < 0.05


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"attention": "nsa"}, "attention='nsa' must be one of"),
        ({"attention": "dsa", "index_head_dim": 7}, "index_head_dim=7"),
        ({"attention": "mla", "qk_rope_head_dim": 3}, "qk_rope_head_dim=3"),
        ({"n_heads": 6, "n_kv_heads": 4, "d_model": 48}, "n_heads=6 is not divisible by n_kv_heads=4"),
        ({"d_model": 100, "n_heads": 8}, "d_model=100 is not divisible by n_heads=8"),
        ({"vocab_size": 0}, "vocab_size=0 must be a positive integer"),
        ({"max_seq_len": -1}, "max_seq_len=-1 must be a positive integer"),
        ({"n_layers": 2.0}, "n_layers=2.0 must be a positive integer"),
        ({"d_model": 24, "n_heads": 8}, "head_dim=3 must be even when rope=True"),
    ],
)
def test_config_errors(kwargs, message):
    with pytest.raises(ValueError, match=message):
        TinyLMConfig(**kwargs)


def test_forward_errors():
    model = TinyLM(SMALL)
    with pytest.raises(ValueError, match=r"ids must lie in \[0, vocab_size=32\)"):
        model(torch.tensor([[1, 32]]))
    with pytest.raises(ValueError, match=r"ids must lie in \[0, vocab_size=32\)"):
        model(torch.tensor([[-1, 3]]))
    with pytest.raises(ValueError, match="sequence length 13 exceeds max_seq_len=12"):
        model(torch.zeros(1, 13, dtype=torch.long))
    with pytest.raises(ValueError, match=r"ids must have 2 dims \(batch, seq\)"):
        model(torch.zeros(5, dtype=torch.long))
    with pytest.raises(ValueError, match="ids must be an integer tensor of token ids, got torch.float32"):
        model(torch.zeros(1, 3))
    with pytest.raises(ValueError, match="cache has 1 layers, the model has n_layers=2"):
        model(torch.zeros(1, 3, dtype=torch.long), cache=TinyLM(TinyLMConfig(n_layers=1)).new_cache())
    cache = model.new_cache()
    model(torch.zeros(1, 10, dtype=torch.long), cache=cache)
    with pytest.raises(ValueError, match="sequence length 13 exceeds max_seq_len=12"):
        model(torch.zeros(1, 3, dtype=torch.long), cache=cache)


# --- cached generation == uncached ----------------------------------------------------------------------


@settings(max_examples=15, deadline=None)
@given(config=tiny_configs(), batch=st.integers(1, 2), prompt=st.integers(1, 4), new=st.integers(1, 6),
       seed=seeds)
def test_cached_greedy_generation_equals_uncached(config, batch, prompt, new, seed):
    model = make_model(config, seed)
    ids = torch.randint(0, config.vocab_size, (batch, prompt), generator=torch.Generator().manual_seed(seed))
    cached = generate(model, ids, new, use_cache=True)
    uncached = generate(model, ids, new, use_cache=False)
    assert cached.shape == (batch, prompt + new)
    assert torch.equal(cached[:, :prompt], ids)
    assert torch.equal(cached, uncached)
    # greedy: each new token is the argmax of a full forward over everything before it
    logits = model(cached[:, :-1])
    assert torch.equal(cached[:, prompt:], logits[:, prompt - 1 :].argmax(-1))


@settings(max_examples=15, deadline=None)
@given(config=tiny_configs(), batch=st.integers(1, 2), prompt=st.integers(1, 5), new=st.integers(1, 6),
       seed=seeds)
def test_cached_logits_equal_full_forward_at_every_step(config, batch, prompt, new, seed):
    model = make_model(config, seed)
    ids = torch.randint(0, config.vocab_size, (batch, prompt + new), generator=torch.Generator().manual_seed(seed))
    full = model(ids)
    cache = model.new_cache()
    steps = [model(ids[:, :prompt], cache=cache)]
    for t in range(prompt, prompt + new):
        steps.append(model(ids[:, t : t + 1], cache=cache))
        assert cache.seq_len == t + 1
    torch.testing.assert_close(torch.cat(steps, dim=1), full, rtol=1e-10, atol=1e-10)


def test_sampled_generation_is_reproducible_and_cache_independent():
    model = make_model(SMALL, 1)
    ids = torch.randint(0, 32, (2, 3))
    runs = [generate(model, ids, 6, use_cache=use_cache, temperature=0.8,
                     generator=torch.Generator().manual_seed(5)) for use_cache in (True, False, True)]
    assert torch.equal(runs[0], runs[1]) and torch.equal(runs[0], runs[2])
    assert runs[0].min() >= 0 and runs[0].max() < 32
    other = generate(model, ids, 6, temperature=0.8, generator=torch.Generator().manual_seed(6))
    assert not torch.equal(runs[0], other)


def test_generate_edge_cases_and_errors():
    model = make_model(SMALL, 2)
    ids = torch.randint(0, 32, (1, 3))
    assert torch.equal(generate(model, ids, 0), ids)
    with pytest.raises(ValueError, match="max_new_tokens=-1 must be a non-negative integer"):
        generate(model, ids, -1)
    with pytest.raises(ValueError, match="temperature=-0.5 must be a finite number >= 0"):
        generate(model, ids, 2, temperature=-0.5)
    with pytest.raises(ValueError, match=r"ids must have 2 dims"):
        generate(model, ids[0], 2)
    assert generate(model, ids, 10).shape == (1, 13)  # the 13th token is predicted from 12: fits
    for use_cache in (True, False):
        with pytest.raises(ValueError, match="sequence length 13 exceeds max_seq_len=12"):
            generate(model, ids, 11, use_cache=use_cache)


# --- attention maps -------------------------------------------------------------------------------------


def test_return_attention_maps():
    model = make_model(SMALL, 3)
    ids = torch.randint(0, 32, (2, 6))
    logits, maps = model(ids, return_attention=True)
    torch.testing.assert_close(logits, model(ids))
    assert len(maps) == SMALL.n_layers
    for w in maps:
        assert w.shape == (2, SMALL.n_heads, 6, 6)
        torch.testing.assert_close(w.sum(-1), torch.ones(2, SMALL.n_heads, 6, dtype=F64))
        assert torch.all(w.triu(diagonal=1) == 0) and torch.all(w >= 0)
        assert torch.all(w[..., 0, 0] == 1)  # the first token can only look at itself


def test_return_attention_with_cache():
    model = make_model(SMALL, 4)
    ids = torch.randint(0, 32, (1, 5))
    _, full_maps = model(ids, return_attention=True)
    cache = model.new_cache()
    model(ids[:, :4], cache=cache)
    _, maps = model(ids[:, 4:], cache=cache, return_attention=True)
    for w, w_full in zip(maps, full_maps, strict=True):
        assert w.shape == (1, SMALL.n_heads, 1, 5)
        torch.testing.assert_close(w, w_full[:, :, 4:])


# --- checkpoints ----------------------------------------------------------------------------------------


def test_checkpoint_round_trip(tmp_path, monkeypatch):
    model = TinyLM(SMALL)
    metrics = {"val_loss": 3.5, "history": {"step": [1, 2], "val_loss": [4.0, 3.5]}}
    path = tmp_path / "tiny_test.pt"
    save_checkpoint(model, path, metrics)
    loaded = load_checkpoint(path)
    assert loaded.config == model.config and not loaded.training
    assert loaded.metrics == metrics
    for name, tensor in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[name], tensor.to(torch.float16).to(torch.float32)), name
    ids = torch.randint(0, 32, (1, 5))
    torch.testing.assert_close(loaded(ids), model(ids), rtol=1e-2, atol=1e-3)  # float16 weights

    as_f64 = load_checkpoint(path, dtype=F64)
    assert all(p.dtype == F64 for p in as_f64.parameters())

    monkeypatch.setattr(model_module, "DATA_DIR", tmp_path)  # load by name from the data folder
    by_name = load_checkpoint("tiny_test")
    assert torch.equal(by_name.embed.weight, loaded.embed.weight)
    assert checkpoint_metrics("tiny_test") == metrics
    with pytest.raises(ValueError, match=r"no checkpoint 'missing'; shipped: \['tiny_test'\]"):
        load_checkpoint("missing")


def test_checkpoint_without_metrics(tmp_path):
    path = tmp_path / "m.pt"
    save_checkpoint(TinyLM(SMALL), path)
    assert load_checkpoint(path).metrics == {}


# --- training -------------------------------------------------------------------------------------------


def test_sample_batch_windows():
    data = torch.arange(100) * 3
    gen = torch.Generator().manual_seed(0)
    batch = sample_batch(data, 8, 10, gen)
    assert batch.shape == (8, 11) and batch.dtype == data.dtype
    for row in batch:
        start = int(row[0]) // 3
        assert torch.equal(row, data[start : start + 11])


def test_sample_batch_reaches_every_window():
    seq_len = 5
    data = torch.arange(seq_len + 3)  # windows of 6 tokens start at 0, 1 or 2
    gen = torch.Generator().manual_seed(0)
    starts = {int(row[0]) for _ in range(50) for row in sample_batch(data, 4, seq_len, gen)}
    assert starts == {0, 1, 2}
    exact = sample_batch(torch.arange(seq_len + 1), 3, seq_len, gen)  # exactly one window fits
    assert torch.equal(exact, torch.arange(seq_len + 1).expand(3, -1))


def test_sample_batch_is_deterministic_and_rejects_short_data():
    data = torch.arange(50)
    a = sample_batch(data, 4, 8, torch.Generator().manual_seed(3))
    b = sample_batch(data, 4, 8, torch.Generator().manual_seed(3))
    assert torch.equal(a, b)
    with pytest.raises(ValueError, match=r"data has 8 tokens, fewer than seq_len \+ 1 = 9"):
        sample_batch(torch.arange(8), 2, 8, torch.Generator())


def test_lr_schedule():
    cfg = TrainConfig(steps=100, warmup=10, lr=1.0)
    assert lr_at(0, cfg) == pytest.approx(0.1)
    assert lr_at(4, cfg) == pytest.approx(0.5)
    assert lr_at(9, cfg) == pytest.approx(1.0)  # warm-up reaches lr
    assert lr_at(10, cfg) == pytest.approx(1.0)  # cosine starts at lr
    assert lr_at(99, cfg) == pytest.approx(0.1)  # and ends at lr/10 on the last step
    warm = [lr_at(s, cfg) for s in range(10)]
    decay = [lr_at(s, cfg) for s in range(10, 100)]
    assert all(a < b for a, b in zip(warm, warm[1:], strict=False))
    assert all(a > b for a, b in zip(decay, decay[1:], strict=False))
    assert min(decay) == pytest.approx(0.1) and max(warm + decay) == pytest.approx(1.0)
    no_warmup = TrainConfig(steps=21, warmup=0, lr=2.0)
    assert lr_at(0, no_warmup) == pytest.approx(2.0)
    assert lr_at(10, no_warmup) == pytest.approx(2.0 * (0.1 + 0.9 * 0.5))  # half way: cos(pi/2) = 0
    assert lr_at(20, no_warmup) == pytest.approx(0.2)


@pytest.mark.parametrize("name", ["steps", "batch_size", "seq_len", "eval_every", "eval_batches"])
def test_train_config_errors(name):
    with pytest.raises(ValueError, match=f"{name}=0 must be a positive integer"):
        TrainConfig(**{name: 0})


def test_short_training_run_lowers_the_loss():
    model_config = TinyLMConfig(d_model=32, n_layers=1, n_heads=4, n_kv_heads=2, d_ff=64, max_seq_len=64)
    cfg = TrainConfig(steps=20, batch_size=4, seq_len=32, eval_every=10, eval_batches=2, warmup=5)
    lines = []
    model, metrics = train(model_config, cfg, log=lines.append)
    assert set(metrics) == {"train", "history", "val_loss", "seconds", "n_params"}
    history = metrics["history"]
    assert set(history) == {"step", "train_loss", "val_loss"}
    assert history["step"] == [10, 20] and len(history["train_loss"]) == len(history["val_loss"]) == 2
    assert metrics["train"] == asdict(cfg)
    assert metrics["val_loss"] == history["val_loss"][-1]
    assert metrics["n_params"] == sum(p.numel() for p in model.parameters())
    assert metrics["seconds"] > 0
    assert len(lines) == 2 and lines[-1].startswith("step    20")
    assert not model.training and model.config == model_config
    start = math.log(model_config.vocab_size)  # the loss of a near-uniform prediction, where training starts
    assert history["train_loss"][1] < history["train_loss"][0] - 0.05
    assert history["val_loss"][1] < history["val_loss"][0] - 0.05
    assert history["val_loss"][1] < start - 0.1
    assert all(math.isfinite(x) for x in history["train_loss"] + history["val_loss"])

