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
# # Chapter 4 · Key-Value caching
#
# *Video chapter at 07:07.*
#
# > **What you will learn:** why generating without a cache recomputes everything, how the KV cache stores
# > keys and values, what it costs per token, and why decoding is limited by memory reads.
# >
# > **What it assumes:** [chapter 3](03_attention_matrix_form.ipynb): causal multi-head attention.
#
# A language model writes text one token at a time: it predicts the next token, appends it, and runs
# again. Run naively, every step pushes the *whole* text so far back through the model, so the work per
# token grows with the length of the text and the work for a reply grows with its square. The fix used
# by every serving system is the **KV cache**: keep the keys and values each token produced and compute
# them for the new token only.
#
# This chapter shows why that is exact (not an approximation), proves it on the course's trained tiny
# model, counts the work it saves, and measures the memory it costs. That memory, gigabytes per request
# for real models, and the fact that every generated token must read all of it, is what the following
# chapters (MQA, GQA, MLA) attack.

# %% slideshow={"slide_type": "-"}
import time

import matplotlib.pyplot as plt
import torch
from IPython.display import Markdown, display

from attnlab import figures, show_source, sizing
from attnlab.attention import attention_flops
from attnlab.devices import dtype_bytes
from attnlab.exercises import ch04
from attnlab.gqa import GroupedQueryAttention
from attnlab.interactive import kv_cache as kv_widgets
from attnlab.kv_cache import ConcatCache, KVCache, LayerCache  # noqa: F401 (LayerCache: for exercise 2)
from attnlab.model import generate, load_checkpoint
from attnlab.plots import COLORS
from attnlab.tokenization import load_tokenizer

torch.manual_seed(0)
torch.set_num_threads(1)  # the tiny model's matrices are too small to gain from more threads
model = load_checkpoint("tiny_mha")  # float32, eval mode
tok = load_tokenizer()
cfg = model.config
attn_cfg = cfg.attention_config()
n_params = sum(p.numel() for p in model.parameters())
display(Markdown(
    f"The model is `tiny_mha`, a {cfg.n_layers}-layer decoder with multi-head attention "
    f"({attn_cfg.n_heads} query heads and {attn_cfg.n_kv_heads} KV heads of width d_h = "
    f"{attn_cfg.head_dim}, d_model = {cfg.d_model}), {n_params:,} parameters, trained on Python's "
    f"documentation to a validation loss of {model.metrics['val_loss']:.2f}. It reads at most "
    f"{cfg.max_seq_len} tokens."
))

# %% [markdown] slideshow={"slide_type": "subslide"}
# ### The idea, animated
#
# The chapter in one short animation. It plays here once the videos are rendered (`./course animations`);
# until then, and in static exports, the last frame stands in.

# %% slideshow={"slide_type": "-"}
from attnlab.media import show_animation

show_animation("KVCacheScene")

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 1. One token at a time
#
# A decoder models $p(x_{t+1} \mid x_1, \dots, x_t)$. To write, it picks $x_{t+1}$ (here the most
# likely token, *greedy* decoding), appends it and asks again. Step $t+1$ needs the token chosen at step
# $t$, so the steps cannot run in parallel: generation is **sequential**.
#
# Look at what one step needs inside one attention layer. With $h_i$ the layer's input at position $i$,
#
# $$q_i = h_i W^Q, \qquad k_i = h_i W^K, \qquad v_i = h_i W^V,$$
#
# and the output at the newest position $t$ is
#
# $$o_t = \sum_{i=1}^{t} a_{t,i}\, v_i, \qquad
#   a_{t,i} = \frac{\exp(q_t \cdot k_i / \sqrt{d_h})}{\sum_{j=1}^{t} \exp(q_t \cdot k_j / \sqrt{d_h})}.$$
#
# So the new token needs **its own query** $q_t$ but **the keys and values of all tokens** $1, \dots, t$,
# in every layer. The causal mask adds the second fact that makes a cache possible: $h_i$ depends only
# on tokens $1, \dots, i$, so $k_i$ and $v_i$ never change when tokens are appended after them. Once
# computed, they stay valid for the rest of the generation.
#
# We can watch that: the logits at the first $n$ positions are the same whether the model sees $n$
# tokens or $n + 1$.

# %% slideshow={"slide_type": "-"}
prompt = 'The "for" statement is used to iterate over the elements of a sequence'
prompt_ids = torch.tensor([tok.encode(prompt)])  # (1, P)
P = prompt_ids.shape[1]

with torch.no_grad():
    longer = torch.cat([prompt_ids, torch.tensor([[tok.encode(",")[0]]])], dim=1)  # (1, P + 1)
    logits_n = model(prompt_ids)  # (1, P, vocab)
    logits_n1 = model(longer)  # (1, P + 1, vocab)
unchanged = torch.allclose(logits_n, logits_n1[:, :P], atol=1e-4, rtol=0)
assert unchanged
display(Markdown(
    f"The prompt is {P} tokens long. Appending one token leaves the logits of all {P} earlier positions "
    f"unchanged (to float32 rounding, `atol=1e-4`): **{unchanged}**. What earlier positions computed, "
    "keys and values included, can be kept."
))

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 2. Without a cache: recompute everything
#
# The plain loop feeds the whole sequence at every step and keeps only the last position's logits:

# %% slideshow={"slide_type": "-"}
show_source(generate, start="cache = model.new_cache()", stop="step_input = nxt if use_cache else out")

# %% [markdown] slideshow={"slide_type": "subslide"}
# With `use_cache=False`, `step_input` is `out`, all tokens so far. Step $t$ projects $t$ tokens to
# keys and values in each of the $L$ layers, although $t - 1$ of them were projected, with the same
# result, at the step before. With the $W^K$ and $W^V$ products costing
# $2 \cdot d_\text{model} \cdot 2 n_{kv} d_h$ FLOPs per token and layer (2 FLOPs per multiply-add),
# generating from a prompt of $P$ tokens up to $T$ tokens costs
#
# $$\text{K/V FLOPs}_\text{no cache} = \sum_{t=P}^{T-1} t \cdot L \cdot 4\, d_\text{model}\, n_{kv} d_h
#   \;\approx\; \tfrac{T^2}{2} \cdot L \cdot 4\, d_\text{model}\, n_{kv} d_h
#   \qquad \text{(quadratic in } T\text{)}.$$
#
# ## 3. With a cache: prefill, then decode
#
# With `use_cache=True` the model runs in two phases:
#
# * **Prefill**: the whole prompt goes through once, in parallel (one matrix product per layer, like
#   training). Every layer stores the prompt's $K$ and $V$.
# * **Decode**: each step feeds only the newest token. Each layer computes $q_t, k_t, v_t$ for that one
#   token, appends $k_t, v_t$ to its cache and attends over everything cached.
#
# $$\text{K/V FLOPs}_\text{cache} = (P + (T - P)) \cdot L \cdot 4\, d_\text{model}\, n_{kv} d_h
#   = T \cdot L \cdot 4\, d_\text{model}\, n_{kv} d_h \qquad \text{(linear in } T\text{)}.$$
#
# Inside the attention layer it takes three steps: the position of the new tokens starts where the cache
# ends (that is where RoPE rotates them), the new $k$ and $v$ are appended, and attention runs over the
# full cached $K$ and $V$. (A cache made with a `window` $W$ keeps only the last $W$ tokens, and each
# query then sees only those: sliding-window attention. This course's caches keep every token.)

# %% slideshow={"slide_type": "-"}
show_source(GroupedQueryAttention.forward, start="start = 0 if cache", stop="out, weights = grouped_attention")

# %% [markdown] slideshow={"slide_type": "subslide"}
# The cache of one layer is a dictionary of tensors that grow along the sequence axis; `update` appends
# and hands back the whole thing. In its simplest form, `ConcatCache`, appending is a `torch.cat`, which
# copies everything cached at every step. The `LayerCache` the model uses does the same into
# preallocated storage, doubled when full, so a step writes only the new token. A model's `KVCache` is
# one `LayerCache` per layer.

# %% slideshow={"slide_type": "-"}
show_source(ConcatCache.update, start="for name, t in new.items():", stop="return tuple")

# %% [markdown] slideshow={"slide_type": "subslide"}
# Here is the cache filling up: a prefill of the prompt, then three decode steps, each feeding one token.

# %% slideshow={"slide_type": "-"}
cache = KVCache(cfg.n_layers)  # what model.new_cache() returns: one LayerCache per layer
rows = ["| step | tokens fed | layer-0 cached K, shape (batch, heads, tokens, d_h) | predicted next token |",
        "|---|---|---|---|"]
with torch.no_grad():
    step_input = prompt_ids
    for step in range(4):
        logits = model(step_input, cache=cache)  # (1, tokens fed, vocab)
        nxt = logits[:, -1:].argmax(dim=-1)  # (1, 1)
        name = "prefill" if step == 0 else f"decode {step}"
        shown = tok.decode(nxt[0].tolist()).replace("\n", "↵")
        rows.append(f"| {name} | {step_input.shape[1]} | {tuple(cache[0].tensors['k'].shape)} | `{shown}` |")
        step_input = nxt
display(Markdown("\n".join(rows)))

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 4. Proof: the cache changes the work, not the result
#
# Caching is exact, not an approximation. We generate from the same prompt with and without the cache
# and compare the tokens, and then the logits of every step.

# %% slideshow={"slide_type": "-"}
N_NEW = 48
with torch.no_grad():
    cached_ids = generate(model, prompt_ids, N_NEW, use_cache=True)
    plain_ids = generate(model, prompt_ids, N_NEW, use_cache=False)
same_tokens = torch.equal(cached_ids, plain_ids)
assert same_tokens
continuation = tok.decode(cached_ids[0, P:].tolist())
display(Markdown(
    f"**Prompt:** `{prompt}`\n\n**Greedy continuation ({N_NEW} tokens):**\n\n````\n{continuation}\n````\n\n"
    f"Cached and uncached generation give the same {N_NEW} token ids: **{same_tokens}**."
))


# %% slideshow={"slide_type": "subslide"}
@torch.no_grad()
def step_logits(model, ids, n_new, use_cache):
    """Last-position logits of every greedy step, (n_new, vocab), with or without a KVCache."""
    cache = model.new_cache() if use_cache else None
    out, step_input, rows = ids, ids, []
    for _ in range(n_new):
        last = model(step_input, cache=cache)[:, -1]  # (1, vocab)
        rows.append(last[0])
        nxt = last.argmax(dim=-1, keepdim=True)  # (1, 1)
        out = torch.cat([out, nxt], dim=1)
        step_input = nxt if use_cache else out
    return torch.stack(rows)


logits_cached = step_logits(model, prompt_ids, N_NEW, use_cache=True)
logits_plain = step_logits(model, prompt_ids, N_NEW, use_cache=False)
TOL = 1e-3
max_diff = float((logits_cached - logits_plain).abs().max())
assert max_diff < TOL

model_f64 = load_checkpoint("tiny_mha", dtype=torch.float64)
max_diff_f64 = float((step_logits(model_f64, prompt_ids, N_NEW, True)
                      - step_logits(model_f64, prompt_ids, N_NEW, False)).abs().max())
TOL_F64 = 1e-9
assert max_diff_f64 < TOL_F64
display(Markdown(
    f"At all {N_NEW} steps the {logits_cached.shape[1]} logits agree to within {TOL:g} in float32 "
    f"(**{max_diff < TOL}**) and to within {TOL_F64:g} in float64 (**{max_diff_f64 < TOL_F64}**). "
    "Bit-for-bit equality is not promised: a decode step adds up the same numbers in a different grouping "
    "than a full forward does, and floating-point addition is not associative. The difference shrinks "
    "with the precision, as rounding does; an approximation would not."
))

# %% slideshow={"slide_type": "subslide"}
# NBVAL_IGNORE_OUTPUT
# The last bits of a floating-point sum depend on the CPU's vector instructions, so these vary by machine.
print(f"largest |logit difference| over {N_NEW} steps: float32 {max_diff:.1e}, float64 {max_diff_f64:.1e}")

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 5. Counting the work
#
# Instead of trusting the formulas we count: a forward hook on every linear layer adds
# $2 \times \text{rows} \times \text{in} \times \text{out}$ FLOPs each time it runs, and a hook on the
# model starts a new step at every call. Then we generate with and without the cache.

# %% slideshow={"slide_type": "-"}
def count_linear_flops(model, ids, n_new, use_cache):
    """Per generation step: FLOPs of the W^K and W^V products, and of every linear layer."""
    steps = []
    handles = [model.register_forward_pre_hook(lambda m, args: steps.append({"kv": 0, "all": 0}))]

    def hook(name):
        def add(module, inputs, output):
            flops = 2 * inputs[0].shape[:-1].numel() * module.in_features * module.out_features
            steps[-1]["all"] += flops
            if name.endswith(("attn.w_k", "attn.w_v")):
                steps[-1]["kv"] += flops
        return add

    for name, module in model.named_modules():
        if isinstance(module, torch.nn.Linear):
            handles.append(module.register_forward_hook(hook(name)))
    try:
        generate(model, ids, n_new, use_cache=use_cache)
    finally:
        for h in handles:
            h.remove()
    return steps


N_COUNT = 160
counted = {use: count_linear_flops(model, prompt_ids, N_COUNT, use) for use in (False, True)}

# The formula: 2 * d_model * (2 n_kv d_h) per token and layer, times the tokens each step feeds.
kv_per_token = 2 * cfg.d_model * attn_cfg.cache_elements_per_token() * cfg.n_layers
tokens_fed = {False: [P + s for s in range(N_COUNT)], True: [P] + [1] * (N_COUNT - 1)}
for use in (False, True):
    assert [s["kv"] for s in counted[use]] == [kv_per_token * n for n in tokens_fed[use]]

length = [P + s for s in range(N_COUNT)]  # tokens in the sequence when the step runs
fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 3.8))
for use, label, colour in ((False, "without cache", COLORS["muted"]), (True, "with cache", COLORS["cache"])):
    per_step = [s["kv"] / 1e6 for s in counted[use]]
    total = torch.tensor(per_step).cumsum(0).tolist()
    ax1.plot(length, per_step, color=colour, label=label)
    ax2.plot(length, total, color=colour, label=label)
ax1.set(xlabel="tokens in the sequence at this step", ylabel="MFLOP", title="K and V projections per step")
ax2.set(xlabel="tokens in the sequence at this step", ylabel="MFLOP", title="K and V projections so far")
ax1.annotate("prefill", (P, counted[True][0]["kv"] / 1e6), xytext=(8, 0), textcoords="offset points",
             va="center", color=COLORS["cache"])
ax1.annotate(f"decode: {counted[True][1]['kv'] / 1e6:.2f} MFLOP per step", (length[-1], counted[True][1]["kv"] / 1e6),
             xytext=(0, 8), textcoords="offset points", ha="right", color=COLORS["cache"])
for ax in (ax1, ax2):
    ax.grid(alpha=0.3)
    ax.legend(loc="upper left")
fig.tight_layout()
plt.show()

kv_total = {use: sum(s["kv"] for s in counted[use]) for use in (False, True)}
all_total = {use: sum(s["all"] for s in counted[use]) for use in (False, True)}
display(Markdown(
    f"Generating {N_COUNT} tokens after the {P}-token prompt, the counted K/V projections match the "
    f"formula at every step. In total: {kv_total[False] / 1e6:,.0f} MFLOP without the cache, "
    f"{kv_total[True] / 1e6:,.1f} MFLOP with it, **{kv_total[False] / kv_total[True]:.0f}× less**. "
    f"The uncached loop also reruns $W^Q$, $W^O$ and the MLP on the whole prefix only to keep the last "
    f"row: over all linear layers the saving is the same, {all_total[False] / 1e9:.2f} GFLOP against "
    f"{all_total[True] / 1e9:.3f} GFLOP ({all_total[False] / all_total[True]:.0f}×)."
))

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 6. Measuring the cache
#
# The price is memory. Per token and layer the cache holds a key and a value for each KV head:
#
# $$\text{bytes} = 2 \cdot L \cdot n_{kv} \cdot d_h \cdot \text{bytes per number} \cdot \text{tokens}.$$
#
# We read the real `KVCache.nbytes` after every step of a generation and compare.

# %% slideshow={"slide_type": "-"}
def measure_cache(model, ids, n_new):
    """(tokens cached, KVCache.nbytes) after the prefill and after each decode step, and the cache."""
    cache, points = model.new_cache(), []
    with torch.no_grad():
        step_input = ids
        for _ in range(n_new + 1):
            logits = model(step_input, cache=cache)
            points.append((cache.seq_len, cache.nbytes))
            step_input = logits[:, -1:].argmax(dim=-1)
    return points, cache


points, cache = measure_cache(model, prompt_ids, N_COUNT)
elem = dtype_bytes(model.embed.weight.dtype)
cache_bytes_per_token = 2 * cfg.n_layers * attn_cfg.n_kv_heads * attn_cfg.head_dim * elem
assert all(nbytes == cache_bytes_per_token * n for n, nbytes in points)
assert cache.bytes_per_token() == cache_bytes_per_token

model_bf16 = load_checkpoint("tiny_mha", dtype=torch.bfloat16)
_, cache_bf16 = measure_cache(model_bf16, prompt_ids, 0)

tokens, measured = zip(*points, strict=True)
fig, ax = plt.subplots(figsize=(6.5, 3.6))
ax.plot([0, cfg.max_seq_len], [0, cache_bytes_per_token * cfg.max_seq_len / 1e3], "--", color=COLORS["muted"],
        label=f"formula: {cache_bytes_per_token:,} B × tokens")
ax.plot(tokens[::8], [b / 1e3 for b in measured[::8]], "o", ms=4, color=COLORS["cache"],
        label="KVCache.nbytes (every 8th step)")
ax.annotate("prefill", (tokens[0], measured[0] / 1e3), xytext=(6, -12), textcoords="offset points",
            color=COLORS["cache"])
ax.set(xlabel="tokens in the cache", ylabel="kB", title=f"KV cache of tiny_mha ({cfg.n_layers} layers, float32)")
ax.set_xlim(0, cfg.max_seq_len)
ax.grid(alpha=0.3)
ax.legend(loc="upper left")
fig.tight_layout()
plt.show()

display(Markdown(
    f"At every one of the {len(points)} steps the measured size equals the formula: 2 × {cfg.n_layers} "
    f"layers × {attn_cfg.n_kv_heads} KV heads × {attn_cfg.head_dim} × {elem} B = "
    f"**{cache_bytes_per_token:,} B per token** in float32; `KVCache.bytes_per_token()` measures the same. "
    f"The same model loaded in bfloat16 holds {cache_bf16.bytes_per_token():,.0f} B per token. "
    f"A full context of {cfg.max_seq_len} tokens takes {cache_bytes_per_token * cfg.max_seq_len / 1e6:.2f} MB, "
    f"next to {n_params * elem / 1e6:.2f} MB of float32 weights."
))

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 7. Step through a generation
#
# Move the slider (or press play) to walk through a cached generation of the prompt above. Each chip is
# a token in the cache: **red** border if its keys and values were read from the cache, **blue** if
# this step computed them. The shading is the attention row of the newest token, the $a_{t,i}$ of
# section 1, in the chosen layer and head; the dashed chip is the token the step predicts. Step 0 is the
# prefill; every later step computes one new token's K and V and reads the rest.

# %% slideshow={"slide_type": "-"}
stepper = kv_widgets.decode_stepper(model, tok, prompt, n_new=24)
stepper

# %% jupyter={"source_hidden": true} slideshow={"slide_type": "subslide"} tags=["hide-input"]
stepper.step.value = 10
f10 = kv_widgets.step_figures(stepper.trace, 10)
display(Markdown(
    f"At step 10 the widget shows {f10['n_tokens']} tokens in the cache ({f10['n_cached']} read, "
    f"{f10['n_new']} computed) and {f10['cache_bytes']:,} B, the formula's "
    f"{cache_bytes_per_token:,} B × {f10['n_tokens']} tokens. That step ran {f10['kv_projections']} K/V "
    f"projections (one token in each of {cfg.n_layers} layers); without a cache it would have run "
    f"{f10['kv_projections_uncached']}."
))

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 8. Real models
#
# The tiny model's cache is small because the model is tiny. `attnlab.sizing` holds the published
# shapes of real models; the same formula gives their caches in bfloat16.

# %% slideshow={"slide_type": "-"}
llamas = ["llama-2-7b", "llama-3-8b"]
l2, l3 = (sizing.MODELS[key] for key in llamas)
assert (l2.n_layers, l2.hidden_size) == (l3.n_layers, l3.hidden_size)
display(Markdown(
    f"{l2.name} uses multi-head attention ({l2.n_kv_heads} KV heads); {l3.name}, with the same depth "
    f"({l3.n_layers} layers) and width (d_model = {l3.hidden_size}), uses grouped-query attention with "
    f"{l3.n_kv_heads}. {l2.name} was trained for {l2.max_context:,} tokens of context, so its longer rows "
    "below are what its cache *would* take."
))
contexts = {"4K": 4096, "32K": 32_768, "128K": 131_072}
batches = (1, 8)
rows = ["| model | KV heads | per token | weights | "
        + " | ".join(f"{c}, batch {b}" for c in contexts for b in batches) + " |",
        "|---|---|---|---|" + "---|" * (len(contexts) * len(batches))]
for key in llamas:
    spec = sizing.MODELS[key]
    weights = sizing.weight_bytes(spec, "bfloat16")
    cells = []
    for n in contexts.values():
        for b in batches:
            cache_bytes = sizing.kv_cache_bytes(spec, n, b, "bfloat16")
            text = f"{sizing.gib(cache_bytes):,.1f} GiB"
            cells.append(f"**{text}**" if cache_bytes > weights else text)
    rows.append(f"| {spec.name} | {spec.n_kv_heads} | {sizing.format_bytes(sizing.cache_bytes_per_token(spec))} "
                f"| {sizing.gib(weights):.1f} GiB | " + " | ".join(cells) + " |")
display(Markdown("\n".join(rows) + "\n\nBold: the cache is larger than the model's own weights."))

# %% slideshow={"slide_type": "subslide"}
seq = [2**k for k in range(10, 18)]
# hover a line for model, batch, context and exact bytes; ◆ marks each model's published context window
figures.show(kv_widgets.cache_context_figure(llamas, seq, batches, weights=True), "ch04-cache-vs-context")

cross = {key: sizing.weight_bytes(key) // sizing.cache_bytes_per_token(key) for key in llamas}
busy = batches[-1] * contexts["4K"]  # tokens cached for a batch of 4K-token conversations
display(Markdown(
    f"One token of {l2.name}'s cache is {sizing.format_bytes(sizing.cache_bytes_per_token(l2))}, so its cache "
    f"outgrows its {sizing.gib(sizing.weight_bytes(l2)):.1f} GiB of weights at {cross['llama-2-7b']:,} "
    f"tokens, counted over all sequences of a batch: {batches[-1]} conversations of {contexts['4K']:,} "
    f"tokens hold {busy:,}, {'past' if busy > cross['llama-2-7b'] else 'short of'} that. {l3.name}'s "
    f"{l3.n_kv_heads} KV heads instead of {l3.n_heads} make each token "
    f"{sizing.reduction_vs_mha(l3):.0f}× cheaper, which moves the crossing to {cross['llama-3-8b']:,} "
    "tokens. That is grouped-query attention, chapter 6."
))

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 9. Decode is memory-bound
#
# A decode step for one sequence at context $t$ reads **the whole cache**, $t$ keys and values in every
# layer, and does little arithmetic with each: one dot product $q_t \cdot k_i$ and one weighted add of
# $v_i$ per head. Per cached token and layer that is $2 \cdot 2 n_h d_h$ FLOPs against
# $2 n_{kv} d_h \times$ (bytes per number) bytes read, an **arithmetic intensity** of
#
# $$\frac{\text{FLOPs}}{\text{bytes}} = \frac{4\, n_h d_h}{2\, n_{kv} d_h \cdot \text{bytes}}
#   = \frac{n_h}{n_{kv}} \cdot \frac{2}{\text{bytes}}
#   \quad = 1 \text{ for MHA in bfloat16.}$$
#
# Batching does not help here, unlike for the weights: each sequence reads its own cache. A GPU does
# hundreds of FLOPs in the time it reads one byte from memory, so a decode step waits on memory, not on
# arithmetic.

# %% slideshow={"slide_type": "-"}
# NVIDIA H100 SXM datasheet: 989 TFLOP/s dense bfloat16 tensor-core throughput, 3.35 TB/s of HBM3 bandwidth.
H100_FLOPS, H100_BYTES_PER_S = 989e12, 3.35e12
ridge = H100_FLOPS / H100_BYTES_PER_S

t_tok, batch = 32_768, 8
rows = ["| model | FLOP per byte | cache read per step | attention FLOPs per step | "
        f"reading at {H100_BYTES_PER_S / 1e12:g} TB/s | computing at {H100_FLOPS / 1e12:g} TFLOP/s |",
        "|---|---|---|---|---|---|"]
intensity = {}
for key in llamas:
    spec = sizing.MODELS[key]
    read = sizing.kv_cache_bytes(spec, t_tok, batch)  # every step reads every cached byte
    # attention_flops(1 query, t keys): q·k and a·v for each of the n_h heads, in every layer
    flops = attention_flops(1, t_tok, spec.head_dim, n_heads=spec.n_heads) * spec.n_layers * batch
    intensity[key] = sizing.decode_flops_per_byte(spec)
    assert flops / read == intensity[key]
    rows.append(f"| {spec.name} | {intensity[key]:g} | {sizing.gib(read):.1f} GiB | {flops / 1e9:,.0f} GFLOP "
                f"| {read / H100_BYTES_PER_S * 1e3:.1f} ms | {flops / H100_FLOPS * 1e3:.3f} ms |")
tiny_read = cache_bytes_per_token * cfg.max_seq_len
tiny_flops = attention_flops(1, cfg.max_seq_len, attn_cfg.head_dim, n_heads=attn_cfg.n_heads) * cfg.n_layers
display(Markdown(
    f"One decode step at {t_tok // 1024}K tokens of context, batch {batch}, bfloat16:\n\n" + "\n".join(rows)
))
display(Markdown(
    f"The H100 breaks even at {ridge:.0f} FLOP per byte; decoding attention offers "
    f"{intensity['llama-2-7b']:g} (Llama-2-7B) or {intensity['llama-3-8b']:g} (Llama-3-8B), so the "
    f"tensor cores idle while the cache streams in, {ridge / intensity['llama-2-7b']:.0f}× below what the "
    f"chip could use. (The tiny model in float32: {tiny_flops / tiny_read:g} FLOP per byte.) The time per "
    "token is the cache's size divided by the memory bandwidth; the only lever is to **read fewer bytes "
    "per token**: fewer KV heads (MQA, GQA), a compressed latent (MLA), fewer bits, or fewer cached "
    "tokens."
))

# %% slideshow={"slide_type": "subslide"}
fig, ax = plt.subplots(figsize=(7, 2.8))
names = ["tiny_mha (float32)"] + [sizing.MODELS[k].name for k in llamas]
values = [tiny_flops / tiny_read] + [intensity[k] for k in llamas]
ax.barh(names, values, color=[COLORS["muted"], COLORS["cache"], COLORS["key"]])
ax.axvline(ridge, color="black", ls="--", lw=1)
ax.text(ridge / 1.1, 1, f"H100 break-even:\n{ridge:.0f} FLOP/byte", ha="right", va="center", fontsize=9)
for i, v in enumerate(values):
    ax.text(v * 1.15, i, f"{v:g}", va="center", fontsize=9)
ax.set_xscale("log")
ax.set_xlim(0.2, 1000)
ax.set(xlabel="FLOPs per byte of cache read (log scale)", title="Arithmetic intensity of decoding attention")
ax.grid(alpha=0.3, axis="x", which="both")
fig.tight_layout()
plt.show()

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 10. What it costs
#
# The cache trades memory for arithmetic. Each cached token costs its bytes once and saves its K and V
# projections at every later step.

# %% slideshow={"slide_type": "-"}
rows = ["| model | cache per token | K/V FLOPs one cached token saves per later step | cache at max context |",
        "|---|---|---|---|"]
tiny_saved = 2 * cfg.d_model * attn_cfg.cache_elements_per_token() * cfg.n_layers
rows.append(f"| tiny_mha (float32) | {cache_bytes_per_token:,} B | {tiny_saved / 1e6:.2f} MFLOP | "
            f"{sizing.format_bytes(cache_bytes_per_token * cfg.max_seq_len)} at {cfg.max_seq_len} tokens |")
for key in llamas:
    spec = sizing.MODELS[key]
    saved = 2 * spec.hidden_size * sizing.kv_elements_per_token(spec)  # W^K and W^V of one token, all layers
    rows.append(f"| {spec.name} (bfloat16) | {sizing.format_bytes(sizing.cache_bytes_per_token(spec))} | "
                f"{saved / 1e6:,.0f} MFLOP | {sizing.gib(sizing.kv_cache_bytes(spec, spec.max_context)):.1f} "
                f"GiB at {spec.max_context:,} tokens |")
display(Markdown("\n".join(rows)))
display(Markdown(
    f"For the generation of section 5, the cache saved {(kv_total[False] - kv_total[True]) / 1e6:,.0f} "
    f"MFLOP of K/V projections ({(all_total[False] - all_total[True]) / 1e9:.2f} GFLOP over all linear "
    f"layers) and held {points[-1][1] / 1e3:,.0f} kB at the end. Without a cache the work per token grows "
    "with the context; with it, the work per token is constant but the memory grows with the context, "
    "and every step must read all of it."
))

# %% [markdown] slideshow={"slide_type": "subslide"}
# On a laptop the difference is visible in wall-clock time too:

# %% slideshow={"slide_type": "-"}
# NBVAL_IGNORE_OUTPUT
# Wall-clock timings vary from machine to machine and run to run, so this output is not checked.
N_TIME = 200
for use in (False, True):
    start = time.perf_counter()
    generate(model, prompt_ids, N_TIME, use_cache=use)
    seconds = time.perf_counter() - start
    print(f"use_cache={use!s:5}: {N_TIME} tokens in {seconds:.2f} s ({seconds / N_TIME * 1e3:.1f} ms per token)")

# %% [markdown] slideshow={"slide_type": "slide"}
# ## Exercises
#
# Each exercise has an answer cell (replace `None`) and a check cell. Worked solutions are in
# `notebooks/solutions/ch04.py`; try first.
#
# **Exercise 1.** A model has 24 layers of `AttentionConfig(d_model=2048, n_heads=16, n_kv_heads=4)`
# and keeps its cache in float16. How many **bytes** does its KV cache take for a batch of 4 sequences
# of 8,192 tokens each? Give an int.

# %% slideshow={"slide_type": "-"}
answer_cache_bytes = None

# %% slideshow={"slide_type": "-"}
print(ch04.check_cache_bytes(answer_cache_bytes))

# %% [markdown] slideshow={"slide_type": "subslide"}
# **Exercise 2.** Write the decode loop yourself. Fill in `decode_with_cache(layer, x)`: for an attention
# layer (`GroupedQueryAttention`) and inputs `x` of shape `(batch, seq, d_model)`, feed the tokens **one
# at a time** through the layer with a single `LayerCache`, and return all outputs, shape
# `(batch, seq, d_model)`. The result must equal `layer(x).output`, the full causal forward (a layer
# returns an `AttentionOutput`; its `.output` is the tensor). Then set `answer_decode_loop = decode_with_cache`.

# %% slideshow={"slide_type": "-"}
def decode_with_cache(layer, x):
    """x (batch, seq, d_model) -> (batch, seq, d_model), one token per call of the layer."""
    outputs = []  # one (batch, 1, d_model) output per step
    # make one LayerCache; for each t, call the layer on x[:, t:t+1] with cache=... and keep its .output
    return torch.cat(outputs, dim=1)


answer_decode_loop = None

# %% slideshow={"slide_type": "-"}
print(ch04.check_decode_loop(answer_decode_loop))

# %% [markdown] slideshow={"slide_type": "subslide"}
# **Exercise 3.** A 24 GiB GPU holds Llama-3-8B's weights in bfloat16, and its KV cache, also in
# bfloat16, takes the rest. How many tokens of cache fit (summed over all sequences)? Use the shape
# below; give an int.

# %% jupyter={"source_hidden": true} slideshow={"slide_type": "-"} tags=["hide-input"]
spec = sizing.MODELS["llama-3-8b"]
display(Markdown(
    f"{spec.name}: {spec.n_layers} layers, {spec.n_heads} query heads, {spec.n_kv_heads} KV heads, "
    f"head_dim {spec.head_dim}, {spec.n_params:,} parameters."
))

# %% slideshow={"slide_type": "-"}
answer_tokens_in_24gib = None

# %% slideshow={"slide_type": "-"}
print(ch04.check_llama3_tokens_in_24gib(answer_tokens_in_24gib))

# %% [markdown] slideshow={"slide_type": "subslide"}
# **Exercise 4 (predict, then run).** A layer generates 100 tokens one at a time **without** a cache: step
# $t$ runs it on the whole prefix so far. How many token positions pass through $W^K$ in total? Write your
# guess first; the check cell counts them with a hook, and with a cache too.

# %% slideshow={"slide_type": "-"}
prediction_key_rows = None  # an int

# %% slideshow={"slide_type": "-"}
print(ch04.check_prediction_key_rows(prediction_key_rows))

# %% [markdown] slideshow={"slide_type": "slide"}
# ## Summary
#
# * Generation is sequential. Each step needs the new token's query and the keys and values of **all**
#   earlier tokens, in every layer; causal masking makes those keys and values final once computed.
# * Without a cache, every step recomputes them: O(t) projections per step, O(T²) per generation. With a
#   cache, a prefill computes the prompt's K and V once and each decode step adds one token's: O(T).
# * The cache is exact: the same tokens, the same logits up to float rounding.
# * It costs $2 \cdot L \cdot n_{kv} \cdot d_h \cdot$ bytes per token, which for real models reaches the
#   size of the weights within thousands of tokens, and every decode step reads all of it at about one
#   FLOP per byte. Making that cache smaller is the subject of the next chapters.
