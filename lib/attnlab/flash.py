"""FlashAttention: exact attention without the n x n score matrix, in PyTorch.

Chapter 3 computes ``softmax(Q K^T / sqrt(d)) V`` by writing the whole score matrix S = Q K^T (n_q x n_k per
head) and the whole probability matrix P = softmax(S) to memory. FlashAttention (Dao et al. 2022,
arXiv:2205.14135, Algorithm 1) computes the same output one tile at a time and never stores S or P whole:

1. **The online softmax** (Milakov & Gimelshein 2018, "Online normalizer calculation for softmax",
   arXiv:1805.02867). Read the scores of a row in blocks, keeping only a running maximum m and a running sum
   l of exp(s - m). When a block raises the maximum from m_old to m_new, everything summed so far was
   exponentiated against the old maximum and is rescaled by exp(m_old - m_new)::

       m_new = max(m_old, max_j s_j)
       l_new = exp(m_old - m_new) l_old + sum_j exp(s_j - m_new)

   After the last block, l = sum_j exp(s_j - m) over the whole row: the softmax's denominator, found in one
   pass without ever holding the row. :func:`online_softmax_update` is one step, :func:`online_softmax_trace`
   the steps over a row.
2. **The tiled forward** (:func:`flash_attention`): queries in blocks of B_r rows, keys and values in blocks
   of B_c; for each query block, a running (m, l) per row and an unnormalised output accumulator O, updated
   key block by key block with the same rescaling. FlashAttention-2 (Dao 2023, arXiv:2307.08691, §3.1)
   divides by l once at the end instead of after every block (deferred normalisation), and keeps the
   log-sum-exp L = m + log l of each row, which the backward pass and the merge below need. Under the causal
   mask, a key block that lies wholly after the query block is never visited (:func:`tile_schedule`).
3. **Split-KV decoding** (FlashDecoding: Dao, Haziza, Massa, Sizov, "Flash-Decoding for long-context
   inference", Oct. 2023). One decoded token has a single query row, too little work to fill a GPU; so the
   cached keys are cut into chunks, each chunk is attended independently (its partial output and its
   log-sum-exp), and the partials are merged exactly with :func:`merge_partials`::

       L = log sum_c exp(L_c),     O = sum_c exp(L_c - L) O_c

   DeepSeek's FlashMLA combines its split-KV partial results with this same merge (its
   ``flash_fwd_mla_combine_kernel`` reads each split's output and ``softmax_lse``), and sparse kernels that
   attend to gathered blocks of tokens combine blocks the same way.

The memory traffic each form causes is counted in :mod:`attnlab.costs` (``standard_attention_hbm_bytes``,
``flash_attention_hbm_bytes``, ``score_bytes_not_written``). Everything here is exact: in float64 it equals
:func:`attnlab.attention.attention_matrix` and ``torch.nn.functional.scaled_dot_product_attention`` to
rounding. It runs on any device and dtype; in bfloat16/float16 each tile's scores, the running statistics
and the accumulator are float32 (the tiles are upcast as they are read), as the FlashAttention kernels
accumulate them; the output is returned in the inputs' dtype, L in float32.

``python -m attnlab.flash --bench`` times the tiled loop against SDPA and the matrix form on this CPU
(:func:`benchmark`).
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from attnlab._validate import (
    check_bool,
    check_divisible,
    check_floating,
    check_ndim,
    check_non_negative_int,
    check_path,
    check_positive_int,
    check_real,
    check_same_device,
    check_same_dtype,
    check_tiling,
)

#: The committed CPU run of :func:`benchmark`, shown by chapter 15.
BENCH_PATH = Path(__file__).resolve().parent / "data" / "bench_flash_cpu.json"

#: Default tile sizes B_r (query rows) and B_c (key columns) of :func:`flash_attention`.
BLOCK_Q, BLOCK_K = 64, 64


# ----------------------------------------------------------------------------------------------------
# the online softmax


def online_softmax_update(m: torch.Tensor, l: torch.Tensor,  # noqa: E741 (the papers' l)
                          scores: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One step of the online softmax (Milakov & Gimelshein 2018, Algorithm 3; FlashAttention Alg. 1, lines
    10-11): fold a block of scores into the running maximum m and running sum l.

    m, l: (...,) the statistics so far (m = -inf, l = 0 before the first block); scores: (..., B) the next
    block. Returns (m_new, l_new, alpha) with

        m_new = max(m, max_j s_j),   alpha = exp(m - m_new),   l_new = alpha l + sum_j exp(s_j - m_new).

    ``alpha`` is the factor by which everything summed against the old maximum must be rescaled (the
    output accumulator too, in :func:`flash_attention`). A row whose scores so far are all -inf keeps
    m = -inf and l = 0."""
    check_floating("scores", scores)
    check_floating("m", m)
    check_floating("l", l)
    if scores.dim() < 1 or m.shape != scores.shape[:-1] or l.shape != m.shape:
        raise ValueError(f"m {tuple(m.shape)} and l {tuple(l.shape)} must both have the shape of scores "
                         f"{tuple(scores.shape)} without its last (block) dim")
    m_new = torch.maximum(m, scores.amax(dim=-1))  # m_new = max(m_old, rowmax(S_block))
    m_safe = torch.where(torch.isneginf(m_new), torch.zeros_like(m_new), m_new)  # all -inf so far: nothing to shift
    alpha = torch.exp(m - m_safe)  # exp(m_old - m_new): rescales what was summed so far
    p = torch.exp(scores - m_safe.unsqueeze(-1))  # exp(s_j - m_new)
    l_new = alpha * l + p.sum(dim=-1)  # l_new = alpha l_old + sum_j exp(s_j - m_new)
    return m_new, l_new, alpha


@dataclass(frozen=True)
class OnlineSoftmaxStep:
    """The running statistics after one block of a row: which columns the block held (``start``, ``stop``),
    its largest score, the running maximum ``m`` and sum ``l`` after it, and ``alpha`` = exp(m_old - m_new),
    the rescaling applied to the old sum (1.0 when the maximum did not move; 0.0 on the first block)."""

    start: int
    stop: int
    block_max: float
    m: float
    l: float  # noqa: E741 (the papers' l)
    alpha: float


def online_softmax_trace(scores: torch.Tensor, block_size: int) -> tuple[list[OnlineSoftmaxStep], torch.Tensor]:
    """Run the online softmax over ONE row of scores (n,), ``block_size`` scores at a time.

    Returns (the steps, one :class:`OnlineSoftmaxStep` per block; the softmax (n,) computed from the final
    statistics, exp(s_j - m) / l), equal to ``torch.softmax(scores, -1)``. The row never needs to be held
    whole to find m and l: each step sees only its block."""
    check_floating("scores", scores)
    check_ndim("scores", scores, 1, "(n,)")
    check_positive_int("block_size", block_size)
    if scores.shape[0] == 0:
        raise ValueError("scores has n=0 entries: a softmax needs at least one")
    m = torch.tensor(float("-inf"), dtype=scores.dtype, device=scores.device)
    l = torch.zeros((), dtype=scores.dtype, device=scores.device)  # noqa: E741
    steps = []
    for start in range(0, scores.shape[0], block_size):
        block = scores[start:start + block_size]
        m, l, alpha = online_softmax_update(m, l, block)  # noqa: E741
        steps.append(OnlineSoftmaxStep(start, start + block.shape[0], float(block.max()), float(m), float(l),
                                       float(alpha)))
    return steps, torch.exp(scores - m) / l


# ----------------------------------------------------------------------------------------------------
# the tiled forward


def _check_qkv(q: object, k: object, v: object) -> None:
    """q (batch, n_heads, n_q, d), k (batch, n_kv_heads, n_k, d), v (batch, n_kv_heads, n_k, d_v), one dtype
    and device, n_kv_heads dividing n_heads, at least one query and one key."""
    check_ndim("q", q, 4, "(batch, n_heads, n_q, head_dim)")
    check_ndim("k", k, 4, "(batch, n_kv_heads, n_k, head_dim)")
    check_ndim("v", v, 4, "(batch, n_kv_heads, n_k, v_head_dim)")
    for name, t in (("q", q), ("k", k), ("v", v)):
        check_floating(name, t)
    check_same_dtype(q=q, k=k, v=v)
    check_same_device(q=q, k=k, v=v)
    if k.shape[0] != q.shape[0] or v.shape[0] != q.shape[0]:
        raise ValueError(f"q, k and v must share the batch size, got {q.shape[0]}, {k.shape[0]}, {v.shape[0]}")
    if k.shape[3] != q.shape[3]:
        raise ValueError(f"k has head_dim={k.shape[3]}, q has {q.shape[3]}: scores need equal widths")
    if v.shape[1:3] != k.shape[1:3]:
        raise ValueError(f"v has (n_kv_heads, n_k) = {tuple(v.shape[1:3])}, k has {tuple(k.shape[1:3])}")
    check_positive_int("n_kv_heads (k.shape[1])", k.shape[1])
    check_divisible("n_heads", q.shape[1], "n_kv_heads", k.shape[1])
    if q.shape[2] == 0 or k.shape[2] == 0:
        raise ValueError(f"q has n_q={q.shape[2]} and k n_k={k.shape[2]} rows: both need at least one")


def _check_scale(scale: object) -> None:
    if scale is not None:
        check_real("scale", scale)


def tile_schedule(n_q: int, n_k: int, block_q: int = BLOCK_Q, block_k: int = BLOCK_K,
                  causal: bool = False) -> list[list[str]]:
    """Which tiles of the (n_q x n_k) score matrix the tiled forward computes: one row per query block
    (ceil(n_q / B_r)), one entry per key block (ceil(n_k / B_c)), each "full" (every pair visible), "partial"
    (the causal mask cuts through it: computed, then masked) or "skipped" (wholly after every query of the
    block under the causal mask: never loaded, never computed).

    Queries are the last n_q of the n_k positions, as in :func:`attnlab.attention.causal_mask`: query i sits at
    position n_k - n_q + i."""
    check_tiling(n_q, n_k, block_q, block_k, causal)
    offset = n_k - n_q
    grid = []
    for i0 in range(0, n_q, block_q):
        first, last = offset + i0, offset + min(i0 + block_q, n_q) - 1  # positions of the block's queries
        row = []
        for j0 in range(0, n_k, block_k):
            j1 = min(j0 + block_k, n_k) - 1
            if not causal or j1 <= first:
                row.append("full")
            elif j0 > last:
                row.append("skipped")
            else:
                row.append("partial")
        grid.append(row)
    return grid


def flash_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, causal: bool = False,
                    block_q: int = BLOCK_Q, block_k: int = BLOCK_K, scale: float | None = None, *,
                    q_start: int | None = None, k_start: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Tiled exact attention (FlashAttention, Dao et al. 2022, Algorithm 1, with FlashAttention-2's deferred
    normalisation, Dao 2023, §3.1): softmax(Q K^T * scale + M) V without materialising the scores.

    q: (batch, n_heads, n_q, d)   k: (batch, n_kv_heads, n_k, d)   v: (batch, n_kv_heads, n_k, d_v)
    (n_kv_heads divides n_heads: GQA and MQA share K/V heads as in :func:`attnlab.gqa.grouped_attention`).
    Returns (O (batch, n_heads, n_q, d_v), L (batch, n_heads, n_q)), L = m + log l the log-sum-exp of each
    row's scores. ``causal``: query i sees the keys at positions <= its own; key blocks wholly in its future
    are skipped. Positions: key j sits at ``k_start`` + j, query i at ``q_start`` + i (default: the queries are
    the last n_q positions, q_start = k_start + n_k - n_q, as in :func:`attnlab.attention.causal_mask`); a
    chunk of a longer cache (:func:`split_kv_attention`) passes its own. The largest score tile alive at once
    is (B_r x B_c) per head. A row with no visible key gets O = 0 and L = -inf (FlashAttention's convention;
    :func:`merge_partials` gives it no weight)."""
    _check_qkv(q, k, v)
    check_bool("causal", causal)
    check_positive_int("block_q", block_q)
    check_positive_int("block_k", block_k)
    _check_scale(scale)
    b, n_h, n_q, d = q.shape
    n_kv, n_k, d_v = k.shape[1], k.shape[2], v.shape[3]
    check_non_negative_int("k_start", k_start)
    if q_start is None:
        if causal and n_q > n_k:
            raise ValueError(f"n_q={n_q} must be <= n_k={n_k} with causal=True: queries are the last n_q "
                             "positions (or pass q_start)")
        q_start = k_start + n_k - n_q if causal else 0  # without the mask positions do not matter
    check_non_negative_int("q_start", q_start)
    scale = 1.0 / math.sqrt(d) if scale is None else scale
    acc = torch.promote_types(q.dtype, torch.float32)  # statistics and accumulator: float32 at least
    q = q.reshape(b, n_kv, n_h // n_kv, n_q, d)  # (b, g, r, n_q, d): r query heads per K/V head
    out = torch.empty(b, n_kv, n_h // n_kv, n_q, d_v, dtype=q.dtype, device=q.device)
    lse = torch.empty(b, n_kv, n_h // n_kv, n_q, dtype=acc, device=q.device)
    for i0 in range(0, n_q, block_q):  # outer loop over query blocks Q_i (FlashAttention-2's order)
        q_i = q[..., i0:i0 + block_q, :].to(acc)  # (b, g, r, B_r, d), loaded once
        rows = q_i.shape[-2]
        m = torch.full((b, n_kv, n_h // n_kv, rows), float("-inf"), dtype=acc, device=q.device)  # running max
        l = torch.zeros_like(m)  # noqa: E741  running sum of exp(s - m)
        o = torch.zeros(b, n_kv, n_h // n_kv, rows, d_v, dtype=acc, device=q.device)  # unnormalised output
        q_pos = torch.arange(q_start + i0, q_start + i0 + rows, device=q.device)  # (B_r,) query positions
        stop = min(n_k, q_start + i0 + rows - k_start) if causal else n_k  # later key blocks: wholly masked, skipped
        for j0 in range(0, stop, block_k):  # inner loop over key blocks K_j, V_j
            k_j, v_j = k[..., j0:j0 + block_k, :], v[..., j0:j0 + block_k, :]  # (b, g, B_c, d), (b, g, B_c, d_v)
            s = torch.einsum("bgrqd,bgkd->bgrqk", q_i, k_j.to(acc)) * scale  # S_ij = Q_i K_j^T * scale (B_r x B_c)
            if causal and k_start + j0 + k_j.shape[-2] - 1 > q_start + i0:  # the diagonal cuts this tile
                k_pos = torch.arange(k_start + j0, k_start + j0 + k_j.shape[-2], device=q.device)
                s = s.masked_fill(k_pos[None, :] > q_pos[:, None], float("-inf"))
            m_new = torch.maximum(m, s.amax(dim=-1))  # m_i^(j) = max(m_i^(j-1), rowmax(S_ij))
            m_safe = torch.where(torch.isneginf(m_new), torch.zeros_like(m_new), m_new)
            p = torch.exp(s - m_safe.unsqueeze(-1))  # P~_ij = exp(S_ij - m_i^(j))
            alpha = torch.exp(m - m_safe)  # exp(m_i^(j-1) - m_i^(j)): rescales the old l and O
            l = alpha * l + p.sum(dim=-1)  # noqa: E741  l_i^(j) = alpha l_i^(j-1) + rowsum(P~_ij)
            o = alpha.unsqueeze(-1) * o + torch.einsum("bgrqk,bgkd->bgrqd", p, v_j.to(acc))  # O~ = alpha O~ + P~ V_j
            m = m_new
        l_safe = torch.where(l > 0, l, torch.ones_like(l))  # l = 0: a row that saw no key (O = 0, L = -inf)
        out[..., i0:i0 + rows, :] = (o / l_safe.unsqueeze(-1)).to(q.dtype)  # O_i = O~_i / l_i, once, at the end
        lse[..., i0:i0 + rows] = m + torch.log(l)  # L_i = m_i + log l_i
    return out.reshape(b, n_h, n_q, d_v), lse.reshape(b, n_h, n_q)


# ----------------------------------------------------------------------------------------------------
# split-KV decoding (FlashDecoding) and the log-sum-exp merge


def merge_partials(outputs: Sequence[torch.Tensor],
                   lses: Sequence[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Merge attention computed over disjoint sets of keys into attention over their union, exactly.

    outputs: C tensors (..., n_q, d_v), each softmax-normalised over its own keys; lses: C tensors (..., n_q),
    each the log-sum-exp of its scores. With L = log sum_c exp(L_c) (the log of the total softmax
    denominator), chunk c's share of it is exp(L_c - L), and

        O = sum_c exp(L_c - L) O_c,     returned with L.

    This is FlashDecoding's reduction step and FlashMLA's ``flash_fwd_mla_combine_kernel``; a chunk whose
    lse is -inf (no visible key) weighs 0. A row where every chunk is -inf gets O = 0, L = -inf."""
    if not isinstance(outputs, Sequence) or isinstance(outputs, torch.Tensor) or len(outputs) == 0:
        raise ValueError("outputs must be a non-empty list of tensors (..., n_q, d_v), one per chunk")
    if not isinstance(lses, Sequence) or isinstance(lses, torch.Tensor) or len(lses) != len(outputs):
        raise ValueError(f"lses must be a list of one tensor (..., n_q) per output, {len(outputs)} in all")
    for c, (o_c, l_c) in enumerate(zip(outputs, lses, strict=True)):
        check_floating(f"outputs[{c}]", o_c)
        check_floating(f"lses[{c}]", l_c)
        if o_c.dim() < 2 or o_c.shape != outputs[0].shape:
            raise ValueError(f"outputs[{c}] has shape {tuple(o_c.shape)}; every output must be "
                             f"(..., n_q, d_v) = {tuple(outputs[0].shape)}")
        if l_c.shape != o_c.shape[:-1]:
            raise ValueError(f"lses[{c}] has shape {tuple(l_c.shape)}, expected {tuple(o_c.shape[:-1])} "
                             "(the output's shape without d_v)")
        check_same_device(**{"outputs[0]": outputs[0], f"outputs[{c}]": o_c, f"lses[{c}]": l_c})
    acc = torch.promote_types(torch.promote_types(outputs[0].dtype, lses[0].dtype), torch.float32)
    lse_c = torch.stack([l_c.to(acc) for l_c in lses])  # (C, ..., n_q)
    lse = torch.logsumexp(lse_c, dim=0)  # L = log sum_c exp(L_c)
    lse_safe = torch.where(torch.isneginf(lse), torch.zeros_like(lse), lse)
    weights = torch.exp(lse_c - lse_safe)  # exp(L_c - L): chunk c's share of the denominator (C, ..., n_q)
    out = torch.einsum("c...q,c...qd->...qd", weights, torch.stack([o_c.to(acc) for o_c in outputs]))
    return out.to(outputs[0].dtype), lse


def split_kv_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, n_splits: int, causal: bool = False,
                       block_k: int = BLOCK_K, scale: float | None = None,
                       ) -> tuple[torch.Tensor, torch.Tensor, list[tuple[torch.Tensor, torch.Tensor]]]:
    """Split-KV attention (FlashDecoding): cut the n_k keys into C = ``n_splits`` contiguous chunks (chunk c holds
    positions floor(c n_k / C) .. floor((c+1) n_k / C) - 1), attend each independently with
    :func:`flash_attention` (on a GPU, one thread block per chunk, in parallel), and merge the partial results
    with :func:`merge_partials`.

    Shapes as :func:`flash_attention` (decode: n_q = 1, the newest position). ``causal``: chunk c's keys keep
    their absolute positions, so a query never sees a later key. Returns (O (b, n_h, n_q, d_v), L (b, n_h,
    n_q), the partials [(O_c, L_c), ...] in chunk order)."""
    _check_qkv(q, k, v)
    check_positive_int("n_splits", n_splits)
    check_bool("causal", causal)
    check_positive_int("block_k", block_k)
    _check_scale(scale)
    n_q, n_k = q.shape[2], k.shape[2]
    if n_splits > n_k:
        raise ValueError(f"n_splits={n_splits} exceeds the n_k={n_k} keys: each chunk needs at least one")
    if causal and n_q > n_k:
        raise ValueError(f"n_q={n_q} must be <= n_k={n_k} with causal=True: queries are the last n_q positions")
    bounds = [c * n_k // n_splits for c in range(n_splits + 1)]  # chunk c: keys bounds[c] .. bounds[c+1] - 1
    partials = []
    for a, z in zip(bounds[:-1], bounds[1:], strict=True):
        partials.append(flash_attention(q, k[..., a:z, :], v[..., a:z, :], causal=causal, block_k=block_k,
                                        scale=scale, q_start=n_k - n_q, k_start=a))  # (O_c, L_c)
    out, lse = merge_partials([o for o, _ in partials], [lse_c for _, lse_c in partials])
    return out, lse, partials


# ----------------------------------------------------------------------------------------------------
# a small, honest CPU benchmark: time and peak memory of the three forms

#: The forms :func:`benchmark` compares, with how each is called.
BENCH_FORMS: dict[str, str] = {
    "matrix": "attnlab.attention.attention_matrix (S and P materialised)",
    "sdpa": "torch.nn.functional.scaled_dot_product_attention (fused)",
    "tiled": "attnlab.flash.flash_attention (the Python loop over tiles)",
}
#: Sequence lengths of the committed run.
BENCH_LENGTHS: tuple[int, ...] = (512, 1024, 2048, 4096)


class _AllocationCounter:
    """Count the bytes of tensor storage alive while a call runs, and their peak: every tensor an aten op
    returns adds its storage's bytes once (views share it); the storage leaves the count when the last such
    tensor is freed. Buffers a fused kernel allocates and frees inside one op (SDPA's per-thread tiles) are
    not seen; the tensors it returns are."""

    def __init__(self) -> None:
        self.refs: dict[int, int] = {}
        self.sizes: dict[int, int] = {}
        self.current = 0
        self.peak = 0

    def _free(self, key: int) -> None:
        self.refs[key] -= 1
        if self.refs[key] == 0:
            self.current -= self.sizes.pop(key)
            del self.refs[key]

    def mode(self):
        """A ``TorchDispatchMode`` that counts into this counter while it is active (``with counter.mode():``)."""
        import weakref

        from torch.utils._python_dispatch import TorchDispatchMode
        from torch.utils._pytree import tree_flatten

        counter = self

        class Mode(TorchDispatchMode):
            def __torch_dispatch__(self, func, types, args=(), kwargs=None):
                out = func(*args, **(kwargs or {}))
                inputs = {t.untyped_storage().data_ptr() for t in tree_flatten((args, kwargs))[0]
                          if isinstance(t, torch.Tensor)}
                for t in tree_flatten(out)[0]:
                    if not isinstance(t, torch.Tensor):
                        continue
                    key = t.untyped_storage().data_ptr()
                    if key not in counter.refs:
                        if key in inputs:
                            continue  # an in-place op or a view of memory allocated before the call
                        counter.refs[key], counter.sizes[key] = 0, t.untyped_storage().nbytes()
                        counter.current += counter.sizes[key]
                        counter.peak = max(counter.peak, counter.current)
                    counter.refs[key] += 1
                    weakref.finalize(t, counter._free, key)
                return out

        return Mode()


def _peak_allocated(fn) -> int:
    """Peak bytes of tensor storage allocated while ``fn()`` runs (its result included), per
    :class:`_AllocationCounter`."""
    counter = _AllocationCounter()
    with counter.mode():
        out = fn()
        del out
    return counter.peak


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key.strip() == "model name":
                    return value.strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def benchmark(lengths: Sequence[int] = BENCH_LENGTHS, n_heads: int = 2, head_dim: int = 64, repeats: int = 5,
              block: int = 128, causal: bool = True) -> dict:
    """Time one causal attention forward (batch 1, ``n_heads`` heads of ``head_dim``, float32, CPU, one torch
    thread) at each sequence length in the three forms of :data:`BENCH_FORMS`, and count each form's peak
    memory. Each time is the median of ``repeats`` calls after one untimed call; the forms alternate within
    each round. The tiled form uses B_r = B_c = ``block``.

    Returns {"cpu", "torch_version", "threads", "shape", "repeats", "rows": [{"length", "form", "time_s",
    "peak_bytes", "score_bytes"}]} with score_bytes = n_heads n^2 x 4, the size of one score matrix."""
    if isinstance(lengths, (str, bytes)) or not isinstance(lengths, Sequence) or not lengths:
        raise ValueError(f"lengths={lengths!r} must be a non-empty list of sequence lengths")
    for n in lengths:
        check_positive_int("lengths", n)
    for name, value in (("n_heads", n_heads), ("head_dim", head_dim), ("repeats", repeats), ("block", block)):
        check_positive_int(name, value)
    check_bool("causal", causal)
    from attnlab.attention import attention_matrix

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        g = torch.Generator().manual_seed(0)
        rows = []
        for n in lengths:
            q, k, v = (torch.randn(1, n_heads, n, head_dim, generator=g) for _ in range(3))
            calls = {
                "matrix": lambda q=q, k=k, v=v: attention_matrix(q, k, v, causal=causal),
                "sdpa": lambda q=q, k=k, v=v: torch.nn.functional.scaled_dot_product_attention(q, k, v,
                                                                                             is_causal=causal),
                "tiled": lambda q=q, k=k, v=v: flash_attention(q, k, v, causal=causal, block_q=block, block_k=block),
            }
            times: dict[str, list[float]] = {form: [] for form in calls}
            for fn in calls.values():
                fn()  # warm-up
            for _ in range(repeats):
                for form, fn in calls.items():
                    start = time.perf_counter()
                    fn()
                    times[form].append(time.perf_counter() - start)
            for form, fn in calls.items():
                rows.append({"length": n, "form": form, "time_s": statistics.median(times[form]),
                             "peak_bytes": _peak_allocated(fn), "score_bytes": n_heads * n * n * 4})
    finally:
        torch.set_num_threads(threads)
    return {"cpu": _cpu_name(), "torch_version": torch.__version__, "threads": 1,
            "shape": {"batch": 1, "n_heads": n_heads, "head_dim": head_dim, "dtype": "float32", "causal": causal,
                      "block_q": block, "block_k": block},
            "repeats": repeats, "forms": BENCH_FORMS, "rows": rows}


def load_benchmark(path: str | Path = BENCH_PATH) -> dict:
    """The stored result of :func:`benchmark` (default: the committed CPU run, :data:`BENCH_PATH`)."""
    check_path("path", path)
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"path={str(path)!r} does not exist: run python -m attnlab.flash --bench --out {path}")
    return json.loads(path.read_text(encoding="utf-8"))


def main(argv: Sequence[str] | None = None) -> dict | None:
    """Command line: ``python -m attnlab.flash --bench [--out PATH]`` runs :func:`benchmark` and writes its JSON
    (default :data:`BENCH_PATH`); prints one line per form and length."""
    if argv is not None and (isinstance(argv, (str, bytes)) or not isinstance(argv, Sequence)):
        raise ValueError(f"argv={argv!r} must be a list of command-line arguments")
    parser = argparse.ArgumentParser(prog="python -m attnlab.flash", description=__doc__.splitlines()[0])
    parser.add_argument("--bench", action="store_true", help="time tiled vs SDPA vs the matrix form on this CPU")
    parser.add_argument("--lengths", default=",".join(map(str, BENCH_LENGTHS)), help="comma-separated lengths")
    parser.add_argument("--repeats", type=int, default=5, help="timed calls per form and length (median)")
    parser.add_argument("--out", default=str(BENCH_PATH), help="where to write the JSON")
    args = parser.parse_args(argv)
    if not args.bench:
        parser.print_help()
        return None
    lengths = [int(n) for n in args.lengths.split(",")]
    report = benchmark(lengths, repeats=args.repeats)
    for row in report["rows"]:
        print(f"n={row['length']:>6}  {row['form']:<7} {row['time_s'] * 1e3:9.2f} ms   peak "
              f"{row['peak_bytes'] / 2**20:8.2f} MiB   (one score matrix: {row['score_bytes'] / 2**20:.2f} MiB)")
    Path(args.out).write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")
    return report


if __name__ == "__main__":
    main()
