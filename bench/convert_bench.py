"""First use of a packaged model: GGUF -> safetensors HF folder, crowdselect's `convert_gguf` against the
recipe a user would write with transformers alone, each in a fresh process, turn about.

    .venv/bin/python bench/convert_bench.py                                   # SmolLM2-135M, 1 round
    .venv/bin/python bench/convert_bench.py --model qwen2.5-coder-0.5b-instruct --rounds 2

The plain recipe (what transformers' GGUF loading leads to): load the tokenizer and the model with
`gguf_file=`, read the config, build a plain model with `from_config` and copy the weights in (a GGUF-
quantised model refuses `save_pretrained`), save both. Both variants start from the joined, verified GGUF
file (the join is the same code for both) and write to a temp folder; the bench checks that they wrote the
same tensors, config and tokenizer. Printed per variant: wall seconds and peak RSS of its process; then the
ratios (plain / crowdselect). Absolute times on a shared machine are noise; the ratios are the result.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import queue as queue_mod
import resource
import tempfile
import time
from pathlib import Path


def plain_recipe(gguf: Path, out: Path) -> None:
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    src, fname = str(gguf.parent), gguf.name
    tokenizer = AutoTokenizer.from_pretrained(src, gguf_file=fname)
    quantised = AutoModelForCausalLM.from_pretrained(src, gguf_file=fname, dtype=torch.float32)
    config = AutoConfig.from_pretrained(src, gguf_file=fname)
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    plain = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    plain.load_state_dict(quantised.state_dict(), strict=False)
    if getattr(plain.config, "tie_word_embeddings", False):
        plain.tie_weights()
    plain.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)


def crowdselect_convert(gguf: Path, out: Path) -> None:
    from crowdselect.runtime.models import convert_gguf

    convert_gguf(gguf, out)


def child(name: str, gguf: str, out: str, queue) -> None:
    t0 = time.perf_counter()
    (plain_recipe if name == "plain" else crowdselect_convert)(Path(gguf), Path(out))
    queue.put((time.perf_counter() - t0, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024))


def run(name: str, gguf: Path, out: Path) -> tuple[float, float]:
    """(seconds, peak RSS MiB) of one conversion in a fresh process."""
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=child, args=(name, str(gguf), str(out), queue))
    proc.start()
    while True:  # a child that dies before answering must not leave the parent waiting forever
        try:
            result = queue.get(timeout=5)
            break
        except queue_mod.Empty:
            if not proc.is_alive():
                raise SystemExit(f"{name}: the conversion process exited with {proc.exitcode}") from None
    proc.join()
    return result


def same_output(a: Path, b: Path) -> bool:
    import torch
    from safetensors import safe_open

    with safe_open(str(a / "model.safetensors"), "pt") as x, safe_open(str(b / "model.safetensors"), "pt") as y:
        if set(x.keys()) != set(y.keys()):
            return False
        if not all(torch.equal(x.get_tensor(k), y.get_tensor(k)) for k in x.keys()):
            return False
    return all((a / f).read_bytes() == (b / f).read_bytes()
               for f in ("config.json", "generation_config.json", "tokenizer.json", "chat_template.jinja")
               if (a / f).exists() or (b / f).exists())


def main() -> None:
    from crowdselect.runtime import models

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="smollm2-135m-instruct", choices=sorted(
        a for a in models.ALIASES if a != "all-minilm-l6-v2"))
    ap.add_argument("--rounds", type=int, default=1)
    args = ap.parse_args()
    gguf = models._gguf_file(args.model, *models.ALIASES[args.model])  # joined and verified once, shared
    print(f"{args.model}: {gguf} ({gguf.stat().st_size / 2**20:.0f} MiB)")
    times: dict[str, list[tuple[float, float]]] = {"plain": [], "crowdselect": []}
    with tempfile.TemporaryDirectory(prefix="convert-bench-") as tmp:
        for r in range(args.rounds):
            for name in ("plain", "crowdselect") if r % 2 == 0 else ("crowdselect", "plain"):
                out = Path(tmp) / f"{name}-{r}"
                times[name].append(run(name, gguf, out))
                print(f"round {r + 1} {name:<12} {times[name][-1][0]:7.1f} s  peak RSS {times[name][-1][1]:7.0f} MiB",
                      flush=True)
        identical = same_output(Path(tmp) / "plain-0", Path(tmp) / "crowdselect-0")
    best = {k: (min(s for s, _ in v), max(m for _, m in v)) for k, v in times.items()}
    print(f"same tensors, config and tokenizer: {identical}")
    print(f"time ratio plain / crowdselect: {best['plain'][0] / best['crowdselect'][0]:.2f}x; "
          f"peak memory ratio: {best['plain'][1] / best['crowdselect'][1]:.2f}x")


if __name__ == "__main__":
    main()
