"""The training config: one YAML file fills `TrainConfig`; `key=value` overrides on the command line.

Sections keep algorithm settings (data, model, optim, lora) apart from Ray's scheduling settings
(scaling) and from DeepSpeed's engine settings (deepspeed, whose `config` dict is passed through).
Defaults are the paper's: lr 1e-5, 3 epochs, per-device batch 1, gradient accumulation 2, warmup 150
steps, max length 2048, cosine schedule, AdamW; the loss is normalised by the step's response tokens, as
transformers' Trainer does. `deepspeed_config()` turns a TrainConfig into the dict
that `deepspeed.initialize` takes; it is pure and knows nothing of Ray.
"""

from __future__ import annotations

import copy
import importlib.util
import os
import posixpath
from dataclasses import dataclass, field
from typing import Any, Literal

from crowdselect.core.config import ConfigError, load_config
from crowdselect.core.rejects import bad_rows_policy
from crowdselect.runtime.ray_setup import RayConfig


@dataclass
class TrainDataConfig:
    path: list[str] = field(default_factory=list)  # selected.jsonl, JSONL/JSON/Parquet files, dirs, globs, URIs
    format: Literal["auto", "messages", "alpaca", "sharegpt"] = "auto"
    max_length: int = 2048  # tokens; longer rows are cut at the end
    packing: bool = False  # pack several rows into one max_length sequence (attention kept per row)
    on_bad_rows: Literal["fail", "quarantine", "skip"] = "fail"  # quarantine: counted, to rejected.jsonl
    system_prompt: str | None = None  # added as a system turn to rows that have none
    shuffle: bool = True
    seed: int = 42

    def validate(self) -> None:
        self.on_bad_rows = bad_rows_policy(self.on_bad_rows)  # "skip" is the deprecated name of quarantine


@dataclass
class ModelConfig:
    name: str = "pkg:smollm2-135m-instruct"  # HF hub id, local folder or pkg: alias
    revision: str | None = None
    chat_template: str | None = None  # Jinja text that replaces the tokenizer's template
    trust_remote_code: bool = False
    allow_pickle_weights: bool = False  # also load pytorch_model.bin (pickle can run code); else safetensors only
    attn_implementation: str | None = None  # e.g. "sdpa", "flash_attention_2"; None: transformers' choice


@dataclass
class OptimConfig:
    lr: float = 1e-5
    epochs: int = 3
    per_device_batch: int = 1
    grad_accum: int = 2
    warmup_steps: int = 150  # optimizer steps of linear warmup, then cosine decay to 0
    weight_decay: float = 0.0
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])
    grad_clip: float = 1.0
    max_steps: int | None = None  # stop after this many optimizer steps (the schedule still spans all epochs)
    # token: an optimizer step's loss is the mean over every response token of its micro-batches on every
    # worker (transformers' Trainer since 4.46), so a long answer weighs by its length; sequence: each
    # micro-batch's token mean, averaged over micro-batches and workers (a short answer weighs as a long one)
    loss_normalization: Literal["token", "sequence"] = "token"

    def validate(self) -> None:
        for name in ("epochs", "per_device_batch", "grad_accum"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name}: must be >= 1, got {getattr(self, name)}")
        if self.lr <= 0:
            raise ConfigError(f"lr: must be > 0, got {self.lr}")
        if self.warmup_steps < 0:
            raise ConfigError(f"warmup_steps: must be >= 0, got {self.warmup_steps}")
        if len(self.betas) != 2:
            raise ConfigError(f"betas: need 2 numbers, got {self.betas}")
        if self.max_steps is not None and self.max_steps < 1:
            raise ConfigError(f"max_steps: must be >= 1, got {self.max_steps}")


@dataclass
class LoraConfig:
    enabled: bool = False
    rank: int = 16
    alpha: float = 32.0
    dropout: float = 0.05
    target_modules: list[str] | str = "all-linear"  # module names, or PEFT's "all-linear"
    merge: bool = True  # merge the adapter into the base weights on export; False exports the adapter

    def validate(self) -> None:
        if self.rank < 1:
            raise ConfigError(f"rank: must be >= 1, got {self.rank}")
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigError(f"dropout: must be in [0, 1), got {self.dropout}")


@dataclass
class DeepSpeedSettings:
    zero_stage: Literal[1, 2, 3] = 2
    precision: Literal["bf16", "fp16", "fp32"] = "bf16"  # fp16 needs a GPU
    offload_optimizer: bool = False  # ZeRO optimizer state on CPU memory
    offload_params: bool = False  # ZeRO-3 parameters on CPU memory
    gradient_checkpointing: bool = False
    config: dict[str, Any] = field(default_factory=dict)  # merged over the generated DeepSpeed config

    def validate(self) -> None:
        if self.offload_params and self.zero_stage != 3:
            raise ConfigError("offload_params: needs zero_stage 3")


@dataclass
class ScalingSettings:
    workers: int = 2
    use_gpu: bool = False
    resources_per_worker: dict[str, float] = field(default_factory=dict)  # e.g. {"CPU": 8, "GPU": 1}
    accelerator_type: str | None = None  # e.g. "H100"
    placement_strategy: Literal["PACK", "SPREAD", "STRICT_PACK", "STRICT_SPREAD"] = "PACK"

    def validate(self) -> None:
        if self.workers < 1:
            raise ConfigError(f"workers: must be >= 1, got {self.workers}")


@dataclass
class CheckpointSettings:
    every_steps: int = 0  # also checkpoint every N optimizer steps; 0: at the end of each epoch and of the run
    keep: int | None = 2  # checkpoints kept in storage (the latest ones)
    storage_path: str | None = None  # Ray Train storage (local dir, s3://, gs://); default OUT/checkpoints
    # a checkpoint folder to start from (weights, optimizer, schedule, step). DeepSpeed loads it with
    # torch.load(weights_only=False), which runs any code a crafted file carries: only trusted checkpoints.
    resume_from: str | None = None
    trust_external: bool = False  # allow resume_from outside this run's own storage (out, storage_path)
    max_failures: int = 0  # worker-group restarts, each resumes from the last checkpoint


@dataclass
class TrackingSettings:
    backend: Literal["none", "mlflow", "wandb"] = "none"
    project: str = "crowdselect"  # MLflow experiment or W&B project
    run_name: str | None = None
    tracking_uri: str | None = None  # MLflow only; None: MLFLOW_TRACKING_URI or ./mlruns

    def validate(self) -> None:
        if self.backend != "none" and importlib.util.find_spec(self.backend) is None:
            raise ConfigError(f"backend: {self.backend} is not installed (pip install {self.backend})")


@dataclass
class ExportSettings:
    enabled: bool = True
    dtype: Literal["auto", "bfloat16", "float16", "float32"] = "auto"  # auto: the base model's dtype
    path: str | None = None  # default OUT/model


@dataclass
class TrainConfig:
    data: TrainDataConfig = field(default_factory=TrainDataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    lora: LoraConfig = field(default_factory=LoraConfig)
    deepspeed: DeepSpeedSettings = field(default_factory=DeepSpeedSettings)
    scaling: ScalingSettings = field(default_factory=ScalingSettings)
    checkpoint: CheckpointSettings = field(default_factory=CheckpointSettings)
    tracking: TrackingSettings = field(default_factory=TrackingSettings)
    export: ExportSettings = field(default_factory=ExportSettings)
    ray: RayConfig = field(default_factory=RayConfig)
    out: str | None = None  # run directory (local or s3:// gs://)
    name: str = "train"  # Ray Train run name; rerunning with the same out and name resumes
    seed: int = 42
    peak_tflops: float | None = None  # per worker, for MFU; None: known GPU table, or a measured CPU matmul

    def validate(self) -> None:
        if not self.data.path:
            raise ConfigError("data.path: give the training data (e.g. RUN/selected.jsonl)")
        if self.out is None:
            raise ConfigError("out: give a run directory (out: DIR in the YAML or --out DIR)")
        if self.deepspeed.precision == "fp16" and not self.scaling.use_gpu:
            raise ConfigError("deepspeed.precision: fp16 needs scaling.use_gpu: true (use bf16 or fp32 on CPU)")
        check_resume_from(self)


def checkpoint_root(cfg: TrainConfig) -> str:
    """Where Ray Train keeps checkpoints: checkpoint.storage_path, else OUT/checkpoints (absolute if local)."""
    path = cfg.checkpoint.storage_path or posixpath.join(str(cfg.out).rstrip("/"), "checkpoints")
    return path if _is_uri(path) else os.path.abspath(path)


def check_resume_from(cfg: TrainConfig) -> None:
    """`checkpoint.resume_from` must lie inside this run's own storage (OUT or checkpoint.storage_path)
    unless `checkpoint.trust_external: true`: DeepSpeed unpickles checkpoints, so a foreign one can run
    code on every worker. ConfigError naming the key."""
    ck = cfg.checkpoint
    if not ck.resume_from or ck.trust_external:
        return
    roots = [r for r in (cfg.out, checkpoint_root(cfg)) if r]
    if not any(_inside(ck.resume_from, root) for root in roots):
        raise ConfigError(
            f"checkpoint.resume_from: {ck.resume_from} is outside this run's storage ({', '.join(roots)}); "
            "DeepSpeed loads checkpoints with pickle, which can run code. Copy a checkpoint you trust into "
            "the run, or set checkpoint.trust_external: true")


def _is_uri(path: str) -> bool:
    return "://" in path and not path.startswith("file://")  # as core.storage.is_remote


def _inside(path: str, root: str) -> bool:
    if _is_uri(path) != _is_uri(root):
        return False
    if _is_uri(path):
        return path.rstrip("/").startswith(root.rstrip("/") + "/")
    path, root = os.path.realpath(path), os.path.realpath(root)
    return os.path.commonpath([path, root]) == root


def load_train_config(path: str | None, out: str | None = None, overrides: list[str] | None = None) -> TrainConfig:
    """YAML file < `--out` < `key=value` overrides (`load_config`); validated before any work starts."""
    return load_config(TrainConfig, path, list(overrides or []), flags={"out": out})


def deepspeed_config(cfg: TrainConfig, world_size: int) -> dict[str, Any]:
    """The dict for `deepspeed.initialize(config=...)`: batch sizes, precision, ZeRO, AdamW; then the user's
    `deepspeed.config` merged over it (nested dicts merge, other values replace)."""
    o, d = cfg.optim, cfg.deepspeed
    # overlap_comm reduces gradient buckets on a side CUDA stream while backward runs (DeepSpeed's own default
    # for stage 3; stages 1-2 default to off). On CPU workers (gloo) DeepSpeed has no streams to overlap on
    # (its CPU accelerator is a "synchronized device": reduction_stream is None, zero/stage_1_and_2.py), so
    # there it would only double the contiguous gradient bucket: on with GPUs, off on CPU.
    zero: dict[str, Any] = {"stage": d.zero_stage, "overlap_comm": cfg.scaling.use_gpu, "contiguous_gradients": True}
    if d.offload_optimizer:
        zero["offload_optimizer"] = {"device": "cpu", "pin_memory": True}
    if d.offload_params:
        zero["offload_param"] = {"device": "cpu", "pin_memory": True}
    if d.zero_stage == 3:
        zero["stage3_gather_16bit_weights_on_model_save"] = False  # export reads the fp32 ZeRO checkpoint
    ds: dict[str, Any] = {
        "train_micro_batch_size_per_gpu": o.per_device_batch,
        "gradient_accumulation_steps": o.grad_accum,
        "train_batch_size": o.per_device_batch * o.grad_accum * world_size,
        "gradient_clipping": o.grad_clip,
        "zero_optimization": zero,
        "bf16": {"enabled": d.precision == "bf16"},
        "fp16": {"enabled": d.precision == "fp16"},
        # torch's AdamW: no compiled FusedAdam needed (CPU and GPU alike); DeepSpeedCPUAdam when offloading.
        "optimizer": {"type": "AdamW", "params": {
            "lr": o.lr, "betas": list(o.betas), "eps": 1e-8, "weight_decay": o.weight_decay,
            "torch_adam": not d.offload_optimizer}},
        "steps_per_print": 10**9,
        "wall_clock_breakdown": False,
    }
    return _merge(ds, d.config)


def _merge(base: dict, extra: dict) -> dict:
    out = copy.deepcopy(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out
