"""Assemble the crowd table: one row per instruction with every generator's answer and its primary reward.

Pure crowd logic on rows (the stage of `crowdselect run` that reads and writes the shards is
`crowdselect.pipeline.stages.build_crowd`). Input per shard: the ingest shard (id, instruction, source), each generator's shard (id, response, error)
and the primary reward model's shard (id, model, reward). Output rows are in `crowdselect select`'s
canonical format:

    {id, instruction, responses: [{model, response, reward}, ...], source}

with the answers in generator config order. A failed generation has no answer in the list (its error is
kept under generate/); a failed reward (or one beyond select's +-MAX_REWARD) keeps the answer with reward
null (select leaves it out of the metrics). An instruction with fewer than 2 rewarded answers cannot be scored: it goes to
`crowd_excluded/` with the reason, and is counted; it is never silently dropped.
"""

from __future__ import annotations

import pyarrow as pa

from crowdselect.core import columns as C
from crowdselect.crowd.parse import MAX_REWARD

ANSWER = pa.struct([(C.MODEL, pa.string()), (C.RESPONSE, pa.string()), (C.REWARD, pa.float64())])
CROWD_SCHEMA = pa.schema([(C.ID, pa.string()), (C.INSTRUCTION, pa.string()), (C.RESPONSES, pa.list_(ANSWER)),
                          (C.SOURCE, pa.string())])
EXCLUDED_SCHEMA = pa.schema([(C.ID, pa.string()), (C.INSTRUCTION, pa.string()), (C.SOURCE, pa.string()),
                             (C.ERROR, pa.string())])
MIN_ANSWERS = 2


def assemble_shard(pool_rows: list[dict], answers: dict[str, dict[str, tuple[str | None, str | None]]],
                   rewards: dict[tuple[str, str], float | None]) -> tuple[list[dict], list[dict]]:
    """(crowd rows, excluded rows) of one shard.

    pool_rows: [{id, instruction, source}] in pool order; answers: generator -> id -> (response, error), in
    generator order; rewards: (id, generator) -> primary reward (None or NaN when scoring failed).

    >>> rows = [{"id": "a", "instruction": "q", "source": "f:1"}, {"id": "b", "instruction": "r", "source": "f:2"}]
    >>> ans = {"g1": {"a": ("x", None), "b": ("x", None)}, "g2": {"a": ("y", None), "b": ("y", None)},
    ...        "g3": {"a": (None, "too long"), "b": ("z", None)}}
    >>> rw = {("a", "g1"): 0.5, ("a", "g2"): float("nan"), ("b", "g1"): 1.0, ("b", "g2"): 2.0}
    >>> crowd, out = assemble_shard(rows, ans, rw)
    >>> [(a["model"], a["reward"]) for a in crowd[0]["responses"]]
    [('g1', 1.0), ('g2', 2.0), ('g3', None)]
    >>> out[0]["id"], out[0]["error"]
    ('a', '1 rewarded answer(s), need 2 (g2: reward failed; g3: too long)')
    """
    crowd, excluded = [], []
    for row in pool_rows:
        rid = row[C.ID]
        items, problems = [], []
        for gen, by_id in answers.items():
            response, error = by_id.get(rid, (None, "no row"))
            if response is None:
                problems.append(f"{gen}: {error}")
                continue
            reward = rewards.get((rid, gen))
            if reward is None or not abs(reward) <= MAX_REWARD:  # NaN, inf, or out of select's range
                reward = None
                problems.append(f"{gen}: reward failed")
            items.append({C.MODEL: gen, C.RESPONSE: response, C.REWARD: reward})
        n_ok = sum(i[C.REWARD] is not None for i in items)
        if n_ok >= MIN_ANSWERS:
            crowd.append({C.ID: rid, C.INSTRUCTION: row[C.INSTRUCTION], C.RESPONSES: items, C.SOURCE: row[C.SOURCE]})
        else:
            reason = f"{n_ok} rewarded answer(s), need {MIN_ANSWERS} ({'; '.join(problems)})"
            excluded.append({C.ID: rid, C.INSTRUCTION: row[C.INSTRUCTION], C.SOURCE: row[C.SOURCE],
                             C.ERROR: reason[:1000]})
    return crowd, excluded
