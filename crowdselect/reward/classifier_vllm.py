"""Sequence-classification reward models on vLLM through `ray.data.llm` (`kind: classifier`, `backend: vllm`).

The same inputs and outputs as the HF stage (`classifier.RewardClassifier`):
- in: rows with instruction and response (plus anything else, passed through);
- each pair becomes token ids by `classifier.classifier_encoder` (the reward model's chat template, the
  spec's truncation policy) in Ray Data tasks (`encode_pairs`); ray.data.llm's own chat template and
  tokenize stages are off, so the engine scores exactly the ids the HF stage scores;
- a `ray.data.llm` processor with task_type "classify" (vLLM's pooling runner, `convert: classify`) scores
  them on `resources.concurrency` engine replicas, batched continuously and unpadded;
- out: the input columns plus reward (NaN when the row failed), reward_error (None or why) and reward_model.
  A row that cannot be encoded, or that the engine refuses, keeps its reason; no row is dropped. Rows come
  back in any order.
ray.data.llm's other pooling task, "score", asks vLLM for `convert: reward` and a `score` pooling task, both
gone from vLLM 0.32 ("`score` task was removed; use `classify` instead", vllm/tasks.py).

Pooling (vLLM 0.32: model_executor/models/adapters.py, layers/pooler/): a Llama-class
*ForSequenceClassification is vLLM's causal LM with a `score` head (`as_seq_cls_model`). The classify pooler
reads the hidden state of the sequence's last token (LAST, vLLM's default for decoder models), applies the
head in float32 (pooling models' default `head_dtype`), then an activation unless the request turns it off:
sigmoid for one label, softmax for more (`PoolerClassify`; none for a config with `problem_type:
regression`). The HF stage reads raw logits[:, 0] at the last non-pad token, so every request here sets
`use_activation: False` (`RAW_SCORE`) and both backends give the raw logit. Models whose score is not the
head's first logit (ArmoRM's gating `score` output, trust_remote_code heads) stay on `backend: hf`.

Columns. The input columns travel through the processor under the prefix `KEEP`, so that none reaches the
engine under a name it reads: a `model` column (the generator's name) would be taken for a LoRA adapter,
`prompt` for the text to score. A row that fails to encode goes to the engine with no tokens, which
ray.data.llm refuses for that row alone (`should_continue_on_error`); the encoder's reason is what is kept.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import numpy as np
import pyarrow as pa

from crowdselect.core import columns as C
from crowdselect.core.config import to_dict
from crowdselect.core.secrets import scrub_secrets
from crowdselect.reward.classifier import classifier_encoder
from crowdselect.reward.config import RewardSpec
from crowdselect.reward.rows import PairEncoder, RowError, check_columns, text_cell
from crowdselect.runtime.cluster import planned
from crowdselect.runtime.lm import ray_llm
from crowdselect.runtime.lm.load import load_tokenizer, pick_dtype
from crowdselect.runtime.resources import for_pool

KEEP = "__row__."  # prefix of the input columns while they pass through the processor
TOKENS = "tokenized_prompt"  # ray.data.llm's input key for token ids
ENCODE_ERROR = "__encode_error__"
SCORE = "__score__"
RAW_SCORE = {"use_activation": False}  # vLLM PoolingParams: the head's logits, no sigmoid or softmax


def score_dtype(spec: RewardSpec) -> str:
    """The weights' dtype on vLLM: `auto` as the HF stage reads it (`pick_dtype`: bfloat16 with GPUs, float32
    on CPU), so that the two backends score in the same precision; any other name as given."""
    if spec.dtype != "auto":
        return spec.dtype
    gpus = planned(spec).resources.num_gpus
    return str(pick_dtype("auto", "cuda" if gpus > 0 else "cpu")).removeprefix("torch.")


def engine_kwargs(spec: RewardSpec) -> dict[str, Any]:
    """vLLM engine arguments: max_model_len = max_length (no encoded pair is longer), the HF stage's dtype,
    revision and the safetensors rule; the config's `engine_kwargs` win."""
    return ray_llm.engine_kwargs(spec, max_model_len=spec.max_length, dtype=score_dtype(spec))


def processor_config(spec: RewardSpec):
    """The `vLLMEngineProcessorConfig` of one classifier: task "classify", token ids in, no text stages."""
    from ray.data.llm import vLLMEngineProcessorConfig

    from crowdselect.runtime.node_models import on_every_node

    spec = planned(spec)
    res = spec.resources
    return vLLMEngineProcessorConfig(
        model_source=on_every_node(str(spec.model), f"reward {spec.name}"),
        task_type="classify",
        engine_kwargs=engine_kwargs(spec),
        batch_size=res.batch_size,
        concurrency=res.concurrency,
        accelerator_type=for_pool(res).accelerator_type,
        placement_group_config=ray_llm.placement(res.num_gpus, res.num_cpus),
        should_continue_on_error=True,
        chat_template_stage=False,
        tokenize_stage=False,
        detokenize_stage=False,
    )


_ENCODERS: dict[str, PairEncoder] = {}  # per worker process: a tokenizer loads once, not once per block


def _encoder(spec: RewardSpec) -> PairEncoder:
    key = json.dumps(to_dict(spec), sort_keys=True, default=str)
    if key not in _ENCODERS:
        _ENCODERS[key] = classifier_encoder(load_tokenizer(spec), spec)
    return _ENCODERS[key]


def encode_pairs(table: pa.Table, spec: RewardSpec) -> pa.Table:
    """Ray Data task (pyarrow batches): each row -> its token ids (`TOKENS`) and encoding error (`ENCODE_ERROR`),
    the input columns renamed under `KEEP`. A task, not an actor pool, so that the stage holds no CPU beyond
    its engines' and what feeds them (an actor per stage would starve a 2-CPU local Ray of task slots)."""
    columns = dict(zip(table.column_names, table.columns, strict=True))
    n = check_columns(f"reward {spec.name}", columns, [C.INSTRUCTION, C.RESPONSE])
    texts = {c: columns[c].to_pylist() for c in (C.INSTRUCTION, C.RESPONSE)}
    encoder = _encoder(spec)
    ids: list[list[int]] = []
    errors: list[str | None] = []
    for i in range(n):
        try:
            ids.append(encoder.encode(text_cell(texts, C.INSTRUCTION, i), text_cell(texts, C.RESPONSE, i)))
            errors.append(None)
        except RowError as e:
            ids.append([])
            errors.append(str(e))
    out = table.rename_columns([KEEP + c for c in table.column_names])
    out = out.append_column(TOKENS, pa.array(ids, pa.list_(pa.int64())))
    return out.append_column(ENCODE_ERROR, pa.array(errors, pa.string()))


def pooling_request(row: dict[str, Any]) -> dict[str, Any]:
    """The processor's input beside the row's token ids: pooling parameters that keep the raw score."""
    return {"pooling_params": dict(RAW_SCORE)}


def keep_score(row: dict[str, Any]) -> dict[str, Any]:
    """A scored row -> its input columns and the score (rows the engine refused bypass this, see `finish`)."""
    out = {k: v for k, v in row.items() if k.startswith(KEEP)}
    out[ENCODE_ERROR] = row.get(ENCODE_ERROR)
    out[SCORE] = float(np.asarray(row["embeddings"]).reshape(-1)[0])  # logits[0], as the HF stage reads
    return out


def finish(table: pa.Table, name: str, output_column: str) -> pa.Table:
    """Scored rows and refused rows -> the input columns + reward, reward_error, reward_model (pyarrow batch).
    The encoder's reason wins over the engine's (a row with no tokens is refused for that)."""
    n = table.num_rows

    def cells(column: str) -> list[Any]:
        return table.column(column).to_pylist() if column in table.column_names else [None] * n

    errors: list[str | None] = []
    rewards: list[float] = []
    for score, encode_error, engine_error in zip(cells(SCORE), cells(ENCODE_ERROR), cells(ray_llm.ERROR_FIELD),
                                                  strict=True):
        error = encode_error or (scrub_secrets(str(engine_error)) if engine_error else None)
        if error is None and score is None:
            error = "the engine returned no score"
        errors.append(error)
        rewards.append(np.nan if error is not None else float(score))
    kept = [c for c in table.column_names if c.startswith(KEEP)]
    out = table.select(kept).rename_columns([c[len(KEEP):] for c in kept])
    for column, values in ((output_column, pa.array(rewards, pa.float64())),
                           (C.error_column(output_column), pa.array(errors, pa.string())),
                           (C.REWARD_MODEL, pa.array([name] * n, pa.string()))):
        out = _put(out, column, values)
    return out


def _put(table: pa.Table, name: str, values: pa.Array) -> pa.Table:
    """`table` with column `name` set to `values` (replaced where it exists, as the HF stage's dict does)."""
    i = table.schema.get_field_index(name)
    return table.set_column(i, name, values) if i >= 0 else table.append_column(name, values)


def build_vllm_rewards(spec: RewardSpec, output_column: str = C.REWARD) -> Callable[[Any], Any]:
    """A function Dataset -> Dataset: rows with instruction and response -> + reward, reward_error, reward_model."""
    from ray.data.llm import build_processor

    processor = build_processor(processor_config(spec), preprocess=pooling_request, postprocess=keep_score)

    def apply(ds):
        tokens = ds.map_batches(encode_pairs, batch_format="pyarrow", fn_kwargs={"spec": spec})
        return processor(tokens).map_batches(finish, batch_format="pyarrow",
                                             fn_kwargs={"name": spec.name, "output_column": output_column})

    return apply
