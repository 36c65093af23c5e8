"""`crowdselect train CONFIG.yaml [--out DIR] [key=value ...]` and the train stage of `crowdselect run`.

    ray job submit --working-dir . -- crowdselect train examples/train.yaml --out s3://bucket/runs/smollm

Sequence: resolve the student -> prepare rows (bad rows fail or go to rejected.jsonl) -> plan steps ->
start or join Ray -> TorchTrainer.fit() -> export the last checkpoint as an HF folder (a Ray task).
Run directory (local or s3:// gs://):

    train_config.yaml   the resolved config          data_report.json   rows read / used / rejected, tokens
    rejected.jsonl      rejected rows with reasons    train_log.jsonl    one line per optimizer step
    checkpoints/NAME/   Ray Train checkpoints         model/             the exported HF folder
    train.json          the run summary (what run_training returns)

Rerunning the same command resumes from the last checkpoint (Ray Train finds it under checkpoints/NAME).
"""

from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import replace
from typing import Any

import yaml

from crowdselect.core import jsonout, storage
from crowdselect.core.config import ConfigError, to_dict
from crowdselect.core.paths import check_out_dir
from crowdselect.core.rejects import REJECTS_FILE, write_rejects
from crowdselect.core.secrets import scrub_config
from crowdselect.runtime.models import resolve_model
from crowdselect.runtime.ray_setup import configure_data, ensure_ray
from crowdselect.train.config import TrainConfig, load_train_config
from crowdselect.train.export import export_model
from crowdselect.train.launch import build_trainer, storage_path
from crowdselect.train.loop import LOG_FILE
from crowdselect.train.prepare import plan_steps, prepare
from crowdselect.train.schedule import check_schedule

log = logging.getLogger(__name__)


def main(config_path: str, out: str | None = None, overrides: list[str] | None = None) -> int:
    """CLI entry: load and validate the config, train, print where the model went. Returns the exit code."""
    cfg = load_train_config(config_path, out, overrides)
    check_out_dir(cfg.out)  # before Ray starts: a file named by --out fails now, not after training
    summary = run_training(cfg)
    nan = float("nan")
    print(f"trained to step {summary['steps']}, loss {summary['first_loss'] or nan:.4g} -> "
          f"{summary['last_loss'] or nan:.4g}; "
          f"model: {summary['model'] or '(export disabled)'}; log: {summary['log']}")
    return 0


def student_path(cfg: TrainConfig) -> str:
    try:
        return resolve_model(cfg.model.name)
    except (ValueError, FileNotFoundError) as e:
        raise ConfigError(f"model.name: {e}") from None


def run_training(cfg: TrainConfig) -> dict[str, Any]:
    """Train (or resume) and export; returns the summary also written to OUT/train.json."""
    t0 = time.time()
    # Ray Train workers chdir into their trial dir (RAY_CHDIR_TO_TRIAL_DIR, on by default): absolute paths
    cfg = replace(cfg, out=storage.absolute(str(cfg.out)),
                  export=replace(cfg.export, path=cfg.export.path and storage.absolute(cfg.export.path)),
                  checkpoint=replace(cfg.checkpoint, resume_from=cfg.checkpoint.resume_from
                                     and storage.absolute(cfg.checkpoint.resume_from)))
    model_path = student_path(cfg)  # for the tokenizer here; workers resolve cfg.model.name on their own node
    storage.makedirs(cfg.out)
    storage.write_text(storage.join(cfg.out, "train_config.yaml"), yaml.safe_dump(scrub_config(to_dict(cfg)), sort_keys=False))
    prepared = prepare(cfg, model_path)
    if prepared.bad:
        write_rejects(prepared.bad, storage.join(cfg.out, REJECTS_FILE))
    steps = plan_steps(len(prepared.rows), cfg)
    schedule = check_schedule(cfg.optim.warmup_steps, steps["total_steps"], steps["steps"],
                              max(1, steps["micro_per_epoch"] // cfg.optim.grad_accum), cfg.optim.max_steps)
    if schedule.notice:
        print(f"[train] {schedule.notice}", flush=True)
    cfg = replace(cfg, optim=replace(cfg.optim, warmup_steps=schedule.warmup_steps))
    report = {**prepared.report, **steps, "warmup_steps": schedule.warmup_steps, "schedule_notice": schedule.notice}
    storage.write_text(storage.join(cfg.out, "data_report.json"), jsonout.dumps(report, indent=2))
    print(f"[train] {report['rows_used']}/{report['rows_read']} rows used ({report['rows_rejected']} rejected), "
          f"{report['tokens']} tokens; {steps['steps']} optimizer steps", flush=True)
    ensure_ray(cfg.ray.address, _local_cpus(cfg), cfg.ray.temp_dir)
    configure_data(preserve_order=True)  # as select and run: Ray Data's INFO lines only with --verbose
    result = build_trainer(cfg, prepared.rows, steps, cfg.model.name, prepared.pad_id).fit()
    if result.checkpoint is None:
        raise RuntimeError("training finished without a checkpoint")
    checkpoint = _uri(cfg, result.checkpoint.path)
    done = result.return_value or {}
    log_uri = storage.join(cfg.out, LOG_FILE)
    steps_logged = [json.loads(x) for x in storage.read_text(log_uri).splitlines() if x.strip()]
    model_dir = None
    if cfg.export.enabled:
        model_dir = cfg.export.path or storage.join(cfg.out, "model")
        export_in_ray(checkpoint, cfg, cfg.model.name, model_dir)
    summary = {"out": cfg.out, "model": model_dir, "checkpoint": checkpoint, "log": log_uri,
               "steps": done.get("step"), "started_at_step": done.get("start_step"),
               "first_loss": steps_logged[0]["loss"] if steps_logged else None,
               "last_loss": steps_logged[-1]["loss"] if steps_logged else None,
               "data": report, "seconds": round(time.time() - t0, 1)}
    storage.write_text(storage.join(cfg.out, "train.json"), jsonout.dumps(summary, indent=2))
    return summary


def export_in_ray(checkpoint: str, cfg: TrainConfig, model_path: str, out: str) -> dict[str, Any]:
    """Run the export as a Ray task, so on a cluster it runs on a worker node next to the storage."""
    import ray

    task = ray.remote(num_cpus=1)(export_model)
    return ray.get(task.remote(checkpoint, cfg, model_path, out))


def _local_cpus(cfg: TrainConfig) -> int | None:
    """For a local Ray: enough logical CPUs for every worker plus one for Ray Data and the export task."""
    if cfg.ray.num_cpus is not None:
        return cfg.ray.num_cpus
    per_worker = int(cfg.scaling.resources_per_worker.get("CPU", 1))
    return max(os.cpu_count() or 1, cfg.scaling.workers * per_worker + 1)


def _uri(cfg: TrainConfig, path: str) -> str:
    """A checkpoint's filesystem path as a URI under the storage path's scheme."""
    root = storage_path(cfg)
    if storage.is_remote(root):
        return f"{root.split('://', 1)[0]}://{path.lstrip('/')}"
    return path
