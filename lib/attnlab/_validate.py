"""Argument checks shared by the library.

Every public function checks its input before torch sees it, so a learner reads
"n_heads=12 is not divisible by n_kv_heads=5" instead of a shape error from deep inside torch.
Each helper raises ``ValueError`` naming the argument and the rule it broke.
"""

from __future__ import annotations

import torch


def check_positive_int(name: str, value: object) -> int:
    """Return ``value`` if it is an int > 0, else raise ``ValueError`` naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(f"{name}={value!r} must be a positive integer")
    return value


def check_non_negative_int(name: str, value: object) -> int:
    """Return ``value`` if it is an int >= 0, else raise ``ValueError`` naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{name}={value!r} must be a non-negative integer")
    return value


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
    if not isinstance(tensor, torch.Tensor):
        raise ValueError(f"{name} must be a torch.Tensor, got {type(tensor).__name__}")
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
                        nonempty: bool = True, owner: str = "layer") -> None:
    """Raise ``ValueError`` unless ``x`` is the input a module of width ``d_model`` takes: (batch, seq,
    d_model), at least one token when ``nonempty``, and, given the module's ``weight``, on its dtype and
    device. ``owner`` names the module in the message ("layer", "indexer")."""
    check_ndim("x", x, 3, "(batch, seq, d_model)")
    if x.shape[-1] != d_model:
        raise ValueError(f"x has d_model={x.shape[-1]}, this {owner} expects {d_model}")
    if nonempty and x.shape[1] == 0:
        raise ValueError("x has seq=0: pass at least one token")
    if weight is not None:
        if x.dtype != weight.dtype:
            raise ValueError(f"dtype mismatch: x is {x.dtype} but the weights are {weight.dtype}")
        check_same_device(x=x, weights=weight)


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
