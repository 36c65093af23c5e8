"""Training throughput: the Ray Train + DeepSpeed path against a plain single-process HF training loop.

    .venv/bin/python bench/train_bench.py                     # CPU: SmolLM2-135M, fp32, 2 workers, ZeRO-2
    .venv/bin/python bench/train_bench.py --model Qwen/Qwen2.5-0.5B-Instruct --precision bf16 \
        --use-gpu --workers 8 --rows 512 --max-length 2048     # GPU: MFU of ZeRO-2 bf16 (target >= 40%)

Both paths train the same model on the same tokenised rows (the ShareGPT quick-start pool, loss on the
answers, truncated to --max-length) for the same optimizer steps with the same global batch
(workers x per-device batch 1 x grad accum 2 rows per step), AdamW + cosine. The first step of each is a
warm-up and is not timed. Printed: tokens/s and MFU of each path and the Ray/plain ratios.
MFU uses one peak for both: --peak-tflops, else the GPU datasheet table, else (CPU) this machine's
measured matmul FLOP/s on all its cores — so on CPU the MFU ratio equals the tokens/s ratio.
Absolute numbers on a shared machine are noise; the ratio is the result.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

from crowdselect.core.config import build
from crowdselect.runtime.lm.load import load_model
from crowdselect.runtime.models import resolve_model
from crowdselect.train.config import TrainConfig
from crowdselect.train.job import run_training
from crowdselect.train.prepare import prepare
from crowdselect.train.student import model_source
from crowdselect.train.telemetry import GPU_PEAK_TFLOPS, flops_per_token, matmul_params, measured_cpu_flops
from crowdselect.train.tokenize import collate

POOL = Path(__file__).resolve().parent.parent / "examples" / "quickstart_pool.jsonl"


def bench_config(args, out: str) -> TrainConfig:
    return build(TrainConfig, {
        "data": {"path": [args.data], "max_length": args.max_length, "on_bad_rows": "quarantine"},
        "model": {"name": args.model},
        "optim": {"lr": 1e-5, "epochs": 1, "per_device_batch": 1, "grad_accum": 2, "warmup_steps": 0,
                  "max_steps": args.steps},
        "deepspeed": {"zero_stage": args.zero_stage, "precision": args.precision},
        "scaling": {"workers": args.workers, "use_gpu": args.use_gpu},
        "checkpoint": {"keep": 1}, "export": {"enabled": False}, "out": out, "name": "bench",
    }, file="bench")


def plain_loop(cfg: TrainConfig, model_path: str, rows: list[dict], pad_id: int, steps: int) -> dict:
    """One process, no Ray, no DeepSpeed: HF model + torch AdamW + cosine, gradient accumulation."""
    import torch
    from transformers import get_cosine_schedule_with_warmup

    device = "cuda" if cfg.scaling.use_gpu else "cpu"
    model = load_model(model_source(cfg, model_path, "fp32"), device).train()
    model.config.use_cache = False
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.optim.lr, weight_decay=cfg.optim.weight_decay)
    sched = get_cosine_schedule_with_warmup(opt, 0, steps)
    per_step = cfg.scaling.workers * cfg.optim.grad_accum  # same global batch as the Ray path
    autocast = torch.autocast(device, dtype=torch.bfloat16, enabled=cfg.deepspeed.precision == "bf16")
    tokens = seconds = 0.0
    for step in range(steps):
        t0, n = time.perf_counter(), 0
        for row in rows[step * per_step:(step + 1) * per_step]:
            batch = {k: v.to(device) for k, v in collate({k: [v] for k, v in row.items()}, pad_id).items()}
            with autocast:
                loss = model(**batch, use_cache=False).loss / per_step
            loss.backward()
            n += len(row["input_ids"])
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.optim.grad_clip)
        opt.step()
        sched.step()
        opt.zero_grad(set_to_none=True)
        if device == "cuda":
            torch.cuda.synchronize()
        if step > 0:  # step 0 is the warm-up
            tokens, seconds = tokens + n, seconds + time.perf_counter() - t0
        print(f"[plain] step {step + 1}/{steps} loss {loss.item() * per_step:.4f}", flush=True)
    return {"tokens_per_s": tokens / seconds, "model": model}


def ray_path(cfg: TrainConfig) -> dict:
    summary = run_training(cfg)
    log = [json.loads(x) for x in Path(summary["log"]).read_text().splitlines()][1:]  # drop the warm-up step
    return {"tokens_per_s": sum(r["tokens"] for r in log) / sum(r["seconds"] for r in log),
            "logged_mfu": [r["mfu"] for r in log]}


def peak(args) -> tuple[float, str]:
    """Peak FLOP/s of ONE device (GPU) or of the whole machine (CPU), and where it came from."""
    if args.peak_tflops:
        return args.peak_tflops * 1e12, "--peak-tflops"
    if args.use_gpu:
        import torch

        name = torch.cuda.get_device_name()
        for key, tflops in GPU_PEAK_TFLOPS.items():
            if key in name:
                return tflops * 1e12, f"datasheet bf16 dense, {name}"
        raise SystemExit(f"unknown GPU {name!r}: pass --peak-tflops")
    return measured_cpu_flops(args.precision, size=2048, seconds=2.0), f"measured matmul, {os.cpu_count()} cores"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", default="pkg:smollm2-135m-instruct")
    p.add_argument("--data", default=str(POOL))
    p.add_argument("--rows", type=int, default=0, help="rows to use (default: what --steps needs)")
    p.add_argument("--max-length", type=int, default=256)
    p.add_argument("--steps", type=int, default=4)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--zero-stage", type=int, default=2)
    p.add_argument("--precision", default="fp32", choices=["fp32", "bf16"])
    p.add_argument("--use-gpu", action="store_true")
    p.add_argument("--peak-tflops", type=float, default=None, help="per device")
    args = p.parse_args()
    os.environ.setdefault("CROWDSELECT_RAY_TMP", "/tmp/r_train_bench")
    model_path = resolve_model(args.model)
    with tempfile.TemporaryDirectory(prefix="train-bench-") as out:
        cfg = bench_config(args, out)
        prepared = prepare(cfg, model_path)
        rows = prepared.rows[: args.rows or args.steps * args.workers * 2]
        peak_flops, peak_src = peak(args)
        print(f"load average before: {os.getloadavg()}", flush=True)
        plain = plain_loop(cfg, model_path, rows, prepared.pad_id, args.steps)
        model = plain.pop("model")
        n_params, conf = matmul_params(model), model.config
        del model
        ray = ray_path(cfg)
        print(f"load average after: {os.getloadavg()}", flush=True)
    context = sum(len(r["input_ids"]) for r in rows) / len(rows)
    fpt = flops_per_token(n_params, conf.num_hidden_layers, conf.hidden_size, context, lora=False)
    ray_peak = peak_flops * (args.workers if args.use_gpu else 1)  # CPU: the machine peak is shared
    plain_mfu = plain["tokens_per_s"] * fpt / peak_flops
    ray_mfu = ray["tokens_per_s"] * fpt / ray_peak
    device = "GPU" if args.use_gpu else f"CPU ({os.cpu_count()} cores)"
    print(f"\n{args.model}, {args.precision}, {args.steps} steps x {args.workers * 2} rows of <= {args.max_length} "
          f"tokens (mean {context:.0f}), {device}; peak {peak_flops / 1e12:.3f} TFLOP/s ({peak_src})")
    print(f"plain HF loop (1 process):                 {plain['tokens_per_s']:9.1f} tok/s   MFU {100 * plain_mfu:6.2f}%")
    print(f"Ray Train + DeepSpeed ZeRO-{args.zero_stage} ({args.workers} workers): "
          f"{ray['tokens_per_s']:9.1f} tok/s   MFU {100 * ray_mfu:6.2f}%")
    print(f"ratio Ray/plain: tokens/s {ray['tokens_per_s'] / plain['tokens_per_s']:.2f}x, "
          f"MFU {ray_mfu / plain_mfu:.2f}x")
    if args.use_gpu:
        print(f"GPU MFU target >= 40%: {'met' if ray_mfu >= 0.40 else 'NOT met'} ({100 * ray_mfu:.1f}%)")


if __name__ == "__main__":
    main()
