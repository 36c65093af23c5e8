"""Distributed k-means on Ray: shards live in actors, the driver runs `n_init` problems side by side.

Each `ShardWorker` actor (a `Shard` in an actor; `workers=0` keeps one `Shard` in the driver, for fits
small enough that actor start-up and round trips would cost more than the arithmetic) holds a slice of
the embedding rows (fetched from Ray Data block refs, so rows never pass through the driver). Seeding is greedy k-means++ (sklearn's: 2 + ln k trials per step, keep the
one that lowers the potential most); Lloyd steps add up per-shard partial sums. All inits share every
pass over the data (one matrix product against r*k centres); converged inits drop out. The driver only
ever holds (r, k, d) numbers. This module knows nothing of CrowdSelect columns or scores.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import ray
from tqdm.auto import tqdm

from crowdselect.runtime.local_data import fetch
from crowdselect.select import kmeans as km


@dataclass
class KMeansResult:
    centers: np.ndarray  # (k, d) of the best init
    inertia: float  # sum of squared distances of the fitted rows to their centre
    n_iter: int  # Lloyd iterations of the best init
    inertias: np.ndarray  # (n_init,) final inertia of every init
    n_rows: int


class Shard:
    """One shard of rows X (n, d) float32, and the k-means++ state d2 (r, n) of all inits."""

    def __init__(self, refs: list, column: str, blas_threads: int | None = 1):
        from threadpoolctl import threadpool_limits

        # one BLAS thread per actor: actors, not threads, give the parallelism (in the driver: no limit)
        self._limits = threadpool_limits(limits=blas_threads) if blas_threads else None
        batches = [fetch(r) for r in refs]  # refs or LocalDataset blocks
        # an empty block may hold no columns at all (Ray Data's output for a block no row reached)
        parts = [np.asarray(b[column], dtype=np.float32) for b in batches if column in b and len(b[column])]
        parts = [p.reshape(len(p), -1) for p in parts]
        self.X = np.concatenate(parts) if parts else np.zeros((0, 1), np.float32)
        self.xx = km.row_norms(self.X)
        self.d2 = None

    def size(self) -> int:
        return len(self.X)

    def moments(self) -> tuple[np.ndarray, np.ndarray]:
        x = self.X.astype(np.float64)
        return x.sum(axis=0), (x * x).sum(axis=0)

    def rows(self, idx: list[int]) -> np.ndarray:
        return self.X[idx]

    def start(self, first: np.ndarray) -> np.ndarray:
        self.d2 = km.min_d2_to(self.X, first).astype(np.float64)
        return self.d2.sum(axis=1)

    def sample(self, picks: list[tuple[int, float]]) -> np.ndarray:
        return np.stack([self.X[km.pick_weighted(self.d2[i], np.array([t]))[0]] for i, t in picks])

    def potentials(self, candidates: np.ndarray) -> np.ndarray:
        return km.candidate_potentials(self.X, self.d2, candidates)

    def add_center(self, chosen: np.ndarray) -> np.ndarray:
        self.d2 = np.minimum(self.d2, km.min_d2_to(self.X, chosen))
        return self.d2.sum(axis=1)

    def lloyd(self, centers: np.ndarray):
        return km.lloyd_partial(self.X, centers, self.xx)


ShardWorker = ray.remote(num_cpus=1)(Shard)


class _InProcess:
    """A `Shard` in the driver behind the actor-call syntax: `h.method.remote(...)` returns the value."""

    def __init__(self, shard: Shard):
        self._shard = shard

    def __getattr__(self, name):
        return _Immediate(getattr(self._shard, name))


class _Immediate:
    def __init__(self, method):
        self.remote = method


def fit_kmeans(block_refs: list, column: str, k: int, *, n_init: int = 20, seed: int = 42,
               max_iter: int = 300, tol: float = 1e-4, workers: int = 2, progress: bool = True) -> KMeansResult:
    """Fit k-means on the rows of `column` in the given Ray Data block refs (each a dict of numpy arrays).
    `workers=0`: one shard in the driver (no actors); the arithmetic is the same."""
    if workers == 0:
        return _fit([_InProcess(Shard(block_refs, column, blas_threads=None))], k, n_init, seed, max_iter, tol,
                    progress)
    workers = max(1, min(workers, len(block_refs)))
    shards = [block_refs[i::workers] for i in range(workers)]
    actors = [ShardWorker.remote(s, column) for s in shards]
    try:
        return _fit(actors, k, n_init, seed, max_iter, tol, progress)
    finally:
        for a in actors:
            ray.kill(a)


def _fit(actors, k, n_init, seed, max_iter, tol, progress) -> KMeansResult:
    sizes = np.array(fetch([a.size.remote() for a in actors]))
    n = int(sizes.sum())
    if n < k:
        raise ValueError(f"k-means needs at least k={k} rows, got {n}")
    moments = fetch([a.moments.remote() for a in actors])
    s1 = sum(m[0] for m in moments)
    s2 = sum(m[1] for m in moments)
    tol_abs = tol * float(np.mean(s2 / n - (s1 / n) ** 2))
    rng = np.random.default_rng(seed)
    centers = _seed_kmeanspp(actors, sizes, k, n_init, rng, progress)
    centers, n_iter = _lloyd(actors, centers, max_iter, tol_abs, progress)
    parts = fetch([a.lloyd.remote(centers) for a in actors])
    inertias = sum(p[2] for p in parts)
    best = int(np.argmin(inertias))
    return KMeansResult(centers[best].astype(np.float32), float(inertias[best]), int(n_iter[best]),
                        inertias, n)


def _fetch(actors, sizes, global_idx: np.ndarray) -> np.ndarray:
    offsets = np.concatenate([[0], np.cumsum(sizes)])
    owner = np.searchsorted(offsets, global_idx, side="right") - 1
    out = [None] * len(global_idx)
    for w in np.unique(owner):
        where = np.flatnonzero(owner == w)
        rows = fetch(actors[w].rows.remote((global_idx[where] - offsets[w]).tolist()))
        for j, row in zip(where, rows, strict=True):
            out[j] = row
    return np.stack(out)


def _seed_kmeanspp(actors, sizes, k, r, rng, progress) -> np.ndarray:
    first = _fetch(actors, sizes, rng.integers(int(sizes.sum()), size=r))
    centers = [first]
    shard_pot = np.array(fetch([a.start.remote(first) for a in actors]))  # (W, r)
    trials = 2 + int(math.log(k))
    for _ in tqdm(range(1, k), desc="k-means++ seeding", disable=not progress, leave=False):
        cum = np.cumsum(shard_pot, axis=0)  # (W, r)
        targets = rng.random((r, trials)) * cum[-1][:, None]
        asks: dict[int, list] = {}
        for i in range(r):
            for t in range(trials):
                w = min(int(np.searchsorted(cum[:, i], targets[i, t], side="right")), len(actors) - 1)
                local = targets[i, t] - (cum[w - 1, i] if w else 0.0)
                asks.setdefault(w, []).append((i, t, local))
        cands = np.zeros((r, trials, centers[0].shape[1]), dtype=np.float32)
        replies = fetch([actors[w].sample.remote([(i, x) for i, _, x in lst]) for w, lst in asks.items()])
        for (_w, lst), rows in zip(asks.items(), replies, strict=True):
            for (i, t, _), row in zip(lst, rows, strict=True):
                cands[i, t] = row
        pots = sum(fetch([a.potentials.remote(cands) for a in actors]))  # (r, trials)
        chosen = cands[np.arange(r), np.argmin(pots, axis=1)]
        centers.append(chosen)
        shard_pot = np.array(fetch([a.add_center.remote(chosen) for a in actors]))
    return np.stack(centers, axis=1).astype(np.float64)  # (r, k, d)


def _lloyd(actors, centers, max_iter, tol_abs, progress) -> tuple[np.ndarray, np.ndarray]:
    r = centers.shape[0]
    active = np.ones(r, dtype=bool)
    n_iter = np.zeros(r, dtype=int)
    bar = tqdm(total=max_iter, desc="k-means Lloyd", disable=not progress, leave=False)
    for _ in range(max_iter):
        idx = np.flatnonzero(active)
        if len(idx) == 0:
            break
        parts = fetch([a.lloyd.remote(centers[idx]) for a in actors])
        sums = sum(p[0] for p in parts)
        counts = sum(p[1] for p in parts)
        new = km.update_centers(sums, counts, centers[idx])
        shift = ((new - centers[idx]) ** 2).sum(axis=(1, 2))
        centers[idx] = new
        n_iter[idx] += 1
        active[idx[shift <= tol_abs]] = False
        bar.update(1)
        bar.set_postfix(active=int(active.sum()))
    bar.close()
    return centers, n_iter
