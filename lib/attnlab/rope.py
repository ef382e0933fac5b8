"""Rotary position embedding (RoPE, Su et al. 2021, arXiv 2104.09864).

RoPE splits a head's d dimensions into d/2 pairs and rotates pair i of the vector at position m by the
angle m * theta_i, with theta_i = base^(-2i/d):

    [x'_a]   [cos m theta_i   -sin m theta_i] [x_a]
    [x'_b] = [sin m theta_i    cos m theta_i] [x_b]

Rotations compose, so q_m · k_n = (R_m q) · (R_n k) = q · R_(n-m) k depends on m and n only through
m - n: attention scores see relative position.

Two conventions pair the dimensions differently:
- "halves" (Hugging Face Llama, ``rotate_half``): pair i is (i, i + d/2);
- "interleaved" (GPT-J, DeepSeek's MLA in DeepSeek-V3 ``inference/model.py``): pair i is (2i, 2i + 1).
They are the same rotation up to the fixed permutation :func:`interleaved_to_halves`.
"""

from __future__ import annotations

import torch

from attnlab._validate import (
    check_bool,
    check_broadcastable,
    check_device,
    check_even,
    check_floating,
    check_integer_tensor,
    check_non_negative_int,
    check_positive_int,
    check_real,
    check_same_device,
)


def rope_frequencies(head_dim: int, base: float = 10000.0, device=None) -> torch.Tensor:
    """theta_i = base^(-2i/d) for i = 0..d/2-1, shape (d/2,), float64 for exact angles."""
    check_positive_int("head_dim", head_dim)
    check_even("head_dim", head_dim)
    check_real("base", base, 1.0, strict=True)
    check_device("device", device)
    i = torch.arange(head_dim // 2, dtype=torch.float64, device=device)
    return base ** (-2.0 * i / head_dim)


def rope_angles(positions: torch.Tensor, head_dim: int, base: float = 10000.0) -> torch.Tensor:
    """Angles m * theta_i: positions (...,) -> (..., d/2), in float64."""
    check_integer_tensor("positions", positions)
    if (positions < 0).any():
        raise ValueError("positions must be >= 0")
    theta = rope_frequencies(head_dim, base, device=positions.device)  # (d/2,)
    return positions.to(torch.float64).unsqueeze(-1) * theta  # (..., d/2)


def apply_rope(x: torch.Tensor, positions: torch.Tensor, base: float = 10000.0,
               interleaved: bool = False) -> torch.Tensor:
    """Rotate each pair of dimensions of x by m * theta_i (see module docstring).

    x: (..., seq, d)   positions: (seq,) or broadcastable to x.shape[:-1]   ->   (..., seq, d)
    interleaved=False pairs (i, i + d/2) ("halves"); True pairs (2i, 2i+1). The angles m * theta_i come
    from :func:`rope_angles`, the rotation from :func:`rotate_pairs`.
    """
    check_floating("x", x)
    if x.dim() == 0:
        raise ValueError("x must have at least 1 dim (..., seq, d), got a scalar")
    check_integer_tensor("positions", positions)
    check_same_device(x=x, positions=positions)
    check_bool("interleaved", interleaved)
    d = x.shape[-1]
    check_even("x.shape[-1]", d)
    if check_broadcastable(positions=positions.shape, **{"x.shape[:-1]": x.shape[:-1]}) != x.shape[:-1]:
        raise ValueError(f"positions of shape {tuple(positions.shape)} must broadcast to x.shape[:-1] = "
                         f"{tuple(x.shape[:-1])}")
    angles = rope_angles(positions, d, base)  # (..., seq, d/2)
    return rotate_pairs(x, angles, interleaved)


def rotate_pairs(x: torch.Tensor, angles: torch.Tensor, interleaved: bool = True) -> torch.Tensor:
    """R_m x: rotate pair i of the last axis of x by the angle angles[..., i] (RoPE's 2x2 rotations).

    x: (..., d)   angles: broadcastable to x.shape[:-1] + (d/2,), any float dtype (float64 keeps the
    angles exact; cos and sin are cast to x's dtype and device) -> (..., d).
    interleaved=True pairs (2i, 2i+1) (DeepSeek), False pairs (i, i + d/2) (Llama's ``rotate_half``);
    with angles m * theta_i this is :func:`apply_rope`. MLA's YaRN-corrected frequencies
    (:func:`attnlab.mla.yarn_frequencies`) rotate through it too.
    """
    check_floating("x", x)
    if x.dim() == 0:
        raise ValueError("x must have at least 1 dim (..., d), got a scalar")
    check_floating("angles", angles)
    check_bool("interleaved", interleaved)
    d = x.shape[-1]
    check_even("x.shape[-1]", d)
    if angles.dim() == 0 or angles.shape[-1] != d // 2:
        raise ValueError(f"angles has {angles.shape[-1] if angles.dim() else 0} pairs in its last axis, x has "
                         f"d/2 = {d // 2}")
    if check_broadcastable(angles=angles.shape, x=x.shape[:-1] + (d // 2,)) != x.shape[:-1] + (d // 2,):
        raise ValueError(f"angles of shape {tuple(angles.shape)} must broadcast to x.shape[:-1] + (d/2,) = "
                         f"{tuple(x.shape[:-1]) + (d // 2,)}")
    cos = angles.cos().to(device=x.device, dtype=x.dtype)
    sin = angles.sin().to(device=x.device, dtype=x.dtype)
    if interleaved:
        x_a, x_b = x[..., 0::2], x[..., 1::2]  # pair i = (2i, 2i+1)
    else:
        x_a, x_b = x[..., : d // 2], x[..., d // 2 :]  # pair i = (i, i + d/2)
    out_a = x_a * cos - x_b * sin
    out_b = x_a * sin + x_b * cos
    if interleaved:
        return torch.stack([out_a, out_b], dim=-1).flatten(-2)  # back to (2i, 2i+1) order
    return torch.cat([out_a, out_b], dim=-1)


class RopeTable:
    """RoPE at the positions of one forward call, its cos and sin computed once for every rotation that shares
    them, laid out so that a rotation is two products and a sum.

    One decode step of DSA rotates four tensors at the same positions with the same frequencies (MLA's
    query and key, the indexer's query and key: DeepSeek's code hands all of them one ``freqs_cis``); each
    :func:`rotate_pairs` would compute the same cos and sin again. A table remembers the last ``positions``
    tensor it was asked for (by identity: each forward call makes its own) with its theta, dtype and device,
    and computes cos and sin for :attr:`CHUNK` positions at a time, so that decode steps mostly read rows of
    a table. For a pairing it keeps C and S, full width d, with

        R x = x * C + swap(x) * S,     swap: each coordinate's partner in its pair,

    interleaved (2i, 2i+1): C = (c_0, c_0, c_1, c_1, ...), S = (-s_0, s_0, -s_1, s_1, ...), swap flips each pair;
    halves (i, i + d/2):    C = (c, c),                     S = (-s, s),                swap = roll by d/2.
    Pair i's first coordinate is x_a c_i + x_b (-s_i) = x_a c_i - x_b s_i and its second x_b c_i + x_a s_i:
    the same products and sums as :func:`rotate_pairs`, so the same numbers bit for bit.
    """

    #: Positions whose C and S a table computes at once; a decode step then reads its row from them.
    CHUNK = 1024

    def __init__(self) -> None:
        self._last: tuple | None = None  # the last call's positions and its C, S by pairing
        self._chunks: dict[bool, tuple] = {}  # pairing -> (theta, dtype, device, first position, C, S)
        self._span: tuple[torch.Tensor, int] | None = None  # the last positions() made, and its first position

    def positions(self, start: int, s: int, device: torch.device | str | None = None) -> torch.Tensor:
        """``torch.arange(start, start + s)``: the positions of s tokens following ``start`` earlier ones, as a
        layer's forward call makes them. The table remembers that they run start, start + 1, ..., so rotations
        at them take rows start.. of its chunk as a slice (a view), without reading the tensor back to find
        them: a decode step's rotations then launch no gather."""
        check_non_negative_int("start", start)
        check_non_negative_int("s", s)
        positions = torch.arange(start, start + s, device=device)
        self._span = (positions, start)
        return positions

    def _lookup(self, positions: torch.Tensor, theta: torch.Tensor, dtype: torch.dtype, device: torch.device,
                interleaved: bool) -> tuple[torch.Tensor, torch.Tensor]:
        """C and S (s, 1, d) at ``positions``, read from the chunk of :attr:`CHUNK` positions that holds them
        (computed anew, from the lowest of them, when none does): decode steps at positions t, t + 1, ...
        compute cos and sin once per chunk. Each row is cos and sin of position x theta in float64, rounded
        to ``dtype``: the same numbers whichever chunk holds them."""
        if positions.numel() == 0:  # no token: nothing to rotate
            empty = torch.empty(0, 1, 2 * theta.shape[0], dtype=dtype, device=device)
            return empty, empty
        span = self._span
        consecutive = span is not None and span[0] is positions  # made by positions(): lo, lo + 1, ..., hi
        lo, hi = (span[1], span[1] + positions.shape[0] - 1) if consecutive else (int(v) for v in positions.aminmax())
        chunk = self._chunks.get(interleaved)
        if (chunk is None or chunk[0] is not theta or chunk[1] != dtype or chunk[2] != device or lo < chunk[3]
                or hi >= chunk[3] + chunk[4].shape[0]):
            n = max(self.CHUNK, hi - lo + 1)
            angles = torch.arange(lo, lo + n, dtype=torch.float64)[:, None] * theta  # (n, d / 2)
            cos = angles.cos().to(device=device, dtype=dtype)
            sin = angles.sin().to(device=device, dtype=dtype)
            if interleaved:  # (c_0, c_0, c_1, c_1, ...), (-s_0, s_0, -s_1, s_1, ...)
                C, S = torch.stack([cos, cos], dim=-1).flatten(-2), torch.stack([-sin, sin], dim=-1).flatten(-2)
            else:  # (c, c), (-s, s)
                C, S = torch.cat([cos, cos], dim=-1), torch.cat([-sin, sin], dim=-1)
            chunk = self._chunks[interleaved] = (theta, dtype, device, lo, C[:, None], S[:, None])  # (n, 1, d)
        if consecutive:  # rows lo - first .. hi - first: a slice of the chunk
            return chunk[4].narrow(0, lo - chunk[3], hi - lo + 1), chunk[5].narrow(0, lo - chunk[3], hi - lo + 1)
        rows = (positions - chunk[3]).to(device)
        return chunk[4].index_select(0, rows), chunk[5].index_select(0, rows)

    def rotate(self, x: torch.Tensor, positions: torch.Tensor, theta: torch.Tensor, interleaved: bool,
               amplitude: float = 1.0) -> torch.Tensor:
        """RoPE of x (b, s, d) or (b, s, heads, d) at positions (s,): pair i rotated by positions * theta_i
        (theta float64, (d / 2,)), paired interleaved (2i, 2i+1) or in halves (i, i + d/2), times
        ``amplitude`` when it is not 1 -> x's shape."""
        if not isinstance(x, torch.Tensor) or x.dim() not in (3, 4) or not x.is_floating_point():
            raise ValueError(f"x must be a floating tensor (b, s, d) or (b, s, heads, d), got "
                             f"{tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__}")
        if not isinstance(theta, torch.Tensor) or theta.dim() != 1 or x.shape[-1] != 2 * theta.shape[0]:
            raise ValueError(f"theta must hold d/2 = {x.shape[-1] / 2:g} frequencies for x's last axis, got "
                             f"{tuple(theta.shape) if isinstance(theta, torch.Tensor) else type(theta).__name__}")
        if not isinstance(positions, torch.Tensor) or positions.shape != (x.shape[1],):
            raise ValueError(f"positions must be a tensor of shape (s,) = ({x.shape[1]},), one per token of x")
        last = self._last
        if not (last is not None and last[0] is positions and last[1] is theta and last[2] == x.dtype
                and last[3] == x.device):
            last = self._last = (positions, theta, x.dtype, x.device, {})
        tables = last[4]
        if interleaved not in tables:
            tables[interleaved] = self._lookup(positions, theta, x.dtype, x.device, interleaved)
        C, S = tables[interleaved]  # (s, 1, d): broadcast over the heads of (b, s, heads, d)
        if x.dim() == 3:  # (b, s, d)
            C, S = C[:, 0], S[:, 0]
        if interleaved:
            swapped = x.unflatten(-1, (-1, 2)).flip(-1).flatten(-2)  # (x_1, x_0, x_3, x_2, ...)
        else:
            swapped = x.roll(x.shape[-1] // 2, dims=-1)  # (x_b, x_a)
        out = x * C + swapped * S
        return out if amplitude == 1.0 else out * amplitude


def interleaved_to_halves(d: int) -> torch.Tensor:
    """Permutation p with apply_rope(x[..., p]) == apply_rope(x, interleaved=True)[..., p].

    p = [0, 2, 4, ..., d-2, 1, 3, ..., d-1] moves interleaved pair (2i, 2i+1) to halves pair (i, i+d/2).
    This is the permutation that converts DeepSeek's interleaved checkpoints to Hugging Face's layout.
    """
    check_positive_int("d", d)
    check_even("d", d)
    return torch.cat([torch.arange(0, d, 2), torch.arange(1, d, 2)])


def rotation_matrix(position: int, head_dim: int, base: float = 10000.0,
                    interleaved: bool = False) -> torch.Tensor:
    """The (d, d) orthogonal matrix R_m that apply_rope multiplies by, for plotting and checks (float64)."""
    check_non_negative_int("position", position)
    check_positive_int("head_dim", head_dim)
    check_even("head_dim", head_dim)
    eye = torch.eye(head_dim, dtype=torch.float64)
    # Row r of the result is R_m applied to basis vector e_r, so transpose to get R_m itself.
    return apply_rope(eye, torch.full((head_dim,), position), base, interleaved).T
