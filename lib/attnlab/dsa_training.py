"""Training DeepSeek Sparse Attention from a trained MLA model, in the tech report's two stages.

DeepSeek-V3.2-Exp was not trained from scratch: it is DeepSeek-V3.1-Terminus (MLA) with a lightning indexer
added to every layer and trained on in two stages (tech report "DeepSeek-V3.2", continued pre-training).
This module does the same to the course's tiny MLA model, ``tiny_mla``:

- :func:`dsa_from_mla`: a :class:`~attnlab.model.TinyLM` with ``attention="dsa"`` whose MLA weights are
  copied from the MLA model and whose indexers are new (randomly initialised);
- :func:`warmup_indexer`, stage 1, **dense warm-up**: attention stays dense, every parameter outside the
  indexers is frozen, and the indexers learn to imitate the main attention,

      p_t = sum_i a_{t,i,:} / || sum_i a_{t,i,:} ||_1        (main attention, summed over heads, L1-normalised)
      L^I = sum_t KL(p_t || Softmax(I_t))                     (index scores I_t over the tokens s <= t);

- :func:`train_sparse`, stage 2, **sparse training**: attention reads only the top-k set S_t; the model
  trains on the language-model loss and the indexers on the KL over the selected set,

      L^I = sum_t KL(p_{t,S_t} || Softmax(I_{t,S_t}))         (p renormalised over S_t),

  with the indexers' inputs detached: the KL reaches only the indexers, and the LM loss cannot reach them
  (the top-k choice has no gradient), so the indexer is never trained to please the LM loss through the
  selection;
- :func:`topk_recall` measures how much of the true attention's top-k the indexer's top-k recovers, and
  :func:`validation_loss` the model's validation loss with dense or sparse attention on the same weights.

DeepSeek's scale (the facts sheet, tech report): stage 1 at lr 1e-3 for 1000 steps of 16 sequences of 128K
tokens (2.1B tokens), stage 2 at lr 7.3e-6 for 15000 steps of 480 x 128K tokens (943.7B), top-k 2048.
:class:`DSATrainConfig` holds scaled-down analogues that run on a laptop CPU in minutes:

    python -m attnlab.dsa_training          # reads lib/attnlab/data/tiny_mla.pt, writes tiny_dsa.pt
    python -m attnlab.dsa_training --quick --out /tmp/dsa.pt   # a few small steps, to try the command

On the command line each stage shows a progress bar on stderr with its losses (means of the last steps) and
tokens per second; the functions show it only when called with ``progress=True``, so notebooks stay silent.

Runs are deterministic for a given seed and thread count. The KL is averaged over queries and layers
instead of summed (a constant factor, which AdamW's per-parameter step size does not see), so the curves
read in nats per query.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import functools
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from attnlab._validate import check_bool, check_ndim, check_positive_int
from attnlab.dsa import (
    DeepSeekSparseAttention,
    indexer_loss,
    indexer_parameters,
    selection_mask,
    set_training_stage,
    topk_indices,
)
from attnlab.model import DATA_DIR, TinyLM, checkpoint_path, load_checkpoint, save_checkpoint
from attnlab.train import TrainConfig, TrainingProgress, evaluate, sample_batch, token_ids

#: Seed of the fixed validation windows that recall and validation loss are measured on (as
#: :func:`attnlab.train.evaluate` uses).
EVAL_SEED = 1234


@dataclass(frozen=True)
class DSATrainConfig:
    """The two stages' settings, scaled down from DeepSeek-V3.2's (in brackets) to a CPU run of minutes.

    warmup_steps [1000], warmup_lr [1e-3]: stage 1, only the indexers train, dense attention;
    sparse_steps [15000], sparse_lr [7.3e-6]: stage 2, everything trains, attention over the top-k set.
    Learning rates do not carry over between model sizes; what carries over is the shape: a short warm-up
    of the new indexers at a high rate, then a long sparse stage at a rate far below it. Here sparse_lr is
    the rate :func:`attnlab.train.train`'s cosine schedule ends on (TrainConfig.lr / 10), so stage 2
    continues the tiny MLA model's training where it stopped.
    batch_size [16 and 480 sequences] and seq_len [128K tokens]: every step reads batch_size windows of
    seq_len tokens; top_k [2048]: tokens each query keeps in stage 2, smaller than seq_len so that the
    selection is real (queries at positions >= top_k drop tokens). AdamW (betas 0.9, 0.95, ``weight_decay``),
    constant learning rate per stage, gradients clipped to norm 1 separately for the indexers and the rest.
    eval_every: steps between measurements (recall, validation loss) on eval_batches fixed validation
    batches; seed: the batches drawn (and the new indexers' initialisation in :func:`run`).
    """

    warmup_steps: int = 150
    sparse_steps: int = 300
    warmup_lr: float = 1e-3
    sparse_lr: float = TrainConfig.lr / 10
    batch_size: int = 16
    seq_len: int = 128
    top_k: int = 32
    weight_decay: float = 0.1
    eval_every: int = 25
    eval_batches: int = 4
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("warmup_steps", "sparse_steps", "batch_size", "seq_len", "top_k", "eval_every",
                     "eval_batches"):
            check_positive_int(name, getattr(self, name))
        for name in ("warmup_lr", "sparse_lr"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < math.inf:
                raise ValueError(f"{name}={value!r} must be a finite number > 0")
        wd = self.weight_decay
        if isinstance(wd, bool) or not isinstance(wd, (int, float)) or not 0 <= wd < math.inf:
            raise ValueError(f"weight_decay={wd!r} must be a finite number >= 0")
        if self.top_k >= self.seq_len:
            raise ValueError(f"top_k={self.top_k} must be smaller than seq_len={self.seq_len}: otherwise every "
                             "query keeps every token and the attention is not sparse")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int):
            raise ValueError(f"seed={self.seed!r} must be an int")

    def eval_config(self) -> TrainConfig:
        """The :class:`~attnlab.train.TrainConfig` whose evaluation windows :func:`validation_loss` reads."""
        return TrainConfig(batch_size=self.batch_size, seq_len=self.seq_len, eval_batches=self.eval_batches)


#: ``--quick``: both stages in a few small steps, seconds instead of minutes, to try the command.
QUICK = DSATrainConfig(warmup_steps=4, sparse_steps=4, batch_size=4, seq_len=64, top_k=16, eval_every=2,
                       eval_batches=1)


# ----------------------------------------------------------------------------------------------------
# helpers


@functools.lru_cache(maxsize=2)
def _corpus(split: str) -> torch.Tensor:
    return token_ids(split)


def _dsa_layers(model: TinyLM) -> list[DeepSeekSparseAttention]:
    return [block.attn for block in model.blocks if isinstance(block.attn, DeepSeekSparseAttention)]


def _check_dsa_model(model: object, cfg: DSATrainConfig | None = None) -> TinyLM:
    if not isinstance(model, TinyLM):
        raise ValueError(f"model must be a TinyLM, got {type(model).__name__}")
    if model.config.attention != "dsa":
        raise ValueError(f"model has attention={model.config.attention!r}; this needs 'dsa' (see dsa_from_mla)")
    if cfg is not None:
        if not isinstance(cfg, DSATrainConfig):
            raise ValueError(f"cfg must be a DSATrainConfig, got {type(cfg).__name__}")
        if cfg.top_k != model.config.index_topk:
            raise ValueError(f"cfg.top_k={cfg.top_k} must equal the model's index_topk={model.config.index_topk} "
                             "(build the model with dsa_from_mla(..., index_topk=cfg.top_k))")
        if cfg.seq_len > model.config.max_seq_len:
            raise ValueError(f"cfg.seq_len={cfg.seq_len} exceeds the model's max_seq_len={model.config.max_seq_len}")
    return model


def probe_ids(cfg: DSATrainConfig, batch_size: int = 4) -> torch.Tensor:
    """Fixed validation windows (batch_size, seq_len) that recall is measured on (seeded, so comparable)."""
    check_positive_int("batch_size", batch_size)
    gen = torch.Generator().manual_seed(EVAL_SEED)
    return sample_batch(_corpus("val"), batch_size, cfg.seq_len, gen)[:, :-1]


@contextlib.contextmanager
def attention_mode(model: TinyLM, dense: bool, keep: bool = False) -> Iterator[list[DeepSeekSparseAttention]]:
    """Run ``model``'s DSA layers with dense (``dense=True``) or top-k attention inside the block, keeping
    each layer's weights and index scores in ``kl_inputs`` when ``keep``; everything (implementation, flags,
    kept inputs, train/eval mode) is restored on exit. Yields the DSA layers (none for an MLA model)."""
    layers = _dsa_layers(model)
    saved = [(layer.implementation, layer.keep_for_kl, layer.kl_inputs) for layer in layers]
    was_training = model.training
    try:
        for layer in layers:
            layer.use("dense" if dense else "gather")
            layer.keep_for_kl, layer.kl_inputs = keep, None
        yield layers
    finally:
        for layer, (implementation, keep_flag, kept) in zip(layers, saved, strict=True):
            layer.use(implementation)
            layer.keep_for_kl, layer.kl_inputs = keep_flag, kept
        model.train(was_training)


def _adamw(params: list[torch.nn.Parameter] | list[dict], lr: float, cfg: DSATrainConfig) -> torch.optim.AdamW:
    return torch.optim.AdamW(params, lr=lr, betas=(0.9, 0.95), weight_decay=cfg.weight_decay)


def _mean_kl(model: TinyLM) -> torch.Tensor:
    """The indexer loss of the last forward call, averaged over queries and layers (nats per query)."""
    return indexer_loss(model, reduction="mean") / len(_dsa_layers(model))


def warmup_loss(model: TinyLM, ids: torch.Tensor) -> torch.Tensor:
    """Stage 1's loss on ids (batch, seq): run the model (dense attention after
    ``set_training_stage(model, "warmup")``) and return mean_t KL(p_t || Softmax(I_t)), averaged over layers."""
    model(ids)
    return _mean_kl(model)


def sparse_losses(model: TinyLM, batch: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Stage 2's two losses on batch (batch, seq + 1), after ``set_training_stage(model, "sparse")``: the
    next-token loss L_LM of the model with top-k attention, and L^I = mean_t KL(p_{t,S_t} || Softmax(I_{t,S_t}))
    over each query's selected set, averaged over layers. L_LM has no path to the indexers (top-k has no
    gradient) and L^I none to the rest of the model (p is detached, the indexers' inputs too)."""
    lm = model.loss(batch)
    return lm, _mean_kl(model)


# ----------------------------------------------------------------------------------------------------
# building the DSA model


def dsa_from_mla(mla_model: TinyLM, index_topk: int | None = None, index_n_heads: int | None = None,
                 index_head_dim: int | None = None, seed: int = 0) -> TinyLM:
    """A :class:`TinyLM` with ``attention="dsa"`` holding ``mla_model``'s weights, as DeepSeek-V3.2-Exp
    started from V3.1-Terminus: block i's ``attn.<name>`` is copied to ``attn.mla.<name>``, everything else
    (embedding, norms, MLPs) to the same name; the lightning indexers are new, drawn with ``seed`` from the
    model's initialisation (N(0, 0.02^2) weights, LayerNorm gain 1 and bias 0) without touching the global
    random state. index_topk [k], index_n_heads [H^I], index_head_dim [d^I]: None keeps TinyLMConfig's
    defaults. Same dtype and device as ``mla_model``, in eval mode, stage "inference"."""
    if not isinstance(mla_model, TinyLM):
        raise ValueError(f"mla_model must be a TinyLM, got {type(mla_model).__name__}")
    if mla_model.config.attention != "mla":
        raise ValueError(f"mla_model has attention={mla_model.config.attention!r}, expected 'mla'")
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise ValueError(f"seed={seed!r} must be an int")
    options = {name: value for name, value in (("index_topk", index_topk), ("index_n_heads", index_n_heads),
                                               ("index_head_dim", index_head_dim)) if value is not None}
    config = dataclasses.replace(mla_model.config, attention="dsa", **options)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = TinyLM(config)
    weight = mla_model.embed.weight
    model = model.to(device=weight.device, dtype=weight.dtype)
    state = {}
    for name, value in mla_model.state_dict().items():
        parts = name.split(".")
        if parts[0] == "blocks" and parts[2] == "attn":
            name = ".".join([*parts[:3], "mla", *parts[3:]])
        state[name] = value
    missing, unexpected = model.load_state_dict(state, strict=False)
    if unexpected or any(".attn.indexer." not in name for name in missing):
        raise ValueError(f"the MLA weights do not map onto the DSA model: missing {missing}, unexpected {unexpected}")
    set_training_stage(model, "inference")
    return model.eval()


# ----------------------------------------------------------------------------------------------------
# measuring


@torch.no_grad()
def recall_by_layer(model: TinyLM, ids: torch.Tensor, k: int) -> list[float]:
    """For every layer: the mean over queries of |T_t ∩ S_t| / |T_t|, with T_t the top-k of the true
    attention p_t (summed over heads) and S_t the top-k of the index scores I_t, both of size min(k, t + 1).

    The model runs with dense attention (the true attention is that of every layer reading all tokens).
    Averaged over the queries that have a choice (t + 1 > k) and the batch; when no query has one
    (k >= seq), over all queries, where both sets hold every visible token and recall is 1.
    ids (batch, seq) -> n_layers floats in [0, 1]."""
    _check_dsa_model(model)
    check_ndim("ids", ids, 2, "(batch, seq)")
    check_positive_int("k", k)
    recalls = []
    with attention_mode(model, dense=True, keep=True) as layers:
        model.eval()
        model(ids)
        for layer in layers:
            weights, scores, _ = layer.kl_inputs  # (b, h, s, t), (b, s, t)
            t = scores.shape[-1]
            p = weights.sum(dim=1).masked_fill(~torch.isfinite(scores), float("-inf"))  # (b, s, t), causal
            true_set = selection_mask(topk_indices(p, k), t)  # (b, s, t)
            index_set = selection_mask(topk_indices(scores, k), t)
            per_query = (true_set & index_set).sum(-1) / true_set.sum(-1)  # (b, s)
            choice = torch.arange(t, device=ids.device) + 1 > k  # queries that must drop tokens
            recalls.append(float(per_query[:, choice].mean() if choice.any() else per_query.mean()))
    return recalls


def topk_recall(model: TinyLM, ids: torch.Tensor, k: int) -> float:
    """Top-k recall: the fraction of the true attention's top-k (summed over heads) that the indexer's
    top-k recovers, averaged over queries and layers (:func:`recall_by_layer`). 1.0 when k >= seq;
    a random indexer scores about k / (t + 1) at query t."""
    recalls = recall_by_layer(model, ids, k)
    return sum(recalls) / len(recalls)


def validation_loss(model: TinyLM, sparse: bool, cfg: DSATrainConfig | None = None) -> float:
    """Mean next-token loss on :class:`DSATrainConfig`'s fixed validation windows (cfg.eval_batches
    batches of cfg.batch_size x cfg.seq_len, as :func:`attnlab.train.evaluate`), with every DSA layer's
    attention dense (``sparse=False``) or over its top-k set (``sparse=True``), on the same weights.
    An MLA model is accepted with ``sparse=False``."""
    cfg = DSATrainConfig() if cfg is None else cfg
    if not isinstance(cfg, DSATrainConfig):
        raise ValueError(f"cfg must be a DSATrainConfig, got {type(cfg).__name__}")
    if not isinstance(model, TinyLM):
        raise ValueError(f"model must be a TinyLM, got {type(model).__name__}")
    if not isinstance(sparse, bool):
        raise ValueError(f"sparse={sparse!r} must be True or False")
    if sparse and model.config.attention != "dsa":
        raise ValueError(f"sparse=True needs a DSA model; this one has attention={model.config.attention!r}")
    if cfg.seq_len > model.config.max_seq_len:
        raise ValueError(f"cfg.seq_len={cfg.seq_len} exceeds the model's max_seq_len={model.config.max_seq_len}")
    with attention_mode(model, dense=not sparse):
        return evaluate(model, _corpus("val"), cfg.eval_config())


# ----------------------------------------------------------------------------------------------------
# the two stages


def warmup_indexer(model: TinyLM, cfg: DSATrainConfig = DSATrainConfig(),
                   log: Callable[[str], None] | None = None, progress: bool = False) -> dict:
    """Stage 1, dense warm-up: cfg.warmup_steps AdamW steps at cfg.warmup_lr on

        L^I = mean_t KL(p_t || Softmax(I_t)),   p_t = sum_i a_{t,i,:} / ||sum_i a_{t,i,:}||_1,

    averaged over layers, with dense attention and every parameter outside the indexers frozen
    (:func:`attnlab.dsa.set_training_stage` "warmup"), so the model's outputs do not change. Returns
    metrics: "step" and "kl" (each step's training loss), "eval_step" and "recall" (top-k recall on
    :func:`probe_ids`, step 0 = before training), "seconds". Leaves the model in stage "inference", eval mode.
    ``log`` (if given) gets a line at every measurement; ``progress=True`` shows a progress bar on stderr with
    the KL (mean of the last 20 steps) and tokens per second.
    """
    check_bool("progress", progress)
    _check_dsa_model(model, cfg)
    train_data, probe = _corpus("train"), probe_ids(cfg)
    gen = torch.Generator().manual_seed(cfg.seed)
    history = {"step": [], "kl": [], "eval_step": [0], "recall": [topk_recall(model, probe, cfg.top_k)]}
    start = time.perf_counter()
    set_training_stage(model, "warmup")
    params = list(indexer_parameters(model))
    opt = _adamw(params, cfg.warmup_lr, cfg)
    model.train()
    with TrainingProgress(progress, cfg.warmup_steps, "indexer warm-up", cfg.batch_size * cfg.seq_len) as bar:
        for step in range(cfg.warmup_steps):
            ids = sample_batch(train_data, cfg.batch_size, cfg.seq_len, gen)[:, :-1]  # (b, seq_len)
            loss = warmup_loss(model, ids)  # dense attention; the indexers imitate it
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            opt.step()
            history["step"].append(step + 1)
            history["kl"].append(loss.item())
            bar.step(KL_loss=history["kl"][-1])
            if (step + 1) % cfg.eval_every == 0 or step + 1 == cfg.warmup_steps:
                history["eval_step"].append(step + 1)
                history["recall"].append(topk_recall(model, probe, cfg.top_k))
                if log is not None:
                    bar.log(log, f"warm-up {step + 1:5d}  KL {loss.item():.3f}  "
                                 f"recall@{cfg.top_k} {history['recall'][-1]:.3f}")
    set_training_stage(model, "inference")
    model.eval()
    return {**history, "seconds": time.perf_counter() - start}


def train_sparse(model: TinyLM, cfg: DSATrainConfig = DSATrainConfig(),
                 log: Callable[[str], None] | None = None, progress: bool = False) -> dict:
    """Stage 2, sparse training: cfg.sparse_steps AdamW steps at cfg.sparse_lr on

        L = L_LM + L^I,   L^I = mean_t KL(p_{t,S_t} || Softmax(I_{t,S_t}))   (averaged over layers),

    with attention over the top-k set S_t (cfg.top_k tokens per query) and the indexers' inputs detached
    (:func:`attnlab.dsa.set_training_stage` "sparse"): L_LM reaches every parameter but the indexers (the
    top-k choice has no gradient) and L^I only the indexers, so the one backward pass trains each part on
    its own loss. Gradients are clipped separately for the two parts. Returns metrics: "step", "lm_loss"
    and "kl" per step, "eval_step" and "val_loss_sparse" (step 0 = before training) and "recall",
    "seconds". Leaves the model in stage "inference", eval mode. ``log`` (if given) gets a line at every
    measurement; ``progress=True`` shows a progress bar on stderr with the LM loss and the KL (means of the
    last 20 steps) and tokens per second."""
    check_bool("progress", progress)
    _check_dsa_model(model, cfg)
    train_data, probe = _corpus("train"), probe_ids(cfg)
    gen = torch.Generator().manual_seed(cfg.seed + 1)  # other windows than stage 1's
    history = {"step": [], "lm_loss": [], "kl": [], "eval_step": [0],
               "val_loss_sparse": [validation_loss(model, True, cfg)], "recall": [topk_recall(model, probe, cfg.top_k)]}
    start = time.perf_counter()
    set_training_stage(model, "sparse")
    indexer = list(indexer_parameters(model))
    indexer_ids = {id(p) for p in indexer}
    rest = [p for p in model.parameters() if id(p) not in indexer_ids]
    opt = _adamw([{"params": rest}, {"params": indexer}], cfg.sparse_lr, cfg)
    model.train()
    with TrainingProgress(progress, cfg.sparse_steps, "sparse training", cfg.batch_size * cfg.seq_len) as bar:
        for step in range(cfg.sparse_steps):
            lm, kl = sparse_losses(model, sample_batch(train_data, cfg.batch_size, cfg.seq_len, gen))
            opt.zero_grad(set_to_none=True)
            (lm + kl).backward()
            torch.nn.utils.clip_grad_norm_(rest, 1.0)
            torch.nn.utils.clip_grad_norm_(indexer, 1.0)
            opt.step()
            history["step"].append(step + 1)
            history["lm_loss"].append(lm.item())
            history["kl"].append(kl.item())
            bar.step(loss=history["lm_loss"][-1], KL=history["kl"][-1])
            if (step + 1) % cfg.eval_every == 0 or step + 1 == cfg.sparse_steps:
                history["eval_step"].append(step + 1)
                history["val_loss_sparse"].append(validation_loss(model, True, cfg))
                history["recall"].append(topk_recall(model, probe, cfg.top_k))
                model.train()
                if log is not None:
                    bar.log(log, f"sparse  {step + 1:5d}  LM {lm.item():.3f}  KL {kl.item():.3f}  "
                                 f"val (sparse) {history['val_loss_sparse'][-1]:.3f}")
    set_training_stage(model, "inference")
    model.eval()
    return {**history, "seconds": time.perf_counter() - start}


# ----------------------------------------------------------------------------------------------------
# the shipped run


def run(mla_model: TinyLM, cfg: DSATrainConfig = DSATrainConfig(), source: str = "tiny_mla",
        log: Callable[[str], None] | None = None, progress: bool = False) -> tuple[TinyLM, dict]:
    """Both stages from ``mla_model``: the DSA model and metrics with the curves of both stages
    ("warmup", "sparse"), top-k recall on :func:`probe_ids` before and after warm-up and after sparse
    training ("recall"), and validation losses ("val_loss"): the MLA model (dense), the DSA model sparse
    with its untrained indexer and after warm-up, and after both stages dense and sparse. ``log`` and
    ``progress`` go to both stages (:func:`warmup_indexer`, :func:`train_sparse`): one progress bar each."""
    check_bool("progress", progress)
    if not isinstance(cfg, DSATrainConfig):
        raise ValueError(f"cfg must be a DSATrainConfig, got {type(cfg).__name__}")
    model = dsa_from_mla(mla_model, index_topk=cfg.top_k, seed=cfg.seed)
    probe = probe_ids(cfg)
    val = {"mla_dense": validation_loss(mla_model, False, cfg),
           "dsa_sparse_untrained": validation_loss(model, True, cfg)}
    recall = {"untrained": topk_recall(model, probe, cfg.top_k)}
    warmup = warmup_indexer(model, cfg, log, progress=progress)
    recall["after_warmup"] = topk_recall(model, probe, cfg.top_k)
    val["dsa_dense_after_warmup"] = validation_loss(model, False, cfg)
    val["dsa_sparse_after_warmup"] = validation_loss(model, True, cfg)
    sparse = train_sparse(model, cfg, log, progress=progress)
    recall["after_sparse"] = topk_recall(model, probe, cfg.top_k)
    val["dsa_dense"] = validation_loss(model, False, cfg)
    val["dsa_sparse"] = validation_loss(model, True, cfg)
    metrics = {"source": source, "dsa_train": asdict(cfg), "source_metrics": getattr(mla_model, "metrics", {}),
               "warmup": warmup, "sparse": sparse, "recall": recall, "val_loss": val,
               "seconds": warmup["seconds"] + sparse["seconds"],
               "n_params": sum(p.numel() for p in model.parameters()),
               "n_indexer_params": sum(p.numel() for p in indexer_parameters(model))}
    return model, metrics


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", default="tiny_mla", help="MLA checkpoint name or path (default tiny_mla)")
    parser.add_argument("--out", default=None, help="output path (default lib/attnlab/data/tiny_dsa.pt)")
    parser.add_argument("--warmup-steps", type=int, default=None,
                        help=f"stage 1 steps (default {DSATrainConfig.warmup_steps}, "
                             f"with --quick {QUICK.warmup_steps})")
    parser.add_argument("--sparse-steps", type=int, default=None,
                        help=f"stage 2 steps (default {DSATrainConfig.sparse_steps}, "
                             f"with --quick {QUICK.sparse_steps})")
    parser.add_argument("--seed", type=int, default=DSATrainConfig.seed)
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads (default 1: the tiny model's matrices gain little from more)")
    parser.add_argument("--quick", action="store_true",
                        help=f"a tiny run to try the command ({QUICK.warmup_steps} + {QUICK.sparse_steps} steps of "
                             f"{QUICK.batch_size} x {QUICK.seq_len} tokens, seconds): writes a checkpoint only to "
                             "--out, never to lib/attnlab/data")
    args = parser.parse_args(argv)
    if args.quick and args.out and Path(args.out).resolve().is_relative_to(DATA_DIR.resolve()):
        parser.error(f"--quick must not write into {DATA_DIR} (the shipped checkpoints); choose another --out")
    torch.set_num_threads(check_positive_int("threads", args.threads))
    base = QUICK if args.quick else DSATrainConfig()
    steps = {name: getattr(base, name) if value is None else value
             for name, value in (("warmup_steps", args.warmup_steps), ("sparse_steps", args.sparse_steps))}
    cfg = dataclasses.replace(base, seed=args.seed, **steps)
    mla_model = load_checkpoint(args.source)
    model, metrics = run(mla_model, cfg, source=str(args.source), log=print, progress=True)
    metrics["threads"] = torch.get_num_threads()  # the run is reproducible for this seed and thread count
    path = Path(args.out) if args.out else None if args.quick else checkpoint_path("tiny_dsa")
    if path is not None:
        save_checkpoint(model, path, metrics)
    r, v = metrics["recall"], metrics["val_loss"]
    print(f"recall@{cfg.top_k}: untrained {r['untrained']:.3f}, after warm-up {r['after_warmup']:.3f}, "
          f"after sparse training {r['after_sparse']:.3f}")
    print(f"val loss: MLA dense {v['mla_dense']:.3f}, DSA dense {v['dsa_dense']:.3f}, "
          f"DSA sparse {v['dsa_sparse']:.3f} (untrained indexer {v['dsa_sparse_untrained']:.3f})")
    if path is None:
        print(f"quick run: {metrics['seconds']:.1f} s of training; no checkpoint written (--out PATH writes one)")
    else:
        print(f"saved {path} ({path.stat().st_size / 1e6:.1f} MB), {metrics['seconds']:.1f} s of training")


if __name__ == "__main__":
    main()
