"""One attention module for multi-head (MHA), multi-query (MQA) and grouped-query attention (GQA).

n_heads query heads share n_kv_heads key/value heads; query head h reads KV head h // (n_heads / n_kv_heads):

- MHA (Vaswani et al. 2017):  n_kv_heads = n_heads   (every query head has its own K and V)
- MQA (Shazeer 2019):         n_kv_heads = 1         (one K and one V shared by all query heads)
- GQA (Ainslie et al. 2023):  n_kv_heads = n_groups, a divisor of n_heads in between

The cache holds 2 * n_kv_heads * head_dim numbers per token and layer, so it shrinks by
n_heads / n_kv_heads against MHA, while the query side keeps all n_heads heads.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from attnlab._validate import (
    check_bool,
    check_cache,
    check_divisible,
    check_grouped_qkv,
    check_hidden_states,
    check_ndim,
    check_non_negative_int,
    check_positive_int,
    check_real,
    check_type,
)
from attnlab.attention import AttentionLayer, AttentionOutput, causal_mask, softmax
from attnlab.kv_cache import LayerCache
from attnlab.rope import apply_rope


@dataclass(frozen=True)
class AttentionConfig:
    """Shape of one attention layer.

    d_model: model width; n_heads: query heads; n_kv_heads: key/value heads (None = n_heads, i.e. MHA);
    head_dim: width of one head (None = d_model // n_heads); rope: rotate q and k by position (RoPE,
    "halves" convention, as Llama); rope_base: RoPE's base (theta); bias: add biases to projections.
    """

    d_model: int
    n_heads: int
    n_kv_heads: int | None = None
    head_dim: int | None = None
    rope: bool = True
    rope_base: float = 10000.0
    bias: bool = False

    def __post_init__(self) -> None:
        check_positive_int("d_model", self.d_model)
        check_positive_int("n_heads", self.n_heads)
        if self.n_kv_heads is None:
            object.__setattr__(self, "n_kv_heads", self.n_heads)
        check_positive_int("n_kv_heads", self.n_kv_heads)
        check_divisible("n_heads", self.n_heads, "n_kv_heads", self.n_kv_heads)
        if self.head_dim is None:
            check_divisible("d_model", self.d_model, "n_heads", self.n_heads)
            object.__setattr__(self, "head_dim", self.d_model // self.n_heads)
        check_positive_int("head_dim", self.head_dim)
        check_bool("rope", self.rope)
        check_real("rope_base", self.rope_base, 1.0, strict=True)
        check_bool("bias", self.bias)
        if self.rope and self.head_dim % 2:
            raise ValueError(f"head_dim={self.head_dim} must be even when rope=True (RoPE rotates pairs)")

    @property
    def group_size(self) -> int:
        """Query heads per KV head: n_heads / n_kv_heads."""
        return self.n_heads // self.n_kv_heads

    @property
    def kind(self) -> str:
        """"mha", "mqa" or "gqa" from the head counts (n_heads = 1 counts as MHA)."""
        if self.n_kv_heads == self.n_heads:
            return "mha"
        return "mqa" if self.n_kv_heads == 1 else "gqa"

    def cache_elements_per_token(self) -> int:
        """Numbers cached per token in this layer: 2 * n_kv_heads * head_dim (K and V)."""
        return 2 * self.n_kv_heads * self.head_dim


def grouped_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, causal: bool = True,
                      scale: float | None = None, window: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """softmax(q k^T * scale + M) v where n_heads query heads share n_kv_heads K/V heads, without copying K/V.

    q: (b, n_heads, n_q, d)   k, v: (b, n_kv_heads, n_k, d)   ->   out (b, n_heads, n_q, d), weights
    (b, n_heads, n_q, n_k). The query heads are viewed as (n_kv_heads groups) x (r = group size), so
    query head h = g * r + j reads KV head g, exactly as ``repeat_interleave`` would give. ``window`` W
    (with ``causal``): each query sees only its last W keys (:func:`~attnlab.attention.causal_mask`).
    """
    b, n_heads, n_q, d, n_kv = check_grouped_qkv(q, k, v)
    check_bool("causal", causal)
    if scale is not None:
        check_real("scale", scale)
    if window is not None:
        check_positive_int("window", window)
        if not causal:
            raise ValueError(f"window={window} needs causal=True: the window is the last W keys up to each query")
    scale = 1.0 / math.sqrt(d) if scale is None else scale
    r, n_k = n_heads // n_kv, k.shape[2]
    q = q.reshape(b, n_kv, r * n_q, d) * scale  # (b, g, r n_q, d): a group's r query heads share its keys
    # s_{g,i,j} = (q_{g,i} / sqrt(d)) · k_{g,j}: one matmul per group, K Q^T, so the keys (the bulk of what a
    # decode step reads) stream through in their stored order; transposed back as a view.
    scores = (k @ q.mT).mT.view(b, n_kv, r, n_q, n_k)  # (b, g, r, n_q, n_k)
    if causal and (n_q > 1 or (window is not None and window < n_k)):  # one query, no window: sees every key
        scores = scores.masked_fill(~causal_mask(n_q, n_k, device=q.device, window=window), float("-inf"))
        weights = softmax(scores, dim=-1)
    else:  # nothing masked, so no row is all -inf: torch's fused softmax, one pass instead of five (as MLA's)
        weights = torch.softmax(scores, dim=-1)
    out = torch.einsum("bgrqk,bgkd->bgrqd", weights, v)  # (b, g, r, n_q, d)
    return out.reshape(b, n_heads, n_q, d), weights.reshape(b, n_heads, n_q, -1)


def repeat_kv(x: torch.Tensor, n_rep: int) -> torch.Tensor:
    """(b, n_kv_heads, s, d) -> (b, n_kv_heads * n_rep, s, d): KV head g serves query heads
    g*n_rep .. (g+1)*n_rep - 1.

    The explicit copy that :func:`grouped_attention` avoids; kept to show what sharing means."""
    check_ndim("x", x, 4, "(batch, n_kv_heads, seq, head_dim)")
    check_positive_int("n_rep", n_rep)
    return x.repeat_interleave(n_rep, dim=1)


class GroupedQueryAttention(AttentionLayer):
    """Causal self-attention with n_heads query heads and n_kv_heads shared K/V heads (MHA/MQA/GQA).

    x: (batch, seq, d_model) -> :class:`~attnlab.attention.AttentionOutput` with output (batch, seq,
    d_model). With a :class:`LayerCache`, K and V of the new tokens are appended and attention runs over
    everything cached (positions continue from the cache); a cache with a window W limits each query to
    its last W keys. One implementation, "grouped" (:func:`grouped_attention`).
    """

    IMPLEMENTATIONS = ("grouped",)

    def __init__(self, config: AttentionConfig) -> None:
        super().__init__()
        check_type("config", config, AttentionConfig)
        self.config = c = config
        self.w_q = nn.Linear(c.d_model, c.n_heads * c.head_dim, bias=c.bias)  # W^Q
        self.w_k = nn.Linear(c.d_model, c.n_kv_heads * c.head_dim, bias=c.bias)  # W^K (n_kv_heads heads)
        self.w_v = nn.Linear(c.d_model, c.n_kv_heads * c.head_dim, bias=c.bias)  # W^V (n_kv_heads heads)
        self.w_o = nn.Linear(c.n_heads * c.head_dim, c.d_model, bias=c.bias)  # W^O

    def project(self, x: torch.Tensor, start: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """q (b, n_heads, s, d), k and v (b, n_kv_heads, s, d) for tokens at positions start..start+s-1."""
        c = self.config
        check_hidden_states(x, c.d_model, self.w_q.weight, nonempty=False)
        check_non_negative_int("start", start)
        b, s, _ = x.shape
        q = self.w_q(x).view(b, s, c.n_heads, c.head_dim).transpose(1, 2)
        k = self.w_k(x).view(b, s, c.n_kv_heads, c.head_dim).transpose(1, 2)
        v = self.w_v(x).view(b, s, c.n_kv_heads, c.head_dim).transpose(1, 2)
        if c.rope:
            positions = torch.arange(start, start + s, device=x.device)
            q, k = apply_rope(q, positions, c.rope_base), apply_rope(k, positions, c.rope_base)
        return q, k, v

    def forward(self, x: torch.Tensor, cache: LayerCache | None = None,
                return_weights: bool = False) -> AttentionOutput:
        """y = concat_h(softmax(q_h K_g(h)^T / sqrt(d) + M) V_g(h)) W^O, g(h) = h // group_size.

        Returns y (b, s, d_model) and, with return_weights, the weights (b, n_heads, s, keys)."""
        check_hidden_states(x, self.config.d_model, self.w_q.weight)
        check_cache(cache, (2, -2), "GQA", "(batch, n_kv_heads, seq, head_dim)")
        check_bool("return_weights", return_weights)
        start = 0 if cache is None else cache.seq_len
        q, k, v = self.project(x, start)
        if cache is not None:
            k, v = cache.update(k=k, v=v)  # (b, n_kv_heads, cached + s, d)
        window = None if cache is None else cache.window  # a windowed cache: each query sees its last W keys
        out, weights = grouped_attention(q, k, v, causal=True, window=window)  # (b, n_heads, s, d)
        b, _, s, _ = out.shape
        y = self.w_o(out.transpose(1, 2).reshape(b, s, -1))
        return AttentionOutput(y, weights if return_weights else None)


def mha_to_gqa(module: GroupedQueryAttention, n_kv_heads: int) -> GroupedQueryAttention:
    """Convert an attention layer to fewer KV heads by mean-pooling the K and V heads of each group.

    The GQA paper's recipe (Ainslie et al. 2023, sec. 2.1): W^K_g = mean of the W^K heads in group g,
    likewise W^V; W^Q and W^O are copied. Usually followed by a short uptraining.
    """
    check_type("module", module, GroupedQueryAttention)
    c = module.config
    check_positive_int("n_kv_heads", n_kv_heads)
    check_divisible("n_kv_heads (old)", c.n_kv_heads, "n_kv_heads (new)", n_kv_heads)
    new_config = AttentionConfig(c.d_model, c.n_heads, n_kv_heads, c.head_dim, c.rope, c.rope_base, c.bias)
    new = GroupedQueryAttention(new_config).to(module.w_q.weight.dtype).to(module.w_q.weight.device)
    pool = c.n_kv_heads // n_kv_heads  # old KV heads merged into one new KV head

    def pooled(w: torch.Tensor) -> torch.Tensor:
        # (n_kv_old * d, ...) -> (n_kv_new, pool, d, ...) -> mean over pool
        return w.view(n_kv_heads, pool, c.head_dim, *w.shape[1:]).mean(dim=1).reshape(-1, *w.shape[1:])

    with torch.no_grad():
        new.w_q.load_state_dict(module.w_q.state_dict())
        new.w_o.load_state_dict(module.w_o.state_dict())
        for name in ("w_k", "w_v"):
            src, dst = getattr(module, name), getattr(new, name)
            dst.weight.copy_(pooled(src.weight))
            if src.bias is not None:
                dst.bias.copy_(pooled(src.bias))
    return new
