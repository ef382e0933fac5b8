"""Chapter 4 · the KV cache: generate one token at a time, compute only the new token's q, k, v, and
reuse the keys and values of every earlier token from the cache.

The cache grows by one column of K and one of V per generated token. The counter at the bottom sizes
that cache for a real model, Llama-3-8B in bfloat16: the per-layer count is
:meth:`attnlab.gqa.AttentionConfig.cache_elements_per_token` (2 n_kv_heads head_dim), and the totals are
:func:`attnlab.sizing.kv_cache_bytes`. The picture draws one head of one layer.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from manim import (
    DOWN,
    RIGHT,
    FadeIn,
    FadeOut,
    Indicate,
    ReplacementTransform,
    RoundedRectangle,
    Transform,
    VGroup,
)

from animations.style import (
    BODY,
    CACHE,
    HIGHLIGHT,
    KEY,
    MUTED,
    QUERY,
    SMALL,
    VALUE,
    CourseScene,
    baseline_text,
    cell,
    column,
    mathtex,
    text,
    title,
)
from attnlab import sizing
from attnlab.devices import dtype_bytes
from attnlab.gqa import AttentionConfig

PROMPT = ("The", "cat", "sat")
GENERATED = ("on", "the", "warm", "mat")
MODEL = "llama-3-8b"
D = 4  # cells drawn per vector
SEED = 0


@dataclass(frozen=True)
class CacheCount:
    """The counter after ``tokens`` tokens: ``bytes_per_token`` (all layers) and ``total`` bytes."""

    tokens: int
    bytes_per_token: int
    total: int

    def label(self) -> str:
        """"KV cache: 7 tokens × 131 kB = 918 kB"."""
        return (f"KV cache: {self.tokens} tokens × {sizing.format_bytes(self.bytes_per_token)} = "
                f"{sizing.format_bytes(self.total)}")


def layer_config(model: str = MODEL) -> AttentionConfig:
    """The attention layer of ``model`` as an :class:`~attnlab.gqa.AttentionConfig` (published shape)."""
    spec = sizing.get_model(model)
    return AttentionConfig(d_model=spec.hidden_size, n_heads=spec.n_heads, n_kv_heads=spec.n_kv_heads,
                           head_dim=spec.head_dim)


def cache_counts(model: str = MODEL, n_tokens: int = len(PROMPT) + len(GENERATED)) -> list[CacheCount]:
    """The counter for 1..n_tokens tokens of ``model`` in bfloat16: bytes per token =
    cache_elements_per_token x n_layers x 2 B, totals from :func:`attnlab.sizing.kv_cache_bytes`."""
    spec = sizing.get_model(model)
    per_token = layer_config(model).cache_elements_per_token() * spec.n_layers * dtype_bytes(torch.bfloat16)
    if per_token != sizing.cache_bytes_per_token(spec):
        raise RuntimeError("AttentionConfig and attnlab.sizing disagree on the bytes per token")
    return [CacheCount(t, per_token, sizing.kv_cache_bytes(spec, seq_len=t)) for t in range(1, n_tokens + 1)]


class KVCacheScene(CourseScene):
    """Prefill a three-token prompt, then decode four tokens; the cache grows one K and one V column each."""

    def construct(self) -> None:
        spec = sizing.get_model(MODEL)
        counts = cache_counts()
        words = PROMPT + GENERATED
        n_total = len(words)
        g = torch.Generator().manual_seed(SEED)
        vecs = torch.randn(3, n_total, D, generator=g)  # q, k, v of every position: (3, n, D)
        xs = [-4.0 + 1.5 * t for t in range(n_total)]
        rows_y = {"q": 1.2, "k": -0.4, "v": -1.85}  # centres of the q, K, V rows

        heading = title("The KV cache", chapter=4)
        row_labels = VGroup()
        for name, color, note in (("q", QUERY, "new token"), ("K", KEY, "cached"), ("V", VALUE, "cached")):
            label = VGroup(mathtex(name, color=color), text(note, SMALL, color=MUTED)).arrange(DOWN, buff=0.08)
            row_labels.add(label.move_to([-5.75, rows_y[name.lower()], 0]))

        def token_box(t: int) -> VGroup:
            word = baseline_text(words[t], BODY)
            width = max(1.1, VGroup(*word.submobjects[:-2]).width + 0.3)
            return cell(width, 0.62, MUTED, 0.08, words[t], BODY, mono=False).move_to([xs[t], 2.35, 0])

        def vector(kind: int, t: int) -> VGroup:
            color = (QUERY, KEY, VALUE)[kind]
            return column(vecs[kind, t].tolist(), color, cell_size=0.34).move_to([xs[t], rows_y["qkv"[kind]], 0])

        def cache_box(n: int) -> RoundedRectangle:
            """The red outline around the first n columns of K and V."""
            box = RoundedRectangle(corner_radius=0.12, width=xs[n - 1] - xs[0] + 1.05, height=3.1,
                                   stroke_color=CACHE, stroke_width=4)
            return box.move_to([(xs[0] + xs[n - 1]) / 2, (rows_y["k"] + rows_y["v"]) / 2, 0])

        def counter(n: int) -> VGroup:
            line = text(counts[n - 1].label(), BODY, color=CACHE)
            return line.move_to([0, -3.12, 0])

        note = text(f"counted for {spec.name}: {spec.n_layers} layers × {spec.n_kv_heads} KV heads, bf16",
                    SMALL, color=MUTED).move_to([0, -3.72, 0])

        # prefill: the prompt's q, k, v all at once; K and V go into the cache
        tokens = VGroup(*[token_box(t) for t in range(len(PROMPT))])
        q_cols = VGroup(*[vector(0, t) for t in range(len(PROMPT))])
        k_cols = VGroup(*[vector(1, t) for t in range(len(PROMPT))])
        v_cols = VGroup(*[vector(2, t) for t in range(len(PROMPT))])
        self.add(heading)
        self.play(FadeIn(tokens), FadeIn(row_labels), run_time=1.0)
        self.play(FadeIn(q_cols, shift=DOWN * 0.2), FadeIn(k_cols, shift=DOWN * 0.2), FadeIn(v_cols, shift=DOWN * 0.2),
                  run_time=1.0)
        box = cache_box(len(PROMPT))
        count = counter(len(PROMPT))
        self.play(FadeIn(box), FadeIn(count), FadeIn(note), FadeOut(q_cols[:-1]), run_time=1.0)
        self.wait(0.5)
        q_now = q_cols[-1]

        # decode: one new token per step; only its q, k, v are computed
        for t in range(len(PROMPT), n_total):
            new_token = token_box(t)
            new_token[0].set_stroke(HIGHLIGHT, width=4)
            q_new, k_new, v_new = vector(0, t), vector(1, t), vector(2, t)
            new_frame = RoundedRectangle(corner_radius=0.1, width=1.0, height=5.0, stroke_color=HIGHLIGHT,
                                         stroke_width=3).move_to([xs[t], (rows_y["q"] + rows_y["v"]) / 2, 0])
            self.play(FadeOut(q_now), FadeIn(new_token, shift=RIGHT * 0.3),
                      *[tok[0].animate.set_stroke(MUTED, width=2) for tok in tokens[-1:]], run_time=0.5)
            tokens.add(new_token)
            self.play(FadeIn(q_new, shift=DOWN * 0.2), FadeIn(k_new, shift=DOWN * 0.2),
                      FadeIn(v_new, shift=DOWN * 0.2), FadeIn(new_frame), run_time=0.6)
            # the new query reads every cached key and value: nothing old is recomputed
            self.play(Indicate(VGroup(k_cols, v_cols), color=CACHE, scale_factor=1.04), run_time=0.7)
            k_cols.add(k_new)
            v_cols.add(v_new)
            new_count = counter(t + 1)
            self.play(Transform(box, cache_box(t + 1)), ReplacementTransform(count, new_count), FadeOut(new_frame),
                      run_time=0.6)
            count, q_now = new_count, q_new
        self.wait(2.0)


