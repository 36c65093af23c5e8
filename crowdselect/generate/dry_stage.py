"""A dry generator (`backend: dry`): deterministic answers of `max_tokens` words, no model loaded.

For rehearsing a job before paying for GPU-hours (storage, resume, autoscaling, `ray job submit`) and for
pushing large pools through generate → reward → crowd → select on a laptop. The stage is wired as the real
backends are: an actor pool of `resources.replicas` actors asking Ray for the generator's GPUs, CPUs and
accelerator type (`on_actor_pool`), so the same nodes come up and the same shards are written.

An answer depends only on (generator name, row id): `max_tokens` words drawn from a fixed list of 256
syllables by SHAKE-256 of the two, whatever the batch, replica, machine or order. `sampling` is ignored.
Token counts: the instruction's whitespace words, and `max_tokens`. A `fail:` setting (`DryFailure`) makes a
replica die, hang or raise at a given row, to rehearse what the job does when a real engine fails.
"""

from __future__ import annotations

import hashlib
import os
import time
from typing import Any

from crowdselect.core import columns as C
from crowdselect.generate.common import check_input, columns_of, on_actor_pool, output_row
from crowdselect.generate.spec import DryFailure, GeneratorSpec

WORDS = tuple(c + v for c in "bcdfghjklmnprstv"
              for v in ("a", "e", "i", "o", "u", "ai", "ea", "io", "ou", "ee", "oo", "ay", "ie", "oa", "ue", "y"))


def dry_answer(generator: str, row_id: str, words: int) -> str:
    """`words` syllable words drawn from (generator, row id) alone.

    >>> dry_answer("g", "q1", 4) == dry_answer("g", "q1", 4) != dry_answer("h", "q1", 4)
    True
    >>> len(dry_answer("g", "q1", 7).split())
    7
    """
    digest = hashlib.shake_256(f"{generator}\x00{row_id}".encode()).digest(words)
    return " ".join(WORDS[b] for b in digest)


class DryGenerator:
    """Callable stage: rows {id, instruction, shard} -> rows {id, shard, response, error, tokens}; no model."""

    def __init__(self, spec: GeneratorSpec):
        self.name, self.words, self.fail = spec.name, spec.max_tokens, spec.fail

    def __call__(self, batch: dict[str, Any]) -> dict[str, list[Any]]:
        check_input(batch, "DryGenerator")
        if self.fail is not None and self.fail.at_id in {str(r) for r in batch[C.ID]}:
            rehearse(self.fail, self.name)
        rows = [output_row(str(rid), str(text), str(shard), response=dry_answer(self.name, str(rid), self.words),
                           prompt_tokens=len(str(text).split()), output_tokens=self.words)
                for rid, text, shard in zip(batch[C.ID], batch[C.INSTRUCTION], batch[C.SHARD], strict=True)]
        return columns_of(rows)


def rehearse(fail: DryFailure, generator: str) -> None:
    """Fail as `fail` says, unless it already failed `fail.times` times in this Ray cluster."""
    from ray.experimental import internal_kv

    key = f"crowdselect-dry-failure:{generator}:{fail.at_id}".encode()
    count = int(internal_kv._internal_kv_get(key) or 0)
    if count >= fail.times:
        return
    internal_kv._internal_kv_put(key, str(count + 1).encode(), overwrite=True)
    if fail.mode == "exit":  # as vLLM's engine stage does when its engine dies: Ray restarts the replica
        os._exit(1)
    if fail.mode == "hang":
        while True:
            time.sleep(60)
    raise RuntimeError(f"dry generator {generator}: rehearsed engine error at row {fail.at_id}")


def build_dry_generate(spec: GeneratorSpec):
    """A function Dataset -> Dataset running `DryGenerator` on the generator's actor pool and resources."""
    return on_actor_pool(DryGenerator, spec, {"spec": spec}, spec.resources.batch_size)
