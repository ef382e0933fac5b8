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
# # Chapter 6 · Grouped-query attention
#
# *Video chapter at 11:03.*
#
# > **What you will learn:** grouped-query attention: groups of query heads sharing a key/value head,
# > converting a trained MHA model by mean-pooling, and the trade-off between cache and quality.
# >
# > **What it assumes:** [chapters 4](04_kv_caching.ipynb) and [5](05_multi_query_attention.ipynb).
#
# Chapter 5 left two extremes. Multi-head attention (MHA) gives every query head its own key and value
# head: the best quality and the biggest cache. Multi-query attention (MQA) gives all query heads one
# shared key and value head: a cache n_h times smaller, a little quality lost. In 2023 Ainslie and
# colleagues at Google asked for the space in between ("GQA: Training Generalized Multi-Query Transformer
# Models from Multi-Head Checkpoints", arXiv 2305.13245). **Grouped-query attention (GQA)** splits the
# query heads into n_g groups and gives each group one key head and one value head.
#
# The paper made a second point that matters as much in practice: you do not need to train a GQA model
# from scratch. Take a trained MHA model, **average the key and value heads of each group**, and train
# briefly. This chapter builds GQA from the course library, converts the course's tiny MHA model that
# way, and looks at what real models chose.

# %% slideshow={"slide_type": "skip"}
import dataclasses
import time

import matplotlib.pyplot as plt
import torch
import torch.nn.functional as F
from IPython.display import HTML, Markdown, display

from attnlab import evidence as E
from attnlab import evidence_plots as EP
from attnlab import figures, plots, quality, show_source, sizing
from attnlab.attention import attention_matrix
from attnlab.exercises import ch06
from attnlab.gqa import AttentionConfig, grouped_attention, mha_to_gqa, repeat_kv
from attnlab.interactive import gqa as gqa_widgets
from attnlab.model import TinyLM, load_checkpoint
from attnlab.plots import COLORS, SCHEME_COLORS
from attnlab.sizing import MODELS, format_bytes, format_ratio
from attnlab.train import TrainConfig, evaluate, token_ids, train

_ = torch.manual_seed(0)
# One thread: the same float rounding on every machine, so every printed loss below is reproducible.
torch.set_num_threads(1)

# %% [markdown] slideshow={"slide_type": "subslide"}
# ### The idea, animated
#
# The chapter in one short animation. It plays here once the videos are rendered (`./course animations`);
# until then, and in static exports, the last frame stands in.

# %% slideshow={"slide_type": "-"}
from attnlab.media import show_animation

show_animation("GQAScene")

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 1. Groups between the two extremes
#
# With n_h = 8 query heads, n_g can be 8 (MHA), 4, 2 or 1 (MQA). Each K/V head serves a **group** of
# r = n_h / n_g neighbouring query heads:

# %% slideshow={"slide_type": "-"}
n_heads = 8
display(HTML(
    '<div style="display:flex;flex-wrap:wrap;gap:6px">'
    + "".join(gqa_widgets.sharing_svg(n_heads, n_kv, width=470) for n_kv in (8, 4, 2, 1))
    + "</div>"
))

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 2. The math
#
# Query head $h \in \{0, \dots, n_h - 1\}$ reads K/V head
#
# $$g(h) = \left\lfloor \frac{h}{r} \right\rfloor, \qquad r = \frac{n_h}{n_g}\ \text{(the group size)},$$
#
# $$O_h = \operatorname{softmax}\!\left(\frac{Q_h K_{g(h)}^\top}{\sqrt{d_h}} + M\right) V_{g(h)},\qquad
# K_g = X W^K_g,\quad V_g = X W^V_g \quad (g = 0, \dots, n_g - 1).$$
#
# Per token and layer the cache holds $2\, n_g\, d_h$ numbers, $r$ times fewer than MHA's $2\, n_h d_h$.
# $n_g = n_h$ gives $r = 1$ and $g(h) = h$: MHA. $n_g = 1$ gives $r = n_h$ and $g(h) = 0$: MQA.

# %% slideshow={"slide_type": "-"}
for n_kv in (8, 4, 2, 1):
    config = AttentionConfig(d_model=128, n_heads=n_heads, n_kv_heads=n_kv)
    owner = gqa_widgets.kv_head_of(n_heads, n_kv)
    print(f"n_kv_heads={n_kv}: kind={config.kind!r:6} r={config.group_size}  g(h) for h=0..7: {owner}  "
          f"cached numbers per token and layer: {config.cache_elements_per_token()}")

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 3. `n_kv_heads` must divide `n_heads`
#
# Every group has the same size, so r must be a whole number. Ask for 5 K/V heads on 12 query heads and
# the library refuses before torch sees a tensor:

# %% slideshow={"slide_type": "-"}
try:
    AttentionConfig(d_model=768, n_heads=12, n_kv_heads=5)
except ValueError as err:
    print(f"ValueError: {err}")

# %% jupyter={"source_hidden": true} slideshow={"slide_type": "-"} tags=["hide-input"]
valid_12 = gqa_widgets.kv_head_options(12)
display(Markdown(
    f"For 12 query heads the valid choices are n_kv_heads ∈ {valid_12}: the divisors of 12. Falcon-7B's 71 "
    f"heads (a prime) allow only {gqa_widgets.kv_head_options(71)}: MQA or MHA, nothing in between."
))

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 4. The code
#
# `grouped_attention` implements $g(h)$ without copying K and V: it reshapes the n_h query heads into
# (n_g groups) × (r heads per group), and one matmul per group pairs group g's r heads with K/V head g, so
# the group's keys are read once for all r of them:

# %% slideshow={"slide_type": "-"}
show_source(grouped_attention, start="r, n_k = ", stop="out = torch.einsum")

# %% [markdown] slideshow={"slide_type": "subslide"}
# Checks in float64 on random tensors: at n_kv = n_h it is plain MHA (`attention_matrix` of chapter 3,
# head by head), at n_kv = 1 it is MQA (one K/V head broadcast to every query head), and at any n_kv it
# equals MHA on `repeat_kv`'s explicit copies and PyTorch's `scaled_dot_product_attention(enable_gqa=True)`.

# %% slideshow={"slide_type": "-"}
gen = torch.Generator().manual_seed(0)
b, n, d = 2, 10, 16
q = torch.randn(b, n_heads, n, d, generator=gen, dtype=torch.float64)  # (batch, n_heads, seq, d_h)
for n_kv in (8, 4, 2, 1):
    k = torch.randn(b, n_kv, n, d, generator=gen, dtype=torch.float64)  # (batch, n_kv_heads, seq, d_h)
    v = torch.randn(b, n_kv, n, d, generator=gen, dtype=torch.float64)
    out, _ = grouped_attention(q, k, v, causal=True)
    r = n_heads // n_kv
    copies = torch.allclose(out, attention_matrix(q, repeat_kv(k, r), repeat_kv(v, r), causal=True)[0], atol=1e-12)
    sdpa = torch.allclose(out, F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=True), atol=1e-12)
    kind = AttentionConfig(128, n_heads, n_kv).kind
    line = f"n_kv={n_kv} ({kind}): == MHA on repeat_kv copies {copies}, == SDPA {sdpa}"
    if n_kv == n_heads:
        line += f", == plain MHA {torch.allclose(out, attention_matrix(q, k, v, causal=True)[0], atol=1e-12)}"
    if n_kv == 1:
        line += f", == MQA by broadcasting {torch.allclose(out, attention_matrix(q, k, v, causal=True)[0], atol=1e-12)}"
    print(line)

# %% [markdown] slideshow={"slide_type": "-"}
# (For n_kv = 1, `attention_matrix(q, k, v)` with `k` of shape (b, 1, n, d) broadcasts the single K/V head
# over the 8 query heads: that *is* MQA.)

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 5. Converting a trained MHA model
#
# Training a model from scratch for every n_g would be expensive. The GQA paper converts an MHA
# checkpoint instead (section 2.1): the new key projection of group g is the **mean** of the key
# projections of the r heads in that group, likewise for values; queries and the output projection are
# copied unchanged.
#
# $$W^K_g = \frac{1}{r} \sum_{h = g r}^{g r + r - 1} W^K_h, \qquad
#   W^V_g = \frac{1}{r} \sum_{h = g r}^{g r + r - 1} W^V_h .$$
#
# Then the converted model is **uptrained**: training continues for a small fraction of the original
# steps (the paper used 5% of the pre-training compute) so the model adapts to the shared heads. In
# `attnlab` the pooling is `mha_to_gqa`:

# %% slideshow={"slide_type": "-"}
show_source(mha_to_gqa, start="pool = ", stop="return new")


# %% [markdown] slideshow={"slide_type": "subslide"}
# We convert every attention layer of `tiny_mha`, the course model trained with MHA, keep the rest of its
# weights, and measure the validation loss on the same fixed windows of held-out text for
# every model in this chapter.

# %% slideshow={"slide_type": "-"}
def converted(mha_model: TinyLM, n_kv: int) -> TinyLM:
    """A copy of mha_model whose attention layers are mean-pooled to n_kv K/V heads (mha_to_gqa)."""
    kind = "mha" if n_kv == mha_model.config.n_heads else "mqa" if n_kv == 1 else "gqa"
    torch.manual_seed(0)  # the fresh layers are overwritten below; seeded so the RNG stream stays fixed
    model = TinyLM(dataclasses.replace(mha_model.config, attention=kind, n_kv_heads=n_kv))
    model.load_state_dict({k: w for k, w in mha_model.state_dict().items() if ".attn." not in k}, strict=False)
    for new_block, old_block in zip(model.blocks, mha_model.blocks, strict=True):
        new_block.attn = mha_to_gqa(old_block.attn, n_kv)
    return model.eval()


tiny_mha = load_checkpoint("tiny_mha")
val_data = token_ids("val")
EVAL = TrainConfig(batch_size=8, seq_len=128, eval_batches=4)  # 4 fixed windows of 8 x 128 tokens
mha_loss = evaluate(tiny_mha, val_data, EVAL)
kv_options = gqa_widgets.kv_head_options(tiny_mha.config.n_heads)[::-1]  # every valid n_g, MHA first
conversions = {n_kv: converted(tiny_mha, n_kv) for n_kv in kv_options}
conv_loss = {n_kv: evaluate(model, val_data, EVAL) for n_kv, model in conversions.items()}

rows = ["| K/V heads n_g | group size r | cache bytes per token | validation loss right after conversion |",
        "|---|---|---|---|"]
for n_kv, model in conversions.items():
    attn = model.config.attention_config()
    per_token = attn.cache_elements_per_token() * model.config.n_layers * model.embed.weight.element_size()
    rows.append(f"| {n_kv} ({attn.kind.upper()}) | {attn.group_size} | {per_token:,} B | {conv_loss[n_kv]:.3f} |")
display(Markdown("\n".join(rows)))
display(Markdown(
    f"At n_g = {kv_options[0]} every group is one head, the mean is that head, and the model is unchanged: "
    f"loss {conv_loss[kv_options[0]]:.3f} against tiny_mha's {mha_loss:.3f} "
    f"(identical: {conv_loss[kv_options[0]] == mha_loss}). Averaging more heads together costs more: "
    f"{' → '.join(f'{conv_loss[n]:.3f}' for n in kv_options)} as n_g goes {' → '.join(map(str, kv_options))}."
))
stored = tiny_mha.metrics["train"]
display(Markdown(
    f"(tiny_mha's stored metrics give {tiny_mha.metrics['val_loss']:.3f}, measured on {stored['eval_batches']} "
    f"batches of {stored['batch_size']} windows; this chapter uses {EVAL.eval_batches} batches of "
    f"{EVAL.batch_size} to stay fast, so its numbers differ a little from chapter 5's but compare fairly "
    f"with each other.)"
))

# %% [markdown] slideshow={"slide_type": "subslide"}
# ### A short uptraining, live
#
# The course also ships `tiny_gqa`: the same model with GQA, **trained from scratch**. We take the
# conversion with its number of K/V heads and continue training it for a few dozen steps with
# `attnlab.train.train`, which accepts an existing model. The run is seeded, so it gives the same numbers
# every time.

# %% jupyter={"source_hidden": true} slideshow={"slide_type": "-"} tags=["hide-input"]
UPTRAIN = TrainConfig(steps=60, batch_size=8, seq_len=64, lr=2e-3, warmup=5, eval_every=60, eval_batches=1, seed=0)
tiny_gqa = load_checkpoint("tiny_gqa")
n_g = tiny_gqa.config.attention_config().n_kv_heads  # the K/V heads of the from-scratch GQA model
student = converted(tiny_mha, n_g)
started = time.perf_counter()
student, uptrain_metrics = train(student.config, UPTRAIN, log=lambda line: None, model=student)
uptrain_seconds = time.perf_counter() - started
uptrained_loss = evaluate(student, val_data, EVAL)

scratch_loss = evaluate(tiny_gqa, val_data, EVAL)
pretrain = tiny_mha.metrics["train"]
pretrain_tokens = pretrain["steps"] * pretrain["batch_size"] * pretrain["seq_len"]
uptrain_tokens = UPTRAIN.steps * UPTRAIN.batch_size * UPTRAIN.seq_len
display(Markdown(
    f"Uptraining: {UPTRAIN.steps} steps of {UPTRAIN.batch_size} × {UPTRAIN.seq_len} tokens = "
    f"{uptrain_tokens:,} tokens, **{100 * uptrain_tokens / pretrain_tokens:.1f}%** of the {pretrain_tokens:,} "
    f"tokens tiny_mha was trained on (the paper: 5% of pre-training compute).\n\n"
    f"| model | K/V heads | validation loss |\n|---|---|---|\n"
    f"| tiny_mha, the MHA starting point | {tiny_mha.config.n_heads} | {mha_loss:.3f} |\n"
    f"| converted by mean-pooling, before uptraining | {n_g} | {conv_loss[n_g]:.3f} |\n"
    f"| converted, after uptraining | {n_g} | **{uptrained_loss:.3f}** |\n"
    f"| tiny_gqa, trained from scratch ({tiny_gqa.metrics['train']['steps']:,} steps) | {n_g} | {scratch_loss:.3f} |"
))

# %% slideshow={"slide_type": "subslide"}
# NBVAL_IGNORE_OUTPUT
# Seconds depend on the machine and its load, so this line is not compared when the notebook is tested.
print(f"the uptraining took {uptrain_seconds:.1f} s on this machine")

# %% slideshow={"slide_type": "subslide"}
# The GQA paper (arXiv 2305.13245), T5-XXL: (average score, inference time in s); MQA and GQA-8 were
# converted from the MHA model and uptrained with 5% of the pre-training compute.
t5 = {"MHA": (47.2, 1.51), "GQA-8": (47.1, 0.28), "MQA": (46.6, 0.24)}
pool_gap = conv_loss[n_g] - mha_loss  # what mean-pooling cost
won_back = conv_loss[n_g] - uptrained_loss  # what uptraining regained
if pool_gap > 0 and won_back > 0:
    recovery = (f"Mean-pooling alone raised the loss by {pool_gap:.3f}; {UPTRAIN.steps} steps of uptraining won "
                f"back {won_back:.3f}, {100 * won_back / pool_gap:.0f}% of that gap.")
elif pool_gap > 0:
    recovery = (f"Mean-pooling alone raised the loss by {pool_gap:.3f}, and {UPTRAIN.steps} steps of uptraining "
                f"did not win any of it back.")
else:
    recovery = f"Mean-pooling did not raise the loss here ({conv_loss[n_g]:.3f} against {mha_loss:.3f})."
diff = uptrained_loss - scratch_loss
versus = ("matches or beats" if diff <= 0 else f"is {diff:.3f} above")
gqa_train = tiny_gqa.metrics["train"]
gqa_tokens = gqa_train["steps"] * gqa_train["batch_size"] * gqa_train["seq_len"]
if diff <= 0.1 * max(pool_gap, 0.0):
    outlook = ("Conversion plus a short uptraining gets close to training from scratch: the paper's case for "
               "converting, one MHA training run, then a short uptraining for each n_g you want.")
else:
    outlook = (f"So on this tiny model a live run of {100 * uptrain_tokens / pretrain_tokens:.1f}% of the "
               f"pre-training tokens does not close the gap; the paper spent 5% of the pre-training compute, and "
               f"its uptrained GQA-8 came within {t5['MHA'][0] - t5['GQA-8'][0]:.1f} points of MHA on T5-XXL "
               f"(section 8). Raise `steps` in `UPTRAIN` above and run the cells again to watch the gap shrink.")
display(Markdown(
    f"{recovery} The uptrained model {versus} the GQA model trained from scratch, after "
    f"{100 * uptrain_tokens / gqa_tokens:.1f}% of that model's training tokens on top of tiny_mha's run. "
    + outlook
))

fig, ax = plt.subplots(figsize=(7.5, 3.4))
points = [(f"tiny_mha\n(n_g = {tiny_mha.config.n_heads})", mha_loss, SCHEME_COLORS["mha"]),
          (f"mean-pooled\nto n_g = {n_g}", conv_loss[n_g], COLORS["muted"]),
          (f"+ {UPTRAIN.steps} steps\nuptraining", uptrained_loss, SCHEME_COLORS["gqa"]),
          (f"tiny_gqa (n_g = {n_g})\nfrom scratch", scratch_loss, "#2f6b3b")]
ax.plot(range(3), [value for _, value, _ in points[:3]], color=COLORS["muted"], lw=1, ls="--", zorder=1)
for i, (_, value, colour) in enumerate(points):
    ax.plot(i, value, "o", ms=12, color=colour, zorder=2)
    ax.annotate(f"{value:.3f}", (i, value), textcoords="offset points", xytext=(0, 11), ha="center", fontsize=10)
ax.set_xticks(range(len(points)), [label for label, _, _ in points])
ax.set_xlim(-0.5, len(points) - 0.5)
values = [value for _, value, _ in points]
span = max(values) - min(values)
ax.set_ylim(min(values) - 0.12 * span - 0.02, max(values) + 0.2 * span + 0.02)
ax.grid(axis="y", color="#dddddd", lw=0.8)
ax.set_ylabel("validation loss (nats per token)")
ax.set_title(f"Converting tiny_mha to GQA with {n_g} K/V heads (lower is better)")
ax.spines[["top", "right"]].set_visible(False)
fig.tight_layout()
plt.show()

# %% [markdown] slideshow={"slide_type": "subslide"}
# ### What the papers measured
#
# The GQA paper ran this conversion at full scale: T5-XXL's MHA checkpoint mean-pooled to a few K/V heads
# (GQA-8) or to one (MQA), then uptrained for a small share of its pre-training steps. Its Table 1, as cited data in
# `attnlab.evidence`, drawn the way its Figure 3 draws it:

# %% slideshow={"slide_type": "-"}
EP.gqa_tradeoff()
plt.tight_layout()
plt.show()
mha_xxl, mqa_xxl, gqa_xxl, mha_large = (E.gqa_row(n) for n in ("MHA-XXL", "MQA-XXL", "GQA-8-XXL", "MHA-Large"))
d1_gqa, d1_mqa = E.V2_DENSE_7B.deltas("gqa", "mha"), E.V2_DENSE_7B.deltas("mqa", "mha")
display(Markdown(
    f"Uptrained on {gqa_xxl.uptrain_fraction:.0%} of the pre-training steps, GQA-8 keeps nearly all of MHA's "
    f"quality ({gqa_xxl.average} against {mha_xxl.average}; MQA: {mqa_xxl.average}) at nearly MQA's speed "
    f"({gqa_xxl.t_infer_s} s per sample against {mqa_xxl.t_infer_s} s; MHA: {mha_xxl.t_infer_s} s), and both "
    f"beat the smaller MHA-Large ({mha_large.average}, {mha_large.t_infer_s} s). That is the middle ground "
    "this chapter builds.\n\n"
    f"Trained from scratch, DeepSeek-V2's 7B dense ablation (Appendix D.1) is less kind: GQA with 8 groups "
    f"trails MHA by {-sum(d1_gqa.values()) / len(d1_gqa):.1f} points on average over {len(d1_gqa)} hard benchmarks, "
    f"MQA by {-sum(d1_mqa.values()) / len(d1_mqa):.1f}. GQA sits between the two on "
    f"{sum(d1_mqa[b] < d1_gqa[b] < 0 for b in d1_gqa)} of the {len(d1_gqa)}, as DeepSeek-V2's Table 1 ranks "
    "them: MHA *strong*, GQA *moderate*, MQA *weak*."
))

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 6. Real models use GQA
#
# Many open models ship GQA. Here are some, with an MQA and an MHA model for comparison, from their
# published configs (`attnlab.sizing.MODELS`), in bfloat16, all layers:

# %% slideshow={"slide_type": "-"}
rows = ["| model | query heads n_h | K/V heads n_g | group size r | bytes per token | as MHA (what-if) | saved |",
        "|---|---|---|---|---|---|---|"]
for key in ("llama-3-8b", "llama-3-70b", "mistral-7b", "qwen2.5-7b", "deepseek-67b", "falcon-7b", "llama-2-7b"):
    spec = MODELS[key]
    own = sizing.cache_bytes_per_token(spec)
    mha = sizing.cache_bytes_per_token(spec, scheme="mha")
    rows.append(f"| {spec.name} ({spec.attention.upper()}) | {spec.n_heads} | {spec.n_kv_heads} | {spec.group_size} "
                f"| {own:,} ({format_bytes(own)}) | {format_bytes(mha)} | {format_ratio(mha / own)}× |")
display(Markdown("\n".join(rows)))

# %% [markdown] slideshow={"slide_type": "subslide"}
# ### DeepSeek-V3 does not use GQA
#
# One summary of the video says GQA uses *"16 groups in DeepSeek V3/R1"* for an *"8-fold memory
# reduction"*. The arithmetic is right, the attribution is not: DeepSeek-V3 (and R1, built on it) uses
# multi-head latent attention (from chapter 7 on). 16 K/V heads on its 128 query heads is a **what-if**:

# %% jupyter={"source_hidden": true} slideshow={"slide_type": "-"} tags=["hide-input"]
v3 = MODELS["deepseek-v3"]
what_if = sizing.cache_bytes_per_token(v3, scheme="gqa", n_kv_heads=16)
v3_mha = sizing.cache_bytes_per_token(v3, scheme="mha")
v3_mla = sizing.cache_bytes_per_token(v3)
display(Markdown(
    f"**What-if, not DeepSeek-V3's design:** {v3.name}'s shape with GQA and 16 K/V heads caches "
    f"{sizing.kv_formula(v3, 'gqa', 16)} numbers per token and layer, {what_if:,} B ({format_bytes(what_if)}) "
    f"per token over {v3.n_layers} layers: **{format_ratio(sizing.reduction_vs_mha(v3, 'gqa', 16))}×** less "
    f"than MHA's {format_bytes(v3_mha)}. **As published**, {v3.name} uses `{v3.attention}` and caches "
    f"{sizing.kv_formula(v3)} numbers per token and layer, {format_bytes(v3_mla)} per token: "
    f"{format_ratio(sizing.reduction_vs_mha(v3))}× less than MHA, as small as GQA with "
    f"{sizing.kv_elements_per_token(v3) / sizing.kv_elements_per_token(v3, 'gqa', 1):.2f} K/V heads."
))

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 7. Live: which query heads share which K/V head
#
# Pick a model; the slider offers **only** the K/V-head counts its query heads allow (the divisors of
# n_h). The diagram shows the groups; the table shows what one token costs in the cache, from
# `attnlab.sizing`. Try Falcon-7B (71 heads, a prime) and DeepSeek-V3 (a what-if throughout).

# %% slideshow={"slide_type": "-"}
gqa_widgets.gqa_explorer("llama-3-8b")

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 8. What it costs
#
# GQA trades cache for quality, one factor of r at a time. The arithmetic stays the same: every query
# head still scores every cached key (chapter 5). Here is the trade for the tiny model: each point is a
# validation loss against the cache bytes per token, for the mean-pooled conversions (no uptraining),
# the uptrained conversion, and the three models trained from scratch.

# %% slideshow={"slide_type": "-"}
scratch = {"tiny_mha": tiny_mha, "tiny_gqa": tiny_gqa, "tiny_mqa": load_checkpoint("tiny_mqa")}
scratch_losses = {name: (mha_loss if name == "tiny_mha" else scratch_loss if name == "tiny_gqa"
                         else evaluate(model, val_data, EVAL)) for name, model in scratch.items()}


def tiny_cache_bytes_per_token(model: TinyLM) -> int:
    """2 x n_kv_heads x head_dim x layers x bytes per number (4 in float32)."""
    attn = model.config.attention_config()
    return attn.cache_elements_per_token() * model.config.n_layers * model.embed.weight.element_size()


xs = [tiny_cache_bytes_per_token(conversions[n]) for n in kv_options]
fig = figures.new_figure("Cache against quality on the tiny model (hover a point; click the legend to hide a set)",
                         f"KV-cache bytes per token ({tiny_mha.config.n_layers} layers, float32)",
                         "validation loss (nats per token)", log_x=True, height=420)
hover = "%{text}<br>%{x:,} B per token<br>loss %{y:.3f}<extra></extra>"  # losses to 3 decimals, as printed above
fig.add_scatter(x=xs, y=[round(conv_loss[n], 3) for n in kv_options], mode="lines+markers+text",
                line=dict(color=COLORS["muted"], dash="dash"), marker=dict(size=9, color=COLORS["muted"]),
                text=[f"n_g = {n}" for n in kv_options], hovertemplate=hover,
                textposition=["top right"] * (len(kv_options) - 1) + ["top left"],
                name="tiny_mha mean-pooled, no uptraining")
for name, model in scratch.items():
    style = figures.scheme_style(model.config.attention_config().kind)
    fig.add_scatter(x=[tiny_cache_bytes_per_token(model)], y=[round(scratch_losses[name], 3)], mode="markers",
                    marker=dict(symbol=style["symbol"], size=13, color=style["color"]), text=[name],
                    hovertemplate=hover, name=f"{name}, trained from scratch (one seed)")
fig.add_scatter(x=[tiny_cache_bytes_per_token(student)], y=[round(uptrained_loss, 3)], mode="markers",
                marker=dict(symbol="star", size=18, color=SCHEME_COLORS["gqa"], line=dict(color=figures.INK, width=1)),
                text=[f"n_g = {n_g}, uptrained"], hovertemplate=hover,
                name=f"n_g = {n_g} conversion + {UPTRAIN.steps} steps uptraining")
fig.update_xaxes(tickvals=xs, ticktext=[f"{x:,} B" for x in xs])
fig.update_layout(legend=dict(orientation="h", x=0, y=-0.2, xanchor="left", yanchor="top"), height=480)
figures.show(fig, "ch06-cache-vs-quality")

# %% [markdown] slideshow={"slide_type": "subslide"}
# ### Several seeds, parameters matched
#
# The three from-scratch points above are one seed each, and their models differ in size (sharing K/V heads
# removes parameters). The course's quality study (`attnlab.quality`) trains MHA, GQA and MQA with several
# seeds each, the MLP of the smaller models widened until the parameter counts agree within 2%, and scores
# every model on the whole validation split:

# %% slideshow={"slide_type": "-"}
study = quality.load_study()
display(Markdown(study.markdown(("mha", "gqa", "mqa"))))
fig, ax = plt.subplots(figsize=(6.5, 3.6))
plots.seed_spread(study, ("mha", "gqa", "mqa"), ax=ax)
fig.tight_layout()
plt.show()

# %% jupyter={"source_hidden": true} slideshow={"slide_type": "fragment"} tags=["hide-input"]
gqa_mqa, gqa_mha = study.gap("gqa", "mqa"), study.gap("gqa", "mha")
display(Markdown(
    f"- **GQA against MQA:** {gqa_mqa.words()}.\n"
    f"- **GQA against MHA:** {gqa_mha.words()}.\n\n"
    f"The GQA paper's claim, that GQA keeps quality closer to MHA than MQA does, is measured on T5-XXL "
    f"(below); on {study.summary('gqa').params / 1e6:.2f}M-parameter models trained on "
    f"{study.tokens_seen() / 1e6:.1f}M tokens of {study.recipe['seq_len']}-token windows the gaps are "
    f"thousandths of a nat, and only a gap beyond twice the seeds' standard deviation is told apart from luck "
    f"here. What the tiny regime cannot show is the regime GQA was made for: long contexts and big batches, "
    f"where the cache, not the loss, decides what fits."
))


# %% [markdown] slideshow={"slide_type": "subslide"}
# At scale, the GQA paper measured the same trade on T5-XXL: the MHA model against MQA and GQA versions
# converted from it and uptrained with 5% of the pre-training compute (average score over the paper's
# tasks, and inference time in seconds, as the paper reports them):

# %% slideshow={"slide_type": "-"}
rows = ["| T5-XXL | average score | inference time (s) | time against MHA |", "|---|---|---|---|"]
for name, (score, seconds) in t5.items():
    speed = "reference" if name == "MHA" else f"{t5['MHA'][1] / seconds:.1f}× faster"
    rows.append(f"| {name} | {score} | {seconds} | {speed} |")
display(Markdown("\n".join(rows)))
display(Markdown(
    f"GQA with 8 groups kept all but {t5['MHA'][0] - t5['GQA-8'][0]:.1f} points of MHA's score while running "
    f"{t5['MHA'][1] / t5['GQA-8'][1]:.1f}× faster; MQA gained a little more speed "
    f"({t5['MHA'][1] / t5['MQA'][1]:.1f}×) and lost {t5['MHA'][0] - t5['MQA'][0]:.1f} points."
))

# %% slideshow={"slide_type": "subslide"}
rows = ["| K/V heads n_g | group size r | tiny: cache bytes/token | tiny: loss after pooling | "
        "Llama-3-70B shape: bytes/token | vs MHA |", "|---|---|---|---|---|---|"]
llama70 = MODELS["llama-3-70b"]
for n in kv_options:
    n_kv = llama70.n_heads // (tiny_mha.config.n_heads // n)
    big = sizing.cache_bytes_per_token(llama70, scheme="gqa", n_kv_heads=n_kv)
    saved = sizing.cache_bytes_per_token(llama70, scheme="mha") / big
    rows.append(f"| {n} | {tiny_mha.config.n_heads // n} | {tiny_cache_bytes_per_token(conversions[n]):,} B "
                f"| {conv_loss[n]:.3f} | {format_bytes(big)} | {format_ratio(saved)}× |")
display(Markdown(
    f"The same group sizes r on the tiny model and on {llama70.name}'s shape ({llama70.n_heads} query heads; "
    f"it ships r = {llama70.group_size}):\n\n"
    + "\n".join(rows)
))

# %% [markdown] slideshow={"slide_type": "slide"}
# ## Exercises
#
# Replace each `None` with your answer and run the check below it. Worked solutions are in
# `notebooks/solutions/ch06.py`.
#
# **Exercise 1.** Write the paper's conversion for one weight: a function `(w, n_heads, n_kv_heads)` that
# takes a key (or value) projection weight `w` of shape (n_heads · d_h, d_model), whose rows
# h·d_h … (h+1)·d_h − 1 belong to head h, and returns the mean-pooled weight of shape
# (n_kv_heads · d_h, d_model). The check compares it with `mha_to_gqa`, which you may not call.

# %% slideshow={"slide_type": "-"}
answer_mean_pool = None  # a function (w, n_heads, n_kv_heads) -> tensor

# %% slideshow={"slide_type": "-"}
print(ch06.check_mean_pool(answer_mean_pool))

# %% [markdown] slideshow={"slide_type": "subslide"}
# **Exercise 2.** Write causal grouped-query attention as a function `(q, k, v) -> out` with `q` of shape
# (batch, n_heads, seq, d) and `k`, `v` of shape (batch, n_kv_heads, seq, d): query head $h$ reads KV head
# $\lfloor h / r \rfloor$, $r$ = n_heads / n_kv_heads. Without `grouped_attention`, `repeat_kv` or
# `F.scaled_dot_product_attention` (the check notices); viewing `q` as groups lets broadcasting share K and V.

# %% slideshow={"slide_type": "-"}
answer_gqa_attention = None  # a function (q, k, v) -> out of shape (batch, n_heads, seq, d)

# %% slideshow={"slide_type": "-"}
print(ch06.check_gqa_attention(answer_gqa_attention))

# %% [markdown] slideshow={"slide_type": "subslide"}
# **Exercise 3 (predict, then run).** Llama-3-8B has 32 query heads and 8 KV heads. One decode step at 8,192
# tokens of context: what fraction of the attention FLOPs of an MHA version (32 KV heads) does it spend?
# Write your guess first; the check cell computes it.

# %% slideshow={"slide_type": "-"}
prediction_gqa_flops = None  # a positive number: GQA FLOPs / MHA FLOPs

# %% slideshow={"slide_type": "-"}
print(ch06.check_prediction_gqa_flops(prediction_gqa_flops))
