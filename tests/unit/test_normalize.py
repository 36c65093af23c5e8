"""Quantile normalisation from the sketch against sklearn's QuantileTransformer."""

import numpy as np
import pytest
from sklearn.preprocessing import QuantileTransformer

from crowdselect.select.normalize import QuantileSketch, fit_quantiles, merge_all, quantile_transform


def sklearn_uniform(x):
    qt = QuantileTransformer(n_quantiles=min(len(x), 1000), output_distribution="uniform", subsample=None)
    return qt.fit_transform(x.reshape(-1, 1))[:, 0]


def sketch_transform(x, n_blocks, capacity=65536):
    blocks = np.array_split(x, n_blocks)
    sk = merge_all([QuantileSketch.of(b, capacity) for b in blocks])
    qs, refs = fit_quantiles(sk, len(x), 1000)
    return quantile_transform(x, qs, refs)


@pytest.mark.parametrize("n", [7, 300, 5000])
def test_exact_below_capacity_matches_sklearn(n):
    rng = np.random.default_rng(0)
    x = rng.normal(size=n)
    assert np.allclose(sketch_transform(x, 5), sklearn_uniform(x), atol=1e-12)


def test_ties_and_repeated_values_match_sklearn():
    x = np.repeat(np.array([0.0, 1.0, 1.0, 2.0, 5.0]), 40)
    np.random.default_rng(1).shuffle(x)
    assert np.allclose(sketch_transform(x, 3), sklearn_uniform(x), atol=1e-12)


@pytest.mark.parametrize("n", [149, 150, 301])
def test_ties_on_means_of_integer_ratings_match_sklearn_to_the_bit(n):
    """Ties whose value sklearn's percentile lands on only up to a rounding bit (-0.4999999999999976 for
    -0.5): the transform must put the tie run where sklearn does (it was 0.5/(n-1) off)."""
    x = np.random.default_rng(3).integers(-3, 4, size=(n, 3)).mean(axis=1)
    assert np.allclose(sketch_transform(x, 4), sklearn_uniform(x), atol=1e-12)


def test_compressed_sketch_within_1e3_of_sklearn():
    rng = np.random.default_rng(2)
    x = np.concatenate([rng.lognormal(size=150_000), rng.normal(5, 0.1, size=50_000)])
    rng.shuffle(x)
    got = sketch_transform(x, 40, capacity=4096)  # forces compression at every merge
    assert np.max(np.abs(got - sklearn_uniform(x))) < 1e-3


def test_nan_stays_nan_and_is_left_out_of_quantiles():
    x = np.array([np.nan, 1.0, 2.0, 3.0, np.nan])
    got = sketch_transform(x, 2)
    assert np.isnan(got[[0, 4]]).all()
    assert got[1:4].tolist() == [0.0, 0.5, 1.0]


def test_sketch_roundtrip_dict():
    sk = QuantileSketch.of(np.arange(10.0), 4)
    back = QuantileSketch.from_dict(sk.to_dict())
    assert back.count == 10 and np.allclose(back.percentile(np.array([0, 1])), [0, 9])
