"""The course's chapters, in one place.

:data:`CHAPTERS` is the one list of the course's chapters, in course order. Everything that lists
chapters reads it: chapter 0's map of the course (the notebook's table and the animation's chips), the
animations' registry (``animations/scenes.py``), :func:`attnlab.media.show_animation`, the scripts that
build, export and render, and the tests, which also check that README's chapter table, the notebooks
and the scene modules agree with it.

    >>> from attnlab.chapters import by_number
    >>> by_number(8).slug, by_number(8).video, by_number(8).scene
    ('08_mla_at_inference', '15:37', 'AbsorptionScene')

This module imports nothing but the standard library.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Chapter:
    """One chapter of the course.

    ``number`` (0, 1, ...) and ``slug`` ("08_mla_at_inference": the notebook's file name without its
    suffix, ``notebooks/<slug>.py`` and ``.ipynb``); ``title`` (chapter 0's map), ``topic`` (README's
    chapter table), ``builds`` (chapter 0's map: what you build), ``short`` (the animated course map's
    chip); ``video``: the video chapter's timestamp ("15:37"), or None for a chapter the course adds;
    ``scene``: the Manim scene class ("AbsorptionScene") and ``animation``: its module in
    ``animations/`` ("ch08_absorption"), both None for a chapter without an animation.
    """

    number: int
    slug: str
    title: str
    topic: str
    builds: str
    short: str
    video: str | None
    scene: str | None = None
    animation: str | None = None

    @property
    def notebook(self) -> str:
        """The executed notebook's file name, in ``notebooks/``: "08_mla_at_inference.ipynb"."""
        return f"{self.slug}.ipynb"

    @property
    def source(self) -> str:
        """The notebook's jupytext source, the file to edit, in ``notebooks/``: "08_mla_at_inference.py"."""
        return f"{self.slug}.py"

    @property
    def exercises(self) -> str:
        """The module of its exercise checks (``attnlab.exercises.chNN``) and of its solutions
        (``notebooks/solutions/chNN.py``): "ch08"."""
        return f"ch{self.number:02d}"

    @property
    def video_label(self) -> str:
        """The video column of the chapter tables: the timestamp, or "course" for a chapter the course adds."""
        return self.video if self.video is not None else "course"


#: Every chapter, in course order; ``CHAPTERS[n].number == n``.
CHAPTERS: tuple[Chapter, ...] = (
    Chapter(0, "00_introduction", "Introduction and map of the course",
            topic="Introduction, map of the course, the KV-cache calculator",
            builds="the cost of one token of context; the cache calculator",
            short="Introduction", video="00:00", scene="IntroductionScene", animation="ch00_introduction"),
    Chapter(1, "01_tokenization", "Tokenization",
            topic="Byte-level BPE from scratch, compared with Hugging Face `tokenizers`",
            builds="byte-pair encoding from scratch; ids to vectors",
            short="Tokenization", video="00:35", scene="TokenizationScene", animation="ch01_tokenization"),
    Chapter(2, "02_attention_vector_form", "Attention (vector form)",
            topic="One query, a loop over keys, softmax, weighted sum of values",
            builds="one query against many keys: dot products, softmax, a weighted sum",
            short="Vector attention", video="01:21", scene="AttentionVectorScene",
            animation="ch02_attention_vector"),
    Chapter(3, "03_attention_matrix_form", "Attention (matrix form)",
            topic="Q K^T / sqrt(d), the causal mask, multi-head attention",
            builds="all positions at once: QKᵀ, the causal mask, multiple heads",
            short="Matrix attention", video="04:26", scene="AttentionMatrixScene",
            animation="ch03_attention_matrix"),
    Chapter(4, "04_kv_caching", "Key-value caching",
            topic="Prefill and decode; what the cache holds and what it costs",
            builds="generation that keeps K and V instead of recomputing them",
            short="KV caching", video="07:07", scene="KVCacheScene", animation="ch04_kv_cache"),
    Chapter(5, "05_multi_query_attention", "Multi-query attention (MQA)",
            topic="One K/V head for all query heads",
            builds="one key/value head shared by all query heads",
            short="Multi-query", video="09:42", scene="MQAScene", animation="ch05_mqa"),
    Chapter(6, "06_grouped_query_attention", "Grouped-query attention (GQA)",
            topic="Groups of query heads share K/V; converting MHA to GQA",
            builds="groups of query heads share K/V; converting MHA by mean-pooling",
            short="Grouped-query", video="11:03", scene="GQAScene", animation="ch06_gqa"),
    Chapter(7, "07_multi_head_latent_attention", "Multi-head latent attention (MLA)",
            topic="MLA: cache a latent, re-expand K and V per head",
            builds="cache a small latent, rebuild K and V from it",
            short="Latent (MLA)", video="13:32", scene="MLAScene", animation="ch07_mla"),
    Chapter(8, "08_mla_at_inference", "MLA at inference time",
            topic="Absorbing W^UK into the query and W^UV into the output",
            builds="fold the up-projections into the query and the output",
            short="MLA inference", video="15:37", scene="AbsorptionScene", animation="ch08_absorption"),
    Chapter(9, "09_decoupled_rope", "Applying RoPE to MLA (decoupled RoPE)",
            topic="RoPE from scratch; why it blocks absorption; the shared RoPE key",
            builds="a shared RoPE key, since rotation blocks absorption",
            short="Decoupled RoPE", video="18:15", scene="DecoupledRoPEScene", animation="ch09_decoupled_rope"),
    Chapter(10, "10_deepseek_sparse_attention", "DeepSeek Sparse Attention (DSA)",
            topic="The lightning indexer, causal top-k, sparse MLA over gathered tokens",
            builds="a lightning indexer picks the top-k tokens for each query",
            short="Sparse (DSA)", video="22:18", scene="DSAScene", animation="ch10_dsa"),
    Chapter(11, "11_quantization_and_rotation", "Quantization and rotation in DSA",
            topic="FP8 e4m3 blocks, outliers, the Hadamard rotation",
            builds="a Hadamard rotation, then FP8 for the indexer",
            short="DSA in FP8", video="23:57", scene="HadamardFP8Scene", animation="ch11_hadamard_fp8"),
    Chapter(12, "12_dsa_training", "DSA training",
            topic="Dense warm-up of the indexer, then sparse training",
            builds="dense warm-up of the indexer, then sparse training",
            short="DSA training", video="27:44", scene="DSATrainingScene", animation="ch12_dsa_training"),
    Chapter(13, "13_fact_check", "Fact-check",
            topic="Every claim of the video's description and two summaries of it, with a computed verdict; "
                  "a real-model cache explorer",
            builds="every claim about these methods, checked by computation",
            short="Fact-check", video=None),
    Chapter(14, "14_how_fast_really", "How fast, really",
            topic="Measured decode time and cache bytes per scheme, peers side by side, the roofline, and "
                  "quality against cache size",
            builds="measured decode time, the roofline, quality against cache size",
            short="How fast, really", video=None),
    Chapter(15, "15_flash_attention", "FlashAttention: attention without the score matrix",
            topic="The online softmax, tiled attention equal to SDPA, HBM traffic against the matrix form, "
                  "split-KV decoding and the log-sum-exp merge",
            builds="exact attention tile by tile, never storing the n × n scores",
            short="FlashAttention", video=None, scene="FlashAttentionScene", animation="ch15_flash_attention"),
    Chapter(16, "16_paged_kv_cache", "The paged KV cache and prefix sharing",
            topic="Fixed-size pages and block tables (vLLM), fragmentation measured on simulated request streams, "
                  "copy-on-write prefix sharing, DeepSeek-V3.2's cache in 64-token pages",
            builds="a cache in pages: block tables, waste measured, shared prompts copied on write",
            short="Paged cache", video=None, scene="PagedCacheScene", animation="ch16_paged_kv_cache"),
    Chapter(17, "17_sliding_windows_and_sinks", "Sliding windows, sinks and shared KV",
            topic="Sliding-window attention and its rolling cache, local/global layers, attention sinks (kept "
                  "and learned), cross-layer KV sharing; quality against cache measured",
            builds="a rolling cache for windowed layers, sinks, layers that share K/V",
            short="Windows & sinks", video=None, scene="SlidingWindowScene", animation="ch17_sliding_windows"),
    Chapter(18, "18_linear_attention_hybrids", "Linear attention and hybrids",
            topic="Linear attention as a recurrence, the delta rule and Gated DeltaNet, the chunkwise form equal to "
                  "the recurrent one, a fixed state instead of a growing cache, recall measured, Qwen3-Next and "
                  "Kimi Linear's 3:1 hybrids",
            builds="a fixed-size state: linear attention, Gated DeltaNet, chunkwise = recurrent, recall measured",
            short="Linear attention", video=None, scene="LinearAttentionScene", animation="ch18_linear_attention"),
    Chapter(19, "19_block_sparse_selection", "Selecting blocks instead of tokens",
            topic="NSA, MoBA and Quest block selection and H2O/SnapKV eviction against DSA's token top-k at the same "
                  "budget: attention recall measured on the tiny model, contiguous blocks against gathered rows",
            builds="block-sparse selection: recall at a budget, and why kernels read blocks",
            short="Block selection", video=None, scene="BlockSelectionScene", animation="ch19_block_sparse"),
    Chapter(20, "20_deepseek_v4", "DeepSeek-V4: compressed sparse attention",
            topic="DeepSeek-V4's attention: shared-KV MQA with sinks and a 128-token window, CSA (4x compression, "
                  "indexer top-k) and HCA (128x, dense), matched to Hugging Face; its cache against V3.2's at 1M "
                  "tokens",
            builds="a window plus compressed entries: CSA selects them, HCA reads them all",
            short="DeepSeek-V4", video=None, scene="CompressedSparseScene", animation="ch20_deepseek_v4"),
)


def numbers() -> list[int]:
    """The chapter numbers, in course order: [0, 1, ..., 14]."""
    return [c.number for c in CHAPTERS]


def with_scenes() -> tuple[Chapter, ...]:
    """The chapters that have an animation, in course order."""
    return tuple(c for c in CHAPTERS if c.scene is not None)


def by_number(number: int) -> Chapter:
    """The chapter numbered ``number``; ValueError naming the argument if there is none."""
    if isinstance(number, int) and not isinstance(number, bool):
        for c in CHAPTERS:
            if c.number == number:
                return c
    raise ValueError(f"number={number!r} is not a chapter; choose one of {numbers()}")


def by_slug(slug: str) -> Chapter:
    """The chapter whose notebook is ``notebooks/<slug>.py`` ("08_mla_at_inference"); a notebook file name
    ("08_mla_at_inference.ipynb" or ".py") is accepted too. ValueError naming the argument if there is none."""
    if isinstance(slug, str):
        stem = slug.removesuffix(".ipynb").removesuffix(".py")
        for c in CHAPTERS:
            if c.slug == stem:
                return c
    raise ValueError(f"slug={slug!r} is not a chapter; choose one of {[c.slug for c in CHAPTERS]}")


def by_scene(scene: str) -> Chapter:
    """The chapter whose animation is the scene class ``scene`` ("KVCacheScene"); ValueError naming the
    argument if no chapter has it."""
    if isinstance(scene, str):
        for c in CHAPTERS:
            if c.scene == scene:
                return c
    raise ValueError(f"scene={scene!r} is not a chapter's animation; choose one of "
                     f"{[c.scene for c in with_scenes()]}")
