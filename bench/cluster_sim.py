"""The scaling curve: the paper's crowd replayed on N nodes of 8 x H100, one stage after another vs packed.

    .venv/bin/python bench/cluster_sim.py                           # N = 1, 2, 4, 8, 16: the table
    .venv/bin/python bench/cluster_sim.py --plot docs/scaling_curve.png --json runs/cluster_sim.json

The workload is docs/scaling.md's: 100K instructions answered by the paper's 19 generators (vLLM, FP8 for
70B and up, `max_tokens` 1024 of which ~500 are used) and scored by one 8B reward model, then embed + select
(6 minutes on CPU). The replay is `crowdselect run --plan`'s own: the run config below goes through
`pipeline.waves.stage_requests` / `stage_work` (requests from `runtime.resources`, times from the model of
`pipeline.estimate`: start-up + rows / rate, docs/scaling.md's figures) and `pipeline.plan.simulate` (the
scheduler the run uses). No second packing algorithm, no second throughput table.

- one after another (`schedule: sequential`): every stage sized to the whole cluster (`replicas` = 8N / GPUs
  per replica), as docs/scaling.md's wall-time table assumes.
- packed (`schedule: packed`): every generator given the fewest replicas that end it within a common time T
  (`sized_for`), for the T whose plan ends first (`best_packed`: a log grid from 10 minutes, where every
  stage gets the whole cluster as one after another does, to 100 hours, one replica each); the planner packs
  them and starts each as soon as there is room, so their start-ups overlap. The reward model is sized by
  the same rule and streams (it starts once every generator has started and there is room, and ends no
  sooner than the last generator), or gets the whole cluster after them, whichever plan ends first. Sizing is what a user does with `--plan`'s two estimates in hand; the
  packing and the scheduling are the planner's.

Speed-up is against one node one after another; efficiency = speed-up / N. Estimates, not measurements:
no GPU has run this (docs/scaling.md says which figures to replace once one has).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from crowdselect.core.config import build  # noqa: E402
from crowdselect.pipeline.config import RunConfig  # noqa: E402
from crowdselect.pipeline.plan import StageRequest, simulate  # noqa: E402
from crowdselect.pipeline.waves import stage_requests, stage_work  # noqa: E402

INSTRUCTIONS = 100_000
GPUS_PER_NODE = 8
NODE = {"CPU": 192.0, "GPU": float(GPUS_PER_NODE), "accelerator_type:H100": 1.0}  # p5.48xlarge
GRID = 120  # sizings tried per cluster size (bench: best_packed)
SELECT_S = 360.0  # embed + select on CPU after the reward stage (docs/scaling.md)
REWARD = "reward:skywork-8b"
# the paper's 19 generators: (name, family, size in B, GPUs per replica = tensor parallel size)
CROWD = [("gemma-2-2b", "gemma-2", 2, 1), ("gemma-2-9b", "gemma-2", 9, 1), ("gemma-2-27b", "gemma-2", 27, 2),
         ("llama-3-8b", "llama-3", 8, 1), ("llama-3-70b", "llama-3", 70, 2), ("llama-3.1-8b", "llama-3.1", 8, 1),
         ("llama-3.1-70b", "llama-3.1", 70, 2), ("llama-3.1-405b", "llama-3.1", 405, 8),
         ("phi-3-mini", "phi-3", 3.8, 1), ("phi-3-small", "phi-3", 7, 1), ("phi-3-medium", "phi-3", 14, 1),
         ("qwen2-1.5b", "qwen2", 1.5, 1), ("qwen2-7b", "qwen2", 7, 1), ("qwen2-72b", "qwen2", 72, 2),
         ("qwen2.5-3b", "qwen2.5", 3, 1), ("qwen2.5-7b", "qwen2.5", 7, 1), ("qwen2.5-14b", "qwen2.5", 14, 1),
         ("qwen2.5-32b", "qwen2.5", 32, 2), ("qwen2.5-72b", "qwen2.5", 72, 2)]


def run_config(replicas: dict[str, int], reward_replicas: int, schedule: str) -> RunConfig:
    """The paper's crowd as a `crowdselect run` config, with the given replicas per generator."""
    gens = [{"name": n, "family": f, "size_b": s, "model": f"hub/{n}", "backend": "vllm", "max_tokens": 1024,
             "tensor_parallel_size": g, "resources": {"replicas": replicas[n], "gpus_per_replica": g,
                                                      "accelerator_type": "H100"}}
            for n, f, s, g in CROWD]
    rewards = [{"name": "skywork-8b", "model": "Skywork/Skywork-Reward-Llama-3.1-8B-v0.2",
                "resources": {"concurrency": reward_replicas, "num_gpus": 1, "accelerator_type": "H100"}}]
    return build(RunConfig, {"pool": {"path": ["pool.jsonl"]}, "generators": gens, "rewards": rewards,
                             "schedule": schedule, "out": "unused"}, file="cluster_sim")


def sized_for(t: float, work: dict, whole: dict[str, int]) -> dict[str, int]:
    """The fewest replicas that end each stage (`whole`: generator names and REWARD) within `t` seconds,
    start-up included (the whole cluster where none does)."""
    out = {}
    for n in whole:
        w = work[n if n == REWARD else f"generate:{n}"]
        need = math.ceil(w.rows / (w.replica_rows_per_s() * (t - w.startup_s()))) if t > w.startup_s() else whole[n]
        out[n] = max(1, min(whole[n], need))
    return out


def replay(nodes: int, replicas: dict[str, int], packed: bool) -> dict:
    """Wall time (s) and per-stage (start, end) of the crowd on `nodes` nodes with these replicas (REWARD:
    the reward model's; the whole cluster when absent)."""
    cfg = run_config(replicas, replicas.get(REWARD, nodes * GPUS_PER_NODE), "packed" if packed else "sequential")
    requests = stage_requests(cfg)
    seconds = {name: w.seconds() for name, w in stage_work(cfg, INSTRUCTIONS).items()}
    requests.append(StageRequest("select", 1, {"CPU": 1.0}, tuple(r.name for r in requests)))
    seconds["select"] = SELECT_S
    times = simulate(requests, [dict(NODE) for _ in range(nodes)], seconds, side_by_side=packed)
    return {"wall_s": max(end for _, end in times.values()), "replicas": replicas, "times": times}


def best_packed(nodes: int) -> dict:
    """The packed replay with the best wall time over the sizings `sized_for(T)`, T from 10 minutes to 100 h
    (log grid): small T gives every stage the whole cluster, large T one replica each."""
    whole = {n: nodes * GPUS_PER_NODE // g for n, _, _, g in CROWD} | {REWARD: nodes * GPUS_PER_NODE}
    work = stage_work(run_config(dict.fromkeys(whole, 1), 1, "packed"), INSTRUCTIONS)
    grid = [600 * 600 ** (i / GRID) for i in range(GRID + 1)]
    sizings = [sized_for(t, work, whole) for t in grid]
    sizings += [{**r, REWARD: whole[REWARD]} for r in sizings]  # or the reward on the whole cluster, after them
    return min((replay(nodes, r, packed=True) for r in sizings), key=lambda r: r["wall_s"])


def curve(node_counts: list[int]) -> list[dict]:
    base = None
    rows = []
    for n in node_counts:
        seq = replay(n, {name: n * GPUS_PER_NODE // g for name, _, _, g in CROWD}, packed=False)
        pack = best_packed(n)
        base = base or replay(1, {name: GPUS_PER_NODE // g for name, _, _, g in CROWD}, packed=False)["wall_s"]
        row = {"nodes": n, "gpus": n * GPUS_PER_NODE}
        for key, r in (("sequential", seq), ("packed", pack)):
            speed = base / r["wall_s"]
            row[key] = {"wall_h": r["wall_s"] / 3600, "speedup": speed, "efficiency": speed / n,
                        "gpu_hours_billed": r["wall_s"] / 3600 * n * GPUS_PER_NODE, "replicas": r["replicas"]}
        rows.append(row)
    return rows


def table(rows: list[dict]) -> str:
    lines = ["| nodes (GPUs) | one after another: wall | speed-up | efficiency | packed: wall | speed-up | "
             "efficiency | GPU-hours billed (seq / packed) |", "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        s, p = r["sequential"], r["packed"]
        lines.append(f"| {r['nodes']} ({r['gpus']}) | {s['wall_h']:.1f} h | {s['speedup']:.1f}x | {s['efficiency']:.0%} "
                     f"| {p['wall_h']:.1f} h | {p['speedup']:.1f}x | {p['efficiency']:.0%} "
                     f"| {s['gpu_hours_billed']:.0f} / {p['gpu_hours_billed']:.0f} |")
    return "\n".join(lines)


def plot(rows: list[dict], path: Path) -> None:
    from crowdselect.report.figures import png_bytes, pyplot

    plt = pyplot()
    fig, ax = plt.subplots(figsize=(5.5, 3.6))
    nodes = [r["nodes"] for r in rows]
    ax.plot(nodes, nodes, ":", color="#9aa7b8", label="linear")
    ax.plot(nodes, [r["sequential"]["speedup"] for r in rows], "o-", color="#4c6a92", label="one after another")
    ax.plot(nodes, [r["packed"]["speedup"] for r in rows], "s-", color="#c8553d", label="packed")
    ax.set_xscale("log", base=2)
    ax.set_yscale("log", base=2)
    ax.set_xticks(nodes, [str(n) for n in nodes])
    ax.set_yticks(nodes, [str(n) for n in nodes])
    ax.set_xlabel("nodes of 8 x H100")
    ax.set_ylabel("speed-up vs 1 node")
    ax.set_title("100K x 19 generators + 8B reward model (estimate)", fontsize=9)
    ax.legend(fontsize=8)
    path.write_bytes(png_bytes(fig, dpi=110))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--nodes", type=int, nargs="+", default=[1, 2, 4, 8, 16])
    p.add_argument("--plot", type=Path, help="write the speed-up curves as a PNG")
    p.add_argument("--json", type=Path, help="write the rows as JSON")
    args = p.parse_args(argv)
    rows = curve(args.nodes)
    print(table(rows))
    if args.plot:
        plot(rows, args.plot)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
