"""crowdselect.runtime.resources' requests accepted by a real local Ray (the pure part: tests/unit/test_resources.py);
the cluster read at plan time, and `pkg:` models put on every node before a vLLM stage, on a real local Ray."""

import pytest

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


def test_pkg_models_are_put_on_every_node_before_a_vllm_stage(ray_local):
    """ray.data.llm hands one model path to tasks on any node: a `pkg:` model is converted on each node
    first (here the one node), and refused where a node could join after that."""
    from crowdselect.core.errors import UserError
    from crowdselect.runtime.models import resolve_model
    from crowdselect.runtime.node_models import on_every_node

    assert on_every_node("Qwen/Qwen2.5-0.5B-Instruct", "generator g") == "Qwen/Qwen2.5-0.5B-Instruct"
    assert on_every_node("pkg:smollm2-135m-instruct", "generator g") == resolve_model("pkg:smollm2-135m-instruct")
    with pytest.raises(UserError, match="generator g: pkg:smollm2-135m-instruct with vLLM on a cluster whose "
                                        "autoscaler can add nodes.*backend: hf"):
        on_every_node("pkg:smollm2-135m-instruct", "generator g", R.Cluster(can_grow=True))
