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


def row_norms(X: np.ndarray) -> np.ndarray:
    """(n,) squared norms of the rows of X (n, d); computed once per shard and reused every pass."""
    return np.einsum("nd,nd->n", X, X)


def assign(X: np.ndarray, centers: np.ndarray, xx: np.ndarray | None = None,
           chunk: int = 4096) -> tuple[np.ndarray, np.ndarray]:
    """(labels (r, n), squared distance to the own centre (r, n)) for every init.

    Works in row chunks so the (chunk, r*k) distance block stays in cache; the row norms only shift each
    row's distances, so they are added to the minimum alone.
    """
    r, k, d = centers.shape
    n = len(X)
    flat = centers.reshape(r * k, d).astype(X.dtype, copy=False)
    cc = np.einsum("md,md->m", flat, flat)
    xx = row_norms(X) if xx is None else xx
    labels = np.empty((r, n), dtype=np.int64)
    dist = np.empty((r, n), dtype=np.float64)
    for s in range(0, n, chunk):
        g = X[s:s + chunk] @ flat.T  # (c, r*k)
        g *= -2.0
        g += cc
        g3 = g.reshape(len(g), r, k)
        lab = g3.argmin(axis=2)  # (c, r)
        labels[:, s:s + chunk] = lab.T
        dist[:, s:s + chunk] = (np.take_along_axis(g3, lab[..., None], axis=2)[..., 0] + xx[s:s + chunk, None]).T
    np.maximum(dist, 0.0, out=dist)
    return labels, dist


def lloyd_partial(X: np.ndarray, centers: np.ndarray,
                  xx: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One shard's part of a Lloyd step: (sums (r, k, d) float64, counts (r, k), inertia (r,))."""
    r, k, d = centers.shape
    n = len(X)
    labels, dist = assign(X, centers, xx)
    flat_labels = (labels + (np.arange(r) * k)[:, None]).ravel()  # one label space for all inits
    onehot = sparse.csr_matrix((np.ones(r * n, dtype=X.dtype), (flat_labels, np.tile(np.arange(n), r))),
                               shape=(r * k, n))
    sums = np.asarray(onehot @ X, dtype=np.float64).reshape(r, k, d)
    counts = np.bincount(flat_labels, minlength=r * k).reshape(r, k).astype(np.float64)
    return sums, counts, dist.sum(axis=1)


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
