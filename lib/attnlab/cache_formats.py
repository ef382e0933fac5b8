"""How a cached token is laid out in bytes: one dtype for every element, or DeepSeek's mixed FP8 layouts.

The course counts caches in numbers per token and layer (:mod:`attnlab.costs`, :mod:`attnlab.schemes`) and
turns them into bytes with one storage dtype for every cached element (bfloat16 by default). Serving code
stores some parts in FP8 or FP4 with block scales beside them, so the same token takes a different number of
bytes. A :class:`ByteLayout` names each part of such a layout (how many values, how many bytes each), so
``layout.bytes`` is a sum the learner can read, and the published layouts below carry their sources.

    >>> DEEPSEEK_V32_FP8_MLA.bytes, DEEPSEEK_V32_FP8_INDEX_KEY.bytes
    (656, 132)
    >>> for part in DEEPSEEK_V32_FP8_MLA.parts:
    ...     print(part.count, "x", part.size, part.what)
    512 x 1 B latent c^KV, float8_e4m3
    4 x 4 B scales, one per 128 latent values, float32
    64 x 2 B RoPE key k^R, bfloat16

This module imports nothing from the rest of attnlab but the input checks.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from attnlab._validate import check_positive_int, check_sized_dtype, check_type


@dataclass(frozen=True)
class BytePart:
    """``count`` values of ``bits`` bits each, described by ``what`` ("latent c^KV, float8_e4m3")."""

    what: str
    count: int
    bits: int

    def __post_init__(self) -> None:
        check_type("what", self.what, str)
        check_positive_int("count", self.count)
        check_positive_int("bits", self.bits)
        if self.count * self.bits % 8:
            raise ValueError(f"count * bits = {self.count} * {self.bits} must fill whole bytes (a multiple of 8)")

    @property
    def bytes(self) -> int:
        return self.count * self.bits // 8

    @property
    def size(self) -> str:
        """One value's size as the formulas write it: "1 B", "2 B", "4 bit"."""
        return f"{self.bits // 8} B" if self.bits % 8 == 0 else f"{self.bits} bit"


@dataclass(frozen=True)
class ByteLayout:
    """One cached token of one layer as bytes: its named parts, in storage order, and where the layout is
    published. ``bytes`` is their sum; ``numbers`` counts the model's values only (scales and padding are
    parts whose ``what`` starts with "scale" or "pad" and are not model numbers)."""

    name: str
    parts: tuple[BytePart, ...]
    source: str

    def __post_init__(self) -> None:
        check_type("name", self.name, str)
        check_type("parts", self.parts, tuple)
        if not self.parts:
            raise ValueError("parts must name at least one BytePart, got an empty tuple")
        for part in self.parts:
            check_type("parts", part, BytePart, "a tuple of BytePart")

    @property
    def bytes(self) -> int:
        """Bytes per token and layer: the sum of the parts."""
        return sum(part.bytes for part in self.parts)

    @property
    def numbers(self) -> int:
        """The model's values per token and layer (what :mod:`attnlab.costs` counts), scales and padding left out."""
        return sum(part.count for part in self.parts if not part.what.startswith(("scale", "pad")))

    def formula(self) -> str:
        """The sum written out: "512 x 1 B (...) + 4 x 4 B (...) + ... = 656 B"."""
        terms = " + ".join(f"{p.count} x {p.size} ({p.what})" for p in self.parts)
        return f"{terms} = {self.bytes} B"


def uniform_layout(numbers: int, dtype: torch.dtype | str = torch.bfloat16, what: str = "cached values") -> ByteLayout:
    """The course's default accounting: ``numbers`` values per token and layer, every one stored in ``dtype``
    (576 numbers in bfloat16: 1152 bytes)."""
    check_positive_int("numbers", numbers)
    dtype = check_sized_dtype("dtype", dtype)
    bits = 8 * torch.empty((), dtype=dtype).element_size()
    name = str(dtype).removeprefix("torch.")
    return ByteLayout(f"{numbers} x {name}", (BytePart(f"{what}, {name}", numbers, bits),),
                      source="every cached element stored in one dtype")


#: DeepSeek-V3.2's MLA cache entry in FP8, as FlashMLA stores it: the 512-wide latent in float8 e4m3 with one
#: float32 scale per 128 values, the 64-wide decoupled RoPE key kept in bfloat16 (FlashMLA README, "FP8 KV
#: cache"; DeepSeek-V3.2-Exp ``inference/model.py``).
DEEPSEEK_V32_FP8_MLA = ByteLayout(
    "DeepSeek-V3.2 MLA entry, FP8",
    (BytePart("latent c^KV, float8_e4m3", 512, 8),
     BytePart("scales, one per 128 latent values, float32", 4, 32),
     BytePart("RoPE key k^R, bfloat16", 64, 16)),
    source="FlashMLA README (FP8 KV cache: 656 bytes per token); DeepSeek-V3.2-Exp inference/model.py",
)

#: DeepSeek-V3.2's lightning-indexer key in FP8: 128 e4m3 values (after the Hadamard rotation) and one float32
#: scale (DeepSeek-V3.2-Exp ``inference/model.py``, ``act_quant`` with block size 128).
DEEPSEEK_V32_FP8_INDEX_KEY = ByteLayout(
    "DeepSeek-V3.2 index key, FP8",
    (BytePart("index key k^I, float8_e4m3", 128, 8),
     BytePart("scale, float32", 1, 32)),
    source="DeepSeek-V3.2-Exp inference/model.py (Indexer: k_cache float8_e4m3, k_scale_cache float32)",
)

#: DeepSeek-V4's attention entry in FP8: 448 e4m3 values, the 64 RoPE dimensions in bfloat16, 7 ue8m0 (one-byte
#: power-of-two) scales, one byte of padding (DeepSeek-V4 report and ``inference/model.py``).
DEEPSEEK_V4_FP8_ENTRY = ByteLayout(
    "DeepSeek-V4 entry, FP8",
    (BytePart("entry, float8_e4m3", 448, 8),
     BytePart("RoPE part, bfloat16", 64, 16),
     BytePart("scales, ue8m0, one per 64 values", 7, 8),
     BytePart("pad", 1, 8)),
    source="DeepSeek-V4 technical report; DeepSeek-V4 inference/model.py",
)

#: DeepSeek-V4's index key in FP4: 128 four-bit values (64 bytes) and one one-byte ue8m0 scale per 32 values.
DEEPSEEK_V4_FP4_INDEX_KEY = ByteLayout(
    "DeepSeek-V4 index key, FP4",
    (BytePart("index key, fp4 e2m1", 128, 4),
     BytePart("scales, ue8m0, one per 32 values", 4, 8)),
    source="DeepSeek-V4 technical report; DeepSeek-V4 inference/model.py",
)

#: Every published layout above, by name.
LAYOUTS: dict[str, ByteLayout] = {
    layout.name: layout
    for layout in (DEEPSEEK_V32_FP8_MLA, DEEPSEEK_V32_FP8_INDEX_KEY, DEEPSEEK_V4_FP8_ENTRY, DEEPSEEK_V4_FP4_INDEX_KEY)
}


# ----------------------------------------------------------------------------------------------------
# pages: a block of tokens as bytes (chapter 16)

#: Tokens per page of FlashMLA's paged cache: "Paged kvcache with block size of 64" (FlashMLA README); its
#: sparse decoding addresses a cached token as page * 64 + slot.
FLASHMLA_PAGE_TOKENS = 64


@dataclass(frozen=True)
class PageSpan:
    """One run of bytes in a page: part ``what`` of token ``token``, bytes ``start`` to ``stop`` - 1."""

    token: int
    what: str
    start: int
    stop: int


def page_bytes(layout: ByteLayout, block_size: int = FLASHMLA_PAGE_TOKENS) -> int:
    """Bytes of one page of one layer: ``block_size`` tokens of ``layout.bytes`` each (64 x 656 = 41,984 for
    DeepSeek-V3.2's FP8 MLA entry)."""
    check_type("layout", layout, ByteLayout)
    return check_positive_int("block_size", block_size) * layout.bytes


def page_spans(layout: ByteLayout, block_size: int = FLASHMLA_PAGE_TOKENS) -> tuple[PageSpan, ...]:
    """Where each part of each token sits in one page, token after token, each token's parts in
    ``layout``'s order (FlashMLA's FP8 cache: bytes [0, 512) the e4m3 latent, [512, 528) the four float32
    scales, [528, 656) the bfloat16 RoPE key, then the next token at 656): token i's part starts at
    i * layout.bytes + the bytes of the parts before it."""
    page_bytes(layout, block_size)  # checks both arguments
    spans, offset = [], 0
    for token in range(block_size):
        for part in layout.parts:
            spans.append(PageSpan(token, part.what, offset, offset + part.bytes))
            offset += part.bytes
    return tuple(spans)


def tokens_in_budget(layouts: tuple[ByteLayout, ...], n_layers: int, budget_bytes: int,
                     block_size: int = FLASHMLA_PAGE_TOKENS) -> int:
    """Tokens whose cache fits in ``budget_bytes`` when every token takes one entry of each of ``layouts`` in
    each of ``n_layers`` layers, stored in whole pages of ``block_size`` tokens:
    B floor(budget / (n_layers sum_layouts B bytes))."""
    check_type("layouts", layouts, tuple)
    if not layouts:
        raise ValueError("layouts must name at least one ByteLayout, got an empty tuple")
    check_positive_int("n_layers", n_layers)
    check_positive_int("budget_bytes", budget_bytes)
    per_page = n_layers * sum(page_bytes(layout, block_size) for layout in layouts)  # one page in every layer
    return block_size * (budget_bytes // per_page)
