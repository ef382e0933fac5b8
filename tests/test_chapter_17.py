"""Chapter 17 (sliding windows, sinks and shared KV): the exercise checks name each slip and pass the worked
solutions, the explorer's numbers are attnlab.sizing's for the published models, its sliders offer only
valid values and its callbacks update the figure in place, and the animation's ring is the library's."""

from __future__ import annotations

import importlib
import runpy
import sys
from pathlib import Path

import pytest
import torch

from attnlab import costs, sizing
from attnlab.exercises import ch17
from attnlab.interactive import window as ui
from attnlab.window import RollingCache, ring_slot, softmax_with_sink

ROOT = Path(__file__).resolve().parents[1]
SOLUTIONS = runpy.run_path(str(ROOT / "notebooks" / "solutions" / "ch17.py"))


# --------------------------------------------------------------------------------------------- exercises


def test_solutions_pass_the_checks():
    assert ch17.check_ring_slot(SOLUTIONS["answer_ring_slot"]).startswith("✓")
    assert ch17.check_sink_softmax(SOLUTIONS["answer_sink_softmax"]).startswith("✓")
    assert ch17.check_gpt_oss_fraction(SOLUTIONS["answer_gpt_oss_fraction"]).startswith("✓")
    assert SOLUTIONS["answer_gpt_oss_fraction"] == pytest.approx(ch17.expected_gpt_oss_fraction(), rel=1e-12)


def test_unattempted_answers_get_a_reminder():
    for check in (ch17.check_ring_slot, ch17.check_sink_softmax, ch17.check_gpt_oss_fraction):
        assert "not attempted" in check(None)


@pytest.mark.parametrize("slip, message", [
    (lambda t, w, s: t % w, "belong to the sinks"),
    (lambda t, w, s: t if t < s else t % w, "belong to the sinks"),
    (lambda t, w, s: t if t < s else s + t % w, "subtract the sinks"),
    (lambda t, w, s: s + (t - s) % w if t >= s else 0, "is a sink"),
    (lambda t, w, s: s + (t - s) % w + 1 if t >= s else t, "outside the ring|expected slot"),
])
def test_ring_slot_slips_are_named(slip, message):
    with pytest.raises(AssertionError, match=message):
        ch17.check_ring_slot(slip)


def _sink_as_column(scores, sink):  # forgets to drop the sink's column
    return torch.softmax(torch.cat([scores, sink.view(1, -1, 1, 1).expand(*scores.shape[:-1], 1)], -1), -1)


def _renormalised(scores, sink):  # drops the column, then renormalises: the plain softmax again
    w = _sink_as_column(scores, sink)[..., :-1]
    return w / w.sum(-1, keepdim=True)


def _unsafe(scores, sink):  # no maximum subtracted: overflows at large logits
    e, es = scores.exp(), sink.view(1, -1, 1, 1).exp()
    return e / (e.sum(-1, keepdim=True) + es)


@pytest.mark.parametrize("slip, message", [
    (_sink_as_column, "one column too many"),
    (_renormalised, "plain softmax"),
    (_unsafe, "NaN"),
    (lambda scores, sink: torch.softmax(scores, -1) * 0.9, "not yet"),
])
def test_sink_softmax_slips_are_named(slip, message):
    with pytest.raises(AssertionError, match=message):
        ch17.check_sink_softmax(slip)


@pytest.mark.parametrize("answer, message", [(128 / 131_072, "slides every layer"), (5 / 6, "Gemma 3"),
                                             (0.25, "not yet"), (2.0, "fraction")])
def test_gpt_oss_fraction_slips_are_named(answer, message):
    with pytest.raises(AssertionError, match=message):
        ch17.check_gpt_oss_fraction(answer)


def test_the_fraction_is_the_sizing_of_the_published_model():
    spec = sizing.MODELS["gpt-oss-120b"]
    L = ch17.EXERCISE_3["context"]
    every = costs.windowed_cache_bytes("gqa", spec.attention_shape(), L, "bfloat16")
    assert sizing.kv_cache_bytes(spec, L) / every == pytest.approx(ch17.expected_gpt_oss_fraction(), rel=1e-12)


def test_solution_functions_are_the_library_on_other_inputs():
    for t in range(40):
        assert SOLUTIONS["answer_ring_slot"](t, 7, 3) == ring_slot(t, 7, 3)
    scores, sink = torch.randn(2, 3, 4, 5, dtype=torch.float64), torch.randn(3, dtype=torch.float64)
    torch.testing.assert_close(SOLUTIONS["answer_sink_softmax"](scores, sink), softmax_with_sink(scores, sink))


# ---------------------------------------------------------------------------------------------- explorer


@pytest.mark.parametrize("model", ui.EXPLORER_MODELS)
def test_explorer_at_the_published_settings_is_sizing(model):
    spec = sizing.MODELS[model]
    n = ui.explorer_numbers(model, *ui.PUBLISHED[model], 131_072)
    assert n["windowed"] == n["published"] == sizing.kv_cache_bytes(spec, 131_072)
    assert n["n_sliding"] + n["n_global"] == spec.n_layers


def test_explorer_numbers_follow_the_sliders():
    all_global = ui.explorer_numbers("gpt-oss-120b", 128, 0, 1, 65_536)
    assert all_global["ratio"] == 1 and all_global["n_sliding"] == 0
    all_sliding = ui.explorer_numbers("gpt-oss-120b", 128, 4, 0, 65_536)
    assert all_sliding["ratio"] == pytest.approx(65_536 / 132) and all_sliding["held_sliding"] == 132
    assert ui.windows_of(6, 1024, 6) == [1024] * 5 + [None]
    curve = ui.cache_curve("mistral-7b-v0.1", 4096, 0, 0)
    assert len(set(curve["windowed"][2:])) == 1  # flat past the window (from 4K on)
    with pytest.raises(ValueError, match="model"):
        ui.explorer_numbers("gpt-5", 128, 0, 2, 1024)


def test_explorer_widget_offers_valid_values_and_updates_in_place():
    explorer = ui.window_explorer("gpt-oss-120b", 131_072)
    assert [v for _, v in explorer.window.options] == list(ui.WINDOW_OPTIONS)
    assert [v for _, v in explorer.ratio.options] == [g for _, g in ui.RATIO_OPTIONS]
    chart, png = explorer.chart, explorer.chart.value
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    explorer.ratio.value = 0
    assert explorer.chart is chart and explorer.chart.value != png  # the same Image, a new picture
    assert "(1024.00× smaller)" in explorer.readout.value  # every layer slides: L / W = 131,072 / 128
    explorer.model.value = "gemma-3-27b"  # loads its published window and ratio
    assert (explorer.window.value, explorer.ratio.value) == (1024, 6)
    assert "Gemma-3-27B" in explorer.readout.value
    with pytest.raises(ValueError, match="context"):
        ui.window_explorer(context=1000)


def test_the_chart_draws_both_curves():
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots()
    ui.draw_cache_curve(ax, "mistral-7b-v0.1", 4096, 0, 0, 32_768)
    full, windowed = (line.get_ydata() for line in ax.get_lines()[:2])
    assert list(full) == [b / 2**30 for b in ui.cache_curve("mistral-7b-v0.1", 4096, 0, 0)["full"]]
    assert max(windowed) < max(full)
    plt.close(fig)


# --------------------------------------------------------------------------------------------- animation


def test_animation_ring_is_the_librarys():
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    pytest.importorskip("manim")
    scene = importlib.import_module("animations.ch17_sliding_windows")
    states = scene.ring_states()
    cache = RollingCache(scene.WINDOW, scene.N_SINKS)
    for t, state in enumerate(states):
        cache.update(k=torch.zeros(1, 1, 1, 1))
        assert state == cache.positions.tolist()
        assert state[ring_slot(t, scene.WINDOW, scene.N_SINKS)] == t
    assert sorted(states[-1]) == [0, *range(scene.N_TOKENS - scene.WINDOW, scene.N_TOKENS)]
