"""attnlab.paged: decoding from pages equals decoding from a contiguous LayerCache for every scheme (float64,
token by token, hypothesis over page sizes and lengths); forks decode as if each held its own copy; the page,
waste and prefix-sharing formulas of attnlab.costs against the pool itself; the request-stream simulator."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from attnlab import costs
from attnlab.cache_formats import (
    DEEPSEEK_V32_FP8_INDEX_KEY,
    DEEPSEEK_V32_FP8_MLA,
    FLASHMLA_PAGE_TOKENS,
    page_bytes,
    page_spans,
    tokens_in_budget,
    uniform_layout,
)
from attnlab.costs import AttentionShape
from attnlab.kv_cache import LayerCache
from attnlab.paged import (
    MIXES,
    BlockPool,
    OutOfBlocks,
    PagedLayerCache,
    Request,
    compare_policies,
    request_stream,
    simulate,
)
from attnlab.schemes import SCHEMES, VARIANTS

ALL = (*SCHEMES.values(), *VARIANTS.values())
# d = 16, 4 query heads of 4, GQA 2 K/V heads, d_c 8, d_h^R 2, a query latent of 10, indexer 2 x 4, top-k 3
SHAPE = AttentionShape(d_model=16, n_heads=4, head_dim=4, n_kv_heads=2, v_head_dim=4, kv_lora_rank=8,
                       qk_rope_head_dim=2, q_lora_rank=10, index_n_heads=2, index_head_dim=4, index_topk=3, n_layers=2)


def build(scheme, dtype=torch.float64, device="cpu", seed=0):
    """A random layer of ``scheme`` run the way its record says (MLA naive/absorbed, DSA gathering its top-k)."""
    torch.manual_seed(seed)
    layer = scheme.build_layer(SHAPE).to(device=device, dtype=dtype).eval()
    if scheme.indexer:
        layer.use("gather")
    elif scheme.mode is not None:
        layer.use(scheme.mode)
    return layer


def decode(layer, x, cache, prompt):
    """Prefill ``prompt`` tokens of x (b, T, d) in one call, then decode the rest one token at a time; the
    outputs (b, T, d) concatenated."""
    outs = [layer(x[:, :prompt], cache=cache).output]
    outs += [layer(x[:, t:t + 1], cache=cache).output for t in range(prompt, x.shape[1])]
    return torch.cat(outs, dim=1)


@pytest.mark.parametrize("scheme", ALL, ids=lambda s: s.key)
@settings(max_examples=12, deadline=None)
@given(block_size=st.integers(1, 9), prompt=st.integers(1, 10), new=st.integers(0, 10), seed=st.integers(0, 99))
def test_paged_decode_equals_contiguous(scheme, block_size, prompt, new, seed):
    layer = build(scheme)
    x = torch.randn(1, prompt + new, SHAPE.d_model, dtype=torch.float64,
                    generator=torch.Generator().manual_seed(seed))
    pool = BlockPool(num_blocks=-(-(prompt + new) // block_size), block_size=block_size)  # exactly enough
    paged = pool.new_sequence()[0]
    contiguous = LayerCache()
    with torch.no_grad():
        want = decode(layer, x, contiguous, prompt)
        got = decode(layer, x, paged, prompt)
    torch.testing.assert_close(got, want, rtol=0, atol=1e-12)
    assert paged.seq_len == contiguous.seq_len == prompt + new and pool.n_free == 0
    for name, t in contiguous.tensors.items():  # the pages hold exactly what the buffer holds
        assert torch.equal(paged.tensors[name], t), name


@pytest.mark.parametrize("scheme", ALL, ids=lambda s: s.key)
def test_scattered_pages_and_two_layers(scheme):
    """Pages handed out out of order (a pool others used first), one block table for two layers."""
    layers = [build(scheme, seed=s) for s in (1, 2)]
    pool = BlockPool(num_blocks=10, block_size=3, n_layers=2)
    others = [pool.allocate() for _ in range(7)]
    for b in others[::2]:
        pool.release(b)  # free pages 0, 2, 4, 6 go to the back of the free list
    seq = pool.new_sequence()
    refs = [LayerCache(), LayerCache()]
    x = torch.randn(1, 13, SHAPE.d_model, dtype=torch.float64)
    with torch.no_grad():
        for t in range(13):
            h_p = h_c = x[:, t:t + 1]
            for i, layer in enumerate(layers):
                h_p = layer(h_p, cache=seq[i]).output
                h_c = layer(h_c, cache=refs[i]).output
            torch.testing.assert_close(h_p, h_c, rtol=0, atol=1e-12)
    assert seq.block_table == [7, 8, 9, 0, 2]  # never-used pages first, then freed ones: scattered


@pytest.mark.parametrize("scheme", ALL, ids=lambda s: s.key)
@settings(max_examples=6, deadline=None)
@given(block_size=st.integers(1, 6), prompt=st.integers(1, 9), n_forks=st.integers(1, 3), new=st.integers(1, 6))
def test_forks_decode_as_if_each_had_its_own_copy(scheme, block_size, prompt, n_forks, new):
    layer = build(scheme)
    g = torch.Generator().manual_seed(prompt * 31 + new)
    x = torch.randn(1, prompt, SHAPE.d_model, dtype=torch.float64, generator=g)
    continuations = [torch.randn(1, new, SHAPE.d_model, dtype=torch.float64, generator=g) for _ in range(n_forks + 1)]
    pool = BlockPool(num_blocks=64, block_size=block_size)
    parent = pool.new_sequence()
    with torch.no_grad():
        layer(x, cache=parent[0])
        shared = list(parent.block_table)
        forks = [parent] + [parent.fork() for _ in range(n_forks)]
        assert all(pool.ref_counts[b] == n_forks + 1 for b in shared)
        assert pool.n_used == len(shared)  # forking copies nothing
        for seq, cont in zip(forks, continuations, strict=True):  # interleaved: each decodes its own tokens
            own = LayerCache()
            layer(x, cache=own)
            for t in range(new):
                got = layer(cont[:, t:t + 1], cache=seq[0]).output
                want = layer(cont[:, t:t + 1], cache=own).output
                torch.testing.assert_close(got, want, rtol=0, atol=1e-12)
    full, partial = divmod(prompt, block_size)
    assert all(seq.block_table[:full] == shared[:full] for seq in forks)  # full prompt pages stay shared
    assert pool.copies == (n_forks if partial else 0)  # all but the last writer copy the partial page
    assert pool.n_used == costs.shared_prefix_pages(prompt, [new] * (n_forks + 1), block_size)
    for seq in forks:
        seq.free()
    assert pool.n_free == pool.num_blocks and set(pool.ref_counts) == {0}


@settings(max_examples=30, deadline=None)
@given(prefix=st.integers(0, 40), suffixes=st.lists(st.integers(1, 20), min_size=1, max_size=5),
       block_size=st.integers(1, 16))
def test_shared_prefix_pages_counts_the_pool(prefix, suffixes, block_size):
    """The formula against a pool: a prompt's sequence, forked once per request and then freed; each request
    writes its own tokens."""
    pool = BlockPool(num_blocks=200, block_size=block_size)
    prompt = pool.new_sequence()
    token = torch.zeros(1, 1, 1, 1)
    if prefix:
        prompt[0].update(k=token.expand(1, 1, prefix, 1).contiguous())
    requests = [prompt.fork() for _ in suffixes]
    prompt.free()
    for seq, s in zip(requests, suffixes, strict=True):
        seq[0].update(k=token.expand(1, 1, s, 1).contiguous())
    assert pool.n_used == costs.shared_prefix_pages(prefix, suffixes, block_size)
    alone = costs.shared_prefix_pages(prefix, suffixes, block_size, share=False)
    assert alone == sum(costs.pages_for(prefix + s, block_size) for s in suffixes) >= pool.n_used


def test_doctests():
    import doctest

    from attnlab import paged

    assert doctest.testmod(paged).failed == 0


def test_block_table_addressing():
    pool = BlockPool(num_blocks=6, block_size=4)
    a, b = pool.new_sequence(), pool.new_sequence()
    for _ in range(3):  # two sequences growing in turn interleave their pages
        a[0].update(k=torch.randn(1, 1, 3, 2))
        b[0].update(k=torch.randn(1, 1, 3, 2))
    assert a.block_table == [0, 2, 4] and b.block_table == [1, 3, 5]
    assert a.locate(0) == (0, 0) and a.locate(5) == (2, 1) and b.locate(8) == (5, 0)
    assert a.slots(3, 6).tolist() == [3, 8, 9]  # table[p // 4] * 4 + p % 4
    k = a[0].tensors["k"]  # (1, 1, 9, 2), gathered in position order
    pages = pool.storage[0]["k"]  # (6, 4, 1, 1, 2)
    assert torch.equal(k[0, 0, 5], pages[2, 1, 0, 0])
    with pytest.raises(OutOfBlocks):
        pool.new_sequence()[0].update(k=torch.randn(1, 1, 1, 2))


def test_crop_gives_pages_back_and_copy_on_write_after_crop():
    pool = BlockPool(num_blocks=8, block_size=4)
    seq = pool.new_sequence()
    cache = seq[0]
    cache.update(k=torch.arange(10.0).view(1, 1, 10, 1))
    child = seq.fork()
    cache.crop(6)  # back to 2 pages: the third goes back only when the child lets go of it too
    assert seq.block_table == child.block_table[:2] and pool.ref_counts[child.block_table[2]] == 1
    cache.update(k=torch.full((1, 1, 1, 1), -1.0))  # writes into shared page 1: copied first
    assert seq.block_table[1] != child.block_table[1] and pool.copies == 1
    assert child[0].tensors["k"].flatten().tolist() == list(range(10))
    assert seq[0].tensors["k"].flatten().tolist() == [0, 1, 2, 3, 4, 5, -1]
    assert cache.capacity == 8 and cache.n_tokens == 7 and cache.nbytes == 7 * 4


def test_layer_cache_interface():
    pool = BlockPool(num_blocks=4, block_size=2)
    cache = pool.new_sequence()[0]
    assert isinstance(cache, PagedLayerCache) and cache.window is None and cache.first_position == 0
    assert cache.seq_len == cache.nbytes == cache.capacity == 0
    cache.update(c_kv=torch.randn(2, 3, 5), k_rope=torch.randn(2, 3, 2))  # (b, seq, width), seq_dim -2
    assert cache.capacity_nbytes == 2 * 2 * (2 * 5 + 2 * 2) * 4  # 2 pages x 2 slots x one token's floats
    with pytest.raises(ValueError, match="cache holds"):
        cache.update(c_kv=torch.randn(2, 1, 5))
    with pytest.raises(ValueError, match="k_rope"):
        cache.update(c_kv=torch.randn(2, 1, 5), k_rope=torch.randn(2, 1, 3))


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float32])
def test_runs_in_low_precision_and_on_every_device(dtype):
    from attnlab.devices import available_devices

    for device in available_devices():
        layer = build(SCHEMES["dsa"], dtype=dtype, device=device)
        pool = BlockPool(num_blocks=4, block_size=4)
        x = torch.randn(1, 7, SHAPE.d_model, dtype=dtype, device=device)
        with torch.no_grad():
            got = decode(layer, x, pool.new_sequence()[0], 3)
            want = decode(layer, x, LayerCache(), 3)
        assert got.dtype == dtype and got.device.type == torch.device(device).type
        torch.testing.assert_close(got, want)


# --- formulas --------------------------------------------------------------------------------------------


def test_page_formulas():
    assert [costs.pages_for(n, 16) for n in (0, 1, 16, 17)] == [0, 1, 1, 2]
    assert [costs.page_slack(n, 16) for n in (0, 1, 16, 17)] == [0, 15, 0, 15]
    assert costs.waste_parts(10, 30, 2048) == {"reservation": 20, "internal": 2018}  # reserved at the maximum
    assert costs.waste_parts(10, 30, 30) == {"reservation": 20, "internal": 0}  # the oracle
    assert costs.waste_parts(30, 30, 32) == {"reservation": 0, "internal": 2}  # a finished request's last page
    assert costs.shared_prefix_pages(100, [10, 10], 16) == 6 + 2 * 1
    assert costs.shared_prefix_pages(100, [10, 10], 16, share=False) == 2 * 7


def test_page_layout_of_deepseek_v32():
    assert FLASHMLA_PAGE_TOKENS == 64
    assert page_bytes(DEEPSEEK_V32_FP8_MLA) == 64 * 656 and page_bytes(DEEPSEEK_V32_FP8_INDEX_KEY) == 64 * 132
    spans = page_spans(DEEPSEEK_V32_FP8_MLA)
    assert len(spans) == 64 * 3 and spans[-1].stop == 64 * 656
    assert [(s.start, s.stop) for s in spans[:4]] == [(0, 512), (512, 528), (528, 656), (656, 1168)]
    assert all(a.stop == b.start for a, b in zip(spans, spans[1:], strict=False))  # no gaps, no overlaps
    bf16 = uniform_layout(576)
    assert page_bytes(bf16) == 64 * 1152
    layouts = (DEEPSEEK_V32_FP8_MLA, DEEPSEEK_V32_FP8_INDEX_KEY)
    tokens = tokens_in_budget(layouts, 61, 2**30)
    assert tokens % 64 == 0 and tokens * 61 * 788 <= 2**30 < (tokens + 64) * 61 * 788


# --- the simulator ---------------------------------------------------------------------------------------


def test_request_stream_is_seeded_and_in_range():
    mix = MIXES["chat"]
    a, b = request_stream(mix, 200, seed=3), request_stream("chat", 200, seed=3)
    assert a == b and a != request_stream(mix, 200, seed=4)
    assert all(mix.prompt[0] <= r.prompt <= mix.prompt[1] and mix.output[0] <= r.output <= mix.output[1] for r in a)
    assert [r.arrival for r in a] == sorted(r.arrival for r in a)


def test_simulator_accounts_for_every_slot():
    requests = [Request(0, 5, 3), Request(0, 2, 6), Request(1, 7, 1)]
    used_steps = sum(sum(r.prompt + k for k in range(1, r.output + 1)) for r in requests)  # tokens held per step
    for policy, block in (("max", None), ("oracle", None), ("paged", 4), ("paged", 1)):
        res = simulate(requests, budget=64, policy=policy, block_size=block, max_len=16)
        assert res.used == used_steps and res.preemptions == 0 and res.peak_running == 3
    assert simulate(requests, 64, "paged", 1, 16).waste == 0  # one-token pages waste nothing
    assert simulate(requests, 64, "oracle", None, 16).internal == 0
    res = simulate(requests, 16, "max", None, 16)  # room for one request at a time
    assert res.peak_running == 1 and res.steps == 3 + 6 + 1


def test_paging_fits_more_requests_than_contiguous_reservations():
    for mix in MIXES:
        results = compare_policies(mix, budget=2**15, n_requests=150)
        worst, oracle, *paged = results
        assert worst.peak_running <= 2**15 // MIXES[mix].max_len
        assert worst.waste_fraction > oracle.waste_fraction > paged[0].waste_fraction
        assert all(p.mean_running > worst.mean_running for p in paged)
        assert [p.block_size for p in paged] == [8, 16, 32, 128]
        assert paged[0].waste_fraction < paged[-1].waste_fraction  # bigger pages, more slack in the last one
    assert compare_policies("chat", 2**15, n_requests=150) == compare_policies("chat", 2**15, n_requests=150)


def test_preemption_when_pages_run_out():
    requests = [Request(0, 4, 12) for _ in range(4)]  # each grows to 16 tokens; 40 slots hold two and a half
    res = simulate(requests, budget=40, policy="paged", block_size=4, max_len=16)
    assert res.preemptions > 0 and res.peak_running == 4
    assert res.used >= 4 * sum(4 + k for k in range(1, 13))  # recomputed tokens are held again


# --- the chapter's exercises and widget -------------------------------------------------------------------


def _solutions():
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "notebooks" / "solutions" / "ch16.py"
    spec = importlib.util.spec_from_file_location("solutions_ch16", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_ch16_solutions_pass_and_agree_with_the_library():
    from attnlab.exercises import ch16

    sol = _solutions()
    assert ch16.check_locate(sol.answer_locate).startswith("✓")
    assert ch16.check_pages(sol.answer_pages, sol.answer_waste).startswith("✓")
    assert ch16.check_fork_prediction(sol.answer_fork_pages, sol.answer_fork_copies).startswith("✓")
    assert sol.answer_locate == ch16.expected_locate() and (sol.answer_pages, sol.answer_waste) == ch16.expected_pages()
    assert ch16.run_fork() == {"pages": sol.answer_fork_pages, "copies": sol.answer_fork_copies}
    for reminder in (ch16.check_locate(None), ch16.check_pages(None, 3), ch16.check_fork_prediction(None, None)):
        assert "not attempted" in reminder


@pytest.mark.parametrize(("call", "slip"), [
    (lambda c: c.check_locate((2, 5)), "LOGICAL block"),
    (lambda c: c.check_locate((4, 5)), "ceil"),
    (lambda c: c.check_locate((9, 21)), "p mod B"),
    (lambda c: c.check_locate((9, 37)), "start of the page"),
    (lambda c: c.check_pages(81, 12), "round up"),
    (lambda c: c.check_pages(82, 4), "FILLED"),
    (lambda c: c.check_pages(82, 2796), "maximum length"),
    (lambda c: c.check_fork_prediction(6, 2), "last of the 2 forks"),
    (lambda c: c.check_fork_prediction(6, 0), "copies it"),
    (lambda c: c.check_fork_prediction(8, 1), "without sharing"),
])
def test_ch16_checks_name_the_slip(call, slip):
    from attnlab.exercises import ch16

    with pytest.raises(AssertionError, match=slip):
        call(ch16)


def test_explorer_offers_only_valid_values_and_never_prints(capsys):
    from attnlab.interactive import paged as widget

    explorer = widget.paging_explorer()
    assert tuple(explorer.block_size.options) == widget.BLOCK_SIZES
    assert tuple(explorer.mix.options) == tuple(MIXES)
    assert [v for _, v in explorer.budget.options] == list(widget.BUDGETS_GIB)
    before = explorer.table.value
    explorer.block_size.value = 128
    assert explorer.table.value != before and "paged, B = 128" in explorer.table.value
    assert explorer.table.value == widget.explorer_html("chat", 4, 128)
    explorer.budget.value = 1
    explorer.mix.value = "long prompts"
    assert "1 GiB" in explorer.table.value and "long prompts" in explorer.table.value
    assert capsys.readouterr().out == ""
    assert repr(explorer) == "PagingExplorer(mix='long prompts', gib=1, block_size=128)"
    worst, oracle, paged_result = widget.run("long prompts", 1, 128)
    assert f"{paged_result.mean_running:.1f}" in explorer.table.value
    with pytest.raises(ValueError, match="block_size"):
        widget.paging_explorer(block_size=12)
