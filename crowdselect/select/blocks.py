"""The per-block stages of selection, as functions for Ray Data `map_batches` (batch_format="pyarrow").

Each takes a pyarrow Table and returns one; all math is delegated to the pure modules (metrics,
normalize, kmeans, selection). The wiring (which stage runs where, with what resources) is in select_job.py.

    compute_metrics : canonical rows        -> metric rows (metrics + best answer)
    metrics_block   : ingested rows         -> metric rows, rejected rows passed through (fused into ingest)
    sketch_block    : metric rows           -> one row of serialized quantile sketches (+ moments)
    moments_block   : any rows              -> count, sum and sum of squares per column (summary)
    score_block     : metric rows (+embed)  -> + q_* columns, score, cluster
    candidates_block: scored rows           -> the block's best k rows of every cluster
"""

from __future__ import annotations

import pickle

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from crowdselect.core import columns as C
from crowdselect.select import kmeans as km
from crowdselect.select import metrics as M
from crowdselect.select.normalize import QuantileSketch, quantile_transform
from crowdselect.select.selection import strategy_score, top_per_cluster

METRIC_COLUMNS = [C.ID, C.INSTRUCTION, C.SOURCE, C.N_ANSWERS, *C.METRICS, C.BEST_MODEL, C.BEST_RESPONSE,
                  C.BEST_REWARD, C.RESPONSE_CHARS]


def reward_matrix_arrow(models: pa.ListArray, rewards: pa.ListArray, generators: list[str]
                        ) -> tuple[np.ndarray, np.ndarray]:
    """Vectorised scatter of list columns: (rewards (n, G) NaN-filled, flat position (n, G) or -1)."""
    n = len(models)
    flat_models = models.flatten()
    col = pc.index_in(flat_models, value_set=pa.array(generators, pa.string())).to_numpy(zero_copy_only=False)
    offsets = models.offsets.to_numpy()
    row = np.repeat(np.arange(n), np.diff(offsets))
    R = np.full((n, len(generators)), np.nan)
    R[row, col] = rewards.flatten().to_numpy(zero_copy_only=False)
    P = np.full((n, len(generators)), -1, dtype=np.int64)
    P[row, col] = np.arange(len(flat_models))  # positions in the flattened (slice-aware) values
    return R, P


def compute_metrics(batch: pa.Table, generators: list[str], families: list[str], sizes: list[float],
                    ties: str = "undefined") -> pa.Table:
    """Canonical rows -> id, instruction, source, n_answers, the 3 metrics, and the crowd's best answer.
    ties: a family's all-tied rewards give stability NaN or 0 (`metrics.family_spearman`)."""
    models = batch.column(C.MODELS).combine_chunks()
    rewards = batch.column(C.REWARDS).combine_chunks()
    responses = batch.column(C.RESPONSES).combine_chunks()
    R, P = reward_matrix_arrow(models, rewards, generators)
    best = M.best_answer(R)
    rows = np.arange(len(R))
    best_pos = P[rows, best]
    best_response = responses.flatten().take(pa.array(best_pos))
    return pa.table({
        C.ID: batch.column(C.ID), C.INSTRUCTION: batch.column(C.INSTRUCTION), C.SOURCE: batch.column(C.SOURCE),
        C.N_ANSWERS: pa.array((~np.isnan(R)).sum(axis=1)),
        C.DIFFICULTY: M.difficulty(R), C.SEPARABILITY: M.separability(R),
        C.STABILITY: M.stability(R, families, sizes, ties),
        C.BEST_MODEL: pa.array(np.asarray(generators, dtype=object)[best].tolist(), pa.string()),
        C.BEST_RESPONSE: best_response, C.BEST_REWARD: R[rows, best],
        C.RESPONSE_CHARS: pc.utf8_length(best_response).cast(pa.float64()),
    })


def metrics_block(batch: pa.Table, generators: list[str], families: list[str], sizes: list[float],
                  keep: list[str], ties: str = "undefined") -> pa.Table:
    """Ingested rows (accepted and rejected) -> METRIC_COLUMNS + `keep`; rejected rows get null metrics.

    Runs inside the ingest tasks, so the answer lists are never stored: only one row of metrics and the
    best answer per instruction is.
    """
    ok = pc.is_null(batch.column(C.ERROR))
    good = batch.filter(ok)
    out = compute_metrics(good, generators, families, sizes, ties)
    for c in keep:
        out = out.append_column(c, good.column(c))
    if good.num_rows == batch.num_rows:
        return out
    bad = batch.filter(pc.invert(ok))
    have = set(METRIC_COLUMNS[:3]) | set(keep)
    filler = pa.table({f.name: bad.column(f.name) if f.name in have else pa.nulls(bad.num_rows, f.type)
                       for f in out.schema}, schema=out.schema)
    return pa.concat_tables([out, filler])


def sketch_block(batch: pa.Table, capacity: int, moments: list[str] | tuple = ()) -> pa.Table:
    """One row: pickled quantile sketches of the block's metrics, its row count, and the pickled
    (name, n, s, ss) rows of the `moments` columns (`moments_block`: the summary's spread of the pool)."""
    sk = {m: QuantileSketch.of(batch.column(m).to_numpy(zero_copy_only=False), capacity).to_dict()
          for m in C.METRICS}
    sums = moments_block(batch, list(moments)).to_pylist() if moments else []
    return pa.table({"sketch": [pickle.dumps(sk)], "rows": [batch.num_rows], "moments": [pickle.dumps(sums)]})


def moments_block(batch: pa.Table, columns: list[str]) -> pa.Table:
    """One row per column: count, sum and sum of squares of its defined values (NaN/null skipped)."""
    stats = []
    for c in columns:
        v = batch.column(c).to_numpy(zero_copy_only=False).astype(float)
        v = v[~np.isnan(v)]
        stats.append((c, len(v), float(v.sum()), float((v * v).sum())))
    return pa.table({k: [s[i] for s in stats] for i, k in enumerate(("name", "n", "s", "ss"))})


def score_block(batch: pa.Table, quantiles: dict, strategy: str, weights: list[float], seed: int,
                use_stability: bool, centers: np.ndarray | None,
                projection: tuple[np.ndarray, np.ndarray] | None = None) -> pa.Table:
    """+ q_<metric> (quantile-normalised), score (by strategy) and cluster (nearest centre, or 0); with
    `projection` (mean (d,), axes (2, d)) also pc1, pc2: the embedding on two principal axes."""
    cols = {m: batch.column(m).to_numpy(zero_copy_only=False) for m in C.METRICS}
    for m in C.METRICS:
        qs, refs = quantiles[m]
        cols[C.q(m)] = quantile_transform(cols[m], qs, refs)
    for extra in (C.BEST_REWARD, C.RESPONSE_CHARS, C.IFD, C.DIRECT_SCORE):
        if extra in batch.column_names:
            cols[extra] = batch.column(extra).to_numpy(zero_copy_only=False).astype(float)
    if C.TAGS in batch.column_names:
        cols[C.N_TAGS] = np.array([len(set(t or [])) for t in batch.column(C.TAGS).to_pylist()], dtype=float)
    ids = batch.column(C.ID).to_pylist()
    score = strategy_score(strategy, cols, ids=ids, seed=seed, weights=weights, use_stability=use_stability)
    if centers is not None and batch.num_rows:
        X = np.stack(batch.column(C.EMBEDDING).to_numpy(zero_copy_only=False)).astype(np.float32)
        labels, _ = km.assign(X, centers[None].astype(np.float64))
        cluster = labels[0]
        batch = batch.drop_columns([C.EMBEDDING])
        if projection is not None:
            mean, axes = projection
            xy = (X - mean) @ axes.T
            for j, name in enumerate(C.PCA):
                batch = batch.append_column(name, pa.array(xy[:, j], pa.float32()))
    else:
        cluster = np.zeros(batch.num_rows, dtype=np.int64)
        if C.EMBEDDING in batch.column_names:
            batch = batch.drop_columns([C.EMBEDDING])
    for m in C.METRICS:
        batch = batch.append_column(C.q(m), pa.array(cols[C.q(m)]))
    batch = batch.append_column(C.SCORE, pa.array(score, pa.float64()))
    return batch.append_column(C.CLUSTER, pa.array(cluster, pa.int64()))


def candidates_block(batch: pa.Table, k: int) -> pa.Table:
    """The block's best k rows of every cluster (all the final selection could need from it)."""
    if batch.num_rows == 0:
        return batch
    scores = batch.column(C.SCORE).to_numpy(zero_copy_only=False)
    ids = np.asarray(batch.column(C.ID).to_pylist(), dtype=object)
    clusters = batch.column(C.CLUSTER).to_numpy(zero_copy_only=False)
    return batch.take(pa.array(top_per_cluster(scores, ids.astype(str), clusters, k)))
