"""The fused index-score kernel (:mod:`attnlab.fused`) computes what the matmul path computes.

- it is built wherever a C compiler is present (the course's install has one), and says why not otherwise;
- I_s = sum_j w_j ReLU(q_j · k_s) * scale against a float64 reference, on random shapes: batches, key counts,
  head counts that are not a multiple of four, d^I from 16 to 128, cache views with spare rows;
- :func:`attnlab.dsa.index_scores` hands it exactly the decode steps it can take, and a DSA decode step selects
  the same tokens and returns the same output with it and without it;
- its other builds (one version for the compiler's default target, GCC 11's shuffle builtin) agree with it;
- a compiler that fails, or ``ATTNLAB_FUSED=0``, leaves the matmul path in place; a read-only cache moves
  the build to a temporary directory.
"""

from __future__ import annotations

import ctypes
import shutil
from pathlib import Path

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from attnlab import dsa, fused
from attnlab.dsa import DeepSeekSparseAttention, IndexerConfig
from attnlab.kv_cache import LayerCache
from attnlab.mla import MLAConfig

F64 = torch.float64
seeds = st.integers(0, 2**31 - 1)
needs_kernel = pytest.mark.skipif(fused._compiler() is None, reason="no C compiler on this machine")


def reference(q: torch.Tensor, w: torch.Tensor, k: torch.Tensor, scale: float) -> torch.Tensor:
    """Equation 1 in float64, one head at a time: (b, 1, h, d), (b, 1, h), (b, n, d) -> (b, 1, n)."""
    q, w, k = q.to(F64), w.to(F64), k.to(F64)
    total = torch.zeros(k.shape[0], 1, k.shape[1], dtype=F64)
    for j in range(q.shape[2]):
        dots = torch.einsum("bd,bnd->bn", q[:, 0, j], k)  # q_j · k_s
        total[:, 0] += w[:, 0, j, None] * dots.clamp_min(0.0)
    return total * scale


@pytest.fixture
def restore_kernel():
    """Tests that rebuild or switch off the kernel put the process's kernel back afterwards."""
    yield
    fused._load(reload=True)


@needs_kernel
def test_the_kernel_is_built_where_a_compiler_is_present():
    status = fused.kernel_status()
    assert status.available, status.reason
    assert status.library is not None and status.target


@needs_kernel
@settings(max_examples=80, deadline=None)
@given(batch=st.integers(1, 3), n_keys=st.integers(1, 300), n_heads=st.integers(1, 9),
       head_dim=st.sampled_from([16, 32, 48, 64, 128]), spare=st.integers(0, 7), seed=seeds)
def test_fused_scores_equal_equation_1(batch, n_keys, n_heads, head_dim, spare, seed):
    g = torch.Generator().manual_seed(seed)
    q = torch.randn(batch, 1, n_heads, head_dim, generator=g)
    w = torch.randn(batch, 1, n_heads, generator=g)  # negative weights too: DeepSeek's are not constrained
    storage = torch.randn(batch, n_keys + spare, head_dim, generator=g)  # a preallocated cache, spare rows
    k = storage[:, :n_keys]
    scale = head_dim**-0.5
    got = fused.index_scores_fused(q, w, k, scale)
    assert got.shape == (batch, 1, n_keys) and got.dtype == torch.float32
    want = reference(q, w, k, scale)
    # float32 sums of d products: a few units in the last place of the largest term
    bound = 4 * torch.finfo(torch.float32).eps * head_dim * (q.abs().amax() * k.abs().amax() * w.abs().sum() * scale)
    assert (got.to(F64) - want).abs().max() <= bound


@needs_kernel
def test_no_keys_give_no_scores():
    assert fused.index_scores_fused(torch.ones(2, 1, 4, 16), torch.ones(2, 1, 4), torch.ones(2, 0, 16), 0.25).shape == (
        2, 1, 0)


@needs_kernel
def test_relu_zeroes_negative_dots_exactly():
    q = torch.ones(1, 1, 4, 16)
    k = -torch.rand(1, 10, 16)  # every dot product negative
    assert torch.equal(fused.index_scores_fused(q, torch.ones(1, 1, 4), k, 0.25), torch.zeros(1, 1, 10))


@needs_kernel
@pytest.mark.parametrize("n_heads,head_dim", [(4, 64), (1, 16), (6, 32), (64, 128)])
def test_dsa_index_scores_use_the_kernel_for_a_cpu_decode_step(n_heads, head_dim, monkeypatch):
    g = torch.Generator().manual_seed(n_heads)
    q = torch.randn(2, 1, n_heads, head_dim, generator=g)
    w = torch.randn(2, 1, n_heads, generator=g)
    k = torch.randn(2, 50, head_dim, generator=g)
    assert fused._fusable(q, w, k)
    calls = []
    monkeypatch.setattr(dsa, "_index_scores_fused", lambda *a: calls.append(a) or fused._index_scores_fused(*a))
    got = dsa.index_scores(q, w, k, head_dim**-0.5)
    assert len(calls) == 1
    torch.testing.assert_close(got.to(F64), reference(q, w, k, head_dim**-0.5), rtol=1e-5, atol=1e-5)


@needs_kernel
def test_dsa_index_scores_keep_the_matmuls_where_the_kernel_does_not_apply(monkeypatch):
    monkeypatch.setattr(dsa, "_index_scores_fused", lambda *a: pytest.fail("the kernel was called"))
    g = torch.Generator().manual_seed(0)
    q, w, k = torch.randn(1, 1, 4, 64, generator=g), torch.randn(1, 1, 4, generator=g), torch.randn(1, 9, 64)
    others = {
        "float64": (q.double(), w.double(), k.double()),
        "prefill": (q.expand(1, 3, 4, 64), w.expand(1, 3, 4), k),
        "d^I = 8": (q[..., :8], w, k[..., :8].contiguous()),
        "keys not in rows": (q, w, k.mT.contiguous().mT),
        "a gradient wanted": (q.clone().requires_grad_(), w, k),
    }
    for name, (qq, ww, kk) in others.items():
        assert not fused._fusable(qq, ww, kk), name
        dsa.index_scores(qq, ww, kk, 0.125)
    with torch.no_grad():  # no gradient is wanted inside no_grad: the kernel takes it
        assert fused._fusable(q.clone().requires_grad_(), w, k)


@needs_kernel
def test_a_dsa_decode_step_selects_the_same_tokens_with_and_without_the_kernel(restore_kernel):
    """The benchmark's layer shape, scaled down: one decode step after 600 cached tokens, top-k 64."""
    mla = MLAConfig(d_model=128, n_heads=4, kv_lora_rank=64, qk_nope_head_dim=32, qk_rope_head_dim=16,
                    v_head_dim=32, q_lora_rank=None)
    index = IndexerConfig(d_model=128, q_lora_rank=None, index_n_heads=4, index_head_dim=64, rope_head_dim=16,
                          index_topk=64)
    torch.manual_seed(0)
    layer = DeepSeekSparseAttention(mla, index).eval()
    x = torch.randn(1, 601, 128)
    outputs = []
    for switch in ("1", "0"):
        with pytest.MonkeyPatch.context() as mp:
            mp.setenv(fused.ENV_SWITCH, switch)
            assert fused._load(reload=True)[0].available == (switch == "1")
            cache = LayerCache(seq_dim=1, capacity=700)
            with torch.no_grad():
                layer(x[:, :600], cache=cache)
                outputs.append(layer(x[:, 600:], cache=cache))
    fast, plain = outputs
    assert torch.equal(fast.selection.indices, plain.selection.indices)
    torch.testing.assert_close(fast.selection.scores, plain.selection.scores, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(fast.output, plain.output, rtol=1e-5, atol=1e-6)


def test_a_failing_compiler_leaves_the_matmul_path(tmp_path, restore_kernel):
    status, lib = fused._load(compiler="/bin/false", cache=tmp_path, reload=True)
    assert not status.available and lib is None
    assert "failed" in status.reason and "/bin/false" in status.reason
    q, w, k = torch.ones(1, 1, 4, 16), torch.ones(1, 1, 4), torch.ones(1, 3, 16)
    assert not fused._fusable(q, w, k)
    torch.testing.assert_close(dsa.index_scores(q, w, k, 0.25), torch.full((1, 1, 3), 16.0))
    with pytest.raises(ValueError, match="not available: building the kernel"):
        fused.index_scores_fused(q, w, k, 0.25)


def test_the_switch_turns_the_kernel_off(monkeypatch, restore_kernel):
    monkeypatch.setenv(fused.ENV_SWITCH, "0")
    status, lib = fused._load(reload=True)
    assert not status.available and lib is None and "ATTNLAB_FUSED=0" in status.reason


@needs_kernel
def test_a_built_kernel_is_reused_from_the_cache(tmp_path, restore_kernel):
    first = fused._load(cache=tmp_path, reload=True)[0]
    second = fused._load(cache=tmp_path, reload=True)[0]
    assert first.reason.startswith("compiled") and second.reason.startswith("cached")
    assert first.library == second.library and len(list(tmp_path.iterdir())) == 1


@needs_kernel
@pytest.mark.parametrize("extra", [("-DATTNLAB_NO_CLONES",), ("-DATTNLAB_GNU_SHUFFLE",),
                                   ("-DATTNLAB_GNU_SHUFFLE", "-DATTNLAB_NO_CLONES")],
                         ids=["default target", "GCC 11 shuffle", "both"])
def test_every_build_of_the_source_scores_alike(extra, tmp_path):
    """What a machine without AVX2 or with an older GCC would build, against the process's own kernel."""
    library = tmp_path / "variant.so"
    assert fused._compile(fused._compiler(), library, extra) is None
    lib = fused._bind(ctypes.CDLL(str(library)))
    g = torch.Generator().manual_seed(len(extra))
    q, w, k = torch.randn(2, 1, 6, 48, generator=g), torch.randn(2, 1, 6, generator=g), torch.randn(2, 77, 48)
    variant, own = fused._index_scores_fused(q, w, k, lib), fused._index_scores_fused(q, w, k)
    torch.testing.assert_close(variant, own, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(variant.to(F64), reference(q, w, k, 1.0), rtol=1e-5, atol=1e-5)


@needs_kernel
def test_a_cache_it_may_not_write_moves_the_build_to_a_temporary_directory(tmp_path, monkeypatch, restore_kernel):
    locked, build = tmp_path / "locked", fused._build

    def refuse(compiler, cache):  # a read-only home (root may write anywhere, so the refusal is simulated)
        if cache == locked:
            raise PermissionError(13, "Permission denied", str(cache))
        return build(compiler, cache)

    monkeypatch.setattr(fused, "_build", refuse)
    status = fused._load(cache=locked, reload=True)[0]
    assert status.available, status.reason
    built_in = Path(status.library).parent
    assert built_in.name.startswith("attnlab-") and not locked.exists()
    shutil.rmtree(built_in)


@needs_kernel
def test_equal_keys_score_exactly_alike_so_ties_go_to_the_earlier_position():
    """Ties included: the kernel computes a key's score from the key alone, so equal keys tie exactly and
    dsa.topk_indices keeps the earlier of them, as the stable sort does."""
    g = torch.Generator().manual_seed(7)
    k = torch.randn(1, 40, 64, generator=g)
    k[:, 20:30] = k[:, 0:10]  # ten keys cached twice
    q, w = torch.randn(1, 1, 4, 64, generator=g), torch.rand(1, 1, 4, generator=g)
    scores = fused.index_scores_fused(q, w, k, 0.125)
    assert torch.equal(scores[..., 20:30], scores[..., 0:10])
    order = torch.sort(scores, dim=-1, descending=True, stable=True).indices[..., :15]
    assert torch.equal(dsa.topk_indices(scores, 15), order)
    twins = [i for i in order[0, 0].tolist() if i < 10 and i + 20 in order[0, 0].tolist()]
    assert twins and all(order[0, 0].tolist().index(i) < order[0, 0].tolist().index(i + 20) for i in twins)


@needs_kernel
def test_a_nan_key_scores_nan_as_with_the_matmuls():
    """ReLU(NaN) is NaN in PyTorch; the kernel keeps it, so dsa.topk_indices sees the same scores either way."""
    q, w, k = torch.ones(1, 1, 4, 16), torch.ones(1, 1, 4), torch.ones(1, 5, 16)
    k[0, 2, 3] = float("nan")
    fast, plain = fused.index_scores_fused(q, w, k, 0.25), dsa._index_scores_matmul(q, w, k, 0.25)
    assert torch.isnan(fast[0, 0, 2]) and torch.isnan(plain[0, 0, 2])
    torch.testing.assert_close(fast, plain, equal_nan=True)
