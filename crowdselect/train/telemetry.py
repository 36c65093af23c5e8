"""Per-step training telemetry: throughput, an MFU estimate, and the step log (JSONL + MLflow / W&B).

MFU = achieved model FLOP/s / peak FLOP/s of the workers. Model FLOPs per trained token follow the PaLM
appendix: 6·N + 12·L·d·T for full fine-tuning (N weights in matmuls, L layers, width d, context T);
with LoRA the frozen weights get no weight gradients, so 4·N + 12·L·d·T. Peak: `peak_tflops` from the
config, else a table of dense bf16 datasheet peaks for known GPUs, else (CPU) a measured matmul peak in
the training dtype — on CPU the MFU is relative to what this machine's matmul reaches, not a datasheet.
"""

from __future__ import annotations

import json
import logging
import os
import time
from typing import Any

log = logging.getLogger(__name__)

# dense (non-sparse) bf16 tensor-core peaks, TFLOP/s, from NVIDIA datasheets
GPU_PEAK_TFLOPS = {"H200": 989.0, "H100 PCIe": 756.0, "H100": 989.0, "A100": 312.0, "L40S": 362.0,
                   "L4": 121.0, "A10G": 70.0, "A10": 125.0, "V100": 125.0}


def flops_per_token(n_params: int, n_layers: int, hidden: int, context: float, lora: bool) -> float:
    """Training FLOPs per token: (4 if lora else 6)·n_params + 12·n_layers·hidden·context.

    >>> flops_per_token(100, 2, 4, 8.0, lora=False)
    1368.0
    """
    return (4 if lora else 6) * n_params + 12.0 * n_layers * hidden * context


def matmul_params(model) -> int:
    """Weights that take part in matmuls: every parameter except an untied input embedding (a lookup).
    Counts ZeRO-3 partitioned parameters at full size."""
    def size(p) -> int:
        return int(getattr(p, "ds_numel", 0) or p.numel())

    total = sum(size(p) for p in model.parameters())
    embed = model.get_input_embeddings().weight
    head = model.get_output_embeddings()
    tied = head is not None and head.weight is embed
    return total if tied else total - size(embed)


def peak_flops(device_name: str | None, dtype: str, configured_tflops: float | None) -> float | None:
    """Peak FLOP/s of one worker, or None when unknown (MFU is then left out of the log)."""
    if configured_tflops:
        return configured_tflops * 1e12
    if device_name:
        for key, tflops in GPU_PEAK_TFLOPS.items():
            if key in device_name:
                return tflops * 1e12
        return None
    return measured_cpu_flops(dtype)


def measured_cpu_flops(dtype: str = "fp32", size: int = 1024, seconds: float = 0.5) -> float:
    """FLOP/s of a square matmul on this process's CPU threads, best of a short loop."""
    import torch

    tdtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(dtype, torch.float32)
    a = torch.randn(size, size, dtype=tdtype)
    b = torch.randn(size, size, dtype=tdtype)
    torch.matmul(a, b)
    best = 0.0
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        t0 = time.perf_counter()
        torch.matmul(a, b)
        best = max(best, 2 * size**3 / (time.perf_counter() - t0))
    return best


class StepLog:
    """Rank 0's step log: one JSON line per optimizer step at `uri` (local: appended live; remote:
    rewritten at each flush), and to MLflow / W&B when configured."""

    def __init__(self, uri: str, tracking: dict[str, Any], run_config: dict[str, Any], resume_step: int = 0,
                 checkpoint_lines: list[str] | None = None):
        from crowdselect.core import storage  # pyarrow: only where a log is written, not to import the module

        self.uri = uri
        # a resumed run keeps the steps up to its checkpoint (from this log, else the checkpoint's copy)
        old = storage.read_text(uri).splitlines() if storage.exists(uri) else list(checkpoint_lines or [])
        self.lines = [ln for ln in old if ln.strip() and json.loads(ln).get("step", 0) <= resume_step]
        self._flush_all()
        self.tracker = _open_tracker(tracking, run_config)

    def write(self, record: dict[str, Any]) -> None:
        from crowdselect.core import jsonout, storage

        line = jsonout.dumps(record)
        self.lines.append(line)
        if not storage.is_remote(self.uri):
            with open(self.uri, "a") as f:
                f.write(line + "\n")
        if self.tracker is not None:
            self.tracker(record)

    def flush(self) -> None:
        from crowdselect.core import storage

        if storage.is_remote(self.uri):
            self._flush_all()

    def _flush_all(self) -> None:
        from crowdselect.core import storage

        if not storage.is_remote(self.uri):
            os.makedirs(os.path.dirname(os.path.abspath(self.uri)), exist_ok=True)
        storage.write_text(self.uri, "".join(ln + "\n" for ln in self.lines))


def _open_tracker(tracking: dict[str, Any], run_config: dict[str, Any]):
    """A function record -> None that logs numeric fields to MLflow or W&B; None for backend "none"."""
    backend = tracking.get("backend", "none")
    numeric = ("loss", "lr", "tokens_per_s", "mfu", "grad_norm", "epoch")
    if backend == "mlflow":
        import mlflow

        if tracking.get("tracking_uri"):
            mlflow.set_tracking_uri(tracking["tracking_uri"])
        mlflow.set_experiment(tracking.get("project") or "crowdselect")
        mlflow.start_run(run_name=tracking.get("run_name"))
        mlflow.log_params(_flat(run_config))
        return lambda r: mlflow.log_metrics({k: r[k] for k in numeric if r.get(k) is not None}, step=r["step"])
    if backend == "wandb":
        import wandb

        wandb.init(project=tracking.get("project") or "crowdselect", name=tracking.get("run_name"),
                   config=run_config)
        return lambda r: wandb.log({k: r[k] for k in numeric if r.get(k) is not None}, step=r["step"])
    return None


def _flat(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flat(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = str(v)[:250]
    return out
