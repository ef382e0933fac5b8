"""Tests for attnlab.rope: relative positions, rotations, the two pairing conventions, argument checks."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from attnlab.rope import (
    RopeTable,
    apply_rope,
    interleaved_to_halves,
    rope_angles,
    rope_frequencies,
    rotate_pairs,
    rotation_matrix,
)

F64 = torch.float64
SETTINGS = settings(max_examples=30, deadline=None)
seeds = st.integers(0, 2**31 - 1)
dims = st.sampled_from([2, 4, 6, 8, 16])
positions = st.integers(0, 2000)
conventions = st.booleans()


def at(x: torch.Tensor, m: int, interleaved: bool, base: float = 10000.0) -> torch.Tensor:
    """Rotate a single vector x (d,) to position m."""
    return apply_rope(x.unsqueeze(0), torch.tensor([m]), base, interleaved)[0]


@SETTINGS
@given(d=dims, m=positions, n=positions, shift=st.integers(0, 2000), interleaved=conventions, seed=seeds)
def test_score_depends_only_on_relative_position(d, m, n, shift, interleaved, seed):
    gen = torch.Generator().manual_seed(seed)
    q, k = torch.randn(2, d, generator=gen, dtype=F64)
    score = at(q, m, interleaved) @ at(k, n, interleaved)
    shifted = at(q, m + shift, interleaved) @ at(k, n + shift, interleaved)
    torch.testing.assert_close(shifted, score, rtol=1e-9, atol=1e-9)
    # q_m . k_n = q . R_(n-m) k  (rotate only k, by the offset)
    if n >= m:
        torch.testing.assert_close(q @ at(k, n - m, interleaved), score, rtol=1e-9, atol=1e-9)
    else:
        torch.testing.assert_close(at(q, m - n, interleaved) @ k, score, rtol=1e-9, atol=1e-9)


@SETTINGS
@given(d=dims, m=positions, n=positions, interleaved=conventions)
def test_score_of_the_fastest_pair_is_cos_of_the_offset(d, m, n, interleaved):
    """The relative test above would also pass for a rotation that ignores position: rule that out.

    e_0 lies in pair 0, whose frequency is theta_0 = 1, so (R_m e_0) . (R_n e_0) = cos(m - n)."""
    e0 = torch.zeros(d, dtype=F64)
    e0[0] = 1.0
    score = at(e0, m, interleaved) @ at(e0, n, interleaved)
    torch.testing.assert_close(score, torch.tensor(math.cos(m - n), dtype=F64), rtol=0, atol=1e-9)


@SETTINGS
@given(d=dims, batch=st.integers(1, 3), seq=st.integers(1, 6), start=positions, interleaved=conventions,
       seed=seeds)
def test_rotation_preserves_norms(d, batch, seq, start, interleaved, seed):
    x = torch.randn(batch, seq, d, generator=torch.Generator().manual_seed(seed), dtype=F64)
    out = apply_rope(x, torch.arange(start, start + seq), interleaved=interleaved)
    assert out.shape == x.shape and out.dtype == F64
    torch.testing.assert_close(out.norm(dim=-1), x.norm(dim=-1), rtol=1e-12, atol=1e-12)


@SETTINGS
@given(d=dims, m=positions, interleaved=conventions, base=st.sampled_from([100.0, 10000.0, 500000.0]),
       seed=seeds)
def test_rotation_matrix_is_orthogonal_and_matches_apply_rope(d, m, interleaved, base, seed):
    r = rotation_matrix(m, d, base, interleaved)
    assert r.shape == (d, d) and r.dtype == F64
    torch.testing.assert_close(r @ r.T, torch.eye(d, dtype=F64), rtol=0, atol=1e-12)
    torch.testing.assert_close(torch.linalg.det(r), torch.tensor(1.0, dtype=F64))  # a rotation, no reflection
    x = torch.randn(3, d, generator=torch.Generator().manual_seed(seed), dtype=F64)
    rotated = apply_rope(x, torch.full((3,), m), base, interleaved)
    torch.testing.assert_close(rotated, x @ r.T, rtol=1e-12, atol=1e-12)  # each row: R_m x


@SETTINGS
@given(d=dims, m=positions, n=positions, interleaved=conventions)
def test_rotations_compose(d, m, n, interleaved):
    product = rotation_matrix(m, d, interleaved=interleaved) @ rotation_matrix(n, d, interleaved=interleaved)
    torch.testing.assert_close(product, rotation_matrix(m + n, d, interleaved=interleaved), rtol=0, atol=1e-10)


def test_rotation_matrix_by_hand():
    m = 3
    c, s = math.cos(m), math.sin(m)  # theta_0 = 1
    expected = torch.tensor([[c, -s], [s, c]], dtype=F64)
    torch.testing.assert_close(rotation_matrix(m, 2), expected)
    torch.testing.assert_close(rotation_matrix(m, 2, interleaved=True), expected)
    # d = 4, base = 100: theta = (1, 0.1); halves pairs (0, 2) and (1, 3), interleaved pairs (0, 1), (2, 3)
    c1, s1 = math.cos(0.1 * m), math.sin(0.1 * m)
    halves = torch.tensor([[c, 0, -s, 0], [0, c1, 0, -s1], [s, 0, c, 0], [0, s1, 0, c1]], dtype=F64)
    interleaved = torch.tensor([[c, -s, 0, 0], [s, c, 0, 0], [0, 0, c1, -s1], [0, 0, s1, c1]], dtype=F64)
    torch.testing.assert_close(rotation_matrix(m, 4, base=100.0), halves)
    torch.testing.assert_close(rotation_matrix(m, 4, base=100.0, interleaved=True), interleaved)


def test_frequencies_and_angles():
    torch.testing.assert_close(rope_frequencies(8), torch.tensor([1.0, 0.1, 0.01, 0.001], dtype=F64))
    torch.testing.assert_close(rope_frequencies(4, base=100.0), torch.tensor([1.0, 0.1], dtype=F64))
    angles = rope_angles(torch.tensor([[0, 2], [5, 7]]), 4, base=100.0)
    assert angles.shape == (2, 2, 2) and angles.dtype == F64
    torch.testing.assert_close(angles[1, 0], torch.tensor([5.0, 0.5], dtype=F64))


@SETTINGS
@given(d=dims, m=positions, batch=st.integers(1, 2), heads=st.integers(1, 3), seq=st.integers(1, 5),
       seed=seeds)
def test_conventions_differ_by_the_permutation(d, m, batch, heads, seq, seed):
    x = torch.randn(batch, heads, seq, d, generator=torch.Generator().manual_seed(seed), dtype=F64)
    pos = torch.arange(m, m + seq)
    p = interleaved_to_halves(d)
    torch.testing.assert_close(apply_rope(x[..., p], pos), apply_rope(x, pos, interleaved=True)[..., p],
                               rtol=1e-12, atol=1e-12)
    r = rotation_matrix(m, d, interleaved=True)
    torch.testing.assert_close(rotation_matrix(m, d), r[p][:, p], rtol=0, atol=1e-12)  # R_halves = P R_inter P^T


def test_conventions_are_different_layouts():
    """For d >= 4 the two conventions do differ (so the permutation test above is not trivial)."""
    x = torch.randn(1, 8, dtype=F64)
    pos = torch.tensor([5])
    assert not torch.allclose(apply_rope(x, pos), apply_rope(x, pos, interleaved=True))


def test_interleaved_to_halves_permutation():
    assert interleaved_to_halves(8).tolist() == [0, 2, 4, 6, 1, 3, 5, 7]
    assert interleaved_to_halves(2).tolist() == [0, 1]
    with pytest.raises(ValueError, match="d=5 must be even"):
        interleaved_to_halves(5)
    with pytest.raises(ValueError, match="d=0 must be a positive integer"):
        interleaved_to_halves(0)


@pytest.mark.parametrize("interleaved", [False, True])
def test_position_zero_is_identity(interleaved):
    x = torch.randn(2, 3, 4, 8, dtype=F64)
    assert torch.equal(apply_rope(x, torch.zeros(4, dtype=torch.long), interleaved=interleaved), x)
    assert torch.equal(rotation_matrix(0, 8, interleaved=interleaved), torch.eye(8, dtype=F64))


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
def test_output_keeps_the_input_dtype(dtype):
    x = torch.randn(2, 5, 8, dtype=F64)
    pos = torch.arange(100, 105)
    out = apply_rope(x.to(dtype), pos)
    assert out.dtype == dtype
    tol = 1e-5 if dtype == torch.float32 else 3e-2
    torch.testing.assert_close(out.double(), apply_rope(x, pos), rtol=tol, atol=tol)


def test_positions_per_batch_row():
    """positions may be (batch, seq), e.g. sequences that start at different offsets."""
    x = torch.randn(2, 3, 4, dtype=F64)
    pos = torch.tensor([[0, 1, 2], [7, 8, 9]])
    out = apply_rope(x, pos)
    torch.testing.assert_close(out[1], apply_rope(x[1], torch.tensor([7, 8, 9])))
    torch.testing.assert_close(out[0], apply_rope(x[0], torch.tensor([0, 1, 2])))


def test_errors():
    x = torch.randn(2, 4, 8)
    with pytest.raises(ValueError, match=r"x.shape\[-1\]=7 must be even"):
        apply_rope(torch.randn(2, 4, 7), torch.arange(4))
    with pytest.raises(ValueError, match="positions must be an integer tensor, got torch.float32"):
        apply_rope(x, torch.arange(4.0))
    with pytest.raises(ValueError, match="positions must be an integer tensor, got torch.bool"):
        apply_rope(x, torch.ones(4, dtype=torch.bool))
    with pytest.raises(ValueError, match="positions must be >= 0"):
        apply_rope(x, torch.tensor([0, 1, -1, 2]))
    with pytest.raises(ValueError, match="shapes do not broadcast together"):
        apply_rope(x, torch.arange(5))
    with pytest.raises(ValueError, match="base=1.0 must be a finite number > 1"):
        apply_rope(x, torch.arange(4), base=1.0)
    with pytest.raises(ValueError, match="head_dim=3 must be even"):
        rope_frequencies(3)
    with pytest.raises(ValueError, match="head_dim=0 must be a positive integer"):
        rope_frequencies(0)
    with pytest.raises(ValueError, match="position=-1 must be a non-negative integer"):
        rotation_matrix(-1, 4)
    with pytest.raises(ValueError, match="position=1.5 must be a non-negative integer"):
        rotation_matrix(1.5, 4)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
@pytest.mark.parametrize("interleaved", [True, False])
@pytest.mark.parametrize("shape", [(2, 5, 32), (2, 5, 3, 32), (1, 1, 4, 8)])
def test_rope_table_equals_rotate_pairs_bit_for_bit(dtype, interleaved, shape):
    """RopeTable's x * C + swap(x) * S computes the same products and sums as rotate_pairs, so the same bits;
    a second rotation at the same positions reuses the table and stays equal."""
    gen = torch.Generator().manual_seed(len(shape) + shape[-1])
    x = torch.randn(*shape, generator=gen).to(dtype)
    positions = torch.arange(7, 7 + shape[1])
    theta = 10000.0 ** (-torch.arange(shape[-1] // 2, dtype=torch.float64) / (shape[-1] // 2))
    angles = positions.double()[:, None] * theta
    expected = rotate_pairs(x, angles[:, None, :] if x.dim() == 4 else angles, interleaved)
    table = RopeTable()
    assert torch.equal(table.rotate(x, positions, theta, interleaved), expected)
    assert torch.equal(table.rotate(x, positions, theta, interleaved), expected)  # from the kept table
    assert torch.equal(table.rotate(x, positions, theta, interleaved, amplitude=0.5), expected * 0.5)


@pytest.mark.parametrize("interleaved", [True, False])
def test_rope_table_positions_slice_the_table_and_give_the_same_bits(interleaved, monkeypatch):
    """Positions made by the table's positions() run start, start + 1, ...: a rotation at them slices rows of
    the table (no aminmax, no index_select) and equals rotate_pairs bit for bit, for decode steps, a prefill,
    a jump back and a span past a chunk; the same values in a tensor of one's own take the general path."""
    theta = 10000.0 ** (-torch.arange(8, dtype=torch.float64) / 8)
    table, plain = RopeTable(), RopeTable()
    gen = torch.Generator().manual_seed(1)
    for start, s in [(0, 5), (5, 1), (6, 1), (1023, 1), (1024, 1), (2, 3), (4000, 1500)]:
        x = torch.randn(1, s, 2, 16, generator=gen)
        expected = rotate_pairs(x, (torch.arange(start, start + s).double()[:, None] * theta)[:, None, :], interleaved)
        positions = table.positions(start, s)
        assert torch.equal(positions, torch.arange(start, start + s))
        with monkeypatch.context() as patched:  # the span is read from Python ints and sliced, not gathered
            patched.setattr(torch.Tensor, "aminmax", lambda *a, **k: pytest.fail("aminmax on a span"))
            patched.setattr(torch.Tensor, "index_select", lambda *a, **k: pytest.fail("index_select on a span"))
            got = table.rotate(x, positions, theta, interleaved)
        assert torch.equal(got, expected), (start, s)
        assert torch.equal(plain.rotate(x, torch.arange(start, start + s), theta, interleaved), expected)


def test_rope_table_reads_decode_steps_from_chunks_that_give_the_same_numbers():
    """Positions one after another (decode steps), a jump back, a span longer than a chunk and no position at
    all: every rotation equals rotate_pairs bit for bit, whichever chunk it was read from."""
    theta = 10000.0 ** (-torch.arange(8, dtype=torch.float64) / 8)
    table = RopeTable()
    gen = torch.Generator().manual_seed(0)
    steps = [torch.arange(p, p + 1) for p in (0, 1, 2, 1023, 1024, 5000, 3)] + [torch.arange(10, 10 + 2500)]
    for positions in [*steps, torch.arange(0)]:
        x = torch.randn(2, positions.numel(), 3, 16, generator=gen)
        for interleaved in (True, False):
            expected = rotate_pairs(x, (positions.double()[:, None] * theta)[:, None, :], interleaved)
            assert torch.equal(table.rotate(x, positions, theta, interleaved), expected), (positions, interleaved)
