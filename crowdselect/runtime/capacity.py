"""What the cluster can hold, node by node, for the stage planner (`crowdselect.pipeline.plan`).

    nodes = cluster_nodes()    # [{"CPU": 96.0, "GPU": 8.0, "accelerator_type:H100": 1.0}, ...] (Ray must be up)

A fixed cluster (a local Ray, `ray start` nodes, a KubeRay cluster without autoscaling): the alive nodes'
resources as Ray reports them (`ray.nodes()`). Under an autoscaler (`ray up` configs, KubeRay with
autoscaling): the largest cluster its config allows, read where Ray Train reads it (the cluster config in
the GCS, `ray._private.state.state`, which `get_max_resources_from_cluster_config` sums): every node type
times its `max_count`. The planner then packs for the cluster the autoscaler may grow to, and the stages'
pending actors are what make it grow. Only the resources a stage can ask for are kept (CPU, GPU,
accelerator types, custom resources), not memory or node ids.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

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


def cluster_nodes() -> list[dict[str, float]]:
    """The nodes to plan for: the autoscaler's largest cluster when it holds more than the alive nodes, else
    the alive nodes (Ray must be initialised)."""
    alive = alive_nodes()
    try:
        from ray._private.state import state

        grown = autoscaler_nodes(state.get_cluster_config())
    except Exception:  # no autoscaler state in this cluster, or a Ray without the call
        grown = []
    return grown if _size(grown) > _size(alive) else alive


def _size(nodes: list[dict[str, float]]) -> tuple[float, float]:
    return sum(n.get("GPU", 0.0) for n in nodes), sum(n.get("CPU", 0.0) for n in nodes)
