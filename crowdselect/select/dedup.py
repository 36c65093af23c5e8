"""Semantic dedup inside each k-means cluster (SemDeDup's idea, Abbas et al. 2023): of two instructions whose
embeddings are closer than a cosine threshold, the one with the lower score leaves the pool.

    selection:
      dedup: {enabled: true, cosine: 0.9}      # off by default: the paper does not dedup

Rule (`find_duplicates`, pure): walk a cluster's rows in rank order (score descending, NaN last, ties by
id, as the selection ranks); a row is dropped when its cosine with a row already *kept* is >= the threshold,
and recorded with the kept row it is closest to. Every dropped row thus names a kept duplicate, and a chain
(A ~ B, B ~ C, A !~ C) keeps C once B is gone. Rows are compared in chunks, so a cluster of n rows needs its
(n, d) embeddings and one (chunk, chunk) block of cosines at a time, never an (n, n) matrix.

Wiring (`find_cluster_duplicates`): a group-by on the cluster column, one cluster per call (Ray Data: one task
per group; in-process: the executor's group-by); each call returns its (kept, dropped, cosine) rows, which
come back to the driver sorted, so both executors write the same duplicates.jsonl. The dropped rows stay in
scores.parquet (`duplicate_of` names the row kept) and never reach the quota selection.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from crowdselect.core import columns as C
from crowdselect.core.config import ConfigError

DUPLICATE_OF = "duplicate_of"  # scores.parquet: the kept row a dropped duplicate matched (null: not dropped)
DUPLICATES_FILE = "duplicates.jsonl"
KEPT, DROPPED, COSINE = "kept_id", "dropped_id", "cosine"
KEPT_TEXT, DROPPED_TEXT = "kept_instruction", "dropped_instruction"


@dataclass
class DedupConfig:
    enabled: bool = False  # the paper does not dedup
    cosine: float = 0.9  # a pair at least this close is a duplicate (README "Semantic dedup" for the choice)
    chunk: int = 1024  # rows compared at once (memory per cluster: its embeddings + chunk x chunk cosines)

    def validate(self) -> None:
        if not 0 < self.cosine <= 1:
            raise ConfigError(f"cosine: must be in (0, 1], got {self.cosine}")
        if self.chunk < 1:
            raise ConfigError(f"chunk: must be >= 1, got {self.chunk}")


def rank_order(scores: np.ndarray, ids: list[str]) -> np.ndarray:
    """Indices by score descending (NaN last), ties by id ascending: the selection's ranking."""
    s = np.asarray(scores, dtype=float)
    return np.array(sorted(range(len(ids)), key=lambda i: (np.isnan(s[i]), -np.nan_to_num(s[i]), ids[i])),
                    dtype=np.int64)


def find_duplicates(X: np.ndarray, cosine: float, chunk: int = 1024) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """X: (n, d) unit rows in rank order (row 0 the best). Returns (dropped (m,), kept (m,), cos (m,)): row
    indices of each dropped row, the kept row it is closest to (ties: the better ranked), and their cosine.

    >>> X = np.array([[1, 0], [0.99, 0.141], [0, 1], [0.141, 0.99]], np.float32)
    >>> [a.tolist() for a in find_duplicates(X, 0.95)[:2]]
    [[1, 3], [0, 2]]
    """
    X = np.asarray(X, dtype=np.float32)
    n = len(X)
    kept: list[int] = []
    out_d, out_k, out_c = [], [], []
    for start in range(0, n, chunk):
        Y = X[start:start + chunk]
        best = np.full(len(Y), -np.inf)
        near = np.full(len(Y), -1, np.int64)
        for k0 in range(0, len(kept), chunk):  # against the rows kept so far, a block at a time
            idx = np.asarray(kept[k0:k0 + chunk])
            S = Y @ X[idx].T
            j = S.argmax(axis=1)
            better = S[np.arange(len(Y)), j] > best
            best[better], near[better] = S[np.arange(len(Y)), j][better], idx[j][better]
        inside = Y @ Y.T  # within the chunk: only earlier rows that are themselves kept count
        local_kept: list[int] = []
        for i in range(len(Y)):
            if local_kept:
                c = inside[i, local_kept]
                j = int(c.argmax())
                if c[j] > best[i]:
                    best[i], near[i] = c[j], start + local_kept[j]
            if best[i] >= cosine:
                out_d.append(start + i)
                out_k.append(int(near[i]))
                out_c.append(float(best[i]))
            else:
                local_kept.append(i)
        kept += [start + i for i in local_kept]
    return np.asarray(out_d, np.int64), np.asarray(out_k, np.int64), np.asarray(out_c, np.float64)


def dedup_group(group, cosine: float, chunk: int):
    """One cluster's rows (pyarrow: id, instruction, score, cluster, embedding) -> its (cluster, kept_id,
    dropped_id, cosine, kept and dropped instructions) rows, in the cluster's rank order of the dropped rows."""
    import pyarrow as pa

    ids = group.column(C.ID).to_pylist()
    texts = group.column(C.INSTRUCTION).to_pylist()
    order = rank_order(group.column(C.SCORE).to_numpy(zero_copy_only=False), ids)
    X = np.stack(group.column(C.EMBEDDING).to_numpy(zero_copy_only=False)).astype(np.float32)[order]
    dropped, kept, cos = find_duplicates(X, cosine, chunk)
    kept, dropped = order[kept], order[dropped]
    cluster = int(group.column(C.CLUSTER)[0].as_py()) if group.num_rows else 0
    return pa.table({C.CLUSTER: pa.array([cluster] * len(dropped), pa.int64()),
                     KEPT: pa.array([ids[i] for i in kept], pa.string()),
                     DROPPED: pa.array([ids[i] for i in dropped], pa.string()),
                     COSINE: pa.array(np.round(cos, 4), pa.float64()),
                     KEPT_TEXT: pa.array([texts[i] for i in kept], pa.string()),
                     DROPPED_TEXT: pa.array([texts[i] for i in dropped], pa.string())})


def with_embedding(batch, score, **kwargs):
    """`score(batch, **kwargs)` (the selection's score stage, which drops the embedding) with the embedding
    kept: dedup compares the scored rows' embeddings. Rows keep their order through `score`."""
    return score(batch, **kwargs).append_column(C.EMBEDDING, batch.column(C.EMBEDDING))


def drop_duplicates(scored, cfg: DedupConfig):
    """scored: Rows with id, instruction, score, cluster, embedding (materialised). Returns (every row without
    the embedding, + duplicate_of; materialised), (the rows the selection may take: duplicate_of null), pairs."""
    import pyarrow.compute as pc

    from crowdselect.runtime.rows import filter_rows

    pairs = find_cluster_duplicates(scored, cfg)
    marked = scored.drop_columns([C.EMBEDDING]).map_batches(
        mark_block, batch_format="pyarrow", batch_size=None,
        fn_kwargs={"dropped": {p[DROPPED]: p[KEPT] for p in pairs}}).materialize()
    return marked, filter_rows(marked, lambda b: pc.is_null(b[DUPLICATE_OF])), pairs


def note(cfg: DedupConfig, pairs: list[dict]) -> str:
    """One line for the summary's notes."""
    return (f"dedup: {len(pairs):,} near-duplicate instruction(s) dropped within k-means clusters (cosine >= "
            f"{cfg.cosine}; of a pair the higher score stays); listed in {DUPLICATES_FILE}")


def find_cluster_duplicates(scored, cfg: DedupConfig) -> list[dict]:
    """scored: Rows with id, score, cluster, embedding. The duplicates of every cluster, sorted by (cluster,
    dropped id): [{cluster, kept_id, dropped_id, cosine}]."""
    pairs = (scored.select_columns([C.ID, C.INSTRUCTION, C.SCORE, C.CLUSTER, C.EMBEDDING]).groupby(C.CLUSTER)
             .map_groups(dedup_group, batch_format="pyarrow", fn_kwargs={"cosine": cfg.cosine, "chunk": cfg.chunk})
             .take_all())
    return sorted(pairs, key=lambda r: (r[C.CLUSTER], r[DROPPED]))


def mark_block(batch, dropped: dict[str, str]):
    """+ duplicate_of: the kept id for a dropped row, null otherwise (pyarrow block)."""
    import pyarrow as pa

    return batch.append_column(DUPLICATE_OF, pa.array([dropped.get(i) for i in batch.column(C.ID).to_pylist()],
                                                      pa.string()))


def record(cfg: DedupConfig, pairs: list[dict]) -> dict:
    """run.json's `dedup`: the threshold, the rows dropped in all and per cluster, the file."""
    per: dict[int, int] = {}
    for p in pairs:
        per[int(p[C.CLUSTER])] = per.get(int(p[C.CLUSTER]), 0) + 1
    return {"cosine": cfg.cosine, "dropped": len(pairs), "per_cluster": {str(k): v for k, v in sorted(per.items())},
            "file": DUPLICATES_FILE}


def write_duplicates(out: str, pairs: list[dict]) -> str:
    """DIR/duplicates.jsonl: one line per dropped row (kept id, dropped id, cosine, cluster, both instructions)."""
    from crowdselect.core import storage
    from crowdselect.select.outputs import jsonl

    uri = storage.join(out, DUPLICATES_FILE)
    storage.write_text(uri, jsonl([{KEPT: p[KEPT], DROPPED: p[DROPPED], COSINE: p[COSINE], C.CLUSTER: p[C.CLUSTER],
                                    KEPT_TEXT: p[KEPT_TEXT], DROPPED_TEXT: p[DROPPED_TEXT]} for p in pairs]))
    return uri
