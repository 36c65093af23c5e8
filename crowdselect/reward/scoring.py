"""Pure math of the probability-weighted judge score, from next-token probabilities of the rating labels.

A judge is asked for a rating on an integer scale (1-10 for rewards, 0-5 for Direct-score) and its answer is
forced to begin with a prefix such as `Rating: [[`. The score is the expected rating under the judge's
next-token distribution restricted to the labels, renormalised:  score = sum_k k * p_k / sum_k p_k.

Multi-token labels. Tokenizers differ: Llama 3 has "10" as one token, SmolLM2, Qwen and Gemma split it into
"1", "0". The labels' token sequences form a trie (`crowdselect.runtime.lm.labels.LabelTrie`, which tells the
model backends which next-token steps to compute); the probability of a label is the product of
its tokens' probabilities along the trie path, and a label that is a prefix of another label ("1" of "10")
keeps only the mass that does not continue into the longer label:

    P(10) = P("1") * P("0" | "1")          P(1) = P("1") * (1 - P("0" | "1"))

so a second next-token step is needed only after the prefixes with children (here: after "1").
`label_probs` needs, for each such prefix, the probabilities of its child tokens (gathered from full logits
by HF, or from top-k logprobs by vLLM, where a token outside the top k counts as probability 0).
Nothing here knows of torch or models.
"""

from __future__ import annotations

import numpy as np

from crowdselect.runtime.lm.labels import LabelTrie, Prefix


def label_probs(trie: LabelTrie, step_probs: dict[Prefix, np.ndarray]) -> np.ndarray:
    """Unnormalised probability of each label per row.

    step_probs[prefix]: (n_rows, len(trie.children(prefix))) probabilities of the child tokens after the
    prompt + prefix, for every prefix in `trie.steps()`. Returns (n_rows, n_labels).
    """
    n = next(iter(step_probs.values())).shape[0]
    out = np.ones((n, len(trie.labels)), dtype=np.float64)
    for k, seq in enumerate(trie.labels):
        for j, token in enumerate(seq):
            prefix = seq[:j]
            out[:, k] *= step_probs[prefix][:, trie.children(prefix).index(token)]
        if trie.children(seq):  # a shorter label that continues into a longer one keeps the rest
            out[:, k] *= np.clip(1.0 - step_probs[seq].sum(axis=1), 0.0, 1.0)
    return out


def expected_score(trie: LabelTrie, probs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(score, mass) per row from label probabilities (n_rows, n_labels).

    score = sum_k values[k] * probs[:, k] / mass, mass = sum_k probs[:, k] (how much of the judge's
    probability fell on valid ratings). A row with zero mass gets NaN.

    >>> t = LabelTrie(values=(1, 2), labels=((5,), (6,)))
    >>> s, m = expected_score(t, np.array([[0.2, 0.6]]))
    >>> round(float(s[0]), 4), round(float(m[0]), 4)
    (1.75, 0.8)
    """
    values = np.asarray(trie.values, dtype=np.float64)
    mass = probs.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        score = np.where(mass > 0, probs @ values / np.where(mass > 0, mass, 1.0), np.nan)
    return score, mass
