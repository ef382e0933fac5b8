"""The paged KV cache: fixed-size pages, a block table per sequence, and copy-on-write prefix sharing.

Chapter 4's :class:`~attnlab.kv_cache.LayerCache` keeps one sequence's tokens in one contiguous buffer. A
server decodes many sequences at once, none of which knows its final length, so a contiguous cache must
reserve room for the longest output it might produce; most of that room never holds a token. vLLM's
PagedAttention (Kwon et al., "Efficient Memory Management for Large Language Model Serving with
PagedAttention", SOSP 2023) stores the cache the way an operating system stores a process's memory:

* **Pages** (§4.1, "KV blocks"): one pool of ``num_blocks`` physical pages of ``block_size`` B token slots,
  shared by all sequences; :class:`BlockPool`. A page holds B tokens of every cached tensor of every
  layer (the same page id indexes each layer's pool, as vLLM's block tables do).
* **Block tables** (§4.2, Fig. 6): a sequence's logical block j lives in physical page ``table[j]``, so
  token position p sits at page ``table[p // B]``, slot ``p % B``; pages are allocated one at a time, only
  when the last one is full, so a sequence wastes at most B - 1 slots; :class:`PagedSequence`.
* **Sharing and copy-on-write** (§4.4, Fig. 8): a forked sequence (parallel sampling, a shared system
  prompt) points at the same pages and raises their reference counts; the first write into a shared page
  copies it to a page of its own. Only the partly filled last page is ever written again, so full prompt
  pages stay shared.

:class:`PagedLayerCache` is one layer's view of a :class:`PagedSequence`, with the interface every layer
calls (``seq_len``, ``window``, ``seq_dim``, ``update(**named_tensors)``), so any scheme of
:mod:`attnlab.schemes` decodes from pages exactly as from a :class:`~attnlab.kv_cache.LayerCache`. Its
``update`` writes the new tokens through the block table and gathers every cached token back in order (what
the paged attention kernel reads page by page, §4.1; here a gather, then the layer's own attention).

The second half simulates request streams (:func:`request_stream`, :func:`simulate`) to measure the waste
§3 describes and §6 measures: contiguous caches reserved at the maximum length or, as an oracle, at the
actual length, against pages of B slots. The page and waste counts are formulas in :mod:`attnlab.costs`.

This module is a layer-level module: it imports the cache interface and the cost formulas, never the model
catalogue (:mod:`attnlab.sizing`) nor any widget.
"""

from __future__ import annotations

import random
from collections import deque
from dataclasses import dataclass

import torch

from attnlab import costs
from attnlab._validate import (
    check_choice,
    check_int,
    check_non_negative_int,
    check_positive_int,
    check_type,
)
from attnlab.kv_cache import _check_update


class OutOfBlocks(RuntimeError):
    """The pool has no free page left (vLLM then preempts a sequence, §4.5; :func:`simulate` does that)."""


class BlockPool:
    """``num_blocks`` physical pages of ``block_size`` token slots each, for every layer's named tensors.

    Storage for a name is made at its first write: ``(num_blocks, block_size, *token_shape)``, the token's
    shape being the written tensor's shape without its sequence axis (a batch row and heads included).
    Pages are handed out from a free list and counted: :attr:`ref_counts` says how many sequences point at
    each page (PagedAttention §4.4); a page returns to the free list when its count drops to 0.

    >>> pool = BlockPool(num_blocks=4, block_size=2)
    >>> seq = pool.new_sequence()
    >>> _ = seq[0].update(k=torch.zeros(1, 1, 3, 4), v=torch.zeros(1, 1, 3, 4))  # 3 tokens: 2 pages
    >>> seq.block_table, pool.ref_counts, pool.n_free
    ([0, 1], [1, 1, 0, 0], 2)
    """

    def __init__(self, num_blocks: int, block_size: int, n_layers: int = 1) -> None:
        self.num_blocks = check_positive_int("num_blocks", num_blocks)
        self.block_size = check_positive_int("block_size", block_size)
        self.n_layers = check_positive_int("n_layers", n_layers)
        self.ref_counts = [0] * num_blocks
        self._free: deque[int] = deque(range(num_blocks))  # pages in the order they will be handed out
        self.storage: list[dict[str, torch.Tensor]] = [{} for _ in range(n_layers)]  # layer -> name -> pages
        self.copies = 0  # pages copied on write so far

    def __repr__(self) -> str:
        return (f"BlockPool(num_blocks={self.num_blocks}, block_size={self.block_size}, n_layers={self.n_layers}, "
                f"used={self.n_used})")

    @property
    def n_free(self) -> int:
        """Pages on the free list."""
        return len(self._free)

    @property
    def n_used(self) -> int:
        """Pages some sequence points at (reference count > 0)."""
        return self.num_blocks - self.n_free

    @property
    def nbytes(self) -> int:
        """Bytes of the storage made so far, all layers and names: the pool's whole memory."""
        return sum(t.numel() * t.element_size() for layer in self.storage for t in layer.values())

    def new_sequence(self, seq_dim: int = -2) -> PagedSequence:
        """An empty sequence drawing its pages from this pool; its layers cache tensors whose sequence axis is
        ``seq_dim`` (-2 suits every layer of the course: (b, heads, seq, d) and (b, seq, width))."""
        return PagedSequence(self, seq_dim)

    def allocate(self) -> int:
        """Take a page from the free list, with reference count 1 (§4.2); :class:`OutOfBlocks` if none is left."""
        if not self._free:
            raise OutOfBlocks(f"all {self.num_blocks} pages are in use: free a sequence or make a larger pool")
        block = self._free.popleft()
        self.ref_counts[block] = 1
        return block

    def retain(self, block: int) -> None:
        """One more sequence points at page ``block`` (a fork, §4.4)."""
        self._check_held(block)
        self.ref_counts[block] += 1

    def release(self, block: int) -> None:
        """One sequence fewer points at page ``block``; at count 0 it goes back to the free list."""
        self._check_held(block)
        self.ref_counts[block] -= 1
        if self.ref_counts[block] == 0:
            self._free.append(block)

    def copy(self, src: int, dst: int) -> None:
        """Copy page ``src`` into page ``dst``, every layer and every name (copy-on-write, §4.4)."""
        self._check_held(src)
        self._check_held(dst)
        for layer in self.storage:
            for pages in layer.values():  # (num_blocks, B, *token_shape)
                pages[dst].copy_(pages[src])
        self.copies += 1

    def _check_held(self, block: object) -> None:
        check_int("block", block)
        if not 0 <= block < self.num_blocks:
            raise ValueError(f"block={block} must be a page of the pool, 0 <= block < num_blocks={self.num_blocks}")
        if self.ref_counts[block] == 0:
            raise ValueError(f"block={block} is free: no sequence holds it")

    def _pages(self, layer: int, name: str, token: torch.Tensor) -> torch.Tensor:
        """Layer ``layer``'s pages of ``name``, made on first use shaped like ``token`` (one token, seq axis
        dropped): (num_blocks, B, *token.shape)."""
        pages = self.storage[layer].get(name)
        if pages is None:
            pages = token.new_zeros((self.num_blocks, self.block_size, *token.shape))
            self.storage[layer][name] = pages
        return pages


class PagedSequence:
    """One sequence's block table into a :class:`BlockPool`, shared by its layers (PagedAttention §4.2).

    ``seq[i]`` is layer i's :class:`PagedLayerCache`. ``block_table[j]`` is the physical page of logical block
    j; :meth:`fork` makes a sequence pointing at the same pages (§4.4); :meth:`free` gives the pages back.
    """

    def __init__(self, pool: BlockPool, seq_dim: int = -2) -> None:
        self.pool = check_type("pool", pool, BlockPool)
        self.seq_dim = check_int("seq_dim", seq_dim)
        self.block_table: list[int] = []
        self.lengths = [0] * pool.n_layers  # tokens written per layer
        self.freed = False

    def __repr__(self) -> str:
        return f"PagedSequence(seq_len={self.seq_len}, block_table={self.block_table})"

    def __len__(self) -> int:
        return self.pool.n_layers

    def __getitem__(self, layer: int) -> PagedLayerCache:
        check_int("layer", layer)
        if not 0 <= layer < self.pool.n_layers:
            raise ValueError(f"layer={layer} must be 0 <= layer < n_layers={self.pool.n_layers}")
        return PagedLayerCache(self, layer)

    @property
    def seq_len(self) -> int:
        """Tokens written (the furthest layer): the next token's position."""
        return max(self.lengths)

    def locate(self, position: int) -> tuple[int, int]:
        """(physical page, slot) of token ``position``: (table[p // B], p mod B) (§4.2, Fig. 6)."""
        check_non_negative_int("position", position)
        if position >= len(self.block_table) * self.pool.block_size:
            raise ValueError(f"position={position} lies beyond the sequence's {len(self.block_table)} pages of "
                             f"{self.pool.block_size} slots")
        block, offset = divmod(position, self.pool.block_size)  # logical block j = p // B, slot p mod B
        return self.block_table[block], offset

    def slots(self, start: int, stop: int, device: torch.device | str = "cpu") -> torch.Tensor:
        """Flat slot indices of positions start..stop-1 in a pool viewed as (num_blocks * B, ...):
        table[p // B] * B + p mod B, as an int64 tensor on ``device`` (what a kernel reads the table for)."""
        B = self.pool.block_size
        table = torch.tensor(self.block_table, dtype=torch.long, device=device)
        p = torch.arange(start, stop, device=device)  # (stop - start,) token positions
        return table[p // B] * B + p % B

    def fork(self) -> PagedSequence:
        """A sequence sharing every page of this one (each page's reference count + 1), with the same tokens
        written in every layer: it decodes as if it held its own copy (§4.4, parallel sampling)."""
        self._check_live()
        child = PagedSequence(self.pool, self.seq_dim)
        for block in self.block_table:
            self.pool.retain(block)
        child.block_table = list(self.block_table)
        child.lengths = list(self.lengths)
        return child

    def free(self) -> None:
        """Give every page back (reference count - 1 each); the sequence cannot be used after."""
        self._check_live()
        for block in self.block_table:
            self.pool.release(block)
        self.block_table = []
        self.freed = True

    def prepare_write(self, start: int, stop: int) -> None:
        """Make positions start..stop-1 writable: allocate pages until the table covers ``stop`` tokens, and
        copy every shared page among those written into a fresh page of its own (copy-on-write, §4.4)."""
        self._check_live()
        B = self.pool.block_size
        while len(self.block_table) * B < stop:  # a new page only when the last is full (§4.2)
            self.block_table.append(self.pool.allocate())
        for j in range(start // B, -(-stop // B)):  # logical blocks the write touches
            block = self.block_table[j]
            if self.pool.ref_counts[block] > 1:  # shared: copy, then write into the copy
                fresh = self.pool.allocate()
                self.pool.copy(block, fresh)
                self.pool.release(block)
                self.block_table[j] = fresh

    def truncate(self) -> None:
        """Give back the pages past the last token any layer holds (after :meth:`PagedLayerCache.crop`)."""
        keep = costs.pages_for(self.seq_len, self.pool.block_size)
        while len(self.block_table) > keep:
            self.pool.release(self.block_table.pop())

    def _check_live(self) -> None:
        if self.freed:
            raise ValueError("sequence was freed: its pages went back to the pool; start a new_sequence()")


class PagedLayerCache:
    """Layer ``layer``'s cache in a :class:`PagedSequence`: a drop-in for :class:`~attnlab.kv_cache.LayerCache`.

    :meth:`update` writes the new tokens into their pages through the block table and returns every cached
    token, gathered back into order, shaped as a :class:`~attnlab.kv_cache.LayerCache` returns them, so a
    layer decodes from pages exactly as from a contiguous buffer (tested for every scheme).
    """

    window: int | None = None  # pages keep every token (no sliding window)
    first_position = 0

    def __init__(self, sequence: PagedSequence, layer: int) -> None:
        self.sequence = check_type("sequence", sequence, PagedSequence)
        self.layer = check_int("layer", layer)

    def __repr__(self) -> str:
        return f"PagedLayerCache(layer={self.layer}, seq_len={self.seq_len}, block_table={self.sequence.block_table})"

    @property
    def seq_dim(self) -> int:
        return self.sequence.seq_dim

    @property
    def pool(self) -> BlockPool:
        return self.sequence.pool

    @property
    def seq_len(self) -> int:
        """Tokens this layer holds: the next token's position."""
        return self.sequence.lengths[self.layer]

    @property
    def n_tokens(self) -> int:
        """Tokens held: all of them, :attr:`seq_len`."""
        return self.seq_len

    @property
    def capacity(self) -> int:
        """Token slots of the sequence's pages: B x pages."""
        return len(self.sequence.block_table) * self.pool.block_size

    @property
    def tensors(self) -> dict[str, torch.Tensor]:
        """The held tokens of each name, gathered in order: shaped like the updates, seq_len along ``seq_dim``."""
        return {name: self._gather(pages, self.seq_len) for name, pages in self.pool.storage[self.layer].items()}

    @property
    def nbytes(self) -> int:
        """Bytes holding this layer's tokens."""
        return sum(t.numel() * t.element_size() for t in self.tensors.values())

    @property
    def capacity_nbytes(self) -> int:
        """Bytes of this layer's pages that the sequence points at (shared pages counted whole)."""
        pages = self.pool.storage[self.layer].values()
        return sum(len(self.sequence.block_table) * p[0].numel() * p.element_size() for p in pages)

    def update(self, **new: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """Append each new tensor along ``seq_dim`` through the block table; return every cached token of each,
        in argument order (the :class:`~attnlab.kv_cache.LayerCache` contract).

        Writes position p of token t into page table[p // B], slot p mod B (§4.2), after copy-on-write of any
        shared page among them (§4.4)."""
        self.sequence._check_live()
        stored = self.pool.storage[self.layer]
        empty = {name: self._gather(pages, 0) for name, pages in stored.items()}  # 0 tokens: names, shapes, dtypes
        _check_update(self.seq_dim, empty, new)
        s = next(iter(new.values())).shape[self.seq_dim]
        start = self.seq_len
        self.sequence.prepare_write(start, start + s)
        device = next(iter(new.values())).device
        where = self.sequence.slots(start, start + s, device)  # (s,) flat slots of the new tokens
        for name, t in new.items():
            token = t.movedim(self.seq_dim, 0)  # (s, *token_shape)
            pages = self.pool._pages(self.layer, name, token[0])  # (num_blocks, B, *token_shape)
            pages.view(-1, *token.shape[1:]).index_copy_(0, where, token)
        self.sequence.lengths[self.layer] = start + s
        return tuple(self._gather(stored[name], start + s) for name in new)

    def crop(self, seq_len: int) -> None:
        """Forget this layer's tokens from position ``seq_len`` on; pages no layer needs go back to the pool."""
        check_non_negative_int("seq_len", seq_len)
        if seq_len > self.seq_len:
            raise ValueError(f"seq_len={seq_len} must be at most the cache's seq_len={self.seq_len}")
        self.sequence.lengths[self.layer] = seq_len
        self.sequence.truncate()

    def _gather(self, pages: torch.Tensor, n: int) -> torch.Tensor:
        """Tokens 0..n-1 of ``pages`` (num_blocks, B, *token_shape), in order, with the sequence axis moved
        back to ``seq_dim``: the layer's view of a contiguous cache."""
        flat = pages.view(-1, *pages.shape[2:])  # (num_blocks * B, *token_shape)
        tokens = flat.index_select(0, self.sequence.slots(0, n, pages.device))  # (n, *token_shape)
        return tokens.movedim(0, self.seq_dim % (tokens.dim()))


# ----------------------------------------------------------------------------------------------------
# request streams: how much memory each way of reserving the cache wastes (PagedAttention §3, §6)


@dataclass(frozen=True)
class Request:
    """One request: it ``arrival``s at that step with ``prompt`` tokens and will generate ``output`` more."""

    arrival: int
    prompt: int
    output: int

    def __post_init__(self) -> None:
        check_non_negative_int("arrival", self.arrival)
        check_positive_int("prompt", self.prompt)
        check_positive_int("output", self.output)

    @property
    def final(self) -> int:
        """Tokens cached when it finishes: prompt + output."""
        return self.prompt + self.output


@dataclass(frozen=True)
class RequestMix:
    """How a stream's lengths are drawn: prompts uniform in ``prompt`` (lo, hi), outputs log-uniform in
    ``output`` (lo, hi) (many short answers, a few long ones), and ``max_len`` the longest sequence the
    server accepts (what a contiguous cache must reserve: prompt + output <= max_len)."""

    name: str
    prompt: tuple[int, int]
    output: tuple[int, int]
    max_len: int

    def __post_init__(self) -> None:
        check_type("name", self.name, str)
        for field in ("prompt", "output"):
            lo, hi = getattr(self, field)
            check_positive_int(field, lo)
            check_positive_int(field, hi)
            if lo > hi:
                raise ValueError(f"{field}={getattr(self, field)} must be a range (lo, hi) with lo <= hi")
        check_positive_int("max_len", self.max_len)
        if self.prompt[1] + self.output[1] > self.max_len:
            raise ValueError(f"max_len={self.max_len} must hold the longest prompt + output, "
                             f"{self.prompt[1]} + {self.output[1]}")


#: Request mixes the chapter compares: chat turns, long documents with short answers, long generations.
MIXES: dict[str, RequestMix] = {m.name: m for m in (
    RequestMix("chat", prompt=(16, 512), output=(8, 1024), max_len=2048),
    RequestMix("long prompts", prompt=(512, 1536), output=(4, 256), max_len=2048),
    RequestMix("long outputs", prompt=(16, 256), output=(256, 1792), max_len=2048),
)}

#: How a simulated server reserves a request's cache: contiguous at the maximum length, contiguous at the
#: actual final length (an oracle that knows the output length), or in pages.
POLICIES: tuple[str, ...] = ("max", "oracle", "paged")


def request_stream(mix: RequestMix | str, n_requests: int = 400, seed: int = 0, rate: float = 4.0
                   ) -> tuple[Request, ...]:
    """``n_requests`` requests drawn from ``mix`` with a seeded generator (the same seed, the same stream),
    arriving ``rate`` per step on average (exponential gaps), in arrival order."""
    mix = _mix(mix)
    check_positive_int("n_requests", n_requests)
    check_int("seed", seed)
    if not isinstance(rate, (int, float)) or isinstance(rate, bool) or not rate > 0:
        raise ValueError(f"rate={rate!r} must be a positive number of requests per step")
    rng = random.Random(seed)
    requests, clock = [], 0.0
    for _ in range(n_requests):
        clock += rng.expovariate(rate)
        prompt = rng.randint(*mix.prompt)
        lo, hi = mix.output
        output = min(hi, int(lo * (hi / lo) ** rng.random()))  # log-uniform in [lo, hi]
        requests.append(Request(int(clock), prompt, output))
    return tuple(requests)


@dataclass(frozen=True)
class SimResult:
    """What :func:`simulate` measured, in token slots (multiply by bytes per token for bytes).

    ``steps``: decode steps until every request finished; ``mean_running`` / ``peak_running``: requests
    decoding at once, averaged over steps / at most; ``used``, ``reservation``, ``internal``: token slots
    holding tokens, reserved for tokens still to come, reserved for tokens that never come, each summed over
    all steps (divide by ``steps`` for a mean); ``preemptions``: requests evicted for want of a page and
    started again (paged only, §4.5 recomputation)."""

    policy: str
    block_size: int | None
    budget: int
    steps: int
    mean_running: float
    peak_running: int
    used: int
    reservation: int
    internal: int
    preemptions: int

    @property
    def label(self) -> str:
        return {"max": "contiguous, max length", "oracle": "contiguous, actual length (oracle)"}.get(
            self.policy, f"paged, B = {self.block_size}")

    @property
    def waste(self) -> int:
        """Reserved slots holding no token, summed over steps: reservation + internal fragmentation."""
        return self.reservation + self.internal

    @property
    def waste_fraction(self) -> float:
        """Share of the reserved slots that hold no token (over all steps)."""
        reserved = self.used + self.waste
        return self.waste / reserved if reserved else 0.0


def simulate(requests: tuple[Request, ...] | list[Request], budget: int, policy: str = "paged",
             block_size: int | None = 16, max_len: int = 2048) -> SimResult:
    """Run a first-come-first-served server over ``requests`` with a cache of ``budget`` token slots.

    Each step every running request caches one more token (the first step caches its prompt and first output
    token); a request finishing frees its slots. Waiting requests are admitted in arrival order while the one
    at the head fits: ``policy`` "max" reserves ``max_len`` slots at admission, "oracle" prompt + output
    (known in advance: the best a contiguous cache could do), "paged" ceil(n / B) pages of ``block_size``
    slots for the n tokens held now, one page more whenever the last is full (PagedAttention §4.2). When a
    page is needed and none is free, the request admitted last is preempted: its pages are freed and it
    waits again at the head of the queue, to be recomputed from its prompt (§4.5). Every step adds each
    request's slots to ``used`` and its waste to ``reservation`` and ``internal``
    (:func:`attnlab.costs.waste_parts`). Contiguous caches' external fragmentation is not modelled
    (every free slot counts as usable), which flatters them."""
    check_type("requests", requests, (tuple, list))
    for r in requests:
        check_type("requests", r, Request, "a list of Request")
    check_positive_int("budget", budget)
    check_choice("policy", policy, POLICIES)
    check_positive_int("max_len", max_len)
    if policy == "paged":
        check_positive_int("block_size", block_size)
    else:
        block_size = None
    for r in requests:
        if r.final > max_len:
            raise ValueError(f"max_len={max_len} is shorter than a request's prompt + output = {r.final}")
    longest = max((r.final for r in requests), default=0)
    pages = costs.pages_for(longest, block_size) * block_size if policy == "paged" else 0
    need = {"max": max_len, "oracle": longest, "paged": pages}[policy]  # slots the longest request needs
    if requests and need > budget:
        raise ValueError(f"budget={budget} slots cannot hold one request ({need} slots under policy={policy!r})")

    pending = deque(sorted(requests, key=lambda r: r.arrival))
    waiting: deque[Request] = deque()
    running: list[list] = []  # [request, tokens held, slots reserved], in admission order
    free, step, preemptions = budget, 0, 0
    used = reservation = internal = 0
    running_sum, peak = 0, 0

    def reserve(r: Request, tokens: int) -> int:  # slots a request holding `tokens` tokens needs
        if policy == "max":
            return max_len
        if policy == "oracle":
            return r.final
        return costs.pages_for(tokens, block_size) * block_size

    while pending or waiting or running:
        while pending and pending[0].arrival <= step:
            waiting.append(pending.popleft())
        while waiting and reserve(waiting[0], waiting[0].prompt + 1) <= free:  # admit in arrival order
            r = waiting.popleft()
            slots = reserve(r, r.prompt + 1)
            free -= slots
            running.append([r, 0, slots])
        i = 0
        while i < len(running):  # each running request caches its next token(s)
            entry = running[i]
            r, held, slots = entry
            tokens = r.prompt + 1 if held == 0 else held + 1
            grow = reserve(r, tokens) - slots
            while grow > free:  # paged only: no free page, preempt the latest admitted (§4.5)
                victim = running.pop()
                free += victim[2]
                waiting.appendleft(victim[0])
                preemptions += 1
                if victim is entry:
                    break
            if not any(e is entry for e in running):
                continue
            free -= grow
            entry[1], entry[2] = tokens, slots + grow
            i += 1
        for r, held, slots in running:  # costs.waste_parts, written out: this loop runs every step
            used += held
            reservation += min(slots, r.final) - held  # slots this request's later tokens will fill
            internal += max(0, slots - r.final)  # slots no token will ever fill
        running_sum += len(running)
        peak = max(peak, len(running))
        done = [e for e in running if e[1] == e[0].final]
        for e in done:
            free += e[2]
        running = [e for e in running if e[1] < e[0].final]
        step += 1
    return SimResult(policy, block_size, budget, step, running_sum / max(step, 1), peak, used, reservation,
                     internal, preemptions)


def compare_policies(mix: RequestMix | str, budget: int, block_sizes: tuple[int, ...] = (8, 16, 32, 128),
                     n_requests: int = 400, seed: int = 0, rate: float = 4.0) -> list[SimResult]:
    """:func:`simulate` on one seeded stream of ``mix``: contiguous at the maximum length, the oracle, and
    paged with each of ``block_sizes``, in that order."""
    mix = _mix(mix)
    check_type("block_sizes", block_sizes, (tuple, list))
    if not block_sizes:
        raise ValueError("block_sizes must name at least one page size")
    for b in block_sizes:
        check_positive_int("block_sizes", b)
    stream = request_stream(mix, n_requests, seed, rate)
    results = [simulate(stream, budget, p, None, mix.max_len) for p in ("max", "oracle")]
    return results + [simulate(stream, budget, "paged", b, mix.max_len) for b in block_sizes]


def _mix(mix: object) -> RequestMix:
    if isinstance(mix, RequestMix):
        return mix
    if not isinstance(mix, str) or mix not in MIXES:
        raise ValueError(f"mix={mix!r} must be a RequestMix or one of {tuple(MIXES)}")
    return MIXES[mix]
