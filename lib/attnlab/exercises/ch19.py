"""Checks for chapter 19, selecting blocks instead of tokens.

    from attnlab.exercises import ch19
    print(ch19.check_block_mask(answer_block_mask))            # MoBA's causal block mask, (T, n_blocks)
    print(ch19.check_quest_bound(answer_bound))                # Quest's upper bound for one query and block
    print(ch19.check_recall_prediction(answer_more, answer_ever))   # predicted, then run on the tiny model

Each check compares the answer with :mod:`attnlab.block_sparse`: ``None`` returns a reminder, a right answer
"✓ ...", a wrong one raises ``AssertionError`` with a hint aimed at the usual slip.
"""

from __future__ import annotations

import functools

import torch

from attnlab import corpus
from attnlab.block_sparse import causal_block_mask, measure_selections, quest_bounds, quest_upper_bound
from attnlab.exercises._common import as_number, run_check
from attnlab.model import load_checkpoint
from attnlab.tokenization import load_tokenizer

#: Exercise 1: a cache of ``tokens`` tokens in blocks of ``block_size``, every position's query.
EXERCISE_1 = {"tokens": 10, "block_size": 4}

#: Exercise 2: one query and the keys of one block (three tokens of width 3).
EXERCISE_2 = {"q": (1.0, -2.0, 0.5), "keys": ((0.5, 1.0, -1.0), (2.0, -0.5, 0.0), (-1.0, 0.5, 2.0))}

#: Exercise 3: the tiny GQA model, one layer, a budget in tokens and MoBA's block size.
EXERCISE_3 = {"model": "tiny_gqa", "layer": 2, "budget": 64, "block_size": 16, "window_start": 4000, "tokens": 256}


# ----------------------------------------------------------------------------------------------------
# exercise 1


def expected_block_mask() -> torch.Tensor:
    """(T, n_blocks) bool: query p may route to block j iff j B <= p
    (:func:`attnlab.block_sparse.causal_block_mask`)."""
    e = EXERCISE_1
    return causal_block_mask(e["tokens"], e["tokens"], e["block_size"])


def check_block_mask(answer: object) -> str:
    """Exercise 1: MoBA's causal block mask for ``EXERCISE_1``, a (T, n_blocks) bool tensor or nested list."""
    e = EXERCISE_1
    T, B = e["tokens"], e["block_size"]
    want = expected_block_mask()

    def check(a: object) -> str:
        got = torch.as_tensor(a)
        assert got.shape == want.shape, (
            f"shape {tuple(got.shape)}: one row per query position (T = {T}) and one column per block, "
            f"ceil({T} / {B}) = {want.shape[1]}")
        got = got.to(torch.bool)
        p, j = torch.arange(T)[:, None], torch.arange(want.shape[1])
        assert not torch.equal(got, (j * B + B - 1 <= p)), (
            "that is 'complete blocks only' (NSA's compressed branch): MoBA also routes a query to its own, partly "
            "filled block, always (reading it up to the query itself)")
        assert not torch.equal(got, (j * B < p)), (
            f"off by one at the start of a block: query p = j·B is block j's first token and sees block j "
            f"(row {B} must mark block 1)")
        assert not got[~want].any(), (
            f"a future block is marked (row {int((got & ~want).nonzero()[0, 0])}): its tokens come after the query, "
            "and routing to it would leak the future")
        assert torch.equal(got, want), "not yet: block j is visible to query p iff j·B <= p, i.e. j <= floor(p / B)"
        return (f"query p sees floor(p / {B}) + 1 blocks: rows 0-{B - 1} one block, {B}-{2 * B - 1} two, "
                f"{2 * B}-{T - 1} three; its own block is read only up to p")

    return run_check("MoBA's causal block mask", answer, check)


# ----------------------------------------------------------------------------------------------------
# exercise 2


def expected_quest_bound() -> float:
    """U = sum_i max(q_i m_i, q_i M_i) for ``EXERCISE_2`` (:func:`attnlab.block_sparse.quest_upper_bound`)."""
    e = EXERCISE_2
    q = torch.tensor(e["q"], dtype=torch.float64).view(1, 1, 1, -1)
    k = torch.tensor(e["keys"], dtype=torch.float64).view(1, 1, len(e["keys"]), -1)
    m, M = quest_bounds(k, len(e["keys"]))
    return float(quest_upper_bound(q, m, M))


def check_quest_bound(answer: object) -> str:
    """Exercise 2: Quest's upper bound U for ``EXERCISE_2``'s query and block (a number)."""
    e = EXERCISE_2
    q = torch.tensor(e["q"], dtype=torch.float64)
    k = torch.tensor(e["keys"], dtype=torch.float64)
    m, M = k.amin(0), k.amax(0)
    want = expected_quest_bound()
    dots = k @ q

    def check(a: object) -> str:
        got = as_number(a, "answer_bound")
        close = lambda x: abs(got - float(x)) < 1e-6  # noqa: E731
        assert not close(q @ M), (
            "q · M takes every channel's maximum, but where q_i < 0 the larger product q_i k_i comes from the "
            "SMALLEST k_i: use max(q_i m_i, q_i M_i) channel by channel")
        assert not close(dots.max()), (
            "that is the exact best q · k_s of the block; Quest does not keep the keys' dot products, only m and M, "
            "so its score is a bound, computed from them")
        assert not close(q.abs() @ k.abs().amax(0)), "|q| · max|k| is a bound, but looser than Quest's"
        assert not close(q @ m), "q · m is the smallest choice on every channel, not the largest"
        assert close(want), "not yet: U = sum_i max(q_i m_i, q_i M_i), m and M the channel-wise min and max of the keys"
        return (f"U = {want:g} >= {float(dots.max()):g} = max_s q · k_s (the gap is the price of keeping only two "
                f"vectors per block); m = {m.tolist()}, M = {M.tolist()}")

    return run_check("Quest's bound", answer, check)


# ----------------------------------------------------------------------------------------------------
# exercise 3


@functools.lru_cache(maxsize=1)
@torch.no_grad()
def run_recall() -> dict[str, float]:
    """Exercise 3 run: the attention each selection holds on ``EXERCISE_3``'s layer (queries past the budget)."""
    e = EXERCISE_3
    model = load_checkpoint(e["model"]).eval()
    ids = load_tokenizer().encode(corpus.load_text("val"))
    window = torch.tensor([ids[e["window_start"]:e["window_start"] + e["tokens"]]])
    h = model.embed(window)
    for block in model.blocks[:e["layer"]]:
        h, _ = block(h)
    attn = model.blocks[e["layer"]].attn
    q, k, v = attn.project(model.blocks[e["layer"]].attn_norm(h))  # what the layer's attention reads
    ran = measure_selections(q, k, v, methods=("token", "moba", "quest", "nsa"), budgets=(e["budget"],),
                             block_size=e["block_size"])
    return {m.method: m.recall for m in ran}


def check_recall_prediction(more: object, ever: object) -> str:
    """Exercise 3: which holds more of the dense attention at ``EXERCISE_3``'s budget, per-head token top-k
    ("token") or MoBA ("moba"); and can any block method ever hold more than per-head token top-k at the same
    budget (True / False)? The check runs it and explains."""
    e = EXERCISE_3
    if more is None or ever is None:
        return run_check("recall prediction", None, lambda a: "")
    ran = run_recall()

    def check(a: object) -> str:
        got_more, got_ever = a
        assert got_more in ("token", "moba"), f"answer_more should be 'token' or 'moba', got {got_more!r}"
        assert isinstance(got_ever, bool), f"answer_ever should be True or False, got {got_ever!r}"
        assert got_more == "token", (
            f"the run says token top-k holds {ran['token']:.1%} and MoBA {ran['moba']:.1%}: a block carries its "
            "weak tokens along with its strong ones")
        assert got_ever is False, (
            "never: for one query, the k tokens of largest q · k are the k of largest softmax weight, so no set "
            "of k tokens (blocks included) holds more of that query's attention")
        block = ", ".join(f"{m} {ran[m]:.1%}" for m in ("moba", "quest", "nsa"))
        return (f"layer {e['layer']}, {e['budget']} tokens: token top-k holds {ran['token']:.1%}; blocks of "
                f"{e['block_size']}: {block}. Token top-k is the ceiling at any budget; blocks trade some of it "
                "for contiguous reads")

    return run_check("recall prediction", (more, ever), check)
