"""Block-sparse selection (attnlab.block_sparse): every method equals dense attention once its budget covers
every token, selection is causal, block masks are the blocks chosen, Quest's bound bounds, NSA's three branches
reduce to their plain forms."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from attnlab import block_sparse as bs
from attnlab import costs
from attnlab.attention import attention_matrix, softmax
from attnlab.gqa import grouped_attention


def qkv(b: int, h: int, h_kv: int, n: int, d: int, seed: int = 0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(b, h, n, d, generator=g, dtype=dtype), torch.randn(b, h_kv, n, d, generator=g, dtype=dtype),
            torch.randn(b, h_kv, n, d, generator=g, dtype=dtype))


@settings(max_examples=25, deadline=None)
@given(n=st.integers(1, 40), block_size=st.sampled_from([1, 2, 3, 4, 8]), group=st.sampled_from([1, 2]),
       method=st.sampled_from(bs.METHODS), seed=st.integers(0, 100))
def test_full_budget_equals_dense_attention(n, block_size, group, method, seed):
    q, k, v = qkv(1, 2 * group, 2, n, 4, seed)
    budget = n + 3 * block_size  # covers every token (and NSA's forced blocks)
    mask = bs.select(method, q, k, budget, block_size=block_size, window=1)
    out, _ = bs.sparse_attention(q, k, v, mask)
    dense, _ = grouped_attention(q, k, v, causal=True)
    torch.testing.assert_close(out, dense, rtol=1e-12, atol=1e-12)
    causal = torch.ones(n, n, dtype=torch.bool).tril()
    assert torch.equal(mask, causal.expand_as(mask))


@settings(max_examples=40, deadline=None)
@given(n=st.integers(2, 48), block_size=st.sampled_from([2, 3, 4, 8]), method=st.sampled_from(bs.METHODS),
       top=st.integers(3, 6), seed=st.integers(0, 100))
def test_selection_is_causal_and_within_budget(n, block_size, method, top, seed):
    q, k, _ = qkv(2, 4, 2, n, 4, seed)
    budget = top * block_size
    mask = bs.select(method, q, k, budget, block_size=block_size, window=1)
    future = ~torch.ones(n, n, dtype=torch.bool).tril()
    assert not (mask & future).any(), "a query selected a future token"
    assert (mask.sum(-1) <= budget).all()
    assert mask.diagonal(dim1=-2, dim2=-1).all() or method in ("token", "dsa", "quest"), "the query's own token"
    # a query that sees at most the budget keeps everything it sees (every method but the block ones, whose
    # last block may hold fewer tokens than B, and DSA's shared set, which is exact too)
    short = torch.arange(n) < budget
    if method not in bs.BLOCK_METHODS:
        assert torch.equal(mask[..., short, :], (~future)[short].expand_as(mask[..., short, :]))


@settings(max_examples=40, deadline=None)
@given(n_q=st.integers(0, 30), extra=st.integers(0, 20), block_size=st.integers(1, 9), top=st.integers(1, 5),
       seed=st.integers(0, 100))
def test_block_masks_hold_exactly_the_chosen_blocks(n_q, extra, block_size, top, seed):
    n_k = n_q + extra
    if n_k == 0:
        return
    g = torch.Generator().manual_seed(seed)
    n_b = bs.n_blocks(n_k, block_size)
    assert n_b * block_size >= n_k > (n_b - 1) * block_size
    visible = bs.causal_block_mask(n_q, n_k, block_size)
    scores = torch.randn(3, n_q, n_b, generator=g, dtype=torch.float64).masked_fill(~visible, float("-inf"))
    chosen = bs.select_blocks(scores, top, block_size, n_k)
    mask = bs.block_token_mask(chosen, n_k, block_size)
    for i in range(n_q):
        p = n_k - n_q + i
        blocks = {int(j) for j in chosen[0, i] if j >= 0}
        assert len(blocks) == min(top, p // block_size + 1), "top-n of the visible blocks"
        assert all(j <= p // block_size for j in blocks), "a future block was chosen"
        best = scores[0, i, : p // block_size + 1].argsort(descending=True, stable=True)[:top].tolist()
        assert blocks == set(best)
        want = [s // block_size in blocks and s <= p for s in range(n_k)]
        assert mask[0, i].tolist() == want


def test_moba_always_routes_to_the_current_block_and_never_the_future():
    q, k, _ = qkv(1, 2, 1, 23, 4, 3)
    s = bs.moba_scores(q, k, 5)
    for p in range(23):
        assert s[0, 0, p, p // 5] == float("inf")
        assert torch.isneginf(s[0, 0, p, p // 5 + 1:]).all()
        assert torch.isfinite(s[0, 0, p, : p // 5]).all()
    pooled = bs.pool_keys(k, 5)
    torch.testing.assert_close(pooled[0, 0, 4], k[0, 0, 20:23].mean(0))  # the partial last block: its 3 tokens


@settings(max_examples=40, deadline=None)
@given(n=st.integers(1, 40), block_size=st.integers(1, 9), seed=st.integers(0, 1000))
def test_quest_bound_is_an_upper_bound(n, block_size, seed):
    q, k, _ = qkv(2, 3, 3, n, 6, seed)
    m, M = bs.quest_bounds(k, block_size)
    u = bs.quest_upper_bound(q, m, M)  # (b, h, n, n_b)
    dots = torch.einsum("bhqd,bhsd->bhqs", q, k)
    block = torch.arange(n) // block_size
    best_in_block = torch.full_like(u, float("-inf")).scatter_reduce(-1, block.expand_as(dots), dots, "amax")
    assert (u >= best_in_block - 1e-12).all()
    # and the causal scores bound every token the query may see in its own, partial block
    causal = bs.quest_scores(q, k, block_size)  # bounds on the unscaled q · k
    for p in range(n):
        c = p // block_size
        assert (causal[..., p, c] >= dots[..., p, c * block_size: p + 1].amax(-1) - 1e-12).all()


def test_quest_bound_is_tight_for_a_one_token_block():
    q, k, _ = qkv(1, 1, 1, 6, 4, 5)
    m, M = bs.quest_bounds(k, 1)
    torch.testing.assert_close(bs.quest_upper_bound(q, m, M), q @ k.mT)


def test_nsa_group_shares_one_selection_and_forces_initial_and_local_blocks():
    q, k, _ = qkv(1, 4, 2, 64, 8, 7)
    mask = bs.select("nsa", q, k, 4 * 8, block_size=8)
    assert torch.equal(mask[:, 0], mask[:, 1]) and torch.equal(mask[:, 2], mask[:, 3])
    for p in range(64):
        assert mask[0, 0, p, 0] and mask[0, 0, p, p]  # the initial block and the query's own
        if p >= 8:
            assert mask[0, 0, p, (p // 8 - 1) * 8]  # the local block before
    assert (bs.group_reads(mask, 2) == mask[:, ::2].sum(-1)).all()


def test_nsa_branches_reduce_to_their_plain_forms():
    q, k, v = qkv(1, 2, 1, 20, 4, 9)
    dense, _ = grouped_attention(q, k, v, causal=True)
    one = torch.zeros(1, 2, 20, 3, dtype=torch.float64)
    slc, win = one.clone(), one.clone()
    slc[..., 1], win[..., 2] = 1.0, 1.0
    torch.testing.assert_close(bs.nsa_attention(q, k, v, slc, 4, top_n=5, window=3), dense, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(bs.nsa_attention(q, k, v, win, 4, top_n=3, window=20), dense, rtol=1e-12, atol=1e-12)
    cmp = one.clone()
    cmp[..., 0] = 1.0
    out = bs.nsa_attention(q, k, v, cmp, 4, top_n=3, window=3)
    assert (out[:, :, :3] == 0).all()  # no complete block yet: the compressed branch reads nothing
    k_bar, v_bar = bs.pool_keys(k, 4)[:, :, :2], bs.pool_keys(v, 4)[:, :, :2]  # query 10: blocks 0, 1
    want, _ = attention_matrix(q[:, :, 10:11], k_bar.expand(1, 2, 2, 4), v_bar.expand(1, 2, 2, 4))
    torch.testing.assert_close(out[:, :, 10:11], want)


def test_h2o_keeps_recent_tokens_and_evicts_for_good():
    q, k, _ = qkv(1, 2, 2, 30, 4, 11)
    mask = bs.h2o_mask(bs.dense_scores(q, k), top_k=8, recent=4)
    assert (mask.sum(-1) == torch.arange(1, 31).clamp(max=8)).all()
    for p in range(1, 30):
        assert mask[..., p, max(0, p - 3): p + 1].all()  # the recent window
        evicted = ~mask[..., p, :p] & mask[..., p - 1, :p]
        assert not (evicted & mask[..., p:, :p].any(-2)).any(), "an evicted token came back"


def test_snapkv_keeps_window_and_votes():
    n, w = 24, 4
    weights = softmax(bs.dense_scores(*qkv(1, 1, 1, n, 4, 13)[:2]))
    mask = bs.snapkv_mask(weights, top_k=10, window=w, kernel=1)
    p = 20
    votes = weights[0, 0, p - w + 1: p + 1, : p - w + 1].sum(0)
    top = set(votes.argsort(descending=True, stable=True)[:10 - w].tolist())
    assert set(mask[0, 0, p].nonzero().flatten().tolist()) == top | set(range(p - w + 1, p + 1))


def test_recall_and_segments():
    weights = torch.tensor([[0.5, 0.25, 0.25, 0.0]], dtype=torch.float64)
    mask = torch.tensor([[True, False, True, True]])
    assert float(bs.attention_recall(weights, mask)) == 0.75
    assert int(bs.memory_segments(mask)) == 2
    assert int(bs.memory_segments(torch.zeros(5, dtype=torch.bool))) == 0


def test_token_topk_holds_the_most_mass_of_any_set_of_that_size():
    q, k, _ = qkv(1, 4, 2, 64, 8, 17)
    weights = softmax(bs.dense_scores(q, k))
    best = bs.attention_recall(weights, bs.select("token", q, k, 16))
    for method in ("dsa", "moba", "quest", "nsa", "h2o", "snapkv"):
        other = bs.attention_recall(weights, bs.select(method, q, k, 16, block_size=4, window=2))
        assert (best >= other - 1e-12).all(), method


def test_select_refuses_budgets_that_hold_too_few_blocks():
    q, k, _ = qkv(1, 2, 1, 16, 4)
    with pytest.raises(ValueError, match="budget"):
        bs.select("nsa", q, k, 8, block_size=4)  # 2 blocks < 1 initial + 2 local
    with pytest.raises(ValueError, match="budget"):
        bs.select("moba", q, k, 3, block_size=4)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_runs_in_low_precision(dtype):
    q, k, v = qkv(1, 4, 2, 40, 8, 19, dtype=dtype)
    for method in bs.METHODS:
        mask = bs.select(method, q, k, 24, block_size=8, window=4)
        out, _ = bs.sparse_attention(q, k, v, mask)
        assert out.dtype == dtype and torch.isfinite(out).all()


def test_read_costs():
    read = costs.selection_read(2048, 64, 656)
    assert read == {"tokens": 2048, "segments": 32, "bytes": 2048 * 656, "bytes_per_segment": 64 * 656}
    assert costs.selection_read(2048, 1, 656)["segments"] == 2048
    assert costs.selection_score_macs(4096, 64, 128, 8, "mean") == 64 * 128 * 8
    assert costs.selection_score_macs(4096, 64, 128, 8, "bounds") == 2 * 64 * 128 * 8
    assert costs.selection_score_macs(4096, 1, 128, 8, "token") == 4096 * 128 * 8


def _solutions():
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "notebooks" / "solutions" / "ch19.py"
    spec = importlib.util.spec_from_file_location("solutions_ch19", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_ch19_solutions_pass_and_slips_are_named():
    from attnlab.exercises import ch19

    sol = _solutions()
    assert ch19.check_block_mask(sol.answer_block_mask).startswith("✓")
    assert ch19.check_quest_bound(sol.answer_bound).startswith("✓")
    assert ch19.check_recall_prediction(sol.answer_more, sol.answer_ever).startswith("✓")
    assert sol.answer_bound == ch19.expected_quest_bound()
    assert torch.equal(torch.tensor(sol.answer_block_mask), ch19.expected_block_mask())
    for reminder in (ch19.check_block_mask(None), ch19.check_quest_bound(None), ch19.check_recall_prediction(None, 1)):
        assert "not attempted" in reminder
    p, j = torch.arange(10)[:, None], torch.arange(3)
    with pytest.raises(AssertionError, match="complete blocks only"):
        ch19.check_block_mask(j * 4 + 3 <= p)
    with pytest.raises(AssertionError, match="off by one"):
        ch19.check_block_mask(j * 4 < p)
    with pytest.raises(AssertionError, match="future"):
        ch19.check_block_mask(torch.ones(10, 3, dtype=torch.bool))
    with pytest.raises(AssertionError, match="SMALLEST"):
        ch19.check_quest_bound(1.0)  # q · M
    with pytest.raises(AssertionError, match="exact best"):
        ch19.check_quest_bound(3.0)
    with pytest.raises(AssertionError, match="never"):
        ch19.check_recall_prediction("token", True)
    ran = ch19.run_recall()
    assert ran["token"] >= max(ran["moba"], ran["quest"], ran["nsa"])


def test_explorer_offers_only_valid_budgets_and_draws():
    from attnlab.interactive import block_sparse as explorer

    for method in bs.METHODS:
        for block_size in explorer.BLOCK_SIZES:
            for budget in explorer.valid_budgets(method, block_size):
                q, k, _ = qkv(1, 2, 1, 140, 4)
                bs.select(method, q, k, budget, block_size)  # every offered choice runs
    assert explorer.valid_budgets("nsa", 32) == (96, 128)
    widget = explorer.block_selection_explorer()
    assert widget.image.value[:8] == b"\x89PNG\r\n\x1a\n" and "attention held" in widget.table.value
    widget.method.value, widget.block_size.value = "nsa", 32
    assert widget.budget.value in (96, 128)
    assert "NSA" in widget.table.value


def test_measure_selections_counts_what_the_masks_hold():
    q, k, v = qkv(2, 4, 2, 48, 8, 23)
    ran = {(m.method, m.budget): m for m in bs.measure_selections(q, k, v, budgets=(12, 24), block_size=4, window=2)}
    assert len(ran) == 2 * len(bs.METHODS)
    for budget in (12, 24):
        best = ran[("token", budget)]
        assert all(best.recall >= m.recall - 1e-6 for (_, b), m in ran.items() if b == budget)
        assert ran[("dsa", budget)].group_tokens == budget  # one set for every head: a KV head delivers it once
        assert ran[("nsa", budget)].group_tokens == ran[("nsa", budget)].tokens  # shared by the group
        assert ran[("moba", budget)].segments <= budget // 4 and best.tokens == budget
    mask = bs.select("moba", q, k, 12, 4)
    weights = softmax(bs.dense_scores(q, k))
    assert abs(ran[("moba", 12)].recall - float(bs.attention_recall(weights, mask)[..., 12:].mean())) < 1e-9


# --- the real block-sparse decode step: BlockSparseCache, quest_decode_attention, QuestAttention --------------


def _filled(k: torch.Tensor, v: torch.Tensor, block_size: int, split: int) -> bs.BlockSparseCache:
    """A cache holding k, v: the first ``split`` tokens in one update, the rest one at a time (decode steps)."""
    cache = bs.BlockSparseCache(block_size)
    cache.update(k[:, :, :split], v[:, :, :split])
    for i in range(split, k.shape[2]):
        cache.update(k[:, :, i:i + 1], v[:, :, i:i + 1])
    return cache


@settings(max_examples=40, deadline=None)
@given(n=st.integers(1, 60), block_size=st.sampled_from([1, 2, 4, 8, 16]), group=st.sampled_from([1, 2, 4]),
       cut=st.floats(0, 1), seed=st.integers(0, 100))
def test_block_cache_bounds_follow_every_update_and_crop(n, block_size, group, cut, seed):
    _, k, v = qkv(2, 2 * group, 2, n, 4, seed)
    cache = _filled(k, v, block_size, int(cut * n))
    m, M = bs.quest_bounds(k, block_size)
    assert torch.equal(cache.key_min, m) and torch.equal(cache.key_max, M)
    assert torch.equal(cache.k, k) and torch.equal(cache.v, v) and cache.capacity % block_size == 0
    assert cache.nbytes == (2 * n + 2 * bs.n_blocks(n, block_size)) * 2 * 2 * 4 * 8  # K, V, m, M in float64
    kept = int(cut * n)
    cache.crop(kept)
    if kept:
        m, M = bs.quest_bounds(k[:, :, :kept], block_size)
        assert torch.equal(cache.key_min, m) and torch.equal(cache.key_max, M)
    assert cache.seq_len == kept and torch.equal(cache.k, k[:, :, :kept])


@settings(max_examples=40, deadline=None)
@given(n=st.integers(1, 70), block_size=st.sampled_from([1, 2, 4, 8, 16]), group=st.sampled_from([1, 2, 4]),
       seed=st.integers(0, 100))
def test_decode_with_every_block_equals_dense_attention(n, block_size, group, seed):
    q, k, v = qkv(2, 2 * group, 2, n, 8, seed)
    q = q[:, :, -1:]  # the query of the last token, whose key the cache holds
    cache = _filled(k, v, block_size, n // 2)
    out, blocks = bs.quest_decode_attention(q, cache, top_blocks=bs.n_blocks(n, block_size) + 2)
    dense, _ = grouped_attention(q, k, v, causal=False)
    torch.testing.assert_close(out, dense, rtol=1e-12, atol=1e-12)
    assert torch.equal(blocks.sort(-1).values, torch.arange(bs.n_blocks(n, block_size)).expand_as(blocks))


@settings(max_examples=60, deadline=None)
@given(n=st.integers(2, 90), block_size=st.sampled_from([2, 4, 8, 16]), group=st.sampled_from([1, 2, 4]),
       top=st.integers(1, 5), seed=st.integers(0, 1000))
def test_decode_with_fewer_blocks_equals_sparse_attention_over_the_quest_mask(n, block_size, group, top, seed):
    q, k, v = qkv(2, 2 * group, 2, n, 8, seed)
    q = q[:, :, -1:]
    cache = _filled(k, v, block_size, n - 1)
    out, blocks = bs.quest_decode_attention(q, cache, top)
    mask = bs.quest_mask(q, k, top, block_size)
    expected, _ = bs.sparse_attention(q, k, v, mask)
    torch.testing.assert_close(out, expected, rtol=1e-12, atol=1e-12)
    # the blocks read are the mask's blocks, the query's own among them, and no more than top
    own = (n - 1) // block_size
    assert blocks.shape[-1] == min(top, own + 1) and (blocks == own).any(-1).all()
    assert torch.equal(bs.block_token_mask(blocks[:, :, None], n, block_size), mask)
    # select("quest") makes the same choice wherever it picks the query's own block too
    q_all = torch.cat([torch.randn(2, 2 * group, n - 1, 8, dtype=torch.float64), q], dim=2)
    chosen = bs.select("quest", q_all, k, top * block_size, block_size)[:, :, -1:]
    picks_own = chosen[..., own * block_size:].any(-1)  # (b, h, 1)
    assert torch.equal(chosen[picks_own], mask[picks_own])


def test_decode_reads_only_the_chosen_blocks():
    """Poison every block the step does not choose with NaN: the output does not change, so the step never read
    them (no dense scoring, no per-token gather: index_select of whole blocks)."""
    q, k, v = qkv(1, 8, 2, 200, 16, 7)
    q = q[:, :, -1:]
    cache = _filled(k, v, 16, 190)
    out, blocks = bs.quest_decode_attention(q, cache, 3)
    read = torch.zeros(2, cache.key_blocks.shape[2], dtype=torch.bool)
    for head in range(8):
        read[head // 4, blocks[0, head]] = True
    cache.key_blocks[0][~read] = float("nan")
    cache.value_blocks[0][~read] = float("nan")
    again, same = bs.quest_decode_attention(q, cache, 3)
    assert torch.equal(same, blocks) and torch.equal(again, out)


def test_quest_layer_decodes_as_its_prefill_and_as_gqa_with_every_block():
    from attnlab.gqa import AttentionConfig, GroupedQueryAttention

    torch.manual_seed(0)
    config = AttentionConfig(d_model=32, n_heads=4, n_kv_heads=2, head_dim=8)
    layer = bs.QuestAttention(config, block_size=4, top_blocks=2).double()
    x = torch.randn(2, 23, 32, dtype=torch.float64)
    whole = layer(x, return_weights=True)  # the mask path, every query at once
    cache = layer.make_cache()
    layer(x[:, :20], cache=cache)
    for t in range(20, 23):  # decode steps: the block path
        step = layer(x[:, t:t + 1], cache=cache, return_weights=True)
        torch.testing.assert_close(step.output, whole.output[:, t:t + 1], rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(step.weights, whole.weights[:, :, t:t + 1, :t + 1], rtol=1e-12, atol=1e-12)
    assert cache.seq_len == 23 and cache.nbytes == (2 * 23 + 2 * 6) * 2 * 2 * 8 * 8
    dense = GroupedQueryAttention(config).double()
    dense.load_state_dict(layer.state_dict())
    every = bs.QuestAttention(config, block_size=4, top_blocks=6).double()
    every.load_state_dict(layer.state_dict())
    cache = every.make_cache()
    every(x[:, :22], cache=cache)
    torch.testing.assert_close(every(x[:, 22:], cache=cache).output, dense(x).output[:, 22:], rtol=1e-12,
                               atol=1e-12)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_quest_decode_runs_in_low_precision(dtype):
    q, k, v = qkv(1, 4, 2, 40, 8, 3, dtype=dtype)
    cache = _filled(k, v, 8, 39)
    out, _ = bs.quest_decode_attention(q[:, :, -1:], cache, 2)
    expected, _ = bs.sparse_attention(q[:, :, -1:].double(), k.double(), v.double(),
                                      bs.quest_mask(q[:, :, -1:].double(), k.double(), 2, 8))
    assert out.dtype == dtype and torch.isfinite(out).all()
    torch.testing.assert_close(out.double(), expected, rtol=0.05, atol=0.05)
