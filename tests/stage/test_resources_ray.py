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


def test_the_autoscaler_is_asked_ahead_for_the_next_wave_and_released(ray_local, monkeypatch):
    """Under an autoscaler the scheduler's bundles reach Ray's resource-request channel (what the autoscaler
    reads: `ray.autoscaler.sdk.request_resources`); a fixed cluster is left alone."""
    import json

    from ray.autoscaler._private.constants import AUTOSCALER_RESOURCE_REQUEST_CHANNEL
    from ray.experimental.internal_kv import _internal_kv_del, _internal_kv_get

    from crowdselect.pipeline.plan import Scheduler, StageRequest
    from crowdselect.runtime import capacity

    _internal_kv_del(AUTOSCALER_RESOURCE_REQUEST_CHANNEL)
    assert not capacity.request_ahead([{"GPU": 1.0}])  # the local Ray has no autoscaler
    assert _internal_kv_get(AUTOSCALER_RESOURCE_REQUEST_CHANNEL) is None
    monkeypatch.setattr(capacity, "grown_nodes", lambda: [{"CPU": 96.0, "GPU": 8.0}] * 4)
    sched = Scheduler([StageRequest("generate:a", 2, {"CPU": 4, "GPU": 8}), StageRequest("generate:b", 4, {"GPU": 1}),
                       StageRequest("reward:r", 2, {"GPU": 1}, after=("generate:a", "generate:b"))],
                      [{"CPU": 96.0, "GPU": 8.0}] * 2)
    sched.next_stages()
    assert capacity.request_ahead(sched.ahead())
    asked = json.loads(_internal_kv_get(AUTOSCALER_RESOURCE_REQUEST_CHANNEL))
    assert asked == [{"CPU": 4.0, "GPU": 8.0}] * 2 + [{"GPU": 1.0}] * 4  # running a, and b of the next wave
    assert capacity.request_ahead([]) and json.loads(_internal_kv_get(AUTOSCALER_RESOURCE_REQUEST_CHANNEL)) == []
