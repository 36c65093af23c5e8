"""A dry reward model (`backend: dry`): a deterministic reward per answer, no model loaded.

The twin of `crowdselect.generate.dry_stage` for the reward stage: wired as every reward model is (an actor
pool with the spec's `resources:`, `crowdselect.reward.wiring`), so a rehearsal asks Ray for the same GPUs and
writes the same shards. The reward depends only on (reward model name, id, generator, response): BLAKE2b of
the four mapped to [1, 10] for a judge (its rating scale) and to [-4, 4] for a classifier. A row without a
response gets NaN and a `reward_error`, as in the model-backed scorers.
"""

from __future__ import annotations

import hashlib
from typing import Any

from crowdselect.core import columns as C
from crowdselect.reward.config import RewardSpec
from crowdselect.reward.rows import RowError, check_columns, float_column, text_cell
from crowdselect.runtime.lm.batches import object_column

RANGES = {"judge": (1.0, 10.0), "classifier": (-4.0, 4.0)}


def dry_reward(name: str, row_id: str, model: str, response: str, kind: str = "classifier") -> float:
    """A reward in RANGES[kind] drawn from (reward model, id, generator, response) alone.

    >>> dry_reward("rm", "q1", "g", "yes") == dry_reward("rm", "q1", "g", "yes") != dry_reward("rm", "q1", "g", "no")
    True
    >>> 1.0 <= dry_reward("rm", "q1", "g", "yes", kind="judge") <= 10.0
    True
    """
    digest = hashlib.blake2b("\x00".join((name, row_id, model, response)).encode(), digest_size=8).digest()
    low, high = RANGES[kind]
    return low + (high - low) * int.from_bytes(digest, "little") / 2**64


class DryScorer:
    """Ray Data stage (callable class): rows (id, model, response, ...) -> + reward, reward_error, reward_model."""

    def __init__(self, spec: RewardSpec, output_column: str = C.REWARD):
        self.spec, self.output_column = spec, output_column

    def __call__(self, batch: dict[str, Any]) -> dict[str, Any]:
        n = check_columns(type(self).__name__, batch, [C.ID, C.MODEL, C.RESPONSE])
        rewards, errors = [], []
        for i in range(n):
            try:
                response = text_cell(batch, C.RESPONSE, i)
            except RowError as e:
                rewards.append(None)
                errors.append(str(e))
                continue
            rewards.append(dry_reward(self.spec.name, str(batch[C.ID][i]), str(batch[C.MODEL][i]), response,
                                      self.spec.kind))
            errors.append(None)
        out = dict(batch)
        out[self.output_column] = float_column(rewards)
        out[C.error_column(self.output_column)] = object_column(errors)
        out[C.REWARD_MODEL] = object_column([self.spec.name] * n)
        return out
