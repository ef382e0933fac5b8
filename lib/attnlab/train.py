"""Train the tiny language model on the course corpus, on a laptop CPU in minutes.

    python -m attnlab.train --attention mha                # writes lib/attnlab/data/tiny_mha.pt
    python -m attnlab.train --attention gqa --n-kv-heads 2 --steps 600
    python -m attnlab.train --list                         # the schemes trained here from scratch
    python -m attnlab.train --attention mha --quick --out /tmp/x.pt   # a few steps, to try the command
    python -m attnlab.train --attention gqa_window         # chapter 17: GQA with a window of 32 and 4 sinks
    python -m attnlab.train --attention gqa_hybrid         # chapter 18: Gated DeltaNet in 3 layers of 4, GQA in 1

On the command line a progress bar on stderr shows each run's loss (mean of the last steps) and tokens per
second; :func:`train` shows it only when called with ``progress=True``, so notebooks stay silent.

The corpus is Python's own documentation (:mod:`attnlab.corpus`), tokenized with the course's BPE
(:func:`attnlab.tokenization.load_tokenizer`). Runs are deterministic for a given seed and thread count.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from collections import deque
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from attnlab._validate import (
    ArgumentTypeError,
    check_bool,
    check_int,
    check_integer_tensor,
    check_ndim,
    check_non_negative_int,
    check_positive_int,
    check_real,
    check_type,
)
from attnlab.corpus import load_text
from attnlab.model import DATA_DIR, TinyLM, TinyLMConfig, checkpoint_path, save_checkpoint, tiny_config
from attnlab.schemes import SCHEMES, VARIANTS
from attnlab.tokenization import load_tokenizer

#: What ``--attention`` takes: the schemes trained from scratch here and the variants of GQA of chapters 17 and 18.
TRAINED: tuple[str, ...] = tuple(key for key, s in (*SCHEMES.items(), *VARIANTS.items())
                                 if s.trainer == "attnlab.train")


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation settings: AdamW, linear warm-up then cosine decay to lr/10."""

    steps: int = 600
    batch_size: int = 16
    seq_len: int = 128
    lr: float = 3e-3
    warmup: int = 50
    weight_decay: float = 0.1
    eval_every: int = 100
    eval_batches: int = 8
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("steps", "batch_size", "seq_len", "eval_every", "eval_batches"):
            check_positive_int(name, getattr(self, name))
        check_real("lr", self.lr, 0.0, strict=True)
        check_non_negative_int("warmup", self.warmup)
        check_real("weight_decay", self.weight_decay, 0.0)
        check_int("seed", self.seed)


#: ``--quick``: a few small steps of the full-size model, seconds instead of minutes, to try the command.
QUICK = TrainConfig(steps=10, batch_size=4, seq_len=64, warmup=2, eval_every=5, eval_batches=2)


class TrainingProgress:
    """A tqdm progress bar on stderr for a training loop (nothing at all when not ``enabled``): one tick per
    step, its postfix the mean of each named loss over the last ``window`` steps and the tokens per second
    (``tokens_per_step`` tokens a step over the seconds since the loop started, evaluation included).
    :meth:`log` writes a line through ``log`` above the bar. A context manager that closes the bar; the
    training loops here (:func:`train`, :mod:`attnlab.dsa_training`'s stages) run under one."""

    def __init__(self, enabled: bool, total: int, desc: str, tokens_per_step: int, window: int = 20):
        check_bool("enabled", enabled)
        check_non_negative_int("total", total)
        check_type("desc", desc, str, "a str")
        check_positive_int("tokens_per_step", tokens_per_step)
        check_positive_int("window", window)
        self.bar = None
        if enabled:
            from tqdm import tqdm  # only when asked: the library's silent default needs no tqdm

            self.bar = tqdm(total=total, desc=desc, unit="step", file=sys.stderr, dynamic_ncols=True)
        self.tokens_per_step, self.window = tokens_per_step, window
        self.losses: dict[str, deque] = {}
        self.steps, self.start = 0, time.perf_counter()

    def step(self, **losses: float) -> None:
        """One training step done, with its losses by name (e.g. ``loss=3.2``)."""
        if self.bar is None:
            return
        self.steps += 1
        for name, value in losses.items():
            self.losses.setdefault(name, deque(maxlen=self.window)).append(value)
        rate = self.steps * self.tokens_per_step / max(time.perf_counter() - self.start, 1e-9)
        shown = [f"{name.replace('_', ' ')}={sum(v) / len(v):.3f}" for name, v in self.losses.items()]
        self.bar.set_postfix_str(", ".join([*shown, f"tok/s={rate:,.0f}"]), refresh=False)
        self.bar.update()

    def log(self, log, line: str) -> None:
        """``log(line)``, with the bar cleared while it prints and redrawn below it."""
        if self.bar is None:
            log(line)
            return
        with self.bar.external_write_mode():
            log(line)

    def __enter__(self) -> TrainingProgress:
        return self

    def __exit__(self, *exc) -> None:
        if self.bar is not None:
            self.bar.close()


def token_ids(split: str) -> torch.Tensor:
    """The corpus split as one long tensor of BPE token ids (int64)."""
    return torch.tensor(load_tokenizer().encode(load_text(split)), dtype=torch.long)


def sample_batch(data: torch.Tensor, batch_size: int, seq_len: int,
                 generator: torch.Generator) -> torch.Tensor:
    """batch_size random windows of seq_len + 1 tokens: (batch, seq_len + 1), inputs and shifted targets."""
    check_ndim("data", data, 1, "(tokens,)")
    check_integer_tensor("data", data)
    check_positive_int("batch_size", batch_size)
    check_positive_int("seq_len", seq_len)
    check_type("generator", generator, torch.Generator)
    if data.numel() < seq_len + 1:
        raise ValueError(f"data has {data.numel()} tokens, fewer than seq_len + 1 = {seq_len + 1}")
    # a window starting at s needs s + seq_len + 1 <= n, so s ranges over 0 .. n - seq_len - 1
    starts = torch.randint(0, data.numel() - seq_len, (batch_size,), generator=generator)
    return torch.stack([data[s : s + seq_len + 1] for s in starts.tolist()])


def lr_at(step: int, cfg: TrainConfig) -> float:
    """Linear warm-up over ``warmup`` steps, then cosine decay from lr to lr/10 at the last step."""
    check_non_negative_int("step", step)
    check_type("cfg", cfg, TrainConfig)
    if step < cfg.warmup:
        return cfg.lr * (step + 1) / cfg.warmup
    progress = (step - cfg.warmup) / max(1, cfg.steps - 1 - cfg.warmup)  # 0 after warm-up, 1 at the last step
    return cfg.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress)))


@torch.no_grad()
def evaluate(model: TinyLM, data: torch.Tensor, cfg: TrainConfig) -> float:
    """Mean next-token loss over ``eval_batches`` fixed windows of ``data`` (seeded, so comparable)."""
    check_type("model", model, TinyLM)
    check_type("cfg", cfg, TrainConfig)
    model.eval()
    gen = torch.Generator().manual_seed(1234)
    losses = [model.loss(sample_batch(data, cfg.batch_size, cfg.seq_len, gen)).item()
              for _ in range(cfg.eval_batches)]
    model.train()
    return sum(losses) / len(losses)


def train(model_config: TinyLMConfig, cfg: TrainConfig = TrainConfig(), log=print,
          model: TinyLM | None = None, progress: bool = False) -> tuple[TinyLM, dict]:
    """Train (or keep training ``model``) and return it with metrics: the loss curves and seconds taken.

    Every ``eval_every`` steps ``log`` gets a line with the train and validation loss; ``progress=True``
    also shows a progress bar on stderr with the loss (mean of the last 20 steps) and tokens per second."""
    check_type("model_config", model_config, TinyLMConfig)
    check_type("cfg", cfg, TrainConfig)
    if not callable(log):
        raise ArgumentTypeError(f"log must be callable (e.g. print), got {type(log).__name__}")
    if model is not None:
        check_type("model", model, TinyLM)
    check_bool("progress", progress)
    torch.manual_seed(cfg.seed)
    model = TinyLM(model_config) if model is None else model
    train_data, val_data = token_ids("train"), token_ids("val")
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, betas=(0.9, 0.95), weight_decay=cfg.weight_decay)
    gen = torch.Generator().manual_seed(cfg.seed)
    history = {"step": [], "train_loss": [], "val_loss": []}
    start, running = time.perf_counter(), []
    model.train()
    with TrainingProgress(progress, cfg.steps, f"train {model.config.attention}", cfg.batch_size * cfg.seq_len) as bar:
        for step in range(cfg.steps):
            for group in opt.param_groups:
                group["lr"] = lr_at(step, cfg)
            loss = model.loss(sample_batch(train_data, cfg.batch_size, cfg.seq_len, gen))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            running.append(loss.item())
            bar.step(loss=running[-1])
            if (step + 1) % cfg.eval_every == 0 or step + 1 == cfg.steps:
                val = evaluate(model, val_data, cfg)
                history["step"].append(step + 1)
                history["train_loss"].append(sum(running) / len(running))
                history["val_loss"].append(val)
                running = []
                bar.log(log, f"step {step + 1:5d}  train {history['train_loss'][-1]:.3f}  val {val:.3f}")
    model.eval()
    metrics = {"train": asdict(cfg), "history": history, "val_loss": history["val_loss"][-1],
               "seconds": time.perf_counter() - start, "n_params": sum(p.numel() for p in model.parameters())}
    return model, metrics


def main(argv: list[str] | None = None) -> None:
    if argv is not None and (not isinstance(argv, (list, tuple)) or not all(isinstance(arg, str) for arg in argv)):
        raise ArgumentTypeError(f"argv={argv!r} must be None or a list of str, e.g. ['--attention', 'gqa']")
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--attention", default="mha", choices=list(TRAINED))
    parser.add_argument("--n-kv-heads", type=int, default=2)
    parser.add_argument("--steps", type=int, default=None,
                        help=f"training steps (default {TrainConfig.steps}, with --quick {QUICK.steps})")
    parser.add_argument("--name", default=None,
                        help="checkpoint name, written to lib/attnlab/data/<name>.pt (default tiny_<attention>)")
    parser.add_argument("--out", default=None, help="write the checkpoint to this path instead")
    parser.add_argument("--quick", action="store_true",
                        help=f"a tiny run to try the command ({QUICK.steps} steps of {QUICK.batch_size} x "
                             f"{QUICK.seq_len} tokens, seconds): writes a checkpoint only to --out, never to "
                             "lib/attnlab/data")
    parser.add_argument("--list", action="store_true",
                        help="print the schemes whose shipped checkpoint this module trains, and exit")
    args = parser.parse_args(argv)
    if args.list:
        print(" ".join(TRAINED))
        return
    if args.quick and args.name is not None:
        parser.error("--quick writes no checkpoint into lib/attnlab/data (--name); give --out PATH to keep one")
    if args.quick and args.out is not None and Path(args.out).resolve().is_relative_to(DATA_DIR.resolve()):
        parser.error(f"--quick must not write into {DATA_DIR} (the shipped checkpoints); choose another --out")
    base = QUICK if args.quick else TrainConfig()
    cfg = TrainConfig(**{**asdict(base), "steps": base.steps if args.steps is None else args.steps})
    torch.set_num_threads(max(1, torch.get_num_threads()))
    model, metrics = train(tiny_config(args.attention, n_kv_heads=args.n_kv_heads), cfg, progress=True)
    if args.out is None and args.quick:
        print(f"quick run: val loss {metrics['val_loss']:.3f}, {metrics['seconds']:.1f} s; no checkpoint written "
              "(--out PATH writes one)")
        return
    path = Path(args.out) if args.out is not None else checkpoint_path(args.name or f"tiny_{args.attention}")
    save_checkpoint(model, path, metrics)
    print(f"saved {path} ({path.stat().st_size / 1e6:.1f} MB), val loss {metrics['val_loss']:.3f}, "
          f"{metrics['seconds']:.1f} s")


if __name__ == "__main__":
    main()
