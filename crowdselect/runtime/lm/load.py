"""The one HF transformers helper every model-running stage shares: load, chat encoding, padding, micro-batches.

    tok   = load_tokenizer(spec)                  # spec's chat_template override, pad falls back to EOS
    model = load_model(spec, device)              # safetensors only unless spec.allow_pickle_weights
    ids   = encode_chat(tok, messages, add_generation_prompt=True, suffix="Rating: [[")
    ids, mask, pos = left_pad(seqs, pad_id, device)
    results, errors = run_microbatches(items, lengths, max_rows, max_tokens, fn, stage)

Used by the HF generator, the judge and classifier rewards, the baselines (IFD, direct score, tags), the
student's training and export, and the benchmarks. `spec` is any object with the fields `model` (hub id,
folder or `pkg:` alias), `revision`, `trust_remote_code`, `chat_template`, `dtype`, and optionally
`model_kwargs` and `allow_pickle_weights` (absent means False): RewardSpec, GeneratorSpec, `ModelSource`. Weights in pickle files
(`pytorch_model.bin`) can run code when loaded, so they are refused unless the config allows them
(`crowdselect.runtime.weights`).
This module knows nothing of Ray, rows or scores; torch and transformers are imported when first needed.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from crowdselect.core.config import ConfigError
from crowdselect.core.secrets import scrub_secrets
from crowdselect.runtime.lm.budget import length_batches
from crowdselect.runtime.models import resolve_model
from crowdselect.runtime.weights import check_weights

log = logging.getLogger(__name__)

@dataclass
class ModelSource:
    """The loading fields of a model, for callers whose config names them differently (the student's
    `model:` section, benchmarks). RewardSpec and GeneratorSpec carry the same fields themselves."""

    model: str  # hub id, folder or pkg: alias
    revision: str | None = None
    trust_remote_code: bool = False
    chat_template: str | None = None
    dtype: str = "auto"
    allow_pickle_weights: bool = False
    model_kwargs: dict[str, Any] = field(default_factory=dict)


def pick_device(gpus: float | None = None) -> str:
    """"cuda" when a GPU is visible (and `gpus`, the stage's GPU share, is not 0), else "cpu"."""
    import torch

    return "cuda" if torch.cuda.is_available() and gpus != 0 else "cpu"


def pick_dtype(name: str, device: str) -> Any:
    """`auto` is bfloat16 on CUDA and float32 on CPU (CPU bf16 matmuls are slow on most machines);
    other names are torch dtypes ("float32") or the training short forms ("bf16", "fp16", "fp32")."""
    import torch

    if name == "auto":
        return torch.bfloat16 if device == "cuda" else torch.float32
    return getattr(torch, {"bf16": "bfloat16", "fp16": "float16", "fp32": "float32"}.get(name, name))


def load_tokenizer(spec: Any, padding_side: str | None = None) -> Any:
    """The spec's tokenizer with its chat_template override; a missing pad token falls back to EOS."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(resolve_model(spec.model), revision=spec.revision,
                                        trust_remote_code=spec.trust_remote_code)
    if spec.chat_template:
        tok.chat_template = spec.chat_template
    if tok.pad_token_id is None:
        tok.pad_token = tok.eos_token
    if padding_side:
        tok.padding_side = padding_side
    return tok


def load_model(spec: Any, device: str | None = None, dtype: Any = None, auto_class: Any = None,
               **kwargs: Any) -> Any:
    """The spec's model in eval mode, moved to `device` (None: left where from_pretrained put it, e.g. for ZeRO-3).

    dtype: a torch dtype or a name for `pick_dtype` (default spec.dtype); auto_class: e.g.
    AutoModelForSequenceClassification (default AutoModelForCausalLM); kwargs (and spec.model_kwargs) go to
    from_pretrained. Safetensors only unless spec.allow_pickle_weights (ConfigError naming the folder).
    """
    import torch
    from transformers import AutoModelForCausalLM

    path = resolve_model(spec.model)
    allow_pickle = bool(getattr(spec, "allow_pickle_weights", False))
    check_weights(path, allow_pickle)
    dtype = dtype if dtype is not None else spec.dtype
    if not isinstance(dtype, torch.dtype):
        dtype = pick_dtype(dtype, device or "cpu")
    cls = auto_class or AutoModelForCausalLM
    args = {**(getattr(spec, "model_kwargs", None) or {}), **kwargs}
    try:
        model = cls.from_pretrained(path, revision=spec.revision, dtype=dtype,
                                    trust_remote_code=spec.trust_remote_code,
                                    use_safetensors=None if allow_pickle else True, **args)
    except OSError as e:
        if allow_pickle or "safetensors" not in str(e):
            raise
        raise ConfigError(f"model {spec.model}: no safetensors weights found ({e}); set "
                          "allow_pickle_weights: true to load pickle weights from a source you trust") from None
    return model if device is None else model.to(device).eval()


def encode_chat(tok: Any, messages: list[dict[str, str]], add_generation_prompt: bool, suffix: str = "") -> list[int]:
    """Token ids of a chat rendered with the tokenizer's template, plus `suffix` (a forced answer start).

    A tokenizer without a chat template (base models such as Gemma 3 270M) gets a plain
    "### User: ... ### Assistant:" layout, with the tokenizer's own special tokens (BOS).
    """
    if tok.chat_template:
        text = tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=add_generation_prompt)
        return tok.encode(text + suffix, add_special_tokens=False)
    text = "".join(f"### {m['role'].title()}:\n{m['content']}\n\n" for m in messages)
    if add_generation_prompt:
        text += "### Assistant:\n"
    return tok.encode(text + suffix, add_special_tokens=True)


def left_pad(seqs: Sequence[Sequence[int]], pad_id: int, device: str) -> tuple[Any, Any, Any]:
    """(input_ids, attention_mask, position_ids), each (n, longest) long tensors; padding on the left so
    every sequence ends at the last column, positions counted from each sequence's first real token."""
    import torch

    width = max(len(s) for s in seqs)
    ids = torch.tensor([[pad_id] * (width - len(s)) + list(s) for s in seqs], device=device)
    mask = torch.tensor([[0] * (width - len(s)) + [1] * len(s) for s in seqs], device=device)
    return ids, mask, (mask.cumsum(-1) - 1).clamp(min=0)


def object_column(values: Sequence[Any]) -> np.ndarray:
    """A 1-D object array (strings with None, lists), safe for Ray Data batches."""
    out = np.empty(len(values), dtype=object)
    out[:] = list(values)
    return out


def run_microbatches(items: Sequence[Any], lengths: Sequence[int], max_rows: int, max_tokens: int,
                     fn: Callable[[list[Any]], Sequence[Any]], stage: str) -> tuple[list[Any], list[str | None]]:
    """Apply `fn` (a list of items -> one result per item) over length-sorted micro-batches of at most
    `max_rows` rows and `max_tokens` padded tokens.

    Returns (results, errors) aligned with `items`; a micro-batch that raises is retried row by row, and
    a row that still raises gets result None and its error text ("STAGE: Type: message").
    """
    results: list[Any] = [None] * len(items)
    errors: list[str | None] = [None] * len(items)
    for group in length_batches(list(lengths), max_rows, max_tokens):
        try:
            for i, r in zip(group, fn([items[i] for i in group]), strict=True):
                results[i] = r
            continue
        except Exception as e:  # isolate the failing row(s); the rest of the micro-batch is still scored
            if len(group) == 1:
                errors[group[0]] = scrub_secrets(f"{stage}: {type(e).__name__}: {e}")
                log.warning("%s: row failed: %s", stage, scrub_secrets(str(e)))
                continue
            log.warning("%s: micro-batch of %d failed (%s); retrying row by row", stage, len(group),
                        scrub_secrets(str(e)))
        for i in group:
            try:
                results[i] = fn([items[i]])[0]
            except Exception as e:  # recorded in the row's error column
                errors[i] = scrub_secrets(f"{stage}: {type(e).__name__}: {e}")
    return results, errors
