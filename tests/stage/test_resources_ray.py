"""crowdselect.runtime.resources' requests accepted by a real local Ray (the pure part: tests/unit/test_resources.py);
and the cluster read at plan time, on a real local Ray."""

from crowdselect.runtime import resources as R


def test_ray_data_accepts_the_kwargs(ray_local):
    """The kwargs go straight into a real map_batches over an actor pool."""
    import ray

    class Double:
        def __call__(self, batch):
            return {"id": batch["id"] * 2}

    res = R.for_actor_pool(replicas=2, num_cpus=1)
    out = ray.data.range(20).map_batches(Double, batch_size=5, **res.map_batches_kwargs()).take_all()
    assert sorted(r["id"] for r in out) == [2 * i for i in range(20)]


def test_the_plan_reads_the_local_cluster(ray_local):
    from crowdselect.runtime.cluster import read_cluster, this_machine

    cluster = read_cluster()
    assert cluster.gpus == this_machine().gpus and not cluster.can_grow  # `ray start` alone: no autoscaler
    assert cluster.source == "the nodes alive now"

