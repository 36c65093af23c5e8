"""Load the student for training: the causal LM (through `crowdselect.runtime.lm.load`), the PEFT LoRA wrapper.

Shared by the training loop (inside Ray Train workers), the export and the benchmarks. Nothing here knows
about Ray; DeepSpeed only through transformers' `HfDeepSpeedConfig`, which must stay alive while a ZeRO-3
model is built so that its weights are partitioned as they load.
"""

from __future__ import annotations

from typing import Any

from crowdselect.runtime.lm.load import ModelSource, load_model
from crowdselect.train.config import LoraConfig, TrainConfig


def model_source(cfg: TrainConfig, model_path: str, dtype: str = "auto") -> ModelSource:
    """The student's loading fields for `crowdselect.runtime.lm.load` (load_model, load_tokenizer);
    `model_path` is a hub id, folder or `pkg:` alias (resolved by the loader on the node that loads it: a
    Ray Train worker or the export task may run on another node than the driver); `dtype` e.g. "bf16"."""
    m = cfg.model
    kwargs = {"attn_implementation": m.attn_implementation} if m.attn_implementation else {}
    return ModelSource(model=model_path, revision=m.revision, trust_remote_code=m.trust_remote_code,
                       chat_template=m.chat_template, dtype=dtype, allow_pickle_weights=m.allow_pickle_weights,
                       model_kwargs=kwargs)


def peft_config(lora: LoraConfig):
    from peft import LoraConfig as PeftLoraConfig
    from peft import TaskType

    return PeftLoraConfig(r=lora.rank, lora_alpha=lora.alpha, lora_dropout=lora.dropout,
                          target_modules=lora.target_modules, task_type=TaskType.CAUSAL_LM)


def load_student(cfg: TrainConfig, model_path: str, ds_config: dict) -> tuple[Any, Any]:
    """(model ready for deepspeed.initialize, an object to keep alive until then).

    Weights load in the training precision (bf16 halves host memory per worker); ZeRO-3 partitions them
    while loading; gradient checkpointing and LoRA are applied as configured.
    """
    keep_alive = None
    if cfg.deepspeed.zero_stage == 3:
        from transformers.integrations import HfDeepSpeedConfig

        keep_alive = HfDeepSpeedConfig(ds_config)
    model = load_model(model_source(cfg, model_path, cfg.deepspeed.precision))
    model.config.use_cache = False
    if cfg.deepspeed.gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    if cfg.lora.enabled:
        from peft import get_peft_model

        model = get_peft_model(model, peft_config(cfg.lora))
    return model, keep_alive


def is_adapter_key(name: str) -> bool:
    """True for PEFT LoRA weights (lora_A / lora_B / lora_embedding_*)."""
    return "lora_" in name
