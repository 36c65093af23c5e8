"""Wiring: Ray Data dataset + TorchTrainer(ScalingConfig, RunConfig(storage_path), FailureConfig).

The tokenised rows become a Ray Dataset passed as `datasets={"train": ...}`; Ray Train splits it into one
equal shard per worker (`ray.train.get_dataset_shard("train")` in the loop). Scheduling settings come
from `cfg.scaling`, checkpoint storage and retries from `cfg.checkpoint`. Ray must already be initialised.
"""

from __future__ import annotations

from typing import Any

from crowdselect.core import storage
from crowdselect.core.config import to_dict
from crowdselect.train.config import TrainConfig, checkpoint_root
from crowdselect.train.loop import LOG_FILE, train_loop_per_worker


def storage_path(cfg: TrainConfig) -> str:
    """Where Ray Train keeps checkpoints: checkpoint.storage_path, else OUT/checkpoints (absolute if local)."""
    return checkpoint_root(cfg)


def scaling_config(cfg: TrainConfig):
    from ray.train import ScalingConfig

    from crowdselect.runtime.resources import for_scaling

    return ScalingConfig(**for_scaling(cfg.scaling))


def build_trainer(cfg: TrainConfig, rows: list[dict], plan: dict[str, int], model_path: str, pad_id: int):
    """A TorchTrainer ready to `fit()`; the loop's config carries the whole TrainConfig as a dict."""
    import ray.data
    from ray.data import ExecutionOptions
    from ray.train import CheckpointConfig, DataConfig, FailureConfig, RunConfig
    from ray.train.torch import TorchTrainer

    loop_config: dict[str, Any] = {
        "cfg": to_dict(cfg), "plan": plan, "model_path": model_path, "pad_id": pad_id,
        "log_uri": storage.join(cfg.out, LOG_FILE), "resume_from": cfg.checkpoint.resume_from,
    }
    run_config = RunConfig(
        name=cfg.name, storage_path=storage_path(cfg),
        failure_config=FailureConfig(max_failures=cfg.checkpoint.max_failures),
        checkpoint_config=CheckpointConfig(num_to_keep=cfg.checkpoint.keep),
    )
    return TorchTrainer(
        train_loop_per_worker, train_loop_config=loop_config,
        scaling_config=scaling_config(cfg), run_config=run_config,
        datasets={"train": ray.data.from_items(rows)},
        # preserve_order: the same rows reach the same worker in the same order on every epoch and run, so a
        # resume can skip exactly the micro-batches a checkpoint already covers
        dataset_config=DataConfig(execution_options=ExecutionOptions(preserve_order=True)),
    )
