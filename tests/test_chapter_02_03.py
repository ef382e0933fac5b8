"""Chapters 2 and 3: the widgets of attnlab.interactive.attention and the exercise checks."""

from __future__ import annotations

import importlib.util
import math
import re
from pathlib import Path

import pytest
import torch

from attnlab.attention import attention_matrix, attention_vector, causal_mask, softmax
from attnlab.exercises import ch02, ch03
from attnlab.interactive import attention as ia
from attnlab.model import TinyLM, TinyLMConfig
from attnlab.tokenization import load_tokenizer

ROOT = Path(__file__).resolve().parents[1]
SENTENCES = {
    "for": "The for statement is used to iterate over the elements of a sequence.",
    "x": "x = x + 1",
}


def load_solutions(chapter: str):
    path = ROOT / "notebooks" / "solutions" / f"{chapter}.py"
    spec = importlib.util.spec_from_file_location(f"solutions_{chapter}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def tok():
    return load_tokenizer()


@pytest.fixture(scope="module")
def model() -> TinyLM:
    """A small random model whose query and key weights are scaled up, so its heads attend sharply and
    differently (a freshly initialised model attends almost uniformly)."""
    torch.manual_seed(0)
    m = TinyLM(TinyLMConfig(d_model=32, n_layers=2, n_heads=4, d_ff=64, attention="mha")).eval()
    with torch.no_grad():
        for block in m.blocks:
            block.attn.w_q.weight.mul_(40.0)
            block.attn.w_k.weight.mul_(40.0)
    return m


# -- chapter 2 widget ----------------------------------------------------------------------------------------


def test_vector_view_is_attention_vector_with_temperature():
    state = ia.VectorState(angle_deg=40.0, length=2.0, temperature=0.5)
    view = ia.vector_view(state)
    q, keys = view["q"], view["keys"]
    assert torch.allclose(q, torch.tensor([2 * math.cos(math.radians(40)), 2 * math.sin(math.radians(40))]))
    _, want = attention_vector(q, keys, keys, scale=1 / (0.5 * math.sqrt(2)))
    assert torch.allclose(view["weights"], want)
    assert torch.allclose(view["scores"], keys @ q / (0.5 * math.sqrt(2)))
    assert torch.allclose(view["weights"], softmax(view["scores"]))
    assert math.isclose(float(view["weights"].sum()), 1.0, rel_tol=1e-6)


@pytest.mark.parametrize("index", range(len(ia.TOY_KEYS)))
def test_query_pointing_at_a_key_weights_it_most(index):
    x, y = ia.TOY_KEYS[index]
    angle = math.degrees(math.atan2(y, x))
    view = ia.vector_view(ia.VectorState(angle_deg=angle, length=3.0))
    assert int(view["weights"].argmax()) == index


def test_zero_query_gives_uniform_weights_and_temperature_sharpens():
    uniform = ia.vector_view(ia.VectorState(length=0.0))["weights"]
    assert torch.allclose(uniform, torch.full_like(uniform, 1 / len(ia.TOY_KEYS)))
    peaks = [float(ia.vector_view(ia.VectorState(temperature=t))["weights"].max()) for t in (4.0, 1.0, 0.25)]
    assert peaks[0] < peaks[1] < peaks[2]


def test_vector_widget_updates_image_and_readout_when_sliders_move():
    w = ia.vector_explorer()
    c = w.controls
    assert c.image.value[:8] == b"\x89PNG\r\n\x1a\n"
    before_img, before_html = c.image.value, c.readout.value
    assert before_html == ia.vector_readout_html(w.state())
    x, y = ia.TOY_KEYS[2]
    c.angle.value = int(round(math.degrees(math.atan2(y, x)) / 5) * 5)
    assert c.image.value != before_img and c.readout.value != before_html
    assert c.readout.value == ia.vector_readout_html(w.state())
    weights = ia.vector_view(w.state())["weights"]
    assert int(weights.argmax()) == 2
    assert f"<b>{float(weights[2]):.3f}</b>" in c.readout.value
    sharp_html = c.readout.value
    c.temperature.value = 0.3
    assert c.readout.value != sharp_html
    assert w.state().temperature == pytest.approx(0.3)
    assert repr(w) == "VectorExplorer(n_keys=4)"


def test_vector_widget_takes_custom_keys_and_labels():
    w = ia.vector_explorer(torch.tensor([[1.0, 0.0], [0.0, 1.0]]), labels=["a", "b"], angle_deg=90)
    assert int(ia.vector_view(w.state())["weights"].argmax()) == 1
    assert ">a<" in w.controls.readout.value and ">b<" in w.controls.readout.value


@pytest.mark.parametrize("kwargs, message", [
    ({"temperature": 0.0}, "temperature=0.0 must be > 0"),
    ({"length": -1.0}, "length=-1.0 must be >= 0"),
    ({"keys": ()}, "keys must be a non-empty"),
    ({"labels": ("a",)}, "len\\(labels\\)=1 must equal len\\(keys\\)=4"),
])
def test_vector_state_rejects_bad_input(kwargs, message):
    with pytest.raises(ValueError, match=message):
        ia.VectorState(**kwargs)


def test_vector_figure_has_three_labelled_panels():
    fig = ia.vector_figure(ia.VectorState())
    titles = [ax.get_title() for ax in fig.axes]
    assert titles == ["query q and keys kᵢ", "scores q·kᵢ / √d", "weights softmax(scores)"]
    fig2 = ia.vector_figure(ia.VectorState(temperature=2.0))
    assert fig2.axes[1].get_title() == "scores q·kᵢ / (2·√d)"


# -- chapter 3 helpers and widget ----------------------------------------------------------------------------


def test_pattern_scores_on_made_up_maps():
    n = 6
    assert ia.head_pattern_scores(torch.eye(n)) == {"previous": 0.0, "first": 0.0, "self": 1.0}
    prev = torch.zeros(n, n)
    prev[0, 0] = 1.0
    prev[torch.arange(1, n), torch.arange(n - 1)] = 1.0
    assert ia.head_pattern_scores(prev)["previous"] == 1.0
    first = torch.zeros(n, n)
    first[:, 0] = 1.0
    scores = ia.head_pattern_scores(first)
    assert scores["first"] == 1.0 and scores["previous"] == pytest.approx(1 / (n - 1))
    with pytest.raises(ValueError, match="square with n >= 2"):
        ia.head_pattern_scores(torch.ones(1, 1))


def test_rank_heads_puts_the_made_up_previous_token_head_first():
    n = 5
    prev = torch.zeros(n, n)
    prev[0, 0] = 1.0
    prev[torch.arange(1, n), torch.arange(n - 1)] = 1.0
    uniform = causal_mask(n, n).float()
    uniform = uniform / uniform.sum(-1, keepdim=True)
    maps = [torch.stack([uniform, uniform]), torch.stack([uniform, prev])]  # 2 layers of 2 heads
    ranked = ia.rank_heads([maps], "previous")
    assert ranked[0] == (1, 1, 1.0) and len(ranked) == 4
    other = [torch.stack([uniform, uniform]), torch.stack([prev, uniform])]
    grid = ia.pattern_grid([maps, other])
    assert grid["previous"].shape == (2, 2)
    assert grid["previous"][1, 1] == pytest.approx((1.0 + grid["previous"][0, 0]) / 2)
    assert ia.rank_heads([maps, other], "previous")[0][2] == pytest.approx(float(grid["previous"][1, 0]))
    with pytest.raises(ValueError, match="pattern='next' must be one of"):
        ia.rank_heads([maps], "next")
    with pytest.raises(ValueError, match="same model"):
        ia.pattern_grid([maps, maps[:1]])


def test_layer_input_reproduces_the_models_attention(model, tok):
    ids = torch.tensor([tok.encode(SENTENCES["for"])])
    maps = ia.attention_maps(model, ids)
    assert len(maps) == 2 and maps[0].shape == (4, ids.shape[1], ids.shape[1])
    for layer in range(2):
        x = ia.layer_input(model, ids, layer)
        q, k, v = model.blocks[layer].attn.project(x)
        _, weights = attention_matrix(q, k, v, causal=True)
        assert torch.allclose(weights[0], maps[layer], atol=1e-5)
    with pytest.raises(ValueError, match="layer=2 must be < n_layers=2"):
        ia.layer_input(model, ids, 2)


def test_token_labels_show_spaces(tok):
    ids = tok.encode("a b\n")
    labels = ia.token_labels(tok, ids)
    assert "".join(labels) == "a·b↵" and len(labels) == len(ids)


def test_map_widget_offers_only_valid_layers_and_heads(model, tok):
    w = ia.attention_map_explorer(model, tok, SENTENCES)
    c = w.controls
    assert list(c.layer.options) == [0, 1] and list(c.head.options) == [0, 1, 2, 3]
    assert list(c.sentence.options) == list(SENTENCES)
    assert repr(w) == "AttentionMapExplorer(sentences=2)"


def test_map_widget_updates_when_head_layer_or_sentence_change(model, tok):
    w = ia.attention_map_explorer(model, tok, SENTENCES)
    c = w.controls
    ids = torch.tensor(tok.encode(SENTENCES["for"]))
    maps = ia.attention_maps(model, ids)
    seen = {(c.image.value, c.readout.value)}
    for layer, head in ((0, 2), (1, 2), (1, 0)):
        c.layer.value, c.head.value = layer, head
        view = w.view()
        assert torch.equal(view["weights"], maps[layer][head])
        assert c.readout.value == ia.map_readout_html(view)
        assert f"layer {layer}, head {head}" in c.readout.value
        assert f"{view['scores']['previous']:.1%}" in c.readout.value
        seen.add((c.image.value, c.readout.value))
    c.sentence.value = "x"
    assert w.view()["tokens"] == ia.token_labels(tok, tok.encode(SENTENCES["x"]))
    seen.add((c.image.value, c.readout.value))
    assert len(seen) == 5, "every change of sentence, layer or head shows something new"


def test_map_widget_rejects_bad_sentences_and_heads(model, tok):
    with pytest.raises(ValueError, match="at least one"):
        ia.attention_map_explorer(model, tok, {})
    with pytest.raises(ValueError, match="has 1 tokens"):
        ia.attention_map_explorer(model, tok, {"one": "x"})
    maps = ia.attention_maps(model, torch.tensor(tok.encode("x = 1")))
    with pytest.raises(ValueError, match="head=4 must be in"):
        ia.map_view(maps, ["x", "·=", "·1"], 0, 4)
    with pytest.raises(ValueError, match="len\\(tokens\\)=1"):
        ia.map_view(maps, ["x"], 0, 0)


# -- chapter 2 exercises -------------------------------------------------------------------------------------


def test_ch02_solutions_pass():
    sol = load_solutions("ch02")
    assert ch02.check_softmax(sol.answer_softmax).startswith("✓")
    assert ch02.check_scaled_scores(sol.answer_scaled_scores).startswith("✓")
    assert ch02.check_attend(sol.answer_attend).startswith("✓")


def test_ch02_unattempted_exercises_say_so():
    for check in (ch02.check_softmax, ch02.check_scaled_scores, ch02.check_attend):
        assert "not attempted" in check(None)


def _softmax_without_normalising(s):
    return torch.exp(s - s.max())


@pytest.mark.parametrize("wrong, hint", [
    (lambda s: torch.exp(s) / torch.exp(s).sum(), "exp overflowed"),
    (lambda s: torch.exp(s - s.min()) / torch.exp(s - s.min()).sum(), "exp overflowed"),
    (_softmax_without_normalising, "sum to"),
    (lambda s: s / s.sum(), "exponentiate first"),
    (lambda s: torch.exp(s - s.max()) / torch.exp(s - s.max()).sum() + 1e-3, "sum to"),
    (lambda s: s.sub_(s.max()).exp() / s.exp().sum(), "changed its input"),
    (lambda s: (torch.exp(s - s.max()) / torch.exp(s - s.max()).sum()).tolist(), "should be a torch.Tensor"),
    (lambda s: torch.exp(s - s.max()).unsqueeze(0), "should have shape"),
    (lambda s: 1 / 0, "raised ZeroDivisionError"),
    ("softmax", "should be a function"),
])
def test_ch02_wrong_softmax_fails(wrong, hint):
    with pytest.raises(AssertionError, match=hint):
        ch02.check_softmax(wrong)


@pytest.mark.parametrize("wrong, hint", [
    (lambda q, k: k @ q, "raw dot products"),
    (lambda q, k: k @ q / q.shape[0], "divides by d"),
    (lambda q, k: k @ q * math.sqrt(q.shape[0]), "multiplies by √d"),
    (lambda q, k: q @ k.T / math.sqrt(k.shape[0]), "expected"),
    (lambda q, k: (k @ q / math.sqrt(q.shape[0])).unsqueeze(1), "should have shape"),
])
def test_ch02_wrong_scores_fail(wrong, hint):
    with pytest.raises(AssertionError, match=hint):
        ch02.check_scaled_scores(wrong)


@pytest.mark.parametrize("wrong, hint", [
    (lambda q, k, v: softmax(k @ q / math.sqrt(q.shape[0])), "returns the weights"),
    (lambda q, k, v: softmax(k @ q) @ v, "unscaled scores"),
    (lambda q, k, v: v.mean(0), "plain mean"),
    (lambda q, k, v: (k @ q / math.sqrt(q.shape[0])) @ v, "take softmax"),
    (lambda q, k, v: softmax(k @ q / math.sqrt(q.shape[0])) @ k, "should have shape|expected"),
    (lambda q, k, v: None, "should return a torch.Tensor"),
])
def test_ch02_wrong_attend_fails(wrong, hint):
    with pytest.raises(AssertionError, match=hint):
        ch02.check_attend(wrong)


# -- chapter 3 exercises -------------------------------------------------------------------------------------


def test_ch03_solutions_pass():
    sol = load_solutions("ch03")
    assert ch03.check_causal_mask(sol.answer_causal_mask).startswith("✓")
    assert ch03.check_split_heads(sol.answer_split_heads).startswith("✓")
    assert ch03.check_score_gib(sol.answer_score_gib).startswith("✓")
    assert sol.answer_score_gib == ch03.expected_score_gib()


def test_ch03_unattempted_exercises_say_so():
    for check in (ch03.check_causal_mask, ch03.check_split_heads, ch03.check_score_gib):
        assert "not attempted" in check(None)


@pytest.mark.parametrize("wrong, hint", [
    (lambda n: torch.ones(n, n, dtype=torch.bool).triu(), "the future included"),
    (lambda n: torch.ones(n, n, dtype=torch.bool).tril(-1), "include the diagonal"),
    (lambda n: torch.zeros(n, n).masked_fill(~torch.ones(n, n, dtype=torch.bool).tril(), float("-inf")),
     "return booleans"),
    (lambda n: torch.ones(n, n, dtype=torch.bool), "expected"),
    (lambda n: torch.ones(n, n, dtype=torch.bool).tril()[:-1], "expected shape"),
    (lambda n: [[j <= i for j in range(n)] for i in range(n)], "expected a torch.Tensor"),
])
def test_ch03_wrong_causal_mask_fails(wrong, hint):
    with pytest.raises(AssertionError, match=hint):
        ch03.check_causal_mask(wrong)


@pytest.mark.parametrize("wrong, hint", [
    (lambda x, h: x.reshape(x.shape[0], h, x.shape[1], x.shape[2] // h), "mixes positions into heads"),
    (lambda x, h: x.view(x.shape[0], x.shape[1], h, x.shape[2] // h), "add .transpose"),
    (lambda x, h: x.view(x.shape[0], x.shape[1], x.shape[2] // h, h).permute(0, 3, 1, 2), "head h should hold"),
    (lambda x, h: x.unsqueeze(1), "expected shape"),
])
def test_ch03_wrong_split_heads_fails(wrong, hint):
    with pytest.raises(AssertionError, match=hint):
        ch03.check_split_heads(wrong)


def test_ch03_wrong_score_gib_fails():
    right = ch03.expected_score_gib()
    cases = [
        (right / ch03.SCORE_HEADS, "that is one head"),
        (right / 4, "counts numbers, not bytes"),
        (right * 2**30 / 1e9, "in GB"),
        (right / 2, "2 bytes a number"),
        (right * 1.1, "not yet"),
        ("512", "should be a number"),
    ]
    for value, hint in cases:
        with pytest.raises(AssertionError, match=hint):
            ch03.check_score_gib(value)


@pytest.mark.parametrize("chapter, notebook", [("ch02", "02_attention_vector_form.py"),
                                               ("ch03", "03_attention_matrix_form.py")])
def test_every_answer_cell_has_a_solution_and_a_check(chapter, notebook):
    text = (ROOT / "notebooks" / notebook).read_text()
    names = re.findall(r"^(answer_\w+) = None", text, flags=re.M)
    assert len(names) == 3
    sol = load_solutions(chapter)
    module = {"ch02": ch02, "ch03": ch03}[chapter]
    for name in names:
        assert hasattr(sol, name), f"{name} has no worked solution"
        assert re.search(rf"print\({chapter}\.check_\w+\({name}\)\)", text), f"{name} has no check cell"
        check = getattr(module, "check_" + name.removeprefix("answer_"))
        assert check(getattr(sol, name)).startswith("✓")
