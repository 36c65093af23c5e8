"""Scores, equal quota per cluster, remainder rule, ties (pure)."""

import numpy as np
import pytest

from crowdselect.core import columns as C
from crowdselect.select.selection import (
    combined_score,
    global_select,
    quota_select,
    random_score,
    strategy_score,
    top_per_cluster,
)


def test_combined_score_paper_weights():
    q = {C.DIFFICULTY: np.array([0.5]), C.SEPARABILITY: np.array([0.25]), C.STABILITY: np.array([1.0])}
    assert combined_score(q, [1, 1, 2], True)[0] == pytest.approx(2.75)
    assert combined_score(q, [1, 1, 2], False)[0] == pytest.approx(0.75)


def test_equal_quota_and_remainder_goes_by_score():
    # cluster 0 has 1 row (< quota 2): it gives it; the missing row is the best remaining row anywhere.
    scores = np.array([0.1, 0.9, 0.8, 0.7, 0.6, 0.95, 0.2])
    ids = np.array(list("abcdefg"))
    clusters = np.array([0, 1, 1, 1, 2, 2, 2])
    sel = quota_select(scores, ids, clusters, k=6, n_clusters=3)
    assert sorted(ids[sel]) == sorted(["a", "b", "c", "e", "f", "d"])
    assert len(sel) == 6


def test_k_not_divisible_and_exact_count():
    rng = np.random.default_rng(0)
    scores = rng.random(100)
    ids = np.array([f"{i:03d}" for i in range(100)])
    clusters = rng.integers(0, 7, size=100)
    sel = quota_select(scores, ids, clusters, k=23, n_clusters=7)
    assert len(sel) == 23 and len(set(sel)) == 23
    for c in range(7):  # every cluster gets at least its quota of 3 (all have >= 3 rows here)
        assert (clusters[sel] == c).sum() >= min(3, (clusters == c).sum())


def test_ties_break_by_id_not_position():
    scores = np.array([1.0, 1.0, 1.0])
    ids = np.array(["z", "b", "m"])
    assert ids[global_select(scores, ids, 2)].tolist() == ["b", "m"]


def test_nan_scores_rank_last():
    scores = np.array([np.nan, 0.1, 0.2])
    ids = np.array(["a", "b", "c"])
    assert ids[global_select(scores, ids, 3)].tolist() == ["c", "b", "a"]


def test_candidates_per_block_give_the_same_selection_as_the_whole_pool():
    rng = np.random.default_rng(3)
    n, k, nc = 2000, 50, 5
    scores = rng.random(n)
    ids = np.array([f"id{i:05d}" for i in range(n)])
    clusters = rng.integers(0, nc, size=n)
    clusters[:1900] = np.where(clusters[:1900] == 4, 3, clusters[:1900])  # make cluster 4 tiny
    full = set(ids[quota_select(scores, ids, clusters, k, nc)])
    cand = np.concatenate([blk[top_per_cluster(scores[blk], ids[blk], clusters[blk], k)]
                           for blk in np.array_split(np.arange(n), 9)])
    merged = set(ids[cand][quota_select(scores[cand], ids[cand], clusters[cand], k, nc)])
    assert merged == full


def test_strategies_direction_and_random_is_stable_per_id():
    cols = {C.RESPONSE_CHARS: np.array([10.0, 30.0]), C.BEST_REWARD: np.array([0.5, -1.0]),
            C.DIFFICULTY: np.array([1.0, 2.0])}
    kw = dict(ids=["a", "b"], seed=1, weights=[1, 1, 2], use_stability=True)
    assert strategy_score("length-long", cols, **kw).tolist() == [10.0, 30.0]
    assert strategy_score("length-short", cols, **kw).tolist() == [-10.0, -30.0]
    assert strategy_score("reward-bottom", cols, **kw).tolist() == [-0.5, 1.0]
    assert strategy_score("difficulty-top", cols, **kw).tolist() == [1.0, 2.0]
    assert random_score(["a", "b"], 1).tolist() == random_score(["b", "a"], 1)[::-1].tolist()
    assert random_score(["a"], 1)[0] != random_score(["a"], 2)[0]
