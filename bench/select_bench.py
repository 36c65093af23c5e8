"""Selection engine benchmark: ratios against baselines run in the same process.

    .venv/bin/python bench/select_bench.py            # 1M x 19 pool, k-means on 200K x 384 (paper sizes)
    .venv/bin/python bench/select_bench.py --quick    # 100K x 19, 50K x 384: a few minutes

1. Metrics + normalisation on a synthetic pool (canonical Parquet, 19 generators in 6 families):
   the Ray Data path (pool blocks in the object store -> compute_metrics -> sketches -> quantile
   transform, as `crowdselect select` runs them) and the same stages in-process (the executor `select`
   uses on one machine) in rows/s, against
   (a) a per-row Python loop like the authors' scripts (scipy spearmanr per family per row; timed on a
       subsample, rows/s extrapolated), target >= 100x, and
   (b) in-memory numpy on the whole (n, 19) matrix + sklearn QuantileTransformer, target within 2x.
2. k-means: crowdselect's Ray k-means against sklearn KMeans, same k, n_init and data:
   time ratio (target <= 1.5) at inertia ratio (target <= 1.01).
Absolute times on a shared machine are noise; the ratios are the result.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from crowdselect.core import columns as C
from crowdselect.select import metrics as M

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the repo root: bench.synthetic
from bench.synthetic import PAPER_CROWD, rewards  # noqa: E402

NAMES = [g for g, _, _ in PAPER_CROWD]
FAMILIES = [f for _, f, _ in PAPER_CROWD]
SIZES = [s for _, _, s in PAPER_CROWD]


def write_pool(R: np.ndarray, folder: str, files: int) -> None:
    """Canonical crowd Parquet: list columns built from flat arrays (no Python per row)."""
    n, g = R.shape
    for part, rows in enumerate(np.array_split(np.arange(n), files)):
        m = len(rows)
        offsets = pa.array(np.arange(0, (m + 1) * g, g, dtype=np.int32))
        table = pa.table({
            C.ID: pa.array([f"r{i:08d}" for i in rows]),
            C.INSTRUCTION: pa.array(["instruction"] * m),
            C.MODELS: pa.ListArray.from_arrays(offsets, pa.array(NAMES * m)),
            C.RESPONSES: pa.ListArray.from_arrays(offsets, pa.array(["answer"] * (m * g))),
            C.REWARDS: pa.ListArray.from_arrays(offsets, pa.array(R[rows].ravel())),
            C.SOURCE: pa.array(["bench"] * m),
        })
        pq.write_table(table, os.path.join(folder, f"part-{part:03d}.parquet"))


def engine_metrics(folder: str, n: int, executor: str) -> float:
    import ray

    from crowdselect.runtime.local_data import LocalDataset
    from crowdselect.select.blocks import compute_metrics
    from crowdselect.select.job import fit_pool_quantiles
    from crowdselect.select.normalize import quantile_transform

    # both baselines start from rewards in memory: so does this path (the pool in Ray's object store, or
    # in this process as the in-process executor holds it: Arrow blocks of 4,096 rows)
    if executor == "ray":
        pool = ray.data.read_parquet(folder).materialize()
    else:
        pool = LocalDataset([pa.Table.from_batches([b]) for b in pq.read_table(folder).to_batches(4096)])
    t0 = time.perf_counter()
    ds = pool.map_batches(  # one call per block, as `select` runs its metrics
        compute_metrics, batch_format="pyarrow", batch_size=None,
        fn_kwargs={"generators": NAMES, "families": FAMILIES, "sizes": SIZES}).materialize()
    quantiles = fit_pool_quantiles(ds, n, 1000, 65536)[0]

    def normalise(batch: pa.Table) -> pa.Table:
        for m in C.METRICS:
            batch = batch.append_column(C.q(m), pa.array(quantile_transform(batch.column(m).to_numpy(), *quantiles[m])))
        return batch

    assert ds.map_batches(normalise, batch_format="pyarrow", batch_size=None).materialize().count() == n
    return time.perf_counter() - t0


def numpy_metrics(R: np.ndarray) -> float:
    from sklearn.preprocessing import QuantileTransformer

    t0 = time.perf_counter()
    X = np.stack([M.difficulty(R), M.separability(R), M.stability(R, FAMILIES, SIZES)], axis=1)
    QuantileTransformer(n_quantiles=1000, subsample=None).fit_transform(X)
    return time.perf_counter() - t0


def loop_metrics(R: np.ndarray) -> float:
    """The authors' shape: a Python loop over rows, scipy spearmanr per family."""
    from scipy.stats import spearmanr
    from sklearn.preprocessing import QuantileTransformer

    t0 = time.perf_counter()
    fams = {f: [j for j, x in enumerate(FAMILIES) if x == f] for f in dict.fromkeys(FAMILIES)}
    out = []
    for row in R:
        d = -float(np.mean(row))
        s = float(np.var(row))
        rhos = [spearmanr(row[idx], [SIZES[j] for j in idx]).statistic for idx in fams.values() if len(idx) >= 2]
        out.append((d, s, float(np.nanmean(rhos))))
    QuantileTransformer(n_quantiles=min(len(out), 1000), subsample=None).fit_transform(np.array(out))
    return time.perf_counter() - t0


def kmeans_bench(n: int, d: int, k: int, n_init: int, workers: int) -> dict:
    import ray
    from sklearn.cluster import KMeans

    from crowdselect.select.kmeans_ray import fit_kmeans

    rng = np.random.default_rng(0)
    centres = rng.normal(size=(k, d))
    X = centres[rng.integers(0, k, n)] + rng.normal(scale=1.5, size=(n, d))
    X = (X / np.linalg.norm(X, axis=1, keepdims=True)).astype(np.float32)  # unit vectors, like embeddings
    refs = [ray.put({"e": b}) for b in np.array_split(X, 32)]
    t0 = time.perf_counter()
    ours = fit_kmeans(refs, "e", k, n_init=n_init, seed=42, workers=workers, progress=False)
    t_ours = time.perf_counter() - t0
    t0 = time.perf_counter()
    ref = KMeans(k, n_init=n_init, random_state=42).fit(X)
    t_sk = time.perf_counter() - t0
    return {"ours_s": t_ours, "sklearn_s": t_sk, "time_ratio": t_ours / t_sk,
            "inertia_ratio": ours.inertia / ref.inertia_}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--rows", type=int)
    ap.add_argument("--loop-rows", type=int, default=5000)
    ap.add_argument("--kmeans-rows", type=int)
    ap.add_argument("--dim", type=int, default=384)
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--n-init", type=int, default=20)
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 2)
    ap.add_argument("--only", choices=["metrics", "kmeans"], help="run one part")
    args = ap.parse_args()
    rows = args.rows or (100_000 if args.quick else 1_000_000)
    km_rows = args.kmeans_rows or (50_000 if args.quick else 200_000)

    from crowdselect.runtime.ray_setup import configure_data, ensure_ray

    ensure_ray(num_cpus=os.cpu_count())
    configure_data()
    if args.only != "kmeans":
        metrics_part(rows, args.loop_rows)
    if args.only != "metrics":
        kmeans_part(km_rows, args)


def metrics_part(rows: int, loop_rows: int) -> None:
    R = rewards(rows, PAPER_CROWD, seed=1)
    with tempfile.TemporaryDirectory() as folder:
        write_pool(R, folder, files=max(2, rows // 50_000))
        t_ray = engine_metrics(folder, rows, "ray")
        t_local = engine_metrics(folder, rows, "local")
    t_np = numpy_metrics(R)
    t_loop = loop_metrics(R[:loop_rows]) * rows / loop_rows
    print(f"\nmetrics + normalisation, {rows:,} x {len(NAMES)} pool, {os.cpu_count()} CPUs")
    print(f"  ray data   {rows / t_ray:>12,.0f} rows/s  ({t_ray:.1f}s)")
    print(f"  in-process {rows / t_local:>12,.0f} rows/s  ({t_local:.1f}s, crowdselect.runtime.local_data)")
    print(f"  numpy      {rows / t_np:>12,.0f} rows/s  ({t_np:.1f}s, in memory)")
    print(f"  row loop   {rows / t_loop:>12,.0f} rows/s  (timed on {loop_rows:,} rows)")
    print(f"  ratio ray / row loop = {t_loop / t_ray:.1f}x   (target >= 100x)")
    print(f"  ratio numpy / ray    = {t_ray / t_np:.2f}x slower (target <= 2x)")
    print(f"  ratio numpy / in-process = {t_local / t_np:.2f}x slower (target <= 2x)")


def kmeans_part(km_rows: int, args: argparse.Namespace) -> None:
    km = kmeans_bench(km_rows, args.dim, args.k, args.n_init, args.workers)
    print(f"\nk-means, {km_rows:,} x {args.dim}, k={args.k}, n_init={args.n_init}, {args.workers} workers")
    print(f"  crowdselect {km['ours_s']:.1f}s, sklearn {km['sklearn_s']:.1f}s")
    print(f"  time ratio    = {km['time_ratio']:.2f} (target <= 1.5)")
    print(f"  inertia ratio = {km['inertia_ratio']:.4f} (target <= 1.01)")


if __name__ == "__main__":
    main()
