"""Wiring of the scoring stages into Ray Data: RewardSpec -> (stage class, constructor kwargs, map_batches kwargs).

Algorithm settings go to the stage's constructor (`fn_constructor_kwargs`); Ray's scheduling settings
(actor pool size, GPUs, CPUs, accelerator type) to `map_batches`, through `crowdselect.runtime.resources` so that an
autoscaling cluster sees the right resource demands. The commands plan every spec for the cluster first; a spec
wired here unplanned (tests, benchmarks) is planned for this machine (`crowdselect.runtime.cluster.planned`).

    ds = add_rewards(ds, spec)                      # long rows (id, instruction, model, response) -> + reward
    cls, ctor, kwargs = reward_stage(spec)          # the same pieces, e.g. for a benchmark
    scorer = build_scorer(spec)                     # an in-process instance: scorer(batch_dict)

A classifier with `backend: vllm` is a `ray.data.llm` processor, not one callable class
(`crowdselect.reward.classifier_vllm`): `add_rewards` wires it, with the same resources and the same output
columns; it has no in-process scorer.
"""

from __future__ import annotations

from typing import Any

from crowdselect.core import columns as C
from crowdselect.reward.config import RewardSpec
from crowdselect.runtime.cluster import planned
from crowdselect.runtime.resources import for_pool


def on_ray_llm(spec: RewardSpec) -> bool:
    """Whether the spec runs as a ray.data.llm processor (a classifier on vLLM) rather than an actor pool."""
    return spec.kind == "classifier" and spec.backend == "vllm"


def stage_class(spec: RewardSpec) -> type:
    if on_ray_llm(spec):
        raise ValueError(f"reward {spec.name!r}: a vllm classifier runs through ray.data.llm; use add_rewards")
    if spec.backend == "dry":
        from crowdselect.reward.dry import DryScorer

        return DryScorer
    if spec.kind == "classifier":
        from crowdselect.reward.classifier import RewardClassifier

        return RewardClassifier
    from crowdselect.reward.judge import JudgeScorer

    return JudgeScorer


def pool_kwargs(spec: RewardSpec) -> dict[str, Any]:
    """map_batches arguments of an actor pool of `spec.resources.concurrency` actors with its resources."""
    from ray.data import ActorPoolStrategy  # late: loading a config must not import Ray

    res = planned(spec).resources
    return {"batch_size": res.batch_size, "compute": ActorPoolStrategy(size=res.concurrency),
            **for_pool(res).replica_options()}


def reward_stage(spec: RewardSpec, output_column: str = C.REWARD) -> tuple[type, dict[str, Any], dict[str, Any]]:
    """(stage class, fn_constructor_kwargs, map_batches kwargs) of a reward model."""
    spec = planned(spec)
    return stage_class(spec), {"spec": spec, "output_column": output_column}, pool_kwargs(spec)


def add_rewards(ds: Any, spec: RewardSpec, output_column: str = C.REWARD) -> Any:
    """Dataset of (instruction, response, ...) rows -> the same rows with reward, reward_error, reward_model."""
    if on_ray_llm(spec):
        from crowdselect.reward.classifier_vllm import build_vllm_rewards

        return build_vllm_rewards(spec, output_column)(ds)
    cls, ctor, kwargs = reward_stage(spec, output_column)
    return ds.map_batches(cls, fn_constructor_kwargs=ctor, **kwargs)


def build_scorer(spec: RewardSpec, output_column: str = C.REWARD) -> Any:
    """The reward stage as a plain in-process object (tests, benchmarks)."""
    cls, ctor, _ = reward_stage(spec, output_column)
    return cls(**ctor)
