"""What every generation backend shares: the output columns, per-row seeds, the chat prompt, secrets.

A backend stage maps rows `{id, instruction, shard}` to rows
`{id, instruction, shard, response, error, prompt_tokens, output_tokens}`: exactly one output row per
input row (the instruction rides along so the reward stage can read generation shards directly).
A row that fails (prompt too long, engine error, HTTP error after retries) has `response` None and the
reason in `error` (scrubbed of API keys); it is never dropped. This module imports no model library, and Ray only
inside `on_actor_pool` (the wiring the hf and dry backends share).
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from crowdselect.core import columns as C
from crowdselect.core.secrets import Secret, scrub_secrets
from crowdselect.generate.spec import GeneratorSpec

__all__ = ["Secret", "chat_messages", "check_input", "columns_of", "on_actor_pool", "output_row", "row_seed",
           "sampling_json", "sampling_settings"]

INPUT_COLUMNS = (C.ID, C.INSTRUCTION, C.SHARD)
OUTPUT_COLUMNS = (C.ID, C.INSTRUCTION, C.SHARD, C.RESPONSE, C.ERROR, C.PROMPT_TOKENS, C.OUTPUT_TOKENS)


def chat_messages(instruction: str) -> list[dict[str, str]]:
    """The conversation sent to every generator: one user turn (the crowd answers the bare instruction)."""
    return [{"role": "user", "content": instruction}]


def row_seed(seed: int | None, row_id: str) -> int | None:
    """A per-row seed from the config seed and the row id, so an answer does not depend on its batch.

    >>> row_seed(None, "a") is None
    True
    >>> row_seed(0, "a") == row_seed(0, "a") != row_seed(1, "a")
    True
    """
    if seed is None:
        return None
    digest = hashlib.sha256(f"{seed}:{row_id}".encode()).digest()
    return int.from_bytes(digest[:4], "little") & 0x7FFFFFFF


def sampling_settings(spec: GeneratorSpec) -> dict[str, Any]:
    """The generator's sampling settings plus max_tokens: what the lineage column records."""
    return {**spec.sampling, "max_tokens": spec.max_tokens}


def sampling_json(spec: GeneratorSpec) -> str:
    return json.dumps(sampling_settings(spec), sort_keys=True)


def output_row(row_id: str, instruction: str, shard: str, response: str | None = None,
               error: str | None = None, prompt_tokens: int = 0, output_tokens: int = 0) -> dict[str, Any]:
    """One output row in the shared schema; the error text is scrubbed of secrets (`scrub_secrets`)."""
    return {C.ID: row_id, C.INSTRUCTION: instruction, C.SHARD: shard, C.RESPONSE: response,
            C.ERROR: scrub_secrets(error),
            C.PROMPT_TOKENS: int(prompt_tokens), C.OUTPUT_TOKENS: int(output_tokens)}


def columns_of(rows: list[dict[str, Any]]) -> dict[str, list[Any]]:
    """Rows in the shared schema as a column dict (a Ray Data batch)."""
    return {c: [r[c] for r in rows] for c in OUTPUT_COLUMNS}


def check_input(batch: dict[str, Any], stage: str) -> None:
    """A stage's input must hold the input columns; the error names the stage and what is missing."""
    missing = [c for c in INPUT_COLUMNS if c not in batch]
    if missing:
        raise ValueError(f"{stage}: input batch lacks column(s) {', '.join(missing)} (has {', '.join(batch)})")


def on_actor_pool(cls: type, spec: GeneratorSpec, constructor: dict[str, Any], batch_size: int):
    """A function Dataset -> Dataset mapping batches through stage class `cls` on an actor pool of
    `spec.resources.replicas` actors, each with the generator's Ray resources (`runtime.resources.for_generator`)."""

    def apply(ds):
        import ray

        from crowdselect.runtime.resources import for_generator

        return ds.map_batches(cls, fn_constructor_kwargs=constructor, batch_size=batch_size,
                              compute=ray.data.ActorPoolStrategy(size=spec.resources.replicas),
                              batch_format="numpy", **for_generator(spec).replica_options())

    return apply
