"""Chapter 16 · the paged KV cache: a sequence's tokens live in fixed-size pages scattered through one pool,
found through its block table (page = table[p // B], slot = p mod B); a fork shares the pages, and the
first write into a shared, partly filled page copies it (copy-on-write).

Every table, page number and reference count drawn is read off a real :class:`attnlab.paged.BlockPool`
driven through the same steps: pages 0 and 2 held by another sequence, sequence A caching a 7-token
prompt in 3-token pages, B forked from it, then B writing its first token of its own.
"""

from __future__ import annotations

import torch
from manim import (
    DOWN,
    LEFT,
    RIGHT,
    UP,
    FadeIn,
    FadeOut,
    Indicate,
    ReplacementTransform,
    TransformFromCopy,
    VGroup,
)

from animations.style import (
    BODY,
    CACHE,
    HIGHLIGHT,
    INK,
    KEY,
    MUTED,
    QUERY,
    SMALL,
    CourseScene,
    cell,
    mathtex,
    text,
    title,
)
from attnlab.paged import BlockPool

B = 3  # token slots per page
N_PAGES = 6
PROMPT = 7  # tokens sequence A caches
SLOT = 0.5  # width of one slot, scene units
PAGE_GAP = 0.35


def run_pool() -> dict:
    """The pool's state after each step of the scene: block tables, reference counts, the page copied."""
    pool = BlockPool(num_blocks=N_PAGES, block_size=B)
    earlier = [pool.allocate() for _ in range(4)]  # pages 0-3, taken by requests served before A
    for page in earlier[1::2]:
        pool.release(page)  # pages 1 and 3 are given back; another request keeps 0 and 2
    a = pool.new_sequence()
    a[0].update(k=torch.zeros(1, 1, PROMPT, 1))
    states = {"other": earlier[::2], "a": list(a.block_table), "counts_a": list(pool.ref_counts)}
    b = a.fork()
    states["counts_fork"] = list(pool.ref_counts)
    b[0].update(k=torch.ones(1, 1, 1, 1))  # B's first token of its own: copy-on-write of the shared last page
    states.update(b=list(b.block_table), counts_write=list(pool.ref_counts), copies=pool.copies)
    return states


class PagedCacheScene(CourseScene):
    """Logical tokens -> block table -> scattered pages; a fork shares them; a write copies the shared page."""

    def construct(self) -> None:
        s = run_pool()
        heading = title("The paged KV cache", chapter=16)
        self.add(heading)

        # the pool: N_PAGES pages of B slots, page numbers above, reference counts below
        pages = VGroup(*[VGroup(*[cell(SLOT, SLOT, MUTED, 0.05) for _ in range(B)]).arrange(RIGHT, buff=0)
                         for _ in range(N_PAGES)]).arrange(RIGHT, buff=PAGE_GAP)
        pages.move_to([0, -1.75, 0])
        numbers = VGroup(*[text(str(i), SMALL, color=MUTED).next_to(p, UP, buff=0.1) for i, p in enumerate(pages)])
        pool_label = text("pool: pages of 3 slots", SMALL, color=MUTED).next_to(pages, LEFT, buff=0.3)
        if pool_label.get_left()[0] < -6.9:  # keep it inside the frame: put it above the page numbers instead
            pool_label.next_to(numbers, UP, buff=0.1).align_to(pages, LEFT)
        held = VGroup(*[cell(SLOT, SLOT, MUTED, 0.55) for page in s["other"] for _ in range(B)])
        for k, slot in enumerate(held):
            slot.move_to(pages[s["other"][k // B]][k % B])
        self.play(FadeIn(pages), FadeIn(numbers), FadeIn(pool_label), FadeIn(held), run_time=1.0)

        # sequence A: 7 logical tokens in blocks of 3
        tokens = VGroup(*[cell(SLOT, SLOT, QUERY, 0.3, label=str(p)) for p in range(PROMPT)])
        blocks = VGroup(*[VGroup(*tokens[j:j + B]).arrange(RIGHT, buff=0) for j in range(0, PROMPT, B)])
        blocks.arrange(RIGHT, buff=PAGE_GAP).move_to([-1.0, 2.05, 0])
        a_label = text("tokens of A", SMALL, color=QUERY).next_to(blocks, LEFT, buff=0.3)
        self.play(FadeIn(tokens), FadeIn(a_label), run_time=0.8)

        # A's block table, then each token copied to its page and slot
        table_a = self._table(s["a"], QUERY).next_to(blocks, DOWN, buff=0.45).align_to(blocks, LEFT)
        table_a_label = text("table A", SMALL, color=QUERY).next_to(table_a, LEFT, buff=0.3)
        caption = mathtex(r"\text{page} = \text{table}[\lfloor p / B \rfloor],\ \ \text{slot} = p \bmod B")
        caption.to_edge(DOWN, buff=0.35)
        self.play(FadeIn(table_a), FadeIn(table_a_label), FadeIn(caption), run_time=0.8)
        placed = VGroup()
        for p in range(PROMPT):
            target = pages[s["a"][p // B]][p % B]
            copy = cell(SLOT, SLOT, QUERY, 0.3, label=str(p)).move_to(target)
            placed.add(copy)
        self.play(*[TransformFromCopy(tokens[p], placed[p]) for p in range(PROMPT)], run_time=1.6)
        counts = self._counts(s["counts_a"], pages)
        self.play(FadeIn(counts), run_time=0.6)
        self.wait(0.8)

        # fork: B copies the table, not the pages; every shared page's count rises
        table_b = self._table(s["a"], KEY).next_to(table_a, DOWN, buff=0.25)
        b_label = VGroup(text("table B", SMALL, color=KEY).next_to(table_b, LEFT, buff=0.3),
                         text("B = fork(A): same pages, no copy", SMALL, color=KEY).next_to(table_b, RIGHT, buff=0.4))
        counts_fork = self._counts(s["counts_fork"], pages)
        self.play(TransformFromCopy(table_a, table_b), FadeIn(b_label), ReplacementTransform(counts, counts_fork),
                  run_time=1.2)
        self.wait(0.8)

        # B writes token 7 into its last page, shared and partly filled: copy it first
        last = PROMPT // B  # logical block of token 7
        old_page, new_page = s["a"][last], s["b"][last]
        cow = text("copy-on-write", BODY, color=CACHE).next_to(numbers[new_page], UP, buff=0.12)
        copied = VGroup(*[cell(SLOT, SLOT, QUERY, 0.3, label=str(p)).move_to(pages[new_page][p % B])
                          for p in range(last * B, PROMPT)])
        self.play(FadeIn(cow), TransformFromCopy(VGroup(*placed[last * B:PROMPT]), copied), run_time=1.2)
        new_token = cell(SLOT, SLOT, KEY, 0.45, label=str(PROMPT)).move_to(pages[new_page][PROMPT % B])
        table_b_new = self._table(s["b"], KEY).move_to(table_b)
        counts_write = self._counts(s["counts_write"], pages)
        note = text(f"B writes {PROMPT}: shared page {old_page} copied to {new_page}", SMALL, color=CACHE)
        note.next_to(table_b, RIGHT, buff=0.4)
        self.play(FadeIn(new_token), ReplacementTransform(table_b, table_b_new), ReplacementTransform(b_label[1], note),
                  ReplacementTransform(counts_fork, counts_write), run_time=1.2)
        self.play(Indicate(table_b_new[last], color=HIGHLIGHT, scale_factor=1.3),
                  Indicate(pages[old_page], color=QUERY, scale_factor=1.05), run_time=1.0)
        self.play(FadeOut(cow), run_time=0.4)
        self.wait(2.5)

    @staticmethod
    def _table(entries: list[int], color) -> VGroup:
        """A block table as a row of cells, one page number each."""
        return VGroup(*[cell(SLOT, SLOT, color, 0.12, label=str(e)) for e in entries]).arrange(RIGHT, buff=0)

    @staticmethod
    def _counts(ref_counts: list[int], pages: VGroup) -> VGroup:
        """'×n' under every page some sequence holds (its reference count)."""
        return VGroup(*[text(f"×{n}", SMALL, color=CACHE if n > 1 else INK).next_to(page, DOWN, buff=0.12)
                        for n, page in zip(ref_counts, pages, strict=True) if n > 0])

