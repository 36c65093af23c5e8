"""What the cluster can hold, node by node, for the stage planner (`crowdselect.pipeline.plan`).

    nodes = cluster_nodes()    # [{"CPU": 96.0, "GPU": 8.0, "accelerator_type:H100": 1.0}, ...] (Ray must be up)

A fixed cluster (a local Ray, `ray start` nodes, a KubeRay cluster without autoscaling): the alive nodes'
resources as Ray reports them (`ray.nodes()`). Under an autoscaler (`ray up` configs, KubeRay with
autoscaling): the largest cluster its config allows, read where Ray Train reads it (the cluster config in
the GCS, `ray._private.state.state`, which `get_max_resources_from_cluster_config` sums): every node type
times its `max_count`; on a `ray up` head whose v1 autoscaler reports none, its own config file. Also what
`crowdselect.runtime.cluster` reads to resolve `auto` GPU settings. The planner then packs for the cluster the autoscaler may grow to, and the stages'
pending actors are what make it grow. Only the resources a stage can ask for are kept (CPU, GPU,
accelerator types, custom resources), not memory or node ids.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

BOOTSTRAP_CONFIG = "~/ray_bootstrap_config.yaml"
MAX_NODES_PER_TYPE = 1024  # a node type with no upper bound (max_count -1) counts as this many nodes
NOT_ASKED = ("memory", "object_store_memory", "node:")


def stage_resources(resources: Mapping[str, float]) -> dict[str, float]:
    """The resources a stage can ask for, of one node's dict.

    >>> stage_resources({"CPU": 8.0, "memory": 1e9, "node:10.0.0.1": 1.0, "GPU": 1.0})
    {'CPU': 8.0, 'GPU': 1.0}
    """
    return {k: float(v) for k, v in resources.items() if not k.startswith(NOT_ASKED)}


def autoscaler_nodes(config: Any) -> list[dict[str, float]]:
    """Every node an autoscaler config (`autoscaler_pb2.ClusterConfig`) may run at once; [] without one."""
    nodes: list[dict[str, float]] = []
    for group in getattr(config, "node_group_configs", None) or []:
        count = group.max_count if 0 <= group.max_count <= MAX_NODES_PER_TYPE else MAX_NODES_PER_TYPE
        nodes += [stage_resources(dict(group.resources)) for _ in range(count)]
    return nodes


def alive_nodes() -> list[dict[str, float]]:
    import ray

    return [stage_resources(n.get("Resources", {})) for n in ray.nodes() if n.get("Alive")]


def bootstrap_nodes(path: Path) -> list[dict[str, float]]:
    """Every node a `ray up` config (`~/ray_bootstrap_config.yaml` on the head, the file Ray's monitor is started
    with; Ray Tune reads it too) may run at once: the head type once, each worker type `max_workers` times;
    [] without a readable config. Only node types are read from the file."""
    try:
        cfg = json.loads(path.read_text())  # Ray writes it as JSON (autoscaler/_private/commands.py)
    except (OSError, ValueError):
        return []
    types = cfg.get("available_node_types") if isinstance(cfg, dict) else None
    if not isinstance(types, dict):
        return []
    head = cfg.get("head_node_type")
    nodes: list[dict[str, float]] = []
    for name, node in types.items():
        if not isinstance(node, dict):
            continue
        count = 1 if name == head else node.get("max_workers", cfg.get("max_workers", 0))
        if not isinstance(count, (int, float)) or count <= 0:
            continue
        res = {k: float(v) for k, v in (node.get("resources") or {}).items() if isinstance(v, (int, float))}
        nodes += [stage_resources(res) for _ in range(min(int(count), MAX_NODES_PER_TYPE))]
    return nodes


def grown_nodes() -> list[dict[str, float]]:
    """The largest cluster an autoscaler may grow to, [] when none is known: the node types it reports to Ray
    (the GCS cluster config, what Ray Train and `get_max_resources_from_cluster_config` read), else a `ray up`
    head's own autoscaler config (BOOTSTRAP_CONFIG), which a v1 autoscaler does not report."""
    try:
        from ray._private.state import state

        reported = autoscaler_nodes(state.get_cluster_config())
    except Exception:  # no autoscaler state in this cluster, or a Ray without the call
        reported = []
    return reported or bootstrap_nodes(Path(BOOTSTRAP_CONFIG).expanduser())


def cluster_nodes() -> list[dict[str, float]]:
    """The nodes to plan for: the autoscaler's largest cluster when it holds more than the alive nodes, else
    the alive nodes (Ray must be initialised)."""
    alive, grown = alive_nodes(), grown_nodes()
    return grown if _size(grown) > _size(alive) else alive


def total(nodes: list[dict[str, float]]) -> dict[str, float]:
    """The nodes' resources summed.

    >>> total([{"CPU": 8.0, "GPU": 1.0}, {"CPU": 8.0}])
    {'CPU': 16.0, 'GPU': 1.0}
    """
    out: dict[str, float] = {}
    for n in nodes:
        for k, v in n.items():
            out[k] = out.get(k, 0.0) + v
    return out


def _size(nodes: list[dict[str, float]]) -> tuple[float, float]:
    return sum(n.get("GPU", 0.0) for n in nodes), sum(n.get("CPU", 0.0) for n in nodes)


def request_ahead(bundles: list[Mapping[str, float]]) -> bool:
    """Under an autoscaler (`grown_nodes`), ask it for `bundles` now (`ray.autoscaler.sdk.request_resources`,
    which holds until the next call; [] withdraws the request); returns whether it asked. A fixed cluster is
    left alone. The planner calls it with the running stages and the next wave, so GPU nodes, minutes to
    boot, come up before the stages that need them start."""
    if not grown_nodes():
        return False
    from ray.autoscaler.sdk import request_resources

    request_resources(bundles=[{k: float(v) for k, v in b.items()} for b in bundles])
    return True
