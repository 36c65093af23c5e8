"""Semantic dedup's rule on hand-made and random unit vectors (pure), against a plain reference."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from crowdselect.core import columns as C
from crowdselect.core.config import ConfigError, build
from crowdselect.select.dedup import DedupConfig, dedup_group, find_duplicates, rank_order


def reference(X: np.ndarray, cosine: float) -> list[tuple[int, int, float]]:
    """The README's rule written as plainly as possible: in rank order, drop a row whose nearest kept row is
    at least `cosine` away; (dropped, kept, cosine)."""
    kept, out = [], []
    for i in range(len(X)):
        sims = [float(X[i] @ X[k]) for k in kept]
        if sims and max(sims) >= cosine:
            j = int(np.argmax(sims))
            out.append((i, kept[j], sims[j]))
        else:
            kept.append(i)
    return out


def unit(rows) -> np.ndarray:
    X = np.asarray(rows, np.float32)
    return X / np.linalg.norm(X, axis=1, keepdims=True)


def test_a_chain_keeps_its_far_end_and_every_dropped_row_names_a_kept_one():
    X = unit([[1, 0], [np.cos(0.3), np.sin(0.3)], [np.cos(0.6), np.sin(0.6)]])  # A~B, B~C, A and C farther apart
    dropped, kept, cos = find_duplicates(X, cosine=float(np.cos(0.35)))
    assert dropped.tolist() == [1] and kept.tolist() == [0]  # C stays: its only close neighbour (B) is gone
    assert cos[0] == pytest.approx(np.cos(0.3))


@pytest.mark.parametrize("chunk", [1, 3, 7, 1000])
def test_chunked_comparison_equals_the_plain_rule(chunk):
    rng = np.random.default_rng(0)
    base = rng.normal(size=(40, 16))
    X = unit(np.concatenate([base, base[:15] + 0.2 * rng.normal(size=(15, 16)), base[:5]]))
    X = X[rng.permutation(len(X))]
    dropped, kept, cos = find_duplicates(X, cosine=0.9, chunk=chunk)
    want = reference(X, 0.9)
    assert list(zip(dropped.tolist(), kept.tolist(), strict=True)) == [(d, k) for d, k, _ in want]
    assert np.allclose(cos, [c for _, _, c in want], atol=1e-6)
    assert len(want) >= 5  # the exact copies at least


def test_rank_order_is_the_selections_score_desc_nan_last_ties_by_id():
    assert rank_order(np.array([1.0, np.nan, 2.0, 1.0]), ["d", "a", "c", "b"]).tolist() == [2, 3, 0, 1]


def test_a_cluster_keeps_the_higher_score_of_a_pair_whatever_the_row_order():
    X = unit([[1, 0], [1, 0.01], [0, 1]])
    group = pa.table({C.ID: ["low", "high", "other"], C.INSTRUCTION: ["a", "a!", "b"], C.SCORE: [0.1, 0.9, 0.5],
                      C.CLUSTER: [3, 3, 3], C.EMBEDDING: list(X)})
    out = dedup_group(group, cosine=0.95, chunk=2).to_pylist()
    assert out == [{C.CLUSTER: 3, "kept_id": "high", "dropped_id": "low", "cosine": 1.0,
                    "kept_instruction": "a!", "dropped_instruction": "a"}]


def test_config_checks():
    assert build(DedupConfig, {}, file="t").enabled is False
    with pytest.raises(ConfigError, match="t: cosine: must be in"):
        build(DedupConfig, {"cosine": 0}, file="t")
