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
# # Chapter 8 · MLA at inference time
#
# *Video chapter at 15:37.*
#
# > **What you will learn:** absorption: fold the key up-projection into the query and the value up-projection
# > into the output, so decoding attends over the latents themselves; when that makes decoding compute-bound.
# >
# > **What it assumes:** [chapter 7](07_multi_head_latent_attention.ipynb): MLA's latent and its up-
# > projections.
#
# Chapter 7 ended with a bill. MLA caches only a small latent $c^{KV}_t$ per token, but attention needs
# keys and values. Rebuilding $k^C_{t,i} = W^{UK}_i c^{KV}_t$ and $v^C_{t,i} = W^{UV}_i c^{KV}_t$ for every
# cached token at every decode step costs hundreds of times MHA's arithmetic; caching the rebuilt keys
# and values instead would throw the memory saving away.
#
# There is a third way, and it is what DeepSeek runs: **absorption**. Matrix products associate, so the
# up-projections can move out of the keys and values and into the query and the output. Attention then
# runs directly on the cached latents, and no per-head key or value ever exists. This chapter derives it,
# proves it exact on the trained tiny model, counts and times the work, and checks the layer against
# Hugging Face's implementation.

# %% slideshow={"slide_type": "skip"}
import math
import time

import matplotlib.pyplot as plt
import torch
from IPython.display import Markdown, display

from attnlab import corpus, costs, lowrank, show_source, sizing
from attnlab.exercises import ch08
from attnlab.huggingface import attention_forward
from attnlab.interactive import mla as mla_widgets
from attnlab.kv_cache import LayerCache
from attnlab.mla import MLAConfig, MultiHeadLatentAttention, from_transformers
from attnlab.model import generate, load_checkpoint
from attnlab.plots import COLORS, SCHEME_COLORS
from attnlab.sizing import MODELS, format_bytes
from attnlab.tokenization import load_tokenizer

_ = torch.manual_seed(0)
# One thread: the same float rounding on every machine, so every printed number below is reproducible.
torch.set_num_threads(1)

# %% [markdown] slideshow={"slide_type": "subslide"}
# ### The idea, animated
#
# The chapter in one short animation. It plays here once the videos are rendered (`./course animations`);
# until then, and in static exports, the last frame stands in.

# %% slideshow={"slide_type": "-"}
from attnlab.media import show_animation

show_animation("AbsorptionScene")

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 1. Absorption, step by step
#
# Take head $i$, a query token $t$ and a cached token $s$, and leave the RoPE part aside (chapter 9 puts it
# back). The content part of the score is
#
# $$q^{C\top}_{t,i}\, k^C_{s,i}
# = \left(W^{UQ}_i c^Q_t\right)^{\!\top} \left(W^{UK}_i c^{KV}_s\right)
# = c^{Q\top}_t\, W^{UQ\top}_i W^{UK}_i\, c^{KV}_s
# = \big(\underbrace{W^{UK\top}_i q^C_{t,i}}_{\tilde q_{t,i} \,\in\, \mathbb{R}^{d_c}}\big)^{\!\top} c^{KV}_s .$$
#
# The last form needs no key at all: multiply the query by $W^{UK\top}_i$ **once per query token**, and
# score the result $\tilde q_{t,i}$ directly against the cached latents. (The paper writes it as absorbing
# $W^{UK}$ into $W^{UQ}$; DeepSeek's code applies $W^{UK\top}_i$ to the query at run time, which takes fewer
# multiply-adds than one merged $d'_c \times d_c$ matrix per head would.)
#
# The values work the same way. With attention weights $a_{t,s,i}$,
#
# $$o_{t,i} = \sum_s a_{t,s,i}\, W^{UV}_i c^{KV}_s = W^{UV}_i \underbrace{\sum_s a_{t,s,i}\, c^{KV}_s}_{\tilde o_{t,i}
# \,\in\, \mathbb{R}^{d_c}},
# \qquad u_t = W^O [o_{t,1}; \dots; o_{t,n_h}] = \sum_i \left(W^O_i W^{UV}_i\right) \tilde o_{t,i},$$
#
# so $W^{UV}_i$ is applied once, after the weighted sum, and can be folded into the output projection
# $W^O$ ($W^O_i$ is the block of $W^O$'s columns that multiplies head $i$).
#
# **The MQA view.** After absorption every head scores the *same* cached vectors $[c^{KV}_s; k^R_s]$ and
# mixes the *same* $c^{KV}_s$: it is multi-query attention with one shared key of width $d_c + d_h^R$ and
# one shared value of width $d_c$, and $n_h$ query heads of width $d_c + d_h^R$.

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 2. The code, both ways
#
# `MultiHeadLatentAttention` has both forms; `layer.use("naive")` or `layer.use("absorbed")` (the default)
# picks the one its `forward` runs. The plain ("naive") form rebuilds keys and values from the latents,
# then runs ordinary multi-head attention:

# %% slideshow={"slide_type": "-"}
show_source(MultiHeadLatentAttention.attend_naive, start="k = torch.einsum", stop="return torch.einsum")

# %% [markdown] slideshow={"slide_type": "-"}
# The absorbed form folds $W^{UK}_i$ into the query (`absorbed_query`: one batched matmul, the queries of
# head $i$ times its $d_h \times d_c$ matrix), stacks every head's $[\tilde q_i; q^R_i]$ (scaled) as the rows
# of one matrix, scores them against the cached latents and RoPE keys in one matmul (plus a fused add for
# the RoPE part), mixes the latents, and applies $W^{UV}_i$ last (`absorbed_output`). No tensor with a
# per-head key or value axis for the cached tokens appears:

# %% slideshow={"slide_type": "-"}
display(show_source(MultiHeadLatentAttention.absorbed_query, start="q_latent = (", stop="q_r = q_rope"))
show_source(MultiHeadLatentAttention.attend_absorbed, start="q_c, q_r = self.absorbed_query",
            stop="return self.absorbed_output")

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 3. Proof: the same numbers
#
# Take the trained `tiny_mla` in float64, run 64 tokens of held-out text through it, and feed each layer
# its real input: a 48-token prefill into a `LayerCache`, then 16 decode steps of one token each, once in
# each mode. The two caches hold the same latents; the outputs must agree to rounding.

# %% slideshow={"slide_type": "-"}
tokenizer = load_tokenizer()
text_ids = torch.tensor([tokenizer.encode(corpus.load_text("val"))[:64]])  # (1, 64)
model64 = load_checkpoint("tiny_mla", dtype=torch.float64)
inputs = lowrank.attention_inputs(model64, text_ids)  # what each layer's attention receives, (1, 64, d_model)
n_prefill = 48
diffs, full_diffs = [], []
with torch.no_grad():
    for block, x in zip(model64.blocks, inputs, strict=True):
        outputs = {}
        for mode in ("naive", "absorbed"):
            cache = LayerCache(seq_dim=1)
            with block.attn.using(mode):  # this mode inside the block, the default (absorbed) after it
                steps = [block.attn(x[:, :n_prefill], cache=cache).output]  # prefill
                steps += [block.attn(x[:, t : t + 1], cache=cache).output for t in range(n_prefill, x.shape[1])]
            outputs[mode] = torch.cat(steps, dim=1)  # (1, 64, d_model)
        diffs.append((outputs["naive"] - outputs["absorbed"]).abs().max().item())
        full_diffs.append((outputs["absorbed"] - block.attn(x).output).abs().max().item())  # one uncached pass
scale = max(o.abs().max().item() for o in outputs.values())

# %% jupyter={"source_hidden": true} slideshow={"slide_type": "subslide"} tags=["hide-input"]
# NBVAL_IGNORE_OUTPUT
# The last bits of float64 rounding depend on the CPU's kernels, so these exact differences may change
# from machine to machine; the cell after this one checks them against a bound.
display(Markdown(
    "Largest |naive − absorbed| per layer, prefill and decode: "
    + ", ".join(f"{d:.1e}" for d in diffs)
    + f". Cached against one uncached pass: {max(full_diffs):.1e}. Outputs are of size up to {scale:.2f}."
))

# %% jupyter={"source_hidden": true} slideshow={"slide_type": "-"} tags=["hide-input"]
tolerance = 1e-12
display(Markdown(
    f"Every layer, all {x.shape[1]} positions: naive and absorbed agree to within {tolerance:g} "
    f"(**{max(diffs) < tolerance}**), and the cached steps agree with an uncached pass "
    f"(**{max(full_diffs) < tolerance}**). The difference is float64 rounding: the two forms add the same "
    "products in a different order."
))

# %% [markdown] slideshow={"slide_type": "subslide"}
# The whole model, too. Each layer keeps its form as a setting, so `use` on every block switches all four
# layers at once; `TinyLM` just calls them. Greedy generation through the cache picks the same tokens:

# %% slideshow={"slide_type": "-"}
def use_mode(model, mode):
    """Make every MLA layer of `model` run in `mode` ("naive" or "absorbed")."""
    for block in model.blocks:
        block.attn.use(mode)


prompt = text_ids[:, :16]
generated, logits = {}, {}
with torch.no_grad():
    for mode in ("naive", "absorbed"):
        use_mode(model64, mode)
        generated[mode] = generate(model64, prompt, max_new_tokens=12)
        logits[mode] = model64(text_ids)
use_mode(model64, "absorbed")
same_tokens = torch.equal(generated["naive"], generated["absorbed"])
n_new = generated["absorbed"].shape[1] - prompt.shape[1]
display(Markdown(
    f"{n_new} generated tokens identical in both modes: **{same_tokens}**. Logits of a 64-token pass agree to "
    f"within {tolerance:g}: **{(logits['naive'] - logits['absorbed']).abs().max().item() < tolerance}**. "
    f"Prompt `{tokenizer.decode(prompt[0].tolist())!r}`, continuation "
    f"`{tokenizer.decode(generated['absorbed'][0, prompt.shape[1]:].tolist())!r}`."
))

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 4. Counting the work of one decode step
#
# One new token, $t$ cached tokens, one layer, $n_h$ heads. Leave out the new token's own projections
# (the same in every form). Three ways to run MLA:
#
# * **expanded**: cache the rebuilt keys (with RoPE) and values, then plain multi-head attention;
# * **naive**: cache the latent, rebuild every key and value at every step, then the same attention;
# * **absorbed**: cache the latent, fold $W^{UK}_i$ and $W^{UV}_i$ once per step, attend in latent space.
#
# | | cache per token | multiply-adds per step |
# |---|---|---|
# | expanded | $n_h (d_h + d_h^R + d_v)$ | scores and mix $n_h t (d_h + d_h^R + d_v)$ |
# | naive | $d_c + d_h^R$ | rebuild $n_h (d_h + d_v)\, d_c\, t$, then the same scores and mix |
# | absorbed | $d_c + d_h^R$ | fold $n_h d_c (d_h + d_v)$, scores $n_h t (d_c + d_h^R)$, mix $n_h t d_c$ |
#
# DeepSeek's reference code offers the first and the third (`attn_impl="naive"` caches expanded keys
# and values, `"absorb"` is the default); Hugging Face runs the second (section 7).
# `attnlab.costs.mla_decode_step_costs` implements the table, from the counts per cached token of
# `costs.macs_per_cached_token_parts`:

# %% slideshow={"slide_type": "-"}
show_source(costs.mla_decode_step_costs, start="naive = {step", stop="extra = {")

# %% slideshow={"slide_type": "subslide"}
v3 = MODELS["deepseek-v3"]
d_c, d_h_rope = sizing.mla_dims(v3)
widths = dict(d_c=d_c, d_h=v3.head_dim, d_v=v3.head_dim, d_h_rope=d_h_rope)
labels = costs.MLA_STRATEGIES


def step_costs(n_heads, t):
    """One decode step of one MLA layer with n_heads heads and DeepSeek-V3's widths, t cached tokens."""
    return costs.mla_decode_step_costs(mla_widgets.step_shape(n_heads, **widths), t)


rows = ["| context $t$ | FLOPs: expanded | naive | absorbed | bytes: expanded | naive | absorbed |", "|---:" * 7 + "|"]
for t in (1024, 4096, 32768, 131072):
    c = step_costs(v3.n_heads, t)
    rows.append(f"| {t:,} | " + " | ".join(f"{c[s]['flops']:.3g}" for s in labels) + " | " +
                " | ".join(format_bytes(c[s]["cache_bytes"] + c[s]["extra_bytes"]) for s in labels) + " |")
display(Markdown(f"{v3.name}, one layer, one decode step, bfloat16 (bytes: the cache read, plus the "
                 "rebuilt keys and values the naive form writes and reads back):\n\n" + "\n".join(rows)))

# %% jupyter={"source_hidden": true} slideshow={"slide_type": "subslide"} tags=["hide-input"]
c4k = step_costs(v3.n_heads, 4096)
bytes_ratio = c4k["expanded"]["cache_bytes"] / c4k["absorbed"]["cache_bytes"]
display(Markdown(
    f"At 4,096 tokens, rebuilding costs {c4k['naive']['flops'] / c4k['absorbed']['flops']:.0f}× the FLOPs of "
    f"absorbing; caching the expanded keys and values costs {bytes_ratio:.0f}× the bytes. Absorbed, the step does "
    f"{c4k['absorbed']['flops'] / c4k['expanded']['flops']:.1f}× the FLOPs of the expanded form: each head "
    f"now scores a {d_c + d_h_rope}-wide vector and mixes a {d_c}-wide one instead of "
    f"{v3.head_dim + d_h_rope} and {v3.head_dim}. That trade, more arithmetic for far fewer bytes, is the "
    "subject of section 6."
))

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 5. Timing it on this CPU
#
# A layer with DeepSeek's head widths but 8 heads, so that it runs quickly on a laptop: time the
# attention of one decode step in each form, for a few context lengths.

# %% slideshow={"slide_type": "-"}
bench_config = MLAConfig(d_model=1024, n_heads=8, kv_lora_rank=d_c, qk_nope_head_dim=v3.head_dim,
                         qk_rope_head_dim=d_h_rope, v_head_dim=v3.head_dim)
bench = MultiHeadLatentAttention(bench_config).requires_grad_(False)
contexts = (256, 1024, 4096)
gen = torch.Generator().manual_seed(0)
q_nope = torch.randn(1, 1, bench_config.n_heads, bench_config.qk_nope_head_dim, generator=gen)
q_rope = torch.randn(1, 1, bench_config.n_heads, bench_config.qk_rope_head_dim, generator=gen)


def best_ms(fn, repeats=3):
    """Fastest of `repeats` runs, in milliseconds (the least disturbed by other work on the machine)."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return 1e3 * min(times)


measured = {"naive": [], "absorbed": []}
for t in contexts:
    c_kv = torch.randn(1, t, d_c, generator=gen)
    k_rope = torch.randn(1, t, d_h_rope, generator=gen)
    mask = torch.ones(1, t, dtype=torch.bool)
    for mode, attend in (("naive", bench.attend_naive), ("absorbed", bench.attend_absorbed)):
        measured[mode].append(best_ms(lambda a=attend, c=c_kv, k=k_rope, m=mask: a(q_nope, q_rope, c, k, m)))

# %% slideshow={"slide_type": "subslide"}
# NBVAL_IGNORE_OUTPUT
# Wall-clock times change from machine to machine and run to run.
predicted = {t: step_costs(bench_config.n_heads, t) for t in contexts}
rows = ["| context | naive (ms) | absorbed (ms) | measured ratio | FLOP ratio |", "|---:|---:|---:|---:|---:|"]
for i, t in enumerate(contexts):
    rows.append(f"| {t:,} | {measured['naive'][i]:.2f} | {measured['absorbed'][i]:.2f} | "
                f"{measured['naive'][i] / measured['absorbed'][i]:.0f}× | "
                f"{predicted[t]['naive']['flops'] / predicted[t]['absorbed']['flops']:.0f}× |")
display(Markdown("\n".join(rows)))

# %% jupyter={"source_hidden": true} slideshow={"slide_type": "subslide"} tags=["hide-input"]
flop_ratios = [predicted[t]["naive"]["flops"] / predicted[t]["absorbed"]["flops"] for t in contexts]
one_token = step_costs(bench_config.n_heads, 1)  # the work per cached token
per_cached = {s: sum(v for k, v in one_token[s]["parts"].items() if k != "fold W^UK, W^UV") for s in one_token}
display(Markdown(
    f"The FLOP count predicts the naive form to cost {flop_ratios[0]:.0f}× to {flop_ratios[-1]:.0f}× the "
    f"absorbed one on this {bench_config.n_heads}-head layer (the table above shows what this CPU measured; "
    "small steps carry fixed overheads that counts leave out). The ratio grows with the context towards "
    f"{per_cached['naive']:,} / {per_cached['absorbed']:,} ≈ {per_cached['naive'] / per_cached['absorbed']:.0f}, "
    "the multiply-adds per cached token of each form (about $(d_h + d_v) d_c / (2 d_c + d_h^R)$): "
    "the rebuild is paid for every cached token, the fold only once."
))

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 6. Memory against arithmetic: why absorbed decode becomes compute-bound
#
# A decode step reads every cached byte once and does a fixed amount of arithmetic with it. The ratio,
# **FLOPs per byte read** (arithmetic intensity), decides what limits the speed: below the hardware's
# ratio of peak FLOPs to peak bandwidth, memory does; above it, arithmetic does. FlashMLA, DeepSeek's
# decode kernel, reports up to 3000 GB/s when memory-bound and 580-660 TFLOPS when compute-bound on an
# H800 ([github.com/deepseek-ai/FlashMLA](https://github.com/deepseek-ai/FlashMLA)).

# %% slideshow={"slide_type": "-"}
flashmla_bw, flashmla_tflops = 3000e9, (580e12, 660e12)  # FlashMLA on H800: bytes/s, FLOP/s
ridge = [f / flashmla_bw for f in flashmla_tflops]
t_long = 65536  # long enough that the once-per-step fold is negligible
fp8_bytes = d_c * 1 + (d_c // 128) * 4 + d_h_rope * 2  # FlashMLA's FP8 cache: 512 fp8, 4 fp32 scales, 64 bf16


def intensity(n_heads, strategy, cache_bytes_per_token=None):
    """FLOPs per cache byte of one decode step at t_long tokens (bf16 cache unless cache_bytes_per_token is given)."""
    c = step_costs(n_heads, t_long)[strategy]
    n_bytes = c["cache_bytes"] if cache_bytes_per_token is None else cache_bytes_per_token * t_long
    return c["flops"] / n_bytes


heads = [1, 2, 4, 8, 16, 32, 64, 128]
fig, ax = plt.subplots(figsize=(8.5, 4.4))
ax.axhspan(*ridge, color=COLORS["cache"], alpha=0.15, lw=0)
ax.text(1.05, ridge[1] * 1.15, f"H800 balance point, FlashMLA's figures: {ridge[0]:.0f}-{ridge[1]:.0f} FLOP/byte",
        color=COLORS["cache"], fontsize=9)
ax.plot(heads, [intensity(h, "absorbed") for h in heads], "o-", color=SCHEME_COLORS["mla"], lw=2,
        label="MLA absorbed, bf16 cache")
ax.plot(heads, [intensity(h, "absorbed", fp8_bytes) for h in heads], "s--", color=SCHEME_COLORS["mla"], lw=1.5,
        label=f"MLA absorbed, FlashMLA FP8 cache ({fp8_bytes} B/token)")
ax.plot(heads, [intensity(h, "expanded") for h in heads], "o-", color=SCHEME_COLORS["mha"], lw=2,
        label="expanded K/V cache (MHA-like)")
ax.set_xscale("log", base=2)
ax.set_yscale("log")
ax.set_xticks(heads, [str(h) for h in heads])
ax.set(xlabel="query heads n_h sharing one cache", ylabel="FLOPs per byte of cache read",
       title=f"Arithmetic intensity of decode attention ({v3.name} widths)")
ax.set_ylim(0.5, 1500)
ax.legend(frameon=False, loc="lower right", bbox_to_anchor=(1.0, 0.1), fontsize=9)
ax.spines[["top", "right"]].set_visible(False)
fig.tight_layout()
plt.show()

# %% jupyter={"source_hidden": true} slideshow={"slide_type": "subslide"} tags=["hide-input"]
i_v3 = intensity(v3.n_heads, "absorbed")
tp, mtp = 4, 2  # DeepSeek-V3's decode attention: TP4 (V3 report §3.4.2); MTP verifies one extra token per step
heads_at_ridge = [r / intensity(1, "absorbed") for r in ridge]  # intensity grows in proportion to n_h
display(Markdown(
    f"Absorbed, {v3.name}'s {v3.n_heads} heads do **{i_v3:.0f} FLOPs per byte** of bf16 cache "
    f"(`sizing.decode_flops_per_byte` counts the same: {sizing.decode_flops_per_byte(v3, 'mla'):.0f}), "
    f"about $2 n_h$ = {2 * v3.n_heads}: every cached number meets {v3.n_heads} query heads, two FLOPs each, "
    f"at 2 bytes a number, and the latent is read for the scores and the mix alike. That is above the "
    f"H800's balance point, so absorbed MLA decode is limited by arithmetic, not memory, from about "
    f"{heads_at_ridge[0]:.0f} to {heads_at_ridge[1]:.0f} heads on; with FlashMLA's {fp8_bytes}-byte FP8 cache it does "
    f"{intensity(v3.n_heads, 'absorbed', fp8_bytes):.0f}. The expanded form stays near "
    f"{intensity(v3.n_heads, 'expanded'):.1f} FLOP per byte whatever $n_h$: memory-bound, like every MHA decode.\n\n"
    f"The condition is **query rows per GPU**, not the model: the cache a GPU reads meets the query heads that "
    f"GPU holds, times the query tokens it decodes at once. All {v3.n_heads} heads on one GPU, one token: "
    f"{i_v3:.0f}. Tensor parallelism divides the heads while every GPU reads the whole latent cache: "
    f"DeepSeek-V3's decoding deployment splits attention {tp} ways (TP{tp} with data parallelism, V3 report "
    f"§3.4.2), so each GPU's {v3.n_heads // tp} heads do {intensity(v3.n_heads // tp, 'absorbed'):.0f} per "
    f"token, below the balance point (over 8 GPUs, {intensity(v3.n_heads // 8, 'absorbed'):.0f}). Decoding "
    f"{mtp} tokens per step (multi-token prediction's draft checked with the next token) multiplies the rows "
    f"by {mtp}: {mtp * intensity(v3.n_heads // tp, 'absorbed'):.0f}. Other sequences of a batch do not help: "
    "each reads its own cache. So \"compute-bound on an H800\" holds for about "
    f"{heads_at_ridge[0]:.0f} or more head-token rows per GPU per step, such as all {v3.n_heads} heads of one "
    "token on one GPU; it is a property of the deployment as much as of the model."
))

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 7. Against Hugging Face
#
# Hugging Face's `DeepseekV3Attention` (transformers 5.x) caches the latent too, then rebuilds keys and
# values from it at every step, the naive form of section 4:

# %% slideshow={"slide_type": "-"}
from transformers import DeepseekV3Config
from transformers.cache_utils import DynamicCache
from transformers.models.deepseek_v3 import modeling_deepseek_v3 as hf_modeling

show_source(hf_modeling.DeepseekV3Attention.forward, start="# Cache read / write",
            stop="key_states, value_states = self.expand_kv")

# %% [markdown] slideshow={"slide_type": "subslide"}
# Build a small random one, offline, copy its weights with `attnlab.mla.from_transformers`, and run the
# same prefill and decode steps through both. Hugging Face computes its RMSNorm in float32, so the two
# agree to float32 rounding.

# %% slideshow={"slide_type": "-"}
hf_config = DeepseekV3Config(hidden_size=64, num_attention_heads=4, num_key_value_heads=4, q_lora_rank=24,
                             kv_lora_rank=16, qk_nope_head_dim=8, qk_rope_head_dim=8, v_head_dim=8,
                             max_position_embeddings=64, num_hidden_layers=1)
hf_config._attn_implementation = "eager"
torch.manual_seed(0)
hf_attention = hf_modeling.DeepseekV3Attention(hf_config, layer_idx=0)
with torch.no_grad():
    for p in hf_attention.parameters():
        p.normal_(0.0, 0.3)  # random weights of a readable size
rotary = hf_modeling.DeepseekV3RotaryEmbedding(hf_config)
ours = from_transformers(hf_attention)

x = torch.randn(2, 10, hf_config.hidden_size, generator=torch.Generator().manual_seed(1))
hf_cache, our_cache = DynamicCache(config=hf_config), LayerCache(seq_dim=1)
worst = 0.0
with torch.no_grad():
    for start, end in ((0, 7), (7, 8), (8, 9), (9, 10)):  # a 7-token prefill, then 3 decode steps
        n = end - start
        cos, sin = rotary(x, torch.arange(start, end)[None].expand(2, -1))
        mask = torch.full((n, end), -math.inf).triu(start + 1)[None, None]
        y_hf, _ = attention_forward(hf_attention, x[:, start:end], (cos, sin), mask, hf_cache)
        y_ours = ours(x[:, start:end], cache=our_cache).output  # absorbed, the default
        worst = max(worst, (y_hf - y_ours).abs().max().item())

hf_keys = hf_cache.layers[0].keys
display(Markdown(
    f"`from_transformers` read the shape: {ours.config.n_heads} heads, $d_c$ = {ours.config.kv_lora_rank}, "
    f"$d_h^R$ = {ours.config.qk_rope_head_dim}, query latent {ours.config.q_lora_rank}. Over a prefill and "
    f"three decode steps, Hugging Face's output and ours (absorbed) agree to within 1e-5: **{worst < 1e-5}**. "
    f"Hugging Face's cache holds the latent, shape {tuple(hf_keys.shape)} (batch, 1, tokens, $d_c$), the same "
    f"numbers as ours: **{torch.allclose(hf_keys[:, 0], our_cache.tensors['c_kv'], atol=1e-6)}**. Same "
    "cache, same output; only the work per step differs."
))

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 8. Try it: naive against absorbed, per decode step
#
# Slide the context length and the number of heads ($d_c$, $d_h$, $d_v$, $d_h^R$ are DeepSeek-V3's). The
# bars compare the three forms of section 4: FLOPs on top, bytes below (red: the cache read; grey: the
# keys and values the naive form builds and reads back). Watch the naive FLOPs grow with $t \cdot n_h$,
# and the absorbed FLOPs per byte grow with $n_h$ alone.

# %% slideshow={"slide_type": "-"}
mla_widgets.absorption_explorer(seq_len=4096, n_heads=v3.n_heads, **widths)

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 9. What it costs
#
# Absorption is exact and removes the rebuild, but it moves work around:
#
# * **More arithmetic per cached token than MHA.** Each head scores a $d_c + d_h^R$ wide vector and mixes a
#   $d_c$ wide one, instead of $d_h + d_h^R$ and $d_v$.
# * **A wider query.** The absorbed query of each head is $d_c + d_h^R$ wide, and computing it costs
#   $n_h d_h d_c$ multiply-adds per query token.
# * **Prefill prefers rebuilding.** In a prefill of $s$ tokens every cached token is used by about $s/2$
#   queries, so rebuilding its key and value once is amortised, while absorbed attention pays its wider
#   vectors for every one of the $s(s+1)/2$ pairs.

# %% slideshow={"slide_type": "-"}
v3_layer = mla_widgets.step_shape(v3.n_heads, **widths)


def prefill_macs(s, strategy, shape=v3_layer):
    """Multiply-adds of attention in a causal prefill of s tokens, one layer (projections of x left out): the
    s(s+1)/2 query-key pairs of `costs.prefill_flops`, plus, once per token, rebuilding its K and V (naive) or
    folding W^UK and W^UV into its query (absorbed)."""
    once = (costs.macs_per_cached_token_parts("mla_naive", shape)["re-expand K, V"] if strategy == "naive"
            else costs.mla_absorption_fold_macs(shape))
    return s * once + costs.prefill_flops(f"mla_{strategy}", shape, s) // 2  # FLOPs are 2 per multiply-add


c1 = step_costs(v3.n_heads, 1)  # per cached token (t = 1, fold left out below)
per_token = {s: c1[s]["parts"] for s in labels}
rows = ["| | expanded | naive | absorbed |", "|---|---:|---:|---:|"]
rows.append("| cache bytes per token and layer (bf16) | " +
            " | ".join(f"{c1[s]['cache_bytes']:,}" for s in labels) + " |")
rows.append("| multiply-adds per cached token per decode step | " + " | ".join(
    f"{sum(v for k, v in per_token[s].items() if k != 'fold W^UK, W^UV'):,}" for s in labels) + " |")
rows.append(f"| query width per head | {v3.head_dim + d_h_rope} | {v3.head_dim + d_h_rope} | {d_c + d_h_rope} |")
s_prefill = 4096
rows.append(f"| prefill of {s_prefill:,} tokens, multiply-adds | {prefill_macs(s_prefill, 'naive'):.3g} (the same) | "
            f"{prefill_macs(s_prefill, 'naive'):.3g} | {prefill_macs(s_prefill, 'absorbed'):.3g} |")
display(Markdown(f"{v3.name}, one layer:\n\n" + "\n".join(rows)))
display(Markdown(
    f"For a {s_prefill:,}-token prefill the absorbed form needs "
    f"{prefill_macs(s_prefill, 'absorbed') / prefill_macs(s_prefill, 'naive'):.1f}× the multiply-adds of "
    "rebuilding K and V once, so the count favours rebuilding for prefill and absorbing for decode, where the "
    "cache read dominates. Both forms read and write the same small cache."
))

# %% [markdown] slideshow={"slide_type": "slide"}
# ## Exercises
#
# Each exercise has an answer cell (replace `None`) and a check cell. Solutions are in
# `notebooks/solutions/ch08.py`.
#
# **Exercise 1.** Write a function `(q_nope, w_uk, c_kv) -> scores` with `q_nope` (batch, queries, heads,
# $d_h$), `w_uk` (heads, $d_h$, $d_c$) and `c_kv` (batch, tokens, $d_c$), returning (batch, queries, heads,
# tokens) with `scores[b, s, h, t]` $= q \cdot (W^{UK}_h c_t)$, without building any key: two einsums. The
# check watches every tensor your function computes: one made from `c_kv` with a head's width $d_h$ is a
# rebuilt key, and fails it.

# %% slideshow={"slide_type": "-"}
answer_absorbed_scores = None

# %% slideshow={"slide_type": "-"}
print(ch08.check_absorbed_scores(answer_absorbed_scores))

# %% [markdown] slideshow={"slide_type": "subslide"}
# **Exercise 2.** The other half of absorption, the output path. Write a function
# `(weights, c_kv, w_uv, w_o) -> out` with `weights` (batch, queries, heads, tokens), `c_kv` (batch, tokens,
# $d_c$), `w_uv` (heads, $d_v$, $d_c$) and `w_o` ($d_\text{model}$, heads · $d_v$), returning (batch, queries,
# $d_\text{model}$): $\text{out} = W^O [o_1; \dots; o_{n_h}]$ with $o_h = \sum_t a_{h,t} W^{UV}_h c_t$. Build no
# per-token value $W^{UV}_h c_t$ (the check watches): mix the latents first, then apply $W^{UV}_h$ once.

# %% slideshow={"slide_type": "-"}
answer_absorbed_output = None

# %% slideshow={"slide_type": "-"}
print(ch08.check_absorbed_output(answer_absorbed_output))

# %% [markdown] slideshow={"slide_type": "subslide"}
# **Exercise 3.** How many multiply-adds does one absorbed decode step of one DeepSeek-V3 layer
# ($n_h$ = 128, $d_c$ = 512, $d_h$ = $d_v$ = 128, $d_h^R$ = 64) spend with $t$ = 4,096 cached tokens?
# Count the fold, the scores and the weighted sum; leave out the new token's own projections.

# %% slideshow={"slide_type": "-"}
answer_absorbed_step_macs = None

# %% slideshow={"slide_type": "-"}
print(ch08.check_absorbed_step_macs(answer_absorbed_step_macs))

# %% [markdown] slideshow={"slide_type": "subslide"}
# **Exercise 4 (predict, then run).** Now a prefill: 4,096 tokens through one DeepSeek-V3 layer, every token a
# query, causal. The naive form expands K and V once per token and attends with 192-wide keys and 128-wide
# values; the absorbed form attends in the latent space. Counting the attention core only, how many times the
# FLOPs of the naive form does the absorbed form spend? Write your guess first; the check cell computes it.

# %% slideshow={"slide_type": "-"}
prediction_prefill_ratio = None  # a positive number: absorbed FLOPs / naive FLOPs

# %% slideshow={"slide_type": "-"}
print(ch08.check_prediction_prefill_ratio(prediction_prefill_ratio))

# %% [markdown] slideshow={"slide_type": "slide"}
# ## Summary
#
# * $q^\top (W^{UK}_i c) = (W^{UK\top}_i q)^\top c$: fold $W^{UK}_i$ into the query and $W^{UV}_i$ into the
#   output, and attention runs on the cached latents directly, like MQA with one shared 576-wide key.
# * The result is exact (float64 rounding on the tiny model), and matches Hugging Face's implementation,
#   which rebuilds K and V at every step instead.
# * Absorbed decode trades memory for arithmetic: far fewer bytes, more FLOPs per byte, about $2 n_h$, enough
#   to make DeepSeek-V3's decode compute-bound on an H800.
# * Chapter 9: why RoPE would break all of this, and the decoupled RoPE key that saves it.
