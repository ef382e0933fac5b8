"""Checks for chapter 16, the paged KV cache and prefix sharing.

    from attnlab.exercises import ch16
    print(ch16.check_locate(answer_locate))                         # (physical page, slot)
    print(ch16.check_pages(answer_pages, answer_waste))             # pages held, empty slots
    print(ch16.check_fork_prediction(answer_fork_pages, answer_fork_copies))   # predicted, then run

Each check compares the answer with :mod:`attnlab.paged` and :mod:`attnlab.costs`: ``None`` returns a
reminder, a right answer "✓ ...", a wrong one raises ``AssertionError`` with a hint aimed at the usual slip.
"""

from __future__ import annotations

import torch

from attnlab import costs
from attnlab.exercises._common import as_integer, run_check
from attnlab.paged import BlockPool

#: Exercise 1: a sequence's block table, the page size, and the token position to find.
EXERCISE_1 = {"block_table": (7, 3, 9, 4), "block_size": 16, "position": 37}

#: Exercise 2: one request, its page size, and the maximum length a contiguous cache would reserve.
EXERCISE_2 = {"prompt": 1000, "output": 300, "block_size": 16, "max_len": 4096}

#: Exercise 3: a prompt cached once, forked into ``forks`` sequences that each generate ``new`` tokens.
EXERCISE_3 = {"prompt": 40, "block_size": 16, "forks": 2, "new": 10}


# ----------------------------------------------------------------------------------------------------
# exercise 1


def expected_locate() -> tuple[int, int]:
    """(table[p // B], p mod B) through a sequence whose table is ``EXERCISE_1["block_table"]``."""
    e = EXERCISE_1
    pool = BlockPool(num_blocks=max(e["block_table"]) + 1, block_size=e["block_size"])
    seq = pool.new_sequence()
    seq.block_table = list(e["block_table"])
    return seq.locate(e["position"])


def check_locate(answer: object) -> str:
    """Exercise 1: the (physical page, slot) holding token ``EXERCISE_1["position"]`` (a pair of ints)."""
    e = EXERCISE_1
    table, B, p = e["block_table"], e["block_size"], e["position"]
    expected = expected_locate()

    def check(a: object) -> str:
        assert isinstance(a, (tuple, list)) and len(a) == 2, f"answer with a pair (page, slot), got {a!r}"
        page, slot = (as_integer(x, "each of page and slot") for x in a)
        logical = p // B
        assert page != logical, (
            f"{logical} is the LOGICAL block, p // B; the block table maps it to a physical page: table[{logical}]"
        )
        beyond = -(-p // B)  # ceil(p / B): one block too far unless p is a multiple of B
        assert beyond == logical or beyond >= len(table) or page != table[beyond], (
            "ceil(p / B) is one block too far: positions 0..B-1 are in block 0, so block = p // B (floor)"
        )
        assert slot != p - B, f"p - B is the offset from block 1's start; token {p} is in block {logical}: p mod B"
        assert slot != p, "the slot counts from the start of the page, not of the sequence: p mod B"
        assert (page, slot) == expected, f"not yet: block j = p // B, page = table[j], slot = p mod B (B = {B})"
        return (f"token {p} sits in logical block {logical}, physical page table[{logical}] = {expected[0]}, slot "
                f"{expected[1]}; flat slot {expected[0]} × {B} + {expected[1]} = {expected[0] * B + expected[1]}")

    return run_check("block table lookup", answer, check)


# ----------------------------------------------------------------------------------------------------
# exercise 2


def expected_pages() -> tuple[int, int]:
    """Pages the finished request holds and their empty slots (:func:`attnlab.costs.pages_for`, ``page_slack``)."""
    e = EXERCISE_2
    n = e["prompt"] + e["output"]
    return costs.pages_for(n, e["block_size"]), costs.page_slack(n, e["block_size"])


def check_pages(pages: object, waste: object) -> str:
    """Exercise 2: pages a request of ``EXERCISE_2``'s prompt + output holds when it finishes, and the slots
    of those pages holding no token."""
    e = EXERCISE_2
    n, B = e["prompt"] + e["output"], e["block_size"]
    want_pages, want_waste = expected_pages()
    if pages is None or waste is None:
        return run_check("pages and waste", None, lambda a: "")

    def check(a: object) -> str:
        got_pages, got_waste = (as_integer(x, name) for x, name in zip(a, ("pages", "waste"), strict=True))
        assert got_pages != n // B, f"{n} / {B} rounded down leaves the last {n % B} tokens without a page: round up"
        assert got_pages != e["prompt"] // B + 1 and got_pages != -(-e["prompt"] // B), (
            "the output tokens are cached too: count prompt + output")
        assert got_pages == want_pages, f"not yet: pages = ceil((prompt + output) / B) with B = {B}"
        assert got_waste != n % B, f"{n % B} slots are FILLED in the last page; the empty ones are B - {n % B}"
        assert got_waste != e["max_len"] - n, "that is the contiguous cache's waste at the maximum length"
        assert got_waste == want_waste, "not yet: empty slots = pages × B − (prompt + output)"
        parts = costs.waste_parts(n, n, e["max_len"])
        return (f"{want_pages} pages, {want_waste} empty slots in the last one; a contiguous cache reserved at "
                f"max_len = {e['max_len']:,} would leave {parts['internal']:,} slots empty "
                f"({parts['internal'] / max(want_waste, 1):.0f}× more)")

    return run_check("pages and waste", (pages, waste), check)


# ----------------------------------------------------------------------------------------------------
# exercise 3


def run_fork() -> dict[str, int]:
    """Exercise 3 run on a real pool: cache the prompt, fork it ``forks`` times, free the prompt's own
    sequence, let every fork write ``new`` tokens in turn. Returns pages in use and pages copied."""
    e = EXERCISE_3
    pool = BlockPool(num_blocks=64, block_size=e["block_size"])
    prompt = pool.new_sequence()
    prompt[0].update(k=torch.zeros(1, 1, e["prompt"], 1))  # one number per token is enough to count pages
    forks = [prompt.fork() for _ in range(e["forks"])]
    prompt.free()
    for seq in forks:
        seq[0].update(k=torch.ones(1, 1, e["new"], 1))
    return {"pages": pool.n_used, "copies": pool.copies}


def check_fork_prediction(pages: object, copies: object) -> str:
    """Exercise 3: predict the pages in use and the pages copied once every fork of ``EXERCISE_3`` has
    written its tokens; the check runs it and explains."""
    e = EXERCISE_3
    if pages is None or copies is None:
        return run_check("fork prediction", None, lambda a: "")
    ran = run_fork()
    B, P, N, s = e["block_size"], e["prompt"], e["forks"], e["new"]
    full, rest = divmod(P, B)

    def check(a: object) -> str:
        got_pages, got_copies = (as_integer(x, name) for x, name in zip(a, ("pages", "copies"), strict=True))
        assert got_copies != N, (
            f"not every fork copies: each copy lowers the shared page's count, so the last of the {N} forks finds "
            "it held by itself alone (count 1) and writes in place")
        assert got_copies != 0, (
            f"the prompt's last page is partly filled ({rest} of {B} slots) and shared: the first write into it "
            "copies it (copy-on-write)")
        assert got_copies == ran["copies"], f"not yet: the run copied {ran['copies']} page(s)"
        assert got_pages != N * costs.pages_for(P + s, B), (
            "that is without sharing: the full prompt pages are held once")
        assert got_pages == ran["pages"], (
            f"not yet: {full} full prompt page(s) held once, plus for each fork ceil(({rest} + {s}) / {B}) pages")
        return (f"{ran['pages']} pages ({full} shared + {N} × {costs.pages_for(rest + s, B)}) and {ran['copies']} "
                f"copy: the first writer copies the shared partial page, the last finds it its own; without "
                f"sharing, {N * costs.pages_for(P + s, B)} pages")

    return run_check("fork prediction", (pages, copies), check)
