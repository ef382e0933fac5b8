"""Progress on the long commands: each runs in its quick mode as a subprocess and its terminal output is read.

- ``python -m attnlab.train --quick`` and ``python -m attnlab.dsa_training --quick`` show a tqdm bar on stderr
  per training run with the loss and tokens per second, and keep their per-evaluation lines on stdout;
- ``scripts/render_animations.py`` prints a line when each scene starts and one when it is done, with seconds;
- the library's training functions stay silent by default (notebooks call them), and a quick run never
  writes the shipped checkpoints in lib/attnlab/data.

Every file these runs write goes under ``tmp_path``.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from attnlab import dsa_training, train
from attnlab.model import DATA_DIR, TinyLMConfig

ROOT = Path(__file__).resolve().parents[1]
# One thread: the tiny model gains nothing from more, and on a busy machine extra threads only wait.
ENV = dict(os.environ, OMP_NUM_THREADS="1")
BAR_LOSS = re.compile(r"loss[= ]\d")
BAR_RATE = re.compile(r"tok/s=[\d,]+")


@pytest.fixture(autouse=True)
def shipped_checkpoints_untouched():
    """No test here writes lib/attnlab/data/*.pt: their sizes and modification times stay as they were."""
    def snapshot():
        return {p.name: (p.stat().st_size, p.stat().st_mtime_ns) for p in DATA_DIR.glob("*.pt")}

    before = snapshot()
    yield
    assert snapshot() == before, "a test wrote the shipped checkpoints in lib/attnlab/data"


def run(args: list[str], cwd: Path, timeout: float = 240) -> subprocess.CompletedProcess:
    result = subprocess.run([sys.executable, *args], cwd=cwd, env=ENV, capture_output=True, text=True,
                            timeout=timeout)
    assert result.returncode == 0, f"exit {result.returncode}\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return result


def test_train_quick_shows_a_progress_bar(tmp_path):
    out = tmp_path / "x.pt"
    result = run(["-m", "attnlab.train", "--attention", "mha", "--quick", "--out", str(out)], cwd=tmp_path)
    bar = result.stderr
    assert "train mha" in bar and f"{train.QUICK.steps}/{train.QUICK.steps}" in bar, bar
    assert BAR_LOSS.search(bar) and BAR_RATE.search(bar), bar
    # the per-evaluation lines and the summary stay on stdout, without the bar
    assert re.search(rf"step\s+{train.QUICK.steps}\s+train \d+\.\d+\s+val \d+\.\d+", result.stdout), result.stdout
    assert f"saved {out}" in result.stdout and "tok/s" not in result.stdout
    assert out.exists() and sorted(p.name for p in tmp_path.iterdir()) == ["x.pt"]


def test_dsa_training_quick_shows_a_bar_per_stage(tmp_path):
    out = tmp_path / "dsa.pt"
    result = run(["-m", "attnlab.dsa_training", "--quick", "--out", str(out)], cwd=tmp_path)
    bar = result.stderr
    for stage, steps in (("indexer warm-up", dsa_training.QUICK.warmup_steps),
                         ("sparse training", dsa_training.QUICK.sparse_steps)):
        assert re.search(rf"{stage}: 100%.*{steps}/{steps}", bar), (stage, bar)
    assert BAR_LOSS.search(bar) and BAR_RATE.search(bar) and "KL=" in bar, bar
    assert "warm-up " in result.stdout and "sparse  " in result.stdout and "recall@" in result.stdout
    assert f"saved {out}" in result.stdout and "tok/s" not in result.stdout
    assert out.exists() and sorted(p.name for p in tmp_path.iterdir()) == ["dsa.pt"]


@pytest.mark.parametrize("module", [train, dsa_training])
def test_quick_run_refuses_to_write_the_shipped_checkpoints(module, capsys):
    with pytest.raises(SystemExit) as exit_info:  # argparse's error, before anything trains
        module.main(["--quick", "--out", str(DATA_DIR / "tiny_dsa.pt")])
    assert exit_info.value.code == 2 and "--quick must not write into" in capsys.readouterr().err


def test_train_is_silent_unless_asked(capsys):
    """Notebooks call train() (log=lambda line: None): nothing reaches the terminal unless progress=True."""
    config = TinyLMConfig(d_model=16, n_layers=1, n_heads=2, n_kv_heads=1, d_ff=32, max_seq_len=16)
    cfg = train.TrainConfig(steps=3, batch_size=2, seq_len=8, warmup=1, eval_every=3, eval_batches=1)
    lines = []
    train.train(config, cfg, log=lines.append)
    assert capsys.readouterr() == ("", "") and len(lines) == 1
    train.train(config, cfg, log=lines.append, progress=True)
    captured = capsys.readouterr()
    assert captured.out == "" and len(lines) == 2 and lines[0] == lines[1]  # same run, same log line
    assert "3/3" in captured.err and BAR_LOSS.search(captured.err) and BAR_RATE.search(captured.err)


@pytest.mark.skipif(shutil.which("latex") is None or shutil.which("dvisvgm") is None,
                    reason="the scenes typeset formulas with LaTeX (latex, dvisvgm)")
def test_render_animations_prints_a_line_per_scene(tmp_path):
    """One scene's last frame (MQAScene's still renders in about 5 s), into a media folder under tmp_path."""
    pytest.importorskip("manim")
    media = tmp_path / "media"
    result = run(["scripts/render_animations.py", "--no-video", "--media-dir", str(media), "MQAScene"], cwd=ROOT)
    lines = result.stdout.splitlines()
    assert lines[0] == "[1/1] MQAScene (chapter 5) ... last frame", lines
    assert re.fullmatch(r"\[1/1\] MQAScene done in \d+\.\d s", lines[1]), lines
    assert re.search(r"^total\s+\d+\.\d$", result.stdout, re.MULTILINE), result.stdout  # the summary table
    assert (media / "videos" / "MQAScene.png").exists()
