"""Throughput check on one accelerator: crowdselect's training pieces and judge scoring against bare loops.

    bash bench/gpu_check.sh            # a Qwen2.5-1.5B-sized model (random weights), bf16, on the GPU
    bash bench/gpu_check.sh --smoke    # a tiny model on the CPU, seconds: proves the script still runs

Needs torch and transformers only (no Ray, vLLM, DeepSpeed, pyarrow, network): the model is initialised at
random from a transformers Qwen2Config and saved as safetensors, with a small BPE tokenizer trained on the
synthetic text. Two measurements, each against a plain loop over the same inputs in the same process:
- training: rows tokenised with loss on assistant tokens only (train.tokenize.ChatTokenizer), collated by
  train.tokenize.collate, the student loaded by train.student.load_student, AdamW + the loop's cosine
  schedule (train.loop.cosine_schedule); the step is the loop's (loss, backward, clip, step) without
  DeepSpeed. Tokens/s and MFU (train.telemetry: PaLM FLOPs, datasheet peak on known GPUs, measured matmul
  peak on CPU). The plain loop: the model from from_pretrained, pad_sequence batches of the same rows.
- judge scoring: reward.judge.JudgeScorer (rows -> chat prompts -> length-sorted micro-batches -> label
  probabilities) against a bare batched forward (last-token softmax) over the same token ids.
Prints the card name, tokens/s of each path and the ratios (crowdselect / plain); the last line is JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

FULL = {"hidden_size": 1536, "num_hidden_layers": 28, "num_attention_heads": 12, "num_key_value_heads": 2,
        "intermediate_size": 8960, "vocab_size": 151936, "max_position_embeddings": 32768,
        "tie_word_embeddings": True}
TINY = {"hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
        "intermediate_size": 128, "vocab_size": 1024, "max_position_embeddings": 512,
        "tie_word_embeddings": True}
CHAT_TEMPLATE = ("{% for m in messages %}<|{{ m['role'] }}|>\n{{ m['content'] }}<|end|>\n{% endfor %}"
                 "{% if add_generation_prompt %}<|assistant|>\n{% endif %}")


def settings(smoke: bool) -> dict:
    if smoke:
        return {"config": TINY, "seq": 128, "batch": 2, "warmup": 1, "steps": 3, "judge_rows": 16,
                "judge_batch": 8, "judge_len": 512, "tokenizer_vocab": 1000, "dtype": "float32"}
    return {"config": FULL, "seq": 2048, "batch": 4, "warmup": 3, "steps": 10, "judge_rows": 512,
            "judge_batch": 32, "judge_len": 1024, "tokenizer_vocab": 4000, "dtype": "bfloat16"}


def words(n: int, rng: random.Random) -> str:
    syllables = ["ka", "lo", "mi", "ten", "ra", "su", "vel", "on", "dri", "pa", "ex", "quo", "li", "nar"]
    return " ".join("".join(rng.choice(syllables) for _ in range(rng.randint(1, 3))) for _ in range(n))


def conversations(n: int, answer_words: int, seed: int = 0) -> list[list[dict[str, str]]]:
    rng = random.Random(seed)
    return [[{"role": "user", "content": words(rng.randint(20, 60), rng) + "?"},
             {"role": "assistant", "content": words(answer_words, rng) + "."}] for _ in range(n)]


def build_model_folder(folder: Path, s: dict, device: str) -> None:
    """Random-initialised Qwen2 (safetensors) + a BPE tokenizer trained on the synthetic text."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import AutoModelForCausalLM, PreTrainedTokenizerFast, Qwen2Config

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    specials = ["<|endoftext|>", "<|pad|>", "<|user|>", "<|assistant|>", "<|system|>", "<|end|>"]
    trainer = trainers.BpeTrainer(vocab_size=s["tokenizer_vocab"], special_tokens=specials,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    from crowdselect.reward.prompts import REWARD_PROMPT

    # the judge's prompt is in the corpus, so the tiny vocabulary does not spell it out byte by byte
    corpus = [m["content"] for conv in conversations(200, 50, seed=1) for m in conv] + [REWARD_PROMPT] * 20
    tok.train_from_iterator(corpus, trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|end|>", pad_token="<|pad|>")
    fast.chat_template = CHAT_TEMPLATE
    fast.save_pretrained(folder)
    config = Qwen2Config(**s["config"], eos_token_id=fast.eos_token_id, pad_token_id=fast.pad_token_id)
    torch.manual_seed(0)
    with torch.device(device):
        model = AutoModelForCausalLM.from_config(config, dtype=getattr(torch, s["dtype"]))
    model.save_pretrained(folder)
    del model


def sync(device: str) -> None:
    import torch

    if device == "cuda":
        torch.cuda.synchronize()


def training_rows(folder: Path, s: dict) -> tuple[list[dict], int]:
    """Rows of the train package's tokenizer (loss on assistant tokens only), cut at `seq` tokens."""
    from crowdselect.train.tokenize import ChatTokenizer

    tok = ChatTokenizer(str(folder), s["seq"])
    n = s["batch"] * (s["warmup"] + s["steps"])
    rows = []
    for conv in conversations(n, answer_words=s["seq"]):
        ex = tok(conv)
        ex.pop("truncated")
        rows.append(ex)
    return rows, tok.pad_id


def crowdselect_train(folder: Path, rows: list[dict], pad_id: int, s: dict, device: str) -> dict:
    """The train package's pieces: load_student, collate, cosine schedule, the loop's step (no DeepSpeed)."""
    import torch

    from crowdselect.core.config import build
    from crowdselect.train.config import TrainConfig
    from crowdselect.train.loop import cosine_schedule
    from crowdselect.train.student import load_student
    from crowdselect.train.tokenize import collate

    precision = "bf16" if s["dtype"] == "bfloat16" else "fp32"
    cfg = build(TrainConfig, {"data": {"path": ["synthetic"]}, "out": "unused", "model": {"name": str(folder)},
                              "deepspeed": {"precision": precision}}, file="gpu_check")
    model, _ = load_student(cfg, str(folder), {})
    model = model.to(device).train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-5)
    sched = cosine_schedule(opt, warmup=0, total=s["warmup"] + s["steps"])

    def step(chunk: list[dict]) -> int:
        cols = {k: [r[k] for r in chunk] for k in chunk[0]}
        batch = {k: v.to(device) for k, v in collate(cols, pad_id).items()}
        loss = model(**batch, use_cache=False).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        opt.zero_grad(set_to_none=True)
        return sum(len(r["input_ids"]) for r in chunk)

    return timed_steps(step, rows, s, device, model)


def plain_train(folder: Path, rows: list[dict], pad_id: int, s: dict, device: str) -> dict:
    """A plain PyTorch loop over the same rows: from_pretrained, pad_sequence, AdamW, clip."""
    import torch
    from torch.nn.utils.rnn import pad_sequence
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(folder, dtype=getattr(torch, s["dtype"])).to(device).train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-5)

    def step(chunk: list[dict]) -> int:
        ids = pad_sequence([torch.tensor(r["input_ids"]) for r in chunk], batch_first=True, padding_value=pad_id)
        labels = pad_sequence([torch.tensor(r["labels"]) for r in chunk], batch_first=True, padding_value=-100)
        mask = pad_sequence([torch.ones(len(r["input_ids"]), dtype=torch.long) for r in chunk], batch_first=True)
        loss = model(input_ids=ids.to(device), attention_mask=mask.to(device), labels=labels.to(device),
                     use_cache=False).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        return int(mask.sum())

    return timed_steps(step, rows, s, device, model)


def timed_steps(step, rows: list[dict], s: dict, device: str, model) -> dict:
    """Run warmup + measured steps of `batch` rows; tokens/s over the measured ones, and MFU."""
    import torch

    from crowdselect.train.telemetry import flops_per_token, matmul_params, peak_flops

    b = s["batch"]
    chunks = [rows[i:i + b] for i in range(0, len(rows), b)]
    for chunk in chunks[:s["warmup"]]:
        step(chunk)
    sync(device)
    t0, tokens = time.perf_counter(), 0
    for chunk in chunks[s["warmup"]:]:
        tokens += step(chunk)
    sync(device)
    seconds = time.perf_counter() - t0
    per_s = tokens / seconds
    conf = model.config
    fpt = flops_per_token(matmul_params(model), conf.num_hidden_layers, conf.hidden_size, tokens / (b * s["steps"]),
                          lora=False)
    name = torch.cuda.get_device_name() if device == "cuda" else None
    peak = peak_flops(name, "bf16" if s["dtype"] == "bfloat16" else "fp32", None)
    del model
    free(device)
    return {"tokens": tokens, "seconds": round(seconds, 3), "tokens_per_s": round(per_s, 1),
            "mfu": round(per_s * fpt / peak, 4) if peak else None}


def free(device: str) -> None:
    import gc

    import torch

    gc.collect()
    if device == "cuda":
        torch.cuda.empty_cache()


def judge_rows(n: int, seed: int = 2) -> dict[str, list[str]]:
    rng = random.Random(seed)
    return {"instruction": [words(rng.randint(20, 120), rng) + "?" for _ in range(n)],
            "response": [words(rng.randint(50, 300), rng) + "." for _ in range(n)]}


def judge_check(folder: Path, s: dict, device: str) -> dict:
    """JudgeScorer over rows vs a bare forward over the same prompts; best of two rounds each."""
    from crowdselect.reward.config import RewardSpec
    from crowdselect.reward.judge import JudgeScorer
    from crowdselect.runtime.resources import PoolResources

    spec = RewardSpec(name="judge", model=str(folder), kind="judge", backend="hf", dtype=s["dtype"],
                      resources=PoolResources(batch_size=s["judge_batch"]), max_length=s["judge_len"],
                      tokens_per_forward=s["judge_batch"] * s["judge_len"])
    judge = JudgeScorer(spec, low=1, high=9)  # single-token labels: one forward per prompt, as the bare loop
    batch = judge_rows(s["judge_rows"])
    prompts = [judge._encode_row(batch, i) for i in range(s["judge_rows"])]
    tokens = sum(map(len, prompts))
    judge(judge_rows(s["judge_batch"], seed=3))  # warm-up
    best_helper = best_bare = float("inf")
    for _ in range(2):
        sync(device)
        t0 = time.perf_counter()
        out = judge(batch)
        sync(device)
        best_helper = min(best_helper, time.perf_counter() - t0)
        t0 = time.perf_counter()
        bare_forward(judge.lm.model, prompts, judge.lm.tokenizer.pad_token_id, s["judge_batch"], device)
        sync(device)
        best_bare = min(best_bare, time.perf_counter() - t0)
    failed = [e for e in out["reward_error"] if e]
    if failed:
        raise RuntimeError(f"{len(failed)} judge rows failed, e.g. {failed[0]}")
    del judge
    free(device)
    return {"rows": s["judge_rows"], "tokens": tokens, "helper_tokens_per_s": round(tokens / best_helper, 1),
            "bare_tokens_per_s": round(tokens / best_bare, 1)}


def bare_forward(model, prompts: list[list[int]], pad_id: int, batch: int, device: str) -> None:
    """Length-sorted left-padded batches, last-token softmax: the least a judge must compute."""
    import torch

    order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))
    with torch.inference_mode():
        for k in range(0, len(order), batch):
            seqs = [prompts[i] for i in order[k:k + batch]]
            width = max(map(len, seqs))
            ids = torch.tensor([[pad_id] * (width - len(p)) + p for p in seqs], device=device)
            mask = (ids != pad_id).long() if pad_id is not None else None
            model(input_ids=ids, attention_mask=mask, logits_to_keep=1).logits.float().softmax(-1).cpu()


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--smoke", action="store_true", help="tiny model on the CPU (seconds)")
    args = p.parse_args(argv)
    import torch

    device = "cuda" if torch.cuda.is_available() and not args.smoke else "cpu"
    card = torch.cuda.get_device_name() if device == "cuda" else "cpu"
    print(f"[gpu_check] device: {card}; torch {torch.__version__}", flush=True)
    s = settings(args.smoke or device == "cpu")
    with tempfile.TemporaryDirectory(prefix="gpu-check-") as tmp:
        folder = Path(tmp) / "model"
        t0 = time.perf_counter()
        build_model_folder(folder, s, device)
        print(f"[gpu_check] model folder ready in {time.perf_counter() - t0:.1f}s", flush=True)
        rows, pad_id = training_rows(folder, s)
        ours = crowdselect_train(folder, rows, pad_id, s, device)
        plain = plain_train(folder, rows, pad_id, s, device)
        print(f"[gpu_check] train crowdselect {ours['tokens_per_s']} tok/s (MFU {ours['mfu']}), "
              f"plain {plain['tokens_per_s']} tok/s (MFU {plain['mfu']})", flush=True)
        judge = judge_check(folder, s, device)
        print(f"[gpu_check] judge helper {judge['helper_tokens_per_s']} tok/s, "
              f"bare forward {judge['bare_tokens_per_s']} tok/s", flush=True)
    result = {"card": card, "smoke": bool(args.smoke), "train": {"crowdselect": ours, "plain": plain},
              "judge": judge, "ratios": {
                  "train_tokens_per_s": round(ours["tokens_per_s"] / plain["tokens_per_s"], 3),
                  "judge_tokens_per_s": round(judge["helper_tokens_per_s"] / judge["bare_tokens_per_s"], 3)}}
    print(f"[gpu_check] ratios (crowdselect / plain): train {result['ratios']['train_tokens_per_s']}, "
          f"judge {result['ratios']['judge_tokens_per_s']}", flush=True)
    print(json.dumps(result), flush=True)
    return result


if __name__ == "__main__":
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    main()
