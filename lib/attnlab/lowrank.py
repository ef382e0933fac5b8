"""How low-rank are a trained model's keys and values? The intuition behind MLA's latent (chapter 7).

MLA caches one latent c^KV_t of width d_c per token and rebuilds every head's key and value from it,
k^C_{t,i} = W^UK_i c^KV_t and v^C_{t,i} = W^UV_i c^KV_t (DeepSeek-V2, arXiv 2405.04434, eqs. 41-45). Stack
the keys (or values) of T tokens into a matrix M of shape (T, n_h d_h): MLA says M = C W^T with C of
shape (T, d_c), so M has rank at most d_c. How much of a plain MHA model's K and V does such a
factorisation keep? The Eckart-Young theorem answers it exactly: with singular values s_1 >= s_2 >= ...
of M, the best rank-r approximation M_r (the truncated SVD) leaves the relative error

    ||M - M_r||_F / ||M||_F = sqrt(sum_{j > r} s_j^2 / sum_j s_j^2).

This module collects a layer's keys and values on real text and computes that curve:

- :func:`attention_inputs`: the normalised hidden state each attention layer receives
- :func:`kv_matrices`: the stacked keys and values of one layer (before RoPE; for MLA, re-expanded)
- :func:`singular_values`, :func:`lowrank_error`, :func:`lowrank_approx`: the analysis itself
- :func:`joint_kv`: K and V side by side, each scaled to unit norm: one latent must serve both
- :func:`budget_errors`: one cache budget of r numbers per token spent three ways: one latent shared by K,
  V and all heads (MLA), separate latents for K and V, or a separate one per head
"""

from __future__ import annotations

from collections.abc import Iterable

import torch

from attnlab._validate import (
    ArgumentTypeError,
    check_finite,
    check_hidden_states,
    check_integer_tensor,
    check_ndim,
    check_non_negative_int,
    check_positive_int,
    check_tensor,
    check_type,
)
from attnlab.gqa import GroupedQueryAttention
from attnlab.mla import MultiHeadLatentAttention
from attnlab.model import TinyLM


@torch.no_grad()
def attention_inputs(model: TinyLM, ids: torch.Tensor) -> list[torch.Tensor]:
    """The input x = RMSNorm(h) of every layer's attention for one forward pass of ``ids`` (batch, seq).

    Returns one tensor (batch, seq, d_model) per layer, in the model's dtype (forward hooks, removed again)."""
    check_type("model", model, TinyLM)
    check_ndim("ids", ids, 2, "(batch, seq)")
    check_integer_tensor("ids", ids)
    captured: list[torch.Tensor] = []
    hooks = [block.attn.register_forward_pre_hook(lambda _m, args, kwargs: captured.append(args[0]),
                                                  with_kwargs=True) for block in model.blocks]
    try:
        model(ids)
    finally:
        for hook in hooks:
            hook.remove()
    return captured


@torch.no_grad()
def kv_matrices(attn: torch.nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The keys and values one attention layer computes from its input x (batch, seq, d_model), stacked
    over the tokens: K (batch * seq, n_kv_heads * d_h), V (batch * seq, n_kv_heads * d_v).

    For a :class:`~attnlab.gqa.GroupedQueryAttention` layer, K = x W^K^T before RoPE (the content part that
    MLA compresses; RoPE is chapter 9). For a :class:`~attnlab.mla.MultiHeadLatentAttention` layer, the
    per-head keys k^C_{t,i} = W^UK_i c^KV_t and values W^UV_i c^KV_t rebuilt from its latent (eqs. 42, 45)."""
    check_type("attn", attn, (GroupedQueryAttention, MultiHeadLatentAttention),
               "a GroupedQueryAttention or MultiHeadLatentAttention")
    check_hidden_states(x, attn.config.d_model, attn.w_o.weight, nonempty=False)
    if isinstance(attn, MultiHeadLatentAttention):
        positions = torch.arange(x.shape[1])
        c_kv, _ = attn.latents(x, positions)  # (b, s, d_c)
        k = torch.einsum("bsc,hdc->bshd", c_kv, attn.w_uk)
        v = torch.einsum("bsc,hvc->bshv", c_kv, attn.w_uv)
        return k.reshape(-1, k.shape[-2] * k.shape[-1]), v.reshape(-1, v.shape[-2] * v.shape[-1])
    if isinstance(attn, GroupedQueryAttention):
        k, v = attn.w_k(x), attn.w_v(x)  # (b, s, n_kv * d_h), before RoPE
        return k.reshape(-1, k.shape[-1]), v.reshape(-1, v.shape[-1])
    raise ValueError(f"attn must be a GroupedQueryAttention or MultiHeadLatentAttention, got {type(attn).__name__}")


def _matrix(name: str, m: torch.Tensor) -> torch.Tensor:
    check_tensor(name, m)
    check_ndim(name, m, 2, "(rows, columns)")
    if m.numel() == 0:
        raise ValueError(f"{name} is empty: shape {tuple(m.shape)}")
    if m.dtype.is_complex or m.dtype == torch.bool:
        raise ValueError(f"{name} must be a real-valued tensor, got {m.dtype}")
    return check_finite(name, m.detach().to("cpu", torch.float64))  # the SVD fails on NaN or inf


def singular_values(m: torch.Tensor) -> torch.Tensor:
    """Singular values s_1 >= s_2 >= ... of a 2-D tensor, computed in float64; shape (min(rows, cols),)."""
    return torch.linalg.svdvals(_matrix("m", m))


def lowrank_error(m: torch.Tensor, ranks: Iterable[int] | int, s: torch.Tensor | None = None) -> list[float]:
    """Relative Frobenius error of the best rank-r approximation of ``m`` for each r in ``ranks``:

        e(r) = ||M - M_r||_F / ||M||_F = sqrt(sum_{j > r} s_j^2 / sum_j s_j^2)   (Eckart-Young)

    0 for r >= rank(M), 1 for r = 0. ``s``: the singular values of ``m`` if already computed (the widget of
    chapter 7 computes them once). Returns a list of floats, one per rank."""
    ranks = [ranks] if isinstance(ranks, int) else _rank_list(ranks)
    for r in ranks:
        check_non_negative_int("rank", r)
    if s is not None:
        check_ndim("s", s, 1, "(min(rows, cols),)")
        check_finite("s", s)
    s = singular_values(m) if s is None else s.detach().to("cpu", torch.float64)
    energy = s.square()
    total = float(energy.sum())
    if total == 0.0:
        raise ValueError("m is all zeros: a relative error is undefined")
    tail = torch.cat([energy.flip(0).cumsum(0).flip(0), energy.new_zeros(1)])  # tail[r] = sum_{j >= r} s_j^2
    return [float(tail[min(r, s.numel())].clamp_min(0.0) / total) ** 0.5 for r in ranks]


def _rank_list(ranks: object) -> list:
    """``ranks`` as a list: an int or an iterable of ints (a str or a tensor is neither)."""
    if isinstance(ranks, (str, bytes, torch.Tensor)) or not isinstance(ranks, Iterable):
        raise ArgumentTypeError(f"ranks={ranks!r} must be an int or an iterable of ints")
    return list(ranks)


def lowrank_approx(m: torch.Tensor, rank: int) -> torch.Tensor:
    """M_r = U_r diag(s_r) V_r^T, the best rank-``rank`` approximation of ``m`` (float64, same shape).

    Written as a factorisation it is M_r = C W^T with C = U_r diag(s_r) (rows, r) and W = V_r (cols, r):
    C is what a cache of width r would hold per token, W the up-projection shared by all tokens."""
    check_non_negative_int("rank", rank)
    u, s, vh = torch.linalg.svd(_matrix("m", m), full_matrices=False)
    r = min(rank, s.numel())
    return (u[:, :r] * s[:r]) @ vh[:r]


def joint_kv(k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """[K / ||K||_F, V / ||V||_F] side by side (tokens, width_K + width_V), float64.

    One latent per token must rebuild both K and V, so its quality is the low-rank error of this joint
    matrix. Scaling each to unit norm weighs keys and values equally, whatever their sizes."""
    k, v = _matrix("k", k), _matrix("v", v)
    if k.shape[0] != v.shape[0]:
        raise ValueError(f"k has {k.shape[0]} rows (tokens), v has {v.shape[0]}: they must match")
    return torch.cat([k / k.norm(), v / v.norm()], dim=1)


def _residual_energy(m: torch.Tensor, rank: int) -> float:
    """||M - M_r||_F^2 for the best rank-r approximation: the sum of the squared singular values past r."""
    s = singular_values(m)
    return float(s[rank:].square().sum())


def budget_errors(k: torch.Tensor, v: torch.Tensor, n_heads: int, ranks: Iterable[int]) -> dict[str, list[float]]:
    """Spend a cache of r numbers per token three ways and return each one's relative error on the joint
    matrix J = [K / ||K||, V / ||V||] (:func:`joint_kv`), for every r in ``ranks``:

    - "shared": one rank-r latent for K, V and all heads (MLA): the best rank-r approximation of J;
    - "per K and V": a rank-r/2 latent for K and another for V, each shared by the heads;
    - "per head": a rank-r/(2 n_heads) latent for each head's K and for each head's V.

    Each error is ||J - J_approx||_F / ||J||_F. Every split is itself a rank-r approximation of J, so by
    Eckart-Young "shared" <= "per K and V" <= "per head" for every r. k and v: (tokens, n_heads * d_h);
    each r must be a multiple of 2 * n_heads."""
    check_positive_int("n_heads", n_heads)
    k, v = _matrix("k", k), _matrix("v", v)
    for name, m in (("k", k), ("v", v)):
        if m.shape[1] % n_heads:
            raise ValueError(f"{name} has {m.shape[1]} columns, not divisible by n_heads={n_heads}")
    ranks = _rank_list(ranks)
    for r in ranks:
        check_non_negative_int("rank", r)
        if r % (2 * n_heads):
            raise ValueError(f"rank={r} must be a multiple of 2 * n_heads = {2 * n_heads}")
    k, v = k / k.norm(), v / v.norm()  # each block has norm 1, so ||J||_F^2 = 2
    joint = torch.cat([k, v], dim=1)
    s = singular_values(joint)
    out: dict[str, list[float]] = {"shared": lowrank_error(joint, ranks, s=s), "per K and V": [], "per head": []}
    for r in ranks:
        split = _residual_energy(k, r // 2) + _residual_energy(v, r // 2)
        per_head = sum(_residual_energy(block, r // (2 * n_heads))
                       for m in (k, v) for block in m.chunk(n_heads, dim=1))
        out["per K and V"].append((split / 2) ** 0.5)
        out["per head"].append((per_head / 2) ** 0.5)
    return out
