"""`pkg:` models for a stage that hands one path to tasks on many nodes (ray.data.llm's `model_source`).

A `pkg:` alias resolves to a folder in the cache of the node that asks (`crowdselect.runtime.models`),
converted there on first use. Stages whose actors load the model themselves (the HF generator, reward models,
judges, baselines, the embedder, the eval, the training workers) are given the alias and resolve it on their
own node. ray.data.llm instead gives its chat-template, tokenize, engine and detokenize stages one
`model_source`, wherever Ray places them, so `on_every_node(name)` converts the model first on every alive
node that can run tasks (one task per node, pinned with `NodeAffinitySchedulingStrategy(soft=False)`) and
returns the folder, which must be the same path on all of them. Where that cannot be guaranteed it refuses
with what to do instead: a cluster whose autoscaler may add nodes after the conversion (they would lack the
folder), or nodes whose caches sit at different paths. Hub ids and folders pass through untouched.
"""

from __future__ import annotations

from crowdselect.core.errors import UserError
from crowdselect.runtime.models import PREFIX, resolve_model
from crowdselect.runtime.resources import Cluster

INSTEAD = ("name the model by its hub id or a folder every node can read, or use backend: hf (its actors "
           "convert a pkg: model on their own node)")


def _resolve_here(name: str) -> tuple[str, str]:
    """(this node's id, the model's folder on it), converting it into this node's cache if needed."""
    import ray

    return ray.get_runtime_context().get_node_id(), resolve_model(name)


def task_nodes() -> list[dict]:
    """Alive nodes that can run tasks (some CPU or GPU): the ones a stage's tasks and actors may land on."""
    import ray

    return [n for n in ray.nodes() if n.get("Alive") and
            (n["Resources"].get("CPU", 0) > 0 or n["Resources"].get("GPU", 0) > 0)]


def on_every_node(name: str, stage: str, cluster: Cluster | None = None) -> str:
    """`name` as one path valid on every node that may run `stage`'s tasks (see the module docstring);
    `cluster` defaults to the connected one (`crowdselect.runtime.cluster.read_cluster`)."""
    if not name.startswith(PREFIX):
        return name
    if cluster is None:
        from crowdselect.runtime.cluster import read_cluster

        cluster = read_cluster()
    if cluster.can_grow:
        raise UserError(f"{stage}: {name} with vLLM on a cluster whose autoscaler can add nodes: a node that joins "
                        f"after the model is converted would not have it; {INSTEAD}")
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    task = ray.remote(_resolve_here)
    nodes = task_nodes()
    if not nodes:
        raise UserError(f"{stage}: no alive node has a CPU or GPU to run it")
    refs = [task.options(num_cpus=min(1.0, n["Resources"].get("CPU", 0)), scheduling_strategy=(
        NodeAffinitySchedulingStrategy(n["NodeID"], soft=False))).remote(name) for n in nodes]
    found = dict(ray.get(refs))
    paths = sorted(set(found.values()))
    if len(paths) != 1:
        where = "; ".join(f"{p} on node {n[:8]}" for n, p in sorted(found.items()))
        raise UserError(f"{stage}: {name} is converted into a different folder on each node ({where}), and vLLM "
                        "is given one path for all of them; give every node the same CROWDSELECT_CACHE, or "
                        f"{INSTEAD}")
    return paths[0]
