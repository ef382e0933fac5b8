"""The KV cache: keep what earlier tokens produced so a decode step computes only the new token.

Generating token t needs k_1..k_t and v_1..v_t in every layer. Without a cache each step recomputes
all of them (O(t) projections per step, O(t^2) in total); with a cache it computes k_t, v_t once,
appends them, and reads the rest. The price is memory: per token and layer, the cache holds
2 * n_kv_heads * head_dim numbers for MHA/MQA/GQA, or d_c + d_h^R for MLA.

:class:`LayerCache` holds any named tensors that grow along one sequence axis, so the same class
stores K/V (MHA, GQA, MQA), MLA's latent and RoPE key, or DSA's indexer keys. It writes into
preallocated storage and doubles the storage when it is full, so appending a token costs O(1)
amortised; with a ``window`` it keeps only the last W tokens (sliding-window attention).
:class:`ConcatCache` is the same idea in its simplest form, growing by ``torch.cat``: every append
copies the whole cache, O(L) per decode step and O(L^2) per generation. Chapter 4 shows it.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from attnlab._validate import (
    check_int,
    check_non_negative_int,
    check_positive_int,
    check_same_device,
    check_same_dtype,
    check_tensor,
)


def _without(shape: torch.Size, dim: int) -> list[int]:
    """``shape`` with axis ``dim`` dropped: what must stay fixed while the cache grows along ``dim``."""
    dims = list(shape)
    del dims[dim]
    return dims


def _check_update(seq_dim: int, cached: dict[str, torch.Tensor], new: dict[str, torch.Tensor]) -> None:
    """Refuse an update that cannot be appended to ``cached`` (the tensors held, by name): no tensors, a
    tensor without axis ``seq_dim``, different token counts or dtypes, other names, devices or shapes."""
    if not new:
        raise ValueError("update() needs at least one named tensor, e.g. update(k=k_new, v=v_new)")
    for key, value in new.items():  # tensors, each with an axis seq_dim
        check_tensor(key, value)
        if not -value.dim() <= seq_dim < value.dim():
            raise ValueError(f"seq_dim={seq_dim} is not an axis of {key}, of shape {tuple(value.shape)}")
    lengths = {name: t.shape[seq_dim] for name, t in new.items()}
    if len(set(lengths.values())) != 1:
        raise ValueError(f"new tensors must add the same number of tokens, got {lengths}")
    check_same_dtype(**new)
    if cached and set(new) != set(cached):
        raise ValueError(f"cache holds {sorted(cached)}, update got {sorted(new)}")
    for name, old in cached.items():  # checked before anything is appended
        t = new[name]
        check_same_device(**{f"cached {name}": old, f"new {name}": t})
        if old.dim() != t.dim() or _without(old.shape, seq_dim) != _without(t.shape, seq_dim):
            raise ValueError(f"cached {name} has shape {tuple(old.shape)}, new {name} has "
                             f"{tuple(t.shape)}: they may differ only along seq_dim={seq_dim}")
        if old.dtype != t.dtype:
            raise ValueError(f"dtype mismatch: cached {name} is {old.dtype}, new {name} is {t.dtype}")


class ConcatCache:
    """The simplest KV cache, for teaching: named tensors that grow along ``seq_dim`` by ``torch.cat``.

    Each update copies everything cached into a new tensor, so a decode step costs O(L) copying and a
    generation O(L^2); :class:`LayerCache` appends in place instead. Layers accept either.

    >>> cache = ConcatCache()
    >>> k, v = cache.update(k=torch.zeros(1, 2, 3, 4), v=torch.zeros(1, 2, 3, 4))  # (b, heads, seq, d)
    >>> cache.seq_len, cache.nbytes
    (3, 192)
    """

    window: int | None = None  # no sliding window: every token is kept

    def __init__(self, seq_dim: int = -2) -> None:
        self.seq_dim = check_int("seq_dim", seq_dim)
        self.tensors: dict[str, torch.Tensor] = {}

    @property
    def seq_len(self) -> int:
        """Tokens held so far (0 when empty)."""
        if not self.tensors:
            return 0
        return next(iter(self.tensors.values())).shape[self.seq_dim]

    @property
    def n_tokens(self) -> int:
        """Tokens held: all of them, the same as :attr:`seq_len`."""
        return self.seq_len

    @property
    def nbytes(self) -> int:
        """Bytes actually held by the cached tensors: sum of numel * element_size."""
        return sum(t.numel() * t.element_size() for t in self.tensors.values())

    def update(self, **new: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """Append each new tensor along ``seq_dim``; return the full cached tensors in argument order.

        The first call fixes the names; later calls must pass the same names, dtypes and the same
        length along ``seq_dim`` for every tensor.
        """
        _check_update(self.seq_dim, self.tensors, new)
        for name, t in new.items():
            old = self.tensors.get(name)
            if old is not None and old.dtype != t.dtype:
                raise ValueError(f"dtype mismatch: cached {name} is {old.dtype}, new {name} is {t.dtype}")
            self.tensors[name] = t if old is None else torch.cat([old, t], dim=self.seq_dim)
        return tuple(self.tensors[name] for name in new)


def _held_nbytes(tensors: dict[str, torch.Tensor]) -> int:
    """Bytes of a cache's named tensors: the sum of numel * element_size (what :attr:`LayerCache.nbytes` and
    :attr:`~attnlab.window.RollingCache.nbytes` count over their held views, and ``capacity_nbytes`` over
    their whole buffers)."""
    return sum(t.numel() * t.element_size() for t in tensors.values())


class LayerCache:
    """One layer's cache: named tensors that grow along the sequence axis ``seq_dim``, in preallocated storage.

    Each name gets one buffer with room for :attr:`capacity` tokens; an update copies the new tokens in
    at the write position and returns views of the filled part. A full buffer is replaced by one of twice
    the size (the held tokens copied once), so appending costs O(1) per token amortised, against
    :class:`ConcatCache`'s O(L). ``capacity`` preallocates room for that many tokens at the first update
    (None: just what the first update brings).

    ``transposed`` names the tensors stored with the token axis innermost in memory (stride 1): each
    returned view has the same shape, but one feature of every token is one contiguous run, as llama.cpp
    stores V when it does not use FlashAttention. A decode step's mix sum_s a_s v_s then reads each V head as
    d_h rows of L numbers, a matrix-vector product whose rows BLAS streams faster than the L short rows of
    the usual layout (chapter 14 measures it); the values and every result are the same.

    ``window`` W keeps only the last W tokens (sliding-window attention): older ones are dropped, and the
    held tokens move back to the front of the buffer when the write position reaches its end (a copy of
    at most W tokens after at least W appends, O(1) amortised). Positions keep counting every token
    seen: :attr:`seq_len` is the next token's position (where RoPE rotates it), :attr:`n_tokens` the tokens
    held, min(seq_len, W).

    >>> cache = LayerCache()
    >>> k, v = cache.update(k=torch.zeros(1, 2, 3, 4), v=torch.zeros(1, 2, 3, 4))  # (b, heads, seq, d)
    >>> cache.seq_len, cache.nbytes
    (3, 192)
    >>> cache = LayerCache(window=4)
    >>> for _ in range(6):
    ...     k, v = cache.update(k=torch.zeros(1, 2, 1, 4), v=torch.zeros(1, 2, 1, 4))
    >>> cache.seq_len, cache.n_tokens, cache.first_position
    (6, 4, 2)
    >>> cache = LayerCache(capacity=8, transposed=("v",))
    >>> k, v = cache.update(k=torch.zeros(1, 2, 3, 4), v=torch.zeros(1, 2, 3, 4))
    >>> v.shape, v.stride()  # the same shape; token t of feature i sits next to token t + 1
    (torch.Size([1, 2, 3, 4]), (64, 32, 1, 8))
    """

    def __init__(self, seq_dim: int = -2, window: int | None = None, capacity: int | None = None,
                 transposed: Sequence[str] = ()) -> None:
        self.seq_dim = check_int("seq_dim", seq_dim)
        self.window = None if window is None else check_positive_int("window", window)
        self._initial_capacity = 0 if capacity is None else check_positive_int("capacity", capacity)
        if isinstance(transposed, str) or not all(isinstance(name, str) for name in transposed):
            raise ValueError(f"transposed must be a sequence of tensor names, e.g. ('v',), got {transposed!r}")
        self.transposed = tuple(transposed)
        self._buffers: dict[str, torch.Tensor] = {}  # name -> storage with room for `capacity` tokens
        self._dims: dict[str, int] = {}  # name -> the buffer's sequence axis, counted from the front
        self._start = 0  # buffer index of the oldest held token
        self._intact = 0  # buffer index from which the storage still holds every token appended (dropped included)
        self._end = 0  # buffer index one past the newest held token (the write position)
        self._seen = 0  # tokens appended since the cache was made (dropped ones included)

    def __repr__(self) -> str:
        window = "" if self.window is None else f", window={self.window}"
        transposed = f", transposed={list(self.transposed)}" if self.transposed else ""
        return (f"LayerCache(seq_len={self.seq_len}, n_tokens={self.n_tokens}, capacity={self.capacity}"
                f"{window}, names={list(self._buffers)}{transposed})")

    @property
    def seq_len(self) -> int:
        """Tokens seen so far (0 when empty): the position of the next token. Without a window, all are held."""
        return self._seen

    @property
    def n_tokens(self) -> int:
        """Tokens held now: :attr:`seq_len`, or at most ``window`` of them."""
        return self._end - self._start

    @property
    def first_position(self) -> int:
        """Position of the oldest held token: seq_len - n_tokens (0 without a window)."""
        return self._seen - self.n_tokens

    @property
    def capacity(self) -> int:
        """Tokens the buffers have room for before they must grow (or, with a window, be compacted)."""
        if not self._buffers:
            return 0
        name, buffer = next(iter(self._buffers.items()))
        return buffer.shape[self._dims[name]]

    @property
    def tensors(self) -> dict[str, torch.Tensor]:
        """The held tokens of each named tensor, in order: views of the buffers (valid until the next
        update, which may move them), shaped like the tensors passed to :meth:`update` with n_tokens along
        ``seq_dim``."""
        n = self.n_tokens
        return {name: buffer.narrow(self._dims[name], self._start, n) for name, buffer in self._buffers.items()}

    @property
    def nbytes(self) -> int:
        """Bytes holding tokens: numel * element_size of the held tensors."""
        return _held_nbytes(self.tensors)

    @property
    def capacity_nbytes(self) -> int:
        """Bytes allocated: the whole buffers, empty room included (nbytes <= capacity_nbytes)."""
        return _held_nbytes(self._buffers)

    def update(self, **new: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """Append each new tensor along ``seq_dim``; return the cached tensors in argument order.

        The first call fixes the names; later calls must pass the same names, dtypes, devices and shapes
        (but for the length along ``seq_dim``), and the same length for every tensor. Returns views holding
        every token the new ones attend to: all tokens cached, or with a window the W - 1 before the new s
        tokens and those s (W - 1 + s in all; a layer masks each query to its own last W).
        """
        _check_update(self.seq_dim, self.tensors, new)
        s = next(iter(new.values())).shape[self.seq_dim]
        if not self._buffers:
            self._check_transposed(new)
            self._allocate(new, max(self._initial_capacity, s))
        elif self._end + s > self.capacity:
            self._make_room(s)
        for name, t in new.items():
            self._buffers[name].narrow(self._dims[name], self._end, s).copy_(t)
        self._end += s
        self._seen += s
        reach = self._end - self._start  # everything held, plus the new tokens
        if self.window is not None:
            reach = min(reach, self.window - 1 + s)
            self._start = max(self._start, self._end - self.window)  # drop all but the last W
        return tuple(self._buffers[name].narrow(self._dims[name], self._end - reach, reach) for name in new)

    def load(self, seq_len: int, **tensors: torch.Tensor) -> None:
        """Hold, directly, what this cache holds after ``seq_len`` tokens, without appending them: ``tensors``
        are the held tokens (all seq_len of them, or with a window the last min(seq_len, W)) with that many
        along ``seq_dim``; what the cache held before is dropped, and the storage has room for the held tokens
        or the constructor's ``capacity``, whichever is more. Positions continue from seq_len. A benchmark fills
        a windowed cache of L random tokens this way: appending L tokens would keep the same W but allocate L."""
        check_non_negative_int("seq_len", seq_len)
        _check_update(self.seq_dim, {}, tensors)
        held = seq_len if self.window is None else min(seq_len, self.window)
        for name, t in tensors.items():
            if t.shape[self.seq_dim] != held:
                raise ValueError(f"{name} holds {t.shape[self.seq_dim]} tokens along seq_dim={self.seq_dim}; after "
                                 f"seq_len={seq_len} tokens this cache holds {held}")
        self._check_transposed(tensors)
        self._buffers, self._dims = {}, {}
        self._allocate(tensors, max(self._initial_capacity, held))
        for name, t in tensors.items():
            self._buffers[name].narrow(self._dims[name], 0, held).copy_(t)
        self._start, self._end, self._seen, self._intact = 0, held, seq_len, 0

    def crop(self, seq_len: int) -> None:
        """Forget the tokens from position ``seq_len`` on, keeping the storage (e.g. to time a decode step
        again from the same cache). ``seq_len`` must lie between :attr:`first_position` and :attr:`seq_len`.
        With a window, the tokens the forgotten ones pushed out come back into the last W where the storage
        still holds them (it does until the held tokens are moved to its front), so cropping after a decode
        step gives the cache it was before."""
        check_non_negative_int("seq_len", seq_len)
        if not self.first_position <= seq_len <= self._seen:
            raise ValueError(f"seq_len={seq_len} must lie between first_position={self.first_position} and the "
                             f"cache's seq_len={self._seen}")
        self._end -= self._seen - seq_len
        self._seen = seq_len
        if self.window is not None:
            self._start = min(self._start, max(self._intact, self._end - self.window))

    def _check_transposed(self, new: dict[str, torch.Tensor]) -> None:
        """Refuse a first update (or load) that lacks a name the cache was told to store transposed."""
        missing = [name for name in self.transposed if name not in new]
        if missing:
            raise ValueError(f"transposed names {missing}, which the update lacks (it holds {sorted(new)})")

    def _empty(self, name: str, like: torch.Tensor, dim: int, capacity: int) -> torch.Tensor:
        """An empty buffer shaped like ``like`` with ``capacity`` along ``dim``; for a name in :attr:`transposed`,
        laid out with that axis innermost (allocated with it last, then moved to ``dim`` as a view)."""
        shape = list(like.shape)
        shape[dim] = capacity
        if name not in self.transposed:
            return like.new_empty(shape)
        shape.append(shape.pop(dim))
        return like.new_empty(shape).movedim(-1, dim)

    def _allocate(self, new: dict[str, torch.Tensor], capacity: int) -> None:
        """Empty buffers shaped like the new tensors, with room for ``capacity`` tokens."""
        for name, t in new.items():
            dim = self.seq_dim % t.dim()
            self._buffers[name] = self._empty(name, t, dim, capacity)
            self._dims[name] = dim

    def _make_room(self, s: int) -> None:
        """Room for ``s`` more tokens after the write position. With a window, when the held tokens and
        the new ones fill at most half the buffer, move the held ones to its front (they do not overlap
        the front, since the write position is past the middle); otherwise grow: twice the capacity, at
        least enough (with a window, twice enough), the held tokens copied to the front."""
        held, capacity = self.n_tokens, self.capacity
        needed = held + s
        if self.window is not None and 2 * needed <= capacity:
            for name, buffer in self._buffers.items():
                dim = self._dims[name]
                buffer.narrow(dim, 0, held).copy_(buffer.narrow(dim, self._start, held))
        else:
            new_capacity = max(2 * capacity, needed if self.window is None else 2 * needed)
            for name, buffer in self._buffers.items():
                dim = self._dims[name]
                grown = self._empty(name, buffer, dim, new_capacity)
                grown.narrow(dim, 0, held).copy_(buffer.narrow(dim, self._start, held))
                self._buffers[name] = grown
        self._start, self._end, self._intact = 0, held, 0


class KVCache:
    """A model's cache: one :class:`LayerCache` per layer (``seq_dim``, ``window`` and ``capacity`` as there).

    A model may put another cache in a layer's slot (``cache.layers[i] = ...``): a windowed layer's ring
    (:class:`~attnlab.window.RollingCache`), or a linear-attention layer's fixed-size state
    (:class:`~attnlab.linear_attention.RecurrentState`, whose ``holds_tokens`` is False). Such a state keeps
    no token: :attr:`n_tokens` and :meth:`bytes_per_token` read the layers that hold tokens, :attr:`nbytes`
    counts everything, :attr:`state_nbytes` the fixed part alone.

    >>> cache = KVCache(n_layers=2)
    >>> cache.nbytes, cache.seq_len
    (0, 0)
    """

    def __init__(self, n_layers: int, seq_dim: int = -2, window: int | None = None,
                 capacity: int | None = None) -> None:
        check_positive_int("n_layers", n_layers)
        check_int("seq_dim", seq_dim)
        self.layers = [LayerCache(seq_dim, window, capacity) for _ in range(n_layers)]

    def __getitem__(self, layer: int) -> LayerCache:
        return self.layers[layer]

    def __len__(self) -> int:
        return len(self.layers)

    def _token_layers(self) -> list:
        """The layer slots that hold tokens (every one but a fixed-size state's)."""
        return [layer for layer in self.layers if getattr(layer, "holds_tokens", True)]

    @property
    def window(self) -> int | None:
        """The layers' sliding window (None: every token is kept), read from the first layer holding tokens."""
        held = self._token_layers()
        return held[0].window if held else None

    @property
    def seq_len(self) -> int:
        """Tokens seen (the same in every layer): the next token's position."""
        return self.layers[0].seq_len

    @property
    def n_tokens(self) -> int:
        """Tokens held per layer that holds tokens: seq_len, or at most the window (0 when every layer holds a
        fixed-size state)."""
        held = self._token_layers()
        return held[0].n_tokens if held else 0

    @property
    def nbytes(self) -> int:
        """Total bytes the cache holds, all layers: the per-token caches and any fixed-size state."""
        return sum(layer.nbytes for layer in self.layers)

    @property
    def state_nbytes(self) -> int:
        """Bytes of the fixed-size states (linear-attention layers): the same at every context; 0 without them."""
        return sum(layer.nbytes for layer in self.layers if not getattr(layer, "holds_tokens", True))

    @property
    def capacity_nbytes(self) -> int:
        """Total bytes allocated, all layers (empty room included)."""
        return sum(layer.capacity_nbytes for layer in self.layers)

    def bytes_per_token(self) -> float:
        """(nbytes - state_nbytes) / n_tokens: the measured cost of one more token of context (all layers that
        hold tokens, whole batch). A fixed-size state does not grow with the context and is not counted."""
        if self.n_tokens == 0:
            raise ValueError("the cache is empty: bytes_per_token needs at least one cached token in a layer that "
                             "keeps tokens (a linear layer's fixed-size state keeps none)")
        return (self.nbytes - self.state_nbytes) / self.n_tokens

    def crop(self, seq_len: int) -> None:
        """Forget the tokens from position ``seq_len`` on, in every layer (:meth:`LayerCache.crop`)."""
        for layer in self.layers:
            layer.crop(seq_len)
