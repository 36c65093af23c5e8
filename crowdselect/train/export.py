"""Export a training checkpoint as an HF folder that transformers and vLLM load.

    model.safetensors + config.json + generation_config.json   the trained weights
    tokenizer files + chat_template.jinja                        the student's tokenizer and chat template
    crowdselect_export.json                                      base model, checkpoint, step, LoRA, dtype

Full fine-tuning: the fp32 master weights are consolidated from the ZeRO-2/3 shards (DeepSpeed's
zero_to_fp32) and loaded into the base architecture. LoRA: only the adapter weights are taken from the
checkpoint and put on the original base weights; `lora.merge: true` folds them in (W + alpha/r * B @ A),
`false` writes a PEFT adapter folder (adapter_model.safetensors + adapter_config.json) for
`vllm --enable-lora` or `PeftModel.from_pretrained`. Reads checkpoints from local folders or URIs.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from typing import Any

from crowdselect.core import storage
from crowdselect.runtime.lm.load import load_model, load_tokenizer, pick_dtype
from crowdselect.runtime.models import resolve_model
from crowdselect.train.config import TrainConfig
from crowdselect.train.loop import STATE_FILE
from crowdselect.train.student import is_adapter_key, model_source, peft_config

EXPORT_INFO = "crowdselect_export.json"


@contextlib.contextmanager
def local_checkpoint(uri: str):
    """A local folder holding the checkpoint at `uri` (downloaded to a temp folder when remote)."""
    if not storage.is_remote(uri):
        yield os.path.abspath(uri)
        return
    from ray.train import Checkpoint

    with tempfile.TemporaryDirectory(prefix="crowdselect-export-") as tmp:
        yield Checkpoint(uri).to_directory(tmp)


def consolidated_weights(folder: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """(full fp32 state dict gathered from every rank's ZeRO shard, trainer_state.json)."""
    from deepspeed.utils.zero_to_fp32 import get_fp32_state_dict_from_zero_checkpoint

    with open(os.path.join(folder, STATE_FILE)) as f:
        state = json.load(f)
    return get_fp32_state_dict_from_zero_checkpoint(folder, tag=state["tag"]), state


def export_model(checkpoint: str, cfg: TrainConfig, model_path: str, out: str,
                 merge: bool | None = None) -> dict[str, Any]:
    """Write the HF folder for `checkpoint` to `out` (local or URI); returns what crowdselect_export.json holds.
    `merge` overrides cfg.lora.merge."""
    merge = cfg.lora.merge if merge is None else merge
    with local_checkpoint(checkpoint) as folder:
        weights, state = consolidated_weights(folder)
    base = load_model(model_source(cfg, model_path, "float32"))
    dtype = export_dtype(cfg, model_path)
    if cfg.lora.enabled:
        model = with_adapter(base, cfg, weights)
        if merge:
            model = model.merge_and_unload()
    else:
        load_full(base, weights)
        model = base
    model = model.to(pick_dtype(dtype, "cpu"))
    info = {"base_model": cfg.model.name, "base_path": model_path, "checkpoint": checkpoint,
            "step": state["step"], "lora": cfg.lora.enabled, "merged": bool(cfg.lora.enabled and merge),
            "dtype": dtype}
    _write_folder(out, model, load_tokenizer(model_source(cfg, model_path)), info)
    return info


def load_full(model, weights: dict[str, Any]) -> None:
    """Load a full state dict; a key may be absent only when its tensor is tied to a loaded one
    (e.g. lm_head.weight = embed_tokens.weight)."""
    missing, unexpected = model.load_state_dict(weights, strict=False)
    params = model.state_dict(keep_vars=True)
    loaded = {params[k].data_ptr() for k in weights if k in params}
    bad_missing = [k for k in missing if params[k].data_ptr() not in loaded]
    if unexpected or bad_missing:
        raise RuntimeError(f"checkpoint does not fit the base model: missing {bad_missing[:5]}, "
                           f"unexpected {unexpected[:5]}")


def with_adapter(base, cfg: TrainConfig, weights: dict[str, Any]):
    """The PEFT model on the original base weights, with the trained LoRA weights from the checkpoint."""
    from peft import get_peft_model

    model = get_peft_model(base, peft_config(cfg.lora))
    adapter = {k: v for k, v in weights.items() if is_adapter_key(k)}
    expected = {k for k in model.state_dict() if is_adapter_key(k)}
    if set(adapter) != expected:
        raise RuntimeError(f"checkpoint LoRA weights do not match lora settings: missing "
                           f"{sorted(expected - set(adapter))[:3]}, unexpected {sorted(set(adapter) - expected)[:3]}")
    model.load_state_dict(adapter, strict=False)
    return model


def export_dtype(cfg: TrainConfig, model_path: str) -> str:
    """`export.dtype`, where `auto` is the dtype the base model's config.json names (its weights' dtype: a bf16
    student exports bf16, not the float32 it was loaded in for the merge); float32 when it names none."""
    if cfg.export.dtype != "auto":
        return cfg.export.dtype
    from transformers import AutoConfig

    conf = AutoConfig.from_pretrained(resolve_model(model_path), revision=cfg.model.revision,
                                      trust_remote_code=cfg.model.trust_remote_code)
    dtype = getattr(conf, "dtype", None)
    return str(dtype).removeprefix("torch.") if dtype is not None else "float32"


def _write_folder(out: str, model, tokenizer, info: dict[str, Any]) -> None:
    """Save into a temp folder, then move (local) or upload (URI) into place, replacing an older export."""
    parent = os.path.dirname(os.path.abspath(out)) if not storage.is_remote(out) else None
    if parent:
        os.makedirs(parent, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="crowdselect-model-", dir=parent) as tmp:
        folder = os.path.join(tmp, "model")
        model.save_pretrained(folder)
        tokenizer.save_pretrained(folder)
        with open(os.path.join(folder, EXPORT_INFO), "w") as f:
            json.dump(info, f, indent=2)
        if parent:
            shutil.rmtree(out, ignore_errors=True)
            os.replace(folder, out)
        else:
            import pyarrow.fs as pafs

            fs, path = storage.filesystem(out)
            storage.delete_dir(out)
            pafs.copy_files(folder, path, destination_filesystem=fs)
