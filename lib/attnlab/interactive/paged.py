"""Chapter 16's explorer: page size, request mix and memory budget -> waste and requests that fit.

:func:`paging_explorer` runs :func:`attnlab.paged.simulate` on one seeded stream of the chosen mix, for a
contiguous cache reserved at the maximum length, the oracle reserved at the actual length and pages of the
chosen size, in a cache budget of the chosen GiB of Llama-3-8B's bfloat16 cache (its bytes per token from
:mod:`attnlab.sizing`). :func:`explorer_html` renders the result as an HTML table (a pure function, so tests
read what the widget shows without a browser); the callbacks only set the HTML widget's value.
"""

from __future__ import annotations

import functools
import html

import ipywidgets as widgets

from attnlab import sizing
from attnlab._validate import check_choice
from attnlab.paged import MIXES, SimResult, request_stream, simulate
from attnlab.plots import COLORS
from attnlab.widgets import row

#: Page sizes the explorer offers (vLLM's default is 16; FlashMLA's pages are 64 tokens).
BLOCK_SIZES: tuple[int, ...] = (1, 8, 16, 32, 64, 128)
#: Cache budgets the explorer offers, in GiB.
BUDGETS_GIB: tuple[int, ...] = (1, 2, 4, 8, 16)
#: Requests per simulated stream (seed 0, four arrivals per step on average: more than any policy serves).
N_REQUESTS = 300
#: The model whose cache the budget holds.
MODEL = "llama-3-8b"


def budget_slots(gib: int, model: str = MODEL) -> int:
    """Token slots ``gib`` GiB of ``model``'s bfloat16 cache hold (all layers): gib * 2^30 / bytes per token."""
    check_choice("gib", gib, BUDGETS_GIB)
    return gib * 2**30 // sizing.cache_bytes_per_token(model)


@functools.lru_cache(maxsize=256)
def run(mix: str, gib: int, block_size: int) -> tuple[SimResult, SimResult, SimResult]:
    """The three reservations of the explorer on ``mix``'s seeded stream in ``gib`` GiB: (max, oracle, paged)."""
    check_choice("mix", mix, tuple(MIXES))
    check_choice("block_size", block_size, BLOCK_SIZES)
    stream, slots, max_len = request_stream(mix, N_REQUESTS, seed=0), budget_slots(gib), MIXES[mix].max_len
    return (simulate(stream, slots, "max", None, max_len), simulate(stream, slots, "oracle", None, max_len),
            simulate(stream, slots, "paged", block_size, max_len))


def explorer_html(mix: str, gib: int, block_size: int) -> str:
    """The explorer's table for these choices: per reservation, requests decoding at once (mean and peak),
    the share of reserved slots holding no token, that waste in GiB on average, preemptions and steps."""
    results = run(mix, gib, block_size)
    per_token = sizing.cache_bytes_per_token(MODEL)
    best = max(r.mean_running for r in results)
    rows = []
    for r in results:
        share = r.mean_running / best
        bar = (f'<div style="background:{COLORS["key"] if r.policy == "paged" else COLORS["muted"]};'
               f'height:10px;width:{120 * share:.0f}px"></div>')
        wasted_gib = r.waste / r.steps * per_token / 2**30
        rows.append(f"<tr><td>{html.escape(r.label)}</td><td>{r.mean_running:.1f} {bar}</td><td>{r.peak_running}</td>"
                    f"<td>{100 * r.waste_fraction:.1f}%</td><td>{wasted_gib:.2f}</td><td>{r.preemptions}</td>"
                    f"<td>{r.steps:,}</td></tr>")
    head = ("<tr><th>cache reserved</th><th>requests at once (mean)</th><th>peak</th><th>reserved but empty</th>"
            "<th>empty GiB (mean)</th><th>preempted</th><th>steps to serve all</th></tr>")
    mixed = MIXES[mix]
    caption = (f"{N_REQUESTS} requests of the “{html.escape(mix)}” mix (prompts {mixed.prompt[0]}–{mixed.prompt[1]}, "
               f"outputs {mixed.output[0]}–{mixed.output[1]} tokens, max {mixed.max_len:,}) in {gib} GiB of "
               f"{sizing.MODELS[MODEL].name}'s cache = {budget_slots(gib):,} token slots")
    return (f'<table style="border-collapse:collapse;text-align:right"><caption style="text-align:left">{caption}'
            f"</caption>{head}{''.join(rows)}</table>")


class PagingExplorer(widgets.VBox):
    """The container :func:`paging_explorer` returns: ``.block_size`` (ToggleButtons of :data:`BLOCK_SIZES`),
    ``.mix`` (Dropdown of :data:`attnlab.paged.MIXES`), ``.budget`` (SelectionSlider of :data:`BUDGETS_GIB`)
    and ``.table`` (HTML)."""

    def __init__(self, mix: str = "chat", gib: int = 4, block_size: int = 16) -> None:
        check_choice("mix", mix, tuple(MIXES))
        check_choice("gib", gib, BUDGETS_GIB)
        check_choice("block_size", block_size, BLOCK_SIZES)
        self.block_size = widgets.ToggleButtons(options=BLOCK_SIZES, value=block_size, description="page B",
                                                style={"button_width": "48px"})
        self.mix = widgets.Dropdown(options=tuple(MIXES), value=mix, description="requests")
        self.budget = widgets.SelectionSlider(options=[(f"{g} GiB", g) for g in BUDGETS_GIB], value=gib,
                                              description="cache")
        self.table = widgets.HTML()
        for control in (self.block_size, self.mix, self.budget):
            control.observe(self._refresh, names="value")
        super().__init__([row(self.mix, self.budget), self.block_size, self.table])
        self._refresh()

    def _refresh(self, change: dict | None = None) -> None:
        # A callback: it only sets the HTML widget's value.
        self.table.value = explorer_html(self.mix.value, self.budget.value, self.block_size.value)

    def __repr__(self) -> str:
        # A short, deterministic text form (the notebook stores it as the cell's plain-text output).
        return f"PagingExplorer(mix={self.mix.value!r}, gib={self.budget.value}, block_size={self.block_size.value})"


def paging_explorer(mix: str = "chat", gib: int = 4, block_size: int = 16) -> PagingExplorer:
    """Return chapter 16's widget: choose the request mix, the cache budget and the page size, and read how
    many requests decode at once and how much reserved memory holds nothing (:func:`attnlab.paged.simulate`)."""
    return PagingExplorer(mix, gib, block_size)
