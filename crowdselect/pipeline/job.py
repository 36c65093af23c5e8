"""`crowdselect run CONFIG.yaml [--out DIR] [--plan] [key=value ...]`: the whole CrowdSelect pipeline, resumable.

    ingest → generate (one sub-stage per generator) → reward (one per reward model) → crowd
           → select (metrics, embed, cluster, quota: `crowdselect.select.job.run_select`) → train (optional)

The generate and reward stages run side by side where the cluster holds them together
(`crowdselect.pipeline.waves`); `--plan` prints the waves and estimated times and exits before any work.

Every stage writes under DIR/<stage>/ with a manifest (`crowdselect.pipeline.store`); rerunning the same command
skips finished stages and shards, so a killed driver resumes where it stopped and ends with the result an
uninterrupted run gives. DIR/config.yaml holds the resolved config, DIR/run.json the lineage of the run
(generators with model, revision and sampling; reward models; counts per stage; where the selection is).
"""

from __future__ import annotations

import math
import os
from dataclasses import replace

import yaml

from crowdselect.core import jsonout, log, storage
from crowdselect.core.config import to_dict
from crowdselect.core.paths import OutDirLock, check_inputs, check_out_dir, remove_outputs
from crowdselect.core.secrets import scrub_config
from crowdselect.core.text import printable
from crowdselect.crowd.config import InputConfig
from crowdselect.pipeline.collect import workers_write
from crowdselect.pipeline.config import RunConfig, load_run_config, train_config
from crowdselect.pipeline.stages import build_crowd, ingest, output_settings, pool_size
from crowdselect.pipeline.store import StageStore
from crowdselect.pipeline.waves import StageClock, plan_text, run_model_stages
from crowdselect.report.html import REPORT, write_report
from crowdselect.runtime.capacity import cluster_nodes
from crowdselect.runtime.cluster import plan_for_cluster
from crowdselect.runtime.ray_setup import configure_data, ensure_ray
from crowdselect.runtime.resources import plan_run
from crowdselect.select.card import CardConfig
from crowdselect.select.config import SelectConfig, check_embedder_weights, needs_embeddings
from crowdselect.select.decontaminate import load_eval_texts


def main(config_path: str, out: str | None = None, overrides: list[str] | None = None, plan: bool = False) -> int:
    """Run (or resume) the pipeline of `config_path`; returns the exit code. User errors raise UserError.

    The config and DIR are checked before any work; DIR is locked for this run (a second run refuses).
    `plan`: print the stage plan (`waves.plan_text`) and return, writing nothing."""
    cfg = load_run_config(config_path, out, overrides)
    resource_plan(cfg)  # a resource setting Ray would refuse fails now, not after generation
    check_out_dir(cfg.out)
    check_inputs(cfg.pool.path, flag="pool.path")
    if plan:
        return show_plan(cfg)
    if needs_embeddings(cfg):
        check_embedder_weights(cfg.embedder)  # here, not after hours of generation
    if cfg.decontaminate.active:
        load_eval_texts(cfg.decontaminate.against)  # a bad question file fails now, not after generation
    with OutDirLock(cfg.out):
        return run_pipeline(cfg, config_path)


# the run's own summaries, rewritten at its end: a rerun removes the old ones first, so a rerun that fails
# leaves no report or lineage of an earlier run beside its partial stages (the stages resume on their own)
OWNED_OUTPUTS = ("run.json", REPORT)


def run_pipeline(cfg: RunConfig, config_path: str) -> int:
    storage.makedirs(cfg.out)
    remove_outputs(cfg.out, OWNED_OUTPUTS)
    storage.write_text(storage.join(cfg.out, "config.yaml"), yaml.safe_dump(scrub_config(to_dict(cfg)), sort_keys=False))
    times: dict[str, float] = {}
    clock = StageClock(times)

    pool = clock.run("ingest", ingest, cfg, cfg.out)
    log.say(f"pool: {sum(map(len, pool.shards.values()))} instructions in {len(pool.shards)} shard(s)")
    ensure_ray(cfg.ray.address, local_cpus(cfg), cfg.ray.temp_dir)  # after ingest: bad rows fail fast
    cfg = plan_for_cluster(cfg)  # auto GPUs and batch sizes from the cluster, once; run.json records them
    demand = resource_plan(cfg)  # the planned GPUs of the embedder and training, for run.json's stages
    _quiet_ray_data(cfg.progress)
    gens, rewards = run_model_stages(cfg, pool, clock, cluster_nodes())
    crowd, excluded = clock.run("crowd", build_crowd, pool, gens, rewards[cfg.metric_reward], cfg.out)
    select_dir = clock.run("select", select, cfg, crowd, config_path, gpus=demand["embed"].get("GPU", 0.0))
    trained = None
    if cfg.train is not None:
        trained = clock.run("train", train, cfg, config_path, gpus=demand["train"].get("GPU", 0.0))
    summary = write_run_json(cfg, pool, gens, rewards, crowd, excluded, select_dir, times, trained, clock.to_json())
    write_report(cfg.out)
    print_summary(summary)
    return 0


def show_plan(cfg: RunConfig) -> int:
    """Print the stage plan for this config on the cluster it would use (Ray is started or joined to read the
    nodes; nothing is written)."""
    rows = pool_size(cfg, cfg.out)
    ensure_ray(cfg.ray.address, local_cpus(cfg), cfg.ray.temp_dir)
    cfg = plan_for_cluster(cfg)  # the auto GPUs a run would get here
    print(printable(plan_text(cfg, rows, cluster_nodes())), flush=True)
    return 0


def local_cpus(cfg: RunConfig) -> int | None:
    """CPUs of a local Ray: the config's, else the machine's but at least one more than the largest actor asks.

    A model actor that holds every CPU (e.g. `num_cpus: 2` on a 2-core laptop, to give torch two threads)
    would leave none for the Ray Data tasks that feed it, and the stage would wait forever.
    """
    if cfg.ray.num_cpus is not None:
        return cfg.ray.num_cpus
    largest = max([g.resources.num_cpus for g in cfg.generators] + [r.resources.num_cpus for r in cfg.rewards], default=1.0)
    cores = os.cpu_count() or 1
    return cores if cores > largest else int(math.ceil(largest)) + 1


def _quiet_ray_data(progress: bool) -> None:
    """Our own per-stage bars show progress; Ray Data's per-operator bars only when asked for."""
    import ray

    configure_data(preserve_order=True)
    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = ctx.enable_progress_bars and progress and not _is_test()


def _is_test() -> bool:
    import os

    return os.environ.get("RAY_DATA_DISABLE_PROGRESS_BARS") == "1"


def select(cfg: RunConfig, crowd: StageStore, config_path: str) -> str:
    """Run the selection engine on the crowd table (skipped when done with the same settings and crowd)."""
    from crowdselect.select.job import run_select

    out = storage.join(cfg.out, "select")
    card = selection_card(cfg)
    settings = {"selection": to_dict(cfg.selection), "embedder": output_settings(cfg.embedder),
                "crowd": crowd.version, "generators": [[g.name, g.family, g.size_b] for g in cfg.generators],
                "decontaminate": to_dict(cfg.decontaminate), "card": to_dict(card)}
    done = StageStore.open(out, settings, redo_on_change=True)
    if done.complete:
        log.say("select: already done with these settings, kept")
        return out
    select_cfg = SelectConfig(generators=cfg.generators,
                              input=InputConfig(path=[crowd.uri], format="canonical", on_bad_rows="fail"),
                              selection=cfg.selection, embedder=cfg.embedder, decontaminate=cfg.decontaminate,
                              card=card, ray=cfg.ray, out=out)
    run_select(select_cfg, config_path=config_path)
    done.mark_complete()
    return out


def selection_card(cfg: RunConfig) -> CardConfig:
    """The run's `card:` with what the run knows filled in: the pool's files and the primary reward model."""
    primary = next(r for r in cfg.rewards if r.name == cfg.metric_reward)
    return replace(cfg.card, pool=cfg.card.pool or ", ".join(cfg.pool.path),
                   reward_model=cfg.card.reward_model or f"{primary.model} ({primary.kind}, reward `{primary.name}`)")


def train(cfg: RunConfig, config_path: str) -> dict:
    """Fine-tune the student on DIR/select/selected.jsonl (the training job resumes from its checkpoints)."""
    from crowdselect.train.job import run_training

    return run_training(train_config(cfg, file=config_path))


def write_run_json(cfg: RunConfig, pool, gens, rewards, crowd, excluded, select_dir: str,
                   times: dict[str, float], trained: dict | None = None, stages: list | None = None) -> dict:
    """DIR/run.json: what this run used and made, tying the selection to every model that fed it."""
    from crowdselect.generate import model_id, sampling_settings

    ing = pool.store.extra
    summary = {
        "out": cfg.out,
        "pool": {"files": ing.get("files"), "instructions": ing.get("rows"), "rejected": ing.get("rejected"),
                 "shards": len(pool.shards)},
        "generators": [{"name": g.name, "family": g.family, "size_b": g.size_b, "backend": g.backend,
                        "model": g.model, "model_id": model_id(g), "revision": g.revision,
                        "sampling": sampling_settings(g), **_counts(gens[g.name], "failed")}
                       for g in cfg.generators],
        "rewards": [{"name": r.name, "model": r.model, "kind": r.kind, "revision": r.revision,
                     "primary": r.name == cfg.metric_reward, **_counts(rewards[r.name], "failed")}
                    for r in cfg.rewards],
        "crowd": {"instructions": crowd.counts()["rows"], "excluded": excluded.counts()["rows"],
                  "path": crowd.uri, "excluded_path": excluded.uri},
        "select": {"dir": select_dir, "selected": storage.join(select_dir, "selected.jsonl"),
                   "run": storage.join(select_dir, "run.json")},
        "train": None if trained is None else {k: trained.get(k) for k in ("out", "model", "checkpoint", "steps")},
        "resources": resource_plan(cfg),
        "schedule": cfg.schedule,
        "shard_writer": "workers" if workers_write(cfg.shard_writer, cfg.out) else "driver",
        "stages": stages or [],
        "seconds": times,
    }
    storage.write_text(storage.join(cfg.out, "run.json"), jsonout.dumps(scrub_config(summary), indent=2))
    return summary


def resource_plan(cfg: RunConfig) -> dict[str, dict[str, float]]:
    """Peak Ray resources per stage (`crowdselect.runtime.resources.plan_run`), training included."""
    scaling = train_config(cfg, file=str(cfg.out)).scaling if cfg.train is not None else None
    return plan_run(cfg, scaling)


def _counts(store: StageStore, failed: str) -> dict[str, int]:
    c = store.counts()
    return {"rows": c["rows"], failed: c["errors"]}


def print_summary(s: dict) -> None:
    lines = [f"pool: {s['pool']['instructions']} instructions ({s['pool']['rejected']} rejected rows)"]
    for g in s["generators"]:
        lines.append(f"generator {g['name']:<24} {g['rows']:>7} answers, {g['failed']} failed")
    for r in s["rewards"]:
        tag = " (primary)" if r["primary"] else ""
        lines.append(f"reward    {r['name']:<24} {r['rows']:>7} scored,  {r['failed']} failed{tag}")
    lines.append(f"crowd: {s['crowd']['instructions']} instructions, {s['crowd']['excluded']} excluded "
                 f"(fewer than 2 rewarded answers: {s['crowd']['excluded_path']})")
    lines.append(f"selected: {s['select']['selected']}")
    if s["train"]:
        lines.append(f"trained: {s['train']['model'] or s['train']['checkpoint']} ({s['train']['steps']} steps)")
    lines.append("time: " + ", ".join(f"{k} {v:.0f}s" for k, v in s["seconds"].items()))
    print(printable("\n".join(lines)), flush=True)
