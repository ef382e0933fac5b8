"""Argument checks shared by the library.

Every public function checks its input before torch sees it, so a learner reads
"n_heads=12 is not divisible by n_kv_heads=5" instead of a shape error from deep inside torch.
Each helper raises ``ValueError`` naming the argument and the rule it broke, or
:class:`ArgumentTypeError` (a ``TypeError`` that is also a ``ValueError``) when the argument is of the
wrong Python type, e.g. a string where a tensor or a config object is expected.
"""

from __future__ import annotations

import math
import numbers
import os

import torch


class ArgumentTypeError(TypeError, ValueError):
    """An argument of the wrong Python type (a str where a tensor is expected, a float where an int is).

    A ``TypeError``, as Python's own convention has it, and also a ``ValueError``, so that code written
    against the library's earlier ``ValueError`` (``except ValueError``) still catches it."""


def _a(type_name: str) -> str:
    """``type_name`` with its indefinite article: "a LayerCache", "an IndexerConfig"."""
    return f"{'an' if type_name[:1].lower() in 'aeiou' else 'a'} {type_name}"


def check_type(name: str, value: object, expected: type | tuple[type, ...], what: str | None = None) -> object:
    """Return ``value`` if it is an instance of ``expected``, else raise :class:`ArgumentTypeError` naming
    ``name``: "config must be an IndexerConfig, got dict". ``what`` replaces the generated description of
    the expected type(s) ("an MLAConfig", "a str or a path")."""
    if not isinstance(value, expected):
        if what is None:
            types = expected if isinstance(expected, tuple) else (expected,)
            what = " or ".join(_a("torch.Tensor" if t is torch.Tensor else t.__name__) for t in types)
        raise ArgumentTypeError(f"{name} must be {what}, got {type(value).__name__}")
    return value


def check_int(name: str, value: object) -> int:
    """Return ``value`` if it is an int (not a bool), else raise :class:`ArgumentTypeError` naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise ArgumentTypeError(f"{name}={value!r} must be an integer")
    return value


def check_positive_int(name: str, value: object) -> int:
    """Return ``value`` if it is an int > 0, else raise ``ValueError`` naming ``name``
    (:class:`ArgumentTypeError` when it is not an int at all)."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise ArgumentTypeError(f"{name}={value!r} must be a positive integer")
    if value <= 0:
        raise ValueError(f"{name}={value!r} must be a positive integer")
    return value


def check_non_negative_int(name: str, value: object) -> int:
    """Return ``value`` if it is an int >= 0, else raise ``ValueError`` naming ``name``
    (:class:`ArgumentTypeError` when it is not an int at all)."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise ArgumentTypeError(f"{name}={value!r} must be a non-negative integer")
    if value < 0:
        raise ValueError(f"{name}={value!r} must be a non-negative integer")
    return value


def check_real(name: str, value: object, minimum: float | None = None, strict: bool = False) -> float:
    """Return ``value`` as a float if it is a finite real number (not a bool, not NaN or inf) >= ``minimum``
    (> when ``strict``), else raise ``ValueError`` naming ``name`` (:class:`ArgumentTypeError` when it is
    not a number at all). NaN fails every ``<``/``<=`` test, so a plain ``value <= 0`` check lets it
    through; this one does not."""
    is_number = not isinstance(value, bool) and isinstance(value, numbers.Real)  # numpy's numbers count too
    ok = is_number and math.isfinite(value)
    error = ValueError if is_number else ArgumentTypeError
    if minimum is None:
        if not ok:
            raise error(f"{name}={value!r} must be a finite number")
        return float(value)
    if not ok or value < minimum or (strict and value == minimum):
        if strict and minimum == 0:
            rule = "a positive number"
        else:
            rule = f"a finite number {'>' if strict else '>='} {minimum:g}"
        raise error(f"{name}={value!r} must be {rule}")
    return float(value)


def check_bool(name: str, value: object) -> bool:
    """Return ``value`` if it is True or False, else raise :class:`ArgumentTypeError` naming ``name`` (a flag
    given as 1 or "yes" would otherwise be read by its truthiness)."""
    if not isinstance(value, bool):
        raise ArgumentTypeError(f"{name}={value!r} must be True or False")
    return value


def check_choice(name: str, value: object, choices: tuple) -> object:
    """Return ``value`` if it is one of ``choices``, else raise ``ValueError`` naming ``name``."""
    if not any(type(value) is type(choice) and value == choice for choice in choices):  # no tensor ==, no 1 == True
        raise ValueError(f"{name}={value!r} must be one of {choices}")
    return value


def check_dtype(name: str, dtype: object, floating: bool = False) -> torch.dtype:
    """Return ``dtype`` if it is a ``torch.dtype`` (a floating-point one when ``floating``), else raise
    :class:`ArgumentTypeError` (not a dtype) or ``ValueError`` (not floating) naming ``name``."""
    if not isinstance(dtype, torch.dtype):
        raise ArgumentTypeError(f"{name}={dtype!r} must be a torch.dtype such as torch.float32")
    if floating and not dtype.is_floating_point:
        raise ValueError(f"{name}={dtype} must be a floating-point dtype such as torch.float32")
    return dtype


#: Plain integer dtypes (no quantized, complex or bool ones): those with a ``torch.iinfo``.
INTEGER_DTYPES: tuple[torch.dtype, ...] = tuple(
    getattr(torch, name) for name in ("uint8", "int8", "int16", "int32", "int64", "uint16", "uint32", "uint64")
    if hasattr(torch, name))


def check_sized_dtype(name: str, dtype: object) -> torch.dtype:
    """Return ``dtype`` if it is a plain floating-point or integer ``torch.dtype`` (one with a ``torch.finfo``
    or ``torch.iinfo`` that says its size), else raise naming ``name``."""
    check_dtype(name, dtype)
    if not (dtype.is_floating_point or dtype in INTEGER_DTYPES):
        raise ValueError(f"{name}={dtype} cannot hold keys or values: use a floating-point (or integer) dtype")
    return dtype


def check_device(name: str, device: object, present: bool = True) -> None:
    """Raise unless ``device`` is None, a ``torch.device`` or a device string torch parses ("cpu",
    "cuda:0"), and, when ``present``, for CUDA and MPS, present on this machine."""
    if device is None:
        return
    check_type(name, device, (str, torch.device), "a torch.device or a device string such as 'cpu'")
    try:
        parsed = torch.device(device)
    except RuntimeError:
        raise ValueError(f"{name}={device!r} is not a device torch knows (try 'cpu' or 'cuda')") from None
    if not present:
        return
    mps = getattr(torch.backends, "mps", None)
    if (parsed.type == "cuda" and not torch.cuda.is_available()
            or parsed.type == "mps" and not (mps is not None and mps.is_available())):
        raise ValueError(f"{name}={device!r}: this machine has no {parsed.type} device")


def check_path(name: str, value: object) -> None:
    """Raise :class:`ArgumentTypeError` unless ``value`` is a str or a path (``os.PathLike``)."""
    check_type(name, value, (str, os.PathLike), "a str or a pathlib.Path")


def check_tensor(name: str, value: object) -> torch.Tensor:
    """Return ``value`` if it is a ``torch.Tensor``, else raise :class:`ArgumentTypeError` naming ``name``."""
    if not isinstance(value, torch.Tensor):
        raise ArgumentTypeError(f"{name} must be a torch.Tensor, got {type(value).__name__}")
    return value


def check_floating(name: str, tensor: object) -> torch.Tensor:
    """Raise unless ``tensor`` is a floating-point tensor (an integer or bool tensor would be rounded or
    refused deep inside torch)."""
    check_tensor(name, tensor)
    if not tensor.dtype.is_floating_point:
        raise ValueError(f"{name} must be a floating-point tensor, got {tensor.dtype}")
    return tensor


def check_integer_tensor(name: str, tensor: object) -> torch.Tensor:
    """Raise unless ``tensor`` is a tensor of integers (not float, complex or bool): positions, indices."""
    check_tensor(name, tensor)
    if tensor.dtype.is_floating_point or tensor.dtype.is_complex or tensor.dtype == torch.bool:
        raise ValueError(f"{name} must be an integer tensor, got {tensor.dtype}")
    return tensor


def check_indices(name: str, indices: object, size: int, size_name: str, padding: bool = False) -> torch.Tensor:
    """Raise unless ``indices`` is an integer tensor of positions 0 <= i < ``size`` (``size_name`` says what
    ``size`` is, e.g. "n_keys"); with ``padding``, -1 marks an empty slot and is allowed too. Reading the
    range waits for the device once (one min/max read back)."""
    check_integer_tensor(name, indices)
    if indices.numel():
        low, high = torch.stack(tuple(torch.aminmax(indices))).tolist()  # one read from the device
        if high >= size:
            raise ValueError(f"{name} holds position {high}, beyond {size_name}={size}")
        if low < (-1 if padding else 0):
            rule = "positions must be >= 0, or -1 for padding" if padding else "positions must be >= 0"
            raise ValueError(f"{name} holds {low}: {rule}")
    return indices


def check_dim(name: str, dim: object, ndim: int) -> int:
    """Return ``dim`` if it is an axis of a tensor with ``ndim`` dims (-ndim <= dim < ndim; a scalar has
    axes 0 and -1, as in torch), else raise naming ``name``."""
    check_int(name, dim)
    n = max(ndim, 1)
    if not -n <= dim < n:
        raise ValueError(f"{name}={dim} is out of range for a tensor with {ndim} dims (allowed {-n} to {n - 1})")
    return dim


def check_tiling(n_q: object, n_k: object, block_q: object, block_k: object, causal: object) -> None:
    """Raise ``ValueError`` unless n_q queries against n_k keys tile into blocks of block_q x block_k (all
    positive) and, with ``causal``, the queries can be the last n_q of the n_k positions (n_q <= n_k):
    what FlashAttention's tile schedule and its HBM count both take."""
    check_positive_int("n_q", n_q)
    check_positive_int("n_k", n_k)
    check_positive_int("block_q", block_q)
    check_positive_int("block_k", block_k)
    check_bool("causal", causal)
    if causal and n_q > n_k:
        raise ValueError(f"n_q={n_q} must be <= n_k={n_k} with causal=True: queries are the last n_q positions")


def check_positions(positions: object, seq: int) -> torch.Tensor:
    """Raise unless ``positions`` is an integer tensor (seq,): one position per token of a sequence of ``seq``."""
    check_integer_tensor("positions", positions)
    check_ndim("positions", positions, 1, "(seq,)")
    if positions.shape[0] != seq:
        raise ValueError(f"positions has {positions.shape[0]} entries, x has seq={seq}: one per token")
    return positions


def check_finite(name: str, tensor: torch.Tensor) -> torch.Tensor:
    """Raise unless every entry of ``tensor`` is finite (no NaN, no inf)."""
    if not bool(torch.isfinite(tensor).all()):
        raise ValueError(f"{name} holds NaN or inf: every entry must be finite")
    return tensor


def check_cache(cache: object, seq_dims: tuple[int, int], owner: str, layout: str) -> None:
    """Raise unless ``cache`` is None or a :class:`~attnlab.kv_cache.LayerCache` (or the teaching
    :class:`~attnlab.kv_cache.ConcatCache`, or a page-backed :class:`~attnlab.paged.PagedLayerCache`) whose
    ``seq_dim`` is one of ``seq_dims`` (the same axis counted from the front and from the back) for a layer
    that caches tensors laid out as ``layout`` ("(batch, seq, width)"); ``owner`` names the layer ("MLA")."""
    if cache is None:
        return
    from attnlab.kv_cache import ConcatCache, LayerCache  # kv_cache imports this module
    from attnlab.paged import PagedLayerCache  # a layer's view of a paged cache (chapter 16)

    check_type("cache", cache, (LayerCache, ConcatCache, PagedLayerCache), "a LayerCache")
    if cache.seq_dim not in seq_dims:
        raise ValueError(f"cache.seq_dim={cache.seq_dim} must be {seq_dims[0]} (or {seq_dims[1]}): {owner} caches "
                         f"{layout}")


def check_divisible(name: str, value: int, divisor_name: str, divisor: int) -> None:
    """Raise ``ValueError`` unless ``value`` is a multiple of ``divisor`` (e.g. heads per KV group)."""
    if value % divisor != 0:
        raise ValueError(f"{name}={value} is not divisible by {divisor_name}={divisor}")


def check_even(name: str, value: int) -> None:
    """Raise ``ValueError`` unless ``value`` is even (RoPE rotates dimensions in pairs)."""
    if value % 2 != 0:
        raise ValueError(f"{name}={value} must be even (RoPE rotates pairs of dimensions)")


def check_ndim(name: str, tensor: torch.Tensor, ndim: int, layout: str) -> None:
    """Raise ``ValueError`` unless ``tensor`` has ``ndim`` dimensions, laid out as ``layout``."""
    check_tensor(name, tensor)
    if tensor.dim() != ndim:
        raise ValueError(f"{name} must have {ndim} dims {layout}, got shape {tuple(tensor.shape)}")


def check_same_dtype(**tensors: torch.Tensor) -> torch.dtype:
    """Raise ``ValueError`` unless all named tensors share one dtype; return it."""
    items = list(tensors.items())
    first_name, first = items[0]
    for name, t in items[1:]:
        if t.dtype != first.dtype:
            raise ValueError(
                f"dtype mismatch: {first_name} is {first.dtype} but {name} is {t.dtype}; "
                "convert them to one dtype first"
            )
    return first.dtype


def check_same_device(**tensors: torch.Tensor) -> torch.device:
    """Raise ``ValueError`` unless all named tensors live on one device; return it."""
    items = list(tensors.items())
    first_name, first = items[0]
    for name, t in items[1:]:
        if t.device != first.device:
            raise ValueError(
                f"device mismatch: {first_name} is on {first.device} but {name} is on {t.device}"
            )
    return first.device


def check_hidden_states(x: torch.Tensor, d_model: int, weight: torch.Tensor | None = None, *,
                        nonempty: bool = True, owner: str = "layer", name: str = "x") -> None:
    """Raise ``ValueError`` unless ``x`` is the input a module of width ``d_model`` takes: (batch, seq,
    d_model), at least one sequence of at least one token when ``nonempty``, and, given the module's ``weight``,
    on its dtype and device. ``owner`` names the module in the message ("layer", "indexer"), ``name`` the
    argument."""
    check_ndim(name, x, 3, "(batch, seq, d_model)")
    if x.shape[-1] != d_model:
        raise ValueError(f"{name} has d_model={x.shape[-1]}, this {owner} expects {d_model}")
    if nonempty and x.shape[0] == 0:
        raise ValueError(f"{name} has batch=0: pass at least one sequence")
    if nonempty and x.shape[1] == 0:
        raise ValueError(f"{name} has seq=0: pass at least one token")
    if weight is not None:
        if x.dtype != weight.dtype:
            raise ValueError(f"dtype mismatch: {name} is {x.dtype} but the weights are {weight.dtype}")
        check_same_device(**{name: x, "weights": weight})


def check_dim_size(name: str, tensor: torch.Tensor, dim: int, size: int, meaning: str) -> None:
    """Raise ``ValueError`` unless ``tensor.shape[dim] == size`` (``meaning`` says what the axis is)."""
    if tensor.shape[dim] != size:
        raise ValueError(f"{name} has {meaning}={tensor.shape[dim]} (dim {dim}), expected {size}")


def check_broadcastable(**shapes: torch.Size | tuple[int, ...]) -> torch.Size:
    """Raise ``ValueError`` unless the named shapes broadcast together (e.g. batch dims); return theirs."""
    try:
        return torch.broadcast_shapes(*shapes.values())
    except RuntimeError:
        named = ", ".join(f"{name} {tuple(shape)}" for name, shape in shapes.items())
        raise ValueError(f"shapes do not broadcast together: {named}") from None


def check_grouped_qkv(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                      same_v_width: bool = True) -> tuple[int, int, int, int, int]:
    """Queries, keys and values of grouped attention: q (b, n_heads, n_q, d), k (b, n_kv_heads, n_k, d) and v
    like k (with ``same_v_width=False`` its last axis may differ), one dtype and device, n_kv_heads dividing
    n_heads. Returns (b, n_heads, n_q, d, n_kv_heads)."""
    check_ndim("q", q, 4, "(batch, n_heads, seq, head_dim)")
    check_ndim("k", k, 4, "(batch, n_kv_heads, seq, head_dim)")
    check_ndim("v", v, 4, "(batch, n_kv_heads, seq, head_dim)")
    check_floating("q", q)
    b, n_heads, n_q, d = q.shape
    n_kv = k.shape[1]
    check_dim_size("k", k, 0, b, "batch")
    check_dim_size("k", k, 3, d, "head_dim")
    if (v.shape != k.shape) if same_v_width else (v.shape[:3] != k.shape[:3]):
        rule = "they must match" if same_v_width else "batch, heads and keys must match"
        raise ValueError(f"v has shape {tuple(v.shape)} but k has {tuple(k.shape)}: {rule}")
    check_same_dtype(q=q, k=k, v=v)
    check_same_device(q=q, k=k, v=v)
    check_positive_int("n_kv_heads (k.shape[1])", n_kv)
    check_divisible("n_heads", n_heads, "n_kv_heads", n_kv)
    if b == 0 or n_q == 0:
        raise ValueError(f"q has batch={b} and n_q={n_q}: pass at least one sequence of at least one query")
    if k.shape[2] == 0:
        raise ValueError("k has n_k=0 keys: a query needs at least one key to attend to")
    return b, n_heads, n_q, d, n_kv
