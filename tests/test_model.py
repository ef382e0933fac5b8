"""Tests for attnlab.model and attnlab.train: shapes, cached generation, attention maps, checkpoints, training."""

from __future__ import annotations

import math
from dataclasses import asdict

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from attnlab import costs, linear_attention
from attnlab import model as model_module
from attnlab.linear_attention import RecurrentState
from attnlab.model import (
    TinyLM,
    TinyLMConfig,
    checkpoint_metrics,
    generate,
    load_checkpoint,
    save_checkpoint,
    tiny_config,
)
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



# --- the linear/full hybrid (chapter 18) -------------------------------------------------------------------


@st.composite
def hybrid_configs(draw):
    n_layers = draw(st.integers(2, 4))
    return TinyLMConfig(vocab_size=draw(st.integers(5, 40)), d_model=16, n_layers=n_layers, n_heads=4,
                        n_kv_heads=draw(st.sampled_from([1, 2, 4])), d_ff=draw(st.integers(4, 24)), max_seq_len=16,
                        attention=draw(st.sampled_from(model_module.HYBRID_FULL_KINDS)), kv_lora_rank=8,
                        qk_rope_head_dim=2, full_every=draw(st.integers(2, n_layers)))


def test_hybrid_layers_follow_full_every():
    config = tiny_config("gqa_hybrid", n_layers=8)
    assert config.full_every == 4 and config.attention == "gqa" and config.hybrid
    full = tuple(i for i, kind in enumerate(config.layer_types()) if kind == "full_attention")
    assert full == (3, 7) == costs.hybrid_full_layers(8, 3)  # Qwen3-Next's rule, full_attention_interval 4
    model = TinyLM(config)
    kinds = [type(block.attn).__name__ for block in model.blocks]
    assert kinds == ["LinearAttention"] * 3 + ["GroupedQueryAttention"] + ["LinearAttention"] * 3 + [
        "GroupedQueryAttention"]
    linear = model.blocks[0].attn.config
    assert (linear.d_model, linear.n_heads, linear.head_dim, linear.d_v) == (128, 8, 16, 16)
    assert (linear.rule, linear.conv_size, linear.chunk_size) == ("gated_delta", 4, 64)
    assert not TinyLM(tiny_config("gqa")).config.hybrid and tiny_config("gqa").layer_types() == ("full_attention",) * 4


@pytest.mark.parametrize(("fields", "message"), [
    ({"full_every": 1}, "full_every=1 makes every layer full"),
    ({"full_every": 5}, "full_every=5 > n_layers=4 leaves no full layer"),
    ({"full_every": -1}, "full_every=-1 must be a non-negative integer"),
    ({"full_every": 2.0}, "full_every=2.0 must be a non-negative integer"),
    ({"full_every": 2, "window": 8}, "full_every=2 cannot be combined with window"),
    ({"full_every": 2, "kv_share": 2}, "full_every=2 cannot be combined with window, n_sinks or kv_share"),
    ({"full_every": 2, "attention": "dsa"}, "full_every=2 with attention='dsa'"),
])
def test_hybrid_config_errors_teach(fields, message):
    with pytest.raises(ValueError, match=message):
        TinyLMConfig(**fields)


@settings(max_examples=12, deadline=None)
@given(config=hybrid_configs(), batch=st.integers(1, 2), prompt=st.integers(1, 4), new=st.integers(1, 6), seed=seeds)
def test_hybrid_cached_generation_equals_uncached(config, batch, prompt, new, seed):
    model = make_model(config, seed)
    ids = torch.randint(0, config.vocab_size, (batch, prompt), generator=torch.Generator().manual_seed(seed))
    cached = generate(model, ids, new, use_cache=True)
    assert torch.equal(cached, generate(model, ids, new, use_cache=False))
    logits = model(cached[:, :-1])  # greedy: every new token is the argmax of one uncached forward
    assert torch.equal(cached[:, prompt:], logits[:, prompt - 1:].argmax(-1))


def _hybrid_f64(seed: int = 0, **fields) -> TinyLM:
    """The tiny hybrid's shape in float64, with weights large enough that the layers' outputs matter."""
    torch.manual_seed(seed)
    model = TinyLM(tiny_config("gqa_hybrid", **fields)).double().eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("weight"):  # std 0.16 instead of the init's 0.02; the gates' A and dt stay in range
                p.mul_(8.0)
    return model


def test_hybrid_decode_equals_prefill_over_several_chunks():
    """Prefill 70 tokens (two chunks of 64, the second partial), then 80 one-token steps, against one forward over
    all 150: the linear layers' chunkwise form, recurrence and carried state agree in float64."""
    model = _hybrid_f64(max_seq_len=160)
    ids = torch.randint(0, 512, (2, 150), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        full = model(ids)
        cache = model.new_cache()
        steps = [model(ids[:, :70], cache=cache)] + [model(ids[:, t:t + 1], cache=cache) for t in range(70, 150)]
    torch.testing.assert_close(torch.cat(steps, dim=1), full, rtol=1e-10, atol=1e-10)
    assert cache.seq_len == 150 and cache.n_tokens == 150


def test_a_decode_step_of_the_linear_layers_is_one_step_of_the_recurrence(monkeypatch):
    """In the model, a prefill runs the linear layers' chunkwise form and a one-token step the recurrent form;
    the step's logits and the state it leaves equal a chunkwise prefill over one token more (float64)."""
    model = _hybrid_f64()
    calls = {"chunkwise": 0, "recurrent": 0}

    def counted(name, function):
        def run(*args, **kwargs):
            calls[name] += 1
            return function(*args, **kwargs)
        return run

    monkeypatch.setattr(linear_attention, "delta_rule_chunkwise",
                        counted("chunkwise", linear_attention.delta_rule_chunkwise))
    monkeypatch.setattr(linear_attention, "delta_rule_recurrent",
                        counted("recurrent", linear_attention.delta_rule_recurrent))
    ids = torch.randint(0, 512, (2, 41), generator=torch.Generator().manual_seed(2))
    stepped, prefilled = model.new_cache(), model.new_cache()
    with torch.no_grad():
        model(ids[:, :40], cache=stepped)
        assert calls == {"chunkwise": 3, "recurrent": 0}  # three linear layers, one chunkwise call each
        step = model(ids[:, 40:], cache=stepped)
        assert calls == {"chunkwise": 3, "recurrent": 3}  # the step: one recurrent update per linear layer
        whole = model(ids, cache=prefilled)
    torch.testing.assert_close(step, whole[:, 40:], rtol=1e-10, atol=1e-10)
    for i in (0, 1, 2):
        a, b = stepped[i], prefilled[i]
        assert isinstance(a, RecurrentState) and a.seq_len == b.seq_len == 41
        torch.testing.assert_close(a.S, b.S, rtol=1e-10, atol=1e-12)
        torch.testing.assert_close(a.conv, b.conv, rtol=1e-10, atol=1e-12)  # the convolution's last 3 inputs


@pytest.mark.parametrize("dtype", [torch.float32, F64])
def test_hybrid_cache_bytes_are_the_fixed_states_plus_the_full_layers_kv(dtype):
    """KVCache of the tiny hybrid: each linear layer's RecurrentState holds costs.linear_state_bytes (state and
    convolution inputs in the model's dtype) at every length; the full layer's K/V grows by 2 n_kv d_h numbers a
    token. bytes_per_token counts the growing part only; chapter 18's hybrid_cache_bytes gives the same total."""
    model = TinyLM(tiny_config("gqa_hybrid")).to(dtype).eval()
    c, size = model.config, torch.finfo(dtype).bits // 8
    lin = c.linear_config()
    state = costs.linear_state_bytes(lin.n_heads, lin.head_dim, lin.d_v, dtype, conv_channels=lin.conv_channels,
                                     conv_kernel=lin.conv_size, conv_dtype=dtype)
    per_token = 2 * c.n_kv_heads * (c.d_model // c.n_heads) * size  # one full GQA layer
    tiny = costs.HybridModel(name="tiny_gqa_hybrid", n_layers=c.n_layers, full_layers=(3,), full_kind="gqa",
                             n_kv_heads=c.n_kv_heads, head_dim=c.d_model // c.n_heads, linear_kind="gated_deltanet",
                             linear_heads=lin.n_heads, linear_key_heads=lin.n_heads, d_k=lin.head_dim, d_v=lin.d_v,
                             conv_kernel=lin.conv_size, max_context=c.max_seq_len, source="tiny_config('gqa_hybrid')")
    batch, cache = 2, model.new_cache()
    ids = torch.randint(0, c.vocab_size, (batch, 100))
    with torch.no_grad():
        model(ids[:, :30], cache=cache)
        for length in (30, 31, 100):
            if length > cache.seq_len:
                model(ids[:, cache.seq_len:length], cache=cache)
            assert cache.state_nbytes == batch * 3 * state
            assert cache.nbytes == batch * (3 * state + 1 * length * per_token)
            assert cache.nbytes == batch * costs.hybrid_cache_bytes(tiny, length, dtype, dtype)["total"]
            assert cache.bytes_per_token() == batch * per_token  # one more token: the full layer's K/V only
            assert cache.n_tokens == length and cache.window is None
    gqa_cache = TinyLM(tiny_config("gqa")).to(dtype).new_cache()
    TinyLM(tiny_config("gqa")).to(dtype)(ids, cache=gqa_cache)
    assert gqa_cache.bytes_per_token() == 4 * cache.bytes_per_token() and gqa_cache.state_nbytes == 0
    with pytest.raises(ValueError, match="seq_len=50: a recurrent state cannot be cropped"):
        cache.crop(50)


def test_hybrid_attention_maps():
    """return_attention gives each layer's (batch, heads, seq, seq) weights: softmax in the full layer, the
    linear layers' implicit ones (rows need not sum to 1); a cached call refuses it in a linear layer."""
    model = _hybrid_f64()
    ids = torch.randint(0, 512, (1, 9))
    with torch.no_grad():
        logits, maps = model(ids, return_attention=True)
        torch.testing.assert_close(logits, model(ids))
        assert all(w.shape == (1, 8, 9, 9) and torch.all(w.triu(1) == 0) for w in maps)
        torch.testing.assert_close(maps[3].sum(-1), torch.ones(1, 8, 9, dtype=F64))
        cache = model.new_cache()
        model(ids[:, :5], cache=cache)
        with pytest.raises(ValueError, match="return_weights=True needs an empty cache"):
            model(ids[:, 5:], cache=cache, return_attention=True)


def test_shipped_hybrid_checkpoint():
    model = load_checkpoint("tiny_gqa_hybrid")
    assert model.config == tiny_config("gqa_hybrid")
    metrics = checkpoint_metrics("tiny_gqa_hybrid")
    assert metrics["train"] == checkpoint_metrics("tiny_gqa")["train"]  # trained like the others
    assert metrics["n_params"] == sum(p.numel() for p in model.parameters())
    assert 2.0 < metrics["val_loss"] < 4.0
    ids = torch.randint(0, 512, (1, 6), generator=torch.Generator().manual_seed(0))
    assert torch.equal(generate(model, ids, 20), generate(model, ids, 20, use_cache=False))
