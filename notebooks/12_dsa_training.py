# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown] slideshow={"slide_type": "slide"}
# # Chapter 12 · DSA training
#
# *Video chapter at 27:44.*
#
# > **What you will learn:** how DeepSeek added an indexer to a trained model: a dense warm-up that distils
# > the attention into the indexer, then sparse training; both stages run on the tiny model.
# >
# > **What it assumes:** [chapters 10](10_deepseek_sparse_attention.ipynb) and
# > [11](11_quantization_and_rotation.ipynb); a training loop (loss, gradients, optimizer).
#
# Chapter 10's lightning indexer decides which $k$ tokens each query may read. Its decisions are only as
# good as its weights, and a freshly added indexer has random ones. DeepSeek did not train DeepSeek-V3.2
# from scratch: it took the finished MLA model DeepSeek-V3.1-Terminus, added an indexer to every layer,
# and trained on in two stages (the V3.2 tech report, "continued pre-training"):
#
# 1. **Dense warm-up.** Attention stays dense, everything except the indexer is frozen, and the indexer
#    learns to imitate the main attention.
# 2. **Sparse training.** Attention reads only the indexer's top-$k$; the whole model trains on the
#    language-model loss while the indexer keeps imitating the attention, now on the tokens it selected.
#
# This chapter does the same to the course's tiny MLA model, `tiny_mla`: it shows what an untrained
# indexer selects, writes out both losses, runs both stages live at a small scale, and then reads the
# results of the full-length run shipped as `tiny_dsa`.

# %% slideshow={"slide_type": "-"}
import matplotlib.pyplot as plt
import torch
from IPython.display import Markdown, display
from plotly.subplots import make_subplots

from attnlab import dsa_training as dt
from attnlab import evidence as E
from attnlab import evidence_plots as EP
from attnlab import figures, show_source, sizing
from attnlab.dsa import (
    DeepSeekSparseAttention,
    LightningIndexer,
    indexer_config_for,
    indexer_kl_loss,
    indexer_parameters,
    set_training_stage,
)
from attnlab.exercises import ch12
from attnlab.interactive import dsa_training as dsa_widgets
from attnlab.mla import MLAConfig
from attnlab.model import checkpoint_metrics, load_checkpoint
from attnlab.plots import COLORS, SCHEME_COLORS
from attnlab.tokenization import load_tokenizer
from attnlab.train import sample_batch, token_ids

torch.manual_seed(0)
torch.set_num_threads(1)  # the tiny model's matrices are too small to gain from more threads
mla_model = load_checkpoint("tiny_mla")  # float32, eval mode
tok = load_tokenizer()
cfg = mla_model.config
n_params_mla = sum(p.numel() for p in mla_model.parameters())
display(Markdown(
    f"The starting point is `tiny_mla`: {cfg.n_layers} layers of MLA with {cfg.n_heads} heads, latent "
    f"d_c = {cfg.kv_lora_rank}, RoPE key d_h^R = {cfg.qk_rope_head_dim}, d_model = {cfg.d_model}, "
    f"{n_params_mla:,} parameters, trained on Python's documentation to a validation loss of "
    f"{mla_model.metrics['val_loss']:.2f}."
))

# %% [markdown] slideshow={"slide_type": "subslide"}
# ### The idea, animated
#
# The chapter in one short animation. It plays here once the videos are rendered (`./course animations`);
# until then, and in static exports, the last frame stands in.

# %% slideshow={"slide_type": "-"}
from attnlab.media import show_animation

show_animation("DSATrainingScene")

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 1. A new indexer chooses at random
#
# `dsa_from_mla` builds a `TinyLM(attention="dsa")` and copies every weight of the MLA model into it:
# block $i$'s attention weights go to `blocks.i.attn.mla`, the embedding, norms and MLPs keep their
# names. Only the indexers are new, drawn from the model's usual random initialisation.

# %% slideshow={"slide_type": "-"}
show_source(dt.dsa_from_mla, start="state = {}", stop="missing, unexpected")

# %% [markdown] slideshow={"slide_type": "subslide"}
# With dense attention the DSA model *is* the MLA model: the indexer runs, but nothing reads its scores.
# With sparse attention, each query past position $k - 1$ reads only the $k$ tokens the indexer scores
# highest, and a random indexer scores them at random. We measure its choice with **top-$k$ recall**: for
# query $t$, take the $k$ tokens the true attention weighs most (summed over heads), $T_t$, and the $k$
# tokens the indexer selects, $S_t$; recall is $|T_t \cap S_t| / |T_t|$, averaged over the queries that
# must drop tokens and over the layers. A selection drawn uniformly at random finds $k / (t + 1)$ of $T_t$
# on average.

# %% slideshow={"slide_type": "-"}
LIVE = dt.DSATrainConfig(warmup_steps=40, sparse_steps=12, batch_size=4, eval_every=10, eval_batches=2)
K = LIVE.top_k
untrained = dt.dsa_from_mla(mla_model, index_topk=K, seed=LIVE.seed)
probe = dt.probe_ids(LIVE)  # (4, 128) fixed validation windows
with torch.no_grad():
    logits_mla = mla_model(probe)
    with dt.attention_mode(untrained, dense=True):
        logits_dense = untrained(probe)
same = torch.equal(logits_mla, logits_dense)
assert same

L = LIVE.seq_len
random_recall = sum(K / (t + 1) for t in range(K, L)) / (L - K)  # uniform choice, queries t >= k
recall_untrained = dt.topk_recall(untrained, probe, K)
EVAL = dt.DSATrainConfig()  # validation windows: the full run's (section 4), 4 batches of 16 x 128 tokens
val_mla = dt.validation_loss(mla_model, False, EVAL)
val_untrained = dt.validation_loss(untrained, True, EVAL)
display(Markdown(
    f"Dense, the DSA model's logits equal the MLA model's bit for bit: **{same}**. With k = {K} and windows "
    f"of {L} tokens, an untrained indexer finds **{recall_untrained:.0%}** of the true top-{K} "
    f"(a uniformly random choice: {random_recall:.0%}). Attending only to its choice raises the validation "
    f"loss from {val_mla:.3f} (dense) to **{val_untrained:.3f}** (sparse), on the same weights."
))

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 2. Stage 1: dense warm-up
#
# The indexer should keep the tokens the attention would have weighed most. So its target is the main
# attention itself. For query $t$, with $a_{t,i,s}$ the weight head $i$ gives token $s$, sum over the
# heads (DSA selects one set for all heads) and renormalise to a distribution:
#
# $$p_{t,s} = \frac{\sum_i a_{t,i,s}}{\sum_{s'} \sum_i a_{t,i,s'}} .$$
#
# The indexer's scores $I_{t,s}$ become a distribution through a softmax, and the loss is the
# Kullback-Leibler divergence from the target to it, summed over the queries:
#
# $$\mathcal{L}^I = \sum_t \mathrm{KL}\big(p_t \,\|\, \mathrm{Softmax}(I_t)\big)
#   = \sum_t \sum_{s \le t} p_{t,s} \log \frac{p_{t,s}}{\mathrm{Softmax}(I_t)_s} .$$
#
# It is zero exactly when the indexer's softmax reproduces $p_t$; then its top-$k$ is the attention's.
# The target is detached: this loss moves the indexer towards the attention, never the attention
# towards the indexer.

# %% slideshow={"slide_type": "-"}
show_source(indexer_kl_loss, start="p = attn_weights.detach()", stop="kl = ")

# %% [markdown] slideshow={"slide_type": "subslide"}
# In stage 1 the attention stays **dense**, so the model computes exactly what the MLA model computed,
# and every parameter outside the indexers is **frozen**. DeepSeek ran 1,000 steps at learning rate
# $10^{-3}$. `set_training_stage(model, "warmup")` sets both switches:

# %% slideshow={"slide_type": "-"}
show_source(set_training_stage, start="for layer in _dsa_layers(model):", stop="p.requires_grad_(")

# %% [markdown] slideshow={"slide_type": "subslide"}
# Here is the warm-up, live and small: a few dozen steps of 4 windows, from the same untrained indexers.

# %% slideshow={"slide_type": "-"}
model = dt.dsa_from_mla(mla_model, index_topk=K, seed=LIVE.seed)
before = {name: p.detach().clone() for name, p in model.named_parameters()}
warm = dt.warmup_indexer(model, LIVE)

changed = [name for name, p in model.named_parameters() if not torch.equal(p, before[name])]
indexer_names = {name for name, _ in model.named_parameters() if ".attn.indexer." in name}
assert changed and set(changed) <= indexer_names
n_indexer = sum(p.numel() for p in indexer_parameters(model))
n_all = sum(p.numel() for p in model.parameters())


def smooth(values, n=8):
    """Running mean over the last n values (fewer at the start)."""
    return [sum(values[max(0, i - n + 1): i + 1]) / len(values[max(0, i - n + 1): i + 1])
            for i in range(len(values))]


fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 3.6))
ax1.plot(warm["step"], warm["kl"], color=COLORS["index"], alpha=0.35, label="each step")
ax1.plot(warm["step"], smooth(warm["kl"]), color=COLORS["index"], label="running mean")
ax1.set(xlabel="warm-up step", ylabel="KL(p_t || Softmax(I_t)), nats per query", title="Stage 1 loss (live)")
ax2.plot(warm["eval_step"], warm["recall"], "o-", color=COLORS["index"], label="indexer")
ax2.axhline(random_recall, color=COLORS["muted"], ls="--", label="uniformly random choice")
ax2.set(xlabel="warm-up step", ylabel=f"top-{K} recall", ylim=(0, 1), title="Recall on fixed validation windows")
for ax in (ax1, ax2):
    ax.grid(alpha=0.3)
    ax.legend()
fig.tight_layout()
plt.show()
n_mean = LIVE.eval_every
display(Markdown(
    f"{LIVE.warmup_steps} steps changed {len(changed)} tensors, all of them in the indexers "
    f"({n_indexer:,} of the model's {n_all:,} parameters); every other weight is bit-identical. "
    f"The KL fell from {sum(warm['kl'][:n_mean]) / n_mean:.3f} (mean of the first {n_mean} steps) to "
    f"{sum(warm['kl'][-n_mean:]) / n_mean:.3f} (last {n_mean}), and recall rose "
    f"from {warm['recall'][0]:.0%} to **{warm['recall'][-1]:.0%}**."
))

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 3. Stage 2: sparse training
#
# Now the selection is switched on: query $t$ attends only to $S_t = \text{Top-}k_{s \le t}\, I_{t,s}$.
# The model trains on its usual next-token loss $\mathcal{L}_\text{LM}$, computed with sparse attention,
# so it adapts to seeing only $k$ tokens. The indexer keeps imitating the attention, but only on the
# tokens it selected (the attention's weights elsewhere are now zero):
#
# $$\mathcal{L}^I = \sum_t \mathrm{KL}\big(p_{t,S_t} \,\|\, \mathrm{Softmax}(I_{t,S_t})\big),$$
#
# with $p_{t,S_t}$ the summed attention restricted to $S_t$ and renormalised there.
#
# **Why detach the indexer's input.** The indexer reads the same hidden states as the attention. If the
# KL could flow back through them, it would also train the *model*, pushing its hidden states towards
# whatever makes the attention easy for the indexer to predict, rather than towards predicting the next
# token. DeepSeek cuts that path: the indexer's input is detached, so the indexer learns **only** from
# $\mathcal{L}^I$ and the rest of the model **only** from $\mathcal{L}_\text{LM}$. The other direction is
# cut by the selection itself: $\mathcal{L}_\text{LM}$ depends on the indexer only through *which* tokens
# are kept, and top-$k$ has no gradient, so the indexer is never trained to please the LM loss through
# its choice. DeepSeek ran 15,000 steps at learning rate $7.3 \times 10^{-6}$.

# %% slideshow={"slide_type": "-"}
show_source(DeepSeekSparseAttention.forward, start="x_index, q_input = x, self.query_input(x)",
            stop="index_w = self.indexer.head_weights")

# %% [markdown] slideshow={"slide_type": "subslide"}
# We can check where each loss goes: one batch in stage 2, and the gradient of each loss separately.

# %% slideshow={"slide_type": "-"}
set_training_stage(model, "sparse")
batch = sample_batch(token_ids("train"), 2, LIVE.seq_len, torch.Generator().manual_seed(0))
lm_loss, kl_loss = dt.sparse_losses(model, batch)
names = [name for name, _ in model.named_parameters()]
params = list(model.parameters())
grads = {"LM loss": torch.autograd.grad(lm_loss, params, retain_graph=True, allow_unused=True),
         "indexer KL": torch.autograd.grad(kl_loss, params, allow_unused=True)}
set_training_stage(model, "inference")


def group(name):
    if ".attn.indexer." in name:
        return "lightning indexers"
    return "MLA attention" if ".attn.mla." in name else "embedding, norms, MLPs"


groups = ["lightning indexers", "MLA attention", "embedding, norms, MLPs"]
reach = {(loss, g): False for loss in grads for g in groups}
for loss, gs in grads.items():
    for name, grad in zip(names, gs, strict=True):
        if grad is not None and bool(grad.abs().any()):
            reach[(loss, group(name))] = True
assert [reach[("LM loss", g)] for g in groups] == [False, True, True]
assert [reach[("indexer KL", g)] for g in groups] == [True, False, False]
rows = ["| parameters | gradient from the LM loss | gradient from the indexer KL |", "|---|---|---|"]
rows += [f"| {g} | {'yes' if reach[('LM loss', g)] else 'none'} | {'yes' if reach[('indexer KL', g)] else 'none'} |"
         for g in groups]
display(Markdown("\n".join(rows)))

# %% [markdown] slideshow={"slide_type": "subslide"}
# Because the two losses reach disjoint parameters, one backward pass of their sum trains each part on
# its own loss. `train_sparse` does that (and clips the two parts' gradients separately). Here it is,
# live, continuing from the warmed-up model above:

# %% slideshow={"slide_type": "-"}
sparse_live = dt.train_sparse(model, LIVE)
fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 3.4))
ax1.plot(sparse_live["step"], sparse_live["lm_loss"], "o-", color=SCHEME_COLORS["dsa"], ms=3)
ax1.set(xlabel="sparse step", ylabel="next-token loss", title="Stage 2: the model's LM loss, each batch (live)")
ax2.plot(sparse_live["step"], sparse_live["kl"], "o-", color=COLORS["index"], ms=3)
ax2.set(xlabel="sparse step", ylabel="KL over S_t, nats per query", title="Stage 2: the indexer's KL (live)")
for ax in (ax1, ax2):
    ax.grid(alpha=0.3)
fig.tight_layout()
plt.show()
display(Markdown(
    f"After {LIVE.sparse_steps} sparse steps at learning rate {LIVE.sparse_lr:g} the sparse validation loss "
    f"(on {LIVE.eval_batches} batches of {LIVE.batch_size} windows) went from "
    f"{sparse_live['val_loss_sparse'][0]:.3f} to {sparse_live['val_loss_sparse'][-1]:.3f}. "
    "A dozen steps on a few windows show the mechanics, not the result; the next section reads the "
    "full-length run."
))

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 4. The full-length run
#
# `python -m attnlab.dsa_training` runs both stages at the scale in `DSATrainConfig`'s defaults and ships
# the result as `tiny_dsa`, with its curves and measurements in the checkpoint's metrics. (It takes a
# few minutes of CPU, too long to repeat here.)

# %% slideshow={"slide_type": "-"}
dsa_model = load_checkpoint("tiny_dsa")
full = checkpoint_metrics("tiny_dsa")
FULL = dt.DSATrainConfig(**full["dsa_train"])
assert full["source"] == "tiny_mla" and dsa_model.config.index_topk == FULL.top_k
w, s = full["warmup"], full["sparse"]

fig = make_subplots(rows=1, cols=3, horizontal_spacing=0.08,
                    subplot_titles=[f"Stage 1: dense warm-up, lr {FULL.warmup_lr:g}",
                                    f"Stage 2: sparse training, lr {FULL.sparse_lr:g}", "Stage 2: the indexer's KL"])
step_hover = "step %{x}<br>%{y:.4f}<extra>%{fullData.name}</extra>"  # hover a point; drag to zoom a stretch
fig.add_scatter(x=w["step"], y=w["kl"], name="KL, each step", line=dict(color=COLORS["index"], width=1), opacity=0.35,
                hovertemplate=step_hover, row=1, col=1)
fig.add_scatter(x=w["step"], y=smooth(w["kl"], 10), name="KL, running mean", line_color=COLORS["index"],
                hovertemplate=step_hover, row=1, col=1)
fig.add_scatter(x=w["eval_step"], y=w["recall"], name=f"top-{FULL.top_k} recall", mode="lines+markers",
                line_color=COLORS["cache"], marker_size=5, hovertemplate=step_hover, row=1, col=1)  # both in [0, 1]
fig.add_scatter(x=s["eval_step"], y=s["val_loss_sparse"], name="DSA, sparse", mode="lines+markers",
                line_color=SCHEME_COLORS["dsa"], marker_size=5, hovertemplate=step_hover, row=1, col=2)
fig.add_scatter(x=[s["eval_step"][-1]], y=[full["val_loss"]["dsa_dense"]], name="DSA at the end, dense",
                mode="markers", marker=dict(symbol="x", size=11, color=SCHEME_COLORS["dsa"]),
                hovertemplate=step_hover, row=1, col=2)
fig.add_scatter(x=[s["eval_step"][0], s["eval_step"][-1]], y=[full["val_loss"]["mla_dense"]] * 2,
                name="tiny_mla, dense", mode="lines", line=dict(color=SCHEME_COLORS["mla"], dash="dash"),
                hovertemplate=step_hover, row=1, col=2)
fig.add_scatter(x=s["step"], y=s["kl"], name="KL over S_t, each step", line=dict(color=COLORS["index"], width=1),
                opacity=0.35, hovertemplate=step_hover, row=1, col=3)
fig.add_scatter(x=s["step"], y=smooth(s["kl"], 10), name="KL over S_t, running mean", line_color=COLORS["index"],
                hovertemplate=step_hover, row=1, col=3)
fig.update_xaxes(title_text="step")
fig.update_yaxes(title_text=f"KL (nats per query) · top-{FULL.top_k} recall", rangemode="tozero",
                 row=1, col=1)
fig.update_yaxes(title_text="validation loss", row=1, col=2)
fig.update_yaxes(title_text="KL over S_t, nats per query", row=1, col=3)
fig.update_layout(template="attnlab", height=420, legend=dict(orientation="h", y=-0.25, x=0))
figures.show(fig, "ch12-full-run")

# %% slideshow={"slide_type": "subslide"}
r, v = full["recall"], full["val_loss"]
rows = [
    "| model | attention | validation loss |", "|---|---|---|",
    f"| tiny_mla | dense | {v['mla_dense']:.3f} |",
    f"| DSA, untrained indexer | sparse (top-{FULL.top_k}) | {v['dsa_sparse_untrained']:.3f} |",
    f"| DSA after stage 1 | dense | {v['dsa_dense_after_warmup']:.3f} |",
    f"| DSA after stage 1 | sparse | {v['dsa_sparse_after_warmup']:.3f} |",
    f"| DSA after stage 2 (`tiny_dsa`) | dense | {v['dsa_dense']:.3f} |",
    f"| DSA after stage 2 (`tiny_dsa`) | sparse | {v['dsa_sparse']:.3f} |",
]
display(Markdown("\n".join(rows)))
assert v["dsa_dense_after_warmup"] == v["mla_dense"]  # stage 1 leaves the model itself untouched
gap = {name: v[f"dsa_sparse{name}"] - v[d] for name, d in
       (("_untrained", "mla_dense"), ("_after_warmup", "dsa_dense_after_warmup"), ("", "dsa_dense"))}
display(Markdown(
    f"Top-{FULL.top_k} recall on fixed validation windows: **{r['untrained']:.0%}** untrained, "
    f"**{r['after_warmup']:.0%}** after the warm-up, **{r['after_sparse']:.0%}** after sparse training. "
    f"What sparsity costs, sparse minus dense loss on the same weights: {gap['_untrained']:+.3f} with the "
    f"untrained indexer, {gap['_after_warmup']:+.3f} after stage 1, {gap['']:+.3f} after stage 2. "
    f"Stage 2 is also {FULL.sparse_steps} more training steps for the model, so comparing `tiny_dsa` with "
    "`tiny_mla` mixes two effects; dense against sparse on the same weights isolates the selection's."
))
mla_run = mla_model.metrics["train"]
epochs = mla_run["steps"] * mla_run["batch_size"] * mla_run["seq_len"] / token_ids("train").numel()
display(Markdown(
    f"(The training batches' own loss, {sum(s['lm_loss'][-25:]) / 25:.2f} over the last 25 steps, sits far below "
    f"the validation loss: `tiny_mla` had already read its training text about {epochs:.0f} times over, so only "
    "the validation split tells how well the model predicts text it has not seen.)"
))

# %% [markdown] slideshow={"slide_type": "subslide"}
# **Scale.** DeepSeek's stages read sequences of 128K tokens (131,072). The tiny run keeps the shape of
# the recipe (a short warm-up, a longer sparse stage at a much lower learning rate) at a scale a laptop
# runs in minutes.

# %% slideshow={"slide_type": "-"}
CONTEXT_128K = 128 * 1024
deepseek = {f"stage {i}": (st.steps, st.sequences_per_step, st.sequence_tokens, st.learning_rate)
            for i, st in enumerate(E.V32_TRAINING, start=1)}  # DeepSeek-V3.2-Exp report §2.1, attnlab.evidence
tiny = {"stage 1": (FULL.warmup_steps, FULL.batch_size, FULL.seq_len, FULL.warmup_lr),
        "stage 2": (FULL.sparse_steps, FULL.batch_size, FULL.seq_len, FULL.sparse_lr)}
rows = ["| | steps | sequences per step | tokens per sequence | tokens | learning rate |", "|---|---|---|---|---|---|"]
tokens = {}
for who, stages in (("DeepSeek-V3.2", deepseek), ("tiny_dsa", tiny)):
    for stage, (steps, batch_size, seq, lr) in stages.items():
        tokens[(who, stage)] = steps * batch_size * seq
        rows.append(f"| {who}, {stage} | {steps:,} | {batch_size} | {seq:,} | {tokens[(who, stage)]:,} | {lr:g} |")
display(Markdown("\n".join(rows)))
ds1, ds2 = tokens[("DeepSeek-V3.2", "stage 1")], tokens[("DeepSeek-V3.2", "stage 2")]
display(Markdown(
    f"DeepSeek's warm-up read {ds1 / 1e9:.1f}B tokens and its sparse stage {ds2 / 1e9:.1f}B, "
    f"{ds2 / ds1:.0f} times as many; the tiny run's stage 2 reads "
    f"{tokens[('tiny_dsa', 'stage 2')] / tokens[('tiny_dsa', 'stage 1')]:.0f} times its stage 1. The warm-up "
    f"is short because it trains {n_indexer / n_all:.1%} of the parameters (tiny model) on a target that "
    "is already there; the sparse stage must let the whole model get used to reading only k tokens."
))

# %% [markdown] slideshow={"slide_type": "subslide"}
# ### What the papers measured
#
# The tiny run can only show that the recipe trains an indexer. Whether those two stages leave the model as
# good as it was is DeepSeek's measurement: after the sparse stage and the same post-training as
# DeepSeek-V3.1-Terminus, DeepSeek-V3.2-Exp was scored on the same benchmarks (the report's Table 1, cited
# data in `attnlab.evidence`), grouped here as the table groups them:

# %% slideshow={"slide_type": "-"}
EP.category_gaps(E.V32_TABLE1, "dsa", "mla")
plt.tight_layout()
plt.show()
deltas = E.V32_TABLE1.deltas("dsa", "mla")
percent = [b for b in E.V32_TABLE1.benchmarks if b.percent]
by_category = {}
for b in percent:
    by_category.setdefault(b.category, []).append(deltas[b.name])
counted = ", ".join(f"{st.name} {st.tokens / 1e9:.1f}B (the report: {st.tokens_stated / 1e9:g}B)"
                    for st in E.V32_TRAINING)
display(Markdown(
    f"Steps × sequences × 128K tokens: {counted}. "
    "Per category, V3.2-Exp minus V3.1-Terminus: "
    + "; ".join(f"{c} {sum(v) / len(v):+.1f}" for c, v in by_category.items())
    + f" points (mean over all {len(percent)}: {sum(deltas[b.name] for b in percent) / len(percent):+.2f}). "
    "The report reads the drops in reasoning benchmarks as shorter answers, not weaker attention, and shows "
    "the reinforcement-learning curves of both models on BrowseComp and SWE Verified rising together (its "
    "Figure 2) as evidence that training with DSA is stable. One model pair, one lab's benchmarks: evidence "
    "that the sparse stage can keep quality, not a guarantee for every task."
))

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 5. Explore: what the indexer keeps
#
# Pick a layer and a query position in a real passage from the validation split (text the model never
# trained on). Above: the true attention $p_t$, summed over heads; below: the indexer's
# $\mathrm{Softmax}(I_t)$. Coloured bars are the $k$ tokens the indexer selects; red dots mark the
# attention's own top-$k$. Switch between the untrained indexer and the trained one (`tiny_dsa`), and
# move the query past position $k - 1$, where the choice starts to matter.

# %% slideshow={"slide_type": "-"}
passage = '''The simple form, "assert expression", is equivalent to

   if __debug__:
       if not expression: raise AssertionError

The extended form, "assert expression1, expression2", is equivalent to

   if __debug__:
       if not expression1: raise AssertionError(expression2)'''
trained_name, untrained_name = "trained (tiny_dsa)", "untrained (fresh indexer)"
untrained_full = dt.dsa_from_mla(mla_model, index_topk=FULL.top_k, seed=FULL.seed)
explorer = dsa_widgets.indexer_explorer({untrained_name: untrained_full, trained_name: dsa_model}, tok, passage)
explorer

# %% [markdown] slideshow={"slide_type": "subslide"}
# The same two indexers over every query of the passage: recall at each position, averaged over the
# layers.

# %% slideshow={"slide_type": "-"}
fig, ax = plt.subplots(figsize=(11, 3.4))
for name, colour in ((untrained_name, COLORS["muted"]), (trained_name, COLORS["index"])):
    curve = dsa_widgets.recall_curve(explorer.probes[name])
    ax.plot(range(len(curve)), curve.tolist(), color=colour, label=name)
n_tok = explorer.probes[trained_name].seq_len
ax.plot(range(FULL.top_k, n_tok), [FULL.top_k / (t + 1) for t in range(FULL.top_k, n_tok)], ls="--",
        color=COLORS["muted"], label="uniformly random choice")
ax.axvline(FULL.top_k - 0.5, color="black", lw=0.8)
ax.text(FULL.top_k, 0.04, f"  k = {FULL.top_k}: from here on tokens are dropped", fontsize=9)
ax.set(xlabel="query position t", ylabel=f"top-{FULL.top_k} recall", ylim=(0, 1.05),
       title="How much of the attention's top-k each indexer finds, along the passage")
ax.grid(alpha=0.3)
ax.legend(loc="lower left")
fig.tight_layout()
plt.show()
tail = {name: float(dsa_widgets.recall_curve(explorer.probes[name])[FULL.top_k:].mean())
        for name in (untrained_name, trained_name)}
display(Markdown(
    f"Over the {n_tok - FULL.top_k} queries of the passage that must drop tokens, the untrained indexer "
    f"finds {tail[untrained_name]:.0%} of the attention's top-{FULL.top_k}, the trained one "
    f"**{tail[trained_name]:.0%}**."
))

# %% [markdown] slideshow={"slide_type": "slide"}
# ## What it costs
#
# **Training.** The indexer is small next to the model it serves. We count its parameters in the tiny
# model and in DeepSeek-V3.2 (built on PyTorch's `meta` device: shapes without memory).

# %% slideshow={"slide_type": "-"}
spec = sizing.MODELS["deepseek-v3.2"]
Q_LORA_RANK = 1536  # DeepSeek-V3's query latent d'_c (config_671B.json, q_lora_rank)
v32_mla = MLAConfig(d_model=spec.hidden_size, n_heads=spec.n_heads, kv_lora_rank=spec.kv_lora_rank,
                    qk_nope_head_dim=spec.head_dim, qk_rope_head_dim=spec.qk_rope_head_dim, q_lora_rank=Q_LORA_RANK)
v32_indexer_cfg = indexer_config_for(v32_mla, spec.index_n_heads, spec.index_head_dim, spec.index_topk)
with torch.device("meta"):
    v32_indexer = LightningIndexer(v32_indexer_cfg)
per_layer_v32 = sum(p.numel() for p in v32_indexer.parameters())
indexer_v32 = per_layer_v32 * spec.n_layers
tiny_indexer = sum(p.numel() for p in indexer_parameters(dsa_model))
tiny_all = sum(p.numel() for p in dsa_model.parameters())
display(Markdown(
    f"| | indexer parameters | all parameters | share |\n|---|---|---|---|\n"
    f"| tiny_dsa | {tiny_indexer:,} | {tiny_all:,} | {tiny_indexer / tiny_all:.1%} |\n"
    f"| {spec.name} | {indexer_v32:,} ({per_layer_v32:,} per layer) | {spec.n_params:,} | "
    f"{indexer_v32 / spec.n_params:.2%} |\n\n"
    f"Stage 1 updates only that {indexer_v32 / spec.n_params:.2%} of {spec.name}'s weights: each step runs "
    "the frozen model forward (to get the attention it imitates) but back-propagates through the indexers "
    f"alone, over {ds1 / 1e9:.1f}B tokens. Stage 2 is ordinary training of everything, and it is where the "
    f"tokens go: {ds2 / 1e9:.1f}B of the {(ds1 + ds2) / 1e9:.1f}B, {ds2 / (ds1 + ds2):.1%}."
))

# %% [markdown] slideshow={"slide_type": "subslide"}
# **Memory at inference.** The indexer caches one key of width $d^I$ per token and layer, shared by all
# index heads (`attnlab.sizing.indexer_elements_per_token`), next to MLA's latent and RoPE key. DeepSeek
# stores both in FP8 with float32 scales (chapter 11); the course's default counts every number in bfloat16.

# %% jupyter={"source_hidden": true} slideshow={"slide_type": "-"} tags=["hide-input"]
idx_elems = sizing.indexer_elements_per_token(spec, per_layer=True)
mla_elems = sizing.kv_elements_per_token(spec, per_layer=True)
fp8 = "deepseek-fp8"  # FlashMLA's 656 B MLA entry and the 132 B index key (chapter 11)
with_index = {f: sizing.kv_cache_bytes(spec, CONTEXT_128K, cache_format=None if f == "bfloat16" else f)
              for f in ("bfloat16", fp8)}
without = {f: sizing.kv_cache_bytes("deepseek-v3", CONTEXT_128K, cache_format=None if f == "bfloat16" else f)
           for f in ("bfloat16", fp8)}  # the same MLA, no indexer
tiny_idx, tiny_mla_elems = dsa_model.config.indexer_config().cache_elements_per_token(), \
    dsa_model.config.mla_config().cache_elements_per_token()
display(Markdown(
    f"Per token and layer, {spec.name} caches {mla_elems} numbers for MLA (d_c + d_h^R) and {idx_elems} for "
    f"the indexer ({idx_elems / mla_elems:.0%} more numbers; the tiny model: {tiny_idx} beside {tiny_mla_elems}). "
    f"In bfloat16 a {CONTEXT_128K:,}-token sequence takes {sizing.format_bytes(without['bfloat16'])} over "
    f"{spec.n_layers} layers without the indexer and {sizing.format_bytes(with_index['bfloat16'])} with it "
    f"(+{with_index['bfloat16'] / without['bfloat16'] - 1:.1%}); in DeepSeek's FP8 layout "
    f"{sizing.format_bytes(without[fp8])} and {sizing.format_bytes(with_index[fp8])} "
    f"(+{with_index[fp8] / without[fp8] - 1:.1%}). DSA does not shrink the cache; it shrinks how much of it "
    "each query reads."
))

# %% [markdown] slideshow={"slide_type": "slide"}
# ## Exercises
#
# Each exercise has a check: replace `None` with your answer and run the check cell. A wrong answer raises
# an error with a hint; worked solutions are in `notebooks/solutions/ch12.py`. Try first.
#
# **Exercise 1.** Write stage 2's loss. `selected_kl(attn_weights, index_scores, selected)` gets the
# attention weights `(batch, heads, seq, keys)` (dense: nonzero on every visible key), the index scores
# `(batch, seq, keys)` (`-inf` on future keys) and each query's selected positions `(batch, seq, k)`
# (`-1` where a query has fewer than $k$ tokens). Return
# $\sum_t \mathrm{KL}(p_{t,S_t} \,\|\, \mathrm{Softmax}(I_{t,S_t}))$ summed over batch and queries: $p_t$
# summed over heads, kept on $S_t$ and renormalised there, and detached. `attnlab.dsa.selection_mask` turns
# `selected` into a boolean mask; `torch.xlogy(p, p)` computes $p \log p$ with $0 \log 0 = 0$;
# `indexer_kl_loss` is off limits (the check notices). Then set `answer_selected_kl = selected_kl`.

# %% slideshow={"slide_type": "-"}
def selected_kl(attn_weights, index_scores, selected):
    """sum_t KL(p_{t,S_t} || Softmax(I_{t,S_t})) as a 0-dim tensor."""
    # allowed = visible and selected; p = summed attention on allowed keys, renormalised, detached;
    # log q = log_softmax of the scores over the allowed keys; sum p log p - p log q
    ...


answer_selected_kl = None

# %% slideshow={"slide_type": "-"}
print(ch12.check_selected_kl(answer_selected_kl))

# %% [markdown] slideshow={"slide_type": "subslide"}
# **Exercise 2.** What the detach prevents. Take `ch12.exercise_model()` (a two-layer DSA model), put it in
# stage 2 with `set_training_stage(model, "sparse")`, then undo the detach in every layer
# (`block.attn.detach_indexer_input = False`). Run it on `ch12.exercise_ids()`, back-propagate
# `attnlab.dsa.indexer_loss(model)` alone, and collect the names of the parameters whose gradient is not
# zero. Which parts of the model would the indexer's KL train without the detach? Give a set of names.

# %% slideshow={"slide_type": "-"}
answer_kl_reach = None

# %% slideshow={"slide_type": "-"}
print(ch12.check_kl_reach(answer_kl_reach))

# %% [markdown] slideshow={"slide_type": "subslide"}
# **Exercise 3 (predict, then run).** A fresh indexer gives every one of a query's $k$ = 2,048 selected tokens
# the same score, while the main attention of that query sits entirely on one of them. What is stage 2's loss,
# $\mathrm{KL}(p_{t,S_t} \,\|\, \mathrm{Softmax}(I_{t,S_t}))$, for that query? Write your guess first; the check
# cell computes it with `indexer_kl_loss`.

# %% slideshow={"slide_type": "-"}
prediction_flat_kl = None  # a number, in nats

# %% slideshow={"slide_type": "-"}
print(ch12.check_prediction_flat_kl(prediction_flat_kl))

# %% [markdown] slideshow={"slide_type": "slide"}
# ## Summary
#
# * A new indexer starts with random weights, and sparse attention with a random selection drops tokens
#   the model needs. DeepSeek-V3.2 therefore trained its indexers from a finished MLA model in two stages.
# * **Dense warm-up**: attention stays dense, the model is frozen, and each indexer minimises
#   $\sum_t \mathrm{KL}(p_t \,\|\, \mathrm{Softmax}(I_t))$ against the attention summed over heads.
#   The model's outputs do not change; the indexer's recall rises.
# * **Sparse training**: attention reads the top-$k$; the model learns from the LM loss, the indexer from
#   the KL over its selected set. Detaching the indexer's input keeps the KL out of the model, and top-$k$
#   keeps the LM loss out of the indexer.
# * The indexer is a small fraction of the parameters and of the training tokens; at inference it adds a
#   small per-token key to the cache, and in exchange each query reads $k$ cached tokens instead of all.
