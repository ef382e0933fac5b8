"""attnlab.quality with chapter 18's hybrid: matched to the study's parameter target without moving the base
schemes' widths, trained on request and merged into an existing study (``--schemes gqa_hybrid --merge PATH``),
and the shipped study holding its three seeds."""

from __future__ import annotations

import json
from dataclasses import asdict

import pytest

from attnlab import quality
from attnlab.model import TinyLMConfig, load_checkpoint, tiny_config
from attnlab.quality import (
    SCHEMES_EXTRA,
    SCHEMES_TRAINED,
    SEEDS,
    load_study,
    matched_d_ff,
    merge_study,
    n_params,
)
from attnlab.train import QUICK, TrainConfig


def _run(scheme: str, seed: int, d_ff: int, val_loss: float) -> dict:
    """A run record as the study's JSON holds it (the parameter count is the real one of that width)."""
    return {"scheme": scheme, "seed": seed, "d_ff": d_ff, "n_params": n_params(tiny_config(scheme, d_ff=d_ff)),
            "n_indexer_params": 0, "val_loss": val_loss, "history": {"step": [10], "val_loss": [val_loss]},
            "seconds": 1.0}


def _study(quick: bool = False) -> dict:
    """A study record of the base schemes, 3 seeds each, with made-up losses and the real matched widths."""
    widths = matched_d_ff()
    runs = [_run(s, seed, widths[s], 2.8 + 0.01 * i + 0.001 * seed)
            for i, s in enumerate(SCHEMES_TRAINED) for seed in SEEDS]
    return {"recipe": asdict(QUICK if quick else TrainConfig()), "dsa_recipe": {}, "base": asdict(TinyLMConfig()),
            "d_ff": widths, "tolerance": quality.TOLERANCE, "threads_per_run": 1, "quick": quick, "seconds": 10.0,
            "runs": runs}


def _extra(quick: bool = False, seeds=SEEDS) -> dict:
    widths = matched_d_ff(SCHEMES_EXTRA)
    return {"recipe": asdict(QUICK if quick else TrainConfig()), "d_ff": widths, "seeds": list(seeds),
            "seconds": 3.0, "runs": [_run("gqa_hybrid", seed, widths["gqa_hybrid"], 2.9 + 0.01 * seed)
                                     for seed in seeds]}


def test_the_hybrid_is_matched_to_the_study_target_without_moving_the_base_widths():
    base = matched_d_ff()
    both = matched_d_ff((*SCHEMES_TRAINED, "gqa_hybrid"))
    alone = matched_d_ff(("gqa_hybrid",))
    assert {s: both[s] for s in SCHEMES_TRAINED} == base  # the existing widths do not change
    assert alone["gqa_hybrid"] == both["gqa_hybrid"] > TinyLMConfig().d_ff  # the hybrid is smaller: its MLP widens
    target = max(n_params(tiny_config(s)) for s in SCHEMES_TRAINED)  # the largest base count at the base width
    hybrid = tiny_config("gqa_hybrid", d_ff=alone["gqa_hybrid"])
    assert hybrid.full_every == 4  # the variant's own field survives the base config's full_every = 0
    assert abs(n_params(hybrid) - target) <= quality.TOLERANCE * target
    per_unit = 3 * hybrid.d_model * hybrid.n_layers  # one more unit of d_ff: the nearest width, no better one
    assert all(abs(n_params(hybrid) - target) <= abs(n_params(tiny_config("gqa_hybrid", d_ff=w)) - target)
               for w in (alone["gqa_hybrid"] - 1, alone["gqa_hybrid"] + 1))
    assert per_unit == 1536
    with pytest.raises(ValueError, match="schemes='gqa_flash'"):
        matched_d_ff(("gqa_flash",))


def test_merge_adds_the_runs_and_both_studies_load(tmp_path):
    study, extra = _study(), _extra()
    merged = merge_study(study, extra)
    assert merged["runs"][: len(study["runs"])] == study["runs"] and len(merged["runs"]) == len(study["runs"]) + 3
    assert merged["d_ff"] == {**study["d_ff"], "gqa_hybrid": extra["d_ff"]["gqa_hybrid"]}
    assert merged["merged"] == [{"schemes": ["gqa_hybrid"], "seeds": [0, 1, 2], "seconds": 3.0}]
    assert study["runs"] != merged["runs"] and "merged" not in study  # the study passed in is left as it was
    paths = {"study": tmp_path / "study.json", "merged": tmp_path / "merged.json"}
    paths["study"].write_text(json.dumps(study))
    paths["merged"].write_text(json.dumps(merged))
    before, after = load_study(paths["study"]), load_study(paths["merged"])
    assert before.schemes() == SCHEMES_TRAINED and after.schemes() == (*SCHEMES_TRAINED, "gqa_hybrid")
    for scheme in SCHEMES_TRAINED:
        assert after.summary(scheme) == before.summary(scheme)
    s = after.summary("gqa_hybrid")
    assert (s.n, round(s.mean, 6), round(s.low, 6), round(s.high, 6)) == (3, 2.91, 2.9, 2.92)
    assert after.losses("gqa_hybrid") == pytest.approx({0: 2.9, 1: 2.91, 2: 2.92})
    assert after.gap("gqa_hybrid", "gqa").paired == pytest.approx((0.09, 0.099, 0.108))  # GQA: 2.81 + seed / 1000
    assert after.param_spread() <= quality.TOLERANCE
    assert "| GQA_HYBRID | 356 |" in after.markdown()


def test_merged_runs_take_the_shape_of_the_studys_runs(tmp_path):
    """A field the study's runs carry (DSA's dense loss, null elsewhere) is null in the merged runs too, so a
    reader of either schema loads the merged study."""
    study = _study()
    for r in study["runs"]:
        r["dense_val_loss"] = None
    merged = merge_study(study, _extra())
    assert all(r["dense_val_loss"] is None and set(r) == set(study["runs"][0]) for r in merged["runs"])
    path = tmp_path / "merged.json"
    path.write_text(json.dumps(merged))
    assert all(r.dense_val_loss is None for r in load_study(path).runs)


def test_merge_refuses_what_would_not_compare():
    study = _study()
    with pytest.raises(ValueError, match="recipe"):
        merge_study(study, _extra(quick=True))
    once = merge_study(study, _extra(seeds=(0, 1)))
    with pytest.raises(ValueError, match="gqa_hybrid seed 1"):
        merge_study(once, _extra(seeds=(1, 2)))
    assert len(merge_study(once, _extra(seeds=(2,)))["merged"]) == 2  # a later seed merges on top
    moved = dict(study, d_ff={**study["d_ff"], "mqa": 400})
    with pytest.raises(ValueError, match="parameter target moved"):
        merge_study(moved, _extra())
    with pytest.raises(ValueError, match="study lacks"):
        merge_study({"runs": []}, _extra())
    with pytest.raises(ValueError, match="schemes='mha'"):
        quality.train_extra(("mha",))


def test_the_command_trains_and_merges(tmp_path, capsys):
    """--schemes gqa_hybrid --merge PATH with --quick: one real run of the hybrid (10 steps), merged and written."""
    source, out = tmp_path / "quick.json", tmp_path / "merged.json"
    source.write_text(json.dumps(_study(quick=True)))
    quality.main(["--schemes", "gqa_hybrid", "--merge", str(source), "--out", str(out), "--quick", "--seeds", "0",
                  "--jobs", "1"])
    study = load_study(out)
    (run,) = [r for r in study.runs if r.scheme == "gqa_hybrid"]
    assert (run.seed, run.d_ff, run.n_params) == (0, 356, n_params(tiny_config("gqa_hybrid", d_ff=356)))
    assert 2.0 < run.val_loss < 8.0 and run.history["step"] == [5, 10]
    assert json.loads(source.read_text()) == _study(quick=True)  # --out: the source is left as it was
    printed = capsys.readouterr().out
    assert "| GQA_HYBRID | 356 |" in printed and f"merged into {source}" in printed


@pytest.mark.parametrize(("argv", "message"), [
    (["--schemes", "gqa_hybrid"], "--schemes and --merge go together"),
    (["--merge", "study.json"], "--schemes and --merge go together"),
    (["--schemes", "gqa_hybrid", "--merge", "nowhere.json"], "no study there"),
    (["--schemes", "mha", "--merge", "study.json"], "invalid choice: 'mha'"),
])
def test_the_command_refuses_bad_arguments(argv, message, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "study.json").write_text(json.dumps(_study()))
    with pytest.raises(SystemExit):
        quality.main(argv)
    assert message in capsys.readouterr().err


def test_the_command_refuses_a_quick_merge_into_a_full_study(tmp_path, capsys):
    (tmp_path / "study.json").write_text(json.dumps(_study()))
    with pytest.raises(SystemExit):
        quality.main(["--schemes", "gqa_hybrid", "--merge", str(tmp_path / "study.json"), "--quick",
                      "--out", str(tmp_path / "o.json")])
    assert "trained without --quick" in capsys.readouterr().err



def test_seed_spread_draws_each_seed_and_the_mean_plus_minus_std():
    import matplotlib
    import matplotlib.collections
    import matplotlib.pyplot as plt

    from attnlab import plots
    from attnlab.quality import Run, Study
    from attnlab.schemes import get_scheme

    losses = {"gqa": [2.78, 2.80, 2.79], "gqa_hybrid": [2.90, 2.95]}
    runs = tuple(Run(key, seed, 344, 1000, 0, loss, {"step": [1], "val_loss": [loss]}, 1.0)
                 for key, values in losses.items() for seed, loss in enumerate(values))
    study = Study(runs, {}, {}, {}, 0.02, 1.0)
    ax = plots.seed_spread(study, title="three seeds")
    assert [t.get_text() for t in ax.get_xticklabels()] == ["GQA", "GQA hybrid 3:1"]
    points = [c for c in ax.collections if isinstance(c, matplotlib.collections.PathCollection)]
    assert [sorted(p.get_offsets()[:, 1].tolist()) for p in points] == [pytest.approx([2.78, 2.79, 2.80]),
                                                                        pytest.approx([2.9, 2.95])]
    assert matplotlib.colors.to_hex(points[1].get_facecolor()[0]) == get_scheme("gqa_hybrid").color
    whiskers = [line.get_segments()[0] for line in ax.collections
                if isinstance(line, matplotlib.collections.LineCollection)]  # mean -+ std, one per scheme
    assert whiskers[0][:, 1] == pytest.approx([2.78, 2.80])  # mean 2.79, std 0.01
    assert ax.get_title() == "three seeds"
    plt.close("all")
    with pytest.raises(ValueError, match="scheme"):
        plots.seed_spread(study, ("mha",))


# --- the shipped study ------------------------------------------------------------------------------------


def test_the_shipped_study_holds_the_hybrids_three_seeds():
    study = load_study()
    assert study.schemes()[-1] == "gqa_hybrid" and set(study.losses("gqa_hybrid")) == set(SEEDS)
    assert study.d_ff["gqa_hybrid"] == matched_d_ff(SCHEMES_EXTRA)["gqa_hybrid"]
    assert {s: study.d_ff[s] for s in SCHEMES_TRAINED} == matched_d_ff()  # its widths were not moved
    assert study.param_spread() <= study.tolerance
    runs = [r for r in study.runs if r.scheme == "gqa_hybrid"]
    assert all(r.n_params == n_params(tiny_config("gqa_hybrid", d_ff=r.d_ff)) for r in runs)
    assert all(2.0 < r.val_loss < 4.0 for r in runs)
    blob = json.loads(quality.STUDY_PATH.read_text())
    assert blob["merged"][-1]["schemes"] == ["gqa_hybrid"] and blob["recipe"] == asdict(TrainConfig())
    # the shipped checkpoint is trained on the same recipe at the base width: seed 0's study run is not it
    assert load_checkpoint("tiny_gqa_hybrid").config.d_ff == TinyLMConfig().d_ff != study.d_ff["gqa_hybrid"]
