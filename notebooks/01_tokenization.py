# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown] slideshow={"slide_type": "slide"}
# # Chapter 1 · Tokenization
#
# *Video chapter at 00:35.*
#
# > **What you will learn:** byte-level BPE written from scratch and checked against Hugging Face
# > `tokenizers`; how token ids become vectors through an embedding table; what a trained table does and does
# > not put close together.
# >
# > **What it assumes:** Python; nothing else.
#
# Everything later in this course (attention, the KV cache, grouped and latent attention) works on a
# sequence of vectors, and the length of that sequence sets the bill: attention compares every position
# with every other, and the KV cache stores one entry per position. This chapter is about where the
# sequence comes from. A model cannot read text: its first layer is a table with one row per vocabulary
# entry, so text must first become a list of integers, the **token ids**. How we cut text into tokens
# decides how long every sequence is.
#
# We build a byte-level **byte-pair encoding** (BPE) tokenizer, the kind used by GPT-2, GPT-4 and Llama 3,
# from scratch: the algorithm by hand, training on the course text, encoding and decoding, a comparison
# with Hugging Face's production implementation, what the vocabulary size costs, and finally the step from
# ids to vectors.

# %% slideshow={"slide_type": "skip"}
import math
import sys

import ipywidgets as widgets
import matplotlib.pyplot as plt
import torch
from IPython.display import HTML, Markdown, display

from attnlab import corpus, show_source, sizing, tokenization
from attnlab.devices import dtype_bytes
from attnlab.exercises import ch01

# %% [markdown] slideshow={"slide_type": "subslide"}
# ### The idea, animated
#
# The chapter in one short animation. It plays here once the videos are rendered (`./course animations`);
# until then, and in static exports, the last frame stands in.
# %% slideshow={"slide_type": "-"}
from attnlab.media import show_animation
from attnlab.model import load_checkpoint
from attnlab.tokenization import BPETokenizer, get_pair_counts, merge

show_animation("TokenizationScene")

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 1. Characters, words, or bytes?
#
# Three obvious ways to turn text into integers:
#
# * **Words.** One id per word gives short sequences, but the vocabulary never ends: every new name,
#   typo, number or inflection (`tokenize`, `tokenized`, `tokenizer`) is a word the table has never seen.
# * **Characters.** No unknown words, but Unicode is enormous: the table would need a row for every
#   script and emoji a user might type, and sequences stay long.
# * **Bytes.** Text is almost always stored as **UTF-8**: every character becomes 1 to 4 bytes, each a
#   number from 0 to 255. A table of 256 rows can represent *any* text, with nothing ever out of
#   vocabulary.
#
# Here is a sentence with English, accents, Chinese and an emoji, and the bytes of some of its
# characters:

# %% slideshow={"slide_type": "-"}
sample = "Attention is all you need: naïve café, 注意力 🙂"
utf8 = sample.encode("utf-8")

rows = ["| character | code point | UTF-8 bytes |", "|---|---|---|"]
for ch in dict.fromkeys(c for c in sample if not c.isascii() or c in "A "):
    shown = "space" if ch == " " else ch
    rows.append(f"| {shown} | U+{ord(ch):04X} | {list(ch.encode('utf-8'))} |")
display(Markdown("\n".join(rows)))
display(Markdown(
    f"The sentence has **{len(sample)} characters** but **{len(utf8)} bytes**. Unicode has room for "
    f"{sys.maxunicode + 1:,} code points, so a character-level table would be huge; the byte-level "
    f"one has 256 rows and still round-trips: `bytes(list(utf8)).decode() == sample` is "
    f"`{bytes(list(utf8)).decode() == sample}`."
))

# %% [markdown] slideshow={"slide_type": "subslide"}
# Bytes solve the vocabulary problem but make sequences long: every letter is a position, and attention
# cost grows with the *square* of the length. **BPE** keeps the byte alphabet as a safety net and adds
# new ids for byte sequences that occur often: common words become one token, rare text falls back to
# bytes.

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 2. BPE by hand
#
# Training repeats one step: **count every adjacent pair of ids, and replace the most frequent pair by a
# new id.** The classic example is the string `aaabdaaabac`. We name the new ids `Z`, `Y`, `X`, like the
# Wikipedia article on byte-pair encoding.

# %% slideshow={"slide_type": "-"}
ids = list(b"aaabdaaabac")
names = {i: chr(i) for i in range(256)} | {256: "Z", 257: "Y", 258: "X"}


def spell(seq):
    return "".join(names[i] for i in seq)


rows = ["| step | pair counts | most frequent | new id | sequence after |", "|---|---|---|---|---|"]
rows.append(f"| start | | | | `{spell(ids)}` ({len(ids)} ids) |")
for new_id in (256, 257, 258):
    counts = get_pair_counts(ids)
    pair = tokenization.most_frequent_pair(counts)
    ids = merge(ids, pair, new_id)
    shown = ", ".join(f"{spell(p)}:{c}" for p, c in counts.items())
    rows.append(f"| {new_id - 255} | {shown} | `{spell(pair)}` | {new_id} = `{names[new_id]}` "
                f"| `{spell(ids)}` ({len(ids)} ids) |")
display(Markdown("\n".join(rows)))

# %% [markdown] slideshow={"slide_type": "subslide"}
# Two details matter. Pairs are counted *overlapping* (`aaa` holds `aa` twice), but a merge scans left
# to right and never overlaps (`aaa` becomes `Za`). And when two pairs tie, we take the smaller pair of
# ids, so training is deterministic: in step 2, `ab` = (97, 98) beats `Za` = (256, 97). The two
# functions are a few lines each:

# %% slideshow={"slide_type": "-"}
show_source(get_pair_counts)

# %% slideshow={"slide_type": "subslide"}
show_source(merge)

# %% [markdown] slideshow={"slide_type": "subslide"}
# A trainer is just this loop: count, pick, merge, record `pair -> new_id`, repeat until the vocabulary
# is full.

# %% slideshow={"slide_type": "-"}
show_source(tokenization.train_merges_naive, start="chunks = ")

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 3. Chunks: merges never cross a word
#
# That loop counts pairs inside **chunks**. Before training, a regular expression (GPT-2's, rewritten for
# Python's standard `re` module) cuts the text into words with their leading space, numbers, runs of
# punctuation and whitespace. No token can then glue the end of one word to the start of the next, and
# ` dog.`, ` dog!` and ` dog,` all reuse the token ` dog` instead of each needing its own.

# %% slideshow={"slide_type": "-"}
print(tokenization.SPLIT_PATTERN)
print(tokenization.split_chunks("The method __init__() isn't called twice, 42 times  over."))

# %% slideshow={"slide_type": "subslide"}
train_text, val_text = corpus.load_text("train"), corpus.load_text("val")
chunks = tokenization.split_chunks(train_text)
display(Markdown(
    f"The course text is Python's own reference documentation (`pydoc_data.topics`, what `help()` "
    f"prints): {len(corpus.topic_names('train'))} topics for training, "
    f"{len(train_text.encode()):,} bytes; {len(corpus.topic_names('val'))} topics held out for "
    f"validation, {len(val_text.encode()):,} bytes. The training text splits into {len(chunks):,} "
    f"chunks but only {len(set(chunks)):,} *distinct* ones, so the trainer counts each distinct chunk "
    f"once and weights it by how often it occurs; after a merge it only revisits the chunks that held "
    f"the merged pair."
))
show_source(tokenization.train_merges, start="for w in sorted(where.pop(pair))", stop="words[w] = new_ids")

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 4. Training on the course text
#
# We train to a vocabulary of 1024 ids. BPE is greedy, so any smaller vocabulary is a prefix of the same
# merge list; in particular the first merges are exactly the course tokenizer of 512 ids that ships
# with the library (`load_tokenizer()`).

# %% jupyter={"source_hidden": true} slideshow={"slide_type": "-"} tags=["hide-input"]
big = BPETokenizer().train(train_text, vocab_size=1024)
tok = tokenization.load_tokenizer()
display(Markdown(
    f"Trained: `{big!r}`. Shipped: `{tok!r}`. The shipped merges equal the first "
    f"{len(tok.merges)} trained ones: **{big.truncated(tok.vocab_size).merges == tok.merges}**."
))


# %% slideshow={"slide_type": "subslide"}
def merge_table(tokenizer, ids):
    rows = ["| id | pair | token |", "|---|---|---|"]
    for i in ids:
        pair = next(p for p, j in tokenizer.merges.items() if j == i)
        token = tokenization.visible_token(tokenizer.vocab[i])
        rows.append(f"| {i} | {pair} | `{token}` |")
    return "\n".join(rows)


longest = sorted(range(256, tok.vocab_size), key=lambda i: (-len(tok.vocab[i]), i))[:12]
first = range(256, 268)
display(Markdown("**The first merges** (`·` is a space, `↵` a newline)\n\n" + merge_table(tok, first)))
display(Markdown(f"**The longest tokens of the {tok.vocab_size} vocabulary**\n\n"
                 + merge_table(tok, longest)))

# %% jupyter={"source_hidden": true} slideshow={"slide_type": "subslide"} tags=["hide-input"]
domain = [" statement", " exception", " attribute"]
single = [w for w in domain if len(tok.encode(w)) == 1]
display(Markdown(
    "Indentation, `--------` table rules and ` the` come first: the documentation is full of them. "
    f"Words of the domain become single tokens within the course vocabulary of {tok.vocab_size}: "
    + ", ".join(f"`{w}` → {tok.encode(w)}" for w in single) + "."
))

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 5. Encoding and decoding
#
# To **encode**, split into chunks, turn each chunk into bytes and replay the merges, always applying
# the earliest-learned pair present first (the lowest id). That reproduces exactly what training did.
# **Decoding** concatenates each id's bytes and decodes UTF-8.

# %% slideshow={"slide_type": "-"}
show_source(BPETokenizer._encode_chunk)

# %% slideshow={"slide_type": "subslide"}
sentence = 'The "with" statement calls __enter__(); naïve 🙂'
ids = tok.encode(sentence)
display(HTML(tokenization.tokens_html(tok, sentence)))
emoji_ids = tok.encode("🙂")
assert emoji_ids == list("🙂".encode())  # no emoji in the training text: no merge applies
display(Markdown(
    f"{len(sentence.encode())} bytes became {len(ids)} tokens; `decode(encode(s)) == s` is "
    f"`{tok.decode(ids) == sentence}`. The emoji never occurs in the training text, so it stays as its "
    f"{len(emoji_ids)} raw bytes `{emoji_ids}`; decoding the first of them alone gives "
    f"`{tok.decode(tok.encode('🙂')[:1])}`, the replacement character, since a lone piece of a "
    f"character is not valid UTF-8."
))

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 6. Compression as the vocabulary grows
#
# The measure of a tokenizer is **bytes per token**: how much text one position carries. Raw bytes give
# 1.0. Each merge saves some positions, but the most frequent pairs go first, so the gains shrink.

# %% slideshow={"slide_type": "-"}
sizes = list(range(256, 1025, 64))
bpt_train, bpt_val = [], []
for v in sizes:
    t = big.truncated(v)
    bpt_train.append(tokenization.utf8_bytes_per_token(train_text, t.encode(train_text)))
    bpt_val.append(tokenization.utf8_bytes_per_token(val_text, t.encode(val_text)))

lengths = {v: [len(big.vocab[i]) for i in big.truncated(v).encode(val_text)] for v in (512, 1024)}

fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4))
ax1.plot(sizes, bpt_train, "o-", ms=3, label="training text")
ax1.plot(sizes, bpt_val, "s-", ms=3, label="validation text")
ax1.axvline(tok.vocab_size, color="gray", ls=":", label="course tokenizer")
ax1.set(xlabel="vocabulary size", ylabel="UTF-8 bytes per token", title="Compression vs vocabulary size")
ax1.legend()
ax1.grid(alpha=0.3)
cap = 10  # lengths >= cap share one bar, the rare long tokens (rules of dashes, runs of spaces)
bins = range(1, cap + 1)
for k, (v, ls) in enumerate(lengths.items()):
    shares = [sum(min(n, cap) == b for n in ls) / len(ls) for b in bins]
    ax2.bar([b + (k - 0.5) * 0.4 for b in bins], shares, width=0.4, label=f"vocabulary {v}")
ax2.set_xticks(list(bins), [str(b) for b in bins[:-1]] + [f"{cap}+"])
ax2.set(xlabel="token length (bytes)", ylabel="share of tokens in the validation text",
        title="How long are the tokens?")
ax2.legend()
fig.tight_layout()
plt.show()

i_course = sizes.index(tok.vocab_size)
display(Markdown(
    f"On held-out text, the first {tok.vocab_size - 256} merges bring a token from {bpt_val[0]:.3f} to "
    f"{bpt_val[i_course]:.3f} bytes; the next {sizes[-1] - tok.vocab_size} merges only to "
    f"{bpt_val[-1]:.3f}. Validation text compresses worse than training text ({bpt_val[-1]:.3f} against "
    f"{bpt_train[-1]:.3f} bytes per token at vocabulary {sizes[-1]}): the merges fit the text they were "
    "learned on, a small case of overfitting."
))

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 7. Try it
#
# Type anything and move the slider: the tokens are recoloured live (hover for the id). Try a word from
# the documentation (` statement`), a name it never saw, another language, or digits.

# %% slideshow={"slide_type": "-"}
text_box = widgets.Textarea(value="Exceptions are raised with the raise statement. Ausnahmen! 例外 2024",
                            layout=widgets.Layout(width="95%", height="60px"))
vocab_slider = widgets.IntSlider(value=512, min=256, max=1024, step=64, description="vocabulary",
                                 continuous_update=False)
tokens_view = widgets.HTML()
summary = widgets.HTML()
_tokenizers = {}


def show_tokens(change=None):
    v = vocab_slider.value
    t = _tokenizers.setdefault(v, big.truncated(v))
    try:
        ids = t.encode(text_box.value)
    except ValueError as err:
        tokens_view.value, summary.value = "", f"<i>{err}</i>"
        return
    n_bytes = len(text_box.value.encode("utf-8"))
    tokens_view.value = tokenization.tokens_html(t, text_box.value)
    ratio = f"{n_bytes / len(ids):.2f} bytes per token" if ids else "empty text"
    summary.value = f"<b>{len(ids)} tokens</b> for {n_bytes} bytes ({ratio})"


text_box.observe(show_tokens, names="value")
vocab_slider.observe(show_tokens, names="value")
show_tokens()
display(widgets.VBox([text_box, vocab_slider, summary, tokens_view]))

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 8. Against a production tokenizer
#
# Hugging Face's `tokenizers` library (written in Rust) implements the same byte-level BPE. We train it
# in memory on the same text, to the same vocabulary size, and count tokens on the validation text.

# %% slideshow={"slide_type": "-"}
rows = ["| vocabulary | our tokens | HF tokens | our bytes/token | HF bytes/token |", "|---|---|---|---|---|"]
reports = [tokenization.compare_with_hf(train_text, val_text, v) for v in (512, 1024)]
for r in reports:
    v = r["vocab_size"]
    rows.append(f"| {v} | {r['ours_tokens']:,} | {r['hf_tokens']:,} | {r['ours_utf8_bytes_per_token']:.3f} "
                f"| {r['hf_utf8_bytes_per_token']:.3f} |")
display(Markdown("\n".join(rows)))

# %% jupyter={"source_hidden": true} slideshow={"slide_type": "-"} tags=["hide-input"]
gap = max(abs(r["ours_tokens"] / r["hf_tokens"] - 1) for r in reports)
display(Markdown(
    f"The token counts differ by at most {100 * gap:.2f}%. What difference remains comes from tie-breaking "
    "between equally frequent pairs and from the split pattern: the Rust version matches letters with "
    "`\\p{L}`, ours with `[^\\W\\d_]`, which disagree on a few rare characters."
))

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 9. What it costs
#
# The vocabulary size is a trade. **A larger vocabulary means fewer tokens** for the same text, and
# everything downstream scales with the number of tokens `n`: the KV cache grows like `n` and the
# attention scores like `n²`. **But every id needs a row** in the embedding table, and another in the
# output layer that scores the next token over the whole vocabulary, each `vocab × d_model` numbers.
#
# Below, the validation text encoded at three vocabulary sizes, priced for a model shaped like
# Llama-3-8B (its published shape from `attnlab.sizing`) in bfloat16. The KV cache comes from
# `sizing.kv_cache_bytes`; the attention FLOPs count every token scoring and mixing itself and all
# earlier ones, `n(n+1)/2` pairs, each worth `sizing.attention_macs_per_cached_token` multiply-adds
# per layer.

# %% slideshow={"slide_type": "-"}
model = sizing.MODELS["llama-3-8b"]
elem_bytes = dtype_bytes(torch.bfloat16)
macs_per_pair = sizing.attention_macs_per_cached_token(model, per_layer=False)  # all layers

rows = ["| vocabulary | tokens n | KV cache | attention FLOPs (∝ n²) | embedding table |",
        "|---|---|---|---|---|"]
costs = {}
for v in (256, 512, 1024):
    n = len(big.truncated(v).encode(val_text))
    kv = sizing.kv_cache_bytes(model, seq_len=n, dtype=torch.bfloat16)
    flops = 2 * macs_per_pair * n * (n + 1) // 2
    table = v * model.hidden_size * elem_bytes  # (vocab, d_model)
    costs[v] = (n, kv, flops, table)
    rows.append(f"| {v} | {n:,} | {sizing.format_bytes(kv)} | {flops:.2e} | {sizing.format_bytes(table)} |")
display(Markdown("\n".join(rows)))

n256, n1024 = costs[256][0], costs[1024][0]
llama3_vocab = 128_256  # Llama 3's published vocabulary size
display(Markdown(
    f"Going from bytes to 1024 ids shortens the sequence {n256 / n1024:.2f}×, so the KV cache shrinks "
    f"{costs[256][1] / costs[1024][1]:.2f}× and the attention FLOPs {costs[256][2] / costs[1024][2]:.1f}×, "
    f"while the embedding table grows from {sizing.format_bytes(costs[256][3])} to "
    f"{sizing.format_bytes(costs[1024][3])}. Llama 3's real vocabulary of {llama3_vocab:,} ids makes it "
    f"{sizing.format_bytes(llama3_vocab * model.hidden_size * elem_bytes)}, and as much again for the "
    f"output layer when the two are not shared."
))

# %% [markdown] slideshow={"slide_type": "subslide"}
# A table that size is paid for once per model; the KV cache is paid for every token of every request.
# That is why real tokenizers grew to tens or hundreds of thousands of ids, and why the rest of this
# course attacks the KV cache and the `n²` directly.

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 10. From ids to vectors
#
# The model's first layer, `nn.Embedding(vocab_size, d_model)`, is the table itself: id `i` selects row
# `i`. It is the same as multiplying a one-hot vector by the table, without ever building the one-hot.

# %% slideshow={"slide_type": "-"}
torch.manual_seed(0)
d = 64
embedding = torch.nn.Embedding(tok.vocab_size, d)

ids = torch.tensor(tok.encode("The class statement"))
vectors = embedding(ids)  # (seq, d_model)
one_hot = torch.nn.functional.one_hot(ids, tok.vocab_size).float()  # (seq, vocab)
display(Markdown(
    f"`{ids.tolist()}` → vectors of shape `{tuple(vectors.shape)}`. Row lookup equals one-hot × table: "
    f"`{torch.allclose(vectors, one_hot @ embedding.weight)}`."
))

# %% [markdown] slideshow={"slide_type": "subslide"}
# You will often read that "semantically similar words cluster" in embedding space. That is true of a
# **trained** model: words used in similar contexts get similar gradients and drift together. A freshly
# initialised table is random noise, as the cosine similarities of a few single-token words show:

# %% slideshow={"slide_type": "-"}
words = [" class", " def", " function", " method", " the", " and"]
word_ids = [tok.encode(w) for w in words]
assert all(len(i) == 1 for i in word_ids)  # each word is one token in the course vocabulary
E = torch.nn.functional.normalize(embedding.weight[[i[0] for i in word_ids]], dim=-1)
cos = E @ E.T
rows = ["| | " + " | ".join(f"`{w.strip()}`" for w in words) + " |", "|---" * (len(words) + 1) + "|"]
for w, row in zip(words, cos.tolist(), strict=True):
    rows.append(f"| `{w.strip()}` | " + " | ".join(f"{c:+.2f}" for c in row) + " |")
display(Markdown("\n".join(rows)))
off_diagonal = ~torch.eye(len(words), dtype=torch.bool)
i, j = divmod(int(torch.where(off_diagonal, cos, -2.0).argmax()), len(words))
expected_abs_cos = math.sqrt(2 / (math.pi * d))  # E|cos| of two random directions in d dims, for large d
display(Markdown(
    f"The most similar pair is `{words[i].strip()}` / `{words[j].strip()}` ({cos[i, j]:+.2f}), "
    f"while `function` / `method` scores {cos[2, 3]:+.2f}. The mean |cosine| off the diagonal is "
    f"{cos[off_diagonal].abs().mean():.2f}, about the √(2/(π d)) = {expected_abs_cos:.2f} expected of random "
    f"directions in {d} dimensions (the cosine of two random directions has mean 0 and standard deviation "
    f"1/√d = {d ** -0.5:.2f}; its absolute value averages √(2/π) ≈ {math.sqrt(2 / math.pi):.2f} of that). "
    "Structure appears only through training."
))

# %% [markdown] slideshow={"slide_type": "subslide"}
# The course ships a tiny model trained on this corpus (chapter 3 meets it): its embedding table, for the
# same words, and each word's nearest neighbours among all the vocabulary's tokens:

# %% slideshow={"slide_type": "-"}
trained = load_checkpoint("tiny_mha").embed.weight.detach()  # (vocab, d_model), after training
T = torch.nn.functional.normalize(trained, dim=-1)
cos_trained = T[[i[0] for i in word_ids]] @ T[[i[0] for i in word_ids]].T
rows = ["| | " + " | ".join(f"`{w.strip()}`" for w in words) + " |", "|---" * (len(words) + 1) + "|"]
for w, row in zip(words, cos_trained.tolist(), strict=True):
    rows.append(f"| `{w.strip()}` | " + " | ".join(f"{c:+.2f}" for c in row) + " |")
display(Markdown("\n".join(rows)))
all_cos = T @ T.T  # (vocab, vocab)
neighbours = {w: [tok.decode([t]) for t in all_cos[i[0]].topk(4).indices.tolist()[1:]]
              for w, i in zip(words, word_ids, strict=True)}
display(Markdown(
    f"Trained, `function` / `method` score {cos_trained[2, 3]:+.2f} and `function` / `class` "
    f"{cos_trained[0, 2]:+.2f}, against `function` / `the` at {cos_trained[2, 4]:+.2f}. Nearest neighbours: "
    + "; ".join(f"`{w.strip()}` → " + ", ".join(f"`{n!r}`" for n in ns) for w, ns in neighbours.items())
    + ". Words used alike (Python's nouns, English articles) now sit together; `def`, which is followed by "
    "a name, has no such company in a model this small."
))

# %% [markdown] slideshow={"slide_type": "slide"}
# ## Exercises
#
# Each exercise has an answer cell (replace `None`) and a check cell. The checks compare your answer with
# the library on many inputs.
#
# **Exercise 1.** Write a function `ids -> dict` that counts every adjacent pair, like `get_pair_counts`
# (without calling it). `[1, 2, 3, 1, 2]` gives `{(1, 2): 2, (2, 3): 1, (3, 1): 1}`; mind runs like
# `[7, 7, 7]`. Assign the function itself, e.g. `answer_pair_counts = my_pair_counts`.

# %% slideshow={"slide_type": "-"}
answer_pair_counts = None

# %% slideshow={"slide_type": "-"}
print(ch01.check_pair_counts(answer_pair_counts))

# %% [markdown] slideshow={"slide_type": "subslide"}
# **Exercise 2.** Write a function `(ids, pair, new_id) -> list` that replaces every occurrence of `pair`
# by `new_id`, left to right, like `merge` (without calling it). `([1, 2, 3, 1, 2], (1, 2), 4)` gives
# `[4, 3, 4]`.

# %% slideshow={"slide_type": "-"}
answer_merge = None

# %% slideshow={"slide_type": "-"}
print(ch01.check_merge(answer_merge))

# %% [markdown] slideshow={"slide_type": "subslide"}
# **Exercise 3.** Encode the validation text `corpus.load_text("val")` with the course tokenizer
# `tokenization.load_tokenizer()` and compute its compression: UTF-8 bytes divided by the number of tokens.

# %% slideshow={"slide_type": "-"}
answer_bytes_per_token = None

# %% slideshow={"slide_type": "-"}
print(ch01.check_bytes_per_token(answer_bytes_per_token))

# %% [markdown] slideshow={"slide_type": "subslide"}
# **Exercise 4 (predict, then run).** Draw 2,000 pairs of random vectors in 64 dimensions (independent
# standard normal entries), like an untrained embedding table's rows. What is the average |cos| between the
# two vectors of a pair? Write your guess first; the check cell then runs the experiment and explains.

# %% slideshow={"slide_type": "-"}
prediction_mean_abs_cos = None  # a number between 0 and 1

# %% slideshow={"slide_type": "-"}
print(ch01.check_prediction_mean_abs_cos(prediction_mean_abs_cos))

# %% [markdown] slideshow={"slide_type": "slide"}
# ## Summary
#
# * Models read integer ids; byte-level BPE maps *any* text to ids from a fixed vocabulary, with raw
#   bytes as the fallback.
# * Training repeatedly merges the most frequent adjacent pair inside regex chunks; encoding replays the
#   merges in the order they were learned.
# * A larger vocabulary means fewer tokens, hence a smaller KV cache and quadratically fewer attention
#   FLOPs, paid for with bigger embedding and output tables.
# * An embedding layer is a table lookup; meaning in those vectors comes from training, not from the
#   lookup.
