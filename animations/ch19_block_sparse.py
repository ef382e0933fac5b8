"""Chapter 19 · selecting blocks instead of tokens: one query, a cache of 24 tokens in 6 blocks of 4.

DSA's rule picks the 8 tokens of largest score, wherever they sit: 8 tokens in several separate runs. MoBA scores
each block by the query against the block's mean key, takes the top 2 blocks (its own block always among them)
and reads 8 tokens in 2 runs. Every selection drawn, and the runs counted, come from :mod:`attnlab.block_sparse`
run on the seeded q and k below.
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
    SurroundingRectangle,
    TransformFromCopy,
    VGroup,
)

from animations.style import (
    BODY,
    INDEX,
    KEY,
    MUTED,
    QUERY,
    SMALL,
    CourseScene,
    cell,
    mathtex,
    shades,
    text,
    title,
)
from attnlab.block_sparse import dense_scores, memory_segments, moba_scores, select_blocks, token_topk_mask

N, B, BUDGET = 24, 4, 8  # tokens in the cache, tokens per block, tokens read
SLOT = 0.42  # side of one token cell
GAP = 0.22  # space between blocks


def run_selection() -> dict:
    """The last query's scores and both selections, from the library, on a seeded example whose attention
    gathers in two places (keys 5-6 and 17-18 lean towards the query)."""
    g = torch.Generator().manual_seed(19)
    q = torch.randn(1, 1, N, 8, generator=g, dtype=torch.float64)
    k = torch.randn(1, 1, N, 8, generator=g, dtype=torch.float64) * 0.8
    for s in (5, 6, 17, 18):
        k[0, 0, s] += 0.9 * q[0, 0, -1]
    scores = dense_scores(q, k)[0, 0, -1]  # (N,) q · k_s / sqrt(d) of the last query
    tokens = token_topk_mask(dense_scores(q, k), BUDGET)[0, 0, -1]  # (N,) DSA's top-8
    block_scores = moba_scores(q, k, B)  # (1, 1, N, N / B), +inf on the query's own block
    chosen = select_blocks(block_scores, BUDGET // B, B, N)[0, 0, -1]  # best first
    pooled = torch.einsum("d,jd->j", q[0, 0, -1], k[0, 0].view(N // B, B, -1).mean(1))  # q · k̄_j, own block too
    blocks = torch.zeros(N, dtype=torch.bool)
    for j in chosen.tolist():
        blocks[j * B:(j + 1) * B] = True
    return {"scores": scores.tolist(), "tokens": tokens, "pooled": pooled.tolist(), "chosen": sorted(chosen.tolist()),
            "blocks": blocks, "token_runs": int(memory_segments(tokens)), "block_runs": int(memory_segments(blocks))}


class BlockSelectionScene(CourseScene):
    """A query scores every token (DSA) or every block's mean key (MoBA); the same 8 tokens, read in many runs or
    in two."""

    def construct(self) -> None:
        r = run_selection()
        self.add(title("Selecting blocks instead of tokens", chapter=19))

        # the cache: 6 blocks of 4 key cells, shaded by the last query's score
        fills = shades([max(s, 0.0) for s in r["scores"]], low=0.08, high=0.7)
        blocks = VGroup(*[VGroup(*[cell(SLOT, SLOT, MUTED, fills[j * B + i]) for i in range(B)]).arrange(RIGHT, buff=0)
                          for j in range(N // B)]).arrange(RIGHT, buff=GAP)
        blocks.move_to([0, 1.65, 0])
        keys = [c for block in blocks for c in block]
        cache_label = text("cached keys, 6 blocks of 4", SMALL, color=MUTED).next_to(blocks, UP, buff=0.12)
        cache_label.align_to(blocks, LEFT)
        query = cell(SLOT, SLOT, QUERY, 0.5).next_to(blocks, UP, buff=0.35).align_to(blocks, RIGHT)
        q_label = mathtex("q", color=QUERY).next_to(query, LEFT, buff=0.15)
        self.play(FadeIn(blocks), FadeIn(cache_label), FadeIn(query), FadeIn(q_label), run_time=1.0)

        # DSA: the top-8 tokens, wherever they are
        dsa_row = VGroup(*[cell(SLOT, SLOT, INDEX if r["tokens"][s] else MUTED, 0.75 if r["tokens"][s] else 0.04)
                           for s in range(N)])
        for s, c in enumerate(dsa_row):
            c.move_to(keys[s]).shift(DOWN * 1.55)
        dsa_label = text("DSA: the top-8 tokens", SMALL, color=INDEX).next_to(dsa_row, UP, buff=0.12)
        dsa_label.align_to(dsa_row, LEFT)
        dsa_count = text(f"{r['token_runs']} separate reads", BODY, color=INDEX).next_to(dsa_row, DOWN, buff=0.15)
        dsa_count.align_to(dsa_row, RIGHT)
        self.play(*[TransformFromCopy(keys[s], dsa_row[s]) for s in range(N)], FadeIn(dsa_label), run_time=1.2)
        self.play(FadeIn(dsa_count), run_time=0.6)
        self.wait(0.6)

        # MoBA: one mean key per block, scored by the query; the top 2 blocks (its own always)
        pooled_fills = shades([max(s, 0.0) for s in r["pooled"]], low=0.08, high=0.7)
        pooled = VGroup(*[cell(B * SLOT, SLOT, KEY, pooled_fills[j]) for j in range(N // B)])
        for j, c in enumerate(pooled):
            c.move_to(blocks[j]).shift(DOWN * 3.5)
        pooled_label = text("one mean key per block, scored by q", SMALL, color=KEY).next_to(pooled, UP, buff=0.12)
        pooled_label.align_to(pooled, LEFT)
        self.play(*[TransformFromCopy(blocks[j], pooled[j]) for j in range(N // B)], FadeIn(pooled_label),
                  run_time=1.2)
        boxes = VGroup(*[SurroundingRectangle(pooled[j], color=KEY, buff=0.04, stroke_width=5) for j in r["chosen"]])
        self.play(FadeIn(boxes), *[Indicate(pooled[j], color=KEY, scale_factor=1.05) for j in r["chosen"]],
                  run_time=1.0)
        moba_row = VGroup(*[cell(SLOT, SLOT, KEY if r["blocks"][s] else MUTED, 0.75 if r["blocks"][s] else 0.04)
                            for s in range(N)])
        for s, c in enumerate(moba_row):
            c.move_to(pooled[s // B]).shift(LEFT * (B - 1 - 2 * (s % B)) * SLOT / 2)
        moba_label = text("MoBA: the top-2 blocks", SMALL, color=KEY).next_to(moba_row, UP, buff=0.12)
        moba_label.align_to(moba_row, LEFT)
        moba_count = text(f"{r['block_runs']} contiguous reads", BODY, color=KEY).next_to(moba_row, DOWN, buff=0.15)
        moba_count.align_to(moba_row, RIGHT)
        self.play(FadeOut(boxes), FadeOut(pooled_label), FadeIn(moba_label),
                  *[TransformFromCopy(pooled[s // B], moba_row[s]) for s in range(N)], run_time=1.2)
        self.remove(*pooled)
        self.play(FadeIn(moba_count), run_time=0.6)
        caption = text("8 tokens either way: scattered, or in whole blocks", BODY).to_edge(DOWN, buff=0.3)
        self.play(FadeIn(caption), run_time=0.6)
        self.wait(2.5)
