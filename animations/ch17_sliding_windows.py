"""Chapter 17 · sliding windows and sinks: a window of W tokens slides along the sequence, one sink token stays
visible to every query, and the cache is a ring of S + W slots in which token t overwrites token t − W.

The slots each token lands in come from :class:`attnlab.window.RollingCache` (and :func:`attnlab.window.ring_slot`),
replayed token by token, so the ring drawn is the ring the library keeps.
"""

from __future__ import annotations

import torch
from manim import (
    DOWN,
    LEFT,
    RIGHT,
    UP,
    FadeIn,
    Rectangle,
    Transform,
    VGroup,
)

from animations.style import (
    CACHE,
    FAINT,
    HIGHLIGHT,
    INK,
    LATENT,
    MUTED,
    QUERY,
    SMALL,
    CourseScene,
    cell,
    step_caption,
    text,
    title,
)
from attnlab.window import RollingCache, ring_slot

N_TOKENS = 12  # tokens drawn
WINDOW = 4  # W
N_SINKS = 1  # S
CELL_W = 0.78
SINK_COLOR = LATENT


def ring_states(n_tokens: int = N_TOKENS, window: int = WINDOW, n_sinks: int = N_SINKS) -> list[list[int]]:
    """After each token t, the position each ring slot holds (-1: empty), from a real :class:`RollingCache`."""
    cache = RollingCache(window, n_sinks)
    states = []
    for _ in range(n_tokens):
        cache.update(k=torch.zeros(1, 1, 1, 1))
        states.append(cache.positions.tolist())
    return states


class SlidingWindowScene(CourseScene):
    """Tokens 0..11; query t sees the sink (token 0) and its last W = 4 tokens; the ring of 5 slots below fills,
    then token t overwrites the slot of token t − W."""

    def construct(self) -> None:
        states = ring_states()
        heading = title("Sliding windows and sinks", chapter=17)
        tokens = VGroup(*[cell(CELL_W, CELL_W, MUTED, 0.08, label=str(t)) for t in range(N_TOKENS)])
        tokens.arrange(RIGHT, buff=0.06).move_to([0.9, 1.55, 0])
        tokens_label = text("tokens", SMALL, color=INK).next_to(tokens, LEFT, buff=0.3)
        slots = VGroup(*[cell(CELL_W, CELL_W, CACHE, 0.04) for _ in range(N_SINKS + WINDOW)])
        slots.arrange(RIGHT, buff=0.06).move_to([0.9, -0.75, 0])
        slots_label = text("ring cache", SMALL, color=CACHE).next_to(slots, LEFT, buff=0.3)
        slot_numbers = VGroup(*[text(str(s), SMALL, color=MUTED).next_to(slots[s], DOWN, buff=0.12)
                                for s in range(N_SINKS + WINDOW)])
        slot_numbers.add(text("slot", SMALL, color=MUTED).next_to(slot_numbers, LEFT, buff=0.3).align_to(
            slots_label, RIGHT))
        window_box = self._window_box(tokens, 0)
        sees = text("query t sees the sink and its last W = 4 tokens", SMALL, color=QUERY)
        sees.next_to(tokens, UP, buff=0.3).align_to(tokens, LEFT)
        caption = step_caption("token t goes to slot", r"S + (t - S) \bmod W")

        self.add(heading)
        self.play(FadeIn(tokens), FadeIn(tokens_label), FadeIn(slots), FadeIn(slots_label), FadeIn(slot_numbers),
                  run_time=0.8)
        self.play(FadeIn(sees), FadeIn(caption), run_time=0.6)
        filled = VGroup(*[self._slot_cell(slots, s, -1, -1) for s in range(N_SINKS + WINDOW)])
        self.add(filled)
        for t, state in enumerate(states):
            anims = [Transform(window_box, self._window_box(tokens, t)),
                     Transform(tokens, self._token_row(tokens, t))]
            slot = ring_slot(t, WINDOW, N_SINKS)
            anims.append(Transform(filled, VGroup(*[self._slot_cell(slots, s, state[s], t)
                                                    for s in range(N_SINKS + WINDOW)])))
            if t == 0:
                self.add(window_box)
            self.play(*anims, run_time=0.5 if t < N_TOKENS - 1 else 0.8)
            if t == WINDOW:  # the first overwrite: token W lands on token S's slot
                self.wait(0.6)
            assert state[slot] == t
        self.wait(3.0)

    @staticmethod
    def _window_box(tokens: VGroup, t: int) -> Rectangle:
        """An outline around the last W tokens up to t."""
        first = max(0, t - WINDOW + 1)
        span = VGroup(*tokens[first:t + 1])
        return Rectangle(width=span.width + 0.14, height=CELL_W + 0.16, stroke_color=QUERY, stroke_width=5).move_to(
            span)

    @staticmethod
    def _token_row(tokens: VGroup, t: int) -> VGroup:
        """Token cells coloured for query t: the sink, the window, the query itself, the rest faint."""
        row = VGroup()
        for j, old in enumerate(tokens):
            if j == t:
                colour, fill = HIGHLIGHT, 0.55
            elif j < N_SINKS and j <= t:
                colour, fill = SINK_COLOR, 0.45
            elif t - WINDOW < j < t:
                colour, fill = QUERY, 0.25
            elif j < t:
                colour, fill = MUTED, 0.02
            else:
                colour, fill = FAINT, 0.02
            row.add(cell(CELL_W, CELL_W, colour, fill, label=str(j),
                         label_color=INK if j <= t else MUTED).move_to(old))
        return row

    @staticmethod
    def _slot_cell(slots: VGroup, s: int, position: int, t: int) -> VGroup:
        """Slot s holding token ``position`` (-1: empty), highlighted if token t was just written there."""
        if position < 0:
            return cell(CELL_W, CELL_W, CACHE, 0.04).move_to(slots[s])
        colour = HIGHLIGHT if position == t else SINK_COLOR if position < N_SINKS else CACHE
        return cell(CELL_W, CELL_W, colour, 0.35, label=str(position)).move_to(slots[s])
