"""Selecting blocks instead of tokens: block-sparse attention and cache eviction, set against DSA's top-k.

DSA (:mod:`attnlab.dsa`) lets each query read k single tokens, wherever they sit. The other sparse designs of
2024-2026 cut the cache into blocks of B consecutive tokens, score each block with something cheap, and read
whole blocks. Query p (a position, 0-based) sees the blocks j with j B <= p; its own block c(p) = floor(p / B)
may be partly filled. With q a query head and K_j = {k_s : s in block j}:

    MoBA  (Lu et al. 2025, "MoBA: Mixture of Block Attention for Long-Context LLMs", §2.2):
          s_j = q · mean(K_j)                     mean-pooled block key; the current block is always chosen,
                                                  future blocks never; top-k blocks per query head
    Quest (Tang et al. 2024, "Quest: Query-Aware Sparsity for Efficient Long-Context LLM Inference", §3):
          m_j = min_{s in j} k_s, M_j = max_{s in j} k_s   channel-wise key bounds per page
          U_j = sum_i max(q_i m_{j,i}, q_i M_{j,i}) = q⁺ · M_j + q⁻ · m_j  >=  q · k_s for every s in j
    NSA   (Yuan et al. 2025, "Native Sparse Attention", §3.3): three branches, o = sum_c g_c Attn(q, K̃_c, Ṽ_c)
          with gates g_c = sigmoid(MLP(x)) (Eq. 5): compressed (one key and value per block, φ of its tokens,
          Eq. 7), selected (the top-n blocks), sliding (the last w tokens). Blocks are scored by the
          compressed branch's own attention p^cmp = softmax(q K̃ᵀ) (Eq. 8), summed over the query heads of a
          GQA group so that the group reads one set of blocks (Eq. 10), with 1 initial and 2 local blocks
          always chosen (§4.1). Selection is by block for the hardware (§3.3.2): GPUs read contiguous
          blocks at a much higher throughput than rows at random indices, and blocks fit Tensor Core tiles.

and two that evict tokens from the cache for good instead of choosing what to read:

    H2O    (Zhang et al. 2023, "H2O: Heavy-Hitter Oracle", §3-4): keep the tokens with the largest attention
           accumulated over the queries so far (heavy hitters) plus the most recent ones; greedy, one
           eviction per step (Algorithm 1).
    SnapKV (Li et al. 2024, "SnapKV: LLM Knows What You are Looking for Before Generation", §4): the last w
           prompt queries (the observation window) vote: sum their attention on each earlier token, smooth
           the votes by 1-D average pooling (kernel 5 in ``snapkv_utils.py``), keep the top ones plus the window.

Every method here turns into a boolean token mask (..., n_q, n_k), True where query i reads key s;
:func:`sparse_attention` attends over it, :func:`attention_recall` measures the share of the dense softmax mass
the mask holds, and :func:`memory_segments` counts the separate contiguous runs a kernel would read. With a
budget that covers every token each method reads every visible token and equals dense attention.

The masks say *what* a selection reads, not what reading it costs: scoring every token and masking reads
the whole cache. :class:`BlockSparseCache`, :func:`quest_decode_attention` and :class:`QuestAttention` are a
real block-sparse decode step (Quest's): the cache keeps K, V and each block's key bounds; one step scores the
blocks by their bounds, picks the top n (its own block always among them) and reads those n blocks whole, as
contiguous runs of B tokens, never touching the others. :func:`quest_mask` is the same selection as a token
mask, for :func:`sparse_attention` to check it against.

Simplifications, said where they happen: NSA's compression φ is a learned MLP with an intra-block position
encoding over blocks of length l at stride d; here φ is the mean (no trained NSA weights exist for the course's
tiny models) and l = d = l' = B, the aligned case in which p^slc = p^cmp (Eq. 9). SnapKV and H2O are run as if
every query position were the end of a prompt / a decode step, so that one prefill yields a selection for
every query.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from attnlab._validate import (
    check_bool,
    check_choice,
    check_floating,
    check_hidden_states,
    check_ndim,
    check_non_negative_int,
    check_positive_int,
    check_real,
    check_same_device,
    check_same_dtype,
    check_tensor,
    check_type,
)
from attnlab.attention import AttentionOutput, softmax
from attnlab.dsa import selection_mask, topk_indices
from attnlab.gqa import AttentionConfig, GroupedQueryAttention

#: The selection rules :func:`select` runs: token-level (per head, and DSA's one set for all heads),
#: block-level (NSA, MoBA, Quest) and eviction (H2O, SnapKV).
METHODS: tuple[str, ...] = ("token", "dsa", "nsa", "moba", "quest", "h2o", "snapkv")
#: How tables and legends name each of :data:`METHODS`.
METHOD_LABELS: dict[str, str] = {
    "token": "token top-k, per head", "dsa": "DSA: one token top-k for all heads", "nsa": "NSA (selected blocks)",
    "moba": "MoBA", "quest": "Quest", "h2o": "H2O (evicts)", "snapkv": "SnapKV (evicts)"}
#: Which of :data:`METHODS` read whole blocks of B tokens.
BLOCK_METHODS: tuple[str, ...] = ("nsa", "moba", "quest")
#: NSA's always-chosen blocks (§4.1: "1 initial block and 2 local blocks").
NSA_INITIAL_BLOCKS, NSA_LOCAL_BLOCKS = 1, 2
#: SnapKV's pooling kernel (``kernel_size=5``, ``pooling='avgpool'`` in SnapKV's ``snapkv_utils.py``).
SNAPKV_KERNEL = 5


# ----------------------------------------------------------------------------------------------------
# checks and shapes


def _check_qk(q: torch.Tensor, k: torch.Tensor) -> tuple[int, int, int]:
    """q (b, h, n_q, d), k (b, h_kv, n_k, d), h a multiple of h_kv, n_q <= n_k -> (n_q, n_k, group size)."""
    check_floating("q", q)
    check_floating("k", k)
    check_ndim("q", q, 4, "(batch, heads, n_q, d)")
    check_ndim("k", k, 4, "(batch, kv_heads, n_k, d)")
    check_same_dtype(q=q, k=k)
    check_same_device(q=q, k=k)
    if q.shape[0] != k.shape[0] or q.shape[-1] != k.shape[-1]:
        raise ValueError(f"q {tuple(q.shape)} and k {tuple(k.shape)} must share batch and d")
    if k.shape[1] == 0 or q.shape[1] % k.shape[1]:
        raise ValueError(f"q's heads={q.shape[1]} must be a multiple of k's kv_heads={k.shape[1]}")
    if q.shape[2] > k.shape[2]:
        raise ValueError(f"q has n_q={q.shape[2]} queries but k only n_k={k.shape[2]} keys: the queries are the "
                         "last n_q of the keys' positions")
    return q.shape[2], k.shape[2], q.shape[1] // k.shape[1]


def _expand_kv(k: torch.Tensor, group: int) -> torch.Tensor:
    """(b, h_kv, n, d) -> (b, h_kv * group, n, d): query head h reads KV head h // group."""
    return k.repeat_interleave(group, dim=1) if group > 1 else k


def _query_positions(n_q: int, n_k: int, device: torch.device) -> torch.Tensor:
    """Absolute positions of the queries, the last n_q of n_k: (n_q,)."""
    return torch.arange(n_k - n_q, n_k, device=device)


def n_blocks(n_keys: int, block_size: int) -> int:
    """ceil(n_keys / B): blocks of B tokens a cache of n_keys tokens is cut into, the last maybe partial."""
    check_non_negative_int("n_keys", n_keys)
    check_positive_int("block_size", block_size)
    return -(-n_keys // block_size)


def causal_block_mask(n_queries: int, n_keys: int, block_size: int, device: torch.device | str | None = None
                      ) -> torch.Tensor:
    """(n_q, n_blocks) bool: query p (the last n_q of n_k positions) may choose block j iff j B <= p, that is
    j <= c(p) = floor(p / B) (MoBA §2.2: future blocks are never routed to; the current block is)."""
    check_non_negative_int("n_queries", n_queries)
    check_non_negative_int("n_keys", n_keys)
    if n_queries > n_keys:
        raise ValueError(f"n_queries={n_queries} must be <= n_keys={n_keys}: queries are the last of the keys")
    current = _query_positions(n_queries, n_keys, device) // block_size  # c(p), (n_q,)
    return torch.arange(n_blocks(n_keys, block_size), device=device) <= current[:, None]


def block_token_mask(block_indices: torch.Tensor, n_keys: int, block_size: int) -> torch.Tensor:
    """Token mask of chosen blocks: (..., n_q, top_n) block ids (-1 = none) -> (..., n_q, n_keys) bool,
    True at s iff floor(s / B) is chosen and s <= p (the current block is read up to the query only)."""
    check_tensor("block_indices", block_indices)
    if block_indices.dim() < 2:
        raise ValueError(f"block_indices must have shape (..., n_q, top_n), got {tuple(block_indices.shape)}")
    n_q = block_indices.shape[-2]
    n_b = n_blocks(n_keys, block_size)
    lead = block_indices.shape[:-2]
    flat = block_indices.reshape(math.prod(lead), n_q, block_indices.shape[-1])
    chosen = selection_mask(flat, max(n_b, 1))  # (., n_q, n_b)
    tokens = chosen.repeat_interleave(block_size, dim=-1)[..., :n_keys]  # block j -> its tokens jB..jB+B-1
    causal = torch.arange(n_keys, device=tokens.device) <= _query_positions(n_q, n_keys, tokens.device)[:, None]
    return (tokens & causal).reshape(*lead, n_q, n_keys)


def select_blocks(block_scores: torch.Tensor, top_n: int, block_size: int, n_keys: int) -> torch.Tensor:
    """The top-n visible blocks of each query, best first: block_scores (..., n_q, n_blocks) -> (..., n_q,
    min(top_n, n_blocks)) int64, -1 where fewer blocks are visible. The same stable top-k as DSA's tokens
    (:func:`attnlab.dsa.topk_indices`), over blocks: query p sees c(p) + 1 of them."""
    check_floating("block_scores", block_scores)
    check_positive_int("top_n", top_n)
    n_q, n_b = block_scores.shape[-2:]
    if n_b != n_blocks(n_keys, block_size):
        raise ValueError(f"block_scores has {n_b} blocks, n_keys={n_keys} in blocks of {block_size} has "
                         f"{n_blocks(n_keys, block_size)}")
    visible = _query_positions(n_q, n_keys, block_scores.device) // block_size + 1  # c(p) + 1 blocks
    flat = block_scores.reshape(math.prod(block_scores.shape[:-2]), n_q, n_b)
    chosen = topk_indices(flat, top_n, visible=visible)  # (., n_q, min(top_n, n_b))
    return chosen.reshape(*block_scores.shape[:-1], chosen.shape[-1])


# ----------------------------------------------------------------------------------------------------
# block scores: MoBA, Quest, NSA


def _blocked(k: torch.Tensor, block_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """k (b, h, n, d) -> (b, h, n_blocks, B, d) zero-padded, and the (n_blocks, B) mask of real tokens."""
    n = k.shape[2]
    n_b = n_blocks(n, block_size)
    padded = F.pad(k, (0, 0, 0, n_b * block_size - n))
    real = (torch.arange(n_b * block_size, device=k.device) < n).view(n_b, block_size)
    return padded.view(*k.shape[:2], n_b, block_size, k.shape[-1]), real


def pool_keys(k: torch.Tensor, block_size: int) -> torch.Tensor:
    """MoBA's block keys (its gate's mean_pool, §2.2): k (b, h, n, d) -> (b, h, n_blocks, d), the mean of each block's
    tokens (of the tokens present, for a partial last block). Also NSA's φ in this module (see above)."""
    check_floating("k", k)
    check_ndim("k", k, 4, "(batch, heads, n, d)")
    check_positive_int("block_size", block_size)
    blocks, real = _blocked(k, block_size)  # (b, h, n_b, B, d), (n_b, B)
    counts = real.sum(-1).clamp(min=1).to(k.dtype)  # tokens per block, (n_b,)
    return blocks.sum(dim=3) / counts[:, None]  # padding is zero: sum / count is the mean


def moba_scores(q: torch.Tensor, k: torch.Tensor, block_size: int) -> torch.Tensor:
    """MoBA's gate scores s_{i,j} = q_i · mean_pool(K_j) (§2.2), causal: -inf for future blocks, +inf for the
    query's own block (always routed to, §2.2). q (b, h, n_q, d), k (b, h_kv, n_k, d) -> (b, h, n_q, n_blocks)."""
    n_q, n_k, group = _check_qk(q, k)
    check_positive_int("block_size", block_size)
    k_bar = _expand_kv(pool_keys(k, block_size), group)  # (b, h, n_b, d)
    s = torch.einsum("bhqd,bhjd->bhqj", q, k_bar)  # s_{q,j} = q · k̄_j
    visible = causal_block_mask(n_q, n_k, block_size, q.device)  # j <= c(p), (n_q, n_b)
    own = _query_positions(n_q, n_k, q.device) // block_size  # c(p), (n_q,)
    current = torch.arange(visible.shape[-1], device=q.device) == own[:, None]  # j == c(p)
    s = s.masked_fill(~visible, float("-inf"))
    return s.masked_fill(current, float("inf"))


def quest_bounds(k: torch.Tensor, block_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Quest's page metadata (§3): channel-wise m_j = min_{s in j} k_s and M_j = max_{s in j} k_s.
    k (b, h, n, d) -> (m, M), each (b, h, n_blocks, d), over the tokens present in each block."""
    check_floating("k", k)
    check_ndim("k", k, 4, "(batch, heads, n, d)")
    check_positive_int("block_size", block_size)
    blocks, real = _blocked(k, block_size)
    pad = ~real[..., None]  # (n_b, B, 1)
    m = blocks.masked_fill(pad, float("inf")).amin(dim=3)
    M = blocks.masked_fill(pad, float("-inf")).amax(dim=3)
    return m, M


def quest_upper_bound(q: torch.Tensor, m: torch.Tensor, M: torch.Tensor) -> torch.Tensor:
    """U_j = sum_i max(q_i m_{j,i}, q_i M_{j,i}) (Quest §3) = q⁺ · M_j + q⁻ · m_j, with
    q⁺ = max(q, 0), q⁻ = min(q, 0): the largest q · k any key between the bounds can reach, so U_j >= q · k_s
    for every s in block j. q (b, h, n_q, d), m and M (b, h, n_b, d) -> (b, h, n_q, n_b)."""
    check_floating("q", q)
    check_floating("m", m)
    check_floating("M", M)
    if m.shape != M.shape or q.shape[:2] != m.shape[:2] or q.shape[-1] != m.shape[-1] or q.dim() != 4:
        raise ValueError(f"q (b, h, n_q, d) {tuple(q.shape)} and m, M (b, h, n_blocks, d) {tuple(m.shape)}, "
                         f"{tuple(M.shape)} must agree")
    q_pos, q_neg = q.clamp(min=0), q.clamp(max=0)
    return torch.einsum("bhqd,bhjd->bhqj", q_pos, M) + torch.einsum("bhqd,bhjd->bhqj", q_neg, m)


def quest_scores(q: torch.Tensor, k: torch.Tensor, block_size: int) -> torch.Tensor:
    """Quest's block scores for every query, causal: U_j for the complete blocks before the query's own, and
    for its own block the bound over the tokens s <= p only (what a decode step at p holds: the last page's
    running min and max); -inf for future blocks. q (b, h, n_q, d), k (b, h_kv, n_k, d) -> (b, h, n_q, n_b)."""
    n_q, n_k, group = _check_qk(q, k)
    check_positive_int("block_size", block_size)
    m, M = (_expand_kv(x, group) for x in quest_bounds(k, block_size))  # (b, h, n_b, d)
    u = quest_upper_bound(q, m, M)  # (b, h, n_q, n_b)
    blocks, _ = _blocked(_expand_kv(k, group), block_size)  # (b, h, n_b, B, d)
    run_M = blocks.cummax(dim=3).values.flatten(2, 3)[:, :, :n_k]  # max over its block's tokens up to s, (b, h, n_k, d)
    run_m = blocks.cummin(dim=3).values.flatten(2, 3)[:, :, :n_k]
    p = _query_positions(n_q, n_k, q.device)  # (n_q,)
    own = (q.clamp(min=0) * run_M[:, :, p]).sum(-1) + (q.clamp(max=0) * run_m[:, :, p]).sum(-1)  # (b, h, n_q)
    u = u.scatter(-1, (p // block_size).expand(*u.shape[:2], n_q)[..., None], own[..., None])
    return u.masked_fill(~causal_block_mask(n_q, n_k, block_size, q.device), float("-inf"))


def nsa_scores(q: torch.Tensor, k: torch.Tensor, block_size: int, n_initial: int = NSA_INITIAL_BLOCKS,
               n_local: int = NSA_LOCAL_BLOCKS) -> torch.Tensor:
    """NSA's block importance (§3.3.2): p^cmp = softmax(q K̃ᵀ / sqrt(d)) over the complete blocks' compressed keys
    K̃ (Eq. 8; φ = mean here), p^slc = p^cmp (Eq. 9 with l = d = l' = B), summed over the query heads of each
    GQA group (Eq. 10), so every head of a group gets the same scores. The first ``n_initial`` blocks and the
    ``n_local`` blocks ending at the query's own are always chosen (+inf); future blocks -inf.
    q (b, h, n_q, d), k (b, h_kv, n_k, d) -> (b, h, n_q, n_blocks)."""
    n_q, n_k, group = _check_qk(q, k)
    check_positive_int("block_size", block_size)
    check_non_negative_int("n_initial", n_initial)
    check_non_negative_int("n_local", n_local)
    b, h, _, d = q.shape
    k_cmp = _expand_kv(pool_keys(k, block_size), group)  # K̃ (b, h, n_b, d)
    p = _query_positions(n_q, n_k, q.device)
    j = torch.arange(k_cmp.shape[2], device=q.device)
    complete = (j + 1) * block_size - 1 <= p[:, None]  # compressed block j exists for query p, (n_q, n_b)
    scores = torch.einsum("bhqd,bhjd->bhqj", q, k_cmp) * d**-0.5  # Eq. 8's logits
    p_cmp = softmax(scores.masked_fill(~complete, float("-inf")), on_fully_masked="zeros")  # (b, h, n_q, n_b)
    p_slc = p_cmp.view(b, h // group, group, n_q, -1).sum(dim=2, keepdim=True)  # Eq. 10: sum over the group
    p_slc = p_slc.expand(b, h // group, group, n_q, p_slc.shape[-1]).reshape(b, h, n_q, -1)
    c = (p // block_size)[:, None]  # the query's block c(p), (n_q, 1)
    forced = (j < n_initial) | ((j <= c) & (j > c - n_local))  # initial blocks and the local ones
    visible = j <= c
    return p_slc.masked_fill(forced & visible, float("inf")).masked_fill(~visible, float("-inf"))


# ----------------------------------------------------------------------------------------------------
# token-level selection and eviction: DSA's top-k, H2O, SnapKV


def dense_scores(q: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """Causal attention logits q · k_s / sqrt(d), -inf for s > p: q (b, h, n_q, d), k (b, h_kv, n_k, d) ->
    (b, h, n_q, n_k) (Vaswani et al. 2017, Eq. 1, before the softmax)."""
    n_q, n_k, group = _check_qk(q, k)
    scores = torch.einsum("bhqd,bhsd->bhqs", q, _expand_kv(k, group)) * q.shape[-1] ** -0.5
    causal = torch.arange(n_k, device=q.device) <= _query_positions(n_q, n_k, q.device)[:, None]
    return scores.masked_fill(~causal, float("-inf"))


def token_topk_mask(scores: torch.Tensor, top_k: int) -> torch.Tensor:
    """DSA's selection S_t = Top-k_{s <= t} scores (:func:`attnlab.dsa.topk_indices`) as a token mask:
    scores (..., n_q, n_k), -inf for s > p -> (..., n_q, n_k) bool."""
    check_floating("scores", scores)
    check_positive_int("top_k", top_k)
    if scores.dim() < 2:
        raise ValueError(f"scores must have shape (..., n_q, n_k), got {tuple(scores.shape)}")
    n_q, n_k = scores.shape[-2:]
    flat = scores.reshape(math.prod(scores.shape[:-2]), n_q, n_k)
    return selection_mask(topk_indices(flat, top_k), max(n_k, 1))[..., :n_k].reshape(scores.shape)


def h2o_mask(scores: torch.Tensor, top_k: int, recent: int) -> torch.Tensor:
    """H2O's cache at every decode step (Algorithm 1, greedy): scores (b, h, n, n) causal logits of n queries at
    positions 0..n-1 -> (b, h, n, n) bool, row p = the tokens step p attends to.

    Step p adds token p; if more than ``top_k`` tokens are held, the held token outside the ``recent`` most recent
    positions with the least attention accumulated over steps 0..p-1 (each step's softmax over what it held) is
    evicted for good. Step p then attends over what is held and adds its weights to the accumulated scores."""
    check_floating("scores", scores)
    check_ndim("scores", scores, 4, "(batch, heads, n, n)")
    check_positive_int("top_k", top_k)
    check_non_negative_int("recent", recent)
    if recent > top_k:
        raise ValueError(f"recent={recent} must be <= top_k={top_k}: the recent window is part of the budget")
    n = scores.shape[-1]
    if scores.shape[-2] != n:
        raise ValueError(f"scores must be square (n queries at positions 0..n-1), got {tuple(scores.shape)}")
    held = torch.zeros(scores.shape[:2] + (n,), dtype=torch.bool, device=scores.device)  # (b, h, n)
    acc = torch.zeros(held.shape, dtype=scores.dtype, device=scores.device)  # accumulated attention
    rows = []
    positions = torch.arange(n, device=scores.device)
    for p in range(n):
        held[..., p] = True
        if p + 1 > top_k:  # one too many: evict the weakest held token older than the recent window
            old = held & (positions <= p - recent)
            victim = acc.masked_fill(~old, float("inf")).argmin(dim=-1, keepdim=True)  # (b, h, 1)
            held.scatter_(-1, victim, False)
        rows.append(held.clone())
        a = softmax(scores[..., p, :].masked_fill(~held, float("-inf")))  # step p's attention, (b, h, n)
        acc = acc + a
    return torch.stack(rows, dim=-2)


def snapkv_mask(weights: torch.Tensor, top_k: int, window: int, kernel: int = SNAPKV_KERNEL) -> torch.Tensor:
    """SnapKV's kept tokens if the prompt ended at each query p (§4.2, Listing 1): weights (..., n, n) dense
    causal attention of queries 0..n-1 -> (..., n, n) bool.

    The observation window is queries p-w+1..p; votes_s = sum_{i in window} a_{i,s} over the prefix s <= p-w,
    smoothed by a 1-D average pool of width ``kernel`` (zero padding), the top (top_k - w) prefix tokens kept,
    plus the window itself. A prompt of at most top_k tokens is kept whole."""
    check_floating("weights", weights)
    check_positive_int("top_k", top_k)
    check_positive_int("window", window)
    check_positive_int("kernel", kernel)
    if window >= top_k:
        raise ValueError(f"window={window} must be < top_k={top_k}: the budget keeps the window and some prefix")
    if kernel % 2 == 0:
        raise ValueError(f"kernel={kernel} must be odd (the pooled vote stays centred on its token)")
    if weights.dim() < 2 or weights.shape[-1] != weights.shape[-2]:
        raise ValueError(f"weights must be square (..., n, n), got {tuple(weights.shape)}")
    n = weights.shape[-1]
    lead = weights.shape[:-2]
    w = weights.reshape(math.prod(lead), n, n)
    csum = F.pad(w.cumsum(dim=-2), (0, 0, 1, 0))  # row r = sum of query rows < r, (., n + 1, n)
    p = torch.arange(n, device=w.device)
    start = (p - window + 1).clamp(min=0)  # first query of p's window
    votes = csum[:, p + 1] - csum[:, start]  # sum_{i = start..p} a_{i,s}, (., n, n)
    prefix = torch.arange(n, device=w.device) < start[:, None]  # s <= p - w, (n, n)
    votes = votes * prefix
    pooled = F.avg_pool1d(votes.reshape(-1, 1, n), kernel, stride=1, padding=kernel // 2).view_as(votes)
    keep = token_topk_mask(pooled.masked_fill(~prefix, float("-inf")), top_k - window) & prefix
    recent = (p[:, None] >= torch.arange(n, device=w.device)) & ~prefix  # the window (and the query) itself
    whole = (p < top_k)[:, None] & (torch.arange(n, device=w.device) <= p[:, None])
    return (keep | recent | whole).reshape(*lead, n, n)


# ----------------------------------------------------------------------------------------------------
# one entry point, attention over a mask, and what a mask holds


def select(method: str, q: torch.Tensor, k: torch.Tensor, budget: int, block_size: int = 16,
           window: int = 8) -> torch.Tensor:
    """The tokens each query reads under ``method`` (one of :data:`METHODS`) at a budget of ``budget`` tokens:
    q (b, h, n, d), k (b, h_kv, n, d) for positions 0..n-1 -> mask (b, h, n, n) bool.

    "token": per head, the ``budget`` tokens of largest q · k (the best any token set of that size can do).
    "dsa": DSA's one set for all heads of the layer, the top ``budget`` of the heads' summed attention (the
    target p_t its lightning indexer is trained to imitate; :mod:`attnlab.dsa`).
    "nsa", "moba", "quest": the top budget // B blocks by :func:`nsa_scores`, :func:`moba_scores`,
    :func:`quest_scores`. "h2o": :func:`h2o_mask` with half the budget recent. "snapkv": :func:`snapkv_mask`
    with a ``window``-query observation window."""
    check_choice("method", method, METHODS)
    n_q, n_k, group = _check_qk(q, k)
    check_positive_int("budget", budget)
    check_positive_int("block_size", block_size)
    check_positive_int("window", window)
    if n_q != n_k:
        raise ValueError(f"select takes every position's query: n_q={n_q} must equal n_k={n_k}")
    if method in BLOCK_METHODS:
        top_n = budget // block_size
        least = NSA_INITIAL_BLOCKS + NSA_LOCAL_BLOCKS if method == "nsa" else 1
        if top_n < least:
            raise ValueError(f"budget={budget} holds {top_n} blocks of block_size={block_size}; {method} needs at "
                             f"least {least}")
        score = {"nsa": nsa_scores, "moba": moba_scores, "quest": quest_scores}[method]
        return block_token_mask(select_blocks(score(q, k, block_size), top_n, block_size, n_k), n_k, block_size)
    logits = dense_scores(q, k)  # (b, h, n, n)
    if method == "token":
        return token_topk_mask(logits, budget)
    if method == "dsa":
        p_t = softmax(logits).sum(dim=1)  # (b, n, n): the heads' attention summed
        return token_topk_mask(p_t, budget)[:, None].expand_as(logits)
    if method == "h2o":
        return h2o_mask(logits, budget, budget // 2)
    if window >= budget:
        raise ValueError(f"window={window} must be < budget={budget} for snapkv")
    return snapkv_mask(softmax(logits), budget, window)


def sparse_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor
                     ) -> tuple[torch.Tensor, torch.Tensor]:
    """o_i = sum_{s in S_i} softmax_{S_i}(q_i · k_s / sqrt(d)) v_s over the tokens the mask selects (and s <= p).
    q (b, h, n_q, d), k and v (b, h_kv, n_k, d[_v]), mask (b, h, n_q, n_k) bool -> (o (b, h, n_q, d_v),
    weights (b, h, n_q, n_k)). A query that selects nothing gets o = 0."""
    n_q, n_k, group = _check_qk(q, k)
    check_floating("v", v)
    check_tensor("mask", mask)
    if mask.dtype != torch.bool:
        raise ValueError(f"mask must be a bool tensor, got {mask.dtype}")
    if v.dim() != 4 or v.shape[:3] != k.shape[:3]:
        raise ValueError(f"v {tuple(v.shape)} must be (batch, kv_heads, n_k, d_v) like k {tuple(k.shape)}")
    if mask.shape != (*q.shape[:3], n_k):
        raise ValueError(f"mask has shape {tuple(mask.shape)}, expected (b, h, n_q, n_k) = {(*q.shape[:3], n_k)}")
    weights = softmax(dense_scores(q, k).masked_fill(~mask, float("-inf")), on_fully_masked="zeros")
    return torch.einsum("bhqs,bhse->bhqe", weights, _expand_kv(v, group)), weights


def attention_recall(weights: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """The share of each query's dense softmax mass the selection holds: r_i = sum_{s in S_i} a_{i,s}, in [0, 1].
    weights (..., n_q, n_k) dense attention (rows sum to 1), mask (..., n_q, n_k) bool -> (..., n_q)."""
    check_floating("weights", weights)
    check_tensor("mask", mask)
    if mask.dtype != torch.bool or mask.shape != weights.shape:
        raise ValueError(f"mask must be bool with the weights' shape {tuple(weights.shape)}, got {mask.dtype} "
                         f"{tuple(mask.shape)}")
    return (weights * mask).sum(dim=-1)


def memory_segments(mask: torch.Tensor) -> torch.Tensor:
    """Separate contiguous runs of selected tokens in each row: what a kernel issues one read for.
    mask (..., n_k) bool -> (...,) int64: the number of s with mask[s] and not mask[s - 1]."""
    check_tensor("mask", mask)
    if mask.dtype != torch.bool or mask.dim() < 1:
        raise ValueError(f"mask must be a bool tensor (..., n_k), got {mask.dtype} {tuple(mask.shape)}")
    starts = mask & ~F.pad(mask, (1, 0))[..., :-1]  # a run starts where the token before is not selected
    return starts.sum(dim=-1)


def group_reads(mask: torch.Tensor, group_size: int) -> torch.Tensor:
    """Tokens one KV head's cache must deliver to its ``group_size`` query heads: |union of their selections|.
    mask (b, h, n_q, n_k) bool, h a multiple of group_size -> (b, h / group_size, n_q) int64. NSA shares one
    selection per group so this equals one head's count (§3.3.2, Eq. 10; the kernel loads a group's queries
    together, §3.4)."""
    check_tensor("mask", mask)
    check_positive_int("group_size", group_size)
    if mask.dtype != torch.bool or mask.dim() != 4 or mask.shape[1] % group_size:
        raise ValueError(f"mask must be bool (b, h, n_q, n_k) with h a multiple of group_size={group_size}, got "
                         f"{mask.dtype} {tuple(mask.shape)}")
    b, h, n_q, n_k = mask.shape
    return mask.view(b, h // group_size, group_size, n_q, n_k).any(dim=2).sum(dim=-1)


def nsa_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, gates: torch.Tensor, block_size: int,
                  top_n: int, window: int) -> torch.Tensor:
    """NSA's output o_t = sum_{c in {cmp, slc, win}} g_t^c Attn(q_t, K̃_t^c, Ṽ_t^c) (Eq. 5).

    cmp: attention over the complete blocks' compressed keys and values (φ = mean, Eq. 7); slc: over the tokens
    of the top-n blocks of :func:`nsa_scores` (Eq. 11-12); win: over the last ``window`` tokens. ``gates``
    (b, h, n_q, 3) are g^cmp, g^slc, g^win, in NSA sigmoid(MLP(x)) of the input; here given.
    q (b, h, n_q, d), k and v (b, h_kv, n_k, d) -> (b, h, n_q, d_v)."""
    n_q, n_k, group = _check_qk(q, k)
    check_floating("gates", gates)
    check_positive_int("block_size", block_size)
    check_positive_int("top_n", top_n)
    check_positive_int("window", window)
    if gates.shape != (*q.shape[:3], 3):
        raise ValueError(f"gates has shape {tuple(gates.shape)}, expected (b, h, n_q, 3) = {(*q.shape[:3], 3)}")
    p = _query_positions(n_q, n_k, q.device)
    # compressed branch: one key and value per complete block
    k_cmp, v_cmp = (_expand_kv(pool_keys(x, block_size), group) for x in (k, v))  # (b, h, n_b, d)
    complete = (torch.arange(k_cmp.shape[2], device=q.device) + 1) * block_size - 1 <= p[:, None]
    logits = torch.einsum("bhqd,bhjd->bhqj", q, k_cmp) * q.shape[-1] ** -0.5
    o_cmp = softmax(logits.masked_fill(~complete, float("-inf")), on_fully_masked="zeros") @ v_cmp
    # selected branch: whole blocks
    chosen = select_blocks(nsa_scores(q, k, block_size), top_n, block_size, n_k)
    o_slc, _ = sparse_attention(q, k, v, block_token_mask(chosen, n_k, block_size))
    # sliding branch: the last `window` tokens
    s = torch.arange(n_k, device=q.device)
    recent = ((s <= p[:, None]) & (s > p[:, None] - window)).expand(*q.shape[:3], n_k)
    o_win, _ = sparse_attention(q, k, v, recent)
    g = gates.unsqueeze(-1)  # (b, h, n_q, 3, 1)
    return g[..., 0, :] * o_cmp + g[..., 1, :] * o_slc + g[..., 2, :] * o_win


@dataclass(frozen=True)
class SelectionMeasure:
    """What one selection rule holds and reads, averaged over batch, heads and the queries at positions >= the
    budget (those that must leave tokens out): ``recall`` (share of the dense softmax mass selected),
    ``error`` (||o_sparse - o_dense|| / ||o_dense|| per head and query), ``tokens`` read per query head,
    ``segments`` (contiguous runs per query head) and ``group_tokens`` (tokens one KV head delivers to its
    group of query heads: the union of their selections)."""

    method: str
    budget: int
    block_size: int
    recall: float
    error: float
    tokens: float
    segments: float
    group_tokens: float


def measure_selections(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, methods: tuple[str, ...] = METHODS,
                       budgets: tuple[int, ...] = (64,), block_size: int = 16, window: int = 8
                       ) -> list[SelectionMeasure]:
    """Run :func:`select` for every method and budget and measure each against dense attention (computed once):
    q (b, h, n, d), k and v (b, h_kv, n, d) of positions 0..n-1 -> one :class:`SelectionMeasure` per (method,
    budget), budgets outer, over the queries at positions >= the budget."""
    _, n, group = _check_qk(q, k)
    if not isinstance(methods, tuple) or not methods:
        raise ValueError(f"methods={methods!r} must be a non-empty tuple of {METHODS}")
    for method in methods:
        check_choice("methods", method, METHODS)
    if not isinstance(budgets, tuple) or not budgets:
        raise ValueError(f"budgets={budgets!r} must be a non-empty tuple of token counts")
    for budget in budgets:
        check_positive_int("budgets", budget)
        if budget >= n:
            raise ValueError(f"budgets holds {budget} >= n={n}: with every token selected there is nothing to measure")
    dense_out, dense_w = sparse_attention(q, k, v, torch.ones(*q.shape[:3], n, dtype=torch.bool, device=q.device))
    norm = dense_out.norm(dim=-1).clamp(min=torch.finfo(dense_out.dtype).tiny)  # (b, h, n)
    measures = []
    for budget in budgets:
        later = slice(budget, n)  # queries that see more than the budget
        for method in methods:
            mask = select(method, q, k, budget, block_size, window)
            out, _ = sparse_attention(q, k, v, mask)
            seen = mask[..., later, :]
            measures.append(SelectionMeasure(
                method=method, budget=budget, block_size=block_size,
                recall=float(attention_recall(dense_w, mask)[..., later].mean()),
                error=float(((out - dense_out).norm(dim=-1) / norm)[..., later].mean()),
                tokens=float(seen.sum(-1).double().mean()),
                segments=float(memory_segments(seen).double().mean()),
                group_tokens=float(group_reads(seen, group).double().mean())))
    return measures


# ----------------------------------------------------------------------------------------------------
# a real block-sparse decode step: Quest's cache, its bound, and whole blocks read


class BlockSparseCache:
    """A GQA layer's cache laid out for block-sparse decoding (Quest §3, whose "pages" are the blocks here):

        K, V      (b, h_kv, capacity, d), capacity a multiple of B: viewed, without a copy, as
                  (b, h_kv, capacity / B, B, d), one row of B d contiguous numbers per block (:attr:`key_blocks`)
        m_j, M_j  (b, h_kv, capacity / B, d): the channel-wise min and max of block j's keys, per K/V head,
                  over the tokens it holds so far (the current, partial block's too)

    :meth:`update` appends tokens and brings the bounds of the blocks they land in up to date (one new
    token: an elementwise min and max, O(h_kv d)); :meth:`crop` forgets tokens (e.g. to time a decode step
    again from the same cache). The storage grows by doubling, like :class:`~attnlab.kv_cache.LayerCache`.

    >>> cache = BlockSparseCache(block_size=4)
    >>> k, v = cache.update(k=torch.zeros(1, 2, 6, 8), v=torch.zeros(1, 2, 6, 8))
    >>> cache.seq_len, cache.n_blocks, tuple(cache.key_max.shape), cache.nbytes
    (6, 2, (1, 2, 2, 8), 1024)
    """

    seq_dim = 2  # (batch, kv_heads, seq, d), as GroupedQueryAttention caches

    def __init__(self, block_size: int, capacity: int | None = None) -> None:
        self.block_size = check_positive_int("block_size", block_size)
        self._initial_capacity = 0 if capacity is None else check_positive_int("capacity", capacity)
        self._k: torch.Tensor | None = None  # (b, h_kv, capacity, d)
        self._v: torch.Tensor | None = None  # (b, h_kv, capacity, d_v)
        self._min: torch.Tensor | None = None  # m_j: (b, h_kv, capacity / B, d)
        self._max: torch.Tensor | None = None  # M_j
        self._seen = 0

    def __repr__(self) -> str:
        return (f"BlockSparseCache(block_size={self.block_size}, seq_len={self.seq_len}, n_blocks={self.n_blocks}, "
                f"capacity={self.capacity})")

    @property
    def seq_len(self) -> int:
        """Tokens held (all of them): the position of the next token."""
        return self._seen

    @property
    def n_tokens(self) -> int:
        """Tokens held: :attr:`seq_len` (nothing is evicted)."""
        return self._seen

    @property
    def n_blocks(self) -> int:
        """Blocks holding tokens: ceil(seq_len / B), the last maybe partial."""
        return n_blocks(self._seen, self.block_size)

    @property
    def capacity(self) -> int:
        """Token slots allocated (a multiple of B; 0 before the first update)."""
        return 0 if self._k is None else self._k.shape[2]

    @property
    def k(self) -> torch.Tensor:
        """The held keys (b, h_kv, seq_len, d): a view of the storage."""
        self._check_filled()
        return self._k.narrow(2, 0, self._seen)

    @property
    def v(self) -> torch.Tensor:
        """The held values (b, h_kv, seq_len, d_v): a view of the storage."""
        self._check_filled()
        return self._v.narrow(2, 0, self._seen)

    @property
    def key_min(self) -> torch.Tensor:
        """m_j of the held blocks, (b, h_kv, n_blocks, d)."""
        self._check_filled()
        return self._min.narrow(2, 0, self.n_blocks)

    @property
    def key_max(self) -> torch.Tensor:
        """M_j of the held blocks, (b, h_kv, n_blocks, d)."""
        self._check_filled()
        return self._max.narrow(2, 0, self.n_blocks)

    @property
    def key_blocks(self) -> torch.Tensor:
        """Every allocated block of keys, (b, h_kv, capacity / B, B, d): a view of the storage, no copy."""
        self._check_filled()
        b, h_kv, cap, d = self._k.shape
        return self._k.view(b, h_kv, cap // self.block_size, self.block_size, d)

    @property
    def value_blocks(self) -> torch.Tensor:
        """Every allocated block of values, (b, h_kv, capacity / B, B, d_v): a view of the storage."""
        self._check_filled()
        b, h_kv, cap, d_v = self._v.shape
        return self._v.view(b, h_kv, cap // self.block_size, self.block_size, d_v)

    @property
    def nbytes(self) -> int:
        """Bytes holding tokens: K and V of seq_len tokens and two bound vectors per held block."""
        if self._k is None:
            return 0
        return sum(t.numel() * t.element_size() for t in (self.k, self.v, self.key_min, self.key_max))

    def _check_filled(self) -> None:
        if self._k is None:
            raise ValueError("the cache is empty: update(k=..., v=...) it first")

    def _grow(self, needed: int, k: torch.Tensor, v: torch.Tensor) -> None:
        """Storage for at least ``needed`` tokens, rounded up to whole blocks; held tokens and bounds kept."""
        B = self.block_size
        capacity = max(needed, self._initial_capacity, 2 * self.capacity)
        capacity = -(-capacity // B) * B
        b, h_kv, _, d = k.shape
        # zeros, not empty: the current block's slots past the last token are read (and masked), and a weight of
        # 0 times uninitialised memory could be NaN
        new_k = k.new_zeros(b, h_kv, capacity, d)
        new_v = v.new_zeros(b, h_kv, capacity, v.shape[-1])
        new_min, new_max = k.new_empty(b, h_kv, capacity // B, d), k.new_empty(b, h_kv, capacity // B, d)
        if self._k is not None:
            held, blocks = self._seen, self.n_blocks
            new_k.narrow(2, 0, held).copy_(self.k)
            new_v.narrow(2, 0, held).copy_(self.v)
            new_min.narrow(2, 0, blocks).copy_(self.key_min)
            new_max.narrow(2, 0, blocks).copy_(self.key_max)
        self._k, self._v, self._min, self._max = new_k, new_v, new_min, new_max

    def _refresh_bounds(self, first_block: int) -> None:
        """m_j, M_j of blocks first_block .. n_blocks - 1 from the tokens they hold (:func:`quest_bounds`)."""
        B = self.block_size
        start = first_block * B
        if start >= self._seen:
            return
        m, M = quest_bounds(self._k.narrow(2, start, self._seen - start).detach(), B)  # (b, h_kv, blocks, d)
        self._min.narrow(2, first_block, m.shape[2]).copy_(m)
        self._max.narrow(2, first_block, M.shape[2]).copy_(M)

    def update(self, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Append s tokens, k (b, h_kv, s, d) and v (b, h_kv, s, d_v), and update the bounds of the blocks they
        fall in; return every held key and value, (b, h_kv, seq_len, d) and (..., d_v), views of the storage."""
        check_floating("k", k)
        check_floating("v", v)
        check_ndim("k", k, 4, "(batch, kv_heads, s, d)")
        check_ndim("v", v, 4, "(batch, kv_heads, s, d_v)")
        if k.shape[:3] != v.shape[:3]:
            raise ValueError(f"k {tuple(k.shape)} and v {tuple(v.shape)} must share batch, kv_heads and s")
        check_same_dtype(k=k, v=v)
        check_same_device(k=k, v=v)
        if self._k is not None:
            for name, new, old in (("k", k, self._k), ("v", v, self._v)):
                if (new.shape[:2], new.shape[3]) != (old.shape[:2], old.shape[3]) or new.dtype != old.dtype \
                        or new.device != old.device:
                    raise ValueError(f"{name} has shape {tuple(new.shape)} {new.dtype}; the cache holds "
                                     f"{tuple(old.shape[:2])} x seq x {old.shape[3]} {old.dtype} on {old.device}")
        s, B = k.shape[2], self.block_size
        if self._k is None or self._seen + s > self.capacity:
            self._grow(self._seen + s, k, v)
        start = self._seen
        self._k.narrow(2, start, s).copy_(k)
        self._v.narrow(2, start, s).copy_(v)
        self._seen += s
        if s == 1 and start % B:  # one more token in a partial block: its bounds move by an elementwise min/max
            j, new = start // B, k[:, :, 0].detach()  # bounds only choose blocks: no gradient flows through them
            torch.minimum(self._min[:, :, j], new, out=self._min[:, :, j])
            torch.maximum(self._max[:, :, j], new, out=self._max[:, :, j])
        else:
            self._refresh_bounds(start // B)
        return self.k, self.v

    def crop(self, seq_len: int) -> None:
        """Forget the tokens from position ``seq_len`` on (keeping the storage), and recompute the bounds of the
        block now last from the tokens it still holds. 0 <= seq_len <= :attr:`seq_len`."""
        check_non_negative_int("seq_len", seq_len)
        if seq_len > self._seen:
            raise ValueError(f"seq_len={seq_len} must be <= the cache's seq_len={self._seen}")
        self._seen = seq_len
        if seq_len % self.block_size:
            self._refresh_bounds(seq_len // self.block_size)


def quest_decode_attention(q: torch.Tensor, cache: BlockSparseCache, top_blocks: int,
                           scale: float | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """One decode step of Quest-style block-sparse attention against a :class:`BlockSparseCache` whose last token
    is the query's own (position p = seq_len - 1, in block c(p) = floor(p / B)):

    1. score each visible block j <= c(p) by its bound, U_j = q⁺ · M_j + q⁻ · m_j (Quest §3; per query head,
       against its K/V head's bounds), the own block always chosen (U = +inf, as MoBA routes to it);
    2. keep the top n = min(top_blocks, c(p) + 1) blocks per query head, ties to the earlier block
       (:func:`attnlab.dsa.topk_indices`, the rule :func:`select_blocks` follows);
    3. read those blocks whole: the storage viewed as (b h_kv n_blocks, B, d) rows and ``index_select`` of n
       rows per query head, n contiguous runs of B d numbers, no per-token gather;
    4. o = softmax(q K_sel^T * scale) V_sel over the n B slots, the own block's slots past p masked.

    q (b, h, 1, d), h a multiple of the cache's h_kv -> (o (b, h, 1, d_v), blocks (b, h, n) int64, best
    first). Equal to :func:`sparse_attention` over :func:`quest_mask`; with top_blocks >= c(p) + 1, to dense
    attention."""
    check_type("cache", cache, BlockSparseCache)
    check_positive_int("top_blocks", top_blocks)
    check_floating("q", q)
    check_ndim("q", q, 4, "(batch, heads, 1, d)")
    cache._check_filled()
    kb, vb = cache.key_blocks, cache.value_blocks  # (b, h_kv, n_cap, B, d), (b, h_kv, n_cap, B, d_v)
    b, h_kv, n_cap, B, d = kb.shape
    if q.shape[2] != 1 or q.shape[0] != b or q.shape[3] != d or q.shape[1] % h_kv:
        raise ValueError(f"q has shape {tuple(q.shape)}; the cache holds batch={b}, kv_heads={h_kv} of d={d}: q "
                         "must be (batch, a multiple of kv_heads, 1, d), one query per sequence")
    check_same_dtype(q=q, cache=kb)
    check_same_device(q=q, cache=kb)
    if scale is not None:
        check_real("scale", scale)
    scale = d**-0.5 if scale is None else scale
    h = q.shape[1]
    g = h // h_kv
    t = cache.seq_len
    own = (t - 1) // B  # c(p)
    qg = q.reshape(b, h_kv, g, d)  # query head i reads K/V head i // g
    u = (torch.einsum("bkgd,bknd->bkgn", qg.clamp(min=0), cache.key_max)  # q⁺ · M_j
         + torch.einsum("bkgd,bknd->bkgn", qg.clamp(max=0), cache.key_min))  # + q⁻ · m_j: (b, h_kv, g, c + 1)
    u[..., own] = float("inf")  # the query's own block is always read
    n = min(top_blocks, own + 1)
    blocks = topk_indices(u.reshape(b * h, 1, own + 1), n).view(b, h_kv, g, n)  # every block visible: no -1
    rows = torch.arange(b * h_kv, device=q.device).view(b, h_kv, 1, 1) * n_cap + blocks  # row in (b h_kv n_cap)
    k_sel = kb.reshape(b * h_kv * n_cap, B, d).index_select(0, rows.flatten()).view(b, h_kv, g, n * B, d)
    v_sel = vb.reshape(b * h_kv * n_cap, B, -1).index_select(0, rows.flatten()).view(b, h_kv, g, n * B, -1)
    scores = torch.einsum("bkgd,bkgsd->bkgs", qg, k_sel) * scale  # (b, h_kv, g, n B)
    positions = (blocks[..., None] * B + torch.arange(B, device=q.device)).flatten(-2)  # each slot's token
    weights = torch.softmax(scores.masked_fill(positions > t - 1, float("-inf")), dim=-1)
    out = torch.einsum("bkgs,bkgsd->bkgd", weights, v_sel)  # (b, h_kv, g, d_v)
    return out.reshape(b, h, 1, -1), blocks.reshape(b, h, n)


def quest_mask(q: torch.Tensor, k: torch.Tensor, top_blocks: int, block_size: int) -> torch.Tensor:
    """The tokens :class:`QuestAttention` reads, as a mask: Quest's block scores (:func:`quest_scores`), each
    query's own block forced (+inf), the top ``top_blocks`` blocks (:func:`select_blocks`), their tokens up to
    the query (:func:`block_token_mask`). q (b, h, n_q, d), k (b, h_kv, n_k, d) -> (b, h, n_q, n_k) bool.
    The same as ``select("quest", ...)`` wherever that picks the query's own block."""
    n_q, n_k, _ = _check_qk(q, k)
    check_positive_int("top_blocks", top_blocks)
    check_positive_int("block_size", block_size)
    scores = quest_scores(q, k, block_size)  # (b, h, n_q, n_blocks), -inf for future blocks
    own = _query_positions(n_q, n_k, q.device) // block_size  # c(p), (n_q,)
    current = torch.arange(scores.shape[-1], device=q.device) == own[:, None]  # (n_q, n_blocks)
    chosen = select_blocks(scores.masked_fill(current, float("inf")), top_blocks, block_size, n_k)
    return block_token_mask(chosen, n_k, block_size)


class QuestAttention(GroupedQueryAttention):
    """:class:`~attnlab.gqa.GroupedQueryAttention` (MHA/MQA/GQA heads, RoPE) whose queries read only the top
    ``top_blocks`` blocks of ``block_size`` tokens by Quest's bound, their own block always among them.

    x (batch, seq, d_model) -> :class:`~attnlab.attention.AttentionOutput`. ``cache``: a
    :class:`BlockSparseCache` of this block size, or None. A decode step (one token with a cache) runs the
    block path, :func:`quest_decode_attention`; several tokens (a prefill) or no cache, the same selection
    as a mask, :func:`quest_mask` and :func:`sparse_attention`. ``return_weights`` gives the weights over
    every key (b, n_heads, seq, keys), zero where a query read nothing."""

    IMPLEMENTATIONS = ("blocks",)

    def __init__(self, config: AttentionConfig, block_size: int = 64, top_blocks: int = 4) -> None:
        super().__init__(config)
        self.block_size = check_positive_int("block_size", block_size)
        self.top_blocks = check_positive_int("top_blocks", top_blocks)

    def make_cache(self, capacity: int | None = None) -> BlockSparseCache:
        """An empty :class:`BlockSparseCache` for this layer (room for ``capacity`` tokens at first)."""
        return BlockSparseCache(self.block_size, capacity)

    def forward(self, x: torch.Tensor, cache: BlockSparseCache | None = None,
                return_weights: bool = False) -> AttentionOutput:
        """y = concat_h(softmax over the selected blocks' keys (q_h k^T / sqrt(d)) V) W^O."""
        check_hidden_states(x, self.config.d_model, self.w_q.weight)
        if cache is not None:
            check_type("cache", cache, BlockSparseCache)
            if cache.block_size != self.block_size:
                raise ValueError(f"cache has block_size={cache.block_size}, this layer {self.block_size}: make it "
                                 "with layer.make_cache()")
        check_bool("return_weights", return_weights)
        b, s, _ = x.shape
        start = 0 if cache is None else cache.seq_len
        q, k, v = self.project(x, start)  # (b, n_heads, s, d), (b, n_kv_heads, s, d) x 2
        if cache is not None:
            k, v = cache.update(k, v)  # every held token, the new ones last
        weights = None
        if cache is not None and s == 1:
            out, blocks = quest_decode_attention(q, cache, self.top_blocks)
            if return_weights:
                weights = softmax(dense_scores(q, k).masked_fill(
                    ~block_token_mask(blocks[:, :, None], k.shape[2], self.block_size), float("-inf")))
        else:
            out, weights = sparse_attention(q, k, v, quest_mask(q, k, self.top_blocks, self.block_size))
        y = self.w_o(out.transpose(1, 2).reshape(b, s, -1))
        return AttentionOutput(y, weights if return_weights else None)
