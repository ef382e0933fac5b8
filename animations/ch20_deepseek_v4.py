"""Chapter 20 · DeepSeek-V4's compressed sparse attention (CSA): tokens are pooled into compressed entries,
one per m = 4 tokens, each from an overlapping window of 2m tokens; the lightning indexer scores the entries
and keeps the top-k; the query attends, in one softmax, to those entries and to the window of raw tokens.

The entries, which ones are visible to the last query (w < (t + 1) // m) and which ones the indexer keeps are
read off a real tiny :class:`attnlab.v4.DeepSeekV4Attention` CSA layer run on 20 random tokens.
"""

from __future__ import annotations

import torch
from manim import (
    DOWN,
    LEFT,
    RIGHT,
    UP,
    Create,
    FadeIn,
    FadeOut,
    Indicate,
    Line,
    TransformFromCopy,
    VGroup,
)

from animations.style import (
    BODY,
    CACHE,
    HIGHLIGHT,
    INDEX,
    INK,
    KEY,
    LATENT,
    MUTED,
    QUERY,
    SMALL,
    CourseScene,
    cell,
    mathtex,
    text,
    title,
)
from attnlab.v4 import DeepSeekV4Attention, V4AttentionConfig

N_TOKENS = 20
RATE = 4  # m: one entry per 4 tokens, each pooling a window of 2m = 8
WINDOW = 4  # raw tokens every layer keeps (128 in V4; 4 here to fit the frame)
TOP_K = 2
SLOT = 0.45  # width of one token cell, scene units
TOKENS_Y, ENTRIES_Y, QUERY_Y = 1.55, -0.75, -2.35


def run_layer() -> dict:
    """The last query's view of a tiny random CSA layer: entries held, entries visible to it, the indexer's
    scores over them and its top-k choice (best first)."""
    config = V4AttentionConfig(d_model=16, n_heads=2, q_lora_rank=8, o_groups=2, o_lora_rank=4, head_dim=8,
                               rope_head_dim=4, window=WINDOW, layer_type="csa", compress_rate=RATE, index_n_heads=2,
                               index_head_dim=8, index_topk=TOP_K)
    torch.manual_seed(0)
    layer = DeepSeekV4Attention(config).double()
    with torch.no_grad():
        for p in layer.parameters():
            p.normal_(0.0, 0.5)
        out = layer(torch.randn(1, N_TOKENS, 16, dtype=torch.float64))
    t = N_TOKENS - 1
    chosen = [int(w) for w in out.selection.indices[0, t] if w >= 0]
    return {"entries": int(out.selection.scores.shape[-1]), "visible": (t + 1) // RATE, "chosen": chosen, "query": t}


class CompressedSparseScene(CourseScene):
    """Tokens -> overlapping windows pooled into entries -> the indexer's top-k -> one softmax with the window."""

    def construct(self) -> None:
        s = run_layer()
        heading = title("DeepSeek-V4: CSA and the window", chapter=20)
        self.add(heading)

        # the tokens of one sequence
        tokens = VGroup(*[cell(SLOT, SLOT, MUTED, 0.2) for _ in range(N_TOKENS)]).arrange(RIGHT, buff=0)
        tokens.move_to([-0.2, TOKENS_Y, 0])
        tokens_label = text("tokens", SMALL, color=MUTED).next_to(tokens, LEFT, buff=0.3)
        self.play(FadeIn(tokens), FadeIn(tokens_label), run_time=0.8)

        # overlapping windows of 2m tokens at stride m, each pooled into one entry under its own m tokens
        brackets = VGroup()
        for w in range(s["entries"]):
            first = tokens[max(0, RATE * (w - 1))]
            last = tokens[RATE * w + RATE - 1]
            y = TOKENS_Y - 0.5 - 0.22 * (w % 2)
            brackets.add(Line([first.get_left()[0] + 0.06, y, 0], [last.get_right()[0] - 0.06, y, 0],
                              color=LATENT, stroke_width=5))
        entries = VGroup(*[cell(SLOT, SLOT, KEY, 0.35) for _ in range(s["entries"])])
        for w, entry in enumerate(entries):
            own = VGroup(*tokens[RATE * w:RATE * w + RATE])
            entry.move_to([own.get_center()[0], ENTRIES_Y, 0])
        entries_label = text("entries", SMALL, color=KEY).next_to(entries, LEFT, buff=0.3)
        entries_label.align_to(tokens_label, RIGHT)
        pooling = text("windows of 8 at stride 4, gated pooling", SMALL, color=LATENT)
        pooling.next_to(brackets, DOWN, buff=0.12).align_to(tokens, RIGHT)
        self.play(Create(brackets), FadeIn(pooling), run_time=1.0)
        for w in range(s["entries"]):
            window = VGroup(*tokens[max(0, RATE * (w - 1)):RATE * w + RATE])
            self.play(Indicate(brackets[w], color=HIGHLIGHT, scale_factor=1.0),
                      TransformFromCopy(window, entries[w]), run_time=0.45)
        self.play(FadeIn(entries_label), FadeOut(brackets), FadeOut(pooling), run_time=0.6)

        # the query: the last token; the window of raw tokens it keeps
        t = s["query"]
        query = cell(SLOT, SLOT, QUERY, 0.5, label="q")
        query.move_to([2.0, QUERY_Y, 0])
        query_label = text(f"query of token {t}", SMALL, color=QUERY).next_to(query, RIGHT, buff=0.25)
        self.play(tokens[t][0].animate.set_stroke(QUERY, width=4), FadeIn(query), FadeIn(query_label), run_time=0.6)
        raw = VGroup(*tokens[N_TOKENS - WINDOW:])
        self.play(*[c[0].animate.set_fill(CACHE, opacity=0.35).set_stroke(CACHE) for c in raw], run_time=0.6)
        raw_label = text(f"window: last {WINDOW} raw tokens", SMALL, color=CACHE).next_to(raw, UP, buff=0.15)
        raw_label.align_to(tokens, RIGHT)
        self.play(FadeIn(raw_label), run_time=0.5)

        # the indexer scores the visible entries and keeps the top-k
        indexer = text(f"indexer: top-{TOP_K} of {s['visible']} entries", SMALL, color=INDEX)
        indexer.next_to(entries, UP, buff=0.25).align_to(tokens, LEFT)
        self.play(FadeIn(indexer), run_time=0.5)
        fades = [entries[w][0].animate.set_fill(MUTED, opacity=0.12).set_stroke(MUTED)
                 for w in range(s["entries"]) if w not in s["chosen"]]
        keeps = [entries[w][0].animate.set_fill(INDEX, opacity=0.6).set_stroke(INDEX, width=4) for w in s["chosen"]]
        self.play(*fades, *keeps, run_time=0.8)

        # one softmax over the chosen entries and the window
        lines = VGroup(*[Line(query.get_top(), entries[w].get_bottom(), color=INDEX, stroke_width=3)
                         for w in s["chosen"]])
        lines.add(*[Line(query.get_top(), c.get_bottom(), color=CACHE, stroke_width=2, stroke_opacity=0.7)
                    for c in raw])
        for line in lines:
            line.set_z_index(-1)
        self.play(Create(lines), run_time=1.0)
        caption = VGroup(text("one softmax over", BODY, color=INK),
                         mathtex(r"\text{window} \cup \text{top-}k,\quad w < \lfloor (t+1)/4 \rfloor"))
        caption.arrange(RIGHT, buff=0.25).to_edge(DOWN, buff=0.3)
        self.play(FadeIn(caption), run_time=0.6)
        self.wait(2.5)
