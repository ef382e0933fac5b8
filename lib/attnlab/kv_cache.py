"""The KV cache: keep what earlier tokens produced so a decode step computes only the new token.

Generating token t needs k_1..k_t and v_1..v_t in every layer. Without a cache each step recomputes
all of them (O(t) projections per step, O(t^2) in total); with a cache it computes k_t, v_t once,
appends them, and reads the rest. The price is memory: per token and layer, the cache holds
2 * n_kv_heads * head_dim numbers for MHA/MQA/GQA, or d_c + d_h^R for MLA.

:class:`LayerCache` holds any named tensors that grow along one sequence axis, so the same class
stores K/V (MHA, GQA, MQA), MLA's latent and RoPE key, or DSA's indexer keys.
"""

from __future__ import annotations

import torch

from attnlab._validate import check_int, check_positive_int, check_same_device, check_same_dtype, check_tensor


def _without(shape: torch.Size, dim: int) -> list[int]:
    """``shape`` with axis ``dim`` dropped: what must stay fixed while the cache grows along ``dim``."""
    dims = list(shape)
    del dims[dim]
    return dims


class LayerCache:
    """One layer's cache: named tensors that grow along the sequence axis ``seq_dim``.

    >>> cache = LayerCache()
    >>> k, v = cache.update(k=torch.zeros(1, 2, 3, 4), v=torch.zeros(1, 2, 3, 4))  # (b, heads, seq, d)
    >>> cache.seq_len, cache.nbytes
    (3, 192)
    """

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
    def nbytes(self) -> int:
        """Bytes actually held by the cached tensors: sum of numel * element_size."""
        return sum(t.numel() * t.element_size() for t in self.tensors.values())

    def update(self, **new: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """Append each new tensor along ``seq_dim``; return the full cached tensors in argument order.

        The first call fixes the names; later calls must pass the same names, dtypes and the same
        length along ``seq_dim`` for every tensor.
        """
        if not new:
            raise ValueError("update() needs at least one named tensor, e.g. update(k=k_new, v=v_new)")
        for key, value in new.items():  # tensors, each with an axis seq_dim
            check_tensor(key, value)
            if not -value.dim() <= self.seq_dim < value.dim():
                raise ValueError(f"seq_dim={self.seq_dim} is not an axis of {key}, of shape {tuple(value.shape)}")
        lengths = {name: t.shape[self.seq_dim] for name, t in new.items()}
        if len(set(lengths.values())) != 1:
            raise ValueError(f"new tensors must add the same number of tokens, got {lengths}")
        check_same_dtype(**new)
        if self.tensors and set(new) != set(self.tensors):
            raise ValueError(f"cache holds {sorted(self.tensors)}, update got {sorted(new)}")
        for name, cached in self.tensors.items():  # checked before anything is appended
            t = new[name]
            check_same_device(**{f"cached {name}": cached, f"new {name}": t})
            if cached.dim() != t.dim() or _without(cached.shape, self.seq_dim) != _without(t.shape, self.seq_dim):
                raise ValueError(f"cached {name} has shape {tuple(cached.shape)}, new {name} has "
                                 f"{tuple(t.shape)}: they may differ only along seq_dim={self.seq_dim}")
        for name, t in new.items():
            old = self.tensors.get(name)
            if old is not None and old.dtype != t.dtype:
                raise ValueError(f"dtype mismatch: cached {name} is {old.dtype}, new {name} is {t.dtype}")
            self.tensors[name] = t if old is None else torch.cat([old, t], dim=self.seq_dim)
        return tuple(self.tensors[name] for name in new)


class KVCache:
    """A model's cache: one :class:`LayerCache` per layer.

    >>> cache = KVCache(n_layers=2)
    >>> cache.nbytes, cache.seq_len
    (0, 0)
    """

    def __init__(self, n_layers: int, seq_dim: int = -2) -> None:
        check_positive_int("n_layers", n_layers)
        check_int("seq_dim", seq_dim)
        self.layers = [LayerCache(seq_dim) for _ in range(n_layers)]

    def __getitem__(self, layer: int) -> LayerCache:
        return self.layers[layer]

    def __len__(self) -> int:
        return len(self.layers)

    @property
    def seq_len(self) -> int:
        """Tokens cached (the same in every layer)."""
        return self.layers[0].seq_len

    @property
    def nbytes(self) -> int:
        """Total bytes held by all layers' cached tensors."""
        return sum(layer.nbytes for layer in self.layers)

    def bytes_per_token(self) -> float:
        """nbytes / seq_len: the measured cost of one more token of context (all layers, whole batch)."""
        if self.seq_len == 0:
            raise ValueError("the cache is empty: bytes_per_token needs at least one cached token")
        return self.nbytes / self.seq_len
