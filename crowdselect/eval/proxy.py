"""Judge-free PROXY evaluation, for CPU runs without a judge worth the name: the model answers held-out
instructions (single turn) and the run's reward model(s) score the answers. It is a proxy, not MT-bench:
the reward models are the ones the selection itself used, so it rewards what they like; every output that
shows it is labelled `proxy`.

Instructions are read with the pool reader (any pool format; bad rows fail with FILE:LINE).
"""

from __future__ import annotations

from typing import Any

from crowdselect.core import columns as C
from crowdselect.core.errors import UserError
from crowdselect.eval.answer import generate_answers, text_or_none
from crowdselect.eval.config import EvalConfig

LABEL = "proxy (reward-model score of held-out answers; not a judge)"


def load_held_out(path: str, limit: int | None) -> list[dict[str, Any]]:
    """Held-out instructions as single-turn questions {question_id, category: held-out, turns: [text]}."""
    from crowdselect.pool.read import check_rejects, read_pool

    read = read_pool([path], limit=limit)
    check_rejects(read, "fail")
    if not read.rows:
        raise UserError(f"{path}: proxy.instructions: no instruction rows")
    return [{"question_id": r[C.ID], "category": "held-out", "turns": [r[C.INSTRUCTION]]} for r in read.rows]


def score_answers(rows: list[dict[str, Any]], spec) -> list[dict[str, Any]]:
    """Ray Data: one reward model's scores of {instruction, response} rows (order kept)."""
    import ray

    from crowdselect.reward.wiring import add_rewards

    ds = add_rewards(ray.data.from_items(rows), spec, output_column=C.REWARD)
    by_id = {r[C.ID]: r for r in ds.take_all()}
    return [by_id[r[C.ID]] for r in rows]


def run_proxy(cfg: EvalConfig) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Answer the held-out instructions, score the answers with each reward model; (records, summary block).
    An answer that failed to generate is scored as its "ERROR" text (as the MT-bench judge grades it) and
    counted; the completeness counts follow the first reward model."""
    p = cfg.proxy
    if not p.rewards:
        raise UserError("proxy.rewards: name at least one reward model (e.g. the run's rewards)")
    questions = load_held_out(p.instructions, p.limit)
    answered = generate_answers(cfg.model, questions, 1)
    rows = [{C.ID: str(q["question_id"]), C.INSTRUCTION: q["turns"][0], C.RESPONSE: a["answers"][0],
             "answer_error": a["turn_errors"][0]} for q, a in zip(questions, answered, strict=True)]
    records = {r[C.ID]: {"id": r[C.ID], "instruction": r[C.INSTRUCTION], "answer": r[C.RESPONSE],
                         "error": r["answer_error"], "rewards": {}, "reward_errors": {}} for r in rows}
    means = {}
    for spec in p.rewards:
        values = []
        for r in score_answers(rows, spec):
            value, err = r.get(C.REWARD), text_or_none(r.get(C.error_column(C.REWARD)))
            records[r[C.ID]]["rewards"][spec.name] = None if err or value is None else float(value)
            records[r[C.ID]]["reward_errors"][spec.name] = err
            if err is None and value is not None:
                values.append(float(value))
        means[spec.name] = round(sum(values) / len(values), 4) if values else None
    first = p.rewards[0].name
    scored = [r for r in records.values() if r["rewards"][first] is not None]
    answered_n = sum(r["error"] is None for r in records.values())
    summary = {"label": LABEL, "instructions": p.instructions, "questions": len(rows), "answered": answered_n,
               "mean_reward": means,
               "completeness": {"expected": len(rows), "answered": answered_n, "judged": len(scored),
                                "unparseable": 0, "failed": len(rows) - len(scored),
                                "usable": sum(r["error"] is None for r in scored)}}
    return list(records.values()), summary
