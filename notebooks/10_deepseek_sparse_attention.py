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
# # Chapter 10 · DeepSeek Sparse Attention (DSA)
#
# *Video chapter at 22:18.*
#
# > **What you will learn:** DeepSeek Sparse Attention: the lightning indexer, top-k selection, sparse MLA
# > over the selected tokens, and the context length where it starts to pay.
# >
# > **What it assumes:** [chapters 7 to 9](07_multi_head_latent_attention.ipynb): MLA, absorption and
# > decoupled RoPE.
#
# Multi-head latent attention (chapters 7 to 9) shrank what each token leaves in the cache to 576 numbers
# per layer. It did not change **how many** cached tokens a query reads: every decoded token still
# attends to all $L$ tokens before it, in every layer, so a decode step costs $O(L)$ and a prefill of
# $L$ tokens $O(L^2)$. At 128K tokens of context that is most of the work.
#
# **DeepSeek Sparse Attention** (DSA, in DeepSeek-V3.2-Exp, released on September 29, 2025) keeps MLA
# and lets each query attend to only $k = 2048$ of the tokens before it. A small, cheap scorer, the
# **lightning indexer**, picks them. This chapter builds the indexer, runs its top-$k$ selection on the
# tiny model's attention over real text, checks that sparse MLA over the gathered tokens is exactly MLA
# restricted to them, and counts where the savings start and how large they get, to judge a popular
# summary of DSA: that it "cut compute costs and API pricing by 50%".

# %% slideshow={"slide_type": "-"}
import matplotlib.pyplot as plt
import torch
from IPython.display import Markdown, display

from attnlab import corpus, dsa, factcheck, figures, show_source, sizing
from attnlab import evidence as E
from attnlab import evidence_plots as EP
from attnlab.dsa import (
    LightningIndexer,
    crossover_context,
    gather_tokens,
    layer_cost,
    prefill_switch_context,
    selection_mask,
    topk_indices,
)
from attnlab.exercises import ch10
from attnlab.interactive import dsa as dsa_widgets
from attnlab.interactive.attention import layer_input, token_labels
from attnlab.plots import COLORS, SCHEME_COLORS
from attnlab.tokenization import load_tokenizer

torch.manual_seed(0)
torch.set_num_threads(1)  # the tiny model's matrices are too small to gain from more threads
model, source = dsa_widgets.tiny_dsa_model()  # float32, eval mode
tok = load_tokenizer()
cfg = model.config
trained = source == dsa_widgets.TINY_DSA
v32 = sizing.MODELS["deepseek-v3.2"]

where = ("`tiny_dsa`: the tiny MLA model `tiny_mla` with a lightning indexer added to every layer and "
         "trained in DeepSeek's two stages (section 2)" if trained else
         "`tiny_mla`'s weights with a lightning indexer added to every layer. **Its indexers are untrained** "
         "(random weights), so their choices below show the mechanism, not a learned selection")
display(Markdown(
    f"The model is {where}. It has {cfg.n_layers} layers of MLA with {cfg.n_heads} heads, latent d_c = "
    f"{cfg.kv_lora_rank} and RoPE key d_h^R = {cfg.qk_rope_head_dim}; each indexer has H^I = "
    f"{cfg.index_n_heads} heads of width d^I = {cfg.index_head_dim} and keeps k = {cfg.index_topk} tokens "
    f"per query. {v32.name} has H^I = {v32.index_n_heads}, d^I = {v32.index_head_dim}, k = {v32.index_topk:,}."
))

# %% [markdown] slideshow={"slide_type": "subslide"}
# ### The idea, animated
#
# The chapter in one short animation. It plays here once the videos are rendered (`./course animations`);
# until then, and in static exports, the last frame stands in.

# %% slideshow={"slide_type": "-"}
from attnlab.media import show_animation

show_animation("DSAScene")

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 1. The problem: every query still reads every token
#
# In MLA's absorbed form (chapter 8) a decoded token $t$ scores each cached latent $c^{KV}_s$ and RoPE
# key $k^R_s$ with every head and mixes the latents:
#
# $$o_{t,i} = W^{UV}_i \sum_{s \le t} \operatorname{softmax}_s\!\left(
#   \frac{\tilde q_{t,i} \cdot c^{KV}_s + q^R_{t,i} \cdot k^R_s}{\sqrt{d_h + d_h^R}}\right) c^{KV}_s .$$
#
# The sum runs over **all** $s \le t$. DSA replaces it by a sum over a set $S_t$ of at most $k$ tokens
# that the indexer picks:
#
# $$S_t = \operatorname*{Top-}k_{\,s \le t}\; I_{t,s}, \qquad |S_t| = \min(k,\, t + 1), \qquad
#   u_t = \operatorname{MLA}\bigl(h_t,\ \{c^{KV}_s, k^R_s : s \in S_t\}\bigr).$$

# %% jupyter={"source_hidden": true} slideshow={"slide_type": "-"} tags=["hide-input"]
L128k = 131_072
c128 = layer_cost(v32, L128k)  # one layer of DeepSeek-V3.2, top-k 2048; FLOPs count 2 per multiply-add
display(Markdown(
    f"For {v32.name}, one decoded token at {L128k:,} tokens of context costs dense MLA "
    f"**{c128['decode_flops_dense'] / 1e9:.1f} GFLOP and {sizing.format_bytes(c128['decode_bytes_dense'])} of "
    f"cache reads per layer**, {c128['decode_flops_dense'] * v32.n_layers / 1e12:.2f} TFLOP and "
    f"{sizing.format_bytes(c128['decode_bytes_dense'] * v32.n_layers)} over its {v32.n_layers} layers; the "
    f"prefill of those {L128k:,} tokens costs {c128['prefill_flops_dense'] * v32.n_layers / 1e15:.0f} PFLOP of "
    f"attention. With DSA, attention reads {c128['selected']:,} tokens per query instead of {L128k:,}."
))

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 2. The lightning indexer
#
# The indexer must be much cheaper than the attention it prunes, or nothing is gained. Its score for
# query token $t$ and an earlier token $s$ is
#
# $$q^I_{t,j} = W^{IQ}_j\, c^Q_t, \qquad k^I_s = \operatorname{LayerNorm}(W^{IK} h_s), \qquad
#   w^I_{t,j} = (W^{IW} h_t)_j,$$
#
# $$I_{t,s} = \sum_{j=1}^{H^I} w^I_{t,j}\; \operatorname{ReLU}\!\left(q^I_{t,j} \cdot k^I_s\right).$$
#
# * **The index query comes from MLA's query latent** $c^Q_t$ (1536 wide in DeepSeek-V3.2), which the
#   layer computes anyway. The tiny model has no query latent, so its index query is projected from
#   $h_t$ itself.
# * **One index key per token**, shared by all $H^I$ index heads, like multi-query attention (chapter 5):
#   only $d^I = 128$ numbers per token and layer go into the cache.
# * **Per-token, per-head weights** $w^I_{t,j}$, computed from the query token: each query decides how
#   much each index head's opinion counts.
# * **ReLU instead of softmax**, chosen for throughput: each score stands alone, with no exponentials and
#   no normalization over $s$; negative matches are simply cut to zero.
#
# DeepSeek's code also scales $I$ by $(H^I)^{-1/2}$ (on the weights) and $(d^I)^{-1/2}$. The library's
# `index_scores` (which `LightningIndexer.score` calls, then masks the future) is the formula as one matmul
# (every index head's query against the shared keys) and a weighted sum over the heads. (A decode step on a
# CPU runs the same formula as one fused C loop over the keys, `attnlab.fused`; chapter 14 times both.)

# %% slideshow={"slide_type": "-"}
show_source(dsa._index_scores_matmul, start="logits = ")  # index_scores checks its input, then runs this

# %% [markdown] slideshow={"slide_type": "subslide"}
# The keys are projected, normalized, rotated by RoPE and then passed through `prepare` (the Hadamard
# rotation and FP8 of chapter 11):

# %% slideshow={"slide_type": "-"}
show_source(LightningIndexer.keys, start='"""k^I', stop="return self.prepare")

# %% [markdown] slideshow={"slide_type": "subslide"}
# ### RoPE in the indexer: halves, not interleaved
#
# The first $d_h^R$ coordinates of $q^I$ and $k^I$ are rotated with the main attention's RoPE frequencies,
# but the pairs are **halves**, $(i,\ i + d_h^R/2)$, while MLA itself rotates **interleaved** pairs
# $(2i,\ 2i+1)$. DeepSeek's first release of the V3.2-Exp inference code rotated the indexer interleaved
# too; in November 2025 it corrected `Indexer.forward` to `interleaved=False` ("rope in indexer is not
# interleaved"), and vLLM and SGLang followed. The two pairings rotate different coordinates together,
# so a model trained with one and run with the other scores with the wrong geometry.

# %% slideshow={"slide_type": "-"}
show_source(LightningIndexer.rope, start="x_rope, x_pass = ", stop="return torch.cat")

# %% slideshow={"slide_type": "subslide"}
val_ids = tok.encode(corpus.load_text("val"))
windows = torch.tensor([val_ids[i : i + cfg.max_seq_len] for i in (0, 4000, 8000, 12000)])  # (4, 256)
K_MODEL = cfg.index_topk
kept = []
with torch.no_grad():
    for layer in range(cfg.n_layers):
        attn = model.blocks[layer].attn
        x = layer_input(model, windows, layer)  # (4, 256, d_model)
        halves = dsa_widgets.index_scores(attn, x, interleaved=False)
        interleaved = dsa_widgets.index_scores(attn, x, interleaved=True)
        q_input = None if attn.config.q_lora_rank is None else attn.query_input(x)
        torch.testing.assert_close(halves, attn.indexer(x, q_input))  # halves is what the indexer computes
        same = selection_mask(topk_indices(halves, K_MODEL), x.shape[1]) & selection_mask(
            topk_indices(interleaved, K_MODEL), x.shape[1])
        kept.append(float(same[:, K_MODEL:].sum() / (same.shape[0] * (same.shape[1] - K_MODEL) * K_MODEL)))
display(Markdown(
    f"On 4 windows of {cfg.max_seq_len} validation tokens, running the {'trained' if trained else 'untrained'} "
    f"indexers with interleaved pairs instead of halves keeps only "
    f"{', '.join(f'{k:.0%}' for k in kept)} of the top-{K_MODEL} selections (layers 0 to {cfg.n_layers - 1}, "
    f"queries from position {K_MODEL} on, which must drop tokens); the rest of each selection changes."
))

# %% [markdown] slideshow={"slide_type": "subslide"}
# ### How the indexer is trained
#
# DeepSeek-V3.2-Exp was not trained from scratch: it is DeepSeek-V3.1-Terminus with an indexer added to
# every layer. The indexer learns to imitate the main attention $a_{t,i,s}$ (head $i$), summed over heads
# and normalized, $p_{t} = \sum_i a_{t,i,:} / \lVert \sum_i a_{t,i,:} \rVert_1$:
#
# * **stage 1, dense warm-up**: attention stays dense, everything but the indexer is frozen, and the
#   indexer minimizes $\sum_t \operatorname{KL}\bigl(p_t \,\Vert\, \operatorname{softmax}(I_{t,:})\bigr)$
#   (1000 steps, 2.1B tokens);
# * **stage 2, sparse training**: attention reads only $S_t$; the KL is taken over $S_t$ alone, the
#   indexer's input is detached so it learns only from the KL, and the model learns from the language-model
#   loss (15,000 steps, 943.7B tokens).
#
# The course's `attnlab.dsa_training` runs the same two stages on the tiny model, scaled down to minutes.

# %% slideshow={"slide_type": "-"}
record = getattr(model, "metrics", {})
losses, recall = record.get("val_loss", {}), record.get("recall", {})
steps = record.get("dsa_train", {})
needed = {"mla_dense", "dsa_sparse_untrained", "dsa_sparse_after_warmup", "dsa_sparse"}
if trained and needed <= set(losses) and {"untrained", "after_sparse"} <= set(recall) and steps:
    display(Markdown(
        f"`tiny_dsa` went through {steps['warmup_steps']} warm-up steps and {steps['sparse_steps']} sparse steps "
        f"(k = {steps['top_k']}, windows of {steps['seq_len']} tokens). Its stored record, validation loss with "
        f"every query reading only its top {steps['top_k']}: {losses['dsa_sparse_untrained']:.3f} with the "
        f"untrained indexers, {losses['dsa_sparse_after_warmup']:.3f} after the warm-up, "
        f"{losses['dsa_sparse']:.3f} after both stages, against {losses['mla_dense']:.3f} for the dense MLA model "
        f"it started from. The share of the true attention's top-{steps['top_k']} that the indexer finds rose "
        f"from {recall['untrained']:.0%} to {recall['after_sparse']:.0%}."
    ))
else:
    display(Markdown("This model's indexers have not been trained, so it carries no training record."))

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 3. Top-k selection on real text
#
# Each query keeps the $\min(k, t + 1)$ highest-scoring tokens among those it may see; future tokens have
# score $-\infty$ and are never chosen. Early queries see fewer than $k$ tokens and keep all of them, so
# DSA equals dense attention there.

# %% slideshow={"slide_type": "-"}
show_source(dsa._topk, start="k = min(top_k, t)", stop="return order.masked_fill")  # topk_indices, checked

# %% [markdown] slideshow={"slide_type": "subslide"}
# Here is one layer of the tiny model on a sentence from the validation text, with $k = 8$ so that the
# choice is visible. Left: the layer's dense attention (mean over heads), with the tokens the indexer
# selects for each query outlined. Right: what DSA computes, attention over the selected tokens only.

# %% slideshow={"slide_type": "-"}
text = corpus.load_text("val")
sentence = text[text.index("Assert statements are"):][:400]
ids = torch.tensor([tok.encode(sentence)[:36]])  # (1, 36)
T = ids.shape[1]
K_SHOW, LAYER = 8, cfg.n_layers - 1
labels = token_labels(tok, ids[0].tolist())
with torch.no_grad():
    attn = model.blocks[LAYER].attn
    x = layer_input(model, ids, LAYER)  # (1, T, d_model)
    with attn.using(top_k=T):  # every token selected: dense MLA
        dense_w = attn(x, return_weights=True).weights
    with attn.using(top_k=K_SHOW):
        sparse = attn(x, return_weights=True)  # .weights: zero off the selected set; .selection: the choice
selected = selection_mask(sparse.selection.indices, T)[0]  # (T, T) boolean
dense_mean, sparse_mean = dense_w[0].mean(dim=0), sparse.weights[0].mean(dim=0)  # (T, T)
assert torch.equal(selected.sum(-1), torch.clamp(torch.arange(T) + 1, max=K_SHOW))

# row 0 puts 1.0 on its only key: the colour scale tops out at the largest weight of the other rows
maps = {"dense": dsa_widgets.selection_figure(dense_mean, selected, labels, zmax=float(dense_mean[1:].max()),
                                              title=f"layer {LAYER}: dense attention, indexer's top-{K_SHOW} outlined"),
        "DSA": dsa_widgets.selection_figure(sparse_mean, selected, labels, zmax=float(sparse_mean[1:].max()),
                                            title=f"layer {LAYER}: DSA, attention over the top-{K_SHOW} only")}
figures.show(figures.choice_figure(maps), "ch10-dsa-selection")  # hover a cell: the token pair and its weight

# %% jupyter={"source_hidden": true} slideshow={"slide_type": "subslide"} tags=["hide-input"]
captured_here = dsa_widgets.attention_captured(dense_w[0], selected)[K_SHOW:]  # queries that had to choose
recent_here = dsa_widgets.attention_captured(dense_w[0], dsa_widgets.recent_selection(T, K_SHOW))[K_SHOW:]
display(Markdown(
    f"Every query from position {K_SHOW - 1} on keeps exactly {K_SHOW} tokens; the earlier ones keep all they "
    f"see. For the queries that must drop tokens (from position {K_SHOW} on), the outlined cells hold on average "
    f"**{captured_here.mean():.0%}** of the dense attention of layer {LAYER}; the {K_SHOW} most recent tokens "
    f"would hold {recent_here.mean():.0%}."
))

# %% [markdown] slideshow={"slide_type": "subslide"}
# One sentence is a small sample. Over the 4 validation windows of section 2, with the model's own
# $k = $ `index_topk`, we measure for every layer the share of each query's dense attention that its
# selected tokens hold, against two simple rules: the $k$ most recent tokens, and $k$ tokens drawn at
# random (which hold $k / (t + 1)$ on average).

# %% slideshow={"slide_type": "-"}
share = {"indexer": [], "recent": [], "random": []}
S = windows.shape[1]
later = torch.arange(S) >= K_MODEL  # queries that see more than k tokens
with torch.no_grad():
    for layer in range(cfg.n_layers):
        attn = model.blocks[layer].attn
        x = layer_input(model, windows, layer)
        with attn.using(top_k=S):
            dense_w = attn(x, return_weights=True).weights  # (4, h, S, S)
        with attn.using(top_k=K_MODEL):
            chosen = selection_mask(attn(x).selection.indices, S)  # (4, S, S)
        share["indexer"].append(float(torch.stack([dsa_widgets.attention_captured(dense_w[b], chosen[b])[later]
                                                   for b in range(4)]).mean()))
        share["recent"].append(float(torch.stack([dsa_widgets.attention_captured(
            dense_w[b], dsa_widgets.recent_selection(S, K_MODEL))[later] for b in range(4)]).mean()))
        share["random"].append(float((K_MODEL / (torch.arange(S)[later] + 1.0)).mean()))

fig, ax = plt.subplots(figsize=(7.5, 3.6))
width = 0.27
for i, (name, colour) in enumerate((("indexer", COLORS["index"]), ("recent", COLORS["muted"]),
                                    ("random", "#cccccc"))):
    xs = [layer + (i - 1) * width for layer in range(cfg.n_layers)]
    label = {"indexer": "indexer's top-k", "recent": f"{K_MODEL} most recent", "random": f"{K_MODEL} at random"}[name]
    ax.bar(xs, share[name], width, color=colour, label=label)
ax.set_xticks(range(cfg.n_layers), [f"layer {i}" for i in range(cfg.n_layers)])
ax.set(ylabel="share of dense attention kept", ylim=(0, 1.12),
       title=f"Attention held by {K_MODEL} selected tokens (queries from position {K_MODEL} on)")
ax.legend(loc="upper left", ncols=3, fontsize=9)
ax.grid(alpha=0.3, axis="y")
fig.tight_layout()
plt.show()

best = max(range(cfg.n_layers), key=lambda i: share["indexer"][i] - share["recent"][i])
beats = sum(share["indexer"][i] > share["recent"][i] + 0.005 for i in range(cfg.n_layers))
margin = (f"; the largest margin is in layer {best} ({share['indexer'][best]:.0%} against "
          f"{share['recent'][best]:.0%})" if beats else "")
display(Markdown(
    f"Averaged over layers, the indexer's {K_MODEL} tokens hold {sum(share['indexer']) / cfg.n_layers:.0%} of the "
    f"attention, the {K_MODEL} most recent {sum(share['recent']) / cfg.n_layers:.0%}, a random choice "
    f"{share['random'][0]:.0%}. The indexer holds more than the recency rule (by over half a point) in {beats} "
    f"of {cfg.n_layers} layers{margin}."
    + ("" if trained else " These indexers are untrained, so this is what chance and the query's position "
       "give, the baseline a trained indexer has to beat.")
))

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 4. Sparse MLA over the gathered tokens
#
# Once $S_t$ is chosen, DSA runs MLA's absorbed attention, but each query first **gathers** its own $k$
# latents and RoPE keys out of the cache, a real copy of $k$ rows instead of a read of all $t$:

# %% slideshow={"slide_type": "-"}
show_source(dsa._gather, start="if cached.shape[0] == 1", stop="return cached[batch")  # gather_tokens, checked

# %% slideshow={"slide_type": "-"}
show_source(dsa._sparse_attend, start="if b == 1:", stop="weights = torch.softmax")  # sparse_attend_absorbed

# %% [markdown] slideshow={"slide_type": "subslide"}
# The same set $S_t$ serves every MLA head, and the softmax runs over the $k$ gathered slots only. Two
# checks, in float64 on the real layer inputs:
#
# 1. the gather path equals the reference path that runs MLA over all tokens with the unselected ones
#    masked out (`attn.use("mask")`);
# 2. with $k \ge$ the sequence length every token is selected, and DSA equals dense MLA.

# %% slideshow={"slide_type": "-"}
model64, _ = dsa_widgets.tiny_dsa_model(dtype=torch.float64)
attn64 = model64.blocks[LAYER].attn
with torch.no_grad():
    x64 = layer_input(model64, ids, LAYER)  # (1, T, d_model) float64
    with attn64.using("gather", top_k=K_SHOW):
        gather = attn64(x64)  # .output, and .selection: the indexer's choice
    with attn64.using("mask", top_k=K_SHOW):
        y_mask = attn64(x64).output
    with attn64.using(top_k=T):
        y_all = attn64(x64).output
    y_gather = gather.output
    y_mla = attn64.mla(x64).output  # the layer's MLA with no indexer at all
    c_kv, _ = attn64.mla.latents(x64, torch.arange(T))
    gathered = gather_tokens(c_kv, gather.selection.indices)
gather_vs_mask = float((y_gather - y_mask).abs().max())
topk_all_vs_mla = float((y_all - y_mla).abs().max())
sparse_vs_dense = float((y_gather - y_mla).abs().max())
TOL = 1e-12
assert gather_vs_mask < TOL and topk_all_vs_mla < TOL and sparse_vs_dense > 1e3 * TOL
display(Markdown(
    f"For the {T}-token sentence, the cache holds c_kv of shape {tuple(c_kv.shape)}; the gather hands every "
    f"query its own {K_SHOW} latents, shape {tuple(gathered.shape)} (batch, query, k, d_c). Gather and mask "
    f"paths agree to within {TOL:g}: **{gather_vs_mask < TOL}**. With top-k = {T}, DSA equals dense MLA to "
    f"within {TOL:g}: **{topk_all_vs_mla < TOL}**. With top-k = {K_SHOW} the output really changes "
    f"(largest difference from dense MLA {sparse_vs_dense:.2g}): the dropped tokens are gone."
))

# %% slideshow={"slide_type": "subslide"}
# NBVAL_IGNORE_OUTPUT
# The last bits of float64 sums depend on the CPU's vector instructions, so these vary by machine.
print(f"max |gather - mask| = {gather_vs_mask:.1e}, max |DSA(top-k = {T}) - MLA| = {topk_all_vs_mla:.1e}")

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 5. Cost over context length
#
# Per decoded token and layer, `layer_cost` counts (2 FLOPs per multiply-add) the attention itself,
# $C_\text{attn} = 2 n_h (2 d_c + d_h^R)$ per cached token read, and the indexer,
# $C_\text{idx} = 2 H^I d^I + 2 H^I$ per cached token plus its projections $F_\text{proj}$ once per token:
#
# $$\text{dense: } C_\text{attn} L, \qquad \text{DSA: } F_\text{proj} + C_\text{idx} L + C_\text{attn} \min(k, L).$$
#
# Bytes read follow the same pattern: the MLA cache (1,152 bytes per token and layer in bfloat16) for all
# $L$ tokens, against the FP8 index keys (132 bytes) for all $L$ plus the MLA cache of the $k$ selected.
# Both sides share MLA's projections, the MLP and the rest of the model, which are left out here.

# %% slideshow={"slide_type": "-"}
lengths = [2**p for p in range(8, 18)] + [v32.max_context]
costs = [layer_cost(v32, n) for n in lengths]
c_attn = layer_cost(v32, 1)["decode_flops_dense"]  # FLOPs per cached token read by MLA's attention
c_idx = layer_cost(v32, 2)["decode_flops_indexer"] - layer_cost(v32, 1)["decode_flops_indexer"]  # per token scored
c_pre = layer_cost(v32, 1)["prefill_flops_dense"]  # FLOPs per query-key pair of the dense (naive) prefill
cross = {m: crossover_context(v32, metric=m) for m in ("decode_flops", "decode_bytes", "prefill_flops")}
fig, axes = plt.subplots(1, 2, figsize=(12, 4.2))
for ax, key, unit, scale in ((axes[0], "decode_flops", "GFLOP", 1e9), (axes[1], "decode_bytes", "MB", 1e6)):
    ax.plot(lengths, [c[f"{key}_dense"] / scale for c in costs], "o-", ms=3, color=SCHEME_COLORS["mla"],
            label="dense MLA")
    ax.plot(lengths, [c[f"{key}_dsa"] / scale for c in costs], "o-", ms=3, color=COLORS["index"],
            label=f"DSA (k = {v32.index_topk:,})")
    ax.plot(lengths, [c[f"{key}_indexer"] / scale for c in costs], "--", color=COLORS["index"], lw=1,
            label="of which the indexer")
    ax.axvline(cross[key], color=COLORS["cache"], ls=":", lw=1.2)
    ax.annotate(f"crossover\nL = {cross[key]:,}", (cross[key], ax.get_ylim()[1]), xytext=(6, -30),
                textcoords="offset points", color=COLORS["cache"], fontsize=9)
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xticks([256, 1024, 4096, 16_384, 65_536, 131_072], ["256", "1K", "4K", "16K", "64K", "128K"])
    ax.set(xlabel="context length L (tokens)", ylabel=f"{unit} per decoded token, one layer")
    ax.grid(alpha=0.3, which="both")
    ax.legend(loc="lower right", fontsize=9)
axes[0].set_title(f"{v32.name}: FLOPs per decoded token")
axes[1].set_title(f"{v32.name}: bytes read per decoded token")
fig.tight_layout()
plt.show()

# %% slideshow={"slide_type": "subslide"}
rows = ["| context | decode FLOPs, dense / DSA | decode bytes, dense / DSA | prefill FLOPs, dense / DSA |",
        "|---|---|---|---|"]
for n in (1024, 4096, 32_768, L128k):
    c = layer_cost(v32, n)
    rows.append(f"| {n:,} | {c['decode_flops_dense'] / c['decode_flops_dsa']:.2f}× | "
                f"{c['decode_bytes_dense'] / c['decode_bytes_dsa']:.2f}× | "
                f"{c['prefill_flops_dense'] / c['prefill_flops_dsa']:.2f}× |")
display(Markdown("\n".join(rows)))
display(Markdown(
    f"Below L = k = {v32.index_topk:,} DSA attends to every token anyway and pays for the indexer on top, so it "
    f"costs slightly more. It becomes cheaper per decoded token at **L = {cross['decode_flops']:,}** (FLOPs) and "
    f"**L = {cross['decode_bytes']:,}** (bytes); from there the dense cost keeps growing with L while DSA's "
    f"attention part stays at k tokens and only the indexer grows, {c_attn:,} against {c_idx:,} FLOPs "
    f"per extra token ({c_attn / c_idx:.1f}× less). The prefill breaks even later, at "
    f"L = {cross['prefill_flops']:,}: the cost model counts the dense prefill in MLA's per-head (naive) form, as "
    f"DeepSeek runs it, {c_pre:,} FLOPs per query-key pair against {c_attn:,} for the absorbed form the sparse "
    "path uses. For comparison, DeepSeek's FlashMLA reports that its sparse decoding kernel breaks even with "
    "dense decoding at about 3,000 tokens of context."
))

# %% [markdown] slideshow={"slide_type": "subslide"}
# ### Short prompts run dense: the masked MHA mode
#
# Run literally, DSA's sparse path would make a short prefill several times *more* expensive than dense
# MLA: its absorbed attention costs more per query-key pair than the per-head (MHA) form DeepSeek prefills
# in, and below $k$ it selects every token anyway. DeepSeek does not do that. The V3.2-Exp report: *"for
# short-sequence prefilling, we specially implement a masked MHA mode to simulate DSA"*, and its reference
# code's prefill (`if mask is not None:  # MHA prefill` in `inference/model.py`) scores every pair in MHA
# mode and applies the indexer's top-$k$ as a mask. So `layer_cost` charges a DSA prefill the cheaper of
#
# $$\text{sparse path: } L F_\text{proj} + C_\text{idx}\tfrac{L(L+1)}{2} + C_\text{attn}\sum_t \min(k, t),$$
#
# $$\text{masked MHA: } C_\text{pre}\tfrac{L(L+1)}{2} + \text{the indexer where it chooses } (L > k).$$

# %% slideshow={"slide_type": "-"}
switch = prefill_switch_context(v32)
rows = ["| prompt L | dense MLA | DSA, sparse path | DSA, masked MHA | DSA runs | DSA / dense |",
        "|---:|---:|---:|---:|---|---:|"]
for n in (1024, 4096, switch - 1, switch, 32_768, L128k):
    c = layer_cost(v32, n)
    mode = "masked MHA" if c["prefill_masked_mha"] else "sparse"
    rows.append(f"| {n:,} | {c['prefill_flops_dense'] / 1e9:,.1f} | {c['prefill_flops_sparse_path'] / 1e9:,.1f} | "
                f"{c['prefill_flops_masked_mha'] / 1e9:,.1f} | {mode} | "
                f"{c['prefill_flops_dsa'] / c['prefill_flops_dense']:.2f}× |")
display(Markdown("GFLOP of one layer's attention prefill:\n\n" + "\n".join(rows)))
c1k = layer_cost(v32, 1024)
key_flops = 2 * v32.hidden_size * v32.index_head_dim  # the index key W^IK of one token, written to the cache
display(Markdown(
    f"At 1,024 tokens the sparse path would cost {c1k['prefill_flops_sparse_path'] / c1k['prefill_flops_dense']:.1f}× "
    f"the dense prefill: every pair is selected ($L \\le k$), and each costs $C_\\text{{attn}}$ = {c_attn:,} FLOPs "
    f"instead of $C_\\text{{pre}}$ = {c_pre:,}. The masked MHA mode costs the dense "
    f"{c1k['prefill_flops_dense'] / 1e9:.1f} GFLOP "
    f"plus {key_flops:,} FLOPs per token for the index keys later steps read, "
    f"{c1k['prefill_flops_masked_mha'] / c1k['prefill_flops_dense']:.2f}× in all. Above $k$ the mask needs the "
    f"indexer's scores, and the sparse path wins from **L = {switch:,}**, where $C_\\text{{attn}}\\sum_t\\min(k,t)$ "
    f"drops below $C_\\text{{pre}} L(L+1)/2$; DSA's prefill beats dense MLA from L = {cross['prefill_flops']:,}."
))

# %% [markdown] slideshow={"slide_type": "subslide"}
# ### What the papers measured
#
# DeepSeek measured the cost of its deployed service, V3.1-Terminus against V3.2-Exp on H800 GPUs at a
# rental price per GPU hour, and published it as a plot (the report's Figure 3). Its values, read off the
# figure (they are not printed anywhere, so they are approximate and marked so in `attnlab.evidence`):

# %% slideshow={"slide_type": "-"}
EP.cost_curves()
plt.tight_layout()
plt.show()
ratio = {phase: E.cost_curve(phase, "DeepSeek-V3.1-Terminus").at(L128k)
         / E.cost_curve(phase, "DeepSeek-V3.2-Exp").at(L128k) for phase in ("prefill", "decode")}
pre_old, pre_new = (E.cost_curve("prefill", m) for m in ("DeepSeek-V3.1-Terminus", "DeepSeek-V3.2-Exp"))
cheaper = [p for p in pre_new.positions if pre_new.at(p) < pre_old.at(p)]
before = max(p for p in pre_new.positions if p < cheaper[0])
display(Markdown(
    f"(H800 at {E.V32_GPU_HOUR_USD:g} USD per GPU hour.) At the 128K-th token V3.2-Exp costs about "
    f"{ratio['prefill']:.1f}× less to prefill and {ratio['decode']:.1f}× "
    f"less to decode. Short prefills cost about the same as V3.1-Terminus's, a little more (the masked MHA mode "
    f"plus the indexer), and V3.2-Exp's prefill becomes the cheaper one between the read-off points "
    f"{before // 1024}K and {cheaper[0] // 1024}K; this cost model puts the switch at {switch:,} and the break-even "
    f"at {cross['prefill_flops']:,} tokens, counting only attention FLOPs, where the service also pays for "
    "the weights, the kernels' efficiency and FP8 arithmetic in the indexer. The shapes agree: linear growth "
    "for the dense model, nearly flat for DSA."
))

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 6. Explore: context length and top-k
#
# Slide the context length and $k$. The bars show what one decoded token costs in one layer of
# DeepSeek-V3.2 with dense MLA and with DSA (indexer in teal, attention in purple), each pair on its own
# scale; the table adds the prefill and the crossover for the chosen $k$. Every value comes from
# `layer_cost`.

# %% slideshow={"slide_type": "-"}
explorer = dsa_widgets.cost_explorer(context_len=L128k, top_k=v32.index_topk)
explorer

# %% jupyter={"source_hidden": true} slideshow={"slide_type": "subslide"} tags=["hide-input"]
explorer.context.value, explorer.top_k.value = 8192, 4096
f = dsa_widgets.decode_cost_figures(8192, 4096)
display(Markdown(
    f"With 8,192 tokens of context and k = 4,096 the explorer shows {dsa_widgets.format_flops(f['flops_dense'])} "
    f"for dense MLA against {dsa_widgets.format_flops(f['flops_dsa'])} for DSA per decoded token and layer "
    f"({f['flops_ratio']:.2f}×); with this k, DSA needs fewer FLOPs only from L = {f['crossover_flops']:,}."
))
explorer.context.value, explorer.top_k.value = L128k, v32.index_topk

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 7. The claim: "cut compute costs and API pricing by 50%"
#
# A summary that circulates: *DSA, released in September 2025, cut compute costs and API pricing by 50%.*
# Two halves, two verdicts.

# %% slideshow={"slide_type": "-"}
# DeepSeek-V3's model card: 671B parameters, 37B activated per token; V3.2 is the same model plus the indexers
ACTIVE_PARAMS = 37e9
weights_flops = 2 * ACTIVE_PARAMS  # one multiply-add per activated weight and token: a rough floor
rows = ["| context | attention, dense / DSA | + the weights' ≈ 74 GFLOP, dense / DSA |", "|---|---|---|"]
whole = {}
for n in (4096, 32_768, L128k):
    c = layer_cost(v32, n, per_layer=False)  # all 61 layers
    whole[n] = (c["decode_flops_dense"] + weights_flops) / (c["decode_flops_dsa"] + weights_flops)
    rows.append(f"| {n:,} | {c['decode_flops_dense'] / c['decode_flops_dsa']:.2f}× | {whole[n]:.2f}× |")
display(Markdown("FLOPs per decoded token, whole model:\n\n" + "\n".join(rows)))
display(Markdown(
    f"**API pricing:** {factcheck.verdict_label(factcheck.claim('dsa_price_50').verdict)} (chapter 13's "
    "verdict), and understated. DeepSeek's announcement of DeepSeek-V3.2-Exp (September 29, 2025) "
    "cut its API prices by *more than* 50%.\n\n"
    f"**Compute costs:** {factcheck.verdict_label(factcheck.claim('dsa_compute_50').verdict)}. DSA has no single "
    "saving. Its core attention goes from $O(L^2)$ to "
    f"$O(Lk)$, but the indexer it adds still scores every pair, $O(L^2)$, just with much cheaper arithmetic "
    f"({c_attn / c_idx:.0f}× fewer FLOPs per token pair than MLA's attention). In this cost model DSA saves "
    f"nothing below about {cross['decode_flops']:,} tokens of context; at {L128k:,} tokens a decoded token's "
    f"attention needs {c128['decode_flops_dense'] / c128['decode_flops_dsa']:.1f}× fewer FLOPs and reads "
    f"{c128['decode_bytes_dense'] / c128['decode_bytes_dsa']:.1f}× fewer bytes, and the prefill's attention "
    f"{c128['prefill_flops_dense'] / c128['prefill_flops_dsa']:.1f}× fewer FLOPs. Counting the weights too, a "
    f"decoded token costs {whole[4096]:.2f}× less at 4K and {whole[L128k]:.1f}× less at 128K. So at long context "
    "the savings are far larger than half, at short context they are nil, and real serving costs also "
    "depend on kernels, batching and hardware; \"50%\" is a price, not a measurement of compute."
))

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 8. What it costs
#
# DSA adds one index key per token and layer to the cache, on top of MLA's latent and RoPE key. We measure
# the tiny model's cache after a prefill, then size DeepSeek-V3.2's.

# %% slideshow={"slide_type": "-"}
cache = model.new_cache()
with torch.no_grad():
    model(windows[:1], cache=cache)
layer0 = cache[0].tensors
shapes = ", ".join(f"`{name}` {tuple(t.shape)}" for name, t in layer0.items())
per_token_layer = cache[0].nbytes // cache.seq_len
assert per_token_layer == 4 * (cfg.kv_lora_rank + cfg.qk_rope_head_dim + cfg.index_head_dim)
display(Markdown(
    f"After a prefill of {cache.seq_len} tokens, layer 0 of the tiny model caches {shapes}: "
    f"{cfg.kv_lora_rank} + {cfg.qk_rope_head_dim} + {cfg.index_head_dim} numbers, {per_token_layer} bytes "
    f"per token in float32, of which the index key is {4 * cfg.index_head_dim}."
))

# %% jupyter={"source_hidden": true} slideshow={"slide_type": "subslide"} tags=["hide-input"]
v3 = sizing.MODELS["deepseek-v3"]  # the same MLA without the indexer
mla_elems = sizing.kv_elements_per_token(v32, per_layer=True)  # d_c + d_h^R = 576
idx_elems = sizing.indexer_elements_per_token(v32, per_layer=True)  # d^I = 128
fmt = "deepseek-fp8"  # DeepSeek's layout: FP8 values with float32 scales, the RoPE key in bf16
bf16 = [layout.bytes for layout in sizing.cache_layouts(v32)]  # every number in bfloat16: [1152, 256]
fp8 = [layout.bytes for layout in sizing.cache_layouts(v32, cache_format=fmt)]  # [656, 132]
rows = ["| per token | MLA (DeepSeek-V3, dense) | DSA (DeepSeek-V3.2): MLA + index key |", "|---|---|---|",
        f"| numbers per layer | {mla_elems} | {mla_elems} + {idx_elems} = {mla_elems + idx_elems} |",
        f"| bytes per layer, bfloat16 | {bf16[0]:,} | {bf16[0]:,} + {bf16[1]} = {sum(bf16):,} |",
        f"| bytes per layer, DeepSeek's FP8 layout | {fp8[0]} | {fp8[0]} + {fp8[1]} = {sum(fp8)} |",
        f"| cache at {L128k:,} tokens, bfloat16 | {sizing.gib(sizing.kv_cache_bytes(v3, L128k)):.2f} GiB | "
        f"{sizing.gib(sizing.kv_cache_bytes(v32, L128k)):.2f} GiB |",
        f"| cache at {L128k:,} tokens, FP8 layout | "
        f"{sizing.gib(sizing.kv_cache_bytes(v3, L128k, cache_format=fmt)):.2f} GiB | "
        f"{sizing.gib(sizing.kv_cache_bytes(v32, L128k, cache_format=fmt)):.2f} GiB |"]
display(Markdown("\n".join(rows)))
display(Markdown(
    f"The index keys make the cache {bf16[1] / bf16[0]:.1%} larger in bfloat16 ({fp8[1] / fp8[0]:.1%} in "
    f"DeepSeek's FP8 layout). In exchange, at {L128k:,} tokens a decoded "
    f"token reads {sizing.format_bytes(c128['decode_bytes_dsa'])} per layer instead of "
    f"{sizing.format_bytes(c128['decode_bytes_dense'])} and spends {c128['decode_flops_dsa'] / 1e9:.2f} GFLOP "
    f"instead of {c128['decode_flops_dense'] / 1e9:.1f}. DSA saves reads and arithmetic, not memory: every "
    "token must stay cached, because a later query may select it."
))

# %% [markdown] slideshow={"slide_type": "slide"}
# ## Exercises
#
# Each exercise has an answer cell (replace `None`) and a check cell. Worked solutions are in
# `notebooks/solutions/ch10.py`; try first.
#
# **Exercise 1.** Causal top-k with padding. Write `(scores, k) -> indices`: `scores` (T, S) are raw index
# scores of T queries that are the last T positions of S keys (query t sits at position S − T + t and may see
# keys 0 to S − T + t); return (T, min(k, S)) integer indices of each query's k best visible keys, best
# first, with −1 in the slots of a query that sees fewer than k tokens. `torch.topk` is fine;
# `dsa.topk_indices` is not (the check notices).

# %% slideshow={"slide_type": "-"}
answer_causal_topk = None

# %% slideshow={"slide_type": "-"}
print(ch10.check_causal_topk(answer_causal_topk))

# %% [markdown] slideshow={"slide_type": "subslide"}
# **Exercise 2.** Write the indexer's score. `index_scores(q, w, k)` takes index queries `q` of shape
# `(T, H, d)`, head weights `w` of shape `(T, H)` and index keys `k` of shape `(S, d)`, and returns
# $I[t, s] = \sum_j w[t, j]\, \operatorname{ReLU}(q[t, j] \cdot k[s])$ of shape `(T, S)`, without the
# $(d^I)^{-1/2}$ factor and without a mask. The draft below is NOT that formula yet: it sums the raw dot
# products over the heads, with no ReLU and no weights. Fix it, then set `answer_index_scores = index_scores`
# (the check names the slip it sees in a wrong version).

# %% slideshow={"slide_type": "-"}
def index_scores(q, w, k):
    """q (T, H, d), w (T, H), k (S, d) -> (T, S). A draft, not yet I: the dot products are right, but it
    adds them over the heads as they are, without the ReLU and without the weights w."""
    logits = torch.einsum("tjd,sd->tjs", q, k)  # q[t, j] · k[s], shape (T, H, S)
    return logits.sum(dim=1)  # sum_j q[t, j] · k[s]: ReLU and w[t, j] still missing


answer_index_scores = None

# %% slideshow={"slide_type": "-"}
print(ch10.check_index_scores(answer_index_scores))

# %% [markdown] slideshow={"slide_type": "subslide"}
# **Exercise 3.** With DeepSeek-V3.2's shapes and $k = 1024$, at what context length does DSA first need
# fewer FLOPs per decoded token than dense MLA? Use the per-layer costs of section 5 with the constants
# below, and give the smallest whole $L$ with $C_\text{attn} L > F_\text{proj} + C_\text{idx} L +
# C_\text{attn} k$.

# %% jupyter={"source_hidden": true} slideshow={"slide_type": "-"} tags=["hide-input"]
constants = ch10.exercise_3_constants()
display(Markdown(", ".join(f"{name} = {value:,}" for name, value in constants.items())
                 + f" (FLOPs), k = {ch10.EXERCISE_3['top_k']:,}."))

# %% slideshow={"slide_type": "-"}
answer_crossover = None

# %% slideshow={"slide_type": "-"}
print(ch10.check_crossover(answer_crossover))

# %% [markdown] slideshow={"slide_type": "subslide"}
# **Exercise 4 (predict, then run).** DeepSeek-V3.2 decodes one token at 128K tokens of context with
# $k$ = 2,048. How many times fewer FLOPs does that token cost in one layer with DSA than with dense MLA?
# Write your guess first; the check cell computes it and explains.

# %% slideshow={"slide_type": "-"}
prediction_decode_speedup = None  # a positive number: dense FLOPs / DSA FLOPs

# %% slideshow={"slide_type": "-"}
print(ch10.check_prediction_decode_speedup(prediction_decode_speedup))

# %% [markdown] slideshow={"slide_type": "slide"}
# ## Summary
#
# * MLA made each cached token small; DSA makes each query read few of them: the top $k$ of a cheap
#   index score, $|S_t| = \min(k, t + 1)$, causal, shared by all heads.
# * The lightning indexer: index queries from MLA's query latent, one shared 128-wide index key per token,
#   per-token head weights, ReLU instead of softmax; RoPE on halves, as DeepSeek's November 2025
#   correction made explicit.
# * Sparse MLA gathers each query's $k$ latents and runs absorbed attention on them; it equals MLA with
#   the other tokens masked, and dense MLA when $k$ covers the context.
# * The core attention drops from $O(L^2)$ to $O(Lk)$; the indexer stays $O(L^2)$ but cheap. DSA pays off
#   once the context is somewhat longer than $k$, and at 128K most of the attention's arithmetic and reads
#   are gone; it adds one FP8 index key per token and layer to the cache.
# * The indexer is where the remaining cost sits; chapter 11 makes it cheaper with FP8 and a rotation.
