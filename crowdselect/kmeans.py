"""k-means math on one shard of rows, for many initialisations at once. Pure numpy.

The distributed driver (kmeans_ray.py) runs `n_init` k-means problems side by side: every pass over a
shard computes distances to all `r * k` centres with one matrix product, and returns per-init partial sums
that add up across shards. Shapes: X (n, d) float32; centers (r, k, d); d2 (r, n).
"""

from __future__ import annotations

import numpy as np
from scipy import sparse


def sq_dists(X: np.ndarray, centers: np.ndarray) -> np.ndarray:
    """Squared distances (r, n, k) from every row of X (n, d) to every centre of centers (r, k, d)."""
    r, k, d = centers.shape
    flat = centers.reshape(r * k, d).astype(X.dtype, copy=False)
    xx = np.einsum("nd,nd->n", X, X)[:, None]
    cc = np.einsum("md,md->m", flat, flat)[None, :]
    d2 = xx - 2.0 * (X @ flat.T) + cc  # (n, r*k)
    np.maximum(d2, 0.0, out=d2)
    return d2.reshape(len(X), r, k).transpose(1, 0, 2)


def assign(X: np.ndarray, centers: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(labels (r, n), squared distance to the own centre (r, n)) for every init."""
    d2 = sq_dists(X, centers)
    labels = d2.argmin(axis=2)
    return labels, np.take_along_axis(d2, labels[..., None], axis=2)[..., 0]


def lloyd_partial(X: np.ndarray, centers: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One shard's part of a Lloyd step: (sums (r, k, d) float64, counts (r, k), inertia (r,))."""
    r, k, d = centers.shape
    labels, dist = assign(X, centers)
    n = len(X)
    sums = np.zeros((r, k, d))
    counts = np.zeros((r, k))
    rows = np.arange(n)
    for i in range(r):
        counts[i] = np.bincount(labels[i], minlength=k)
        onehot = sparse.csr_matrix((np.ones(n, dtype=X.dtype), (labels[i], rows)), shape=(k, n))
        sums[i] = onehot @ X
    return sums, counts, dist.sum(axis=1, dtype=np.float64)


def update_centers(sums: np.ndarray, counts: np.ndarray, old: np.ndarray) -> np.ndarray:
    """New centres (r, k, d) = sums / counts; an empty cluster keeps its old centre."""
    safe = np.maximum(counts, 1.0)[..., None]
    return np.where(counts[..., None] > 0, sums / safe, old)


def min_d2_to(X: np.ndarray, points: np.ndarray) -> np.ndarray:
    """(r, n): squared distance of every row to its init's point, points (r, d)."""
    diff = X[None, :, :] - points[:, None, :].astype(X.dtype)
    return np.einsum("rnd,rnd->rn", diff, diff)


def candidate_potentials(X: np.ndarray, d2: np.ndarray, candidates: np.ndarray) -> np.ndarray:
    """Greedy k-means++ trial: (r, L) sum over rows of min(d2, dist to candidate)^2.

    d2: (r, n) current squared distance to the closest chosen centre; candidates: (r, L, d).
    """
    r, L, d = candidates.shape
    cand_d2 = sq_dists(X, candidates)  # (r, n, L)
    return np.minimum(d2[..., None], cand_d2).sum(axis=1)


def pick_weighted(weights: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """Index of the row where the cumulative weight first exceeds each target: weights (n,), targets (m,)."""
    cum = np.cumsum(weights)
    return np.minimum(np.searchsorted(cum, targets, side="right"), len(weights) - 1)
