"""Chapter 4, Key-Value caching: the decode stepper widget and the exercise checks."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch

from attnlab.exercises import ch04
from attnlab.gqa import AttentionConfig, GroupedQueryAttention
from attnlab.interactive import kv_cache as kv_widgets
from attnlab.kv_cache import LayerCache
from attnlab.model import TinyLM, TinyLMConfig, generate
from attnlab.tokenization import load_tokenizer, visible_token

SOLUTIONS = Path(__file__).resolve().parents[1] / "notebooks" / "solutions" / "ch04.py"
PROMPT = 'The "for" statement <iterates> & loops'
N_NEW = 6


def load_solutions():
    spec = importlib.util.spec_from_file_location("solutions_ch04", SOLUTIONS)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def tok():
    return load_tokenizer()


@pytest.fixture(scope="module", params=["mha", "gqa"])
def model(request):
    torch.manual_seed(0)
    config = TinyLMConfig(d_model=32, n_layers=2, n_heads=4, n_kv_heads=2, d_ff=64, max_seq_len=64,
                          attention=request.param)
    return TinyLM(config).eval()


@pytest.fixture(scope="module")
def stepper(model, tok):
    return kv_widgets.decode_stepper(model, tok, PROMPT, n_new=N_NEW)


def expected_bytes(model, n_tokens: int) -> int:
    c = model.config.attention_config()
    return 2 * model.config.n_layers * c.n_kv_heads * c.head_dim * 4 * n_tokens  # float32


# -- the recorded generation -----------------------------------------------------------------------------


def test_trace_feeds_the_tokens_generate_produces(model, tok):
    ids = torch.tensor([tok.encode(PROMPT)])
    trace = kv_widgets.trace_decode(model, tok, ids, N_NEW)
    assert list(trace.ids) == generate(model, ids, N_NEW, use_cache=False)[0].tolist()
    assert trace.steps[-1].next_id == generate(model, ids, N_NEW + 1)[0, -1].item()
    assert trace.prompt_len == ids.shape[1] and len(trace.steps) == N_NEW + 1
    assert len(trace.tokens) == len(trace.ids)


def test_trace_steps_prefill_then_one_token_each(model, tok):
    trace = kv_widgets.trace_decode(model, tok, tok.encode(PROMPT), N_NEW)
    p = trace.prompt_len
    assert (trace.steps[0].n_cached, trace.steps[0].n_new) == (0, p)
    for s in trace.steps[1:]:
        assert (s.n_cached, s.n_new) == (p + s.step - 1, 1)
        assert s.cache_bytes == expected_bytes(model, s.n_tokens) == trace.cache_bytes_per_token * s.n_tokens


def test_attention_rows_are_distributions_over_the_cache(model, tok):
    trace = kv_widgets.trace_decode(model, tok, tok.encode(PROMPT), N_NEW)
    for s in trace.steps:
        assert s.attention.shape == (model.config.n_layers, model.config.n_heads, s.n_tokens)
        torch.testing.assert_close(s.attention.sum(-1), torch.ones(s.attention.shape[:2]))
    row = kv_widgets.attention_row(trace, 2, 0)
    torch.testing.assert_close(row, trace.steps[2].attention[0].mean(0))
    torch.testing.assert_close(kv_widgets.attention_row(trace, 2, 1, head=3), trace.steps[2].attention[1, 3])


def test_trace_attention_matches_a_full_forward(model, tok):
    """The newest token's row at a decode step equals the last row of the full (uncached) forward."""
    trace = kv_widgets.trace_decode(model, tok, tok.encode(PROMPT), N_NEW)
    s = trace.steps[3]
    ids = torch.tensor([list(trace.ids[: s.n_tokens])])
    with torch.no_grad():
        _, maps = model(ids, return_attention=True)
    full = torch.stack([w[0, :, -1, :] for w in maps])
    torch.testing.assert_close(s.attention, full, atol=1e-5, rtol=0)


# -- what the widget shows -------------------------------------------------------------------------------


@pytest.mark.parametrize("step", [0, 1, 3, N_NEW])
def test_moving_the_slider_shows_the_cache_bytes_of_that_step(stepper, model, step):
    stepper.step.value = step
    n_tokens = stepper.trace.prompt_len + step
    want = expected_bytes(model, n_tokens)
    assert f"{want:,} B" in stepper.view.value
    assert f"{n_tokens} tokens" in stepper.view.value
    assert stepper.view.value == kv_widgets.step_html(stepper.trace, step, stepper.layer.value, None)


def test_slider_changes_the_shown_bytes(stepper, model):
    stepper.step.value = 1
    before = stepper.view.value
    stepper.step.value = 2
    after = stepper.view.value
    assert before != after
    assert f"{expected_bytes(model, stepper.trace.prompt_len + 2):,} B" in after
    assert f"{expected_bytes(model, stepper.trace.prompt_len + 2):,} B" not in before


def test_layer_and_head_menus_change_the_shading_only(stepper):
    stepper.step.value = 2
    base = stepper.view.value
    stepper.head.value = 1
    assert stepper.view.value != base and "head 1" in stepper.view.value
    stepper.layer.value = 0
    assert "layer 0" in stepper.view.value
    stepper.head.value, stepper.layer.value = None, stepper.trace.n_layers - 1
    assert stepper.view.value == base


def test_callbacks_do_not_print(stepper, capsys):
    for step in range(len(stepper.trace.steps)):
        stepper.step.value = step
    stepper.head.value = 0
    stepper.head.value = None
    assert capsys.readouterr() == ("", "")


def test_step_html_is_pure_and_escapes_text(stepper):
    trace = stepper.trace
    first = kv_widgets.step_html(trace, 4)
    assert first == kv_widgets.step_html(trace, 4)
    assert "&lt;" in first and "<iterates>" not in first
    assert "prefill" in kv_widgets.step_html(trace, 0) and "decode" in first


def test_cached_and_new_tokens_are_marked(stepper):
    trace = stepper.trace
    text = kv_widgets.step_html(trace, 2)
    s = trace.steps[2]
    assert text.count("K/V from the cache") == s.n_cached
    assert text.count("K/V computed at this step") == s.n_new == 1
    prefill = kv_widgets.step_html(trace, 0)
    assert prefill.count("K/V computed at this step") == trace.prompt_len
    assert prefill.count("K/V from the cache") == 0


def test_invisible_tokens_are_shown():
    assert visible_token(b" if\n\t\x0c") == "·if↵⇥\\x0c"
    assert visible_token("é".encode()[:1]) == "\\xc3"


def test_step_figures_count_the_projections(stepper, model):
    f = kv_widgets.step_figures(stepper.trace, 3)
    n_layers = model.config.n_layers
    assert f["kv_projections"] == n_layers
    assert f["kv_projections_uncached"] == (stepper.trace.prompt_len + 3) * n_layers
    assert f["cache_bytes"] == f["formula_bytes"]


def test_repr_is_short_and_deterministic(stepper):
    assert repr(stepper) == f"DecodeStepper(prompt_len={stepper.trace.prompt_len}, steps={N_NEW + 1})"


def test_bad_input(model, tok):
    trace = kv_widgets.trace_decode(model, tok, tok.encode("a b"), 2)
    with pytest.raises(ValueError, match=r"step=3 must be an int in \[0, 2\]"):
        kv_widgets.step_html(trace, 3)
    with pytest.raises(ValueError, match="layer=5"):
        kv_widgets.attention_row(trace, 0, 5)
    with pytest.raises(ValueError, match="head=9"):
        kv_widgets.attention_row(trace, 0, 0, head=9)
    with pytest.raises(ValueError, match="n_new=-1"):
        kv_widgets.trace_decode(model, tok, [1, 2], -1)
    with pytest.raises(ValueError, match="exceeds max_seq_len=64"):
        kv_widgets.trace_decode(model, tok, [1, 2], 63)
    with pytest.raises(ValueError, match="one non-empty sequence"):
        kv_widgets.trace_decode(model, tok, torch.zeros(2, 3, dtype=torch.long), 1)
    with pytest.raises(ValueError, match="prompt=''"):
        kv_widgets.decode_stepper(model, tok, "")


# -- chapter 4 exercises ---------------------------------------------------------------------------------


def test_solutions_pass_the_checks():
    sol = load_solutions()
    assert ch04.check_cache_bytes(sol.answer_cache_bytes).startswith("✓")
    assert ch04.check_decode_loop(sol.answer_decode_loop).startswith("✓")
    assert ch04.check_llama3_tokens_in_24gib(sol.answer_tokens_in_24gib).startswith("✓")


def test_unattempted_exercises_say_so():
    for check in (ch04.check_cache_bytes, ch04.check_decode_loop, ch04.check_llama3_tokens_in_24gib):
        assert "not attempted" in check(None)


def test_expected_cache_bytes_equals_a_measured_cache():
    """Build the cache of exercise 1 for a few tokens and scale: the check's answer is what LayerCache holds."""
    e = ch04.EXERCISE_1
    c = e["config"]
    layer = LayerCache()
    k = torch.zeros(e["batch"], c.n_kv_heads, 3, c.head_dim, dtype=e["dtype"])
    layer.update(k=k, v=k.clone())
    assert layer.nbytes * e["n_layers"] * e["seq_len"] // 3 == ch04.expected_cache_bytes()


@pytest.mark.parametrize("factor, hint", [
    (4, "query heads"),  # n_heads instead of n_kv_heads
    (1 / 2, "key AND a value"),
    (2, "not 4"),
    (1 / 24, "one layer"),
    (1 / 4, "one sequence"),
    (1 / 2**30, "GiB"),
    (1.01, "not yet"),
])
def test_wrong_cache_bytes_fail(factor, hint):
    with pytest.raises(AssertionError, match=hint):
        ch04.check_cache_bytes(ch04.expected_cache_bytes() * factor)


def test_cache_bytes_rejects_non_numbers():
    with pytest.raises(AssertionError, match="should be a number"):
        ch04.check_cache_bytes("1.5 GiB")


def _no_cache(layer, x):  # the O(T^2) loop: recompute the prefix every step
    return torch.cat([layer(x[:, : t + 1]).output[:, -1:] for t in range(x.shape[1])], dim=1)


def _whole_sequence(layer, x):  # right numbers, but no decode loop at all
    return layer(x, cache=LayerCache()).output


def _fresh_cache_each_step(layer, x):
    return torch.cat([layer(x[:, t : t + 1], cache=LayerCache()).output for t in range(x.shape[1])], dim=1)


def _without_cache_argument(layer, x):
    return torch.cat([layer(x[:, t : t + 1]).output for t in range(x.shape[1])], dim=1)


def _reversed_outputs(layer, x):
    cache = LayerCache()
    outs = [layer(x[:, t : t + 1], cache=cache).output for t in range(x.shape[1])]
    return torch.cat(outs[::-1], dim=1)


def _stacked_wrong_axis(layer, x):
    cache = LayerCache()
    return torch.cat([layer(x[:, t : t + 1], cache=cache).output for t in range(x.shape[1])], dim=0)


def _tokens_twice(layer, x):
    cache = LayerCache()
    outs = [layer(x[:, t : t + 1], cache=cache).output for t in [0, *range(x.shape[1] - 1)]]
    return torch.cat(outs, dim=1)


def _positional_cache(layer, x):  # passing the cache positionally is fine
    cache = LayerCache()
    return torch.cat([layer(x[:, t : t + 1], cache).output for t in range(x.shape[1])], dim=1)


def _forgets_output(layer, x):  # concatenates the AttentionOutputs themselves
    cache = LayerCache()
    return torch.cat([layer(x[:, t : t + 1], cache=cache) for t in range(x.shape[1])], dim=1)


def _crashes(layer, x):
    raise RuntimeError("boom")


@pytest.mark.parametrize("wrong, hint", [
    (_no_cache, "tokens per call"),
    (_whole_sequence, "tokens per call"),
    (_fresh_cache_each_step, "new LayerCache at every step"),
    (_without_cache_argument, "pass the cache"),
    (_reversed_outputs, "differ from layer"),
    (_stacked_wrong_axis, "concatenate"),
    (_tokens_twice, "feed token t"),
    (_crashes, "raised RuntimeError: boom"),
    (_forgets_output, "keep its .output"),
    (lambda layer, x: None, "never called the layer"),
    (42, "should be a function"),
])
def test_wrong_decode_loops_fail(wrong, hint):
    with pytest.raises(AssertionError, match=hint):
        ch04.check_decode_loop(wrong)


def test_positional_cache_argument_passes():
    assert ch04.check_decode_loop(_positional_cache).startswith("✓")


def test_decode_check_leaves_no_hooks_behind():
    seen = []

    def spy(layer, x):
        seen.append(layer)
        return load_solutions().answer_decode_loop(layer, x)

    ch04.check_decode_loop(spy)
    assert seen and all(not layer._forward_pre_hooks for layer in seen)


def test_decode_cases_cover_mha_gqa_mqa():
    kinds = {layer.config.kind for layer, _ in ch04._decode_cases()}
    assert kinds == {"mha", "gqa", "mqa"}
    assert all(isinstance(layer, GroupedQueryAttention) for layer, _ in ch04._decode_cases())


def test_wrong_token_counts_fail():
    from attnlab import sizing

    right = ch04.expected_tokens_in_24gib()
    no_weights = sizing.tokens_that_fit("llama-3-8b", 24, "bfloat16")
    per_token = sizing.cache_bytes_per_token("llama-3-8b")
    in_gb = (24 * 10**9 - sizing.weight_bytes("llama-3-8b")) // per_token
    as_mha = sizing.tokens_that_fit("llama-3-8b", 24, "bfloat16", scheme="mha", weights_dtype="bfloat16")
    assert ch04.check_llama3_tokens_in_24gib(right + 1).startswith("✓")  # rounding up is accepted
    for wrong, hint in [(no_weights, "weights"), (in_gb, "GiB is 2"), (as_mha, "MHA"), (right + 50, "not yet"),
                        (True, "should be a number")]:
        with pytest.raises(AssertionError, match=hint):
            ch04.check_llama3_tokens_in_24gib(wrong)


def test_exercise_answers_are_what_the_library_says():
    from attnlab import sizing

    cfg = AttentionConfig(d_model=2048, n_heads=16, n_kv_heads=4)
    assert ch04.EXERCISE_1["config"] == cfg
    spec = sizing.ModelSpec(name="ex1", n_layers=24, n_heads=16, n_kv_heads=4, head_dim=128, attention="gqa",
                            hidden_size=2048, source="test")
    assert sizing.kv_cache_bytes(spec, 8192, 4, torch.float16) == ch04.expected_cache_bytes()


def test_cache_context_figure_hovers_the_bytes_sizing_gives():
    from attnlab import sizing

    lengths = [2**k for k in range(10, 18)]
    fig = kv_widgets.cache_context_figure(["llama-2-7b", "llama-3-8b"], lengths, batches=(1, 8), weights=True)
    assert fig.layout.xaxis.type == fig.layout.yaxis.type == "log"
    for trace in fig.data:
        name = trace.name.split(",")[0].split(":")[0].removesuffix(" weights")
        key = next(k for k, m in sizing.MODELS.items() if m.name == name)
        if trace.customdata is None:  # the weights line
            assert trace.y[0] == sizing.gib(sizing.weight_bytes(key))
            continue
        batch = 8 if "batch 8" in trace.name else 1
        for n, (n_bytes, text) in zip(trace.x, trace.customdata, strict=True):
            assert n_bytes == sizing.kv_cache_bytes(key, n, batch) and text == sizing.format_bytes(n_bytes)
    windows = [t for t in fig.data if t.name.endswith("published window")]
    assert sorted({t.x[0] for t in windows}) == [4096, 8192]  # Llama 2 and Llama 3's published windows
    solid = [t for t in fig.data if t.showlegend is not False and t.customdata is not None]
    assert all(max(t.x) <= (4096 if "Llama-2" in t.name else 8192) for t in solid)  # dotted beyond the window
    with pytest.raises(ValueError, match="lengths"):
        kv_widgets.cache_context_figure(["llama-2-7b"], [0, 1024])
