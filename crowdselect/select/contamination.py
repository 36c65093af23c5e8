"""pure: does a pool instruction copy an eval question? Three rules, checked in this order, on plain Python
lists and numpy arrays (no Ray, no models):

    exact      the instruction equals an eval text after normalisation
    ngram      the instruction shares an n-gram of normalised words with an eval text (n = 13: NeMo Curator's
               task decontamination); an eval text of 8 to 12 words counts as one n-gram of its own length,
               and one under 8 words takes part in the exact rule only (NeMo's `min_ngram_size`)
    embedding  cosine(instruction, eval text) >= a threshold, on unit embeddings (the selection's own
               embedder); only eval texts of at least `min_words` words take part, since a short follow-up
               turn ("Can you parallelize it?") sits close to every instruction on its topic

Normalisation is NeMo Curator's `get_words`: lower case, ASCII punctuation deleted (not replaced: "don't" is
"dont"), words split on whitespace (NeMo splits on spaces only, so its words may hold a newline; here any
whitespace separates words). Unlike NeMo, an instruction shorter than 13 words is searched too (NeMo's scan
starts at 13 words), and every match counts, however common the n-gram (NeMo's `max_matches` lets an
n-gram found in more than 10 documents through): an instruction pool is small beside a web crawl, and a
flagged row is written down with its evidence, not silently cut.

    index = build_index(texts, n=13, min_words=8, embeddings=E)        # E: (m, d) unit rows, or None
    find_matches(instructions, X, index, cosine=0.75)                   # X: (n, d) unit rows, or None
    -> [Match(text, rule, ngram, cosine) or None per instruction]
"""

from __future__ import annotations

import string
from dataclasses import dataclass, field

import numpy as np

RULES = ("exact", "ngram", "embedding")
_DELETE_PUNCTUATION = str.maketrans("", "", string.punctuation)


def words(text: str) -> list[str]:
    """NeMo Curator's normalised word tokens (see the module docstring).

    >>> words("Don't PANIC -- it's (only) a test.")
    ['dont', 'panic', 'its', 'only', 'a', 'test']
    """
    return text.lower().translate(_DELETE_PUNCTUATION).split()


@dataclass(frozen=True)
class EvalText:
    """One text of an eval set: a question's turn. `source` names the set (`mt-bench` or the file)."""

    source: str
    question_id: str | int
    turn: int
    text: str


@dataclass
class EvalIndex:
    """The eval texts in the three rules' shapes; built once on the driver, sent to every block."""

    texts: list[EvalText]
    n: int
    min_words: int
    exact: dict[str, int] = field(default_factory=dict)  # normalised text -> first text index
    ngrams: dict[str, int] = field(default_factory=dict)  # joined n-gram -> first text index
    lengths: list[int] = field(default_factory=list)  # n-gram lengths present, longest first
    heads: set[str] = field(default_factory=set)  # every indexed n-gram's first `min_words` words
    embeddings: np.ndarray | None = None  # (m, d) unit rows, one per text
    embedded: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))  # (m_e,) texts in the embedding rule


def build_index(texts: list[EvalText], n: int = 13, min_words: int = 8,
                embeddings: np.ndarray | None = None) -> EvalIndex:
    """texts (m,); embeddings (m, d) unit rows in the same order, or None (no embedding rule).

    >>> ix = build_index([EvalText("t", 1, 1, "one two three four five six seven eight nine"),
    ...                   EvalText("t", 2, 1, "Short one.")], n=13, min_words=8)
    >>> sorted(ix.exact), list(ix.ngrams), ix.lengths
    (['one two three four five six seven eight nine', 'short one'], ['one two three four five six seven eight nine'], [9])
    """
    if not 1 <= min_words <= n:
        raise ValueError(f"need 1 <= min_words <= n, got min_words {min_words}, n {n}")
    ix = EvalIndex(texts=list(texts), n=n, min_words=min_words)
    long_enough = []
    for i, t in enumerate(texts):
        w = words(t.text)
        ix.exact.setdefault(" ".join(w), i)
        if len(w) < min_words:
            continue
        long_enough.append(i)
        grams = [w] if len(w) < n else [w[j:j + n] for j in range(len(w) - n + 1)]
        for g in grams:
            ix.ngrams.setdefault(" ".join(g), i)
            ix.heads.add(" ".join(g[:min_words]))
    ix.lengths = sorted({len(g.split()) for g in ix.ngrams}, reverse=True)
    if embeddings is not None:
        ix.embedded = np.asarray(long_enough, dtype=np.int64)
        ix.embeddings = np.asarray(embeddings, dtype=np.float32)
    return ix


@dataclass(frozen=True)
class Match:
    """Why a pool row is contaminated: the eval text (index into EvalIndex.texts) and the first rule that
    fired (exact, ngram, embedding); `ngram` is the first n-gram it shares with that text (in the row's word
    order), `cosine` its cosine with that text (None without embeddings); `rules`: every rule that fired."""

    text: int
    rule: str
    ngram: str | None
    cosine: float | None
    rules: tuple[str, ...]


def first_shared_ngram(w: list[str], ix: EvalIndex, only: int | None = None) -> tuple[str, int] | None:
    """The first indexed n-gram in the word list `w` (by position, then longest): (n-gram, text index), or
    None. `only`: the n-gram must belong to that text. A word position is looked up only when its next
    `min_words` words open some indexed n-gram (every indexed n-gram has at least that many words)."""
    m = ix.min_words
    for i in range(len(w) - m + 1):
        if " ".join(w[i:i + m]) not in ix.heads:
            continue
        for length in ix.lengths:
            if i + length <= len(w):
                gram = " ".join(w[i:i + length])
                hit = ix.ngrams.get(gram)
                if hit is not None and (only is None or hit == only):
                    return gram, hit
    return None


def nearest_texts(X: np.ndarray | None, ix: EvalIndex) -> tuple[np.ndarray, np.ndarray]:
    """Per row of X (n, d): (cosine with the nearest eval text of the embedding rule (n,), its text index
    (n,), -1 when none). Ties go to the first text."""
    n = 0 if X is None else len(X)
    if X is None or ix.embeddings is None or not len(ix.embedded):
        return np.full(n, -np.inf), np.full(n, -1, np.int64)
    sims = np.asarray(X, np.float32) @ ix.embeddings[ix.embedded].T  # (n, m_e)
    j = sims.argmax(axis=1)
    return sims[np.arange(n), j].astype(np.float64), ix.embedded[j]


def cosine_with(x: np.ndarray | None, ix: EvalIndex, text: int) -> float | None:
    """cos(x, eval text `text`) when both have embeddings, else None."""
    if x is None or ix.embeddings is None:
        return None
    return float(np.dot(np.asarray(x, np.float32), ix.embeddings[text]))


def find_matches(instructions: list[str], X: np.ndarray | None, ix: EvalIndex,
                 cosine: float | None) -> list[Match | None]:
    """instructions (n,), X (n, d) unit embeddings or None -> a Match or None per instruction.
    cosine: the embedding rule's threshold (None: rule off). Deterministic: the same inputs give the same
    matches, whatever the block a row arrives in."""
    best_cos, best_text = nearest_texts(X if cosine is not None else None, ix)
    out: list[Match | None] = []
    for r, text in enumerate(instructions):
        w = words(text)
        exact = ix.exact.get(" ".join(w))
        shared = first_shared_ngram(w, ix)
        near = cosine is not None and best_text[r] >= 0 and best_cos[r] >= cosine
        rules = tuple(rule for rule, hit in zip(RULES, (exact is not None, shared is not None, near), strict=True)
                      if hit)
        if not rules:
            out.append(None)
            continue
        target = exact if exact is not None else shared[1] if shared is not None else int(best_text[r])
        gram = shared[0] if shared is not None and shared[1] == target else None
        if gram is None and rules[0] == "exact":
            found = first_shared_ngram(w, ix, only=target)
            gram = found[0] if found else None
        x = None if X is None else X[r]
        out.append(Match(target, rules[0], gram, cosine_with(x, ix, target), rules))
    return out
