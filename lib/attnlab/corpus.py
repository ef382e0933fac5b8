"""The course's text: Python's own reference documentation, shipped with every Python install.

``pydoc_data.topics.topics`` maps ~80 topic names (``"assert"``, ``"class"``, ``"lambda"``, ...) to the
plain-text pages that ``help("assert")`` prints: about 465 KB of English prose with code, grammar rules
and a little typographic Unicode (curly quotes, dashes). It needs no download, so every learner trains on
exactly the same text.

The split is fixed: topics are taken in sorted name order, every 10th one (the 1st, 11th, 21st, ...)
is held out for validation, the rest is for training. Topics are joined with a blank line between them.

    >>> train, val = load_text("train"), load_text("val")
    >>> len(val) < len(train)
    True

The pages change a little between Python releases, so the course reads a frozen snapshot of them,
taken from Python 3.11.7 and shipped as ``attnlab/data/pydoc_topics.json.gz`` (Python's documentation is
under the PSF license): every learner, on any Python, trains on exactly the same text, and the stored
notebook outputs hold everywhere. :func:`snapshot_from_python` rebuilds it from the running Python;
:func:`fingerprint` identifies the exact text.
"""

from __future__ import annotations

import functools
import gzip
import hashlib
import json
import sys
from pathlib import Path

SNAPSHOT_PATH = Path(__file__).parent / "data" / "pydoc_topics.json.gz"

SPLITS: tuple[str, ...] = ("train", "val", "all")

#: every ``VAL_EVERY``-th topic (in sorted name order, starting with the first) is validation text.
VAL_EVERY = 10

#: separator between two topics: each page ends in a newline, so this leaves one blank line.
SEPARATOR = "\n"


def _check_split(split: object) -> str:
    if split not in SPLITS:
        raise ValueError(f"split={split!r} must be one of {', '.join(map(repr, SPLITS))}")
    return split  # type: ignore[return-value]


@functools.cache
def _topics() -> dict[str, str]:
    """The frozen topic pages: name -> text (read once from :data:`SNAPSHOT_PATH`)."""
    with gzip.open(SNAPSHOT_PATH, "rt", encoding="utf-8") as f:
        return json.load(f)["topics"]


def snapshot_from_python(path: Path = SNAPSHOT_PATH) -> str:
    """Write the running Python's ``pydoc_data.topics`` as the course snapshot; return its Python version.

    Deterministic bytes (sorted keys, gzip mtime 0), so rebuilding on Python 3.11.7 reproduces the file."""
    from pydoc_data.topics import topics

    version = sys.version.split()[0]
    blob = {"python": version, "topics": {k: topics[k] for k in sorted(topics)}}
    data = json.dumps(blob, ensure_ascii=False, sort_keys=True, indent=0).encode("utf-8")
    with open(path, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", filename="", mtime=0) as f:
        f.write(data)
    _topics.cache_clear()
    return version


def topic_names(split: str = "all") -> list[str]:
    """Return the names of the documentation topics in ``split``, in sorted order.

    ``split="val"`` is every 10th name (positions 0, 10, 20, ... of the sorted list), ``"train"`` the
    others, ``"all"`` every name.

        >>> topic_names("val")[:2]
        ['assert', 'bitwise']
    """
    split = _check_split(split)
    names = sorted(_topics())
    if split == "all":
        return names
    is_val = split == "val"
    return [name for i, name in enumerate(names) if (i % VAL_EVERY == 0) == is_val]


def load_text(split: str = "all") -> str:
    """Return the course text for ``split`` (``"train"``, ``"val"`` or ``"all"``) as one string.

    The topics of :func:`topic_names` joined in sorted order with :data:`SEPARATOR`; deterministic for a
    given Python release. Raises ``ValueError`` for any other ``split``.

        >>> load_text("all").startswith('The "assert" statement')
        True
    """
    topics = _topics()
    return SEPARATOR.join(topics[name] for name in topic_names(split))


def fingerprint(split: str = "all") -> str:
    """Return the SHA-256 hex digest of ``load_text(split)`` encoded as UTF-8.

    Two machines train identical tokenizers exactly when their fingerprints match.
    """
    return hashlib.sha256(load_text(split).encode("utf-8")).hexdigest()
