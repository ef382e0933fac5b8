"""Tests for attnlab.corpus, attnlab.tokenization and the chapter 1 exercises."""

from __future__ import annotations

import doctest
import importlib.util
import json
from itertools import pairwise
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from attnlab import corpus, tokenization
from attnlab.exercises import ch01
from attnlab.tokenization import BPETokenizer, get_pair_counts, merge

ROOT = Path(__file__).resolve().parents[1]


def load_solutions():
    path = ROOT / "notebooks" / "solutions" / "ch01.py"
    spec = importlib.util.spec_from_file_location("solutions_ch01", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def course_tok() -> BPETokenizer:
    return tokenization.load_tokenizer()


@pytest.fixture(scope="module")
def small_tok() -> BPETokenizer:
    """A tokenizer trained on a slice of the corpus: quick, with merges over letters, spaces and symbols."""
    return BPETokenizer().train(corpus.load_text("train")[:30_000], 330)


def encode_reference(tok: BPETokenizer, text: str) -> list[int]:
    """Apply every merge in training order to every chunk: the definition that encode() must match."""
    out = []
    for chunk in tokenization.split_chunks(text):
        ids = list(chunk.encode("utf-8"))
        for pair, new_id in tok.merges.items():
            ids = merge(ids, pair, new_id)
        out.extend(ids)
    return out


# -- corpus --------------------------------------------------------------------------------------------------


def test_corpus_splits_are_disjoint_and_cover_all_topics():
    train, val, every = (set(corpus.topic_names(s)) for s in ("train", "val", "all"))
    assert train.isdisjoint(val) and train | val == every
    assert 0.08 <= len(val) / len(every) <= 0.12
    assert corpus.topic_names("all") == sorted(every)


def test_corpus_text_is_deterministic_and_sized():
    assert corpus.load_text("train") == corpus.load_text("train")
    all_text, train, val = corpus.load_text("all"), corpus.load_text("train"), corpus.load_text("val")
    assert 300_000 < len(all_text) < 700_000
    assert 0.04 < len(val) / len(all_text) < 0.2
    assert len(train) + len(val) < len(all_text)  # the separators between the two splits' topics
    assert corpus.fingerprint("val") != corpus.fingerprint("train")


def test_corpus_rejects_unknown_split():
    with pytest.raises(ValueError, match="split='test' must be one of"):
        corpus.load_text("test")


# -- the two primitives --------------------------------------------------------------------------------------


def test_doctests_of_the_module():
    for module in (tokenization, corpus):
        result = doctest.testmod(module)
        assert result.failed == 0 and result.attempted > 0


def test_pair_counts_and_merge_by_hand():
    assert get_pair_counts([1, 2, 3, 1, 2]) == {(1, 2): 2, (2, 3): 1, (3, 1): 1}
    assert get_pair_counts([7, 7, 7]) == {(7, 7): 2}
    assert get_pair_counts([]) == {} and get_pair_counts([4]) == {}
    counts = {(1, 2): 5}
    assert get_pair_counts([1, 2], counts) is counts and counts == {(1, 2): 6}
    assert merge([1, 2, 3, 1, 2], (1, 2), 4) == [4, 3, 4]
    assert merge([7, 7, 7], (7, 7), 8) == [8, 7]
    assert merge([7, 7, 7, 7], (7, 7), 8) == [8, 8]
    assert merge([], (1, 2), 3) == []


@given(st.lists(st.integers(0, 3), max_size=30), st.integers(0, 3), st.integers(0, 3))
def test_merge_removes_every_pair_and_keeps_length_accounting(ids, a, b):
    out = merge(ids, (a, b), 99)
    n_merged = out.count(99)
    assert len(out) == len(ids) - n_merged
    if a != b:  # with a == b, a run of three leaves one behind by design
        assert (a, b) not in get_pair_counts(out)
        assert n_merged == get_pair_counts(ids).get((a, b), 0)


def test_minbpe_worked_example():
    """Wikipedia's and minbpe's "aaabdaaabac": aa -> Z, ab -> Y, ZY -> X gives XdXac."""
    tok = BPETokenizer().train("aaabdaaabac", vocab_size=256 + 3)
    assert tok.merges == {(97, 97): 256, (97, 98): 257, (256, 257): 258}
    assert tok.encode("aaabdaaabac") == [258, 100, 258, 97, 99]
    assert tok.decode([258, 100, 258, 97, 99]) == "aaabdaaabac"
    assert tok.token_bytes(258) == b"aaab"
    assert tok.vocab_size == 259


def test_tie_rule_is_smallest_pair():
    assert tokenization.most_frequent_pair({(5, 6): 3, (1, 9): 3, (0, 0): 1}) == (1, 9)
    assert tokenization.most_frequent_pair({(5, 6): 4, (1, 9): 3}) == (5, 6)


# -- pre-tokenization ----------------------------------------------------------------------------------------


@given(st.text())
def test_chunks_join_back_to_the_text(text):
    assert "".join(tokenization.split_chunks(text)) == text


def test_chunks_follow_gpt2_rules():
    assert tokenization.split_chunks("Hello world, it's 2024!") == [
        "Hello", " world", ",", " it", "'s", " 2024", "!"
    ]
    assert tokenization.split_chunks("x  = __init__\n\n") == ["x", " ", " =", " __", "init", "__", "\n\n"]
    assert tokenization.split_chunks(" héllo 你好") == [" héllo", " 你好"]


# -- training ------------------------------------------------------------------------------------------------


@settings(max_examples=60, deadline=None)
@given(st.text(alphabet="ab c.\n", max_size=80), st.integers(256, 290))
def test_fast_trainer_matches_naive_trainer(text, vocab_size):
    fast = tokenization.train_merges(text, vocab_size)
    assert list(fast.items()) == list(tokenization.train_merges_naive(text, vocab_size).items())


def test_fast_trainer_matches_naive_trainer_on_the_corpus():
    text = corpus.load_text("train")[:15_000]
    assert tokenization.train_merges(text, 360) == tokenization.train_merges_naive(text, 360)


def test_training_stops_when_no_pair_is_left():
    tok = BPETokenizer().train("ab ab", vocab_size=1000)
    assert tok.merges == {(97, 98): 256, (32, 256): 257}
    assert tok.vocab_size == 258


def test_truncated_equals_training_to_the_smaller_size(small_tok):
    text = corpus.load_text("train")[:30_000]
    assert small_tok.truncated(300).merges == BPETokenizer().train(text, 300).merges
    assert small_tok.truncated(256).vocab_size == 256


# -- encoding and decoding -----------------------------------------------------------------------------------


@given(st.text())
def test_roundtrip_any_text_course_tokenizer(course_tok, text):
    assert course_tok.decode(course_tok.encode(text)) == text


@given(st.text())
def test_roundtrip_any_text_untrained(text):
    tok = BPETokenizer()
    assert tok.encode(text) == list(text.encode("utf-8"))
    assert tok.decode(tok.encode(text)) == text


@settings(deadline=None)
@given(st.text(alphabet=st.characters(codec="utf-8"), max_size=60)
       | st.text(alphabet="the  class\n\"'_:=é", max_size=60))
def test_encode_applies_merges_in_training_order(small_tok, text):
    assert small_tok.encode(text) == encode_reference(small_tok, text)
    assert small_tok.decode(small_tok.encode(text)) == text


def test_encode_cache_gives_same_result(course_tok):
    text = corpus.load_text("val")[:5000]
    first = course_tok.encode(text)
    assert course_tok.encode(text) == first == encode_reference(course_tok, text)


def test_decode_partial_utf8_uses_replacement_character():
    tok = BPETokenizer()
    ids = tok.encode("é")
    assert len(ids) == 2 and tok.decode(ids[:1]) == "\ufffd"


def test_decode_accepts_tensors_and_numpy_ints(course_tok):
    import numpy as np
    import torch

    ids = course_tok.encode("The class statement")
    assert course_tok.decode(torch.tensor(ids)) == "The class statement"
    assert course_tok.decode(np.array(ids)) == "The class statement"


def test_tokens_html_escapes_and_shows_whitespace(course_tok):
    out = tokenization.tokens_html(course_tok, "a <b>\n")
    assert "&lt;" in out and "<b>" not in out and "↵" in out and "·" in out


# -- saving, loading, the shipped file -----------------------------------------------------------------------


def test_save_load_roundtrip(tmp_path, small_tok):
    path = tmp_path / "tok.json"
    small_tok.save(path, metadata={"note": "test"})
    loaded = BPETokenizer.load(path)
    assert list(loaded.merges.items()) == list(small_tok.merges.items())
    assert loaded.vocab == small_tok.vocab and loaded.pattern == small_tok.pattern
    assert loaded.to_json({"note": "test"}) == path.read_text(encoding="utf-8")
    text = corpus.load_text("val")[:3000]
    assert loaded.encode(text) == small_tok.encode(text)


def test_saved_file_is_human_readable(small_tok):
    lines = small_tok.to_json().splitlines()
    assert len(lines) == 1 + len(small_tok.merges) + 1  # header, one line per merge, closing bracket
    first = json.loads(lines[1].rstrip(","))
    assert first["id"] == 256 and first["token"] == tokenization.render_token(small_tok.vocab[256])


def test_course_tokenizer_loads(course_tok):
    assert course_tok.vocab_size == tokenization.COURSE_VOCAB_SIZE == 512
    assert tokenization.shipped_metadata()["trained_on"] == "corpus.load_text('train')"


def test_shipped_file_is_reproducible():
    shipped = tokenization.COURSE_TOKENIZER_PATH.read_text(encoding="utf-8")
    assert tokenization.shipped_metadata()["corpus_sha256"] == corpus.fingerprint("train")
    fresh = tokenization.train_course_tokenizer()
    assert fresh.to_json(tokenization.course_metadata()) == shipped


# -- compression ---------------------------------------------------------------------------------------------


def test_compression_close_to_hugging_face_tokenizers():
    report = tokenization.compare_with_hf(corpus.load_text("train"), corpus.load_text("val"), 512)
    print(
        f"\nbytes per token on val, vocab 512: ours {report['ours_utf8_bytes_per_token']:.4f}, "
        f"HF tokenizers {report['hf_utf8_bytes_per_token']:.4f}"
    )
    assert report["hf_vocab_size"] == 512 and report["hf_roundtrip"]
    assert 1.5 < report["ours_utf8_bytes_per_token"] < 4
    assert abs(report["ours_utf8_bytes_per_token"] / report["hf_utf8_bytes_per_token"] - 1) < 0.10


def test_compression_grows_with_vocab(small_tok):
    text = corpus.load_text("val")[:10_000]
    bpt = [tokenization.utf8_bytes_per_token(text, small_tok.truncated(v).encode(text)) for v in (256, 290, 330)]
    assert bpt[0] == 1.0 and bpt[0] < bpt[1] < bpt[2]


# -- bad input -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("vocab_size", [255, 0, -1, 300.0, True, "512", None])
def test_train_rejects_bad_vocab_size(vocab_size):
    with pytest.raises(ValueError, match=r"vocab_size=.* must be an integer >= 256"):
        BPETokenizer().train("some text", vocab_size)


@pytest.mark.parametrize("ids, message", [
    ([1, 512], r"ids\[1\]=512 is out of range: token ids must satisfy 0 <= id < 512"),
    ([-1], r"ids\[0\]=-1 is out of range"),
    ([1.5], r"ids\[0\]=1.5 must be an integer token id"),
    ("abc", "ids must be a sequence of integer token ids"),
])
def test_decode_rejects_bad_ids(course_tok, ids, message):
    with pytest.raises(ValueError, match=message):
        course_tok.decode(ids)


def test_other_bad_input(course_tok):
    with pytest.raises(ValueError, match=r"id=512 is out of range"):
        course_tok.token_bytes(512)
    with pytest.raises(ValueError, match="text must be a str, got bytes"):
        course_tok.encode(b"bytes")
    with pytest.raises(ValueError, match="lone surrogate"):
        course_tok.encode("a\ud800b")
    with pytest.raises(ValueError, match=r"vocab_size=600 must be <= this tokenizer's vocab_size=512"):
        course_tok.truncated(600)
    with pytest.raises(ValueError, match="ids must hold at least one token"):
        tokenization.utf8_bytes_per_token("abc", [])
    with pytest.raises(ValueError, match=r"merges\[0\]=\(1, 2\) -> 300 is invalid"):
        BPETokenizer({(1, 2): 300})
    with pytest.raises(ValueError, match="format=None must be 'attnlab-bpe-v1'"):
        BPETokenizer.from_json('{"merges": []}')
    with pytest.raises(ValueError, match="counts is empty"):
        tokenization.most_frequent_pair({})


# -- chapter 1 exercises -------------------------------------------------------------------------------------


def test_solutions_pass_the_checks():
    sol = load_solutions()
    assert ch01.check_pair_counts(sol.answer_pair_counts).startswith("✓")
    assert ch01.check_merge(sol.answer_merge).startswith("✓")
    assert ch01.check_bytes_per_token(sol.answer_bytes_per_token).startswith("✓")


def test_unattempted_exercises_say_so():
    for check in (ch01.check_pair_counts, ch01.check_merge, ch01.check_bytes_per_token):
        assert "not attempted" in check(None)


def _pairs_without_overlap(ids):
    counts, i = {}, 0
    while i + 1 < len(ids):
        pair = (ids[i], ids[i + 1])
        counts[pair] = counts.get(pair, 0) + 1
        i += 2 if ids[i] == ids[i + 1] else 1
    return counts


@pytest.mark.parametrize("wrong, hint", [
    (_pairs_without_overlap, "pairs overlap"),
    (lambda ids: dict.fromkeys(pairwise(ids), 1), "expected"),
    (lambda ids: dict.fromkeys(pairwise(ids[::2]), 1), "expected"),
    (lambda ids: 1 / 0, "raised ZeroDivisionError"),
    (42, "should be a function"),
])
def test_wrong_pair_counts_fail(wrong, hint):
    with pytest.raises(AssertionError, match=hint):
        ch01.check_pair_counts(wrong)


def _merge_with_overlap(ids, pair, new_id):
    out = list(ids)
    for i in range(len(ids) - 1):
        if (ids[i], ids[i + 1]) == pair:
            out[i], out[i + 1] = new_id, None
    return [t for t in out if t is not None]


def _merge_first_only(ids, pair, new_id):
    for i in range(len(ids) - 1):
        if (ids[i], ids[i + 1]) == pair:
            return [*ids[:i], new_id, *ids[i + 2:]]
    return list(ids)


@pytest.mark.parametrize("wrong, hint", [
    (_merge_with_overlap, "never overlap"),
    (_merge_first_only, "expected"),
    (lambda ids, pair, new_id: tuple(ids), "expected a list"),
])
def test_wrong_merge_fails(wrong, hint):
    with pytest.raises(AssertionError, match=hint):
        ch01.check_merge(wrong)


def test_wrong_bytes_per_token_fails():
    right = ch01.expected_bytes_per_token()
    val = corpus.load_text("val")
    chars_per_token = len(val) / len(tokenization.load_tokenizer().encode(val))
    with pytest.raises(AssertionError, match="tokens per byte"):
        ch01.check_bytes_per_token(1 / right)
    with pytest.raises(AssertionError, match="count UTF-8 bytes"):
        ch01.check_bytes_per_token(chars_per_token)
    with pytest.raises(AssertionError, match="is not the bytes per token"):
        ch01.check_bytes_per_token(right * 1.01)
    with pytest.raises(AssertionError, match="should be a number"):
        ch01.check_bytes_per_token("2.0")


def test_corpus_snapshot_is_frozen_and_rebuildable(tmp_path):
    """The course reads a shipped snapshot, so every Python release sees the same text."""
    import gzip
    import json
    import sys

    blob = json.loads(gzip.decompress(corpus.SNAPSHOT_PATH.read_bytes()))
    assert blob["python"] == "3.11.7"
    assert sorted(blob["topics"]) == corpus.topic_names("all")
    if sys.version.split()[0] == blob["python"]:  # the snapshot is this Python's pydoc_data, byte for byte
        out = tmp_path / "snapshot.json.gz"
        corpus.snapshot_from_python(out)
        assert out.read_bytes() == corpus.SNAPSHOT_PATH.read_bytes()
        corpus._topics.cache_clear()
