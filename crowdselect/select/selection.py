"""Scores per strategy and the equal-quota-per-cluster selection. Pure numpy: no Ray, no models.

Shapes: every array is `(n,)` over the instructions of one block (or of the candidate pool); `ids` are
strings. Ordering is always "higher score first, then smaller id", so results are deterministic.
"""

from __future__ import annotations

import hashlib

import numpy as np

from crowdselect.core import columns as C

MODEL_SCORES = {"ifd": C.IFD, "direct-score": C.DIRECT_SCORE, "tags": C.N_TAGS}  # higher = picked first


def combined_score(q: dict[str, np.ndarray], weights: list[float], use_stability: bool) -> np.ndarray:
    """CrowdSelect score w_D q(D) + w_S q(S) + w_T q(T).

    q: normalised metrics, each (n,) in [0, 1], q[STABILITY] NaN where undefined.
    Rows whose stability is undefined are ranked by the other two metrics, rescaled by
    (w_D + w_S + w_T) / (w_D + w_S) so their scores sit on the same scale as the full score.
    With `use_stability` False (no family of two anywhere) the stability term is dropped for all rows.

    >>> q = {"difficulty": np.array([1.0, 0.0]), "separability": np.array([0.5, 0.5]),
    ...      "stability": np.array([np.nan, 1.0])}
    >>> combined_score(q, [1, 1, 2], True).round(3).tolist()
    [3.0, 2.5]
    """
    wd, ws, wt = weights
    base = wd * q[C.DIFFICULTY] + ws * q[C.SEPARABILITY]
    if not use_stability or wt == 0:
        return base
    t = q[C.STABILITY]
    rescale = (wd + ws + wt) / (wd + ws) if (wd + ws) > 0 else 0.0
    return np.where(np.isnan(t), base * rescale, base + wt * np.nan_to_num(t))


def random_score(ids: list[str], seed: int) -> np.ndarray:
    """A uniform score in [0, 1) per id, fixed by (seed, id): order-free and the same on every shard."""
    out = np.empty(len(ids))
    for i, x in enumerate(ids):
        h = hashlib.blake2b(f"{seed}:{x}".encode(), digest_size=8).digest()
        out[i] = int.from_bytes(h, "big") / 2**64
    return out


def strategy_score(strategy: str, cols: dict[str, np.ndarray], *, ids: list[str], seed: int,
                   weights: list[float], use_stability: bool) -> np.ndarray:
    """Score used for ranking under `strategy` (higher = picked first). NaN scores rank last.

    cols holds the raw metrics, their q_ normalised versions, best_reward and response_chars, all (n,).
    """
    if strategy == "crowdselect":
        q = {m: cols[C.q(m)] for m in C.METRICS}
        return combined_score(q, weights, use_stability)
    if strategy == "random":
        return random_score(ids, seed)
    if strategy in MODEL_SCORES:
        return np.asarray(cols[MODEL_SCORES[strategy]], dtype=float)
    name, _, direction = strategy.rpartition("-")
    source = {"length": C.RESPONSE_CHARS, "reward": C.BEST_REWARD}.get(name, name)
    sign = 1.0 if direction in ("top", "long") else -1.0
    return sign * np.asarray(cols[source], dtype=float)


def rank_order(scores: np.ndarray, ids: np.ndarray) -> np.ndarray:
    """Indices sorting by score descending, NaN last, ties by id ascending."""
    key = np.where(np.isnan(scores), -np.inf, scores)
    return np.lexsort((ids, -key))


def top_per_cluster(scores: np.ndarray, ids: np.ndarray, clusters: np.ndarray, limit: int) -> np.ndarray:
    """Indices of the best `limit` rows of every cluster, in rank order (a block's selection candidates).

    Any row that the final selection can pick is among these: a cluster contributes at most `limit` = k rows.
    """
    order = rank_order(scores, ids)
    c = clusters[order]
    rank_in_cluster = np.empty(len(order), dtype=np.int64)
    for label in np.unique(c):
        pos = np.flatnonzero(c == label)
        rank_in_cluster[pos] = np.arange(len(pos))
    return order[rank_in_cluster < limit]


def quota_select(scores: np.ndarray, ids: np.ndarray, clusters: np.ndarray, k: int,
                 n_clusters: int) -> np.ndarray:
    """Equal quota per cluster, then the remainder by score; returns indices of exactly min(k, n) rows.

    Each of the `n_clusters` clusters gives its best k // n_clusters rows (all its rows if it has fewer);
    the rows still missing (small clusters, and k % n_clusters) are the best remaining rows of any cluster.
    scores, ids, clusters: (n,). Ties break by id; the result is sorted in rank order.

    >>> quota_select(np.array([5., 4, 3, 2, 1]), np.array(["a", "b", "c", "d", "e"]),
    ...              np.array([0, 0, 0, 1, 1]), k=4, n_clusters=2).tolist()
    [0, 1, 3, 4]
    """
    k = min(k, len(scores))
    quota = k // n_clusters
    order = rank_order(scores, ids)
    taken = np.zeros(len(scores), dtype=bool)
    c = clusters[order]
    for label in range(n_clusters):
        taken[order[c == label][:quota]] = True
    missing = k - int(taken.sum())
    if missing > 0:
        rest = order[~taken[order]]
        taken[rest[:missing]] = True
    return order[taken[order]]


def global_select(scores: np.ndarray, ids: np.ndarray, k: int) -> np.ndarray:
    """No clustering: the best k rows by score (ties by id), in rank order."""
    return rank_order(scores, ids)[: min(k, len(scores))]
