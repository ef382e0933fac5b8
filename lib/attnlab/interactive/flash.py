"""The widget and helpers of chapter 15 (FlashAttention).

Everything the widget shows is computed by pure functions, so tests check it without a browser:
:func:`tile_figures` (HBM traffic of the standard and the tiled forward, SRAM per tile, score bytes never
written, all from :mod:`attnlab.costs`) and :func:`tile_readout_html` (them as an HTML table).
:func:`tile_explorer` wraps them in sliders that offer only valid values and whose callback only sets the
table's value.
"""

from __future__ import annotations

import html

import ipywidgets as widgets

from attnlab import costs
from attnlab._validate import check_bool, check_choice
from attnlab.sizing import format_bytes
from attnlab.widgets import row

#: Tile sizes the sliders offer (B_r and B_c): powers of two, as the kernels use.
BLOCK_OPTIONS: tuple[int, ...] = (16, 32, 64, 128, 256)
#: Head widths offered (d): the usual ones.
HEAD_DIM_OPTIONS: tuple[int, ...] = (64, 128, 256)
#: Sequence lengths offered: 1K to 128K tokens.
LENGTH_OPTIONS: tuple[tuple[str, int], ...] = tuple((f"{n // 1024}K", n) for n in (2**k for k in range(10, 18)))
#: Shared memory one thread block may use on an H100: 227 KiB of the SM's up to 228 KiB (NVIDIA CUDA C++
#: Programming Guide, compute capability 9.0: "maximum amount of shared memory per thread block", 227 KB).
H100_SMEM_BYTES = 227 * 1024
#: The inputs' dtype the widget counts in: bfloat16, as the kernels run.
DTYPE = "bfloat16"


def tile_figures(length: int, head_dim: int, block_q: int, block_k: int, causal: bool = True) -> dict:
    """What one head of one sequence of ``length`` tokens moves through HBM, in bfloat16, computed by
    :mod:`attnlab.costs`: "standard" (:func:`~attnlab.costs.standard_attention_hbm_bytes`, S and P
    materialised), "tiled" (:func:`~attnlab.costs.flash_attention_hbm_bytes` with B_r = ``block_q``, B_c =
    ``block_k``), "ratio" (standard / tiled), "sram" (:func:`~attnlab.costs.flash_sram_bytes`), "fits" (SRAM
    within the 227 KiB one thread block may use on an H100), "not_written"
    (:func:`~attnlab.costs.score_bytes_not_written`) and the arguments. The standard form is counted without
    the causal saving (it writes the masked entries too)."""
    check_choice("length", length, tuple(n for _, n in LENGTH_OPTIONS))
    check_choice("head_dim", head_dim, HEAD_DIM_OPTIONS)
    check_choice("block_q", block_q, BLOCK_OPTIONS)
    check_choice("block_k", block_k, BLOCK_OPTIONS)
    check_bool("causal", causal)
    standard = costs.standard_attention_hbm_bytes(length, length, head_dim, DTYPE)
    tiled = costs.flash_attention_hbm_bytes(length, length, head_dim, block_q, block_k, DTYPE, causal=causal)
    sram = costs.flash_sram_bytes(block_q, block_k, head_dim, DTYPE)
    return {"length": length, "head_dim": head_dim, "block_q": block_q, "block_k": block_k, "causal": causal,
            "standard": standard, "tiled": tiled, "ratio": standard["total"] / tiled["total"], "sram": sram,
            "fits": sram["total"] <= H100_SMEM_BYTES,
            "not_written": costs.score_bytes_not_written(length, length, DTYPE)}


def kib(n_bytes: int) -> str:
    """Bytes in KiB (1024 bytes), the unit GPU shared memory is quoted in: 164,864 -> "161.0 KiB"."""
    return f"{n_bytes / 1024:,.1f} KiB"


def tile_readout_html(f: dict) -> str:
    """The numbers of :func:`tile_figures` as an HTML table, standard against tiled: HBM traffic and its
    largest part, what each writes besides O, the SRAM one query block needs against an H100's, the ratio."""
    sram, fits = f["sram"]["total"], f["fits"]
    streams = -(-f["length"] // f["block_q"])  # query blocks: how often K and V are streamed (fewer if causal)
    rows = [
        ("HBM traffic", format_bytes(f["standard"]["total"]), format_bytes(f["tiled"]["total"])),
        ("largest part", f"S and P: {format_bytes(2 * f['not_written'])}",
         f"K, V past {streams:,} query blocks: {format_bytes(f['tiled']['read K, V'])}"),
        ("written besides O", f"S, P: {format_bytes(f['not_written'])}", f"L: {format_bytes(f['tiled']['write L'])}"),
        ("SRAM per query block", "–", f"{kib(sram)}: {'fits' if fits else 'does not fit'} "
                                      f"({kib(H100_SMEM_BYTES)} on an H100)"),
        ("standard / tiled", "", f"{f['ratio']:.2f}×"),
    ]
    td = 'style="padding:3px 10px;font-variant-numeric:tabular-nums;text-align:right;white-space:nowrap"'
    body = "".join(f"<tr><td style='padding:3px 10px 3px 0;white-space:nowrap'>{html.escape(label)}</td>"
                   f"<td {td}>{html.escape(a)}</td><td {td}><b>{html.escape(b)}</b></td></tr>"
                   for label, a, b in rows)
    head = (f"<tr><th></th><th {td}>standard</th><th {td}>tiled, B_r = {f['block_q']}, B_c = {f['block_k']}"
            "</th></tr>")
    caption = (f"<p style='margin:4px 0'>One head, n = {f['length']:,} tokens, d = {f['head_dim']}, bfloat16"
               f"{', causal' if f['causal'] else ''}:</p>")
    table = f'<table style="border-collapse:collapse;font-size:14px">{head}{body}</table>'
    note = ("" if fits else '<p style="color:#d62728;margin:4px 0">These tiles do not fit one thread block\'s '
            "shared memory: a kernel would pick smaller ones (FlashAttention takes B_c = M / 4d).</p>")
    return caption + table + note


class TileExplorer(widgets.VBox):
    """Chapter 15's widget: sliders for B_r, B_c, the sequence length and d; the HBM traffic of the standard
    and the tiled forward and the SRAM a query block needs (:func:`tile_figures`), as a table."""

    def __init__(self, length: int, head_dim: int, block_q: int, block_k: int) -> None:
        style = {"description_width": "initial"}
        self.length = widgets.SelectionSlider(options=LENGTH_OPTIONS, value=length, description="tokens n",
                                              style=style)
        self.head_dim = widgets.SelectionSlider(options=HEAD_DIM_OPTIONS, value=head_dim, description="head dim d",
                                                style=style)
        self.block_q = widgets.SelectionSlider(options=BLOCK_OPTIONS, value=block_q, description="B_r (query rows)",
                                               style=style)
        self.block_k = widgets.SelectionSlider(options=BLOCK_OPTIONS, value=block_k, description="B_c (key rows)",
                                               style=style)
        f = tile_figures(length, head_dim, block_q, block_k)
        self.readout = widgets.HTML(tile_readout_html(f))
        for control in (self.length, self.head_dim, self.block_q, self.block_k):
            control.observe(self._refresh, names="value")
        super().__init__([row(self.length, self.head_dim), row(self.block_q, self.block_k), self.readout])

    def figures(self) -> dict:
        """:func:`tile_figures` for the sliders' values."""
        return tile_figures(self.length.value, self.head_dim.value, self.block_q.value, self.block_k.value)

    def _refresh(self, _change=None) -> None:
        self.readout.value = tile_readout_html(self.figures())

    def __repr__(self) -> str:
        return (f"TileExplorer(length={self.length.value}, head_dim={self.head_dim.value}, "
                f"block_q={self.block_q.value}, block_k={self.block_k.value})")


def tile_explorer(length: int = 16_384, head_dim: int = 128, block_q: int = 128, block_k: int = 64) -> TileExplorer:
    """Return chapter 15's widget, starting at these values (each one of the sliders' options)."""
    tile_figures(length, head_dim, block_q, block_k)  # refuses a value the sliders do not offer
    return TileExplorer(length, head_dim, block_q, block_k)
