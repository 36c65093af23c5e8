"""Tags baseline: InsTag's complexity-first diverse sampling over per-instruction tag lists. Pure Python/numpy.

InsTag (Lu et al., 2023) orders queries by how many tags they carry (complexity first) and walks that order,
keeping a query when it adds at least one tag not yet covered by the kept ones; when a pass ends short of k,
the coverage is reset and the walk repeats over the queries not yet kept. Ties in the tag count go to the
higher score (e.g. the best crowd reward, or zeros for pure InsTag), then to the lower index, so the result
is deterministic. Rows without tags come last, by score.
"""

from __future__ import annotations

import numpy as np


def select_by_tags(tags: list[list[str]], scores: np.ndarray, k: int) -> np.ndarray:
    """Indices of k rows chosen for tag diversity, in the order they were chosen.

    tags: n lists of tags (duplicates within a row count once); scores: (n,) tie-breaker, higher first, NaN
    lowest; k: rows wanted (clipped to n). Returns (min(k, n),) int64 indices, no repeats.

    >>> select_by_tags([["a"], ["a", "b"], ["c"], ["a"]], np.zeros(4), 3).tolist()
    [1, 2, 0]
    """
    scores = np.asarray(scores, dtype=np.float64)
    if scores.shape != (len(tags),):
        raise ValueError(f"scores must have shape ({len(tags)},), got {scores.shape}")
    if k < 0:
        raise ValueError(f"k must be >= 0, got {k}")
    sets = [set(t) for t in tags]
    key = np.where(np.isnan(scores), -np.inf, scores)
    order = sorted(range(len(tags)), key=lambda i: (-len(sets[i]), -key[i], i))
    want = min(k, len(tags))
    chosen: list[int] = []
    remaining = [i for i in order if sets[i]]
    while len(chosen) < want and remaining:
        covered: set[str] = set()
        left = []
        for i in remaining:
            if len(chosen) < want and not sets[i] <= covered:
                chosen.append(i)
                covered |= sets[i]
            else:
                left.append(i)
        remaining = left
    untagged = [i for i in order if not sets[i]]
    chosen.extend(untagged[: want - len(chosen)])
    return np.asarray(chosen, dtype=np.int64)
