"""Byte-level byte-pair encoding (BPE), from scratch.

A language model reads integers. Byte-level BPE turns any text into integers in three steps:

1. encode the text as UTF-8 bytes: every string becomes a list of ids in ``0..255``;
2. split it into chunks with a regular expression (words, numbers, punctuation, spaces) so that no token
   ever spans two words;
3. repeatedly replace the most frequent adjacent pair of ids with a new id ``256, 257, ...``.

Training records the merges in order; encoding replays them, lowest rank first; decoding looks each id
up in a table of byte strings. The small functions come first, worked examples in their docstrings:

    >>> get_pair_counts([1, 2, 3, 1, 2])
    {(1, 2): 2, (2, 3): 1, (3, 1): 1}
    >>> merge([1, 2, 3, 1, 2], (1, 2), 4)
    [4, 3, 4]

The tokenizer of the course (vocabulary 512, trained on ``corpus.load_text("train")``) ships as
``data/bpe_512.json``; :func:`load_tokenizer` reads it and :func:`train_course_tokenizer` rebuilds it.
"""

from __future__ import annotations

import html
import json
import operator
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from itertools import pairwise
from pathlib import Path

from attnlab import corpus
from attnlab._validate import ArgumentTypeError, check_bool, check_path, check_type

Pair = tuple[int, int]

#: GPT-2's split pattern, rewritten for the standard library's ``re`` (no ``\p{L}``): ``[^\W\d_]`` is
#: "a word character that is neither a digit nor an underscore", i.e. a letter. In order: English
#: contractions, an optional space plus letters, an optional space plus digits, an optional space plus
#: other symbols, whitespace not followed by a non-space, any other whitespace. Every character falls in
#: exactly one class, so the chunks always join back to the text.
SPLIT_PATTERN = r"""'(?:[sdmt]|ll|ve|re)| ?[^\W\d_]+| ?\d+| ?(?:[^\s\w]|_)+|\s+(?!\S)|\s+"""

#: the vocabulary size of the course tokenizer.
COURSE_VOCAB_SIZE = 512

#: where the course tokenizer lives inside the package.
COURSE_TOKENIZER_PATH = Path(__file__).resolve().parent / "data" / f"bpe_{COURSE_VOCAB_SIZE}.json"

FORMAT = "attnlab-bpe-v1"

_ENCODE_CACHE_MAX = 100_000


# ---------------------------------------------------------------------------------------------------------
# The two primitives
# ---------------------------------------------------------------------------------------------------------


def get_pair_counts(ids: Sequence[int], counts: dict[Pair, int] | None = None) -> dict[Pair, int]:
    """Count each adjacent pair ``(ids[i], ids[i+1])``; add into ``counts`` when given, and return it.

    Overlapping pairs each count, so ``[7, 7, 7]`` holds ``(7, 7)`` twice. Keys appear in order of first
    occurrence.

        >>> get_pair_counts([1, 2, 3, 1, 2])
        {(1, 2): 2, (2, 3): 1, (3, 1): 1}
        >>> get_pair_counts([7, 7, 7])
        {(7, 7): 2}
        >>> get_pair_counts([5])
        {}
    """
    counts = {} if counts is None else counts
    for pair in pairwise(ids):
        counts[pair] = counts.get(pair, 0) + 1
    return counts


def merge(ids: Sequence[int], pair: Pair, new_id: int) -> list[int]:
    """Return ``ids`` with every occurrence of ``pair`` replaced by ``new_id``, scanning left to right.

    A run like ``[7, 7, 7]`` merges its first two ids only: matches never overlap.

        >>> merge([1, 2, 3, 1, 2], (1, 2), 4)
        [4, 3, 4]
        >>> merge([7, 7, 7], (7, 7), 8)
        [8, 7]
    """
    out: list[int] = []
    i = 0
    while i < len(ids):
        if i + 1 < len(ids) and ids[i] == pair[0] and ids[i + 1] == pair[1]:
            out.append(new_id)
            i += 2
        else:
            out.append(ids[i])
            i += 1
    return out


def most_frequent_pair(counts: dict[Pair, int]) -> Pair:
    """Return the pair with the highest count; a tie goes to the smallest pair, ``(a, b) < (c, d)``.

    The explicit tie rule makes training independent of dictionary order, so the fast trainer and the
    plain one agree merge for merge.

        >>> most_frequent_pair({(5, 6): 3, (1, 9): 3, (0, 0): 1})
        (1, 9)
    """
    check_type("counts", counts, dict)
    if not counts:
        raise ValueError("counts is empty: there is no pair to choose (the text has no two adjacent bytes)")
    return max(counts, key=lambda p: (counts[p], -p[0], -p[1]))


# ---------------------------------------------------------------------------------------------------------
# Pre-tokenization
# ---------------------------------------------------------------------------------------------------------


def split_chunks(text: str, pattern: str = SPLIT_PATTERN) -> list[str]:
    """Split ``text`` into the chunks that BPE works inside (merges never cross a chunk boundary).

        >>> split_chunks("Hello world, it's 2024!")
        ['Hello', ' world', ',', ' it', "'s", ' 2024', '!']
        >>> split_chunks("a  b")
        ['a', ' ', ' b']
    """
    _check_text("text", text)
    _check_pattern(pattern)
    return re.findall(pattern, text)


def _check_text(name: str, text: object) -> str:
    if not isinstance(text, str):
        raise ArgumentTypeError(f"{name} must be a str, got {type(text).__name__}")
    return text


def _check_pattern(pattern: object) -> str:
    """A regular expression (a str) that ``re`` compiles."""
    _check_text("pattern", pattern)
    try:
        re.compile(pattern)
    except re.error as err:
        raise ValueError(f"pattern={pattern!r} is not a valid regular expression: {err}") from None
    return pattern


def _check_merges(merges: object) -> dict[Pair, int]:
    """``{(a, b): new_id}`` in training order: merge number r creates id 256 + r from two smaller ids."""
    check_type("merges", merges, dict)
    for rank, (pair, new_id) in enumerate(merges.items()):
        if (not isinstance(pair, tuple) or len(pair) != 2
                or not all(isinstance(i, int) and not isinstance(i, bool) for i in (*pair, new_id))):
            raise ArgumentTypeError(f"merges[{rank}]={pair!r} -> {new_id!r} must map a pair of int ids to an int id")
        a, b = pair
        if new_id != 256 + rank or not (0 <= a < new_id and 0 <= b < new_id):
            raise ValueError(
                f"merges[{rank}]=({a}, {b}) -> {new_id} is invalid: merge number {rank} must create "
                f"id {256 + rank} from two smaller ids"
            )
    return merges


def _utf8(text: str, name: str = "text") -> bytes:
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError as err:
        raise ValueError(
            f"{name} contains {text[err.start]!r} at position {err.start}, a lone surrogate that has no "
            "UTF-8 encoding; only valid Unicode text can be tokenized"
        ) from None


def _check_vocab_size(vocab_size: object) -> int:
    if isinstance(vocab_size, bool) or not isinstance(vocab_size, int) or vocab_size < 256:
        error = ValueError if isinstance(vocab_size, int) and not isinstance(vocab_size, bool) else ArgumentTypeError
        raise error(
            f"vocab_size={vocab_size!r} must be an integer >= 256 (the 256 byte values come first, "
            "merges add ids 256, 257, ...)"
        )
    return vocab_size


# ---------------------------------------------------------------------------------------------------------
# Training
# ---------------------------------------------------------------------------------------------------------


def train_merges_naive(text: str, vocab_size: int) -> dict[Pair, int]:
    """The textbook trainer: recount every pair in every chunk before each merge. Returns ``{pair: id}``.

    ``O(n_merges * n_bytes)``: fine for a paragraph, minutes for the whole corpus. It is the reference that
    :func:`train_merges` is tested against.

        >>> train_merges_naive("aaabdaaabac", 259)
        {(97, 97): 256, (97, 98): 257, (256, 257): 258}
    """
    _check_text("text", text)
    _check_vocab_size(vocab_size)
    chunks = [list(_utf8(chunk)) for chunk in split_chunks(text)]
    merges: dict[Pair, int] = {}
    for new_id in range(256, vocab_size):
        counts: dict[Pair, int] = {}
        for ids in chunks:
            get_pair_counts(ids, counts)
        if not counts:
            break
        pair = most_frequent_pair(counts)
        chunks = [merge(ids, pair, new_id) for ids in chunks]
        merges[pair] = new_id
    return merges


def train_merges(text: str, vocab_size: int, verbose: bool = False) -> dict[Pair, int]:
    """Learn ``vocab_size - 256`` merges from ``text``; return ``{pair: new_id}`` in training order.

    Same result as :func:`train_merges_naive`, but fast: the text is split into chunks, identical chunks
    are counted once and weighted by how often they occur, and after each merge only the chunks that
    contain the merged pair update the pair counts. Training stops early if no pair is left (every
    chunk is a single token), so the result may hold fewer merges on a tiny text.

        >>> train_merges("aaabdaaabac", 259)
        {(97, 97): 256, (97, 98): 257, (256, 257): 258}
    """
    _check_text("text", text)
    _check_vocab_size(vocab_size)
    check_bool("verbose", verbose)
    chunk_freq = Counter(split_chunks(text))
    words = [list(_utf8(chunk)) for chunk in chunk_freq]  # unique chunks as byte ids
    weights = list(chunk_freq.values())  # how often each occurs

    counts: dict[Pair, int] = {}  # pair -> occurrences in the whole text
    where: dict[Pair, set[int]] = {}  # pair -> indices of the words that (may) contain it
    for w, (ids, weight) in enumerate(zip(words, weights, strict=True)):
        for pair in pairwise(ids):
            counts[pair] = counts.get(pair, 0) + weight
            where.setdefault(pair, set()).add(w)

    merges: dict[Pair, int] = {}
    for new_id in range(256, vocab_size):
        if not counts:
            break
        pair = most_frequent_pair(counts)
        if verbose:
            print(f"merge {new_id - 255}/{vocab_size - 256}: {pair} -> {new_id} ({counts[pair]} occurrences)")
        for w in sorted(where.pop(pair)):
            ids, weight = words[w], weights[w]
            new_ids = merge(ids, pair, new_id)
            if len(new_ids) == len(ids):  # stale index: the pair left this word in an earlier merge
                continue
            for old in pairwise(ids):  # take this word's pairs out ...
                counts[old] -= weight
                if counts[old] == 0:
                    del counts[old]
            for new in pairwise(new_ids):  # ... and put the merged word's pairs back
                counts[new] = counts.get(new, 0) + weight
                where.setdefault(new, set()).add(w)
            words[w] = new_ids
        merges[pair] = new_id
    return merges


def vocab_from_merges(merges: dict[Pair, int]) -> dict[int, bytes]:
    """Return ``{id: bytes}``: ids ``0..255`` are single bytes, each merge concatenates its pair.

        >>> vocab_from_merges({(104, 105): 256})[256]
        b'hi'
    """
    _check_merges(merges)
    vocab = {i: bytes([i]) for i in range(256)}
    for (a, b), new_id in merges.items():
        vocab[new_id] = vocab[a] + vocab[b]
    return vocab


# ---------------------------------------------------------------------------------------------------------
# The tokenizer
# ---------------------------------------------------------------------------------------------------------


class BPETokenizer:
    """A byte-level BPE tokenizer: ``train`` it, then ``encode`` text to ids and ``decode`` ids to text.

        >>> tok = BPETokenizer().train("aaabdaaabac", vocab_size=259)
        >>> tok.encode("aaabdaaabac")
        [258, 100, 258, 97, 99]
        >>> tok.decode([258, 100])
        'aaabd'
        >>> tok.vocab_size
        259

    An untrained tokenizer has the 256 byte values only, and still round-trips any text.
    """

    def __init__(self, merges: dict[Pair, int] | None = None, pattern: str = SPLIT_PATTERN) -> None:
        merges = _check_merges({} if merges is None else merges).copy()
        _check_pattern(pattern)
        self.pattern = pattern
        self._regex = re.compile(pattern)
        self._set_merges(merges)

    def _set_merges(self, merges: dict[Pair, int]) -> None:
        self.merges: dict[Pair, int] = merges
        self.vocab: dict[int, bytes] = vocab_from_merges(merges)
        self._cache: dict[str, list[int]] = {}  # chunk -> ids; only valid for these merges

    # -- training -----------------------------------------------------------------------------------------

    def train(self, text: str, vocab_size: int, verbose: bool = False) -> BPETokenizer:
        """Learn merges from ``text`` until the vocabulary has ``vocab_size`` ids; return ``self``.

        Uses :func:`train_merges`; replaces any earlier merges. ``vocab_size`` must be at least 256.
        """
        if self.pattern != SPLIT_PATTERN:
            raise ValueError("pattern must be SPLIT_PATTERN to train; a custom pattern can only encode")
        self._set_merges(train_merges(text, vocab_size, verbose=verbose))
        return self

    @property
    def vocab_size(self) -> int:
        """Number of ids: 256 bytes plus one per merge."""
        return 256 + len(self.merges)

    def truncated(self, vocab_size: int) -> BPETokenizer:
        """Return a tokenizer with only the first ``vocab_size - 256`` merges.

        BPE training is greedy, so this is exactly the tokenizer that training to ``vocab_size`` gives.
        """
        _check_vocab_size(vocab_size)
        if vocab_size > self.vocab_size:
            raise ValueError(
                f"vocab_size={vocab_size} must be <= this tokenizer's vocab_size={self.vocab_size}"
            )
        kept = dict(list(self.merges.items())[: vocab_size - 256])
        return BPETokenizer(kept, self.pattern)

    # -- encoding and decoding ----------------------------------------------------------------------------

    def _encode_chunk(self, chunk_bytes: bytes) -> list[int]:
        """Apply the merges to one chunk's bytes, always the lowest-ranked (earliest learned) pair first."""
        ids = list(chunk_bytes)
        while len(ids) >= 2:
            counts = get_pair_counts(ids)
            pair = min(counts, key=lambda p: self.merges.get(p, float("inf")))
            if pair not in self.merges:
                break  # no pair in this chunk was ever merged
            ids = merge(ids, pair, self.merges[pair])
        return ids

    def encode(self, text: str) -> list[int]:
        """Return the token ids of ``text``: split into chunks, then merge inside each chunk.

        Repeated chunks are looked up in a cache. Raises ``ValueError`` for a non-string or for text that
        has no UTF-8 encoding (lone surrogates).
        """
        _check_text("text", text)
        _utf8(text)
        ids: list[int] = []
        for chunk in self._regex.findall(text):
            cached = self._cache.get(chunk)
            if cached is None:
                cached = self._encode_chunk(chunk.encode("utf-8"))
                if len(self._cache) >= _ENCODE_CACHE_MAX:
                    self._cache.clear()
                self._cache[chunk] = cached
            ids.extend(cached)
        return ids

    def _check_id(self, name: str, t: object) -> int:
        try:
            t = operator.index(t)
        except TypeError:
            raise ValueError(f"{name}={t!r} must be an integer token id") from None
        if not 0 <= t < self.vocab_size:
            raise ValueError(
                f"{name}={t} is out of range: token ids must satisfy 0 <= id < {self.vocab_size}"
            )
        return t

    def _check_ids(self, ids: Iterable[int]) -> list[int]:
        if isinstance(ids, (str, bytes)):
            raise ValueError(f"ids must be a sequence of integer token ids, got {type(ids).__name__}")
        return [self._check_id(f"ids[{i}]", t) for i, t in enumerate(ids)]

    def decode(self, ids: Iterable[int]) -> str:
        """Return the text of ``ids``: join their bytes and decode UTF-8 (invalid bytes become ``"�"``).

        A cut through a multi-byte character (e.g. decoding one token of ``"é"``) shows as ``"�"``; whole
        encodings always decode back exactly. Raises ``ValueError`` for an id outside ``0..vocab_size-1``.
        """
        data = b"".join(self.vocab[t] for t in self._check_ids(ids))
        return data.decode("utf-8", errors="replace")

    def token_bytes(self, id: int) -> bytes:
        """Return the bytes that token ``id`` stands for."""
        return self.vocab[self._check_id("id", id)]

    def tokens(self, text: str) -> list[bytes]:
        """Return the byte string of each token of ``text`` (the pieces the model sees)."""
        return [self.vocab[t] for t in self.encode(text)]

    # -- saving -------------------------------------------------------------------------------------------

    def to_json(self, metadata: dict | None = None) -> str:
        """Return the tokenizer as JSON text, one merge per line, each with the token it creates.

        ``{"id": 256, "pair": [32, 116], "token": " t"}``: ``token`` is the merged bytes shown as text
        (bytes that are not valid UTF-8 on their own appear as ``\\xNN``), for reading only.
        """
        if metadata is not None:
            check_type("metadata", metadata, dict)
        header = {"format": FORMAT, "vocab_size": self.vocab_size, "pattern": self.pattern}
        if metadata:
            header["metadata"] = metadata
        lines = [json.dumps(header, ensure_ascii=False)[:-1] + ', "merges": [']
        entries = [
            json.dumps({"id": new_id, "pair": [a, b], "token": render_token(self.vocab[new_id])},
                       ensure_ascii=False)
            for (a, b), new_id in self.merges.items()
        ]
        lines.append(",\n".join(entries))
        lines.append("]}")
        return "\n".join(lines) + "\n"

    def save(self, path: str | Path, metadata: dict | None = None) -> None:
        """Write :meth:`to_json` to ``path`` (UTF-8)."""
        check_path("path", path)
        Path(path).write_text(self.to_json(metadata), encoding="utf-8")

    @classmethod
    def from_json(cls, text: str) -> BPETokenizer:
        """Rebuild a tokenizer from :meth:`to_json` text (each merge's ``token`` is for reading only)."""
        _check_text("text", text)
        data = json.loads(text)
        if not isinstance(data, dict):
            raise ValueError(f"text must hold a JSON object, got {type(data).__name__}")
        if data.get("format") != FORMAT:
            raise ValueError(f"format={data.get('format')!r} must be {FORMAT!r}")
        try:
            merges = {(int(m["pair"][0]), int(m["pair"][1])): int(m["id"]) for m in data["merges"]}
        except (KeyError, IndexError, TypeError, ValueError):
            raise ValueError('text must hold "merges": a list of {"id": ..., "pair": [a, b]} entries') from None
        if len(merges) != len(data["merges"]):
            raise ValueError("merges must not repeat a pair")
        tok = cls(merges, data.get("pattern", SPLIT_PATTERN))
        if tok.vocab_size != data["vocab_size"]:
            raise ValueError(
                f"vocab_size={data['vocab_size']} does not match the {len(merges)} merges stored"
            )
        return tok

    @classmethod
    def load(cls, path: str | Path) -> BPETokenizer:
        """Read a tokenizer written by :meth:`save`."""
        check_path("path", path)
        return cls.from_json(Path(path).read_text(encoding="utf-8"))

    def __repr__(self) -> str:
        return f"BPETokenizer(vocab_size={self.vocab_size})"


# ---------------------------------------------------------------------------------------------------------
# The course tokenizer
# ---------------------------------------------------------------------------------------------------------


def course_metadata() -> dict:
    """What the course tokenizer was trained on: split and SHA-256 of the text (see :mod:`attnlab.corpus`)."""
    return {"trained_on": "corpus.load_text('train')", "corpus_sha256": corpus.fingerprint("train")}


def train_course_tokenizer() -> BPETokenizer:
    """Train the course tokenizer from scratch: vocabulary 512 on ``corpus.load_text("train")``.

    Deterministic: on the same Python release (same documentation text) it reproduces
    ``data/bpe_512.json`` byte for byte via ``tok.save(path, metadata=course_metadata())``.
    """
    return BPETokenizer().train(corpus.load_text("train"), COURSE_VOCAB_SIZE)


def load_tokenizer() -> BPETokenizer:
    """Load the course tokenizer shipped with the library (vocabulary 512)."""
    return BPETokenizer.load(COURSE_TOKENIZER_PATH)


def shipped_metadata() -> dict:
    """Return the ``metadata`` stored in the shipped ``data/bpe_512.json`` (what it was trained on)."""
    return json.loads(COURSE_TOKENIZER_PATH.read_text(encoding="utf-8")).get("metadata", {})


# ---------------------------------------------------------------------------------------------------------
# Measuring and showing
# ---------------------------------------------------------------------------------------------------------


def utf8_bytes_per_token(text: str, ids: Sequence[int]) -> float:
    """Compression of a tokenization: UTF-8 bytes of ``text`` divided by the number of tokens ``len(ids)``.

    1.0 for raw bytes; higher is better (fewer tokens for the same text). (Not the KV cache's bytes per
    token: that is :func:`attnlab.costs.cache_bytes_per_token`.)

        >>> utf8_bytes_per_token("héllo", [0, 1, 2])
        2.0
    """
    _check_text("text", text)
    if isinstance(ids, (str, bytes)) or not hasattr(ids, "__len__"):
        raise ArgumentTypeError(f"ids must be a sequence of token ids, got {type(ids).__name__}")
    if len(ids) == 0:
        raise ValueError("ids must hold at least one token to measure bytes per token")
    return len(_utf8(text)) / len(ids)


def render_token(token: bytes) -> str:
    """Show a token's bytes as text; bytes that do not form valid UTF-8 on their own appear as ``\\xNN``.

        >>> render_token(" the".encode())
        ' the'
        >>> render_token("é".encode()[:1])
        '\\\\xc3'
    """
    check_type("token", token, bytes)
    return token.decode("utf-8", errors="backslashreplace")


def visible_token(token: bytes) -> str:
    """:func:`render_token` with its whitespace made visible, for token lists, tables and heatmap labels: spaces
    as ``·``, newlines as ``↵``, tabs as ``⇥``, other control characters as ``\\xNN``.

        >>> visible_token(b" if\\n")
        '·if↵'
    """
    text = render_token(token).replace(" ", "·").replace("\n", "↵").replace("\t", "⇥")
    return "".join(c if c.isprintable() else f"\\x{ord(c):02x}" for c in text)


_PALETTE = ("#fde2e4", "#cde7f0", "#d8f3dc", "#fff1c1", "#e2d9f3", "#ffd8be")


def tokens_html(tokenizer: BPETokenizer, text: str) -> str:
    """Return HTML showing ``text`` cut into its tokens, each on a coloured background (id on hover).

    Spaces stay visible as ``·`` and newlines as ``↵`` (:func:`visible_token`) so that the chunk boundaries
    can be seen.
    """
    check_type("tokenizer", tokenizer, BPETokenizer)
    _check_text("text", text)
    spans = []
    for k, t in enumerate(tokenizer.encode(text)):
        shown = visible_token(tokenizer.vocab[t])
        spans.append(
            f'<span title="id {t}" style="background:{_PALETTE[k % len(_PALETTE)]};padding:1px 0;'
            f'margin-right:1px;border-radius:3px">{html.escape(shown)}</span>'
        )
    style = "font-family:monospace;line-height:1.9;white-space:pre-wrap"
    return f'<div style="{style}">' + "".join(spans) + "</div>"


def compare_with_hf(train_text: str, eval_text: str, vocab_size: int) -> dict:
    """Train our BPE and Hugging Face ``tokenizers``' byte-level BPE on ``train_text`` with the same
    ``vocab_size`` (in memory, nothing downloaded) and measure both on ``eval_text``.

    Returns ``{"vocab_size", "eval_bytes", "ours_tokens", "hf_tokens", "ours_utf8_bytes_per_token",
    "hf_utf8_bytes_per_token", "hf_vocab_size", "hf_roundtrip"}``. Both use GPT-2's split pattern (ours in
    :data:`SPLIT_PATTERN`, theirs inside ``pre_tokenizers.ByteLevel``) and start from the 256 bytes.
    """
    _check_text("train_text", train_text)
    _check_text("eval_text", eval_text)
    _check_vocab_size(vocab_size)
    eval_bytes = len(_utf8(eval_text, "eval_text"))
    if eval_bytes == 0:
        raise ValueError("eval_text must not be empty")
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    ours = BPETokenizer().train(train_text, vocab_size)
    ours_tokens = len(ours.encode(eval_text))

    hf = Tokenizer(models.BPE())
    hf.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    hf.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  special_tokens=[], show_progress=False)
    hf.train_from_iterator([train_text], trainer=trainer)
    hf_ids = hf.encode(eval_text).ids

    return {
        "vocab_size": vocab_size,
        "eval_bytes": eval_bytes,
        "ours_tokens": ours_tokens,
        "hf_tokens": len(hf_ids),
        "ours_utf8_bytes_per_token": eval_bytes / ours_tokens,
        "hf_utf8_bytes_per_token": eval_bytes / len(hf_ids),
        "hf_vocab_size": hf.get_vocab_size(),
        "hf_roundtrip": hf.decode(hf_ids) == eval_text,
    }


def write_course_tokenizer(path: str | Path = COURSE_TOKENIZER_PATH) -> BPETokenizer:
    """Train the course tokenizer and save it, with :func:`course_metadata`, to ``path``; return it.

    ``python -m attnlab.tokenization`` runs this and rewrites the shipped ``data/bpe_512.json``.
    """
    check_path("path", path)
    tok = train_course_tokenizer()
    tok.save(path, metadata=course_metadata())
    return tok


if __name__ == "__main__":
    print(f"wrote {write_course_tokenizer()!r} to {COURSE_TOKENIZER_PATH}")
