"""What the cluster offers model stages, read once at plan time, and the plan that follows from it.

    cfg = plan_for_cluster(cfg)      # Ray up: every spec's auto resources resolved for this cluster, logged
    cfg = plan_for_cluster(cfg, local=True)   # the in-process executor: for this machine
    spec = planned(spec)             # a spec wired without a plan (tests, benchmarks): for this machine

`read_cluster()` gives a `resources.Cluster`: the GPUs and accelerator types of the nodes, from (most
complete first)
  1. the node types an autoscaler reports to Ray (the GCS cluster config that
     `ray._private.state.state.get_max_resources_from_cluster_config` sums, what Ray Train's worker group and
     Ray Data's autoscaler read): the most the cluster can grow to;
  2. a `ray up` cluster's own autoscaler config, `~/ray_bootstrap_config.yaml` on the head (the file Ray's
     monitor is started with; Ray Tune reads the same file), when the job's driver runs there, as under
     `ray job submit`: its node types' resources times their `max_workers`;
  (1 and 2 are `crowdselect.runtime.capacity.grown_nodes`, the nodes the stage planner packs for)
  3. the nodes alive now (`ray.cluster_resources()`), plus the head.
`this_machine()` is what a local Ray started here would report (Ray's own GPU detection, no torch import),
so both executors plan the same. A KubeRay cluster (Ray 2.60's in-tree v1 autoscaler) reports neither 1 nor 2 to
its jobs: GPU pods not running yet are not seen, nor that the cluster can grow, so a config meant for them sets
its GPUs (examples/quickstart_gpu.yaml does) and names its vLLM models by hub id or shared folder.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, TypeVar

from crowdselect.core import log
from crowdselect.runtime.capacity import bootstrap_nodes, grown_nodes, total
from crowdselect.runtime.resources import (
    ACCELERATOR_PREFIX,
    Cluster,
    is_planned,
    normalize_accelerator,
    resolve_spec,
    resolve_tree,
)

T = TypeVar("T")


def cluster_from(live: dict[str, float], grow_to: dict[str, float] | None, source: str,
                 autoscaled: bool = False) -> Cluster:
    """A Cluster from Ray resource dicts: `live` (alive nodes) and `grow_to` (the most an autoscaler
    config allows, None when unknown).

    >>> c = cluster_from({"CPU": 4}, {"CPU": 100, "GPU": 32, "accelerator_type:H100": 4}, "autoscaler")
    >>> c.gpus, c.accelerators, c.can_grow
    (32.0, ('H100',), True)
    >>> cluster_from({"CPU": 4, "GPU": 2, "accelerator_type:L4": 1}, None, "live").describe()
    '2 GPUs (L4), live'
    """
    most = dict(live)
    for k, v in (grow_to or {}).items():
        most[k] = max(float(v), float(most.get(k, 0)))
    kinds = sorted({normalize_accelerator(k[len(ACCELERATOR_PREFIX):]) or "" for k, v in most.items()
                    if k.startswith(ACCELERATOR_PREFIX) and v > 0} - {""})
    grows = autoscaled or any(float(v) > float(live.get(k, 0)) for k, v in (grow_to or {}).items())
    return Cluster(gpus=float(most.get("GPU", 0)), accelerators=tuple(kinds), can_grow=grows, source=source)


def read_cluster() -> Cluster:
    """The connected Ray cluster (ray.init done) as a Cluster; see the module docstring for the sources."""
    import ray

    live = {k: float(v) for k, v in ray.cluster_resources().items()}
    autoscaled = _autoscaler_runs()
    grown = grown_nodes()
    if grown:
        return cluster_from(live, total(grown), "the autoscaler's node types", autoscaled)
    return cluster_from(live, None, "the nodes alive now", autoscaled)


def _autoscaler_runs() -> bool:
    """An autoscaler v2 watches this cluster (it sets a flag in the GCS). A v1 autoscaler leaves no such
    mark (every Ray runs a monitor, most with a read-only provider): its node types come from source 2."""
    try:
        from ray.autoscaler.v2.utils import is_autoscaler_v2

        return bool(is_autoscaler_v2(fetch_from_server=True))
    except Exception:  # a private API: no answer counts as no autoscaler
        return False


def bootstrap_max(path: Path) -> dict[str, float] | None:
    """The most of each resource a `ray up` config's node types allow (resources x max_workers, the head type
    once), or None without a readable config (`capacity.bootstrap_nodes`, summed)."""
    nodes = bootstrap_nodes(path)
    return total(nodes) if nodes else None


def this_machine() -> Cluster:
    """This machine's GPUs as a local Ray started here would count them (Ray's accelerator managers)."""
    try:
        from ray._private.accelerators import get_accelerator_manager_for_resource

        gpu = get_accelerator_manager_for_resource("GPU")
        count = float(gpu.get_current_node_num_accelerators() or 0)
        kind = normalize_accelerator(gpu.get_current_node_accelerator_type()) if count else None
    except Exception:  # no answer from the driver probe: plan for CPU
        count, kind = 0.0, None
    return Cluster(gpus=count, accelerators=(kind,) if kind else (), source="this machine")


def plan_for_cluster(cfg: T, local: bool = False, only: tuple[str, ...] | None = None) -> T:
    """`cfg` (a config dataclass) with every auto resource resolved for the cluster (Ray connected) or, with
    `local`, this machine; `only`: just these fields (the specs a command runs). One log line says what was
    read, one per resolved spec what it got. ConfigError naming the key for what cannot run."""
    cluster = this_machine() if local else read_cluster()
    names = only or tuple(f.name for f in dataclasses.fields(cfg))
    planned_cfg = dataclasses.replace(cfg, **{n: resolve_tree(getattr(cfg, n), cluster, n) for n in names})
    log.say(f"resources: planned for {cluster.describe()}")
    for name in names:
        for key, res in _resolved(getattr(cfg, name), getattr(planned_cfg, name), name):
            log.say(f"resources: {key}: {res}")
    return planned_cfg


def _resolved(before: Any, after: Any, key: str = "") -> list[tuple[str, str]]:
    """(dotted key, resolved resources) of each spec whose resources had auto values."""
    if isinstance(before, list):
        return [x for i, (b, a) in enumerate(zip(before, after, strict=True))
                for x in _resolved(b, a, f"{key}[{i}]")]
    if not dataclasses.is_dataclass(before) or isinstance(before, type):
        return []
    out = []
    if not is_planned(before):
        shown = {k: v for k, v in dataclasses.asdict(after.resources).items()
                 if getattr(before.resources, k) != v}
        out.append((key, ", ".join(f"{k} {v:g}" if isinstance(v, float) else f"{k} {v}"
                                              for k, v in shown.items())))
    for f in dataclasses.fields(before):
        if f.name != "resources":
            out += _resolved(getattr(before, f.name), getattr(after, f.name), f"{key}.{f.name}" if key else f.name)
    return out


def planned(spec: T) -> T:
    """`spec` with no auto resource left: as it is when a command planned it, else resolved for this machine
    (a spec built in code and wired directly: tests, benchmarks, notebooks)."""
    return spec if is_planned(spec) else resolve_spec(spec, this_machine())
