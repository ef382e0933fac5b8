"""Chapter 1 · tokenization: text -> UTF-8 bytes -> byte-pair merges -> token ids.

The phrase is cut into chunks (merges never cross a chunk), encoded as UTF-8 bytes, and the course
tokenizer's merges (:func:`attnlab.tokenization.load_tokenizer`, vocabulary 512) are replayed lowest
rank first, exactly as its ``encode`` does; every merge shown is one the tokenizer learned, and the ids
at the end are ``tokenizer.encode(PHRASE)``.
"""

from __future__ import annotations

from dataclasses import dataclass

from manim import (
    DOWN,
    UP,
    FadeIn,
    FadeOut,
    LaggedStart,
    ReplacementTransform,
    VGroup,
)

from animations.style import (
    BODY,
    HIGHLIGHT,
    INK,
    LARGE,
    MUTED,
    SMALL,
    CourseScene,
    baseline_text,
    cell,
    centre_label,
    text,
    tint,
    title,
)
from attnlab.tokenization import BPETokenizer, load_tokenizer, merge, render_token, split_chunks

PHRASE = "the attention"
SLOT = 0.98  # width of one byte's cell, in scene units
CHUNK_GAP = 0.35  # extra space between two chunks
CELL_H = 1.2


@dataclass(frozen=True)
class Piece:
    """One token while merging: its ``id``, the chunk it lies in, and the bytes it covers (start, count)."""

    id: int
    chunk: int
    start: int
    n_bytes: int


@dataclass(frozen=True)
class MergeStep:
    """One merge: ``pair`` -> ``new_id`` (learned as merge number ``new_id - 256``), and the pieces after it."""

    pair: tuple[int, int]
    new_id: int
    pieces: tuple[Piece, ...]


def initial_pieces(phrase: str = PHRASE) -> tuple[Piece, ...]:
    """Every UTF-8 byte of ``phrase`` as its own piece, chunk by chunk (:func:`split_chunks`)."""
    pieces, start = [], 0
    for c, chunk in enumerate(split_chunks(phrase)):
        for b in chunk.encode("utf-8"):
            pieces.append(Piece(b, c, start, 1))
            start += 1
    return tuple(pieces)


def merge_steps(tokenizer: BPETokenizer, phrase: str = PHRASE) -> list[MergeStep]:
    """Replay ``tokenizer``'s merges on ``phrase``: at each step the lowest-ranked pair present in any
    chunk is merged wherever it occurs (left to right, no overlaps, as :func:`attnlab.tokenization.merge`),
    until no pair of the phrase was ever merged. The final ids equal ``tokenizer.encode(phrase)``."""
    pieces = list(initial_pieces(phrase))
    steps = []
    while True:
        pairs = [(a.id, b.id) for a, b in zip(pieces, pieces[1:], strict=False) if a.chunk == b.chunk]
        known = [p for p in pairs if p in tokenizer.merges]
        if not known:
            break
        pair = min(known, key=tokenizer.merges.__getitem__)
        new_id = tokenizer.merges[pair]
        merged, i = [], 0
        while i < len(pieces):
            a = pieces[i]
            b = pieces[i + 1] if i + 1 < len(pieces) else None
            if b is not None and a.chunk == b.chunk and (a.id, b.id) == pair:
                merged.append(Piece(new_id, a.chunk, a.start, a.n_bytes + b.n_bytes))
                i += 2
            else:
                merged.append(a)
                i += 1
        for c in {p.chunk for p in pieces}:  # the same result as the library's merge, chunk by chunk
            before = [p.id for p in pieces if p.chunk == c]
            if merge(before, pair, new_id) != [p.id for p in merged if p.chunk == c]:
                raise RuntimeError(f"replaying merge {pair} -> {new_id} disagrees with attnlab.tokenization.merge")
        pieces = merged
        steps.append(MergeStep(pair, new_id, tuple(pieces)))
    return steps


def shown(tokenizer: BPETokenizer, token_id: int) -> str:
    """A token's text for the screen, its spaces drawn as "␣"."""
    return render_token(tokenizer.vocab[token_id]).replace(" ", "␣")


class TokenizationScene(CourseScene):
    """'the attention': 13 UTF-8 bytes, eight real merges of the course tokenizer, five token ids."""

    def construct(self) -> None:
        tok = load_tokenizer()
        start = initial_pieces()
        steps = merge_steps(tok)
        n_bytes = len(start)
        x0 = -(n_bytes * SLOT + CHUNK_GAP * start[-1].chunk) / 2
        row_y = 0.35

        def place(piece: Piece) -> float:
            """x of the centre of a piece's cell."""
            return x0 + (piece.start + piece.n_bytes / 2) * SLOT + piece.chunk * CHUNK_GAP

        def piece_cell(piece: Piece, merged: bool) -> VGroup:
            box = cell(piece.n_bytes * SLOT - 0.08, CELL_H, INK if merged else MUTED, 0.0)[0]
            box.set_fill(tint(HIGHLIGHT, 0.22) if merged else tint(MUTED, 0.06)).move_to([place(piece), row_y, 0])
            word = centre_label(baseline_text(shown(tok, piece.id), BODY, mono=True), box).shift(UP * 0.25)
            number = centre_label(baseline_text(str(piece.id), SMALL, mono=True, color=MUTED), box).shift(DOWN * 0.27)
            return VGroup(box, word, number)

        heading = title("Tokenization", chapter=1)
        phrase = text(f"“{PHRASE}”", LARGE + 4, mono=True).move_to([0, 2.25, 0])
        self.add(heading)
        self.play(FadeIn(phrase), run_time=1.0)

        # 1. UTF-8: one byte per character here, split into chunks that merges never cross
        cells = VGroup(*[piece_cell(p, False) for p in start])
        chunks = len(split_chunks(PHRASE))
        step_line = text(f"UTF-8: {n_bytes} bytes in {chunks} chunks", BODY).move_to([0, -1.35, 0])
        letters = [m for m in phrase.submobjects[1:-1]]  # the glyphs between the quotes (spaces have none)
        glyph_of_byte = [i for i, ch in enumerate(PHRASE) if not ch.isspace()]
        self.play(LaggedStart(*[FadeIn(VGroup(c[0], c[2]), shift=DOWN * 0.2) for c in cells], lag_ratio=0.08),
                  *[FadeIn(cells[i][1], target_position=letters[k]) for k, i in enumerate(glyph_of_byte)],
                  *[FadeIn(cells[i][1]) for i, ch in enumerate(PHRASE) if ch.isspace()],
                  FadeIn(step_line), run_time=1.8)
        self.wait(0.6)

        # 2. the merges, lowest rank (earliest learned) first
        current = list(start)
        for step in steps:
            a, b = step.pair
            targets = [i for i in range(len(current) - 1)
                       if (current[i].id, current[i + 1].id) == (a, b) and current[i].chunk == current[i + 1].chunk]
            # non-overlapping, left to right
            chosen, last = [], -2
            for i in targets:
                if i > last + 1:
                    chosen.append(i)
                    last = i
            pair_text = f"“{shown(tok, a)}” + “{shown(tok, b)}”"
            line = text(f"merge #{step.new_id - 256}: {pair_text} → {step.new_id}", BODY)
            line.move_to([0, -1.35, 0])
            marks = [cells[i][0].copy().set_fill(opacity=0).set_stroke(HIGHLIGHT, width=6) for i in chosen]
            marks += [cells[i + 1][0].copy().set_fill(opacity=0).set_stroke(HIGHLIGHT, width=6) for i in chosen]
            self.play(ReplacementTransform(step_line, line), *[FadeIn(m) for m in marks], run_time=0.45)
            step_line = line
            new_cells, anims, i = [], [], 0
            while i < len(current):  # step.pieces lists the pieces in the same order
                if i in chosen:
                    merged = piece_cell(step.pieces[len(new_cells)], True)
                    anims.append(ReplacementTransform(VGroup(cells[i], cells[i + 1]), merged))
                    new_cells.append(merged)
                    i += 2
                else:
                    new_cells.append(cells[i])
                    i += 1
            self.play(*anims, *[FadeOut(m) for m in marks], run_time=0.6)
            cells = VGroup(*new_cells)
            current = list(step.pieces)
            self.wait(0.1)

        # 3. the ids the model reads
        ids = tok.encode(PHRASE)
        if [p.id for p in current] != ids:
            raise RuntimeError("the replayed merges do not give tokenizer.encode(PHRASE)")
        summary = text(f"{n_bytes} bytes → {len(ids)} tokens after {len(steps)} merges", BODY)
        summary.move_to([0, -1.35, 0])
        id_line = text(f"ids = {ids}", LARGE, mono=True).move_to([0, -2.5, 0])
        self.play(ReplacementTransform(step_line, summary), FadeIn(id_line, shift=DOWN * 0.2), run_time=1.0)
        self.wait(2.5)
