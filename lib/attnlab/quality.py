"""Tiny-model quality that means something: every scheme trained with several seeds, parameters matched.

One tiny model per scheme, trained once, cannot tell a scheme's effect from luck: two seeds of the same
scheme differ by about as much as two schemes do. And sharing K/V heads removes parameters, so MQA's model
is smaller than MHA's and part of any gap is plain capacity. This module fixes both, the way Shazeer fixed
the second for MQA (arXiv 1911.02150, §4: "we increase the width of the feed-forward layers"):

- :func:`matched_d_ff`: the SwiGLU width d_ff of each scheme's tiny model that brings its parameter count
  to within ``tolerance`` (2%) of the largest one's at the base width (MLA's, 861,568). The attention is
  still the only design difference; the MLP absorbs what sharing saved.
- :func:`run_study` trains every scheme of :data:`SCHEMES_TRAINED` with every seed of :data:`SEEDS` on
  the same recipe as the shipped checkpoints (:class:`attnlab.train.TrainConfig`), then, for each seed,
  DeepSeek Sparse Attention from that seed's MLA model (:func:`attnlab.dsa_training.run`), and scores each
  on the whole validation split (:func:`heldout_loss`). The results ship as JSON
  (``lib/attnlab/data/quality_seeds.json``):

      python -m attnlab.quality              # about 40 minutes on 2 cores (2 runs at a time, 1 thread each)
      python -m attnlab.quality --quick --out /tmp/q.json   # a few steps per run, to try the command

- :func:`load_study` reads it back as a :class:`Study`: per-seed losses, :meth:`Study.summary` (mean,
  sample standard deviation, range) and :meth:`Study.gap` (the difference of two schemes' means against the
  seeds' spread), which chapters 5, 6, 7 and 14 and the fact check show.
- :func:`train_extra` and :func:`merge_study` add a scheme of :data:`SCHEMES_EXTRA` (chapter 18's hybrid) to an
  existing study, matched to the same parameter target and trained on the same recipe, without retraining it:

      python -m attnlab.quality --schemes gqa_hybrid --merge lib/attnlab/data/quality_seeds.json --jobs 1

DSA's indexer adds parameters (:data:`INDEXER` in the records), but they only choose which tokens each query
reads: the attention itself is MLA's, with MLA's weights. So DSA is matched on the parameters outside its
indexer and compared with the MLA model of its own seed.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import statistics
import time
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import torch

from attnlab._validate import ArgumentTypeError, check_choice, check_positive_int, check_real, check_type
from attnlab.dsa_training import attention_mode
from attnlab.model import DATA_DIR, TINY_VARIANTS, TinyLM, TinyLMConfig, tiny_config

#: The schemes trained from scratch in the study, and the one continued from MLA.
SCHEMES_TRAINED: tuple[str, ...] = ("mha", "gqa", "mqa", "mla")
SCHEMES_ALL: tuple[str, ...] = (*SCHEMES_TRAINED, "dsa")
#: Schemes trained on request (``--schemes ... --merge PATH``) and merged into a study: chapter 18's tiny hybrid.
#: They are matched to the four base schemes' target, so adding them changes no width the study already has.
SCHEMES_EXTRA: tuple[str, ...] = ("gqa_hybrid",)
SEEDS: tuple[int, ...] = (0, 1, 2)
TOLERANCE = 0.02  # parameter counts within 2% of the largest
STUDY_PATH = DATA_DIR / "quality_seeds.json"


def n_params(config: TinyLMConfig) -> int:
    """Parameters of the tiny model ``config`` describes (built on the meta device: no memory, no time)."""
    check_type("config", config, TinyLMConfig)
    with torch.device("meta"):
        return sum(p.numel() for p in TinyLM(config).parameters())


def matched_d_ff(schemes: Sequence[str] = SCHEMES_TRAINED, base: TinyLMConfig | None = None,
                 tolerance: float = TOLERANCE) -> dict[str, int]:
    """The MLP width of each scheme's model that matches parameter counts: the target is the largest count at
    the base width; each scheme's d_ff is the width at or above base's that lands nearest the target. With a
    scheme of :data:`SCHEMES_EXTRA` among ``schemes`` the target is the study's own, the largest count of all of
    :data:`SCHEMES_TRAINED` at the base width, so an extra scheme never moves the base schemes' widths.

    Widening SwiGLU by one unit adds 3 d_model parameters per layer (W_1, W_3 gain a row, W_2 a column), so
    the nearest width is base.d_ff + round(deficit / (3 d_model L)); a ValueError says when that misses the
    target by more than ``tolerance`` (a scheme larger than the target by more than that, say)."""
    base = TinyLMConfig() if base is None else base
    check_type("base", base, TinyLMConfig)
    if check_real("tolerance", tolerance, 0.0, strict=True) >= 1:
        raise ValueError(f"tolerance={tolerance!r} must be a fraction in (0, 1), e.g. 0.02 for 2%")
    if isinstance(schemes, str) or not schemes:
        raise ValueError(f"schemes={schemes!r} must be a non-empty sequence of scheme names, e.g. ('mha', 'mqa')")
    for scheme in schemes:
        check_choice("schemes", scheme, (*SCHEMES_TRAINED, *SCHEMES_EXTRA))
    counts = {s: n_params(_config(s, base)) for s in schemes}
    target = max(counts.values())
    if set(schemes) & set(SCHEMES_EXTRA):  # the study's target: the base schemes' largest count
        target = max(n_params(_config(s, base)) for s in SCHEMES_TRAINED)
    per_unit = 3 * base.d_model * base.n_layers  # parameters one more unit of d_ff adds to the model
    widths = {}
    for scheme, count in counts.items():
        d_ff = base.d_ff + round((target - count) / per_unit)
        matched = n_params(_config(scheme, base, d_ff=d_ff))
        if abs(matched - target) > tolerance * target:
            raise ValueError(f"{scheme}: {matched:,} parameters at d_ff={d_ff} is more than {tolerance:.0%} from "
                             f"the target {target:,}; widening the MLP cannot match it")
        widths[scheme] = d_ff
    return widths


def _fields(base: TinyLMConfig) -> dict:
    """``base``'s fields except the scheme, to rebuild it for another scheme."""
    fields = asdict(base)
    fields.pop("attention")
    return fields


def _config(scheme: str, base: TinyLMConfig, **change) -> TinyLMConfig:
    """``scheme``'s tiny model on ``base``'s fields: a variant (e.g. "gqa_hybrid") keeps its own fields
    (:data:`attnlab.model.TINY_VARIANTS`) over base's, then ``change`` applies."""
    return tiny_config(scheme, **{**_fields(base), **TINY_VARIANTS.get(scheme, {}), **change})


@torch.no_grad()
def heldout_loss(model: TinyLM, data: torch.Tensor, seq_len: int = 128, sparse: bool | None = None) -> float:
    """Mean next-token loss over the whole of ``data`` (a split's token ids), cut into non-overlapping windows
    of seq_len + 1 tokens: every token but the windows' first is predicted once. No sampling, so two models
    are scored on exactly the same tokens. ``sparse`` sets a DSA model's mode (True: attention over the
    indexer's top-k, False: dense) for the call; None leaves it as it is."""
    check_type("model", model, TinyLM)
    check_positive_int("seq_len", seq_len)
    n_windows = (data.numel() - 1) // seq_len
    if n_windows < 1:
        raise ValueError(f"data has {data.numel()} tokens, fewer than seq_len + 1 = {seq_len + 1}")
    windows = data[: n_windows * seq_len + 1].unfold(0, seq_len + 1, seq_len)  # (n_windows, seq_len + 1)
    was_training = model.training
    model.eval()
    total = 0.0
    mode = contextlib.nullcontext() if sparse is None else attention_mode(model, dense=not sparse)
    with mode:
        for batch in windows.split(32):
            total += model.loss(batch).item() * batch.shape[0]
    model.train(was_training)
    return total / n_windows


@dataclass(frozen=True)
class Run:
    """One trained model of the study: ``scheme``, ``seed``, its MLP width ``d_ff``, parameter counts
    (``n_params`` all of them, ``n_indexer_params`` those of DSA's indexer, 0 elsewhere), ``val_loss`` on the
    whole validation split (nats per token; DSA: sparse, attention over the indexer's top-k),
    ``history`` (steps and the recipe's sampled validation loss during training) and ``seconds``; for DSA
    also ``dense_val_loss``, the same weights with dense attention (so ``val_loss - dense_val_loss`` is what
    the top-k selection alone costs)."""

    scheme: str
    seed: int
    d_ff: int
    n_params: int
    n_indexer_params: int
    val_loss: float
    history: dict
    seconds: float
    dense_val_loss: float | None = None

    @property
    def matched_params(self) -> int:
        """The parameters the matching counts: all but DSA's indexer (which only selects tokens)."""
        return self.n_params - self.n_indexer_params


def _train_one(scheme: str, seed: int, d_ff: int, steps: int | None, quick: bool) -> tuple[Run, dict | None]:
    """Train one scheme and seed in this process (one thread); returns its Run and, for MLA, its weights."""
    from attnlab.train import QUICK, TrainConfig, token_ids, train

    torch.set_num_threads(1)
    cfg = QUICK if quick else TrainConfig()
    cfg = replace(cfg, seed=seed, **({} if steps is None else {"steps": steps}))
    model, metrics = train(tiny_config(scheme, d_ff=d_ff), cfg, log=lambda line: None)
    run = Run(scheme, seed, d_ff, metrics["n_params"], 0, heldout_loss(model, token_ids("val"), cfg.seq_len),
              {"step": metrics["history"]["step"], "val_loss": metrics["history"]["val_loss"]}, metrics["seconds"])
    return run, (model.state_dict() if scheme == "mla" else None)


def _dsa_one(mla_state: dict, d_ff: int, seed: int, quick: bool) -> Run:
    """DSA's two stages from one seed's MLA model (one thread)."""
    from attnlab.dsa_training import QUICK, DSATrainConfig, run
    from attnlab.train import token_ids

    torch.set_num_threads(1)
    mla = TinyLM(tiny_config("mla", d_ff=d_ff))
    mla.load_state_dict(mla_state)
    cfg = replace(QUICK if quick else DSATrainConfig(), seed=seed)
    model, metrics = run(mla.eval(), cfg, source=f"mla seed {seed}")
    sparse, val = metrics["sparse"], token_ids("val")
    return Run("dsa", seed, d_ff, metrics["n_params"], metrics["n_indexer_params"],
               heldout_loss(model, val, cfg.seq_len, sparse=True),
               {"step": sparse["eval_step"], "val_loss": sparse["val_loss_sparse"]}, metrics["seconds"],
               dense_val_loss=heldout_loss(model, val, cfg.seq_len, sparse=False))


def run_study(seeds: Sequence[int] = SEEDS, jobs: int = 2, quick: bool = False, steps: int | None = None,
              log=print) -> dict:
    """Train the study (:data:`SCHEMES_TRAINED` x ``seeds`` from scratch, then DSA from each seed's MLA
    model), ``jobs`` runs at a time, one thread each; returns the JSON-ready record :func:`load_study` reads."""
    if isinstance(seeds, str) or len(seeds) < 1:
        raise ValueError(f"seeds={seeds!r} must be a non-empty sequence of ints, e.g. (0, 1, 2)")
    check_positive_int("jobs", jobs)
    widths = matched_d_ff()
    start = time.perf_counter()
    with ProcessPoolExecutor(max_workers=jobs) as pool:
        futures = {(s, seed): pool.submit(_train_one, s, seed, widths[s], steps, quick)
                   for s in SCHEMES_TRAINED for seed in seeds}
        runs, mla_states = [], {}
        for (scheme, seed), future in futures.items():
            run, state = future.result()
            log(f"{scheme} seed {seed}: d_ff {run.d_ff}, {run.n_params:,} parameters, val {run.val_loss:.4f}, "
                f"{run.seconds:.0f} s")
            runs.append(run)
            if state is not None:
                mla_states[seed] = state
        dsa = [pool.submit(_dsa_one, mla_states[seed], widths["mla"], seed, quick) for seed in seeds]
        for future in dsa:
            run = future.result()
            log(f"dsa seed {run.seed}: val (sparse) {run.val_loss:.4f}, {run.seconds:.0f} s")
            runs.append(run)
    from attnlab.dsa_training import QUICK as DSA_QUICK  # the DSA stages' settings, as run above
    from attnlab.dsa_training import DSATrainConfig
    from attnlab.train import QUICK, TrainConfig

    return {"recipe": asdict(QUICK if quick else TrainConfig()) | ({} if steps is None else {"steps": steps}),
            "dsa_recipe": asdict(DSA_QUICK if quick else DSATrainConfig()),
            "base": asdict(TinyLMConfig()), "d_ff": widths, "tolerance": TOLERANCE, "threads_per_run": 1,
            "quick": quick, "seconds": time.perf_counter() - start, "runs": [asdict(r) for r in runs]}


def train_extra(schemes: Sequence[str] = SCHEMES_EXTRA, seeds: Sequence[int] = SEEDS, jobs: int = 1,
                quick: bool = False, steps: int | None = None, log=print) -> dict:
    """Train schemes of :data:`SCHEMES_EXTRA` with every seed of ``seeds`` (``jobs`` runs at a time, one thread
    each), each at its :func:`matched_d_ff` width against the study's target and on the study's recipe; returns
    {"recipe", "d_ff", "seeds", "seconds", "runs"}, which :func:`merge_study` adds to a study."""
    if isinstance(schemes, str) or not schemes:
        raise ValueError(f"schemes={schemes!r} must be a non-empty sequence of scheme names, e.g. ('gqa_hybrid',)")
    for scheme in schemes:
        check_choice("schemes", scheme, SCHEMES_EXTRA)
    if isinstance(seeds, str) or len(seeds) < 1:
        raise ValueError(f"seeds={seeds!r} must be a non-empty sequence of ints, e.g. (0, 1, 2)")
    check_positive_int("jobs", jobs)
    widths = matched_d_ff(tuple(schemes))
    start = time.perf_counter()
    runs = []
    with ProcessPoolExecutor(max_workers=jobs) as pool:
        futures = [pool.submit(_train_one, s, seed, widths[s], steps, quick) for s in schemes for seed in seeds]
        for future in futures:
            run, _ = future.result()
            log(f"{run.scheme} seed {run.seed}: d_ff {run.d_ff}, {run.n_params:,} parameters, val {run.val_loss:.4f}, "
                f"{run.seconds:.0f} s")
            runs.append(run)
    from attnlab.train import QUICK, TrainConfig

    return {"recipe": asdict(QUICK if quick else TrainConfig()) | ({} if steps is None else {"steps": steps}),
            "d_ff": widths, "seeds": list(seeds), "seconds": time.perf_counter() - start,
            "runs": [asdict(r) for r in runs]}


def merge_study(study: dict, extra: dict) -> dict:
    """``study`` (a record of :func:`run_study`, as its JSON holds it) with the runs of ``extra`` (a record of
    :func:`train_extra`) added: their runs (shaped like the study's: a field its runs carry and the extra runs
    lack, such as DSA's dense loss, is null), their widths under "d_ff", and a line under "merged" saying what
    was added and how long it took. Refuses runs of another recipe, widths that would not match the study's (its
    base schemes' widths differ from :func:`matched_d_ff`'s now), and a scheme and seed the study already has."""
    check_type("study", study, dict)
    check_type("extra", extra, dict)
    for name, record in (("study", study), ("extra", extra)):
        missing = {"recipe", "d_ff", "runs"} - set(record)
        if missing:
            raise ValueError(f"{name} lacks {sorted(missing)}: pass the JSON record of "
                             f"{'run_study' if name == 'study' else 'train_extra'}")
    if extra["recipe"] != study["recipe"]:
        raise ValueError(f"extra was trained with recipe {extra['recipe']}, the study with {study['recipe']}: runs "
                         "of different recipes are not comparable")
    base = {s: w for s, w in study["d_ff"].items() if s in SCHEMES_TRAINED}
    if base and matched_d_ff(tuple(base)) != base:
        raise ValueError(f"study has the widths {base}, matching gives {matched_d_ff(tuple(base))} now: the "
                         "parameter target moved, so extra's widths would not match the study's")
    held = {(r["scheme"], r["seed"]) for r in study["runs"]}
    twice = sorted(f"{r['scheme']} seed {r['seed']}" for r in extra["runs"] if (r["scheme"], r["seed"]) in held)
    if twice:
        raise ValueError(f"extra repeats runs the study already has: {', '.join(twice)}")
    shape = {key for r in study["runs"] for key in r}  # the study's run records: a field they have and extra's
    added = [{**{key: None for key in sorted(shape - set(r))}, **r} for r in extra["runs"]]  # lack is null there
    merged = dict(study)
    merged["runs"] = [*study["runs"], *added]
    merged["d_ff"] = {**study["d_ff"], **extra["d_ff"]}
    merged["merged"] = [*study.get("merged", []), {"schemes": sorted({r["scheme"] for r in extra["runs"]}),
                                                   "seeds": extra.get("seeds"), "seconds": extra.get("seconds")}]
    return merged


@dataclass(frozen=True)
class Summary:
    """One scheme over its seeds: ``mean``, sample standard deviation ``std`` (n - 1), ``low``/``high`` (the
    range), ``n`` seeds, and the matched parameter count ``params`` (the same for every seed)."""

    scheme: str
    mean: float
    std: float
    low: float
    high: float
    n: int
    params: int


@dataclass(frozen=True)
class Gap:
    """``new`` against ``old``: ``delta`` = mean(new) - mean(old) (positive: new is worse), ``paired`` the
    per-seed differences (seed s of new against seed s of old), and ``noise`` the larger of the two schemes'
    seed standard deviations. ``clear`` is True when |delta| exceeds twice ``noise``: a gap three seeds can
    tell from luck."""

    new: str
    old: str
    delta: float
    paired: tuple[float, ...]
    noise: float

    @property
    def clear(self) -> bool:
        return abs(self.delta) > 2 * self.noise

    def words(self) -> str:
        """The gap in a sentence: "+0.031 nats (MQA worse), larger than the seeds' spread (std 0.004)"."""
        side = f"{self.new.upper()} {'worse' if self.delta > 0 else 'better'}"
        judged = ("larger than the seeds' spread" if self.clear else "within the seeds' spread")
        return f"{self.delta:+.3f} nats ({side}), {judged} (std up to {self.noise:.3f})"


@dataclass(frozen=True)
class Study:
    """The study as shipped: ``runs`` (:class:`Run`), the training ``recipe``, the ``dsa_recipe``, the MLP
    widths ``d_ff`` by scheme and the ``tolerance`` they were matched to."""

    runs: tuple[Run, ...]
    recipe: dict
    dsa_recipe: dict
    d_ff: dict
    tolerance: float
    seconds: float

    def schemes(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(r.scheme for r in self.runs))

    def losses(self, scheme: str) -> dict[int, float]:
        """Validation loss by seed for ``scheme``."""
        check_choice("scheme", scheme, self.schemes())
        return {r.seed: r.val_loss for r in self.runs if r.scheme == scheme}

    def summary(self, scheme: str) -> Summary:
        check_choice("scheme", scheme, self.schemes())
        runs = [r for r in self.runs if r.scheme == scheme]
        values = [r.val_loss for r in runs]
        std = statistics.stdev(values) if len(values) > 1 else math.nan
        return Summary(scheme, statistics.fmean(values), std, min(values), max(values), len(values),
                       runs[0].matched_params)

    def gap(self, new: str, old: str) -> Gap:
        """``new`` against ``old`` over the seeds both have."""
        a, b = self.losses(new), self.losses(old)
        seeds = sorted(set(a) & set(b))
        if not seeds:
            raise ValueError(f"{new} and {old} share no seed; they have {sorted(a)} and {sorted(b)}")
        s_new, s_old = self.summary(new), self.summary(old)
        return Gap(new, old, s_new.mean - s_old.mean, tuple(a[s] - b[s] for s in seeds), max(s_new.std, s_old.std))

    def param_spread(self) -> float:
        """(largest - smallest) / largest matched parameter count over the schemes: at most ``tolerance``."""
        counts = [self.summary(s).params for s in self.schemes()]
        return (max(counts) - min(counts)) / max(counts)

    def last_drop(self, scheme: str) -> float:
        """How much ``scheme``'s sampled validation loss still fell over the last evaluation interval (mean over
        seeds): well above zero means the models stopped while still learning."""
        check_choice("scheme", scheme, self.schemes())
        drops = [r.history["val_loss"][-2] - r.history["val_loss"][-1] for r in self.runs if r.scheme == scheme]
        return statistics.fmean(drops)

    def tokens_seen(self) -> int:
        """Tokens each from-scratch model trained on: steps x batch x sequence length."""
        return self.recipe["steps"] * self.recipe["batch_size"] * self.recipe["seq_len"]

    def markdown(self, schemes: Sequence[str] | None = None) -> str:
        """A table: scheme, MLP width, parameters, each seed's loss, mean +- std."""
        schemes = self.schemes() if schemes is None else tuple(schemes)
        seeds = sorted({r.seed for r in self.runs})
        head = ("| scheme | d_ff | parameters | " + " | ".join(f"seed {s}" for s in seeds) + " | mean ± std |\n"
                "|---|---:|---:|" + "---:|" * len(seeds) + "---:|")
        rows = [head]
        for scheme in schemes:
            s, by_seed = self.summary(scheme), self.losses(scheme)
            cells = " | ".join(f"{by_seed[seed]:.3f}" if seed in by_seed else "" for seed in seeds)
            name = scheme.upper() + (" (sparse; indexer not counted)" if scheme == "dsa" else "")
            rows.append(f"| {name} | {self.d_ff.get(scheme, self.d_ff['mla'])} | {s.params:,} | {cells} | "
                        f"{s.mean:.3f} ± {s.std:.3f} |")
        return "\n".join(rows)


def load_study(path: str | Path | None = None) -> Study:
    """The shipped study (``lib/attnlab/data/quality_seeds.json``) or the one at ``path``."""
    path = STUDY_PATH if path is None else Path(path)
    if not path.exists():
        raise ValueError(f"no study at {path}; `python -m attnlab.quality` trains one")
    blob = json.loads(path.read_text())
    return Study(tuple(Run(**r) for r in blob["runs"]), blob["recipe"], blob["dsa_recipe"], blob["d_ff"],
                 blob["tolerance"], blob["seconds"])


def main(argv: list[str] | None = None) -> None:
    if argv is not None and (not isinstance(argv, (list, tuple)) or not all(isinstance(a, str) for a in argv)):
        raise ArgumentTypeError(f"argv={argv!r} must be None or a list of str, e.g. ['--quick']")
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=list(SEEDS))
    parser.add_argument("--jobs", type=int, default=2, help="runs at a time, one thread each (default 2)")
    parser.add_argument("--quick", action="store_true", help="a few steps per run, to try the command")
    parser.add_argument("--out", default=None, help=f"where to write the JSON (default {STUDY_PATH})")
    parser.add_argument("--schemes", nargs="+", choices=list(SCHEMES_EXTRA), default=None,
                        help="train these extra schemes only and merge them into the study --merge names")
    parser.add_argument("--merge", default=None, metavar="PATH",
                        help="with --schemes: the study JSON to add their runs to (written back there, or to --out)")
    args = parser.parse_args(argv)
    if (args.schemes is None) != (args.merge is None):
        parser.error("--schemes and --merge go together: --schemes gqa_hybrid --merge PATH trains the extra schemes "
                     "and adds their runs to the study at PATH")
    if args.merge is not None:
        _merge_main(parser, args)
        return
    out = Path(args.out) if args.out else STUDY_PATH
    if args.quick and out.resolve() == STUDY_PATH.resolve():
        parser.error(f"--quick must not overwrite the shipped study {STUDY_PATH}; give --out PATH")
    record = run_study(args.seeds, args.jobs, args.quick)
    out.write_text(json.dumps(record, indent=1) + "\n")
    study = load_study(out)
    print(study.markdown())
    print(f"wrote {out}; parameters within {study.param_spread():.2%}; {record['seconds']:.0f} s")


def _merge_main(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """``--schemes ... --merge PATH``: train the extra schemes, add their runs to the study at PATH, write it."""
    source = Path(args.merge)
    if not source.exists():
        parser.error(f"--merge {source}: no study there; `python -m attnlab.quality` trains one")
    out = Path(args.out) if args.out else source
    if args.quick and out.resolve() == STUDY_PATH.resolve():
        parser.error(f"--quick must not overwrite the shipped study {STUDY_PATH}; give --out PATH")
    study = json.loads(source.read_text())
    if args.quick != study.get("quick", False):
        parser.error(f"--merge {source}: its runs were trained {'with' if study.get('quick') else 'without'} "
                     "--quick; train the extra schemes the same way")
    extra = train_extra(args.schemes, args.seeds, args.jobs, args.quick)
    out.write_text(json.dumps(merge_study(study, extra), indent=1) + "\n")
    merged = load_study(out)
    print(merged.markdown())
    print(f"wrote {out}: {', '.join(args.schemes)} merged into {source}; parameters within "
          f"{merged.param_spread():.2%}; {extra['seconds']:.0f} s")


if __name__ == "__main__":
    main()
