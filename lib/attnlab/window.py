"""Sliding-window attention, attention sinks and cross-layer KV sharing: caches that stop growing.

Sliding window (Beltagy et al. 2020; Mistral 7B, Jiang et al. 2023, sec. 2). Query i sees itself and the
W - 1 keys before it:

    M_ij = 0  if  i - W < j <= i,   else -inf          (the window W counts the query's own key)

so a layer never needs more than the last W keys, and its cache can be a ring of W slots ("rolling buffer
cache", Mistral sec. 2): token t is written into slot t mod W, over token t - W, which no later query sees.

Attention sinks (StreamingLLM, Xiao et al. 2023, arXiv 2309.17453, sec. 3): trained models park a large
share of every query's attention on the first tokens, whatever they are, because softmax must put its
mass somewhere. Evicting them breaks a windowed model; keeping the first S tokens next to the window
repairs it:

    M_ij = 0  if  j < S  or  i - W < j <= i  (and j <= i),   else -inf

gpt-oss (OpenAI 2025, gpt-oss model card; ``openai/gpt-oss`` ``gpt_oss/torch/model.py``: ``sdpa`` appends the
sinks ``S`` to the scores, softmaxes and drops them; ``AttentionBlock`` slides on even layers) learns the sink
instead: one logit s_h per query head joins the softmax's denominator and no value:

    a_ij = exp(z_ij) / (exp(s_h) + sum_k exp(z_ik))      (softmax over [z_i, s_h], the sink column dropped)

so a head may attend to nothing (sum_j a_ij < 1) and caches nothing for it.

Local/global interleaving. Models mix sliding ("local") and full ("global") layers; their configs say
which (``layer_types`` in transformers, 0-based):

    Mistral 7B v0.1   every layer sliding, W = 4096                   (``mistralai/Mistral-7B-v0.1`` config.json)
    Gemma 2           even sliding, odd global, W = 4096              (``google/gemma-2-9b`` config.json)
    Gemma 3           global iff (i + 1) % 6 == 0 (5 local : 1), W = 1024   (``google/gemma-3-27b-pt``)
    gpt-oss           even sliding, odd global, W = 128, learned sinks  (``openai/gpt-oss-120b`` config.json)

Cross-layer KV sharing. A layer may read K and V that another layer computed and cached, and store none
of its own: CLA (Brandon et al. 2024, arXiv 2405.12981, sec. 2: every second layer reuses the one below),
YOCO (Sun et al. 2024, arXiv 2405.05254: the upper half reads one global cache) and Gemma 3n/4
(``num_kv_shared_layers``: the last layers reuse the cache of the last non-shared layer of their type).

:class:`WindowedAttention` is :class:`~attnlab.gqa.GroupedQueryAttention` with a window, sinks and a learned
sink; :class:`RollingCache` the ring; :class:`SharedKVAttention` the layer that keeps no cache.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import torch
from torch import nn

from attnlab._validate import (
    check_bool,
    check_cache,
    check_dim_size,
    check_floating,
    check_grouped_qkv,
    check_hidden_states,
    check_integer_tensor,
    check_ndim,
    check_non_negative_int,
    check_positive_int,
    check_real,
    check_same_device,
    check_same_dtype,
    check_tensor,
    check_type,
)
from attnlab.attention import AttentionLayer, AttentionOutput
from attnlab.gqa import AttentionConfig, GroupedQueryAttention
from attnlab.kv_cache import LayerCache, _check_update, _held_nbytes
from attnlab.rope import apply_rope

# ----------------------------------------------------------------------------------------------------
# which layers are local: the published patterns


@dataclass(frozen=True)
class LayerPattern:
    """Which layers of a model slide and how: ``n_layers`` layers, layer i global iff ``global_every`` > 0 and
    (i + 1) % global_every == 0 (0: every layer slides), the others sliding with window ``window``;
    ``learned_sinks``: a learned sink logit per query head (gpt-oss); ``source``: the config it is read from."""

    name: str
    n_layers: int
    window: int
    global_every: int
    learned_sinks: bool = False
    source: str = ""

    def __post_init__(self) -> None:
        check_positive_int("n_layers", self.n_layers)
        check_positive_int("window", self.window)
        check_non_negative_int("global_every", self.global_every)

    def layer_types(self) -> tuple[str, ...]:
        """"sliding_attention" or "full_attention" per layer, as transformers' ``config.layer_types`` spells them."""
        return layer_types(self.n_layers, self.global_every)

    def windows(self) -> tuple[int | None, ...]:
        """Each layer's window: ``window`` for a sliding layer, None for a global one."""
        return tuple(self.window if t == "sliding_attention" else None for t in self.layer_types())


def layer_types(n_layers: int, global_every: int) -> tuple[str, ...]:
    """Local/global interleaving: layer i (0-based) is "full_attention" iff global_every > 0 and
    (i + 1) % global_every == 0, else "sliding_attention" (Gemma 3's rule with 6; Gemma 2's and gpt-oss's
    "even sliding, odd full" with 2; Mistral 7B v0.1's all-sliding with 0)."""
    check_positive_int("n_layers", n_layers)
    check_non_negative_int("global_every", global_every)
    return tuple("full_attention" if global_every and (i + 1) % global_every == 0 else "sliding_attention"
                 for i in range(n_layers))


#: The published patterns (0-based layers; checked against transformers' configs in tests/test_window.py).
PATTERNS: dict[str, LayerPattern] = {p.name: p for p in (
    LayerPattern("mistral-7b-v0.1", 32, 4096, 0,
                 source="mistralai/Mistral-7B-v0.1 config.json: sliding_window 4096 on every layer"),
    LayerPattern("gemma-2-9b", 42, 4096, 2,
                 source="google/gemma-2-9b config.json: sliding_window 4096, layer_types sliding/full alternating"),
    LayerPattern("gemma-3-27b", 62, 1024, 6,
                 source="google/gemma-3-27b-pt config.json: sliding_window 1024, sliding_window_pattern 6"),
    LayerPattern("gpt-oss-120b", 36, 128, 2, learned_sinks=True,
                 source="openai/gpt-oss-120b config.json: sliding_window 128, layer_types sliding/full alternating"),
)}


# ----------------------------------------------------------------------------------------------------
# the masks


def window_mask(q_positions: torch.Tensor, k_positions: torch.Tensor, window: int | None = None,
                n_sinks: int = 0) -> torch.Tensor:
    """Boolean mask (n_q, n_k), True where the query at position q_positions[i] may attend to the key at
    k_positions[j]:  j <= i  and  (window None  or  i - W < j  or  j < S)  (module docstring's M_ij, by
    absolute positions, so it serves a ring buffer whose slots are out of order). A negative key position
    marks an empty slot and is never attended."""
    check_integer_tensor("q_positions", q_positions)
    check_ndim("q_positions", q_positions, 1, "(n_q,)")
    check_integer_tensor("k_positions", k_positions)
    check_ndim("k_positions", k_positions, 1, "(n_k,)")
    check_same_device(q_positions=q_positions, k_positions=k_positions)
    if window is not None:
        check_positive_int("window", window)
    check_non_negative_int("n_sinks", n_sinks)
    if n_sinks and window is None:
        raise ValueError(f"n_sinks={n_sinks} needs a window: without one every token is kept anyway")
    i, j = q_positions.unsqueeze(1), k_positions.unsqueeze(0)  # (n_q, 1), (1, n_k)
    allowed = (j <= i) & (j >= 0)  # causal; empty slots (position -1) never
    if window is not None:
        allowed &= (j > i - window) | (j < n_sinks)  # the last W keys, and the S sinks
    return allowed


def sliding_window_mask(n: int, window: int | None = None, n_sinks: int = 0,
                        device: torch.device | str | None = None) -> torch.Tensor:
    """The (n, n) mask of a whole sequence: :func:`window_mask` of positions 0..n-1 against themselves."""
    check_positive_int("n", n)
    positions = torch.arange(n, device=device)
    return window_mask(positions, positions, window, n_sinks)


# ----------------------------------------------------------------------------------------------------
# the learned sink


def softmax_with_sink(scores: torch.Tensor, sink: torch.Tensor, dim: int = -1) -> torch.Tensor:
    """gpt-oss's softmax: a_ij = exp(z_ij) / (exp(s) + sum_k exp(z_ik)), i.e. softmax over [z_i, s] with the
    sink's column dropped (``openai/gpt-oss`` gpt_oss/torch/model.py ``sdpa``; transformers'
    ``eager_attention_forward`` in ``modeling_gpt_oss.py``).

    scores: (..., heads, n_q, n_k), masked entries -inf   sink: (heads,) one logit per head   ->   weights
    of the scores' shape; each row sums to 1 / (1 + exp(s - logsumexp_j z_ij)) < 1. A fully masked row gives
    zeros (the sink takes all), not NaN. ``dim`` must be the last axis."""
    check_floating("scores", scores)
    check_tensor("sink", sink)
    check_ndim("sink", sink, 1, "(heads,)")
    if scores.dim() < 3:
        raise ValueError(f"scores must have at least 3 dims (..., heads, n_q, n_k), got shape {tuple(scores.shape)}")
    if dim not in (-1, scores.dim() - 1):
        raise ValueError(f"dim={dim} must be the last axis (-1): the sink joins each row of keys")
    check_dim_size("sink", sink, 0, scores.shape[-3], "heads (scores.shape[-3])")
    check_same_dtype(scores=scores, sink=sink)
    check_same_device(scores=scores, sink=sink)
    s = sink.view(-1, 1, 1)  # (heads, 1, 1), broadcast over queries
    m = torch.maximum(scores.amax(dim=-1, keepdim=True), s)  # max over [z_i, s]: finite, since s is
    exp = torch.exp(scores - m)  # exp(z_ij - m), 0 where masked
    return exp / (exp.sum(dim=-1, keepdim=True) + torch.exp(s - m))  # the sink adds to the denominator only


# ----------------------------------------------------------------------------------------------------
# attention with a window, sinks and a learned sink


def window_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, q_positions: torch.Tensor,
                     k_positions: torch.Tensor, window: int | None = None, n_sinks: int = 0,
                     sink: torch.Tensor | None = None, scale: float | None = None
                     ) -> tuple[torch.Tensor, torch.Tensor]:
    """softmax(q k^T * scale + M) v with the window/sink mask M of :func:`window_mask`, n_heads query heads
    sharing n_kv_heads K/V heads as in :func:`~attnlab.gqa.grouped_attention`; with ``sink`` (heads,) the
    learned sink's softmax (:func:`softmax_with_sink`).

    q: (b, n_heads, n_q, d)   k, v: (b, n_kv_heads, n_k, d)   q_positions (n_q,), k_positions (n_k,) (keys in
    any order, -1 = empty)   ->   out (b, n_heads, n_q, d), weights (b, n_heads, n_q, n_k)."""
    b, n_heads, n_q, d, n_kv = check_grouped_qkv(q, k, v, same_v_width=False)
    allowed = window_mask(q_positions, k_positions, window, n_sinks)  # (n_q, n_k), validates the positions
    check_dim_size("q_positions", q_positions, 0, n_q, "n_q (q.shape[2])")
    check_dim_size("k_positions", k_positions, 0, k.shape[2], "n_k (k.shape[2])")
    check_same_device(q=q, q_positions=q_positions)
    if sink is not None:
        check_tensor("sink", sink)
        check_ndim("sink", sink, 1, "(n_heads,)")
        check_dim_size("sink", sink, 0, n_heads, "n_heads")
    if scale is not None:
        check_real("scale", scale)
    scale = 1.0 / math.sqrt(d) if scale is None else scale
    qg = q.view(b, n_kv, n_heads // n_kv, n_q, d)  # (b, g, r, n_q, d): query head h = g r + j reads KV head g
    scores = torch.einsum("bgrqd,bgkd->bgrqk", qg, k) * scale  # z_ij, (b, g, r, n_q, n_k)
    scores = scores.masked_fill(~allowed, float("-inf")).reshape(b, n_heads, n_q, -1)  # + M
    if sink is None:
        if not bool(allowed.any(dim=-1).all()):
            raise ValueError("a query has no key it may attend to: every query needs its own key among k_positions")
        weights = torch.softmax(scores, dim=-1)
    else:
        weights = softmax_with_sink(scores, sink.to(scores.dtype))  # exp(s_h) joins the denominator
    out = torch.einsum("bgrqk,bgkd->bgrqd", weights.view(b, n_kv, n_heads // n_kv, n_q, -1), v)
    return out.reshape(b, n_heads, n_q, v.shape[-1]), weights


# ----------------------------------------------------------------------------------------------------
# the rolling (ring) cache


def ring_slot(t: int, window: int, n_sinks: int = 0) -> int:
    """The slot token t is written to in a ring of n_sinks + W slots: t for a sink (t < S), else
    S + (t - S) mod W (Mistral's rolling buffer, sec. 2, "position i stored at i mod W", shifted past the sinks)."""
    check_non_negative_int("t", t)
    check_positive_int("window", window)
    check_non_negative_int("n_sinks", n_sinks)
    return t if t < n_sinks else n_sinks + (t - n_sinks) % window


def ring_positions(seq_len: int, window: int, n_sinks: int = 0) -> torch.Tensor:
    """The token each of the n_sinks + W slots of a ring holds after ``seq_len`` tokens (-1: still empty):
    slot i < S holds token i (a sink); slot S + r the last token t < seq_len past the sinks with
    (t - S) mod W = r, i.e. t = S + r + W floor((seq_len - S - 1 - r) / W) (:func:`ring_slot` inverted).
    -> (n_sinks + window,) int64."""
    check_non_negative_int("seq_len", seq_len)
    check_positive_int("window", window)
    check_non_negative_int("n_sinks", n_sinks)
    sinks = torch.arange(n_sinks)
    sinks = torch.where(sinks < seq_len, sinks, -1)
    r = torch.arange(window)
    past = seq_len - n_sinks  # tokens after the sinks
    last = n_sinks + r + torch.div(past - 1 - r, window, rounding_mode="floor") * window
    return torch.cat([sinks, torch.where(r < past, last, -1)])


class RollingCache:
    """A layer's cache of fixed size: ``n_sinks`` + ``window`` slots per named tensor (the rolling buffer).

    Token t goes to :func:`ring_slot` (t, W, S), over token t - W (a sink is never overwritten). The slots
    are out of order; :attr:`positions` says which token each holds (-1: empty), and the layer masks by
    position (:func:`window_mask`), so the order does not matter. A decode step (one new token) writes first
    and then attends over the ring itself, no copy; a longer chunk attends over the held tokens followed by
    the new ones (some new queries need keys the chunk itself would overwrite), then writes its last W.

    Same interface as :class:`~attnlab.kv_cache.LayerCache`: :meth:`update` returns the tensors to attend
    over, in argument order; :attr:`last_positions` the positions of those keys.

    >>> cache = RollingCache(window=3, n_sinks=1)
    >>> for _ in range(6):
    ...     k, v = cache.update(k=torch.zeros(1, 2, 1, 4), v=torch.zeros(1, 2, 1, 4))
    >>> cache.positions.tolist(), cache.seq_len, cache.n_tokens
    ([0, 4, 5, 3], 6, 4)
    """

    def __init__(self, window: int, n_sinks: int = 0, seq_dim: int = -2) -> None:
        self.window = check_positive_int("window", window)
        self.n_sinks = check_non_negative_int("n_sinks", n_sinks)
        if not isinstance(seq_dim, int) or isinstance(seq_dim, bool):
            raise ValueError(f"seq_dim={seq_dim!r} must be an integer")
        self.seq_dim = seq_dim
        self._buffers: dict[str, torch.Tensor] = {}
        self._positions: torch.Tensor | None = None  # (slots,) the token each slot holds, -1 = empty
        self._seen = 0
        self.last_positions: torch.Tensor | None = None  # positions of the keys the last update returned

    def __repr__(self) -> str:
        return (f"RollingCache(window={self.window}, n_sinks={self.n_sinks}, seq_len={self.seq_len}, "
                f"n_tokens={self.n_tokens})")

    @property
    def slots(self) -> int:
        """n_sinks + window: the most tokens it ever holds."""
        return self.n_sinks + self.window

    @property
    def seq_len(self) -> int:
        """Tokens seen so far: the position of the next token."""
        return self._seen

    @property
    def n_tokens(self) -> int:
        """Tokens held: min(seq_len, n_sinks + window)."""
        return min(self._seen, self.slots)

    @property
    def positions(self) -> torch.Tensor:
        """(slots,) the position of the token in each slot, -1 where none is yet (empty before the first update)."""
        return torch.empty(0, dtype=torch.long) if self._positions is None else self._positions.clone()

    @property
    def tensors(self) -> dict[str, torch.Tensor]:
        """The held slots of each named tensor, in slot order (not position order)."""
        n = self.n_tokens
        return {name: buffer.narrow(self.seq_dim, 0, n) for name, buffer in self._buffers.items()}

    @property
    def nbytes(self) -> int:
        """Bytes holding tokens: numel * element_size of the held slots."""
        return _held_nbytes(self.tensors)

    @property
    def capacity_nbytes(self) -> int:
        """Bytes allocated: the whole ring, (n_sinks + window) slots, from the first update on."""
        return _held_nbytes(self._buffers)

    def update(self, **new: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """Write the new tokens into their slots; return what they attend over, in argument order (positions
        in :attr:`last_positions`). One token: the ring itself after writing (the held slots). Several: the held
        tokens followed by the new ones, before the oldest are overwritten."""
        _check_update(self.seq_dim, self.tensors, new)
        first = next(iter(new.values()))
        s = first.shape[self.seq_dim]
        if not self._buffers:
            for name, t in new.items():
                shape = list(t.shape)
                shape[self.seq_dim % t.dim()] = self.slots
                self._buffers[name] = t.new_zeros(shape)
            self._positions = torch.full((self.slots,), -1, dtype=torch.long, device=first.device)
        new_positions = torch.arange(self._seen, self._seen + s, device=first.device)
        if s == 1:  # decode: write, then attend over the ring
            self._write(new, new_positions)
            held = self.tensors
            self.last_positions = self._positions[: self.n_tokens].clone()
            return tuple(held[name] for name in new)
        held = self.tensors  # a chunk: attend over the held tokens and the new ones, then write
        out = tuple(torch.cat([held[name], new[name]], dim=self.seq_dim) for name in new)
        self.last_positions = torch.cat([self._positions[: self.n_tokens], new_positions])
        self._write(new, new_positions)
        return out

    def load(self, seq_len: int, slots: torch.Tensor | None = None, **tensors: torch.Tensor) -> None:
        """Hold, directly, what the ring holds after ``seq_len`` tokens, without running them through
        :meth:`update` (a benchmark fills a cache of L random tokens this way): the slots' positions become
        :func:`ring_positions` (seq_len, W, S), the seen count seq_len.

        ``slots`` None: ``tensors`` hold every held slot, min(seq_len, S + W) entries along ``seq_dim`` in
        slot order, and the ring is allocated afresh (S + W slots, zeros). ``slots`` a 1-D integer tensor:
        the tensors hold just those slots' entries, written into the ring already allocated (same names), the
        other slots kept: how a benchmark undoes one decode step (the slot it overwrote, and the count) before
        timing the next."""
        check_non_negative_int("seq_len", seq_len)
        if not tensors:
            raise ValueError("load() needs the held tensors by name, e.g. load(seq_len, k=k, v=v)")
        if slots is None:
            _check_update(self.seq_dim, {}, tensors)
            n = min(seq_len, self.slots)
            for name, t in tensors.items():
                if t.shape[self.seq_dim] != n:
                    raise ValueError(f"{name} holds {t.shape[self.seq_dim]} tokens along seq_dim={self.seq_dim}; after "
                                     f"seq_len={seq_len} tokens a ring of {self.slots} slots holds {n}")
            first = next(iter(tensors.values()))
            self._buffers = {}
            for name, t in tensors.items():
                shape = list(t.shape)
                shape[self.seq_dim % t.dim()] = self.slots
                self._buffers[name] = t.new_zeros(shape)
                self._buffers[name].narrow(self.seq_dim, 0, n).copy_(t)
            device = first.device
        else:
            check_integer_tensor("slots", slots)
            check_ndim("slots", slots, 1, "(n,)")
            if not self._buffers:
                raise ValueError("slots needs a ring already allocated: load(seq_len, k=..., v=...) it whole first")
            if bool(((slots < 0) | (slots >= self.slots)).any()):
                raise ValueError(f"slots must lie in 0..{self.slots - 1}, got {slots.tolist()}")
            if set(tensors) != set(self._buffers):
                raise ValueError(f"the ring holds {sorted(self._buffers)}, load got {sorted(tensors)}")
            for name, t in tensors.items():
                held = self._buffers[name]
                check_tensor(name, t)
                if t.dim() != held.dim() or t.shape[self.seq_dim] != len(slots) or t.dtype != held.dtype or \
                        [n for i, n in enumerate(t.shape) if i != self.seq_dim % t.dim()] != \
                        [n for i, n in enumerate(held.shape) if i != self.seq_dim % held.dim()]:
                    raise ValueError(f"{name} has shape {tuple(t.shape)} {t.dtype}: it must hold {len(slots)} slots "
                                     f"of the ring's {tuple(held.shape)} {held.dtype} along seq_dim={self.seq_dim}")
            for name, t in tensors.items():
                self._buffers[name].index_copy_(self.seq_dim % t.dim(), slots.to(t.device), t)
            device = next(iter(self._buffers.values())).device
        self._positions = ring_positions(seq_len, self.window, self.n_sinks).to(device)
        self._seen = seq_len
        self.last_positions = None

    def _write(self, new: Mapping[str, torch.Tensor], new_positions: torch.Tensor) -> None:
        """Copy each new token into its ring slot; only the sinks and the last W of them survive."""
        keep = (new_positions < self.n_sinks) | (new_positions >= self._seen + len(new_positions) - self.window)
        kept = new_positions[keep]  # at most n_sinks + W tokens, each to a distinct slot
        slots = torch.where(kept < self.n_sinks, kept, self.n_sinks + (kept - self.n_sinks) % self.window)
        index = keep.nonzero().squeeze(1)
        for name, t in new.items():
            self._buffers[name].index_copy_(self.seq_dim % t.dim(), slots, t.index_select(self.seq_dim, index))
        self._positions[slots] = kept
        self._seen += len(new_positions)


# ----------------------------------------------------------------------------------------------------
# the layers


@dataclass(frozen=True)
class WindowConfig:
    """How a layer limits what it sees: ``window`` W (None: a global layer that sees every earlier token),
    ``n_sinks`` S first tokens kept beside the window (StreamingLLM; needs a window), ``learned_sink``: one
    learned sink logit per query head (gpt-oss)."""

    window: int | None = None
    n_sinks: int = 0
    learned_sink: bool = False

    def __post_init__(self) -> None:
        if self.window is not None:
            check_positive_int("window", self.window)
        check_non_negative_int("n_sinks", self.n_sinks)
        check_bool("learned_sink", self.learned_sink)
        if self.n_sinks and self.window is None:
            raise ValueError(f"n_sinks={self.n_sinks} needs a window: a global layer keeps every token anyway")

    def new_cache(self) -> RollingCache | LayerCache:
        """The cache this layer needs: a :class:`RollingCache` of n_sinks + W slots, or for a global layer a
        growing :class:`~attnlab.kv_cache.LayerCache`."""
        return LayerCache() if self.window is None else RollingCache(self.window, self.n_sinks)


def _keys_positions(cache: RollingCache | LayerCache, k: torch.Tensor, v: torch.Tensor
                    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Append k, v (b, heads, s, d) to ``cache``; return the keys and values to attend over and their positions."""
    k_all, v_all = cache.update(k=k, v=v)
    if isinstance(cache, RollingCache):
        return k_all, v_all, cache.last_positions
    n = k_all.shape[-2]
    return k_all, v_all, torch.arange(cache.seq_len - n, cache.seq_len, device=k.device)


class WindowedAttention(GroupedQueryAttention):
    """:class:`~attnlab.gqa.GroupedQueryAttention` (MHA/MQA/GQA heads, RoPE) whose queries see only their window
    and the sinks (:func:`window_attention`), with gpt-oss's learned sink logits when ``window.learned_sink``.

    x: (batch, seq, d_model) -> :class:`~attnlab.attention.AttentionOutput`. ``cache``: a :class:`RollingCache`
    (of this window and these sinks), a :class:`~attnlab.kv_cache.LayerCache` without a window (every token
    kept, the mask does the limiting), or None. After each call :attr:`last_kv` holds (k, v, key positions,
    query positions) for a :class:`SharedKVAttention` layer that reads this one's K/V."""

    IMPLEMENTATIONS = ("masked",)

    def __init__(self, config: AttentionConfig, window: WindowConfig = WindowConfig()) -> None:
        super().__init__(config)
        check_type("window", window, WindowConfig)
        self.window = window
        # s_h, one per query head (gpt-oss initialises them like the weights; zero = "one extra token's worth")
        self.sinks = nn.Parameter(torch.zeros(config.n_heads)) if window.learned_sink else None
        self.last_kv: tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor] | None = None

    def _check_window_cache(self, cache: object) -> None:
        if isinstance(cache, RollingCache):
            if cache.seq_dim not in (2, -2):
                raise ValueError(f"cache.seq_dim={cache.seq_dim} must be -2 (or 2): a windowed layer caches "
                                 "(batch, n_kv_heads, seq, head_dim)")
            if (cache.window, cache.n_sinks) != (self.window.window, self.window.n_sinks):
                raise ValueError(f"cache has window={cache.window}, n_sinks={cache.n_sinks}; this layer has "
                                 f"window={self.window.window}, n_sinks={self.window.n_sinks}")
            return
        check_cache(cache, (2, -2), "a windowed layer", "(batch, n_kv_heads, seq, head_dim)")
        if cache is not None and cache.window is not None:
            raise ValueError(f"cache.window={cache.window}: pass a RollingCache (window.new_cache()) or a LayerCache "
                             "without a window; this layer applies its own window")

    def forward(self, x: torch.Tensor, cache: RollingCache | LayerCache | None = None,
                return_weights: bool = False) -> AttentionOutput:
        """y = concat_h(softmax(q_h K^T / sqrt(d) + M) V) W^O with the window/sink mask M (and the learned sink).

        Returns y (b, s, d_model) and, with return_weights, the weights (b, n_heads, s, keys)."""
        check_hidden_states(x, self.config.d_model, self.w_q.weight)
        self._check_window_cache(cache)
        check_bool("return_weights", return_weights)
        start = 0 if cache is None else cache.seq_len
        q, k, v = self.project(x, start)  # (b, n_heads, s, d), (b, n_kv_heads, s, d) x 2
        q_positions = torch.arange(start, start + x.shape[1], device=x.device)
        if cache is None:
            k_positions = q_positions
        else:
            k, v, k_positions = _keys_positions(cache, k, v)
        self.last_kv = (k, v, k_positions, q_positions)
        w = self.window
        out, weights = window_attention(q, k, v, q_positions, k_positions, w.window, w.n_sinks, self.sinks)
        b, _, s, _ = out.shape
        y = self.w_o(out.transpose(1, 2).reshape(b, s, -1))
        return AttentionOutput(y, weights if return_weights else None)


class SharedKVAttention(AttentionLayer):
    """A layer that reads another layer's K and V and caches nothing (CLA, Brandon et al. 2024, sec. 2; YOCO;
    Gemma 3n/4's ``num_kv_shared_layers``): its own W^Q and W^O only, attending over the keys and values its
    ``source`` (a :class:`WindowedAttention`) produced for the same tokens, with its own window, sinks and
    learned sink.

    x: (batch, seq, d_model) -> :class:`~attnlab.attention.AttentionOutput`. The source must run first on the
    same tokens (the model runs layers in order); ``cache`` is ignored but for a check: the shared layer holds
    none. The source is kept outside the module tree (its weights are its own layer's)."""

    IMPLEMENTATIONS = ("shared",)

    def __init__(self, config: AttentionConfig, source: WindowedAttention, window: WindowConfig = WindowConfig()
                 ) -> None:
        super().__init__()
        check_type("config", config, AttentionConfig)
        check_type("source", source, WindowedAttention)
        check_type("window", window, WindowConfig)
        sc = source.config
        if (sc.n_kv_heads, sc.head_dim) != (config.n_kv_heads, config.head_dim):
            raise ValueError(f"config has n_kv_heads={config.n_kv_heads}, head_dim={config.head_dim}; the source "
                             f"layer's K/V have n_kv_heads={sc.n_kv_heads}, head_dim={sc.head_dim}: they must match")
        if (window.window or math.inf) > (source.window.window or math.inf) or window.n_sinks > source.window.n_sinks:
            raise ValueError(f"window={window} sees tokens the source's cache ({source.window}) does not keep")
        self.config, self.window = config, window
        self._source = (source,)  # a tuple keeps it out of the module tree and the state dict
        self.w_q = nn.Linear(config.d_model, config.n_heads * config.head_dim, bias=config.bias)  # W^Q
        self.w_o = nn.Linear(config.n_heads * config.head_dim, config.d_model, bias=config.bias)  # W^O
        self.sinks = nn.Parameter(torch.zeros(config.n_heads)) if window.learned_sink else None

    @property
    def source(self) -> WindowedAttention:
        """The layer whose K and V this one reads."""
        return self._source[0]

    def forward(self, x: torch.Tensor, cache: object = None, return_weights: bool = False) -> AttentionOutput:
        """y = concat_h(softmax(q_h K_src^T / sqrt(d) + M) V_src) W^O: the source's keys and values, this layer's
        queries (rotated at the same positions)."""
        check_hidden_states(x, self.config.d_model, self.w_q.weight)
        check_bool("return_weights", return_weights)
        if cache is not None and getattr(cache, "nbytes", 0):
            raise ValueError("a shared-KV layer caches nothing: pass cache=None or its own empty cache")
        if self.source.last_kv is None:
            raise ValueError("the source layer has not run yet: run it on these tokens first")
        k, v, k_positions, q_positions = self.source.last_kv
        if x.shape[0] != k.shape[0] or x.shape[1] != q_positions.shape[0]:
            raise ValueError(f"x has batch={x.shape[0]}, seq={x.shape[1]}; the source layer last ran on batch="
                             f"{k.shape[0]}, seq={q_positions.shape[0]}: run it on these tokens first")
        c = self.config
        b, s, _ = x.shape
        q = self.w_q(x).view(b, s, c.n_heads, c.head_dim).transpose(1, 2)  # (b, n_heads, s, d)
        if c.rope:
            q = apply_rope(q, q_positions, c.rope_base)
        w = self.window
        out, weights = window_attention(q, k, v, q_positions, k_positions, w.window, w.n_sinks, self.sinks)
        y = self.w_o(out.transpose(1, 2).reshape(b, s, -1))
        return AttentionOutput(y, weights if return_weights else None)


def from_gpt_oss(attention: nn.Module) -> WindowedAttention:
    """A :class:`WindowedAttention` with the weights of a transformers ``GptOssAttention`` (q/k/v/o projections
    with biases, ``sinks``, ``sliding_window`` on its sliding layers, halves RoPE with the config's theta; the
    YaRN scaling of the published config is not modelled: build it with default RoPE)."""
    for name in ("q_proj", "k_proj", "v_proj", "o_proj", "sinks", "config", "head_dim"):
        if not hasattr(attention, name):
            raise ValueError(f"attention has no {name}: pass a transformers GptOssAttention")
    cfg = attention.config
    rope = getattr(cfg, "rope_parameters", None) or {}
    if rope.get("rope_type", "default") != "default":
        raise ValueError(f"rope_type={rope.get('rope_type')!r}: only default RoPE is modelled here")
    config = AttentionConfig(d_model=cfg.hidden_size, n_heads=cfg.num_attention_heads,
                             n_kv_heads=cfg.num_key_value_heads, head_dim=attention.head_dim, rope=True,
                             rope_base=float(rope.get("rope_theta", 10000.0)), bias=bool(cfg.attention_bias))
    layer = WindowedAttention(config, WindowConfig(window=attention.sliding_window, learned_sink=True))
    weight = attention.q_proj.weight
    layer = layer.to(dtype=weight.dtype, device=weight.device)
    with torch.no_grad():
        for ours, theirs in (("w_q", "q_proj"), ("w_k", "k_proj"), ("w_v", "v_proj"), ("w_o", "o_proj")):
            getattr(layer, ours).load_state_dict(getattr(attention, theirs).state_dict())
        layer.sinks.copy_(attention.sinks)
    return layer
