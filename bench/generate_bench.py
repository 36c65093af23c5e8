"""Generate- and reward-stage throughput: ratios against bare baselines run in the same process.

    .venv/bin/python bench/generate_bench.py                 # CPU defaults: 32 prompts x 32 tokens
    .venv/bin/python bench/generate_bench.py --prompts 2000 --max-tokens 256 --model Qwen/Qwen2.5-0.5B-Instruct \
        --engine-kwargs '{"gpu_memory_utilization": 0.8}' --gpu      # on a GPU (target ratios >= 0.95 / 0.9)

1. Generate: output tokens/s of crowdselect's vLLM stage (Ray Data + ray.data.llm processor, as
   `crowdselect run` wires it) against direct `vllm.LLM.chat` on the same prompts and model, greedy with
   `ignore_eos` so both produce exactly prompts x max_tokens tokens. Both timings include the engine start
   (the stage's actor starts its own engine); the ratio is stage tokens/s / direct tokens/s.
2. Reward: scored (prompt) tokens/s of the reward helper's judge stage (`crowdselect.reward.wiring.
   add_rewards` on Ray Data) against a bare HF forward loop over the very same token sequences (same
   micro-batch size, last-token logits only), both including the model load.
Absolute numbers on a shared 2-core machine are noise; the ratios are the result. The card (or CPU) is printed.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import time
from pathlib import Path

POOL = Path(__file__).resolve().parents[1] / "examples" / "quickstart_pool.jsonl"


def instructions(n: int) -> list[str]:
    rows = [json.loads(line) for line in POOL.read_text().splitlines()]
    texts = [r["conversations"][0]["value"] for r in rows]
    return [texts[i % len(texts)] for i in range(n)]


def device_name(gpu: bool) -> str:
    if gpu:
        import torch

        return torch.cuda.get_device_name(0)
    return f"CPU ({os.cpu_count()} cores, {platform.processor() or platform.machine()})"


def direct_vllm(model: str, texts: list[str], max_tokens: int, engine_kwargs: dict) -> tuple[float, int]:
    """(seconds, output tokens) of vllm.LLM construction + chat over all prompts."""
    from vllm import LLM, SamplingParams

    t0 = time.perf_counter()
    llm = LLM(model=model, **engine_kwargs)
    params = SamplingParams(temperature=0, max_tokens=max_tokens, ignore_eos=True)
    outs = llm.chat([[{"role": "user", "content": t}] for t in texts], params, use_tqdm=False)
    seconds = time.perf_counter() - t0
    tokens = sum(len(o.outputs[0].token_ids) for o in outs)
    del llm
    gc.collect()
    return seconds, tokens


def stage_vllm(model: str, texts: list[str], max_tokens: int, engine_kwargs: dict, gpu: bool) -> tuple[float, int]:
    """(seconds, output tokens) of crowdselect's vLLM generate stage over the same prompts."""
    import ray

    from crowdselect.core import columns as C
    from crowdselect.generate import build_generate
    from crowdselect.generate.spec import GeneratorResources, GeneratorSpec

    spec = GeneratorSpec(name="bench", family="bench", size_b=1.0, model=model, backend="vllm", max_tokens=max_tokens,
                         resources=GeneratorResources(batch_size=64, gpus_per_replica=1.0 if gpu else 0.0),
                         engine_kwargs=engine_kwargs, sampling={"temperature": 0, "ignore_eos": True})
    rows = [{C.ID: f"r{i}", C.INSTRUCTION: t, C.SHARD: "s0"} for i, t in enumerate(texts)]
    t0 = time.perf_counter()
    out = build_generate(spec)(ray.data.from_items(rows)).take_all()
    seconds = time.perf_counter() - t0
    errors = [r[C.ERROR] for r in out if r[C.ERROR]]
    if errors:
        raise RuntimeError(f"{len(errors)} rows failed, e.g. {errors[0]}")
    return seconds, sum(r[C.OUTPUT_TOKENS] for r in out)


def reward_inputs(texts: list[str], max_tokens: int) -> list[dict]:
    from crowdselect.core import columns as C

    # answers of a fixed length: the reward cost depends on the token count, not the wording
    return [{C.ID: f"r{i}", C.INSTRUCTION: t, C.MODEL: "g", C.RESPONSE: ("The answer is yes. " * max_tokens)[:4 * max_tokens],
             C.SHARD: "s0"} for i, t in enumerate(texts)]


def stage_reward(spec, rows: list[dict]) -> tuple[float, list[list[int]]]:
    """(seconds, encoded prompts) of the judge stage on Ray Data, model load included."""
    import ray

    from crowdselect.core import columns as C
    from crowdselect.reward.wiring import add_rewards, build_scorer

    t0 = time.perf_counter()
    out = add_rewards(ray.data.from_items(rows), spec).take_all()
    seconds = time.perf_counter() - t0
    bad = [r for r in out if r[C.error_column(C.REWARD)]]
    if bad:
        raise RuntimeError(f"{len(bad)} rows failed to score, e.g. {bad[0][C.error_column(C.REWARD)]}")
    scorer = build_scorer(spec)  # the same encoding the stage used, for the baseline's inputs
    prompts = [scorer.encoder.encode(r[C.INSTRUCTION], r[C.RESPONSE]) for r in rows]
    del scorer
    gc.collect()
    return seconds, prompts


def bare_forward(spec, prompts: list[list[int]]) -> float:
    """Seconds of model load + a plain batched forward loop (last-token logits) over `prompts`."""
    import torch
    from transformers import AutoModelForCausalLM

    from crowdselect.runtime.lm.load import gpu_share, load_tokenizer, pick_device, pick_dtype
    from crowdselect.runtime.models import resolve_model

    t0 = time.perf_counter()
    device = pick_device(gpu_share(spec))  # the stage's own share: the two sides run on the same device
    tok = load_tokenizer(spec)
    model = AutoModelForCausalLM.from_pretrained(resolve_model(spec.model), dtype=pick_dtype(spec.dtype, device))
    model.to(device).eval()
    pad = tok.pad_token_id if tok.pad_token_id is not None else 0
    order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))
    with torch.inference_mode():
        size = spec.resources.batch_size
        for k in range(0, len(order), size):
            seqs = [prompts[i] for i in order[k:k + size]]
            width = max(map(len, seqs))
            ids = torch.tensor([[pad] * (width - len(s)) + s for s in seqs], device=device)
            mask = (torch.arange(width, device=device)[None] >= torch.tensor([width - len(s) for s in seqs],
                                                                               device=device)[:, None]).long()
            model(input_ids=ids, attention_mask=mask, logits_to_keep=1).logits.float().softmax(-1)
    return time.perf_counter() - t0


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", default="pkg:smollm2-135m-instruct")
    p.add_argument("--prompts", type=int, default=32)
    p.add_argument("--max-tokens", type=int, default=32)
    p.add_argument("--engine-kwargs", default=None, help="JSON; default on CPU: bfloat16, eager, max_model_len 1024")
    p.add_argument("--judge", default="pkg:smollm2-135m-instruct")
    p.add_argument("--gpu", action="store_true")
    p.add_argument("--skip", choices=["generate", "reward"], default=None)
    a = p.parse_args()
    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from crowdselect.runtime.models import resolve_model
    from crowdselect.runtime.ray_setup import ensure_ray

    engine_kwargs = json.loads(a.engine_kwargs) if a.engine_kwargs else (
        {} if a.gpu else {"dtype": "bfloat16", "enforce_eager": True, "max_model_len": 1024})
    ensure_ray(num_cpus=None if a.gpu else 8)
    model = resolve_model(a.model)
    texts = instructions(a.prompts)
    print(f"device: {device_name(a.gpu)}; model {a.model}; {a.prompts} prompts x {a.max_tokens} tokens")
    if a.skip != "generate":
        d_s, d_tok = direct_vllm(model, texts, a.max_tokens, dict(engine_kwargs))
        s_s, s_tok = stage_vllm(model, texts, a.max_tokens, dict(engine_kwargs), a.gpu)
        print(f"generate: direct vllm.LLM {d_tok / d_s:8.1f} tok/s ({d_s:.1f}s) | stage {s_tok / s_s:8.1f} tok/s "
              f"({s_s:.1f}s) | ratio {(s_tok / s_s) / (d_tok / d_s):.3f}  (target >= 0.95 on a GPU)")
    if a.skip != "reward":
        from crowdselect.reward.config import RewardSpec
        from crowdselect.runtime.resources import PoolResources

        spec = RewardSpec(name="judge", model=a.judge, kind="judge", backend="hf", max_length=512,
                          resources=PoolResources(batch_size=16, num_gpus=1.0 if a.gpu else 0.0))
        r_s, prompts = stage_reward(spec, reward_inputs(texts, a.max_tokens))
        b_s = bare_forward(spec, prompts)
        tokens = sum(map(len, prompts))
        print(f"reward:   bare HF forward {tokens / b_s:8.1f} tok/s ({b_s:.1f}s) | stage {tokens / r_s:8.1f} tok/s "
              f"({r_s:.1f}s) | ratio {b_s / r_s:.3f}  (target >= 0.9)")


if __name__ == "__main__":
    main()
