"""Metrics on hand-computed reward matrices (SPEC: difficulty, separability, stability)."""

import numpy as np
import pytest
from scipy.stats import spearmanr

from crowdselect.select import metrics as M

NAN = np.nan


def test_difficulty_and_separability_by_hand():
    r = np.array([[1.0, 2.0, 3.0], [4.0, NAN, 6.0]])
    assert M.difficulty(r).tolist() == [-2.0, -5.0]
    # population variance: row 0 -> ((1-2)^2 + 0 + (3-2)^2) / 3 = 2/3; row 1 -> (1 + 1) / 2 = 1
    assert M.separability(r) == pytest.approx([2 / 3, 1.0])


def test_stability_single_family_matches_scipy_and_sign():
    sizes = [1.0, 7.0, 70.0]
    fam = ["q", "q", "q"]
    r = np.array([[0.1, 0.5, 0.9],  # bigger is better -> +1
                  [0.9, 0.5, 0.1],  # bigger is worse -> -1
                  [0.2, 0.9, 0.5]])  # ranks (1,3,2) vs (1,2,3): rho = 0.5
    got = M.stability(r, fam, sizes)
    assert got == pytest.approx([1.0, -1.0, 0.5])
    for i in range(3):
        assert got[i] == pytest.approx(spearmanr(r[i], sizes).statistic)


def test_stability_ties_use_average_ranks():
    r = np.array([[0.5, 0.5, 0.9]])
    # ranks (1.5, 1.5, 3) vs (1, 2, 3): pearson = 0.8660...
    assert M.stability(r, ["a"] * 3, [1, 2, 3])[0] == pytest.approx(np.sqrt(3) / 2)


def test_two_member_family_gives_plus_minus_one_and_mean_over_families():
    fam = ["a", "a", "b", "b", "b"]
    sizes = [1, 2, 1, 2, 3]
    r = np.array([[1.0, 0.0, 0.1, 0.2, 0.3]])  # family a: -1, family b: +1 -> mean 0
    assert M.stability(r, fam, sizes)[0] == pytest.approx(0.0)
    r2 = np.array([[0.0, 1.0, 0.1, 0.2, 0.3]])
    assert M.stability(r2, fam, sizes)[0] == pytest.approx(1.0)


def test_family_missing_a_member():
    fam = ["a", "a", "a", "b", "b"]
    sizes = [1, 2, 3, 1, 2]
    # family a answered by sizes 1 and 3 only -> +1 on two members; family b has one answer -> left out
    r = np.array([[0.1, NAN, 0.9, 0.5, NAN]])
    assert M.stability(r, fam, sizes)[0] == pytest.approx(1.0)
    # no family with two answers -> undefined (NaN), not a number made up
    r = np.array([[0.1, NAN, NAN, 0.5, NAN]])
    assert np.isnan(M.stability(r, fam, sizes)[0])


def test_nan_rewards_are_ignored_by_every_metric():
    r = np.array([[NAN, 1.0, 3.0, NAN]])
    assert M.difficulty(r)[0] == -2.0
    assert M.separability(r)[0] == 1.0
    assert M.stability(r, ["f"] * 4, [1, 2, 3, 4])[0] == pytest.approx(1.0)


def test_all_tied_family_is_undefined_and_no_siblings_at_all():
    assert np.isnan(M.stability(np.array([[0.3, 0.3]]), ["a", "a"], [1, 2])[0])
    out = M.stability(np.ones((4, 3)), ["a", "b", "c"], [1, 2, 3])
    assert np.isnan(out).all()
    assert not M.has_sized_families(["a", "b", "c"], [1, 2, 3]) and M.has_sized_families(["a", "b", "a"], [1, 2, 3])
    assert not M.has_sized_families(["a", "b", "a"], [7, 2, 7])  # siblings of one size: no size signal
    assert M.one_size_families(["a", "b", "a", "c", "c"], [7, 2, 7, 1, 3]) == {"a": 7}


def test_tied_rewards_count_as_zero_when_asked_but_constant_sizes_stay_undefined():
    r = np.array([[0.3, 0.3, 0.9, 0.1], [0.3, 0.3, 0.2, 0.2], [0.5, np.nan, 0.4, 0.6]])
    fam, size = ["a", "a", "b", "b"], [1, 2, 1, 2]
    assert M.stability(r, fam, size, ties="zero").tolist() == [-0.5, 0.0, 1.0]  # mean(0, -1); both tied
    undefined = M.stability(r, fam, size)
    assert undefined[0] == -1.0 and np.isnan(undefined[1]) and undefined[2] == 1.0
    assert np.isnan(M.stability(np.array([[0.3, 0.3]]), ["a", "a"], [1, 1], ties="zero")[0])  # no size signal


def test_reward_matrix_and_best_answer():
    r = M.reward_matrix([["b", "a"], ["c"]], [[0.2, 0.7], [1.0]], ["a", "b", "c"])
    assert np.array_equal(r, np.array([[0.7, 0.2, NAN], [NAN, NAN, 1.0]]), equal_nan=True)
    assert M.best_answer(r).tolist() == [0, 2]
    assert M.best_answer(np.array([[0.5, 0.5]])).tolist() == [0]  # ties: first generator in config order
