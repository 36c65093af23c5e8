"""Loading an HF tokenizer and model: the one place every model-running stage loads weights.

    tok   = load_tokenizer(spec)                  # spec's chat_template override, pad falls back to EOS
    model = load_model(spec, device)              # safetensors only unless spec.allow_pickle_weights
    device = pick_device(gpu_share(spec))         # the stage's GPU share decides; 0 never touches CUDA

Used by the HF generator, the judge and classifier rewards, the baselines (IFD, direct score, tags), the
student's training and export, and the benchmarks. `spec` is any object with the fields `model` (hub id,
folder or `pkg:` alias), `revision`, `trust_remote_code`, `chat_template`, `dtype`, and optionally
`model_kwargs` and `allow_pickle_weights` (absent means False): RewardSpec, GeneratorSpec, `ModelSource`. Weights in pickle files
(`pytorch_model.bin`) can run code when loaded, so they are refused unless the config allows them
(`crowdselect.runtime.weights`).
Chat encoding is in `chat.py`, padding and micro-batches in `batches.py`. This module knows nothing of Ray,
rows or scores; torch and transformers are imported when first needed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from crowdselect.core.config import ConfigError
from crowdselect.core.errors import UserError
from crowdselect.runtime.models import resolve_model
from crowdselect.runtime.weights import check_weights


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


def pick_device(gpus: float | None) -> str:
    """The torch device of a stage whose actor was given `gpus` GPUs (its planned share).

    0: "cpu", without asking torch about CUDA: Ray 2.60 leaves CUDA_VISIBLE_DEVICES unset for an actor given
    no GPU (ray/_private/utils.py, RAY_ACCEL_ENV_VAR_OVERRIDE_ON_ZERO), so "cuda" there would be a GPU Ray gave
    to someone else. > 0: "cuda"; a UserError when torch sees no GPU (a CPU build of torch). None (a spec not
    planned for a cluster, run in this process): "cuda" when torch sees a GPU, else "cpu".
    """
    if gpus == 0:
        return "cpu"
    import torch

    if torch.cuda.is_available():
        return "cuda"
    if gpus is None:
        return "cpu"
    raise UserError(f"this stage was given {gpus:g} GPU(s) but torch {torch.__version__} sees no CUDA device "
                    "(a CPU build of torch?); install a CUDA torch on the GPU nodes or set the stage's GPUs to 0")


def gpu_share(spec: Any) -> float | None:
    """The GPUs a spec's actor is given: `resources.num_gpus` (pools) or `resources.gpus_per_replica`
    (generators); None for a spec without them (in-process use)."""
    res = getattr(spec, "resources", None)
    for name in ("num_gpus", "gpus_per_replica"):
        if hasattr(res, name):
            return getattr(res, name)
    return None


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
