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
# # Chapter 18 · Linear attention and hybrids
#
# *Course chapter (not in the video).*
#
# > **What you will learn:** linear attention as a recurrence with a state that does not grow, the delta rule
# > and its gate (Gated DeltaNet), the chunkwise form equal to the recurrence, what exact recall it loses, why
# > hybrid models keep a few full-attention layers, and a tiny 3:1 hybrid trained on the course corpus beside GQA.
# >
# > **What it assumes:** [chapters 3](03_attention_matrix_form.ipynb) and [4](04_kv_caching.ipynb); [chapter
# > 17](17_sliding_windows_and_sinks.ipynb) for caches that stop growing.
#
# Every scheme so far shrinks what each token caches. The cache still grows by one entry per token, and at a
# million tokens even MLA's entries add up. Linear attention (Katharopoulos et al., *Transformers are RNNs*,
# ICML 2020) removes the growth: the past is folded into one $d_k \times d_v$ matrix per head, updated once
# per token. Gated DeltaNet (Yang, Kautz, Hatamizadeh, ICLR 2025) is the form 2025-2026 models use, in
# **hybrids**: Qwen3-Next keeps one full GQA layer in four, Kimi Linear one MLA layer in four.

# %% slideshow={"slide_type": "skip"}
import matplotlib.pyplot as plt
import torch
import torch.nn.functional as F
from IPython.display import Markdown, display

from attnlab import costs, plots, quality, recall, show_source
from attnlab.costs import AttentionShape
from attnlab.exercises import ch18
from attnlab.gqa import AttentionConfig, GroupedQueryAttention
from attnlab.interactive import linear as linear_widgets
from attnlab.kv_cache import LayerCache
from attnlab.linear_attention import (
    LinearAttention,
    LinearAttentionConfig,
    RecurrentState,
    _chunkwise_core,
    delta_rule_chunkwise,
    delta_rule_recurrent,
    linear_attention_parallel,
    linear_attention_recurrent,
)
from attnlab.model import checkpoint_metrics, generate, load_checkpoint
from attnlab.plots import COLORS
from attnlab.schemes import get_scheme
from attnlab.tokenization import load_tokenizer
from attnlab.train import token_ids

torch.manual_seed(0)
torch.set_num_threads(1)  # the tensors here are tiny: more threads only add overhead
QWEN, KIMI = costs.QWEN3_NEXT, costs.KIMI_LINEAR
GIB = 2**30

# %% [markdown] slideshow={"slide_type": "subslide"}
# ### The idea, animated
#
# The chapter in one short animation. It plays here once the videos are rendered (`./course animations`);
# until then, and in static exports, the last frame stands in.

# %% slideshow={"slide_type": "-"}
from attnlab.media import show_animation

show_animation("LinearAttentionScene")

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 1. The problem: a cache that grows with every token
#
# A full attention layer caches every token's keys and values (chapter 4). Qwen3-Next-80B-A3B's full layers
# are GQA with 2 KV heads of 256: $2 \times 2 \times 256$ numbers per token and layer. Had all its 48 layers
# been full, one sequence would hold:

# %% jupyter={"source_hidden": true} slideshow={"slide_type": "-"} tags=["hide-input"]
per_token_full = QWEN.full_numbers_per_token() * 2  # bytes per token of one full layer, bfloat16
all_full = {L: costs.hybrid_cache_bytes(QWEN, L)["all_full"] for L in (2**15, 2**17, QWEN.max_context)}
display(Markdown(
    f"{per_token_full:,} bytes per token and layer, {QWEN.n_layers * per_token_full / 1024:.0f} KiB per token over "
    f"{QWEN.n_layers} layers: "
    + ", ".join(f"**{v / GIB:.0f} GiB** at {L // 1024}K tokens" for L, v in all_full.items())
    + " for ONE sequence, before any batching. Chapters 5-10 shrank the bytes per token; this chapter removes the "
    "dependence on the number of tokens from most layers."
))

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 2. From softmax to a state
#
# Causal attention for query $t$ weights every past value by a similarity:
#
# $$o_t = \frac{\sum_{j \le t} \text{sim}(q_t, k_j)\, v_j}{\sum_{j \le t} \text{sim}(q_t, k_j)}, \qquad
#   \text{softmax: } \text{sim}(q, k) = e^{q^\top k / \sqrt{d}}.$$
#
# Katharopoulos et al. (§3.2-3.4) replace the exponential by a dot product of **features**,
# $\text{sim}(q, k) = \phi(q)^\top \phi(k)$ with $\phi(x) = \text{elu}(x) + 1 > 0$. Then $\phi(q_t)$ leaves the
# sum, and what remains does not depend on the query:
#
# $$o_t = \frac{\phi(q_t)^\top \overbrace{\textstyle\sum_{j \le t} \phi(k_j) v_j^\top}^{S_t \;(d_k \times d_v)}}
#              {\phi(q_t)^\top \underbrace{\textstyle\sum_{j \le t} \phi(k_j)}_{z_t \;(d_k)}}, \qquad
#   S_t = S_{t-1} + \phi(k_t) v_t^\top, \quad z_t = z_{t-1} + \phi(k_t).$$
#
# Two ways to compute it: the **parallel** form builds the $L \times L$ matrix $\phi(Q)\phi(K)^\top$ with the
# causal mask (training); the **recurrent** form carries $S_t, z_t$ from token to token (decoding). Same numbers:

# %% slideshow={"slide_type": "-"}
q, k, v = (torch.randn(1, 2, 50, 8, dtype=torch.float64) for _ in range(3))  # (batch, heads, seq, d)
parallel = linear_attention_parallel(q, k, v)
recurrent, state = linear_attention_recurrent(q, k, v)
torch.testing.assert_close(recurrent, parallel, rtol=1e-12, atol=1e-12)  # the two forms agree
display(Markdown(
    f"Parallel vs recurrent, float64: largest difference **{(parallel - recurrent).abs().max():.1e}**. "
    "After 50 tokens the "
    f"state is S {tuple(state.S.shape)} and z {tuple(state.z.shape)}: the same shapes after 50 tokens or 50 million."
))

# %% slideshow={"slide_type": "subslide"}
show_source(linear_attention_recurrent, start="for t in range(L):", stop="outs.append")

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 3. The delta rule and the gate
#
# Linear attention only **adds**: a key written twice holds the sum of both values, and nothing is ever
# removed, so the state fills with interference. The **delta rule** (Schlag et al. 2021; DeltaNet, Yang et al.
# 2024) first reads what the state returns for $k_t$ and writes only the error, scaled by a learning rate
# $\beta_t \in (0, 1)$; **Gated DeltaNet** (Yang, Kautz, Hatamizadeh 2025) also fades the whole state by
# $\alpha_t \in (0, 1]$:
#
# $$u_t = \beta_t\,(v_t - \alpha_t S_{t-1}^\top k_t), \qquad
#   S_t = \alpha_t S_{t-1} + k_t u_t^\top = \alpha_t (I - \beta_t k_t k_t^\top) S_{t-1} + \beta_t k_t v_t^\top,
#   \qquad o_t = S_t^\top q_t.$$
#
# Here $S$ is $d_k \times d_v$, keys along the rows, as Hugging Face's Qwen3-Next code and the
# flash-linear-attention kernels store it; the papers write its transpose. Keys and queries are L2-normalised
# (no $\phi$, no normaliser) and the gate comes in log space, $g_t = \log \alpha_t \le 0$.

# %% slideshow={"slide_type": "-"}
show_source(delta_rule_recurrent, start="for t in range(L):", stop="outs.append")

# %% [markdown] slideshow={"slide_type": "subslide"}
# ### What the three rules attend to
#
# The output is linear in the values, so every rule still computes $o = W v$ for some lower-triangular
# $W$: the layers return it with `return_weights=True`. One random head, 24 tokens:

# %% slideshow={"slide_type": "-"}
torch.manual_seed(3)
x = torch.randn(1, 24, 16, dtype=torch.float64)
softmax_layer = GroupedQueryAttention(AttentionConfig(d_model=16, n_heads=1)).double()
with torch.no_grad():
    panels = {"softmax (chapter 3)": softmax_layer(x, return_weights=True).weights[0, 0]}
    for rule, name in (("linear", "linear attention"), ("delta", "delta rule"), ("gated_delta", "gated delta rule")):
        torch.manual_seed(4)
        layer = LinearAttention(LinearAttentionConfig(d_model=16, n_heads=1, head_dim=16, rule=rule,
                                                      chunk_size=8)).double()
        panels[name] = layer(x, return_weights=True).weights[0, 0]
fig, axes = plt.subplots(1, 4, figsize=(13, 3.4))
for ax, (name, W) in zip(axes, panels.items(), strict=True):
    lim = float(W.abs().max())
    ax.imshow(W, cmap="RdBu_r", vmin=-lim, vmax=lim)
    ax.set_title(name, fontsize=10)
    ax.set_xlabel("key position j")
axes[0].set_ylabel("query position i")
fig.suptitle("W[i, j]: how much value j contributes to output i (red positive, blue negative)", fontsize=10)
plt.tight_layout()
plt.show()

# %% jupyter={"source_hidden": true} slideshow={"slide_type": "-"} tags=["hide-input"]
row_sums = {name: W.sum(-1) for name, W in panels.items()}
negative = {name: float((W < -1e-12).float().sum() / W.tril().ne(0).sum()) for name, W in panels.items()}
display(Markdown(
    f"Softmax and linear attention's rows sum to 1 (largest deviation "
    f"{max(float((row_sums[n] - 1).abs().max()) for n in ('softmax (chapter 3)', 'linear attention')):.1e}) and are "
    f"never negative. The delta rules' weights are not normalised, and "
    f"{100 * negative['delta rule']:.0f}% (delta) and {100 * negative['gated delta rule']:.0f}% (gated) of them are "
    "negative: each write subtracts the part of the old state that the new key would read. The gate makes old "
    "tokens fade along each row, a learned, soft window."
))

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 4. The chunkwise form: fast training, same numbers
#
# The recurrence takes $L$ sequential steps of small matrix-vector products: slow on a GPU. Yang et al. (2024,
# §3) cut the sequence into chunks of $C$ tokens. Inside a chunk, with $\Gamma_r = \prod_{s \le r}\alpha_s$ and
# $S_0$ the state entering it, unrolling the recurrence gives for the written vectors $U$ a **unit
# lower-triangular system**
#
# $$(I + A)\,U = \beta V - (\beta\Gamma K)\,S_0, \qquad A_{rs} = \beta_r \tfrac{\Gamma_r}{\Gamma_s} k_r^\top k_s
#   \;\;(s < r).$$
#
# Solving it against $\beta V$ and $\beta\Gamma K$ for all chunks at once, before any state is known, is the
# **UT transform** (the WY representation of the chunk's $C$ rank-1 updates): $U_0 = T\beta V$,
# $W = T\beta\Gamma K$ with $T = (I + A)^{-1}$. The only sequential part is then $L/C$ steps of matmuls:
#
# $$U = U_0 - W S_0, \quad O = (\Gamma Q) S_0 + (QK^\top \odot D)\,U, \quad
#   S_C = \Gamma_C S_0 + \big(\tfrac{\Gamma_C}{\Gamma} K\big)^\top U, \qquad
#   D_{rs} = \tfrac{\Gamma_r}{\Gamma_s}[s \le r].$$

# %% slideshow={"slide_type": "subslide"}
show_source(_chunkwise_core, start="if delta:", stop="return out.reshape")

# %% slideshow={"slide_type": "subslide"}
rows = ["| length L | chunk C | heads | d_k, d_v | gate | max abs difference, chunkwise vs recurrent (float64) |",
        "|---|---|---|---|---|---|"]
worst = 0.0
for i, (L, C, H, dk, dv, gated) in enumerate([(64, 16, 2, 16, 16, True), (64, 24, 2, 16, 16, True),
                                              (100, 7, 4, 8, 12, True), (37, 64, 1, 32, 8, False),
                                              (129, 32, 2, 16, 16, False)]):
    gen = torch.Generator().manual_seed(i)
    q = torch.randn(1, H, L, dk, generator=gen, dtype=torch.float64)
    k = F.normalize(torch.randn(1, H, L, dk, generator=gen, dtype=torch.float64), dim=-1)
    v = torch.randn(1, H, L, dv, generator=gen, dtype=torch.float64)
    beta = torch.rand(1, H, L, generator=gen, dtype=torch.float64)
    g = -torch.rand(1, H, L, generator=gen, dtype=torch.float64) if gated else None
    diff = float((delta_rule_chunkwise(q, k, v, beta, g, chunk_size=C)[0] - delta_rule_recurrent(q, k, v, beta, g)[0])
                 .abs().max())
    worst = max(worst, diff)
    rows.append(f"| {L} | {C}{' (divides L)' if L % C == 0 else ''} | {H} | {dk}, {dv} | {'yes' if gated else 'no'} | "
                f"{diff:.1e} |")
display(Markdown("\n".join(rows)))

# %% jupyter={"source_hidden": true} slideshow={"slide_type": "-"} tags=["hide-input"]
display(Markdown(
    f"The largest difference, **{worst:.1e}**, is float64 rounding: the two forms are one computation. "
    "`tests/test_linear_attention.py` checks it with hypothesis over lengths, chunk sizes that divide the length "
    "and that do not, heads, widths, gates and a carried-in state, and checks both forms against Hugging Face's "
    "Qwen3-Next functions `torch_chunk_gated_delta_rule` and `torch_recurrent_gated_delta_rule` (which compute in "
    "float32, so that parity is at float32 rounding)."
))

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 5. The layer, and what its "cache" becomes
#
# `LinearAttention` has the course's layer interface. Like Qwen3-Next's Gated DeltaNet it runs a short causal
# convolution (4 taps) over the q, k, v channels first, and derives $\beta_t = \sigma(w_\beta x_t)$ and
# $g_t = -e^{A}\,\text{softplus}(w_a x_t + b)$ from the input. Its cache is a `RecurrentState`: the state $S$
# and the convolution's last 3 inputs. Prefill then token-by-token decode gives the outputs of one call:

# %% slideshow={"slide_type": "-"}
torch.manual_seed(5)
layer = LinearAttention(LinearAttentionConfig(d_model=32, n_heads=4, head_dim=8, chunk_size=16)).double().eval()
x = torch.randn(1, 40, 32, dtype=torch.float64)
cache = RecurrentState()
with torch.no_grad():
    whole = layer(x).output
    steps = [layer(x[:, :10], cache=cache).output] + [layer(x[:, t:t + 1], cache=cache).output for t in range(10, 40)]
display(Markdown(f"Prefill 10 + decode 30 vs one call over 40 tokens: largest difference "
                 f"**{(torch.cat(steps, 1) - whole).abs().max():.1e}**. {cache!r}"))

# %% slideshow={"slide_type": "subslide"}
softmax_layer = GroupedQueryAttention(AttentionConfig(d_model=32, n_heads=4)).double().eval()
kv, state, lengths, kv_bytes, state_bytes = LayerCache(), RecurrentState(), [], [], []
with torch.no_grad():
    for t in range(1, 257):
        token = torch.randn(1, 1, 32, dtype=torch.float64)
        softmax_layer(token, cache=kv)
        layer(token, cache=state)
        if t % 8 == 0:
            lengths.append(t)
            kv_bytes.append(kv.nbytes)
            state_bytes.append(state.nbytes)
fig, ax = plt.subplots(figsize=(7, 3.2))
ax.plot(lengths, [b / 1024 for b in kv_bytes], color=COLORS["cache"], label="softmax layer: LayerCache (K, V)")
ax.plot(lengths, [b / 1024 for b in state_bytes], color=COLORS["key"], label="linear layer: RecurrentState (S, conv)")
ax.set_xlabel("tokens decoded")
ax.set_ylabel("cache of one layer (KiB, float64)")
ax.grid(alpha=0.3)
ax.legend(frameon=False)
plt.show()

# %% jupyter={"source_hidden": true} slideshow={"slide_type": "-"} tags=["hide-input"]
cross = costs.state_crossover_context(state_bytes[-1], kv_bytes[-1] // lengths[-1])
display(Markdown(
    f"Same width, 4 heads of 8: the softmax layer holds {kv_bytes[-1] // lengths[-1]} bytes per token, the linear "
    f"layer {state_bytes[-1]:,} bytes in all. From {cross} tokens on the cache is the larger, and the state never "
    "grows."
))

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 6. State against cache at scale
#
# One linear layer of a published model holds (`costs.linear_state_bytes`)
#
# $$\underbrace{H \cdot d_k \cdot d_v \cdot 4}_{\text{state, float32}}
#   + \underbrace{C_{\text{conv}} \cdot (K - 1) \cdot 2}_{\text{conv inputs, bfloat16}}$$
#
# bytes per sequence, at every context. Hugging Face and vLLM keep the recurrent state in float32 even in a
# bfloat16 model (it accumulates an update at every token). A full layer holds its per-token cache times $L$.

# %% slideshow={"slide_type": "-"}
contexts = [2**k for k in range(8, 21)]
fig, ax = plt.subplots(figsize=(8, 3.6))
for m, style in ((QWEN, "-"), (KIMI, "--")):
    state_b = costs.linear_state_bytes(m.linear_heads, m.d_k, m.d_v, conv_channels=m.conv_channels,
                                       conv_kernel=m.conv_kernel)
    per_tok = m.full_numbers_per_token() * 2
    ax.plot(contexts, [per_tok * L / 2**20 for L in contexts], style, color=COLORS["cache"],
            label=f"{m.name}: one full layer's cache")
    ax.plot(contexts, [state_b / 2**20] * len(contexts), style, color=COLORS["key"],
            label=f"{m.name}: one linear layer's state")
    L_star = costs.state_crossover_context(state_b, per_tok)
    ax.plot([L_star], [state_b / 2**20], "o", color="black")
    ax.annotate(f"{L_star:,}", (L_star, state_b / 2**20), textcoords="offset points",
                xytext=(6, 8 if m is QWEN else -14), fontsize=8)
ax.set_xscale("log", base=2)
ax.set_yscale("log")
ax.set_xlabel("context L (tokens)")
ax.set_ylabel("MiB per sequence, one layer")
ax.grid(alpha=0.3, which="both")
ax.legend(frameon=False, fontsize=8, loc="upper left")
plt.show()

# %% slideshow={"slide_type": "subslide"}
rows = ["| model | layers (full + linear) | context | full layers' cache | linear layers' state | total "
        "| all layers full |",
        "|---|---|---|---|---|---|---|"]
for m in (QWEN, KIMI):
    for L in (2**15, 2**17, 2**20):
        p = costs.hybrid_cache_bytes(m, L)
        note = " †" if L > m.max_context else ""
        rows.append(f"| {m.name} | {m.n_full} + {m.n_linear} | {L // 1024:,}K{note} | {p['full'] / GIB:.2f} GiB | "
                    f"{p['linear'] / GIB:.3f} GiB | **{p['total'] / GIB:.2f} GiB** | {p['all_full'] / GIB:.2f} GiB |")
display(Markdown("\n".join(rows)))

# %% jupyter={"source_hidden": true} slideshow={"slide_type": "-"} tags=["hide-input"]
q1m, k1m = costs.hybrid_cache_bytes(QWEN, 2**20), costs.hybrid_cache_bytes(KIMI, 2**20)
display(Markdown(
    f"† beyond {QWEN.name}'s longest context ({QWEN.max_context:,} tokens), shown for comparison. Full layers at "
    f"{list(QWEN.full_layers)} (Qwen3-Next: full iff (i+1) % 4 == 0) and {list(KIMI.full_layers)} (Kimi Linear's "
    f"config lists them 1-based). At 1M tokens the hybrids hold {100 * q1m['total'] / q1m['all_full']:.0f}% and "
    f"{100 * k1m['total'] / k1m['all_full']:.0f}% of their all-full stacks; the fixed state is "
    f"{100 * q1m['linear'] / q1m['total']:.1f}% and {100 * k1m['linear'] / k1m['total']:.1f}% of what remains. "
    "The cache is still linear in L: the full layers set its slope, a quarter of the all-full one."
))

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 7. What is lost: exact recall
#
# A softmax layer can always look a token up again: its cache holds every key and value. A linear layer must
# have written each one into $d_k \times d_v$ numbers, and a head can keep only about $d_k$ keys apart. First
# the state alone, no training: write $P$ random unit keys with one-hot values into one head ($d_k = 16$), read
# every key back, and count the reads whose largest entry is the right value (`recall.written_recall`).

# %% slideshow={"slide_type": "-"}
D_K, written_pairs = 16, [2, 4, 8, 16, 32, 64]
written = {rule: [recall.written_recall(rule, P, D_K) for P in written_pairs]
           for rule in ("softmax", "delta", "linear")}
fig, ax = plt.subplots(figsize=(7, 3.6))
ax.plot(written_pairs, written["softmax"], marker="o", color=COLORS["cache"],
        label=f"full layer: every pair cached, sharp softmax (scale {recall.SHARP_SCALE:.0f})")
ax.plot(written_pairs, written["delta"], marker="o", color=COLORS["key"], label="delta rule state (β = 1)")
ax.plot(written_pairs, written["linear"], marker="o", color=COLORS["muted"],
        label="linear attention state (φ = elu + 1)")
ax.axvline(D_K, color="black", lw=0.8, ls=":")
ax.annotate(f"d_k = {D_K}", (D_K, 0.05), textcoords="offset points", xytext=(4, 0), fontsize=8)
ax.set_xscale("log", base=2)
ax.set_xticks(written_pairs, [str(p) for p in written_pairs])
ax.set_xlabel("pairs P written into one head")
ax.set_ylabel("pairs read back correctly")
ax.set_ylim(0, 1.05)
ax.grid(alpha=0.3)
ax.legend(frameon=False, fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.2), ncol=2)
plt.tight_layout()
plt.show()

# %% jupyter={"source_hidden": true} slideshow={"slide_type": "-"} tags=["hide-input"]
i16 = written_pairs.index(D_K)
display(Markdown(
    f"The full layer reads back {min(written['softmax']):.0%} of the pairs at every P. "
    f"The delta rule reads back {written['delta'][0]:.0%} of {written_pairs[0]} pairs, {written['delta'][i16]:.0%} of "
    f"{D_K} and {written['delta'][-1]:.0%} of {written_pairs[-1]}: past $d_k$ keys the writes overwrite each other. "
    f"Plain linear attention only adds, and its positive features overlap: {written['linear'][0]:.0%} at "
    f"{written_pairs[0]} pairs already. Random keys are not orthogonal, so even below $d_k$ some binding leaks."
))

# %% [markdown] slideshow={"slide_type": "subslide"}
# ### Trained models: multi-query associative recall
#
# The same question on trained models (Arora et al., *Zoology*, 2023): a sequence lists $P$ key-value pairs,
# then asks for the values of some keys. Four small models of the same size, trained on the task and scored
# against $P$: all full, all linear (Katharopoulos), all Gated DeltaNet, and Qwen3-Next's pattern, 3 Gated
# DeltaNet layers then 1 full. `recall.run_probe` trained them from three seeds (`python -m attnlab.recall
# --out ...`) with two budgets, `recall.load_probe("long")` (plotted) and `"short"` (a third of the steps);
# the results ship in `attnlab/data/`, so nothing trains here.

# %% slideshow={"slide_type": "-"}
probe = recall.load_probe()
pairs = probe["settings"]["pairs"]
colors = {"full": COLORS["cache"], "linear": COLORS["muted"], "gated_deltanet": COLORS["key"],
          "hybrid_3_1": COLORS["query"]}
styles = {"full": "-", "linear": "-", "gated_deltanet": "-", "hybrid_3_1": "--"}  # full and hybrid overlap
fig, ax = plt.subplots(figsize=(7.5, 4.2))
for pattern, r in probe["results"].items():
    ax.plot(pairs, r["mean"], styles[pattern], marker="o", color=colors[pattern], label=r["label"])
    ax.fill_between(pairs, r["min"], r["max"], color=colors[pattern], alpha=0.15)
ax.plot(pairs, [1 / p for p in pairs], color="black", lw=0.8, ls=":", label="1 / P: a value of the sequence, at random")
ax.set_xscale("log", base=2)
ax.set_xticks(pairs, [str(p) for p in pairs])
ax.set_xlabel("key-value pairs P in the sequence")
ax.set_ylabel("recall accuracy")
ax.set_ylim(0, 1.05)
ax.grid(alpha=0.3)
ax.legend(frameon=False, fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.2), ncol=2)
ax.set_title(f"mean of {len(probe['settings']['seeds'])} seeds, band: lowest to highest seed", fontsize=10)
plt.tight_layout()
plt.show()

# %% slideshow={"slide_type": "subslide"}
rows = ["| model | " + " | ".join(f"P = {p}" for p in pairs) + " | final training loss | cache numbers per sequence |",
        "|---|" + "---|" * (len(pairs) + 2)]
task = probe["settings"]["task"]
for r in probe["results"].values():
    cells = [f"{m:.2f} ({lo:.2f}-{hi:.2f})" for m, lo, hi in zip(r["mean"], r["min"], r["max"], strict=True)]
    parts = [f"{r['full_cache']:,} (K, V of {task['max_pairs'] + task['n_queries']} tokens)" if r["full_cache"] else "",
             f"{r['linear_state']:,} (fixed state)" if r["linear_state"] else ""]
    losses = ", ".join(f"{x:.2f}" for x in r["final_loss"])
    rows.append(f"| {r['label']} | " + " | ".join(cells) + f" | {losses} | {' + '.join(p for p in parts if p)} |")
display(Markdown("\n".join(rows)))

# %% jupyter={"source_hidden": true} slideshow={"slide_type": "-"} tags=["hide-input"]
res, s = probe["results"], probe["settings"]
m = s["model"]
gdn, lin = res["gated_deltanet"]["mean"], res["linear"]["mean"]
lin_gap = max(abs(a - 1 / p) for a, p in zip(lin, pairs, strict=True))  # linear attention's distance from 1/P
display(Markdown(
    f"Each model: {len(res['full']['layers'])} layers of width {m['d_model']}, {m['n_heads']} heads of "
    f"{m['d_model'] // m['n_heads']}, an MLP of {m['d_ff']}; trained on sequences of 1 to {s['task']['max_pairs']} "
    f"pairs over {s['task']['n_keys']} keys and {s['task']['n_values']} values, {s['task']['n_queries']} queries each, "
    f"{s['steps']} steps of batch {s['batch']} at learning rate {s['lr']} (at most "
    f"{max(max(r['seconds']) for r in res.values()):.0f} s per run on one thread of a shared 2-core CPU). "
    f"The all-full model's and the hybrid's mean accuracy is "
    f"{min(res['full']['mean'] + res['hybrid_3_1']['mean']):.3f} or better at every P. Gated DeltaNet falls from "
    f"{gdn[0]:.0%} at P = {pairs[0]} to {gdn[-1]:.0%} at P = {pairs[-1]} "
    f"(its seeds spread from {res['gated_deltanet']['min'][0]:.0%} to {res['gated_deltanet']['max'][0]:.0%} at "
    f"P = {pairs[0]}): its trained state loses bindings as P grows, as the written one above does. Plain linear "
    f"attention stays within {lin_gap:.2f} of 1/P at every P: it learned which values a sequence holds, not which "
    "key holds which. One full layer in four brings every lookup back."
))

# %% jupyter={"source_hidden": true} slideshow={"slide_type": "-"} tags=["hide-input"]
short = recall.load_probe("short")
sres, ss = short["results"], short["settings"]
gap = max(abs(a - 1 / p) for name in ("linear", "gated_deltanet")
          for a, p in zip(sres[name]["mean"], ss["pairs"], strict=True))  # distance from 1/P, over every P
display(Markdown(
    f"With the short budget ({ss['steps']} steps at learning rate {ss['lr']}) the all-full model and the hybrid "
    f"already reached a mean accuracy of {min(sres['full']['mean'] + sres['hybrid_3_1']['mean']):.3f} or better at "
    f"every P, while "
    f"both linear-only models stayed within {gap:.2f} of 1/P: they had learned which values a sequence holds, not "
    "which key holds which. A softmax layer also learns the lookup far sooner."
))

# %% [markdown] slideshow={"slide_type": "subslide"}
# ### What the tiny regime cannot show
#
# * **Learning speed mixes in.** Gated DeltaNet needed the long budget to learn any binding, and plain linear
#   attention learned none in either, so a trained curve mixes what a state can hold with how far training
#   got; the training-free measure above isolates the first. Longer training might move their curves up.
# * **Scale.** A real Gated DeltaNet head has $d_k = 128$, 32 heads per layer, trained on trillions of tokens;
#   its limit lies much further out, and the published comparisons (the Gated DeltaNet and Kimi Linear papers)
#   are on language modelling, recall-heavy and long-context benchmarks, not on this toy.
# * **The task is made easy to learn.** Each pair is one token (key and value embedded together), so one layer
#   can store it; the usual token-per-symbol form also needs an induction circuit, which a few hundred CPU
#   steps do not reliably grow.
# * **Language.** Recall of a synthetic list is the sharpest failure of a fixed state; how much it costs on
#   text, code or long documents is what the papers measure, and a 4-layer toy cannot.
# * **KDA.** Kimi Linear's KDA gates each of the $d_k$ channels separately ($\text{diag}(\alpha_t)$ instead of
#   one $\alpha_t$ per head); the probe's linear layers use Gated DeltaNet's scalar gate.

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 8. Why real models keep a few full layers
#
# A fixed state of $d_k \times d_v$ numbers per head can hold about $d_k$ bindings exactly, however long the
# context; the gate and the delta rule decide what to forget, they cannot add room. A full layer has no such
# limit: its cache holds every token, at $O(L)$ memory and $O(L)$ work per step. The hybrids split the work:
# most layers carry local and summarised information at a fixed cost, and one layer in four can still find any
# token exactly. Qwen3-Next pairs Gated DeltaNet with GQA (full iff $(i+1) \bmod 4 = 0$), and Qwen3.5 and
# OLMo-Hybrid keep the same one-in-four rhythm; Kimi Linear pairs KDA with MLA, whose cache is already small
# (chapter 7), and drops RoPE from its MLA layers: the linear layers' order-aware recurrence and convolution
# carry position. The next cell sets the cache saved against the full layers kept:

# %% jupyter={"source_hidden": true} slideshow={"slide_type": "-"} tags=["hide-input"]
lines = []
for r in (0, 1, 3, 7):
    full = costs.hybrid_full_layers(QWEN.n_layers, r)
    p = costs.hybrid_cache_bytes(QWEN, 2**17, full_layers=full)
    lines.append(f"{r}:1 → {len(full)} full layers, {p['total'] / GIB:.2f} GiB")
display(Markdown(
    f"{QWEN.name}'s 48 layers at 128K tokens, linear:full = " + "; ".join(lines) + ". Each halving of the full "
    "layers halves the cache; the recall probe above says what the last full layers buy back."
))

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 9. Explore: context, ratio, model
#
# Choose the hybrid, the context and how many linear layers sit before each full one ("published" is the
# model's own pattern). The table shows what one sequence holds in its full layers' cache, its linear layers'
# state and in all, next to the same model with every layer full.

# %% slideshow={"slide_type": "-"}
explorer = linear_widgets.hybrid_explorer(model="qwen3-next-80b-a3b", context=2**17)
explorer

# %% jupyter={"source_hidden": true} slideshow={"slide_type": "subslide"} tags=["hide-input"]
explorer.model.value, explorer.context.value, explorer.ratio.value = "kimi-linear-48b-a3b", 2**20, None
kimi_parts = costs.hybrid_cache_bytes("kimi-linear-48b-a3b", 2**20)
display(Markdown(
    f"With Kimi Linear at 1M tokens the explorer shows {kimi_parts['total'] / GIB:.2f} GiB for one sequence against "
    f"{kimi_parts['all_full'] / GIB:.2f} GiB with MLA in all {KIMI.n_layers} layers."
))
explorer.model.value, explorer.context.value = "qwen3-next-80b-a3b", 2**17

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 10. A tiny hybrid trained like the others
#
# The recall probe trained small models on a synthetic task. The course's own tiny language model (`TinyLM`,
# chapters 4-17) can be a hybrid too: `TinyLMConfig(full_every=4)` keeps GQA in layer 3 (full iff
# $(i+1) \bmod 4 = 0$, Qwen3-Next's rule) and puts a Gated DeltaNet layer (`LinearAttention` with the model's
# heads and the 4-tap convolution) in layers 0-2. `python -m attnlab.train --attention gqa_hybrid` trains it on
# the course corpus with the recipe of `tiny_mha`, `tiny_gqa` and the others. `attnlab.quality` trains every
# scheme from three seeds with the MLP widened to one parameter count and scores each on the whole validation
# split; the hybrid joins that study (`python -m attnlab.quality --schemes gqa_hybrid --merge ...`), so its seeds
# compare with MHA's and GQA's on equal terms.

# %% slideshow={"slide_type": "-"}
study = quality.load_study()
compared = ("mha", "gqa", "gqa_hybrid")
fig, ax = plt.subplots(figsize=(6, 3.4))
plots.seed_spread(study, compared, ax=ax)
plt.tight_layout()
plt.show()

# %% jupyter={"source_hidden": true} slideshow={"slide_type": "fragment"} tags=["hide-input"]
summary = {key: study.summary(key) for key in compared}
gap = study.gap("gqa_hybrid", "gqa")
judged = ("more than twice the larger seed spread: three seeds can tell it from luck" if gap.clear else
          "within twice the larger seed spread: three seeds cannot tell it from luck")
display(Markdown(
    "Validation loss on the whole split (nats per token), mean ± std over seeds: "
    + ", ".join(f"{get_scheme(k).label} **{summary[k].mean:.3f} ± {summary[k].std:.3f}**" for k in compared)
    + f". The hybrid's MLP is {study.d_ff['gqa_hybrid']} wide against GQA's {study.d_ff['gqa']}, which brings it to "
    f"{summary['gqa_hybrid'].params:,} parameters (all of the study's models lie within "
    f"{100 * study.param_spread():.1f}% of each other). Against GQA it is {gap.delta:+.3f} nats "
    f"(per seed {', '.join(f'{d:+.3f}' for d in gap.paired)}), {judged}."
))

# %% jupyter={"source_hidden": true} slideshow={"slide_type": "fragment"} tags=["hide-input"]
shipped = {name: checkpoint_metrics(name) for name in ("tiny_gqa", "tiny_gqa_hybrid")}
hist = shipped["tiny_gqa_hybrid"]["history"]
best = min(range(len(hist["val_loss"])), key=hist["val_loss"].__getitem__)
fits_more = hist["train_loss"][-1] < shipped["tiny_gqa"]["history"]["train_loss"][-1]
generalises_less = shipped["tiny_gqa_hybrid"]["val_loss"] > shipped["tiny_gqa"]["val_loss"]
display(Markdown(
    f"The shipped checkpoint `tiny_gqa_hybrid` (seed 0, the base MLP width, {shipped['tiny_gqa_hybrid']['n_params']:,} "
    f"parameters) ends its {hist['step'][-1]} steps at a training loss of {hist['train_loss'][-1]:.2f} against "
    f"`tiny_gqa`'s {shipped['tiny_gqa']['history']['train_loss'][-1]:.2f}, and at a sampled validation loss of "
    f"{hist['val_loss'][-1]:.3f} against {shipped['tiny_gqa']['val_loss']:.3f}; its validation loss was lowest at "
    f"step {hist['step'][best]} ({hist['val_loss'][best]:.3f}). "
    + ("The hybrid fits the small training split faster, and that does not carry over to held-out text."
       if fits_more and generalises_less else "")
))

# %% [markdown] slideshow={"slide_type": "subslide"}
# ### Its cache as the context grows
#
# Both checkpoints read the same validation text, 16 tokens at a time, into the caches `model.new_cache()` gives
# them: `tiny_gqa` a `LayerCache` per layer, the hybrid a `RecurrentState` in each linear layer and a `LayerCache`
# in its GQA layer. The bytes are what the caches hold (`KVCache.nbytes`, float32), measured.

# %% slideshow={"slide_type": "-"}
tiny = {name: load_checkpoint(name) for name in ("tiny_gqa", "tiny_gqa_hybrid")}
text_ids = token_ids("val")[None, :tiny["tiny_gqa"].config.max_seq_len]  # (1, 256) tokens of held-out text
caches = {name: model.new_cache() for name, model in tiny.items()}
measured = {"context": [], "tiny_gqa": [], "tiny_gqa_hybrid": [], "state": []}
with torch.no_grad():
    for L in range(16, text_ids.shape[1] + 1, 16):
        for name, model in tiny.items():
            model(text_ids[:, caches[name].seq_len:L], cache=caches[name])
            measured[name].append(caches[name].nbytes)
        measured["context"].append(L)
        measured["state"].append(caches["tiny_gqa_hybrid"].state_nbytes)
fig, ax = plt.subplots(figsize=(7, 3.4))
for name, key in (("tiny_gqa", "gqa"), ("tiny_gqa_hybrid", "gqa_hybrid")):
    ax.plot(measured["context"], [b / 1024 for b in measured[name]], marker=get_scheme(key).marker, ms=4,
            color=get_scheme(key).color, label=f"{name}: the whole cache")
hybrid_cfg = tiny["tiny_gqa_hybrid"].config
lin, n_linear = hybrid_cfg.linear_config(), hybrid_cfg.layer_types().count("linear_attention")
one_state = costs.linear_state_bytes(lin.n_heads, lin.head_dim, lin.d_v, torch.float32,
                                     conv_channels=lin.conv_channels, conv_kernel=lin.conv_size,
                                     conv_dtype=torch.float32)  # section 6's formula, in the model's float32
assert set(measured["state"]) == {n_linear * one_state}  # flat, and what the formula says
ax.plot(measured["context"], [b / 1024 for b in measured["state"]], ls="--", color=get_scheme("gqa_hybrid").color,
        label="tiny_gqa_hybrid: its 3 linear layers' states")
ax.axvline(study.recipe["seq_len"], color="black", lw=0.8, ls=":")
ax.annotate("training window", (study.recipe["seq_len"], 10), textcoords="offset points", xytext=(4, 0), fontsize=8)
ax.set_xlabel("context (tokens read)")
ax.set_ylabel("KiB, one sequence, float32")
ax.grid(alpha=0.3)
ax.legend(frameon=False, fontsize=8)
plt.show()

# %% jupyter={"source_hidden": true} slideshow={"slide_type": "fragment"} tags=["hide-input"]
per_token = {name: caches[name].bytes_per_token() for name in tiny}
replaced = int(per_token["tiny_gqa"] - per_token["tiny_gqa_hybrid"])  # bytes a token of the 3 layers' K/V
even = costs.state_crossover_context(n_linear * one_state, replaced)
longest = measured["context"][-1]
at = {L: {name: measured[name][measured["context"].index(L)] for name in tiny}
      for L in (study.recipe["seq_len"], longest)}
display(Markdown(
    f"The hybrid's {n_linear} states hold {n_linear} × {one_state:,} = **{n_linear * one_state:,} bytes** at every "
    f"context (`costs.linear_state_bytes`: {lin.n_heads} heads of {lin.head_dim} × {lin.d_v} and the convolution's "
    f"last {lin.conv_size - 1} inputs of {lin.conv_channels} channels); only its GQA layer grows, by "
    f"**{per_token['tiny_gqa_hybrid']:,.0f} bytes a token** (`KVCache.bytes_per_token` counts the growing part) "
    f"against `tiny_gqa`'s {per_token['tiny_gqa']:,.0f} over 4 layers. At this width the fixed states weigh as much "
    f"as {n_linear * one_state / replaced:.0f} tokens of the K/V the three layers would otherwise hold: from {even} "
    "tokens on the hybrid holds less than `tiny_gqa`, before that at least as much. At the "
    f"{study.recipe['seq_len']}-token training window it holds {at[study.recipe['seq_len']]['tiny_gqa_hybrid']:,} "
    f"bytes against {at[study.recipe['seq_len']]['tiny_gqa']:,}, at {longest} tokens (`max_seq_len`) "
    f"{at[longest]['tiny_gqa_hybrid']:,} against {at[longest]['tiny_gqa']:,} "
    f"({at[longest]['tiny_gqa_hybrid'] / at[longest]['tiny_gqa']:.0%}); the ratio falls toward "
    f"{per_token['tiny_gqa_hybrid'] / per_token['tiny_gqa']:.0%} as the context grows."
))

# %% [markdown] slideshow={"slide_type": "subslide"}
# ### Cached generation equals uncached
#
# `generate` decodes from the cache one token at a time: the linear layers then run one step of the recurrence
# each (a one-token call never pads to a chunk), the GQA layer attends over its cache. Without the cache every
# step re-runs the whole sequence through the chunkwise form. Greedy decoding must give the same tokens:

# %% slideshow={"slide_type": "-"}
tokenizer, window = load_tokenizer(), study.recipe["seq_len"]
hybrid = tiny["tiny_gqa_hybrid"]
prompt = torch.tensor([tokenizer.encode("The dictionary")])  # (1, prompt tokens)
with torch.no_grad():
    cached = generate(hybrid, prompt, max_new_tokens=60, use_cache=True)
    uncached = generate(hybrid, prompt, max_new_tokens=60, use_cache=False)
assert torch.equal(cached, uncached)
print(tokenizer.decode(cached[0].tolist()))
hybrid64, n_prefill = load_checkpoint("tiny_gqa_hybrid", dtype=torch.float64), 40
cache64 = hybrid64.new_cache()
with torch.no_grad():  # float64: a prefill (chunkwise) then one-token steps (recurrent) against one forward
    one_forward = hybrid64(text_ids[:, :window])
    stepped = torch.cat([hybrid64(text_ids[:, :n_prefill], cache=cache64)]
                        + [hybrid64(text_ids[:, t:t + 1], cache=cache64) for t in range(n_prefill, window)], dim=1)

# %% jupyter={"source_hidden": true} slideshow={"slide_type": "fragment"} tags=["hide-input"]
display(Markdown(
    f"Cached and uncached generation give the same {cached.shape[1] - prompt.shape[1]} tokens. In float64, a prefill "
    f"of {n_prefill} tokens (chunkwise) then {window - n_prefill} one-token steps (recurrent) give logits within "
    f"**{float((stepped - one_forward).abs().max()):.1e}** of one forward over the {window} tokens: the two forms are "
    "one computation, in the model as in section 4."
))

# %% [markdown] slideshow={"slide_type": "subslide"}
# ### What this tiny hybrid cannot show

# %% jupyter={"source_hidden": true} slideshow={"slide_type": "fragment"} tags=["hide-input"]
passes = study.tokens_seen() / token_ids("train").numel()
display(Markdown(
    f"* **No long context.** Every training and scoring window is {window} tokens. The GQA layer sees all of them and "
    f"the states never carry more than {window}, so the loss above says nothing about the long-context recall a "
    "hybrid's full layers exist for. The recall probe of section 7 measures what the state loses: there Gated "
    f"DeltaNet alone recalled {gdn[-1]:.0%} of the pairs at P = {pairs[-1]}, the 3:1 hybrid "
    f"{res['hybrid_3_1']['mean'][-1]:.0%}.\n"
    f"* **Scale.** {summary['gqa_hybrid'].params / 1e6:.2f}M parameters trained on {study.tokens_seen() / 1e6:.1f}M "
    f"tokens, about {passes:.0f} passes over a training split of {token_ids('train').numel() / 1e3:.0f}K tokens. "
    f"{QWEN.name} was trained on trillions of tokens; whether a hybrid matches full attention on language is "
    "what its papers measure, not what these seeds can.\n"
    f"* **Noise.** With {summary['gqa_hybrid'].n} seeds, a gap below about twice the seeds' spread "
    f"({2 * gap.noise:.3f} nats here) cannot be told from luck."
))

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 11. What it costs
#
# Per decode step a linear layer's core does three $d_k \times d_v$ products per head (read $S^\top k$, write
# $k u^\top$, read $S^\top q$): $6 H d_k d_v$ FLOPs, at any context (`costs.linear_decode_flops`). A full layer's
# attention does $4 H d_h T$ for $T$ cached tokens and reads its whole cache. The linear layer reads and
# writes its state instead: a fixed number of bytes.

# %% slideshow={"slide_type": "-"}
full_shape = AttentionShape(d_model=2048, n_heads=16, head_dim=256, n_kv_heads=2, n_layers=1)  # Qwen3-Next full layer
linear_flops = costs.linear_decode_flops(QWEN.linear_heads, QWEN.d_k, QWEN.d_v)
state_b = costs.linear_state_bytes(QWEN.linear_heads, QWEN.d_k, QWEN.d_v, conv_channels=QWEN.conv_channels,
                                   conv_kernel=QWEN.conv_kernel)
rows = ["| context | full layer: attention FLOPs | full layer: cache read | linear layer: core FLOPs | "
        "linear layer: state read + written |", "|---|---|---|---|---|"]
for L in (4096, 32768, 131072, 262144):
    fl = costs.decode_attention_flops("gqa", full_shape, L)
    read = costs.cache_bytes("gqa", full_shape, L, torch.bfloat16)
    rows.append(f"| {L // 1024}K | {fl / 1e6:,.0f} M | {read / 2**20:,.0f} MiB | {linear_flops / 1e6:,.0f} M | "
                f"{2 * state_b / 2**20:.1f} MiB |")
display(Markdown("\n".join(rows)))

# %% jupyter={"source_hidden": true} slideshow={"slide_type": "-"} tags=["hide-input"]
per_cached = (costs.decode_attention_flops("gqa", full_shape, 2048)
              - costs.decode_attention_flops("gqa", full_shape, 1024)) / 1024  # FLOPs per cached token, full layer
per_cached_bytes = costs.cache_bytes("gqa", full_shape, 1, torch.bfloat16)  # bytes per cached token, full layer
display(Markdown(
    f"{QWEN.name}'s shapes, one layer, one token: a full layer spends {per_cached:,.0f} FLOPs per cached token, so the "
    f"linear layer's {linear_flops / 1e6:.1f} MFLOPs equal a full layer's at {linear_flops / per_cached:,.0f} tokens "
    f"of context, and its {2 * state_b / 2**20:.1f} MiB of state traffic equal a full layer's cache read at "
    f"{2 * state_b / per_cached_bytes:,.0f} tokens; beyond that the linear layer is cheaper and its cost stays put. "
    "What it costs instead: recall (section 7), a chunkwise kernel for training (a triangular solve per chunk), and "
    "state kept in float32."
))

# %% [markdown] slideshow={"slide_type": "slide"}
# ## Exercises
#
# Each exercise has an answer cell (replace `None`) and a check cell. Worked solutions are in
# `notebooks/solutions/ch18.py`; try first.
#
# **Exercise 1.** One Gated DeltaNet layer of Qwen3-Next-80B-A3B has 32 value heads, each with a $128 \times
# 128$ state kept in float32, and a short convolution of 4 taps over 8192 channels whose inputs are bfloat16.
# How many bytes does the layer hold per sequence? (An int.)

# %% slideshow={"slide_type": "-"}
answer_state_bytes = None

# %% slideshow={"slide_type": "-"}
print(ch18.check_state_bytes(answer_state_bytes))

# %% [markdown] slideshow={"slide_type": "subslide"}
# **Exercise 2.** A full layer of the same model caches K and V for 2 KV heads of 256 in bfloat16. From which
# context length $L$ (tokens) on does that layer's cache hold more bytes than the linear layer's state of
# exercise 1? (An int.)

# %% slideshow={"slide_type": "-"}
answer_crossover = None

# %% slideshow={"slide_type": "-"}
print(ch18.check_crossover(answer_crossover))

# %% [markdown] slideshow={"slide_type": "subslide"}
# **Exercise 3, predict then run.** One head, $d_k = 2$, $d_v = 1$. The key $e_1 = (1, 0)$ is written three
# times, with the values 1, 2, 3; after each write the query $e_1$ reads the state. **Predict** the three
# read-outs of linear attention ($\phi = $ elu + 1, with its normaliser) and of the delta rule ($\beta = 1$, no
# gate); then run the check, which runs both with `attnlab.linear_attention`. Answer with
# `{"linear": [r1, r2, r3], "delta": [r1, r2, r3]}`.

# %% slideshow={"slide_type": "-"}
answer_overwrite = None

# %% slideshow={"slide_type": "-"}
print(ch18.check_overwrite_prediction(answer_overwrite))

# %% [markdown] slideshow={"slide_type": "slide"}
# ## Summary
#
# * With $\text{sim}(q, k) = \phi(q)^\top\phi(k)$ attention becomes a recurrence over a $d_k \times d_v$ state:
#   $S_t = S_{t-1} + \phi(k_t)v_t^\top$. The "cache" is that state, the same size at every context.
# * The delta rule writes only the error, $S_t = \alpha_t(I - \beta_t k_t k_t^\top)S_{t-1} + \beta_t k_t v_t^\top$;
#   Gated DeltaNet's $\alpha_t$ fades the past.
# * The chunkwise form (UT transform inside chunks, the state passed between them) trains with matmuls and
#   equals the recurrence to float64 rounding; the recurrent form decodes one token at a time.
# * A state holds about $d_k$ bindings: read-back falls as the pairs grow, where a full layer's cache does not.
#   Trained tiny models agree: Gated DeltaNet's recall falls with P, plain linear attention learned no binding,
#   and the 3:1 hybrid recalls every pair, as the all-full model does.
# * Hybrids keep one full layer in four (Qwen3-Next: GQA, Kimi Linear: MLA): about a quarter of the full cache
#   plus a few MiB of state per layer and sequence, and exact lookups where they are needed.
# * The course's tiny model as a 3:1 hybrid (`tiny_gqa_hybrid`, `TinyLMConfig(full_every=4)`) trains with the
#   others' recipe and joins the seeded, parameter-matched study; its cache is three flat states plus one growing
#   GQA layer, and decoding with recurrent steps gives the tokens of the uncached, chunkwise forward.
