"""Load the student: tokenizer with its chat template, the causal LM, and the PEFT LoRA wrapper.

Shared by the training loop (inside Ray Train workers), the export and the benchmark. Nothing here knows
about Ray; DeepSpeed only through transformers' `HfDeepSpeedConfig`, which must stay alive while a ZeRO-3
model is built so that its weights are partitioned as they load.
"""

from __future__ import annotations

from typing import Any

from crowdselect.train.config import LoraConfig, TrainConfig

DTYPES = {"bf16": "bfloat16", "fp16": "float16", "fp32": "float32"}


def torch_dtype(name: str):
    """"bf16" / "bfloat16" / "fp32" ... -> torch dtype."""
    import torch

    return getattr(torch, DTYPES.get(name, name))


def load_tokenizer(cfg: TrainConfig, model_path: str):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model_path, revision=cfg.model.revision,
                                        trust_remote_code=cfg.model.trust_remote_code)
    if cfg.model.chat_template:
        tok.chat_template = cfg.model.chat_template
    return tok


def load_causal_lm(cfg: TrainConfig, model_path: str, dtype: str):
    """The base model from a hub id or folder, in `dtype` ("bf16", "fp32", "float32", ...)."""
    from transformers import AutoModelForCausalLM

    kwargs: dict[str, Any] = {"revision": cfg.model.revision, "dtype": torch_dtype(dtype),
                              "trust_remote_code": cfg.model.trust_remote_code}
    if cfg.model.attn_implementation:
        kwargs["attn_implementation"] = cfg.model.attn_implementation
    return AutoModelForCausalLM.from_pretrained(model_path, **kwargs)


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
    model = load_causal_lm(cfg, model_path, cfg.deepspeed.precision)
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
