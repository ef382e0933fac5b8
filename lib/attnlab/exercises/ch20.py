"""Checks for chapter 20, DeepSeek-V4's compressed sparse attention.

    from attnlab.exercises import ch20
    print(ch20.check_visible_entries(answer_csa_entries, answer_hca_entries))   # entries a query may use
    print(ch20.check_entry_bytes(answer_entry_bytes, answer_csa_bytes_per_token))   # FP8 entry, CSA per token
    print(ch20.check_decode_prediction(answer_entries, answer_window, answer_pending))   # predicted, then run

Each check compares the answer with :mod:`attnlab.v4`, :mod:`attnlab.costs` and :mod:`attnlab.cache_formats`:
``None`` returns a reminder, a right answer "✓ ...", a wrong one raises ``AssertionError`` with a hint aimed at
the usual slip.
"""

from __future__ import annotations

import torch

from attnlab import costs
from attnlab.cache_formats import DEEPSEEK_V4_FP4_INDEX_KEY, DEEPSEEK_V4_FP8_ENTRY, DEEPSEEK_V32_FP8_MLA
from attnlab.exercises._common import as_integer, as_number, run_check
from attnlab.v4 import DeepSeekV4Attention, V4AttentionConfig

#: Exercise 1: a query position in a CSA layer (m = 4) and one in an HCA layer (m = 128), counted from 0.
EXERCISE_1 = {"csa_position": 39, "csa_rate": 4, "hca_position": 255, "hca_rate": 128}

#: Exercise 3: a tiny CSA layer decoding ``tokens`` tokens one at a time (compression rate 4, window 6).
EXERCISE_3 = {"tokens": 14, "rate": 4, "window": 6}


# ----------------------------------------------------------------------------------------------------
# exercise 1


def expected_visible() -> tuple[int, int]:
    """Entries a query at position t may use: w < (t + 1) // m, so (t + 1) // m of them
    (:func:`attnlab.costs.v4_layer_cache_entries` at context t + 1)."""
    e = EXERCISE_1
    csa = costs.v4_layer_cache_entries("csa", e["csa_position"] + 1, e["csa_rate"])["entries"]
    hca = costs.v4_layer_cache_entries("hca", e["hca_position"] + 1, e["hca_rate"])["entries"]
    return csa, hca


def check_visible_entries(csa_entries: object, hca_entries: object) -> str:
    """Exercise 1: how many compressed entries (entries 0, 1, ..., n - 1) the query at ``EXERCISE_1``'s CSA
    position may use, and how many the query at its HCA position may use (two ints)."""
    e = EXERCISE_1
    t, m, t2, m2 = e["csa_position"], e["csa_rate"], e["hca_position"], e["hca_rate"]
    want_csa, want_hca = expected_visible()
    if csa_entries is None or hca_entries is None:
        return run_check("visible entries", None, lambda a: "")

    def check(a: object) -> str:
        got_csa, got_hca = (as_integer(x, name) for x, name in zip(a, ("csa_entries", "hca_entries"), strict=True))
        assert got_csa != t // m or t // m == want_csa, (
            f"t // m counts the windows finished BEFORE token {t}; token {t} itself completes window "
            f"{t // m} (tokens {m * (t // m)}..{m * (t // m) + m - 1}): the rule is w < (t + 1) // m")
        assert got_csa != (t + 1) // (2 * m), (
            f"each CSA window spans 2m = {2 * m} tokens, but windows start every m = {m} tokens: one entry per "
            f"{m} tokens, so (t + 1) // {m}")
        assert got_csa != t + 1, "that counts raw tokens; CSA keeps one compressed entry per m tokens"
        assert got_csa == want_csa, (
            f"not yet: entry w is complete once token m w + m - 1 has arrived, w < (t + 1) // {m}")
        assert got_hca != t2 // m2 or t2 // m2 == want_hca, (
            f"token {t2} is the last of block {t2 // m2}: the query there may already use it, (t + 1) // {m2}")
        assert got_hca == want_hca, f"not yet: the same rule with m = {m2}: w < (t + 1) // {m2}"
        return (f"CSA: entries 0..{want_csa - 1} ({want_csa}), of which the indexer keeps its top-k; the window "
                f"adds the last 128 raw tokens. HCA: entries 0..{want_hca - 1} ({want_hca}), all read; with a "
                f"128-token window every earlier token is seen raw or compressed")

    return run_check("visible entries", (csa_entries, hca_entries), check)


# ----------------------------------------------------------------------------------------------------
# exercise 2


def expected_entry_bytes() -> tuple[int, float]:
    """Bytes of one V4 FP8 entry (:data:`~attnlab.cache_formats.DEEPSEEK_V4_FP8_ENTRY`) and the bytes per token
    of a CSA layer far past its window: (entry + FP4 index key) / 4."""
    entry, key = DEEPSEEK_V4_FP8_ENTRY.bytes, DEEPSEEK_V4_FP4_INDEX_KEY.bytes
    return entry, (entry + key) / 4


def check_entry_bytes(entry_bytes: object, csa_bytes_per_token: object) -> str:
    """Exercise 2: the bytes of one DeepSeek-V4 cache entry in FP8 (448 e4m3 values, the 64 RoPE values in
    bfloat16, one ue8m0 scale per 64 FP8 values, one pad byte), and the bytes per token a CSA layer adds far
    past its window (one entry and one FP4 index key of 68 bytes per 4 tokens)."""
    want_entry, want_per_token = expected_entry_bytes()
    key = DEEPSEEK_V4_FP4_INDEX_KEY.bytes
    if entry_bytes is None or csa_bytes_per_token is None:
        return run_check("V4 entry bytes", None, lambda a: "")

    def check(a: object) -> str:
        got_entry = as_integer(a[0], "entry_bytes")
        assert got_entry != 512, "512 bytes would be every value in FP8; the 64 RoPE values stay in bfloat16 (2 B)"
        assert got_entry != 1024, (
            "1024 bytes is the bfloat16 entry (512 x 2 B): the FP8 layout stores 448 of them in 1 B")
        assert got_entry != 448 + 128, (
            "add the scales: one ue8m0 byte per 64 FP8 values, 448 / 64 = 7, and one pad byte")
        assert got_entry != 448 + 128 + 7, "one byte of padding rounds the entry to 584, a multiple of 8"
        assert got_entry != DEEPSEEK_V32_FP8_MLA.bytes, (
            "656 bytes is V3.2's MLA entry (512 e4m3 + 4 fp32 scales + 64 bf16)")
        assert got_entry == want_entry, "not yet: 448 x 1 B + 64 x 2 B + 448 / 64 scales x 1 B + 1 pad byte"
        got = as_number(a[1], "csa_bytes_per_token")
        assert abs(got - (want_entry + key)) > 1e-9, (
            "one entry per token? CSA pools 4 tokens into one entry: divide by 4")
        assert abs(got - want_entry / 4) > 1e-9, f"the CSA layer also caches one FP4 index key ({key} B) per entry"
        assert abs(got - (want_entry + key) / 8) > 1e-9, (
            "windows of 8 tokens overlap: they start every 4 tokens, so one entry per 4 tokens, not 8")
        assert abs(got - want_per_token) < 1e-9, f"not yet: (entry + index key) / 4 = ({want_entry} + {key}) / 4"
        v32 = costs.v32_cache_bytes(1)
        return (f"{DEEPSEEK_V4_FP8_ENTRY.formula()}; a CSA layer adds ({want_entry} + {key}) / 4 = {want_per_token:g} "
                f"bytes per token, an HCA layer {want_entry} / 128 = {want_entry / 128:.2f}; V3.2 caches "
                f"{v32 // costs.DEEPSEEK_V32_LAYERS} bytes per token in every layer")

    return run_check("V4 entry bytes", (entry_bytes, csa_bytes_per_token), check)


# ----------------------------------------------------------------------------------------------------
# exercise 3


def run_decode() -> dict[str, int]:
    """Exercise 3 run on a tiny random CSA layer (float64): ``tokens`` tokens decoded one at a time. Returns
    the cache's compressed entries, raw window tokens, tokens waiting in the compressor's unfinished window
    and tokens whose first halves it keeps for the next entry."""
    e = EXERCISE_3
    config = V4AttentionConfig(d_model=16, n_heads=2, q_lora_rank=8, o_groups=2, o_lora_rank=4, head_dim=8,
                               rope_head_dim=4, window=e["window"], layer_type="csa", compress_rate=e["rate"],
                               index_n_heads=2, index_head_dim=8, index_topk=2)
    torch.manual_seed(0)
    layer = DeepSeekV4Attention(config).double()
    cache = layer.make_cache()
    x = torch.randn(1, e["tokens"], config.d_model, dtype=torch.float64)
    with torch.no_grad():
        for t in range(e["tokens"]):
            layer(x[:, t:t + 1], cache=cache)
    state = cache.compressor
    return {"entries": cache.n_entries, "window": cache.window.n_tokens,
            "pending": 0 if state.pending is None else state.pending.shape[1],
            "previous": 0 if state.previous is None else state.previous.shape[1]}


def check_decode_prediction(entries: object, window: object, pending: object) -> str:
    """Exercise 3: predict, for ``EXERCISE_3``'s layer after its tokens, the compressed entries in the cache, the
    raw tokens in the window and the tokens waiting in the compressor's unfinished window; the check runs it."""
    e = EXERCISE_3
    if entries is None or window is None or pending is None:
        return run_check("decode prediction", None, lambda a: "")
    ran = run_decode()
    n, m, W = e["tokens"], e["rate"], e["window"]

    def check(a: object) -> str:
        got_entries, got_window, got_pending = (as_integer(x, name) for x, name in
                                                zip(a, ("entries", "window", "pending"), strict=True))
        assert got_entries != (n - m) // m, (
            "entry 0 has no window before it, yet it is emitted: its first-half slots get weight 0 (exp(-inf))")
        assert got_entries != n // (2 * m), "windows of 2m tokens start every m tokens: one entry per m tokens"
        assert got_entries == ran["entries"], f"not yet: the run holds {ran['entries']} entries"
        assert got_window != n, f"the window keeps only the last W = {W} raw tokens"
        assert got_window == ran["window"], f"not yet: min(W, tokens) = min({W}, {n})"
        assert got_pending != m + n % m, (
            "the previous window is kept apart: only its first halves, already folded with the bias, wait in "
            "state.previous; pending holds the tokens of the unfinished window")
        assert got_pending == ran["pending"], f"not yet: the run holds {ran['pending']} tokens of the unfinished window"
        done = ran["entries"] * m
        return (f"{ran['entries']} entries (tokens 0..{done - 1}; the last pooled the second halves of tokens "
                f"{done - m}..{done - 1} and the first halves of {done - 2 * m}..{done - m - 1}), {ran['window']} raw "
                f"tokens ({n - ran['window']}..{n - 1}), {ran['pending']} token(s) waiting ({done}..{n - 1}) and the "
                f"first halves of {ran['previous']} tokens kept for the next entry: decoding continues exactly as "
                f"a prefill would")

    return run_check("decode prediction", (entries, window, pending), check)
