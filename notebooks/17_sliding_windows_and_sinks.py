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
# # Chapter 17 · Sliding windows, sinks and shared KV
#
# > **What you will learn:** sliding-window attention and its rolling cache, local and global layers as
# > Mistral, Gemma and gpt-oss mix them, attention sinks (kept first tokens and learned sink logits), layers
# > that share another layer's keys and values, and what each costs in quality on the tiny model.
# >
# > **What it assumes:** [chapters 4 to 6](04_kv_caching.ipynb): the KV cache, MQA and GQA.
#
# Every scheme so far shrank what one token leaves in the cache (fewer K/V heads, a latent) or how many
# cached tokens a query reads (DSA). The cache itself still grew with every token, in every layer.
# The model cards of 2024-2026 show a different lever, one that bounds **how many tokens a layer keeps**:
#
# * **Mistral 7B v0.1** (2023): every layer attends to the last 4,096 tokens only, and its cache is a
#   ring of 4,096 slots that never grows.
# * **Gemma 2** (2024) alternates such *local* layers (window 4,096) with *global* ones; **Gemma 3** (2025)
#   has five local layers (window 1,024) for each global one.
# * **gpt-oss** (OpenAI, August 2025) alternates 128-token windows with full layers and gives every
#   head a learned **attention sink**, a logit that takes part of the softmax and caches nothing.
# * **Gemma 3n and Gemma 4** let their last layers **share** the K/V of an earlier layer and cache none.
#
# This chapter builds sliding-window attention with its rolling cache, the sinks (StreamingLLM's kept
# first tokens and gpt-oss's learned logit), and cross-layer KV sharing; checks each against the plain
# attention it replaces and against Hugging Face's `GptOssAttention`; trains the tiny model with them; and
# measures what they do to quality and to real models' caches.

# %% slideshow={"slide_type": "-"}
import matplotlib.pyplot as plt
import torch
from IPython.display import Markdown, display
from matplotlib.patches import Rectangle

from attnlab import costs, show_source, sizing
from attnlab.exercises import ch17
from attnlab.gqa import AttentionConfig, grouped_attention
from attnlab.interactive import window as window_widgets
from attnlab.model import TinyLM, checkpoint_metrics, load_checkpoint, tiny_config
from attnlab.plots import COLORS
from attnlab.rope import apply_rope
from attnlab.schemes import get_scheme
from attnlab.train import TrainConfig, evaluate, token_ids
from attnlab.window import (
    PATTERNS,
    RollingCache,
    SharedKVAttention,
    WindowConfig,
    WindowedAttention,
    sliding_window_mask,
    softmax_with_sink,
    window_mask,
)

torch.manual_seed(0)
torch.set_num_threads(1)  # the tiny model's matrices are too small to gain from more threads
F64 = torch.float64
SLIDING, GLOBAL = get_scheme("gqa_window").color, get_scheme("gqa").color  # local and global layers
SINK, NEW, HELD = COLORS["latent"], COLORS["value"], "#c6dbef"  # the ring's slots

# %% [markdown] slideshow={"slide_type": "subslide"}
# ### The idea, animated
#
# The chapter in one short animation. It plays here once the videos are rendered (`./course animations`);
# until then, and in static exports, the last frame stands in.

# %% slideshow={"slide_type": "-"}
from attnlab.media import show_animation

show_animation("SlidingWindowScene")

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 1. Which layers slide, in the published configs
#
# A config lists each layer's kind (Hugging Face's `layer_types`, 0-based). The rule behind each pattern:
# layer $i$ is global iff $(i + 1) \bmod g = 0$, with $g = 2$ for Gemma 2 and gpt-oss, $g = 6$ for Gemma 3,
# and no global layer at all in Mistral 7B v0.1. `attnlab.window.PATTERNS` holds them with their sources;
# the tests check them against transformers' own configs.

# %% slideshow={"slide_type": "-"}
fig, ax = plt.subplots(figsize=(10, 2.6))
for row_i, pattern in enumerate(PATTERNS.values()):
    for i, kind in enumerate(pattern.layer_types()):
        colour = SLIDING if kind == "sliding_attention" else GLOBAL
        ax.add_patch(Rectangle((i, -row_i - 0.4), 0.9, 0.8, color=colour))
    ax.text(-1, -row_i, f"{pattern.name}  (W = {pattern.window:,})", ha="right", va="center", fontsize=9)
ax.set_xlim(-22, 63)
ax.set_ylim(-len(PATTERNS) + 0.4, 1.0)
ax.set_yticks([])
ax.set_xticks([0, 10, 20, 30, 40, 50, 60])
ax.set_xlabel("layer (0-based)")
ax.spines[["left", "top", "right"]].set_visible(False)
ax.add_patch(Rectangle((40, 0.55), 0.9, 0.35, color=SLIDING))
ax.text(41.5, 0.72, "sliding (local)", va="center", fontsize=9)
ax.add_patch(Rectangle((50, 0.55), 0.9, 0.35, color=GLOBAL))
ax.text(51.5, 0.72, "full (global)", va="center", fontsize=9)
plt.tight_layout()
plt.show()

# %% slideshow={"slide_type": "-"}
lines = ["| model | layers | sliding / global | window | cache at its longest context | all global | smaller |",
         "|---|---|---|---|---|---|---|"]
for key in ("mistral-7b-v0.1", "gemma-2-9b", "gemma-3-27b", "gpt-oss-120b", "gemma-4-e2b"):
    spec = sizing.MODELS[key]
    L = spec.max_context
    published = sizing.kv_cache_bytes(spec, L)
    every_layer = costs.windowed_cache_bytes(spec.attention, spec.attention_shape(), L, "bfloat16")
    kinds = spec.layer_types
    lines.append(f"| {spec.name} | {spec.n_layers} | {kinds.count('sliding')} / {kinds.count('full')} | "
                 f"{spec.sliding_window:,} | {sizing.format_bytes(published)} at {L:,} | "
                 f"{sizing.format_bytes(every_layer)} | {every_layer / published:.1f}× |")
display(Markdown("\n".join(lines) + "\n\nbf16, batch 1, `sizing.kv_cache_bytes` layer by layer; \"all global\": "
                 "the same heads with no window and no sharing (for Gemma 4 E2B, whose global layers are wider "
                 "and whose last 20 layers share, the every-layer figure uses its sliding layers' heads)."))

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 2. The mask: a window, and sinks beside it
#
# Causal attention lets query $i$ see every key $j \le i$. A **sliding window** of $W$ keeps the last $W$
# of them, the query's own key included (Beltagy et al. 2020; Mistral 7B, sec. 2):
#
# $$M_{ij} = \begin{cases} 0 & i - W < j \le i \\ -\infty & \text{otherwise} \end{cases}
#   \qquad\Longrightarrow\qquad \text{a layer needs at most the last } W \text{ keys.}$$
#
# **Sinks** (StreamingLLM, Xiao et al. 2023, sec. 3.2) keep the first $S$ tokens visible to every query as well:
# $M_{ij} = 0$ also for $j < S$ (and $j \le i$). Stacked layers still pass information further back: after
# $l$ local layers a token can depend on $l(W - 1)$ tokens before it.

# %% slideshow={"slide_type": "-"}
show_source(window_mask, start="i, j = q_positions", stop="return allowed")

# %% slideshow={"slide_type": "-"}
n_show, w_show, s_show = 12, 4, 2
masks = {"causal (full)": sliding_window_mask(n_show),
         f"window W = {w_show}": sliding_window_mask(n_show, w_show),
         f"W = {w_show} + {s_show} sinks": sliding_window_mask(n_show, w_show, s_show)}
fig, axes = plt.subplots(1, 3, figsize=(11, 3.9))
for ax, (title, m) in zip(axes, masks.items(), strict=True):
    ax.imshow(m.numpy(), cmap="Blues", vmin=-0.3, vmax=1.2)
    ax.set_title(f"{title}: {int(m.sum())} pairs", fontsize=10)
    ax.set_xlabel("key j")
    ax.set_xticks(range(0, n_show, 2))
    ax.set_yticks(range(0, n_show, 2))
axes[0].set_ylabel("query i")
plt.tight_layout()
plt.show()

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 3. The rolling cache, token by token
#
# Since query $t$ never looks further back than $t - W + 1$, token $t$ can be written over token $t - W$:
# a ring of $W$ slots, token $t$ in slot $t \bmod W$ (Mistral's "rolling buffer cache"). With $S$ sinks the
# ring has $S + W$ slots; the sinks keep slots $0 \dots S-1$ and the window's tokens are counted from $S$:
#
# $$\text{slot}(t) = \begin{cases} t & t < S \\ S + (t - S) \bmod W & t \ge S. \end{cases}$$
#
# The slots end up out of order, so the cache also records each slot's position and the layer masks by
# position: softmax does not care in which order the keys come.

# %% slideshow={"slide_type": "-"}
show_source(RollingCache._write, start="keep = ", stop="self._positions[slots] = kept")

# %% slideshow={"slide_type": "-"}
W_RING, S_RING, T_RING = 4, 1, 10
ring = RollingCache(W_RING, S_RING)
held_by_step = []
for _ in range(T_RING):
    ring.update(k=torch.zeros(1, 1, 1, 1))
    held_by_step.append(ring.positions.tolist())
fig, ax = plt.subplots(figsize=(7.5, 4.4))
for t, held in enumerate(held_by_step):
    for slot, pos in enumerate(held):
        colour = "#eeeeee" if pos < 0 else SINK if pos < S_RING else NEW if pos == t else HELD
        ax.add_patch(Rectangle((slot, -t - 0.45), 0.92, 0.9, color=colour))
        if pos >= 0:
            ax.text(slot + 0.46, -t, str(pos), ha="center", va="center", fontsize=10)
ax.set_xlim(-0.1, S_RING + W_RING)
ax.set_ylim(-T_RING + 0.4, 0.6)
ax.set_xticks([s + 0.46 for s in range(S_RING + W_RING)], [f"slot {s}" for s in range(S_RING + W_RING)])
ax.set_yticks([-t for t in range(T_RING)], [f"t = {t}" for t in range(T_RING)])
ax.set_title(f"S = {S_RING} sink (purple) + W = {W_RING}: token t (orange) overwrites token t − W", fontsize=10)
ax.spines[:].set_visible(False)
plt.tight_layout()
plt.show()

# %% [markdown] slideshow={"slide_type": "subslide"}
# ### Windowed decoding equals masked full attention
#
# `WindowedAttention` is chapter 6's grouped-query layer with the mask above (and, for gpt-oss, a learned
# sink). Decoding through the ring, one token at a time or in chunks, must give exactly what one pass of
# masked attention over the whole sequence gives. In float64 on a random layer:

# %% slideshow={"slide_type": "-"}
show_source(WindowedAttention.forward, start="start = 0 if cache", stop="out, weights = window_attention(")

# %% slideshow={"slide_type": "-"}
layer = WindowedAttention(AttentionConfig(32, 4, 2), WindowConfig(window=5, n_sinks=2)).double()
x = torch.randn(2, 40, 32, dtype=F64)
with torch.no_grad():
    full = layer(x).output  # one pass, the mask of section 2
    cache = layer.window.new_cache()
    steps = [layer(x[:, :9], cache=cache).output] + [layer(x[:, t:t + 1], cache=cache).output for t in range(9, 40)]
gap = (torch.cat(steps, dim=1) - full).abs().max().item()
display(Markdown(
    f"A prefill of 9 tokens, then 31 decode steps, through a ring of {cache.slots} slots: largest difference "
    f"from the one-pass masked attention **{gap:.1e}** (float64). After {cache.seq_len} tokens the ring holds "
    f"{cache.n_tokens} of them, {cache.nbytes:,} bytes, as it did after {cache.slots}."))

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 4. Attention sinks
#
# **Why the first tokens.** Softmax must give every query weights that sum to 1. A head with nothing
# useful to read still has to put its weight somewhere, and large trained models learn to dump it on
# the first tokens, whatever they say (StreamingLLM, sec. 3.1: in Llama-2 most layers give the first
# tokens a large share). Slide a window past them and that weight lands on tokens that were never meant to
# receive it: StreamingLLM reports perplexity exploding as soon as the first tokens are evicted, and
# recovering when just 4 of them are kept next to the window.
#
# Does the tiny model park attention on its first token? Measured on validation text, per layer: the mean
# weight queries at positions 32-127 give to token 0, against the $1/(t+1)$ a uniform head would give.

# %% slideshow={"slide_type": "-"}
gqa = load_checkpoint("tiny_gqa")
val = token_ids("val")
ids = val[:128][None]
with torch.no_grad():
    _, maps = gqa(ids, return_attention=True)
uniform = float((1.0 / torch.arange(33, 129, dtype=F64)).mean())
share0 = [a[0, :, 32:, 0].mean(dim=-1) for a in maps]  # (heads,) per layer
rows = "\n".join(f"| {i} | {float(s.mean()):.4f} | {float(s.max()):.4f} |" for i, s in enumerate(share0))
display(Markdown(
    "| layer | mean weight on token 0 | the most a head gives |\n|---|---|---|\n" + rows +
    f"\n\nA uniform head would give {uniform:.4f}. " +
    ("No layer of the tiny model parks attention on its first token: trained on 128-token windows of text, it "
     "has not grown the sinks large models have, so the test of windowing below is gentle for it."
     if max(float(s.max()) for s in share0[1:]) < 2 * uniform else
     "Some heads give token 0 far more than a uniform head would: a sink.")))

# %% [markdown] slideshow={"slide_type": "subslide"}
# ### Windowing a trained model at inference
#
# StreamingLLM's experiment on the tiny GQA model: keep its weights, apply a window at inference (every
# layer), with and without $S = 4$ sink tokens, and measure the validation loss (the same 8 batches of
# 16 × 128 tokens its stored loss was measured on).

# %% slideshow={"slide_type": "-"}
train_cfg = TrainConfig()
base_loss = evaluate(gqa, val, train_cfg)  # the shipped (float16) weights, the batches of its stored loss
windows = (8, 16, 32)
window_loss = {}
for w in windows:
    for s in (0, 4):
        windowed = TinyLM(tiny_config("gqa", window=w, n_sinks=s))
        windowed.load_state_dict(gqa.state_dict())  # the same weights: WindowedAttention is GQA with a mask
        window_loss[w, s] = evaluate(windowed.eval(), val, train_cfg)
display(Markdown(
    "| window W | loss, no sinks | loss, 4 sinks |\n|---|---|---|\n" +
    "\n".join(f"| {w} | {window_loss[w, 0]:.4f} | {window_loss[w, 4]:.4f} |" for w in windows) +
    f"\n\nWithout a window: {base_loss:.4f}. A window of {windows[0]} costs "
    f"{window_loss[windows[0], 0] - base_loss:+.3f} nats over none; four sinks win back "
    f"{window_loss[windows[0], 0] - window_loss[windows[0], 4]:.3f} of that. The tiny model degrades smoothly as "
    "the window shrinks, without StreamingLLM's collapse, as expected of a model without sinks."))

# %% [markdown] slideshow={"slide_type": "subslide"}
# ### gpt-oss's learned sink
#
# gpt-oss does not keep tokens; each query head $h$ learns one logit $s_h$ that joins the softmax's
# denominator and nothing else (OpenAI's reference `sdpa` in `gpt_oss/torch/model.py`; transformers'
# `eager_attention_forward`):
#
# $$a_{ij} = \frac{e^{z_{ij}}}{e^{s_h} + \sum_k e^{z_{ik}}}
#   = \operatorname{softmax}\bigl([z_{i1}, \dots, z_{in}, s_h]\bigr)_j, \quad j \le n .$$
#
# The row then sums to less than 1: the head may attend to *nothing*, and the sink caches nothing.

# %% slideshow={"slide_type": "-"}
show_source(softmax_with_sink, start="s = sink.view", stop="return exp /")

# %% slideshow={"slide_type": "-"}
z = torch.tensor([[[[2.0, 1.0, 0.5, -1.0]]]], dtype=F64)  # one head, one query, four keys
sink_rows = []
for s_h in (-4.0, 0.0, 2.0, 4.0):
    a = softmax_with_sink(z, torch.tensor([s_h], dtype=F64))[0, 0, 0]
    sink_rows.append(f"| {s_h:+.0f} | {', '.join(f'{v:.3f}' for v in a.tolist())} | {float(a.sum()):.3f} |")
combined = torch.softmax(torch.cat([z, torch.zeros(1, 1, 1, 1, dtype=F64)], dim=-1), dim=-1)[..., :-1]
same = torch.allclose(combined, softmax_with_sink(z, torch.zeros(1, dtype=F64)), rtol=1e-15, atol=1e-15)
display(Markdown(
    "| sink logit s_h | weights on the four keys | row sum |\n|---|---|---|\n" + "\n".join(sink_rows) +
    f"\n\nAppending $s_h$ as a fifth score, taking softmax and dropping its column gives the same weights: "
    f"**{same}**. The tests match transformers' `GptOssAttention` (a sliding layer of window 2, 3 or 6 and a full "
    "layer, both with sinks) to 1e-12 in float64, prefill and token by token."))

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 5. Sharing K/V across layers
#
# A layer may attend with its own queries to the keys and values **another layer** computed, and then it
# needs no $W^K$, $W^V$ and no cache of its own:
#
# * **CLA** (Cross-Layer Attention, Brandon et al. 2024, sec. 2): every second layer reuses the K/V of the
#   layer below. The paper reports that combined with MQA it halves MQA's cache again at nearly MQA's accuracy.
# * **YOCO** (Sun et al. 2024): the upper half of the model reads one global cache made by the lower half.
# * **Gemma 3n / Gemma 4** (`num_kv_shared_layers`): the last layers read the cache of the last non-shared
#   layer of the same kind (Gemma 4 E2B: its last 20 of 35 layers cache nothing).
#
# $$y^{(\ell)} = \operatorname{softmax}\!\Bigl(\tfrac{q^{(\ell)} K^{(\text{src})\top}}{\sqrt{d_h}} + M\Bigr)
#   V^{(\text{src})} W^{O(\ell)}, \qquad q^{(\ell)} = \operatorname{RoPE}(W^{Q(\ell)} x^{(\ell)}).$$

# %% slideshow={"slide_type": "-"}
show_source(SharedKVAttention.forward, start="k, v, k_positions, q_positions = self.source.last_kv",
            stop="out, weights = window_attention(")

# %% slideshow={"slide_type": "-"}
torch.manual_seed(1)
source = WindowedAttention(AttentionConfig(32, 4, 2)).double()
shared = SharedKVAttention(source.config, source).double()
x_src, x_top = torch.randn(1, 12, 32, dtype=F64), torch.randn(1, 12, 32, dtype=F64)
with torch.no_grad():
    source(x_src)  # the layer below runs first and leaves its K/V
    y = shared(x_top).output
    _, k_src, v_src = source.project(x_src)  # recompute: the source's K/V, the shared layer's own queries
    q_top = shared.w_q(x_top).view(1, 12, 4, 8).transpose(1, 2)
    o, _ = grouped_attention(apply_rope(q_top, torch.arange(12)), k_src, v_src)
    recomputed = shared.w_o(o.transpose(1, 2).reshape(1, 12, -1))
saved = sum(p.numel() for p in source.parameters()) - sum(p.numel() for p in shared.parameters())
display(Markdown(
    f"The shared layer against recomputing with the source layer's K/V: largest difference "
    f"**{(y - recomputed).abs().max().item():.1e}**. It has {saved:,} fewer weights ($W^K$, $W^V$) and "
    "caches nothing."))

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 6. Quality against cache, measured
#
# The tiny model gets both variants and is trained exactly like the others (same data, steps, seed):
#
# * `tiny_gqa_window`: GQA with 2 K/V heads, every layer sliding with a window $W$ and $S$ sink tokens kept;
# * `tiny_gqa_shared`: GQA with 2 K/V heads, layers 1 and 3 reading the K/V of layers 0 and 2 (CLA, factor 2).
#
# The cache is counted at the 128-token sequences the models are evaluated on, in bf16, batch 1.

# %% slideshow={"slide_type": "-"}
L_EVAL = train_cfg.seq_len
win_cfg = load_checkpoint("tiny_gqa_window").config
share = load_checkpoint("tiny_gqa_shared").config.kv_share
display(Markdown(f"`tiny_gqa_window`: W = {win_cfg.window}, S = {win_cfg.n_sinks}. `tiny_gqa_shared`: kv_share = "
                 f"{share}, layer i reads the K/V of layer i − (i mod {share})."))
points = {}
for name in ("tiny_mha", "tiny_gqa", "tiny_mqa", "tiny_mla", "tiny_gqa_window", "tiny_gqa_shared"):
    config = load_checkpoint(name).config
    c = config
    windows_ = [c.layer_window(i).window for i in range(c.n_layers)] if c.windowed else None
    sources = [c.kv_source(i) for i in range(c.n_layers)] if c.windowed else None
    nbytes = costs.windowed_cache_bytes(c.attention, c.attention_shape(), L_EVAL, "bfloat16", windows_,
                                        c.n_sinks, sources)
    points[name] = (nbytes, checkpoint_metrics(name)["val_loss"])
fig, ax = plt.subplots(figsize=(8, 4.2))
for name, (nbytes, loss) in points.items():
    scheme = get_scheme(name.removeprefix("tiny_"))
    ax.scatter(nbytes / 1024, loss, color=scheme.color, marker=scheme.marker, s=70, label=f"{name} (trained)",
               zorder=3)
gqa_bytes = points["tiny_gqa"][0]
inference = [(costs.windowed_cache_bytes("gqa", gqa.config.attention_shape(), L_EVAL, "bfloat16",
                                         [w] * gqa.config.n_layers, 4) / 1024, window_loss[w, 4]) for w in windows]
ax.plot(*zip(*inference, strict=True), color=COLORS["muted"], ls="--", marker=".",
        label="tiny_gqa, window at inference (S = 4)")
for (kib, loss), w in zip(inference, windows, strict=True):
    ax.annotate(f"W={w}", (kib, loss), textcoords="offset points", xytext=(4, 4), fontsize=8)
ax.set_xscale("log")
ax.set_xlabel(f"KV cache at {L_EVAL} tokens (KiB, bf16, log scale)")
ax.set_ylabel("validation loss (nats)")
ax.legend(fontsize=8, loc="upper right")
ax.grid(alpha=0.3)
plt.tight_layout()
plt.show()

# %% jupyter={"source_hidden": true} slideshow={"slide_type": "-"} tags=["hide-input"]
win_bytes, win_loss = points["tiny_gqa_window"]
sh_bytes, sh_loss = points["tiny_gqa_shared"]
mqa_bytes, mqa_loss = points["tiny_mqa"]
gqa_loss = points["tiny_gqa"][1]
window_config = load_checkpoint("tiny_gqa_window").config
held_window = costs.window_cache_tokens(L_EVAL, window_config.window, window_config.n_sinks)
at_inference = window_loss[window_config.window, window_config.n_sinks]  # tiny_gqa, same window, no training
display(Markdown(
    f"* **Window.** `tiny_gqa_window` keeps {win_bytes / gqa_bytes:.0%} of GQA's cache at {L_EVAL} tokens and "
    f"its validation loss is {win_loss - gqa_loss:+.3f} nats from GQA's; applying the same window to the "
    f"full-attention checkpoint at inference gives {at_inference - gqa_loss:+.3f}. "
    + ("Training with the window did not beat windowing a model trained without it here"
       if win_loss >= at_inference else "Training with the window beat windowing a model trained without it")
    + f" ({abs(win_loss - at_inference):.3f} nats apart): one training run each cannot separate differences "
    "this small from seed noise.\n"
    f"* **Sharing.** `tiny_gqa_shared` holds the same cache as `tiny_mqa` ({sh_bytes:,} against "
    f"{mqa_bytes:,} bytes): two layers with 2 K/V heads instead of four with one. Its loss is "
    f"{abs(sh_loss - mqa_loss):.3f} nats {'below' if sh_loss < mqa_loss else 'above'} MQA's and "
    f"{abs(sh_loss - gqa_loss):.3f} {'below' if sh_loss < gqa_loss else 'above'} GQA's: the comparison the CLA "
    "paper makes at equal cache.\n"
    "* A window's saving grows with the context (it is a constant past $S + W$), sharing's does not: at "
    f"{L_EVAL} tokens the windowed model already holds {L_EVAL / held_window:.1f}× fewer tokens per layer; at "
    f"32,768 tokens it would hold {32_768 / held_window:.0f}× fewer, if the quality held that far, which this "
    "128-token model cannot tell."))

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 7. The real models' caches
#
# `attnlab.sizing` sizes a published model layer by layer: a sliding layer holds $\min(L, W)$ tokens, a
# shared layer none. The explorer below starts from a published model's heads and layers (bf16, batch 1)
# and lets you change its window, sinks and local:global ratio: the cache of every layer global against the
# cache with your pattern, over contexts from 1K to 1M tokens.

# %% [markdown] slideshow={"slide_type": "subslide"}
# ### Explorer: window, sinks, local:global, context

# %% slideshow={"slide_type": "-"}
explorer = window_widgets.window_explorer("gpt-oss-120b", context=131_072)
explorer

# %% [markdown] slideshow={"slide_type": "subslide"}
# ### What the explorer shows

# %% jupyter={"source_hidden": true} slideshow={"slide_type": "-"} tags=["hide-input"]
oss = window_widgets.explorer_numbers("gpt-oss-120b", 128, 0, 2, 131_072)
oss_all = window_widgets.explorer_numbers("gpt-oss-120b", 128, 0, 0, 131_072)
g3 = window_widgets.explorer_numbers("gemma-3-27b", 1024, 0, 6, 131_072)
display(Markdown(
    f"* gpt-oss-120b at 131,072 tokens: {sizing.format_bytes(oss['windowed'])} against "
    f"{sizing.format_bytes(oss['full'])} with every layer global, **{oss['ratio']:.2f}×**: its "
    f"{oss['n_global']} global layers hold every token, so windows on the other {oss['n_sliding']} save at most "
    f"{oss['n_layers'] / oss['n_global']:.0f}×. Sliding every layer would make it {oss_all['ratio']:,.0f}× "
    f"({sizing.format_bytes(oss_all['windowed'])}), a cache that stops growing; the published config keeps "
    "half its layers global.\n"
    f"* Gemma 3 27B: {g3['n_sliding']} local and {g3['n_global']} global layers, window 1,024: "
    f"**{g3['ratio']:.2f}×** at 131,072 tokens, against the {g3['n_layers'] / g3['n_global']:.1f}× its global "
    "layers allow at most.\n"
    "* Past the window a sliding layer's cache is flat; the global layers set the slope. That is why the "
    "designs differ mostly in their ratio, not in their window."))

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 8. What it costs
#
# Per layer, after $L$ tokens, with a window $W$ and $S$ sinks (`attnlab.costs`, chapter 17's section):
#
# | | full layer | sliding layer | shared layer |
# |---|---|---|---|
# | tokens held | $L$ | $\min(L, S + W)$ | 0 |
# | cache bytes | $2 n_g d_h b \cdot L$ | $2 n_g d_h b \cdot \min(L, S + W)$ | 0 |
# | decode FLOPs (attention) | $4 n_h d_h T$ | $4 n_h d_h \min(T, S + W)$ | $4 n_h d_h T'$ |
#
# with $T = L + 1$ keys for a decoded token and $T'$ its source's. A learned sink adds one logit per head
# and no cache. The prefill of a sliding layer scores $\sum_t \min(t, W)$ pairs instead of $L(L+1)/2$.

# %% slideshow={"slide_type": "-"}
show_source(costs.windowed_cache_bytes, start="held = layer_cache_tokens", stop="return batch *")

# %% slideshow={"slide_type": "-"}
show_source(costs.window_decode_attention_flops, start="t = window_cache_tokens", stop="return 2 *")

# %% jupyter={"source_hidden": true} slideshow={"slide_type": "-"} tags=["hide-input"]
spec = sizing.MODELS["gpt-oss-120b"]
shape = spec.attention_shape()
L = 131_072
flops_sliding = costs.window_decode_attention_flops("gqa", shape, L, spec.sliding_window)
flops_full = costs.window_decode_attention_flops("gqa", shape, L)
per_token = costs.cache_bytes_per_token("gqa", shape, "bfloat16", per_layer=True)
full_work = spec.layer_types.count("full") * flops_full  # attention FLOPs of one decoded token, all full layers
sliding_work = spec.layer_types.count("sliding") * flops_sliding
display(Markdown(
    f"gpt-oss-120b at {L:,} tokens of context, one decoded token: a sliding layer's attention costs "
    f"{flops_sliding / 1e6:,.1f} MFLOP against {flops_full / 1e9:,.2f} GFLOP in a full layer "
    f"({flops_full / flops_sliding:,.0f}×), and reads {spec.sliding_window:,} × {per_token:,} B = "
    f"{sizing.format_bytes(spec.sliding_window * per_token)} of cache against "
    f"{sizing.format_bytes(L * per_token)}. Over the whole model the full layers are "
    f"{full_work / (full_work + sliding_work):.1%} of the attention work: the windows halve the layers that "
    "grow, and those layers then dominate."))

# %% [markdown] slideshow={"slide_type": "slide"}
# ## Exercises
#
# Each exercise has an answer cell (replace `None`) and a check cell. Worked solutions are in
# `notebooks/solutions/ch17.py`; try first.
#
# **Exercise 1.** Write `ring_slot(t, window, n_sinks)`: the slot of a ring of `n_sinks + window` slots
# that token `t` is written to, the first `n_sinks` tokens being sinks that keep their slots. Then set
# `answer_ring_slot` to it.

# %% slideshow={"slide_type": "-"}
answer_ring_slot = None

# %% slideshow={"slide_type": "-"}
print(ch17.check_ring_slot(answer_ring_slot))

# %% [markdown] slideshow={"slide_type": "subslide"}
# **Exercise 2.** Write gpt-oss's softmax with a learned sink: `sink_softmax(scores, sink)` takes scores of
# shape `(b, heads, n_q, n_k)` (masked entries are `-inf`) and one logit per head, `sink` of shape `(heads,)`,
# and returns the weights, of the scores' shape. Make it safe for logits near 800.

# %% slideshow={"slide_type": "-"}
answer_sink_softmax = None

# %% slideshow={"slide_type": "-"}
print(ch17.check_sink_softmax(answer_sink_softmax))

# %% [markdown] slideshow={"slide_type": "subslide"}
# **Exercise 3 (predict, then run).** gpt-oss-120b's windows are only 128 tokens wide, against contexts of
# 131,072. Before computing anything, predict: what fraction of the cache it would have with no window at all
# does its cache hold at 131,072 tokens? Write your prediction, run the check, then compute it with
# `costs.layer_cache_tokens` and `PATTERNS["gpt-oss-120b"].windows()`.

# %% slideshow={"slide_type": "-"}
answer_gpt_oss_fraction = None

# %% slideshow={"slide_type": "-"}
print(ch17.check_gpt_oss_fraction(answer_gpt_oss_fraction))

# %% [markdown] slideshow={"slide_type": "slide"}
# ## What this chapter added to the library
#
# * `attnlab/window.py`: `window_mask`, `softmax_with_sink`, `window_attention`, `RollingCache` (the ring),
#   `WindowedAttention`, `SharedKVAttention`, the published `PATTERNS`, `from_gpt_oss`.
# * `attnlab/schemes.py`: two variants of GQA, `gqa_window` and `gqa_shared`, with their cache rules
#   (the same numbers per held token as GQA) and trainers.
# * `attnlab/costs.py`: `window_cache_tokens`, `layer_cache_tokens`, `windowed_cache_bytes`,
#   `window_decode_attention_flops`.
# * `attnlab/model.py`: the tiny model's `window`, `global_every`, `n_sinks` and `kv_share`, its rolling caches,
#   and `tiny_config`; two shipped checkpoints, `tiny_gqa_window` and `tiny_gqa_shared`.
# * Tests: windowed decode through the ring equals masked full attention, sinks equal the mask that keeps
#   the first tokens, the learned sink equals the softmax over [scores, sink] with the sink dropped, a shared
#   layer equals recomputing with its source's K/V, and transformers' `GptOssAttention` is matched in float64.
