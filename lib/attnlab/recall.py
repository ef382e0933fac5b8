"""What a fixed-size state loses: exact recall, measured with an associative-recall probe.

The task is multi-query associative recall (MQAR; Arora et al. 2023, "Zoology: Measuring and Improving Recall
in Efficient Language Models", §3): a sequence lists P key-value pairs, then asks for the values of some of
the keys again,

    (k_a, v_a)  (k_b, v_b)  ...  (k_p, v_p)   |   k_b -> v_b   k_p -> v_p   ...

and the model is scored on the value it predicts at each queried key. Here each pair is ONE token (its
embedding is the key's plus the value's) and each query one token (the key's plus a query marker), so a
single layer can store and look up: the probe measures how many bindings a layer holds, not how fast a tiny
model learns to pair neighbouring tokens (the induction circuit that Zoology's token-per-symbol form also
needs, and that a few hundred CPU steps do not reliably grow). A softmax layer can look the key up
in its cache however long the list; a linear layer must have written every pair into a d_k x d_v state, and
once P passes what that state can hold apart, answers blur.

:class:`RecallModel` is a small language model whose layers follow a pattern of ``"full"`` (softmax attention
with RoPE, :class:`attnlab.gqa.GroupedQueryAttention`), ``"linear"`` (Katharopoulos et al.) and ``"gdn"``
(Gated DeltaNet) layers (:data:`PATTERNS`: all full, all linear, all Gated DeltaNet, and Qwen3-Next's 3:1
hybrid). :func:`run_probe` trains each on the task for a few hundred steps per seed and scores it against P;
the course ships its results (``data/recall_probe.json``, :func:`load_probe`) so the chapter does not retrain.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass, field
from importlib import resources

import torch
import torch.nn.functional as F
from torch import nn

from attnlab._validate import (
    check_choice,
    check_int,
    check_positive_int,
    check_real,
    check_type,
)
from attnlab.attention import attention_matrix
from attnlab.gqa import AttentionConfig, GroupedQueryAttention
from attnlab.linear_attention import (
    LinearAttention,
    LinearAttentionConfig,
    delta_rule_recurrent,
    elu_feature_map,
    linear_attention_recurrent,
)

#: Layer patterns of the probe's models, bottom layer first: "full" softmax attention, "linear" attention,
#: "gdn" Gated DeltaNet. The hybrid puts its full layer last of four, as Qwen3-Next (full iff (i + 1) % 4 == 0).
PATTERNS: dict[str, tuple[str, ...]] = {
    "full": ("full",) * 4,
    "linear": ("linear",) * 4,
    "gated_deltanet": ("gdn",) * 4,
    "hybrid_3_1": ("gdn", "gdn", "gdn", "full"),
}

#: How the chapter names each pattern.
LABELS = {"full": "softmax attention (4 full)", "linear": "linear attention (4 linear)",
          "gated_deltanet": "Gated DeltaNet (4 GDN)", "hybrid_3_1": "hybrid 3:1 (3 GDN + 1 full)"}

#: The shipped records of :func:`run_probe`: "long" with :class:`ProbeSettings`' defaults (the chapter's main
#: result), "short" a third of the steps at a higher learning rate (how fast each model learns recall at all).
PROBE_FILES = {"long": "recall_probe.json", "short": "recall_probe_short.json"}


@dataclass(frozen=True)
class RecallTask:
    """The recall task: ``n_keys`` keys, ``n_values`` values; a sequence holds up to ``max_pairs`` pair tokens
    (left-padded to that many) followed by ``n_queries`` query tokens."""

    n_keys: int = 32
    n_values: int = 32
    max_pairs: int = 32
    n_queries: int = 16

    def __post_init__(self) -> None:
        check_positive_int("n_keys", self.n_keys)
        check_positive_int("n_values", self.n_values)
        check_positive_int("max_pairs", self.max_pairs)
        check_positive_int("n_queries", self.n_queries)
        if self.max_pairs > self.n_keys:
            raise ValueError(f"max_pairs={self.max_pairs} must be <= n_keys={self.n_keys}: keys are distinct")

    @property
    def seq_len(self) -> int:
        """max_pairs pair tokens (left-padded) + n_queries query tokens."""
        return self.max_pairs + self.n_queries


@dataclass(frozen=True)
class RecallBatch:
    """One batch of the task, every tensor (batch, seq_len): ``keys`` (0..n_keys-1), ``values`` (0..n_values-1,
    -1 at queries and padding), ``role`` (0 padding, 1 pair, 2 query), ``targets`` (the queried key's value at
    query positions, -100, ignored, elsewhere)."""

    keys: torch.Tensor
    values: torch.Tensor
    role: torch.Tensor
    targets: torch.Tensor


def recall_batch(task: RecallTask, n_pairs: int, batch: int,
                 generator: torch.Generator | None = None) -> RecallBatch:
    """One batch with ``n_pairs`` pairs per sequence (a :class:`RecallBatch`). Keys of a sequence are distinct;
    queried keys are drawn from its pairs (with repeats when n_queries > n_pairs)."""
    check_type("task", task, RecallTask)
    check_positive_int("n_pairs", n_pairs)
    check_positive_int("batch", batch)
    if n_pairs > task.max_pairs:
        raise ValueError(f"n_pairs={n_pairs} must be <= the task's max_pairs={task.max_pairs}")
    keys = torch.rand(batch, task.n_keys, generator=generator).argsort(-1)[:, :n_pairs]  # distinct keys
    values = torch.randint(0, task.n_values, (batch, n_pairs), generator=generator)
    asked = torch.randint(0, n_pairs, (batch, task.n_queries), generator=generator)  # which pairs are queried
    pad = task.max_pairs - n_pairs
    zeros = torch.zeros(batch, pad, dtype=torch.long)
    all_keys = torch.cat([zeros, keys, keys.gather(1, asked)], dim=1)
    all_values = torch.cat([zeros - 1, values, torch.full((batch, task.n_queries), -1)], dim=1)
    role = torch.cat([zeros, torch.ones_like(keys), torch.full((batch, task.n_queries), 2)], dim=1)
    targets = torch.cat([zeros - 100, torch.full_like(keys, -100), values.gather(1, asked)], dim=1)
    return RecallBatch(all_keys, all_values, role, targets)


@dataclass(frozen=True)
class RecallModelConfig:
    """A probe model: ``pattern`` (a key of :data:`PATTERNS`), width ``d_model``, ``n_heads`` heads of
    ``d_model // n_heads`` in every layer, an MLP of ``d_ff`` after each."""

    pattern: str = "full"
    d_model: int = 32
    n_heads: int = 2
    d_ff: int = 64
    chunk_size: int = 64

    def __post_init__(self) -> None:
        check_choice("pattern", self.pattern, tuple(PATTERNS))
        check_positive_int("d_model", self.d_model)
        check_positive_int("n_heads", self.n_heads)
        check_positive_int("d_ff", self.d_ff)
        check_positive_int("chunk_size", self.chunk_size)
        if self.d_model % self.n_heads:
            raise ValueError(f"d_model={self.d_model} is not divisible by n_heads={self.n_heads}")


class RecallModel(nn.Module):
    """Embedding (key + value + role) -> per layer (pre-norm): x + attention(norm(x)), x + MLP(norm(x)) -> norm ->
    logits over the values.
    The attention of layer i is ``PATTERNS[pattern][i]``: a :class:`~attnlab.gqa.GroupedQueryAttention`
    (MHA with RoPE) for "full", a :class:`~attnlab.linear_attention.LinearAttention` otherwise."""

    def __init__(self, config: RecallModelConfig, task: RecallTask) -> None:
        check_type("config", config, RecallModelConfig)
        check_type("task", task, RecallTask)
        super().__init__()
        self.config = c = config
        head_dim = c.d_model // c.n_heads

        def attention(kind: str) -> nn.Module:
            if kind == "full":
                return GroupedQueryAttention(AttentionConfig(c.d_model, c.n_heads))
            rule = "linear" if kind == "linear" else "gated_delta"
            return LinearAttention(LinearAttentionConfig(c.d_model, c.n_heads, head_dim, rule=rule,
                                                         chunk_size=c.chunk_size))

        self.embed_key = nn.Embedding(task.n_keys, c.d_model)
        self.embed_value = nn.Embedding(task.n_values + 1, c.d_model)  # index 0: no value (a query, padding)
        self.embed_role = nn.Embedding(3, c.d_model)
        self.attn = nn.ModuleList(attention(kind) for kind in PATTERNS[c.pattern])
        self.mlp = nn.ModuleList(nn.Sequential(nn.Linear(c.d_model, c.d_ff), nn.GELU(), nn.Linear(c.d_ff, c.d_model))
                                 for _ in PATTERNS[c.pattern])
        self.norms = nn.ModuleList(nn.LayerNorm(c.d_model) for _ in range(2 * len(PATTERNS[c.pattern]) + 1))
        self.head = nn.Linear(c.d_model, task.n_values, bias=False)

    def forward(self, batch: RecallBatch) -> torch.Tensor:
        """A :class:`RecallBatch` -> logits over the values (batch, seq, n_values)."""
        check_type("batch", batch, RecallBatch)
        x = self.embed_key(batch.keys) + self.embed_value(batch.values + 1) + self.embed_role(batch.role)
        for i, (attn, mlp) in enumerate(zip(self.attn, self.mlp, strict=True)):
            x = x + attn(self.norms[2 * i](x)).output
            x = x + mlp(self.norms[2 * i + 1](x))
        return self.head(self.norms[-1](x))


@dataclass(frozen=True)
class ProbeSettings:
    """How :func:`run_probe` trains and scores: ``steps`` of AdamW (``lr``, cosine decay after ``warmup``) on
    batches of ``batch`` sequences whose pair count is drawn uniformly from 1..max_pairs; then accuracy on
    ``eval_batches`` batches of each P in ``pairs``."""

    steps: int = 1500
    batch: int = 32
    lr: float = 3e-3
    warmup: int = 50
    eval_batches: int = 4
    pairs: tuple[int, ...] = (2, 4, 8, 16, 32)
    task: RecallTask = field(default_factory=RecallTask)
    model: RecallModelConfig = field(default_factory=RecallModelConfig)

    def __post_init__(self) -> None:
        check_positive_int("steps", self.steps)
        check_positive_int("batch", self.batch)
        check_real("lr", self.lr, 0.0, strict=True)
        check_int("warmup", self.warmup)
        check_positive_int("eval_batches", self.eval_batches)
        check_type("task", self.task, RecallTask)
        check_type("model", self.model, RecallModelConfig)
        for p in self.pairs:
            check_positive_int("pairs", p)
            if p > self.task.max_pairs:
                raise ValueError(f"pairs holds {p} > the task's max_pairs={self.task.max_pairs}")


def recall_accuracy(model: RecallModel, task: RecallTask, n_pairs: int, batches: int = 4, batch: int = 64,
                    seed: int = 1234) -> float:
    """Fraction of queried keys whose value the model predicts (argmax) correctly, on ``batches`` fresh batches
    of ``n_pairs`` pairs (a seeded generator apart from training's). Chance is 1 / n_values; a model that
    knows which values are in the sequence but not which key holds which scores about 1 / n_pairs."""
    check_type("model", model, RecallModel)
    check_positive_int("batches", batches)
    gen = torch.Generator().manual_seed(check_int("seed", seed))
    right = total = 0
    with torch.no_grad():
        for _ in range(batches):
            data = recall_batch(task, n_pairs, batch, gen)
            pred, targets = model(data).argmax(-1), data.targets
            asked = targets != -100
            right += int((pred[asked] == targets[asked]).sum())
            total += int(asked.sum())
    return right / total


def train_recall(settings: ProbeSettings, seed: int) -> tuple[RecallModel, list[float]]:
    """Train one probe model (``settings.model``) from ``seed``; returns it and the loss of every step."""
    check_type("settings", settings, ProbeSettings)
    check_int("seed", seed)
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    task = settings.task
    model = RecallModel(settings.model, task)
    opt = torch.optim.AdamW(model.parameters(), lr=settings.lr, weight_decay=0.01)

    def lr_at(step: int) -> float:  # linear warm-up, then cosine to 10%
        if step < settings.warmup:
            return (step + 1) / settings.warmup
        progress = (step - settings.warmup) / max(1, settings.steps - settings.warmup)
        return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress))

    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_at)
    losses = []
    for _ in range(settings.steps):
        n_pairs = int(torch.randint(1, task.max_pairs + 1, (1,), generator=gen))
        data = recall_batch(task, n_pairs, settings.batch, gen)
        loss = F.cross_entropy(model(data).flatten(0, 1), data.targets.flatten())
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        losses.append(float(loss.detach()))
    return model, losses


def run_probe(settings: ProbeSettings, patterns: tuple[str, ...] = tuple(PATTERNS),
              seeds: tuple[int, ...] = (0, 1, 2)) -> dict:
    """Train every pattern from every seed and score it at every P of ``settings.pairs``. Returns the record
    :func:`load_probe` reads: settings, and per pattern the accuracies (seed x P), their mean and spread
    (min, max), the final training loss of each run, its wall-clock seconds, and the model's cache numbers
    per sequence (the linear layers' fixed state, the full layers' per-token K and V)."""
    check_type("settings", settings, ProbeSettings)
    results = {}
    for pattern in patterns:
        check_choice("patterns", pattern, tuple(PATTERNS))
        s = ProbeSettings(**{**{f: getattr(settings, f) for f in settings.__dataclass_fields__},
                             "model": RecallModelConfig(**{**asdict(settings.model), "pattern": pattern})})
        acc, final_loss, seconds = [], [], []
        for seed in seeds:
            start = time.perf_counter()
            model, losses = train_recall(s, seed)
            seconds.append(round(time.perf_counter() - start, 1))
            acc.append([recall_accuracy(model, s.task, p, s.eval_batches) for p in s.pairs])
            final_loss.append(sum(losses[-20:]) / 20)
        by_p = list(zip(*acc, strict=True))
        results[pattern] = {
            "label": LABELS[pattern], "layers": list(PATTERNS[pattern]), "accuracy": acc,
            "mean": [sum(a) / len(a) for a in by_p], "min": [min(a) for a in by_p], "max": [max(a) for a in by_p],
            "final_loss": final_loss, "seconds": seconds,
            "parameters": sum(p.numel() for p in model.parameters()),
            **probe_cache_numbers(s.model, s.task.seq_len),
        }
    return {"settings": {"steps": settings.steps, "batch": settings.batch, "lr": settings.lr,
                         "warmup": settings.warmup, "eval_batches": settings.eval_batches,
                         "pairs": list(settings.pairs), "seeds": list(seeds), "task": asdict(settings.task),
                         "model": {k: v for k, v in asdict(settings.model).items() if k != "pattern"}},
            "results": results}


def probe_cache_numbers(config: RecallModelConfig, seq_len: int) -> dict[str, int]:
    """Numbers one sequence of ``seq_len`` tokens leaves in a probe model's caches: ``full_cache`` (2 x
    d_model per token in each full layer) and ``linear_state`` (each linear layer's fixed state, from
    :meth:`LinearAttentionConfig.state_numbers`)."""
    check_type("config", config, RecallModelConfig)
    check_positive_int("seq_len", seq_len)
    head_dim = config.d_model // config.n_heads
    full = linear = 0
    for kind in PATTERNS[config.pattern]:
        if kind == "full":
            full += 2 * config.d_model * seq_len
        else:
            rule = "linear" if kind == "linear" else "gated_delta"
            linear += LinearAttentionConfig(config.d_model, config.n_heads, head_dim, rule=rule).state_numbers()
    return {"full_cache": full, "linear_state": linear}


#: The softmax scale of :func:`written_recall`'s full-layer read: large enough that a unit key's own match
#: (q.k = 1) outweighs every other key (q.k < 1) by a factor exp(50 (1 - q.k)).
SHARP_SCALE = 50.0


def written_recall(rule: str, n_pairs: int, d_k: int, n_values: int = 32, trials: int = 200,
                   seed: int = 0) -> float:
    """The state's capacity without any training: write ``n_pairs`` random unit keys (d_k wide) with one-hot
    values (``n_values`` classes) into one head's state, read every key back, and count the reads whose
    largest entry is the right value. ``rule``: "linear" (:func:`attnlab.linear_attention.linear_attention_recurrent`,
    phi = elu + 1 with its normaliser) or "delta" (:func:`~attnlab.linear_attention.delta_rule_recurrent`,
    beta = 1, no gate) or "softmax" (a full layer: every pair cached, read with softmax attention at a sharp
    scale of ``SHARP_SCALE`` on the unit keys, :func:`attnlab.attention.attention_matrix`); the reads use the state
    (or cache) after the last write. Mean over ``trials`` random sets."""
    check_choice("rule", rule, ("linear", "delta", "softmax"))
    check_positive_int("n_pairs", n_pairs)
    check_positive_int("d_k", d_k)
    check_positive_int("n_values", n_values)
    check_positive_int("trials", trials)
    gen = torch.Generator().manual_seed(check_int("seed", seed))
    k = F.normalize(torch.randn(trials, 1, n_pairs, d_k, generator=gen, dtype=torch.float64), dim=-1)
    labels = torch.randint(0, n_values, (trials, n_pairs), generator=gen)
    v = F.one_hot(labels, n_values).to(torch.float64).unsqueeze(1)  # (trials, 1, P, n_values)
    if rule == "softmax":
        read, _ = attention_matrix(k, k, v, scale=SHARP_SCALE)  # every stored key looks itself up in the cache
    elif rule == "delta":
        _, S = delta_rule_recurrent(k, k, v, torch.ones(trials, 1, n_pairs, dtype=torch.float64))
        read = torch.einsum("bhde,bhpd->bhpe", S, k)  # S^T k_i for every stored key
    else:
        _, state = linear_attention_recurrent(k, k, v)
        fk = elu_feature_map(k)
        read = torch.einsum("bhde,bhpd->bhpe", state.S, fk)  # S^T phi(k_i); the normaliser does not move argmax
    return float((read[:, 0].argmax(-1) == labels).double().mean())


def load_probe(budget: str = "long") -> dict:
    """A shipped record of :func:`run_probe`: ``budget`` "long" (``attnlab/data/recall_probe.json``) or "short"
    (``recall_probe_short.json``), see :data:`PROBE_FILES`."""
    check_choice("budget", budget, tuple(PROBE_FILES))
    return json.loads(resources.files("attnlab").joinpath("data", PROBE_FILES[budget]).read_text())


def merge_probes(*probes: dict) -> dict:
    """One record from :func:`run_probe` records of the same settings run for different patterns (in parallel)."""
    if not probes or any(p["settings"] != probes[0]["settings"] for p in probes):
        raise ValueError("probes must be a non-empty list of run_probe records with equal settings")
    results = {}
    for p in probes:
        results.update(p["results"])
    return {"settings": probes[0]["settings"], "results": {k: results[k] for k in PATTERNS if k in results}}


if __name__ == "__main__":  # python -m attnlab.recall full gated_deltanet --out probe.json  (OMP_NUM_THREADS=1)
    # (the "short" record: ProbeSettings(steps=500, lr=1e-2))
    import argparse

    parser = argparse.ArgumentParser(description="Train and score the recall probe's models (see run_probe).")
    parser.add_argument("patterns", nargs="*", default=list(PATTERNS), choices=list(PATTERNS))
    parser.add_argument("--out", required=True, help="where to write the JSON record")
    args = parser.parse_args()
    torch.set_num_threads(1)
    record = run_probe(ProbeSettings(), tuple(args.patterns))
    with open(args.out, "w") as f:
        json.dump(record, f, indent=1)
