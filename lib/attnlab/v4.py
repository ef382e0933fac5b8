"""DeepSeek-V4's attention layer: a shared-KV MQA backbone, a sliding window in every layer, and compressed
long-range entries, either selected by a lightning indexer (CSA) or read densely (HCA).

"DeepSeek-V4: Towards Highly Efficient Million-Token Context Intelligence" (April 2026), §2.3; checked
against Hugging Face's ``models/deepseek_v4/modeling_deepseek_v4.py`` (transformers 5.23-5.25) and the
V4-Pro / V4-Flash ``config.json``. Symbols (Hugging Face's / DeepSeek's names in brackets):

    h_t   hidden state, width d [hidden_size]           c     width of the shared KV vector [head_dim], 512
    n_h   query heads [num_attention_heads]             d^R   RoPE width, the LAST d^R of c [qk_rope_head_dim], 64
    d_c   query latent [q_lora_rank]                    W     window of raw tokens [sliding_window], 128
    m     compression rate [compress_rates]: 4 (CSA), 128 (HCA)
    H^I, c^I, k   indexer heads, width, top-k [index_n_heads, index_head_dim, index_topk]
    g, d_g        output groups and their width [o_groups, o_lora_rank]

Every layer (§2.3; Hugging Face's "shared-KV Multi-Query Attention"):

    c^Q_t   = RMSNorm(W^DQ h_t)                                  query latent [q_a_proj, q_a_norm; wq_a, q_norm]
    q_{t,i} = RoPE_t(RMSNorm_unweighted(W^UQ_i c^Q_t))           per head, width c [q_b_proj, q_b_norm; wq_b]
    kv_t    = RoPE_t(RMSNorm(W^KV h_t))                          ONE vector, the key AND the value [kv_proj; wkv]
    o_{t,i} = RoPE_t^-1( sum_j a_{t,i,j} kv_j ),  a = exp(q·kv_j / sqrt(c)) / (exp(z_i) + sum_j' exp(...))

with j running over the window (the last W tokens, t itself included) and the visible compressed entries,
in ONE softmax, and z_i a learned per-head sink [sinks; attn_sink] that only adds to the denominator.
RoPE rotates interleaved pairs (2i, 2i+1) of the last d^R coordinates; since the value carries the rotation
of its key, the output's RoPE slice is rotated back at the query position (R_t^-1 R_j = R_(j-t)), so only
relative position counts. The grouped output projection [o_a_proj, o_b_proj; wo_a, wo_b] maps each of g
groups of n_h / g heads to d_g numbers, then the g d_g to d (§2.3.1, "Grouped Output Projection").

The compressor (§2.3.1 for CSA, §2.3.2 for HCA): per token, content C_j = W^C h_j and gate logits Z_j = W^Z h_j
[kv_proj, gate_proj; wkv, wgate], a learned position bias B [position_bias; ape] per slot, then

    CSA, m = 4:   entry w pools 2m slots: the first halves of tokens m(w-1) .. mw-1 and the second halves
                  of tokens mw .. mw+m-1 (windows of 2m at stride m):
                  C^Comp_w = sum_slots softmax_slots(Z + B) * C      (a softmax per channel over the slots)
    HCA, m = 128: the same over non-overlapping blocks of m tokens,

then RMSNorm and RoPE at position w m, the first token of block w (for CSA, the block whose second halves the
entry pools; DeepSeek's ``freqs_cis[:cutoff:ratio]``). Query t may use entry w once its last token has arrived:
w < (t + 1) // m. CSA scores the visible entries with a lightning indexer over index keys made by its own
compressor of width c^I (I_{t,w} = sum_h w_{t,h} ReLU(q^I_{t,h} · K^I_w), :func:`attnlab.dsa.index_scores`)
and attends to the top-k (:func:`attnlab.dsa.topk_indices`); HCA attends to every visible entry.

:class:`V4Cache` holds what decoding needs: the window, the compressed entries and index keys, and each
compressor's running state (the projections of the unfinished window, and for CSA the previous window's
first halves), so token-by-token decoding equals a prefill. Hugging Face computes norms, RoPE and the
pooling softmax in float32 even in a float64 model; :func:`from_transformers` builds this layer from its
``DeepseekV4Attention``. DeepSeek stores the cache in FP8 and the index keys in FP4
(:mod:`attnlab.cache_formats`); here every tensor is in the layer's dtype.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from attnlab._validate import (
    check_bool,
    check_choice,
    check_floating,
    check_hidden_states,
    check_ndim,
    check_non_negative_int,
    check_positions,
    check_positive_int,
    check_real,
    check_tensor,
    check_type,
)
from attnlab.attention import AttentionLayer, AttentionOutput, causal_mask
from attnlab.dsa import IndexSelection, gather_tokens, index_scores, selection_mask, topk_indices
from attnlab.kv_cache import LayerCache
from attnlab.mla import yarn_frequencies
from attnlab.rope import rotate_pairs

#: The three kinds of V4 attention layer, in the config's ``compress_ratios`` terms: 0, 4 and 128.
LAYER_TYPES: tuple[str, ...] = ("sliding", "csa", "hca")
#: Hugging Face's ``layer_types`` names for them.
HF_LAYER_TYPES: dict[str, str] = {"sliding": "sliding_attention", "csa": "compressed_sparse_attention",
                                  "hca": "heavily_compressed_attention"}
#: How a CSA layer attends to its selected entries: "gather" copies each query's top-k entries (the sparse
#: kernel's way), "mask" scores every compressed entry and masks the unselected ones (Hugging Face's way).
V4_IMPLEMENTATIONS: tuple[str, ...] = ("gather", "mask")


# ----------------------------------------------------------------------------------------------------
# configuration


@dataclass(frozen=True, kw_only=True)
class V4AttentionConfig:
    """Shape of one DeepSeek-V4 attention layer (Hugging Face's / DeepSeek's config names in brackets).

    d_model [hidden_size; dim]; n_heads [num_attention_heads; n_heads]; head_dim [head_dim] c, the width of
    the shared key/value vector (512); rope_head_dim [qk_rope_head_dim] d^R (64), RoPE on the last d^R of c;
    q_lora_rank [q_lora_rank] d_c; o_groups [o_groups] g and o_lora_rank [o_lora_rank] d_g; window
    [sliding_window] W (128); layer_type: "sliding", "csa" or "hca" (:data:`LAYER_TYPES`); compress_rate
    [compress_rates; compress_ratio] m: None for "sliding", 4 for CSA and 128 for HCA in the releases;
    index_n_heads, index_head_dim, index_topk [same names] H^I, c^I, k: the CSA indexer (ignored otherwise).
    rope_base, rope_factor, original_max_position, beta_fast, beta_slow: RoPE and YaRN
    (:func:`attnlab.mla.yarn_frequencies`); V4 uses base 10000 without YaRN in sliding layers and base 160000
    with YaRN (factor 16, original 65536) in compressed ones, with no YaRN amplitude on cos/sin.
    norm_eps [rms_norm_eps].
    """

    d_model: int
    n_heads: int
    q_lora_rank: int
    o_groups: int
    o_lora_rank: int
    head_dim: int = 512
    rope_head_dim: int = 64
    window: int = 128
    layer_type: str = "csa"
    compress_rate: int | None = None
    index_n_heads: int = 64
    index_head_dim: int = 128
    index_topk: int = 512
    rope_base: float = 10000.0
    rope_factor: float = 1.0
    original_max_position: int | None = None
    beta_fast: float = 32.0
    beta_slow: float = 1.0
    norm_eps: float = 1e-6

    def __post_init__(self) -> None:
        for name in ("d_model", "n_heads", "q_lora_rank", "o_groups", "o_lora_rank", "head_dim", "window"):
            check_positive_int(name, getattr(self, name))
        check_non_negative_int("rope_head_dim", self.rope_head_dim)
        if self.rope_head_dim % 2 or self.rope_head_dim > self.head_dim:
            raise ValueError(f"rope_head_dim={self.rope_head_dim} must be even and <= head_dim={self.head_dim}")
        if self.n_heads % self.o_groups:
            raise ValueError(f"n_heads={self.n_heads} is not divisible by o_groups={self.o_groups}")
        check_choice("layer_type", self.layer_type, LAYER_TYPES)
        if self.layer_type == "sliding":
            if self.compress_rate is not None:
                raise ValueError(f"compress_rate={self.compress_rate} must be None for a sliding layer "
                                 "(it compresses nothing)")
        else:
            if self.compress_rate is None:
                object.__setattr__(self, "compress_rate", 4 if self.layer_type == "csa" else 128)
            check_positive_int("compress_rate", self.compress_rate)
        if self.layer_type == "csa":
            for name in ("index_n_heads", "index_head_dim", "index_topk"):
                check_positive_int(name, getattr(self, name))
            if self.rope_head_dim > self.index_head_dim:
                raise ValueError(f"rope_head_dim={self.rope_head_dim} must be <= index_head_dim="
                                 f"{self.index_head_dim}: the indexer rotates its last d^R coordinates too")
        check_real("rope_base", self.rope_base, 1.0, strict=True)
        check_real("rope_factor", self.rope_factor, 1.0)
        if self.rope_factor > 1.0:
            check_positive_int("original_max_position", self.original_max_position)
        check_real("beta_slow", self.beta_slow, 0.0, strict=True)
        check_real("beta_fast", self.beta_fast, 0.0, strict=True)
        if self.beta_fast <= self.beta_slow:
            raise ValueError(f"beta_fast={self.beta_fast} must be > beta_slow={self.beta_slow}")
        check_real("norm_eps", self.norm_eps, 0.0, strict=True)

    @property
    def softmax_scale(self) -> float:
        """c^-0.5: the key is the whole c-wide vector (Hugging Face's ``scaling``)."""
        return self.head_dim**-0.5

    @property
    def compressed(self) -> bool:
        """True for CSA and HCA layers, which keep compressed entries besides the window."""
        return self.layer_type != "sliding"

    @property
    def overlap(self) -> bool:
        """True for CSA: windows of 2m tokens at stride m, so each token feeds two entries."""
        return self.layer_type == "csa"


# ----------------------------------------------------------------------------------------------------
# small pieces: norms, partial RoPE, the sink softmax


def rms_norm(x: torch.Tensor, eps: float, weight: torch.Tensor | None = None) -> torch.Tensor:
    """x / sqrt(mean(x^2) + eps) over the last axis, times ``weight`` when given (weightless for V4's
    per-head query norm [q_b_norm]). x (..., n) -> (..., n)."""
    check_floating("x", x)
    if x.dim() == 0:
        raise ValueError("x must have at least 1 dim (..., n), got a scalar")
    check_real("eps", eps, 0.0, strict=True)
    if weight is not None:
        check_floating("weight", weight)
        if tuple(weight.shape) != (x.shape[-1],):
            raise ValueError(f"weight has shape {tuple(weight.shape)}, expected ({x.shape[-1]},), one per channel")
    x = x * torch.rsqrt(x.square().mean(-1, keepdim=True) + eps)
    return x if weight is None else x * weight


def rope_tail(x: torch.Tensor, positions: torch.Tensor, theta: torch.Tensor, inverse: bool = False) -> torch.Tensor:
    """Rotate interleaved pairs (2i, 2i+1) of the LAST 2 len(theta) coordinates of x by positions * theta
    (V4's partial RoPE, Hugging Face's ``apply_rotary_pos_emb``); ``inverse`` rotates by minus the angle
    (R_t^-1, applied to the attention output). x (b, s, [heads,] width), positions (s,), theta (d^R/2,)
    float64 -> x's shape."""
    check_floating("x", x)
    if x.dim() not in (3, 4):
        raise ValueError(f"x must have 3 or 4 dims (batch, seq, [heads,] width), got shape {tuple(x.shape)}")
    check_positions(positions, x.shape[1])
    check_floating("theta", theta)
    check_ndim("theta", theta, 1, "(d^R / 2,)")
    check_bool("inverse", inverse)
    d_rope = 2 * theta.shape[0]
    if d_rope > x.shape[-1]:
        raise ValueError(f"theta rotates d^R = {d_rope} coordinates, x has only {x.shape[-1]}")
    if d_rope == 0:
        return x
    angles = positions.to("cpu", torch.float64)[:, None] * theta  # (s, d^R/2)
    if inverse:
        angles = -angles
    angles = angles.view(angles.shape[0], *([1] * (x.dim() - 3)), angles.shape[1])  # broadcast over heads
    x_pass, x_rope = x.split([x.shape[-1] - d_rope, d_rope], dim=-1)
    return torch.cat([x_pass, rotate_pairs(x_rope, angles, interleaved=True)], dim=-1)


def sink_softmax(scores: torch.Tensor, sinks: torch.Tensor) -> torch.Tensor:
    """a_j = exp(s_j) / (exp(z) + sum_j' exp(s_j')): softmax over [scores, sink] with the sink's column
    dropped (V4's per-head attention sink, as gpt-oss's). The weights sum to less than 1; the sink takes the
    rest, so a head can attend to nothing. scores (b, s, h, n) (-inf where masked), sinks (h,) -> (b, s, h, n)."""
    check_ndim("scores", scores, 4, "(batch, seq, heads, keys)")
    check_ndim("sinks", sinks, 1, "(heads,)")
    if sinks.shape[0] != scores.shape[2]:
        raise ValueError(f"sinks has {sinks.shape[0]} heads, scores has {scores.shape[2]}")
    z = sinks.to(scores.dtype)[None, None, :, None]  # (1, 1, h, 1)
    top = torch.maximum(scores.amax(-1, keepdim=True), z)  # max over keys AND the sink: every exponent <= 0
    exp = torch.exp(scores - top)  # exp(-inf) = 0 for masked keys
    return exp / (exp.sum(-1, keepdim=True) + torch.exp(z - top))


# ----------------------------------------------------------------------------------------------------
# the compressor and its running state


class CompressorState:
    """A compressor's running state between calls (Hugging Face's ``buffer_kv``/``buffer_gate``,
    ``overlap_kv``/``overlap_gate``, ``entry_count``): ``pending`` the projections [C; Z] of the tokens of
    the unfinished window, (b, r < m, 2 k c) with k = 2 for CSA and 1 for HCA; ``previous`` (CSA) the first
    halves [C^a; Z^a + B^a] of the last complete window, (b, m, 2 c), which the next entry pools; ``entries``
    how many entries have been emitted (the next window starts at token entries * m)."""

    def __init__(self) -> None:
        self.pending: torch.Tensor | None = None
        self.previous: torch.Tensor | None = None
        self.entries = 0

    @property
    def nbytes(self) -> int:
        """Bytes held by the running state."""
        return sum(t.numel() * t.element_size() for t in (self.pending, self.previous) if t is not None)


def pool_windows(content: torch.Tensor, gate: torch.Tensor, overlap: bool,
                 previous: torch.Tensor | None = None) -> torch.Tensor:
    """C^Comp_w = sum over the window's slots of softmax_slots(gate) * content, per channel (§2.3.1 / §2.3.2).

    content, gate (b, n, m, k c): n complete windows of m tokens, the gate already holding Z + B. HCA
    (overlap False, k = 1): the m slots of window w. CSA (overlap True, k = 2): the 2m slots [first halves of
    window w - 1; second halves of window w]; window 0's first halves come from ``previous`` (b, m, 2 c) =
    [C^a; Z^a + B^a] of the window before this call's first, or are absent (the very first window).
    -> (b, n, c), before RMSNorm and RoPE."""
    check_floating("content", content)
    check_ndim("content", content, 4, "(batch, windows, m, k width)")
    check_tensor("gate", gate)
    if gate.shape != content.shape or gate.dtype != content.dtype:
        raise ValueError(f"gate {tuple(gate.shape)} {gate.dtype} must match content {tuple(content.shape)} "
                         f"{content.dtype}")
    check_bool("overlap", overlap)
    if overlap and content.shape[-1] % 2:
        raise ValueError(f"content has width {content.shape[-1]}: with overlap it holds two halves, so it must be even")
    if previous is not None:
        check_tensor("previous", previous)
        want = (content.shape[0], content.shape[2], content.shape[3])
        if not overlap or tuple(previous.shape) != want or previous.dtype != content.dtype:
            raise ValueError(f"previous must be None without overlap, else (b, m, 2 c) = {want} in {content.dtype}, "
                             f"got {tuple(previous.shape)}")
    if not overlap:
        weights = torch.softmax(gate, dim=2)  # a softmax per channel over the m slots
        return torch.einsum("bnjc,bnjc->bnc", weights, content)
    b, n, m, two_c = content.shape
    c = two_c // 2
    c_a, c_b = content.split(c, dim=-1)  # (b, n, m, c): halves for the next entry, for this entry
    z_a, z_b = gate.split(c, dim=-1)
    if previous is None:  # the first window has no predecessor: its slots get weight exp(-inf) = 0
        prev_c, prev_z = c_a.new_zeros(b, 1, m, c), z_a.new_full((b, 1, m, c), float("-inf"))
    else:
        prev_c, prev_z = previous[:, None].split(c, dim=-1)
    slots_c = torch.cat([torch.cat([prev_c, c_a[:, :-1]], 1), c_b], dim=2)  # (b, n, 2m, c)
    slots_z = torch.cat([torch.cat([prev_z, z_a[:, :-1]], 1), z_b], dim=2)
    weights = torch.softmax(slots_z, dim=2)
    return torch.einsum("bnjc,bnjc->bnc", weights, slots_c)


class GatedPoolingCompressor(nn.Module):
    """One compressed entry per m tokens: C^Comp_w = RoPE_{w m}(RMSNorm(pool_windows(W^C h, W^Z h + B)))
    (§2.3.1 / §2.3.2; Hugging Face's ``DeepseekV4CSACompressor`` / ``DeepseekV4HCACompressor`` and the
    indexer's own compressor). Parameters [Hugging Face; DeepSeek]: ``wkv`` [kv_proj; wkv] and ``wgate``
    [gate_proj; wgate] (k width, d), ``ape`` [position_bias; ape] (m, k width), ``norm`` [kv_norm; norm];
    k = 2 with ``overlap`` (CSA), 1 without (HCA). ``theta``: RoPE frequencies (d^R/2,) float64."""

    def __init__(self, d_model: int, width: int, rate: int, overlap: bool, theta: torch.Tensor,
                 eps: float = 1e-6) -> None:
        super().__init__()
        for name, value in (("d_model", d_model), ("width", width), ("rate", rate)):
            check_positive_int(name, value)
        check_bool("overlap", overlap)
        check_floating("theta", theta)
        check_ndim("theta", theta, 1, "(d^R / 2,)")
        if 2 * theta.shape[0] > width:
            raise ValueError(f"theta rotates d^R = {2 * theta.shape[0]} coordinates, more than width={width}")
        check_real("eps", eps, 0.0, strict=True)
        k = 2 if overlap else 1
        self.width, self.rate, self.overlap = width, rate, overlap
        self.wkv = nn.Linear(d_model, k * width, bias=False)  # W^C
        self.wgate = nn.Linear(d_model, k * width, bias=False)  # W^Z
        self.ape = nn.Parameter(torch.zeros(rate, k * width))  # B, one row per slot of a window
        self.norm = nn.RMSNorm(width, eps=eps)
        self.theta = theta.to(torch.float64)  # outside the state dict, like MLA's

    def forward(self, x: torch.Tensor, state: CompressorState | None = None) -> torch.Tensor:
        """The entries completed by x (b, s, d): (b, n_new, width). Without ``state`` x must start at position
        0 and its unfinished last window is dropped; with one, x continues the stream the state has seen, the
        pending tokens are completed first and the new unfinished window is kept."""
        check_hidden_states(x, self.wkv.in_features, self.wkv.weight, nonempty=False, owner="compressor")
        if state is not None:
            check_type("state", state, CompressorState)
        b, s, _ = x.shape
        projected = torch.cat([self.wkv(x), self.wgate(x)], dim=-1)  # [C_j; Z_j]: (b, s, 2 k width)
        first = 0 if state is None else state.entries  # index of the first entry this call can emit
        if state is not None and state.pending is not None:
            projected = torch.cat([state.pending, projected], dim=1)
        n = projected.shape[1] // self.rate  # windows completed
        if state is not None:
            state.pending = projected[:, n * self.rate:]
        if n == 0:
            return x.new_zeros(b, 0, self.width)
        content, gate = projected[:, : n * self.rate].view(b, n, self.rate, -1).chunk(2, dim=-1)
        gate = gate + self.ape  # Z_j + B, B by slot: (b, n, m, k width)
        previous = None if state is None else state.previous
        pooled = pool_windows(content, gate, self.overlap, previous)  # (b, n, width)
        if state is not None:
            if self.overlap:  # the last window's first halves feed the next call's first entry
                state.previous = torch.cat([content[:, -1, :, : self.width], gate[:, -1, :, : self.width]], -1)
            state.entries += n
        positions = (torch.arange(n) + first) * self.rate  # each entry rotated at its window's position w m
        return rope_tail(self.norm(pooled), positions, self.theta)


# ----------------------------------------------------------------------------------------------------
# the cache


class V4Cache:
    """One V4 layer's cache. ``window``: a :class:`~attnlab.kv_cache.LayerCache` (seq_dim 1, window W)
    holding ``kv`` (b, <= W, c), the raw tokens' shared key/value; ``compressed``: a LayerCache (seq_dim 1)
    holding ``kv`` (b, n, c), one entry per m tokens, and for CSA ``index_key`` (b, n, c^I); ``compressor``
    and ``indexer``: the two compressors' :class:`CompressorState`. A sliding layer uses only ``window``."""

    def __init__(self, config: V4AttentionConfig) -> None:
        check_type("config", config, V4AttentionConfig)
        self.config = config
        self.window = LayerCache(seq_dim=1, window=config.window)
        self.compressed = LayerCache(seq_dim=1)
        self.compressor = CompressorState()
        self.indexer = CompressorState()

    @property
    def seq_len(self) -> int:
        """Tokens seen so far: the next token's position."""
        return self.window.seq_len

    def load(self, seq_len: int, window: torch.Tensor, entries: torch.Tensor | None = None,
             index_keys: torch.Tensor | None = None, compressor: CompressorState | None = None,
             indexer: CompressorState | None = None) -> None:
        """Hold, directly, what this cache holds after ``seq_len`` L tokens, without a prefill (a benchmark fills
        it with random numbers of the right shapes this way; a test with a prefill's own tensors):

            window       (b, min(W, L), c)   the last raw tokens' key/values
            entries      (b, floor(L / m), c) the compressed entries (CSA, HCA; None for a sliding layer)
            index_keys   (b, floor(L / m), c^I) their index keys (CSA only)
            compressor   the compressor's :class:`CompressorState` after L tokens: ``entries`` = floor(L / m),
                         ``pending`` the projections of the last L mod m tokens (b, L mod m, 2 k c) or None when
                         none, ``previous`` (CSA, once an entry exists) (b, m, 2 c)
            indexer      the same for the index keys' compressor (CSA only; width c^I)

        The tensors are stored (window and entries copied into storage with room for one more token); the
        states are kept as given. Storage: the window W + 1 slots, the entries floor(L / m) + 1."""
        c = self.config
        check_non_negative_int("seq_len", seq_len)
        check_tensor("window", window)
        n_window, n_entries = min(c.window, seq_len), seq_len // c.compress_rate if c.compressed else 0
        if window.dim() != 3 or window.shape[1] != n_window or window.shape[2] != c.head_dim:
            raise ValueError(f"window has shape {tuple(window.shape)}; after seq_len={seq_len} tokens the layer holds "
                             f"(batch, {n_window}, {c.head_dim})")
        parts = {"entries": (entries, c.compressed, c.head_dim), "index_keys": (index_keys, c.layer_type == "csa",
                                                                                c.index_head_dim)}
        for name, (t, needed, width) in parts.items():
            if not needed:
                if t is not None:
                    raise ValueError(f"{name} must be None: a {c.layer_type} layer keeps none")
                continue
            check_tensor(name, t)
            if tuple(t.shape) != (window.shape[0], n_entries, width) or t.dtype != window.dtype:
                raise ValueError(f"{name} has shape {tuple(t.shape)} {t.dtype}; after seq_len={seq_len} tokens it "
                                 f"is ({window.shape[0]}, {n_entries}, {width}) in {window.dtype}")
        states = {"compressor": (compressor, c.compressed, c.head_dim, 2 if c.overlap else 1),
                  "indexer": (indexer, c.layer_type == "csa", c.index_head_dim, 2)}
        for name, (state, needed, width, k) in states.items():
            if not needed:
                if state is not None:
                    raise ValueError(f"{name} must be None: a {c.layer_type} layer runs no such compressor")
                continue
            check_type(name, state, CompressorState)
            rows = seq_len % c.compress_rate
            pending = 0 if state.pending is None else state.pending.shape[1]
            if state.entries != n_entries or pending != rows or (
                    state.pending is not None and tuple(state.pending.shape[::2]) != (window.shape[0], 2 * k * width)):
                raise ValueError(f"{name} has entries={state.entries} and {pending} pending tokens; after seq_len="
                                 f"{seq_len} tokens it has entries={n_entries} and {rows} pending tokens of width "
                                 f"{2 * k * width}")
            if k == 2 and n_entries and (state.previous is None or tuple(state.previous.shape) != (
                    window.shape[0], c.compress_rate, 2 * width)):
                raise ValueError(f"{name}.previous must be (batch, m, 2 width) = ({window.shape[0]}, "
                                 f"{c.compress_rate}, {2 * width}) once an entry exists")
        self.window = LayerCache(seq_dim=1, window=c.window, capacity=c.window + 1)
        self.window.load(seq_len, kv=window)
        self.compressed = LayerCache(seq_dim=1, capacity=n_entries + 1)
        if c.layer_type == "csa":
            self.compressed.load(n_entries, kv=entries, index_key=index_keys)
        elif c.compressed:
            self.compressed.load(n_entries, kv=entries)
        self.compressor = compressor if compressor is not None else CompressorState()
        self.indexer = indexer if indexer is not None else CompressorState()

    @property
    def n_entries(self) -> int:
        """Compressed entries held."""
        return self.compressed.n_tokens

    @property
    def nbytes(self) -> int:
        """Bytes held: window, compressed entries, index keys and the compressors' running state."""
        return (self.window.nbytes + self.compressed.nbytes + self.compressor.nbytes + self.indexer.nbytes)


# ----------------------------------------------------------------------------------------------------
# the layer


class CompressedIndexer(nn.Module):
    """CSA's lightning indexer over compressed entries (§2.3.1; Hugging Face's ``DeepseekV4Indexer``):

        K^I_w     = its own compressor of width c^I over the same windows (overlapping, rate m)
        q^I_{t,h} = RoPE_t(W^IUQ_h c^Q_t)       from the attention's query latent [q_b_proj; wq_b]
        w_{t,h}   = (W^w h_t)_h (H^I)^-0.5      [weights_proj]
        I_{t,w}   = sum_h w_{t,h} ReLU(q^I_{t,h} · K^I_w) (c^I)^-0.5        (:func:`attnlab.dsa.index_scores`)

    DeepSeek's code also rotates q^I and K^I by a Hadamard matrix and stores K^I in FP4; Hugging Face, and
    this module, do neither (the rotation leaves dot products unchanged)."""

    def __init__(self, config: V4AttentionConfig, theta: torch.Tensor) -> None:
        super().__init__()
        check_type("config", config, V4AttentionConfig)
        if config.layer_type != "csa":
            raise ValueError(f"config has layer_type={config.layer_type!r}: only CSA layers have an indexer")
        c = config
        self.config = c
        self.compressor = GatedPoolingCompressor(c.d_model, c.index_head_dim, c.compress_rate, True, theta, c.norm_eps)
        self.wq_b = nn.Linear(c.q_lora_rank, c.index_n_heads * c.index_head_dim, bias=False)  # W^IUQ
        self.weights_proj = nn.Linear(c.d_model, c.index_n_heads, bias=False)  # W^w
        self.theta = theta.to(torch.float64)

    def scores(self, x: torch.Tensor, q_latent: torch.Tensor, positions: torch.Tensor,
               index_keys: torch.Tensor) -> torch.Tensor:
        """I (b, s, n) of the queries x (b, s, d) with latents c^Q (b, s, d_c) at positions (s,) against the
        index keys (b, n, c^I); no mask (the caller hides entries not yet complete)."""
        c = self.config
        check_hidden_states(x, c.d_model, self.wq_b.weight, owner="indexer")
        b, s, _ = x.shape
        check_tensor("q_latent", q_latent)
        if tuple(q_latent.shape) != (b, s, c.q_lora_rank) or q_latent.dtype != x.dtype:
            raise ValueError(f"q_latent has shape {tuple(q_latent.shape)} {q_latent.dtype}, expected "
                             f"{(b, s, c.q_lora_rank)} {x.dtype}")
        check_positions(positions, s)
        check_tensor("index_keys", index_keys)
        if index_keys.dim() != 3 or index_keys.shape[0] != b or index_keys.shape[2] != c.index_head_dim:
            raise ValueError(f"index_keys has shape {tuple(index_keys.shape)}, expected (b, n, c^I) = "
                             f"({b}, n, {c.index_head_dim})")
        q = self.wq_b(q_latent).view(b, s, c.index_n_heads, c.index_head_dim)  # q^I_{t,h}
        q = rope_tail(q, positions, self.theta)
        w = self.weights_proj(x) * c.index_n_heads**-0.5  # w_{t,h}: (b, s, H^I)
        return index_scores(q, w, index_keys, c.index_head_dim**-0.5)  # (b, s, n)


class DeepSeekV4Attention(AttentionLayer):
    """DeepSeek-V4's attention layer (module docstring): x (batch, seq, d_model) -> an
    :class:`~attnlab.attention.AttentionOutput` with output (batch, seq, d_model), causal.

    Parameters [Hugging Face; DeepSeek]: ``wq_a`` [q_a_proj; wq_a], ``q_norm`` [q_a_norm; q_norm], ``wq_b``
    [q_b_proj; wq_b], ``wkv`` [kv_proj; wkv], ``kv_norm`` [kv_norm; kv_norm], ``sinks`` [sinks; attn_sink],
    ``wo_a`` [o_a_proj; wo_a] (g d_g, n_h c / g), ``wo_b`` [o_b_proj; wo_b]; CSA and HCA layers a
    :class:`GatedPoolingCompressor` ``compressor`` [compressor], CSA a :class:`CompressedIndexer`
    ``indexer`` [compressor.indexer].

    The keys of a forward call are [the window's raw tokens; the compressed entries]; ``return_weights``
    returns the weights (b, n_h, s, window keys + entries) over them (a CSA layer's unselected entries get
    0), and a CSA layer's output carries its :class:`~attnlab.dsa.IndexSelection` over the entries.
    Implementations (:data:`V4_IMPLEMENTATIONS`) differ for CSA only: "gather" (default) attends to each
    query's gathered top-k entries, "mask" to all entries with the unselected ones masked; the same result.
    """

    IMPLEMENTATIONS = V4_IMPLEMENTATIONS

    def __init__(self, config: V4AttentionConfig) -> None:
        super().__init__()
        check_type("config", config, V4AttentionConfig)
        self.config = c = config
        self.wq_a = nn.Linear(c.d_model, c.q_lora_rank, bias=False)  # W^DQ
        self.q_norm = nn.RMSNorm(c.q_lora_rank, eps=c.norm_eps)
        self.wq_b = nn.Linear(c.q_lora_rank, c.n_heads * c.head_dim, bias=False)  # W^UQ, all heads
        self.wkv = nn.Linear(c.d_model, c.head_dim, bias=False)  # W^KV: ONE c-wide vector per token
        self.kv_norm = nn.RMSNorm(c.head_dim, eps=c.norm_eps)
        self.sinks = nn.Parameter(torch.zeros(c.n_heads))  # z_i
        self.wo_a = nn.Linear(c.n_heads * c.head_dim // c.o_groups, c.o_groups * c.o_lora_rank, bias=False)
        self.wo_b = nn.Linear(c.o_groups * c.o_lora_rank, c.d_model, bias=False)
        # RoPE frequencies in float64, outside the state dict so module.to(bfloat16) cannot round them
        self.theta = yarn_frequencies(c.rope_head_dim, c.rope_base, c.rope_factor, c.original_max_position,
                                      c.beta_fast, c.beta_slow) if c.rope_head_dim else torch.zeros(0)
        self.compressor = None
        self.indexer = None
        if c.compressed:
            self.compressor = GatedPoolingCompressor(c.d_model, c.head_dim, c.compress_rate, c.overlap, self.theta,
                                                     c.norm_eps)
        if c.layer_type == "csa":
            self.indexer = CompressedIndexer(c, self.theta)
        self.top_k = c.index_topk

    def use(self, implementation: str | None = None, top_k: int | None = None) -> DeepSeekV4Attention:
        """Compute with ``implementation`` ("gather" or "mask"; None keeps it) and select ``top_k`` compressed
        entries per query in a CSA layer (None keeps the current number, the config's index_topk at first)."""
        if implementation is not None:
            check_choice("implementation", implementation, self.IMPLEMENTATIONS)
            self.implementation = implementation
        if top_k is not None:
            self.top_k = check_positive_int("top_k", top_k)
        return self

    def settings(self) -> dict[str, object]:
        """The implementation and top_k, as keyword arguments that :meth:`use` takes back."""
        return {"implementation": self.implementation, "top_k": self.top_k}

    def make_cache(self) -> V4Cache:
        """An empty :class:`V4Cache` for this layer."""
        return V4Cache(self.config)

    def queries(self, x: torch.Tensor, positions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """q (b, s, n_h, c) = RoPE_t(RMSNorm_unweighted(W^UQ c^Q_t)) and the latent c^Q (b, s, d_c)."""
        c = self.config
        check_hidden_states(x, c.d_model, self.wkv.weight, nonempty=False)
        check_positions(positions, x.shape[1])
        b, s, _ = x.shape
        q_latent = self.q_norm(self.wq_a(x))  # c^Q_t
        q = rms_norm(self.wq_b(q_latent).view(b, s, c.n_heads, c.head_dim), c.norm_eps)  # per head, no weight
        return rope_tail(q, positions, self.theta), q_latent

    def key_values(self, x: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        """kv (b, s, c) = RoPE_t(RMSNorm(W^KV h_t)): each token's key and value at once."""
        check_hidden_states(x, self.config.d_model, self.wkv.weight, nonempty=False)
        check_positions(positions, x.shape[1])
        return rope_tail(self.kv_norm(self.wkv(x)), positions, self.theta)

    def output(self, o: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        """u = W^O_b [W^O_a,1 o_1; ...; W^O_a,g o_g] after rotating the RoPE slice back: o (b, s, n_h, c) ->
        (b, s, d). Group r's n_h / g heads are projected alone to d_g numbers (§2.3.1, grouped output)."""
        c = self.config
        check_floating("o", o)
        check_ndim("o", o, 4, "(batch, seq, n_heads, head_dim)")
        if o.shape[2:] != (c.n_heads, c.head_dim) or o.dtype != self.wkv.weight.dtype:
            raise ValueError(f"o has shape {tuple(o.shape)} {o.dtype}, expected (b, s, {c.n_heads}, {c.head_dim}) "
                             f"in {self.wkv.weight.dtype}")
        b, s = o.shape[:2]
        o = rope_tail(o, positions, self.theta, inverse=True)  # R_t^-1: only relative positions remain
        o_groups = o.reshape(b, s, c.o_groups, -1)  # (b, s, g, n_h c / g)
        w_a = self.wo_a.weight.view(c.o_groups, c.o_lora_rank, -1)  # (g, d_g, n_h c / g)
        y = torch.einsum("bsgi,gri->bsgr", o_groups, w_a)  # (b, s, g, d_g)
        return self.wo_b(y.reshape(b, s, c.o_groups * c.o_lora_rank))

    def forward(self, x: torch.Tensor, cache: V4Cache | None = None,
                return_weights: bool = False) -> AttentionOutput:
        """One softmax (with the sinks) over the window and the visible compressed entries (CSA: the top-k
        of them), causal; x (b, s, d_model) -> output (b, s, d_model). With ``cache`` positions continue
        from ``cache.seq_len`` and the window, entries and compressor states are updated."""
        c = self.config
        check_hidden_states(x, c.d_model, self.wkv.weight)
        if cache is not None:
            check_type("cache", cache, V4Cache)
            if cache.config != c:
                raise ValueError("cache was made for another layer config: make it with layer.make_cache()")
        check_bool("return_weights", return_weights)
        b, s, _ = x.shape
        start = 0 if cache is None else cache.seq_len
        positions = torch.arange(start, start + s)
        q, q_latent = self.queries(x, positions)  # (b, s, n_h, c), (b, s, d_c)
        kv = self.key_values(x, positions)  # (b, s, c)
        if cache is not None:
            (kv,) = cache.window.update(kv=kv)  # the W - 1 tokens before these and these
        window_mask = causal_mask(s, kv.shape[1], device=x.device, window=c.window)  # (s, n_win)
        scores = torch.einsum("bshc,btc->bsht", q, kv) * c.softmax_scale  # (b, s, n_h, n_win)
        scores = scores.masked_fill(~window_mask[None, :, None, :], float("-inf"))
        selection, entries, entry_mask = None, None, None
        if c.compressed:
            entries, index_keys = self._entries(x, cache)  # (b, n, c), (b, n, c^I) or None
            visible = torch.div(positions + 1, c.compress_rate, rounding_mode="floor").clamp_max(entries.shape[1])
            entry_mask = (torch.arange(entries.shape[1])[None, :] < visible[:, None]).to(x.device)  # (s, n)
            entry_mask = entry_mask[None].expand(b, -1, -1)  # (b, s, n)
            if c.layer_type == "csa":
                index = self.indexer.scores(x, q_latent, positions, index_keys)  # I (b, s, n)
                index = index.masked_fill(~entry_mask, float("-inf"))
                indices = topk_indices(index, self.top_k, visible=visible)  # (b, s, min(k, n)), -1 padded
                selection = IndexSelection(index, indices)
        if c.layer_type == "csa" and self.implementation == "gather" and entries.shape[1] > 0:
            gathered = gather_tokens(entries, indices)  # (b, s, k', c): each query's own entries
            entry_scores = torch.einsum("bshc,bskc->bshk", q, gathered) * c.softmax_scale
            entry_scores = entry_scores.masked_fill(~(indices >= 0)[:, :, None, :], float("-inf"))
            weights = sink_softmax(torch.cat([scores, entry_scores], dim=-1), self.sinks)
            w_win, w_sel = weights.split([kv.shape[1], indices.shape[-1]], dim=-1)
            o = torch.einsum("bsht,btc->bshc", w_win, kv) + torch.einsum("bshk,bskc->bshc", w_sel, gathered)
            if return_weights:
                dense = torch.zeros(*w_sel.shape[:3], entries.shape[1], dtype=w_sel.dtype, device=w_sel.device)
                index = indices.clamp_min(0)[:, :, None, :].expand_as(w_sel)
                weights = torch.cat([w_win, dense.scatter_add(-1, index, w_sel)], dim=-1)
        else:
            keys = kv
            if entries is not None:
                if c.layer_type == "csa" and entries.shape[1] > 0:
                    entry_mask = entry_mask & selection_mask(indices, entries.shape[1])
                entry_scores = torch.einsum("bshc,bnc->bshn", q, entries) * c.softmax_scale
                entry_scores = entry_scores.masked_fill(~entry_mask[:, :, None, :], float("-inf"))
                scores, keys = torch.cat([scores, entry_scores], dim=-1), torch.cat([kv, entries], dim=1)
            weights = sink_softmax(scores, self.sinks)  # ONE softmax over window and entries: (b, s, n_h, T)
            o = torch.einsum("bsht,btc->bshc", weights, keys)  # the values are the keys
        y = self.output(o, positions)
        return AttentionOutput(y, weights.transpose(1, 2) if return_weights else None, selection)

    def _entries(self, x: torch.Tensor, cache: V4Cache | None) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Every compressed entry so far (b, n, c) and, for CSA, every index key (b, n, c^I) (None for HCA):
        this call's new ones appended to the cache's."""
        state = None if cache is None else cache.compressor
        entries = self.compressor(x, state)  # (b, n_new, c)
        index_keys = None
        if self.indexer is not None:
            index_keys = self.indexer.compressor(x, None if cache is None else cache.indexer)  # (b, n_new, c^I)
        if cache is not None and entries.shape[1] > 0:
            if index_keys is None:
                (entries,) = cache.compressed.update(kv=entries)
            else:
                entries, index_keys = cache.compressed.update(kv=entries, index_key=index_keys)
        elif cache is not None and cache.compressed.n_tokens > 0:
            held = cache.compressed.tensors
            entries, index_keys = held["kv"], held.get("index_key")
        return entries, index_keys


# ----------------------------------------------------------------------------------------------------
# Hugging Face


def _hf_rope(cfg, layer_type: str) -> dict:
    """V4AttentionConfig's RoPE fields for a layer: Hugging Face's ``rope_parameters["main"]`` for sliding
    layers, ``["compress"]`` (YaRN, with attention_factor 1: no amplitude on cos/sin) for CSA and HCA."""
    rp = dict(cfg.rope_parameters["main" if layer_type == "sliding" else "compress"])
    settings = {"rope_base": float(rp["rope_theta"])}
    rope_type = rp.get("rope_type", "default")
    if rope_type == "default":
        return settings
    if rope_type != "yarn" or rp.get("attention_factor", 1.0) != 1.0 or rp.get("truncate", True) is not True:
        raise ValueError(f"rope_parameters {rp} are not supported: use 'default', or 'yarn' with "
                         "attention_factor 1.0 as DeepSeek-V4 does")
    original = rp["original_max_position_embeddings"]
    settings.update(rope_factor=float(rp.get("factor") or cfg.max_position_embeddings / original),
                    original_max_position=int(original), beta_fast=float(rp.get("beta_fast") or 32),
                    beta_slow=float(rp.get("beta_slow") or 1))
    return settings


def from_transformers(hf_attention: nn.Module) -> DeepSeekV4Attention:
    """This course's :class:`DeepSeekV4Attention` with the weights of a transformers ``DeepseekV4Attention``
    (transformers >= 5.23), same dtype and device.

    Weight names: q_a_proj -> wq_a, q_a_norm -> q_norm, q_b_proj -> wq_b, kv_proj -> wkv, kv_norm -> kv_norm,
    sinks -> sinks, o_a_proj -> wo_a, o_b_proj -> wo_b; compressor.{kv_proj, gate_proj, position_bias,
    kv_norm} -> compressor.{wkv, wgate, ape, norm}; compressor.indexer.{kv_proj, gate_proj, position_bias,
    kv_norm} -> indexer.compressor.*, compressor.indexer.q_b_proj -> indexer.wq_b,
    compressor.indexer.scorer.weights_proj -> indexer.weights_proj. No permutation: both rotate interleaved
    pairs of the last d^R coordinates."""
    cfg = getattr(hf_attention, "config", None)
    if cfg is None or getattr(cfg, "model_type", None) != "deepseek_v4" or not hasattr(hf_attention, "sinks"):
        raise ValueError("hf_attention must be a transformers DeepseekV4Attention (config.model_type "
                         f"'deepseek_v4'), got {type(hf_attention).__name__}")
    layer_type = {v: k for k, v in HF_LAYER_TYPES.items()}[hf_attention.layer_type]
    config = V4AttentionConfig(
        d_model=cfg.hidden_size, n_heads=cfg.num_attention_heads, q_lora_rank=cfg.q_lora_rank,
        o_groups=cfg.o_groups, o_lora_rank=cfg.o_lora_rank, head_dim=cfg.head_dim,
        rope_head_dim=cfg.qk_rope_head_dim, window=cfg.sliding_window, layer_type=layer_type,
        compress_rate=None if layer_type == "sliding" else cfg.compress_rates[hf_attention.layer_type],
        index_n_heads=cfg.index_n_heads, index_head_dim=cfg.index_head_dim, index_topk=cfg.index_topk,
        norm_eps=hf_attention.kv_norm.variance_epsilon, **_hf_rope(cfg, layer_type))
    weight = hf_attention.kv_proj.weight
    module = DeepSeekV4Attention(config).to(device=weight.device, dtype=weight.dtype)
    names = {"q_a_proj.weight": "wq_a.weight", "q_a_norm.weight": "q_norm.weight", "q_b_proj.weight": "wq_b.weight",
             "kv_proj.weight": "wkv.weight", "kv_norm.weight": "kv_norm.weight", "sinks": "sinks",
             "o_a_proj.weight": "wo_a.weight", "o_b_proj.weight": "wo_b.weight"}
    compressor = {"kv_proj.weight": "wkv.weight", "gate_proj.weight": "wgate.weight", "position_bias": "ape",
                  "kv_norm.weight": "norm.weight"}
    if layer_type != "sliding":
        names.update({f"compressor.{k}": f"compressor.{v}" for k, v in compressor.items()})
    if layer_type == "csa":
        names.update({f"compressor.indexer.{k}": f"indexer.compressor.{v}" for k, v in compressor.items()})
        names.update({"compressor.indexer.q_b_proj.weight": "indexer.wq_b.weight",
                      "compressor.indexer.scorer.weights_proj.weight": "indexer.weights_proj.weight"})
    theirs, ours = hf_attention.state_dict(), module.state_dict()
    with torch.no_grad():
        for hf_name, name in names.items():
            ours[name].copy_(theirs[hf_name])
    return module
