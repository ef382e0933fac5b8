"""Scaled dot-product attention, first as a loop over keys (vector form), then as matrices.

Vector form (one query q against keys k_1..k_n and values v_1..v_n):

    s_i = q · k_i / sqrt(d)            (score)
    a_i = exp(s_i) / sum_j exp(s_j)    (softmax)
    o   = sum_i a_i v_i                (weighted sum of values)

Matrix form (all queries at once, Vaswani et al. 2017, eq. 1):

    Attention(Q, K, V) = softmax(Q K^T / sqrt(d) + M) V

with M = 0 where a query may look and -inf where it may not (the causal mask hides the future).

Every attention layer of the library (:class:`~attnlab.gqa.GroupedQueryAttention` for MHA, GQA and MQA,
:class:`~attnlab.mla.MultiHeadLatentAttention`, :class:`~attnlab.dsa.DeepSeekSparseAttention`) is an
:class:`AttentionLayer`: ``layer(x, cache=None, return_weights=False)`` returns an :class:`AttentionOutput`,
and ``layer.use(name)`` picks how the layer computes (e.g. MLA's "naive" or "absorbed" form).
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from torch import nn

from attnlab._validate import (
    check_bool,
    check_broadcastable,
    check_device,
    check_dim,
    check_dim_size,
    check_floating,
    check_ndim,
    check_non_negative_int,
    check_positive_int,
    check_real,
    check_same_device,
    check_same_dtype,
    check_tensor,
)

if TYPE_CHECKING:
    from attnlab.dsa import IndexSelection


def _check_scale(scale: object) -> None:
    """``scale`` multiplies the scores: None (1/sqrt(d)) or a finite number (NaN would make every weight NaN)."""
    if scale is not None:
        check_real("scale", scale)


def softmax(scores: torch.Tensor, dim: int = -1, on_fully_masked: str = "error") -> torch.Tensor:
    """Numerically safe softmax: a_i = exp(s_i - max_j s_j) / sum_j exp(s_j - max_j s_j).

    Subtracting the row maximum leaves the result unchanged (it cancels between numerator and
    denominator) but keeps every exponent <= 0, so exp never overflows, even for scores of 1e4.

    A row whose scores are all ``-inf`` (every key masked) has no defined softmax: plain
    ``torch.softmax`` returns NaN there. ``on_fully_masked="error"`` (default) raises ``ValueError``;
    ``"zeros"`` returns an all-zero row (the query attends to nothing, as FlashAttention does).
    """
    if not isinstance(on_fully_masked, str) or on_fully_masked not in ("error", "zeros"):
        raise ValueError(f"on_fully_masked={on_fully_masked!r} must be 'error' or 'zeros'")
    check_floating("scores", scores)
    check_dim("dim", dim, scores.dim())
    if scores.shape[dim] == 0:
        raise ValueError(f"scores has size 0 along dim={dim}: a softmax needs at least one score to normalise")
    row_max = scores.amax(dim=dim, keepdim=True)  # max_j s_j, -inf on fully masked rows
    fully_masked = torch.isneginf(row_max)
    if fully_masked.any():
        if on_fully_masked == "error":
            raise ValueError(
                f"{int(fully_masked.sum())} row(s) of scores are fully masked (all -inf): softmax is "
                "undefined there; unmask at least one key per query or pass on_fully_masked='zeros'"
            )
        row_max = torch.where(fully_masked, torch.zeros_like(row_max), row_max)
    exp = torch.exp(scores - row_max)  # every exponent <= 0
    total = exp.sum(dim=dim, keepdim=True)
    return exp / torch.where(total == 0, torch.ones_like(total), total)


def attention_vector(q: torch.Tensor, keys: torch.Tensor, values: torch.Tensor,
                     scale: float | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Attention for ONE query, written as a loop over keys (the vector form).

    q: (d,)   keys: (n, d)   values: (n, d_v)   ->   (output (d_v,), weights (n,))

        s_i = q · k_i * scale,  a = softmax(s),  o = sum_i a_i v_i,   scale = 1/sqrt(d) by default.
    """
    check_ndim("q", q, 1, "(d,)")
    check_ndim("keys", keys, 2, "(n, d)")
    check_ndim("values", values, 2, "(n, d_v)")
    check_floating("q", q)
    check_dim_size("keys", keys, 1, q.shape[0], "d (query width)")
    check_dim_size("values", values, 0, keys.shape[0], "n (number of keys)")
    check_same_dtype(q=q, keys=keys, values=values)
    check_same_device(q=q, keys=keys, values=values)
    if keys.shape[0] == 0:
        raise ValueError("keys has n=0 rows: a query needs at least one key to attend to")
    _check_scale(scale)
    scale = 1.0 / math.sqrt(q.shape[0]) if scale is None else scale
    scores = torch.stack([torch.dot(q, k_i) * scale for k_i in keys])  # s_i, one per key
    weights = softmax(scores)  # a_i
    output = torch.zeros_like(values[0])
    for a_i, v_i in zip(weights, values, strict=True):
        output = output + a_i * v_i  # o = sum_i a_i v_i
    return output, weights


def causal_mask(n_q: int, n_k: int, device: torch.device | str | None = None,
                window: int | None = None) -> torch.Tensor:
    """Boolean mask (n_q, n_k), True where query i may attend to key j.

    The n_q queries are the LAST n_q positions of the n_k keys (so the same mask serves a full forward,
    n_q = n_k, and a decode step over a cache, n_q < n_k): query i sits at position n_k - n_q + i and
    sees keys j <= n_k - n_q + i. With a ``window`` W (sliding-window attention, as a windowed
    :class:`~attnlab.kv_cache.LayerCache` keeps it), query i sees only the last W of those keys.
    """
    check_non_negative_int("n_q", n_q)
    check_non_negative_int("n_k", n_k)
    check_device("device", device)
    if window is not None:
        check_positive_int("window", window)
    if n_q > n_k:
        raise ValueError(f"n_q={n_q} must be <= n_k={n_k}: queries are the last n_q of the n_k positions")
    i = torch.arange(n_q, device=device).unsqueeze(1) + (n_k - n_q)  # absolute query positions
    j = torch.arange(n_k, device=device).unsqueeze(0)
    if window is not None:
        return (j <= i) & (j > i - window)
    return j <= i


@dataclass(frozen=True)
class AttentionOutput:
    """What every attention layer's forward returns.

    output: the layer's output (batch, seq, d_model); weights: the attention weights (batch, n_heads, seq,
    keys) when the call asked for them (``return_weights=True``), else None; selection: what a
    :class:`~attnlab.dsa.DeepSeekSparseAttention` layer's indexer chose (an
    :class:`~attnlab.dsa.IndexSelection`), None for the dense layers."""

    output: torch.Tensor
    weights: torch.Tensor | None = None
    selection: IndexSelection | None = None


class AttentionLayer(nn.Module):
    """The interface every attention layer shares: ``forward(x, cache=None, return_weights=False)`` ->
    :class:`AttentionOutput`, and a choice of implementation among :attr:`IMPLEMENTATIONS` (the first is
    the default), kept in :attr:`implementation` and set with :meth:`use`, or for a ``with`` block with
    :meth:`using`."""

    #: The ways the layer can compute the same attention; the first is the default.
    IMPLEMENTATIONS: tuple[str, ...] = ("default",)

    def __init__(self) -> None:
        super().__init__()
        self.implementation = self.IMPLEMENTATIONS[0]

    def use(self, implementation: str) -> AttentionLayer:
        """Compute with ``implementation`` (one of :attr:`IMPLEMENTATIONS`) from now on; returns the layer."""
        if not isinstance(implementation, str) or implementation not in self.IMPLEMENTATIONS:
            raise ValueError(f"implementation={implementation!r} must be one of {self.IMPLEMENTATIONS}")
        self.implementation = implementation
        return self

    def settings(self) -> dict[str, object]:
        """What :meth:`use` has set, as keyword arguments that :meth:`use` takes back."""
        return {"implementation": self.implementation}

    @contextlib.contextmanager
    def using(self, *args, **kwargs) -> Iterator[AttentionLayer]:
        """``with layer.using("naive"):`` runs the block with :meth:`use`'s settings, then restores the old ones."""
        saved = self.settings()
        self.use(*args, **kwargs)
        try:
            yield self
        finally:
            self.use(**saved)


def attention_matrix(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, causal: bool = False,
                     mask: torch.Tensor | None = None, scale: float | None = None,
                     on_fully_masked: str = "error") -> tuple[torch.Tensor, torch.Tensor]:
    """Attention(Q, K, V) = softmax(Q K^T * scale + M) V, for any leading batch/head dims.

    q: (..., n_q, d)   k: (..., n_k, d)   v: (..., n_k, d_v)
    mask: optional boolean, broadcastable to (..., n_q, n_k), True = may attend.
    causal: also hide future keys (see :func:`causal_mask`).
    Returns (output (..., n_q, d_v), weights (..., n_q, n_k)).
    """
    for name, t in (("q", q), ("k", k), ("v", v)):
        check_floating(name, t)
        if t.dim() < 2:
            raise ValueError(f"{name} must have at least 2 dims (..., seq, dim), got shape {tuple(t.shape)}")
    check_dim_size("k", k, -1, q.shape[-1], "d (query width)")
    check_dim_size("v", v, -2, k.shape[-2], "n_k (number of keys)")
    if k.shape[-2] == 0:
        raise ValueError("k has n_k=0 rows: a query needs at least one key to attend to")
    check_same_dtype(q=q, k=k, v=v)
    check_same_device(q=q, k=k, v=v)
    check_broadcastable(q=q.shape[:-2], k=k.shape[:-2], v=v.shape[:-2])  # leading (batch, head) dims
    check_bool("causal", causal)
    _check_scale(scale)
    if mask is not None:
        _check_mask(mask, q, torch.broadcast_shapes(q.shape[:-2], k.shape[:-2]) + (q.shape[-2], k.shape[-2]))
    if not isinstance(on_fully_masked, str) or on_fully_masked not in ("error", "zeros"):
        raise ValueError(f"on_fully_masked={on_fully_masked!r} must be 'error' or 'zeros'")
    scale = 1.0 / math.sqrt(q.shape[-1]) if scale is None else scale
    scores = torch.einsum("...qd,...kd->...qk", q, k) * scale  # (..., n_q, n_k)
    allowed = None
    if causal:
        allowed = causal_mask(q.shape[-2], k.shape[-2], device=q.device)
    if mask is not None:
        allowed = mask if allowed is None else allowed & mask
    if allowed is not None:
        scores = scores.masked_fill(~allowed, float("-inf"))
    weights = softmax(scores, dim=-1, on_fully_masked=on_fully_masked)  # (..., n_q, n_k)
    return torch.einsum("...qk,...kd->...qd", weights, v), weights


def _check_mask(mask: object, q: torch.Tensor, scores_shape: torch.Size) -> None:
    """A boolean tensor on q's device that broadcasts to the scores' shape (..., n_q, n_k)."""
    check_tensor("mask", mask)
    if mask.dtype != torch.bool:
        raise ValueError(f"mask must be a boolean tensor (True = may attend), got {mask.dtype}")
    check_same_device(q=q, mask=mask)
    if check_broadcastable(mask=mask.shape, scores=scores_shape) != scores_shape:
        raise ValueError(f"mask of shape {tuple(mask.shape)} must broadcast to the scores' shape "
                         f"(..., n_q, n_k) = {tuple(scores_shape)}")


def attention_flops(n_q: int, n_k: int, d: int, d_v: int | None = None, n_heads: int = 1) -> int:
    """Multiply-add FLOPs (2 per MAC) of Q K^T and A V for one sequence: 2 n_q n_k (d + d_v) per head.

    Softmax and scaling are O(n_q n_k) and left out, as in the usual 4 n^2 d count."""
    check_non_negative_int("n_q", n_q)
    check_non_negative_int("n_k", n_k)
    check_positive_int("d", d)
    d_v = d if d_v is None else check_positive_int("d_v", d_v)
    check_positive_int("n_heads", n_heads)
    return 2 * n_q * n_k * (d + d_v) * n_heads
