"""Distributed k-means against sklearn KMeans (same k, n_init) on the same data."""

import numpy as np
import pytest
from sklearn.cluster import KMeans

from crowdselect.select import kmeans as km


def test_lloyd_partial_by_hand():
    X = np.array([[0.0, 0.0], [0.0, 2.0], [10.0, 0.0]], dtype=np.float32)
    centers = np.array([[[0.0, 1.0], [10.0, 1.0]]])
    sums, counts, inertia = km.lloyd_partial(X, centers)
    assert counts.tolist() == [[2.0, 1.0]]
    assert sums[0].tolist() == [[0.0, 2.0], [10.0, 0.0]]
    assert inertia.tolist() == [3.0]
    assert km.update_centers(sums, counts, centers)[0].tolist() == [[0.0, 1.0], [10.0, 0.0]]


def test_empty_cluster_keeps_its_centre():
    old = np.array([[[0.0], [5.0]]])
    new = km.update_centers(np.array([[[3.0], [0.0]]]), np.array([[3.0, 0.0]]), old)
    assert new.tolist() == [[[1.0], [5.0]]]


def blobs(n, d, k, seed):
    rng = np.random.default_rng(seed)
    centres = rng.normal(scale=3.0, size=(k, d))
    return (centres[rng.integers(0, k, n)] + rng.normal(size=(n, d))).astype(np.float32)


@pytest.mark.parametrize("workers", [0, 1, 3])  # 0: one shard in the driver, no actors
def test_ray_kmeans_inertia_within_1pct_of_sklearn(ray_local, workers):
    import ray

    from crowdselect.select.kmeans_ray import fit_kmeans

    X = blobs(6000, 16, 10, seed=0)
    refs = [ray.put({"embedding": b}) for b in np.array_split(X, 7)]
    ours = fit_kmeans(refs, "embedding", 10, n_init=5, seed=42, workers=workers, progress=False)
    ref = KMeans(10, n_init=5, random_state=42).fit(X)
    assert ours.n_rows == 6000
    assert ours.inertia <= ref.inertia_ * 1.01
    # the reported inertia is the real one of the returned centres
    _, d2 = km.assign(X, ours.centers[None].astype(np.float64))
    assert d2.sum() == pytest.approx(ours.inertia, rel=1e-4)


def test_ray_kmeans_is_deterministic(ray_local):
    import ray

    from crowdselect.select.kmeans_ray import fit_kmeans

    X = blobs(1500, 8, 4, seed=1)
    refs = [ray.put({"e": b}) for b in np.array_split(X, 3)]
    a = fit_kmeans(refs, "e", 4, n_init=3, seed=7, workers=2, progress=False)
    b = fit_kmeans(refs, "e", 4, n_init=3, seed=7, workers=2, progress=False)
    assert np.array_equal(a.centers, b.centers)


def test_in_driver_fit_is_the_one_actor_fit(ray_local):
    """workers=0 runs the same arithmetic as one actor, only without the actor: same clustering."""
    import ray

    from crowdselect.select.kmeans_ray import fit_kmeans

    X = blobs(1200, 8, 5, seed=2)
    refs = [ray.put({"e": b}) for b in np.array_split(X, 4)]
    local = fit_kmeans(refs, "e", 5, n_init=4, seed=3, workers=0, progress=False)
    actor = fit_kmeans(refs, "e", 5, n_init=4, seed=3, workers=1, progress=False)
    assert local.n_iter == actor.n_iter
    np.testing.assert_allclose(local.centers, actor.centers, rtol=1e-5, atol=1e-5)
    assert local.inertia == pytest.approx(actor.inertia, rel=1e-6)
