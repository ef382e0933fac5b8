"""Chapter 19's explorer: method, block size, budget, layer and head -> which tokens each query reads, and how
much of the dense attention they hold.

The tiny GQA model (``tiny_gqa``) runs on one 256-token window of the validation text; :func:`layer_qkv` keeps
each layer's queries, keys and values. :func:`selection_png` draws the selection of one head (every query's row,
blocks outlined) beside the dense attention of the last query with the selected keys marked;
:func:`selection_html` tabulates what the choice holds and reads against token top-k at the same budget. Both are
pure functions of the choices, so tests read what the widget shows; the callbacks only set widget values.
"""

from __future__ import annotations

import functools
import html

import ipywidgets as widgets
import matplotlib.pyplot as plt
import torch
from matplotlib.colors import ListedColormap

from attnlab import corpus
from attnlab._validate import check_choice
from attnlab.attention import softmax
from attnlab.block_sparse import (
    BLOCK_METHODS,
    METHOD_LABELS,
    METHODS,
    NSA_INITIAL_BLOCKS,
    NSA_LOCAL_BLOCKS,
    attention_recall,
    dense_scores,
    memory_segments,
    select,
    sparse_attention,
)
from attnlab.interactive.attention import layer_input
from attnlab.model import TinyLM, load_checkpoint
from attnlab.plots import COLORS, figure_png
from attnlab.tokenization import load_tokenizer
from attnlab.widgets import row

#: One colour per method, from the course's roles: token-level picks in the query and index colours, block
#: methods in the key, value and latent colours, evictions in the cache and RoPE colours.
METHOD_COLORS: dict[str, str] = {"token": COLORS["query"], "dsa": COLORS["index"], "nsa": COLORS["latent"],
                                 "moba": COLORS["key"], "quest": COLORS["value"], "h2o": COLORS["cache"],
                                 "snapkv": COLORS["rope"]}
#: Block sizes the explorer offers.
BLOCK_SIZES: tuple[int, ...] = (8, 16, 32)
#: Token budgets the explorer offers (those a method can spend with the chosen block size: see valid_budgets).
BUDGETS: tuple[int, ...] = (32, 48, 64, 96, 128)
#: The model and the window of validation text the explorer runs.
MODEL, WINDOW_START, WINDOW = "tiny_gqa", 0, 256


@functools.lru_cache(maxsize=1)
def tiny_model() -> TinyLM:
    """The tiny GQA model, float32, eval mode (loaded once)."""
    return load_checkpoint(MODEL).eval()


@functools.lru_cache(maxsize=1)
def window_ids() -> torch.Tensor:
    """(1, 256) token ids: the validation text's first 256 tokens."""
    ids = load_tokenizer().encode(corpus.load_text("val"))
    return torch.tensor([ids[WINDOW_START:WINDOW_START + WINDOW]])


@functools.lru_cache(maxsize=8)
@torch.no_grad()
def layer_qkv(layer: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """q (1, h, 256, d), k and v (1, h_kv, 256, d) of ``layer`` on :func:`window_ids` (RoPE applied)."""
    model = tiny_model()
    check_choice("layer", layer, tuple(range(model.config.n_layers)))
    return model.blocks[layer].attn.project(layer_input(model, window_ids(), layer))


def valid_budgets(method: str, block_size: int) -> tuple[int, ...]:
    """The budgets of :data:`BUDGETS` ``method`` can spend with blocks of ``block_size``: every one for a
    token-level method; for a block method whole blocks (budget a multiple of B), and for NSA at least its
    1 initial + 2 local blocks."""
    check_choice("method", method, METHODS)
    check_choice("block_size", block_size, BLOCK_SIZES)
    if method not in BLOCK_METHODS:
        return BUDGETS
    least = NSA_INITIAL_BLOCKS + NSA_LOCAL_BLOCKS if method == "nsa" else 1
    return tuple(b for b in BUDGETS if b % block_size == 0 and b // block_size >= least)


def _check_choices(method: str, block_size: int, budget: int, layer: int, head: int) -> None:
    check_choice("budget", budget, valid_budgets(method, block_size))
    model = tiny_model()
    check_choice("layer", layer, tuple(range(model.config.n_layers)))
    check_choice("head", head, tuple(range(model.config.n_heads)))


@functools.lru_cache(maxsize=256)
@torch.no_grad()
def selection(method: str, block_size: int, budget: int, layer: int) -> torch.Tensor:
    """(h, 256, 256) bool: the tokens each query of each head reads (:func:`attnlab.block_sparse.select`)."""
    q, k, _ = layer_qkv(layer)
    return select(method, q, k, budget, block_size)[0]


@functools.lru_cache(maxsize=256)
@torch.no_grad()
def measures(method: str, block_size: int, budget: int, layer: int, head: int) -> dict[str, float]:
    """What head ``head``'s selection holds and reads, averaged over the queries at positions >= ``budget``:
    "recall" (share of the dense attention), "tokens", "segments" (separate runs) and "error" (relative
    output error against dense attention)."""
    _check_choices(method, block_size, budget, layer, head)
    q, k, v = layer_qkv(layer)
    group = q.shape[1] // k.shape[1]
    q, k, v = q[:, head:head + 1], k[:, head // group:head // group + 1], v[:, head // group:head // group + 1]
    mask = selection(method, block_size, budget, layer)[head][None, None]  # (1, 1, n, n)
    dense_out, dense_w = sparse_attention(q, k, v, torch.ones_like(mask))
    out, _ = sparse_attention(q, k, v, mask)
    later = slice(budget, mask.shape[-1])
    error = (out - dense_out).norm(dim=-1) / dense_out.norm(dim=-1)
    return {"recall": float(attention_recall(dense_w, mask)[..., later].mean()),
            "tokens": float(mask[..., later, :].sum(-1).double().mean()),
            "segments": float(memory_segments(mask[..., later, :]).double().mean()),
            "error": float(error[..., later].mean())}


def selection_png(method: str, block_size: int, budget: int, layer: int, head: int) -> bytes:
    """PNG: left, head ``head``'s selection for every query (rows) over the keys (columns), blocks outlined for a
    block method; right, the last query's dense attention over the keys, the selected ones in the method's colour."""
    _check_choices(method, block_size, budget, layer, head)
    mask = selection(method, block_size, budget, layer)[head]  # (256, 256)
    q, k, _ = layer_qkv(layer)
    dense = softmax(dense_scores(q, k))[0, head]  # (256, 256)
    n = mask.shape[-1]
    colour = METHOD_COLORS[method]
    picture = torch.ones(n, n, dtype=torch.long).tril() + mask.long()  # 0 future, 1 visible, 2 selected
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4.2), gridspec_kw={"width_ratios": [1, 1.5]})
    left.imshow(picture.numpy(), cmap=ListedColormap(["white", "#E4E4E4", colour]), vmin=0, vmax=2,
                interpolation="nearest")
    if method in BLOCK_METHODS:
        for edge in range(block_size, n, block_size):
            left.axvline(edge - 0.5, color="white", lw=0.4)
    left.set_xlabel("key position s")
    left.set_ylabel("query position p")
    left.set_title(f"{METHOD_LABELS[method]}: tokens read (colour)", fontsize=10)
    last = dense[-1]
    chosen = mask[-1]
    s = torch.arange(n)
    right.bar(s[~chosen].numpy(), last[~chosen].numpy(), width=1.0, color=COLORS["muted"], label="not read")
    right.bar(s[chosen].numpy(), last[chosen].numpy(), width=1.0, color=colour, label="read")
    right.set_xlim(-0.5, n - 0.5)
    right.set_xlabel("key position s")
    right.set_ylabel(f"dense attention of query {n - 1}")
    right.set_title(f"query {n - 1}: the selection holds {float(last[chosen].sum()):.0%} of its attention", fontsize=10)
    right.legend(loc="upper left", framealpha=0.9, edgecolor="none")
    fig.suptitle(f"layer {layer}, head {head}, budget {budget} tokens"
                 + (f", blocks of {block_size}" if method in BLOCK_METHODS else ""), fontsize=11)
    fig.tight_layout()
    return figure_png(fig)


def selection_html(method: str, block_size: int, budget: int, layer: int, head: int) -> str:
    """The explorer's table: share of the dense attention held, tokens read, separate runs read and output
    error, for the chosen method and for token top-k at the same budget (this head, queries past the budget)."""
    rows = []
    for m in dict.fromkeys((method, "token")):  # the chosen method, then token top-k unless it is the one chosen
        got = measures(m, block_size, budget, layer, head)
        name = METHOD_LABELS[m] + (" (the most any set of that size holds)" if m == "token" else "")
        rows.append(f"<tr><td style='text-align:left'>{html.escape(name)}</td><td>{got['recall']:.1%}</td>"
                    f"<td>{got['tokens']:.1f}</td><td>{got['segments']:.1f}</td><td>{got['error']:.3f}</td></tr>")
    head_row = ("<tr><th>selection</th><th>attention held</th><th>tokens read</th><th>separate runs</th>"
                "<th>output error</th></tr>")
    caption = (f"layer {layer}, head {head}: means over the queries at positions {budget}–{WINDOW - 1} of "
               f"{WINDOW} validation tokens")
    return (f'<table style="border-collapse:collapse;text-align:right"><caption style="text-align:left">'
            f"{html.escape(caption)}</caption>{head_row}{''.join(rows)}</table>")


class BlockSelectionExplorer(widgets.VBox):
    """The container :func:`block_selection_explorer` returns: ``.method`` (Dropdown of :data:`METHODS`),
    ``.block_size`` (ToggleButtons of :data:`BLOCK_SIZES`), ``.budget`` (ToggleButtons of the valid budgets),
    ``.layer`` and ``.head`` (IntSliders), ``.image`` (Image) and ``.table`` (HTML)."""

    def __init__(self, method: str = "moba", block_size: int = 16, budget: int = 64, layer: int = 2,
                 head: int = 0) -> None:
        check_choice("method", method, METHODS)
        check_choice("block_size", block_size, BLOCK_SIZES)
        _check_choices(method, block_size, budget, layer, head)
        config = tiny_model().config
        self.method = widgets.Dropdown(options=[(METHOD_LABELS[m], m) for m in METHODS], value=method,
                                       description="method")
        self.block_size = widgets.ToggleButtons(options=BLOCK_SIZES, value=block_size, description="block B",
                                                style={"button_width": "44px"})
        self.budget = widgets.ToggleButtons(options=valid_budgets(method, block_size), value=budget,
                                            description="budget", style={"button_width": "44px"})
        self.layer = widgets.IntSlider(value=layer, min=0, max=config.n_layers - 1, description="layer")
        self.head = widgets.IntSlider(value=head, min=0, max=config.n_heads - 1, description="head")
        self.image = widgets.Image(format="png", layout=widgets.Layout(max_width="100%"))
        self.table = widgets.HTML()
        for control in (self.method, self.block_size):
            control.observe(self._restrict, names="value")
        for control in (self.budget, self.layer, self.head):
            control.observe(self._refresh, names="value")
        super().__init__([row(self.method, self.layer, self.head), row(self.block_size, self.budget), self.image,
                          self.table])
        self._refresh()

    def _restrict(self, change: dict | None = None) -> None:
        # A callback: offer only the budgets the method can spend with this block size, then redraw.
        options = valid_budgets(self.method.value, self.block_size.value)
        keep = self.budget.value if self.budget.value in options else min(options, key=lambda b: abs(b - 64))
        with self.budget.hold_trait_notifications():
            self.budget.options = options
            self.budget.value = keep
        self._refresh()

    def _refresh(self, change: dict | None = None) -> None:
        # A callback: it only sets the image's and the table's values.
        if self.budget.value not in valid_budgets(self.method.value, self.block_size.value):
            return  # mid-update of the options: _restrict redraws
        choices = (self.method.value, self.block_size.value, self.budget.value, self.layer.value, self.head.value)
        self.image.value = selection_png(*choices)
        self.table.value = selection_html(*choices)

    def __repr__(self) -> str:
        # A short, deterministic text form (the notebook stores it as the cell's plain-text output).
        return (f"BlockSelectionExplorer(method={self.method.value!r}, block_size={self.block_size.value}, "
                f"budget={self.budget.value}, layer={self.layer.value}, head={self.head.value})")


def block_selection_explorer(method: str = "moba", block_size: int = 16, budget: int = 64, layer: int = 2,
                             head: int = 0) -> BlockSelectionExplorer:
    """Return chapter 19's widget: choose the selection method, block size, token budget, layer and head; see
    which tokens every query reads and how much of the dense attention they hold."""
    return BlockSelectionExplorer(method, block_size, budget, layer, head)
