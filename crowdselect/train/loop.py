"""The per-worker training loop, written out: `train_loop_per_worker(config)` runs on every Ray Train worker.

    model   = load_student(...)                      # bf16/fp32, ZeRO-3 partitioned while loading, LoRA
    engine  = deepspeed.initialize(model, AdamW, cosine schedule with warmup)
    restore the last checkpoint (weights, optimizer, schedule, step) if there is one
    for each optimizer step: its grad_accum micro-batches from this worker's Ray Data shard (across epochs)
        token normalisation: count the step's response tokens on every worker (one all_reduce)
        for micro-batch: loss = engine(**batch).loss; engine.backward(loss); engine.step()
        log loss, lr, tokens/s, MFU (rank 0); checkpoint + ray.train.report when due

Loss normalisation (`optim.loss_normalization`): `token` (default) makes a step's gradient that of the mean
loss over every response token of the step, on every worker — transformers' Trainer since 4.46
(`num_items_in_batch`, `average_tokens_across_devices`): each micro-batch's summed token loss is divided by
the step's token count over the workers, times the world size (DeepSpeed averages the workers' gradients), and
not divided by grad_accum again (`scale_wrt_gas=False`). `sequence`: the model's per-micro-batch token mean,
divided by grad_accum and averaged over workers by DeepSpeed, so a 10-token answer weighs as a 1,000-token one.

`config` is a plain dict made by launch.py: {"cfg": TrainConfig as dict, "plan": {...}, "model_path",
"pad_id", "log_uri", "resume_from"}. Rank 0 returns {step, start_step, tag} (Result.return_value).
Every worker sees the same number of micro-batches per epoch (the driver pads the rows), so DeepSpeed's
collectives never wait on a worker that ran out of data.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from dataclasses import asdict, dataclass
from functools import partial
from typing import Any

from crowdselect.core import columns as C
from crowdselect.core.config import build
from crowdselect.train.config import TrainConfig, deepspeed_config
from crowdselect.train.student import load_student
from crowdselect.train.telemetry import StepLog, flops_per_token, matmul_params, peak_flops
from crowdselect.train.tokenize import IGNORE, collate

STATE_FILE = "trainer_state.json"
LOG_FILE = "train_log.jsonl"


@dataclass
class TrainerState:
    step: int = 0  # optimizer steps done
    micro: int = 0  # micro-batches done by each worker
    tag: str = ""  # DeepSpeed checkpoint tag of the last checkpoint
    checkpoint_micro: int = 0  # `micro` at the last checkpoint


def cosine_schedule(optimizer, warmup: int, total: int):
    """Linear warmup for `warmup` steps, then cosine decay to 0 at `total` (transformers' schedule)."""
    from transformers import get_cosine_schedule_with_warmup

    return get_cosine_schedule_with_warmup(optimizer, num_warmup_steps=warmup, num_training_steps=total)


def skip_shm_comm_op() -> None:
    """On CPU, DeepSpeed's comm backend JIT-compiles its shared-memory all-reduce op when it starts (a C++
    build of one to three minutes on 2 cores, redone for every new venv path, and it needs a compiler). The op
    serves only `inference_all_reduce`; training reduces through the gloo process group either way, so it is
    marked unavailable and never built."""
    import deepspeed.ops

    deepspeed.ops.__compatible_ops__["deepspeed_shm_comm"] = False


def build_engine(cfg: TrainConfig, model_path: str, world: int, total_steps: int):
    """The student wrapped by `deepspeed.initialize`: ZeRO, precision, AdamW from the DeepSpeed config,
    cosine schedule with warmup over the whole run's `total_steps`."""
    import deepspeed
    import torch

    backend = torch.distributed.get_backend()
    if backend == "gloo":
        skip_shm_comm_op()
    # DeepSpeed joins the process group Ray Train set up (gloo on CPU, nccl on GPU) before any config check
    deepspeed.init_distributed(dist_backend=backend)
    ds_config = deepspeed_config(cfg, world)
    model, _keep_alive = load_student(cfg, model_path, ds_config)
    engine, _, _, _ = deepspeed.initialize(
        model=model, model_parameters=[p for p in model.parameters() if p.requires_grad], config=ds_config,
        lr_scheduler=partial(cosine_schedule, warmup=cfg.optim.warmup_steps, total=total_steps))
    return engine


def train_loop_per_worker(config: dict[str, Any]) -> dict[str, Any] | None:
    import ray.train
    import torch

    cfg = build(TrainConfig, config["cfg"], file="train loop config")
    plan = config["plan"]
    ctx = ray.train.get_context()
    rank, world = ctx.get_world_rank(), ctx.get_world_size()
    torch.manual_seed(cfg.seed)
    engine = build_engine(cfg, config["model_path"], world, plan["total_steps"])
    meter = Meter(cfg, engine.module, world, rank == 0)
    state, old_log = restore(engine, config.get("resume_from"))
    steplog = None
    if rank == 0:
        steplog = StepLog(config["log_uri"], asdict(cfg.tracking), config["cfg"], state.step, old_log)
        print(f"[train] {plan['steps']} optimizer steps ({plan['micro_per_epoch']} micro-batches per worker "
              f"per epoch, {world} workers), starting at step {state.step}", flush=True)
    shard = ray.train.get_dataset_shard("train")
    start_step = state.step
    by_token = cfg.optim.loss_normalization == "token"
    meter.restart_clock()  # the first step's time excludes start-up
    # a resumed run that had already finished reads no data
    groups = step_groups(shard, cfg, state.micro, plan["micro_per_epoch"], config["pad_id"]) \
        if state.step < plan["steps"] else iter(())
    for group in groups:
        lr = engine.get_lr()[0]
        step_tokens = count_step_tokens([batch for _, batch, _ in group], engine.device) if by_token else None
        for _, batch, tokens in group:
            loss_part, weight = train_micro_batch(engine, batch, step_tokens, world)
            state.micro += 1
            meter.add(loss_part, weight, tokens, batch[C.INPUT_IDS].shape[0])
        state.step += 1
        record = meter.close(state, group[-1][0], lr, engine)
        if steplog is not None:
            steplog.write(record)
            print(_progress(record, plan["steps"]), flush=True)
        if checkpoint_due(state, cfg, plan):
            save_and_report(engine, state, steplog, rank, {"step": state.step, "loss": record["loss"]})
            meter.restart_clock()  # checkpoint time is not training time
        if state.step >= plan["steps"]:  # before the next group is read: no data past the last step
            break
    if rank != 0:
        return None
    return {"step": state.step, "start_step": start_step, "tag": state.tag}


def step_groups(shard, cfg: TrainConfig, micro: int, per_epoch: int, pad_id: int):
    """The micro-batches of each coming optimizer step, from micro-batch `micro` on (a step boundary: the
    loop checkpoints only after a step): lists of grad_accum (epoch, batch, tokens); a step may span the end of
    an epoch. Endless: the caller stops at its last step."""
    group = []
    epoch, skip = divmod(micro, per_epoch)
    while True:
        for batch, tokens in micro_batches(shard, cfg, epoch, skip, pad_id, per_epoch):
            group.append((epoch, batch, tokens))
            if len(group) == cfg.optim.grad_accum:
                yield group
                group = []
        epoch, skip = epoch + 1, 0


def response_tokens(labels) -> int:
    """Positions a causal-LM loss counts in a (batch, length) label tensor: labels shift by one, so the
    first position is never a target (transformers' Trainer counts `labels[..., 1:]` the same way)."""
    return int((labels[..., 1:] != IGNORE).sum())


def count_step_tokens(batches: list[dict[str, Any]], device) -> float:
    """The response tokens of one optimizer step, summed over this worker's micro-batches and every worker."""
    import torch
    import torch.distributed as dist

    total = torch.tensor([float(sum(response_tokens(b[C.LABELS]) for b in batches))], dtype=torch.float64,
                         device=device)
    dist.all_reduce(total)
    return max(float(total.item()), 1.0)


def train_micro_batch(engine, batch: dict[str, Any], step_tokens: float | None, world: int) -> tuple[float, float]:
    """Forward and backward of one micro-batch; returns (loss numerator, weight) for the step's logged loss:
    (summed token loss, response tokens) by token, (the micro-batch's mean loss, 1) by sequence."""
    inputs = {k: v.to(engine.device) for k, v in batch.items()}
    # use_cache=False: no KV cache in training, and packed rows are only detected without one
    if step_tokens is None:
        loss = engine(**inputs, use_cache=False).loss
        engine.backward(loss)
        engine.step()
        return loss.item(), 1.0
    per_worker = step_tokens / world  # the model divides its summed token loss by this (num_items_in_batch)
    loss = engine(**inputs, use_cache=False, num_items_in_batch=per_worker).loss
    engine.backward(loss, scale_wrt_gas=False)
    engine.step()
    return loss.item() * per_worker, float(response_tokens(batch[C.LABELS]))


def micro_batches(shard, cfg: TrainConfig, epoch: int, skip: int, pad_id: int, expected: int):
    """(padded tensor batch, real token count) per micro-batch of this worker's shard for `epoch`,
    after skipping the first `skip` (already trained before a resume). Shuffling is seeded per epoch.
    A shard that does not hold exactly `expected` micro-batches is an error, not a silent hang."""
    shuffle = {"local_shuffle_buffer_size": 256, "local_shuffle_seed": cfg.data.seed + epoch} \
        if cfg.data.shuffle else {}
    batches = shard.iter_batches(batch_size=cfg.optim.per_device_batch, batch_format="pyarrow", **shuffle)
    seen = 0
    for i, table in enumerate(batches):
        seen = i + 1
        if i < skip:
            continue
        cols = {name: table.column(name).to_pylist() for name in table.column_names}
        yield collate(cols, pad_id), sum(len(x) for x in cols[C.INPUT_IDS])
    if seen != expected:
        raise RuntimeError(f"epoch {epoch}: this worker's shard held {seen} micro-batches, expected {expected}")


def checkpoint_due(state: TrainerState, cfg: TrainConfig, plan: dict[str, Any]) -> bool:
    """At the last step, every `checkpoint.every_steps`, and at the first step after each epoch's end."""
    every = cfg.checkpoint.every_steps
    per_epoch = plan["micro_per_epoch"]
    return (state.step >= plan["steps"] or (every > 0 and state.step % every == 0)
            or state.micro // per_epoch > state.checkpoint_micro // per_epoch)


def save_and_report(engine, state: TrainerState, steplog: StepLog | None, rank: int, metrics: dict) -> None:
    """Every rank writes its ZeRO shard of the checkpoint, then reports it with ray.train.report.

    Local (or shared) storage: written straight into the run's folder, once (NO_UPLOAD). Cloud storage:
    written to a temp folder that Ray Train uploads; the shards of all ranks land in one checkpoint folder.
    Rank 0 adds trainer_state.json and a copy of the step log.
    """
    import pyarrow.fs as pafs
    import ray.train

    state.tag = f"step{state.step}"
    state.checkpoint_micro = state.micro
    name = f"checkpoint_{state.tag}"
    store = ray.train.get_context().get_storage()
    if isinstance(store.storage_filesystem, pafs.LocalFileSystem):
        folder = os.path.join(store.experiment_fs_path, name)
        _write_checkpoint(engine, folder, state, steplog, rank)
        ray.train.report(metrics, checkpoint=ray.train.Checkpoint(folder), checkpoint_dir_name=name,
                         checkpoint_upload_mode=ray.train.CheckpointUploadMode.NO_UPLOAD)
        return
    with tempfile.TemporaryDirectory(prefix="crowdselect-ckpt-") as tmp:
        _write_checkpoint(engine, tmp, state, steplog, rank)
        ray.train.report(metrics, checkpoint=ray.train.Checkpoint.from_directory(tmp), checkpoint_dir_name=name)


def _write_checkpoint(engine, folder: str, state: TrainerState, steplog: StepLog | None, rank: int) -> None:
    engine.save_checkpoint(folder, tag=state.tag)  # collective: every rank writes its shard
    if rank != 0:
        return
    with open(os.path.join(folder, STATE_FILE), "w") as f:
        json.dump(asdict(state), f)
    if steplog is not None:
        steplog.flush()
        with open(os.path.join(folder, LOG_FILE), "w") as f:
            f.write("".join(line + "\n" for line in steplog.lines))


def restore(engine, resume_from: str | None) -> tuple[TrainerState, list[str]]:
    """Load Ray Train's latest checkpoint (a retry or a rerun of the same run), else `resume_from`:
    weights, optimizer and schedule into the engine. Returns (state, the step log lines it carries)."""
    import ray.train

    ckpt = ray.train.get_checkpoint()
    if ckpt is None and resume_from:
        ckpt = ray.train.Checkpoint(resume_from)
    if ckpt is None:
        return TrainerState(), []
    with ckpt.as_directory() as folder:
        with open(os.path.join(folder, STATE_FILE)) as f:
            state = TrainerState(**json.load(f))
        path, _ = engine.load_checkpoint(folder, tag=state.tag, load_optimizer_states=True,
                                         load_lr_scheduler_states=True)
        log_path = os.path.join(folder, LOG_FILE)
        lines = open(log_path).read().splitlines() if os.path.exists(log_path) else []
    if path is None:
        raise RuntimeError(f"DeepSpeed could not load checkpoint {ckpt.path} (tag {state.tag})")
    return state, lines


def optimizer_step_count(engine) -> int:
    """AdamW's own step counter (restored with the optimizer state on resume)."""
    inner = getattr(engine.optimizer, "optimizer", engine.optimizer)
    steps = [float(s["step"]) for s in inner.state.values() if "step" in s]
    return int(max(steps)) if steps else 0


class Meter:
    """Accumulates one optimizer step's micro-batches and turns them into a log record (all ranks)."""

    def __init__(self, cfg: TrainConfig, model, world: int, measure_peak: bool):
        import torch

        self.world = world
        self.lora = cfg.lora.enabled
        self.n_params = matmul_params(model)
        conf = model.config
        self.layers, self.hidden = conf.num_hidden_layers, conf.hidden_size
        device = torch.cuda.get_device_name() if torch.cuda.is_available() else None
        self.peak = peak_flops(device, cfg.deepspeed.precision, cfg.peak_tflops) if measure_peak else None
        self._reset()

    def _reset(self) -> None:
        self.loss = self.weight = self.tokens = self.rows = 0.0
        self.restart_clock()

    def restart_clock(self) -> None:
        self.t0 = time.perf_counter()

    def add(self, loss: float, weight: float, tokens: int, rows: int) -> None:
        """One micro-batch: its loss numerator and weight (see train_micro_batch), input tokens, rows."""
        self.loss += loss
        self.weight += weight
        self.tokens += tokens
        self.rows += rows

    def close(self, state: TrainerState, epoch: int, lr: float, engine) -> dict[str, Any]:
        import torch
        import torch.distributed as dist

        totals = torch.tensor([self.loss, self.weight, self.tokens, self.rows], dtype=torch.float64,
                              device=engine.device)
        dist.all_reduce(totals)
        loss_sum, weight, tokens, rows = totals.tolist()
        seconds = time.perf_counter() - self.t0
        per_s = tokens / seconds
        fpt = flops_per_token(self.n_params, self.layers, self.hidden, tokens / rows, self.lora)
        norm = engine.get_global_grad_norm()
        record = {"step": state.step, "epoch": epoch, "loss": loss_sum / weight, "lr": lr,
                  "grad_norm": float(norm) if norm is not None else None, "tokens": int(tokens),
                  "seconds": round(seconds, 4), "tokens_per_s": per_s,
                  "mfu": per_s * fpt / (self.peak * self.world) if self.peak else None,
                  "optimizer_step": optimizer_step_count(engine), "time": time.time()}
        self._reset()
        return record


def _progress(r: dict[str, Any], total: int) -> str:
    mfu = f" mfu {100 * r['mfu']:.2f}%" if r["mfu"] is not None else ""
    return (f"[train] step {r['step']}/{total} epoch {r['epoch']} loss {r['loss']:.4f} lr {r['lr']:.3g} "
            f"{r['tokens_per_s']:.1f} tok/s{mfu}")
